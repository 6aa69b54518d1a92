/*
 * libFuzzer target: virtio-console guest input. Real virtio-console devices (devices/console.c)
 * with a libev loop behind the real transport on a gmem_flat guest RAM: one with port 0 only
 * (socket and a log file, /dev/null), one with port 0 and two named ports (MULTIPORT offered),
 * sockets in a private temporary directory, 1 KiB output rings. A client stays connected to
 * every socket; after each input the harness drains both ends of every connection, so nothing
 * carries over. Everything is removed at exit.
 *
 * Input:
 *   [0] bit0 INDIRECT, 1 EVENT_IDX, 2 the device with named ports, 3 MULTIPORT, 4 EMERG_WRITE,
 *       5 SIZE
 *   then operations, [op] with q = (op >> 3) % queues (2, or 8 with MULTIPORT):
 *     0, 1  a chain on queue q (op 1 also kicks it): the chain encoding of
 *           fuzz_blk_i2c_chains.h, readable buffers taking at most FZC_COPY input bytes
 *     2     kick queue q
 *     3     config write: [off] (% 16), [size] 1/2/4/8, [4 bytes value] (EMERG_WRITE at 8)
 *     4     host input: [len] bytes from the input to the client of port (op >> 3) % ports
 *     5     run the loop once
 *     6     reset and bring the device up again (same features)
 *     7     a control message on c_ovq (queue 3, kicked): [id] (0xff: 0xffffffff, else the byte),
 *           [event], [value lo, value hi], [extra] (% 32 bytes of PORT_NAME-like tail from the
 *           input), split over 1 + (op >> 3) % 3 readable buffers
 * At the end every queue is kicked and the loop settles. Any crash, sanitizer report, used
 * length beyond the chain's writable bytes, transmit chain of a serving queue neither returned
 * nor reported with NEEDS_RESET, or mapping left behind after the reset is a bug.
 */
#include <errno.h>
#include <ev.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "config/config.h"
#include "devices/console.h"
#include "lib/log.h"
#include "tests/fuzz/fuzz_mq.h"

extern const struct vdev_ops vdev_console_ops;

#define FZC_NQ     8u                      /* queues with two named ports and MULTIPORT */
#define FZC_COPY   256u
#define FZC_PORTS  3u
#define FZC_SETTLE 16u

struct fzc_dev {
	struct vdev *d;
	unsigned nports;
	char sock[FZC_PORTS][108];
	int client[FZC_PORTS];       /* our end of each socket */
	int server[FZC_PORTS];       /* the device's end (found after the accept) */
};

struct fzc {
	char dir[64];
	struct fz_mq mq;             /* RAM, loop, host and the queues */
	struct fzc_dev dev[2];
	uint8_t buf[65536];
};

static struct fzc fzc_state;

static int fzc_connect(const char *path)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);

	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", path);
	if (fd >= 0 && connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		close(fd);
		return -1;
	}
	return fd;
}

/* The device's end of the connection to path: an accepted (not listening) socket named path. */
static int fzc_find_server(const char *path, const struct fzc_dev *x)
{
	for (int fd = 3; fd < 1024; fd++) {
		struct sockaddr_un sa;
		socklen_t len = sizeof(sa);
		int acc = 1;
		socklen_t alen = sizeof(acc);
		bool ours = false;

		for (unsigned i = 0; i < FZC_PORTS; i++)
			ours |= fd == x->client[i];
		if (ours || getsockname(fd, (struct sockaddr *)&sa, &len) < 0 ||
		    sa.sun_family != AF_UNIX || len <= offsetof(struct sockaddr_un, sun_path) ||
		    strcmp(sa.sun_path, path) != 0 ||
		    getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &acc, &alen) < 0 || acc)
			continue;
		return fd;
	}
	return -1;
}

static void fzc_cleanup(void)
{
	struct fzc *s = &fzc_state;

	for (unsigned k = 0; k < 2; k++) {
		struct fzc_dev *x = &s->dev[k];

		if (x->d)
			vdev_console_ops.destroy(x->d);
		for (unsigned i = 0; i < FZC_PORTS; i++)
			if (x->client[i] >= 0)
				close(x->client[i]);
		x->d = NULL;
	}
	if (s->dir[0])
		rmdir(s->dir);
}

