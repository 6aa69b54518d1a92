/*
 * virtio-vsock through the real transport and a real libev loop: the guest side is the test
 * driver speaking the packet protocol, the host side real unix sockets in a temp directory
 * (listeners at PATH_P for the guest's connects, clients of PATH for the host's).
 */
#include <endian.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>
#include <ev.h>

#include "devices/virtio_mmio.h"
#include "devices/vsock.h"
#include "tests/lib/gmem_flat.h"
#include "tests/lib/unix_sock.h"
#include "tests/lib/vdriver.h"
#include "tests/lib/vdriver_direct.h"

#define RAM_GPA   UINT64_C(0x40000000)
#define RAM_SIZE  (16u << 20)
#define WAIT_MS   3000
#define CID       42u
#define NRX       32
#define RXLEN     (VSOCK_HDR_LEN + 4096u)
#define NEVT      4
#define TXMAX     (64u << 10)
#define GUEST_BUF (64u << 10)      /* the guest's buf_alloc unless a test says otherwise */
#define FEATURES  (VIRTIO_BIT(VIRTIO_F_VERSION_1) | VIRTIO_BIT(VIRTIO_F_EVENT_IDX))

struct rig {
	struct vdrv_direct x;
	struct vdrv drv;
	struct ev_loop *loop;
	struct config_device cfg;
	char dir[64];
	char path[96];
	uint64_t rx_gpa[NRX], evt_gpa[NEVT], tx_gpa;
	uint8_t *rx_host[NRX], *evt_host[NEVT], *tx_host;
	bool rx_posted;
	bool open;
	uint32_t guest_fwd;          /* fwd_cnt the guest reports (tests that count it) */
	uint32_t guest_buf;
};

struct pkt {
	struct vsock_hdr h;
	uint8_t data[4096];
};

/* ---- rig ----------------------------------------------------------------------------------- */

static int setup(void **state)
{
	static struct rig r;

	memset(&r, 0, sizeof(r));
	snprintf(r.dir, sizeof(r.dir), "/tmp/test_vsock.XXXXXX");
	assert_non_null(mkdtemp(r.dir));
	snprintf(r.path, sizeof(r.path), "%s/v.sock", r.dir);
	r.cfg = (struct config_device){ .type = DEV_VSOCK, .devid = -1 };
	snprintf(r.cfg.name, sizeof(r.cfg.name), "v0");
	r.cfg.u.vsock.guest_cid = CID;
	r.cfg.u.vsock.max_conns = 64;
	r.cfg.u.vsock.buf_kib = 256;
	snprintf(r.cfg.u.vsock.socket, sizeof(r.cfg.u.vsock.socket), "%s", r.path);
	r.guest_buf = GUEST_BUF;
	*state = &r;
	return 0;
}

static void rx_post(struct rig *r, unsigned i)
{
	struct vdrv_buf b = { r->rx_gpa[i], RXLEN, true };

	assert_true(vdrv_submit(&r->drv, VSOCK_Q_RX, &b, 1, false, (void *)(uintptr_t)(i + 1)) >= 0);
}

static void rx_post_all(struct rig *r)
{
	for (unsigned i = 0; i < NRX; i++)
		rx_post(r, i);
	vdrv_kick(&r->drv, VSOCK_Q_RX);
	r->rx_posted = true;
}

static void evt_post_all(struct rig *r)
{
	for (unsigned i = 0; i < NEVT; i++) {
		struct vdrv_buf b = { r->evt_gpa[i], 8, true };

		memset(r->evt_host[i], 0xee, 8);
		assert_true(vdrv_submit(&r->drv, VSOCK_Q_EVENT, &b, 1, false,
					(void *)(uintptr_t)(i + 1)) >= 0);
	}
	vdrv_kick(&r->drv, VSOCK_Q_EVENT);
}

static void rig_init_driver(struct rig *r, bool post_rx)
{
	assert_int_equal(vdrv_init(&r->drv, &r->x.io, &r->x.mem, FEATURES, 3, 64), 0);
	if (post_rx)
		rx_post_all(r);
	evt_post_all(r);
}

/* The guest's buffers, then the driver up; the device exists. */
static void rig_up(struct rig *r, bool post_rx)
{
	for (unsigned i = 0; i < NRX; i++)
		r->rx_gpa[i] = vdrv_alloc(&r->x.mem, RXLEN, 16, (void **)&r->rx_host[i]);
	for (unsigned i = 0; i < NEVT; i++)
		r->evt_gpa[i] = vdrv_alloc(&r->x.mem, 8, 8, (void **)&r->evt_host[i]);
	r->tx_gpa = vdrv_alloc(&r->x.mem, VSOCK_HDR_LEN + TXMAX, 16, (void **)&r->tx_host);
	assert_true(r->tx_gpa != 0);
	rig_init_driver(r, post_rx);
	r->open = true;
}

static void rig_start_opts(struct rig *r, bool post_rx)
{
	r->loop = ev_loop_new(EVFLAG_AUTO);
	assert_non_null(r->loop);
	assert_int_equal(vdrv_direct_open(&r->x, &r->cfg, RAM_GPA, RAM_SIZE, r->loop), 0);
	rig_up(r, post_rx);
}

static void rig_start(struct rig *r)
{
	rig_start_opts(r, true);
}

/* Memory that outlives "the process": named regions, handed back when adopting. */
struct mem_persist {
	struct persist p;
	bool adopting;
	unsigned n;
	struct { char name[128]; size_t size; void *mem; } r[32];
};

static void *mem_region(struct persist *pp, const char *name, size_t size, bool *adopted)
{
	struct mem_persist *m = (struct mem_persist *)pp;

	for (unsigned i = 0; i < m->n; i++)
		if (strcmp(m->r[i].name, name) == 0 && m->r[i].size == size) {
			*adopted = m->adopting;
			return m->r[i].mem;
		}
	if (m->n == 32)
		return NULL;
	snprintf(m->r[m->n].name, sizeof(m->r[m->n].name), "%s", name);
	m->r[m->n].size = size;
	m->r[m->n].mem = calloc(1, size);
	*adopted = false;
	return m->r[m->n++].mem;
}

