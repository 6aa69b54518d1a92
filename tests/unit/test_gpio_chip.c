/*
 * The passthrough backend (devices/gpio_chip.c). Opening what is not a chip fails cleanly
 * everywhere; the line tests need a real chip: a gpio-sim one made through configfs
 * (/sys/kernel/config/gpio-sim, root, CONFIG_GPIO_SIM), and they SKIP visibly without it.
 * The whole path through a guest is the e2e scenario gpio-passthrough.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>
#include <ev.h>
#include <gpiod.h>

#include "devices/gpio_chip.h"
#include "devices/gpio_sim.h"

#define SIMROOT "/sys/kernel/config/gpio-sim"

static void cfg_pass(struct config_gpio *c, const char *chip)
{
	memset(c, 0, sizeof(*c));
	snprintf(c->chip, sizeof(c->chip), "%s", chip);
	c->nlines = 2;
	c->lines[0].offset = 2;
	strcpy(c->lines[0].name, "a");
	c->lines[1].offset = 0;
	strcpy(c->lines[1].name, "b");
}

static void test_open_missing(void **state)
{
	struct config_gpio c;
	struct gpio_sim_state st;

	(void)state;
	cfg_pass(&c, "/nonexistent/gpiochip99");
	errno = 0;
	assert_null(gpio_chip_open(&c, &st, true, NULL, "test"));
	assert_int_not_equal(errno, 0);
}

static void test_open_not_a_chip(void **state)
{
	struct config_gpio c;
	struct gpio_sim_state st;

	(void)state;
	cfg_pass(&c, "/dev/null");
	assert_null(gpio_chip_open(&c, &st, true, NULL, "test"));
	c.nlines = 0;
	assert_null(gpio_chip_open(&c, &st, true, NULL, "test"));
}

/* ---- on a gpio-sim chip ---- */

struct simchip {
	char dir[128];
	char chip[32];     /* gpiochipN */
	char sysfs[192];   /* /sys/devices/platform/gpio-sim.N/gpiochipN */
};

static int put(const char *path, const char *val)
{
	FILE *f = fopen(path, "w");
	int rc;

	if (!f)
		return -1;
	rc = fputs(val, f) < 0 ? -1 : 0;
	return fclose(f) == 0 ? rc : -1;
}

static int get(const char *path, char *buf, size_t size)
{
	FILE *f = fopen(path, "r");
	bool ok = f && fgets(buf, (int)size, f);

	if (f)
		fclose(f);
	if (!ok)
		return -1;
	buf[strcspn(buf, "\n")] = '\0';
	return 0;
}

static void sim_path(const struct simchip *s, char *p, size_t n, unsigned off, const char *what)
{
	snprintf(p, n, "%s/sim_gpio%u/%s", s->sysfs, off, what);
}

static void simchip_remove(struct simchip *s)
{
	char p[256];

	snprintf(p, sizeof(p), "%s/live", s->dir);
	put(p, "0");
	snprintf(p, sizeof(p), "%s/bank0", s->dir);
	rmdir(p);
	rmdir(s->dir);
}

/* A live 4-line gpio-sim chip, or -1 (no configfs, no gpio-sim, not root). */
static int simchip_make(struct simchip *s)
{
	char p[256], dev[64];

	memset(s, 0, sizeof(*s));
	snprintf(s->dir, sizeof(s->dir), SIMROOT "/xvdtest%d", (int)getpid());
	snprintf(p, sizeof(p), "%s/bank0", s->dir);
	if (mkdir(s->dir, 0755) < 0 || mkdir(p, 0755) < 0)
		goto fail;
	snprintf(p, sizeof(p), "%s/bank0/num_lines", s->dir);
	if (put(p, "4") < 0)
		goto fail;
	snprintf(p, sizeof(p), "%s/live", s->dir);
	if (put(p, "1") < 0)
		goto fail;
	snprintf(p, sizeof(p), "%s/bank0/chip_name", s->dir);
	if (get(p, s->chip, sizeof(s->chip)) < 0)
		goto fail;
	snprintf(p, sizeof(p), "%s/dev_name", s->dir);
	if (get(p, dev, sizeof(dev)) < 0)
		goto fail;
	snprintf(s->sysfs, sizeof(s->sysfs), "/sys/devices/platform/%s/%s", dev, s->chip);
	return 0;
fail:
	simchip_remove(s);
	return -1;
}

struct rig {
	struct simchip sim;
	struct config_gpio cfg;
	struct gpio_sim_state st;
	struct ev_loop *loop;
	struct gpio_backend *be;
	unsigned changed;
};

static void rig_changed(struct gpio_backend *b, void *opaque)
{
	(void)b;
	((struct rig *)opaque)->changed++;
}

static int setup(void **state)
{
	struct rig *r = calloc(1, sizeof(*r));
	char dev[64];

	if (!r || simchip_make(&r->sim) < 0) {
		free(r);
		*state = NULL;
		return 0;
	}
	snprintf(dev, sizeof(dev), "/dev/%s", r->sim.chip);
	cfg_pass(&r->cfg, dev);
	r->loop = ev_loop_new(EVFLAG_AUTO);
	r->be = gpio_chip_open(&r->cfg, &r->st, true, r->loop, "test");
	if (!r->be) {
		simchip_remove(&r->sim);
		ev_loop_destroy(r->loop);
		free(r);
		*state = NULL;
		return 0;
	}
	r->be->changed = rig_changed;
	r->be->opaque = r;
	*state = r;
	return 0;
}

