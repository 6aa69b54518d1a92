/*
 * virtio-net through the real transport, a real libev loop and real tap devices, with the
 * kernel's own network stack as the peer. The whole test runs in a forked child inside a fresh
 * network namespace (unshare), so every tap, address and packet is private and vanishes with it.
 *
 * Topology inside the namespace:
 *   guest (this test, through the RX/TX queues)  10.0.0.2  <->  tap "vnt0" 10.0.0.1 (kernel)
 *   kernel forwards 10.0.1.0/24 to a second tap "vpeer0" 10.0.1.1, whose far end (10.0.1.2) is
 *   this test reading and writing that tap directly. Frames the guest sends to 10.0.1.2 come out
 *   of vpeer0 after the kernel completed checksums and segmented GSO; frames the test writes
 *   into vpeer0 (GSO, partial checksums) reach the guest through the device.
 */
#include <arpa/inet.h>
#include <endian.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <linux/if_tun.h>
#include <linux/sockios.h>
#include <net/if.h>
#include <net/if_arp.h>
#include <netinet/in.h>
#include <netpacket/packet.h>
#include <poll.h>
#include <sched.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>
#include <ev.h>

#include "devices/device.h"
#include "devices/net.h"
#include "devices/virtio_mmio.h"
#include "tests/lib/gmem_flat.h"
#include "tests/lib/net_frames.h"
#include "tests/lib/netns.h"
#include "tests/lib/vdriver.h"
#include "tests/lib/vdriver_direct.h"

#define RAM_GPA    UINT64_C(0x40000000)
#define RAM_SIZE   (64u << 20)
#define R_INT_STATUS 0x60
#define R_INT_ACK    0x64
#define R_STATUS     0x70
#define R_CFG        0x100
#define TIMEOUT_MS 3000
#define TAP        "vnt0"
#define PEER       "vpeer0"
#define RX_SLOTS   128u
#define RX_BUF     1526u          /* a 1500-MTU frame plus header: what Linux posts without GSO */
#define TX_AREA    (128u << 10)
#define FRAME_CAP  (70u << 10)

#define ALL_RING (VIRTIO_BIT(VIRTIO_F_VERSION_1) | VIRTIO_BIT(VIRTIO_F_EVENT_IDX) | \
		  VIRTIO_BIT(VIRTIO_F_INDIRECT_DESC))
#define F(b) VIRTIO_BIT(VIRTIO_NET_F_##b)
#define BASIC (ALL_RING | F(MAC) | F(STATUS) | F(MTU) | F(CTRL_VQ) | F(CTRL_RX))
#define OFFL  (F(CSUM) | F(GUEST_CSUM) | F(HOST_TSO4) | F(HOST_TSO6) | F(GUEST_TSO4) | \
	       F(GUEST_TSO6) | F(MRG_RXBUF))

#define IP_TAP   0x0a000001u      /* 10.0.0.1 */
#define IP_GUEST 0x0a000002u      /* 10.0.0.2 */
#define IP_PEER  0x0a000101u      /* 10.0.1.1 */
#define IP_FAR   0x0a000102u      /* 10.0.1.2: the test behind vpeer0 */

static const uint8_t far_mac[6] = { 0x02, 0, 0, 0, 0x01, 0x02 };

struct rig {
	struct vdrv_direct x;
	struct vdrv drv;
	struct ev_loop *loop;
	struct config_device cfg;
	bool open;
	unsigned pairs;            /* queue pairs the driver set up */
	uint16_t ctrlq;
	uint8_t gmac[6], hmac[6], pmac[6];   /* guest, tap, peer tap */
	int peer;                  /* vpeer0, vnet header of 12 bytes, no offloads */
	uint64_t rx_gpa[NET_MAX_PAIRS];
	uint8_t *rx_host[NET_MAX_PAIRS];
	uint32_t rx_size;          /* bytes per RX buffer */
	uint64_t tx_gpa, ctrl_gpa;
	uint8_t *tx_host, *ctrl_host;
	uint32_t isr_seen;
	uint8_t frame[FRAME_CAP];  /* scratch for one received or built frame */
};

/* ---- namespace plumbing (ioctls, no shelling out) --------------------------------------- */

static void if_set_up(const char *name, bool up)
{
	assert_int_equal(netns_if_up(name, up), 0);
}

static void if_addr(const char *name, uint32_t ip)
{
	assert_int_equal(netns_if_addr(name, ip, 0xffffff00u), 0);
}

static void if_hwaddr(const char *name, uint8_t mac[6])
{
	assert_int_equal(netns_if_hwaddr(name, mac), 0);
}

static void arp_static(const char *dev, uint32_t ip, const uint8_t mac[6])
{
	assert_int_equal(netns_arp_static(dev, ip, mac), 0);
}

static bool if_exists(const char *name)
{
	return if_nametoindex(name) != 0;
}

/* The far end of the forwarding path: a plain tap the test reads and writes itself. */
static int peer_open(void)
{
	struct ifreq ifr;
	int hdr = VIRTIO_NET_HDR_LEN;
	int fd = open("/dev/net/tun", O_RDWR | O_NONBLOCK | O_CLOEXEC);

	assert_true(fd >= 0);
	netns_ifr(&ifr, PEER);
	ifr.ifr_flags = IFF_TAP | IFF_NO_PI | IFF_VNET_HDR;
	assert_int_equal(ioctl(fd, TUNSETIFF, &ifr), 0);
	assert_int_equal(ioctl(fd, TUNSETVNETHDRSZ, &hdr), 0);
	/* No offloads: the kernel completes checksums and segments before handing frames to us. */
	assert_int_equal(ioctl(fd, TUNSETOFFLOAD, 0UL), 0);
	if_addr(PEER, IP_PEER);
	arp_static(PEER, IP_FAR, far_mac);
	return fd;
}

/* Read one frame from the peer tap (header included); 0 on timeout. */
static ssize_t peer_read(struct rig *r, void *buf, size_t cap, int timeout_ms)
{
	struct pollfd pfd = { .fd = r->peer, .events = POLLIN };

	for (;;) {
		ssize_t n = read(r->peer, buf, cap);

		if (n >= 0 || errno != EAGAIN)
			return n;
		if (poll(&pfd, 1, timeout_ms) <= 0)
			return 0;
	}
}

static struct virtio_net_hdr hdr_partial(uint16_t start, uint16_t off)
{
	return (struct virtio_net_hdr){ .flags = VIRTIO_NET_HDR_F_NEEDS_CSUM,
					.csum_start = htole16(start), .csum_offset = htole16(off) };
}

/* ---- the rig: device, driver, taps ------------------------------------------------------- */

static uint64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static void cfg_default(struct config_device *cfg, unsigned pairs)
{
	memset(cfg, 0, sizeof(*cfg));
	cfg->type = DEV_NET;
	cfg->devid = -1;
	snprintf(cfg->name, sizeof(cfg->name), "eth0");
	snprintf(cfg->u.net.tap, sizeof(cfg->u.net.tap), TAP);
	cfg->u.net.mtu = 1500;
	cfg->u.net.queues = (uint16_t)pairs;
	cfg->u.net.queue_size = 256;
}

static struct net_stats stats(struct rig *r)
{
	struct net_stats s;

	assert_true(net_get_stats(r->x.dev, &s));
	return s;
}

static uint64_t ram_alloc(struct rig *r, uint64_t len, void **host)
{
	uint64_t gpa = vdrv_alloc(&r->x.mem, len, 4096, host);

	assert_true(gpa != 0);
	return gpa;
}

/* Run the loop up to ms; remember and acknowledge interrupt causes. */
static void rig_wait(struct rig *r, int ms)
{
	r->isr_seen |= vdrv_wait_isr(&r->drv, ms);
}

static void rig_run(struct rig *r, int ms)
{
	uint64_t end = now_ms() + (uint64_t)ms;

	while (now_ms() < end)
		rig_wait(r, 10);
}

static void rig_create(struct rig *r)
{
	r->loop = ev_loop_new(EVFLAG_AUTO);
	assert_int_equal(vdrv_direct_open(&r->x, &r->cfg, RAM_GPA, RAM_SIZE, r->loop), 0);
	r->open = true;
	if_addr(TAP, IP_TAP);
	if_hwaddr(TAP, r->hmac);
	r->peer = peer_open();
	if_hwaddr(PEER, r->pmac);
}

#define BAD_TOKEN ((void *)(uintptr_t)0xbad0)
static unsigned bad_seen;

static void rx_post(struct rig *r, unsigned pair, unsigned slot)
{
	struct vdrv_buf b = { .gpa = r->rx_gpa[pair] + (uint64_t)slot * r->rx_size,
			      .len = r->rx_size, .write = true };

	assert_true(vdrv_submit(&r->drv, 2 * pair, &b, 1, false, (void *)(uintptr_t)(slot + 1)) >= 0);
}

static void rx_fill(struct rig *r, unsigned pair, unsigned from, unsigned n)
{
	for (unsigned i = from; i < from + n; i++)
		rx_post(r, pair, i);
	vdrv_kick(&r->drv, 2 * pair);
}

static void rig_start_opt(struct rig *r, uint64_t want, bool fill)
{
	unsigned pairs = (want & F(MQ)) ? r->cfg.u.net.queues : 1;
	unsigned nq = 2 * pairs + 1;

	rig_create(r);
	assert_int_equal(vdrv_init(&r->drv, &r->x.io, &r->x.mem, want, nq, 256), 0);
	r->pairs = pairs;
	r->ctrlq = (uint16_t)(nq - 1);
	vdrv_config_read(&r->drv, 0, r->gmac, 6);
	arp_static(TAP, IP_GUEST, r->gmac);
	if (!r->rx_size)
		r->rx_size = RX_BUF;
	for (unsigned p = 0; p < pairs; p++) {
		r->rx_gpa[p] = ram_alloc(r, (uint64_t)RX_SLOTS * r->rx_size, (void **)&r->rx_host[p]);
		if (fill)
			rx_fill(r, p, 0, RX_SLOTS);
	}
	r->tx_gpa = ram_alloc(r, TX_AREA, (void **)&r->tx_host);
	r->ctrl_gpa = ram_alloc(r, 8192, (void **)&r->ctrl_host);
	bad_seen = 0;
}

static void rig_start(struct rig *r, uint64_t want)
{
	rig_start_opt(r, want, true);
}

static int setup(void **state)
{
	struct rig *r = calloc(1, sizeof(*r));

	if (!r)
		return -1;
	r->peer = -1;
	cfg_default(&r->cfg, 1);
	*state = r;
	return 0;
}

static int teardown(void **state)
{
	struct rig *r = *state;

	if (r->open) {
		vdrv_reset(&r->drv);
		assert_int_equal(gmem_flat_outstanding(r->x.gm), 0);
		assert_int_equal(gmem_flat_bad_unmaps(r->x.gm), 0);
		vdrv_direct_close(&r->x);
		ev_loop_destroy(r->loop);
		/* A tap the device created goes with it. */
		assert_false(if_exists(TAP));
	}
	if (r->peer >= 0)
		close(r->peer);
	free(r);
	return 0;
}

/* ---- the guest's side: receive ----------------------------------------------------------- */

