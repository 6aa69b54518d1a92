/*
 * Guest memory, as the virtio core sees it. The core never knows whether memory is
 * foreign-mapped, grant-mapped or (in tests) a plain buffer: it only calls these.
 *
 * Contract for every implementation:
 *  - gmem_map() returns a host pointer to the whole range [gpa, gpa+len) or NULL. It returns
 *    NULL when gpa+len overflows, when len is 0 or larger than GMEM_MAP_MAX, when any byte of
 *    the range is not guest RAM (holes, beyond RAM), or when `prot` asks for write access to
 *    memory the guest only granted read-only.
 *  - Every successful gmem_map() is paired with exactly one gmem_unmap() of the same pointer and
 *    length. Until then the pointer stays valid, even across gmem_invalidate() (a cache keeps the
 *    underlying mapping alive while it is referenced).
 *  - Addresses with bit 63 set are grant addresses: ref = (gpa & ~GMEM_GRANT_BIT) >> 12, the
 *    buffer spans consecutive refs, offset within the first page is gpa & 0xfff.
 *  - Guest memory is shared with a hostile guest: the caller reads any field it validates once,
 *    into private memory, before using it.
 */
#ifndef XVD_GMEM_H
#define XVD_GMEM_H

#include <stddef.h>
#include <stdint.h>

#define GMEM_READ  1u   /* the device reads this range (guest -> device) */
#define GMEM_WRITE 2u   /* the device writes this range (device -> guest) */

#define GMEM_GRANT_BIT (UINT64_C(1) << 63)
#define GMEM_MAP_MAX   (UINT32_C(1) << 31)   /* no single mapping larger than 2 GiB */

struct gmem;

struct gmem_ops {
	void *(*map)(struct gmem *gm, uint64_t gpa, size_t len, unsigned prot);
	void (*unmap)(struct gmem *gm, void *ptr, size_t len);
	/* Drop cached mappings that nobody references (IOREQ_TYPE_INVALIDATE, ballooning). */
	void (*invalidate)(struct gmem *gm);
	void (*destroy)(struct gmem *gm);
};

/* Implementations embed this as their first member. */
struct gmem {
	const struct gmem_ops *ops;
	/* Statistics for the benchmark's cache report. */
	uint64_t maps, cache_hits;
};

static inline void *gmem_map(struct gmem *gm, uint64_t gpa, size_t len, unsigned prot)
{
	return gm->ops->map(gm, gpa, len, prot);
}

static inline void gmem_unmap(struct gmem *gm, void *ptr, size_t len)
{
	if (ptr)
		gm->ops->unmap(gm, ptr, len);
}

static inline void gmem_invalidate(struct gmem *gm)
{
	if (gm->ops->invalidate)
		gm->ops->invalidate(gm);
}

static inline void gmem_destroy(struct gmem *gm)
{
	if (gm)
		gm->ops->destroy(gm);
}

/* True when [gpa, gpa+len) is a non-empty range that does not wrap around 2^64. */
static inline int gmem_range_ok(uint64_t gpa, uint64_t len)
{
	return len != 0 && gpa + len - 1 >= gpa;
}

#endif
