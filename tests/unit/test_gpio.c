/*
 * virtio-gpio through the real transport and a real libev loop: the test driver sends requests
 * the way Linux's gpio-virtio does (an 8-byte request, a 2-byte response; irq buffers of 2 + 1
 * bytes on the eventq, one per line) and hostile ones it never would; a real Unix socket client
 * plays the integrator on the control socket.
 *
 * Lines: 0 button (pull-up), 1 led, 2 out0, 3 in0 (loopback out0:in0), 4 lvl.
 */
#include <errno.h>
#include <poll.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>
#include <ev.h>

#include "devices/gpio_ctl.h"
#include "devices/gpio_sim.h"
#include "devices/virtio_mmio.h"
#include "tests/lib/gmem_flat.h"
#include "tests/lib/gpio_msg.h"
#include "tests/lib/unix_sock.h"
#include "tests/lib/vdriver.h"
#include "tests/lib/vdriver_direct.h"

#define RAM_GPA   UINT64_C(0x40000000)
#define RAM_SIZE  (4u << 20)
#define QSIZE     64
#define WAIT_MS   3000
#define F_IRQ     0

#define BUTTON 0
#define LED    1
#define OUT0   2
#define IN0    3
#define LVL    4
#define NLINES 5

#define T_NAMES  1
#define T_GETDIR 2
#define T_SETDIR 3
#define T_GETVAL 4
#define T_SETVAL 5
#define T_IRQ    6
#define ST_OK    0
#define ST_ERR   1
#define ST_NONE  GPIO_MSG_UNWRITTEN
#define IRQ_INVALID 0
#define IRQ_VALID   1

static const char names_block[] = "button\0led\0out0\0in0\0lvl";

/* One eventq buffer pair the test driver owns. */
struct irqbuf {
	uint64_t req_gpa, st_gpa;
	uint8_t *req, *st;
	bool posted;
};

struct rig {
	struct vdrv_direct x;
	struct vdrv drv;
	struct ev_loop *loop;
	struct config_device cfg;
	char dir[64], sock[128];
	uint64_t heap;
	long ring_maps;
	struct irqbuf irq[QSIZE];
};

static void rig_cfg(struct rig *r)
{
	static const char *const n[NLINES] = { "button", "led", "out0", "in0", "lvl" };
	struct config_gpio *g = &r->cfg.u.gpio;

	snprintf(r->dir, sizeof(r->dir), "/tmp/test_gpio.XXXXXX");
	assert_non_null(mkdtemp(r->dir));
	snprintf(r->sock, sizeof(r->sock), "%s/gpio.sock", r->dir);
	r->cfg = (struct config_device){ .type = DEV_GPIO, .devid = -1 };
	snprintf(r->cfg.name, sizeof(r->cfg.name), "g0");
	g->nlines = NLINES;
	for (unsigned i = 0; i < NLINES; i++)
		snprintf(g->lines[i].name, sizeof(g->lines[i].name), "%s", n[i]);
	g->lines[BUTTON].pull_up = true;
	g->nloops = 1;
	g->loops[0] = (struct config_gpio_loop){ OUT0, IN0 };
	snprintf(g->control, sizeof(g->control), "%s", r->sock);
}

static int drv_init(struct rig *r, uint64_t features)
{
	int rc;

	memset(&r->drv, 0, sizeof(r->drv));
	rc = vdrv_init(&r->drv, &r->x.io, &r->x.mem, VIRTIO_BIT(VIRTIO_F_VERSION_1) | features, 2,
		       QSIZE);
	for (unsigned i = 0; i < QSIZE; i++)
		r->irq[i].posted = false;
	return rc;
}

static int setup(void **state)
{
	struct rig *r = calloc(1, sizeof(*r));

	if (!r)
		return -1;
	rig_cfg(r);
	r->loop = ev_loop_new(EVFLAG_AUTO);
	if (!r->loop || vdrv_direct_open(&r->x, &r->cfg, RAM_GPA, RAM_SIZE, r->loop) < 0)
		return -1;
	/* The irq buffers live for the whole test: allocated once, before any ring. */
	for (unsigned i = 0; i < QSIZE; i++) {
		r->irq[i].req_gpa = vdrv_alloc(&r->x.mem, 2, 8, (void **)&r->irq[i].req);
		r->irq[i].st_gpa = vdrv_alloc(&r->x.mem, 1, 8, (void **)&r->irq[i].st);
	}
	if (drv_init(r, VIRTIO_BIT(F_IRQ)) < 0)
		return -1;
	r->heap = r->x.mem.next;
	r->ring_maps = gmem_flat_outstanding(r->x.gm);
	*state = r;
	return 0;
}

