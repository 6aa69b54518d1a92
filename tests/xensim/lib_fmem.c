/*
 * libxenforeignmemory, simulated: guest frames are pages of the domain's RAM memfd, mapped
 * with real mmap (so the data path has no hub round trip); the ioreq server's frames are its
 * page memfd. Frames outside guest RAM fail like Xen (err[i] = -EINVAL, or the whole call).
 */
#include <errno.h>
#include <linux/capability.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>

#include <xenforeignmemory.h>
#include <xen/memory.h>

#include "tests/xensim/client.h"
#include "tests/xensim/fault.h"

/*
 * The capabilities the sim daemon keeps when it drops the rest (daemon/sandbox.c looks for this
 * symbol, which only the sim daemon links): CAP_IPC_LOCK, to map guest RAM that the hub made
 * with memfd_secret(2) (it cannot be pinned, as Xen's foreign mappings; it counts as locked
 * memory, far beyond the 8 MiB RLIMIT_MEMLOCK a capability-less process has). A test-environment
 * accommodation: the real daemon has no such symbol and keeps nothing.
 */
uint64_t xsim_daemon_keep_caps(void);

uint64_t xsim_daemon_keep_caps(void)
{
	return UINT64_C(1) << CAP_IPC_LOCK;
}

struct xenforeignmemory_handle {
	struct xsim_pch p;
};

struct xenforeignmemory_resource_handle {
	void *addr;
	size_t len;
	uint32_t domid, id;
	struct xenforeignmemory_resource_handle *next;
};

/* Every ioreq-page mapping of the process: what the kernel's find_vma() sees (lib_privcmd.c). */
static xenforeignmemory_resource_handle *fmem_resources;

bool xsim_resource_find(const void *va, uint32_t *domid, uint32_t *server, size_t *off)
{
	for (xenforeignmemory_resource_handle *r = fmem_resources; r; r = r->next) {
		if ((const char *)va >= (const char *)r->addr &&
		    (const char *)va < (const char *)r->addr + r->len) {
			*domid = r->domid;
			*server = r->id;
			if (off)
				*off = (size_t)((const char *)va - (const char *)r->addr);
			return true;
		}
	}
	return false;
}

xenforeignmemory_handle *xenforeignmemory_open(struct xentoollog_logger *logger,
					       unsigned open_flags)
{
	(void)logger;
	(void)open_flags;
	return xsim_pch_open(sizeof(xenforeignmemory_handle));
}

int xenforeignmemory_close(xenforeignmemory_handle *fmem)
{
	return fmem ? xsim_pch_close(&fmem->p) : 0;
}

static struct xsim_cdom *fmem_dom(xenforeignmemory_handle *h, uint32_t dom)
{
	return xsim_pch_dom(&h->p, dom);
}

/* Offsets of each frame; returns the number of frames that are not guest RAM. */
static size_t fmem_offsets(struct xsim_cdom *d, size_t pages, const xen_pfn_t arr[],
			   int64_t *off, int err[])
{
	size_t bad = 0;

	for (size_t i = 0; i < pages; i++) {
		off[i] = xsim_gfn_offset(d->ctl, arr[i]);
		if (err)
			err[i] = off[i] < 0 ? -EINVAL : 0;
		bad += off[i] < 0;
	}
	return bad;
}

void *xenforeignmemory_map(xenforeignmemory_handle *fmem, uint32_t dom, int prot, size_t pages,
			   const xen_pfn_t arr[], int err[])
{
	struct xsim_cdom *d = fmem_dom(fmem, dom);
	int64_t *off;
	void *p = NULL;

	if (!d)
		return NULL;
	if (pages == 0 || pages > (SIZE_MAX / sizeof(*off))) {
		errno = EINVAL;
		return NULL;
	}
	off = malloc(pages * sizeof(*off));
	if (!off)
		return NULL;
	/* Without an err array any bad frame fails the whole call, as in libxenforeignmemory. */
	if (fmem_offsets(d, pages, arr, off, err) && !err)
		errno = EINVAL;
	else
		p = xsim_map_frames(d->ram_fd, off, pages, prot);
	free(off);
	return p;
}

int xenforeignmemory_unmap(xenforeignmemory_handle *fmem, void *addr, size_t pages)
{
	(void)fmem;
	return munmap(addr, pages * XSIM_PAGE);
}

int xenforeignmemory_restrict(xenforeignmemory_handle *fmem, domid_t domid)
{
	return xsim_pch_restrict(&fmem->p, domid, XSIM_RESTRICTED_FMEM);
}

/* The ioreq server's page memfd and its size in pages. */
static int fmem_server_pages(xenforeignmemory_handle *h, domid_t domid, unsigned id,
			     unsigned *npages)
{
	struct xsim_msg *m = xsim_msg_new(XSIM_OP_SERVER_PAGES, domid);
	int fd = -1;

	if (!m)
		return -1;
	m->a = id;
	if (xsim_rpc(h->p.conn, m, -1, &fd, 1) == 0)
		*npages = m->a;
	free(m);
	return fd;
}

xenforeignmemory_resource_handle *xenforeignmemory_map_resource(
	xenforeignmemory_handle *fmem, domid_t domid, unsigned int type, unsigned int id,
	unsigned long frame, unsigned long nr_frames, void **paddr, int prot, int flags)
{
	xenforeignmemory_resource_handle *r;
	unsigned npages = 0;
	int fd;

	if (!xsim_pch_allowed(&fmem->p, domid))
		return NULL;
	if (type != XENMEM_resource_ioreq_server) {
		errno = EOPNOTSUPP;
		return NULL;
	}
	fd = fmem_server_pages(fmem, domid, id, &npages);
	if (fd < 0)
		return NULL;
	/* Frame 0 is the buffered-ioreq page, absent with BUFIOREQ_OFF; then one per 128 vCPUs. */
	if (frame < XENMEM_resource_ioreq_server_frame_ioreq(0) || nr_frames == 0 ||
	    frame - 1 + nr_frames > npages || !(r = calloc(1, sizeof(*r)))) {
		close(fd);
		errno = EINVAL;
		return NULL;
	}
	r->len = nr_frames * XSIM_PAGE;
	r->addr = mmap(paddr ? *paddr : NULL, r->len, prot, MAP_SHARED | flags, fd,
		       (off_t)((frame - 1) * XSIM_PAGE));
	close(fd);
	if (r->addr == MAP_FAILED) {
		free(r);
		return NULL;
	}
	if (paddr)
		*paddr = r->addr;
	r->domid = domid;
	r->id = id;
	r->next = fmem_resources;
	fmem_resources = r;
	return r;
}

int xenforeignmemory_unmap_resource(xenforeignmemory_handle *fmem,
				    xenforeignmemory_resource_handle *fres)
{
	(void)fmem;
	if (!fres)
		return 0;
	for (xenforeignmemory_resource_handle **p = &fmem_resources; *p; p = &(*p)->next) {
		if (*p == fres) {
			*p = fres->next;
			break;
		}
	}
	munmap(fres->addr, fres->len);
	free(fres);
	return 0;
}
