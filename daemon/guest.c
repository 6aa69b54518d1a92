/*
 * One guest: resolve the domain, decide which devices to serve (from the INI in explicit mode, from
 * libxl's xenstore entries matched to INI sections in xenstore mode), then open the Xen side,
 * create and map the devices, start serving. Teardown is the exact reverse.
 */
#include "daemon/guest.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <ev.h>

#include "config/config.h"
#include "daemon/fdstore.h"
#include "daemon/sandbox.h"
#include "daemon/state.h"
#include "devices/device.h"
#include "devices/virtio_mmio.h"
#include "ioreq/xen.h"
#include "lib/log.h"
#include "lib/util.h"

/* libxl declares at most 11 virtio devices; twice the INI's bound leaves room for junk entries. */
#define GUEST_DISCOVER_MAX (2 * CONFIG_MAX_DEVICES)

struct guest_dev {
	struct config_device cfg;     /* effective section (xenstore may fill a disk's path) */
	unsigned ini;                 /* index of the INI section in guest.cfg.devices */
	uint64_t base;
	uint32_t irq;
	bool has_desc;                /* discovered in xenstore: desc is valid */
	struct xen_vdev_desc desc;
	struct vdev *dev;             /* NULL until created */
	struct vdev_host host;        /* what dev was created with: loop, memory, its interrupt */
	struct xen_window *win;       /* dev's window on the Xen side */
	bool closed;                  /* the toolstack closed the backend: state=6 is written */
	int want_state;               /* a state write that failed, retried from state_retry */
	bool closing;                 /* the toolstack wrote state=5 (Closing) */
	bool remove_dir;              /* a driver domain's: remove the backend directory (be_remove) */
};

struct guest {
	struct ev_loop *loop;
	struct config cfg;            /* the INI as loaded (updated by successful reloads) */
	uint32_t domid;
	char name[CONFIG_NAME_MAX];
	struct xen_guest *xg;
	struct xen_close_watch *close_watch;  /* 4.17 disks: libxl's Closing, answered */
	unsigned close_dev[CONFIG_MAX_DEVICES];  /* close watch index -> devs[] index */
	bool dead;                    /* the domain is gone: its backend dirs are libxl's to remove */
	ev_timer state_retry;         /* failed backend state writes, retried */
	ev_timer be_remove;           /* a driver domain removes closed disks' directories, later */
	unsigned ndevs;
	struct guest_dev devs[CONFIG_MAX_DEVICES];
	void (*on_death)(void *opaque);
	void *opaque;
	struct state *state;          /* what outlives us (daemon/state.h), or NULL */
	struct fdstore *store;
	bool adopted;                 /* took a previous instance's state over */
};

const char *guest_name(const struct guest *g) { return g->name; }
uint32_t guest_domid(const struct guest *g) { return g->domid; }
unsigned guest_device_count(const struct guest *g) { return g->ndevs; }

struct xen_guest *guest_xen(struct guest *g) { return g->xg; }

bool guest_device_info(struct guest *g, unsigned i, struct guest_devinfo *out)
{
	const struct guest_dev *gd = i < g->ndevs ? &g->devs[i] : NULL;

	if (!gd || !gd->dev)
		return false;
	*out = (struct guest_devinfo){ .dev = gd->dev, .type = config_dev_type_name(gd->cfg.type),
				       .name = gd->cfg.name, .base = gd->base, .irq = gd->irq };
	return true;
}

bool guest_parse_domid(const char *s, uint32_t *domid)
{
	char *end;
	unsigned long v;

	if (s[0] < '0' || s[0] > '9')
		return false;
	errno = 0;
	v = strtoul(s, &end, 10);
	/* DOMID_FIRST_RESERVED is 0x7ff0: anything above is not a guest. */
	if (errno || *end || v >= 0x7ff0)
		return false;
	*domid = (uint32_t)v;
	return true;
}

/* "block root", or "rng" for a bare section: how the INI names it, for log lines. */
static const char *guest_section_label(const struct config_device *d, char *buf, size_t len)
{
	snprintf(buf, len, "%s%s%s", config_dev_type_name(d->type), d->name[0] ? " " : "", d->name);
	return buf;
}

/* ---- stage 0: which domain ---- */

