/*
 * Shared by fuzz_blk.c and fuzz_i2c.c (and, for RAM and input, fuzz_mq.h): turn fuzzer input into well-formed rings carrying
 * arbitrary requests, so the fuzzer spends its time in the device's request parser rather than
 * in the chain walker (fuzz_ring covers that). Guest RAM is a gmem_flat with one read-only page
 * and one hole; the device is driven through the real transport (vmmio_read/vmmio_write).
 *
 * Input after the device's own header bytes: up to FZ_CHAINS chains, each
 *   [n] 1 + n % FZ_BUFS buffers, then per buffer:
 *   [kind] bit0 device-writable, bits 1-2 placement (0-1 RAM, 2 read-only page, 3 hole),
 *          bit3 take the length from the next 2 bytes (else 1 + kind >> 4)
 *   [len lo, len hi] when bit3 (capped at FZ_BUF_MAX)
 *   readable buffers in RAM: their first bytes come from the input (the rest stays zero)
 */
#ifndef XVD_FUZZ_BLK_I2C_CHAINS_H
#define XVD_FUZZ_BLK_I2C_CHAINS_H

#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "devices/device.h"
#include "devices/virtio_mmio.h"
#include "devices/virtio_ring.h"
#include "tests/lib/gmem_flat.h"

#define FZ_RAM_GPA  UINT64_C(0x100000)
#define FZ_RAM_SIZE 0x40000u
#define FZ_QSIZE    16u
#define FZ_CHAINS   FZ_QSIZE
#define FZ_BUFS     6u
#define FZ_BUF_MAX  0x2000u
#define FZ_RO_PAGE  (FZ_RAM_GPA + 0x3e000)
#define FZ_HOLE     (FZ_RAM_GPA + 0x3f000)
#define FZ_DATA     (FZ_RAM_GPA + 0x2000)     /* buffers from here up to the read-only page */

struct fz_in {
	const uint8_t *p;
	size_t left;
};

static inline uint32_t fz_take(struct fz_in *in, unsigned n)
{
	uint32_t v = 0;

	for (unsigned i = 0; i < n && in->left; i++, in->left--)
		v |= (uint32_t)*in->p++ << (8 * i);
	return v;
}

/* The devices' interrupt: the fuzzers look at the used rings instead. */
static inline void fz_no_irq(struct vdev_host *host, struct vdev *dev)
{
	(void)host;
	(void)dev;
}

/* Guest RAM: FZ_RAM_SIZE at FZ_RAM_GPA with the read-only page and the hole; NULL if none. */
static inline struct gmem *fz_ram(void)
{
	struct gmem *gm = gmem_flat_new(FZ_RAM_GPA, FZ_RAM_SIZE);

	if (gm) {
		gmem_flat_set_readonly(gm, FZ_RO_PAGE, 0x1000);
		gmem_flat_add_hole(gm, FZ_HOLE, 0x1000);
	}
	return gm;
}

struct fz_rings {
	struct gmem *gm;
	struct vring_desc *desc;
	struct vring_avail *avail;
	struct vring_used *used;
	uint64_t next;           /* data allocation cursor */
	uint16_t published;
};

static inline void fz_wr(struct vdev *d, uint32_t off, uint32_t v)
{
	vmmio_write(d, off, 4, v);
}

/*
 * ACKNOWLEDGE, DRIVER, features (want, masked by what is offered, plus VERSION_1), FEATURES_OK;
 * -1 when FEATURES_OK did not stick. The caller has reset the device.
 */
static inline int fz_negotiate(struct vdev *d, uint64_t want)
{
	uint64_t f;

	fz_wr(d, 0x070, 1);
	fz_wr(d, 0x070, 3);
	fz_wr(d, 0x014, 1);
	f = (uint64_t)vmmio_read(d, 0x010, 4) << 32;
	fz_wr(d, 0x014, 0);
	f |= vmmio_read(d, 0x010, 4);
	f &= want | VIRTIO_BIT(VIRTIO_F_VERSION_1);
	fz_wr(d, 0x024, 1);
	fz_wr(d, 0x020, (uint32_t)(f >> 32));
	fz_wr(d, 0x024, 0);
	fz_wr(d, 0x020, (uint32_t)f);
	fz_wr(d, 0x070, 0xb);
	return vmmio_read(d, 0x070, 4) & 8 ? 0 : -1;
}

/* Queue q: size num, rings at desc/avail/used (below 4 GiB), QueueReady = 1. */
static inline void fz_queue_setup(struct vdev *d, unsigned q, unsigned num, uint64_t desc,
				  uint64_t avail, uint64_t used)
{
	fz_wr(d, 0x030, q);
	fz_wr(d, 0x038, num);
	fz_wr(d, 0x080, (uint32_t)desc);
	fz_wr(d, 0x090, (uint32_t)avail);
	fz_wr(d, 0x0a0, (uint32_t)used);
	fz_wr(d, 0x044, 1);
}

