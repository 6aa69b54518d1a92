/* A line-oriented Unix control socket with bounded clients (see gpio_ctl.h). */
#include "devices/gpio_ctl.h"

#include <errno.h>
#include <ev.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "lib/util.h"

struct gpio_ctl_client {
	struct gpio_ctl *ctl;
	int fd;                       /* -1: slot free */
	ev_io rd, wr;
	char in[GPIO_CTL_LINE_MAX + 1];
	size_t in_len;
	struct gpio_ctl_out out;
	size_t out_done;              /* bytes of out already written */
	bool closing;                 /* close once out is written */
};

struct gpio_ctl {
	struct ev_loop *loop;
	int fd;
	ev_io accept_w;
	char path[sizeof(((struct sockaddr_un *)0)->sun_path)];
	char name[80];
	struct ratelimit *rl;
	gpio_ctl_fn fn;
	void *opaque;
	unsigned nclients;
	struct gpio_ctl_client clients[GPIO_CTL_CLIENTS];
};

void gpio_ctl_reply(struct gpio_ctl_out *o, const char *fmt, ...)
{
	va_list ap;
	int n;

	if (o->len + 1 >= sizeof(o->buf))
		return;
	va_start(ap, fmt);
	n = vsnprintf(o->buf + o->len, sizeof(o->buf) - o->len, fmt, ap);
	va_end(ap);
	if (n > 0)
		o->len += (size_t)n < sizeof(o->buf) - o->len ? (size_t)n : sizeof(o->buf) - o->len - 1;
}

static void ctl_client_close(struct gpio_ctl_client *k)
{
	struct gpio_ctl *c = k->ctl;

	ev_io_stop(c->loop, &k->rd);
	ev_io_stop(c->loop, &k->wr);
	close(k->fd);
	k->fd = -1;
	/* A slot is free again: a client waiting in the backlog may come in. */
	if (c->nclients-- == GPIO_CTL_CLIENTS)
		ev_io_start(c->loop, &c->accept_w);
}

/* Write what is pending; read again once it is all out. */
static void ctl_client_flush(struct gpio_ctl_client *k)
{
	struct gpio_ctl *c = k->ctl;

	while (k->out_done < k->out.len) {
		ssize_t n = send(k->fd, k->out.buf + k->out_done, k->out.len - k->out_done,
				 MSG_NOSIGNAL | MSG_DONTWAIT);

		if (n < 0 && (errno == EAGAIN || errno == EINTR)) {
			ev_io_stop(c->loop, &k->rd);
			ev_io_start(c->loop, &k->wr);
			return;
		}
		if (n <= 0) {
			ctl_client_close(k);
			return;
		}
		k->out_done += (size_t)n;
	}
	k->out.len = k->out_done = 0;
	ev_io_stop(c->loop, &k->wr);
	if (k->closing)
		ctl_client_close(k);
	else
		ev_io_start(c->loop, &k->rd);
}

/* Run every complete line in the input; stops early when an answer has to wait. */
static void ctl_client_lines(struct gpio_ctl_client *k)
{
	char *nl;

	while (k->fd >= 0 && k->out.len == 0 && (nl = memchr(k->in, '\n', k->in_len))) {
		size_t len = (size_t)(nl - k->in);

		*nl = '\0';
		if (len && k->in[len - 1] == '\r')
			k->in[len - 1] = '\0';
		k->ctl->fn(k->ctl->opaque, k->in, &k->out);
		memmove(k->in, nl + 1, k->in_len - len - 1);
		k->in_len -= len + 1;
		ctl_client_flush(k);
	}
	if (k->fd >= 0 && k->in_len == GPIO_CTL_LINE_MAX && !memchr(k->in, '\n', k->in_len)) {
		log_rl(k->ctl->rl, LOG_NOTICE, "%s: control client sent a line longer than %d "
		       "bytes: closed", k->ctl->name, GPIO_CTL_LINE_MAX);
		gpio_ctl_reply(&k->out, "err line too long\n");
		k->closing = true;
		ctl_client_flush(k);
	}
}

static void ctl_rd_cb(struct ev_loop *loop, ev_io *w, int revents)
{
	struct gpio_ctl_client *k = container_of(w, struct gpio_ctl_client, rd);
	ssize_t n;

	(void)loop;
	(void)revents;
	if (k->in_len >= GPIO_CTL_LINE_MAX) {   /* full: its lines first (never a 0-byte recv) */
		ctl_client_lines(k);
		return;
	}
	n = recv(k->fd, k->in + k->in_len, GPIO_CTL_LINE_MAX - k->in_len, MSG_DONTWAIT);
	if (n < 0 && (errno == EAGAIN || errno == EINTR))
		return;
	if (n <= 0) {
		ctl_client_close(k);
		return;
	}
	k->in_len += (size_t)n;
	ctl_client_lines(k);
}

