/*
 * config_load() over the files in tests/config/: every .ini file in good/ loads cleanly, every
 * one in bad/ fails with exactly the errors its "# expect: LINE: KEY: SUBSTRING" header lines
 * announce, and config/example.ini loads. Paths are relative to the source tree, found from
 * this file's __FILE__ (tests run from the repository root) or XVD_SRCDIR.
 */
#include <dirent.h>
#include <setjmp.h>
#include <stdbool.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cmocka.h>

#include "config/config.h"

#define ERR_SIZE    16384
#define MAX_FILES   256
#define MAX_EXPECT  16
#define MIN_BAD     40

static struct config cfg;
static char err[ERR_SIZE];

/* The repository root: XVD_SRCDIR, else __FILE__ without "tests/unit/test_config.c". */
static const char *srcdir(void)
{
	static char dir[1024];
	static const char self[] = __FILE__;
	const char *env = getenv("XVD_SRCDIR");
	const char *tail = strstr(self, "tests/unit/test_config.c");
	if (env && *env)
		return env;
	if (!tail || tail == self)
		return ".";
	snprintf(dir, sizeof(dir), "%.*s", (int)(tail - self), self);
	return dir;
}

static void src_path(char *buf, size_t size, const char *rel)
{
	snprintf(buf, size, "%s/%s", srcdir(), rel);
}

static int ini_filter(const struct dirent *e)
{
	size_t len = strlen(e->d_name);
	return len > 4 && strcmp(e->d_name + len - 4, ".ini") == 0;
}

/* Sorted *.ini names in tests/config/<sub>; returns their count. */
static int list_ini(const char *sub, struct dirent ***names)
{
	char dir[1200];
	snprintf(dir, sizeof(dir), "%s/tests/config/%s", srcdir(), sub);
	int n = scandir(dir, names, ini_filter, alphasort);
	if (n < 0)
		fail_msg("cannot list %s", dir);
	return n;
}

static void free_list(struct dirent **names, int n)
{
	for (int i = 0; i < n; i++)
		free(names[i]);
	free(names);
}

static int load_rel(const char *rel)
{
	char path[1200];
	src_path(path, sizeof(path), rel);
	return config_load(path, &cfg, err, sizeof(err));
}

static int count_lines(const char *s)
{
	int n = 0;
	for (; *s; s++)
		n += *s == '\n';
	return n;
}

/* ---- the file tables ------------------------------------------------------------------- */

static void test_good_files_load(void **state)
{
	struct dirent **names;
	int n = list_ini("good", &names);
	(void)state;
	assert_true(n >= 5);
	for (int i = 0; i < n; i++) {
		char rel[600];
		snprintf(rel, sizeof(rel), "tests/config/good/%s", names[i]->d_name);
		int rc = load_rel(rel);
		if (rc != 0 || err[0])
			fail_msg("%s: rc %d, errors:\n%s", rel, rc, err);
	}
	free_list(names, n);
}

struct expect {
	int line;
	char key[128];
	char text[256];
};

/* The leading "# expect: LINE: KEY: SUBSTRING" lines of a bad file. */
static int read_expects(const char *path, struct expect *ex, int max)
{
	char line[512];
	int n = 0;
	FILE *f = fopen(path, "r");
	assert_non_null(f);
	while (n < max && fgets(line, sizeof(line), f) && strncmp(line, "# expect: ", 10) == 0) {
		char *s = line + 10, *end;
		line[strcspn(line, "\n")] = '\0';
		ex[n].line = (int)strtol(s, &end, 10);
		char *sep = strstr(end, ": ");
		if (end == s || strncmp(end, ": ", 2) != 0 || !(sep = strstr(end + 2, ": ")))
			fail_msg("%s: malformed expect line '%s'", path, line);
		snprintf(ex[n].key, sizeof(ex[n].key), "%.*s", (int)(sep - end - 2), end + 2);
		snprintf(ex[n].text, sizeof(ex[n].text), "%s", sep + 2);
		n++;
	}
	fclose(f);
	return n;
}

