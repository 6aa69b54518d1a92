/*
 * virtio-net (device id 1) on a Linux tap interface.
 *
 * Backend: /dev/net/tun with IFF_TAP | IFF_NO_PI | IFF_VNET_HDR (one fd per queue pair with
 * IFF_MULTI_QUEUE), vnet header size 12 (virtio_net_hdr_mrg_rxbuf: with VERSION_1 every frame
 * carries num_buffers). The kernel and the guest speak the same header, so frames pass through
 * with one readv/writev each; offloads toward the guest follow exactly what the guest negotiated
 * (TUNSETOFFLOAD), so the kernel segments and checksums whatever the guest cannot take.
 *
 * RX: tap readable (ev_io) -> one readv into [private header][held chains][bounce buffer]. With
 * MRG_RXBUF enough chains for the largest frame are held first, so even 64 KiB frames land in
 * guest memory directly; chains a frame does not fill stay held for the next one. What ends up
 * in the bounce buffer (the ring had too few chains) is copied into chains the guest adds
 * later. A frame's chains are published with one used->idx update. No chain: the frame stays
 * pending, the tap watcher stops (the kernel keeps queueing: backpressure, nothing read is
 * dropped) until the guest kicks RX.
 *
 * TX: pop, validate a private copy of the header, writev [header][frame] to the tap. EAGAIN keeps
 * the chain and waits for POLLOUT; at most VQ_BUDGET chains per wakeup, the rest on ev_idle.
 * Sent chains go back to the guest every NET_TX_EARLY chains, not at the end of the turn: a
 * guest waiting for its buffers refills them while we send the rest, instead of the two sides
 * taking turns (64-byte frames from a 64-slot guest on xensim: 1.8x the frames per second).
 *
 * Link state: rtnetlink link notifications; STATUS.LINK_UP is "tap up and running", a change
 * raises the config interrupt.
 */
#include <endian.h>
#include <errno.h>
#include <ev.h>
#include <fcntl.h>
#include <inttypes.h>
#include <linux/if_tun.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <linux/sockios.h>
#include <net/if.h>
#include <net/if_arp.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include "config/config.h"
#include "devices/iov.h"
#include "devices/net.h"
#include "lib/testpoint.h"

#define NET_DEF_QUEUE_SIZE 256u
#define NET_DEF_MTU        1500u
#define NET_ETH_HLEN       14u
#define NET_TX_EARLY       16u                   /* TX chains returned at least this often */
#define NET_IOV_MAX        1024u                 /* UIO_MAXIOV: the most readv/writev take */
#define NET_FRAME_MAX      (65536u + 14u + 4u)   /* 64 KiB of IP, Ethernet and VLAN header */
#define NET_BOUNCE         (NET_FRAME_MAX + 1u)  /* a full bounce buffer means truncation */
#define NET_CTRL_MAX       4096u                 /* control command bytes we look at */
#define NET_FILTER_MAX     32u                   /* MAC table entries we can filter on */
#define NET_TAP_OFFLOADS   (TUN_F_CSUM | TUN_F_TSO4 | TUN_F_TSO6 | TUN_F_UFO)

enum net_rx_res { NET_RX_OK, NET_RX_AGAIN, NET_RX_NOBUF };

struct net_dev;

/* One queue pair: its tap queue and the state of both directions. */
struct net_pair {
	struct net_dev *n;
	unsigned idx;
	int fd;
	bool attached;               /* tap queue attached (multi-queue taps detach idle pairs) */
	bool running;                /* pair in use: watchers may run */
	ev_io rx_w;                  /* tap readable: frames for the guest */
	ev_io tx_w;                  /* tap writable again after EAGAIN */
	bool rx_starved;             /* no RX chain: rx_w stopped until the guest kicks RX */
	bool rx_pushed;              /* chains returned since the last vdev_used() */
	/*
	 * The frame being delivered (rx_len != 0) and the chains held for it. Chains stay held
	 * without a frame when the tap had nothing to read, or when a frame needed fewer than were
	 * taken (with MRG_RXBUF enough for the largest frame are taken before each readv).
	 */
	struct virtio_net_hdr rx_hdr;
	uint32_t rx_len;             /* header + frame bytes read */
	uint32_t rx_done;            /* of which placed */
	unsigned rx_nhold;           /* chains held, in ring order */
	unsigned rx_nused;           /* of which the pending frame fills (a prefix) */
	unsigned rx_vec_n;           /* of which the last readv wrote into directly */
	uint32_t rx_vec_cap;         /* their capacity: the bounce holds bytes from here on */
	struct vq_elem **rx_hold;    /* VQ_MAX_SIZE entries */
	uint32_t *rx_written;        /* VQ_MAX_SIZE entries */
	uint8_t *bounce;             /* NET_BOUNCE bytes: the frame beyond the held chains */
	struct iovec *rx_iov;        /* NET_IOV_MAX entries */
	/* A TX chain the tap would not take yet. */
	struct vq_elem *tx_pend;
	struct virtio_net_hdr tx_hdr;   /* validated private copy, written instead of the guest's */
	uint32_t tx_frame_len;
	unsigned tx_niov;
	struct iovec *tx_iov;        /* NET_IOV_MAX entries */
};

/*
 * What the guest set through the control queue, in memory that outlives the process
 * (vdev_persist()): a next instance serves the same queue pairs with the same receive filter.
 * Written after a command takes effect and before its ack is returned, so a command whose ack
 * the guest has seen is in the record, and one it has not is either there or replayed
 * (control commands are idempotent). Read back by a next instance as hostile as any guest
 * input: every field is checked before use (net_rec_restore()).
 */
struct net_rec {
	uint8_t valid;               /* written at least once since the device was created */
	uint8_t promisc, allmulti, table_overflow;
	uint16_t active_pairs;
	uint8_t n_uc, n_mc;
	uint8_t uc[NET_FILTER_MAX][6], mc[NET_FILTER_MAX][6];
};

struct net_dev {
	struct vdev vdev;
	char ifname[IFNAMSIZ];
	int ifindex;
	bool created;                /* we made the tap: it vanishes when our fds close */
	uint8_t mac[6];
	uint16_t mtu;
	uint16_t max_pairs, active_pairs;
	unsigned kernel_offloads;    /* TUN_F_* the kernel accepted when probed */
	unsigned offloads;           /* TUN_F_* in force */
	bool link_up;
	bool admin_down;             /* xen-virtiodctl net ... link down: the guest sees no link */
	bool promisc, allmulti;      /* CTRL_RX state as the guest set it */
	unsigned n_uc, n_mc;         /* MAC table as the guest set it */
	bool table_overflow;         /* more than we can filter on: accept everything */
	uint8_t uc[NET_FILTER_MAX][6], mc[NET_FILTER_MAX][6];
	struct net_rec *rec;         /* NULL: nothing outlives the process */
	bool restore;                /* rec is the previous instance's: the next activation uses it */
	bool taken;                  /* the tap's descriptors came from the fd store */
	int nl_fd;
	ev_io nl_w;                  /* rtnetlink link notifications */
	ev_idle more;                /* TX queues with work beyond VQ_BUDGET */
	uint32_t more_tx;            /* bit i: pair i */
	struct net_stats st;
	struct net_pair pair[NET_MAX_PAIRS];
};

static struct net_dev *net_of(struct vdev *d)
{
	return container_of(d, struct net_dev, vdev);
}

static struct virtqueue *net_rxq(struct net_pair *p)
{
	return &p->n->vdev.vqs[2 * p->idx];
}

static struct virtqueue *net_txq(struct net_pair *p)
{
	return &p->n->vdev.vqs[2 * p->idx + 1];
}

static struct ev_loop *net_loop(const struct net_dev *n)
{
	return n->vdev.host->loop;
}

/* ---- tap backend ------------------------------------------------------------------------- */

static void net_ifr(struct ifreq *ifr, const char *name)
{
	memset(ifr, 0, sizeof(*ifr));
	snprintf(ifr->ifr_name, sizeof(ifr->ifr_name), "%s", name);
}

/* ioctl on a throwaway socket (interface flags, MTU, bridge ports); returns 0 or -errno. */
static int net_sock_ioctl(unsigned long req, struct ifreq *ifr)
{
	int s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	int rc = 0;

	if (s < 0)
		return -errno;
	if (ioctl(s, req, ifr) < 0)
		rc = -errno;
	close(s);
	return rc;
}

