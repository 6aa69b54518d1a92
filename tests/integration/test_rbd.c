/*
 * virtio-blk on Ceph RBD through the real daemon on xensim (seccomp filter on), against a real
 * one-node cluster the test starts itself (tests/lib/ceph-cluster.sh: a monitor and a memstore
 * OSD on 127.0.0.1, cephx). Each test gets an image of its own; data is checked through the
 * guest and against `rbd export` of the image. Skipped when the Ceph packages are absent.
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
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "devices/blk.h"
#include "tests/integration/blk_guest.h"
#include "tests/integration/itest.h"
#include "tests/lib/nbdkit.h"
#include "tests/lib/sanitized.h"

#define IMG_MIB  32u
#define IMG_SIZE (IMG_MIB << 20)

static char workdir[] = "/tmp/itest_rbd.XXXXXX";
static char conf[200];          /* the cluster's ceph.conf; empty: no cluster (skip) */
static unsigned image_no;

static int cluster(const char *what)
{
	return blk_sh("sh %s %s %s/ceph >>%s/cluster.log 2>&1", CEPH_CLUSTER_SH, what, workdir,
		   workdir);
}

static int group_setup(void **state)
{
	int port = nbdkit_free_port();
	double t0 = now_ms();

	(void)state;
#ifndef XVD_HAVE_RBD
	print_message("SKIP: built without librbd (RBD=0): rbd disks cannot start\n");
	return 0;
#endif
	if (blk_sh("sh %s available", CEPH_CLUSTER_SH) != 0) {
		print_message("SKIP: ceph-mon, ceph-osd, ceph or rbd missing (apt-get install "
			      "ceph-mon ceph-osd ceph-common)\n");
		return 0;
	}
	if (port <= 0 || blk_sh("mkdir -p %s/ceph && CEPH_OWNER=%d sh %s start %s/ceph %d "
			     ">%s/cluster.log 2>&1", workdir, (int)getpid(), CEPH_CLUSTER_SH,
			     workdir, port, workdir) != 0) {
		blk_sh("cat %s/cluster.log >&2", workdir);
		return -1;
	}
	snprintf(conf, sizeof(conf), "%s/ceph/ceph.conf", workdir);
	print_message("rbd: one-node cluster up in %.1f s\n", (now_ms() - t0) / 1000);
	return 0;
}

static int group_teardown(void **state)
{
	(void)state;
	if (conf[0])
		cluster("stop");
	return 0;
}

/* A fresh image of IMG_MIB (name in g->img, "rbd/imgN"). */
static int setup(void **state)
{
	struct guest *g = calloc(1, sizeof(*g));

	*state = g;
	if (!conf[0])
		return 0;
	snprintf(g->img, sizeof(g->img), "rbd/img%u", ++image_no);
	return blk_sh("rbd --conf %s create --size %u %s", conf, IMG_MIB, g->img) == 0 ? 0 : -1;
}

static int teardown(void **state)
{
	struct guest *g = *state;

	if (g->t)
		itest_free(g->t);
	free(g);
	return 0;
}

/* The guest with one rbd disk on spec (rbd = ...) and the cluster's client settings. */
static void rbd_guest_start(struct guest *g, const char *spec, unsigned io_timeout,
			    const char *extra)
{
	char ini[1024];

	if (!conf[0])
		skip();
	snprintf(ini, sizeof(ini),
		 "[guest]\nname = g1\ndiscovery = explicit\n\n[block \"root\"]\nmmio = 0x02000000\n"
		 "irq = 33\nrbd = %s\nceph_conf = %s\nceph_id = admin\nkeyring = %s/ceph/keyring\n"
		 "io_timeout = %u\nqueue_size = 256\n%s", spec, conf, workdir, io_timeout,
		 extra ? extra : "");
	guest_start_ini(g, ini, NULL, false, NULL);
}

