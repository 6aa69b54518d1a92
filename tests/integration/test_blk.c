/*
 * virtio-blk through the real daemon on xensim: a guest driver reaches the disk through ioreq
 * slots and event channels, the daemon does io_uring I/O on a real image file. Covers the
 * request types at depth, grant mappings, a reset with requests in flight, and crash
 * consistency: SIGKILL right after a FLUSH is acknowledged, then a fresh daemon and guest read
 * back every acknowledged block.
 */
#include <endian.h>
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
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "devices/blk.h"
#include "devices/device.h"
#include "devices/virtqueue.h"
#include "tests/integration/blk_guest.h"
#include "tests/integration/itest.h"
#include "tests/lib/nbdkit.h"
#include "tests/lib/sanitized.h"

#define IMG_SIZE  (32u << 20)

static char workdir[] = "/tmp/itest_blk.XXXXXX";

static void make_image(const char *path)
{
	int fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);

	assert_true(fd >= 0);
	assert_int_equal(ftruncate(fd, IMG_SIZE), 0);
	close(fd);
}

static int setup(void **state)
{
	struct guest *g = calloc(1, sizeof(*g));

	snprintf(g->img, sizeof(g->img), "%s/disk.img", workdir);
	make_image(g->img);
	*state = g;
	return 0;
}

static int teardown(void **state)
{
	struct guest *g = *state;

	if (g->t)
		itest_free(g->t);
	unlink(g->img);
	free(g);
	return 0;
}

/* rw_depth(), then the image file is checked too. */
static void rw_depth_file(struct guest *g, unsigned qd, unsigned gen)
{
	uint64_t off;
	uint32_t len;

	rw_depth(g, qd, gen);
	for (unsigned i = 0; i < qd; i++) {
		rw_depth_extent(qd, i, &off, &len);
		assert_file_pat(g->img, off, len, gen);
	}
}

static void depths(struct guest *g)
{
	static const unsigned qds[] = { 1, 4, 32, 128 };

	for (unsigned i = 0; i < 4; i++)
		rw_depth_file(g, qds[i], i + 1);
}

static void test_rw_depths(void **state)
{
	struct guest *g = *state;

	guest_start(g, NULL, false);
	depths(g);
	/* librbd (Ceph's libraries, 17 MiB) is opened only for rbd disks: test_rbd sees it. */
	assert_false(itest_maps_has(g->t->dm.pid, "/librbd.so"));
	assert_false(itest_maps_has(g->t->dm.pid, "/librados.so"));
	guest_stop(g);
}

static void test_rw_depths_direct_grants(void **state)
{
	struct guest *g = *state;

	guest_start(g, "cache = none\n", true);
	assert_true(g->drv.features & VIRTIO_BIT(VIRTIO_F_ACCESS_PLATFORM));
	depths(g);
	guest_stop(g);
}

static void test_request_types(void **state)
{
	struct guest *g = *state;
	struct virtio_blk_dwz_seg *s;
	char *id;

	guest_start(g, "serial = it-disk\n", false);
	rw_depth_file(g, 8, 7);
	scratch_reset(g);
	assert_int_equal(do_req(g, VIRTIO_BLK_T_FLUSH, 0, NULL, 0), VIRTIO_BLK_S_OK);
	struct vdrv_buf idb = { galloc(g, 20, 1, (void **)&id), 20, true };

	assert_int_equal(do_req(g, VIRTIO_BLK_T_GET_ID, 0, &idb, 1), VIRTIO_BLK_S_OK);
	assert_memory_equal(id, "it-disk\0", 8);
	struct vdrv_buf seg = { galloc(g, 16, 16, (void **)&s), 16, false };

	/* Discard the first request's range, write-zeroes (UNMAP) the second's. */
	*s = (struct virtio_blk_dwz_seg){ htole64(0), htole32(8), 0 };
	assert_int_equal(do_req(g, VIRTIO_BLK_T_DISCARD, 0, &seg, 1), VIRTIO_BLK_S_OK);
	assert_file_pat(g->img, 0, 4096, 0);
	*s = (struct virtio_blk_dwz_seg){ htole64(256), htole32(16), htole32(1) };
	assert_int_equal(do_req(g, VIRTIO_BLK_T_WRITE_ZEROES, 256, &seg, 1), VIRTIO_BLK_S_OK);
	assert_file_pat(g->img, 131072, 8192, 0);
	assert_int_equal(do_req(g, 42, 0, NULL, 0), VIRTIO_BLK_S_UNSUPP);
	/* Out of range, and a malformed (8-byte) header. */
	uint8_t *h;
	struct vdrv_buf d = { galloc(g, 4096, 512, (void **)&h), 4096, true };

	assert_int_equal(do_req(g, VIRTIO_BLK_T_IN, IMG_SIZE / 512 - 1, &d, 1),
			 VIRTIO_BLK_S_IOERR);
	struct req q;

	req_build(g, &q, VIRTIO_BLK_T_IN, 0, NULL, 0);
	q.b[0].len = 8;
	assert_true(vdrv_submit(&g->drv, 0, q.b, q.n, false, &q) >= 0);
	vdrv_kick(&g->drv, 0);
	wait_done(g, 1);
	assert_int_equal(*q.status, VIRTIO_BLK_S_IOERR);
	guest_stop(g);
}

static void test_read_only(void **state)
{
	struct guest *g = *state;
	uint8_t *h;

	guest_start(g, "readonly = yes\n", false);
	assert_true(g->drv.features & VIRTIO_BIT(VIRTIO_BLK_F_RO));
	struct vdrv_buf d = { galloc(g, 4096, 512, (void **)&h), 4096, false };

	memset(h, 0x42, 4096);
	assert_int_equal(do_req(g, VIRTIO_BLK_T_OUT, 0, &d, 1), VIRTIO_BLK_S_IOERR);
	assert_file_pat(g->img, 0, 4096, 0);
	d.write = true;
	assert_int_equal(do_req(g, VIRTIO_BLK_T_IN, 0, &d, 1), VIRTIO_BLK_S_OK);
	assert_int_equal(h[0], 0);
	guest_stop(g);
}

