/* systemd's file descriptor store: daemon/fdstore.h. */
#include "daemon/fdstore.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
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
	sd_notify(0, msg);
	snprintf(msg, sizeof(msg), "FDSTORE=1\nFDNAME=%s", name);
	rc = sd_pid_notify_with_fds(0, 0, msg, &fd, 1);
	if (rc < 0)
		log_debug("fdstore: keeping %s: %s", name, strerror(-rc));
	return rc > 0;
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
