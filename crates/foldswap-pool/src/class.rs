//! Size classes: which slot size an object of a given length gets, and how many
//! provider pages make one zspage of that class.
//!
//! Lengths are rounded up to [`CLASS_STEP`] bytes (16, as zsmalloc), giving 256
//! candidate sizes from 16 to 4096. For each, the zspage size (1 to
//! [`MAX_ZSPAGE_PAGES`] pages) that wastes the smallest share of its pages is
//! chosen. A zspage of several pages starts with its header, the addresses of
//! its other pages ([`header_bytes`]), which counts as waste. Neighbouring sizes whose zspages hold the same number of objects in the
//! same number of pages are merged into the larger one (zsmalloc does the same):
//! merging costs nothing in per-zspage waste and leaves fewer partly filled zspages.
//! All of it is computed at compile time into static tables.

use foldswap_mem::PAGE_SIZE;

/// Size-class granularity in bytes.
pub const CLASS_STEP: usize = 16;
/// The most provider pages one zspage may chain. Larger zspages waste less at the
/// end of their last page; since a zspage takes its pages one by one as its slots
/// reach them, a partly filled zspage holds at most one page it does not need.
pub const MAX_ZSPAGE_PAGES: usize = 16;
/// The largest object the store holds (one page).
pub const MAX_OBJECT: usize = PAGE_SIZE;

const SIZES: usize = MAX_OBJECT / CLASS_STEP;

/// Bytes of one page address in a zspage's header.
pub const PAGE_ADDRESS_BYTES: usize = core::mem::size_of::<usize>();

/// Bytes at the start of the first page of a zspage of `pages` pages that hold
/// the addresses of its other pages (none for a zspage of one page).
pub const fn header_bytes(pages: usize) -> usize {
    pages.saturating_sub(1) * PAGE_ADDRESS_BYTES
}

/// Shape of one size class.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClassShape {
    /// Bytes per slot.
    pub slot_size: u16,
    /// Provider pages per zspage.
    pub pages_per_zspage: u8,
    /// Slots per zspage.
    pub objects_per_zspage: u16,
}

impl ClassShape {
    /// Bytes of the zspage's header, before its first slot.
    pub const fn header_bytes(self) -> usize {
        header_bytes(self.pages_per_zspage as usize)
    }

    /// Where `slot` starts in the zspage's bytes (past the header).
    pub const fn slot_start(self, slot: u16) -> usize {
        self.header_bytes() + slot as usize * self.slot_size as usize
    }

    /// Pages a zspage needs to hold its first `slots` slots (0 for none).
    pub const fn pages_for_slots(self, slots: u16) -> usize {
        if slots == 0 {
            0
        } else {
            self.slot_start(slots).div_ceil(PAGE_SIZE)
        }
    }

    /// Slots wholly inside a zspage's first `pages` pages.
    pub const fn slots_in_pages(self, pages: usize) -> u16 {
        let bytes = (pages * PAGE_SIZE).saturating_sub(self.header_bytes());
        // Checked: no panic path for a slot size of 0 (no class has one).
        let slots = match bytes.checked_div(self.slot_size as usize) {
            Some(slots) => slots,
            None => 0,
        };
        if slots < self.objects_per_zspage as usize {
            slots as u16
        } else {
            self.objects_per_zspage
        }
    }
}

/// The most slots a zspage may have: callers number a slot in one byte (the
/// backend's content entry).
pub const SLOT_LIMIT: usize = 256;

const fn best_pages(slot: usize) -> usize {
    let mut best = 1;
    let mut best_waste_ppm = usize::MAX;
    let mut pages = 1;
    while pages <= MAX_ZSPAGE_PAGES {
        let bytes = pages * PAGE_SIZE;
        let usable = bytes - header_bytes(pages);
        if usable / slot > SLOT_LIMIT {
            break;
        }
        let waste_ppm = (usable % slot + header_bytes(pages)) * 1_000_000 / bytes;
        if waste_ppm < best_waste_ppm {
            best_waste_ppm = waste_ppm;
            best = pages;
        }
        pages += 1;
    }
    best
}

