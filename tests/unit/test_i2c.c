/*
 * virtio-i2c through the real transport: a test driver builds requests the way Linux's
 * i2c-virtio does (header, optional buffer, status; FAIL_NEXT on all but the last of a group;
 * one kick per group) and hostile ones it never would.
 */
#include <dirent.h>
#include <endian.h>
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "devices/i2c_sim.h"
#include "tests/lib/gmem_flat.h"
#include "tests/lib/vdriver.h"
#include "tests/lib/vdriver_direct.h"

#define RAM_GPA   UINT64_C(0x40000000)
#define RAM_SIZE  (4u << 20)
#define QSIZE     128
#define EE        0x50
#define TS        0x48
#define TS2       0x49

#define F_FAIL_NEXT 1u
#define F_M_RD      2u
#define ST_OK   0
#define ST_ERR  1
#define ST_NONE 0xee   /* what the driver leaves in the status byte: "not written" */

/* One I2C message as a guest driver sees it. */
struct msg {
	uint16_t addr;
	bool rd;
	uint32_t len;
	uint8_t *data;     /* write: bytes to send; read: receives the bytes */
	uint8_t status;    /* filled by xfer() */
};

struct rig {
	struct vdrv_direct x;
	struct vdrv drv;
	struct config_device cfg;
	uint64_t heap;     /* allocation cursor after the rings: reset before every request */
	long ring_maps;    /* mappings the live queue holds; anything above is a leak */
};

static void cfg_i2c(struct config_device *cfg)
{
	memset(cfg, 0, sizeof(*cfg));
	cfg->type = DEV_I2C;
	snprintf(cfg->name, sizeof(cfg->name), "bus0");
	cfg->devid = -1;
}

static void cfg_sim(struct config_device *cfg, enum config_i2c_sim_kind kind, uint16_t addr,
		    const char *file)
{
	struct config_i2c_sim *s = &cfg->u.i2c.sims[cfg->u.i2c.nsims++];

	s->kind = kind;
	s->addr = addr;
	snprintf(s->file, sizeof(s->file), "%s", file ? file : "");
}

static uint64_t want_features(void)
{
	return VIRTIO_BIT(VIRTIO_F_VERSION_1) | VIRTIO_BIT(0);
}

static int rig_open(struct rig *r)
{
	int rc = vdrv_direct_open(&r->x, &r->cfg, RAM_GPA, RAM_SIZE, NULL);

	if (rc < 0)
		return rc;
	memset(&r->drv, 0, sizeof(r->drv));
	rc = vdrv_init(&r->drv, &r->x.io, &r->x.mem, want_features(), 1, QSIZE);
	r->heap = r->x.mem.next;
	r->ring_maps = gmem_flat_outstanding(r->x.gm);
	return rc;
}

static void rig_close(struct rig *r)
{
	vdrv_direct_close(&r->x);
}

/* The default bus: an EEPROM and two LM75s. */
static int setup(void **state)
{
	struct rig *r = calloc(1, sizeof(*r));

	if (!r)
		return -1;
	cfg_i2c(&r->cfg);
	cfg_sim(&r->cfg, I2C_SIM_EEPROM, EE, NULL);
	cfg_sim(&r->cfg, I2C_SIM_LM75, TS, NULL);
	cfg_sim(&r->cfg, I2C_SIM_LM75, TS2, NULL);
	if (rig_open(r) < 0) {
		free(r);
		return -1;
	}
	*state = r;
	return 0;
}

static int teardown(void **state)
{
	struct rig *r = *state;

	assert_int_equal(gmem_flat_outstanding(r->x.gm), r->ring_maps);
	rig_close(r);
	free(r);
	return 0;
}

static uint64_t galloc(struct rig *r, uint32_t len, void **host)
{
	uint64_t gpa = vdrv_alloc(&r->x.mem, len, 8, host);

	assert_true(gpa != 0);
	return gpa;
}

static uint64_t put_hdr(struct rig *r, uint16_t addr_field, uint32_t flags)
{
	uint8_t *h;
	uint64_t gpa = galloc(r, 8, (void **)&h);
	uint16_t a = htole16(addr_field);
	uint32_t f = htole32(flags);

	memcpy(h, &a, 2);
	memset(h + 2, 0, 2);
	memcpy(h + 4, &f, 4);
	return gpa;
}

/* Queue m as one chain; returns the status byte's host address. */
static uint8_t *submit_msg(struct rig *r, struct msg *m, bool fail_next, uint8_t **bufp)
{
	struct vdrv_buf b[3];
	unsigned n = 0;
	uint8_t *st, *buf = NULL;

	b[n++] = (struct vdrv_buf){ put_hdr(r, (uint16_t)(m->addr << 1),
					    (m->rd ? F_M_RD : 0) | (fail_next ? F_FAIL_NEXT : 0)),
				    8, false };
	if (m->len) {
		b[n] = (struct vdrv_buf){ galloc(r, m->len, (void **)&buf), m->len, m->rd };
		memcpy(buf, m->data, m->len);   /* reads: poison the buffer with the caller's bytes */
		n++;
	}
	b[n++] = (struct vdrv_buf){ galloc(r, 1, (void **)&st), 1, true };
	*st = ST_NONE;
	assert_true(vdrv_submit(&r->drv, 0, b, n, false, m) >= 0);
	*bufp = buf;
	return st;
}

