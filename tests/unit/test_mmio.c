/*
 * The virtio-mmio register file and status machine (DESIGN.md §6, transport items), against a
 * fake device that records which hooks the transport let through.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "devices/device.h"
#include "devices/virtio_mmio.h"
#include "tests/lib/gmem_flat.h"
#include "tests/lib/vdriver.h"
#include "tests/lib/vdriver_direct.h"

#define RAM_GPA  UINT64_C(0x40000000)
#define RAM_SIZE (1u << 20)
#define HOLE_GPA (RAM_GPA + 0x80000)
#define V1       VIRTIO_BIT(VIRTIO_F_VERSION_1)
#define QMAX     16

enum { MAGIC = 0x000, VERSION = 0x004, DEVICE_ID = 0x008, VENDOR = 0x00c, DEV_F = 0x010,
       DEV_F_SEL = 0x014, DRV_F = 0x020, DRV_F_SEL = 0x024, Q_SEL = 0x030, Q_MAX = 0x034,
       Q_NUM = 0x038, Q_READY = 0x044, Q_NOTIFY = 0x050, ISR = 0x060, ACK = 0x064,
       STATUS = 0x070, DESC = 0x080, AVAIL = 0x090, USED = 0x0a0, SHM_SEL = 0x0ac,
       SHM_LEN = 0x0b0, SHM_BASE = 0x0b8, GEN = 0x0fc, CFG = 0x100 };

#define S_ACK  VIRTIO_STATUS_ACKNOWLEDGE
#define S_DRV  VIRTIO_STATUS_DRIVER
#define S_FOK  VIRTIO_STATUS_FEATURES_OK
#define S_DOK  VIRTIO_STATUS_DRIVER_OK

struct fake {
	struct vdev vdev;
	uint8_t cfg[12];
	unsigned resets, notifies, activates, stops, cfg_reads, cfg_writes;
	bool active_at_stop;           /* vdev_active() as the device saw it in stop() */
	unsigned last_notify;
	int activate_rc;
	int reset_start_rc;            /* what reset_start() answers (fake_ops_later) */
};

static struct fake *fake_of(struct vdev *d)
{
	return container_of(d, struct fake, vdev);
}

static void fake_config_read(struct vdev *d, uint32_t off, void *buf, uint32_t len)
{
	struct fake *f = fake_of(d);

	/* The transport's promise: in range, a valid size. */
	assert_true(off + len <= sizeof(f->cfg));
	assert_true(len == 1 || len == 2 || len == 4 || len == 8);
	memcpy(buf, f->cfg + off, len);
	f->cfg_reads++;
}

static void fake_config_write(struct vdev *d, uint32_t off, const void *buf, uint32_t len)
{
	struct fake *f = fake_of(d);

	assert_true(off + len <= sizeof(f->cfg));
	memcpy(f->cfg + off, buf, len);
	f->cfg_writes++;
}

/* Bit 6 needs bit 5: a device-specific rule the hook enforces. */
static bool fake_features_ok(struct vdev *d, uint64_t features)
{
	(void)d;
	return !((features & (1u << 6)) && !(features & (1u << 5)));
}

static int fake_activate(struct vdev *d)
{
	fake_of(d)->activates++;
	return fake_of(d)->activate_rc;
}

static void fake_reset(struct vdev *d)
{
	fake_of(d)->resets++;
}

static int fake_reset_start(struct vdev *d)
{
	fake_of(d)->resets++;
	return fake_of(d)->reset_start_rc;
}

static void fake_stop(struct vdev *d)
{
	fake_of(d)->stops++;
	fake_of(d)->active_at_stop = vdev_active(d);
}

static void fake_notify(struct vdev *d, unsigned q)
{
	assert_true(q < d->num_queues);
	assert_true(d->vqs[q].enabled);
	fake_of(d)->notifies++;
	fake_of(d)->last_notify = q;
}

static void fake_destroy(struct vdev *d)
{
	vdev_fini(d);
	free(fake_of(d));
}

static const struct vdev_ops fake_ops = {
	.type = "fake", .device_id = 42, .config_read = fake_config_read,
	.config_write = fake_config_write, .features_ok = fake_features_ok,
	.activate = fake_activate, .stop = fake_stop, .reset = fake_reset,
	.queue_notify = fake_notify,
	.destroy = fake_destroy,
};

/* The same device, whose reset the driver asks for may have to wait (reset_start). */
static const struct vdev_ops fake_ops_later = {
	.type = "fake", .device_id = 42, .config_read = fake_config_read,
	.config_write = fake_config_write, .features_ok = fake_features_ok,
	.activate = fake_activate, .stop = fake_stop, .reset = fake_reset,
	.reset_start = fake_reset_start, .queue_notify = fake_notify,
	.destroy = fake_destroy,
};

