/*
 * A virtio device as the transport sees it, and what a device module provides.
 *
 * Division of labour: devices/virtio_mmio.c owns the register file, the status machine and every
 * range and state check; it calls a device hook only with arguments already validated. A device
 * module (rng.c, blk.c, ...) provides one const struct vdev_ops and never parses status bits.
 * Device -> transport calls are the plain functions at the end of this file.
 */
#ifndef XVD_DEVICE_H
#define XVD_DEVICE_H

#include <stdbool.h>
#include <stdint.h>

#include "devices/virtqueue.h"
#include "ioreq/gmem.h"
#include "lib/log.h"
#include "lib/persist.h"
#include "lib/util.h"

struct ev_loop;
struct vdev;
struct vmmio_state;
struct config_device;

/* Feature bits shared by every device (virtio 1.2 §6). */
#define VIRTIO_F_INDIRECT_DESC    28
#define VIRTIO_F_EVENT_IDX        29
#define VIRTIO_F_VERSION_1        32
#define VIRTIO_F_ACCESS_PLATFORM  33
#define VIRTIO_BIT(b) (UINT64_C(1) << (b))

/* Device status bits (virtio 1.2 §2.1). */
#define VIRTIO_STATUS_ACKNOWLEDGE  1u
#define VIRTIO_STATUS_DRIVER       2u
#define VIRTIO_STATUS_DRIVER_OK    4u
#define VIRTIO_STATUS_FEATURES_OK  8u
#define VIRTIO_STATUS_NEEDS_RESET  0x40u
#define VIRTIO_STATUS_FAILED       0x80u

/* InterruptStatus bits. */
#define VIRTIO_MMIO_INT_VRING  1u
#define VIRTIO_MMIO_INT_CONFIG 2u

#define VDEV_MAX_QUEUES 64u

/*
 * What the platform gives a device: the event loop, guest memory, and interrupt delivery.
 * ioreq/ fills this for Xen; unit tests fill it with a plain buffer and a counter.
 */
struct vdev_host {
	struct ev_loop *loop;
	struct gmem *gm;
	const char *guest_name;
	uint32_t domid;     /* the guest's domain id (0 in unit tests): default backend names */
	bool grant_mem;     /* guest memory is grant-mapped: offer VIRTIO_F_ACCESS_PLATFORM */
	/* Deliver the device's interrupt (an edge on its SPI). Never blocks. */
	void (*raise_irq)(struct vdev_host *host, struct vdev *dev);
	/* An access the transport answered VMMIO_LATER (a deferred reset) is complete now. */
	void (*access_done)(struct vdev_host *host, struct vdev *dev);
	/*
	 * Where the device's state outlives the process (lib/persist.h), or NULL. The transport
	 * keeps its registers and each queue's record there (named after the device); a device
	 * keeps what the guest can observe of it there too (vdev_persist()).
	 */
	struct persist *persist;
	/*
	 * Where descriptors outlive the process (lib/persist.h: a tap, a listening socket), or
	 * NULL. A device that keeps one there takes it back on the next start instead of opening
	 * its backend again.
	 */
	struct fdstore *store;
	void *opaque;
};

struct vdev_ops {
	const char *type;       /* INI section type: "rng", "block", "net", "console", "i2c", "gpio" */
	uint32_t device_id;     /* virtio device id (4 rng, 2 block, 1 net, 3 console, 34 i2c,
				   41 gpio) */

	/*
	 * Build an instance from its validated configuration. The device calls vdev_init() on the
	 * embedded struct vdev, sets num_queues, queue_max, host_features and config_size, and
	 * opens its backend. Returns 0 or a negative errno (logged by the device).
	 */
	int (*create)(struct vdev_host *host, const struct config_device *cfg, struct vdev **out);

	/* Config space: off + len <= config_size already checked, len is 1, 2, 4 or 8. */
	void (*config_read)(struct vdev *d, uint32_t off, void *buf, uint32_t len);
	void (*config_write)(struct vdev *d, uint32_t off, const void *buf, uint32_t len);

