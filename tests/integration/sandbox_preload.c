/*
 * Test-only, never part of the daemon: tests/integration/test_sandbox.c loads this into the
 * sim daemon with LD_PRELOAD. On SIGUSR2 it makes, from inside the running daemon, one syscall
 * the seccomp filter forbids: mount(2) with arguments that would only fail with EPERM (the
 * daemon has no CAP_SYS_ADMIN left). Under the filter the process dies with SIGSYS; without
 * it (XVD_NO_SECCOMP=1) the call returns and a line says so.
 */
#include <signal.h>
#include <string.h>
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