/* The image's bytes now, as the cluster has them (rbd export), in len bytes from off. */
static uint8_t *export_image(struct guest *g, const char *spec)
{
	char path[200];
	uint8_t *buf = malloc(IMG_SIZE);
	int fd;

	snprintf(path, sizeof(path), "%s/export.img", workdir);
	unlink(path);
	assert_int_equal(blk_sh("rbd --conf %s export %s %s >/dev/null 2>&1", conf,
			     spec ? spec : g->img, path), 0);
	fd = open(path, O_RDONLY);
	assert_true(fd >= 0);
	assert_int_equal(pread(fd, buf, IMG_SIZE, 0), (ssize_t)IMG_SIZE);
	close(fd);
	unlink(path);
	return buf;
}

/* The model: byte i of the image is pat(i, gen[i / 512]) (gen 0: zero). */
static void assert_image(struct guest *g, const char *spec, const uint8_t *gen)
{
	uint8_t *img = export_image(g, spec);

	for (uint64_t i = 0; i < IMG_SIZE; i++) {
		uint8_t want = gen[i / 512] ? pat(i, gen[i / 512]) : 0;

		if (img[i] != want)
			fail_msg("image byte %llu is %#x, not %#x", (unsigned long long)i, img[i],
				 want);
	}
	free(img);
}

/* Read len bytes at off through the guest and compare with the model. */
static void assert_guest_reads(struct guest *g, uint64_t off, uint32_t len, const uint8_t *gen)
{
	uint8_t *h;
	struct vdrv_buf d = { galloc(g, len, 4096, (void **)&h), len, true };

	memset(h, 0x5a, len);
	assert_int_equal(do_req(g, VIRTIO_BLK_T_IN, off / 512, &d, 1), VIRTIO_BLK_S_OK);
	for (uint32_t j = 0; j < len; j++) {
		uint8_t g8 = gen[(off + j) / 512];

		if (h[j] != (g8 ? pat(off + j, g8) : 0))
			fail_msg("guest read byte %llu is %#x", (unsigned long long)(off + j), h[j]);
	}
}

static void model_rw_depth(uint8_t *gen, unsigned qd, unsigned g8)
{
	uint64_t off;
	uint32_t len;

	for (unsigned i = 0; i < qd; i++) {
		rw_depth_extent(qd, i, &off, &len);
		memset(gen + off / 512, g8, len / 512);
	}
}

/* Depths 1 to 128 (scatter-gather, indirect chains), then the image checked byte for byte. */
static void test_rbd_rw_depths(void **state)
{
	struct guest *g = *state;
	static const unsigned qds[] = { 1, 4, 32, 128 };
	uint8_t *gen = calloc(IMG_SIZE / 512, 1);

	rbd_guest_start(g, g->img, 30, NULL);
	assert_true(g->drv.device_features & VIRTIO_BIT(VIRTIO_BLK_F_DISCARD));
	assert_true(g->drv.device_features & VIRTIO_BIT(VIRTIO_BLK_F_WRITE_ZEROES));
	assert_false(g->drv.device_features & VIRTIO_BIT(VIRTIO_BLK_F_RO));
	/* Opened with the rbd disk (test_blk checks that a file disk leaves it out). */
	assert_true(itest_maps_has(g->t->dm.pid, "/librbd.so"));
	for (unsigned i = 0; i < 4; i++) {
		double t0 = now_ms();

		rw_depth(g, qds[i], i + 1);
		model_rw_depth(gen, qds[i], i + 1);
		print_message("rbd: qd %u written and read back in %.0f ms\n", qds[i],
			      now_ms() - t0);
	}
	assert_image(g, NULL, gen);
	assert_true(SANITIZED || xsim_daemon_log_has(&g->t->dm, "seccomp filter loaded"));
	guest_stop(g);
	free(gen);
}

static void write_pat(struct guest *g, uint64_t off, uint32_t len, unsigned g8, uint8_t *gen)
{
	uint8_t *h;
	struct vdrv_buf d = { galloc(g, len, 4096, (void **)&h), len, false };

	for (uint32_t j = 0; j < len; j++)
		h[j] = pat(off + j, g8);
	assert_int_equal(do_req(g, VIRTIO_BLK_T_OUT, off / 512, &d, 1), VIRTIO_BLK_S_OK);
	memset(gen + off / 512, (int)g8, len / 512);
}

