/*
 * The seam between the Xen side and whatever answers a guest's MMIO window: ioreq/ knows a
 * window (base, size, SPI) and the three calls below, never what a virtio device is. The daemon
 * wires each device's virtio-mmio transport to its window (daemon/guest.c).
 */
#ifndef XVD_WINDOW_H
#define XVD_WINDOW_H

#include <stdint.h>

struct xen_guest;
struct xen_window;

struct xen_window_ops {
	/* A guest access at `off` bytes into the window, size 1, 2, 4 or 8, wholly inside it. */
	uint64_t (*read)(void *opaque, uint32_t off, unsigned size);
	/*
	 * 0 when the write is done; XEN_WINDOW_LATER to hold the guest's vCPU on it (the loop
	 * goes on) until xen_window_done() (a reset waiting for the device's I/O).
	 */
	int (*write)(void *opaque, uint32_t off, unsigned size, uint64_t val);
	/*
	 * The dom0 kernel completed a 4-byte write of q to the virtio-mmio QueueNotify register
	 * (offset 0x50) for us (the notify fast path, ioreq/fastpath.h): q < nqueues.
	 */
	void (*notify)(void *opaque, unsigned q);
};

struct xen_window_desc {
	const char *name;             /* for log lines ("block root") */
	uint64_t base;                /* guest physical; PLATFORM_MMIO_WINDOW bytes */
	uint32_t irq;                 /* the SPI xen_window_raise_irq() injects */
	unsigned nqueues;             /* QueueNotify values the fast path may take: 0..nqueues-1 */
	const struct xen_window_ops *ops;
	void *opaque;                 /* passed to every op */
};

/*
 * Stage 2, per window: route [base, base + PLATFORM_MMIO_WINDOW) to this guest's ioreq server.
 * Accesses reach the ops from the loop once xen_guest_start() ran. 0 with *out set, or a
 * negative errno (logged). The window lives until xen_guest_close().
 */
int xen_guest_add_window(struct xen_guest *g, const struct xen_window_desc *w,
			 struct xen_window **out);

/* Inject the window's SPI (an edge; never blocks). */
void xen_window_raise_irq(struct xen_window *w);

#define XEN_WINDOW_LATER 1
/* The writes of w its ops answered XEN_WINDOW_LATER are done: answer them. */
void xen_window_done(struct xen_window *w);

#endif
