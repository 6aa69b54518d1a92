/*
 * Restarts the guest does not notice (issue 22), through the real daemon on xensim: the daemon
 * is killed at each named point of a request's life (lib/testpoint.h: XSIM_KILL_AT makes it
 * SIGKILL itself there), a supervisor restarts it as systemd's Restart= does (with the file
 * descriptors it stored, as FileDescriptorStoreMax= keeps them), and the guest's driver, which
 * never stops or resets, must see every request complete exactly once, with the right data.
 * Also: SIGTERM while the guest lives hands over; a restart without the fd store still takes
 * the guest over; state for another domain that reused the id, or from another version, is
 * refused and the guest is served afresh.
 */
#include <endian.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
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
#include "tests/integration/itest.h"
#include "tests/integration/restart_rig.h"
#include "tests/lib/nbdkit.h"

#define RAM_GPA    UINT64_C(0x40000000)
#define HEAP_SIZE  (16u << 20)
#define SPI        33
#define BLOCKS     256u                 /* 4 KiB blocks the workload writes */
#define IMG_SIZE   (BLOCKS * 4096u)
#define DEPTH      8u                   /* requests in flight */
#define WAIT_MS    30000                /* a restart is a pause, never this long */
#define R_INT_STATUS 0x60
#define R_INT_ACK    0x64
#define RING (VIRTIO_BIT(VIRTIO_F_VERSION_1) | VIRTIO_BIT(VIRTIO_F_EVENT_IDX) | \
	      VIRTIO_BIT(VIRTIO_F_INDIRECT_DESC))
#define BLK (VIRTIO_BIT(VIRTIO_BLK_F_SEG_MAX) | VIRTIO_BIT(VIRTIO_BLK_F_BLK_SIZE) | \
	     VIRTIO_BIT(VIRTIO_BLK_F_FLUSH) | VIRTIO_BIT(VIRTIO_BLK_F_CONFIG_WCE))

/* ---- the guest: a virtio-blk driver that never resets ---- */

struct guest {
	struct rig *r;
	struct xsim_vio vio;
	struct vdrv_mem mem;
	struct vdrv drv;
	uint8_t *heap;
	uint64_t heap_gpa;
};

enum { REQ_FREE, REQ_OUT, REQ_DONE };

struct req {
	int state;
	uint32_t type;
	unsigned block, gen;
	uint32_t used_len;
	struct virtio_blk_outhdr *hdr;
	uint8_t *data, *status;
	uint64_t hdr_gpa, data_gpa, status_gpa;
};

struct load {
	struct req req[DEPTH];
	unsigned gen[BLOCKS];         /* the last acknowledged write of each block (0: none) */
	bool busy[BLOCKS];            /* a write is out: no second one to the same block */
	unsigned submitted, completed, duplicates, errors;
};

static uint8_t pat(unsigned block, unsigned gen, unsigned i)
{
	uint32_t x = (block + 1) * 2654435761u ^ gen * 40503u ^ i * 2246822519u;

	return (uint8_t)(x >> 13);
}

static void guest_start(struct rig *r, struct guest *g, struct load *l)
{
	uint64_t want = RING | BLK;

	memset(g, 0, sizeof(*g));
	memset(l, 0, sizeof(*l));
	g->r = r;
	xsim_vio_init(&g->vio, r->t->dom, 0, WIN0, SPI);
	g->vio.timeout_ms = WAIT_MS;
	assert_int_equal(xsim_vmem_init(&g->mem, r->t->dom, RAM_GPA, HEAP_SIZE, false), 0);
	assert_int_equal(vdrv_init(&g->drv, &g->vio.io, &g->mem, want, 1, 64), 0);
	assert_int_equal(g->drv.device_id, VIRTIO_ID_BLOCK);
	for (unsigned i = 0; i < DEPTH; i++) {
		struct req *q = &l->req[i];

		q->hdr_gpa = vdrv_alloc(&g->mem, 16, 16, (void **)&q->hdr);
		q->data_gpa = vdrv_alloc(&g->mem, 4096, 4096, (void **)&q->data);
		q->status_gpa = vdrv_alloc(&g->mem, 1, 1, (void **)&q->status);
		assert_true(q->hdr_gpa && q->data_gpa && q->status_gpa);
	}
}