/* Every error line is "FILE:LINE: KEY: message", in line order. */
static void check_format(const char *path, const char *errs)
{
	size_t plen = strlen(path);
	long last = 0;
	for (const char *l = errs; *l; l = strchr(l, '\n') + 1) {
		const char *p = l + plen + 1;
		if (strncmp(l, path, plen) != 0 || l[plen] != ':')
			fail_msg("error does not start with the file name: %s", l);
		if (strspn(p, "0123456789") == 0 || p[strspn(p, "0123456789")] != ':')
			fail_msg("error has no line number: %s", l);
		if (strtol(p, NULL, 10) < last)
			fail_msg("errors out of line order: %s", errs);
		last = strtol(p, NULL, 10);
		const char *key = p + strspn(p, "0123456789") + 2;
		const char *msg = strstr(key, ": ");
		if (!msg || msg == key || msg > strchr(l, '\n') || msg[2] == '\n')
			fail_msg("error is not 'KEY: message': %s", l);
	}
}

static bool has_error(const char *path, const char *errs, const struct expect *ex)
{
	char prefix[1400];
	int plen = snprintf(prefix, sizeof(prefix), "%s:%d: %s: ", path, ex->line, ex->key);
	for (const char *l = errs; *l; l = strchr(l, '\n') + 1) {
		const char *nl = strchr(l, '\n');
		if (strncmp(l, prefix, (size_t)plen) != 0)
			continue;
		const char *hit = strstr(l + plen, ex->text);
		if (hit && hit < nl)
			return true;
	}
	return false;
}

/* Returns whether the file failed exactly as announced; says why not. */
static bool check_bad_file(const char *rel)
{
	struct expect ex[MAX_EXPECT];
	char path[1200];
	bool ok = true;
	src_path(path, sizeof(path), rel);
	int nex = read_expects(path, ex, MAX_EXPECT);
	if (nex == 0) {
		print_error("%s: no '# expect:' line\n", rel);
		return false;
	}
	if (config_load(path, &cfg, err, sizeof(err)) != -1) {
		print_error("%s: loaded without error\n", rel);
		return false;
	}
	check_format(path, err);
	for (int i = 0; i < nex; i++) {
		if (has_error(path, err, &ex[i]))
			continue;
		print_error("%s: expected '%d: %s: ...%s...', got:\n%s", rel, ex[i].line,
			    ex[i].key, ex[i].text, err);
		ok = false;
	}
	if (ok && count_lines(err) != nex) {
		print_error("%s: %d errors expected, got:\n%s", rel, nex, err);
		ok = false;
	}
	return ok;
}

static void test_bad_files_fail(void **state)
{
	struct dirent **names;
	int n = list_ini("bad", &names), failed = 0;
	(void)state;
	assert_true(n >= MIN_BAD);
	for (int i = 0; i < n; i++) {
		char rel[600];
		snprintf(rel, sizeof(rel), "tests/config/bad/%s", names[i]->d_name);
		failed += !check_bad_file(rel);
	}
	free_list(names, n);
	assert_int_equal(failed, 0);
}

/* ---- parsed values --------------------------------------------------------------------- */

static const struct config_device *dev(enum config_dev_type t, const char *name)
{
	for (unsigned i = 0; i < cfg.ndevices; i++)
		if (cfg.devices[i].type == t && strcmp(cfg.devices[i].name, name) == 0)
			return &cfg.devices[i];
	fail_msg("no %s \"%s\"", config_dev_type_name(t), name);
	return NULL;
}

static void test_example_loads(void **state)
{
	(void)state;
	assert_int_equal(load_rel("config/example.ini"), 0);
	assert_string_equal(err, "");
	assert_int_equal(cfg.ndevices, DEV_TYPE_COUNT);
	for (int t = 0; t < DEV_TYPE_COUNT; t++)
		assert_int_equal(cfg.devices[t].type, t);
	assert_int_equal(cfg.guest.discovery, DISCOVERY_EXPLICIT);
	assert_string_equal(dev(DEV_I2C, "bus0")->u.i2c.sims[0].file,
			    "/var/lib/xen-virtiod/guest1-eeprom.bin");
	const struct config_gpio *g = &dev(DEV_GPIO, "gpio0")->u.gpio;
	assert_int_equal(g->nlines, 2);
	assert_string_equal(g->lines[0].name, "button");
	assert_true(g->lines[0].pull_up);
	assert_false(g->lines[1].pull_up);
	assert_int_equal(g->nloops, 0);
	assert_string_equal(g->control, "/run/xen-virtiod/guest1-gpio.sock");
}

