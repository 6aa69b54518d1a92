/*
 * The privcmd ioeventfd/irqfd notify fast path through the real sim daemon, against xensim's
 * model of the dom0 kernel (tests/xensim/kernel.c): chosen when offered, correct for rng and
 * multi-queue block traffic, the fallbacks (old kernel, failing assign, notify_fastpath = on
 * without support), kicks the kernel does not take, device reset, domain death and SIGTERM
 * teardown. The daemon and the kernel sharing one slot: tests/integration/test_slot_race.c.
 */
#include <endian.h>
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmocka.h>

#include "devices/blk.h"
#include "devices/device.h"
#include "tests/integration/itest.h"
#include "tests/lib/vdriver.h"

#define SPI0     33u
#define RAM_GPA  UINT64_C(0x40100000)
#define RAM_LEN  (UINT64_C(8) << 20)
#define R_NOTIFY 0x050
#define WAIT_MS  5000
#define WANT (VIRTIO_BIT(VIRTIO_F_VERSION_1) | VIRTIO_BIT(VIRTIO_F_EVENT_IDX) | \
	      VIRTIO_BIT(VIRTIO_F_INDIRECT_DESC))
#define FAST_LINE "notify path: privcmd ioeventfd+irqfd"

#define RNG_INI "[guest]\nname = g1\ndiscovery = explicit\n%s\n[rng]\nmmio = 0x02000000\nirq = 33\n"

struct rig {
	struct itest *t;
	struct xsim_vio vio;
	struct vdrv_mem mem;
	struct vdrv drv;
};

/* A hub and domain, the kernel model set up as `k`, the daemon serving ini. */
static struct itest *serve(const struct xsim_kernel_opts *k, unsigned vcpus, const char *ini)
{
	struct itest *t = itest_new(&(struct xsim_dom_opts){ .name = "g1", .nr_vcpus = vcpus,
							     .ram_mib = 64 });

	if (!t)
		return NULL;
	if (k)
		xsim_kernel_set(t->hub, k);
	if (itest_serve(t, ini) < 0) {
		itest_free(t);
		return NULL;
	}
	return t;
}

static void rng_up(struct rig *r, const struct xsim_kernel_opts *k, const char *guest_keys)
{
	char ini[256];

	snprintf(ini, sizeof(ini), RNG_INI, guest_keys);
	r->t = serve(k, 2, ini);
	assert_non_null(r->t);
	xsim_vio_init(&r->vio, r->t->dom, 0, WIN0, SPI0);
	assert_int_equal(xsim_vmem_init(&r->mem, r->t->dom, RAM_GPA, RAM_LEN, false), 0);
	memset(&r->drv, 0, sizeof(r->drv));
	assert_int_equal(vdrv_init(&r->drv, &r->vio.io, &r->mem, WANT, 1, 64), 0);
	assert_int_equal(r->drv.device_id, 4);
}

/* n rng requests of 64 bytes, each answered once with 64 random bytes. */
static void rng_round_trips(struct rig *r, unsigned n)
{
	uint8_t *host;
	struct vdrv_buf b = { .len = 64, .write = true };

	b.gpa = vdrv_alloc(&r->mem, 64, 16, (void **)&host);
	assert_int_not_equal(b.gpa, 0);
	for (unsigned i = 0; i < n; i++) {
		uint8_t acc = 0;

		memset(host, 0, 64);
		assert_int_equal(vdrv_transfer(&r->drv, 0, &b, 1, false, WAIT_MS), 64);
		for (unsigned j = 0; j < 64; j++)
			acc |= host[j];
		assert_int_not_equal(acc, 0);
	}
	assert_int_equal(r->vio.errors, 0);
}

static long long stat_of(struct itest *t, const char *key)
{
	return xsim_daemon_stat(&t->dm, key, 3000);
}

/* A STATUS= line sent since READY=1 (SIGUSR1 sends one) contains both needles. */
static bool status_has(struct itest *t, const char *needle, const char *needle2)
{
	char buf[512];

	for (int i = 0; i < 200; i++) {
		ssize_t n = recv(t->dm.notify_fd, buf, sizeof(buf) - 1, MSG_DONTWAIT);

		if (n > 0) {
			buf[n] = '\0';
			if (strstr(buf, "STATUS=") && strstr(buf, needle) && strstr(buf, needle2))
				return true;
			continue;
		}
		usleep(10000);
	}
	return false;
}

