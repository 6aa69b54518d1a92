/*
 * virtio-vsock (device id 19, virtio 1.2 §5.10): stream sockets between the guest and host
 * programs, on unix sockets the way Firecracker, Cloud Hypervisor and vhost-device-vsock do it:
 *
 *   guest -> host   The guest connects to CID 2 port P: the device connects to the unix socket
 *                   PATH_P (PATH is the `socket` key) and answers RESPONSE, or RST when nobody
 *                   listens there.
 *   host -> guest   A host program connects to PATH, writes "CONNECT P\n": the device sends the
 *                   guest a REQUEST for its port P from a host port of its own (from
 *                   VSOCK_LOCAL_PORT_BASE up); on RESPONSE the program reads "OK <host-port>\n"
 *                   and the stream is the guest's; on RST its socket is closed.
 *
 * Everything runs on the loop and never blocks. Flow control is the spec's credit scheme in
 * both directions. Towards the guest, a connection's host socket is read only while the
 * guest's buf_alloc/fwd_cnt leave room, straight into the guest's receive buffer (no copy in
 * between). From the guest, each transmit chain is consumed at once: its payload is written to
 * the host socket and what the socket does not take waits in the connection's own buffer of
 * `buffer` KiB, the buf_alloc we advertise; fwd_cnt counts what the host socket took, and a
 * CREDIT_UPDATE goes out when the guest's view of our free space has fallen to half. A slow
 * host reader so stalls only its own connection (the guest runs out of credit for it); the
 * transmit queue and every other connection keep moving. A guest that sends beyond the credit
 * it was given gets that connection reset.
 *
 * Every header field is the guest's: short chains, a len beyond the chain, wrong CIDs are
 * dropped; unknown types and ops, packets for connections that do not exist and credit lies
 * are answered with RST. Bounds: max_connections (host clients still writing their CONNECT
 * line count too; the listener is not polled while full), `buffer` per connection, RSTs owed
 * to the guest (dropped, counted, when it gives no receive buffers for long), VQ_BUDGET packets
 * per queue per loop turn; a host program has VS_LINE_S to send its line, the guest VS_CONNECT_S
 * to answer a host program's REQUEST. Without receive buffers nothing is read from host sockets: each
 * readable connection waits in the send list with its watcher stopped until the guest's next
 * kick of the receive queue. At NEEDS_RESET every watcher stops; a reset closes every
 * connection (host programs see end of file).
 *
 * The event queue carries VIRTIO_VSOCK_EVENT_TRANSPORT_RESET when the guest's connections are
 * gone under it: after a restart (the previous process's connections died with it) and when a
 * reload changes guest_cid. A driver reset needs none: the driver drops its sockets itself.
 * SEQPACKET is not offered (see docs/devices.md).
 */
#include <endian.h>
#include <errno.h>
#include <ev.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "config/config.h"
#include "devices/console_ring.h"
#include "devices/device.h"
#include "devices/iov.h"
#include "devices/vsock.h"

extern const struct vdev_ops vdev_vsock_ops;

#define VS_QUEUE_MAX   256
#define VS_PKT_MAX     (64u * 1024)   /* payload of one packet to the guest */
#define VS_RST_STRAY   64u            /* RSTs owed for packets of no connection, at most */
#define VS_LINE_MAX    32u            /* "CONNECT 4294967295\n" and some slack */
#define VS_BACKLOG     16
#define VS_LINE_S      5.0            /* a host program has this long to send its CONNECT line */
#define VS_CONNECT_S   2.0            /* the guest has this long to answer a host's REQUEST */
#define VS_TICK_S      0.5            /* how often those deadlines are looked at */

/* Control packets a connection owes the guest (struct vs_conn.pending). */
#define P_REQUEST   1u
#define P_RESPONSE  2u
#define P_SHUTDOWN  4u
#define P_CREDIT    8u

enum vs_state {
	CS_HOST_LINE,    /* a host program connected to PATH; its "CONNECT P\n" not read yet */
	CS_CONNECTING,   /* REQUEST to the guest sent (or owed), RESPONSE awaited */
	CS_OPEN,         /* established: data both ways */
	CS_CLOSING,      /* the guest shut both ways: flushing to the host, then RST and gone */
};

struct vs_conn {
	struct vsock *vs;
	enum vs_state state;
	uint32_t guest_port, host_port;
	int fd;
	ev_io rd, wr;
	struct vs_conn *hnext;             /* hash chain (not CS_HOST_LINE) */
	struct vs_conn *prev, *next;       /* every connection */
	struct vs_conn *snext;             /* the send list */
	bool queued;                       /* in the send list */
	unsigned pending;                  /* P_* */
	bool rx_want;                      /* the host socket was readable: data to send */
	bool host_eof;                     /* the host stopped sending: SHUTDOWN(SEND) owed/sent */
	bool wr_shut;                      /* shutdown(SHUT_WR) done after the guest's SEND */
	char line[VS_LINE_MAX];            /* CS_HOST_LINE: the CONNECT line so far */
	unsigned line_len;
	uint32_t guest_shut;               /* VSOCK_SHUT_* the guest sent */
	/* guest -> host: our side of the credit */
	uint32_t rx_cnt;                   /* payload bytes taken from the guest */
	uint32_t fwd_cnt;                  /* of those, bytes the host socket took */
	uint32_t fwd_cnt_sent;             /* fwd_cnt as the guest last heard it */
	struct con_ring out;               /* taken, not yet written (allocated when first needed) */
	/* host -> guest: the guest's side */
	uint32_t peer_buf_alloc, peer_fwd_cnt;
	uint32_t tx_cnt;                   /* payload bytes sent to the guest */
	ev_tstamp deadline;                /* CS_HOST_LINE, CS_CONNECTING: given up then (0: none) */
};

struct vs_bucket {
	struct vs_conn *first;
};

struct vs_rst {
	uint32_t guest_port, host_port;
};

struct vsock {
	struct vdev vdev;
	struct config_vsock cfg;
	uint64_t guest_cid;
	uint32_t buf_alloc;
	int listen_fd;
	ev_io accept_w;
	ev_idle more;                      /* a queue had more than VQ_BUDGET chains */
	ev_timer tick;                     /* runs while a connection has a deadline */
	struct vs_bucket *hash;            /* connections by (guest port, host port) */
	uint32_t hash_mask;
	struct vs_conn *all;
	struct vs_conn *shead, *stail;     /* connections with something to send, in turn */
	struct vs_rst *rst;                /* RSTs owed, a ring of rst_cap */
	unsigned rst_cap, rst_head, rst_len;
	struct vq_elem *rx_elem;           /* a receive buffer popped and not used yet */
	bool rx_paused;                    /* no receive buffer: waiting for a kick */
	bool event_pending;                /* TRANSPORT_RESET owed */
	bool restarted;                    /* created over a previous instance: event at activation */
	uint32_t next_port;
	struct vsock_stats st;
	struct iovec iov[VQ_MAX_SIZE];     /* work area: slices of a chain */
};

