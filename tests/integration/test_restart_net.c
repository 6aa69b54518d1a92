/*
 * Restarts the guest does not notice (issue 22), virtio-net: the real daemon on xensim serves a
 * real tap in a network namespace private to this test, kills itself at a point of a frame's
 * life (lib/testpoint.h), and is restarted as systemd does (restart_rig.h). The guest sends
 * numbered UDP frames on both queue pairs to a socket on the host's end of the tap and receives
 * numbered ones from it. Checked: no frame arrives twice either way; transmit frames are lost
 * only as the rule says (those in flight at the crash are returned unsent: at most the ones
 * out at that moment); the queue pairs the guest set survive (the second pair's transmit queue
 * is served after the restart), and so does the tap (taken back from the fd store: its address
 * and the frames queued in it stay).
 */
#include <endian.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/if_packet.h>
#include <linux/if_tun.h>
#include <sched.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "devices/device.h"
#include "devices/net.h"
#include "tests/integration/itest.h"
#include "tests/integration/restart_rig.h"
#include "tests/integration/tap_peer.h"
#include "tests/lib/net_frames.h"

#define RAM_GPA    UINT64_C(0x40000000)
#define HEAP_SIZE  (16u << 20)
#define SPI        33
#define WAIT_MS    30000
#define R_INT_STATUS 0x60
#define R_INT_ACK    0x64
#define PAIRS      2u
#define RX_SLOTS   32u
#define RX_BUF     1526u
#define DEPTH      4u                   /* TX frames out at a time */
#define NTX        120u
#define NRX        60u
#define MARK       0xffffffffu
#define TAP        "vnr0"
#define F(b) VIRTIO_BIT(VIRTIO_NET_F_##b)
#define WANT (VIRTIO_BIT(VIRTIO_F_VERSION_1) | VIRTIO_BIT(VIRTIO_F_EVENT_IDX) | F(MAC) | \
	      F(STATUS) | F(CTRL_VQ) | F(CTRL_RX) | F(MQ))

struct guest {
	struct rig *r;
	struct xsim_vio vio;
	struct vdrv_mem mem;
	struct vdrv drv;
	uint8_t gmac[6], hmac[6];
	uint64_t rx_gpa[PAIRS], tx_gpa, ctrl_gpa;
	uint8_t *rx_host[PAIRS], *tx_host, *ctrl_host;
	unsigned tx_out;              /* TX chains not yet used */
	uint8_t rx_seen[NRX + 1];     /* times the guest received each numbered frame */
	unsigned rx_dup;
	unsigned foreign, fence;      /* frames to port 6001: for another MAC, and the fence */
};

static void guest_wait(struct guest *g)
{
	for (unsigned q = 0; q < 2 * PAIRS + 1; q++)
		vdrv_enable_irq(&g->drv, q);
	if (g->vio.io.wait_irq(&g->vio.io, 20) > 0) {
		uint32_t isr = vdrv_read32(&g->drv, R_INT_STATUS);

		if (isr)
			vdrv_write32(&g->drv, R_INT_ACK, isr);
	}
}

static void rx_post(struct guest *g, unsigned p, unsigned slot)
{
	struct vdrv_buf b = { g->rx_gpa[p] + (uint64_t)slot * RX_BUF, RX_BUF, true };

	assert_true(vdrv_submit(&g->drv, 2 * p, &b, 1, false, (void *)(uintptr_t)(slot + 1)) >= 0);
}

/* Frames the guest received: numbered UDP ones to port 6000 are counted, buffers re-posted. */
static void rx_reap(struct guest *g)
{
	for (unsigned p = 0; p < PAIRS; p++) {
		bool posted = false;
		uint32_t len;
		void *tok;

		while (vdrv_get_used(&g->drv, 2 * p, &len, &tok) > 0) {
			unsigned slot = (unsigned)((uintptr_t)tok - 1);
			const uint8_t *f = g->rx_host[p] + (size_t)slot * RX_BUF + VIRTIO_NET_HDR_LEN;

			assert_true(slot < RX_SLOTS && len <= RX_BUF);
			if (len >= VIRTIO_NET_HDR_LEN + 43 && get16(f + 12) == 0x0800 && f[23] == 17 &&
			    get16(f + 36) == 6001) {
				g->foreign += f[42] == 'F';
				g->fence += f[42] == 'E';
			} else if (len >= VIRTIO_NET_HDR_LEN + 46 && get16(f + 12) == 0x0800 &&
				   f[23] == 17 && get16(f + 36) == 6000) {
				uint32_t seq = get32(f + 42);

				assert_true(seq >= 1 && seq <= NRX);
				if (g->rx_seen[seq]++)
					g->rx_dup++;
			}
			rx_post(g, p, slot);
			posted = true;
		}
		if (posted)
			vdrv_kick(&g->drv, 2 * p);
	}
}

