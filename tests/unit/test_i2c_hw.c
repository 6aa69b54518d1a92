/*
 * The host-adapter backend (adapter = /dev/i2c-N) against a fake i2c-dev: this binary defines
 * ioctl(), so the device's I2C_FUNCS / I2C_RDWR / I2C_SLAVE_FORCE / I2C_SMBUS calls land here
 * and are played on a simulated bus the way the kernel would (SMBus commands emulated with
 * plain messages). The "adapter" node is an ordinary temporary file. Other ioctls go to the
 * kernel. This checks what the device asks of the kernel; test_i2c.c's i2c-stub case checks a
 * real kernel adapter where one can be loaded.
 */
#include <endian.h>
#include <errno.h>
#include <linux/i2c-dev.h>
#include <linux/i2c.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cmocka.h>

#include "devices/i2c_sim.h"
#include "tests/lib/gmem_flat.h"
#include "tests/lib/vdriver.h"
#include "tests/lib/vdriver_direct.h"

#define RAM_GPA   UINT64_C(0x40000000)
#define RAM_SIZE  (1u << 20)
#define QSIZE     64
#define EE        0x50
#define TS        0x48

#define ST_OK   0
#define ST_ERR  1

/* ---- the fake adapter -------------------------------------------------------------------- */

static struct fake {
	struct i2c_sim_bus *bus;     /* what is "wired" to the adapter */
	unsigned long funcs;
	bool no_zero_len;            /* like adapters with I2C_AQ_NO_ZERO_LEN */
	uint16_t slave;              /* I2C_SLAVE_FORCE */
	unsigned rdwr_calls, smbus_calls, last_nmsgs;
	uint32_t last_smbus_size;
} fake;

static int fake_rdwr(struct i2c_rdwr_ioctl_data *d)
{
	struct i2c_sim_msg m[I2C_RDWR_IOCTL_MAX_MSGS];

	fake.rdwr_calls++;
	fake.last_nmsgs = d->nmsgs;
	if (d->nmsgs == 0 || d->nmsgs > I2C_RDWR_IOCTL_MAX_MSGS)
		return errno = EINVAL, -1;
	for (unsigned k = 0; k < d->nmsgs; k++) {
		if (d->msgs[k].flags & ~I2C_M_RD)
			return errno = EINVAL, -1;
		if (fake.no_zero_len && d->msgs[k].len == 0)
			return errno = EOPNOTSUPP, -1;
		m[k] = (struct i2c_sim_msg){ .addr = d->msgs[k].addr,
					     .rd = d->msgs[k].flags & I2C_M_RD,
					     .buf = d->msgs[k].buf, .len = d->msgs[k].len };
	}
	/* The kernel's answer is all or nothing. */
	if (i2c_sim_transfer(fake.bus, m, d->nmsgs) != d->nmsgs)
		return errno = ENXIO, -1;
	return (int)d->nmsgs;
}

static int fake_smbus_run(struct i2c_sim_msg *m, unsigned n)
{
	return i2c_sim_transfer(fake.bus, m, n) == n ? 0 : (errno = ENXIO, -1);
}

