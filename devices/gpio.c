/*
 * virtio-gpio (device id 41, virtio 1.2 §5.17): a GPIO controller whose lines come from a
 * backend (devices/gpio_backend.h): simulated lines (devices/gpio_sim.h) declared in the INI
 * file, with loopbacks between lines, or a host chip's allowed lines (devices/gpio_chip.h);
 * and a host-side control socket (devices/gpio_ctl.h) through which an integrator drives
 * simulated inputs (a button) and reads outputs (an LED).
 *
 * requestq (0): each chain is one message, an 8-byte request (type, line, value) and a response
 * the device writes: status and value (2 bytes), or status and the names block for
 * GET_LINE_NAMES (1 + gpio_names_size bytes). Served synchronously in queue_notify, in order, so
 * the messages of a line are answered in the order they came. A message of the wrong size, for
 * a line that does not exist, of an unknown type or with a value out of range gets status ERR;
 * a chain without a writable byte cannot be answered and is returned with length 0.
 *
 * eventq (1, with VIRTIO_GPIO_F_IRQ): the driver unmasks a line's interrupt by posting a 2-byte
 * request (the line) and a 1-byte response. The device holds at most one such buffer per line
 * (so at most ngpio in all, fewer than the queue's size); it returns it VALID when the
 * interrupt fires, which masks the line again. Edge events are latched while a line is masked
 * and reported when it is unmasked; a level interrupt is reported while the level holds, once
 * per unmask. A buffer is returned INVALID at once for a line that does not exist, is an
 * output, has no interrupt type, or already has a buffer (the spec allows one), and the held
 * one goes back INVALID when the driver sets the type to none or the direction to none, before
 * that request is answered. A device reset drops held buffers with the rings.
 *
 * SET_VALUE is accepted whatever the direction: the spec has the value latched and used once
 * the line becomes an output (Linux sets the value before the direction).
 */
#include <endian.h>
#include <errno.h>
#include <ev.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config/config.h"
#include "devices/device.h"
#include "devices/gpio_chip.h"
#include "devices/gpio_ctl.h"
#include "devices/gpio_sim.h"
#include "devices/iov.h"

extern const struct vdev_ops vdev_gpio_ops;

#define GPIO_DEVICE_ID  41
#define GPIO_QUEUE_MAX  128      /* > GPIO_SIM_LINES: every line can have its irq buffer */
#define GPIO_Q_REQ      0
#define GPIO_Q_EVENT    1
#define VIRTIO_GPIO_F_IRQ 0

#define GPIO_MSG_GET_LINE_NAMES 1u
#define GPIO_MSG_GET_DIRECTION  2u
#define GPIO_MSG_SET_DIRECTION  3u
#define GPIO_MSG_GET_VALUE      4u
#define GPIO_MSG_SET_VALUE      5u
#define GPIO_MSG_SET_IRQ_TYPE   6u

#define GPIO_STATUS_OK  0u
#define GPIO_STATUS_ERR 1u
#define GPIO_IRQ_INVALID 0u
#define GPIO_IRQ_VALID   1u

#define GPIO_REQ_LEN    8u
#define GPIO_RESP_LEN   2u
#define GPIO_IRQREQ_LEN 2u
/* Linux uses two descriptors; a driver may split them, not beyond this. */
#define GPIO_DESC_MAX   8u
#define GPIO_CONFIG_LEN 8u

struct gpio_dev {
	struct vdev vdev;
	struct gpio_backend *be;               /* &sim.be, or a chip's */
	struct gpio_sim sim;
	struct gpio_sim_state own;             /* the state without persistence */
	uint32_t names_size;
	uint8_t names[GPIO_SIM_LINES * CONFIG_GPIO_NAME_MAX];
	struct vq_elem *held[GPIO_SIM_LINES];  /* each line's unmasking buffer, NULL: masked */
	bool irq_pushed;                       /* eventq buffers returned since the last vdev_used */
	struct gpio_ctl *ctl;
	ev_idle more;                          /* VQ_BUDGET chains done, more waiting */
};

