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
#include "tests/fuzz/fuzz_blk_i2c_chains.h"

#define FZN_QN     64u                     /* queue size */
#define FZN_NQ     5u                      /* queues of the two-pair device */
#define FZN_QAREA  0x1000u                 /* per queue: desc +0, avail +0x400, used +0x800 */
#define FZN_DATA   (FZ_RAM_GPA + FZN_NQ * FZN_QAREA)
#define FZN_COPY   256u
#define FZN_MTU    65521u                  /* a tap's largest (65535 less the Ethernet header) */
#define FZN_SETTLE 16u

static void raise_irq(struct vdev_host *host, struct vdev *dev)
{
	(void)host;
	(void)dev;
}

struct fzn_q {
	struct vring_desc *desc;
	struct vring_avail *avail;
	struct vring_used *used;
	uint16_t slot, published;
	uint32_t wcap[FZN_QN];       /* per head: writable bytes of the chain */
};

struct fzn_dev {
	struct vdev *d;
	int pkt;                     /* packet socket bound to the tap */
	int ifindex;
	int tapfd[2];                /* the device's own tap queues, drained after every input */
};

struct fzn {
	struct gmem *gm;
	struct ev_loop *loop;
	struct vdev_host host;
	struct fzn_dev dev[2];
	struct fzn_q q[FZN_NQ];
	unsigned nq;
	uint64_t next;               /* data allocation cursor */
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
	cfg.u.net.queue_size = FZN_QN;
	if (vdev_net_ops.create(&s->host, &cfg, &x->d) < 0)
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
	s.gm = gmem_flat_new(FZ_RAM_GPA, FZ_RAM_SIZE);
	s.loop = ev_loop_new(EVFLAG_AUTO);
	if (!s.gm || !s.loop)
		return NULL;
	gmem_flat_set_readonly(s.gm, FZ_RO_PAGE, 0x1000);
	gmem_flat_add_hole(s.gm, FZ_HOLE, 0x1000);
	s.host = (struct vdev_host){ .loop = s.loop, .gm = s.gm, .guest_name = "fuzz",
				     .raise_irq = raise_irq };
	if (fzn_dev_open(&s, &s.dev[0], "fzn0", 1) < 0 || fzn_dev_open(&s, &s.dev[1], "fzn1", 2) < 0) {
		fprintf(stderr, "fuzz_net: cannot set up the taps\n");
		return NULL;
	}
	ok = true;
	return &s;
}

/* Reset, negotiate, set up nq queues of FZN_QN at fixed places, DRIVER_OK. */
static int fzn_bring_up(struct fzn *s, struct vdev *d, uint64_t want, unsigned nq)
{
	uint8_t *ram = gmem_flat_host(s->gm, FZ_RAM_GPA);

	vmmio_reset(d);
	/* What the last input can have touched: the rings and the data allocated so far. */
	memset(ram, 0, s->next ? s->next - FZ_RAM_GPA : FZ_RAM_SIZE);
	if (fz_negotiate(d, want) < 0)
		return -1;
	for (unsigned q = 0; q < nq; q++) {
		uint64_t base = FZ_RAM_GPA + q * FZN_QAREA;
		uint8_t *h = ram + q * FZN_QAREA;

		fz_queue_setup(d, q, FZN_QN, base, base + 0x400, base + 0x800);
		s->q[q] = (struct fzn_q){ .desc = (struct vring_desc *)(void *)h,
					  .avail = (struct vring_avail *)(void *)(h + 0x400),
					  .used = (struct vring_used *)(void *)(h + 0x800) };
	}
	fz_wr(d, 0x070, 0xf);
	if (vmmio_read(d, 0x070, 4) != 0xf)
		return -1;
	s->nq = nq;
	s->next = FZN_DATA;
	return 0;
}

/* A buffer address for a placement, from our own cursor. */
static uint64_t fzn_place(struct fzn *s, unsigned placement, uint32_t len)
{
	return fz_place_at(&s->next, placement, len);
}

/* One chain on queue q from the input, published (not kicked). */
static void fzn_chain(struct fzn *s, unsigned q, struct fz_in *in)
{
	struct fzn_q *r = &s->q[q];
	unsigned n = 1 + fz_take(in, 1) % FZ_BUFS;
	uint16_t head = r->slot;
	uint32_t wcap = 0;

	if (r->slot + n > FZN_QN)
		return;
	for (unsigned k = 0; k < n; k++) {
		unsigned kind = fz_take(in, 1);
		uint32_t len = kind & 8 ? fz_take(in, 2) % (FZ_BUF_MAX + 1) : 1 + (kind >> 4);
		uint64_t a = fzn_place(s, (kind >> 1) & 3, len);
		uint8_t *h = a && a < FZ_RO_PAGE ? gmem_flat_host(s->gm, a) : NULL;

		if (!a)
			return;     /* nothing published: the slots are reused */
		if (h && !(kind & 1)) {
			size_t c = len < in->left ? len : in->left;

			c = c < FZN_COPY ? c : FZN_COPY;
			memcpy(h, in->p, c);
			in->p += c;
			in->left -= c;
		}
		if (kind & 1)
			wcap += len;
		r->desc[r->slot] = (struct vring_desc){
			.addr = a, .len = len,
			.flags = (uint16_t)((kind & 1 ? VRING_DESC_F_WRITE : 0) |
					    (k + 1 < n ? VRING_DESC_F_NEXT : 0)),
			.next = (uint16_t)(r->slot + 1) };
		r->slot++;
	}
	r->wcap[head] = wcap;
	r->avail->ring[r->published % FZN_QN] = head;
	r->published++;
	__atomic_store_n(&r->avail->idx, r->published, __ATOMIC_RELEASE);
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
		ev_run(s->loop, EVRUN_NOWAIT);
}

/* TX and control chains of serving queues came back; no used length beyond the chain. */
static void fzn_check(struct fzn *s, struct fzn_dev *x)
{
	struct net_stats st;
	bool dead = vdev_status(x->d) & VIRTIO_STATUS_NEEDS_RESET;

	if (!net_get_stats(x->d, &st))
		abort();
	for (unsigned q = 0; q < s->nq; q++) {
		struct fzn_q *r = &s->q[q];
		uint16_t used = __atomic_load_n(&r->used->idx, __ATOMIC_ACQUIRE);
		bool serving = q == s->nq - 1 || (q % 2 == 1 && q / 2 < st.active_pairs);

		if (used > r->published)
			abort();
		if (serving && !dead && used != r->published)
			abort();
		for (uint16_t i = 0; i < used; i++) {
			struct vring_used_elem *u = &r->used->ring[i % FZN_QN];

			if (u->id >= FZN_QN || u->len > r->wcap[u->id])
				abort();
		}
	}
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

	if (fzn_bring_up(s, d, want, nq) < 0)
		abort();
	while (in.left) {
		unsigned op = fz_take(&in, 1), q = (op >> 3) % s->nq;

		switch (op & 7) {
		case 0:
		case 1:
			fzn_chain(s, q, &in);
			if (op & 1)
				fz_wr(d, 0x050, q);
			break;
		case 2:
			fz_wr(d, 0x050, q);
			break;
		case 3:
			fzn_frame(s, x, &in);
			break;
		case 4:
			ev_run(s->loop, EVRUN_NOWAIT);
			break;
		case 5:
			if (fzn_bring_up(s, d, want, nq) < 0)
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
	for (unsigned q = 0; q < s->nq; q++)
		fz_wr(d, 0x050, q);
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
	if (gmem_flat_outstanding(s->gm) != 0 || gmem_flat_bad_unmaps(s->gm) != 0)
		abort();
	return 0;
}
