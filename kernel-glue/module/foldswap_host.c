// SPDX-License-Identifier: GPL-2.0
/*
 * foldswap_host.c - the C side of foldswap.ko: what Rust in 6.12 has no
 * binding for.
 *
 * - The swap_backend_ops (kernel-glue/patch) whose five operations map the
 *   page (kmap_local_page) and call the Rust side (foldswap_rs_*).
 * - Pages for the backend: __get_free_page(GFP_NOWAIT | __GFP_NOWARN |
 *   __GFP_NOMEMALLOC): never sleeping, never warning (a failed allocation is
 *   a rejected store), and never taking the emergency reserves — stores run in
 *   reclaim (PF_MEMALLOC), where an allocation would otherwise ignore the
 *   watermarks and starve GFP_ATOMIC users such as the block driver.
 * - Time: ktime_get_ns().
 * - Parameters in /sys/module/foldswap/parameters/:
 *     pool_limit_pages  rw  pool limit in pages (0: max_pool_percent of RAM)
 *     max_pool_percent  rw  default limit, percent of RAM (20, like zswap)
 *     enabled           rw  accept new stores (loads always work)
 *     stats             r   the backend's statistics, "name value" lines
 */
#include <linux/module.h>
#include <linux/moduleparam.h>
#include <linux/gfp.h>
#include <linux/mm.h>
#include <linux/highmem.h>
#include <linux/ktime.h>
#include <linux/swap_backend.h>

/* The Rust side (foldswap_main.rs). */
int foldswap_rs_init(unsigned int type, u64 nr_pages);
int foldswap_rs_store(unsigned int type, u64 offset, const void *src);
int foldswap_rs_load(unsigned int type, u64 offset, void *dst);
void foldswap_rs_invalidate_page(unsigned int type, u64 offset);
void foldswap_rs_invalidate_area(unsigned int type);
void foldswap_rs_set_limit_bytes(u64 limit);
void foldswap_rs_set_enabled(bool enabled);
long foldswap_rs_stats(char *buf, size_t len);

/* Called by the Rust side. */
void *foldswap_host_alloc_page(void);
void foldswap_host_free_page(void *addr);
u64 foldswap_host_now_ns(void);
int foldswap_host_register(void);
int foldswap_host_unregister(void);
void foldswap_host_apply_params(void);

static int foldswap_init_area(unsigned int type, unsigned long nr_pages)
{
	return foldswap_rs_init(type, nr_pages);
}

static int foldswap_store(unsigned int type, pgoff_t offset, struct page *page)
{
	void *src = kmap_local_page(page);
	int ret = foldswap_rs_store(type, offset, src);

	kunmap_local(src);
	return ret;
}

static int foldswap_load(unsigned int type, pgoff_t offset, struct page *page)
{
	void *dst = kmap_local_page(page);
	int ret = foldswap_rs_load(type, offset, dst);

	kunmap_local(dst);
	return ret;
}

static void foldswap_invalidate_page(unsigned int type, pgoff_t offset)
{
	foldswap_rs_invalidate_page(type, offset);
}

static void foldswap_invalidate_area(unsigned int type)
{
	foldswap_rs_invalidate_area(type);
}

static const struct swap_backend_ops foldswap_ops = {
	.owner = THIS_MODULE,
	.init = foldswap_init_area,
	.store = foldswap_store,
	.load = foldswap_load,
	.invalidate_page = foldswap_invalidate_page,
	.invalidate_area = foldswap_invalidate_area,
};

int foldswap_host_register(void)
{
	return swap_backend_register(&foldswap_ops);
}

int foldswap_host_unregister(void)
{
	return swap_backend_unregister(&foldswap_ops);
}

void *foldswap_host_alloc_page(void)
{
	return (void *)__get_free_page(GFP_NOWAIT | __GFP_NOWARN | __GFP_NOMEMALLOC);
}

void foldswap_host_free_page(void *addr)
{
	free_page((unsigned long)addr);
}

u64 foldswap_host_now_ns(void)
{
	return ktime_get_ns();
}

static unsigned long pool_limit_pages;
static unsigned int max_pool_percent = 20;
static bool enabled = true;
static bool backend_ready;

static void apply_limit(void)
{
	u64 pages = pool_limit_pages ? pool_limit_pages :
		    (u64)totalram_pages() * max_pool_percent / 100;

	foldswap_rs_set_limit_bytes(pages * PAGE_SIZE);
}

/* Parameters given to insmod are set before the backend exists. */
void foldswap_host_apply_params(void)
{
	backend_ready = true;
	apply_limit();
	foldswap_rs_set_enabled(enabled);
}

static int set_pool_limit(const char *val, const struct kernel_param *kp)
{
	int ret = param_set_ulong(val, kp);

	if (!ret && backend_ready)
		apply_limit();
	return ret;
}

static const struct kernel_param_ops pool_limit_ops = {
	.set = set_pool_limit,
	.get = param_get_ulong,
};
module_param_cb(pool_limit_pages, &pool_limit_ops, &pool_limit_pages, 0644);
MODULE_PARM_DESC(pool_limit_pages, "Pool limit in pages (0: max_pool_percent of RAM)");

static int set_pool_percent(const char *val, const struct kernel_param *kp)
{
	unsigned int percent;
	int ret = kstrtouint(val, 0, &percent);

	if (ret)
		return ret;
	if (percent > 100)
		return -EINVAL;
	max_pool_percent = percent;
	if (backend_ready)
		apply_limit();
	return 0;
}

static const struct kernel_param_ops pool_percent_ops = {
	.set = set_pool_percent,
	.get = param_get_uint,
};
module_param_cb(max_pool_percent, &pool_percent_ops, &max_pool_percent, 0644);
MODULE_PARM_DESC(max_pool_percent, "Default pool limit, percent of RAM (20)");

static int set_enabled(const char *val, const struct kernel_param *kp)
{
	int ret = param_set_bool(val, kp);

	if (!ret && backend_ready)
		foldswap_rs_set_enabled(enabled);
	return ret;
}

static const struct kernel_param_ops enabled_ops = {
	.set = set_enabled,
	.get = param_get_bool,
};
module_param_cb(enabled, &enabled_ops, &enabled, 0644);
MODULE_PARM_DESC(enabled, "Accept new stores (loads always work)");

static int get_stats(char *buf, const struct kernel_param *kp)
{
	long n = backend_ready ? foldswap_rs_stats(buf, PAGE_SIZE) : 0;

	return n < 0 ? -EIO : n;
}

static const struct kernel_param_ops stats_ops = {
	.get = get_stats,
};
module_param_cb(stats, &stats_ops, NULL, 0444);
MODULE_PARM_DESC(stats, "Statistics (read-only)");
