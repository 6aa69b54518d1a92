/*
 * Device discovery by the real sim daemon: explicit windows from the INI, libxl's xenstore
 * entries in the Xen 4.17 (virtio_disk, decimal base, state=2 handshake) and 4.18+ (virtio,
 * hex base, type virtio,deviceN) layouts, and watch mode starting an instance per new guest.
 */
#include <errno.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "devices/device.h"
#include "tests/integration/itest.h"
#include "tests/lib/vdriver.h"

#define BE "/local/domain/0/backend"

static struct itest *new_guest(const char *name)
{
	struct xsim_dom_opts o = { .name = name, .nr_vcpus = 2, .ram_mib = 16 };

	return itest_new(&o);
}

static void stop_clean(struct itest *t)
{
	int st = itest_free(t);

	assert_true(WIFEXITED(st));
	assert_int_equal(WEXITSTATUS(st), 0);
}

static void test_explicit(void **state)
{
	struct itest *t = new_guest("g1");

	(void)state;
	assert_non_null(t);
	assert_false(xsim_dom_routed(t->dom, WIN0));
	assert_int_equal(itest_serve(t, "[guest]\nname = g1\ndiscovery = explicit\n"
				     "[rng]\nmmio = 0x02000000\nirq = 33\n"
				     "[i2c \"bus0\"]\nmmio = 0x02000200\nirq = 34\n"
				     "sim = eeprom@0x50\n"), 0);
	assert_int_equal(itest_rd32(t, 0, WIN0 + R_MAGIC), VIRTIO_MAGIC);
	assert_int_equal(itest_rd32(t, 0, WIN0 + R_DEVICE_ID), 4);
	assert_int_equal(itest_rd32(t, 1, WIN1 + R_VERSION), 2);
	assert_int_equal(itest_rd32(t, 1, WIN1 + R_DEVICE_ID), 34);
	assert_false(xsim_dom_routed(t->dom, WIN1 + 0x200));
	stop_clean(t);
}

static void write_virtio_rng_gu(struct itest *t, unsigned devid, const char *base, unsigned irq,
				const char *grant_usage);

/* libxl 4.18+: virtio = ["backend=0,type=virtio,device4,transport=mmio"] as the 2nd device. */
static void write_virtio_rng(struct itest *t, unsigned devid, const char *base, unsigned irq)
{
	write_virtio_rng_gu(t, devid, base, irq, "False");
}

static void write_virtio_rng_gu(struct itest *t, unsigned devid, const char *base, unsigned irq,
				const char *grant_usage)
{
	uint32_t id = xsim_dom_id(t->dom);
	char p[160];

#define W(key, ...) do { \
		snprintf(p, sizeof(p), BE "/virtio/%u/%u/" key, id, devid); \
		assert_int_equal(xsim_xs_write(t->hub, p, __VA_ARGS__), 0); \
	} while (0)
	W("frontend", "/local/domain/%u/device/virtio/%u", id, devid);
	W("frontend-id", "%u", id);
	W("online", "1");
	W("irq", "%u", irq);
	W("base", "%s", base);
	W("type", "virtio,device4");
	W("transport", "mmio");
	W("grant_usage", "%s", grant_usage);
	W("state", "1");
#undef W
}

static void test_xenstore_virtio_layout(void **state)
{
	struct itest *t = new_guest("g1");

	(void)state;
	assert_non_null(t);
	write_virtio_rng(t, 0, "0x2000200", 34);
	assert_int_equal(itest_serve(t, "[guest]\nname = g1\ndiscovery = xenstore\n[rng]\n"), 0);
	assert_true(xsim_dom_routed(t->dom, WIN1));
	assert_false(xsim_dom_routed(t->dom, WIN0));
	assert_int_equal(itest_rd32(t, 0, WIN1 + R_MAGIC), VIRTIO_MAGIC);
	assert_int_equal(itest_rd32(t, 0, WIN1 + R_DEVICE_ID), 4);
	stop_clean(t);
}

