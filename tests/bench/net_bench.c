/*
 * virtio-net throughput through xen-virtiod on xensim against a raw tap loop in the same run.
 *
 *   BENCH net_tx_64_pps        guest -> tap, 64-byte frames per second; baseline: write() loop
 *                              of the same frame from 64 buffers (the guest's slots) into a
 *                              tap of our own
 *   BENCH net_rx_64_pps        tap -> guest, 64-byte frames per second; baseline: read() loop
 *                              on a tap of our own fed by the same generator
 *   BENCH net_tx_1500_gbps     the same with 1514-byte frames, Gbit/s of frame data
 *   BENCH net_rx_1500_gbps
 *   BENCH net_tx_tso64k_gbps   64 KiB TCP segments (GSO TCPV4) from the guest
 *   BENCH net_rx_gso64k_gbps   64 KiB GSO frames into the guest's mergeable 4 KiB buffers
 *
 * Everything runs in a private network namespace. The generator for the receive cases is a
 * packet socket (PACKET_QDISC_BYPASS, PACKET_VNET_HDR for GSO) sending out of the tap in a
 * thread; frames the tap's queue cannot hold are dropped by the kernel, and only frames that
 * arrive count. The guest side is a driver like Linux's: EVENT_IDX, kicks only when the device
 * asks (avail_event), interrupts only when it waits. On a 2-CPU machine the generator, the
 * guest and the daemon share the CPUs; the baseline needs only generator and reader.
 *
 * Rounds alternate the device and the baseline; value and baseline are medians, ratio is the
 * median of the per-round ratios (the machine's load changes less within a round).
 *
 * Environment: BENCH_SECONDS (per round and side, default 1), BENCH_REPEAT (rounds, default 5,
 * at most 8), BENCH_QUICK=1 (1 round), BENCH_FILTER (cases whose name contains it).
 */
#include <arpa/inet.h>
#include <endian.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/if_packet.h>
#include <linux/if_tun.h>
#include <net/if.h>
#include <net/if_arp.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "devices/device.h"
#include "devices/net.h"
#include "devices/virtio_ring.h"
#include "tests/bench/bench_common.h"
#include "tests/bench/bench_cost.h"
#include "tests/lib/net_frames.h"
#include "tests/lib/netns.h"
#include "tests/lib/vdriver.h"

#define TAP       "vbn0"       /* the daemon's */
#define BASE      "vbr0"       /* the baseline's */
#define QSIZE     256u
#define TX_SLOT   (68u << 10)
#define RX_BUF    4096u
#define GSO_LEN   65000u
#define F(b) VIRTIO_BIT(VIRTIO_NET_F_##b)

struct nb {
	BENCH_GUEST_MEMBERS;
	uint8_t gmac[6], hmac[6], bmac[6];
	int base;
	uint64_t tx_gpa, rx_gpa;
	uint8_t *tx_host, *rx_host;
	double secs;
	unsigned reps;
};

struct gen {
	pthread_t th;
	int ifindex;
	const uint8_t *frame;
	size_t len;
	bool vnet;
	volatile bool stop;
};

/* ---- plumbing -------------------------------------------------------------------------------- */

static int if_setup(const char *name, uint32_t ip, uint8_t mac[6])
{
	return netns_if_addr(name, ip, 0) < 0 ? -1 : netns_if_hwaddr(name, mac);
}

/* The baseline's tap: same flags, header size and offloads as the daemon's. */
static int base_open(struct nb *b)
{
	struct ifreq ifr;
	int hdr = VIRTIO_NET_HDR_LEN;
	int fd = open("/dev/net/tun", O_RDWR | O_NONBLOCK | O_CLOEXEC);

	if (fd < 0)
		return -1;
	memset(&ifr, 0, sizeof(ifr));
	snprintf(ifr.ifr_name, sizeof(ifr.ifr_name), BASE);
	ifr.ifr_flags = IFF_TAP | IFF_NO_PI | IFF_VNET_HDR;
	if (ioctl(fd, TUNSETIFF, &ifr) < 0 || ioctl(fd, TUNSETVNETHDRSZ, &hdr) < 0 ||
	    ioctl(fd, TUNSETOFFLOAD, (unsigned long)(TUN_F_CSUM | TUN_F_TSO4)) < 0) {
		close(fd);
		return -1;
	}
	b->base = fd;
	return if_setup(BASE, 0x0a000101u, b->bmac);
}

