/*
 * virtio-blk through the real transport and a real libev loop, on real image files in a temp
 * directory (and, where the machine allows, loop block devices and small tmpfs mounts in a
 * private mount namespace). The guest side is the test driver: requests are built in guest RAM
 * exactly as a driver lays them out, completions arrive through io_uring and the loop.
 */
#include <endian.h>
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>
#include <ev.h>

#include "devices/blk.h"
#include "devices/device.h"
#include "devices/virtio_mmio.h"
#include "tests/lib/gmem_flat.h"
#include "tests/lib/nbdkit.h"
#include "tests/lib/vdriver.h"
#include "tests/lib/vdriver_direct.h"

#define RAM_GPA    UINT64_C(0x40000000)
#define RAM_SIZE   (128u << 20)
#define SCRATCH    (48u << 20)
#define IMG_SIZE   (16u << 20)
#define R_INT_STATUS 0x60
#define R_INT_ACK    0x64
#define R_STATUS     0x70
#define ALL_RING (VIRTIO_BIT(VIRTIO_F_VERSION_1) | VIRTIO_BIT(VIRTIO_F_EVENT_IDX) | \
		  VIRTIO_BIT(VIRTIO_F_INDIRECT_DESC))
#define BLK_ALL (VIRTIO_BIT(VIRTIO_BLK_F_SIZE_MAX) | VIRTIO_BIT(VIRTIO_BLK_F_SEG_MAX) | \
		 VIRTIO_BIT(VIRTIO_BLK_F_BLK_SIZE) | VIRTIO_BIT(VIRTIO_BLK_F_TOPOLOGY) | \
		 VIRTIO_BIT(VIRTIO_BLK_F_FLUSH) | VIRTIO_BIT(VIRTIO_BLK_F_CONFIG_WCE) | \
		 VIRTIO_BIT(VIRTIO_BLK_F_MQ) | VIRTIO_BIT(VIRTIO_BLK_F_RO) | \
		 VIRTIO_BIT(VIRTIO_BLK_F_DISCARD) | VIRTIO_BIT(VIRTIO_BLK_F_WRITE_ZEROES))
#define TIMEOUT_MS 5000

static char tmpdir[] = "/tmp/test_blk.XXXXXX";
static bool private_mounts;     /* we have our own mount namespace */

struct rig {
	struct vdrv_direct x;
	struct vdrv drv;
	struct ev_loop *loop;
	struct config_device cfg;
	int img;                     /* our own fd on the image, to check what reached it */
	char image[128];             /* the temp-dir image setup() made */
	uint64_t scratch_gpa, scratch_next;   /* data buffers, reused round after round */
	char loopdev[64];            /* attached by the test: teardown detaches it */
	char mnt[128];               /* mounted by the test: teardown unmounts it */
	long (*outstanding)(struct gmem *gm);  /* maps not unmapped; NULL: gmem_flat's */
	bool open;
	pid_t nbdkit;                /* the NBD server the test started (killed at teardown) */
	char sock[128];              /* its unix socket */
	char nbdlog[160];            /* its log filter's file (removed at teardown) */
};

/* ---- images and the rig ------------------------------------------------------------------ */

static void make_image(const char *path, off_t size)
{
	int fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);

	assert_true(fd >= 0);
	assert_int_equal(ftruncate(fd, size), 0);
	close(fd);
}

static void cfg_default(struct config_device *cfg, const char *path)
{
	memset(cfg, 0, sizeof(*cfg));
	cfg->type = DEV_BLOCK;
	cfg->devid = -1;
	snprintf(cfg->name, sizeof(cfg->name), "test");
	snprintf(cfg->u.block.path, sizeof(cfg->u.block.path), "%s", path);
	cfg->u.block.cache = BLK_CACHE_WRITEBACK;
	cfg->u.block.queues = 1;
	cfg->u.block.queue_size = 1024;
	cfg->u.block.discard = true;
	cfg->u.block.write_zeroes = true;
}

static int rig_start(struct rig *r, uint64_t want, unsigned nqueues)
{
	int rc;

	r->loop = ev_loop_new(EVFLAG_AUTO);
	rc = vdrv_direct_open(&r->x, &r->cfg, RAM_GPA, RAM_SIZE, r->loop);
	if (rc < 0) {
		ev_loop_destroy(r->loop);
		if (rc == -ENOTSUP && r->cfg.u.block.nbd[0]) {
			print_message("[  SKIP    ] built without NBD support\n");
			skip();
		}
		return rc;
	}
	r->open = true;
	/* The device's image, or the one nbdkit serves it (setup()'s). */
	r->img = open(r->cfg.u.block.nbd[0] ? r->image : r->cfg.u.block.path, O_RDONLY);
	assert_true(r->img >= 0);
	return vdrv_init(&r->drv, &r->x.io, &r->x.mem, want, nqueues,
			 r->cfg.u.block.queue_size);
}

static void rig_stop(struct rig *r)
{
	if (!r->open)
		return;
	vdrv_reset(&r->drv);
	if (r->outstanding) {
		assert_int_equal(r->outstanding(r->x.gm), 0);
	} else {
		assert_int_equal(gmem_flat_outstanding(r->x.gm), 0);
		assert_int_equal(gmem_flat_bad_unmaps(r->x.gm), 0);
	}
	vdrv_direct_close(&r->x);
	ev_loop_destroy(r->loop);
	close(r->img);
	r->open = false;
}

static int setup(void **state)
{
	struct rig *r = calloc(1, sizeof(*r));
	char path[128];

	snprintf(path, sizeof(path), "%s/disk.img", tmpdir);
	make_image(path, IMG_SIZE);
	snprintf(r->image, sizeof(r->image), "%s", path);
	cfg_default(&r->cfg, path);
	*state = r;
	return 0;
}

static void loop_detach(const char *dev);
static void nbdkit_stop(struct rig *r);

static int teardown(void **state)
{
	struct rig *r = *state;

	rig_stop(r);
	nbdkit_stop(r);
	if (r->nbdlog[0])
		unlink(r->nbdlog);
	if (r->loopdev[0])
		loop_detach(r->loopdev);
	if (r->mnt[0]) {
		umount2(r->mnt, MNT_DETACH);
		rmdir(r->mnt);
	}
	unlink(r->image);
	free(r);
	return 0;
}

/* ---- requests ---------------------------------------------------------------------------- */

struct req {
	struct vdrv_buf b[12];
	unsigned n;
	uint64_t status_gpa;
	bool done;
	uint32_t used_len;
};

static uint64_t ram_alloc(struct rig *r, uint64_t len, uint64_t align, void **host)
{
	uint64_t gpa = vdrv_alloc(&r->x.mem, len, align, host);

	assert_true(gpa != 0);
	return gpa;
}

/*
 * Data buffers from the scratch region, aligned in *host* memory (as Xen's page mappings are;
 * the flat test RAM is only 16-byte aligned) so O_DIRECT sees the alignment the test intends.
 */
static uint64_t scratch_alloc(struct rig *r, uint64_t len, uint64_t align, void **host)
{
	uint64_t size = r->x.mem.size / 2 < SCRATCH ? r->x.mem.size / 2 : SCRATCH;

	if (!r->scratch_gpa)
		r->scratch_gpa = ram_alloc(r, size, 4096, NULL);
	uint64_t gpa = r->scratch_gpa + r->scratch_next;
	uintptr_t h = (uintptr_t)vdrv_host(&r->x.mem, gpa);

	gpa += (align - h % align) % align;
	assert_true(gpa + len <= r->scratch_gpa + size);
	r->scratch_next = gpa + len - r->scratch_gpa;
	if (host)
		*host = vdrv_host(&r->x.mem, gpa);
	return gpa;
}

/* Header (readable), the data buffers as given, then one writable status byte. */
static void req_build(struct rig *r, struct req *q, uint32_t type, uint64_t sector,
		      const struct vdrv_buf *data, unsigned ndata)
{
	struct virtio_blk_outhdr *h;
	uint8_t *st;

	memset(q, 0, sizeof(*q));
	q->b[q->n++] = (struct vdrv_buf){ ram_alloc(r, 16, 16, (void **)&h), 16, false };
	h->type = htole32(type);
	h->ioprio = 0;
	h->sector = htole64(sector);
	for (unsigned i = 0; i < ndata; i++)
		q->b[q->n++] = data[i];
	q->status_gpa = ram_alloc(r, 1, 1, (void **)&st);
	*st = 0xee;
	q->b[q->n++] = (struct vdrv_buf){ q->status_gpa, 1, true };
}

static uint8_t req_status(struct rig *r, const struct req *q)
{
	return *(uint8_t *)vdrv_host(&r->x.mem, q->status_gpa);
}

static void req_submit(struct rig *r, unsigned vq, struct req *q, bool indirect)
{
	assert_true(vdrv_submit(&r->drv, vq, q->b, q->n, indirect, q) >= 0);
}

/* Collect completions until n requests are done; fails the test on timeout. */
static void wait_done(struct rig *r, unsigned vq, unsigned n)
{
	unsigned got = 0;

	for (int waited = 0; got < n; waited += 10) {
		uint32_t len;
		void *tok;
		int rc;

		while ((rc = vdrv_get_used(&r->drv, vq, &len, &tok)) > 0) {
			struct req *q = tok;

			assert_non_null(q);
			assert_false(q->done);
			q->done = true;
			q->used_len = len;
			got++;
		}
		assert_true(rc >= 0);
		if (got >= n)
			break;
		assert_true(waited < TIMEOUT_MS);
		vdrv_enable_irq(&r->drv, vq);
		if (r->x.io.wait_irq(&r->x.io, 10) > 0) {
			uint32_t isr = vdrv_read32(&r->drv, R_INT_STATUS);

			if (isr)
				vdrv_write32(&r->drv, R_INT_ACK, isr);
		}
	}
}

/* One request, start to finish; returns the status byte. */
static uint8_t do_req(struct rig *r, uint32_t type, uint64_t sector, const struct vdrv_buf *data,
		      unsigned ndata, uint32_t *used_len)
{
	struct req q;

	req_build(r, &q, type, sector, data, ndata);
	req_submit(r, 0, &q, false);
	vdrv_kick(&r->drv, 0);
	wait_done(r, 0, 1);
	if (used_len)
		*used_len = q.used_len;
	return req_status(r, &q);
}

static uint8_t do_rw(struct rig *r, bool write, uint64_t sector, uint64_t gpa, uint32_t len)
{
	struct vdrv_buf d = { gpa, len, !write };

	return do_req(r, write ? VIRTIO_BLK_T_OUT : VIRTIO_BLK_T_IN, sector, &d, 1, NULL);
}

static uint8_t do_dwz(struct rig *r, uint32_t type, uint64_t sector, uint32_t n, uint32_t flags)
{
	struct virtio_blk_dwz_seg *s;
	struct vdrv_buf d = { ram_alloc(r, sizeof(*s), 16, (void **)&s), sizeof(*s), false };

	s->sector = htole64(sector);
	s->num_sectors = htole32(n);
	s->flags = htole32(flags);
	return do_req(r, type, sector, &d, 1, NULL);
}

/* The byte at disk offset off in generation gen of the test pattern. */
static uint8_t pat(uint64_t off, unsigned gen)
{
	uint64_t x = (off / 8 + 1) * 0x9e3779b97f4a7c15ull + gen * 0x100000001b3ull;

	return (uint8_t)((x >> 29) ^ (off & 7) ^ gen);
}

static void fill_pat(uint8_t *p, uint64_t off, uint32_t len, unsigned gen)
{
	for (uint32_t i = 0; i < len; i++)
		p[i] = pat(off + i, gen);
}

static void assert_image_pat(struct rig *r, uint64_t off, uint32_t len, unsigned gen)
{
	uint8_t *buf = malloc(len);

	assert_int_equal(pread(r->img, buf, len, (off_t)off), (ssize_t)len);
	for (uint32_t i = 0; i < len; i++)
		if (buf[i] != pat(off + i, gen))
			fail_msg("image byte %llu is %#x, want %#x", (unsigned long long)(off + i),
				 buf[i], pat(off + i, gen));
	free(buf);
}

static void assert_image_zero(struct rig *r, uint64_t off, uint32_t len)
{
	uint8_t *buf = malloc(len);

	assert_int_equal(pread(r->img, buf, len, (off_t)off), (ssize_t)len);
	for (uint32_t i = 0; i < len; i++)
		if (buf[i])
			fail_msg("image byte %llu is %#x, want 0", (unsigned long long)(off + i),
				 buf[i]);
	free(buf);
}

static uint64_t cfg_read(struct rig *r, uint32_t off, uint32_t len)
{
	uint64_t v = 0;

	vdrv_config_read(&r->drv, off, &v, len);
	return le64toh(v);
}

/* ---- tests ------------------------------------------------------------------------------- */

