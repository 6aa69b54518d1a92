/*
 * virtio-vsock (device id 19, virtio 1.2 §5.10): the packet format both sides share, and the
 * counters the device keeps. The device itself is devices/vsock.c.
 */
#ifndef XVD_VSOCK_H
#define XVD_VSOCK_H

#include <stdint.h>

struct vdev;

#define VIRTIO_ID_VSOCK        19
#define VSOCK_Q_RX             0
#define VSOCK_Q_TX             1
#define VSOCK_Q_EVENT          2
#define VSOCK_F_STREAM         0      /* virtio 1.2: stream sockets (implied when none offered) */
#define VSOCK_CID_HOST         2
#define VSOCK_HDR_LEN          44     /* struct virtio_vsock_hdr, packed, little-endian */
#define VSOCK_CFG_SIZE         8      /* le64 guest_cid */
#define VSOCK_TYPE_STREAM      1
#define VSOCK_SHUT_RCV         1u
#define VSOCK_SHUT_SEND        2u
#define VSOCK_EVENT_TRANSPORT_RESET 0u
/* Host ports of connections host programs open: from here up (the guest's side picks its own). */
#define VSOCK_LOCAL_PORT_BASE  0x40000000u

enum vsock_op {
	VSOCK_OP_INVALID, VSOCK_OP_REQUEST, VSOCK_OP_RESPONSE, VSOCK_OP_RST, VSOCK_OP_SHUTDOWN,
	VSOCK_OP_RW, VSOCK_OP_CREDIT_UPDATE, VSOCK_OP_CREDIT_REQUEST,
};

/* The header in host byte order; vsock_hdr_{get,put} convert from and to the wire. */
struct vsock_hdr {
	uint64_t src_cid, dst_cid;
	uint32_t src_port, dst_port;
	uint32_t len;
	uint16_t type, op;
	uint32_t flags, buf_alloc, fwd_cnt;
};

void vsock_hdr_get(struct vsock_hdr *h, const uint8_t wire[VSOCK_HDR_LEN]);
void vsock_hdr_put(uint8_t wire[VSOCK_HDR_LEN], const struct vsock_hdr *h);

struct vsock_stats {
	uint64_t conns;            /* open now, host clients still sending CONNECT included */
	uint64_t opened;           /* connections established, either side first */
	uint64_t rst_sent;         /* RST packets handed to the guest */
	uint64_t rst_dropped;      /* RSTs lost: the guest gave no receive buffers for long */
	uint64_t bad_packets;      /* guest packets dropped or answered with RST for contents */
	uint64_t credit_violations;/* guest sent more than we granted: connection reset */
	uint64_t refused;          /* guest connects with no listener, or beyond max_connections */
	uint64_t to_guest, from_guest;   /* payload bytes */
};

/* -EINVAL when d is not a vsock device. */
int vsock_get_stats(const struct vdev *d, struct vsock_stats *st);

#endif