static void req_submit(struct guest *g, struct load *l, struct req *q, uint32_t type,
		       unsigned block, unsigned gen)
{
	struct vdrv_buf b[3];
	unsigned n = 0;

	q->state = REQ_OUT;
	q->type = type;
	q->block = block;
	q->gen = gen;
	q->hdr->type = htole32(type);
	q->hdr->ioprio = 0;
	q->hdr->sector = htole64((uint64_t)block * 8);
	*q->status = 0xee;
	b[n++] = (struct vdrv_buf){ q->hdr_gpa, 16, false };
	if (type == VIRTIO_BLK_T_OUT) {
		for (unsigned i = 0; i < 4096; i++)
			q->data[i] = pat(block, gen, i);
		b[n++] = (struct vdrv_buf){ q->data_gpa, 4096, false };
		l->busy[block] = true;
	} else if (type == VIRTIO_BLK_T_IN) {
		memset(q->data, 0x5a, 4096);
		b[n++] = (struct vdrv_buf){ q->data_gpa, 4096, true };
	}
	b[n++] = (struct vdrv_buf){ q->status_gpa, 1, true };
	assert_true(vdrv_submit(&g->drv, 0, b, n, false, q) >= 0);
	l->submitted++;
}

/* Take what is used; a request used twice, or used while not out, is a duplicate. */
static void reap(struct guest *g, struct load *l)
{
	uint32_t len;
	void *tok;
	int rc;

	while ((rc = vdrv_get_used(&g->drv, 0, &len, &tok)) > 0) {
		struct req *q = tok;

		if (!q || q->state != REQ_OUT) {
			l->duplicates++;
			continue;
		}
		q->state = REQ_DONE;
		q->used_len = len;
		l->completed++;
		if (*q->status != VIRTIO_BLK_S_OK) {
			l->errors++;
			continue;
		}
		if (q->type == VIRTIO_BLK_T_OUT) {
			l->gen[q->block] = q->gen;
			l->busy[q->block] = false;
		}
	}
	assert_true(rc >= 0);
}

static void wait_some(struct guest *g, struct load *l, int64_t deadline)
{
	unsigned before = l->completed + l->duplicates;

	while (l->completed + l->duplicates == before) {
		if (now_ms() > deadline) {
			dump_logs(g->r);
			fail_msg("no completion for %d ms (%u of %u done, %u duplicates, %u "
				 "restarts; the guest sees avail %u used %u, took %u, %u access "
				 "errors)", WAIT_MS, l->completed, l->submitted, l->duplicates,
				 atomic_load(&g->r->restarts), le16toh(g->drv.vq[0].avail->idx),
				 le16toh(g->drv.vq[0].used->idx), g->drv.vq[0].last_used,
				 g->vio.errors);
		}
		reap(g, l);
		if (g->r->term_after && l->completed >= g->r->term_after) {
			kill(g->r->t->dm.pid, SIGTERM);
			g->r->term_after = 0;
		}
		if (l->completed + l->duplicates != before)
			break;
		vdrv_enable_irq(&g->drv, 0);
		reap(g, l);
		if (l->completed + l->duplicates != before)
			break;
		if (g->vio.io.wait_irq(&g->vio.io, 20) > 0) {
			uint32_t isr = vdrv_read32(&g->drv, R_INT_STATUS);

			if (isr)
				vdrv_write32(&g->drv, R_INT_ACK, isr);
		}
	}
}

/*
 * nreq writes (4 KiB, a new generation each, never two at once to one block) with a flush
 * every 16, DEPTH in flight; then every block read back through the device.
 */