static void test_config_space(void **state)
{
	struct rig *r = *state;

	assert_int_equal(rig_start(r, ALL_RING | BLK_ALL, 1), 0);
	assert_int_equal(r->drv.device_id, VIRTIO_ID_BLOCK);
	uint64_t f = r->drv.device_features;

	assert_true(f & VIRTIO_BIT(VIRTIO_BLK_F_FLUSH));
	assert_true(f & VIRTIO_BIT(VIRTIO_BLK_F_DISCARD));
	assert_true(f & VIRTIO_BIT(VIRTIO_BLK_F_WRITE_ZEROES));
	assert_true(f & VIRTIO_BIT(VIRTIO_BLK_F_CONFIG_WCE));
	assert_false(f & VIRTIO_BIT(VIRTIO_BLK_F_RO));
	assert_int_equal(cfg_read(r, VIRTIO_BLK_CFG_CAPACITY, 8), IMG_SIZE / 512);
	assert_int_equal(cfg_read(r, VIRTIO_BLK_CFG_SIZE_MAX, 4), 1u << 20);
	assert_int_equal(cfg_read(r, VIRTIO_BLK_CFG_SEG_MAX, 4), 1022);
	assert_int_equal(cfg_read(r, VIRTIO_BLK_CFG_BLK_SIZE, 4), 512);
	assert_int_equal(cfg_read(r, VIRTIO_BLK_CFG_PHYS_EXP, 1), 3);   /* 4096 / 512 */
	assert_int_equal(cfg_read(r, VIRTIO_BLK_CFG_ALIGN_OFF, 1), 0);
	assert_int_equal(cfg_read(r, VIRTIO_BLK_CFG_MIN_IO, 2), 8);
	assert_int_equal(cfg_read(r, VIRTIO_BLK_CFG_WRITEBACK, 1), 1);
	assert_int_equal(cfg_read(r, VIRTIO_BLK_CFG_NUM_QUEUES, 2), 1);
	assert_int_equal(cfg_read(r, VIRTIO_BLK_CFG_MAX_DISCARD, 4), 1u << 22);
	assert_int_equal(cfg_read(r, VIRTIO_BLK_CFG_MAX_DISCARD_SEG, 4), 1);
	assert_int_equal(cfg_read(r, VIRTIO_BLK_CFG_DISCARD_ALIGN, 4), 8);
	assert_int_equal(cfg_read(r, VIRTIO_BLK_CFG_MAX_WZ, 4), 1u << 22);
	assert_int_equal(cfg_read(r, VIRTIO_BLK_CFG_MAX_WZ_SEG, 4), 1);
	assert_int_equal(cfg_read(r, VIRTIO_BLK_CFG_WZ_MAY_UNMAP, 1), 1);
	/* Beyond the config space: the transport refuses, all ones. */
	assert_int_equal((uint32_t)vmmio_read(r->x.dev, VIRTIO_MMIO_CONFIG + VIRTIO_BLK_CFG_SIZE, 4),
			 0xffffffffu);
}

static void test_features_follow_config(void **state)
{
	struct rig *r = *state;

	r->cfg.u.block.discard = false;
	r->cfg.u.block.write_zeroes = false;
	r->cfg.u.block.queues = 4;
	assert_int_equal(rig_start(r, ALL_RING | BLK_ALL, 4), 0);
	assert_false(r->drv.device_features & VIRTIO_BIT(VIRTIO_BLK_F_DISCARD));
	assert_false(r->drv.device_features & VIRTIO_BIT(VIRTIO_BLK_F_WRITE_ZEROES));
	assert_int_equal(cfg_read(r, VIRTIO_BLK_CFG_NUM_QUEUES, 2), 4);
	/* Not negotiated, so the request types are unsupported. */
	assert_int_equal(do_dwz(r, VIRTIO_BLK_T_DISCARD, 0, 8, 0), VIRTIO_BLK_S_UNSUPP);
	assert_int_equal(do_dwz(r, VIRTIO_BLK_T_WRITE_ZEROES, 0, 8, 0), VIRTIO_BLK_S_UNSUPP);
}

static void test_get_id(void **state)
{
	struct rig *r = *state;
	char *id;
	uint64_t gpa;
	uint32_t used;

	snprintf(r->cfg.u.block.serial, sizeof(r->cfg.u.block.serial), "disk-0042");
	assert_int_equal(rig_start(r, ALL_RING | BLK_ALL, 1), 0);
	gpa = ram_alloc(r, 20, 1, (void **)&id);
	memset(id, 'x', 20);
	struct vdrv_buf d = { gpa, 20, true };

	assert_int_equal(do_req(r, VIRTIO_BLK_T_GET_ID, 0, &d, 1, &used), VIRTIO_BLK_S_OK);
	assert_int_equal(used, 21);
	assert_memory_equal(id, "disk-0042\0\0\0\0\0\0\0\0\0\0\0", 20);
	/* A shorter buffer gets what fits. */
	gpa = ram_alloc(r, 4, 1, (void **)&id);
	d = (struct vdrv_buf){ gpa, 4, true };
	assert_int_equal(do_req(r, VIRTIO_BLK_T_GET_ID, 0, &d, 1, &used), VIRTIO_BLK_S_OK);
	assert_int_equal(used, 5);
	assert_memory_equal(id, "disk", 4);
}

static void test_get_id_default(void **state)
{
	struct rig *r = *state;
	char *id;
	uint64_t gpa;

	assert_int_equal(rig_start(r, ALL_RING | BLK_ALL, 1), 0);
	gpa = ram_alloc(r, 20, 1, (void **)&id);
	struct vdrv_buf d = { gpa, 20, true };

	assert_int_equal(do_req(r, VIRTIO_BLK_T_GET_ID, 0, &d, 1, NULL), VIRTIO_BLK_S_OK);
	assert_memory_equal(id, "xvd-", 4);
	for (int i = 4; i < 20; i++)
		assert_true(strchr("0123456789abcdef", id[i]) != NULL);
}

/*
 * qd requests in flight at once, each written (or read) through 1-4 buffers split at odd byte
 * boundaries, every other one through an indirect table; one kick, one io_uring_submit.
 */
static void rw_round(struct rig *r, unsigned qd, bool write, unsigned gen, uint32_t misalign)
{
	struct req *reqs = calloc(qd, sizeof(*reqs));
	const struct blk_stats *st = blk_get_stats(r->x.dev);
	uint64_t submits = st->submits, inl = st->inline_done;

	for (unsigned i = 0; i < qd; i++) {
		uint64_t off = (uint64_t)i * 65536;
		uint32_t len = 512u * (1 + (i * 37 + qd) % 128), done = 0;
		unsigned nbuf = 1 + i % 4;
		struct vdrv_buf d[4];
		uint8_t *h;

		for (unsigned k = 0; k < nbuf; k++) {
			uint32_t piece = k + 1 == nbuf ? len - done : (len / nbuf) - (k ? 0 : 3);
			uint64_t gpa = scratch_alloc(r, piece + misalign, 512, (void **)&h) + misalign;

			h += misalign;
			if (write)
				fill_pat(h, off + done, piece, gen);
			else
				memset(h, 0x5a, piece);
			d[k] = (struct vdrv_buf){ gpa, piece, !write };
			done += piece;
		}
		req_build(r, &reqs[i], write ? VIRTIO_BLK_T_OUT : VIRTIO_BLK_T_IN, off / 512, d,
			  nbuf);
		req_submit(r, 0, &reqs[i], i % 2);
	}
	vdrv_kick(&r->drv, 0);
	/* NBD commands go out one by one; a lone buffered request may be done inline instead. */
	if (!r->cfg.u.block.nbd[0])
		assert_int_equal(st->submits - submits + st->inline_done - inl, 1);
	wait_done(r, 0, qd);
	for (unsigned i = 0; i < qd; i++) {
		struct req *q = &reqs[i];
		uint64_t off = (uint64_t)i * 65536, pos = off;

		assert_int_equal(req_status(r, q), VIRTIO_BLK_S_OK);
		for (unsigned k = 1; k + 1 < q->n; k++) {
			uint8_t *h = vdrv_host(&r->x.mem, q->b[k].gpa);

			for (uint32_t j = 0; !write && j < q->b[k].len; j++)
				if (h[j] != pat(pos + j, gen))
					fail_msg("qd %u req %u: byte %u of buffer %u wrong", qd, i, j, k);
			pos += q->b[k].len;
		}
		assert_int_equal(q->used_len, write ? 1 : pos - off + 1);
		if (write)
			assert_image_pat(r, off, (uint32_t)(pos - off), gen);
	}
	assert_int_equal(st->inflight, 0);
	r->scratch_next = 0;
	free(reqs);
}

static void depth_rounds(struct rig *r, uint32_t misalign)
{
	static const unsigned depths[] = { 1, 2, 3, 8, 16, 32, 64, 100, 128 };

	for (size_t i = 0; i < sizeof(depths) / sizeof(depths[0]); i++) {
		rw_round(r, depths[i], true, (unsigned)i + 1, misalign);
		rw_round(r, depths[i], false, (unsigned)i + 1, misalign);
	}
}

static void test_rw_depths(void **state)
{
	struct rig *r = *state;

	assert_int_equal(rig_start(r, ALL_RING | BLK_ALL, 1), 0);
	depth_rounds(r, 0);
	assert_int_equal(blk_get_stats(r->x.dev)->errors, 0);
}

static void test_rw_depths_no_event_idx(void **state)
{
	struct rig *r = *state;

	assert_int_equal(rig_start(r, (ALL_RING & ~VIRTIO_BIT(VIRTIO_F_EVENT_IDX)) | BLK_ALL, 1),
			 0);
	depth_rounds(r, 0);
}

/* cache = none: aligned buffers go straight to O_DIRECT, unaligned ones through a bounce. */
static void test_rw_direct(void **state)
{
	struct rig *r = *state;
	const struct blk_stats *st;

	r->cfg.u.block.cache = BLK_CACHE_NONE;
	assert_int_equal(rig_start(r, ALL_RING | BLK_ALL, 1), 0);
	st = blk_get_stats(r->x.dev);
	uint8_t *h;
	uint64_t gpa = scratch_alloc(r, 8192, 4096, (void **)&h);

	fill_pat(h, 4096, 8192, 9);
	assert_int_equal(do_rw(r, true, 8, gpa, 8192), VIRTIO_BLK_S_OK);
	assert_int_equal(st->bounces, 0);
	assert_image_pat(r, 4096, 8192, 9);
	/* Buffers split at odd offsets: bounced, same result. */
	rw_round(r, 16, true, 3, 1);
	assert_true(st->bounces >= 16);
	rw_round(r, 16, false, 3, 1);
	assert_true(st->bounces >= 32);
	depth_rounds(r, 0);
}

/* 96 unaligned 1 MiB writes at once: 96 MiB of bounce demand against a 64 MiB budget waits. */
static void test_bounce_budget_waits(void **state)
{
	struct rig *r = *state;
	struct req *w = calloc(96, sizeof(*w));
	uint8_t *h;

	r->cfg.u.block.cache = BLK_CACHE_NONE;
	assert_int_equal(rig_start(r, ALL_RING | BLK_ALL, 1), 0);
	const struct blk_stats *st = blk_get_stats(r->x.dev);
	/* One unaligned source buffer shared by every write (the device only reads it). */
	uint64_t gpa = scratch_alloc(r, (1u << 20) + 1, 4096, (void **)&h) + 1;

	h += 1;
	fill_pat(h, 0, 1u << 20, 29);
	for (unsigned i = 0; i < 96; i++) {
		struct vdrv_buf d = { gpa, 1u << 20, false };

		req_build(r, &w[i], VIRTIO_BLK_T_OUT, (i % 16) * 2048u, &d, 1);
		req_submit(r, 0, &w[i], true);
	}
	vdrv_kick(&r->drv, 0);
	assert_true(st->inflight <= 64);   /* the rest wait for bounce memory */
	wait_done(r, 0, 96);
	for (unsigned i = 0; i < 96; i++)
		assert_int_equal(req_status(r, &w[i]), VIRTIO_BLK_S_OK);
	assert_int_equal(st->bounces, 96);
	assert_int_equal(st->errors, 0);
	for (unsigned i = 0; i < 16; i++) {
		uint8_t *buf = malloc(1u << 20);

		assert_int_equal(pread(r->img, buf, 1u << 20, (off_t)i << 20), 1 << 20);
		assert_memory_equal(buf, h, 1u << 20);
		free(buf);
	}
	free(w);
}

/*
 * A random mix against a model: batches of up to 16 requests, each valid one on its own 1 MiB
 * region (so their order does not matter), mixed with hostile ones (unknown types, short
 * headers, odd lengths, beyond the end). Valid requests must succeed and reads must match the
 * model; hostile ones must fail without touching the image, which must equal the model at the end.
 */
struct mix {
	struct rig *r;
	uint8_t *model;
	uint64_t seed;
};

static uint32_t mix_rand(struct mix *m, uint32_t n)
{
	m->seed = m->seed * 6364136223846793005ull + 1442695040888963407ull;
	return (uint32_t)(m->seed >> 33) % n;
}

/* Split len bytes at gpa (host h) into up to 4 buffers at random byte boundaries. */
static unsigned mix_split(struct mix *m, uint64_t gpa, uint32_t len, bool dev_writes,
			  struct vdrv_buf *d)
{
	unsigned n = 1 + mix_rand(m, 4), k = 0;
	uint32_t done = 0;

	for (; k + 1 < n && len - done > 1; k++) {
		uint32_t piece = 1 + mix_rand(m, len - done - 1);

		d[k] = (struct vdrv_buf){ gpa + done, piece, dev_writes };
		done += piece;
	}
	d[k] = (struct vdrv_buf){ gpa + done, len - done, dev_writes };
	return k + 1;
}

enum mix_kind { MIX_WRITE, MIX_READ, MIX_WZ, MIX_DISCARD, MIX_HOSTILE };

struct mix_req {
	struct req q;
	enum mix_kind kind;
	uint64_t off;
	uint32_t len;
	uint8_t *buf;
};