/* Run msgs[0..n) as one combined transfer, the way Linux's driver does. */
static void xfer(struct rig *r, struct msg *m, unsigned n)
{
	uint8_t *st[64], *buf[64];
	unsigned got = 0;
	uint32_t len;
	void *tok;

	assert_true(n <= 64);
	r->x.mem.next = r->heap;
	for (unsigned k = 0; k < n; k++)
		st[k] = submit_msg(r, &m[k], k + 1 < n, &buf[k]);
	vdrv_kick(&r->drv, 0);
	/* The device serves sim clients synchronously: everything is used by now. */
	while (got < n && vdrv_get_used(&r->drv, 0, &len, &tok) == 1) {
		struct msg *u = tok;
		unsigned k = (unsigned)(u - m);

		assert_true(k < n);
		assert_int_equal(len, (m[k].rd ? m[k].len : 0) + 1);
		got++;
	}
	assert_int_equal(got, n);
	for (unsigned k = 0; k < n; k++) {
		m[k].status = *st[k];
		if (m[k].rd && m[k].len)
			memcpy(m[k].data, buf[k], m[k].len);
	}
}

static uint8_t xfer1(struct rig *r, uint16_t addr, bool rd, void *data, uint32_t len)
{
	struct msg m = { .addr = addr, .rd = rd, .len = len, .data = data };

	xfer(r, &m, 1);
	return m.status;
}

/* EEPROM random read: word address, repeated START, read. */
static void ee_read(struct rig *r, uint8_t at, uint8_t *out, uint32_t len)
{
	struct msg m[2] = { { EE, false, 1, &at, 0 }, { EE, true, len, out, 0 } };

	xfer(r, m, 2);
	assert_int_equal(m[0].status, ST_OK);
	assert_int_equal(m[1].status, ST_OK);
}

static void ee_write(struct rig *r, uint8_t at, const void *data, uint32_t len)
{
	uint8_t b[1 + 16];

	assert_true(len <= 16);
	b[0] = at;
	memcpy(b + 1, data, len);
	assert_int_equal(xfer1(r, EE, false, b, len + 1), ST_OK);
}

static bool needs_reset(struct rig *r)
{
	return (vdrv_status(&r->drv) & VIRTIO_STATUS_NEEDS_RESET) != 0;
}

/* ---- negotiation ------------------------------------------------------------------------- */

static void test_identity_and_features(void **state)
{
	struct rig *r = *state;

	assert_int_equal(r->drv.device_id, 34);
	assert_true(r->drv.device_features & VIRTIO_BIT(0));
	assert_true(vdrv_status(&r->drv) & VIRTIO_STATUS_DRIVER_OK);
	/* A driver without ZERO_LENGTH_REQUEST must be refused (the spec makes it mandatory). */
	assert_int_equal(vdrv_init(&r->drv, &r->x.io, &r->x.mem, VIRTIO_BIT(VIRTIO_F_VERSION_1), 1,
				   QSIZE), -ENOTSUP);
	assert_int_equal(vdrv_init(&r->drv, &r->x.io, &r->x.mem, want_features(), 1, QSIZE), 0);
	r->heap = r->x.mem.next;
	ee_write(r, 0, "ok", 2);
}

/* ---- EEPROM ------------------------------------------------------------------------------ */

static void test_eeprom_write_read_back(void **state)
{
	struct rig *r = *state;
	uint8_t out[6] = { 0 };

	ee_read(r, 0x20, out, 6);
	assert_memory_equal(out, "\xff\xff\xff\xff\xff\xff", 6);
	ee_write(r, 0x20, "hello!", 6);
	ee_read(r, 0x20, out, 6);
	assert_memory_equal(out, "hello!", 6);
}

static void test_eeprom_page_wrap(void **state)
{
	struct rig *r = *state;
	uint8_t out[16];

	/* Starting 5 bytes into page 0x28: bytes 3..5 wrap to 0x28..0x2a, not into 0x30. */
	ee_write(r, 0x2d, "ABCDEF", 6);
	ee_read(r, 0x28, out, 16);
	assert_memory_equal(out, "DEF\xff\xff" "ABC\xff", 8);
	assert_int_equal(out[8], 0xff);
}

static void test_eeprom_current_address_read(void **state)
{
	struct rig *r = *state;
	uint8_t b[3];

	ee_write(r, 0x40, "xyz", 3);
	ee_read(r, 0x40, b, 1);
	/* A read without a word address continues where the pointer is. */
	assert_int_equal(xfer1(r, EE, true, b, 2), ST_OK);
	assert_memory_equal(b, "yz", 2);
}

