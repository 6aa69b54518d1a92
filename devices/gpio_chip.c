/* A host gpiochip's allowed lines through libgpiod v1: see gpio_chip.h. */
#include "devices/gpio_chip.h"

#include <errno.h>
#include <ev.h>
#include <gpiod.h>
#include <stdlib.h>
#include <string.h>

#include "devices/gpio_sim.h"
#include "lib/log.h"
#include "lib/util.h"

struct gpio_chip_line {
	struct gpiod_line *line;   /* owned by the chip; requested or not */
	uint32_t offset;
	int flags;                 /* bias asked for inputs */
	bool events;               /* requested for edge events: io watches its fd */
	ev_io io;
	struct gpio_chip *chip;
};

struct gpio_chip {
	struct gpio_backend be;
	struct gpiod_chip *chip;
	bool watching;
	char names[GPIO_SIM_LINES][CONFIG_GPIO_NAME_MAX];
	struct gpio_chip_line l[GPIO_SIM_LINES];
};

static struct gpio_chip *chip_of(struct gpio_backend *b)
{
	return container_of(b, struct gpio_chip, be);
}

static void chip_unwatch(struct gpio_chip *c, struct gpio_chip_line *l)
{
	if (c->be.loop)
		ev_io_stop(c->be.loop, &l->io);
}

static void chip_watch_line(struct gpio_chip *c, struct gpio_chip_line *l)
{
	if (c->be.loop && c->watching && l->events && !ev_is_active(&l->io))
		ev_io_start(c->be.loop, &l->io);
}

static void chip_free_line(struct gpio_chip *c, unsigned i)
{
	struct gpio_chip_line *l = &c->l[i];

	chip_unwatch(c, l);
	l->events = false;
	if (gpiod_line_is_requested(l->line))
		gpiod_line_release(l->line);
}

/* The line's level as the hardware reads it (requested lines only): 0/1 or -errno. */
static int chip_read(struct gpio_chip_line *l)
{
	int v = gpiod_line_get_value(l->line);

	return v < 0 ? -errno : !!v;
}

/*
 * Request line i anew for dir, with edge events when an input has an interrupt type. On
 * failure the line is left released and -errno returned (EBUSY: another consumer has it).
 */
static int chip_request(struct gpio_chip *c, unsigned i, uint8_t dir, uint8_t irq)
{
	struct gpio_chip_line *l = &c->l[i];
	struct gpio_sim_state *st = c->be.st;
	int rc, v;

	chip_free_line(c, i);
	if (dir == GPIO_DIR_OUT)
		rc = gpiod_line_request_output(l->line, GPIO_CHIP_CONSUMER, st->out[i]);
	else if (irq != GPIO_IRQ_NONE)
		rc = gpiod_line_request_both_edges_events_flags(l->line, GPIO_CHIP_CONSUMER, l->flags);
	else
		rc = gpiod_line_request_input_flags(l->line, GPIO_CHIP_CONSUMER, l->flags);
	if (rc < 0)
		return errno ? -errno : -EIO;
	if (dir == GPIO_DIR_OUT) {
		st->level[i] = st->out[i];
		return 0;
	}
	l->events = irq != GPIO_IRQ_NONE;
	if (l->events)
		ev_io_set(&l->io, gpiod_line_event_get_fd(l->line), EV_READ);
	/* Edges count from here: the level now is the reference. */
	v = chip_read(l);
	if (v < 0) {
		chip_free_line(c, i);
		return v;
	}
	st->level[i] = (uint8_t)v;
	chip_watch_line(c, l);
	return 0;
}

static int chip_set_direction(struct gpio_backend *b, unsigned line, uint8_t dir)
{
	struct gpio_chip *c = chip_of(b);

	if (dir == GPIO_DIR_NONE)
		return 0;   /* release() follows */
	if (dir == b->st->dir[line] && gpiod_line_is_requested(c->l[line].line))
		return 0;
	return chip_request(c, line, dir, b->st->irq[line]);
}