/* Requests that must fail: unknown type, odd length, beyond the end, short header. */
static void mix_hostile(struct mix *m, struct mix_req *x, uint64_t sector, uint32_t nsect,
			uint64_t gpa)
{
	static const uint32_t unknown[] = { 3, 7, 12, 99 };
	bool in = mix_rand(m, 2);
	uint32_t type = in ? VIRTIO_BLK_T_IN : VIRTIO_BLK_T_OUT;
	uint32_t len = x->len;
	struct vdrv_buf d[4];
	unsigned n, how = mix_rand(m, 4);

	if (how == 0) {
		type = unknown[mix_rand(m, 4)];
		in = false;
	} else if (how == 1) {
		len -= 1 + mix_rand(m, 511);
	} else if (how == 2) {
		sector = IMG_SIZE / 512 - nsect + 1 + mix_rand(m, nsect);
	} else {
		/* Only a read can have a short header: a write's data would follow in the out part. */
		type = VIRTIO_BLK_T_IN;
		in = true;
	}
	n = mix_split(m, gpa, len, in, d);
	req_build(m->r, &x->q, type, sector, d, n);
	if (how == 3)
		x->q.b[0].len = 8;   /* a short header */
}

static void mix_build(struct mix *m, struct mix_req *x, unsigned region)
{
	struct rig *r = m->r;
	uint32_t nsect = 1 + mix_rand(m, 64);
	uint64_t sector = region * 2048u + mix_rand(m, 2048 - nsect);
	struct vdrv_buf d[4];
	unsigned n;
	uint64_t gpa;

	x->kind = (enum mix_kind)mix_rand(m, 5);
	x->off = sector * 512;
	x->len = nsect * 512;
	gpa = scratch_alloc(r, x->len, 1 + mix_rand(m, 2) * 511, (void **)&x->buf);
	switch (x->kind) {
	case MIX_WRITE:
		for (uint32_t i = 0; i < x->len; i++)
			x->buf[i] = (uint8_t)mix_rand(m, 256);
		n = mix_split(m, gpa, x->len, false, d);
		req_build(r, &x->q, VIRTIO_BLK_T_OUT, sector, d, n);
		break;
	case MIX_READ:
		memset(x->buf, 0xa5, x->len);
		n = mix_split(m, gpa, x->len, true, d);
		req_build(r, &x->q, VIRTIO_BLK_T_IN, sector, d, n);
		break;
	case MIX_WZ:
	case MIX_DISCARD: {
		struct virtio_blk_dwz_seg *sg;
		struct vdrv_buf sb = { scratch_alloc(r, 16, 8, (void **)&sg), 16, false };

		*sg = (struct virtio_blk_dwz_seg){ htole64(sector), htole32(nsect),
						   htole32(x->kind == MIX_WZ ? mix_rand(m, 2) : 0) };
		req_build(r, &x->q, x->kind == MIX_WZ ? VIRTIO_BLK_T_WRITE_ZEROES :
			  VIRTIO_BLK_T_DISCARD, sector, &sb, 1);
		break;
	}
	default:
		mix_hostile(m, x, sector, nsect, gpa);
		break;
	}
}

static void mix_check(struct mix *m, struct mix_req *x)
{
	uint8_t st = req_status(m->r, &x->q);

	switch (x->kind) {
	case MIX_WRITE:
		assert_int_equal(st, VIRTIO_BLK_S_OK);
		memcpy(m->model + x->off, x->buf, x->len);
		break;
	case MIX_READ:
		assert_int_equal(st, VIRTIO_BLK_S_OK);
		assert_memory_equal(x->buf, m->model + x->off, x->len);
		assert_int_equal(x->q.used_len, x->len + 1);
		break;
	case MIX_WZ:
	case MIX_DISCARD:
		assert_int_equal(st, VIRTIO_BLK_S_OK);
		memset(m->model + x->off, 0, x->len);
		break;
	default:
		assert_true(st == VIRTIO_BLK_S_IOERR || st == VIRTIO_BLK_S_UNSUPP);
		break;
	}
}

static void random_mix(struct rig *r, enum config_blk_cache cache)
{
	struct mix m = { r, calloc(1, IMG_SIZE), 0x1234567 + cache };
	struct mix_req x[16];

	r->cfg.u.block.cache = cache;
	assert_int_equal(rig_start(r, ALL_RING | BLK_ALL, 1), 0);
	for (unsigned batch = 0; batch < 150; batch++) {
		unsigned n = 1 + mix_rand(&m, 16);

		r->scratch_next = 0;
		for (unsigned i = 0; i < n; i++) {
			mix_build(&m, &x[i], i);
			req_submit(r, 0, &x[i].q, mix_rand(&m, 2));
		}
		vdrv_kick(&r->drv, 0);
		wait_done(r, 0, n);
		for (unsigned i = 0; i < n; i++)
			mix_check(&m, &x[i]);
	}
	assert_true(vdev_active(r->x.dev));
	uint8_t *img = malloc(IMG_SIZE);

	assert_int_equal(pread(r->img, img, IMG_SIZE, 0), IMG_SIZE);
	assert_memory_equal(img, m.model, IMG_SIZE);
	free(img);
	free(m.model);
}

static void test_random_mix(void **state)
{
	random_mix(*state, BLK_CACHE_WRITEBACK);
}

static void test_random_mix_direct(void **state)
{
	random_mix(*state, BLK_CACHE_NONE);
}

/* 600 chains on one kick: VQ_BUDGET per turn of the loop, the rest in later turns, all served. */
static void test_budget_continues(void **state)
{
	struct rig *r = *state;
	struct req *q = calloc(600, sizeof(*q));
	uint8_t *h;

	assert_int_equal(rig_start(r, ALL_RING | BLK_ALL, 1), 0);
	const struct blk_stats *st = blk_get_stats(r->x.dev);
	uint64_t submits = st->submits;

	for (unsigned i = 0; i < 600; i++) {
		struct vdrv_buf d = { scratch_alloc(r, 512, 512, (void **)&h), 512, true };

		req_build(r, &q[i], VIRTIO_BLK_T_IN, i, &d, 1);
		req_submit(r, 0, &q[i], true);
	}
	vdrv_kick(&r->drv, 0);
	assert_int_equal(st->requests, VQ_BUDGET);   /* the rest waits for the next turn */
	wait_done(r, 0, 600);
	assert_int_equal(st->requests, 600);
	assert_true(st->submits - submits >= 3);
	for (unsigned i = 0; i < 600; i++)
		assert_int_equal(req_status(r, &q[i]), VIRTIO_BLK_S_OK);
	free(q);
}

/* SIGHUP after the image grew: new capacity, a config interrupt; fixed keys are refused. */
static void test_reconfigure_resize(void **state)
{
	struct rig *r = *state;
	uint8_t *h;

	assert_int_equal(rig_start(r, ALL_RING | BLK_ALL, 1), 0);
	uint32_t gen = vdrv_read32(&r->drv, 0x0fc);
	uint64_t gpa = scratch_alloc(r, 4096, 4096, (void **)&h);

	assert_int_equal(do_rw(r, true, IMG_SIZE / 512, gpa, 4096), VIRTIO_BLK_S_IOERR);
	assert_int_equal(truncate(r->image, 2 * IMG_SIZE), 0);
	vdrv_direct_take_irqs(&r->x);
	assert_int_equal(r->x.dev->ops->reconfigure(r->x.dev, &r->cfg), 0);
	assert_int_equal(cfg_read(r, VIRTIO_BLK_CFG_CAPACITY, 8), 2 * IMG_SIZE / 512);
	assert_int_not_equal(vdrv_read32(&r->drv, 0x0fc), gen);
	assert_true(vdrv_direct_take_irqs(&r->x) >= 1);
	assert_true(vdrv_read32(&r->drv, R_INT_STATUS) & VIRTIO_MMIO_INT_CONFIG);
	vdrv_write32(&r->drv, R_INT_ACK, VIRTIO_MMIO_INT_CONFIG);
	fill_pat(h, IMG_SIZE, 4096, 37);
	assert_int_equal(do_rw(r, true, IMG_SIZE / 512, gpa, 4096), VIRTIO_BLK_S_OK);
	assert_image_pat(r, IMG_SIZE, 4096, 37);
	/* Unchanged size: no interrupt. A changed cache mode: refused, nothing changes. */
	assert_int_equal(r->x.dev->ops->reconfigure(r->x.dev, &r->cfg), 0);
	assert_int_equal(vdrv_direct_take_irqs(&r->x), 0);
	r->cfg.u.block.cache = BLK_CACHE_NONE;
	assert_int_equal(truncate(r->image, IMG_SIZE), 0);
	assert_int_equal(r->x.dev->ops->reconfigure(r->x.dev, &r->cfg), -EINVAL);
	assert_int_equal(cfg_read(r, VIRTIO_BLK_CFG_CAPACITY, 8), 2 * IMG_SIZE / 512);
}

static void test_read_only(void **state)
{
	struct rig *r = *state;
	uint8_t *h;

	r->cfg.u.block.readonly = true;
	assert_int_equal(rig_start(r, ALL_RING | BLK_ALL, 1), 0);
	assert_true(r->drv.features & VIRTIO_BIT(VIRTIO_BLK_F_RO));
	assert_false(r->drv.device_features & VIRTIO_BIT(VIRTIO_BLK_F_DISCARD));
	uint64_t gpa = ram_alloc(r, 4096, 512, (void **)&h);

	memset(h, 0x77, 4096);
	assert_int_equal(do_rw(r, true, 0, gpa, 4096), VIRTIO_BLK_S_IOERR);
	assert_image_zero(r, 0, 4096);
	assert_int_equal(do_rw(r, false, 0, gpa, 4096), VIRTIO_BLK_S_OK);
	for (int i = 0; i < 4096; i++)
		assert_int_equal(h[i], 0);
	assert_int_equal(do_dwz(r, VIRTIO_BLK_T_DISCARD, 0, 8, 0), VIRTIO_BLK_S_UNSUPP);
	assert_int_equal(do_req(r, VIRTIO_BLK_T_FLUSH, 0, NULL, 0, NULL), VIRTIO_BLK_S_OK);
}

static void test_out_of_range(void **state)
{
	struct rig *r = *state;
	const uint64_t cap = IMG_SIZE / 512;
	uint8_t *h;

	assert_int_equal(rig_start(r, ALL_RING | BLK_ALL, 1), 0);
	uint64_t gpa = ram_alloc(r, 4096, 512, (void **)&h);

	memset(h, 0x77, 4096);
	assert_int_equal(do_rw(r, true, cap - 8, gpa, 4096), VIRTIO_BLK_S_OK);   /* last 4 KiB */
	assert_int_equal(do_rw(r, true, cap - 7, gpa, 4096), VIRTIO_BLK_S_IOERR);
	assert_int_equal(do_rw(r, true, cap, gpa, 512), VIRTIO_BLK_S_IOERR);
	assert_int_equal(do_rw(r, false, cap, gpa, 512), VIRTIO_BLK_S_IOERR);
	assert_int_equal(do_rw(r, false, UINT64_MAX, gpa, 512), VIRTIO_BLK_S_IOERR);
	assert_int_equal(do_rw(r, true, UINT64_MAX / 512, gpa, 4096), VIRTIO_BLK_S_IOERR);
	assert_int_equal(do_rw(r, true, 0, gpa, 100), VIRTIO_BLK_S_IOERR);   /* not sectors */
	assert_int_equal(do_dwz(r, VIRTIO_BLK_T_WRITE_ZEROES, cap - 1, 2, 0), VIRTIO_BLK_S_IOERR);
	assert_int_equal(do_dwz(r, VIRTIO_BLK_T_DISCARD, UINT64_MAX, 1, 0), VIRTIO_BLK_S_IOERR);
	/* Nothing but the one valid write reached the image; the file did not grow. */
	assert_image_zero(r, 0, 4096);
	struct stat sb;

	assert_int_equal(fstat(r->img, &sb), 0);
	assert_int_equal(sb.st_size, IMG_SIZE);
	assert_true(vdev_active(r->x.dev));
}