static uint8_t dwz(struct guest *g, uint32_t type, uint64_t off, uint32_t len, bool unmap)
{
	struct virtio_blk_dwz_seg *s;
	struct vdrv_buf seg = { galloc(g, 16, 16, (void **)&s), 16, false };

	*s = (struct virtio_blk_dwz_seg){ htole64(off / 512), htole32(len / 512),
					  htole32(unmap ? VIRTIO_BLK_DWZ_F_UNMAP : 0) };
	return do_req(g, type, off / 512, &seg, 1);
}

/*
 * Flush, discard, write-zeroes (with and without UNMAP), writethrough, GET_ID, a read past the
 * end: the image checked against the model after each step that changes it.
 */
static void test_rbd_request_types(void **state)
{
	struct guest *g = *state;
	uint8_t *gen = calloc(IMG_SIZE / 512, 1);
	char *id;

	rbd_guest_start(g, g->img, 30, "serial = rbd-disk\n");
	write_pat(g, 0, 1 << 20, 5, gen);
	write_pat(g, 8u << 20, 4u << 20, 6, gen);   /* across an object boundary */
	assert_int_equal(do_req(g, VIRTIO_BLK_T_FLUSH, 0, NULL, 0), VIRTIO_BLK_S_OK);
	assert_int_equal(dwz(g, VIRTIO_BLK_T_DISCARD, 0, 65536, false), VIRTIO_BLK_S_OK);
	memset(gen, 0, 65536 / 512);
	assert_int_equal(dwz(g, VIRTIO_BLK_T_WRITE_ZEROES, 131072, 8192, true), VIRTIO_BLK_S_OK);
	memset(gen + 131072 / 512, 0, 8192 / 512);
	assert_int_equal(dwz(g, VIRTIO_BLK_T_WRITE_ZEROES, 9u << 20, 1u << 20, false),
			 VIRTIO_BLK_S_OK);
	memset(gen + (9u << 20) / 512, 0, (1u << 20) / 512);
	scratch_reset(g);
	assert_guest_reads(g, 0, 1 << 20, gen);
	assert_guest_reads(g, 8u << 20, 4u << 20, gen);
	assert_image(g, NULL, gen);
	/* Writethrough (the driver cleared WCE): each write, then its own flush, then the answer. */
	g->vio.io.write(&g->vio.io, 0x100 + VIRTIO_BLK_CFG_WRITEBACK, 1, 0);
	scratch_reset(g);
	write_pat(g, 2u << 20, 65536, 7, gen);
	assert_int_equal(dwz(g, VIRTIO_BLK_T_WRITE_ZEROES, 2u << 20, 8192, true), VIRTIO_BLK_S_OK);
	memset(gen + (2u << 20) / 512, 0, 8192 / 512);
	assert_image(g, NULL, gen);
	assert_true(xsim_daemon_log_has(&g->t->dm, "guest switched to writethrough"));
	scratch_reset(g);
	struct vdrv_buf idb = { galloc(g, 20, 1, (void **)&id), 20, true };

	assert_int_equal(do_req(g, VIRTIO_BLK_T_GET_ID, 0, &idb, 1), VIRTIO_BLK_S_OK);
	assert_memory_equal(id, "rbd-disk\0", 9);
	uint8_t *h;
	struct vdrv_buf d = { galloc(g, 4096, 512, (void **)&h), 4096, true };

	assert_int_equal(do_req(g, VIRTIO_BLK_T_IN, IMG_SIZE / 512 - 1, &d, 1),
			 VIRTIO_BLK_S_IOERR);
	guest_stop(g);
	free(gen);
}

