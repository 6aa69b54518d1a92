/*
 * Hostile guest, part 2: the register file and the ioreq path. Queue reconfiguration while
 * running, kicks for queues that do not exist or are not ready, config space out of range,
 * wrong-width and unaligned accesses, features never offered, status transitions out of order,
 * bad queue sizes, a flood of 100k kicks and an ioreq storm from seven vCPUs. Each attack is
 * refused or ignored without harm: the register reads back what it was, the attacked device
 * still serves (or reads NEEDS_RESET), and hostile_after() checks the rest (test_hostile.h).
 */
#include <pthread.h>

#include "tests/integration/test_hostile.h"

#define R_STATUS_OFF 0x070

static uint32_t rd(struct hostile *h, unsigned d, uint32_t off)
{
	return vdrv_read32(&h->drv[d], off);
}

static void wr(struct hostile *h, unsigned d, uint32_t off, uint32_t v)
{
	vdrv_write32(&h->drv[d], off, v);
}

/* A raw access of any size through vCPU 0; reads return what the guest would see. */
static uint64_t raw_rd(struct hostile *h, unsigned d, uint32_t off, unsigned size)
{
	return xsim_mmio_read(h->t->dom, 0, H_WIN(d) + off, size);
}

static void raw_wr(struct hostile *h, unsigned d, uint32_t off, unsigned size, uint64_t v)
{
	assert_int_equal(xsim_mmio_write(h->t->dom, 0, H_WIN(d) + off, size, v), 0);
}

/* The attacked device still serves as it is, before any reset. */
static void still_serves(struct hostile *h, unsigned d)
{
	assert_int_equal(hostile_status(h, d), 0xf);
	hostile_rt(h, d);
}

/* ---- queue reconfiguration while running ---- */

static void test_queue_num_after_driver_ok(void **state)
{
	struct hostile *h = *state;

	wr(h, D_RNG, R_QUEUE_SEL, 0);
	wr(h, D_RNG, R_QUEUE_NUM, 16);
	assert_int_equal(rd(h, D_RNG, R_QUEUE_NUM), H_QSIZE);
	still_serves(h, D_RNG);
	hostile_after(h, D_RNG);
}

static void test_queue_addrs_after_driver_ok(void **state)
{
	struct hostile *h = *state;
	uint32_t d = rd(h, D_RNG, R_DESC_LO), a = rd(h, D_RNG, R_AVAIL_LO);
	uint32_t u = rd(h, D_RNG, R_USED_LO);

	/* Point every ring at a hole: ignored, the rings stay where they were validated. */
	wr(h, D_RNG, R_DESC_LO, (uint32_t)H_HOLE);
	wr(h, D_RNG, R_DESC_HI, 7);
	wr(h, D_RNG, R_AVAIL_LO, (uint32_t)H_HOLE);
	wr(h, D_RNG, R_USED_LO, (uint32_t)H_HOLE);
	assert_int_equal(rd(h, D_RNG, R_DESC_LO), d);
	assert_int_equal(rd(h, D_RNG, R_DESC_HI), 0);
	assert_int_equal(rd(h, D_RNG, R_AVAIL_LO), a);
	assert_int_equal(rd(h, D_RNG, R_USED_LO), u);
	still_serves(h, D_RNG);
	hostile_after(h, D_RNG);
}