static void test_malformed(void **state)
{
	struct rig *r = *state;
	struct req q;
	uint8_t *p, *st;

	assert_int_equal(rig_start(r, ALL_RING | BLK_ALL, 1), 0);
	/* An 8-byte header. */
	uint64_t hdr = ram_alloc(r, 16, 16, (void **)&p);
	uint64_t sgpa = ram_alloc(r, 1, 1, (void **)&st);

	memset(p, 0, 16);
	*st = 0xee;
	struct vdrv_buf b2[2] = { { hdr, 8, false }, { sgpa, 1, true } };

	assert_true(vdrv_submit(&r->drv, 0, b2, 2, false, &q) >= 0);
	vdrv_kick(&r->drv, 0);
	q.done = false;
	wait_done(r, 0, 1);
	assert_int_equal(*st, VIRTIO_BLK_S_IOERR);
	/* A header split over two descriptors is valid. */
	struct vdrv_buf b3[4];
	uint8_t *data;

	*st = 0xee;
	b3[0] = (struct vdrv_buf){ hdr, 8, false };
	b3[1] = (struct vdrv_buf){ hdr + 8, 8, false };
	b3[2] = (struct vdrv_buf){ ram_alloc(r, 512, 512, (void **)&data), 512, true };
	b3[3] = (struct vdrv_buf){ sgpa, 1, true };
	assert_true(vdrv_submit(&r->drv, 0, b3, 4, true, &q) >= 0);
	vdrv_kick(&r->drv, 0);
	q.done = false;
	wait_done(r, 0, 1);
	assert_int_equal(*st, VIRTIO_BLK_S_OK);
	assert_int_equal(q.used_len, 513);
	/* Unknown types, and discard flags it must refuse. */
	assert_int_equal(do_req(r, 99, 0, NULL, 0, NULL), VIRTIO_BLK_S_UNSUPP);
	assert_int_equal(do_req(r, 0x80000001u, 0, NULL, 0, NULL), VIRTIO_BLK_S_UNSUPP);
	assert_int_equal(do_dwz(r, VIRTIO_BLK_T_DISCARD, 0, 8, VIRTIO_BLK_DWZ_F_UNMAP),
			 VIRTIO_BLK_S_UNSUPP);
	assert_int_equal(do_dwz(r, VIRTIO_BLK_T_WRITE_ZEROES, 0, 8, 2), VIRTIO_BLK_S_UNSUPP);
	assert_int_equal(do_dwz(r, VIRTIO_BLK_T_WRITE_ZEROES, 0, (1u << 22) + 1, 0),
			 VIRTIO_BLK_S_IOERR);
	/* A discard with two segments (we advertise one) and with a truncated one. */
	struct virtio_blk_dwz_seg *s;
	struct vdrv_buf seg = { ram_alloc(r, 32, 16, (void **)&s), 32, false };

	memset(s, 0, 32);
	s[0].num_sectors = s[1].num_sectors = htole32(8);
	assert_int_equal(do_req(r, VIRTIO_BLK_T_DISCARD, 0, &seg, 1, NULL), VIRTIO_BLK_S_UNSUPP);
	seg.len = 10;
	assert_int_equal(do_req(r, VIRTIO_BLK_T_DISCARD, 0, &seg, 1, NULL), VIRTIO_BLK_S_IOERR);
	assert_true(vdev_active(r->x.dev));
	assert_int_equal(blk_get_stats(r->x.dev)->inflight, 0);
}

/* A chain with no writable byte cannot carry a status: the device asks for a reset. */
static void test_no_status_byte(void **state)
{
	struct rig *r = *state;
	struct virtio_blk_outhdr *h;
	struct req q = { 0 };

	assert_int_equal(rig_start(r, ALL_RING | BLK_ALL, 1), 0);
	struct vdrv_buf b = { ram_alloc(r, 16, 16, (void **)&h), 16, false };

	memset(h, 0, sizeof(*h));
	assert_true(vdrv_submit(&r->drv, 0, &b, 1, false, &q) >= 0);
	vdrv_kick(&r->drv, 0);
	wait_done(r, 0, 1);
	assert_int_equal(q.used_len, 0);
	assert_true(vdrv_status(&r->drv) & VIRTIO_STATUS_NEEDS_RESET);
	assert_false(vdev_active(r->x.dev));
	/* After a reset the device serves again. */
	vdrv_reset(&r->drv);
	assert_int_equal(vdrv_init(&r->drv, &r->x.io, &r->x.mem, ALL_RING | BLK_ALL, 1, 1024), 0);
	assert_int_equal(do_req(r, VIRTIO_BLK_T_FLUSH, 0, NULL, 0, NULL), VIRTIO_BLK_S_OK);
}

static void test_discard_write_zeroes(void **state)
{
	struct rig *r = *state;
	struct stat sb0, sb1;
	uint8_t *h;

	assert_int_equal(rig_start(r, ALL_RING | BLK_ALL, 1), 0);
	uint64_t gpa = ram_alloc(r, 1u << 20, 4096, (void **)&h);

	fill_pat(h, 0, 1u << 20, 5);
	assert_int_equal(do_rw(r, true, 0, gpa, 1u << 20), VIRTIO_BLK_S_OK);
	assert_int_equal(do_req(r, VIRTIO_BLK_T_FLUSH, 0, NULL, 0, NULL), VIRTIO_BLK_S_OK);
	assert_int_equal(fstat(r->img, &sb0), 0);
	/* Discard 64 KiB at 64 KiB: a hole, zeroes, fewer blocks. */
	assert_int_equal(do_dwz(r, VIRTIO_BLK_T_DISCARD, 128, 128, 0), VIRTIO_BLK_S_OK);
	assert_image_zero(r, 65536, 65536);
	assert_image_pat(r, 0, 65536, 5);
	assert_image_pat(r, 131072, 65536, 5);
	assert_int_equal(fstat(r->img, &sb1), 0);
	assert_true(sb1.st_blocks < sb0.st_blocks);
	/* Write zeroes without and with UNMAP, with odd sector counts. */
	assert_int_equal(do_dwz(r, VIRTIO_BLK_T_WRITE_ZEROES, 512, 3, 0), VIRTIO_BLK_S_OK);
	assert_image_zero(r, 512 * 512, 3 * 512);
	assert_image_pat(r, 515 * 512, 512, 5);
	assert_image_pat(r, 511 * 512, 512, 5);
	assert_int_equal(do_dwz(r, VIRTIO_BLK_T_WRITE_ZEROES, 1024, 256, VIRTIO_BLK_DWZ_F_UNMAP),
			 VIRTIO_BLK_S_OK);
	assert_image_zero(r, 1024 * 512, 256 * 512);
	assert_image_pat(r, 1280 * 512, 512, 5);
	/* A zero-length one is a no-op. */
	assert_int_equal(do_dwz(r, VIRTIO_BLK_T_WRITE_ZEROES, 0, 0, 0), VIRTIO_BLK_S_OK);
	assert_image_pat(r, 0, 512, 5);
	/* The guest reads the zeroes back too. */
	memset(h, 0xff, 65536);
	assert_int_equal(do_rw(r, false, 128, gpa, 65536), VIRTIO_BLK_S_OK);
	for (int i = 0; i < 65536; i++)
		assert_int_equal(h[i], 0);
}

/* Dirty page-cache pages of the image range, via cachestat(2); -1 when the kernel lacks it. */
static long dirty_pages(struct rig *r, uint64_t off, uint64_t len)
{
	struct { uint64_t off, len; } range = { off, len };
	struct { uint64_t cache, dirty, writeback, evicted, recently_evicted; } cs;

#ifndef SYS_cachestat
#define SYS_cachestat 451
#endif
	if (syscall(SYS_cachestat, r->img, &range, &cs, 0) < 0)
		return -1;
	return (long)(cs.dirty + cs.writeback);
}

/*
 * Writeback leaves dirty pages (unless the kernel's flusher got there first: then only noted);
 * FLUSH and writethrough (WCE = 0) must leave none.
 */
static void expect_dirty(struct rig *r, uint64_t off, uint64_t len)
{
	if (dirty_pages(r, off, len) == 0)
		print_message("[  NOTE    ] pages already written back by the kernel\n");
}

/* Writeback leaves dirty pages until FLUSH; writethrough (WCE = 0) leaves none. */
static void test_flush_and_wce(void **state)
{
	struct rig *r = *state;
	uint8_t *h;

	assert_int_equal(rig_start(r, ALL_RING | BLK_ALL, 1), 0);
	if (dirty_pages(r, 0, 4096) < 0)
		skip();
	uint64_t gpa = ram_alloc(r, 65536, 4096, (void **)&h);

	fill_pat(h, 0, 65536, 7);
	assert_int_equal(do_rw(r, true, 0, gpa, 65536), VIRTIO_BLK_S_OK);
	expect_dirty(r, 0, 65536);
	assert_int_equal(do_req(r, VIRTIO_BLK_T_FLUSH, 0, NULL, 0, NULL), VIRTIO_BLK_S_OK);
	assert_int_equal(dirty_pages(r, 0, 65536), 0);
	/* No write was in flight: the flush did not hold up the ring. */
	assert_int_equal(blk_get_stats(r->x.dev)->drains, 0);
	/* The driver switches to writethrough. */
	vmmio_write(r->x.dev, VIRTIO_MMIO_CONFIG + VIRTIO_BLK_CFG_WRITEBACK, 1, 0);
	assert_int_equal(cfg_read(r, VIRTIO_BLK_CFG_WRITEBACK, 1), 0);
	fill_pat(h, 1024 * 512, 65536, 7);
	assert_int_equal(do_rw(r, true, 1024, gpa, 65536), VIRTIO_BLK_S_OK);
	assert_int_equal(dirty_pages(r, 1024 * 512, 65536), 0);
	assert_image_pat(r, 1024 * 512, 65536, 7) ;
	/* And back. */
	vmmio_write(r->x.dev, VIRTIO_MMIO_CONFIG + VIRTIO_BLK_CFG_WRITEBACK, 1, 1);
	assert_int_equal(do_rw(r, true, 2048, gpa, 65536), VIRTIO_BLK_S_OK);
	expect_dirty(r, 2048 * 512, 65536);
	/* Other config fields are read-only. */
	vmmio_write(r->x.dev, VIRTIO_MMIO_CONFIG + VIRTIO_BLK_CFG_CAPACITY, 4, 1);
	assert_int_equal(cfg_read(r, VIRTIO_BLK_CFG_CAPACITY, 8), IMG_SIZE / 512);
	/* A reset restores writeback. */
	vdrv_reset(&r->drv);
	assert_int_equal(vdrv_init(&r->drv, &r->x.io, &r->x.mem, ALL_RING | BLK_ALL, 1, 1024), 0);
	assert_int_equal(cfg_read(r, VIRTIO_BLK_CFG_WRITEBACK, 1), 1);
}

/* Without FLUSH negotiated, the device has to be writethrough. */
static void test_no_flush_is_writethrough(void **state)
{
	struct rig *r = *state;
	uint8_t *h;

	assert_int_equal(rig_start(r, ALL_RING | (BLK_ALL & ~VIRTIO_BIT(VIRTIO_BLK_F_FLUSH)), 1),
			 0);
	if (dirty_pages(r, 0, 4096) < 0)
		skip();
	uint64_t gpa = ram_alloc(r, 65536, 4096, (void **)&h);

	fill_pat(h, 0, 65536, 8);
	assert_int_equal(do_rw(r, true, 0, gpa, 65536), VIRTIO_BLK_S_OK);
	assert_int_equal(dirty_pages(r, 0, 65536), 0);
}

/*
 * Writes, then a FLUSH, in one batch: the FLUSH completes after every write before it. With
 * cache = none the writes are truly asynchronous, so a FLUSH that did not wait would overtake.
 */
static void flush_ordering(struct rig *r, enum config_blk_cache cache, uint32_t len)
{
	struct req w[32], f, after;
	unsigned order = 0, flush_pos = 0, last_write = 0;

	/* Allocated blocks: O_DIRECT writes then go straight to the disk, asynchronously. */
	int fd = open(r->image, O_RDWR);

	assert_true(fd >= 0);
	assert_int_equal(fallocate(fd, 0, 0, IMG_SIZE), 0);
	close(fd);
	r->cfg.u.block.cache = cache;
	assert_int_equal(rig_start(r, ALL_RING | BLK_ALL, 1), 0);
	for (int i = 0; i < 32; i++) {
		uint8_t *h;
		struct vdrv_buf d = { scratch_alloc(r, len, 4096, (void **)&h), len, false };

		fill_pat(h, (uint64_t)i * len, len, 11);
		req_build(r, &w[i], VIRTIO_BLK_T_OUT, (uint64_t)i * (len / 512), &d, 1);
		req_submit(r, 0, &w[i], i % 2);
	}
	req_build(r, &f, VIRTIO_BLK_T_FLUSH, 0, NULL, 0);
	req_submit(r, 0, &f, false);
	req_build(r, &after, VIRTIO_BLK_T_GET_ID, 0, NULL, 0);
	req_submit(r, 0, &after, false);
	vdrv_kick(&r->drv, 0);
	/* Record completion order. */
	for (unsigned got = 0, waited = 0; got < 34; waited += 10) {
		uint32_t ulen;
		void *tok;

		while (vdrv_get_used(&r->drv, 0, &ulen, &tok) > 0) {
			struct req *q = tok;

			q->done = true;
			got++;
			order++;
			if (q == &f)
				flush_pos = order;
			else if (q != &after)
				last_write = order;
		}
		assert_true(waited < TIMEOUT_MS);
		if (got < 34)
			r->x.io.wait_irq(&r->x.io, 10);
	}
	assert_int_equal(req_status(r, &f), VIRTIO_BLK_S_OK);
	assert_int_equal(blk_get_stats(r->x.dev)->drains, 1);
	assert_true(flush_pos > last_write);
	for (int i = 0; i < 32; i++) {
		assert_int_equal(req_status(r, &w[i]), VIRTIO_BLK_S_OK);
		assert_image_pat(r, (uint64_t)i * len, len, 11);
	}
	if (dirty_pages(r, 0, 32ull * len) >= 0)
		assert_int_equal(dirty_pages(r, 0, 32ull * len), 0);
}

static void test_flush_ordering(void **state)
{
	flush_ordering(*state, BLK_CACHE_WRITEBACK, 65536);
}

static void test_flush_ordering_direct(void **state)
{
	flush_ordering(*state, BLK_CACHE_NONE, 512u << 10);
}

