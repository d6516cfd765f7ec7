// SPDX-License-Identifier: GPL-2.0
/*
 * foldswap_host.c - the C side of foldswap.ko: what Rust in 6.12 has no
 * binding for.
 *
 * - The swap_backend_ops (kernel-glue/patch) whose five operations map the
 *   page (kmap_local_page) and call the Rust side (foldswap_rs_*).
 * - Pages for the backend: a page mempool (RESERVE_PAGES reserved at load).
 *   mempool_alloc(GFP_NOWAIT | __GFP_HIGH) tries the page allocator first;
 *   mempool adds __GFP_NOMEMALLOC | __GFP_NORETRY | __GFP_NOWARN, so it never
 *   sleeps or warns and never touches the kernel's emergency reserve, which
 *   stores would otherwise take: they run in reclaim (PF_MEMALLOC), where a
 *   plain allocation ignores every watermark and starves the block layer's
 *   GFP_ATOMIC allocations. __GFP_HIGH lets a store use half of the min
 *   reserve, like an atomic allocation; below that it takes one of the
 *   mempool's own pages, and frees refill those first. An empty mempool is a
 *   rejected store: the page goes to disk.
 * - Time: ktime_get_ns().
 * - Scratch memory (one per CPU, 68 KiB each): vzalloc.
 * - The cold codec: the kernel's lib/zstd (zstd_compress_cctx /
 *   zstd_decompress_dctx) over contexts in vzalloc'd workspaces, made once
 *   per scratch when the module loads (a decompression context for each;
 *   a compression context only for the scanner's) and never in a store or
 *   load. Frames as the userspace codec writes them: content size, no
 *   checksum, no dictionary.
 * - The scanner kthread "foldswap_scan": its body is foldswap_rs_scanner_main;
 *   it parks with set_current_state / schedule_timeout and is woken with
 *   wake_up_process (foldswap-wake's Parker contract: a wake-up after
 *   prepare_park makes the next schedule_timeout return at once).
 * - Parameters in /sys/module/foldswap/parameters/:
 *     pool_limit_pages  rw  pool limit in pages (0: max_pool_percent of RAM)
 *     max_pool_percent  rw  default limit, percent of RAM (20, like zswap)
 *     enabled           rw  accept new stores (loads always work)
 *     cold_rounds       rw  scanner rounds before an entry is cold (1)
 *     cold_level        rw  zstd level for cold pages (3; 0: the backend's 6)
 *     block_pages       rw  pages per cold block (8; 1: none; at most 16)
 *     writeback         rw  write the coldest pages back to the swap device
 *                           as the pool nears its limit, and when the
 *                           shrinker asks (Y); N: a full pool refuses stores
 *     shrinker_enabled  rw  under memory pressure the shrinker asks the
 *                           scanner to write lone pages back (N, as zswap's)
 *     dedup_scope       r   which pages may be joined, set at insmod:
 *                           domain (one memory cgroup's; default), global,
 *                           off (none shared or patched)
 *     stats             r   the backend's statistics, "name value" lines;
 *                           root only (0400): dedup hits and stored pages
 *                           tell whether another process holds a page
 *     domains           r   one line per memory cgroup foldswap holds pages
 *                           for: "memcg_id cgroup_ino charged_bytes
 *                           held_bytes"; root only (0400)
 * - Memory cgroups (dedup_scope domain or off): what a domain's contents hold
 *   is charged to its cgroup as zswap charges its pool (memory.current,
 *   memory.zswap.current), and a page of a cgroup at memory.zswap.max is
 *   refused (see "Memory cgroup charging" below).
 * - Writeback (the scanner kthread): the patch's swap_backend_writeback_*,
 *   zswap's protocol. The scanner claims a slot's swap cache folio with no
 *   backend lock held (GFP_KERNEL: it may sleep and reclaim), checks it still
 *   holds the page, fills the folio and submits the write.
 * - The shrinker "mm-foldswap": counts the pool's pages; asked to scan, it
 *   asks the scanner to write back that many lone pages and returns (the
 *   work needs the scanner's scratch, and a store in the same reclaim must
 *   not wait for it).
 * - Preemption: the backend's locks are spin locks that do not disable
 *   preemption, so the module loads only on a kernel that does not preempt
 *   kernel code (preempt_model_none()): a preempted lock holder would leave
 *   the other CPUs spinning.
 * - Loads return -ENOENT only for "not stored here"; any other error fails
 *   the swap-in (the patch never reads the device for a slot the backend
 *   holds).
 * - FOLDSWAP_FAULT_INJECT (test builds only, set by qemu-test.sh; never in
 *   a production build): parameter inject_load_errors.
 */
#include <linux/module.h>
#include <linux/moduleparam.h>
#include <linux/gfp.h>
#include <linux/mm.h>
#include <linux/highmem.h>
#include <linux/ktime.h>
#include <linux/kthread.h>
#include <linux/mempool.h>
#include <linux/sched.h>
#include <linux/preempt.h>
#include <linux/atomic.h>
#include <linux/string.h>
#include <linux/smp.h>
#include <linux/vmalloc.h>
#include <linux/zstd.h>
#include <linux/memcontrol.h>
#include <linux/random.h>
#include <linux/shrinker.h>
#include <linux/swap_backend.h>
#include <linux/ksm_policy.h>
#include <linux/rcupdate.h>
#include <linux/sched/task.h>

