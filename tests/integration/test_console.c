/*
 * virtio-console through the real daemon on xensim: a line typed into the console socket arrives
 * in the guest's receive buffer and the guest's reply comes back on the socket; output written
 * while nobody is attached is replayed; the log file keeps everything; a named port on its own
 * socket goes through the MULTIPORT handshake; the socket stays for the next instance when the
 * daemon stops while the guest lives.
 */
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
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "devices/console.h"
#include "tests/integration/itest.h"
#include "tests/lib/unix_sock.h"

#define RAM_GPA   UINT64_C(0x40000000)
#define HEAP_SIZE (4u << 20)
#define SPI       33
#define WAIT_MS   5000
#define NRX       8
#define RXLEN     256

static const char ini_fmt[] =
	"[guest]\nname = g1\ndiscovery = explicit\ngrant_usage = %s\n\n"
	"[console \"hvc0\"]\nmmio = 0x02000000\nirq = 33\n"
	"socket = %s/hvc0.sock\nlog = %s/hvc0.log\n%s%s";

struct guest {
	struct itest *t;
	struct xsim_vio vio;
	struct vdrv_mem mem;
	struct vdrv drv;
	char dir[64], sock[128], port_sock[128];
	uint64_t tx_gpa;
	uint8_t *tx;
	uint64_t rx_gpa[3][NRX];
	uint8_t *rx[3][NRX];
};

static long now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1000L + ts.tv_nsec / 1000000L;
}

static uint64_t galloc(struct guest *g, uint32_t len, uint8_t **host)
{
	uint64_t gpa = vdrv_alloc(&g->mem, len, 16, (void **)host);

	assert_true(gpa != 0);
	return gpa;
}

static void rx_post(struct guest *g, unsigned slot, unsigned q, unsigned i)
{
	struct vdrv_buf b = { g->rx_gpa[slot][i], RXLEN, true };

	memset(g->rx[slot][i], 0, RXLEN);
	assert_true(vdrv_submit(&g->drv, q, &b, 1, false, (void *)(uintptr_t)(i + 1)) >= 0);
}

/* slot: 0 port 0, 1 control receive queue, 2 port 1. */
static void rx_setup(struct guest *g, unsigned slot, unsigned q)
{
	for (unsigned i = 0; i < NRX; i++) {
		g->rx_gpa[slot][i] = galloc(g, RXLEN, &g->rx[slot][i]);
		rx_post(g, slot, q, i);
	}
	vdrv_kick(&g->drv, q);
}

/*
 * named: add the port "org.test.agent" on <dir>/agent.sock (the device offers MULTIPORT);
 * pty: add a pty linked at <dir>/hvc0.pty.
 */
static void guest_start_with(struct guest *g, bool grants, bool named, bool pty, uint64_t want,
			     unsigned nq)
{
	char ini[1024], extra[200] = "", ptyline[200] = "";

	memset(g, 0, sizeof(*g));
	snprintf(g->dir, sizeof(g->dir), "/tmp/itest_console.XXXXXX");
	assert_non_null(mkdtemp(g->dir));
	snprintf(g->sock, sizeof(g->sock), "%s/hvc0.sock", g->dir);
	snprintf(g->port_sock, sizeof(g->port_sock), "%s/agent.sock", g->dir);
	if (named)
		snprintf(extra, sizeof(extra), "port = org.test.agent:socket:%s\n", g->port_sock);
	if (pty)
		snprintf(ptyline, sizeof(ptyline), "pty = yes\npty_link = %s/hvc0.pty\n", g->dir);
	g->t = itest_new(&(struct xsim_dom_opts){ .name = "g1" });
	assert_non_null(g->t);
	snprintf(ini, sizeof(ini), ini_fmt, grants ? "yes" : "no", g->dir, g->dir, extra,
		 ptyline);
	assert_int_equal(itest_serve(g->t, ini), 0);
	xsim_vio_init(&g->vio, g->t->dom, 0, WIN0, SPI);
	assert_int_equal(xsim_vmem_init(&g->mem, g->t->dom, RAM_GPA, HEAP_SIZE, grants), 0);
	want |= VIRTIO_BIT(VIRTIO_F_VERSION_1);
	if (grants)
		want |= VIRTIO_BIT(VIRTIO_F_ACCESS_PLATFORM);
	assert_int_equal(vdrv_init(&g->drv, &g->vio.io, &g->mem, want, nq, 64), 0);
	assert_int_equal(g->drv.device_id, VIRTIO_ID_CONSOLE);
	g->tx_gpa = galloc(g, 4096, &g->tx);
}

