/*
 * daemon/sandbox.c: each case forks, installs the daemon's own filter in the child, and checks
 * how the child ends: SIGSYS for a forbidden syscall, exit 0 after the syscalls of a normal
 * request path (and a thread, which needs the clone3 -> clone fallback).
 */
#include <errno.h>
#include <fcntl.h>
#include <net/if.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/ptrace.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "daemon/sandbox.h"
#include "lib/log.h"
#include "tests/lib/sanitized.h"

/* Child exit codes that say which step failed before the forbidden call. */
#define CHILD_LOAD_FAILED 90
#define CHILD_SURVIVED    91

typedef void (*child_fn)(void);

/* Run fn in a child and return its wait status. */
static int run_child(int mode, child_fn fn)
{
	pid_t pid = fork();
	int st;

	assert_true(pid >= 0);
	if (pid == 0) {
		if (mode >= 0 && sandbox_load_filter(mode) < 0)
			_exit(CHILD_LOAD_FAILED);
		fn();
		_exit(CHILD_SURVIVED);
	}
	assert_int_equal(waitpid(pid, &st, 0), pid);
	return st;
}

static void assert_killed_by_sigsys(int st)
{
	if (WIFEXITED(st))
		fprintf(stderr, "child exited with %d instead of dying\n", WEXITSTATUS(st));
	assert_true(WIFSIGNALED(st));
	assert_int_equal(WTERMSIG(st), SIGSYS);
}

/* ---- forbidden ---- */

static void do_ptrace(void) { syscall(SYS_ptrace, PTRACE_TRACEME, 0, NULL, NULL); }
static void do_mount(void) { syscall(SYS_mount, "none", "/mnt", "tmpfs", 0UL, NULL); }
static void do_execve(void)
{
	char *argv[] = { "/bin/true", NULL };

	syscall(SYS_execve, "/bin/true", argv, environ);
}
/* fork() is clone without CLONE_THREAD. */
static void do_fork(void) { syscall(SYS_clone, (unsigned long)SIGCHLD, 0UL, NULL, NULL, 0UL); }
static void do_inet_socket(void) { syscall(SYS_socket, AF_INET, SOCK_STREAM, 0); }
/* A root uid may signal any root process: only ourselves is allowed. */
static void do_kill_other(void) { syscall(SYS_kill, (pid_t)getppid(), 0); }
/* TIOCSTI pushes input into a terminal: a bare tty ioctl, not in the list. */
static void do_tiocsti(void)
{
	char c = 'x';

	syscall(SYS_ioctl, 0, (unsigned long)TIOCSTI, &c);
}
static void do_setuid(void) { syscall(SYS_setuid, 0); }
static void do_bpf(void) { syscall(SYS_bpf, 0, NULL, 0); }

static void test_forbidden_syscalls_kill(void **state)
{
	static const struct { const char *name; child_fn fn; } cases[] = {
		{ "ptrace", do_ptrace }, { "mount", do_mount }, { "execve", do_execve },
		{ "fork", do_fork }, { "socket(AF_INET)", do_inet_socket },
		{ "kill(other)", do_kill_other }, { "ioctl(TIOCSTI)", do_tiocsti },
		{ "setuid", do_setuid }, { "bpf", do_bpf },
	};

	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		int st = run_child(SANDBOX_KILL, cases[i].fn);
		fprintf(stderr, "forbidden %s: %s %d\n", cases[i].name,
			WIFSIGNALED(st) ? "signal" : "exit",
			WIFSIGNALED(st) ? WTERMSIG(st) : WEXITSTATUS(st));
		assert_killed_by_sigsys(st);
	}
}

/* The same call without a filter does not kill: the test above measures the filter. */
static void test_forbidden_without_filter_survives(void **state)
{
	int st = run_child(-1, do_ptrace);

	(void)state;
	assert_true(WIFEXITED(st));
	assert_int_equal(WEXITSTATUS(st), CHILD_SURVIVED);
}

/* SANDBOX_LOG (XVD_SECCOMP_LOG=1) lets the call through. */
static void test_log_mode_survives(void **state)
{
	int st = run_child(SANDBOX_LOG, do_ptrace);

	(void)state;
	assert_true(WIFEXITED(st));
	assert_int_equal(WEXITSTATUS(st), CHILD_SURVIVED);
}

/* ---- allowed: what the serving loop, SIGHUP, the devices and teardown do ---- */

static void *thread_main(void *arg)
{
	return arg;
}

