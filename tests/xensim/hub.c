/*
 * The hub: the simulated machine and the thread serving the drop-in libraries.
 *
 * Everything lives under one mutex. The hub thread takes it for each request; the guest side
 * takes it to change the machine or to look up where an access goes, never while waiting. A
 * destroyed ioreq server is retired, not freed, so a guest access racing with its destruction
 * still points at valid memory; retired servers are freed with the hub.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <unistd.h>

#include <xen/hvm/hvm_op.h>

#include "tests/xensim/guest.h"
#include "tests/xensim/hub.h"

#ifndef SYS_memfd_secret
#define SYS_memfd_secret 447     /* the same on every architecture */
#endif


/* The domain with that id: the live one when the id was reused after a death. */
struct xsim_dom *hub_dom_get(struct xsim_hub *h, uint32_t domid)
{
	struct xsim_dom *dead = NULL;

	for (unsigned i = 0; i < XSIM_MAX_DOMS; i++) {
		if (!h->doms[i] || h->doms[i]->domid != domid)
			continue;
		if (h->doms[i]->alive)
			return h->doms[i];
		dead = h->doms[i];
	}
	return dead;
}

static struct xsim_dom *hub_dom_alive(struct xsim_hub *h, uint32_t domid)
{
	struct xsim_dom *d = hub_dom_get(h, domid);

	return d && d->alive ? d : NULL;
}

static struct xsim_server *hub_server(struct xsim_dom *d, uint32_t id)
{
	return id < XSIM_MAX_SERVERS ? d->servers[id] : NULL;
}

/*
 * Like Xen's ioreq_server_select(): servers are tried from the highest id down, so the most
 * recently created one wins where ranges overlap (a restarted device model takes over from one
 * that died without destroying its server).
 */
struct xsim_server *hub_route(struct xsim_dom *d, uint64_t addr, uint64_t len)
{
	uint64_t end = len && addr <= UINT64_MAX - (len - 1) ? addr + (len - 1) : addr;

	for (unsigned i = XSIM_MAX_SERVERS; i-- > 0;) {
		struct xsim_server *s = d->servers[i];

		if (!s || !s->enabled)
			continue;
		for (unsigned r = 0; r < s->nranges; r++)
			if (s->ranges[r].mmio && addr >= s->ranges[r].start &&
			    end <= s->ranges[r].end)
				return s;
	}
	return NULL;
}

/* A new memory fd (or -errno) of size bytes, mapped shared at *map; closed on failure. */
static int hub_size_and_map(int fd, uint64_t size, void **map)
{
	int err;

	if (fd < 0)
		return -errno;
	if (ftruncate(fd, (off_t)size) == 0) {
		*map = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
		if (*map != MAP_FAILED)
			return fd;
	}
	err = errno;
	close(fd);
	return -err;
}

static int hub_memfd(const char *name, uint64_t size, void **map)
{
	return hub_size_and_map(memfd_create(name, MFD_CLOEXEC), size, map);
}

/* ---- ioreq servers ---- */

static void server_free(struct xsim_server *s)
{
	if (s->slots)
		munmap(s->slots, (size_t)s->npages * XSIM_PAGE);
	if (s->pages_fd >= 0)
		close(s->pages_fd);
	free(s->chans);
	free(s);
}

static struct xsim_server *server_new(struct xsim_dom *d)
{
	struct xsim_server *s = calloc(1, sizeof(*s));
	void *map;

	if (!s)
		return NULL;
	s->npages = (d->nr_vcpus + XSIM_SLOTS_PER_PAGE - 1) / XSIM_SLOTS_PER_PAGE;
	if (d->ioreq_pages_max && s->npages > d->ioreq_pages_max)
		s->npages = d->ioreq_pages_max;
	s->nchans = d->nr_vcpus < s->npages * XSIM_SLOTS_PER_PAGE ? d->nr_vcpus
								 : s->npages * XSIM_SLOTS_PER_PAGE;
	s->pages_fd = hub_memfd("xsim-ioreq", (uint64_t)s->npages * XSIM_PAGE, &map);
	s->chans = calloc(s->nchans, sizeof(*s->chans));
	if (s->pages_fd < 0 || !s->chans) {
		s->npages = s->nchans = 0;
		server_free(s);
		return NULL;
	}
	s->slots = map;
	for (unsigned i = 0; i < s->nchans; i++) {
		s->chans[i] = (struct xsim_chan){ .port = d->next_port++, .d = d, .s = s, .vcpu = i };
		s->slots[i].state = STATE_IOREQ_NONE;
	}
	return s;
}

/* Xen writes each vCPU's vp_eport into the ioreq page when the server is enabled (until then
 * a device model reading it sees 0), so a daemon must enable before binding. */
static void server_set_state(struct xsim_server *s, bool enabled)
{
	for (unsigned i = 0; enabled && i < s->nchans; i++)
		s->slots[i].vp_eport = s->chans[i].port;
	s->enabled = enabled;
}

static int server_create(struct xsim_dom *d, uint32_t bufioreq, uint32_t *id)
{
	/* Arm has no buffered ioreqs: Xen refuses anything but BUFIOREQ_OFF there. */
	if (bufioreq != HVM_IOREQSRV_BUFIOREQ_OFF)
		return -EOPNOTSUPP;
	for (uint32_t i = 0; i < XSIM_MAX_SERVERS; i++) {
		if (d->servers[i])
			continue;
		d->servers[i] = server_new(d);
		if (!d->servers[i])
			return -ENOMEM;
		d->servers[i]->id = i;
		*id = i;
		return 0;
	}
	return -ENOSPC;
}

static void evh_detach(struct xsim_chan *ch);

static void server_retire(struct xsim_dom *d, uint32_t id)
{
	struct xsim_retired *r = malloc(sizeof(*r));

	d->servers[id]->enabled = false;
	/* Xen closes the server's channels: those only the kernel's handlers held go. */
	for (unsigned v = 0; v < d->servers[id]->nchans; v++) {
		struct xsim_chan *ch = &d->servers[id]->chans[v];

		if (ch->evh && ch->evh->closed)
			evh_detach(ch);
	}
	if (!r) {   /* leak rather than free memory a guest access may be using */
		d->servers[id] = NULL;
		return;
	}
	r->s = d->servers[id];
	r->next = d->hub->graveyard;
	d->hub->graveyard = r;
	d->servers[id] = NULL;
}

