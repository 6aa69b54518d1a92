/*
 * virtio-mmio version 2 (virtio 1.2 §4.2.2): the register file, feature negotiation and the
 * status machine. Every range and state check happens here, once, before a device hook runs.
 */
#include "devices/virtio_mmio.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Register offsets. */
#define MMIO_MAGIC            0x000
#define MMIO_VERSION          0x004
#define MMIO_DEVICE_ID        0x008
#define MMIO_VENDOR_ID        0x00c
#define MMIO_DEV_FEATURES     0x010
#define MMIO_DEV_FEATURES_SEL 0x014
#define MMIO_DRV_FEATURES     0x020
#define MMIO_DRV_FEATURES_SEL 0x024
#define MMIO_QUEUE_SEL        0x030
#define MMIO_QUEUE_NUM_MAX    0x034
#define MMIO_QUEUE_NUM        0x038
#define MMIO_QUEUE_READY      0x044
#define MMIO_QUEUE_NOTIFY     0x050
#define MMIO_INT_STATUS       0x060
#define MMIO_INT_ACK          0x064
#define MMIO_STATUS           0x070
#define MMIO_QUEUE_DESC_LO    0x080
#define MMIO_QUEUE_DESC_HI    0x084
#define MMIO_QUEUE_AVAIL_LO   0x090
#define MMIO_QUEUE_AVAIL_HI   0x094
#define MMIO_QUEUE_USED_LO    0x0a0
#define MMIO_QUEUE_USED_HI    0x0a4
#define MMIO_SHM_SEL          0x0ac
#define MMIO_SHM_LEN_LO       0x0b0
#define MMIO_SHM_LEN_HI       0x0b4
#define MMIO_SHM_BASE_LO      0x0b8
#define MMIO_SHM_BASE_HI      0x0bc
#define MMIO_QUEUE_RESET      0x0c0
#define MMIO_CONFIG_GEN       0x0fc

#define MMIO_MAGIC_VALUE 0x74726976u   /* "virt" */
#define MMIO_VENDOR      0x00647678u   /* "xvd" */

#define STATUS_DRIVER_BITS (VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER | \
			    VIRTIO_STATUS_FEATURES_OK | VIRTIO_STATUS_DRIVER_OK | \
			    VIRTIO_STATUS_FAILED)

/* The ring features this transport and devices/virtqueue.c implement for every device. */
#define TRANSPORT_FEATURES (VIRTIO_BIT(VIRTIO_F_VERSION_1) | VIRTIO_BIT(VIRTIO_F_EVENT_IDX) | \
			    VIRTIO_BIT(VIRTIO_F_INDIRECT_DESC))

static uint64_t vmmio_offered(struct vdev *d)
{
	/* Device bits cannot smuggle in ring features the transport does not implement. */
	uint64_t dev = d->host_features & ~(VIRTIO_BIT(VIRTIO_F_ACCESS_PLATFORM));

	d->mmio->offered = dev | TRANSPORT_FEATURES |
		     (d->host && d->host->grant_mem ? VIRTIO_BIT(VIRTIO_F_ACCESS_PLATFORM) : 0);
	return d->mmio->offered;
}

static void vmmio_raise(struct vdev *d, uint32_t isr_bit)
{
	d->mmio->isr |= isr_bit;
	if (d->host && d->host->raise_irq)
		d->host->raise_irq(d->host, d);
}

/* The selected queue, or -1: a selection beyond num_queues selects nothing, never queue 0. */
static int vmmio_sel(const struct vdev *d)
{
	return d->mmio->queue_sel < d->num_queues ? (int)d->mmio->queue_sel : -1;
}

/* Queue fields are writable between FEATURES_OK and DRIVER_OK, while that queue is not ready. */
static bool vmmio_queue_writable(const struct vdev *d, int q)
{
	return q >= 0 && (d->mmio->status & VIRTIO_STATUS_FEATURES_OK) &&
	       !(d->mmio->status & VIRTIO_STATUS_DRIVER_OK) && !d->vqs[q].enabled;
}

