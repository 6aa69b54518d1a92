/*
 * virtio-console through the real transport and a real libev loop: real unix socket clients,
 * a real pty, a real log file in a temp directory. The guest side is the test driver; the loop
 * runs (inside the driver's interrupt waits and the pump helpers) until data arrives.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>
#include <ev.h>

#include "devices/console.h"
#include "devices/virtio_mmio.h"
#include "tests/lib/gmem_flat.h"
#include "tests/lib/unix_sock.h"
#include "tests/lib/vdriver.h"
#include "tests/lib/vdriver_direct.h"

#define RAM_GPA  UINT64_C(0x40000000)
#define RAM_SIZE (16u << 20)
#define R_ISR    0x060
#define R_ACK    0x064
#define WAIT_MS  3000
#define NRX      16          /* receive buffers per queue */
#define RXLEN    512
#define TXMAX    (64u << 10)
#define BASE_FEATURES (VIRTIO_BIT(VIRTIO_F_VERSION_1) | VIRTIO_BIT(VIRTIO_F_EVENT_IDX) | \
		       VIRTIO_BIT(VIRTIO_CONSOLE_F_SIZE))

struct rxq {
	unsigned q;
	uint64_t gpa[NRX];
	uint8_t *host[NRX];
	uint32_t len;
};

struct rig {
	struct vdrv_direct x;
	struct vdrv drv;
	struct ev_loop *loop;
	struct config_device cfg;
	char dir[64];
	char sock[128], log[128], link[128], port1[128];
	uint64_t tx_gpa;
	uint8_t *tx_host;
	struct rxq rx[3];          /* port 0, control (q2), port 1 (q4) */
	bool open;
};

/* ---- rig ----------------------------------------------------------------------------------- */

static void rig_cfg(struct rig *r)
{
	memset(r, 0, sizeof(*r));
	snprintf(r->dir, sizeof(r->dir), "/tmp/test_console.XXXXXX");
	assert_non_null(mkdtemp(r->dir));
	snprintf(r->sock, sizeof(r->sock), "%s/hvc0.sock", r->dir);
	snprintf(r->log, sizeof(r->log), "%s/hvc0.log", r->dir);
	snprintf(r->link, sizeof(r->link), "%s/hvc0.pty", r->dir);
	snprintf(r->port1, sizeof(r->port1), "%s/agent.sock", r->dir);
	r->cfg = (struct config_device){ .type = DEV_CONSOLE, .devid = -1 };
	snprintf(r->cfg.name, sizeof(r->cfg.name), "hvc0");
	r->cfg.u.console.ring_kib = 64;
	snprintf(r->cfg.u.console.socket, CONFIG_PATH_MAX, "%s", r->sock);
}

static void rxq_init(struct rig *r, struct rxq *rq, unsigned q)
{
	rq->q = q;
	rq->len = RXLEN;
	for (unsigned i = 0; i < NRX; i++) {
		rq->gpa[i] = vdrv_alloc(&r->x.mem, RXLEN, 16, (void **)&rq->host[i]);
		assert_true(rq->gpa[i] != 0);
	}
}

/* Give buffer i of rq to the device (the token is its index + 1). */
static void rx_post(struct rig *r, struct rxq *rq, unsigned i)
{
	struct vdrv_buf b = { rq->gpa[i], rq->len, true };

	memset(rq->host[i], 0xee, rq->len);
	assert_true(vdrv_submit(&r->drv, rq->q, &b, 1, false, (void *)(uintptr_t)(i + 1)) >= 0);
}

static void rx_post_all(struct rig *r, struct rxq *rq)
{
	for (unsigned i = 0; i < NRX; i++)
		rx_post(r, rq, i);
	vdrv_kick(&r->drv, rq->q);
}

/* Create the device from r->cfg and bring the driver up with `want` and nq queues. */
static void rig_start(struct rig *r, uint64_t want, unsigned nq)
{
	r->loop = ev_loop_new(EVFLAG_AUTO);
	assert_non_null(r->loop);
	assert_int_equal(vdrv_direct_open(&r->x, &r->cfg, RAM_GPA, RAM_SIZE, r->loop), 0);
	assert_int_equal(vdrv_init(&r->drv, &r->x.io, &r->x.mem, want, nq, 64), 0);
	r->tx_gpa = vdrv_alloc(&r->x.mem, TXMAX, 16, (void **)&r->tx_host);
	assert_true(r->tx_gpa != 0);
	rxq_init(r, &r->rx[0], 0);
	if (nq > 2)
		rxq_init(r, &r->rx[1], CONSOLE_Q_CTRL_RX);
	if (nq > 4)
		rxq_init(r, &r->rx[2], console_rxq(1));
	r->open = true;
}

static void rig_stop(struct rig *r)
{
	char cmd[128];

	if (!r->open)
		return;
	vdrv_reset(&r->drv);
	assert_int_equal(gmem_flat_outstanding(r->x.gm), 0);
	assert_int_equal(gmem_flat_bad_unmaps(r->x.gm), 0);
	vdrv_direct_close(&r->x);
	ev_loop_destroy(r->loop);
	r->open = false;
	snprintf(cmd, sizeof(cmd), "rm -rf %s", r->dir);
	assert_int_equal(system(cmd), 0);
}

static int teardown(void **state)
{
	rig_stop(*state);
	return 0;
}

static int setup_cfg(void **state)
{
	static struct rig r;

	rig_cfg(&r);
	*state = &r;
	return 0;
}

static long now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1000L + ts.tv_nsec / 1000000L;
}

/* Let the device's loop run for about ms milliseconds. */
static void pump(struct rig *r, int ms)
{
	long end = now_ms() + ms;

	do {
		ev_run(r->loop, EVRUN_NOWAIT);
		usleep(1000);
	} while (now_ms() < end);
}

/* ---- guest side ---------------------------------------------------------------------------- */

/* Transmit data on queue q in chunks of at most TXMAX; every chunk must complete at once. */
static void guest_send_q(struct rig *r, unsigned q, const void *data, size_t len)
{
	const uint8_t *p = data;

	while (len) {
		uint32_t n = len < TXMAX ? (uint32_t)len : TXMAX;
		struct vdrv_buf b = { r->tx_gpa, n, false };

		memcpy(r->tx_host, p, n);
		assert_int_equal(vdrv_transfer(&r->drv, q, &b, 1, false, WAIT_MS), 0);
		p += n;
		len -= n;
	}
}

static void guest_send(struct rig *r, const void *data, size_t len)
{
	guest_send_q(r, 1, data, len);
}

/* Collect used receive buffers of rq into out (reposting them); returns the bytes taken. */
static size_t rx_collect(struct rig *r, struct rxq *rq, uint8_t *out, size_t room)
{
	size_t got = 0;
	uint32_t len;
	void *tok;

	while (got < room && vdrv_get_used(&r->drv, rq->q, &len, &tok) == 1) {
		unsigned i = (unsigned)(uintptr_t)tok - 1;

		assert_true(i < NRX);
		assert_true(len <= rq->len);
		assert_true(got + len <= room);
		memcpy(out + got, rq->host[i], len);
		got += len;
		rx_post(r, rq, i);
		vdrv_kick(&r->drv, rq->q);
	}
	return got;
}

