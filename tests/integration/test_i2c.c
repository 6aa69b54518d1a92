/*
 * virtio-i2c through the real daemon on xensim: the guest writes the simulated EEPROM, reads it
 * back, probes the bus, and the contents survive a daemon restart in the configured file.
 */
#include <endian.h>
#include <errno.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "devices/device.h"
#include "devices/virtqueue.h"
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

/* The daemon up, the driver negotiating more on top of the defaults, with a ring of qsize. */
static void guest_start_ring(struct guest *g, const char *eeprom, bool grants, uint64_t more,
			     uint16_t qsize)
{
	char ini[600];
	uint64_t want = VIRTIO_BIT(VIRTIO_F_VERSION_1) | VIRTIO_BIT(0) | more;

	memset(g, 0, sizeof(*g));
	g->t = itest_new(&(struct xsim_dom_opts){ .name = "g1" });
	assert_non_null(g->t);
	snprintf(ini, sizeof(ini), ini_fmt, grants ? "yes" : "no", eeprom);
	assert_int_equal(itest_serve(g->t, ini), 0);
	xsim_vio_init(&g->vio, g->t->dom, 0, WIN0, SPI);
	assert_int_equal(xsim_vmem_init(&g->mem, g->t->dom, RAM_GPA, HEAP_SIZE, grants), 0);
	if (grants)
		want |= VIRTIO_BIT(VIRTIO_F_ACCESS_PLATFORM);
	assert_int_equal(vdrv_init(&g->drv, &g->vio.io, &g->mem, want, 1, qsize), 0);
	assert_int_equal(g->drv.device_id, 34);
	g->heap = g->mem.next;
}

static void guest_start(struct guest *g, const char *eeprom, bool grants)
{
	guest_start_ring(g, eeprom, grants, 0, 64);
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

static double now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

/* Wait until process pid is stopped (state T in /proc/<pid>/stat). */
static void wait_stopped(pid_t pid)
{
	char path[64], buf[512];

	snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
	for (double end = now_ms() + WAIT_MS;; usleep(1000)) {
		FILE *f = fopen(path, "r");
		size_t n = f ? fread(buf, 1, sizeof(buf) - 1, f) : 0;
		char *p;

		if (f)
			fclose(f);
		buf[n] = '\0';
		p = strrchr(buf, ')');
		if (p && p[1] == ' ' && p[2] == 'T')
			return;
		if (now_ms() >= end)
			fail_msg("the daemon did not stop at its stop point");
	}
}

/* Wait for n more used chains, each answered with its status byte. */
static void wait_used(struct guest *g, unsigned n)
{
	int got = vdrv_wait_used(&g->drv, 0, n, WAIT_MS);

	assert_true(got >= 0);
	if ((unsigned)got < n) {
		itest_dump_log(g->t);
		fail_msg("%d of %u requests answered", got, n);
	}
}

/*
 * The device's turn ends at VQ_BUDGET requests with the ring just emptied; the next request is
 * kicked for only if avail_event asks, as Linux does. The ring holds I2C_QUEUE_MAX (128), half
 * the budget, so the daemon stops itself (XSIM_STOP_AT) where its turn looks at the ring after
 * the first 128, the guest refills the ring, and the same turn serves 128 more. Before vq_more()
 * that turn left avail_event stale and request 257 was never kicked for.
 */
static void test_budget_rearm(void **state)
{
	enum { Q = 128, N = 2 * Q + 1 };
	char dir[] = "/tmp/itest_i2c.XXXXXX", path[64];
	struct vdrv_buf b[N][2];
	uint8_t *st[N];
	unsigned reaped = 0, refilled = 0;
	struct guest g;
	uint16_t old;

	(void)state;
	assert_true(2 * Q == VQ_BUDGET);
	assert_non_null(mkdtemp(dir));
	snprintf(path, sizeof(path), "%s/eeprom.bin", dir);
	/* vq.pop passes 1 to Q take the first ring; pass Q + 1 finds it empty. */
	setenv("XSIM_STOP_AT", "vq.pop:129", 1);
	guest_start_ring(&g, path, false, VIRTIO_BIT(VIRTIO_F_EVENT_IDX) |
			 VIRTIO_BIT(VIRTIO_F_INDIRECT_DESC), Q);
	unsetenv("XSIM_STOP_AT");
	assert_int_equal(g.drv.vq[0].num, Q);
	/* Zero-length writes to the EEPROM (a probe): a header and a status each. */
	for (unsigned i = 0; i < N; i++) {
		uint16_t a = htole16(EE << 1);
		uint8_t *h;

		b[i][0] = (struct vdrv_buf){ galloc(&g, 8, &h), 8, false };
		memset(h, 0, 8);
		memcpy(h, &a, 2);
		b[i][1] = (struct vdrv_buf){ galloc(&g, 1, &st[i]), 1, true };
		*st[i] = 0xee;
	}
	for (unsigned i = 0; i < Q; i++)
		assert_true(vdrv_submit(&g.drv, 0, b[i], 2, true, st[i]) >= 0);
	vdrv_kick(&g.drv, 0);
	wait_stopped(g.t->dm.pid);
	/*
	 * Stopped in the turn: the first Q are answered, the ring is refilled as Linux would. The
	 * checks wait for SIGCONT: a failure must not leave the daemon stopped.
	 */
	for (unsigned i = 0; i < Q; i++)
		reaped += vdrv_get_used(&g.drv, 0, NULL, NULL) == 1;
	old = g.drv.vq[0].avail_idx;
	for (unsigned i = Q; i < 2 * Q; i++)
		refilled += vdrv_submit(&g.drv, 0, b[i], 2, true, st[i]) >= 0;
	vdrv_kick_if_asked(&g.drv, 0, old);
	assert_int_equal(kill(g.t->dm.pid, SIGCONT), 0);
	assert_int_equal(reaped, Q);
	assert_int_equal(refilled, Q);
	wait_used(&g, Q);
	/*
	 * The daemon answers a register read from its loop, after the turn that answered the
	 * requests has returned: request 257 cannot slip in before that turn's last look at the
	 * ring, which would serve it and hide a stale avail_event.
	 */
	vdrv_status(&g.drv);
	old = g.drv.vq[0].avail_idx;
	assert_true(vdrv_submit(&g.drv, 0, b[N - 1], 2, true, st[N - 1]) >= 0);
	vdrv_kick_if_asked(&g.drv, 0, old);
	wait_used(&g, 1);
	for (unsigned i = 0; i < N; i++)
		assert_int_equal(*st[i], ST_OK);
	assert_int_equal(g.vio.errors, 0);
	guest_stop(&g);
	unlink(path);
	rmdir(dir);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_eeprom_round_trip),
		cmocka_unit_test(test_eeprom_round_trip_grants),
		cmocka_unit_test(test_budget_rearm),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
