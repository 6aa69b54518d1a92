/*
 * Many guests on one hub: 50 sim daemons, each serving its own guest's rng, all connected to
 * the same simulated machine; then every guest dies and every daemon exits 0. Also reports the
 * cost of one ioreq round trip through the sim daemon.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "devices/device.h"
#include "tests/integration/itest.h"
#include "tests/lib/vdriver.h"

#define NGUESTS 50
#define ROUND_TRIPS 20000

struct guest {
	struct xsim_dom *dom;
	struct xsim_daemon dm;
};

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

static void start_guest(struct xsim_hub *hub, struct guest *g, unsigned i)
{
	char name[16], ini[192];
	const char *args[] = { "--foreground", "--config", ini, "--log-level", "warning", NULL };

	snprintf(name, sizeof(name), "g%u", i);
	g->dom = xsim_dom_create(hub, &(struct xsim_dom_opts){ .name = name, .ram_mib = 8 });
	assert_non_null(g->dom);
	snprintf(ini, sizeof(ini), "%s/%s.ini", xsim_hub_dir(hub), name);
	assert_int_equal(itest_write(ini, "[guest]\nname = %s\ndiscovery = explicit\n"
				     "[rng]\nmmio = 0x%x\nirq = %u\n", name,
				     0x02000000u + (i % 8) * 0x200u, 33 + i % 8), 0);
	assert_int_equal(xsim_daemon_start(hub, &g->dm, XVD_SIM_DAEMON, name, args, 0), 0);
}

static void use_rng(struct guest *g, unsigned i)
{
	struct xsim_vio vio;
	struct vdrv_mem mem;
	struct vdrv drv = { 0 };
	struct vdrv_buf b = { .len = 32, .write = true };

	xsim_vio_init(&vio, g->dom, 0, 0x02000000u + (i % 8) * 0x200u, 33 + i % 8);
	assert_int_equal(xsim_vmem_init(&mem, g->dom, 0x40000000, 1 << 20, false), 0);
	assert_int_equal(vdrv_init(&drv, &vio.io, &mem, VIRTIO_BIT(VIRTIO_F_VERSION_1), 1, 16), 0);
	assert_int_equal(drv.device_id, 4);
	b.gpa = vdrv_alloc(&mem, 32, 16, NULL);
	assert_int_equal(vdrv_transfer(&drv, 0, &b, 1, false, 10000), 32);
}

static void test_fifty_guests_one_hub(void **state)
{
	struct xsim_hub *hub = xsim_hub_start();
	struct guest *g = calloc(NGUESTS, sizeof(*g));
	double t0 = now_s(), t1, t2, t3;
	int st;

	(void)state;
	assert_non_null(hub);
	assert_non_null(g);
	for (unsigned i = 0; i < NGUESTS; i++)
		start_guest(hub, &g[i], i);
	for (unsigned i = 0; i < NGUESTS; i++)
		assert_int_equal(xsim_daemon_wait_ready(&g[i].dm, 60000), 0);
	t1 = now_s();
	for (unsigned i = 0; i < NGUESTS; i++)
		use_rng(&g[i], i);
	t2 = now_s();
	/* Round-trip cost: register reads from one vCPU, answered by the sim daemon. */
	for (unsigned n = 0; n < ROUND_TRIPS; n++)
		assert_int_equal(xsim_mmio_read(g[0].dom, 0, WIN0 + R_MAGIC, 4), VIRTIO_MAGIC);
	t3 = now_s();
	print_message("xsim: %u daemons ready in %.2f s; rng bring-up and transfer on each in "
		      "%.2f s; %u ioreq round trips: %.1f us each\n", NGUESTS, t1 - t0, t2 - t1,
		      ROUND_TRIPS, (t3 - t2) * 1e6 / ROUND_TRIPS);
	for (unsigned i = 0; i < NGUESTS; i++)
		assert_int_equal(xsim_dom_destroy(g[i].dom), 0);
	for (unsigned i = 0; i < NGUESTS; i++) {
		assert_int_equal(xsim_daemon_wait_exit(&g[i].dm, 30000, &st), 0);
		assert_true(WIFEXITED(st));
		assert_int_equal(WEXITSTATUS(st), 0);
		xsim_daemon_stop(&g[i].dm);
	}
	free(g);
	xsim_hub_stop(hub);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_fifty_guests_one_hub),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