static int teardown(void **state)
{
	struct rig *r = *state;

	vdrv_direct_close(&r->x);
	ev_loop_destroy(r->loop);
	rmdir(r->dir);
	free(r);
	return 0;
}

static bool needs_reset(struct rig *r)
{
	return (vdrv_status(&r->drv) & VIRTIO_STATUS_NEEDS_RESET) != 0;
}

static uint64_t galloc(struct rig *r, uint32_t len, void **host)
{
	uint64_t gpa = vdrv_alloc(&r->x.mem, len, 8, host);

	assert_true(gpa != 0);
	return gpa;
}

/*
 * One requestq chain of out bytes (the request) and in bytes (the response, poisoned first);
 * returns the used length (-1: not returned). The device answers inside the kick.
 */
static int64_t raw_req(struct rig *r, const void *out, uint32_t out_len, uint8_t *resp,
		       uint32_t in_len)
{
	struct vdrv_buf b[2];
	unsigned n = 0;
	uint8_t *o, *i = NULL;
	uint32_t len;
	void *tok;

	r->x.mem.next = r->heap;
	if (out_len) {
		b[n++] = (struct vdrv_buf){ galloc(r, out_len, (void **)&o), out_len, false };
		memcpy(o, out, out_len);
	}
	if (in_len) {
		b[n++] = (struct vdrv_buf){ galloc(r, in_len, (void **)&i), in_len, true };
		memset(i, ST_NONE, in_len);
	}
	assert_true(vdrv_submit(&r->drv, 0, b, n, false, r) >= 0);
	vdrv_kick(&r->drv, 0);
	if (vdrv_get_used(&r->drv, 0, &len, &tok) != 1)
		return -1;
	assert_ptr_equal(tok, r);
	if (resp && in_len)
		memcpy(resp, i, in_len);
	return len;
}

/* A request as Linux sends it; returns the status, *val the response value. */
static uint8_t req(struct rig *r, uint16_t type, uint16_t line, uint32_t value, uint8_t *val)
{
	uint8_t q[8], resp[2];

	gpio_msg_put(q, type, line, value);
	assert_int_equal(raw_req(r, q, 8, resp, 2), 2);
	assert_true(resp[0] == ST_OK || resp[0] == ST_ERR);
	if (resp[0] == ST_ERR)
		assert_int_equal(resp[1], 0);
	if (val)
		*val = resp[1];
	return resp[0];
}

static uint8_t get(struct rig *r, uint16_t type, uint16_t line)
{
	uint8_t v = 0xaa;

	assert_int_equal(req(r, type, line, 0, &v), ST_OK);
	return v;
}

static void ok(struct rig *r, uint16_t type, uint16_t line, uint32_t value)
{
	assert_int_equal(req(r, type, line, value, NULL), ST_OK);
}

static void err(struct rig *r, uint16_t type, uint16_t line, uint32_t value)
{
	assert_int_equal(req(r, type, line, value, NULL), ST_ERR);
}

/* Post irq buffer k (2-byte request for line, 1-byte response) on the eventq and kick. */
static void irq_post_raw(struct rig *r, unsigned k, uint16_t line, uint32_t req_len,
			 uint32_t st_len)
{
	struct irqbuf *b = &r->irq[k];
	struct vdrv_buf v[2] = { { b->req_gpa, req_len, false }, { b->st_gpa, st_len, true } };

	b->req[0] = (uint8_t)line;
	b->req[1] = (uint8_t)(line >> 8);
	*b->st = ST_NONE;
	b->posted = true;
	assert_true(vdrv_submit(&r->drv, 1, v, 2, false, b) >= 0);
	vdrv_kick(&r->drv, 1);
}

static void irq_post(struct rig *r, unsigned k, uint16_t line)
{
	irq_post_raw(r, k, line, 2, 1);
}

/* The next returned irq buffer: its index, *st its status; -1 when none is returned. */
static int irq_take(struct rig *r, uint8_t *st)
{
	uint32_t len;
	void *tok;

	if (vdrv_get_used(&r->drv, 1, &len, &tok) != 1)
		return -1;
	struct irqbuf *b = tok;

	assert_true(b >= r->irq && b < r->irq + QSIZE);
	assert_true(b->posted);
	b->posted = false;
	assert_int_equal(len, 1);
	*st = *b->st;
	return (int)(b - r->irq);
}

