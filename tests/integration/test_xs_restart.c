/*
 * Hardening issue 11, item 3: xenstored restarted under a running daemon (xsim_xs_restart:
 * every xenstore connection dropped, the store's contents kept). Serving ioreqs must go on
 * during and after the outage; the per-guest death watch and watch mode's backend watch must
 * reconnect and re-register, so a death (even one that happened while xenstore was down) and a
 * new guest are still seen.
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

#define RNG_INI "[guest]\nname = g1\ndiscovery = explicit\n[rng]\nmmio = 0x02000000\nirq = 33\n"
#define RNG_INI_DOMID "[guest]\ndomid = 1\ndiscovery = explicit\n[rng]\nmmio = 0x02000000\nirq = 33\n"
#define WANT (VIRTIO_BIT(VIRTIO_F_VERSION_1) | VIRTIO_BIT(VIRTIO_F_EVENT_IDX) | \
	      VIRTIO_BIT(VIRTIO_F_INDIRECT_DESC) | VIRTIO_BIT(VIRTIO_F_ACCESS_PLATFORM))
#define RAM_GPA UINT64_C(0x40100000)
#define RAM_LEN (UINT64_C(1) << 20)
#define BE "/local/domain/0/backend"
/* The daemon notices a silent loss by probing (a few seconds), then retries with backoff. */
#define RECONNECT_MS 20000

struct rng {
	struct xsim_vio vio;
	struct vdrv_mem mem;
	struct vdrv drv;
	struct vdrv_buf b;
	uint8_t *host;
};

static void rng_init(struct itest *t, struct rng *r)
{
	xsim_vio_init(&r->vio, t->dom, 0, WIN0, 33);
	assert_int_equal(xsim_vmem_init(&r->mem, t->dom, RAM_GPA, RAM_LEN, false), 0);
	memset(&r->drv, 0, sizeof(r->drv));
	assert_int_equal(vdrv_init(&r->drv, &r->vio.io, &r->mem, WANT, 1, 64), 0);
	assert_int_equal(r->drv.device_id, 4);
	r->b.gpa = vdrv_alloc(&r->mem, 256, 16, (void **)&r->host);
	r->b.len = 256;
	r->b.write = true;
	assert_int_not_equal(r->b.gpa, 0);
}

static void rng_io(struct rng *r, int n)
{
	for (int i = 0; i < n; i++) {
		memset(r->host, 0, 256);
		assert_int_equal(vdrv_transfer(&r->drv, 0, &r->b, 1, false, 5000), 256);
	}
	assert_int_equal(r->vio.errors, 0);
}

static long now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1000L + ts.tv_nsec / 1000000L;
}

/* Poll until `path` has `want` watches; rng I/O meanwhile when r is given. */
static bool wait_watches(struct xsim_hub *h, const char *path, unsigned want, int ms,
			 struct rng *r)
{
	long end = now_ms() + ms;

	while (xsim_xs_watch_count(h, path) != want) {
		if (now_ms() > end)
			return false;
		if (r)
			rng_io(r, 1);
		usleep(20000);
	}
	return true;
}

/* Occurrences of needle in the daemon's log. */
static unsigned log_count(struct xsim_daemon *dm, const char *needle)
{
	char line[1024];
	unsigned n = 0;
	FILE *f = fopen(dm->log_path, "r");

	while (f && fgets(line, sizeof(line), f))
		n += strstr(line, needle) != NULL;
	if (f)
		fclose(f);
	return n;
}

static void expect_exit_0(struct itest *t, int ms)
{
	int st = -1;

	if (xsim_daemon_wait_exit(&t->dm, ms, &st) < 0) {
		fprintf(stderr, "daemon still running; its log:\n");
		itest_dump_log(t);
		fail();
	}
	assert_true(WIFEXITED(st));
	assert_int_equal(WEXITSTATUS(st), 0);
	t->dm.pid = -1;
}

