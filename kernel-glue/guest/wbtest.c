// SPDX-License-Identifier: GPL-2.0-only OR MIT
/*
 * wbtest - a hot working set beside a larger cold set, under a pool limit:
 * which of them the swap backend keeps in RAM.
 *
 * The cold set (COLD pages) is written once and paged out (MADV_PAGEOUT) in
 * full: more than the pool limit holds. Then, every round, the hot set (HOT
 * pages) is paged out, and every hot page is read back, checked and written
 * with the round's next version (a write: the page is dirty again and the
 * next page-out stores it anew). The disk reads of each round's touch (the
 * disk's sectors read, /sys/block/DISK/stat; run with vm.page-cluster=0 so a
 * swap-in reads one page) are hot pages the backend did not hold: a backend
 * that refuses stores once full sends the newest pages, the hot ones, to
 * disk every round; one that writes its coldest pages back keeps them.
 *
 * Pages are half text, half zeros (about 4:1 with lz4), each one distinct
 * (its first 16 bytes name its set, index and version): no page is shared.
 *
 * -R FILE: after each page-out of the hot set, write "8M" to FILE (the
 * memory.reclaim of the test's memory cgroup). A page the backend refused is
 * written to disk but stays in the swap cache until reclaim frees it, so a
 * touch right after would find it in RAM: reclaim, as memory pressure would,
 * leaves only what the backend holds and what is on disk.
 *
 * -w FILE: after the rounds, print "wbtest: holding" and wait until FILE
 * exists (the host adds memory pressure meanwhile), then check every page of
 * both sets once more (written back pages come from the disk).
 *
 * Prints per round "WBTEST round=R hot_disk_reads=N", and at the end
 * "WBTEST PASS bad_pages=0 ..." or "WBTEST FAIL ...".
 *
 * usage: wbtest -c COLD -h HOT -r ROUNDS -d DISK [-R FILE] [-w FILE]
 * and:   wbtest -z MIB   (write MIB of zero pages, hold them 2 s: pressure
 *                         that adds nothing to a swap pool; 6.12's zeromap
 *                         keeps zero pages)
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "guest.h"

#define PAGE 4096

/* The content of page `idx` of set `set` at version `version`. */
static void expected_page(unsigned char *p, uint64_t set, uint64_t idx, uint64_t version)
{
	uint64_t tag[2] = { (set << 56) | idx, version };

	memset(p, 0, PAGE);
	memcpy(p, tag, sizeof(tag));
	fill_text(p + sizeof(tag), PAGE / 2 - sizeof(tag), (set << 56) ^ (idx << 16) ^ version);
}

/* Sectors read so far from the disk whose stat file is `stat`. */
static long long sectors_read(const char *stat)
{
	long long f[3] = { 0, 0, 0 };
	FILE *f_in = fopen(stat, "r");

	if (!f_in || fscanf(f_in, "%lld %lld %lld", &f[0], &f[1], &f[2]) != 3) {
		fprintf(stderr, "wbtest: cannot read %s\n", stat);
		exit(2);
	}
	fclose(f_in);
	return f[2];
}

/* Ask the memory cgroup whose memory.reclaim is `file` to reclaim 8 MiB. It
 * may reclaim less (EAGAIN): what is left is what it could not free. */
static void reclaim(const char *file)
{
	FILE *f = fopen(file, "w");

	if (!f) {
		fprintf(stderr, "wbtest: cannot open %s\n", file);
		exit(2);
	}
	fputs("8M", f);
	fclose(f);
}

