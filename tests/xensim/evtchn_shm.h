/*
 * The event-channel rules both sides of a struct xsim_evtchn_page follow: the hub's guest side
 * fires bindings (xsim_evtchn_fire), the handle's process reads them (lib_evtchn.c) and unmasks
 * them (xsim_evtchn_unmask). It is the model of Linux's /dev/xen/evtchn: a port that fires while
 * unmasked is masked and queued for read(); one that fires while masked is remembered (pending)
 * and queued once more when unmasked; the fd is readable while something is queued.
 *
 * Queued bindings are bits of ready[] (a set, so a binding is queued at most once). The
 * doorbell is an eventfd: a queuer writes it only when it sets `kicked` from 0, and the reader
 * drains it, then clears `kicked`, then looks at ready[] again. Either the queuer saw kicked == 0
 * and wrote, or the reader's second look sees its bit: no wakeup is lost (the Dekker pattern,
 * hence seq_cst on the four operations involved).
 */
#ifndef XSIM_EVTCHN_SHM_H
#define XSIM_EVTCHN_SHM_H

#include <stdint.h>
#include <stdio.h>
#include <unistd.h>

#include "tests/xensim/proto.h"

/* Make the doorbell readable unless a write since the reader's last drain already did. */
static inline void xsim_evtchn_kick(struct xsim_evtchn_page *pg, int doorbell)
{
	uint64_t one = 1;

	/* seq_cst: ordered after the caller's seq_cst fetch_or on ready[] (see above). */
	if (atomic_exchange_explicit(&pg->kicked, 1, memory_order_seq_cst))
		return;
	if (write(doorbell, &one, sizeof(one)) != sizeof(one))
		perror("xsim: event channel doorbell");
}

/* Queue binding i for the reader, then (when it shares the IRQ) for the kernel's handler. */
static inline void xsim_evtchn_queue(struct xsim_evtchn_page *pg, int doorbell, int kbell,
				     unsigned i)
{
	uint64_t one = 1;

	/*
	 * seq_cst: a release for whatever the firing side wrote before (the ioreq), which the
	 * reader acquires when it clears the bit; and the first half of the Dekker pair.
	 */
	atomic_fetch_or_explicit(&pg->ready[i / 64], UINT64_C(1) << (i % 64),
				 memory_order_seq_cst);
	xsim_evtchn_kick(pg, doorbell);
	if (!atomic_load_explicit(&pg->kflag[i], memory_order_acquire))
		return;
	/* release: the kernel thread acquires the bit, then reads the slot. */
	atomic_fetch_or_explicit(&pg->kready[i / 64], UINT64_C(1) << (i % 64),
				 memory_order_release);
	if (kbell >= 0 && write(kbell, &one, sizeof(one)) != sizeof(one))
		perror("xsim: the kernel's doorbell");
}

/* The port fired: queue it when unmasked (masking it), else remember it for the unmask. */
static inline void xsim_evtchn_fire(struct xsim_evtchn_page *pg, int doorbell, int kbell,
				    unsigned i)
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
		xsim_evtchn_queue(pg, doorbell, kbell, i);
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