/* Reset, negotiate features (masked by what is offered), set up queue 0 at fixed places. */
static inline int fz_bring_up(struct vdev *d, struct fz_rings *r, uint64_t want)
{
	uint8_t *ram = gmem_flat_host(r->gm, FZ_RAM_GPA);

	vmmio_reset(d);
	memset(ram, 0, FZ_RAM_SIZE);
	if (fz_negotiate(d, want) < 0)
		return -1;
	fz_queue_setup(d, 0, FZ_QSIZE, FZ_RAM_GPA, FZ_RAM_GPA + 0x1000, FZ_RAM_GPA + 0x1800);
	fz_wr(d, 0x070, 0xf);
	if (vmmio_read(d, 0x070, 4) != 0xf)
		return -1;
	r->desc = (struct vring_desc *)(void *)ram;
	r->avail = (struct vring_avail *)(void *)(ram + 0x1000);
	r->used = (struct vring_used *)(void *)(ram + 0x1800);
	r->next = FZ_DATA;
	r->published = 0;
	return 0;
}

/*
 * A buffer address for a placement: 2 the read-only page, 3 the hole, else RAM from the bump
 * allocator at *next (0 when RAM is used up).
 */
static inline uint64_t fz_place_at(uint64_t *next, unsigned placement, uint32_t len)
{
	if (placement == 2)
		return FZ_RO_PAGE + (len < 0x1000 ? 0x1000 - len : 0);
	if (placement == 3)
		return FZ_HOLE;
	uint64_t a = (*next + 15) & ~UINT64_C(15);

	if (a + len > FZ_RO_PAGE)
		return 0;
	*next = a + len;
	return a;
}

static inline uint64_t fz_place(struct fz_rings *r, unsigned placement, uint32_t len)
{
	return fz_place_at(&r->next, placement, len);
}

/* Build and publish chains from the input; returns how many were published. */
static inline unsigned fz_build(struct fz_rings *r, struct fz_in *in)
{
	uint16_t slot = 0;

	while (in->left && r->published < FZ_CHAINS) {
		unsigned n = 1 + fz_take(in, 1) % FZ_BUFS;
		uint16_t head = slot;

		if (slot + n > FZ_QSIZE)
			break;
		for (unsigned k = 0; k < n; k++) {
			unsigned kind = fz_take(in, 1);
			uint32_t len = kind & 8 ? fz_take(in, 2) % (FZ_BUF_MAX + 1) : 1 + (kind >> 4);
			uint64_t a = fz_place(r, (kind >> 1) & 3, len);
			uint8_t *h = a && a < FZ_RO_PAGE ? gmem_flat_host(r->gm, a) : NULL;

			if (!a)
				return r->published;
			if (h && !(kind & 1)) {
				size_t c = len < in->left ? len : in->left;

				memcpy(h, in->p, c);
				in->p += c;
				in->left -= c;
			}
			r->desc[slot] = (struct vring_desc){
				.addr = a, .len = len,
				.flags = (uint16_t)((kind & 1 ? VRING_DESC_F_WRITE : 0) |
						    (k + 1 < n ? VRING_DESC_F_NEXT : 0)),
				.next = (uint16_t)(slot + 1) };
			slot++;
		}
		r->avail->ring[r->published % FZ_QSIZE] = head;
		r->published++;
		__atomic_store_n(&r->avail->idx, r->published, __ATOMIC_RELEASE);
	}
	return r->published;
}

/* No mapping left behind, none unmapped twice or unknown. */
static inline void fz_check_unmapped(struct gmem *gm)
{
	if (gmem_flat_outstanding(gm) != 0 || gmem_flat_bad_unmaps(gm) != 0)
		abort();
}

/* An input's start: its reader and rings on gm; false when there is nothing to run. */
static inline bool fz_begin(struct gmem *gm, const uint8_t *data, size_t size, struct fz_in *in,
			    struct fz_rings *r)
{
	*in = (struct fz_in){ data, size };
	*r = (struct fz_rings){ .gm = gm };
	return gm && size >= 1;
}

/* Bring d up with want and publish the input's chains (not kicked). */
static inline void fz_publish(struct vdev *d, struct fz_rings *r, struct fz_in *in, uint64_t want)
{
	if (fz_bring_up(d, r, want) < 0)
		abort();
	fz_build(r, in);
}

/* Every chain must come back, unless the device gave up on the ring (NEEDS_RESET). */
static inline void fz_check_done(struct vdev *d, const struct fz_rings *r)
{
	uint16_t used = __atomic_load_n(&r->used->idx, __ATOMIC_ACQUIRE);

	if (used != r->published && !(vdev_status(d) & VIRTIO_STATUS_NEEDS_RESET))
		abort();
	for (uint16_t i = 0; i < used && i < FZ_QSIZE; i++)
		if (r->used->ring[i].id >= FZ_QSIZE)
			abort();
}

/* An input's end: every chain back, the device reset, no mapping left. */
static inline void fz_end(struct vdev *d, const struct fz_rings *r)
{
	fz_check_done(d, r);
	vmmio_reset(d);
	fz_check_unmapped(r->gm);
}

#endif
