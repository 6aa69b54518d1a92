/*
 * The rule by which the dom0 kernel's ioeventfd handler claims a request (ioreq/fastpath.h):
 * the daemon must leave exactly those READY requests alone, and answer every other one.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "ioreq/fastpath.h"
#include "ioreq/privcmd.h"

#define BASE UINT64_C(0x02000200)

static ioreq_t kick(uint64_t data)
{
	return (ioreq_t){ .addr = BASE + 0x50, .data = data, .count = 1, .size = 4,
			  .state = STATE_IOREQ_READY, .dir = IOREQ_WRITE,
			  .type = IOREQ_TYPE_COPY };
}

static void test_claimed(void **state)
{
	ioreq_t r = kick(0);

	(void)state;
	assert_true(fastpath_rule(&r, BASE, 1));
	r = kick(3);
	assert_true(fastpath_rule(&r, BASE, 4));
	/* The kernel compares the low 16 bits only. */
	r = kick(0x10002);
	assert_true(fastpath_rule(&r, BASE, 4));
	/* Fields the kernel does not look at. */
	r = kick(0);
	r.count = 2;
	r.data_is_ptr = 1;
	assert_true(fastpath_rule(&r, BASE, 1));
}

static void test_left_to_us(void **state)
{
	ioreq_t r;

	(void)state;
	r = kick(4);                 /* queue index >= the queue count */
	assert_false(fastpath_rule(&r, BASE, 4));
	r = kick(0xffff);
	assert_false(fastpath_rule(&r, BASE, 4));
	r = kick(0);
	assert_false(fastpath_rule(&r, BASE, 0));   /* no ioeventfd assigned */
	r = kick(0);
	r.size = 2;                  /* only 4-byte kicks are registered */
	assert_false(fastpath_rule(&r, BASE, 1));
	r = kick(0);
	r.dir = IOREQ_READ;
	assert_false(fastpath_rule(&r, BASE, 1));
	r = kick(0);
	r.type = IOREQ_TYPE_INVALIDATE;
	assert_false(fastpath_rule(&r, BASE, 1));
	r = kick(0);
	r.addr = BASE + 0x54;        /* another register */
	assert_false(fastpath_rule(&r, BASE, 1));
	r = kick(0);
	r.addr = BASE + 0x250;       /* the next window */
	assert_false(fastpath_rule(&r, BASE, 1));
	r = kick(0);
	r.state = STATE_IOREQ_INPROCESS;   /* already claimed */
	assert_false(fastpath_rule(&r, BASE, 1));
}

/* The ioctl numbers as Linux 6.12's include/uapi/xen/privcmd.h encodes them. */
static void test_ioctl_numbers(void **state)
{
	(void)state;
	assert_int_equal(XVD_IOCTL_PRIVCMD_IRQFD, 0x40185008);
	assert_int_equal(XVD_IOCTL_PRIVCMD_IOEVENTFD, 0x40305009);
	assert_int_equal(XVD_IOCTL_PRIVCMD_RESTRICT, 0x00025006);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_claimed),
		cmocka_unit_test(test_left_to_us),
		cmocka_unit_test(test_ioctl_numbers),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