/* Wait until want bytes arrived in rq's buffers; returns how many did. */
static size_t guest_recv_q(struct rig *r, struct rxq *rq, uint8_t *out, size_t want, int ms)
{
	long end = now_ms() + ms;
	size_t got = 0;

	while (got < want && now_ms() < end) {
		got += rx_collect(r, rq, out + got, want - got);
		if (got < want)
			r->x.io.wait_irq(&r->x.io, 10);
	}
	return got;
}

static size_t guest_recv(struct rig *r, uint8_t *out, size_t want, int ms)
{
	return guest_recv_q(r, &r->rx[0], out, want, ms);
}

/* ---- host side ----------------------------------------------------------------------------- */

static int client_connect(const char *path)
{
	int fd = unix_sock_connect(path);

	assert_true(fd >= 0);
	return fd;
}

/* Read exactly want bytes from fd (socket or tty) while the loop runs; returns the count. */
static size_t host_read(struct rig *r, int fd, uint8_t *out, size_t want, int ms)
{
	long end = now_ms() + ms;
	size_t got = 0;

	do {
		struct pollfd pfd = { .fd = fd, .events = POLLIN };
		ssize_t n;

		ev_run(r->loop, EVRUN_NOWAIT);
		if (poll(&pfd, 1, ms ? 2 : 0) != 1)
			continue;
		n = read(fd, out + got, want - got);
		if (n <= 0)
			break;
		got += (size_t)n;
	} while (got < want && now_ms() < end);
	return got;
}

/* Nothing more to read on fd within ms (the loop running meanwhile). */
static void host_expect_silence(struct rig *r, int fd, int ms)
{
	uint8_t b;

	pump(r, ms);
	assert_int_equal(recv(fd, &b, 1, MSG_DONTWAIT), -1);
	assert_int_equal(errno, EAGAIN);
}

static void host_write(int fd, const void *p, size_t n)
{
	assert_int_equal(write(fd, p, n), (ssize_t)n);
}

static void pattern(uint8_t *p, size_t n, unsigned seed)
{
	for (size_t i = 0; i < n; i++) {
		seed = seed * 1103515245u + 12345u;
		p[i] = (uint8_t)(seed >> 16);
	}
}

static struct console_stats port_stats(struct rig *r, unsigned port)
{
	struct console_stats st;

	assert_int_equal(console_get_stats(r->x.dev, port, &st), 0);
	return st;
}

static uint32_t cfg_read(struct rig *r, uint32_t off, unsigned size)
{
	return (uint32_t)vmmio_read(r->x.dev, VIRTIO_MMIO_CONFIG + off, size);
}

/* ---- control queues -------------------------------------------------------------------------- */

struct cmsg {
	uint32_t id;
	uint16_t event, value;
	uint32_t extra_len;
	uint8_t extra[64];
};

/* The next control message from the device, or false when none came within ms. */
static bool ctrl_next(struct rig *r, struct cmsg *m, int ms)
{
	struct rxq *rq = &r->rx[1];
	long end = now_ms() + ms;
	uint32_t len;
	void *tok;

	for (;;) {
		if (vdrv_get_used(&r->drv, rq->q, &len, &tok) == 1) {
			unsigned i = (unsigned)(uintptr_t)tok - 1;

			assert_true(i < NRX && len >= 8 && len <= 8 + sizeof(m->extra));
			memcpy(&m->id, rq->host[i], 4);
			memcpy(&m->event, rq->host[i] + 4, 2);
			memcpy(&m->value, rq->host[i] + 6, 2);
			m->extra_len = len - 8;
			memcpy(m->extra, rq->host[i] + 8, m->extra_len);
			rx_post(r, rq, i);
			vdrv_kick(&r->drv, rq->q);
			return true;
		}
		if (now_ms() >= end)
			return false;
		r->x.io.wait_irq(&r->x.io, 10);
	}
}

static void ctrl_expect(struct rig *r, uint32_t id, uint16_t event, uint16_t value)
{
	struct cmsg m;

	assert_true(ctrl_next(r, &m, WAIT_MS));
	assert_int_equal(m.event, event);
	assert_int_equal(m.id, id);
	assert_int_equal(m.value, value);
}

static void ctrl_expect_none(struct rig *r)
{
	struct cmsg m;

	assert_false(ctrl_next(r, &m, 50));
}

/* Send raw bytes as one control message chain on c_ovq. */
static void ctrl_raw(struct rig *r, const void *p, uint32_t len)
{
	struct vdrv_buf b = { r->tx_gpa, len, false };

	memcpy(r->tx_host, p, len);
	assert_int_equal(vdrv_transfer(&r->drv, CONSOLE_Q_CTRL_TX, &b, 1, false, WAIT_MS), 0);
}

static void ctrl_send(struct rig *r, uint32_t id, uint16_t event, uint16_t value)
{
	uint8_t m[8];

	memcpy(m, &id, 4);
	memcpy(m + 4, &event, 2);
	memcpy(m + 6, &value, 2);
	ctrl_raw(r, m, 8);
}

/* A multiport console with one named port "org.test.agent"; the guest driver's handshake. */
static void multiport_start(struct rig *r, uint64_t extra_features)
{
	struct config_console *cc = &r->cfg.u.console;
	struct cmsg m;

	cc->nports = 1;
	snprintf(cc->ports[0].name, CONFIG_NAME_MAX, "org.test.agent");
	snprintf(cc->ports[0].socket, CONFIG_PATH_MAX, "%s", r->port1);
	rig_start(r, BASE_FEATURES | VIRTIO_BIT(VIRTIO_CONSOLE_F_MULTIPORT) | extra_features, 6);
	assert_true(r->drv.features & VIRTIO_BIT(VIRTIO_CONSOLE_F_MULTIPORT));
	assert_int_equal(cfg_read(r, CONSOLE_CFG_MAX_PORTS, 4), 2);
	rx_post_all(r, &r->rx[1]);
	ctrl_send(r, 0, VIRTIO_CONSOLE_DEVICE_READY, 1);
	ctrl_expect(r, 0, VIRTIO_CONSOLE_PORT_ADD, 0);
	ctrl_expect(r, 1, VIRTIO_CONSOLE_PORT_ADD, 0);
	ctrl_send(r, 0, VIRTIO_CONSOLE_PORT_READY, 1);
	ctrl_expect(r, 0, VIRTIO_CONSOLE_CONSOLE_PORT, 1);
	assert_true(ctrl_next(r, &m, WAIT_MS));
	assert_int_equal(m.event, VIRTIO_CONSOLE_RESIZE);
	assert_int_equal(m.extra_len, 4);
	assert_memory_equal(m.extra, "\x50\x00\x19\x00", 4);     /* cols 80, rows 25 */
	ctrl_send(r, 1, VIRTIO_CONSOLE_PORT_READY, 1);
	assert_true(ctrl_next(r, &m, WAIT_MS));
	assert_int_equal(m.event, VIRTIO_CONSOLE_PORT_NAME);
	assert_int_equal(m.id, 1);
	assert_int_equal(m.extra_len, strlen("org.test.agent"));
	assert_memory_equal(m.extra, "org.test.agent", m.extra_len);
	ctrl_expect_none(r);   /* nobody attached to the agent port: no PORT_OPEN yet */
}