static int guest_start(struct nb *b)
{
	static const char ini[] = "[guest]\nname = nb\ndiscovery = explicit\n\n"
				  "[net \"eth0\"]\nmmio = 0x02000000\nirq = 33\ntap = " TAP "\n"
				  "queue_size = 256\n";
	uint64_t want = VIRTIO_BIT(VIRTIO_F_VERSION_1) | VIRTIO_BIT(VIRTIO_F_EVENT_IDX) | F(MAC) |
			F(CSUM) | F(GUEST_CSUM) | F(HOST_TSO4) | F(GUEST_TSO4) | F(MRG_RXBUF);

	b->hub = xsim_hub_start();
	b->dom = b->hub ? xsim_dom_create(b->hub, &(struct xsim_dom_opts){ .name = "nb",
									 .ram_mib = 64 }) : NULL;
	if (!b->dom || bench_daemon_start(b->hub, &b->dm, "nb", ini, NULL, NULL, "warning") < 0)
		return -1;
	xsim_vio_init(&b->vio, b->dom, 0, BENCH_WIN(0), BENCH_SPI(0));
	if (xsim_vmem_init(&b->mem, b->dom, BENCH_RAM, 32u << 20, false) < 0 ||
	    vdrv_init(&b->drv, &b->vio.io, &b->mem, want, 3, QSIZE) < 0)
		return -1;
	vdrv_config_read(&b->drv, VIRTIO_NET_CFG_MAC, b->gmac, 6);
	b->tx_gpa = vdrv_alloc(&b->mem, (uint64_t)64 * TX_SLOT, 4096, (void **)&b->tx_host);
	b->rx_gpa = vdrv_alloc(&b->mem, (uint64_t)QSIZE * RX_BUF, 4096, (void **)&b->rx_host);
	if (!b->tx_gpa || !b->rx_gpa)
		return -1;
	return if_setup(TAP, 0x0a000001u, b->hmac);
}

/* ---- frames ---------------------------------------------------------------------------------- */

/* A frame of `len` bytes to dst (UDP to a non-local address: the kernel drops it cheaply), or a
 * GSO TCP segment with its virtio header in front when gso. Returns the bytes including hdr. */
static size_t make_frame(uint8_t *out, const uint8_t dst[6], const uint8_t src[6], uint32_t dip,
			 size_t len, bool gso)
{
	static uint8_t pl[GSO_LEN];
	struct virtio_net_hdr h = { 0 };
	size_t n;

	pattern(pl, sizeof(pl), 1);
	if (gso) {
		h = (struct virtio_net_hdr){ .flags = VIRTIO_NET_HDR_F_NEEDS_CSUM,
					     .gso_type = VIRTIO_NET_HDR_GSO_TCPV4,
					     .gso_size = htole16(1448), .hdr_len = htole16(54),
					     .csum_start = htole16(34), .csum_offset = htole16(16) };
		n = tcp_frame(out + 12, dst, src, 0x0a000002u, dip, 1, pl, GSO_LEN, CSUM_PARTIAL);
	} else {
		n = udp_frame(out + 12, dst, src, 0x0a000002u, dip, 9, 9, pl, len - 42, CSUM_FULL);
	}
	memcpy(out, &h, 12);
	return n + 12;
}

/* ---- the generator (receive cases) ---------------------------------------------------------- */

static void *gen_main(void *arg)
{
	struct gen *g = arg;
	struct sockaddr_ll sll = { .sll_family = AF_PACKET, .sll_ifindex = g->ifindex };
	int s = socket(AF_PACKET, SOCK_RAW | SOCK_CLOEXEC, htons(ETH_P_ALL));
	int one = 1;

	if (s < 0)
		return NULL;
	setsockopt(s, SOL_PACKET, PACKET_QDISC_BYPASS, &one, sizeof(one));
	if (g->vnet)
		setsockopt(s, SOL_PACKET, PACKET_VNET_HDR, &one, sizeof(one));
	if (bind(s, (struct sockaddr *)&sll, sizeof(sll)) < 0) {
		close(s);
		return NULL;
	}
	/* PACKET_VNET_HDR takes the 10-byte header (no num_buffers): drop the last two bytes. */
	static uint8_t f[70000];
	size_t len = g->len - 12;

	if (g->vnet) {
		memcpy(f, g->frame, 10);
		memcpy(f + 10, g->frame + 12, len);
		len += 10;
	} else {
		memcpy(f, g->frame + 12, len);
	}
	while (!g->stop)
		if (send(s, f, len, 0) < 0 && errno != ENOBUFS && errno != EAGAIN)
			break;
	close(s);
	return NULL;
}