/* rbd = POOL/IMAGE@SNAP: read-only (VIRTIO_BLK_F_RO), the snapshot's data, writes refused. */
static void test_rbd_snapshot(void **state)
{
	struct guest *g = *state;
	uint8_t *gen = calloc(IMG_SIZE / 512, 1);
	char spec[160];

	rbd_guest_start(g, g->img, 30, NULL);
	write_pat(g, 0, 1 << 20, 3, gen);
	guest_stop(g);
	assert_int_equal(blk_sh("rbd --conf %s snap create %s@s1 >/dev/null 2>&1", conf, g->img), 0);
	snprintf(spec, sizeof(spec), "%s@s1", g->img);
	/* The image moves on after the snapshot; the snapshot does not. */
	uint8_t *later = calloc(IMG_SIZE / 512, 1);

	rbd_guest_start(g, g->img, 30, NULL);
	write_pat(g, 0, 65536, 4, later);
	guest_stop(g);
	rbd_guest_start(g, spec, 30, NULL);
	assert_true(g->drv.device_features & VIRTIO_BIT(VIRTIO_BLK_F_RO));
	assert_guest_reads(g, 0, 1 << 20, gen);
	uint8_t *h;
	struct vdrv_buf d = { galloc(g, 4096, 512, (void **)&h), 4096, false };

	assert_int_equal(do_req(g, VIRTIO_BLK_T_OUT, 0, &d, 1), VIRTIO_BLK_S_IOERR);
	guest_stop(g);
	assert_image(g, spec, gen);
	free(later);
	free(gen);
}

/* rbd = POOL/NAMESPACE/IMAGE: the image in the namespace, not one of the same name outside. */
static void test_rbd_namespace(void **state)
{
	struct guest *g = *state;
	uint8_t *gen = calloc(IMG_SIZE / 512, 1);
	char spec[160];

	if (!conf[0])
		skip();
	snprintf(spec, sizeof(spec), "rbd/ns1/img%u", image_no);
	assert_int_equal(blk_sh("rbd --conf %s namespace create rbd/ns1 >/dev/null 2>&1; "
			     "rbd --conf %s create --size %u %s", conf, conf, IMG_MIB, spec), 0);
	rbd_guest_start(g, spec, 30, NULL);
	write_pat(g, 65536, 1 << 20, 8, gen);
	guest_stop(g);
	assert_image(g, spec, gen);
	memset(gen, 0, IMG_SIZE / 512);
	assert_image(g, NULL, gen);   /* rbd/imgN, outside the namespace: untouched */
	free(gen);
}

/* rbd resize while the guest runs: a config interrupt, the new capacity, the new blocks usable. */
static void test_rbd_resize(void **state)
{
	struct guest *g = *state;
	uint8_t *gen = calloc(2 * IMG_SIZE / 512, 1);
	uint64_t cap = 0;
	bool irq = false;
	double t0;

	rbd_guest_start(g, g->img, 30, NULL);
	uint32_t cfg_gen = vdrv_read32(&g->drv, 0x0fc);

	t0 = now_ms();
	assert_int_equal(blk_sh("rbd --conf %s resize --size %u %s >/dev/null 2>&1", conf,
			     2 * IMG_MIB, g->img), 0);
	for (int waited = 0; waited < WAIT_MS && !irq; waited += 10)
		irq = vdrv_wait_isr(&g->drv, 10) & 2;   /* configuration change */
	assert_true(irq);
	print_message("rbd: config interrupt %.0f ms after rbd resize started\n", now_ms() - t0);
	vdrv_config_read(&g->drv, VIRTIO_BLK_CFG_CAPACITY, &cap, 8);
	assert_int_equal(le64toh(cap), 2 * IMG_SIZE / 512);
	assert_int_not_equal(vdrv_read32(&g->drv, 0x0fc), cfg_gen);
	write_pat(g, IMG_SIZE, 65536, 9, gen);
	scratch_reset(g);
	assert_guest_reads(g, IMG_SIZE, 65536, gen);
	assert_true(xsim_daemon_log_has(&g->t->dm, "capacity 65536 -> 131072 sectors"));
	guest_stop(g);
	free(gen);
}

/*
 * The OSD stops with 16 writes in flight and comes back: every write completes with its data
 * (io_timeout 30 s). Then it stays away past io_timeout (3 s): a read fails with IOERR, not a
 * hang; the daemon lives on and reads right once the OSD is back.
 */
