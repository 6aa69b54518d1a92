/*
 * libFuzzer target: virtio-gpio (devices/gpio.c) behind the real transport, on the guest RAM of
 * fuzz_mq.h: arbitrary chains on the requestq and the eventq, and well-formed requests and irq
 * buffers with fuzzed fields, so that the fuzzer reaches lines with directions, values and
 * interrupt types set, loopbacks toggling and buffers held and cancelled.
 *
 * Input: [0] bit0 offer VIRTIO_GPIO_F_IRQ, bit1 INDIRECT, bit2 EVENT_IDX; then ops, op & 7:
 *   0-2 fuzz_mq.h's ring ops (chain, chain and kick, kick) on queue (op >> 3) % 2;
 *   3 a request [type lo, type hi, line, value] (8 bytes readable, 2 writable) and a kick;
 *   4 an irq buffer [line] (2 readable, 1 writable) and a kick;
 *   5 reset and bring the device up again; 6-7 a config-space read.
 * Any crash, sanitizer report, request not answered while the device serves, more irq buffers
 * held than there are lines, a used length beyond a chain's writable bytes, or a mapping left
 * behind after the reset is a bug.
 */
#include <stdio.h>

#include "config/config.h"
#include "lib/log.h"
#include "tests/fuzz/fuzz_mq.h"

extern const struct vdev_ops vdev_gpio_ops;

#define FZG_NQ    2u
#define FZG_COPY  64u
#define FZG_LINES 6u

struct fzg {
	struct fz_mq mq;
	struct vdev *d;
};

static struct fzg *fzg_get(void)
{
	static struct fzg s;
	static bool tried;
	static const char *const names[FZG_LINES] = { "a", "b", "c", "d", "e", "f" };
	struct config_device cfg = { .type = DEV_GPIO, .devid = -1 };
	struct config_gpio *g = &cfg.u.gpio;

	if (tried)
		return s.d ? &s : NULL;
	tried = true;
	log_init(LOG_CRIT, false);
	if (fz_mq_init(&s.mq, FZG_NQ) < 0)
		return NULL;
	g->nlines = FZG_LINES;
	for (unsigned i = 0; i < FZG_LINES; i++)
		snprintf(g->lines[i].name, sizeof(g->lines[i].name), "%s", names[i]);
	g->lines[1].pull_up = true;
	g->nloops = 2;
	g->loops[0] = (struct config_gpio_loop){ 0, 1 };
	g->loops[1] = (struct config_gpio_loop){ 2, 3 };
	if (vdev_gpio_ops.create(&s.mq.host, &cfg, &s.d) < 0)
		s.d = NULL;
	return s.d ? &s : NULL;
}

/* A chain of readable bytes `out` and `wlen` writable bytes on queue q, published and kicked. */
static void fzg_chain(struct fzg *s, unsigned q, const uint8_t *out, uint32_t olen, uint32_t wlen)
{
	struct fz_mq_q *r = &s->mq.q[q];
	uint16_t head = r->slot;
	struct fz_in in = { out, olen };

	if (r->slot + 2 > FZ_MQ_QN)
		return;
	if (!fz_mq_desc(&s->mq, r, 0, olen, true, &in, olen) ||
	    !fz_mq_desc(&s->mq, r, 1, wlen, false, &in, 0))
		return;
	fz_mq_publish(r, head, wlen);
	fz_wr(s->d, 0x050, q);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct fzg *s = fzg_get();
	struct fz_in in = { data, size };

	if (!s || size < 1)
		return 0;
	unsigned f = fz_take(&in, 1);
	uint64_t want = (f & 1 ? VIRTIO_BIT(0) : 0) |
			(f & 2 ? VIRTIO_BIT(VIRTIO_F_INDIRECT_DESC) : 0) |
			(f & 4 ? VIRTIO_BIT(VIRTIO_F_EVENT_IDX) : 0);

	if (fz_mq_bring_up(&s->mq, s->d, want, FZG_NQ) < 0)
		abort();
	while (in.left) {
		unsigned op = fz_take(&in, 1);
		uint8_t b[8] = { 0 };

		if (fz_mq_ring_op(&s->mq, s->d, op, &in, FZG_COPY))
			continue;
		switch (op & 7) {
		case 3:
			b[0] = (uint8_t)fz_take(&in, 1) % 8;
			b[1] = (uint8_t)(op & 0x80 ? fz_take(&in, 1) : 0);
			b[2] = (uint8_t)fz_take(&in, 1) % (FZG_LINES + 2);
			b[4] = (uint8_t)fz_take(&in, 1) % 10;
			fzg_chain(s, 0, b, 8, 2);
			break;
		case 4:
			b[0] = (uint8_t)fz_take(&in, 1) % (FZG_LINES + 2);
			fzg_chain(s, 1, b, 2, 1);
			break;
		case 5:
			if (fz_mq_bring_up(&s->mq, s->d, want, FZG_NQ) < 0)
				abort();
			break;
		default:
			vmmio_read(s->d, 0x100 + fz_take(&in, 1) % 12, 1);
			break;
		}
	}
	fz_mq_kick_all(&s->mq, s->d);
	fz_mq_check(&s->mq, s->d, 0x1);   /* the requestq answers everything */
	if (!(vdev_status(s->d) & VIRTIO_STATUS_NEEDS_RESET) && (f & 1)) {
		const struct fz_mq_q *e = &s->mq.q[1];

		if ((uint16_t)(e->published - e->used->idx) > FZG_LINES)
			abort();   /* at most one buffer held per line */
	}
	vmmio_reset(s->d);
	fz_check_unmapped(s->mq.gm);
	return 0;
}