/* Guest g1 served rng from ini; xs_down: xenstored is down (refusing) while the daemon starts. */
static struct itest *serve_rng_ini(const char *ini, bool xs_down)
{
	struct xsim_dom_opts o = { .name = "g1", .nr_vcpus = 1, .ram_mib = 32 };
	struct itest *t = itest_new(&o);

	assert_non_null(t);
	if (xs_down)
		assert_int_equal(xsim_xs_restart(t->hub, true), 0);
	assert_int_equal(itest_serve(t, ini), 0);
	return t;
}

static struct itest *serve_rng(void)
{
	return serve_rng_ini(RNG_INI, false);
}

/*
 * Restart xenstore (down for a while, then back): rng keeps working throughout, the death
 * watch is re-registered, the outage is logged once, and a later destroy ends the daemon (0).
 */
static void test_serving_survives_restart(void **state)
{
	struct itest *t = serve_rng();
	struct rng r;
	long end;

	(void)state;
	rng_init(t, &r);
	rng_io(&r, 4);
	assert_true(wait_watches(t->hub, "@releaseDomain", 1, 5000, NULL));
	assert_int_equal(xsim_xs_restart(t->hub, true), 0);
	assert_int_equal(xsim_xs_watch_count(t->hub, "@releaseDomain"), 0);
	/* Down for longer than the daemon's probe interval: it notices and retries meanwhile. */
	end = now_ms() + 5000;
	while (now_ms() < end) {
		rng_io(&r, 1);
		usleep(20000);
	}
	assert_true(xsim_daemon_alive(&t->dm));
	xsim_xs_up(t->hub);
	if (!wait_watches(t->hub, "@releaseDomain", 1, RECONNECT_MS, &r)) {
		fprintf(stderr, "death watch not re-registered; daemon log:\n");
		itest_dump_log(t);
		fail();
	}
	rng_io(&r, 4);
	/* One line for the outage and one for the recovery, not one per retry. */
	assert_int_equal(log_count(&t->dm, "xenstore: connection lost"), 1);
	assert_int_equal(log_count(&t->dm, "xenstore: reconnected"), 1);
	/* The re-registered watch sees the death. */
	assert_int_equal(xsim_dom_destroy(t->dom), 0);
	expect_exit_0(t, 10000);
	itest_free(t);
}

/* The guest dies while xenstore is down: the re-registered watch fires once, the check sees it. */
static void test_death_while_disconnected(void **state)
{
	struct itest *t = serve_rng();
	struct rng r;

	(void)state;
	rng_init(t, &r);
	rng_io(&r, 2);
	assert_true(wait_watches(t->hub, "@releaseDomain", 1, 5000, NULL));
	assert_int_equal(xsim_xs_restart(t->hub, true), 0);
	assert_int_equal(xsim_dom_destroy(t->dom), 0);
	usleep(500000);
	assert_true(xsim_daemon_alive(&t->dm));   /* nothing told it yet */
	xsim_xs_up(t->hub);
	expect_exit_0(t, RECONNECT_MS);
	itest_free(t);
}

/*
 * xenstored is down while the daemon starts (explicit mode with a domid needs no xenstore to
 * serve): it serves, and registers its death watch once xenstored is back. Found by
 * test_watch_mode_after_restart, whose restart could catch the instance between discovery and
 * its death watch: the instance failed with exit status 1 ("cannot watch @releaseDomain").
 */
static void test_start_while_xenstore_down(void **state)
{
	struct itest *t = serve_rng_ini(RNG_INI_DOMID, true);
	struct rng r;

	(void)state;
	rng_init(t, &r);
	rng_io(&r, 2);
	assert_int_equal(log_count(&t->dm, "cannot register domain 1's death watch yet"), 1);
	xsim_xs_up(t->hub);
	if (!wait_watches(t->hub, "@releaseDomain", 1, RECONNECT_MS, &r)) {
		fprintf(stderr, "death watch never registered; daemon log:\n");
		itest_dump_log(t);
		fail();
	}
	assert_int_equal(log_count(&t->dm, "xenstore: reconnected"), 1);
	assert_int_equal(xsim_dom_destroy(t->dom), 0);
	expect_exit_0(t, 10000);
	itest_free(t);
}

