/*
 * Counters of one guest's Xen side, for SIGUSR1 dumps, tests and the benchmark. Xen-free, so a
 * test or benchmark can include it without the Xen headers.
 */
#ifndef XVD_XEN_STATS_H
#define XVD_XEN_STATS_H

#include <stdint.h>

struct xen_guest;

struct xen_guest_stats {
	uint32_t nr_vcpus;
	uint32_t nr_frames;       /* ioreq pages mapped (128 vCPU slots each) */
	uint64_t ioreqs;          /* register accesses passed to the transport */
	uint64_t bad_ioreqs;      /* malformed: answered all-ones or ignored */
	uint64_t invalidates;     /* IOREQ_TYPE_INVALIDATE served */
	uint64_t spurious;        /* events whose vCPU slot was not STATE_IOREQ_READY */
	uint64_t irqs;            /* interrupts raised (either way) */
	uint64_t irq_errors;
	/* the notify fast path (ioreq/fastpath.h) */
	uint32_t fastpath;        /* 1: privcmd ioeventfd+irqfd in use */
	uint32_t fast_queues;     /* queues with an ioeventfd */
	uint64_t eventfd_notifies;/* queue notifications that came through an ioeventfd */
	uint64_t irqfd_irqs;      /* interrupts raised through an irqfd */
	uint64_t left_to_kernel;  /* READY requests seen first and left for the kernel to claim */
	uint64_t kernel_waits;    /* slots the kernel's handler held when we looked (ioreq/slot.h) */
	uint64_t kernel_busy;     /* ... for longer than our spin: looked at again from a timer */
	uint64_t slot_unstable;   /* copies that changed under us: looked again */
	uint64_t answers_lost;    /* answers not written: the slot was no longer that request */
	uint64_t answers_held;    /* answers the kernel's handler made us keep: written later */
	/* guest memory (ioreq/gmem_xen.c) */
	uint64_t maps;
	uint64_t cache_hits;
	uint64_t bucket_maps;     /* cache misses */
	uint64_t evictions;
	uint64_t temp_maps;       /* uncached foreign mappings */
	uint64_t grant_maps;
	uint64_t map_failures;
	uint32_t buckets;         /* 2 MiB buckets mapped now */
	uint32_t max_buckets;
	uint64_t premapped;       /* bytes */
};

void xen_guest_get_stats(struct xen_guest *g, struct xen_guest_stats *st);

#endif