/* QueueReady 0 with 16 block reads in flight: ignored, every request completes. */
static void test_queue_ready_0_mid_flight(void **state)
{
	struct hostile *h = *state;
	uint8_t *st[16];
	unsigned got = 0;

	for (unsigned k = 0; k < 16; k++) {
		uint8_t *hdr;
		struct virtio_blk_outhdr o = { htole32(VIRTIO_BLK_T_IN), 0, htole64(k * 64) };
		struct vdrv_buf b[3] = {
			{ hostile_buf(h, 16, &hdr), 16, false },
			{ hostile_buf(h, 32768, NULL), 32768, true },
			{ hostile_buf(h, 1, &st[k]), 1, true },
		};

		memcpy(hdr, &o, 16);
		*st[k] = 0xee;
		assert_true(vdrv_submit(&h->drv[D_BLK], 0, b, 3, false, NULL) >= 0);
	}
	vdrv_kick(&h->drv[D_BLK], 0);
	wr(h, D_BLK, R_QUEUE_SEL, 0);
	wr(h, D_BLK, R_QUEUE_READY, 0);
	assert_int_equal(rd(h, D_BLK, R_QUEUE_READY), 1);
	while (got < 16 && hostile_wait_used(h, D_BLK, H_WAIT_MS) >= 0)
		got++;
	assert_int_equal(got, 16);
	for (unsigned k = 0; k < 16; k++)
		assert_int_equal(*st[k], VIRTIO_BLK_S_OK);
	assert_int_equal(hostile_status(h, D_BLK), 0xf);
	hostile_after(h, D_BLK);
}

/* ---- notifications ---- */

/*
 * Publish one rng chain, kick the given queue numbers: nothing may be served. With the privcmd
 * fast path the dom0 kernel compares only the low 16 bits (0x10000 kicks queue 0, harmlessly),
 * so every value here is out of range in its low 16 bits as well.
 */
static void test_notify_nonexistent_queues(void **state)
{
	struct hostile *h = *state;
	const uint32_t qs[] = { 1, 2, 63, 64, 0xffff, 0x10001, 0x1ffff, 0xffffffffu };
	uint64_t gpa = hostile_buf(h, 64, NULL);

	hostile_desc(h, D_RNG, 0, hostile_dma(h, gpa, 64, true), 64, VRING_DESC_F_WRITE, 0);
	hostile_publish(h, D_RNG, 0);
	for (unsigned i = 0; i < sizeof(qs) / sizeof(qs[0]); i++)
		wr(h, D_RNG, R_QUEUE_NOTIFY, qs[i]);
	assert_int_equal(hostile_wait_used(h, D_RNG, 100), -1);
	assert_int_equal(hostile_status(h, D_RNG), 0xf);
	/* The real queue's kick serves it. */
	hostile_kick(h, D_RNG);
	assert_int_equal(hostile_wait_used(h, D_RNG, H_WAIT_MS), 64);
	hostile_after(h, D_RNG);
}

static void test_notify_unready_queue(void **state)
{
	struct hostile *h = *state;

	vdrv_reset(&h->drv[D_RNG]);
	wr(h, D_RNG, R_STATUS_OFF, 1);
	wr(h, D_RNG, R_STATUS_OFF, 3);
	wr(h, D_RNG, R_DRV_FEATURES_SEL, 1);
	wr(h, D_RNG, R_DRV_FEATURES, 1);
	wr(h, D_RNG, R_STATUS_OFF, 0xb);
	/* No queue set up, not even DRIVER_OK: kicks and a QueueReady on no rings. */
	for (unsigned i = 0; i < 100; i++)
		wr(h, D_RNG, R_QUEUE_NOTIFY, 0);
	wr(h, D_RNG, R_QUEUE_READY, 1);
	assert_int_equal(rd(h, D_RNG, R_QUEUE_READY), 0);
	wr(h, D_RNG, R_STATUS_OFF, 0xf);
	for (unsigned i = 0; i < 100; i++)
		wr(h, D_RNG, R_QUEUE_NOTIFY, 0);
	assert_int_equal(hostile_status(h, D_RNG), 0xf);
	hostile_after(h, D_RNG);
}

/* ---- config space ---- */

static uint64_t blk_capacity(struct hostile *h)
{
	uint64_t cap = 0;

	vdrv_config_read(&h->drv[D_BLK], VIRTIO_BLK_CFG_CAPACITY, &cap, 8);
	return cap;
}