static int chip_set_value(struct gpio_backend *b, unsigned line, unsigned v)
{
	struct gpio_chip_line *l = &chip_of(b)->l[line];

	if (b->st->dir[line] != GPIO_DIR_OUT || !gpiod_line_is_requested(l->line))
		return 0;   /* latched in st->out, driven when the line becomes an output */
	if (gpiod_line_set_value(l->line, (int)v) < 0)
		return errno ? -errno : -EIO;
	b->st->level[line] = (uint8_t)v;
	return 0;
}

static int chip_get_value(struct gpio_backend *b, unsigned line)
{
	struct gpio_chip_line *l = &chip_of(b)->l[line];

	/* A released line belongs to the host: reading it would need a request of our own. */
	if (!gpiod_line_is_requested(l->line))
		return -EPERM;
	return chip_read(l);
}

static int chip_set_irq_type(struct gpio_backend *b, unsigned line, uint8_t type)
{
	struct gpio_chip *c = chip_of(b);
	bool want = type != GPIO_IRQ_NONE;

	/* An input changes between a plain request and an event request; otherwise later. */
	if (b->st->dir[line] != GPIO_DIR_IN || want == c->l[line].events)
		return 0;
	return chip_request(c, line, GPIO_DIR_IN, type);
}

/* Edges are latched as their events arrive (chip_event_cb): outputs read their latch. */
static unsigned chip_scan(struct gpio_backend *b)
{
	for (unsigned i = 0; i < b->n; i++)
		if (b->st->dir[i] == GPIO_DIR_OUT)
			b->st->level[i] = b->st->out[i];
	return 0;
}

static void chip_release(struct gpio_backend *b, unsigned line)
{
	chip_free_line(chip_of(b), line);
	gpio_sim_release_state(b->st, line);
}

static void chip_reset(struct gpio_backend *b)
{
	for (unsigned i = 0; i < b->n; i++) {
		chip_release(b, i);
		b->st->level[i] = 0;
	}
}

static void chip_watch(struct gpio_backend *b, bool on)
{
	struct gpio_chip *c = chip_of(b);

	c->watching = on;
	for (unsigned i = 0; i < b->n; i++) {
		if (on)
			chip_watch_line(c, &c->l[i]);
		else
			chip_unwatch(c, &c->l[i]);
	}
}

static bool chip_edge_wanted(uint8_t irq, bool rising)
{
	return rising ? (irq & GPIO_IRQ_EDGE_RISING) != 0 : (irq & GPIO_IRQ_EDGE_FALLING) != 0;
}

/* One line's edge events: latched by type, the level followed; a bounded batch per wakeup. */
static void chip_event_cb(struct ev_loop *loop, ev_io *w, int revents)
{
	struct gpio_chip_line *l = container_of(w, struct gpio_chip_line, io);
	struct gpio_chip *c = l->chip;
	struct gpio_sim_state *st = c->be.st;
	unsigned i = (unsigned)(l - c->l);
	struct gpiod_line_event ev[GPIO_CHIP_EVENT_BUDGET];
	int n = gpiod_line_event_read_multiple(l->line, ev, GPIO_CHIP_EVENT_BUDGET);

	(void)revents;
	if (n < 0) {
		if (errno == EAGAIN || errno == EINTR)
			return;
		/* A chip gone away (hot unplug): no busy loop on a dead fd. */
		ev_io_stop(loop, w);
		return;
	}
	for (int k = 0; k < n; k++) {
		bool rising = ev[k].event_type == GPIOD_LINE_EVENT_RISING_EDGE;

		if (chip_edge_wanted(st->irq[i], rising))
			st->latched[i] = 1;
		st->level[i] = rising;
	}
	/* A level interrupt goes by what the line reads after the edges. */
	if (st->irq[i] == GPIO_IRQ_LEVEL_HIGH || st->irq[i] == GPIO_IRQ_LEVEL_LOW) {
		int v = chip_read(l);

		if (v >= 0)
			st->level[i] = (uint8_t)v;
	}
	if (c->be.changed)
		c->be.changed(&c->be, c->be.opaque);
}

static void chip_destroy(struct gpio_backend *b)
{
	struct gpio_chip *c = chip_of(b);

	for (unsigned i = 0; i < b->n; i++)
		chip_free_line(c, i);
	gpiod_chip_close(c->chip);
	free(c);
}

