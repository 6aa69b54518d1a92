/*
 * libFuzzer target: virtio-net guest input. Real virtio-net devices (devices/net.c) over real
 * taps inside a private network namespace (unshare(CLONE_NEWNET) once at start: nothing the
 * guest sends can leave it), with a libev loop, behind the real transport on a gmem_flat guest
 * RAM. One device has one queue pair, the other two (MQ). The taps are up but have no address
 * and no peer; IPv6 is off in the namespace, so the kernel never answers. Frames toward the
 * guest come from a packet socket bound to the tap (the fuzzer writes them).
 *
 * Input:
 *   [0, 1] le16 features: bit0 INDIRECT, 1 EVENT_IDX, 2 MRG_RXBUF, 3 CSUM, 4 HOST_TSO4,
 *          5 HOST_TSO6, 6 HOST_UFO, 7 GUEST_CSUM, 8 GUEST_TSO4, 9 GUEST_TSO6, 10 GUEST_UFO,
 *          11 CTRL_VQ, 12 CTRL_RX, 13 MQ, 14 the two-pair device, 15 MAC/STATUS/MTU
 *          (dependencies are added: HOST_* implies CSUM, GUEST_* GUEST_CSUM, CTRL_RX/MQ CTRL_VQ)
 *   then operations, [op] with q = (op >> 3) % queues:
 *     0, 1  a chain on queue q (op 1 also kicks it): the chain encoding of
 *           fuzz_blk_i2c_chains.h, except that readable buffers take at most FZN_COPY input
 *           bytes (TX: virtio_net_hdr then the frame; control: class, command, data)
 *     2     kick queue q
 *     3     a frame toward the guest: [len lo, len hi] (14 .. 14 + MTU), its first FZN_COPY
 *           bytes from the input, the rest zero
 *     4     run the loop once
 *     5     reset and bring the device up again (same features)
 *     6, 7  read the ISR and acknowledge it; read config byte (op >> 3) % 12
 * At the end every queue is kicked and the loop settles. Any crash, sanitizer report, used
 * length beyond the chain's writable bytes, TX or control chain of a serving queue neither
 * returned nor reported with NEEDS_RESET, or mapping left behind after the reset is a bug.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <ev.h>
#include <fcntl.h>
#include <linux/if_packet.h>
#include <net/ethernet.h>
#include <net/if.h>
#include <sched.h>
#include <sys/ioctl.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

#include "config/config.h"
#include "devices/net.h"
#include "lib/log.h"
#include "tests/fuzz/fuzz_mq.h"

#define FZN_NQ     5u                      /* queues of the two-pair device */
#define FZN_COPY   256u
#define FZN_MTU    65521u                  /* a tap's largest (65535 less the Ethernet header) */
#define FZN_SETTLE 16u

struct fzn_dev {
	struct vdev *d;
	int pkt;                     /* packet socket bound to the tap */
	int ifindex;
	int tapfd[2];                /* the device's own tap queues, drained after every input */
};

struct fzn {
	struct fz_mq mq;             /* RAM, loop, host and the queues */
	struct fzn_dev dev[2];
	uint8_t frame[FZN_MTU + 14];
};

static void fzn_write_file(const char *path, const char *text)
{
	int fd = open(path, O_WRONLY | O_CLOEXEC);

	if (fd >= 0) {
		ssize_t w = write(fd, text, strlen(text));

		(void)w;
		close(fd);
	}
}

/* The device's tap queues: our fds whose fdinfo names the tap ("iff:\tNAME"). */
static void fzn_find_tapfds(struct fzn_dev *x, const char *ifname)
{
	char path[64], buf[512], want[32];
	unsigned n = 0;

	x->tapfd[0] = x->tapfd[1] = -1;
	snprintf(want, sizeof(want), "iff:\t%s\n", ifname);
	for (int fd = 3; fd < 1024 && n < 2; fd++) {
		snprintf(path, sizeof(path), "/proc/self/fdinfo/%d", fd);
		int f = open(path, O_RDONLY | O_CLOEXEC);

		if (f < 0)
			continue;
		ssize_t len = read(f, buf, sizeof(buf) - 1);

		close(f);
		if (len <= 0)
			continue;
		buf[len] = 0;
		if (strstr(buf, want))
			x->tapfd[n++] = fd;
	}
}

