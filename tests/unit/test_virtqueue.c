/*
 * The split virtqueue against hostile rings (DESIGN.md §6, ring items). Each test builds one
 * bad ring through the test driver's structures, kicks a virtio-rng device over the real
 * transport, and checks the outcome: NEEDS_RESET with a config interrupt and nothing returned,
 * every mapping undone, and a clean re-initialisation afterwards. The last tests drive the
 * virtqueue API directly.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "devices/device.h"
#include "devices/iov.h"
#include "devices/virtio_mmio.h"
#include "tests/lib/gmem_flat.h"
#include "tests/lib/vdriver.h"
#include "tests/lib/vdriver_direct.h"

#define RAM_GPA  UINT64_C(0x40000000)
#define RAM_SIZE (8u << 20)
#define HOLE_GPA (RAM_GPA + (6u << 20))
#define RO_GPA   (RAM_GPA + (7u << 20))
#define BIG_GPA  (RAM_GPA + (1u << 20))   /* 4 MiB nobody allocates from */
#define QSIZE    16
#define V1       VIRTIO_BIT(VIRTIO_F_VERSION_1)
#define F_IND    VIRTIO_BIT(VIRTIO_F_INDIRECT_DESC)
#define F_EVT    VIRTIO_BIT(VIRTIO_F_EVENT_IDX)

struct rig {
	struct vdrv_direct x;
	struct vdrv drv;
	uint64_t features;
};

static struct rig *rig_new(uint64_t features)
{
	struct config_device cfg = { .type = DEV_RNG, .devid = -1 };
	struct rig *r = calloc(1, sizeof(*r));

	assert_non_null(r);
	assert_int_equal(vdrv_direct_open(&r->x, &cfg, RAM_GPA, RAM_SIZE, NULL), 0);
	gmem_flat_add_hole(r->x.gm, HOLE_GPA, GMEM_FLAT_PAGE);
	gmem_flat_set_readonly(r->x.gm, RO_GPA, GMEM_FLAT_PAGE);
	r->features = features;
	assert_int_equal(vdrv_init(&r->drv, &r->x.io, &r->x.mem, features, 1, QSIZE), 0);
	vdrv_direct_take_irqs(&r->x);
	return r;
}

static int setup(void **state)
{
	*state = rig_new(V1 | F_IND | F_EVT);
	return 0;
}

static int setup_no_indirect(void **state)
{
	*state = rig_new(V1 | F_EVT);
	return 0;
}

static int teardown(void **state)
{
	struct rig *r = *state;

	vdrv_direct_close(&r->x);
	free(r);
	return 0;
}

static struct vdrv_vq *vq0(struct rig *r)
{
	return &r->drv.vq[0];
}

static uint64_t buf(struct rig *r, uint32_t len)
{
	uint64_t gpa = vdrv_alloc(&r->x.mem, len, 16, NULL);

	assert_true(gpa != 0);
	return gpa;
}

static void set_desc(struct vring_desc *d, uint64_t addr, uint32_t len, uint16_t flags,
		     uint16_t next)
{
	*d = (struct vring_desc){ .addr = addr, .len = len, .flags = flags, .next = next };
}

/* Put head in the avail ring and publish it, as a driver would, without the free list. */
static void publish(struct rig *r, uint16_t head)
{
	struct vdrv_vq *vq = vq0(r);

	vq->avail->ring[vq->avail_idx % vq->num] = head;
	vq->avail_idx++;
	__atomic_store_n(&vq->avail->idx, vq->avail_idx, __ATOMIC_RELEASE);
}

/* An indirect table of n entries, each filled by the caller; returns its host view. */
static struct vring_desc *table(struct rig *r, unsigned n, uint64_t *gpa)
{
	void *h;

	*gpa = vdrv_alloc(&r->x.mem, n * 16ull, 16, &h);
	assert_true(*gpa != 0);
	return h;
}

/* A good chain works after the rig is reset and initialised again: the state is consistent. */
static void assert_recovers(struct rig *r)
{
	vdrv_reset(&r->drv);
	assert_int_equal(vdrv_status(&r->drv), 0);
	assert_int_equal(gmem_flat_outstanding(r->x.gm), 0);
	assert_int_equal(gmem_flat_bad_unmaps(r->x.gm), 0);
	assert_int_equal(vdrv_init(&r->drv, &r->x.io, &r->x.mem, r->features, 1, QSIZE), 0);
	struct vdrv_buf b = { buf(r, 64), 64, true };

	assert_int_equal(vdrv_transfer(&r->drv, 0, &b, 1, false, 1000), 64);
}

/* Kick; the device must flag NEEDS_RESET, raise the config interrupt and return nothing. */
static void kick_expect_broken(struct rig *r)
{
	uint16_t used_before = vq0(r)->used->idx;

	vdrv_direct_take_irqs(&r->x);
	vdrv_kick(&r->drv, 0);
	assert_true(vdrv_status(&r->drv) & VIRTIO_STATUS_NEEDS_RESET);
	assert_true(vdrv_read32(&r->drv, 0x060) & VIRTIO_MMIO_INT_CONFIG);
	assert_int_equal(vdrv_direct_take_irqs(&r->x), 1);
	assert_int_equal(vq0(r)->used->idx, used_before);
	assert_true(r->x.dev->vqs[0].broken);
	/* Only the three rings stay mapped: the bad chain's partial mappings were undone. */
	assert_int_equal(gmem_flat_outstanding(r->x.gm), 3);
	/* A broken queue pops nothing more, even for a good chain. */
	struct vdrv_buf b = { buf(r, 8), 8, true };

	if (vq0(r)->num_free)
		vdrv_submit(&r->drv, 0, &b, 1, false, NULL);
	vdrv_kick(&r->drv, 0);
	assert_int_equal(vq0(r)->used->idx, used_before);
	assert_int_equal(vdrv_direct_take_irqs(&r->x), 0);
	assert_recovers(r);
}