static void run_load(struct guest *g, struct load *l, unsigned nreq)
{
	int64_t deadline = now_ms() + WAIT_MS;
	unsigned next = 0, seed = 12345;

	while (next < nreq || l->completed < l->submitted) {
		bool kicked = false;

		for (unsigned i = 0; i < DEPTH && next < nreq; i++) {
			struct req *q = &l->req[i];
			unsigned block;

			if (q->state == REQ_OUT)
				continue;
			seed = seed * 1103515245u + 12345u;
			block = (seed >> 8) % BLOCKS;
			if (next % 16 == 15) {
				req_submit(g, l, q, VIRTIO_BLK_T_FLUSH, 0, 0);
			} else {
				if (l->busy[block])
					continue;
				req_submit(g, l, q, VIRTIO_BLK_T_OUT, block, next + 1);
			}
			next++;
			kicked = true;
		}
		if (kicked) {
			int64_t t0 = now_ms();

			vdrv_kick(&g->drv, 0);
			/* A kick is answered within a restart's pause: say where one waited. */
			if (now_ms() - t0 > 5000) {
				fprintf(stderr, "a kick waited %lld ms\n", (long long)(now_ms() - t0));
				xsim_dom_dump(g->r->t->dom, stderr);
				dump_logs(g->r);
			}
		}
		wait_some(g, l, deadline);
		deadline = now_ms() + WAIT_MS;
	}
	assert_int_equal(l->duplicates, 0);
	assert_int_equal(l->errors, 0);
	assert_int_equal(g->vio.errors, 0);
	/* Every acknowledged write reads back: the guest's view, through the device. */
	for (unsigned b = 0; b < BLOCKS; b++) {
		struct req *q = &l->req[0];

		req_submit(g, l, q, VIRTIO_BLK_T_IN, b, 0);
		vdrv_kick(&g->drv, 0);
		while (q->state == REQ_OUT)
			wait_some(g, l, now_ms() + WAIT_MS);
		assert_int_equal(*q->status, VIRTIO_BLK_S_OK);
		for (unsigned i = 0; i < 4096; i++)
			if (q->data[i] != (l->gen[b] ? pat(b, l->gen[b], i) : 0))
				fail_msg("block %u byte %u: %#x, written as generation %u", b, i,
					 q->data[i], l->gen[b]);
	}
	assert_int_equal(l->duplicates, 0);
}

/* ---- fixtures ---- */

static char workdir[] = "/tmp/itest_restart.XXXXXX";

static void make_image(const char *path)
{
	int fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);

	assert_true(fd >= 0);
	assert_int_equal(ftruncate(fd, IMG_SIZE), 0);
	close(fd);
}

/* NBD runs: the disk is the image behind nbdkit (a child of the test, alive across restarts). */
static bool use_nbd;
static pid_t nbd_srv;
static char nbd_sock[160];

/* The disk's backend key: the image, or (use_nbd) nbdkit serving it. */
static void rig_backend(struct rig *r, char *key, size_t size)
{
	char file[224];
	const char *args[] = { "file", file, NULL };

	if (!use_nbd) {
		snprintf(key, size, "path = %s", r->img);
		return;
	}
	snprintf(file, sizeof(file), "file=%s", r->img);
	snprintf(nbd_sock, sizeof(nbd_sock), "%s/nbd.sock", workdir);
	nbd_srv = nbdkit_spawn(nbd_sock, args, WAIT_MS);
	assert_true(nbd_srv > 0);
	snprintf(key, size, "nbd = nbd+unix:///?socket=%s", nbd_sock);
}