static int fzn_if_up(const char *ifname)
{
	struct ifreq ifr;
	int s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	int rc = -1;

	if (s < 0)
		return -1;
	memset(&ifr, 0, sizeof(ifr));
	snprintf(ifr.ifr_name, sizeof(ifr.ifr_name), "%s", ifname);
	if (ioctl(s, SIOCGIFFLAGS, &ifr) == 0) {
		ifr.ifr_flags |= IFF_UP;
		rc = ioctl(s, SIOCSIFFLAGS, &ifr);
	}
	close(s);
	return rc;
}

static int fzn_dev_open(struct fzn *s, struct fzn_dev *x, const char *tap, unsigned pairs)
{
	struct config_device cfg = { .type = DEV_NET, .devid = -1 };
	struct sockaddr_ll sll = { .sll_family = AF_PACKET, .sll_protocol = htons(ETH_P_ALL) };

	snprintf(cfg.name, sizeof(cfg.name), "%s", tap);
	snprintf(cfg.u.net.tap, sizeof(cfg.u.net.tap), "%s", tap);
	cfg.u.net.mtu = FZN_MTU;
	cfg.u.net.queues = (uint16_t)pairs;
	cfg.u.net.queue_size = FZ_MQ_QN;
	if (vdev_net_ops.create(&s->mq.host, &cfg, &x->d) < 0)
		return -1;
	fzn_find_tapfds(x, tap);
	x->ifindex = (int)if_nametoindex(tap);
	if (x->tapfd[0] < 0 || !x->ifindex || fzn_if_up(tap) < 0)
		return -1;
	x->pkt = socket(AF_PACKET, SOCK_RAW | SOCK_CLOEXEC, 0);
	sll.sll_ifindex = x->ifindex;
	if (x->pkt < 0 || bind(x->pkt, (struct sockaddr *)&sll, sizeof(sll)) < 0)
		return -1;
	return 0;
}

static struct fzn *fzn_get(void)
{
	static struct fzn s;
	static bool tried, ok;

	if (tried)
		return ok ? &s : NULL;
	tried = true;
	log_init(getenv("FUZZ_NET_DEBUG") ? LOG_DEBUG : LOG_CRIT, false);
	if (unshare(CLONE_NEWNET) < 0) {
		fprintf(stderr, "fuzz_net: cannot create a network namespace: %s\n", strerror(errno));
		return NULL;
	}
	fzn_write_file("/proc/sys/net/ipv6/conf/default/disable_ipv6", "1");
	fzn_write_file("/proc/sys/net/ipv6/conf/all/disable_ipv6", "1");
	if (fz_mq_init(&s.mq, FZN_NQ) < 0)
		return NULL;
	if (fzn_dev_open(&s, &s.dev[0], "fzn0", 1) < 0 || fzn_dev_open(&s, &s.dev[1], "fzn1", 2) < 0) {
		fprintf(stderr, "fuzz_net: cannot set up the taps\n");
		return NULL;
	}
	ok = true;
	return &s;
}

static void fzn_frame(struct fzn *s, struct fzn_dev *x, struct fz_in *in)
{
	uint32_t len = 14 + fz_take(in, 2) % (FZN_MTU + 1);
	size_t c = len < in->left ? len : in->left;

	c = c < FZN_COPY ? c : FZN_COPY;
	memset(s->frame, 0, len);
	memcpy(s->frame, in->p, c);
	in->p += c;
	in->left -= c;
	/* May be refused (a runt, the filter): the device sees what the kernel lets through. */
	ssize_t w = send(x->pkt, s->frame, len, MSG_DONTWAIT);

	if (w < 0 && getenv("FUZZ_NET_DEBUG"))
		fprintf(stderr, "fuzz_net: frame of %u bytes: %s\n", len, strerror(errno));
}

static void fzn_settle(struct fzn *s)
{
	for (unsigned i = 0; i < FZN_SETTLE; i++)
		ev_run(s->mq.loop, EVRUN_NOWAIT);
}

/* TX and control chains of serving queues came back; no used length beyond the chain. */
static void fzn_check(struct fzn *s, struct fzn_dev *x)
{
	struct net_stats st;
	uint32_t serving = 0;

	if (!net_get_stats(x->d, &st))
		abort();
	for (unsigned q = 0; q < s->mq.nq; q++)
		if (q == s->mq.nq - 1 || (q % 2 == 1 && q / 2 < st.active_pairs))
			serving |= 1u << q;
	fz_mq_check(&s->mq, x->d, serving);
}

