/*
 * Hostile guest, part 3: well-formed rings carrying malformed device requests. Block: short
 * headers, status missing or read-only, sectors beyond the disk or overflowing, lengths not a
 * multiple of 512, discard abuse, GET_ID into a 1-byte buffer, data buffers of the wrong
 * direction, a reset with requests in flight. I2C: short headers, buffers of the wrong
 * direction, 1 MiB messages, reserved flags, 10-bit addresses, missing status, endless
 * FAIL_NEXT groups, too many descriptors. Each request completes with an error status (or the
 * device reads NEEDS_RESET when no status byte exists), the image and the EEPROM keep their
 * contents, and hostile_after() checks the rest (test_hostile.h).
 */
#include "tests/integration/test_hostile.h"

#define ST_UNSET 0xee
#define I2C_OK   0
#define I2C_ERR  1

/* Submit bufs on device d, kick, wait for the chain; returns the used length (-1: none). */
static int64_t chain(struct hostile *h, unsigned d, const struct vdrv_buf *b, unsigned n)
{
	assert_true(vdrv_submit(&h->drv[d], 0, b, n, false, NULL) >= 0);
	vdrv_kick(&h->drv[d], 0);
	return hostile_wait_used(h, d, H_WAIT_MS);
}

static struct vdrv_buf hdr_buf(struct hostile *h, uint32_t type, uint64_t sector, uint32_t len)
{
	uint8_t *p;
	struct virtio_blk_outhdr o = { htole32(type), 0, htole64(sector) };
	struct vdrv_buf b = { hostile_buf(h, 16, &p), len, false };

	memcpy(p, &o, len < 16 ? len : 16);
	return b;
}

static struct vdrv_buf status_buf(struct hostile *h, uint8_t **st)
{
	struct vdrv_buf b = { hostile_buf(h, 1, st), 1, true };

	**st = ST_UNSET;
	return b;
}

/* A data buffer filled with 0x5a, device-writable or not. */
static struct vdrv_buf data_buf(struct hostile *h, uint32_t len, bool write, uint8_t **p)
{
	struct vdrv_buf b = { hostile_buf(h, len, p), len, write };

	memset(*p, 0x5a, len);
	return b;
}

static bool all(const uint8_t *p, size_t n, uint8_t v)
{
	for (size_t i = 0; i < n; i++)
		if (p[i] != v)
			return false;
	return true;
}

/* header (type, sector), data (len, direction), status: the status byte the device wrote. */
static uint8_t blk_req(struct hostile *h, uint32_t type, uint64_t sector, uint32_t len,
		       bool data_write)
{
	uint8_t *st, *data;
	struct vdrv_buf b[3];
	unsigned n = 0;

	b[n++] = hdr_buf(h, type, sector, 16);
	if (len)
		b[n++] = data_buf(h, len, data_write, &data);
	b[n++] = status_buf(h, &st);
	assert_true(chain(h, D_BLK, b, n) >= 1);
	return *st;
}

/* ---- block ---- */

static void test_blk_header_short(void **state)
{
	struct hostile *h = *state;
	uint8_t *st;
	struct vdrv_buf b[2] = { hdr_buf(h, VIRTIO_BLK_T_OUT, 0, 8), status_buf(h, &st) };

	/* 8 of the 16 header bytes, then the status; then the status alone. */
	assert_int_equal(chain(h, D_BLK, b, 2), 1);
	assert_int_equal(*st, VIRTIO_BLK_S_IOERR);
	*st = ST_UNSET;
	assert_int_equal(chain(h, D_BLK, &b[1], 1), 1);
	assert_int_equal(*st, VIRTIO_BLK_S_IOERR);
	hostile_after(h, D_BLK);
}

static void test_blk_status_missing(void **state)
{
	struct hostile *h = *state;
	uint8_t *data;
	struct vdrv_buf b[2] = { hdr_buf(h, VIRTIO_BLK_T_OUT, 0, 16),
				 data_buf(h, 512, false, &data) };

	assert_true(vdrv_submit(&h->drv[D_BLK], 0, b, 2, false, NULL) >= 0);
	vdrv_kick(&h->drv[D_BLK], 0);
	assert_true(hostile_wait_needs_reset(h, D_BLK));
	hostile_after(h, D_BLK);
}

