#!/bin/bash
# The qemu test's verdict (qemu-test.sh: decide) judged on made-up console
# logs: a log with every line a good run has must pass, and each defect the
# verdict is there to catch, added to it, must fail it. Runs in a second;
# qemu-test.sh runs it first.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../qemu-test.sh"
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT

good() {
	local p
	cat <<'LOG'
GUEST start: 6.12.117 mib=384 rounds=2 limit=64 min_free_kbytes=8192
[mthp-device] MTHPTEST PASS bad_pages=0 large_pages=256 swapped=1024 resident=1024 pages=1024 expect=large
FSSTAT mthp-foldswap before stores 0
FSSTAT mthp-foldswap before loads 0
[mthp-foldswap] MTHPTEST PASS bad_pages=0 large_pages=0 swapped=1024 resident=1024 pages=1024 expect=order-0
FSSTAT mthp-foldswap after stores 1024
FSSTAT mthp-foldswap after loads 1024
PARAM pool_limit_pages 4503599627370496 refused old 0 now 0
PARAM pool_limit_pages 18446744073709551615 refused old 0 now 0
PARAM max_pool_percent 101 refused old 20 now 20
PARAM pool_limit_pages 1000 accepted old 0 now 1000
PARAM pool_limit_pages 0 accepted old 1000 now 0
PARAM cold_rounds 127 refused old 1 now 1
PARAM cold_level 20 refused old 3 now 3
PARAM block_pages 17 refused old 8 now 8
PARAM resident_strength 0 refused old 64 now 64
PARAM resident_strength 1035 refused old 64 now 64
PARAM cold_rounds 0 accepted old 1 now 0
PARAM writeback N accepted old Y now N
PARAM writeback Y accepted old N now Y
PARAM stats limit limit_bytes 53686272 -> limit_bytes 53686272
PARAM stats mode 400
PARAM resident mode 400
PARAM stats read by uid 1000 refused
PARAM dedup_scope bogus refused
PARAM dedup_scope is domain
KSMTEST ksmd ksm_tests_-M_-p_10 rc 0
KSMTEST ksmd ksm_tests_-U rc 0
KSMTEST ksmd ksm_tests_-Z_-p_10_-z_0 rc 0
KSMTEST ksmd ksm_tests_-Z_-p_10_-z_1 rc 0
KSMTEST ksmd ksm_functional_tests rc 0 pass:9 fail:0 xfail:0 xpass:0 skip:0 error:0
KSMCOST ksmd bytes_read 90000000 pages_scanned 30000
KSMWORK ksmd PASS sharing=6096 shared=48 perfect_sharing=6096 memfree_gain_kb=24000 bytes_to_99=60000000 bytes_total=90000000 ksmd_ticks=900 seconds=30.0
RESIDENT on running 1
KSMTEST foldswap ksm_tests_-M_-p_10 rc 0
KSMTEST foldswap ksm_tests_-U rc 0
KSMTEST foldswap ksm_tests_-Z_-p_10_-z_0 rc 0
KSMTEST foldswap ksm_tests_-Z_-p_10_-z_1 rc 0
KSMTEST foldswap ksm_functional_tests rc 0 pass:9 fail:0 xfail:0 xpass:0 skip:0 error:0
KSMCOST foldswap bytes_read 20000000 pages_scanned 40000
KSMWORK foldswap PASS sharing=6000 shared=48 perfect_sharing=6096 memfree_gain_kb=24000 bytes_to_99=20000000 bytes_total=30000000 ksmd_ticks=300 seconds=40.0
[resident] running 1
[resident] batches 120
[resident] signature_bytes 5000000
RESIDENT off running 0
KSMWORK ksmdtenants PASS sharing=6096 shared=48 perfect_sharing=6048 memfree_gain_kb=24000 bytes_to_99=60000000 bytes_total=90000000 ksmd_ticks=900 seconds=30.0 cgroups=2
KSMWORK foldswaptenants PASS sharing=6048 shared=96 perfect_sharing=6048 memfree_gain_kb=24000 bytes_to_99=20000000 bytes_total=30000000 ksmd_ticks=300 seconds=40.0 cgroups=2
KSMGROW none PASS disk_written_pages=40000 sharing=0 perfect_sharing=61392 ksmd_ticks=0 quiet_ticks=0 quiet_seconds=1 seconds=50.0
KSMGROW ksmd PASS disk_written_pages=30000 sharing=50000 perfect_sharing=61392 ksmd_ticks=3000 quiet_ticks=1500 quiet_seconds=60 seconds=80.0
KSMGROW foldswap PASS disk_written_pages=20000 sharing=60000 perfect_sharing=61392 ksmd_ticks=2000 quiet_ticks=60 quiet_seconds=60 seconds=70.0
LOG
	for p in foldswap limited zswap zswap-zstd; do
		echo "DISK $p before out 0"
		case $p in foldswap) echo "DISK $p after out 1000" ;; zswap-zstd) echo "DISK $p after out 2500" ;; *) echo "DISK $p after out 3000" ;; esac
		echo "DISK $p before in 0"
		echo "DISK $p after in 900"
		echo "FSSTAT $p before stores 0"
		echo "FSSTAT $p after stores 500"
		echo "FSSTAT $p before loads 0"
		echo "FSSTAT $p after loads 400"
		echo "FSSTAT $p swapoff loads 450"
		echo "FSSTAT $p swapoff stored_pages 0"
		echo "FSSTAT $p before dedup_hits 0"
		echo "FSSTAT $p after dedup_hits 10"
		echo "FSSTAT $p before reject_pool_full 0"
		echo "FSSTAT $p after reject_pool_full 7"
		echo "[$p] SWAPTEST PASS bad_bytes=0 lost_pages=0 pages=98304 rounds=2 procs=2"
	done
	cat <<'LOG'
