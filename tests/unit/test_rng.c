/* virtio-rng through the real transport: driver-side round trips with the test driver. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>
#include <ev.h>

#include "devices/device.h"
#include "devices/virtio_mmio.h"
#include "tests/lib/gmem_flat.h"
#include "tests/lib/vdriver.h"
#include "tests/lib/vdriver_direct.h"

#define RAM_GPA  UINT64_C(0x40000000)
#define RAM_SIZE (8u << 20)
#define ALL_RING (VIRTIO_BIT(VIRTIO_F_VERSION_1) | VIRTIO_BIT(VIRTIO_F_EVENT_IDX) | \
		  VIRTIO_BIT(VIRTIO_F_INDIRECT_DESC))

struct rig {
	struct vdrv_direct x;
	struct vdrv drv;
	struct ev_loop *loop;
};

static int rig_open(struct rig *r, uint32_t rate_kib, bool with_loop)
{
	struct config_device cfg = { .type = DEV_RNG, .devid = -1 };

	memset(r, 0, sizeof(*r));
	cfg.u.rng.rate_kib = rate_kib;
	if (with_loop)
		r->loop = ev_loop_new(EVFLAG_AUTO);
	return vdrv_direct_open(&r->x, &cfg, RAM_GPA, RAM_SIZE, r->loop);
}

static int setup(void **state)
{
	static struct rig r;

	if (rig_open(&r, 0, false) < 0)
		return -1;
	if (vdrv_init(&r.drv, &r.x.io, &r.x.mem, ALL_RING, 1, 256) < 0)
		return -1;
	*state = &r;
	return 0;
}

static int teardown(void **state)
{
	struct rig *r = *state;

	vdrv_reset(&r->drv);
	assert_int_equal(gmem_flat_outstanding(r->x.gm), 0);
	assert_int_equal(gmem_flat_bad_unmaps(r->x.gm), 0);
	vdrv_direct_close(&r->x);
	if (r->loop)
		ev_loop_destroy(r->loop);
	return 0;
}

/* A buffer with guard bytes on both sides, filled with a pattern getrandom will not keep. */
static uint64_t guarded_buf(struct vdrv_mem *m, uint32_t len)
{
	uint8_t *h;
	uint64_t gpa = vdrv_alloc(m, len + 32u, 16, (void **)&h);

	assert_true(gpa != 0);
	memset(h, 0xa5, len + 32u);
	return gpa + 16;
}

static void assert_guards_intact(struct vdrv_mem *m, uint64_t gpa, uint32_t len)
{
	uint8_t *h = vdrv_host(m, gpa);

	for (int i = 1; i <= 16; i++) {
		assert_int_equal(h[-i], 0xa5);
		assert_int_equal(h[len + (unsigned)i - 1], 0xa5);
	}
}

/* For len >= 16, random data equal to the pattern everywhere is (2^-128) impossible. */
static void assert_filled(struct vdrv_mem *m, uint64_t gpa, uint32_t len)
{
	uint8_t *h = vdrv_host(m, gpa);
	uint32_t same = 0;

	for (uint32_t i = 0; i < len; i++)
		same += h[i] == 0xa5;
	if (len >= 16)
		assert_true(same < len);
}

static void test_init_features(void **state)
{
	struct rig *r = *state;

	assert_int_equal(r->drv.device_id, 4);
	assert_true(r->drv.device_features & VIRTIO_BIT(VIRTIO_F_VERSION_1));
	assert_true(r->drv.device_features & VIRTIO_BIT(VIRTIO_F_EVENT_IDX));
	assert_true(r->drv.device_features & VIRTIO_BIT(VIRTIO_F_INDIRECT_DESC));
	assert_false(r->drv.device_features & VIRTIO_BIT(VIRTIO_F_ACCESS_PLATFORM));
	assert_int_equal(r->drv.features, ALL_RING);
	assert_true(vdev_active(r->x.dev));
	assert_int_equal(vdrv_status(&r->drv) & VIRTIO_STATUS_DRIVER_OK, VIRTIO_STATUS_DRIVER_OK);
}

static void test_registry(void **state)
{
	(void)state;
	assert_non_null(vdev_ops_by_type("rng"));
	assert_int_equal(vdev_ops_by_type("rng")->device_id, 4);
	assert_ptr_equal(vdev_ops_by_id(4), vdev_ops_by_type("rng"));
	assert_null(vdev_ops_by_type("nonsense"));
	assert_null(vdev_ops_by_type(NULL));
	assert_null(vdev_ops_by_id(0xdead));
}