static void expect_irq(struct rig *r, int k, uint8_t want)
{
	uint8_t st = 0xff;

	assert_int_equal(irq_take(r, &st), k);
	assert_int_equal(st, want);
}

static void expect_no_irq(struct rig *r)
{
	uint8_t st;

	assert_int_equal(irq_take(r, &st), -1);
}

/* ---- the control socket ------------------------------------------------------------------ */

static int ctl_connect(struct rig *r)
{
	int fd = unix_sock_connect(r->sock);

	assert_true(fd >= 0);
	return fd;
}

static double now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

/* An answer is complete at a line starting "ok" or "err" (or the server closing). */
static bool answer_done(const char *buf, bool closed)
{
	const char *line = buf;

	if (closed)
		return true;
	for (const char *nl; (nl = strchr(line, '\n')); line = nl + 1)
		if (!strncmp(line, "ok", 2) || !strncmp(line, "err", 3))
			return true;
	return false;
}

/* Read fd's answer while the loop runs, up to WAIT_MS; returns what came (NUL-terminated). */
static size_t ctl_read(struct rig *r, int fd, char *buf, size_t size, int wait_ms)
{
	size_t got = 0;
	bool closed = false;
	double end = now_ms() + wait_ms;

	buf[0] = '\0';
	while (!answer_done(buf, closed) && now_ms() < end) {
		struct pollfd p = { .fd = fd, .events = POLLIN };
		ssize_t n;

		ev_run(r->loop, EVRUN_NOWAIT);
		if (poll(&p, 1, 5) <= 0)
			continue;
		n = recv(fd, buf + got, size - 1 - got, MSG_DONTWAIT);
		if (n < 0 && errno == EAGAIN)
			continue;
		if (n <= 0) {
			closed = true;   /* end of file, or reset: a closed client */
			continue;
		}
		got += (size_t)n;
		buf[got] = '\0';
	}
	return got;
}

static void ctl_cmd(struct rig *r, int fd, const char *cmd, char *buf, size_t size)
{
	assert_int_equal(send(fd, cmd, strlen(cmd), MSG_NOSIGNAL), (ssize_t)strlen(cmd));
	ctl_read(r, fd, buf, size, WAIT_MS);
}

/* One command on a fresh connection; the answer must be `want` exactly. */
static void ctl_expect(struct rig *r, const char *cmd, const char *want)
{
	char buf[GPIO_CTL_OUT_MAX + 1];
	int fd = ctl_connect(r);

	ctl_cmd(r, fd, cmd, buf, sizeof(buf));
	assert_string_equal(buf, want);
	close(fd);
}

/* ---- negotiation and config space -------------------------------------------------------- */

static void test_identity_and_config(void **state)
{
	struct rig *r = *state;
	uint8_t cfg[8];

	assert_int_equal(r->drv.device_id, 41);
	assert_true(r->drv.device_features & VIRTIO_BIT(F_IRQ));
	assert_true(vdrv_status(&r->drv) & VIRTIO_STATUS_DRIVER_OK);
	vdrv_config_read(&r->drv, 0, cfg, 8);
	assert_int_equal(cfg[0] | cfg[1] << 8, NLINES);
	assert_int_equal(cfg[2] | cfg[3], 0);
	assert_int_equal(cfg[4] | cfg[5] << 8 | cfg[6] << 16 | cfg[7] << 24, sizeof(names_block));
	/* Past the 8 bytes nothing answers (the transport refuses, all-ones). */
	assert_int_equal(r->x.io.read(&r->x.io, VIRTIO_MMIO_CONFIG + 8, 1), UINT64_MAX);
}

static void test_get_line_names(void **state)
{
	struct rig *r = *state;
	uint8_t q[8], resp[1 + sizeof(names_block) + 1];

	gpio_msg_put(q, T_NAMES, 0, 0);
	assert_int_equal(raw_req(r, q, 8, resp, 1 + sizeof(names_block)),
			 1 + sizeof(names_block));
	assert_int_equal(resp[0], ST_OK);
	assert_memory_equal(resp + 1, names_block, sizeof(names_block));
	/* A buffer of any other size gets ERR and no names: only its status byte is written. */
	assert_int_equal(raw_req(r, q, 8, resp, 2 + sizeof(names_block)), 1);
	assert_int_equal(resp[0], ST_ERR);
	assert_int_equal(resp[1], ST_NONE);
	assert_int_equal(raw_req(r, q, 8, resp, 2), 1);
	assert_int_equal(resp[0], ST_ERR);
	assert_int_equal(raw_req(r, q, 8, NULL, 0), 0);
}