static int fzc_dev_open(struct fzc *s, struct fzc_dev *x, unsigned k, unsigned named)
{
	struct config_device cfg = { .type = DEV_CONSOLE, .devid = -1 };
	struct config_console *cc = &cfg.u.console;

	snprintf(cfg.name, sizeof(cfg.name), "hvc%u", k);
	cc->ring_kib = 1;
	snprintf(cc->log, sizeof(cc->log), "/dev/null");
	x->nports = 1 + named;
	for (unsigned i = 0; i < x->nports; i++)
		snprintf(x->sock[i], sizeof(x->sock[i]), "%s/d%u.p%u", s->dir, k, i);
	snprintf(cc->socket, sizeof(cc->socket), "%s", x->sock[0]);
	cc->nports = named;
	for (unsigned i = 0; i < named; i++) {
		snprintf(cc->ports[i].name, sizeof(cc->ports[i].name), "port%u", i + 1);
		snprintf(cc->ports[i].socket, sizeof(cc->ports[i].socket), "%s", x->sock[i + 1]);
	}
	if (vdev_console_ops.create(&s->mq.host, &cfg, &x->d) < 0)
		return -1;
	for (unsigned i = 0; i < x->nports; i++)
		if ((x->client[i] = fzc_connect(x->sock[i])) < 0)
			return -1;
	for (unsigned i = 0; i < 8; i++)
		ev_run(s->mq.loop, EVRUN_NOWAIT);     /* the device accepts */
	for (unsigned i = 0; i < x->nports; i++)
		if ((x->server[i] = fzc_find_server(x->sock[i], x)) < 0)
			return -1;
	return 0;
}

static struct fzc *fzc_get(void)
{
	struct fzc *s = &fzc_state;
	static bool tried, ok;

	if (tried)
		return ok ? s : NULL;
	tried = true;
	log_init(getenv("FUZZ_CONSOLE_DEBUG") ? LOG_DEBUG : LOG_CRIT, false);
	for (unsigned k = 0; k < 2; k++)
		for (unsigned i = 0; i < FZC_PORTS; i++)
			s->dev[k].client[i] = s->dev[k].server[i] = -1;
	snprintf(s->dir, sizeof(s->dir), "/tmp/fuzz_console.XXXXXX");
	if (!mkdtemp(s->dir)) {
		s->dir[0] = 0;
		return NULL;
	}
	atexit(fzc_cleanup);
	if (fz_mq_init(&s->mq, FZC_NQ) < 0)
		return NULL;
	if (fzc_dev_open(s, &s->dev[0], 0, 0) < 0 || fzc_dev_open(s, &s->dev[1], 1, 2) < 0) {
		fprintf(stderr, "fuzz_console: cannot set up the devices\n");
		return NULL;
	}
	ok = true;
	return s;
}

/* A control message on c_ovq: 8-byte header and a tail, split over nbuf readable buffers. */
static void fzc_ctrl(struct fzc *s, struct vdev *d, unsigned nbuf, struct fz_in *in)
{
	struct fz_mq_q *r = &s->mq.q[CONSOLE_Q_CTRL_TX];
	uint8_t msg[CONSOLE_CTRL_HDR + 32];
	unsigned id = fz_take(in, 1), event = fz_take(in, 1), value = fz_take(in, 2);
	unsigned extra = fz_take(in, 1) % 32, len = CONSOLE_CTRL_HDR + extra;
	uint32_t id32 = htole32(id == 0xff ? UINT32_MAX : id);
	uint16_t ev16 = htole16((uint16_t)event), val16 = htole16((uint16_t)value);
	uint16_t head = r->slot;
	unsigned off = 0;

	if (s->mq.nq <= CONSOLE_Q_CTRL_TX || r->slot + nbuf > FZ_MQ_QN)
		return;
	memcpy(msg, &id32, 4);
	memcpy(msg + 4, &ev16, 2);
	memcpy(msg + 6, &val16, 2);
	memset(msg + CONSOLE_CTRL_HDR, 0, extra);
	for (unsigned i = 0; i < extra && in->left; i++)
		msg[CONSOLE_CTRL_HDR + i] = (uint8_t)fz_take(in, 1);
	for (unsigned k = 0; k < nbuf; k++) {
		unsigned part = k + 1 < nbuf ? len / nbuf : len - off;
		struct fz_in src = { msg + off, part };

		if (!fz_mq_desc(&s->mq, r, 0, part, k + 1 < nbuf, &src, part))
			return;
		off += part;
	}
	fz_mq_publish(r, head, 0);
	fz_wr(d, 0x050, CONSOLE_Q_CTRL_TX);
}