/* Kick; the chain must come back with len bytes. */
static void kick_expect_used(struct rig *r, uint16_t head, uint32_t len)
{
	struct vdrv_vq *vq = vq0(r);
	uint16_t slot = vq->used->idx;

	vdrv_kick(&r->drv, 0);
	assert_int_equal(vq->used->idx, (uint16_t)(slot + 1));
	assert_int_equal(vq->used->ring[slot % vq->num].id, head);
	assert_int_equal(vq->used->ring[slot % vq->num].len, len);
	assert_false(vdrv_status(&r->drv) & VIRTIO_STATUS_NEEDS_RESET);
	assert_int_equal(gmem_flat_outstanding(r->x.gm), 3);
}

/* ---- avail ring ---- */

static void test_avail_idx_too_far_ahead(void **state)
{
	struct rig *r = *state;
	struct vdrv_vq *vq = vq0(r);

	for (uint16_t i = 0; i < QSIZE; i++)
		set_desc(&vq->desc[i], buf(r, 8), 8, VRING_DESC_F_WRITE, 0);
	vq->avail->idx = QSIZE + 1;
	kick_expect_broken(r);
	/* The same with the index "behind" (a huge forward distance mod 2^16). */
	vq->avail->idx = 0xffff;
	kick_expect_broken(r);
}

static void test_avail_idx_full_ring_ok(void **state)
{
	struct rig *r = *state;
	struct vdrv_vq *vq = vq0(r);

	for (uint16_t i = 0; i < QSIZE; i++) {
		set_desc(&vq->desc[i], buf(r, 8), 8, VRING_DESC_F_WRITE, 0);
		publish(r, (uint16_t)(QSIZE - 1 - i));
	}
	vdrv_kick(&r->drv, 0);
	assert_int_equal(vq->used->idx, QSIZE);
	assert_false(vdrv_status(&r->drv) & VIRTIO_STATUS_NEEDS_RESET);
	for (uint16_t i = 0; i < QSIZE; i++)
		assert_int_equal(vq->used->ring[i].id, QSIZE - 1 - i);
}

static void test_head_out_of_range(void **state)
{
	struct rig *r = *state;

	publish(r, QSIZE);
	kick_expect_broken(r);
	publish(r, 0xffff);
	kick_expect_broken(r);
}

/* ---- descriptor chains ---- */

static void test_next_out_of_range(void **state)
{
	struct rig *r = *state;
	struct vdrv_vq *vq = vq0(r);

	set_desc(&vq->desc[0], buf(r, 8), 8, VRING_DESC_F_WRITE | VRING_DESC_F_NEXT, QSIZE);
	publish(r, 0);
	kick_expect_broken(r);
}

static void test_chain_loop(void **state)
{
	struct rig *r = *state;
	struct vdrv_vq *vq = vq0(r);
	uint64_t b = buf(r, 8);

	set_desc(&vq->desc[0], b, 8, VRING_DESC_F_WRITE | VRING_DESC_F_NEXT, 1);
	set_desc(&vq->desc[1], b, 8, VRING_DESC_F_WRITE | VRING_DESC_F_NEXT, 0);
	publish(r, 0);
	kick_expect_broken(r);
	/* A descriptor pointing at itself. */
	set_desc(&vq->desc[3], b, 8, VRING_DESC_F_WRITE | VRING_DESC_F_NEXT, 3);
	publish(r, 3);
	kick_expect_broken(r);
}

/* Zero-length descriptors map nothing, so only the chain-length bound stops this loop. */
static void test_chain_loop_zero_length(void **state)
{
	struct rig *r = *state;
	struct vdrv_vq *vq = vq0(r);
	uint64_t tgpa;
	struct vring_desc *t = table(r, 2, &tgpa);

	set_desc(&vq->desc[0], 0, 0, VRING_DESC_F_WRITE | VRING_DESC_F_NEXT, 1);
	set_desc(&vq->desc[1], 0, 0, VRING_DESC_F_WRITE | VRING_DESC_F_NEXT, 0);
	publish(r, 0);
	kick_expect_broken(r);
	set_desc(&t[0], 0, 0, VRING_DESC_F_WRITE | VRING_DESC_F_NEXT, 1);
	set_desc(&t[1], 0, 0, VRING_DESC_F_WRITE | VRING_DESC_F_NEXT, 0);
	set_desc(&vq->desc[0], tgpa, 32, VRING_DESC_F_INDIRECT, 0);
	publish(r, 0);
	kick_expect_broken(r);
}

static void test_chain_of_queue_size_ok(void **state)
{
	struct rig *r = *state;
	struct vdrv_vq *vq = vq0(r);

	for (uint16_t i = 0; i < QSIZE; i++)
		set_desc(&vq->desc[i], buf(r, 4), 4,
			 VRING_DESC_F_WRITE | (i + 1 < QSIZE ? VRING_DESC_F_NEXT : 0),
			 (uint16_t)(i + 1));
	publish(r, 0);
	kick_expect_used(r, 0, 4 * QSIZE);
}

