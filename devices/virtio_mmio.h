/* virtio-mmio version 2 transport (virtio 1.2 §4.2.2): register decode and the status machine. */
#ifndef XVD_VIRTIO_MMIO_H
#define XVD_VIRTIO_MMIO_H

#include <stdbool.h>
#include <stdint.h>

#include "devices/device.h"

#define VIRTIO_MMIO_WINDOW 0x200u   /* bytes per device window (libxl's spacing) */
#define VIRTIO_MMIO_CONFIG 0x100u   /* device config space offset */

/*
 * One guest access at `off` bytes into the device's window. size is 1, 2, 4 or 8 (the ioreq
 * layer has validated that much); registers below 0x100 accept 4-byte accesses only, config
 * space 1/2/4/8 within config_size. Invalid reads return all-ones, invalid writes are ignored;
 * both are logged rate-limited. Never fails the daemon.
 */
uint64_t vmmio_read(struct vdev *d, uint32_t off, unsigned size);
void vmmio_write(struct vdev *d, uint32_t off, unsigned size, uint64_t val);

/*
 * QueueNotify for queue q, whether the guest's write came as an ioreq or through an ioeventfd:
 * kicks of queues that do not exist, are not ready or broken, or before DRIVER_OK are ignored.
 */
void vmmio_queue_notify(struct vdev *d, uint32_t q);

/* Full device reset as if the driver wrote 0 to Status (also used on teardown). */
void vmmio_reset(struct vdev *d);

#endif