/* A guest with one disk, its daemon started (killing itself at kill_at, when given). */
static void rig_start(struct rig *r, const char *extra, const char *kill_at)
{
	char ini[1024], backend[256];

	memset(r, 0, sizeof(*r));
	snprintf(r->img, sizeof(r->img), "%s/disk.img", workdir);
	make_image(r->img);
	rig_backend(r, backend, sizeof(backend));
	r->t = itest_new(&(struct xsim_dom_opts){ .name = "g1", .ram_mib = 64, .nr_vcpus = 2 });
	assert_non_null(r->t);
	snprintf(ini, sizeof(ini),
		 "[guest]\nname = g1\ndiscovery = explicit\n%s\n"
		 "[block \"root\"]\nmmio = 0x02000000\nirq = 33\n%s\nqueue_size = 64\n",
		 extra ? extra : "", backend);
	rig_launch(r, ini, kill_at);
}

static void rig_stop(struct rig *r)
{
	rig_unsupervise(r);
	itest_free(r->t);
	r->t = NULL;
	if (use_nbd) {
		nbdkit_kill(nbd_srv, nbd_sock);
		nbd_srv = 0;
	}
	unlink(r->img);
}

/* ---- the kill-point matrix, block ---- */

struct point {
	const char *at;
	const char *extra;
};

static const struct point blk_points[] = {
	{ "vq.pop:40", NULL },
	{ "vq.pop.marked:40", NULL },
	{ "vq.popped:40", NULL },
	{ "blk.submitted:30", NULL },
	{ "vq.push:40", NULL },
	{ "vq.push.published:40", NULL },
	{ "vdev.irq:40", NULL },
	/* The same without the notify fast path: every kick through the main server. */
	{ "vq.popped:40", "notify_fastpath = off\n" },
	{ "vq.push.published:40", "notify_fastpath = off\n" },
};

static void blk_kill_at(const struct point *p, bool keep_store, unsigned again)
{
	struct rig r;
	struct guest g;
	struct load l;

	rig_start(&r, p->extra, p->at);
	r.keep_store = keep_store;
	r.kills_left = again;
	snprintf(r.kill_at, sizeof(r.kill_at), "%s", p->at);
	rig_supervise(&r);
	guest_start(&r, &g, &l);
	run_load(&g, &l, 300);
	if (atomic_load(&r.restarts) != 1 + again) {
		dump_logs(&r);
		fail_msg("%s: %u restarts, %u expected", p->at, atomic_load(&r.restarts),
			 1 + again);
	}
	assert_true(took_over(&r, 1, "took over"));
	rig_stop(&r);
}

static void test_blk_kill_points(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof(blk_points) / sizeof(blk_points[0]); i++) {
		fprintf(stderr, "# block, killed at %s%s\n", blk_points[i].at,
			blk_points[i].extra ? " (fast path off)" : "");
		blk_kill_at(&blk_points[i], true, 0);
	}
}

/* Killed three times in a row, the fd store emptied each time (a manual start). */
/*
 * Without the fd store the fast path does not survive a crash (a kick the dead instance's
 * ioeventfd takes while no instance runs is never answered: docs/operations.md), so what runs
 * without one is the ioreq path, which auto picks without a service manager.
 */
static void test_blk_kill_without_store(void **state)
{
	static const struct point p[] = {
		{ "vq.popped:40", "notify_fastpath = off" },
		{ "blk.submitted:25", "notify_fastpath = off" },
	};

	(void)state;
	for (size_t i = 0; i < sizeof(p) / sizeof(p[0]); i++) {
		fprintf(stderr, "# block, no fd store, killed at %s three times\n", p[i].at);
		blk_kill_at(&p[i], false, 2);
	}
}

/*
 * The same on an NBD disk (nbdkit stays up): requests held by the NBD engine at the kill are
 * replayed by the next instance, SIGTERM hands the guest over with requests on the wire.
 */
static void test_nbd_kill_points(void **state)
{
	static const struct point p[] = {
		{ "vq.popped:40", NULL },
		{ "vq.push.published:40", NULL },
		{ "vdev.irq:40", NULL },
	};

	(void)state;
	if (!nbdkit_available())
		skip();
	use_nbd = true;
	for (size_t i = 0; i < sizeof(p) / sizeof(p[0]); i++) {
		fprintf(stderr, "# nbd block, killed at %s\n", p[i].at);
		blk_kill_at(&p[i], true, 0);
	}
	use_nbd = false;
}

