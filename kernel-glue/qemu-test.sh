#!/bin/bash
# foldswap in a real Linux 6.12, end to end, from a fresh Debian 12 machine:
# pinned packages and bindgen, the patched kernel (built once, cached outside
# the repository), the workspace crates compiled with the kernel's rustc and
# flags, the module (gated: modpost, no SSE/AVX, stack frames), an initramfs
# with the test program, a qemu boot, and a verdict read from the console log.
#
# usage: kernel-glue/qemu-test.sh           (see kernel-glue/README.md)
# env:   FOLDSWAP_KERNEL_CACHE (default /var/cache/foldswap-kernel),
#        SWAPTEST_MIB (384), SWAPTEST_ROUNDS (2), GUEST_MEM (256M), FRAME_LIMIT (2048)
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

SWAPTEST_MIB=${SWAPTEST_MIB:-384}
SWAPTEST_ROUNDS=${SWAPTEST_ROUNDS:-2}
GUEST_MEM=${GUEST_MEM:-256M}
FRAME_LIMIT=${FRAME_LIMIT:-2048}
RUN=$CACHE_DIR/run
START=$(date +%s)

# The module: probe kbuild for the rustc flags, compile the crates with them,
# build foldswap.ko against the cached tree, gate it.
build_module() {
	local mod=$RUN/module probe=$RUN/probe out
	# Module.symvers (the kernel's exports) comes from `make modules` (~10 s).
	[ -f "$KSRC/Module.symvers" ] || kmake -j"$JOBS" modules
	rm -rf "$mod" "$probe"
	mkdir -p "$mod" "$probe"
	cp "$GLUE_DIR"/module/{Kbuild,foldswap_main.rs,foldswap_host.c} "$mod/"

	log "kbuild probe (the kernel's rustc flags)"
	cat >"$probe/probe.rs" <<'RS'
// SPDX-License-Identifier: GPL-2.0
//! An empty module: kbuild's command line for it gives the flags.
use kernel::prelude::*;
module! { type: Probe, name: "probe", author: "foldswap", description: "flags probe", license: "GPL", }
struct Probe;
impl kernel::Module for Probe {
    fn init(_module: &'static ThisModule) -> Result<Self> {
        Ok(Probe)
    }
}
RS
	echo 'obj-m := probe.o' >"$probe/Kbuild"
	kmake M="$probe" probe.o

	log "crates with the kernel's rustc and flags"
	(cd "$GLUE_DIR/kglue" && cargo fetch -q)
	python3 "$GLUE_DIR/tools/kcrates.py" "$KSRC" "$probe/.probe.o.cmd" \
		"$GLUE_DIR/kglue/Cargo.toml" "$mod/crates"

	# The module as shipped, gated; then the test build the guest runs (the
	# same plus the load fault injector: FOLDSWAP_FAULT_INJECT, see Kbuild).
	local inject
	for inject in n y; do
		log "foldswap.ko (FOLDSWAP_FAULT_INJECT=$inject)"
		out=$(kmake M="$mod" FOLDSWAP_FAULT_INJECT=$inject modules 2>&1) ||
			{ echo "$out"; die "module build failed"; }
		echo "$out"
		if grep -qE 'WARNING: modpost|ERROR: modpost|undefined!' <<<"$out"; then
			die "modpost is not clean"
		fi
		# objtool: a function that falls through to the next is a panic path
		# the compiler left (a division by a value it cannot prove non-zero).
		if grep -q 'objtool:' <<<"$out"; then
			die "objtool is not clean"
		fi
		"$GLUE_DIR/tools/check-ko.sh" "$mod/foldswap.ko" "$FRAME_LIMIT" || die "module gates failed"
		# (grep without -q: with pipefail, -q's early exit fails `strings`.)
		if [ "$inject" = n ]; then
			strings "$mod/foldswap.ko" | grep inject_load_errors >/dev/null &&
				die "the shipped module has the fault injector"
			cp "$mod/foldswap.ko" "$RUN/foldswap-shipped.ko"
		else
			strings "$mod/foldswap.ko" | grep inject_load_errors >/dev/null ||
				die "the test build has no fault injector"
		fi
	done
	KO=$mod/foldswap.ko
}