static void stop_clean(struct itest *t)
{
	int st = xsim_daemon_stop(&t->dm);

	if (!WIFEXITED(st) || WEXITSTATUS(st) != 0)
		itest_dump_log(t);
	assert_true(WIFEXITED(st));
	assert_int_equal(WEXITSTATUS(st), 0);
}

/* Stop cleanly (exit 0) and free everything. */
static void finish(struct itest *t)
{
	stop_clean(t);
	itest_free(t);
}

static void kernel_counts(struct itest *t, unsigned ioeventfds, unsigned irqfds)
{
	struct xsim_kernel_counts c;

	xsim_kernel_count(t->hub, &c);
	assert_int_equal(c.ioeventfds, ioeventfds);
	assert_int_equal(c.irqfds, irqfds);
}

/* ---- chosen when offered ---- */

static void test_used_when_available(void **state)
{
	struct rig r;
	struct xsim_kernel_counts c;

	(void)state;
	rng_up(&r, NULL, "");
	assert_true(xsim_daemon_log_has(&r.t->dm, FAST_LINE " (1 queues, "));
	kernel_counts(r.t, 1, 1);
	rng_round_trips(&r, 200);
	xsim_kernel_count(r.t->hub, &c);
	assert_true(c.claims >= 1);
	assert_int_equal(stat_of(r.t, "fastpath"), 1);
	/*
	 * Every kick the kernel claimed reaches the daemon through its eventfd; the last ones may
	 * still wait in it when their requests were served from an earlier look at the ring.
	 */
	for (int i = 0; i < 100 && stat_of(r.t, "eventfd_notifies") != (long long)c.claims; i++)
		usleep(20000);
	assert_int_equal(stat_of(r.t, "eventfd_notifies"), (long long)c.claims);
	assert_true(stat_of(r.t, "irqfd_irqs") >= 1);
	assert_int_equal(stat_of(r.t, "irq_errors"), 0);
	/* SIGUSR1 (stat_of) also updated systemd's STATUS= with the path and its counters. */
	assert_true(status_has(r.t, "notify path privcmd ioeventfd+irqfd: ",
			       " notifies via eventfd, "));
	stop_clean(r.t);
	/* SIGTERM teardown deassigned everything: the kernel holds nothing of ours. */
	kernel_counts(r.t, 0, 0);
	itest_free(r.t);
}

/* ---- block, several queues ---- */

struct blk_req {
	struct virtio_blk_outhdr *hdr;
	uint8_t *data, *status;
	struct vdrv_buf b[3];
};

static void blk_req_init(struct vdrv_mem *m, struct blk_req *q)
{
	q->b[0].gpa = vdrv_alloc(m, sizeof(*q->hdr), 16, (void **)&q->hdr);
	q->b[1].gpa = vdrv_alloc(m, 4096, 512, (void **)&q->data);
	q->b[2].gpa = vdrv_alloc(m, 1, 1, (void **)&q->status);
	q->b[0] = (struct vdrv_buf){ q->b[0].gpa, sizeof(*q->hdr), false };
	q->b[2] = (struct vdrv_buf){ q->b[2].gpa, 1, true };
	assert_true(q->b[0].gpa && q->b[1].gpa && q->b[2].gpa);
}

static void blk_io(struct vdrv *drv, unsigned q, struct blk_req *r, bool write, uint64_t sector)
{
	r->hdr->type = htole32(write ? VIRTIO_BLK_T_OUT : VIRTIO_BLK_T_IN);
	r->hdr->ioprio = 0;
	r->hdr->sector = htole64(sector);
	r->b[1] = (struct vdrv_buf){ r->b[1].gpa, 4096, !write };
	*r->status = 0xff;
	assert_true(vdrv_transfer(drv, q, r->b, 3, false, WAIT_MS) >= 1);
	assert_int_equal(*r->status, 0);
}