static void guest_fill_name(struct guest *g)
{
	if (xen_domain_name(g->domid, g->name, sizeof(g->name)) == 0 && g->name[0])
		return;
	if (g->cfg.guest.name[0])
		snprintf(g->name, sizeof(g->name), "%s", g->cfg.guest.name);
	else
		snprintf(g->name, sizeof(g->name), "dom%" PRIu32, g->domid);
}

static int guest_lookup(struct guest *g, const char *name)
{
	snprintf(g->name, sizeof(g->name), "%s", name);
	log_set_guest(g->name);
	if (xen_domid_by_name(name, &g->domid) < 0) {
		log_err("no running domain is named \"%s\"", name);
		return -ENOENT;
	}
	return 0;
}

/* --domain wins over [guest] domid, which wins over [guest] name. */
static int guest_resolve(struct guest *g, const char *domain)
{
	const struct config_guest *cg = &g->cfg.guest;
	int rc = 0;

	if (domain && !guest_parse_domid(domain, &g->domid))
		rc = guest_lookup(g, domain);
	else if (!domain && cg->domid < 0)
		rc = guest_lookup(g, cg->name);
	else {
		if (!domain)
			g->domid = (uint32_t)cg->domid;
		guest_fill_name(g);
	}
	if (rc == 0) {
		log_set_guest(g->name);
		log_info("guest %s is domid %" PRIu32, g->name, g->domid);
	}
	return rc;
}

/* ---- stage 1: which devices ---- */

static void guest_plan_add(struct guest *g, unsigned ini, uint64_t base, uint32_t irq,
			   const struct xen_vdev_desc *desc)
{
	struct guest_dev *gd = &g->devs[g->ndevs++];

	gd->cfg = g->cfg.devices[ini];
	gd->ini = ini;
	gd->base = base;
	gd->irq = irq;
	gd->has_desc = desc != NULL;
	if (desc)
		gd->desc = *desc;
}

static int guest_plan_explicit(struct guest *g)
{
	char label[CONFIG_NAME_MAX + 16];

	for (unsigned i = 0; i < g->cfg.ndevices; i++) {
		const struct config_device *d = &g->cfg.devices[i];

		/* The loader requires both in explicit mode; this only guards against a zero. */
		if (!d->mmio || !d->irq) {
			log_err("%s:%d: [%s]: explicit discovery needs mmio and irq", g->cfg.file,
				d->line, guest_section_label(d, label, sizeof(label)));
			return -EINVAL;
		}
		guest_plan_add(g, i, d->mmio, d->irq, NULL);
	}
	return 0;
}

static int guest_type_of_virtio_id(uint32_t id)
{
	switch (id) {
	case 2: return DEV_BLOCK;
	case 1: return DEV_NET;
	case 3: return DEV_CONSOLE;
	case 34: return DEV_I2C;
	case 4: return DEV_RNG;
	case 41: return DEV_GPIO;   /* type "virtio,device29" (hex) */
	case 19: return DEV_VSOCK;
	default: return -1;
	}
}

/*
 * The INI section serving one declared device: the section whose devid matches; else (4.17 disks)
 * the block section whose vdev matches; else the first unused section of that type that names
 * neither a devid nor a vdev. -1 when none.
 */
static int guest_match(const struct guest *g, const struct xen_vdev_desc *x, int type,
		       const bool *used)
{
	for (unsigned i = 0; i < g->cfg.ndevices; i++) {
		const struct config_device *d = &g->cfg.devices[i];
		if (!used[i] && (int)d->type == type && d->devid >= 0 && d->devid == x->devid)
			return (int)i;
	}
	for (unsigned i = 0; x->layout == XEN_LAYOUT_DISK417 && x->vdev[0] && i < g->cfg.ndevices;
	     i++) {
		const struct config_device *d = &g->cfg.devices[i];
		if (!used[i] && d->type == DEV_BLOCK && d->devid < 0 &&
		    strcmp(d->u.block.vdev, x->vdev) == 0)
			return (int)i;
	}
	for (unsigned i = 0; i < g->cfg.ndevices; i++) {
		const struct config_device *d = &g->cfg.devices[i];
		if (!used[i] && (int)d->type == type && d->devid < 0 &&
		    (d->type != DEV_BLOCK || !d->u.block.vdev[0]))
			return (int)i;
	}
	return -1;
}