static void test_readable_after_writable(void **state)
{
	struct rig *r = *state;
	struct vdrv_buf b[3] = { { buf(r, 8), 8, false }, { buf(r, 8), 8, true },
				 { buf(r, 8), 8, false } };

	assert_true(vdrv_submit(&r->drv, 0, b, 3, false, NULL) >= 0);
	kick_expect_broken(r);
	/* Readable first, then writable: fine, and the readable part is not counted. */
	assert_true(vdrv_submit(&r->drv, 0, b, 2, false, NULL) >= 0);
	kick_expect_used(r, 0, 8);
}

static void test_readable_after_writable_indirect(void **state)
{
	struct rig *r = *state;
	struct vdrv_buf b[2] = { { buf(r, 8), 8, true }, { buf(r, 8), 8, false } };

	assert_true(vdrv_submit(&r->drv, 0, b, 2, true, NULL) >= 0);
	kick_expect_broken(r);
}

static void test_zero_length_descriptor_ok(void **state)
{
	struct rig *r = *state;
	struct vdrv_buf b[3] = { { buf(r, 8), 0, true }, { buf(r, 8), 8, true },
				 { 0, 0, true } };

	assert_true(vdrv_submit(&r->drv, 0, b, 3, false, NULL) >= 0);
	kick_expect_used(r, 0, 8);
}

/*
 * The guest rewrites the descriptor while the device maps its buffer: the device works from
 * the copy it validated (length, address, flags read once), never from the ring again.
 */
struct rewrite {
	struct vring_desc *desc;
	uint64_t trigger;
	unsigned fired;
};

static void rewrite_on_map(void *opaque, uint64_t gpa, size_t len, unsigned prot)
{
	struct rewrite *rw = opaque;

	(void)len;
	(void)prot;
	if (gpa != rw->trigger)
		return;
	rw->fired++;
	rw->desc->len = 1u << 20;
	rw->desc->addr = RAM_GPA;
	rw->desc->flags = VRING_DESC_F_WRITE | VRING_DESC_F_NEXT;
	rw->desc->next = 0xffff;
}

static void test_descriptor_read_once(void **state)
{
	struct rig *r = *state;
	uint8_t *h;
	uint64_t gpa = vdrv_alloc(&r->x.mem, 64 + 32, 16, (void **)&h) + 16;
	struct vdrv_buf b = { gpa, 64, true };

	memset(h, 0xa5, 64 + 32);
	int head = vdrv_submit(&r->drv, 0, &b, 1, false, NULL);
	struct rewrite rw = { &vq0(r)->desc[head], gpa, 0 };

	assert_true(head >= 0);
	gmem_flat_set_map_hook(r->x.gm, rewrite_on_map, &rw);
	kick_expect_used(r, (uint16_t)head, 64);
	gmem_flat_set_map_hook(r->x.gm, NULL, NULL);
	assert_int_equal(rw.fired, 1);
	for (int i = 0; i < 16; i++) {
		assert_int_equal(h[i], 0xa5);
		assert_int_equal(h[16 + 64 + i], 0xa5);
	}
}

/* ---- buffers ---- */

static void test_buffer_address_wraps(void **state)
{
	struct rig *r = *state;
	struct vdrv_buf b = { UINT64_C(0xfffffffffffffff0), 0x20, true };

	assert_true(vdrv_submit(&r->drv, 0, &b, 1, false, NULL) >= 0);
	kick_expect_broken(r);
}

static void test_buffer_in_hole(void **state)
{
	struct rig *r = *state;
	/* Starts in RAM, ends in the hole. */
	struct vdrv_buf b = { HOLE_GPA - 8, 16, true };

	assert_true(vdrv_submit(&r->drv, 0, &b, 1, false, NULL) >= 0);
	kick_expect_broken(r);
}

static void test_buffer_beyond_ram(void **state)
{
	struct rig *r = *state;
	struct vdrv_buf b[2] = { { buf(r, 8), 8, true }, { RAM_GPA + RAM_SIZE - 4, 8, true } };

	assert_true(vdrv_submit(&r->drv, 0, b, 2, false, NULL) >= 0);
	kick_expect_broken(r);
	struct vdrv_buf below = { 0x1000, 8, true };

	assert_true(vdrv_submit(&r->drv, 0, &below, 1, false, NULL) >= 0);
	kick_expect_broken(r);
}

static void test_writable_buffer_read_only_memory(void **state)
{
	struct rig *r = *state;
	struct vdrv_buf b = { RO_GPA, 64, true };

	assert_true(vdrv_submit(&r->drv, 0, &b, 1, false, NULL) >= 0);
	kick_expect_broken(r);
	/* The device may read memory it may not write. */
	struct vdrv_buf ok[2] = { { RO_GPA, 64, false }, { buf(r, 64), 64, true } };

	assert_true(vdrv_submit(&r->drv, 0, ok, 2, false, NULL) >= 0);
	kick_expect_used(r, 0, 64);
}

/* 1024 descriptors of 4 MiB each add up to 2^32 bytes: one more than a u32 holds. */
static void test_total_length_over_32_bits(void **state)
{
	struct rig *r = *state;
	uint64_t tgpa;
	struct vring_desc *t = table(r, VQ_MAX_SIZE, &tgpa);

	for (unsigned i = 0; i < VQ_MAX_SIZE; i++)
		set_desc(&t[i], BIG_GPA, 4u << 20, VRING_DESC_F_WRITE |
			 (i + 1 < VQ_MAX_SIZE ? VRING_DESC_F_NEXT : 0), (uint16_t)(i + 1));
	set_desc(&vq0(r)->desc[0], tgpa, VQ_MAX_SIZE * 16u, VRING_DESC_F_INDIRECT, 0);
	publish(r, 0);
	kick_expect_broken(r);
	/* 1023 of them fit (and rng answers with its 64 KiB cap). */
	t = table(r, VQ_MAX_SIZE - 1, &tgpa);
	for (unsigned i = 0; i < VQ_MAX_SIZE - 1; i++)
		set_desc(&t[i], BIG_GPA, 4u << 20, VRING_DESC_F_WRITE |
			 (i + 2 < VQ_MAX_SIZE ? VRING_DESC_F_NEXT : 0), (uint16_t)(i + 1));
	set_desc(&vq0(r)->desc[0], tgpa, (VQ_MAX_SIZE - 1) * 16u, VRING_DESC_F_INDIRECT, 0);
	publish(r, 0);
	kick_expect_used(r, 0, 65536);
}

