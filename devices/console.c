/*
 * virtio-console (device id 3, virtio 1.2 §5.3): port 0 is the guest's console (hvc0); with
 * `port = NAME:socket:PATH` lines the device offers MULTIPORT and each named port appears in the
 * guest as /dev/virtio-ports/NAME.
 *
 * Backends. Every interactive byte stream of a port is a "sink": an accepted socket client, the
 * pty master, or stdin/stdout. Guest output goes to the port's log file (O_APPEND, written
 * synchronously: a regular file does not block for long) and to every sink; a sink that cannot
 * take it now (slow reader, or a socket with nobody attached) keeps it in its own ring of
 * `ring` KiB, oldest bytes dropped and counted, flushed when the reader is back. So the transmit
 * queue is always serviced and the guest is never blocked beyond its own queue.
 *
 * A socket serves one client at a time: while one is attached the listener is not polled, so a
 * second client's connect() waits in the backlog until the first one leaves (then it gets the
 * ring's contents). The pty slave is held open by the daemon (in raw mode) so the master never
 * reports a hangup when a terminal program detaches; output then waits in the tty's buffer and
 * in the ring.
 *
 * Input: a port reads its sinks only while it holds (or can pop) a receive buffer and the guest
 * has the port open. Without buffers the read watchers stop and the bytes stay in the kernel's
 * socket / tty buffer; the guest's next kick on the receive queue resumes reading. Bytes are read
 * straight into the guest's buffer, one chain per read().
 *
 * The pty's window size cannot be watched per device (SIGWINCH goes to the controlling process
 * only), so a timer polls TIOCGWINSZ; on change the config space is updated with a config
 * interrupt and, with MULTIPORT, a RESIZE control message goes to the console port (cols then
 * rows, as the spec orders them). The same tick finds socket clients that hung up while input
 * was paused (no read watcher is running then to see their end of file).
 *
 * Control queue (MULTIPORT): device messages wait in a bounded FIFO until the guest posts
 * control buffers; guest messages are copied once (8-byte header) and validated; malformed ones
 * are ignored and counted. A reload (SIGHUP) reopens the log file, nothing else.
 */
#include <endian.h>
#include <errno.h>
#include <ev.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <termios.h>
#include <unistd.h>

#include "config/config.h"
#include "devices/console.h"
#include "devices/console_log.h"
#include "devices/console_ring.h"
#include "devices/iov.h"
#include "lib/testpoint.h"

extern const struct vdev_ops vdev_console_ops;

#define CON_QUEUE_MAX   256
#define CON_MAX_PORTS   (1 + CONFIG_CONSOLE_PORTS)
#define CON_CTRL_SLOTS  64          /* device->guest control messages waiting for buffers */
#define CON_CHAIN_MAX   (64u * 1024)   /* output bytes taken from one transmit chain */
#define CON_TURN_MAX    (256u * 1024)  /* output bytes taken per loop turn, all ports */
#define CON_TICK_S      0.25        /* pty size poll and idle-client check */
#define CON_DEF_COLS    80
#define CON_DEF_ROWS    25

enum con_sink_kind { SINK_SOCKET, SINK_PTY, SINK_STDIO };

/* One interactive byte stream of a port. */
struct con_sink {
	struct con_port *port;
	enum con_sink_kind kind;
	int rfd, wfd;               /* -1: nobody attached */
	bool eof;                   /* the input side ended (stdin closed): stop reading */
	ev_io rd, wr;
	struct con_ring out;        /* guest output not yet written to wfd */
};

struct con_port {
	struct console *con;
	unsigned id;
	char name[CONFIG_NAME_MAX];
	/* backends */
	int listen_fd;
	ev_io accept_w;
	char sock_path[CONFIG_PATH_MAX];
	struct con_log log;         /* port 0 only: rotated at log_max_size */
	unsigned nsinks;
	struct con_sink sinks[3];   /* socket, pty, stdio (port 0); socket only (named ports) */
	/* guest state, cleared at reset */
	bool ready;                 /* PORT_READY(1) seen (MULTIPORT) */
	bool guest_open;            /* the guest may take input on this port */
	bool rx_paused;             /* no receive buffer: reading stopped until a kick */
	struct vq_elem *rx_elem;    /* a popped receive buffer waiting for input */
	struct console_stats st;
};

struct con_ctrl_msg {
	uint32_t id;
	uint16_t event, value;
	uint16_t extra_len;
	uint8_t extra[CONFIG_NAME_MAX];
};

/*
 * What the guest can observe of the ports and of the control queue, in memory that outlives the
 * process (vdev_persist()): which ports it made ready and opened, and the device's control
 * messages it has not received yet. Two copies: con_rec_save() writes the one not in use, then
 * `cur` names it, so a crash leaves one whole state or the other. A driver's message is handled
 * whole (its state changes and every message it causes queued), then saved, then the device's
 * messages handed over, then its chain returned: a crash before the return replays it, and the
 * handlers are idempotent. A device message is handed over (its used element published) before
 * the record drops it: ctrl_used, the control receive queue's used index when the record was
 * written, tells a next instance how many of the recorded messages went after that (one used
 * element each), so none goes twice or is lost. Checked when read back (con_rec_restore()).
 */
struct con_state {
	uint8_t dev_ready;
	uint8_t ready[CON_MAX_PORTS], open[CON_MAX_PORTS];
	uint16_t ctrl_head, ctrl_len, ctrl_used;
	struct con_ctrl_msg ctrl[CON_CTRL_SLOTS];
};

struct con_rec {
	uint8_t valid;
	uint8_t cur;                /* the copy in use: st[cur & 1] */
	struct con_state st[2];
};

struct console {
	struct vdev vdev;
	unsigned nports;
	bool dev_ready;             /* DEVICE_READY(1) seen (MULTIPORT): ports were announced */
	struct con_rec *rec;        /* NULL: nothing outlives the process */
	bool handling;              /* in a driver's control message: queue, save and send after */
	bool restore;               /* rec is the previous instance's: the next activation uses it */
	bool multiport;             /* MULTIPORT negotiated (valid while active) */
	uint16_t cols, rows;
	int pty_slave;
	char pty_path[PATH_MAX];
	char pty_link[CONFIG_PATH_MAX];
	bool stdio;
	int stdio_flags[2];         /* O_ flags of fds 0 and 1 before we made them non-blocking */
	ev_timer tick;
	ev_idle more;               /* a transmit queue had more than VQ_BUDGET chains */
	unsigned ctrl_head, ctrl_len;
	struct con_ctrl_msg ctrl[CON_CTRL_SLOTS];
	struct console_ctrl_stats cst;
	struct config_console cc;   /* as created: what a reload may not change */
	struct con_port ports[CON_MAX_PORTS];
};

static struct console *con_of(struct vdev *d)
{
	return container_of(d, struct console, vdev);
}

static struct ev_loop *con_loop(struct console *c)
{
	return c->vdev.host->loop;
}

/* ---- control queue, device -> guest -------------------------------------------------------- */

/* The control receive queue's used index (0 without MULTIPORT's queues). */
static uint16_t con_ctrl_used(const struct console *c)
{
	return c->vdev.num_queues > CONSOLE_Q_CTRL_RX ? c->vdev.vqs[CONSOLE_Q_CTRL_RX].used_idx : 0;
}

