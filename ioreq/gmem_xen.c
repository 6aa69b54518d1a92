/*
 * Guest memory of a Xen guest: the ioreq/gmem.h contract over libxenforeignmemory and
 * libxengnttab.
 *
 * Foreign mappings are cached in 2 MiB buckets (512 pages, aligned in guest physical space):
 * mapping costs a hypercall and a TLB shootdown on unmap, and virtqueue buffers cluster, so a
 * bucket is reused by many requests. The number of buckets is bounded (map_cache MiB); the least
 * recently used unreferenced bucket is evicted. A bucket referenced by an outstanding gmem_map()
 * is never unmapped; when invalidated it turns stale (no new users) and goes on its last unmap.
 * Ranges crossing a bucket boundary, and every grant mapping, are temporary mappings of their own.
 */
#include "ioreq/gmem_xen.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "lib/log.h"
#include "lib/util.h"


#define GX_BUCKET_SIZE  (UINT64_C(1) << GMEM_XEN_BUCKET_SHIFT)
#define GX_BUCKET_MASK  (GX_BUCKET_SIZE - 1)
#define GX_PAGE_MASK    (GMEM_XEN_PAGE_SIZE - 1)
#define GX_TEMP_HASH    256u
#define GX_PREMAP_CHUNK (UINT64_C(1) << 30)   /* premap in 1 GiB mappings */

struct gx_bucket {
	uint64_t idx;                  /* gpa >> GMEM_XEN_BUCKET_SHIFT */
	uint8_t *va;
	uint32_t refs;                 /* outstanding gmem_map() results inside this bucket */
	bool stale;                    /* invalidated: no new users, unmapped on the last unmap */
	struct gx_bucket *hnext;       /* gpa hash chain (stale buckets are not in the hash) */
	struct gx_bucket *prev, *next; /* LRU list, most recent first (not stale buckets) */
	uint64_t ok[GMEM_XEN_BUCKET_PAGES / 64];  /* pages Xen actually mapped */
};

/* An uncached mapping: a range crossing buckets, or a grant mapping. */
struct gx_temp {
	uint8_t *va;                   /* page aligned, as mapped */
	uint32_t npages;
	bool grant;
	struct gx_temp *next;
};

/* A premapped piece of a RAM bank: [gpa, gpa + len) is valid at va. */
struct gx_region {
	uint64_t gpa, len;
	uint8_t *va;
	size_t npages;                 /* as mapped (len may be a shorter valid prefix) */
};

struct gmem_xen {
	struct gmem gm;
	xenforeignmemory_handle *fm;
	xengnttab_handle *gt;
	uint32_t domid;

	struct gx_bucket **hash;       /* by idx */
	uint32_t hash_mask;
	struct gx_bucket **by_va;      /* every mapped bucket (stale too), sorted by va */
	uint32_t nbuckets, max_buckets;
	struct gx_bucket lru;          /* sentinel */

	struct gx_temp *temps[GX_TEMP_HASH];
	uint32_t ntemps, max_temps;    /* temporary mappings outstanding, and their bound */
	struct gx_region *regions;
	unsigned nregions;

	struct ratelimit rl;
	struct gmem_xen_stats st;
};

static struct gmem_xen *gx_of(struct gmem *gm)
{
	return container_of(gm, struct gmem_xen, gm);
}

/* ---- bucket bookkeeping ---- */

static uint32_t gx_hash_slot(const struct gmem_xen *gx, uint64_t idx)
{
	return (uint32_t)((idx * UINT64_C(0x9E3779B97F4A7C15)) >> 32) & gx->hash_mask;
}

static void gx_lru_unlink(struct gx_bucket *b)
{
	b->prev->next = b->next;
	b->next->prev = b->prev;
	b->prev = b->next = b;
}

static void gx_lru_push_front(struct gmem_xen *gx, struct gx_bucket *b)
{
	b->next = gx->lru.next;
	b->prev = &gx->lru;
	gx->lru.next->prev = b;
	gx->lru.next = b;
}