static void guest_reads_disk(struct rig *r);
static void restart_daemon(struct rig *r);

/*
 * The fast path's takeover without the fd store, the guest idle at the crash: the dead
 * instance's ioeventfds keep the notify server's ports bound in the kernel, so Xen refuses to
 * bind them again (EINVAL); the next instance takes the main server over all the same, routes
 * the kicks back to it and makes a new notify server (before: "serving the guest afresh").
 */
static void test_fastpath_takeover_without_store(void **state)
{
	struct rig r;
	int st;

	(void)state;
	rig_start(&r, NULL, NULL);
	guest_reads_disk(&r);
	assert_int_equal(kill(r.t->dm.pid, SIGKILL), 0);
	assert_int_equal(xsim_daemon_wait_exit(&r.t->dm, READY_MS, &st), 0);
	rig_empty_store(&r);
	restart_daemon(&r);
	assert_true(xsim_daemon_log_has(&r.t->dm, "keeps its ports"));
	assert_true(xsim_daemon_log_has(&r.t->dm, "took over ioreq server"));
	guest_reads_disk(&r);
	rig_stop(&r);
}

/*
 * systemctl restart (an upgrade): SIGTERM while the guest writes; the daemon hands the guest
 * over instead of removing its devices, and the next instance serves on without an error.
 */
static void test_sigterm_hands_over(void **state)
{
	struct rig r;
	struct guest g;
	struct load l;
	struct xsim_daemon first = { .pid = -1 };

	(void)state;
	rig_start(&r, NULL, NULL);
	r.restart_clean = true;
	r.term_after = 60;
	rig_supervise(&r);
	guest_start(&r, &g, &l);
	run_load(&g, &l, 300);
	assert_int_equal(atomic_load(&r.restarts), 1);
	snprintf(first.log_path, sizeof(first.log_path), "%s/daemon.log", xsim_hub_dir(r.t->hub));
	assert_true(xsim_daemon_log_has(&first, "left the guest to the next instance"));
	assert_true(took_over(&r, 1, "took over ioreq server"));
	rig_stop(&r);
}

/* The hand-over (SIGTERM, the guest writing) on an NBD disk. */
static void test_nbd_sigterm_hands_over(void **state)
{
	if (!nbdkit_available())
		skip();
	use_nbd = true;
	test_sigterm_hands_over(state);
	use_nbd = false;
}

/*
 * systemctl restart, then a crash of the instance it started: the third instance must find
 * the second one's notify eventfds in the fd store and deassign them. The second instance's
 * own stores of them were once dropped again as it started (it closed the first instance's
 * descriptors of the same names, left over from the handover, with FDSTOREREMOVE): the second
 * instance's ioeventfds then stayed assigned in the kernel, on ports the kept event channel
 * handle still had bound, and took every kick of the guest to an eventfd nobody read.
 */
static void test_sigterm_then_kill(void **state)
{
	struct rig r;
	struct guest g;
	struct load l;

	(void)state;
	rig_start(&r, NULL, NULL);
	r.restart_clean = true;
	r.term_after = 60;
	r.kills_left = 1;
	snprintf(r.kill_at, sizeof(r.kill_at), "vq.popped:40");
	rig_supervise(&r);
	guest_start(&r, &g, &l);
	run_load(&g, &l, 300);
	if (atomic_load(&r.restarts) != 2) {
		dump_logs(&r);
		fail_msg("%u restarts, 2 expected", atomic_load(&r.restarts));
	}
	assert_true(took_over(&r, 2, "the previous instance's 1 ioeventfds removed"));
	rig_stop(&r);
}

/* Kill the daemon and wait until it is gone (no supervisor: the test restarts it). */
static void kill_daemon(struct rig *r)
{
	int st;

	assert_int_equal(kill(r->t->dm.pid, SIGKILL), 0);
	assert_int_equal(xsim_daemon_wait_exit(&r->t->dm, 5000, &st), 0);
	assert_true(WIFSIGNALED(st));
}