struct rig {
	struct vdrv_direct x;
	struct vdrv drv;
	struct fake *f;
};

static struct rig *rig_new(bool grant_mem)
{
	struct rig *r = calloc(1, sizeof(*r));

	assert_non_null(r);
	assert_int_equal(vdrv_direct_open_ram(&r->x, RAM_GPA, RAM_SIZE, NULL), 0);
	r->x.host.grant_mem = grant_mem;
	r->f = calloc(1, sizeof(*r->f));
	assert_non_null(r->f);
	assert_int_equal(vdev_init(&r->f->vdev, &fake_ops, &r->x.host, "fake", 2, QMAX), 0);
	r->f->vdev.host_features = 1u | (1u << 5) | (1u << 6);
	r->f->vdev.config_size = sizeof(r->f->cfg);
	for (unsigned i = 0; i < sizeof(r->f->cfg); i++)
		r->f->cfg[i] = (uint8_t)(0x10 + i);
	r->x.dev = &r->f->vdev;
	gmem_flat_add_hole(r->x.gm, HOLE_GPA, GMEM_FLAT_PAGE);
	return r;
}

static int setup(void **state)
{
	*state = rig_new(false);
	return 0;
}

static int teardown(void **state)
{
	struct rig *r = *state;

	vmmio_write(r->x.dev, STATUS, 4, 0);
	assert_int_equal(gmem_flat_outstanding(r->x.gm), 0);
	assert_int_equal(gmem_flat_bad_unmaps(r->x.gm), 0);
	vdrv_direct_close(&r->x);
	free(r);
	return 0;
}

static uint32_t rd(struct rig *r, uint32_t off)
{
	return (uint32_t)vmmio_read(r->x.dev, off, 4);
}

static void wr(struct rig *r, uint32_t off, uint32_t v)
{
	vmmio_write(r->x.dev, off, 4, v);
}

static void wr64(struct rig *r, uint32_t off, uint64_t v)
{
	wr(r, off, (uint32_t)v);
	wr(r, off + 4, (uint32_t)(v >> 32));
}

/* ACKNOWLEDGE, DRIVER, the given features, FEATURES_OK; returns the status read back. */
static uint32_t negotiate(struct rig *r, uint64_t features)
{
	wr(r, STATUS, S_ACK);
	wr(r, STATUS, S_ACK | S_DRV);
	wr(r, DRV_F_SEL, 0);
	wr(r, DRV_F, (uint32_t)features);
	wr(r, DRV_F_SEL, 1);
	wr(r, DRV_F, (uint32_t)(features >> 32));
	wr(r, STATUS, S_ACK | S_DRV | S_FOK);
	return rd(r, STATUS);
}

struct rings { uint64_t desc, avail, used; };

static struct rings alloc_rings(struct rig *r, uint16_t num)
{
	struct rings g;

	g.desc = vdrv_alloc(&r->x.mem, vring_desc_size(num), 16, NULL);
	g.avail = vdrv_alloc(&r->x.mem, vring_avail_size(num), 2, NULL);
	g.used = vdrv_alloc(&r->x.mem, vring_used_size(num), 4, NULL);
	return g;
}

/* Program queue q with num entries at g and write QueueReady=1; returns QueueReady. */
static uint32_t queue_try(struct rig *r, unsigned q, uint16_t num, struct rings g)
{
	wr(r, Q_SEL, q);
	wr(r, Q_NUM, num);
	wr64(r, DESC, g.desc);
	wr64(r, AVAIL, g.avail);
	wr64(r, USED, g.used);
	wr(r, Q_READY, 1);
	return rd(r, Q_READY);
}

static void bring_up(struct rig *r)
{
	assert_true(negotiate(r, V1) & S_FOK);
	assert_int_equal(queue_try(r, 0, 8, alloc_rings(r, 8)), 1);
	assert_int_equal(queue_try(r, 1, 8, alloc_rings(r, 8)), 1);
	wr(r, STATUS, S_ACK | S_DRV | S_FOK | S_DOK);
	assert_int_equal(rd(r, STATUS) & 0xf, S_ACK | S_DRV | S_FOK | S_DOK);
}

