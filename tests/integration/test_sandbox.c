/*
 * The real sim daemon once serving: no capability left on any thread but CAP_IPC_LOCK (the sim
 * build alone keeps it, for xensim's memfd_secret guest RAM: daemon/sandbox.c), no_new_privs, and the
 * seccomp filter in force on every thread (plain builds; sanitizer builds skip the filter). It
 * then still serves register accesses, SIGUSR1, SIGHUP (re-reads the INI) and a clean SIGTERM
 * teardown, all under the filter; and a forbidden syscall made inside the serving daemon (a
 * test-only LD_PRELOAD object, sandbox_preload.c, on SIGUSR2) kills it with SIGSYS, plain builds
 * only. (Every other integration test runs under the filter too: test_i2c
 * covers EEPROM persistence through tmp + rename, test_blk io_uring, test_console sockets,
 * test_control the control socket: accept4, SO_PEERCRED, socketpair and SCM_RIGHTS.)
 */
#include <dirent.h>
#include <errno.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "tests/integration/itest.h"
#include "tests/lib/sanitized.h"

/* The value of "Key:" in /proc/<pid>/task/<tid>/status, or "" when missing. */
static void status_field(pid_t pid, const char *tid, const char *key, char *out, size_t len)
{
	char path[96], line[256];
	size_t klen = strlen(key);
	FILE *f;

	out[0] = '\0';
	snprintf(path, sizeof(path), "/proc/%d/task/%s/status", (int)pid, tid);
	f = fopen(path, "r");
	if (!f)
		return;
	while (fgets(line, sizeof(line), f)) {
		if (strncmp(line, key, klen) == 0 && line[klen] == ':') {
			snprintf(out, len, "%s", line + klen + 1 + strspn(line + klen + 1, " \t"));
			out[strcspn(out, "\n")] = '\0';
			break;
		}
	}
	fclose(f);
}

/*
 * CAP_IPC_LOCK (bit 14) and nothing else: the sim daemon maps guest RAM that cannot be pinned
 * (memfd_secret, as Xen's foreign mappings) and counts as locked memory. The real daemon keeps
 * nothing (tests/unit/test_sandbox.c).
 */
#define SIM_KEPT_CAPS "0000000000004000"

/* Checks every thread of the daemon; returns how many threads were seen. */
static unsigned check_threads(pid_t pid, const char *want_seccomp)
{
	char path[64], v[64];
	struct dirent *e;
	unsigned n = 0;
	DIR *d;

	snprintf(path, sizeof(path), "/proc/%d/task", (int)pid);
	d = opendir(path);
	assert_non_null(d);
	while ((e = readdir(d))) {
		if (e->d_name[0] == '.')
			continue;
		n++;
		status_field(pid, e->d_name, "CapEff", v, sizeof(v));
		assert_string_equal(v, SIM_KEPT_CAPS);
		status_field(pid, e->d_name, "CapPrm", v, sizeof(v));
		assert_string_equal(v, SIM_KEPT_CAPS);
		status_field(pid, e->d_name, "CapAmb", v, sizeof(v));
		assert_string_equal(v, "0000000000000000");
		status_field(pid, e->d_name, "NoNewPrivs", v, sizeof(v));
		assert_string_equal(v, "1");
		status_field(pid, e->d_name, "Seccomp", v, sizeof(v));
		assert_string_equal(v, want_seccomp);
	}
	closedir(d);
	return n;
}

static struct itest *serve(const char *eeprom)
{
	struct xsim_dom_opts o = { .name = "g1", .nr_vcpus = 2, .ram_mib = 16 };
	struct itest *t = itest_new(&o);
	char ini[512];

	assert_non_null(t);
	snprintf(ini, sizeof(ini),
		 "[guest]\nname = g1\ndiscovery = explicit\n"
		 "[rng]\nmmio = 0x02000000\nirq = 33\n"
		 "[i2c \"bus0\"]\nmmio = 0x02000200\nirq = 34\nsim = eeprom@0x50:%s\n", eeprom);
	assert_int_equal(itest_serve(t, ini), 0);
	return t;
}

