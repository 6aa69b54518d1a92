/*
 * The guest side of the block integration tests (test_blk.c, test_rbd.c): the sim daemon
 * serving one virtio-blk disk at WIN0, a driver on it, requests built in a scratch heap,
 * completions waited for by interrupt, and a data pattern the tests check against.
 */
#ifndef XVD_TESTS_BLK_GUEST_H
#define XVD_TESTS_BLK_GUEST_H

#include <endian.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "devices/blk.h"
#include "devices/device.h"
#include "tests/integration/itest.h"

#define RAM_GPA   UINT64_C(0x40000000)
#define HEAP_SIZE (48u << 20)
#define SCRATCH   (40u << 20)
#define SPI       33
#define WAIT_MS   10000
#define R_INT_STATUS 0x60
#define R_INT_ACK    0x64
#define RING (VIRTIO_BIT(VIRTIO_F_VERSION_1) | VIRTIO_BIT(VIRTIO_F_EVENT_IDX) | \
	      VIRTIO_BIT(VIRTIO_F_INDIRECT_DESC))
#define BLK (VIRTIO_BIT(VIRTIO_BLK_F_SEG_MAX) | VIRTIO_BIT(VIRTIO_BLK_F_BLK_SIZE) | \
	     VIRTIO_BIT(VIRTIO_BLK_F_FLUSH) | VIRTIO_BIT(VIRTIO_BLK_F_CONFIG_WCE) | \
	     VIRTIO_BIT(VIRTIO_BLK_F_RO) | VIRTIO_BIT(VIRTIO_BLK_F_DISCARD) | \
	     VIRTIO_BIT(VIRTIO_BLK_F_WRITE_ZEROES) | VIRTIO_BIT(VIRTIO_BLK_F_MQ))


struct guest {
	struct itest *t;
	struct xsim_vio vio;
	struct vdrv_mem mem;
	struct vdrv drv;
	uint64_t heap, heap_gpa;    /* scratch cursor and start */
	unsigned nqueues;           /* driver queues to set up (0: 1) */
	char img[128];
};

struct req {
	struct vdrv_buf b[8];
	unsigned n;
	uint8_t *status;
	bool done;
	uint32_t used_len;
};

/* itest_serve(), with $BLK_ITEST_LOG (e.g. debug) as the daemon's log level. */
static inline int serve(struct itest *t, const char *ini)
{
	const char *lvl = getenv("BLK_ITEST_LOG");
	const char *args[] = { "--foreground", "--config", t->ini, "--log-level",
			       lvl ? lvl : "info", NULL };
	int rc;

	if (itest_write(t->ini, "%s", ini) < 0)
		return -1;
	rc = xsim_daemon_start(t->hub, &t->dm, XVD_SIM_DAEMON, "daemon", args, 0);
	if (rc == 0)
		rc = xsim_daemon_wait_ready(&t->dm, READY_MS);
	if (rc < 0)
		itest_dump_log(t);
	return rc;
}

/* Serve ini (NULL: write it from extra), then bring the guest's driver up. */
static inline void guest_start_ini(struct guest *g, const char *ini, const char *extra,
				   bool grants, void (*before)(struct guest *g))
{
	char buf[1024];
	uint64_t want = RING | BLK | (grants ? VIRTIO_BIT(VIRTIO_F_ACCESS_PLATFORM) : 0);

	/* A fresh driver: one kept from an earlier guest would reuse that guest's ring addresses. */
	memset(&g->drv, 0, sizeof(g->drv));
	g->t = itest_new(&(struct xsim_dom_opts){ .name = "g1", .ram_mib = 128 });
	assert_non_null(g->t);
	if (!ini) {
		snprintf(buf, sizeof(buf),
			 "[guest]\nname = g1\ndiscovery = explicit\ngrant_usage = %s\n\n"
			 "[block \"root\"]\nmmio = 0x02000000\nirq = 33\npath = %s\n"
			 "queue_size = 256\n%s", grants ? "yes" : "no", g->img, extra ? extra : "");
		ini = buf;
	}
	if (before)
		before(g);
	assert_int_equal(serve(g->t, ini), 0);
	xsim_vio_init(&g->vio, g->t->dom, 0, WIN0, SPI);
	int rc = xsim_vmem_init(&g->mem, g->t->dom, RAM_GPA, HEAP_SIZE, grants);

	if (rc < 0)
		fail_msg("xsim_vmem_init(%u MiB, grants %d): %s", HEAP_SIZE >> 20, grants,
			 strerror(-rc));
	assert_int_equal(vdrv_init(&g->drv, &g->vio.io, &g->mem, want,
				   g->nqueues ? g->nqueues : 1, 256), 0);
	assert_int_equal(g->drv.device_id, VIRTIO_ID_BLOCK);
	/* Test buffers come from here; the driver's own (indirect tables) from after it. */
	g->heap = vdrv_alloc(&g->mem, SCRATCH, 4096, NULL);
	assert_true(g->heap != 0);
	g->heap_gpa = g->heap;
}