/* grant_usage=1 in the xl config: the device offers ACCESS_PLATFORM and takes grant addresses. */
static void test_xenstore_grant_usage(void **state)
{
	struct itest *t = new_guest("g1");
	struct xsim_vio vio;
	struct vdrv_mem mem;
	struct vdrv drv = { 0 };
	struct vdrv_buf b = { .len = 100, .write = true };
	uint64_t want = VIRTIO_BIT(VIRTIO_F_VERSION_1) | VIRTIO_BIT(VIRTIO_F_ACCESS_PLATFORM);

	(void)state;
	assert_non_null(t);
	write_virtio_rng_gu(t, 0, "0x2000000", 33, "True");
	assert_int_equal(itest_serve(t, "[guest]\nname = g1\ndiscovery = xenstore\n[rng]\n"), 0);
	xsim_vio_init(&vio, t->dom, 0, WIN0, 33);
	assert_int_equal(xsim_vmem_init(&mem, t->dom, 0x40000000, 1 << 20, true), 0);
	assert_int_equal(vdrv_init(&drv, &vio.io, &mem, want, 1, 16), 0);
	assert_true(drv.features & VIRTIO_BIT(VIRTIO_F_ACCESS_PLATFORM));
	b.gpa = vdrv_alloc(&mem, 100, 16, NULL);
	assert_int_equal(vdrv_transfer(&drv, 0, &b, 1, false, 5000), 100);
	stop_clean(t);
}

/* libxl 4.17: disk = ["...,specification=virtio,backendtype=standalone"]; waits for state 2.
 * A 1 MiB image in the hub's directory. */
/* A 4.17 virtio disk (libxl's keys) under the backend root be (BE for dom0). */
static void write_virtio_disk_at(struct itest *t, const char *be)
{
	uint32_t id = xsim_dom_id(t->dom);
	char p[160], img[160];

	snprintf(img, sizeof(img), "%s/disk.img", xsim_hub_dir(t->hub));
	assert_int_equal(itest_write(img, "%s", ""), 0);
	assert_int_equal(truncate(img, 1 << 20), 0);

#define W(key, ...) do { \
		snprintf(p, sizeof(p), "%s/virtio_disk/%u/51712/" key, be, id); \
		assert_int_equal(xsim_xs_write(t->hub, p, __VA_ARGS__), 0); \
	} while (0)
	W("frontend", "/local/domain/%u/device/virtio_disk/51712", id);
	W("frontend-id", "%u", id);
	W("online", "1");
	W("params", "%s", img);
	W("mode", "w");
	W("dev", "xvda");
	W("type", "virtio_disk");
	W("base", "%u", 0x02000000u);   /* decimal in this layout */
	W("irq", "33");
	W("state", "1");
#undef W
}

static void write_virtio_disk(struct itest *t)
{
	write_virtio_disk_at(t, BE);
}

static void test_xenstore_disk417_layout(void **state)
{
	struct itest *t = new_guest("g1");
	char be_state[160];

	(void)state;
	assert_non_null(t);
	write_virtio_disk(t);
	write_virtio_rng(t, 0, "0x2000200", 34);   /* both layouts for one guest */
	snprintf(be_state, sizeof(be_state), BE "/virtio_disk/%u/51712/state", xsim_dom_id(t->dom));
	/* No state file: a stop removes the devices (test_restart.c covers the handover). */
	assert_int_equal(itest_serve_args(t, "[guest]\nname = g1\ndiscovery = xenstore\n"
					  "[block \"root\"]\nvdev = xvda\n[rng]\n",
					  (const char *const[]){ "--state-dir", "none", NULL }), 0);
	/* The handshake libxl waits for before unpausing the guest. */
	assert_int_equal(xsim_xs_wait(t->hub, be_state, "2", 5000), 0);
	assert_int_equal(itest_rd32(t, 0, WIN0 + R_DEVICE_ID), 2);
	assert_int_equal(itest_rd32(t, 1, WIN1 + R_DEVICE_ID), 4);
	/* A clean stop tells the toolstack the backend is gone (XenbusStateClosed). */
	{
		int st = xsim_daemon_stop(&t->dm);

		assert_true(WIFEXITED(st));
		assert_int_equal(WEXITSTATUS(st), 0);
	}
	assert_int_equal(xsim_xs_wait(t->hub, be_state, "6", 1000), 0);
	itest_free(t);
}