static void write_virtio_rng(struct xsim_hub *h, struct xsim_dom *d)
{
	uint32_t id = xsim_dom_id(d);
	char p[160];

#define W(key, ...) do { \
		snprintf(p, sizeof(p), BE "/virtio/%u/0/" key, id); \
		assert_int_equal(xsim_xs_write(h, p, __VA_ARGS__), 0); \
	} while (0)
	W("frontend", "/local/domain/%u/device/virtio/0", id);
	W("frontend-id", "%u", id);
	W("online", "1");
	W("irq", "33");
	W("base", "0x2000000");
	W("type", "virtio,device4");
	W("transport", "mmio");
	W("grant_usage", "False");
	W("state", "1");
#undef W
}

static bool wait_routed(struct xsim_dom *d, uint64_t addr, int ms)
{
	long end = now_ms() + ms;

	while (!xsim_dom_routed(d, addr)) {
		if (now_ms() > end)
			return false;
		usleep(10000);
	}
	return true;
}

/*
 * Watch mode: restart xenstore (back at once), then create a new guest with a device: its
 * instance is started. The instance of the guest present before is not started twice.
 */
static void test_watch_mode_after_restart(void **state)
{
	struct xsim_dom_opts o1 = { .name = "g1", .nr_vcpus = 1, .ram_mib = 16 };
	struct xsim_dom_opts o2 = { .name = "g2", .nr_vcpus = 1, .ram_mib = 16 };
	struct itest *t = itest_new(&o1);
	struct xsim_dom *d2;
	char dir[160];
	const char *args[] = { "--watch", "--config-dir", dir, "--foreground", "--log-level",
			       "info", NULL };

	(void)state;
	assert_non_null(t);
	assert_int_equal(itest_watch_conf(t, dir, sizeof(dir), 2), 0);
	write_virtio_rng(t->hub, t->dom);
	assert_int_equal(xsim_daemon_start(t->hub, &t->dm, XVD_SIM_DAEMON, "watch", args,
					   XSIM_DAEMON_NO_NOTIFY), 0);
	assert_true(wait_routed(t->dom, WIN0, READY_MS));
	assert_true(wait_watches(t->hub, BE "/virtio", 1, 5000, NULL));
	assert_int_equal(xsim_xs_restart(t->hub, false), 0);
	if (!wait_watches(t->hub, BE "/virtio", 1, RECONNECT_MS, NULL)) {
		fprintf(stderr, "backend watch not re-registered; watcher log:\n");
		itest_dump_log(t);
		fail();
	}
	/* g1 still served by its instance (which reconnected its own death watch too). */
	if (itest_rd32(t, 0, WIN0 + R_DEVICE_ID) != 4) {
		fprintf(stderr, "g1 not served after the restart; watcher log:\n");
		itest_dump_log(t);
		fail();
	}
	d2 = xsim_dom_create(t->hub, &o2);
	assert_non_null(d2);
	write_virtio_rng(t->hub, d2);
	if (!wait_routed(d2, WIN0, READY_MS)) {
		fprintf(stderr, "no instance for g2; watcher log:\n");
		itest_dump_log(t);
		fail();
	}
	assert_int_equal(xsim_mmio_read(d2, 0, WIN0 + R_MAGIC, 4), VIRTIO_MAGIC);
	/* The rescan after reconnecting found g1 again: no second instance for it. */
	assert_int_equal(log_count(&t->dm, "g1 (domid 1): started instance"), 1);
	assert_true(xsim_daemon_alive(&t->dm));
	itest_free(t);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_serving_survives_restart),
		cmocka_unit_test(test_death_while_disconnected),
		cmocka_unit_test(test_watch_mode_after_restart),
		cmocka_unit_test(test_start_while_xenstore_down),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
