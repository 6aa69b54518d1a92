/*
 * ioreq/ through the real sim daemon: vCPU slots beyond the first ioreq page, malformed
 * requests answered without harm, IOREQ_TYPE_INVALIDATE, the guest-memory cache (eviction,
 * premap) as the SIGUSR1 dump reports it, and domain death.
 */
#include <errno.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <pthread.h>

#include <cmocka.h>

#include "devices/device.h"
#include "devices/virtio_mmio.h"
#include "tests/lib/vdriver.h"
#include "tests/xensim/guest.h"

#define WIN0      UINT64_C(0x02000000)
#define SPI0      33u
#define RAM_GPA   UINT64_C(0x40000000)
#define MAGIC     0x74726976u            /* "virt" */
#define TIMEOUT   2000

struct rig {
	struct xsim_hub *hub;
	struct xsim_dom *dom;
	struct xsim_daemon dm;
	char ini[256];
};

static void rig_write_ini(struct rig *r, const char *guest_extra)
{
	FILE *f;

	snprintf(r->ini, sizeof(r->ini), "%s/guest.ini", xsim_hub_dir(r->hub));
	f = fopen(r->ini, "w");
	assert_non_null(f);
	fprintf(f, "[guest]\ndomid = %u\ndiscovery = explicit\n%s\n[rng]\nmmio = 0x%llx\nirq = %u\n",
		xsim_dom_id(r->dom), guest_extra, (unsigned long long)WIN0, SPI0);
	fclose(f);
}

static void rig_open_ram(struct rig *r, unsigned vcpus, uint64_t ram1_mib,
			 const char *guest_extra)
{
	struct xsim_dom_opts o = { .name = "guest1", .nr_vcpus = vcpus, .ram_mib = 64,
				   .ram1_mib = ram1_mib };
	const char *args[] = { "--config", r->ini, "--foreground", "--log-level", "debug", NULL };

	memset(r, 0, sizeof(*r));
	r->hub = xsim_hub_start();
	assert_non_null(r->hub);
	r->dom = xsim_dom_create(r->hub, &o);
	assert_non_null(r->dom);
	rig_write_ini(r, guest_extra);
	assert_int_equal(xsim_daemon_start(r->hub, &r->dm, XVD_SIM_DAEMON, "daemon", args, 0), 0);
	assert_int_equal(xsim_daemon_wait_ready(&r->dm, 10000), 0);
}

static void rig_open(struct rig *r, unsigned vcpus, const char *guest_extra)
{
	rig_open_ram(r, vcpus, 0, guest_extra);
}

static void rig_close(struct rig *r)
{
	if (!r->dm.reaped)
		xsim_daemon_stop(&r->dm);
	xsim_hub_stop(r->hub);
}

/* For a failing test: what the daemon said. */
static void rig_print_log(struct rig *r)
{
	xsim_daemon_dump_log(&r->dm, "daemon: ");
}

static long long rig_stat(struct rig *r, const char *key)
{
	return xsim_daemon_stat(&r->dm, key, 3000);
}

/* The register file answers from every vCPU, including those in the second ioreq page. */
static void test_vcpus_beyond_one_page(void **state)
{
	static const unsigned vcpus[] = { 0, 1, 127, 128, 150, 199 };
	struct rig r;

	(void)state;
	rig_open(&r, 200, "");
	for (unsigned i = 0; i < sizeof(vcpus) / sizeof(vcpus[0]); i++) {
		assert_int_equal(xsim_mmio_read(r.dom, vcpus[i], WIN0, 4), MAGIC);
		assert_int_equal(xsim_mmio_read(r.dom, vcpus[i], WIN0 + 8, 4), 4);  /* DeviceID rng */
	}
	assert_int_equal(rig_stat(&r, "vcpus"), 200);
	rig_close(&r);
}

static void raw(struct rig *r, uint8_t type, uint32_t count, uint8_t ptr, uint32_t size,
		uint64_t addr, bool read, uint64_t data, uint64_t want)
{
	struct ioreq q = { .addr = addr, .data = data, .count = count, .size = size,
			   .state = STATE_IOREQ_READY, .data_is_ptr = ptr,
			   .dir = read ? IOREQ_READ : IOREQ_WRITE, .type = type };
	struct ioreq resp;

	assert_int_equal(xsim_ioreq_raw(r->dom, 0, WIN0, &q, &resp, TIMEOUT), 0);
	assert_int_equal(resp.state, STATE_IORESP_READY);
	if (read)
		assert_true(resp.data == want);
}