build_initramfs() {
	local root=$RUN/initramfs a
	rm -rf "$root"
	mkdir -p "$root"/{bin,proc,sys,dev,tmp}
	gcc -O2 -Wall -Wextra -Werror -static -o "$root/swaptest" "$GLUE_DIR/guest/swaptest.c"
	gcc -O2 -Wall -Wextra -Werror -static -o "$root/mthptest" "$GLUE_DIR/guest/mthptest.c"
	gcc -O2 -Wall -Wextra -Werror -static -o "$root/dedupprobe" "$GLUE_DIR/guest/dedupprobe.c"
	gcc -O2 -Wall -Wextra -Werror -static -o "$root/wbtest" "$GLUE_DIR/guest/wbtest.c"
	gcc -O2 -Wall -Wextra -Werror -static -o "$root/ksmwork" "$GLUE_DIR/guest/ksmwork.c"
	# The kernel's own KSM tests, unmodified, from the guest's tree and against
	# its headers (flags as the selftests' Makefile gives them).
	local sel=$KSRC/tools/testing/selftests/mm t
	kmake headers_install INSTALL_HDR_PATH="$RUN/headers"
	for t in ksm_tests ksm_functional_tests; do
		# (The linker's note that libnuma's getaddrinfo needs glibc's shared
		# libraries at run time is true and harmless: the tests never call it.)
		gcc -O2 -static -w -I "$KSRC" -isystem "$RUN/headers/include" \
			-isystem "$KSRC/tools/include/uapi" -o "$root/$t" \
			"$sel/$t.c" "$sel/vm_util.c" "$sel/thp_settings.c" -lnuma >"$RUN/$t.log" 2>&1 ||
			{ cat "$RUN/$t.log" >&2; die "building $t failed"; }
	done
	cp /bin/busybox "$root/bin/busybox"
	for a in $(/bin/busybox --list); do
		[ "$a" = busybox ] || ln -sf busybox "$root/bin/$a"
	done
	cp "$GLUE_DIR/guest/init" "$root/init"
	chmod +x "$root/init"
	cp "$KO" "$root/foldswap.ko"
	(cd "$root" && find . | cpio -o -H newc --quiet | gzip -1) >"$RUN/initramfs.cpio.gz"
}

run_guest() {
	rm -f "$RUN/swap.img"
	truncate -s 1G "$RUN/swap.img"
	log "booting qemu ($GUEST_MEM, 2 CPUs, TCG; console in $RUN/console.log)"
	# qemu's exit status proves nothing (it is 0 after a panic): ignore it.
	timeout 1500 qemu-system-x86_64 -kernel "$KSRC/arch/x86/boot/bzImage" \
		-initrd "$RUN/initramfs.cpio.gz" -m "$GUEST_MEM" -smp 2 -nographic -no-reboot \
		-append "console=ttyS0 panic=-1 swaptest.mib=$SWAPTEST_MIB swaptest.rounds=$SWAPTEST_ROUNDS" \
		-drive file="$RUN/swap.img",format=raw,if=virtio >"$RUN/console.log" 2>&1 || true
	# The same kernel booted with kernel preemption: the module must refuse it.
	log "booting qemu with preempt=full (console in $RUN/console-preempt.log)"
	timeout 300 qemu-system-x86_64 -kernel "$KSRC/arch/x86/boot/bzImage" \
		-initrd "$RUN/initramfs.cpio.gz" -m "$GUEST_MEM" -smp 2 -nographic -no-reboot \
		-append "console=ttyS0 panic=-1 preempt=full guest.mode=preempt" \
		>"$RUN/console-preempt.log" 2>&1 || true
}

# "NAME KEY VALUE" for each KEY=VALUE of the guest's "TAG NAME PASS k=v ..."
# lines: pass_fields TAG LOG.
pass_fields() {
	awk -v tag="$1" '$1 == tag && $3 == "PASS" { for (i = 4; i <= NF; i++) { split($i, kv, "="); print $2, kv[1], kv[2] } }' "$2"
}