static void test_identity(void **state)
{
	struct rig *r = *state;

	assert_int_equal(rd(r, MAGIC), 0x74726976);
	assert_int_equal(rd(r, VERSION), 2);
	assert_int_equal(rd(r, DEVICE_ID), 42);
	assert_int_not_equal(rd(r, VENDOR), 0);
	/* No shared memory regions: length and base read as all-ones. */
	wr(r, SHM_SEL, 0);
	assert_int_equal(rd(r, SHM_LEN), 0xffffffffu);
	assert_int_equal(rd(r, SHM_LEN + 4), 0xffffffffu);
	assert_int_equal(rd(r, SHM_BASE), 0xffffffffu);
	assert_int_equal(rd(r, SHM_BASE + 4), 0xffffffffu);
	assert_int_equal(rd(r, 0x0f0), 0xffffffffu);   /* not a register */
}

static void test_registers_4_byte_only(void **state)
{
	struct rig *r = *state;

	assert_int_equal(vmmio_read(r->x.dev, MAGIC, 1), UINT64_MAX);
	assert_int_equal(vmmio_read(r->x.dev, MAGIC, 2), UINT64_MAX);
	assert_int_equal(vmmio_read(r->x.dev, MAGIC, 8), UINT64_MAX);
	assert_int_equal(vmmio_read(r->x.dev, MAGIC + 1, 4), UINT64_MAX);
	assert_int_equal(vmmio_read(r->x.dev, 0xfe, 4), UINT64_MAX);  /* straddles config */
	vmmio_write(r->x.dev, STATUS, 1, S_ACK);
	vmmio_write(r->x.dev, STATUS, 2, S_ACK);
	vmmio_write(r->x.dev, STATUS, 8, S_ACK);
	vmmio_write(r->x.dev, STATUS + 2, 4, S_ACK);
	assert_int_equal(rd(r, STATUS), 0);
	wr(r, STATUS, S_ACK);
	assert_int_equal(rd(r, STATUS), S_ACK);
}

static void test_config_bounds(void **state)
{
	struct rig *r = *state;
	struct fake *f = r->f;

	assert_int_equal(vmmio_read(r->x.dev, CFG + 0, 1), 0x10);
	assert_int_equal(vmmio_read(r->x.dev, CFG + 2, 2), 0x1312);
	assert_int_equal(vmmio_read(r->x.dev, CFG + 8, 4), 0x1b1a1918);
	assert_int_equal(vmmio_read(r->x.dev, CFG + 4, 8), UINT64_C(0x1b1a191817161514));
	assert_int_equal(vmmio_read(r->x.dev, CFG + 11, 1), 0x1b);
	assert_int_equal(f->cfg_reads, 5);
	/* Past the end, straddling it, odd sizes, and offsets that would wrap a u32 sum. */
	assert_int_equal(vmmio_read(r->x.dev, CFG + 12, 1), UINT64_MAX);
	assert_int_equal(vmmio_read(r->x.dev, CFG + 11, 2), UINT64_MAX);
	assert_int_equal(vmmio_read(r->x.dev, CFG + 8, 8), UINT64_MAX);
	assert_int_equal(vmmio_read(r->x.dev, CFG + 0, 3), UINT64_MAX);
	assert_int_equal(vmmio_read(r->x.dev, CFG + 0, 16), UINT64_MAX);
	assert_int_equal(vmmio_read(r->x.dev, 0xffffffffu, 4), UINT64_MAX);
	assert_int_equal(vmmio_read(r->x.dev, 0xfffffffcu, 8), UINT64_MAX);
	assert_int_equal(vmmio_read(r->x.dev, CFG + 0x100, 4), UINT64_MAX);
	assert_int_equal(f->cfg_reads, 5);
	vmmio_write(r->x.dev, CFG + 10, 4, 0xffffffff);
	vmmio_write(r->x.dev, 0xfffffffeu, 4, 0xffffffff);
	assert_int_equal(f->cfg_writes, 0);
	vmmio_write(r->x.dev, CFG + 10, 2, 0xbeef);
	assert_int_equal(f->cfg_writes, 1);
	assert_int_equal(f->cfg[10], 0xef);
	assert_int_equal(f->cfg[11], 0xbe);
}

static void test_config_generation(void **state)
{
	struct rig *r = *state;
	uint32_t g = rd(r, GEN);

	vdev_config_changed(r->x.dev);          /* before DRIVER_OK: no interrupt */
	assert_int_equal(rd(r, GEN), g + 1);
	assert_int_equal(vdrv_direct_take_irqs(&r->x), 0);
	bring_up(r);
	vdev_config_changed(r->x.dev);
	assert_int_equal(rd(r, GEN), g + 2);
	assert_int_equal(vdrv_direct_take_irqs(&r->x), 1);
	assert_int_equal(rd(r, ISR), VIRTIO_MMIO_INT_CONFIG);
	wr(r, ACK, VIRTIO_MMIO_INT_CONFIG);
	assert_int_equal(rd(r, ISR), 0);
}