/* Every malformed request is answered (reads all-ones, writes dropped) and nothing breaks. */
static void test_malformed_ioreqs(void **state)
{
	struct rig r;

	(void)state;
	rig_open(&r, 2, "");
	raw(&r, IOREQ_TYPE_PIO, 1, 0, 4, WIN0, true, 0, 0xffffffffu);
	raw(&r, IOREQ_TYPE_PCI_CONFIG, 1, 0, 2, WIN0, true, 0, 0xffffu);
	raw(&r, IOREQ_TYPE_TIMEOFFSET, 1, 0, 4, WIN0, true, 0, 0xffffffffu);
	raw(&r, 0xee, 1, 0, 1, WIN0, true, 0, 0xffu);
	raw(&r, IOREQ_TYPE_COPY, 2, 0, 4, WIN0, true, 0, 0xffffffffu);
	raw(&r, IOREQ_TYPE_COPY, 0, 0, 4, WIN0, true, 0, 0xffffffffu);
	raw(&r, IOREQ_TYPE_COPY, 1, 1, 4, WIN0, true, RAM_GPA, 0xffffffffu);
	raw(&r, IOREQ_TYPE_COPY, 1, 0, 3, WIN0, true, 0, UINT64_MAX);
	raw(&r, IOREQ_TYPE_COPY, 1, 0, 0, WIN0, true, 0, UINT64_MAX);
	raw(&r, IOREQ_TYPE_COPY, 1, 0, 16, WIN0, true, 0, UINT64_MAX);
	raw(&r, IOREQ_TYPE_COPY, 1, 0, 8, WIN0 + 0x1fc, true, 0, UINT64_MAX);   /* crosses end */
	raw(&r, IOREQ_TYPE_COPY, 1, 0, 4, WIN0 + 0x200, true, 0, 0xffffffffu);  /* next window */
	raw(&r, IOREQ_TYPE_COPY, 1, 0, 4, WIN0 - 4, true, 0, 0xffffffffu);
	raw(&r, IOREQ_TYPE_COPY, 1, 0, 4, UINT64_MAX - 1, true, 0, 0xffffffffu);
	/* Writes that must be dropped: a Status write through a PIO and a pointer request. */
	raw(&r, IOREQ_TYPE_PIO, 1, 0, 4, WIN0 + 0x70, false, 1, 0);
	raw(&r, IOREQ_TYPE_COPY, 1, 1, 4, WIN0 + 0x70, false, RAM_GPA, 0);
	assert_int_equal(xsim_mmio_read(r.dom, 0, WIN0 + 0x70, 4), 0);
	/* Still serving, and the counts add up. */
	assert_int_equal(xsim_mmio_read(r.dom, 1, WIN0, 4), MAGIC);
	assert_int_equal(rig_stat(&r, "bad_ioreqs"), 16);
	assert_true(xsim_daemon_alive(&r.dm));
	rig_close(&r);
}

/* IOREQ_TYPE_INVALIDATE is answered and drops the cache; serving continues. */
static void test_invalidate(void **state)
{
	struct rig r;

	(void)state;
	rig_open(&r, 1, "");
	assert_int_equal(xsim_invalidate(r.dom, 0, TIMEOUT), 0);
	assert_int_equal(xsim_invalidate(r.dom, 0, TIMEOUT), 0);
	/* Xen broadcasts it to every ioreq server: the main one and the notify one. */
	assert_int_equal(rig_stat(&r, "invalidates"), 4);
	assert_int_equal(xsim_mmio_read(r.dom, 0, WIN0, 4), MAGIC);
	rig_close(&r);
}

static void rng_fill(struct rig *r, struct vdrv *drv, uint64_t gpa, uint32_t len)
{
	struct vdrv_buf b = { .gpa = gpa, .len = len, .write = true };

	assert_true(vdrv_transfer(drv, 0, &b, 1, false, TIMEOUT) > 0);
	(void)r;
}