/* ---- tests ----------------------------------------------------------------------------------- */

static void test_features_and_config(void **state)
{
	struct rig *r = *state;

	rig_start(r, BASE_FEATURES | VIRTIO_BIT(VIRTIO_CONSOLE_F_EMERG_WRITE), 2);
	assert_int_equal(r->drv.device_id, VIRTIO_ID_CONSOLE);
	assert_true(r->drv.device_features & VIRTIO_BIT(VIRTIO_CONSOLE_F_SIZE));
	assert_true(r->drv.device_features & VIRTIO_BIT(VIRTIO_CONSOLE_F_EMERG_WRITE));
	/* No named ports configured: MULTIPORT is not offered. */
	assert_false(r->drv.device_features & VIRTIO_BIT(VIRTIO_CONSOLE_F_MULTIPORT));
	assert_int_equal(cfg_read(r, CONSOLE_CFG_COLS, 2), 80);
	assert_int_equal(cfg_read(r, CONSOLE_CFG_ROWS, 2), 25);
	assert_int_equal(cfg_read(r, CONSOLE_CFG_MAX_PORTS, 4), 1);
	assert_int_equal(cfg_read(r, CONSOLE_CFG_EMERG_WR, 4), 0);
	assert_int_equal(vdev_ops_by_type("console")->device_id, 3);
}

static void test_configured_size(void **state)
{
	struct rig *r = *state;

	r->cfg.u.console.cols = 132;
	r->cfg.u.console.rows = 43;
	rig_start(r, BASE_FEATURES, 2);
	assert_int_equal(cfg_read(r, CONSOLE_CFG_COLS, 2), 132);
	assert_int_equal(cfg_read(r, CONSOLE_CFG_ROWS, 2), 43);
	assert_int_equal(cfg_read(r, 0, 4), 43u << 16 | 132u);
}

static void test_text_both_ways(void **state)
{
	struct rig *r = *state;
	uint8_t buf[64];
	int fd;

	rig_start(r, BASE_FEATURES, 2);
	rx_post_all(r, &r->rx[0]);
	fd = client_connect(r->sock);
	host_write(fd, "uname -a\n", 9);
	assert_int_equal(guest_recv(r, buf, 9, WAIT_MS), 9);
	assert_memory_equal(buf, "uname -a\n", 9);
	guest_send(r, "Linux guest 6.12\r\n", 18);
	assert_int_equal(host_read(r, fd, buf, 18, WAIT_MS), 18);
	assert_memory_equal(buf, "Linux guest 6.12\r\n", 18);
	assert_int_equal(port_stats(r, 0).to_guest, 9);
	assert_int_equal(port_stats(r, 0).from_guest, 18);
	assert_int_equal(port_stats(r, 0).dropped, 0);
	close(fd);
}

/* Every byte value, and more than the ring and the socket buffers hold, in both directions. */
static void test_binary_both_ways(void **state)
{
	enum { N = 1u << 20 };
	struct rig *r = *state;
	uint8_t *in = malloc(N), *out = malloc(N);
	size_t sent = 0, got = 0, echoed = 0;
	int fd;

	assert_non_null(in);
	assert_non_null(out);
	rig_start(r, BASE_FEATURES, 2);
	rx_post_all(r, &r->rx[0]);
	fd = client_connect(r->sock);
	pattern(in, N, 7);
	for (unsigned i = 0; i < 256; i++)
		in[i] = (uint8_t)i;
	/* Host -> guest, interleaved: the client writes what the socket takes, the guest reads. */
	while (got < N) {
		ssize_t w = send(fd, in + sent, N - sent, MSG_DONTWAIT);

		if (w > 0)
			sent += (size_t)w;
		got += guest_recv(r, out + got, sent - got, 20);
		assert_true(got <= sent);
	}
	assert_memory_equal(in, out, N);
	/* Guest -> host: the guest echoes it back in odd-sized chunks while the client reads. */
	memset(out, 0, N);
	got = 0;
	while (echoed < N) {
		size_t n = N - echoed < 4099 ? N - echoed : 4099;

		guest_send(r, in + echoed, n);
		echoed += n;
		got += host_read(r, fd, out + got, echoed - got, 0);
	}
	got += host_read(r, fd, out + got, N - got, WAIT_MS);
	assert_int_equal(got, N);
	assert_memory_equal(in, out, N);
	assert_int_equal(port_stats(r, 0).dropped, 0);
	close(fd);
	free(in);
	free(out);
}

/* Clients come and go; output in between is replayed to the next one, input works each time. */
static void test_detach_reattach(void **state)
{
	struct rig *r = *state;
	uint8_t buf[64];

	rig_start(r, BASE_FEATURES, 2);
	rx_post_all(r, &r->rx[0]);
	for (int round = 0; round < 3; round++) {
		char line[32];
		int fd = client_connect(r->sock);
		int n = snprintf(line, sizeof(line), "round %d\n", round);

		if (round > 0) {   /* what the guest said while nobody was there */
			assert_int_equal(host_read(r, fd, buf, 6, WAIT_MS), 6);
			assert_memory_equal(buf, "away!\n", 6);
		}
		host_write(fd, line, (size_t)n);
		assert_int_equal(guest_recv(r, buf, (size_t)n, WAIT_MS), n);
		assert_memory_equal(buf, line, (size_t)n);
		guest_send(r, line, (size_t)n);
		assert_int_equal(host_read(r, fd, buf, (size_t)n, WAIT_MS), n);
		assert_memory_equal(buf, line, (size_t)n);
		close(fd);
		pump(r, 30);             /* the device notices the hangup */
		guest_send(r, "away!\n", 6);
	}
	assert_int_equal(port_stats(r, 0).attaches, 3);
}

/* Output with nobody attached is kept and replayed once, in order, to the client that attaches. */
static void test_ring_replay(void **state)
{
	struct rig *r = *state;
	char expect[4096];
	uint8_t buf[4096];
	size_t len = 0;
	int fd;

	rig_start(r, BASE_FEATURES, 2);
	for (int i = 0; i < 100; i++) {
		char line[40];
		int n = snprintf(line, sizeof(line), "[%6d.000] boot message %d\n", i, i);

		guest_send(r, line, (size_t)n);
		memcpy(expect + len, line, (size_t)n);
		len += (size_t)n;
	}
	pump(r, 20);
	fd = client_connect(r->sock);
	assert_int_equal(host_read(r, fd, buf, len, WAIT_MS), len);
	assert_memory_equal(buf, expect, len);
	host_expect_silence(r, fd, 50);
	close(fd);
	pump(r, 30);
	/* The replayed bytes were consumed: the next client gets nothing old. */
	fd = client_connect(r->sock);
	host_expect_silence(r, fd, 50);
	close(fd);
}

