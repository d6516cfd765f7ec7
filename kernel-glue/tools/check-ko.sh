#!/bin/bash
# Gates on a built module: no SSE/AVX instruction, no stack frame over a limit.
# usage: check-ko.sh MODULE.ko [FRAME_LIMIT_BYTES]   (exit 1 on a violation)
# (The modpost gate is in qemu-test.sh: it reads the make output.)
set -euo pipefail
ko=$1
limit=${2:-2048}
dis=$(mktemp)
trap 'rm -f "$dis"' EXIT
objdump -d --no-show-raw-insn "$ko" >"$dis"
fail=0

# Kernel code must not touch the FPU/SIMD state: any xmm/ymm/zmm register or
# MXCSR access is a violation.
simd=$(grep -cE '%[xyz]mm[0-9]|mxcsr|\bfx(save|rstor)|\bx(save|rstor)' "$dis" || true)
if [ "$simd" != 0 ]; then
	echo "check-ko: $simd SSE/AVX instructions in $ko:" >&2
	grep -E '%[xyz]mm[0-9]|mxcsr' "$dis" | head -5 >&2
	fail=1
fi

# Stack frames: the largest `sub $N,%rsp` of each function (rustc has no
# frame-size warning; a kernel stack is 16 KiB).
awk -v limit="$limit" '
	function hex(s,   i, n) {
		n = 0
		for (i = 1; i <= length(s); i++) n = n * 16 + index("0123456789abcdef", substr(s, i, 1)) - 1
		return n
	}
	/^[0-9a-f]+ <.*>:$/ { fn = $2; next }
	/sub +\$0x[0-9a-f]+,%rsp/ {
		match($0, /\$0x[0-9a-f]+/)
		n = hex(substr($0, RSTART + 3, RLENGTH - 3))
		if (n > max[fn]) max[fn] = n
	}
	END {
		worst = 0; bad = 0
		for (f in max) {
			if (max[f] > worst) { worst = max[f]; wf = f }
			if (max[f] > limit) { printf "check-ko: frame %d bytes > %d in %s\n", max[f], limit, f > "/dev/stderr"; bad = 1 }
		}
		printf "check-ko: largest frame %d bytes in %s (limit %d)\n", worst, wf, limit
		exit bad
	}' "$dis" || fail=1
[ "$fail" = 0 ] && echo "check-ko: $ko: no SSE/AVX, frames within $limit bytes"
exit $fail