static void test_eeprom_sequential_read_wraps(void **state)
{
	struct rig *r = *state;
	uint8_t out[4];

	ee_write(r, 0xfe, "\x01\x02", 2);
	ee_write(r, 0x00, "\x03\x04", 2);
	ee_read(r, 0xfe, out, 4);
	assert_memory_equal(out, "\x01\x02\x03\x04", 4);
}

static void test_eeprom_persistence(void **state)
{
	char dir[] = "/tmp/test_i2c.XXXXXX", path[80];
	struct rig *r = calloc(1, sizeof(*r));
	uint8_t out[5];
	struct stat st;

	(void)state;
	assert_non_null(r);
	assert_non_null(mkdtemp(dir));
	snprintf(path, sizeof(path), "%s/eeprom.bin", dir);
	cfg_i2c(&r->cfg);
	cfg_sim(&r->cfg, I2C_SIM_EEPROM, EE, path);
	assert_int_equal(rig_open(r), 0);
	ee_write(r, 0x80, "saved", 5);
	assert_int_equal(stat(path, &st), 0);
	assert_int_equal(st.st_size, 256);
	rig_close(r);

	assert_int_equal(rig_open(r), 0);
	ee_read(r, 0x80, out, 5);
	assert_memory_equal(out, "saved", 5);
	rig_close(r);
	free(r);
	unlink(path);
	rmdir(dir);
}

/* ---- LM75 -------------------------------------------------------------------------------- */

static void lm75_reg(struct rig *r, uint16_t addr, uint8_t reg, uint8_t *out, uint32_t len)
{
	struct msg m[2] = { { addr, false, 1, &reg, 0 }, { addr, true, len, out, 0 } };

	xfer(r, m, 2);
	assert_int_equal(m[0].status, ST_OK);
	assert_int_equal(m[1].status, ST_OK);
}

static void test_lm75_registers(void **state)
{
	struct rig *r = *state;
	uint8_t b[2];

	lm75_reg(r, TS, 0, b, 2);
	assert_memory_equal(b, "\x19\x00", 2);   /* 25.0 °C */
	lm75_reg(r, TS, 1, b, 1);
	assert_int_equal(b[0], 0);
	lm75_reg(r, TS, 2, b, 2);
	assert_memory_equal(b, "\x4b\x00", 2);   /* Thyst 75 °C */
	lm75_reg(r, TS, 3, b, 2);
	assert_memory_equal(b, "\x50\x00", 2);   /* Tos 80 °C */
}

static void test_lm75_pointer(void **state)
{
	struct rig *r = *state;
	uint8_t set_tos[] = { 3, 0x46, 0x80 }, ptr = 2, b[2];

	assert_int_equal(xfer1(r, TS, false, set_tos, 3), ST_OK);
	/* The pointer stays at Tos: plain reads return it, again and again. */
	assert_int_equal(xfer1(r, TS, true, b, 2), ST_OK);
	assert_memory_equal(b, "\x46\x80", 2);
	assert_int_equal(xfer1(r, TS, true, b, 2), ST_OK);
	assert_memory_equal(b, "\x46\x80", 2);
	/* A pointer-only write moves it. */
	assert_int_equal(xfer1(r, TS, false, &ptr, 1), ST_OK);
	assert_int_equal(xfer1(r, TS, true, b, 2), ST_OK);
	assert_memory_equal(b, "\x4b\x00", 2);
	/* The second sensor is independent. */
	assert_int_equal(xfer1(r, TS2, true, b, 2), ST_OK);
	assert_memory_equal(b, "\x19\x00", 2);
}

/* ---- bus behaviour ----------------------------------------------------------------------- */

static void test_absent_address_errors(void **state)
{
	struct rig *r = *state;
	uint8_t b[2] = { 0xaa, 0xbb };

	assert_int_equal(xfer1(r, 0x33, true, b, 2), ST_ERR);
	/* A failed read returns no stale or invented data. */
	assert_memory_equal(b, "\0\0", 2);
	assert_int_equal(xfer1(r, 0x33, false, b, 2), ST_ERR);
	assert_false(needs_reset(r));
}

static void test_fail_next_group(void **state)
{
	struct rig *r = *state;
	uint8_t at = 0x60, b1 = 0x55, b2 = 0x55, b[1];
	struct msg m[3] = { { EE, false, 1, &at, 0 }, { 0x33, true, 1, &b1, 0 },
			    { EE, true, 1, &b2, 0 } };

	ee_write(r, 0x60, "AB", 2);
	ee_read(r, 0x00, b, 1);   /* pointer elsewhere */
	xfer(r, m, 3);
	assert_int_equal(m[0].status, ST_OK);
	assert_int_equal(m[1].status, ST_ERR);
	assert_int_equal(m[2].status, ST_ERR);
	assert_int_equal(b1, 0);
	assert_int_equal(b2, 0);
	/*
	 * The first message reached the EEPROM (pointer now 0x60); the last never did (it would
	 * have moved the pointer to 0x61).
	 */
	assert_int_equal(xfer1(r, EE, true, b, 1), ST_OK);
	assert_int_equal(b[0], 'A');
}