static void test_queue_sel_out_of_range(void **state)
{
	struct rig *r = *state;
	struct rings g = alloc_rings(r, 8);

	assert_true(negotiate(r, V1) & S_FOK);
	wr(r, Q_SEL, 0);
	wr(r, Q_NUM, 4);
	wr64(r, DESC, g.desc);
	for (uint32_t sel = 2; sel != 0; sel = sel < 70 ? sel + 1 : (sel == 70 ? 0xffffffffu : 0)) {
		wr(r, Q_SEL, sel);
		assert_int_equal(rd(r, Q_MAX), 0);
		assert_int_equal(rd(r, Q_READY), 0);
		assert_int_equal(rd(r, DESC), 0);
		wr(r, Q_NUM, 8);
		wr64(r, DESC, 0x1234560);
		wr(r, Q_READY, 1);
		assert_int_equal(rd(r, Q_READY), 0);
	}
	/* Nothing leaked into queue 0 (an invalid selection is not queue 0). */
	assert_int_equal(r->x.dev->mmio->qregs[0].num, 4);
	assert_int_equal(r->x.dev->mmio->qregs[0].desc, g.desc);
	assert_false(r->x.dev->vqs[0].enabled);
	wr(r, Q_SEL, 1);
	assert_int_equal(rd(r, Q_MAX), QMAX);
}

static void test_queue_notify_out_of_range(void **state)
{
	struct rig *r = *state;

	bring_up(r);
	wr(r, Q_NOTIFY, 2);
	wr(r, Q_NOTIFY, 64);
	wr(r, Q_NOTIFY, 0xffffffffu);
	wr(r, Q_NOTIFY, 0x10000);      /* would be queue 0 if truncated to 16 bits */
	assert_int_equal(r->f->notifies, 0);
	wr(r, Q_NOTIFY, 1);
	assert_int_equal(r->f->notifies, 1);
	assert_int_equal(r->f->last_notify, 1);
}

static void test_queue_num_validated(void **state)
{
	struct rig *r = *state;
	static const uint32_t bad[] = { 0, 3, 6, 12, QMAX * 2, 0x10000, 0x10004, 0xffffffffu };

	assert_true(negotiate(r, V1) & S_FOK);
	wr(r, Q_SEL, 0);
	wr(r, Q_NUM, 4);
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		wr(r, Q_NUM, bad[i]);
		assert_int_equal(r->x.dev->mmio->qregs[0].num, 4);
	}
	wr(r, Q_NUM, 1);
	assert_int_equal(r->x.dev->mmio->qregs[0].num, 1);
	wr(r, Q_NUM, QMAX);
	assert_int_equal(r->x.dev->mmio->qregs[0].num, QMAX);
}

static void test_queue_fields_window(void **state)
{
	struct rig *r = *state;
	struct rings g = alloc_rings(r, 8);

	/* Before FEATURES_OK: ignored. */
	wr(r, STATUS, S_ACK | S_DRV);
	assert_int_equal(queue_try(r, 0, 8, g), 0);
	assert_int_equal(r->x.dev->mmio->qregs[0].desc, 0);
	assert_int_equal(gmem_flat_outstanding(r->x.gm), 0);
	/* In the window: accepted; once ready, the queue's fields are frozen. */
	assert_true(negotiate(r, V1) & S_FOK);
	assert_int_equal(queue_try(r, 0, 8, g), 1);
	wr(r, Q_NUM, 4);
	wr64(r, DESC, g.desc + 0x1000);
	wr(r, Q_READY, 0);
	assert_int_equal(r->x.dev->mmio->qregs[0].num, 8);
	assert_int_equal(r->x.dev->mmio->qregs[0].desc, g.desc);
	assert_int_equal(rd(r, Q_READY), 1);
	/* After DRIVER_OK: ignored for the other queue too. */
	wr(r, STATUS, S_ACK | S_DRV | S_FOK | S_DOK);
	assert_int_equal(queue_try(r, 1, 8, alloc_rings(r, 8)), 0);
	assert_int_equal(r->x.dev->mmio->qregs[1].desc, 0);
	assert_int_equal(gmem_flat_outstanding(r->x.gm), 3);
}