static void test_rbd_osd_restart(void **state)
{
	struct guest *g = *state;
	uint8_t *gen = calloc(IMG_SIZE / 512, 1);
	struct req w[16];
	double t0;

	rbd_guest_start(g, g->img, 30, NULL);
	write_pat(g, 0, 4096, 1, gen);   /* takes the image's exclusive lock */
	assert_int_equal(cluster("osd-stop"), 0);
	scratch_reset(g);
	submit_pat_writes(g, w, 16, 7);
	memset(gen, 7, 16 * 65536 / 512);
	/* Submitted and waiting in librbd: nothing can complete while the OSD is down. */
	assert_false(w[0].done);
	assert_int_equal(cluster("osd-start"), 0);
	t0 = now_ms();
	wait_done(g, 16);
	print_message("rbd: 16 writes completed %.0f ms after the OSD was back\n", now_ms() - t0);
	for (unsigned i = 0; i < 16; i++)
		assert_int_equal(*w[i].status, VIRTIO_BLK_S_OK);
	assert_int_equal(do_req(g, VIRTIO_BLK_T_FLUSH, 0, NULL, 0), VIRTIO_BLK_S_OK);
	assert_image(g, NULL, gen);
	guest_stop(g);

	/* Away past io_timeout: IOERR within it (plus the 0.25 s deadline tick), not a hang. */
	rbd_guest_start(g, g->img, 3, NULL);
	assert_int_equal(cluster("osd-stop"), 0);
	uint8_t *h;
	struct vdrv_buf d = { galloc(g, 65536, 4096, (void **)&h), 65536, true };

	t0 = now_ms();
	assert_int_equal(do_req(g, VIRTIO_BLK_T_IN, 0, &d, 1), VIRTIO_BLK_S_IOERR);
	double took = now_ms() - t0;

	print_message("rbd: IOERR %.0f ms after the read (io_timeout 3 s, %s)\n", took,
		      xsim_daemon_log_has(&g->t->dm, "unanswered by the cluster") ?
		      "our deadline" : "librados' op timeout");
	assert_true(took < 3000 + 2000);
	assert_true(xsim_daemon_alive(&g->t->dm));
	assert_int_equal(cluster("osd-start"), 0);
	scratch_reset(g);
	t0 = now_ms();
	assert_guest_reads(g, 0, 16 * 65536, gen);
	print_message("rbd: the disk read right %.0f ms after the OSD was back\n", now_ms() - t0);
	assert_true(xsim_daemon_alive(&g->t->dm));
	guest_stop(g);
	free(gen);
}

/*
 * The monitor is stopped right after 16 writes were submitted (some may complete before it is
 * gone), then the guest writes and reads while it is away, then it comes back: I/O to the OSD
 * goes on without it (librados keeps its OSD sessions and hunts for a monitor meanwhile), every
 * request completes, and the data is right through the guest and in the cluster.
 */
static void test_rbd_mon_restart(void **state)
{
	struct guest *g = *state;
	uint8_t *gen = calloc(IMG_SIZE / 512, 1);
	struct req w[16];

	rbd_guest_start(g, g->img, 30, NULL);
	write_pat(g, 0, 4096, 1, gen);
	scratch_reset(g);
	submit_pat_writes(g, w, 16, 5);
	memset(gen, 5, 16 * 65536 / 512);
	assert_int_equal(cluster("mon-stop"), 0);
	wait_done(g, 16);
	for (unsigned i = 0; i < 16; i++)
		assert_int_equal(*w[i].status, VIRTIO_BLK_S_OK);
	scratch_reset(g);
	write_pat(g, 2u << 20, 65536, 6, gen);
	assert_guest_reads(g, 0, 16 * 65536, gen);
	assert_int_equal(cluster("mon-start"), 0);
	scratch_reset(g);
	write_pat(g, 3u << 20, 65536, 7, gen);
	assert_int_equal(do_req(g, VIRTIO_BLK_T_FLUSH, 0, NULL, 0), VIRTIO_BLK_S_OK);
	assert_image(g, NULL, gen);
	assert_true(xsim_daemon_alive(&g->t->dm));
	guest_stop(g);
	free(gen);
}

