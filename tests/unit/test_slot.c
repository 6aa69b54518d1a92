/*
 * The slot protocol of ioreq/slot.h, one thread at a time: the kernel's claim rule as Linux's
 * privcmd.c applies it, and what slot_take()/slot_answer() do with each state a slot can be in
 * when we look, including a kernel handler that holds it or takes it from under our answer.
 * (tests/integration/test_slot_race.c forces every interleaving with the real daemon and
 * xensim's kernel; tests/unit/test_slot_tsan.c runs the three parties as threads under TSan.)
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "ioreq/privcmd.h"
#include "ioreq/slot.h"

#define BASE UINT64_C(0x02000200)

static const struct slot_kfd one_window[] = { { BASE, 4 } };
static const struct slot_kernel kernel4 = { one_window, 1 };

static ioreq_t kick(uint64_t data)
{
	return (ioreq_t){ .addr = BASE + 0x50, .data = data, .count = 1, .size = 4,
			  .state = STATE_IOREQ_READY, .dir = IOREQ_WRITE,
			  .type = IOREQ_TYPE_COPY };
}

static bool claims(const ioreq_t *r, unsigned nq)
{
	const struct slot_kfd w[] = { { BASE, nq } };
	const struct slot_kernel k = { w, 1 };

	return slot_kernel_claims(&k, r);
}

static void test_claimed(void **state)
{
	ioreq_t r = kick(0);

	(void)state;
	assert_true(claims(&r, 1));
	r = kick(3);
	assert_true(claims(&r, 4));
	/* The kernel compares the low 16 bits only. */
	r = kick(0x10002);
	assert_true(claims(&r, 4));
	/* Fields the kernel does not look at. */
	r = kick(0);
	r.count = 2;
	r.data_is_ptr = 1;
	assert_true(claims(&r, 1));
}

static void test_left_to_us(void **state)
{
	ioreq_t r;

	(void)state;
	r = kick(4);                 /* queue index >= the queue count */
	assert_false(claims(&r, 4));
	r = kick(0xffff);
	assert_false(claims(&r, 4));
	r = kick(0);
	assert_false(claims(&r, 0));   /* no ioeventfd assigned */
	r = kick(0);
	r.size = 2;                  /* only 4-byte kicks are registered */
	assert_false(claims(&r, 1));
	r = kick(0);
	r.dir = IOREQ_READ;
	assert_false(claims(&r, 1));
	r = kick(0);
	r.type = IOREQ_TYPE_INVALIDATE;
	assert_false(claims(&r, 1));
	r = kick(0);
	r.addr = BASE + 0x54;        /* another register */
	assert_false(claims(&r, 1));
	r = kick(0);
	r.addr = BASE + 0x250;       /* the next window */
	assert_false(claims(&r, 1));
	r = kick(0);
	r.state = STATE_IOREQ_INPROCESS;   /* already claimed */
	assert_false(claims(&r, 1));
	assert_false(slot_kernel_claims(NULL, &r));
}

/* The ioctl numbers as Linux 6.12's include/uapi/xen/privcmd.h encodes them. */
static void test_ioctl_numbers(void **state)
{
	(void)state;
	assert_int_equal(XVD_IOCTL_PRIVCMD_IRQFD, 0x40185008);
	assert_int_equal(XVD_IOCTL_PRIVCMD_IOEVENTFD, 0x40305009);
	assert_int_equal(XVD_IOCTL_PRIVCMD_RESTRICT, 0x00025006);
}

/* The state nibble is where slot.c reads and writes it: the low half of byte 30. */
static void test_state_byte(void **state)
{
	ioreq_t r = { 0 };

	(void)state;
	for (unsigned s = 0; s < 16; s++) {
		r.state = s & 0xf;
		r.dir = 1;
		r.data_is_ptr = 1;
		assert_int_equal(((const uint8_t *)&r)[30] & 0x0f, s);
		assert_int_equal(slot_state(&r), s);
	}
}