static void test_multiqueue(void **state)
{
	struct rig *r = *state;
	struct req q[4];

	r->cfg.u.block.queues = 4;
	assert_int_equal(rig_start(r, ALL_RING | BLK_ALL, 4), 0);
	assert_int_equal(r->drv.nqueues, 4);
	for (unsigned i = 0; i < 4; i++) {
		uint8_t *h;
		struct vdrv_buf d = { ram_alloc(r, 8192, 512, (void **)&h), 8192, false };

		fill_pat(h, i * 8192u, 8192, 13);
		req_build(r, &q[i], VIRTIO_BLK_T_OUT, i * 16u, &d, 1);
		req_submit(r, i, &q[i], false);
		vdrv_kick(&r->drv, i);
	}
	for (unsigned i = 0; i < 4; i++) {
		wait_done(r, i, 1);
		assert_int_equal(req_status(r, &q[i]), VIRTIO_BLK_S_OK);
	}
	assert_image_pat(r, 0, 4 * 8192, 13);
}

/*
 * A chain added while another is in flight is taken when that one completes, even before (here:
 * without) its kick; an idle queue asks for a kick again (avail_event at the driver's next index).
 */
static void test_chain_taken_at_completion(void **state)
{
	struct rig *r = *state;
	struct req a, b2;
	uint8_t *h;

	/* O_DIRECT: the first read must be in the kernel, never done inline from the cache. */
	r->cfg.u.block.cache = BLK_CACHE_NONE;
	assert_int_equal(rig_start(r, ALL_RING | BLK_ALL, 1), 0);
	struct vdrv_buf da = { scratch_alloc(r, 1u << 20, 4096, (void **)&h), 1u << 20, true };
	struct vdrv_buf db = { scratch_alloc(r, 4096, 4096, (void **)&h), 4096, true };

	req_build(r, &a, VIRTIO_BLK_T_IN, 0, &da, 1);
	req_submit(r, 0, &a, false);
	vdrv_kick(&r->drv, 0);
	assert_int_equal(blk_get_stats(r->x.dev)->inflight, 1);
	struct vdrv_vq *vq = &r->drv.vq[0];

	req_build(r, &b2, VIRTIO_BLK_T_IN, 2048, &db, 1);
	req_submit(r, 0, &b2, false);
	wait_done(r, 0, 2);
	assert_int_equal(req_status(r, &a), VIRTIO_BLK_S_OK);
	assert_int_equal(req_status(r, &b2), VIRTIO_BLK_S_OK);
	/* Idle again: the next chain must be kicked. */
	assert_int_equal(vring_avail_event(vq->used, vq->num), vq->avail_idx);
}

/*
 * Reset with 128 large requests in flight: the reset returns only when the kernel is done with
 * the guest's buffers, and the device never writes the used ring (or a status) afterwards.
 */
static void test_reset_in_flight(void **state)
{
	struct rig *r = *state;
	struct req *reqs = calloc(128, sizeof(*reqs));
	const struct blk_stats *st;

	assert_int_equal(rig_start(r, ALL_RING | BLK_ALL, 1), 0);
	st = blk_get_stats(r->x.dev);
	for (unsigned i = 0; i < 128; i++) {
		uint8_t *h;
		struct vdrv_buf d = { ram_alloc(r, 131072, 4096, (void **)&h), 131072, i % 2 };

		memset(h, 0x33, 131072);
		req_build(r, &reqs[i], i % 2 ? VIRTIO_BLK_T_IN : VIRTIO_BLK_T_OUT,
			  (i % 96) * 256u, &d, 1);
		req_submit(r, 0, &reqs[i], true);
	}
	struct vring_used *used = r->drv.vq[0].used;

	vdrv_kick(&r->drv, 0);
	assert_true(st->inflight > 0);
	vdrv_write32(&r->drv, R_STATUS, 0);
	/* The write was held (the loop ran meanwhile) and released once the I/O was back. */
	assert_int_equal(r->x.held, 1);
	assert_int_equal(r->x.released, 1);
	assert_int_equal(st->inflight, 0);
	assert_int_equal(used->idx, 0);
	for (unsigned i = 0; i < 128; i++)
		assert_int_equal(req_status(r, &reqs[i]), 0xee);
	/* Nothing arrives later either. */
	for (int i = 0; i < 10; i++)
		ev_run(r->loop, EVRUN_NOWAIT);
	assert_int_equal(used->idx, 0);
	assert_int_equal(gmem_flat_outstanding(r->x.gm), 0);
	free(reqs);
	/* The device works after the reset. */
	assert_int_equal(vdrv_init(&r->drv, &r->x.io, &r->x.mem, ALL_RING | BLK_ALL, 1, 1024), 0);
	rw_round(r, 8, true, 21, 0);
	rw_round(r, 8, false, 21, 0);
}

/*
 * The driver's reset does not block the loop: the Status write is answered later (VMMIO_LATER),
 * Status reads 0 meanwhile, another vCPU's writes are ignored, and the reset completes, its
 * access released once, when the kernel gave every request back.
 */
static void test_reset_waits_without_blocking(void **state)
{
	struct rig *r = *state;
	struct req reqs[16];
	const struct blk_stats *st;
	struct vring_used *used;

	assert_int_equal(rig_start(r, ALL_RING | BLK_ALL, 1), 0);
	st = blk_get_stats(r->x.dev);
	for (unsigned i = 0; i < 16; i++) {
		struct vdrv_buf d = { ram_alloc(r, 131072, 4096, NULL), 131072, true };

		req_build(r, &reqs[i], VIRTIO_BLK_T_IN, i * 256u, &d, 1);
		req_submit(r, 0, &reqs[i], true);
	}
	used = r->drv.vq[0].used;
	vdrv_kick(&r->drv, 0);
	assert_true(st->inflight > 0);
	assert_int_equal(vmmio_write(r->x.dev, R_STATUS, 4, 0), VMMIO_LATER);
	assert_int_equal(vmmio_read(r->x.dev, R_STATUS, 4), 0);
	assert_int_equal(vmmio_write(r->x.dev, R_STATUS, 4, 1), 0);   /* ignored */
	assert_int_equal(vmmio_read(r->x.dev, R_STATUS, 4), 0);
	assert_int_equal(r->x.released, 0);
	for (int i = 0; i < 2000 && r->x.released == 0; i++)
		ev_run(r->loop, EVRUN_ONCE);
	assert_int_equal(r->x.released, 1);
	assert_int_equal(st->inflight, 0);
	assert_int_equal(used->idx, 0);
	for (unsigned i = 0; i < 16; i++)
		assert_int_equal(req_status(r, &reqs[i]), 0xee);
	/* The device works after the reset. */
	assert_int_equal(vdrv_init(&r->drv, &r->x.io, &r->x.mem, ALL_RING | BLK_ALL, 1, 1024), 0);
	rw_round(r, 8, true, 21, 0);
	rw_round(r, 8, false, 21, 0);
	assert_int_equal(r->x.released, 1);
}

static void test_refuses_bad_paths(void **state)
{
	struct rig *r = *state;
	struct vdrv_direct x;
	char dir[128];

	snprintf(r->cfg.u.block.path, sizeof(r->cfg.u.block.path), "%s/missing.img", tmpdir);
	assert_int_equal(vdrv_direct_open(&x, &r->cfg, RAM_GPA, RAM_SIZE, NULL), -EINVAL);
	struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);

	assert_int_equal(vdrv_direct_open(&x, &r->cfg, RAM_GPA, RAM_SIZE, loop), -ENOENT);
	snprintf(dir, sizeof(dir), "%s", tmpdir);
	snprintf(r->cfg.u.block.path, sizeof(r->cfg.u.block.path), "%s", dir);
	assert_int_equal(vdrv_direct_open(&x, &r->cfg, RAM_GPA, RAM_SIZE, loop), -EINVAL);
	snprintf(r->cfg.u.block.path, sizeof(r->cfg.u.block.path), "/dev/null");
	assert_int_equal(vdrv_direct_open(&x, &r->cfg, RAM_GPA, RAM_SIZE, loop), -EINVAL);
	r->cfg.u.block.path[0] = 0;
	assert_int_equal(vdrv_direct_open(&x, &r->cfg, RAM_GPA, RAM_SIZE, loop), -EINVAL);
	snprintf(r->cfg.u.block.path, sizeof(r->cfg.u.block.path), "%s/disk.img", tmpdir);
	r->cfg.u.block.queue_size = 100;
	assert_int_equal(vdrv_direct_open(&x, &r->cfg, RAM_GPA, RAM_SIZE, loop), -EINVAL);
	ev_loop_destroy(loop);
}

/* ---- block devices and small file systems (need root and a private mount namespace) ------ */

static int run(const char *cmd)
{
	int rc = system(cmd);

	return WIFEXITED(rc) ? WEXITSTATUS(rc) : -1;
}

/* A loop device over file with the given logical sector size, or "" when impossible. */
static void loop_attach(const char *file, unsigned ssize, char *dev, size_t devlen)
{
	char cmd[512];
	FILE *p;

	dev[0] = 0;
	snprintf(cmd, sizeof(cmd), "losetup --find --show --sector-size %u %s 2>/dev/null", ssize,
		 file);
	p = popen(cmd, "r");
	if (!p)
		return;
	if (!fgets(dev, (int)devlen, p))
		dev[0] = 0;
	pclose(p);
	dev[strcspn(dev, "\n")] = 0;
}

static void loop_detach(const char *dev)
{
	char cmd[128];

	snprintf(cmd, sizeof(cmd), "losetup -d %s", dev);
	run(cmd);
}

static void test_block_device(void **state)
{
	struct rig *r = *state;
	char dev[64], back[128];
	uint8_t *h;

	snprintf(back, sizeof(back), "%s/loop4k.img", tmpdir);
	make_image(back, 8u << 20);
	loop_attach(back, 4096, dev, sizeof(dev));
	snprintf(r->loopdev, sizeof(r->loopdev), "%s", dev);
	if (!dev[0]) {
		print_message("[  SKIP    ] no loop device available\n");
		unlink(back);
		skip();
	}
	snprintf(r->cfg.u.block.path, sizeof(r->cfg.u.block.path), "%s", dev);
	r->cfg.u.block.cache = BLK_CACHE_NONE;
	assert_int_equal(rig_start(r, ALL_RING | BLK_ALL, 1), 0);
	assert_int_equal(cfg_read(r, VIRTIO_BLK_CFG_CAPACITY, 8), (8u << 20) / 512);
	assert_int_equal(cfg_read(r, VIRTIO_BLK_CFG_BLK_SIZE, 4), 4096);
	uint64_t gpa = ram_alloc(r, 65536, 4096, (void **)&h);

	fill_pat(h, 4096, 65536, 17);
	assert_int_equal(do_rw(r, true, 8, gpa, 65536), VIRTIO_BLK_S_OK);
	assert_int_equal(do_req(r, VIRTIO_BLK_T_FLUSH, 0, NULL, 0, NULL), VIRTIO_BLK_S_OK);
	memset(h, 0, 65536);
	assert_int_equal(do_rw(r, false, 8, gpa, 65536), VIRTIO_BLK_S_OK);
	for (uint32_t i = 0; i < 65536; i++)
		assert_int_equal(h[i], pat(4096 + i, 17));
	/* Misaligned for a 4 KiB device: refused without touching it. */
	assert_int_equal(do_rw(r, true, 1, gpa, 4096), VIRTIO_BLK_S_IOERR);
	assert_int_equal(do_dwz(r, VIRTIO_BLK_T_WRITE_ZEROES, 8, 8, 0), VIRTIO_BLK_S_OK);
	memset(h, 0xff, 4096);
	assert_int_equal(do_rw(r, false, 8, gpa, 4096), VIRTIO_BLK_S_OK);
	for (uint32_t i = 0; i < 4096; i++)
		assert_int_equal(h[i], 0);
	assert_int_equal(do_dwz(r, VIRTIO_BLK_T_DISCARD, 16, 16, 0), VIRTIO_BLK_S_OK);
	rig_stop(r);
	/* The same device mounted: refused. */
	char mnt[128], cmd[384];

	snprintf(mnt, sizeof(mnt), "%s/mnt", tmpdir);
	mkdir(mnt, 0700);
	snprintf(cmd, sizeof(cmd), "mkfs.ext4 -q -F %s >/dev/null 2>&1 && mount %s %s", dev, dev,
		 mnt);
	if (private_mounts && run(cmd) == 0) {
		struct vdrv_direct x;
		struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);

		assert_int_equal(vdrv_direct_open(&x, &r->cfg, RAM_GPA, RAM_SIZE, loop), -EBUSY);
		ev_loop_destroy(loop);
		assert_int_equal(umount(mnt), 0);
	} else {
		print_message("[  NOTE    ] cannot mount %s: mounted-device refusal not tested\n",
			      dev);
	}
	rmdir(mnt);
	loop_detach(dev);
	r->loopdev[0] = 0;
	unlink(back);
}

/* A tmpfs of `size` ("1m") at tmpdir/name, unmounted at teardown; skips the test without one. */
static void mount_tmpfs(struct rig *r, const char *name, const char *size, char *mnt, size_t len)
{
	char opts[32];

	snprintf(mnt, len, "%s/%s", tmpdir, name);
	snprintf(opts, sizeof(opts), "size=%s", size);
	mkdir(mnt, 0700);
	if (!private_mounts || mount("tmpfs", mnt, "tmpfs", 0, opts) < 0) {
		print_message("[  SKIP    ] cannot mount a tmpfs of %s\n", size);
		rmdir(mnt);
		skip();
	}
	snprintf(r->mnt, sizeof(r->mnt), "%s", mnt);
}