/* The Rust side (foldswap_main.rs). */
int foldswap_rs_init(unsigned int type, u64 nr_pages);
int foldswap_rs_store(unsigned int type, u64 offset, const void *src, u16 memcg);
int foldswap_rs_load(unsigned int type, u64 offset, void *dst);
void foldswap_rs_invalidate_page(unsigned int type, u64 offset);
void foldswap_rs_invalidate_area(unsigned int type);
void foldswap_rs_set_limit_bytes(u64 limit);
void foldswap_rs_set_enabled(bool enabled);
int foldswap_rs_stage_scan(unsigned int cold_rounds, unsigned int cold_level,
			   unsigned int block_pages);
long foldswap_rs_stats(char *buf, size_t len);
long foldswap_rs_census(char *buf, size_t len);
void foldswap_rs_scanner_main(void);
void foldswap_rs_set_writeback(bool on);
u64 foldswap_rs_pool_pages(void);
void foldswap_rs_request_writeback(u64 pages);
void foldswap_rs_refuse(unsigned int cause);
u64 foldswap_rs_domain_bytes(u16 domain);

/* Called by the Rust side. */
int foldswap_host_reserve_create(void);
void foldswap_host_reserve_destroy(void);
void *foldswap_host_alloc_page(void);
void foldswap_host_free_page(void *addr);
void *foldswap_host_vzalloc(size_t bytes);
void foldswap_host_vfree(void *addr);
size_t foldswap_host_zstd_cctx_size(int max_level, size_t max_src);
void *foldswap_host_zstd_init_cctx(void *workspace, size_t size);
size_t foldswap_host_zstd_dctx_size(void);
void *foldswap_host_zstd_init_dctx(void *workspace, size_t size);
long foldswap_host_zstd_compress(void *cctx, int level, void *dst, size_t dst_len,
				 const void *src, size_t src_len);
int foldswap_host_zstd_decompress(void *dctx, void *dst, size_t dst_len,
				  const void *src, size_t src_len);
u64 foldswap_host_now_ns(void);
u32 foldswap_host_cpu(void);
u32 foldswap_host_nr_cpus(void);
int foldswap_host_dedup_scope(void);
u64 foldswap_host_random_u64(void);
int foldswap_host_start_scanner(void);
void foldswap_host_stop_scanner(void);
void foldswap_host_prepare_park(void);
void foldswap_host_cancel_park(void);
void foldswap_host_park(u64 timeout_ns);
void foldswap_host_unpark(void);
void foldswap_host_yield(void);
int foldswap_host_register(void);
int foldswap_host_unregister(void);
int foldswap_host_params_on(void);
void foldswap_host_params_off(void);
int foldswap_host_check_preempt(void);
void *foldswap_host_writeback_claim(unsigned int type, u64 offset);
void foldswap_host_writeback_write(void *folio, const void *page);
void foldswap_host_writeback_release(void *folio);
int foldswap_host_shrinker_on(void);
void foldswap_host_shrinker_off(void);
void foldswap_host_charge(u16 domain, long bytes);
u64 foldswap_host_charged_bytes(void);
u32 foldswap_rs_resident_signature(const void *addr, unsigned int *bytes_read);
unsigned int foldswap_rs_resident_batch_pages(void);
void foldswap_rs_resident_wait(unsigned int scanned);
int foldswap_rs_resident_start(unsigned int strength);
u64 foldswap_rs_resident_domain(u64 memcg, u64 page);
void foldswap_rs_resident_stop_scanning(void);
void foldswap_rs_resident_hide(void);
void foldswap_rs_resident_stop(void);
int foldswap_rs_resident_stage(unsigned int strength);
long foldswap_rs_resident_stats(char *buf, size_t len);
void foldswap_host_ksmd_prepare_park(void);
void foldswap_host_ksmd_unpark(void);
void foldswap_host_resident_off(void);

static int foldswap_init_area(unsigned int type, unsigned long nr_pages)
{
	return foldswap_rs_init(type, nr_pages);
}

/*
 * The dedup domain of a page being swapped out: its memory cgroup's id (0
 * without memory cgroups, or for a page charged to none). The folio is locked
 * for swap-out and the hook runs under rcu_read_lock(), so its memcg stays.
 */
static u16 foldswap_page_domain(struct page *page)
{
	struct mem_cgroup *memcg = folio_memcg(page_folio(page));

	return memcg ? mem_cgroup_id(memcg) : 0;
}

/*
 * Memory cgroup charging.
 *
 * The backend reports every change of the pool bytes a domain's contents
 * hold (its DomainCharges, under its content lock); here the domain, a
 * memory cgroup id, becomes the obj_cgroup to charge, and the patch's
 * swap_backend_charge() charges it as zswap charges its pool: the bytes
 * count in the cgroup's memory.current and memory.zswap.current. A page of a
 * cgroup at memory.zswap.max (the patch checks obj_cgroup_may_zswap()) is
 * refused and goes to disk.
 *
 * A domain's entry is in use while bytes are charged to it or a store of it
 * is in flight (`storing`); only then does it hold its objcg, with a
 * reference (NULL for the root cgroup, which is charged nothing). A store
 * whose objcg is not the one its domain's entry holds is refused: the
 * cgroup went offline and its pages now charge an ancestor's objcg, or the
 * id was reused while the old cgroup's bytes are still held. Either way the
 * page goes to disk rather than be charged to the wrong cgroup.
 *
 * Entries live in leaves of DOMAINS_PER_LEAF, allocated at a leaf's first
 * store (GFP_NOWAIT; none: the store is refused) and freed at unregister.
 *
 * Lock: domains_lock guards every entry's fields. The backend calls
 * foldswap_host_charge() under its content lock, so domains_lock nests inside
 * it and is never held while calling into the backend.
 *
 * The global scope charges nothing: its contents are all domain 0's,
 * whoever stored them.
 */