static void rng_start(struct rig *r, struct xsim_vio *v, struct vdrv_mem *m, struct vdrv *drv)
{
	/* vdrv_init() keeps a driver whose io and mem pointers match: start from nothing. */
	memset(drv, 0, sizeof(*drv));
	xsim_vio_init(v, r->dom, 0, WIN0, SPI0);
	assert_int_equal(xsim_vmem_init(m, r->dom, RAM_GPA, 4u << 20, false), 0);
	assert_int_equal(vdrv_init(drv, &v->io, m, VIRTIO_BIT(VIRTIO_F_VERSION_1), 1, 64), 0);
}

/* Two buckets: the rings pin one, buffers in other 2 MiB regions take turns in the other. */
static void test_cache_evicts(void **state)
{
	struct rig r;
	struct xsim_vio v;
	struct vdrv_mem m;
	struct vdrv drv;

	(void)state;
	rig_open(&r, 1, "map_cache = 4");
	rng_start(&r, &v, &m, &drv);
	for (int round = 0; round < 2; round++)
		for (uint64_t mib = 8; mib < 16; mib += 2)
			rng_fill(&r, &drv, RAM_GPA + (mib << 20) + 0x100, 64);
	/* A buffer across a bucket boundary is a mapping of its own. */
	rng_fill(&r, &drv, RAM_GPA + (20u << 20) - 32, 64);
	assert_true(rig_stat(&r, "evictions") >= 6);
	assert_int_equal(rig_stat(&r, "temp_maps"), 1);
	assert_int_equal(rig_stat(&r, "map_failures"), 0);
	assert_true(rig_stat(&r, "buckets") <= 2);
	vdrv_reset(&drv);
	rig_close(&r);
}

/* premap: all 64 MiB mapped at start; no bucket is ever mapped. */
static void test_premap(void **state)
{
	struct rig r;
	struct xsim_vio v;
	struct vdrv_mem m;
	struct vdrv drv;

	(void)state;
	rig_open(&r, 1, "premap = yes");
	rng_start(&r, &v, &m, &drv);
	rng_fill(&r, &drv, RAM_GPA + (40u << 20) - 32, 64);
	rng_fill(&r, &drv, RAM_GPA + (63u << 20), 4096);
	assert_int_equal(rig_stat(&r, "premapped_mib"), 64);
	assert_int_equal(rig_stat(&r, "bucket_maps"), 0);
	assert_int_equal(rig_stat(&r, "temp_maps"), 0);
	vdrv_reset(&drv);
	rig_close(&r);
}

/* premap probes bank 1 too: 64 + 16 MiB, and a buffer up there is served from it. */
static void test_premap_two_banks(void **state)
{
	struct rig r;
	struct xsim_vio v;
	struct vdrv_mem m;
	struct vdrv drv;
	struct vdrv_buf b = { .gpa = UINT64_C(0x200000000) + (15u << 20), .len = 4096,
			      .write = true };

	(void)state;
	rig_open_ram(&r, 1, 16, "premap = yes");
	rng_start(&r, &v, &m, &drv);
	assert_true(vdrv_transfer(&drv, 0, &b, 1, false, TIMEOUT) > 0);
	assert_int_equal(rig_stat(&r, "premapped_mib"), 80);
	assert_int_equal(rig_stat(&r, "bucket_maps"), 0);
	vdrv_reset(&drv);
	rig_close(&r);
}

/* A slot that is not STATE_IOREQ_READY is left alone: counted, never answered. */
static void test_slot_not_ready(void **state)
{
	struct ioreq q = { .addr = WIN0, .count = 1, .size = 4, .state = STATE_IOREQ_NONE,
			   .dir = IOREQ_READ, .type = IOREQ_TYPE_COPY };
	struct ioreq resp;
	struct rig r;

	(void)state;
	rig_open(&r, 2, "");
	assert_int_equal(xsim_ioreq_raw(r.dom, 1, WIN0, &q, &resp, 200), -ETIMEDOUT);
	q.state = STATE_IOREQ_INPROCESS;
	assert_int_equal(xsim_ioreq_raw(r.dom, 1, WIN0, &q, &resp, 200), -ETIMEDOUT);
	assert_int_equal(rig_stat(&r, "spurious"), 2);
	assert_int_equal(xsim_mmio_read(r.dom, 1, WIN0, 4), MAGIC);
	assert_int_equal(rig_stat(&r, "bad_ioreqs"), 0);
	rig_close(&r);
}