static struct vsock *vs_of(struct vdev *d)
{
	return container_of(d, struct vsock, vdev);
}

static struct ev_loop *vs_loop(const struct vsock *vs)
{
	return vs->vdev.host->loop;
}

/* ---- the wire ---------------------------------------------------------------------------- */

void vsock_hdr_get(struct vsock_hdr *h, const uint8_t w[VSOCK_HDR_LEN])
{
	uint64_t q[2];
	uint32_t l[3], t[3];
	uint16_t s[2];

	memcpy(q, w, 16);
	memcpy(l, w + 16, 12);
	memcpy(s, w + 28, 4);
	memcpy(t, w + 32, 12);
	*h = (struct vsock_hdr){
		.src_cid = le64toh(q[0]), .dst_cid = le64toh(q[1]),
		.src_port = le32toh(l[0]), .dst_port = le32toh(l[1]), .len = le32toh(l[2]),
		.type = le16toh(s[0]), .op = le16toh(s[1]),
		.flags = le32toh(t[0]), .buf_alloc = le32toh(t[1]), .fwd_cnt = le32toh(t[2]),
	};
}

void vsock_hdr_put(uint8_t w[VSOCK_HDR_LEN], const struct vsock_hdr *h)
{
	uint64_t q[2] = { htole64(h->src_cid), htole64(h->dst_cid) };
	uint32_t l[3] = { htole32(h->src_port), htole32(h->dst_port), htole32(h->len) };
	uint16_t s[2] = { htole16(h->type), htole16(h->op) };
	uint32_t t[3] = { htole32(h->flags), htole32(h->buf_alloc), htole32(h->fwd_cnt) };

	memcpy(w, q, 16);
	memcpy(w + 16, l, 12);
	memcpy(w + 28, s, 4);
	memcpy(w + 32, t, 12);
}

/* ---- connections: lookup and life ----------------------------------------------------------- */

static uint32_t vs_hash(const struct vsock *vs, uint32_t guest_port, uint32_t host_port)
{
	uint64_t k = ((uint64_t)guest_port << 32 | host_port) * UINT64_C(0x9e3779b97f4a7c15);

	return (uint32_t)(k >> 32) & vs->hash_mask;
}

static struct vs_conn *vs_find(const struct vsock *vs, uint32_t guest_port, uint32_t host_port)
{
	struct vs_conn *c = vs->hash[vs_hash(vs, guest_port, host_port)].first;

	while (c && !(c->guest_port == guest_port && c->host_port == host_port))
		c = c->hnext;
	return c;
}

static void vs_hash_add(struct vs_conn *c)
{
	struct vsock *vs = c->vs;
	uint32_t h = vs_hash(vs, c->guest_port, c->host_port);

	c->hnext = vs->hash[h].first;
	vs->hash[h].first = c;
}

static void vs_hash_del(struct vs_conn *c)
{
	struct vsock *vs = c->vs;
	struct vs_conn **pp = &vs->hash[vs_hash(vs, c->guest_port, c->host_port)].first;

	while (*pp && *pp != c)
		pp = &(*pp)->hnext;
	if (*pp)
		*pp = c->hnext;
}

static void vs_send_list_del(struct vs_conn *c)
{
	struct vsock *vs = c->vs;
	struct vs_conn **pp = &vs->shead, *prev = NULL;

	if (!c->queued)
		return;
	while (*pp && *pp != c) {
		prev = *pp;
		pp = &(*pp)->snext;
	}
	if (*pp)
		*pp = c->snext;
	if (vs->stail == c)
		vs->stail = prev;
	c->queued = false;
	c->snext = NULL;
}

/* c has a packet for the guest: it takes its turn behind the others. */
static void vs_send_list_add(struct vs_conn *c)
{
	struct vsock *vs = c->vs;

	if (c->queued)
		return;
	c->queued = true;
	c->snext = NULL;
	if (vs->stail)
		vs->stail->snext = c;
	else
		vs->shead = c;
	vs->stail = c;
}

static uint32_t vs_peer_free(const struct vs_conn *c)
{
	uint32_t used = c->tx_cnt - c->peer_fwd_cnt;

	return used > c->peer_buf_alloc ? 0 : c->peer_buf_alloc - used;
}

static bool vs_listener_wanted(const struct vsock *vs)
{
	return vs->listen_fd >= 0 && vdev_active(&vs->vdev) && vs->st.conns < vs->cfg.max_conns;
}

static void vs_update_accept(struct vsock *vs)
{
	if (vs_listener_wanted(vs))
		ev_io_start(vs_loop(vs), &vs->accept_w);
	else
		ev_io_stop(vs_loop(vs), &vs->accept_w);
}

/* Read the host socket exactly when what it says can go somewhere. */
static void vs_update_rd(struct vs_conn *c)
{
	struct ev_loop *loop = vs_loop(c->vs);
	bool on = vdev_active(&c->vs->vdev) && c->fd >= 0;

	if (c->state == CS_OPEN)
		on = on && !c->rx_want && !c->host_eof && !(c->guest_shut & VSOCK_SHUT_RCV) &&
		     vs_peer_free(c) > 0;
	else
		on = on && c->state == CS_HOST_LINE;
	if (on)
		ev_io_start(loop, &c->rd);
	else
		ev_io_stop(loop, &c->rd);
}

static void vs_update_wr(struct vs_conn *c)
{
	if (vdev_active(&c->vs->vdev) && c->fd >= 0 && c->out.len)
		ev_io_start(vs_loop(c->vs), &c->wr);
	else
		ev_io_stop(vs_loop(c->vs), &c->wr);
}

/* Deadlines are looked at while the device serves and some connection has one. */
static void vs_update_tick(struct vsock *vs)
{
	bool any = false;

	for (const struct vs_conn *c = vs->all; c && !any; c = c->next)
		any = c->deadline != 0;
	if (any && vdev_active(&vs->vdev))
		ev_timer_start(vs_loop(vs), &vs->tick);
	else
		ev_timer_stop(vs_loop(vs), &vs->tick);
}

static void vs_set_deadline(struct vs_conn *c, ev_tstamp in)
{
	c->deadline = ev_now(vs_loop(c->vs)) + in;
	if (vdev_active(&c->vs->vdev))
		ev_timer_start(vs_loop(c->vs), &c->vs->tick);
}

