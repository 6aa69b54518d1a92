/*
 * libxenevtchn, simulated. Each bound port is a pair of eventfds shared with the hub's guest
 * side. The handle's fd is an epoll set of the ports' "ioreq ready" eventfds registered with
 * EPOLLONESHOT: reporting a port disables it until xenevtchn_unmask re-arms it, which is the
 * mask-on-delivery of the real evtchn driver; a signal arriving while masked stays in the
 * eventfd and is delivered on unmask.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <sys/epoll.h>
#include <unistd.h>

#include <xenevtchn.h>

#include "tests/xensim/client.h"

struct evtchn_port {
	uint32_t port;          /* our local port; 0 = free entry */
	int in_fd, out_fd;      /* guest -> us, us -> guest */
};

struct xenevtchn_handle {
	int conn;
	int epfd;
	int64_t restrict_domid;
	struct evtchn_port *ports;
	unsigned nports;
};

/* Local ports are unique in the process, as they are in dom0's port space. */
static atomic_uint evtchn_next_port = 1;

xenevtchn_handle *xenevtchn_open(struct xentoollog_logger *logger, unsigned int flags)
{
	xenevtchn_handle *h = calloc(1, sizeof(*h));

	(void)logger;
	(void)flags;
	if (!h)
		return NULL;
	h->restrict_domid = -1;
	h->conn = xsim_connect();
	h->epfd = epoll_create1(EPOLL_CLOEXEC);
	if (h->conn < 0 || h->epfd < 0) {
		int e = errno;

		if (h->conn >= 0)
			close(h->conn);
		if (h->epfd >= 0)
			close(h->epfd);
		free(h);
		errno = e;
		return NULL;
	}
	return h;
}

static struct evtchn_port *evtchn_find(xenevtchn_handle *h, evtchn_port_t port)
{
	for (unsigned i = 0; i < h->nports; i++)
		if (port != 0 && h->ports[i].port == port)
			return &h->ports[i];
	errno = EINVAL;
	return NULL;
}

static void evtchn_release(xenevtchn_handle *h, struct evtchn_port *p)
{
	epoll_ctl(h->epfd, EPOLL_CTL_DEL, p->in_fd, NULL);
	close(p->in_fd);
	close(p->out_fd);
	p->port = 0;
}

int xenevtchn_close(xenevtchn_handle *xce)
{
	if (!xce)
		return 0;
	for (unsigned i = 0; i < xce->nports; i++)
		if (xce->ports[i].port)
			evtchn_release(xce, &xce->ports[i]);
	free(xce->ports);
	close(xce->epfd);
	close(xce->conn);
	free(xce);
	return 0;
}

int xenevtchn_fd(xenevtchn_handle *xce)
{
	return xce->epfd;
}

static struct evtchn_port *evtchn_slot(xenevtchn_handle *h)
{
	struct evtchn_port *v;

	for (unsigned i = 0; i < h->nports; i++)
		if (h->ports[i].port == 0)
			return &h->ports[i];
	v = realloc(h->ports, (h->nports + 1) * sizeof(*v));
	if (!v)
		return NULL;
	h->ports = v;
	v[h->nports].port = 0;
	return &v[h->nports++];
}

static int evtchn_arm(xenevtchn_handle *h, struct evtchn_port *p, int op)
{
	struct epoll_event ev = { .events = EPOLLIN | EPOLLONESHOT, .data.u32 = p->port };

	return epoll_ctl(h->epfd, op, p->in_fd, &ev);
}

xenevtchn_port_or_error_t xenevtchn_bind_interdomain(xenevtchn_handle *xce, uint32_t domid,
						     evtchn_port_t remote_port)
{
	struct xsim_msg *m;
	struct evtchn_port *p;
	int fds[2];

	if (xce->restrict_domid >= 0 && xce->restrict_domid != domid) {
		errno = EPERM;
		return -1;
	}
	m = xsim_msg_new(XSIM_OP_BIND, domid);
	if (!m)
		return -1;
	m->a = remote_port;
	if (xsim_rpc(xce->conn, m, -1, fds, 2) < 0) {
		free(m);
		return -1;
	}
	free(m);
	p = evtchn_slot(xce);
	if (!p) {
		close(fds[0]);
		close(fds[1]);
		errno = ENOMEM;
		return -1;
	}
	*p = (struct evtchn_port){ atomic_fetch_add(&evtchn_next_port, 1), fds[0], fds[1] };
	/* A new binding starts unmasked. */
	if (evtchn_arm(xce, p, EPOLL_CTL_ADD) < 0) {
		int e = errno;

		close(fds[0]);
		close(fds[1]);
		p->port = 0;
		errno = e;
		return -1;
	}
	return (xenevtchn_port_or_error_t)p->port;
}

int xenevtchn_unbind(xenevtchn_handle *xce, evtchn_port_t port)
{
	struct evtchn_port *p = evtchn_find(xce, port);

	if (!p)
		return -1;
	evtchn_release(xce, p);
	return 0;
}

int xenevtchn_notify(xenevtchn_handle *xce, evtchn_port_t port)
{
	struct evtchn_port *p = evtchn_find(xce, port);
	uint64_t one = 1;

	if (!p)
		return -1;
	return write(p->out_fd, &one, sizeof(one)) == sizeof(one) ? 0 : -1;
}

/*
 * Next pending port. Like a read of /dev/xen/evtchn: blocks unless the fd was made
 * non-blocking, then fails with EAGAIN when nothing is pending.
 */
xenevtchn_port_or_error_t xenevtchn_pending(xenevtchn_handle *xce)
{
	struct epoll_event ev;
	int flags = fcntl(xce->epfd, F_GETFL), n;
	uint64_t count;
	struct evtchn_port *p;

	do
		n = epoll_wait(xce->epfd, &ev, 1, (flags >= 0 && (flags & O_NONBLOCK)) ? 0 : -1);
	while (n < 0 && errno == EINTR);
	if (n <= 0) {
		if (n == 0)
			errno = EAGAIN;
		return -1;
	}
	p = evtchn_find(xce, ev.data.u32);
	if (!p)
		return -1;
	/* Consume the signal: it is now pending-and-masked until unmask. */
	if (read(p->in_fd, &count, sizeof(count)) < 0 && errno != EAGAIN)
		return -1;
	return (xenevtchn_port_or_error_t)p->port;
}

int xenevtchn_unmask(xenevtchn_handle *xce, evtchn_port_t port)
{
	struct evtchn_port *p = evtchn_find(xce, port);

	return p ? evtchn_arm(xce, p, EPOLL_CTL_MOD) : -1;
}

int xenevtchn_restrict(xenevtchn_handle *xce, domid_t domid)
{
	if (xce->restrict_domid >= 0 && xce->restrict_domid != domid) {
		errno = EPERM;
		return -1;
	}
	xce->restrict_domid = domid;
	xsim_note_restricted(xce->conn, domid, XSIM_RESTRICTED_EVTCHN);
	return 0;
}