static void test_blk_status_read_only(void **state)
{
	struct hostile *h = *state;
	uint8_t *st, *data;
	struct vdrv_buf b[3] = { hdr_buf(h, VIRTIO_BLK_T_IN, 0, 16),
				 data_buf(h, 512, false, &data), status_buf(h, &st) };

	b[2].write = false;
	assert_true(vdrv_submit(&h->drv[D_BLK], 0, b, 3, false, NULL) >= 0);
	vdrv_kick(&h->drv[D_BLK], 0);
	assert_true(hostile_wait_needs_reset(h, D_BLK));
	assert_int_equal(*st, ST_UNSET);
	assert_true(all(data, 512, 0x5a));
	hostile_after(h, D_BLK);
}

static void test_blk_sector_beyond_capacity(void **state)
{
	struct hostile *h = *state;

	assert_int_equal(blk_req(h, VIRTIO_BLK_T_IN, H_SECTORS, 512, true), VIRTIO_BLK_S_IOERR);
	assert_int_equal(blk_req(h, VIRTIO_BLK_T_OUT, H_SECTORS, 512, false), VIRTIO_BLK_S_IOERR);
	assert_int_equal(blk_req(h, VIRTIO_BLK_T_OUT, H_SECTORS - 1, 1024, false),
			 VIRTIO_BLK_S_IOERR);
	assert_int_equal(blk_req(h, VIRTIO_BLK_T_IN, ~UINT64_C(0), 512, true),
			 VIRTIO_BLK_S_IOERR);
	hostile_after(h, D_BLK);
}

static void test_blk_sector_times_512_overflows(void **state)
{
	struct hostile *h = *state;

	/* 2^55 * 512 = 2^64: sector 0 if the multiplication were trusted. */
	assert_int_equal(blk_req(h, VIRTIO_BLK_T_OUT, UINT64_C(1) << 55, 512, false),
			 VIRTIO_BLK_S_IOERR);
	assert_int_equal(blk_req(h, VIRTIO_BLK_T_OUT, (UINT64_C(1) << 55) + 1, 512, false),
			 VIRTIO_BLK_S_IOERR);
	hostile_after(h, D_BLK);
}

static void test_blk_len_not_512_multiple(void **state)
{
	struct hostile *h = *state;

	assert_int_equal(blk_req(h, VIRTIO_BLK_T_OUT, 2, 100, false), VIRTIO_BLK_S_IOERR);
	assert_int_equal(blk_req(h, VIRTIO_BLK_T_OUT, 2, 513, false), VIRTIO_BLK_S_IOERR);
	assert_int_equal(blk_req(h, VIRTIO_BLK_T_IN, 2, 511, true), VIRTIO_BLK_S_IOERR);
	hostile_after(h, D_BLK);
}

/* A discard or write-zeroes with `payload` bytes of segments; returns the status. */
static uint8_t dwz(struct hostile *h, uint32_t type, uint32_t nseg, uint64_t sector,
		   uint32_t nsect, uint32_t flags, uint32_t payload)
{
	uint8_t *st, *p;
	struct vdrv_buf b[3];

	b[0] = hdr_buf(h, type, 0, 16);
	b[1] = (struct vdrv_buf){ hostile_buf(h, payload, &p), payload, false };
	for (uint32_t i = 0; i < nseg && (i + 1) * 16 <= payload; i++) {
		struct virtio_blk_dwz_seg s = { htole64(sector), htole32(nsect), htole32(flags) };

		memcpy(p + 16 * i, &s, 16);
	}
	b[2] = status_buf(h, &st);
	assert_int_equal(chain(h, D_BLK, b, 3), 1);
	return *st;
}