/* Forget c; its host socket is closed (the program sees end of file). No packet is sent. */
static void vs_conn_free(struct vs_conn *c)
{
	struct vsock *vs = c->vs;

	ev_io_stop(vs_loop(vs), &c->rd);
	ev_io_stop(vs_loop(vs), &c->wr);
	if (c->fd >= 0)
		close(c->fd);
	if (c->state != CS_HOST_LINE)
		vs_hash_del(c);
	vs_send_list_del(c);
	if (c->prev)
		c->prev->next = c->next;
	else
		vs->all = c->next;
	if (c->next)
		c->next->prev = c->prev;
	con_ring_fini(&c->out);
	free(c);
	vs->st.conns--;
	vs_update_accept(vs);
}

static void vs_rx_process(struct vsock *vs);

/* An RST for the guest's (guest_port, host_port); stray: caused by a packet of no connection. */
static void vs_queue_rst(struct vsock *vs, uint32_t guest_port, uint32_t host_port, bool stray)
{
	if (vs->rst_len == vs->rst_cap || (stray && vs->rst_len >= VS_RST_STRAY)) {
		vs->st.rst_dropped++;
		vdev_log(&vs->vdev, VDEV_LOG_REQUEST, LOG_WARNING,
			 "%s: no receive buffers for long: an RST to the guest was dropped",
			 vs->vdev.name);
		return;
	}
	vs->rst[(vs->rst_head + vs->rst_len) % vs->rst_cap] =
		(struct vs_rst){ .guest_port = guest_port, .host_port = host_port };
	vs->rst_len++;
}

/* End c with an RST to the guest (protocol error, host socket failure, refused connect). */
static void vs_conn_reset(struct vs_conn *c)
{
	if (c->state != CS_HOST_LINE)
		vs_queue_rst(c->vs, c->guest_port, c->host_port, false);
	vs_conn_free(c);
}

static void vs_conn_rd_cb(struct ev_loop *loop, ev_io *w, int revents);
static void vs_conn_wr_cb(struct ev_loop *loop, ev_io *w, int revents);

static struct vs_conn *vs_conn_new(struct vsock *vs, int fd, enum vs_state state)
{
	struct vs_conn *c = calloc(1, sizeof(*c));

	if (!c)
		return NULL;
	c->vs = vs;
	c->fd = fd;
	c->state = state;
	ev_io_init(&c->rd, vs_conn_rd_cb, fd, EV_READ);
	ev_io_init(&c->wr, vs_conn_wr_cb, fd, EV_WRITE);
	c->next = vs->all;
	if (vs->all)
		vs->all->prev = c;
	vs->all = c;
	vs->st.conns++;
	vs_update_accept(vs);
	return c;
}

static void vs_conn_open(struct vs_conn *c)
{
	c->state = CS_OPEN;
	c->deadline = 0;
	c->vs->st.opened++;
	vdev_log(&c->vs->vdev, VDEV_LOG_INFO, LOG_DEBUG, "%s: guest port %" PRIu32
		 " <-> host port %" PRIu32 " connected", c->vs->vdev.name, c->guest_port,
		 c->host_port);
	vs_update_rd(c);
}

/* ---- guest -> host: payload into the host socket --------------------------------------------- */

/* The guest's idea of our free space is down to half: tell it what the host has taken. */
static void vs_credit_check(struct vs_conn *c)
{
	uint32_t seen_used = c->rx_cnt - c->fwd_cnt_sent;

	if (c->fwd_cnt != c->fwd_cnt_sent && seen_used >= c->vs->buf_alloc / 2) {
		c->pending |= P_CREDIT;
		vs_send_list_add(c);
	}
}

static ssize_t vs_sendv(int fd, const struct iovec *iov, unsigned n)
{
	struct msghdr mh = { .msg_iov = (struct iovec *)iov, .msg_iovlen = n };

	return sendmsg(fd, &mh, MSG_NOSIGNAL | MSG_DONTWAIT);
}

/* The guest shut both ways and everything it sent is out: RST (its close completes), gone. */
static bool vs_conn_finish(struct vs_conn *c)
{
	if (c->state != CS_CLOSING || c->out.len)
		return false;
	vs_conn_reset(c);
	return true;
}

/* Everything buffered went out: pass on the guest's SEND shutdown, finish a close. */
static bool vs_conn_drained(struct vs_conn *c)
{
	if (c->out.len)
		return false;
	if ((c->guest_shut & VSOCK_SHUT_SEND) && !c->wr_shut && c->fd >= 0) {
		shutdown(c->fd, SHUT_WR);
		c->wr_shut = true;
	}
	return vs_conn_finish(c);
}

static void vs_host_failed(struct vs_conn *c, int err)
{
	vdev_log(&c->vs->vdev, VDEV_LOG_BACKEND, LOG_INFO, "%s: host port %" PRIu32 ": %s: "
		 "connection reset", c->vs->vdev.name, c->host_port, strerror(err));
	vs_conn_reset(c);
}

/* Write what the connection holds; false when c is gone. */
static bool vs_conn_flush(struct vs_conn *c)
{
	while (c->out.len) {
		struct iovec iov[2];
		unsigned n = con_ring_peek(&c->out, iov);
		ssize_t w = vs_sendv(c->fd, iov, n);

		if (w < 0 && (errno == EAGAIN || errno == EINTR))
			break;
		if (w <= 0) {
			vs_host_failed(c, w < 0 ? errno : EPIPE);
			return false;
		}
		con_ring_consume(&c->out, (size_t)w);
		c->fwd_cnt += (uint32_t)w;
	}
	vs_update_wr(c);
	vs_credit_check(c);
	return !vs_conn_drained(c);
}

static void vs_conn_wr_cb(struct ev_loop *loop, ev_io *w, int revents)
{
	struct vs_conn *c = container_of(w, struct vs_conn, wr);
	struct vsock *vs = c->vs;

	(void)loop;
	(void)revents;
	vs_conn_flush(c);
	vs_rx_process(vs);
}