/* Next used RX buffer of pair (any pair when pair < 0); false on timeout. */
static bool rx_next(struct rig *r, int pair, uint64_t deadline, unsigned *qp, uint32_t *len,
		    unsigned *slot)
{
	for (;;) {
		for (unsigned p = 0; p < r->pairs; p++) {
			void *tok;

			if (pair >= 0 && p != (unsigned)pair)
				continue;
			int got = vdrv_get_used(&r->drv, 2 * p, len, &tok);

			assert_true(got >= 0);
			if (got && tok == BAD_TOKEN) {
				assert_int_equal(*len, 0);
				bad_seen++;
				continue;
			}
			if (got) {
				*qp = p;
				*slot = (unsigned)((uintptr_t)tok - 1);
				return true;
			}
			vdrv_enable_irq(&r->drv, 2 * p);
		}
		if (now_ms() >= deadline)
			return false;
		rig_wait(r, 5);
	}
}

static bool no_repost;
static unsigned last_nb, last_pair;

/*
 * One frame (header apart) into r->frame, following num_buffers; its length, or -1 on timeout.
 * The buffers go back to the ring unless no_repost.
 */
static int64_t rx_frame(struct rig *r, int pair, struct virtio_net_hdr *h, int timeout_ms)
{
	uint64_t deadline = now_ms() + (uint64_t)timeout_ms;
	unsigned q, slot;
	uint32_t len;
	size_t total = 0;

	if (!rx_next(r, pair, deadline, &q, &len, &slot))
		return -1;
	uint8_t *src = r->rx_host[q] + (size_t)slot * r->rx_size;

	assert_true(len >= VIRTIO_NET_HDR_LEN && len <= r->rx_size);
	memcpy(h, src, VIRTIO_NET_HDR_LEN);
	unsigned nb = le16toh(h->num_buffers);

	assert_true(nb >= 1);
	memcpy(r->frame, src + VIRTIO_NET_HDR_LEN, len - VIRTIO_NET_HDR_LEN);
	total = len - VIRTIO_NET_HDR_LEN;
	if (!no_repost)
		rx_post(r, q, slot);
	for (unsigned i = 1; i < nb; i++) {
		unsigned q2;

		/* The group was published at once: the rest is already there. */
		assert_true(rx_next(r, (int)q, now_ms(), &q2, &len, &slot));
		assert_true(total + len <= sizeof(r->frame));
		memcpy(r->frame + total, r->rx_host[q] + (size_t)slot * r->rx_size, len);
		total += len;
		if (!no_repost)
			rx_post(r, q, slot);
	}
	if (!no_repost)
		vdrv_kick(&r->drv, 2 * q);
	last_nb = nb;
	last_pair = q;
	return (int64_t)total;
}

struct want {
	uint16_t type;       /* ethertype */
	uint8_t proto;       /* IPv4 protocol, 0 = any */
	uint16_t dport;      /* UDP/TCP destination port, 0 = any */
	uint8_t icmp_type;
};

static bool frame_matches(const uint8_t *f, size_t len, const struct want *w)
{
	if (len < 14 || get16(f + 12) != w->type)
		return false;
	if (w->type != 0x0800 || !w->proto)
		return true;
	if (len < 34 || f[14 + 9] != w->proto)
		return false;
	if (w->proto == 1)
		return len >= 35 && f[34] == w->icmp_type;
	return !w->dport || (len >= 38 && get16(f + 36) == w->dport);
}

/* Frames until one matches (others are skipped); its length or -1. */
static int64_t rx_match(struct rig *r, int pair, const struct want *w, struct virtio_net_hdr *h,
			int timeout_ms)
{
	uint64_t deadline = now_ms() + (uint64_t)timeout_ms;

	for (;;) {
		int64_t left = (int64_t)(deadline - now_ms());
		int64_t n = rx_frame(r, pair, h, left > 0 ? (int)left : 0);

		if (n < 0 || frame_matches(r->frame, (size_t)n, w))
			return n;
	}
}

/* ---- the guest's side: transmit and control ---------------------------------------------- */

/* A chain made of `raw` split into pieces of `piece` bytes; the used length or -1. */
static int64_t tx_raw(struct rig *r, unsigned pair, const void *raw, size_t len, size_t piece)
{
	struct vdrv_buf b[80];
	unsigned n = 0;

	assert_true(len <= TX_AREA);
	memcpy(r->tx_host, raw, len);
	for (size_t off = 0; off < len; off += piece) {
		assert_true(n < 80);
		b[n++] = (struct vdrv_buf){ .gpa = r->tx_gpa + off,
					    .len = (uint32_t)(len - off < piece ? len - off : piece) };
	}
	return vdrv_transfer(&r->drv, 2 * pair + 1, b, n, n > 4, TIMEOUT_MS);
}

/* Header in its own buffer, the frame after it in pieces (as a scatter-gather driver does). */
static void tx_send(struct rig *r, unsigned pair, const struct virtio_net_hdr *h,
		    const uint8_t *frame, size_t len)
{
	struct vdrv_buf b[80];
	unsigned n = 0;
	size_t piece = len > 8192 ? 4096 : len;

	assert_true(VIRTIO_NET_HDR_LEN + len <= TX_AREA);
	memcpy(r->tx_host, h, VIRTIO_NET_HDR_LEN);
	memcpy(r->tx_host + 64, frame, len);
	b[n++] = (struct vdrv_buf){ .gpa = r->tx_gpa, .len = VIRTIO_NET_HDR_LEN };
	for (size_t off = 0; off < len; off += piece)
		b[n++] = (struct vdrv_buf){ .gpa = r->tx_gpa + 64 + off,
					    .len = (uint32_t)(len - off < piece ? len - off : piece) };
	assert_true(vdrv_transfer(&r->drv, 2 * pair + 1, b, n, n > 4, TIMEOUT_MS) >= 0);
}

static uint8_t ctrl_cmd(struct rig *r, uint8_t cls, uint8_t cmd, const void *data, size_t len)
{
	struct vdrv_buf b[2] = {
		{ .gpa = r->ctrl_gpa, .len = (uint32_t)(2 + len) },
		{ .gpa = r->ctrl_gpa + 4096, .len = 1, .write = true },
	};

	r->ctrl_host[0] = cls;
	r->ctrl_host[1] = cmd;
	if (len)
		memcpy(r->ctrl_host + 2, data, len);
	r->ctrl_host[4096] = 0xee;
	assert_int_equal(vdrv_transfer(&r->drv, r->ctrlq, b, 2, false, TIMEOUT_MS), 1);
	return r->ctrl_host[4096];
}

/* ---- the kernel's side: sockets ---------------------------------------------------------- */

static int udp_sock(uint32_t ip, uint16_t port)
{
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons(port),
				 .sin_addr.s_addr = htonl(ip) };
	struct timeval tv = { .tv_sec = 2 };
	int s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);

	assert_true(s >= 0);
	assert_int_equal(bind(s, (struct sockaddr *)&a, sizeof(a)), 0);
	setsockopt(s, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	return s;
}

static void udp_send(int s, uint32_t ip, uint16_t port, const void *p, size_t n)
{
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons(port),
				 .sin_addr.s_addr = htonl(ip) };

	assert_int_equal(sendto(s, p, n, 0, (struct sockaddr *)&a, sizeof(a)), (ssize_t)n);
}

static void ping(struct rig *r, unsigned pair, uint16_t seq)
{
	uint8_t f[256], pl[64];
	struct virtio_net_hdr h = { 0 };
	size_t o = eth(f, r->hmac, r->gmac, 0x0800);
	uint8_t *ip = f + o, *ic = ip + 20;

	pattern(pl, sizeof(pl), seq);
	o += ipv4(ip, 1, IP_GUEST, IP_TAP, 8 + sizeof(pl), seq);
	ic[0] = 8;
	ic[1] = 0;
	put16(ic + 2, 0);
	put16(ic + 4, 0x1234);
	put16(ic + 6, seq);
	memcpy(ic + 8, pl, sizeof(pl));
	put16(ic + 2, (uint16_t)~csum_fold(csum_add(0, ic, 8 + sizeof(pl))));
	tx_send(r, pair, &h, f, o + 8 + sizeof(pl));

	struct want w = { .type = 0x0800, .proto = 1, .icmp_type = 0 };
	int64_t n = rx_match(r, -1, &w, &h, TIMEOUT_MS);

	assert_int_equal(n, 14 + 20 + 8 + sizeof(pl));
	const uint8_t *rip = r->frame + 14, *ric = rip + 20;

	assert_memory_equal(r->frame, r->gmac, 6);
	assert_int_equal(get32(rip + 12), IP_TAP);
	assert_int_equal(get32(rip + 16), IP_GUEST);
	assert_int_equal(csum_fold(csum_add(0, rip, 20)), 0xffff);
	assert_int_equal(csum_fold(csum_add(0, ric, 8 + sizeof(pl))), 0xffff);
	assert_int_equal(get16(ric + 4), 0x1234);
	assert_int_equal(get16(ric + 6), seq);
	assert_memory_equal(ric + 8, pl, sizeof(pl));
}

/* ---- tests ------------------------------------------------------------------------------- */

static void wait_link(struct rig *r, uint16_t want)
{
	assert_int_equal(vdrv_wait_config16(&r->drv, VIRTIO_NET_CFG_STATUS, want, TIMEOUT_MS,
					    &r->isr_seen), want);
}

/* Config space, offered features, the tap as created, a MAC stable per guest and device. */
static void test_config(void **state)
{
	struct rig *r = *state;
	struct ifreq ifr;
	uint64_t need = F(MAC) | F(STATUS) | F(MTU) | F(MRG_RXBUF) | F(CSUM) | F(GUEST_CSUM) |
			F(HOST_TSO4) | F(HOST_TSO6) | F(GUEST_TSO4) | F(GUEST_TSO6) | F(CTRL_VQ) |
			F(CTRL_RX);

	r->cfg.u.net.mtu = 1400;
	rig_start(r, BASIC | OFFL);
	assert_int_equal(vdrv_read32(&r->drv, 0x008), VIRTIO_ID_NET);
	assert_int_equal(r->drv.device_features & need, need);
	assert_int_equal(r->drv.device_features & F(MQ), 0);
	assert_int_equal(vdrv_config16(&r->drv, VIRTIO_NET_CFG_MTU), 1400);
	assert_int_equal(vdrv_config16(&r->drv, VIRTIO_NET_CFG_MAX_PAIRS), 1);
	netns_ifr(&ifr, TAP);
	assert_int_equal(netns_ioctl(SIOCGIFMTU, &ifr), 0);
	assert_int_equal(ifr.ifr_mtu, 1400);
	wait_link(r, VIRTIO_NET_S_LINK_UP);
	/* Xen's OUI, the top bit of the fourth byte clear (as libxl does). */
	assert_int_equal(r->gmac[0], 0x00);
	assert_int_equal(r->gmac[1], 0x16);
	assert_int_equal(r->gmac[2], 0x3e);
	assert_int_equal(r->gmac[3] & 0x80, 0);
	/* The same guest and device name give the same MAC; another device name another one. */
	struct config_device c2 = r->cfg;
	struct vdrv_direct y;
	uint8_t m[6];

	snprintf(c2.u.net.tap, sizeof(c2.u.net.tap), "vnt1");
	assert_int_equal(vdrv_direct_open(&y, &c2, RAM_GPA, 1u << 20, r->loop), 0);
	for (unsigned i = 0; i < 6; i++)
		m[i] = (uint8_t)vmmio_read(y.dev, R_CFG + i, 1);
	assert_memory_equal(m, r->gmac, 6);
	vdrv_direct_close(&y);
	snprintf(c2.name, sizeof(c2.name), "eth1");
	assert_int_equal(vdrv_direct_open(&y, &c2, RAM_GPA, 1u << 20, r->loop), 0);
	for (unsigned i = 0; i < 6; i++)
		m[i] = (uint8_t)vmmio_read(y.dev, R_CFG + i, 1);
	assert_memory_not_equal(m, r->gmac, 6);
	vdrv_direct_close(&y);
	assert_false(if_exists("vnt1"));
	/* A configured MAC is used as is. */
	static const uint8_t mine[6] = { 0x02, 0x11, 0x22, 0x33, 0x44, 0x55 };

	memcpy(c2.u.net.mac, mine, 6);
	c2.u.net.mac_set = true;
	assert_int_equal(vdrv_direct_open(&y, &c2, RAM_GPA, 1u << 20, r->loop), 0);
	for (unsigned i = 0; i < 6; i++)
		m[i] = (uint8_t)vmmio_read(y.dev, R_CFG + i, 1);
	assert_memory_equal(m, mine, 6);
	vdrv_direct_close(&y);
}