/* ---- directions and values --------------------------------------------------------------- */

static void test_direction_and_value(void **state)
{
	struct rig *r = *state;

	for (unsigned i = 0; i < NLINES; i++)
		assert_int_equal(get(r, T_GETDIR, (uint16_t)i), GPIO_DIR_NONE);
	/* The bias: a pull-up reads 1 until driven, the others 0. */
	assert_int_equal(get(r, T_GETVAL, BUTTON), 1);
	assert_int_equal(get(r, T_GETVAL, LED), 0);
	ok(r, T_SETDIR, LED, GPIO_DIR_OUT);
	assert_int_equal(get(r, T_GETDIR, LED), GPIO_DIR_OUT);
	ok(r, T_SETVAL, LED, 1);
	assert_int_equal(get(r, T_GETVAL, LED), 1);
	ctl_expect(r, "get led\n", "ok 1\n");
	ok(r, T_SETVAL, LED, 0);
	ctl_expect(r, "get led\n", "ok 0\n");
	ok(r, T_SETDIR, BUTTON, GPIO_DIR_IN);
	assert_int_equal(get(r, T_GETDIR, BUTTON), GPIO_DIR_IN);
	ctl_expect(r, "set button 0\n", "ok\n");
	assert_int_equal(get(r, T_GETVAL, BUTTON), 0);
}

/* Linux sets the value first, then the direction: the value is latched for the output. */
static void test_value_latched_until_output(void **state)
{
	struct rig *r = *state;

	ok(r, T_SETDIR, LED, GPIO_DIR_IN);
	ok(r, T_SETVAL, LED, 1);
	assert_int_equal(get(r, T_GETVAL, LED), 0);   /* an input reads what drives it */
	ok(r, T_SETDIR, LED, GPIO_DIR_OUT);
	assert_int_equal(get(r, T_GETVAL, LED), 1);
	/* Direction none discards the line's state: the latch too. */
	ok(r, T_SETDIR, LED, GPIO_DIR_NONE);
	assert_int_equal(get(r, T_GETDIR, LED), GPIO_DIR_NONE);
	ok(r, T_SETDIR, LED, GPIO_DIR_OUT);
	assert_int_equal(get(r, T_GETVAL, LED), 0);
}

/* ---- interrupts -------------------------------------------------------------------------- */

static void test_loopback_edge_irq(void **state)
{
	struct rig *r = *state;
	unsigned before;

	ok(r, T_SETDIR, IN0, GPIO_DIR_IN);
	ok(r, T_IRQ, IN0, GPIO_IRQ_EDGE_RISING);
	irq_post(r, 0, IN0);
	expect_no_irq(r);
	ok(r, T_SETVAL, OUT0, 0);
	ok(r, T_SETDIR, OUT0, GPIO_DIR_OUT);
	expect_no_irq(r);
	before = r->x.irqs;
	ok(r, T_SETVAL, OUT0, 1);           /* the guest's output drives its input: an edge */
	expect_irq(r, 0, IRQ_VALID);
	assert_true(r->x.irqs > before);
	assert_int_equal(get(r, T_GETVAL, IN0), 1);
	/* Masked now: a falling edge is not a rising one, and a rising one waits latched. */
	ok(r, T_SETVAL, OUT0, 0);
	ok(r, T_SETVAL, OUT0, 1);
	expect_no_irq(r);
	irq_post(r, 1, IN0);
	expect_irq(r, 1, IRQ_VALID);        /* the latched edge, reported on unmask */
	/* Re-armed with nothing latched: quiet until the next rising edge. */
	irq_post(r, 2, IN0);
	expect_no_irq(r);
	ok(r, T_SETVAL, OUT0, 0);
	expect_no_irq(r);
	ok(r, T_SETVAL, OUT0, 1);
	expect_irq(r, 2, IRQ_VALID);
	/* The input falls back to what the host drives once OUT0 is no output. */
	ok(r, T_SETDIR, OUT0, GPIO_DIR_IN);
	assert_int_equal(get(r, T_GETVAL, IN0), 0);
}

