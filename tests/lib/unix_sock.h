/*
 * The tests' ends of a unix stream socket: connect to, or bind and listen on, a path (a
 * device's socket, a console's, a vsock PATH_P). Return the descriptor or -1 (errno set; a path
 * too long for sun_path is ENAMETOOLONG); the caller asserts.
 */
#ifndef XVD_TESTS_UNIX_SOCK_H
#define XVD_TESTS_UNIX_SOCK_H

#include <errno.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

static inline int unix_sock_addr(struct sockaddr_un *sa, const char *path)
{
	memset(sa, 0, sizeof(*sa));
	sa->sun_family = AF_UNIX;
	if (strlen(path) >= sizeof(sa->sun_path)) {
		errno = ENAMETOOLONG;
		return -1;
	}
	memcpy(sa->sun_path, path, strlen(path) + 1);
	return 0;
}

static inline int unix_sock_connect(const char *path)
{
	struct sockaddr_un sa;
	int fd;

	if (unix_sock_addr(&sa, path) < 0)
		return -1;
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd >= 0 && connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		int err = errno;

		close(fd);
		errno = err;
		return -1;
	}
	return fd;
}

static inline int unix_sock_listen(const char *path, int backlog)
{
	struct sockaddr_un sa;
	int fd;

	if (unix_sock_addr(&sa, path) < 0)
		return -1;
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd >= 0 && (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 || listen(fd, backlog) < 0)) {
		int err = errno;

		close(fd);
		errno = err;
		return -1;
	}
	return fd;
}

#endif