#define CHECK(cond, code) do { if (!(cond)) _exit(code); } while (0)

static void request_path_files(void)
{
	char a[64], b[64], buf[16];
	int fd;

	snprintf(a, sizeof(a), "/tmp/test_sandbox.%d.tmp", (int)getpid());
	snprintf(b, sizeof(b), "/tmp/test_sandbox.%d", (int)getpid());
	fd = open(a, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	CHECK(fd >= 0, 10);
	CHECK(pwrite(fd, "eeprom", 6, 0) == 6, 11);
	CHECK(fsync(fd) == 0 && fdatasync(fd) == 0, 12);
	CHECK(ftruncate(fd, 4096) == 0, 13);
	CHECK(pread(fd, buf, 6, 0) == 6 && memcmp(buf, "eeprom", 6) == 0, 14);
	CHECK(close(fd) == 0, 15);
	CHECK(rename(a, b) == 0, 16);
	CHECK(unlink(b) == 0, 17);
}

/* The daemon's epoll set exists before the filter: the test makes it before forking. */
static int loop_ep = -1;

static void request_path_loop(void)
{
	struct epoll_event ev = { .events = EPOLLIN }, out;
	int efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	int ep = loop_ep;
	uint64_t one = 1;
	struct timespec ts;

	CHECK(efd >= 0, 20);
	CHECK(epoll_ctl(ep, EPOLL_CTL_ADD, efd, &ev) == 0, 22);
	CHECK(write(efd, &one, sizeof(one)) == sizeof(one), 23);
	CHECK(epoll_wait(ep, &out, 1, 1000) == 1, 24);
	CHECK(read(efd, &one, sizeof(one)) == sizeof(one), 25);
	CHECK(clock_gettime(CLOCK_MONOTONIC, &ts) == 0, 26);
	close(ep);
	close(efd);
}

static void request_path_misc(void)
{
	char rnd[32];
	int sv[2], avail = 0;
	struct iovec iov = { .iov_base = rnd, .iov_len = 8 };
	struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1 };
	void *p;
	pthread_t th;
	void *ret = NULL;
	sigset_t set;
	int s;

	CHECK(getrandom(rnd, sizeof(rnd), GRND_NONBLOCK) == (ssize_t)sizeof(rnd), 30);
	CHECK(socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) == 0, 31);
	CHECK(sendmsg(sv[0], &mh, MSG_NOSIGNAL) == 8 && recvmsg(sv[1], &mh, 0) == 8, 32);
	CHECK(ioctl(sv[1], FIONREAD, &avail) == 0, 33);
	close(sv[0]);
	close(sv[1]);
	s = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);   /* sd_notify */
	CHECK(s >= 0, 34);
	close(s);
	p = mmap(NULL, 1 << 20, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	CHECK(p != MAP_FAILED, 35);
	CHECK(madvise(p, 1 << 20, MADV_DONTNEED) == 0 && munmap(p, 1 << 20) == 0, 36);
	free(malloc(1 << 22));
	CHECK(pthread_create(&th, NULL, thread_main, rnd) == 0, 37);
	CHECK(pthread_join(th, &ret) == 0 && ret == rnd, 38);
	sigemptyset(&set);
	sigaddset(&set, SIGUSR2);
	CHECK(sigprocmask(SIG_BLOCK, &set, NULL) == 0, 39);
	CHECK(kill(getpid(), 0) == 0, 40);
}

/* net's link query: if_indextoname, then SIOCGIFFLAGS through a UDP socket. */
static void request_path_net(void)
{
	char name[IF_NAMESIZE];
	struct ifreq ifr;
	unsigned idx = if_nametoindex("lo");
	int s;

	CHECK(idx > 0 && if_indextoname(idx, name) != NULL, 60);
	s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	CHECK(s >= 0, 61);
	memset(&ifr, 0, sizeof(ifr));
	snprintf(ifr.ifr_name, sizeof(ifr.ifr_name), "%s", name);
	CHECK(ioctl(s, SIOCGIFFLAGS, &ifr) == 0 && (ifr.ifr_flags & IFF_LOOPBACK), 62);
	close(s);
}

/*
 * The ioctl classes the daemon's descriptors take pass the filter: on /dev/null each fails in
 * the kernel (ENOTTY or EINVAL) instead of killing the process. The request numbers are the
 * real ones, as the xen/sys/ and linux/ headers define them on x86_64 and arm64.
 */