static void test_edge_both_and_falling(void **state)
{
	struct rig *r = *state;

	ok(r, T_SETDIR, BUTTON, GPIO_DIR_IN);
	ok(r, T_IRQ, BUTTON, GPIO_IRQ_EDGE_BOTH);
	ctl_expect(r, "set button 0\n", "ok\n");   /* latched while masked */
	irq_post(r, 0, BUTTON);
	expect_irq(r, 0, IRQ_VALID);
	irq_post(r, 1, BUTTON);
	expect_no_irq(r);
	ctl_expect(r, "set button 1\n", "ok\n");
	expect_irq(r, 1, IRQ_VALID);
	/* Disable and enable again: what happened in between is discarded. */
	ok(r, T_IRQ, BUTTON, GPIO_IRQ_NONE);
	ctl_expect(r, "set button 0\n", "ok\n");
	ok(r, T_IRQ, BUTTON, GPIO_IRQ_EDGE_FALLING);
	irq_post(r, 2, BUTTON);
	expect_no_irq(r);
	ctl_expect(r, "set button 1\n", "ok\n");
	expect_no_irq(r);
	ctl_expect(r, "set button 0\n", "ok\n");
	expect_irq(r, 2, IRQ_VALID);
}

static void test_level_irq(void **state)
{
	struct rig *r = *state;

	ok(r, T_SETDIR, LVL, GPIO_DIR_IN);
	ok(r, T_IRQ, LVL, GPIO_IRQ_LEVEL_HIGH);
	irq_post(r, 0, LVL);
	expect_no_irq(r);
	ctl_expect(r, "set lvl 1\n", "ok\n");
	expect_irq(r, 0, IRQ_VALID);            /* once: masked until posted again */
	ctl_expect(r, "set lvl 0\n", "ok\n");
	ctl_expect(r, "set lvl 1\n", "ok\n");
	expect_no_irq(r);                       /* a level is not latched while masked */
	irq_post(r, 1, LVL);
	expect_irq(r, 1, IRQ_VALID);            /* still high at the unmask: again */
	ctl_expect(r, "set lvl 0\n", "ok\n");
	irq_post(r, 2, LVL);
	expect_no_irq(r);                       /* low: held quietly */
	ok(r, T_IRQ, LVL, GPIO_IRQ_NONE);
	expect_irq(r, 2, IRQ_INVALID);
	ok(r, T_IRQ, LVL, GPIO_IRQ_LEVEL_LOW);
	irq_post(r, 3, LVL);
	expect_irq(r, 3, IRQ_VALID);            /* low now, and low is the active level */
}

/* Disabling returns the held buffer INVALID, before the SET_IRQ_TYPE answer is published. */
static void test_disable_returns_invalid_first(void **state)
{
	struct rig *r = *state;
	uint8_t q[8], resp[2];
	struct vdrv_buf b[2];
	uint8_t *o, *i;
	uint32_t len;
	void *tok;

	ok(r, T_SETDIR, BUTTON, GPIO_DIR_IN);
	ok(r, T_IRQ, BUTTON, GPIO_IRQ_EDGE_RISING);
	irq_post(r, 0, BUTTON);
	r->x.mem.next = r->heap;
	gpio_msg_put(q, T_IRQ, BUTTON, GPIO_IRQ_NONE);
	b[0] = (struct vdrv_buf){ galloc(r, 8, (void **)&o), 8, false };
	b[1] = (struct vdrv_buf){ galloc(r, 2, (void **)&i), 2, true };
	memcpy(o, q, 8);
	assert_true(vdrv_submit(&r->drv, 0, b, 2, false, r) >= 0);
	vdrv_kick(&r->drv, 0);
	assert_int_equal(vdrv_get_used(&r->drv, 0, &len, &tok), 1);
	memcpy(resp, i, 2);
	assert_int_equal(resp[0], ST_OK);
	expect_irq(r, 0, IRQ_INVALID);
	/* Direction none releases the line's interrupt the same way. */
	ok(r, T_IRQ, BUTTON, GPIO_IRQ_EDGE_RISING);
	irq_post(r, 1, BUTTON);
	ok(r, T_SETDIR, BUTTON, GPIO_DIR_NONE);
	expect_irq(r, 1, IRQ_INVALID);
	irq_post(r, 2, BUTTON);
	expect_irq(r, 2, IRQ_INVALID);          /* no interrupt type any more */
}

/* ---- the control socket ------------------------------------------------------------------ */