static void con_rec_save(struct console *c)
{
	struct con_rec *r = c->rec;
	uint8_t next = r ? (uint8_t)(!(r->cur & 1)) : 0;
	struct con_state *st = r ? &r->st[next] : NULL;

	if (!r || c->handling)
		return;
	st->dev_ready = c->dev_ready;
	for (unsigned i = 0; i < c->nports; i++) {
		st->ready[i] = c->ports[i].ready;
		st->open[i] = c->ports[i].guest_open;
	}
	memcpy(st->ctrl, c->ctrl, sizeof(st->ctrl));
	st->ctrl_head = (uint16_t)c->ctrl_head;
	st->ctrl_len = (uint16_t)c->ctrl_len;
	st->ctrl_used = con_ctrl_used(c);
	/* The copy whole, then it is the one in use. */
	__atomic_store_n(&r->cur, next, __ATOMIC_RELEASE);
	__atomic_store_n(&r->valid, 1, __ATOMIC_RELEASE);
}

/* Hand queued control messages to the guest while it has buffers for them. */
static void ctrl_flush(struct console *c)
{
	struct virtqueue *vq = &c->vdev.vqs[CONSOLE_Q_CTRL_RX];
	bool pushed = false;
	int err = 0;

	if (c->handling)
		return;     /* ctrl_receive() sends once the whole message is handled and saved */
	while (c->ctrl_len && vdev_active(&c->vdev)) {
		struct vq_elem *e = vq_pop(vq, &err);
		struct con_ctrl_msg *m = &c->ctrl[c->ctrl_head];
		uint8_t buf[CONSOLE_CTRL_HDR + CONFIG_NAME_MAX];
		uint32_t id = htole32(m->id);
		uint16_t ev = htole16(m->event), val = htole16(m->value);

		if (!e)
			break;
		memcpy(buf, &id, 4);
		memcpy(buf + 4, &ev, 2);
		memcpy(buf + 6, &val, 2);
		memcpy(buf + CONSOLE_CTRL_HDR, m->extra, m->extra_len);
		vq_push(e, (uint32_t)iov_from_buf(e->iov + e->n_out, e->n_in, 0, buf,
						  CONSOLE_CTRL_HDR + m->extra_len));
		pushed = true;
		c->ctrl_head = (c->ctrl_head + 1) % CON_CTRL_SLOTS;
		c->ctrl_len--;
		con_rec_save(c);   /* after the hand-over: struct con_rec */
	}
	if (err)
		vdev_vq_error(&c->vdev, vq);
	if (pushed)
		vdev_used(&c->vdev, vq);
}

static void ctrl_send(struct console *c, unsigned id, uint16_t event, uint16_t value,
		      const void *extra, size_t extra_len)
{
	struct con_ctrl_msg *m;

	if (!c->multiport || !vdev_active(&c->vdev))
		return;
	if (c->ctrl_len == CON_CTRL_SLOTS) {
		/* Only a guest that never posts control buffers fills this; it loses news. */
		c->cst.dropped++;
		vdev_log(&c->vdev, VDEV_LOG_REQUEST, LOG_WARNING,
			 "%s: control queue full, message dropped", c->vdev.name);
		return;
	}
	m = &c->ctrl[(c->ctrl_head + c->ctrl_len) % CON_CTRL_SLOTS];
	*m = (struct con_ctrl_msg){ .id = id, .event = event, .value = value };
	if (extra_len > sizeof(m->extra))
		extra_len = sizeof(m->extra);
	if (extra_len)
		memcpy(m->extra, extra, extra_len);
	m->extra_len = (uint16_t)extra_len;
	c->ctrl_len++;
	con_rec_save(c);
	ctrl_flush(c);
}

static void ctrl_send_resize(struct console *c)
{
	uint16_t sz[2] = { htole16(c->cols), htole16(c->rows) };

	if (c->ports[0].ready)
		ctrl_send(c, 0, VIRTIO_CONSOLE_RESIZE, 0, sz, sizeof(sz));
}

/* Tell the guest whether somebody is attached to named port p. */
static void port_announce_host(struct con_port *p, bool open)
{
	if (p->id != 0 && p->ready)
		ctrl_send(p->con, p->id, VIRTIO_CONSOLE_PORT_OPEN, open, NULL, 0);
}

/* ---- sinks: output ----------------------------------------------------------------------- */

static bool sink_attached(const struct con_sink *s)
{
	return s->wfd >= 0;
}

static void sink_detach(struct con_sink *s);

static ssize_t sink_writev(struct con_sink *s, const struct iovec *iov, unsigned n)
{
	if (s->kind == SINK_SOCKET) {
		struct msghdr mh = { .msg_iov = (struct iovec *)iov, .msg_iovlen = n };

		return sendmsg(s->wfd, &mh, MSG_NOSIGNAL | MSG_DONTWAIT);
	}
	return writev(s->wfd, iov, (int)n);
}

/* A write failed for a reason other than a full buffer: the reader is gone. */
static void sink_write_failed(struct con_sink *s, int err)
{
	vdev_log(&s->port->con->vdev, VDEV_LOG_BACKEND, LOG_NOTICE,
		 "%s: port %u: output failed: %s", s->port->con->vdev.name, s->port->id,
		 strerror(err));
	sink_detach(s);
}

static void sink_queue(struct con_sink *s, const void *p, size_t n)
{
	size_t drop = con_ring_put(&s->out, p, n);

	if (drop) {
		s->port->st.dropped += drop;
		vdev_log(&s->port->con->vdev, VDEV_LOG_BACKEND, LOG_NOTICE,
			 "%s: port %u: no reader, oldest output dropped", s->port->con->vdev.name,
			 s->port->id);
	}
	if (sink_attached(s) && s->out.len && con_loop(s->port->con))
		ev_io_start(con_loop(s->port->con), &s->wr);
}

/* Guest output for this sink: written now when possible, the rest into its ring. */
static void sink_output(struct con_sink *s, const uint8_t *p, size_t n)
{
	if (sink_attached(s) && s->out.len == 0) {
		struct iovec iov = { (void *)p, n };
		ssize_t w = sink_writev(s, &iov, 1);

		if (w < 0 && errno != EAGAIN && errno != EINTR) {
			sink_write_failed(s, errno);
		} else if (w > 0) {
			p += w;
			n -= (size_t)w;
		}
	}
	if (n)
		sink_queue(s, p, n);
}

/* The reader can take more: drain the ring. */
static void sink_flush(struct con_sink *s)
{
	while (s->out.len) {
		struct iovec iov[2];
		unsigned n = con_ring_peek(&s->out, iov);
		ssize_t w = sink_writev(s, iov, n);

		if (w < 0 && (errno == EAGAIN || errno == EINTR))
			return;
		if (w <= 0) {
			sink_write_failed(s, w < 0 ? errno : EPIPE);
			return;
		}
		con_ring_consume(&s->out, (size_t)w);
	}
	ev_io_stop(con_loop(s->port->con), &s->wr);
}

static void sink_wr_cb(struct ev_loop *loop, ev_io *w, int revents)
{
	(void)loop;
	(void)revents;
	sink_flush(container_of(w, struct con_sink, wr));
}