/*
 * A server's ranges behave as Xen's rangesets: mapping a range that overlaps one of the same
 * kind fails (EEXIST), adjacent ranges merge, and unmapping needs one range that contains the
 * whole span (ENOENT otherwise), which may split it in two.
 */
static void server_drop_range(struct xsim_server *s, unsigned r)
{
	s->ranges[r] = s->ranges[--s->nranges];
}

static int server_map_range(struct xsim_server *s, bool mmio, uint64_t start, uint64_t end)
{
	if (start > end)
		return -EINVAL;
	for (unsigned r = 0; r < s->nranges; r++)
		if (s->ranges[r].mmio == mmio && start <= s->ranges[r].end &&
		    end >= s->ranges[r].start)
			return -EEXIST;
	for (unsigned r = 0; r < s->nranges;) {
		struct xsim_range *x = &s->ranges[r];

		if (x->mmio == mmio && ((start > 0 && x->end == start - 1) ||
					(end < UINT64_MAX && x->start == end + 1))) {
			start = x->start < start ? x->start : start;
			end = x->end > end ? x->end : end;
			server_drop_range(s, r);
			continue;
		}
		r++;
	}
	if (s->nranges == XSIM_MAX_RANGES)
		return -ENOSPC;
	s->ranges[s->nranges++] = (struct xsim_range){ start, end, mmio };
	return 0;
}

static int server_unmap_range(struct xsim_server *s, bool mmio, uint64_t start, uint64_t end)
{
	for (unsigned r = 0; r < s->nranges; r++) {
		struct xsim_range x = s->ranges[r];

		if (x.mmio != mmio || start < x.start || end > x.end || start > end)
			continue;
		if (x.start < start && end < x.end && s->nranges == XSIM_MAX_RANGES)
			return -ENOSPC;
		server_drop_range(s, r);
		if (x.start < start)
			s->ranges[s->nranges++] = (struct xsim_range){ x.start, start - 1, mmio };
		if (end < x.end)
			s->ranges[s->nranges++] = (struct xsim_range){ end + 1, x.end, mmio };
		return 0;
	}
	return -ENOENT;
}

static struct xsim_chan *hub_chan_by_port(struct xsim_dom *d, uint32_t port)
{
	for (unsigned i = 0; i < XSIM_MAX_SERVERS; i++) {
		struct xsim_server *s = d->servers[i];

		for (unsigned v = 0; s && v < s->nchans; v++)
			if (s->chans[v].port == port)
				return &s->chans[v];
	}
	return NULL;
}

/* ---- event-channel handles ---- */

struct hub_reply {
	int fds[4];
	unsigned nfds;
	int close_after;        /* a descriptor of the hub's own to close once the reply is sent */
};

static void evh_detach(struct xsim_chan *ch)
{
	/* The port closes: privcmd's handler on it dies with it (hub_kernel_orphan()). */
	if (ch->s && ch->s->kfds)
		hub_kernel_orphan(ch->d->hub, ch->s);
	atomic_store(&ch->evh->pg->kflag[ch->evidx], 0);
	ch->evh->bound[ch->evidx] = NULL;
	ch->evh = NULL;
}

static void evh_free(struct xsim_evh *e)
{
	if (e->pg)
		munmap(e->pg, sizeof(*e->pg));
	if (e->page_fd >= 0)
		close(e->page_fd);
	if (e->doorbell >= 0)
		close(e->doorbell);
	free(e->bound);
	free(e);
}

/* The handle's bound bindings, as a bitmap in the reply (for a re-opened handle). */
static void evh_bound_map(const struct xsim_evh *e, struct xsim_msg *m)
{
	uint8_t *map = (uint8_t *)m->data;

	memset(map, 0, XSIM_EVTCHN_MAX / 8);
	for (unsigned i = 0; i < XSIM_EVTCHN_MAX; i++)
		if (e->bound[i])
			map[i / 8] |= (uint8_t)(1u << (i % 8));
	m->len = XSIM_EVTCHN_MAX / 8;
}

/*
 * XSIM_OP_EVTCHN_OPEN: the connection becomes a handle: a socket pair as its "file" (the device
 * model's end is its xenevtchn_fd, readable while something is queued; a dup of the hub's end
 * lets it ring its own doorbell), and a shared page. Like an open of /dev/xen/evtchn, the
 * handle lives until every copy of that end is closed (the hub thread sees the hang-up), not
 * as long as the connection: a copy kept elsewhere (systemd's fd store) keeps its bindings.
 */
static int evh_open(struct xsim_hub *h, struct xsim_conn *c, struct xsim_msg *m,
		    struct hub_reply *rep)
{
	struct xsim_evh *e;
	struct stat st;
	void *map;
	int sv[2];

	if (c->evh)
		return -EEXIST;
	e = calloc(1, sizeof(*e));
	if (!e)
		return -ENOMEM;
	e->bound = calloc(XSIM_EVTCHN_MAX, sizeof(*e->bound));
	e->doorbell = -1;
	/* Blocking until the device model sets O_NONBLOCK, as /dev/xen/evtchn. */
	if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) == 0) {
		e->doorbell = sv[0];
		rep->close_after = sv[1];
		fstat(sv[1], &st);
		e->file = st.st_ino;
	}
	e->page_fd = hub_memfd("xsim-evtchn", sizeof(*e->pg), &map);
	if (!e->bound || e->doorbell < 0 || e->page_fd < 0) {
		int rc = e->page_fd < 0 ? e->page_fd : -ENOMEM;

		evh_free(e);
		return rc;
	}
	e->pg = map;
	e->port_base = h->next_port_base;
	h->next_port_base += XSIM_EVTCHN_MAX;
	e->next = h->evhs;
	h->evhs = e;
	e->conn = c;
	c->evh = e;
	m->a = e->port_base;
	rep->fds[0] = rep->close_after;
	rep->fds[1] = e->page_fd;
	rep->fds[2] = hub_kernel_bell(h);
	rep->fds[3] = e->doorbell;
	rep->nfds = 4;
	return 0;
}

/*
 * XSIM_OP_EVTCHN_FDOPEN: the connection takes over the handle whose file fd_in is (a process
 * that inherited it: xenevtchn_fdopen). Its bindings and whatever was queued are as they were.
 */