/* A 4.17 disk: libxl's "params" is the image when the section names none; "mode" r is honoured. */
static int guest_apply_disk417(struct guest *g, struct guest_dev *gd)
{
	struct config_block *b = &gd->cfg.u.block;

	if (gd->desc.readonly && !b->readonly) {
		log_info("%s: xl declares the disk read-only (mode=r)", gd->desc.be_path);
		b->readonly = true;
	}
	if (b->path[0] || b->nbd[0] || b->rbd[0])
		return 0;
	if (!gd->desc.params[0] || strlen(gd->desc.params) >= sizeof(b->path)) {
		log_err("%s:%d: path: not set, and %s/params gives no usable path", g->cfg.file,
			gd->cfg.line, gd->desc.be_path);
		return -EINVAL;
	}
	snprintf(b->path, sizeof(b->path), "%s", gd->desc.params);
	return 0;
}

static int guest_plan_one(struct guest *g, const struct xen_vdev_desc *x, bool *used)
{
	int type = guest_type_of_virtio_id(x->virtio_id);
	int i;

	if (type < 0) {
		log_warn("%s: virtio device id %" PRIu32 " is not one we serve; skipped", x->be_path,
			 x->virtio_id);
		return 0;
	}
	i = guest_match(g, x, type, used);
	if (i < 0) {
		log_warn("%s: %s device %u has no section in %s; skipped", x->be_path,
			 config_dev_type_name((enum config_dev_type)type), x->devid, g->cfg.file);
		return 0;
	}
	used[i] = true;
	guest_plan_add(g, (unsigned)i, x->base, x->irq, x);
	if (x->layout == XEN_LAYOUT_DISK417 && type == DEV_BLOCK)
		return guest_apply_disk417(g, &g->devs[g->ndevs - 1]);
	return 0;
}

static int guest_plan_xenstore(struct guest *g)
{
	struct xen_vdev_desc *descs = calloc(GUEST_DISCOVER_MAX, sizeof(*descs));
	bool used[CONFIG_MAX_DEVICES] = { false };
	char label[CONFIG_NAME_MAX + 16];
	unsigned n = 0;
	int rc;

	if (!descs)
		return -ENOMEM;
	rc = xen_discover(g->cfg.guest.backend_domid, g->domid, descs, GUEST_DISCOVER_MAX, &n);
	if (rc < 0)
		log_err("xenstore discovery failed: %s", strerror(-rc));
	for (unsigned i = 0; rc == 0 && i < n; i++)
		rc = guest_plan_one(g, &descs[i], used);
	for (unsigned i = 0; rc == 0 && i < g->cfg.ndevices; i++)
		if (!used[i])
			log_warn("%s:%d: [%s]: no device declared in xenstore matches; not created",
				 g->cfg.file, g->cfg.devices[i].line,
				 guest_section_label(&g->cfg.devices[i], label, sizeof(label)));
	free(descs);
	if (rc == 0 && g->ndevs == 0)
		log_warn("no device to serve: the guest's xl config declares none we have a section for");
	return rc;
}

/* ---- stages 2-4: the Xen side and the devices ---- */

/*
 * notify_fastpath = auto, when this instance keeps a state file for the next one but no service
 * manager keeps its descriptors: the fast path's ioeventfds would outlive a crash of ours in the
 * dom0 kernel, where nobody can deassign them without their eventfds, and answer the guest's
 * kicks while no instance runs; the next instance never hears of those kicks and the guest's
 * queues stop (docs/operations.md, "Restarts and upgrades"). A restart matters more than the
 * fast path's speed there: the kicks go through the ioreq server. `on` still uses it.
 */
static enum xen_fastpath_mode guest_fastpath(const struct guest *g, const char **why)
{
	*why = NULL;
	if (g->cfg.guest.notify_fastpath == FASTPATH_ON)
		return XEN_FASTPATH_ON;
	if (g->cfg.guest.notify_fastpath == FASTPATH_OFF)
		return XEN_FASTPATH_OFF;
	if (g->state && !fdstore_systemd_present()) {
		*why = "auto: no service manager keeps our descriptors, so its eventfds would not "
		       "survive a restart; notify_fastpath = on uses it";
		return XEN_FASTPATH_OFF;
	}
	return XEN_FASTPATH_AUTO;
}