/* Guest output of port p: log file first (the record), then every sink. */
static void port_output(struct con_port *p, const uint8_t *data, size_t n)
{
	ssize_t rc = con_log_write(&p->log, data, n);

	p->st.from_guest += n;
	if (rc < 0)
		vdev_log(&p->con->vdev, VDEV_LOG_BACKEND, LOG_WARNING,
			 "%s: port %u: log write failed: %s", p->con->vdev.name, p->id,
			 strerror((int)-rc));
	for (unsigned i = 0; i < p->nsinks; i++)
		sink_output(&p->sinks[i], data, n);
}

/* ---- sinks: input ------------------------------------------------------------------------ */

static bool port_input_allowed(const struct con_port *p)
{
	const struct console *c = p->con;

	if (!vdev_active(&c->vdev) || !c->vdev.vqs[console_rxq(p->id)].enabled)
		return false;
	return c->multiport ? p->guest_open : p->id == 0;
}

/* Start or stop the read watchers of p to match whether input can go anywhere. */
static void port_update_rx(struct con_port *p)
{
	struct ev_loop *loop = con_loop(p->con);
	bool on = port_input_allowed(p) && !p->rx_paused;

	for (unsigned i = 0; loop && i < p->nsinks; i++) {
		struct con_sink *s = &p->sinks[i];

		if (on && s->rfd >= 0 && !s->eof)
			ev_io_start(loop, &s->rd);
		else
			ev_io_stop(loop, &s->rd);
	}
}

/* A receive buffer for p: the held one, or the next from the ring. NULL pauses input. */
static struct vq_elem *port_rx_buffer(struct con_port *p)
{
	struct virtqueue *vq = &p->con->vdev.vqs[console_rxq(p->id)];
	int err;

	for (int tries = 0; !p->rx_elem && tries < 2; tries++) {
		p->rx_elem = vq_pop(vq, &err);
		if (err) {
			vdev_vq_error(&p->con->vdev, vq);
			return NULL;
		}
		/* Empty: re-arm kicks, and look again in case one raced in before that. */
		if (!p->rx_elem && !vq_enable_notify(vq))
			break;
	}
	if (!p->rx_elem) {
		p->rx_paused = true;
		port_update_rx(p);
	}
	return p->rx_elem;
}

static void sink_input_ended(struct con_sink *s, int err)
{
	if (s->kind == SINK_SOCKET) {
		sink_detach(s);
		return;
	}
	/* stdin at EOF, or a pty error: keep the output side, stop reading. */
	if (err)
		vdev_log(&s->port->con->vdev, VDEV_LOG_BACKEND, LOG_NOTICE,
			 "%s: port %u: input failed: %s", s->port->con->vdev.name, s->port->id,
			 strerror(err));
	s->eof = true;
	ev_io_stop(con_loop(s->port->con), &s->rd);
}

/* Move what s has to offer into receive buffers; at most VQ_BUDGET reads per wakeup. */
static void sink_input(struct con_sink *s)
{
	struct con_port *p = s->port;
	struct virtqueue *vq = &p->con->vdev.vqs[console_rxq(p->id)];
	bool pushed = false;

	for (unsigned n = 0; n < VQ_BUDGET && s->rfd >= 0 && port_input_allowed(p); n++) {
		struct vq_elem *e = port_rx_buffer(p);
		ssize_t r;

		if (!e)
			break;
		if (e->n_in == 0 || e->in_len == 0) {
			vq_push(e, 0);   /* nothing writable: return it unused */
			p->rx_elem = NULL;
			pushed = true;
			continue;
		}
		r = readv(s->rfd, e->iov + e->n_out, e->n_in);
		if (r < 0 && (errno == EAGAIN || errno == EINTR))
			break;
		if (r <= 0) {
			sink_input_ended(s, r < 0 ? errno : 0);
			break;
		}
		p->rx_elem = NULL;
		p->st.to_guest += (uint64_t)r;
		vq_push(e, (uint32_t)r);
		pushed = true;
	}
	if (pushed)
		vdev_used(&p->con->vdev, vq);
}

static void con_check_size(struct console *c);

static void sink_rd_cb(struct ev_loop *loop, ev_io *w, int revents)
{
	struct con_sink *s = container_of(w, struct con_sink, rd);

	(void)loop;
	(void)revents;
	if (s->kind == SINK_PTY)
		con_check_size(s->port->con);
	sink_input(s);
}

/* ---- socket clients ---------------------------------------------------------------------- */

/* The port's socket sink (its listener's, or the control tool's), or NULL. */
static struct con_sink *port_socket_sink(struct con_port *p)
{
	for (unsigned i = 0; i < p->nsinks; i++)
		if (p->sinks[i].kind == SINK_SOCKET)
			return &p->sinks[i];
	return NULL;
}

/* A port's listener and its client as systemd's fd store names them. */
static void port_store_name(const struct con_port *p, const char *what, char *buf, size_t len)
{
	snprintf(buf, len, "%s/%s%u", p->con->vdev.name, what, p->id);
}

/* The attached client outlives the process (or, fd < 0, no longer does). */
static void sink_keep(const struct con_sink *s, int fd)
{
	char name[sizeof(s->port->con->vdev.name) + 32];

	if (s->kind != SINK_SOCKET)
		return;
	port_store_name(s->port, "client", name, sizeof(name));
	fdstore_keep(s->port->con->vdev.host->store, name, fd);
}

static void sink_detach(struct con_sink *s)
{
	struct con_port *p = s->port;
	struct ev_loop *loop = con_loop(p->con);

	if (s->kind != SINK_SOCKET || s->rfd < 0)
		return;
	if (loop) {
		ev_io_stop(loop, &s->rd);
		ev_io_stop(loop, &s->wr);
		/* The next client in the backlog may come (a port without a socket has none). */
		if (p->listen_fd >= 0)
			ev_io_start(loop, &p->accept_w);
	}
	sink_keep(s, -1);
	close(s->rfd);
	s->rfd = s->wfd = -1;
	log_info("%s: port %u: client detached", p->con->vdev.name, p->id);
	port_announce_host(p, false);
}

static void sink_attach(struct con_sink *s, int fd)
{
	struct con_port *p = s->port;
	struct ev_loop *loop = con_loop(p->con);

	s->rfd = s->wfd = fd;
	ev_io_set(&s->rd, fd, EV_READ);
	ev_io_set(&s->wr, fd, EV_WRITE);
	ev_io_stop(loop, &p->accept_w);    /* one client at a time; others wait in the backlog */
	sink_keep(s, fd);
	p->st.attaches++;
	log_info("%s: port %u: client attached", p->con->vdev.name, p->id);
	if (s->out.len)
		ev_io_start(loop, &s->wr);      /* replay what was kept while nobody listened */
	port_update_rx(p);
	port_announce_host(p, true);
}

static void port_accept_cb(struct ev_loop *loop, ev_io *w, int revents)
{
	struct con_port *p = container_of(w, struct con_port, accept_w);
	int fd = accept4(p->listen_fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);

	(void)loop;
	(void)revents;
	if (fd < 0) {
		if (errno != EAGAIN && errno != EINTR && errno != ECONNABORTED)
			vdev_log(&p->con->vdev, VDEV_LOG_BACKEND, LOG_WARNING,
				 "%s: port %u: accept: %s", p->con->vdev.name, p->id,
				 strerror(errno));
		return;
	}
	sink_attach(&p->sinks[0], fd);
}

/*
 * A client that left while input was paused is not seen by a read watcher; a peek finds its
 * EOF (queued input is still delivered first: the peek then returns data).
 */