static struct mem_persist restart_mem;

static int teardown(void **state)
{
	struct rig *r = *state;
	char cmd[128];

	if (r->open) {
		vdrv_reset(&r->drv);
		assert_int_equal(gmem_flat_outstanding(r->x.gm), 0);
		assert_int_equal(gmem_flat_bad_unmaps(r->x.gm), 0);
		vdrv_direct_close(&r->x);
		ev_loop_destroy(r->loop);
		r->open = false;
	}
	for (unsigned i = 0; i < restart_mem.n; i++)
		free(restart_mem.r[i].mem);
	restart_mem.n = 0;
	snprintf(cmd, sizeof(cmd), "rm -rf %s", r->dir);
	assert_int_equal(system(cmd), 0);
	return 0;
}

static long now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1000L + ts.tv_nsec / 1000000L;
}

static struct vsock_stats stats(struct rig *r)
{
	struct vsock_stats st;

	assert_int_equal(vsock_get_stats(r->x.dev, &st), 0);
	return st;
}

/* ---- guest side ---------------------------------------------------------------------------- */

static struct vsock_hdr ghdr(uint16_t op, uint32_t gport, uint32_t hport)
{
	return (struct vsock_hdr){ .src_cid = CID, .dst_cid = VSOCK_CID_HOST, .src_port = gport,
				   .dst_port = hport, .type = VSOCK_TYPE_STREAM, .op = op };
}

/* A raw transmit chain: wire bytes (header and payload) as they are, split after split bytes. */
static void guest_raw(struct rig *r, const void *wire, uint32_t len, uint32_t split)
{
	struct vdrv_buf b[2] = { { r->tx_gpa, split ? split : len, false },
				 { r->tx_gpa + split, len - split, false } };

	assert_true(len <= VSOCK_HDR_LEN + TXMAX);
	memcpy(r->tx_host, wire, len);
	assert_int_equal(vdrv_transfer(&r->drv, VSOCK_Q_TX, b, split && split < len ? 2 : 1,
				       false, WAIT_MS), 0);
}

/* A packet with header h (len set from n unless keep_len) and payload p. */
static void guest_send_hdr(struct rig *r, struct vsock_hdr h, const void *p, uint32_t n,
			   bool keep_len)
{
	static uint8_t wire[VSOCK_HDR_LEN + TXMAX];

	if (!keep_len)
		h.len = n;
	if (!h.buf_alloc)
		h.buf_alloc = r->guest_buf;
	h.fwd_cnt = r->guest_fwd;
	vsock_hdr_put(wire, &h);
	if (n)
		memcpy(wire + VSOCK_HDR_LEN, p, n);
	guest_raw(r, wire, VSOCK_HDR_LEN + n, VSOCK_HDR_LEN);
}

static void guest_op(struct rig *r, uint16_t op, uint32_t gport, uint32_t hport, uint32_t flags)
{
	struct vsock_hdr h = ghdr(op, gport, hport);

	h.flags = flags;
	guest_send_hdr(r, h, NULL, 0, false);
}

static void guest_data(struct rig *r, uint32_t gport, uint32_t hport, const void *p, uint32_t n)
{
	guest_send_hdr(r, ghdr(VSOCK_OP_RW, gport, hport), p, n, false);
}

/* The next packet the device gave the guest, waiting up to ms; false when none came. */
static bool guest_recv(struct rig *r, struct pkt *p, int ms)
{
	long end = now_ms() + ms;
	uint32_t len;
	void *tok;

	for (;;) {
		if (vdrv_get_used(&r->drv, VSOCK_Q_RX, &len, &tok) == 1) {
			unsigned i = (unsigned)(uintptr_t)tok - 1;

			assert_true(i < NRX);
			assert_true(len >= VSOCK_HDR_LEN && len <= RXLEN);
			vsock_hdr_get(&p->h, r->rx_host[i]);
			assert_int_equal(p->h.len, len - VSOCK_HDR_LEN);
			memcpy(p->data, r->rx_host[i] + VSOCK_HDR_LEN, p->h.len);
			rx_post(r, i);
			vdrv_kick(&r->drv, VSOCK_Q_RX);
			return true;
		}
		if (now_ms() >= end)
			return false;
		r->x.io.wait_irq(&r->x.io, 10);
	}
}

/* The next packet must be op between the two ports (as the device addresses them). */
static void guest_expect(struct rig *r, struct pkt *p, uint16_t op, uint32_t gport, uint32_t hport)
{
	assert_true(guest_recv(r, p, WAIT_MS));
	if (p->h.op != op)
		fail_msg("expected op %u, got op %u (%u -> %u)", op, p->h.op, p->h.src_port,
			 p->h.dst_port);
	assert_int_equal(p->h.src_cid, VSOCK_CID_HOST);
	assert_int_equal(p->h.dst_cid, CID);
	assert_int_equal(p->h.type, VSOCK_TYPE_STREAM);
	assert_int_equal(p->h.dst_port, gport);
	if (hport)
		assert_int_equal(p->h.src_port, hport);
}

static void guest_expect_nothing(struct rig *r, int ms)
{
	struct pkt p;

	if (guest_recv(r, &p, ms))
		fail_msg("unexpected packet op %u (%u -> %u, len %u)", p.h.op, p.h.src_port,
			 p.h.dst_port, p.h.len);
}

/* Receive n bytes of RW data on a connection (other packets for it are skipped). */
static size_t guest_read(struct rig *r, uint32_t gport, uint8_t *out, size_t n)
{
	static struct pkt p;
	size_t got = 0;

	while (got < n && guest_recv(r, &p, WAIT_MS)) {
		assert_int_equal(p.h.dst_port, gport);
		if (p.h.op != VSOCK_OP_RW)
			continue;
		assert_true(got + p.h.len <= n);
		memcpy(out + got, p.data, p.h.len);
		got += p.h.len;
	}
	return got;
}

