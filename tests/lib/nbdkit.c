#include "tests/lib/nbdkit.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

bool nbdkit_available(void)
{
	return system("command -v nbdkit >/dev/null 2>&1") == 0;
}

static bool nbdkit_listening(const char *sock)
{
	struct sockaddr_un a = { .sun_family = AF_UNIX };
	size_t len = strlen(sock);
	int fd;
	bool ok;

	if (len >= sizeof(a.sun_path))
		return false;
	memcpy(a.sun_path, sock, len + 1);
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	ok = fd >= 0 && connect(fd, (struct sockaddr *)&a, sizeof(a)) == 0;
	if (fd >= 0)
		close(fd);
	return ok;
}

pid_t nbdkit_spawn(const char *sock, const char *const *args, int timeout_ms)
{
	const char *argv[32] = { "nbdkit", "-f", "--exit-with-parent", "-U", sock };
	unsigned n = 5;
	pid_t pid;

	for (; *args && n + 1 < sizeof(argv) / sizeof(argv[0]); args++)
		argv[n++] = *args;
	argv[n] = NULL;
	unlink(sock);
	pid = fork();
	if (pid < 0)
		return -errno;
	if (pid == 0) {
		int null = open("/dev/null", O_WRONLY);

		dup2(null, 2);
		execvp("nbdkit", (char *const *)argv);
		_exit(127);
	}
	/* Polled: nbdkit has no readiness notification we could wait on without a pipe dance. */
	for (int waited = 0; !nbdkit_listening(sock); waited += 10) {
		if (waitpid(pid, NULL, WNOHANG) == pid)
			return -ECHILD;
		if (waited >= timeout_ms) {
			nbdkit_kill(pid, sock);
			return -ETIMEDOUT;
		}
		usleep(10000);
	}
	return pid;
}

void nbdkit_kill(pid_t pid, const char *sock)
{
	if (pid <= 0)
		return;
	kill(pid, SIGKILL);
	waitpid(pid, NULL, 0);
	unlink(sock);
}