static void port_check_client(struct con_port *p)
{
	struct con_sink *s = port_socket_sink(p);
	char b;

	if (!s || s->rfd < 0 || ev_is_active(&s->rd))
		return;
	if (recv(s->rfd, &b, 1, MSG_PEEK | MSG_DONTWAIT) == 0)
		sink_detach(s);
}

/* Serve the listening socket fd, bound at path, and keep it for a next instance. */
static void port_listen_on(struct con_port *p, int fd, const char *path)
{
	char name[sizeof(p->con->vdev.name) + 32];

	p->listen_fd = fd;
	snprintf(p->sock_path, sizeof(p->sock_path), "%s", path);
	ev_io_init(&p->accept_w, port_accept_cb, fd, EV_READ);
	ev_io_start(con_loop(p->con), &p->accept_w);
	port_store_name(p, "listen", name, sizeof(name));
	fdstore_keep(p->con->vdev.host->store, name, fd);
}

/* True when fd is a Unix stream socket; listening, and bound to path, when path is given. */
static bool con_unix_socket(int fd, const char *path)
{
	struct sockaddr_un sa;
	socklen_t len = sizeof(sa);
	int v = 0;
	socklen_t vl = sizeof(v);
	struct stat st;

	if (getsockopt(fd, SOL_SOCKET, SO_TYPE, &v, &vl) < 0 || v != SOCK_STREAM)
		return false;
	memset(&sa, 0, sizeof(sa));
	if (getsockname(fd, (struct sockaddr *)&sa, &len) < 0 || sa.sun_family != AF_UNIX)
		return false;
	if (!path)
		return true;
	vl = sizeof(v);
	if (getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &v, &vl) < 0 || !v)
		return false;
	sa.sun_path[sizeof(sa.sun_path) - 1] = 0;
	/* Still reachable: the path is there and is a socket. */
	return strcmp(sa.sun_path, path) == 0 && lstat(path, &st) == 0 && S_ISSOCK(st.st_mode);
}

/*
 * After a restart with systemd's fd store: the previous instance's listener and the client it
 * had, so a client stays connected and one waiting in the backlog is not refused. True when
 * the listener was taken.
 */
static bool port_take_socket(struct con_port *p, const char *path)
{
	struct fdstore *st = p->con->vdev.host->store;
	char name[sizeof(p->con->vdev.name) + 32];
	int fd, cfd;

	if (!p->con->vdev.adopted)
		return false;
	port_store_name(p, "listen", name, sizeof(name));
	fd = fdstore_take(st, name);
	if (fd >= 0 && !con_unix_socket(fd, path)) {
		log_notice("%s: port %u: the stored listener is not %s's: listening again",
			   p->con->vdev.name, p->id, path);
		close(fd);
		fd = -1;
	}
	if (fd < 0)
		return false;
	fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
	port_listen_on(p, fd, path);
	port_store_name(p, "client", name, sizeof(name));
	cfd = fdstore_take(st, name);
	if (cfd >= 0 && con_unix_socket(cfd, NULL)) {
		fcntl(cfd, F_SETFL, fcntl(cfd, F_GETFL) | O_NONBLOCK);
		sink_attach(&p->sinks[0], cfd);
	} else if (cfd >= 0) {
		close(cfd);
	}
	return true;
}

static int port_listen(struct con_port *p, const char *path)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	struct stat st;
	int fd;

	if (strlen(path) >= sizeof(sa.sun_path))
		return -ENAMETOOLONG;
	if (port_take_socket(p, path))
		return 0;
	memcpy(sa.sun_path, path, strlen(path) + 1);
	/* A stale socket of an earlier run would make bind fail; anything else is not ours. */
	if (lstat(path, &st) == 0 && S_ISSOCK(st.st_mode))
		unlink(path);
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 || listen(fd, 4) < 0) {
		int rc = -errno;

		close(fd);
		return rc;
	}
	port_listen_on(p, fd, path);
	return 0;
}

/* ---- pty and window size ----------------------------------------------------------------- */

/*
 * The pty: after a restart with systemd's fd store the previous instance's master, so the
 * terminal program attached to it stays attached (its slave path, and the link, stay); else a
 * new one. Returns the master fd or a negative errno.
 */
static int con_open_pty(struct console *c)
{
	char name[sizeof(c->vdev.name) + 8];
	struct termios t;
	int m = -1;

	snprintf(name, sizeof(name), "%s/pty", c->vdev.name);
	if (c->vdev.adopted && (m = fdstore_take(c->vdev.host->store, name)) >= 0 &&
	    (!isatty(m) || ptsname_r(m, c->pty_path, sizeof(c->pty_path)) != 0)) {
		close(m);
		m = -1;
	}
	if (m >= 0)
		fcntl(m, F_SETFL, fcntl(m, F_GETFL) | O_NONBLOCK);
	else
		m = posix_openpt(O_RDWR | O_NOCTTY | O_NONBLOCK | O_CLOEXEC);
	if (m < 0)
		return -errno;
	fdstore_keep(c->vdev.host->store, name, m);
	if (grantpt(m) < 0 || unlockpt(m) < 0 || ptsname_r(m, c->pty_path, sizeof(c->pty_path)))
		goto fail;
	/* Held open so the master never hangs up when a terminal program detaches. */
	c->pty_slave = open(c->pty_path, O_RDWR | O_NOCTTY | O_CLOEXEC);
	if (c->pty_slave < 0)
		goto fail;
	/* Raw: the guest's own tty does line editing, echo and CR/LF; bytes pass unchanged. */
	if (tcgetattr(c->pty_slave, &t) == 0) {
		cfmakeraw(&t);
		tcsetattr(c->pty_slave, TCSANOW, &t);
	}
	return m;
fail:;
	int rc = -errno;

	close(m);
	return rc ? rc : -EIO;
}

static void con_link_pty(struct console *c, const char *link)
{
	struct stat st;

	/* Replace only an old symlink; never remove a file that someone else put there. */
	if (lstat(link, &st) == 0 && S_ISLNK(st.st_mode))
		unlink(link);
	if (symlink(c->pty_path, link) < 0) {
		log_warn("%s: cannot link %s to %s: %s", c->vdev.name, link, c->pty_path,
			 strerror(errno));
		return;
	}
	snprintf(c->pty_link, sizeof(c->pty_link), "%s", link);
}

static void con_unlink_pty(struct console *c)
{
	char target[PATH_MAX];
	ssize_t n;

	if (!c->pty_link[0])
		return;
	n = readlink(c->pty_link, target, sizeof(target) - 1);
	if (n >= 0) {
		target[n] = 0;
		if (strcmp(target, c->pty_path) == 0)
			unlink(c->pty_link);
	}
	c->pty_link[0] = 0;
}

static int con_pty_fd(struct console *c)
{
	for (unsigned i = 0; i < c->ports[0].nsinks; i++)
		if (c->ports[0].sinks[i].kind == SINK_PTY)
			return c->ports[0].sinks[i].wfd;
	return -1;
}

/* The pty's size changed (a terminal attached or resized): tell the guest. */
static void con_check_size(struct console *c)
{
	struct winsize ws;
	int fd = con_pty_fd(c);

	if (fd < 0 || ioctl(fd, TIOCGWINSZ, &ws) < 0 || !ws.ws_col || !ws.ws_row)
		return;
	if (ws.ws_col == c->cols && ws.ws_row == c->rows)
		return;
	c->cols = ws.ws_col;
	c->rows = ws.ws_row;
	log_info("%s: console size %ux%u", c->vdev.name, c->cols, c->rows);
	vdev_config_changed(&c->vdev);
	ctrl_send_resize(c);
}