static int evh_fdopen(struct xsim_hub *h, struct xsim_conn *c, struct xsim_msg *m, int fd_in,
		      struct hub_reply *rep)
{
	struct xsim_evh *e = h->evhs;
	struct stat st;

	if (c->evh)
		return -EEXIST;
	if (fd_in < 0 || fstat(fd_in, &st) < 0)
		return -EBADF;
	while (e && (e->closed || e->file != st.st_ino))
		e = e->next;
	if (!e)
		return -EBADF;   /* not an event channel handle's descriptor */
	if (e->conn)
		e->conn->evh = NULL;
	e->conn = c;
	c->evh = e;
	m->a = e->port_base;
	evh_bound_map(e, m);
	rep->fds[0] = e->page_fd;
	rep->fds[1] = hub_kernel_bell(h);
	rep->fds[2] = e->doorbell;
	rep->nfds = 3;
	return 0;
}

/*
 * Every copy of the handle's file is closed: unbind its ports (Linux's evtchn_release). A port
 * on which privcmd's ioeventfd handlers run stays bound: they share its IRQ, and Linux closes
 * an event channel only with its IRQ's last handler; the handlers keep answering kicks (into
 * eventfds that may have no reader left) until they are deassigned or the server goes
 * (server_retire()). Meanwhile the port cannot be bound again (evh_bind(): EINVAL, as Xen
 * refuses a remote port that is not unbound).
 */
static void evh_release(struct xsim_hub *h, struct xsim_evh *e)
{
	pthread_mutex_lock(&h->lock);
	for (uint32_t i = 0; i < XSIM_EVTCHN_MAX; i++)
		if (e->bound[i] && !(e->bound[i]->s && e->bound[i]->s->kfds))
			evh_detach(e->bound[i]);
	e->closed = true;
	if (e->conn)
		e->conn->evh = NULL;
	e->conn = NULL;
	pthread_mutex_unlock(&h->lock);
}

/*
 * XSIM_OP_BIND: the port's "ioreq ready" signals go to binding m->b of the connection's handle.
 * A port still bound to another handle (a device model that never unbound) moves to this one.
 */
static int evh_bind(struct xsim_dom *d, struct xsim_conn *c, struct xsim_msg *m)
{
	struct xsim_chan *ch = hub_chan_by_port(d, m->a);

	if (!c->evh || m->b >= XSIM_EVTCHN_MAX || !ch)
		return -EINVAL;
	if (ch->evh && ch->evh->closed)
		return -EINVAL;   /* held by the kernel's handlers (evh_release()) */
	if (ch->evh)
		evh_detach(ch);
	if (c->evh->bound[m->b])
		evh_detach(c->evh->bound[m->b]);
	ch->evh = c->evh;
	ch->evidx = m->b;
	c->evh->bound[m->b] = ch;
	/*
	 * Xen's evtchn_bind_interdomain() also sets the new local port pending (notifications
	 * sent while the remote port was unbound were lost); not modelled: the tests count
	 * events exactly, and a device model that binds again must look at every slot anyway.
	 */
	atomic_store(&ch->evh->pg->kflag[ch->evidx], ch->s->kfds != 0);
	return 0;
}

/* XSIM_OP_UNBIND (binding m->b). */
static int evh_unbind(struct xsim_conn *c, uint32_t idx)
{
	if (!c->evh || idx >= XSIM_EVTCHN_MAX)
		return -EINVAL;
	if (c->evh->bound[idx])
		evh_detach(c->evh->bound[idx]);
	return 0;
}

static void evh_free_all(struct xsim_hub *h)
{
	while (h->evhs) {
		struct xsim_evh *e = h->evhs;

		h->evhs = e->next;
		evh_free(e);
	}
}

/* ---- requests from the drop-in libraries ---- */

static int server_set_state_op(struct xsim_dom *d, struct xsim_server *s, struct xsim_msg *m)
{
	(void)d;
	server_set_state(s, m->b != 0);
	return 0;
}

static int server_map_range_op(struct xsim_dom *d, struct xsim_server *s, struct xsim_msg *m)
{
	(void)d;
	return server_map_range(s, m->b != 0, m->x, m->y);
}

static int server_unmap_range_op(struct xsim_dom *d, struct xsim_server *s, struct xsim_msg *m)
{
	(void)d;
	return server_unmap_range(s, m->b != 0, m->x, m->y);
}

static int server_retire_op(struct xsim_dom *d, struct xsim_server *s, struct xsim_msg *m)
{
	(void)s;
	server_retire(d, m->a);
	return 0;
}

/* A DM op that changes where guest accesses go: with the routing written (route_lock). */
static int hub_reroute(struct xsim_dom *d, struct xsim_server *s, struct xsim_msg *m,
		       int (*op)(struct xsim_dom *d, struct xsim_server *s, struct xsim_msg *m))
{
	int rc;

	pthread_rwlock_wrlock(&d->route_lock);
	rc = op(d, s, m);
	pthread_rwlock_unlock(&d->route_lock);
	return rc;
}

static int hub_do_dm(struct xsim_hub *h, struct xsim_conn *c, struct xsim_msg *m,
		     struct hub_reply *rep)
{
	struct xsim_dom *d = hub_dom_alive(h, m->domid);
	struct xsim_server *s;

	/*
	 * A destroyed domain's ioreq servers went with it, as in Xen while the domain is dying:
	 * calls naming them fail with ENOENT (seen on real Xen 4.17); an unknown domid is ESRCH.
	 */
	if (!d)
		return hub_dom_get(h, m->domid) ? -ENOENT : -ESRCH;
	if (m->op == XSIM_OP_DOMAIN) {
		rep->fds[0] = d->ram_fd;
		rep->fds[1] = d->ctl_fd;
		rep->nfds = 2;
		return 0;
	}
	if (m->op == XSIM_OP_CREATE_SERVER) {
		int rc;

		pthread_rwlock_wrlock(&d->route_lock);
		rc = server_create(d, m->a, &m->a);
		pthread_rwlock_unlock(&d->route_lock);
		return rc;
	}
	if (m->op == XSIM_OP_BIND)
		return evh_bind(d, c, m);
	s = hub_server(d, m->a);
	if (!s)
		return -ENOENT;
	switch (m->op) {
	case XSIM_OP_SERVER_STATE:
		return hub_reroute(d, s, m, server_set_state_op);
	case XSIM_OP_MAP_RANGE:
		return hub_reroute(d, s, m, server_map_range_op);
	case XSIM_OP_UNMAP_RANGE:
		return hub_reroute(d, s, m, server_unmap_range_op);
	case XSIM_OP_DESTROY_SERVER:
		return hub_reroute(d, s, m, server_retire_op);
	case XSIM_OP_SERVER_PAGES:
		m->a = s->npages;
		rep->fds[0] = s->pages_fd;
		rep->nfds = 1;
		return 0;
	}
	return -ENOSYS;
}

