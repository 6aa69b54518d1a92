/* The console log file: appends, rotation at the size limit, kept files, and the disk bound. */
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

#include "devices/console_log.h"

struct dir {
	char path[64];
	char log[96];
};

static void dir_make(struct dir *d)
{
	snprintf(d->path, sizeof(d->path), "/tmp/test_console_log.XXXXXX");
	assert_non_null(mkdtemp(d->path));
	snprintf(d->log, sizeof(d->log), "%s/c.log", d->path);
}

static void dir_remove(struct dir *d)
{
	char cmd[128];

	snprintf(cmd, sizeof(cmd), "rm -rf %s", d->path);
	assert_int_equal(system(cmd), 0);
}

/* Size of log.i (i = 0: the log itself), -1 when absent. */
static long size_of(const struct dir *d, unsigned i)
{
	char p[128];
	struct stat st;

	snprintf(p, sizeof(p), i ? "%s.%u" : "%s", d->log, i);
	return stat(p, &st) == 0 ? (long)st.st_size : -1;
}

static char first_byte(const struct dir *d, unsigned i)
{
	char p[128], c = 0;
	FILE *f;

	snprintf(p, sizeof(p), i ? "%s.%u" : "%s", d->log, i);
	f = fopen(p, "rb");
	assert_non_null(f);
	assert_int_equal(fread(&c, 1, 1, f), 1);
	fclose(f);
	return c;
}

/* 10 writes of 40 bytes ('a', 'b', ...) into files of 100 bytes, two kept. */
static void test_rotation_keeps_the_newest(void **state)
{
	struct dir d;
	struct con_log l;
	char buf[40];

	(void)state;
	dir_make(&d);
	con_log_init(&l);
	assert_int_equal(con_log_open(&l, d.log, 100, 2), 0);
	for (int i = 0; i < 10; i++) {
		memset(buf, 'a' + i, sizeof(buf));
		assert_int_equal(con_log_write(&l, buf, sizeof(buf)), sizeof(buf));
	}
	/* 400 bytes in files of 100: the oldest 100 went at the third rotation. */
	assert_int_equal(size_of(&d, 0), 100);
	assert_int_equal(size_of(&d, 1), 100);
	assert_int_equal(size_of(&d, 2), 100);
	assert_int_equal(size_of(&d, 3), -1);
	/* log.2 holds bytes 100.. (the 3rd write, 'c'), log.1 200.. ('f'), the log 300.. ('h'). */
	assert_int_equal(first_byte(&d, 2), 'c');
	assert_int_equal(first_byte(&d, 1), 'f');
	assert_int_equal(first_byte(&d, 0), 'h');
	assert_int_equal(l.rotations, 3);
	con_log_close(&l);
	dir_remove(&d);
}

/* One write many times the limit: never a file past it, never more than keep + 1 files. */
static void test_one_write_larger_than_the_limit(void **state)
{
	static char big[10000];
	struct dir d;
	struct con_log l;

	(void)state;
	dir_make(&d);
	con_log_init(&l);
	memset(big, 'x', sizeof(big));
	assert_int_equal(con_log_open(&l, d.log, 1000, 1), 0);
	assert_int_equal(con_log_write(&l, big, sizeof(big)), sizeof(big));
	assert_int_equal(size_of(&d, 0), 1000);
	assert_int_equal(size_of(&d, 1), 1000);
	assert_int_equal(size_of(&d, 2), -1);
	con_log_close(&l);
	dir_remove(&d);
}

/* keep = 0: the file starts over; an existing file's size counts from the start. */
static void test_keep_zero_and_existing_file(void **state)
{
	struct dir d;
	struct con_log l;
	FILE *f;

	(void)state;
	dir_make(&d);
	f = fopen(d.log, "w");
	assert_non_null(f);
	fputs("0123456789", f);
	fclose(f);
	con_log_init(&l);
	assert_int_equal(con_log_open(&l, d.log, 16, 0), 0);
	assert_int_equal(l.size, 10);
	assert_int_equal(con_log_write(&l, "abcdefgh", 8), 8);   /* 6 fit, then a restart */
	assert_int_equal(size_of(&d, 0), 2);
	assert_int_equal(first_byte(&d, 0), 'g');
	assert_int_equal(size_of(&d, 1), -1);
	con_log_close(&l);
	dir_remove(&d);
}

/* The folder vanished: the write fails, nothing grows, the caller hears about it. */
static void test_rotation_failure_reported(void **state)
{
	struct dir d;
	struct con_log l;
	char cmd[128];

	(void)state;
	dir_make(&d);
	con_log_init(&l);
	assert_int_equal(con_log_open(&l, d.log, 8, 2), 0);
	assert_int_equal(con_log_write(&l, "12345678", 8), 8);
	snprintf(cmd, sizeof(cmd), "rm -rf %s", d.path);
	assert_int_equal(system(cmd), 0);
	assert_true(con_log_write(&l, "9", 1) < 0);
	assert_int_equal(l.size, 8);
	con_log_close(&l);
	assert_int_equal(con_log_open(&l, "/nonexistent/dir/c.log", 8, 2), -ENOENT);
	assert_int_equal(l.fd, -1);
	assert_int_equal(con_log_write(&l, "x", 1), 1);        /* no log: nothing to do */
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_rotation_keeps_the_newest),
		cmocka_unit_test(test_one_write_larger_than_the_limit),
		cmocka_unit_test(test_keep_zero_and_existing_file),
		cmocka_unit_test(test_rotation_failure_reported),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
