/*
 * virtio-i2c through the real daemon on xensim: the guest writes the simulated EEPROM, reads it
 * back, probes the bus, and the contents survive a daemon restart in the configured file.
 */
#include <endian.h>
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "devices/device.h"
#include "tests/integration/itest.h"

#define RAM_GPA   UINT64_C(0x40000000)
#define HEAP_SIZE (4u << 20)
#define SPI       33
#define EE        0x50
#define TS        0x48
#define ST_OK     0
#define ST_ERR    1
#define WAIT_MS   5000

static const char ini_fmt[] =
	"[guest]\nname = g1\ndiscovery = explicit\ngrant_usage = %s\n\n"
	"[i2c \"bus0\"]\nmmio = 0x02000000\nirq = 33\n"
	"sim = eeprom@0x50:%s\nsim = lm75@0x48\n";

struct guest {
	struct itest *t;
	struct xsim_vio vio;
	struct vdrv_mem mem;
	struct vdrv drv;
	uint64_t heap;
};

struct msg {
	uint16_t addr;
	bool rd;
	uint32_t len;
	uint8_t *data;
	uint8_t status;
};

static void guest_start(struct guest *g, const char *eeprom, bool grants)
{
	char ini[600];
	uint64_t want = VIRTIO_BIT(VIRTIO_F_VERSION_1) | VIRTIO_BIT(0);

	memset(g, 0, sizeof(*g));
	g->t = itest_new(&(struct xsim_dom_opts){ .name = "g1" });
	assert_non_null(g->t);
	snprintf(ini, sizeof(ini), ini_fmt, grants ? "yes" : "no", eeprom);
	assert_int_equal(itest_serve(g->t, ini), 0);
	xsim_vio_init(&g->vio, g->t->dom, 0, WIN0, SPI);
	assert_int_equal(xsim_vmem_init(&g->mem, g->t->dom, RAM_GPA, HEAP_SIZE, grants), 0);
	if (grants)
		want |= VIRTIO_BIT(VIRTIO_F_ACCESS_PLATFORM);
	assert_int_equal(vdrv_init(&g->drv, &g->vio.io, &g->mem, want, 1, 64), 0);
	assert_int_equal(g->drv.device_id, 34);
	g->heap = g->mem.next;
}

static void guest_stop(struct guest *g)
{
	int st = itest_free(g->t);

	assert_true(WIFEXITED(st));
	assert_int_equal(WEXITSTATUS(st), 0);
}

static uint64_t galloc(struct guest *g, uint32_t len, uint8_t **host)
{
	uint64_t gpa = vdrv_alloc(&g->mem, len, 8, (void **)host);

	assert_true(gpa != 0);
	return gpa;
}

static void submit(struct guest *g, struct msg *m, bool fail_next, uint8_t **st, uint8_t **buf)
{
	struct vdrv_buf b[3];
	unsigned n = 0;
	uint8_t *h;
	uint16_t a = htole16((uint16_t)(m->addr << 1));
	uint32_t f = htole32((m->rd ? 2u : 0) | (fail_next ? 1u : 0));

	b[n++] = (struct vdrv_buf){ galloc(g, 8, &h), 8, false };
	memcpy(h, &a, 2);
	memcpy(h + 4, &f, 4);
	*buf = NULL;
	if (m->len) {
		b[n++] = (struct vdrv_buf){ galloc(g, m->len, buf), m->len, m->rd };
		memcpy(*buf, m->data, m->len);
	}
	b[n++] = (struct vdrv_buf){ galloc(g, 1, st), 1, true };
	**st = 0xee;
	assert_true(vdrv_submit(&g->drv, 0, b, n, false, m) >= 0);
}

/* One FAIL_NEXT group, one kick; waits (interrupts, then polling) for every message. */
static void xfer(struct guest *g, struct msg *m, unsigned n)
{
	uint8_t *st[4], *buf[4];
	unsigned got = 0, waits = 0;

	assert_true(n <= 4);
	g->mem.next = g->heap;
	vdrv_enable_irq(&g->drv, 0);
	for (unsigned k = 0; k < n; k++)
		submit(g, &m[k], k + 1 < n, &st[k], &buf[k]);
	vdrv_kick(&g->drv, 0);
	while (got < n && waits < WAIT_MS / 10) {
		int r = vdrv_get_used(&g->drv, 0, NULL, NULL);

		assert_true(r >= 0);
		if (r == 1) {
			got++;
			continue;
		}
		g->vio.io.wait_irq(&g->vio.io, 10);
		waits++;
	}
	assert_int_equal(got, n);
	for (unsigned k = 0; k < n; k++) {
		m[k].status = *st[k];
		if (m[k].rd && m[k].len)
			memcpy(m[k].data, buf[k], m[k].len);
	}
}

static uint8_t xfer1(struct guest *g, uint16_t addr, bool rd, void *data, uint32_t len)
{
	struct msg m = { addr, rd, len, data, 0 };

	xfer(g, &m, 1);
	return m.status;
}

static void ee_read(struct guest *g, uint8_t at, uint8_t *out, uint32_t len)
{
	struct msg m[2] = { { EE, false, 1, &at, 0 }, { EE, true, len, out, 0 } };

	xfer(g, m, 2);
	assert_int_equal(m[0].status, ST_OK);
	assert_int_equal(m[1].status, ST_OK);
}

static void eeprom_round_trip(bool grants)
{
	char dir[] = "/tmp/itest_i2c.XXXXXX", path[64];
	uint8_t w[] = { 0x20, 'x', 'e', 'n', '!' }, out[4], file[256], t[2];
	struct guest g;
	unsigned found = 0;
	FILE *f;

	assert_non_null(mkdtemp(dir));
	snprintf(path, sizeof(path), "%s/eeprom.bin", dir);
	guest_start(&g, path, grants);
	assert_int_equal(xfer1(&g, EE, false, w, sizeof(w)), ST_OK);
	ee_read(&g, 0x20, out, 4);
	assert_memory_equal(out, "xen!", 4);
	assert_int_equal(xfer1(&g, 0x33, true, out, 1), ST_ERR);
	assert_int_equal(xfer1(&g, TS, true, t, 2), ST_OK);
	assert_memory_equal(t, "\x19\x00", 2);
	for (uint16_t a = 0x03; a <= 0x77; a++)
		found += xfer1(&g, a, false, NULL, 0) == ST_OK;
	assert_int_equal(found, 2);
	assert_int_equal(g.vio.errors, 0);
	guest_stop(&g);

	/* On the host: the bytes are in the file at their offset. */
	f = fopen(path, "rb");
	assert_non_null(f);
	assert_int_equal(fread(file, 1, sizeof(file), f), 256);
	fclose(f);
	assert_memory_equal(file + 0x20, "xen!", 4);
	assert_int_equal(file[0x24], 0xff);

	/* A new daemon serves the same contents. */
	guest_start(&g, path, grants);
	ee_read(&g, 0x20, out, 4);
	assert_memory_equal(out, "xen!", 4);
	guest_stop(&g);
	unlink(path);
	rmdir(dir);
}

static void test_eeprom_round_trip(void **state)
{
	(void)state;
	eeprom_round_trip(false);
}

static void test_eeprom_round_trip_grants(void **state)
{
	(void)state;
	eeprom_round_trip(true);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_eeprom_round_trip),
		cmocka_unit_test(test_eeprom_round_trip_grants),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
