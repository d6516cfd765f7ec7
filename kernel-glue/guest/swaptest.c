// SPDX-License-Identifier: GPL-2.0-only OR MIT
/*
 * swaptest - fill more anonymous memory than the guest has, read it all back,
 * check every byte.
 *
 * Several processes (default 2) each map an equal share of TOTAL MiB of
 * anonymous memory.  Every round, each process writes every page with a
 * content that depends on (page index, round), so data from an earlier round
 * is caught as corruption, then reads every page back and counts bytes that
 * differ.  The mix (chosen per page by a hash of its index):
 *
 *   zero page          1/8   (6.12 keeps these in its zeromap, not in zswap)
 *   same-filled word   1/8   (one 64-bit value repeated)
 *   duplicate          2/8   (one of DUP_TEMPLATES random pages, many copies)
 *   text               2/8   (words from a small dictionary: compresses well)
 *   random             1/8   (incompressible)
 *   half text/half 0   1/8
 *
 * Between the write and the read pass of each round all processes meet at a
 * barrier and the parent prints a snapshot of the files named with -s (the
 * memory held by the swap backend at its fullest), so two runs compare the
 * same moment.  The last line is "SWAPTEST PASS ..." or "SWAPTEST FAIL ...".
 *
 * -w FILE: after the last round, each process keeps its memory, prints
 * "swaptest: holding", waits until FILE exists, then checks every byte once
 * more (the host swaps off meanwhile, so every page comes back through the
 * swap backend's load before the final check).
 *
 * -x flips one byte after the barrier of round 0: a self-test that the check
 * can fail (the run must then end in "SWAPTEST FAIL ... bad_bytes=1").
 *
 * -v N marks N pages of each process (spread over its share) as victims: they
 * begin with "FOLDSWAP-INJECT!", which a test build of the module fails to
 * load (parameter inject_load_errors).  A page whose swap-in failed raises
 * SIGBUS when touched: it is counted as lost, never compared.  Lost pages
 * fail the run unless -e is given; with -e the run passes only if at least
 * one victim page, and nothing but victim pages, was lost (the swap-in
 * failed rather than returning stale bytes from the device).
 *
 * usage: swaptest [-m TOTAL_MIB] [-r ROUNDS] [-p PROCS] [-s FILE]... [-w FILE]
 *                 [-x] [-v N [-e]]
 */
#include <errno.h>
#include <setjmp.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include "guest.h"

#define PAGE 4096
#define DUP_TEMPLATES 16
#define MAX_SNAP 8


static void fill_random(unsigned char *p, size_t len, uint64_t seed)
{
	uint64_t s = mix64(seed) | 1;
	size_t i;

	for (i = 0; i + 8 <= len; i += 8) {
		s ^= s << 13;
		s ^= s >> 7;
		s ^= s << 17;
		memcpy(p + i, &s, 8);
	}
}

#define VICTIM_MAGIC "FOLDSWAP-INJECT!"
static uint64_t victims, victim_stride;

static int is_victim(uint64_t idx)
{
	return victims && idx % victim_stride == victim_stride / 2 &&
	       idx / victim_stride < victims;
}

static void base_page(unsigned char *p, uint64_t idx, uint64_t round);

/* The expected content of page `idx` in round `round`. */
static void expected_page(unsigned char *p, uint64_t idx, uint64_t round)
{
	base_page(p, idx, round);
	if (is_victim(idx))
		memcpy(p, VICTIM_MAGIC, sizeof(VICTIM_MAGIC) - 1);
}

static void base_page(unsigned char *p, uint64_t idx, uint64_t round)
{
	uint64_t h = mix64(idx * 0x100000001b3ULL + 7);
	uint64_t seed = mix64(idx ^ (round << 40));
	uint64_t word;
	size_t i;

	switch (h % 8) {
	case 0:
		memset(p, 0, PAGE);
		break;
	case 1:
		word = 0x0101010101010101ULL * (1 + (idx + round) % 200);
		for (i = 0; i < PAGE; i += 8)
			memcpy(p + i, &word, 8);
		break;
	case 2:
	case 3:
		fill_random(p, PAGE, 0xd0d0 + (h >> 8) % DUP_TEMPLATES + round * 1000);
		break;
	case 4:
	case 5:
		fill_text(p, PAGE, seed);
		break;
	case 6:
		fill_random(p, PAGE, seed);
		break;
	default:
		fill_text(p, PAGE / 2, seed);
		memset(p + PAGE / 2, 0, PAGE / 2);
		break;
	}
}