/* Feature dependencies (virtio 1.2 §5.1.3.1): FEATURES_OK does not stick without them. */
static void test_feature_dependencies(void **state)
{
	struct rig *r = *state;

	rig_create(r);
	assert_true(vdrv_init(&r->drv, &r->x.io, &r->x.mem, ALL_RING | F(GUEST_TSO4), 3, 256) < 0);
	assert_true(vdrv_init(&r->drv, &r->x.io, &r->x.mem, ALL_RING | F(HOST_TSO4), 3, 256) < 0);
	assert_true(vdrv_init(&r->drv, &r->x.io, &r->x.mem, ALL_RING | F(CTRL_RX), 3, 256) < 0);
	assert_int_equal(vdrv_init(&r->drv, &r->x.io, &r->x.mem, BASIC | OFFL, 3, 256), 0);
	/* Offloads toward the guest are exactly what it negotiated. */
	assert_int_equal(stats(r).offloads, TUN_F_CSUM | TUN_F_TSO4 | TUN_F_TSO6);
	vdrv_reset(&r->drv);
	assert_int_equal(stats(r).offloads, 0);
	assert_int_equal(vdrv_init(&r->drv, &r->x.io, &r->x.mem, BASIC | F(CSUM) | F(GUEST_CSUM),
				   3, 256), 0);
	assert_int_equal(stats(r).offloads, TUN_F_CSUM);
}

/* The guest asks the kernel for 10.0.0.1's MAC, then pings it. */
static void test_arp_and_ping(void **state)
{
	struct rig *r = *state;
	uint8_t f[64];
	static const uint8_t bcast[6] = { 0xff, 0xff, 0xff, 0xff, 0xff, 0xff };
	struct virtio_net_hdr h = { 0 };
	size_t o;

	rig_start(r, BASIC | OFFL);
	memset(f, 0, sizeof(f));
	o = eth(f, bcast, r->gmac, 0x0806);
	put16(f + o, 1);
	put16(f + o + 2, 0x0800);
	f[o + 4] = 6;
	f[o + 5] = 4;
	put16(f + o + 6, 1);
	memcpy(f + o + 8, r->gmac, 6);
	put32(f + o + 14, IP_GUEST);
	put32(f + o + 24, IP_TAP);
	tx_send(r, 0, &h, f, 60);

	struct want w = { .type = 0x0806 };
	int64_t n = rx_match(r, 0, &w, &h, TIMEOUT_MS);

	assert_true(n >= 42);
	const uint8_t *a = r->frame + 14;

	assert_memory_equal(r->frame, r->gmac, 6);
	assert_int_equal(get16(a + 6), 2);                 /* reply */
	assert_memory_equal(a + 8, r->hmac, 6);
	assert_int_equal(get32(a + 14), IP_TAP);
	assert_memory_equal(a + 18, r->gmac, 6);
	assert_int_equal(get32(a + 24), IP_GUEST);
	for (uint16_t seq = 1; seq <= 5; seq++)
		ping(r, 0, seq);
	assert_int_equal(stats(r).tx_frames, 6);
	assert_int_equal(stats(r).tx_malformed + stats(r).tx_errors + stats(r).rx_dropped, 0);
}

static uint8_t payload[FRAME_CAP], frame[FRAME_CAP];

/* UDP both ways without offloads: full checksums, payloads byte for byte, a 60 000-byte datagram
 * arriving as IP fragments in 1526-byte buffers. */
static void test_udp_both_ways(void **state)
{
	struct rig *r = *state;
	struct virtio_net_hdr h = { 0 };
	struct want w = { .type = 0x0800, .proto = 17, .dport = 6000 };
	int s;

	rig_start(r, BASIC);
	s = udp_sock(IP_TAP, 5000);
	pattern(payload, 1000, 1);
	udp_send(s, IP_GUEST, 6000, payload, 1000);
	assert_int_equal(rx_match(r, 0, &w, &h, TIMEOUT_MS), 14 + 20 + 8 + 1000);
	assert_int_equal(h.flags, 0);          /* no GUEST_CSUM: nothing left to the guest */
	assert_int_equal(h.gso_type, 0);
	assert_int_equal(le16toh(h.num_buffers), 1);
	assert_true(l4_csum_ok(r->frame + 14, 20 + 8 + 1000));
	assert_memory_equal(r->frame + 42, payload, 1000);

	/* guest -> kernel */
	pattern(payload, 1200, 2);
	size_t n = udp_frame(frame, r->hmac, r->gmac, IP_GUEST, IP_TAP, 6000, 5000, payload, 1200,
			     CSUM_FULL);
	uint8_t got[2048];
	struct sockaddr_in from;
	socklen_t fl = sizeof(from);

	tx_send(r, 0, &h, frame, n);
	assert_int_equal(recvfrom(s, got, sizeof(got), 0, (struct sockaddr *)&from, &fl), 1200);
	assert_memory_equal(got, payload, 1200);
	assert_int_equal(ntohs(from.sin_port), 6000);
	assert_int_equal(ntohl(from.sin_addr.s_addr), IP_GUEST);

	/* 60 000 bytes: IP fragments, reassembled by the test, checked end to end. */
	static uint8_t dgram[65536];
	size_t have = 0, total = 0;
	uint16_t id = 0;

	pattern(payload, 60000, 3);
	udp_send(s, IP_GUEST, 6000, payload, 60000);
	w.dport = 0;
	while (!total || have < total) {
		int64_t len = rx_match(r, 0, &w, &h, TIMEOUT_MS);

		assert_true(len > 34);
		const uint8_t *ip = r->frame + 14;
		uint16_t fo = get16(ip + 6);
		size_t dlen = get16(ip + 2) - 20u, off = (size_t)(fo & 0x1fff) * 8;

		assert_true(len <= 1514);
		assert_int_equal(csum_fold(csum_add(0, ip, 20)), 0xffff);
		if (!id)
			id = get16(ip + 4);
		assert_int_equal(get16(ip + 4), id);
		assert_true(off + dlen <= sizeof(dgram));
		memcpy(dgram + off, ip + 20, dlen);
		have += dlen;
		if (!(fo & 0x2000))
			total = off + dlen;
	}
	assert_int_equal(total, 8 + 60000);
	assert_int_equal(have, total);
	assert_memory_equal(dgram + 8, payload, 60000);
	close(s);
}

/* Read frames from the peer tap until one is IPv4 with this protocol; its length (with header). */
static ssize_t peer_match(struct rig *r, uint8_t proto)
{
	uint64_t end = now_ms() + TIMEOUT_MS;

	for (;;) {
		int left = (int)(end - now_ms());
		ssize_t n = peer_read(r, frame, sizeof(frame), left > 0 ? left : 0);

		if (n <= 0)
			return n;
		const uint8_t *f = frame + VIRTIO_NET_HDR_LEN;

		if (n >= 12 + 34 && get16(f + 12) == 0x0800 && f[14 + 9] == proto)
			return n;
	}
}

/* NEEDS_CSUM from the guest: the frame leaves the far tap with a correct checksum. */
static void test_tx_csum_offload(void **state)
{
	struct rig *r = *state;
	uint8_t f[2048];
	struct virtio_net_hdr h = hdr_partial(34, 6);
	size_t n;
	ssize_t got;

	rig_start(r, BASIC | OFFL);
	pattern(payload, 999, 4);
	n = udp_frame(f, r->hmac, r->gmac, IP_GUEST, IP_FAR, 6000, 7000, payload, 999, CSUM_PARTIAL);
	tx_send(r, 0, &h, f, n);
	got = peer_match(r, 17);
	assert_int_equal(got, 12 + n);
	const uint8_t *ip = frame + 12 + 14;

	assert_true(get16(frame + 12 + 14 + 20 + 6) != get16(f + 14 + 20 + 6));
	assert_true(l4_csum_ok(ip, 20 + 8 + 999));
	assert_int_equal(get32(ip + 16), IP_FAR);
	assert_memory_equal(ip + 28, payload, 999);

	h = hdr_partial(34, 16);
	n = tcp_frame(f, r->hmac, r->gmac, IP_GUEST, IP_FAR, 1000, payload, 777, CSUM_PARTIAL);
	tx_send(r, 0, &h, f, n);
	got = peer_match(r, 6);
	assert_int_equal(got, 12 + n);
	assert_true(l4_csum_ok(frame + 12 + 14, 20 + 20 + 777));
	assert_memory_equal(frame + 12 + 14 + 40, payload, 777);
}

/* A 64 KiB TCP segment (GSO TCPV4) from the guest leaves the far tap cut into MSS segments. */
static void test_tso_segmentation(void **state)
{
	struct rig *r = *state;
	static uint8_t f[FRAME_CAP];
	const size_t len = 65000, mss = 1448;
	struct virtio_net_hdr h = hdr_partial(34, 16);
	static uint8_t seen[65000];
	size_t bytes = 0;
	unsigned segs = 0;
	const uint32_t seq0 = 0x10000000u;

	rig_start(r, BASIC | OFFL);
	h.gso_type = VIRTIO_NET_HDR_GSO_TCPV4;
	h.gso_size = htole16(mss);
	h.hdr_len = htole16(54);
	pattern(payload, len, 5);
	size_t n = tcp_frame(f, r->hmac, r->gmac, IP_GUEST, IP_FAR, seq0, payload, len, CSUM_PARTIAL);

	tx_send(r, 0, &h, f, n);
	memset(seen, 0, sizeof(seen));
	while (bytes < len) {
		ssize_t got = peer_match(r, 6);

		assert_true(got > 12 + 54);
		const uint8_t *ip = frame + 12 + 14, *t = ip + 20;
		size_t iplen = get16(ip + 2), plen = iplen - 40, off = get32(t + 4) - seq0;

		assert_int_equal((size_t)got, 12 + 14 + iplen);
		assert_true(14 + iplen <= 1514);
		assert_true(plen <= mss && plen > 0);
		assert_true(l4_csum_ok(ip, iplen));
		assert_true(off + plen <= len);
		assert_memory_equal(t + 20, payload + off, plen);
		for (size_t i = off; i < off + plen; i++) {
			assert_int_equal(seen[i], 0);
			seen[i] = 1;
		}
		bytes += plen;
		segs++;
	}
	assert_int_equal(segs, (len + mss - 1) / mss);
	assert_int_equal(stats(r).tx_frames, 1);
	assert_int_equal(stats(r).tx_bytes, n);
}

static int shell(const char *cmd);