static void test_read_sizes(void **state)
{
	static const uint32_t sizes[] = { 1, 2, 3, 7, 15, 16, 17, 255, 256, 511, 4095, 4096,
					  4097, 12345, 32768, 65535, 65536 };
	struct rig *r = *state;

	for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
		uint64_t gpa = guarded_buf(&r->x.mem, sizes[i]);
		struct vdrv_buf b = { gpa, sizes[i], true };

		assert_int_equal(vdrv_transfer(&r->drv, 0, &b, 1, false, 1000), sizes[i]);
		assert_guards_intact(&r->x.mem, gpa, sizes[i]);
		assert_filled(&r->x.mem, gpa, sizes[i]);
		assert_int_equal(gmem_flat_outstanding(r->x.gm), 3);   /* the three rings */
	}
}

/* A chain of pieces scattered through RAM, direct or indirect; the device fills all of it. */
static void scattered_read(struct rig *r, bool indirect)
{
	static const uint32_t piece[] = { 1, 4096, 100, 7, 8192, 3000, 16, 65536 - 15412 };
	struct vdrv_buf b[8];
	uint32_t total = 0;

	for (int i = 0; i < 8; i++) {
		b[i] = (struct vdrv_buf){ guarded_buf(&r->x.mem, piece[i]), piece[i], true };
		vdrv_alloc(&r->x.mem, 4096, 1, NULL);    /* keep the pieces apart */
		total += piece[i];
	}
	assert_int_equal(total, 65536);
	assert_int_equal(vdrv_transfer(&r->drv, 0, b, 8, indirect, 1000), 65536);
	for (int i = 0; i < 8; i++) {
		assert_guards_intact(&r->x.mem, b[i].gpa, b[i].len);
		assert_filled(&r->x.mem, b[i].gpa, b[i].len);
	}
}

static void test_scattered_direct(void **state)
{
	scattered_read(*state, false);
}

static void test_scattered_indirect(void **state)
{
	scattered_read(*state, true);
}

static void test_request_capped(void **state)
{
	struct rig *r = *state;
	uint64_t gpa = guarded_buf(&r->x.mem, 1u << 20);
	struct vdrv_buf b = { gpa, 1u << 20, true };
	uint8_t *h = vdrv_host(&r->x.mem, gpa);

	/* One request returns at most 64 KiB; the rest of the buffer is left alone. */
	assert_int_equal(vdrv_transfer(&r->drv, 0, &b, 1, false, 1000), 65536);
	for (uint32_t i = 65536; i < (1u << 20); i++)
		assert_int_equal(h[i], 0xa5);
}

static void test_readable_part_ignored(void **state)
{
	struct rig *r = *state;
	struct vdrv_buf b[2] = { { guarded_buf(&r->x.mem, 64), 64, false },
				 { guarded_buf(&r->x.mem, 64), 64, true } };
	uint8_t *out = vdrv_host(&r->x.mem, b[0].gpa);

	assert_int_equal(vdrv_transfer(&r->drv, 0, b, 2, false, 1000), 64);
	for (int i = 0; i < 64; i++)
		assert_int_equal(out[i], 0xa5);
}

static void test_many_requests_one_kick(void **state)
{
	struct rig *r = *state;
	uint32_t len;
	void *tok;
	int n = 0;

	for (int i = 0; i < 256; i++) {
		struct vdrv_buf b = { guarded_buf(&r->x.mem, 32), 32, true };

		assert_true(vdrv_submit(&r->drv, 0, &b, 1, i & 1, NULL) >= 0);
	}
	vdrv_kick(&r->drv, 0);
	while (vdrv_get_used(&r->drv, 0, &len, &tok) == 1) {
		assert_int_equal(len, 32);
		n++;
	}
	assert_int_equal(n, 256);
}

/* Reset with a chain submitted and unserved, then initialise again: everything works. */
static void test_reset_mid_request_reinit(void **state)
{
	struct rig *r = *state;
	struct vdrv_buf b = { guarded_buf(&r->x.mem, 100), 100, true };

	assert_true(vdrv_submit(&r->drv, 0, &b, 1, false, NULL) >= 0);
	vdrv_reset(&r->drv);
	assert_int_equal(vdrv_status(&r->drv), 0);
	assert_int_equal(gmem_flat_outstanding(r->x.gm), 0);
	assert_false(vdev_active(r->x.dev));
	assert_int_equal(vdrv_init(&r->drv, &r->x.io, &r->x.mem, ALL_RING, 1, 64), 0);
	assert_int_equal(vdrv_transfer(&r->drv, 0, &b, 1, false, 1000), 100);
	/* And without indirect or event index this time. */
	assert_int_equal(vdrv_init(&r->drv, &r->x.io, &r->x.mem,
				   VIRTIO_BIT(VIRTIO_F_VERSION_1), 1, 8), 0);
	assert_int_equal(r->drv.features, VIRTIO_BIT(VIRTIO_F_VERSION_1));
	for (int i = 0; i < 20; i++)
		assert_int_equal(vdrv_transfer(&r->drv, 0, &b, 1, false, 1000), 100);
}

