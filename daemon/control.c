/*
 * The control socket, served by the instance's libev loop (daemon/control.h has the protocol).
 *
 * Each client is a small state machine in a fixed slot:
 *   READ   waiting for its request line (at most CONTROL_REQUEST_MAX bytes)
 *   WRITE  sending the response (at most CONTROL_RESPONSE_MAX bytes), then closed
 * A deadline per client (CONTROL_TIMEOUT_S from accept) ends a slow or stuck one; while every
 * slot is taken the listener is not polled, so further clients wait in the kernel's backlog.
 * Every socket is non-blocking: the loop never waits for a client.
 */
#include "daemon/control.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <ev.h>

#include "daemon/guest.h"
#include "daemon/report.h"
#include "daemon/watch.h"
#include "devices/blk.h"
#include "devices/console.h"
#include "devices/device.h"
#include "devices/net.h"
#include "ioreq/xen.h"
#include "lib/log.h"
#include "lib/util.h"

enum client_state {
	CL_FREE,      /* slot unused */
	CL_READ,      /* reading the request line */
	CL_WRITE,     /* sending the response; closed when done */
};

struct client {
	struct control *c;
	enum client_state state;
	int fd;
	ev_io io;
	ev_timer deadline;
	char req[CONTROL_REQUEST_MAX];
	size_t req_len;
	struct sbuf resp;
	size_t sent;
	int pass_fd;                  /* sent with the first response bytes, then closed (or -1) */
};

struct control {
	struct ev_loop *loop;
	struct guest *g;
	int lfd;
	ev_io accept_w;
	char path[sizeof(((struct sockaddr_un *)0)->sun_path)];
	unsigned nclients;
	struct ratelimit rl;
	struct client cl[CONTROL_CLIENTS_MAX];
};

const char *control_dir(const char *dir)
{
	const char *e = getenv(CONTROL_DIR_ENV);

	if (dir && dir[0])
		return dir;
	return e && e[0] ? e : CONTROL_DIR_DEFAULT;
}

/* ---- clients ---- */

static void client_close(struct client *cl)
{
	struct control *c = cl->c;

	ev_io_stop(c->loop, &cl->io);
	ev_timer_stop(c->loop, &cl->deadline);
	close(cl->fd);
	if (cl->pass_fd >= 0)
		close(cl->pass_fd);
	sbuf_free(&cl->resp);
	cl->state = CL_FREE;
	cl->fd = cl->pass_fd = -1;
	if (c->nclients-- == CONTROL_CLIENTS_MAX)
		ev_io_start(c->loop, &c->accept_w);   /* a slot is free again */
}

/* One send; the fd to pass goes with the first byte. Bytes sent, or -1 with errno. */
static ssize_t client_send(struct client *cl)
{
	struct iovec iov = { cl->resp.buf + cl->sent, cl->resp.len - cl->sent };
	union {
		char buf[CMSG_SPACE(sizeof(int))];
		struct cmsghdr align;
	} u;
	struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1 };

	if (cl->pass_fd >= 0 && cl->sent == 0) {
		struct cmsghdr *cm;

		memset(&u, 0, sizeof(u));
		mh.msg_control = u.buf;
		mh.msg_controllen = sizeof(u.buf);
		cm = CMSG_FIRSTHDR(&mh);
		cm->cmsg_level = SOL_SOCKET;
		cm->cmsg_type = SCM_RIGHTS;
		cm->cmsg_len = CMSG_LEN(sizeof(int));
		memcpy(CMSG_DATA(cm), &cl->pass_fd, sizeof(int));
	}
	return sendmsg(cl->fd, &mh, MSG_NOSIGNAL | MSG_DONTWAIT);
}

static void client_write(struct client *cl)
{
	while (cl->sent < cl->resp.len) {
		ssize_t n = client_send(cl);

		if (n < 0 && (errno == EAGAIN || errno == EINTR))
			return;   /* the watcher waits for room */
		if (n <= 0) {
			client_close(cl);
			return;
		}
		cl->sent += (size_t)n;
	}
	client_close(cl);
}

static void client_respond(struct client *cl)
{
	struct control *c = cl->c;

	if (cl->resp.overflow) {
		sbuf_free(&cl->resp);
		sbuf_printf(&cl->resp, "ERR response larger than %u bytes\n", CONTROL_RESPONSE_MAX);
	}
	cl->state = CL_WRITE;
	ev_io_stop(c->loop, &cl->io);
	ev_io_set(&cl->io, cl->fd, EV_WRITE);
	ev_io_start(c->loop, &cl->io);
	client_write(cl);
}