static void test_blk_multiqueue(void **state)
{
	char img[128], ini[512];
	struct rig r;
	struct blk_req q[4];
	int fd;

	(void)state;
	snprintf(img, sizeof(img), "/tmp/fastpath_blk.%d.img", (int)getpid());
	fd = open(img, O_RDWR | O_CREAT | O_TRUNC, 0600);
	assert_true(fd >= 0 && ftruncate(fd, 8 << 20) == 0);
	close(fd);
	snprintf(ini, sizeof(ini), "[guest]\nname = g1\ndiscovery = explicit\n\n[block \"root\"]\n"
		 "mmio = 0x02000000\nirq = 33\npath = %s\nqueues = 4\n", img);
	r.t = serve(NULL, 2, ini);
	assert_non_null(r.t);
	assert_true(xsim_daemon_log_has(&r.t->dm, FAST_LINE " (4 queues, "));
	kernel_counts(r.t, 4, 1);
	xsim_vio_init(&r.vio, r.t->dom, 1, WIN0, SPI0);
	assert_int_equal(xsim_vmem_init(&r.mem, r.t->dom, RAM_GPA, RAM_LEN, false), 0);
	memset(&r.drv, 0, sizeof(r.drv));
	assert_int_equal(vdrv_init(&r.drv, &r.vio.io, &r.mem,
				   WANT | VIRTIO_BIT(VIRTIO_BLK_F_MQ), 4, 64), 0);
	for (unsigned i = 0; i < 4; i++)
		blk_req_init(&r.mem, &q[i]);
	/* 4 queues x 64 blocks: written through one queue, read back through another. */
	for (unsigned n = 0; n < 64; n++) {
		for (unsigned i = 0; i < 4; i++) {
			memset(q[i].data, (int)(n * 4 + i + 1), 4096);
			blk_io(&r.drv, i, &q[i], true, (n * 4 + i) * 8);
		}
		for (unsigned i = 0; i < 4; i++) {
			memset(q[i].data, 0, 4096);
			blk_io(&r.drv, (i + 1) % 4, &q[i], false, (n * 4 + i) * 8);
			for (unsigned j = 0; j < 4096; j++)
				if (q[i].data[j] != (uint8_t)(n * 4 + i + 1))
					fail_msg("block %u byte %u: 0x%02x", n * 4 + i, j,
						 q[i].data[j]);
		}
	}
	assert_int_equal(r.vio.errors, 0);
	assert_true(stat_of(r.t, "eventfd_notifies") >= 1);
	stop_clean(r.t);
	kernel_counts(r.t, 0, 0);
	itest_free(r.t);
	unlink(img);
}

/* ---- fallbacks ---- */

static void test_fallback_old_kernel(void **state)
{
	struct xsim_kernel_opts k = { .no_eventfd = true };
	struct rig r;

	(void)state;
	rng_up(&r, &k, "");
	assert_true(xsim_daemon_log_has(&r.t->dm, "notify path: ioreq (the dom0 kernel has no "
					"privcmd ioeventfd"));
	assert_false(xsim_daemon_log_has(&r.t->dm, FAST_LINE));
	rng_round_trips(&r, 50);
	assert_int_equal(stat_of(r.t, "fastpath"), 0);
	assert_int_equal(stat_of(r.t, "eventfd_notifies"), 0);
	kernel_counts(r.t, 0, 0);
	finish(r.t);
}

static void test_fallback_assign_fails(void **state)
{
	struct xsim_kernel_opts k = { .assign_errno = EIO };
	struct rig r;

	(void)state;
	rng_up(&r, &k, "");
	assert_true(xsim_daemon_log_has(&r.t->dm, "notify path: ioreq (assigning the eventfds: "
					"Input/output error)"));
	/* The irqfd assigned before the failing ioeventfd was undone. */
	kernel_counts(r.t, 0, 0);
	rng_round_trips(&r, 20);
	finish(r.t);
}

static void test_off(void **state)
{
	struct rig r;

	(void)state;
	rng_up(&r, NULL, "notify_fastpath = off\n");
	assert_true(xsim_daemon_log_has(&r.t->dm, "notify path: ioreq (notify_fastpath = off)"));
	kernel_counts(r.t, 0, 0);
	rng_round_trips(&r, 20);
	finish(r.t);
}