static void con_tick_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct console *c = container_of(w, struct console, tick);

	(void)loop;
	(void)revents;
	con_check_size(c);
	for (unsigned i = 0; i < c->nports; i++)
		port_check_client(&c->ports[i]);
}

/* Initial size: the configured one (also given to the pty), else the pty's, else 80x25. */
static void con_init_size(struct console *c, const struct config_console *cc)
{
	struct winsize ws = { 0 };
	int fd = con_pty_fd(c);

	c->cols = CON_DEF_COLS;
	c->rows = CON_DEF_ROWS;
	if (cc->cols && cc->rows) {
		c->cols = cc->cols;
		c->rows = cc->rows;
		ws.ws_col = cc->cols;
		ws.ws_row = cc->rows;
		if (fd >= 0)
			ioctl(fd, TIOCSWINSZ, &ws);
	} else if (fd >= 0 && ioctl(fd, TIOCGWINSZ, &ws) == 0 && ws.ws_col && ws.ws_row) {
		c->cols = ws.ws_col;
		c->rows = ws.ws_row;
	}
}

/* ---- transmit ------------------------------------------------------------------------------ */

/*
 * One transmit chain's output: its first CON_CHAIN_MAX bytes. Descriptors may all point at the
 * same guest pages, so the chain's length says nothing about the guest memory behind it: without
 * the cap, 1 MiB of guest RAM became a GiB of log file per chain. Returns the bytes taken.
 */
static uint32_t port_tx_chain(struct con_port *p, const struct vq_elem *e)
{
	uint32_t take = e->out_len < CON_CHAIN_MAX ? e->out_len : CON_CHAIN_MAX;
	uint32_t left = take;

	for (unsigned i = 0; i < e->n_out && left; i++) {
		size_t n = e->iov[i].iov_len < left ? e->iov[i].iov_len : left;

		port_output(p, e->iov[i].iov_base, n);
		left -= (uint32_t)n;
	}
	if (take < e->out_len) {
		p->st.cut += e->out_len - take;
		vdev_log(&p->con->vdev, VDEV_LOG_REQUEST, LOG_WARNING,
			 "%s: port %u: transmit chain of %u bytes, only the first %u taken",
			 p->con->vdev.name, p->id, e->out_len, take);
	}
	return take;
}

/*
 * Take chains of p's transmit queue, up to VQ_BUDGET and while *budget bytes remain (each chain
 * is taken whole, up to its cap); returns true when more are waiting.
 */
static bool port_tx(struct con_port *p, uint32_t *budget)
{
	struct virtqueue *vq = &p->con->vdev.vqs[console_rxq(p->id) + 1];
	bool pushed = false;
	int err = 0;

	for (unsigned n = 0; n < VQ_BUDGET && *budget; n++) {
		struct vq_elem *e = vq_pop(vq, &err);

		if (!e)
			break;
		uint32_t took = port_tx_chain(p, e);

		testpoint("console.tx.written");
		*budget -= took < *budget ? took : *budget;
		vq_push(e, 0);
		pushed = true;
	}
	if (err)
		vdev_vq_error(&p->con->vdev, vq);
	if (pushed)
		vdev_used(&p->con->vdev, vq);
	/*
	 * Stopped by a budget with the ring just emptied, kicks must be re-armed as a pop of the
	 * empty ring would (EVENT_IDX: avail_event), or the driver would not kick again.
	 */
	return !err && vq_more(vq);
}

static bool port_exists_for_guest(const struct console *c, unsigned id)
{
	return id < c->nports && (id == 0 || c->multiport);
}

/* Every port's transmit queue, within one turn's output budget; the rest on the next turn. */
static void con_tx_all(struct console *c)
{
	uint32_t budget = CON_TURN_MAX;
	bool more = false;

	for (unsigned i = 0; i < c->nports && vdev_active(&c->vdev); i++)
		if (port_exists_for_guest(c, i))
			more |= port_tx(&c->ports[i], &budget);
	if (more && con_loop(c))
		ev_idle_start(con_loop(c), &c->more);
}

static void ctrl_receive(struct console *c);

/* A queue had more than VQ_BUDGET chains: continue after the loop served everything else. */
static void con_more_cb(struct ev_loop *loop, ev_idle *w, int revents)
{
	struct console *c = container_of(w, struct console, more);

	(void)revents;
	ev_idle_stop(loop, w);
	con_tx_all(c);
	if (c->multiport)
		ctrl_receive(c);
}

/* ---- control queue, guest -> device -------------------------------------------------------- */

static void ctrl_bad(struct console *c, const char *why, uint32_t id, uint16_t event)
{
	c->cst.bad++;
	vdev_log(&c->vdev, VDEV_LOG_REQUEST, LOG_WARNING,
		 "%s: control message ignored (%s): id %u event %u", c->vdev.name, why, id, event);
}

static void ctrl_device_ready(struct console *c, uint16_t value)
{
	if (!value) {
		vdev_log(&c->vdev, VDEV_LOG_REQUEST, LOG_WARNING,
			 "%s: the driver failed to initialise", c->vdev.name);
		return;
	}
	/* Once per initialisation: a message replayed after a restart announces nothing twice. */
	if (c->dev_ready)
		return;
	c->dev_ready = true;
	for (unsigned i = 0; i < c->nports; i++)
		ctrl_send(c, i, VIRTIO_CONSOLE_PORT_ADD, 0, NULL, 0);
}

static void ctrl_port_ready(struct console *c, struct con_port *p, uint16_t value)
{
	if (!value) {
		vdev_log(&c->vdev, VDEV_LOG_REQUEST, LOG_WARNING,
			 "%s: the driver could not add port %u", c->vdev.name, p->id);
		return;
	}
	if (p->ready)
		return;     /* said twice: the port's news were sent already */
	p->ready = true;
	if (p->id == 0) {
		/* A console port is open on the guest side from the start (it is hvc0). */
		ctrl_send(c, 0, VIRTIO_CONSOLE_CONSOLE_PORT, 1, NULL, 0);
		ctrl_send_resize(c);
		p->guest_open = true;
		port_update_rx(p);
		return;
	}
	ctrl_send(c, p->id, VIRTIO_CONSOLE_PORT_NAME, 1, p->name, strlen(p->name));
	if (sink_attached(&p->sinks[0]))
		port_announce_host(p, true);
}

static void ctrl_port_open(struct console *c, struct con_port *p, uint16_t value)
{
	if (value > 1) {
		ctrl_bad(c, "open value not 0 or 1", p->id, VIRTIO_CONSOLE_PORT_OPEN);
		return;
	}
	p->guest_open = value;
	vdev_log(&c->vdev, VDEV_LOG_INFO, LOG_INFO, "%s: port %u %s by the guest", c->vdev.name,
		 p->id, value ? "opened" : "closed");
	if (p->guest_open)
		p->rx_paused = false;   /* look for buffers again */
	port_update_rx(p);
}