static struct gpio_dev *gpio_of(struct vdev *d)
{
	return container_of(d, struct gpio_dev, vdev);
}

static bool gpio_irq_on(const struct gpio_dev *g)
{
	return vdev_has(&g->vdev, VIRTIO_GPIO_F_IRQ);
}

/* ---- eventq ------------------------------------------------------------------------------ */

/* Hand an irq buffer back with status st (its one response byte). */
static void gpio_irq_return(struct gpio_dev *g, struct vq_elem *e, uint8_t st)
{
	const struct iovec *in = &e->iov[e->n_out];

	if (e->in_len < 1) {
		vq_push(e, 0);
	} else {
		iov_from_buf(in, e->n_in, 0, &st, 1);
		vq_push(e, 1);
	}
	g->irq_pushed = true;
}

/* The line's held buffer, if any, goes back INVALID (interrupt disabled or line released). */
static void gpio_irq_cancel(struct gpio_dev *g, unsigned line)
{
	struct vq_elem *e = g->held[line];

	g->held[line] = NULL;
	if (e)
		gpio_irq_return(g, e, GPIO_IRQ_INVALID);
}

/* Report what is due on every unmasked line: a latched edge, or an active level. */
static void gpio_irq_deliver(struct gpio_dev *g)
{
	struct gpio_sim_state *st = g->be->st;

	for (unsigned i = 0; i < g->be->n; i++) {
		if (!g->held[i])
			continue;
		if (!st->latched[i] && !gpio_sim_level_active(st, i))
			continue;
		st->latched[i] = 0;
		struct vq_elem *e = g->held[i];

		g->held[i] = NULL;   /* masked until the driver posts a buffer again */
		gpio_irq_return(g, e, GPIO_IRQ_VALID);
	}
}

/* Something changed what lines read: latch edges, report what is due. */
static void gpio_update(struct gpio_dev *g)
{
	g->be->ops->scan(g->be);
	if (vdev_active(&g->vdev))
		gpio_irq_deliver(g);
}

static void gpio_irq_refuse(struct gpio_dev *g, struct vq_elem *e, int line, const char *why)
{
	vdev_log(&g->vdev, VDEV_LOG_REQUEST, LOG_WARNING, "%s: irq buffer for line %d refused: %s",
		 g->vdev.name, line, why);
	gpio_irq_return(g, e, GPIO_IRQ_INVALID);
}

/* One buffer the driver posted on the eventq: hold it (unmask) or hand it back INVALID. */
static void gpio_irq_post(struct gpio_dev *g, struct vq_elem *e)
{
	struct gpio_sim_state *st = g->be->st;
	uint16_t line;

	if ((unsigned)e->n_out + e->n_in > GPIO_DESC_MAX || e->out_len != GPIO_IRQREQ_LEN ||
	    e->in_len != 1) {
		gpio_irq_refuse(g, e, -1, "not a 2-byte request and a 1-byte response");
		return;
	}
	iov_to_buf(e->iov, e->n_out, 0, &line, sizeof(line));
	line = le16toh(line);
	if (line >= g->be->n)
		gpio_irq_refuse(g, e, line, "no such line");
	else if (st->dir[line] == GPIO_DIR_OUT)
		gpio_irq_refuse(g, e, line, "the line is an output");
	else if (st->irq[line] == GPIO_IRQ_NONE)
		gpio_irq_refuse(g, e, line, "no interrupt type set");
	else if (g->held[line])
		gpio_irq_refuse(g, e, line, "the line already has a buffer");
	else
		g->held[line] = e;
}

/* Take up to VQ_BUDGET posted buffers; false when the ring is broken. */
static bool gpio_event_process(struct gpio_dev *g, unsigned *served)
{
	struct virtqueue *vq = &g->vdev.vqs[GPIO_Q_EVENT];
	int err = 0;

	while (*served < VQ_BUDGET) {
		struct vq_elem *e = vq_pop(vq, &err);

		if (!e)
			break;
		(*served)++;
		gpio_irq_post(g, e);
	}
	gpio_irq_deliver(g);
	if (err) {
		vdev_vq_error(&g->vdev, vq);
		return false;
	}
	return true;
}