static int guest_open(struct guest *g)
{
	const char *fp_why;
	enum xen_fastpath_mode fp = guest_fastpath(g, &fp_why);
	struct xen_opts o = {
		.domid = g->domid,
		.backend_domid = g->cfg.guest.backend_domid,
		.map_cache_mib = g->cfg.guest.map_cache_mib,
		.premap = g->cfg.guest.premap,
		.grant_usage = g->cfg.guest.grant_usage,
		.persist = state_persist(g->state),
		.store = g->store,
		.fastpath = fp,
		.fastpath_off_why = fp_why,
	};

	int rc;

	/* In xenstore mode libxl says per device whether the guest uses grants. */
	for (unsigned i = 0; i < g->ndevs; i++)
		if (g->devs[i].has_desc && g->devs[i].desc.grant_usage)
			o.grant_usage = true;
	rc = xen_guest_open(g->loop, &o, &g->xg);
	/* The devices are taken over only with the Xen side they were reached through. */
	g->adopted = rc == 0 && xen_guest_adopted(g->xg);
	if (rc == 0 && !g->adopted)
		state_forget(g->state);
	return rc;
}

/* ---- the seam: a device's virtio-mmio transport behind its window ---- */

static uint64_t guest_win_read(void *opaque, uint32_t off, unsigned size)
{
	return vmmio_read(opaque, off, size);
}

static int guest_win_write(void *opaque, uint32_t off, unsigned size, uint64_t val)
{
	return vmmio_write(opaque, off, size, val) == VMMIO_LATER ? XEN_WINDOW_LATER : 0;
}

static void guest_win_notify(void *opaque, unsigned q)
{
	vmmio_queue_notify(opaque, q);
}

static const struct xen_window_ops guest_win_ops = {
	.read = guest_win_read,
	.write = guest_win_write,
	.notify = guest_win_notify,
};

static void guest_raise_irq(struct vdev_host *host, struct vdev *dev)
{
	struct guest_dev *gd = container_of(host, struct guest_dev, host);

	(void)dev;
	xen_window_raise_irq(gd->win);
}

static void guest_access_done(struct vdev_host *host, struct vdev *dev)
{
	struct guest_dev *gd = container_of(host, struct guest_dev, host);

	(void)dev;
	xen_window_done(gd->win);
}

static int guest_create_one(struct guest *g, struct guest_dev *gd)
{
	char label[CONFIG_NAME_MAX + 16];
	struct xen_window_desc w;
	int rc;

	gd->host = (struct vdev_host){
		.loop = g->loop, .gm = xen_guest_gmem(g->xg), .guest_name = xen_guest_name(g->xg),
		.domid = g->domid, .grant_mem = xen_guest_grant_usage(g->xg),
		.raise_irq = guest_raise_irq, .access_done = guest_access_done,
		.persist = state_persist(g->state), .store = g->store,
	};
	rc = vdev_create(&gd->host, &gd->cfg, &gd->dev);
	if (rc < 0) {
		gd->dev = NULL;
		log_err("[%s]: cannot create the device: %s",
			guest_section_label(&gd->cfg, label, sizeof(label)), strerror(-rc));
		return rc;
	}
	w = (struct xen_window_desc){ .name = gd->dev->name, .base = gd->base, .irq = gd->irq,
				      .nqueues = gd->dev->num_queues, .ops = &guest_win_ops,
				      .opaque = gd->dev };
	rc = xen_guest_add_window(g->xg, &w, &gd->win);
	if (rc == 0)
		log_info("%s: mmio 0x%" PRIx64 " irq %" PRIu32, gd->dev->name, gd->base, gd->irq);
	return rc;
}

static int guest_create_devices(struct guest *g)
{
	for (unsigned i = 0; i < g->ndevs; i++) {
		int rc = guest_create_one(g, &g->devs[i]);
		if (rc < 0)
			return rc;
	}
	return 0;
}

/*
 * Write a 4.17 disk's backend state. libxl waits for it (InitWait before it unpauses the guest,
 * Closed when it removes the device) for 10 s, so a write that fails (xenstored restarting just
 * then) is retried from the loop every GUEST_STATE_RETRY_S instead of leaving `xl create` or
 * `xl destroy` to time out. Closed written marks the backend closed: nothing is written after.
 */
#define GUEST_STATE_RETRY_S 0.5
#define GUEST_BE_REMOVE_S   1.0   /* after Closed: long enough for libxl to have read it */