/* Frames the kernel queued on the tap and nobody read: gone before the next input. */
static void fzn_drain(struct fzn *s, struct fzn_dev *x)
{
	for (unsigned i = 0; i < 2; i++)
		while (x->tapfd[i] >= 0 && read(x->tapfd[i], s->frame, sizeof(s->frame)) > 0)
			;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct fzn *s = fzn_get();
	struct fz_in in = { data, size };

	if (!s || size < 2)
		return 0;
	unsigned f = fz_take(&in, 2);
	struct fzn_dev *x = &s->dev[(f >> 14) & 1];
	struct vdev *d = x->d;
	static const unsigned bits[14] = {
		VIRTIO_F_INDIRECT_DESC, VIRTIO_F_EVENT_IDX, VIRTIO_NET_F_MRG_RXBUF, VIRTIO_NET_F_CSUM,
		VIRTIO_NET_F_HOST_TSO4, VIRTIO_NET_F_HOST_TSO6, VIRTIO_NET_F_HOST_UFO,
		VIRTIO_NET_F_GUEST_CSUM, VIRTIO_NET_F_GUEST_TSO4, VIRTIO_NET_F_GUEST_TSO6,
		VIRTIO_NET_F_GUEST_UFO, VIRTIO_NET_F_CTRL_VQ, VIRTIO_NET_F_CTRL_RX, VIRTIO_NET_F_MQ,
	};
	uint64_t want = 0;

	for (unsigned i = 0; i < 14; i++)
		if (f & (1u << i))
			want |= VIRTIO_BIT(bits[i]);
	if (f & 0x8000)
		want |= VIRTIO_BIT(VIRTIO_NET_F_MAC) | VIRTIO_BIT(VIRTIO_NET_F_STATUS) |
			VIRTIO_BIT(VIRTIO_NET_F_MTU);
	if (f & 0x70)
		want |= VIRTIO_BIT(VIRTIO_NET_F_CSUM);
	if (f & 0x700)
		want |= VIRTIO_BIT(VIRTIO_NET_F_GUEST_CSUM);
	if (f & 0x3000)
		want |= VIRTIO_BIT(VIRTIO_NET_F_CTRL_VQ);
	/* The offered UFO pair depends on the kernel; a guest taking UFO takes CSUM with it. */
	unsigned nq = (want & VIRTIO_BIT(VIRTIO_NET_F_MQ)) && (f & 0x4000) ? FZN_NQ : 3;

	if (fz_mq_bring_up(&s->mq, d, want, nq) < 0)
		abort();
	while (in.left) {
		unsigned op = fz_take(&in, 1);

		if (fz_mq_ring_op(&s->mq, d, op, &in, FZN_COPY))
			continue;
		switch (op & 7) {
		case 3:
			fzn_frame(s, x, &in);
			break;
		case 4:
			ev_run(s->mq.loop, EVRUN_NOWAIT);
			break;
		case 5:
			if (fz_mq_bring_up(&s->mq, d, want, nq) < 0)
				abort();
			break;
		case 6:
			fz_wr(d, 0x064, (uint32_t)vmmio_read(d, 0x060, 4));
			break;
		default:
			vmmio_read(d, 0x100 + (op >> 3) % VIRTIO_NET_CFG_SIZE, 1);
			break;
		}
	}
	fz_mq_kick_all(&s->mq, d);
	fzn_settle(s);
	fzn_check(s, x);
	if (getenv("FUZZ_NET_DEBUG")) {
		struct net_stats st;

		net_get_stats(d, &st);
		fprintf(stderr, "fuzz_net: input of %zu bytes: rx %lu frames %lu buffers %lu dropped %lu bad, tx %lu frames "
			"%lu malformed %lu errors, ctrl %lu/%lu refused, pairs %u, promisc %d, "
			"status 0x%x\n", size, (unsigned long)st.rx_frames, (unsigned long)st.rx_buffers,
			(unsigned long)st.rx_dropped, (unsigned long)st.rx_bad_chains,
			(unsigned long)st.tx_frames, (unsigned long)st.tx_malformed,
			(unsigned long)st.tx_errors, (unsigned long)st.ctrl_errors,
			(unsigned long)st.ctrl_cmds, st.active_pairs, st.promisc, vdev_status(d));
	}
	vmmio_reset(d);
	fzn_drain(s, x);
	fz_check_unmapped(s->mq.gm);
	return 0;
}
