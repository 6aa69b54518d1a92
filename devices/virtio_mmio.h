/* virtio-mmio version 2 transport (virtio 1.2 §4.2.2): register decode and the status machine. */
#ifndef XVD_VIRTIO_MMIO_H
#define XVD_VIRTIO_MMIO_H

#include <stdbool.h>
#include <stdint.h>

#include "devices/device.h"
#include "lib/platform.h"

#define VIRTIO_MMIO_WINDOW PLATFORM_MMIO_WINDOW   /* bytes per device window */
#define VIRTIO_MMIO_CONFIG 0x100u                  /* device config space offset */

/*
 * The transport's registers of one device (struct vdev.mmio): what the driver wrote and what
 * the transport answers. Owned by virtio_mmio.c; device modules never read it.
 */
struct vmmio_state {
	uint64_t offered;             /* host_features plus the transport's bits */
	uint64_t driver_features;     /* what the driver wrote */
	uint32_t status;
	uint32_t isr;
	uint32_t config_generation;
	uint32_t dev_features_sel, drv_features_sel, queue_sel;
	bool resetting;               /* a driver's reset waits for the device (VMMIO_LATER) */
	struct vq_regs {
		uint16_t num;
		uint64_t desc, avail, used;
	} qregs[];                    /* per queue: values written before QueueReady */
};

/*
 * One guest access at `off` bytes into the device's window. size is 1, 2, 4 or 8 (the ioreq
 * layer has validated that much); registers below 0x100 accept 4-byte accesses only, config
 * space 1/2/4/8 within config_size. Invalid reads return all-ones, invalid writes are ignored;
 * both are logged rate-limited. Never fails the daemon.
 */
uint64_t vmmio_read(struct vdev *d, uint32_t off, unsigned size);
/*
 * 0 when the write is done; VMMIO_LATER when it is a reset that waits for the device's
 * backend: the caller holds the guest's access until host->access_done() says it is done.
 */
#define VMMIO_LATER 1
int vmmio_write(struct vdev *d, uint32_t off, unsigned size, uint64_t val);

/*
 * QueueNotify for queue q, whether the guest's write came as an ioreq or through an ioeventfd:
 * kicks of queues that do not exist, are not ready or broken, or before DRIVER_OK are ignored.
 */
void vmmio_queue_notify(struct vdev *d, uint32_t q);

/*
 * Full device reset as if the driver wrote 0 to Status, done when it returns (teardown; it
 * completes a driver's reset still waiting, and answers that access).
 */
void vmmio_reset(struct vdev *d);

/* SIGUSR1: one line with the registers, one per queue. */
void vmmio_dump(const struct vdev *d);

#endif
