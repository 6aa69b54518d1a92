/*
 * The real sim daemon serving one guest through xensim: rng end to end through vdriver, many
 * vCPUs, every kind of malformed ioreq, a grant-mapped guest, IOREQ_TYPE_INVALIDATE, and the
 * guest dying under it.
 */
#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <unistd.h>

#include <cmocka.h>

#include "devices/device.h"
#include "tests/integration/itest.h"
#include "tests/lib/vdriver.h"
#include "tests/xensim/proto.h"

#define RNG_INI \
	"[guest]\nname = g1\ndiscovery = explicit\n%s" \
	"[rng]\nmmio = 0x02000000\nirq = 33\n"

#define WANT (VIRTIO_BIT(VIRTIO_F_VERSION_1) | VIRTIO_BIT(VIRTIO_F_EVENT_IDX) | \
	      VIRTIO_BIT(VIRTIO_F_INDIRECT_DESC) | VIRTIO_BIT(VIRTIO_F_ACCESS_PLATFORM))
#define RAM_GPA UINT64_C(0x40100000)
#define RAM_LEN (UINT64_C(1) << 20)

static struct itest *start_args(unsigned nr_vcpus, const char *guest_keys,
				 const char *const *more)
{
	struct xsim_dom_opts o = { .name = "g1", .nr_vcpus = nr_vcpus, .ram_mib = 32,
				   .ram1_mib = 8 };
	struct itest *t = itest_new(&o);
	char ini[512];

	if (!t)
		return NULL;
	snprintf(ini, sizeof(ini), RNG_INI, guest_keys);
	if (itest_serve_args(t, ini, more) < 0) {
		itest_free(t);
		return NULL;
	}
	return t;
}

static struct itest *start_opts(unsigned nr_vcpus, const char *guest_keys)
{
	return start_args(nr_vcpus, guest_keys, NULL);
}

static struct itest *start(unsigned nr_vcpus, bool grants)
{
	return start_opts(nr_vcpus, grants ? "grant_usage = yes\n" : "");
}

static void stop_clean(struct itest *t)
{
	int st = itest_free(t);

	assert_true(WIFEXITED(st));
	assert_int_equal(WEXITSTATUS(st), 0);
}

static bool all_zero(const uint8_t *p, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (p[i])
			return false;
	return true;
}

/* Initialise the rng through vdriver on vCPU `vcpu`; returns the driver. */
static void rng_init(struct itest *t, struct vdrv *drv, struct xsim_vio *vio,
		     struct vdrv_mem *mem, unsigned vcpu, bool grants)
{
	xsim_vio_init(vio, t->dom, vcpu, WIN0, 33);
	assert_int_equal(xsim_vmem_init(mem, t->dom, RAM_GPA, RAM_LEN, grants), 0);
	memset(drv, 0, sizeof(*drv));
	assert_int_equal(vdrv_init(drv, &vio->io, mem, WANT, 1, 64), 0);
	assert_int_equal(drv->device_id, 4);
	assert_int_equal(vio->errors, 0);
}

static void test_rng_end_to_end(void **state)
{
	struct itest *t = start(2, false);
	struct xsim_vio vio;
	struct vdrv_mem mem;
	struct vdrv drv;
	struct vdrv_buf b;
	uint8_t *host;
	uint32_t edges;

	(void)state;
	assert_non_null(t);
	rng_init(t, &drv, &vio, &mem, 1, false);
	/* Foreign mapping: no ACCESS_PLATFORM offered. */
	assert_false(drv.device_features & VIRTIO_BIT(VIRTIO_F_ACCESS_PLATFORM));
	edges = xsim_irq_edges(t->dom, 33);
	b.gpa = vdrv_alloc(&mem, 256, 16, (void **)&host);
	b.len = 256;
	b.write = true;
	assert_int_not_equal(b.gpa, 0);
	for (int i = 0; i < 8; i++) {
		memset(host, 0, 256);
		assert_int_equal(vdrv_transfer(&drv, 0, &b, 1, i & 1, 5000), 256);
		assert_false(all_zero(host, 256));
	}
	/* The daemon raised SPI 33 for completions (edges seen by the guest side). */
	assert_true(xsim_irq_edges(t->dom, 33) > edges);
	assert_int_equal(vio.errors, 0);
	stop_clean(t);
}