[   99.1] swap_backend: load of 0:1234 failed (-5)
INJECT foldswap armed 8 left 7
[foldswap-hold] SWAPTEST PASS bad_bytes=0 lost_pages=1 pages=16384 rounds=1 procs=2
[zswap-hold] SWAPTEST PASS bad_bytes=0 lost_pages=0 pages=16384 rounds=1 procs=2
[zswap] SNAPSHOT round=0 file=/sys/kernel/debug/zswap/stored_pages
[zswap] 3000
[zswap-zstd] SWAPTEST PASS bad_bytes=0 lost_pages=0 pages=98304 rounds=2 procs=2
[zswap-zstd] SNAPSHOT round=0 file=/sys/kernel/debug/zswap/stored_pages
[zswap-zstd] 3100
FSSTAT foldswap settled stored_pages 16384
FSSTAT foldswap settled total_bytes 7000000
FSSTAT foldswap settled recompressed_pages 2000
CENSUS foldswap settled raw 16
CENSUS foldswap settled raw_sharers 4100
ZSWAP zswap settled stored_pages 10000
ZSWAP zswap settled pool_total_size 8000000
ZSWAP zswap-zstd settled stored_pages 16000
ZSWAP zswap-zstd settled pool_total_size 8000000
PROBE domain DEDUPPROBE attacker right_moved=0 wrong_moved=0 right_charged=84000 wrong_charged=86000 swapped=160 guesses=160
PROBE domain DEDUPPROBE victim PASS bad_pages=0 swapped=40 pages=40
PROBE global DEDUPPROBE attacker right_moved=40 wrong_moved=0 right_charged=0 wrong_charged=0 swapped=160 guesses=160
DISK memcg before out 1000
FSSTAT memcg before reject_memcg_limit 0
FSSTAT memcg before charged_bytes 0
MEMCG capped holding zswap_max 1048576 zswap_current 1049000 domain 1049000 1049000
MEMCG free holding zswap_max max zswap_current 6000000 domain 6000100 6000100
DISK memcg holding out 3300
FSSTAT memcg holding reject_memcg_limit 2300
FSSTAT memcg holding charged_bytes 7049100
MEMCG capped DEDUPPROBE victim PASS bad_pages=0 swapped=3000 pages=3000
MEMCG capped after zswap_current 0
MEMCG free DEDUPPROBE victim PASS bad_pages=0 swapped=3000 pages=3000
MEMCG free after zswap_current 0
FSSTAT memcg after reject_memcg_limit 2300
FSSTAT memcg after charged_bytes 0
PROBE global DEDUPPROBE victim PASS bad_pages=0 swapped=40 pages=40
PROBE domain DEDUPPROBE timing pairs=3200 out_right_faster=1610 in_right_faster=1590 out_median_right=371348 out_median_wrong=359136 in_median_right=375742 in_median_wrong=375973 swapped=6400
PROBE global DEDUPPROBE timing pairs=3200 out_right_faster=1750 in_right_faster=1700 out_median_right=228200 out_median_wrong=250286 in_median_right=247767 in_median_wrong=258935 swapped=6400
FSSTAT wb-off before reject_pool_full 100
FSSTAT wb-off hot reject_pool_full 4000
FSSTAT wb-off before written_back_pages 0
FSSTAT wb-off hot written_back_pages 0
[wb-off] WBTEST PASS bad_pages=0 hot_disk_reads=1536 cold=8192 hot=256 rounds=6
FSSTAT wb-on before reject_pool_full 4000
FSSTAT wb-on hot reject_pool_full 4900
FSSTAT wb-on before written_back_pages 0
FSSTAT wb-on hot written_back_pages 5000
FSSTAT wb-on pressure-before writeback_requested_pages 0
FSSTAT wb-on pressure-after writeback_requested_pages 128
FSSTAT wb-on pressure-before written_back_pages 5100
FSSTAT wb-on pressure-after written_back_pages 5228
[wb-on] WBTEST PASS bad_pages=0 hot_disk_reads=200 cold=8192 hot=256 rounds=6
ZSWAP wb-zswap before pool_limit_hit 0
ZSWAP wb-zswap hot pool_limit_hit 30
ZSWAP wb-zswap before written_back_pages 0
ZSWAP wb-zswap hot written_back_pages 4000
[wb-zswap] WBTEST PASS bad_pages=0 hot_disk_reads=300 cold=8192 hot=256 rounds=6
GUEST done
LOG
}