static void test_features_never_offered(void **state)
{
	struct rig *r = *state;

	assert_false(negotiate(r, V1 | (1u << 1)) & S_FOK);            /* bit 1 not offered */
	assert_int_equal(r->x.dev->features, 0);
	wr(r, STATUS, 0);
	assert_false(negotiate(r, V1 | VIRTIO_BIT(40)) & S_FOK);       /* high word */
	wr(r, STATUS, 0);
	assert_false(negotiate(r, V1 | VIRTIO_BIT(VIRTIO_F_ACCESS_PLATFORM)) & S_FOK);
	wr(r, STATUS, 0);
	assert_false(negotiate(r, V1 | (1u << 6)) & S_FOK);            /* device hook says no */
	wr(r, STATUS, 0);
	/* And DRIVER_OK cannot be slipped in without FEATURES_OK. */
	assert_false(negotiate(r, V1 | (1u << 1)) & S_FOK);
	wr(r, STATUS, S_ACK | S_DRV | S_FOK | S_DOK);
	assert_false(rd(r, STATUS) & S_DOK);
	assert_int_equal(r->f->activates, 0);
	wr(r, STATUS, 0);
	assert_true(negotiate(r, V1 | 1u | (1u << 5) | (1u << 6)) & S_FOK);
	assert_int_equal(r->x.dev->features, V1 | 1u | (1u << 5) | (1u << 6));
	/* Features are frozen after FEATURES_OK. */
	wr(r, DRV_F_SEL, 0);
	wr(r, DRV_F, 0);
	assert_int_equal(r->x.dev->features, V1 | 1u | (1u << 5) | (1u << 6));
}

static void test_version_1_required(void **state)
{
	struct rig *r = *state;

	assert_false(negotiate(r, 1u) & S_FOK);
	assert_false(negotiate(r, 0) & S_FOK);
}

static void test_device_features_words(void **state)
{
	struct rig *r = *state;

	wr(r, DEV_F_SEL, 0);
	assert_int_equal(rd(r, DEV_F), 1u | (1u << 5) | (1u << 6) | (1u << VIRTIO_F_INDIRECT_DESC) |
			 (1u << VIRTIO_F_EVENT_IDX));
	wr(r, DEV_F_SEL, 1);
	assert_int_equal(rd(r, DEV_F), 1u);                  /* VERSION_1, no ACCESS_PLATFORM */
	wr(r, DEV_F_SEL, 2);
	assert_int_equal(rd(r, DEV_F), 0);
	wr(r, DEV_F_SEL, 0xffffffffu);
	assert_int_equal(rd(r, DEV_F), 0);
}

static void test_access_platform_with_grants(void **state)
{
	struct rig *r = rig_new(true);

	(void)state;
	wr(r, DEV_F_SEL, 1);
	assert_int_equal(rd(r, DEV_F), 3u);                  /* VERSION_1 | ACCESS_PLATFORM */
	assert_true(negotiate(r, V1 | VIRTIO_BIT(VIRTIO_F_ACCESS_PLATFORM)) & S_FOK);
	void *st = r;

	teardown(&st);
}

static void test_status_order(void **state)
{
	struct rig *r = *state;

	wr(r, STATUS, S_DRV);                                  /* DRIVER without ACKNOWLEDGE */
	assert_int_equal(rd(r, STATUS), 0);
	wr(r, STATUS, S_ACK | S_FOK);                          /* FEATURES_OK without DRIVER */
	assert_int_equal(rd(r, STATUS), 0);
	wr(r, STATUS, S_ACK | S_DRV | S_DOK);                  /* DRIVER_OK before FEATURES_OK */
	assert_int_equal(rd(r, STATUS), 0);
	wr(r, STATUS, 0x10 | S_ACK);                           /* a bit that does not exist */
	assert_int_equal(rd(r, STATUS), 0);
	wr(r, STATUS, S_ACK | S_DRV);
	assert_int_equal(rd(r, STATUS), S_ACK | S_DRV);
	wr(r, STATUS, S_ACK);                                  /* clearing is only by reset */
	assert_int_equal(rd(r, STATUS), S_ACK | S_DRV);
	wr(r, STATUS, S_DRV);
	assert_int_equal(rd(r, STATUS), S_ACK | S_DRV);
	wr(r, STATUS, S_ACK | S_DRV | VIRTIO_STATUS_FAILED);    /* the driver may give up */
	assert_int_equal(rd(r, STATUS), S_ACK | S_DRV | VIRTIO_STATUS_FAILED);
	wr(r, STATUS, 0);
	bring_up(r);
	assert_int_equal(r->f->activates, 1);
	wr(r, STATUS, S_ACK | S_DRV | S_FOK | S_DOK);         /* rewriting is harmless */
	assert_int_equal(r->f->activates, 1);
}

