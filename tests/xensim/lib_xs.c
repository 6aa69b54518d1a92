/*
 * libxenstore, simulated: requests go to the hub's in-memory store; watch events arrive on a
 * socketpair whose other end the hub holds, so xs_fileno() is a real pollable fd.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <xenstore.h>

#include "tests/xensim/client.h"

struct xs_handle {
	int conn;
	int watch_fd;
};

struct xs_handle *xs_open(unsigned long flags)
{
	struct xs_handle *h = calloc(1, sizeof(*h));
	struct xsim_msg *m = xsim_msg_new(XSIM_OP_XS_SINK, 0);
	int sv[2] = { -1, -1 };

	(void)flags;
	if (!h || !m)
		goto fail;
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
	int rc = m ? xsim_rpc(h->conn, m, -1, NULL, 0) : -1;

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
	if (m && xsim_rpc(h->conn, m, -1, NULL, 0) == 0 && (v = malloc(m->len + 1))) {
		memcpy(v, m->data, m->len);
		v[m->len] = '\0';
		if (len)
			*len = m->len;
	}
	free(m);
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
	if (m && xsim_rpc(h->conn, m, -1, NULL, 0) == 0) {
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

	do
		n = recv(h->watch_fd, buf, sizeof(buf) - 1, flags);
	while (n < 0 && errno == EINTR);
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
	struct xsim_msg *m = xsim_msg_new(XSIM_OP_XS_INTRODUCED, domid);
	bool alive = false;

	if (m && xsim_rpc(h->conn, m, -1, NULL, 0) == 0)
		alive = m->a != 0;
	free(m);
	return alive;
}

char *xs_get_domain_path(struct xs_handle *h, unsigned int domid)
{
	char *p;

	(void)h;
	return asprintf(&p, "/local/domain/%u", domid) < 0 ? NULL : p;
}
