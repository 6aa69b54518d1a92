/* Simulated GPIO lines: see gpio_sim.h for what a line reads and when an edge is latched. */
#include "devices/gpio_sim.h"

#include <errno.h>
#include <string.h>

#include "lib/util.h"

static bool gpio_dir_ok(uint8_t d)
{
	return d == GPIO_DIR_NONE || d == GPIO_DIR_OUT || d == GPIO_DIR_IN;
}

bool gpio_sim_irq_type_ok(uint32_t type)
{
	return type == GPIO_IRQ_NONE || type == GPIO_IRQ_EDGE_RISING ||
	       type == GPIO_IRQ_EDGE_FALLING || type == GPIO_IRQ_EDGE_BOTH ||
	       type == GPIO_IRQ_LEVEL_HIGH || type == GPIO_IRQ_LEVEL_LOW;
}

/* A state left by a previous instance is trusted no further than its ranges. */
void gpio_sim_fix_state(struct gpio_sim_state *st, unsigned i)
{
	if (!gpio_dir_ok(st->dir[i]))
		st->dir[i] = GPIO_DIR_NONE;
	if (!gpio_sim_irq_type_ok(st->irq[i]))
		st->irq[i] = GPIO_IRQ_NONE;
	st->out[i] = st->out[i] ? 1 : 0;
	st->host[i] = st->host[i] ? 1 : 0;
	st->latched[i] = st->latched[i] ? 1 : 0;
	st->level[i] = st->level[i] ? 1 : 0;
}

int gpio_sim_init(struct gpio_sim *s, const struct config_gpio *c, struct gpio_sim_state *st,
		  bool fresh)
{
	if (!c->nlines || c->nlines > GPIO_SIM_LINES)
		return -EINVAL;
	memset(s, 0, sizeof(*s));
	s->n = c->nlines;
	s->st = st;
	for (unsigned i = 0; i < s->n; i++) {
		memcpy(s->name[i], c->lines[i].name, sizeof(s->name[i]));
		s->name[i][CONFIG_GPIO_NAME_MAX - 1] = '\0';
		s->bias[i] = c->lines[i].pull_up;
		s->src[i] = -1;
	}
	for (unsigned k = 0; k < c->nloops && k < CONFIG_GPIO_LOOPS; k++)
		if (c->loops[k].in < s->n && c->loops[k].out < s->n)
			s->src[c->loops[k].in] = (int16_t)c->loops[k].out;
	if (fresh) {
		memset(st, 0, sizeof(*st));
		memcpy(st->host, s->bias, sizeof(st->host));
	}
	for (unsigned i = 0; i < s->n; i++)
		gpio_sim_fix_state(st, i);
	if (fresh)
		for (unsigned i = 0; i < s->n; i++)
			st->level[i] = (uint8_t)gpio_sim_level(s, i);
	return 0;
}

void gpio_sim_release_state(struct gpio_sim_state *st, unsigned line)
{
	st->dir[line] = GPIO_DIR_NONE;
	st->out[line] = 0;
	st->irq[line] = GPIO_IRQ_NONE;
	st->latched[line] = 0;
}

void gpio_sim_release(struct gpio_sim *s, unsigned line)
{
	gpio_sim_release_state(s->st, line);
}

void gpio_sim_reset(struct gpio_sim *s)
{
	for (unsigned i = 0; i < s->n; i++)
		gpio_sim_release(s, i);
	/* No edge is reported for what the reset itself changes (outputs going away). */
	for (unsigned i = 0; i < s->n; i++)
		s->st->level[i] = (uint8_t)gpio_sim_level(s, i);
}

unsigned gpio_sim_level(const struct gpio_sim *s, unsigned line)
{
	const struct gpio_sim_state *st = s->st;
	int src = s->src[line];

	if (st->dir[line] == GPIO_DIR_OUT)
		return st->out[line];
	if (src >= 0 && st->dir[src] == GPIO_DIR_OUT)
		return st->out[src];
	return st->host[line];
}

bool gpio_sim_level_active(const struct gpio_sim_state *st, unsigned line)
{
	uint8_t t = st->irq[line];

	return (t == GPIO_IRQ_LEVEL_HIGH && st->level[line]) ||
	       (t == GPIO_IRQ_LEVEL_LOW && !st->level[line]);
}

static bool gpio_edge_matches(uint8_t type, unsigned now)
{
	return (type == GPIO_IRQ_EDGE_BOTH) || (type == GPIO_IRQ_EDGE_RISING && now) ||
	       (type == GPIO_IRQ_EDGE_FALLING && !now);
}

unsigned gpio_sim_scan(struct gpio_sim *s)
{
	struct gpio_sim_state *st = s->st;
	unsigned changed = 0;

	for (unsigned i = 0; i < s->n; i++) {
		unsigned now = gpio_sim_level(s, i);

		if (now == st->level[i])
			continue;
		st->level[i] = (uint8_t)now;
		changed++;
		if (gpio_edge_matches(st->irq[i], now))
			st->latched[i] = 1;
	}
	return changed;
}

/* ---- as a backend: the state is all there is; the device changes it after the hooks ---- */

static struct gpio_sim *sim_of(struct gpio_backend *b)
{
	return container_of(b, struct gpio_sim, be);
}

static int sim_accept_dir(struct gpio_backend *b, unsigned line, uint8_t dir)
{
	(void)b, (void)line, (void)dir;
	return 0;
}

static int sim_accept_value(struct gpio_backend *b, unsigned line, unsigned v)
{
	(void)b, (void)line, (void)v;
	return 0;
}

static int sim_get_value(struct gpio_backend *b, unsigned line)
{
	return (int)gpio_sim_level(sim_of(b), line);
}

static int sim_accept_irq(struct gpio_backend *b, unsigned line, uint8_t type)
{
	(void)b, (void)line, (void)type;
	return 0;
}

static unsigned sim_scan(struct gpio_backend *b)
{
	return gpio_sim_scan(sim_of(b));
}

static void sim_reset(struct gpio_backend *b)
{
	gpio_sim_reset(sim_of(b));
}

static void sim_release(struct gpio_backend *b, unsigned line)
{
	gpio_sim_release(sim_of(b), line);
}

static int sim_host_set(struct gpio_backend *b, unsigned line, unsigned v)
{
	b->st->host[line] = v ? 1 : 0;
	return 0;
}

/* The lines live in the device (struct gpio_sim is embedded): nothing to free. */
static void sim_destroy(struct gpio_backend *b)
{
	(void)b;
}

static const struct gpio_backend_ops gpio_sim_ops = {
	.kind = "sim",
	.set_direction = sim_accept_dir,
	.set_value = sim_accept_value,
	.get_value = sim_get_value,
	.set_irq_type = sim_accept_irq,
	.scan = sim_scan,
	.reset = sim_reset,
	.release = sim_release,
	.host_set = sim_host_set,
	.destroy = sim_destroy,
};

struct gpio_backend *gpio_sim_backend(struct gpio_sim *s)
{
	s->be = (struct gpio_backend){ .ops = &gpio_sim_ops, .n = s->n, .name = s->name,
				       .st = s->st };
	return &s->be;
}