/* Reset with 64 requests in flight; afterwards the device works and the daemon is healthy. */
static void test_reset_in_flight(void **state)
{
	struct guest *g = *state;
	struct req w[64];

	guest_start(g, "cache = none\n", false);
	for (unsigned i = 0; i < 64; i++) {
		uint8_t *h;
		struct vdrv_buf d = { galloc(g, 262144, 4096, (void **)&h), 262144, i % 2 };

		memset(h, 0x33, 262144);
		req_build(g, &w[i], i % 2 ? VIRTIO_BLK_T_IN : VIRTIO_BLK_T_OUT, i * 512u, &d, 1);
		assert_true(vdrv_submit(&g->drv, 0, w[i].b, w[i].n, true, &w[i]) >= 0);
	}
	vdrv_kick(&g->drv, 0);
	vdrv_reset(&g->drv);
	assert_int_equal(vdrv_status(&g->drv), 0);
	assert_int_equal(vdrv_init(&g->drv, &g->vio.io, &g->mem, RING | BLK, 1, 256), 0);
	scratch_reset(g);
	rw_depth_file(g, 16, 9);
	assert_true(xsim_daemon_alive(&g->t->dm));
	guest_stop(g);
}

/*
 * Crash consistency: rounds of writes, each acknowledged; after the last round a FLUSH, and the
 * moment it is acknowledged the daemon is SIGKILLed. A new daemon for a new guest must read
 * back every acknowledged block.
 */
static void test_crash_after_flush(void **state)
{
	struct guest *g = *state;
	const unsigned rounds = 6, per = 32;

	guest_start(g, "cache = writeback\n", false);
	for (unsigned r = 0; r < rounds; r++) {
		struct req w[32];

		scratch_reset(g);
		for (unsigned i = 0; i < per; i++) {
			/* Later rounds overwrite half of the earlier blocks. */
			uint64_t off = ((uint64_t)(i + r * per / 2) % (rounds * per)) * 65536;
			uint8_t *h;
			struct vdrv_buf d = { galloc(g, 65536, 4096, (void **)&h), 65536, false };

			for (uint32_t j = 0; j < 65536; j++)
				h[j] = pat(off + j, r + 1);
			req_build(g, &w[i], VIRTIO_BLK_T_OUT, off / 512, &d, 1);
			assert_true(vdrv_submit(&g->drv, 0, w[i].b, w[i].n, i % 2, &w[i]) >= 0);
		}
		vdrv_kick(&g->drv, 0);
		wait_done(g, per);
		for (unsigned i = 0; i < per; i++)
			assert_int_equal(*w[i].status, VIRTIO_BLK_S_OK);
	}
	scratch_reset(g);
	assert_int_equal(do_req(g, VIRTIO_BLK_T_FLUSH, 0, NULL, 0), VIRTIO_BLK_S_OK);
	assert_int_equal(kill(g->t->dm.pid, SIGKILL), 0);
	int st = 0;

	assert_int_equal(xsim_daemon_wait_exit(&g->t->dm, 5000, &st), 0);
	assert_true(WIFSIGNALED(st));
	g->t->dm.pid = -1;
	xsim_hub_stop(g->t->hub);
	free(g->t);
	g->t = NULL;

	/* Expected generation of every 64 KiB block: the last round that wrote it. */
	unsigned gen[192] = { 0 };

	for (unsigned r = 0; r < rounds; r++)
		for (unsigned i = 0; i < per; i++)
			gen[(i + r * per / 2) % (rounds * per)] = r + 1;
	guest_start(g, NULL, false);
	for (unsigned blk = 0; blk < rounds * per; blk++) {
		uint8_t *h;

		scratch_reset(g);
		struct vdrv_buf d = { galloc(g, 65536, 4096, (void **)&h), 65536, true };

		uint8_t st = do_req(g, VIRTIO_BLK_T_IN, blk * 128u, &d, 1);

		if (st != VIRTIO_BLK_S_OK)
			itest_dump_log(g->t);
		assert_int_equal(st, VIRTIO_BLK_S_OK);
		for (uint32_t j = 0; j < 65536; j++)
			if (h[j] != (gen[blk] ? pat(blk * 65536ull + j, gen[blk]) : 0))
				fail_msg("block %u byte %u lost (gen %u)", blk, j, gen[blk]);
	}
	guest_stop(g);
}

/*
 * Two queues (MQ), each kept 16 deep with writes and then reads, every queue on its own region:
 * completions of both arrive and each request lands where it should.
 */