static void test_200_vcpus(void **state)
{
	struct itest *t = start(200, false);
	const unsigned vcpus[] = { 0, 1, 127, 128, 129, 198, 199 };

	(void)state;
	assert_non_null(t);
	for (unsigned i = 0; i < sizeof(vcpus) / sizeof(vcpus[0]); i++) {
		assert_int_equal(itest_rd32(t, vcpus[i], WIN0 + R_MAGIC), VIRTIO_MAGIC);
		assert_int_equal(itest_rd32(t, vcpus[i], WIN0 + R_DEVICE_ID), 4);
	}
	/* A whole driver bring-up and transfer from the last vCPU. */
	struct xsim_vio vio;
	struct vdrv_mem mem;
	struct vdrv drv;
	struct vdrv_buf b = { .len = 64, .write = true };

	rng_init(t, &drv, &vio, &mem, 199, false);
	b.gpa = vdrv_alloc(&mem, 64, 16, NULL);
	assert_int_equal(vdrv_transfer(&drv, 0, &b, 1, false, 5000), 64);
	stop_clean(t);
}

/* One malformed request: answered (never left hanging) with all-ones for reads. */
static void expect_answered(struct itest *t, const struct ioreq *req, uint64_t want_data)
{
	struct ioreq resp;

	assert_int_equal(xsim_ioreq_raw(t->dom, 0, WIN0, req, &resp, 3000), 0);
	assert_int_equal(resp.state, STATE_IORESP_READY);
	if (req->dir == IOREQ_READ)
		assert_int_equal(resp.data, want_data);
	assert_true(xsim_daemon_alive(&t->dm));
}

static struct ioreq mkreq(uint8_t type, uint64_t addr, uint32_t size, uint32_t count, bool ptr,
			  bool read);

static void expect_read(struct itest *t, struct ioreq r, uint64_t want_data)
{
	expect_answered(t, &r, want_data);
}

static struct ioreq mkreq(uint8_t type, uint64_t addr, uint32_t size, uint32_t count, bool ptr,
			  bool read)
{
	struct ioreq r = { .addr = addr, .size = size, .count = count, .data_is_ptr = ptr,
			   .dir = read ? IOREQ_READ : IOREQ_WRITE, .type = type,
			   .state = STATE_IOREQ_READY, .data = read ? 0x1234 : 0 };

	return r;
}