static void gen_start(struct gen *g, const char *ifname, const uint8_t *frame, size_t len,
		      bool vnet)
{
	*g = (struct gen){ .ifindex = (int)if_nametoindex(ifname), .frame = frame, .len = len,
			   .vnet = vnet };
	pthread_create(&g->th, NULL, gen_main, g);
}

static void gen_stop(struct gen *g)
{
	g->stop = true;
	pthread_join(g->th, NULL);
}

/* ---- the guest ------------------------------------------------------------------------------- */

/* Send the same frame from up to 64 slots for secs; bytes of frame data sent (*frames too). */
static double guest_tx(struct nb *b, const uint8_t *frame, size_t len, uint64_t *frames)
{
	struct vdrv_buf buf[64];
	unsigned nslots = 64, free_n = nslots, free_s[64];
	uint64_t done = 0;
	double t0 = bench_now();

	for (unsigned i = 0; i < nslots; i++) {
		memcpy(b->tx_host + (size_t)i * TX_SLOT, frame, len);
		buf[i] = (struct vdrv_buf){ .gpa = b->tx_gpa + (uint64_t)i * TX_SLOT,
					    .len = (uint32_t)len };
		free_s[i] = i;
	}
	while (bench_now() - t0 < b->secs) {
		uint16_t old = b->drv.vq[1].avail_idx;
		uint32_t ulen;
		void *tok;
		unsigned got = 0;

		while (free_n) {
			unsigned s = free_s[--free_n];

			vdrv_submit(&b->drv, 1, &buf[s], 1, false, (void *)(uintptr_t)(s + 1));
		}
		vdrv_kick_if_asked(&b->drv, 1, old);
		while (vdrv_get_used(&b->drv, 1, &ulen, &tok) > 0) {
			free_s[free_n++] = (unsigned)((uintptr_t)tok - 1);
			got++;
		}
		done += got;
		if (!got) {
			vdrv_enable_irq(&b->drv, 1);
			if (b->drv.vq[1].used->idx == b->drv.vq[1].last_used)
				b->vio.io.wait_irq(&b->vio.io, 10);
		}
	}
	double dt = bench_now() - t0;

	/*
	 * Take back every slot still in flight, so the next case starts with all 64 free. With the
	 * notify fast path a kick returns before the device has read the ring, so some always are.
	 */
	for (double t1 = bench_now(); free_n < nslots && bench_now() - t1 < 5;) {
		uint32_t ulen;
		void *tok;

		if (vdrv_get_used(&b->drv, 1, &ulen, &tok) > 0) {
			free_s[free_n++] = (unsigned)((uintptr_t)tok - 1);
			continue;
		}
		vdrv_enable_irq(&b->drv, 1);
		if (b->drv.vq[1].used->idx == b->drv.vq[1].last_used)
			b->vio.io.wait_irq(&b->vio.io, 10);
	}
	*frames = done;
	return dt;
}

static void rx_post(struct nb *b, unsigned slot)
{
	struct vdrv_buf v = { .gpa = b->rx_gpa + (uint64_t)slot * RX_BUF, .len = RX_BUF,
			      .write = true };

	vdrv_submit(&b->drv, 0, &v, 1, false, (void *)(uintptr_t)(slot + 1));
}

