/*
 * libFuzzer target: register-access sequences from a hostile guest against a virtio-rng device
 * on the real transport, with guest RAM (64 KiB, one hole, one read-only page) the input can
 * also write. Any crash, sanitizer report, or mapping left behind after the final reset is a bug.
 *
 * Input: a sequence of operations, each starting with an opcode byte:
 *   0 write:  off(2, masked to the 0x200 window) size(1: 1<<(b&3)) value(8)
 *   1 read:   off(2) size(1)
 *   2 memory: gpa offset(2) len(1) bytes(len)   -- the guest scribbling on its RAM
 *   3 init:   features(1) qsize(1)              -- a well-behaved driver's setup, rings at 0
 *   4 kick:   queue(1)
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "config/config.h"
#include "devices/device.h"
#include "devices/virtio_mmio.h"
#include "devices/virtio_ring.h"
#include "lib/log.h"
#include "tests/lib/gmem_flat.h"

extern const struct vdev_ops vdev_rng_ops;

#define RAM_GPA  UINT64_C(0x10000)
#define RAM_SIZE 0x10000u

struct input {
	const uint8_t *p;
	size_t left;
};

static uint64_t take(struct input *in, unsigned n)
{
	uint64_t v = 0;

	for (unsigned i = 0; i < n && in->left; i++, in->left--)
		v |= (uint64_t)*in->p++ << (8 * i);
	return v;
}

static void raise_irq(struct vdev_host *host, struct vdev *dev)
{
	(void)dev;
	(*(unsigned *)host->opaque)++;
}

static void wr(struct vdev *d, uint32_t off, uint32_t v)
{
	vmmio_write(d, off, 4, v);
}

/* A correct driver's initialisation, so the fuzzer reaches the rings quickly. */
static void op_init(struct vdev *d, struct input *in)
{
	uint32_t feat = (uint32_t)take(in, 1);
	uint32_t qsize = 1u << (take(in, 1) % 9);

	wr(d, 0x070, 0);
	wr(d, 0x070, 1);
	wr(d, 0x070, 3);
	wr(d, 0x024, 0);
	wr(d, 0x020, ((feat & 1) << VIRTIO_F_INDIRECT_DESC) | ((feat & 2) << (VIRTIO_F_EVENT_IDX - 1)));
	wr(d, 0x024, 1);
	wr(d, 0x020, 1);
	wr(d, 0x070, 0xb);
	wr(d, 0x030, 0);
	wr(d, 0x038, qsize);
	/* desc at RAM start, avail after it, used on the next 4 KiB page. */
	wr(d, 0x080, (uint32_t)RAM_GPA);
	wr(d, 0x090, (uint32_t)(RAM_GPA + 16 * qsize));
	wr(d, 0x0a0, (uint32_t)(RAM_GPA + 0x1000 * ((16 * qsize + 6 + 2 * qsize) / 0x1000 + 1)));
	wr(d, 0x044, 1);
	wr(d, 0x070, 0xf);
}

static void op_memory(struct gmem *gm, struct input *in)
{
	uint32_t off = (uint32_t)take(in, 2);
	size_t len = (size_t)take(in, 1);
	uint8_t *h = gmem_flat_host(gm, RAM_GPA + off);

	if (len > in->left)
		len = in->left;
	if (len > RAM_SIZE - off)
		len = RAM_SIZE - off;
	memcpy(h, in->p, len);
	in->p += len;
	in->left -= len;
}

static void run(struct vdev *d, struct gmem *gm, struct input *in)
{
	for (unsigned steps = 0; in->left && steps < 4096; steps++) {
		uint32_t off;
		unsigned size;

		switch (take(in, 1) % 5) {
		case 0:
			off = (uint32_t)take(in, 2) % 0x200;
			size = 1u << (take(in, 1) & 3);
			vmmio_write(d, off, size, take(in, 8));
			break;
		case 1:
			off = (uint32_t)take(in, 2) % 0x200;
			size = 1u << (take(in, 1) & 3);
			(void)vmmio_read(d, off, size);
			break;
		case 2:
			op_memory(gm, in);
			break;
		case 3:
			op_init(d, in);
			break;
		case 4:
			wr(d, 0x050, (uint32_t)take(in, 1) % 3);
			break;
		}
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static bool quiet;
	struct config_device cfg = { .type = DEV_RNG, .devid = -1 };
	struct input in = { data, size };
	unsigned irqs = 0;
	struct vdev *d;

	if (!quiet) {
		log_init(LOG_CRIT, false);
		quiet = true;
	}
	struct gmem *gm = gmem_flat_new(RAM_GPA, RAM_SIZE);

	if (!gm)
		return 0;
	gmem_flat_add_hole(gm, RAM_GPA + 0xe000, 0x1000);
	gmem_flat_set_readonly(gm, RAM_GPA + 0xd000, 0x1000);
	struct vdev_host host = { .gm = gm, .guest_name = "fuzz", .raise_irq = raise_irq,
				  .opaque = &irqs, .grant_mem = size & 1 };

	if (vdev_rng_ops.create(&host, &cfg, &d) == 0) {
		run(d, gm, &in);
		vmmio_reset(d);
		/* After a reset nothing the guest handed over may still be mapped. */
		if (gmem_flat_outstanding(gm) != 0 || gmem_flat_bad_unmaps(gm) != 0)
			abort();
		d->ops->destroy(d);
	}
	gmem_destroy(gm);
	return 0;
}