static unsigned char *map_pages(uint64_t pages)
{
	void *p = mmap(NULL, pages * PAGE, PROT_READ | PROT_WRITE,
		       MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

	if (p == MAP_FAILED) {
		perror("wbtest: mmap");
		exit(2);
	}
	return p;
}

/* Page out `pages` pages at `p`, 256 at a time (as reclaim takes them). */
static void page_out(unsigned char *p, uint64_t pages)
{
	uint64_t i, n;

	for (i = 0; i < pages; i += n) {
		n = pages - i < 256 ? pages - i : 256;
		if (madvise(p + i * PAGE, n * PAGE, MADV_PAGEOUT)) {
			perror("wbtest: madvise(MADV_PAGEOUT)");
			exit(2);
		}
	}
}

/* Pages of `pages` at `p` (set `set`) that differ from version `version`. */
static uint64_t check(unsigned char *p, uint64_t set, uint64_t pages, uint64_t version)
{
	static unsigned char want[PAGE];
	uint64_t i, bad = 0;

	for (i = 0; i < pages; i++) {
		expected_page(want, set, i, version);
		bad += memcmp(p + i * PAGE, want, PAGE) != 0;
	}
	return bad;
}

static void write_pages(unsigned char *p, uint64_t set, uint64_t pages, uint64_t version)
{
	uint64_t i;

	for (i = 0; i < pages; i++)
		expected_page(p + i * PAGE, set, i, version);
}

static int zero_pressure(uint64_t mib)
{
	uint64_t pages = mib << 8, i;
	unsigned char *p = map_pages(pages);

	for (i = 0; i < pages; i++)
		p[i * PAGE] = 0;
	/* Touched again after a while: the pages were really there. */
	sleep(2);
	for (i = 0; i < pages; i++)
		p[i * PAGE + 1] = 0;
	printf("WBTEST pressure %llu MiB of zero pages\n", (unsigned long long)mib);
	return 0;
}

int main(int argc, char **argv)
{
	uint64_t cold = 0, hot = 0, rounds = 0, r, bad = 0, hot_reads = 0;
	const char *disk = NULL, *go = NULL, *reclaim_file = NULL;
	unsigned char *cold_p, *hot_p;
	char stat[256];
	int opt;

	while ((opt = getopt(argc, argv, "c:h:r:d:w:z:R:")) != -1) {
		switch (opt) {
		case 'c': cold = strtoull(optarg, NULL, 0); break;
		case 'h': hot = strtoull(optarg, NULL, 0); break;
		case 'r': rounds = strtoull(optarg, NULL, 0); break;
		case 'd': disk = optarg; break;
		case 'w': go = optarg; break;
		case 'R': reclaim_file = optarg; break;
		case 'z': return zero_pressure(strtoull(optarg, NULL, 0));
		default:
			fprintf(stderr, "usage: wbtest -c COLD -h HOT -r ROUNDS -d DISK [-R FILE] [-w FILE] | -z MIB\n");
			return 2;
		}
	}
	if (!cold || !hot || !rounds || !disk) {
		fprintf(stderr, "wbtest: -c, -h, -r and -d are required\n");
		return 2;
	}
	snprintf(stat, sizeof(stat), "/sys/block/%s/stat", disk);
	cold_p = map_pages(cold);
	hot_p = map_pages(hot);
	write_pages(cold_p, 1, cold, 0);
	write_pages(hot_p, 2, hot, 0);
	page_out(cold_p, cold);
	for (r = 1; r <= rounds; r++) {
		long long before, reads;
		uint64_t round_bad;

		page_out(hot_p, hot);
		/* A pause, as a working set has between its uses (and the disk
		 * writes of the page-out complete). */
		usleep(200000);
		if (reclaim_file) {
			/* Twice: a page still being written is passed over once. */
			reclaim(reclaim_file);
			usleep(100000);
			reclaim(reclaim_file);
		}
		before = sectors_read(stat);
		round_bad = check(hot_p, 2, hot, r - 1);
		write_pages(hot_p, 2, hot, r);
		reads = (sectors_read(stat) - before) / 8;
		hot_reads += reads;
		bad += round_bad;
		printf("WBTEST round=%llu hot_disk_reads=%lld bad_pages=%llu\n",
		       (unsigned long long)r, reads, (unsigned long long)round_bad);
		fflush(stdout);
	}
	if (go) {
		printf("wbtest: holding\n");
		fflush(stdout);
		while (access(go, F_OK))
			usleep(100000);
	}
	bad += check(hot_p, 2, hot, rounds);
	bad += check(cold_p, 1, cold, 0);
	printf("WBTEST %s bad_pages=%llu hot_disk_reads=%llu cold=%llu hot=%llu rounds=%llu\n",
	       bad ? "FAIL" : "PASS", (unsigned long long)bad, (unsigned long long)hot_reads,
	       (unsigned long long)cold, (unsigned long long)hot, (unsigned long long)rounds);
	return bad ? 1 : 0;
}