static void client_err(struct client *cl, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
static void client_err(struct client *cl, const char *fmt, ...)
{
	va_list ap;

	sbuf_free(&cl->resp);
	sbuf_printf(&cl->resp, "ERR ");
	va_start(ap, fmt);
	sbuf_vprintf(&cl->resp, fmt, ap);
	va_end(ap);
	sbuf_printf(&cl->resp, "\n");
}

/* ---- requests ---- */

/*
 * Split a request line into words: printable ASCII separated by single spaces, nothing else.
 * Returns the number of words, or -1 when the line breaks those rules.
 */
static int control_split(char *line, size_t len, char **w)
{
	int n = 0;

	/* NUL bytes included: the whole line is checked, not just up to the first one. */
	for (size_t i = 0; i < len; i++)
		if (line[i] < 0x20 || line[i] > 0x7e)
			return -1;
	for (char *p = line; *p;) {
		if (*p == ' ' || n == (int)CONTROL_WORDS_MAX)
			return -1;   /* empty word, or too many */
		w[n++] = p;
		p += strcspn(p, " ");
		if (*p) {
			*p++ = '\0';
			if (!*p)
				return -1;   /* trailing space */
		}
	}
	return n;
}

/* The device of that type whose INI section is named name. */
static struct vdev *control_device(struct control *c, const char *type, const char *name)
{
	struct guest_devinfo di;

	for (unsigned i = 0; i < guest_device_count(c->g); i++)
		if (guest_device_info(c->g, i, &di) && strcmp(di.type, type) == 0 &&
		    strcmp(di.name, name) == 0)
			return di.dev;
	return NULL;
}

static void cmd_info(struct client *cl)
{
	struct control *c = cl->c;

	sbuf_printf(&cl->resp, "OK\nguest=%s domid=%" PRIu32 " pid=%ld version=%s devices=%u "
		    "notify=%s\n", guest_name(c->g), guest_domid(c->g), (long)getpid(),
		    XVD_VERSION, guest_device_count(c->g),
		    xen_guest_notify_path(guest_xen(c->g), NULL) ? "privcmd" : "ioreq");
}

static void cmd_report(struct client *cl, enum report_format f)
{
	sbuf_printf(&cl->resp, "OK\n");
	report_guest(cl->c->g, f, &cl->resp);
}

static void cmd_resize(struct client *cl, struct vdev *d)
{
	uint64_t before, after;
	int rc = blk_resize(d, &before, &after);

	if (rc < 0) {
		client_err(cl, "%s: cannot read the size: %s", d->name, strerror(-rc));
		return;
	}
	log_notice("control: %s: resize: %" PRIu64 " -> %" PRIu64 " sectors", d->name, before,
		   after);
	sbuf_printf(&cl->resp, "OK\n%s: %" PRIu64 " -> %" PRIu64 " sectors of 512 bytes%s\n",
		    d->name, before, after, before == after ? " (unchanged)" : "; guest notified");
}

static void cmd_link(struct client *cl, struct vdev *d, const char *state)
{
	bool up = strcmp(state, "up") == 0;

	if (!up && strcmp(state, "down") != 0) {
		client_err(cl, "link: up or down, not '%s'", state);
		return;
	}
	net_set_admin_link(d, up);
	sbuf_printf(&cl->resp, "OK\n%s: link %s\n", d->name, up ? "up" : "down");
}

static void cmd_console(struct client *cl, struct vdev *d, const char *port)
{
	int sv[2], rc;

	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv) < 0) {
		client_err(cl, "socketpair: %s", strerror(errno));
		return;
	}
	rc = console_attach(d, port, sv[0]);
	if (rc < 0) {
		close(sv[0]);
		close(sv[1]);
		client_err(cl, "%s: %s", d->name,
			   rc == -EBUSY ? "another client is attached to that port" :
			   rc == -ENOENT ? "no such port" : strerror(-rc));
		return;
	}
	log_notice("control: %s: port %s: attached by xen-virtiodctl", d->name,
		   port && port[0] ? port : "0");
	cl->pass_fd = sv[1];
	sbuf_printf(&cl->resp, "OK\n%s: attached\n", d->name);
}

static void cmd_log_level(struct client *cl, const char *name)
{
	int level = log_parse_level(name);

	if (level < 0) {
		client_err(cl, "unknown log level '%s' (error, warning, notice, info, debug)", name);
		return;
	}
	log_set_level(level);
	log_notice("control: log level %s", name);
	sbuf_printf(&cl->resp, "OK\nlog level %s (until the next reload or restart)\n", name);
}