static void test_malformed_ioreqs(void **state)
{
	struct itest *t = start(1, false);
	struct ioreq r;
	uint64_t ones32 = 0xffffffffu, ones64 = ~UINT64_C(0);

	(void)state;
	assert_non_null(t);
	/* Wrong types. */
	expect_read(t, mkreq(IOREQ_TYPE_PIO, WIN0, 4, 1, false, true), ones32);
	expect_read(t, mkreq(IOREQ_TYPE_PCI_CONFIG, WIN0, 4, 1, false, true), ones32);
	expect_read(t, mkreq(IOREQ_TYPE_TIMEOFFSET, WIN0, 4, 1, false, true), ones32);
	expect_read(t, mkreq(0xee, WIN0, 4, 1, false, true), ones32);
	/* count != 1. */
	expect_read(t, mkreq(IOREQ_TYPE_COPY, WIN0, 4, 0, false, true), ones32);
	expect_read(t, mkreq(IOREQ_TYPE_COPY, WIN0, 4, 2, false, true), ones32);
	expect_read(t, mkreq(IOREQ_TYPE_COPY, WIN0, 4, 0xffffffffu, false, true),
			ones32);
	/* data_is_ptr. */
	expect_read(t, mkreq(IOREQ_TYPE_COPY, WIN0, 4, 1, true, true), ones32);
	/* Bad sizes. */
	expect_read(t, mkreq(IOREQ_TYPE_COPY, WIN0, 0, 1, false, true), ones64);
	expect_read(t, mkreq(IOREQ_TYPE_COPY, WIN0, 3, 1, false, true), ones64);
	expect_read(t, mkreq(IOREQ_TYPE_COPY, WIN0, 16, 1, false, true), ones64);
	expect_read(t, mkreq(IOREQ_TYPE_COPY, WIN0, 0xffffffffu, 1, false, true),
			ones64);
	/* Outside every window (Xen would not send it; the daemon must not trust that). */
	expect_read(t, mkreq(IOREQ_TYPE_COPY, 0x03000000, 4, 1, false, true), ones32);
	expect_read(t, mkreq(IOREQ_TYPE_COPY, WIN0 - 4, 4, 1, false, true), ones32);
	expect_read(t, mkreq(IOREQ_TYPE_COPY, WIN0 + 0x1fe, 4, 1, false, true),
			ones32);
	expect_read(t, mkreq(IOREQ_TYPE_COPY, ones64 - 1, 8, 1, false, true), ones64);
	/* Unaligned and wrong-width register accesses: all-ones from the transport. */
	expect_read(t, mkreq(IOREQ_TYPE_COPY, WIN0 + 1, 4, 1, false, true), ones32);
	expect_read(t, mkreq(IOREQ_TYPE_COPY, WIN0 + R_MAGIC, 2, 1, false, true),
			0xffff);
	/* Malformed writes are ignored: Status keeps its value. */
	assert_int_equal(xsim_mmio_write(t->dom, 0, WIN0 + R_STATUS, 4, 1), 0);
	r = mkreq(IOREQ_TYPE_PIO, WIN0 + R_STATUS, 4, 1, false, false);
	r.data = 3;
	expect_answered(t, &r, 0);
	r = mkreq(IOREQ_TYPE_COPY, WIN0 + R_STATUS, 4, 2, false, false);
	r.data = 3;
	expect_answered(t, &r, 0);
	assert_int_equal(itest_rd32(t, 0, WIN0 + R_STATUS), 1);
	/* A slot not in STATE_IOREQ_READY is not served (nothing to answer), then normal use. */
	r = mkreq(IOREQ_TYPE_COPY, WIN0, 4, 1, false, true);
	r.state = STATE_IOREQ_INPROCESS;
	assert_int_equal(xsim_ioreq_raw(t->dom, 0, WIN0, &r, &r, 200), -ETIMEDOUT);
	r = mkreq(IOREQ_TYPE_COPY, WIN0, 4, 1, false, true);
	r.state = 0xf;
	assert_int_equal(xsim_ioreq_raw(t->dom, 0, WIN0, &r, &r, 200), -ETIMEDOUT);
	r = mkreq(IOREQ_TYPE_COPY, WIN0, 4, 1, false, true);
	r.state = STATE_IORESP_READY;   /* a stale response: must not be "answered" again */
	assert_int_equal(xsim_ioreq_raw(t->dom, 0, WIN0, &r, NULL, 0), 0);
	usleep(50000);
	assert_true(xsim_daemon_alive(&t->dm));
	assert_int_equal(itest_rd32(t, 0, WIN0 + R_MAGIC), VIRTIO_MAGIC);
	/* An unrouted address is a data abort for the guest: the daemon never sees it. */
	assert_int_equal(xsim_mmio_write(t->dom, 0, WIN1, 4, 1), -EFAULT);
	stop_clean(t);
	(void)ones64;
}

/*
 * Once serving, the daemon's device-model, foreign-memory and event-channel handles are
 * restricted to the guest (DESIGN.md §3): a compromised daemon cannot reach another domain.
 */
static void test_handles_restricted(void **state)
{
	struct itest *t = start(1, false);

	(void)state;
	assert_non_null(t);
	assert_int_equal(xsim_dom_restricted(t->dom),
			 XSIM_RESTRICTED_DM | XSIM_RESTRICTED_FMEM | XSIM_RESTRICTED_EVTCHN);
	assert_int_equal(itest_rd32(t, 0, WIN0 + R_MAGIC), VIRTIO_MAGIC);
	stop_clean(t);
}