/* ---- reset ---- */

static void vmmio_reset_queues(struct vdev *d)
{
	for (unsigned q = 0; q < d->num_queues; q++) {
		vq_reset(&d->vqs[q]);
		d->mmio->qregs[q] = (struct vq_regs){ .num = d->queue_max };
	}
}

/* The device leaves the running state (NEEDS_RESET, reset): its backend watchers stop. */
static void vmmio_stop(struct vdev *d)
{
	if (!d->running)
		return;
	d->running = false;
	if (d->ops->stop)
		d->ops->stop(d);
}

/* Everything after the device's reset: queues and registers to their reset values. */
static void vmmio_reset_regs(struct vdev *d)
{
	vmmio_reset_queues(d);
	d->features = 0;
	d->mmio->driver_features = 0;
	d->mmio->status = 0;
	d->mmio->isr = 0;
	d->mmio->dev_features_sel = 0;
	d->mmio->drv_features_sel = 0;
	d->mmio->queue_sel = 0;
}

/* A deferred reset is over: finish it and let the driver's write complete. */
static void vmmio_reset_finish(struct vdev *d)
{
	vmmio_reset_regs(d);
	d->mmio->resetting = false;
	if (d->host && d->host->access_done)
		d->host->access_done(d->host, d);
}

void vmmio_reset(struct vdev *d)
{
	if (d->ops)
		vmmio_stop(d);
	if (d->ops && d->ops->reset)
		d->ops->reset(d);
	/* A driver's reset still waiting is over now too: its access is answered. */
	if (d->mmio->resetting)
		vmmio_reset_finish(d);
	else
		vmmio_reset_regs(d);
}

/* The driver wrote 0 to Status: a reset that may have to wait for the backend (VMMIO_LATER). */
static int vmmio_driver_reset(struct vdev *d)
{
	if (!d->ops->reset_start) {
		vmmio_reset(d);
		return 0;
	}
	vmmio_stop(d);
	if (d->ops->reset_start(d) != VDEV_RESET_LATER) {
		vmmio_reset_regs(d);
		return 0;
	}
	/* Status reads 0 from now on; the rest waits for vdev_reset_done(). */
	d->mmio->status = 0;
	d->mmio->resetting = true;
	return VMMIO_LATER;
}

void vdev_reset_done(struct vdev *d)
{
	if (d->mmio->resetting)
		vmmio_reset_finish(d);
}

/* ---- status machine ---- */

static bool vmmio_features_acceptable(struct vdev *d)
{
	uint64_t want = d->mmio->driver_features;

	if (want & ~vmmio_offered(d)) {
		vdev_log(d, VDEV_LOG_SETUP, LOG_WARNING,
			 "%s: driver accepted features 0x%llx never offered", d->name,
			 (unsigned long long)(want & ~d->mmio->offered));
		return false;
	}
	if (!(want & VIRTIO_BIT(VIRTIO_F_VERSION_1))) {
		vdev_log(d, VDEV_LOG_SETUP, LOG_WARNING,
			 "%s: driver without VERSION_1 (legacy) refused", d->name);
		return false;
	}
	if (d->ops->features_ok && !d->ops->features_ok(d, want)) {
		vdev_log(d, VDEV_LOG_SETUP, LOG_WARNING,
			 "%s: feature set 0x%llx refused by the device", d->name,
			 (unsigned long long)want);
		return false;
	}
	return true;
}

/* Each status bit needs the one before it (virtio 1.2 §3.1.1), in the value being set. */
static bool vmmio_status_ordered(uint32_t s)
{
	if ((s & VIRTIO_STATUS_DRIVER) && !(s & VIRTIO_STATUS_ACKNOWLEDGE))
		return false;
	if ((s & VIRTIO_STATUS_FEATURES_OK) && !(s & VIRTIO_STATUS_DRIVER))
		return false;
	if ((s & VIRTIO_STATUS_DRIVER_OK) && !(s & VIRTIO_STATUS_FEATURES_OK))
		return false;
	return true;
}

