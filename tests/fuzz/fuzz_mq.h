/*
 * Shared by fuzz_console.c and fuzz_net.c: devices with several queues, driven op by op from
 * the input. Guest RAM is fuzz_blk_i2c_chains.h's (one read-only page, one hole); queue q's
 * rings sit at FZ_RAM_GPA + q * FZ_MQ_QAREA (desc +0, avail +0x400, used +0x800), buffers
 * come after the last queue area from a bump allocator that each bring-up resets.
 *
 * A chain from the input: [n] 1 + n % FZ_BUFS buffers, then per buffer the [kind] and [len]
 * bytes of fuzz_blk_i2c_chains.h; readable buffers in RAM take their first bytes (at most the
 * fuzzer's copy limit) from the input.
 */
#ifndef XVD_FUZZ_MQ_H
#define XVD_FUZZ_MQ_H

#include <ev.h>
#include <stdbool.h>

#include "tests/fuzz/fuzz_blk_i2c_chains.h"

#define FZ_MQ_QN    64u                     /* queue size */
#define FZ_MQ_MAX   8u                      /* queues at most */
#define FZ_MQ_QAREA 0x1000u

struct fz_mq_q {
	struct vring_desc *desc;
	struct vring_avail *avail;
	struct vring_used *used;
	uint16_t slot, published;
	uint32_t wcap[FZ_MQ_QN];     /* per head: writable bytes of the chain */
};

struct fz_mq {
	struct gmem *gm;
	struct ev_loop *loop;
	struct vdev_host host;
	struct fz_mq_q q[FZ_MQ_MAX];
	unsigned nq;
	uint64_t next;               /* data allocation cursor */
	uint64_t data;               /* where data starts: after the queue areas */
};

/* Guest RAM, a loop and the host the devices are created with; data after nq_max areas. */
static inline int fz_mq_init(struct fz_mq *m, unsigned nq_max)
{
	m->gm = fz_ram();
	m->loop = ev_loop_new(EVFLAG_AUTO);
	if (!m->gm || !m->loop || nq_max > FZ_MQ_MAX)
		return -1;
	m->host = (struct vdev_host){ .loop = m->loop, .gm = m->gm, .guest_name = "fuzz",
				      .raise_irq = fz_no_irq };
	m->data = FZ_RAM_GPA + nq_max * FZ_MQ_QAREA;
	return 0;
}

/* Reset, negotiate, set up nq queues of FZ_MQ_QN at their places, DRIVER_OK. */
static inline int fz_mq_bring_up(struct fz_mq *m, struct vdev *d, uint64_t want, unsigned nq)
{
	uint8_t *ram = gmem_flat_host(m->gm, FZ_RAM_GPA);

	vmmio_reset(d);
	/* What the last input can have touched: the rings and the data allocated so far. */
	memset(ram, 0, m->next ? m->next - FZ_RAM_GPA : FZ_RAM_SIZE);
	if (nq > FZ_MQ_MAX || fz_negotiate(d, want) < 0)
		return -1;
	for (unsigned q = 0; q < nq; q++) {
		uint64_t base = FZ_RAM_GPA + q * FZ_MQ_QAREA;
		uint8_t *h = ram + q * FZ_MQ_QAREA;

		fz_queue_setup(d, q, FZ_MQ_QN, base, base + 0x400, base + 0x800);
		m->q[q] = (struct fz_mq_q){ .desc = (struct vring_desc *)(void *)h,
					    .avail = (struct vring_avail *)(void *)(h + 0x400),
					    .used = (struct vring_used *)(void *)(h + 0x800) };
	}
	fz_wr(d, 0x070, 0xf);
	if (vmmio_read(d, 0x070, 4) != 0xf)
		return -1;
	m->nq = nq;
	m->next = m->data;
	return 0;
}