/* OP_RW: len payload bytes at offset VSOCK_HDR_LEN of e's readable part. */
static void vs_guest_data(struct vs_conn *c, const struct vq_elem *e, uint32_t len)
{
	struct vsock *vs = c->vs;
	/*
	 * The credit the guest was given: what the packets it has been handed say. What the
	 * host took since is not the guest's to use yet; and so what waits in c->out never
	 * exceeds buf_alloc.
	 */
	uint32_t granted = vs->buf_alloc - (c->rx_cnt - c->fwd_cnt_sent);
	int n;

	if (len > granted) {
		vs->st.credit_violations++;
		vdev_log(&vs->vdev, VDEV_LOG_REQUEST, LOG_WARNING, "%s: guest port %" PRIu32
			 " sent %" PRIu32 " bytes with %" PRIu32 " of credit: connection reset",
			 vs->vdev.name, c->guest_port, len, granted);
		vs_conn_reset(c);
		return;
	}
	if (len == 0)
		return;
	n = iov_slice(e->iov, e->n_out, VSOCK_HDR_LEN, len, vs->iov, VQ_MAX_SIZE);
	if (n < 0) {     /* cannot happen: len was checked against out_len */
		vs_conn_reset(c);
		return;
	}
	c->rx_cnt += len;
	vs->st.from_guest += len;
	if (c->out.len == 0) {
		ssize_t w = vs_sendv(c->fd, vs->iov, (unsigned)n);

		if (w < 0 && errno != EAGAIN && errno != EINTR) {
			vs_host_failed(c, errno);
			return;
		}
		if (w > 0) {
			c->fwd_cnt += (uint32_t)w;
			len -= (uint32_t)w;
		}
		if (w > 0 && len)
			n = iov_slice(e->iov, e->n_out, VSOCK_HDR_LEN + (size_t)w, len, vs->iov,
				      VQ_MAX_SIZE);
	}
	if (len) {
		if (!c->out.buf && con_ring_init(&c->out, vs->buf_alloc) < 0) {
			vs_host_failed(c, ENOMEM);
			return;
		}
		for (int i = 0; i < n; i++)
			con_ring_put(&c->out, vs->iov[i].iov_base, vs->iov[i].iov_len);
	}
	vs_update_wr(c);
	vs_credit_check(c);
}

/* ---- guest -> host: connections -------------------------------------------------------------- */

/* The guest connects to host port P: the unix socket PATH_P, or RST. */
static void vs_guest_connect(struct vsock *vs, const struct vsock_hdr *h)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	struct vs_conn *c;
	int fd;

	if (vs->st.conns >= vs->cfg.max_conns) {
		vs->st.refused++;
		vdev_log(&vs->vdev, VDEV_LOG_REQUEST, LOG_WARNING, "%s: %" PRIu32 " connections "
			 "open (max_connections): guest port %" PRIu32 " refused", vs->vdev.name,
			 vs->cfg.max_conns, h->src_port);
		vs_queue_rst(vs, h->src_port, h->dst_port, true);
		return;
	}
	/* The loader keeps socket short enough for any port; checked again all the same. */
	if (snprintf(sa.sun_path, sizeof(sa.sun_path), "%s_%" PRIu32, vs->cfg.socket,
		     h->dst_port) >= (int)sizeof(sa.sun_path)) {
		errno = ENAMETOOLONG;
		fd = -1;
	} else {
		fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	}
	if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		/* EAGAIN: the listener's backlog is full, and a unix connect does not wait. */
		vs->st.refused++;
		vdev_log(&vs->vdev, VDEV_LOG_BACKEND, LOG_INFO, "%s: guest port %" PRIu32 " to "
			 "host port %" PRIu32 ": %s: %s", vs->vdev.name, h->src_port, h->dst_port,
			 sa.sun_path, strerror(errno));
		if (fd >= 0)
			close(fd);
		vs_queue_rst(vs, h->src_port, h->dst_port, true);
		return;
	}
	c = vs_conn_new(vs, fd, CS_OPEN);
	if (!c) {
		close(fd);
		vs_queue_rst(vs, h->src_port, h->dst_port, true);
		return;
	}
	c->guest_port = h->src_port;
	c->host_port = h->dst_port;
	c->peer_buf_alloc = h->buf_alloc;
	c->peer_fwd_cnt = h->fwd_cnt;
	vs_hash_add(c);
	c->pending |= P_RESPONSE;
	vs_send_list_add(c);
	vs_conn_open(c);
}

static void vs_guest_shutdown(struct vs_conn *c, uint32_t flags)
{
	c->guest_shut |= flags & (VSOCK_SHUT_RCV | VSOCK_SHUT_SEND);
	if (c->guest_shut == (VSOCK_SHUT_RCV | VSOCK_SHUT_SEND))
		c->state = CS_CLOSING;
	vs_update_rd(c);
	vs_conn_drained(c);
}

/* A host program's connection was accepted by the guest: tell the program, then stream. */
static void vs_guest_accepted(struct vs_conn *c)
{
	char ok[24];
	int n = snprintf(ok, sizeof(ok), "OK %" PRIu32 "\n", c->host_port);
	/* The socket's buffer is empty: a short line always fits. */
	ssize_t w = send(c->fd, ok, (size_t)n, MSG_NOSIGNAL | MSG_DONTWAIT);

	if (w != n) {
		vs_host_failed(c, w < 0 ? errno : EPIPE);
		return;
	}
	vs_conn_open(c);
}

static void vs_bad_packet(struct vsock *vs, const struct vsock_hdr *h, const char *why)
{
	vs->st.bad_packets++;
	vdev_log(&vs->vdev, VDEV_LOG_REQUEST, LOG_WARNING, "%s: guest packet op %u type %u "
		 "%" PRIu32 "->%" PRIu32 ": %s", vs->vdev.name, h->op, h->type, h->src_port,
		 h->dst_port, why);
}

/* A packet for the established (or connecting) connection c. */
static void vs_conn_packet(struct vs_conn *c, const struct vsock_hdr *h, const struct vq_elem *e)
{
	/* Every packet carries the guest's credit: more room may let the host be read again. */
	c->peer_buf_alloc = h->buf_alloc;
	c->peer_fwd_cnt = h->fwd_cnt;
	if (c->state == CS_OPEN)
		vs_update_rd(c);
	switch (h->op) {
	case VSOCK_OP_RESPONSE:
		if (c->state != CS_CONNECTING || (c->pending & P_REQUEST))
			break;
		vs_guest_accepted(c);
		return;
	case VSOCK_OP_RST:
		vs_conn_free(c);
		return;
	case VSOCK_OP_SHUTDOWN:
		if (c->state == CS_CONNECTING)
			break;
		vs_guest_shutdown(c, h->flags);
		return;
	case VSOCK_OP_RW:
		if (c->state != CS_OPEN || (c->guest_shut & VSOCK_SHUT_SEND))
			break;
		vs_guest_data(c, e, h->len);
		return;
	case VSOCK_OP_CREDIT_UPDATE:
		return;
	case VSOCK_OP_CREDIT_REQUEST:
		c->pending |= P_CREDIT;
		vs_send_list_add(c);
		return;
	default:
		break;
	}
	vs_bad_packet(c->vs, h, h->op <= VSOCK_OP_CREDIT_REQUEST && h->op != VSOCK_OP_INVALID ?
		      "not valid in this connection's state" : "unknown op");
	vs_conn_reset(c);
}