/* DRIVER_OK: start the device, then serve kicks that arrived while it was not yet started. */
static void vmmio_driver_ok(struct vdev *d)
{
	/* Running first: an activation that fails half-way is stopped like any other. */
	d->running = true;
	if (d->ops->activate && d->ops->activate(d) < 0) {
		vdev_needs_reset(d, "activation failed");
		return;
	}
	for (unsigned q = 0; q < d->num_queues; q++)
		if (vdev_active(d) && d->ops->queue_notify && vq_has_work(&d->vqs[q]))
			d->ops->queue_notify(d, q);
}

static int vmmio_write_status(struct vdev *d, uint32_t val)
{
	/* NEEDS_RESET is the device's bit: a driver echoing it back changes nothing. */
	uint32_t cur = d->mmio->status & STATUS_DRIVER_BITS;
	uint32_t want = val & ~VIRTIO_STATUS_NEEDS_RESET;
	uint32_t added = want & ~cur;

	if (val == 0)
		return vmmio_driver_reset(d);
	if ((cur & ~want) || (want & ~STATUS_DRIVER_BITS) || !vmmio_status_ordered(want)) {
		vdev_log(d, VDEV_LOG_SETUP, LOG_WARNING, "%s: status 0x%x -> 0x%x refused", d->name,
			 d->mmio->status, val);
		return 0;
	}
	if ((added & VIRTIO_STATUS_FEATURES_OK) && !vmmio_features_acceptable(d)) {
		/* FEATURES_OK does not stick (the driver sees that); nor does anything needing it. */
		want &= ~(VIRTIO_STATUS_FEATURES_OK | VIRTIO_STATUS_DRIVER_OK);
		added &= want;
	}
	if (added & VIRTIO_STATUS_FEATURES_OK)
		d->features = d->mmio->driver_features;
	d->mmio->status = want | (d->mmio->status & VIRTIO_STATUS_NEEDS_RESET);
	if ((added & VIRTIO_STATUS_DRIVER_OK) && !(d->mmio->status & VIRTIO_STATUS_FAILED))
		vmmio_driver_ok(d);
	return 0;
}

/* ---- queue registers ---- */

static void vmmio_set_addr(uint64_t *addr, bool high, uint32_t val)
{
	if (high)
		*addr = (*addr & 0xffffffffu) | ((uint64_t)val << 32);
	else
		*addr = (*addr & ~(uint64_t)0xffffffffu) | val;
}

static void vmmio_queue_ready(struct vdev *d, int q, uint32_t val)
{
	struct vq_regs *r = &d->mmio->qregs[q];

	if (val == 0)
		return;          /* not ready already: writable queues are never enabled */
	if (vq_configure(&d->vqs[q], d->host->gm, (uint16_t)q, r->num, d->queue_max, r->desc,
			 r->avail, r->used, d->features) < 0)
		vdev_log(d, VDEV_LOG_SETUP, LOG_WARNING,
			 "%s: queue %d refused: size %u, rings 0x%llx/0x%llx/0x%llx misaligned or "
			 "not mapped", d->name, q, r->num, (unsigned long long)r->desc,
			 (unsigned long long)r->avail, (unsigned long long)r->used);
}

static void vmmio_queue_num(struct vdev *d, int q, uint32_t val)
{
	if (val == 0 || val > d->queue_max || (val & (val - 1))) {
		vdev_log(d, VDEV_LOG_SETUP, LOG_WARNING, "%s: queue %d size %u refused (max %u)",
			 d->name, q, val, d->queue_max);
		return;
	}
	d->mmio->qregs[q].num = (uint16_t)val;
}

