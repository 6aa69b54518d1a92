/*
 * libxenstore, simulated: requests go to the hub's in-memory store; watch events arrive on a
 * socketpair whose other end the hub holds, so xs_fileno() is a real pollable fd.
 *
 * A lost connection (xsim_xs_restart()) looks as it does with the real threaded library, whose
 * reader thread closes the socket on EOF: the request that meets the loss fails (EPIPE or EIO
 * here), every later one with EBADF; xs_check_watch() and xs_read_watch() return queued events,
 * then fail with EINVAL; xs_fileno() (a pipe in the real library) does not become readable.
 */
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <xenstore.h>

#include "tests/xensim/client.h"
#include "tests/xensim/fault.h"

struct xs_handle {
	int conn;
	int watch_fd;
	bool broken;            /* the connection is gone: the real library's fd == -1 */
};

/* The hub hung up on this handle (xenstored went away), as the real reader thread notices. */
static bool xs_gone(struct xs_handle *h)
{
	struct pollfd p = { .fd = h->conn, .events = POLLIN };

	if (!h->broken && poll(&p, 1, 0) == 1 && (p.revents & (POLLHUP | POLLERR)))
		h->broken = true;
	return h->broken;
}

/* xsim_rpc for xenstore requests: a transport failure breaks the handle for good. */
static int xs_rpc(struct xs_handle *h, struct xsim_msg *m)
{
	int rc;

	if (h->broken) {
		errno = EBADF;
		return -EBADF;
	}
	m->rc = 1;   /* never in a reply: still 1 after a failure means no reply came */
	rc = xsim_rpc(h->conn, m, -1, NULL, 0);
	if (rc < 0 && m->rc == 1)
		h->broken = true;
	return rc;
}

struct xs_handle *xs_open(unsigned long flags)
{
	struct xs_handle *h = calloc(1, sizeof(*h));
	struct xsim_msg *m = xsim_msg_new(XSIM_OP_XS_SINK, 0);
	int sv[2] = { -1, -1 };

	(void)flags;
	if (!h || !m)
		goto fail;
	/*
	 * In a domU there is no xenstored socket: the real library looks for its device with
	 * access("/dev/xen/xenbus") (tools/xenstore/xs_lib.c, xs_domain_dev()), from the serving
	 * daemon too (a state write, a reconnect): the same syscall here.
	 */
	if (xsim_fault("xs_unprivileged"))
		(void)access("/dev/xen/xenbus", F_OK);
	h->conn = xsim_connect();
	if (h->conn < 0)
		goto fail;
	if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) < 0 ||
	    xsim_rpc(h->conn, m, sv[1], NULL, 0) < 0)
		goto fail_conn;
	close(sv[1]);
	h->watch_fd = sv[0];
	free(m);
	return h;
fail_conn:
	close(h->conn);
	if (sv[0] >= 0) {
		close(sv[0]);
		close(sv[1]);
	}
fail:
	free(m);
	free(h);
	return NULL;
}

void xs_close(struct xs_handle *xsh)
{
	if (!xsh)
		return;
	close(xsh->watch_fd);
	close(xsh->conn);
	free(xsh);
}

/* Build a request carrying one or two strings. */
static struct xsim_msg *xs_msg(uint32_t op, const char *s1, const void *s2, size_t len2)
{
	size_t l1 = strlen(s1) + 1;
	struct xsim_msg *m;

	if (l1 + len2 > XSIM_DATA_MAX) {
		errno = E2BIG;
		return NULL;
	}
	m = xsim_msg_new(op, 0);
	if (!m)
		return NULL;
	memcpy(m->data, s1, l1);
	if (len2)
		memcpy(m->data + l1, s2, len2);
	m->a = (uint32_t)l1;
	m->len = (uint32_t)(l1 + len2);
	return m;
}

static bool xs_simple(struct xs_handle *h, struct xsim_msg *m)
{
	int rc = m ? xs_rpc(h, m) : -1;

	free(m);
	return rc == 0;
}

void *xs_read(struct xs_handle *h, xs_transaction_t t, const char *path, unsigned int *len)
{
	struct xsim_msg *m;
	char *v = NULL;

	if (t != XBT_NULL) {
		errno = EINVAL;
		return NULL;
	}
	m = xs_msg(XSIM_OP_XS_READ, path, NULL, 0);
	if (m && xs_rpc(h, m) == 0 && (v = malloc(m->len + 1))) {
		memcpy(v, m->data, m->len);
		v[m->len] = '\0';
		if (len)
			*len = m->len;
	}
	free(m);
	/*
	 * Not dom0: xenstored answers for a missing node with the permissions of its nearest
	 * ancestor, and /local/domain is not readable to a domU.
	 */
	if (!v && errno == ENOENT && xsim_fault("xs_unprivileged") &&
	    strncmp(path, "/local/domain/", 14) == 0)
		errno = EACCES;
	/* Nor are dom0's own nodes (owned by dom0, no read for others). */
	if (v && xsim_fault("xs_unprivileged") && strncmp(path, "/local/domain/0/", 16) == 0) {
		free(v);
		v = NULL;
		errno = EACCES;
	}
	return v;
}

