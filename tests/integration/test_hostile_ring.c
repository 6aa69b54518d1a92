/*
 * Hostile guest, part 1: broken rings. Each test writes one malformed chain or ring into the
 * rng's (or block's) queue of a three-device guest served by the real sim daemon, kicks, and
 * expects NEEDS_RESET with the config interrupt and no used element, or a queue refused at
 * QueueReady; then hostile_after() checks the daemon, the other devices, the canaries and the
 * image, and that the device works again after a reset. See test_hostile.h.
 */
#include "tests/integration/test_hostile.h"

#define F_NEXT  VRING_DESC_F_NEXT
#define F_WRITE VRING_DESC_F_WRITE
#define F_IND   VRING_DESC_F_INDIRECT

/* A device-writable buffer of len bytes: the address the device gets for it. */
static uint64_t wbuf(struct hostile *h, uint32_t len)
{
	return hostile_dma(h, hostile_buf(h, len, NULL), len, true);
}

/* An indirect table of n entries in guest RAM: its host view, *addr the device address. */
static struct vring_desc *table(struct hostile *h, unsigned n, uint64_t *addr)
{
	uint8_t *p;
	uint64_t gpa = hostile_buf(h, 16 * n, &p);

	*addr = hostile_dma(h, gpa, 16 * n, false);
	return (struct vring_desc *)(void *)p;
}

static void tdesc(struct vring_desc *t, unsigned i, uint64_t addr, uint32_t len, uint16_t flags,
		  uint16_t next)
{
	t[i] = (struct vring_desc){ htole64(addr), htole32(len), htole16(flags), htole16(next) };
}

/* One direct descriptor at slot 0 holding (addr, len, flags), published and kicked. */
static void one_desc(struct hostile *h, uint64_t addr, uint32_t len, uint16_t flags)
{
	hostile_desc(h, D_RNG, 0, addr, len, flags, 0);
	hostile_expect_broken(h, D_RNG, 0);
	hostile_after(h, D_RNG);
}

/* ---- descriptor loops ---- */

static void test_loop_self(void **state)
{
	struct hostile *h = *state;

	hostile_desc(h, D_RNG, 0, wbuf(h, 64), 64, F_WRITE | F_NEXT, 0);
	hostile_expect_broken(h, D_RNG, 0);
	hostile_after(h, D_RNG);
}

static void test_loop_two(void **state)
{
	struct hostile *h = *state;

	hostile_desc(h, D_RNG, 0, wbuf(h, 64), 64, F_WRITE | F_NEXT, 1);
	hostile_desc(h, D_RNG, 1, wbuf(h, 64), 64, F_WRITE | F_NEXT, 0);
	hostile_expect_broken(h, D_RNG, 0);
	hostile_after(h, D_RNG);
}

static void test_loop_long(void **state)
{
	struct hostile *h = *state;
	uint64_t b = wbuf(h, 16);

	/* Every slot of the ring, the last one pointing back to the first. */
	for (uint16_t i = 0; i < H_QSIZE; i++)
		hostile_desc(h, D_RNG, i, b, 16, F_WRITE | F_NEXT, (uint16_t)((i + 1) % H_QSIZE));
	hostile_expect_broken(h, D_RNG, 0);
	hostile_after(h, D_RNG);
}

static void test_loop_in_indirect(void **state)
{
	struct hostile *h = *state;
	uint64_t ta;
	struct vring_desc *t = table(h, 4, &ta);

	for (unsigned i = 0; i < 4; i++)
		tdesc(t, i, wbuf(h, 16), 16, F_WRITE | F_NEXT, (uint16_t)((i + 1) % 4));
	one_desc(h, ta, 64, F_IND);
}

/* ---- indirect tables ---- */

static void test_indirect_in_indirect(void **state)
{
	struct hostile *h = *state;
	uint64_t ta, tb;
	struct vring_desc *t = table(h, 2, &ta), *u = table(h, 1, &tb);

	tdesc(u, 0, wbuf(h, 64), 64, F_WRITE, 0);
	tdesc(t, 0, tb, 16, F_IND, 0);
	tdesc(t, 1, wbuf(h, 64), 64, F_WRITE, 0);
	one_desc(h, ta, 32, F_IND);
}

static void test_indirect_not_negotiated(void **state)
{
	struct hostile *h = *state;
	uint64_t ta;
	struct vring_desc *t;

	assert_int_equal(hostile_init_want(h, D_RNG,
					   H_RING & ~VIRTIO_BIT(VIRTIO_F_INDIRECT_DESC)), 0);
	t = table(h, 1, &ta);
	tdesc(t, 0, wbuf(h, 64), 64, F_WRITE, 0);
	one_desc(h, ta, 16, F_IND);
}

