#include "devices/console_log.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

void con_log_init(struct con_log *l)
{
	memset(l, 0, sizeof(*l));
	l->fd = -1;
}

int con_log_open(struct con_log *l, const char *path, uint64_t max, unsigned keep)
{
	struct stat st;
	int fd;

	if (strlen(path) >= sizeof(l->path) || max == 0)
		return -EINVAL;
	fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC | O_NOCTTY, 0640);
	if (fd < 0)
		return -errno;
	if (fstat(fd, &st) < 0) {
		int rc = -errno;

		close(fd);
		return rc;
	}
	if (l->fd >= 0)
		close(l->fd);
	l->fd = fd;
	l->size = (uint64_t)st.st_size;
	l->max = max;
	l->keep = keep;
	if (path != l->path)
		memmove(l->path, path, strlen(path) + 1);
	return 0;
}

void con_log_close(struct con_log *l)
{
	if (l->fd >= 0)
		close(l->fd);
	l->fd = -1;
}

/* path.i, or -ENAMETOOLONG. */
static int con_log_name(const struct con_log *l, unsigned i, char *buf, size_t size)
{
	int n = snprintf(buf, size, "%s.%u", l->path, i);

	return n < 0 || (size_t)n >= size ? -ENAMETOOLONG : 0;
}

/* path -> path.1 after shifting the older ones up; then a new, empty path. */
static int con_log_rotate(struct con_log *l)
{
	char from[PATH_MAX + 16], to[PATH_MAX + 16];

	l->rotations++;
	if (l->keep == 0) {
		if (ftruncate(l->fd, 0) < 0)
			return -errno;
		l->size = 0;
		return 0;
	}
	for (unsigned i = l->keep; i > 1; i--) {
		if (con_log_name(l, i - 1, from, sizeof(from)) < 0 ||
		    con_log_name(l, i, to, sizeof(to)) < 0)
			return -ENAMETOOLONG;
		if (rename(from, to) < 0 && errno != ENOENT)
			return -errno;
	}
	if (con_log_name(l, 1, to, sizeof(to)) < 0)
		return -ENAMETOOLONG;
	if (rename(l->path, to) < 0)
		return -errno;
	return con_log_open(l, l->path, l->max, l->keep);
}

ssize_t con_log_write(struct con_log *l, const void *p, size_t n)
{
	const uint8_t *b = p;
	size_t left = n;

	while (left && l->fd >= 0) {
		if (l->size >= l->max) {
			int rc = con_log_rotate(l);

			if (rc < 0)
				return rc;
		}
		uint64_t room = l->max - l->size;
		size_t k = left < room ? left : (size_t)room;
		ssize_t w = write(l->fd, b, k);

		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			return w < 0 ? -errno : -EIO;
		l->size += (uint64_t)w;
		b += w;
		left -= (size_t)w;
	}
	return (ssize_t)n;
}
