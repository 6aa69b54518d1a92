/*
 * virtio-vsock through the real daemon on xensim, its seccomp filter on in the plain pass: the
 * guest connects to a host program listening at PATH_P (the daemon's socket() and connect()
 * happen while it serves) and both talk; a host program connects to PATH with "CONNECT P" and
 * talks to the guest; the daemon stops cleanly with connections open, its socket left for the
 * next instance.
 */
#include <endian.h>
#include <errno.h>
#include <poll.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "devices/device.h"
#include "devices/virtqueue.h"
#include "devices/vsock.h"
#include "tests/integration/itest.h"
#include "tests/lib/unix_sock.h"

#define RAM_GPA   UINT64_C(0x40000000)
#define HEAP_SIZE (4u << 20)
#define SPI       33
#define WAIT_MS   5000
#define NRX       8
#define RXLEN     (VSOCK_HDR_LEN + 1024u)
#define CID       7u

static const char ini_fmt[] =
	"[guest]\nname = g1\ndiscovery = explicit\n\n"
	"[vsock \"v0\"]\nmmio = 0x02000000\nirq = 33\nguest_cid = %u\nsocket = %s\n";

struct guest {
	struct itest *t;
	struct xsim_vio vio;
	struct vdrv_mem mem;
	struct vdrv drv;
	char dir[64], path[96];
	uint64_t tx_gpa, rx_gpa[NRX];
	uint8_t *tx, *rx[NRX];
};

static long now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1000L + ts.tv_nsec / 1000000L;
}

static void rx_post(struct guest *g, unsigned i)
{
	struct vdrv_buf b = { g->rx_gpa[i], RXLEN, true };

	assert_true(vdrv_submit(&g->drv, VSOCK_Q_RX, &b, 1, false, (void *)(uintptr_t)(i + 1)) >= 0);
}

/* The daemon up, the driver negotiating want with rings of qsize, NRX receive buffers posted. */
static void guest_start_ring(struct guest *g, uint64_t want, uint16_t qsize)
{
	char ini[512];

	memset(g, 0, sizeof(*g));
	snprintf(g->dir, sizeof(g->dir), "/tmp/itest_vsock.XXXXXX");
	assert_non_null(mkdtemp(g->dir));
	snprintf(g->path, sizeof(g->path), "%s/v.sock", g->dir);
	g->t = itest_new(&(struct xsim_dom_opts){ .name = "g1" });
	assert_non_null(g->t);
	snprintf(ini, sizeof(ini), ini_fmt, CID, g->path);
	assert_int_equal(itest_serve(g->t, ini), 0);
	xsim_vio_init(&g->vio, g->t->dom, 0, WIN0, SPI);
	assert_int_equal(xsim_vmem_init(&g->mem, g->t->dom, RAM_GPA, HEAP_SIZE, false), 0);
	assert_int_equal(vdrv_init(&g->drv, &g->vio.io, &g->mem, want, 3, qsize), 0);
	assert_int_equal(g->drv.device_id, VIRTIO_ID_VSOCK);
	g->tx_gpa = vdrv_alloc(&g->mem, 4096, 16, (void **)&g->tx);
	assert_true(g->tx_gpa != 0);
	for (unsigned i = 0; i < NRX; i++) {
		g->rx_gpa[i] = vdrv_alloc(&g->mem, RXLEN, 16, (void **)&g->rx[i]);
		assert_true(g->rx_gpa[i] != 0);
		rx_post(g, i);
	}
	vdrv_kick(&g->drv, VSOCK_Q_RX);
}

static void guest_start(struct guest *g)
{
	guest_start_ring(g, VIRTIO_BIT(VIRTIO_F_VERSION_1), 64);
}

/* A clean stop while the guest lives: exit 0, the socket left for a next instance. */
static void guest_stop(struct guest *g)
{
	struct stat st;
	char cmd[128];
	int status = itest_free(g->t);

	assert_true(WIFEXITED(status));
	assert_int_equal(WEXITSTATUS(status), 0);
	assert_int_equal(lstat(g->path, &st), 0);
	assert_true(S_ISSOCK(st.st_mode));
	snprintf(cmd, sizeof(cmd), "rm -rf %s", g->dir);
	assert_int_equal(system(cmd), 0);
}

