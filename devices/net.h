/*
 * virtio-net (device id 1): the protocol constants the device and its tests share, and the
 * counters tests and the benchmark read. The device itself is vdev_net_ops (devices/net.c).
 */
#ifndef XVD_NET_H
#define XVD_NET_H

#include <stdbool.h>
#include <stdint.h>

#include "devices/device.h"

#define VIRTIO_ID_NET 1u

/* Feature bits (virtio 1.2 §5.1.3). */
#define VIRTIO_NET_F_CSUM            0
#define VIRTIO_NET_F_GUEST_CSUM      1
#define VIRTIO_NET_F_MTU             3
#define VIRTIO_NET_F_MAC             5
#define VIRTIO_NET_F_GUEST_TSO4      7
#define VIRTIO_NET_F_GUEST_TSO6      8
#define VIRTIO_NET_F_GUEST_ECN       9
#define VIRTIO_NET_F_GUEST_UFO       10
#define VIRTIO_NET_F_HOST_TSO4       11
#define VIRTIO_NET_F_HOST_TSO6       12
#define VIRTIO_NET_F_HOST_ECN        13
#define VIRTIO_NET_F_HOST_UFO        14
#define VIRTIO_NET_F_MRG_RXBUF       15
#define VIRTIO_NET_F_STATUS          16
#define VIRTIO_NET_F_CTRL_VQ         17
#define VIRTIO_NET_F_CTRL_RX         18
#define VIRTIO_NET_F_CTRL_VLAN       19
#define VIRTIO_NET_F_GUEST_ANNOUNCE  21
#define VIRTIO_NET_F_MQ              22
#define VIRTIO_NET_F_CTRL_MAC_ADDR   23

/* Config space (struct virtio_net_config), little-endian. */
#define VIRTIO_NET_CFG_MAC           0
#define VIRTIO_NET_CFG_STATUS        6
#define VIRTIO_NET_CFG_MAX_PAIRS     8
#define VIRTIO_NET_CFG_MTU           10
#define VIRTIO_NET_CFG_SIZE          12
#define VIRTIO_NET_S_LINK_UP         1u

/* struct virtio_net_hdr_mrg_rxbuf: with VERSION_1 every frame carries all 12 bytes. */
struct virtio_net_hdr {
	uint8_t flags;
	uint8_t gso_type;
	uint16_t hdr_len;
	uint16_t gso_size;
	uint16_t csum_start;
	uint16_t csum_offset;
	uint16_t num_buffers;
};
#define VIRTIO_NET_HDR_LEN           12u

#define VIRTIO_NET_HDR_F_NEEDS_CSUM  1u
#define VIRTIO_NET_HDR_F_DATA_VALID  2u
#define VIRTIO_NET_HDR_F_RSC_INFO    4u

#define VIRTIO_NET_HDR_GSO_NONE      0u
#define VIRTIO_NET_HDR_GSO_TCPV4     1u
#define VIRTIO_NET_HDR_GSO_UDP       3u
#define VIRTIO_NET_HDR_GSO_TCPV6     4u
#define VIRTIO_NET_HDR_GSO_ECN       0x80u

/* Control queue: class, command, data..., then one writable ack byte. */
#define VIRTIO_NET_OK                0u
#define VIRTIO_NET_ERR               1u
#define VIRTIO_NET_CTRL_RX           0u
#define VIRTIO_NET_CTRL_RX_PROMISC   0u
#define VIRTIO_NET_CTRL_RX_ALLMULTI  1u
#define VIRTIO_NET_CTRL_MAC          1u
#define VIRTIO_NET_CTRL_MAC_TABLE_SET 0u
#define VIRTIO_NET_CTRL_MQ           4u
#define VIRTIO_NET_CTRL_MQ_VQ_PAIRS_SET 0u

#define NET_MAX_PAIRS                8u

/* What the device did, for tests and the benchmark. */
struct net_stats {
	uint64_t rx_frames, rx_bytes;      /* frames delivered to the guest (bytes without header) */
	uint64_t tx_frames, tx_bytes;      /* frames written to the tap */
	uint64_t rx_buffers;               /* RX chains used (> rx_frames with MRG_RXBUF) */
	uint64_t rx_starved;               /* times the guest had no RX buffer: reading paused */
	uint64_t rx_dropped;               /* frames read but not deliverable (too big, truncated) */
	uint64_t rx_bad_chains;            /* RX chains too small for a header, returned empty */
	uint64_t tx_malformed;             /* guest frames dropped by our checks */
	uint64_t tx_errors;                /* frames the tap refused */
	uint64_t tx_eagain;                /* times the tap was full: TX waited for POLLOUT */
	uint64_t link_changes;             /* STATUS changes signalled to the guest */
	uint64_t ctrl_cmds, ctrl_errors;   /* control commands handled / answered VIRTIO_NET_ERR */
	uint16_t active_pairs;
	bool promisc, allmulti;            /* as the guest last set them */
	bool link_up;                      /* as the guest sees it (STATUS) */
	bool admin_down;                   /* forced down by net_set_admin_link() */
	unsigned offloads;                 /* TUN_F_* in force on the tap */
	char ifname[16];                   /* the tap */
};

extern const struct vdev_ops vdev_net_ops;

/* Counters of a device created by vdev_net_ops (false for any other device). */
bool net_get_stats(const struct vdev *d, struct net_stats *out);

/*
 * The control tool's link switch (xen-virtiodctl net GUEST DEV link up|down): while down, the
 * guest sees the link down (STATUS, config interrupt) whatever the tap's state; up again shows
 * the tap's own state. The tap itself is not touched (that needs CAP_NET_ADMIN, dropped once
 * serving). 0, or -EINVAL when d is no net device.
 */
int net_set_admin_link(struct vdev *d, bool up);

#endif