/* Commands on a device: "block DEV resize", "net DEV link STATE", "console DEV [PORT]". */
static void cmd_device(struct client *cl, char **w, int n)
{
	struct vdev *d = n >= 2 ? control_device(cl->c, w[0], w[1]) : NULL;

	if (n < 2) {
		client_err(cl, "%s: which device?", w[0]);
	} else if (!d) {
		client_err(cl, "no %s device named '%s'", w[0], w[1]);
	} else if (strcmp(w[0], "block") == 0 && n == 3 && strcmp(w[2], "resize") == 0) {
		cmd_resize(cl, d);
	} else if (strcmp(w[0], "net") == 0 && n == 4 && strcmp(w[2], "link") == 0) {
		cmd_link(cl, d, w[3]);
	} else if (strcmp(w[0], "console") == 0 && n <= 3) {
		cmd_console(cl, d, n == 3 ? w[2] : NULL);
	} else {
		client_err(cl, "%s: unknown command", w[0]);
	}
}

static void control_dispatch(struct client *cl, char *line, size_t len)
{
	char *w[CONTROL_WORDS_MAX];
	int n = control_split(line, len, w);

	if (n <= 0)
		client_err(cl, "malformed request");
	else if (strcmp(w[0], "info") == 0 && n == 1)
		cmd_info(cl);
	else if (strcmp(w[0], "status") == 0 && n == 1)
		cmd_report(cl, REPORT_TEXT);
	else if (strcmp(w[0], "status") == 0 && n == 2 && strcmp(w[1], "json") == 0)
		cmd_report(cl, REPORT_JSON);
	else if (strcmp(w[0], "metrics") == 0 && n == 1)
		cmd_report(cl, REPORT_METRICS);
	else if (strcmp(w[0], "log-level") == 0 && n == 2)
		cmd_log_level(cl, w[1]);
	else if (!strcmp(w[0], "block") || !strcmp(w[0], "net") || !strcmp(w[0], "console"))
		cmd_device(cl, w, n);
	else
		client_err(cl, "unknown request");
	client_respond(cl);
}

/* ---- reading ---- */

static void client_read(struct client *cl)
{
	char *nl;
	ssize_t n;

	n = recv(cl->fd, cl->req + cl->req_len, sizeof(cl->req) - cl->req_len, MSG_DONTWAIT);
	if (n < 0 && (errno == EAGAIN || errno == EINTR))
		return;
	if (n <= 0) {
		client_close(cl);   /* gone before asking anything */
		return;
	}
	nl = memchr(cl->req + cl->req_len, '\n', (size_t)n);
	cl->req_len += (size_t)n;
	if (nl) {
		*nl = '\0';
		control_dispatch(cl, cl->req, (size_t)(nl - cl->req));
	} else if (cl->req_len == sizeof(cl->req)) {
		client_err(cl, "request longer than %u bytes", CONTROL_REQUEST_MAX);
		client_respond(cl);
	}
}

static void client_io_cb(struct ev_loop *loop, ev_io *w, int revents)
{
	struct client *cl = container_of(w, struct client, io);

	(void)loop;
	(void)revents;
	if (cl->state == CL_READ)
		client_read(cl);
	else
		client_write(cl);
}

static void client_deadline_cb(struct ev_loop *loop, ev_timer *t, int revents)
{
	struct client *cl = container_of(t, struct client, deadline);

	(void)loop;
	(void)revents;
	log_rl(&cl->c->rl, LOG_NOTICE, "control: a client took more than %.0f s; dropped",
	       CONTROL_TIMEOUT_S);
	client_close(cl);
}

/* ---- accepting ---- */

static bool control_peer_is_root(struct control *c, int fd)
{
	struct ucred cr;
	socklen_t len = sizeof(cr);

	if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cr, &len) < 0 || len != sizeof(cr)) {
		log_rl(&c->rl, LOG_WARNING, "control: SO_PEERCRED: %s", strerror(errno));
		return false;
	}
	if (cr.uid == 0)
		return true;
	log_rl(&c->rl, LOG_WARNING, "control: refused a client with uid %u (pid %ld): root only",
	       (unsigned)cr.uid, (long)cr.pid);
	return false;
}

static struct client *control_slot(struct control *c)
{
	for (unsigned i = 0; i < CONTROL_CLIENTS_MAX; i++)
		if (c->cl[i].state == CL_FREE)
			return &c->cl[i];
	return NULL;
}