/* Split "path\0second\0" whose first part is m->a bytes long. */
static int hub_two_strings(struct xsim_msg *m, const char **p1, const char **p2)
{
	if (m->len > XSIM_DATA_MAX || m->a == 0 || m->a > m->len || m->data[m->a - 1] != '\0')
		return -EINVAL;
	*p1 = m->data;
	*p2 = m->data + m->a;
	return 0;
}

/* xsim_xs_fail_writes(): does this write fail? Counts it down if so. Caller holds the lock. */
static bool hub_xs_write_fails(struct xsim_hub *h, const char *path)
{
	size_t pl = strlen(path), sl = strlen(h->xs_fail_suffix);

	if (!h->xs_fail_writes || pl < sl || strcmp(path + pl - sl, h->xs_fail_suffix) != 0)
		return false;
	h->xs_fail_writes--;
	return true;
}

static int hub_do_xs_rw(struct xsim_hub *h, struct xsim_msg *m)
{
	const char *path, *val;
	char *v;
	unsigned len;
	int rc;

	if (m->op == XSIM_OP_XS_WRITE) {
		rc = hub_two_strings(m, &path, &val);
		if (rc == 0 && hub_xs_write_fails(h, path))
			rc = -EIO;
		return rc ? rc : store_write(h, path, val, m->len - m->a);
	}
	m->data[XSIM_DATA_MAX - 1] = '\0';
	if (m->op == XSIM_OP_XS_RM)
		return store_rm(h, m->data);
	if (m->op == XSIM_OP_XS_DIRECTORY) {
		char *path_copy = strdup(m->data);
		int rc_dir = path_copy ? store_directory(h, path_copy, m->data, XSIM_DATA_MAX,
							 &m->a, &m->len) : -ENOMEM;

		free(path_copy);
		return rc_dir;
	}
	if (m->op != XSIM_OP_XS_READ)
		return -ENOSYS;
	rc = store_read(h, m->data, &v, &len);
	if (rc == 0) {
		memcpy(m->data, v, len);
		m->len = len;
	}
	return rc;
}

static int hub_do_xs(struct xsim_hub *h, struct xsim_conn *c, struct xsim_msg *m, int fd_in)
{
	const char *path, *token;
	int rc;

	switch (m->op) {
	case XSIM_OP_XS_SINK:
		if (h->xs_down)
			return -ECONNREFUSED;   /* as connect() to a socket nobody listens on */
		if (fd_in < 0 || c->sink >= 0)
			return -EINVAL;
		c->sink = fd_in;
		{
			/* Room for thousands of events before the queue has to take over. */
			int sz = 1 << 20;

			setsockopt(c->sink, SOL_SOCKET, SO_SNDBUF, &sz, sizeof(sz));
		}
		return 1;   /* fd kept */
	case XSIM_OP_XS_WATCH:
	case XSIM_OP_XS_UNWATCH:
		rc = hub_two_strings(m, &path, &token);
		if (rc == 0 && memchr(token, '\0', m->len - m->a) == NULL)
			rc = -EINVAL;
		if (rc == 0)
			rc = m->op == XSIM_OP_XS_WATCH ? store_watch(h, c, path, token)
						       : store_unwatch(h, c, path, token);
		return rc;
	case XSIM_OP_XS_INTRODUCED:
		/* Domain 0 (where the daemon runs) is always there. */
		m->a = m->domid == 0 || hub_dom_alive(h, m->domid) != NULL;
		return 0;
	}
	return hub_do_xs_rw(h, m);
}

static int hub_dispatch(struct xsim_hub *h, struct xsim_conn *c, struct xsim_msg *m, int fd_in,
			struct hub_reply *rep)
{
	if (m->op <= XSIM_OP_BIND)
		return hub_do_dm(h, c, m, rep);
	if (m->op == XSIM_OP_EVTCHN_OPEN)
		return evh_open(h, c, m, rep);
	if (m->op == XSIM_OP_EVTCHN_FDOPEN)
		return evh_fdopen(h, c, m, fd_in, rep);
	if (m->op == XSIM_OP_UNBIND)
		return evh_unbind(c, m->b);
	if (m->op == XSIM_OP_IOEVENTFD || m->op == XSIM_OP_IRQFD)
		return hub_kernel_ioctl(h, m, fd_in);
	return hub_do_xs(h, c, m, fd_in);
}

static int hub_send(int fd, struct xsim_msg *m, const struct hub_reply *rep)
{
	union { char buf[CMSG_SPACE(4 * sizeof(int))]; struct cmsghdr align; } u;
	struct iovec iov = { m, XSIM_MSG_HDR + m->len };
	struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1 };

	if (rep->nfds) {
		mh.msg_control = u.buf;
		mh.msg_controllen = CMSG_SPACE(rep->nfds * sizeof(int));
		struct cmsghdr *cm = CMSG_FIRSTHDR(&mh);

		cm->cmsg_level = SOL_SOCKET;
		cm->cmsg_type = SCM_RIGHTS;
		cm->cmsg_len = CMSG_LEN(rep->nfds * sizeof(int));
		memcpy(CMSG_DATA(cm), rep->fds, rep->nfds * sizeof(int));
	}
	return sendmsg(fd, &mh, MSG_NOSIGNAL) < 0 ? -errno : 0;
}

/* Receive one request; returns its length, 0 on hang-up. *fd_in gets a passed fd or -1. */
static ssize_t hub_recv(int fd, struct xsim_msg *m, int *fd_in)
{
	union { char buf[CMSG_SPACE(sizeof(int))]; struct cmsghdr align; } u;
	struct iovec iov = { m, sizeof(*m) };
	struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = u.buf,
			     .msg_controllen = sizeof(u.buf) };
	ssize_t n = recvmsg(fd, &mh, MSG_CMSG_CLOEXEC);

	*fd_in = -1;
	for (struct cmsghdr *cm = CMSG_FIRSTHDR(&mh); n > 0 && cm; cm = CMSG_NXTHDR(&mh, cm))
		if (cm->cmsg_level == SOL_SOCKET && cm->cmsg_type == SCM_RIGHTS)
			memcpy(fd_in, CMSG_DATA(cm), sizeof(int));
	return n;
}

