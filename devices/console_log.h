/*
 * A console's log file: guest output appended to a host file that never takes more than
 * (keep + 1) * max bytes of disk, whatever the guest writes. When the next bytes would take the
 * file past max it is rotated, logrotate style: path.N-1 -> path.N ... path -> path.1, the
 * oldest dropped, and a new file started (with keep 0 the file is emptied instead).
 */
#ifndef XVD_CONSOLE_LOG_H
#define XVD_CONSOLE_LOG_H

#include <limits.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

struct con_log {
	int fd;                /* -1: no log */
	uint64_t size;         /* bytes in the current file */
	uint64_t max;          /* no file grows past this (at least 1) */
	unsigned keep;         /* rotated files kept: path.1 .. path.keep */
	uint64_t rotations;
	char path[PATH_MAX];
};

/* No file yet. */
void con_log_init(struct con_log *l);
/*
 * Open (create, append to) path with these limits; on success the previous file, if any, is
 * closed (a reload, or logrotate having moved it). On failure -errno and nothing changes.
 */
int con_log_open(struct con_log *l, const char *path, uint64_t max, unsigned keep);
void con_log_close(struct con_log *l);
/*
 * Append n bytes, rotating as often as needed. Returns n, or -errno when a write or a rotation
 * failed (what did not fit is lost; the file never grows past max).
 */
ssize_t con_log_write(struct con_log *l, const void *p, size_t n);

#endif
