/*
 * The notify fast path of one guest (private to ioreq/): an ioeventfd per (device, queue) so
 * QueueNotify is completed by the dom0 kernel, and an irqfd per device so an interrupt is one
 * eventfd write. Built on the seam of ioreq/privcmd.h; ioreq/server.c falls back to serving
 * everything itself when this cannot start.
 */
#ifndef XVD_FASTPATH_H
#define XVD_FASTPATH_H

#include <stdbool.h>
#include <stdint.h>

#include "ioreq/window.h"

struct ev_loop;
struct slot_kernel;
struct xen_privcmd;

struct fastpath_params {
	struct ev_loop *loop;
	struct xen_privcmd *pc;       /* restricted to domid; owned by the caller */
	uint32_t domid;
	const char *name;             /* the guest, for log lines */
	void *ioreq_page;             /* our mapping of the notify server's ioreq page */
	const uint32_t *ports;        /* local port of each vCPU on that server */
	unsigned nr_vcpus;
};

struct fastpath_stats {
	uint64_t notifies;            /* queue notifications read from an ioeventfd */
	uint64_t irqs;                /* interrupts raised through an irqfd */
};

/* One window as the fast path needs it (copied; the name too). */
struct fastpath_window {
	const char *name;
	uint64_t base;
	uint32_t irq;
	unsigned nqueues;
	const struct xen_window_ops *ops;   /* ops->notify(opaque, q) for each claimed kick */
	void *opaque;
};

struct fastpath;

/*
 * Assign an ioeventfd for every queue and an irqfd for every window and watch the ioeventfds
 * on the loop. 0, or a negative errno with nothing left assigned.
 */
int fastpath_start(const struct fastpath_params *p, const struct fastpath_window *wins,
		   unsigned nwin, struct fastpath **out);

/* What the kernel now claims on the notify server (ioreq/slot.h); valid until fastpath_stop. */
const struct slot_kernel *fastpath_kernel(const struct fastpath *f);

/* Raise window i's interrupt through its irqfd; false when it has none (use the DM op). */
bool fastpath_raise(struct fastpath *f, unsigned i);

unsigned fastpath_queues(const struct fastpath *f);
void fastpath_get_stats(const struct fastpath *f, struct fastpath_stats *st);

/*
 * Deassign in reverse order, stop watching, close the eventfds. dead: quieter logging. When it
 * returns, no kernel handler runs on the notify server's slots (the last deassign frees the
 * kernel's IRQ handlers, and free_irq() waits for one that is running).
 */
void fastpath_stop(struct fastpath *f, bool dead);

#endif