/* ---- requestq ---------------------------------------------------------------------------- */

struct gpio_msg {
	uint16_t type, line;
	uint32_t value;
};

static bool gpio_refuse(struct gpio_dev *g, const struct gpio_msg *m, const char *why)
{
	vdev_log(&g->vdev, VDEV_LOG_REQUEST, LOG_WARNING,
		 "%s: request type %u for line %u refused: %s", g->vdev.name, m->type, m->line,
		 why);
	return false;
}

/* The backend refused (a host line busy, gone): ERR, and a rate-limited line for the host. */
static bool gpio_backend_refused(struct gpio_dev *g, const struct gpio_msg *m, int err)
{
	vdev_log(&g->vdev, VDEV_LOG_BACKEND, LOG_WARNING,
		 "%s: request type %u for line %u failed on the %s backend: %s%s", g->vdev.name,
		 m->type, m->line, g->be->ops->kind, strerror(-err),
		 err == -EBUSY ? " (another consumer holds the line)" : "");
	return false;
}

static bool gpio_set_direction(struct gpio_dev *g, const struct gpio_msg *m)
{
	struct gpio_sim_state *st = g->be->st;
	int err;

	if (m->value != GPIO_DIR_NONE && m->value != GPIO_DIR_OUT && m->value != GPIO_DIR_IN)
		return gpio_refuse(g, m, "unknown direction");
	if (m->value == GPIO_DIR_OUT && st->irq[m->line] != GPIO_IRQ_NONE)
		return gpio_refuse(g, m, "an interrupt is enabled on the line");
	if (m->value == GPIO_DIR_NONE) {
		gpio_irq_cancel(g, m->line);
		g->be->ops->release(g->be, m->line);
		return true;
	}
	err = g->be->ops->set_direction(g->be, m->line, (uint8_t)m->value);
	if (err < 0)
		return gpio_backend_refused(g, m, err);
	st->dir[m->line] = (uint8_t)m->value;
	return true;
}

static bool gpio_set_irq_type(struct gpio_dev *g, const struct gpio_msg *m)
{
	struct gpio_sim_state *st = g->be->st;
	int err;

	if (!gpio_irq_on(g))
		return gpio_refuse(g, m, "VIRTIO_GPIO_F_IRQ was not negotiated");
	if (!gpio_sim_irq_type_ok(m->value))
		return gpio_refuse(g, m, "unknown interrupt type");
	if (m->value != GPIO_IRQ_NONE && st->dir[m->line] == GPIO_DIR_OUT)
		return gpio_refuse(g, m, "the line is an output");
	/* Disabling returns the held buffer before this request is answered (the spec's order). */
	if (m->value == GPIO_IRQ_NONE)
		gpio_irq_cancel(g, m->line);
	err = g->be->ops->set_irq_type(g->be, m->line, (uint8_t)m->value);
	if (err < 0)
		return gpio_backend_refused(g, m, err);
	st->irq[m->line] = (uint8_t)m->value;
	st->latched[m->line] = 0;   /* edges count from the moment the interrupt is enabled */
	return true;
}

