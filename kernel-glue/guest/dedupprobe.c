// SPDX-License-Identifier: GPL-2.0-only OR MIT
/*
 * dedupprobe - can a process in one memory cgroup learn, through the swap
 * backend's deduplication, which pages a process in another one holds?
 *
 * The victim holds PAGES secret pages in swap.  The attacker, in another
 * memory cgroup, swaps out a guess of each secret page ("right") and a page
 * nobody holds ("wrong"), one at a time (MADV_PAGEOUT), and watches the
 * backend's dedup_hits counter (the most direct signal there is: the test runs
 * the attacker as root so it can read the root-only stats).  Each guess is a
 * content the attacker has not stored before, so a hit can only come from the
 * victim's copy.
 *
 *   dedupprobe victim PAGES SEED READY GO
 *       fill the pages, page them out, create READY, wait until GO exists,
 *       read every page back and compare:
 *       "DEDUPPROBE victim PASS bad_pages=0 swapped=N pages=N"
 *   dedupprobe attacker PAGES SEED STATS CHARGE
 *       "DEDUPPROBE attacker right_moved=R wrong_moved=W right_charged=RC
 *        wrong_charged=WC swapped=S guesses=G"
 *       (R of PAGES right guesses moved the counter, W of PAGES wrong ones).
 *       First, the attacker's own charge (CHARGE: its cgroup's
 *       memory.zswap.current): PAGES right guesses (of the victim's pages
 *       PAGES to 2 * PAGES) paged out together and kept, then PAGES wrong
 *       ones; RC and WC are what each batch added to
 *       the charge, read after the memcg statistics' periodic flush (2 s;
 *       a read flushes only past a batch of updates). A right guess joining
 *       another cgroup's copy would add nothing if charges followed sharing.
 *   dedupprobe timing PAGES SEED UID ROUNDS
 *       the attacker without the statistics: drops to user UID (it cannot
 *       read them), then ROUNDS times, for each page, swaps out a right and
 *       a wrong guess and times each one's swap-out (MADV_PAGEOUT) and
 *       swap-in (the first read after it). A right guess that joins the
 *       victim's copy skips compression, so its swap-out is faster: in each
 *       (right, wrong) pair it counts which was faster. Every round guesses
 *       other wrong pages (a page's own compression time would otherwise
 *       decide its pair in every round alike).
 *       "DEDUPPROBE timing pairs=N out_right_faster=R in_right_faster=I
 *        out_median_right=NS out_median_wrong=NS in_median_right=NS
 *        in_median_wrong=NS swapped=S"
 *       (with no signal R and I are about N/2).
 *   dedupprobe read-as UID FILE
 *       drop to user UID and try to read FILE: prints "refused" or "allowed"
 *       (the backend's statistics must be root's alone).
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <grp.h>
#include <sched.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#ifndef MADV_PAGEOUT
#define MADV_PAGEOUT 21
#endif

#define PAGE 4096

/*
 * Page `index` of the pages of `seed`: words in random order, distinct per
 * (seed, index), compressible enough for lz4 (a page of random letters is not:
 * the backend would reject it as poorly compressible and it would go to disk).
 */
static void fill(unsigned char *page, uint64_t seed, uint64_t index)
{
	static const char *const words[] = { "swap ", "page ", "merge ", "pool ",
					     "delta ", "zstd ", "ksm ", "lru " };
	uint64_t x = (seed * 0x9e3779b97f4a7c15ULL) ^ (index * 0xbf58476d1ce4e5b9ULL);
	size_t at = 0, n;

	x |= 1;
	while (at < PAGE) {
		x ^= x << 13;
		x ^= x >> 7;
		x ^= x << 17;
		n = strlen(words[x % 8]);
		if (n > PAGE - at)
			n = PAGE - at;
		memcpy(page + at, words[x % 8], n);
		at += n;
	}
	memcpy(page, &seed, sizeof(seed));
	memcpy(page + 8, &index, sizeof(index));
}

/*
 * Whether the page at `addr` is swapped out: its /proc/self/pagemap entry has
 * bit 62 (mincore cannot tell: it counts a page still in the swap cache as
 * resident).
 */
static int swapped(void *addr)
{
	static int fd = -1;
	uint64_t entry = 0;

	if (fd < 0)
		fd = open("/proc/self/pagemap", O_RDONLY);
	if (pread(fd, &entry, sizeof(entry), (off_t)((uintptr_t)addr / PAGE) * 8) != 8)
		return 0;
	return (entry >> 62 & 1) != 0;
}

/* The number in a one-number file (a cgroup's memory.zswap.current), or -1. */
static long read_number(const char *path)
{
	long value = -1;
	FILE *f = fopen(path, "r");

	if (!f)
		return -1;
	if (fscanf(f, "%ld", &value) != 1)
		value = -1;
	fclose(f);
	return value;
}

