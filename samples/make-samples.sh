#!/usr/bin/env bash
# Make the sample corpus samples/workers.pages.gz that `foldswap analyze` reads when
# given no input: start five real workers (two Python, three Perl) that parse text
# and hold indexes and tables, dump their anonymous resident pages with
# `foldswap dump`, and end the workers. The two Python workers, and two of the Perl
# workers, run the same script on the same input, so pages identical across
# processes can exist; the third Perl worker reads other text.
#   bash samples/make-samples.sh [OUTPUT]      (default samples/workers.pages.gz)
#   FOLDSWAP=BINARY bash samples/make-samples.sh   use that foldswap instead of building it
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-samples/workers.pages.gz}
if [ -z "${FOLDSWAP:-}" ]; then   # FOLDSWAP=path/to/foldswap skips the build
    cargo build --release -q -p foldswap-cli
    FOLDSWAP=${CARGO_TARGET_DIR:-target}/release/foldswap
fi

# The interpreters themselves, not wrappers (a pyenv shim would stand between
# $! and the worker, and the worker would outlive the kill below).
python=$(python3 -c 'import sys; print(sys.executable)')
perl=$(perl -e 'print $^X')
pystdlib=$("$python" -c 'import sysconfig; print(sysconfig.get_paths()["stdlib"])')
perllib=$("$perl" -MConfig -e 'print $Config{privlib}')
logs=$(mktemp -d)
pids=()
cleanup() {
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
    rm -rf "$logs"
}
trap cleanup EXIT

start() { # start NAME COMMAND...: run a worker with its output in $logs/NAME
    local name=$1; shift
    "$@" >"$logs/$name" 2>&1 &
    pids+=($!)
}
start py-a "$python" samples/workers/index.py "$pystdlib" 60000
start py-b "$python" samples/workers/index.py "$pystdlib" 60000
start pl-a "$perl" samples/workers/tables.pl "$perllib" 100000
start pl-b "$perl" samples/workers/tables.pl "$perllib" 100000
start pl-c "$perl" samples/workers/tables.pl "$perllib/Pod" 60000

for name in py-a py-b pl-a pl-b pl-c; do
    for _ in $(seq 600); do
        grep -q '^ready' "$logs/$name" && break
        sleep 0.1
    done
    grep -q '^ready' "$logs/$name" || { echo "worker $name did not get ready:"; cat "$logs/$name"; exit 1; }
    echo "$name: $(cat "$logs/$name")"
done

"$FOLDSWAP" dump --pid "${pids[@]}" -o "$out"
ls -l "$out"