static void test_multiqueue(void **state)
{
	struct guest *g = *state;
	struct req w[2][16];

	g->nqueues = 2;
	guest_start(g, "queues = 2\n", false);
	assert_true(g->drv.features & VIRTIO_BIT(VIRTIO_BLK_F_MQ));
	assert_int_equal(g->drv.nqueues, 2);
	for (int pass = 0; pass < 2; pass++) {
		scratch_reset(g);
		for (unsigned q = 0; q < 2; q++)
			for (unsigned i = 0; i < 16; i++) {
				uint64_t off = ((uint64_t)q * 16 + i) * 65536;
				uint8_t *h;
				struct vdrv_buf d = { galloc(g, 65536, 4096, (void **)&h), 65536,
						      pass == 1 };

				for (uint32_t j = 0; pass == 0 && j < 65536; j++)
					h[j] = pat(off + j, 31);
				req_build(g, &w[q][i], pass ? VIRTIO_BLK_T_IN : VIRTIO_BLK_T_OUT,
					  off / 512, &d, 1);
				assert_true(vdrv_submit(&g->drv, q, w[q][i].b, w[q][i].n, true,
							&w[q][i]) >= 0);
			}
		vdrv_kick(&g->drv, 0);
		vdrv_kick(&g->drv, 1);
		unsigned got = 0;

		for (int waited = 0; got < 32; waited += 10) {
			uint32_t len;
			void *tok;

			for (unsigned q = 0; q < 2; q++)
				while (vdrv_get_used(&g->drv, q, &len, &tok) > 0) {
					struct req *rq = tok;

					uintptr_t a = (uintptr_t)rq, lo = (uintptr_t)w[q];

					/* Completed on the queue it was submitted to. */
					assert_true(a >= lo && a < lo + sizeof(w[q]));
					got++;
				}
			if (got < 32) {
				assert_true(waited < WAIT_MS);
				vdrv_enable_irq(&g->drv, 0);
				vdrv_enable_irq(&g->drv, 1);
				g->vio.io.wait_irq(&g->vio.io, 10);
				uint32_t isr = vdrv_read32(&g->drv, R_INT_STATUS);

				if (isr)
					vdrv_write32(&g->drv, R_INT_ACK, isr);
			}
		}
		for (unsigned q = 0; q < 2; q++)
			for (unsigned i = 0; i < 16; i++) {
				uint64_t off = ((uint64_t)q * 16 + i) * 65536;

				assert_int_equal(*w[q][i].status, VIRTIO_BLK_S_OK);
				if (pass == 1) {
					uint8_t *h = vdrv_host(&g->mem, w[q][i].b[1].gpa);

					for (uint32_t j = 0; j < 65536; j++)
						if (h[j] != pat(off + j, 31))
							fail_msg("queue %u req %u byte %u", q, i, j);
				}
			}
	}
	assert_file_pat(g->img, 0, 32 * 65536, 31);
	guest_stop(g);
}

/*
 * A full ring of n requests of the given type (data: one device-written buffer of len bytes),
 * each in an indirect table so n chains fit a ring of n, submitted with one kick: the device
 * takes VQ_BUDGET chains in one turn and ends it with the ring empty. Then one more, kicked
 * only if avail_event asks, as Linux's virtqueue_kick_prepare() does: it must be answered.
 */
static void budget_rearm(struct guest *g, uint32_t type, uint32_t len)
{
	enum { N = VQ_BUDGET };
	struct vdrv_vq *vq = &g->drv.vq[0];
	struct req *w = calloc(N + 1, sizeof(*w));
	uint16_t old;

	assert_non_null(w);
	assert_int_equal(vq->num, N);
	for (unsigned i = 0; i <= N; i++) {
		struct vdrv_buf d = { galloc(g, len, 512, NULL), len, true };

		req_build(g, &w[i], type, i * 8u, &d, 1);
	}
	for (unsigned i = 0; i < N; i++)
		assert_true(vdrv_submit(&g->drv, 0, w[i].b, w[i].n, true, &w[i]) >= 0);
	vdrv_kick(&g->drv, 0);
	wait_done(g, N);
	/*
	 * The daemon answers a register read from its loop, after the turn that answered the
	 * requests has returned: request 257 cannot slip in before that turn's last look at the
	 * ring, which would take it and hide a stale avail_event.
	 */
	vdrv_status(&g->drv);
	old = vq->avail_idx;
	assert_true(vdrv_submit(&g->drv, 0, w[N].b, w[N].n, true, &w[N]) >= 0);
	vdrv_kick_if_asked(&g->drv, 0, old);
	wait_done(g, 1);
	for (unsigned i = 0; i <= N; i++)
		assert_int_equal(*w[i].status, VIRTIO_BLK_S_OK);
	free(w);
}

/*
 * Requests the device answers in the same turn (GET_ID: no I/O, so no completion comes back to
 * look at the ring again): before vq_more() the turn that took VQ_BUDGET of them left
 * avail_event stale and request 257 was never kicked for.
 */
static void test_budget_rearm(void **state)
{
	struct guest *g = *state;

	guest_start(g, NULL, false);
	budget_rearm(g, VIRTIO_BLK_T_GET_ID, VIRTIO_BLK_ID_BYTES);
	scratch_reset(g);
	/* 4 KiB reads: their io_uring completions look at the ring too; answered either way. */
	budget_rearm(g, VIRTIO_BLK_T_IN, 4096);
	guest_stop(g);
}

/* The image grows, the daemon gets SIGHUP: the guest sees the new capacity and can use it. */
static void test_sighup_resize(void **state)
{
	struct guest *g = *state;
	uint64_t cap = 0;
	uint8_t *h;

	guest_start(g, NULL, false);
	uint32_t gen = vdrv_read32(&g->drv, 0x0fc);

	assert_int_equal(truncate(g->img, 2 * IMG_SIZE), 0);
	assert_int_equal(kill(g->t->dm.pid, SIGHUP), 0);
	for (int waited = 0; waited < WAIT_MS; waited += 10) {
		vdrv_config_read(&g->drv, VIRTIO_BLK_CFG_CAPACITY, &cap, 8);
		if (le64toh(cap) == 2 * IMG_SIZE / 512)
			break;
		usleep(10000);
	}
	assert_int_equal(le64toh(cap), 2 * IMG_SIZE / 512);
	assert_int_not_equal(vdrv_read32(&g->drv, 0x0fc), gen);
	struct vdrv_buf d = { galloc(g, 4096, 4096, (void **)&h), 4096, false };

	for (uint32_t j = 0; j < 4096; j++)
		h[j] = pat(IMG_SIZE + j, 41);
	assert_int_equal(do_req(g, VIRTIO_BLK_T_OUT, IMG_SIZE / 512, &d, 1), VIRTIO_BLK_S_OK);
	assert_file_pat(g->img, IMG_SIZE, 4096, 41);
	assert_true(xsim_daemon_log_has(&g->t->dm, "capacity 65536 -> 131072 sectors"));
	guest_stop(g);
}

