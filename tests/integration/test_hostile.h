/*
 * Shared fixture of the hostile-guest suites (test_hostile_*.c): one guest with three devices
 * served by the real sim daemon, rng (window 0, SPI 33), block on a 1 MiB patterned image
 * (window 1, SPI 34) and i2c with a simulated EEPROM and LM75 (window 2, SPI 35). All three
 * drivers allocate from one region of guest RAM; canary regions sit before it, after it and in
 * the middle of it (between the drivers' rings and the attack buffers).
 *
 * An attack hits one device. hostile_after() then asserts what must hold whatever the attack:
 * the daemon lives and logged no sanitizer report, the other two devices pass a full round
 * trip, every canary byte and every image byte (outside a range the test wrote on purpose) is
 * unchanged, and the attacked device itself comes back after a reset and passes a round trip.
 */
#ifndef XVD_TEST_HOSTILE_H
#define XVD_TEST_HOSTILE_H

#include <endian.h>
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "devices/blk.h"
#include "devices/device.h"
#include "devices/virtio_ring.h"
#include "tests/integration/itest.h"
#include "tests/lib/vdriver.h"

enum { D_RNG, D_BLK, D_I2C, ND };

#define H_WIN(d)      (UINT64_C(0x02000000) + 0x200u * (d))
#define H_SPI(d)      (33u + (d))
#define H_VCPUS       8
#define H_RAM_MIB     64
#define H_RAM1_MIB    8
#define H_CANARY0     UINT64_C(0x40000000)          /* before the drivers' region */
#define H_REGION      UINT64_C(0x40100000)
#define H_REGION_LEN  (16u << 20)
#define H_CANARY2     (H_REGION + H_REGION_LEN)     /* after it */
#define H_CANARY_LEN  0x10000u
#define H_QSIZE       64
#define H_IMG_SIZE    (1u << 20)
#define H_SECTORS     (H_IMG_SIZE / 512u)
#define H_WAIT_MS     5000
#define H_HOLE        UINT64_C(0x50000000)          /* between RAM bank 0 and bank 1 */
#define H_BEYOND      UINT64_C(0x300000000)         /* past bank 1 */

#define R_DEV_FEATURES     0x010
#define R_DEV_FEATURES_SEL 0x014
#define R_DRV_FEATURES     0x020
#define R_DRV_FEATURES_SEL 0x024
#define R_QUEUE_SEL        0x030
#define R_QUEUE_NUM_MAX    0x034
#define R_QUEUE_NUM        0x038
#define R_QUEUE_READY      0x044
#define R_QUEUE_NOTIFY     0x050
#define R_INT_STATUS       0x060
#define R_INT_ACK          0x064
#define R_DESC_LO          0x080
#define R_DESC_HI          0x084
#define R_AVAIL_LO         0x090
#define R_USED_LO          0x0a0
#define R_CONFIG           0x100
#define ST_NEEDS_RESET     0x40u

#define H_RING (VIRTIO_BIT(VIRTIO_F_VERSION_1) | VIRTIO_BIT(VIRTIO_F_EVENT_IDX) | \
		VIRTIO_BIT(VIRTIO_F_INDIRECT_DESC) | VIRTIO_BIT(VIRTIO_F_ACCESS_PLATFORM))
#define H_BLK_F (VIRTIO_BIT(VIRTIO_BLK_F_SEG_MAX) | VIRTIO_BIT(VIRTIO_BLK_F_BLK_SIZE) | \
		 VIRTIO_BIT(VIRTIO_BLK_F_FLUSH) | VIRTIO_BIT(VIRTIO_BLK_F_DISCARD) | \
		 VIRTIO_BIT(VIRTIO_BLK_F_WRITE_ZEROES))
#define H_I2C_F VIRTIO_BIT(0)          /* VIRTIO_I2C_F_ZERO_LENGTH_REQUEST */

struct hostile {
	struct itest *t;
	bool grants;
	struct vdrv_mem mem;
	struct xsim_vio vio[ND];
	struct vdrv drv[ND];
	uint64_t want[ND];
	uint8_t *canary[3];
	uint64_t canary_gpa[3];
	uint64_t scratch;           /* mem.next where attack buffers start */
	uint64_t img_lo, img_hi;    /* image bytes a test wrote on purpose */
	char dir[64], img[96];
};