static void test_indirect_len_zero(void **state)
{
	struct hostile *h = *state;
	uint64_t ta;

	tdesc(table(h, 1, &ta), 0, wbuf(h, 64), 64, F_WRITE, 0);
	one_desc(h, ta, 0, F_IND);
}

static void test_indirect_len_not_16(void **state)
{
	struct hostile *h = *state;
	uint64_t ta;
	struct vring_desc *t = table(h, 2, &ta);

	tdesc(t, 0, wbuf(h, 64), 64, F_WRITE, 0);
	one_desc(h, ta, 24, F_IND);
}

static void test_indirect_len_huge(void **state)
{
	struct hostile *h = *state;
	uint64_t ta;

	tdesc(table(h, 1, &ta), 0, wbuf(h, 64), 64, F_WRITE, 0);
	one_desc(h, ta, 0xfffffff0u, F_IND);
}

static void test_indirect_more_than_max(void **state)
{
	struct hostile *h = *state;
	uint64_t ta;
	struct vring_desc *t = table(h, 1025, &ta);

	/* 1025 entries: one more than any queue holds, so more than the chain bound. */
	for (unsigned i = 0; i < 1025; i++)
		tdesc(t, i, wbuf(h, 1), 1, F_WRITE | F_NEXT, (uint16_t)(i + 1));
	tdesc(t, 1024, wbuf(h, 1), 1, F_WRITE, 0);
	one_desc(h, ta, 1025 * 16, F_IND);
}

static void test_indirect_with_next(void **state)
{
	struct hostile *h = *state;
	uint64_t ta;

	tdesc(table(h, 1, &ta), 0, wbuf(h, 64), 64, F_WRITE, 0);
	hostile_desc(h, D_RNG, 1, wbuf(h, 64), 64, F_WRITE, 0);
	hostile_desc(h, D_RNG, 0, ta, 16, F_IND | F_NEXT, 1);
	hostile_expect_broken(h, D_RNG, 0);
	hostile_after(h, D_RNG);
}

static void test_indirect_table_in_hole(void **state)
{
	one_desc(*state, H_HOLE, 64, F_IND);
}

static void test_indirect_next_out_of_table(void **state)
{
	struct hostile *h = *state;
	uint64_t ta;
	struct vring_desc *t = table(h, 2, &ta);

	tdesc(t, 0, wbuf(h, 64), 64, F_WRITE | F_NEXT, 2);   /* the table has 2 entries */
	tdesc(t, 1, wbuf(h, 64), 64, F_WRITE, 0);
	one_desc(h, ta, 32, F_IND);
}

/* ---- buffer addresses and lengths ---- */

static void test_buf_in_hole(void **state)
{
	one_desc(*state, H_HOLE, 64, F_WRITE);
}

static void test_buf_beyond_ram(void **state)
{
	one_desc(*state, H_BEYOND, 64, F_WRITE);
}

static void test_buf_straddles_ram_end(void **state)
{
	/* The last 32 bytes of bank 0 and 32 bytes of the hole after it. */
	one_desc(*state, UINT64_C(0x40000000) + ((uint64_t)H_RAM_MIB << 20) - 32, 64, F_WRITE);
}

static void test_buf_wraps(void **state)
{
	one_desc(*state, UINT64_C(0xfffffffffffff000), 0x2000, F_WRITE);
}

static void test_buf_len_ffffffff(void **state)
{
	struct hostile *h = *state;

	one_desc(h, wbuf(h, 64), 0xffffffffu, F_WRITE);
}

static void test_readable_after_writable(void **state)
{
	struct hostile *h = *state;

	hostile_desc(h, D_RNG, 0, wbuf(h, 64), 64, F_WRITE | F_NEXT, 1);
	hostile_desc(h, D_RNG, 1, wbuf(h, 64), 64, 0, 0);
	hostile_expect_broken(h, D_RNG, 0);
	hostile_after(h, D_RNG);
}

/* ---- ring indexes ---- */