preempt_good() {
	printf '%s\n' '[    1.0] foldswap: needs a kernel without kernel preemption (preempt=none): its spin locks do not disable preemption' \
		'PREEMPT insmod refused' 'GUEST done'
}

# judge NAME WANT(pass|fail) SED_SCRIPT [PREEMPT_SED_SCRIPT]
judge() {
	good | sed -e "$3" >"$dir/log"
	preempt_good | sed -e "${4:-}" >"$dir/plog"
	local got=fail
	decide "$dir/log" "$dir/plog" >"$dir/out" 2>&1 && got=pass
	if [ "$got" != "$2" ]; then
		echo "verdict-test: $1: expected $2, got $got" >&2
		cat "$dir/out" >&2
		return 1
	fi
}

fails=0
judge "a good run" pass '' || fails=1
judge "the scanner stopped" fail '$a [  50.0] foldswap: scanner stopped: Corrupt' || fails=1
judge "the scanner had no scratch" fail '$a [  50.0] foldswap: scanner: no memory for its scratch; not scanning' || fails=1
judge "a WARNING" fail '$a [  50.0] WARNING: CPU: 0 PID: 1 at mm/swap_backend.c:120' || fails=1
judge "a failed load read stale bytes" fail \
	's/^\[foldswap-hold\] SWAPTEST PASS bad_bytes=0 lost_pages=1/[foldswap-hold] SWAPTEST FAIL bad_bytes=4096 lost_pages=0/' || fails=1
judge "no load failed" fail '/swap_backend: load of/d' || fails=1
judge "no injected loss" fail 's/^\(\[foldswap-hold\] SWAPTEST PASS bad_bytes=0\) lost_pages=1/\1 lost_pages=0/' || fails=1
judge "a large swap-in bypassed foldswap" fail \
	's/^\[mthp-foldswap\] MTHPTEST PASS bad_pages=0 large_pages=0/[mthp-foldswap] MTHPTEST FAIL bad_pages=64 large_pages=64/' || fails=1
judge "no large swap-in at all" fail '/^\[mthp-device\]/d' || fails=1
judge "an absurd pool limit accepted" fail \
	's/^PARAM pool_limit_pages 4503599627370496 refused old 0 now 0/PARAM pool_limit_pages 4503599627370496 accepted old 0 now 4503599627370496/' || fails=1
