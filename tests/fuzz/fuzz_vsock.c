/*
 * libFuzzer target: virtio-vsock guest input. A real virtio-vsock device (devices/vsock.c) with a
 * libev loop behind the real transport on a gmem_flat guest RAM: guest CID 3, at most 8
 * connections of 4 KiB of credit each, its socket in a private temporary directory where host
 * programs listen at PATH_1 and PATH_2 (PATH_3 has nobody). The harness is both the guest and
 * the host programs; each input starts from a reset device and ends with every host socket
 * closed, so nothing carries over. Everything is removed at exit.
 *
 * Input:
 *   [0] bit0 INDIRECT, 1 EVENT_IDX
 *   then operations, [op] with q = (op >> 3) % 3:
 *     0, 1, 2  raw chains and kicks on queue q (fuzz_mq.h)
 *     3        a packet on the transmit queue, built from
 *              [o] op = o & 7; bit3 wrong source CID; bit4 type from the next byte; bit5 len
 *                  field from the next 4 bytes; bit6 header split over two buffers
 *              [type]? [guest port] (+1000) [host port] (0..2: 1..3; else a device port)
 *              [len lo, hi] payload bytes (% 4097, taken from the input) [len]? [flags]
 *              [buf_alloc lo, hi] (<< 4) [fwd_cnt 4 bytes]
 *     4        a host program: [k] k & 3: 0 connects to PATH with "CONNECT <[port] + 1000>\n",
 *              1 writes [len] input bytes on socket [i], 2 shuts socket [i] for writing,
 *              3 closes socket [i]
 *     5        run the loop once (and accept at PATH_1 and PATH_2)
 *     6        reset and bring the device up again
 *     7        [n] (% 4) + 1 receive buffers of [len] (% 256 + 1) * 32 bytes on queue q, kicked
 * At the end every queue is kicked and the loop settles. Any crash, sanitizer report, used
 * length beyond a chain's writable bytes, transmit chain neither returned nor reported with
 * NEEDS_RESET, connection left after the reset or mapping left behind is a bug.
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
#include "devices/vsock.h"
#include "lib/log.h"
#include "tests/fuzz/fuzz_mq.h"

extern const struct vdev_ops vdev_vsock_ops;

#define FZV_NQ     3u
#define FZV_COPY   256u
#define FZV_CID    3u
#define FZV_HOSTS  16u
#define FZV_SETTLE 16u

struct fzv {
	char dir[64];
	char path[96];
	struct fz_mq mq;
	struct vdev *d;
	int listener[2];             /* PATH_1, PATH_2 */
	int host[FZV_HOSTS];         /* the host programs' sockets, either side's connects */
	unsigned nhost;
	uint8_t buf[65536];
};

static struct fzv fzv_state;

static void fzv_cleanup(void)
{
	struct fzv *s = &fzv_state;
	char p[128];

	if (s->d)
		vdev_vsock_ops.destroy(s->d);
	s->d = NULL;
	for (unsigned i = 0; i < 2; i++) {
		if (s->listener[i] >= 0)
			close(s->listener[i]);
		snprintf(p, sizeof(p), "%s_%u", s->path, i + 1);
		unlink(p);
	}
	if (s->dir[0])
		rmdir(s->dir);
}

static int fzv_listen(const char *path)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);

	if (fd < 0 || snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", path) >=
	    (int)sizeof(sa.sun_path) || bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 ||
	    listen(fd, 64) < 0)
		return -1;
	return fd;
}

static struct fzv *fzv_get(void)
{
	struct fzv *s = &fzv_state;
	struct config_device cfg = { .type = DEV_VSOCK, .devid = -1 };
	static bool tried, ok;
	char p[128];