	/* Optional: reject a feature combination at FEATURES_OK (return false). */
	bool (*features_ok)(struct vdev *d, uint64_t features);

	/*
	 * DRIVER_OK was set: queues are configured; start serving, backend watchers included.
	 * Return 0, or <0 to mark NEEDS_RESET.
	 */
	int (*activate)(struct vdev *d);

	/*
	 * The device stopped serving: it entered NEEDS_RESET, or the driver reset it while it ran
	 * (reset() follows then). Stop every backend watcher (tap, sockets, pty) so that input
	 * arriving while the guest does not reset costs nothing; keep what is held, reset() drops
	 * it, and activate() starts the watchers again. Called once per activation, possibly from
	 * inside the device's own callbacks (a bad chain found while serving): stop watchers only.
	 */
	void (*stop)(struct vdev *d);

	/*
	 * The driver wrote 0 to Status (or the guest is going away): stop using every queue.
	 * Elements still in flight must be finished or dropped with vq_drop(); vq_push() after a
	 * reset is harmless (the generation check drops it). Called before the transport resets
	 * the queues themselves.
	 */
	void (*reset)(struct vdev *d);

	/*
	 * Optional, for a reset the driver asked for (Status = 0) that has to wait for the backend
	 * (I/O the kernel still writes into guest memory): start it and return 0 when it is done,
	 * or VDEV_RESET_LATER and call vdev_reset_done() from the loop once it is. The driver's
	 * write is answered only then; the loop never waits. Without it, or when the daemon
	 * itself resets (teardown), reset() runs and must be done when it returns.
	 */
	int (*reset_start)(struct vdev *d);

	/*
	 * Optional: the daemon is stopping while the guest lives on (SIGTERM, restart). Take no
	 * new chains; finish every request the backend already has and return it to the guest.
	 * Requests not started yet are failed, unless d->leaving: then a next instance takes the
	 * device over and does them (vdev_leave() keeps them in flight). May wait a bounded time.
	 * reset() or, when leaving, destroy() follows.
	 */
	void (*quiesce)(struct vdev *d);

	/* QueueNotify for queue q (< num_queues, enabled). Must not block. */
	void (*queue_notify)(struct vdev *d, unsigned q);

	/*
	 * Optional: after a restart, the requests a previous instance had taken from queue q and
	 * not returned: true (the default) gives them to this device again (vq_pop() returns
	 * them first: block I/O is idempotent for the guest), false returns them to the guest
	 * unused, length 0 (a transmit that may have gone out already must not go twice).
	 */
	bool (*replay)(const struct vdev *d, unsigned q);

	/* Run-time reconfiguration (SIGHUP) with the section re-read; optional. */
	int (*reconfigure)(struct vdev *d, const struct config_device *cfg);

	/* Free everything; reset() has already run if the device was active. */
	void (*destroy)(struct vdev *d);
};

/*
 * Kinds of log line a guest can provoke on a device. Each kind has its own rate limit per device
 * (RATELIMIT_DEFAULT), so a flood of one kind never hides another, the NEEDS_RESET warning least
 * of all. Every log line reachable from guest input goes through vdev_log().
 */
enum vdev_log_kind {
	VDEV_LOG_ACCESS,     /* register and config-space accesses refused */
	VDEV_LOG_SETUP,      /* status, feature and queue set-up steps refused */
	VDEV_LOG_RESET,      /* the device needs a reset, or a reset had to wait */
	VDEV_LOG_REQUEST,    /* a request refused, failed or dropped because of its contents */
	VDEV_LOG_BACKEND,    /* the host side refusing or failing (tap, files, io_uring) */
	VDEV_LOG_INFO,       /* what the guest's own legitimate actions change (pairs, ports) */
	VDEV_LOG_KINDS
};

/* One device instance. Devices embed it and recover themselves with container_of. */
struct vdev {
	const struct vdev_ops *ops;
	struct vdev_host *host;
	char name[80];                /* "block root", for log lines */