static void avail_jump(struct hostile *h, uint16_t delta)
{
	struct vdrv_vq *vq = hostile_vq(h, D_RNG);

	hostile_desc(h, D_RNG, 0, wbuf(h, 64), 64, F_WRITE, 0);
	vq->avail->ring[0] = 0;
	vq->avail_idx = (uint16_t)(vq->avail_idx + delta);
	__atomic_store_n(&vq->avail->idx, htole16(vq->avail_idx), __ATOMIC_RELEASE);
	hostile_kick(h, D_RNG);
	assert_true(hostile_wait_needs_reset(h, D_RNG));
	assert_int_equal(vq->used->idx, 0);
	hostile_after(h, D_RNG);
}

static void test_avail_jump_num_plus_1(void **state)
{
	avail_jump(*state, H_QSIZE + 1);
}

static void test_avail_minus_1(void **state)
{
	avail_jump(*state, 0xffff);
}

static void test_avail_jump_0x8000(void **state)
{
	avail_jump(*state, 0x8000);
}

static void test_head_ge_num(void **state)
{
	struct hostile *h = *state;

	hostile_expect_broken(h, D_RNG, H_QSIZE);
	hostile_after(h, D_RNG);
}

static void test_head_0xffff(void **state)
{
	struct hostile *h = *state;

	hostile_expect_broken(h, D_RNG, 0xffff);
	hostile_after(h, D_RNG);
}

static void test_next_ge_num(void **state)
{
	struct hostile *h = *state;

	hostile_desc(h, D_RNG, 0, wbuf(h, 64), 64, F_WRITE | F_NEXT, H_QSIZE);
	hostile_expect_broken(h, D_RNG, 0);
	hostile_after(h, D_RNG);
}

/* A block write whose chain loops: NEEDS_RESET, the image untouched. */
static void test_blk_write_loop(void **state)
{
	struct hostile *h = *state;
	uint8_t *hdr;
	uint64_t hg = hostile_buf(h, 16, &hdr);
	struct virtio_blk_outhdr o = { htole32(VIRTIO_BLK_T_OUT), 0, htole64(1) };

	memcpy(hdr, &o, 16);
	/* A write of sector 1 whose data descriptor loops back to the header. */
	hostile_desc(h, D_BLK, 0, hostile_dma(h, hg, 16, false), 16, F_NEXT, 1);
	hostile_desc(h, D_BLK, 1, wbuf(h, 512), 512, F_NEXT, 0);
	hostile_expect_broken(h, D_BLK, 0);
	hostile_after(h, D_BLK);
}

/* ---- ring placement at QueueReady ---- */

/* Bring device d to FEATURES_OK by hand and try queue 0 at the given ring addresses. */
static uint32_t try_queue(struct hostile *h, unsigned d, uint64_t desc, uint64_t avail,
			  uint64_t used)
{
	struct vdrv *v = &h->drv[d];
	uint64_t f = h->drv[d].features;

	vdrv_reset(v);
	vdrv_write32(v, 0x070, 1);
	vdrv_write32(v, 0x070, 3);
	vdrv_write32(v, R_DRV_FEATURES_SEL, 1);
	vdrv_write32(v, R_DRV_FEATURES, (uint32_t)(f >> 32));
	vdrv_write32(v, R_DRV_FEATURES_SEL, 0);
	vdrv_write32(v, R_DRV_FEATURES, (uint32_t)f);
	vdrv_write32(v, 0x070, 0xb);
	assert_int_equal(hostile_status(h, d), 0xb);
	vdrv_write32(v, R_QUEUE_SEL, 0);
	vdrv_write32(v, R_QUEUE_NUM, H_QSIZE);
	vdrv_write32(v, R_DESC_LO, (uint32_t)desc);
	vdrv_write32(v, R_DESC_HI, (uint32_t)(desc >> 32));
	vdrv_write32(v, R_AVAIL_LO, (uint32_t)avail);
	vdrv_write32(v, R_AVAIL_LO + 4, (uint32_t)(avail >> 32));
	vdrv_write32(v, R_USED_LO, (uint32_t)used);
	vdrv_write32(v, R_USED_LO + 4, (uint32_t)(used >> 32));
	vdrv_write32(v, R_QUEUE_READY, 1);
	return vdrv_read32(v, R_QUEUE_READY);
}

/* A refused queue: not ready, DRIVER_OK still possible, kicks for it ignored. */
static void expect_refused(struct hostile *h, uint64_t desc, uint64_t avail, uint64_t used)
{
	assert_int_equal(try_queue(h, D_RNG, desc, avail, used), 0);
	vdrv_write32(&h->drv[D_RNG], 0x070, 0xf);
	hostile_kick(h, D_RNG);
	assert_int_equal(hostile_status(h, D_RNG), 0xf);
	hostile_after(h, D_RNG);
}

