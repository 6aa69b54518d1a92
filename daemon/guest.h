/*
 * One guest's objects: its Xen side (ioreq/), its devices (devices/), and the xenstore backend
 * directories we answer for. Set up in stages, torn down in reverse.
 */
#ifndef XVD_GUEST_H
#define XVD_GUEST_H

#include <stdbool.h>
#include <stdint.h>

struct ev_loop;
struct config;
struct guest;

struct fdstore;

struct guest_params {
	const struct config *cfg;     /* validated; copied, the caller may free it */
	const char *domain;           /* --domain NAME|ID, overrides [guest]; NULL when not given */
	void (*on_death)(void *opaque);  /* the domain is gone (runs once, from the loop) */
	void *opaque;
	/*
	 * Where the guest's state file lives (daemon/state.h), NULL for none: with one, a new
	 * instance takes over what this one leaves (guest_handover(), or a crash).
	 */
	const char *state_dir;
	struct fdstore *store;        /* descriptors that outlive the process, or NULL */
};

/*
 * Resolve the domain, discover or take the devices, open the guest, create and map every device,
 * start serving, and (Xen 4.17 disks) write state=InitWait. Returns 0 with *out serving, or a
 * negative errno after logging the cause and undoing every stage.
 */
int guest_setup(struct ev_loop *loop, const struct guest_params *p, struct guest **out);

/* Reverse of guest_setup(): reset devices, state=Closed, destroy devices, close the Xen side. */
void guest_teardown(struct guest *g);

/*
 * Stop while the guest lives on, for the next instance to take over: requests in flight come
 * back to the guest, nothing is reset, the ioreq servers and the state file stay.
 */
void guest_handover(struct guest *g);
/* The domain still exists (and is not known to be dying). */
bool guest_alive(const struct guest *g);
/* guest_handover() leaves a state a next instance can take over. */
bool guest_can_hand_over(const struct guest *g);

/* SIGHUP: apply what can change at run time from a freshly loaded configuration; log the rest. */
void guest_reload(struct guest *g, const struct config *cfg);

/* SIGUSR1: log the Xen counters and every device's status, features and queues. */
void guest_dump(struct guest *g);
/* sd_notify STATUS: the guest, its device count, the notify path and its counters. */
void guest_status(struct guest *g, char *buf, unsigned len);

const char *guest_name(const struct guest *g);
uint32_t guest_domid(const struct guest *g);
unsigned guest_device_count(const struct guest *g);

/* The control socket's view of the devices (daemon/control.c, daemon/report.c). */
struct vdev;
struct xen_guest;
struct guest_devinfo {
	struct vdev *dev;
	const char *type;             /* the INI section's type: "block", "net", ... */
	const char *name;             /* its name ("" for [rng]) */
	uint64_t base;                /* the virtio-mmio window */
	uint32_t irq;                 /* its SPI */
};
/* Device i (< guest_device_count()); false when there is no such device. */
bool guest_device_info(struct guest *g, unsigned i, struct guest_devinfo *out);
/* The Xen side, for its counters (ioreq/xen_stats.h) and its notify path. */
struct xen_guest *guest_xen(struct guest *g);

/* "123" -> true with *domid set; names and anything else -> false. */
bool guest_parse_domid(const char *s, uint32_t *domid);

#endif
