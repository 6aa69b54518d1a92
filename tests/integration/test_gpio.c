/*
 * virtio-gpio through the real daemon on xensim (sandbox and all): the guest makes a button an
 * input with a falling-edge interrupt and an LED an output; the integrator, on the control
 * socket, presses the button (the guest's interrupt arrives) and reads the LED.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "devices/device.h"
#include "tests/integration/itest.h"
#include "tests/lib/gpio_msg.h"

#define RAM_GPA   UINT64_C(0x40000000)
#define HEAP_SIZE (4u << 20)
#define SPI       33
#define WAIT_MS   5000
#define F_IRQ     0

#define BUTTON 0
#define LED    1

static const char ini_fmt[] =
	"[guest]\nname = g1\ndiscovery = explicit\n\n"
	"[gpio \"g\"]\nmmio = 0x02000000\nirq = 33\n"
	"line = button pull-up\nline = led\ncontrol = %s\n";

struct guest {
	struct itest *t;
	struct xsim_vio vio;
	struct vdrv_mem mem;
	struct vdrv drv;
	uint64_t heap;
	char sock[200];
};

static void guest_start(struct guest *g)
{
	char ini[600];

	memset(g, 0, sizeof(*g));
	g->t = itest_new(&(struct xsim_dom_opts){ .name = "g1" });
	assert_non_null(g->t);
	snprintf(g->sock, sizeof(g->sock), "%s/gpio.sock", xsim_hub_dir(g->t->hub));
	snprintf(ini, sizeof(ini), ini_fmt, g->sock);
	assert_int_equal(itest_serve(g->t, ini), 0);
	xsim_vio_init(&g->vio, g->t->dom, 0, WIN0, SPI);
	assert_int_equal(xsim_vmem_init(&g->mem, g->t->dom, RAM_GPA, HEAP_SIZE, false), 0);
	assert_int_equal(vdrv_init(&g->drv, &g->vio.io, &g->mem,
				   VIRTIO_BIT(VIRTIO_F_VERSION_1) | VIRTIO_BIT(F_IRQ), 2, 64), 0);
	assert_int_equal(g->drv.device_id, 41);
	g->heap = g->mem.next;
}

/* Wait (interrupts, then polling) for the next used element of queue q; its token. */
static void *wait_used(struct guest *g, unsigned q)
{
	void *tok = NULL;

	vdrv_enable_irq(&g->drv, q);
	for (unsigned waits = 0; waits < WAIT_MS / 10; waits++) {
		if (vdrv_get_used(&g->drv, q, NULL, &tok) == 1)
			return tok;
		g->vio.io.wait_irq(&g->vio.io, 10);
	}
	fail_msg("queue %u: nothing returned in %d ms", q, WAIT_MS);
	return NULL;
}

static uint8_t req(struct guest *g, uint16_t type, uint16_t line, uint32_t value, uint8_t *val)
{
	uint8_t *r;

	g->mem.next = g->heap + 64;
	r = gpio_msg_send(&g->drv, &g->mem, type, line, value, g);
	assert_non_null(r);
	assert_ptr_equal(wait_used(g, 0), g);
	if (val)
		*val = r[1];
	return r[0];
}

/* One command on the control socket; its answer must be want. */
static void ctl(const char *path, const char *cmd, const char *want)
{
	char buf[256];

	assert_true(itest_ask(path, cmd, buf, sizeof(buf), WAIT_MS) > 0);
	assert_string_equal(buf, want);
}

static void test_button_and_led(void **state)
{
	struct guest g;
	uint8_t *irq_req, *irq_st, v = 0xff;
	struct vdrv_buf b[2];

	(void)state;
	guest_start(&g);
	assert_int_equal(req(&g, 3, BUTTON, 2, NULL), 0);         /* SET_DIRECTION in */
	assert_int_equal(req(&g, 6, BUTTON, 2, NULL), 0);         /* SET_IRQ_TYPE falling */
	b[0] = (struct vdrv_buf){ vdrv_alloc(&g.mem, 2, 8, (void **)&irq_req), 2, false };
	b[1] = (struct vdrv_buf){ vdrv_alloc(&g.mem, 1, 8, (void **)&irq_st), 1, true };
	g.heap = g.mem.next;
	irq_req[0] = BUTTON, irq_req[1] = 0, *irq_st = 0xee;
	assert_true(vdrv_submit(&g.drv, 1, b, 2, false, irq_st) >= 0);
	vdrv_kick(&g.drv, 1);
	assert_int_equal(req(&g, 5, LED, 1, NULL), 0);            /* SET_VALUE 1 */
	assert_int_equal(req(&g, 3, LED, 1, NULL), 0);            /* SET_DIRECTION out */

	ctl(g.sock, "get led\n", "ok 1\n");
	ctl(g.sock, "set button 0\n", "ok\n");
	assert_ptr_equal(wait_used(&g, 1), irq_st);
	assert_int_equal(*irq_st, 1);                             /* VALID */
	assert_int_equal(req(&g, 4, BUTTON, 0, &v), 0);           /* GET_VALUE */
	assert_int_equal(v, 0);
	assert_int_equal(req(&g, 5, LED, 0, NULL), 0);
	ctl(g.sock, "get led\n", "ok 0\n");
	assert_int_equal(g.vio.errors, 0);
	int st = itest_free(g.t);

	assert_true(WIFEXITED(st));
	assert_int_equal(WEXITSTATUS(st), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_button_and_led),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