# Pass/fail from the console logs only: decide [LOG [PREEMPT_LOG]].
decide() {
	local log=${1:-$RUN/console.log} plog=${2:-$RUN/console-preempt.log} ok=1 p
	tr -d '\r' <"$log" >"$log.txt"
	log=$log.txt
	grep -q '^GUEST done' "$log" || { echo "verdict: the guest did not finish"; ok=0; }
	for p in foldswap foldswap-hold limited zswap zswap-hold zswap-zstd; do
		if ! grep -q "^\[$p\] SWAPTEST PASS bad_bytes=0 " "$log"; then
			echo "verdict: phase $p has no 'SWAPTEST PASS bad_bytes=0'"
			ok=0
		fi
	done
	for p in wb-off wb-on wb-zswap; do
		if ! grep -q "^\[$p\] WBTEST PASS bad_pages=0 " "$log"; then
			echo "verdict: phase $p has no 'WBTEST PASS bad_pages=0'"
			ok=0
		fi
	done
	# The kernel's own KSM tests, with stock ksmd and with ksmd following
	# foldswap's resident policy: every ksm_tests case run_vmtests.sh runs on
	# one NUMA node passes (exit 0; 4 is a skip and fails here: these apply),
	# and ksm_functional_tests ends with no failure.
	for scanner in ksmd foldswap; do
		for p in ksm_tests_-M_-p_10 ksm_tests_-U ksm_tests_-Z_-p_10_-z_0 ksm_tests_-Z_-p_10_-z_1; do
			if ! grep -q "^KSMTEST $scanner $p rc 0\$" "$log"; then
				echo "verdict: the kernel's KSM test $p did not pass with $scanner"
				ok=0
			fi
		done
		if ! grep -qE "^KSMTEST $scanner ksm_functional_tests rc 0 pass:[1-9][0-9]* fail:0 " "$log"; then
			echo "verdict: ksm_functional_tests did not pass with $scanner"
			ok=0
		fi
	done
	# The duplicate-rich workload (guest/ksmwork.c): every byte right after
	# merging and after the writes that break merges, with either scanner;
	# the resident policy reaches ksmd's sharing within 2 %.
	for scanner in ksmd foldswap; do
		grep -q "^KSMWORK $scanner PASS " "$log" || { echo "verdict: no 'KSMWORK $scanner PASS'"; ok=0; }
	done
	if ! pass_fields KSMWORK "$log" | awk '{ v[$1, $2] = $3 }
		END { exit !(v["ksmd", "sharing"] > 0 && v["foldswap", "sharing"] * 100 >= v["ksmd", "sharing"] * 98) }'; then
		echo "verdict: the resident policy did not reach ksmd's sharing within 2 %"
		ok=0
	fi
	# Tenants (ksmwork -c 2): stock ksmd merges across the two cgroups (more
	# sharing than one page per content and cgroup allows); the resident
	# policy reaches exactly that and no more, with every byte right.
	if ! pass_fields KSMWORK "$log" | awk '{ v[$1, $2] = $3 }
		END { exit !(v["ksmdtenants", "sharing"] > v["ksmdtenants", "perfect_sharing"] &&
			v["foldswaptenants", "perfect_sharing"] > 0 &&
			v["foldswaptenants", "sharing"] == v["foldswaptenants", "perfect_sharing"]) }'; then
		echo "verdict: the resident policy merged across memory cgroups, or not all within them (or ksmd did not merge across)"
		ok=0
	fi
	# Pressure (ksmwork -g): every byte right with each scanner, and over
	# the quiet minute after, ksmd under the policy uses at most 2 % of a CPU
	# (USER_HZ ticks). The pages each wrote to disk are figures only: two
	# runs of the same commit read 27,577 and 42,329 for the policy, 38,174
	# and 38,479 for ksmd, 36,183 and 46,081 with no merging.
	for scanner in none ksmd foldswap; do
		grep -q "^KSMGROW $scanner PASS " "$log" || { echo "verdict: no 'KSMGROW $scanner PASS'"; ok=0; }
	done
	if ! pass_fields KSMGROW "$log" | awk '$1 == "foldswap" { v[$2] = $3 }
		END { exit !(v["quiet_seconds"] > 0 && v["quiet_ticks"] * 50 <= v["quiet_seconds"] * 100) }'; then
		echo "verdict: the resident policy was not quiet in the minute after the pressure"
		ok=0
	fi
	# The policy was in charge for the second run (switched on and off at
	# run time; its batches took signatures), and on the workload it read at
	# most 0.8 of what ksmd read from pages to reach 99 % of its sharing.
	for p in 'RESIDENT on running 1' 'RESIDENT off running 0'; do
		grep -qx "$p" "$log" || { echo "verdict: no '$p'"; ok=0; }
	done
	if ! awk '$1 == "[resident]" && ($2 == "batches" || $2 == "signature_bytes") && $3 > 0 { n++ }
		END { exit n != 2 }' "$log"; then
		echo "verdict: the resident policy ran no batch or took no signature"
		ok=0
	fi
	if ! pass_fields KSMWORK "$log" | awk '{ v[$1, $2] = $3 }
		END { f = v["foldswap", "bytes_to_99"]; k = v["ksmd", "bytes_to_99"]
			exit !(f != "" && k > 0 && f * 10 <= k * 8) }'; then
		echo "verdict: the resident policy read more than 0.8 of what ksmd read to reach its sharing"
		ok=0
	fi
	# Large swap-ins from the RAM disk happen without foldswap, never with it.
	for p in mthp-device mthp-foldswap; do
		if ! grep -q "^\[$p\] MTHPTEST PASS bad_pages=0 " "$log"; then
			echo "verdict: phase $p has no 'MTHPTEST PASS bad_pages=0'"
			ok=0
		fi
	done
	# Loads that fail inside the backend fail the swap-in (the hold's victim
	# pages are lost, its swaptest -e checks nothing else is), each with a log
	# line; none may fall through to the disk's stale bytes (bad_bytes=0).
	if ! grep -q '^\[foldswap-hold\] SWAPTEST PASS bad_bytes=0 lost_pages=[1-9]' "$log"; then
		echo "verdict: no victim page of the hold was lost to an injected load error"
		ok=0
	fi
	if ! grep -q 'swap_backend: load of [0-9]*:[0-9]* failed (-5)' "$log"; then
		echo "verdict: no 'swap_backend: load of ... failed' line"
		ok=0
	fi
	# Absurd parameter values are refused and change nothing; stats are root's;
	# the dedup scope is the memory cgroup unless insmod says otherwise.
	for p in 'pool_limit_pages 4503599627370496 refused old 0 now 0' \
		'pool_limit_pages 18446744073709551615 refused old 0 now 0' \
		'max_pool_percent 101 refused old 20 now 20' \
		'pool_limit_pages 1000 accepted old 0 now 1000' \
		'cold_rounds 127 refused old 1 now 1' \
		'cold_level 20 refused old 3 now 3' \
		'block_pages 17 refused old 8 now 8' \
		'resident_strength 0 refused old 64 now 64' \
		'resident_strength 1035 refused old 64 now 64' \
		'cold_rounds 0 accepted old 1 now 0' \
		'writeback N accepted old Y now N' \
		'writeback Y accepted old N now Y' \
		'stats mode 400' \
		'resident mode 400' \
		'stats read by uid 1000 refused' \
		'dedup_scope bogus refused' \
		'dedup_scope is domain'; do
		grep -qx "PARAM $p" "$log" || { echo "verdict: no 'PARAM $p'"; ok=0; }
	done
	# "PARAM stats limit limit_bytes N -> limit_bytes N"
	if ! awk '$1 == "PARAM" && $2 == "stats" && $3 == "limit" { seen = 1; same = $5 == $8 && $5 > 0 }
		END { exit !(seen && same) }' "$log"; then
		echo "verdict: the pool limit changed after the refused writes"
		ok=0
	fi
	# Dedup domains (guest/dedupprobe.c): under the default scope no guess of
	# the attacker in another memory cgroup moves dedup_hits, and its own
	# memory.zswap.current grows by as much for right guesses as for wrong
	# ones (within a third: text pages of one kind compress alike); under
	# dedup_scope=global every right guess does and no wrong one (the probe
	# sees what it looks for); the victim gets its pages back either way.
	if ! awk '$1 == "PROBE" && $3 == "DEDUPPROBE" && $4 == "attacker" {
			seen[$2] = 1
			for (i = 5; i <= NF; i++) { split($i, kv, "="); v[$2 " " kv[1]] = kv[2] }
		}
		END {
			exit !(seen["domain"] && seen["global"] &&
				v["domain right_moved"] == 0 && v["domain wrong_moved"] == 0 &&
				v["domain right_charged"] > 0 && v["domain wrong_charged"] > 0 &&
				4 * v["domain right_charged"] >= 3 * v["domain wrong_charged"] &&
				3 * v["domain right_charged"] <= 4 * v["domain wrong_charged"] &&
				v["domain swapped"] == v["domain guesses"] && v["domain guesses"] > 0 &&
				v["global right_moved"] == v["global guesses"] / 4 &&
				v["global wrong_moved"] == 0 && v["global guesses"] > 0)
		}' "$log"; then
		echo "verdict: the dedup probe saw a hit (or right guesses charged unlike wrong ones) across memory cgroups, or missed the global hits"
		ok=0
	fi
	# The attacker as user 1000 timing its own swap-outs and swap-ins, 3,200
	# pairs of a right and a wrong guess; the sign test: the share of pairs
	# whose right guess was the faster, against chance (1/2, standard
	# deviation sd = 1/(2 sqrt(pairs)), 0.9 % here). Under the default scope
	# both shares (swap-out, swap-in) stay within 6 sd of chance (5.3 %);
	# under dedup_scope=global, the control, at least one lies 4.5 sd or more
	# from chance, in either direction: the timer sees the channel. Right
	# guesses were the faster swap-outs in 65 % to 77 % of pairs while the
	# victim's pages were lz4 and in 14 % once they were all in cold blocks;
	# the swap-in share alone read 58 % in two runs whose swap-out share was
	# 55 % and 57 % (TCG's noise swamps much of a few microseconds).
	if ! awk '$1 == "PROBE" && $3 == "DEDUPPROBE" && $4 == "timing" {
			seen[$2] = 1
			for (i = 5; i <= NF; i++) { split($i, kv, "="); v[$2 " " kv[1]] = kv[2] }
		}
		function off(scope, what) {
			return (v[scope " " what] / v[scope " pairs"] - 0.5) * 2 * sqrt(v[scope " pairs"])
		}
		function abs(x) { return x < 0 ? -x : x }
		END {
			if (!seen["domain"] || !seen["global"] || v["domain pairs"] < 3200 || v["global pairs"] < 3200) exit 1
			if (v["domain swapped"] != 2 * v["domain pairs"]) exit 1
			if (abs(off("domain", "out_right_faster")) > 6 || abs(off("domain", "in_right_faster")) > 6) exit 1
			exit !(abs(off("global", "out_right_faster")) >= 4.5 || abs(off("global", "in_right_faster")) >= 4.5)
		}' "$log"; then
		echo "verdict: the timing probe told right guesses from wrong across memory cgroups, or missed the global channel"
		ok=0
	fi
	for scope in domain global; do
		grep -q "^PROBE $scope DEDUPPROBE victim PASS" "$log" ||
			{ echo "verdict: no 'PROBE $scope DEDUPPROBE victim PASS'"; ok=0; }
	done
	# Anything the module logs as an error fails the run, as does a kernel splat.
	if grep -nE 'Oops|WARNING:|BUG:|Kernel panic|general protection|stack guard page|circular locking|inconsistent lock state|recursive locking|suspicious RCU|DEBUG_LOCKS_WARN_ON|soft lockup|hung_task|blocked for more than|Call Trace|scanner stopped|foldswap: scanner:|cannot build the backend|cannot unregister|insmod failed|rmmod failed|zswap zstd failed|swapon failed|swapoff failed|cannot arm' "$log"; then
		echo "verdict: kernel splat or failed step in the log (lines above)"
		ok=0
	fi
	if [ -n "$plog" ]; then
		tr -d '\r' <"$plog" >"$plog.txt"
		if ! grep -q '^PREEMPT insmod refused' "$plog.txt" ||
			! grep -q 'foldswap: needs a kernel without kernel preemption' "$plog.txt"; then
			echo "verdict: the module did not refuse a preempt=full kernel ($plog.txt)"
			ok=0
		fi
	fi
	figures "$log" || ok=0
	writeback_figures "$log" || ok=0
	memcg_figures "$log" || ok=0
	[ "$ok" = 1 ]
}