/*
 * auto without a service manager to keep descriptors (a manual start, a busybox dom0) and with a
 * state file: the fast path's eventfds would not survive a restart, so the kicks go through the
 * ioreq server; `on` still takes the fast path there, and --state-dir none keeps auto's choice.
 */
static void test_auto_without_service_manager(void **state)
{
	static const char *const cases[][2] = {
		{ "", "--state-dir" }, { "notify_fastpath = on\n", "--state-dir" },
		{ "", "none" },
	};

	(void)state;
	for (unsigned i = 0; i < 3; i++) {
		struct itest *t = itest_new(&(struct xsim_dom_opts){ .name = "g1", .nr_vcpus = 2 });
		char ini[256], dir[300];
		const char *args[] = { "--foreground", "--config", NULL, "--state-dir", dir, NULL };
		bool fast = i > 0;

		assert_non_null(t);
		snprintf(ini, sizeof(ini), RNG_INI, cases[i][0]);
		assert_int_equal(itest_write(t->ini, "%s", ini), 0);
		args[2] = t->ini;
		snprintf(dir, sizeof(dir), "%s", strcmp(cases[i][1], "none") ? xsim_hub_dir(t->hub)
									     : "none");
		assert_int_equal(xsim_daemon_start(t->hub, &t->dm, XVD_SIM_DAEMON, "daemon", args,
						   XSIM_DAEMON_NO_NOTIFY), 0);
		assert_true(xsim_daemon_wait_log(&t->dm, "notify path: ", 10000));
		if (fast) {
			assert_true(xsim_daemon_wait_log(&t->dm, FAST_LINE, 10000));
		} else {
			assert_true(xsim_daemon_log_has(&t->dm, "notify path: ioreq (auto: no service "
							"manager keeps our descriptors"));
			kernel_counts(t, 0, 0);
		}
		finish(t);
	}
}

/* The kernel's handler reads one ioreq page: more vCPUs than it holds stay on the ioreq path. */
static void test_many_vcpus(void **state)
{
	char ini[256];
	struct itest *t;

	(void)state;
	snprintf(ini, sizeof(ini), RNG_INI, "");
	t = serve(NULL, 200, ini);
	assert_non_null(t);
	assert_true(xsim_daemon_log_has(&t->dm, "notify path: ioreq (200 vCPUs: the kernel's "
					"ioeventfd reads one ioreq page"));
	kernel_counts(t, 0, 0);
	assert_int_equal(itest_rd32(t, 199, WIN0 + R_MAGIC), VIRTIO_MAGIC);
	finish(t);
}

static void test_on_without_support(void **state)
{
	struct itest *t = itest_new(&(struct xsim_dom_opts){ .name = "g1" });
	const char *args[] = { "--foreground", "--config", NULL, NULL };
	char ini[512];
	int st;

	(void)state;
	assert_non_null(t);
	xsim_kernel_set(t->hub, &(struct xsim_kernel_opts){ .no_eventfd = true });
	snprintf(ini, sizeof(ini), RNG_INI, "notify_fastpath = on\n");
	assert_int_equal(itest_write(t->ini, "%s", ini), 0);
	args[2] = t->ini;
	assert_int_equal(xsim_daemon_start(t->hub, &t->dm, XVD_SIM_DAEMON, "daemon", args, 0), 0);
	assert_int_equal(xsim_daemon_wait_exit(&t->dm, 10000, &st), 0);
	assert_true(WIFEXITED(st));
	assert_int_not_equal(WEXITSTATUS(st), 0);
	/* file:line: key: what is wrong, as every configuration error. */
	snprintf(ini, sizeof(ini), "%s:4: notify_fastpath: on, but the privcmd ioeventfd/irqfd "
		 "fast path is unavailable: the dom0 kernel has no privcmd ioeventfd", t->ini);
	if (!xsim_daemon_log_has(&t->dm, ini)) {
		itest_dump_log(t);
		fail_msg("no configuration-style error");
	}
	kernel_counts(t, 0, 0);
	itest_free(t);
}

/* ---- what the kernel does not take still comes through the ioreq path ---- */