/* A second client waits in the backlog until the first leaves, then gets the console. */
static void test_second_client_waits(void **state)
{
	struct rig *r = *state;
	uint8_t buf[16];
	int a, b;

	rig_start(r, BASE_FEATURES, 2);
	rx_post_all(r, &r->rx[0]);
	a = client_connect(r->sock);
	pump(r, 20);
	b = client_connect(r->sock);
	guest_send(r, "one\n", 4);
	assert_int_equal(host_read(r, a, buf, 4, WAIT_MS), 4);
	assert_memory_equal(buf, "one\n", 4);
	host_expect_silence(r, b, 50);
	host_write(b, "from b\n", 7);       /* stays in b's socket for now */
	pump(r, 30);
	assert_int_equal(port_stats(r, 0).to_guest, 0);
	close(a);
	guest_send(r, "two\n", 4);
	assert_int_equal(host_read(r, b, buf, 4, WAIT_MS), 4);
	assert_memory_equal(buf, "two\n", 4);
	assert_int_equal(guest_recv(r, buf, 7, WAIT_MS), 7);
	assert_memory_equal(buf, "from b\n", 7);
	close(b);
}

/* The guest floods with nobody attached: every transfer completes, the oldest bytes go. */
static void test_flood_no_reader(void **state)
{
	enum { N = 4u << 20, RING = 4096 };
	struct rig *r = *state;
	uint8_t *data = malloc(N), buf[RING];
	long t0;
	int fd;

	assert_non_null(data);
	r->cfg.u.console.ring_kib = RING / 1024;
	rig_start(r, BASE_FEATURES, 2);
	pattern(data, N, 99);
	t0 = now_ms();
	guest_send(r, data, N);          /* 64 chains of 64 KiB, each used at once */
	assert_true(now_ms() - t0 < 2000);
	assert_int_equal(port_stats(r, 0).from_guest, N);
	assert_int_equal(port_stats(r, 0).dropped, N - RING);
	fd = client_connect(r->sock);
	assert_int_equal(host_read(r, fd, buf, RING, WAIT_MS), RING);
	assert_memory_equal(buf, data + N - RING, RING);   /* the newest bytes survive */
	host_expect_silence(r, fd, 30);
	close(fd);
	free(data);
}

/* A client that never reads: the guest is not blocked either; what is lost is counted. */
static void test_flood_stuck_reader(void **state)
{
	enum { N = 8u << 20 };
	struct rig *r = *state;
	uint8_t *data = malloc(N), *out = malloc(N);
	size_t got;
	int fd;

	assert_non_null(data);
	assert_non_null(out);
	rig_start(r, BASE_FEATURES, 2);
	fd = client_connect(r->sock);
	pump(r, 20);
	pattern(data, N, 3);
	guest_send(r, data, N);
	assert_true(port_stats(r, 0).dropped > 0);
	got = host_read(r, fd, out, N, 500);
	/* What the client finally reads and what was dropped add up to what the guest wrote. */
	assert_int_equal(got + port_stats(r, 0).dropped, N);
	/* The first bytes went straight into the socket, the last ones through the ring. */
	assert_memory_equal(out, data, 1024);
	assert_memory_equal(out + got - 1024, data + N - 1024, 1024);
	close(fd);
	free(data);
	free(out);
}

/* No receive buffers: input stays in the socket and arrives, whole, once buffers come. */
static void test_no_rx_buffers(void **state)
{
	enum { N = 20000 };
	struct rig *r = *state;
	uint8_t in[N], out[N];
	int fd;

	rig_start(r, BASE_FEATURES, 2);
	fd = client_connect(r->sock);
	pattern(in, N, 5);
	host_write(fd, in, N);
	pump(r, 100);
	assert_int_equal(port_stats(r, 0).to_guest, 0);
	/* Output still flows while input waits. */
	guest_send(r, "ok\n", 3);
	assert_int_equal(host_read(r, fd, out, 3, WAIT_MS), 3);
	/* Two buffers only: input stops again after 1 KiB, the rest stays in the socket. */
	rx_post(r, &r->rx[0], 0);
	rx_post(r, &r->rx[0], 1);
	vdrv_kick(&r->drv, 0);
	pump(r, 50);
	assert_int_equal(port_stats(r, 0).to_guest, 2 * RXLEN);
	uint32_t len;
	void *tok;
	size_t got = 0;
	while (vdrv_get_used(&r->drv, 0, &len, &tok) == 1) {
		memcpy(out + got, r->rx[0].host[(uintptr_t)tok - 1], len);
		got += len;
	}
	assert_int_equal(got, 2 * RXLEN);
	rx_post_all(r, &r->rx[0]);
	assert_int_equal(guest_recv(r, out + got, N - got, WAIT_MS), N - got);
	assert_memory_equal(in, out, N);
	close(fd);
}

/* The log file gets the guest's output too, appended to what it held. */
static void test_log_file(void **state)
{
	struct rig *r = *state;
	char buf[64] = { 0 };
	FILE *f;
	int fd;

	snprintf(r->cfg.u.console.log, CONFIG_PATH_MAX, "%s", r->log);
	f = fopen(r->log, "w");
	assert_non_null(f);
	fputs("old\n", f);
	fclose(f);
	rig_start(r, BASE_FEATURES, 2);
	guest_send(r, "before\n", 7);
	fd = client_connect(r->sock);
	guest_send(r, "after\n", 6);
	assert_int_equal(host_read(r, fd, (uint8_t *)buf, 13, WAIT_MS), 13);
	assert_memory_equal(buf, "before\nafter\n", 13);
	f = fopen(r->log, "r");
	assert_non_null(f);
	assert_int_equal(fread(buf, 1, sizeof(buf), f), 17);
	fclose(f);
	assert_memory_equal(buf, "old\nbefore\nafter\n", 17);
	close(fd);
}

/* Log only: no loop-driven backend, the output lands in the file. */
static void test_log_only(void **state)
{
	struct rig *r = *state;
	char buf[16] = { 0 };
	FILE *f;

	r->cfg.u.console.socket[0] = 0;
	snprintf(r->cfg.u.console.log, CONFIG_PATH_MAX, "%s", r->log);
	rig_start(r, BASE_FEATURES, 2);
	guest_send(r, "\x00\xff\x01 bin", 7);
	f = fopen(r->log, "r");
	assert_non_null(f);
	assert_int_equal(fread(buf, 1, sizeof(buf), f), 7);
	fclose(f);
	assert_memory_equal(buf, "\x00\xff\x01 bin", 7);
}

