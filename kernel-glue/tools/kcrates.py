#!/usr/bin/env python3
"""Compile a cargo crate and its dependencies with the kernel's rustc and flags.

The flags come from a kbuild probe: the saved command (`.probe.o.cmd`) kbuild
used for an empty Rust module in the same kernel tree. Each crate of the
locked, resolved dependency graph of MANIFEST is compiled in dependency order
into OUT/<crate>.o (linked into the module) and OUT/lib<crate>.rmeta (for the
crates above it). Third-party crates get --cap-lints=allow; the project's own
crates (path dependencies) keep the kernel's lints.

The one flag not taken from the probe is the optimisation level: OPT_LEVEL
(default 2, the kernel's default CONFIG_CC_OPTIMIZE_FOR_PERFORMANCE) replaces
the probe's -Copt-level (tinyconfig's -Os makes rustc keep 16-20 KiB
temporaries on the stack in foldswap-pool's and miniz_oxide's constructors).

usage: kcrates.py KSRC PROBE_CMD_FILE MANIFEST OUT
Prints the crate names, in link order, one a line, to OUT/crates.txt.
"""
import json
import os
import shlex
import subprocess
import sys

DROP_WITH_VALUE = {"--extern", "--crate-type", "--crate-name", "--out-dir", "--cfg"}
DROP_EXACT = {"--sysroot=/dev/null", "-L", "./rust/"}
DROP_PREFIX = ("--edition=", "--emit=", "-Zcrate-attr=", "-Zallow-features=",
               "-Zbinary_dep_depinfo", "RUST_MODFILE=")


def kernel_flags(cmd_file):
    """(codegen flags, lint flags) of the probe's rustc command."""
    text = open(cmd_file).read()
    line = text.split(":=", 1)[1].split("\n", 1)[0]
    words = shlex.split(line.split(" ; ")[0])
    rustc = next(i for i, w in enumerate(words) if w.endswith("rustc"))
    words = words[rustc + 1:-1]  # up to, not including, the source file
    flags, lints, skip = [], [], False
    for w in words:
        if skip:
            skip = False
            continue
        if w in DROP_WITH_VALUE:
            skip = True
            continue
        if w.startswith(DROP_PREFIX) or w in DROP_EXACT:
            continue
        if w.startswith("-Copt-level="):
            w = "-Copt-level=" + os.environ.get("OPT_LEVEL", "2")
        if w.startswith(("-W", "-D", "-A")) and not w.startswith("-Dunsafe"):
            lints.append(w)
        else:
            flags.append(w)
    return flags, lints


def crate_graph(manifest):
    meta = json.loads(subprocess.check_output(
        ["cargo", "metadata", "--format-version", "1",
         "--filter-platform", "x86_64-unknown-linux-gnu", "--manifest-path", manifest]))
    packages = {p["id"]: p for p in meta["packages"]}
    nodes = {n["id"]: n for n in meta["resolve"]["nodes"]}
    order, seen = [], set()

    def visit(pid):
        if pid in seen:
            return
        seen.add(pid)
        for dep in nodes[pid]["deps"]:
            if any(k["kind"] is None for k in dep["dep_kinds"]):
                visit(dep["pkg"])
        order.append(pid)

    visit(meta["resolve"]["root"])
    return packages, nodes, order


def main():
    ksrc, probe_cmd, manifest, out = sys.argv[1:5]
    os.makedirs(out, exist_ok=True)
    flags, lints = kernel_flags(probe_cmd)
    packages, nodes, order = crate_graph(manifest)
    names = []
    for pid in order:
        pkg, node = packages[pid], nodes[pid]
        lib = [t for t in pkg["targets"] if "lib" in t["kind"] or "rlib" in t["kind"]]
        if not lib:
            sys.exit(f"{pkg['name']}: no lib target")
        if any("custom-build" in t["kind"] for t in pkg["targets"]):
            print(f"note: {pkg['name']} has a build script; it is not run (no cfgs it emits)",
                  file=sys.stderr)
        if any("proc-macro" in t["kind"] for t in pkg["targets"]):
            sys.exit(f"{pkg['name']}: proc-macro crates are not supported")
        crate = lib[0]["name"].replace("-", "_")
        cmd = ["/usr/bin/rustc", *flags, f"--edition={lib[0]['edition']}",
               "--crate-type", "rlib", "--crate-name", crate,
               "-L", "./rust/", "-L", f"dependency={out}", "--sysroot=/dev/null"]
        cmd += lints if pkg["source"] is None else ["--cap-lints=allow"]
        for f in node["features"]:
            cmd += ["--cfg", f'feature="{f}"']
        for dep in node["deps"]:
            if any(k["kind"] is None for k in dep["dep_kinds"]):
                cmd += ["--extern", f"{dep['name']}={out}/lib{dep['name']}.rmeta"]
        cmd += [f"--emit=obj={out}/{crate}.o", f"--emit=metadata={out}/lib{crate}.rmeta",
                lib[0]["src_path"]]
        env = dict(os.environ, RUSTC_BOOTSTRAP="1")
        print(f"  RUSTC [k] {crate}", file=sys.stderr)
        r = subprocess.run(cmd, cwd=ksrc, env=env)
        if r.returncode:
            print(" ".join(shlex.quote(c) for c in cmd), file=sys.stderr)
            sys.exit(f"{crate}: rustc failed")
        names.append(crate)
    with open(f"{out}/crates.txt", "w") as f:
        f.write("\n".join(names) + "\n")


if __name__ == "__main__":
    main()