/* Ethernet + IPv6 + TCP, checksum left partial (pseudo-header sum) for NEEDS_CSUM. */
static size_t tcp6_frame(uint8_t *f, const uint8_t dst[6], const uint8_t src[6],
			 const uint8_t sip[16], const uint8_t dip[16], uint32_t seq,
			 const uint8_t *pl, size_t n)
{
	size_t o = eth(f, dst, src, 0x86dd);
	uint8_t *ip = f + o, *t = ip + 40;
	uint32_t sum;

	memset(ip, 0, 40);
	ip[0] = 0x60;
	put16(ip + 4, (uint16_t)(20 + n));
	ip[6] = 6;
	ip[7] = 64;
	memcpy(ip + 8, sip, 16);
	memcpy(ip + 24, dip, 16);
	tcp_hdr(t, seq);
	memcpy(t + 20, pl, n);
	sum = csum_add(0, ip + 8, 32) + (uint32_t)(20 + n) + 6;
	put16(t + 16, csum_fold(sum));
	return o + 40 + 20 + n;
}

/* HOST_TSO6: a 64 KiB TCP/IPv6 segment leaves the far tap as MSS segments, checksummed. */
static void test_tso6_segmentation(void **state)
{
	struct rig *r = *state;
	static const uint8_t g6[16] = { 0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2 };
	static const uint8_t far6[16] = { 0xfd, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2 };
	static uint8_t f[FRAME_CAP];
	const size_t len = 65000, mss = 1428;
	struct virtio_net_hdr h = hdr_partial(54, 16);
	size_t bytes = 0;
	unsigned segs = 0;

	rig_start(r, BASIC | OFFL);
	netns_write("/proc/sys/net/ipv6/conf/all/forwarding", "1");
	netns_write("/proc/sys/net/ipv6/conf/" TAP "/accept_dad", "0");
	netns_write("/proc/sys/net/ipv6/conf/" PEER "/accept_dad", "0");
	netns_write("/proc/sys/net/ipv6/conf/" TAP "/disable_ipv6", "0");
	netns_write("/proc/sys/net/ipv6/conf/" PEER "/disable_ipv6", "0");
	if (shell("ip -6 addr add fd00::1/64 dev " TAP " nodad && "
		  "ip -6 addr add fd00:1::1/64 dev " PEER " nodad && "
		  "ip -6 neigh replace fd00:1::2 lladdr 02:00:00:00:01:02 dev " PEER
		  " nud permanent") != 0) {
		print_message("[  SKIP    ] ip(8) with IPv6 is needed\n");
		skip();
	}
	h.gso_type = VIRTIO_NET_HDR_GSO_TCPV6;
	h.gso_size = htole16(mss);
	h.hdr_len = htole16(74);
	pattern(payload, len, 10);
	size_t n = tcp6_frame(f, r->hmac, r->gmac, g6, far6, 0x20000000u, payload, len);

	tx_send(r, 0, &h, f, n);
	while (bytes < len) {
		ssize_t got = peer_read(r, frame, sizeof(frame), TIMEOUT_MS);

		assert_true(got > 0);
		const uint8_t *e = frame + 12, *ip = e + 14, *t = ip + 40;

		if (got < 12 + 74 || get16(e + 12) != 0x86dd || ip[6] != 6)
			continue;          /* the kernel's own ICMPv6 */
		size_t plen = get16(ip + 4) - 20u, off = get32(t + 4) - 0x20000000u;

		assert_true(14 + 40 + 20 + plen <= 1514);
		assert_true(off + plen <= len);
		assert_memory_equal(t + 20, payload + off, plen);
		uint32_t sum = csum_add(0, ip + 8, 32) + (uint32_t)(20 + plen) + 6;

		assert_int_equal(csum_fold(csum_add(sum, t, 20 + plen)), 0xffff);
		bytes += plen;
		segs++;
	}
	assert_int_equal(bytes, len);
	assert_int_equal(segs, (len + mss - 1) / mss);
}

/* Write a 64 KiB GSO TCP frame into the far tap: the kernel forwards it towards the guest. */
static size_t peer_send_gso(struct rig *r, size_t len, uint32_t seq0)
{
	static uint8_t f[FRAME_CAP];
	struct virtio_net_hdr h = hdr_partial(34, 16);

	h.gso_type = VIRTIO_NET_HDR_GSO_TCPV4;
	h.gso_size = htole16(1448);
	h.hdr_len = htole16(54);
	pattern(payload, len, 6);
	memcpy(f, &h, 12);
	size_t n = tcp_frame(f + 12, r->pmac, far_mac, IP_FAR, IP_GUEST, seq0, payload, len,
			     CSUM_PARTIAL);

	assert_int_equal(write(r->peer, f, 12 + n), (ssize_t)(12 + n));
	return n;
}

/* Complete a NEEDS_CSUM checksum as a guest driver would. */
static void csum_complete(uint8_t *f, size_t len, const struct virtio_net_hdr *h)
{
	size_t start = le16toh(h->csum_start), off = le16toh(h->csum_offset);

	assert_true(start + off + 2 <= len);
	put16(f + start + off, (uint16_t)~csum_fold(csum_add(0, f + start, len - start)));
}

/*
 * UFO both ways, where the kernel has it: an 8000-byte UDP datagram (GSO UDP) from the guest
 * leaves the far tap as IP fragments with a correct checksum; one written into the far tap as
 * GSO UDP reaches the guest complete and checksummed (as fragments: Linux accepts TUN_F_UFO
 * but no longer hands UFO to a tap).
 */
static void test_ufo_both_ways(void **state)
{
	struct rig *r = *state;
	static uint8_t f[FRAME_CAP], dgram[16384];
	const size_t len = 8000;
	struct virtio_net_hdr h = hdr_partial(34, 6);
	size_t have = 0, total = 0;

	rig_start(r, BASIC | OFFL | F(HOST_UFO) | F(GUEST_UFO));
	if (!(r->drv.features & F(HOST_UFO))) {
		print_message("[  SKIP    ] the kernel does not take TUN_F_UFO\n");
		skip();
	}
	assert_int_equal(stats(r).offloads, TUN_F_CSUM | TUN_F_TSO4 | TUN_F_TSO6 | TUN_F_UFO);
	h.gso_type = VIRTIO_NET_HDR_GSO_UDP;
	h.gso_size = htole16(1472);
	h.hdr_len = htole16(42);
	pattern(payload, len, 9);
	size_t n = udp_frame(f, r->hmac, r->gmac, IP_GUEST, IP_FAR, 6000, 7000, payload, len,
			     CSUM_PARTIAL);

	tx_send(r, 0, &h, f, n);
	while (!total || have < total) {
		ssize_t got = peer_match(r, 17);

		assert_true(got > 12 + 34);
		const uint8_t *ip = frame + 12 + 14;
		uint16_t fo = get16(ip + 6);
		size_t dl = get16(ip + 2) - 20u, off = (size_t)(fo & 0x1fff) * 8;

		assert_true(14 + 20 + dl <= 1514);
		assert_true(off + dl <= sizeof(dgram));
		memcpy(dgram + off, ip + 20, dl);
		have += dl;
		if (!(fo & 0x2000))
			total = off + dl;
	}
	assert_int_equal(total, 8 + len);
	assert_memory_equal(dgram + 8, payload, len);
	/* The UDP checksum over the reassembled datagram (pseudo header from the last fragment). */
	uint8_t ph[20];

	memcpy(ph, frame + 12 + 14, 20);
	assert_int_equal(csum_fold(csum_add(pseudo_sum(ph, 17, total), dgram, total)), 0xffff);

	/* Towards the guest: a GSO UDP datagram, forwarded. */
	struct virtio_net_hdr ph_hdr = hdr_partial(34, 6);
	struct want w = { .type = 0x0800, .proto = 17, .dport = 6000 };

	ph_hdr.gso_type = VIRTIO_NET_HDR_GSO_UDP;
	ph_hdr.gso_size = htole16(1472);
	ph_hdr.hdr_len = htole16(42);
	memcpy(f, &ph_hdr, 12);
	n = udp_frame(f + 12, r->pmac, far_mac, IP_FAR, IP_GUEST, 7000, 6000, payload, len,
		      CSUM_PARTIAL);
	assert_int_equal(write(r->peer, f, 12 + n), (ssize_t)(12 + n));
	/* Linux accepts TUN_F_UFO but never hands UFO to a tap: IP fragments, or one GSO frame. */
	w.dport = 0;
	have = total = 0;
	memset(dgram, 0, sizeof(dgram));
	while (!total || have < total) {
		int64_t got = rx_match(r, 0, &w, &h, TIMEOUT_MS);

		assert_true(got > 34);
		assert_true(h.gso_type == VIRTIO_NET_HDR_GSO_NONE ||
			    h.gso_type == VIRTIO_NET_HDR_GSO_UDP);
		if (h.flags & VIRTIO_NET_HDR_F_NEEDS_CSUM)
			csum_complete(r->frame, (size_t)got, &h);
		const uint8_t *ip = r->frame + 14;
		uint16_t fo = get16(ip + 6);
		size_t dl = get16(ip + 2) - 20u, off = (size_t)(fo & 0x1fff) * 8;

		assert_true(off + dl <= sizeof(dgram));
		memcpy(dgram + off, ip + 20, dl);
		have += dl;
		if (!(fo & 0x2000))
			total = off + dl;
	}
	assert_int_equal(total, 8 + len);
	assert_memory_equal(dgram + 8, payload, len);
	memcpy(ph, r->frame + 14, 20);
	assert_int_equal(csum_fold(csum_add(pseudo_sum(ph, 17, total), dgram, total)), 0xffff);
}


/* GUEST_TSO4 + MRG_RXBUF: one 64 KiB frame spread over 1526-byte buffers, GSO fields intact. */
static void test_rx_gso_mergeable(void **state)
{
	struct rig *r = *state;
	struct virtio_net_hdr h;
	struct want w = { .type = 0x0800, .proto = 6 };
	const size_t len = 65000;

	rig_start(r, BASIC | OFFL);
	uint64_t bufs0 = stats(r).rx_buffers;
	size_t n = peer_send_gso(r, len, 5);
	int64_t got = rx_match(r, 0, &w, &h, TIMEOUT_MS);

	assert_int_equal(got, (int64_t)n);
	assert_true(last_nb >= (n + 12) / RX_BUF);
	assert_int_equal(stats(r).rx_buffers - bufs0, last_nb);
	assert_int_equal(h.gso_type, VIRTIO_NET_HDR_GSO_TCPV4);
	assert_int_equal(le16toh(h.gso_size), 1448);
	assert_true(h.flags & VIRTIO_NET_HDR_F_NEEDS_CSUM);
	assert_memory_equal(r->frame + 54, payload, len);
	csum_complete(r->frame, (size_t)got, &h);
	assert_true(l4_csum_ok(r->frame + 14, (size_t)got - 14));
	assert_int_equal(stats(r).rx_dropped, 0);
}

/* Without GUEST_TSO4 the kernel segments before the tap: MSS-sized frames, one buffer each. */
static void test_rx_gso_segmented_without_guest_tso(void **state)
{
	struct rig *r = *state;
	struct virtio_net_hdr h;
	struct want w = { .type = 0x0800, .proto = 6 };
	const size_t len = 20000;
	size_t bytes = 0;

	rig_start(r, BASIC | F(CSUM) | F(GUEST_CSUM) | F(MRG_RXBUF));
	peer_send_gso(r, len, 0);
	while (bytes < len) {
		int64_t got = rx_match(r, 0, &w, &h, TIMEOUT_MS);

		assert_true(got > 54 && got <= 1514);
		assert_int_equal(h.gso_type, 0);
		assert_int_equal(le16toh(h.num_buffers), 1);
		uint32_t off = get32(r->frame + 34 + 4);

		assert_memory_equal(r->frame + 54, payload + off, (size_t)got - 54);
		bytes += (size_t)got - 54;
	}
	assert_int_equal(bytes, len);
}