/* ---- host side ----------------------------------------------------------------------------- */

static int host_listen(struct rig *r, uint32_t port)
{
	char path[160];
	int fd;

	assert_true(snprintf(path, sizeof(path), "%s_%u", r->path, port) < (int)sizeof(path));
	fd = unix_sock_listen(path, 8);
	assert_true(fd >= 0);
	return fd;
}

static int host_accept(int lfd)
{
	int fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);

	assert_true(fd >= 0);
	return fd;
}

static int host_connect(struct rig *r)
{
	int fd = unix_sock_connect(r->path);

	assert_true(fd >= 0);
	return fd;
}

static void host_write(int fd, const void *p, size_t n)
{
	assert_int_equal(write(fd, p, n), (ssize_t)n);
}

/* Read up to want bytes (fewer at end of file) while the loop runs. */
static size_t host_read(struct rig *r, int fd, uint8_t *out, size_t want, bool *eof)
{
	long end = now_ms() + WAIT_MS;
	size_t got = 0;

	if (eof)
		*eof = false;
	while (got < want && now_ms() < end) {
		struct pollfd pfd = { .fd = fd, .events = POLLIN };
		ssize_t n;

		ev_run(r->loop, EVRUN_NOWAIT);
		if (poll(&pfd, 1, 2) != 1)
			continue;
		n = recv(fd, out + got, want - got, MSG_DONTWAIT);
		if (n == 0 || (n < 0 && errno == ECONNRESET)) {
			if (eof)
				*eof = true;
			break;
		}
		if (n > 0)
			got += (size_t)n;
	}
	return got;
}

static void host_expect_eof(struct rig *r, int fd)
{
	uint8_t b[64];
	bool eof;

	assert_int_equal(host_read(r, fd, b, sizeof(b), &eof), 0);
	assert_true(eof);
}

static void pattern(uint8_t *p, size_t n, unsigned seed)
{
	for (size_t i = 0; i < n; i++) {
		seed = seed * 1103515245u + 12345u;
		p[i] = (uint8_t)(seed >> 16);
	}
}

/* The guest connects from gport to host port hport (listening at lfd): the host's end. */
static int guest_connects(struct rig *r, int lfd, uint32_t gport, uint32_t hport)
{
	struct pkt p;

	guest_op(r, VSOCK_OP_REQUEST, gport, hport, 0);
	guest_expect(r, &p, VSOCK_OP_RESPONSE, gport, hport);
	assert_int_equal(p.h.buf_alloc, 256u << 10);
	return host_accept(lfd);
}

/* A host program connects to the guest's gport; returns its socket, *hport the device's port. */
static int host_connects(struct rig *r, uint32_t gport, uint32_t *hport, const char *extra)
{
	char line[64], ok[32];
	struct pkt p;
	int fd = host_connect(r);
	size_t n;

	snprintf(line, sizeof(line), "CONNECT %u\n%s", gport, extra ? extra : "");
	host_write(fd, line, strlen(line));
	guest_expect(r, &p, VSOCK_OP_REQUEST, gport, 0);
	assert_true(p.h.src_port >= VSOCK_LOCAL_PORT_BASE);
	*hport = p.h.src_port;
	guest_op(r, VSOCK_OP_RESPONSE, gport, *hport, 0);
	snprintf(line, sizeof(line), "OK %u\n", *hport);
	n = host_read(r, fd, (uint8_t *)ok, strlen(line), NULL);
	assert_int_equal(n, strlen(line));
	assert_memory_equal(ok, line, n);
	return fd;
}

/* ---- tests --------------------------------------------------------------------------------- */

static void test_features_and_config(void **state)
{
	struct rig *r = *state;
	uint64_t cid = 0;

	rig_start(r);
	assert_int_equal(r->drv.device_id, VIRTIO_ID_VSOCK);
	assert_true(r->drv.device_features & VIRTIO_BIT(VSOCK_F_STREAM));
	assert_ptr_equal(vdev_ops_by_id(VIRTIO_ID_VSOCK), vdev_ops_by_type("vsock"));
	vdrv_config_read(&r->drv, 0, &cid, 8);
	assert_int_equal(le64toh(cid), CID);
	/* Read-only: a write changes nothing, and the device keeps serving. */
	vmmio_write(r->x.dev, VIRTIO_MMIO_CONFIG, 4, 7);
	vdrv_config_read(&r->drv, 0, &cid, 8);
	assert_int_equal(le64toh(cid), CID);
	assert_true(vdev_active(r->x.dev));
}

static void test_guest_to_host(void **state)
{
	struct rig *r = *state;
	int lfd, fd;
	uint8_t buf[8192], big[20000], got[20000];
	struct pkt p;

	rig_start(r);
	lfd = host_listen(r, 1234);
	fd = guest_connects(r, lfd, 5000, 1234);
	guest_data(r, 5000, 1234, "hello", 5);
	assert_int_equal(host_read(r, fd, buf, 5, NULL), 5);
	assert_memory_equal(buf, "hello", 5);
	host_write(fd, "world", 5);
	guest_expect(r, &p, VSOCK_OP_RW, 5000, 1234);
	assert_int_equal(p.h.len, 5);
	assert_memory_equal(p.data, "world", 5);
	/* More than one receive buffer's worth, both ways, in order. */
	pattern(big, sizeof(big), 1);
	host_write(fd, big, sizeof(big));
	assert_int_equal(guest_read(r, 5000, got, sizeof(big)), sizeof(big));
	assert_memory_equal(got, big, sizeof(big));
	pattern(big, sizeof(big), 2);
	guest_data(r, 5000, 1234, big, sizeof(big));
	assert_int_equal(host_read(r, fd, got, sizeof(big), NULL), sizeof(big));
	assert_memory_equal(got, big, sizeof(big));
	assert_int_equal(stats(r).opened, 1);
	assert_int_equal(stats(r).from_guest, 5 + sizeof(big));
	close(fd);
	close(lfd);
}