static inline uint8_t hostile_img_byte(uint64_t off)
{
	return (uint8_t)((off / 512) * 7 + (off % 512) * 13 + 1);
}

static inline void hostile_make_image(struct hostile *h)
{
	static uint8_t buf[H_IMG_SIZE];
	FILE *f = fopen(h->img, "wb");

	assert_non_null(f);
	for (uint64_t i = 0; i < H_IMG_SIZE; i++)
		buf[i] = hostile_img_byte(i);
	assert_int_equal(fwrite(buf, 1, H_IMG_SIZE, f), H_IMG_SIZE);
	assert_int_equal(fclose(f), 0);
}

static inline void hostile_fill_canaries(struct hostile *h)
{
	for (unsigned c = 0; c < 3; c++)
		for (unsigned i = 0; i < H_CANARY_LEN; i++)
			h->canary[c][i] = (uint8_t)(0xa5 ^ i ^ (i >> 8) ^ c);
}

static inline uint64_t hostile_want(unsigned d)
{
	return H_RING | (d == D_BLK ? H_BLK_F : d == D_I2C ? H_I2C_F : 0);
}

/* Driver bring-up of device d with features want; returns vdrv_init's result. */
static inline int hostile_init_want(struct hostile *h, unsigned d, uint64_t want)
{
	h->want[d] = want;
	return vdrv_init(&h->drv[d], &h->vio[d].io, &h->mem, want, 1, H_QSIZE);
}

static inline void hostile_init(struct hostile *h, unsigned d)
{
	assert_int_equal(hostile_init_want(h, d, hostile_want(d)), 0);
}

/* What a test may change of the standard guest (all optional). */
struct hostile_cfg {
	bool grants;
	const char *img;            /* block path (default: the patterned image in the temp dir) */
	const char *blk_keys;       /* extra lines of the block section */
	const char *eeprom;         /* file of the EEPROM at 0x50 (default: none, volatile) */
	const char *extra;          /* more sections */
	bool no_blk_init;           /* do not bring the block driver up */
};

/* Hub, domain, daemon serving the three devices, three drivers up, canaries in place. */
static inline struct hostile *hostile_start_cfg(const struct hostile_cfg *c)
{
	struct hostile *h = calloc(1, sizeof(*h));
	char ini[2048];

	assert_non_null(h);
	h->grants = c->grants;
	snprintf(h->dir, sizeof(h->dir), "/tmp/itest_hostile.XXXXXX");
	assert_non_null(mkdtemp(h->dir));
	snprintf(h->img, sizeof(h->img), "%s/disk.img", h->dir);
	hostile_make_image(h);
	h->t = itest_new(&(struct xsim_dom_opts){ .name = "g1", .nr_vcpus = H_VCPUS,
						  .ram_mib = H_RAM_MIB, .ram1_mib = H_RAM1_MIB });
	assert_non_null(h->t);
	snprintf(ini, sizeof(ini),
		 "[guest]\nname = g1\ndiscovery = explicit\ngrant_usage = %s\n\n"
		 "[rng]\nmmio = 0x02000000\nirq = 33\n\n"
		 "[block \"disk\"]\nmmio = 0x02000200\nirq = 34\npath = %s\nqueue_size = 64\n%s\n"
		 "[i2c \"bus0\"]\nmmio = 0x02000400\nirq = 35\nsim = eeprom@0x50%s%s\n"
		 "sim = lm75@0x48\n\n%s", c->grants ? "yes" : "no", c->img ? c->img : h->img,
		 c->blk_keys ? c->blk_keys : "", c->eeprom ? ":" : "", c->eeprom ? c->eeprom : "",
		 c->extra ? c->extra : "");
	assert_int_equal(itest_serve(h->t, ini), 0);
	assert_int_equal(xsim_vmem_init(&h->mem, h->t->dom, H_REGION, H_REGION_LEN, c->grants),
			 0);
	for (unsigned d = 0; d < ND; d++) {
		xsim_vio_init(&h->vio[d], h->t->dom, 0, H_WIN(d), H_SPI(d));
		if (d != D_BLK || !c->no_blk_init)
			hostile_init(h, d);
	}
	h->canary_gpa[0] = H_CANARY0;
	h->canary_gpa[2] = H_CANARY2;
	h->canary_gpa[1] = vdrv_alloc(&h->mem, H_CANARY_LEN, 4096, NULL);
	assert_true(h->canary_gpa[1] != 0);
	for (unsigned i = 0; i < 3; i++) {
		h->canary[i] = xsim_dom_ram(h->t->dom, h->canary_gpa[i], H_CANARY_LEN);
		assert_non_null(h->canary[i]);
	}
	hostile_fill_canaries(h);
	h->scratch = h->mem.next;
	h->img_lo = h->img_hi = 0;
	return h;
}