/* GUEST_CSUM: a local UDP datagram reaches the guest with NEEDS_CSUM and a usable partial sum. */
static void test_rx_csum_to_guest(void **state)
{
	struct rig *r = *state;
	struct virtio_net_hdr h;
	struct want w = { .type = 0x0800, .proto = 17, .dport = 6000 };
	int s;

	rig_start(r, BASIC | OFFL);
	s = udp_sock(IP_TAP, 5000);
	pattern(payload, 500, 7);
	udp_send(s, IP_GUEST, 6000, payload, 500);
	int64_t got = rx_match(r, 0, &w, &h, TIMEOUT_MS);

	assert_int_equal(got, 42 + 500);
	assert_int_equal(h.flags, VIRTIO_NET_HDR_F_NEEDS_CSUM);
	assert_int_equal(le16toh(h.csum_start), 34);
	assert_int_equal(le16toh(h.csum_offset), 6);
	csum_complete(r->frame, (size_t)got, &h);
	assert_true(l4_csum_ok(r->frame + 14, (size_t)got - 14));
	assert_memory_equal(r->frame + 42, payload, 500);
	close(s);
}

/* No RX buffers: the device stops reading, the kernel keeps queueing; buffers bring it all. */
static void test_rx_starvation_recovery(void **state)
{
	struct rig *r = *state;
	struct virtio_net_hdr h;
	struct want w = { .type = 0x0800, .proto = 17, .dport = 6000 };
	const unsigned total = 100, first = 16;
	uint8_t pl[300];
	int s;

	rig_start_opt(r, BASIC | OFFL, false);
	s = udp_sock(IP_TAP, 5000);
	no_repost = true;
	rx_fill(r, 0, 0, first);
	for (unsigned i = 0; i < total; i++) {
		pattern(pl, sizeof(pl), i);
		put32(pl, i);
		udp_send(s, IP_GUEST, 6000, pl, sizeof(pl));
	}
	unsigned next = 0;

	for (; next < first; next++) {
		assert_int_equal(rx_match(r, 0, &w, &h, TIMEOUT_MS), 42 + sizeof(pl));
		assert_int_equal(get32(r->frame + 42), next);
	}
	/* Nothing more can arrive; the device noticed and paused. */
	assert_int_equal(rx_frame(r, 0, &h, 300), -1);
	assert_true(stats(r).rx_starved >= 1);
	rig_run(r, 200);
	/* Refill (reusing the consumed slots) and kick: everything queued meanwhile, in order. */
	no_repost = false;
	rx_fill(r, 0, 0, RX_SLOTS);
	for (; next < total; next++) {
		assert_int_equal(rx_match(r, 0, &w, &h, TIMEOUT_MS), 42 + sizeof(pl));
		assert_int_equal(get32(r->frame + 42), next);
		pattern(pl, sizeof(pl), next);
		assert_memory_equal(r->frame + 46, pl + 4, sizeof(pl) - 4);
	}
	assert_int_equal(stats(r).rx_dropped, 0);
	close(s);
}

/* ip link set down / up: STATUS follows, each change with a configuration interrupt. */
static void test_link_down_up(void **state)
{
	struct rig *r = *state;
	uint32_t gen0;

	rig_start(r, BASIC);
	wait_link(r, VIRTIO_NET_S_LINK_UP);
	rig_run(r, 50);
	r->isr_seen = 0;
	gen0 = vdrv_read32(&r->drv, 0xfc);
	if_set_up(TAP, false);
	wait_link(r, 0);
	assert_true(r->isr_seen & VIRTIO_MMIO_INT_CONFIG);
	assert_true(vdrv_read32(&r->drv, 0xfc) != gen0);
	assert_false(stats(r).link_up);
	r->isr_seen = 0;
	if_set_up(TAP, true);
	wait_link(r, VIRTIO_NET_S_LINK_UP);
	assert_true(r->isr_seen & VIRTIO_MMIO_INT_CONFIG);
	assert_true(stats(r).link_changes >= 2);
	/* The neighbour entry went with the link; traffic works again once it is back. */
	arp_static(TAP, IP_GUEST, r->gmac);
	ping(r, 0, 9);
}

/* Hostile TX chains: each dropped, counted and completed; the queue keeps working. */
static void test_malformed_tx(void **state)
{
	struct rig *r = *state;
	static uint8_t raw[TX_AREA];
	static const struct {
		struct virtio_net_hdr h;
		size_t flen;           /* 0: the valid 242-byte UDP frame */
	} cases[] = {
		{ { 0 }, 10 },                                                    /* runt */
		{ { .gso_type = 2 }, 0 },                                         /* unknown type */
		{ { .flags = 1, .gso_type = 1, .csum_start = 34, .csum_offset = 6, .hdr_len = 42 },
		  0 },                                                            /* gso_size 0 */
		{ { .gso_type = 1, .gso_size = 100, .hdr_len = 42 }, 0 },         /* no NEEDS_CSUM */
		{ { .flags = 1, .csum_start = 1000, .csum_offset = 6 }, 0 },      /* start beyond */
		{ { .flags = 1, .csum_start = 34, .csum_offset = 65535 }, 0 },    /* offset beyond */
		{ { .flags = VIRTIO_NET_HDR_F_DATA_VALID }, 0 },                  /* device's flag */
		{ { .flags = 1, .gso_type = 0x81, .gso_size = 100, .csum_start = 34,
		    .csum_offset = 6, .hdr_len = 42 }, 0 },                       /* ECN */
		{ { .flags = 1, .gso_type = 3, .gso_size = 100, .csum_start = 34,
		    .csum_offset = 6, .hdr_len = 42 }, 0 },                       /* UFO not agreed */
		{ { .flags = 1, .gso_type = 1, .gso_size = 100, .csum_start = 34,
		    .csum_offset = 6, .hdr_len = 60000 }, 0 },                    /* hdr_len beyond */
		{ { 0 }, 70000 },                                                 /* > 64 KiB */
	};
	unsigned bad = 0;

	rig_start(r, BASIC | OFFL);
	size_t n = udp_frame(frame, r->hmac, r->gmac, IP_GUEST, IP_TAP, 1, 2, payload, 200,
			     CSUM_PARTIAL);

	/* Shorter than the header. */
	assert_int_equal(tx_raw(r, 0, raw, 6, 4096), 0);
	assert_int_equal(stats(r).tx_malformed, ++bad);
	/* Only device-writable buffers. */
	struct vdrv_buf wb = { .gpa = r->tx_gpa, .len = 64, .write = true };

	assert_true(vdrv_transfer(&r->drv, 1, &wb, 1, false, TIMEOUT_MS) >= 0);
	assert_int_equal(stats(r).tx_malformed, ++bad);
	for (unsigned i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		size_t flen = cases[i].flen ? cases[i].flen : n;

		memcpy(raw, &cases[i].h, 12);
		memset(raw + 12, 0, flen);
		memcpy(raw + 12, frame, flen < n ? flen : n);
		assert_int_equal(tx_raw(r, 0, raw, 12 + flen, 4096), 0);
		assert_int_equal(stats(r).tx_malformed, ++bad);
	}
	assert_false(vdrv_status(&r->drv) & VIRTIO_STATUS_NEEDS_RESET);
	assert_int_equal(stats(r).tx_frames, 0);
	ping(r, 0, 1);
	assert_int_equal(stats(r).tx_frames, 1);
}

/* RX chains too small for a header come back empty, counted; the next one is used. */
static void test_rx_bad_chains(void **state)
{
	struct rig *r = *state;
	struct vdrv_buf small = { .gpa = r->tx_gpa, .len = 4, .write = true };

	rig_start_opt(r, BASIC | OFFL, false);
	small.gpa = r->tx_gpa + 8192;
	assert_true(vdrv_submit(&r->drv, 0, &small, 1, false, BAD_TOKEN) >= 0);
	rx_fill(r, 0, 0, RX_SLOTS);
	ping(r, 0, 3);
	assert_int_equal(bad_seen, 1);
	assert_int_equal(stats(r).rx_bad_chains, 1);
	assert_false(vdrv_status(&r->drv) & VIRTIO_STATUS_NEEDS_RESET);
}

/* A frame the kernel sends out of the tap as is (packet socket): ethertype 0x88b5, a marker. */
static void raw_out(const uint8_t dst[6], const uint8_t src[6], uint8_t marker)
{
	struct sockaddr_ll sll = { .sll_family = AF_PACKET, .sll_halen = 6,
				   .sll_ifindex = (int)if_nametoindex(TAP) };
	uint8_t f[60] = { 0 };
	int s = socket(AF_PACKET, SOCK_RAW | SOCK_CLOEXEC, 0);

	assert_true(s >= 0);
	eth(f, dst, src, 0x88b5);
	f[14] = marker;
	memcpy(sll.sll_addr, dst, 6);
	assert_int_equal(sendto(s, f, sizeof(f), 0, (struct sockaddr *)&sll, sizeof(sll)), 60);
	close(s);
}

/* Markers received until `until` arrives (tun keeps order: earlier ones came before it). */
static uint32_t markers_until(struct rig *r, uint8_t until)
{
	struct want w = { .type = 0x88b5 };
	struct virtio_net_hdr h;
	uint32_t seen = 0;

	for (;;) {
		int64_t n = rx_match(r, 0, &w, &h, TIMEOUT_MS);

		assert_true(n >= 15);
		seen |= 1u << r->frame[14];
		if (r->frame[14] == until)
			return seen;
	}
}