#define DOMAINS_PER_LEAF 128
#define DOMAIN_LEAVES ((U16_MAX + 1) / DOMAINS_PER_LEAF)

struct foldswap_domain {
	struct obj_cgroup *objcg;
	long charged;
	unsigned int storing;
};

static struct foldswap_domain *domain_leaves[DOMAIN_LEAVES];
static DEFINE_SPINLOCK(domains_lock);
static atomic64_t charged_total = ATOMIC64_INIT(0);
/* Charges for a domain not in use: a bug in the books, never expected. */
static atomic64_t charges_unbound = ATOMIC64_INIT(0);
/* The backend exists (set with the parameters, below). */
static bool backend_ready;
/* resident_scan=Y asks for the resident policy (see the end of the file). */
static bool resident_scan;
static int resident_switch(bool on);
/* Set at register: dedup_scope is not "global". */
static bool charging;

enum foldswap_refusal { REFUSE_MEMCG_LIMIT = 0, REFUSE_DOMAIN_BUSY = 1 };

static bool domain_in_use(const struct foldswap_domain *d)
{
	return d->charged || d->storing;
}

static struct foldswap_domain *domain_entry(u16 id)
{
	struct foldswap_domain *leaf = READ_ONCE(domain_leaves[id / DOMAINS_PER_LEAF]);

	return leaf ? &leaf[id % DOMAINS_PER_LEAF] : NULL;
}

/*
 * A store of domain `id`, whose page is charged to `objcg`, begins: the entry
 * holds objcg and counts the store. -ENOMEM without a leaf, -EBUSY if the
 * entry holds another objcg.
 */
static int domain_enter(u16 id, struct obj_cgroup *objcg)
{
	struct foldswap_domain **slot = &domain_leaves[id / DOMAINS_PER_LEAF];
	struct foldswap_domain *d;
	int ret = 0;

	if (!READ_ONCE(*slot)) {
		struct foldswap_domain *leaf = kcalloc(DOMAINS_PER_LEAF, sizeof(*leaf),
						       GFP_NOWAIT | __GFP_NOWARN);

		if (!leaf)
			return -ENOMEM;
		/* cmpxchg orders the zeroed leaf before its publication. */
		if (cmpxchg(slot, NULL, leaf))
			kfree(leaf);
	}
	d = domain_entry(id);
	spin_lock(&domains_lock);
	if (!domain_in_use(d)) {
		if (objcg)
			obj_cgroup_get(objcg);
		d->objcg = objcg;
	} else if (d->objcg != objcg) {
		ret = -EBUSY;
	}
	if (!ret)
		d->storing++;
	spin_unlock(&domains_lock);
	return ret;
}

/* An entry no longer in use lets its objcg go; the caller puts the returned one. */
static struct obj_cgroup *domain_release_if_unused(struct foldswap_domain *d)
{
	struct obj_cgroup *objcg = NULL;

	lockdep_assert_held(&domains_lock);
	if (!domain_in_use(d)) {
		objcg = d->objcg;
		d->objcg = NULL;
	}
	return objcg;
}

static void domain_leave(u16 id)
{
	struct foldswap_domain *d = domain_entry(id);
	struct obj_cgroup *put;

	spin_lock(&domains_lock);
	d->storing--;
	put = domain_release_if_unused(d);
	spin_unlock(&domains_lock);
	if (put)
		obj_cgroup_put(put);
}

/*
 * The backend's DomainCharges (under its content lock): `bytes` more (or,
 * negative, fewer) for domain `id`. A charge comes only while the domain is
 * in use (its store in flight, or bytes it holds already). The objcg is
 * charged after domains_lock, with a reference of the call's own: the
 * entry's may go meanwhile (an uncharge that leaves only a store in flight,
 * whose domain_leave() then empties the entry and puts it); the uncharge
 * that empties the entry itself takes over the entry's reference.
 */
void foldswap_host_charge(u16 id, long bytes)
{
	struct foldswap_domain *d = domain_entry(id);
	struct obj_cgroup *objcg;

	if (!d)
		goto unbound;
	spin_lock(&domains_lock);
	if (!domain_in_use(d) || d->charged + bytes < 0) {
		spin_unlock(&domains_lock);
		goto unbound;
	}
	d->charged += bytes;
	objcg = domain_release_if_unused(d);
	if (!objcg) {
		objcg = d->objcg;
		if (objcg)
			obj_cgroup_get(objcg);
	}
	spin_unlock(&domains_lock);
	atomic64_add(bytes, &charged_total);
	swap_backend_charge(objcg, bytes);
	if (objcg)
		obj_cgroup_put(objcg);
	return;
unbound:
	atomic64_inc(&charges_unbound);
	WARN_ONCE(1, "foldswap: %ld bytes for domain %u, which is not in use\n", bytes, id);
}