static void test_blk_discard_many_segments(void **state)
{
	struct hostile *h = *state;

	assert_int_equal(dwz(h, VIRTIO_BLK_T_DISCARD, 4096, 0, 8, 0, 4096 * 16),
			 VIRTIO_BLK_S_UNSUPP);
	assert_int_equal(dwz(h, VIRTIO_BLK_T_WRITE_ZEROES, 65536, 0, 8, 0, 65536 * 16),
			 VIRTIO_BLK_S_UNSUPP);
	hostile_after(h, D_BLK);
}

static void test_blk_discard_bad_segment(void **state)
{
	struct hostile *h = *state;

	assert_int_equal(dwz(h, VIRTIO_BLK_T_DISCARD, 1, 0, 0xffffffffu, 0, 16),
			 VIRTIO_BLK_S_IOERR);
	assert_int_equal(dwz(h, VIRTIO_BLK_T_DISCARD, 1, H_SECTORS - 1, 2, 0, 16),
			 VIRTIO_BLK_S_IOERR);
	assert_int_equal(dwz(h, VIRTIO_BLK_T_WRITE_ZEROES, 1, ~UINT64_C(0) - 1, 4, 0, 16),
			 VIRTIO_BLK_S_IOERR);
	assert_int_equal(dwz(h, VIRTIO_BLK_T_DISCARD, 1, 0, 8, 0, 10), VIRTIO_BLK_S_IOERR);
	assert_int_equal(dwz(h, VIRTIO_BLK_T_DISCARD, 1, 0, 8, 1, 16), VIRTIO_BLK_S_UNSUPP);
	assert_int_equal(dwz(h, VIRTIO_BLK_T_WRITE_ZEROES, 1, 0, 8, 0xfe, 16),
			 VIRTIO_BLK_S_UNSUPP);
	hostile_after(h, D_BLK);
}

static void test_blk_get_id_1_byte(void **state)
{
	struct hostile *h = *state;
	uint8_t *st, *id;
	struct vdrv_buf b[3];

	b[0] = hdr_buf(h, VIRTIO_BLK_T_GET_ID, 0, 16);
	b[1] = (struct vdrv_buf){ hostile_buf(h, 64, &id), 1, true };
	memset(id, 0x5a, 64);
	b[2] = status_buf(h, &st);
	/* Used length: 1 id byte and the status. Nothing past the 1-byte buffer. */
	assert_int_equal(chain(h, D_BLK, b, 3), 2);
	assert_int_equal(*st, VIRTIO_BLK_S_OK);
	assert_true(all(id + 1, 63, 0x5a));
	/* Only the status byte: an empty id. */
	assert_int_equal(chain(h, D_BLK, (struct vdrv_buf[]){ b[0], b[2] }, 2), 1);
	assert_int_equal(*st, VIRTIO_BLK_S_OK);
	hostile_after(h, D_BLK);
}

static void test_blk_unknown_type(void **state)
{
	struct hostile *h = *state;

	assert_int_equal(blk_req(h, 0x1234, 0, 512, false), VIRTIO_BLK_S_UNSUPP);
	assert_int_equal(blk_req(h, 0xffffffffu, 0, 512, true), VIRTIO_BLK_S_UNSUPP);
	hostile_after(h, D_BLK);
}

/* Data buffers of the wrong direction: a write of nothing, a read into nothing. */
static void test_blk_data_wrong_direction(void **state)
{
	struct hostile *h = *state;
	uint8_t *st, *data;
	struct vdrv_buf b[3];

	/* OUT with a device-writable data buffer: no data to write, the buffer untouched. */
	b[0] = hdr_buf(h, VIRTIO_BLK_T_OUT, 3, 16);
	b[1] = data_buf(h, 512, true, &data);
	b[2] = status_buf(h, &st);
	assert_true(chain(h, D_BLK, b, 3) >= 1);
	assert_true(*st == VIRTIO_BLK_S_OK || *st == VIRTIO_BLK_S_IOERR);
	assert_true(all(data, 512, 0x5a));
	/* IN with a device-readable data buffer: the device must not write into it. */
	b[0] = hdr_buf(h, VIRTIO_BLK_T_IN, 3, 16);
	b[1] = data_buf(h, 512, false, &data);
	b[2] = status_buf(h, &st);
	assert_true(chain(h, D_BLK, b, 3) >= 1);
	assert_true(*st == VIRTIO_BLK_S_OK || *st == VIRTIO_BLK_S_IOERR);
	assert_true(all(data, 512, 0x5a));
	hostile_after(h, D_BLK);
}