static void ctrl_handle(struct console *c, uint32_t id, uint16_t event, uint16_t value)
{
	if (event == VIRTIO_CONSOLE_DEVICE_READY) {
		ctrl_device_ready(c, value);
		return;
	}
	if (event != VIRTIO_CONSOLE_PORT_READY && event != VIRTIO_CONSOLE_PORT_OPEN) {
		ctrl_bad(c, "not an event a driver sends", id, event);
		return;
	}
	if (id >= c->nports) {
		ctrl_bad(c, "no such port", id, event);
		return;
	}
	if (event == VIRTIO_CONSOLE_PORT_READY)
		ctrl_port_ready(c, &c->ports[id], value);
	else
		ctrl_port_open(c, &c->ports[id], value);
}

static void ctrl_receive(struct console *c)
{
	struct virtqueue *vq = &c->vdev.vqs[CONSOLE_Q_CTRL_TX];
	bool pushed = false;
	int err = 0;

	for (unsigned n = 0; n < VQ_BUDGET && vdev_active(&c->vdev); n++) {
		struct vq_elem *e = vq_pop(vq, &err);
		uint8_t hdr[CONSOLE_CTRL_HDR];
		uint32_t id;
		uint16_t event, value;

		if (!e)
			break;
		/* One private copy of the header, then only that copy is looked at. */
		if (iov_to_buf(e->iov, e->n_out, 0, hdr, sizeof(hdr)) < sizeof(hdr)) {
			vq_push(e, 0);
			pushed = true;
			ctrl_bad(c, "shorter than 8 bytes", 0, 0);
			continue;
		}
		memcpy(&id, hdr, 4);
		memcpy(&event, hdr + 4, 2);
		memcpy(&value, hdr + 6, 2);
		/* Handled, saved, sent, then returned: see struct con_rec. */
		c->handling = true;
		ctrl_handle(c, le32toh(id), le16toh(event), le16toh(value));
		c->handling = false;
		con_rec_save(c);
		ctrl_flush(c);
		vq_push(e, 0);
		pushed = true;
	}
	if (err)
		vdev_vq_error(&c->vdev, vq);
	if (pushed)
		vdev_used(&c->vdev, vq);
	if (!err && vq_more(vq) && con_loop(c))
		ev_idle_start(con_loop(c), &c->more);
}

/* ---- vdev_ops -------------------------------------------------------------------------------- */

static void con_config_read(struct vdev *d, uint32_t off, void *buf, uint32_t len)
{
	struct console *c = con_of(d);
	uint8_t cfg[CONSOLE_CFG_SIZE] = { 0 };
	uint16_t cols = htole16(c->cols), rows = htole16(c->rows);
	uint32_t ports = htole32(c->nports);

	memcpy(cfg + CONSOLE_CFG_COLS, &cols, 2);
	memcpy(cfg + CONSOLE_CFG_ROWS, &rows, 2);
	memcpy(cfg + CONSOLE_CFG_MAX_PORTS, &ports, 4);
	memcpy(buf, cfg + off, len);   /* the transport checked off + len <= CONSOLE_CFG_SIZE */
}

/* Only emerg_wr is writable: its low byte goes out on port 0 as if transmitted. */
static void con_config_write(struct vdev *d, uint32_t off, const void *buf, uint32_t len)
{
	struct console *c = con_of(d);

	(void)len;
	if (off != CONSOLE_CFG_EMERG_WR || !vdev_has(d, VIRTIO_CONSOLE_F_EMERG_WRITE)) {
		vdev_log(d, VDEV_LOG_ACCESS, LOG_WARNING, "%s: config write at %u ignored", d->name,
			 off);
		return;
	}
	c->ports[0].st.emerg++;
	port_output(&c->ports[0], buf, 1);
}

/*
 * The previous instance's record, checked like guest input: ports the guest made ready and
 * opened, and the control messages it has not received (those handed over since the record
 * was written are dropped: see struct con_rec).
 */
/* Indexes within bounds, and every queued message one this device could have sent. */
static bool con_state_ok(const struct console *c, const struct con_state *r)
{
	if (r->ctrl_head >= CON_CTRL_SLOTS || r->ctrl_len > CON_CTRL_SLOTS)
		return false;
	for (unsigned k = 0; k < r->ctrl_len; k++) {
		const struct con_ctrl_msg *m = &r->ctrl[(r->ctrl_head + k) % CON_CTRL_SLOTS];

		if (m->id >= c->nports || m->event > VIRTIO_CONSOLE_PORT_NAME ||
		    m->extra_len > sizeof(m->extra))
			return false;
	}
	return true;
}

static void con_rec_restore(struct console *c)
{
	const struct con_state *r = &c->rec->st[c->rec->cur & 1];
	uint16_t given;

	if (!c->rec->valid)
		return;
	if (!con_state_ok(c, r)) {
		log_warn("%s: the previous instance's port state is not usable: the driver's "
			 "ports start closed", c->vdev.name);
		return;
	}
	c->dev_ready = r->dev_ready != 0;
	for (unsigned i = 0; i < c->nports; i++) {
		c->ports[i].ready = r->ready[i] != 0;
		c->ports[i].guest_open = r->open[i] != 0;
	}
	memcpy(c->ctrl, r->ctrl, sizeof(c->ctrl));
	c->ctrl_head = r->ctrl_head;
	c->ctrl_len = r->ctrl_len;
	given = (uint16_t)(con_ctrl_used(c) - r->ctrl_used);
	if (given > c->ctrl_len)
		given = (uint16_t)c->ctrl_len;
	c->ctrl_head = (c->ctrl_head + given) % CON_CTRL_SLOTS;
	c->ctrl_len -= given;
}

static int con_activate(struct vdev *d)
{
	struct console *c = con_of(d);

	c->multiport = vdev_has(d, VIRTIO_CONSOLE_F_MULTIPORT);
	if (c->restore) {
		c->restore = false;
		con_rec_restore(c);
	}
	con_rec_save(c);
	for (unsigned i = 0; i < c->nports; i++) {
		c->ports[i].rx_paused = false;
		port_update_rx(&c->ports[i]);
	}
	return 0;
}

/* NEEDS_RESET (or a reset follows): input waits in the sockets and the pty, unread. */
static void con_stop(struct vdev *d)
{
	struct console *c = con_of(d);

	if (con_loop(c))
		ev_idle_stop(con_loop(c), &c->more);
	/* The device is no longer active: port_update_rx turns every read watcher off. */
	for (unsigned i = 0; i < c->nports; i++)
		port_update_rx(&c->ports[i]);
}

static void port_reset(struct con_port *p)
{
	if (p->rx_elem)
		vq_drop(p->rx_elem);
	p->rx_elem = NULL;
	p->ready = p->guest_open = p->rx_paused = false;
}

static void con_reset(struct vdev *d)
{
	struct console *c = con_of(d);

	for (unsigned i = 0; i < c->nports; i++)
		port_reset(&c->ports[i]);
	c->multiport = false;
	c->dev_ready = false;
	c->ctrl_head = c->ctrl_len = 0;
	con_rec_save(c);
	con_stop(d);   /* already done if the device ran; a reset before DRIVER_OK needs it too */
}

/*
 * After a restart: output the previous instance had taken may have been written already
 * (console.tx.written: written, not yet returned), so every transmit chain in flight is
 * returned unwritten, never written twice. Receive buffers are used again (bytes being
 * delivered may be lost), control messages from the guest handled again (idempotent).
 */
static bool con_replay(const struct vdev *d, unsigned q)
{
	(void)d;
	return q % 2 == 0 || q == CONSOLE_Q_CTRL_TX;
}

