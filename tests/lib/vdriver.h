/*
 * A small virtio driver for tests and benchmarks: the guest's side of a virtio-mmio device.
 * It reaches the device through a struct vdrv_io (direct calls into the transport in unit tests,
 * the vCPU ioreq slot under xensim) and guest RAM through a struct vdrv_mem. Its rings are plain
 * public structs so hostile tests can corrupt any field.
 */
#ifndef XVD_TEST_VDRIVER_H
#define XVD_TEST_VDRIVER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "devices/virtio_ring.h"

struct vdrv_io {
	/* Register access at byte offset `off` of the device window. */
	uint64_t (*read)(struct vdrv_io *io, uint32_t off, unsigned size);
	void (*write)(struct vdrv_io *io, uint32_t off, unsigned size, uint64_t val);
	/* Wait up to timeout_ms for the device interrupt; 1 when one arrived, 0 on timeout. */
	int (*wait_irq)(struct vdrv_io *io, int timeout_ms);
	void *opaque;
};

/* Guest RAM as the driver allocates it: one contiguous region, bump allocation. */
struct vdrv_mem {
	uint8_t *host;         /* host view of guest physical address `gpa` */
	uint64_t gpa;
	uint64_t size;
	uint64_t next;         /* allocation cursor (offset) */
	/*
	 * Optional: the address the device is given for [gpa, gpa+len), e.g. a grant address
	 * (bit 63) after granting the pages. Identity when NULL.
	 */
	uint64_t (*dma_addr)(struct vdrv_mem *m, uint64_t gpa, uint64_t len, bool device_writes);
	void *opaque;
};

/* Allocate len bytes aligned to align from m; returns the gpa (0 when full), *host if non-NULL. */
uint64_t vdrv_alloc(struct vdrv_mem *m, uint64_t len, uint64_t align, void **host);
void *vdrv_host(struct vdrv_mem *m, uint64_t gpa);

struct vdrv_vq {
	uint16_t num;
	uint64_t desc_gpa, avail_gpa, used_gpa;
	struct vring_desc *desc;
	struct vring_avail *avail;
	struct vring_used *used;
	uint16_t free_head, num_free;
	uint16_t last_used;
	uint16_t avail_idx;              /* driver's shadow of avail->idx */
	void **tokens;                   /* per head */
	uint64_t *indirect_gpa;          /* per head: indirect table in use, 0 if none */
	bool ready;
};

#define VDRV_MAX_QUEUES 64

struct vdrv {
	struct vdrv_io *io;
	struct vdrv_mem *mem;
	uint32_t device_id;
	uint64_t device_features;
	uint64_t features;               /* negotiated */
	unsigned nqueues;
	struct vdrv_vq vq[VDRV_MAX_QUEUES];
};

/* A buffer of a chain: guest physical address, length, direction. */
struct vdrv_buf {
	uint64_t gpa;
	uint32_t len;
	bool write;                      /* device writes it (VRING_DESC_F_WRITE) */
};

/*
 * Full initialisation (virtio 1.2 §3.1.1): reset, ACKNOWLEDGE, DRIVER, read device features,
 * write want & offered, FEATURES_OK and check it stuck, set up nqueues queues of qsize (clamped
 * to QueueNumMax), DRIVER_OK. Returns 0, or a negative errno naming the step that failed.
 */
int vdrv_init(struct vdrv *drv, struct vdrv_io *io, struct vdrv_mem *mem, uint64_t want,
	      unsigned nqueues, uint16_t qsize);
/* Write 0 to Status and wait for it to read back 0. */
void vdrv_reset(struct vdrv *drv);

uint32_t vdrv_read32(struct vdrv *drv, uint32_t off);
void vdrv_write32(struct vdrv *drv, uint32_t off, uint32_t val);
uint32_t vdrv_status(struct vdrv *drv);
/* Read config space [off, off+len) with the generation-retry loop. */
void vdrv_config_read(struct vdrv *drv, uint32_t off, void *buf, uint32_t len);
/* A little-endian 16-bit config field. */
uint16_t vdrv_config16(struct vdrv *drv, uint32_t off);
/* Wait up to ms for an interrupt; returns the InterruptStatus bits it acknowledged (0: none). */
uint32_t vdrv_wait_isr(struct vdrv *drv, int ms);
/*
 * Wait up to timeout_ms for the 16-bit config field at off to read want, acknowledging
 * interrupts on the way (their bits ORed into *isr_seen when not NULL); returns the last value.
 */
uint16_t vdrv_wait_config16(struct vdrv *drv, uint32_t off, uint16_t want, int timeout_ms,
			    uint32_t *isr_seen);

/*
 * Queue a chain (readable buffers must come first). indirect: put it in an indirect table.
 * Returns the head index, or -1 when the ring has no room. Does not kick.
 */
int vdrv_submit(struct vdrv *drv, unsigned q, const struct vdrv_buf *bufs, unsigned n,
		bool indirect, void *token);
void vdrv_kick(struct vdrv *drv, unsigned q);
/*
 * Kick queue q only if the device asked for it since the driver's avail index was old, as
 * Linux's virtqueue_kick_prepare() decides: EVENT_IDX's avail_event, else the used ring's
 * NO_NOTIFY flag. Returns whether it kicked.
 */
bool vdrv_kick_if_asked(struct vdrv *drv, unsigned q, uint16_t old);
/* Next used element: returns 1 and fills *len / *token, 0 when none. */
int vdrv_get_used(struct vdrv *drv, unsigned q, uint32_t *len, void **token);
/*
 * Take n used elements of queue q (tokens dropped), sleeping on the interrupt between looks, for
 * at most timeout_ms: how many were taken (fewer than n: timed out), -1 on a broken used ring.
 */
int vdrv_wait_used(struct vdrv *drv, unsigned q, unsigned n, int timeout_ms);
/*
 * Submit, kick, and wait (interrupts, then polling) until that chain is used or timeout_ms
 * passes. Returns the used length, or -1 on timeout.
 */
int64_t vdrv_transfer(struct vdrv *drv, unsigned q, const struct vdrv_buf *bufs, unsigned n,
		      bool indirect, int timeout_ms);
/* Set used_event (EVENT_IDX) or clear NO_INTERRUPT so the next used buffer interrupts. */
void vdrv_enable_irq(struct vdrv *drv, unsigned q);

#endif