static void test_invalidate(void **state)
{
	struct itest *t = start(1, false);

	(void)state;
	assert_non_null(t);
	assert_int_equal(xsim_invalidate(t->dom, 0, 3000), 0);
	assert_int_equal(itest_rd32(t, 0, WIN0 + R_MAGIC), VIRTIO_MAGIC);
	stop_clean(t);
}

static void test_grant_guest(void **state)
{
	struct itest *t = start(1, true);
	struct xsim_vio vio;
	struct vdrv_mem mem;
	struct vdrv drv;
	struct vdrv_buf b = { .len = 512, .write = true };
	uint8_t *host;

	(void)state;
	assert_non_null(t);
	rng_init(t, &drv, &vio, &mem, 0, true);
	assert_true(drv.features & VIRTIO_BIT(VIRTIO_F_ACCESS_PLATFORM));
	/* A buffer spanning a page boundary: two consecutive refs. */
	b.gpa = vdrv_alloc(&mem, 8192, 4096, (void **)&host) + 4096 - 256;
	host += 4096 - 256;
	memset(host, 0, 512);
	assert_true(mem.dma_addr(&mem, b.gpa, 512, true) & GMEM_GRANT_BIT);
	assert_int_equal(vdrv_transfer(&drv, 0, &b, 1, false, 5000), 512);
	assert_false(all_zero(host, 256));
	assert_false(all_zero(host + 256, 256));
	assert_true(xsim_daemon_alive(&t->dm));
	stop_clean(t);
}

/* A device-writable buffer granted read-only must not be written (nor crash the daemon). */
static uint64_t ro_dma(struct vdrv_mem *m, uint64_t gpa, uint64_t len, bool device_writes)
{
	(void)device_writes;
	return xsim_grant_addr(m->opaque, gpa, len, true);
}

static void test_grant_readonly_refused(void **state)
{
	struct itest *t = start(1, true);
	struct xsim_vio vio;
	struct vdrv_mem mem;
	struct vdrv drv;
	struct vdrv_buf b = { .len = 128, .write = true };
	uint8_t *host;
	uint64_t (*rw_dma)(struct vdrv_mem *, uint64_t, uint64_t, bool);

	(void)state;
	assert_non_null(t);
	rng_init(t, &drv, &vio, &mem, 0, true);
	b.gpa = vdrv_alloc(&mem, 128, 16, (void **)&host);
	memset(host, 0, 128);
	rw_dma = mem.dma_addr;
	mem.dma_addr = ro_dma;
	assert_int_equal(vdrv_transfer(&drv, 0, &b, 1, false, 500), -1);
	mem.dma_addr = rw_dma;
	assert_true(all_zero(host, 128));
	assert_true(xsim_daemon_alive(&t->dm));
	assert_int_equal(itest_rd32(t, 0, WIN0 + R_MAGIC), VIRTIO_MAGIC);
	stop_clean(t);
}

/* The guest is destroyed while a request is in flight: the daemon exits 0 by itself. */
static void test_domain_death_mid_request(void **state)
{
	struct itest *t = start(4, false);
	struct xsim_vio vio;
	struct vdrv_mem mem;
	struct vdrv drv;
	struct vdrv_buf b = { .len = 4096, .write = true };
	struct ioreq r = mkreq(IOREQ_TYPE_COPY, WIN0 + R_MAGIC, 4, 1, false, true);
	int st;

	(void)state;
	assert_non_null(t);
	rng_init(t, &drv, &vio, &mem, 0, false);
	b.gpa = vdrv_alloc(&mem, 4096, 16, NULL);
	for (int i = 0; i < 16; i++)
		assert_true(vdrv_submit(&drv, 0, &b, 1, false, NULL) >= 0);
	vdrv_kick(&drv, 0);
	/* Requests posted on every vCPU, and the domain goes before they are answered. */
	for (unsigned v = 1; v < 4; v++)
		assert_int_equal(xsim_ioreq_raw(t->dom, v, WIN0, &r, NULL, 0), 0);
	assert_int_equal(xsim_dom_destroy(t->dom), 0);
	assert_int_equal(xsim_daemon_wait_exit(&t->dm, 10000, &st), 0);
	if (!WIFEXITED(st) || WEXITSTATUS(st) != 0)
		itest_dump_log(t);
	assert_true(WIFEXITED(st));
	assert_int_equal(WEXITSTATUS(st), 0);
	assert_true(xsim_daemon_log_has(&t->dm, "gone"));
	/* Undoing what Xen already tore down with the domain is not worth a warning. */
	if (xsim_daemon_log_has(&t->dm, "warning: xen:")) {
		itest_dump_log(t);
		fail_msg("teardown after the domain's death logged Xen warnings");
	}
	itest_free(t);
}

