/*
 * virtio-console (device id 3): the protocol constants the device and its tests share, and the
 * counters tests read. The device itself is vdev_console_ops (devices/console.c).
 */
#ifndef XVD_CONSOLE_H
#define XVD_CONSOLE_H

#include <stdint.h>

#include "devices/device.h"

#define VIRTIO_ID_CONSOLE 3u

/* Feature bits (virtio 1.2 §5.3.3). */
#define VIRTIO_CONSOLE_F_SIZE        0
#define VIRTIO_CONSOLE_F_MULTIPORT   1
#define VIRTIO_CONSOLE_F_EMERG_WRITE 2

/* Config space: le16 cols, le16 rows, le32 max_nr_ports, le32 emerg_wr (§5.3.4). */
#define CONSOLE_CFG_COLS      0u
#define CONSOLE_CFG_ROWS      2u
#define CONSOLE_CFG_MAX_PORTS 4u
#define CONSOLE_CFG_EMERG_WR  8u
#define CONSOLE_CFG_SIZE      12u

/* Control message events (§5.3.6.2); a message is le32 id, le16 event, le16 value. */
#define VIRTIO_CONSOLE_DEVICE_READY 0
#define VIRTIO_CONSOLE_PORT_ADD     1
#define VIRTIO_CONSOLE_PORT_REMOVE  2
#define VIRTIO_CONSOLE_PORT_READY   3
#define VIRTIO_CONSOLE_CONSOLE_PORT 4
#define VIRTIO_CONSOLE_RESIZE       5
#define VIRTIO_CONSOLE_PORT_OPEN    6
#define VIRTIO_CONSOLE_PORT_NAME    7
#define CONSOLE_CTRL_HDR            8u

/* Queue numbers: port 0 uses 0/1, control 2/3, port p > 0 uses 2p+2 / 2p+3. */
#define CONSOLE_Q_CTRL_RX 2u
#define CONSOLE_Q_CTRL_TX 3u
static inline unsigned console_rxq(unsigned port)
{
	return port ? 2 * port + 2 : 0;
}

/* Per-port counters. */
struct console_stats {
	uint64_t to_guest;        /* bytes delivered into receive buffers */
	uint64_t from_guest;      /* bytes taken from transmit buffers (and emergency writes) */
	uint64_t dropped;         /* guest output lost: the ring was full (oldest bytes first) */
	uint64_t attaches;        /* socket clients accepted so far */
	uint64_t emerg;           /* bytes through the emergency write register (port 0) */
	uint64_t cut;             /* transmit chain bytes beyond the first 64 KiB, not taken */
};

/* Device-wide counters of hostile or unusable control traffic. */
struct console_ctrl_stats {
	uint64_t bad;             /* malformed messages ignored: short, unknown event, bad id */
	uint64_t dropped;         /* device->guest messages lost because the queue overflowed */
};

/* Counters of port `port` (0 = the console); -EINVAL when d is no console or port is absent. */
int console_get_stats(const struct vdev *d, unsigned port, struct console_stats *st);
int console_get_ctrl_stats(const struct vdev *d, struct console_ctrl_stats *st);

/*
 * The control tool's attach (xen-virtiodctl console): fd, one end of a connected non-blocking
 * stream socket, becomes the interactive client of `port` (NULL or "": the console, port 0;
 * else a named port), exactly like a client accepted on the port's socket: it gets the output
 * kept while nobody listened, its input goes to the guest, it leaves by closing. A port without
 * a socket backend gets one without a listener. The device owns fd on success. -EINVAL (no
 * console), -ENOENT (no such port), -EBUSY (a client is attached), -ENOMEM.
 */
int console_attach(struct vdev *d, const char *port, int fd);
/* The name of port `port` ("" for port 0), or NULL when it does not exist. */
const char *console_port_name(const struct vdev *d, unsigned port);

#endif