/* One request from a connection; false when the connection is finished. */
static bool hub_serve(struct xsim_hub *h, struct xsim_conn *c, struct xsim_msg *m)
{
	struct hub_reply rep = { .nfds = 0, .close_after = -1 };
	int fd_in, rc;
	ssize_t n = hub_recv(c->fd, m, &fd_in);
	bool sent;

	if (n <= 0)
		return n < 0 && errno == EINTR;
	if ((size_t)n < XSIM_MSG_HDR || m->len > (size_t)n - XSIM_MSG_HDR) {
		m->len = 0;
		rc = -EINVAL;
	} else {
		pthread_mutex_lock(&h->lock);
		rc = hub_dispatch(h, c, m, fd_in, &rep);
		pthread_mutex_unlock(&h->lock);
	}
	if (rc == 1) {
		fd_in = -1;
		rc = 0;
	}
	if (fd_in >= 0)
		close(fd_in);
	m->rc = rc;
	if (rc < 0)
		m->len = 0;
	if (m->op != XSIM_OP_XS_READ && m->op != XSIM_OP_XS_DIRECTORY &&
	    m->op != XSIM_OP_EVTCHN_FDOPEN)
		m->len = 0;
	sent = hub_send(c->fd, m, &rep) == 0;
	/* In flight in the reply, the descriptor stays open for its receiver. */
	if (rep.close_after >= 0)
		close(rep.close_after);
	return sent;
}

/* ---- connections and the thread ---- */

static void hub_accept(struct xsim_hub *h)
{
	int fd = accept4(h->listen_fd, NULL, NULL, SOCK_CLOEXEC);
	struct xsim_conn *c, **v;

	if (fd < 0)
		return;
	c = calloc(1, sizeof(*c));
	pthread_mutex_lock(&h->lock);
	v = c ? realloc(h->conns, (h->nconns + 1) * sizeof(*v)) : NULL;
	if (!v) {
		pthread_mutex_unlock(&h->lock);
		free(c);
		close(fd);
		return;
	}
	c->fd = fd;
	c->sink = -1;
	c->q_tail = &c->q_head;
	h->conns = v;
	h->conns[h->nconns++] = c;
	pthread_mutex_unlock(&h->lock);
}

static void hub_drop(struct xsim_hub *h, unsigned i)
{
	struct xsim_conn *c = h->conns[i];

	pthread_mutex_lock(&h->lock);
	store_drop_conn(h, c);
	/* The handle lives on while its file does (evh_release), only this connection goes. */
	if (c->evh)
		c->evh->conn = NULL;
	h->conns[i] = h->conns[--h->nconns];
	pthread_mutex_unlock(&h->lock);
	while (c->q_head) {
		struct xsim_event *e = c->q_head;

		c->q_head = e->next;
		free(e);
	}
	close(c->fd);
	if (c->sink >= 0)
		close(c->sink);
	free(c);
}

/*
 * xsim_xs_restart(), in the hub thread (it alone changes the connection array): drop every
 * connection that opened a xenstore watch sink. The sink itself is kept open (orphaned) until
 * the hub stops: in the real threaded libxenstore, xs_fileno() is a pipe the library only
 * writes on watch events, so a lost connection does not make it readable. Unsent queued events
 * are lost, as they would be with a restarted xenstored.
 */
static void hub_xs_restart(struct xsim_hub *h)
{
	unsigned req;

	pthread_mutex_lock(&h->lock);
	req = h->xs_restart_req;
	pthread_mutex_unlock(&h->lock);
	if (req == h->xs_restart_done)
		return;
	for (unsigned i = h->nconns; i-- > 0;) {
		struct xsim_conn *c = h->conns[i];
		int *v;

		if (c->sink < 0)
			continue;
		pthread_mutex_lock(&h->lock);
		v = realloc(h->orphan_sinks, (h->norphans + 1) * sizeof(*v));
		if (v) {
			h->orphan_sinks = v;
			h->orphan_sinks[h->norphans++] = c->sink;
			c->sink = -1;
		}
		pthread_mutex_unlock(&h->lock);
		hub_drop(h, i);   /* without memory for the orphan, the sink is closed: readable */
	}
	pthread_mutex_lock(&h->lock);
	h->xs_restart_done = req;
	pthread_cond_broadcast(&h->xs_cond);
	pthread_mutex_unlock(&h->lock);
}

/* [stop, listen, wake, each connection, each connection's sink (POLLOUT when queued)]. */
#define HUB_FIXED_FDS 3u

/* The open handles' files: their hang-up (every copy closed) releases them. Lock held. */
static unsigned hub_open_evhs(struct xsim_hub *h, struct xsim_evh **v, unsigned max)
{
	unsigned n = 0;

	for (struct xsim_evh *e = h->evhs; e && n < max; e = e->next)
		if (!e->closed)
			v[n++] = e;
	return n;
}

#define HUB_MAX_EVHS 256u

static struct pollfd *hub_pollfds(struct xsim_hub *h, unsigned n, struct xsim_evh **evh,
				  unsigned *nevh)
{
	struct pollfd *p = calloc(HUB_FIXED_FDS + 2 * n + HUB_MAX_EVHS, sizeof(*p));

	if (!p)
		return NULL;
	p[0] = (struct pollfd){ .fd = h->stop_fd, .events = POLLIN };
	p[1] = (struct pollfd){ .fd = h->listen_fd, .events = POLLIN };
	p[2] = (struct pollfd){ .fd = h->wake_fd, .events = POLLIN };
	pthread_mutex_lock(&h->lock);
	for (unsigned i = 0; i < n; i++) {
		struct xsim_conn *c = h->conns[i];

		p[HUB_FIXED_FDS + i] = (struct pollfd){ .fd = c->fd, .events = POLLIN };
		p[HUB_FIXED_FDS + n + i] = (struct pollfd){ .fd = c->q_head ? c->sink : -1,
							    .events = POLLOUT };
	}
	*nevh = hub_open_evhs(h, evh, HUB_MAX_EVHS);
	/* No event asked for: POLLHUP is reported whatever the events. */
	for (unsigned i = 0; i < *nevh; i++)
		p[HUB_FIXED_FDS + 2 * n + i] = (struct pollfd){ .fd = evh[i]->doorbell };
	pthread_mutex_unlock(&h->lock);
	return p;
}