/* One transmit chain: a header and its payload, all in the readable part. */
static void vs_tx_one(struct vsock *vs, const struct vq_elem *e)
{
	uint8_t wire[VSOCK_HDR_LEN];
	struct vsock_hdr h;
	struct vs_conn *c;

	if (e->out_len < VSOCK_HDR_LEN) {
		vs->st.bad_packets++;
		vdev_log(&vs->vdev, VDEV_LOG_REQUEST, LOG_WARNING, "%s: transmit chain of %" PRIu32
			 " bytes, shorter than a header: dropped", vs->vdev.name, e->out_len);
		return;
	}
	iov_to_buf(e->iov, e->n_out, 0, wire, sizeof(wire));   /* copied once, then checked */
	vsock_hdr_get(&h, wire);
	if (h.src_cid != vs->guest_cid || h.dst_cid != VSOCK_CID_HOST) {
		vs_bad_packet(vs, &h, "wrong source or destination CID: dropped");
		return;
	}
	c = vs_find(vs, h.src_port, h.dst_port);
	if (h.op == VSOCK_OP_RW ? h.len > e->out_len - VSOCK_HDR_LEN : h.len != 0) {
		vs_bad_packet(vs, &h, "len does not match the chain");
	} else if (h.type != VSOCK_TYPE_STREAM) {
		vs_bad_packet(vs, &h, "not a stream socket");
	} else if (h.op == VSOCK_OP_REQUEST) {
		if (!c) {
			vs_guest_connect(vs, &h);
			return;
		}
		vs_bad_packet(vs, &h, "the connection exists");
	} else if (c) {
		vs_conn_packet(c, &h, e);
		return;
	} else {
		/* No such connection: RST, unless the packet is one. */
		if (h.op != VSOCK_OP_RST)
			vs_queue_rst(vs, h.src_port, h.dst_port, true);
		return;
	}
	/* Refused for its contents: the connection it names (if any) is reset. */
	if (c)
		vs_conn_reset(c);
	else if (h.op != VSOCK_OP_RST)
		vs_queue_rst(vs, h.src_port, h.dst_port, true);
}

static void vs_defer(struct vsock *vs)
{
	ev_idle_start(vs_loop(vs), &vs->more);
}

static void vs_tx_process(struct vsock *vs)
{
	struct virtqueue *vq = &vs->vdev.vqs[VSOCK_Q_TX];
	bool pushed = false;
	unsigned n;

	if (!vdev_active(&vs->vdev))
		return;
	for (n = 0; n < VQ_BUDGET; n++) {
		int err;
		struct vq_elem *e = vq_pop(vq, &err);

		if (!e) {
			if (err)
				vdev_vq_error(&vs->vdev, vq);
			break;
		}
		vs_tx_one(vs, e);
		vq_push(e, 0);
		pushed = true;
	}
	if (pushed)
		vdev_used(&vs->vdev, vq);
	if (n == VQ_BUDGET && vq_more(vq))
		vs_defer(vs);
	vs_rx_process(vs);
}

/* ---- device -> guest -------------------------------------------------------------------------- */

/* A receive buffer: the held one or the next from the ring; NULL pauses sending. */
static struct vq_elem *vs_rx_buffer(struct vsock *vs)
{
	struct virtqueue *vq = &vs->vdev.vqs[VSOCK_Q_RX];
	int err;

	for (int tries = 0; !vs->rx_elem && tries < 2; tries++) {
		vs->rx_elem = vq_pop(vq, &err);
		if (err) {
			vdev_vq_error(&vs->vdev, vq);
			return NULL;
		}
		if (!vs->rx_elem && !vq_enable_notify(vq))
			break;
	}
	if (!vs->rx_elem)
		vs->rx_paused = true;
	return vs->rx_elem;
}

static void vs_hdr_for(const struct vs_conn *c, struct vsock_hdr *h, uint16_t op)
{
	*h = (struct vsock_hdr){
		.src_cid = VSOCK_CID_HOST, .dst_cid = c->vs->guest_cid,
		.src_port = c->host_port, .dst_port = c->guest_port,
		.type = VSOCK_TYPE_STREAM, .op = op,
		.buf_alloc = c->vs->buf_alloc, .fwd_cnt = c->fwd_cnt,
	};
}

/* Read the host socket into e after the header; the payload length, 0 when nothing came. */
static uint32_t vs_read_host(struct vs_conn *c, struct vq_elem *e, struct vsock_hdr *h, bool *gone)
{
	struct vsock *vs = c->vs;
	uint32_t room = e->in_len - VSOCK_HDR_LEN, credit = vs_peer_free(c);
	ssize_t r;
	int n;

	room = room < VS_PKT_MAX ? room : VS_PKT_MAX;
	room = room < credit ? room : credit;
	c->rx_want = false;
	if (room == 0)
		return 0;     /* no credit: the guest's next update starts reading again */
	n = iov_slice(e->iov + e->n_out, e->n_in, VSOCK_HDR_LEN, room, vs->iov, VQ_MAX_SIZE);
	r = n < 0 ? -1 : readv(c->fd, vs->iov, n);
	if (r > 0) {
		vs_hdr_for(c, h, VSOCK_OP_RW);
		h->len = (uint32_t)r;
		c->tx_cnt += (uint32_t)r;
		vs->st.to_guest += (uint64_t)r;
		c->rx_want = true;    /* maybe more: read again on its next turn */
		return (uint32_t)r;
	}
	if (r < 0 && (errno == EAGAIN || errno == EINTR)) {
		vs_update_rd(c);
		return 0;
	}
	if (r < 0) {
		vdev_log(&vs->vdev, VDEV_LOG_BACKEND, LOG_INFO, "%s: host port %" PRIu32 ": %s: "
			 "connection reset", vs->vdev.name, c->host_port, strerror(errno));
		vs_conn_reset(c);
		*gone = true;
		return 0;
	}
	/* End of file: the host sends no more. */
	c->host_eof = true;
	c->pending |= P_SHUTDOWN;
	return 0;
}

/*
 * The next packet c has for the guest into e: control packets first, then data. Returns the
 * bytes written into e (0: nothing after all); *gone when c was freed.
 */
static uint32_t vs_conn_fill(struct vs_conn *c, struct vq_elem *e, bool *gone)
{
	uint8_t wire[VSOCK_HDR_LEN];
	struct vsock_hdr h;
	uint32_t len = 0;

	/* Data only while open and the guest still receives. */
	if (c->state != CS_OPEN || (c->guest_shut & VSOCK_SHUT_RCV))
		c->rx_want = false;
	if (c->pending & P_REQUEST) {
		c->pending &= ~P_REQUEST;
		vs_hdr_for(c, &h, VSOCK_OP_REQUEST);
	} else if (c->pending & P_RESPONSE) {
		c->pending &= ~P_RESPONSE;
		vs_hdr_for(c, &h, VSOCK_OP_RESPONSE);
	} else {
		if (c->rx_want)
			len = vs_read_host(c, e, &h, gone);   /* data: h is filled */
		if (*gone)
			return 0;
		if (len == 0 && (c->pending & P_SHUTDOWN)) {
			c->pending &= ~P_SHUTDOWN;
			vs_hdr_for(c, &h, VSOCK_OP_SHUTDOWN);
			h.flags = VSOCK_SHUT_SEND;
		} else if (len == 0 && (c->pending & P_CREDIT)) {
			vs_hdr_for(c, &h, VSOCK_OP_CREDIT_UPDATE);
		} else if (len == 0) {
			return 0;
		}
	}
	/* Every packet tells the guest our credit. */
	c->pending &= ~P_CREDIT;
	c->fwd_cnt_sent = c->fwd_cnt;
	vsock_hdr_put(wire, &h);
	iov_from_buf(e->iov + e->n_out, e->n_in, 0, wire, sizeof(wire));
	return VSOCK_HDR_LEN + len;
}

