/*
 * xenstore: domain lookups, discovery of the virtio devices libxl declared for a guest (both
 * layouts of DESIGN.md §3), backend state writes, and the watches (domain death, new guests).
 *
 * Every value read here was written by the toolstack, but a guest's own subtree and a confused
 * toolstack are not to be trusted: each number is parsed strictly (whole string, range) and a
 * malformed device is logged and skipped.
 */
#include "ioreq/xen.h"

#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <ev.h>
#include <xenstore.h>

#include "ioreq/xen_priv.h"
#include "lib/log.h"
#include "lib/platform.h"
#include "lib/util.h"


#define XS_PATH_MAX    256

struct xs_handle *xen_xs_open(void)
{
	struct xs_handle *xs = xs_open(0);

	if (!xs)
		log_err("xenstore: cannot connect: %s", strerror(errno));
	return xs;
}

/*
 * xenstored answers IS_DOMAIN_INTRODUCED to privileged connections only: a driver domain gets
 * EACCES (C xenstored 4.17, tools/xenstore/xenstored_core.c: XS_IS_DOMAIN_INTRODUCED has
 * XS_FLAG_PRIV, checked in process_message()), which libxenstore reports as "not introduced".
 * There the domain's home tells instead: libxl removes /local/domain/<domid> when it destroys the
 * domain, and a driver domain that the toolstack made the guest's target (xs_set_target) reads
 * it. Once removed, though, a driver domain reads EACCES, not ENOENT: xenstored answers for a
 * missing node with its nearest ancestor's permissions (errno_from_parents()), and
 * /local/domain is not readable to a domU. EACCES means "gone" only when the home was readable
 * before (*seen; libxl never changes a domain's permissions); otherwise (no set_target yet) it
 * is our own failure, and we never declare a guest dead on our own failure.
 */
static bool xs_domain_alive_seen(struct xs_handle *xs, uint32_t domid, bool *seen)
{
	char path[32];
	unsigned len = 0;
	char *v;

	errno = 0;
	if (xs_is_domain_introduced(xs, domid))
		return true;
	if (errno != EACCES)
		return false;
	snprintf(path, sizeof(path), "/local/domain/%u", domid);
	v = xs_read(xs, XBT_NULL, path, &len);
	if (v) {
		free(v);
		if (seen)
			*seen = true;
		return true;
	}
	if (errno == ENOENT)
		return false;
	return !(errno == EACCES && seen && *seen);
}

bool xen_xs_domain_alive(struct xs_handle *xs, uint32_t domid)
{
	return xs_domain_alive_seen(xs, domid, NULL);
}

/* ---- strict parsing ---- */

static bool xs_all(const char *s, int (*pred)(int))
{
	if (!*s)
		return false;
	for (; *s; s++)
		if (!pred((unsigned char)*s))
			return false;
	return true;
}

/* Decimal, or hex with a 0x prefix when allow_hex: the whole string, no sign, no blanks. */
static int xs_parse_u64(const char *s, bool allow_hex, uint64_t max, uint64_t *out)
{
	int base = 10;
	unsigned long long v;
	char *end;

	if (!s)
		return -ENOENT;
	if (allow_hex && s[0] == '0' && (s[1] == 'x' || s[1] == 'X')) {
		s += 2;
		base = 16;
	}
	if (!xs_all(s, base == 16 ? isxdigit : isdigit))
		return -EINVAL;
	errno = 0;
	v = strtoull(s, &end, base);
	if (errno || *end || v > max)
		return -EINVAL;
	*out = v;
	return 0;
}

static int xs_parse_u32(const char *s, bool allow_hex, uint32_t min, uint32_t max, uint32_t *out)
{
	uint64_t v;
	int rc = xs_parse_u64(s, allow_hex, max, &v);

	if (rc < 0)
		return rc;
	if (v < min)
		return -EINVAL;
	*out = (uint32_t)v;
	return 0;
}

/* ---- reads ---- */