static void test_config_write_out_of_range(void **state)
{
	struct hostile *h = *state;
	const unsigned sizes[] = { 1, 2, 4, 8 };

	assert_int_equal(blk_capacity(h), H_SECTORS);
	for (unsigned i = 0; i < 4; i++) {
		/* Just past the end, straddling the end, and at the last byte of the window. */
		raw_wr(h, D_BLK, R_CONFIG + VIRTIO_BLK_CFG_SIZE, sizes[i], ~UINT64_C(0));
		raw_wr(h, D_BLK, R_CONFIG + VIRTIO_BLK_CFG_SIZE - 1, sizes[i], ~UINT64_C(0));
		raw_wr(h, D_BLK, 0x1ff, sizes[i], ~UINT64_C(0));
		raw_wr(h, D_BLK, R_CONFIG + 0xf8, sizes[i], ~UINT64_C(0));
		/* Read-only fields inside the range: capacity. */
		raw_wr(h, D_BLK, R_CONFIG + VIRTIO_BLK_CFG_CAPACITY, sizes[i], 0);
	}
	/* Odd sizes inside the range. */
	raw_wr(h, D_BLK, R_CONFIG, 3, 0);
	raw_wr(h, D_BLK, R_CONFIG, 16, 0);
	/* rng has no config space at all. */
	raw_wr(h, D_RNG, R_CONFIG, 4, 0);
	assert_int_equal(raw_rd(h, D_RNG, R_CONFIG, 4), 0xffffffffu);
	assert_int_equal(blk_capacity(h), H_SECTORS);
	assert_int_equal(raw_rd(h, D_BLK, R_CONFIG + VIRTIO_BLK_CFG_SIZE, 4), 0xffffffffu);
	assert_int_equal(raw_rd(h, D_BLK, 0x1ff, 1), 0xffu);
	still_serves(h, D_BLK);
	hostile_after(h, D_BLK);
}

/* Accesses that run past the 0x200 window: never reach another device's registers. */
static void test_access_past_window_end(void **state)
{
	struct hostile *h = *state;

	raw_wr(h, D_RNG, 0x1fc, 8, 0);
	raw_wr(h, D_RNG, 0x1fe, 4, 0);
	assert_int_equal(raw_rd(h, D_RNG, 0x1fc, 8), ~UINT64_C(0));
	/* Window 1 (block) is untouched: its magic and status read as before. */
	assert_int_equal(rd(h, D_BLK, 0), VIRTIO_MAGIC);
	assert_int_equal(hostile_status(h, D_BLK), 0xf);
	still_serves(h, D_RNG);
	hostile_after(h, D_RNG);
}

/* ---- access widths ---- */

static void test_reg_8_byte(void **state)
{
	struct hostile *h = *state;

	assert_int_equal(raw_rd(h, D_I2C, 0, 8), ~UINT64_C(0));
	assert_int_equal(raw_rd(h, D_I2C, R_STATUS_OFF, 8), ~UINT64_C(0));
	raw_wr(h, D_I2C, R_STATUS_OFF, 8, 0);            /* not a reset */
	/*
	 * The kick dword is the notify server's, the rest of the window the main one's (the fast
	 * path is on here): a write spanning both reaches neither and Xen aborts it. The guest
	 * that did it gets the data abort; the daemon never sees it.
	 */
	assert_int_equal(xsim_mmio_write(h->t->dom, 0, H_WIN(D_I2C) + R_QUEUE_NOTIFY, 8, 0),
			 -EFAULT);
	raw_wr(h, D_I2C, R_QUEUE_SEL, 8, 5);
	assert_int_equal(rd(h, D_I2C, R_QUEUE_NUM_MAX), 128);
	still_serves(h, D_I2C);
	hostile_after(h, D_I2C);
}