static void test_group_too_long(void **state)
{
	struct rig *r = *state;
	struct msg m[43];
	uint8_t w[2] = { 0x90, 0x11 };

	/* One write and 42 probes: 43 messages, one more than a combined transfer may have. */
	m[0] = (struct msg){ EE, false, 2, w, 0 };
	for (unsigned k = 1; k < 43; k++)
		m[k] = (struct msg){ EE, false, 0, NULL, 0 };
	xfer(r, m, 43);
	for (unsigned k = 0; k < 43; k++)
		assert_int_equal(m[k].status, ST_ERR);
	ee_read(r, 0x90, w, 1);
	assert_int_equal(w[0], 0xff);
	/* The next group is served normally. */
	ee_write(r, 0x90, "\x12", 1);
}

static void test_probe_finds_exactly_the_sims(void **state)
{
	struct rig *r = *state;
	unsigned found[2] = { 0, 0 };
	uint16_t seen[8];
	unsigned nseen = 0;

	for (uint16_t a = 0x03; a <= 0x77; a++) {
		for (int rd = 0; rd < 2; rd++) {
			uint8_t st = xfer1(r, a, rd, NULL, 0);

			assert_true(st == ST_OK || st == ST_ERR);
			if (st != ST_OK)
				continue;
			found[rd]++;
			if (rd == 0 && nseen < 8)
				seen[nseen++] = a;
		}
	}
	assert_int_equal(found[0], 3);
	assert_int_equal(found[1], 3);
	assert_int_equal(seen[0], TS);
	assert_int_equal(seen[1], TS2);
	assert_int_equal(seen[2], EE);
}

static void test_allow_list(void **state)
{
	struct rig *r = calloc(1, sizeof(*r));
	uint8_t b[2], p = 3;

	(void)state;
	assert_non_null(r);
	cfg_i2c(&r->cfg);
	cfg_sim(&r->cfg, I2C_SIM_EEPROM, EE, NULL);
	cfg_sim(&r->cfg, I2C_SIM_LM75, TS, NULL);
	r->cfg.u.i2c.allow_set = true;
	r->cfg.u.i2c.allow[EE] = 1;
	assert_int_equal(rig_open(r), 0);
	assert_int_equal(xfer1(r, EE, false, NULL, 0), ST_OK);
	ee_write(r, 0x00, "a", 1);
	/* Present on the bus but not allowed: an error, and the sensor never sees the write. */
	assert_int_equal(xfer1(r, TS, false, NULL, 0), ST_ERR);
	assert_int_equal(xfer1(r, TS, false, &p, 1), ST_ERR);
	assert_int_equal(xfer1(r, TS, true, b, 2), ST_ERR);
	assert_false(needs_reset(r));
	assert_int_equal(gmem_flat_outstanding(r->x.gm), r->ring_maps);
	rig_close(r);
	free(r);
}

/* ---- hostile requests -------------------------------------------------------------------- */

/* Submit a hand-built chain; returns the used length (-1 when never used). */
static int64_t raw(struct rig *r, const struct vdrv_buf *b, unsigned n)
{
	return vdrv_transfer(&r->drv, 0, b, n, false, 200);
}

static uint64_t status_buf(struct rig *r, uint8_t **st)
{
	uint64_t gpa = galloc(r, 1, (void **)st);

	**st = ST_NONE;
	return gpa;
}

/* The EEPROM pointer sits at 0x11 after this; malformed requests must not move it. */
static void ee_mark(struct rig *r)
{
	ee_write(r, 0x10, "M", 1);
}

static void ee_assert_untouched(struct rig *r)
{
	uint8_t b;

	assert_int_equal(xfer1(r, EE, true, &b, 1), ST_OK);   /* reads 0x11 */
	assert_int_equal(b, 0xff);
	ee_read(r, 0x10, &b, 1);
	assert_int_equal(b, 'M');
}

static void test_short_header(void **state)
{
	struct rig *r = *state;
	uint8_t *st;

	ee_mark(r);
	r->x.mem.next = r->heap;
	struct vdrv_buf b[2] = { { put_hdr(r, EE << 1, F_M_RD), 4, false },
				 { status_buf(r, &st), 1, true } };

	assert_int_equal(raw(r, b, 2), 1);
	assert_int_equal(*st, ST_ERR);
	assert_false(needs_reset(r));
	ee_assert_untouched(r);
}

static void test_read_buffer_not_writable(void **state)
{
	struct rig *r = *state;
	uint8_t *st, *data;

	ee_mark(r);
	r->x.mem.next = r->heap;
	struct vdrv_buf b[3] = { { put_hdr(r, EE << 1, F_M_RD), 8, false },
				 { galloc(r, 4, (void **)&data), 4, false },
				 { status_buf(r, &st), 1, true } };

	assert_int_equal(raw(r, b, 3), 1);
	assert_int_equal(*st, ST_ERR);
	ee_assert_untouched(r);
}