static void test_control_button_and_led(void **state)
{
	struct rig *r = *state;
	char buf[GPIO_CTL_OUT_MAX + 1];
	unsigned before;
	int fd;

	/* The guest: button is an input with a falling-edge interrupt, led an output. */
	ok(r, T_SETDIR, BUTTON, GPIO_DIR_IN);
	ok(r, T_IRQ, BUTTON, GPIO_IRQ_EDGE_FALLING);
	irq_post(r, 0, BUTTON);
	ok(r, T_SETVAL, LED, 1);
	ok(r, T_SETDIR, LED, GPIO_DIR_OUT);
	/* The integrator presses the button and reads the LED on one connection. */
	fd = ctl_connect(r);
	before = r->x.irqs;
	ctl_cmd(r, fd, "set button 0\n", buf, sizeof(buf));
	assert_string_equal(buf, "ok\n");
	assert_true(r->x.irqs > before);
	expect_irq(r, 0, IRQ_VALID);
	ctl_cmd(r, fd, "get led\r\n", buf, sizeof(buf));
	assert_string_equal(buf, "ok 1\n");
	ctl_cmd(r, fd, "list\n", buf, sizeof(buf));
	assert_string_equal(buf,
			    "0 button dir=in value=0 irq=edge-falling\n"
			    "1 led dir=out value=1 irq=none\n"
			    "2 out0 dir=none value=0 irq=none\n"
			    "3 in0 dir=none value=0 irq=none\n"
			    "4 lvl dir=none value=0 irq=none\n"
			    "ok\n");
	/* Two commands in one write: two answers, in order. */
	ctl_cmd(r, fd, "get button\nget nosuch\n", buf, sizeof(buf));
	if (!strchr(buf, 'e'))
		ctl_read(r, fd, buf + strlen(buf), sizeof(buf) - strlen(buf), WAIT_MS);
	assert_string_equal(buf, "ok 0\nerr no such line\n");
	close(fd);
	ctl_expect(r, "frobnicate\n", "err unknown command (list, get NAME, set NAME 0|1)\n");
	ctl_expect(r, "set led 2\n", "err usage: get NAME | set NAME 0|1\n");
	ctl_expect(r, "set led 1 extra\n", "err usage: get NAME | set NAME 0|1\n");
	ctl_expect(r, "list all\n", "err unknown command (list, get NAME, set NAME 0|1)\n");
	ctl_expect(r, "\n", "err unknown command (list, get NAME, set NAME 0|1)\n");
	/* The host drives an output: the guest's value wins. */
	ctl_expect(r, "set led 0\n", "ok\n");
	ctl_expect(r, "get led\n", "ok 1\n");
}

static void test_control_bounds(void **state)
{
	struct rig *r = *state;
	char buf[GPIO_CTL_OUT_MAX + 1], line[GPIO_CTL_LINE_MAX + 16];
	int fds[GPIO_CTL_CLIENTS + 1];

	/* A line longer than the bound: an error, then the client is closed. */
	int fd = ctl_connect(r);

	memset(line, 'x', sizeof(line));
	assert_int_equal(send(fd, line, sizeof(line), MSG_NOSIGNAL), (ssize_t)sizeof(line));
	ctl_read(r, fd, buf, sizeof(buf), WAIT_MS);
	assert_string_equal(buf, "err line too long\n");
	ctl_read(r, fd, buf, sizeof(buf), WAIT_MS);
	assert_string_equal(buf, "");              /* end of file: closed */
	close(fd);
	/* GPIO_CTL_CLIENTS at once are served; one more waits until one leaves. */
	for (unsigned i = 0; i <= GPIO_CTL_CLIENTS; i++)
		fds[i] = ctl_connect(r);
	for (unsigned i = 0; i < GPIO_CTL_CLIENTS; i++) {
		ctl_cmd(r, fds[i], "get led\n", buf, sizeof(buf));
		assert_string_equal(buf, "ok 0\n");
	}
	assert_int_equal(send(fds[GPIO_CTL_CLIENTS], "get led\n", 8, MSG_NOSIGNAL), 8);
	ctl_read(r, fds[GPIO_CTL_CLIENTS], buf, sizeof(buf), 200);
	assert_string_equal(buf, "");              /* not accepted yet: no answer */
	close(fds[0]);
	ctl_read(r, fds[GPIO_CTL_CLIENTS], buf, sizeof(buf), WAIT_MS);
	assert_string_equal(buf, "ok 0\n");
	for (unsigned i = 1; i <= GPIO_CTL_CLIENTS; i++)
		close(fds[i]);
	ctl_expect(r, "get button\n", "ok 1\n");
}


/*
 * A client that sends many commands and does not read: its answers fill the socket, the device
 * stops reading it (one answer held at most) and serves others meanwhile; once the client
 * reads, every answer arrives, in order.
 */
