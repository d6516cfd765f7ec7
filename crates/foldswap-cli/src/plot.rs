//! `--plot FILE.svg`: a horizontal bar chart of the bytes each strategy holds.
//!
//! Hand-written SVG (no plotting crate): one bar for the raw input, then one per
//! strategy, each split into page data and metadata, labelled with its size and
//! ratio, over a linear axis in binary units.

use core::fmt::Write as _;

use crate::report::{AnalyzeReport, human_bytes, thousands};

const WIDTH: f64 = 860.0;
const LEFT: f64 = 150.0;
const RIGHT: f64 = 170.0;
const TOP: f64 = 78.0;
const BAR: f64 = 30.0;
const GAP: f64 = 16.0;
const AXIS: f64 = 40.0;
const LEGEND: f64 = 34.0;
const FONT: &str = "DejaVu Sans, Helvetica, Arial, sans-serif";
/// Bar colours, data part; the metadata part is drawn darker.
const PALETTE: [(&str, &str); 5] = [
    ("#4e79a7", "#2b4a6f"),
    ("#f28e2b", "#a65a11"),
    ("#59a14f", "#336b2c"),
    ("#b07aa1", "#75496a"),
    ("#76b7b2", "#3f7d78"),
];
const INPUT_COLOUR: &str = "#bab0ac";
/// Legend swatches: data, metadata.
const LEGEND_COLOURS: (&str, &str) = ("#bab0ac", "#5f5855");