static long dedup_hits(const char *stats)
{
	char line[256];
	long value = -1;
	FILE *f = fopen(stats, "r");

	if (!f)
		return -1;
	while (fgets(line, sizeof(line), f))
		if (sscanf(line, "dedup_hits %ld", &value) == 1)
			break;
	fclose(f);
	return value;
}

static void *map(size_t pages)
{
	void *p = mmap(NULL, pages * PAGE, PROT_READ | PROT_WRITE,
		       MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

	if (p == MAP_FAILED) {
		perror("mmap");
		exit(1);
	}
	return p;
}

static int victim(long pages, uint64_t seed, const char *ready, const char *go)
{
	unsigned char *area = map(pages), want[PAGE];
	long i, bad = 0, out = 0;
	struct stat st;
	FILE *f;

	for (i = 0; i < pages; i++)
		fill(area + i * PAGE, seed, i);
	if (madvise(area, pages * PAGE, MADV_PAGEOUT))
		perror("madvise");
	for (i = 0; i < pages; i++)
		out += swapped(area + i * PAGE);
	f = fopen(ready, "w");
	if (f)
		fclose(f);
	while (stat(go, &st))
		usleep(100000);
	for (i = 0; i < pages; i++) {
		fill(want, seed, i);
		bad += memcmp(area + i * PAGE, want, PAGE) != 0;
	}
	printf("DEDUPPROBE victim %s bad_pages=%ld swapped=%ld pages=%ld\n",
	       bad ? "FAIL" : "PASS", bad, out, pages);
	return bad != 0;
}

/* Swap out one page of (seed, index); whether dedup_hits moved, or -1 if the
 * page did not leave memory. */
static int guess(uint64_t seed, long index, const char *stats)
{
	unsigned char *page = map(1);
	long before, after;
	int gone;

	fill(page, seed, index);
	before = dedup_hits(stats);
	madvise(page, PAGE, MADV_PAGEOUT);
	gone = swapped(page);
	after = dedup_hits(stats);
	munmap(page, PAGE);
	if (!gone)
		return -1;
	return after != before;
}

/* The statistics' periodic flush runs every 2 s: wait it out. */
static long settled_number(const char *path)
{
	sleep(3);
	return read_number(path);
}

/*
 * Page out pages `first` to `first + pages` of `seed` together and keep them:
 * what they added to the charge in `charge`. The pages go after the reading.
 */
static long charged_by(uint64_t seed, long first, long pages, const char *charge, long *out)
{
	unsigned char *area = map(pages);
	long i, before, after;

	for (i = 0; i < pages; i++)
		fill(area + i * PAGE, seed, first + i);
	before = settled_number(charge);
	madvise(area, pages * PAGE, MADV_PAGEOUT);
	for (i = 0; i < pages; i++)
		*out += swapped(area + i * PAGE);
	after = settled_number(charge);
	munmap(area, pages * PAGE);
	return after - before;
}

static int attacker(long pages, uint64_t seed, const char *stats, const char *charge)
{
	long i, right = 0, wrong = 0, out = 0, right_charged, wrong_charged, batched = 0;
	int moved;

	if (dedup_hits(stats) < 0) {
		printf("DEDUPPROBE attacker FAIL cannot read %s\n", stats);
		return 1;
	}
	if (read_number(charge) < 0) {
		printf("DEDUPPROBE attacker FAIL cannot read %s\n", charge);
		return 1;
	}
	/*
	 * Before any guess is freed (a free uncharges later, in a batch), and of
	 * pages past the ones guessed one at a time below (the victim holds at
	 * least 2 * PAGES): none of those may meet a copy of the attacker's own.
	 */
	right_charged = charged_by(seed, pages, pages, charge, &batched);
	wrong_charged = charged_by(~seed, pages, pages, charge, &batched);
	for (i = 0; i < pages; i++) {
		moved = guess(seed, i, stats);
		out += moved >= 0;
		right += moved > 0;
		/* A page of a seed nobody holds. */
		moved = guess(~seed, i, stats);
		out += moved >= 0;
		wrong += moved > 0;
	}
	printf("DEDUPPROBE attacker right_moved=%ld wrong_moved=%ld right_charged=%ld wrong_charged=%ld swapped=%ld guesses=%ld\n",
	       right, wrong, right_charged, wrong_charged, out + batched, 4 * pages);
	return 0;
}

static uint64_t now_ns(void)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return (uint64_t)t.tv_sec * 1000000000ULL + (uint64_t)t.tv_nsec;
}

/* Swap out one page of (seed, index), then read it back: the time of each
 * (ns), and whether it left memory. */