struct hammer {
	struct rig *r;
	unsigned vcpu;
	unsigned bad;
};

static void *hammer_run(void *arg)
{
	struct hammer *h = arg;

	for (int i = 0; i < 2000; i++)
		if (xsim_mmio_read(h->r->dom, h->vcpu, WIN0 + (i & 1) * 8, 4) !=
		    ((i & 1) ? 4u : MAGIC))
			h->bad++;
	return NULL;
}

/* Many vCPUs at once: every pending port is drained and every access answered correctly. */
static void test_concurrent_vcpus(void **state)
{
	enum { N = 16 };
	struct hammer h[N];
	pthread_t t[N];
	struct rig r;

	(void)state;
	rig_open(&r, 160, "");
	for (unsigned i = 0; i < N; i++) {
		h[i] = (struct hammer){ .r = &r, .vcpu = i * 10, .bad = 0 };
		assert_int_equal(pthread_create(&t[i], NULL, hammer_run, &h[i]), 0);
	}
	for (unsigned i = 0; i < N; i++) {
		pthread_join(t[i], NULL);
		assert_int_equal(h[i].bad, 0);
	}
	assert_true(rig_stat(&r, "ioreqs") >= N * 2000);
	rig_close(&r);
}

/* A buffer outside guest RAM breaks that queue (NEEDS_RESET), never the daemon. */
static void test_buffer_outside_ram(void **state)
{
	struct rig r;
	struct xsim_vio v;
	struct vdrv_mem m;
	struct vdrv drv;
	struct vdrv_buf b = { .gpa = RAM_GPA + (64u << 20) - 16, .len = 64, .write = true };

	(void)state;
	rig_open(&r, 1, "");
	rng_start(&r, &v, &m, &drv);
	assert_true(vdrv_transfer(&drv, 0, &b, 1, false, 300) < 0);
	assert_true(vdrv_status(&drv) & VIRTIO_STATUS_NEEDS_RESET);
	assert_true(rig_stat(&r, "map_failures") >= 1);
	assert_true(xsim_daemon_alive(&r.dm));
	vdrv_reset(&drv);
	rng_start(&r, &v, &m, &drv);
	rng_fill(&r, &drv, RAM_GPA + (3u << 20), 64);
	vdrv_reset(&drv);
	rig_close(&r);
}

/* The domain goes away: one log line, exit status 0, no window left routed. */
static void test_domain_death(void **state)
{
	struct rig r;
	int status = -1;

	(void)state;
	rig_open(&r, 4, "");
	assert_true(xsim_dom_routed(r.dom, WIN0));
	assert_int_equal(xsim_dom_destroy(r.dom), 0);
	assert_int_equal(xsim_daemon_wait_exit(&r.dm, 5000, &status), 0);
	if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
		rig_print_log(&r);
	assert_true(WIFEXITED(status));
	assert_int_equal(WEXITSTATUS(status), 0);
	assert_true(xsim_daemon_log_has(&r.dm, "is gone"));
	rig_close(&r);
}

/* Another domain's death is not ours. */
static void test_other_domain_death(void **state)
{
	struct xsim_dom_opts o = { .name = "other", .nr_vcpus = 1 };
	struct xsim_dom *other;
	struct rig r;

	(void)state;
	rig_open(&r, 1, "");
	other = xsim_dom_create(r.hub, &o);
	assert_non_null(other);
	assert_int_equal(xsim_dom_destroy(other), 0);
	usleep(300 * 1000);
	assert_true(xsim_daemon_alive(&r.dm));
	assert_int_equal(xsim_mmio_read(r.dom, 0, WIN0, 4), MAGIC);
	rig_close(&r);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_vcpus_beyond_one_page),
		cmocka_unit_test(test_malformed_ioreqs),
		cmocka_unit_test(test_invalidate),
		cmocka_unit_test(test_cache_evicts),
		cmocka_unit_test(test_premap),
		cmocka_unit_test(test_premap_two_banks),
		cmocka_unit_test(test_slot_not_ready),
		cmocka_unit_test(test_concurrent_vcpus),
		cmocka_unit_test(test_buffer_outside_ram),
		cmocka_unit_test(test_domain_death),
		cmocka_unit_test(test_other_domain_death),
	};

	signal(SIGPIPE, SIG_IGN);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