/* A direct prefix plus a full indirect table exceeds the iovec capacity (VQ_MAX_SIZE). */
static void test_more_buffers_than_iovec(void **state)
{
	struct rig *r = *state;
	struct vdrv_vq *vq = vq0(r);
	uint64_t tgpa, b = buf(r, 16);
	struct vring_desc *t = table(r, VQ_MAX_SIZE, &tgpa);

	for (unsigned i = 0; i < VQ_MAX_SIZE; i++)
		set_desc(&t[i], b, 16, VRING_DESC_F_WRITE |
			 (i + 1 < VQ_MAX_SIZE ? VRING_DESC_F_NEXT : 0), (uint16_t)(i + 1));
	for (uint16_t i = 0; i < 4; i++)
		set_desc(&vq->desc[i], b, 16, VRING_DESC_F_WRITE | VRING_DESC_F_NEXT,
			 (uint16_t)(i + 1));
	set_desc(&vq->desc[4], tgpa, VQ_MAX_SIZE * 16u, VRING_DESC_F_INDIRECT, 0);
	publish(r, 0);
	kick_expect_broken(r);
}

/* ---- indirect tables ---- */

static void test_indirect_not_negotiated(void **state)
{
	struct rig *r = *state;
	uint64_t tgpa;
	struct vring_desc *t = table(r, 1, &tgpa);

	set_desc(&t[0], buf(r, 8), 8, VRING_DESC_F_WRITE, 0);
	set_desc(&vq0(r)->desc[0], tgpa, 16, VRING_DESC_F_INDIRECT, 0);
	publish(r, 0);
	kick_expect_broken(r);
}

static void test_indirect_nested(void **state)
{
	struct rig *r = *state;
	uint64_t inner, outer;
	struct vring_desc *ti = table(r, 1, &inner), *to = table(r, 1, &outer);

	set_desc(&ti[0], buf(r, 8), 8, VRING_DESC_F_WRITE, 0);
	set_desc(&to[0], inner, 16, VRING_DESC_F_INDIRECT, 0);
	set_desc(&vq0(r)->desc[0], outer, 16, VRING_DESC_F_INDIRECT, 0);
	publish(r, 0);
	kick_expect_broken(r);
}

static void indirect_with_len(struct rig *r, uint64_t tgpa, uint32_t len)
{
	set_desc(&vq0(r)->desc[0], tgpa, len, VRING_DESC_F_INDIRECT, 0);
	publish(r, 0);
	kick_expect_broken(r);
}

static void test_indirect_bad_length(void **state)
{
	struct rig *r = *state;
	uint64_t tgpa;
	struct vring_desc *t = table(r, 2, &tgpa);

	set_desc(&t[0], buf(r, 8), 8, VRING_DESC_F_WRITE, 0);
	indirect_with_len(r, tgpa, 0);
	indirect_with_len(r, tgpa, 8);
	indirect_with_len(r, tgpa, 24);
	indirect_with_len(r, tgpa, (VQ_MAX_SIZE + 1) * 16u);
	indirect_with_len(r, tgpa, 0xfffffff0u);
}

static void test_indirect_table_unmapped(void **state)
{
	struct rig *r = *state;

	indirect_with_len(r, HOLE_GPA, 16);
	indirect_with_len(r, HOLE_GPA - 16, 32);                /* half in the hole */
	indirect_with_len(r, RAM_GPA + RAM_SIZE - 16, 32);      /* half beyond RAM */
	indirect_with_len(r, UINT64_C(0xfffffffffffffff0), 32); /* wraps */
}

static void test_indirect_with_next(void **state)
{
	struct rig *r = *state;
	struct vdrv_vq *vq = vq0(r);
	uint64_t tgpa;
	struct vring_desc *t = table(r, 1, &tgpa);

	set_desc(&t[0], buf(r, 8), 8, VRING_DESC_F_WRITE, 0);
	set_desc(&vq->desc[0], tgpa, 16, VRING_DESC_F_INDIRECT | VRING_DESC_F_NEXT, 1);
	set_desc(&vq->desc[1], buf(r, 8), 8, VRING_DESC_F_WRITE, 0);
	publish(r, 0);
	kick_expect_broken(r);
}

static void test_indirect_next_out_of_table(void **state)
{
	struct rig *r = *state;
	uint64_t tgpa;
	struct vring_desc *t = table(r, 2, &tgpa);
	uint64_t b = buf(r, 8);

	/* Index 2 is inside the queue but outside this two-entry table. */
	set_desc(&t[0], b, 8, VRING_DESC_F_WRITE | VRING_DESC_F_NEXT, 2);
	set_desc(&t[1], b, 8, VRING_DESC_F_WRITE, 0);
	indirect_with_len(r, tgpa, 32);
	/* A loop inside the table. */
	t = table(r, 2, &tgpa);
	set_desc(&t[0], b, 8, VRING_DESC_F_WRITE | VRING_DESC_F_NEXT, 1);
	set_desc(&t[1], b, 8, VRING_DESC_F_WRITE | VRING_DESC_F_NEXT, 0);
	indirect_with_len(r, tgpa, 32);
}