/* Kicks before DRIVER_OK are not served then, but the chains are served at DRIVER_OK. */
static void test_kick_before_driver_ok(void **state)
{
	struct rig *r = *state;
	struct vdrv_buf b = { guarded_buf(&r->x.mem, 16), 16, true };
	uint32_t len;

	vdrv_write32(&r->drv, 0x70, vdrv_status(&r->drv) & ~VIRTIO_STATUS_DRIVER_OK);
	assert_true(vdev_active(r->x.dev));   /* clearing a bit is refused */
	vdrv_reset(&r->drv);
	vdrv_write32(&r->drv, 0x70, VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER);
	vdrv_write32(&r->drv, 0x24, 1);
	vdrv_write32(&r->drv, 0x20, 1);       /* VERSION_1 */
	vdrv_write32(&r->drv, 0x70, VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER |
		     VIRTIO_STATUS_FEATURES_OK);
	r->drv.features = VIRTIO_BIT(VIRTIO_F_VERSION_1);
	/* Queue set up by hand through the driver's own helper path. */
	struct vdrv_vq *vq = &r->drv.vq[0];

	memset(vq->avail, 0, vring_avail_size(vq->num));
	memset(vq->used, 0, vring_used_size(vq->num));
	vq->avail_idx = 0;
	vq->last_used = 0;
	for (uint16_t i = 0; i < vq->num; i++)
		vq->desc[i].next = (uint16_t)(i + 1);
	vq->free_head = 0;
	vq->num_free = vq->num;
	vdrv_write32(&r->drv, 0x30, 0);
	vdrv_write32(&r->drv, 0x38, vq->num);
	vdrv_write32(&r->drv, 0x80, (uint32_t)vq->desc_gpa);
	vdrv_write32(&r->drv, 0x90, (uint32_t)vq->avail_gpa);
	vdrv_write32(&r->drv, 0xa0, (uint32_t)vq->used_gpa);
	vdrv_write32(&r->drv, 0x44, 1);
	assert_int_equal(vdrv_read32(&r->drv, 0x44), 1);
	vq->ready = true;
	assert_true(vdrv_submit(&r->drv, 0, &b, 1, false, NULL) >= 0);
	vdrv_kick(&r->drv, 0);
	assert_int_equal(vdrv_get_used(&r->drv, 0, &len, NULL), 0);
	vdrv_write32(&r->drv, 0x70, vdrv_status(&r->drv) | VIRTIO_STATUS_DRIVER_OK);
	assert_int_equal(vdrv_get_used(&r->drv, 0, &len, NULL), 1);
	assert_int_equal(len, 16);
}

/* Submit one chain and count the interrupts its completion raised. */
static unsigned one_request_irqs(struct rig *r)
{
	struct vdrv_buf b = { guarded_buf(&r->x.mem, 8), 8, true };
	uint32_t len;

	vdrv_direct_take_irqs(&r->x);
	assert_true(vdrv_submit(&r->drv, 0, &b, 1, false, NULL) >= 0);
	vdrv_kick(&r->drv, 0);
	assert_int_equal(vdrv_get_used(&r->drv, 0, &len, NULL), 1);
	return vdrv_direct_take_irqs(&r->x);
}

static void test_event_idx_suppression(void **state)
{
	struct rig *r = *state;
	struct vdrv_vq *vq = &r->drv.vq[0];

	/* The first completion always interrupts; then only when used_event is crossed. */
	vring_used_event(vq->avail, vq->num) = 2;
	assert_int_equal(one_request_irqs(r), 1);     /* used 0 -> 1 */
	assert_int_equal(one_request_irqs(r), 0);     /* 1 -> 2: event 2 not crossed */
	assert_int_equal(one_request_irqs(r), 1);     /* 2 -> 3: event 2 crossed */
	assert_int_equal(one_request_irqs(r), 0);
	vdrv_enable_irq(&r->drv, 0);                  /* used_event = last_used (4) */
	assert_int_equal(one_request_irqs(r), 1);
	/* NO_INTERRUPT is ignored once EVENT_IDX is negotiated. */
	vq->avail->flags = VRING_AVAIL_F_NO_INTERRUPT;
	vdrv_enable_irq(&r->drv, 0);
	assert_int_equal(one_request_irqs(r), 1);
}