/* SMBus emulated with plain messages, as i2c-core does for adapters without native SMBus. */
static int fake_smbus(struct i2c_smbus_ioctl_data *a)
{
	uint8_t w[I2C_SMBUS_BLOCK_MAX + 1] = { a->command }, r[I2C_SMBUS_BLOCK_MAX];
	bool rd = a->read_write == I2C_SMBUS_READ;
	struct i2c_sim_msg m[2] = { { fake.slave, false, w, 1 }, { fake.slave, true, r, 0 } };

	fake.smbus_calls++;
	fake.last_smbus_size = a->size;
	switch (a->size) {
	case I2C_SMBUS_QUICK:
		m[0] = (struct i2c_sim_msg){ fake.slave, rd, NULL, 0 };
		return fake_smbus_run(m, 1);
	case I2C_SMBUS_BYTE:
		if (!rd)
			return fake_smbus_run(m, 1);
		m[0] = (struct i2c_sim_msg){ fake.slave, true, &a->data->byte, 1 };
		return fake_smbus_run(m, 1);
	case I2C_SMBUS_BYTE_DATA:
		if (!rd) {
			w[1] = a->data->byte;
			m[0].len = 2;
			return fake_smbus_run(m, 1);
		}
		m[1].len = 1;
		if (fake_smbus_run(m, 2) < 0)
			return -1;
		a->data->byte = r[0];
		return 0;
	case I2C_SMBUS_WORD_DATA:
		if (!rd) {
			w[1] = (uint8_t)a->data->word;
			w[2] = (uint8_t)(a->data->word >> 8);
			m[0].len = 3;
			return fake_smbus_run(m, 1);
		}
		m[1].len = 2;
		if (fake_smbus_run(m, 2) < 0)
			return -1;
		a->data->word = (uint16_t)(r[0] | r[1] << 8);
		return 0;
	case I2C_SMBUS_I2C_BLOCK_DATA:
		if (a->data->block[0] == 0 || a->data->block[0] > I2C_SMBUS_BLOCK_MAX)
			return errno = EINVAL, -1;
		if (!rd) {
			memcpy(&w[1], &a->data->block[1], a->data->block[0]);
			m[0].len = 1u + a->data->block[0];
			return fake_smbus_run(m, 1);
		}
		m[1].len = a->data->block[0];
		if (fake_smbus_run(m, 2) < 0)
			return -1;
		memcpy(&a->data->block[1], r, a->data->block[0]);
		return 0;
	}
	return errno = EOPNOTSUPP, -1;
}

int ioctl(int fd, unsigned long req, ...)
{
	va_list ap;
	void *arg;

	va_start(ap, req);
	arg = va_arg(ap, void *);
	va_end(ap);
	switch (req) {
	case I2C_FUNCS:
		*(unsigned long *)arg = fake.funcs;
		return 0;
	case I2C_SLAVE_FORCE:
		fake.slave = (uint16_t)(uintptr_t)arg;
		return fake.slave > 0x7f ? (errno = EINVAL, -1) : 0;
	case I2C_RDWR:
		return fake_rdwr(arg);
	case I2C_SMBUS:
		return fake_smbus(arg);
	}
	return (int)syscall(SYS_ioctl, fd, req, arg);
}

/* ---- the guest side ---------------------------------------------------------------------- */

struct rig {
	struct vdrv_direct x;
	struct vdrv drv;
	struct config_device cfg;
	char node[32];
	uint64_t heap;
};

struct msg {
	uint16_t addr;
	bool rd;
	uint32_t len;
	uint8_t *data;
	uint8_t status;
};

/* A rig whose adapter has `funcs`, with an EEPROM and an LM75 wired to it. */
static struct rig *rig_new(unsigned long funcs)
{
	struct rig *r = calloc(1, sizeof(*r));
	int fd;

	assert_non_null(r);
	memset(&fake, 0, sizeof(fake));
	fake.funcs = funcs;
	fake.bus = i2c_sim_bus_new("fake adapter");
	assert_non_null(fake.bus);
	assert_int_equal(i2c_sim_add_eeprom(fake.bus, EE, NULL), 0);
	assert_int_equal(i2c_sim_add_lm75(fake.bus, TS), 0);
	snprintf(r->node, sizeof(r->node), "/tmp/test_i2c_hw.XXXXXX");
	fd = mkstemp(r->node);
	assert_true(fd >= 0);
	close(fd);
	r->cfg.type = DEV_I2C;
	r->cfg.devid = -1;
	snprintf(r->cfg.name, sizeof(r->cfg.name), "hw");
	snprintf(r->cfg.u.i2c.adapter, sizeof(r->cfg.u.i2c.adapter), "%s", r->node);
	return r;
}

