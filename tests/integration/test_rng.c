/*
 * virtio-rng through the real daemon on xensim, driven the way Linux drives it: the driver kicks
 * only when the device asks (EVENT_IDX). The device stops serving at its per-turn budget or when
 * its rate limit's bucket runs dry; stopping there with the ring just emptied must still ask for
 * the next kick.
 */
#include <endian.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>

#include "devices/device.h"
#include "devices/virtqueue.h"
#include "tests/integration/itest.h"

#define RAM_GPA  UINT64_C(0x40000000)
#define RAM_LEN  (UINT64_C(4) << 20)
#define SPI      33
#define QSIZE    256     /* RNG_QUEUE_MAX */
#define REQ      64      /* bytes per request */
#define WAIT_MS  10000
#define WANT (VIRTIO_BIT(VIRTIO_F_VERSION_1) | VIRTIO_BIT(VIRTIO_F_EVENT_IDX))

struct guest {
	struct itest *t;
	struct xsim_vio vio;
	struct vdrv_mem mem;
	struct vdrv drv;
	uint8_t *buf;            /* QSIZE + 1 request buffers of REQ bytes */
	uint64_t buf_gpa;
};

/* The daemon serving one rng with the given extra keys, the driver up on a ring of QSIZE. */
static void guest_start(struct guest *g, const char *keys)
{
	char ini[256];

	memset(g, 0, sizeof(*g));
	g->t = itest_new(&(struct xsim_dom_opts){ .name = "g1" });
	assert_non_null(g->t);
	snprintf(ini, sizeof(ini),
		 "[guest]\nname = g1\ndiscovery = explicit\n\n[rng]\nmmio = 0x02000000\nirq = 33\n%s",
		 keys);
	assert_int_equal(itest_serve(g->t, ini), 0);
	xsim_vio_init(&g->vio, g->t->dom, 0, WIN0, SPI);
	assert_int_equal(xsim_vmem_init(&g->mem, g->t->dom, RAM_GPA, RAM_LEN, false), 0);
	assert_int_equal(vdrv_init(&g->drv, &g->vio.io, &g->mem, WANT, 1, QSIZE), 0);
	assert_int_equal(g->drv.device_id, 4);
	assert_int_equal(g->drv.vq[0].num, QSIZE);
	g->buf_gpa = vdrv_alloc(&g->mem, (QSIZE + 1) * REQ, 64, (void **)&g->buf);
	assert_int_not_equal(g->buf_gpa, 0);
}

static void guest_stop(struct guest *g)
{
	int st = itest_free(g->t);

	g->t = NULL;
	assert_true(WIFEXITED(st));
	assert_int_equal(WEXITSTATUS(st), 0);
}

static double now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

/* Queue request i (buffer i), without a kick. */
static void submit(struct guest *g, unsigned i)
{
	struct vdrv_buf b = { g->buf_gpa + (uint64_t)i * REQ, REQ, true };

	assert_true(vdrv_submit(&g->drv, 0, &b, 1, false, (void *)(uintptr_t)(i + 1)) >= 0);
}

/* Wait for n more used requests, each answered with REQ bytes. */
static void wait_used(struct guest *g, unsigned n)
{
	unsigned got = 0;

	for (double end = now_ms() + WAIT_MS; got < n;) {
		uint32_t len;
		int rc = vdrv_get_used(&g->drv, 0, &len, NULL);

		assert_true(rc >= 0);
		if (rc > 0) {
			assert_int_equal(len, REQ);
			got++;
			continue;
		}
		if (now_ms() >= end) {
			itest_dump_log(g->t);
			fail_msg("%u of %u requests answered", got, n);
		}
		vdrv_enable_irq(&g->drv, 0);
		if (g->drv.vq[0].used->idx == g->drv.vq[0].last_used)
			vdrv_wait_isr(&g->drv, 10);
	}
}

/*
 * n requests at once with one kick, all answered in one turn; then one more, kicked only if the
 * device asked for it: it must be answered.
 */
static void ring_then_one(struct guest *g, unsigned n)
{
	uint16_t old;

	for (unsigned i = 0; i < n; i++)
		submit(g, i);
	vdrv_kick(&g->drv, 0);
	wait_used(g, n);
	/*
	 * The daemon answers a register read from its loop, after the turn that answered the
	 * requests has returned: request n + 1 cannot slip in before that turn's last look at the
	 * ring, which would serve it and hide a stale avail_event.
	 */
	vdrv_status(&g->drv);
	old = g->drv.vq[0].avail_idx;
	submit(g, n);
	vdrv_kick_if_asked(&g->drv, 0, old);
	wait_used(g, 1);
	assert_int_equal(g->vio.errors, 0);
}

/*
 * A full ring ends the turn at VQ_BUDGET with the ring empty. Before vq_more() the device
 * returned without re-arming avail_event, and request 257 was never kicked for.
 */
static void test_budget_rearm(void **state)
{
	struct guest *g = *state;

	guest_start(g, "");
	ring_then_one(g, VQ_BUDGET);
	guest_stop(g);
}

/*
 * rate = 1 (KiB/s): the bucket starts with 1024 bytes, which 16 requests of 64 drain, so the
 * turn stops at an empty bucket with the ring just emptied. Before vq_more() that path left
 * avail_event stale as well; request 17 waits for the bucket (about 0.1 s) but must come.
 */
static void test_rate_limit_rearm(void **state)
{
	struct guest *g = *state;

	guest_start(g, "rate = 1\n");
	ring_then_one(g, 1024 / REQ);
	guest_stop(g);
}

static int setup(void **state)
{
	*state = calloc(1, sizeof(struct guest));
	return *state ? 0 : -1;
}

static int teardown(void **state)
{
	struct guest *g = *state;

	if (g->t)
		itest_free(g->t);
	free(g);
	return 0;
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_budget_rearm, setup, teardown),
		cmocka_unit_test_setup_teardown(test_rate_limit_rearm, setup, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