/* chip = and pass = : the guest's lines in the order given, offsets, names, bias. */
static void test_gpio_passthrough(void **state)
{
	(void)state;
	assert_int_equal(load_rel("tests/config/good/gpio_passthrough.ini"), 0);
	const struct config_gpio *g = &dev(DEV_GPIO, "host")->u.gpio;
	assert_string_equal(g->chip, "/dev/gpiochip0");
	assert_int_equal(g->nlines, 3);
	assert_int_equal(g->lines[0].offset, 7);
	assert_string_equal(g->lines[0].name, "led");
	assert_int_equal(g->lines[1].offset, 3);
	assert_true(g->lines[1].pull_up);
	assert_false(g->lines[1].pull_down);
	assert_int_equal(g->lines[2].offset, 12);
	assert_string_equal(g->lines[2].name, "");
	assert_string_equal(dev(DEV_GPIO, "sim")->u.gpio.chip, "");
}

static void test_minimal_defaults(void **state)
{
	(void)state;
	assert_int_equal(load_rel("tests/config/good/minimal.ini"), 0);
	assert_string_equal(cfg.guest.name, "minimal");
	assert_int_equal(cfg.guest.domid, -1);
	assert_int_equal(cfg.guest.discovery, DISCOVERY_XENSTORE);
	assert_int_equal(cfg.guest.backend_domid, 0);
	assert_false(cfg.guest.grant_usage);
	assert_int_equal(cfg.guest.map_cache_mib, 64);
	assert_false(cfg.guest.premap);
	assert_int_equal(cfg.guest.log_level, -1);
	assert_int_equal(cfg.guest.notify_fastpath, FASTPATH_AUTO);
	assert_int_equal(cfg.guest.notify_fastpath_line, 0);
	assert_int_equal(cfg.guest.line, 2);
	assert_int_equal(cfg.ndevices, 0);
	assert_non_null(strstr(cfg.file, "tests/config/good/minimal.ini"));
}

static void check_explicit_guest(void)
{
	assert_string_equal(cfg.guest.name, "web-01");
	assert_int_equal(cfg.guest.domid, 7);
	assert_int_equal(cfg.guest.discovery, DISCOVERY_EXPLICIT);
	assert_int_equal(cfg.guest.backend_domid, 3);
	assert_true(cfg.guest.grant_usage);
	assert_int_equal(cfg.guest.map_cache_mib, 128);
	assert_true(cfg.guest.premap);
	assert_int_equal(cfg.guest.log_level, 7 /* LOG_DEBUG */);
	assert_int_equal(cfg.guest.notify_fastpath, FASTPATH_OFF);
	assert_int_equal(cfg.guest.notify_fastpath_line, 11);
}

static void check_explicit_block(void)
{
	const struct config_device *d = dev(DEV_BLOCK, "root");
	assert_int_equal(d->mmio, 0x02000000);
	assert_int_equal(d->irq, 33);
	assert_int_equal(d->devid, 51712);
	assert_int_equal(d->line, 13);
	assert_string_equal(d->u.block.path, "/dev/vg0/web-01");
	assert_true(d->u.block.readonly);
	assert_int_equal(d->u.block.cache, BLK_CACHE_NONE);
	assert_string_equal(d->u.block.serial, "WEB01-ROOT");
	assert_int_equal(d->u.block.queues, 4);
	assert_int_equal(d->u.block.queue_size, 128);
	assert_false(d->u.block.discard);
	assert_false(d->u.block.write_zeroes);
	assert_string_equal(d->u.block.vdev, "xvda");
}

static void check_explicit_net(void)
{
	static const uint8_t mac[6] = { 0x00, 0x16, 0x3e, 0x0a, 0xbb, 0x0c };
	const struct config_device *d = dev(DEV_NET, "eth0");
	assert_int_equal(d->mmio, 0x02000200);
	assert_int_equal(d->devid, -1);
	assert_string_equal(d->u.net.tap, "vif7.0");
	assert_string_equal(d->u.net.bridge, "xenbr0");
	assert_true(d->u.net.mac_set);
	assert_memory_equal(d->u.net.mac, mac, 6);
	assert_int_equal(d->u.net.mtu, 9000);
	assert_int_equal(d->u.net.queues, 2);
	assert_int_equal(d->u.net.queue_size, 512);
}

static void check_explicit_console(void)
{
	const struct config_console *c = &dev(DEV_CONSOLE, "hvc0")->u.console;
	assert_string_equal(c->socket, "/run/xen-virtiod/web-01.sock");
	assert_true(c->pty);
	assert_string_equal(c->pty_link, "/run/xen-virtiod/web-01.pty");
	assert_string_equal(c->log, "/var/log/xen-virtiod/web-01.log");
	assert_false(c->stdio);
	assert_int_equal(c->ring_kib, 0);
	assert_int_equal(c->cols, 132);
	assert_int_equal(c->rows, 43);
	assert_int_equal(c->nports, 2);
	assert_string_equal(c->ports[0].name, "org.qemu.guest_agent.0");
	assert_string_equal(c->ports[0].socket, "/run/xen-virtiod/web-01-qga.sock");
	assert_string_equal(c->ports[1].name, "debug");
	assert_string_equal(c->ports[1].socket, "/run/xen-virtiod/web-01-debug.sock");
}