/* Buffers in the second RAM bank, with all RAM premapped, and with a tiny mapping cache. */
static void rng_in_bank1(const char *guest_keys)
{
	struct itest *t = start_opts(1, guest_keys);
	struct xsim_vio vio;
	struct vdrv_mem mem;
	struct vdrv drv = { 0 };
	struct vdrv_buf b = { .len = 3000, .write = true };
	uint8_t *host;

	assert_non_null(t);
	xsim_vio_init(&vio, t->dom, 0, WIN0, 33);
	assert_int_equal(xsim_vmem_init(&mem, t->dom, XSIM_RAM1_BASE + 0x10000, 1 << 20, false), 0);
	assert_int_equal(vdrv_init(&drv, &vio.io, &mem, WANT, 1, 32), 0);
	for (int i = 0; i < 32; i++) {
		b.gpa = vdrv_alloc(&mem, 3000, 8, (void **)&host);
		assert_int_not_equal(b.gpa, 0);
		memset(host, 0, 3000);
		assert_int_equal(vdrv_transfer(&drv, 0, &b, 1, i & 1, 5000), 3000);
		assert_false(all_zero(host + 2900, 100));
	}
	stop_clean(t);
}

static void test_bank1_premap(void **state)
{
	(void)state;
	rng_in_bank1("premap = yes\n");
}

static void test_bank1_small_cache(void **state)
{
	(void)state;
	rng_in_bank1("map_cache = 1\n");
}

/* A buffer in a hole of the guest's address space: the request fails, nothing else does. */
static void test_buffer_in_hole(void **state)
{
	struct itest *t = start(1, false);
	struct xsim_vio vio;
	struct vdrv_mem mem;
	struct vdrv drv;
	const uint64_t holes[] = { 0x30000000, 0x40000000 + (32u << 20) - 16, 0x1f0000000,
				   XSIM_RAM1_BASE + (8u << 20), ~UINT64_C(0) - 8 };

	(void)state;
	assert_non_null(t);
	for (unsigned i = 0; i < sizeof(holes) / sizeof(holes[0]); i++) {
		struct vdrv_buf b = { .gpa = holes[i], .len = 64, .write = true };

		rng_init(t, &drv, &vio, &mem, 0, false);
		/* Never filled: left unused (queue broken) or used with length 0. */
		assert_true(vdrv_transfer(&drv, 0, &b, 1, false, 300) <= 0);
		assert_true(xsim_daemon_alive(&t->dm));
	}
	/* The device still works after a reset. */
	rng_init(t, &drv, &vio, &mem, 0, false);
	struct vdrv_buf ok = { .len = 64, .write = true };

	ok.gpa = vdrv_alloc(&mem, 64, 16, NULL);
	assert_int_equal(vdrv_transfer(&drv, 0, &ok, 1, false, 5000), 64);
	stop_clean(t);
}

/*
 * A daemon killed outright leaves its ioreq server behind (Xen does not know the process
 * died): nobody answers the guest. A new daemon for the same guest, started by hand (no file
 * descriptor store), takes that server over from the state file and serves.
 */