u64 foldswap_host_charged_bytes(void)
{
	return atomic64_read(&charged_total);
}

/* At unregister (nothing stored, nothing in flight): the leaves go. */
static void domains_free(void)
{
	unsigned int i, j;

	for (i = 0; i < DOMAIN_LEAVES; i++) {
		struct foldswap_domain *leaf = domain_leaves[i];

		if (!leaf)
			continue;
		for (j = 0; j < DOMAINS_PER_LEAF; j++) {
			struct foldswap_domain *d = &leaf[j];

			if (WARN_ON_ONCE(domain_in_use(d)) && d->objcg) {
				swap_backend_charge(d->objcg, -d->charged);
				obj_cgroup_put(d->objcg);
			}
		}
		domain_leaves[i] = NULL;
		kfree(leaf);
	}
}

/* "memcg_id cgroup_ino charged_bytes held_bytes" per domain in use. */
static int get_domains(char *buf, const struct kernel_param *kp)
{
	unsigned int id;
	int len = 0;

	if (!charging || !backend_ready)
		return 0;
	for (id = 0; id <= U16_MAX; id++) {
		struct foldswap_domain *d = domain_entry(id);
		unsigned long ino = 0;
		long charged;

		if (!d)
			continue;
		spin_lock(&domains_lock);
		charged = d->charged;
		if (domain_in_use(d) && d->objcg) {
			rcu_read_lock();
			ino = cgroup_ino(obj_cgroup_memcg(d->objcg)->css.cgroup);
			rcu_read_unlock();
		}
		spin_unlock(&domains_lock);
		if (!charged)
			continue;
		/* Outside domains_lock: the backend's count takes its content lock. */
		len += scnprintf(buf + len, PAGE_SIZE - len, "%u %lu %ld %llu\n", id, ino,
				 charged, foldswap_rs_domain_bytes(id));
	}
	return len;
}

static const struct kernel_param_ops domains_ops = {
	.get = get_domains,
};
/* Root only, as stats: another cgroup's figures are not its neighbours'. */
module_param_cb(domains, &domains_ops, NULL, 0400);
MODULE_PARM_DESC(domains, "Per memory cgroup: id, cgroup inode, bytes charged, bytes held (root only)");

static int foldswap_store(unsigned int type, pgoff_t offset, struct page *page,
			  struct obj_cgroup *objcg, bool objcg_full)
{
	u16 domain = foldswap_page_domain(page);
	void *src;
	int ret;

	if (objcg_full) {
		foldswap_rs_refuse(REFUSE_MEMCG_LIMIT);
		return -ENOSPC;
	}
	if (charging) {
		ret = domain_enter(domain, objcg);
		if (ret) {
			foldswap_rs_refuse(REFUSE_DOMAIN_BUSY);
			return ret;
		}
	}
	src = kmap_local_page(page);
	ret = foldswap_rs_store(type, offset, src, domain);
	kunmap_local(src);
	if (charging)
		domain_leave(domain);
	return ret;
}

#ifdef FOLDSWAP_FAULT_INJECT
/*
 * Test builds only: the next inject_load_errors loads of a held page whose
 * first bytes are INJECT_MAGIC (only the guest test writes it) fail with
 * -EIO, as a page the backend holds but cannot decode would.
 */
#define INJECT_MAGIC "FOLDSWAP-INJECT!"
static atomic_t inject_left = ATOMIC_INIT(0);

static int inject_load_error(const void *dst)
{
	if (memcmp(dst, INJECT_MAGIC, sizeof(INJECT_MAGIC) - 1) ||
	    atomic_dec_if_positive(&inject_left) < 0)
		return 0;
	return -EIO;
}

static int set_inject(const char *val, const struct kernel_param *kp)
{
	unsigned int n;
	int ret = kstrtouint(val, 0, &n);

	if (!ret)
		atomic_set(&inject_left, n);
	return ret;
}

static int get_inject(char *buf, const struct kernel_param *kp)
{
	return scnprintf(buf, PAGE_SIZE, "%d\n", atomic_read(&inject_left));
}

static const struct kernel_param_ops inject_ops = {
	.set = set_inject,
	.get = get_inject,
};
module_param_cb(inject_load_errors, &inject_ops, NULL, 0600);
MODULE_PARM_DESC(inject_load_errors, "TEST BUILD: fail the next N loads of marked pages");
#else
static int inject_load_error(const void *dst)
{
	return 0;
}
#endif

static int foldswap_load(unsigned int type, pgoff_t offset, struct page *page)
{
	void *dst = kmap_local_page(page);
	int ret = foldswap_rs_load(type, offset, dst);

	if (!ret)
		ret = inject_load_error(dst);
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
	/* 1: "global" (foldswap_host_dedup_scope). */
	charging = foldswap_host_dedup_scope() != 1;
	return swap_backend_register(&foldswap_ops);
}

int foldswap_host_unregister(void)
{
	int ret = swap_backend_unregister(&foldswap_ops);

	if (!ret)
		domains_free();
	return ret;
}

/*
 * Writeback: the slot's new swap cache folio (locked), or NULL if the slot is
 * busy or gone (the patch's swap_backend_writeback_claim). Only the scanner
 * kthread calls these, with no backend lock held.
 */