static void test_reg_sub_word(void **state)
{
	struct hostile *h = *state;

	for (unsigned size = 1; size <= 2; size++) {
		assert_int_equal(raw_rd(h, D_I2C, 0, size), (UINT64_C(1) << (8 * size)) - 1);
		raw_wr(h, D_I2C, R_STATUS_OFF, size, 0);
		raw_wr(h, D_I2C, R_STATUS_OFF + 1, size, 0);
		raw_wr(h, D_I2C, R_QUEUE_SEL, size, 3);
		raw_wr(h, D_I2C, R_QUEUE_NOTIFY + 2, size, 0);
	}
	still_serves(h, D_I2C);
	hostile_after(h, D_I2C);
}

static void test_reg_unaligned(void **state)
{
	struct hostile *h = *state;

	assert_int_equal(raw_rd(h, D_I2C, 1, 4), 0xffffffffu);
	raw_wr(h, D_I2C, R_STATUS_OFF + 2, 4, 0);
	raw_wr(h, D_I2C, R_STATUS_OFF - 1, 4, 0);
	still_serves(h, D_I2C);
	hostile_after(h, D_I2C);
}

static void test_reg_unknown(void **state)
{
	struct hostile *h = *state;
	const uint32_t offs[] = { 0x018, 0x03c, 0x048, 0x054, 0x068, 0x074, 0x0c4, 0x0f0, 0x0f8 };

	for (unsigned i = 0; i < sizeof(offs) / sizeof(offs[0]); i++) {
		wr(h, D_I2C, offs[i], 0xffffffffu);
		(void)rd(h, D_I2C, offs[i]);
	}
	/* Read-only registers written. */
	wr(h, D_I2C, 0x000, 0);
	wr(h, D_I2C, 0x008, 2);
	wr(h, D_I2C, R_INT_STATUS, 0xffffffffu);
	wr(h, D_I2C, R_INT_ACK, 0xffffffffu);
	assert_int_equal(rd(h, D_I2C, 0x008), 34);
	still_serves(h, D_I2C);
	hostile_after(h, D_I2C);
}

/* ---- features and status ---- */

/* Reset, ACKNOWLEDGE|DRIVER, write features, set FEATURES_OK: what Status reads then. */
static uint32_t negotiate(struct hostile *h, unsigned d, uint64_t f)
{
	vdrv_reset(&h->drv[d]);
	wr(h, d, R_STATUS_OFF, 1);
	wr(h, d, R_STATUS_OFF, 3);
	wr(h, d, R_DRV_FEATURES_SEL, 1);
	wr(h, d, R_DRV_FEATURES, (uint32_t)(f >> 32));
	wr(h, d, R_DRV_FEATURES_SEL, 0);
	wr(h, d, R_DRV_FEATURES, (uint32_t)f);
	wr(h, d, R_STATUS_OFF, 0xb);
	return hostile_status(h, d);
}

static void test_feature_never_offered(void **state)
{
	struct hostile *h = *state;
	const unsigned bits[] = { 27, 31, 34, 50, 63 };

	for (unsigned i = 0; i < sizeof(bits) / sizeof(bits[0]); i++)
		assert_int_equal(negotiate(h, D_BLK, VIRTIO_BIT(VIRTIO_F_VERSION_1) |
					   VIRTIO_BIT(bits[i])), 3);
	/* Feature words beyond the second. */
	vdrv_reset(&h->drv[D_BLK]);
	wr(h, D_BLK, R_STATUS_OFF, 3);
	wr(h, D_BLK, R_DRV_FEATURES_SEL, 2);
	wr(h, D_BLK, R_DRV_FEATURES, 0xffffffffu);
	wr(h, D_BLK, R_DRV_FEATURES_SEL, 1);
	wr(h, D_BLK, R_DRV_FEATURES, 1);
	wr(h, D_BLK, R_STATUS_OFF, 0xb);
	assert_int_equal(hostile_status(h, D_BLK), 0xb);
	hostile_after(h, D_BLK);
}