static void check_explicit_i2c(void)
{
	const struct config_i2c *b0 = &dev(DEV_I2C, "bus0")->u.i2c;
	const struct config_i2c *b1 = &dev(DEV_I2C, "bus1")->u.i2c;
	assert_string_equal(b0->adapter, "/dev/i2c-3");
	assert_true(b0->allow_set);
	for (unsigned a = 0; a < 128; a++)
		assert_int_equal(b0->allow[a] != 0, a == 0x50 || a == 0x51 || a == 0x68);
	assert_int_equal(b0->nsims, 2);
	assert_int_equal(b0->sims[0].kind, I2C_SIM_EEPROM);
	assert_int_equal(b0->sims[0].addr, 0x57);
	/* file = belongs to the bus's only eeprom */
	assert_string_equal(b0->sims[0].file, "/var/lib/xen-virtiod/web-01.eeprom");
	assert_int_equal(b0->sims[1].kind, I2C_SIM_LM75);
	assert_int_equal(b0->sims[1].addr, 72);
	assert_string_equal(b0->sims[1].file, "");
	assert_false(b1->allow_set);
	assert_string_equal(b1->adapter, "");
	assert_int_equal(b1->nsims, 2);
	assert_string_equal(b1->sims[0].file, "/var/lib/a.bin");
	assert_string_equal(b1->sims[1].file, "");
}

static void test_explicit_values(void **state)
{
	(void)state;
	assert_int_equal(load_rel("tests/config/good/explicit_all.ini"), 0);
	assert_int_equal(cfg.ndevices, 6);
	check_explicit_guest();
	check_explicit_block();
	check_explicit_net();
	check_explicit_console();
	check_explicit_i2c();
	const struct config_device *rng = dev(DEV_RNG, "hwrng");
	assert_int_equal(rng->mmio, 0x020ffe00);    /* the last window of the region */
	assert_int_equal(rng->irq, 987);
	assert_int_equal(rng->u.rng.rate_kib, 1024);
}

static void test_nbd_values(void **state)
{
	(void)state;
	assert_int_equal(load_rel("tests/config/good/nbd.ini"), 0);
	const struct config_block *tcp = &dev(DEV_BLOCK, "tcp")->u.block;
	const struct config_block *local = &dev(DEV_BLOCK, "local")->u.block;
	assert_string_equal(tcp->nbd, "nbd://storage.example:10809/vm-disk");
	assert_string_equal(tcp->path, "");
	assert_int_equal(tcp->io_timeout, 120);
	assert_string_equal(local->nbd, "nbd+unix:///?socket=/run/nbd/vm.sock");
	assert_int_equal(local->io_timeout, 30);
	assert_true(local->readonly);
	assert_string_equal(dev(DEV_BLOCK, "v6")->u.block.nbd, "nbd://[fd00::1]:10809/data");
	const struct config_block *psk = &dev(DEV_BLOCK, "psk")->u.block;
	const struct config_block *x509 = &dev(DEV_BLOCK, "x509")->u.block;
	assert_string_equal(psk->nbd, "nbds+unix:///disk?socket=/run/nbd/tls.sock");
	assert_string_equal(psk->tls_psk_file, "/etc/passwd");
	assert_string_equal(psk->tls_username, "xen-virtiod");
	assert_string_equal(psk->tls_certificates, "");
	assert_string_equal(x509->tls_certificates, "/etc");
	assert_string_equal(tcp->tls_psk_file, "");
}