/* An unaligned table is legal; so is an indirect descriptor at the end of a direct chain. */
static void test_indirect_unaligned_and_after_direct(void **state)
{
	struct rig *r = *state;
	struct vdrv_vq *vq = vq0(r);
	uint64_t tgpa = buf(r, 64) + 3;
	struct vring_desc t[2];

	set_desc(&t[0], buf(r, 8), 8, VRING_DESC_F_WRITE | VRING_DESC_F_NEXT, 1);
	set_desc(&t[1], buf(r, 8), 8, VRING_DESC_F_WRITE, 0);
	memcpy(vdrv_host(&r->x.mem, tgpa), t, sizeof(t));
	set_desc(&vq->desc[5], buf(r, 8), 8, VRING_DESC_F_WRITE | VRING_DESC_F_NEXT, 6);
	set_desc(&vq->desc[6], tgpa, 32, VRING_DESC_F_INDIRECT, 0);
	publish(r, 5);
	kick_expect_used(r, 5, 24);
}

/* ---- grant addresses ---- */

static uint64_t grant_dma(struct vdrv_mem *m, uint64_t gpa, uint64_t len, bool device_writes)
{
	struct rig *r = m->opaque;
	static uint32_t next_ref;
	uint64_t page = gpa & ~(uint64_t)0xfff;
	uint64_t pages = ((gpa & 0xfff) + len + 0xfff) >> 12;
	uint32_t ref0 = next_ref;

	/* Consecutive refs for consecutive pages; the read-only flag follows the direction. */
	if (next_ref + pages > GMEM_FLAT_GRANTS)
		ref0 = next_ref = 0;
	for (uint64_t i = 0; i < pages; i++)
		gmem_flat_grant(r->x.gm, next_ref++, page + i * 4096, !device_writes);
	return GMEM_GRANT_BIT | ((uint64_t)ref0 << 12) | (gpa & 0xfff);
}

static void test_grant_addresses(void **state)
{
	struct rig *r = *state;

	r->x.host.grant_mem = true;
	r->x.mem.dma_addr = grant_dma;
	r->x.mem.opaque = r;
	r->features |= VIRTIO_BIT(VIRTIO_F_ACCESS_PLATFORM);
	assert_int_equal(vdrv_init(&r->drv, &r->x.io, &r->x.mem, r->features, 1, QSIZE), 0);
	assert_true(r->drv.features & VIRTIO_BIT(VIRTIO_F_ACCESS_PLATFORM));
	assert_true(r->x.dev->vqs[0].desc_gpa & GMEM_GRANT_BIT);
	struct vdrv_buf b = { buf(r, 100), 100, true };

	assert_int_equal(vdrv_transfer(&r->drv, 0, &b, 1, false, 1000), 100);
	assert_int_equal(vdrv_transfer(&r->drv, 0, &b, 1, true, 1000), 100);
	/* A writable buffer behind a read-only grant is a bad chain. */
	struct vdrv_buf ro = { buf(r, 100), 100, false };
	int head = vdrv_submit(&r->drv, 0, &ro, 1, false, NULL);

	assert_true(head >= 0);
	vq0(r)->desc[head].flags |= VRING_DESC_F_WRITE;
	kick_expect_broken(r);
	/* A grant reference nobody granted. */
	gmem_flat_ungrant(r->x.gm, 63);
	struct vdrv_buf nog = { GMEM_GRANT_BIT | (63ull << 12), 16, true };

	r->x.mem.dma_addr = NULL;
	assert_true(vdrv_submit(&r->drv, 0, &nog, 1, false, NULL) >= 0);
	r->x.mem.dma_addr = grant_dma;
	kick_expect_broken(r);
}

/* ---- the virtqueue API directly ---- */

struct direct {
	struct gmem *gm;
	struct vdrv_mem mem;
	struct virtqueue vq;
	struct vring_desc *desc;
	struct vring_avail *avail;
	struct vring_used *used;
	uint64_t d, a, u;
};

static void direct_open(struct direct *t, uint16_t num, uint64_t features)
{
	memset(t, 0, sizeof(*t));
	t->gm = gmem_flat_new(RAM_GPA, 1u << 20);
	assert_non_null(t->gm);
	t->mem = (struct vdrv_mem){ .host = gmem_flat_host(t->gm, RAM_GPA), .gpa = RAM_GPA,
				    .size = 1u << 20 };
	t->d = vdrv_alloc(&t->mem, vring_desc_size(num), 16, (void **)&t->desc);
	t->a = vdrv_alloc(&t->mem, vring_avail_size(num), 2, (void **)&t->avail);
	t->u = vdrv_alloc(&t->mem, vring_used_size(num), 4, (void **)&t->used);
	assert_int_equal(vq_configure(&t->vq, t->gm, 0, num, 256, t->d, t->a, t->u, features), 0);
}

static void direct_close(struct direct *t)
{
	vq_reset(&t->vq);
	assert_int_equal(gmem_flat_outstanding(t->gm), 0);
	assert_int_equal(gmem_flat_bad_unmaps(t->gm), 0);
	gmem_destroy(t->gm);
}

static void direct_add(struct direct *t, uint16_t head, uint32_t len)
{
	set_desc(&t->desc[head], vdrv_alloc(&t->mem, len, 8, NULL), len, VRING_DESC_F_WRITE, 0);
	t->avail->ring[t->avail->idx % t->vq.num] = head;
	t->avail->idx++;
}