/* A 4.17 disk served while its first nfail state writes fail; be (160) and be_state (200). */
static void serve_disk417(struct itest *t, char *be, char *be_state, unsigned nfail)
{
	assert_non_null(t);
	write_virtio_disk(t);
	snprintf(be, 160, BE "/virtio_disk/%u/51712", xsim_dom_id(t->dom));
	snprintf(be_state, 200, "%s/state", be);
	xsim_xs_fail_writes(t->hub, "/51712/state", nfail);
	assert_int_equal(itest_serve(t, "[guest]\nname = g1\ndiscovery = xenstore\n"
				     "[block \"root\"]\nvdev = xvda\n"), 0);
}

/*
 * libxl removing the disk (xl destroy, xl block-detach): online=0 and state=5, then it waits up
 * to 10 s for state=6. The instance answers at once and keeps serving (no unplug in
 * virtio-mmio); once libxl has removed the directory, a later stop must not write it again.
 */
static void test_xenstore_disk417_closing(void **state)
{
	struct itest *t = new_guest("g1");
	char be[160], be_state[200], be_online[200];
	int st;

	(void)state;
	serve_disk417(t, be, be_state, 0);
	snprintf(be_online, sizeof(be_online), "%s/online", be);
	assert_int_equal(xsim_xs_wait(t->hub, be_state, "2", 5000), 0);
	assert_int_equal(xsim_xs_write(t->hub, be_online, "0"), 0);
	assert_int_equal(xsim_xs_write(t->hub, be_state, "5"), 0);
	assert_int_equal(xsim_xs_wait(t->hub, be_state, "6", 2000), 0);
	assert_true(xsim_daemon_wait_log(&t->dm, "answered Closed", 5000));
	/* Still served. */
	assert_int_equal(itest_rd32(t, 0, WIN0 + R_DEVICE_ID), 2);
	assert_int_equal(xsim_xs_rm(t->hub, be), 0);
	st = xsim_daemon_stop(&t->dm);
	assert_true(WIFEXITED(st));
	assert_int_equal(WEXITSTATUS(st), 0);
	{
		char *v = xsim_xs_read(t->hub, be_state);

		assert_null(v);   /* not re-created by the stop */
		free(v);
	}
	itest_free(t);
}

/*
 * The same Closing answer from a driver domain (domid 7; xensim's xs_unprivileged fault: there
 * the real libxenstore looks for /dev/xen/xenbus with access() on every xs_open, and the
 * answer's xs_open runs under the seccomp filter: once killed by SIGSYS on real Xen). libxl in
 * dom0 leaves the backend directory to the driver domain and waits 10 s for it to go: the
 * instance removes it, and the guest's directory above it once empty; a moment after its
 * state=6, which libxl reads first.
 */