	/* Set by the device in create(). */
	uint16_t num_queues;
	uint16_t queue_max;           /* QueueNumMax, a power of two <= VQ_MAX_SIZE */
	uint64_t host_features;       /* device-specific offered bits */
	uint32_t config_size;

	/* Set by the transport, read-only for devices. */
	uint64_t features;            /* negotiated, valid from FEATURES_OK (see vdev_has) */
	struct virtqueue *vqs;        /* num_queues entries */
	struct ratelimit rl[VDEV_LOG_KINDS];  /* see vdev_log() */
	char rl_what[VDEV_LOG_KINDS][96];    /* "rng: requests": names suppressed lines */
	bool running;                 /* activated and not stopped since (see vdev_ops.stop) */

	/* The transport's own registers (devices/virtio_mmio.h); devices never look inside. */
	struct vmmio_state *mmio;
	bool mmio_persistent;         /* mmio lives in host->persist: never freed, never cleared */
	bool adopted;                 /* created over a previous instance's state (vmmio_adopt()) */
	/*
	 * The process stops while the guest lives on (a restart): what the device leaves (a
	 * socket's path, a pty's link, requests not started) is for the next instance, so
	 * quiesce() and destroy() keep it. Set before quiesce().
	 */
	bool leaving;
};

/* Called by a device's create(): zero the transport state, allocate num_queues queues. */
int vdev_init(struct vdev *d, const struct vdev_ops *ops, struct vdev_host *host,
	      const char *name, uint16_t num_queues, uint16_t queue_max);
/* Frees what vdev_init() allocated (the device frees itself); persistent state is left as is. */
void vdev_fini(struct vdev *d);

/*
 * After quiesce(), before destroy(), when the process stops for a next instance (d->leaving):
 * the device stops (its backend watchers) without a reset, and the queues' records are left as
 * they are, so requests it still holds stay in flight for that instance however destroy() lets
 * go of them. vdev_destroy() then frees it without resetting it.
 */
void vdev_leave(struct vdev *d);

/*
 * size bytes of the device's own persistent state, named `what` (zeroed when new, the previous
 * instance's when adopting, *adopted says which), or NULL without persistence: the device then
 * keeps that state in ordinary memory.
 */
void *vdev_persist(struct vdev *d, const char *what, size_t size, bool *adopted);

/* Device -> transport. */
void vdev_used(struct vdev *d, struct virtqueue *vq);  /* after a batch of vq_push(): IRQ if due */
void vdev_config_changed(struct vdev *d);              /* bump generation, config interrupt */
void vdev_needs_reset(struct vdev *d, const char *why); /* NEEDS_RESET + config interrupt */
void vdev_vq_error(struct vdev *d, struct virtqueue *vq); /* a broken ring: logs and NEEDS_RESET */
#define VDEV_RESET_LATER 1
void vdev_reset_done(struct vdev *d);                  /* a reset_start() that said LATER is done */
bool vdev_active(const struct vdev *d);                /* running: DRIVER_OK, not stopped */
uint32_t vdev_status(const struct vdev *d);            /* the Status register (dumps, tests) */
static inline bool vdev_has(const struct vdev *d, unsigned bit)
{
	return (d->features & VIRTIO_BIT(bit)) != 0;
}

/* A log line the guest can provoke on device d, rate-limited per device and kind. */
#define vdev_log(d, kind, prio, ...) log_rl(&(d)->rl[kind], prio, __VA_ARGS__)

/* The registry of device modules (devices/registry.c). */
const struct vdev_ops *vdev_ops_by_type(const char *type);
const struct vdev_ops *vdev_ops_by_id(uint32_t device_id);

/* Create an instance of the configured device (looks up ops by type, calls create). */
int vdev_create(struct vdev_host *host, const struct config_device *cfg, struct vdev **out);
void vdev_destroy(struct vdev *d);

#endif