static void test_emergency_write(void **state)
{
	struct rig *r = *state;
	uint8_t buf[4];
	int fd;

	snprintf(r->cfg.u.console.log, CONFIG_PATH_MAX, "%s", r->log);
	rig_start(r, BASE_FEATURES | VIRTIO_BIT(VIRTIO_CONSOLE_F_EMERG_WRITE), 2);
	fd = client_connect(r->sock);
	pump(r, 20);
	vmmio_write(r->x.dev, VIRTIO_MMIO_CONFIG + CONSOLE_CFG_EMERG_WR, 4, 'P');
	vmmio_write(r->x.dev, VIRTIO_MMIO_CONFIG + CONSOLE_CFG_EMERG_WR, 1, 'a');
	vmmio_write(r->x.dev, VIRTIO_MMIO_CONFIG + CONSOLE_CFG_EMERG_WR, 4, 0x4e41006eu);   /* low byte 'n', the rest ignored */
	/* Writes elsewhere in config space are ignored. */
	vmmio_write(r->x.dev, VIRTIO_MMIO_CONFIG + CONSOLE_CFG_COLS, 2, 'X');
	vmmio_write(r->x.dev, VIRTIO_MMIO_CONFIG + CONSOLE_CFG_EMERG_WR + 1, 1, 'Y');
	assert_int_equal(host_read(r, fd, buf, 3, WAIT_MS), 3);
	assert_memory_equal(buf, "Pan", 3);
	host_expect_silence(r, fd, 30);
	assert_int_equal(cfg_read(r, CONSOLE_CFG_COLS, 2), 80);
	assert_int_equal(port_stats(r, 0).emerg, 3);
	close(fd);
}

/* Without EMERG_WRITE negotiated the register does nothing. */
static void test_emergency_write_not_negotiated(void **state)
{
	struct rig *r = *state;
	int fd;

	rig_start(r, BASE_FEATURES, 2);
	fd = client_connect(r->sock);
	pump(r, 20);
	vmmio_write(r->x.dev, VIRTIO_MMIO_CONFIG + CONSOLE_CFG_EMERG_WR, 4, 'Z');
	host_expect_silence(r, fd, 30);
	assert_int_equal(port_stats(r, 0).emerg, 0);
	close(fd);
}

/* The pty: its path behind pty_link, bytes unchanged both ways, a resize reaches the guest. */
static void test_pty_resize(void **state)
{
	struct rig *r = *state;
	char path[PATH_MAX];
	uint8_t buf[32];
	struct winsize ws = { .ws_row = 50, .ws_col = 160 };
	ssize_t n;
	int pts;

	r->cfg.u.console.socket[0] = 0;
	r->cfg.u.console.pty = true;
	snprintf(r->cfg.u.console.pty_link, CONFIG_PATH_MAX, "%s", r->link);
	rig_start(r, BASE_FEATURES, 2);
	n = readlink(r->link, path, sizeof(path) - 1);
	assert_true(n > 0);
	path[n] = 0;
	assert_true(strncmp(path, "/dev/pts/", 9) == 0);
	pts = open(r->link, O_RDWR | O_NOCTTY | O_NONBLOCK);
	assert_true(pts >= 0);
	assert_int_equal(cfg_read(r, CONSOLE_CFG_COLS, 2), 80);   /* a new pty is 0x0 */
	rx_post_all(r, &r->rx[0]);

	/* Raw both ways: no CR/LF translation, no echo. */
	host_write(pts, "a\rb\n\x03\x7f", 6);
	assert_int_equal(guest_recv(r, buf, 6, WAIT_MS), 6);
	assert_memory_equal(buf, "a\rb\n\x03\x7f", 6);
	guest_send(r, "x\ny\r\n", 5);
	assert_int_equal(host_read(r, pts, buf, 5, WAIT_MS), 5);
	assert_memory_equal(buf, "x\ny\r\n", 5);

	/* A terminal resizes the pty: config interrupt, new size. */
	vdrv_direct_take_irqs(&r->x);
	vdrv_write32(&r->drv, R_ACK, vdrv_read32(&r->drv, R_ISR));
	uint32_t gen = vdrv_read32(&r->drv, 0x0fc);
	assert_int_equal(ioctl(pts, TIOCSWINSZ, &ws), 0);
	assert_int_equal(r->x.io.wait_irq(&r->x.io, WAIT_MS), 1);
	assert_true(vdrv_read32(&r->drv, R_ISR) & VIRTIO_MMIO_INT_CONFIG);
	assert_int_not_equal(vdrv_read32(&r->drv, 0x0fc), gen);
	assert_int_equal(cfg_read(r, CONSOLE_CFG_COLS, 2), 160);
	assert_int_equal(cfg_read(r, CONSOLE_CFG_ROWS, 2), 50);
	vdrv_write32(&r->drv, R_ACK, VIRTIO_MMIO_INT_CONFIG);
	/* No change, no interrupt. */
	pump(r, 600);
	assert_int_equal(vdrv_direct_take_irqs(&r->x), 0);
	close(pts);
	/* The daemon holds the slave open: a terminal leaving is no hangup, output is kept. */
	guest_send(r, "later", 5);
	pts = open(r->link, O_RDWR | O_NOCTTY | O_NONBLOCK);
	assert_true(pts >= 0);
	assert_int_equal(host_read(r, pts, buf, 5, WAIT_MS), 5);
	assert_memory_equal(buf, "later", 5);
	close(pts);
	/* The link goes with the device. */
	vdrv_reset(&r->drv);
	vdrv_direct_close(&r->x);
	struct stat st;
	assert_int_equal(lstat(r->link, &st), -1);
	ev_loop_destroy(r->loop);
	r->open = false;
	char cmd[128];
	snprintf(cmd, sizeof(cmd), "rm -rf %s", r->dir);
	assert_int_equal(system(cmd), 0);
}

/* A configured size is given to the pty, and the pty's later changes win. */
static void test_pty_configured_size(void **state)
{
	struct rig *r = *state;
	struct winsize ws;
	int pts;

	r->cfg.u.console.socket[0] = 0;
	r->cfg.u.console.pty = true;
	r->cfg.u.console.cols = 100;
	r->cfg.u.console.rows = 30;
	snprintf(r->cfg.u.console.pty_link, CONFIG_PATH_MAX, "%s", r->link);
	rig_start(r, BASE_FEATURES, 2);
	pts = open(r->link, O_RDWR | O_NOCTTY);
	assert_true(pts >= 0);
	assert_int_equal(ioctl(pts, TIOCGWINSZ, &ws), 0);
	assert_int_equal(ws.ws_col, 100);
	assert_int_equal(ws.ws_row, 30);
	assert_int_equal(cfg_read(r, CONSOLE_CFG_COLS, 2), 100);
	close(pts);
}

