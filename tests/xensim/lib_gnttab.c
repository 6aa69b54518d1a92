/*
 * libxengnttab, simulated: the guest's grant table is in the domain's shared control page;
 * a map reads the entries (flags with acquire, then the frame) and mmaps the granted frames of
 * the RAM memfd. A read-only grant mapped with PROT_WRITE fails, as the hypervisor refuses it.
 */
#include <errno.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>

#include <xengnttab.h>

#include "tests/xensim/client.h"
#include "tests/xensim/fault.h"

struct gnt_map {
	void *addr;
	uint32_t count;
};

struct xengntdev_handle {
	int conn;
	uint32_t max_grants;      /* 0: no limit set */
	uint32_t mapped;
	struct xsim_domcache dc;
	struct gnt_map *maps;
	unsigned nmaps;
};

xengnttab_handle *xengnttab_open(struct xentoollog_logger *logger, unsigned open_flags)
{
	xengnttab_handle *h = calloc(1, sizeof(*h));

	(void)logger;
	(void)open_flags;
	if (!h)
		return NULL;
	h->conn = xsim_fault("gntdev") ? (errno = ENOENT, -1) : xsim_connect();
	if (h->conn < 0) {
		free(h);
		return NULL;
	}
	return h;
}

int xengnttab_close(xengnttab_handle *xgt)
{
	if (!xgt)
		return 0;
	for (unsigned i = 0; i < xgt->nmaps; i++)
		munmap(xgt->maps[i].addr, (size_t)xgt->maps[i].count * XSIM_PAGE);
	free(xgt->maps);
	xsim_domcache_free(&xgt->dc);
	close(xgt->conn);
	free(xgt);
	return 0;
}

int xengnttab_set_max_grants(xengnttab_handle *xgt, uint32_t nr_grants)
{
	xgt->max_grants = nr_grants;
	return 0;
}

/* The RAM offset of a grant ref, or -errno. */
static int64_t gnt_offset(const struct xsim_domctl *ctl, uint32_t ref, int prot)
{
	uint32_t flags;
	int64_t off;

	if (ref >= XSIM_NR_GRANTS)
		return -EINVAL;
	/* Acquire: the frame was written before the guest published the entry. */
	flags = atomic_load_explicit(&ctl->grants[ref].flags, memory_order_acquire);
	if (!(flags & XSIM_GNT_VALID))
		return -EINVAL;
	if ((flags & XSIM_GNT_READONLY) && (prot & PROT_WRITE))
		return -EACCES;
	off = xsim_gfn_offset(ctl, ctl->grants[ref].frame);
	return off < 0 ? -EINVAL : off;
}

static int gnt_remember(xengnttab_handle *h, void *addr, uint32_t count)
{
	struct gnt_map *v = realloc(h->maps, (h->nmaps + 1) * sizeof(*v));

	if (!v)
		return -1;
	h->maps = v;
	v[h->nmaps++] = (struct gnt_map){ addr, count };
	h->mapped += count;
	return 0;
}

void *xengnttab_map_domain_grant_refs(xengnttab_handle *xgt, uint32_t count, uint32_t domid,
				      uint32_t *refs, int prot)
{
	struct xsim_cdom *d = xsim_domcache_get(&xgt->dc, xgt->conn, domid);
	int64_t *off;
	void *p = NULL;

	if (!d || !atomic_load(&d->ctl->alive)) {
		errno = d ? ESRCH : errno;
		return NULL;
	}
	if (count == 0 || count > XSIM_NR_GRANTS ||
	    (xgt->max_grants && xgt->mapped + count > xgt->max_grants)) {
		errno = count ? ENOSPC : EINVAL;
		return NULL;
	}
	off = malloc(count * sizeof(*off));
	if (!off)
		return NULL;
	for (uint32_t i = 0; i < count; i++) {
		off[i] = gnt_offset(d->ctl, refs[i], prot);
		if (off[i] < 0) {
			errno = (int)-off[i];
			free(off);
			return NULL;
		}
	}
	p = xsim_map_frames(d->ram_fd, off, count, prot);
	free(off);
	if (p && gnt_remember(xgt, p, count) < 0) {
		munmap(p, (size_t)count * XSIM_PAGE);
		errno = ENOMEM;
		return NULL;
	}
	return p;
}

int xengnttab_unmap(xengnttab_handle *xgt, void *start_address, uint32_t count)
{
	for (unsigned i = 0; i < xgt->nmaps; i++) {
		if (xgt->maps[i].addr != start_address || xgt->maps[i].count != count)
			continue;
		munmap(start_address, (size_t)count * XSIM_PAGE);
		xgt->mapped -= count;
		xgt->maps[i] = xgt->maps[--xgt->nmaps];
		return 0;
	}
	errno = EINVAL;
	return -1;
}