static uint32_t vs_fill_rst(struct vsock *vs, struct vq_elem *e)
{
	const struct vs_rst *r = &vs->rst[vs->rst_head];
	struct vsock_hdr h = {
		.src_cid = VSOCK_CID_HOST, .dst_cid = vs->guest_cid,
		.src_port = r->host_port, .dst_port = r->guest_port,
		.type = VSOCK_TYPE_STREAM, .op = VSOCK_OP_RST,
	};
	uint8_t wire[VSOCK_HDR_LEN];

	vs->rst_head = (vs->rst_head + 1) % vs->rst_cap;
	vs->rst_len--;
	vs->st.rst_sent++;
	vsock_hdr_put(wire, &h);
	iov_from_buf(e->iov + e->n_out, e->n_in, 0, wire, sizeof(wire));
	return VSOCK_HDR_LEN;
}

/* One packet into e: an RST owed, else the next connection's turn. 0: nothing to send. */
static uint32_t vs_fill_one(struct vsock *vs, struct vq_elem *e)
{
	while (vs->rst_len || vs->shead) {
		struct vs_conn *c;
		bool gone = false;
		uint32_t n;

		if (vs->rst_len)
			return vs_fill_rst(vs, e);
		c = vs->shead;
		vs_send_list_del(c);
		n = vs_conn_fill(c, e, &gone);
		if (!gone && (c->pending || c->rx_want))
			vs_send_list_add(c);   /* more to say: after the others */
		if (n)
			return n;
	}
	return 0;
}

static bool vs_has_output(const struct vsock *vs)
{
	return vs->rst_len || vs->shead;
}

static void vs_rx_process(struct vsock *vs)
{
	struct virtqueue *vq = &vs->vdev.vqs[VSOCK_Q_RX];
	bool pushed = false;
	unsigned n;

	if (!vdev_active(&vs->vdev) || vs->rx_paused)
		return;
	for (n = 0; n < VQ_BUDGET && vs_has_output(vs); n++) {
		struct vq_elem *e = vs_rx_buffer(vs);
		uint32_t len;

		if (!e)
			break;
		if (e->in_len <= VSOCK_HDR_LEN) {
			vdev_log(&vs->vdev, VDEV_LOG_REQUEST, LOG_WARNING, "%s: receive buffer of "
				 "%" PRIu32 " bytes is too small: returned unused", vs->vdev.name,
				 e->in_len);
			vs->rx_elem = NULL;
			vq_push(e, 0);
			pushed = true;
			continue;
		}
		len = vs_fill_one(vs, e);
		if (!len)
			break;       /* e stays held for the next packet */
		vs->rx_elem = NULL;
		vq_push(e, len);
		pushed = true;
	}
	if (pushed)
		vdev_used(&vs->vdev, vq);
	if (n == VQ_BUDGET && vs_has_output(vs))
		vs_defer(vs);
}

static void vs_evt_flush(struct vsock *vs)
{
	struct virtqueue *vq = &vs->vdev.vqs[VSOCK_Q_EVENT];
	uint32_t id = htole32(VSOCK_EVENT_TRANSPORT_RESET);
	struct vq_elem *e;
	int err;

	if (!vs->event_pending || !vdev_active(&vs->vdev))
		return;
	e = vq_pop(vq, &err);
	if (!e) {
		if (err)
			vdev_vq_error(&vs->vdev, vq);
		return;
	}
	vs->event_pending = false;
	vq_push(e, (uint32_t)iov_from_buf(e->iov + e->n_out, e->n_in, 0, &id, sizeof(id)));
	vdev_used(&vs->vdev, vq);
}

/* ---- host side: sockets ---------------------------------------------------------------------- */

/* "CONNECT <port>\n" from a host program: ask the guest. */
static void vs_host_request(struct vs_conn *c, uint32_t port)
{
	struct vsock *vs = c->vs;
	uint32_t span = UINT32_MAX - VSOCK_LOCAL_PORT_BASE + 1;

	for (uint32_t tries = 0; tries <= vs->cfg.max_conns; tries++) {
		uint32_t local = VSOCK_LOCAL_PORT_BASE + (vs->next_port++ % span);

		if (vs_find(vs, port, local))
			continue;
		c->guest_port = port;
		c->host_port = local;
		c->state = CS_CONNECTING;
		vs_set_deadline(c, VS_CONNECT_S);
		vs_hash_add(c);
		c->pending |= P_REQUEST;
		vs_update_rd(c);
		vs_send_list_add(c);
		vs_rx_process(vs);
		return;
	}
	vs_conn_free(c);    /* cannot happen: fewer connections than tries */
}

static bool vs_parse_connect(const char *line, uint32_t *port)
{
	static const char verb[] = "CONNECT ";
	uint64_t v = 0;
	const char *s = line + sizeof(verb) - 1;

	if (strncmp(line, verb, sizeof(verb) - 1) != 0 || *s < '0' || *s > '9')
		return false;
	for (; *s >= '0' && *s <= '9'; s++) {
		v = v * 10 + (uint64_t)(*s - '0');
		if (v > UINT32_MAX)
			return false;
	}
	if (*s == '\r')
		s++;
	if (*s != '\0')
		return false;
	*port = (uint32_t)v;
	return true;
}

/*
 * The CONNECT line, read a byte at a time so that nothing after it is taken off the socket
 * (what follows the line is the stream's); at most VS_LINE_MAX reads per connection.
 */
static void vs_host_line(struct vs_conn *c)
{
	uint32_t port;

	for (;;) {
		char ch;
		ssize_t n = recv(c->fd, &ch, 1, MSG_DONTWAIT);

		if (n < 0 && (errno == EAGAIN || errno == EINTR))
			return;     /* the rest of the line is still coming */
		if (n <= 0) {
			vs_conn_free(c);
			return;
		}
		if (ch == '\n')
			break;
		if (c->line_len == VS_LINE_MAX - 1 || ch == '\0')
			goto bad;
		c->line[c->line_len++] = ch;
	}
	c->line[c->line_len] = '\0';
	if (!vs_parse_connect(c->line, &port))
		goto bad;
	vs_host_request(c, port);
	return;
bad:
	vdev_log(&c->vs->vdev, VDEV_LOG_BACKEND, LOG_NOTICE, "%s: a host program did not send "
		 "\"CONNECT <port>\\n\": closed", c->vs->vdev.name);
	vs_conn_free(c);
}

