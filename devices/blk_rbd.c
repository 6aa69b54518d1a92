/*
 * virtio-blk's Ceph RBD engine: librbd's asynchronous calls, completions on the host's loop.
 *
 * librbd runs its I/O on its own threads. None of our code runs there: completions are created
 * without a callback and the image signals an eventfd for each one (rbd_set_image_notification);
 * that eventfd is an ev_io on the loop, which takes every finished completion with
 * rbd_poll_io_events() and hands the commands back, then calls the batch callback once. The
 * resize watch (rbd_update_watch) has to be a callback: it only writes a second eventfd, and
 * the loop reads the new size.
 *
 * A command is HELD from submission until librbd lets go of it. Writethrough writes (fua) are a
 * write, then a flush (librbd's cache may hold the write), before they are answered.
 *
 * Deadlines: librados' own op timeouts (rados_osd_op_timeout, rados_mon_op_timeout) are set to
 * io_timeout, so librbd gives up by itself. Should it not (its own retries), every command gets
 * an answer within io_timeout of its submission anyway: a tick finds the ones past their
 * deadline and answers them -ETIMEDOUT as `late` (devices/blk_nbd.h): their buffers stay ours
 * until librbd finishes with them, so nothing writes into freed memory.
 *
 * Built when librbd is found (XVD_HAVE_RBD); devices/blk_rbd_none.c stands in otherwise.
 */
#ifdef XVD_HAVE_RBD
#include <dlfcn.h>
#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <rados/librados.h>
#include <rbd/librbd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#include "devices/blk_rbd.h"
#include "lib/log.h"
#include "lib/util.h"

#define RBD_TICK_S       0.25      /* deadline checks while commands are held */
#define RBD_RETRY_MIN_S  0.2       /* connecting at start: backoff between attempts */
#define RBD_RETRY_MAX_S  2.0
#define RBD_POLL_MAX     64        /* completions taken per rbd_poll_io_events() */

/*
 * librbd (and librados under it) are opened with the first rbd disk, not linked: they bring
 * Ceph's common library, Boost and libstdc++ along, 17 MiB of RSS and 3.2 MiB of private memory
 * per instance (rss_bench, four devices), which an instance without rbd disks should not carry.
 * Loaded once, never unloaded (their threads and static objects stay).
 */
#define RBD_SONAME "librbd.so.1"
#define RBD_LIB_SYMS(X) \
	X(rados_create) X(rados_conf_set) X(rados_conf_read_file) X(rados_connect) X(rados_shutdown) \
	X(rados_ioctx_create) X(rados_ioctx_destroy) X(rados_ioctx_set_namespace) X(rbd_open) \
	X(rbd_open_read_only) X(rbd_close) X(rbd_stat) X(rbd_get_size) X(rbd_aio_create_completion) \
	X(rbd_aio_release) X(rbd_aio_get_arg) X(rbd_aio_get_return_value) \
	X(rbd_aio_wait_for_complete) X(rbd_aio_read) X(rbd_aio_write) X(rbd_aio_flush) \
	X(rbd_aio_discard) X(rbd_aio_write_zeroes) X(rbd_poll_io_events) \
	X(rbd_set_image_notification) X(rbd_update_watch) X(rbd_update_unwatch)

static struct {
	void *handle;
#define X(sym) __typeof__(sym) *sym;
	RBD_LIB_SYMS(X)
#undef X
} ceph;