static void test_xenstore_values(void **state)
{
	(void)state;
	assert_int_equal(load_rel("tests/config/good/xenstore.ini"), 0);
	assert_string_equal(cfg.guest.name, "");
	assert_int_equal(cfg.guest.domid, 32751);
	assert_int_equal(cfg.ndevices, 6);
	const struct config_device *xvda = dev(DEV_BLOCK, "xvda");
	assert_int_equal(xvda->mmio, 0);
	assert_int_equal(xvda->irq, 0);
	assert_string_equal(xvda->u.block.path, "");
	assert_string_equal(xvda->u.block.vdev, "xvda");
	assert_int_equal(xvda->u.block.cache, BLK_CACHE_WRITEBACK);
	assert_int_equal(xvda->u.block.queues, 1);
	assert_int_equal(xvda->u.block.queue_size, 256);
	assert_true(xvda->u.block.discard);
	assert_true(xvda->u.block.write_zeroes);
	assert_int_equal(dev(DEV_BLOCK, "data")->devid, 1);
	const struct config_net *net = &dev(DEV_NET, "eth0")->u.net;
	assert_false(net->mac_set);
	assert_int_equal(net->mtu, 1500);
	assert_int_equal(net->queues, 1);
	assert_int_equal(net->queue_size, 256);
	const struct config_console *con = &dev(DEV_CONSOLE, "con")->u.console;
	assert_true(con->stdio);
	assert_int_equal(con->ring_kib, 64);
	assert_int_equal(con->log_max_kib, 16384);   /* rotated at 16 MiB, four old files kept */
	assert_int_equal(con->log_keep, 4);
	assert_int_equal(con->rows, 0);     /* unset: the pty's size, else 80x25 */
	const struct config_device *rng = dev(DEV_RNG, "");
	assert_int_equal(rng->mmio, 0);
	assert_int_equal(rng->irq, 32);
	assert_int_equal(rng->u.rng.rate_kib, 0);
}

static void test_syntax_values(void **state)
{
	(void)state;
	assert_int_equal(load_rel("tests/config/good/syntax.ini"), 0);
	assert_string_equal(cfg.guest.name, "syntax");
	assert_int_equal(cfg.guest.discovery, DISCOVERY_EXPLICIT);
	assert_true(cfg.guest.premap);
	assert_true(cfg.guest.grant_usage);
	const struct config_device *rng = dev(DEV_RNG, "");
	assert_int_equal(rng->line, 11);
	assert_int_equal(rng->mmio, 0x02000000);
	assert_int_equal(rng->irq, 42);
	/* ';' only starts a comment after whitespace; '#' only at the start of a line */
	const struct config_block *b = &dev(DEV_BLOCK, "semi")->u.block;
	assert_string_equal(b->path, "/images/a;b.img");
	assert_string_equal(b->serial, "SN #1");
	assert_false(b->readonly);
	const struct config_console *c = &dev(DEV_CONSOLE, "c")->u.console;
	assert_true(c->stdio);
	assert_false(c->pty);
	assert_string_equal(c->log, "/var/log/x.log");
}

static void test_max_devices(void **state)
{
	(void)state;
	assert_int_equal(load_rel("tests/config/good/max_devices.ini"), 0);
	assert_int_equal(cfg.ndevices, CONFIG_MAX_DEVICES);
	for (unsigned i = 0; i < cfg.ndevices; i++) {
		assert_int_equal(cfg.devices[i].mmio, 0x02000000 + i * 0x200);
		assert_int_equal(cfg.devices[i].irq, 33 + i);
	}
}

/* ---- edges the file table cannot express ----------------------------------------------- */

static void test_zero_byte_file(void **state)
{
	char path[] = "/tmp/test_config_XXXXXX";
	char want[128];
	int fd = mkstemp(path);
	(void)state;
	assert_true(fd >= 0);
	close(fd);
	assert_int_equal(config_load(path, &cfg, err, sizeof(err)), -1);
	unlink(path);
	snprintf(want, sizeof(want), "%s:0: [guest]: missing section (the file has no settings)\n",
		 path);
	assert_string_equal(err, want);
}

static void test_missing_file(void **state)
{
	(void)state;
	assert_int_equal(config_load("/nonexistent/x.ini", &cfg, err, sizeof(err)), -1);
	assert_string_equal(err, "/nonexistent/x.ini:0: file: cannot open: "
			    "No such file or directory\n");
}

static void test_error_truncation(void **state)
{
	char small[24];
	char path[1200];
	(void)state;
	src_path(path, sizeof(path), "tests/config/bad/many_errors.ini");
	memset(small, 'x', sizeof(small));
	assert_int_equal(config_load(path, &cfg, small, sizeof(small)), -1);
	assert_true(memchr(small, '\0', sizeof(small)) != NULL);
	assert_int_equal(strncmp(small, path, strlen(small)), 0);
	/*
	 * A buffer that holds a few lines: only whole lines, each "path:", and a closing count of
	 * the rest (a line cut in the middle was found by fuzz_config).
	 */
	char mid[300];
	size_t plen = strlen(path), lines = 0;

	assert_int_equal(config_load(path, &cfg, mid, sizeof(mid)), -1);
	assert_true(strlen(mid) > 0);
	assert_int_equal(mid[strlen(mid) - 1], '\n');
	for (const char *l = mid; *l; l = strchr(l, '\n') + 1, lines++) {
		assert_int_equal(strncmp(l, path, plen), 0);
		assert_int_equal(l[plen], ':');
	}
	assert_true(lines >= 2);
	assert_non_null(strstr(mid, "more errors not shown\n"));
	/* no buffer at all still reports failure */
	assert_int_equal(config_load(path, &cfg, NULL, 0), -1);
}