static void tx_reap(struct guest *g)
{
	for (unsigned p = 0; p < PAIRS; p++)
		while (vdrv_get_used(&g->drv, 2 * p + 1, NULL, NULL) > 0)
			g->tx_out--;
}

static void wait_tx(struct guest *g)
{
	int64_t deadline = now_ms() + WAIT_MS;

	for (tx_reap(g); g->tx_out; tx_reap(g)) {
		if (now_ms() > deadline) {
			dump_logs(g->r);
			fail_msg("%u TX frames not returned in %d ms (%u restarts)", g->tx_out,
				 WAIT_MS, atomic_load(&g->r->restarts));
		}
		rx_reap(g);
		guest_wait(g);
	}
}

static uint8_t ctrl(struct guest *g, uint8_t cls, uint8_t cmd, const void *d, size_t len)
{
	struct vdrv_buf b[2] = {
		{ g->ctrl_gpa, (uint32_t)(2 + len), false },
		{ g->ctrl_gpa + 4096, 1, true },
	};

	g->ctrl_host[0] = cls;
	g->ctrl_host[1] = cmd;
	memcpy(g->ctrl_host + 2, d, len);
	g->ctrl_host[4096] = 0xee;
	assert_int_equal(vdrv_transfer(&g->drv, 2 * PAIRS, b, 2, false, WAIT_MS), 1);
	return g->ctrl_host[4096];
}

static void guest_start(struct rig *r, struct guest *g)
{
	uint16_t pairs = htole16(PAIRS);
	uint8_t off = 0;

	memset(g, 0, sizeof(*g));
	g->r = r;
	xsim_vio_init(&g->vio, r->t->dom, 0, WIN0, SPI);
	g->vio.timeout_ms = WAIT_MS;
	assert_int_equal(xsim_vmem_init(&g->mem, r->t->dom, RAM_GPA, HEAP_SIZE, false), 0);
	assert_int_equal(vdrv_init(&g->drv, &g->vio.io, &g->mem, WANT, 2 * PAIRS + 1, 64), 0);
	assert_int_equal(g->drv.device_id, VIRTIO_ID_NET);
	vdrv_config_read(&g->drv, VIRTIO_NET_CFG_MAC, g->gmac, 6);
	g->tx_gpa = vdrv_alloc(&g->mem, DEPTH * 2048, 4096, (void **)&g->tx_host);
	g->ctrl_gpa = vdrv_alloc(&g->mem, 8192, 4096, (void **)&g->ctrl_host);
	assert_true(g->tx_gpa && g->ctrl_gpa);
	assert_int_equal(ctrl(g, VIRTIO_NET_CTRL_MQ, VIRTIO_NET_CTRL_MQ_VQ_PAIRS_SET, &pairs, 2),
			 VIRTIO_NET_OK);
	assert_int_equal(ctrl(g, VIRTIO_NET_CTRL_RX, VIRTIO_NET_CTRL_RX_PROMISC, &off, 1),
			 VIRTIO_NET_OK);
	for (unsigned p = 0; p < PAIRS; p++) {
		g->rx_gpa[p] = vdrv_alloc(&g->mem, RX_SLOTS * RX_BUF, 4096, (void **)&g->rx_host[p]);
		assert_true(g->rx_gpa[p] != 0);
		for (unsigned i = 0; i < RX_SLOTS; i++)
			rx_post(g, p, i);
		vdrv_kick(&g->drv, 2 * p);
	}
	tap_peer_configure(TAP, g->gmac, g->hmac);
}

/* Frame seq (a UDP datagram to the host's port 5000) into TX slot k, on pair p. */
static void tx_submit(struct guest *g, unsigned k, unsigned p, uint32_t seq)
{
	uint8_t *h = g->tx_host + (size_t)k * 2048, pl[64];
	struct vdrv_buf b;
	size_t len;

	pattern(pl, sizeof(pl), seq);
	put32(pl, seq);
	memset(h, 0, VIRTIO_NET_HDR_LEN);
	len = udp_frame(h + VIRTIO_NET_HDR_LEN, g->hmac, g->gmac, IP_GUEST, IP_TAP, 6000, 5000, pl,
			sizeof(pl), CSUM_FULL);
	b = (struct vdrv_buf){ g->tx_gpa + (uint64_t)k * 2048,
			       (uint32_t)(VIRTIO_NET_HDR_LEN + len), false };
	assert_true(vdrv_submit(&g->drv, 2 * p + 1, &b, 1, false, NULL) >= 0);
	g->tx_out++;
}