/* An image on a 1 MiB tmpfs: writes past the space get IOERR, the device carries on. */
static void test_enospc(void **state)
{
	struct rig *r = *state;
	char mnt[128], img[160];
	uint8_t *h;

	mount_tmpfs(r, "small", "1m", mnt, sizeof(mnt));
	snprintf(img, sizeof(img), "%s/full.img", mnt);
	make_image(img, 8u << 20);   /* sparse: 8 MiB of disk on 1 MiB of space */
	snprintf(r->cfg.u.block.path, sizeof(r->cfg.u.block.path), "%s", img);
	assert_int_equal(rig_start(r, ALL_RING | BLK_ALL, 1), 0);
	uint64_t gpa = ram_alloc(r, 262144, 4096, (void **)&h);
	int ioerr = 0;

	fill_pat(h, 0, 262144, 19);
	for (unsigned i = 0; i < 8; i++) {
		uint8_t s = do_rw(r, true, i * 512u, gpa, 262144);

		assert_true(s == VIRTIO_BLK_S_OK || s == VIRTIO_BLK_S_IOERR);
		ioerr += s == VIRTIO_BLK_S_IOERR;
	}
	assert_true(ioerr >= 4);
	assert_true(blk_get_stats(r->x.dev)->errors >= 4);
	assert_true(vdev_active(r->x.dev));
	/* Discard frees space (tmpfs punches holes); write-zeroes falls back to punching. */
	assert_int_equal(do_dwz(r, VIRTIO_BLK_T_DISCARD, 0, 2048, 0), VIRTIO_BLK_S_OK);
	fill_pat(h, 7 * 512u * 512, 262144, 19);
	assert_int_equal(do_rw(r, true, 7 * 512u, gpa, 262144), VIRTIO_BLK_S_OK);
	assert_int_equal(do_dwz(r, VIRTIO_BLK_T_WRITE_ZEROES, 7 * 512u, 8, 0), VIRTIO_BLK_S_OK);
	assert_image_zero(r, 7 * 512u * 512, 4096);
	assert_image_pat(r, 7 * 512u * 512 + 4096, 4096, 19);
	rig_stop(r);
	umount2(mnt, MNT_DETACH);
	rmdir(mnt);
	r->mnt[0] = 0;
}

/* The guest buffer's len bytes hold generation gen of the pattern at disk offset off. */
static void assert_buf_pat(const uint8_t *h, uint64_t off, uint32_t len, unsigned gen)
{
	for (uint32_t i = 0; i < len; i++)
		if (h[i] != pat(off + i, gen))
			fail_msg("guest byte %u is %#x, want %#x", i, h[i], pat(off + i, gen));
}

/* Read len bytes at disk offset off into the cleared guest buffer h (gpa): pattern gen, OK. */
static void read_back(struct rig *r, uint64_t off, uint64_t gpa, uint8_t *h, uint32_t len,
		      unsigned gen)
{
	memset(h, 0, len);
	assert_int_equal(do_rw(r, false, off / 512, gpa, len), VIRTIO_BLK_S_OK);
	assert_buf_pat(h, off, len, gen);
}

/*
 * A lone buffered read whose pages are cached is done inline (RWF_NOWAIT, no io_uring); one that
 * would block (its pages dropped from the cache) goes to io_uring and completes all the same.
 */
static void test_inline_nowait(void **state)
{
	struct rig *r = *state;
	const uint64_t off = 1u << 20;
	uint8_t *h;

	assert_int_equal(rig_start(r, ALL_RING | BLK_ALL, 1), 0);
	const struct blk_stats *st = blk_get_stats(r->x.dev);
	uint64_t gpa = scratch_alloc(r, 65536, 4096, (void **)&h);

	fill_pat(h, off, 65536, 29);
	assert_int_equal(do_rw(r, true, off / 512, gpa, 65536), VIRTIO_BLK_S_OK);
	assert_image_pat(r, off, 65536, 29);      /* and now in the page cache */
	uint64_t done = st->inline_done, submits = st->submits, punted = st->inline_punted;

	read_back(r, off, gpa, h, 65536, 29);
	if (st->nowait_off & BLK_NOWAIT_READ) {
		print_message("[  SKIP    ] %s refuses RWF_NOWAIT reads\n", tmpdir);
		skip();
	}
	assert_int_equal(st->inline_done, done + 1);
	assert_int_equal(st->submits, submits);
	/* Out of the cache: RWF_NOWAIT says EAGAIN, io_uring reads it from the disk. */
	assert_int_equal(fdatasync(r->img), 0);
	assert_int_equal(posix_fadvise(r->img, (off_t)off, 65536, POSIX_FADV_DONTNEED), 0);
	read_back(r, off, gpa, h, 65536, 29);
	assert_int_equal(st->inline_punted, punted + 1);
	assert_int_equal(st->submits, submits + 1);
	assert_int_equal(st->inline_done, done + 1);
	/* After a miss the next lone request skips the try (back-off); the one after hits. */
	read_back(r, off, gpa, h, 65536, 29);
	read_back(r, off, gpa, h, 65536, 29);
	assert_int_equal(st->submits, submits + 2);
	assert_int_equal(st->inline_done, done + 2);
	assert_int_equal(st->inline_punted, punted + 1);
	assert_int_equal(st->errors, 0);
}

/*
 * A backend that refuses RWF_NOWAIT (EOPNOTSUPP; tmpfs on the kernels we run) serves every
 * request through io_uring, correctly, and is not asked again for that direction.
 */
static void test_inline_nowait_unsupported(void **state)
{
	struct rig *r = *state;
	char mnt[128], img[160];
	uint8_t *h, probe[512];
	struct iovec iov = { probe, sizeof(probe) };

	mount_tmpfs(r, "nowait", "16m", mnt, sizeof(mnt));
	snprintf(img, sizeof(img), "%s/disk.img", mnt);
	make_image(img, 8u << 20);
	int fd = open(img, O_RDONLY);

	assert_true(fd >= 0);
	ssize_t n = preadv2(fd, &iov, 1, 0, RWF_NOWAIT);
	int err = errno;

	close(fd);
	if (n >= 0 || err != EOPNOTSUPP) {
		print_message("[  SKIP    ] this kernel's tmpfs takes RWF_NOWAIT\n");
		skip();
	}
	snprintf(r->cfg.u.block.path, sizeof(r->cfg.u.block.path), "%s", img);
	assert_int_equal(rig_start(r, ALL_RING | BLK_ALL, 1), 0);
	const struct blk_stats *st = blk_get_stats(r->x.dev);
	uint64_t gpa = scratch_alloc(r, 65536, 4096, (void **)&h);

	for (unsigned round = 0; round < 2; round++) {
		fill_pat(h, 4096, 65536, 31 + round);
		assert_int_equal(do_rw(r, true, 8, gpa, 65536), VIRTIO_BLK_S_OK);
		memset(h, 0, 65536);
		assert_int_equal(do_rw(r, false, 8, gpa, 65536), VIRTIO_BLK_S_OK);
		assert_buf_pat(h, 4096, 65536, 31 + round);
	}
	assert_int_equal(st->nowait_off, BLK_NOWAIT_READ | BLK_NOWAIT_WRITE);
	assert_int_equal(st->inline_done, 0);
	assert_int_equal(st->inline_punted, 0);
	assert_int_equal(st->submits, 4);
	assert_int_equal(st->errors, 0);
}

/*
 * A real EIO: a loop device whose backing file sits on a full 1 MiB tmpfs. Buffered writes land
 * in the device's page cache and succeed; the FLUSH that has to write them back fails with EIO,
 * and the guest must see IOERR for it. In writethrough mode the write itself fails.
 */
static void test_eio_on_flush(void **state)
{
	struct rig *r = *state;
	char mnt[128], back[160], dev[64];
	uint8_t *h;

	mount_tmpfs(r, "eio", "1m", mnt, sizeof(mnt));
	snprintf(back, sizeof(back), "%s/backing.img", mnt);
	make_image(back, 8u << 20);
	loop_attach(back, 512, dev, sizeof(dev));
	snprintf(r->loopdev, sizeof(r->loopdev), "%s", dev);
	if (!dev[0]) {
		print_message("[  SKIP    ] no loop device available\n");
		skip();
	}
	snprintf(r->cfg.u.block.path, sizeof(r->cfg.u.block.path), "%s", dev);
	assert_int_equal(rig_start(r, ALL_RING | BLK_ALL, 1), 0);
	uint64_t gpa = scratch_alloc(r, 262144, 4096, (void **)&h);

	memset(h, 0x5c, 262144);
	for (unsigned i = 0; i < 16; i++)
		assert_int_equal(do_rw(r, true, i * 512u, gpa, 262144), VIRTIO_BLK_S_OK);
	uint64_t errors = blk_get_stats(r->x.dev)->errors;

	assert_int_equal(do_req(r, VIRTIO_BLK_T_FLUSH, 0, NULL, 0, NULL), VIRTIO_BLK_S_IOERR);
	assert_int_equal(blk_get_stats(r->x.dev)->errors, errors + 1);
	/* Writethrough: the failure reaches the write itself. */
	vmmio_write(r->x.dev, VIRTIO_MMIO_CONFIG + VIRTIO_BLK_CFG_WRITEBACK, 1, 0);
	assert_int_equal(do_rw(r, true, 12288, gpa, 262144), VIRTIO_BLK_S_IOERR);
	assert_true(vdev_active(r->x.dev));
	rig_stop(r);
	loop_detach(dev);
	r->loopdev[0] = 0;
	umount2(mnt, MNT_DETACH);
	rmdir(mnt);
	r->mnt[0] = 0;
}

/*
 * Guest memory O_DIRECT cannot pin, as foreign mappings can be on a dom0 kernel: memfd_secret
 * pages are ordinary to the process but refuse get_user_pages, so O_DIRECT gets EFAULT. A
 * minimal gmem and register path over it (the rig's own are for a plain buffer).
 */
struct gmem_secret {
	struct gmem gm;
	uint8_t *host;
	uint64_t base, size;
	long maps;
};

static void *gsec_map(struct gmem *gm, uint64_t gpa, size_t len, unsigned prot)
{
	struct gmem_secret *g = (struct gmem_secret *)gm;

	(void)prot;
	if (!gmem_range_ok(gpa, len) || gpa < g->base || gpa - g->base > g->size ||
	    len > g->size - (gpa - g->base))
		return NULL;
	g->maps++;
	return g->host + (gpa - g->base);
}

static void gsec_unmap(struct gmem *gm, void *ptr, size_t len)
{
	(void)ptr;
	(void)len;
	((struct gmem_secret *)gm)->maps--;
}

static void gsec_destroy(struct gmem *gm)
{
	struct gmem_secret *g = (struct gmem_secret *)gm;

	munmap(g->host, g->size);
	free(g);
}

static long gsec_outstanding(struct gmem *gm)
{
	return ((struct gmem_secret *)gm)->maps;
}

static const struct gmem_ops gsec_ops = { gsec_map, gsec_unmap, NULL, gsec_destroy };

static struct gmem *gsec_new(uint64_t base, uint64_t size)
{
#ifndef SYS_memfd_secret
#define SYS_memfd_secret 447
#endif
	int fd = (int)syscall(SYS_memfd_secret, 0);
	struct gmem_secret *g;

	if (fd < 0)
		return NULL;
	g = calloc(1, sizeof(*g));
	if (ftruncate(fd, (off_t)size) == 0)
		g->host = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	close(fd);
	if (!g->host || g->host == MAP_FAILED) {
		free(g);
		return NULL;
	}
	g->gm.ops = &gsec_ops;
	g->base = base;
	g->size = size;
	return &g->gm;
}

static struct vdrv_direct *sec_of(struct vdrv_io *io)
{
	return container_of(io, struct vdrv_direct, io);
}

static uint64_t sec_read(struct vdrv_io *io, uint32_t off, unsigned size)
{
	return vmmio_read(sec_of(io)->dev, off, size);
}

static void sec_write(struct vdrv_io *io, uint32_t off, unsigned size, uint64_t val)
{
	vmmio_write(sec_of(io)->dev, off, size, val);
}

static void sec_raise(struct vdev_host *host, struct vdev *dev)
{
	(void)dev;
	container_of(host, struct vdrv_direct, host)->irqs++;
}

static int sec_wait(struct vdrv_io *io, int timeout_ms)
{
	struct vdrv_direct *x = sec_of(io);

	for (int i = 0; i < timeout_ms && x->irqs == x->irqs_seen; i++) {
		ev_run(x->host.loop, EVRUN_NOWAIT);
		if (x->irqs == x->irqs_seen)
			usleep(1000);
	}
	if (x->irqs == x->irqs_seen)
		return 0;
	x->irqs_seen = x->irqs;
	return 1;
}

/* The rig on guest RAM the kernel cannot pin (memfd_secret), cache = none; skips without it. */
static void rig_start_unpinnable(struct rig *r, uint64_t size)
{
	r->cfg.u.block.cache = BLK_CACHE_NONE;
	r->x.gm = gsec_new(RAM_GPA, size);
	if (!r->x.gm) {
		print_message("[  SKIP    ] no memfd_secret\n");
		skip();
	}
	r->loop = ev_loop_new(EVFLAG_AUTO);
	r->x.host = (struct vdev_host){ .loop = r->loop, .gm = r->x.gm, .guest_name = "test",
					.raise_irq = sec_raise };
	r->x.io = (struct vdrv_io){ .read = sec_read, .write = sec_write, .wait_irq = sec_wait };
	r->x.mem = (struct vdrv_mem){ .host = ((struct gmem_secret *)r->x.gm)->host,
				      .gpa = RAM_GPA, .size = size };
	r->outstanding = gsec_outstanding;
	assert_int_equal(vdev_create(&r->x.host, &r->cfg, &r->x.dev), 0);
	r->open = true;
	r->img = open(r->cfg.u.block.path, O_RDONLY);
	assert_int_equal(vdrv_init(&r->drv, &r->x.io, &r->x.mem, ALL_RING | BLK_ALL, 1, 256), 0);
}