static void guest_start(struct guest *g, bool grants, bool named, uint64_t want, unsigned nq)
{
	guest_start_with(g, grants, named, false, want, nq);
}

/*
 * Stop the daemon (clean exit) while the guest lives: it hands the guest over, and the socket
 * stays for the next instance (which takes its listener over, or listens on it again); the
 * temp dir stays for the caller.
 */
static void guest_stop(struct guest *g)
{
	struct stat st;
	int status = itest_free(g->t);

	assert_true(WIFEXITED(status));
	assert_int_equal(WEXITSTATUS(status), 0);
	assert_int_equal(lstat(g->sock, &st), 0);
	assert_true(S_ISSOCK(st.st_mode));
}

static void guest_cleanup(struct guest *g)
{
	char cmd[128];

	snprintf(cmd, sizeof(cmd), "rm -rf %s", g->dir);
	assert_int_equal(system(cmd), 0);
}

static void guest_send(struct guest *g, unsigned q, const char *s)
{
	size_t n = strlen(s);
	struct vdrv_buf b = { g->tx_gpa, (uint32_t)n, false };

	assert_true(n <= 4096);
	memcpy(g->tx, s, n);
	assert_int_equal(vdrv_transfer(&g->drv, q, &b, 1, false, WAIT_MS), 0);
}

/* Collect want bytes from the receive buffers of queue q (slot as in rx_setup). */
static size_t guest_recv(struct guest *g, unsigned slot, unsigned q, char *out, size_t want)
{
	long end = now_ms() + WAIT_MS;
	size_t got = 0;

	while (got < want && now_ms() < end) {
		uint32_t len;
		void *tok;

		if (vdrv_get_used(&g->drv, q, &len, &tok) == 1) {
			unsigned i = (unsigned)(uintptr_t)tok - 1;

			assert_true(i < NRX && len <= RXLEN && got + len <= want);
			memcpy(out + got, g->rx[slot][i], len);
			got += len;
			rx_post(g, slot, q, i);
			vdrv_kick(&g->drv, q);
			continue;
		}
		vdrv_enable_irq(&g->drv, q);
		g->vio.io.wait_irq(&g->vio.io, 10);
	}
	return got;
}

static int client_connect(const char *path)
{
	int fd = unix_sock_connect(path);

	if (fd < 0)
		fail_msg("cannot connect to %s: %s", path, strerror(errno));
	return fd;
}

static void line_round_trip(bool grants)
{
	struct guest g;
	char buf[300];
	int fd;

	guest_start(&g, grants, false, 0, 2);
	rx_setup(&g, 0, 0);
	fd = client_connect(g.sock);
	assert_int_equal(write(fd, "echo hello\n", 11), 11);
	assert_int_equal(guest_recv(&g, 0, 0, buf, 11), 11);
	assert_memory_equal(buf, "echo hello\n", 11);
	guest_send(&g, 1, "hello\r\n");
	assert_int_equal(itest_read_fd(fd, buf, 7, WAIT_MS), 7);
	assert_memory_equal(buf, "hello\r\n", 7);
	/* Binary, every byte value, both ways. */
	char all[256];
	for (int i = 0; i < 256; i++)
		all[i] = (char)i;
	assert_int_equal(write(fd, all, 256), 256);
	assert_int_equal(guest_recv(&g, 0, 0, buf, 256), 256);
	assert_memory_equal(buf, all, 256);
	struct vdrv_buf b = { g.tx_gpa, 256, false };
	memcpy(g.tx, all, 256);
	assert_int_equal(vdrv_transfer(&g.drv, 1, &b, 1, false, WAIT_MS), 0);
	assert_int_equal(itest_read_fd(fd, buf, 256, WAIT_MS), 256);
	assert_memory_equal(buf, all, 256);
	close(fd);
	assert_int_equal(g.vio.errors, 0);
	guest_stop(&g);
	guest_cleanup(&g);
}

static void test_line_round_trip(void **state)
{
	(void)state;
	line_round_trip(false);
}