static void vmmio_write_queue(struct vdev *d, uint32_t off, uint32_t val)
{
	int q = vmmio_sel(d);

	/*
	 * QueueReady = 0 for a queue that is not ready is what Linux writes when it tears queues
	 * down after a reset (vm_del_vq: unbind, rebind, suspend): harmless, and not worth a line.
	 */
	if (off == MMIO_QUEUE_READY && val == 0 && (q < 0 || !d->vqs[q].enabled))
		return;
	if (!vmmio_queue_writable(d, q)) {
		vdev_log(d, VDEV_LOG_SETUP, LOG_WARNING,
			 "%s: queue register 0x%x write ignored (queue %u, status 0x%x)",
			 d->name, off, d->mmio->queue_sel, d->mmio->status);
		return;
	}
	switch (off) {
	case MMIO_QUEUE_NUM:      vmmio_queue_num(d, q, val); break;
	case MMIO_QUEUE_READY:    vmmio_queue_ready(d, q, val); break;
	case MMIO_QUEUE_DESC_LO:  vmmio_set_addr(&d->mmio->qregs[q].desc, false, val); break;
	case MMIO_QUEUE_DESC_HI:  vmmio_set_addr(&d->mmio->qregs[q].desc, true, val); break;
	case MMIO_QUEUE_AVAIL_LO: vmmio_set_addr(&d->mmio->qregs[q].avail, false, val); break;
	case MMIO_QUEUE_AVAIL_HI: vmmio_set_addr(&d->mmio->qregs[q].avail, true, val); break;
	case MMIO_QUEUE_USED_LO:  vmmio_set_addr(&d->mmio->qregs[q].used, false, val); break;
	case MMIO_QUEUE_USED_HI:  vmmio_set_addr(&d->mmio->qregs[q].used, true, val); break;
	}
}

static uint32_t vmmio_read_queue(const struct vdev *d, uint32_t off)
{
	int q = vmmio_sel(d);

	if (q < 0)
		return 0;
	const struct vq_regs *r = &d->mmio->qregs[q];

	switch (off) {
	case MMIO_QUEUE_NUM_MAX:  return d->queue_max;
	case MMIO_QUEUE_NUM:      return r->num;
	case MMIO_QUEUE_READY:    return d->vqs[q].enabled;
	case MMIO_QUEUE_DESC_LO:  return (uint32_t)r->desc;
	case MMIO_QUEUE_DESC_HI:  return (uint32_t)(r->desc >> 32);
	case MMIO_QUEUE_AVAIL_LO: return (uint32_t)r->avail;
	case MMIO_QUEUE_AVAIL_HI: return (uint32_t)(r->avail >> 32);
	case MMIO_QUEUE_USED_LO:  return (uint32_t)r->used;
	case MMIO_QUEUE_USED_HI:  return (uint32_t)(r->used >> 32);
	}
	return 0;
}

void vmmio_queue_notify(struct vdev *d, uint32_t q)
{
	/* Kicks for queues that do not exist, are not ready, or before DRIVER_OK are ignored. */
	if (q >= d->num_queues || !d->vqs[q].enabled || !vdev_active(d))
		return;
	if (d->vqs[q].broken)
		return;
	if (d->ops->queue_notify)
		d->ops->queue_notify(d, q);
}

/* ---- register file ---- */

static uint32_t vmmio_read_features(struct vdev *d)
{
	uint64_t f = vmmio_offered(d);

	if (d->mmio->dev_features_sel == 0)
		return (uint32_t)f;
	if (d->mmio->dev_features_sel == 1)
		return (uint32_t)(f >> 32);
	return 0;
}