static void test_status_zero_full_reset(void **state)
{
	struct rig *r = *state;

	bring_up(r);
	vdev_config_changed(r->x.dev);
	assert_int_not_equal(rd(r, ISR), 0);
	assert_int_equal(gmem_flat_outstanding(r->x.gm), 6);
	wr(r, DEV_F_SEL, 1);
	wr(r, Q_SEL, 1);
	wr(r, STATUS, 0);
	assert_int_equal(r->f->resets, 1);
	assert_int_equal(rd(r, STATUS), 0);
	assert_int_equal(rd(r, ISR), 0);
	assert_int_equal(r->x.dev->features, 0);
	assert_int_equal(r->x.dev->mmio->driver_features, 0);
	assert_int_equal(r->x.dev->mmio->queue_sel, 0);
	assert_int_equal(r->x.dev->mmio->dev_features_sel, 0);
	assert_int_equal(gmem_flat_outstanding(r->x.gm), 0);
	for (unsigned q = 0; q < 2; q++) {
		wr(r, Q_SEL, q);
		assert_int_equal(rd(r, Q_READY), 0);
		assert_false(r->x.dev->vqs[q].enabled);
		assert_int_equal(r->x.dev->mmio->qregs[q].desc, 0);
	}
	/* Up again from scratch. */
	bring_up(r);
	assert_int_equal(r->f->activates, 2);
}

static void test_queue_ready_alignment(void **state)
{
	struct rig *r = *state;
	struct rings g = alloc_rings(r, 8), bad;

	assert_true(negotiate(r, V1) & S_FOK);
	bad = g; bad.desc += 8;
	assert_int_equal(queue_try(r, 0, 8, bad), 0);
	bad = g; bad.avail += 1;
	assert_int_equal(queue_try(r, 0, 8, bad), 0);
	bad = g; bad.used += 2;
	assert_int_equal(queue_try(r, 0, 8, bad), 0);
	assert_int_equal(gmem_flat_outstanding(r->x.gm), 0);
	assert_int_equal(queue_try(r, 0, 8, g), 1);
}

/* Rings that fit without their event field, but whose event field is not RAM. */
static void test_queue_ready_event_fields_mapped(void **state)
{
	struct rig *r = *state;
	struct rings g = alloc_rings(r, 8), bad;

	assert_true(negotiate(r, V1) & S_FOK);
	bad = g; bad.avail = HOLE_GPA - vring_avail_size(8) + 2;   /* used_event in the hole */
	assert_int_equal(queue_try(r, 0, 8, bad), 0);
	bad = g; bad.used = HOLE_GPA - vring_used_size(8) + 2;     /* avail_event in the hole */
	assert_int_equal(queue_try(r, 0, 8, bad), 0);
	bad = g; bad.desc = HOLE_GPA - vring_desc_size(8) + 16;    /* last descriptor */
	assert_int_equal(queue_try(r, 0, 8, bad), 0);
	bad = g; bad.used = RAM_GPA + RAM_SIZE - 8;                /* runs off the end of RAM */
	assert_int_equal(queue_try(r, 0, 8, bad), 0);
	bad = g; bad.desc = UINT64_C(0xfffffffffffffff0);          /* wraps around 2^64 */
	assert_int_equal(queue_try(r, 0, 8, bad), 0);
	bad = g; bad.desc = 0;                                     /* below RAM */
	assert_int_equal(queue_try(r, 0, 8, bad), 0);
	bad = g; bad.used = HOLE_GPA - vring_used_size(8) - 2;     /* fits (aligned): fine */
	assert_int_equal(gmem_flat_outstanding(r->x.gm), 0);
	assert_int_equal(queue_try(r, 0, 8, bad), 1);
	/* The queue stays unusable after a refusal: kicks do nothing. */
	wr(r, Q_SEL, 1);
	bad = g; bad.desc += 8;
	assert_int_equal(queue_try(r, 1, 8, bad), 0);
	wr(r, STATUS, S_ACK | S_DRV | S_FOK | S_DOK);
	wr(r, Q_NOTIFY, 1);
	assert_int_equal(r->f->notifies, 0);
}

static void test_used_ring_read_only_memory(void **state)
{
	struct rig *r = *state;
	struct rings g = alloc_rings(r, 8);

	assert_true(negotiate(r, V1) & S_FOK);
	gmem_flat_set_readonly(r->x.gm, g.used, vring_used_size(8));
	assert_int_equal(queue_try(r, 0, 8, g), 0);
	gmem_flat_set_ram(r->x.gm, g.used, vring_used_size(8));
	assert_int_equal(queue_try(r, 0, 8, g), 1);
}