/* Reset with 20 reads of 32 KiB in flight: nothing is published after the reset reads 0. */
static void test_blk_reset_mid_flight(void **state)
{
	struct hostile *h = *state;
	struct vdrv_vq *vq = hostile_vq(h, D_BLK);

	for (unsigned k = 0; k < 20; k++) {
		uint8_t *st, *data;
		struct vdrv_buf b[3] = { hdr_buf(h, VIRTIO_BLK_T_IN, k * 64, 16),
					 data_buf(h, 32768, true, &data), status_buf(h, &st) };

		assert_true(vdrv_submit(&h->drv[D_BLK], 0, b, 3, false, NULL) >= 0);
	}
	vdrv_kick(&h->drv[D_BLK], 0);
	vdrv_reset(&h->drv[D_BLK]);
	assert_int_equal(hostile_status(h, D_BLK), 0);
	uint16_t idx = vq->used->idx;

	hostile_sleep_ms(200);
	assert_int_equal(vq->used->idx, idx);
	hostile_after(h, D_BLK);
}

/* A reset while the guest is still writing a chain: half a chain published, then reset. */
static void test_blk_reset_mid_chain(void **state)
{
	struct hostile *h = *state;
	struct vdrv_vq *vq = hostile_vq(h, D_BLK);
	uint8_t *hdr;
	uint64_t hg = hostile_buf(h, 16, &hdr);
	struct virtio_blk_outhdr o = { htole32(VIRTIO_BLK_T_OUT), 0, htole64(7) };

	memcpy(hdr, &o, 16);
	/* Header says NEXT; the next descriptor is still all zeroes when the kick arrives. */
	hostile_desc(h, D_BLK, 0, hostile_dma(h, hg, 16, false), 16, VRING_DESC_F_NEXT, 1);
	hostile_desc(h, D_BLK, 1, 0, 0, 0, 0);
	hostile_publish(h, D_BLK, 0);
	hostile_kick(h, D_BLK);
	vdrv_reset(&h->drv[D_BLK]);
	assert_int_equal(hostile_status(h, D_BLK), 0);
	uint16_t idx = vq->used->idx;

	hostile_sleep_ms(100);
	assert_int_equal(vq->used->idx, idx);
	hostile_after(h, D_BLK);
}

/* ---- i2c ---- */

/* An i2c chain: header (len bytes of it), payload (len, direction), status. */
static uint8_t i2c_req(struct hostile *h, uint16_t addr_field, uint32_t flags, uint32_t hdr_len,
		       uint32_t len, bool write, uint8_t **data)
{
	uint8_t *hdr, *st, *dummy;
	struct vdrv_buf b[3];
	unsigned n = 0;
	uint16_t a = htole16(addr_field);
	uint32_t f = htole32(flags);

	b[n++] = (struct vdrv_buf){ hostile_buf(h, 8, &hdr), hdr_len, false };
	memcpy(hdr, &a, 2);
	memcpy(hdr + 4, &f, 4);
	if (len)
		b[n++] = data_buf(h, len, write, data ? data : &dummy);
	b[n++] = status_buf(h, &st);
	assert_true(chain(h, D_I2C, b, n) >= 0);
	return *st;
}

static void eeprom_expect(struct hostile *h, uint8_t at, uint8_t want)
{
	uint8_t got[8];

	hostile_scratch_reset(h);
	assert_int_equal(hostile_i2c(h, 0x50, false, &at, 1), I2C_OK);
	assert_int_equal(hostile_i2c(h, 0x50, true, got, 8), I2C_OK);
	assert_true(all(got, 8, want));
}