static void test_guest_connect_refused(void **state)
{
	struct rig *r = *state;
	struct pkt p;
	int lfd, fd;

	rig_start(r);
	guest_op(r, VSOCK_OP_REQUEST, 6000, 99, 0);     /* nobody listens at PATH_99 */
	guest_expect(r, &p, VSOCK_OP_RST, 6000, 99);
	assert_int_equal(stats(r).refused, 1);
	assert_int_equal(stats(r).conns, 0);
	lfd = host_listen(r, 100);
	fd = guest_connects(r, lfd, 6000, 100);
	close(fd);
	close(lfd);
}

static void test_host_to_guest(void **state)
{
	struct rig *r = *state;
	uint32_t hport, hport2;
	uint8_t buf[64];
	struct pkt p;
	int fd, fd2;

	rig_start(r);
	/* Bytes written right after the line are the stream's, not the handshake's. */
	fd = host_connects(r, 7000, &hport, "early");
	guest_expect(r, &p, VSOCK_OP_RW, 7000, hport);
	assert_int_equal(p.h.len, 5);
	assert_memory_equal(p.data, "early", 5);
	guest_data(r, 7000, hport, "ping", 4);
	assert_int_equal(host_read(r, fd, buf, 4, NULL), 4);
	assert_memory_equal(buf, "ping", 4);
	/* A second program to the same guest port gets a port of its own. */
	fd2 = host_connects(r, 7000, &hport2, NULL);
	assert_true(hport2 != hport);
	host_write(fd2, "two", 3);
	guest_expect(r, &p, VSOCK_OP_RW, 7000, hport2);
	assert_memory_equal(p.data, "two", 3);
	assert_int_equal(stats(r).conns, 2);
	close(fd);
	close(fd2);
}

static void test_host_connect_refused(void **state)
{
	struct rig *r = *state;
	struct pkt p;
	int fd;

	rig_start(r);
	fd = host_connect(r);
	host_write(fd, "CONNECT 7001\n", 13);
	guest_expect(r, &p, VSOCK_OP_REQUEST, 7001, 0);
	guest_op(r, VSOCK_OP_RST, 7001, p.h.src_port, 0);    /* nobody listens in the guest */
	host_expect_eof(r, fd);
	close(fd);
	/* Not a CONNECT line, an over-long one, a port beyond 32 bits: closed, nothing sent. */
	static const char *const bad[] = { "HELLO\n", "CONNECT\n", "CONNECT 4294967296\n",
					   "CONNECT 12x\n",
					   "CONNECT 1111111111111111111111111111111111111\n" };
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		fd = host_connect(r);
		host_write(fd, bad[i], strlen(bad[i]));
		host_expect_eof(r, fd);
		close(fd);
	}
	guest_expect_nothing(r, 20);
	assert_int_equal(stats(r).conns, 0);
}

static void test_guest_shutdown(void **state)
{
	struct rig *r = *state;
	uint8_t buf[16];
	struct pkt p;
	bool eof;
	int lfd, fd;

	rig_start(r);
	lfd = host_listen(r, 1300);
	fd = guest_connects(r, lfd, 5100, 1300);
	guest_data(r, 5100, 1300, "last", 4);
	guest_op(r, VSOCK_OP_SHUTDOWN, 5100, 1300, VSOCK_SHUT_SEND);
	/* The host reads what was sent, then end of file; it can still write to the guest. */
	assert_int_equal(host_read(r, fd, buf, sizeof(buf), &eof), 4);
	assert_memory_equal(buf, "last", 4);
	if (!eof)
		host_expect_eof(r, fd);
	host_write(fd, "reply", 5);
	guest_expect(r, &p, VSOCK_OP_RW, 5100, 1300);
	assert_memory_equal(p.data, "reply", 5);
	/* Both ways shut: the device completes the close with RST and lets the host socket go. */
	guest_op(r, VSOCK_OP_SHUTDOWN, 5100, 1300, VSOCK_SHUT_RCV | VSOCK_SHUT_SEND);
	guest_expect(r, &p, VSOCK_OP_RST, 5100, 1300);
	assert_int_equal(stats(r).conns, 0);
	assert_int_equal(send(fd, "x", 1, MSG_NOSIGNAL), -1);
	close(fd);
	close(lfd);
}

static void test_host_shutdown_and_close(void **state)
{
	struct rig *r = *state;
	uint8_t buf[16];
	struct pkt p;
	int lfd, fd;

	rig_start(r);
	lfd = host_listen(r, 1400);
	fd = guest_connects(r, lfd, 5200, 1400);
	host_write(fd, "bye", 3);
	shutdown(fd, SHUT_WR);
	guest_expect(r, &p, VSOCK_OP_RW, 5200, 1400);
	assert_memory_equal(p.data, "bye", 3);
	guest_expect(r, &p, VSOCK_OP_SHUTDOWN, 5200, 1400);
	assert_int_equal(p.h.flags, VSOCK_SHUT_SEND);
	/* Half closed: the guest's data still goes to the host. */
	guest_data(r, 5200, 1400, "ack", 3);
	assert_int_equal(host_read(r, fd, buf, 3, NULL), 3);
	assert_memory_equal(buf, "ack", 3);
	/* The host goes away entirely: the guest's next data gets RST. */
	close(fd);
	guest_data(r, 5200, 1400, "lost", 4);
	guest_expect(r, &p, VSOCK_OP_RST, 5200, 1400);
	assert_int_equal(stats(r).conns, 0);
	close(lfd);
}