/* Multiport: handshake, named port, PORT_OPEN both ways, data on the named port and port 0. */
static void test_multiport(void **state)
{
	struct rig *r = *state;
	uint8_t buf[64];
	int c0, a;

	multiport_start(r, 0);
	/* Before the guest opens the named port, its input stays in the socket. */
	rx_post_all(r, &r->rx[2]);
	rx_post_all(r, &r->rx[0]);
	a = client_connect(r->port1);
	ctrl_expect(r, 1, VIRTIO_CONSOLE_PORT_OPEN, 1);
	host_write(a, "ping", 4);
	pump(r, 50);
	assert_int_equal(port_stats(r, 1).to_guest, 0);
	ctrl_send(r, 1, VIRTIO_CONSOLE_PORT_OPEN, 1);
	assert_int_equal(guest_recv_q(r, &r->rx[2], buf, 4, WAIT_MS), 4);
	assert_memory_equal(buf, "ping", 4);
	guest_send_q(r, console_rxq(1) + 1, "pong", 4);
	assert_int_equal(host_read(r, a, buf, 4, WAIT_MS), 4);
	assert_memory_equal(buf, "pong", 4);

	/* Port 0 is the console and works alongside. */
	c0 = client_connect(r->sock);
	host_write(c0, "hvc\n", 4);
	assert_int_equal(guest_recv(r, buf, 4, WAIT_MS), 4);
	assert_memory_equal(buf, "hvc\n", 4);
	guest_send(r, "con\n", 4);
	assert_int_equal(host_read(r, c0, buf, 4, WAIT_MS), 4);
	assert_memory_equal(buf, "con\n", 4);
	host_expect_silence(r, a, 20);     /* nothing of port 0 leaks to port 1 */
	ctrl_expect_none(r);               /* port 0 has no PORT_OPEN news */

	/* The guest closes the port: input waits again. */
	ctrl_send(r, 1, VIRTIO_CONSOLE_PORT_OPEN, 0);
	host_write(a, "queued", 6);
	pump(r, 50);
	assert_int_equal(port_stats(r, 1).to_guest, 4);
	ctrl_send(r, 1, VIRTIO_CONSOLE_PORT_OPEN, 1);
	assert_int_equal(guest_recv_q(r, &r->rx[2], buf, 6, WAIT_MS), 6);
	assert_memory_equal(buf, "queued", 6);

	/* The host side closes and reopens: PORT_OPEN 0, then 1. */
	close(a);
	ctrl_expect(r, 1, VIRTIO_CONSOLE_PORT_OPEN, 0);
	a = client_connect(r->port1);
	ctrl_expect(r, 1, VIRTIO_CONSOLE_PORT_OPEN, 1);
	close(a);
	ctrl_expect(r, 1, VIRTIO_CONSOLE_PORT_OPEN, 0);
	close(c0);
}

/* With MULTIPORT a pty resize also goes to the console port as a RESIZE message. */
static void test_multiport_resize(void **state)
{
	struct rig *r = *state;
	struct winsize ws = { .ws_row = 33, .ws_col = 111 };
	struct cmsg m;
	int pts;

	r->cfg.u.console.pty = true;
	snprintf(r->cfg.u.console.pty_link, CONFIG_PATH_MAX, "%s", r->link);
	multiport_start(r, 0);
	pts = open(r->link, O_RDWR | O_NOCTTY);
	assert_true(pts >= 0);
	assert_int_equal(ioctl(pts, TIOCSWINSZ, &ws), 0);
	assert_true(ctrl_next(r, &m, WAIT_MS));
	assert_int_equal(m.event, VIRTIO_CONSOLE_RESIZE);
	assert_int_equal(m.id, 0);
	assert_int_equal(m.extra_len, 4);
	assert_memory_equal(m.extra, "\x6f\x00\x21\x00", 4);    /* cols 111, rows 33 */
	assert_int_equal(cfg_read(r, CONSOLE_CFG_COLS, 2), 111);
	close(pts);
}

/* Hostile control messages are ignored and counted; the console keeps working. */
static void test_malformed_control(void **state)
{
	struct rig *r = *state;
	struct console_ctrl_stats cs;
	uint8_t buf[16];
	int fd;

	multiport_start(r, 0);
	ctrl_raw(r, "\x01\x00\x00", 3);                       /* short */
	ctrl_raw(r, "\x00\x00\x00\x00\x06\x00", 6);           /* short */
	ctrl_send(r, 0, 99, 1);                                /* unknown event */
	ctrl_send(r, 0, 0xffff, 0xffff);
	ctrl_send(r, 2, VIRTIO_CONSOLE_PORT_OPEN, 1);          /* port id out of range */
	ctrl_send(r, 0xffffffffu, VIRTIO_CONSOLE_PORT_READY, 1);
	ctrl_send(r, 1, VIRTIO_CONSOLE_PORT_ADD, 0);           /* device -> driver events */
	ctrl_send(r, 0, VIRTIO_CONSOLE_RESIZE, 0);
	ctrl_send(r, 1, VIRTIO_CONSOLE_PORT_OPEN, 7);          /* open is 0 or 1 */
	/* A chain with no readable part at all. */
	struct vdrv_buf wb = { r->tx_gpa, 8, true };
	assert_true(vdrv_transfer(&r->drv, CONSOLE_Q_CTRL_TX, &wb, 1, false, WAIT_MS) >= 0);
	assert_int_equal(console_get_ctrl_stats(r->x.dev, &cs), 0);
	assert_int_equal(cs.bad, 10);
	ctrl_expect_none(r);
	assert_true(vdev_active(r->x.dev));
	/* A longer message is fine: the header counts, the rest is ignored. */
	ctrl_raw(r, "\x01\x00\x00\x00\x06\x00\x01\x00trailing", 16);
	rx_post_all(r, &r->rx[2]);
	fd = client_connect(r->port1);
	ctrl_expect(r, 1, VIRTIO_CONSOLE_PORT_OPEN, 1);
	host_write(fd, "still ok", 8);
	assert_int_equal(guest_recv_q(r, &r->rx[2], buf, 8, WAIT_MS), 8);
	assert_memory_equal(buf, "still ok", 8);
	assert_int_equal(console_get_ctrl_stats(r->x.dev, &cs), 0);
	assert_int_equal(cs.bad, 10);
	close(fd);
}

/*
 * DEVICE_READY said again announces nothing again: a guest cannot flood the control queue with
 * it (device news wait, bounded, for buffers it never posts), and a message a next instance
 * handles again after a restart sends no port twice.
 */
static void test_control_queue_overflow(void **state)
{
	struct rig *r = *state;
	struct console_ctrl_stats cs;

	r->cfg.u.console.nports = 1;
	snprintf(r->cfg.u.console.ports[0].name, CONFIG_NAME_MAX, "p");
	snprintf(r->cfg.u.console.ports[0].socket, CONFIG_PATH_MAX, "%s", r->port1);
	rig_start(r, BASE_FEATURES | VIRTIO_BIT(VIRTIO_CONSOLE_F_MULTIPORT), 6);
	for (int i = 0; i < 100; i++)
		ctrl_send(r, 0, VIRTIO_CONSOLE_DEVICE_READY, 1);   /* PORT_ADDs only the first time */
	assert_int_equal(console_get_ctrl_stats(r->x.dev, &cs), 0);
	assert_int_equal(cs.dropped, 0);
	rx_post_all(r, &r->rx[1]);
	for (int i = 0; i < 2; i++) {
		struct cmsg m;

		pump(r, 1);
		assert_true(ctrl_next(r, &m, WAIT_MS));
		assert_int_equal(m.event, VIRTIO_CONSOLE_PORT_ADD);
		assert_int_equal(m.id, (unsigned)i);
	}
	ctrl_expect_none(r);
}