static int timed_guess(uint64_t seed, long index, uint64_t *out_ns, uint64_t *in_ns)
{
	volatile unsigned char *page = map(1);
	uint64_t t0, t1, t2;
	int gone;

	fill((unsigned char *)page, seed, index);
	t0 = now_ns();
	madvise((void *)page, PAGE, MADV_PAGEOUT);
	t1 = now_ns();
	gone = swapped((void *)page);
	(void)page[PAGE / 2];
	t2 = now_ns();
	munmap((void *)page, PAGE);
	*out_ns = t1 - t0;
	*in_ns = t2 - t1;
	return gone;
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

static uint64_t median(uint64_t *v, long n)
{
	qsort(v, n, sizeof(*v), cmp_u64);
	return n ? v[n / 2] : 0;
}

static int timing(long pages, uint64_t seed, uid_t uid, long rounds)
{
	long n = pages * rounds, k = 0, r, i, out_faster = 0, in_faster = 0, out = 0;
	uint64_t *times = calloc(4 * n, sizeof(uint64_t));
	uint64_t *out_right = times, *out_wrong = times + n;
	uint64_t *in_right = times + 2 * n, *in_wrong = times + 3 * n;

	/* Opened while root: a process that drops to another user is no longer
	 * dumpable, and its /proc/self files become root's. */
	swapped(&k);
	if (!times || setgroups(0, NULL) || setresgid(uid, uid, uid) || setresuid(uid, uid, uid)) {
		printf("DEDUPPROBE timing FAIL cannot become user %ld\n", (long)uid);
		return 1;
	}
	for (r = 0; r < rounds; r++) {
		for (i = 0; i < pages; i++, k++) {
			/* Alternate which goes first, so drift favours neither. */
			uint64_t wrong = ~seed ^ ((uint64_t)r << 40);

			if ((r + i) & 1) {
				out += timed_guess(seed, i, &out_right[k], &in_right[k]);
				out += timed_guess(wrong, i, &out_wrong[k], &in_wrong[k]);
			} else {
				out += timed_guess(wrong, i, &out_wrong[k], &in_wrong[k]);
				out += timed_guess(seed, i, &out_right[k], &in_right[k]);
			}
			out_faster += out_right[k] < out_wrong[k];
			in_faster += in_right[k] < in_wrong[k];
		}
	}
	printf("DEDUPPROBE timing pairs=%ld out_right_faster=%ld in_right_faster=%ld "
	       "out_median_right=%llu out_median_wrong=%llu in_median_right=%llu "
	       "in_median_wrong=%llu swapped=%ld\n",
	       n, out_faster, in_faster,
	       (unsigned long long)median(out_right, n), (unsigned long long)median(out_wrong, n),
	       (unsigned long long)median(in_right, n), (unsigned long long)median(in_wrong, n),
	       out);
	free(times);
	return 0;
}

/* Whether user `uid` may read `path`: "refused" or "allowed". */
static int read_as(uid_t uid, const char *path)
{
	char byte;
	int fd;

	if (setgroups(0, NULL) || setresgid(uid, uid, uid) || setresuid(uid, uid, uid)) {
		perror("cannot become that user");
		return 1;
	}
	fd = open(path, O_RDONLY);
	if (fd >= 0 && read(fd, &byte, 1) >= 0) {
		printf("allowed\n");
		return 0;
	}
	printf("refused\n");
	return 0;
}

int main(int argc, char **argv)
{
	cpu_set_t cpu;

	/*
	 * On one CPU: a page just written waits in that CPU's LRU batch, and
	 * MADV_PAGEOUT drains only its own CPU's batch before it looks.
	 */
	CPU_ZERO(&cpu);
	CPU_SET(0, &cpu);
	sched_setaffinity(0, sizeof(cpu), &cpu);
	if (argc == 6 && !strcmp(argv[1], "victim"))
		return victim(atol(argv[2]), strtoull(argv[3], NULL, 0), argv[4], argv[5]);
	if (argc == 4 && !strcmp(argv[1], "read-as"))
		return read_as((uid_t)atol(argv[2]), argv[3]);
	if (argc == 6 && !strcmp(argv[1], "timing"))
		return timing(atol(argv[2]), strtoull(argv[3], NULL, 0), (uid_t)atol(argv[4]),
			      atol(argv[5]));
	if (argc == 6 && !strcmp(argv[1], "attacker"))
		return attacker(atol(argv[2]), strtoull(argv[3], NULL, 0), argv[4], argv[5]);
	fprintf(stderr, "usage: dedupprobe victim PAGES SEED READY GO | attacker PAGES SEED STATS CHARGE |"
		" timing PAGES SEED UID ROUNDS | read-as UID FILE\n");
	return 2;
}
