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
#include "tests/fuzz/fuzz_blk_i2c_chains.h"

extern const struct vdev_ops vdev_console_ops;

#define FZC_QN     64u                     /* queue size */
#define FZC_NQ     8u                      /* queues with two named ports and MULTIPORT */
#define FZC_QAREA  0x1000u                 /* per queue: desc +0, avail +0x400, used +0x800 */
#define FZC_DATA   (FZ_RAM_GPA + FZC_NQ * FZC_QAREA)
#define FZC_COPY   256u
#define FZC_PORTS  3u
#define FZC_SETTLE 16u

static void raise_irq(struct vdev_host *host, struct vdev *dev)
{
	(void)host;
	(void)dev;
}

struct fzc_q {
	struct vring_desc *desc;
	struct vring_avail *avail;
	struct vring_used *used;
	uint16_t slot, published;
	uint32_t wcap[FZC_QN];       /* per head: writable bytes of the chain */
};

struct fzc_dev {
	struct vdev *d;
	unsigned nports;
	char sock[FZC_PORTS][108];
	int client[FZC_PORTS];       /* our end of each socket */
	int server[FZC_PORTS];       /* the device's end (found after the accept) */
};

struct fzc {
	char dir[64];
	struct gmem *gm;
	struct ev_loop *loop;
	struct vdev_host host;
	struct fzc_dev dev[2];
	struct fzc_q q[FZC_NQ];
	unsigned nq;
	uint64_t next;               /* data allocation cursor */
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
	if (vdev_console_ops.create(&s->host, &cfg, &x->d) < 0)
		return -1;
	for (unsigned i = 0; i < x->nports; i++)
		if ((x->client[i] = fzc_connect(x->sock[i])) < 0)
			return -1;
	for (unsigned i = 0; i < 8; i++)
		ev_run(s->loop, EVRUN_NOWAIT);     /* the device accepts */
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
	s->gm = gmem_flat_new(FZ_RAM_GPA, FZ_RAM_SIZE);
	s->loop = ev_loop_new(EVFLAG_AUTO);
	if (!s->gm || !s->loop)
		return NULL;
	gmem_flat_set_readonly(s->gm, FZ_RO_PAGE, 0x1000);
	gmem_flat_add_hole(s->gm, FZ_HOLE, 0x1000);
	s->host = (struct vdev_host){ .loop = s->loop, .gm = s->gm, .guest_name = "fuzz",
				      .raise_irq = raise_irq };
	if (fzc_dev_open(s, &s->dev[0], 0, 0) < 0 || fzc_dev_open(s, &s->dev[1], 1, 2) < 0) {
		fprintf(stderr, "fuzz_console: cannot set up the devices\n");
		return NULL;
	}
	ok = true;
	return s;
}

/* Reset, negotiate, set up nq queues of FZC_QN at fixed places, DRIVER_OK. */
static int fzc_bring_up(struct fzc *s, struct vdev *d, uint64_t want, unsigned nq)
{
	uint8_t *ram = gmem_flat_host(s->gm, FZ_RAM_GPA);

	vmmio_reset(d);
	/* What the last input can have touched: the rings and the data allocated so far. */
	memset(ram, 0, s->next ? s->next - FZ_RAM_GPA : FZ_RAM_SIZE);
	if (fz_negotiate(d, want) < 0)
		return -1;
	for (unsigned q = 0; q < nq; q++) {
		uint64_t base = FZ_RAM_GPA + q * FZC_QAREA;
		uint8_t *h = ram + q * FZC_QAREA;

		fz_queue_setup(d, q, FZC_QN, base, base + 0x400, base + 0x800);
		s->q[q] = (struct fzc_q){ .desc = (struct vring_desc *)(void *)h,
					  .avail = (struct vring_avail *)(void *)(h + 0x400),
					  .used = (struct vring_used *)(void *)(h + 0x800) };
	}
	fz_wr(d, 0x070, 0xf);
	if (vmmio_read(d, 0x070, 4) != 0xf)
		return -1;
	s->nq = nq;
	s->next = FZC_DATA;
	return 0;
}

/* A buffer address for a placement, from our own cursor. */
static uint64_t fzc_place(struct fzc *s, unsigned placement, uint32_t len)
{
	return fz_place_at(&s->next, placement, len);
}

/* Add one descriptor to queue q's next slot; false when the chain cannot go on. */
static bool fzc_desc(struct fzc *s, struct fzc_q *r, unsigned kind, uint32_t len, bool more,
		     struct fz_in *in, size_t copy_max)
{
	uint64_t a = fzc_place(s, (kind >> 1) & 3, len);
	uint8_t *h = a && a < FZ_RO_PAGE ? gmem_flat_host(s->gm, a) : NULL;

	if (!a)
		return false;
	if (h && !(kind & 1)) {
		size_t c = len < in->left ? len : in->left;

		c = c < copy_max ? c : copy_max;
		memcpy(h, in->p, c);
		in->p += c;
		in->left -= c;
	}
	r->desc[r->slot] = (struct vring_desc){
		.addr = a, .len = len,
		.flags = (uint16_t)((kind & 1 ? VRING_DESC_F_WRITE : 0) | (more ? VRING_DESC_F_NEXT : 0)),
		.next = (uint16_t)(r->slot + 1) };
	r->slot++;
	return true;
}