static void test_guest_rst(void **state)
{
	struct rig *r = *state;
	struct pkt p;
	int lfd, fd;

	rig_start(r);
	lfd = host_listen(r, 1500);
	fd = guest_connects(r, lfd, 5300, 1500);
	guest_op(r, VSOCK_OP_RST, 5300, 1500, 0);
	host_expect_eof(r, fd);
	guest_expect_nothing(r, 20);        /* an RST is never answered */
	/* The connection is gone: data for it is answered with RST. */
	guest_data(r, 5300, 1500, "x", 1);
	guest_expect(r, &p, VSOCK_OP_RST, 5300, 1500);
	close(fd);
	close(lfd);
}

/* The guest's credit as the device last told it, and its own count of bytes sent. */
struct gcredit {
	uint32_t buf_alloc, fwd_cnt, sent;
};

static uint32_t gcredit_free(const struct gcredit *c)
{
	return c->buf_alloc - (c->sent - c->fwd_cnt);
}

/* Take in packets for gport without waiting; credit updates are noted. */
static void gcredit_poll(struct rig *r, struct gcredit *c, uint32_t gport, int ms)
{
	struct pkt p;

	while (guest_recv(r, &p, ms)) {
		assert_int_equal(p.h.dst_port, gport);
		assert_int_equal(p.h.op, VSOCK_OP_CREDIT_UPDATE);
		c->buf_alloc = p.h.buf_alloc;
		c->fwd_cnt = p.h.fwd_cnt;
	}
}

/* The guest writes n bytes on gport as its credit allows; the host reads fd meanwhile. */
static void guest_stream(struct rig *r, uint32_t gport, uint32_t hport, int fd, size_t total)
{
	static uint8_t chunk[4096], in[4096];
	struct gcredit c = { .buf_alloc = 256u << 10 };
	size_t got = 0;
	long end = now_ms() + 20000;

	while (got < total) {
		uint32_t n = (uint32_t)(total - c.sent < sizeof(chunk) ? total - c.sent : sizeof(chunk));

		gcredit_poll(r, &c, gport, 0);
		n = gcredit_free(&c) < n ? gcredit_free(&c) : n;
		if (n) {
			pattern(chunk, n, c.sent);
			guest_data(r, gport, hport, chunk, n);
			c.sent += n;
		}
		for (ssize_t k; (k = recv(fd, in, sizeof(in), MSG_DONTWAIT)) > 0; got += (size_t)k)
			;
		if (!n)
			gcredit_poll(r, &c, gport, 5);
		assert_true(now_ms() < end);
	}
	assert_int_equal(got, total);
}

static void test_flow_control_slow_reader(void **state)
{
	struct rig *r = *state;
	static uint8_t chunk[4096], sink[4 << 20];
	struct gcredit a = { .buf_alloc = 256u << 10 };
	uint8_t buf[16];
	struct pkt p;
	bool eof;
	int lfd, fa, fb;
	long end = now_ms() + 10000;

	rig_start(r);
	lfd = host_listen(r, 1600);
	fa = guest_connects(r, lfd, 5400, 1600);
	fb = guest_connects(r, lfd, 5401, 1600);
	pattern(chunk, sizeof(chunk), 3);
	/* The guest writes to A, whose host program does not read, as long as its credit lasts. */
	for (;;) {
		uint32_t n;

		gcredit_poll(r, &a, 5400, 0);
		n = gcredit_free(&a) < sizeof(chunk) ? gcredit_free(&a) : sizeof(chunk);
		if (n == 0) {
			gcredit_poll(r, &a, 5400, 50);   /* one more update may still be coming */
			if (gcredit_free(&a) == 0)
				break;
			continue;
		}
		guest_data(r, 5400, 1600, chunk, n);
		a.sent += n;
		assert_true(now_ms() < end);
	}
	/* Credit ran out once the host socket and the device's buffer were full: more than one. */
	assert_true(a.sent > (256u << 10));
	assert_int_equal(stats(r).credit_violations, 0);
	/* B is not held up by A, either way. */
	guest_data(r, 5401, 1600, "B", 1);
	assert_int_equal(host_read(r, fb, buf, 1, NULL), 1);
	assert_int_equal(buf[0], 'B');
	host_write(fb, "b", 1);
	guest_expect(r, &p, VSOCK_OP_RW, 5401, 1600);
	/* One byte beyond the credit: A is reset (what it had sent still reaches its reader). */
	guest_data(r, 5400, 1600, "!", 1);
	guest_expect(r, &p, VSOCK_OP_RST, 5400, 1600);
	assert_int_equal(stats(r).credit_violations, 1);
	assert_true(host_read(r, fa, sink, sizeof(sink), &eof) <= a.sent);
	assert_true(eof);
	/* B streams 1 MiB through 256 KiB of credit: the device's credit updates keep it going. */
	guest_stream(r, 5401, 1600, fb, 1u << 20);
	assert_int_equal(stats(r).credit_violations, 1);
	close(fa);
	close(fb);
	close(lfd);
}

static void test_guest_credit_respected(void **state)
{
	struct rig *r = *state;
	static uint8_t big[65536], got[65536];
	int lfd, fd;

	r->guest_buf = 8192;
	rig_start(r);
	lfd = host_listen(r, 1700);
	fd = guest_connects(r, lfd, 5500, 1700);
	pattern(big, sizeof(big), 4);
	host_write(fd, big, sizeof(big));
	/* The guest granted 8 KiB: exactly that much comes, then nothing. */
	assert_int_equal(guest_read(r, 5500, got, 8192), 8192);
	guest_expect_nothing(r, 50);
	/* It read them: a credit update lets the next 8 KiB come. */
	r->guest_fwd = 8192;
	guest_op(r, VSOCK_OP_CREDIT_UPDATE, 5500, 1700, 0);
	assert_int_equal(guest_read(r, 5500, got + 8192, 8192), 8192);
	guest_expect_nothing(r, 50);
	assert_memory_equal(got, big, 16384);
	/* A credit request is answered with our credit. */
	struct pkt p;
	guest_op(r, VSOCK_OP_CREDIT_REQUEST, 5500, 1700, 0);
	guest_expect(r, &p, VSOCK_OP_CREDIT_UPDATE, 5500, 1700);
	assert_int_equal(p.h.buf_alloc, 256u << 10);
	close(fd);
	close(lfd);
}