void *foldswap_host_writeback_claim(unsigned int type, u64 offset)
{
	return swap_backend_writeback_claim(type, offset);
}

/* Fill a claimed folio with the page the backend let go, and write it. */
void foldswap_host_writeback_write(void *folio, const void *page)
{
	void *dst = kmap_local_folio(folio, 0);

	memcpy(dst, page, PAGE_SIZE);
	kunmap_local(dst);
	swap_backend_writeback_submit(folio);
}

void foldswap_host_writeback_release(void *folio)
{
	swap_backend_writeback_release(folio);
}

/*
 * The shrinker (as zswap's, off unless shrinker_enabled): the pool's pages
 * are what it can give back. Asked to scan N, it asks the scanner for N lone
 * pages, cold ones first (the backend caps what is asked and not yet written) and returns:
 * writing back needs the scanner's scratch, and may allocate and reclaim,
 * which a shrinker in a store's reclaim must not wait for. It frees nothing
 * itself, so it reports N scanned and nothing freed.
 */
static bool shrinker_enabled;
module_param(shrinker_enabled, bool, 0644);
MODULE_PARM_DESC(shrinker_enabled, "Under memory pressure, write lone pages back, cold ones first (N)");

static struct shrinker *pool_shrinker;

static unsigned long foldswap_shrinker_count(struct shrinker *shrinker,
					     struct shrink_control *sc)
{
	u64 pages;

	if (!READ_ONCE(shrinker_enabled))
		return 0;
	pages = foldswap_rs_pool_pages();
	return pages ? pages : SHRINK_EMPTY;
}

static unsigned long foldswap_shrinker_scan(struct shrinker *shrinker,
					    struct shrink_control *sc)
{
	if (!READ_ONCE(shrinker_enabled))
		return SHRINK_STOP;
	/* Asked for, not yet written: scanned, nothing freed yet. */
	foldswap_rs_request_writeback(sc->nr_to_scan);
	sc->nr_scanned = sc->nr_to_scan;
	return 0;
}

int foldswap_host_shrinker_on(void)
{
	pool_shrinker = shrinker_alloc(0, "mm-foldswap");
	if (!pool_shrinker)
		return -ENOMEM;
	pool_shrinker->count_objects = foldswap_shrinker_count;
	pool_shrinker->scan_objects = foldswap_shrinker_scan;
	pool_shrinker->seeks = DEFAULT_SEEKS;
	shrinker_register(pool_shrinker);
	return 0;
}

/* Waits for calls in flight (shrinker_free). */
void foldswap_host_shrinker_off(void)
{
	shrinker_free(pool_shrinker);
	pool_shrinker = NULL;
}

/*
 * The backend's spin locks (the spin crate) do not disable preemption: on a
 * kernel that preempts kernel code, a holder preempted in a store could
 * leave every other CPU spinning in the backend for a whole time slice, or
 * for ever behind a real-time task.  With preempt=none a holder runs until it
 * unlocks.  (A PREEMPT_DYNAMIC kernel can still be switched later through
 * /sys/kernel/debug/sched/preempt; that is not checked.)
 */
int foldswap_host_check_preempt(void)
{
	if (preempt_model_none())
		return 0;
	pr_err("foldswap: needs a kernel without kernel preemption (preempt=none): its spin locks do not disable preemption\n");
	return -EINVAL;
}

/* Pages the backend keeps for itself (4 MiB): what stores use while the
 * allocator is below its min watermark. */
#define RESERVE_PAGES 1024

static mempool_t *page_reserve;

int foldswap_host_reserve_create(void)
{
	page_reserve = mempool_create_page_pool(RESERVE_PAGES, 0);
	return page_reserve ? 0 : -ENOMEM;
}

void foldswap_host_reserve_destroy(void)
{
	mempool_destroy(page_reserve);
	page_reserve = NULL;
}

void *foldswap_host_alloc_page(void)
{
	struct page *page = mempool_alloc(page_reserve, GFP_NOWAIT | __GFP_HIGH);

	return page ? page_address(page) : NULL;
}

void foldswap_host_free_page(void *addr)
{
	mempool_free(virt_to_page(addr), page_reserve);
}

void *foldswap_host_vzalloc(size_t bytes)
{
	return vzalloc(bytes);
}

void foldswap_host_vfree(void *addr)
{
	vfree(addr);
}

/* zstd's parameters for src_len bytes at `level` (they shrink with the source). */
static zstd_parameters foldswap_zstd_params(int level, size_t src_len)
{
	return zstd_get_params(level, src_len);
}

/*
 * Workspace bytes a compression context needs for every level up to max_level
 * and every source from one page up to max_src bytes (a cold block).
 */
size_t foldswap_host_zstd_cctx_size(int max_level, size_t max_src)
{
	size_t bound = 0;
	size_t src;
	int level;

	for (level = 1; level <= max_level; level++) {
		for (src = PAGE_SIZE; src <= max_src; src *= 2) {
			zstd_parameters params = foldswap_zstd_params(level, src);

			bound = max(bound, zstd_cctx_workspace_bound(&params.cParams));
		}
	}
	return bound;
}

void *foldswap_host_zstd_init_cctx(void *workspace, size_t size)
{
	return zstd_init_cctx(workspace, size);
}

size_t foldswap_host_zstd_dctx_size(void)
{
	return zstd_dctx_workspace_bound();
}