static inline struct hostile *hostile_start(bool grants)
{
	return hostile_start_cfg(&(struct hostile_cfg){ .grants = grants });
}

static inline void hostile_stop(struct hostile *h)
{
	int st = itest_free(h->t);

	assert_true(WIFEXITED(st));
	assert_int_equal(WEXITSTATUS(st), 0);
	unlink(h->img);
	rmdir(h->dir);
	free(h);
}

/* Guest buffer of len bytes (16-aligned, zeroed) from the attack area; *host if non-NULL. */
static inline uint64_t hostile_buf(struct hostile *h, uint32_t len, uint8_t **host)
{
	void *p;
	uint64_t gpa = vdrv_alloc(&h->mem, len, 16, &p);

	assert_true(gpa != 0);
	if (host)
		*host = p;
	return gpa;
}

/* The address the device must be given for a guest buffer (a grant address under grants). */
static inline uint64_t hostile_dma(struct hostile *h, uint64_t gpa, uint32_t len, bool dev_writes)
{
	return h->mem.dma_addr ? h->mem.dma_addr(&h->mem, gpa, len, dev_writes) : gpa;
}

static inline struct vdrv_vq *hostile_vq(struct hostile *h, unsigned d)
{
	return &h->drv[d].vq[0];
}

/* Raw descriptor i of device d's queue 0 (addresses as given, no translation). */
static inline void hostile_desc(struct hostile *h, unsigned d, uint16_t i, uint64_t addr,
				uint32_t len, uint16_t flags, uint16_t next)
{
	struct vring_desc *x = &hostile_vq(h, d)->desc[i];

	x->addr = htole64(addr);
	x->len = htole32(len);
	x->flags = htole16(flags);
	x->next = htole16(next);
}

/* Put head into the avail ring and publish it (release), as a driver would; no kick. */
static inline void hostile_publish(struct hostile *h, unsigned d, uint16_t head)
{
	struct vdrv_vq *vq = hostile_vq(h, d);

	vq->avail->ring[vq->avail_idx & (vq->num - 1)] = htole16(head);
	vq->avail_idx++;
	__atomic_store_n(&vq->avail->idx, htole16(vq->avail_idx), __ATOMIC_RELEASE);
}

static inline void hostile_kick(struct hostile *h, unsigned d)
{
	__atomic_thread_fence(__ATOMIC_SEQ_CST);
	vdrv_write32(&h->drv[d], R_QUEUE_NOTIFY, 0);
}

static inline uint32_t hostile_status(struct hostile *h, unsigned d)
{
	return vdrv_status(&h->drv[d]);
}

static inline int64_t hostile_ms_since(const struct timespec *t0)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return (t.tv_sec - t0->tv_sec) * 1000 + (t.tv_nsec - t0->tv_nsec) / 1000000;
}

static inline void hostile_sleep_ms(unsigned ms)
{
	struct timespec ts = { ms / 1000, (long)(ms % 1000) * 1000000 };

	nanosleep(&ts, NULL);
}

/* Wait until device d reads NEEDS_RESET; true when it did within H_WAIT_MS. */
static inline bool hostile_wait_needs_reset(struct hostile *h, unsigned d)
{
	struct timespec t0;

	clock_gettime(CLOCK_MONOTONIC, &t0);
	while (hostile_ms_since(&t0) < H_WAIT_MS) {
		if (hostile_status(h, d) & ST_NEEDS_RESET)
			return true;
		hostile_sleep_ms(1);
	}
	return false;
}