/* Each hostile packet ends in an RST or a drop; the device keeps serving. */
static void test_hostile_headers(void **state)
{
	struct rig *r = *state;
	uint8_t wire[VSOCK_HDR_LEN + 16] = { 0 };
	struct vsock_hdr h;
	struct pkt p;
	int lfd, fd, fd2;
	uint64_t bad;

	rig_start(r);
	lfd = host_listen(r, 1800);
	fd = guest_connects(r, lfd, 5600, 1800);

	/* Shorter than a header, in one or two pieces: dropped. */
	guest_raw(r, wire, 20, 0);
	guest_raw(r, wire, 40, 10);
	/* Wrong source CID, wrong destination CID: dropped. */
	h = ghdr(VSOCK_OP_REQUEST, 5601, 1800);
	h.src_cid = CID + 1;
	guest_send_hdr(r, h, NULL, 0, false);
	h = ghdr(VSOCK_OP_REQUEST, 5601, 1800);
	h.dst_cid = 3;
	guest_send_hdr(r, h, NULL, 0, false);
	h = ghdr(VSOCK_OP_REQUEST, 5601, 1800);
	h.src_cid |= UINT64_C(1) << 32;           /* the reserved upper half */
	guest_send_hdr(r, h, NULL, 0, false);
	guest_expect_nothing(r, 20);
	assert_int_equal(stats(r).bad_packets, 5);

	/* len beyond the chain, huge len, len on a control packet: RST. */
	h = ghdr(VSOCK_OP_RW, 5610, 1800);
	h.len = 100;
	guest_send_hdr(r, h, "abc", 3, true);
	guest_expect(r, &p, VSOCK_OP_RST, 5610, 1800);
	h.len = UINT32_MAX;
	guest_send_hdr(r, h, "abc", 3, true);
	guest_expect(r, &p, VSOCK_OP_RST, 5610, 1800);
	h = ghdr(VSOCK_OP_REQUEST, 5611, 1800);
	h.len = 3;
	guest_send_hdr(r, h, "abc", 3, true);
	guest_expect(r, &p, VSOCK_OP_RST, 5611, 1800);
	/* Unknown type and op on no connection, a packet of no connection: RST. */
	h = ghdr(VSOCK_OP_REQUEST, 5612, 1800);
	h.type = 2;
	guest_send_hdr(r, h, NULL, 0, false);
	guest_expect(r, &p, VSOCK_OP_RST, 5612, 1800);
	guest_op(r, 99, 5613, 1800, 0);
	guest_expect(r, &p, VSOCK_OP_RST, 5613, 1800);
	guest_op(r, VSOCK_OP_CREDIT_UPDATE, 5614, 1800, 0);
	guest_expect(r, &p, VSOCK_OP_RST, 5614, 1800);
	guest_op(r, VSOCK_OP_RST, 5615, 1800, 0);       /* never answered */
	guest_expect_nothing(r, 20);

	/* On the live connection: a bad len resets it (its host socket is closed). */
	h = ghdr(VSOCK_OP_RW, 5600, 1800);
	h.len = 1000;
	guest_send_hdr(r, h, "abc", 3, true);
	guest_expect(r, &p, VSOCK_OP_RST, 5600, 1800);
	host_expect_eof(r, fd);
	close(fd);
	/* Unknown op, wrong type, a second REQUEST, a RESPONSE, INVALID: each resets it. */
	static const struct { uint16_t op, type; } lies[] = {
		{ 77, VSOCK_TYPE_STREAM }, { VSOCK_OP_RW, 9 }, { VSOCK_OP_REQUEST, 1 },
		{ VSOCK_OP_RESPONSE, 1 }, { VSOCK_OP_INVALID, 1 },
	};
	for (size_t i = 0; i < sizeof(lies) / sizeof(lies[0]); i++) {
		fd = guest_connects(r, lfd, 5620, 1800);
		h = ghdr(lies[i].op, 5620, 1800);
		h.type = lies[i].type;
		guest_send_hdr(r, h, NULL, 0, false);
		guest_expect(r, &p, VSOCK_OP_RST, 5620, 1800);
		host_expect_eof(r, fd);
		close(fd);
	}
	bad = stats(r).bad_packets;
	assert_true(bad >= 5 + 5 + 5);
	/* Still serving, nothing left open. */
	assert_false(vdrv_status(&r->drv) & VIRTIO_STATUS_NEEDS_RESET);
	assert_int_equal(stats(r).conns, 0);
	fd2 = guest_connects(r, lfd, 5630, 1800);
	guest_data(r, 5630, 1800, "ok", 2);
	uint8_t buf[2];
	assert_int_equal(host_read(r, fd2, buf, 2, NULL), 2);
	close(fd2);
	close(lfd);
}

static void turns_done_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
	(void)loop;
	(void)w;
	(void)revents;
}

/* Loop iterations while a ~100 ms timer runs: a watcher firing without progress shows up. */
static unsigned loop_turns(struct rig *r)
{
	ev_timer t;
	unsigned turns = 0;

	ev_timer_init(&t, turns_done_cb, 0.1, 0.);
	ev_timer_start(r->loop, &t);
	while (ev_is_active(&t) && turns < 100000) {
		ev_run(r->loop, EVRUN_ONCE);
		turns++;
	}
	ev_timer_stop(r->loop, &t);
	return turns;
}