static void request_path_ioctls(void)
{
	static const unsigned long cmds[] = {
		0x00305000UL,  /* IOCTL_PRIVCMD_HYPERCALL: _IOC(_IOC_NONE, 'P', 0, 48) */
		0x00044504UL,  /* IOCTL_EVTCHN_NOTIFY: _IOC(_IOC_NONE, 'E', 4, 4) */
		0x00184700UL,  /* IOCTL_GNTDEV_MAP_GRANT_REF: _IOC(_IOC_NONE, 'G', 0, 24) */
		0x0707UL,      /* I2C_RDWR */
		0x80081272UL,  /* BLKGETSIZE64 */
		0x400454d0UL,  /* TUNSETOFFLOAD: _IOW('T', 208, unsigned int) */
		0x800454d2UL,  /* TUNGETIFF: _IOR('T', 210, unsigned int) */
		0x5413UL,      /* TIOCGWINSZ (console size poll) */
	};
	char buf[64] = { 0 };
	int fd = open("/dev/null", O_RDWR | O_CLOEXEC);

	CHECK(fd >= 0, 70);
	for (size_t i = 0; i < sizeof(cmds) / sizeof(cmds[0]); i++)
		CHECK(ioctl(fd, cmds[i], buf) < 0 && (errno == ENOTTY || errno == EINVAL), 71);
	close(fd);
}

static void request_path(void)
{
	request_path_files();
	request_path_loop();
	request_path_misc();
	request_path_net();
	request_path_ioctls();
	_exit(0);
}

static void test_request_path_allowed(void **state)
{
	int st;

	(void)state;
	loop_ep = epoll_create1(EPOLL_CLOEXEC);
	assert_true(loop_ep >= 0);
	st = run_child(SANDBOX_KILL, request_path);
	close(loop_ep);
	if (WIFSIGNALED(st))
		fprintf(stderr, "request path killed by signal %d\n", WTERMSIG(st));
	assert_true(WIFEXITED(st));
	assert_int_equal(WEXITSTATUS(st), 0);
}

/* ---- capabilities ---- */

static void drop_and_check(void)
{
	if (sandbox_drop_caps() < 0)
		_exit(50);
	if (!sandbox_caps_empty())
		_exit(51);
	/* A thread made afterwards inherits nothing either. */
	_exit(0);
}

static void test_drop_caps(void **state)
{
	int st = run_child(-1, drop_and_check);

	(void)state;
	assert_true(WIFEXITED(st));
	assert_int_equal(WEXITSTATUS(st), 0);
}

/* ---- the daemon's entry point and its environment switches ---- */

static void enter_then_ptrace(void)
{
	if (sandbox_enter() < 0)
		_exit(CHILD_LOAD_FAILED);
	do_ptrace();
}

static int enter_with_env(const char *name, const char *value)
{
	int st;

	unsetenv("XVD_NO_SECCOMP");
	unsetenv("XVD_SECCOMP_LOG");
	if (name)
		setenv(name, value, 1);
	st = run_child(-1, enter_then_ptrace);
	if (name)
		unsetenv(name);
	return st;
}

static void test_enter_kills_unless_sanitized(void **state)
{
	int st = enter_with_env(NULL, NULL);

	(void)state;
	if (SANITIZED) {
		assert_true(WIFEXITED(st));
		assert_int_equal(WEXITSTATUS(st), CHILD_SURVIVED);
	} else {
		assert_killed_by_sigsys(st);
	}
}

static void test_enter_env_overrides(void **state)
{
	int st;

	(void)state;
	st = enter_with_env("XVD_NO_SECCOMP", "1");
	assert_true(WIFEXITED(st));
	assert_int_equal(WEXITSTATUS(st), CHILD_SURVIVED);
	st = enter_with_env("XVD_SECCOMP_LOG", "1");
	assert_true(WIFEXITED(st));
	assert_int_equal(WEXITSTATUS(st), CHILD_SURVIVED);
	/* "0" means off: the filter is back. */
	st = enter_with_env("XVD_NO_SECCOMP", "0");
	if (!SANITIZED)
		assert_killed_by_sigsys(st);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_forbidden_syscalls_kill),
		cmocka_unit_test(test_forbidden_without_filter_survives),
		cmocka_unit_test(test_log_mode_survives),
		cmocka_unit_test(test_request_path_allowed),
		cmocka_unit_test(test_drop_caps),
		cmocka_unit_test(test_enter_kills_unless_sanitized),
		cmocka_unit_test(test_enter_env_overrides),
	};

	log_init(LOG_WARNING, false);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