static void test_other_notifies_via_ioreq(void **state)
{
	struct xsim_kernel_counts c0, c1;
	struct rig r;
	long long ioreqs;

	(void)state;
	rng_up(&r, NULL, "");
	xsim_kernel_count(r.t->hub, &c0);
	ioreqs = stat_of(r.t, "ioreqs");
	/* Queue 1 and 7 do not exist (rng has one), a 2-byte write, a read. */
	assert_int_equal(xsim_mmio_write(r.t->dom, 0, WIN0 + R_NOTIFY, 4, 1), 0);
	assert_int_equal(xsim_mmio_write(r.t->dom, 1, WIN0 + R_NOTIFY, 4, 7), 0);
	assert_int_equal(xsim_mmio_write(r.t->dom, 0, WIN0 + R_NOTIFY, 2, 0), 0);
	assert_int_equal(itest_rd32(r.t, 0, WIN0 + R_NOTIFY), 0);
	/*
	 * The kick dword belongs to the notify server, the rest of the window to the main one:
	 * an access spanning both reaches neither, and Xen answers it with a data abort.
	 */
	assert_int_equal(xsim_mmio_write(r.t->dom, 0, WIN0 + R_NOTIFY, 8, 0), -EFAULT);
	assert_int_equal(xsim_mmio_write(r.t->dom, 0, WIN0 + R_NOTIFY - 4, 8, 0), -EFAULT);
	xsim_kernel_count(r.t->hub, &c1);
	assert_int_equal(c1.claims, c0.claims);
	/* Answered by the daemon, as before the fast path. */
	assert_true(stat_of(r.t, "ioreqs") >= ioreqs + 4);
	/* Bits above the queue index: the kernel compares the low 16 bits and takes it. */
	assert_int_equal(xsim_mmio_write(r.t->dom, 0, WIN0 + R_NOTIFY, 4, 0x10000), 0);
	xsim_kernel_count(r.t->hub, &c1);
	assert_int_equal(c1.claims, c0.claims + 1);
	rng_round_trips(&r, 10);
	finish(r.t);
}

/* ---- reset and re-initialisation with the eventfds assigned ---- */

static void test_reset_reinit(void **state)
{
	struct rig r;

	(void)state;
	rng_up(&r, NULL, "");
	rng_round_trips(&r, 10);
	vdrv_reset(&r.drv);
	assert_int_equal(vdrv_status(&r.drv), 0);
	/* A kick into the reset device is ignored, as through the ioreq path. */
	assert_int_equal(xsim_mmio_write(r.t->dom, 0, WIN0 + R_NOTIFY, 4, 0), 0);
	memset(&r.drv, 0, sizeof(r.drv));
	r.mem.next = 0;
	assert_int_equal(vdrv_init(&r.drv, &r.vio.io, &r.mem, WANT, 1, 64), 0);
	rng_round_trips(&r, 10);
	kernel_counts(r.t, 1, 1);
	assert_true(stat_of(r.t, "eventfd_notifies") >= 1);
	finish(r.t);
}

/* ---- domain death with eventfds assigned ---- */

static void test_domain_death(void **state)
{
	struct rig r;
	int st;

	(void)state;
	rng_up(&r, NULL, "");
	rng_round_trips(&r, 10);
	assert_int_equal(xsim_dom_destroy(r.t->dom), 0);
	assert_int_equal(xsim_daemon_wait_exit(&r.t->dm, 10000, &st), 0);
	if (!WIFEXITED(st) || WEXITSTATUS(st) != 0 ||
	    xsim_daemon_log_has(&r.t->dm, "warning:")) {
		itest_dump_log(r.t);
		fail_msg("domain death: exit status 0x%x or warnings", st);
	}
	/* Deassigning does not need the domain: the kernel is left with nothing of ours. */
	kernel_counts(r.t, 0, 0);
	itest_free(r.t);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_used_when_available),
		cmocka_unit_test(test_blk_multiqueue),
		cmocka_unit_test(test_fallback_old_kernel),
		cmocka_unit_test(test_fallback_assign_fails),
		cmocka_unit_test(test_off),
		cmocka_unit_test(test_auto_without_service_manager),
		cmocka_unit_test(test_many_vcpus),
		cmocka_unit_test(test_on_without_support),
		cmocka_unit_test(test_other_notifies_via_ioreq),
		cmocka_unit_test(test_reset_reinit),
		cmocka_unit_test(test_domain_death),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