static void test_write_buffer_writable(void **state)
{
	struct rig *r = *state;
	uint8_t *st, *data;

	ee_mark(r);
	r->x.mem.next = r->heap;
	struct vdrv_buf b[3] = { { put_hdr(r, EE << 1, 0), 8, false },
				 { galloc(r, 2, (void **)&data), 2, true },
				 { status_buf(r, &st), 1, true } };

	data[0] = 0x11;
	data[1] = 'X';
	assert_int_equal(raw(r, b, 3), 3);
	assert_int_equal(*st, ST_ERR);
	ee_assert_untouched(r);
}

static void test_absurd_length(void **state)
{
	struct rig *r = *state;
	uint8_t *st, *data;

	ee_mark(r);
	r->x.mem.next = r->heap;
	struct vdrv_buf b[3] = { { put_hdr(r, EE << 1, F_M_RD), 8, false },
				 { galloc(r, 70000, (void **)&data), 70000, true },
				 { status_buf(r, &st), 1, true } };

	assert_true(raw(r, b, 3) >= 1);
	assert_int_equal(*st, ST_ERR);
	ee_assert_untouched(r);
}

static void test_bad_header_fields(void **state)
{
	struct rig *r = *state;
	uint16_t fields[] = { EE << 1 | 1, 0xf0 | 0x0100, 0x1a0 };
	uint8_t *st, *data;

	ee_mark(r);
	/* Odd address field, a 10-bit address, bits above the 7-bit range. */
	for (unsigned k = 0; k < 3; k++) {
		r->x.mem.next = r->heap;
		struct vdrv_buf b[3] = { { put_hdr(r, fields[k], F_M_RD), 8, false },
					 { galloc(r, 1, (void **)&data), 1, true },
					 { status_buf(r, &st), 1, true } };

		assert_int_equal(raw(r, b, 3), 2);
		assert_int_equal(*st, ST_ERR);
	}
	/* A reserved flag bit. */
	r->x.mem.next = r->heap;
	struct vdrv_buf b[3] = { { put_hdr(r, EE << 1, F_M_RD | 0x100), 8, false },
				 { galloc(r, 1, (void **)&data), 1, true },
				 { status_buf(r, &st), 1, true } };

	assert_int_equal(raw(r, b, 3), 2);
	assert_int_equal(*st, ST_ERR);
	assert_false(needs_reset(r));
	ee_assert_untouched(r);
}

static void test_split_header_accepted_too_many_refused(void **state)
{
	struct rig *r = *state;
	struct vdrv_buf b[12];
	uint8_t *h, *st, *data;
	uint64_t hdr;

	ee_mark(r);
	/* Header in two pieces, the status sharing the read buffer's descriptor: a valid layout. */
	r->x.mem.next = r->heap;
	hdr = put_hdr(r, EE << 1, F_M_RD);
	b[0] = (struct vdrv_buf){ hdr, 3, false };
	b[1] = (struct vdrv_buf){ hdr + 3, 5, false };
	b[2] = (struct vdrv_buf){ galloc(r, 3, (void **)&data), 3, true };
	data[2] = ST_NONE;
	assert_int_equal(raw(r, b, 3), 3);
	assert_int_equal(data[2], ST_OK);
	assert_int_equal(data[0], 0xff);   /* 0x11, 0x12 */

	/* Eight one-byte header pieces plus buffer and status: not a request. */
	ee_mark(r);
	r->x.mem.next = r->heap;
	hdr = put_hdr(r, EE << 1, F_M_RD);
	h = vdrv_host(&r->x.mem, hdr);
	assert_non_null(h);
	for (unsigned k = 0; k < 8; k++)
		b[k] = (struct vdrv_buf){ hdr + k, 1, false };
	b[8] = (struct vdrv_buf){ galloc(r, 1, (void **)&data), 1, true };
	b[9] = (struct vdrv_buf){ status_buf(r, &st), 1, true };
	assert_int_equal(raw(r, b, 10), 2);
	assert_int_equal(*st, ST_ERR);
	ee_assert_untouched(r);
}

static void test_missing_status_needs_reset(void **state)
{
	struct rig *r = *state;
	uint8_t *data;

	ee_mark(r);
	r->x.mem.next = r->heap;
	/* A write whose "status" is device-readable: nothing can be reported. */
	struct vdrv_buf b[3] = { { put_hdr(r, EE << 1, 0), 8, false },
				 { galloc(r, 2, (void **)&data), 2, false },
				 { galloc(r, 1, NULL), 1, false } };

	data[0] = 0x11;
	data[1] = 'Z';
	assert_int_equal(raw(r, b, 3), 0);
	assert_true(needs_reset(r));
	/* After a reset the device serves again, and the refused write never happened. */
	assert_int_equal(vdrv_init(&r->drv, &r->x.io, &r->x.mem, want_features(), 1, QSIZE), 0);
	r->heap = r->x.mem.next;
	ee_assert_untouched(r);
}