/* Xen 4.17 layout: libxl's disk entries give the image ("params") and mode r: read-only. */
static void write_disk417(struct guest *g)
{
	uint32_t id = xsim_dom_id(g->t->dom);
	char p[160];
	static const char *const kv[][2] = {
		{ "frontend-id", NULL }, { "online", "1" }, { "mode", "r" }, { "dev", "xvda" },
		{ "type", "virtio_disk" }, { "base", "33554432" }, { "irq", "33" },
		{ "state", "1" },
	};

	for (size_t i = 0; i < sizeof(kv) / sizeof(kv[0]); i++) {
		snprintf(p, sizeof(p), "/local/domain/0/backend/virtio_disk/%u/51712/%s", id,
			 kv[i][0]);
		if (kv[i][1])
			assert_int_equal(xsim_xs_write(g->t->hub, p, "%s", kv[i][1]), 0);
		else
			assert_int_equal(xsim_xs_write(g->t->hub, p, "%u", id), 0);
	}
	snprintf(p, sizeof(p), "/local/domain/0/backend/virtio_disk/%u/51712/params", id);
	assert_int_equal(xsim_xs_write(g->t->hub, p, "%s", g->img), 0);
	snprintf(p, sizeof(p), "/local/domain/0/backend/virtio_disk/%u/51712/frontend", id);
	assert_int_equal(xsim_xs_write(g->t->hub, p, "/local/domain/%u/device/virtio_disk/51712",
				       id), 0);
}

static void test_xenstore_417_disk(void **state)
{
	struct guest *g = *state;
	uint8_t *h;
	int fd = open(g->img, O_WRONLY);

	assert_true(fd >= 0);
	assert_int_equal(pwrite(fd, "xen-4.17", 8, 4096), 8);
	close(fd);
	guest_start_ini(g, "[guest]\nname = g1\ndiscovery = xenstore\n[block \"root\"]\n"
			"vdev = xvda\n", NULL, false, write_disk417);
	assert_true(g->drv.features & VIRTIO_BIT(VIRTIO_BLK_F_RO));
	struct vdrv_buf d = { galloc(g, 4096, 4096, (void **)&h), 4096, true };

	assert_int_equal(do_req(g, VIRTIO_BLK_T_IN, 8, &d, 1), VIRTIO_BLK_S_OK);
	assert_memory_equal(h, "xen-4.17", 8);
	d.write = false;
	assert_int_equal(do_req(g, VIRTIO_BLK_T_OUT, 8, &d, 1), VIRTIO_BLK_S_IOERR);
	guest_stop(g);
}

/* Poll (10 ms) until file has a line containing text; fails after WAIT_MS. */
static void wait_file_has(struct guest *g, const char *file, const char *text)
{
	char cmd[400];

	snprintf(cmd, sizeof(cmd), "grep -q '%s' %s 2>/dev/null", text, file);
	for (int waited = 0; system(cmd) != 0; waited += 10) {
		if (waited >= WAIT_MS)
			itest_dump_log(g->t);
		assert_true(waited < WAIT_MS);
		usleep(10000);
	}
}

/* nbdkit with args on sock, then the guest with one NBD disk on uri (io_timeout seconds). */
static pid_t nbd_guest_start(struct guest *g, const char *sock, const char *const *args,
			     const char *uri, unsigned io_timeout)
{
	char ini[768];
	pid_t srv = nbdkit_spawn(sock, args, WAIT_MS);

	assert_true(srv > 0);
	snprintf(ini, sizeof(ini),
		 "[guest]\nname = g1\ndiscovery = explicit\n\n[block \"root\"]\nmmio = 0x02000000\n"
		 "irq = 33\nnbd = %s\nio_timeout = %u\nqueue_size = 256\n", uri, io_timeout);
	guest_start_ini(g, ini, NULL, false, NULL);
	return srv;
}

/*
 * An NBD disk through the real daemon (seccomp filter on): nbdkit serving the image is killed
 * with writes on the wire and started again on the same socket, then stays away past
 * io_timeout, then comes back. Acknowledged data is right, late requests fail with IOERR, the
 * daemon lives on and the disk works again.
 */