static int rbd_load(const char *name)
{
	void *h;
	const char *missing = NULL;

	if (ceph.handle)
		return 0;
	h = dlopen(RBD_SONAME, RTLD_NOW | RTLD_LOCAL);
	if (!h) {
		log_err("%s: rbd disks need %s (Debian: librbd1): %s", name, RBD_SONAME, dlerror());
		return -ENOTSUP;
	}
	/* dlsym() on the handle searches librbd and what it loaded: librados. */
#define X(sym)                                                              \
	if (!missing && !(*(void **)&ceph.sym = dlsym(h, #sym)))          \
		missing = #sym;
	RBD_LIB_SYMS(X)
#undef X
	if (missing) {
		log_err("%s: %s has no %s: librbd too old", name, RBD_SONAME, missing);
		dlclose(h);
		memset(&ceph, 0, sizeof(ceph));
		return -ENOTSUP;
	}
	ceph.handle = h;
	return 0;
}

enum { CMD_HELD, CMD_FAILED };     /* FAILED: refused at submission, answered by the next reap */

struct blk_rbd {
	struct ev_loop *loop;
	char name[64];
	unsigned timeout;                /* io_timeout, seconds */
	rados_t cluster;
	rados_ioctx_t io;
	rbd_image_t img;
	bool cluster_ok, io_ok, img_ok, watching;
	uint64_t watch;
	int efd;                         /* librbd: completions are ready */
	int wfd;                         /* the watch: the header changed */
	ev_io efd_w, wfd_w;
	ev_timer tick;                   /* deadlines, while unanswered commands are held */
	struct blk_nbd_cmd *head, *tail; /* held, oldest first */
	unsigned held, unanswered, failed;
	struct blk_rbd_info info;
	blk_nbd_done_fn *done;
	blk_nbd_batch_fn *batch;
	blk_rbd_changed_fn *changed;
	void *opaque;
};

static double rbd_mono(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

/* ---- the held list ---------------------------------------------------------------------- */

static void rbd_link(struct blk_rbd *r, struct blk_nbd_cmd *c)
{
	blk_cmd_append(&r->head, &r->tail, c);
	r->held++;
	r->unanswered++;
}

static void rbd_unlink(struct blk_rbd *r, struct blk_nbd_cmd *c)
{
	blk_cmd_remove(&r->head, &r->tail, c);
	r->held--;
}

/* First answer of c: the guest's (its buffer may still be librbd's when late). */
static void rbd_answer(struct blk_rbd *r, struct blk_nbd_cmd *c, int res, bool late)
{
	r->unanswered--;
	c->res = res;
	c->late = late;
	r->done(c, r->opaque);
}

static void rbd_tick_update(struct blk_rbd *r)
{
	if (r->unanswered && !ev_is_active(&r->tick)) {
		ev_timer_set(&r->tick, RBD_TICK_S, RBD_TICK_S);
		ev_timer_start(r->loop, &r->tick);
	} else if (!r->unanswered && ev_is_active(&r->tick)) {
		ev_timer_stop(r->loop, &r->tick);
	}
}

/* ---- requests ---------------------------------------------------------------------------- */

/* Start c's librbd call (its flush, at stage 1). 0 or -errno; completions arrive on efd. */
static int rbd_issue(struct blk_rbd *r, struct blk_nbd_cmd *c)
{
	unsigned op = c->stage ? BLK_OP_FLUSH : c->op;
	rbd_completion_t comp;
	int rc = ceph.rbd_aio_create_completion(c, NULL, &comp);

	if (rc < 0)
		return rc;
	switch (op) {
	case BLK_OP_READ:
		rc = ceph.rbd_aio_read(r->img, c->off, c->len, c->buf, comp);
		break;
	case BLK_OP_WRITE:
		rc = ceph.rbd_aio_write(r->img, c->off, c->len, c->buf, comp);
		break;
	case BLK_OP_FLUSH:
		rc = ceph.rbd_aio_flush(r->img, comp);
		break;
	case BLK_OP_DISCARD:
		rc = ceph.rbd_aio_discard(r->img, c->off, c->len, comp);
		break;
	default:
		/* Without UNMAP the zeroes stay allocated, as virtio asks. */
		rc = ceph.rbd_aio_write_zeroes(r->img, c->off, c->len, comp,
					  c->unmap ? 0 : RBD_WRITE_ZEROES_FLAG_THICK_PROVISION, 0);
		break;
	}
	if (rc < 0)
		ceph.rbd_aio_release(comp);
	else
		c->handle = comp;
	return rc < 0 ? rc : 0;
}

void blk_rbd_submit(struct blk_rbd *r, struct blk_nbd_cmd *c)
{
	int rc;

	c->res = 0;
	c->stage = 0;
	c->late = false;
	c->handle = NULL;
	c->state = CMD_HELD;
	c->deadline = ev_now(r->loop) + r->timeout;
	rbd_link(r, c);
	rc = rbd_issue(r, c);
	if (rc < 0) {
		/* Answered from the loop, never from inside the caller's submission. */
		c->res = rc;
		c->state = CMD_FAILED;
		r->failed++;
		ev_feed_event(r->loop, &r->efd_w, EV_READ);
	}
	rbd_tick_update(r);
}

static bool rbd_needs_flush(const struct blk_nbd_cmd *c)
{
	return c->fua && c->stage == 0 && c->op != BLK_OP_READ && c->op != BLK_OP_FLUSH;
}

/* librbd finished c's call with ret (bytes, or -errno). */
static void rbd_finish(struct blk_rbd *r, struct blk_nbd_cmd *c, ssize_t ret)
{
	c->handle = NULL;
	if (ret >= 0 && !c->late && rbd_needs_flush(c)) {
		c->stage = 1;
		ret = rbd_issue(r, c);
		if (ret == 0)
			return;
	}
	rbd_unlink(r, c);
	if (c->late) {   /* answered past its deadline: now the buffer is free */
		c->late = false;
		r->done(c, r->opaque);
		return;
	}
	/* librbd stops a read at the image's end (a shrink since the request was checked). */
	if (c->op == BLK_OP_READ && ret >= 0 && (uint64_t)ret < c->len)
		memset((char *)c->buf + ret, 0, c->len - (uint64_t)ret);
	rbd_answer(r, c, ret < 0 ? (int)ret : 0, false);
}

/* Every completion librbd has ready, then what failed at submission. */
static void rbd_reap(struct blk_rbd *r)
{
	rbd_completion_t comps[RBD_POLL_MAX];
	uint64_t v;
	int n;

	/* Read before polling: a completion queued after the poll writes the eventfd again. */
	if (read(r->efd, &v, sizeof(v)) < 0 && errno != EAGAIN)
		log_warn("%s: rbd eventfd: %s", r->name, strerror(errno));
	while ((n = ceph.rbd_poll_io_events(r->img, comps, RBD_POLL_MAX)) > 0) {
		for (int i = 0; i < n; i++) {
			struct blk_nbd_cmd *c = ceph.rbd_aio_get_arg(comps[i]);
			ssize_t ret = ceph.rbd_aio_get_return_value(comps[i]);

			ceph.rbd_aio_release(comps[i]);
			rbd_finish(r, c, ret);
		}
	}
	for (struct blk_nbd_cmd *c = r->head, *next; c && r->failed; c = next) {
		next = c->next;
		if (c->state != CMD_FAILED)
			continue;
		r->failed--;
		rbd_unlink(r, c);
		rbd_answer(r, c, c->res, false);
	}
	rbd_tick_update(r);
}

static void rbd_efd_cb(struct ev_loop *loop, ev_io *w, int revents)
{
	struct blk_rbd *r = container_of(w, struct blk_rbd, efd_w);

	(void)loop, (void)revents;
	rbd_reap(r);
	r->batch(r->opaque);
}

/* Answer every unanswered command past its deadline -ETIMEDOUT (late: librbd still has it). */
static void rbd_tick_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct blk_rbd *r = container_of(w, struct blk_rbd, tick);
	ev_tstamp now = ev_now(loop);
	unsigned n = 0;

	(void)revents;
	for (struct blk_nbd_cmd *c = r->head; c; c = c->next) {
		if (c->late || c->state != CMD_HELD || c->deadline > now)
			continue;
		rbd_answer(r, c, -ETIMEDOUT, true);
		n++;
	}
	if (n) {
		log_warn("%s: %u requests unanswered by the cluster after %u s: failed (IOERR)",
			 r->name, n, r->timeout);
		r->batch(r->opaque);
	}
	rbd_tick_update(r);
}

/* ---- resize ------------------------------------------------------------------------------ */

/* On a librbd thread: touch nothing but the eventfd. */
static void rbd_watch_cb(void *arg)
{
	const uint64_t one = 1;

	if (write(*(const int *)arg, &one, sizeof(one)) < 0) {
		/* EAGAIN: the counter is already set, the loop will look. */
	}
}

static void rbd_wfd_cb(struct ev_loop *loop, ev_io *w, int revents)
{
	struct blk_rbd *r = container_of(w, struct blk_rbd, wfd_w);
	uint64_t v, size;
	int rc;

	(void)loop, (void)revents;
	if (read(r->wfd, &v, sizeof(v)) < 0)
		return;
	/* The header changed (size, snapshots, features...): only a new size matters here. */
	rc = ceph.rbd_get_size(r->img, &size);
	if (rc < 0) {
		log_warn("%s: rbd image changed, its size unreadable: %s", r->name, strerror(-rc));
		return;
	}
	if (size == r->info.size)
		return;
	r->info.size = size;
	r->changed(r->opaque);
}

/* ---- opening ----------------------------------------------------------------------------- */

/* POOL/IMAGE or POOL/NAMESPACE/IMAGE, optionally @SNAP (config/config.c checked the form). */
static int rbd_split(const char *spec, char *buf, size_t size, const char **pool,
		     const char **ns, const char **image, const char **snap)
{
	char *at, *s1, *s2;

	if (strlen(spec) >= size)
		return -EINVAL;
	memcpy(buf, spec, strlen(spec) + 1);
	at = strchr(buf, '@');
	if (at)
		*at++ = '\0';
	*snap = at;
	s1 = strchr(buf, '/');
	if (!s1)
		return -EINVAL;
	*s1++ = '\0';
	s2 = strchr(s1, '/');
	if (s2)
		*s2++ = '\0';
	*pool = buf;
	*ns = s2 ? s1 : "";
	*image = s2 ? s2 : s1;
	return 0;
}

static int rbd_conf(rados_t cl, const char *key, const char *val)
{
	int rc = ceph.rados_conf_set(cl, key, val);

	if (rc < 0)
		log_err("ceph option %s = %s: %s", key, val, strerror(-rc));
	return rc;
}

/* One attempt at the monitors, waiting at most wait_s. */
static int rbd_connect_once(struct blk_rbd *r, const struct config_block *c, unsigned wait_s)
{
	char t[16], w[16];
	int rc = ceph.rados_create(&r->cluster, c->ceph_id[0] ? c->ceph_id : NULL);

	if (rc < 0)
		return rc;
	snprintf(t, sizeof(t), "%u", r->timeout);
	snprintf(w, sizeof(w), "%u", wait_s);
	rc = ceph.rados_conf_read_file(r->cluster, c->ceph_conf[0] ? c->ceph_conf : NULL);
	if (rc < 0)
		log_err("%s: ceph_conf %s: %s", r->name, c->ceph_conf[0] ? c->ceph_conf :
			"(the default search path)", strerror(-rc));
	if (rc == 0 && c->keyring[0])
		rc = rbd_conf(r->cluster, "keyring", c->keyring);
	/* librbd gives up by itself past io_timeout; our deadline is the backstop. */
	if (rc == 0)
		rc = rbd_conf(r->cluster, "rados_osd_op_timeout", t);
	if (rc == 0)
		rc = rbd_conf(r->cluster, "rados_mon_op_timeout", t);
	if (rc == 0)
		rc = rbd_conf(r->cluster, "client_mount_timeout", w);
	/*
	 * No librbd cache: a write is answered once the OSDs have it. A cache in this process
	 * would die with it, and a restarted instance (the guest never noticing) must not lose
	 * a write the guest was told was done: a file disk keeps that promise through the kernel's
	 * page cache, an rbd disk through the cluster. FLUSH then only waits for what is in flight.
	 */
	if (rc == 0)
		rc = rbd_conf(r->cluster, "rbd_cache", "false");
	/* Our stderr is the journal: librados logs to its own file when ceph.conf says so. */
	if (rc == 0)
		rc = rbd_conf(r->cluster, "log_to_stderr", "false");
	if (rc == 0)
		rc = rbd_conf(r->cluster, "err_to_stderr", "false");
	if (rc == 0) {
		rc = ceph.rados_connect(r->cluster);
		if (rc == 0) {
			r->cluster_ok = true;
			return 0;
		}
		rc = rc == -EINVAL ? -ECONNREFUSED : rc;
	} else {
		rc = -EINVAL;   /* no retry mends a configuration */
	}
	ceph.rados_shutdown(r->cluster);
	return rc;
}

/* Retry the monitors with a logged backoff for io_timeout seconds (the cluster may be starting). */
static int rbd_connect(struct blk_rbd *r, const struct config_block *c)
{
	double end = rbd_mono() + r->timeout, backoff = RBD_RETRY_MIN_S;

	for (unsigned attempt = 1;; attempt++) {
		double left = end - rbd_mono();
		unsigned wait_s = left > 5 ? 5 : left < 1 ? 1 : (unsigned)left;
		int rc = rbd_connect_once(r, c, wait_s);

		if (rc == 0 || rc == -EINVAL)
			return rc;
		left = end - rbd_mono();
		if (left <= 0) {
			log_err("%s: no Ceph cluster after %u s (%u attempts): %s", r->name,
				r->timeout, attempt, strerror(-rc));
			return rc;
		}
		log_warn("%s: Ceph cluster not reachable (%s), retrying (attempt %u)", r->name,
			 strerror(-rc), attempt);
		struct timespec ts = { .tv_sec = (time_t)backoff,
				       .tv_nsec = (long)((backoff - (time_t)backoff) * 1e9) };
		nanosleep(&ts, NULL);
		backoff = backoff * 2 > RBD_RETRY_MAX_S ? RBD_RETRY_MAX_S : backoff * 2;
	}
}

static int rbd_open_image(struct blk_rbd *r, const char *spec)
{
	char buf[CONFIG_PATH_MAX];
	const char *pool, *ns, *image, *snap;
	rbd_image_info_t st;
	int rc = rbd_split(spec, buf, sizeof(buf), &pool, &ns, &image, &snap);

	if (rc == 0 && (rc = ceph.rados_ioctx_create(r->cluster, pool, &r->io)) < 0)
		log_err("%s: rbd pool %s: %s", r->name, pool, strerror(-rc));
	if (rc < 0)
		return rc;
	r->io_ok = true;
	ceph.rados_ioctx_set_namespace(r->io, ns);
	rc = snap ? ceph.rbd_open_read_only(r->io, image, &r->img, snap) :
		    ceph.rbd_open(r->io, image, &r->img, NULL);
	if (rc < 0) {
		log_err("%s: rbd image %s: %s", r->name, spec, strerror(-rc));
		return rc;
	}
	r->img_ok = true;
	rc = ceph.rbd_stat(r->img, &st, sizeof(st));
	if (rc < 0) {
		log_err("%s: rbd image %s: stat: %s", r->name, spec, strerror(-rc));
		return rc;
	}
	r->info.size = st.size;
	r->info.obj_size = st.obj_size > UINT32_MAX ? UINT32_MAX : (uint32_t)st.obj_size;
	r->info.readonly = snap != NULL;
	return 0;
}

/* Completions and header changes to the loop, through eventfds. */
static int rbd_notify_setup(struct blk_rbd *r)
{
	int rc;

	r->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	r->wfd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (r->efd < 0 || r->wfd < 0)
		return -errno;
	rc = ceph.rbd_set_image_notification(r->img, r->efd, EVENT_TYPE_EVENTFD);
	if (rc < 0) {
		log_err("%s: rbd_set_image_notification: %s", r->name, strerror(-rc));
		return rc;
	}
	ev_io_init(&r->efd_w, rbd_efd_cb, r->efd, EV_READ);
	ev_io_start(r->loop, &r->efd_w);
	ev_io_init(&r->wfd_w, rbd_wfd_cb, r->wfd, EV_READ);
	ev_io_start(r->loop, &r->wfd_w);
	/* A snapshot opened read-only has no watch (a watch is a write); its size is fixed. */
	if (!r->info.readonly) {
		rc = ceph.rbd_update_watch(r->img, &r->watch, rbd_watch_cb, &r->wfd);
		if (rc < 0)
			log_warn("%s: rbd_update_watch: %s (resizes go unnoticed)", r->name,
				 strerror(-rc));
		r->watching = rc == 0;
	}
	return 0;
}

static void rbd_free(struct blk_rbd *r)
{
	if (r->watching)
		ceph.rbd_update_unwatch(r->img, r->watch);
	if (r->img_ok)
		ceph.rbd_close(r->img);
	if (r->io_ok)
		ceph.rados_ioctx_destroy(r->io);
	if (r->cluster_ok)
		ceph.rados_shutdown(r->cluster);
	if (r->efd >= 0) {
		ev_io_stop(r->loop, &r->efd_w);
		close(r->efd);
	}
	if (r->wfd >= 0) {
		ev_io_stop(r->loop, &r->wfd_w);
		close(r->wfd);
	}
	ev_timer_stop(r->loop, &r->tick);
	free(r);
}

int blk_rbd_open(struct ev_loop *loop, const char *name, const struct config_block *c,
		 blk_nbd_done_fn *done, blk_nbd_batch_fn *batch, blk_rbd_changed_fn *changed,
		 void *opaque, struct blk_rbd **out)
{
	struct blk_rbd *r;
	int rc = rbd_load(name);

	*out = NULL;
	if (rc < 0)
		return rc;
	r = calloc(1, sizeof(*r));
	if (!r)
		return -ENOMEM;
	r->loop = loop;
	snprintf(r->name, sizeof(r->name), "%s", name);
	r->timeout = c->io_timeout ? c->io_timeout : 30;
	r->done = done;
	r->batch = batch;
	r->changed = changed;
	r->opaque = opaque;
	r->efd = r->wfd = -1;
	ev_init(&r->tick, rbd_tick_cb);
	rc = rbd_connect(r, c);
	if (rc == 0)
		rc = rbd_open_image(r, c->rbd);
	if (rc == 0)
		rc = rbd_notify_setup(r);
	if (rc < 0) {
		rbd_free(r);
		return rc;
	}
	*out = r;
	return 0;
}

const struct blk_rbd_info *blk_rbd_info(const struct blk_rbd *r)
{
	return &r->info;
}

void blk_rbd_set_timeout(struct blk_rbd *r, unsigned io_timeout)
{
	if (io_timeout)
		r->timeout = io_timeout;
}

unsigned blk_rbd_held(const struct blk_rbd *r)
{
	return r->held;
}

void blk_rbd_foreach(struct blk_rbd *r, void (*fn)(struct blk_nbd_cmd *c, void *opaque),
		     void *opaque)
{
	for (struct blk_nbd_cmd *c = r->head; c; c = c->next)
		if (!c->late)
			fn(c, opaque);
}

bool blk_rbd_drain(struct blk_rbd *r, int wait_ms)
{
	double end = rbd_mono() + wait_ms / 1000.0;

	rbd_reap(r);
	while (r->unanswered) {
		double left = end - rbd_mono();
		struct pollfd p = { .fd = r->efd, .events = POLLIN };

		if (left <= 0)
			break;
		if (poll(&p, 1, left > 1 ? 1000 : (int)(left * 1000) + 1) < 0 && errno != EINTR)
			break;
		rbd_reap(r);
	}
	r->batch(r->opaque);
	return r->unanswered == 0;
}

void blk_rbd_fail_all(struct blk_rbd *r, int err)
{
	for (struct blk_nbd_cmd *c = r->head, *next; c; c = next) {
		next = c->next;
		if (c->late)
			continue;
		if (c->state == CMD_FAILED) {
			r->failed--;
			rbd_unlink(r, c);
			rbd_answer(r, c, err, false);
		} else {
			rbd_answer(r, c, err, true);
		}
	}
	rbd_tick_update(r);
}

void blk_rbd_close(struct blk_rbd *r, void (*release)(struct blk_nbd_cmd *c, void *opaque),
		   void *opaque)
{
	rbd_completion_t comps[RBD_POLL_MAX];
	struct blk_nbd_cmd *c;
	int n;

	if (!r)
		return;
	/* librbd must be done with every buffer before it goes back. */
	for (c = r->head; c; c = c->next)
		if (c->handle)
			ceph.rbd_aio_wait_for_complete(c->handle);
	while ((n = ceph.rbd_poll_io_events(r->img, comps, RBD_POLL_MAX)) > 0)
		for (int i = 0; i < n; i++) {
			((struct blk_nbd_cmd *)ceph.rbd_aio_get_arg(comps[i]))->handle = NULL;
			ceph.rbd_aio_release(comps[i]);
		}
	while ((c = r->head)) {
		rbd_unlink(r, c);
		release(c, opaque);
	}
	rbd_free(r);
}

#endif /* XVD_HAVE_RBD */