static void test_header_only_needs_reset(void **state)
{
	struct rig *r = *state;

	r->x.mem.next = r->heap;
	struct vdrv_buf b[1] = { { put_hdr(r, EE << 1, 0), 8, false } };

	assert_int_equal(raw(r, b, 1), 0);
	assert_true(needs_reset(r));
	assert_int_equal(vdrv_init(&r->drv, &r->x.io, &r->x.mem, want_features(), 1, QSIZE), 0);
	r->heap = r->x.mem.next;
	ee_write(r, 0x00, "k", 1);
}

static void test_bad_request_in_group_fails_rest(void **state)
{
	struct rig *r = *state;
	uint8_t *st[3], *data, *d2;

	ee_mark(r);
	r->x.mem.next = r->heap;
	/* [write 0x20 'Q'] [malformed: M_RD with a readable buffer] [read 1]: one group. */
	uint8_t *w;
	struct vdrv_buf b0[3] = { { put_hdr(r, EE << 1, F_FAIL_NEXT), 8, false },
				  { galloc(r, 2, (void **)&w), 2, false },
				  { status_buf(r, &st[0]), 1, true } };
	struct vdrv_buf b1[3] = { { put_hdr(r, EE << 1, F_FAIL_NEXT | F_M_RD), 8, false },
				  { galloc(r, 1, (void **)&data), 1, false },
				  { status_buf(r, &st[1]), 1, true } };
	struct vdrv_buf b2[3] = { { put_hdr(r, EE << 1, F_M_RD), 8, false },
				  { galloc(r, 1, (void **)&d2), 1, true },
				  { status_buf(r, &st[2]), 1, true } };

	w[0] = 0x20;
	w[1] = 'Q';
	assert_true(vdrv_submit(&r->drv, 0, b0, 3, false, NULL) >= 0);
	assert_true(vdrv_submit(&r->drv, 0, b1, 3, false, NULL) >= 0);
	assert_true(vdrv_submit(&r->drv, 0, b2, 3, false, NULL) >= 0);
	vdrv_kick(&r->drv, 0);
	for (int k = 0; k < 3; k++)
		assert_int_equal(vdrv_get_used(&r->drv, 0, NULL, NULL), 1);
	assert_int_equal(*st[0], ST_OK);
	assert_int_equal(*st[1], ST_ERR);
	assert_int_equal(*st[2], ST_ERR);
	ee_read(r, 0x20, d2, 1);
	assert_int_equal(d2[0], 'Q');
}

/* A group whose last chain so far has FAIL_NEXT: the rest arrives with a later kick. */
static void test_group_split_across_kicks(void **state)
{
	struct rig *r = *state;
	uint8_t at = 0x70, b = 0x55, *st1, *st2, *buf;
	struct msg set = { EE, false, 1, &at, 0 }, miss = { 0x33, true, 1, &b, 0 };
	struct msg get = { EE, true, 1, &b, 0 };

	ee_write(r, 0x70, "PQ", 2);
	ee_read(r, 0x00, &b, 1);
	/* Succeeds, then the continuation runs as its own transfer. */
	r->x.mem.next = r->heap;
	st1 = submit_msg(r, &set, true, &buf);
	vdrv_kick(&r->drv, 0);
	assert_int_equal(vdrv_get_used(&r->drv, 0, NULL, NULL), 1);
	assert_int_equal(*st1, ST_OK);
	st2 = submit_msg(r, &get, false, &buf);
	vdrv_kick(&r->drv, 0);
	assert_int_equal(vdrv_get_used(&r->drv, 0, NULL, NULL), 1);
	assert_int_equal(*st2, ST_OK);
	assert_int_equal(buf[0], 'P');   /* pointer 0x70 -> 0x71 */
	/* Fails: the continuation must fail too, without reaching the bus. */
	r->x.mem.next = r->heap;
	st1 = submit_msg(r, &miss, true, &buf);
	vdrv_kick(&r->drv, 0);
	assert_int_equal(vdrv_get_used(&r->drv, 0, NULL, NULL), 1);
	assert_int_equal(*st1, ST_ERR);
	st2 = submit_msg(r, &get, false, &buf);
	vdrv_kick(&r->drv, 0);
	assert_int_equal(vdrv_get_used(&r->drv, 0, NULL, NULL), 1);
	assert_int_equal(*st2, ST_ERR);
	/* The group is over: the next request is served, from the untouched pointer 0x71. */
	assert_int_equal(xfer1(r, EE, true, &b, 1), ST_OK);
	assert_int_equal(b, 'Q');
}