void *foldswap_host_zstd_init_dctx(void *workspace, size_t size)
{
	return zstd_init_dctx(workspace, size);
}

/*
 * Compress src_len bytes at src (a page, or a cold block of pages) into dst:
 * the frame's length, 0 if it does not fit in dst_len bytes, -EINVAL on any
 * other zstd error.
 */
long foldswap_host_zstd_compress(void *cctx, int level, void *dst, size_t dst_len,
				 const void *src, size_t src_len)
{
	zstd_parameters params = foldswap_zstd_params(level, src_len);
	size_t ret = zstd_compress_cctx(cctx, dst, dst_len, src, src_len, &params);

	if (!zstd_is_error(ret))
		return ret;
	return zstd_get_error_code(ret) == ZSTD_error_dstSize_tooSmall ? 0 : -EINVAL;
}

/* Decode src into dst: 0 if it is exactly dst_len bytes, else -EINVAL. */
int foldswap_host_zstd_decompress(void *dctx, void *dst, size_t dst_len,
				  const void *src, size_t src_len)
{
	size_t ret = zstd_decompress_dctx(dctx, dst, dst_len, src, src_len);

	return !zstd_is_error(ret) && ret == dst_len ? 0 : -EINVAL;
}

u64 foldswap_host_now_ns(void)
{
	return ktime_get_ns();
}

/* Which scratch a store/load uses; a hint only (each scratch has a lock). */
u32 foldswap_host_cpu(void)
{
	return raw_smp_processor_id();
}

u32 foldswap_host_nr_cpus(void)
{
	return nr_cpu_ids;
}

/*
 * dedup_scope: which stored pages may be joined (shared as one copy, patched
 * against one another, compressed in one cold block). "domain" (the default):
 * only pages of one memory cgroup, so no tenant learns another's memory
 * through foldswap; "global": all pages; "off": none is shared or patched.
 * Read when the module loads (0444): the backend is built with it.
 */
static char *dedup_scope = "domain";
module_param(dedup_scope, charp, 0444);
MODULE_PARM_DESC(dedup_scope, "Which pages may be joined: domain (one memory cgroup; default), global, off");

/* The scope as the backend numbers it (0 domain, 1 global, 2 off); -EINVAL for another name. */
int foldswap_host_dedup_scope(void)
{
	static const char *const names[] = { "domain", "global", "off" };
	int i;

	for (i = 0; i < ARRAY_SIZE(names); i++)
		if (sysfs_streq(dedup_scope, names[i]))
			return i;
	pr_err("dedup_scope=%s: not domain, global or off\n", dedup_scope);
	return -EINVAL;
}

/* The secret that scatters each domain's dedup keys. */
u64 foldswap_host_random_u64(void)
{
	return get_random_u64();
}

static struct task_struct *scanner_task;

static int scanner_thread(void *unused)
{
	foldswap_rs_scanner_main();
	/* The scanner returns on shutdown (or error): wait for kthread_stop. */
	for (;;) {
		set_current_state(TASK_INTERRUPTIBLE);
		if (kthread_should_stop())
			break;
		schedule();
	}
	__set_current_state(TASK_RUNNING);
	return 0;
}

int foldswap_host_start_scanner(void)
{
	/* Created stopped, published, then started: an unpark never sees NULL
	 * once the scanner can have announced a sleep. */
	struct task_struct *task = kthread_create(scanner_thread, NULL, "foldswap_scan");

	if (IS_ERR(task))
		return PTR_ERR(task);
	WRITE_ONCE(scanner_task, task);
	wake_up_process(task);
	return 0;
}

void foldswap_host_stop_scanner(void)
{
	struct task_struct *task = READ_ONCE(scanner_task);

	if (task)
		kthread_stop(task);
	WRITE_ONCE(scanner_task, NULL);
}

void foldswap_host_prepare_park(void)
{
	set_current_state(TASK_INTERRUPTIBLE);
}

void foldswap_host_cancel_park(void)
{
	__set_current_state(TASK_RUNNING);
}

/* The scanner between two pages of a burst, holding no lock: the kernel is
 * not preemptible (the module refuses one that is), so a long burst must let
 * others run or the watchdog reports a soft lockup. */
void foldswap_host_yield(void)
{
	cond_resched();
}

void foldswap_host_park(u64 timeout_ns)
{
	schedule_timeout(nsecs_to_jiffies(timeout_ns));
	__set_current_state(TASK_RUNNING);
}

void foldswap_host_unpark(void)
{
	struct task_struct *task = READ_ONCE(scanner_task);

	if (task)
		wake_up_process(task);
}

static unsigned long pool_limit_pages;
static unsigned int max_pool_percent = 20;
static bool enabled = true;
/*
 * The scanner's tunables, which the backend checks. cold_rounds is the
 * backend's default; cold_level and block_pages are not: here the scanner
 * shares its CPU budget with the workload, and level 3 costs about 2/3 of
 * the CPU per page that level 6 does (dev corpus, blocks of 8), for 8 % more
 * memory than the backend's level 6 in blocks of 16. In the qemu guest level 6 in
 * blocks of 16 had not settled the hold after 300 s (913 B/page, still
 * falling; kernel-glue/README.md).
 */
static unsigned int cold_rounds = 1;
static unsigned int cold_level = 3;
static unsigned int block_pages = 8;
static bool writeback = true;