static void test_nbd_server_faults(void **state)
{
	struct guest *g = *state;
	char sock[160], log[160], logf[200], file[160], uri[200];
	const char *slow[] = { "--filter=log", "--filter=delay", "file", file, logf,
			       "delay-write=10", NULL };
	const char *plain[] = { "file", file, NULL };
	struct req w[16];
	pid_t srv;

	if (!nbdkit_available())
		skip();
	snprintf(sock, sizeof(sock), "%s/nbd.sock", workdir);
	snprintf(log, sizeof(log), "%s/nbdkit.log", workdir);
	snprintf(logf, sizeof(logf), "logfile=%s", log);
	snprintf(file, sizeof(file), "file=%s", g->img);
	snprintf(uri, sizeof(uri), "nbd+unix:///?socket=%s", sock);
	srv = nbd_guest_start(g, sock, slow, uri, 2);
	if (!(g->drv.device_features & VIRTIO_BIT(VIRTIO_BLK_F_DISCARD)))
		fail_msg("nbdkit's file plugin trims: discard should be offered");
	submit_pat_writes(g, w, 16, 7);
	wait_file_has(g, log, "Write");
	nbdkit_kill(srv, sock);
	srv = nbdkit_spawn(sock, plain, WAIT_MS);
	assert_true(srv > 0);
	double t0 = now_ms();

	wait_done(g, 16);
	print_message("nbd: 16 writes completed %.0f ms after the server was back\n", now_ms() - t0);
	for (unsigned i = 0; i < 16; i++)
		assert_int_equal(*w[i].status, VIRTIO_BLK_S_OK);
	assert_file_pat(g->img, 0, 16 * 65536, 7);
	assert_int_equal(do_req(g, VIRTIO_BLK_T_FLUSH, 0, NULL, 0), VIRTIO_BLK_S_OK);
	assert_true(xsim_daemon_log_has(&g->t->dm, "wait for the reconnect"));
	/* The reconnect happened under the seccomp filter (sanitizer builds load none). */
	assert_true(SANITIZED || xsim_daemon_log_has(&g->t->dm, "seccomp filter loaded"));

	/* Gone past io_timeout (2 s): IOERR, not a hang. */
	nbdkit_kill(srv, sock);
	scratch_reset(g);
	uint8_t *h;
	struct vdrv_buf d = { galloc(g, 65536, 4096, (void **)&h), 65536, true };

	t0 = now_ms();
	assert_int_equal(do_req(g, VIRTIO_BLK_T_IN, 0, &d, 1), VIRTIO_BLK_S_IOERR);
	print_message("nbd: IOERR %.0f ms after the read (io_timeout 2 s)\n", now_ms() - t0);
	assert_true(xsim_daemon_alive(&g->t->dm));
	/* Back: the daemon reconnects by itself (backoff at most 2 s) and the disk serves again. */
	srv = nbdkit_spawn(sock, plain, WAIT_MS);
	assert_true(srv > 0);
	uint8_t st = VIRTIO_BLK_S_IOERR;

	for (int i = 0; i < 5 && st != VIRTIO_BLK_S_OK; i++)
		st = do_req(g, VIRTIO_BLK_T_IN, 0, &d, 1);
	assert_int_equal(st, VIRTIO_BLK_S_OK);
	for (uint32_t j = 0; j < 65536; j++)
		if (h[j] != pat(j, 7))
			fail_msg("byte %u read back wrong", j);
	guest_stop(g);
	nbdkit_kill(srv, sock);
	unlink(log);
}

/* nbd://127.0.0.1:PORT: the reconnect opens a TCP socket, which the seccomp filter allows. */
static void test_nbd_tcp_reconnect(void **state)
{
	struct guest *g = *state;
	char sock[32], file[160], uri[64];
	const char *plain[] = { "file", file, NULL };
	int port = nbdkit_free_port();
	uint8_t *h;
	pid_t srv;

	if (!nbdkit_available())
		skip();
	assert_true(port > 0);
	snprintf(sock, sizeof(sock), "tcp:%d", port);
	snprintf(file, sizeof(file), "file=%s", g->img);
	snprintf(uri, sizeof(uri), "nbd://127.0.0.1:%d/", port);
	srv = nbd_guest_start(g, sock, plain, uri, 10);
	struct vdrv_buf d = { galloc(g, 65536, 4096, (void **)&h), 65536, false };

	for (uint32_t j = 0; j < 65536; j++)
		h[j] = pat(j, 11);
	assert_int_equal(do_req(g, VIRTIO_BLK_T_OUT, 0, &d, 1), VIRTIO_BLK_S_OK);
	nbdkit_kill(srv, sock);
	srv = nbdkit_spawn(sock, plain, WAIT_MS);
	assert_true(srv > 0);
	memset(h, 0, 65536);
	d.write = true;
	assert_int_equal(do_req(g, VIRTIO_BLK_T_IN, 0, &d, 1), VIRTIO_BLK_S_OK);
	for (uint32_t j = 0; j < 65536; j++)
		if (h[j] != pat(j, 11))
			fail_msg("byte %u read back wrong", j);
	assert_true(xsim_daemon_alive(&g->t->dm));
	guest_stop(g);
	nbdkit_kill(srv, sock);
}

/*
 * nbds+unix:// with a PSK: nbdkit requires TLS (--tls=require), the daemon's disk names the
 * PSK file and identity. Data goes both ways; then the key is rotated (the server restarted
 * with a new PSK file, the INI reloaded): a new TLS handshake from the loop, with the new key,
 * under the seccomp filter, and the data written before reads back right.
 */