static void rig_open(struct rig *r)
{
	uint64_t want = VIRTIO_BIT(VIRTIO_F_VERSION_1) | VIRTIO_BIT(0);

	assert_int_equal(vdrv_direct_open(&r->x, &r->cfg, RAM_GPA, RAM_SIZE, NULL), 0);
	assert_int_equal(vdrv_init(&r->drv, &r->x.io, &r->x.mem, want, 1, QSIZE), 0);
	r->heap = r->x.mem.next;
}

static void rig_free(struct rig *r)
{
	vdrv_direct_close(&r->x);
	unlink(r->node);
	i2c_sim_bus_free(fake.bus);
	fake.bus = NULL;
	free(r);
}

static uint64_t galloc(struct rig *r, uint32_t len, uint8_t **host)
{
	uint64_t gpa = vdrv_alloc(&r->x.mem, len, 8, (void **)host);

	assert_true(gpa != 0);
	return gpa;
}

/* Submit msgs[0..n) as one FAIL_NEXT group, kick once, collect the statuses. */
static void xfer(struct rig *r, struct msg *m, unsigned n)
{
	uint8_t *st[8], *buf[8], *h;
	struct vdrv_buf b[3];

	assert_true(n <= 8);
	r->x.mem.next = r->heap;
	for (unsigned k = 0; k < n; k++) {
		uint32_t flags = htole32((m[k].rd ? 2u : 0) | (k + 1 < n ? 1u : 0));
		uint16_t a = htole16((uint16_t)(m[k].addr << 1));
		unsigned nb = 0;

		b[nb++] = (struct vdrv_buf){ galloc(r, 8, &h), 8, false };
		memcpy(h, &a, 2);
		memcpy(h + 4, &flags, 4);
		buf[k] = NULL;
		if (m[k].len) {
			b[nb++] = (struct vdrv_buf){ galloc(r, m[k].len, &buf[k]), m[k].len,
						     m[k].rd };
			memcpy(buf[k], m[k].data, m[k].len);
		}
		b[nb++] = (struct vdrv_buf){ galloc(r, 1, &st[k]), 1, true };
		*st[k] = 0xee;
		assert_true(vdrv_submit(&r->drv, 0, b, nb, false, NULL) >= 0);
	}
	vdrv_kick(&r->drv, 0);
	for (unsigned k = 0; k < n; k++)
		assert_int_equal(vdrv_get_used(&r->drv, 0, NULL, NULL), 1);
	for (unsigned k = 0; k < n; k++) {
		m[k].status = *st[k];
		if (m[k].rd && m[k].len)
			memcpy(m[k].data, buf[k], m[k].len);
	}
}

static uint8_t xfer1(struct rig *r, uint16_t addr, bool rd, void *data, uint32_t len)
{
	struct msg m = { addr, rd, len, data, 0 };

	xfer(r, &m, 1);
	return m.status;
}

static unsigned probe_all(struct rig *r, bool rd)
{
	unsigned found = 0;

	for (uint16_t a = 0x03; a <= 0x77; a++)
		found += xfer1(r, a, rd, NULL, 0) == ST_OK;
	return found;
}

/* ---- tests ------------------------------------------------------------------------------- */

static void test_rdwr_round_trip(void **state)
{
	struct rig *r = rig_new(I2C_FUNC_I2C | I2C_FUNC_SMBUS_QUICK);
	uint8_t w[] = { 0x30, 'h', 'w' }, at = 0x30, out[2] = { 0 };
	struct msg m[2] = { { EE, false, 1, &at, 0 }, { EE, true, 2, out, 0 } };

	(void)state;
	rig_open(r);
	assert_int_equal(xfer1(r, EE, false, w, 3), ST_OK);
	assert_int_equal(fake.rdwr_calls, 1);
	xfer(r, m, 2);
	assert_int_equal(m[0].status, ST_OK);
	assert_int_equal(m[1].status, ST_OK);
	assert_memory_equal(out, "hw", 2);
	/* One combined transfer: a single ioctl with both messages. */
	assert_int_equal(fake.rdwr_calls, 2);
	assert_int_equal(fake.last_nmsgs, 2);
	rig_free(r);
}