/* Start the daemon again (same command line, fd store kept) and wait until it serves. */
static void restart_daemon(struct rig *r)
{
	int rc;

	assert_int_equal(xsim_daemon_restart(r->t->hub, &r->t->dm, XVD_SIM_DAEMON, "daemon2",
					     r->args, 0), 0);
	rc = xsim_daemon_wait_ready(&r->t->dm, READY_MS);
	if (rc < 0)
		itest_dump_log(r->t);
	assert_int_equal(rc, 0);
}

/* A fresh driver on the disk, whatever the daemon kept: the device answers and reads zeros. */
static void guest_reads_disk(struct rig *r)
{
	struct guest g;
	struct load l;
	struct req *q;

	guest_start(r, &g, &l);
	q = &l.req[0];
	req_submit(&g, &l, q, VIRTIO_BLK_T_IN, 3, 0);
	vdrv_kick(&g.drv, 0);
	while (q->state == REQ_OUT)
		wait_some(&g, &l, now_ms() + WAIT_MS);
	assert_int_equal(*q->status, VIRTIO_BLK_S_OK);
}

/*
 * The guest died while no daemon ran and Xen gave its id to a new domain of the same name:
 * the state file names the old domain's handle, so it is not taken over; the new domain is
 * served afresh.
 */
static void test_reused_domid_refused(void **state)
{
	struct xsim_dom_opts o = { .name = "g1", .ram_mib = 64, .nr_vcpus = 2 };
	struct rig r;

	(void)state;
	rig_start(&r, NULL, NULL);
	kill_daemon(&r);
	o.domid = xsim_dom_id(r.t->dom);
	assert_int_equal(xsim_dom_destroy(r.t->dom), 0);
	r.t->dom = xsim_dom_create(r.t->hub, &o);
	assert_non_null(r.t->dom);
	assert_int_equal(xsim_dom_id(r.t->dom), o.domid);
	restart_daemon(&r);
	/* Removed as stale before it is even opened, or refused when opened. */
	assert_true(xsim_daemon_log_has(&r.t->dm, "g1.state removed: its domain is gone") ||
		    xsim_daemon_log_has(&r.t->dm, "for another domain that had this id"));
	assert_false(xsim_daemon_log_has(&r.t->dm, "took over"));
	guest_reads_disk(&r);
	rig_stop(&r);
}

/*
 * A state file from another version of xen-virtiod is refused with a warning that says what
 * it means; the daemon serves the guest afresh (the old servers are left: it cannot read
 * which they are, and says so).
 */
static void test_foreign_version_refused(void **state)
{
	char path[256];
	uint32_t version = 999;
	struct rig r;
	int fd;

	(void)state;
	rig_start(&r, NULL, NULL);
	kill_daemon(&r);
	snprintf(path, sizeof(path), "%s/g1.state", xsim_hub_dir(r.t->hub));
	fd = open(path, O_RDWR);
	assert_true(fd >= 0);
	/* The header: 8 bytes of magic, then the version. */
	assert_int_equal(pwrite(fd, &version, sizeof(version), 8), (ssize_t)sizeof(version));
	close(fd);
	restart_daemon(&r);
	assert_true(xsim_daemon_log_has(&r.t->dm, "written by an incompatible version"));
	assert_true(xsim_daemon_log_has(&r.t->dm, "restart the guest if they do not answer"));
	assert_false(xsim_daemon_log_has(&r.t->dm, "took over"));
	guest_reads_disk(&r);
	rig_stop(&r);
}

/*
 * The configuration changed between the two instances: the devices are not taken over, and
 * the servers the previous instance left are removed (answered first), so the new ones serve.
 */