/*
 * NTX frames, DEPTH at a time over both pairs, then a marker; every one the host received is
 * counted. None twice; lost at most DEPTH per restart (those out when the daemon died).
 */
static void tx_load(struct guest *g, int s)
{
	uint8_t seen[NTX + 1] = { 0 }, buf[2048];
	unsigned got = 0;
	ssize_t n;

	for (uint32_t seq = 1; seq <= NTX; seq += DEPTH) {
		for (unsigned k = 0; k < DEPTH && seq + k <= NTX; k++)
			tx_submit(g, k, k % PAIRS, seq + k);
		for (unsigned p = 0; p < PAIRS; p++)
			vdrv_kick(&g->drv, 2 * p + 1);
		wait_tx(g);
	}
	tx_submit(g, 0, 1, MARK);   /* on the second pair: served only if its pairs survived */
	vdrv_kick(&g->drv, 3);
	wait_tx(g);
	/* The marker arrives last from one writer; what came before it is all there is. */
	while ((n = recv(s, buf, sizeof(buf), 0)) >= 4) {
		uint32_t seq = get32(buf);

		if (seq == MARK)
			break;
		assert_true(seq >= 1 && seq <= NTX);
		if (seen[seq]++)
			fail_msg("frame %u sent twice", seq);
		got++;
	}
	if (n < 4) {
		dump_logs(g->r);
		fail_msg("the marker frame never arrived (%u frames did)", got);
	}
	while ((n = recv(s, buf, sizeof(buf), MSG_DONTWAIT)) >= 4) {
		uint32_t seq = get32(buf);

		assert_true(seq >= 1 && seq <= NTX);
		if (seen[seq]++)
			fail_msg("frame %u sent twice", seq);
		got++;
	}
	fprintf(stderr, "#   %u of %u frames sent, %u restarts\n", got, NTX,
		atomic_load(&g->r->restarts));
	assert_true(got + DEPTH * atomic_load(&g->r->restarts) >= NTX);
}

/* Wait until the guest has received frame seq (true), or for up to ms (false). */
static bool rx_wait(struct guest *g, uint32_t seq, int ms)
{
	int64_t deadline = now_ms() + ms;

	for (rx_reap(g); !g->rx_seen[seq]; rx_reap(g)) {
		if (now_ms() > deadline)
			return false;
		guest_wait(g);
	}
	return true;
}

/*
 * NRX numbered datagrams from the host to the guest, each waited for: none arrives twice, and
 * one is lost at most per restart (being received when the daemon died).
 */
static void rx_load(struct guest *g, int s)
{
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons(6000),
				 .sin_addr.s_addr = htonl(IP_GUEST) };
	unsigned lost = 0;

	for (uint32_t seq = 1; seq <= NRX; seq++) {
		uint8_t pl[64];

		pattern(pl, sizeof(pl), seq);
		put32(pl, seq);
		assert_int_equal(sendto(s, pl, sizeof(pl), 0, (struct sockaddr *)&a, sizeof(a)),
				 (ssize_t)sizeof(pl));
		/* A pause is a restart (well under this); a lost frame is waited for this long. */
		if (!rx_wait(g, seq, 3000)) {
			fprintf(stderr, "#   frame %u lost (%u restarts)\n", seq,
				atomic_load(&g->r->restarts));
			lost++;
		}
	}
	fprintf(stderr, "#   %u of %u frames received, %u restarts\n", NRX - lost, NRX,
		atomic_load(&g->r->restarts));
	assert_int_equal(g->rx_dup, 0);
	assert_true(lost <= atomic_load(&g->r->restarts));
}

/*
 * The receive filter the guest set before the restart (promiscuous off) still holds after it:
 * a filter command that does not touch promiscuity is applied on top of the restored state. A
 * frame for another MAC, written into the tap, never reaches the guest; the fence after it (the
 * same flow, so the same tap queue) does.
 */