/* CTRL_RX: promiscuous and all-multicast switch the tap's filter; MAC table; bad commands. */
static void test_ctrl_rx_filter(void **state)
{
	struct rig *r = *state;
	static const uint8_t other[6] = { 0x02, 0, 0, 0, 0, 0x99 };
	static const uint8_t bcast[6] = { 0xff, 0xff, 0xff, 0xff, 0xff, 0xff };
	static const uint8_t mc1[6] = { 0x01, 0x00, 0x5e, 0, 0, 0xfb };
	static const uint8_t mc2[6] = { 0x01, 0x00, 0x5e, 0, 0, 0xfc };
	uint8_t on = 1, off = 0;

	rig_start(r, BASIC | OFFL);
	/* Default: promiscuous, as a driver that never set a filter expects. */
	raw_out(other, r->hmac, 1);
	raw_out(r->gmac, r->hmac, 2);
	assert_int_equal(markers_until(r, 2), (1u << 1) | (1u << 2));
	assert_true(stats(r).promisc);

	assert_int_equal(ctrl_cmd(r, VIRTIO_NET_CTRL_RX, VIRTIO_NET_CTRL_RX_PROMISC, &off, 1),
			 VIRTIO_NET_OK);
	assert_false(stats(r).promisc);
	raw_out(other, r->hmac, 3);
	raw_out(mc1, r->hmac, 4);
	raw_out(bcast, r->hmac, 5);
	raw_out(r->gmac, r->hmac, 6);
	assert_int_equal(markers_until(r, 6), (1u << 5) | (1u << 6));

	assert_int_equal(ctrl_cmd(r, VIRTIO_NET_CTRL_RX, VIRTIO_NET_CTRL_RX_ALLMULTI, &on, 1),
			 VIRTIO_NET_OK);
	assert_true(stats(r).allmulti);
	raw_out(other, r->hmac, 7);
	raw_out(mc1, r->hmac, 8);
	raw_out(r->gmac, r->hmac, 9);
	assert_int_equal(markers_until(r, 9), (1u << 8) | (1u << 9));

	/* MAC table: one multicast address accepted, the other not (all-multicast off again). */
	uint8_t tbl[4 + 4 + 6] = { 0, 0, 0, 0, 1, 0, 0, 0 };

	memcpy(tbl + 8, mc1, 6);
	assert_int_equal(ctrl_cmd(r, VIRTIO_NET_CTRL_RX, VIRTIO_NET_CTRL_RX_ALLMULTI, &off, 1),
			 VIRTIO_NET_OK);
	assert_int_equal(ctrl_cmd(r, VIRTIO_NET_CTRL_MAC, VIRTIO_NET_CTRL_MAC_TABLE_SET, tbl,
				  sizeof(tbl)), VIRTIO_NET_OK);
	raw_out(mc2, r->hmac, 10);
	raw_out(mc1, r->hmac, 11);
	raw_out(r->gmac, r->hmac, 12);
	assert_int_equal(markers_until(r, 12), (1u << 11) | (1u << 12));

	assert_int_equal(ctrl_cmd(r, VIRTIO_NET_CTRL_RX, VIRTIO_NET_CTRL_RX_PROMISC, &on, 1),
			 VIRTIO_NET_OK);
	raw_out(other, r->hmac, 13);
	assert_int_equal(markers_until(r, 13), 1u << 13);

	/* Refused: unknown class, wrong length, a table longer than its data, MQ not negotiated. */
	uint64_t err0 = stats(r).ctrl_errors;
	uint8_t two[2] = { 1, 1 };
	uint8_t lying[8] = { 9, 0, 0, 0, 0, 0, 0, 0 };
	uint16_t pairs = htole16(1);

	assert_int_equal(ctrl_cmd(r, 9, 0, NULL, 0), VIRTIO_NET_ERR);
	assert_int_equal(ctrl_cmd(r, VIRTIO_NET_CTRL_RX, VIRTIO_NET_CTRL_RX_PROMISC, two, 2),
			 VIRTIO_NET_ERR);
	assert_int_equal(ctrl_cmd(r, VIRTIO_NET_CTRL_MAC, VIRTIO_NET_CTRL_MAC_TABLE_SET, lying, 8),
			 VIRTIO_NET_ERR);
	assert_int_equal(ctrl_cmd(r, VIRTIO_NET_CTRL_MQ, VIRTIO_NET_CTRL_MQ_VQ_PAIRS_SET, &pairs, 2),
			 VIRTIO_NET_ERR);
	assert_int_equal(stats(r).ctrl_errors - err0, 4);
	assert_true(stats(r).promisc);
	ping(r, 0, 2);
}

/* MQ with two pairs: VQ_PAIRS_SET, flows spread over both RX queues, TX on the second pair. */
static void test_mq_two_pairs(void **state)
{
	struct rig *r = *state;
	struct want w = { .type = 0x0800, .proto = 17, .dport = 6000 };
	struct virtio_net_hdr h;
	enum { FLOWS = 16, PER = 4 };
	int socks[FLOWS];
	unsigned per_q[2] = { 0 }, seen[FLOWS] = { 0 };
	uint16_t v;
	uint8_t pl[200];

	cfg_default(&r->cfg, 2);
	rig_start(r, BASIC | OFFL | F(MQ));
	assert_true(r->drv.device_features & F(MQ));
	assert_int_equal(vdrv_config16(&r->drv, VIRTIO_NET_CFG_MAX_PAIRS), 2);
	assert_int_equal(stats(r).active_pairs, 1);
	v = htole16(3);
	assert_int_equal(ctrl_cmd(r, VIRTIO_NET_CTRL_MQ, 0, &v, 2), VIRTIO_NET_ERR);
	v = htole16(0);
	assert_int_equal(ctrl_cmd(r, VIRTIO_NET_CTRL_MQ, 0, &v, 2), VIRTIO_NET_ERR);
	v = htole16(2);
	assert_int_equal(ctrl_cmd(r, VIRTIO_NET_CTRL_MQ, 0, &v, 2), VIRTIO_NET_OK);
	assert_int_equal(stats(r).active_pairs, 2);

	for (unsigned f = 0; f < FLOWS; f++)
		socks[f] = udp_sock(IP_TAP, (uint16_t)(5100 + f));
	for (unsigned i = 0; i < PER; i++)
		for (unsigned f = 0; f < FLOWS; f++) {
			pattern(pl, sizeof(pl), f * 100 + i);
			pl[0] = (uint8_t)f;
			pl[1] = (uint8_t)i;
			udp_send(socks[f], IP_GUEST, 6000, pl, sizeof(pl));
		}
	for (unsigned k = 0; k < FLOWS * PER; k++) {
		assert_int_equal(rx_match(r, -1, &w, &h, TIMEOUT_MS), 42 + sizeof(pl));
		unsigned f = r->frame[42], i = r->frame[43];

		assert_true(f < FLOWS && i < PER);
		assert_int_equal(get16(r->frame + 34), 5100 + f);
		/* Per flow, in order (one flow stays on one queue). */
		assert_int_equal(seen[f], i);
		seen[f]++;
		pattern(pl, sizeof(pl), f * 100 + i);
		assert_memory_equal(r->frame + 44, pl + 2, sizeof(pl) - 2);
		per_q[last_pair]++;
	}
	assert_true(per_q[0] > 0 && per_q[1] > 0);
	print_message("  flows over the RX queues: %u / %u\n", per_q[0], per_q[1]);

	/* TX on pair 1: ping, and UDP to a kernel socket. */
	ping(r, 1, 11);
	pattern(payload, 300, 8);
	size_t n = udp_frame(frame, r->hmac, r->gmac, IP_GUEST, IP_TAP, 6000, 5100, payload, 300,
			     CSUM_FULL);
	uint8_t got[512];

	memset(&h, 0, sizeof(h));
	tx_send(r, 1, &h, frame, n);
	assert_int_equal(recv(socks[0], got, sizeof(got), 0), 300);
	assert_memory_equal(got, payload, 300);

	/* Back to one pair: everything on queue 0. */
	v = htole16(1);
	assert_int_equal(ctrl_cmd(r, VIRTIO_NET_CTRL_MQ, 0, &v, 2), VIRTIO_NET_OK);
	assert_int_equal(stats(r).active_pairs, 1);
	for (unsigned f = 0; f < FLOWS; f++)
		udp_send(socks[f], IP_GUEST, 6000, pl, sizeof(pl));
	for (unsigned f = 0; f < FLOWS; f++) {
		assert_int_equal(rx_match(r, -1, &w, &h, TIMEOUT_MS), 42 + sizeof(pl));
		assert_int_equal(last_pair, 0);
	}
	for (unsigned f = 0; f < FLOWS; f++)
		close(socks[f]);
}

/* A reset while a frame waits for more buffers: held chains dropped, nothing leaks, reusable. */
static void test_reset_with_pending_frame(void **state)
{
	struct rig *r = *state;

	rig_start_opt(r, BASIC | OFFL, false);
	rx_fill(r, 0, 0, 3);
	peer_send_gso(r, 65000, 1);
	rig_run(r, 200);
	assert_true(stats(r).rx_starved >= 1);
	assert_int_equal(stats(r).rx_frames, 0);
	vdrv_reset(&r->drv);
	assert_int_equal(gmem_flat_outstanding(r->x.gm), 0);
	r->x.mem.next = 0;
	assert_int_equal(vdrv_init(&r->drv, &r->x.io, &r->x.mem, BASIC | OFFL, 3, 256), 0);
	r->rx_gpa[0] = ram_alloc(r, (uint64_t)RX_SLOTS * r->rx_size, (void **)&r->rx_host[0]);
	r->tx_gpa = ram_alloc(r, TX_AREA, (void **)&r->tx_host);
	rx_fill(r, 0, 0, RX_SLOTS);
	ping(r, 0, 4);
}

/* No tap name: "xvd<domid>.<n>" is created, put on the bridge and brought up; gone at the end. */
static void test_default_tap_on_bridge(void **state)
{
	struct rig *r = *state;
	char br[IFNAMSIZ] = "xbr0";
	struct ifreq ifr;
	struct net_stats st;

	assert_int_equal(netns_ioctl(SIOCBRADDBR, br), 0);
	if_addr(br, 0x0a000201u);              /* 10.0.2.1 */
	r->cfg.u.net.tap[0] = 0;
	snprintf(r->cfg.u.net.bridge, sizeof(r->cfg.u.net.bridge), "%s", br);
	r->loop = ev_loop_new(EVFLAG_AUTO);
	assert_int_equal(vdrv_direct_open(&r->x, &r->cfg, RAM_GPA, RAM_SIZE, r->loop), 0);
	r->open = true;
	assert_true(net_get_stats(r->x.dev, &st));
	assert_string_equal(st.ifname, "xvd0.0");
	netns_ifr(&ifr, "xvd0.0");
	assert_int_equal(netns_ioctl(SIOCGIFFLAGS, &ifr), 0);
	assert_true(ifr.ifr_flags & IFF_UP);
	assert_int_equal(vdrv_init(&r->drv, &r->x.io, &r->x.mem, BASIC | OFFL, 3, 256), 0);
	r->pairs = 1;
	r->rx_size = RX_BUF;
	vdrv_config_read(&r->drv, 0, r->gmac, 6);
	r->rx_gpa[0] = ram_alloc(r, (uint64_t)RX_SLOTS * r->rx_size, (void **)&r->rx_host[0]);
	r->tx_gpa = ram_alloc(r, TX_AREA, (void **)&r->tx_host);
	rx_fill(r, 0, 0, RX_SLOTS);
	/* The bridge answers an ARP request that came in through its new port. */
	uint8_t f[60] = { 0 };
	static const uint8_t bcast[6] = { 0xff, 0xff, 0xff, 0xff, 0xff, 0xff };
	struct virtio_net_hdr h = { 0 };
	size_t o = eth(f, bcast, r->gmac, 0x0806);

	put16(f + o, 1);
	put16(f + o + 2, 0x0800);
	f[o + 4] = 6;
	f[o + 5] = 4;
	put16(f + o + 6, 1);
	memcpy(f + o + 8, r->gmac, 6);
	put32(f + o + 14, 0x0a000202u);
	put32(f + o + 24, 0x0a000201u);
	tx_send(r, 0, &h, f, 60);

	struct want w = { .type = 0x0806 };

	assert_true(rx_match(r, 0, &w, &h, TIMEOUT_MS) >= 42);
	assert_int_equal(get16(r->frame + 14 + 6), 2);
	assert_int_equal(get32(r->frame + 14 + 14), 0x0a000201u);
	/* A second device without a name takes the next free one. */
	struct vdrv_direct y;
	struct config_device c2 = r->cfg;

	snprintf(c2.name, sizeof(c2.name), "eth1");
	assert_int_equal(vdrv_direct_open(&y, &c2, RAM_GPA, 1u << 20, r->loop), 0);
	assert_true(net_get_stats(y.dev, &st));
	assert_string_equal(st.ifname, "xvd0.1");
	vdrv_direct_close(&y);
	assert_false(if_exists("xvd0.1"));
	vdrv_reset(&r->drv);
	vdrv_direct_close(&r->x);
	ev_loop_destroy(r->loop);
	r->open = false;
	assert_false(if_exists("xvd0.0"));
	assert_true(if_exists(br));
	if_set_up(br, false);
	assert_int_equal(netns_ioctl(SIOCBRDELBR, br), 0);
}