static void apply_limit(void)
{
	u64 pages = pool_limit_pages ? pool_limit_pages :
		    (u64)totalram_pages() * max_pool_percent / 100;

	foldswap_rs_set_limit_bytes(pages * PAGE_SIZE);
}

/*
 * Parameters given to insmod are set before the backend exists; they reach it
 * here. Parameter callbacks run under the module's parameter lock, so taking
 * it here orders them with the backend's start and stop (no stats read runs
 * into a backend being dropped).
 */
int foldswap_host_params_on(void)
{
	int ret;

	kernel_param_lock(THIS_MODULE);
	ret = foldswap_rs_stage_scan(cold_rounds, cold_level, block_pages);
	if (!ret) {
		backend_ready = true;
		apply_limit();
		foldswap_rs_set_enabled(enabled);
		foldswap_rs_set_writeback(writeback);
		if (resident_scan && resident_switch(true)) {
			pr_err("resident scanner not started (another ksm policy?)\n");
			resident_scan = false;
		}
	} else {
		pr_err("refused scanner tunables cold_rounds=%u cold_level=%u block_pages=%u\n",
		       cold_rounds, cold_level, block_pages);
	}
	kernel_param_unlock(THIS_MODULE);
	return ret;
}

void foldswap_host_params_off(void)
{
	kernel_param_lock(THIS_MODULE);
	backend_ready = false;
	kernel_param_unlock(THIS_MODULE);
}

