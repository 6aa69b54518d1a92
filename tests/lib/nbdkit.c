#include "tests/lib/nbdkit.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdint.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

bool nbdkit_available(void)
{
	return nbd_tool_available("nbdkit");
}

static int nbdkit_tcp_port(const char *sock)
{
	return strncmp(sock, "tcp:", 4) == 0 ? atoi(sock + 4) : 0;
}

static bool nbdkit_listening(const char *sock)
{
	struct sockaddr_un a = { .sun_family = AF_UNIX };
	struct sockaddr_in in = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	int port = nbdkit_tcp_port(sock), fd;
	size_t len = strlen(sock);
	bool ok;

	if (!port && len >= sizeof(a.sun_path))
		return false;
	memcpy(a.sun_path, sock, port ? 0 : len + 1);
	in.sin_port = htons((uint16_t)port);
	fd = socket(port ? AF_INET : AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	ok = fd >= 0 && (port ? connect(fd, (struct sockaddr *)&in, sizeof(in)) :
			 connect(fd, (struct sockaddr *)&a, sizeof(a))) == 0;
	if (fd >= 0)
		close(fd);
	return ok;
}

int nbdkit_free_port(void)
{
	struct sockaddr_in in = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t len = sizeof(in);
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0), port = 0;

	if (fd >= 0 && bind(fd, (struct sockaddr *)&in, sizeof(in)) == 0 &&
	    getsockname(fd, (struct sockaddr *)&in, &len) == 0)
		port = ntohs(in.sin_port);
	if (fd >= 0)
		close(fd);
	return port;
}

bool nbd_tool_available(const char *prog)
{
	char cmd[128];

	snprintf(cmd, sizeof(cmd), "command -v '%s' >/dev/null 2>&1", prog);
	return system(cmd) == 0;
}

pid_t nbd_server_spawn(const char *sock, const char *const *argv, int timeout_ms)
{
	pid_t pid;

	if (!nbdkit_tcp_port(sock))
		unlink(sock);
	pid = fork();
	if (pid < 0)
		return -errno;
	if (pid == 0) {
		int null = open("/dev/null", O_WRONLY);

		/* A server the test forgot (a failed assert) goes with the test. */
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		dup2(null, 2);
		execvp(argv[0], (char *const *)argv);
		_exit(127);
	}
	/* Polled: the servers have no readiness notification we could wait on without a pipe dance. */
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

pid_t nbdkit_spawn(const char *sock, const char *const *args, int timeout_ms)
{
	int port = nbdkit_tcp_port(sock);
	const char *argv[32] = { "nbdkit", "-f", "--exit-with-parent", port ? "-p" : "-U",
				 port ? sock + 4 : sock, port ? "-i" : NULL, "127.0.0.1" };
	unsigned n = port ? 7 : 5;

	for (; *args && n + 1 < sizeof(argv) / sizeof(argv[0]); args++)
		argv[n++] = *args;
	argv[n] = NULL;
	return nbd_server_spawn(sock, argv, timeout_ms);
}

int nbd_server_stop(pid_t pid, const char *sock)
{
	int st = -1;

	if (pid <= 0)
		return -1;
	kill(pid, SIGTERM);
	if (waitpid(pid, &st, 0) != pid)
		return -1;
	if (!nbdkit_tcp_port(sock))
		unlink(sock);
	return st;
}

void nbdkit_kill(pid_t pid, const char *sock)
{
	if (pid <= 0)
		return;
	kill(pid, SIGKILL);
	waitpid(pid, NULL, 0);
	if (!nbdkit_tcp_port(sock))
		unlink(sock);
}