judge "max_pool_percent 101 accepted" fail 's/^PARAM max_pool_percent 101 refused old 20 now 20/PARAM max_pool_percent 101 accepted old 20 now 101/' || fails=1
judge "the limit changed" fail 's/-> limit_bytes 53686272/-> limit_bytes 0/' || fails=1
judge "block_pages 17 accepted" fail 's/^PARAM block_pages 17 refused old 8 now 8/PARAM block_pages 17 accepted old 8 now 17/' || fails=1
judge "an unreachable cold_rounds accepted" fail 's/^PARAM cold_rounds 127 refused old 1 now 1/PARAM cold_rounds 127 accepted old 1 now 127/' || fails=1
judge "stats world-readable" fail 's/^PARAM stats mode 400/PARAM stats mode 444/' || fails=1
judge "stats read by another user" fail 's/^PARAM stats read by uid 1000 refused/PARAM stats read by uid 1000 allowed/' || fails=1
judge "no cold page recompressed" fail 's/^FSSTAT foldswap settled recompressed_pages 2000/FSSTAT foldswap settled recompressed_pages 0/' || fails=1
judge "cold pages in blocks, none alone" pass \
	's/^FSSTAT foldswap settled recompressed_pages 2000/FSSTAT foldswap settled recompressed_pages 0\nFSSTAT foldswap settled blocked_pages 2000/' || fails=1
judge "settled foldswap over 0.90x zswap-zstd per page" fail \
	's/^FSSTAT foldswap settled total_bytes 7000000/FSSTAT foldswap settled total_bytes 8400000/' || fails=1
judge "settled foldswap at 0.85x zswap-zstd per page" pass \
	's/^FSSTAT foldswap settled total_bytes 7000000/FSSTAT foldswap settled total_bytes 7700000/' || fails=1
judge "settled foldswap over 0.75x zswap-lz4 per page" fail \
	's/^ZSWAP zswap settled pool_total_size 8000000/ZSWAP zswap settled pool_total_size 5000000/' || fails=1
judge "settled foldswap holds fewer pages than zswap-zstd" fail \
	's/^FSSTAT foldswap settled stored_pages 16384/FSSTAT foldswap settled stored_pages 15000/' || fails=1
judge "settled zswap-lz4 holds fewer pages in fewer bytes" pass \
	's/^ZSWAP zswap settled stored_pages 10000/ZSWAP zswap settled stored_pages 2000/; s/^ZSWAP zswap settled pool_total_size 8000000/ZSWAP zswap settled pool_total_size 3000000/' || fails=1
judge "foldswap wrote more pages to disk than zswap-zstd" fail 's/^DISK foldswap after out 1000/DISK foldswap after out 2600/' || fails=1
judge "a kernel KSM test failed with ksmd" fail 's/^KSMTEST ksmd ksm_tests_-U rc 0/KSMTEST ksmd ksm_tests_-U rc 1/' || fails=1
judge "a kernel KSM test skipped with ksmd" fail 's/^KSMTEST ksmd ksm_tests_-Z_-p_10_-z_1 rc 0/KSMTEST ksmd ksm_tests_-Z_-p_10_-z_1 rc 4/' || fails=1
judge "a kernel KSM test never ran" fail '/^KSMTEST ksmd ksm_tests_-M_-p_10/d' || fails=1
judge "a KSM functional test failed" fail 's/^KSMTEST ksmd ksm_functional_tests rc 0 pass:9 fail:0/KSMTEST ksmd ksm_functional_tests rc 1 pass:8 fail:1/' || fails=1
judge "a kernel KSM test failed with the resident policy" fail 's/^KSMTEST foldswap ksm_tests_-M_-p_10 rc 0/KSMTEST foldswap ksm_tests_-M_-p_10 rc 1/' || fails=1
judge "the KSM functional tests failed with the resident policy" fail 's/^KSMTEST foldswap ksm_functional_tests rc 0 pass:9 fail:0/KSMTEST foldswap ksm_functional_tests rc 1 pass:8 fail:1/' || fails=1
judge "the workload lost bytes with the resident policy" fail 's/^KSMWORK foldswap PASS/KSMWORK foldswap FAIL/' || fails=1
judge "the resident policy merged 2 % less than ksmd" fail 's/^KSMWORK foldswap PASS sharing=6000/KSMWORK foldswap PASS sharing=5970/' || fails=1
judge "the workload never ran with ksmd" fail '/^KSMWORK ksmd /d' || fails=1
judge "the policy was busy in the quiet minute" fail 's/quiet_ticks=60 quiet_seconds=60/quiet_ticks=121 quiet_seconds=60/' || fails=1
judge "the growth lost bytes with the policy" fail 's/^KSMGROW foldswap PASS/KSMGROW foldswap FAIL/' || fails=1
judge "the resident policy merged across memory cgroups" fail 's/^KSMWORK foldswaptenants PASS sharing=6048/KSMWORK foldswaptenants PASS sharing=6096/' || fails=1
judge "the resident policy merged less than it may within cgroups" fail 's/^KSMWORK foldswaptenants PASS sharing=6048/KSMWORK foldswaptenants PASS sharing=6000/' || fails=1
judge "the tenants control did not merge across cgroups" fail 's/^KSMWORK ksmdtenants PASS sharing=6096/KSMWORK ksmdtenants PASS sharing=6048/' || fails=1
judge "the resident policy was never switched on" fail 's/^RESIDENT on running 1/RESIDENT on running 0/' || fails=1
judge "the resident policy stayed on" fail 's/^RESIDENT off running 0/RESIDENT off running 1/' || fails=1
judge "the resident policy ran no batch" fail 's/^\[resident\] batches 120/[resident] batches 0/' || fails=1
judge "the resident policy read 0.85 of what ksmd read" fail 's/^\(KSMWORK foldswap .*\)bytes_to_99=20000000/\1bytes_to_99=51000000/' || fails=1
judge "an absurd resident strength was accepted" fail 's/^PARAM resident_strength 0 refused old 64 now 64/PARAM resident_strength 0 accepted old 64 now 0/' || fails=1
judge "the KSM functional tests crashed" fail 's/^KSMTEST ksmd ksm_functional_tests rc 0 pass:9 fail:0.*/KSMTEST ksmd ksm_functional_tests rc 139 /' || fails=1
judge "no settled zswap-zstd figure" fail '/^ZSWAP zswap-zstd settled/d' || fails=1
judge "no census of what foldswap holds" fail '/^CENSUS foldswap settled/d' || fails=1
judge "no settled zswap-lz4 figure" fail '/^ZSWAP zswap settled/d' || fails=1
judge "zswap's zstd refused" fail '$a GUEST zswap zstd failed' || fails=1
judge "a right guess moved dedup_hits across memory cgroups" fail \
	's/^PROBE domain DEDUPPROBE attacker right_moved=0/PROBE domain DEDUPPROBE attacker right_moved=1/' || fails=1
