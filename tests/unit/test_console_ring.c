/* The console's output ring: order, wrap-around, overflow keeps the newest bytes and counts. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "devices/console_ring.h"

/* Everything queued, oldest first, copied out (and left queued). */
static size_t ring_contents(const struct con_ring *r, uint8_t *out)
{
	struct iovec iov[2];
	unsigned n = con_ring_peek(r, iov);
	size_t len = 0;

	for (unsigned i = 0; i < n; i++) {
		memcpy(out + len, iov[i].iov_base, iov[i].iov_len);
		len += iov[i].iov_len;
	}
	assert_int_equal(len, r->len);
	return len;
}

static void test_fifo_order_and_wrap(void **state)
{
	struct con_ring r;
	uint8_t out[16];

	(void)state;
	assert_int_equal(con_ring_init(&r, 8), 0);
	assert_int_equal(con_ring_put(&r, "abcde", 5), 0);
	con_ring_consume(&r, 3);
	assert_int_equal(con_ring_put(&r, "fghij", 5), 0);    /* wraps: 7 bytes queued */
	assert_int_equal(ring_contents(&r, out), 7);
	assert_memory_equal(out, "defghij", 7);
	struct iovec iov[2];
	assert_int_equal(con_ring_peek(&r, iov), 2);
	con_ring_consume(&r, 7);
	assert_int_equal(r.len, 0);
	assert_int_equal(con_ring_peek(&r, iov), 0);
	assert_int_equal(r.dropped, 0);
	con_ring_fini(&r);
}

static void test_overflow_drops_oldest(void **state)
{
	struct con_ring r;
	uint8_t out[16];

	(void)state;
	assert_int_equal(con_ring_init(&r, 8), 0);
	assert_int_equal(con_ring_put(&r, "0123456", 7), 0);
	assert_int_equal(con_ring_put(&r, "789", 3), 2);       /* "01" go */
	assert_int_equal(ring_contents(&r, out), 8);
	assert_memory_equal(out, "23456789", 8);
	assert_int_equal(con_ring_put(&r, "ABCDEFGHIJKL", 12), 12);  /* 8 queued + 4 of 12 */
	assert_int_equal(ring_contents(&r, out), 8);
	assert_memory_equal(out, "EFGHIJKL", 8);
	assert_int_equal(r.dropped, 14);
	con_ring_fini(&r);
}

static void test_exact_fill(void **state)
{
	struct con_ring r;
	uint8_t out[8];

	(void)state;
	assert_int_equal(con_ring_init(&r, 4), 0);
	con_ring_put(&r, "ab", 2);
	con_ring_consume(&r, 1);
	assert_int_equal(con_ring_put(&r, "cde", 3), 0);       /* exactly full, wrapped */
	assert_int_equal(ring_contents(&r, out), 4);
	assert_memory_equal(out, "bcde", 4);
	assert_int_equal(con_ring_put(&r, "wxyz", 4), 4);
	assert_int_equal(ring_contents(&r, out), 4);
	assert_memory_equal(out, "wxyz", 4);
	con_ring_fini(&r);
}

static void test_zero_capacity(void **state)
{
	struct con_ring r;
	struct iovec iov[2];

	(void)state;
	assert_int_equal(con_ring_init(&r, 0), 0);
	assert_int_equal(con_ring_put(&r, "abc", 3), 3);
	assert_int_equal(r.len, 0);
	assert_int_equal(r.dropped, 3);
	assert_int_equal(con_ring_peek(&r, iov), 0);
	con_ring_fini(&r);
}

/* Against a model: a long random sequence of puts and consumes keeps exactly the newest bytes. */
static void test_random_against_model(void **state)
{
	enum { CAP = 97, TOTAL = 200000 };
	static uint8_t model[TOTAL];
	uint8_t out[CAP];
	struct con_ring r;
	size_t written = 0, consumed = 0;
	uint64_t dropped = 0;
	unsigned seed = 12345;

	(void)state;
	assert_int_equal(con_ring_init(&r, CAP), 0);
	while (written < TOTAL - 300) {
		uint8_t chunk[300];
		size_t n = (seed = seed * 1103515245u + 12345u) % 250;

		for (size_t i = 0; i < n; i++)
			chunk[i] = model[written + i] = (uint8_t)(written + i) ^ (uint8_t)(n * 7);
		dropped += con_ring_put(&r, chunk, n);
		written += n;
		con_ring_consume(&r, (seed >> 16) % 40);
		consumed = written - r.len;
		assert_true(r.len <= CAP);
		assert_int_equal(ring_contents(&r, out), written - consumed);
		assert_memory_equal(out, model + consumed, written - consumed);
	}
	assert_int_equal(r.dropped, dropped);
	con_ring_fini(&r);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_fifo_order_and_wrap),
		cmocka_unit_test(test_overflow_drops_oldest),
		cmocka_unit_test(test_exact_fill),
		cmocka_unit_test(test_zero_capacity),
		cmocka_unit_test(test_random_against_model),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