static void test_features_ok_without_version_1(void **state)
{
	struct hostile *h = *state;

	assert_int_equal(negotiate(h, D_BLK, VIRTIO_BIT(VIRTIO_BLK_F_FLUSH)), 3);
	assert_int_equal(negotiate(h, D_BLK, 0), 3);
	hostile_after(h, D_BLK);
}

static void test_driver_ok_before_features_ok(void **state)
{
	struct hostile *h = *state;

	vdrv_reset(&h->drv[D_RNG]);
	wr(h, D_RNG, R_STATUS_OFF, 1);
	wr(h, D_RNG, R_STATUS_OFF, 3);
	wr(h, D_RNG, R_STATUS_OFF, 7);
	assert_int_equal(hostile_status(h, D_RNG), 3);
	/* Skipping steps from nothing. */
	vdrv_reset(&h->drv[D_RNG]);
	wr(h, D_RNG, R_STATUS_OFF, 4);
	wr(h, D_RNG, R_STATUS_OFF, 0xc);
	wr(h, D_RNG, R_STATUS_OFF, 0x9);
	assert_int_equal(hostile_status(h, D_RNG), 0);
	hostile_after(h, D_RNG);
}

static void test_status_bit_clears(void **state)
{
	struct hostile *h = *state;
	const uint32_t vals[] = { 0xb, 0x7, 0x3, 0x1, 0xe, 0x8 };

	for (unsigned i = 0; i < sizeof(vals) / sizeof(vals[0]); i++) {
		wr(h, D_RNG, R_STATUS_OFF, vals[i]);
		assert_int_equal(hostile_status(h, D_RNG), 0xf);
	}
	/* Reserved bits, and NEEDS_RESET written by the driver. */
	wr(h, D_RNG, R_STATUS_OFF, 0x3f);
	wr(h, D_RNG, R_STATUS_OFF, 0x4f);
	assert_int_equal(hostile_status(h, D_RNG), 0xf);
	still_serves(h, D_RNG);
	hostile_after(h, D_RNG);
}

static void test_feature_write_after_features_ok(void **state)
{
	struct hostile *h = *state;

	/* Turn off VERSION_1 and turn on a bit never offered, after the fact. */
	wr(h, D_BLK, R_DRV_FEATURES_SEL, 1);
	wr(h, D_BLK, R_DRV_FEATURES, 0x40000);
	wr(h, D_BLK, R_DRV_FEATURES_SEL, 0);
	wr(h, D_BLK, R_DRV_FEATURES, 0xffffffffu);
	still_serves(h, D_BLK);
	hostile_after(h, D_BLK);
}

static void test_queue_num_bad(void **state)
{
	struct hostile *h = *state;
	const uint32_t bad[] = { 0, 3, 48, 512, 65536, 0xffffffffu };

	assert_int_equal(negotiate(h, D_RNG, H_RING & ~VIRTIO_BIT(VIRTIO_F_ACCESS_PLATFORM)), 0xb);
	wr(h, D_RNG, R_QUEUE_SEL, 0);
	wr(h, D_RNG, R_QUEUE_NUM, 16);
	for (unsigned i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		wr(h, D_RNG, R_QUEUE_NUM, bad[i]);
		assert_int_equal(rd(h, D_RNG, R_QUEUE_NUM), 16);
	}
	/* A queue selection past the last queue selects nothing. */
	wr(h, D_RNG, R_QUEUE_SEL, 1);
	assert_int_equal(rd(h, D_RNG, R_QUEUE_NUM_MAX), 0);
	wr(h, D_RNG, R_QUEUE_NUM, 16);
	wr(h, D_RNG, R_QUEUE_READY, 1);
	assert_int_equal(rd(h, D_RNG, R_QUEUE_READY), 0);
	wr(h, D_RNG, R_QUEUE_SEL, 0xffffffffu);
	wr(h, D_RNG, R_QUEUE_READY, 1);
	assert_int_equal(rd(h, D_RNG, R_QUEUE_READY), 0);
	hostile_after(h, D_RNG);
}

/* ---- floods ---- */