static void test_restart_after_kill(void **state)
{
	struct itest *t = start(2, false);
	const char *args[] = { "--foreground", "--config", NULL, NULL };
	struct xsim_vio vio;
	struct vdrv_mem mem;
	struct vdrv drv;
	struct vdrv_buf b = { .len = 64, .write = true };
	int st;

	(void)state;
	assert_non_null(t);
	args[2] = t->ini;
	assert_int_equal(kill(t->dm.pid, SIGKILL), 0);
	assert_int_equal(xsim_daemon_wait_exit(&t->dm, 5000, &st), 0);
	assert_true(WIFSIGNALED(st));
	xsim_daemon_stop(&t->dm);
	/* Nobody answers now: the stale server still owns the window. */
	assert_true(xsim_dom_routed(t->dom, WIN0));
	{
		uint64_t v;

		assert_int_equal(xsim_mmio(t->dom, 0, WIN0 + R_MAGIC, 4, false, &v, 100),
				 -ETIMEDOUT);
	}
	assert_int_equal(xsim_daemon_start(t->hub, &t->dm, XVD_SIM_DAEMON, "daemon2", args, 0), 0);
	assert_int_equal(xsim_daemon_wait_ready(&t->dm, READY_MS), 0);
	assert_true(xsim_daemon_log_has(&t->dm, "took over ioreq server"));
	rng_init(t, &drv, &vio, &mem, 1, false);
	b.gpa = vdrv_alloc(&mem, 64, 16, NULL);
	assert_int_equal(vdrv_transfer(&drv, 0, &b, 1, false, 5000), 64);
	stop_clean(t);
}

/* vCPUs in parallel threads: every access answered, each on its own slot and port. */
struct vcpu_job {
	struct itest *t;
	unsigned vcpu;
	unsigned bad;
};

static void *vcpu_loop(void *arg)
{
	struct vcpu_job *j = arg;

	for (unsigned i = 0; i < 2000; i++) {
		uint64_t v = 0;
		uint32_t off = (i & 1) ? R_DEVICE_ID : R_MAGIC;

		if (xsim_mmio(j->t->dom, j->vcpu, WIN0 + off, 4, false, &v, 5000) < 0 ||
		    v != ((i & 1) ? 4u : VIRTIO_MAGIC))
			j->bad++;
	}
	return NULL;
}

static void test_concurrent_vcpus(void **state)
{
	struct itest *t = start(140, false);
	struct vcpu_job jobs[6];
	pthread_t th[6];
	const unsigned vcpus[6] = { 0, 1, 2, 127, 128, 139 };

	(void)state;
	assert_non_null(t);
	for (unsigned i = 0; i < 6; i++) {
		jobs[i] = (struct vcpu_job){ .t = t, .vcpu = vcpus[i] };
		assert_int_equal(pthread_create(&th[i], NULL, vcpu_loop, &jobs[i]), 0);
	}
	for (unsigned i = 0; i < 6; i++) {
		pthread_join(th[i], NULL);
		assert_int_equal(jobs[i].bad, 0);
	}
	stop_clean(t);
}

/*
 * SIGTERM without a state file: exit 0, and the ioreq server is gone (the windows abort
 * again). With one, the guest is handed over instead (test_restart.c).
 */
static void test_sigterm_teardown(void **state)
{
	struct itest *t = start_args(1, "", (const char *const[]){ "--state-dir", "none", NULL });

	(void)state;
	assert_non_null(t);
	assert_true(xsim_dom_routed(t->dom, WIN0));
	assert_int_equal(xsim_daemon_stop(&t->dm), 0);
	assert_false(xsim_dom_routed(t->dom, WIN0));
	t->dm.pid = -1;
	itest_free(t);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_rng_end_to_end),
		cmocka_unit_test(test_200_vcpus),
		cmocka_unit_test(test_malformed_ioreqs),
		cmocka_unit_test(test_handles_restricted),
		cmocka_unit_test(test_invalidate),
		cmocka_unit_test(test_grant_guest),
		cmocka_unit_test(test_grant_readonly_refused),
		cmocka_unit_test(test_domain_death_mid_request),
		cmocka_unit_test(test_sigterm_teardown),
		cmocka_unit_test(test_concurrent_vcpus),
		cmocka_unit_test(test_bank1_premap),
		cmocka_unit_test(test_bank1_small_cache),
		cmocka_unit_test(test_buffer_in_hole),
		cmocka_unit_test(test_restart_after_kill),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