bool xs_write(struct xs_handle *h, xs_transaction_t t, const char *path, const void *data,
	      unsigned int len)
{
	if (t != XBT_NULL) {
		errno = EINVAL;
		return false;
	}
	return xs_simple(h, xs_msg(XSIM_OP_XS_WRITE, path, data, len));
}

bool xs_rm(struct xs_handle *h, xs_transaction_t t, const char *path)
{
	if (t != XBT_NULL) {
		errno = EINVAL;
		return false;
	}
	return xs_simple(h, xs_msg(XSIM_OP_XS_RM, path, NULL, 0));
}

/* libxenstore's layout: one allocation, the pointer array followed by the strings. */
static char **xs_string_array(const char *buf, unsigned len, unsigned count)
{
	char **v = malloc(count * sizeof(char *) + len + 1);
	char *s;

	if (!v)
		return NULL;
	s = (char *)(v + count);
	memcpy(s, buf, len);
	s[len] = '\0';
	for (unsigned i = 0; i < count; i++) {
		v[i] = s;
		s += strlen(s) + 1;
	}
	return v;
}

char **xs_directory(struct xs_handle *h, xs_transaction_t t, const char *path,
		    unsigned int *num)
{
	struct xsim_msg *m;
	char **v = NULL;

	if (t != XBT_NULL) {
		errno = EINVAL;
		return NULL;
	}
	m = xs_msg(XSIM_OP_XS_DIRECTORY, path, NULL, 0);
	if (m && xs_rpc(h, m) == 0) {
		v = xs_string_array(m->data, m->len, m->a);
		if (v)
			*num = m->a;
	}
	free(m);
	return v;
}

bool xs_watch(struct xs_handle *h, const char *path, const char *token)
{
	return xs_simple(h, xs_msg(XSIM_OP_XS_WATCH, path, token, strlen(token) + 1));
}

bool xs_unwatch(struct xs_handle *h, const char *path, const char *token)
{
	return xs_simple(h, xs_msg(XSIM_OP_XS_UNWATCH, path, token, strlen(token) + 1));
}

int xs_fileno(struct xs_handle *h)
{
	return h->watch_fd;
}

static char **xs_next_watch(struct xs_handle *h, int flags)
{
	char buf[8192];
	ssize_t n;

	/* Blocking: wait for an event or for the connection to go (events 0: POLLHUP only). */
	while (flags == 0 && !h->broken) {
		struct pollfd p[2] = { { .fd = h->watch_fd, .events = POLLIN }, { .fd = h->conn } };

		if (poll(p, 2, -1) < 0 && errno != EINTR)
			return NULL;
		if (p[0].revents)
			break;
		if (p[1].revents && xs_gone(h)) {
			flags = MSG_DONTWAIT;   /* take what is queued, else fail below */
			break;
		}
	}
	if (flags == 0 && h->broken)
		flags = MSG_DONTWAIT;
	do
		n = recv(h->watch_fd, buf, sizeof(buf) - 1, flags);
	while (n < 0 && errno == EINTR);
	if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK) && xs_gone(h))
		errno = EINVAL;   /* the real library: no reader thread, nothing queued */
	if (n <= 0) {
		if (n == 0)
			errno = EPIPE;
		return NULL;
	}
	buf[n] = '\0';
	return xs_string_array(buf, (unsigned)n, 2);
}

char **xs_check_watch(struct xs_handle *h)
{
	return xs_next_watch(h, MSG_DONTWAIT);
}

char **xs_read_watch(struct xs_handle *h, unsigned int *num)
{
	char **v = xs_next_watch(h, 0);

	if (v && num)
		*num = 2;
	return v;
}

bool xs_is_domain_introduced(struct xs_handle *h, unsigned int domid)
{
	struct xsim_msg *m;
	bool alive = false;

	/* Not dom0: xenstored refuses the request (XS_FLAG_PRIV), the library says "no". */
	if (xsim_fault("xs_unprivileged")) {
		errno = EACCES;
		return false;
	}
	m = xsim_msg_new(XSIM_OP_XS_INTRODUCED, domid);
	if (m && xs_rpc(h, m) == 0)
		alive = m->a != 0;
	free(m);
	return alive;
}

/* A request in the real library (XS_GET_DOMAIN_PATH), so it fails on a lost connection. */
char *xs_get_domain_path(struct xs_handle *h, unsigned int domid)
{
	char *p;

	if (xs_gone(h)) {
		errno = EBADF;
		return NULL;
	}
	return asprintf(&p, "/local/domain/%u", domid) < 0 ? NULL : p;
}
