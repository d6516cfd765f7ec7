// SPDX-License-Identifier: GPL-2.0-only OR MIT
/*
 * ksmwork - a duplicate-rich workload for the resident scanner, to run once
 * with stock ksmd and once with ksmd under foldswap's policy.
 *
 * PROCS processes each map PAGES pages, MADV_MERGEABLE. Three of every four
 * pages are text pages drawn from TEMPLATES contents shared by all the
 * processes; the fourth is unique to its process. VOLATILE pages per process
 * are rewritten every 20 ms for as long as the scanner runs (they must never
 * stay merged). The parent samples ksm's counters every 200 ms until the
 * sharing has not changed for STABLE seconds (or TIMEOUT passed), then each
 * process checks every byte, writes to every fourth template page (the
 * write breaks the merge: COW) and checks every byte again.
 *
 * Printed: the final pages_shared/pages_sharing against what a perfect
 * merge gives, MemFree's gain, what the scanner read from pages
 * (scan_bytes_read) until the sharing first reached 99 % of its final value,
 * ksmd's CPU time (utime + stime in ticks) over the run, and bad bytes.
 *
 * With -g (grow) the processes fill their pages a chunk of 256 every 50 ms,
 * with ksm started first (unless -m: no merging), so that together they grow
 * past memory into swap while the scanner merges; then the sharing is left
 * to settle, the system stays quiet for QUIET seconds (ksmd's CPU ticks over
 * them are printed), and every byte is checked. Printed: the sectors written
 * to the swap disk (vda) while growing and settling.
 *
 * With -c N process p runs in memory cgroup ksmwork<p % N> (cgroup2 at
 * /sys/fs/cgroup, memory controller on): a scanner that keeps tenants apart
 * merges only within each, so a perfect merge keeps one page per content
 * and cgroup.
 *
 *   ksmwork NAME [-p procs] [-n pages] [-t templates] [-v volatile]
 *           [-s stable_s] [-T timeout_s] [-g [-m] [-q quiet_s]] [-c cgroups]
 *   KSMWORK NAME PASS|FAIL sharing=S shared=H perfect_sharing=E ...
 *   KSMGROW NAME PASS|FAIL disk_written_pages=N sharing=S ... quiet_ticks=T
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "guest.h"

#define PAGE 4096
#define KSM "/sys/kernel/mm/ksm/"

static int procs = 4, npages = 2048, templates = 64, nvolatile = 16;
static int stable_s = 6, timeout_s = 240;
static int grow, merging = 1, quiet_s = 60, cgroups;

/* Pages written to the swap disk so far (field 7 of its stat: sectors). */
static unsigned long disk_written_pages(void)
{
	unsigned long f[7] = { 0 };
	FILE *fp = fopen("/sys/block/vda/stat", "r");

	if (!fp || fscanf(fp, "%lu %lu %lu %lu %lu %lu %lu", &f[0], &f[1], &f[2], &f[3],
			  &f[4], &f[5], &f[6]) != 7)
		f[6] = 0;
	if (fp)
		fclose(fp);
	return f[6] / 8;
}

static unsigned long read_ul(const char *path)
{
	unsigned long v = 0;
	FILE *f = fopen(path, "r");

	if (!f || fscanf(f, "%lu", &v) != 1)
		v = 0;
	if (f)
		fclose(f);
	return v;
}

static unsigned long memfree_kb(void)
{
	char line[256];
	unsigned long kb = 0;
	FILE *f = fopen("/proc/meminfo", "r");

	while (f && fgets(line, sizeof(line), f))
		if (sscanf(line, "MemFree: %lu kB", &kb) == 1)
			break;
	if (f)
		fclose(f);
	return kb;
}

/* ksmd's utime + stime, in clock ticks (fields 14 and 15 of its stat). */
static unsigned long ksmd_ticks(void)
{
	char path[300], buf[512], comm[64];
	unsigned long ticks = 0, ut, st;
	struct dirent *d;
	DIR *proc = opendir("/proc");

	while (proc && (d = readdir(proc))) {
		FILE *f;

		snprintf(path, sizeof(path), "/proc/%s/comm", d->d_name);
		f = fopen(path, "r");
		if (!f)
			continue;
		comm[0] = 0;
		if (!fgets(comm, sizeof(comm), f))
			comm[0] = 0;
		fclose(f);
		if (strcmp(comm, "ksmd\n"))
			continue;
		snprintf(path, sizeof(path), "/proc/%s/stat", d->d_name);
		f = fopen(path, "r");
		if (f && fgets(buf, sizeof(buf), f)) {
			char *p = strrchr(buf, ')');

			if (p && sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu",
					&ut, &st) == 2)
				ticks = ut + st;
		}
		if (f)
			fclose(f);
		break;
	}
	if (proc)
		closedir(proc);
	return ticks;
}