/* Publish head, kick, expect NEEDS_RESET on device d and no used element for it. */
static inline void hostile_expect_broken(struct hostile *h, unsigned d, uint16_t head)
{
	uint16_t used0 = hostile_vq(h, d)->used->idx;

	hostile_publish(h, d, head);
	hostile_kick(h, d);
	assert_true(hostile_wait_needs_reset(h, d));
	/* The config interrupt says so. */
	assert_true(vdrv_read32(&h->drv[d], R_INT_STATUS) & VIRTIO_MMIO_INT_CONFIG);
	assert_int_equal(hostile_vq(h, d)->used->idx, used0);
}

/*
 * Wait for the next used element of device d's queue 0 (returned to the driver's free list);
 * its length, or -1 on timeout.
 */
static inline int64_t hostile_wait_used(struct hostile *h, unsigned d, int timeout_ms)
{
	struct timespec t0;
	uint32_t len;

	clock_gettime(CLOCK_MONOTONIC, &t0);
	for (;;) {
		int r = vdrv_get_used(&h->drv[d], 0, &len, NULL);

		assert_true(r >= 0);
		if (r == 1)
			return len;
		if (hostile_ms_since(&t0) >= timeout_ms)
			return -1;
		hostile_sleep_ms(1);
	}
}

/* ---- round trips ---- */

static inline void hostile_rt_rng(struct hostile *h)
{
	uint8_t *p;
	uint64_t gpa = hostile_buf(h, 256, &p);
	struct vdrv_buf b = { gpa, 256, true };   /* vdrv translates addresses itself */
	bool nonzero = false;

	assert_int_equal(vdrv_transfer(&h->drv[D_RNG], 0, &b, 1, false, H_WAIT_MS), 256);
	for (unsigned i = 0; i < 256; i++)
		nonzero |= p[i] != 0;
	assert_true(nonzero);
}

/* A well-formed block request; returns the status byte (0xee when never written). */
static inline uint8_t hostile_blk_rw(struct hostile *h, uint32_t type, uint64_t sector,
				     uint8_t *data, uint32_t len)
{
	uint8_t *hdr, *buf = NULL, *st;
	struct vdrv_buf b[3];
	unsigned n = 0;
	struct virtio_blk_outhdr o = { htole32(type), 0, htole64(sector) };
	bool rd = type == VIRTIO_BLK_T_IN || type == VIRTIO_BLK_T_GET_ID;

	b[n++] = (struct vdrv_buf){ hostile_buf(h, 16, &hdr), 16, false };
	memcpy(hdr, &o, 16);
	if (len) {
		b[n++] = (struct vdrv_buf){ hostile_buf(h, len, &buf), len, rd };
		if (!rd)
			memcpy(buf, data, len);
	}
	b[n++] = (struct vdrv_buf){ hostile_buf(h, 1, &st), 1, true };
	*st = 0xee;
	assert_true(vdrv_transfer(&h->drv[D_BLK], 0, b, n, false, H_WAIT_MS) >= 1);
	if (rd && len && *st == 0)
		memcpy(data, buf, len);
	return *st;
}

static inline void hostile_rt_blk(struct hostile *h)
{
	static uint8_t got[1024];

	assert_int_equal(hostile_blk_rw(h, VIRTIO_BLK_T_IN, 5, got, sizeof(got)), 0);
	for (unsigned i = 0; i < sizeof(got); i++)
		assert_int_equal(got[i], hostile_img_byte(5 * 512 + i));
}

/* One i2c message; returns its status byte (0xee when never written). */
static inline uint8_t hostile_i2c(struct hostile *h, uint16_t addr, bool rd, uint8_t *data,
				  uint32_t len)
{
	uint8_t *hdr, *buf = NULL, *st;
	struct vdrv_buf b[3];
	unsigned n = 0;
	uint16_t a = htole16((uint16_t)(addr << 1));
	uint32_t f = htole32(rd ? 2u : 0u);

	b[n++] = (struct vdrv_buf){ hostile_buf(h, 8, &hdr), 8, false };
	memcpy(hdr, &a, 2);
	memcpy(hdr + 4, &f, 4);
	if (len) {
		b[n++] = (struct vdrv_buf){ hostile_buf(h, len, &buf), len, rd };
		if (!rd)
			memcpy(buf, data, len);
	}
	b[n++] = (struct vdrv_buf){ hostile_buf(h, 1, &st), 1, true };
	*st = 0xee;
	assert_true(vdrv_transfer(&h->drv[D_I2C], 0, b, n, false, H_WAIT_MS) >= 1);
	if (rd && len)
		memcpy(data, buf, len);
	return *st;
}