/// The SVG text of the chart.
pub fn render_svg(report: &AnalyzeReport) -> String {
    let bars: Vec<Bar> = core::iter::once(Bar {
        label: "input (raw)".to_owned(),
        data: report.input.bytes,
        metadata: 0,
        note: "as in RAM".to_owned(),
        colours: (INPUT_COLOUR, INPUT_COLOUR),
    })
    .chain(report.strategies.iter().enumerate().map(|(i, s)| Bar {
        label: s.name.clone(),
        data: s.data_bytes,
        metadata: s.metadata_bytes,
        note: if s.ratio >= 1.0 {
            format!("{:.2}× smaller", s.ratio)
        } else {
            format!("{:.2}× larger", 1.0 / s.ratio.max(f64::MIN_POSITIVE))
        },
        colours: PALETTE[i % PALETTE.len()],
    }))
    .collect();

    let max = bars
        .iter()
        .map(|b| b.data + b.metadata)
        .max()
        .unwrap_or(1)
        .max(1);
    let (unit_name, unit) = axis_unit(max);
    let step = nice_step(max as f64 / unit as f64 / 6.0);
    let axis_max = (max as f64 / unit as f64 / step).ceil() * step;
    let plot_width = WIDTH - LEFT - RIGHT;
    let x = |bytes: u64| LEFT + bytes as f64 / unit as f64 / axis_max * plot_width;
    let plot_height = bars.len() as f64 * (BAR + GAP);
    let height = TOP + plot_height + AXIS + LEGEND;

    let mut svg = String::new();
    let _ = writeln!(
        svg,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" viewBox="0 0 {WIDTH} {height}" font-family="{FONT}">"#
    );
    let _ = writeln!(svg, r#"<rect width="100%" height="100%" fill="white"/>"#);
    let _ = writeln!(
        svg,
        r#"<text x="{LEFT}" y="30" font-size="18" font-weight="bold">Bytes held for {} pages ({})</text>"#,
        thousands(report.input.pages),
        human_bytes(report.input.bytes)
    );
    let _ = writeln!(
        svg,
        r##"<text x="{LEFT}" y="52" font-size="13" fill="#555">{} · shorter is better · every page loaded back and verified</text>"##,
        escape(&report.input.source)
    );

    // Grid lines and axis labels.
    let mut tick = 0.0;
    while tick <= axis_max + step / 2.0 {
        let tx = LEFT + tick / axis_max * plot_width;
        let _ = writeln!(
            svg,
            r##"<line x1="{tx:.1}" y1="{TOP}" x2="{tx:.1}" y2="{:.1}" stroke="#e4e4e4"/>"##,
            TOP + plot_height
        );
        let _ = writeln!(
            svg,
            r##"<text x="{tx:.1}" y="{:.1}" font-size="12" fill="#555" text-anchor="middle">{}</text>"##,
            TOP + plot_height + 18.0,
            format_tick(tick, step)
        );
        tick += step;
    }
    let _ = writeln!(
        svg,
        r##"<text x="{:.1}" y="{:.1}" font-size="12" fill="#555" text-anchor="middle">{unit_name} held (page data + metadata)</text>"##,
        LEFT + plot_width / 2.0,
        TOP + plot_height + 36.0
    );

    for (i, bar) in bars.iter().enumerate() {
        let y = TOP + i as f64 * (BAR + GAP) + GAP / 2.0;
        let mid = y + BAR / 2.0 + 5.0;
        let (data_end, total_end) = (x(bar.data), x(bar.data + bar.metadata));
        let _ = writeln!(
            svg,
            r#"<text x="{:.1}" y="{mid:.1}" font-size="14" text-anchor="end">{}</text>"#,
            LEFT - 10.0,
            escape(&bar.label)
        );
        let _ = writeln!(
            svg,
            r#"<rect x="{LEFT}" y="{y:.1}" width="{:.1}" height="{BAR}" fill="{}"/>"#,
            data_end - LEFT,
            bar.colours.0
        );
        if bar.metadata > 0 {
            let _ = writeln!(
                svg,
                r#"<rect x="{data_end:.1}" y="{y:.1}" width="{:.1}" height="{BAR}" fill="{}"/>"#,
                (total_end - data_end).max(1.0),
                bar.colours.1
            );
        }
        let _ = writeln!(
            svg,
            r##"<text x="{:.1}" y="{mid:.1}" font-size="13"><tspan font-weight="bold">{}</tspan><tspan dx="6" fill="#555">· {}</tspan></text>"##,
            total_end + 8.0,
            human_bytes(bar.data + bar.metadata),
            bar.note
        );
    }
    let _ = writeln!(
        svg,
        r##"<line x1="{LEFT}" y1="{TOP}" x2="{LEFT}" y2="{:.1}" stroke="#333"/>"##,
        TOP + plot_height
    );

    // Legend, in neutral greys: light = page data, dark = metadata.
    let ly = TOP + plot_height + AXIS + 10.0;
    let _ = writeln!(
        svg,
        r##"<rect x="{LEFT}" y="{ly:.1}" width="14" height="14" fill="{}"/><text x="{:.1}" y="{:.1}" font-size="12" fill="#333">page data</text>"##,
        LEGEND_COLOURS.0,
        LEFT + 20.0,
        ly + 12.0
    );
    let _ = writeln!(
        svg,
        r##"<rect x="{:.1}" y="{ly:.1}" width="14" height="14" fill="{}"/><text x="{:.1}" y="{:.1}" font-size="12" fill="#333">metadata (the darker end of each bar)</text>"##,
        LEFT + 110.0,
        LEGEND_COLOURS.1,
        LEFT + 130.0,
        ly + 12.0
    );
    svg.push_str("</svg>\n");
    svg
}

/// One bar of the chart.
struct Bar {
    label: String,
    data: u64,
    metadata: u64,
    note: String,
    colours: (&'static str, &'static str),
}

/// The binary unit that keeps the axis numbers readable for `max` bytes.
fn axis_unit(max: u64) -> (&'static str, u64) {
    match max {
        m if m >= 4 << 30 => ("GiB", 1 << 30),
        m if m >= 4 << 20 => ("MiB", 1 << 20),
        m if m >= 4 << 10 => ("KiB", 1 << 10),
        _ => ("bytes", 1),
    }
}

/// The 1-2-5 × 10^k step at or above `rough`.
fn nice_step(rough: f64) -> f64 {
    if rough <= 0.0 || !rough.is_finite() {
        return 1.0;
    }
    let magnitude = 10f64.powf(rough.log10().floor());
    [1.0, 2.0, 5.0, 10.0]
        .iter()
        .map(|m| m * magnitude)
        .find(|&s| s >= rough)
        .unwrap_or(10.0 * magnitude)
}

/// An axis number, with decimals only when the step needs them.
fn format_tick(value: f64, step: f64) -> String {
    if step >= 1.0 {
        format!("{value:.0}")
    } else {
        let decimals = (-step.log10().floor()) as usize;
        format!("{value:.decimals$}")
    }
}

/// Escape text for SVG.
fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steps_are_one_two_five() {
        let close = |a: f64, b: f64| (a - b).abs() < 1e-9;
        assert!(close(nice_step(0.7), 1.0));
        assert!(close(nice_step(1.3), 2.0));
        assert!(close(nice_step(3.0), 5.0));
        assert!(close(nice_step(17.0), 20.0));
        assert!(close(nice_step(0.03), 0.05));
        assert_eq!(format_tick(0.25, 0.05), "0.25");
        assert_eq!(axis_unit(100 << 20), ("MiB", 1 << 20));
        assert_eq!(escape("a<b&c"), "a&lt;b&amp;c");
    }
}
