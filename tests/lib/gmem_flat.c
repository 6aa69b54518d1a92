#include "tests/lib/gmem_flat.h"

#include <stdlib.h>
#include <string.h>

enum flat_page { FLAT_RAM = 0, FLAT_RO, FLAT_HOLE };

struct flat_grant {
	bool valid;
	bool readonly;
	uint64_t gpa;
};

/* One distinct (pointer, length) pair currently mapped, and how many times. */
struct flat_mapping {
	const void *ptr;
	size_t len;
	unsigned long count;
};

struct gmem_flat {
	struct gmem gm;          /* first member, as gmem.h requires */
	struct flat_mapping *live;
	size_t nlive, caplive;
	uint64_t base, size;
	uint8_t *buf;
	uint8_t *page;           /* enum flat_page per page */
	struct flat_grant grants[GMEM_FLAT_GRANTS];
	gmem_flat_hook hook;
	void *hook_opaque;
	long outstanding;
	unsigned long bad_unmaps, failed_maps;
};

static struct gmem_flat *flat_of(struct gmem *gm)
{
	/* gm is the first member of struct gmem_flat. */
	return (struct gmem_flat *)(void *)gm;
}

/* True when every page of [gpa, gpa+len) is RAM, and writable if prot asks for it. */
static bool flat_range_usable(struct gmem_flat *f, uint64_t gpa, uint64_t len, unsigned prot)
{
	if (!gmem_range_ok(gpa, len) || len > GMEM_MAP_MAX)
		return false;
	if (gpa < f->base || gpa - f->base > f->size || len > f->size - (gpa - f->base))
		return false;
	uint64_t first = (gpa - f->base) / GMEM_FLAT_PAGE;
	uint64_t last = (gpa - f->base + len - 1) / GMEM_FLAT_PAGE;

	for (uint64_t p = first; p <= last; p++) {
		if (f->page[p] == FLAT_HOLE)
			return false;
		if (f->page[p] == FLAT_RO && (prot & GMEM_WRITE))
			return false;
	}
	return true;
}

/*
 * A grant address covers consecutive refs; the flat buffer can only return one pointer, so the
 * granted pages must also be consecutive guest pages (the test driver grants them that way).
 */
static void *flat_map_grant(struct gmem_flat *f, uint64_t gpa, size_t len, unsigned prot)
{
	uint64_t addr = gpa & ~GMEM_GRANT_BIT;
	uint64_t ref0 = addr >> 12, off = addr & 0xfff;

	if (!gmem_range_ok(addr, len) || len > GMEM_MAP_MAX)
		return NULL;
	uint64_t nrefs = (off + len + 0xfff) >> 12;

	if (ref0 >= GMEM_FLAT_GRANTS || nrefs > GMEM_FLAT_GRANTS - ref0)
		return NULL;
	for (uint64_t i = 0; i < nrefs; i++) {
		const struct flat_grant *g = &f->grants[ref0 + i];

		if (!g->valid || g->gpa != f->grants[ref0].gpa + i * GMEM_FLAT_PAGE)
			return NULL;
		if (g->readonly && (prot & GMEM_WRITE))
			return NULL;
	}
	if (!flat_range_usable(f, f->grants[ref0].gpa + off, len, prot))
		return NULL;
	return f->buf + (f->grants[ref0].gpa + off - f->base);
}

static struct flat_mapping *flat_find(struct gmem_flat *f, const void *ptr, size_t len)
{
	for (size_t i = 0; i < f->nlive; i++)
		if (f->live[i].ptr == ptr && f->live[i].len == len)
			return &f->live[i];
	return NULL;
}

/* Remember a mapping so its unmap can be matched exactly; false when out of memory. */
static bool flat_track(struct gmem_flat *f, const void *ptr, size_t len)
{
	struct flat_mapping *m = flat_find(f, ptr, len);

	if (m) {
		m->count++;
		return true;
	}
	if (f->nlive == f->caplive) {
		size_t cap = f->caplive ? 2 * f->caplive : 16;
		struct flat_mapping *n = realloc(f->live, cap * sizeof(*n));

		if (!n)
			return false;
		f->live = n;
		f->caplive = cap;
	}
	f->live[f->nlive++] = (struct flat_mapping){ ptr, len, 1 };
	return true;
}