static void gx_hash_remove(struct gmem_xen *gx, struct gx_bucket *b)
{
	struct gx_bucket **pp = &gx->hash[gx_hash_slot(gx, b->idx)];

	while (*pp && *pp != b)
		pp = &(*pp)->hnext;
	if (*pp)
		*pp = b->hnext;
	b->hnext = NULL;
}

static struct gx_bucket *gx_hash_find(struct gmem_xen *gx, uint64_t idx)
{
	struct gx_bucket *b = gx->hash[gx_hash_slot(gx, idx)];

	while (b && b->idx != idx)
		b = b->hnext;
	return b;
}

/* Index of the first bucket in by_va whose va is greater than `p`. */
static uint32_t gx_va_upper(const struct gmem_xen *gx, const uint8_t *p)
{
	uint32_t lo = 0, hi = gx->nbuckets;

	while (lo < hi) {
		uint32_t mid = lo + (hi - lo) / 2;

		if ((uintptr_t)gx->by_va[mid]->va <= (uintptr_t)p)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

static void gx_va_insert(struct gmem_xen *gx, struct gx_bucket *b)
{
	uint32_t i = gx_va_upper(gx, b->va);

	memmove(&gx->by_va[i + 1], &gx->by_va[i], (gx->nbuckets - i) * sizeof(gx->by_va[0]));
	gx->by_va[i] = b;
	gx->nbuckets++;
}

static void gx_va_remove(struct gmem_xen *gx, struct gx_bucket *b)
{
	uint32_t i = gx_va_upper(gx, b->va);

	/* by_va[i - 1] is b: vas are distinct mappings. */
	if (i == 0 || gx->by_va[i - 1] != b)
		return;
	i--;
	memmove(&gx->by_va[i], &gx->by_va[i + 1], (gx->nbuckets - i - 1) * sizeof(gx->by_va[0]));
	gx->nbuckets--;
}

static struct gx_bucket *gx_va_find(const struct gmem_xen *gx, const uint8_t *p)
{
	uint32_t i = gx_va_upper(gx, p);
	struct gx_bucket *b;

	if (i == 0)
		return NULL;
	b = gx->by_va[i - 1];
	return (uintptr_t)p - (uintptr_t)b->va < GX_BUCKET_SIZE ? b : NULL;
}

/* Unmap and free a bucket that is in neither the hash nor the LRU list. */
static void gx_bucket_free(struct gmem_xen *gx, struct gx_bucket *b)
{
	gx_va_remove(gx, b);
	if (xenforeignmemory_unmap(gx->fm, b->va, GMEM_XEN_BUCKET_PAGES) < 0)
		log_warn("gmem: unmapping bucket 0x%llx: %s",
			 (unsigned long long)(b->idx << GMEM_XEN_BUCKET_SHIFT), strerror(errno));
	free(b);
}

/* Make room for one more bucket: evict the least recently used unreferenced one. */
static bool gx_make_room(struct gmem_xen *gx)
{
	struct gx_bucket *b;

	if (gx->nbuckets < gx->max_buckets)
		return true;
	for (b = gx->lru.prev; b != &gx->lru; b = b->prev) {
		if (b->refs)
			continue;
		gx_lru_unlink(b);
		gx_hash_remove(gx, b);
		gx_bucket_free(gx, b);
		gx->st.evictions++;
		return true;
	}
	return false;
}

/* Map a bucket; pages outside guest RAM are recorded as missing rather than failing it. */
static struct gx_bucket *gx_bucket_map(struct gmem_xen *gx, uint64_t idx)
{
	xen_pfn_t pfns[GMEM_XEN_BUCKET_PAGES];
	int err[GMEM_XEN_BUCKET_PAGES];
	struct gx_bucket *b = calloc(1, sizeof(*b));
	unsigned i, nok = 0;

	if (!b)
		return NULL;
	for (i = 0; i < GMEM_XEN_BUCKET_PAGES; i++)
		pfns[i] = (xen_pfn_t)((idx << (GMEM_XEN_BUCKET_SHIFT - GMEM_XEN_PAGE_SHIFT)) + i);
	b->va = xenforeignmemory_map(gx->fm, gx->domid, PROT_READ | PROT_WRITE,
				     GMEM_XEN_BUCKET_PAGES, pfns, err);
	if (!b->va) {
		free(b);
		return NULL;
	}
	for (i = 0; i < GMEM_XEN_BUCKET_PAGES; i++) {
		if (err[i] == 0) {
			b->ok[i / 64] |= UINT64_C(1) << (i % 64);
			nok++;
		}
	}
	if (nok == 0) {
		xenforeignmemory_unmap(gx->fm, b->va, GMEM_XEN_BUCKET_PAGES);
		free(b);
		return NULL;
	}
	b->idx = idx;
	b->prev = b->next = b;
	return b;
}

/* b is the most recently used bucket: the LRU list's front, not its sentinel (list empty). */
static bool gx_is_mru(const struct gmem_xen *gx, const struct gx_bucket *b)
{
	return b == gx->lru.next && b != &gx->lru;
}

/* The cached bucket for idx, mapping it on a miss. NULL when not mappable or no room. */
static struct gx_bucket *gx_bucket_get(struct gmem_xen *gx, uint64_t idx, bool *no_room)
{
	struct gx_bucket *b = gx->lru.next;
	uint32_t slot;

	*no_room = false;
	/* A request's buffers and rings usually share a bucket: the front needs no move. */
	if (gx_is_mru(gx, b) && b->idx == idx) {
		gx->st.cache_hits++;
		return b;
	}
	b = gx_hash_find(gx, idx);
	if (b) {
		gx_lru_unlink(b);
		gx_lru_push_front(gx, b);
		gx->st.cache_hits++;
		return b;
	}
	if (!gx_make_room(gx)) {
		*no_room = true;
		return NULL;
	}
	b = gx_bucket_map(gx, idx);
	if (!b)
		return NULL;
	gx->st.bucket_maps++;
	slot = gx_hash_slot(gx, idx);
	b->hnext = gx->hash[slot];
	gx->hash[slot] = b;
	gx_lru_push_front(gx, b);
	gx_va_insert(gx, b);
	return b;
}

static bool gx_bucket_pages_ok(const struct gx_bucket *b, uint64_t gpa, uint64_t len)
{
	unsigned first = (unsigned)((gpa & GX_BUCKET_MASK) >> GMEM_XEN_PAGE_SHIFT);
	unsigned last = (unsigned)(((gpa + len - 1) & GX_BUCKET_MASK) >> GMEM_XEN_PAGE_SHIFT);

	for (unsigned i = first; i <= last; i++)
		if (!(b->ok[i / 64] & (UINT64_C(1) << (i % 64))))
			return false;
	return true;
}

/* ---- temporary mappings ---- */

static unsigned gx_temp_slot(const void *va)
{
	return (unsigned)(((uintptr_t)va >> GMEM_XEN_PAGE_SHIFT) & (GX_TEMP_HASH - 1));
}

static bool gx_temp_add(struct gmem_xen *gx, uint8_t *va, uint32_t npages, bool grant)
{
	struct gx_temp *t = malloc(sizeof(*t));
	unsigned slot = gx_temp_slot(va);

	if (!t)
		return false;
	t->va = va;
	t->npages = npages;
	t->grant = grant;
	t->next = gx->temps[slot];
	gx->temps[slot] = t;
	gx->ntemps++;
	return true;
}

static void gx_temp_release(struct gmem_xen *gx, struct gx_temp *t)
{
	int rc;

	if (t->grant)
		rc = xengnttab_unmap(gx->gt, t->va, t->npages);
	else
		rc = xenforeignmemory_unmap(gx->fm, t->va, t->npages);
	if (rc < 0)
		log_warn("gmem: unmapping %u %s pages: %s", t->npages,
			 t->grant ? "granted" : "foreign", strerror(errno));
	gx->ntemps--;
	free(t);
}

/* Find and unlink the temporary mapping starting at page `va`. */
static struct gx_temp *gx_temp_take(struct gmem_xen *gx, const uint8_t *va)
{
	struct gx_temp **pp = &gx->temps[gx_temp_slot(va)];

	for (; *pp; pp = &(*pp)->next) {
		struct gx_temp *t = *pp;

		if (t->va == va) {
			*pp = t->next;
			return t;
		}
	}
	return NULL;
}

static int gx_mmap_prot(unsigned prot)
{
	return prot == GMEM_READ ? PROT_READ : PROT_READ | PROT_WRITE;
}

/*
 * Each temporary mapping is a mapping (a VMA) of its own, and the guest decides how many exist:
 * chains in flight times buffers per chain (a buffer across a 2 MiB boundary, every grant
 * mapping). The bound keeps the daemon well inside vm.max_map_count, which counts every mapping
 * of the process (malloc's, io_uring's): past it gmem_map() fails, and the chain with it.
 */
static bool gx_temp_room(struct gmem_xen *gx)
{
	if (gx->ntemps < gx->max_temps)
		return true;
	gx->st.temp_refused++;
	log_rl(&gx->rl, LOG_WARNING, "gmem: %u temporary guest mappings outstanding, the bound: "
	       "refusing more", gx->ntemps);
	return false;
}

/* A foreign range of its own: every page must map, or nothing is returned. */
static void *gx_foreign_temp(struct gmem_xen *gx, uint64_t gpa, uint64_t len, unsigned prot)
{
	uint64_t first = gpa >> GMEM_XEN_PAGE_SHIFT;
	size_t npages = (size_t)(((gpa + len - 1) >> GMEM_XEN_PAGE_SHIFT) - first + 1);
	xen_pfn_t *pfns = malloc(npages * sizeof(*pfns));
	int *err = malloc(npages * sizeof(*err));
	uint8_t *va = NULL;
	size_t i;

	if (!pfns || !err || !gx_temp_room(gx))
		goto out;
	for (i = 0; i < npages; i++)
		pfns[i] = (xen_pfn_t)(first + i);
	va = xenforeignmemory_map(gx->fm, gx->domid, gx_mmap_prot(prot), npages, pfns, err);
	if (!va)
		goto out;
	for (i = 0; i < npages && err[i] == 0; i++)
		;
	if (i < npages || !gx_temp_add(gx, va, (uint32_t)npages, false)) {
		xenforeignmemory_unmap(gx->fm, va, npages);
		va = NULL;
		goto out;
	}
	gx->st.temp_maps++;
out:
	free(err);
	free(pfns);
	return va ? va + (gpa & GX_PAGE_MASK) : NULL;
}

/* Grant address: consecutive refs from (gpa & ~bit63) >> 12, read-only when the device reads. */
static void *gx_grant_map(struct gmem_xen *gx, uint64_t gpa, uint64_t len, unsigned prot)
{
	uint64_t off = gpa & GX_PAGE_MASK;
	uint64_t ref0 = (gpa & ~GMEM_GRANT_BIT) >> GMEM_XEN_PAGE_SHIFT;
	uint64_t npages = (off + len + GX_PAGE_MASK) >> GMEM_XEN_PAGE_SHIFT;
	uint32_t *refs;
	uint8_t *va;

	if (!gx->gt || npages > GMEM_XEN_MAX_GRANTS || ref0 + npages - 1 > UINT32_MAX ||
	    !gx_temp_room(gx))
		return NULL;
	refs = malloc(npages * sizeof(*refs));
	if (!refs)
		return NULL;
	for (uint64_t i = 0; i < npages; i++)
		refs[i] = (uint32_t)(ref0 + i);
	va = xengnttab_map_domain_grant_refs(gx->gt, (uint32_t)npages, gx->domid, refs,
					     gx_mmap_prot(prot));
	free(refs);
	if (!va)
		return NULL;
	if (!gx_temp_add(gx, va, (uint32_t)npages, true)) {
		xengnttab_unmap(gx->gt, va, (uint32_t)npages);
		return NULL;
	}
	gx->st.grant_maps++;
	return va + off;
}

/* ---- premapped RAM ---- */

static void *gx_premap_find(const struct gmem_xen *gx, uint64_t gpa, uint64_t len)
{
	for (unsigned i = 0; i < gx->nregions; i++) {
		const struct gx_region *r = &gx->regions[i];

		if (gpa >= r->gpa && gpa - r->gpa < r->len && len <= r->len - (gpa - r->gpa))
			return r->va + (gpa - r->gpa);
	}
	return NULL;
}

static bool gx_premap_owns(const struct gmem_xen *gx, const uint8_t *p)
{
	for (unsigned i = 0; i < gx->nregions; i++) {
		const struct gx_region *r = &gx->regions[i];

		if ((uintptr_t)p - (uintptr_t)r->va < r->npages * GMEM_XEN_PAGE_SIZE)
			return true;
	}
	return false;
}

static bool gx_region_add(struct gmem_xen *gx, uint64_t gpa, uint64_t len, uint8_t *va,
			  size_t npages)
{
	struct gx_region *r = realloc(gx->regions, (gx->nregions + 1) * sizeof(*r));

	if (!r)
		return false;
	gx->regions = r;
	r[gx->nregions++] = (struct gx_region){ .gpa = gpa, .len = len, .va = va,
						.npages = npages };
	gx->st.premapped += len;
	return true;
}

/*
 * Map one chunk of a bank; returns the number of leading pages that mapped (RAM is contiguous
 * within a bank, so the first failure is its end), keeping the mapping when that is not zero.
 */
static size_t gx_premap_chunk(struct gmem_xen *gx, uint64_t gpa, size_t npages)
{
	xen_pfn_t *pfns = malloc(npages * sizeof(*pfns));
	int *err = malloc(npages * sizeof(*err));
	uint8_t *va = NULL;
	size_t i = 0;

	if (!pfns || !err)
		goto out;
	for (i = 0; i < npages; i++)
		pfns[i] = (xen_pfn_t)((gpa >> GMEM_XEN_PAGE_SHIFT) + i);
	va = xenforeignmemory_map(gx->fm, gx->domid, PROT_READ | PROT_WRITE, npages, pfns, err);
	i = 0;
	if (!va)
		goto out;
	while (i < npages && err[i] == 0)
		i++;
	if (i == 0 || !gx_region_add(gx, gpa, i * GMEM_XEN_PAGE_SIZE, va, npages)) {
		xenforeignmemory_unmap(gx->fm, va, npages);
		i = 0;
	}
out:
	free(err);
	free(pfns);
	return i;
}

static void gx_premap_bank(struct gmem_xen *gx, uint64_t base, uint64_t max)
{
	for (uint64_t off = 0; off < max; off += GX_PREMAP_CHUNK) {
		uint64_t chunk = max - off < GX_PREMAP_CHUNK ? max - off : GX_PREMAP_CHUNK;
		size_t npages = (size_t)(chunk >> GMEM_XEN_PAGE_SHIFT);

		if (gx_premap_chunk(gx, base + off, npages) < npages)
			break;
	}
}

static void gx_premap(struct gmem_xen *gx)
{
	gx_premap_bank(gx, GMEM_XEN_RAM0_BASE, GMEM_XEN_RAM0_MAX);
	gx_premap_bank(gx, GMEM_XEN_RAM1_BASE, GMEM_XEN_RAM1_MAX);
	log_info("gmem: premapped %llu MiB of guest RAM in %u mappings",
		 (unsigned long long)(gx->st.premapped >> 20), gx->nregions);
}

/* ---- the gmem ops ---- */

static void *gx_map_foreign(struct gmem_xen *gx, uint64_t gpa, uint64_t len, unsigned prot)
{
	struct gx_bucket *b;
	bool no_room;
	void *p = gx_premap_find(gx, gpa, len);

	if (p) {
		gx->st.cache_hits++;
		return p;
	}
	if ((gpa >> GMEM_XEN_BUCKET_SHIFT) != ((gpa + len - 1) >> GMEM_XEN_BUCKET_SHIFT))
		return gx_foreign_temp(gx, gpa, len, prot);
	b = gx_bucket_get(gx, gpa >> GMEM_XEN_BUCKET_SHIFT, &no_room);
	if (!b)
		/* Every cached bucket is in use: serve this one uncached rather than fail. */
		return no_room ? gx_foreign_temp(gx, gpa, len, prot) : NULL;
	if (!gx_bucket_pages_ok(b, gpa, len))
		return NULL;
	b->refs++;
	return b->va + (gpa & GX_BUCKET_MASK);
}

static __attribute__((noinline)) void *gx_map_slow(struct gmem *gm, uint64_t gpa, size_t len,
						    unsigned prot)
{
	struct gmem_xen *gx = gx_of(gm);
	void *p = NULL;

	if (len != 0 && len <= GMEM_MAP_MAX && gmem_range_ok(gpa, len)) {
		if (gpa & GMEM_GRANT_BIT)
			p = gx_grant_map(gx, gpa, len, prot);
		else
			p = gx_map_foreign(gx, gpa, len, prot);
	}
	if (!p) {
		gx->st.failures++;
		/* Debug only: the virtqueue reports the consequence, naming the device. */
		log_rl(&gx->rl, LOG_DEBUG, "gmem: cannot map guest range 0x%llx+%zu",
		       (unsigned long long)gpa, len);
		return NULL;
	}
	gx->st.maps++;
	gm->maps = gx->st.maps;
	gm->cache_hits = gx->st.cache_hits;
	return p;
}

/*
 * The common case kept small: the whole range in the most recently used bucket (a request's
 * buffers and the rings usually are), no premapped RAM that would be preferred. The same
 * checks as gx_map_foreign() on that bucket; everything else takes the full path.
 */
static void *gx_map(struct gmem *gm, uint64_t gpa, size_t len, unsigned prot)
{
	struct gmem_xen *gx = gx_of(gm);
	struct gx_bucket *b = gx->lru.next;

	if (gx_is_mru(gx, b) && !gx->nregions && len != 0 && len <= GMEM_MAP_MAX &&
	    gmem_range_ok(gpa, len) && !(gpa & GMEM_GRANT_BIT) &&
	    (gpa >> GMEM_XEN_BUCKET_SHIFT) == b->idx &&
	    ((gpa + len - 1) >> GMEM_XEN_BUCKET_SHIFT) == b->idx &&
	    gx_bucket_pages_ok(b, gpa, len)) {
		b->refs++;
		gx->st.cache_hits++;
		gx->st.maps++;
		gm->maps = gx->st.maps;
		gm->cache_hits = gx->st.cache_hits;
		return b->va + (gpa & GX_BUCKET_MASK);
	}
	return gx_map_slow(gm, gpa, len, prot);
}

static void gx_unmap(struct gmem *gm, void *ptr, size_t len)
{
	struct gmem_xen *gx = gx_of(gm);
	uint8_t *page = (uint8_t *)((uintptr_t)ptr & ~(uintptr_t)GX_PAGE_MASK);
	struct gx_bucket *b = gx->lru.next;
	struct gx_temp *t;

	(void)len;
	/* Inside the front bucket's mapping (no other mapping overlaps it): no lookups. */
	if (gx_is_mru(gx, b) && (uintptr_t)ptr - (uintptr_t)b->va < GX_BUCKET_SIZE && b->refs) {
		b->refs--;
		return;
	}
	t = gx_temp_take(gx, page);
	if (t) {
		gx_temp_release(gx, t);
		return;
	}
	b = gx_va_find(gx, ptr);
	if (b && b->refs) {
		if (--b->refs == 0 && b->stale)
			gx_bucket_free(gx, b);
		return;
	}
	if (!gx_premap_owns(gx, ptr))
		log_rl(&gx->rl, LOG_ERR, "gmem: unmap of a pointer never mapped (%p)", ptr);
}

/*
 * Premapped RAM is kept: premap is for guests whose memory does not change (no ballooning),
 * and remapping gigabytes per invalidate would defeat its purpose.
 */
static void gx_invalidate(struct gmem *gm)
{
	struct gmem_xen *gx = gx_of(gm);
	struct gx_bucket *b, *next;

	for (b = gx->lru.next; b != &gx->lru; b = next) {
		next = b->next;
		gx_lru_unlink(b);
		gx_hash_remove(gx, b);
		if (b->refs)
			b->stale = true;
		else
			gx_bucket_free(gx, b);
	}
	gx->st.invalidations++;
}

static void gx_destroy(struct gmem *gm)
{
	struct gmem_xen *gx = gx_of(gm);
	unsigned leaked = 0;

	for (unsigned i = 0; i < GX_TEMP_HASH; i++) {
		while (gx->temps[i]) {
			struct gx_temp *t = gx->temps[i];

			gx->temps[i] = t->next;
			gx_temp_release(gx, t);
			leaked++;
		}
	}
	while (gx->nbuckets) {
		struct gx_bucket *b = gx->by_va[gx->nbuckets - 1];

		leaked += b->refs;
		gx_bucket_free(gx, b);
	}
	for (unsigned i = 0; i < gx->nregions; i++)
		xenforeignmemory_unmap(gx->fm, gx->regions[i].va, gx->regions[i].npages);
	if (leaked)
		log_warn("gmem: %u guest mappings still referenced at teardown", leaked);
	free(gx->regions);
	free(gx->by_va);
	free(gx->hash);
	free(gx);
}

static const struct gmem_ops gx_ops = {
	.map = gx_map,
	.unmap = gx_unmap,
	.invalidate = gx_invalidate,
	.destroy = gx_destroy,
};

static uint32_t gx_pow2_at_least(uint32_t n)
{
	uint32_t p = 1;

	while (p < n && p < (UINT32_C(1) << 30))
		p <<= 1;
	return p;
}

/* Half of vm.max_map_count (the rest for everything else), at most GMEM_XEN_MAX_TEMPS. */
static uint32_t gx_max_temps(void)
{
	FILE *f = fopen("/proc/sys/vm/max_map_count", "r");
	unsigned long n = 0;

	if (f) {
		if (fscanf(f, "%lu", &n) != 1)
			n = 0;
		fclose(f);
	}
	if (n == 0 || n / 2 > GMEM_XEN_MAX_TEMPS)
		return GMEM_XEN_MAX_TEMPS;
	return n / 2 < GMEM_XEN_MIN_TEMPS ? GMEM_XEN_MIN_TEMPS : (uint32_t)(n / 2);
}

struct gmem *gmem_xen_create(xenforeignmemory_handle *fm, xengnttab_handle *gt, uint32_t domid,
			     uint32_t cache_mib, bool premap)
{
	struct gmem_xen *gx = calloc(1, sizeof(*gx));
	uint32_t hsize;

	if (!gx)
		goto fail;
	gx->gm.ops = &gx_ops;
	gx->fm = fm;
	gx->gt = gt;
	gx->domid = domid;
	gx->rl = (struct ratelimit)RATELIMIT_DEFAULT;
	gx->max_buckets = cache_mib >> (GMEM_XEN_BUCKET_SHIFT - 20);
	if (gx->max_buckets == 0)
		gx->max_buckets = 1;
	gx->lru.prev = gx->lru.next = &gx->lru;
	hsize = gx_pow2_at_least(gx->max_buckets * 2);
	gx->hash_mask = hsize - 1;
	gx->hash = calloc(hsize, sizeof(*gx->hash));
	gx->by_va = calloc(gx->max_buckets, sizeof(*gx->by_va));
	if (!gx->hash || !gx->by_va)
		goto fail_free;
	gx->st.max_buckets = gx->max_buckets;
	gx->max_temps = gx_max_temps();
	gx->st.max_temps = gx->max_temps;
	if (premap)
		gx_premap(gx);
	return &gx->gm;

fail_free:
	free(gx->by_va);
	free(gx->hash);
	free(gx);
fail:
	log_err("gmem: out of memory");
	return NULL;
}

void gmem_xen_get_stats(struct gmem *gm, struct gmem_xen_stats *st)
{
	struct gmem_xen *gx = gx_of(gm);

	*st = gx->st;
	st->buckets = gx->nbuckets;
}
