/*
 * Test-only, never part of the daemon: tests/integration/test_sandbox.c loads this into the
 * sim daemon with LD_PRELOAD. On SIGUSR2 it makes, from inside the running daemon, one syscall
 * the seccomp filter forbids: mount(2) with arguments that would only fail with EPERM (the
 * daemon has no CAP_SYS_ADMIN left). Under the filter the process dies with SIGSYS; without
 * it (XVD_NO_SECCOMP=1) the call returns and a line says so.
 * With SANDBOX_PRELOAD_NO_FILTER=1 it plays a kernel built without CONFIG_SECCOMP_FILTER:
 * prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, ...) and the seccomp(2) syscall (as libseccomp
 * makes it, through syscall(3)) fail with EINVAL, as that kernel answers.
 */
#include <dlfcn.h>
#include <errno.h>
#include <linux/seccomp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

static void sandbox_preload_usr2(int sig)
{
	static const char msg[] = "sandbox_preload: mount returned\n";

	(void)sig;
	syscall(SYS_mount, "none", "/nonexistent-xvd", "tmpfs", 0UL, NULL);
	if (write(STDERR_FILENO, msg, sizeof(msg) - 1) < 0)
		_exit(3);
}

__attribute__((constructor)) static void sandbox_preload_init(void)
{
	struct sigaction sa;

	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = sandbox_preload_usr2;
	sigemptyset(&sa.sa_mask);
	sigaction(SIGUSR2, &sa, NULL);
}

static int no_filter(void)
{
	const char *v = getenv("SANDBOX_PRELOAD_NO_FILTER");

	return v && *v == '1';
}

long syscall(long nr, ...)
{
	static long (*real)(long, long, long, long, long, long, long);
	long a[6];
	va_list ap;

	va_start(ap, nr);
	for (int i = 0; i < 6; i++)
		a[i] = va_arg(ap, long);
	va_end(ap);
	if (nr == SYS_seccomp && no_filter()) {
		errno = EINVAL;
		return -1;
	}
	if (!real)
		*(void **)&real = dlsym(RTLD_NEXT, "syscall");
	return real ? real(nr, a[0], a[1], a[2], a[3], a[4], a[5]) : -1;
}

int prctl(int option, ...)
{
	static int (*real)(int, unsigned long, unsigned long, unsigned long, unsigned long);
	unsigned long a[4];
	va_list ap;

	va_start(ap, option);
	for (int i = 0; i < 4; i++)
		a[i] = va_arg(ap, unsigned long);
	va_end(ap);
	if (option == PR_SET_SECCOMP && a[0] == SECCOMP_MODE_FILTER && no_filter()) {
		errno = EINVAL;
		return -1;
	}
	if (!real)
		*(void **)&real = dlsym(RTLD_NEXT, "prctl");
	return real ? real(option, a[0], a[1], a[2], a[3]) : -1;
}