static void print_snapshot(char **files, int nfiles, int round)
{
	char buf[8192];
	int i;

	for (i = 0; i < nfiles; i++) {
		FILE *f = fopen(files[i], "r");
		size_t n;

		printf("SNAPSHOT round=%d file=%s\n", round, files[i]);
		if (!f) {
			printf("  (cannot open: %s)\n", strerror(errno));
			continue;
		}
		while ((n = fread(buf, 1, sizeof(buf), f)) > 0)
			fwrite(buf, 1, n, stdout);
		fclose(f);
	}
	printf("SNAPSHOT end\n");
	fflush(stdout);
}

static int full_read(int fd, void *p, size_t n)
{
	return read(fd, p, n) == (ssize_t)n ? 0 : -1;
}

/* One process's share: returns the number of bad bytes it saw. */
static int corrupt_once;
static const char *hold_file;

static sigjmp_buf bus_jmp;

static void on_sigbus(int sig)
{
	(void)sig;
	siglongjmp(bus_jmp, 1);
}

/* Pages lost to a failed swap-in (SIGBUS), and of those not victims. */
static uint64_t lost, lost_other;

/* Count the bytes of `pages` pages at `mem` that differ from round `round`. */
static uint64_t check_pages(unsigned char *mem, uint64_t first, uint64_t pages, int round)
{
	unsigned char expect[PAGE];
	volatile uint64_t i, bad = 0;

	for (i = 0; i < pages; i++) {
		unsigned char *p = mem + i * PAGE;
		size_t b;

		expected_page(expect, first + i, round);
		if (sigsetjmp(bus_jmp, 1)) {
			lost++;
			lost_other += !is_victim(first + i);
			fprintf(stderr, "swaptest[%d]: page %llu lost (SIGBUS)%s\n", getpid(),
				(unsigned long long)(first + i),
				is_victim(first + i) ? "" : " NOT A VICTIM");
			continue;
		}
		if (memcmp(p, expect, PAGE) == 0)
			continue;
		for (b = 0; b < PAGE; b++)
			bad += p[b] != expect[b];
		if (bad < 64 * PAGE)
			fprintf(stderr, "swaptest[%d]: page %llu round %d differs\n",
				getpid(), (unsigned long long)(first + i), round);
	}
	return bad;
}