static void test_i2c_header_short(void **state)
{
	struct hostile *h = *state;
	uint8_t *d;

	assert_int_equal(i2c_req(h, 0x50 << 1, 0, 4, 2, false, &d), I2C_ERR);
	assert_int_equal(i2c_req(h, 0x50 << 1, 0, 7, 0, false, NULL), I2C_ERR);
	eeprom_expect(h, 0x5a, 0xff);
	hostile_after(h, D_I2C);
}

static void test_i2c_read_into_read_only(void **state)
{
	struct hostile *h = *state;
	uint8_t *d;

	assert_int_equal(i2c_req(h, 0x48 << 1, 2, 8, 2, false, &d), I2C_ERR);
	assert_true(all(d, 2, 0x5a));
	hostile_after(h, D_I2C);
}

static void test_i2c_write_from_writable(void **state)
{
	struct hostile *h = *state;
	uint8_t *d;

	assert_int_equal(i2c_req(h, 0x50 << 1, 0, 8, 4, true, &d), I2C_ERR);
	assert_true(all(d, 4, 0x5a));
	eeprom_expect(h, 0x5a, 0xff);
	hostile_after(h, D_I2C);
}

static void test_i2c_length_1_mib(void **state)
{
	struct hostile *h = *state;
	uint8_t *d;

	assert_int_equal(i2c_req(h, 0x50 << 1, 2, 8, 1u << 20, true, &d), I2C_ERR);
	assert_true(all(d, 1u << 20, 0x5a));
	assert_int_equal(i2c_req(h, 0x50 << 1, 0, 8, 1u << 20, false, &d), I2C_ERR);
	eeprom_expect(h, 0x5a, 0xff);
	hostile_after(h, D_I2C);
}

static void test_i2c_reserved_flags(void **state)
{
	struct hostile *h = *state;
	uint8_t *d;

	assert_int_equal(i2c_req(h, 0x48 << 1, 2 | 4, 8, 2, true, &d), I2C_ERR);
	assert_int_equal(i2c_req(h, 0x48 << 1, 0x80000002u, 8, 2, true, &d), I2C_ERR);
	assert_true(all(d, 2, 0x5a));
	hostile_after(h, D_I2C);
}

static void test_i2c_bad_address_field(void **state)
{
	struct hostile *h = *state;
	uint8_t *d;

	/* Bit 0 set, a 10-bit address, and 0x50 with high bits that would alias to it. */
	assert_int_equal(i2c_req(h, (0x48 << 1) | 1, 2, 8, 2, true, &d), I2C_ERR);
	assert_int_equal(i2c_req(h, 0x3a0, 2, 8, 2, true, &d), I2C_ERR);
	assert_int_equal(i2c_req(h, 0x8000 | (0x50 << 1), 0, 8, 2, false, &d), I2C_ERR);
	eeprom_expect(h, 0x5a, 0xff);
	hostile_after(h, D_I2C);
}

static void test_i2c_status_missing(void **state)
{
	struct hostile *h = *state;
	uint8_t *hdr;
	uint16_t a = htole16(0x50 << 1);
	struct vdrv_buf b[2] = { { hostile_buf(h, 8, &hdr), 8, false },
				 { hostile_buf(h, 2, NULL), 2, false } };

	memcpy(hdr, &a, 2);
	assert_true(vdrv_submit(&h->drv[D_I2C], 0, b, 2, false, NULL) >= 0);
	vdrv_kick(&h->drv[D_I2C], 0);
	assert_true(hostile_wait_needs_reset(h, D_I2C));
	hostile_after(h, D_I2C);
}