/* "xvd<domid>.<n>": devid when the section gives one, else the first free n. */
static int net_tap_default_name(struct net_dev *n, const struct config_device *cfg)
{
	char name[IFNAMSIZ + 8];
	uint32_t domid = n->vdev.host->domid;

	if (cfg->devid >= 0) {
		int len = snprintf(name, sizeof(name), "xvd%" PRIu32 ".%" PRId64, domid, cfg->devid);

		if (len < 0 || len >= IFNAMSIZ)
			return -ENAMETOOLONG;
		memcpy(n->ifname, name, (size_t)len + 1);
		return 0;
	}
	for (unsigned k = 0; k < 100; k++) {
		int len = snprintf(name, sizeof(name), "xvd%" PRIu32 ".%u", domid, k);

		if (len > 0 && len < IFNAMSIZ && if_nametoindex(name) == 0) {
			memcpy(n->ifname, name, (size_t)len + 1);
			return 0;
		}
	}
	return -EEXIST;
}

static int net_tap_open_one(struct net_dev *n, unsigned flags)
{
	int hdr_sz = VIRTIO_NET_HDR_LEN, le = 1;
	struct ifreq ifr;
	int fd = open("/dev/net/tun", O_RDWR | O_NONBLOCK | O_CLOEXEC);
	int rc;

	if (fd < 0)
		return -errno;
	net_ifr(&ifr, n->ifname);
	ifr.ifr_flags = (short)flags;
	if (ioctl(fd, TUNSETIFF, &ifr) < 0 || ioctl(fd, TUNSETVNETHDRSZ, &hdr_sz) < 0)
		goto fail;
	/* VERSION_1 headers are little-endian; older kernels only know native order. */
	if (ioctl(fd, TUNSETVNETLE, &le) < 0 && __BYTE_ORDER != __LITTLE_ENDIAN)
		goto fail;
	snprintf(n->ifname, sizeof(n->ifname), "%s", ifr.ifr_name);
	return fd;
fail:
	rc = -errno;
	close(fd);
	return rc;
}

/* Which of the guest-side offloads the kernel can produce on this tap. */
static unsigned net_tap_probe_offloads(int fd)
{
	static const unsigned tries[] = {
		NET_TAP_OFFLOADS, NET_TAP_OFFLOADS & ~TUN_F_UFO, TUN_F_CSUM,
	};
	unsigned ok = 0;

	for (unsigned i = 0; i < sizeof(tries) / sizeof(tries[0]) && !ok; i++)
		if (ioctl(fd, TUNSETOFFLOAD, (unsigned long)tries[i]) == 0)
			ok = tries[i];
	/* Until the guest negotiates, the kernel checksums and segments everything. */
	ioctl(fd, TUNSETOFFLOAD, 0UL);
	return ok;
}

static int net_tap_queue(struct net_pair *p, bool attach)
{
	struct ifreq ifr;

	if (p->n->max_pairs == 1 || p->attached == attach)
		return 0;
	net_ifr(&ifr, "");
	ifr.ifr_flags = attach ? IFF_ATTACH_QUEUE : IFF_DETACH_QUEUE;
	if (ioctl(p->fd, TUNSETQUEUE, &ifr) < 0) {
		int rc = -errno;

		vdev_log(&p->n->vdev, VDEV_LOG_BACKEND, LOG_WARNING,
			 "%s: cannot %s tap queue %u: %s", p->n->vdev.name,
			 attach ? "attach" : "detach", p->idx, strerror(-rc));
		return rc;
	}
	p->attached = attach;
	return 0;
}

static int net_if_set_up(const char *ifname)
{
	struct ifreq ifr;
	int rc;

	net_ifr(&ifr, ifname);
	rc = net_sock_ioctl(SIOCGIFFLAGS, &ifr);
	if (rc == 0 && !(ifr.ifr_flags & IFF_UP)) {
		ifr.ifr_flags |= IFF_UP;
		rc = net_sock_ioctl(SIOCSIFFLAGS, &ifr);
	}
	return rc;
}

/* What vif-bridge does for a new vif: MTU, bridge port, up. */
static int net_tap_setup_new(struct net_dev *n, const char *bridge)
{
	struct ifreq ifr;
	int rc;

	net_ifr(&ifr, n->ifname);
	ifr.ifr_mtu = n->mtu;
	rc = net_sock_ioctl(SIOCSIFMTU, &ifr);
	if (rc < 0) {
		log_err("%s: cannot set MTU %u on %s: %s", n->vdev.name, n->mtu, n->ifname,
			strerror(-rc));
		return rc;
	}
	/*
	 * The tap's own address: the kernel gives a new tap a random one, and a bridge takes the
	 * lowest of its ports' addresses as its own. A tap made again (a restart without the fd
	 * store) would then change the bridge's address under the guest's ARP cache, and the
	 * guest's packets to dom0 would be lost until it asked again. fe:<the guest's last five
	 * bytes> (the convention of Xen's vifs and libvirt) is stable, unique per guest MAC and
	 * high enough that a bridge never takes it while a NIC is on it.
	 */
	net_ifr(&ifr, n->ifname);
	ifr.ifr_hwaddr.sa_family = ARPHRD_ETHER;
	ifr.ifr_hwaddr.sa_data[0] = (char)0xfe;
	memcpy(ifr.ifr_hwaddr.sa_data + 1, n->mac + 1, 5);
	rc = net_sock_ioctl(SIOCSIFHWADDR, &ifr);
	if (rc < 0)
		log_notice("%s: cannot set %s's address (it keeps the kernel's random one): %s",
			   n->vdev.name, n->ifname, strerror(-rc));
	if (!bridge[0])
		return 0;
	net_ifr(&ifr, bridge);
	ifr.ifr_ifindex = n->ifindex;
	rc = net_sock_ioctl(SIOCBRADDIF, &ifr);
	if (rc < 0) {
		log_err("%s: cannot add %s to bridge %s: %s", n->vdev.name, n->ifname, bridge,
			strerror(-rc));
		return rc;
	}
	rc = net_if_set_up(n->ifname);
	if (rc < 0)
		log_err("%s: cannot bring %s up: %s", n->vdev.name, n->ifname, strerror(-rc));
	return rc;
}

/* An existing tap keeps its MTU: the guest is told ours, so say when they differ. */
static void net_tap_check_mtu(const struct net_dev *n)
{
	struct ifreq ifr;

	net_ifr(&ifr, n->ifname);
	if (net_sock_ioctl(SIOCGIFMTU, &ifr) == 0 && ifr.ifr_mtu != n->mtu)
		log_notice("%s: %s has MTU %d, the guest is offered %u", n->vdev.name, n->ifname,
			   ifr.ifr_mtu, n->mtu);
}

static void net_store_name(const struct net_dev *n, unsigned i, char *buf, size_t len)
{
	snprintf(buf, len, "%s/tap%u", n->vdev.name, i);
}

/*
 * A descriptor from the fd store is the previous instance's queue i of this device's tap only
 * if the kernel says so: a tap, with our flags, of the configured name (or, named by default,
 * one of this domain's). Returns its attached state, or -1 (then it is not used).
 */
static int net_tap_check_taken(const struct net_dev *n, int fd, bool named)
{
	unsigned want = IFF_TAP | IFF_NO_PI | IFF_VNET_HDR | (n->max_pairs > 1 ? IFF_MULTI_QUEUE : 0);
	char prefix[IFNAMSIZ + 8];
	struct ifreq ifr;

	memset(&ifr, 0, sizeof(ifr));
	if (ioctl(fd, TUNGETIFF, &ifr) < 0 ||
	    ((unsigned)(uint16_t)ifr.ifr_flags & (want | IFF_TUN)) != want)
		return -1;
	snprintf(prefix, sizeof(prefix), "xvd%" PRIu32 ".", n->vdev.host->domid);
	ifr.ifr_name[IFNAMSIZ - 1] = 0;
	if (named ? strcmp(ifr.ifr_name, n->ifname) != 0
		  : strncmp(ifr.ifr_name, prefix, strlen(prefix)) != 0)
		return -1;
	return !(ifr.ifr_flags & IFF_DETACH_QUEUE);
}

/*
 * After a restart with systemd's fd store: the previous instance's tap queues, so the
 * interface (a tap we created vanishes with its last descriptor), its bridge port and the
 * frames queued in it outlive the process. All of them or none.
 */
static bool net_tap_take(struct net_dev *n, bool named)
{
	struct fdstore *st = n->vdev.host->store;
	char name[sizeof(n->vdev.name) + 16];
	struct ifreq ifr;
	unsigned i;
	int att = -1;

	for (i = 0; i < n->max_pairs; i++) {
		net_store_name(n, i, name, sizeof(name));
		n->pair[i].fd = fdstore_take(st, name);
		/* Queues after the first: of the same tap as it. */
		if (n->pair[i].fd < 0 ||
		    (att = net_tap_check_taken(n, n->pair[i].fd, named || i > 0)) < 0)
			break;
		n->pair[i].attached = att;
		if (!named && i == 0 && ioctl(n->pair[0].fd, TUNGETIFF, &ifr) == 0)
			snprintf(n->ifname, sizeof(n->ifname), "%.*s", IFNAMSIZ - 1, ifr.ifr_name);
	}
	if (i == n->max_pairs)
		return true;
	if (n->pair[i].fd >= 0)
		log_notice("%s: the stored tap queue %u is not %s's: opening the tap again",
			   n->vdev.name, i, named ? n->ifname : "this guest's");
	for (unsigned k = 0; k <= i && k < n->max_pairs; k++) {
		if (n->pair[k].fd >= 0)
			close(n->pair[k].fd);
		n->pair[k].fd = -1;
	}
	return false;
}

