/*
 * The event-channel rules both sides of a struct xsim_evtchn_page follow: the hub's guest side
 * fires bindings (xsim_evtchn_fire), the handle's process reads them (lib_evtchn.c) and unmasks
 * them (xsim_evtchn_unmask). It is the model of Linux's /dev/xen/evtchn: a port that fires while
 * unmasked is masked and queued for read(); one that fires while masked is remembered (pending)
 * and queued once more when unmasked; the fd is readable while something is queued.
 *
 * Queued bindings are bits of ready[] (a set, so a binding is queued at most once). The
 * doorbell is a socket pair: a queuer sends one message only when it sets `kicked` from 0, and
 * the reader drains it, then clears `kicked`, then looks at ready[] again. Either the queuer saw kicked == 0
 * and wrote, or the reader's second look sees its bit: no wakeup is lost (the Dekker pattern,
 * hence seq_cst on the four operations involved).
 */
#ifndef XSIM_EVTCHN_SHM_H
#define XSIM_EVTCHN_SHM_H

#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <stdio.h>
#include <unistd.h>

#include "tests/xensim/proto.h"

/*
 * Make the doorbell readable unless a write since the reader's last drain already did. The
 * doorbell is a socket pair: `doorbell` is the write end (the hub's), a message there makes the
 * reader's end (its xenevtchn_fd) readable. A reader that is gone (EPIPE) hears nothing.
 */
static inline void xsim_evtchn_kick(struct xsim_evtchn_page *pg, int doorbell)
{
	char one = 1;

	/* seq_cst: ordered after the caller's seq_cst fetch_or on ready[] (see above). */
	if (atomic_exchange_explicit(&pg->kicked, 1, memory_order_seq_cst))
		return;
	if (send(doorbell, &one, 1, MSG_NOSIGNAL | MSG_DONTWAIT) != 1 && errno != EPIPE)
		perror("xsim: event channel doorbell");
}

/* Queue binding i for the reader. */
static inline void xsim_evtchn_queue_reader(struct xsim_evtchn_page *pg, int doorbell,
					    unsigned i)
{
	/*
	 * seq_cst: a release for whatever the firing side wrote before (the ioreq), which the
	 * reader acquires when it clears the bit; and the first half of the Dekker pair.
	 */
	atomic_fetch_or_explicit(&pg->ready[i / 64], UINT64_C(1) << (i % 64),
				 memory_order_seq_cst);
	xsim_evtchn_kick(pg, doorbell);
}

/* Queue binding i for the kernel's handler, when it shares the IRQ; false when it does not. */
static inline bool xsim_evtchn_queue_kernel(struct xsim_evtchn_page *pg, int kbell, unsigned i)
{
	uint64_t one = 1;

	if (!atomic_load_explicit(&pg->kflag[i], memory_order_acquire))
		return false;
	/* release: the kernel thread acquires the bit, then reads the slot. */
	atomic_fetch_or_explicit(&pg->kready[i / 64], UINT64_C(1) << (i % 64),
				 memory_order_release);
	if (kbell >= 0 && write(kbell, &one, sizeof(one)) != sizeof(one))
		perror("xsim: the kernel's doorbell");
	return true;
}

/*
 * Queue binding i for the reader, then (when it shares the IRQ) for the kernel's handler. With
 * lag_us, the kernel first and the reader 0..lag_us later: in Linux the kernel's handler runs
 * in the interrupt while the reader is a process still to be scheduled (a stress test uses it
 * to meet the handler half-way whatever the host's load).
 */
static inline void xsim_evtchn_queue_lag(struct xsim_evtchn_page *pg, int doorbell, int kbell,
					 unsigned i, unsigned lag_us)
{
	if (lag_us && xsim_evtchn_queue_kernel(pg, kbell, i)) {
		usleep((useconds_t)(random() % lag_us));
		xsim_evtchn_queue_reader(pg, doorbell, i);
		return;
	}
	xsim_evtchn_queue_reader(pg, doorbell, i);
	xsim_evtchn_queue_kernel(pg, kbell, i);
}

static inline void xsim_evtchn_queue(struct xsim_evtchn_page *pg, int doorbell, int kbell,
				     unsigned i)
{
	xsim_evtchn_queue_lag(pg, doorbell, kbell, i, 0);
}

/* The port fired: queue it when unmasked (masking it), else remember it for the unmask. */
static inline void xsim_evtchn_fire_lag(struct xsim_evtchn_page *pg, int doorbell, int kbell,
					unsigned i, unsigned lag_us)
{
	uint32_t old = atomic_load_explicit(&pg->state[i], memory_order_relaxed), new;

	/*
	 * release: a reader that finds PENDING when it unmasks (acquire) and then serves the
	 * binding it queued itself sees what we wrote before firing. Being RMWs on one word, the
	 * fire and the unmask cannot both miss each other: one of them queues.
	 */
	do
		new = old & XSIM_EVTCHN_MASKED ? old | XSIM_EVTCHN_PENDING
					       : old | XSIM_EVTCHN_MASKED;
	while (!atomic_compare_exchange_weak_explicit(&pg->state[i], &old, new,
						       memory_order_release, memory_order_relaxed));
	if (!(old & XSIM_EVTCHN_MASKED))
		xsim_evtchn_queue_lag(pg, doorbell, kbell, i, lag_us);
}

static inline void xsim_evtchn_fire(struct xsim_evtchn_page *pg, int doorbell, int kbell,
				    unsigned i)
{
	xsim_evtchn_fire_lag(pg, doorbell, kbell, i, 0);
}

/* Unmask binding i; when it fired meanwhile it stays masked and is queued again (once). */
static inline void xsim_evtchn_unmask(struct xsim_evtchn_page *pg, int doorbell, int kbell,
				      unsigned i)
{
	uint32_t old = atomic_load_explicit(&pg->state[i], memory_order_relaxed), new;

	/* acquire: pairs with the firing side's release when we take PENDING. */
	do
		new = old & XSIM_EVTCHN_PENDING ? XSIM_EVTCHN_MASKED : 0;
	while (!atomic_compare_exchange_weak_explicit(&pg->state[i], &old, new,
						       memory_order_acquire, memory_order_relaxed));
	if (old & XSIM_EVTCHN_PENDING)
		xsim_evtchn_queue(pg, doorbell, kbell, i);
}

#endif
