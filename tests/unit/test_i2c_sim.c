/* The simulated I2C clients, driven directly at message level (no virtio in between). */
#include <errno.h>
#include <fcntl.h>
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

#include "devices/i2c_sim.h"

#define EE 0x50
#define TS 0x48

static struct i2c_sim_msg wr(uint16_t addr, uint8_t *buf, uint32_t len)
{
	return (struct i2c_sim_msg){ .addr = addr, .rd = false, .buf = buf, .len = len };
}

static struct i2c_sim_msg rd(uint16_t addr, uint8_t *buf, uint32_t len)
{
	return (struct i2c_sim_msg){ .addr = addr, .rd = true, .buf = buf, .len = len };
}

static unsigned xfer1(struct i2c_sim_bus *bus, struct i2c_sim_msg m)
{
	return i2c_sim_transfer(bus, &m, 1);
}

/* Random read: set the word address, repeated START, read. */
static void ee_read_at(struct i2c_sim_bus *bus, uint8_t at, uint8_t *buf, uint32_t len)
{
	struct i2c_sim_msg m[2] = { wr(EE, &at, 1), rd(EE, buf, len) };

	assert_int_equal(i2c_sim_transfer(bus, m, 2), 2);
}

static int setup(void **state)
{
	struct i2c_sim_bus *bus = i2c_sim_bus_new("test");

	if (!bus || i2c_sim_add_eeprom(bus, EE, NULL) || i2c_sim_add_lm75(bus, TS))
		return -1;
	*state = bus;
	return 0;
}

static int teardown(void **state)
{
	i2c_sim_bus_free(*state);
	return 0;
}

static void test_eeprom_blank_and_roundtrip(void **state)
{
	struct i2c_sim_bus *bus = *state;
	uint8_t w[] = { 0x10, 'a', 'b', 'c', 'd' }, r[4];

	ee_read_at(bus, 0x10, r, 4);
	assert_memory_equal(r, "\xff\xff\xff\xff", 4);
	assert_int_equal(xfer1(bus, wr(EE, w, sizeof(w))), 1);
	ee_read_at(bus, 0x10, r, 4);
	assert_memory_equal(r, "abcd", 4);
}

static void test_eeprom_page_wrap(void **state)
{
	struct i2c_sim_bus *bus = *state;
	/* 0x1e is 6 bytes into page 0x18: bytes 3..4 wrap to 0x18, 0x19, not 0x20. */
	uint8_t w[] = { 0x1e, 1, 2, 3, 4 }, r[16];

	assert_int_equal(xfer1(bus, wr(EE, w, sizeof(w))), 1);
	ee_read_at(bus, 0x18, r, 16);
	assert_int_equal(r[0], 3);
	assert_int_equal(r[1], 4);
	assert_int_equal(r[6], 1);
	assert_int_equal(r[7], 2);
	assert_int_equal(r[8], 0xff);   /* 0x20: the next page is untouched */
}

static void test_eeprom_long_write_overwrites_page(void **state)
{
	struct i2c_sim_bus *bus = *state;
	uint8_t w[1 + 10], r[8];

	w[0] = 0x40;
	for (int i = 0; i < 10; i++)
		w[1 + i] = (uint8_t)(0xa0 + i);
	assert_int_equal(xfer1(bus, wr(EE, w, sizeof(w))), 1);
	ee_read_at(bus, 0x40, r, 8);
	assert_int_equal(r[0], 0xa8);   /* bytes 8 and 9 came round again */
	assert_int_equal(r[1], 0xa9);
	assert_int_equal(r[2], 0xa2);
	assert_int_equal(r[7], 0xa7);
}

static void test_eeprom_current_address_and_wrap(void **state)
{
	struct i2c_sim_bus *bus = *state;
	uint8_t w[] = { 0xfe, 0x11, 0x22 }, w2[] = { 0x00, 0x33 }, r[4];

	assert_int_equal(xfer1(bus, wr(EE, w, sizeof(w))), 1);
	assert_int_equal(xfer1(bus, wr(EE, w2, sizeof(w2))), 1);
	ee_read_at(bus, 0xfe, r, 1);
	assert_int_equal(r[0], 0x11);
	/* Current-address reads continue from the pointer and wrap 0xff -> 0x00. */
	assert_int_equal(xfer1(bus, rd(EE, r, 2)), 1);
	assert_int_equal(r[0], 0x22);
	assert_int_equal(r[1], 0x33);
	assert_int_equal(xfer1(bus, rd(EE, r, 1)), 1);
	assert_int_equal(r[0], 0xff);   /* 0x01 */
}

static void test_eeprom_restart_discards_write(void **state)
{
	struct i2c_sim_bus *bus = *state;
	uint8_t w[] = { 0x30, 0x77 }, r[1];
	struct i2c_sim_msg m[2] = { wr(EE, w, sizeof(w)), rd(EE, r, 1) };

	/* No STOP after the data: the part never starts its write cycle. */
	assert_int_equal(i2c_sim_transfer(bus, m, 2), 2);
	ee_read_at(bus, 0x30, r, 1);
	assert_int_equal(r[0], 0xff);
}