judge "the probe missed the global hits" fail \
	's/^PROBE global DEDUPPROBE attacker right_moved=40/PROBE global DEDUPPROBE attacker right_moved=12/' || fails=1
judge "some guesses never left memory" fail \
	's/^\(PROBE domain DEDUPPROBE attacker .*\) swapped=160/\1 swapped=150/' || fails=1
judge "right guesses charged the attacker less" fail 's/right_charged=84000 wrong_charged=86000/right_charged=2000 wrong_charged=86000/' || fails=1
judge "the attacker charged nothing" fail 's/right_charged=84000 wrong_charged=86000/right_charged=0 wrong_charged=0/' || fails=1
judge "a cgroup charged other than what it holds" fail \
	's/^MEMCG free holding zswap_max max zswap_current 6000000 domain 6000100 6000100/MEMCG free holding zswap_max max zswap_current 6000000 domain 6000100 5000000/' || fails=1
judge "memory.zswap.current not what foldswap charged" fail \
	's/^MEMCG free holding zswap_max max zswap_current 6000000/MEMCG free holding zswap_max max zswap_current 5000000/' || fails=1
judge "the capped cgroup charged past its limit" fail \
	's/^MEMCG capped holding zswap_max 1048576 zswap_current 1049000 domain 1049000 1049000/MEMCG capped holding zswap_max 1048576 zswap_current 2000000 domain 2000000 2000000/' || fails=1
judge "nothing refused at the cgroup limit" fail 's/^FSSTAT memcg holding reject_memcg_limit 2300/FSSTAT memcg holding reject_memcg_limit 0/' || fails=1
judge "the unlimited cgroup stopped storing" fail \
	's/^MEMCG free holding zswap_max max zswap_current 6000000 domain 6000100 6000100/MEMCG free holding zswap_max max zswap_current 1000000 domain 1000000 1000000/' || fails=1
judge "a cgroup charged after its pages went" fail 's/^MEMCG capped after zswap_current 0/MEMCG capped after zswap_current 4096/' || fails=1
judge "foldswap still charging after the phase" fail 's/^FSSTAT memcg after charged_bytes 0/FSSTAT memcg after charged_bytes 812/' || fails=1
judge "a memcg holder lost a page" fail 's/^MEMCG free DEDUPPROBE victim PASS bad_pages=0/MEMCG free DEDUPPROBE victim FAIL bad_pages=2/' || fails=1
judge "no memcg phase" fail '/^MEMCG/d' || fails=1
judge "no probe under the global scope" fail '/^PROBE global/d' || fails=1
judge "the victim lost a page" fail \
	's/^PROBE domain DEDUPPROBE victim PASS bad_pages=0/PROBE domain DEDUPPROBE victim FAIL bad_pages=1/' || fails=1
