/* systemd's file descriptor store: daemon/fdstore.h. */
#include "daemon/fdstore.h"

#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <systemd/sd-daemon.h>

#include "lib/log.h"

#define FDSTORE_NAME_MAX 255   /* systemd's limit on FDNAME= */

struct fdstore_sd {
	struct fdstore ops;
	bool loaded;
	int n;
	int *fds;                  /* passed to us; -1 once taken or closed */
	char **names;
};

static struct fdstore_sd fdstore_sd;

static void fdstore_load(struct fdstore_sd *s)
{
	int n;

	if (s->loaded)
		return;
	s->loaded = true;
	/* unset_environment: the variables are ours, not our children's. */
	n = sd_listen_fds_with_names(1, &s->names);
	if (n <= 0) {
		s->names = NULL;
		return;
	}
	s->fds = calloc((size_t)n, sizeof(*s->fds));
	if (!s->fds) {
		for (int i = 0; i < n; i++)
			close(SD_LISTEN_FDS_START + i);
		return;
	}
	s->n = n;
	for (int i = 0; i < n; i++)
		s->fds[i] = SD_LISTEN_FDS_START + i;
	log_info("fdstore: %d descriptors passed from the previous instance", n);
}

static int fdstore_sd_take(struct fdstore *st, const char *name)
{
	struct fdstore_sd *s = (struct fdstore_sd *)st;

	fdstore_load(s);
	for (int i = 0; i < s->n; i++) {
		if (s->fds[i] < 0 || !s->names || !s->names[i] || strcmp(s->names[i], name) != 0)
			continue;
		int fd = s->fds[i];

		s->fds[i] = -1;
		return fd;
	}
	return -1;
}

#define FDSTORE_WAIT_MS 1000   /* the longest a full notify socket holds the loop */

/*
 * sd_pid_notify_with_fds() with a bound on the wait: a device keeps a descriptor from the loop
 * (a console client attaching), and a service manager slow to read its notify socket must not
 * stall every device of the guest for longer than FDSTORE_WAIT_MS; a message that does not fit
 * by then is not sent. Returns 0 (nothing to send to), 1 (sent) or a negative errno.
 */
static int fdstore_notify(const char *msg, int fd)
{
	const char *e = getenv("NOTIFY_SOCKET");
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	union {
		struct cmsghdr h;
		char buf[CMSG_SPACE(sizeof(int))];
	} c;
	struct iovec iov = { .iov_base = (void *)msg, .iov_len = strlen(msg) };
	struct msghdr mh = { .msg_name = &sa, .msg_iov = &iov, .msg_iovlen = 1 };
	size_t len;
	int s, rc = 1;

	if (!e || (e[0] != '/' && e[0] != '@') || (len = strlen(e)) >= sizeof(sa.sun_path))
		return 0;
	memcpy(sa.sun_path, e, len);
	if (e[0] == '@')
		sa.sun_path[0] = 0;    /* an abstract address */
	mh.msg_namelen = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + len);
	if (fd >= 0) {
		memset(&c, 0, sizeof(c));
		mh.msg_control = c.buf;
		mh.msg_controllen = sizeof(c.buf);
		c.h.cmsg_level = SOL_SOCKET;
		c.h.cmsg_type = SCM_RIGHTS;
		c.h.cmsg_len = CMSG_LEN(sizeof(int));
		memcpy(CMSG_DATA(&c.h), &fd, sizeof(int));
	}
	s = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (s < 0)
		return -errno;
	/* Connected, so that POLLOUT waits for room in the manager's queue. */
	if (connect(s, (struct sockaddr *)&sa, mh.msg_namelen) < 0) {
		rc = -errno;
		close(s);
		return rc;
	}
	mh.msg_name = NULL;
	mh.msg_namelen = 0;
	for (int tries = 0; tries < 2; tries++) {
		struct pollfd p = { .fd = s, .events = POLLOUT };

		rc = sendmsg(s, &mh, MSG_NOSIGNAL | MSG_DONTWAIT) < 0 ? -errno : 1;
		if (rc != -EAGAIN || poll(&p, 1, FDSTORE_WAIT_MS) <= 0)
			break;
	}
	close(s);
	return rc;
}

static bool fdstore_sd_keep(struct fdstore *st, const char *name, int fd)
{
	struct fdstore_sd *s = (struct fdstore_sd *)st;
	char msg[64 + FDSTORE_NAME_MAX];
	int rc;

	if (strlen(name) > FDSTORE_NAME_MAX || strchr(name, ':'))
		return false;
	/*
	 * A descriptor of that name passed to us and not taken is superseded by this one: closed
	 * now, so that fdstore_systemd_close_unused() does not remove it from the store later by
	 * its name, which would remove ours with it.
	 */
	fdstore_load(s);
	for (int i = 0; i < s->n; i++) {
		if (s->fds[i] < 0 || !s->names || !s->names[i] || strcmp(s->names[i], name) != 0)
			continue;
		close(s->fds[i]);
		s->fds[i] = -1;
	}
	/* One of that name at a time: an earlier one (the previous instance's) goes first. */
	snprintf(msg, sizeof(msg), "FDSTOREREMOVE=1\nFDNAME=%s", name);
	rc = fdstore_notify(msg, -1);
	if (fd < 0 || rc < 0) {
		if (rc < 0)
			log_debug("fdstore: removing %s: %s", name, strerror(-rc));
		return rc >= 0;
	}
	snprintf(msg, sizeof(msg), "FDSTORE=1\nFDNAME=%s", name);
	rc = fdstore_notify(msg, fd);
	if (rc < 0)
		log_debug("fdstore: keeping %s: %s", name, strerror(-rc));
	return rc > 0;
}

bool fdstore_systemd_present(void)
{
	const char *e = getenv("NOTIFY_SOCKET");

	return e && (e[0] == '/' || e[0] == '@');
}

struct fdstore *fdstore_systemd(void)
{
	fdstore_sd.ops.take = fdstore_sd_take;
	fdstore_sd.ops.keep = fdstore_sd_keep;
	return &fdstore_sd.ops;
}

void fdstore_systemd_close_unused(void)
{
	struct fdstore_sd *s = &fdstore_sd;

	fdstore_load(s);
	for (int i = 0; i < s->n; i++) {
		const char *name = s->names && s->names[i] ? s->names[i] : NULL;
		char msg[64 + FDSTORE_NAME_MAX];

		if (s->fds[i] < 0)
			continue;
		log_debug("fdstore: %s was not taken over", name ? name : "?");
		close(s->fds[i]);
		s->fds[i] = -1;
		/* Nor kept for the instance after us. */
		if (name && strlen(name) <= FDSTORE_NAME_MAX) {
			snprintf(msg, sizeof(msg), "FDSTOREREMOVE=1\nFDNAME=%s", name);
			sd_notify(0, msg);
		}
	}
}