static void test_absent_address_nacks(void **state)
{
	struct i2c_sim_bus *bus = *state;
	uint8_t b = 0;
	struct i2c_sim_msg m[3] = { rd(EE, &b, 1), rd(0x33, &b, 1), rd(TS, &b, 1) };

	assert_int_equal(xfer1(bus, wr(0x33, NULL, 0)), 0);
	assert_int_equal(i2c_sim_transfer(bus, m, 3), 1);
	assert_false(i2c_sim_present(bus, 0x33));
	assert_true(i2c_sim_present(bus, EE));
	assert_false(i2c_sim_present(bus, 0x7ff));
}

static void test_lm75_registers(void **state)
{
	struct i2c_sim_bus *bus = *state;
	uint8_t p, r[4];
	struct i2c_sim_msg m[2] = { wr(TS, &p, 1), rd(TS, r, 2) };

	/* Power-on pointer is the temperature: 25.0 °C. */
	assert_int_equal(xfer1(bus, rd(TS, r, 4)), 1);
	assert_memory_equal(r, "\x19\x00\x19\x00", 4);
	p = I2C_SIM_LM75_CONF;
	assert_int_equal(i2c_sim_transfer(bus, m, 2), 2);
	assert_int_equal(r[0], 0);
	p = I2C_SIM_LM75_THYST;
	assert_int_equal(i2c_sim_transfer(bus, m, 2), 2);
	assert_memory_equal(r, "\x4b\x00", 2);
	p = I2C_SIM_LM75_TOS;
	assert_int_equal(i2c_sim_transfer(bus, m, 2), 2);
	assert_memory_equal(r, "\x50\x00", 2);
	/* The pointer stays: a plain read returns Tos again. */
	assert_int_equal(xfer1(bus, rd(TS, r, 2)), 1);
	assert_memory_equal(r, "\x50\x00", 2);
}

static void test_lm75_writes(void **state)
{
	struct i2c_sim_bus *bus = *state;
	uint8_t tos[] = { 3, 0x3c, 0xff }, conf[] = { 1, 0xff }, temp[] = { 0, 0x7f, 0 }, r[2];

	assert_int_equal(xfer1(bus, wr(TS, tos, 3)), 1);
	assert_int_equal(xfer1(bus, rd(TS, r, 2)), 1);
	assert_memory_equal(r, "\x3c\x80", 2);   /* 60.5 °C; the low 7 bits do not exist */
	assert_int_equal(xfer1(bus, wr(TS, conf, 2)), 1);
	assert_int_equal(xfer1(bus, rd(TS, r, 1)), 1);
	assert_int_equal(r[0], 0x1f);
	assert_int_equal(xfer1(bus, wr(TS, temp, 3)), 1);   /* read-only: ignored */
	assert_int_equal(xfer1(bus, rd(TS, r, 2)), 1);
	assert_memory_equal(r, "\x19\x00", 2);
	temp[0] = 4;   /* no such register */
	assert_int_equal(xfer1(bus, wr(TS, temp, 1)), 0);
}

static void test_add_errors(void **state)
{
	struct i2c_sim_bus *bus = *state;

	assert_int_equal(i2c_sim_add_lm75(bus, EE), -EEXIST);
	assert_int_equal(i2c_sim_add_lm75(bus, 0x02), -EINVAL);
	assert_int_equal(i2c_sim_add_eeprom(bus, 0x78, NULL), -EINVAL);
}

static void test_eeprom_persistence(void **state)
{
	char dir[] = "/tmp/test_i2c_sim.XXXXXX", path[64];
	uint8_t w[] = { 0x08, 'x', 'y' }, r[2], img[300];
	struct i2c_sim_bus *bus;
	struct stat st;
	int fd;

	(void)state;
	assert_non_null(mkdtemp(dir));
	snprintf(path, sizeof(path), "%s/ee.bin", dir);
	bus = i2c_sim_bus_new("persist");
	assert_int_equal(i2c_sim_add_eeprom(bus, EE, path), 0);
	assert_int_equal(stat(path, &st), -1);   /* nothing written yet */
	assert_int_equal(xfer1(bus, wr(EE, w, sizeof(w))), 1);
	assert_int_equal(stat(path, &st), 0);
	assert_int_equal(st.st_size, I2C_SIM_EEPROM_SIZE);
	i2c_sim_bus_free(bus);

	bus = i2c_sim_bus_new("persist");
	assert_int_equal(i2c_sim_add_eeprom(bus, EE, path), 0);
	ee_read_at(bus, 0x08, r, 2);
	assert_memory_equal(r, "xy", 2);
	i2c_sim_bus_free(bus);

	/* A file larger than the part is refused rather than truncated. */
	memset(img, 0, sizeof(img));
	fd = open(path, O_WRONLY | O_TRUNC);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, img, sizeof(img)), (ssize_t)sizeof(img));
	close(fd);
	bus = i2c_sim_bus_new("persist");
	assert_int_equal(i2c_sim_add_eeprom(bus, EE, path), -EFBIG);
	i2c_sim_bus_free(bus);
	unlink(path);
	rmdir(dir);
}