/*
 * The OSD SIGKILLed with 16 writes in flight (frozen with SIGSTOP first). Its memstore keeps data in memory only (saved at a
 * clean stop), so a killed OSD comes back with an older store: acknowledged data cannot be
 * checked here, only that every request is answered (OK or IOERR) within io_timeout, that
 * nothing hangs and that the daemon stays up. Last of the cluster tests: the store goes back.
 */
static void test_rbd_osd_sigkill(void **state)
{
	struct guest *g = *state;
	uint8_t *gen = calloc(IMG_SIZE / 512, 1);
	struct req w[16];
	unsigned ok = 0;
	double t0;

	rbd_guest_start(g, g->img, 4, NULL);
	write_pat(g, 0, 4096, 1, gen);
	scratch_reset(g);
	/* Frozen first, so the writes are surely at the OSD, unanswered, when it dies. */
	assert_int_equal(blk_sh("kill -STOP $(cat %s/ceph/osd.pid)", workdir), 0);
	submit_pat_writes(g, w, 16, 5);
	t0 = now_ms();
	assert_int_equal(cluster("osd-kill"), 0);
	wait_done(g, 16);
	for (unsigned i = 0; i < 16; i++)
		ok += *w[i].status == VIRTIO_BLK_S_OK;
	print_message("rbd: OSD frozen, writes sent, OSD killed: 16 writes answered %.0f ms after "
		      "they were sent (%u OK, %u IOERR; io_timeout 4 s)\n",
		      now_ms() - t0, ok, 16 - ok);
	assert_true(now_ms() - t0 < 4000 + 2000);
	assert_true(xsim_daemon_alive(&g->t->dm));
	assert_int_equal(cluster("osd-start"), 0);
	scratch_reset(g);
	uint8_t *h;
	struct vdrv_buf d = { galloc(g, 65536, 4096, (void **)&h), 65536, true };
	uint8_t st;

	t0 = now_ms();
	st = do_req(g, VIRTIO_BLK_T_IN, 0, &d, 1);
	print_message("rbd: a read after the OSD came back: %s in %.0f ms\n",
		      st == VIRTIO_BLK_S_OK ? "OK" : "IOERR", now_ms() - t0);
	assert_true(now_ms() - t0 < 4000 + 2000);
	assert_true(xsim_daemon_alive(&g->t->dm));
	guest_stop(g);
	free(gen);
}

/* The daemon started with ini; waits for its exit status. */
/*
 * The daemon SIGKILLed right after the guest's writes were answered (a writeback guest: a FLUSH
 * first, then writes without one): every answered write is in the cluster, as a restarted
 * instance must find it. A librbd cache in the daemon would have lost them with the process.
 */
static void test_rbd_daemon_killed(void **state)
{
	struct guest *g = *state;
	uint8_t *gen = calloc(IMG_SIZE / 512, 1);
	int st = 0;

	rbd_guest_start(g, g->img, 30, NULL);
	write_pat(g, 0, 65536, 1, gen);
	assert_int_equal(do_req(g, VIRTIO_BLK_T_FLUSH, 0, NULL, 0), VIRTIO_BLK_S_OK);
	for (unsigned i = 1; i <= 16; i++) {
		scratch_reset(g);
		write_pat(g, (uint64_t)i * 262144, 65536, 2 + i % 7, gen);
	}
	assert_int_equal(kill(g->t->dm.pid, SIGKILL), 0);
	assert_int_equal(xsim_daemon_wait_exit(&g->t->dm, 5000, &st), 0);
	assert_true(WIFSIGNALED(st));
	g->t->dm.pid = -1;
	assert_image(g, NULL, gen);
	free(gen);
}