static void test_vq_configure_refusals(void **state)
{
	struct direct t;
	struct virtqueue vq = { 0 };

	(void)state;
	direct_open(&t, 8, 0);
	assert_int_equal(vq_configure(&vq, t.gm, 0, 0, 256, t.d, t.a, t.u, 0), -EINVAL);
	assert_int_equal(vq_configure(&vq, t.gm, 0, 6, 256, t.d, t.a, t.u, 0), -EINVAL);
	assert_int_equal(vq_configure(&vq, t.gm, 0, 16, 8, t.d, t.a, t.u, 0), -EINVAL);
	assert_int_equal(vq_configure(&vq, t.gm, 0, 8, 2048, t.d, t.a, t.u, 0), -EINVAL);
	assert_int_equal(vq_configure(&vq, NULL, 0, 8, 256, t.d, t.a, t.u, 0), -EINVAL);
	assert_false(vq.enabled);
	assert_int_equal(gmem_flat_outstanding(t.gm), 3);     /* t.vq's rings only */
	vq_reset(&vq);
	direct_close(&t);
}

static void test_vq_push_after_reset_dropped(void **state)
{
	struct direct t;
	int err;

	(void)state;
	direct_open(&t, 8, 0);
	direct_add(&t, 2, 16);
	direct_add(&t, 3, 16);
	struct vq_elem *e = vq_pop(&t.vq, &err), *f = vq_pop(&t.vq, &err);

	assert_non_null(e);
	assert_non_null(f);
	assert_int_equal(e->head, 2);
	assert_int_equal(e->n_in, 1);
	assert_int_equal(e->in_len, 16);
	assert_int_equal(t.vq.inflight, 2);
	vq_push(e, 1000);                                    /* clamped to in_len */
	assert_int_equal(t.used->idx, 1);
	assert_int_equal(t.used->ring[0].id, 2);
	assert_int_equal(t.used->ring[0].len, 16);
	vq_reset(&t.vq);
	vq_push(f, 16);                                      /* stale generation: dropped */
	assert_int_equal(t.used->idx, 1);
	assert_int_equal(gmem_flat_outstanding(t.gm), 0);
	direct_close(&t);
}

/*
 * Returned elements are kept for the next pops (no allocation per chain), never more than the
 * queue holds, never a long chain's, and none across a reset.
 */
static void test_vq_spare_bounded(void **state)
{
	struct direct t;
	struct vq_elem *e[8], *big;
	int err;

	(void)state;
	direct_open(&t, 16, 0);
	for (int round = 0; round < 3; round++) {
		for (uint16_t i = 0; i < 8; i++)
			direct_add(&t, i, 16);
		for (int i = 0; i < 8; i++) {
			e[i] = vq_pop(&t.vq, &err);
			assert_non_null(e[i]);
		}
		assert_int_equal(t.vq.nspare, 0);
		for (int i = 0; i < 8; i++)
			vq_push(e[i], 0);
		assert_int_equal(t.vq.nspare, 8);
	}
	/* A chain longer than VQ_ELEM_IOV buffers gets an element of its own size, then freed. */
	for (uint16_t i = 0; i <= VQ_ELEM_IOV; i++)
		set_desc(&t.desc[i], vdrv_alloc(&t.mem, 16, 8, NULL), 16,
			 VRING_DESC_F_WRITE | (i < VQ_ELEM_IOV ? VRING_DESC_F_NEXT : 0),
			 (uint16_t)(i + 1));
	t.avail->ring[t.avail->idx % t.vq.num] = 0;
	t.avail->idx++;
	big = vq_pop(&t.vq, &err);
	assert_non_null(big);
	assert_int_equal(big->n_in, VQ_ELEM_IOV + 1);
	assert_int_equal(t.vq.nspare, 8);
	vq_push(big, 0);
	assert_int_equal(t.vq.nspare, 8);
	/* A reset frees the spares; an element of the old generation is not kept. */
	direct_add(&t, 3, 16);
	e[0] = vq_pop(&t.vq, &err);
	assert_non_null(e[0]);
	vq_reset(&t.vq);
	assert_int_equal(t.vq.nspare, 0);
	assert_null(t.vq.spare);
	vq_push(e[0], 0);
	assert_int_equal(t.vq.nspare, 0);
	direct_close(&t);
}

/* A group goes out with one index update; a stale element in the group is left out. */
static void test_vq_push_many(void **state)
{
	struct direct t;
	struct vq_elem *e[4];
	uint32_t written[4] = { 1, 2, 100, 4 };
	int err;

	(void)state;
	direct_open(&t, 8, 0);
	for (uint16_t i = 0; i < 4; i++)
		direct_add(&t, (uint16_t)(7 - i), 16);
	for (int i = 0; i < 4; i++) {
		e[i] = vq_pop(&t.vq, &err);
		assert_non_null(e[i]);
	}
	vq_push_many(e, written, 3);
	assert_int_equal(t.used->idx, 3);
	for (int i = 0; i < 3; i++) {
		assert_int_equal(t.used->ring[i].id, 7 - i);
		assert_int_equal(t.used->ring[i].len, i == 2 ? 16 : written[i]);
	}
	vq_push_many(e, written, 0);                     /* nothing: harmless */
	assert_int_equal(t.vq.inflight, 1);
	vq_reset(&t.vq);
	vq_push_many(&e[3], &written[3], 1);             /* after a reset: only unmapped */
	assert_int_equal(t.used->idx, 3);
	assert_int_equal(gmem_flat_outstanding(t.gm), 0);
	direct_close(&t);
}

