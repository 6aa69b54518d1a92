/*
 * A test rig for one device without Xen: guest RAM in a gmem_flat, the device created through
 * the registry, and a struct vdrv_io that calls vmmio_read/vmmio_write directly. Interrupts are
 * counted; wait_irq consumes them, running the event loop when the test gave one.
 */
#ifndef XVD_TEST_VDRIVER_DIRECT_H
#define XVD_TEST_VDRIVER_DIRECT_H

#include <stdint.h>

#include "config/config.h"
#include "devices/device.h"
#include "tests/lib/vdriver.h"

struct vdrv_direct {
	struct vdrv_io io;
	struct vdev_host host;
	struct vdrv_mem mem;     /* the driver's view of all of guest RAM */
	struct gmem *gm;         /* gmem_flat backing [ram_gpa, ram_gpa + ram_size) */
	struct vdev *dev;
	unsigned irqs;           /* raise_irq calls so far */
	unsigned held;           /* writes the transport answered VMMIO_LATER (a vCPU held) */
	unsigned released;       /* access_done calls: held writes completed */
	unsigned irqs_seen;      /* those wait_irq has reported */
};

/*
 * Create guest RAM and the device cfg describes (cfg->type picks the module). loop may be NULL.
 * Returns 0 or a negative errno; on failure nothing is left allocated.
 */
int vdrv_direct_open(struct vdrv_direct *x, const struct config_device *cfg, uint64_t ram_gpa,
		     uint64_t ram_size, struct ev_loop *loop);
/* Guest RAM, host and io only: the test creates a device on &x->host and sets x->dev. */
int vdrv_direct_open_ram(struct vdrv_direct *x, uint64_t ram_gpa, uint64_t ram_size,
			 struct ev_loop *loop);
/* Destroy the device (when set), then the guest RAM. */
void vdrv_direct_close(struct vdrv_direct *x);

/* Interrupts raised and not yet consumed by wait_irq (and consume them). */
unsigned vdrv_direct_take_irqs(struct vdrv_direct *x);

#endif