static int teardown(void **state)
{
	struct rig *r = *state;

	if (!r)
		return 0;
	r->be->ops->destroy(r->be);
	ev_loop_destroy(r->loop);
	simchip_remove(&r->sim);
	free(r);
	return 0;
}

#define NEED_SIM(r)                                                                       \
	do {                                                                              \
		if (!(r)) {                                                               \
			print_message("SKIP: no gpio-sim chip (needs root, configfs at "  \
				      SIMROOT ", CONFIG_GPIO_SIM); see e2e "              \
				      "gpio-passthrough\n");                              \
			skip();                                                           \
		}                                                                         \
	} while (0)

static void sim_expect(struct rig *r, unsigned off, const char *what, const char *want)
{
	char p[256], v[32];

	sim_path(&r->sim, p, sizeof(p), off, what);
	assert_int_equal(get(p, v, sizeof(v)), 0);
	assert_string_equal(v, want);
}

static void sim_pull(struct rig *r, unsigned off, const char *pull)
{
	char p[256];

	sim_path(&r->sim, p, sizeof(p), off, "pull");
	assert_int_equal(put(p, pull), 0);
}

/* Guest line 0 is the chip's offset 2: value latched first, driven once an output. */
static void test_output(void **state)
{
	struct rig *r = *state;
	const struct gpio_backend_ops *o;

	NEED_SIM(r);
	o = r->be->ops;
	assert_int_equal(r->be->n, 2);
	assert_string_equal(r->be->name[0], "a");
	assert_int_equal(o->get_value(r->be, 0), -EPERM);   /* not requested */
	assert_int_equal(o->set_value(r->be, 0, 1), 0);
	r->st.out[0] = 1;
	assert_int_equal(o->set_direction(r->be, 0, GPIO_DIR_OUT), 0);
	r->st.dir[0] = GPIO_DIR_OUT;
	sim_expect(r, 2, "value", "1");
	assert_int_equal(o->set_value(r->be, 0, 0), 0);
	sim_expect(r, 2, "value", "0");
	o->release(r->be, 0);
	assert_int_equal(r->st.dir[0], GPIO_DIR_NONE);
	assert_int_equal(o->get_value(r->be, 0), -EPERM);
}

/* Guest line 1 is offset 0: read as the host pulls it; a falling edge latched by type. */
static void test_input_and_edge(void **state)
{
	struct rig *r = *state;
	const struct gpio_backend_ops *o;

	NEED_SIM(r);
	o = r->be->ops;
	sim_pull(r, 0, "pull-up");
	assert_int_equal(o->set_direction(r->be, 1, GPIO_DIR_IN), 0);
	r->st.dir[1] = GPIO_DIR_IN;
	assert_int_equal(o->get_value(r->be, 1), 1);
	assert_int_equal(o->set_irq_type(r->be, 1, GPIO_IRQ_EDGE_FALLING), 0);
	r->st.irq[1] = GPIO_IRQ_EDGE_FALLING;
	o->watch(r->be, true);
	sim_pull(r, 0, "pull-down");
	for (int i = 0; i < 100 && !r->changed; i++) {
		ev_run(r->loop, EVRUN_NOWAIT);
		usleep(10000);
	}
	assert_true(r->changed > 0);
	assert_int_equal(r->st.latched[1], 1);
	assert_int_equal(r->st.level[1], 0);
	/* A stopped device watches nothing: the next edge waits in the fd. */
	o->watch(r->be, false);
	r->changed = 0;
	sim_pull(r, 0, "pull-up");
	ev_run(r->loop, EVRUN_NOWAIT);
	assert_int_equal(r->changed, 0);
	o->reset(r->be);
	assert_int_equal(r->st.dir[1], GPIO_DIR_NONE);
	assert_int_equal(r->st.irq[1], GPIO_IRQ_NONE);
}

/* A line another consumer holds: -EBUSY, and the line stays released. */
static void test_busy(void **state)
{
	struct rig *r = *state;
	struct gpiod_chip *other;
	struct gpiod_line *l;

	NEED_SIM(r);
	other = gpiod_chip_open(r->cfg.chip);
	assert_non_null(other);
	l = gpiod_chip_get_line(other, 2);
	assert_non_null(l);
	assert_int_equal(gpiod_line_request_output(l, "someone-else", 0), 0);
	assert_int_equal(r->be->ops->set_direction(r->be, 0, GPIO_DIR_OUT), -EBUSY);
	assert_int_equal(r->be->ops->get_value(r->be, 0), -EPERM);
	gpiod_chip_close(other);
	assert_int_equal(r->be->ops->set_direction(r->be, 0, GPIO_DIR_OUT), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_open_missing),
		cmocka_unit_test(test_open_not_a_chip),
		cmocka_unit_test_setup_teardown(test_output, setup, teardown),
		cmocka_unit_test_setup_teardown(test_input_and_edge, setup, teardown),
		cmocka_unit_test_setup_teardown(test_busy, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