/* Run one line message; *val receives the response's value. False: status ERR. */
static bool gpio_run(struct gpio_dev *g, const struct gpio_msg *m, uint8_t *val)
{
	struct gpio_sim_state *st = g->be->st;
	int v;

	if (m->line >= g->be->n)
		return gpio_refuse(g, m, "no such line");
	switch (m->type) {
	case GPIO_MSG_GET_DIRECTION:
		*val = st->dir[m->line];
		return true;
	case GPIO_MSG_SET_DIRECTION:
		return gpio_set_direction(g, m);
	case GPIO_MSG_GET_VALUE:
		v = g->be->ops->get_value(g->be, m->line);
		if (v < 0)
			return gpio_backend_refused(g, m, v);
		*val = (uint8_t)v;
		return true;
	case GPIO_MSG_SET_VALUE:
		if (m->value > 1)
			return gpio_refuse(g, m, "a value is 0 or 1");
		v = g->be->ops->set_value(g->be, m->line, m->value);
		if (v < 0)
			return gpio_backend_refused(g, m, v);
		st->out[m->line] = (uint8_t)m->value;
		return true;
	case GPIO_MSG_SET_IRQ_TYPE:
		return gpio_set_irq_type(g, m);
	default:
		return gpio_refuse(g, m, "unknown type");
	}
}

/* The response for GET_LINE_NAMES: status, then the names block. Returns the length written. */
static uint32_t gpio_answer_names(struct gpio_dev *g, const struct gpio_msg *m,
				  const struct vq_elem *e)
{
	const struct iovec *in = &e->iov[e->n_out];
	uint8_t status = GPIO_STATUS_ERR;

	/* Only the status byte of a wrong-sized buffer is written: its size is the guest's. */
	if (e->in_len != 1 + g->names_size) {
		gpio_refuse(g, m, "response buffer is not 1 + gpio_names_size bytes");
		return (uint32_t)iov_from_buf(in, e->n_in, 0, &status, 1);
	}
	status = GPIO_STATUS_OK;
	iov_from_buf(in, e->n_in, 0, &status, 1);
	iov_from_buf(in, e->n_in, 1, g->names, g->names_size);
	return e->in_len;
}

/* Parse, run and answer one requestq chain; returns the length written. */
static uint32_t gpio_request(struct gpio_dev *g, const struct vq_elem *e)
{
	const struct iovec *in = &e->iov[e->n_out];
	struct gpio_msg m = { 0 };
	uint8_t resp[GPIO_RESP_LEN] = { GPIO_STATUS_ERR, 0 };
	uint8_t raw[GPIO_REQ_LEN];
	bool ok = false;

	if (e->in_len < 1) {
		vdev_log(&g->vdev, VDEV_LOG_REQUEST, LOG_WARNING,
			 "%s: request without a writable response returned unanswered",
			 g->vdev.name);
		return 0;
	}
	if (e->out_len == GPIO_REQ_LEN && (unsigned)e->n_out + e->n_in <= GPIO_DESC_MAX) {
		iov_to_buf(e->iov, e->n_out, 0, raw, sizeof(raw));
		m.type = (uint16_t)(raw[0] | raw[1] << 8);
		m.line = (uint16_t)(raw[2] | raw[3] << 8);
		m.value = (uint32_t)raw[4] | (uint32_t)raw[5] << 8 | (uint32_t)raw[6] << 16 |
			  (uint32_t)raw[7] << 24;
		if (m.type == GPIO_MSG_GET_LINE_NAMES)
			return gpio_answer_names(g, &m, e);
		if (e->in_len != GPIO_RESP_LEN)
			gpio_refuse(g, &m, "response buffer is not 2 bytes");
		else
			ok = gpio_run(g, &m, &resp[1]);
	} else {
		gpio_refuse(g, &m, "not an 8-byte request in at most 8 descriptors");
	}
	if (ok)
		resp[0] = GPIO_STATUS_OK;
	else
		resp[1] = 0;
	return (uint32_t)iov_from_buf(in, e->n_in, 0, resp, sizeof(resp));
}

static bool gpio_req_process(struct gpio_dev *g, unsigned *served)
{
	struct virtqueue *vq = &g->vdev.vqs[GPIO_Q_REQ];
	bool pushed = false;
	int err = 0;

	while (*served < VQ_BUDGET && vdev_active(&g->vdev)) {
		struct vq_elem *e = vq_pop(vq, &err);

		if (!e)
			break;
		(*served)++;
		uint32_t len = gpio_request(g, e);

		/* Lines a loopback or a release changed: their events go out before the answer. */
		gpio_update(g);
		vq_push(e, len);
		pushed = true;
	}
	if (pushed)
		vdev_used(&g->vdev, vq);
	if (err) {
		vdev_vq_error(&g->vdev, vq);
		return false;
	}
	return true;
}