static void *flat_map(struct gmem *gm, uint64_t gpa, size_t len, unsigned prot)
{
	struct gmem_flat *f = flat_of(gm);
	void *p = NULL;

	if (gpa & GMEM_GRANT_BIT)
		p = flat_map_grant(f, gpa, len, prot);
	else if (flat_range_usable(f, gpa, len, prot))
		p = f->buf + (gpa - f->base);
	if (!p || !flat_track(f, p, len)) {
		f->failed_maps++;
		return NULL;
	}
	f->outstanding++;
	gm->maps++;
	if (f->hook)
		f->hook(f->hook_opaque, gpa, len, prot);
	return p;
}

static void flat_unmap(struct gmem *gm, void *ptr, size_t len)
{
	struct gmem_flat *f = flat_of(gm);
	struct flat_mapping *m = flat_find(f, ptr, len);

	/* Only the exact pointer and length of a live mapping may be unmapped. */
	if (!m) {
		f->bad_unmaps++;
		return;
	}
	if (--m->count == 0)
		*m = f->live[--f->nlive];
	f->outstanding--;
}

static void flat_destroy(struct gmem *gm)
{
	struct gmem_flat *f = flat_of(gm);

	free(f->buf);
	free(f->page);
	free(f->live);
	free(f);
}

static const struct gmem_ops flat_ops = {
	.map = flat_map,
	.unmap = flat_unmap,
	.invalidate = NULL,
	.destroy = flat_destroy,
};

struct gmem *gmem_flat_new(uint64_t base, uint64_t size)
{
	if (size == 0 || base % GMEM_FLAT_PAGE || size % GMEM_FLAT_PAGE ||
	    !gmem_range_ok(base, size) || size > SIZE_MAX / 2)
		return NULL;
	struct gmem_flat *f = calloc(1, sizeof(*f));

	if (!f)
		return NULL;
	f->gm.ops = &flat_ops;
	f->base = base;
	f->size = size;
	f->buf = calloc(1, size);
	f->page = calloc(size / GMEM_FLAT_PAGE, 1);
	if (!f->buf || !f->page) {
		flat_destroy(&f->gm);
		return NULL;
	}
	return &f->gm;
}

void *gmem_flat_host(struct gmem *gm, uint64_t gpa)
{
	struct gmem_flat *f = flat_of(gm);

	if (gpa < f->base || gpa - f->base >= f->size)
		return NULL;
	return f->buf + (gpa - f->base);
}

static void flat_mark(struct gmem *gm, uint64_t gpa, uint64_t len, enum flat_page kind)
{
	struct gmem_flat *f = flat_of(gm);

	for (uint64_t a = gpa & ~(uint64_t)(GMEM_FLAT_PAGE - 1); len && a < gpa + len;
	     a += GMEM_FLAT_PAGE) {
		if (a >= f->base && a - f->base < f->size)
			f->page[(a - f->base) / GMEM_FLAT_PAGE] = (uint8_t)kind;
		if (a + GMEM_FLAT_PAGE < a)
			break;
	}
}

void gmem_flat_add_hole(struct gmem *gm, uint64_t gpa, uint64_t len)
{
	flat_mark(gm, gpa, len, FLAT_HOLE);
}

void gmem_flat_set_readonly(struct gmem *gm, uint64_t gpa, uint64_t len)
{
	flat_mark(gm, gpa, len, FLAT_RO);
}

void gmem_flat_set_ram(struct gmem *gm, uint64_t gpa, uint64_t len)
{
	flat_mark(gm, gpa, len, FLAT_RAM);
}

int gmem_flat_grant(struct gmem *gm, uint32_t ref, uint64_t gpa, bool readonly)
{
	struct gmem_flat *f = flat_of(gm);

	if (ref >= GMEM_FLAT_GRANTS || gpa % GMEM_FLAT_PAGE || !gmem_flat_host(gm, gpa))
		return -1;
	f->grants[ref] = (struct flat_grant){ .valid = true, .readonly = readonly, .gpa = gpa };
	return 0;
}

void gmem_flat_ungrant(struct gmem *gm, uint32_t ref)
{
	if (ref < GMEM_FLAT_GRANTS)
		memset(&flat_of(gm)->grants[ref], 0, sizeof(struct flat_grant));
}

void gmem_flat_set_map_hook(struct gmem *gm, gmem_flat_hook fn, void *opaque)
{
	flat_of(gm)->hook = fn;
	flat_of(gm)->hook_opaque = opaque;
}

long gmem_flat_outstanding(struct gmem *gm)
{
	return flat_of(gm)->outstanding;
}

unsigned long gmem_flat_bad_unmaps(struct gmem *gm)
{
	return flat_of(gm)->bad_unmaps;
}

unsigned long gmem_flat_failed_maps(struct gmem *gm)
{
	return flat_of(gm)->failed_maps;
}