static void test_direct_unpinnable_memory(void **state)
{
	struct rig *r = *state;
	uint8_t *h;

	rig_start_unpinnable(r, 8u << 20);
	const struct blk_stats *st = blk_get_stats(r->x.dev);
	uint64_t gpa = scratch_alloc(r, 65536, 4096, (void **)&h);

	/* Aligned, so it goes to O_DIRECT first, gets EFAULT, and is served bounced. */
	fill_pat(h, 65536, 65536, 23);
	assert_int_equal(do_rw(r, true, 128, gpa, 65536), VIRTIO_BLK_S_OK);
	assert_int_equal(st->bounces, 1);
	assert_image_pat(r, 65536, 65536, 23);
	memset(h, 0, 65536);
	assert_int_equal(do_rw(r, false, 128, gpa, 65536), VIRTIO_BLK_S_OK);
	assert_int_equal(st->bounces, 2);   /* bounced from the start now */
	for (uint32_t i = 0; i < 65536; i++)
		assert_int_equal(h[i], pat(65536 + i, 23));
	assert_int_equal(st->errors, 0);
}

/*
 * Bounced requests of up to 128 KiB go through the registered pool (READ/WRITE_FIXED, 32 slots);
 * larger ones, and those beyond the 32 slots in flight, through allocated buffers. Every byte
 * arrives either way.
 */
static void test_direct_bounce_pool(void **state)
{
	struct rig *r = *state;
	struct req q[40];
	uint8_t *h[40];
	uint64_t gpa[40];

	rig_start_unpinnable(r, 16u << 20);
	const struct blk_stats *st = blk_get_stats(r->x.dev);
	uint64_t big = scratch_alloc(r, 262144, 4096, (void **)&h[0]);

	/* 256 KiB: too large for a slot. It also finds out that guest memory cannot be pinned. */
	fill_pat(h[0], 0, 262144, 37);
	assert_int_equal(do_rw(r, true, 0, big, 262144), VIRTIO_BLK_S_OK);
	assert_image_pat(r, 0, 262144, 37);
	assert_int_equal(st->pool_bounces, 0);
	/* 40 writes of 8 KiB in flight at once: 32 take a slot, 8 an allocated buffer. */
	for (unsigned i = 0; i < 40; i++) {
		gpa[i] = scratch_alloc(r, 8192, 4096, (void **)&h[i]);
		struct vdrv_buf d = { gpa[i], 8192, false };

		fill_pat(h[i], 1048576 + i * 8192u, 8192, 41);
		req_build(r, &q[i], VIRTIO_BLK_T_OUT, (1048576 + i * 8192u) / 512, &d, 1);
		req_submit(r, 0, &q[i], false);
	}
	vdrv_kick(&r->drv, 0);
	wait_done(r, 0, 40);
	for (unsigned i = 0; i < 40; i++)
		assert_int_equal(req_status(r, &q[i]), VIRTIO_BLK_S_OK);
	assert_int_equal(st->pool_bounces, 32);
	assert_int_equal(st->bounces, 1 + 40);
	assert_image_pat(r, 1048576, 40 * 8192, 41);
	/* Read back one by one through the pool (its slots free again) into cleared buffers. */
	for (unsigned i = 0; i < 40; i++)
		read_back(r, 1048576 + i * 8192u, gpa[i], h[i], 8192, 41);
	assert_int_equal(st->pool_bounces, 32 + 40);
	assert_int_equal(st->errors, 0);
}

/* ---- NBD (nbd = URI) against a real nbdkit ------------------------------------------------- */

/* nbdkit on r->sock with args (tests/lib/nbdkit.h); skips the test when it is not installed. */
static void nbdkit_start(struct rig *r, const char *const *args)
{
	if (!nbdkit_available()) {
		print_message("[  SKIP    ] nbdkit is not installed\n");
		skip();
	}
	r->nbdkit = nbdkit_spawn(r->sock, args, TIMEOUT_MS);
	if (r->nbdkit < 0)
		fail_msg("nbdkit: %s", strerror((int)-r->nbdkit));
}

static void nbdkit_stop(struct rig *r)
{
	nbdkit_kill(r->nbdkit, r->sock);
	r->nbdkit = 0;
}

/* Point the device at nbd+unix:// on r->sock. */
static void nbd_point(struct rig *r, unsigned io_timeout)
{
	r->cfg.u.block.path[0] = '\0';
	snprintf(r->cfg.u.block.nbd, sizeof(r->cfg.u.block.nbd), "nbd+unix:///?socket=%s", r->sock);
	r->cfg.u.block.io_timeout = io_timeout;
}

/* nbdkit with args on tmpdir/nbd.sock, and the device pointed at it. */
static void nbd_serve(struct rig *r, const char *const *args, unsigned io_timeout)
{
	snprintf(r->sock, sizeof(r->sock), "%s/nbd.sock", tmpdir);
	nbdkit_start(r, args);
	nbd_point(r, io_timeout);
}

/* How nbd_rig() serves the image: read-only, and a filter behind nbdkit's log filter. */
struct nbd_opts {
	bool ro;
	const char *filter;      /* "delay", "fua": --filter=log --filter=FILTER */
	const char *param;       /* the filter's parameter, or NULL */
};

/*
 * Serve setup()'s image with nbdkit's file plugin (NULL opts: as it is) and point the device at
 * it. With a filter, the log filter writes a line per request to r->nbdlog (wait_log()).
 */
static void nbd_rig(struct rig *r, const struct nbd_opts *o, unsigned io_timeout)
{
	char file[160], filter[64], logf[200];
	const char *args[10];
	unsigned n = 0;

	snprintf(file, sizeof(file), "file=%s", r->image);
	if (o && o->ro)
		args[n++] = "-r";
	if (o && o->filter) {
		snprintf(filter, sizeof(filter), "--filter=%s", o->filter);
		snprintf(r->nbdlog, sizeof(r->nbdlog), "%s/nbdkit.log", tmpdir);
		snprintf(logf, sizeof(logf), "logfile=%s", r->nbdlog);
		args[n++] = "--filter=log";
		args[n++] = filter;
	}
	args[n++] = "file";
	args[n++] = file;
	if (o && o->filter) {   /* the filters' parameters follow the plugin's */
		args[n++] = logf;
		if (o->param)
			args[n++] = o->param;
	}
	args[n] = NULL;
	nbd_serve(r, args, io_timeout);
}

/* Run the loop until a line of nbdkit's log contains text. */
static void wait_log(struct rig *r, const char *text)
{
	for (int waited = 0;; waited += 10) {
		char cmd[400];

		snprintf(cmd, sizeof(cmd), "grep -q '%s' %s 2>/dev/null", text, r->nbdlog);
		if (run(cmd) == 0)
			return;
		assert_true(waited < TIMEOUT_MS);
		r->x.io.wait_irq(&r->x.io, 10);
	}
}

/*
 * The server is back: the device reconnects by itself (backoff at most 2 s), so a read
 * succeeds within a few tries, and reads gen's pattern.
 */
static void read_back_after_reconnect(struct rig *r, uint64_t gpa, uint8_t *h, uint32_t len,
				      unsigned gen)
{
	uint8_t st = VIRTIO_BLK_S_IOERR;

	memset(h, 0, len);
	for (int i = 0; i < 5 && st != VIRTIO_BLK_S_OK; i++)
		st = do_rw(r, false, 0, gpa, len);
	assert_int_equal(st, VIRTIO_BLK_S_OK);
	for (uint32_t i = 0; i < len; i++)
		assert_int_equal(h[i], pat(i, gen));
}

/* n requests of len bytes each at consecutive offsets from 0, in flight at once. */
static void submit_run(struct rig *r, struct req *reqs, unsigned n, bool write, uint32_t len,
		       unsigned gen)
{
	for (unsigned i = 0; i < n; i++) {
		uint8_t *h;
		struct vdrv_buf d = { scratch_alloc(r, len, 512, (void **)&h), len, !write };

		if (write)
			fill_pat(h, (uint64_t)i * len, len, gen);
		req_build(r, &reqs[i], write ? VIRTIO_BLK_T_OUT : VIRTIO_BLK_T_IN, i * (len / 512),
			  &d, 1);
		req_submit(r, 0, &reqs[i], false);
	}
	vdrv_kick(&r->drv, 0);
}

/*
 * An NBD disk whose server holds requests (nbdkit's delay filter, delay its parameter), and n of
 * them submit_run() on the wire: the server has seen the first.
 */
static void on_the_wire(struct rig *r, struct req *reqs, unsigned n, bool write, uint32_t len,
			unsigned gen, const char *delay)
{
	nbd_rig(r, &(struct nbd_opts){ .filter = "delay", .param = delay }, 30);
	assert_int_equal(rig_start(r, ALL_RING | BLK_ALL, 1), 0);
	submit_run(r, reqs, n, write, len, gen);
	wait_log(r, write ? "Write" : "Read");
}

static void test_nbd_rw_depths(void **state)
{
	struct rig *r = *state;

	nbd_rig(r, NULL, 30);
	assert_int_equal(rig_start(r, ALL_RING | BLK_ALL, 1), 0);
	uint64_t f = r->drv.device_features;

	assert_false(f & VIRTIO_BIT(VIRTIO_BLK_F_RO));
	assert_true(f & VIRTIO_BIT(VIRTIO_BLK_F_DISCARD));
	assert_true(f & VIRTIO_BIT(VIRTIO_BLK_F_WRITE_ZEROES));
	assert_int_equal(cfg_read(r, VIRTIO_BLK_CFG_CAPACITY, 8), IMG_SIZE / 512);
	/* Up to 128 in flight, 1-4 buffers each, aligned and not. */
	depth_rounds(r, 0);
	depth_rounds(r, 3);
	assert_int_equal(blk_get_stats(r->x.dev)->errors, 0);
}

/* nbdkit's memory plugin: nothing to look at but what the server gives back. */
static void test_nbd_memory_plugin(void **state)
{
	struct rig *r = *state;
	static const char *const args[] = { "memory", "size=8M", NULL };
	uint8_t *h;
	uint64_t gpa;

	nbd_serve(r, args, 30);
	assert_int_equal(rig_start(r, ALL_RING | BLK_ALL, 1), 0);
	assert_int_equal(cfg_read(r, VIRTIO_BLK_CFG_CAPACITY, 8), (8u << 20) / 512);
	gpa = scratch_alloc(r, 1 << 20, 512, (void **)&h);
	fill_pat(h, 4096, 1 << 20, 5);
	assert_int_equal(do_rw(r, true, 8, gpa, 1 << 20), VIRTIO_BLK_S_OK);
	assert_int_equal(do_req(r, VIRTIO_BLK_T_FLUSH, 0, NULL, 0, NULL), VIRTIO_BLK_S_OK);
	memset(h, 0, 1 << 20);
	assert_int_equal(do_rw(r, false, 8, gpa, 1 << 20), VIRTIO_BLK_S_OK);
	for (uint32_t i = 0; i < (1u << 20); i++)
		if (h[i] != pat(4096 + i, 5))
			fail_msg("byte %u read back wrong", i);
	assert_int_equal(do_dwz(r, VIRTIO_BLK_T_WRITE_ZEROES, 8, 16, 0), VIRTIO_BLK_S_OK);
	assert_int_equal(do_rw(r, false, 8, gpa, 16 * 512), VIRTIO_BLK_S_OK);
	for (uint32_t i = 0; i < 16 * 512; i++)
		assert_int_equal(h[i], 0);
	/* Past the end of the export. */
	assert_int_equal(do_rw(r, false, (8u << 20) / 512, gpa, 512), VIRTIO_BLK_S_IOERR);
}

static void test_nbd_discard_zero_flush(void **state)
{
	struct rig *r = *state;
	uint8_t *h;
	uint64_t gpa;

	nbd_rig(r, NULL, 30);
	assert_int_equal(rig_start(r, ALL_RING | BLK_ALL, 1), 0);
	gpa = scratch_alloc(r, 262144, 512, (void **)&h);
	fill_pat(h, 0, 262144, 9);
	assert_int_equal(do_rw(r, true, 0, gpa, 262144), VIRTIO_BLK_S_OK);
	assert_int_equal(do_req(r, VIRTIO_BLK_T_FLUSH, 0, NULL, 0, NULL), VIRTIO_BLK_S_OK);
	assert_image_pat(r, 0, 262144, 9);
	assert_int_equal(do_dwz(r, VIRTIO_BLK_T_WRITE_ZEROES, 64, 64, 0), VIRTIO_BLK_S_OK);
	assert_int_equal(do_dwz(r, VIRTIO_BLK_T_WRITE_ZEROES, 192, 64, VIRTIO_BLK_DWZ_F_UNMAP),
			 VIRTIO_BLK_S_OK);
	assert_int_equal(do_dwz(r, VIRTIO_BLK_T_DISCARD, 384, 64, 0), VIRTIO_BLK_S_OK);
	assert_image_pat(r, 0, 32768, 9);
	assert_image_zero(r, 32768, 32768);
	assert_image_pat(r, 65536, 32768, 9);
	assert_image_zero(r, 98304, 32768);
	assert_image_pat(r, 131072, 65536, 9);
	/* Discarded: the file plugin punches a hole, which reads as zeroes. */
	assert_image_zero(r, 196608, 32768);
	assert_int_equal(do_req(r, VIRTIO_BLK_T_FLUSH, 0, NULL, 0, NULL), VIRTIO_BLK_S_OK);
	assert_int_equal(blk_get_stats(r->x.dev)->errors, 0);
}