static void test_no_rx_buffers_no_spin(void **state)
{
	struct rig *r = *state;
	uint32_t hport;
	struct pkt p;
	int fd;

	rig_start_opts(r, false);
	fd = host_connect(r);
	host_write(fd, "CONNECT 8000\n", 13);
	/* The REQUEST waits for a receive buffer; the readable socket costs nothing meanwhile. */
	assert_true(loop_turns(r) < 20);
	rx_post_all(r);
	guest_expect(r, &p, VSOCK_OP_REQUEST, 8000, 0);
	hport = p.h.src_port;
	guest_op(r, VSOCK_OP_RESPONSE, 8000, hport, 0);
	uint8_t ok[32];
	assert_true(host_read(r, fd, ok, 3 + 10 + 1, NULL) > 3);
	/* Every receive buffer used up, then more data from the host: no spinning either. */
	static uint8_t big[NRX * 4096 + 8192];
	host_write(fd, big, sizeof(big));
	assert_true(loop_turns(r) < 20);
	assert_true(guest_recv(r, &p, WAIT_MS));    /* and it moves again once buffers return */
	close(fd);
}

static void test_reset_closes_everything(void **state)
{
	struct rig *r = *state;
	uint32_t hport;
	int lfd, fd, fd2;

	rig_start(r);
	lfd = host_listen(r, 1900);
	fd = guest_connects(r, lfd, 5700, 1900);
	fd2 = host_connects(r, 5701, &hport, NULL);
	assert_int_equal(stats(r).conns, 2);
	vdrv_reset(&r->drv);
	host_expect_eof(r, fd);
	host_expect_eof(r, fd2);
	assert_int_equal(stats(r).conns, 0);
	/* A client of PATH waits while the device is down, and is served after. */
	close(fd2);
	fd2 = host_connect(r);
	host_write(fd2, "CONNECT 5702\n", 13);
	assert_true(loop_turns(r) < 20);
	assert_int_equal(stats(r).conns, 0);
	rig_init_driver(r, true);
	struct pkt p;
	guest_expect(r, &p, VSOCK_OP_REQUEST, 5702, 0);
	close(fd);
	fd = guest_connects(r, lfd, 5700, 1900);
	/* No TRANSPORT_RESET for a driver's own reset. */
	uint32_t len;
	void *tok;
	assert_int_equal(vdrv_get_used(&r->drv, VSOCK_Q_EVENT, &len, &tok), 0);
	close(fd);
	close(fd2);
	close(lfd);
}

static void test_cid_change_event(void **state)
{
	struct rig *r = *state;
	struct config_device n;
	uint64_t cid;
	uint32_t len, id;
	void *tok;
	int lfd, fd;

	rig_start(r);
	lfd = host_listen(r, 2000);
	fd = guest_connects(r, lfd, 5800, 2000);
	n = r->cfg;
	n.u.vsock.guest_cid = CID + 1;
	assert_int_equal(r->x.dev->ops->reconfigure(r->x.dev, &n), 0);
	host_expect_eof(r, fd);
	assert_int_equal(vdrv_get_used(&r->drv, VSOCK_Q_EVENT, &len, &tok), 1);
	assert_int_equal(len, 4);
	memcpy(&id, r->evt_host[(uintptr_t)tok - 1], 4);
	assert_int_equal(le32toh(id), VSOCK_EVENT_TRANSPORT_RESET);
	assert_true(vdrv_wait_isr(&r->drv, 100) & VIRTIO_MMIO_INT_CONFIG);
	vdrv_config_read(&r->drv, 0, &cid, 8);
	assert_int_equal(le64toh(cid), CID + 1);
	/* Packets from the old CID are dropped now. */
	guest_op(r, VSOCK_OP_REQUEST, 5801, 2000, 0);
	guest_expect_nothing(r, 20);
	/* Other keys cannot change at run time. */
	n.u.vsock.max_conns = 3;
	assert_int_equal(r->x.dev->ops->reconfigure(r->x.dev, &n), -EOPNOTSUPP);
	close(fd);
	close(lfd);
}

static void test_max_connections(void **state)
{
	struct rig *r = *state;
	struct pkt p;
	int lfd, fd[2], hc;

	r->cfg.u.vsock.max_conns = 2;
	rig_start(r);
	lfd = host_listen(r, 2100);
	fd[0] = guest_connects(r, lfd, 5900, 2100);
	fd[1] = guest_connects(r, lfd, 5901, 2100);
	guest_op(r, VSOCK_OP_REQUEST, 5902, 2100, 0);
	guest_expect(r, &p, VSOCK_OP_RST, 5902, 2100);
	assert_int_equal(stats(r).refused, 1);
	/* A host program waits in the backlog until a connection ends. */
	hc = host_connect(r);
	host_write(hc, "CONNECT 5903\n", 13);
	guest_expect_nothing(r, 30);
	guest_op(r, VSOCK_OP_RST, 5900, 2100, 0);
	guest_expect(r, &p, VSOCK_OP_REQUEST, 5903, 0);
	for (int i = 0; i < 2; i++)
		close(fd[i]);
	close(hc);
	close(lfd);
}

static void test_broken_ring_stops(void **state)
{
	struct rig *r = *state;
	struct vdrv_vq *vq;
	uint32_t hport;
	int fd;

	rig_start(r);
	fd = host_connects(r, 9000, &hport, NULL);
	/* A head beyond the ring's size on the transmit queue: ring corruption, NEEDS_RESET. */
	vq = &r->drv.vq[VSOCK_Q_TX];
	vq->avail->ring[vq->avail_idx % vq->num] = 999;
	vq->avail_idx++;
	__atomic_store_n(&vq->avail->idx, vq->avail_idx, __ATOMIC_RELEASE);
	vdrv_kick(&r->drv, VSOCK_Q_TX);
	assert_true(vdrv_status(&r->drv) & VIRTIO_STATUS_NEEDS_RESET);
	/* Host data while the device is broken costs nothing. */
	host_write(fd, "ignored", 7);
	assert_true(loop_turns(r) < 20);
	/* A reset and a new start: serving again. */
	vdrv_reset(&r->drv);
	host_expect_eof(r, fd);
	close(fd);
	memset(&r->drv, 0, sizeof(r->drv));
	rig_init_driver(r, true);
	fd = host_connects(r, 9001, &hport, NULL);
	close(fd);
}