static void test_rdwr_failure_fails_group(void **state)
{
	struct rig *r = rig_new(I2C_FUNC_I2C);
	uint8_t at = 0, b1 = 0x77, b2 = 0x77;
	struct msg m[3] = { { EE, false, 1, &at, 0 }, { 0x33, true, 1, &b1, 0 },
			    { EE, true, 1, &b2, 0 } };

	(void)state;
	rig_open(r);
	xfer(r, m, 3);
	/* The kernel does not say which message failed: the whole group reports the error. */
	assert_int_equal(m[0].status, ST_ERR);
	assert_int_equal(m[1].status, ST_ERR);
	assert_int_equal(m[2].status, ST_ERR);
	assert_int_equal(b2, 0);
	assert_int_equal(fake.rdwr_calls, 1);
	assert_int_equal(fake.last_nmsgs, 3);
	rig_free(r);
}

static void test_probe_uses_smbus_quick(void **state)
{
	struct rig *r = rig_new(I2C_FUNC_I2C | I2C_FUNC_SMBUS_QUICK);

	(void)state;
	rig_open(r);
	assert_int_equal(probe_all(r, false), 2);
	assert_int_equal(probe_all(r, true), 2);
	assert_int_equal(fake.rdwr_calls, 0);
	assert_int_equal(fake.smbus_calls, 2 * (0x77 - 0x03 + 1));
	assert_int_equal(fake.last_smbus_size, I2C_SMBUS_QUICK);
	rig_free(r);
}

static void test_probe_without_quick_uses_rdwr(void **state)
{
	struct rig *r = rig_new(I2C_FUNC_I2C);

	(void)state;
	rig_open(r);
	assert_int_equal(probe_all(r, false), 2);
	assert_int_equal(fake.smbus_calls, 0);
	assert_int_equal(fake.rdwr_calls, 0x77 - 0x03 + 1);
	/* An adapter that refuses zero-length messages answers every probe with an error. */
	fake.no_zero_len = true;
	assert_int_equal(probe_all(r, false), 0);
	rig_free(r);
}

static void test_smbus_only_adapter(void **state)
{
	struct rig *r = rig_new(I2C_FUNC_SMBUS_QUICK | I2C_FUNC_SMBUS_BYTE |
				I2C_FUNC_SMBUS_BYTE_DATA | I2C_FUNC_SMBUS_WORD_DATA |
				I2C_FUNC_SMBUS_I2C_BLOCK);
	uint8_t bd[] = { 0x70, 0x5a }, wd[] = { 0x72, 0x01, 0x02 }, blk[] = { 0x78, 1, 2, 3, 4, 5 };
	uint8_t cmd = 0x70, out[5];
	struct msg m[2] = { { EE, false, 1, &cmd, 0 }, { EE, true, 1, out, 0 } };

	(void)state;
	rig_open(r);
	assert_int_equal(xfer1(r, EE, false, bd, 2), ST_OK);
	assert_int_equal(fake.last_smbus_size, I2C_SMBUS_BYTE_DATA);
	assert_int_equal(xfer1(r, EE, false, wd, 3), ST_OK);
	assert_int_equal(fake.last_smbus_size, I2C_SMBUS_WORD_DATA);
	assert_int_equal(xfer1(r, EE, false, blk, 6), ST_OK);
	assert_int_equal(fake.last_smbus_size, I2C_SMBUS_I2C_BLOCK_DATA);
	/* Register reads: byte data, word data, I2C block data. */
	xfer(r, m, 2);
	assert_int_equal(m[1].status, ST_OK);
	assert_int_equal(out[0], 0x5a);
	cmd = 0x72;
	m[1].len = 2;
	xfer(r, m, 2);
	assert_int_equal(m[1].status, ST_OK);
	assert_memory_equal(out, "\x01\x02", 2);
	assert_int_equal(fake.last_smbus_size, I2C_SMBUS_WORD_DATA);
	cmd = 0x78;
	m[1].len = 5;
	xfer(r, m, 2);
	assert_int_equal(m[1].status, ST_OK);
	assert_memory_equal(out, "\x01\x02\x03\x04\x05", 5);
	assert_int_equal(fake.last_smbus_size, I2C_SMBUS_I2C_BLOCK_DATA);
	/* Current-address read: one byte receive. */
	assert_int_equal(xfer1(r, EE, true, out, 1), ST_OK);
	assert_int_equal(fake.last_smbus_size, I2C_SMBUS_BYTE);
	assert_int_equal(probe_all(r, false), 2);
	assert_int_equal(fake.rdwr_calls, 0);
	rig_free(r);
}