static const struct gpio_backend_ops gpio_chip_ops = {
	.kind = "chip",
	.set_direction = chip_set_direction,
	.set_value = chip_set_value,
	.get_value = chip_get_value,
	.set_irq_type = chip_set_irq_type,
	.scan = chip_scan,
	.reset = chip_reset,
	.release = chip_release,
	.watch = chip_watch,
	.destroy = chip_destroy,
};

/* The guest's name of line i: the configured one, else the chip's when it is a plain name. */
static void chip_name(struct gpio_chip *c, unsigned i, const struct config_gpio_line *cl)
{
	const char *n = cl->name[0] ? cl->name : gpiod_line_name(c->l[i].line);
	size_t len = n ? strlen(n) : 0;

	if (len >= CONFIG_GPIO_NAME_MAX || (len && strspn(n, "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
		"abcdefghijklmnopqrstuvwxyz0123456789._-") != len))
		len = 0;
	memcpy(c->names[i], n ? n : "", len);
	c->names[i][len] = '\0';
}

static int chip_lines(struct gpio_chip *c, const struct config_gpio *cfg, const char *what)
{
	unsigned nchip = gpiod_chip_num_lines(c->chip);

	for (unsigned i = 0; i < cfg->nlines; i++) {
		const struct config_gpio_line *cl = &cfg->lines[i];
		struct gpio_chip_line *l = &c->l[i];

		if (cl->offset >= nchip) {
			log_err("%s: %s has %u lines: no offset %u", what, cfg->chip, nchip,
				cl->offset);
			return -EINVAL;
		}
		l->line = gpiod_chip_get_line(c->chip, cl->offset);
		if (!l->line) {
			int e = errno ? errno : EIO;

			log_err("%s: %s line %u: %s", what, cfg->chip, cl->offset, strerror(e));
			return -e;
		}
		l->chip = c;
		l->offset = cl->offset;
		l->flags = cl->pull_up ? GPIOD_LINE_REQUEST_FLAG_BIAS_PULL_UP :
			   cl->pull_down ? GPIOD_LINE_REQUEST_FLAG_BIAS_PULL_DOWN : 0;
		ev_io_init(&l->io, chip_event_cb, -1, EV_READ);
		chip_name(c, i, cl);
	}
	return 0;
}

/* A previous instance's lines: its directions requested again, or released. */
static void chip_adopt(struct gpio_chip *c, const char *what)
{
	struct gpio_sim_state *st = c->be.st;

	for (unsigned i = 0; i < c->be.n; i++) {
		gpio_sim_fix_state(st, i);
		if (st->dir[i] == GPIO_DIR_NONE)
			continue;
		int rc = chip_request(c, i, st->dir[i], st->irq[i]);

		if (rc < 0) {
			log_err("%s: line %u (offset %u) cannot be taken again: %s", what, i,
				c->l[i].offset, strerror(-rc));
			gpio_sim_release_state(st, i);
		}
	}
}

struct gpio_backend *gpio_chip_open(const struct config_gpio *cfg, struct gpio_sim_state *st,
				    bool fresh, struct ev_loop *loop, const char *what)
{
	struct gpio_chip *c;
	int rc;

	if (!cfg->nlines || cfg->nlines > GPIO_SIM_LINES) {
		errno = EINVAL;
		return NULL;
	}
	c = calloc(1, sizeof(*c));
	if (!c)
		return NULL;
	c->chip = gpiod_chip_open(cfg->chip);
	if (!c->chip) {
		rc = errno ? errno : ENODEV;
		log_err("%s: cannot open %s: %s", what, cfg->chip, strerror(rc));
		free(c);
		errno = rc;
		return NULL;
	}
	c->be = (struct gpio_backend){ .ops = &gpio_chip_ops, .n = cfg->nlines, .name = c->names,
				       .st = st, .loop = loop };
	rc = chip_lines(c, cfg, what);
	if (rc < 0) {
		gpiod_chip_close(c->chip);
		free(c);
		errno = -rc;
		return NULL;
	}
	if (fresh)
		memset(st, 0, sizeof(*st));
	else
		chip_adopt(c, what);
	return &c->be;
}