/*
 * A restart: the next instance adopts the queue from its record and is given the heads still in
 * flight in the order the driver made them available (the messages of one i2c transfer depend
 * on it), not by index; one the previous instance returned is not given again.
 */
static void test_vq_adopt_replays_in_avail_order(void **state)
{
	struct vq_state rec = { 0 };
	struct virtqueue next = { 0 };
	struct vq_elem *e[3];
	struct direct t;
	int err;

	(void)state;
	direct_open(&t, 8, 0);
	vq_reset(&t.vq);
	t.vq.rec = &rec;
	assert_int_equal(vq_configure(&t.vq, t.gm, 0, 8, 256, t.d, t.a, t.u, 0), 0);
	direct_add(&t, 5, 16);
	direct_add(&t, 2, 16);
	direct_add(&t, 7, 16);
	for (int i = 0; i < 3; i++)
		assert_non_null(e[i] = vq_pop(&t.vq, &err));
	vq_push(e[2], 16);
	/* The process stops: its record stays as it is; what it held it lets go of. */
	t.vq.rec = NULL;
	vq_drop(e[0]);
	vq_drop(e[1]);
	next.rec = &rec;
	assert_int_equal(vq_adopt(&next, t.gm, 0, 256, 0, true), 2);
	assert_non_null(e[0] = vq_pop(&next, &err));
	assert_non_null(e[1] = vq_pop(&next, &err));
	assert_null(vq_pop(&next, &err));
	assert_int_equal(err, 0);
	assert_int_equal(e[0]->head, 5);
	assert_int_equal(e[1]->head, 2);
	vq_push(e[0], 16);
	vq_push(e[1], 16);
	assert_int_equal(t.used->idx, 3);
	assert_int_equal(t.used->ring[1].id, 5);
	assert_int_equal(t.used->ring[2].id, 2);
	assert_int_equal(next.inflight, 0);
	vq_reset(&next);
	direct_close(&t);
}

static void test_vq_drop(void **state)
{
	struct direct t;
	int err;

	(void)state;
	direct_open(&t, 8, 0);
	direct_add(&t, 0, 16);
	struct vq_elem *e = vq_pop(&t.vq, &err);

	assert_non_null(e);
	assert_int_equal(gmem_flat_outstanding(t.gm), 4);
	vq_drop(e);
	assert_int_equal(t.vq.inflight, 0);
	assert_int_equal(t.used->idx, 0);
	assert_int_equal(gmem_flat_outstanding(t.gm), 3);
	assert_null(vq_pop(&t.vq, &err));
	assert_int_equal(err, 0);
	direct_close(&t);
}

/*
 * A head the device holds, published again: a correct driver never does it (the chain is the
 * device's until used), so the ring is broken. Without this check every republication made a new
 * element: chains held per queue are bounded by num only through it.
 */
static void test_vq_head_published_twice(void **state)
{
	struct direct t;
	struct vq_elem *e, *f;
	int err;

	(void)state;
	direct_open(&t, 8, 0);
	direct_add(&t, 3, 16);
	e = vq_pop(&t.vq, &err);
	assert_non_null(e);
	assert_true(vq_head_inflight(&t.vq, 3));
	assert_false(vq_head_inflight(&t.vq, 2));
	/* Pushed, the head is free again and may come back. */
	vq_push(e, 0);
	assert_false(vq_head_inflight(&t.vq, 3));
	t.avail->ring[t.avail->idx % 8] = 3;
	t.avail->idx++;
	e = vq_pop(&t.vq, &err);
	assert_non_null(e);
	/* Published again while held: broken, no second element. */
	t.avail->ring[t.avail->idx % 8] = 3;
	t.avail->idx++;
	f = vq_pop(&t.vq, &err);
	assert_null(f);
	assert_int_equal(err, -EPROTO);
	assert_true(t.vq.broken);
	assert_int_equal(t.vq.inflight, 1);
	/* A drop frees the head as a push does; a reset forgets every head. */
	vq_drop(e);
	assert_false(vq_head_inflight(&t.vq, 3));
	vq_reset(&t.vq);
	assert_int_equal(gmem_flat_outstanding(t.gm), 0);
	direct_close(&t);
}

/* Every head of the ring in flight at once is fine; the map follows pushes in any order. */
static void test_vq_all_heads_in_flight(void **state)
{
	struct direct t;
	struct vq_elem *e[8];
	int err;

	(void)state;
	direct_open(&t, 8, 0);
	for (uint16_t i = 0; i < 8; i++)
		direct_add(&t, (uint16_t)((i * 5) % 8), 16);
	for (int i = 0; i < 8; i++) {
		e[i] = vq_pop(&t.vq, &err);
		assert_non_null(e[i]);
	}
	assert_int_equal(t.vq.inflight, 8);
	for (uint16_t h = 0; h < 8; h++)
		assert_true(vq_head_inflight(&t.vq, h));
	uint16_t head[8];

	for (int i = 0; i < 8; i++)
		head[i] = e[i]->head;
	for (int i = 7; i >= 0; i -= 2)
		vq_push(e[i], 1);                /* frees e[i] */
	for (int i = 0; i < 8; i++)
		assert_int_equal(vq_head_inflight(&t.vq, head[i]), i % 2 == 0);
	for (int i = 0; i < 8; i += 2)
		vq_push(e[i], 1);
	assert_int_equal(t.vq.inflight, 0);
	assert_int_equal(t.vq.inflight_map[0], 0);
	direct_close(&t);
}