/* Run the 16-bit indexes through a full wrap with and without interrupts wanted. */
static void test_event_idx_wraps(void **state)
{
	struct rig *r = *state;
	unsigned irqs = 0;

	assert_int_equal(vdrv_init(&r->drv, &r->x.io, &r->x.mem, ALL_RING, 1, 4), 0);
	for (unsigned i = 0; i < 70000; i++) {
		if (i % 2 == 0)
			vdrv_enable_irq(&r->drv, 0);     /* even: used_event = this completion */
		irqs += one_request_irqs(r);
	}
	/* Every even completion interrupts; the odd ones never (except the first). */
	assert_int_equal(irqs, 35000);
	assert_int_equal(r->drv.vq[0].last_used, (uint16_t)70000);
}

static void test_no_interrupt_flag(void **state)
{
	struct rig *r = *state;

	assert_int_equal(vdrv_init(&r->drv, &r->x.io, &r->x.mem,
				   VIRTIO_BIT(VIRTIO_F_VERSION_1), 1, 16), 0);
	assert_int_equal(one_request_irqs(r), 1);
	r->drv.vq[0].avail->flags = VRING_AVAIL_F_NO_INTERRUPT;
	assert_int_equal(one_request_irqs(r), 0);
	assert_int_equal(one_request_irqs(r), 0);
	vdrv_enable_irq(&r->drv, 0);
	assert_int_equal(one_request_irqs(r), 1);
}

static void test_isr_and_ack(void **state)
{
	struct rig *r = *state;

	assert_int_equal(one_request_irqs(r), 1);
	assert_int_equal(vdrv_read32(&r->drv, 0x60), VIRTIO_MMIO_INT_VRING);
	vdrv_write32(&r->drv, 0x64, VIRTIO_MMIO_INT_VRING);
	assert_int_equal(vdrv_read32(&r->drv, 0x60), 0);
}

/* The rate cap: a one-second burst, then about rate bytes per second (needs the loop). */
static void test_rate_limit(void **state)
{
	struct rig r;
	(void)state;

	assert_int_equal(rig_open(&r, 4, true), 0);
	assert_int_equal(vdrv_init(&r.drv, &r.x.io, &r.x.mem, ALL_RING, 1, 16), 0);
	uint64_t gpa = guarded_buf(&r.x.mem, 4096);
	struct vdrv_buf b = { gpa, 4096, true };

	assert_int_equal(vdrv_transfer(&r.drv, 0, &b, 1, false, 1000), 4096);
	/* The bucket is empty: the next request waits for the timer, then gets a trickle. */
	int64_t got = vdrv_transfer(&r.drv, 0, &b, 1, false, 2000);

	assert_true(got > 0);
	assert_true(got < 2048);
	/* Reset while a request waits for tokens, then start over. */
	uint32_t len;

	vdrv_direct_take_irqs(&r.x);
	assert_true(vdrv_submit(&r.drv, 0, &b, 1, false, NULL) >= 0);
	vdrv_kick(&r.drv, 0);
	assert_int_equal(vdrv_get_used(&r.drv, 0, &len, NULL), 0);
	vdrv_reset(&r.drv);
	assert_int_equal(gmem_flat_outstanding(r.x.gm), 0);
	ev_run(r.loop, EVRUN_NOWAIT);
	assert_int_equal(vdrv_init(&r.drv, &r.x.io, &r.x.mem, ALL_RING, 1, 16), 0);
	assert_true(vdrv_transfer(&r.drv, 0, &b, 1, false, 2000) > 0);
	void *st = &r;

	teardown(&st);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_init_features, setup, teardown),
		cmocka_unit_test(test_registry),
		cmocka_unit_test_setup_teardown(test_read_sizes, setup, teardown),
		cmocka_unit_test_setup_teardown(test_scattered_direct, setup, teardown),
		cmocka_unit_test_setup_teardown(test_scattered_indirect, setup, teardown),
		cmocka_unit_test_setup_teardown(test_request_capped, setup, teardown),
		cmocka_unit_test_setup_teardown(test_readable_part_ignored, setup, teardown),
		cmocka_unit_test_setup_teardown(test_many_requests_one_kick, setup, teardown),
		cmocka_unit_test_setup_teardown(test_reset_mid_request_reinit, setup, teardown),
		cmocka_unit_test_setup_teardown(test_kick_before_driver_ok, setup, teardown),
		cmocka_unit_test_setup_teardown(test_event_idx_suppression, setup, teardown),
		cmocka_unit_test_setup_teardown(test_event_idx_wraps, setup, teardown),
		cmocka_unit_test_setup_teardown(test_no_interrupt_flag, setup, teardown),
		cmocka_unit_test_setup_teardown(test_isr_and_ack, setup, teardown),
		cmocka_unit_test(test_rate_limit),
	};

	log_init(LOG_ERR, false);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