/* The next instance takes the tap's queues back from systemd's fd store (net_tap_take()). */
static void net_tap_keep(const struct net_dev *n)
{
	char name[sizeof(n->vdev.name) + 16];

	for (unsigned i = 0; i < n->max_pairs; i++) {
		net_store_name(n, i, name, sizeof(name));
		fdstore_keep(n->vdev.host->store, name, n->pair[i].fd);
	}
}

static int net_tap_open(struct net_dev *n, const struct config_net *c)
{
	unsigned flags = IFF_TAP | IFF_NO_PI | IFF_VNET_HDR |
			 (n->max_pairs > 1 ? IFF_MULTI_QUEUE : 0);

	if (n->taken) {
		n->ifindex = (int)if_nametoindex(n->ifname);
		n->kernel_offloads = net_tap_probe_offloads(n->pair[0].fd);
		return 0;
	}
	n->created = if_nametoindex(n->ifname) == 0;
	for (unsigned i = 0; i < n->max_pairs; i++) {
		int fd = net_tap_open_one(n, flags);

		if (fd < 0) {
			log_err("%s: cannot open tap %s (queue %u): %s", n->vdev.name, n->ifname, i,
				strerror(-fd));
			return fd;
		}
		n->pair[i].fd = fd;
		n->pair[i].attached = true;
	}
	n->ifindex = (int)if_nametoindex(n->ifname);
	n->kernel_offloads = net_tap_probe_offloads(n->pair[0].fd);
	if (n->created)
		return net_tap_setup_new(n, c->bridge);
	if (c->bridge[0])
		log_notice("%s: %s existed already: not attached to bridge %s", n->vdev.name,
			   n->ifname, c->bridge);
	net_tap_check_mtu(n);
	return 0;
}

static void net_tap_set_offloads(struct net_dev *n, unsigned off)
{
	if (ioctl(n->pair[0].fd, TUNSETOFFLOAD, (unsigned long)off) < 0) {
		vdev_log(&n->vdev, VDEV_LOG_BACKEND, LOG_WARNING, "%s: TUNSETOFFLOAD 0x%x: %s",
			 n->vdev.name, off, strerror(errno));
		off = 0;
		ioctl(n->pair[0].fd, TUNSETOFFLOAD, 0UL);
	}
	n->offloads = off;
}

/* ---- link state -------------------------------------------------------------------------- */

static bool net_link_query(const struct net_dev *n)
{
	char name[IFNAMSIZ];
	struct ifreq ifr;

	if (n->admin_down)
		return false;
	/* By index: an administrator may have renamed the tap. */
	if (!if_indextoname((unsigned)n->ifindex, name))
		return false;
	net_ifr(&ifr, name);
	if (net_sock_ioctl(SIOCGIFFLAGS, &ifr) < 0)
		return false;
	return (ifr.ifr_flags & IFF_UP) && (ifr.ifr_flags & IFF_RUNNING);
}

static void net_link_update(struct net_dev *n)
{
	bool up = net_link_query(n);

	if (up == n->link_up)
		return;
	n->link_up = up;
	n->st.link_changes++;
	log_info("%s: link %s (%s)", n->vdev.name, up ? "up" : "down", n->ifname);
	if (vdev_has(&n->vdev, VIRTIO_NET_F_STATUS))
		vdev_config_changed(&n->vdev);
}

/* True when the datagram carries a link message about our tap. */
static bool net_link_relevant(const struct net_dev *n, const uint8_t *buf, size_t len)
{
	size_t off = 0;

	while (len - off >= sizeof(struct nlmsghdr)) {
		struct nlmsghdr nh;

		memcpy(&nh, buf + off, sizeof(nh));
		if (nh.nlmsg_len < sizeof(nh) || nh.nlmsg_len > len - off)
			return false;
		if ((nh.nlmsg_type == RTM_NEWLINK || nh.nlmsg_type == RTM_DELLINK) &&
		    nh.nlmsg_len >= NLMSG_LENGTH(sizeof(struct ifinfomsg))) {
			struct ifinfomsg ifi;

			memcpy(&ifi, buf + off + NLMSG_HDRLEN, sizeof(ifi));
			if (ifi.ifi_index == n->ifindex)
				return true;
		}
		off += NLMSG_ALIGN(nh.nlmsg_len);
		if (off > len)
			break;
	}
	return false;
}

static void net_link_cb(struct ev_loop *loop, ev_io *w, int revents)
{
	struct net_dev *n = container_of(w, struct net_dev, nl_w);
	uint8_t buf[8192];
	bool relevant = false;

	(void)loop;
	(void)revents;
	for (unsigned i = 0; i < 64; i++) {
		ssize_t len = recv(n->nl_fd, buf, sizeof(buf), MSG_DONTWAIT);

		if (len < 0) {
			/* Overrun: messages were lost, so look at the tap itself. */
			relevant |= errno == ENOBUFS;
			if (errno != ENOBUFS && errno != EINTR)
				break;
			continue;
		}
		relevant |= net_link_relevant(n, buf, (size_t)len);
	}
	if (relevant)
		net_link_update(n);
}