static void test_needs_reset(void **state)
{
	struct rig *r = *state;

	bring_up(r);
	vdrv_direct_take_irqs(&r->x);
	vdev_needs_reset(r->x.dev, "test");
	assert_true(rd(r, STATUS) & VIRTIO_STATUS_NEEDS_RESET);
	assert_true(rd(r, ISR) & VIRTIO_MMIO_INT_CONFIG);
	assert_int_equal(vdrv_direct_take_irqs(&r->x), 1);
	assert_false(vdev_active(r->x.dev));
	vdev_needs_reset(r->x.dev, "again");                 /* reported once */
	assert_int_equal(vdrv_direct_take_irqs(&r->x), 0);
	/* Kicks are ignored; a driver echoing the status back keeps the bit. */
	wr(r, Q_NOTIFY, 0);
	assert_int_equal(r->f->notifies, 0);
	wr(r, STATUS, rd(r, STATUS));
	assert_true(rd(r, STATUS) & VIRTIO_STATUS_NEEDS_RESET);
	wr(r, STATUS, 0);
	assert_int_equal(rd(r, STATUS), 0);
	bring_up(r);
	wr(r, Q_NOTIFY, 0);
	assert_int_equal(r->f->notifies, 1);
}

static void test_activate_failure(void **state)
{
	struct rig *r = *state;

	r->f->activate_rc = -5;
	vdrv_direct_take_irqs(&r->x);
	bring_up(r);
	assert_true(rd(r, STATUS) & VIRTIO_STATUS_NEEDS_RESET);
	assert_int_equal(vdrv_direct_take_irqs(&r->x), 1);
	wr(r, Q_NOTIFY, 0);
	assert_int_equal(r->f->notifies, 0);
}

static void test_interrupt_ack(void **state)
{
	struct rig *r = *state;

	bring_up(r);
	vdev_config_changed(r->x.dev);
	r->x.dev->mmio->isr |= VIRTIO_MMIO_INT_VRING;
	wr(r, ACK, VIRTIO_MMIO_INT_VRING);
	assert_int_equal(rd(r, ISR), VIRTIO_MMIO_INT_CONFIG);
	wr(r, ACK, 0xffffffffu);
	assert_int_equal(rd(r, ISR), 0);
}

static void test_write_only_and_read_only(void **state)
{
	struct rig *r = *state;

	wr(r, MAGIC, 0);
	wr(r, DEVICE_ID, 7);
	wr(r, ISR, 3);
	wr(r, GEN, 9);
	assert_int_equal(rd(r, MAGIC), 0x74726976);
	assert_int_equal(rd(r, DEVICE_ID), 42);
	assert_int_equal(rd(r, ISR), 0);
	assert_int_equal(rd(r, Q_NOTIFY), 0);
	assert_int_equal(rd(r, ACK), 0);
}

/* The test driver's full initialisation against the fake device. */
static void test_vdriver_init(void **state)
{
	struct rig *r = *state;

	assert_int_equal(vdrv_init(&r->drv, &r->x.io, &r->x.mem, V1 | 1u | VIRTIO_BIT(40), 2, 64),
			 0);
	assert_int_equal(r->drv.device_id, 42);
	assert_int_equal(r->drv.features, V1 | 1u);
	assert_int_equal(r->drv.vq[0].num, QMAX);                 /* clamped to QueueNumMax */
	assert_int_equal(r->f->activates, 1);
	/* A third queue does not exist. */
	assert_int_equal(vdrv_init(&r->drv, &r->x.io, &r->x.mem, V1, 3, 8), -ENOENT);
}

/*
 * The stop hint: once per activation, when the device stops running (NEEDS_RESET, or a reset
 * while it ran), with vdev_active() already false; never for a device that did not run.
 */
static void test_stop_hint(void **state)
{
	struct rig *r = *state;
	struct fake *f = r->f;

	wr(r, STATUS, 0);                       /* reset of a device that never ran */
	assert_int_equal(f->stops, 0);
	bring_up(r);
	assert_true(vdev_active(&f->vdev));
	vdev_needs_reset(&f->vdev, "test");
	assert_int_equal(f->stops, 1);
	assert_false(f->active_at_stop);
	vdev_needs_reset(&f->vdev, "again");     /* already stopped */
	wr(r, STATUS, 0);                       /* the reset that follows: no second stop */
	assert_int_equal(f->stops, 1);
	assert_int_equal(f->resets, 2);
	bring_up(r);
	wr(r, STATUS, 0);                       /* a reset while running stops it first */
	assert_int_equal(f->stops, 2);
	assert_false(f->active_at_stop);
	/* An activation that fails is stopped too. */
	f->activate_rc = -EIO;
	bring_up(r);
	assert_int_equal(f->stops, 3);
	f->activate_rc = 0;
}