static void test_nbd_tls_psk(void **state)
{
	struct guest *g = *state;
	char sock[160], file[160], psk[160], pskarg[200], uri[200], ini[1024];
	const char *args[] = { "--tls=require", pskarg, "file", file, NULL };
	uint8_t *h;
	pid_t srv;
	FILE *f;

	if (!nbdkit_available())
		skip();
	snprintf(sock, sizeof(sock), "%s/tls.sock", workdir);
	snprintf(psk, sizeof(psk), "%s/tls.psk", workdir);
	snprintf(pskarg, sizeof(pskarg), "--tls-psk=%s", psk);
	snprintf(file, sizeof(file), "file=%s", g->img);
	snprintf(uri, sizeof(uri), "nbds+unix:///?socket=%s", sock);
	f = fopen(psk, "w");
	assert_non_null(f);
	fputs("xvd-test:5f1c0a8e9d7b6a4c3b2a1908f7e6d5c4b3a29180f7e6d5c4b3a2918070605040\n", f);
	assert_int_equal(fclose(f), 0);
	assert_int_equal(chmod(psk, 0600), 0);
	srv = nbdkit_spawn(sock, args, WAIT_MS);
	assert_true(srv > 0);
	snprintf(ini, sizeof(ini),
		 "[guest]\nname = g1\ndiscovery = explicit\n\n[block \"root\"]\nmmio = 0x02000000\n"
		 "irq = 33\nnbd = %s\ntls_psk_file = %s\ntls_username = xvd-test\n"
		 "io_timeout = 10\nqueue_size = 256\n", uri, psk);
	guest_start_ini(g, ini, NULL, false, NULL);
	struct vdrv_buf d = { galloc(g, 65536, 4096, (void **)&h), 65536, false };

	for (uint32_t j = 0; j < 65536; j++)
		h[j] = pat(j, 13);
	assert_int_equal(do_req(g, VIRTIO_BLK_T_OUT, 0, &d, 1), VIRTIO_BLK_S_OK);
	assert_int_equal(do_req(g, VIRTIO_BLK_T_FLUSH, 0, NULL, 0), VIRTIO_BLK_S_OK);
	assert_file_pat(g->img, 0, 65536, 13);
	/*
	 * The key rotated: the server comes back with a new PSK file, the INI names it, SIGHUP.
	 * The reconnect uses the new key (the old one would fail until io_timeout: IOERR).
	 */
	nbdkit_kill(srv, sock);
	snprintf(psk, sizeof(psk), "%s/tls2.psk", workdir);
	snprintf(pskarg, sizeof(pskarg), "--tls-psk=%s", psk);
	f = fopen(psk, "w");
	assert_non_null(f);
	fputs("xvd-test:0a0b0c0d0e0f101112131415161718191a1b1c1d1e1f20212223242526272829\n", f);
	assert_int_equal(fclose(f), 0);
	snprintf(ini, sizeof(ini),
		 "[guest]\nname = g1\ndiscovery = explicit\n\n[block \"root\"]\nmmio = 0x02000000\n"
		 "irq = 33\nnbd = %s\ntls_psk_file = %s\ntls_username = xvd-test\n"
		 "io_timeout = 10\nqueue_size = 256\n", uri, psk);
	assert_int_equal(itest_write(g->t->ini, "%s", ini), 0);
	assert_int_equal(kill(g->t->dm.pid, SIGHUP), 0);
	for (int waited = 0; !xsim_daemon_log_has(&g->t->dm, "SIGHUP: re-reading"); waited += 10) {
		assert_true(waited < WAIT_MS);
		usleep(10000);
	}
	srv = nbdkit_spawn(sock, args, WAIT_MS);
	assert_true(srv > 0);
	memset(h, 0, 65536);
	d.write = true;
	assert_int_equal(do_req(g, VIRTIO_BLK_T_IN, 0, &d, 1), VIRTIO_BLK_S_OK);
	for (uint32_t j = 0; j < 65536; j++)
		if (h[j] != pat(j, 13))
			fail_msg("byte %u read back wrong over TLS", j);
	assert_true(xsim_daemon_log_has(&g->t->dm, "wait for the reconnect"));
	assert_true(SANITIZED || xsim_daemon_log_has(&g->t->dm, "seccomp filter loaded"));
	assert_false(xsim_daemon_log_has(&g->t->dm, "cannot change at run time"));
	assert_true(xsim_daemon_alive(&g->t->dm));
	guest_stop(g);
	nbdkit_kill(srv, sock);
	unlink(psk);
	snprintf(psk, sizeof(psk), "%s/tls.psk", workdir);
	unlink(psk);
}

/* A TLS server with another key: the handshake fails, retried within io_timeout, then exit 1. */
static void test_nbd_tls_wrong_key(void **state)
{
	struct guest *g = *state;
	char sock[160], file[160], psk[160], mine[160], pskarg[200];
	const char *args[] = { "--tls=require", pskarg, "file", file, NULL };
	const char *dargs[] = { "--foreground", "--config", NULL, NULL };
	int st = 0;
	pid_t srv;
	FILE *f;

	if (!nbdkit_available())
		skip();
	snprintf(sock, sizeof(sock), "%s/tls2.sock", workdir);
	snprintf(psk, sizeof(psk), "%s/server.psk", workdir);
	snprintf(mine, sizeof(mine), "%s/client.psk", workdir);
	snprintf(pskarg, sizeof(pskarg), "--tls-psk=%s", psk);
	snprintf(file, sizeof(file), "file=%s", g->img);
	f = fopen(psk, "w");
	assert_non_null(f);
	fputs("xvd-test:00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff\n", f);
	assert_int_equal(fclose(f), 0);
	f = fopen(mine, "w");
	assert_non_null(f);
	fputs("xvd-test:ffeeddccbbaa99887766554433221100ffeeddccbbaa99887766554433221100\n", f);
	assert_int_equal(fclose(f), 0);
	srv = nbdkit_spawn(sock, args, WAIT_MS);
	assert_true(srv > 0);
	g->t = itest_new(&(struct xsim_dom_opts){ .name = "g1", .ram_mib = 128 });
	assert_non_null(g->t);
	dargs[2] = g->t->ini;
	assert_int_equal(itest_write(g->t->ini, "[guest]\nname = g1\ndiscovery = explicit\n\n"
				     "[block \"root\"]\nmmio = 0x02000000\nirq = 33\n"
				     "nbd = nbds+unix:///?socket=%s\ntls_psk_file = %s\n"
				     "tls_username = xvd-test\nio_timeout = 2\n", sock, mine), 0);
	assert_int_equal(xsim_daemon_start(g->t->hub, &g->t->dm, XVD_SIM_DAEMON, "daemon", dargs, 0),
			 0);
	assert_int_equal(xsim_daemon_wait_exit(&g->t->dm, WAIT_MS, &st), 0);
	g->t->dm.pid = -1;
	assert_true(WIFEXITED(st));
	assert_int_equal(WEXITSTATUS(st), 1);
	assert_true(xsim_daemon_log_has(&g->t->dm, "within io_timeout (2 s)"));
	nbdkit_kill(srv, sock);
	unlink(psk);
	unlink(mine);
}

