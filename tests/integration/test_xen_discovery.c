/*
 * xenstore discovery through the real sim daemon: both libxl layouts, both forms of "base",
 * hex device ids in "type", strict parsing (a malformed entry is skipped, never served), and the
 * 4.17 state handshake (InitWait once serving, Closed on a clean stop).
 */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "tests/xensim/guest.h"

#define MAGIC 0x74726976u
#define REG_DEVICE_ID 0x008u
#define REG_DEV_FEATURES 0x010u
#define REG_DEV_FEATURES_SEL 0x014u

struct rig {
	struct xsim_hub *hub;
	struct xsim_dom *dom;
	struct xsim_daemon dm;
	char ini[256];
	char be[128];       /* /local/domain/0/backend */
};

static void rig_print_log(struct rig *r)
{
	xsim_daemon_dump_log(&r->dm, "daemon: ");
}

static void rig_init(struct rig *r)
{
	struct xsim_dom_opts o = { .name = "guest1", .nr_vcpus = 2 };

	memset(r, 0, sizeof(*r));
	r->hub = xsim_hub_start();
	assert_non_null(r->hub);
	r->dom = xsim_dom_create(r->hub, &o);
	assert_non_null(r->dom);
	snprintf(r->be, sizeof(r->be), "/local/domain/0/backend");
}

/* Write the INI (sections after the [guest] one) and start the daemon. */
static void rig_start(struct rig *r, const char *sections)
{
	/* No state file: a stop removes the devices (test_restart.c covers the handover). */
	const char *args[] = { "--config", r->ini, "--foreground", "--state-dir", "none", NULL };
	FILE *f;

	snprintf(r->ini, sizeof(r->ini), "%s/guest.ini", xsim_hub_dir(r->hub));
	f = fopen(r->ini, "w");
	assert_non_null(f);
	fprintf(f, "[guest]\nname = guest1\ndiscovery = xenstore\n\n%s", sections);
	fclose(f);
	assert_int_equal(xsim_daemon_start(r->hub, &r->dm, XVD_SIM_DAEMON, "daemon", args, 0), 0);
	if (xsim_daemon_wait_ready(&r->dm, 10000) != 0) {
		rig_print_log(r);
		fail_msg("the daemon did not become ready");
	}
}

static void rig_close(struct rig *r)
{
	if (!r->dm.reaped)
		xsim_daemon_stop(&r->dm);
	xsim_hub_stop(r->hub);
}

/* One 4.18+ entry: NULL values are left out. */
static void virtio_entry(struct rig *r, unsigned devid, const char *type, const char *base,
			 const char *irq, const char *transport, const char *grant)
{
	const char *keys[] = { "type", "base", "irq", "transport", "grant_usage" };
	const char *vals[] = { type, base, irq, transport, grant };
	char path[256];

	for (unsigned i = 0; i < 5; i++) {
		if (!vals[i])
			continue;
		snprintf(path, sizeof(path), "%s/virtio/%u/%u/%s", r->be, xsim_dom_id(r->dom), devid,
			 keys[i]);
		assert_int_equal(xsim_xs_write(r->hub, path, "%s", vals[i]), 0);
	}
	snprintf(path, sizeof(path), "%s/virtio/%u/%u/state", r->be, xsim_dom_id(r->dom), devid);
	assert_int_equal(xsim_xs_write(r->hub, path, "1"), 0);
}

static uint32_t rd(struct rig *r, uint64_t addr)
{
	return (uint32_t)xsim_mmio_read(r->dom, 0, addr, 4);
}