static void hub_flush_sinks(struct xsim_hub *h, const struct pollfd *p, unsigned n)
{
	uint64_t drain;

	if (p[2].revents && read(h->wake_fd, &drain, sizeof(drain)) < 0)
		drain = 0;   /* nothing to do: the eventfd was only a wake-up */
	pthread_mutex_lock(&h->lock);
	for (unsigned i = 0; i < n; i++)
		if (p[HUB_FIXED_FDS + n + i].revents)
			store_flush(h->conns[i]);
	pthread_mutex_unlock(&h->lock);
}

/*
 * Tests fork children that use xensim while the hub thread runs. A fork that catches the hub
 * thread inside malloc leaves the allocator's lock held forever in the child (seen as a rare
 * hang under ASan). The hub thread holds hub_fork_mu whenever it is not waiting in poll(), and
 * a fork waits for it (pthread_atfork), so a child never inherits a half-done hub step.
 */
static pthread_mutex_t hub_fork_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_once_t hub_fork_once = PTHREAD_ONCE_INIT;

static void hub_fork_lock(void) { pthread_mutex_lock(&hub_fork_mu); }
static void hub_fork_unlock(void) { pthread_mutex_unlock(&hub_fork_mu); }
static void hub_fork_register(void) { pthread_atfork(hub_fork_lock, hub_fork_unlock, hub_fork_unlock); }

static void *hub_thread(void *arg)
{
	struct xsim_hub *h = arg;
	struct xsim_msg *m;

	hub_fork_lock();
	m = malloc(sizeof(*m));
	for (;;) {
		unsigned n = h->nconns;   /* only this thread changes nconns */
		struct xsim_evh *evh[HUB_MAX_EVHS];
		unsigned nevh = 0;
		struct pollfd *p = m ? hub_pollfds(h, n, evh, &nevh) : NULL;
		int rc = -1;

		if (p) {
			hub_fork_unlock();
			rc = poll(p, HUB_FIXED_FDS + 2 * n + nevh, -1);
			hub_fork_lock();
		}
		if (!p || (rc < 0 && errno != EINTR) || p[0].revents) {
			free(p);
			break;
		}
		hub_flush_sinks(h, p, n);
		for (unsigned i = 0; i < nevh; i++)
			if (p[HUB_FIXED_FDS + 2 * n + i].revents & (POLLHUP | POLLERR))
				evh_release(h, evh[i]);
		for (unsigned i = n; i-- > 0;)
			if (p[HUB_FIXED_FDS + i].revents && !hub_serve(h, h->conns[i], m))
				hub_drop(h, i);
		if (p[1].revents)
			hub_accept(h);
		hub_xs_restart(h);
		free(p);
	}
	free(m);
	hub_fork_unlock();
	return NULL;
}

static int hub_listen(struct xsim_hub *h)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };

	snprintf(h->sock, sizeof(h->sock), "%s/hub.sock", h->dir);
	if (strlen(h->sock) >= sizeof(sa.sun_path))
		return -ENAMETOOLONG;
	memcpy(sa.sun_path, h->sock, strlen(h->sock) + 1);
	h->listen_fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
	if (h->listen_fd < 0)
		return -errno;
	if (bind(h->listen_fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 ||
	    listen(h->listen_fd, 128) < 0)
		return -errno;
	return 0;
}

struct xsim_hub *xsim_hub_start(void)
{
	struct xsim_hub *h = calloc(1, sizeof(*h));

	if (!h)
		return NULL;
	h->listen_fd = h->stop_fd = h->wake_fd = -1;
	h->next_domid = 1;
	h->next_port_base = 1;
	pthread_mutex_init(&h->lock, NULL);
	pthread_cond_init(&h->xs_cond, NULL);
	snprintf(h->dir, sizeof(h->dir), "/tmp/xsim.XXXXXX");
	if (!mkdtemp(h->dir) || hub_listen(h) < 0)
		goto fail;
	h->stop_fd = eventfd(0, EFD_CLOEXEC);
	h->wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (h->stop_fd < 0 || h->wake_fd < 0 ||
	    store_write(h, "/local/domain/0/name", "Domain-0", 8) < 0 ||
	    store_write(h, "/local/domain/0/domid", "0", 1) < 0)
		goto fail;
	if (hub_kernel_start(h) < 0)
		goto fail;
	pthread_once(&hub_fork_once, hub_fork_register);
	if (pthread_create(&h->thread, NULL, hub_thread, h) != 0) {
		hub_kernel_stop(h);
		goto fail;
	}
	setenv(XSIM_ENV_SOCKET, h->sock, 1);
	/*
	 * Daemons started from here put their control sockets (daemon/control.h) and their state
	 * files (daemon/state.h, as under systemd) in our dir, never in the host's /run.
	 */
	setenv("XEN_VIRTIOD_CONTROL_DIR", h->dir, 1);
	setenv("RUNTIME_DIRECTORY", h->dir, 1);
	return h;
fail:
	store_free(h);
	if (h->listen_fd >= 0)
		close(h->listen_fd);
	if (h->stop_fd >= 0)
		close(h->stop_fd);
	if (h->wake_fd >= 0)
		close(h->wake_fd);
	rmdir(h->dir);
	free(h);
	return NULL;
}

static void dom_free(struct xsim_dom *d)
{
	for (unsigned i = 0; i < XSIM_MAX_SERVERS; i++)
		if (d->servers[i])
			server_free(d->servers[i]);
	for (unsigned v = 0; d->vcpu_lock && v < d->nr_vcpus; v++)
		pthread_mutex_destroy(&d->vcpu_lock[v]);
	pthread_rwlock_destroy(&d->route_lock);
	free(d->vcpu_lock);
	free(d->test_left);
	if (d->ram)
		munmap(d->ram, d->ram_size);
	if (d->ctl)
		munmap(d->ctl, sizeof(*d->ctl));
	if (d->ram_fd >= 0)
		close(d->ram_fd);
	if (d->ctl_fd >= 0)
		close(d->ctl_fd);
	free(d);
}