static void test_eeprom_persist_failure_fails_write(void **state)
{
	char dir[] = "/tmp/test_i2c_sim.XXXXXX", path[64];
	uint8_t w[] = { 0x00, 1 }, b = 0;
	struct i2c_sim_msg m[2] = { rd(EE, &b, 1), wr(EE, w, sizeof(w)) };
	struct i2c_sim_bus *bus;

	(void)state;
	assert_non_null(mkdtemp(dir));
	snprintf(path, sizeof(path), "%s/sub/ee.bin", dir);   /* folder does not exist */
	bus = i2c_sim_bus_new("persist");
	assert_int_equal(i2c_sim_add_eeprom(bus, EE, path), 0);
	/* The write message is the one reported failed; the read before it completed. */
	assert_int_equal(i2c_sim_transfer(bus, m, 2), 1);
	i2c_sim_bus_free(bus);
	rmdir(dir);
}

/* The byte at off of the file, or -1 when the file cannot be read. */
static int file_byte(const char *path, unsigned off)
{
	uint8_t img[I2C_SIM_EEPROM_SIZE];
	FILE *f = fopen(path, "rb");
	size_t n = f ? fread(img, 1, sizeof(img), f) : 0;

	if (f)
		fclose(f);
	return n == sizeof(img) && off < n ? img[off] : -1;
}

/*
 * A write after a quiet period is saved at once; the writes right after it only mark the part
 * dirty, one save covers them, and freeing the bus saves what is pending.
 */
static void test_eeprom_saves_coalesced(void **state)
{
	char dir[] = "/tmp/test_i2c_sim.XXXXXX", path[64];
	struct i2c_sim_bus *bus;

	(void)state;
	assert_non_null(mkdtemp(dir));
	snprintf(path, sizeof(path), "%s/ee.bin", dir);
	bus = i2c_sim_bus_new("coalesce");
	assert_int_equal(i2c_sim_add_eeprom(bus, EE, path), 0);
	assert_true(i2c_sim_save_due(bus) < 0);
	for (uint8_t i = 0; i < 20; i++) {
		uint8_t w[2] = { i, (uint8_t)(0x40 + i) };

		assert_int_equal(xfer1(bus, wr(EE, w, 2)), 1);
	}
	/* The first was saved, the other 19 wait for one save within the period. */
	assert_int_equal(file_byte(path, 0), 0x40);
	assert_int_equal(file_byte(path, 19), 0xff);
	double due = i2c_sim_save_due(bus);

	assert_true(due >= 0 && due <= I2C_SIM_SAVE_MS / 1000.0);
	i2c_sim_save(bus, false);          /* not due yet (unless this machine is very slow) */
	if (i2c_sim_save_due(bus) >= 0)
		assert_int_equal(file_byte(path, 19), 0xff);
	i2c_sim_save(bus, true);
	assert_int_equal(file_byte(path, 19), 0x40 + 19);
	assert_true(i2c_sim_save_due(bus) < 0);
	/* Pending at teardown: saved by i2c_sim_bus_free. */
	{
		uint8_t w[2] = { 0x80, 0x99 };

		assert_int_equal(xfer1(bus, wr(EE, w, 2)), 1);
	}
	if (i2c_sim_save_due(bus) >= 0)     /* deferred (unless 250 ms passed meanwhile) */
		assert_int_equal(file_byte(path, 0x80), 0xff);
	i2c_sim_bus_free(bus);
	assert_int_equal(file_byte(path, 0x80), 0x99);
	unlink(path);
	rmdir(dir);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_eeprom_blank_and_roundtrip, setup, teardown),
		cmocka_unit_test_setup_teardown(test_eeprom_page_wrap, setup, teardown),
		cmocka_unit_test_setup_teardown(test_eeprom_long_write_overwrites_page, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_eeprom_current_address_and_wrap, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_eeprom_restart_discards_write, setup, teardown),
		cmocka_unit_test_setup_teardown(test_absent_address_nacks, setup, teardown),
		cmocka_unit_test_setup_teardown(test_lm75_registers, setup, teardown),
		cmocka_unit_test_setup_teardown(test_lm75_writes, setup, teardown),
		cmocka_unit_test_setup_teardown(test_add_errors, setup, teardown),
		cmocka_unit_test(test_eeprom_persistence),
		cmocka_unit_test(test_eeprom_persist_failure_fails_write),
		cmocka_unit_test(test_eeprom_saves_coalesced),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