static void test_xenstore_disk417_closing_domu(void **state)
{
	struct itest *t;
	char guest_dir[128], be[160], be_state[200];
	int st;

	(void)state;
	setenv("XENSIM_FAULTS", "xs_unprivileged", 1);
	t = new_guest("g1");
	assert_non_null(t);
	write_virtio_disk_at(t, "/local/domain/7/backend");
	snprintf(guest_dir, sizeof(guest_dir), "/local/domain/7/backend/virtio_disk/%u",
		 xsim_dom_id(t->dom));
	snprintf(be, sizeof(be), "%s/51712", guest_dir);
	snprintf(be_state, sizeof(be_state), "%s/state", be);
	assert_int_equal(itest_serve(t, "[guest]\nname = g1\ndiscovery = xenstore\n"
				     "backend_domid = 7\n[block \"root\"]\nvdev = xvda\n"), 0);
	unsetenv("XENSIM_FAULTS");
	assert_int_equal(xsim_xs_wait(t->hub, be_state, "2", 5000), 0);
	assert_int_equal(xsim_xs_write(t->hub, be_state, "5"), 0);
	/* libxl reads state=6 first: a directory gone before that is an error to it. */
	assert_int_equal(xsim_xs_wait(t->hub, be_state, "6", 900), 0);
	for (int i = 0; i < 250; i++) {
		char *v = xsim_xs_read(t->hub, guest_dir);

		free(v);
		if (!v)
			break;
		usleep(20000);
	}
	{
		char *v = xsim_xs_read(t->hub, guest_dir);

		if (v)
			fail_msg("%s still there after Closing", guest_dir);
	}
	assert_true(xsim_daemon_wait_log(&t->dm, "answered Closed", 2000));
	/* Still served. */
	assert_int_equal(itest_rd32(t, 0, WIN0 + R_DEVICE_ID), 2);
	st = xsim_daemon_stop(&t->dm);
	assert_true(WIFEXITED(st));
	assert_int_equal(WEXITSTATUS(st), 0);
	itest_free(t);
}

/*
 * libxl waits 10 s for a 4.17 disk's InitWait (and for Closed): a state write that fails
 * (xenstored restarting at that moment) is retried from the loop, not given up on. Before the
 * retry, one failed write left the guest paused until `xl create` timed out.
 */
static void test_xenstore_disk417_state_retry(void **state)
{
	struct itest *t = new_guest("g1");
	char be[160], be_state[200];
	int st;

	(void)state;
	serve_disk417(t, be, be_state, 3);
	assert_int_equal(xsim_xs_wait(t->hub, be_state, "2", 5000), 0);
	assert_true(xsim_daemon_wait_log(&t->dm, "cannot write state=2; retrying", 5000));
	assert_true(xsim_daemon_wait_log(&t->dm, "state=2 written on a retry", 5000));
	/* The answer to Closing is retried the same way. */
	xsim_xs_fail_writes(t->hub, "/51712/state", 2);
	assert_int_equal(xsim_xs_write(t->hub, be_state, "5"), 0);
	assert_int_equal(xsim_xs_wait(t->hub, be_state, "6", 5000), 0);
	assert_true(xsim_daemon_wait_log(&t->dm, "state=6 written on a retry", 5000));
	assert_true(xsim_daemon_wait_log(&t->dm, "answered Closed", 5000));
	assert_int_equal(itest_rd32(t, 0, WIN0 + R_DEVICE_ID), 2);
	st = xsim_daemon_stop(&t->dm);
	assert_true(WIFEXITED(st));
	assert_int_equal(WEXITSTATUS(st), 0);
	itest_free(t);
}

/* A retried write never re-creates a backend directory that libxl removed meanwhile. */
static void test_xenstore_disk417_state_retry_gone(void **state)
{
	struct itest *t = new_guest("g1");
	char be[160], be_state[200];
	char *v;

	(void)state;
	serve_disk417(t, be, be_state, 1000);
	assert_int_equal(xsim_xs_rm(t->hub, be), 0);
	xsim_xs_fail_writes(t->hub, "/51712/state", 0);
	assert_true(xsim_daemon_wait_log(&t->dm, "gone; state=2 not written", 5000));
	usleep(1200000);   /* two more retry periods: nothing is written */
	v = xsim_xs_read(t->hub, be_state);
	assert_null(v);
	free(v);
	assert_true(xsim_daemon_alive(&t->dm));
	itest_free(t);
}