static void fzc_publish(struct fzc_q *r, uint16_t head, uint32_t wcap)
{
	r->wcap[head] = wcap;
	r->avail->ring[r->published % FZC_QN] = head;
	r->published++;
	__atomic_store_n(&r->avail->idx, r->published, __ATOMIC_RELEASE);
}

/* One chain on queue q from the input, published (not kicked). */
static void fzc_chain(struct fzc *s, unsigned q, struct fz_in *in)
{
	struct fzc_q *r = &s->q[q];
	unsigned n = 1 + fz_take(in, 1) % FZ_BUFS;
	uint16_t head = r->slot;
	uint32_t wcap = 0;

	if (r->slot + n > FZC_QN)
		return;
	for (unsigned k = 0; k < n; k++) {
		unsigned kind = fz_take(in, 1);
		uint32_t len = kind & 8 ? fz_take(in, 2) % (FZ_BUF_MAX + 1) : 1 + (kind >> 4);

		if (!fzc_desc(s, r, kind, len, k + 1 < n, in, FZC_COPY))
			return;     /* nothing published: the slots are reused */
		if (kind & 1)
			wcap += len;
	}
	fzc_publish(r, head, wcap);
}

/* A control message on c_ovq: 8-byte header and a tail, split over nbuf readable buffers. */
static void fzc_ctrl(struct fzc *s, struct vdev *d, unsigned nbuf, struct fz_in *in)
{
	struct fzc_q *r = &s->q[CONSOLE_Q_CTRL_TX];
	uint8_t msg[CONSOLE_CTRL_HDR + 32];
	unsigned id = fz_take(in, 1), event = fz_take(in, 1), value = fz_take(in, 2);
	unsigned extra = fz_take(in, 1) % 32, len = CONSOLE_CTRL_HDR + extra;
	uint32_t id32 = htole32(id == 0xff ? UINT32_MAX : id);
	uint16_t ev16 = htole16((uint16_t)event), val16 = htole16((uint16_t)value);
	uint16_t head = r->slot;
	unsigned off = 0;

	if (s->nq <= CONSOLE_Q_CTRL_TX || r->slot + nbuf > FZC_QN)
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

		if (!fzc_desc(s, r, 0, part, k + 1 < nbuf, &src, part))
			return;
		off += part;
	}
	fzc_publish(r, head, 0);
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
		ev_run(s->loop, EVRUN_NOWAIT);
		for (unsigned p = 0; p < x->nports; p++)
			while (recv(x->client[p], s->buf, sizeof(s->buf), MSG_DONTWAIT) > 0)
				;
	}
}

/* Transmit chains of serving queues came back; no used length beyond the chain. */
static void fzc_check(struct fzc *s, struct vdev *d)
{
	bool dead = vdev_status(d) & VIRTIO_STATUS_NEEDS_RESET;

	for (unsigned q = 0; q < s->nq; q++) {
		struct fzc_q *r = &s->q[q];
		uint16_t used = __atomic_load_n(&r->used->idx, __ATOMIC_ACQUIRE);

		if (used > r->published)
			abort();
		if (q % 2 == 1 && !dead && used != r->published)
			abort();
		for (uint16_t i = 0; i < used; i++) {
			struct vring_used_elem *u = &r->used->ring[i % FZC_QN];

			if (u->id >= FZC_QN || u->len > r->wcap[u->id])
				abort();
		}
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

	if (fzc_bring_up(s, d, want, nq) < 0)
		abort();
	while (in.left) {
		unsigned op = fz_take(&in, 1), q = (op >> 3) % s->nq;

		switch (op & 7) {
		case 0:
		case 1:
			fzc_chain(s, q, &in);
			if (op & 1)
				fz_wr(d, 0x050, q);
			break;
		case 2:
			fz_wr(d, 0x050, q);
			break;
		case 3: {
			unsigned off = fz_take(&in, 1) % 16, sz = sizes[fz_take(&in, 1) & 3];

			vmmio_write(d, 0x100 + off, sz, fz_take(&in, 4));
			break;
		}
		case 4:
			fzc_host_input(x, (op >> 3) % x->nports, &in);
			break;
		case 5:
			ev_run(s->loop, EVRUN_NOWAIT);
			break;
		case 6:
			if (fzc_bring_up(s, d, want, nq) < 0)
				abort();
			break;
		default:
			fzc_ctrl(s, d, 1 + (op >> 3) % 3, &in);
			break;
		}
	}
	for (unsigned q = 0; q < s->nq; q++)
		fz_wr(d, 0x050, q);
	fzc_settle(s, x);
	fzc_check(s, d);
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
	if (gmem_flat_outstanding(s->gm) != 0 || gmem_flat_bad_unmaps(s->gm) != 0)
		abort();
	return 0;
}