static void filter_check(struct guest *g, int s)
{
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons(6001),
				 .sin_addr.s_addr = htonl(IP_GUEST) };
	static const uint8_t other[6] = { 0x02, 0, 0, 0, 0, 0x99 };
	struct sockaddr_ll ll = { .sll_family = AF_PACKET, .sll_halen = 6 };
	uint8_t off = 0, f[128];
	int ps = socket(AF_PACKET, SOCK_RAW | SOCK_CLOEXEC, 0);
	size_t len;

	assert_true(ps >= 0);
	assert_int_equal(ctrl(g, VIRTIO_NET_CTRL_RX, VIRTIO_NET_CTRL_RX_ALLMULTI, &off, 1),
			 VIRTIO_NET_OK);
	ll.sll_ifindex = (int)if_nametoindex(TAP);
	memcpy(ll.sll_addr, other, 6);
	len = udp_frame(f, other, g->hmac, IP_TAP, IP_GUEST, 5000, 6001, (const uint8_t *)"F", 1,
			CSUM_FULL);
	assert_int_equal(sendto(ps, f, len, 0, (struct sockaddr *)&ll, sizeof(ll)), (ssize_t)len);
	close(ps);
	assert_int_equal(sendto(s, "E", 1, 0, (struct sockaddr *)&a, sizeof(a)), 1);
	for (int64_t end = now_ms() + WAIT_MS; !g->fence; rx_reap(g)) {
		if (now_ms() > end)
			fail_msg("the fence frame never reached the guest");
		guest_wait(g);
	}
	assert_int_equal(g->foreign, 0);
}

struct point {
	const char *at;
	bool keep_store;              /* false: a tap of the operator's, opened again by name */
};

static const struct point points[] = {
	{ "net.tx.sent:30", true },
	{ "vq.popped:70", true },
	{ "vq.push:60", true },
	{ "vq.push.published:60", true },
	{ "vdev.irq:50", true },
	/* In the receive phase: after the 120 transmit frames' pushes. */
	{ "vq.push.published:150", true },
	{ "vq.popped:160", true },
	/* No fd store (a manual start): the operator's persistent tap is opened again. */
	{ "net.tx.sent:30", false },
	{ "vq.push.published:150", false },
};

/* A persistent tap made beforehand (ip tuntap add ... multi_queue vnet_hdr): it outlives us. */
static void tap_make_persistent(bool persist)
{
	struct ifreq ifr;
	int fd = open("/dev/net/tun", O_RDWR | O_CLOEXEC);

	assert_true(fd >= 0);
	netns_ifr(&ifr, TAP);
	ifr.ifr_flags = IFF_TAP | IFF_NO_PI | IFF_VNET_HDR | IFF_MULTI_QUEUE;
	assert_int_equal(ioctl(fd, TUNSETIFF, &ifr), 0);
	assert_int_equal(ioctl(fd, TUNSETPERSIST, persist ? 1 : 0), 0);
	close(fd);
}

static void net_kill_at(const struct point *p)
{
	char ini[512];
	struct rig r;
	struct guest g;
	int s;

	memset(&r, 0, sizeof(r));
	if (!p->keep_store)
		tap_make_persistent(true);
	r.t = itest_new(&(struct xsim_dom_opts){ .name = "g1", .ram_mib = 64, .nr_vcpus = 2 });
	assert_non_null(r.t);
	/* Without the fd store, the ioreq path: the fast path does not survive a crash there. */
	snprintf(ini, sizeof(ini), "[guest]\nname = g1\ndiscovery = explicit\n%s\n"
		 "[net \"eth0\"]\nmmio = 0x02000000\nirq = 33\ntap = " TAP "\nqueues = %u\n"
		 "queue_size = 64\n", p->keep_store ? "" : "notify_fastpath = off\n", PAIRS);
	rig_launch(&r, ini, p->at);
	r.keep_store = p->keep_store;
	snprintf(r.kill_at, sizeof(r.kill_at), "%s", p->at);
	rig_supervise(&r);
	guest_start(&r, &g);
	s = tap_peer_udp(5000, 5);
	tx_load(&g, s);
	rx_load(&g, s);
	filter_check(&g, s);
	close(s);
	assert_int_equal(g.vio.errors, 0);
	if (atomic_load(&r.restarts) != 1) {
		dump_logs(&r);
		fail_msg("%s: %u restarts, 1 expected", p->at, atomic_load(&r.restarts));
	}
	assert_true(took_over(&r, 1, "took over"));
	assert_true(took_over(&r, 1, p->keep_store ? "tap " TAP " (the previous instance's)"
					   : "tap " TAP ", mac"));
	rig_unsupervise(&r);
	itest_free(r.t);
	if (!p->keep_store)
		tap_make_persistent(false);
}

static void test_net_kill_points(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof(points) / sizeof(points[0]); i++) {
		fprintf(stderr, "# net, killed at %s\n", points[i].at);
		net_kill_at(&points[i]);
	}
}

static int run(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_net_kill_points),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}

int main(void)
{
	/* A private network namespace: the daemon we start inherits it with its tap. */
	return itest_in_netns("test_restart_net", run);
}