static char *xs_readf(struct xs_handle *xs, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

/* The value at a formatted path, NUL-terminated, or NULL. Caller frees. */
static char *xs_readf(struct xs_handle *xs, const char *fmt, ...)
{
	char path[XS_PATH_MAX];
	unsigned len = 0;
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(path, sizeof(path), fmt, ap);
	va_end(ap);
	if (n < 0 || (size_t)n >= sizeof(path))
		return NULL;
	/* xs_read NUL-terminates, but a value may hold an embedded NUL: trust len. */
	char *v = xs_read(xs, XBT_NULL, path, &len);

	if (v && strlen(v) != len) {
		free(v);
		return NULL;
	}
	return v;
}

/* Copy a bounded string value; -ENOENT if absent, -EINVAL if too long. */
static int xs_copy_str(char *dst, size_t size, const char *v)
{
	if (!v)
		return -ENOENT;
	if (strlen(v) >= size)
		return -EINVAL;
	memcpy(dst, v, strlen(v) + 1);
	return 0;
}

static char *xs_backend_root(struct xs_handle *xs, uint32_t backend_domid)
{
	char *p = xs_get_domain_path(xs, backend_domid);

	if (!p)
		log_err("xenstore: no path for domain %u: %s", backend_domid, strerror(errno));
	return p;
}

/* ---- domain lookups ---- */

/* /local/domain/<domid>/<node> into buf, on a connection of its own; -ENOENT if not there. */
static int xs_domain_node(uint32_t domid, const char *node, char *buf, size_t len)
{
	struct xs_handle *xs = xs_open(0);
	char *v;
	int rc;

	if (!xs)
		return -ENOENT;
	v = xs_readf(xs, "/local/domain/%u/%s", domid, node);
	rc = xs_copy_str(buf, len, v);
	free(v);
	xs_close(xs);
	return rc == 0 ? 0 : -ENOENT;
}

int xen_domain_name(uint32_t domid, char *buf, size_t len)
{
	return xs_domain_node(domid, "name", buf, len);
}

int xen_domain_handle(uint32_t domid, char *buf, size_t len)
{
	/* libxl writes the domain's /vm/<uuid> path here: its handle, unique among domains. */
	return xs_domain_node(domid, "vm", buf, len);
}

static bool xs_name_matches(struct xs_handle *xs, const char *id, const char *name)
{
	char *v = xs_readf(xs, "/local/domain/%s/name", id);
	bool same = v && strcmp(v, name) == 0;

	free(v);
	return same;
}

int xen_domid_by_name(const char *name, uint32_t *domid)
{
	struct xs_handle *xs = xen_xs_open();
	unsigned n = 0;
	char **ids;
	int rc = -ENOENT;

	if (!xs)
		return -ENOENT;
	ids = xs_directory(xs, XBT_NULL, "/local/domain", &n);
	for (unsigned i = 0; ids && i < n && rc; i++) {
		uint32_t id;

		if (xs_parse_u32(ids[i], false, 0, 0x7fef, &id) == 0 &&
		    xs_name_matches(xs, ids[i], name)) {
			*domid = id;
			rc = 0;
		}
	}
	free(ids);
	xs_close(xs);
	return rc;
}

bool xen_domain_is(uint32_t domid, const char *handle)
{
	struct xs_handle *xs = xs_open(0);
	char *v;
	bool same;

	if (!xs)
		return true;   /* cannot tell: never declare a guest gone on our own failure */
	if (!xen_xs_domain_alive(xs, domid)) {
		xs_close(xs);
		return false;
	}
	v = handle[0] ? xs_readf(xs, "/local/domain/%u/vm", domid) : NULL;
	/* A live domain without its handle (being built, or not libxl's): not ours to judge. */
	same = !handle[0] || !v || strcmp(v, handle) == 0;
	free(v);
	xs_close(xs);
	return same;
}

bool xen_domain_alive(uint32_t domid)
{
	struct xs_handle *xs = xs_open(0);
	bool alive;

	if (!xs)
		return true;   /* cannot tell: never declare a guest dead on our own failure */
	alive = xen_xs_domain_alive(xs, domid);
	xs_close(xs);
	return alive;
}

/* ---- discovery ---- */

static const char *const xs_kind[] = {
	[XEN_LAYOUT_DISK417] = "virtio_disk",
	[XEN_LAYOUT_VIRTIO] = "virtio",
};

/* base must be a whole window inside Xen's virtio-mmio region; irq an SPI. */
static int xs_parse_window(struct xs_handle *xs, struct xen_vdev_desc *d)
{
	char *base = xs_readf(xs, "%s/base", d->be_path);
	char *irq = xs_readf(xs, "%s/irq", d->be_path);
	int rc = xs_parse_u64(base, true, UINT64_MAX, &d->base);

	if (rc == 0 && (d->base < PLATFORM_MMIO_MIN || d->base > PLATFORM_MMIO_END - PLATFORM_MMIO_WINDOW ||
			d->base % PLATFORM_MMIO_WINDOW))
		rc = -ERANGE;
	if (rc == 0)
		rc = xs_parse_u32(irq, false, PLATFORM_IRQ_MIN, PLATFORM_IRQ_MAX, &d->irq);
	if (rc < 0)
		log_warn("xenstore: %s: bad base '%s' or irq '%s'", d->be_path,
			 base ? base : "(none)", irq ? irq : "(none)");
	free(base);
	free(irq);
	return rc;
}

static int xs_parse_disk417(struct xs_handle *xs, struct xen_vdev_desc *d)
{
	char *params = xs_readf(xs, "%s/params", d->be_path);
	char *mode = xs_readf(xs, "%s/mode", d->be_path);
	char *dev = xs_readf(xs, "%s/dev", d->be_path);
	char *transport = xs_readf(xs, "%s/transport", d->be_path);
	int rc = 0;

	d->virtio_id = 2;
	/* libxl 4.17 writes transport = mmio too; anything else is not for a virtio-mmio backend. */
	if (transport && strcmp(transport, "mmio"))
		rc = -EINVAL;
	if (params && xs_copy_str(d->params, sizeof(d->params), params) < 0)
		rc = -EINVAL;
	if (dev && xs_copy_str(d->vdev, sizeof(d->vdev), dev) < 0)
		rc = -EINVAL;
	if (mode && strcmp(mode, "r") && strcmp(mode, "w"))
		rc = -EINVAL;
	d->readonly = mode && strcmp(mode, "r") == 0;
	if (rc < 0)
		log_warn("xenstore: %s: bad params, dev, transport or mode '%s'", d->be_path,
			 mode ? mode : "(none)");
	free(transport);
	free(params);
	free(mode);
	free(dev);
	return rc;
}

/* type "virtio,device<N>": N is the virtio device id in hex (the DT compatible's form). */
static int xs_parse_type(const char *type, uint32_t *id)
{
	static const char prefix[] = "virtio,device";
	uint64_t v;

	if (!type || strncmp(type, prefix, sizeof(prefix) - 1))
		return -EINVAL;
	type += sizeof(prefix) - 1;
	if (strlen(type) > 8 || !xs_all(type, isxdigit))
		return -EINVAL;
	v = strtoull(type, NULL, 16);
	if (v == 0)
		return -EINVAL;
	*id = (uint32_t)v;
	return 0;
}

/*
 * libxl writes a defbool ("True"/"False"); accept 0/1 too. Absent (older libxl): libxl's
 * default, grants whenever the backend is not dom0.
 */
static int xs_parse_grant_usage(const char *v, uint32_t backend_domid, bool *out)
{
	if (!v)
		*out = backend_domid != 0;
	else if (strcmp(v, "1") == 0 || strcasecmp(v, "true") == 0)
		*out = true;
	else if (strcmp(v, "0") == 0 || strcasecmp(v, "false") == 0)
		*out = false;
	else
		return -EINVAL;
	return 0;
}

static int xs_parse_virtio(struct xs_handle *xs, uint32_t backend_domid,
			   struct xen_vdev_desc *d)
{
	char *type = xs_readf(xs, "%s/type", d->be_path);
	char *transport = xs_readf(xs, "%s/transport", d->be_path);
	char *grant = xs_readf(xs, "%s/grant_usage", d->be_path);
	int rc = xs_parse_type(type, &d->virtio_id);

	if (rc == 0 && (!transport || strcmp(transport, "mmio")))
		rc = -EINVAL;
	if (rc == 0)
		rc = xs_parse_grant_usage(grant, backend_domid, &d->grant_usage);
	if (rc < 0)
		log_warn("xenstore: %s: bad type '%s', transport '%s' or grant_usage '%s'",
			 d->be_path, type ? type : "(none)", transport ? transport : "(none)",
			 grant ? grant : "(none)");
	free(type);
	free(transport);
	free(grant);
	return rc;
}

static int xs_read_device(struct xs_handle *xs, const char *root, uint32_t backend_domid,
			  enum xen_layout layout, uint32_t domid, unsigned devid,
			  struct xen_vdev_desc *d)
{
	int n;

	memset(d, 0, sizeof(*d));
	d->layout = layout;
	d->devid = devid;
	n = snprintf(d->be_path, sizeof(d->be_path), "%s/backend/%s/%u/%u", root, xs_kind[layout],
		     domid, devid);
	if (n < 0 || (size_t)n >= sizeof(d->be_path))
		return -ENAMETOOLONG;
	if (xs_parse_window(xs, d) < 0)
		return -EINVAL;
	return layout == XEN_LAYOUT_DISK417 ? xs_parse_disk417(xs, d)
					    : xs_parse_virtio(xs, backend_domid, d);
}

static int xs_u32_cmp(const void *a, const void *b)
{
	uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;

	return x < y ? -1 : x > y;
}

/*
 * The numeric entries of a directory, sorted; malformed names are logged and skipped.
 * Returns the count (0 when the directory does not exist) or -ENOMEM; *out is malloc'd.
 */
static int xs_list_ids(struct xs_handle *xs, const char *path, uint32_t max_id, uint32_t **out)
{
	unsigned n = 0, k = 0;
	char **names = xs_directory(xs, XBT_NULL, path, &n);
	uint32_t *ids;

	*out = NULL;
	if (!names)
		return 0;
	ids = calloc(n ? n : 1, sizeof(*ids));
	if (!ids) {
		free(names);
		return -ENOMEM;
	}
	for (unsigned i = 0; i < n; i++) {
		if (xs_parse_u32(names[i], false, 0, max_id, &ids[k]) == 0)
			k++;
		else
			log_warn("xenstore: %s: ignoring entry '%s'", path, names[i]);
	}
	free(names);
	qsort(ids, k, sizeof(*ids), xs_u32_cmp);
	*out = ids;
	return (int)k;
}

static int xs_discover_layout(struct xs_handle *xs, const char *root, uint32_t backend_domid,
			      enum xen_layout layout, uint32_t domid, struct xen_vdev_desc *out,
			      unsigned max, unsigned *n)
{
	char path[XS_PATH_MAX];
	uint32_t *ids;
	int count, rc = 0;

	snprintf(path, sizeof(path), "%s/backend/%s/%u", root, xs_kind[layout], domid);
	count = xs_list_ids(xs, path, INT32_MAX, &ids);
	if (count < 0)
		return count;
	for (int i = 0; i < count && rc == 0; i++) {
		if (*n >= max) {
			log_err("xenstore: %s: more than %u devices", path, max);
			rc = -ENOSPC;
		} else if (xs_read_device(xs, root, backend_domid, layout, domid, ids[i],
						  &out[*n]) == 0) {
			(*n)++;
		}
	}
	free(ids);
	return rc;
}

int xen_discover(uint32_t backend_domid, uint32_t domid, struct xen_vdev_desc *out,
		 unsigned max, unsigned *n)
{
	struct xs_handle *xs = xen_xs_open();
	char *root;
	int rc;

	*n = 0;
	if (!xs)
		return -EIO;
	root = xs_backend_root(xs, backend_domid);
	if (!root) {
		xs_close(xs);
		return -EIO;
	}
	rc = xs_discover_layout(xs, root, backend_domid, XEN_LAYOUT_DISK417, domid, out, max, n);
	if (rc == 0)
		rc = xs_discover_layout(xs, root, backend_domid, XEN_LAYOUT_VIRTIO, domid, out, max,
					n);
	free(root);
	xs_close(xs);
	return rc;
}

int xen_backend_set_state(const struct xen_vdev_desc *d, int state)
{
	struct xs_handle *xs;
	char path[XS_PATH_MAX], val[16];
	int rc = 0;

	if (!d->be_path[0])
		return -EINVAL;
	snprintf(path, sizeof(path), "%s/state", d->be_path);
	snprintf(val, sizeof(val), "%d", state);
	xs = xen_xs_open();
	if (!xs)
		return -EIO;
	if (!xs_write(xs, XBT_NULL, path, val, strlen(val))) {
		rc = -errno ? -errno : -EIO;
		log_err("xenstore: writing %s = %s: %s", path, val, strerror(-rc));
	}
	xs_close(xs);
	return rc;
}

bool xen_backend_gone(const struct xen_vdev_desc *d)
{
	struct xs_handle *xs = xen_xs_open();
	bool gone = false;
	void *v;

	if (!xs)
		return false;
	errno = 0;
	v = xs_read(xs, XBT_NULL, d->be_path, NULL);
	gone = !v && errno == ENOENT;
	free(v);
	xs_close(xs);
	return gone;
}

int xen_backend_remove(const struct xen_vdev_desc *d)
{
	struct xs_handle *xs;
	char parent[XS_PATH_MAX], **left;
	char *slash;
	unsigned n = 0;
	int rc = 0;

	if (!d->be_path[0] || strlen(d->be_path) >= sizeof(parent))
		return -EINVAL;
	xs = xen_xs_open();
	if (!xs)
		return -EIO;
	if (!xs_rm(xs, XBT_NULL, d->be_path) && errno != ENOENT) {
		rc = -errno ? -errno : -EIO;
		log_err("xenstore: removing %s: %s", d->be_path, strerror(-rc));
	}
	memcpy(parent, d->be_path, strlen(d->be_path) + 1);
	slash = strrchr(parent, '/');
	if (rc == 0 && slash && slash != parent) {
		*slash = '\0';
		left = xs_directory(xs, XBT_NULL, parent, &n);
		if (left && n == 0)
			xs_rm(xs, XBT_NULL, parent);
		free(left);
	}
	xs_close(xs);
	return rc;
}

/* ---- watch connections that survive a xenstored restart ---- */

/*
 * A watch lives on its own xenstore connection. When xenstored restarts (oxenstored, or C
 * xenstored without live update) the connection is gone with its watches. The real threaded
 * libxenstore does not make xs_fileno() readable then: its requests fail and xs_check_watch()
 * fails with EINVAL instead of EAGAIN. So a watch also probes its connection every
 * XS_PROBE_S seconds, and on a failure closes it and reconnects with backoff from the loop
 * (an ev_timer; serving ioreqs is never held up), then registers its watches again. A
 * re-registered watch fires once, so whatever changed while disconnected is checked again.
 * One line when the connection is lost and one when it is back, not one per retry.
 */
#define XS_PROBE_S     3.0
#define XS_RETRY_MIN_S 0.25
#define XS_RETRY_MAX_S 8.0

struct xs_link {
	struct ev_loop *loop;
	struct xs_handle *xs;         /* NULL while disconnected */
	ev_io io;
	ev_timer timer;               /* connected: the next probe; disconnected: the next retry */
	double backoff;
	ev_tstamp lost_at;
	unsigned retries;
	char what[48];                /* for log lines: "domain 5's death watch" */
	bool (*subscribe)(struct xs_link *l);        /* register the watches on l->xs */
	void (*check)(struct xs_link *l, bool probe); /* io ready, or a probe from the timer */
};

static void xs_link_arm(struct xs_link *l, double after)
{
	ev_timer_stop(l->loop, &l->timer);
	ev_timer_set(&l->timer, after, 0.);
	ev_timer_start(l->loop, &l->timer);
}

static void xs_link_io_cb(struct ev_loop *loop, ev_io *w, int revents)
{
	struct xs_link *l = container_of(w, struct xs_link, io);

	(void)loop;
	(void)revents;
	l->check(l, false);
}

/* Open, subscribe, watch the fd; a first check from the loop (the watches fire once anyway). */
static bool xs_link_connect(struct xs_link *l)
{
	l->xs = xs_open(0);
	if (!l->xs)
		return false;
	if (!l->subscribe(l)) {
		int err = errno;

		xs_close(l->xs);
		l->xs = NULL;
		errno = err;
		return false;
	}
	ev_io_init(&l->io, xs_link_io_cb, xs_fileno(l->xs), EV_READ);
	ev_io_start(l->loop, &l->io);
	ev_feed_event(l->loop, &l->io, EV_READ);
	xs_link_arm(l, XS_PROBE_S);
	return true;
}

/* Disconnected from now on: connect again from the timer, with backoff. */
static void xs_link_retry(struct xs_link *l)
{
	l->backoff = XS_RETRY_MIN_S;
	l->retries = 0;
	l->lost_at = ev_now(l->loop);
	xs_link_arm(l, l->backoff);
}

/* The connection failed (err): drop it and retry from the timer. */
static void xs_link_lost(struct xs_link *l, int err)
{
	ev_io_stop(l->loop, &l->io);
	ev_clear_pending(l->loop, &l->io);
	xs_close(l->xs);
	l->xs = NULL;
	log_warn("xenstore: connection lost (%s); %s is reconnecting in the background",
		 strerror(err ? err : EIO), l->what);
	xs_link_retry(l);
}

static void xs_link_timer_cb(struct ev_loop *loop, ev_timer *t, int revents)
{
	struct xs_link *l = container_of(t, struct xs_link, timer);

	(void)revents;
	if (l->xs) {
		xs_link_arm(l, XS_PROBE_S);   /* before check(): it may stop or lose the link */
		l->check(l, true);
		return;
	}
	l->retries++;
	if (xs_link_connect(l)) {
		log_notice("xenstore: reconnected after %.1f s; %s registered again",
			   ev_now(loop) - l->lost_at, l->what);
		return;
	}
	log_debug("xenstore: reconnect %u for %s: %s", l->retries, l->what, strerror(errno));
	l->backoff = l->backoff * 2 > XS_RETRY_MAX_S ? XS_RETRY_MAX_S : l->backoff * 2;
	xs_link_arm(l, l->backoff);
}

/*
 * The first registration can meet a xenstored that is restarting too (the daemon has just
 * used xenstore to get this far): never a reason to stop serving. Like a lost connection, it
 * is logged once and retried from the timer; the fed first check follows the registration.
 */
static void xs_link_start(struct xs_link *l, struct ev_loop *loop)
{
	l->loop = loop;
	ev_init(&l->io, xs_link_io_cb);
	ev_init(&l->timer, xs_link_timer_cb);
	if (xs_link_connect(l))
		return;
	log_warn("xenstore: cannot register %s yet (%s); retrying in the background", l->what,
		 strerror(errno ? errno : EIO));
	xs_link_retry(l);
}

/* Stop watching for good; the caller unregisters its watches first (while l->xs is set). */
static void xs_link_stop(struct xs_link *l)
{
	ev_io_stop(l->loop, &l->io);
	ev_clear_pending(l->loop, &l->io);
	ev_timer_stop(l->loop, &l->timer);
	ev_clear_pending(l->loop, &l->timer);
}

static void xs_link_close(struct xs_link *l)
{
	xs_link_stop(l);
	if (l->xs)
		xs_close(l->xs);
	l->xs = NULL;
}

/* Consume queued watch events; false (errno set) when the connection is broken. */
static bool xs_drain_watches(struct xs_handle *xs)
{
	char **ev;

	errno = 0;
	while ((ev = xs_check_watch(xs)) != NULL)
		free(ev);
	return errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR || errno == 0;
}

/*
 * The connection answers. xs_get_domain_path() is a request that fails only when the
 * connection does: it tells a "no" from a lost connection where a bool answer cannot.
 */
static bool xs_link_healthy(struct xs_link *l, uint32_t domid)
{
	char *p = xs_get_domain_path(l->xs, domid);

	free(p);
	return p != NULL;
}

/* ---- domain death ---- */

struct xen_death_watch {
	struct xs_link link;
	uint32_t domid;
	bool fired;
	bool home_seen;               /* /local/domain/<domid> was readable (xs_domain_alive_seen) */
	void (*cb)(void *opaque);
	void *opaque;
	char token[32];
};

static bool xs_death_subscribe(struct xs_link *l)
{
	struct xen_death_watch *dw = container_of(l, struct xen_death_watch, link);

	if (xs_watch(l->xs, "@releaseDomain", dw->token))
		return true;
	log_debug("xenstore: watching @releaseDomain: %s", strerror(errno));
	return false;
}

static void xs_death_check(struct xs_link *l, bool probe)
{
	struct xen_death_watch *dw = container_of(l, struct xen_death_watch, link);

	(void)probe;
	if (dw->fired)
		return;
	if (!xs_drain_watches(l->xs)) {
		xs_link_lost(l, errno);
		return;
	}
	/* @releaseDomain fires for any domain's shutdown or death: check it is ours. */
	if (xs_domain_alive_seen(l->xs, dw->domid, &dw->home_seen))
		return;
	/* "Not introduced", or no answer at all? Never declare a guest dead on our own failure. */
	if (!xs_link_healthy(l, dw->domid)) {
		xs_link_lost(l, errno);
		return;
	}
	dw->fired = true;
	xs_link_stop(l);
	dw->cb(dw->opaque);
}

struct xen_death_watch *xen_death_watch_start(struct ev_loop *loop, uint32_t domid,
					      void (*cb)(void *opaque), void *opaque)
{
	struct xen_death_watch *dw = calloc(1, sizeof(*dw));

	if (!dw)
		return NULL;
	dw->domid = domid;
	dw->cb = cb;
	dw->opaque = opaque;
	snprintf(dw->token, sizeof(dw->token), "xvd-death-%u", domid);
	snprintf(dw->link.what, sizeof(dw->link.what), "domain %u's death watch", domid);
	dw->link.subscribe = xs_death_subscribe;
	dw->link.check = xs_death_check;
	/* A first check comes from the loop even if no event does: the domain may be gone. */
	xs_link_start(&dw->link, loop);
	return dw;
}

void xen_death_watch_stop(struct xen_death_watch *dw)
{
	if (!dw)
		return;
	if (dw->link.xs)
		xs_unwatch(dw->link.xs, "@releaseDomain", dw->token);
	/* A pending fed event must not call back into freed memory: close clears it. */
	xs_link_close(&dw->link);
	free(dw);
}

/* ---- the toolstack closing a backend ---- */

/*
 * libxl removes a device (xl destroy, xl block-detach) by writing online=0 and state=5
 * (Closing) into the backend directory, then waits up to 10 s for state=6 (Closed) before it
 * gives up with "unable to remove device". This watch tells the caller about each state=5.
 */
struct xen_close_watch {
	struct xs_link link;
	unsigned n;
	char (*paths)[XS_PATH_MAX];  /* "<be_path>/state" for each device */
	bool *seen;                  /* Closing already reported */
	void (*cb)(void *opaque, unsigned i);   /* must not stop the watch */
	void *opaque;
};

static bool xs_close_subscribe(struct xs_link *l)
{
	struct xen_close_watch *cw = container_of(l, struct xen_close_watch, link);

	for (unsigned i = 0; i < cw->n; i++) {
		if (!xs_watch(l->xs, cw->paths[i], "xvd-close")) {
			log_debug("xenstore: watching %s: %s", cw->paths[i], strerror(errno));
			return false;
		}
	}
	return true;
}

static void xs_close_free(struct xen_close_watch *cw)
{
	free(cw->paths);
	free(cw->seen);
	free(cw);
}

static void xs_close_check(struct xs_link *l, bool probe)
{
	struct xen_close_watch *cw = container_of(l, struct xen_close_watch, link);

	if (!xs_drain_watches(l->xs) || (probe && !xs_link_healthy(l, 0))) {
		xs_link_lost(l, errno);
		return;
	}
	for (unsigned i = 0; i < cw->n; i++) {
		char *v;
		uint32_t state;

		if (cw->seen[i])
			continue;
		/* Absent (the directory is gone) or malformed: nothing to answer. */
		v = xs_readf(l->xs, "%s", cw->paths[i]);
		if (v && xs_parse_u32(v, false, 0, 255, &state) == 0 && state == XEN_STATE_CLOSING) {
			cw->seen[i] = true;
			cw->cb(cw->opaque, i);
		}
		free(v);
	}
}

struct xen_close_watch *xen_close_watch_start(struct ev_loop *loop, const char *const *be_paths,
					      unsigned n, void (*cb)(void *opaque, unsigned i),
					      void *opaque)
{
	struct xen_close_watch *cw = calloc(1, sizeof(*cw));

	if (!cw)
		return NULL;
	cw->paths = calloc(n ? n : 1, sizeof(*cw->paths));
	cw->seen = calloc(n ? n : 1, sizeof(*cw->seen));
	if (!cw->paths || !cw->seen)
		goto fail;
	for (unsigned i = 0; i < n; i++) {
		int len = snprintf(cw->paths[i], XS_PATH_MAX, "%s/state", be_paths[i]);

		if (len < 0 || len >= XS_PATH_MAX)
			goto fail;
	}
	cw->n = n;
	cw->cb = cb;
	cw->opaque = opaque;
	snprintf(cw->link.what, sizeof(cw->link.what), "the backend state watch");
	cw->link.subscribe = xs_close_subscribe;
	cw->link.check = xs_close_check;
	xs_link_start(&cw->link, loop);
	return cw;
fail:
	xs_close_free(cw);
	return NULL;
}

void xen_close_watch_stop(struct xen_close_watch *cw)
{
	if (!cw)
		return;
	if (cw->link.xs)
		for (unsigned i = 0; i < cw->n; i++)
			xs_unwatch(cw->link.xs, cw->paths[i], "xvd-close");
	xs_link_close(&cw->link);
	xs_close_free(cw);
}

/* ---- watch mode: new guests with devices for us ---- */

struct xen_backend_watch {
	struct xs_link link;
	uint32_t backend_domid;
	void (*cb)(void *opaque, uint32_t domid, bool present);
	void *opaque;
	char paths[2][XS_PATH_MAX];
	uint32_t *present;           /* guests seen at the last scan, sorted */
	unsigned npresent;
	bool in_cb, stopped;         /* xen_backend_watch_stop() from inside cb defers the free */
};

static bool xs_id_in(const uint32_t *ids, unsigned n, uint32_t id)
{
	return n && bsearch(&id, ids, n, sizeof(id), xs_u32_cmp) != NULL;
}

/* Union of the guest domids under both backend paths, sorted and deduplicated. */
static int xs_scan_guests(struct xen_backend_watch *bw, uint32_t **out)
{
	uint32_t *a, *b, *all;
	int na = xs_list_ids(bw->link.xs, bw->paths[0], 0x7fef, &a);
	int nb = na < 0 ? -1 : xs_list_ids(bw->link.xs, bw->paths[1], 0x7fef, &b);
	unsigned k = 0;

	if (na < 0 || nb < 0) {
		if (na >= 0)
			free(a);
		return -ENOMEM;
	}
	all = calloc((size_t)na + (size_t)nb + 1, sizeof(*all));
	if (all) {
		if (na)
			memcpy(all, a, (size_t)na * sizeof(*all));
		if (nb)
			memcpy(all + na, b, (size_t)nb * sizeof(*all));
		qsort(all, (size_t)na + (size_t)nb, sizeof(*all), xs_u32_cmp);
		for (int i = 0; i < na + nb; i++)
			if (k == 0 || all[k - 1] != all[i])
				all[k++] = all[i];
	}
	free(a);
	free(b);
	*out = all;
	return all ? (int)k : -ENOMEM;
}

static void xs_backend_free(struct xen_backend_watch *bw)
{
	if (bw->link.xs) {
		xs_unwatch(bw->link.xs, bw->paths[1], "xvd-backend");
		xs_unwatch(bw->link.xs, bw->paths[0], "xvd-backend");
	}
	xs_link_close(&bw->link);
	free(bw->present);
	free(bw);
}

static void xs_backend_rescan(struct xen_backend_watch *bw)
{
	uint32_t *now, *before = bw->present;
	unsigned nbefore = bw->npresent;
	int n = xs_scan_guests(bw, &now);

	if (n < 0) {
		log_err("xenstore: scanning backend directories: %s", strerror(-n));
		return;
	}
	/* An unreadable directory reads as empty: a lost connection must not empty the set. */
	if (!xs_link_healthy(&bw->link, bw->backend_domid)) {
		free(now);
		xs_link_lost(&bw->link, errno);
		return;
	}
	/* Guests that went away leave the set, so each guest is reported once while present. */
	bw->present = now;
	bw->npresent = (unsigned)n;
	bw->in_cb = true;
	for (int i = 0; i < n && !bw->stopped; i++)
		if (!xs_id_in(before, nbefore, now[i]))
			bw->cb(bw->opaque, now[i], true);
	for (unsigned i = 0; i < nbefore && !bw->stopped; i++)
		if (!xs_id_in(now, (unsigned)n, before[i]))
			bw->cb(bw->opaque, before[i], false);
	bw->in_cb = false;
	free(before);
	/* The callback asked to stop: free now that nothing here uses bw any more. */
	if (bw->stopped)
		xs_backend_free(bw);
}

static bool xs_backend_subscribe(struct xs_link *l)
{
	struct xen_backend_watch *bw = container_of(l, struct xen_backend_watch, link);

	if (!xs_watch(l->xs, bw->paths[0], "xvd-backend"))
		goto fail;
	if (!xs_watch(l->xs, bw->paths[1], "xvd-backend")) {
		int err = errno;

		xs_unwatch(l->xs, bw->paths[0], "xvd-backend");
		errno = err;
		goto fail;
	}
	return true;
fail:
	log_debug("xenstore: watching %s: %s", bw->paths[0], strerror(errno));
	return false;
}

static void xs_backend_check(struct xs_link *l, bool probe)
{
	struct xen_backend_watch *bw = container_of(l, struct xen_backend_watch, link);

	if (!xs_drain_watches(l->xs)) {
		xs_link_lost(l, errno);
		return;
	}
	if (!probe)
		xs_backend_rescan(bw);   /* may free bw */
	else if (!xs_link_healthy(l, bw->backend_domid))
		xs_link_lost(l, errno);
}

struct xen_backend_watch *xen_backend_watch_start(struct ev_loop *loop, uint32_t backend_domid,
						  void (*cb)(void *opaque, uint32_t domid, bool present),
						  void *opaque)
{
	struct xen_backend_watch *bw = calloc(1, sizeof(*bw));
	struct xs_handle *xs;
	char *root;

	if (!bw)
		return NULL;
	bw->backend_domid = backend_domid;
	bw->cb = cb;
	bw->opaque = opaque;
	xs = xen_xs_open();
	root = xs ? xs_backend_root(xs, backend_domid) : NULL;
	if (xs)
		xs_close(xs);
	if (!root) {
		free(bw);
		return NULL;
	}
	snprintf(bw->paths[0], sizeof(bw->paths[0]), "%s/backend/virtio_disk", root);
	snprintf(bw->paths[1], sizeof(bw->paths[1]), "%s/backend/virtio", root);
	free(root);
	snprintf(bw->link.what, sizeof(bw->link.what), "the watch for new guests");
	bw->link.subscribe = xs_backend_subscribe;
	bw->link.check = xs_backend_check;
	/* The guests already present are reported from the loop, like later ones. */
	xs_link_start(&bw->link, loop);
	return bw;
}

void xen_backend_watch_stop(struct xen_backend_watch *bw)
{
	if (!bw)
		return;
	xs_link_stop(&bw->link);
	if (bw->in_cb)
		bw->stopped = true;
	else
		xs_backend_free(bw);
}