# The writeback phases (guest/wbtest.c): what each kept of the hot set, and
# the checks on it.
writeback_figures() {
	awk '
		$1 == "FSSTAT" { s[$2 "," $3 "," $4] = $5 }
		$1 == "ZSWAP" { z[$2 "," $3 "," $4] = $5 }
		/^\[wb-[a-z]*\] WBTEST (PASS|FAIL)/ {
			p = substr($1, 2, length($1) - 2)
			for (i = 3; i <= NF; i++) { split($i, kv, "="); w[p "," kv[1]] = kv[2] }
		}
		function fs(p, from, to, x) { return s[p "," to "," x] - s[p "," from "," x] }
		function zs(p, from, to, x) { return z[p "," to "," x] - z[p "," from "," x] }
		END {
			fail = 0
			for (i = 0; i < 3; i++) {
				p = i == 0 ? "wb-off" : i == 1 ? "wb-on" : "wb-zswap"
				touched = w[p ",hot"] * w[p ",rounds"]
				if (p == "wb-zswap") {
					refused[p] = zs(p, "before", "hot", "pool_limit_hit")
					written[p] = zs(p, "before", "hot", "written_back_pages")
				} else {
					refused[p] = fs(p, "before", "hot", "reject_pool_full")
					written[p] = fs(p, "before", "hot", "written_back_pages")
				}
				printf "figures writeback %-8s hot pages read from disk %5d of %5d touched; stores refused at the limit %5d; pages written back %5d\n",
					p, w[p ",hot_disk_reads"], touched, refused[p], written[p]
			}
			asked = fs("wb-on", "pressure-before", "pressure-after", "writeback_requested_pages")
			pressed = fs("wb-on", "pressure-before", "pressure-after", "written_back_pages")
			printf "figures writeback under pressure (shrinker, no limit near): %d pages asked for, %d written back\n", asked, pressed
			if (written["wb-off"] != 0) { print "verdict: foldswap wrote back with writeback off"; fail = 1 }
			if (written["wb-on"] <= 0) { print "verdict: foldswap wrote nothing back at the limit"; fail = 1 }
			if (refused["wb-on"] >= refused["wb-off"]) { print "verdict: writeback did not reduce the stores refused at the limit"; fail = 1 }
			if (w["wb-on,hot_disk_reads"] >= w["wb-off,hot_disk_reads"]) { print "verdict: with writeback the hot set was read from disk as often as without"; fail = 1 }
			if (asked <= 0 || pressed <= 0) { print "verdict: the shrinker asked for nothing, or nothing was written back under pressure"; fail = 1 }
			exit fail
		}' "$1"
}