judge "a writeback phase lost a page" fail \
	's/^\[wb-on\] WBTEST PASS bad_pages=0/[wb-on] WBTEST FAIL bad_pages=3/' || fails=1
judge "no zswap writeback phase" fail '/^\[wb-zswap\]/d' || fails=1
judge "writeback refused as many stores" fail \
	's/^FSSTAT wb-on hot reject_pool_full 4900/FSSTAT wb-on hot reject_pool_full 7900/' || fails=1
judge "writeback read the hot set from disk as often" fail \
	's/^\[wb-on\] WBTEST PASS bad_pages=0 hot_disk_reads=200/[wb-on] WBTEST PASS bad_pages=0 hot_disk_reads=1536/' || fails=1
judge "nothing written back" fail 's/^FSSTAT wb-on hot written_back_pages 5000/FSSTAT wb-on hot written_back_pages 0/' || fails=1
judge "written back with writeback off" fail 's/^FSSTAT wb-off hot written_back_pages 0/FSSTAT wb-off hot written_back_pages 9/' || fails=1
judge "the shrinker asked for nothing" fail \
	's/^FSSTAT wb-on pressure-after writeback_requested_pages 128/FSSTAT wb-on pressure-after writeback_requested_pages 0/' || fails=1
judge "writeback stayed on" fail '/^PARAM writeback N/d' || fails=1
judge "right guesses swapped out faster across memory cgroups" fail \
	's/^PROBE domain DEDUPPROBE timing pairs=3200 out_right_faster=1610 in_right_faster=1590/PROBE domain DEDUPPROBE timing pairs=3200 out_right_faster=1800 in_right_faster=1590/' || fails=1
judge "right guesses swapped in slower across memory cgroups" fail \
	's/^PROBE domain DEDUPPROBE timing pairs=3200 out_right_faster=1610 in_right_faster=1590/PROBE domain DEDUPPROBE timing pairs=3200 out_right_faster=1610 in_right_faster=1400/' || fails=1
judge "the timer missed the global channel" fail \
	's/^PROBE global DEDUPPROBE timing pairs=3200 out_right_faster=1750 in_right_faster=1700/PROBE global DEDUPPROBE timing pairs=3200 out_right_faster=1700 in_right_faster=1700/' || fails=1
judge "the timer missed the global channel, just below 4.5 sd" fail \
	's/^PROBE global DEDUPPROBE timing pairs=3200 out_right_faster=1750 in_right_faster=1700/PROBE global DEDUPPROBE timing pairs=3200 out_right_faster=1720 in_right_faster=1600/' || fails=1
judge "the global channel seen as slower right guesses" pass \
	's/^PROBE global DEDUPPROBE timing pairs=3200 out_right_faster=1750 in_right_faster=1700/PROBE global DEDUPPROBE timing pairs=3200 out_right_faster=1400 in_right_faster=1600/' || fails=1
judge "the global channel seen in swap-ins alone" pass \
	's/^PROBE global DEDUPPROBE timing pairs=3200 out_right_faster=1750 in_right_faster=1700/PROBE global DEDUPPROBE timing pairs=3200 out_right_faster=1650 in_right_faster=1760/' || fails=1
judge "some timed guesses never left memory" fail 's/in_median_wrong=375973 swapped=6400/in_median_wrong=375973 swapped=6300/' || fails=1
judge "too few timed pairs" fail \
	's/^PROBE domain DEDUPPROBE timing pairs=3200 out_right_faster=1610 in_right_faster=1590/PROBE domain DEDUPPROBE timing pairs=800 out_right_faster=402 in_right_faster=398/' || fails=1
judge "no timing probe" fail '/DEDUPPROBE timing/d' || fails=1
judge "loaded under preempt=full" fail '' 's/^PREEMPT insmod refused/PREEMPT insmod loaded/' || fails=1
[ "$fails" = 0 ] && echo "verdict-test: the verdict passes a good log and fails each defect"
exit "$fails"