/* ---- serving ----------------------------------------------------------------------------- */

static void gpio_flush_irqs(struct gpio_dev *g)
{
	if (g->irq_pushed && vdev_active(&g->vdev)) {
		g->irq_pushed = false;
		vdev_used(&g->vdev, &g->vdev.vqs[GPIO_Q_EVENT]);
	}
}

static void gpio_defer(struct gpio_dev *g)
{
	struct ev_loop *loop = g->vdev.host->loop;

	if (loop && !ev_is_active(&g->more))
		ev_idle_start(loop, &g->more);
}

/* Serve both queues, VQ_BUDGET chains in all per call. */
static void gpio_process(struct gpio_dev *g)
{
	unsigned served = 0;
	bool ok = true;

	if (!vdev_active(&g->vdev))
		return;
	if (gpio_irq_on(g))
		ok = gpio_event_process(g, &served);
	if (ok)
		ok = gpio_req_process(g, &served);
	gpio_flush_irqs(g);
	if (ok && served >= VQ_BUDGET && vdev_active(&g->vdev))
		gpio_defer(g);
}

static void gpio_more_cb(struct ev_loop *loop, ev_idle *w, int revents)
{
	(void)revents;
	ev_idle_stop(loop, w);
	gpio_process(container_of(w, struct gpio_dev, more));
}

static void gpio_queue_notify(struct vdev *d, unsigned q)
{
	struct gpio_dev *g = gpio_of(d);

	/* Without VIRTIO_GPIO_F_IRQ the eventq does not exist for the driver. */
	if (q == GPIO_Q_EVENT && !gpio_irq_on(g))
		return;
	gpio_process(g);
}

static void gpio_config_read(struct vdev *d, uint32_t off, void *buf, uint32_t len)
{
	struct gpio_dev *g = gpio_of(d);
	uint8_t cfg[GPIO_CONFIG_LEN] = { 0 };
	uint16_t n = htole16((uint16_t)g->be->n);
	uint32_t sz = htole32(g->names_size);

	memcpy(cfg, &n, 2);
	memcpy(cfg + 4, &sz, 4);
	memcpy(buf, cfg + off, len);   /* off + len <= config_size: the transport checked */
}

static int gpio_activate(struct vdev *d)
{
	struct gpio_dev *g = gpio_of(d);

	if (g->be->ops->watch)
		g->be->ops->watch(g->be, true);
	/* What the host changed while the device was not serving is looked at now. */
	gpio_update(g);
	gpio_flush_irqs(g);
	return 0;
}

static void gpio_stop(struct vdev *d)
{
	struct gpio_dev *g = gpio_of(d);

	if (d->host->loop)
		ev_idle_stop(d->host->loop, &g->more);
	if (g->be->ops->watch)
		g->be->ops->watch(g->be, false);
}

static void gpio_reset(struct vdev *d)
{
	struct gpio_dev *g = gpio_of(d);

	gpio_stop(d);
	for (unsigned i = 0; i < GPIO_SIM_LINES; i++) {
		if (g->held[i])
			vq_drop(g->held[i]);
		g->held[i] = NULL;
	}
	g->irq_pushed = false;
	g->be->ops->reset(g->be);
}

/*
 * After a restart, buffers a previous instance held on the eventq come back (vq_pop() returns
 * them again): with the lines' state kept (vdev_persist()), each is held again as it was.
 */
static bool gpio_replay(const struct vdev *d, unsigned q)
{
	(void)d;
	(void)q;
	return true;
}

/* ---- the control socket ------------------------------------------------------------------ */

static const char *gpio_dir_name(uint8_t dir)
{
	return dir == GPIO_DIR_OUT ? "out" : dir == GPIO_DIR_IN ? "in" : "none";
}

