/*
 * xen-virtiod --check-host on xensim: every item OK on a good host, and each FAIL and WARN
 * case made real: device nodes that do not open (privcmd, evtchn, gntdev), xenstored down, a
 * hypervisor without device-model calls (ENOSYS), an old dom0 kernel (no privcmd eventfds),
 * untested Xen versions, no hub at all, a kernel without seccomp filters, no /dev/net/tun, no
 * bridging. Then the daemon's own start-up failures print the same diagnosis.
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <linux/sockios.h>
#include <poll.h>
#include <sched.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "tests/integration/itest.h"
#include "tests/xensim/fault.h"

extern char **environ;

#define OUT_MAX 16384

enum {
	NO_SECCOMP = 1,     /* the kernel refuses seccomp filters (EINVAL) */
	NO_BRIDGE = 2,      /* the bridge ioctls say ENOPKG (no bridge module) */
	NO_TUN = 4,         /* /dev/net/tun does not exist */
	NO_HUB = 8,         /* no $XENSIM_SOCKET: nothing Xen answers */
};

/*
 * A filter that plays a kernel without seccomp filters and without bridging. Written out by
 * hand: the child of this threaded process may only make system calls before exec.
 */
static struct sock_filter filter[] = {
	BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
	BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_prctl, 0, 3),
	BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, args[0])),
	BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, PR_SET_SECCOMP, 0, 6),
	BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | EINVAL),
	BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_ioctl, 0, 4),
	BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, args[1])),
	BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, SIOCGIFBR, 0, 2),
	BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | ENOPKG),
	BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
	BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
};

/* In the child, before exec: system calls only. */
static void child_host(unsigned flags)
{
	struct sock_fprog prog = { sizeof(filter) / sizeof(filter[0]), filter };

	if (flags & NO_TUN) {
		if (unshare(CLONE_NEWNS) < 0 || mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0 ||
		    mount("tmpfs", "/dev/net", "tmpfs", 0, NULL) < 0)
			_exit(120);
	}
	if (flags & (NO_SECCOMP | NO_BRIDGE)) {
		if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0 ||
		    prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog, 0, 0) < 0)
			_exit(121);
	}
}

static long now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1000L + ts.tv_nsec / 1000000L;
}

/* environ plus `extra` ("NAME=value" strings, NULL-terminated), without XENSIM_SOCKET when
 * no_hub. Built before fork. */
static char **make_env(const char *const *extra, bool no_hub)
{
	size_t n = 0, m = 0, j = 0;
	char **env;

	while (environ[n])
		n++;
	while (extra && extra[m])
		m++;
	env = calloc(n + m + 1, sizeof(*env));
	assert_non_null(env);
	for (size_t i = 0; i < n; i++)
		if (!no_hub || strncmp(environ[i], "XENSIM_SOCKET=", 14) != 0)
			env[j++] = environ[i];
	for (size_t i = 0; i < m; i++)
		env[j++] = (char *)extra[i];
	return env;
}

/* The sim daemon with args under the given host; its exit status, output in out. */
static int run(char *out, unsigned flags, const char *const *extra, const char *const *args)
{
	const char *argv[8] = { XVD_SIM_DAEMON };
	char **env = make_env(extra, flags & NO_HUB);
	long end = now_ms() + 20000;
	size_t got = 0;
	int p[2], st = 0, n = 1;
	pid_t pid;

	for (; args[n - 1] && n < 7; n++)
		argv[n] = args[n - 1];
	assert_int_equal(pipe2(p, O_CLOEXEC), 0);
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		dup2(p[1], 1);
		dup2(p[1], 2);
		child_host(flags);
		execve(argv[0], (char *const *)argv, env);
		_exit(127);
	}
	close(p[1]);
	while (got + 1 < OUT_MAX && now_ms() < end) {
		struct pollfd pf = { .fd = p[0], .events = POLLIN };
		ssize_t r;

		if (poll(&pf, 1, 100) != 1)
			continue;
		r = read(p[0], out + got, OUT_MAX - 1 - got);
		if (r <= 0)
			break;
		got += (size_t)r;
	}
	out[got] = '\0';
	close(p[0]);
	free(env);
	assert_int_equal(waitpid(pid, &st, 0), pid);
	return WIFEXITED(st) ? WEXITSTATUS(st) : 128;
}

static int check_host(char *out, unsigned flags, const char *const *extra)
{
	static const char *const args[] = { "--check-host", NULL };

	return run(out, flags, extra, args);
}