static void hub_rm_dir(const char *dir)
{
	char cmd[128];

	/* Test files (configs, logs, sockets) only; the path is ours from mkdtemp. */
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	if (system(cmd) != 0)
		fprintf(stderr, "xsim: could not remove %s\n", dir);
}

void xsim_hub_stop(struct xsim_hub *h)
{
	uint64_t one = 1;

	if (!h)
		return;
	if (write(h->stop_fd, &one, sizeof(one)) != sizeof(one))
		fprintf(stderr, "xsim: could not stop the hub thread\n");
	pthread_join(h->thread, NULL);
	hub_kernel_stop(h);
	while (h->nconns)
		hub_drop(h, h->nconns - 1);
	free(h->conns);
	for (unsigned i = 0; i < XSIM_MAX_DOMS; i++)
		if (h->doms[i])
			dom_free(h->doms[i]);
	while (h->graveyard) {
		struct xsim_retired *r = h->graveyard;

		h->graveyard = r->next;
		server_free(r->s);
		free(r);
	}
	evh_free_all(h);
	store_free(h);
	for (unsigned i = 0; i < h->norphans; i++)
		close(h->orphan_sinks[i]);
	free(h->orphan_sinks);
	close(h->listen_fd);
	close(h->stop_fd);
	close(h->wake_fd);
	hub_rm_dir(h->dir);
	unsetenv(XSIM_ENV_SOCKET);
	unsetenv("XEN_VIRTIOD_CONTROL_DIR");
	unsetenv("RUNTIME_DIRECTORY");
	pthread_cond_destroy(&h->xs_cond);
	pthread_mutex_destroy(&h->lock);
	free(h);
}

const char *xsim_hub_dir(struct xsim_hub *h)
{
	return h->dir;
}

const char *xsim_dom_ram_kind(struct xsim_dom *d)
{
	return d->ram_pinnable ? "pinnable" : "unpinnable";
}

const char *xsim_hub_socket(struct xsim_hub *h)
{
	return h->sock;
}

/* ---- domains ---- */

/*
 * Guest RAM the kernel cannot pin, like the pages of a Xen foreign or grant mapping (a VM_PFNMAP
 * mapping that get_user_pages() refuses): memfd_secret(2) memory, which the kernel keeps out of
 * its direct map and will not pin either, so O_DIRECT into it fails with EFAULT exactly as
 * on Xen. Its mappings count as locked memory: beyond RLIMIT_MEMLOCK they need CAP_IPC_LOCK,
 * which a root test has and the sim daemon keeps (lib_fmem.c, xsim_daemon_keep_caps()).
 * -errno when the kernel has none (ENOSYS) or refuses (EAGAIN: over the limit, no capability).
 */
static int hub_secretfd(uint64_t size, void **map)
{
	return hub_size_and_map((int)syscall(SYS_memfd_secret, (unsigned)O_CLOEXEC), size, map);
}

/* XSIM_SAY_RAM=1 (the benchmarks' run.sh sets it): say once per kind what guest RAM is. */
static void dom_say_ram(struct xsim_dom *d)
{
	static bool said[2];
	const char *env = getenv("XSIM_SAY_RAM");

	if (!env || strcmp(env, "1") || said[d->ram_pinnable])
		return;
	said[d->ram_pinnable] = true;
	fprintf(stderr, "# xsim: guest RAM %s\n", d->ram_pinnable ?
		"pinnable (an ordinary memfd: O_DIRECT and pinning work, unlike on Xen)" :
		"unpinnable (memfd_secret: O_DIRECT and pinning fail with EFAULT, as with Xen's "
		"foreign mappings)");
}

static int dom_alloc_memory(struct xsim_dom *d, const struct xsim_dom_opts *o)
{
	uint64_t b0 = (o->ram_mib ? o->ram_mib : 64) << 20, b1 = o->ram1_mib << 20;
	const char *env = getenv("XSIM_RAM");
	void *map;

	d->ram_size = b0 + b1;
	d->ram_pinnable = o->pinnable_ram || (env && !strcmp(env, "pinnable"));
	d->ram_fd = d->ram_pinnable ? -ENOSYS : hub_secretfd(d->ram_size, &map);
	if (d->ram_fd < 0 && !d->ram_pinnable) {
		static bool said;

		if (!said)
			fprintf(stderr, "xsim: guest RAM the kernel can pin (memfd_secret: %s): "
				"O_DIRECT works here, unlike on Xen\n", strerror(-d->ram_fd));
		said = true;
		d->ram_pinnable = true;
	}
	if (d->ram_pinnable)
		d->ram_fd = hub_memfd("xsim-ram", d->ram_size, &map);
	if (d->ram_fd < 0)
		return d->ram_fd;
	dom_say_ram(d);
	d->ram = map;
	d->ctl_fd = hub_memfd("xsim-ctl", sizeof(*d->ctl), &map);
	if (d->ctl_fd < 0)
		return d->ctl_fd;
	d->ctl = map;
	d->ctl->domid = d->domid;
	d->ctl->nr_vcpus = d->nr_vcpus;
	d->ctl->bank_base[0] = XSIM_RAM0_BASE;
	d->ctl->bank_size[0] = b0;
	d->ctl->bank_base[1] = XSIM_RAM1_BASE;
	d->ctl->bank_size[1] = b1;
	atomic_store(&d->ctl->alive, 1);
	return 0;
}

static struct xsim_dom *dom_new(struct xsim_hub *h, const struct xsim_dom_opts *o, uint32_t id)
{
	struct xsim_dom *d = calloc(1, sizeof(*d));

	if (!d)
		return NULL;
	d->hub = h;
	d->domid = id;
	d->ram_fd = d->ctl_fd = -1;
	d->nr_vcpus = o->nr_vcpus ? o->nr_vcpus : 1;
	d->ioreq_pages_max = o->ioreq_pages_max;
	d->next_port = 1;
	d->next_gref = 8;
	snprintf(d->name, sizeof(d->name), "%s", o->name ? o->name : "guest");
	d->vcpu_lock = calloc(d->nr_vcpus, sizeof(*d->vcpu_lock));
	d->test_left = calloc(d->nr_vcpus, sizeof(*d->test_left));
	if (!d->vcpu_lock || !d->test_left || dom_alloc_memory(d, o) < 0) {
		dom_free(d);
		return NULL;
	}
	for (unsigned v = 0; v < d->nr_vcpus; v++)
		pthread_mutex_init(&d->vcpu_lock[v], NULL);
	pthread_rwlock_init(&d->route_lock, NULL);
	d->alive = true;
	return d;
}