static uint32_t vmmio_read_reg(struct vdev *d, uint32_t off)
{
	switch (off) {
	case MMIO_MAGIC:        return MMIO_MAGIC_VALUE;
	case MMIO_VERSION:      return 2;
	case MMIO_DEVICE_ID:    return d->ops->device_id;
	case MMIO_VENDOR_ID:    return MMIO_VENDOR;
	case MMIO_DEV_FEATURES: return vmmio_read_features(d);
	case MMIO_QUEUE_NUM_MAX: case MMIO_QUEUE_NUM: case MMIO_QUEUE_READY:
	case MMIO_QUEUE_DESC_LO: case MMIO_QUEUE_DESC_HI: case MMIO_QUEUE_AVAIL_LO:
	case MMIO_QUEUE_AVAIL_HI: case MMIO_QUEUE_USED_LO: case MMIO_QUEUE_USED_HI:
		return vmmio_read_queue(d, off);
	case MMIO_INT_STATUS:   return d->mmio->isr;
	case MMIO_STATUS:       return d->mmio->status;
	/* No shared memory regions: a length and base of all-ones means "absent". */
	case MMIO_SHM_LEN_LO: case MMIO_SHM_LEN_HI: case MMIO_SHM_BASE_LO: case MMIO_SHM_BASE_HI:
		return 0xffffffffu;
	case MMIO_CONFIG_GEN:   return d->mmio->config_generation;
	/* Write-only registers and QueueReset (RING_RESET is not offered) read as 0. */
	case MMIO_DEV_FEATURES_SEL: case MMIO_DRV_FEATURES: case MMIO_DRV_FEATURES_SEL:
	case MMIO_QUEUE_SEL: case MMIO_QUEUE_NOTIFY: case MMIO_INT_ACK: case MMIO_SHM_SEL:
	case MMIO_QUEUE_RESET:
		return 0;
	}
	vdev_log(d, VDEV_LOG_ACCESS, LOG_WARNING, "%s: read of unknown register 0x%x", d->name,
		 off);
	return 0xffffffffu;
}

static void vmmio_write_driver_features(struct vdev *d, uint32_t val)
{
	/* The driver's choice is frozen once FEATURES_OK is set. */
	if (d->mmio->status & VIRTIO_STATUS_FEATURES_OK) {
		vdev_log(d, VDEV_LOG_SETUP, LOG_WARNING,
			 "%s: feature write after FEATURES_OK ignored", d->name);
		return;
	}
	if (d->mmio->drv_features_sel == 0)
		d->mmio->driver_features = (d->mmio->driver_features & ~(uint64_t)0xffffffffu) | val;
	else if (d->mmio->drv_features_sel == 1)
		d->mmio->driver_features = (d->mmio->driver_features & 0xffffffffu) | ((uint64_t)val << 32);
	else if (val)
		vdev_log(d, VDEV_LOG_SETUP, LOG_WARNING, "%s: features word %u unsupported",
			 d->name, d->mmio->drv_features_sel);
}

static int vmmio_write_reg(struct vdev *d, uint32_t off, uint32_t val)
{
	switch (off) {
	case MMIO_DEV_FEATURES_SEL: d->mmio->dev_features_sel = val; return 0;
	case MMIO_DRV_FEATURES:     vmmio_write_driver_features(d, val); return 0;
	case MMIO_DRV_FEATURES_SEL: d->mmio->drv_features_sel = val; return 0;
	case MMIO_QUEUE_SEL:        d->mmio->queue_sel = val; return 0;
	case MMIO_QUEUE_NUM: case MMIO_QUEUE_READY:
	case MMIO_QUEUE_DESC_LO: case MMIO_QUEUE_DESC_HI: case MMIO_QUEUE_AVAIL_LO:
	case MMIO_QUEUE_AVAIL_HI: case MMIO_QUEUE_USED_LO: case MMIO_QUEUE_USED_HI:
		vmmio_write_queue(d, off, val);
		return 0;
	case MMIO_QUEUE_NOTIFY:     vmmio_queue_notify(d, val); return 0;
	case MMIO_INT_ACK:          d->mmio->isr &= ~val; return 0;
	case MMIO_STATUS:           return vmmio_write_status(d, val);
	case MMIO_SHM_SEL:          return 0;
	}
	vdev_log(d, VDEV_LOG_ACCESS, LOG_WARNING,
		 "%s: write of 0x%x to read-only or unknown register 0x%x", d->name, val, off);
	return 0;
}