/*
 * A tap made again (a restart without the fd store) has the same address, fe: and the guest's
 * last five bytes, so the bridge it joins keeps its own: with the kernel's random address, the
 * bridge took each new tap's and the guest's ARP entry for dom0 went stale (pings lost on real
 * Xen until the guest asked again).
 */
static void test_tap_address_stable(void **state)
{
	struct rig *r = *state;
	char br[IFNAMSIZ] = "xbr1";
	uint8_t tap1[6], tap2[6], br1[6], br2[6], gmac[6];

	assert_int_equal(netns_ioctl(SIOCBRADDBR, br), 0);
	r->cfg.u.net.tap[0] = 0;
	snprintf(r->cfg.u.net.bridge, sizeof(r->cfg.u.net.bridge), "%s", br);
	r->loop = ev_loop_new(EVFLAG_AUTO);
	for (int round = 0; round < 2; round++) {
		assert_int_equal(vdrv_direct_open(&r->x, &r->cfg, RAM_GPA, RAM_SIZE, r->loop), 0);
		if_hwaddr("xvd0.0", round ? tap2 : tap1);
		if_hwaddr(br, round ? br2 : br1);
		if (round == 0) {
			assert_int_equal(vdrv_init(&r->drv, &r->x.io, &r->x.mem, BASIC, 3, 256), 0);
			vdrv_config_read(&r->drv, 0, gmac, 6);
			vdrv_reset(&r->drv);
		}
		vdrv_direct_close(&r->x);
		assert_false(if_exists("xvd0.0"));
	}
	ev_loop_destroy(r->loop);
	assert_memory_equal(br2, br1, 6);
	assert_memory_equal(tap2, tap1, 6);
	assert_int_equal(tap1[0], 0xfe);
	assert_memory_equal(tap1 + 1, gmac + 1, 5);
	assert_memory_equal(br1, tap1, 6);
	assert_int_equal(netns_ioctl(SIOCBRDELBR, br), 0);
}

/* An existing tap is used, not removed; a missing bridge fails creation cleanly. */
static void test_existing_tap_and_bad_bridge(void **state)
{
	struct rig *r = *state;
	struct ifreq ifr;
	int fd = open("/dev/net/tun", O_RDWR | O_CLOEXEC);
	struct vdrv_direct y;
	struct config_device c = r->cfg;

	assert_true(fd >= 0);
	netns_ifr(&ifr, "vkeep0");
	ifr.ifr_flags = IFF_TAP | IFF_NO_PI | IFF_VNET_HDR;
	assert_int_equal(ioctl(fd, TUNSETIFF, &ifr), 0);
	assert_int_equal(ioctl(fd, TUNSETPERSIST, 1), 0);
	close(fd);
	snprintf(c.u.net.tap, sizeof(c.u.net.tap), "vkeep0");
	assert_int_equal(vdrv_direct_open(&y, &c, RAM_GPA, 1u << 20, NULL) < 0, 1);   /* no loop */
	r->loop = ev_loop_new(EVFLAG_AUTO);
	assert_int_equal(vdrv_direct_open(&y, &c, RAM_GPA, 1u << 20, r->loop), 0);
	vdrv_direct_close(&y);
	assert_true(if_exists("vkeep0"));
	fd = open("/dev/net/tun", O_RDWR | O_CLOEXEC);
	netns_ifr(&ifr, "vkeep0");
	ifr.ifr_flags = IFF_TAP | IFF_NO_PI | IFF_VNET_HDR;
	assert_int_equal(ioctl(fd, TUNSETIFF, &ifr), 0);
	assert_int_equal(ioctl(fd, TUNSETPERSIST, 0), 0);
	close(fd);
	assert_false(if_exists("vkeep0"));
	snprintf(c.u.net.tap, sizeof(c.u.net.tap), "vnew0");
	snprintf(c.u.net.bridge, sizeof(c.u.net.bridge), "nobr0");
	assert_true(vdrv_direct_open(&y, &c, RAM_GPA, 1u << 20, r->loop) < 0);
	assert_false(if_exists("vnew0"));
	ev_loop_destroy(r->loop);
}

static uint32_t rnd_state = 12345;

static uint32_t rnd(uint32_t n)
{
	rnd_state = rnd_state * 1103515245u + 12345u;
	return n ? (rnd_state >> 8) % n : 0;
}

static uint16_t rnd_pick16(const uint16_t *v, unsigned n)
{
	return v[rnd(n)];
}

/* A header near the edges: valid and invalid combinations of flags, GSO and checksum fields. */
static struct virtio_net_hdr rnd_hdr(uint32_t flen)
{
	static const uint16_t sizes[] = { 0, 1, 8, 536, 1448, 9000, 65535 };
	static const uint8_t types[] = { 0, 0, 1, 1, 3, 4, 5, 0x81, 0xff };
	uint16_t edge[] = { 0, 14, 34, (uint16_t)flen, (uint16_t)(flen - 2), (uint16_t)(flen + 1),
			    65535 };

	return (struct virtio_net_hdr){
		.flags = (uint8_t)(rnd(4) == 0 ? rnd(256) : rnd(2)),
		.gso_type = types[rnd(sizeof(types))],
		.gso_size = htole16(rnd_pick16(sizes, 7)),
		.hdr_len = htole16(rnd_pick16(edge, 7)),
		.csum_start = htole16(rnd_pick16(edge, 7)),
		.csum_offset = htole16((uint16_t)(rnd(3) ? rnd(20) : rnd(65536))),
	};
}

/*
 * Randomised hostile chains on both queues: TX headers at the edges with frames of any size in
 * up to 8 buffers (some only writable), RX buffers of 1 to 3000 bytes while the kernel sends.
 * Every chain comes back, the device never needs a reset, the counters add up, and a normal
 * ping works afterwards.
 */
static void test_hostile_random(void **state)
{
	struct rig *r = *state;
	enum { ROUNDS = 60, BATCH = 32 };
	unsigned submitted = 0, completed = 0, rx_back = 0, rx_posted = 0;
	int s;

	rig_start_opt(r, BASIC | OFFL, false);
	s = udp_sock(IP_TAP, 5000);
	for (size_t i = 0; i < TX_AREA; i++)
		r->tx_host[i] = (uint8_t)rnd(256);
	for (unsigned round = 0; round < ROUNDS; round++) {
		/* RX: odd buffers, from the RX pool's memory. */
		for (unsigned i = 0; i < 8; i++) {
			struct vdrv_buf b = { .gpa = r->rx_gpa[0] + rnd(RX_SLOTS * RX_BUF - 3000),
					      .len = 1 + rnd(3000), .write = true };

			if (vdrv_submit(&r->drv, 0, &b, 1, rnd(2), (void *)(uintptr_t)0xbad1) >= 0)
				rx_posted++;
		}
		vdrv_kick(&r->drv, 0);
		udp_send(s, IP_GUEST, 6000, r->tx_host, 1 + rnd(3000));
		for (unsigned c = 0; c < BATCH; c++) {
			struct vdrv_buf b[8];
			unsigned n = 1 + rnd(8);
			uint32_t flen = rnd(4) ? rnd(2000) : rnd(70000);
			struct virtio_net_hdr h = rnd_hdr(flen);
			uint64_t hgpa = r->tx_gpa + 64u * c;

			memcpy(r->tx_host + 64u * c, &h, 12);
			b[0] = (struct vdrv_buf){ .gpa = hgpa, .len = rnd(8) ? 12 : rnd(13) };
			if (!b[0].len)
				b[0].len = 1;
			for (unsigned i = 1; i < n; i++) {
				uint32_t len = 1 + rnd(flen / n + 1);

				b[i] = (struct vdrv_buf){ .gpa = r->tx_gpa + 4096 + rnd(TX_AREA - 4096 - len),
							  .len = len, .write = rnd(10) == 0 };
			}
			/* Readable buffers must come first: sort the writable ones to the end. */
			for (unsigned i = 1; i < n; i++)
				for (unsigned j = i; j > 0 && b[j - 1].write && !b[j].write; j--) {
					struct vdrv_buf t = b[j];

					b[j] = b[j - 1];
					b[j - 1] = t;
				}
			if (vdrv_submit(&r->drv, 1, b, n, rnd(2), NULL) >= 0)
				submitted++;
		}
		vdrv_kick(&r->drv, 1);
		rig_run(r, 5);
		uint32_t len;
		void *tok;

		while (vdrv_get_used(&r->drv, 1, &len, NULL) > 0)
			completed++;
		while (vdrv_get_used(&r->drv, 0, &len, &tok) > 0)
			rx_back++;
	}
	for (uint64_t end = now_ms() + TIMEOUT_MS; completed < submitted && now_ms() < end;) {
		rig_wait(r, 5);
		while (vdrv_get_used(&r->drv, 1, NULL, NULL) > 0)
			completed++;
	}
	struct net_stats st = stats(r);

	assert_int_equal(completed, submitted);
	assert_int_equal(st.tx_frames + st.tx_malformed + st.tx_errors, submitted);
	assert_false(vdrv_status(&r->drv) & VIRTIO_STATUS_NEEDS_RESET);
	print_message("  TX %u chains: %" PRIu64 " sent, %" PRIu64 " malformed, %" PRIu64
		      " refused by the tap; RX %u of %u odd buffers used, %" PRIu64 " too small\n",
		      submitted, st.tx_frames, st.tx_malformed, st.tx_errors, rx_back, rx_posted,
		      st.rx_bad_chains);
	assert_true(st.tx_malformed > 0 && st.rx_bad_chains > 0);
	/* The RX ring may still hold odd buffers: a reset and a fresh start, then a clean ping. */
	vdrv_reset(&r->drv);
	assert_int_equal(gmem_flat_outstanding(r->x.gm), 0);
	r->x.mem.next = 0;
	assert_int_equal(vdrv_init(&r->drv, &r->x.io, &r->x.mem, BASIC | OFFL, 3, 256), 0);
	r->rx_gpa[0] = ram_alloc(r, (uint64_t)RX_SLOTS * r->rx_size, (void **)&r->rx_host[0]);
	r->tx_gpa = ram_alloc(r, TX_AREA, (void **)&r->tx_host);
	rx_fill(r, 0, 0, RX_SLOTS);
	ping(r, 0, 5);
	close(s);
}

/* ---- TCP with the kernel's own socket ---------------------------------------------------- */

#define TCP_SYN 0x02
#define TCP_ACK 0x10
#define TCP_PSH 0x08

/* A TCP segment 10.0.0.2:40000 -> 10.0.0.1:5001 (SYN carries MSS 1460); frame length. */
static size_t tcp_seg(struct rig *r, uint8_t *f, uint32_t seq, uint32_t ack, uint8_t flags,
		      const uint8_t *pl, size_t n, bool partial)
{
	size_t opt = (flags & TCP_SYN) ? 4 : 0, thl = 20 + opt;
	size_t o = eth(f, r->hmac, r->gmac, 0x0800);
	uint8_t *ip = f + o, *t = ip + 20;

	o += ipv4(ip, 6, IP_GUEST, IP_TAP, thl + n, (uint16_t)seq);
	memset(t, 0, thl);
	put16(t, 40000);
	put16(t + 2, 5001);
	put32(t + 4, seq);
	put32(t + 8, ack);
	t[12] = (uint8_t)((thl / 4) << 4);
	t[13] = flags;
	put16(t + 14, 65535);
	if (opt) {
		t[20] = 2;
		t[21] = 4;
		put16(t + 22, 1460);
	}
	if (n)
		memcpy(t + thl, pl, n);
	uint32_t ps = pseudo_sum(ip, 6, thl + n);

	put16(t + 16, partial ? csum_fold(ps) : (uint16_t)~csum_fold(csum_add(ps, t, thl + n)));
	return o + thl + n;
}