static void fzc_host_input(struct fzc_dev *x, unsigned port, struct fz_in *in)
{
	size_t len = fz_take(in, 1);

	len = len < in->left ? len : in->left;
	if (port < x->nports && x->client[port] >= 0) {
		ssize_t w = send(x->client[port], in->p, len, MSG_DONTWAIT | MSG_NOSIGNAL);

		(void)w;
	}
	in->p += len;
	in->left -= len;
}

/* Both ends of every connection emptied: the next input starts from the same place. */
static void fzc_drain(struct fzc *s, struct fzc_dev *x)
{
	for (unsigned i = 0; i < x->nports; i++) {
		while (recv(x->client[i], s->buf, sizeof(s->buf), MSG_DONTWAIT) > 0)
			;
		while (recv(x->server[i], s->buf, sizeof(s->buf), MSG_DONTWAIT) > 0)
			;
	}
}

static void fzc_settle(struct fzc *s, struct fzc_dev *x)
{
	for (unsigned i = 0; i < FZC_SETTLE; i++) {
		ev_run(s->mq.loop, EVRUN_NOWAIT);
		for (unsigned p = 0; p < x->nports; p++)
			while (recv(x->client[p], s->buf, sizeof(s->buf), MSG_DONTWAIT) > 0)
				;
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct fzc *s = fzc_get();
	struct fz_in in = { data, size };
	static const unsigned sizes[4] = { 1, 2, 4, 8 };

	if (!s || size < 1)
		return 0;
	unsigned f = fz_take(&in, 1);
	struct fzc_dev *x = &s->dev[(f >> 2) & 1];
	struct vdev *d = x->d;
	uint64_t want = (f & 1 ? VIRTIO_BIT(VIRTIO_F_INDIRECT_DESC) : 0) |
			(f & 2 ? VIRTIO_BIT(VIRTIO_F_EVENT_IDX) : 0) |
			(f & 8 ? VIRTIO_BIT(VIRTIO_CONSOLE_F_MULTIPORT) : 0) |
			(f & 16 ? VIRTIO_BIT(VIRTIO_CONSOLE_F_EMERG_WRITE) : 0) |
			(f & 32 ? VIRTIO_BIT(VIRTIO_CONSOLE_F_SIZE) : 0);
	unsigned nq = x->nports > 1 && (f & 8) ? FZC_NQ : 2;

	if (fz_mq_bring_up(&s->mq, d, want, nq) < 0)
		abort();
	while (in.left) {
		unsigned op = fz_take(&in, 1);

		if (fz_mq_ring_op(&s->mq, d, op, &in, FZC_COPY))
			continue;
		switch (op & 7) {
		case 3: {
			unsigned off = fz_take(&in, 1) % 16, sz = sizes[fz_take(&in, 1) & 3];

			vmmio_write(d, 0x100 + off, sz, fz_take(&in, 4));
			break;
		}
		case 4:
			fzc_host_input(x, (op >> 3) % x->nports, &in);
			break;
		case 5:
			ev_run(s->mq.loop, EVRUN_NOWAIT);
			break;
		case 6:
			if (fz_mq_bring_up(&s->mq, d, want, nq) < 0)
				abort();
			break;
		default:
			fzc_ctrl(s, d, 1 + (op >> 3) % 3, &in);
			break;
		}
	}
	fz_mq_kick_all(&s->mq, d);
	fzc_settle(s, x);
	fz_mq_check(&s->mq, d, 0xaa);     /* the transmit queues: 1, 3, 5, 7 */
	if (getenv("FUZZ_CONSOLE_DEBUG")) {
		struct console_ctrl_stats cs;

		console_get_ctrl_stats(d, &cs);
		fprintf(stderr, "fuzz_console: input of %zu bytes: status 0x%x, control %lu bad",
			size, vdev_status(d), (unsigned long)cs.bad);
		for (unsigned p = 0; p < x->nports; p++) {
			struct console_stats st;

			console_get_stats(d, p, &st);
			fprintf(stderr, "; port %u: to guest %lu, from guest %lu, emerg %lu", p,
				(unsigned long)st.to_guest, (unsigned long)st.from_guest,
				(unsigned long)st.emerg);
		}
		fprintf(stderr, "\n");
	}
	vmmio_reset(d);
	fzc_settle(s, x);
	fzc_drain(s, x);
	fz_check_unmapped(s->mq.gm);
	return 0;
}
