/*
 * A vCPU's ioreq slot: the one place that reads and writes it (private to ioreq/).
 *
 * The slot is a 32-byte ioreq_t in a page we share with Xen (and, on a server with ioeventfds,
 * with the dom0 kernel). Its 4-bit state moves like this; every arrow names its only writer:
 *
 *   NONE          --Xen: fields, wmb, state, event--------------------------> READY
 *   READY         --device model: data (reads), wmb, state, event-----------> IORESP_READY
 *   READY         --kernel, a COPY write on a server with ioeventfds--------> INPROCESS
 *   INPROCESS     --kernel: the write matched an ioeventfd (signalled), event-> IORESP_READY
 *   INPROCESS     --kernel: no ioeventfd matched, no event------------------> READY
 *   IORESP_READY  --Xen, as the vCPU resumes: reads data--------------------> NONE
 *
 * Xen (xen/common/ioreq.c): ioreq_send() refuses to post while the state is not NONE ("device
 * model set bad IO state"); wait_for_io() crashes the domain if the state ever goes backwards
 * between two looks. So a second IORESP_READY written after Xen consumed the first one (NONE)
 * fails the vCPU's next access, and one written over a new request completes it with stale
 * data: a device model must answer each request exactly once.
 *
 * The kernel (Linux >= 6.7, drivers/xen/privcmd.c, ioeventfd_interrupt()) binds a handler to
 * the ports we name in IOCTL_PRIVCMD_IOEVENTFD, on the same IRQ as our /dev/xen/evtchn binding
 * (IRQF_SHARED; ours was registered first, so it runs first: we may be woken before the
 * kernel's handler ran, while it runs, or after). With late EOI the port stays masked for both
 * handlers until we unmask it: the kernel's handler runs at most once per event we are handed,
 * never again before our unmask. Its rule, with plain stores and no atomics:
 *   1. state == READY && type == IOREQ_TYPE_COPY && dir == IOREQ_WRITE, else leave it alone;
 *   2. state = INPROCESS;
 *   3. under its lock: an ioeventfd with addr + 0x50 == r->addr && addr_len == r->size &&
 *      vq == (r->data & 0xffff) matches -> eventfd signalled. count and data_is_ptr are not
 *      looked at (a pointer-sized "data" is compared like a value);
 *   4. state = matched ? IORESP_READY (and notify the vCPU's port) : READY.
 *
 * Our rule (slot_take, slot_answer):
 *   - act only on a request seen READY and copied READY, whose copy is stable (read twice,
 *     equal) on a server the kernel shares; leave every request the kernel's rule matches;
 *   - while the kernel holds a slot (INPROCESS) wait for it to finish (keep the port masked:
 *     nothing else can start meanwhile), then look again;
 *   - answer with a compare-and-swap READY -> IORESP_READY on the state's byte, so we never
 *     write a slot that is no longer the READY request we served.
 * What remains: the kernel's steps 1 and 2 are not atomic, so if its handler stops between
 * them for as long as we take to serve a write its rule does not match, its INPROCESS/READY
 * stores land on our answer. The daemon therefore keeps every register but QueueNotify on a
 * server the kernel does not share (ioreq/server.c); on the shared one only a malformed kick
 * (wrong size, a queue without an ioeventfd) is ours, and only the guest that sent it can be
 * hurt by that window.
 */
#ifndef XVD_SLOT_H
#define XVD_SLOT_H

#include <stdbool.h>
#include <stdint.h>

#include <xen/hvm/ioreq.h>

/* An ioeventfd the kernel holds: a 4-byte QueueNotify write of q < nq to the window at base. */
struct slot_kfd {
	uint64_t base;
	unsigned nq;
};

/* What the kernel claims on a server that has ioeventfds (NULL where it has none). */
struct slot_kernel {
	const struct slot_kfd *fds;
	unsigned n;
};

#define SLOT_NOTIFY_OFF 0x50u       /* virtio-mmio QueueNotify: privcmd.c's hard-coded offset */
#define SLOT_NOTIFY_LEN 4u          /* the addr_len we register */
#define SLOT_VQ_MASK    0xffffu     /* privcmd.c's QUEUE_NOTIFY_VQ_MASK */

/* Step 1 and 3 of the kernel's rule above, for a copy of the request. */
bool slot_kernel_claims(const struct slot_kernel *k, const ioreq_t *r);

enum slot_take {
	SLOT_NOTHING,   /* not READY: nothing posted, or answered already (by the kernel) */
	SLOT_KERNEL,    /* READY, and the kernel's rule matches: its handler answers it */
	SLOT_OURS,      /* *req is a stable copy of a READY request nobody else answers */
	SLOT_BUSY,      /* the kernel's handler holds it (INPROCESS): look again later */
};

struct slot_stats {
	uint64_t kernel_left;     /* SLOT_KERNEL */
	uint64_t kernel_waits;    /* INPROCESS seen: waited for the kernel's handler */
	uint64_t kernel_busy;     /* it held the slot past our spin: SLOT_BUSY */
	uint64_t unstable;        /* a copy that changed under us, or not READY: looked again */
	uint64_t lost;            /* slot_answer found the slot no longer READY: no answer */
	uint64_t held;            /* answers the kernel held past our spin: written later */
};

/*
 * Look at a slot after its port's event. k: the kernel's ioeventfds on this server, or NULL
 * when the kernel does not share it. On SLOT_OURS, *req holds the request to serve.
 */
enum slot_take slot_take(volatile ioreq_t *slot, const struct slot_kernel *k, ioreq_t *req,
			 struct slot_stats *st);

enum slot_answer {
	SLOT_ANSWERED,  /* IORESP_READY written: notify the vCPU's port */
	SLOT_LOST,      /* the slot no longer holds that request: write nothing, notify nobody */
	SLOT_HELD,      /* the kernel's handler holds it now: keep the answer, try again later */
};

/*
 * Answer the request slot_take() returned as SLOT_OURS: for a read, data first; then the
 * state, READY -> IORESP_READY, only if the slot still holds that READY request. A kernel
 * handler that stopped between its steps 1 and 2 may take the slot meanwhile (a write its rule
 * does not match, on a shared server): we wait for it to give the slot back, within bounds,
 * then answer; past the bound, SLOT_HELD. Counted in st (lost, kernel_waits, kernel_busy).
 */
enum slot_answer slot_answer(volatile ioreq_t *slot, const struct slot_kernel *k,
			     const ioreq_t *req, uint64_t data, struct slot_stats *st);
/* Again, after SLOT_HELD, without waiting: the answer is the one slot_answer() was given. */
enum slot_answer slot_answer_again(volatile ioreq_t *slot, const struct slot_kernel *k,
				   const ioreq_t *req, struct slot_stats *st);

/* The state of a slot now (acquire): for teardown and adoption. */
unsigned slot_state(const volatile ioreq_t *slot);

/*
 * Where slot_take() and slot_answer() reach a point another party may interleave with, on a
 * server the kernel shares. ioreq/privcmd.h's xen_privcmd_race() is told each one: nothing on
 * Linux; xensim's kernel model can run its handler's steps there, to force every interleaving.
 */
enum slot_point {
	SLOT_AT_STATE = 1,     /* the state was read */
	SLOT_AT_COPY,          /* the request was copied */
	SLOT_AT_RECHECK,       /* the copy was read again and compared */
	SLOT_AT_ANSWER,        /* about to answer */
	SLOT_AT_DONE,          /* this look at the slot is over (answered, left, or deferred) */
};

#endif
