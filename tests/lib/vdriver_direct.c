#include "tests/lib/vdriver_direct.h"

#include <errno.h>
#include <ev.h>
#include <string.h>

#include "devices/virtio_mmio.h"
#include "tests/lib/gmem_flat.h"

static struct vdrv_direct *direct_of(struct vdrv_io *io)
{
	return container_of(io, struct vdrv_direct, io);
}

static uint64_t direct_read(struct vdrv_io *io, uint32_t off, unsigned size)
{
	return vmmio_read(direct_of(io)->dev, off, size);
}

static void direct_timeout_cb(struct ev_loop *loop, ev_timer *w, int revents);

/* A write the transport holds (a reset waiting for I/O): the vCPU waits, the loop runs. */
static void direct_write(struct vdrv_io *io, uint32_t off, unsigned size, uint64_t val)
{
	struct vdrv_direct *x = direct_of(io);
	ev_timer t;

	if (vmmio_write(x->dev, off, size, val) != VMMIO_LATER)
		return;
	x->held++;
	if (!x->host.loop)
		return;
	ev_timer_init(&t, direct_timeout_cb, 10.0, 0.);
	ev_timer_start(x->host.loop, &t);
	while (ev_is_active(&t) && x->released < x->held)
		ev_run(x->host.loop, EVRUN_ONCE);
	ev_timer_stop(x->host.loop, &t);
}

static void direct_raise_irq(struct vdev_host *host, struct vdev *dev)
{
	(void)dev;
	container_of(host, struct vdrv_direct, host)->irqs++;
}

static void direct_access_done(struct vdev_host *host, struct vdev *dev)
{
	(void)dev;
	container_of(host, struct vdrv_direct, host)->released++;
}

static void direct_timeout_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
	(void)w;
	(void)revents;
	ev_break(loop, EVBREAK_ONE);
}

/* Run the loop one iteration at a time until an interrupt arrives or timeout_ms passes. */
static void direct_run_loop(struct vdrv_direct *x, int timeout_ms)
{
	ev_timer t;

	ev_timer_init(&t, direct_timeout_cb, timeout_ms / 1000.0, 0.);
	ev_timer_start(x->host.loop, &t);
	while (ev_is_active(&t) && x->irqs == x->irqs_seen)
		ev_run(x->host.loop, EVRUN_ONCE);
	ev_timer_stop(x->host.loop, &t);
}

static int direct_wait_irq(struct vdrv_io *io, int timeout_ms)
{
	struct vdrv_direct *x = direct_of(io);

	if (x->irqs == x->irqs_seen && x->host.loop && timeout_ms > 0)
		direct_run_loop(x, timeout_ms);
	if (x->irqs == x->irqs_seen)
		return 0;
	x->irqs_seen = x->irqs;
	return 1;
}

unsigned vdrv_direct_take_irqs(struct vdrv_direct *x)
{
	unsigned n = x->irqs - x->irqs_seen;

	x->irqs_seen = x->irqs;
	return n;
}

int vdrv_direct_open_ram(struct vdrv_direct *x, uint64_t ram_gpa, uint64_t ram_size,
			 struct ev_loop *loop)
{
	memset(x, 0, sizeof(*x));
	x->gm = gmem_flat_new(ram_gpa, ram_size);
	if (!x->gm)
		return -ENOMEM;
	x->host = (struct vdev_host){ .loop = loop, .gm = x->gm, .guest_name = "test",
				      .raise_irq = direct_raise_irq,
				      .access_done = direct_access_done };
	x->io = (struct vdrv_io){ .read = direct_read, .write = direct_write,
				  .wait_irq = direct_wait_irq };
	x->mem = (struct vdrv_mem){ .host = gmem_flat_host(x->gm, ram_gpa), .gpa = ram_gpa,
				    .size = ram_size };
	return 0;
}

int vdrv_direct_open(struct vdrv_direct *x, const struct config_device *cfg, uint64_t ram_gpa,
		     uint64_t ram_size, struct ev_loop *loop)
{
	int rc = vdrv_direct_open_ram(x, ram_gpa, ram_size, loop);

	if (rc < 0)
		return rc;
	rc = vdev_create(&x->host, cfg, &x->dev);
	if (rc < 0) {
		gmem_destroy(x->gm);
		x->gm = NULL;
	}
	return rc;
}

void vdrv_direct_close(struct vdrv_direct *x)
{
	vdev_destroy(x->dev);
	x->dev = NULL;
	gmem_destroy(x->gm);
	x->gm = NULL;
}