	if (tried)
		return ok ? s : NULL;
	tried = true;
	log_init(getenv("FUZZ_VSOCK_DEBUG") ? LOG_DEBUG : LOG_CRIT, false);
	s->listener[0] = s->listener[1] = -1;
	snprintf(s->dir, sizeof(s->dir), "/tmp/fuzz_vsock.XXXXXX");
	if (!mkdtemp(s->dir)) {
		s->dir[0] = 0;
		return NULL;
	}
	snprintf(s->path, sizeof(s->path), "%s/v", s->dir);
	atexit(fzv_cleanup);
	if (fz_mq_init(&s->mq, FZV_NQ) < 0)
		return NULL;
	for (unsigned i = 0; i < 2; i++) {
		snprintf(p, sizeof(p), "%s_%u", s->path, i + 1);
		if ((s->listener[i] = fzv_listen(p)) < 0)
			return NULL;
	}
	snprintf(cfg.name, sizeof(cfg.name), "v");
	cfg.u.vsock = (struct config_vsock){ .guest_cid = FZV_CID, .max_conns = 8, .buf_kib = 4 };
	snprintf(cfg.u.vsock.socket, sizeof(cfg.u.vsock.socket), "%s", s->path);
	if (vdev_vsock_ops.create(&s->mq.host, &cfg, &s->d) < 0) {
		fprintf(stderr, "fuzz_vsock: cannot set up the device\n");
		return NULL;
	}
	ok = true;
	return s;
}

static void fzv_add_host(struct fzv *s, int fd)
{
	if (fd < 0)
		return;
	if (s->nhost == FZV_HOSTS) {
		close(fd);
		return;
	}
	s->host[s->nhost++] = fd;
}

static void fzv_accept(struct fzv *s)
{
	for (unsigned i = 0; i < 2; i++)
		for (int fd; (fd = accept4(s->listener[i], NULL, NULL,
					   SOCK_NONBLOCK | SOCK_CLOEXEC)) >= 0;)
			fzv_add_host(s, fd);
}

static void fzv_close_hosts(struct fzv *s)
{
	for (unsigned i = 0; i < s->nhost; i++)
		close(s->host[i]);
	s->nhost = 0;
}

static void fzv_packet(struct fzv *s, struct fz_in *in)
{
	struct fz_mq_q *r = &s->mq.q[VSOCK_Q_TX];
	static uint8_t wire[VSOCK_HDR_LEN + 4096];
	unsigned o = fz_take(in, 1);
	struct vsock_hdr h = { .src_cid = o & 8 ? FZV_CID + 1 : FZV_CID,
			       .dst_cid = VSOCK_CID_HOST, .op = (uint16_t)(o & 7),
			       .type = VSOCK_TYPE_STREAM };
	uint32_t n, hp;
	uint16_t head = r->slot;
	struct fz_in src;

	if (o & 16)
		h.type = (uint16_t)fz_take(in, 1);
	h.src_port = 1000 + fz_take(in, 1);
	hp = fz_take(in, 1);
	h.dst_port = hp < 3 ? hp + 1 : VSOCK_LOCAL_PORT_BASE + (hp & 7);
	n = fz_take(in, 2) % 4097;
	if (o & 32)
		h.len = fz_take(in, 4);
	h.flags = fz_take(in, 1);
	h.buf_alloc = fz_take(in, 2) << 4;
	h.fwd_cnt = fz_take(in, 4);
	n = n < in->left ? n : (uint32_t)in->left;   /* the payload: what the input still has */
	if (!(o & 32))
		h.len = n;
	vsock_hdr_put(wire, &h);
	memcpy(wire + VSOCK_HDR_LEN, in->p, n);
	in->p += n;
	in->left -= n;
	if (r->slot + 2 > FZ_MQ_QN)
		return;
	if (o & 64) {
		src = (struct fz_in){ wire, 20 };
		if (!fz_mq_desc(&s->mq, r, 0, 20, true, &src, 20))
			return;
		src = (struct fz_in){ wire + 20, VSOCK_HDR_LEN - 20 + n };
		if (!fz_mq_desc(&s->mq, r, 0, VSOCK_HDR_LEN - 20 + n, false, &src, sizeof(wire)))
			return;
	} else {
		src = (struct fz_in){ wire, VSOCK_HDR_LEN + n };
		if (!fz_mq_desc(&s->mq, r, 0, VSOCK_HDR_LEN + n, false, &src, sizeof(wire)))
			return;
	}
	fz_mq_publish(r, head, 0);
	fz_wr(s->d, 0x050, VSOCK_Q_TX);
}