/* Malformed entries are skipped, never served; the one good entry is. */
static void test_virtio_strict(void **state)
{
	struct rig r;

	(void)state;
	rig_init(&r);
	virtio_entry(&r, 0, "virtio,device4", "0x2000000junk", "33", "mmio", "0");
	virtio_entry(&r, 1, "virtio,device4", "0x2000200", "33x", "mmio", "0");
	virtio_entry(&r, 2, "virtio,device4", "0x2000400", "34", "pci", "0");
	virtio_entry(&r, 3, "virtio,deviceXYZ", "0x2000600", "35", "mmio", "0");
	virtio_entry(&r, 4, "virtio,device4", "0x2000800", "36", "mmio", "maybe");
	virtio_entry(&r, 5, "virtio,device4", "-0x2000a00", "37", "mmio", "0");
	virtio_entry(&r, 6, "virtio,device4", "0x2000c01", "38", "mmio", "0");   /* unaligned */
	virtio_entry(&r, 7, "virtio,device4", "0x3000000", "39", "mmio", "0");   /* outside */
	virtio_entry(&r, 8, "virtio,device4", "0x2000e00", "31", "mmio", "0");   /* not an SPI */
	virtio_entry(&r, 9, "virtio,device4", " 0x2001000", "40", "mmio", "0");
	virtio_entry(&r, 10, "virtio,device4", "", "41", "mmio", "0");
	virtio_entry(&r, 11, "virtio,device4", "0x2001400", "42", NULL, "0");
	virtio_entry(&r, 12, "virtio,device4", "0x2001600", "43", "mmio", "False");  /* good */
	{
		char zz[256];

		snprintf(zz, sizeof(zz), "%s/virtio/%u/zz/type", r.be, xsim_dom_id(r.dom));
		assert_int_equal(xsim_xs_write(r.hub, zz, "virtio,device4"), 0);
	}
	rig_start(&r, "[rng]\n");
	assert_int_equal(rd(&r, 0x2001600), MAGIC);
	assert_int_equal(rd(&r, 0x2001600 + REG_DEVICE_ID), 4);
	for (uint64_t a = 0x2000000; a < 0x2001600; a += 0x200)
		assert_false(xsim_dom_routed(r.dom, a));
	assert_true(xsim_daemon_log_has(&r.dm, "bad base"));
	assert_true(xsim_daemon_log_has(&r.dm, "ignoring entry 'zz'"));
	assert_false(xsim_daemon_log_has(&r.dm, "has no section"));
	rig_close(&r);
}

/* "type" carries the id in hex (virtio,device22 is i2c, id 34); "base" may be decimal. */
static void test_virtio_hex_type_decimal_base(void **state)
{
	struct rig r;

	(void)state;
	rig_init(&r);
	virtio_entry(&r, 0, "virtio,device22", "0x2000000", "33", "mmio", "0");
	virtio_entry(&r, 1, "virtio,device4", "33554944", "34", "mmio", NULL);
	rig_start(&r, "[i2c \"bus0\"]\nsim = eeprom@0x50\n\n[rng]\n");
	assert_int_equal(rd(&r, 0x2000000 + REG_DEVICE_ID), 34);
	assert_int_equal(rd(&r, 0x2000200 + REG_DEVICE_ID), 4);
	rig_close(&r);
}

/* Xen 4.17 disk: decimal base, params as the image, mode r, state 2 once serving, 6 after. */
static void test_disk417(void **state)
{
	struct rig r;
	char img[256], path[256], dir[200];
	int fd;

	(void)state;
	rig_init(&r);
	snprintf(img, sizeof(img), "%s/disk.img", xsim_hub_dir(r.hub));
	fd = open(img, O_CREAT | O_RDWR, 0600);
	assert_true(fd >= 0);
	assert_int_equal(ftruncate(fd, 1 << 20), 0);
	close(fd);
	snprintf(dir, sizeof(dir), "%s/virtio_disk/%u/51712", r.be, xsim_dom_id(r.dom));
#define W(key, ...) do { snprintf(path, sizeof(path), "%s/" key, dir); \
		assert_int_equal(xsim_xs_write(r.hub, path, __VA_ARGS__), 0); } while (0)
	W("params", "%s", img);
	W("mode", "r");
	W("base", "33554432");
	W("irq", "33");
	W("dev", "xvda");
	W("state", "1");
#undef W
	rig_start(&r, "[block \"root\"]\n");
	snprintf(path, sizeof(path), "%s/state", dir);
	assert_int_equal(xsim_xs_wait(r.hub, path, "2", 3000), 0);
	assert_int_equal(rd(&r, 0x2000000 + REG_DEVICE_ID), 2);
	xsim_mmio_write(r.dom, 0, 0x2000000 + REG_DEV_FEATURES_SEL, 4, 0);
	assert_true(rd(&r, 0x2000000 + REG_DEV_FEATURES) & (1u << 5));   /* VIRTIO_BLK_F_RO */
	xsim_daemon_stop(&r.dm);
	assert_int_equal(xsim_xs_wait(r.hub, path, "6", 3000), 0);
	rig_close(&r);
}

/* No device declared for us: the daemon still starts (and says so). */
static void test_nothing_declared(void **state)
{
	struct rig r;

	(void)state;
	rig_init(&r);
	rig_start(&r, "[rng]\n");
	assert_false(xsim_dom_routed(r.dom, 0x2000000));
	assert_true(xsim_daemon_log_has(&r.dm, "no device"));
	rig_close(&r);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_virtio_strict),
		cmocka_unit_test(test_virtio_hex_type_decimal_base),
		cmocka_unit_test(test_disk417),
		cmocka_unit_test(test_nothing_declared),
	};

	signal(SIGPIPE, SIG_IGN);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
