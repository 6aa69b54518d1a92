/* Simulated GPIO lines: see gpio_sim.h for what a line reads and when an edge is latched. */
#include "devices/gpio_sim.h"

#include <errno.h>
#include <string.h>

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
static void gpio_sim_fix(struct gpio_sim *s, unsigned i)
{
	struct gpio_sim_state *st = s->st;

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
		gpio_sim_fix(s, i);
	if (fresh)
		for (unsigned i = 0; i < s->n; i++)
			st->level[i] = (uint8_t)gpio_sim_level(s, i);
	return 0;
}

void gpio_sim_release(struct gpio_sim *s, unsigned line)
{
	s->st->dir[line] = GPIO_DIR_NONE;
	s->st->out[line] = 0;
	s->st->irq[line] = GPIO_IRQ_NONE;
	s->st->latched[line] = 0;
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

bool gpio_sim_level_active(const struct gpio_sim *s, unsigned line)
{
	uint8_t t = s->st->irq[line];

	return (t == GPIO_IRQ_LEVEL_HIGH && s->st->level[line]) ||
	       (t == GPIO_IRQ_LEVEL_LOW && !s->st->level[line]);
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

int gpio_sim_find(const struct gpio_sim *s, const char *name, size_t len)
{
	for (unsigned i = 0; i < s->n; i++)
		if (strlen(s->name[i]) == len && memcmp(s->name[i], name, len) == 0)
			return (int)i;
	return -1;
}

size_t gpio_sim_names(const struct gpio_sim *s, uint8_t *buf, size_t size)
{
	size_t used = 0;

	for (unsigned i = 0; i < s->n; i++) {
		size_t len = strlen(s->name[i]) + 1;

		if (buf && used + len <= size)
			memcpy(buf + used, s->name[i], len);
		used += len;
	}
	return used;
}
