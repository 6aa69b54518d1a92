/*
 * virtio-blk (device id 2): the protocol constants the device and its tests share, and a few
 * counters the tests and the benchmark read. The device itself is vdev_block_ops (devices/blk.c).
 */
#ifndef XVD_BLK_H
#define XVD_BLK_H

#include <stdint.h>

#include "devices/device.h"

#define VIRTIO_ID_BLOCK 2u

/* Feature bits (virtio 1.2 §5.2.3). */
#define VIRTIO_BLK_F_SIZE_MAX      1
#define VIRTIO_BLK_F_SEG_MAX       2
#define VIRTIO_BLK_F_GEOMETRY      4
#define VIRTIO_BLK_F_RO            5
#define VIRTIO_BLK_F_BLK_SIZE      6
#define VIRTIO_BLK_F_FLUSH         9
#define VIRTIO_BLK_F_TOPOLOGY      10
#define VIRTIO_BLK_F_CONFIG_WCE    11
#define VIRTIO_BLK_F_MQ            12
#define VIRTIO_BLK_F_DISCARD       13
#define VIRTIO_BLK_F_WRITE_ZEROES  14

/* Request types and status values (virtio 1.2 §5.2.6). */
#define VIRTIO_BLK_T_IN            0u
#define VIRTIO_BLK_T_OUT           1u
#define VIRTIO_BLK_T_FLUSH         4u
#define VIRTIO_BLK_T_GET_ID        8u
#define VIRTIO_BLK_T_DISCARD       11u
#define VIRTIO_BLK_T_WRITE_ZEROES  13u

#define VIRTIO_BLK_S_OK            0u
#define VIRTIO_BLK_S_IOERR         1u
#define VIRTIO_BLK_S_UNSUPP        2u

#define VIRTIO_BLK_ID_BYTES        20u
#define VIRTIO_BLK_SECTOR          512u
#define VIRTIO_BLK_DWZ_F_UNMAP     1u

/* Little-endian in guest memory. */
struct virtio_blk_outhdr {
	uint32_t type;
	uint32_t ioprio;
	uint64_t sector;
};

struct virtio_blk_dwz_seg {
	uint64_t sector;
	uint32_t num_sectors;
	uint32_t flags;
};

/* Config space offsets (struct virtio_blk_config). */
#define VIRTIO_BLK_CFG_CAPACITY        0
#define VIRTIO_BLK_CFG_SIZE_MAX        8
#define VIRTIO_BLK_CFG_SEG_MAX         12
#define VIRTIO_BLK_CFG_BLK_SIZE        20
#define VIRTIO_BLK_CFG_PHYS_EXP        24
#define VIRTIO_BLK_CFG_ALIGN_OFF       25
#define VIRTIO_BLK_CFG_MIN_IO          26
#define VIRTIO_BLK_CFG_OPT_IO          28
#define VIRTIO_BLK_CFG_WRITEBACK       32
#define VIRTIO_BLK_CFG_NUM_QUEUES      34
#define VIRTIO_BLK_CFG_MAX_DISCARD     36
#define VIRTIO_BLK_CFG_MAX_DISCARD_SEG 40
#define VIRTIO_BLK_CFG_DISCARD_ALIGN   44
#define VIRTIO_BLK_CFG_MAX_WZ          48
#define VIRTIO_BLK_CFG_MAX_WZ_SEG      52
#define VIRTIO_BLK_CFG_WZ_MAY_UNMAP    56
#define VIRTIO_BLK_CFG_SIZE            60   /* we stop before the secure-erase fields */

/* What the device did, for tests (batching) and the benchmark. */
struct blk_stats {
	uint64_t requests;       /* chains popped */
	uint64_t submits;        /* io_uring_submit() calls (NBD: requests handed to the engine) */
	uint64_t reaps;          /* completion batches (eventfd wakeups with work) */
	uint64_t bounces;        /* O_DIRECT requests served through a bounce buffer */
	uint64_t pool_bounces;   /* ... of which through the registered pool (READ/WRITE_FIXED) */
	uint64_t errors;         /* requests completed with IOERR */
	uint64_t drains;         /* FLUSHes that waited for writes in flight (IOSQE_IO_DRAIN) */
	uint64_t inline_done;    /* reads / writes done at once with RWF_NOWAIT, no io_uring */
	uint64_t inline_punted;  /* tried so, would have blocked (or came up short): io_uring */
	uint8_t nowait_off;      /* BLK_NOWAIT_*: the backend refused RWF_NOWAIT (EOPNOTSUPP) */
	uint32_t inflight;       /* requests the kernel still holds */
};

#define BLK_NOWAIT_READ  1u
#define BLK_NOWAIT_WRITE 2u

extern const struct vdev_ops vdev_block_ops;

/* Counters of a device created by vdev_block_ops (NULL for any other device). */
const struct blk_stats *blk_get_stats(const struct vdev *d);

/*
 * The control tool's resize (xen-virtiodctl block GUEST DEV resize), what SIGHUP does for the
 * size alone: read the backend's size again and, when it changed, tell the guest with a config
 * interrupt. 0 with both sizes in 512-byte sectors, or -EINVAL (not a block device) / -errno.
 */
int blk_resize(struct vdev *d, uint64_t *old_sectors, uint64_t *new_sectors);

#endif