/* Config space [rel, rel+size) lies inside config_size; written so nothing can overflow. */
static bool vmmio_config_ok(const struct vdev *d, uint32_t rel, unsigned size)
{
	if (size != 1 && size != 2 && size != 4 && size != 8)
		return false;
	return rel < d->config_size && size <= d->config_size - rel;
}

uint64_t vmmio_read(struct vdev *d, uint32_t off, unsigned size)
{
	if (off >= VIRTIO_MMIO_CONFIG) {
		uint32_t rel = off - VIRTIO_MMIO_CONFIG;
		uint64_t v = 0;

		if (!vmmio_config_ok(d, rel, size) || !d->ops->config_read) {
			vdev_log(d, VDEV_LOG_ACCESS, LOG_WARNING,
				 "%s: config read %u@0x%x outside %u bytes", d->name, size, rel,
				 d->config_size);
			return ~(uint64_t)0;
		}
		/* Config space is little-endian, as is every host we build for. */
		d->ops->config_read(d, rel, &v, size);
		return v;
	}
	if (size != 4 || (off & 3)) {
		vdev_log(d, VDEV_LOG_ACCESS, LOG_WARNING,
			 "%s: %u-byte register read at 0x%x refused", d->name, size, off);
		return ~(uint64_t)0;
	}
	return vmmio_read_reg(d, off);
}

int vmmio_write(struct vdev *d, uint32_t off, unsigned size, uint64_t val)
{
	/* Only another vCPU can write while the reset waits (the driver's own is held). */
	if (d->mmio->resetting) {
		vdev_log(d, VDEV_LOG_ACCESS, LOG_WARNING, "%s: write at 0x%x during a reset ignored",
			 d->name, off);
		return 0;
	}
	if (off >= VIRTIO_MMIO_CONFIG) {
		uint32_t rel = off - VIRTIO_MMIO_CONFIG;

		if (!vmmio_config_ok(d, rel, size) || !d->ops->config_write) {
			vdev_log(d, VDEV_LOG_ACCESS, LOG_WARNING,
				 "%s: config write %u@0x%x refused", d->name, size, rel);
			return 0;
		}
		d->ops->config_write(d, rel, &val, size);
		return 0;
	}
	if (size != 4 || (off & 3)) {
		vdev_log(d, VDEV_LOG_ACCESS, LOG_WARNING,
			 "%s: %u-byte register write at 0x%x refused", d->name, size, off);
		return 0;
	}
	return vmmio_write_reg(d, off, (uint32_t)val);
}

/* ---- device -> transport ---- */

static void vdev_init_ratelimits(struct vdev *d)
{
	static const char *const kind[VDEV_LOG_KINDS] = {
		[VDEV_LOG_ACCESS] = "register accesses", [VDEV_LOG_SETUP] = "set-up steps",
		[VDEV_LOG_RESET] = "resets", [VDEV_LOG_REQUEST] = "requests",
		[VDEV_LOG_BACKEND] = "backend errors", [VDEV_LOG_INFO] = "notices",
	};

	for (unsigned k = 0; k < VDEV_LOG_KINDS; k++) {
		d->rl[k] = (struct ratelimit)RATELIMIT_DEFAULT;
		snprintf(d->rl_what[k], sizeof(d->rl_what[k]), "%s: %s", d->name, kind[k]);
		d->rl[k].what = d->rl_what[k];
	}
}

