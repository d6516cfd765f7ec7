// SPDX-License-Identifier: GPL-2.0-only OR MIT
/*
 * mthptest - can a page the swap backend holds come back through a large
 * (mTHP) swap-in, which reads the swap device only?
 *
 * 6.12's do_swap_page() swaps in a large folio when the device is
 * SWP_SYNCHRONOUS_IO (zram, brd, pmem), zswap was never enabled, per-size
 * mTHP is on, and the PTEs hold contiguous, aligned swap entries.  This
 * program makes that case on purpose:
 *
 *   1. per-size mTHP off (16, 32, 64 kB), pinned to CPU 0;
 *   2. PAGES order-0 pages of distinct text, 64 kB aligned;
 *   3. each page paged out alone with MADV_PAGEOUT, in address order, so
 *      they get consecutive swap offsets; the region is paged out in four
 *      parts with one extra page paged out between them, so one part has
 *      offsets aligned to 4 pages whatever the first offset was;
 *   4. per-size mTHP "always", every page read back and compared;
 *   5. /proc/self/pagemap + /proc/kpageflags: how many pages came back
 *      inside a large folio.
 *
 * "MTHPTEST PASS ..." or "MTHPTEST FAIL ..." is the last line.  Expectations:
 * -l: large swap-ins must happen (the device alone: shows the case is real);
 * -n: none may happen (the swap backend serves the device).  Either way every
 * byte must come back.
 *
 * usage: mthptest [-p PAGES] (-l | -n)
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "guest.h"

#ifndef MADV_PAGEOUT
#define MADV_PAGEOUT 21
#endif

#define PAGE 4096
#define ALIGN (64 * 1024)
#define PARTS 4
#define KPF_COMPOUND_HEAD 15
#define KPF_COMPOUND_TAIL 16

static const char *const sizes[] = { "16kB", "32kB", "64kB" };

static int set_mthp(const char *mode)
{
	char path[128];
	size_t i;

	for (i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
		FILE *f;

		snprintf(path, sizeof(path),
			 "/sys/kernel/mm/transparent_hugepage/hugepages-%s/enabled", sizes[i]);
		f = fopen(path, "w");
		if (!f || fputs(mode, f) < 0 || fclose(f)) {
			printf("mthptest: cannot set %s to %s: %s\n", path, mode, strerror(errno));
			return -1;
		}
	}
	return 0;
}

/* Distinct per run: the RAM disk keeps what an earlier run wrote at the
 * same offsets, which must not pass for this run's pages. */
static unsigned long salt;

/* Compressible, distinct per page: the backend stores it compressed. */
static void fill(unsigned char *p, uint64_t idx)
{
	static const char *const words[] = { "large ", "folio ", "swap ", "in ",
		"backend ", "device ", "stale ", "page " };
	uint64_t s = mix64(idx + 1 + ((uint64_t)salt << 32));
	size_t i = 0;

	i = (size_t)snprintf((char *)p, PAGE, "mthptest run %lu page %llu ", salt,
			     (unsigned long long)idx);
	while (i < PAGE) {
		const char *w;
		size_t n;

		s = mix64(s);
		w = words[s % 8];
		n = strlen(w);
		if (n > PAGE - i)
			n = PAGE - i;
		memcpy(p + i, w, n);
		i += n;
	}
}

/* pagemap entry of the page at `addr`. */
static uint64_t pagemap(int fd, const void *addr)
{
	uint64_t e = 0;

	if (pread(fd, &e, sizeof(e), (off_t)((uintptr_t)addr / PAGE * 8)) != sizeof(e))
		return 0;
	return e;
}

int main(int argc, char **argv)
{
	uint64_t pages = 1024, i, swapped = 0, large = 0, bad = 0, resident = 0;
	int expect_large = -1, opt, pm, kf, failed = 0;
	unsigned char *raw, *mem, *extra, expect[PAGE];
	cpu_set_t cpus;

	while ((opt = getopt(argc, argv, "p:ln")) != -1) {
		switch (opt) {
		case 'p': pages = strtoull(optarg, NULL, 0); break;
		case 'l': expect_large = 1; break;
		case 'n': expect_large = 0; break;
		default:
			fprintf(stderr, "usage: mthptest [-p PAGES] (-l | -n)\n");
			return 2;
		}
	}
	pages -= pages % (PARTS * ALIGN / PAGE);
	if (expect_large < 0 || pages == 0)
		return 2;
	salt = (unsigned long)getpid();
	CPU_ZERO(&cpus);
	CPU_SET(0, &cpus);
	if (sched_setaffinity(0, sizeof(cpus), &cpus))
		perror("sched_setaffinity");
	if (set_mthp("never"))
		return 2;

	raw = mmap(NULL, pages * PAGE + ALIGN, PROT_READ | PROT_WRITE,
		   MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	extra = mmap(NULL, PARTS * PAGE, PROT_READ | PROT_WRITE,
		     MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (raw == MAP_FAILED || extra == MAP_FAILED) {
		perror("mmap");
		return 2;
	}
	mem = (unsigned char *)(((uintptr_t)raw + ALIGN - 1) & ~(uintptr_t)(ALIGN - 1));
	for (i = 0; i < pages; i++)
		fill(mem + i * PAGE, i);
	for (i = 0; i < PARTS; i++)
		fill(extra + i * PAGE, pages + i);

	/* Page out one page at a time, in address order, one extra between parts. */
	for (i = 0; i < pages; i++) {
		if (i % (pages / PARTS) == 0 && i &&
		    madvise(extra + (i / (pages / PARTS)) * PAGE, PAGE, MADV_PAGEOUT))
			perror("madvise extra");
		if (madvise(mem + i * PAGE, PAGE, MADV_PAGEOUT)) {
			perror("madvise");
			return 2;
		}
	}
	pm = open("/proc/self/pagemap", O_RDONLY);
	kf = open("/proc/kpageflags", O_RDONLY);
	if (pm < 0 || kf < 0) {
		perror("pagemap/kpageflags");
		return 2;
	}
	for (i = 0; i < pages; i++)
		swapped += (pagemap(pm, mem + i * PAGE) >> 62 & 1) != 0;

	if (set_mthp("always"))
		return 2;
	for (i = 0; i < pages; i++) {
		fill(expect, i);
		if (memcmp(mem + i * PAGE, expect, PAGE)) {
			if (bad < 8)
				printf("mthptest: page %llu differs\n", (unsigned long long)i);
			bad++;
		}
	}
	for (i = 0; i < pages; i++) {
		uint64_t e = pagemap(pm, mem + i * PAGE), flags = 0;

		if (!(e >> 63 & 1))
			continue;
		resident++;
		if (pread(kf, &flags, sizeof(flags),
			  (off_t)((e & ((1ULL << 55) - 1)) * 8)) != sizeof(flags))
			continue;
		large += (flags >> KPF_COMPOUND_HEAD & 1) || (flags >> KPF_COMPOUND_TAIL & 1);
	}
	set_mthp("never");

	if (bad || swapped < pages / 2 || resident != pages ||
	    (expect_large ? large == 0 : large != 0))
		failed = 1;
	printf("MTHPTEST %s bad_pages=%llu large_pages=%llu swapped=%llu resident=%llu pages=%llu expect=%s\n",
	       failed ? "FAIL" : "PASS", (unsigned long long)bad, (unsigned long long)large,
	       (unsigned long long)swapped, (unsigned long long)resident,
	       (unsigned long long)pages, expect_large ? "large" : "order-0");
	return failed;
}