static void guest_send(struct guest *g, uint16_t op, uint32_t gport, uint32_t hport,
		       const void *p, uint32_t n)
{
	struct vsock_hdr h = { .src_cid = CID, .dst_cid = VSOCK_CID_HOST, .src_port = gport,
			       .dst_port = hport, .len = n, .type = VSOCK_TYPE_STREAM, .op = op,
			       .buf_alloc = 65536 };
	struct vdrv_buf b = { g->tx_gpa, VSOCK_HDR_LEN + n, false };

	assert_true(n <= 4096 - VSOCK_HDR_LEN);
	vsock_hdr_put(g->tx, &h);
	if (n)
		memcpy(g->tx + VSOCK_HDR_LEN, p, n);
	assert_int_equal(vdrv_transfer(&g->drv, VSOCK_Q_TX, &b, 1, false, WAIT_MS), 0);
}

/* The next packet for the guest (header into h, payload into data); false on timeout. */
static bool guest_recv(struct guest *g, struct vsock_hdr *h, uint8_t *data)
{
	long end = now_ms() + WAIT_MS;

	while (now_ms() < end) {
		uint32_t len;
		void *tok;

		if (vdrv_get_used(&g->drv, VSOCK_Q_RX, &len, &tok) == 1) {
			unsigned i = (unsigned)(uintptr_t)tok - 1;

			assert_true(i < NRX && len >= VSOCK_HDR_LEN && len <= RXLEN);
			vsock_hdr_get(h, g->rx[i]);
			assert_int_equal(h->len, len - VSOCK_HDR_LEN);
			memcpy(data, g->rx[i] + VSOCK_HDR_LEN, h->len);
			rx_post(g, i);
			vdrv_kick(&g->drv, VSOCK_Q_RX);
			return true;
		}
		vdrv_enable_irq(&g->drv, VSOCK_Q_RX);
		g->vio.io.wait_irq(&g->vio.io, 10);
	}
	return false;
}

static void guest_expect(struct guest *g, uint16_t op, uint32_t gport, struct vsock_hdr *h,
			 uint8_t *data)
{
	assert_true(guest_recv(g, h, data));
	assert_int_equal(h->op, op);
	assert_int_equal(h->dst_port, gport);
	assert_int_equal(h->dst_cid, CID);
	assert_int_equal(h->src_cid, VSOCK_CID_HOST);
}

static void test_guest_connects_to_host(void **state)
{
	char path[240];
	struct guest g;
	struct vsock_hdr h;
	uint8_t data[RXLEN], buf[16];
	int lfd, fd;

	(void)state;
	guest_start(&g);
	assert_true(snprintf(path, sizeof(path), "%s_5000", g.path) < (int)sizeof(path));
	lfd = unix_sock_listen(path, 4);
	assert_true(lfd >= 0);
	/* Nobody at port 5001: RST. */
	guest_send(&g, VSOCK_OP_REQUEST, 1024, 5001, NULL, 0);
	guest_expect(&g, VSOCK_OP_RST, 1024, &h, data);
	guest_send(&g, VSOCK_OP_REQUEST, 1024, 5000, NULL, 0);
	guest_expect(&g, VSOCK_OP_RESPONSE, 1024, &h, data);
	assert_int_equal(h.src_port, 5000);
	fd = accept(lfd, NULL, NULL);
	assert_true(fd >= 0);
	guest_send(&g, VSOCK_OP_RW, 1024, 5000, "hello", 5);
	assert_int_equal(itest_read_fd(fd, buf, 5, WAIT_MS), 5);
	assert_memory_equal(buf, "hello", 5);
	assert_int_equal(write(fd, "world", 5), 5);
	guest_expect(&g, VSOCK_OP_RW, 1024, &h, data);
	assert_int_equal(h.len, 5);
	assert_memory_equal(data, "world", 5);
	assert_int_equal(g.vio.errors, 0);
	guest_stop(&g);
	close(fd);
	close(lfd);
}