/* A failed load leaves nothing behind that a later good load would inherit. */
static void test_reload_is_clean(void **state)
{
	(void)state;
	assert_int_equal(load_rel("tests/config/good/explicit_all.ini"), 0);
	assert_int_equal(load_rel("tests/config/bad/many_errors.ini"), -1);
	assert_int_equal(load_rel("tests/config/good/minimal.ini"), 0);
	assert_string_equal(err, "");
	assert_int_equal(cfg.ndevices, 0);
	assert_int_equal(cfg.guest.domid, -1);
}

/* Loads `len` bytes of `data` as a file (a memfd, so thousands of loads stay fast). */
static int load_bytes(int fd, const char *data, size_t len)
{
	char path[64];
	assert_int_equal(ftruncate(fd, 0), 0);
	assert_int_equal(pwrite(fd, data, len, 0), (ssize_t)len);
	snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
	int rc = config_load(path, &cfg, err, sizeof(err));
	if (rc == -1)
		check_format(path, err);
	return rc;
}

/* Damaged copies of example.ini: never a crash, and an error text exactly when rejected. */
static void test_mutations(void **state)
{
	static const char pick[] = "\n\0 =:;#[]\"x0@,/-";
	static char orig[8192], buf[8192];
	char src[1200];
	int rejected = 0;
	(void)state;
	src_path(src, sizeof(src), "config/example.ini");
	FILE *f = fopen(src, "r");
	assert_non_null(f);
	size_t len = fread(orig, 1, sizeof(orig), f);
	fclose(f);
	int fd = memfd_create("test_config", MFD_CLOEXEC);
	assert_true(fd >= 0);
	assert_int_equal(load_bytes(fd, orig, len), 0);
	srand(12345);
	for (int i = 0; i < 3000; i++) {
		memcpy(buf, orig, len);
		for (int m = 1 + rand() % 4; m > 0; m--) {
			size_t at = (size_t)rand() % len;
			buf[at] = rand() % 2 ? (char)(rand() % 256) : pick[rand() % (sizeof(pick) - 1)];
		}
		int rc = load_bytes(fd, buf, len);
		assert_true(rc == 0 || rc == -1);
		assert_int_equal(rc == -1, err[0] != '\0');
		rejected += rc == -1;
	}
	close(fd);
	assert_true(rejected > 1000);
}

static void test_dev_type_names(void **state)
{
	static const char *const names[] = { "block", "net", "console", "i2c", "rng", "gpio",
					     "vsock" };
	(void)state;
	for (int t = 0; t < DEV_TYPE_COUNT; t++) {
		assert_string_equal(config_dev_type_name(t), names[t]);
		assert_int_equal(config_dev_type_parse(names[t]), t);
	}
	assert_int_equal(config_dev_type_parse("guest"), -1);
	assert_int_equal(config_dev_type_parse("Block"), -1);
	assert_int_equal(config_dev_type_parse(""), -1);
	assert_int_equal(config_dev_type_parse(NULL), -1);
	assert_string_equal(config_dev_type_name(DEV_TYPE_COUNT), "unknown");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_good_files_load),
		cmocka_unit_test(test_gpio_passthrough),
		cmocka_unit_test(test_bad_files_fail),
		cmocka_unit_test(test_example_loads),
		cmocka_unit_test(test_minimal_defaults),
		cmocka_unit_test(test_explicit_values),
		cmocka_unit_test(test_xenstore_values),
		cmocka_unit_test(test_nbd_values),
		cmocka_unit_test(test_syntax_values),
		cmocka_unit_test(test_max_devices),
		cmocka_unit_test(test_zero_byte_file),
		cmocka_unit_test(test_missing_file),
		cmocka_unit_test(test_error_truncation),
		cmocka_unit_test(test_reload_is_clean),
		cmocka_unit_test(test_mutations),
		cmocka_unit_test(test_dev_type_names),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