# The memory cgroup phase (guest/init: memcgphase): each cgroup is charged
# what foldswap holds for it, the capped one no more than its
# memory.zswap.max (its other pages go to disk) while the other keeps
# storing, and nothing stays charged once the pages are gone.
memcg_figures() {
	awk '
		$1 == "MEMCG" && $3 == "holding" {
			g[$2] = 1; max[$2] = $5; cur[$2] = $7; charged[$2] = $9; held[$2] = $10
		}
		$1 == "MEMCG" && $3 == "after" { after[$2] = $5 }
		$1 == "MEMCG" && $3 == "DEDUPPROBE" && $4 == "victim" {
			pass[$2] = $5 == "PASS"
			for (i = 6; i <= NF; i++) { split($i, kv, "="); v[$2 "," kv[1]] = kv[2] }
		}
		$1 == "FSSTAT" && $2 == "memcg" { s[$3 "," $4] = $5 }
		$1 == "DISK" && $2 == "memcg" { d[$3 "," $4] = $5 }
		function off_by(a, b) { return a > b ? a - b : b - a }
		END {
			fail = 0
			refused = s["holding,reject_memcg_limit"] - s["before,reject_memcg_limit"]
			to_disk = d["holding,out"] - d["before,out"]
			printf "figures memcg capped: zswap.max %d, zswap.current %d, charged %d, held %d; free: zswap.current %d, charged %d, held %d; refused at the cgroup limit %d, pages to disk %d\n",
				max["capped"], cur["capped"], charged["capped"], held["capped"], cur["free"], charged["free"], held["free"], refused, to_disk
			for (i = 0; i < 2; i++) {
				c = i == 0 ? "capped" : "free"
				if (!g[c]) { print "verdict: no memory cgroup figures for " c; fail = 1; continue }
				if (!pass[c] || v[c ",swapped"] != v[c ",pages"] || v[c ",pages"] <= 0) { print "verdict: the " c " holder lost pages or kept them in memory"; fail = 1 }
				if (charged[c] <= 0 || charged[c] != held[c]) { printf "verdict: %s charged %d bytes for %d held\n", c, charged[c], held[c]; fail = 1 }
				if (off_by(cur[c], charged[c]) > 4096) { printf "verdict: %s memory.zswap.current %d, charged %d\n", c, cur[c], charged[c]; fail = 1 }
				if (after[c] != 0) { printf "verdict: %s still charged %d bytes after its pages went\n", c, after[c]; fail = 1 }
			}
			if (cur["capped"] > max["capped"] + 4096) { print "verdict: the capped cgroup was charged past its memory.zswap.max"; fail = 1 }
			if (refused <= 0 || to_disk <= 0) { print "verdict: no store refused at the cgroup limit, or nothing went to disk"; fail = 1 }
			if (charged["free"] <= 2 * max["capped"]) { print "verdict: the unlimited cgroup did not keep storing"; fail = 1 }
			if (s["after,charged_bytes"] != 0 || !("after,charged_bytes" in s)) { print "verdict: foldswap still charges bytes after the memcg phase"; fail = 1 }
			exit fail
		}' "$1"
}