static void ctl_wr_cb(struct ev_loop *loop, ev_io *w, int revents)
{
	struct gpio_ctl_client *k = container_of(w, struct gpio_ctl_client, wr);

	(void)loop;
	(void)revents;
	ctl_client_flush(k);
	if (k->fd >= 0 && k->out.len == 0)
		ctl_client_lines(k);   /* lines that came with the one just answered */
}

static void ctl_accept_cb(struct ev_loop *loop, ev_io *w, int revents)
{
	struct gpio_ctl *c = container_of(w, struct gpio_ctl, accept_w);
	struct gpio_ctl_client *k = NULL;
	int fd;

	(void)revents;
	for (unsigned i = 0; i < GPIO_CTL_CLIENTS && !k; i++)
		if (c->clients[i].fd < 0)
			k = &c->clients[i];
	if (!k) {
		ev_io_stop(loop, w);
		return;
	}
	fd = accept4(c->fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
	if (fd < 0) {
		if (errno != EAGAIN && errno != EINTR && errno != ECONNABORTED)
			log_rl(c->rl, LOG_WARNING, "%s: control socket: accept: %s", c->name,
			       strerror(errno));
		return;
	}
	memset(&k->in_len, 0, sizeof(*k) - offsetof(struct gpio_ctl_client, in_len));
	k->fd = fd;
	ev_io_set(&k->rd, fd, EV_READ);
	ev_io_set(&k->wr, fd, EV_WRITE);
	ev_io_start(loop, &k->rd);
	/* At the bound, further clients wait in the backlog until one leaves. */
	if (++c->nclients == GPIO_CTL_CLIENTS)
		ev_io_stop(loop, w);
}

static int ctl_listen(struct gpio_ctl *c)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	struct stat st;

	/* A stale socket of an earlier run would make bind fail; anything else is not ours. */
	if (lstat(c->path, &st) == 0) {
		if (!S_ISSOCK(st.st_mode))
			return -EEXIST;
		unlink(c->path);
	}
	memcpy(sa.sun_path, c->path, strlen(c->path) + 1);
	c->fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (c->fd < 0)
		return -errno;
	if (bind(c->fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 ||
	    listen(c->fd, GPIO_CTL_CLIENTS) < 0)
		return -errno;
	return 0;
}

struct gpio_ctl *gpio_ctl_open(struct ev_loop *loop, const char *path, const char *name,
			       struct ratelimit *rl, gpio_ctl_fn fn, void *opaque)
{
	struct gpio_ctl *c;
	int err;

	if (!loop || strlen(path) >= sizeof(c->path)) {
		errno = loop ? ENAMETOOLONG : EINVAL;
		return NULL;
	}
	c = calloc(1, sizeof(*c));
	if (!c)
		return NULL;
	*c = (struct gpio_ctl){ .loop = loop, .fd = -1, .rl = rl, .fn = fn, .opaque = opaque };
	snprintf(c->path, sizeof(c->path), "%s", path);
	snprintf(c->name, sizeof(c->name), "%s", name);
	for (unsigned i = 0; i < GPIO_CTL_CLIENTS; i++) {
		c->clients[i].ctl = c;
		c->clients[i].fd = -1;
		ev_io_init(&c->clients[i].rd, ctl_rd_cb, -1, EV_READ);
		ev_io_init(&c->clients[i].wr, ctl_wr_cb, -1, EV_WRITE);
	}
	err = ctl_listen(c);
	if (err < 0) {
		if (c->fd >= 0)
			close(c->fd);
		free(c);
		errno = -err;
		return NULL;
	}
	ev_io_init(&c->accept_w, ctl_accept_cb, c->fd, EV_READ);
	ev_io_start(loop, &c->accept_w);
	return c;
}

void gpio_ctl_close(struct gpio_ctl *c, bool keep_path)
{
	if (!c)
		return;
	for (unsigned i = 0; i < GPIO_CTL_CLIENTS; i++)
		if (c->clients[i].fd >= 0)
			ctl_client_close(&c->clients[i]);
	ev_io_stop(c->loop, &c->accept_w);
	close(c->fd);
	if (!keep_path)
		unlink(c->path);
	free(c);
}