static uint64_t run_share(uint64_t first, uint64_t pages, int rounds,
			  int ready_fd, int go_fd)
{
	unsigned char *mem;
	uint64_t bad = 0;
	int round;

	mem = mmap(NULL, pages * PAGE, PROT_READ | PROT_WRITE,
		   MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (mem == MAP_FAILED) {
		perror("mmap");
		exit(2);
	}
	for (round = 0; round < rounds; round++) {
		uint64_t i, round_bad;
		char c = 'r';

		for (i = 0; i < pages; i++)
			expected_page(mem + i * PAGE, first + i, round);
		if (write(ready_fd, &c, 1) != 1 || full_read(go_fd, &c, 1))
			exit(2);
		if (corrupt_once && round == 0 && first == 0)
			mem[pages / 2 * PAGE + 123] ^= 0x40;
		round_bad = check_pages(mem, first, pages, round);
		printf("swaptest[%d]: round %d pages %llu bad_bytes %llu\n", getpid(),
		       round, (unsigned long long)pages, (unsigned long long)round_bad);
		fflush(stdout);
		bad += round_bad;
	}
	if (hold_file) {
		uint64_t held_bad;

		printf("swaptest[%d]: holding\n", getpid());
		fflush(stdout);
		while (access(hold_file, F_OK) != 0)
			usleep(100000);
		held_bad = check_pages(mem, first, pages, rounds - 1);
		printf("swaptest[%d]: after hold pages %llu bad_bytes %llu lost_pages %llu\n",
		       getpid(), (unsigned long long)pages, (unsigned long long)held_bad,
		       (unsigned long long)lost);
		fflush(stdout);
		bad += held_bad;
	}
	/* A lost page stays poisoned: touching it again would SIGBUS again. */
	if (!lost)
		munmap(mem, pages * PAGE);
	return bad;
}

int main(int argc, char **argv)
{
	uint64_t total_mib = 384, pages_each, bad = 0;
	int rounds = 3, procs = 2, nsnap = 0, opt, i, round, failed = 0, expect_loss = 0;
	uint64_t nlost = 0, nlost_other = 0;
	char *snap[MAX_SNAP];
	int ready[2], go[2], result[2];

	while ((opt = getopt(argc, argv, "m:r:p:s:w:xv:e")) != -1) {
		switch (opt) {
		case 'm': total_mib = strtoull(optarg, NULL, 0); break;
		case 'r': rounds = atoi(optarg); break;
		case 'p': procs = atoi(optarg); break;
		case 'x': corrupt_once = 1; break;
		case 'w': hold_file = optarg; break;
		case 'v': victims = strtoull(optarg, NULL, 0); break;
		case 'e': expect_loss = 1; break;
		case 's':
			if (nsnap < MAX_SNAP)
				snap[nsnap++] = optarg;
			break;
		default:
			fprintf(stderr, "usage: swaptest [-m MiB] [-r rounds] [-p procs] [-s file]...\n");
			return 2;
		}
	}
	if (procs < 1 || rounds < 1 || total_mib < 1)
		return 2;
	pages_each = total_mib * 256 / procs;
	if (victims) {
		struct sigaction sa;

		if (victims > pages_each)
			victims = pages_each;
		victim_stride = pages_each / victims;
		memset(&sa, 0, sizeof(sa));
		sa.sa_handler = on_sigbus;
		sigemptyset(&sa.sa_mask);
		if (sigaction(SIGBUS, &sa, NULL)) {
			perror("sigaction");
			return 2;
		}
	}
	if (pipe(ready) || pipe(go) || pipe(result)) {
		perror("pipe");
		return 2;
	}
	printf("swaptest: %llu MiB in %d processes, %d rounds\n",
	       (unsigned long long)total_mib, procs, rounds);
	fflush(stdout);

	for (i = 0; i < procs; i++) {
		pid_t pid = fork();

		if (pid < 0) {
			perror("fork");
			return 2;
		}
		if (pid == 0) {
			uint64_t r[3];

			r[0] = run_share(i * pages_each, pages_each, rounds, ready[1], go[0]);
			r[1] = lost;
			r[2] = lost_other;
			if (write(result[1], r, sizeof(r)) != sizeof(r))
				_exit(2);
			_exit(r[0] ? 1 : 0);
		}
	}

	/* Barrier per round: all written -> snapshot -> all read. */
	for (round = 0; round < rounds; round++) {
		char c;

		for (i = 0; i < procs; i++)
			if (full_read(ready[0], &c, 1)) {
				failed = 1;
				break;
			}
		if (failed)
			break;
		print_snapshot(snap, nsnap, round);
		for (i = 0; i < procs; i++)
			if (write(go[1], "g", 1) != 1)
				failed = 1;
	}

	for (i = 0; i < procs; i++) {
		int status;

		if (wait(&status) < 0) {
			failed = 1;
			break;
		}
		/* A child killed (OOM, SIGBUS on a failed swap-in) fails the run. */
		if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
			failed = 1;
	}
	close(result[1]);
	for (i = 0; i < procs; i++) {
		uint64_t r[3];

		if (full_read(result[0], r, sizeof(r))) {
			failed = 1;
			break;
		}
		bad += r[0];
		nlost += r[1];
		nlost_other += r[2];
	}
	if (bad || nlost_other || (expect_loss ? nlost == 0 : nlost != 0))
		failed = 1;
	printf("SWAPTEST %s bad_bytes=%llu lost_pages=%llu pages=%llu rounds=%d procs=%d\n",
	       failed ? "FAIL" : "PASS", (unsigned long long)bad, (unsigned long long)nlost,
	       (unsigned long long)(pages_each * procs), rounds, procs);
	return failed;
}