static void control_accept_cb(struct ev_loop *loop, ev_io *w, int revents)
{
	static const char refused[] = "ERR permission denied: root only\n";
	struct control *c = container_of(w, struct control, accept_w);
	int fd = accept4(c->lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
	struct client *cl;

	(void)revents;
	if (fd < 0) {
		if (errno != EAGAIN && errno != EINTR && errno != ECONNABORTED)
			log_rl(&c->rl, LOG_WARNING, "control: accept: %s", strerror(errno));
		return;
	}
	cl = control_slot(c);
	if (!cl || !control_peer_is_root(c, fd)) {
		/* Best effort: the socket is new, so the line fits in its buffer. */
		if (cl && send(fd, refused, sizeof(refused) - 1, MSG_NOSIGNAL | MSG_DONTWAIT) < 0)
			log_debug("control: %s", strerror(errno));
		close(fd);
		return;
	}
	cl->state = CL_READ;
	cl->fd = fd;
	cl->req_len = cl->sent = 0;
	sbuf_init(&cl->resp, CONTROL_RESPONSE_MAX);
	ev_io_set(&cl->io, fd, EV_READ);
	ev_io_start(loop, &cl->io);
	ev_timer_set(&cl->deadline, CONTROL_TIMEOUT_S, 0.);
	ev_timer_start(loop, &cl->deadline);
	if (++c->nclients == CONTROL_CLIENTS_MAX)
		ev_io_stop(loop, &c->accept_w);   /* the rest wait in the backlog */
}

/* ---- the socket ---- */

/* A socket file at path that a live process accepts on. */
static bool control_live(const struct sockaddr_un *sa)
{
	/* Non-blocking: a live instance with a full backlog answers EAGAIN instead of waiting. */
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	bool live;

	if (fd < 0)
		return false;
	live = connect(fd, (const struct sockaddr *)sa, sizeof(*sa)) == 0 || errno == EAGAIN;
	close(fd);
	return live;
}

static int control_path(struct control *c, const char *dir, struct sockaddr_un *sa)
{
	char fallback[32];
	const char *name = guest_name(c->g);
	int n;

	/* A domain name that is no safe file name is served by domid. */
	if (!watch_name_ok(name)) {
		snprintf(fallback, sizeof(fallback), "dom%" PRIu32, guest_domid(c->g));
		name = fallback;
	}
	n = snprintf(sa->sun_path, sizeof(sa->sun_path), "%s/%s%s", dir, name, CONTROL_SUFFIX);
	if (n < 0 || (size_t)n >= sizeof(sa->sun_path)) {
		log_warn("control: %s/%s%s: path too long for a unix socket", dir, name,
			 CONTROL_SUFFIX);
		return -ENAMETOOLONG;
	}
	snprintf(c->path, sizeof(c->path), "%s", sa->sun_path);
	return 0;
}

static int control_listen(struct control *c, const struct sockaddr_un *sa)
{
	struct stat st;
	mode_t old;
	int rc;

	if (lstat(sa->sun_path, &st) == 0) {
		if (!S_ISSOCK(st.st_mode) || control_live(sa))
			return -EADDRINUSE;
		unlink(sa->sun_path);   /* an earlier instance's, left by a crash */
	}
	c->lfd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (c->lfd < 0)
		return -errno;
	/* Created 0600: only root may even connect (SO_PEERCRED checks it again). */
	old = umask(0177);
	rc = bind(c->lfd, (const struct sockaddr *)sa, sizeof(*sa));
	umask(old);
	if (rc < 0 || listen(c->lfd, (int)CONTROL_CLIENTS_MAX) < 0) {
		rc = -errno;
		close(c->lfd);
		c->lfd = -1;
		return rc;
	}
	return 0;
}

int control_start(struct ev_loop *loop, const char *dir, struct guest *g, struct control **out)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	struct control *c = calloc(1, sizeof(*c));
	int rc;

	*out = NULL;
	if (!c)
		return -ENOMEM;
	*c = (struct control){ .loop = loop, .g = g, .lfd = -1, .rl = RATELIMIT_DEFAULT };
	for (unsigned i = 0; i < CONTROL_CLIENTS_MAX; i++) {
		c->cl[i] = (struct client){ .c = c, .fd = -1, .pass_fd = -1 };
		ev_init(&c->cl[i].io, client_io_cb);
		ev_init(&c->cl[i].deadline, client_deadline_cb);
	}
	rc = control_path(c, dir, &sa);
	if (rc == 0 && mkdir(dir, 0755) < 0 && errno != EEXIST)
		rc = -errno;
	if (rc == 0)
		rc = control_listen(c, &sa);
	if (rc < 0) {
		if (rc == -EADDRINUSE)
			log_warn("control: %s is served by another instance (or is no socket); "
				 "no control socket for this one", c->path);
		else if (rc != -ENAMETOOLONG)
			log_warn("control: %s: %s; no control socket", c->path, strerror(-rc));
		free(c);
		return rc;
	}
	ev_io_init(&c->accept_w, control_accept_cb, c->lfd, EV_READ);
	ev_io_start(loop, &c->accept_w);
	log_info("control: listening on %s", c->path);
	*out = c;
	return 0;
}

void control_stop(struct control *c)
{
	if (!c)
		return;
	for (unsigned i = 0; i < CONTROL_CLIENTS_MAX; i++)
		if (c->cl[i].state != CL_FREE)
			client_close(&c->cl[i]);
	ev_io_stop(c->loop, &c->accept_w);
	close(c->lfd);
	unlink(c->path);
	free(c);
}