static void test_control_slow_reader(void **state)
{
	struct rig *r = *state;
	enum { NCMD = 2000 };
	static char cmds[NCMD * 5], in[64 * 1024];
	unsigned oks = 0;
	size_t keep = 0;
	double end;
	int fd = ctl_connect(r);

	for (unsigned i = 0; i < NCMD; i++)
		memcpy(cmds + 5 * i, "list\n", 5);
	assert_int_equal(send(fd, cmds, sizeof(cmds), MSG_NOSIGNAL), (ssize_t)sizeof(cmds));
	for (unsigned i = 0; i < 200; i++)
		ev_run(r->loop, EVRUN_NOWAIT);
	ctl_expect(r, "get button\n", "ok 1\n");   /* another client is served meanwhile */
	end = now_ms() + WAIT_MS;
	while (oks < NCMD && now_ms() < end) {
		ssize_t n;

		ev_run(r->loop, EVRUN_NOWAIT);
		n = recv(fd, in + keep, sizeof(in) - 1 - keep, MSG_DONTWAIT);
		if (n <= 0) {
			struct pollfd p = { .fd = fd, .events = POLLIN };

			poll(&p, 1, 5);
			continue;
		}
		keep += (size_t)n;
		in[keep] = '\0';
		/* Count whole answers; keep a partial last line for the next read. */
		char *line = in, *nl;

		while ((nl = strchr(line, '\n'))) {
			oks += strncmp(line, "ok", 2) == 0;
			line = nl + 1;
		}
		keep = strlen(line);
		memmove(in, line, keep + 1);
	}
	assert_int_equal(oks, NCMD);
	close(fd);
}

/* ---- hostile requests -------------------------------------------------------------------- */

static void test_hostile_requests(void **state)
{
	struct rig *r = *state;
	uint8_t q[16] = { 0 }, resp[4];

	err(r, T_GETVAL, NLINES, 0);              /* no such line */
	err(r, T_GETDIR, 0xffff, 0);
	err(r, 0, LED, 0);                        /* unknown types */
	err(r, 7, LED, 0);
	err(r, 0xffff, LED, 0);
	err(r, T_SETDIR, LED, 3);                 /* out-of-range values */
	err(r, T_SETDIR, LED, 0x100 | GPIO_DIR_OUT);
	err(r, T_SETVAL, LED, 2);
	err(r, T_IRQ, BUTTON, 5);
	err(r, T_IRQ, BUTTON, 0x10);
	ok(r, T_SETDIR, LED, GPIO_DIR_OUT);
	err(r, T_IRQ, LED, GPIO_IRQ_EDGE_RISING);  /* interrupts on an output */
	ok(r, T_SETDIR, BUTTON, GPIO_DIR_IN);
	ok(r, T_IRQ, BUTTON, GPIO_IRQ_LEVEL_LOW);
	err(r, T_SETDIR, BUTTON, GPIO_DIR_OUT);   /* an output with an interrupt enabled */
	assert_int_equal(get(r, T_GETDIR, BUTTON), GPIO_DIR_IN);
	/* Wrong sizes: a short or long request, a short or long response. */
	gpio_msg_put(q, T_GETVAL, BUTTON, 0);
	assert_int_equal(raw_req(r, q, 4, resp, 2), 2);
	assert_int_equal(resp[0], ST_ERR);
	assert_int_equal(raw_req(r, q, 12, resp, 2), 2);
	assert_int_equal(resp[0], ST_ERR);
	assert_int_equal(raw_req(r, q, 8, resp, 1), 1);
	assert_int_equal(resp[0], ST_ERR);
	assert_int_equal(raw_req(r, q, 8, resp, 3), 2);
	assert_int_equal(resp[0], ST_ERR);
	assert_int_equal(resp[2], ST_NONE);
	/* Nothing writable: it cannot be answered, it comes back unanswered. */
	assert_int_equal(raw_req(r, q, 8, NULL, 0), 0);
	assert_int_equal(raw_req(r, NULL, 0, resp, 2), 2);
	assert_int_equal(resp[0], ST_ERR);
	/* Through it all the device serves. */
	assert_false(needs_reset(r));
	assert_int_equal(get(r, T_GETVAL, BUTTON), 1);
}

