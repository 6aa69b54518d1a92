/*
 * The steps of Linux's privcmd ioeventfd handler (drivers/xen/privcmd.c, ioeventfd_interrupt())
 * on one ioreq slot, with the kernel's plain loads and stores done as relaxed/release atomics
 * (the same machine code; it lets TSan check the daemon's side against them). Shared by the
 * hub's kernel model (kernel.c) and the threaded test of ioreq/slot.c.
 */
#ifndef XSIM_KERNEL_HANDLER_H
#define XSIM_KERNEL_HANDLER_H

#include <stdbool.h>
#include <stdint.h>

#include <xen/hvm/ioreq.h>

#define KH_NOTIFY_OFF 0x50u      /* VIRTIO_MMIO_QUEUE_NOTIFY */
#define KH_VQ_MASK    0xffffu    /* QUEUE_NOTIFY_VQ_MASK */
#define KH_BITS_OFF   30u        /* the ioreq byte holding state:4 (low nibble), dir (bit 5) */

static inline volatile uint8_t *kh_bits(volatile struct ioreq *r)
{
	return (volatile uint8_t *)r + KH_BITS_OFF;
}

/* Step 1: READY, COPY, WRITE, or the handler returns IRQ_NONE having written nothing. */
static inline bool kh_check(volatile struct ioreq *r)
{
	/* acquire: Xen wrote the request before READY. */
	uint8_t b = __atomic_load_n(kh_bits(r), __ATOMIC_ACQUIRE);
	uint8_t type = __atomic_load_n((volatile uint8_t *)r + 31, __ATOMIC_RELAXED);

	return (b & 0x0f) == STATE_IOREQ_READY && type == IOREQ_TYPE_COPY &&
	       ((b >> 5) & 1) == IOREQ_WRITE;
}

/* `ioreq->state = x` on the bitfield: a load and a store of its byte, not one atomic step. */
static inline void kh_set_state(volatile struct ioreq *r, unsigned state)
{
	uint8_t b = __atomic_load_n(kh_bits(r), __ATOMIC_RELAXED);

	/* release: what the handler did before (the eventfd signal) precedes the state. */
	__atomic_store_n(kh_bits(r), (uint8_t)((b & ~0x0fu) | state), __ATOMIC_RELEASE);
}

/* Step 3, for one ioeventfd (addr, addr_len, vq): count and data_is_ptr are not looked at. */
static inline bool kh_matches(volatile struct ioreq *r, uint64_t addr, uint32_t len, uint32_t vq)
{
	return __atomic_load_n(&r->addr, __ATOMIC_RELAXED) == addr + KH_NOTIFY_OFF &&
	       __atomic_load_n(&r->size, __ATOMIC_RELAXED) == len &&
	       (__atomic_load_n(&r->data, __ATOMIC_RELAXED) & KH_VQ_MASK) == vq;
}

#endif