static void stop_clean(struct itest *t)
{
	int st = itest_free(t);

	if (WIFSIGNALED(st))
		fprintf(stderr, "daemon died by signal %d\n", WTERMSIG(st));
	assert_true(WIFEXITED(st));
	assert_int_equal(WEXITSTATUS(st), 0);
}

static void test_serving_daemon_is_sandboxed(void **state)
{
	char eeprom[256];
	struct itest *t;

	(void)state;
	unsetenv("XVD_NO_SECCOMP");
	unsetenv("XVD_SECCOMP_LOG");
	snprintf(eeprom, sizeof(eeprom), "/tmp/test_sandbox_eeprom.%d.bin", (int)getpid());
	unlink(eeprom);
	t = serve(eeprom);
	assert_true(xsim_daemon_log_has(&t->dm, "every capability dropped"));
	assert_true(xsim_daemon_log_has(&t->dm, SANITIZED ? "sanitizer build: no seccomp filter"
							  : "seccomp filter loaded"));
	assert_true(check_threads(t->dm.pid, SANITIZED ? "0" : "2") >= 1);

	/* Still serving, under the filter. */
	assert_int_equal(itest_rd32(t, 0, WIN0 + R_MAGIC), VIRTIO_MAGIC);
	assert_int_equal(itest_rd32(t, 1, WIN1 + R_DEVICE_ID), 34);
	kill(t->dm.pid, SIGUSR1);
	assert_true(xsim_daemon_wait_log(&t->dm, "guest g1 domid", 3000));
	kill(t->dm.pid, SIGHUP);
	assert_true(xsim_daemon_wait_log(&t->dm, "SIGHUP: re-reading", 3000));
	usleep(100000);
	assert_true(xsim_daemon_alive(&t->dm));
	assert_int_equal(itest_rd32(t, 0, WIN0 + R_DEVICE_ID), 4);
	stop_clean(t);
	unlink(eeprom);
}

/* XVD_NO_SECCOMP=1: no filter, but the capabilities are gone all the same. */
static void test_no_seccomp_override(void **state)
{
	char eeprom[256];
	struct itest *t;

	(void)state;
	snprintf(eeprom, sizeof(eeprom), "/tmp/test_sandbox_eeprom.%d.b.bin", (int)getpid());
	setenv("XVD_NO_SECCOMP", "1", 1);
	t = serve(eeprom);
	unsetenv("XVD_NO_SECCOMP");
	assert_true(xsim_daemon_log_has(&t->dm, "XVD_NO_SECCOMP is set"));
	assert_true(check_threads(t->dm.pid, "0") >= 1);
	assert_int_equal(itest_rd32(t, 0, WIN0 + R_MAGIC), VIRTIO_MAGIC);
	stop_clean(t);
	unlink(eeprom);
}

#if !SANITIZED
#ifndef XVD_SANDBOX_PRELOAD
#error "XVD_SANDBOX_PRELOAD must name tests/integration/sandbox_preload.so (sandbox.mk)"
#endif

/* Serve with the test-only preload (sandbox_preload.c) in the daemon; env_name=1 if given. */
static struct itest *serve_preloaded(const char *env_name, const char *eeprom)
{
	struct itest *t;

	setenv("LD_PRELOAD", XVD_SANDBOX_PRELOAD, 1);
	if (env_name)
		setenv(env_name, "1", 1);
	t = serve(eeprom);
	unsetenv("LD_PRELOAD");
	if (env_name)
		unsetenv(env_name);
	return t;
}