static int net_link_open(struct net_dev *n)
{
	struct sockaddr_nl sa = { .nl_family = AF_NETLINK, .nl_groups = RTMGRP_LINK };

	n->nl_fd = socket(AF_NETLINK, SOCK_RAW | SOCK_NONBLOCK | SOCK_CLOEXEC, NETLINK_ROUTE);
	if (n->nl_fd < 0 || bind(n->nl_fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		int rc = -errno;

		log_err("%s: rtnetlink: %s", n->vdev.name, strerror(-rc));
		return rc;
	}
	ev_io_init(&n->nl_w, net_link_cb, n->nl_fd, EV_READ);
	ev_io_start(net_loop(n), &n->nl_w);
	n->link_up = net_link_query(n);
	return 0;
}

/* ---- receive: tap -> guest --------------------------------------------------------------- */

/* The next RX chain able to hold a header; NULL when the guest has none or broke the ring. */
static struct vq_elem *net_rx_pop(struct net_pair *p)
{
	struct virtqueue *vq = net_rxq(p);
	struct vq_elem *e;
	int err = 0;

	for (unsigned i = 0; i < vq->num && (e = vq_pop(vq, &err)); i++) {
		if (e->in_len >= VIRTIO_NET_HDR_LEN && e->n_in <= NET_IOV_MAX - 2)
			return e;
		p->n->st.rx_bad_chains++;
		vdev_log(&p->n->vdev, VDEV_LOG_REQUEST, LOG_WARNING,
			 "%s: RX chain of %u bytes in %u buffers unusable", p->n->vdev.name,
			 e->in_len, e->n_in);
		vq_push(e, 0);
		p->rx_pushed = true;
	}
	if (err)
		vdev_vq_error(&p->n->vdev, vq);
	return NULL;
}

/*
 * Hold chains for the next frame: one without MRG_RXBUF (a frame must fit it), else as many as
 * the largest frame needs, as far as the ring has them. False when there is none at all.
 */
static bool net_rx_take(struct net_pair *p)
{
	bool mrg = vdev_has(&p->n->vdev, VIRTIO_NET_F_MRG_RXBUF);
	uint64_t cap = 0;

	for (unsigned i = 0; i < p->rx_nhold; i++)
		cap += p->rx_hold[i]->in_len;
	while (p->rx_nhold == 0 ||
	       (mrg && cap < NET_FRAME_MAX + VIRTIO_NET_HDR_LEN && p->rx_nhold < VQ_MAX_SIZE)) {
		struct vq_elem *e = net_rx_pop(p);

		if (!e)
			break;
		p->rx_hold[p->rx_nhold++] = e;
		cap += e->in_len;
	}
	return p->rx_nhold > 0;
}

/*
 * [private header][held chains, the first after its header][bounce]: one readv puts a frame
 * straight into the guest's buffers. Returns the entry count (0: cannot happen, net_rx_pop()
 * checked every chain against the header size and the vector's capacity).
 */
static unsigned net_rx_vector(struct net_pair *p)
{
	unsigned n = 1;

	p->rx_iov[0] = (struct iovec){ .iov_base = &p->rx_hdr, .iov_len = VIRTIO_NET_HDR_LEN };
	p->rx_vec_n = 0;
	p->rx_vec_cap = 0;
	for (unsigned i = 0; i < p->rx_nhold; i++) {
		struct vq_elem *e = p->rx_hold[i];
		size_t skip = i ? 0 : VIRTIO_NET_HDR_LEN;
		int k;

		if (n + e->n_in + 1 > NET_IOV_MAX)
			break;
		k = iov_slice(&e->iov[e->n_out], e->n_in, skip, e->in_len - skip, p->rx_iov + n,
			      NET_IOV_MAX - 1 - n);
		if (k < 0)
			break;
		n += (unsigned)k;
		p->rx_vec_n++;
		p->rx_vec_cap += e->in_len;
	}
	if (!p->rx_vec_n)
		return 0;
	p->rx_iov[n++] = (struct iovec){ .iov_base = p->bounce, .iov_len = NET_BOUNCE };
	return n;
}

/* How the readv spread the frame over the vector's chains. */
static void net_rx_account(struct net_pair *p)
{
	uint32_t left = p->rx_len;

	p->rx_nused = 0;
	p->rx_done = 0;
	for (unsigned i = 0; i < p->rx_vec_n && left; i++) {
		uint32_t take = left < p->rx_hold[i]->in_len ? left : p->rx_hold[i]->in_len;

		p->rx_written[p->rx_nused++] = take;
		p->rx_done += take;
		left -= take;
	}
}

static void net_rx_drop(struct net_pair *p, const char *why, size_t len)
{
	p->n->st.rx_dropped++;
	vdev_log(&p->n->vdev, VDEV_LOG_REQUEST, LOG_WARNING,
		 "%s: frame of %zu bytes from the tap dropped: %s", p->n->vdev.name, len, why);
	p->rx_len = 0;
}

/* The header as the guest may see it: no flags it did not negotiate. */
static void net_rx_fix_hdr(struct net_pair *p)
{
	if (!vdev_has(&p->n->vdev, VIRTIO_NET_F_GUEST_CSUM))
		p->rx_hdr.flags = 0;
	p->rx_hdr.num_buffers = 0;
}

static void net_rx_stop_fd(struct net_pair *p, int err)
{
	vdev_log(&p->n->vdev, VDEV_LOG_BACKEND, LOG_ERR,
		 "%s: reading tap queue %u: %s; RX paused until a kick", p->n->vdev.name, p->idx,
		 strerror(err));
	ev_io_stop(net_loop(p->n), &p->rx_w);
	p->rx_starved = true;
}

/* Read one frame into the held chains and, beyond them, the bounce buffer. */
static enum net_rx_res net_rx_read(struct net_pair *p)
{
	if (!net_rx_take(p))
		return NET_RX_NOBUF;
	unsigned niov = net_rx_vector(p);
	ssize_t got = niov ? readv(p->fd, p->rx_iov, (int)niov) : -1;

	if (!niov) {
		net_rx_stop_fd(p, EINVAL);
		return NET_RX_AGAIN;
	}
	if (got < 0) {
		if (errno != EAGAIN && errno != EINTR)
			net_rx_stop_fd(p, errno);
		return NET_RX_AGAIN;
	}
	/* Dropped frames leave every chain held, for the next one. */
	p->rx_len = (uint32_t)got;
	if ((size_t)got < VIRTIO_NET_HDR_LEN + NET_ETH_HLEN)
		net_rx_drop(p, "runt", (size_t)got);
	else if ((size_t)got >= (size_t)p->rx_vec_cap + NET_BOUNCE)
		net_rx_drop(p, "larger than 64 KiB", (size_t)got);
	else if ((size_t)got > p->rx_hold[0]->in_len &&
		 !vdev_has(&p->n->vdev, VIRTIO_NET_F_MRG_RXBUF))
		net_rx_drop(p, "larger than the guest's receive buffer", (size_t)got);
	if (!p->rx_len)
		return NET_RX_OK;
	net_rx_account(p);
	net_rx_fix_hdr(p);
	return NET_RX_OK;
}

/* Every chain of the ring is ours and the frame still does not fit: give them back empty. */
static void net_rx_give_up(struct net_pair *p)
{
	for (unsigned i = 1; i < p->rx_nhold; i++)
		p->rx_written[i] = 0;
	vq_push_many(p->rx_hold + 1, p->rx_written + 1, p->rx_nhold - 1);
	p->rx_nhold = 1;
	p->rx_nused = 0;
	p->rx_pushed = true;
	net_rx_drop(p, "does not fit the whole receive ring", p->rx_len);
}

/* The next chain for the pending frame: one already held, else a new one from the ring. */
static struct vq_elem *net_rx_next_chain(struct net_pair *p)
{
	if (p->rx_nused < p->rx_nhold)
		return p->rx_hold[p->rx_nused];
	struct vq_elem *e = net_rx_pop(p);

	if (e)
		p->rx_hold[p->rx_nhold++] = e;
	return e;
}

/* Publish the frame's chains at once; chains held beyond them wait for the next frame. */
static void net_rx_publish(struct net_pair *p)
{
	struct vq_elem *first = p->rx_hold[0];
	unsigned used = p->rx_nused;

	p->rx_hdr.num_buffers = htole16((uint16_t)used);
	iov_from_buf(&first->iov[first->n_out], first->n_in, 0, &p->rx_hdr, VIRTIO_NET_HDR_LEN);
	p->n->st.rx_frames++;
	p->n->st.rx_bytes += p->rx_len - VIRTIO_NET_HDR_LEN;
	p->n->st.rx_buffers += used;
	vq_push_many(p->rx_hold, p->rx_written, used);
	memmove(p->rx_hold, p->rx_hold + used, (p->rx_nhold - used) * sizeof(struct vq_elem *));
	p->rx_nhold -= used;
	p->rx_nused = 0;
	p->rx_len = 0;
	p->rx_pushed = true;
}

/* Copy what the bounce buffer holds of the frame into further chains, then publish. */
static enum net_rx_res net_rx_place(struct net_pair *p)
{
	while (p->rx_done < p->rx_len) {
		if (p->rx_nused >= p->rx_nhold && p->rx_nhold >= net_rxq(p)->num) {
			net_rx_give_up(p);
			return NET_RX_OK;
		}
		struct vq_elem *e = net_rx_next_chain(p);

		if (!e)
			return NET_RX_NOBUF;
		uint32_t len = p->rx_len - p->rx_done;

		len = len < e->in_len ? len : e->in_len;
		iov_from_buf(&e->iov[e->n_out], e->n_in, 0, p->bounce + (p->rx_done - p->rx_vec_cap),
			     len);
		p->rx_written[p->rx_nused++] = len;
		p->rx_done += len;
	}
	net_rx_publish(p);
	return NET_RX_OK;
}

static enum net_rx_res net_rx_one(struct net_pair *p)
{
	if (!p->rx_len) {
		enum net_rx_res r = net_rx_read(p);

		if (r != NET_RX_OK || !p->rx_len)
			return r;
	}
	return net_rx_place(p);
}

static void net_rx_starve(struct net_pair *p)
{
	p->rx_starved = true;
	p->n->st.rx_starved++;
	ev_io_stop(net_loop(p->n), &p->rx_w);
}

/* Deliver frames until the tap is empty, the budget is spent or the guest has no buffers. */
static void net_rx_run(struct net_pair *p)
{
	for (unsigned i = 0; i < VQ_BUDGET && p->running && !p->rx_starved &&
			     vdev_active(&p->n->vdev); i++) {
		enum net_rx_res r = net_rx_one(p);

		if (r == NET_RX_AGAIN)
			break;
		if (r != NET_RX_NOBUF)
			continue;
		/* Re-enable kicks, then look again: chains added meanwhile are not missed. */
		if (!vq_enable_notify(net_rxq(p))) {
			net_rx_starve(p);
			break;
		}
		vq_disable_notify(net_rxq(p));
	}
	if (p->rx_pushed) {
		p->rx_pushed = false;
		vdev_used(&p->n->vdev, net_rxq(p));
	}
}

static void net_rx_cb(struct ev_loop *loop, ev_io *w, int revents)
{
	(void)loop;
	(void)revents;
	net_rx_run(container_of(w, struct net_pair, rx_w));
}

/* Start (or, after starvation, resume) reading the tap for this pair. */
static void net_rx_start(struct net_pair *p)
{
	if (!p->running || !net_rxq(p)->enabled)
		return;
	p->rx_starved = false;
	/* While we read the tap, a kick for every refill would only cost an exit. */
	vq_disable_notify(net_rxq(p));
	ev_io_start(net_loop(p->n), &p->rx_w);
	net_rx_run(p);
}

/* ---- transmit: guest -> tap -------------------------------------------------------------- */

static const char *net_tx_check_gso(const struct net_dev *n, const struct virtio_net_hdr *h,
				    uint32_t frame_len)
{
	static const unsigned need[] = {
		[VIRTIO_NET_HDR_GSO_TCPV4] = VIRTIO_NET_F_HOST_TSO4,
		[VIRTIO_NET_HDR_GSO_UDP] = VIRTIO_NET_F_HOST_UFO,
		[VIRTIO_NET_HDR_GSO_TCPV6] = VIRTIO_NET_F_HOST_TSO6,
	};
	unsigned type = h->gso_type;

	if (type & VIRTIO_NET_HDR_GSO_ECN)
		return "GSO with ECN (HOST_ECN is not offered)";
	if (type >= sizeof(need) / sizeof(need[0]) || !need[type])
		return "unknown gso_type";
	if (!vdev_has(&n->vdev, need[type]))
		return "gso_type not negotiated";
	if (!(h->flags & VIRTIO_NET_HDR_F_NEEDS_CSUM))
		return "GSO without NEEDS_CSUM";
	if (le16toh(h->gso_size) == 0)
		return "GSO with gso_size 0";
	if (le16toh(h->hdr_len) > frame_len)
		return "hdr_len beyond the frame";
	return NULL;
}

/* NULL when the header fits the frame and what was negotiated; else why not. */
static const char *net_tx_check(const struct net_dev *n, const struct virtio_net_hdr *h,
				uint32_t frame_len)
{
	if (frame_len < NET_ETH_HLEN)
		return "frame shorter than an Ethernet header";
	if (frame_len > NET_FRAME_MAX)
		return "frame larger than 64 KiB";
	if (h->flags & ~VIRTIO_NET_HDR_F_NEEDS_CSUM)
		return "flags other than NEEDS_CSUM";
	if (h->flags & VIRTIO_NET_HDR_F_NEEDS_CSUM) {
		if (!vdev_has(&n->vdev, VIRTIO_NET_F_CSUM))
			return "NEEDS_CSUM without CSUM negotiated";
		if ((uint32_t)le16toh(h->csum_start) + le16toh(h->csum_offset) + 2u > frame_len)
			return "checksum field beyond the frame";
	}
	if (h->gso_type == VIRTIO_NET_HDR_GSO_NONE)
		return NULL;
	return net_tx_check_gso(n, h, frame_len);
}

static void net_tx_complete(struct net_pair *p)
{
	vq_push(p->tx_pend, 0);
	p->tx_pend = NULL;
}

/* Write the pending chain; false when the tap is full (the chain stays pending). */
static bool net_tx_write(struct net_pair *p)
{
	struct net_dev *n = p->n;
	ssize_t w = writev(p->fd, p->tx_iov, (int)p->tx_niov);

	if (w < 0 && (errno == EAGAIN || errno == EINTR)) {
		n->st.tx_eagain++;
		ev_io_start(net_loop(n), &p->tx_w);
		return false;
	}
	if (w < 0) {
		n->st.tx_errors++;
		vdev_log(&n->vdev, VDEV_LOG_BACKEND, LOG_WARNING,
			 "%s: tap refused a frame of %" PRIu32 " bytes: %s", n->vdev.name,
			 p->tx_frame_len, strerror(errno));
	} else {
		n->st.tx_frames++;
		n->st.tx_bytes += p->tx_frame_len;
		testpoint("net.tx.sent");
	}
	net_tx_complete(p);
	return true;
}

static void net_tx_malformed(struct net_pair *p, const char *why)
{
	p->n->st.tx_malformed++;
	vdev_log(&p->n->vdev, VDEV_LOG_REQUEST, LOG_WARNING, "%s: TX frame dropped: %s",
		 p->n->vdev.name, why);
	net_tx_complete(p);
}

/* Validate one chain and hand it to the tap; false when the tap is full. */
static bool net_tx_start(struct net_pair *p, struct vq_elem *e)
{
	const char *why;
	int k;

	p->tx_pend = e;
	if (e->out_len < VIRTIO_NET_HDR_LEN) {
		net_tx_malformed(p, "chain shorter than the virtio-net header");
		return true;
	}
	/* One copy of the header, checked and sent: the guest may rewrite its own meanwhile. */
	iov_to_buf(e->iov, e->n_out, 0, &p->tx_hdr, VIRTIO_NET_HDR_LEN);
	p->tx_frame_len = e->out_len - VIRTIO_NET_HDR_LEN;
	why = net_tx_check(p->n, &p->tx_hdr, p->tx_frame_len);
	if (why) {
		net_tx_malformed(p, why);
		return true;
	}
	k = iov_slice(e->iov, e->n_out, VIRTIO_NET_HDR_LEN, p->tx_frame_len, p->tx_iov + 1,
		      NET_IOV_MAX - 1);
	if (k < 0) {
		net_tx_malformed(p, "more buffers than writev takes");
		return true;
	}
	p->tx_iov[0] = (struct iovec){ .iov_base = &p->tx_hdr, .iov_len = VIRTIO_NET_HDR_LEN };
	p->tx_niov = (unsigned)k + 1;
	return net_tx_write(p);
}

/* Send up to VQ_BUDGET chains; true when more wait (the caller schedules another turn). */
static bool net_tx_run(struct net_pair *p)
{
	struct virtqueue *vq = net_txq(p);
	bool pushed = false, blocked = false;
	unsigned n = 0;
	int err = 0;

	if (!p->running || !vdev_active(&p->n->vdev))
		return false;
	if (p->tx_pend && !(pushed = net_tx_write(p)))
		return false;
	vq_disable_notify(vq);
	for (;;) {
		struct vq_elem *e;

		while (!blocked && n < VQ_BUDGET && (e = vq_pop(vq, &err))) {
			n++;
			blocked = !net_tx_start(p, e);
			pushed |= !blocked;
			if (pushed && n % NET_TX_EARLY == 0) {
				vdev_used(&p->n->vdev, vq);
				pushed = false;
			}
		}
		if (err)
			vdev_vq_error(&p->n->vdev, vq);
		/* Blocked: POLLOUT resumes us, no kick needed meanwhile. */
		if (blocked || n == VQ_BUDGET || err || !vq_enable_notify(vq))
			break;
	}
	if (pushed)
		vdev_used(&p->n->vdev, vq);
	return !blocked && n == VQ_BUDGET && vq_more(vq);
}

static void net_tx_more(struct net_pair *p)
{
	p->n->more_tx |= 1u << p->idx;
	ev_idle_start(net_loop(p->n), &p->n->more);
}

static void net_tx_cb(struct ev_loop *loop, ev_io *w, int revents)
{
	struct net_pair *p = container_of(w, struct net_pair, tx_w);

	(void)revents;
	ev_io_stop(loop, w);
	if (net_tx_run(p))
		net_tx_more(p);
}

static void net_more_cb(struct ev_loop *loop, ev_idle *w, int revents)
{
	struct net_dev *n = container_of(w, struct net_dev, more);
	uint32_t todo = n->more_tx;

	(void)revents;
	n->more_tx = 0;
	for (unsigned i = 0; i < n->max_pairs; i++)
		if ((todo & (1u << i)) && net_tx_run(&n->pair[i]))
			n->more_tx |= 1u << i;
	if (!n->more_tx)
		ev_idle_stop(loop, w);
}

/* ---- queue pairs ------------------------------------------------------------------------- */

/* Out of use (fewer pairs): watchers off; held chains and a pending frame wait for a restart. */
static void net_pair_pause(struct net_pair *p)
{
	struct ev_loop *loop = net_loop(p->n);

	p->running = false;
	ev_io_stop(loop, &p->rx_w);
	ev_io_stop(loop, &p->tx_w);
}

/* Device reset: everything held is given up (the rings are being reset too). */
static void net_pair_stop(struct net_pair *p)
{
	net_pair_pause(p);
	for (unsigned i = 0; i < p->rx_nhold; i++)
		vq_drop(p->rx_hold[i]);
	p->rx_nhold = 0;
	p->rx_nused = 0;
	p->rx_len = 0;
	p->rx_starved = false;
	p->rx_pushed = false;
	if (p->tx_pend)
		vq_drop(p->tx_pend);
	p->tx_pend = NULL;
}

static void net_pair_start(struct net_pair *p)
{
	if (p->running)
		return;
	p->running = true;
	net_rx_start(p);
	if (net_tx_run(p))
		net_tx_more(p);
}

/* Serve pairs [0, want) and detach the others' tap queues so the kernel steers nothing there. */
static void net_pairs_set(struct net_dev *n, unsigned want)
{
	for (unsigned i = 0; i < n->max_pairs; i++) {
		struct net_pair *p = &n->pair[i];

		if (i < want && net_tap_queue(p, true) == 0) {
			net_pair_start(p);
		} else if (i >= want) {
			net_pair_pause(p);
			net_tap_queue(p, false);
		}
	}
	n->active_pairs = (uint16_t)want;
}

/* ---- control queue ----------------------------------------------------------------------- */

/* The tap's TX filter from the CTRL_RX state: no filter while promiscuous. */
static void net_filter_apply(struct net_dev *n)
{
	/* struct tun_filter and its addresses, laid out by hand (it ends in a flexible array). */
	uint8_t buf[offsetof(struct tun_filter, addr) + (2 + 2 * NET_FILTER_MAX) * 6]
		__attribute__((aligned(8)));
	uint8_t *addr = buf + offsetof(struct tun_filter, addr);
	struct tun_filter f = { 0 };
	unsigned c = 0;

	memset(buf, 0, sizeof(buf));
	if (!n->promisc && !n->table_overflow) {
		memcpy(addr + 6 * c++, n->mac, 6);
		memset(addr + 6 * c++, 0xff, 6);
		for (unsigned i = 0; i < n->n_uc; i++)
			memcpy(addr + 6 * c++, n->uc[i], 6);
		for (unsigned i = 0; i < n->n_mc && !n->allmulti; i++)
			memcpy(addr + 6 * c++, n->mc[i], 6);
		f.flags = n->allmulti ? TUN_FLT_ALLMULTI : 0;
	}
	f.count = (uint16_t)c;
	memcpy(buf, &f, offsetof(struct tun_filter, addr));
	if (ioctl(n->pair[0].fd, TUNSETTXFILTER, buf) < 0)
		vdev_log(&n->vdev, VDEV_LOG_BACKEND, LOG_WARNING, "%s: TUNSETTXFILTER: %s",
			 n->vdev.name, strerror(errno));
}

/* One MAC table (le32 count, then count addresses) at *off; false when malformed. */
static bool net_ctrl_table(const uint8_t *d, size_t len, size_t *off, uint8_t (*dst)[6],
			   unsigned *n, bool *overflow)
{
	uint32_t count;

	if (len - *off < 4)
		return false;
	memcpy(&count, d + *off, 4);
	count = le32toh(count);
	*off += 4;
	if (count > (len - *off) / 6)
		return false;
	*n = count <= NET_FILTER_MAX ? count : 0;
	*overflow |= count > NET_FILTER_MAX;
	for (unsigned i = 0; i < *n; i++)
		memcpy(dst[i], d + *off + 6 * i, 6);
	*off += 6 * (size_t)count;
	return true;
}

static uint8_t net_ctrl_mac_table(struct net_dev *n, const uint8_t *d, size_t len)
{
	size_t off = 0;
	bool overflow = false;
	unsigned n_uc, n_mc;
	uint8_t uc[NET_FILTER_MAX][6], mc[NET_FILTER_MAX][6];

	if (!net_ctrl_table(d, len, &off, uc, &n_uc, &overflow) ||
	    !net_ctrl_table(d, len, &off, mc, &n_mc, &overflow))
		return VIRTIO_NET_ERR;
	n->n_uc = n_uc;
	n->n_mc = n_mc;
	memcpy(n->uc, uc, sizeof(uc));
	memcpy(n->mc, mc, sizeof(mc));
	n->table_overflow = overflow;
	net_filter_apply(n);
	return VIRTIO_NET_OK;
}

static uint8_t net_ctrl_rx(struct net_dev *n, uint8_t cmd, const uint8_t *d, size_t len)
{
	if (!vdev_has(&n->vdev, VIRTIO_NET_F_CTRL_RX) || len != 1 ||
	    cmd > VIRTIO_NET_CTRL_RX_ALLMULTI)
		return VIRTIO_NET_ERR;
	if (cmd == VIRTIO_NET_CTRL_RX_PROMISC)
		n->promisc = d[0] != 0;
	else
		n->allmulti = d[0] != 0;
	net_filter_apply(n);
	return VIRTIO_NET_OK;
}

static uint8_t net_ctrl_mq(struct net_dev *n, uint8_t cmd, const uint8_t *d, size_t len)
{
	uint16_t want;

	if (!vdev_has(&n->vdev, VIRTIO_NET_F_MQ) || cmd != VIRTIO_NET_CTRL_MQ_VQ_PAIRS_SET ||
	    len != 2)
		return VIRTIO_NET_ERR;
	memcpy(&want, d, 2);
	want = le16toh(want);
	if (want < 1 || want > n->max_pairs)
		return VIRTIO_NET_ERR;
	if (want != n->active_pairs)
		vdev_log(&n->vdev, VDEV_LOG_INFO, LOG_INFO, "%s: %u queue pair(s) in use",
			 n->vdev.name, want);
	net_pairs_set(n, want);
	return VIRTIO_NET_OK;
}

static uint8_t net_ctrl_exec(struct net_dev *n, const uint8_t *cmd, size_t len)
{
	switch (cmd[0]) {
	case VIRTIO_NET_CTRL_RX:
		return net_ctrl_rx(n, cmd[1], cmd + 2, len - 2);
	case VIRTIO_NET_CTRL_MAC:
		if (!vdev_has(&n->vdev, VIRTIO_NET_F_CTRL_RX) ||
		    cmd[1] != VIRTIO_NET_CTRL_MAC_TABLE_SET)
			return VIRTIO_NET_ERR;
		return net_ctrl_mac_table(n, cmd + 2, len - 2);
	case VIRTIO_NET_CTRL_MQ:
		return net_ctrl_mq(n, cmd[1], cmd + 2, len - 2);
	default:
		return VIRTIO_NET_ERR;
	}
}

/* The guest-set state into the record (struct net_rec); valid last. */
static void net_rec_save(struct net_dev *n)
{
	struct net_rec *r = n->rec;

	if (!r)
		return;
	r->promisc = n->promisc;
	r->allmulti = n->allmulti;
	r->table_overflow = n->table_overflow;
	r->active_pairs = n->active_pairs;
	r->n_uc = (uint8_t)n->n_uc;
	r->n_mc = (uint8_t)n->n_mc;
	memcpy(r->uc, n->uc, sizeof(r->uc));
	memcpy(r->mc, n->mc, sizeof(r->mc));
	__atomic_store_n(&r->valid, 1, __ATOMIC_RELEASE);
}

/*
 * The previous instance's record, checked: queue pairs within what this device has and the
 * guest negotiated, tables within their bounds. Returns the pairs to serve (1 when the record
 * is unusable, which is then said).
 */
static unsigned net_rec_restore(struct net_dev *n)
{
	const struct net_rec *r = n->rec;
	unsigned pairs = r->active_pairs;

	if (!r->valid)
		return 1;
	if (pairs < 1 || pairs > n->max_pairs || r->n_uc > NET_FILTER_MAX ||
	    r->n_mc > NET_FILTER_MAX || (pairs > 1 && !vdev_has(&n->vdev, VIRTIO_NET_F_MQ))) {
		log_warn("%s: the previous instance's receive filter and queue pairs are not "
			 "usable: serving the defaults", n->vdev.name);
		return 1;
	}
	n->promisc = r->promisc != 0;
	n->allmulti = r->allmulti != 0;
	n->table_overflow = r->table_overflow != 0;
	n->n_uc = r->n_uc;
	n->n_mc = r->n_mc;
	memcpy(n->uc, r->uc, sizeof(n->uc));
	memcpy(n->mc, r->mc, sizeof(n->mc));
	return pairs;
}

static void net_ctrl_one(struct net_dev *n, struct vq_elem *e, uint8_t *cmd)
{
	uint8_t ack = VIRTIO_NET_ERR;

	if (e->in_len < 1) {
		vdev_log(&n->vdev, VDEV_LOG_REQUEST, LOG_WARNING,
			 "%s: control command without an ack byte", n->vdev.name);
		vq_push(e, 0);
		return;
	}
	if (e->out_len >= 2 && e->out_len <= NET_CTRL_MAX) {
		size_t len = iov_to_buf(e->iov, e->n_out, 0, cmd, e->out_len);

		ack = net_ctrl_exec(n, cmd, len);
	}
	n->st.ctrl_cmds++;
	net_rec_save(n);   /* before the ack: struct net_rec */
	if (ack != VIRTIO_NET_OK) {
		n->st.ctrl_errors++;
		vdev_log(&n->vdev, VDEV_LOG_REQUEST, LOG_INFO,
			 "%s: control command of %u bytes refused", n->vdev.name, e->out_len);
	}
	iov_from_buf(&e->iov[e->n_out], e->n_in, 0, &ack, 1);
	vq_push(e, 1);
}

static void net_ctrl_run(struct net_dev *n, struct virtqueue *vq)
{
	uint8_t *cmd = malloc(NET_CTRL_MAX);
	struct vq_elem *e = NULL;
	unsigned done = 0;
	int err = 0;

	if (!cmd) {
		vdev_log(&n->vdev, VDEV_LOG_BACKEND, LOG_ERR,
			 "%s: out of memory for a control command", n->vdev.name);
		return;
	}
	while (done < VQ_BUDGET && vdev_active(&n->vdev) && (e = vq_pop(vq, &err))) {
		net_ctrl_one(n, e, cmd);
		done++;
	}
	free(cmd);
	if (err)
		vdev_vq_error(&n->vdev, vq);
	if (done)
		vdev_used(&n->vdev, vq);
}

/* ---- ops --------------------------------------------------------------------------------- */

static unsigned net_ctrl_index(const struct net_dev *n)
{
	return vdev_has(&n->vdev, VIRTIO_NET_F_MQ) ? 2u * n->max_pairs : 2u;
}

static void net_queue_notify(struct vdev *d, unsigned q)
{
	struct net_dev *n = net_of(d);

	if (q == net_ctrl_index(n)) {
		net_ctrl_run(n, &d->vqs[q]);
		return;
	}
	if (q / 2 >= n->active_pairs || (q >= 2 && !vdev_has(d, VIRTIO_NET_F_MQ)))
		return;   /* a pair not in use: the driver has no business there */
	struct net_pair *p = &n->pair[q / 2];

	if (q % 2 == 0) {
		if (p->rx_starved && p->running)
			net_rx_start(p);
	} else if (!p->tx_pend && net_tx_run(p)) {
		net_tx_more(p);
	}
}

static void net_config_read(struct vdev *d, uint32_t off, void *buf, uint32_t len)
{
	struct net_dev *n = net_of(d);
	uint8_t c[VIRTIO_NET_CFG_SIZE];
	uint16_t v;

	memcpy(c + VIRTIO_NET_CFG_MAC, n->mac, 6);
	v = htole16(n->link_up ? VIRTIO_NET_S_LINK_UP : 0);
	memcpy(c + VIRTIO_NET_CFG_STATUS, &v, 2);
	v = htole16(n->max_pairs);
	memcpy(c + VIRTIO_NET_CFG_MAX_PAIRS, &v, 2);
	v = htole16(n->mtu);
	memcpy(c + VIRTIO_NET_CFG_MTU, &v, 2);
	memcpy(buf, c + off, len);
}

static void net_config_write(struct vdev *d, uint32_t off, const void *buf, uint32_t len)
{
	(void)buf;
	/* With VERSION_1 the whole config space is read-only (the MAC is set via the INI). */
	vdev_log(d, VDEV_LOG_ACCESS, LOG_WARNING, "%s: ignored config write at %u (%u bytes)",
		 d->name, off, len);
}

/* Dependencies between feature bits (virtio 1.2 §5.1.3.1). */
static bool net_features_ok(struct vdev *d, uint64_t f)
{
	static const struct { unsigned bit, needs; } deps[] = {
		{ VIRTIO_NET_F_GUEST_TSO4, VIRTIO_NET_F_GUEST_CSUM },
		{ VIRTIO_NET_F_GUEST_TSO6, VIRTIO_NET_F_GUEST_CSUM },
		{ VIRTIO_NET_F_GUEST_UFO, VIRTIO_NET_F_GUEST_CSUM },
		{ VIRTIO_NET_F_HOST_TSO4, VIRTIO_NET_F_CSUM },
		{ VIRTIO_NET_F_HOST_TSO6, VIRTIO_NET_F_CSUM },
		{ VIRTIO_NET_F_HOST_UFO, VIRTIO_NET_F_CSUM },
		{ VIRTIO_NET_F_CTRL_RX, VIRTIO_NET_F_CTRL_VQ },
		{ VIRTIO_NET_F_MQ, VIRTIO_NET_F_CTRL_VQ },
	};

	(void)d;
	for (unsigned i = 0; i < sizeof(deps) / sizeof(deps[0]); i++)
		if ((f & VIRTIO_BIT(deps[i].bit)) && !(f & VIRTIO_BIT(deps[i].needs)))
			return false;
	return true;
}

/* The kernel may hand the guest only what the guest said it can take. */
static unsigned net_guest_offloads(const struct vdev *d)
{
	unsigned off = 0;

	if (vdev_has(d, VIRTIO_NET_F_GUEST_CSUM))
		off |= TUN_F_CSUM;
	if (vdev_has(d, VIRTIO_NET_F_GUEST_TSO4))
		off |= TUN_F_TSO4;
	if (vdev_has(d, VIRTIO_NET_F_GUEST_TSO6))
		off |= TUN_F_TSO6;
	if (vdev_has(d, VIRTIO_NET_F_GUEST_UFO))
		off |= TUN_F_UFO;
	return off;
}

static int net_activate(struct vdev *d)
{
	struct net_dev *n = net_of(d);
	unsigned pairs = 1;

	net_tap_set_offloads(n, net_guest_offloads(d));
	/* Taken over: the pairs and filter the guest had set (only once: a reset clears them). */
	if (n->restore) {
		n->restore = false;
		pairs = net_rec_restore(n);
		net_filter_apply(n);
	}
	net_pairs_set(n, pairs);
	net_rec_save(n);
	return 0;
}

/*
 * After a restart: a TX chain the previous instance held may have reached the tap already
 * (net.tx.sent: written, not yet returned), and nothing tells which, so every TX chain in
 * flight is returned unsent (length 0), never written twice; a frame popped and not yet
 * written is lost, as on a wire. RX chains are used again (a frame being received when the
 * process stopped is lost), and control commands are done again (they are idempotent).
 */
static bool net_replay(const struct vdev *d, unsigned q)
{
	const struct net_dev *n = container_of(d, struct net_dev, vdev);

	return q >= 2u * n->max_pairs || q % 2 == 0;
}

/* NEEDS_RESET (or a reset follows): frames on the tap wait there, nothing polls for them. */
static void net_stop(struct vdev *d)
{
	struct net_dev *n = net_of(d);

	ev_idle_stop(net_loop(n), &n->more);
	n->more_tx = 0;
	for (unsigned i = 0; i < n->max_pairs; i++)
		net_pair_pause(&n->pair[i]);
}

static void net_reset(struct vdev *d)
{
	struct net_dev *n = net_of(d);

	for (unsigned i = 0; i < n->max_pairs; i++)
		net_pair_stop(&n->pair[i]);
	ev_idle_stop(net_loop(n), &n->more);
	n->more_tx = 0;
	for (unsigned i = 1; i < n->max_pairs; i++)
		net_tap_queue(&n->pair[i], false);
	n->active_pairs = 1;
	/* The defaults a new driver expects: accept everything, offloads off. */
	n->promisc = true;
	n->allmulti = false;
	n->n_uc = n->n_mc = 0;
	n->table_overflow = false;
	net_filter_apply(n);
	net_tap_set_offloads(n, 0);
	net_rec_save(n);
}

static uint64_t net_features(const struct net_dev *n)
{
	uint64_t f = VIRTIO_BIT(VIRTIO_NET_F_MAC) | VIRTIO_BIT(VIRTIO_NET_F_STATUS) |
		     VIRTIO_BIT(VIRTIO_NET_F_MTU) | VIRTIO_BIT(VIRTIO_NET_F_MRG_RXBUF) |
		     VIRTIO_BIT(VIRTIO_NET_F_CTRL_VQ) | VIRTIO_BIT(VIRTIO_NET_F_CTRL_RX) |
		     VIRTIO_BIT(VIRTIO_NET_F_CSUM) | VIRTIO_BIT(VIRTIO_NET_F_HOST_TSO4) |
		     VIRTIO_BIT(VIRTIO_NET_F_HOST_TSO6);
	unsigned k = n->kernel_offloads;

	if (k & TUN_F_CSUM)
		f |= VIRTIO_BIT(VIRTIO_NET_F_GUEST_CSUM);
	if (k & TUN_F_TSO4)
		f |= VIRTIO_BIT(VIRTIO_NET_F_GUEST_TSO4);
	if (k & TUN_F_TSO6)
		f |= VIRTIO_BIT(VIRTIO_NET_F_GUEST_TSO6);
	/* A kernel that produces UFO also takes it (virtio_net_hdr_to_skb knows GSO_UDP). */
	if (k & TUN_F_UFO)
		f |= VIRTIO_BIT(VIRTIO_NET_F_GUEST_UFO) | VIRTIO_BIT(VIRTIO_NET_F_HOST_UFO);
	if (n->max_pairs > 1)
		f |= VIRTIO_BIT(VIRTIO_NET_F_MQ);
	return f;
}

/* 00:16:3e (Xen's OUI) and 23 bits of a hash of guest and device name: stable across boots. */
static void net_mac_derive(uint8_t mac[6], const char *guest, const char *dev)
{
	uint32_t h = 2166136261u;   /* FNV-1a */
	const char *parts[] = { guest ? guest : "", "/", dev ? dev : "" };

	for (unsigned i = 0; i < 3; i++)
		for (const char *s = parts[i]; *s; s++)
			h = (h ^ (uint8_t)*s) * 16777619u;
	mac[0] = 0x00;
	mac[1] = 0x16;
	mac[2] = 0x3e;
	mac[3] = (uint8_t)((h >> 16) & 0x7f);   /* libxl keeps the top bit clear too */
	mac[4] = (uint8_t)(h >> 8);
	mac[5] = (uint8_t)h;
}

static void net_free(struct net_dev *n)
{
	struct ev_loop *loop = net_loop(n);

	ev_idle_stop(loop, &n->more);
	if (n->nl_fd >= 0) {
		ev_io_stop(loop, &n->nl_w);
		close(n->nl_fd);
	}
	for (unsigned i = 0; i < n->max_pairs; i++) {
		struct net_pair *p = &n->pair[i];

		if (p->rx_hold)
			net_pair_stop(p);
		if (p->fd >= 0)
			close(p->fd);
		free(p->rx_hold);
		free(p->rx_written);
		free(p->bounce);
		free(p->rx_iov);
		free(p->tx_iov);
	}
	vdev_fini(&n->vdev);
	free(n);
}

static void net_destroy(struct vdev *d)
{
	net_free(net_of(d));
}

static int net_pair_init(struct net_dev *n, unsigned i)
{
	struct net_pair *p = &n->pair[i];

	p->n = n;
	p->idx = i;
	p->rx_hold = calloc(VQ_MAX_SIZE, sizeof(struct vq_elem *));
	p->rx_written = calloc(VQ_MAX_SIZE, sizeof(*p->rx_written));
	p->bounce = malloc(NET_BOUNCE);
	p->rx_iov = calloc(NET_IOV_MAX, sizeof(*p->rx_iov));
	p->tx_iov = calloc(NET_IOV_MAX, sizeof(*p->tx_iov));
	if (!p->rx_hold || !p->rx_written || !p->bounce || !p->rx_iov || !p->tx_iov)
		return -ENOMEM;
	return 0;
}

static void net_pair_watchers(struct net_pair *p)
{
	ev_io_init(&p->rx_w, net_rx_cb, p->fd, EV_READ);
	ev_io_init(&p->tx_w, net_tx_cb, p->fd, EV_WRITE);
}

static int net_check_config(const struct config_device *cfg, unsigned *pairs, unsigned *qsize)
{
	const struct config_net *c = &cfg->u.net;

	*pairs = c->queues ? c->queues : 1;
	*qsize = c->queue_size ? c->queue_size : NET_DEF_QUEUE_SIZE;
	if (*pairs > NET_MAX_PAIRS || *qsize < 2 || *qsize > VQ_MAX_SIZE ||
	    (*qsize & (*qsize - 1))) {
		log_err("net \"%s\": queues = %u / queue_size = %u out of range", cfg->name, *pairs,
			*qsize);
		return -EINVAL;
	}
	if (c->mtu && c->mtu < 68) {
		log_err("net \"%s\": mtu = %u below 68", cfg->name, c->mtu);
		return -EINVAL;
	}
	return 0;
}

static int net_setup(struct net_dev *n, const struct config_device *cfg)
{
	const struct config_net *c = &cfg->u.net;
	int rc = 0;

	for (unsigned i = 0; i < n->max_pairs && rc == 0; i++)
		rc = net_pair_init(n, i);
	if (rc < 0)
		return rc;
	if (c->tap[0])
		snprintf(n->ifname, sizeof(n->ifname), "%s", c->tap);
	n->taken = n->vdev.adopted && net_tap_take(n, c->tap[0] != 0);
	if (!c->tap[0] && !n->taken && (rc = net_tap_default_name(n, cfg)) < 0) {
		log_err("%s: no free default tap name: %s", n->vdev.name, strerror(-rc));
		return rc;
	}
	rc = net_tap_open(n, c);
	if (rc == 0)
		net_tap_keep(n);
	if (rc == 0)
		rc = net_link_open(n);
	if (rc < 0)
		return rc;
	for (unsigned i = 0; i < n->max_pairs; i++)
		net_pair_watchers(&n->pair[i]);
	/*
	 * Taken over, the queues stay as the previous instance left them until the activation
	 * sets the guest's pairs: detaching one drops the frames the kernel queued on it.
	 */
	for (unsigned i = 1; i < n->max_pairs && !n->taken; i++)
		net_tap_queue(&n->pair[i], false);
	return 0;
}

static int net_create(struct vdev_host *host, const struct config_device *cfg, struct vdev **out)
{
	const struct config_net *c = &cfg->u.net;
	char name[sizeof(((struct vdev *)0)->name)];
	unsigned pairs, qsize;
	int rc = net_check_config(cfg, &pairs, &qsize);

	if (rc < 0)
		return rc;
	if (!host->loop) {
		log_err("net \"%s\": needs an event loop", cfg->name);
		return -EINVAL;
	}
	struct net_dev *n = calloc(1, sizeof(*n));

	if (!n)
		return -ENOMEM;
	n->nl_fd = -1;
	for (unsigned i = 0; i < NET_MAX_PAIRS; i++)
		n->pair[i].fd = -1;
	snprintf(name, sizeof(name), "net %s", cfg->name[0] ? cfg->name : "-");
	rc = vdev_init(&n->vdev, &vdev_net_ops, host, name, (uint16_t)(2 * pairs + 1),
		       (uint16_t)qsize);
	if (rc < 0) {
		free(n);
		return rc;
	}
	n->max_pairs = n->active_pairs = (uint16_t)pairs;
	n->mtu = c->mtu ? c->mtu : NET_DEF_MTU;
	n->promisc = true;
	if (c->mac_set)
		memcpy(n->mac, c->mac, 6);
	else
		net_mac_derive(n->mac, host->guest_name, cfg->name);
	ev_idle_init(&n->more, net_more_cb);
	n->rec = vdev_persist(&n->vdev, "filters", sizeof(*n->rec), &n->restore);
	n->restore = n->restore && n->vdev.adopted;
	rc = net_setup(n, cfg);
	if (rc < 0) {
		net_free(n);
		return rc;
	}
	n->active_pairs = 1;
	n->vdev.host_features = net_features(n);
	n->vdev.config_size = VIRTIO_NET_CFG_SIZE;
	log_info("%s: tap %s%s, mac %02x:%02x:%02x:%02x:%02x:%02x, mtu %u, %u queue pair(s) of %u, "
		 "guest offloads 0x%x", name, n->ifname,
		 n->taken ? " (the previous instance's)" : n->created ? " (created)" : "", n->mac[0],
		 n->mac[1], n->mac[2], n->mac[3], n->mac[4], n->mac[5], n->mtu, pairs, qsize,
		 n->kernel_offloads);
	*out = &n->vdev;
	return 0;
}

bool net_get_stats(const struct vdev *d, struct net_stats *out)
{
	if (!d || d->ops != &vdev_net_ops)
		return false;
	const struct net_dev *n = container_of(d, struct net_dev, vdev);

	*out = n->st;
	out->active_pairs = n->active_pairs;
	out->promisc = n->promisc;
	out->allmulti = n->allmulti;
	out->link_up = n->link_up;
	out->admin_down = n->admin_down;
	out->offloads = n->offloads;
	snprintf(out->ifname, sizeof(out->ifname), "%s", n->ifname);
	return true;
}

int net_set_admin_link(struct vdev *d, bool up)
{
	struct net_dev *n;

	if (!d || d->ops != &vdev_net_ops)
		return -EINVAL;
	n = container_of(d, struct net_dev, vdev);
	if (n->admin_down == !up)
		return 0;
	n->admin_down = !up;
	log_notice("%s: link set administratively %s", d->name, up ? "up" : "down");
	net_link_update(n);
	return 0;
}

const struct vdev_ops vdev_net_ops = {
	.type = "net",
	.device_id = VIRTIO_ID_NET,
	.create = net_create,
	.config_read = net_config_read,
	.config_write = net_config_write,
	.features_ok = net_features_ok,
	.activate = net_activate,
	.stop = net_stop,
	.reset = net_reset,
	.queue_notify = net_queue_notify,
	.replay = net_replay,
	.destroy = net_destroy,
};