static inline void guest_start(struct guest *g, const char *extra, bool grants)
{
	guest_start_ini(g, NULL, extra, grants, NULL);
}

static inline void guest_stop(struct guest *g)
{
	int st = itest_free(g->t);

	g->t = NULL;
	assert_true(WIFEXITED(st));
	assert_int_equal(WEXITSTATUS(st), 0);
}

/* Bump allocation in the scratch region; scratch_reset() starts it over. */
static inline uint64_t galloc(struct guest *g, uint32_t len, uint32_t align, void **host)
{
	uint64_t gpa = (g->heap + align - 1) / align * align;

	assert_true(gpa + len <= g->heap_gpa + SCRATCH);
	g->heap = gpa + len;
	if (host)
		*host = vdrv_host(&g->mem, gpa);
	return gpa;
}

static inline void scratch_reset(struct guest *g)
{
	g->heap = g->heap_gpa;
}

static inline void req_build(struct guest *g, struct req *q, uint32_t type, uint64_t sector,
			     const struct vdrv_buf *data, unsigned ndata)
{
	struct virtio_blk_outhdr *h;

	memset(q, 0, sizeof(*q));
	q->b[q->n++] = (struct vdrv_buf){ galloc(g, 16, 16, (void **)&h), 16, false };
	h->type = htole32(type);
	h->ioprio = 0;
	h->sector = htole64(sector);
	for (unsigned i = 0; i < ndata; i++)
		q->b[q->n++] = data[i];
	q->b[q->n] = (struct vdrv_buf){ galloc(g, 1, 1, (void **)&q->status), 1, true };
	q->n++;
	*q->status = 0xee;
}

static inline void wait_done(struct guest *g, unsigned n)
{
	unsigned got = 0;

	for (int waited = 0; got < n; waited += 10) {
		uint32_t len;
		void *tok;
		int rc;

		while ((rc = vdrv_get_used(&g->drv, 0, &len, &tok)) > 0) {
			struct req *q = tok;

			assert_false(q->done);
			q->done = true;
			q->used_len = len;
			got++;
		}
		assert_true(rc >= 0);
		if (got >= n)
			break;
		if (waited >= WAIT_MS)
			itest_dump_log(g->t);
		if (waited >= WAIT_MS)
			fail_msg("%u of %u requests completed", got, n);
		vdrv_enable_irq(&g->drv, 0);
		if (g->vio.io.wait_irq(&g->vio.io, 10) > 0) {
			uint32_t isr = vdrv_read32(&g->drv, R_INT_STATUS);

			if (isr)
				vdrv_write32(&g->drv, R_INT_ACK, isr);
		}
	}
}

static inline uint8_t do_req(struct guest *g, uint32_t type, uint64_t sector,
			     const struct vdrv_buf *data, unsigned ndata)
{
	struct req q;

	req_build(g, &q, type, sector, data, ndata);
	assert_true(vdrv_submit(&g->drv, 0, q.b, q.n, false, &q) >= 0);
	vdrv_kick(&g->drv, 0);
	wait_done(g, 1);
	return *q.status;
}

static inline uint8_t pat(uint64_t off, unsigned gen)
{
	uint64_t x = (off / 8 + 1) * 0x9e3779b97f4a7c15ull + gen * 0x100000001b3ull;

	return (uint8_t)((x >> 29) ^ (off & 7) ^ gen);
}

static inline double now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