static bool guest_write_state(struct guest *g, struct guest_dev *gd, int state)
{
	bool retry = gd->want_state != 0;

	if (xen_backend_set_state(&gd->desc, state) < 0) {
		if (!retry)
			log_warn("%s: cannot write state=%d; retrying every %.1f s", gd->desc.be_path,
				 state, GUEST_STATE_RETRY_S);
		gd->want_state = state;
		if (!ev_is_active(&g->state_retry))
			ev_timer_again(g->loop, &g->state_retry);
		return false;
	}
	if (retry)
		log_notice("%s: state=%d written on a retry", gd->desc.be_path, state);
	gd->want_state = 0;
	gd->closed |= state == XEN_STATE_CLOSED;
	if (gd->closed && gd->closing)
		log_notice("%s: the toolstack closed %s (state=5): answered Closed; virtio-mmio has "
			   "no unplug, so the device is served until the guest stops", gd->dev->name,
			   gd->desc.be_path);
	/*
	 * In a driver domain, libxl in dom0 leaves the backend directory to us and waits up to 10 s
	 * for it to go (libxl 4.17, libxl_device.c: device_hotplug()); but it first reads our
	 * state=6, and a directory removed before that read is an error to it ("unable to remove
	 * device"). So the removal comes a moment later.
	 */
	if (gd->closed && gd->closing && g->cfg.guest.backend_domid != 0) {
		gd->remove_dir = true;
		if (!ev_is_active(&g->be_remove))
			ev_timer_start(g->loop, &g->be_remove);
	}
	return true;
}

static bool guest_has_state(const struct guest_dev *gd)
{
	return gd->has_desc && gd->desc.layout == XEN_LAYOUT_DISK417 && gd->dev && !gd->closed;
}

static void guest_set_backend_state(struct guest *g, int state)
{
	for (unsigned i = 0; i < g->ndevs; i++)
		if (guest_has_state(&g->devs[i]))
			guest_write_state(g, &g->devs[i], state);
}

static void guest_state_retry_cb(struct ev_loop *loop, ev_timer *t, int revents)
{
	struct guest *g = container_of(t, struct guest, state_retry);
	bool pending = false;

	(void)revents;
	for (unsigned i = 0; i < g->ndevs; i++) {
		struct guest_dev *gd = &g->devs[i];

		if (!gd->want_state || !guest_has_state(gd))
			continue;
		/* Never re-create a directory libxl has removed meanwhile (a failed create). */
		if (g->dead || xen_backend_gone(&gd->desc)) {
			log_info("%s: gone; state=%d not written", gd->desc.be_path, gd->want_state);
			gd->want_state = 0;
			continue;
		}
		pending |= !guest_write_state(g, gd, gd->want_state);
	}
	if (!pending)
		ev_timer_stop(loop, t);
}

/*
 * libxl asks a 4.17 disk's backend to close (state=5) when it removes the device: on
 * `xl destroy` (the guest is paused and about to die) and on `xl block-detach`. Answer Closed
 * at once so libxl does not wait 10 s and log "unable to remove device". The device keeps
 * being served: virtio-mmio has no unplug, and a live guest still has it in its device tree.
 * Nothing acknowledged is lost either way: completed requests are on the backend already.
 */
static void guest_backend_closing(void *opaque, unsigned i)
{
	struct guest *g = opaque;
	struct guest_dev *gd = &g->devs[g->close_dev[i]];

	if (gd->closed)
		return;
	gd->closing = true;
	guest_write_state(g, gd, XEN_STATE_CLOSED);   /* logs the answer once it is written */
}

static void guest_be_remove_cb(struct ev_loop *loop, ev_timer *t, int revents)
{
	struct guest *g = container_of(t, struct guest, be_remove);

	(void)loop;
	(void)revents;
	for (unsigned i = 0; i < g->ndevs; i++) {
		struct guest_dev *gd = &g->devs[i];

		if (!gd->remove_dir)
			continue;
		gd->remove_dir = false;
		if (xen_backend_remove(&gd->desc) == 0)
			log_notice("%s: removed (a driver domain's part of libxl's device removal)",
				   gd->desc.be_path);
	}
}

static int guest_watch_closing(struct guest *g)
{
	const char *paths[CONFIG_MAX_DEVICES];
	unsigned n = 0;

	for (unsigned i = 0; i < g->ndevs; i++) {
		const struct guest_dev *gd = &g->devs[i];

		if (gd->has_desc && gd->desc.layout == XEN_LAYOUT_DISK417 && gd->dev) {
			g->close_dev[n] = i;
			paths[n++] = gd->desc.be_path;
		}
	}
	if (!n)
		return 0;
	g->close_watch = xen_close_watch_start(g->loop, paths, n, guest_backend_closing, g);
	return g->close_watch ? 0 : -EIO;
}

