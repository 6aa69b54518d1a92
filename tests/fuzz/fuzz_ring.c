/*
 * libFuzzer target: ring contents. The input becomes guest memory holding the rings, the
 * descriptors and indirect tables; the device side pops and pushes everything it can.
 *
 * Input: a 12-byte header, then guest RAM contents (copied to the start of 64 KiB of RAM):
 *   [0] queue size 1 << (b % 9)   [1] bit0 EVENT_IDX, bit1 INDIRECT_DESC, bit2 hold elements,
 *       bit3 return the held ones as one group (vq_push_many), bit4 the guest scribbles on
 *       its rings at every map the device makes
 *   [2..3] desc offset  [4..5] avail offset  [6..7] used offset  (within RAM)
 *   [8..9] avail->idx rewrite after the first pop  [10] rewrite it (b & 1)  [11] push lengths
 * Any crash, sanitizer report, or mapping left behind after the reset is a bug.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "devices/virtio_ring.h"
#include "devices/virtqueue.h"
#include "lib/log.h"
#include "tests/lib/gmem_flat.h"

#define RAM_GPA  UINT64_C(0x10000)
#define RAM_SIZE 0x10000u
#define HDR      12
#define HOLD_MAX 8

static uint16_t get16(const uint8_t *p)
{
	return (uint16_t)(p[0] | p[1] << 8);
}

/* Pop until empty or broken; hold a few elements and return them out of order. */
static void drain(struct virtqueue *vq, const uint8_t *h, uint16_t *avail_idx)
{
	struct vq_elem *held[HOLD_MAX];
	unsigned nheld = 0;
	int err;

	for (unsigned i = 0; i < 2u * VQ_MAX_SIZE; i++) {
		struct vq_elem *e = vq_pop(vq, &err);

		if (!e)
			break;
		if (i == 0 && avail_idx && (h[10] & 1))
			*avail_idx = get16(h + 8);        /* the guest moves the index meanwhile */
		if ((h[1] & 4) && nheld < HOLD_MAX) {
			held[nheld++] = e;
			continue;
		}
		vq_push(e, h[11] & 1 ? e->in_len : (uint32_t)h[11] << 8);
	}
	if (h[1] & 8) {
		uint32_t written[HOLD_MAX];

		for (unsigned i = 0; i < nheld; i++)
			written[i] = (uint32_t)h[11] << (i & 7);
		vq_push_many(held, written, nheld);
		nheld = 0;
	}
	while (nheld) {
		struct vq_elem *e = held[--nheld];

		if (nheld & 1)
			vq_drop(e);
		else
			vq_push(e, e->in_len);
	}
	(void)vq_should_notify(vq);
}

/* The guest scribbling on its rings while the device reads them (header bit 4). */
struct scribble {
	uint8_t *ram;
	uint32_t state;
};

static void scribble_on_map(void *opaque, uint64_t gpa, size_t len, unsigned prot)
{
	struct scribble *s = opaque;

	(void)gpa;
	(void)len;
	(void)prot;
	/* xorshift32: deterministic per input, so a crash reproduces. */
	s->state ^= s->state << 13;
	s->state ^= s->state >> 17;
	s->state ^= s->state << 5;
	s->ram[(s->state >> 8) % 0x900] = (uint8_t)s->state;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static bool quiet;
	struct virtqueue vq = { 0 };

	if (!quiet) {
		log_init(LOG_CRIT, false);
		quiet = true;
	}
	if (size < HDR)
		return 0;
	struct gmem *gm = gmem_flat_new(RAM_GPA, RAM_SIZE);

	if (!gm)
		return 0;
	gmem_flat_add_hole(gm, RAM_GPA + 0xf000, 0x1000);
	gmem_flat_set_readonly(gm, RAM_GPA + 0xe000, 0x1000);
	uint8_t *ram = gmem_flat_host(gm, RAM_GPA);
	size_t n = size - HDR < RAM_SIZE ? size - HDR : RAM_SIZE;

	memcpy(ram, data + HDR, n);
	struct scribble sc = { ram, (uint32_t)get16(data + 8) << 8 | 1 };

	if (data[1] & 16)
		gmem_flat_set_map_hook(gm, scribble_on_map, &sc);
	uint16_t num = (uint16_t)(1u << (data[0] % 9));
	uint64_t features = ((uint64_t)(data[1] & 1) << 29) | ((uint64_t)(data[1] & 2) << 27);
	uint64_t desc = RAM_GPA + get16(data + 2), avail = RAM_GPA + get16(data + 4);
	uint64_t used = RAM_GPA + get16(data + 6);

	if (vq_configure(&vq, gm, 0, num, 256, desc, avail, used, features) == 0) {
		drain(&vq, data, &((struct vring_avail *)gmem_flat_host(gm, avail))->idx);
		vq_disable_notify(&vq);
		if (vq_enable_notify(&vq))
			drain(&vq, data, NULL);
	}
	vq_reset(&vq);
	if (gmem_flat_outstanding(gm) != 0 || gmem_flat_bad_unmaps(gm) != 0)
		abort();
	gmem_destroy(gm);
	return 0;
}