static void fzv_host(struct fzv *s, struct fz_in *in)
{
	unsigned k = fz_take(in, 1) & 3;
	char line[32];

	if (k == 0) {
		struct sockaddr_un sa = { .sun_family = AF_UNIX };
		int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
		int len = snprintf(line, sizeof(line), "CONNECT %u\n", 1000 + fz_take(in, 1));

		snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", s->path);
		if (fd >= 0 && connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0 &&
		    send(fd, line, (size_t)len, MSG_NOSIGNAL) == len) {
			fzv_add_host(s, fd);
			return;
		}
		if (fd >= 0)
			close(fd);
		return;
	}
	unsigned i = fz_take(in, 1);
	size_t len = k == 1 ? fz_take(in, 1) : 0;

	len = len < in->left ? len : in->left;
	if (s->nhost) {
		unsigned at = i % s->nhost;
		int fd = s->host[at];

		if (k == 1 && send(fd, in->p, len, MSG_DONTWAIT | MSG_NOSIGNAL) < 0)
			errno = 0;
		else if (k == 2)
			shutdown(fd, SHUT_WR);
		else if (k == 3) {
			close(fd);
			s->nhost--;
			s->host[at] = s->host[s->nhost];
		}
	}
	in->p += len;
	in->left -= len;
}

/* Receive (or event) buffers: one writable descriptor each. */
static void fzv_buffers(struct fzv *s, unsigned q, struct fz_in *in)
{
	struct fz_mq_q *r = &s->mq.q[q];
	unsigned n = fz_take(in, 1) % 4 + 1;
	uint32_t len = (fz_take(in, 1) % 256 + 1) * 32;

	for (unsigned i = 0; i < n && r->slot < FZ_MQ_QN; i++) {
		uint16_t head = r->slot;

		if (!fz_mq_desc(&s->mq, r, 1, len, false, in, 0))
			break;
		fz_mq_publish(r, head, len);
	}
	fz_wr(s->d, 0x050, q);
}

/* The loop runs, host programs take what the device sent them. */
static void fzv_settle(struct fzv *s)
{
	for (unsigned i = 0; i < FZV_SETTLE; i++) {
		ev_run(s->mq.loop, EVRUN_NOWAIT);
		fzv_accept(s);
		for (unsigned h = 0; h < s->nhost; h++)
			while (recv(s->host[h], s->buf, sizeof(s->buf), MSG_DONTWAIT) > 0)
				;
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct fzv *s = fzv_get();
	struct fz_in in = { data, size };
	struct vsock_stats st;

	if (!s || size < 1)
		return 0;
	unsigned f = fz_take(&in, 1);
	uint64_t want = (f & 1 ? VIRTIO_BIT(VIRTIO_F_INDIRECT_DESC) : 0) |
			(f & 2 ? VIRTIO_BIT(VIRTIO_F_EVENT_IDX) : 0);

	if (fz_mq_bring_up(&s->mq, s->d, want, FZV_NQ) < 0)
		abort();
	while (in.left) {
		unsigned op = fz_take(&in, 1);

		if (fz_mq_ring_op(&s->mq, s->d, op, &in, FZV_COPY))
			continue;
		switch (op & 7) {
		case 3:
			fzv_packet(s, &in);
			break;
		case 4:
			fzv_host(s, &in);
			break;
		case 5:
			ev_run(s->mq.loop, EVRUN_NOWAIT);
			fzv_accept(s);
			break;
		case 6:
			if (fz_mq_bring_up(&s->mq, s->d, want, FZV_NQ) < 0)
				abort();
			break;
		default:
			fzv_buffers(s, (op >> 3) % FZV_NQ, &in);
			break;
		}
	}
	fz_mq_kick_all(&s->mq, s->d);
	fzv_settle(s);
	fz_mq_check(&s->mq, s->d, 1u << VSOCK_Q_TX);
	if (getenv("FUZZ_VSOCK_DEBUG")) {
		vsock_get_stats(s->d, &st);
		fprintf(stderr, "fuzz_vsock: %zu bytes: status 0x%x, opened %lu, rst %lu, bad %lu, "
			"credit %lu\n", size, vdev_status(s->d), (unsigned long)st.opened,
			(unsigned long)st.rst_sent, (unsigned long)st.bad_packets,
			(unsigned long)st.credit_violations);
	}
	vmmio_reset(s->d);
	fzv_settle(s);
	fzv_close_hosts(s);
	if (vsock_get_stats(s->d, &st) < 0 || st.conns != 0)
		abort();
	fz_check_unmapped(s->mq.gm);
	return 0;
}