# The figures of each phase, and the checks on them.
figures() {
	sed -n -e 's/^\[\(mthp-[a-z]*\)\] MTHPTEST \(.*\)/figures \1: \2/p' \
		-e 's/^INJECT \(.*\)/figures injected load errors: \1/p' \
		-e 's/^SETTLE \(.*\)/figures scanner settled: \1/p' \
		-e 's/^\[foldswap-hold\] SWAPTEST \(.*\)/figures foldswap-hold: \1/p' \
		-e 's/^PROBE \([a-z]*\) DEDUPPROBE attacker \(.*\)/figures dedup probe, scope \1: \2/p' \
		-e 's/^PROBE \([a-z]*\) DEDUPPROBE timing \(.*\)/figures timing probe (uid 1000), scope \1: \2/p' \
		-e 's/^KSMTEST \([a-z]*\) \(.*\)/figures kernel KSM tests, \1: \2/p' \
		-e 's/^KSMSKIP \([a-z]*\) \(.*\)/figures kernel KSM tests, \1, skipped: \2/p' \
		-e 's/^KSMCOST \([a-z]*\) \(.*\)/figures kernel KSM tests, \1, read from pages: \2/p' \
		-e 's/^KSMWORK \([a-z]*\) \(.*\)/figures duplicate-rich workload, \1: \2/p' \
		-e 's/^KSMGROW \([a-z]*\) \(.*\)/figures duplicate-rich growth into swap, \1: \2/p' "$1"
	awk '
		$1 == "DISK" { d[$2 "," $3 "," $4] = $5 }
		$1 == "FSSTAT" { s[$2 "," $3 "," $4] = $5 }
		$1 == "ZSWAP" { z[$2 "," $3 "," $4] = $5 }
		$1 == "CENSUS" { c[$2 "," $3 "," $4] = $5 }
		/^\[(foldswap|limited)\] total_bytes / { if ($3 > held[$1]) held[$1] = $3 }
		/^\[(foldswap|limited)\] stored_pages / { if ($3 > stored[$1]) stored[$1] = $3 }
		/^\[zswap(-zstd)?\] SNAPSHOT round=.* file=.*stored_pages/ { want = "stored"; wp = $1; next }
		/^\[zswap(-zstd)?\] SNAPSHOT round=.* file=.*pool_total_size/ { want = "size"; wp = $1; next }
		want == "stored" { if ($2 > zstored[wp]) zstored[wp] = $2; want = "" }
		want == "size" { if ($2 > zheld[wp]) zheld[wp] = $2; want = "" }
		function delta(p, x) { return s[p ",after," x] - s[p ",before," x] }
		function per_page(bytes, pages) { return pages > 0 ? bytes / pages : 0 }
		# What zswap holds, counted as foldswap counts itself: its pool and, per
		# stored page, the 56-byte struct zswap_entry of 6.12 (mm/zswap.c, its own
		# slab cache). Its xarray nodes are not counted, in zswap favour.
		function zswap_held(pool, pages) { return pool + pages * 56 }
		END {
			fail = 0
			for (i = 0; i < 4; i++) {
				p = i == 0 ? "foldswap" : i == 1 ? "limited" : i == 2 ? "zswap" : "zswap-zstd"
				printf "figures %-10s pages to disk %7d  from disk %7d", p,
					d[p ",after,out"] - d[p ",before,out"], d[p ",after,in"] - d[p ",before,in"]
				if (p ~ /^zswap/)
					printf "  at fullest: %6d pages in %6.1f MiB (zswap pool + entries, %d B/page)\n", zstored["[" p "]"],
						zswap_held(zheld["[" p "]"], zstored["[" p "]"]) / 1048576,
						per_page(zswap_held(zheld["[" p "]"], zstored["[" p "]"]), zstored["[" p "]"])
				else
					printf "  at fullest: %6d pages in %6.1f MiB  stores %d loads %d dedup_hits %d reject_pool_full %d reject_compress_poor %d\n",
						stored["[" p "]"], held["[" p "]"] / 1048576, delta(p, "stores"), delta(p, "loads"),
						delta(p, "dedup_hits"), delta(p, "reject_pool_full"), delta(p, "reject_compress_poor")
			}
			printf "figures settled    foldswap   %6d pages in %6.1f MiB (%d B/page; pool %.1f MiB, metadata %.1f MiB), recompressed %d, in blocks %d (%d blocks formed, %d rewritten out), patched %d, scanned %d, loads from blocks %d of %d\n",
				s["foldswap,settled,stored_pages"], s["foldswap,settled,total_bytes"] / 1048576,
				per_page(s["foldswap,settled,total_bytes"], s["foldswap,settled,stored_pages"]),
				s["foldswap,settled,pool_bytes"] / 1048576, s["foldswap,settled,index_bytes"] / 1048576,
				s["foldswap,settled,recompressed_pages"], s["foldswap,settled,blocked_pages"],
				s["foldswap,settled,blocks_formed"], s["foldswap,settled,block_rewrites"],
				s["foldswap,settled,patched_pages"], s["foldswap,settled,scanned_pages"],
				s["foldswap,settled,block_loads"], s["foldswap,settled,loads"]
			printf "figures settled    foldswap   metadata by table (B/page): offset tables %d, entries %d, dedup index %d, similarity index %d, ladder %d, block records %d\n",
				per_page(s["foldswap,settled,offset_table_bytes"], s["foldswap,settled,stored_pages"]),
				per_page(s["foldswap,settled,entry_bytes"], s["foldswap,settled,stored_pages"]),
				per_page(s["foldswap,settled,dedup_index_bytes"], s["foldswap,settled,stored_pages"]),
				per_page(s["foldswap,settled,similarity_index_bytes"], s["foldswap,settled,stored_pages"]),
				per_page(s["foldswap,settled,ladder_bytes"], s["foldswap,settled,stored_pages"]),
				per_page(s["foldswap,settled,block_bytes"], s["foldswap,settled,stored_pages"])
			# The holes in cold blocks: pages invalidated since their block was
			# formed still take their share of its frame until it is rewritten.
			if (("foldswap,settled,block_frame_pages" in c) && ("foldswap,settled,block_frame_bytes" in c))
				printf "figures settled    foldswap   blocks: %d frames hold %d pages, %d of them live; %.2f MiB of frames, %d B/live page\n",
					c["foldswap,settled,blocks"], c["foldswap,settled,block_frame_pages"], c["foldswap,settled,blocked"],
					c["foldswap,settled,block_frame_bytes"] / 1048576,
					per_page(c["foldswap,settled,block_frame_bytes"], c["foldswap,settled,blocked"])
			for (i = 0; i < 2; i++) {
				p = i == 0 ? "zswap" : "zswap-zstd"
				zs = zswap_held(z[p ",settled,pool_total_size"], z[p ",settled,stored_pages"])
				printf "figures settled    %-10s %6d pages in %6.1f MiB (%d B/page; pool %.1f MiB, entries %.1f MiB)\n", p,
					z[p ",settled,stored_pages"], zs / 1048576, per_page(zs, z[p ",settled,stored_pages"]),
					z[p ",settled,pool_total_size"] / 1048576, (zs - z[p ",settled,pool_total_size"]) / 1048576
			}
			if (s["foldswap,settled,recompressed_pages"] + s["foldswap,settled,blocked_pages"] <= 0) { print "verdict: the scanner recompressed no cold page (zstd, alone or in blocks)"; fail = 1 }
			# Density (issue 14): settled, foldswap holds a stored page in at most
			# 0.90x what zswap-zstd does and 0.75x what zswap-lz4 does, counted the
			# same way (pool plus per-page tables), holding at least as many of the
			# held pages as either (zswap sends the repeated incompressible pages of
			# the hold to disk, foldswap keeps them as references: the per-page
			# figures are over different page sets, so the bytes are shown too).
			# Measured 0.60x and 0.34x: 12,310 pages in 5.7 MiB against 8,175 in
			# 6.3 MiB (zswap-zstd) and 4,603 in 6.3 MiB (zswap-lz4).
			fs_bytes = s["foldswap,settled,total_bytes"]
			fs_pages = s["foldswap,settled,stored_pages"]
			fs_pp = per_page(fs_bytes, fs_pages)
			for (i = 0; i < 2; i++) {
				p = i == 0 ? "zswap" : "zswap-zstd"
				most = i == 0 ? 75 : 90
				zs_pages = z[p ",settled,stored_pages"]
				zs_bytes = zswap_held(z[p ",settled,pool_total_size"], zs_pages)
				zs_pp = per_page(zs_bytes, zs_pages)
				if (zs_pp <= 0 || fs_pp <= 0) { printf "verdict: no settled %s or foldswap figure to compare\n", p; fail = 1; continue }
				printf "figures density    foldswap / %s: %.2fx per stored page, %d against %d pages held in %.2fx the bytes\n",
					p, fs_pp / zs_pp, fs_pages, zs_pages, fs_bytes / zs_bytes
				if (fs_pp * 100 > zs_pp * most) { printf "verdict: settled, foldswap holds %d B/page, over 0.%dx the %d of %s\n", fs_pp, most, zs_pp, p; fail = 1 }
				if (fs_pages < zs_pages) { printf "verdict: settled, foldswap holds %d pages, %s %d\n", fs_pages, p, zs_pages; fail = 1 }
				disk_fs = d["foldswap,after,out"] - d["foldswap,before,out"]
				disk_zs = d[p ",after,out"] - d[p ",before,out"]
				if (disk_fs >= disk_zs) { printf "verdict: foldswap wrote %d pages to disk, %s %d\n", disk_fs, p, disk_zs; fail = 1 }
			}
			# Like for like: the pages zswap holds too. foldswap keeps a repeated
			# incompressible page raw, once, its copies as references, where zswap
			# sends every copy to disk; those pages (raw_sharers in the census) and
			# the slots of the raw copies (a page each) are left out, and every byte of
			# metadata stays charged to the rest.
			census = ("foldswap,settled,raw_sharers" in c) && ("foldswap,settled,raw" in c)
			like_pages = fs_pages - c["foldswap,settled,raw_sharers"]
			like_bytes = fs_bytes - c["foldswap,settled,raw"] * 4096
			zs_pages = z["zswap-zstd,settled,stored_pages"]
			zs_pp = per_page(zswap_held(z["zswap-zstd,settled,pool_total_size"], zs_pages), zs_pages)
			if (!census || like_pages <= 0 || zs_pp <= 0) { print "verdict: no census of what foldswap holds settled"; fail = 1 }
			else printf "figures density    like for like: foldswap %d pages in %.1f MiB (%d B/page), %.2fx zswap-zstd per stored page (%d pages, %d B/page)\n",
				like_pages, like_bytes / 1048576, per_page(like_bytes, like_pages), per_page(like_bytes, like_pages) / zs_pp, zs_pages, zs_pp
			printf "figures mthp-foldswap: foldswap stores %d loads %d\n", delta("mthp-foldswap", "stores"), delta("mthp-foldswap", "loads")
			if (delta("mthp-foldswap", "loads") <= 0) { print "verdict: the mTHP test loaded nothing from foldswap"; fail = 1 }
			if (delta("foldswap", "stores") <= 0 || delta("foldswap", "loads") <= 0) { print "verdict: foldswap stats show no stores or no loads"; fail = 1 }
			if (delta("foldswap", "dedup_hits") <= 0) { print "verdict: foldswap found no duplicate page"; fail = 1 }
			if (s["foldswap,swapoff,loads"] <= s["foldswap,after,loads"]) { print "verdict: swapoff loaded nothing back from foldswap"; fail = 1 }
			if (s["foldswap,swapoff,stored_pages"] != 0) { print "verdict: foldswap holds pages after swapoff"; fail = 1 }
			if (delta("limited", "reject_pool_full") <= 0) { print "verdict: the limited run rejected nothing"; fail = 1 }
			if (d["limited,after,out"] - d["limited,before,out"] <= 0) { print "verdict: the limited run wrote nothing to disk"; fail = 1 }
			if (zstored["[zswap]"] <= 0) { print "verdict: stock zswap stored nothing"; fail = 1 }
			if (zstored["[zswap-zstd]"] <= 0) { print "verdict: stock zswap with zstd stored nothing"; fail = 1 }
			exit fail
		}' "$1"
}

main() {
	"$GLUE_DIR/tools/verdict-test.sh" || die "the verdict's self-test failed"
	install_packages
	install_bindgen
	kernel_tree
	mkdir -p "$RUN"
	build_module
	build_initramfs
	run_guest
	if decide; then
		log "PASS (qemu test, $(($(date +%s) - START)) s)"
		echo "1 passed, 0 failed"
	else
		tail -40 "$RUN/console.log.txt" >&2
		log "FAIL (qemu test, $(($(date +%s) - START)) s; log: $RUN/console.log.txt)"
		echo "0 passed, 1 failed"
		exit 1
	fi
}

# Sourced (tools/verdict-test.sh) it only defines the functions.
if [ "${BASH_SOURCE[0]}" = "$0" ]; then
	main "$@"
fi