/* Receive for secs: frames and bytes of frame data (headers excluded). */
static double guest_rx(struct nb *b, uint64_t *frames, uint64_t *bytes)
{
	unsigned rest = 0;
	double t0;

	*frames = *bytes = 0;
	t0 = bench_now();
	while (bench_now() - t0 < b->secs) {
		uint16_t old = b->drv.vq[0].avail_idx;
		uint32_t len;
		void *tok;
		unsigned got = 0;

		while (vdrv_get_used(&b->drv, 0, &len, &tok) > 0) {
			unsigned slot = (unsigned)((uintptr_t)tok - 1);
			const uint8_t *p = b->rx_host + (size_t)slot * RX_BUF;

			if (rest == 0) {
				struct virtio_net_hdr h;

				memcpy(&h, p, 12);
				rest = le16toh(h.num_buffers);
				(*frames)++;
				*bytes += len - 12;
			} else {
				*bytes += len;
			}
			rest--;
			rx_post(b, slot);
			got++;
		}
		if (got) {
			vdrv_kick_if_asked(&b->drv, 0, old);
			continue;
		}
		vdrv_enable_irq(&b->drv, 0);
		if (b->drv.vq[0].used->idx == b->drv.vq[0].last_used)
			b->vio.io.wait_irq(&b->vio.io, 10);
	}
	return bench_now() - t0;
}

/* ---- the baseline ---------------------------------------------------------------------------- */

/*
 * The same frame from 64 buffers, as the guest sends it from its 64 slots: one buffer written
 * over and over stays in the CPU's cache, and the 64 KiB case ran 1.6 times as fast from it as
 * from 64 (4.3 MiB), which the device, reading the guest's slots, never can.
 */
static double base_tx(struct nb *b, const uint8_t *frame, size_t len, uint64_t *frames)
{
	static uint8_t slots[64][TX_SLOT];
	double t0;
	uint64_t n = 0;

	for (unsigned i = 0; i < 64; i++)
		memcpy(slots[i], frame, len);
	t0 = bench_now();
	while (bench_now() - t0 < b->secs)
		for (unsigned i = 0; i < 64; i++)
			if (write(b->base, slots[i], len) == (ssize_t)len)
				n++;
	*frames = n;
	return bench_now() - t0;
}

static double base_rx(struct nb *b, uint64_t *frames, uint64_t *bytes)
{
	static uint8_t buf[70000];
	struct pollfd pfd = { .fd = b->base, .events = POLLIN };
	double t0 = bench_now();

	*frames = *bytes = 0;
	while (bench_now() - t0 < b->secs) {
		ssize_t n = read(b->base, buf, sizeof(buf));

		if (n > 12) {
			(*frames)++;
			*bytes += (uint64_t)n - 12;
		} else if (n < 0 && errno == EAGAIN) {
			poll(&pfd, 1, 10);
		}
	}
	return bench_now() - t0;
}

/* ---- cases ----------------------------------------------------------------------------------- */

struct bcase {
	const char *name;
	bool rx;
	size_t len;          /* frame bytes (without header); GSO_LEN + 54 for GSO */
	bool gso;
	bool pps;            /* report frames/s (else Gbit/s of frame data) */
};

static double rate(const struct bcase *c, uint64_t frames, uint64_t bytes, double dt)
{
	return c->pps ? (double)frames / dt : (double)bytes * 8 / dt / 1e9;
}

static void cost_report_net(const char *name, const struct cost_snap *sum, uint64_t frames);