static void test_ring_unaligned(void **state)
{
	struct hostile *h = *state;
	struct vdrv_vq *vq = hostile_vq(h, D_RNG);
	uint64_t d = hostile_dma(h, vq->desc_gpa, 1024, false);
	uint64_t a = hostile_dma(h, vq->avail_gpa, 134, false);
	uint64_t u = hostile_dma(h, vq->used_gpa, 518, true);

	/* The same rings that work, each in turn off its required alignment. */
	assert_int_equal(try_queue(h, D_RNG, d + 8, a, u), 0);
	assert_int_equal(try_queue(h, D_RNG, d, a + 1, u), 0);
	assert_int_equal(try_queue(h, D_RNG, d, a, u + 2), 0);
	expect_refused(h, d, a, u + 2);
}

static void test_ring_in_hole(void **state)
{
	struct hostile *h = *state;
	struct vdrv_vq *vq = hostile_vq(h, D_RNG);
	uint64_t d = hostile_dma(h, vq->desc_gpa, 1024, false);
	uint64_t a = hostile_dma(h, vq->avail_gpa, 134, false);
	uint64_t u = hostile_dma(h, vq->used_gpa, 518, true);

	assert_int_equal(try_queue(h, D_RNG, H_HOLE, a, u), 0);
	assert_int_equal(try_queue(h, D_RNG, d, H_BEYOND, u), 0);
	expect_refused(h, d, a, H_HOLE);
}

static void test_ring_straddles_ram_end(void **state)
{
	struct hostile *h = *state;
	struct vdrv_vq *vq = hostile_vq(h, D_RNG);
	uint64_t end = UINT64_C(0x40000000) + ((uint64_t)H_RAM_MIB << 20);

	/* 64 descriptors need 1 KiB: start 512 bytes before the end of bank 0. */
	expect_refused(h, end - 512, hostile_dma(h, vq->avail_gpa, 134, false),
		       hostile_dma(h, vq->used_gpa, 518, true));
}

/* ---- aliasing: rings and buffers on top of each other ---- */

/*
 * The rng's writable buffer covers its own avail ring: the device's output overwrites the ring
 * it reads (avail->idx included). Whatever that makes of the queue, nothing escapes it.
 */
static void test_buffer_over_own_avail_ring(void **state)
{
	struct hostile *h = *state;
	struct vdrv_vq *vq = hostile_vq(h, D_RNG);
	uint64_t a = hostile_dma(h, vq->avail_gpa, (uint32_t)vring_avail_size(vq->num), true);

	hostile_desc(h, D_RNG, 0, a, (uint32_t)vring_avail_size(vq->num), F_WRITE, 0);
	hostile_publish(h, D_RNG, 0);
	hostile_kick(h, D_RNG);
	hostile_sleep_ms(50);
	hostile_kick(h, D_RNG);
	uint32_t st = hostile_status(h, D_RNG);

	assert_true(st == 0xf || st == (0xf | ST_NEEDS_RESET));
	hostile_after(h, D_RNG);
}

/* A writable buffer over the descriptor table and the used ring: the next chains are noise. */
static void test_buffer_over_desc_and_used(void **state)
{
	struct hostile *h = *state;
	struct vdrv_vq *vq = hostile_vq(h, D_RNG);
	uint32_t dlen = (uint32_t)vring_desc_size(vq->num);
	uint32_t ulen = (uint32_t)vring_used_size(vq->num);

	hostile_desc(h, D_RNG, 0, hostile_dma(h, vq->desc_gpa, dlen, true), dlen,
		     F_WRITE | F_NEXT, 1);
	hostile_desc(h, D_RNG, 1, hostile_dma(h, vq->used_gpa, ulen, true), ulen, F_WRITE, 0);
	for (unsigned i = 0; i < 8; i++) {
		hostile_publish(h, D_RNG, (uint16_t)(i % 2 ? 1 : 0));
		hostile_kick(h, D_RNG);
	}
	hostile_sleep_ms(50);
	uint32_t st = hostile_status(h, D_RNG);

	assert_true(st == 0xf || st == (0xf | ST_NEEDS_RESET));
	hostile_after(h, D_RNG);
}