/*
 * Linux tears queues down after a reset with QueueReady = 0 (vm_del_vq): accepted quietly; a
 * QueueReady = 0 for a live queue after DRIVER_OK is still refused (the queue serves on).
 */
static void test_queue_ready_0_after_reset(void **state)
{
	struct rig *r = *state;

	bring_up(r);
	wr(r, Q_SEL, 0);
	wr(r, Q_READY, 0);
	assert_int_equal(rd(r, Q_READY), 1);
	wr(r, STATUS, 0);
	for (unsigned q = 0; q < 3; q++) {       /* queue 2 does not exist */
		wr(r, Q_SEL, q);
		wr(r, Q_READY, 0);
		assert_int_equal(rd(r, Q_READY), 0);
	}
	assert_int_equal(rd(r, STATUS), 0);
	bring_up(r);
}

/*
 * A driver's reset the device finishes later: the write is answered VMMIO_LATER, Status reads
 * 0 at once, writes meanwhile are ignored, kicks do nothing, and vdev_reset_done() finishes the
 * reset (queues and registers) and releases the held access exactly once. A device that
 * finishes at once (reset_start() returns 0) gets a plain write.
 */
static void test_reset_later(void **state)
{
	struct rig *r = *state;
	struct fake *f = r->f;

	f->vdev.ops = &fake_ops_later;
	bring_up(r);
	f->reset_start_rc = VDEV_RESET_LATER;
	assert_int_equal(vmmio_write(&f->vdev, STATUS, 4, 0), VMMIO_LATER);
	assert_int_equal(f->resets, 1);
	assert_int_equal(f->stops, 1);
	assert_int_equal(rd(r, STATUS), 0);
	assert_false(vdev_active(&f->vdev));
	assert_int_equal(vmmio_write(&f->vdev, STATUS, 4, 1), 0);   /* another vCPU: ignored */
	assert_int_equal(rd(r, STATUS), 0);
	vmmio_queue_notify(&f->vdev, 0);
	assert_int_equal(f->notifies, 0);
	assert_true(f->vdev.vqs[0].enabled);    /* the queues wait for the device */
	assert_int_equal(r->x.released, 0);
	vdev_reset_done(&f->vdev);
	assert_int_equal(r->x.released, 1);
	assert_false(f->vdev.vqs[0].enabled);
	vdev_reset_done(&f->vdev);              /* once only */
	assert_int_equal(r->x.released, 1);
	/* A device that is done at once. */
	bring_up(r);
	f->reset_start_rc = 0;
	assert_int_equal(vmmio_write(&f->vdev, STATUS, 4, 0), 0);
	assert_false(f->vdev.vqs[0].enabled);
	assert_int_equal(r->x.released, 1);
	/* The daemon's own reset completes a waiting one, and releases the access. */
	bring_up(r);
	f->reset_start_rc = VDEV_RESET_LATER;
	assert_int_equal(vmmio_write(&f->vdev, STATUS, 4, 0), VMMIO_LATER);
	vmmio_reset(&f->vdev);
	assert_int_equal(r->x.released, 2);
	assert_false(f->vdev.vqs[0].enabled);
	f->vdev.ops = &fake_ops;
}

int main(void)
{
#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)
	const struct CMUnitTest tests[] = {
		T(test_identity),
		T(test_registers_4_byte_only),
		T(test_config_bounds),
		T(test_config_generation),
		T(test_queue_sel_out_of_range),
		T(test_queue_notify_out_of_range),
		T(test_queue_num_validated),
		T(test_queue_fields_window),
		T(test_features_never_offered),
		T(test_version_1_required),
		T(test_device_features_words),
		cmocka_unit_test(test_access_platform_with_grants),
		T(test_status_order),
		T(test_status_zero_full_reset),
		T(test_reset_later),
		T(test_queue_ready_alignment),
		T(test_queue_ready_event_fields_mapped),
		T(test_used_ring_read_only_memory),
		T(test_needs_reset),
		T(test_activate_failure),
		T(test_stop_hint),
		T(test_queue_ready_0_after_reset),
		T(test_interrupt_ack),
		T(test_write_only_and_read_only),
		T(test_vdriver_init),
	};

	log_init(LOG_ERR, false);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