static inline void assert_file_pat(const char *img, uint64_t off, uint32_t len, unsigned gen)
{
	uint8_t *buf = malloc(len);
	int fd = open(img, O_RDONLY);

	assert_true(fd >= 0);
	assert_int_equal(pread(fd, buf, len, (off_t)off), (ssize_t)len);
	close(fd);
	for (uint32_t i = 0; i < len; i++)
		if (gen ? buf[i] != pat(off + i, gen) : buf[i] != 0)
			fail_msg("image byte %llu is %#x", (unsigned long long)(off + i), buf[i]);
	free(buf);
}

/* Where rw_depth(g, qd, gen) wrote its request i. */
static inline void rw_depth_extent(unsigned qd, unsigned i, uint64_t *off, uint32_t *len)
{
	*off = (uint64_t)i * 131072;
	*len = 4096u * (1 + (i * 5 + qd) % 32);
}

/*
 * qd requests in flight, each of 1-3 buffers (odd split points), every other one indirect:
 * written with generation gen, then read back and compared. The image's bytes:
 * rw_depth_extent().
 */
static inline void rw_depth(struct guest *g, unsigned qd, unsigned gen)
{
	struct req *w = calloc(qd, sizeof(*w));

	for (int pass = 0; pass < 2; pass++) {
		bool write = pass == 0;

		scratch_reset(g);
		for (unsigned i = 0; i < qd; i++) {
			uint64_t off;
			uint32_t len, done = 0;
			unsigned nbuf = 1 + i % 3;
			struct vdrv_buf d[3];

			rw_depth_extent(qd, i, &off, &len);
			for (unsigned k = 0; k < nbuf; k++) {
				uint32_t piece = k + 1 == nbuf ? len - done : len / nbuf - 512u * k;
				uint8_t *h;

				d[k] = (struct vdrv_buf){ galloc(g, piece, 512, (void **)&h), piece,
							  !write };
				for (uint32_t j = 0; j < piece; j++)
					h[j] = write ? pat(off + done + j, gen) : 0x5a;
				done += piece;
			}
			req_build(g, &w[i], write ? VIRTIO_BLK_T_OUT : VIRTIO_BLK_T_IN, off / 512,
				  d, nbuf);
			assert_true(vdrv_submit(&g->drv, 0, w[i].b, w[i].n, i % 2 || qd > 32,
						&w[i]) >= 0);
		}
		vdrv_kick(&g->drv, 0);
		wait_done(g, qd);
		for (unsigned i = 0; i < qd; i++) {
			uint64_t pos = (uint64_t)i * 131072;

			assert_int_equal(*w[i].status, VIRTIO_BLK_S_OK);
			for (unsigned k = 1; !write && k + 1 < w[i].n; k++) {
				uint8_t *h = vdrv_host(&g->mem, w[i].b[k].gpa);

				for (uint32_t j = 0; j < w[i].b[k].len; j++)
					if (h[j] != pat(pos + j, gen))
						fail_msg("qd %u req %u buf %u byte %u", qd, i, k, j);
				pos += w[i].b[k].len;
			}
			if (write)
				assert_int_equal(w[i].used_len, 1);
		}
	}
	free(w);
}

/* n writes of 64 KiB, request i at i * 64 KiB with pat(, gen), submitted with one kick. */
static inline void submit_pat_writes(struct guest *g, struct req *w, unsigned n, unsigned gen)
{
	for (unsigned i = 0; i < n; i++) {
		uint8_t *h;
		struct vdrv_buf d = { galloc(g, 65536, 4096, (void **)&h), 65536, false };

		for (uint32_t j = 0; j < 65536; j++)
			h[j] = pat(i * 65536ull + j, gen);
		req_build(g, &w[i], VIRTIO_BLK_T_OUT, i * 128u, &d, 1);
		assert_true(vdrv_submit(&g->drv, 0, w[i].b, w[i].n, false, &w[i]) >= 0);
	}
	vdrv_kick(&g->drv, 0);
}

/* sh -c of a printf-formatted command line; its exit status (-1: not run or killed). */
static inline int blk_sh(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static inline int blk_sh(const char *fmt, ...)
{
	char cmd[1024];
	va_list ap;
	int st;

	va_start(ap, fmt);
	vsnprintf(cmd, sizeof(cmd), fmt, ap);
	va_end(ap);
	st = system(cmd);
	return st != -1 && WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

#endif