/* A reset while a receive buffer is held and a client is attached; the next driver works. */
static void test_reset_and_reinit(void **state)
{
	struct rig *r = *state;
	uint8_t buf[16];
	int fd;

	rig_start(r, BASE_FEATURES, 2);
	rx_post_all(r, &r->rx[0]);
	fd = client_connect(r->sock);
	host_write(fd, "x", 1);
	assert_int_equal(guest_recv(r, buf, 1, WAIT_MS), 1);
	pump(r, 20);                      /* the device now holds a buffer, waiting for input */
	vdrv_reset(&r->drv);
	assert_int_equal(gmem_flat_outstanding(r->x.gm), 0);
	host_write(fd, "during reset", 12);
	pump(r, 30);
	r->x.mem.next = 0;
	assert_int_equal(vdrv_init(&r->drv, &r->x.io, &r->x.mem, BASE_FEATURES, 2, 64), 0);
	r->tx_gpa = vdrv_alloc(&r->x.mem, TXMAX, 16, (void **)&r->tx_host);
	rxq_init(r, &r->rx[0], 0);
	rx_post_all(r, &r->rx[0]);
	assert_int_equal(guest_recv(r, buf, 12, WAIT_MS), 12);
	assert_memory_equal(buf, "during reset", 12);
	guest_send(r, "back", 4);
	assert_int_equal(host_read(r, fd, buf, 4, WAIT_MS), 4);
	assert_memory_equal(buf, "back", 4);
	close(fd);
}

/* Hostile receive chains: no writable part, many tiny pieces; the bytes still arrive in order. */
static void test_hostile_rx_chains(void **state)
{
	struct rig *r = *state;
	uint8_t *h[8], out[8];
	struct vdrv_buf b[8];
	uint32_t len;
	void *tok;
	int fd;

	rig_start(r, BASE_FEATURES, 2);
	fd = client_connect(r->sock);
	host_write(fd, "ABCDEFGH", 8);
	b[0] = (struct vdrv_buf){ r->tx_gpa, 16, false };   /* readable only: nothing to fill */
	assert_true(vdrv_submit(&r->drv, 0, b, 1, false, (void *)1) >= 0);
	for (int i = 0; i < 8; i++)
		b[i] = (struct vdrv_buf){ vdrv_alloc(&r->x.mem, 1, 1, (void **)&h[i]), 1, true };
	assert_true(vdrv_submit(&r->drv, 0, b, 8, false, (void *)2) >= 0);
	vdrv_kick(&r->drv, 0);
	pump(r, 50);
	assert_int_equal(vdrv_get_used(&r->drv, 0, &len, &tok), 1);
	assert_ptr_equal(tok, (void *)1);
	assert_int_equal(len, 0);
	assert_int_equal(vdrv_get_used(&r->drv, 0, &len, &tok), 1);
	assert_ptr_equal(tok, (void *)2);
	assert_int_equal(len, 8);
	for (int i = 0; i < 8; i++)
		out[i] = *h[i];
	assert_memory_equal(out, "ABCDEFGH", 8);
	assert_true(vdev_active(r->x.dev));
	close(fd);
}

/* stdio: fds 0 and 1 replaced by a socket pair for the test's duration. */
static void test_stdio(void **state)
{
	struct rig *r = *state;
	int sv[2], saved0 = dup(0), saved1 = dup(1);
	uint8_t buf[16];

	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
	assert_true(saved0 >= 0 && saved1 >= 0);
	dup2(sv[1], 0);
	dup2(sv[1], 1);
	r->cfg.u.console.socket[0] = 0;
	r->cfg.u.console.stdio = true;
	rig_start(r, BASE_FEATURES, 2);
	rx_post_all(r, &r->rx[0]);
	host_write(sv[0], "stdin!", 6);
	assert_int_equal(guest_recv(r, buf, 6, WAIT_MS), 6);
	assert_memory_equal(buf, "stdin!", 6);
	guest_send(r, "stdout", 6);
	assert_int_equal(host_read(r, sv[0], buf, 6, WAIT_MS), 6);
	assert_memory_equal(buf, "stdout", 6);
	rig_stop(r);
	/* The flags of fd 0 are back to blocking. */
	assert_int_equal(fcntl(0, F_GETFL) & O_NONBLOCK, 0);
	dup2(saved0, 0);
	dup2(saved1, 1);
	close(saved0);
	close(saved1);
	close(sv[0]);
	close(sv[1]);
}

/* Backends that cannot be opened fail creation cleanly. */
static void test_create_errors(void **state)
{
	struct rig *r = *state;
	struct vdrv_direct x;
	struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);

	snprintf(r->cfg.u.console.socket, CONFIG_PATH_MAX, "%s/no/such/dir.sock", r->dir);
	assert_true(vdrv_direct_open(&x, &r->cfg, RAM_GPA, RAM_SIZE, loop) < 0);
	snprintf(r->cfg.u.console.socket, CONFIG_PATH_MAX, "%s", r->sock);
	snprintf(r->cfg.u.console.log, CONFIG_PATH_MAX, "%s/no/such/file.log", r->dir);
	assert_true(vdrv_direct_open(&x, &r->cfg, RAM_GPA, RAM_SIZE, loop) < 0);
	/* The socket of the failed attempt is gone again. */
	struct stat st;
	assert_int_equal(lstat(r->sock, &st), -1);
	/* Interactive backends need a loop. */
	r->cfg.u.console.log[0] = 0;
	assert_int_equal(vdrv_direct_open(&x, &r->cfg, RAM_GPA, RAM_SIZE, NULL), -EINVAL);
	ev_loop_destroy(loop);
	rmdir(r->dir);
}

/* A client attached before the guest is ready for the port: PORT_OPEN follows PORT_NAME. */
static void test_multiport_client_first(void **state)
{
	struct rig *r = *state;
	struct config_console *cc = &r->cfg.u.console;
	struct cmsg m;
	int a;

	cc->nports = 1;
	snprintf(cc->ports[0].name, CONFIG_NAME_MAX, "early");
	snprintf(cc->ports[0].socket, CONFIG_PATH_MAX, "%s", r->port1);
	rig_start(r, BASE_FEATURES | VIRTIO_BIT(VIRTIO_CONSOLE_F_MULTIPORT), 6);
	a = client_connect(r->port1);
	pump(r, 20);
	rx_post_all(r, &r->rx[1]);
	ctrl_expect_none(r);                 /* nothing is said before the port is ready */
	ctrl_send(r, 0, VIRTIO_CONSOLE_DEVICE_READY, 1);
	ctrl_expect(r, 0, VIRTIO_CONSOLE_PORT_ADD, 0);
	ctrl_expect(r, 1, VIRTIO_CONSOLE_PORT_ADD, 0);
	ctrl_send(r, 1, VIRTIO_CONSOLE_PORT_READY, 1);
	assert_true(ctrl_next(r, &m, WAIT_MS));
	assert_int_equal(m.event, VIRTIO_CONSOLE_PORT_NAME);
	assert_memory_equal(m.extra, "early", 5);
	ctrl_expect(r, 1, VIRTIO_CONSOLE_PORT_OPEN, 1);
	/* PORT_READY again (a confused driver) repeats nothing. */
	ctrl_send(r, 1, VIRTIO_CONSOLE_PORT_READY, 1);
	ctrl_expect_none(r);
	close(a);
}