static const char *gpio_irq_name(uint8_t t)
{
	switch (t) {
	case GPIO_IRQ_EDGE_RISING: return "edge-rising";
	case GPIO_IRQ_EDGE_FALLING: return "edge-falling";
	case GPIO_IRQ_EDGE_BOTH: return "edge-both";
	case GPIO_IRQ_LEVEL_HIGH: return "level-high";
	case GPIO_IRQ_LEVEL_LOW: return "level-low";
	default: return "none";
	}
}

static void gpio_ctl_list(struct gpio_dev *g, struct gpio_ctl_out *o)
{
	const struct gpio_sim_state *st = g->be->st;

	for (unsigned i = 0; i < g->be->n; i++) {
		int v = g->be->ops->get_value(g->be, i);

		gpio_ctl_reply(o, "%u %s dir=%s value=%s irq=%s%s\n", i, g->be->name[i],
			       gpio_dir_name(st->dir[i]), v < 0 ? "-" : v ? "1" : "0",
			       gpio_irq_name(st->irq[i]), g->held[i] ? " armed" : "");
	}
	gpio_ctl_reply(o, "ok\n");
}

/*
 * One command from the host: `list`, `get NAME` (what the line reads: an LED's value), `set
 * NAME 0|1` (what the host drives: a button; an output or a loopback's input reads what the
 * guest drives instead). Answers end with a line "ok[ VALUE]" or "err REASON".
 */
static void gpio_ctl_cmd(void *opaque, char *line, struct gpio_ctl_out *o)
{
	struct gpio_dev *g = opaque;
	char *save = NULL;
	char *cmd = strtok_r(line, " \t", &save);
	char *name = cmd ? strtok_r(NULL, " \t", &save) : NULL;
	char *val = name ? strtok_r(NULL, " \t", &save) : NULL;
	int i = name ? gpio_backend_find(g->be, name, strlen(name)) : -1;
	int v = i >= 0 ? g->be->ops->get_value(g->be, (unsigned)i) : -1;

	if (cmd && strcmp(cmd, "list") == 0 && !name) {
		gpio_ctl_list(g, o);
	} else if (!cmd || (strcmp(cmd, "get") != 0 && strcmp(cmd, "set") != 0)) {
		gpio_ctl_reply(o, "err unknown command (list, get NAME, set NAME 0|1)\n");
	} else if (i < 0) {
		gpio_ctl_reply(o, "err no such line\n");
	} else if (strcmp(cmd, "get") == 0 && !val) {
		if (v < 0)
			gpio_ctl_reply(o, "err %s\n", strerror(-v));
		else
			gpio_ctl_reply(o, "ok %d\n", v);
	} else if (strcmp(cmd, "set") == 0 && !g->be->ops->host_set) {
		gpio_ctl_reply(o, "err the host's hardware drives a passed-through line\n");
	} else if (strcmp(cmd, "set") == 0 && val && (!strcmp(val, "0") || !strcmp(val, "1")) &&
		   !strtok_r(NULL, " \t", &save)) {
		g->be->ops->host_set(g->be, (unsigned)i, val[0] == '1');
		gpio_update(g);
		gpio_flush_irqs(g);
		gpio_ctl_reply(o, "ok\n");
	} else {
		gpio_ctl_reply(o, "err usage: get NAME | set NAME 0|1\n");
	}
}

/* ---- create and destroy ------------------------------------------------------------------ */

/* Line events the backend saw on its own (a host chip's edges): latch, report. */
static void gpio_backend_changed(struct gpio_backend *b, void *opaque)
{
	struct gpio_dev *g = opaque;

	(void)b;
	gpio_update(g);
	gpio_flush_irqs(g);
}

/* The lines: a host chip's (chip =) or simulated ones (line =). */
static int gpio_backend_open(struct gpio_dev *g, const struct config_gpio *c,
			     struct gpio_sim_state *st, bool fresh)
{
	int err;