struct flood {
	struct hostile *h;
	unsigned vcpu;
	unsigned n;
	unsigned long seed;
	unsigned failed;
	volatile bool stop;
};

static void *kick_flood(void *arg)
{
	struct flood *f = arg;

	for (unsigned i = 0; i < f->n && !f->stop; i++)
		if (xsim_mmio_write(f->h->t->dom, f->vcpu, H_WIN(D_RNG) + R_QUEUE_NOTIFY, 4, 0) < 0)
			f->failed++;
	return NULL;
}

/*
 * Round trips on the block device while other vCPUs hammer; each must finish within a bound.
 * Returns the number done.
 */
static unsigned blk_round_trips_while(struct hostile *h, volatile unsigned *done_threads,
				      unsigned nthreads)
{
	unsigned n = 0;

	while (*done_threads < nthreads || n < 5) {
		struct timespec t0;

		clock_gettime(CLOCK_MONOTONIC, &t0);
		hostile_scratch_reset(h);
		hostile_rt_blk(h);
		if (hostile_ms_since(&t0) > 2000)
			fail_msg("a block round trip took %lld ms under the flood",
				 (long long)hostile_ms_since(&t0));
		n++;
	}
	return n;
}

static volatile unsigned flood_done;

static void *kick_flood_thread(void *arg)
{
	kick_flood(arg);
	__atomic_fetch_add(&flood_done, 1, __ATOMIC_SEQ_CST);
	return NULL;
}

/* 100,000 kicks on the rng (with a chain published, and without): the block device answers. */
static void test_kick_flood(void **state)
{
	struct hostile *h = *state;
	struct flood f = { .h = h, .vcpu = 1, .n = 100000 };
	uint64_t gpa = hostile_buf(h, 64, NULL);
	pthread_t th;

	hostile_desc(h, D_RNG, 0, hostile_dma(h, gpa, 64, true), 64, VRING_DESC_F_WRITE, 0);
	hostile_publish(h, D_RNG, 0);
	h->scratch = h->mem.next;    /* the rng may fill that buffer at any time from now */
	flood_done = 0;
	assert_int_equal(pthread_create(&th, NULL, kick_flood_thread, &f), 0);
	unsigned n = blk_round_trips_while(h, &flood_done, 1);

	pthread_join(th, NULL);
	assert_int_equal(f.failed, 0);
	print_message("[  NOTE    ] %u log lines after the flood\n", hostile_log_lines(h));
	assert_true(hostile_log_lines(h) < 200);
	assert_true(n >= 5);
	/* The published chain was served once, and only once. */
	assert_int_equal(hostile_wait_used(h, D_RNG, H_WAIT_MS), 64);
	assert_int_equal(hostile_wait_used(h, D_RNG, 50), -1);
	assert_int_equal(hostile_status(h, D_RNG), 0xf);
	hostile_after(h, D_RNG);
}

/*
 * A storm access that was not answered as Xen answers: any failure of a well-sized access
 * but a data abort (EFAULT: it spans the kick dword and the rest of the window, which two
 * ioreq servers hold; no server is asked).
 */
static bool storm_failed(int rc, unsigned size)
{
	return rc < 0 && rc != -EFAULT && size <= 8 && (size & (size - 1)) == 0;
}

/* Counted, and the first failure of each vCPU said: which access, and what came back. */
static void storm_fail(struct flood *f, unsigned i, const char *what, uint32_t off, unsigned size,
		       int rc)
{
	if (!f->failed++)
		print_message("[  NOTE    ] vCPU %u, access %u: %s at 0x%x, %u bytes: %s\n", f->vcpu,
			      i, what, off, size, strerror(-rc));
}

