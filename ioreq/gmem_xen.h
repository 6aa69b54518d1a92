/*
 * Guest memory of a Xen guest (private to ioreq/): foreign mappings through a bounded cache of
 * 2 MiB buckets, optional whole-RAM premapping, and grant mappings for addresses with bit 63 set.
 * The Xen handles belong to the caller (xen_guest), which destroys this before closing them.
 */
#ifndef XVD_GMEM_XEN_H
#define XVD_GMEM_XEN_H

#include <stdbool.h>
#include <stdint.h>

#include <xenforeignmemory.h>
#include <xengnttab.h>

#include "ioreq/gmem.h"

#define GMEM_XEN_PAGE_SHIFT   12
#define GMEM_XEN_PAGE_SIZE    (UINT64_C(1) << GMEM_XEN_PAGE_SHIFT)
#define GMEM_XEN_BUCKET_SHIFT 21                      /* 2 MiB buckets */
#define GMEM_XEN_BUCKET_PAGES (1u << (GMEM_XEN_BUCKET_SHIFT - GMEM_XEN_PAGE_SHIFT))
/*
 * Temporary mappings outstanding per guest (grant mappings, foreign ranges across a bucket
 * boundary): half of vm.max_map_count, within these limits (32765 with the default 65530).
 */
#define GMEM_XEN_MAX_TEMPS    32768u
#define GMEM_XEN_MIN_TEMPS    1024u
/* Largest grant mapping we build (refs per buffer); also what xengnttab_set_max_grants asks. */
#define GMEM_XEN_MAX_GRANTS   16384u

/* Arm guest RAM banks (xen/include/public/arch-arm.h GUEST_RAM0/1). */
#define GMEM_XEN_RAM0_BASE    UINT64_C(0x40000000)
#define GMEM_XEN_RAM0_MAX     (UINT64_C(3) << 30)
#define GMEM_XEN_RAM1_BASE    UINT64_C(0x200000000)
#define GMEM_XEN_RAM1_MAX     (UINT64_C(1016) << 30)

struct gmem_xen_stats {
	uint64_t maps;          /* successful gmem_map() calls */
	uint64_t cache_hits;    /* served from a cached bucket or the premap */
	uint64_t bucket_maps;   /* buckets mapped (cache misses) */
	uint64_t evictions;     /* buckets unmapped to stay within the bound */
	uint64_t temp_maps;     /* uncached foreign mappings (ranges crossing buckets) */
	uint64_t grant_maps;    /* grant mappings */
	uint64_t failures;      /* gmem_map() returning NULL */
	uint64_t temp_refused;  /* of which: the temporary mapping bound was reached */
	uint32_t max_temps;     /* that bound */
	uint64_t invalidations;
	uint32_t buckets;       /* buckets mapped now (including stale ones still referenced) */
	uint32_t max_buckets;
	uint64_t premapped;     /* bytes of guest RAM premapped */
};

/*
 * gt may be NULL (no grant mappings then). cache_mib bounds the bucket cache (at least one
 * bucket). premap maps RAM bank 0 and bank 1, each up to the first page that fails to map.
 * Returns NULL (logged) on failure.
 */
struct gmem *gmem_xen_create(xenforeignmemory_handle *fm, xengnttab_handle *gt, uint32_t domid,
			     uint32_t cache_mib, bool premap);
void gmem_xen_get_stats(struct gmem *gm, struct gmem_xen_stats *st);

#endif