static uint64_t page_seed(int proc, int i)
{
	if (i % 4 != 3)
		return 1 + (uint64_t)(i % templates);
	return ((uint64_t)(proc + 1) << 32) | (uint64_t)i;
}

static int is_volatile(int i)
{
	return i % 4 == 3 && i / 4 < nvolatile;
}

static void fill(unsigned char *p, int proc, int i, uint64_t round)
{
	fill_text(p, PAGE, page_seed(proc, i) + (is_volatile(i) ? round << 40 : 0));
}

/* Bytes of the non-volatile pages that differ from what was written. */
static unsigned long check(unsigned char *mem, int proc, const unsigned char *cow)
{
	static unsigned char want[PAGE];
	unsigned long bad = 0;

	for (int i = 0; i < npages; i++) {
		unsigned char *p = mem + (size_t)i * PAGE;

		if (is_volatile(i))
			continue;
		fill(want, proc, i, 0);
		if (cow && cow[i])
			want[0] ^= 0x5a;
		for (int b = 0; b < PAGE; b++)
			bad += p[b] != want[b];
	}
	return bad;
}

static volatile sig_atomic_t stop_writing;
static void on_usr1(int sig)
{
	(void)sig;
	stop_writing = 1;
}

/* A process of the workload: fill, say ready, rewrite the volatile pages
 * until told to stop, then check, break merges by writing, check again. */