static int dom_announce(struct xsim_hub *h, struct xsim_dom *d)
{
	char path[64], id[16], vm[64];
	int rc;

	snprintf(path, sizeof(path), "/local/domain/%u/name", d->domid);
	rc = store_write(h, path, d->name, strlen(d->name));
	snprintf(path, sizeof(path), "/local/domain/%u/domid", d->domid);
	snprintf(id, sizeof(id), "%u", d->domid);
	if (rc == 0)
		rc = store_write(h, path, id, strlen(id));
	/* libxl's /vm/<uuid>: unique per domain, where the id is reused. */
	snprintf(path, sizeof(path), "/local/domain/%u/vm", d->domid);
	snprintf(vm, sizeof(vm), "/vm/%08x-%04x-4%03x-8000-%012llx", d->domid,
		 (unsigned)getpid() & 0xffff, (unsigned)(h->next_uuid & 0xfff),
		 (unsigned long long)h->next_uuid);
	h->next_uuid++;
	if (rc == 0)
		rc = store_write(h, path, vm, strlen(vm));
	store_fire(h, "@introduceDomain");
	return rc;
}

struct xsim_dom *xsim_dom_create(struct xsim_hub *h, const struct xsim_dom_opts *o)
{
	struct xsim_dom *d = NULL;

	pthread_mutex_lock(&h->lock);
	for (unsigned i = 0; i < XSIM_MAX_DOMS; i++) {
		if (h->doms[i])
			continue;
		/* A reused id (o->domid) must be free: its domain dead. */
		if (o->domid && hub_dom_alive(h, o->domid))
			break;
		d = dom_new(h, o, o->domid ? o->domid : h->next_domid);
		if (d && dom_announce(h, d) < 0) {
			dom_free(d);
			d = NULL;
		}
		if (d) {
			if (!o->domid)
				h->next_domid++;
			h->doms[i] = d;
		}
		break;
	}
	pthread_mutex_unlock(&h->lock);
	return d;
}

uint32_t xsim_dom_id(struct xsim_dom *d)
{
	return d->domid;
}

static int dom_destroy(struct xsim_dom *d, bool announce)
{
	struct xsim_hub *h = d->hub;
	char path[96];

	pthread_mutex_lock(&h->lock);
	if (!d->alive) {
		pthread_mutex_unlock(&h->lock);
		return -ESRCH;
	}
	pthread_rwlock_wrlock(&d->route_lock);
	d->alive = false;
	atomic_store(&d->ctl->alive, 0);
	for (uint32_t i = 0; i < XSIM_MAX_SERVERS; i++)
		if (d->servers[i])
			server_retire(d, i);
	pthread_rwlock_unlock(&d->route_lock);
	/* libxl removes the domain's directory and its backend entries. */
	snprintf(path, sizeof(path), "/local/domain/%u", d->domid);
	store_rm(h, path);
	snprintf(path, sizeof(path), "/local/domain/0/backend/virtio_disk/%u", d->domid);
	store_rm(h, path);
	snprintf(path, sizeof(path), "/local/domain/0/backend/virtio/%u", d->domid);
	store_rm(h, path);
	if (announce)
		store_fire(h, "@releaseDomain");
	pthread_mutex_unlock(&h->lock);
	return 0;
}

int xsim_dom_destroy(struct xsim_dom *d)
{
	return dom_destroy(d, true);
}

int xsim_dom_destroy_unannounced(struct xsim_dom *d)
{
	return dom_destroy(d, false);
}

/* ---- xenstore, dom0 tools' view ---- */

int xsim_xs_write(struct xsim_hub *h, const char *path, const char *fmt, ...)
{
	char buf[4097];
	va_list ap;
	int n, rc;

	va_start(ap, fmt);
	n = vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	if (n < 0 || (size_t)n >= sizeof(buf))
		return -EINVAL;
	pthread_mutex_lock(&h->lock);
	rc = store_write(h, path, buf, (unsigned)n);
	pthread_mutex_unlock(&h->lock);
	return rc;
}

char *xsim_xs_read(struct xsim_hub *h, const char *path)
{
	char *v, *copy = NULL;
	unsigned len;
	int rc;

	pthread_mutex_lock(&h->lock);
	rc = store_read(h, path, &v, &len);
	if (rc == 0)
		copy = strndup(v, len);
	pthread_mutex_unlock(&h->lock);
	if (rc < 0)
		errno = -rc;
	return copy;
}

int xsim_xs_rm(struct xsim_hub *h, const char *path)
{
	int rc;

	pthread_mutex_lock(&h->lock);
	rc = store_rm(h, path);
	pthread_mutex_unlock(&h->lock);
	return rc;
}

int xsim_xs_restart(struct xsim_hub *h, bool stay_down)
{
	uint64_t one = 1;
	unsigned want;

	pthread_mutex_lock(&h->lock);
	h->xs_down = stay_down;
	want = ++h->xs_restart_req;
	pthread_mutex_unlock(&h->lock);
	if (write(h->wake_fd, &one, sizeof(one)) != sizeof(one))
		return -errno;
	pthread_mutex_lock(&h->lock);
	while (h->xs_restart_done != want)
		pthread_cond_wait(&h->xs_cond, &h->lock);
	pthread_mutex_unlock(&h->lock);
	return 0;
}

void xsim_xs_up(struct xsim_hub *h)
{
	pthread_mutex_lock(&h->lock);
	h->xs_down = false;
	pthread_mutex_unlock(&h->lock);
}

void xsim_xs_fail_writes(struct xsim_hub *h, const char *suffix, unsigned n)
{
	pthread_mutex_lock(&h->lock);
	snprintf(h->xs_fail_suffix, sizeof(h->xs_fail_suffix), "%s", suffix);
	h->xs_fail_writes = n;
	pthread_mutex_unlock(&h->lock);
}

unsigned xsim_xs_watch_count(struct xsim_hub *h, const char *path)
{
	unsigned n = 0;

	pthread_mutex_lock(&h->lock);
	for (unsigned i = 0; i < h->nwatches; i++)
		if (strcmp(h->watches[i].path, path) == 0)
			n++;
	pthread_mutex_unlock(&h->lock);
	return n;
}