static void test_hostile_irq_buffers(void **state)
{
	struct rig *r = *state;

	irq_post(r, 0, NLINES);                   /* no such line */
	expect_irq(r, 0, IRQ_INVALID);
	irq_post(r, 1, LVL);                      /* no interrupt type */
	expect_irq(r, 1, IRQ_INVALID);
	ok(r, T_SETDIR, LED, GPIO_DIR_OUT);
	irq_post(r, 2, LED);                      /* an output */
	expect_irq(r, 2, IRQ_INVALID);
	ok(r, T_SETDIR, LVL, GPIO_DIR_IN);
	ok(r, T_IRQ, LVL, GPIO_IRQ_EDGE_RISING);
	irq_post_raw(r, 3, LVL, 1, 1);            /* short request */
	expect_irq(r, 3, IRQ_INVALID);
	irq_post_raw(r, 4, LVL, 2, 2);            /* long response */
	assert_int_equal(irq_take(r, &(uint8_t){ 0 }), 4);
	/* One buffer per line: every further one comes back at once, the first stays. */
	irq_post(r, 5, LVL);
	for (unsigned k = 6; k < 40; k++) {
		irq_post(r, k, LVL);
		expect_irq(r, (int)k, IRQ_INVALID);
	}
	ctl_expect(r, "set lvl 1\n", "ok\n");
	expect_irq(r, 5, IRQ_VALID);
	assert_false(needs_reset(r));
}

/* The eventq without VIRTIO_GPIO_F_IRQ does not exist: no interrupt type can be set. */
static void test_no_irq_feature(void **state)
{
	struct rig *r = *state;

	assert_int_equal(drv_init(r, 0), 0);
	r->heap = r->x.mem.next;
	ok(r, T_SETDIR, BUTTON, GPIO_DIR_IN);
	err(r, T_IRQ, BUTTON, GPIO_IRQ_EDGE_RISING);
	irq_post(r, 0, BUTTON);                   /* kicks of the eventq are ignored */
	expect_no_irq(r);
	assert_false(needs_reset(r));
}

/* A broken ring: NEEDS_RESET; held buffers are dropped by the reset; then all is well. */
static void test_broken_ring_and_reset(void **state)
{
	struct rig *r = *state;

	ok(r, T_SETDIR, BUTTON, GPIO_DIR_IN);
	ok(r, T_IRQ, BUTTON, GPIO_IRQ_EDGE_FALLING);
	irq_post(r, 0, BUTTON);
	r->drv.vq[0].avail->idx = (uint16_t)(r->drv.vq[0].avail_idx + QSIZE + 3);
	vdrv_kick(&r->drv, 0);
	assert_true(needs_reset(r));
	/* The host still talks to the lines; nothing reaches the broken device's guest. */
	ctl_expect(r, "set button 0\n", "ok\n");
	expect_no_irq(r);
	vdrv_reset(&r->drv);
	assert_int_equal(gmem_flat_outstanding(r->x.gm), 0);
	assert_int_equal(drv_init(r, VIRTIO_BIT(F_IRQ)), 0);
	r->heap = r->x.mem.next;
	/* The reset gave the guest's side of every line back: directions, types. */
	assert_int_equal(get(r, T_GETDIR, BUTTON), GPIO_DIR_NONE);
	assert_int_equal(get(r, T_GETVAL, BUTTON), 0);   /* what the host drives stays */
	irq_post(r, 1, BUTTON);
	expect_irq(r, 1, IRQ_INVALID);
	assert_int_equal(gmem_flat_outstanding(r->x.gm), r->ring_maps);
}

/* A config that cannot serve: the control path is a regular file, the device is refused. */
static void test_control_path_taken(void **state)
{
	struct rig *r = calloc(1, sizeof(*r));
	struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);
	struct vdrv_direct x;
	FILE *f;

	(void)state;
	assert_non_null(r);
	rig_cfg(r);
	f = fopen(r->sock, "w");
	assert_non_null(f);
	fclose(f);
	assert_int_equal(vdrv_direct_open(&x, &r->cfg, RAM_GPA, RAM_SIZE, loop), -EEXIST);
	unlink(r->sock);
	r->cfg.u.gpio.nlines = 0;
	assert_int_equal(vdrv_direct_open(&x, &r->cfg, RAM_GPA, RAM_SIZE, loop), -EINVAL);
	rmdir(r->dir);
	ev_loop_destroy(loop);
	free(r);
}

int main(void)
{
#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)
	const struct CMUnitTest tests[] = {
		T(test_identity_and_config),
		T(test_get_line_names),
		T(test_direction_and_value),
		T(test_value_latched_until_output),
		T(test_loopback_edge_irq),
		T(test_edge_both_and_falling),
		T(test_level_irq),
		T(test_disable_returns_invalid_first),
		T(test_control_button_and_led),
		T(test_control_bounds),
		T(test_control_slow_reader),
		T(test_hostile_requests),
		T(test_hostile_irq_buffers),
		T(test_no_irq_feature),
		T(test_broken_ring_and_reset),
		cmocka_unit_test(test_control_path_taken),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