static void test_reconfigure_allow_list(void **state)
{
	struct rig *r = *state;
	struct config_device n = r->cfg;
	uint8_t b[2];

	assert_non_null(r->x.dev->ops->reconfigure);
	n.u.i2c.allow_set = true;
	memset(n.u.i2c.allow, 0, sizeof(n.u.i2c.allow));
	n.u.i2c.allow[EE] = 1;
	assert_int_equal(r->x.dev->ops->reconfigure(r->x.dev, &n), 0);
	assert_int_equal(xfer1(r, TS, true, b, 2), ST_ERR);
	assert_int_equal(xfer1(r, EE, true, b, 1), ST_OK);
	/* Changed backends are refused whole: the allow list stays as it was. */
	n.u.i2c.allow[TS] = 1;
	n.u.i2c.sims[1].addr = 0x4f;
	assert_int_equal(r->x.dev->ops->reconfigure(r->x.dev, &n), -EOPNOTSUPP);
	assert_int_equal(xfer1(r, TS, true, b, 2), ST_ERR);
	/* Lifting the list restores access. */
	n = r->cfg;
	assert_int_equal(r->x.dev->ops->reconfigure(r->x.dev, &n), 0);
	assert_int_equal(xfer1(r, TS, true, b, 2), ST_OK);
}

/* ---- random hostile chains -------------------------------------------------------------- */

static uint32_t rnd_state = 0x12345678u;

static uint32_t rnd(void)
{
	rnd_state ^= rnd_state << 13;
	rnd_state ^= rnd_state >> 17;
	rnd_state ^= rnd_state << 5;
	return rnd_state;
}

static uint32_t rnd_len(void)
{
	static const uint32_t lens[] = { 0, 1, 2, 3, 4, 7, 8, 9, 16, 33, 257 };
	uint32_t x = rnd() % 64;

	if (x == 0)
		return 65536 + rnd() % 8;   /* just past the limit */
	return x < 11 ? lens[x] : 1 + rnd() % 12;
}

static void rnd_hdr(uint8_t *h, uint32_t len)
{
	static const uint16_t addrs[] = { EE << 1, TS << 1, TS2 << 1, 0x33 << 1, 0 };
	uint16_t a = addrs[rnd() % 5];
	uint32_t f = rnd() % 8 ? rnd() % 4 : rnd();

	if (a == 0)
		a = (uint16_t)rnd();
	a = htole16(a);
	f = htole32(f);
	memcpy(h, &a, len < 2 ? len : 2);
	if (len >= 8)
		memcpy(h + 4, &f, 4);
}

struct rnd_chain {
	uint8_t *status;   /* the last device-writable byte, NULL when there is none */
};

/* A chain of 1..6 descriptors, readable ones first, the first readable one a header. */
static void rnd_chain(struct rig *r, struct rnd_chain *c, struct vdrv_buf *b, unsigned *nb)
{
	unsigned n = 1 + rnd() % 6, nread = rnd() % (n + 1);
	uint8_t *h;

	c->status = NULL;
	for (unsigned k = 0; k < n; k++) {
		bool w = k >= nread;
		uint32_t len = k == 0 && !w && rnd() % 4 ? 8 : rnd_len();

		b[k] = (struct vdrv_buf){ len ? galloc(r, len, (void **)&h) : RAM_GPA, len, w };
		if (len && !w)
			memset(h, (int)rnd(), len);
		if (len && k == 0 && !w)
			rnd_hdr(h, len);
		if (len && w) {
			memset(h, 0xee, len);
			c->status = h + len - 1;
		}
	}
	*nb = n;
}

static void test_random_hostile_chains(void **state)
{
	struct rig *r = *state;
	unsigned resets = 0, oks = 0, errs = 0;

	for (unsigned iter = 0; iter < 3000; iter++) {
		struct rnd_chain c[4];
		struct vdrv_buf b[6];
		unsigned n = 1 + rnd() % 4, nb, used = 0, first_lost = n;
		bool lost_status = false, done[4] = { false };
		void *tok;

		r->x.mem.next = r->heap;
		for (unsigned k = 0; k < n; k++) {
			rnd_chain(r, &c[k], b, &nb);
			if (!c[k].status && !lost_status)
				first_lost = k;
			lost_status |= !c[k].status;
			assert_true(vdrv_submit(&r->drv, 0, b, nb, false, &c[k]) >= 0);
		}
		vdrv_kick(&r->drv, 0);
		while (vdrv_get_used(&r->drv, 0, NULL, &tok) == 1) {
			done[(struct rnd_chain *)tok - c] = true;
			used++;
		}
		/*
		 * Every chain comes back, each answerable one with a status, and no mapping leaks.
		 * A chain without a status byte stops the device after its group (NEEDS_RESET).
		 */
		assert_true(lost_status ? used > first_lost : used == n);
		for (unsigned k = 0; k < n; k++) {
			if (!c[k].status || !done[k])
				continue;
			assert_true(*c[k].status == ST_OK || *c[k].status == ST_ERR);
			oks += *c[k].status == ST_OK;
			errs += *c[k].status == ST_ERR;
		}
		assert_int_equal(gmem_flat_outstanding(r->x.gm), r->ring_maps);
		assert_int_equal(needs_reset(r), lost_status);
		if (lost_status) {
			/* The driver reuses its rings: the heap stays where it was. */
			assert_int_equal(vdrv_init(&r->drv, &r->x.io, &r->x.mem, want_features(), 1,
						   QSIZE), 0);
			resets++;
		}
	}
	/* The mix exercised both outcomes, and the device still works. */
	assert_true(oks > 100 && errs > 100 && resets > 10);
	/* The last group may have ended on FAIL_NEXT: one message closes it, then all is well. */
	assert_int_equal(xfer1(r, 0x33, false, NULL, 0), ST_ERR);
	ee_write(r, 0x00, "ok", 2);
}