const fn shape_of_size(size_index: usize) -> ClassShape {
    let slot = (size_index + 1) * CLASS_STEP;
    let pages = best_pages(slot);
    ClassShape {
        slot_size: slot as u16,
        pages_per_zspage: pages as u8,
        objects_per_zspage: ((pages * PAGE_SIZE - header_bytes(pages)) / slot) as u16,
    }
}

struct Tables {
    /// size index (len rounded up / step - 1) -> class
    class_of_size: [u8; SIZES],
    shapes: [ClassShape; SIZES],
    count: usize,
}

const fn build_tables() -> Tables {
    let mut class_of_size = [0u8; SIZES];
    let mut shapes = [ClassShape {
        slot_size: 0,
        pages_per_zspage: 0,
        objects_per_zspage: 0,
    }; SIZES];
    // First pass, from the top: a size joins the next larger one when their
    // zspages have the same shape apart from slot size.
    let mut rep = [0usize; SIZES];
    let mut i = SIZES;
    while i > 0 {
        i -= 1;
        rep[i] = i;
        if i + 1 < SIZES {
            let this = shape_of_size(i);
            let up = shape_of_size(rep[i + 1]);
            if this.pages_per_zspage == up.pages_per_zspage
                && this.objects_per_zspage == up.objects_per_zspage
            {
                rep[i] = rep[i + 1];
            }
        }
    }
    // Second pass, from the bottom: number the distinct representatives.
    let mut count = 0;
    let mut i = 0;
    while i < SIZES {
        if i == 0 || rep[i] != rep[i - 1] {
            shapes[count] = shape_of_size(rep[i]);
            count += 1;
        }
        class_of_size[i] = (count - 1) as u8;
        i += 1;
    }
    Tables {
        class_of_size,
        shapes,
        count,
    }
}

const TABLES: Tables = build_tables();

/// Number of size classes after merging.
pub const CLASS_COUNT: usize = TABLES.count;

/// The most slots a zspage of any class has (a zspage's live-slot bitmap holds
/// this many bits).
pub const MAX_OBJECTS_PER_ZSPAGE: usize = max_objects_per_zspage();

const fn max_objects_per_zspage() -> usize {
    let mut most = 0;
    let mut class = 0;
    while class < TABLES.count {
        let objects = TABLES.shapes[class].objects_per_zspage as usize;
        if objects > most {
            most = objects;
        }
        class += 1;
    }
    most
}

static CLASS_OF_SIZE: [u8; SIZES] = TABLES.class_of_size;
static SHAPES: [ClassShape; SIZES] = TABLES.shapes;

/// The class that holds objects of `len` bytes (`len` in `0..=MAX_OBJECT`).
pub fn class_for_len(len: usize) -> Option<usize> {
    let index = len.max(1).div_ceil(CLASS_STEP) - 1;
    CLASS_OF_SIZE.get(index).map(|&c| c as usize)
}

/// The shape of class `class` (`0..CLASS_COUNT`).
pub fn class_shape(class: usize) -> Option<ClassShape> {
    if class < CLASS_COUNT {
        SHAPES.get(class).copied()
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_length_fits_its_class_and_classes_grow() {
        let mut last = 0;
        for len in 0..=MAX_OBJECT {
            let class = class_for_len(len).unwrap();
            let shape = class_shape(class).unwrap();
            assert!(shape.slot_size as usize >= len.max(1));
            assert!(shape.objects_per_zspage >= 1);
            assert!(usize::from(shape.objects_per_zspage) <= MAX_OBJECTS_PER_ZSPAGE);
            assert!(
                shape.slot_start(shape.objects_per_zspage)
                    <= shape.pages_per_zspage as usize * PAGE_SIZE
            );
            assert_eq!(
                shape.pages_for_slots(shape.objects_per_zspage),
                shape.pages_per_zspage as usize
            );
            assert_eq!(
                shape.slots_in_pages(shape.pages_per_zspage as usize),
                shape.objects_per_zspage
            );
            assert!(class >= last);
            last = class;
        }
        assert_eq!(class_for_len(MAX_OBJECT + 1), None);
        assert_eq!(last + 1, CLASS_COUNT);
        assert!(class_shape(CLASS_COUNT).is_none());
    }
}