static void test_host_connects_to_guest(void **state)
{
	struct guest g;
	struct vsock_hdr h;
	uint8_t data[RXLEN], buf[32];
	char ok[32];
	int fd;

	(void)state;
	guest_start(&g);
	fd = unix_sock_connect(g.path);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, "CONNECT 52\n", 11), 11);
	guest_expect(&g, VSOCK_OP_REQUEST, 52, &h, data);
	assert_true(h.src_port >= VSOCK_LOCAL_PORT_BASE);
	guest_send(&g, VSOCK_OP_RESPONSE, 52, h.src_port, NULL, 0);
	snprintf(ok, sizeof(ok), "OK %u\n", h.src_port);
	assert_int_equal(itest_read_fd(fd, buf, strlen(ok), WAIT_MS), strlen(ok));
	assert_memory_equal(buf, ok, strlen(ok));
	guest_send(&g, VSOCK_OP_RW, 52, h.src_port, "from guest", 10);
	assert_int_equal(itest_read_fd(fd, buf, 10, WAIT_MS), 10);
	assert_memory_equal(buf, "from guest", 10);
	assert_int_equal(write(fd, "from host", 9), 9);
	guest_expect(&g, VSOCK_OP_RW, 52, &h, data);
	assert_memory_equal(data, "from host", 9);
	assert_int_equal(g.vio.errors, 0);
	guest_stop(&g);
	close(fd);
}

/* Wait for n more used transmit chains. */
static void tx_wait_used(struct guest *g, unsigned n)
{
	int got = vdrv_wait_used(&g->drv, VSOCK_Q_TX, n, WAIT_MS);

	assert_true(got >= 0);
	if ((unsigned)got < n) {
		itest_dump_log(g->t);
		fail_msg("%d of %u transmit chains used", got, n);
	}
}

/*
 * A full transmit ring (VQ_BUDGET RSTs for connections that do not exist: dropped without an
 * answer) taken in one turn ends the budget with the ring empty. The next packet is kicked for
 * only if avail_event asks, as Linux does; before vq_more() the device left it stale and packet
 * 257 was never taken.
 */
static void test_tx_budget_rearm(void **state)
{
	struct vsock_hdr h = { .src_cid = CID, .dst_cid = VSOCK_CID_HOST, .dst_port = 9,
			       .type = VSOCK_TYPE_STREAM, .op = VSOCK_OP_RST };
	struct vdrv_buf b = { 0, VSOCK_HDR_LEN, false };
	struct guest g;
	uint64_t gpa;
	uint8_t *host;
	uint16_t old;

	(void)state;
	guest_start_ring(&g, VIRTIO_BIT(VIRTIO_F_VERSION_1) | VIRTIO_BIT(VIRTIO_F_EVENT_IDX),
			 VQ_BUDGET);
	assert_int_equal(g.drv.vq[VSOCK_Q_TX].num, VQ_BUDGET);
	gpa = vdrv_alloc(&g.mem, (VQ_BUDGET + 1) * VSOCK_HDR_LEN, 16, (void **)&host);
	assert_true(gpa != 0);
	for (unsigned i = 0; i <= VQ_BUDGET; i++) {
		h.src_port = 1000 + i;
		vsock_hdr_put(host + i * VSOCK_HDR_LEN, &h);
	}
	for (unsigned i = 0; i < VQ_BUDGET; i++) {
		b.gpa = gpa + i * VSOCK_HDR_LEN;
		assert_true(vdrv_submit(&g.drv, VSOCK_Q_TX, &b, 1, false, &g) >= 0);
	}
	vdrv_kick(&g.drv, VSOCK_Q_TX);
	tx_wait_used(&g, VQ_BUDGET);
	/*
	 * The daemon answers a register read from its loop, after the turn that used the chains
	 * has returned: packet 257 cannot slip in before that turn's last look at the ring, which
	 * would serve it and hide a stale avail_event.
	 */
	vdrv_status(&g.drv);
	old = g.drv.vq[VSOCK_Q_TX].avail_idx;
	b.gpa = gpa + VQ_BUDGET * VSOCK_HDR_LEN;
	assert_true(vdrv_submit(&g.drv, VSOCK_Q_TX, &b, 1, false, &g) >= 0);
	vdrv_kick_if_asked(&g.drv, VSOCK_Q_TX, old);
	tx_wait_used(&g, 1);
	assert_int_equal(g.vio.errors, 0);
	guest_stop(&g);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_guest_connects_to_host),
		cmocka_unit_test(test_host_connects_to_guest),
		cmocka_unit_test(test_tx_budget_rearm),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