/* At most the machine's memory: pages * PAGE_SIZE must not wrap. */
static int set_pool_limit(const char *val, const struct kernel_param *kp)
{
	unsigned long pages;
	int ret = kstrtoul(val, 0, &pages);

	if (ret)
		return ret;
	if (pages > totalram_pages())
		return -EINVAL;
	pool_limit_pages = pages;
	if (backend_ready)
		apply_limit();
	return 0;
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

static int set_writeback(const char *val, const struct kernel_param *kp)
{
	int ret = param_set_bool(val, kp);

	if (!ret && backend_ready)
		foldswap_rs_set_writeback(writeback);
	return ret;
}

static const struct kernel_param_ops writeback_ops = {
	.set = set_writeback,
	.get = param_get_bool,
};
module_param_cb(writeback, &writeback_ops, &writeback, 0644);
MODULE_PARM_DESC(writeback, "Write the coldest pages back to the swap device as the pool nears its limit (Y)");

/*
 * cold_rounds / cold_level / block_pages: the backend checks them (an age an
 * entry cannot reach, a level past 19, blocks of 0 or more than 16 pages:
 * -EINVAL) and the old value stays. Before the
 * backend exists they are checked when it starts (insmod fails).
 */
static int set_scan_tunable(const char *val, const struct kernel_param *kp)
{
	unsigned int *field = kp->arg, value, old;
	int ret = kstrtouint(val, 0, &value);

	if (ret)
		return ret;
	old = *field;
	*field = value;
	if (backend_ready) {
		ret = foldswap_rs_stage_scan(cold_rounds, cold_level, block_pages);
		if (ret)
			*field = old;
	}
	return ret;
}

static const struct kernel_param_ops scan_tunable_ops = {
	.set = set_scan_tunable,
	.get = param_get_uint,
};
module_param_cb(cold_rounds, &scan_tunable_ops, &cold_rounds, 0644);
MODULE_PARM_DESC(cold_rounds, "Scanner rounds an entry stays untouched before it is cold (1; at most 126)");
module_param_cb(cold_level, &scan_tunable_ops, &cold_level, 0644);
MODULE_PARM_DESC(cold_level, "zstd level for cold pages (3; 0: the backend's default, 6; at most 19)");
module_param_cb(block_pages, &scan_tunable_ops, &block_pages, 0644);
MODULE_PARM_DESC(block_pages, "Cold pages compressed together as one block (8; 1: no blocks; at most 16)");

/*
 * The backend's text reports (stats, census): the parameter's arg is the Rust
 * function that renders one into a page. Empty until the backend exists.
 */
typedef long (*backend_report_fn)(char *buf, size_t len);

static int get_backend_report(char *buf, const struct kernel_param *kp)
{
	backend_report_fn render = (backend_report_fn)kp->arg;
	long n = backend_ready ? render(buf, PAGE_SIZE) : 0;

	return n < 0 ? -EIO : n;
}

static const struct kernel_param_ops backend_report_ops = {
	.get = get_backend_report,
};
/* Root only: what is stored (dedup hits) leaks across tenants. */
module_param_cb(stats, &backend_report_ops, (void *)foldswap_rs_stats, 0400);
MODULE_PARM_DESC(stats, "Statistics (read-only, root only)");
/*
 * The stored contents by encoding, counted afresh: every entry is walked
 * under the content lock, so a read costs in proportion to what is stored.
 * For tests and reports, root only like stats.
 */
module_param_cb(census, &backend_report_ops, (void *)foldswap_rs_census, 0400);
MODULE_PARM_DESC(census, "Stored contents by encoding, walking every entry (read-only, root only)");

/*
 * The resident scanner: foldswap's policy for ksmd (the patch's
 * linux/ksm_policy.h). With resident_scan=Y ksmd scans with foldswap's
 * sampled signatures and batch sizes and sleeps on foldswap's governor, woken
 * by swap-out pressure; ksm.c merges as always, so a merged page is an
 * ordinary KSM page and ksm's counters stay true. N gives ksmd back its own
 * checksum and pages_to_scan/sleep_millisecs. Switchable at run time.
 */
static unsigned int resident_strength = 64;
/* The policy is registered with ksm.c. Under the parameter lock. */
static bool resident_on;
/* ksmd, recorded at its first sleep under the policy, referenced until off. */
static struct task_struct *ksmd_task;

/*
 * A page's merge domain (ksmd, with a reference on the page): its memory
 * cgroup under dedup_scope=domain, as the swap face's. The memcg's address is
 * the key: the page's charge pins the memcg, so no other memcg can take that
 * address while the page is in a tree; only the value is used, read under
 * RCU. The scope's choice is the Rust side's.
 */
static unsigned long resident_domain(struct page *page)
{
	unsigned long memcg;

	rcu_read_lock();
	memcg = (unsigned long)folio_memcg(page_folio(page));
	rcu_read_unlock();
	return foldswap_rs_resident_domain(memcg, page_to_pfn(page));
}

static const struct ksm_scan_policy resident_policy = {
	.checksum = foldswap_rs_resident_signature,
	.batch_pages = foldswap_rs_resident_batch_pages,
	.wait = foldswap_rs_resident_wait,
	.domain = resident_domain,
};

/* The policy's parker runs in ksmd (its wait): ksmd is current. */
void foldswap_host_ksmd_prepare_park(void)
{
	if (!READ_ONCE(ksmd_task)) {
		get_task_struct(current);
		/* Pairs with the acquire in foldswap_host_ksmd_unpark(). */
		smp_store_release(&ksmd_task, current);
	}
	set_current_state(TASK_INTERRUPTIBLE);
}

void foldswap_host_ksmd_unpark(void)
{
	struct task_struct *task = smp_load_acquire(&ksmd_task);

	if (task)
		wake_up_process(task);
}

/* Under the parameter lock. */
static int resident_switch(bool on)
{
	struct task_struct *task;
	int ret;

	if (on == resident_on)
		return 0;
	if (on) {
		ret = foldswap_rs_resident_start(resident_strength);
		if (ret)
			return ret;
		ret = ksm_register_scan_policy(&resident_policy);
		if (ret) {
			foldswap_rs_resident_stop_scanning();
			foldswap_rs_resident_hide();
			synchronize_rcu();
			foldswap_rs_resident_stop();
			return ret;
		}
		resident_on = true;
		return 0;
	}
	/* ksmd's waits return at once; unregistering waits until it has left
	 * the policy; hidden, no store notifies it any more, and the stores
	 * that did (under rcu_read_lock) are done after synchronize_rcu(). */
	foldswap_rs_resident_stop_scanning();
	ksm_unregister_scan_policy(&resident_policy);
	foldswap_rs_resident_hide();
	synchronize_rcu();
	foldswap_rs_resident_stop();
	task = xchg(&ksmd_task, NULL);
	if (task)
		put_task_struct(task);
	resident_on = false;
	return 0;
}

/* Before the backend goes: the policy off, whatever resident_scan says. */
void foldswap_host_resident_off(void)
{
	kernel_param_lock(THIS_MODULE);
	resident_switch(false);
	kernel_param_unlock(THIS_MODULE);
}

static int set_resident_scan(const char *val, const struct kernel_param *kp)
{
	bool on;
	int ret = kstrtobool(val, &on);

	if (ret)
		return ret;
	/* Before the backend is up, insmod's value waits for params_on. */
	if (backend_ready) {
		ret = resident_switch(on);
		if (ret)
			return ret;
	}
	resident_scan = on;
	return 0;
}

static const struct kernel_param_ops resident_scan_ops = {
	.set = set_resident_scan,
	.get = param_get_bool,
};
module_param_cb(resident_scan, &resident_scan_ops, &resident_scan, 0644);
MODULE_PARM_DESC(resident_scan, "ksmd scans with foldswap's policy, woken by swap pressure (N)");

/* 1..1034 words of a page per signature; the policy refuses others. */
static int set_resident_strength(const char *val, const struct kernel_param *kp)
{
	unsigned int strength;
	int ret = kstrtouint(val, 0, &strength);

	if (ret)
		return ret;
	if (strength < 1 || strength > 1034)
		return -EINVAL;
	if (resident_on) {
		ret = foldswap_rs_resident_stage(strength);
		if (ret)
			return ret;
	}
	resident_strength = strength;
	return 0;
}

static const struct kernel_param_ops resident_strength_ops = {
	.set = set_resident_strength,
	.get = param_get_uint,
};
module_param_cb(resident_strength, &resident_strength_ops, &resident_strength, 0644);
MODULE_PARM_DESC(resident_strength, "Words of a page the resident scanner's signature reads (64; 1..1034)");

static int get_resident_stats(char *buf, const struct kernel_param *kp)
{
	long n = foldswap_rs_resident_stats(buf, PAGE_SIZE);

	return n < 0 ? -EIO : n;
}

static const struct kernel_param_ops resident_stats_ops = {
	.get = get_resident_stats,
};
/* Root only, as the other statistics. */
module_param_cb(resident, &resident_stats_ops, NULL, 0400);
MODULE_PARM_DESC(resident, "Resident scanner statistics (read-only, root only)");