static void test_line_round_trip_grants(void **state)
{
	(void)state;
	line_round_trip(true);
}

/* Boot output with nobody attached is replayed to the first client; the log has it all. */
static void test_replay_and_log(void **state)
{
	struct guest g;
	char buf[128] = { 0 }, path[160];
	FILE *f;
	int fd;

	(void)state;
	guest_start(&g, false, false, 0, 2);
	guest_send(&g, 1, "boot: stage 1\n");
	guest_send(&g, 1, "boot: stage 2\n");
	fd = client_connect(g.sock);
	assert_int_equal(itest_read_fd(fd, buf, 28, WAIT_MS), 28);
	assert_memory_equal(buf, "boot: stage 1\nboot: stage 2\n", 28);
	guest_send(&g, 1, "login: ");
	assert_int_equal(itest_read_fd(fd, buf, 7, WAIT_MS), 7);
	close(fd);
	guest_stop(&g);
	snprintf(path, sizeof(path), "%s/hvc0.log", g.dir);
	f = fopen(path, "r");
	assert_non_null(f);
	memset(buf, 0, sizeof(buf));
	assert_int_equal(fread(buf, 1, sizeof(buf), f), 35);
	fclose(f);
	assert_string_equal(buf, "boot: stage 1\nboot: stage 2\nlogin: ");
	guest_cleanup(&g);
}

static void ctrl_send(struct guest *g, uint32_t id, uint16_t event, uint16_t value)
{
	uint8_t m[8];
	struct vdrv_buf b = { g->tx_gpa, 8, false };

	memcpy(m, &id, 4);
	memcpy(m + 4, &event, 2);
	memcpy(m + 6, &value, 2);
	memcpy(g->tx, m, 8);
	assert_int_equal(vdrv_transfer(&g->drv, CONSOLE_Q_CTRL_TX, &b, 1, false, WAIT_MS), 0);
}

/* The next control message; extra (up to 64 bytes) after the 8-byte header. */
static void ctrl_expect(struct guest *g, uint32_t id, uint16_t event, uint16_t value,
			const char *extra, size_t extra_len)
{
	long end = now_ms() + WAIT_MS;
	uint32_t len;
	void *tok;

	while (vdrv_get_used(&g->drv, CONSOLE_Q_CTRL_RX, &len, &tok) != 1) {
		assert_true(now_ms() < end);
		vdrv_enable_irq(&g->drv, CONSOLE_Q_CTRL_RX);
		g->vio.io.wait_irq(&g->vio.io, 10);
	}
	unsigned i = (unsigned)(uintptr_t)tok - 1;
	uint8_t *m = g->rx[1][i];
	uint32_t mid;
	uint16_t mev, mval;

	memcpy(&mid, m, 4);
	memcpy(&mev, m + 4, 2);
	memcpy(&mval, m + 6, 2);
	assert_int_equal(mev, event);
	assert_int_equal(mid, id);
	assert_int_equal(mval, value);
	if (extra) {
		assert_int_equal(len, 8 + extra_len);
		assert_memory_equal(m + 8, extra, extra_len);
	}
	rx_post(g, 1, CONSOLE_Q_CTRL_RX, i);
	vdrv_kick(&g->drv, CONSOLE_Q_CTRL_RX);
}