/* Add one descriptor to r's next slot; false when the chain cannot go on. */
static inline bool fz_mq_desc(struct fz_mq *m, struct fz_mq_q *r, unsigned kind, uint32_t len,
			      bool more, struct fz_in *in, size_t copy_max)
{
	uint64_t a = fz_place_at(&m->next, (kind >> 1) & 3, len);
	uint8_t *h = a && a < FZ_RO_PAGE ? gmem_flat_host(m->gm, a) : NULL;

	if (!a)
		return false;
	if (h && !(kind & 1)) {
		size_t c = len < in->left ? len : in->left;

		c = c < copy_max ? c : copy_max;
		memcpy(h, in->p, c);
		in->p += c;
		in->left -= c;
	}
	r->desc[r->slot] = (struct vring_desc){
		.addr = a, .len = len,
		.flags = (uint16_t)((kind & 1 ? VRING_DESC_F_WRITE : 0) | (more ? VRING_DESC_F_NEXT : 0)),
		.next = (uint16_t)(r->slot + 1) };
	r->slot++;
	return true;
}

static inline void fz_mq_publish(struct fz_mq_q *r, uint16_t head, uint32_t wcap)
{
	r->wcap[head] = wcap;
	r->avail->ring[r->published % FZ_MQ_QN] = head;
	r->published++;
	__atomic_store_n(&r->avail->idx, r->published, __ATOMIC_RELEASE);
}

/* One chain on queue q from the input, published (not kicked). */
static inline void fz_mq_chain(struct fz_mq *m, unsigned q, struct fz_in *in, size_t copy_max)
{
	struct fz_mq_q *r = &m->q[q];
	unsigned n = 1 + fz_take(in, 1) % FZ_BUFS;
	uint16_t head = r->slot;
	uint32_t wcap = 0;

	if (r->slot + n > FZ_MQ_QN)
		return;
	for (unsigned k = 0; k < n; k++) {
		unsigned kind = fz_take(in, 1);
		uint32_t len = kind & 8 ? fz_take(in, 2) % (FZ_BUF_MAX + 1) : 1 + (kind >> 4);

		if (!fz_mq_desc(m, r, kind, len, k + 1 < n, in, copy_max))
			return;     /* nothing published: the slots are reused */
		if (kind & 1)
			wcap += len;
	}
	fz_mq_publish(r, head, wcap);
}

/*
 * The ring operations both fuzzers share, op & 7 of an op byte whose op >> 3 picks the queue:
 * 0 a chain, 1 a chain and a kick, 2 a kick. False for any other op.
 */
static inline bool fz_mq_ring_op(struct fz_mq *m, struct vdev *d, unsigned op, struct fz_in *in,
				 size_t copy_max)
{
	unsigned q = (op >> 3) % m->nq;

	if ((op & 7) > 2)
		return false;
	if ((op & 7) < 2)
		fz_mq_chain(m, q, in, copy_max);
	if (op & 3)
		fz_wr(d, 0x050, q);
	return true;
}

/*
 * After every queue was kicked and the loop ran: no used index beyond what was published, no
 * used length beyond the chain's writable bytes, and every queue in the serving mask (bit q)
 * returned all it was given unless the device is broken.
 */
static inline void fz_mq_check(const struct fz_mq *m, struct vdev *d, uint32_t serving)
{
	bool dead = vdev_status(d) & VIRTIO_STATUS_NEEDS_RESET;

	for (unsigned q = 0; q < m->nq; q++) {
		const struct fz_mq_q *r = &m->q[q];
		uint16_t used = __atomic_load_n(&r->used->idx, __ATOMIC_ACQUIRE);

		if (used > r->published)
			abort();
		if ((serving >> q & 1) && !dead && used != r->published)
			abort();
		for (uint16_t i = 0; i < used; i++) {
			const struct vring_used_elem *u = &r->used->ring[i % FZ_MQ_QN];

			if (u->id >= FZ_MQ_QN || u->len > r->wcap[u->id])
				abort();
		}
	}
}

static inline void fz_mq_kick_all(const struct fz_mq *m, struct vdev *d)
{
	for (unsigned q = 0; q < m->nq; q++)
		fz_wr(d, 0x050, q);
}

#endif