static void test_take_each_state(void **state)
{
	struct slot_stats st = { 0 };
	ioreq_t slot = kick(9), req;

	(void)state;
	/* Ours: a READY request, on either kind of server. */
	assert_int_equal(slot_take(&slot, NULL, &req, &st), SLOT_OURS);
	assert_memory_equal(&req, &slot, sizeof(req));
	assert_int_equal(slot_take(&slot, &kernel4, &req, &st), SLOT_OURS);   /* queue 9 > 3 */
	/* The kernel's: a READY kick its rule matches (on the server it shares only). */
	slot = kick(1);
	assert_int_equal(slot_take(&slot, &kernel4, &req, &st), SLOT_KERNEL);
	assert_int_equal(st.kernel_left, 1);
	assert_int_equal(slot_take(&slot, NULL, &req, &st), SLOT_OURS);
	/* Nothing: not posted, answered, or answered and consumed. */
	slot.state = STATE_IOREQ_NONE;
	assert_int_equal(slot_take(&slot, &kernel4, &req, &st), SLOT_NOTHING);
	slot.state = STATE_IORESP_READY;
	assert_int_equal(slot_take(&slot, &kernel4, &req, &st), SLOT_NOTHING);
	/* Held by a kernel handler that never finishes (here): busy, after a bounded wait. */
	slot.state = STATE_IOREQ_INPROCESS;
	assert_int_equal(slot_take(&slot, &kernel4, &req, &st), SLOT_BUSY);
	assert_int_equal(st.kernel_waits, 1);
	assert_int_equal(st.kernel_busy, 1);
	/* Where no kernel shares the server, INPROCESS is nobody's request: not ours. */
	assert_int_equal(slot_take(&slot, NULL, &req, &st), SLOT_NOTHING);
}

static void test_answer(void **state)
{
	struct slot_stats st = { 0 };
	ioreq_t slot = kick(9), req;

	(void)state;
	slot.dir = IOREQ_READ;
	slot.data = 0;
	assert_int_equal(slot_take(&slot, &kernel4, &req, &st), SLOT_OURS);
	assert_int_equal(slot_answer(&slot, &kernel4, &req, 0x1234, &st), SLOT_ANSWERED);
	assert_int_equal(slot.state, STATE_IORESP_READY);
	assert_int_equal(slot.data, 0x1234);
	/* The other bits of the state's byte are left as they were. */
	assert_int_equal(slot.dir, IOREQ_READ);
	/* A second answer to the same request is refused: the slot is no longer READY. */
	assert_int_equal(slot_answer(&slot, &kernel4, &req, 0x1234, &st), SLOT_LOST);
	assert_int_equal(st.lost, 1);
	/* So is an answer to a request that was replaced by another one meanwhile. */
	slot = kick(9);
	assert_int_equal(slot_take(&slot, NULL, &req, &st), SLOT_OURS);
	slot.state = STATE_IOREQ_NONE;
	assert_int_equal(slot_answer(&slot, NULL, &req, 0, &st), SLOT_LOST);
	assert_int_equal(slot.state, STATE_IOREQ_NONE);
	/* A write's data stays what the guest wrote. */
	slot = kick(9);
	assert_int_equal(slot_take(&slot, NULL, &req, &st), SLOT_OURS);
	assert_int_equal(slot_answer(&slot, NULL, &req, 0xdead, &st), SLOT_ANSWERED);
	assert_int_equal(slot.data, 9);
}

/*
 * The kernel's handler takes the slot between our copy and our answer (a write its rule does
 * not match): we keep the answer while it holds the slot, write it once it gives it back.
 */
static void test_answer_held(void **state)
{
	struct slot_stats st = { 0 };
	ioreq_t slot = kick(9), req;

	(void)state;
	assert_int_equal(slot_take(&slot, &kernel4, &req, &st), SLOT_OURS);
	slot.state = STATE_IOREQ_INPROCESS;
	assert_int_equal(slot_answer(&slot, &kernel4, &req, 0, &st), SLOT_HELD);
	assert_int_equal(st.held, 1);
	assert_int_equal(slot.state, STATE_IOREQ_INPROCESS);
	assert_int_equal(slot_answer_again(&slot, &kernel4, &req, &st), SLOT_HELD);
	slot.state = STATE_IOREQ_READY;   /* the handler found no ioeventfd: READY again */
	assert_int_equal(slot_answer_again(&slot, &kernel4, &req, &st), SLOT_ANSWERED);
	assert_int_equal(slot.state, STATE_IORESP_READY);
	/* Where no kernel shares the server, INPROCESS cannot be the kernel's: lost. */
	slot = kick(9);
	assert_int_equal(slot_take(&slot, NULL, &req, &st), SLOT_OURS);
	slot.state = STATE_IOREQ_INPROCESS;
	assert_int_equal(slot_answer(&slot, NULL, &req, 0, &st), SLOT_LOST);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_claimed),
		cmocka_unit_test(test_left_to_us),
		cmocka_unit_test(test_ioctl_numbers),
		cmocka_unit_test(test_state_byte),
		cmocka_unit_test(test_take_each_state),
		cmocka_unit_test(test_answer),
		cmocka_unit_test(test_answer_held),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