int vdev_init(struct vdev *d, const struct vdev_ops *ops, struct vdev_host *host,
	      const char *name, uint16_t num_queues, uint16_t queue_max)
{
	if (!ops || !host || num_queues > VDEV_MAX_QUEUES || queue_max == 0 ||
	    queue_max > VQ_MAX_SIZE || (queue_max & (queue_max - 1)))
		return -EINVAL;
	memset(d, 0, sizeof(*d));
	d->ops = ops;
	d->host = host;
	snprintf(d->name, sizeof(d->name), "%s", name ? name : ops->type);
	d->num_queues = num_queues;
	d->queue_max = queue_max;
	vdev_init_ratelimits(d);
	d->mmio = calloc(1, sizeof(*d->mmio) + (num_queues ? num_queues : 1) * sizeof(struct vq_regs));
	d->vqs = calloc(num_queues ? num_queues : 1, sizeof(*d->vqs));
	if (!d->mmio || !d->vqs) {
		vdev_fini(d);
		return -ENOMEM;
	}
	for (unsigned q = 0; q < num_queues; q++) {
		d->vqs[q].gm = host->gm;
		d->vqs[q].index = (uint16_t)q;
		d->mmio->qregs[q].num = queue_max;
	}
	return 0;
}

void vdev_fini(struct vdev *d)
{
	if (d->vqs)
		for (unsigned q = 0; q < d->num_queues; q++)
			vq_reset(&d->vqs[q]);
	free(d->vqs);
	free(d->mmio);
	d->vqs = NULL;
	d->mmio = NULL;
	d->num_queues = 0;
}

void vdev_used(struct vdev *d, struct virtqueue *vq)
{
	if (vq_should_notify(vq) && vdev_active(d))
		vmmio_raise(d, VIRTIO_MMIO_INT_VRING);
}

void vdev_config_changed(struct vdev *d)
{
	d->mmio->config_generation++;
	/* No configuration change notification before DRIVER_OK (virtio 1.2 §2.1.2). */
	if (d->mmio->status & VIRTIO_STATUS_DRIVER_OK)
		vmmio_raise(d, VIRTIO_MMIO_INT_CONFIG);
}

void vdev_needs_reset(struct vdev *d, const char *why)
{
	if (d->mmio->status & VIRTIO_STATUS_NEEDS_RESET)
		return;  /* already reported; the driver has to reset */
	vdev_log(d, VDEV_LOG_RESET, LOG_WARNING, "%s: device needs reset: %s", d->name, why);
	d->mmio->status |= VIRTIO_STATUS_NEEDS_RESET;
	vmmio_stop(d);
	if (d->mmio->status & VIRTIO_STATUS_DRIVER_OK)
		vmmio_raise(d, VIRTIO_MMIO_INT_CONFIG);
}

void vdev_vq_error(struct vdev *d, struct virtqueue *vq)
{
	char why[64];

	snprintf(why, sizeof(why), "queue %u: guest broke the ring", vq->index);
	vdev_needs_reset(d, why);
}

bool vdev_active(const struct vdev *d)
{
	return d->running && (d->mmio->status & VIRTIO_STATUS_DRIVER_OK) &&
	       !(d->mmio->status & VIRTIO_STATUS_NEEDS_RESET);
}

uint32_t vdev_status(const struct vdev *d)
{
	return d->mmio->status;
}

void vmmio_dump(const struct vdev *d)
{
	const struct vmmio_state *t = d->mmio;

	log_notice("%s: status 0x%02" PRIx32 " features 0x%016" PRIx64 " offered 0x%016" PRIx64
		   " isr %" PRIu32, d->name, t->status, d->features, t->offered, t->isr);
	for (unsigned q = 0; d->vqs && q < d->num_queues; q++) {
		const struct virtqueue *vq = &d->vqs[q];

		log_notice("%s: queue %u: %s%s num %u avail %u used %u inflight %" PRIu32
			   " bad chains %" PRIu32, d->name, q, vq->enabled ? "on" : "off",
			   vq->broken ? " BROKEN" : "", vq->num, vq->last_avail, vq->used_idx,
			   vq->inflight, vq->stat_bad_chains);
	}
}