static void vs_conn_rd_cb(struct ev_loop *loop, ev_io *w, int revents)
{
	struct vs_conn *c = container_of(w, struct vs_conn, rd);
	struct vsock *vs = c->vs;

	(void)revents;
	if (c->state == CS_HOST_LINE) {
		vs_host_line(c);
		return;
	}
	/* Data (or end of file) for the guest: it goes when a receive buffer is there. */
	ev_io_stop(loop, w);
	c->rx_want = true;
	vs_send_list_add(c);
	vs_rx_process(vs);
}

/*
 * A host program that never finishes its CONNECT line, or a guest that never answers a
 * REQUEST, would hold a connection (and the program) for ever: both are given up.
 */
static void vs_tick_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct vsock *vs = container_of(w, struct vsock, tick);
	struct vs_conn *c = vs->all, *next;
	ev_tstamp now = ev_now(loop);

	(void)revents;
	for (; c; c = next) {
		next = c->next;
		if (!c->deadline || now < c->deadline)
			continue;
		vdev_log(&vs->vdev, VDEV_LOG_BACKEND, LOG_NOTICE, "%s: %s: closed", vs->vdev.name,
			 c->state == CS_HOST_LINE ? "a host program sent no CONNECT line in time" :
			 "the guest did not answer a host program's connect in time");
		vs_conn_reset(c);    /* an RST tells the guest to forget a REQUEST it holds */
	}
	vs_update_tick(vs);
	vs_rx_process(vs);
}

static void vs_accept_cb(struct ev_loop *loop, ev_io *w, int revents)
{
	struct vsock *vs = container_of(w, struct vsock, accept_w);
	int fd = accept4(vs->listen_fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
	struct vs_conn *c;

	(void)loop;
	(void)revents;
	if (fd < 0) {
		if (errno != EAGAIN && errno != EINTR && errno != ECONNABORTED)
			vdev_log(&vs->vdev, VDEV_LOG_BACKEND, LOG_WARNING, "%s: accept: %s",
				 vs->vdev.name, strerror(errno));
		return;
	}
	c = vs_conn_new(vs, fd, CS_HOST_LINE);
	if (!c) {
		close(fd);
		return;
	}
	vs_set_deadline(c, VS_LINE_S);
	vs_update_rd(c);
}

static void vs_store_name(const struct vsock *vs, char *buf, size_t len)
{
	snprintf(buf, len, "%s/listen", vs->vdev.name);
}

/* After a restart with systemd's fd store: the previous instance's listener, if it is PATH's. */
static int vs_take_listener(struct vsock *vs)
{
	char name[sizeof(vs->vdev.name) + 16];
	struct sockaddr_un sa;
	socklen_t len = sizeof(sa);
	int fd, on = 0;
	socklen_t ol = sizeof(on);

	if (!vs->vdev.adopted)
		return -1;
	vs_store_name(vs, name, sizeof(name));
	fd = fdstore_take(vs->vdev.host->store, name);
	if (fd < 0)
		return -1;
	memset(&sa, 0, sizeof(sa));
	if (getsockname(fd, (struct sockaddr *)&sa, &len) < 0 || sa.sun_family != AF_UNIX ||
	    getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &on, &ol) < 0 || !on ||
	    strncmp(sa.sun_path, vs->cfg.socket, sizeof(sa.sun_path)) != 0) {
		close(fd);
		return -1;
	}
	fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
	return fd;
}

static int vs_listen(struct vsock *vs)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	char name[sizeof(vs->vdev.name) + 16];
	struct stat st;
	int fd = vs_take_listener(vs);

	if (fd < 0) {
		if (strlen(vs->cfg.socket) >= sizeof(sa.sun_path))
			return -ENAMETOOLONG;
		memcpy(sa.sun_path, vs->cfg.socket, strlen(vs->cfg.socket) + 1);
		/* A stale socket of an earlier run would make bind fail; anything else is not ours. */
		if (lstat(vs->cfg.socket, &st) == 0 && S_ISSOCK(st.st_mode))
			unlink(vs->cfg.socket);
		fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
		if (fd < 0)
			return -errno;
		if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 ||
		    listen(fd, VS_BACKLOG) < 0) {
			int rc = -errno;

			close(fd);
			return rc;
		}
	}
	vs->listen_fd = fd;
	ev_io_init(&vs->accept_w, vs_accept_cb, fd, EV_READ);
	vs_store_name(vs, name, sizeof(name));
	fdstore_keep(vs->vdev.host->store, name, fd);
	return 0;
}

/* ---- device hooks ---------------------------------------------------------------------------- */

static void vs_config_read(struct vdev *d, uint32_t off, void *buf, uint32_t len)
{
	uint64_t cid = htole64(vs_of(d)->guest_cid);

	memcpy(buf, (const uint8_t *)&cid + off, len);   /* off + len <= 8: the transport checked */
}

static void vs_config_write(struct vdev *d, uint32_t off, const void *buf, uint32_t len)
{
	(void)buf;
	vdev_log(d, VDEV_LOG_ACCESS, LOG_WARNING, "%s: config space is read-only (write of %"
		 PRIu32 " bytes at %" PRIu32 " ignored)", d->name, len, off);
}

static void vs_drop_all(struct vsock *vs)
{
	struct vs_conn *c = vs->all, *next;

	for (; c; c = next) {
		next = c->next;
		vs_conn_free(c);
	}
	vs->rst_head = vs->rst_len = 0;
}

static int vs_activate(struct vdev *d)
{
	struct vsock *vs = vs_of(d);

	vs->rx_paused = false;
	if (vs->restarted) {
		/* A restart: whatever the guest had open went with the previous process. */
		vs->restarted = false;
		vs->event_pending = true;
	}
	vs_update_accept(vs);
	vs_update_tick(vs);
	for (struct vs_conn *c = vs->all; c; c = c->next) {
		vs_update_rd(c);
		vs_update_wr(c);
	}
	vs_evt_flush(vs);
	vs_rx_process(vs);
	return 0;
}

static void vs_stop(struct vdev *d)
{
	struct vsock *vs = vs_of(d);

	/* The device is no longer active: every update turns its watcher off. */
	ev_idle_stop(vs_loop(vs), &vs->more);
	vs_update_accept(vs);
	vs_update_tick(vs);
	for (struct vs_conn *c = vs->all; c; c = c->next) {
		vs_update_rd(c);
		vs_update_wr(c);
	}
}