/*
 * A client that leaves while input is paused is noticed without any guest output, and the next
 * one gets the console; a client that left unread input behind stays until the guest took it.
 */
static void test_paused_client_leaves(void **state)
{
	struct rig *r = *state;
	uint8_t buf[8];
	int a, b, c;

	rig_start(r, BASE_FEATURES, 2);
	a = client_connect(r->sock);
	pump(r, 30);
	b = client_connect(r->sock);
	close(a);
	pump(r, 700);                    /* a few ticks */
	assert_int_equal(port_stats(r, 0).attaches, 2);
	host_write(b, "unread", 6);      /* no receive buffers: stays in b's socket */
	pump(r, 30);
	c = client_connect(r->sock);
	close(b);
	pump(r, 700);
	assert_int_equal(port_stats(r, 0).attaches, 2);
	rx_post_all(r, &r->rx[0]);
	assert_int_equal(guest_recv(r, buf, 6, WAIT_MS), 6);
	assert_memory_equal(buf, "unread", 6);
	pump(r, 50);                     /* then b's end of file, and c is attached */
	assert_int_equal(port_stats(r, 0).attaches, 3);
	close(c);
}

/* ring = 0: nothing is kept while nobody is attached, all of it is counted. */
static void test_ring_off(void **state)
{
	struct rig *r = *state;
	uint8_t buf[8];
	int fd;

	r->cfg.u.console.ring_kib = 0;
	rig_start(r, BASE_FEATURES, 2);
	guest_send(r, "lost", 4);
	assert_int_equal(port_stats(r, 0).dropped, 4);
	fd = client_connect(r->sock);
	host_expect_silence(r, fd, 30);
	guest_send(r, "seen", 4);
	assert_int_equal(host_read(r, fd, buf, 4, WAIT_MS), 4);
	assert_memory_equal(buf, "seen", 4);
	close(fd);
}

/* SIGHUP after logrotate: the log is opened again; other changes are refused whole. */
static void test_reload_reopens_log(void **state)
{
	struct rig *r = *state;
	struct config_device n;
	char rotated[160], buf[32] = { 0 };
	FILE *f;

	snprintf(r->cfg.u.console.log, CONFIG_PATH_MAX, "%s", r->log);
	rig_start(r, BASE_FEATURES, 2);
	guest_send(r, "old\n", 4);
	snprintf(rotated, sizeof(rotated), "%s.1", r->log);
	assert_int_equal(rename(r->log, rotated), 0);
	n = r->cfg;
	assert_int_equal(r->x.dev->ops->reconfigure(r->x.dev, &n), 0);
	guest_send(r, "new\n", 4);
	f = fopen(r->log, "r");
	assert_non_null(f);
	assert_int_equal(fread(buf, 1, sizeof(buf), f), 4);
	fclose(f);
	assert_memory_equal(buf, "new\n", 4);
	f = fopen(rotated, "r");
	assert_non_null(f);
	assert_int_equal(fread(buf, 1, sizeof(buf), f), 4);
	fclose(f);
	assert_memory_equal(buf, "old\n", 4);
	/* A new socket path needs a restart: refused, the log stays where it is. */
	snprintf(n.u.console.socket, CONFIG_PATH_MAX, "%s/other.sock", r->dir);
	snprintf(n.u.console.log, CONFIG_PATH_MAX, "%s/other.log", r->dir);
	assert_int_equal(r->x.dev->ops->reconfigure(r->x.dev, &n), -EOPNOTSUPP);
	guest_send(r, "x", 1);
	assert_int_equal(access(n.u.console.log, F_OK), -1);
	/* A log that cannot be opened keeps the old one. */
	n = r->cfg;
	snprintf(n.u.console.log, CONFIG_PATH_MAX, "%s/no/such/dir.log", r->dir);
	assert_true(r->x.dev->ops->reconfigure(r->x.dev, &n) < 0);
	guest_send(r, "y", 1);
	f = fopen(r->log, "r");
	assert_non_null(f);
	assert_int_equal(fread(buf, 1, sizeof(buf), f), 6);
	fclose(f);
	assert_memory_equal(buf, "new\nxy", 6);
}

/* Thousands of random control messages: no crash, the queues stay sane, the port still works. */
static void test_control_storm(void **state)
{
	struct rig *r = *state;
	struct console_ctrl_stats cs;
	unsigned seed = 2024;
	uint8_t msg[24], buf[8];
	struct cmsg m;
	int fd;

	multiport_start(r, 0);
	for (int i = 0; i < 3000; i++) {
		uint32_t len = 1 + (seed = seed * 1103515245u + 12345u) % sizeof(msg);

		pattern(msg, len, seed);
		if (i % 3 == 0)
			msg[4] = (uint8_t)(msg[4] % 8), msg[5] = 0;    /* known events, random ids */
		ctrl_raw(r, msg, len);
		while (ctrl_next(r, &m, 0))
			;                                           /* whatever the device answers */
	}
	assert_int_equal(console_get_ctrl_stats(r->x.dev, &cs), 0);
	assert_true(cs.bad > 1000);
	assert_true(vdev_active(r->x.dev));
	assert_int_equal(gmem_flat_bad_unmaps(r->x.gm), 0);
	/* Port 1 may be open or closed now; open it and use it. */
	ctrl_send(r, 1, VIRTIO_CONSOLE_PORT_OPEN, 1);
	rx_post_all(r, &r->rx[2]);
	fd = client_connect(r->port1);
	host_write(fd, "alive", 5);
	assert_int_equal(guest_recv_q(r, &r->rx[2], buf, 5, WAIT_MS), 5);
	assert_memory_equal(buf, "alive", 5);
	close(fd);
}

#define T(fn) cmocka_unit_test_setup_teardown(fn, setup_cfg, teardown)

int main(void)
{
	const struct CMUnitTest tests[] = {
		T(test_features_and_config),
		T(test_configured_size),
		T(test_text_both_ways),
		T(test_binary_both_ways),
		T(test_detach_reattach),
		T(test_ring_replay),
		T(test_second_client_waits),
		T(test_flood_no_reader),
		T(test_flood_stuck_reader),
		T(test_no_rx_buffers),
		T(test_log_file),
		T(test_log_only),
		T(test_reload_reopens_log),
		T(test_emergency_write),
		T(test_emergency_write_not_negotiated),
		T(test_pty_resize),
		T(test_pty_configured_size),
		T(test_multiport),
		T(test_multiport_resize),
		T(test_multiport_client_first),
		T(test_paused_client_leaves),
		T(test_ring_off),
		T(test_malformed_control),
		T(test_control_queue_overflow),
		T(test_control_storm),
		T(test_reset_and_reinit),
		T(test_hostile_rx_chains),
		T(test_stdio),
		cmocka_unit_test_setup(test_create_errors, setup_cfg),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