/*
 * No NBD server at start: the daemon retries (logged) for io_timeout, then stops with 1, a
 * run-time failure for systemd to retry, not 78 (the configuration is fine).
 */
static void test_nbd_no_server_at_start(void **state)
{
	struct guest *g = *state;
	const char *args[] = { "--foreground", "--config", NULL, NULL };
	int st = 0;

	g->t = itest_new(&(struct xsim_dom_opts){ .name = "g1", .ram_mib = 128 });
	assert_non_null(g->t);
	args[2] = g->t->ini;
	assert_int_equal(itest_write(g->t->ini, "[guest]\nname = g1\ndiscovery = explicit\n\n"
				     "[block \"root\"]\nmmio = 0x02000000\nirq = 33\n"
				     "nbd = nbd+unix:///?socket=%s/nobody.sock\nio_timeout = 2\n",
				     workdir), 0);
	assert_int_equal(xsim_daemon_start(g->t->hub, &g->t->dm, XVD_SIM_DAEMON, "daemon", args, 0),
			 0);
	assert_int_equal(xsim_daemon_wait_exit(&g->t->dm, WAIT_MS, &st), 0);
	g->t->dm.pid = -1;
	assert_true(WIFEXITED(st));
	assert_int_equal(WEXITSTATUS(st), 1);
	assert_true(xsim_daemon_log_has(&g->t->dm, "retrying in"));
	assert_true(xsim_daemon_log_has(&g->t->dm, "within io_timeout (2 s)"));
}

/*
 * A qcow2 image served over NBD by one of QEMU's servers (argv, listening on sock; the export
 * at uri): requests at depth 1 and 32, FLUSH, a discard and a write-zeroes through the real
 * daemon; then the server stops cleanly, `qemu-img check` finds the image consistent, and its
 * raw conversion holds exactly what the guest wrote, zeroes where it discarded. The qcow2 file
 * stays sparse: the server, not the daemon, did the format.
 */
static void qcow2_over_nbd(struct guest *g, const char *const *argv, const char *sock,
			   const char *uri)
{
	char qcow[160], raw[160], ini[768];
	struct virtio_blk_dwz_seg *s;
	struct stat st;
	pid_t srv;
	int rc;

	snprintf(qcow, sizeof(qcow), "%s/disk.qcow2", workdir);
	snprintf(raw, sizeof(raw), "%s/disk.raw", workdir);
	assert_int_equal(blk_sh("qemu-img create -q -f qcow2 %s %u", qcow, IMG_SIZE), 0);
	srv = nbd_server_spawn(sock, argv, WAIT_MS);
	if (srv < 0)
		fail_msg("%s did not come up on %s: %s", argv[0], sock, strerror((int)-srv));
	snprintf(ini, sizeof(ini),
		 "[guest]\nname = g1\ndiscovery = explicit\n\n[block \"root\"]\nmmio = 0x02000000\n"
		 "irq = 33\nnbd = %s\nqueue_size = 256\n", uri);
	guest_start_ini(g, ini, NULL, false, NULL);
	assert_true(xsim_daemon_log_has(&g->t->dm, "65536 sectors"));
	rw_depth(g, 1, 1);
	rw_depth(g, 32, 2);
	scratch_reset(g);
	assert_int_equal(do_req(g, VIRTIO_BLK_T_FLUSH, 0, NULL, 0), VIRTIO_BLK_S_OK);
	/* QEMU's servers trim and zero: the daemon offers both. */
	assert_true(g->drv.features & VIRTIO_BIT(VIRTIO_BLK_F_DISCARD));
	assert_true(g->drv.features & VIRTIO_BIT(VIRTIO_BLK_F_WRITE_ZEROES));
	struct vdrv_buf seg = { galloc(g, 16, 16, (void **)&s), 16, false };

	*s = (struct virtio_blk_dwz_seg){ htole64(0), htole32(8), 0 };
	assert_int_equal(do_req(g, VIRTIO_BLK_T_DISCARD, 0, &seg, 1), VIRTIO_BLK_S_OK);
	*s = (struct virtio_blk_dwz_seg){ htole64(256), htole32(16), htole32(1) };
	assert_int_equal(do_req(g, VIRTIO_BLK_T_WRITE_ZEROES, 256, &seg, 1), VIRTIO_BLK_S_OK);
	uint8_t *h;
	struct vdrv_buf d = { galloc(g, 8192, 4096, (void **)&h), 8192, true };

	memset(h, 0x5a, 8192);
	assert_int_equal(do_req(g, VIRTIO_BLK_T_IN, 256, &d, 1), VIRTIO_BLK_S_OK);
	for (uint32_t j = 0; j < 8192; j++)
		if (h[j])
			fail_msg("byte %u after write-zeroes is %#x", j, h[j]);
	assert_int_equal(do_req(g, VIRTIO_BLK_T_FLUSH, 0, NULL, 0), VIRTIO_BLK_S_OK);
	guest_stop(g);
	rc = nbd_server_stop(srv, sock);
	assert_true(WIFEXITED(rc) || WIFSIGNALED(rc));
	assert_int_equal(blk_sh("qemu-img check -q -f qcow2 %s", qcow), 0);
	assert_int_equal(blk_sh("qemu-img convert -f qcow2 -O raw %s %s", qcow, raw), 0);
	/*
	 * rw_depth(32, 2)'s extents. A discarded range reads back as anything (qcow2 ignores a
	 * discard smaller than its 64 KiB cluster), so only the rest of the first one is checked;
	 * the zeroed head of the second reads zeroes.
	 */
	for (unsigned i = 0; i < 32; i++) {
		uint32_t len, skip = i == 0 ? 4096 : i == 1 ? 8192 : 0;
		uint64_t off;

		rw_depth_extent(32, i, &off, &len);
		if (i == 1)
			assert_file_pat(raw, off, skip, 0);
		assert_file_pat(raw, off + skip, len - skip, 2);
	}
	/* 32 extents of at most 128 KiB written: a few MiB allocated of the 32 MiB disk. */
	assert_int_equal(stat(qcow, &st), 0);
	print_message("qcow2 over NBD (%s): file %lld KiB allocated for a %u MiB disk\n", argv[0],
		      (long long)st.st_blocks / 2, IMG_SIZE >> 20);
	assert_true(st.st_blocks * 512 < IMG_SIZE / 4);
	unlink(qcow);
	unlink(raw);
}