static void con_queue_notify(struct vdev *d, unsigned q)
{
	struct console *c = con_of(d);
	unsigned port = q < 2 ? 0 : q / 2 - 1;

	if (q == CONSOLE_Q_CTRL_RX || q == CONSOLE_Q_CTRL_TX) {
		if (!c->multiport)
			return;     /* control queues exist only with MULTIPORT */
		if (q == CONSOLE_Q_CTRL_RX)
			ctrl_flush(c);
		else
			ctrl_receive(c);
	} else if (!port_exists_for_guest(c, port)) {
		return;     /* a data queue of a port the guest did not negotiate */
	} else if (q == console_rxq(port)) {
		c->ports[port].rx_paused = false;   /* new buffers: read the backends again */
		port_update_rx(&c->ports[port]);
	} else {
		con_tx_all(c);
	}
}

/* ---- create and destroy -------------------------------------------------------------------- */

static void sink_init(struct con_sink *s, struct con_port *p, enum con_sink_kind kind)
{
	s->port = p;
	s->kind = kind;
	s->rfd = s->wfd = -1;
	ev_io_init(&s->rd, sink_rd_cb, -1, EV_READ);
	ev_io_init(&s->wr, sink_wr_cb, -1, EV_WRITE);
}

static void sink_set_fds(struct con_sink *s, int rfd, int wfd)
{
	s->rfd = rfd;
	s->wfd = wfd;
	ev_io_set(&s->rd, rfd, EV_READ);
	ev_io_set(&s->wr, wfd, EV_WRITE);
}

static int port_add_sink(struct con_port *p, enum con_sink_kind kind, size_t ring)
{
	struct con_sink *s = &p->sinks[p->nsinks];

	sink_init(s, p, kind);
	if (con_ring_init(&s->out, ring) < 0)
		return -ENOMEM;
	p->nsinks++;
	return 0;
}

static void port_init(struct console *c, struct con_port *p, unsigned id)
{
	p->con = c;
	p->id = id;
	p->listen_fd = -1;
	con_log_init(&p->log);
}

static int port_open_log(struct con_port *p, const struct config_console *cc)
{
	/* 0 from a caller that filled the section by hand: the parser's default. */
	uint64_t kib = cc->log_max_kib ? cc->log_max_kib : CONFIG_CONSOLE_LOG_MAX_KIB;

	return con_log_open(&p->log, cc->log, kib * 1024, cc->log_keep);
}

/*
 * stdin and stdout as a sink. Both may share one file description (a terminal): every flag is
 * read before any is changed, and destroy restores them in reverse order.
 */
static int con_open_stdio(struct console *c, struct con_sink *s)
{
	for (int fd = 0; fd < 2; fd++) {
		c->stdio_flags[fd] = fcntl(fd, F_GETFL);
		if (c->stdio_flags[fd] < 0)
			return -errno;
	}
	for (int fd = 0; fd < 2; fd++)
		fcntl(fd, F_SETFL, c->stdio_flags[fd] | O_NONBLOCK);
	c->stdio = true;
	sink_set_fds(s, 0, 1);
	return 0;
}

static int con_add_socket(struct console *c, struct con_port *p, const char *path, size_t ring)
{
	int rc = port_add_sink(p, SINK_SOCKET, ring);

	if (rc == 0)
		rc = port_listen(p, path);
	if (rc < 0)
		log_err("%s: port %u: socket %s: %s", c->vdev.name, p->id, path, strerror(-rc));
	return rc;
}

static int con_add_pty(struct console *c, const struct config_console *cc, size_t ring)
{
	struct con_port *p = &c->ports[0];
	int fd = port_add_sink(p, SINK_PTY, ring);

	if (fd == 0)
		fd = con_open_pty(c);
	if (fd < 0) {
		log_err("%s: cannot allocate a pty: %s", c->vdev.name, strerror(-fd));
		return fd;
	}
	sink_set_fds(&p->sinks[p->nsinks - 1], fd, fd);
	log_notice("%s: console on pty %s", c->vdev.name, c->pty_path);
	if (cc->pty_link[0])
		con_link_pty(c, cc->pty_link);
	return 0;
}

static int con_add_stdio(struct console *c, size_t ring)
{
	struct con_port *p = &c->ports[0];
	int rc = port_add_sink(p, SINK_STDIO, ring);

	if (rc == 0)
		rc = con_open_stdio(c, &p->sinks[p->nsinks - 1]);
	if (rc < 0)
		log_err("%s: stdio: %s", c->vdev.name, strerror(-rc));
	return rc;
}

static int con_open_port0(struct console *c, const struct config_console *cc, size_t ring)
{
	struct con_port *p = &c->ports[0];
	int rc = 0;

	if (cc->socket[0])
		rc = con_add_socket(c, p, cc->socket, ring);
	if (rc == 0 && cc->pty)
		rc = con_add_pty(c, cc, ring);
	if (rc == 0 && cc->stdio)
		rc = con_add_stdio(c, ring);
	if (rc == 0 && cc->log[0] && (rc = port_open_log(p, cc)) < 0)
		log_err("%s: log %s: %s", c->vdev.name, cc->log, strerror(-rc));
	return rc;
}

static int con_open_named(struct console *c, const struct config_console_port *cp,
			  unsigned id, size_t ring)
{
	struct con_port *p = &c->ports[id];

	snprintf(p->name, sizeof(p->name), "%s", cp->name);
	return con_add_socket(c, p, cp->socket, ring);
}

static void port_close(struct console *c, struct con_port *p)
{
	struct ev_loop *loop = con_loop(c);

	for (unsigned i = 0; i < p->nsinks; i++) {
		struct con_sink *s = &p->sinks[i];

		if (loop) {
			ev_io_stop(loop, &s->rd);
			ev_io_stop(loop, &s->wr);
		}
		if (s->kind != SINK_STDIO && s->rfd >= 0)
			close(s->rfd);
		con_ring_fini(&s->out);
	}
	if (p->listen_fd >= 0) {
		if (loop)
			ev_io_stop(loop, &p->accept_w);
		close(p->listen_fd);
		/* A next instance takes the listener over (or binds the path again itself). */
		if (!c->vdev.leaving)
			unlink(p->sock_path);
	}
	con_log_close(&p->log);
	p->nsinks = 0;
	p->listen_fd = -1;
	/* A receive buffer still held (a device left to the next instance is not reset first). */
	if (p->rx_elem)
		vq_drop(p->rx_elem);
	p->rx_elem = NULL;
}

static void con_close(struct console *c)
{
	if (con_loop(c)) {
		ev_timer_stop(con_loop(c), &c->tick);
		ev_idle_stop(con_loop(c), &c->more);
	}
	for (unsigned i = 0; i < c->nports; i++)
		port_close(c, &c->ports[i]);
	if (!c->vdev.leaving)
		con_unlink_pty(c);
	if (c->pty_slave >= 0)
		close(c->pty_slave);
	c->pty_slave = -1;
	for (int fd = 1; c->stdio && fd >= 0; fd--)
		fcntl(fd, F_SETFL, c->stdio_flags[fd]);
	c->stdio = false;
}