/* A named port: the handshake Linux does, then data both ways on /dev/virtio-ports/NAME. */
static void test_named_port(void **state)
{
	struct guest g;
	char buf[16];
	int fd;

	(void)state;
	guest_start(&g, false, true, VIRTIO_BIT(VIRTIO_CONSOLE_F_MULTIPORT), 6);
	assert_true(g.drv.features & VIRTIO_BIT(VIRTIO_CONSOLE_F_MULTIPORT));
	rx_setup(&g, 1, CONSOLE_Q_CTRL_RX);
	rx_setup(&g, 0, 0);
	rx_setup(&g, 2, console_rxq(1));
	ctrl_send(&g, 0, VIRTIO_CONSOLE_DEVICE_READY, 1);
	ctrl_expect(&g, 0, VIRTIO_CONSOLE_PORT_ADD, 0, NULL, 0);
	ctrl_expect(&g, 1, VIRTIO_CONSOLE_PORT_ADD, 0, NULL, 0);
	ctrl_send(&g, 0, VIRTIO_CONSOLE_PORT_READY, 1);
	ctrl_expect(&g, 0, VIRTIO_CONSOLE_CONSOLE_PORT, 1, NULL, 0);
	ctrl_expect(&g, 0, VIRTIO_CONSOLE_RESIZE, 0, "\x50\x00\x19\x00", 4);
	ctrl_send(&g, 1, VIRTIO_CONSOLE_PORT_READY, 1);
	ctrl_expect(&g, 1, VIRTIO_CONSOLE_PORT_NAME, 1, "org.test.agent", 14);
	fd = client_connect(g.port_sock);
	ctrl_expect(&g, 1, VIRTIO_CONSOLE_PORT_OPEN, 1, NULL, 0);
	ctrl_send(&g, 1, VIRTIO_CONSOLE_PORT_OPEN, 1);
	assert_int_equal(write(fd, "{\"ping\"}", 8), 8);
	assert_int_equal(guest_recv(&g, 2, console_rxq(1), buf, 8), 8);
	assert_memory_equal(buf, "{\"ping\"}", 8);
	guest_send(&g, console_rxq(1) + 1, "{\"pong\"}");
	assert_int_equal(itest_read_fd(fd, buf, 8, WAIT_MS), 8);
	assert_memory_equal(buf, "{\"pong\"}", 8);
	close(fd);
	ctrl_expect(&g, 1, VIRTIO_CONSOLE_PORT_OPEN, 0, NULL, 0);
	assert_int_equal(g.vio.errors, 0);
	guest_stop(&g);
	struct stat st;
	assert_int_equal(lstat(g.port_sock, &st), 0);   /* the next instance's */
	guest_cleanup(&g);
}

/* The pty under the daemon (and its sandbox): a line both ways, a resize, the link removed. */
static void test_pty(void **state)
{
	struct guest g;
	struct winsize ws = { .ws_row = 48, .ws_col = 150 };
	char link[160], buf[32];
	struct stat st;
	uint16_t cols = 0, rows = 0;
	long end;
	int pts;

	(void)state;
	guest_start_with(&g, false, false, true, VIRTIO_BIT(VIRTIO_CONSOLE_F_SIZE), 2);
	snprintf(link, sizeof(link), "%s/hvc0.pty", g.dir);
	assert_true(xsim_daemon_log_has(&g.t->dm, "console on pty /dev/pts/"));
	pts = open(link, O_RDWR | O_NOCTTY);
	assert_true(pts >= 0);
	rx_setup(&g, 0, 0);
	assert_int_equal(write(pts, "whoami\r", 7), 7);
	assert_int_equal(guest_recv(&g, 0, 0, buf, 7), 7);
	assert_memory_equal(buf, "whoami\r", 7);
	guest_send(&g, 1, "root\r\n");
	assert_int_equal(itest_read_fd(pts, buf, 6, WAIT_MS), 6);
	assert_memory_equal(buf, "root\r\n", 6);
	vdrv_config_read(&g.drv, CONSOLE_CFG_COLS, &cols, 2);
	assert_int_equal(cols, 80);
	assert_int_equal(ioctl(pts, TIOCSWINSZ, &ws), 0);
	end = now_ms() + WAIT_MS;
	while (!(vdrv_read32(&g.drv, 0x060) & 2u) && now_ms() < end)
		g.vio.io.wait_irq(&g.vio.io, 10);
	assert_true(vdrv_read32(&g.drv, 0x060) & 2u);
	vdrv_write32(&g.drv, 0x064, 2u);
	vdrv_config_read(&g.drv, CONSOLE_CFG_COLS, &cols, 2);
	vdrv_config_read(&g.drv, CONSOLE_CFG_ROWS, &rows, 2);
	assert_int_equal(cols, 150);
	assert_int_equal(rows, 48);
	close(pts);
	assert_int_equal(g.vio.errors, 0);
	guest_stop(&g);
	assert_int_equal(lstat(link, &st), 0);   /* left to the next instance with the pty */
	guest_cleanup(&g);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_line_round_trip),
		cmocka_unit_test(test_line_round_trip_grants),
		cmocka_unit_test(test_replay_and_log),
		cmocka_unit_test(test_named_port),
		cmocka_unit_test(test_pty),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