/* The line of `item`, starting with its status ("FAIL dm-op: ..."), in a static buffer. */
static const char *line_of(const char *out, const char *item)
{
	static char line[1024];
	char key[64];
	const char *p;

	snprintf(key, sizeof(key), " %s: ", item);
	p = strstr(out, key);
	if (!p)
		return "";
	while (p > out && p[-1] != '\n')
		p--;
	snprintf(line, sizeof(line), "%.*s", (int)strcspn(p, "\n"), p);
	return line;
}

static void expect(const char *out, const char *item, const char *status, const char *text)
{
	const char *l = line_of(out, item);

	if (strncmp(l, status, strlen(status)) != 0 || !strstr(l, text))
		fail_msg("%s: want %s with '%s'; the output was:\n%s", item, status, text, out);
}

static struct xsim_hub *hub;

static int setup(void **state)
{
	(void)state;
	hub = xsim_hub_start();
	return hub ? 0 : -1;
}

static int teardown(void **state)
{
	(void)state;
	xsim_hub_stop(hub);
	return 0;
}

static void test_all_ok(void **state)
{
	char out[OUT_MAX];
	unsigned lines = 0;

	(void)state;
	assert_int_equal(check_host(out, 0, NULL), 0);
	for (char *l = strtok(out, "\n"); l; l = strtok(NULL, "\n"), lines++)
		if (strncmp(l, "OK   ", 5) != 0)
			fail_msg("not OK: %s", l);
	assert_int_equal(lines, 10);
}

static void test_device_nodes(void **state)
{
	static const char *const privcmd[] = { XSIM_ENV_FAULTS "=privcmd", NULL };
	static const char *const evtchn[] = { XSIM_ENV_FAULTS "=evtchn", NULL };
	static const char *const gntdev[] = { XSIM_ENV_FAULTS "=gntdev", NULL };
	char out[OUT_MAX];

	(void)state;
	assert_int_equal(check_host(out, 0, privcmd), 1);
	expect(out, "privcmd", "FAIL", "/dev/xen/privcmd cannot be opened (No such file");
	expect(out, "privcmd", "FAIL", "fix: is this dom0 under Xen?");
	expect(out, "dm-op", "FAIL", "not checked");
	expect(out, "evtchn", "OK", "opens");
	assert_int_equal(check_host(out, 0, evtchn), 1);
	expect(out, "evtchn", "FAIL", "modprobe xen-evtchn");
	expect(out, "privcmd", "OK", "opens");
	/* Only grant-mapped guests need gntdev: a warning, exit 0. */
	assert_int_equal(check_host(out, 0, gntdev), 0);
	expect(out, "gntdev", "WARN", "modprobe xen-gntdev");
}

static void test_no_ioreq_server(void **state)
{
	static const char *const nodm[] = { XSIM_ENV_FAULTS "=no_dm_op", NULL };
	char out[OUT_MAX];

	(void)state;
	assert_int_equal(check_host(out, 0, nodm), 1);
	expect(out, "dm-op", "FAIL", "does not answer device-model calls (ENOSYS)");
	expect(out, "dm-op", "FAIL", "CONFIG_IOREQ_SERVER");
	expect(out, "dm-op", "FAIL", "fix: install a hypervisor built with CONFIG_IOREQ_SERVER=y: "
				     "scripts/build-xen-ioreq.sh");
}

/*
 * In a driver domain xenstored answers the probe's read of dom0's name with EACCES: an answer,
 * so xenstored is up (it once said "xenstored does not answer (Permission denied)").
 */
static void test_xenstore_unprivileged(void **state)
{
	static const char *const domu[] = { XSIM_ENV_FAULTS "=xs_unprivileged", NULL };
	char out[OUT_MAX];

	(void)state;
	assert_int_equal(check_host(out, 0, domu), 0);
	expect(out, "xenstore", "OK", "xenstored answers");
}

static void test_xenstored_down(void **state)
{
	char out[OUT_MAX];

	(void)state;
	assert_int_equal(xsim_xs_restart(hub, true), 0);
	assert_int_equal(check_host(out, 0, NULL), 1);
	xsim_xs_up(hub);
	expect(out, "xenstore", "FAIL", "cannot connect to xenstored (Connection refused)");
	expect(out, "xenstore", "FAIL", "fix: start xenstored");
	assert_int_equal(check_host(out, 0, NULL), 0);
}

