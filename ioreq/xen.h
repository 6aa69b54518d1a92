/*
 * What ioreq/ offers the daemon: one guest's Xen objects (ioreq server, event channels, guest
 * memory, interrupts), xenstore discovery of libxl's virtio devices, and watches. Nothing outside
 * ioreq/ includes a Xen header.
 *
 * Stable Xen interfaces only (libxendevicemodel, libxenforeignmemory, libxenevtchn,
 * libxengnttab, libxenstore); no libxenctrl.
 */
#ifndef XVD_XEN_H
#define XVD_XEN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "ioreq/window.h"

struct ev_loop;
struct gmem;
struct xen_guest;

/* [guest] notify_fastpath: the privcmd ioeventfd/irqfd fast path (ioreq/fastpath.h). */
enum xen_fastpath_mode {
	XEN_FASTPATH_AUTO,        /* use it when the dom0 kernel offers it (default) */
	XEN_FASTPATH_ON,          /* require it: xen_guest_start() fails without it */
	XEN_FASTPATH_OFF,         /* every access through the ioreq server */
};

struct xen_opts {
	uint32_t domid;
	uint32_t backend_domid;   /* our own domid (0 in dom0) */
	uint32_t map_cache_mib;   /* bound of the foreign-mapping cache */
	bool premap;              /* map the guest's whole RAM once at start */
	bool grant_usage;         /* guest uses grant addresses: offer ACCESS_PLATFORM */
	enum xen_fastpath_mode fastpath;
	const char *fastpath_off_why;   /* XEN_FASTPATH_OFF: why, for the log (NULL: the key) */
	/*
	 * What outlives the process (lib/persist.h), or NULL for none: the ioreq servers' ids,
	 * the ports, the windows' routing and the fast path's registrations go to persist; the
	 * event channel handle and the eventfds to store. When persist holds a previous
	 * instance's record of this guest, xen_guest_open() takes that instance's ioreq servers
	 * over instead of creating new ones (xen_guest_adopted()).
	 */
	struct persist *persist;
	struct fdstore *store;
};

/*
 * Stage 1: open the handles, count vCPUs, create the ioreq server (not yet enabled), map its
 * ioreq frames (enough for every vCPU), bind one event channel per vCPU, set up guest memory.
 * Returns 0 or a negative errno (logged); on failure nothing is left behind.
 */
int xen_guest_open(struct ev_loop *loop, const struct xen_opts *opts, struct xen_guest **out);

/* The guest's memory (ioreq/gmem.h), for the devices' queues and buffers. */
struct gmem *xen_guest_gmem(struct xen_guest *g);
/* The domain's name (or "domain N"), for log lines. */
const char *xen_guest_name(const struct xen_guest *g);
/* The guest addresses its buffers by grant reference (DESIGN.md §2, ioreq/gmem.h). */
bool xen_guest_grant_usage(const struct xen_guest *g);

/* Stage 2: xen_guest_add_window() per window (ioreq/window.h). */

/*
 * Stage 3: enable the ioreq server, restrict every handle to the guest, assign the notify fast
 * path (unless off; logs the one "notify path: ..." line), start serving ioreqs on the loop,
 * and watch for the domain's death (on_death runs once, from the loop). With
 * XEN_FASTPATH_ON and no fast path, returns -EOPNOTSUPP without logging: the caller reports
 * xen_guest_notify_path()'s reason in its own terms.
 */
int xen_guest_start(struct xen_guest *g, void (*on_death)(void *opaque), void *opaque);

/*
 * After xen_guest_start(): true when QueueNotify and interrupts go through privcmd eventfds;
 * otherwise *why (when non-NULL) says why everything goes through the ioreq server.
 */
bool xen_guest_notify_path(const struct xen_guest *g, const char **why);
/* One line for sd_notify STATUS: the notify path and its counters. */
void xen_guest_notify_status(struct xen_guest *g, char *buf, unsigned len);

/*
 * Tear down in exact reverse order: stop serving, unmap ranges, unbind ports, unmap frames,
 * destroy the ioreq server, drop every guest mapping, close handles. Devices must already be
 * reset (they may hold guest mappings until their destroy). Safe on a partly opened guest.
 */
void xen_guest_close(struct xen_guest *g);

/* xen_guest_open() took a previous instance's ioreq servers over (see xen_opts.persist). */
bool xen_guest_adopted(const struct xen_guest *g);

/*
 * After an adopting start and once the devices are adopted: answer what waits in every vCPU
 * slot (requests posted while no instance served) and unmask every port (one delivered to the
 * previous instance may never have been unmasked).
 */
void xen_guest_resume(struct xen_guest *g);

/*
 * Stop serving and let go of the guest for the next instance, which takes it over: the ioreq
 * servers, their routing and ports stay (the handle's file too, when the fd store keeps it);
 * the fast path's registrations are removed (the kernel must not be left with a page this
 * process no longer maps); mappings and handles go. Devices must already be quiesced and
 * destroyed without a reset.
 */
void xen_guest_detach(struct xen_guest *g);

/* Dropping every cached guest mapping (SIGHUP, IOREQ_TYPE_INVALIDATE does it by itself). */
void xen_guest_invalidate(struct xen_guest *g);
/* Numbers for SIGUSR1 dumps and the benchmark: ioreqs served, bad ioreqs, IRQs, cache hits. */
void xen_guest_dump(struct xen_guest *g);