static void guest_reset_devices(struct guest *g)
{
	for (unsigned i = g->ndevs; i-- > 0;)
		if (g->devs[i].dev)
			vmmio_reset(g->devs[i].dev);
}

static void guest_destroy_devices(struct guest *g)
{
	for (unsigned i = g->ndevs; i-- > 0;) {
		if (g->devs[i].dev)
			vdev_destroy(g->devs[i].dev);
		g->devs[i].dev = NULL;
	}
}

/* notify_fastpath = on, and the dom0 kernel cannot do it: a configuration the host can't meet. */
static void guest_fastpath_missing(const struct guest *g)
{
	const char *why = "";

	xen_guest_notify_path(g->xg, &why);
	log_err("%s:%d: notify_fastpath: on, but the privcmd ioeventfd/irqfd fast path is "
		"unavailable: %s", g->cfg.file, g->cfg.guest.notify_fastpath_line, why);
}

static void guest_died(void *opaque)
{
	struct guest *g = opaque;

	g->dead = true;
	g->on_death(g->opaque);
}

/*
 * What is served, for the state file: a previous instance's state is taken over only for the
 * same devices configured the same way, at the same windows, kept in records of the same
 * layout.
 */
static uint64_t guest_plan_hash(const struct guest *g)
{
	uint64_t h = STATE_HASH_INIT;
	size_t sizes[] = { sizeof(struct vmmio_state), sizeof(struct vq_state),
			   sizeof(struct config_device) };

	h = state_hash(h, sizes, sizeof(sizes));
	h = state_hash(h, &g->cfg.guest.notify_fastpath, sizeof(g->cfg.guest.notify_fastpath));
	for (unsigned i = 0; i < g->ndevs; i++) {
		struct config_device c = g->devs[i].cfg;

		c.line = 0;   /* moving a section within the file changes nothing */
		h = state_hash(h, &c, sizeof(c));
		h = state_hash(h, &g->devs[i].base, sizeof(g->devs[i].base));
		h = state_hash(h, &g->devs[i].irq, sizeof(g->devs[i].irq));
	}
	return h;
}

/* The guest's state file: 0 (with or without one), or -EBUSY: another instance serves it. */
static int guest_open_state(struct guest *g, const char *dir)
{
	char handle[64] = "";
	struct state_id id = { .dir = dir, .guest = g->name, .domid = g->domid,
			       .handle = handle };

	if (!dir)
		return 0;
	xen_domain_handle(g->domid, handle, sizeof(handle));
	id.plan = guest_plan_hash(g);
	return state_open(&id, &g->state);
}

/*
 * Taken over: each device takes its queues over (requests in flight given back to it, or
 * returned unused), starts again if its driver had it running and interrupts the guest once;
 * then every vCPU slot is looked at and every port unmasked.
 */
static void guest_adopt_devices(struct guest *g)
{
	unsigned replayed = 0;

	for (unsigned i = 0; i < g->ndevs; i++)
		if (g->devs[i].dev)
			replayed += vmmio_adopt(g->devs[i].dev);
	xen_guest_resume(g->xg);
	log_notice("took over %u devices from the previous instance; %u requests it had in "
		   "flight are served again", g->ndevs, replayed);
}

