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

#include <xen/hvm/ioreq.h>

#include "ioreq/window.h"

struct ev_loop;
struct xen_privcmd;

#define FASTPATH_NOTIFY_OFF 0x50u     /* QueueNotify in the virtio-mmio window */
#define FASTPATH_NOTIFY_LEN 4u        /* registers are 4-byte: the only size we register */
#define FASTPATH_VQ_MASK    0xffffu   /* the kernel compares the low 16 bits of the data */

/*
 * The rule the kernel's ioeventfd handler claims a request by, for a window at `base` whose
 * queues 0..nq-1 have an ioeventfd each. A request it matches belongs to the kernel even if we
 * see it first (both handlers run for every event of the port): we must leave it READY.
 */
static inline bool fastpath_rule(const ioreq_t *r, uint64_t base, unsigned nq)
{
	return r->state == STATE_IOREQ_READY && r->type == IOREQ_TYPE_COPY &&
	       r->dir == IOREQ_WRITE && r->addr == base + FASTPATH_NOTIFY_OFF &&
	       r->size == FASTPATH_NOTIFY_LEN && (r->data & FASTPATH_VQ_MASK) < nq;
}

struct fastpath_params {
	struct ev_loop *loop;
	struct xen_privcmd *pc;       /* restricted to domid; owned by the caller */
	uint32_t domid;
	const char *name;             /* the guest, for log lines */
	void *ioreq_page;             /* our mapping of the ioreq server's page */
	const uint32_t *ports;        /* local port of each vCPU */
	unsigned nr_vcpus;
};

struct fastpath_stats {
	uint64_t notifies;            /* queue notifications read from an ioeventfd */
	uint64_t irqs;                /* interrupts raised through an irqfd */
	uint64_t left_to_kernel;      /* READY requests we saw first and left for the kernel */
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

/* True when r is the kernel's to complete (count it as left_to_kernel). */
bool fastpath_kernel_claims(struct fastpath *f, const ioreq_t *r);

/* Raise window i's interrupt through its irqfd; false when it has none (use the DM op). */
bool fastpath_raise(struct fastpath *f, unsigned i);

unsigned fastpath_queues(const struct fastpath *f);
void fastpath_get_stats(const struct fastpath *f, struct fastpath_stats *st);

/* Deassign in reverse order, stop watching, close the eventfds. dead: quieter logging. */
void fastpath_stop(struct fastpath *f, bool dead);

#endif