static void test_nbd_read_only_export(void **state)
{
	struct rig *r = *state;
	uint8_t *h = malloc(65536);
	uint64_t gpa;
	int fd = open(r->image, O_WRONLY | O_CLOEXEC);

	fill_pat(h, 0, 65536, 4);
	assert_int_equal(pwrite(fd, h, 65536, 0), 65536);
	close(fd);
	free(h);
	nbd_rig(r, &(struct nbd_opts){ .ro = true }, 30);
	assert_int_equal(rig_start(r, ALL_RING | BLK_ALL, 1), 0);
	assert_true(r->drv.device_features & VIRTIO_BIT(VIRTIO_BLK_F_RO));
	assert_false(r->drv.device_features & VIRTIO_BIT(VIRTIO_BLK_F_DISCARD));
	gpa = scratch_alloc(r, 65536, 512, (void **)&h);
	assert_int_equal(do_rw(r, false, 0, gpa, 65536), VIRTIO_BLK_S_OK);
	for (uint32_t i = 0; i < 65536; i++)
		assert_int_equal(h[i], pat(i, 4));
	assert_int_equal(do_rw(r, true, 0, gpa, 512), VIRTIO_BLK_S_IOERR);
	/* A reload with the same section: the export's read-only state is no change of ours. */
	r->cfg.u.block.io_timeout = 5;
	assert_int_equal(r->x.dev->ops->reconfigure(r->x.dev, &r->cfg), 0);
}

/*
 * Writethrough on a server without FUA (nbdkit's fua filter hides it by default; this nbdkit
 * refuses an explicit fuamode=none): every write is followed by its own flush.
 */
static void test_nbd_writethrough_without_fua(void **state)
{
	struct rig *r = *state;
	uint8_t *h;
	uint64_t gpa;

	nbd_rig(r, &(struct nbd_opts){ .filter = "fua" }, 30);
	/* No FLUSH negotiated: the guest cannot ask for durability, so every write has it. */
	assert_int_equal(rig_start(r, ALL_RING | (BLK_ALL & ~VIRTIO_BIT(VIRTIO_BLK_F_FLUSH)), 1), 0);
	gpa = scratch_alloc(r, 4096, 512, (void **)&h);
	fill_pat(h, 8192, 4096, 6);
	assert_int_equal(do_rw(r, true, 16, gpa, 4096), VIRTIO_BLK_S_OK);
	assert_image_pat(r, 8192, 4096, 6);
	wait_log(r, "Flush");
}

/*
 * The server dies with writes on the wire and comes back on the same socket within
 * io_timeout: the writes are sent again and complete, the data is right, and no flush fails
 * (nothing completed on the dead connection).
 */
static void test_nbd_server_restart_mid_io(void **state)
{
	struct rig *r = *state;
	struct req reqs[32];

	on_the_wire(r, reqs, 32, true, 16384, 12, "delay-write=10");
	nbdkit_stop(r);
	nbd_rig(r, NULL, 30);
	wait_done(r, 0, 32);
	for (unsigned i = 0; i < 32; i++)
		assert_int_equal(req_status(r, &reqs[i]), VIRTIO_BLK_S_OK);
	assert_image_pat(r, 0, 32 * 16384, 12);
	assert_int_equal(do_req(r, VIRTIO_BLK_T_FLUSH, 0, NULL, 0, NULL), VIRTIO_BLK_S_OK);
	assert_int_equal(blk_get_stats(r->x.dev)->errors, 0);
}

/* An NBD disk on setup()'s image with len bytes of gen's pattern written at 0; their buffer. */
static uint64_t nbd_written(struct rig *r, unsigned io_timeout, uint32_t len, unsigned gen,
			    uint8_t **h)
{
	uint64_t gpa;

	nbd_rig(r, NULL, io_timeout);
	assert_int_equal(rig_start(r, ALL_RING | BLK_ALL, 1), 0);
	gpa = scratch_alloc(r, len, 512, (void **)h);
	fill_pat(*h, 0, len, gen);
	assert_int_equal(do_rw(r, true, 0, gpa, len), VIRTIO_BLK_S_OK);
	return gpa;
}

/*
 * Writes completed, not flushed, then the server dies: the next flush cannot vouch for them
 * and fails once; later flushes cover what the new connection wrote.
 */
static void test_nbd_flush_after_reconnect(void **state)
{
	struct rig *r = *state;
	uint8_t *h;
	uint64_t gpa;

	gpa = nbd_written(r, 30, 4096, 2, &h);
	nbdkit_stop(r);
	nbd_rig(r, NULL, 30);
	assert_int_equal(do_req(r, VIRTIO_BLK_T_FLUSH, 0, NULL, 0, NULL), VIRTIO_BLK_S_IOERR);
	assert_int_equal(do_rw(r, true, 0, gpa, 4096), VIRTIO_BLK_S_OK);
	assert_int_equal(do_req(r, VIRTIO_BLK_T_FLUSH, 0, NULL, 0, NULL), VIRTIO_BLK_S_OK);
	/* Flushed, then the server goes: nothing is at risk, the next flush succeeds. */
	nbdkit_stop(r);
	nbd_rig(r, NULL, 30);
	assert_int_equal(do_req(r, VIRTIO_BLK_T_FLUSH, 0, NULL, 0, NULL), VIRTIO_BLK_S_OK);
	assert_image_pat(r, 0, 4096, 2);
}

/* The server stays away past io_timeout: IOERR, no hang; once it is back the disk works. */
static void test_nbd_io_timeout(void **state)
{
	struct rig *r = *state;
	uint8_t *h;
	uint64_t gpa;

	gpa = nbd_written(r, 1, 8192, 3, &h);
	nbdkit_stop(r);
	assert_int_equal(do_rw(r, false, 0, gpa, 8192), VIRTIO_BLK_S_IOERR);
	assert_int_equal(blk_get_stats(r->x.dev)->inflight, 0);
	nbd_rig(r, NULL, 1);
	read_back_after_reconnect(r, gpa, h, 8192, 3);
}

/* Until every thread of pid is stopped (state T in /proc/PID/task/TID/stat). */
static void wait_stopped(pid_t pid)
{
	char cmd[160];

	snprintf(cmd, sizeof(cmd), "! grep -hv '^[0-9]* ([^)]*) [tT]' /proc/%d/task/*/stat | grep -q .",
		 (int)pid);
	for (int waited = 0; run(cmd) != 0; waited += 10) {
		assert_true(waited < TIMEOUT_MS);
		usleep(10000);
	}
}

/* A server that stops answering (SIGSTOP): IOERR after io_timeout; once it runs again, a new
 * connection serves. */
static void test_nbd_hung_server(void **state)
{
	struct rig *r = *state;
	uint8_t *h;
	uint64_t gpa;

	gpa = nbd_written(r, 1, 4096, 8, &h);
	assert_int_equal(kill(r->nbdkit, SIGSTOP), 0);
	wait_stopped(r->nbdkit);   /* the signal is delivered asynchronously */
	assert_int_equal(do_rw(r, false, 0, gpa, 4096), VIRTIO_BLK_S_IOERR);
	assert_int_equal(kill(r->nbdkit, SIGCONT), 0);
	read_back_after_reconnect(r, gpa, h, 4096, 8);
}

/*
 * The daemon stops, the guest stays (quiesce): reads on the wire complete with their data before
 * it returns; requests waiting for a server that is gone fail with IOERR.
 */
static void test_nbd_quiesce(void **state)
{
	struct rig *r = *state;
	struct req reqs[8];
	uint8_t *h = malloc(8 * 4096);
	int fd = open(r->image, O_WRONLY | O_CLOEXEC);

	fill_pat(h, 0, 8 * 4096, 13);
	assert_int_equal(pwrite(fd, h, 8 * 4096, 0), 8 * 4096);
	close(fd);
	free(h);
	on_the_wire(r, reqs, 8, false, 4096, 0, "delay-read=1");
	r->x.dev->ops->quiesce(r->x.dev);
	assert_int_equal(blk_get_stats(r->x.dev)->inflight, 0);
	wait_done(r, 0, 8);
	for (unsigned i = 0; i < 8; i++) {
		assert_int_equal(req_status(r, &reqs[i]), VIRTIO_BLK_S_OK);
		h = vdrv_host(&r->x.mem, reqs[i].b[1].gpa);
		for (uint32_t j = 0; j < 4096; j++)
			assert_int_equal(h[j], pat(i * 4096u + j, 13));
	}
	/* The server gone: a request waits for it, and the stop fails it rather than hang. */
	nbdkit_stop(r);
	struct req q;
	struct vdrv_buf d = { reqs[0].b[1].gpa, 4096, true };

	req_build(r, &q, VIRTIO_BLK_T_IN, 0, &d, 1);
	req_submit(r, 0, &q, false);
	vdrv_kick(&r->drv, 0);
	assert_int_equal(blk_get_stats(r->x.dev)->inflight, 1);
	r->x.dev->ops->quiesce(r->x.dev);
	wait_done(r, 0, 1);
	assert_int_equal(req_status(r, &q), VIRTIO_BLK_S_IOERR);
}

/* No server at start: retried for io_timeout, then a plain error (no config error). */
static void test_nbd_unreachable_at_start(void **state)
{
	struct rig *r = *state;

	snprintf(r->sock, sizeof(r->sock), "%s/nobody.sock", tmpdir);
	nbd_point(r, 1);
	r->loop = ev_loop_new(EVFLAG_AUTO);
	int rc = vdrv_direct_open(&r->x, &r->cfg, RAM_GPA, RAM_SIZE, r->loop);

	ev_loop_destroy(r->loop);
	if (rc == -ENOTSUP)
		skip();   /* built without NBD support */
	assert_true(rc == -ENOENT || rc == -ECONNREFUSED);
}

/* A driver reset with reads on the wire: the guest's buffers are given back at once. */
static void test_nbd_reset_in_flight(void **state)
{
	struct rig *r = *state;
	struct req reqs[16];

	on_the_wire(r, reqs, 16, false, 4096, 0, "delay-read=1");
	vdrv_write32(&r->drv, R_STATUS, 0);
	assert_int_equal(r->x.held, 0);   /* answered at once */
	assert_int_equal(gmem_flat_outstanding(r->x.gm), 0);
	/* The stale reads come back later and are dropped without a trace in the ring. */
	const struct blk_stats *st = blk_get_stats(r->x.dev);

	for (int waited = 0; st->inflight; waited += 10) {
		assert_true(waited < TIMEOUT_MS);
		r->x.io.wait_irq(&r->x.io, 10);
	}
	assert_int_equal(r->drv.vq[0].used->idx, 0);
	for (unsigned i = 0; i < 16; i++)
		assert_int_equal(req_status(r, &reqs[i]), 0xee);
	/* The device works after the reset. */
	assert_int_equal(vdrv_init(&r->drv, &r->x.io, &r->x.mem, ALL_RING | BLK_ALL, 1, 1024), 0);
	r->scratch_next = 0;
	rw_round(r, 4, true, 1, 0);
	rw_round(r, 4, false, 1, 0);
}

static void cleanup_tmpdir(void)
{
	char cmd[128];

	snprintf(cmd, sizeof(cmd), "rm -rf %s", tmpdir);
	run(cmd);
}

int main(void)
{
#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)
	const struct CMUnitTest tests[] = {
		T(test_config_space), T(test_features_follow_config), T(test_get_id),
		T(test_get_id_default), T(test_rw_depths), T(test_rw_depths_no_event_idx),
		T(test_rw_direct), T(test_bounce_budget_waits),
		T(test_random_mix), T(test_random_mix_direct), T(test_budget_continues),
		T(test_reconfigure_resize), T(test_read_only), T(test_out_of_range), T(test_malformed),
		T(test_no_status_byte), T(test_discard_write_zeroes), T(test_flush_and_wce),
		T(test_no_flush_is_writethrough), T(test_flush_ordering), T(test_flush_ordering_direct),
		T(test_multiqueue), T(test_chain_taken_at_completion),
		T(test_reset_in_flight), T(test_reset_waits_without_blocking), T(test_refuses_bad_paths), T(test_block_device),
		T(test_enospc), T(test_inline_nowait), T(test_inline_nowait_unsupported), T(test_eio_on_flush), T(test_direct_unpinnable_memory), T(test_direct_bounce_pool),
		T(test_nbd_rw_depths), T(test_nbd_memory_plugin), T(test_nbd_discard_zero_flush),
		T(test_nbd_read_only_export), T(test_nbd_writethrough_without_fua),
		T(test_nbd_server_restart_mid_io), T(test_nbd_flush_after_reconnect),
		T(test_nbd_io_timeout), T(test_nbd_hung_server), T(test_nbd_quiesce), T(test_nbd_unreachable_at_start), T(test_nbd_reset_in_flight),
	};
	int rc;

	log_init(LOG_ERR, false);
	if (!mkdtemp(tmpdir))
		return 1;
	/* Our own mount namespace, so test mounts vanish with us and never leak to the host. */
	private_mounts = unshare(CLONE_NEWNS) == 0 &&
			 mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) == 0;
	rc = cmocka_run_group_tests(tests, NULL, NULL);
	cleanup_tmpdir();
	return rc;
}