static void test_changed_config_cleans_up(void **state)
{
	struct rig r;
	FILE *f;

	(void)state;
	rig_start(&r, NULL, NULL);
	kill_daemon(&r);
	f = fopen(r.t->ini, "a");
	assert_non_null(f);
	fprintf(f, "\n[rng]\nmmio = 0x02000200\nirq = 34\n");
	fclose(f);
	restart_daemon(&r);
	assert_true(xsim_daemon_log_has(&r.t->dm, "for another configuration of the devices"));
	assert_true(xsim_daemon_log_has(&r.t->dm, "which the previous instance left"));
	assert_true(xsim_dom_routed(r.t->dom, WIN1));
	guest_reads_disk(&r);
	rig_stop(&r);
}

static bool file_exists(const char *dir, const char *name)
{
	char path[256];

	snprintf(path, sizeof(path), "%s/%s", dir, name);
	return access(path, F_OK) == 0;
}

/* A second guest with an rng, served by its own daemon (dm), which is then killed. */
static struct xsim_dom *second_guest_killed(struct rig *r, struct xsim_daemon *dm)
{
	struct xsim_dom *d2 = xsim_dom_create(r->t->hub, &(struct xsim_dom_opts){
						      .name = "g2", .ram_mib = 16 });
	char ini[256];
	const char *args[] = { "--foreground", "--config", ini, NULL };
	int st;

	assert_non_null(d2);
	snprintf(ini, sizeof(ini), "%s/g2.ini", xsim_hub_dir(r->t->hub));
	assert_int_equal(itest_write(ini, "[guest]\nname = g2\ndiscovery = explicit\n"
				     "[rng]\nmmio = 0x02000000\nirq = 33\n"), 0);
	assert_int_equal(xsim_daemon_start(r->t->hub, dm, XVD_SIM_DAEMON, "g2", args, 0), 0);
	assert_int_equal(xsim_daemon_wait_ready(dm, READY_MS), 0);
	kill(dm->pid, SIGKILL);
	assert_int_equal(xsim_daemon_wait_exit(dm, 5000, &st), 0);
	assert_true(file_exists(xsim_hub_dir(r->t->hub), "g2.state"));
	return d2;
}

/*
 * A guest that died while no instance ran for it leaves its state file behind; the next
 * instance started for any guest removes it (its domain is gone), and keeps the live ones.
 */
static void test_stale_state_removed(void **state)
{
	struct xsim_daemon dm2;
	struct rig r;

	(void)state;
	rig_start(&r, NULL, NULL);
	assert_int_equal(xsim_dom_destroy(second_guest_killed(&r, &dm2)), 0);
	xsim_daemon_stop(&dm2);
	kill_daemon(&r);
	restart_daemon(&r);
	assert_false(file_exists(xsim_hub_dir(r.t->hub), "g2.state"));
	assert_true(file_exists(xsim_hub_dir(r.t->hub), "g1.state"));
	assert_true(xsim_daemon_log_has(&r.t->dm, "took over ioreq server"));
	rig_stop(&r);
}

/* Watch mode removes the state file of a guest that goes while its instance is not running. */
static void test_watch_removes_stale_state(void **state)
{
	const char *args[] = { "--watch", "--config-dir", "/nonexistent", "--foreground", NULL };
	struct xsim_daemon dm2, w;
	struct xsim_dom *d2;
	char path[256];
	struct rig r;

	(void)state;
	rig_start(&r, NULL, NULL);
	d2 = second_guest_killed(&r, &dm2);
	xsim_daemon_stop(&dm2);
	/* Watch mode reports guests with backend directories: give g2 one. */
	snprintf(path, sizeof(path), "/local/domain/0/backend/virtio/%u/0/type",
		 xsim_dom_id(d2));
	assert_int_equal(xsim_xs_write(r.t->hub, path, "virtio,device4"), 0);
	assert_int_equal(xsim_daemon_start(r.t->hub, &w, XVD_SIM_DAEMON, "watch", args,
					   XSIM_DAEMON_NO_NOTIFY), 0);
	assert_true(xsim_daemon_wait_log(&w, "watching for guests", READY_MS));
	assert_true(file_exists(xsim_hub_dir(r.t->hub), "g2.state"));
	/* g2 goes (libxl removes its backend directory, then the domain). */
	snprintf(path, sizeof(path), "/local/domain/0/backend/virtio/%u", xsim_dom_id(d2));
	assert_int_equal(xsim_xs_rm(r.t->hub, path), 0);
	assert_int_equal(xsim_dom_destroy(d2), 0);
	assert_true(xsim_daemon_wait_log(&w, "state files of domains that are gone removed",
					 READY_MS));
	assert_false(file_exists(xsim_hub_dir(r.t->hub), "g2.state"));
	assert_true(file_exists(xsim_hub_dir(r.t->hub), "g1.state"));
	xsim_daemon_stop(&w);
	rig_stop(&r);
}