/* A forbidden syscall made from inside the serving daemon kills it with SIGSYS. */
static void test_forbidden_syscall_kills_daemon(void **state)
{
	char eeprom[256];
	struct itest *t;
	int st = 0;

	(void)state;
	snprintf(eeprom, sizeof(eeprom), "/tmp/test_sandbox_eeprom.%d.c.bin", (int)getpid());
	t = serve_preloaded(NULL, eeprom);
	assert_int_equal(itest_rd32(t, 0, WIN0 + R_MAGIC), VIRTIO_MAGIC);
	assert_true(xsim_daemon_alive(&t->dm));
	kill(t->dm.pid, SIGUSR2);
	assert_int_equal(xsim_daemon_wait_exit(&t->dm, 5000, &st), 0);
	if (WIFEXITED(st))
		fprintf(stderr, "daemon exited with %d instead of dying\n", WEXITSTATUS(st));
	assert_true(WIFSIGNALED(st));
	assert_int_equal(WTERMSIG(st), SIGSYS);
	assert_false(xsim_daemon_log_has(&t->dm, "sandbox_preload: mount returned"));
	itest_free(t);
	unlink(eeprom);
}

/*
 * A dom0 kernel without CONFIG_SECCOMP_FILTER: the daemon says so before it touches the guest
 * (no ioreq server, no window routed, never READY), names the kernel option and the way to
 * run without the filter, and exits.
 */
static void test_kernel_without_seccomp_filter(void **state)
{
	struct xsim_dom_opts o = { .name = "g1", .nr_vcpus = 2, .ram_mib = 16 };
	const char *args[] = { "--foreground", "--config", NULL, NULL };
	struct itest *t = itest_new(&o);
	int st = 0;

	(void)state;
	assert_non_null(t);
	assert_int_equal(itest_write(t->ini, "[guest]\nname = g1\ndiscovery = explicit\n"
				     "[rng]\nmmio = 0x02000000\nirq = 33\n"), 0);
	args[2] = t->ini;
	setenv("LD_PRELOAD", XVD_SANDBOX_PRELOAD, 1);
	setenv("SANDBOX_PRELOAD_NO_FILTER", "1", 1);
	assert_int_equal(xsim_daemon_start(t->hub, &t->dm, XVD_SIM_DAEMON, "daemon", args, 0), 0);
	unsetenv("SANDBOX_PRELOAD_NO_FILTER");
	unsetenv("LD_PRELOAD");
	assert_int_equal(xsim_daemon_wait_exit(&t->dm, 10000, &st), 0);
	assert_true(WIFEXITED(st));
	assert_int_equal(WEXITSTATUS(st), 1);
	if (!xsim_daemon_log_has(&t->dm, "it needs CONFIG_SECCOMP_FILTER=y") ||
	    !xsim_daemon_log_has(&t->dm, "XVD_NO_SECCOMP=1")) {
		itest_dump_log(t);
		fail_msg("no diagnosis");
	}
	/* Nothing was set up: no device window routed, no ioreq server created. */
	assert_false(xsim_dom_routed(t->dom, WIN0));
	assert_false(xsim_daemon_log_has(&t->dm, "ioreq server"));
	itest_free(t);
}

/* The same trigger without the filter: the call returns (EPERM), the daemon goes on serving. */
static void test_forbidden_syscall_without_filter(void **state)
{
	char eeprom[256];
	struct itest *t;

	(void)state;
	snprintf(eeprom, sizeof(eeprom), "/tmp/test_sandbox_eeprom.%d.d.bin", (int)getpid());
	t = serve_preloaded("XVD_NO_SECCOMP", eeprom);
	kill(t->dm.pid, SIGUSR2);
	assert_true(xsim_daemon_wait_log(&t->dm, "sandbox_preload: mount returned", 3000));
	assert_true(xsim_daemon_alive(&t->dm));
	assert_int_equal(itest_rd32(t, 0, WIN0 + R_MAGIC), VIRTIO_MAGIC);
	stop_clean(t);
	unlink(eeprom);
}
#endif

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_serving_daemon_is_sandboxed),
		cmocka_unit_test(test_no_seccomp_override),
#if !SANITIZED
		cmocka_unit_test(test_forbidden_syscall_kills_daemon),
		cmocka_unit_test(test_forbidden_syscall_without_filter),
		cmocka_unit_test(test_kernel_without_seccomp_filter),
#endif
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