	if (c->chip[0]) {
		g->be = gpio_chip_open(c, st, fresh, g->vdev.host->loop, g->vdev.name);
		return g->be ? 0 : -errno;
	}
	err = gpio_sim_init(&g->sim, c, st, fresh);
	if (err < 0) {
		log_err("%s: no lines configured", g->vdev.name);
		return err;
	}
	g->be = gpio_sim_backend(&g->sim);
	return 0;
}

/*
 * The lines' state is what the guest observes (directions, values, interrupt types) and what
 * the host drove: it outlives the process (vdev_persist()) so a restart changes nothing the
 * guest sees. Without persistence it lives in the device.
 */
static int gpio_setup(struct gpio_dev *g, const struct config_gpio *c)
{
	bool adopted = false;
	struct gpio_sim_state *st = vdev_persist(&g->vdev, "lines", sizeof(*st), &adopted);
	int err;

	if (!st)
		st = &g->own;
	err = gpio_backend_open(g, c, st, !(adopted && g->vdev.adopted));
	if (err < 0)
		return err;
	g->be->changed = gpio_backend_changed;
	g->be->opaque = g;
	g->names_size = (uint32_t)gpio_backend_names(g->be, g->names, sizeof(g->names));
	if (!c->control[0])
		return 0;
	g->ctl = gpio_ctl_open(g->vdev.host->loop, c->control, g->vdev.name,
			       &g->vdev.rl[VDEV_LOG_BACKEND], gpio_ctl_cmd, g);
	if (!g->ctl) {
		err = -errno;
		log_err("%s: control socket %s: %s", g->vdev.name, c->control, strerror(errno));
		return err;
	}
	return 0;
}

static void gpio_free(struct gpio_dev *g)
{
	if (g->vdev.host->loop)
		ev_idle_stop(g->vdev.host->loop, &g->more);
	/* Left to a next instance (no reset ran): the buffers stay in flight for it. */
	for (unsigned i = 0; i < GPIO_SIM_LINES; i++)
		if (g->held[i])
			vq_drop(g->held[i]);
	/* A next instance listens on the path again; only a final stop removes it. */
	gpio_ctl_close(g->ctl, g->vdev.leaving);
	if (g->be)
		g->be->ops->destroy(g->be);
	vdev_fini(&g->vdev);
	free(g);
}

static int gpio_create(struct vdev_host *host, const struct config_device *cfg, struct vdev **out)
{
	struct gpio_dev *g = calloc(1, sizeof(*g));
	char name[80];
	int err;

	if (!g)
		return -ENOMEM;
	snprintf(name, sizeof(name), "gpio%s%s", cfg && cfg->name[0] ? " " : "",
		 cfg ? cfg->name : "");
	err = vdev_init(&g->vdev, &vdev_gpio_ops, host, name, 2, GPIO_QUEUE_MAX);
	if (err < 0) {
		log_err("%s: cannot initialise: %s", name, strerror(-err));
		free(g);
		return err;
	}
	g->vdev.host_features = VIRTIO_BIT(VIRTIO_GPIO_F_IRQ);
	g->vdev.config_size = GPIO_CONFIG_LEN;
	ev_idle_init(&g->more, gpio_more_cb);
	err = cfg ? gpio_setup(g, &cfg->u.gpio) : -EINVAL;
	if (err < 0) {
		gpio_free(g);
		return err;
	}
	*out = &g->vdev;
	return 0;
}

static void gpio_destroy(struct vdev *d)
{
	gpio_free(gpio_of(d));
}

const struct vdev_ops vdev_gpio_ops = {
	.type = "gpio",
	.device_id = GPIO_DEVICE_ID,
	.create = gpio_create,
	.config_read = gpio_config_read,
	.activate = gpio_activate,
	.stop = gpio_stop,
	.reset = gpio_reset,
	.replay = gpio_replay,
	.queue_notify = gpio_queue_notify,
	.destroy = gpio_destroy,
};