int guest_setup(struct ev_loop *loop, const struct guest_params *p, struct guest **out)
{
	struct guest *g = calloc(1, sizeof(*g));
	int rc;

	if (!g) {
		log_err("out of memory");
		return -ENOMEM;
	}
	g->loop = loop;
	ev_init(&g->state_retry, guest_state_retry_cb);
	g->state_retry.repeat = GUEST_STATE_RETRY_S;
	ev_timer_init(&g->be_remove, guest_be_remove_cb, GUEST_BE_REMOVE_S, 0.);
	g->cfg = *p->cfg;
	g->on_death = p->on_death;
	g->opaque = p->opaque;
	g->store = p->store;

	rc = guest_resolve(g, p->domain);
	if (rc < 0)
		goto fail_free;
	rc = g->cfg.guest.discovery == DISCOVERY_EXPLICIT ? guest_plan_explicit(g)
							   : guest_plan_xenstore(g);
	if (rc < 0)
		goto fail_free;
	rc = guest_open_state(g, p->state_dir);
	if (rc < 0)
		goto fail_free;
	rc = guest_open(g);
	if (rc < 0)
		goto fail_free;
	rc = guest_create_devices(g);
	if (rc < 0)
		goto fail_close;
	/* Every capability was for opening things (tap, bridge, images); threads inherit this. */
	rc = sandbox_drop_caps();
	if (rc < 0)
		goto fail_close;
	rc = xen_guest_start(g->xg, guest_died, g);
	if (rc == -EOPNOTSUPP)
		guest_fastpath_missing(g);
	if (rc < 0)
		goto fail_close;
	rc = guest_watch_closing(g);
	if (rc < 0)
		goto fail_close;
	if (g->adopted)
		guest_adopt_devices(g);
	guest_set_backend_state(g, XEN_STATE_INITWAIT);
	state_ready(g->state);
	*out = g;
	return 0;

fail_close:
	guest_reset_devices(g);
	guest_destroy_devices(g);
	xen_guest_close(g->xg);
fail_free:
	state_close(g->state, true);
	free(g);
	return rc;
}

/* Requests in flight go back to a guest that outlives us, before the devices reset. */
static void guest_quiesce_devices(struct guest *g)
{
	for (unsigned i = 0; i < g->ndevs; i++) {
		struct vdev *d = g->devs[i].dev;

		if (d && d->ops->quiesce && vdev_active(d))
			d->ops->quiesce(d);
	}
}

void guest_teardown(struct guest *g)
{
	if (!g)
		return;
	xen_close_watch_stop(g->close_watch);
	ev_timer_stop(g->loop, &g->state_retry);
	ev_timer_stop(g->loop, &g->be_remove);
	if (!g->dead)
		guest_quiesce_devices(g);
	guest_reset_devices(g);
	if (!g->dead)
		guest_set_backend_state(g, XEN_STATE_CLOSED);
	/*
	 * Devices go before the Xen side: their destroy still uses the vdev_host (loop, guest
	 * memory) that xen_guest_close() frees. No ioreq can reach a destroyed device meanwhile,
	 * because dispatch only runs inside the loop, which has stopped.
	 */
	guest_destroy_devices(g);
	xen_guest_close(g->xg);
	state_close(g->state, true);
	free(g);
}

void guest_handover(struct guest *g)
{
	if (!g)
		return;
	xen_close_watch_stop(g->close_watch);
	ev_timer_stop(g->loop, &g->state_retry);
	ev_timer_stop(g->loop, &g->be_remove);
	/*
	 * What the kernel holds comes back to the guest; what was not started stays in flight for
	 * the next instance; nothing is reset, nothing unrouted.
	 */
	for (unsigned i = 0; i < g->ndevs; i++)
		if (g->devs[i].dev)
			g->devs[i].dev->leaving = true;
	guest_quiesce_devices(g);
	for (unsigned i = 0; i < g->ndevs; i++)
		if (g->devs[i].dev)
			vdev_leave(g->devs[i].dev);
	guest_destroy_devices(g);
	xen_guest_detach(g->xg);
	state_close(g->state, false);
	log_notice("left the guest to the next instance (state %s)",
		   g->state ? "kept" : "not kept: there is no state file");
	free(g);
}

bool guest_alive(const struct guest *g)
{
	return !g->dead && xen_domain_alive(g->domid);
}

bool guest_can_hand_over(const struct guest *g)
{
	return g->state != NULL;
}

/* ---- SIGHUP ---- */

static bool guest_section_same(const struct config_device *a, const struct config_device *b)
{
	struct config_device x = *a, y = *b;

	/* Moving a section within the file changes nothing about the device. */
	x.line = y.line = 0;
	return memcmp(&x, &y, sizeof(x)) == 0;
}

static int guest_find_section(const struct config *cfg, const struct config_device *d)
{
	for (unsigned i = 0; i < cfg->ndevices; i++)
		if (cfg->devices[i].type == d->type && strcmp(cfg->devices[i].name, d->name) == 0)
			return (int)i;
	return -1;
}