static void tcp_send(struct rig *r, uint32_t seq, uint32_t ack, uint8_t flags, const uint8_t *pl,
		     size_t n)
{
	uint8_t f[2048];
	struct virtio_net_hdr h = { 0 };

	assert_true(n <= 1460);
	tx_send(r, 0, &h, f, tcp_seg(r, f, seq, ack, flags, pl, n, false));
}

/*
 * A TCP connection with a real kernel socket, the test playing the guest's TCP by hand:
 * handshake, 5000 bytes to the kernel (one plain segment, one 4000-byte TSO segment), 200 000
 * bytes back (the kernel sends TSO frames that arrive whole in mergeable buffers), acknowledged
 * as they come. Byte for byte both ways.
 */
static void test_tcp_with_kernel_socket(void **state)
{
	struct rig *r = *state;
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons(5001),
				 .sin_addr.s_addr = htonl(IP_TAP) };
	struct want w = { .type = 0x0800, .proto = 6, .dport = 40000 };
	struct virtio_net_hdr h;
	enum { UP = 5000, DOWN = 200000 };
	static uint8_t up[UP], down[DOWN], got[DOWN];
	const uint32_t iss = 1000;
	int one = 1, ls, cs;

	rig_start(r, BASIC | OFFL);
	ls = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	assert_true(ls >= 0);
	setsockopt(ls, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	assert_int_equal(bind(ls, (struct sockaddr *)&a, sizeof(a)), 0);
	assert_int_equal(listen(ls, 1), 0);

	tcp_send(r, iss, 0, TCP_SYN, NULL, 0);
	assert_true(rx_match(r, 0, &w, &h, TIMEOUT_MS) >= 54);
	const uint8_t *t = r->frame + 34;

	assert_int_equal(t[13] & (TCP_SYN | TCP_ACK), TCP_SYN | TCP_ACK);
	assert_int_equal(get32(t + 8), iss + 1);
	uint32_t srv = get32(t + 4) + 1, seq = iss + 1;

	tcp_send(r, seq, srv, TCP_ACK, NULL, 0);
	cs = accept4(ls, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
	assert_true(cs >= 0);

	/* Guest -> kernel: 1000 bytes plainly, then 4000 as one TSO segment. */
	pattern(up, UP, 21);
	tcp_send(r, seq, srv, TCP_ACK | TCP_PSH, up, 1000);
	seq += 1000;
	static uint8_t f[8192];
	struct virtio_net_hdr gso = hdr_partial(34, 16);

	gso.gso_type = VIRTIO_NET_HDR_GSO_TCPV4;
	gso.gso_size = htole16(1448);
	gso.hdr_len = htole16(54);
	tx_send(r, 0, &gso, f, tcp_seg(r, f, seq, srv, TCP_ACK | TCP_PSH, up + 1000, 4000, true));
	seq += 4000;
	size_t have = 0;

	for (uint64_t end = now_ms() + TIMEOUT_MS; have < UP && now_ms() < end;) {
		ssize_t n = recv(cs, got + have, UP - have, 0);

		if (n > 0)
			have += (size_t)n;
		else
			rig_wait(r, 5);
	}
	assert_int_equal(have, UP);
	assert_memory_equal(got, up, UP);

	/* Kernel -> guest: the socket sends as the window allows, the guest acknowledges. */
	pattern(down, DOWN, 22);
	size_t sent = 0, next = 0, biggest = 0;
	unsigned gso_frames = 0;

	for (uint64_t end = now_ms() + 10000; next < DOWN && now_ms() < end;) {
		if (sent < DOWN) {
			ssize_t n = send(cs, down + sent, DOWN - sent, MSG_DONTWAIT);

			if (n > 0)
				sent += (size_t)n;
		}
		int64_t n = rx_match(r, 0, &w, &h, 20);

		if (n < 0)
			continue;
		size_t thl = (size_t)(r->frame[34 + 12] >> 4) * 4;
		size_t plen = get16(r->frame + 16) - 20 - thl;
		uint32_t s0 = get32(r->frame + 34 + 4) - srv;

		biggest = (size_t)n > biggest ? (size_t)n : biggest;
		gso_frames += h.gso_type == VIRTIO_NET_HDR_GSO_TCPV4;
		if (s0 == next && plen) {
			assert_true(next + plen <= DOWN);
			memcpy(got + next, r->frame + 34 + thl, plen);
			next += plen;
		}
		tcp_send(r, seq, srv + (uint32_t)next, TCP_ACK, NULL, 0);
	}
	assert_int_equal(next, DOWN);
	assert_memory_equal(got, down, DOWN);
	print_message("  %u TSO frames towards the guest, largest %zu bytes in %u buffers\n",
		      gso_frames, biggest, (unsigned)((biggest + 12 + RX_BUF - 1) / RX_BUF));
	assert_true(gso_frames > 0 && biggest > 1514);
	close(cs);
	close(ls);
}

/* The device's own tap fd, found the way an administrator would: /proc/self/fdinfo "iff:". */
static int device_tap_fd(const char *ifname)
{
	char path[64], line[128], want[64];

	snprintf(want, sizeof(want), "iff:\t%s\n", ifname);
	for (int fd = 3; fd < 1024; fd++) {
		snprintf(path, sizeof(path), "/proc/self/fdinfo/%d", fd);
		FILE *f = fopen(path, "re");
		bool hit = false;

		while (f && !hit && fgets(line, sizeof(line), f))
			hit = strcmp(line, want) == 0;
		if (f)
			fclose(f);
		if (hit)
			return fd;
	}
	return -1;
}

static int shell(const char *cmd)
{
	int st = system(cmd);

	return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

/*
 * TX backpressure as on a slow uplink: the tap is bridged to a port whose qdisc (tbf at 8 kbit/s)
 * holds the frames, still charged to the tap's 32 KiB send buffer. writev says EAGAIN; the device
 * keeps the chain and waits for POLLOUT. When the port speeds up, the kernel frees those skbs,
 * signals POLLOUT, and everything arrives in order; nothing is lost.
 */
static void test_tx_backpressure(void **state)
{
	struct rig *r = *state;
	enum { N = 200, FLEN = 1000 };
	char br[IFNAMSIZ] = "xbr1";
	struct ifreq ifr;
	static const uint8_t dst[6] = { 0x02, 0, 0, 0, 0, 0x77 };
	int sink = open("/dev/net/tun", O_RDWR | O_NONBLOCK | O_CLOEXEC);
	int sndbuf = 32768;
	uint8_t *area, f[FLEN + 64];
	struct virtio_net_hdr h = { 0 };
	unsigned done = 0, got = 0;

	rig_start(r, BASIC | OFFL);
	assert_true(sink >= 0);
	netns_ifr(&ifr, "vsink0");
	ifr.ifr_flags = IFF_TAP | IFF_NO_PI;
	assert_int_equal(ioctl(sink, TUNSETIFF, &ifr), 0);
	assert_int_equal(netns_ioctl(SIOCBRADDBR, br), 0);
	netns_ifr(&ifr, br);
	ifr.ifr_ifindex = (int)if_nametoindex(TAP);
	assert_int_equal(netns_ioctl(SIOCBRADDIF, &ifr), 0);
	ifr.ifr_ifindex = (int)if_nametoindex("vsink0");
	assert_int_equal(netns_ioctl(SIOCBRADDIF, &ifr), 0);
	if_set_up("vsink0", true);
	if_set_up(br, true);
	if (shell("tc qdisc add dev vsink0 root tbf rate 8kbit burst 1600 limit 1000000") != 0) {
		close(sink);
		print_message("[  SKIP    ] tc (iproute2) with tbf is needed\n");
		skip();
	}
	int dev_fd = device_tap_fd(TAP);

	assert_true(dev_fd >= 0);
	assert_int_equal(ioctl(dev_fd, TUNSETSNDBUF, &sndbuf), 0);

	uint64_t gpa = ram_alloc(r, (uint64_t)N * 2048, (void **)&area);

	for (unsigned i = 0; i < N; i++) {
		size_t o = eth(f, dst, r->gmac, 0x88b5);

		pattern(f + o, FLEN - o, i);
		put32(f + o, i);
		memcpy(area + (size_t)i * 2048, &h, 12);
		memcpy(area + (size_t)i * 2048 + 12, f, FLEN);
		struct vdrv_buf b = { .gpa = gpa + (uint64_t)i * 2048, .len = 12 + FLEN };

		assert_true(vdrv_submit(&r->drv, 1, &b, 1, false, NULL) >= 0);
	}
	vdrv_kick(&r->drv, 1);
	rig_run(r, 300);
	struct net_stats st = stats(r);
	uint32_t len;

	while (vdrv_get_used(&r->drv, 1, &len, NULL) > 0)
		done++;
	assert_true(st.tx_eagain >= 1);
	assert_true(st.tx_frames < N / 4);
	assert_int_equal(done, st.tx_frames);     /* a chain completes when the tap took it */
	assert_int_equal(shell("tc qdisc change dev vsink0 root tbf rate 10gbit burst 1000000 "
			       "limit 1000000"), 0);
	for (uint64_t end = now_ms() + 10000; (done < N || got < N) && now_ms() < end;) {
		ssize_t n = read(sink, f, sizeof(f));

		if (n > 0) {
			if (n != FLEN || get16(f + 12) != 0x88b5)
				continue;
			assert_int_equal(get32(f + 14), got);
			uint8_t want[FLEN];

			pattern(want, FLEN - 14, got);
			assert_memory_equal(f + 18, want + 4, FLEN - 18);
			got++;
			continue;
		}
		while (vdrv_get_used(&r->drv, 1, &len, NULL) > 0)
			done++;
		vdrv_enable_irq(&r->drv, 1);
		rig_wait(r, 2);
	}
	assert_int_equal(done, N);
	assert_int_equal(got, N);
	st = stats(r);
	assert_int_equal(st.tx_frames, N);
	assert_int_equal(st.tx_errors + st.tx_malformed, 0);
	print_message("  %u frames, %" PRIu64 " EAGAIN waits\n", N, st.tx_eagain);
	close(sink);
	if_set_up(br, false);
	assert_int_equal(netns_ioctl(SIOCBRDELBR, br), 0);
}

/* ---- main: everything in a private network namespace ------------------------------------ */

static int run_all(void)
{
#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)
	const struct CMUnitTest tests[] = {
		T(test_config),
		T(test_feature_dependencies),
		T(test_arp_and_ping),
		T(test_udp_both_ways),
		T(test_tcp_with_kernel_socket),
		T(test_tx_csum_offload),
		T(test_tso_segmentation),
		T(test_tso6_segmentation),
		T(test_rx_gso_mergeable),
		T(test_rx_gso_segmented_without_guest_tso),
		T(test_rx_csum_to_guest),
		T(test_ufo_both_ways),
		T(test_rx_starvation_recovery),
		T(test_link_down_up),
		T(test_malformed_tx),
		T(test_rx_bad_chains),
		T(test_hostile_random),
		T(test_tx_backpressure),
		T(test_ctrl_rx_filter),
		T(test_mq_two_pairs),
		T(test_reset_with_pending_frame),
		T(test_default_tap_on_bridge),
		T(test_tap_address_stable),
		T(test_existing_tap_and_bad_bridge),
	};
#undef T
	return cmocka_run_group_tests(tests, NULL, NULL);
}

int main(void)
{
	/* Quiet links (no IPv6 chatter) and forwarding for the far tap. */
	return netns_run("test_net", run_all, NULL);
}