/* All three rings at one address (each alignment allows it): used entries land on descriptors. */
static void test_rings_overlap(void **state)
{
	struct hostile *h = *state;
	struct vdrv_vq *vq = hostile_vq(h, D_RNG);
	uint64_t d = hostile_dma(h, vq->desc_gpa, 1024, false);
	uint64_t u = hostile_dma(h, vq->desc_gpa, 1024, true);
	uint64_t b = wbuf(h, 64);

	assert_int_equal(try_queue(h, D_RNG, d, d, u), 1);
	vdrv_write32(&h->drv[D_RNG], 0x070, 0xf);
	/* desc[0] holds a buffer; avail (flags, idx, ring[0]) is desc[0]'s addr field. */
	for (unsigned i = 0; i < 16; i++) {
		hostile_desc(h, D_RNG, 0, b, 64, F_WRITE, 0);
		hostile_kick(h, D_RNG);
	}
	hostile_sleep_ms(50);
	uint32_t st = hostile_status(h, D_RNG);

	assert_true(st == 0xf || st == (0xf | ST_NEEDS_RESET));
	hostile_after(h, D_RNG);
}

/* ---- grants ---- */

static void test_grant_used_ring_read_only(void **state)
{
	struct hostile *h = *state;
	struct vdrv_vq *vq = hostile_vq(h, D_RNG);

	assert_true(h->grants);
	/* The used ring granted read-only: the device could not write it. */
	expect_refused(h, hostile_dma(h, vq->desc_gpa, 1024, false),
		       hostile_dma(h, vq->avail_gpa, 134, false),
		       hostile_dma(h, vq->used_gpa, 518, false));
}

static void test_grant_ref_beyond_table(void **state)
{
	struct hostile *h = *state;

	assert_true(h->grants);
	one_desc(h, GMEM_GRANT_BIT | ((uint64_t)0xfffffff << 12), 64, F_WRITE);
}

static void test_grant_ref_not_granted(void **state)
{
	struct hostile *h = *state;

	/* Ref 3 is reserved and never granted; bit 63 without a real grant behind it. */
	one_desc(h, GMEM_GRANT_BIT | (UINT64_C(3) << 12), 64, F_WRITE);
}

static void test_grant_write_to_read_only(void **state)
{
	struct hostile *h = *state;
	uint64_t gpa = hostile_buf(h, 64, NULL);

	/* Marked device-writable, but the grant behind it is read-only. */
	one_desc(h, hostile_dma(h, gpa, 64, false), 64, F_WRITE);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		HOSTILE_TEST(test_loop_self),
		HOSTILE_TEST(test_loop_two),
		HOSTILE_TEST(test_loop_long),
		HOSTILE_TEST(test_loop_in_indirect),
		HOSTILE_TEST(test_indirect_in_indirect),
		HOSTILE_TEST(test_indirect_not_negotiated),
		HOSTILE_TEST(test_indirect_len_zero),
		HOSTILE_TEST(test_indirect_len_not_16),
		HOSTILE_TEST(test_indirect_len_huge),
		HOSTILE_TEST(test_indirect_more_than_max),
		HOSTILE_TEST(test_indirect_with_next),
		HOSTILE_TEST(test_indirect_table_in_hole),
		HOSTILE_TEST(test_indirect_next_out_of_table),
		HOSTILE_TEST(test_buf_in_hole),
		HOSTILE_TEST(test_buf_beyond_ram),
		HOSTILE_TEST(test_buf_straddles_ram_end),
		HOSTILE_TEST(test_buf_wraps),
		HOSTILE_TEST(test_buf_len_ffffffff),
		HOSTILE_TEST(test_readable_after_writable),
		HOSTILE_TEST(test_avail_jump_num_plus_1),
		HOSTILE_TEST(test_avail_minus_1),
		HOSTILE_TEST(test_avail_jump_0x8000),
		HOSTILE_TEST(test_head_ge_num),
		HOSTILE_TEST(test_head_0xffff),
		HOSTILE_TEST(test_next_ge_num),
		HOSTILE_TEST(test_blk_write_loop),
		HOSTILE_TEST(test_ring_unaligned),
		HOSTILE_TEST(test_ring_in_hole),
		HOSTILE_TEST(test_ring_straddles_ram_end),
		HOSTILE_TEST(test_buffer_over_own_avail_ring),
		HOSTILE_TEST(test_buffer_over_desc_and_used),
		HOSTILE_TEST(test_rings_overlap),
		HOSTILE_TEST_GRANTS(test_grant_used_ring_read_only),
		HOSTILE_TEST_GRANTS(test_grant_ref_beyond_table),
		HOSTILE_TEST_GRANTS(test_grant_ref_not_granted),
		HOSTILE_TEST_GRANTS(test_grant_write_to_read_only),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