static inline void hostile_rt_i2c(struct hostile *h)
{
	uint8_t t[2] = { 0, 0 };

	assert_int_equal(hostile_i2c(h, 0x48, true, t, 2), 0);
	assert_memory_equal(t, "\x19\x00", 2);
}

static inline void hostile_rt(struct hostile *h, unsigned d)
{
	h->mem.next = h->scratch;
	if (d == D_RNG)
		hostile_rt_rng(h);
	else if (d == D_BLK)
		hostile_rt_blk(h);
	else
		hostile_rt_i2c(h);
}

/* ---- what must hold after every attack ---- */

static inline void hostile_check_memory(struct hostile *h)
{
	static uint8_t img[H_IMG_SIZE];
	FILE *f;

	for (unsigned c = 0; c < 3; c++)
		for (unsigned i = 0; i < H_CANARY_LEN; i++)
			if (h->canary[c][i] != (uint8_t)(0xa5 ^ i ^ (i >> 8) ^ c))
				fail_msg("canary %u byte 0x%x changed", c, i);
	f = fopen(h->img, "rb");
	assert_non_null(f);
	assert_int_equal(fread(img, 1, H_IMG_SIZE, f), H_IMG_SIZE);
	fclose(f);
	for (uint64_t i = 0; i < H_IMG_SIZE; i++)
		if ((i < h->img_lo || i >= h->img_hi) && img[i] != hostile_img_byte(i))
			fail_msg("image byte 0x%llx changed", (unsigned long long)i);
}

/* Lines in the daemon's log so far. */
static inline unsigned hostile_log_lines(struct hostile *h)
{
	FILE *f = fopen(h->t->dm.log_path, "r");
	unsigned n = 0;
	int c;

	assert_non_null(f);
	while ((c = fgetc(f)) != EOF)
		n += c == '\n';
	fclose(f);
	return n;
}

static inline void hostile_check_alive(struct hostile *h)
{
	assert_true(xsim_daemon_alive(&h->t->dm));
	if (xsim_daemon_log_has(&h->t->dm, "Sanitizer") ||
	    xsim_daemon_log_has(&h->t->dm, "runtime error")) {
		itest_dump_log(h->t);
		fail_msg("the daemon reported a sanitizer error");
	}
}

/*
 * After an attack on device `attacked`: the daemon lives, the others work, nothing outside the
 * buffers changed, then the attacked device is reset, brought up again and works too.
 */
static inline void hostile_after(struct hostile *h, unsigned attacked)
{
	hostile_check_alive(h);
	for (unsigned d = 0; d < ND; d++)
		if (d != attacked)
			hostile_rt(h, d);
	hostile_check_memory(h);
	assert_int_equal(hostile_init_want(h, attacked, hostile_want(attacked)), 0);
	assert_int_equal(hostile_status(h, attacked) & ST_NEEDS_RESET, 0);
	hostile_rt(h, attacked);
	hostile_check_memory(h);
	hostile_check_alive(h);
}

/* Attack buffers start afresh for each attack. */
static inline void hostile_scratch_reset(struct hostile *h)
{
	h->mem.next = h->scratch;
}

static inline int hostile_setup(void **state)
{
	*state = hostile_start(false);
	return 0;
}

static inline int hostile_setup_grants(void **state)
{
	*state = hostile_start(true);
	return 0;
}

static inline int hostile_teardown(void **state)
{
	hostile_stop(*state);
	return 0;
}

#define HOSTILE_TEST(f) cmocka_unit_test_setup_teardown(f, hostile_setup, hostile_teardown)
#define HOSTILE_TEST_GRANTS(f) \
	cmocka_unit_test_setup_teardown(f, hostile_setup_grants, hostile_teardown)

#endif