static int con_open(struct console *c, const struct config_console *cc)
{
	size_t ring = (size_t)cc->ring_kib * 1024;
	int rc;

	if (!con_loop(c) && (cc->socket[0] || cc->pty || cc->stdio || cc->nports)) {
		log_err("%s: interactive backends need an event loop", c->vdev.name);
		return -EINVAL;
	}
	c->nports = 1 + cc->nports;
	for (unsigned i = 0; i < c->nports; i++)
		port_init(c, &c->ports[i], i);
	rc = con_open_port0(c, cc, ring);
	for (unsigned i = 1; rc == 0 && i < c->nports; i++)
		rc = con_open_named(c, &cc->ports[i - 1], i, ring);
	if (rc < 0)
		return rc;
	con_init_size(c, cc);
	/* The tick watches the pty's size and clients that left while input was paused. */
	if (con_loop(c) && (cc->pty || cc->socket[0] || cc->nports))
		ev_timer_start(con_loop(c), &c->tick);
	return 0;
}

static int con_create(struct vdev_host *host, const struct config_device *cfg, struct vdev **out)
{
	struct console *c = calloc(1, sizeof(*c));
	char name[80];
	int rc;

	if (!c)
		return -ENOMEM;
	snprintf(name, sizeof(name), "console %s", cfg->name);
	c->pty_slave = -1;
	ev_timer_init(&c->tick, con_tick_cb, CON_TICK_S, CON_TICK_S);
	ev_idle_init(&c->more, con_more_cb);
	rc = vdev_init(&c->vdev, &vdev_console_ops, host, name,
		       cfg->u.console.nports ? 4 + 2 * cfg->u.console.nports : 2, CON_QUEUE_MAX);
	if (rc < 0) {
		log_err("%s: cannot initialise: %s", name, strerror(-rc));
		free(c);
		return rc;
	}
	c->vdev.host_features = VIRTIO_BIT(VIRTIO_CONSOLE_F_SIZE) |
				VIRTIO_BIT(VIRTIO_CONSOLE_F_EMERG_WRITE);
	if (cfg->u.console.nports)
		c->vdev.host_features |= VIRTIO_BIT(VIRTIO_CONSOLE_F_MULTIPORT);
	c->vdev.config_size = CONSOLE_CFG_SIZE;
	c->cc = cfg->u.console;
	c->rec = vdev_persist(&c->vdev, "ports", sizeof(*c->rec), &c->restore);
	c->restore = c->restore && c->vdev.adopted;
	rc = con_open(c, &cfg->u.console);
	if (rc < 0) {
		con_close(c);
		vdev_fini(&c->vdev);
		free(c);
		return rc;
	}
	*out = &c->vdev;
	return 0;
}

static void con_destroy(struct vdev *d)
{
	struct console *c = con_of(d);

	con_close(c);
	vdev_fini(d);
	free(c);
}

/* ---- reload ------------------------------------------------------------------------------ */

static bool con_ports_same(const struct config_console *a, const struct config_console *b)
{
	if (a->nports != b->nports)
		return false;
	for (unsigned i = 0; i < a->nports; i++)
		if (strcmp(a->ports[i].name, b->ports[i].name) != 0 ||
		    strcmp(a->ports[i].socket, b->ports[i].socket) != 0)
			return false;
	return true;
}

/* Everything but the log file is fixed once the backends are open. */
static bool con_fixed_same(const struct config_console *a, const struct config_console *b)
{
	return strcmp(a->socket, b->socket) == 0 && a->pty == b->pty &&
	       strcmp(a->pty_link, b->pty_link) == 0 && a->stdio == b->stdio &&
	       a->ring_kib == b->ring_kib && a->rows == b->rows && a->cols == b->cols &&
	       con_ports_same(a, b);
}

/*
 * SIGHUP: the log file is opened again (after logrotate moved it away, or at a new path, with
 * the rotation limits as they are now); the other keys take effect only at restart, and a reload
 * that changes them is refused as a whole.
 */
static int con_reconfigure(struct vdev *d, const struct config_device *cfg)
{
	struct console *c = con_of(d);
	struct con_port *p = &c->ports[0];
	const struct config_console *cc = &cfg->u.console;
	int rc;

	if (!con_fixed_same(cc, &c->cc)) {
		log_warn("%s: only the log keys take effect at run time; restart for the others",
			 d->name);
		return -EOPNOTSUPP;
	}
	if (!cc->log[0]) {
		con_log_close(&p->log);
	} else if ((rc = port_open_log(p, cc)) < 0) {
		log_err("%s: log %s: %s", d->name, cc->log, strerror(-rc));
		return rc;
	}
	snprintf(c->cc.log, sizeof(c->cc.log), "%s", cc->log);
	c->cc.log_max_kib = cc->log_max_kib;
	c->cc.log_keep = cc->log_keep;
	return 0;
}

/* ---- the control tool (xen-virtiodctl console) --------------------------------------------- */

static struct con_port *con_port_by_name(struct console *c, const char *port)
{
	if (!port || !port[0])
		return &c->ports[0];
	for (unsigned i = 1; i < c->nports; i++)
		if (strcmp(c->ports[i].name, port) == 0)
			return &c->ports[i];
	return NULL;
}

int console_attach(struct vdev *d, const char *port, int fd)
{
	struct console *c;
	struct con_port *p;
	struct con_sink *s;

	if (!d || d->ops != &vdev_console_ops || !con_loop(con_of(d)))
		return -EINVAL;
	c = con_of(d);
	p = con_port_by_name(c, port);
	if (!p)
		return -ENOENT;
	s = port_socket_sink(p);
	/* A port without a socket gets a socket sink now; at most socket, pty and stdio exist. */
	if (!s && p->nsinks < sizeof(p->sinks) / sizeof(p->sinks[0])) {
		if (port_add_sink(p, SINK_SOCKET, (size_t)c->cc.ring_kib * 1024) < 0)
			return -ENOMEM;
		s = &p->sinks[p->nsinks - 1];
	}
	if (!s)
		return -ENOSPC;
	if (s->rfd >= 0)
		return -EBUSY;
	sink_attach(s, fd);
	/* The tick notices a client that leaves while input is paused. */
	ev_timer_start(con_loop(c), &c->tick);
	return 0;
}

const char *console_port_name(const struct vdev *d, unsigned port)
{
	const struct console *c;

	if (!d || d->ops != &vdev_console_ops)
		return NULL;
	c = container_of(d, const struct console, vdev);
	return port < c->nports ? c->ports[port].name : NULL;
}

/* ---- counters ---------------------------------------------------------------------------- */

int console_get_stats(const struct vdev *d, unsigned port, struct console_stats *st)
{
	const struct console *c;

	if (!d || d->ops != &vdev_console_ops)
		return -EINVAL;
	c = container_of(d, const struct console, vdev);
	if (port >= c->nports)
		return -EINVAL;
	*st = c->ports[port].st;
	return 0;
}

int console_get_ctrl_stats(const struct vdev *d, struct console_ctrl_stats *st)
{
	if (!d || d->ops != &vdev_console_ops)
		return -EINVAL;
	*st = container_of(d, const struct console, vdev)->cst;
	return 0;
}

const struct vdev_ops vdev_console_ops = {
	.type = "console",
	.device_id = VIRTIO_ID_CONSOLE,
	.create = con_create,
	.config_read = con_config_read,
	.config_write = con_config_write,
	.activate = con_activate,
	.stop = con_stop,
	.reset = con_reset,
	.queue_notify = con_queue_notify,
	.reconfigure = con_reconfigure,
	.replay = con_replay,
	.destroy = con_destroy,
};