static void guest_reload_guest_section(struct guest *g, const struct config_guest *n)
{
	const struct config_guest *o = &g->cfg.guest;

	if (strcmp(o->name, n->name) || o->domid != n->domid || o->discovery != n->discovery ||
	    o->backend_domid != n->backend_domid || o->grant_usage != n->grant_usage ||
	    o->map_cache_mib != n->map_cache_mib || o->premap != n->premap ||
	    o->notify_fastpath != n->notify_fastpath)
		log_warn("[guest] changed: only log_level applies at run time; restart for the rest");
	g->cfg.guest.log_level = n->log_level;
}

/* Keep what xenstore told us (a 4.17 disk's path and mode) across a reload. */
static void guest_keep_discovered(const struct guest_dev *gd, struct config_device *n)
{
	if (gd->has_desc && gd->desc.layout == XEN_LAYOUT_DISK417 && n->type == DEV_BLOCK) {
		if (!n->u.block.path[0] && !n->u.block.nbd[0] && !n->u.block.rbd[0])
			memcpy(n->u.block.path, gd->cfg.u.block.path, sizeof(n->u.block.path));
		n->u.block.readonly |= gd->desc.readonly;
	}
	n->mmio = gd->cfg.mmio;
	n->irq = gd->cfg.irq;
}

static void guest_reload_device(struct guest *g, struct guest_dev *gd, const struct config *nc)
{
	const struct vdev_ops *ops = gd->dev->ops;
	struct config_device n;
	int i = guest_find_section(nc, &gd->cfg);
	int rc;

	if (i < 0) {
		log_warn("%s: its section was removed; the device stays until restart", gd->dev->name);
		return;
	}
	n = nc->devices[i];
	if (g->cfg.guest.discovery == DISCOVERY_EXPLICIT &&
	    (n.mmio != gd->cfg.mmio || n.irq != gd->cfg.irq))
		log_warn("%s: mmio and irq cannot change at run time", gd->dev->name);
	guest_keep_discovered(gd, &n);
	if (!ops->reconfigure) {
		if (!guest_section_same(&n, &gd->cfg))
			log_warn("%s: changed, but cannot be reconfigured at run time; restart to apply",
				 gd->dev->name);
		return;
	}
	rc = ops->reconfigure(gd->dev, &n);
	if (rc < 0) {
		log_warn("%s: reconfiguration refused (%s); the previous settings stay",
			 gd->dev->name, strerror(-rc));
		return;
	}
	gd->cfg = n;
	g->cfg.devices[gd->ini] = nc->devices[i];
	log_info("%s: reconfigured", gd->dev->name);
}

void guest_reload(struct guest *g, const struct config *nc)
{
	char label[CONFIG_NAME_MAX + 16];

	guest_reload_guest_section(g, &nc->guest);
	for (unsigned i = 0; i < g->ndevs; i++)
		guest_reload_device(g, &g->devs[i], nc);
	for (unsigned i = 0; i < nc->ndevices; i++)
		if (guest_find_section(&g->cfg, &nc->devices[i]) < 0)
			log_warn("%s:%d: [%s] is new; devices are only added at start", nc->file,
				 nc->devices[i].line,
				 guest_section_label(&nc->devices[i], label, sizeof(label)));
	/* Mappings are cheap to rebuild; dropping them releases memory a reload may have freed. */
	xen_guest_invalidate(g->xg);
}

/* ---- SIGUSR1 ---- */

static void guest_dump_device(const struct guest_dev *gd)
{
	log_notice("%s: mmio 0x%" PRIx64 " irq %" PRIu32, gd->dev->name, gd->base, gd->irq);
	vmmio_dump(gd->dev);
}

void guest_status(struct guest *g, char *buf, unsigned len)
{
	int n = snprintf(buf, len, "Serving %s (domid %" PRIu32 "): %u devices; ", g->name,
			 g->domid, g->ndevs);

	if (n >= 0 && (unsigned)n < len)
		xen_guest_notify_status(g->xg, buf + n, len - (unsigned)n);
}

void guest_dump(struct guest *g)
{
	log_notice("guest %s domid %" PRIu32 ": %u devices, discovery %s", g->name, g->domid,
		   g->ndevs, g->cfg.guest.discovery == DISCOVERY_EXPLICIT ? "explicit" : "xenstore");
	xen_guest_dump(g->xg);
	for (unsigned i = 0; i < g->ndevs; i++)
		if (g->devs[i].dev)
			guest_dump_device(&g->devs[i]);
}