static void vs_reset(struct vdev *d)
{
	struct vsock *vs = vs_of(d);

	vs_drop_all(vs);
	if (vs->rx_elem)
		vq_drop(vs->rx_elem);
	vs->rx_elem = NULL;
	vs->rx_paused = false;
	vs->event_pending = false;
	vs->next_port = 0;    /* nothing of the driver's is left: host ports start over */
	vs_stop(d);
}

static void vs_queue_notify(struct vdev *d, unsigned q)
{
	struct vsock *vs = vs_of(d);

	if (q == VSOCK_Q_RX) {
		vs->rx_paused = false;   /* new buffers: send what waits */
		vs_rx_process(vs);
	} else if (q == VSOCK_Q_TX) {
		vs_tx_process(vs);
	} else {
		vs_evt_flush(vs);
	}
}

static void vs_more_cb(struct ev_loop *loop, ev_idle *w, int revents)
{
	struct vsock *vs = container_of(w, struct vsock, more);

	(void)revents;
	ev_idle_stop(loop, w);
	vs_tx_process(vs);
	vs_rx_process(vs);
}

/*
 * SIGHUP: a new guest_cid is taken as a migration is (§5.10.6.6): the guest's connections are
 * closed, the config space changes and a TRANSPORT_RESET event tells the driver. The other
 * keys are fixed while the device exists.
 */
static int vs_reconfigure(struct vdev *d, const struct config_device *cfg)
{
	struct vsock *vs = vs_of(d);
	const struct config_vsock *n = &cfg->u.vsock;

	if (strcmp(n->socket, vs->cfg.socket) != 0 || n->max_conns != vs->cfg.max_conns ||
	    n->buf_kib != vs->cfg.buf_kib) {
		log_warn("%s: only guest_cid takes effect at run time; restart for the others",
			 d->name);
		return -EOPNOTSUPP;
	}
	if (n->guest_cid == vs->guest_cid)
		return 0;
	log_notice("%s: guest CID %" PRIu64 " -> %" PRIu64 ": the guest's connections are reset",
		   d->name, vs->guest_cid, n->guest_cid);
	vs_drop_all(vs);
	vs->guest_cid = n->guest_cid;
	vs->cfg.guest_cid = n->guest_cid;
	vdev_config_changed(d);
	vs->event_pending = true;
	vs_evt_flush(vs);
	return 0;
}

static void vs_close(struct vsock *vs)
{
	vs_drop_all(vs);
	if (vs->rx_elem)
		vq_drop(vs->rx_elem);
	vs->rx_elem = NULL;
	if (vs->listen_fd >= 0) {
		ev_io_stop(vs_loop(vs), &vs->accept_w);
		close(vs->listen_fd);
		/* A next instance takes the listener over (or binds the path again itself). */
		if (!vs->vdev.leaving)
			unlink(vs->cfg.socket);
	}
	vs->listen_fd = -1;
	ev_idle_stop(vs_loop(vs), &vs->more);
	ev_timer_stop(vs_loop(vs), &vs->tick);
	free(vs->hash);
	free(vs->rst);
	vs->hash = NULL;
	vs->rst = NULL;
}

static int vs_alloc_tables(struct vsock *vs)
{
	uint32_t buckets = 16;

	while (buckets < vs->cfg.max_conns)
		buckets <<= 1;
	vs->hash = calloc(buckets, sizeof(*vs->hash));
	vs->hash_mask = buckets - 1;
	/* One RST per connection that dies, plus the stray ones. */
	vs->rst_cap = vs->cfg.max_conns + VS_RST_STRAY;
	vs->rst = calloc(vs->rst_cap, sizeof(*vs->rst));
	return vs->hash && vs->rst ? 0 : -ENOMEM;
}

static int vs_create(struct vdev_host *host, const struct config_device *cfg, struct vdev **out)
{
	struct vsock *vs = calloc(1, sizeof(*vs));
	char name[80];
	int rc;

	if (!vs)
		return -ENOMEM;
	snprintf(name, sizeof(name), "vsock %s", cfg->name);
	vs->listen_fd = -1;
	vs->cfg = cfg->u.vsock;
	/* 0 from a caller that filled the section by hand: the parser's defaults. */
	if (!vs->cfg.max_conns)
		vs->cfg.max_conns = CONFIG_VSOCK_MAX_CONNS;
	if (!vs->cfg.buf_kib)
		vs->cfg.buf_kib = CONFIG_VSOCK_BUF_KIB;
	vs->guest_cid = vs->cfg.guest_cid;
	vs->buf_alloc = vs->cfg.buf_kib * 1024;
	ev_idle_init(&vs->more, vs_more_cb);
	ev_timer_init(&vs->tick, vs_tick_cb, VS_TICK_S, VS_TICK_S);
	rc = vdev_init(&vs->vdev, &vdev_vsock_ops, host, name, 3, VS_QUEUE_MAX);
	if (rc < 0) {
		log_err("%s: cannot initialise: %s", name, strerror(-rc));
		free(vs);
		return rc;
	}
	vs->vdev.host_features = VIRTIO_BIT(VSOCK_F_STREAM);
	vs->vdev.config_size = VSOCK_CFG_SIZE;
	vs->restarted = vs->vdev.adopted;
	if (!host->loop || vs->guest_cid < CONFIG_VSOCK_CID_MIN ||
	    vs->guest_cid > CONFIG_VSOCK_CID_MAX || !vs->cfg.socket[0]) {
		log_err("%s: needs an event loop, a guest_cid and a socket", name);
		rc = -EINVAL;
	} else if ((rc = vs_alloc_tables(vs)) == 0 && (rc = vs_listen(vs)) < 0) {
		log_err("%s: socket %s: %s", name, vs->cfg.socket, strerror(-rc));
	}
	if (rc < 0) {
		if (host->loop)
			vs_close(vs);
		vdev_fini(&vs->vdev);
		free(vs);
		return rc;
	}
	*out = &vs->vdev;
	return 0;
}

static void vs_destroy(struct vdev *d)
{
	struct vsock *vs = vs_of(d);

	vs_close(vs);
	vdev_fini(d);
	free(vs);
}

int vsock_get_stats(const struct vdev *d, struct vsock_stats *st)
{
	if (!d || d->ops != &vdev_vsock_ops)
		return -EINVAL;
	*st = container_of(d, const struct vsock, vdev)->st;
	return 0;
}

const struct vdev_ops vdev_vsock_ops = {
	.type = "vsock",
	.device_id = VIRTIO_ID_VSOCK,
	.create = vs_create,
	.config_read = vs_config_read,
	.config_write = vs_config_write,
	.activate = vs_activate,
	.stop = vs_stop,
	.reset = vs_reset,
	.queue_notify = vs_queue_notify,
	.reconfigure = vs_reconfigure,
	.destroy = vs_destroy,
};