static void *storm_thread(void *arg)
{
	struct flood *f = arg;
	static const unsigned sizes[] = { 1, 2, 4, 8, 3, 16 };
	unsigned long s = f->seed;

	for (unsigned i = 0; i < f->n; i++) {
		s = s * 6364136223846793005ul + 1442695040888963407ul;
		uint32_t off = (uint32_t)(s >> 33) % 0x200;
		unsigned size = sizes[(s >> 20) % 6];
		uint64_t val = s ^ (s >> 17);

		if ((s >> 12) % 8 == 0) {
			/* A malformed ioreq: wrong type, count or pointer flag. */
			struct ioreq r = { .addr = H_WIN(D_I2C) + off, .size = size,
					   .count = (uint32_t)(s >> 40) % 3,
					   .data_is_ptr = (s >> 45) & 1,
					   .dir = (s >> 46) & 1 ? IOREQ_READ : IOREQ_WRITE,
					   .type = (uint8_t)((s >> 48) % 4),
					   .state = STATE_IOREQ_READY, .data = val };
			struct ioreq resp;

			int rc = xsim_ioreq_raw(f->h->t->dom, f->vcpu, H_WIN(D_I2C), &r, &resp, 3000);

			if (rc < 0)
				storm_fail(f, i, "malformed ioreq", off, size, rc);
		} else {
			bool write = !((s >> 8) & 1);
			uint64_t v = val;
			int rc = xsim_mmio(f->h->t->dom, f->vcpu, H_WIN(D_I2C) + off, size, write, &v,
					   3000);

			if (storm_failed(rc, size))
				storm_fail(f, i, write ? "write" : "read", off, size, rc);
		}
	}
	__atomic_fetch_add(&flood_done, 1, __ATOMIC_SEQ_CST);
	return NULL;
}

/* Seven vCPUs throw random and malformed ioreqs at the i2c window at once. */
static void test_ioreq_storm(void **state)
{
	struct hostile *h = *state;
	struct flood f[H_VCPUS - 1];
	pthread_t th[H_VCPUS - 1];

	flood_done = 0;
	for (unsigned i = 0; i < H_VCPUS - 1; i++) {
		f[i] = (struct flood){ .h = h, .vcpu = i + 1, .n = 3000, .seed = 0x9e3779b9u * (i + 1) };
		assert_int_equal(pthread_create(&th[i], NULL, storm_thread, &f[i]), 0);
	}
	unsigned n = blk_round_trips_while(h, &flood_done, H_VCPUS - 1);

	for (unsigned i = 0; i < H_VCPUS - 1; i++) {
		pthread_join(th[i], NULL);
		assert_int_equal(f[i].failed, 0);
	}
	assert_true(n >= 5);
	/* 21 000 provocations, a rate-limited log: not one line each. */
	print_message("[  NOTE    ] %u log lines after the storm\n", hostile_log_lines(h));
	assert_true(hostile_log_lines(h) < 200);
	hostile_after(h, D_I2C);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		HOSTILE_TEST(test_queue_num_after_driver_ok),
		HOSTILE_TEST(test_queue_addrs_after_driver_ok),
		HOSTILE_TEST(test_queue_ready_0_mid_flight),
		HOSTILE_TEST(test_notify_nonexistent_queues),
		HOSTILE_TEST(test_notify_unready_queue),
		HOSTILE_TEST(test_config_write_out_of_range),
		HOSTILE_TEST(test_access_past_window_end),
		HOSTILE_TEST(test_reg_8_byte),
		HOSTILE_TEST(test_reg_sub_word),
		HOSTILE_TEST(test_reg_unaligned),
		HOSTILE_TEST(test_reg_unknown),
		HOSTILE_TEST(test_feature_never_offered),
		HOSTILE_TEST(test_features_ok_without_version_1),
		HOSTILE_TEST(test_driver_ok_before_features_ok),
		HOSTILE_TEST(test_status_bit_clears),
		HOSTILE_TEST(test_feature_write_after_features_ok),
		HOSTILE_TEST(test_queue_num_bad),
		HOSTILE_TEST(test_kick_flood),
		HOSTILE_TEST(test_ioreq_storm),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