/* ---- xenstore ---- */

/* Domain lookups through /local/domain/<id>/name. 0, or -ENOENT. */
int xen_domid_by_name(const char *name, uint32_t *domid);
int xen_domain_name(uint32_t domid, char *buf, size_t len);
/*
 * The domain's handle as libxl records it (/local/domain/<id>/vm, "/vm/<uuid>"): a domain id
 * is reused after the domain dies, its handle is not. 0, or -ENOENT.
 */
int xen_domain_handle(uint32_t domid, char *buf, size_t len);
bool xen_domain_alive(uint32_t domid);
/*
 * The domain with this id exists and is the one with this handle ("" matches any): false only
 * when xenstore says so (it cannot be reached: true, never declare a guest gone on our own
 * failure).
 */
bool xen_domain_is(uint32_t domid, const char *handle);

enum xen_layout {
	XEN_LAYOUT_DISK417,   /* backend/virtio_disk/<domid>/<devid> (Xen 4.17 specification=virtio) */
	XEN_LAYOUT_VIRTIO,    /* backend/virtio/<domid>/<devid> (Xen 4.18+ virtio=[...]) */
};

/* One virtio device libxl declared for the guest. */
struct xen_vdev_desc {
	enum xen_layout layout;
	unsigned devid;
	uint32_t virtio_id;       /* 2 for a 4.17 disk; N of type "virtio,deviceN" otherwise */
	uint64_t base;            /* decimal (4.17) or 0x-hex (4.18+) in xenstore */
	uint32_t irq;
	bool grant_usage;
	bool readonly;            /* 4.17 disk "mode" = r */
	char params[256];         /* 4.17 disk "params" (the image path), else "" */
	char vdev[16];            /* 4.17 disk "dev" (xvda), else "" */
	char be_path[128];        /* the backend directory, for state writes */
};

/*
 * Read every device declared for `domid` under both layouts, in (layout, devid) order.
 * Returns 0 with *n set, or a negative errno. Malformed entries are logged and skipped.
 */
int xen_discover(uint32_t backend_domid, uint32_t domid, struct xen_vdev_desc *out,
		 unsigned max, unsigned *n);

/* XenbusState values we write into a backend directory's "state". */
#define XEN_STATE_INITWAIT  2
#define XEN_STATE_CONNECTED 4
#define XEN_STATE_CLOSING   5   /* written by libxl when it removes the device */
#define XEN_STATE_CLOSED    6
int xen_backend_set_state(const struct xen_vdev_desc *d, int state);
/* xenstore answered that the backend directory no longer exists (libxl removed it). */
bool xen_backend_gone(const struct xen_vdev_desc *d);
/*
 * Remove the device's backend directory, and its parent (the guest's) when that is left empty.
 * A back-end in a driver domain does this when libxl removes the device: libxl in dom0 leaves
 * the backend directory to the driver domain and waits up to 10 s for it to go (libxl 4.17,
 * tools/libs/light/libxl_device.c, device_hotplug() and libxl__device_destroy()).
 */
int xen_backend_remove(const struct xen_vdev_desc *d);

/*
 * Call cb(opaque, i) from the loop, once, when the toolstack writes state=5 (Closing) into
 * be_paths[i] (libxl removing the device: xl destroy, xl block-detach). It then waits for
 * state=6. Survives xenstored restarts like the other watches. cb must not stop the watch.
 * NULL on failure.
 */
struct xen_close_watch;
struct xen_close_watch *xen_close_watch_start(struct ev_loop *loop, const char *const *be_paths,
					      unsigned n, void (*cb)(void *opaque, unsigned i),
					      void *opaque);
void xen_close_watch_stop(struct xen_close_watch *cw);

/*
 * Watch mode: call cb(opaque, domid, true) from the loop for every guest that has devices under
 * either backend path of backend_domid (once for each guest present at start, then for each
 * new one), cb(opaque, domid, false) when one's devices are gone. Returns NULL on failure.
 */
struct xen_backend_watch;
struct xen_backend_watch *xen_backend_watch_start(struct ev_loop *loop, uint32_t backend_domid,
						  void (*cb)(void *opaque, uint32_t domid,
							     bool present),
						  void *opaque);
void xen_backend_watch_stop(struct xen_backend_watch *w);

/* ---- host checks (ioreq/probe.c): xen-virtiod --check-host ---- */

enum xen_check_status { XEN_CHECK_OK, XEN_CHECK_WARN, XEN_CHECK_FAIL };

struct xen_check_item {
	enum xen_check_status status;
	const char *item;         /* "privcmd", "evtchn", "gntdev", "xenstore", "dm-op", ... */
	char what[192];           /* what was found */
	char fix[256];            /* what to do about it ("" when OK) */
};

/*
 * Check, without touching any guest, what serving a guest needs from Xen and the dom0 kernel:
 * privcmd, evtchn and gntdev open, xenstored answers, the hypervisor answers device-model
 * calls (ENOSYS: no CONFIG_IOREQ_SERVER), privcmd ioeventfd/irqfd, the Xen version. Calls cb
 * once per item, in that order. Logs nothing.
 */
void xen_check_host(void (*cb)(void *opaque, const struct xen_check_item *it), void *opaque);

#endif
