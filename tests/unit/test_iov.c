/* iovec helpers: copies, offsets, slices, and every edge where a bound could slip. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "devices/iov.h"

static uint8_t a[5], b[0 + 1], c[11];

/* Three entries of 5, 0 and 11 bytes (an empty entry in the middle). */
static void make_iov(struct iovec iov[3])
{
	memset(a, 0, sizeof(a));
	memset(c, 0, sizeof(c));
	iov[0] = (struct iovec){ a, sizeof(a) };
	iov[1] = (struct iovec){ b, 0 };
	iov[2] = (struct iovec){ c, sizeof(c) };
}

static void test_size(void **state)
{
	struct iovec iov[3];

	(void)state;
	make_iov(iov);
	assert_int_equal(iov_size(iov, 3), 16);
	assert_int_equal(iov_size(iov, 1), 5);
	assert_int_equal(iov_size(iov, 0), 0);
}

static void test_from_and_to_buf(void **state)
{
	struct iovec iov[3];
	uint8_t src[16], dst[16];

	(void)state;
	make_iov(iov);
	for (int i = 0; i < 16; i++)
		src[i] = (uint8_t)(i + 1);
	assert_int_equal(iov_from_buf(iov, 3, 0, src, 16), 16);
	assert_int_equal(a[4], 5);
	assert_int_equal(c[0], 6);
	assert_int_equal(c[10], 16);
	memset(dst, 0, sizeof(dst));
	assert_int_equal(iov_to_buf(iov, 3, 0, dst, 16), 16);
	assert_memory_equal(src, dst, 16);
}

static void test_offsets_and_truncation(void **state)
{
	struct iovec iov[3];
	uint8_t src[32], dst[32];

	(void)state;
	make_iov(iov);
	for (int i = 0; i < 32; i++)
		src[i] = (uint8_t)(0x80 + i);
	/* Starting inside the first entry, running past the end: truncated to what fits. */
	assert_int_equal(iov_from_buf(iov, 3, 3, src, 32), 13);
	assert_int_equal(a[2], 0);
	assert_int_equal(a[3], 0x80);
	assert_int_equal(c[10], 0x80 + 12);
	/* Offset exactly at an entry boundary and at the end. */
	assert_int_equal(iov_to_buf(iov, 3, 5, dst, 4), 4);
	assert_int_equal(dst[0], 0x82);
	assert_int_equal(iov_to_buf(iov, 3, 16, dst, 4), 0);
	assert_int_equal(iov_to_buf(iov, 3, 1000, dst, 4), 0);
	assert_int_equal(iov_from_buf(iov, 3, SIZE_MAX, src, 4), 0);
	assert_int_equal(iov_to_buf(iov, 3, 0, dst, 0), 0);
}

static void test_memset(void **state)
{
	struct iovec iov[3];

	(void)state;
	make_iov(iov);
	assert_int_equal(iov_memset(iov, 3, 4, 0xee, 3), 3);
	assert_int_equal(a[3], 0);
	assert_int_equal(a[4], 0xee);
	assert_int_equal(c[0], 0xee);
	assert_int_equal(c[1], 0xee);
	assert_int_equal(c[2], 0);
	assert_int_equal(iov_memset(iov, 3, 10, 0x11, 100), 6);
	assert_int_equal(c[10], 0x11);
}

static void test_slice(void **state)
{
	struct iovec iov[3], out[3];

	(void)state;
	make_iov(iov);
	assert_int_equal(iov_slice(iov, 3, 3, 6, out, 3), 2);
	assert_ptr_equal(out[0].iov_base, a + 3);
	assert_int_equal(out[0].iov_len, 2);
	assert_ptr_equal(out[1].iov_base, c);         /* the empty entry is skipped */
	assert_int_equal(out[1].iov_len, 4);
	assert_int_equal(iov_size(out, 2), 6);
	/* Exactly the whole thing; one byte too many; not enough room. */
	assert_int_equal(iov_slice(iov, 3, 0, 16, out, 3), 2);
	assert_int_equal(iov_slice(iov, 3, 0, 17, out, 3), -1);
	assert_int_equal(iov_slice(iov, 3, 16, 1, out, 3), -1);
	assert_int_equal(iov_slice(iov, 3, 0, 16, out, 1), -1);
	assert_int_equal(iov_slice(iov, 3, 2, 0, out, 0), 0);
	assert_int_equal(iov_slice(iov, 3, 6, 10, out, 1), 1);
	assert_ptr_equal(out[0].iov_base, c + 1);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_size),
		cmocka_unit_test(test_from_and_to_buf),
		cmocka_unit_test(test_offsets_and_truncation),
		cmocka_unit_test(test_memset),
		cmocka_unit_test(test_slice),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