/* 60 writes to the EEPROM all flagged FAIL_NEXT: a transfer that never ends fails whole. */
static void test_i2c_endless_fail_next(void **state)
{
	struct hostile *h = *state;
	uint8_t *st[60];

	for (unsigned k = 0; k < 60; k++) {
		uint8_t *hdr, *d;
		uint16_t a = htole16(0x50 << 1);
		uint32_t f = htole32(1);
		struct vdrv_buf b[3] = { { hostile_buf(h, 8, &hdr), 8, false },
					 { hostile_buf(h, 2, &d), 2, false },
					 status_buf(h, &st[k]) };

		memcpy(hdr, &a, 2);
		memcpy(hdr + 4, &f, 4);
		d[0] = 0x5a;
		d[1] = 0;
		/* Indirect: 60 chains in a ring of 64 descriptors. */
		assert_true(vdrv_submit(&h->drv[D_I2C], 0, b, 3, true, NULL) >= 0);
	}
	vdrv_kick(&h->drv[D_I2C], 0);
	for (unsigned k = 0; k < 60; k++)
		assert_true(hostile_wait_used(h, D_I2C, H_WAIT_MS) >= 0);
	for (unsigned k = 0; k < 60; k++)
		assert_int_equal(*st[k], I2C_ERR);
	/*
	 * The group's continuation stays latched: the next message fails too, then the bus is
	 * usable again.
	 */
	hostile_scratch_reset(h);
	assert_int_equal(i2c_req(h, 0x48 << 1, 2, 8, 2, true, NULL), I2C_ERR);
	eeprom_expect(h, 0x5a, 0xff);
	hostile_after(h, D_I2C);
}

static void test_i2c_too_many_descriptors(void **state)
{
	struct hostile *h = *state;
	uint8_t *hdr, *st;
	uint16_t a = htole16(0x50 << 1);
	struct vdrv_buf b[12];

	b[0] = (struct vdrv_buf){ hostile_buf(h, 8, &hdr), 8, false };
	memcpy(hdr, &a, 2);
	/* A write of 10 one-byte descriptors. */
	for (unsigned i = 1; i <= 10; i++) {
		uint8_t *p;

		b[i] = (struct vdrv_buf){ hostile_buf(h, 1, &p), 1, false };
		*p = i == 1 ? 0x5a : 0;
	}
	b[11] = status_buf(h, &st);
	assert_true(chain(h, D_I2C, b, 12) >= 1);
	assert_int_equal(*st, I2C_ERR);
	eeprom_expect(h, 0x5a, 0xff);
	hostile_after(h, D_I2C);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		HOSTILE_TEST(test_blk_header_short),
		HOSTILE_TEST(test_blk_status_missing),
		HOSTILE_TEST(test_blk_status_read_only),
		HOSTILE_TEST(test_blk_sector_beyond_capacity),
		HOSTILE_TEST(test_blk_sector_times_512_overflows),
		HOSTILE_TEST(test_blk_len_not_512_multiple),
		HOSTILE_TEST(test_blk_discard_many_segments),
		HOSTILE_TEST(test_blk_discard_bad_segment),
		HOSTILE_TEST(test_blk_get_id_1_byte),
		HOSTILE_TEST(test_blk_unknown_type),
		HOSTILE_TEST(test_blk_data_wrong_direction),
		HOSTILE_TEST(test_blk_reset_mid_flight),
		HOSTILE_TEST(test_blk_reset_mid_chain),
		HOSTILE_TEST(test_i2c_header_short),
		HOSTILE_TEST(test_i2c_read_into_read_only),
		HOSTILE_TEST(test_i2c_write_from_writable),
		HOSTILE_TEST(test_i2c_length_1_mib),
		HOSTILE_TEST(test_i2c_reserved_flags),
		HOSTILE_TEST(test_i2c_bad_address_field),
		HOSTILE_TEST(test_i2c_status_missing),
		HOSTILE_TEST(test_i2c_endless_fail_next),
		HOSTILE_TEST(test_i2c_too_many_descriptors),
		HOSTILE_TEST_GRANTS(test_blk_header_short),
		HOSTILE_TEST_GRANTS(test_blk_get_id_1_byte),
		HOSTILE_TEST_GRANTS(test_i2c_length_1_mib),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