/* A restart: the guest's connections died with the previous process; the event says so. */
static void test_restart_event(void **state)
{
	struct rig *r = *state;
	struct vdev *old;
	uint32_t len, id, hport;
	void *tok;
	int lfd, fd;

	restart_mem = (struct mem_persist){ .p = { .region = mem_region } };
	r->loop = ev_loop_new(EVFLAG_AUTO);
	assert_int_equal(vdrv_direct_open_ram(&r->x, RAM_GPA, RAM_SIZE, r->loop), 0);
	r->x.host.persist = &restart_mem.p;
	assert_int_equal(vdev_create(&r->x.host, &r->cfg, &r->x.dev), 0);
	rig_up(r, true);
	lfd = host_listen(r, 2200);
	fd = guest_connects(r, lfd, 6100, 2200);
	assert_int_equal(vdrv_get_used(&r->drv, VSOCK_Q_EVENT, &len, &tok), 0);

	/* The process goes (its queues and registers stay for the next), a new one adopts. */
	old = r->x.dev;
	vdev_leave(old);
	vdev_destroy(old);
	host_expect_eof(r, fd);
	restart_mem.adopting = true;
	assert_int_equal(vdev_create(&r->x.host, &r->cfg, &r->x.dev), 0);
	assert_true(r->x.dev->adopted);
	vmmio_adopt(r->x.dev);
	assert_true(vdev_active(r->x.dev));
	assert_int_equal(vdrv_get_used(&r->drv, VSOCK_Q_EVENT, &len, &tok), 1);
	assert_int_equal(len, 4);
	memcpy(&id, r->evt_host[(uintptr_t)tok - 1], 4);
	assert_int_equal(le32toh(id), VSOCK_EVENT_TRANSPORT_RESET);
	/* Once only, and the device serves: both directions work again. */
	assert_int_equal(vdrv_get_used(&r->drv, VSOCK_Q_EVENT, &len, &tok), 0);
	close(fd);
	fd = guest_connects(r, lfd, 6101, 2200);
	close(fd);
	struct pkt p;
	guest_expect(r, &p, VSOCK_OP_SHUTDOWN, 6101, 2200);    /* the host program left */
	fd = host_connects(r, 6102, &hport, NULL);
	close(fd);
	close(lfd);
}

/* Wait up to ms for end of file on fd (what comes before it is read and dropped). */
static bool host_wait_eof(struct rig *r, int fd, int ms)
{
	long end = now_ms() + ms;
	uint8_t b[256];

	while (now_ms() < end) {
		struct pollfd pfd = { .fd = fd, .events = POLLIN };
		ssize_t n;

		ev_run(r->loop, EVRUN_NOWAIT);
		if (poll(&pfd, 1, 5) != 1)
			continue;
		n = recv(fd, b, sizeof(b), MSG_DONTWAIT);
		if (n == 0 || (n < 0 && errno == ECONNRESET))
			return true;
	}
	return false;
}

/* A guest that never answers, a program that never finishes its line: both given up. */
static void test_connect_timeouts(void **state)
{
	struct rig *r = *state;
	struct pkt p;
	uint32_t hport;
	int fd, slow;
	long t0 = now_ms();

	rig_start(r);
	slow = host_connect(r);
	host_write(slow, "CONN", 4);
	fd = host_connect(r);
	host_write(fd, "CONNECT 7100\n", 13);
	guest_expect(r, &p, VSOCK_OP_REQUEST, 7100, 0);
	hport = p.h.src_port;
	/* The guest says nothing: after about 2 s the program is closed, the guest told. */
	assert_true(host_wait_eof(r, fd, 4000));
	assert_true(now_ms() - t0 >= 1900);
	guest_expect(r, &p, VSOCK_OP_RST, 7100, hport);
	/* The half line: after about 5 s. */
	assert_true(host_wait_eof(r, slow, 6000));
	assert_true(now_ms() - t0 >= 4900);
	assert_int_equal(stats(r).conns, 0);
	close(fd);
	close(slow);
}

static void test_create_errors(void **state)
{
	struct rig *r = *state;
	struct vdev_host host = { 0 };
	struct vdev *d = NULL;
	struct config_device c = r->cfg;

	host.loop = ev_loop_new(EVFLAG_AUTO);
	/* No loop, a reserved CID, no socket, a directory that does not exist: refused. */
	host.gm = NULL;
	struct ev_loop *loop = host.loop;
	host.loop = NULL;
	assert_true(vdev_create(&host, &c, &d) < 0);
	host.loop = loop;
	c.u.vsock.guest_cid = 2;
	assert_true(vdev_create(&host, &c, &d) < 0);
	c = r->cfg;
	c.u.vsock.socket[0] = 0;
	assert_true(vdev_create(&host, &c, &d) < 0);
	c = r->cfg;
	snprintf(c.u.vsock.socket, sizeof(c.u.vsock.socket), "%s/none/v.sock", r->dir);
	assert_true(vdev_create(&host, &c, &d) < 0);
	assert_null(d);
	ev_loop_destroy(loop);
}

#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)

int main(void)
{
	const struct CMUnitTest tests[] = {
		T(test_features_and_config),
		T(test_guest_to_host),
		T(test_guest_connect_refused),
		T(test_host_to_guest),
		T(test_host_connect_refused),
		T(test_guest_shutdown),
		T(test_host_shutdown_and_close),
		T(test_guest_rst),
		T(test_flow_control_slow_reader),
		T(test_guest_credit_respected),
		T(test_hostile_headers),
		T(test_no_rx_buffers_no_spin),
		T(test_reset_closes_everything),
		T(test_cid_change_event),
		T(test_max_connections),
		T(test_broken_ring_stops),
		T(test_restart_event),
		T(test_connect_timeouts),
		T(test_create_errors),
	};

	log_init(LOG_CRIT, false);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