/* ---- configuration and the host adapter -------------------------------------------------- */

static void test_bad_adapter_refused(void **state)
{
	struct config_device cfg;
	struct vdrv_direct x;

	(void)state;
	cfg_i2c(&cfg);
	snprintf(cfg.u.i2c.adapter, sizeof(cfg.u.i2c.adapter), "/nonexistent/i2c-9");
	assert_int_equal(vdrv_direct_open(&x, &cfg, RAM_GPA, RAM_SIZE, NULL), -ENOENT);
	/* Not an I2C adapter: I2C_FUNCS fails. */
	snprintf(cfg.u.i2c.adapter, sizeof(cfg.u.i2c.adapter), "/dev/null");
	assert_int_equal(vdrv_direct_open(&x, &cfg, RAM_GPA, RAM_SIZE, NULL), -ENOTTY);
}

/* The i2c-stub adapter's /dev node, or "" when the module is not loaded and cannot be. */
static void find_stub(char *dev, size_t len)
{
	struct dirent *de;
	DIR *d;

	dev[0] = '\0';
	if (access("/sys/class/i2c-adapter", F_OK) != 0 &&
	    system("modprobe i2c-stub chip_addr=0x50 >/dev/null 2>&1") != 0)
		return;
	d = opendir("/sys/class/i2c-adapter");
	while (d && (de = readdir(d))) {
		char path[600], name[64] = "";
		FILE *f;

		snprintf(path, sizeof(path), "/sys/class/i2c-adapter/%s/name", de->d_name);
		f = fopen(path, "r");
		if (!f)
			continue;
		if (fgets(name, sizeof(name), f) && strncmp(name, "SMBus stub driver", 17) == 0)
			snprintf(dev, len, "/dev/%s", de->d_name);
		fclose(f);
	}
	if (d)
		closedir(d);
}

static void test_passthrough_i2c_stub(void **state)
{
	struct rig *r;
	char dev[300];
	uint8_t cmd[] = { 0x10, 0x42 }, b[1];
	unsigned found = 0;

	(void)state;
	find_stub(dev, sizeof(dev));
	if (!dev[0] || access(dev, R_OK | W_OK) != 0) {
		fprintf(stderr, "SKIP: i2c-stub not available\n");
		skip();
	}
	r = calloc(1, sizeof(*r));
	assert_non_null(r);
	cfg_i2c(&r->cfg);
	snprintf(r->cfg.u.i2c.adapter, sizeof(r->cfg.u.i2c.adapter), "%s", dev);
	assert_int_equal(rig_open(r), 0);
	assert_int_equal(xfer1(r, EE, false, cmd, 2), ST_OK);
	struct msg m[2] = { { EE, false, 1, cmd, 0 }, { EE, true, 1, b, 0 } };
	xfer(r, m, 2);
	assert_int_equal(m[1].status, ST_OK);
	assert_int_equal(b[0], 0x42);
	for (uint16_t a = 0x03; a <= 0x77; a++)
		found += xfer1(r, a, false, NULL, 0) == ST_OK;
	assert_int_equal(found, 1);
	rig_close(r);
	free(r);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)
		T(test_identity_and_features),
		T(test_eeprom_write_read_back),
		T(test_eeprom_page_wrap),
		T(test_eeprom_current_address_read),
		T(test_eeprom_sequential_read_wraps),
		cmocka_unit_test(test_eeprom_persistence),
		T(test_lm75_registers),
		T(test_lm75_pointer),
		T(test_absent_address_errors),
		T(test_fail_next_group),
		T(test_group_too_long),
		T(test_probe_finds_exactly_the_sims),
		cmocka_unit_test(test_allow_list),
		T(test_short_header),
		T(test_read_buffer_not_writable),
		T(test_write_buffer_writable),
		T(test_absurd_length),
		T(test_bad_header_fields),
		T(test_split_header_accepted_too_many_refused),
		T(test_missing_status_needs_reset),
		T(test_header_only_needs_reset),
		T(test_bad_request_in_group_fails_rest),
		T(test_group_split_across_kicks),
		T(test_reconfigure_allow_list),
		T(test_random_hostile_chains),
		cmocka_unit_test(test_bad_adapter_refused),
		cmocka_unit_test(test_passthrough_i2c_stub),
#undef T
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