static int daemon_exit_status(struct guest *g, const char *ini)
{
	const char *args[] = { "--foreground", "--config", NULL, NULL };
	int st = 0;

	g->t = itest_new(&(struct xsim_dom_opts){ .name = "g1", .ram_mib = 128 });
	assert_non_null(g->t);
	args[2] = g->t->ini;
	assert_int_equal(itest_write(g->t->ini, "%s", ini), 0);
	assert_int_equal(xsim_daemon_start(g->t->hub, &g->t->dm, XVD_SIM_DAEMON, "daemon", args,
					   0), 0);
	assert_int_equal(xsim_daemon_wait_exit(&g->t->dm, 30000, &st), 0);
	g->t->dm.pid = -1;
	assert_true(WIFEXITED(st));
	return WEXITSTATUS(st);
}

/* No monitor at start: retried (logged) for io_timeout, then exit 1 (transient, not 78). */
static void test_rbd_no_cluster_at_start(void **state)
{
	struct guest *g = *state;
	char ini[1024], c2[200];
	double t0;

	if (!conf[0])
		skip();
	snprintf(c2, sizeof(c2), "%s/nobody.conf", workdir);
	assert_int_equal(blk_sh("printf '[global]\\nmon host = v2:127.0.0.1:%d\\n' > %s",
			     nbdkit_free_port(), c2), 0);
	snprintf(ini, sizeof(ini),
		 "[guest]\nname = g1\ndiscovery = explicit\n\n[block \"root\"]\nmmio = 0x02000000\n"
		 "irq = 33\nrbd = rbd/img\nceph_conf = %s\nkeyring = %s/ceph/keyring\n"
		 "io_timeout = 2\n", c2, workdir);
	t0 = now_ms();
	assert_int_equal(daemon_exit_status(g, ini), 1);
	print_message("rbd: no cluster: exit 1 after %.1f s (io_timeout 2 s)\n",
		      (now_ms() - t0) / 1000);
	assert_true(xsim_daemon_log_has(&g->t->dm, "retrying (attempt 1)"));
	assert_true(xsim_daemon_log_has(&g->t->dm, "no Ceph cluster after 2 s"));
}

/* A pool or image that is not there: exit 1 at once, naming it. */
static void test_rbd_no_image(void **state)
{
	struct guest *g = *state;
	char ini[1024];

	if (!conf[0])
		skip();
	snprintf(ini, sizeof(ini),
		 "[guest]\nname = g1\ndiscovery = explicit\n\n[block \"root\"]\nmmio = 0x02000000\n"
		 "irq = 33\nrbd = rbd/nosuchimage\nceph_conf = %s\nkeyring = %s/ceph/keyring\n",
		 conf, workdir);
	assert_int_equal(daemon_exit_status(g, ini), 1);
	assert_true(xsim_daemon_log_has(&g->t->dm, "rbd image rbd/nosuchimage"));
}

/* A bad rbd value is a configuration error: exit 78 naming file:line: rbd, no cluster asked. */
static void test_rbd_bad_config(void **state)
{
	struct guest *g = *state;

	assert_int_equal(daemon_exit_status(g, "[guest]\nname = g1\ndiscovery = explicit\n\n"
					    "[block \"root\"]\nmmio = 0x02000000\nirq = 33\n"
					    "rbd = rbd//img\n"), 78);
	assert_true(xsim_daemon_log_has(&g->t->dm, ":8: rbd: 'rbd//img' is not POOL/IMAGE"));
}

int main(void)
{
#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)
	const struct CMUnitTest tests[] = {
		T(test_rbd_rw_depths), T(test_rbd_request_types), T(test_rbd_snapshot),
		T(test_rbd_namespace),
		T(test_rbd_resize), T(test_rbd_osd_restart), T(test_rbd_mon_restart),
		T(test_rbd_daemon_killed), T(test_rbd_osd_sigkill),
		T(test_rbd_no_cluster_at_start),
		T(test_rbd_no_image), T(test_rbd_bad_config),
	};
	char cmd[96];
	int rc;

	if (!mkdtemp(workdir))
		return 1;
	rc = cmocka_run_group_tests(tests, group_setup, group_teardown);
	snprintf(cmd, sizeof(cmd), "rm -rf %s", workdir);
	if (system(cmd) != 0)
		rc = rc ? rc : 1;
	return rc;
}