static void test_old_kernel_and_versions(void **state)
{
	static const char *const v420[] = { XSIM_ENV_VERSION "=4.20.1", NULL };
	static const char *const v50[] = { XSIM_ENV_VERSION "=5.0-rc", NULL };
	char out[OUT_MAX];

	(void)state;
	xsim_kernel_set(hub, &(struct xsim_kernel_opts){ .no_eventfd = true });
	assert_int_equal(check_host(out, 0, NULL), 0);
	xsim_kernel_set(hub, &(struct xsim_kernel_opts){ 0 });
	expect(out, "fast-path", "WARN", "no privcmd ioeventfd/irqfd");
	expect(out, "xen-version", "OK", "Xen 4.17.5 (tested)");
	assert_int_equal(check_host(out, 0, v420), 0);
	expect(out, "xen-version", "WARN", "Xen 4.20.1 is not tested (4.17 is)");
	assert_int_equal(check_host(out, 0, v50), 0);
	expect(out, "xen-version", "WARN", "Xen 5.0-rc is not tested");
}

static void test_no_hub(void **state)
{
	char out[OUT_MAX];

	(void)state;
	assert_int_equal(check_host(out, NO_HUB, NULL), 1);
	expect(out, "privcmd", "FAIL", "cannot be opened");
	expect(out, "evtchn", "FAIL", "cannot be opened");
	expect(out, "xenstore", "FAIL", "cannot connect to xenstored");
}

static void test_kernel_features(void **state)
{
	char out[OUT_MAX];

	(void)state;
	assert_int_equal(check_host(out, NO_SECCOMP, NULL), 1);
	expect(out, "seccomp", "FAIL", "cannot load seccomp filters (Invalid argument)");
	expect(out, "seccomp", "FAIL", "CONFIG_SECCOMP_FILTER=y");
	expect(out, "bridge", "WARN", "cannot bridge");
	assert_int_equal(check_host(out, NO_TUN, NULL), 0);
	expect(out, "tap", "WARN", "/dev/net/tun cannot be opened (No such file or directory)");
	expect(out, "seccomp", "OK", "offers seccomp filters");
}

/* The daemon on a host with `faults` fails to start and logs the check's own line for item. */
static void expect_diagnosis(const char *const *faults, const char *const *args, const char *item)
{
	char out[OUT_MAX], want[1024];

	assert_int_equal(check_host(out, 0, faults), 1);
	snprintf(want, sizeof(want), "host check: %s", line_of(out, item));
	assert_int_equal(run(out, 0, faults, args), 1);
	if (!strstr(out, want))
		fail_msg("no '%s' in:\n%s", want, out);
}

/* A failed start explains itself with the check's own lines. */
static void test_start_up_diagnosis(void **state)
{
	static const char *const nodm[] = { XSIM_ENV_FAULTS "=no_dm_op", NULL };
	static const char *const priv[] = { XSIM_ENV_FAULTS "=privcmd", NULL };
	char out[OUT_MAX], ini[256];
	struct xsim_dom *d = xsim_dom_create(hub, &(struct xsim_dom_opts){ .name = "g1" });
	const char *args[] = { "--foreground", "--config", ini, NULL };

	(void)state;
	assert_non_null(d);
	snprintf(ini, sizeof(ini), "%s/g1.ini", xsim_hub_dir(hub));
	assert_int_equal(itest_write(ini, "[guest]\nname = g1\ndiscovery = explicit\n"
				     "[rng]\nmmio = 0x02000000\nirq = 33\n"), 0);
	expect_diagnosis(nodm, args, "dm-op");
	expect_diagnosis(priv, args, "privcmd");
	/* A good host says nothing more than the failure itself. */
	assert_int_equal(xsim_dom_destroy(d), 0);
	assert_int_equal(run(out, 0, NULL, args), 1);
	assert_null(strstr(out, "host check:"));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_all_ok),
		cmocka_unit_test(test_device_nodes),
		cmocka_unit_test(test_no_ioreq_server),
		cmocka_unit_test(test_xenstored_down),
		cmocka_unit_test(test_xenstore_unprivileged),
		cmocka_unit_test(test_old_kernel_and_versions),
		cmocka_unit_test(test_no_hub),
		cmocka_unit_test(test_kernel_features),
		cmocka_unit_test(test_start_up_diagnosis),
	};

	return cmocka_run_group_tests(tests, setup, teardown);
}