static bool wait_routed(struct xsim_dom *d, uint64_t addr, bool want, int timeout_ms)
{
	for (int waited = 0; waited < timeout_ms; waited += 10) {
		if (xsim_dom_routed(d, addr) == want)
			return true;
		usleep(10000);
	}
	return xsim_dom_routed(d, addr) == want;
}

/* Watch mode: one guest present at start, one created later; each gets an instance. */
static void test_watch_mode(void **state)
{
	struct itest *t = new_guest("g1");
	struct xsim_dom_opts o2 = { .name = "g2", .nr_vcpus = 1, .ram_mib = 16 };
	struct xsim_dom *d2;
	char dir[160];
	const char *args[] = { "--watch", "--config-dir", dir, "--foreground", "--log-level",
			       "info", NULL };
	int st;

	(void)state;
	assert_non_null(t);
	assert_int_equal(itest_watch_conf(t, dir, sizeof(dir), 2), 0);
	write_virtio_rng(t, 0, "0x2000000", 33);
	/* Not under systemd (no NOTIFY_SOCKET): instances are child processes. */
	assert_int_equal(xsim_daemon_start(t->hub, &t->dm, XVD_SIM_DAEMON, "watch", args,
					   XSIM_DAEMON_NO_NOTIFY), 0);
	assert_true(wait_routed(t->dom, WIN0, true, READY_MS));
	assert_int_equal(itest_rd32(t, 0, WIN0 + R_DEVICE_ID), 4);
	d2 = xsim_dom_create(t->hub, &o2);
	assert_non_null(d2);
	{
		struct itest t2 = { .hub = t->hub, .dom = d2 };

		write_virtio_rng(&t2, 0, "0x2000000", 33);
	}
	assert_true(wait_routed(d2, WIN0, true, READY_MS));
	assert_int_equal(xsim_mmio_read(d2, 0, WIN0 + R_MAGIC, 4), VIRTIO_MAGIC);
	/* The guest's death ends its instance; the watcher keeps going. */
	assert_int_equal(xsim_dom_destroy(d2), 0);
	assert_true(xsim_daemon_alive(&t->dm));
	/*
	 * Stopping the watcher stops its instances; g1 lives on, so its instance leaves it to the
	 * next one (an upgrade: stop, install, start): the windows stay.
	 */
	kill(t->dm.pid, SIGTERM);
	assert_int_equal(xsim_daemon_wait_exit(&t->dm, 10000, &st), 0);
	assert_true(WIFEXITED(st));
	assert_int_equal(WEXITSTATUS(st), 0);
	assert_true(xsim_daemon_log_has(&t->dm, "g2"));
	assert_true(xsim_daemon_log_has(&t->dm, "left the guest to the next instance"));
	assert_true(xsim_dom_routed(t->dom, WIN0));
	/* The watcher started again: g1's new instance takes it over and serves. */
	xsim_daemon_stop(&t->dm);
	assert_int_equal(xsim_daemon_start(t->hub, &t->dm, XVD_SIM_DAEMON, "watch2", args,
					   XSIM_DAEMON_NO_NOTIFY), 0);
	assert_true(xsim_daemon_wait_log(&t->dm, "took over ioreq server", READY_MS));
	assert_int_equal(itest_rd32(t, 0, WIN0 + R_DEVICE_ID), 4);
	itest_free(t);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_explicit),
		cmocka_unit_test(test_xenstore_virtio_layout),
		cmocka_unit_test(test_xenstore_grant_usage),
		cmocka_unit_test(test_xenstore_disk417_layout),
		cmocka_unit_test(test_xenstore_disk417_closing),
		cmocka_unit_test(test_xenstore_disk417_closing_domu),
		cmocka_unit_test(test_xenstore_disk417_state_retry),
		cmocka_unit_test(test_xenstore_disk417_state_retry_gone),
		cmocka_unit_test(test_watch_mode),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