/* A second instance for a guest that one serves already is refused: two would both answer. */
static void test_second_instance_refused(void **state)
{
	struct xsim_daemon dm2;
	struct rig r;
	int st;

	(void)state;
	rig_start(&r, NULL, NULL);
	assert_int_equal(xsim_daemon_start(r.t->hub, &dm2, XVD_SIM_DAEMON, "second", r.args, 0),
			 0);
	assert_int_equal(xsim_daemon_wait_exit(&dm2, READY_MS, &st), 0);
	assert_true(WIFEXITED(st));
	assert_int_equal(WEXITSTATUS(st), 1);
	assert_true(xsim_daemon_log_has(&dm2, "this guest is served already"));
	xsim_daemon_stop(&dm2);
	/* The first one still serves, and its state file is still there. */
	guest_reads_disk(&r);
	assert_true(file_exists(xsim_hub_dir(r.t->hub), "g1.state"));
	rig_stop(&r);
}

/*
 * A new instance started while the one before still holds the state file, as one that was just
 * killed does until the kernel has torn it down (a restart that did not wait for the exit; the
 * e2e restart scenario met it under load): it waits for the lock and takes the guest over.
 */
static void test_lock_waits_for_exiting_instance(void **state)
{
	struct xsim_daemon dm2;
	struct rig r;

	(void)state;
	rig_start(&r, NULL, NULL);
	assert_int_equal(kill(r.t->dm.pid, SIGSTOP), 0);    /* holds the lock, does not exit */
	assert_int_equal(xsim_daemon_start(r.t->hub, &dm2, XVD_SIM_DAEMON, "second", r.args, 0),
			 0);
	assert_true(xsim_daemon_wait_log(&dm2, "waiting up to 5 s for the instance that holds it",
					 READY_MS));
	assert_int_equal(kill(r.t->dm.pid, SIGKILL), 0);
	xsim_daemon_stop(&r.t->dm);
	assert_int_equal(xsim_daemon_wait_ready(&dm2, READY_MS), 0);
	assert_true(xsim_daemon_log_has(&dm2, "taking the guest over"));
	r.t->dm = dm2;
	guest_reads_disk(&r);
	rig_stop(&r);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_blk_kill_points),
		cmocka_unit_test(test_blk_kill_without_store),
		cmocka_unit_test(test_fastpath_takeover_without_store),
		cmocka_unit_test(test_sigterm_hands_over),
		cmocka_unit_test(test_nbd_kill_points),
		cmocka_unit_test(test_nbd_sigterm_hands_over),
		cmocka_unit_test(test_sigterm_then_kill),
		cmocka_unit_test(test_reused_domid_refused),
		cmocka_unit_test(test_foreign_version_refused),
		cmocka_unit_test(test_changed_config_cleans_up),
		cmocka_unit_test(test_stale_state_removed),
		cmocka_unit_test(test_watch_removes_stale_state),
		cmocka_unit_test(test_second_instance_refused),
		cmocka_unit_test(test_lock_waits_for_exiting_instance),
	};

	return rig_run(tests, sizeof(tests) / sizeof(tests[0]), workdir);
}