/* used_event on either side of a 16-bit wrap. */
static void test_vq_event_idx_wrap_math(void **state)
{
	struct direct t;
	int err;

	(void)state;
	direct_open(&t, 8, F_EVT);
	/* Move both indexes to just before the wrap. */
	t.vq.last_avail = 0xfffe;
	t.vq.used_idx = 0xfffe;
	t.used->idx = 0xfffe;
	t.avail->idx = 0xfffe;
	t.vq.signalled_used = 0xfffe;
	t.vq.signalled_valid = true;
	vring_used_event(t.avail, 8) = 0xffff;   /* interrupt when used passes 0xffff */
	for (int i = 0; i < 4; i++) {
		uint16_t head = (uint16_t)i;

		direct_add(&t, head, 8);
		struct vq_elem *e = vq_pop(&t.vq, &err);

		assert_non_null(e);
		vq_push(e, 8);
		/* used goes 0xffff, 0x0000, 0x0001, 0x0002: only the step 0xffff->0 crosses. */
		assert_int_equal(vq_should_notify(&t.vq), i == 1);
	}
	/* A batch crossing the event in the middle notifies once. */
	vring_used_event(t.avail, 8) = 3;
	for (int i = 0; i < 3; i++) {
		direct_add(&t, (uint16_t)(4 + i), 8);
		vq_push(vq_pop(&t.vq, &err), 8);
	}
	assert_true(vq_should_notify(&t.vq));
	assert_false(vq_should_notify(&t.vq));   /* nothing new since */
	direct_close(&t);
}

static void test_vq_notify_suppression_towards_driver(void **state)
{
	struct direct t;
	int err;

	(void)state;
	direct_open(&t, 8, 0);
	vq_disable_notify(&t.vq);
	assert_int_equal(t.used->flags, VRING_USED_F_NO_NOTIFY);
	assert_false(vq_enable_notify(&t.vq));
	assert_int_equal(t.used->flags, 0);
	direct_add(&t, 1, 8);
	assert_true(vq_enable_notify(&t.vq));      /* work arrived while disabled */
	vq_drop(vq_pop(&t.vq, &err));
	direct_close(&t);
	/* With EVENT_IDX, an empty pop asks for a kick at the next chain. */
	direct_open(&t, 8, F_EVT);
	direct_add(&t, 1, 8);
	vq_push(vq_pop(&t.vq, &err), 0);
	assert_null(vq_pop(&t.vq, &err));
	assert_int_equal(vring_avail_event(t.used, 8), 1);
	direct_close(&t);
}

static void test_iov_helpers_on_element(void **state)
{
	struct direct t;
	int err;
	uint8_t data[40], back[40];

	(void)state;
	direct_open(&t, 8, F_IND);
	set_desc(&t.desc[0], vdrv_alloc(&t.mem, 10, 1, NULL), 10, VRING_DESC_F_WRITE |
		 VRING_DESC_F_NEXT, 1);
	set_desc(&t.desc[1], vdrv_alloc(&t.mem, 30, 1, NULL), 30, VRING_DESC_F_WRITE, 0);
	t.avail->ring[0] = 0;
	t.avail->idx = 1;
	struct vq_elem *e = vq_pop(&t.vq, &err);

	assert_non_null(e);
	for (int i = 0; i < 40; i++)
		data[i] = (uint8_t)i;
	assert_int_equal(iov_from_buf(e->iov, e->n_in, 0, data, 40), 40);
	assert_int_equal(iov_to_buf(e->iov, e->n_in, 5, back, 40), 35);
	assert_memory_equal(back, data + 5, 35);
	vq_push(e, 40);
	assert_int_equal(t.used->ring[0].len, 40);
	direct_close(&t);
}

int main(void)
{
#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)
	const struct CMUnitTest tests[] = {
		T(test_avail_idx_too_far_ahead),
		T(test_avail_idx_full_ring_ok),
		T(test_head_out_of_range),
		T(test_next_out_of_range),
		T(test_chain_loop),
		T(test_chain_loop_zero_length),
		T(test_chain_of_queue_size_ok),
		T(test_readable_after_writable),
		T(test_readable_after_writable_indirect),
		T(test_zero_length_descriptor_ok),
		T(test_descriptor_read_once),
		T(test_buffer_address_wraps),
		T(test_buffer_in_hole),
		T(test_buffer_beyond_ram),
		T(test_writable_buffer_read_only_memory),
		T(test_total_length_over_32_bits),
		T(test_more_buffers_than_iovec),
		cmocka_unit_test_setup_teardown(test_indirect_not_negotiated, setup_no_indirect,
						teardown),
		T(test_indirect_nested),
		T(test_indirect_bad_length),
		T(test_indirect_table_unmapped),
		T(test_indirect_with_next),
		T(test_indirect_next_out_of_table),
		T(test_indirect_unaligned_and_after_direct),
		T(test_grant_addresses),
		cmocka_unit_test(test_vq_configure_refusals),
		cmocka_unit_test(test_vq_push_after_reset_dropped),
		cmocka_unit_test(test_vq_push_many),
		cmocka_unit_test(test_vq_spare_bounded),
		cmocka_unit_test(test_vq_drop),
		cmocka_unit_test(test_vq_adopt_replays_in_avail_order),
		cmocka_unit_test(test_vq_head_published_twice),
		cmocka_unit_test(test_vq_all_heads_in_flight),
		cmocka_unit_test(test_vq_event_idx_wrap_math),
		cmocka_unit_test(test_vq_notify_suppression_towards_driver),
		cmocka_unit_test(test_iov_helpers_on_element),
	};

	log_init(LOG_ERR, false);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