static int child(int proc, int ready_fd)
{
	unsigned char *mem, *cow;
	unsigned long bad;
	uint64_t round = 0;
	char c = 'r';

	if (cgroups) {
		char path[64];
		FILE *f;

		snprintf(path, sizeof(path), "/sys/fs/cgroup/ksmwork%d/cgroup.procs", proc % cgroups);
		f = fopen(path, "w");
		if (!f || fprintf(f, "0\n") < 0 || fclose(f))
			return 2;
	}
	mem = mmap(NULL, (size_t)npages * PAGE, PROT_READ | PROT_WRITE,
		   MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	cow = calloc(npages, 1);
	if (mem == MAP_FAILED || !cow || madvise(mem, (size_t)npages * PAGE, MADV_MERGEABLE))
		return 2;
	for (int i = 0; i < npages; i++) {
		fill(mem + (size_t)i * PAGE, proc, i, 0);
		if (grow && i % 256 == 255) {
			struct timespec ts = { 0, 50 * 1000 * 1000 };

			nanosleep(&ts, NULL);
		}
	}
	if (write(ready_fd, &c, 1) != 1)
		return 2;
	while (!stop_writing) {
		struct timespec ts = { 0, 20 * 1000 * 1000 };

		round++;
		for (int i = 0; i < npages; i++)
			if (is_volatile(i))
				fill(mem + (size_t)i * PAGE, proc, i, round);
		nanosleep(&ts, NULL);
	}
	bad = check(mem, proc, NULL);
	for (int i = 0; i < npages; i += 4) {
		mem[(size_t)i * PAGE] ^= 0x5a;
		cow[i] = 1;
	}
	bad += check(mem, proc, cow);
	printf("KSMPROC %d bad_bytes %lu\n", proc, bad);
	fflush(stdout);
	return bad ? 1 : 0;
}

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

int main(int argc, char **argv)
{
	enum { MAX_SAMPLES = 4096 };
	static unsigned long sharing[MAX_SAMPLES], bytes[MAX_SAMPLES];
	const char *name = argc > 1 ? argv[1] : "?";
	unsigned long free0, free1, ticks0, ticks1, read0, perfect, written0, written1 = 0;
	unsigned long quiet_ticks = 0;
	int pipefd[2], opt, n = 0, failed = 0, last_change = 0;
	pid_t pids[64];
	double t0;

	optind = 2;
	while ((opt = getopt(argc, argv, "p:n:t:v:s:T:gmq:c:")) != -1) {
		switch (opt) {
		case 'c': cgroups = atoi(optarg); break;
		case 'g': grow = 1; break;
		case 'm': merging = 0; break;
		case 'q': quiet_s = atoi(optarg); break;
		case 'p': procs = atoi(optarg); break;
		case 'n': npages = atoi(optarg); break;
		case 't': templates = atoi(optarg); break;
		case 'v': nvolatile = atoi(optarg); break;
		case 's': stable_s = atoi(optarg); break;
		case 'T': timeout_s = atoi(optarg); break;
		default: return 2;
		}
	}
	if (procs < 1 || procs > 64 || npages < 4 || templates < 1 || templates > 60000 ||
	    cgroups < 0 || cgroups > procs || pipe(pipefd))
		return 2;
	for (int c = 0; c < cgroups; c++) {
		char path[64];

		snprintf(path, sizeof(path), "/sys/fs/cgroup/ksmwork%d", c);
		mkdir(path, 0755);
	}
	signal(SIGUSR1, on_usr1);
	written0 = disk_written_pages();
	/* Before the processes start: in grow mode ksmd scans while they fill. */
	ticks0 = ksmd_ticks();
	read0 = read_ul(KSM "scan_bytes_read");
	if (grow && merging && system("echo 1 >" KSM "run"))
		return 2;
	for (int p = 0; p < procs; p++) {
		pids[p] = fork();
		if (pids[p] == 0)
			_exit(child(p, pipefd[1]));
	}
	for (int p = 0; p < procs; p++) {
		char c;

		if (read(pipefd[0], &c, 1) != 1)
			return 2;
	}
	free0 = memfree_kb();
	t0 = now_s();
	if (merging && system("echo 1 >" KSM "run"))
		return 2;
	/* Sample until the sharing stood still for stable_s seconds. */
	while (n < MAX_SAMPLES && now_s() - t0 < timeout_s) {
		struct timespec ts = { 0, 200 * 1000 * 1000 };

		nanosleep(&ts, NULL);
		sharing[n] = read_ul(KSM "pages_sharing");
		bytes[n] = read_ul(KSM "scan_bytes_read") - read0;
		if (n && sharing[n] != sharing[n - 1])
			last_change = n;
		n++;
		if ((sharing[n - 1] || !merging) && (n - last_change) * 0.2 >= stable_s)
			break;
	}
	if (grow) {
		/* Settled: now a quiet stretch, nothing swapping, nothing new. */
		unsigned long before = ksmd_ticks();

		written1 = disk_written_pages();
		sleep(quiet_s);
		quiet_ticks = ksmd_ticks() - before;
	}
	free1 = memfree_kb();
	ticks1 = ksmd_ticks();
	/* A perfect merge: every template page but one per content shares it. */
	{
		static unsigned char used[1 << 16];
		unsigned long pages = 0, contents = 0;

		for (int i = 0; i < npages; i++) {
			if (i % 4 == 3)
				continue;
			pages++;
			if (!used[page_seed(0, i) & 0xffff]++)
				contents++;
		}
		/* Each cgroup with a process keeps one page per content. */
		perfect = (unsigned long)procs * pages - contents * (cgroups ? cgroups : 1);
	}
	{
		unsigned long final = n ? sharing[n - 1] : 0, to99 = 0;
		unsigned long shared = read_ul(KSM "pages_shared");

		for (int i = 0; i < n; i++) {
			if (sharing[i] * 100 >= final * 99) {
				to99 = bytes[i];
				break;
			}
		}
		for (int p = 0; p < procs; p++)
			kill(pids[p], SIGUSR1);
		for (int p = 0; p < procs; p++) {
			int st;

			waitpid(pids[p], &st, 0);
			failed |= !WIFEXITED(st) || WEXITSTATUS(st);
		}
		if (merging && system("echo 2 >" KSM "run"))
			failed = 1;
		if (grow)
			printf("KSMGROW %s %s disk_written_pages=%lu sharing=%lu perfect_sharing=%lu "
			       "ksmd_ticks=%lu quiet_ticks=%lu quiet_seconds=%d seconds=%.1f\n",
			       name, failed ? "FAIL" : "PASS", written1 - written0, final, perfect,
			       ticks1 - ticks0, quiet_ticks, quiet_s, now_s() - t0);
		else
			printf("KSMWORK %s %s sharing=%lu shared=%lu perfect_sharing=%lu memfree_gain_kb=%ld "
		       "bytes_to_99=%lu bytes_total=%lu ksmd_ticks=%lu seconds=%.1f cgroups=%d\n",
		       name, failed ? "FAIL" : "PASS", final, shared, perfect,
		       (long)free1 - (long)free0, to99, n ? bytes[n - 1] : 0,
		       ticks1 - ticks0, now_s() - t0, cgroups);
	}
	return failed;
}