static void test_smbus_inexpressible_transfers_fail(void **state)
{
	struct rig *r = rig_new(I2C_FUNC_SMBUS_QUICK | I2C_FUNC_SMBUS_BYTE_DATA);
	uint8_t big[40] = { 0 }, a = 0, b[2] = { 0 };
	struct msg three[3] = { { EE, false, 1, &a, 0 }, { EE, true, 1, b, 0 },
				{ EE, true, 1, b, 0 } };

	(void)state;
	rig_open(r);
	/* No block support, too long for SMBus anyway, and three messages: all refused. */
	assert_int_equal(xfer1(r, EE, false, big, 40), ST_ERR);
	assert_int_equal(xfer1(r, EE, true, b, 2), ST_ERR);
	xfer(r, three, 3);
	assert_int_equal(three[0].status, ST_ERR);
	assert_int_equal(fake.smbus_calls, 0);
	assert_int_equal(fake.rdwr_calls, 0);
	rig_free(r);
}

static void test_allow_list_keeps_bus_untouched(void **state)
{
	struct rig *r = rig_new(I2C_FUNC_I2C | I2C_FUNC_SMBUS_QUICK);
	uint8_t p = 0;

	(void)state;
	r->cfg.u.i2c.allow_set = true;
	r->cfg.u.i2c.allow[EE] = 1;
	rig_open(r);
	assert_int_equal(xfer1(r, TS, false, &p, 1), ST_ERR);
	assert_int_equal(xfer1(r, TS, false, NULL, 0), ST_ERR);
	assert_int_equal(fake.rdwr_calls + fake.smbus_calls, 0);
	assert_int_equal(probe_all(r, false), 1);
	rig_free(r);
}

static void test_sim_shadows_adapter(void **state)
{
	struct rig *r = rig_new(I2C_FUNC_I2C | I2C_FUNC_SMBUS_QUICK);
	struct config_i2c_sim *s = &r->cfg.u.i2c.sims[0];
	uint8_t ptr = 0, t[2], w[] = { 0x00, 'E' };
	struct msg mixed[2] = { { 0x4c, false, 1, &ptr, 0 }, { EE, false, 2, w, 0 } };

	(void)state;
	s->kind = I2C_SIM_LM75;
	s->addr = 0x4c;
	r->cfg.u.i2c.nsims = 1;
	rig_open(r);
	assert_int_equal(xfer1(r, 0x4c, true, t, 2), ST_OK);   /* the local sim */
	assert_memory_equal(t, "\x19\x00", 2);
	assert_int_equal(fake.rdwr_calls, 0);
	assert_int_equal(probe_all(r, false), 3);
	/* A transfer cannot span the sim and the adapter: it ends where the backend changes. */
	xfer(r, mixed, 2);
	assert_int_equal(mixed[0].status, ST_OK);
	assert_int_equal(mixed[1].status, ST_ERR);
	assert_int_equal(fake.rdwr_calls, 0);
	rig_free(r);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_rdwr_round_trip),
		cmocka_unit_test(test_rdwr_failure_fails_group),
		cmocka_unit_test(test_probe_uses_smbus_quick),
		cmocka_unit_test(test_probe_without_quick_uses_rdwr),
		cmocka_unit_test(test_smbus_only_adapter),
		cmocka_unit_test(test_smbus_inexpressible_transfers_fail),
		cmocka_unit_test(test_allow_list_keeps_bus_untouched),
		cmocka_unit_test(test_sim_shadows_adapter),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