/* qemu-nbd serving a qcow2 file: the recipe of xen-virtiod.ini(5)'s NBD section. */
static void test_nbd_qcow2_qemu_nbd(void **state)
{
	char sock[160], qcow[160], uri[200];
	const char *argv[] = { "qemu-nbd", "--persistent", "--shared=4", "--discard=unmap",
			       "--cache=writeback", "--format=qcow2", "--socket", sock, qcow, NULL };

	if (!nbd_tool_available("qemu-nbd") || !nbd_tool_available("qemu-img"))
		skip();
	snprintf(sock, sizeof(sock), "%s/qnbd.sock", workdir);
	snprintf(qcow, sizeof(qcow), "%s/disk.qcow2", workdir);
	snprintf(uri, sizeof(uri), "nbd+unix:///?socket=%s", sock);
	qcow2_over_nbd(*state, argv, sock, uri);
}

/*
 * The ExecStart= of systemd/examples/xen-virtiod-qsd@.service, its words split at spaces, with
 * ${IMAGE}, ${FORMAT}, %t and %i substituted: the recipe itself is what runs. words[] points
 * into buf; NULL-terminated.
 */
static void unit_exec_start(const char *unit, const char *image, const char *rundir,
			    char *buf, size_t size, const char **words, unsigned nwords)
{
	static const char *const subst[][2] = { { "${IMAGE}", NULL }, { "${FORMAT}", "qcow2" },
						{ "%t", NULL }, { "%i", "it-disk" } };
	char line[1024] = "", *p;
	size_t o = 0;
	unsigned n = 0;
	FILE *f = fopen(unit, "r");

	assert_non_null(f);
	while (fgets(line, sizeof(line), f) && strncmp(line, "ExecStart=", 10) != 0)
		;
	fclose(f);
	assert_int_equal(strncmp(line, "ExecStart=", 10), 0);
	line[strcspn(line, "\n")] = '\0';
	for (p = line + 10; *p && o + 1 < size;) {
		bool hit = false;

		for (unsigned k = 0; k < 4 && !hit; k++) {
			const char *key = subst[k][0];
			const char *val = k == 0 ? image : k == 2 ? rundir : subst[k][1];

			if (strncmp(p, key, strlen(key)) == 0) {
				o += (size_t)snprintf(buf + o, size - o, "%s", val);
				p += strlen(key);
				hit = true;
			}
		}
		if (!hit)
			buf[o++] = *p++;
	}
	assert_true(o + 1 < size);
	buf[o] = '\0';
	for (p = strtok(buf, " "); p && n + 1 < nwords; p = strtok(NULL, " "))
		words[n++] = p;
	words[n] = NULL;
	/* The unit names the installed program; the test runs the one on PATH. */
	words[0] = strrchr(words[0], '/') ? strrchr(words[0], '/') + 1 : words[0];
}

/* qemu-storage-daemon exporting a qcow2 image by name ("disk"), run from its systemd recipe. */
static void test_nbd_qcow2_storage_daemon(void **state)
{
	char sock[200], dir[160], qcow[160], uri[240], buf[1024];
	const char *argv[24];

	if (!nbd_tool_available("qemu-storage-daemon") || !nbd_tool_available("qemu-img"))
		skip();
	snprintf(qcow, sizeof(qcow), "%s/disk.qcow2", workdir);
	unit_exec_start("systemd/examples/xen-virtiod-qsd@.service", qcow, workdir, buf,
			sizeof(buf), argv, 24);
	/* RuntimeDirectory=xen-virtiod-qsd, under %t (here the test's directory). */
	snprintf(dir, sizeof(dir), "%s/xen-virtiod-qsd", workdir);
	assert_true(mkdir(dir, 0700) == 0 || errno == EEXIST);
	snprintf(sock, sizeof(sock), "%s/it-disk.sock", dir);
	snprintf(uri, sizeof(uri), "nbd+unix:///disk?socket=%s", sock);
	qcow2_over_nbd(*state, argv, sock, uri);
}

int main(void)
{
#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)
	const struct CMUnitTest tests[] = {
		T(test_rw_depths), T(test_rw_depths_direct_grants), T(test_request_types),
		T(test_read_only), T(test_reset_in_flight), T(test_crash_after_flush),
		T(test_xenstore_417_disk), T(test_multiqueue), T(test_budget_rearm),
		T(test_sighup_resize), T(test_nbd_server_faults), T(test_nbd_tcp_reconnect),
		T(test_nbd_no_server_at_start), T(test_nbd_tls_psk), T(test_nbd_tls_wrong_key),
		T(test_nbd_qcow2_qemu_nbd),
		T(test_nbd_qcow2_storage_daemon),
	};
	char cmd[96];
	int rc;

	if (!mkdtemp(workdir))
		return 1;
	rc = cmocka_run_group_tests(tests, NULL, NULL);
	snprintf(cmd, sizeof(cmd), "rm -rf %s", workdir);
	if (system(cmd) != 0)
		rc = rc ? rc : 1;
	return rc;
}