static void run_case(struct nb *b, const struct bcase *c)
{
	static uint8_t gf[70000], bf[70000];
	double v[8], base[8];
	/* Transmit: to the receiving tap's MAC, a non-local address; receive: to the guest. */
	size_t glen = c->rx ? make_frame(gf, b->gmac, b->hmac, 0x0a000002u, c->len, c->gso)
			    : make_frame(gf, b->hmac, b->gmac, 0x0a000063u, c->len, c->gso);
	size_t blen = make_frame(bf, b->bmac, b->gmac, 0x0a000163u, c->len, c->gso);
	size_t flen = glen - 12;
	struct cost_counters ctr;
	struct cost_snap s0, s1, sum = { 0 };
	const char *why_sys, *why_instr;
	uint64_t cost_frames = 0;
	/*
	 * Counted in the first round only: a tracepoint attached to the daemon slows each of its
	 * system calls a little, which the baseline does not pay; the median leaves that round out
	 * whenever it was the slowest.
	 */
	bool counted = cost_open(&ctr, b->dm.pid, &why_sys, &why_instr) == 0 && !why_sys;

	for (unsigned r = 0; r < b->reps; r++) {
		uint64_t frames, bytes;
		struct gen g;
		double dt;

		if (r == 1)
			cost_close(&ctr);
		if (c->rx) {
			gen_start(&g, TAP, gf, glen, c->gso);
			cost_read(&ctr, &s0);
			dt = guest_rx(b, &frames, &bytes);
			cost_read(&ctr, &s1);
			gen_stop(&g);
			if (r == 0) {
				cost_add(&sum, &s0, &s1);
				cost_frames = frames;
			}
			v[r] = rate(c, frames, bytes, dt);
			gen_start(&g, BASE, gf, glen, c->gso);
			dt = base_rx(b, &frames, &bytes);
			gen_stop(&g);
			base[r] = rate(c, frames, bytes, dt);
		} else {
			cost_read(&ctr, &s0);
			dt = guest_tx(b, gf, glen, &frames);
			cost_read(&ctr, &s1);
			if (r == 0) {
				cost_add(&sum, &s0, &s1);
				cost_frames = frames;
			}
			v[r] = rate(c, frames, frames * flen, dt);
			dt = base_tx(b, bf, blen, &frames);
			base[r] = rate(c, frames, frames * flen, dt);
		}
	}
	/* Rounds alternate device and baseline: the median of the per-round ratios follows the
	 * machine's load better than a ratio of medians. */
	double ratio[8];

	for (unsigned r = 0; r < b->reps; r++)
		ratio[r] = base[r] > 0 ? v[r] / base[r] : 0;
	double rm = bench_median(ratio, b->reps);

	printf("BENCH %s value=%.3f unit=%s baseline=%.3f ratio=%.2f\n", c->name,
	       bench_median(v, b->reps), c->pps ? "pps" : "Gbit/s", bench_median(base, b->reps), rm);
	fflush(stdout);
	if (b->reps == 1)
		cost_close(&ctr);
	if (counted && cost_frames)
		cost_report_net(c->name, &sum, cost_frames);
}

/* The daemon's system calls, switches and wake-ups per frame (GSO: per 64 KiB segment). */
static void cost_report_net(const char *name, const struct cost_snap *sum, uint64_t frames)
{
	struct cost_snap zero = { 0 };
	struct cost_per_req pr;
	char line[128];

	cost_per_request(&zero, sum, frames, &pr);
	snprintf(line, sizeof(line), "syscalls_per_frame_%s", name + 4);
	bench_line(line, pr.syscalls, "syscalls", 0, false);
	snprintf(line, sizeof(line), "csw_per_frame_%s", name + 4);
	bench_line(line, pr.csw, "switches", 0, false);
	snprintf(line, sizeof(line), "wakeups_per_frame_%s", name + 4);
	bench_line(line, pr.wakeups, "wakeups", 0, false);
}

static int run_all(void)
{
	static const struct bcase cases[] = {
		{ "net_tx_64_pps", false, 64, false, true },
		{ "net_rx_64_pps", true, 64, false, true },
		{ "net_tx_1500_gbps", false, 1514, false, false },
		{ "net_rx_1500_gbps", true, 1514, false, false },
		{ "net_tx_tso64k_gbps", false, GSO_LEN + 54, true, false },
		{ "net_rx_gso64k_gbps", true, GSO_LEN + 54, true, false },
	};
	const char *filter = getenv("BENCH_FILTER");
	struct nb b = { .base = -1 };

	b.secs = (double)bench_env_u64("BENCH_SECONDS", 1);
	b.reps = (unsigned)bench_env_u64("BENCH_REPEAT", bench_quick() ? 1 : 5);
	if (b.reps < 1 || b.reps > 8)
		b.reps = 5;
	if (guest_start(&b) < 0 || base_open(&b) < 0) {
		for (unsigned i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
			bench_skip(cases[i].name, "no sim daemon or tap");
		if (b.dm.pid > 0)
			xsim_daemon_stop(&b.dm);
		xsim_hub_stop(b.hub);
		return 1;
	}
	for (unsigned i = 0; i < QSIZE; i++)
		rx_post(&b, i);
	vdrv_kick(&b.drv, 0);
	for (unsigned i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
		if (!filter || strstr(cases[i].name, filter))
			run_case(&b, &cases[i]);
	xsim_daemon_stop(&b.dm);
	xsim_hub_stop(b.hub);
	close(b.base);
	return 0;
}

static int no_netns(void)
{
	bench_skip("net", "no network namespace");
	return 0;
}

int main(void)
{
	return netns_run("net_bench", run_all, no_netns);
}
