/*
 * The restart tests' rig (test_restart.c, test_restart_dev.c): a guest served by the real sim
 * daemon, which kills itself at a named point of a request's life (lib/testpoint.h:
 * XSIM_KILL_AT), and a supervisor thread that restarts it as systemd's Restart=on-failure does,
 * with the file descriptors it stored (FileDescriptorStoreMax=) or, keep_store false, without.
 */
#ifndef XVD_RESTART_RIG_H
#define XVD_RESTART_RIG_H

#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "tests/integration/itest.h"

struct rig {
	struct itest *t;
	char img[192];
	const char *args[8];
	pthread_t sup;
	bool sup_running;
	atomic_bool stop;
	atomic_uint restarts;
	unsigned kills_left;          /* further kills, each at the same point */
	char kill_at[64];
	bool keep_store;              /* false: each restart begins with an empty fd store */
	bool restart_clean;           /* restart after a clean exit too (systemctl restart) */
	unsigned term_after;          /* SIGTERM once the guest has this many completions */
};

/* Forget what the daemon stored, as a service manager without FileDescriptorStoreMax= would. */
static inline void rig_empty_store(struct rig *r)
{
	xsim_daemon_store_count(&r->t->dm);
	while (r->t->dm.nstore)
		close(r->t->dm.store[--r->t->dm.nstore].fd);
}

static void *rig_supervisor(void *arg)
{
	struct rig *r = arg;

	while (!atomic_load(&r->stop)) {
		char tag[32];

		if (xsim_daemon_alive(&r->t->dm)) {
			/*
			 * Read what it notifies, as systemd does all the time: a socket left
			 * full (10 datagrams in a new network namespace) blocks its FDSTORE=1.
			 */
			xsim_daemon_store_count(&r->t->dm);
			usleep(1000);
			continue;
		}
		/* Restart=on-failure: a clean exit is not restarted (unless systemctl restart). */
		if ((!WIFSIGNALED(r->t->dm.status) || WTERMSIG(r->t->dm.status) != SIGKILL) &&
		    !(r->restart_clean && WIFEXITED(r->t->dm.status) &&
		      WEXITSTATUS(r->t->dm.status) == 0))
			break;
		if (!r->keep_store)
			rig_empty_store(r);
		if (r->kills_left) {
			r->kills_left--;
			snprintf(r->t->dm.kill_at, sizeof(r->t->dm.kill_at), "%s", r->kill_at);
		}
		snprintf(tag, sizeof(tag), "daemon%u", atomic_load(&r->restarts) + 2);
		if (xsim_daemon_restart(r->t->hub, &r->t->dm, XVD_SIM_DAEMON, tag, r->args, 0) < 0)
			break;
		atomic_fetch_add(&r->restarts, 1);
	}
	return NULL;
}

static inline void rig_supervise(struct rig *r)
{
	atomic_store(&r->stop, false);
	if (pthread_create(&r->sup, NULL, rig_supervisor, r) != 0)
		fail_msg("cannot start the supervisor thread");
	r->sup_running = true;
}

static inline void rig_unsupervise(struct rig *r)
{
	if (!r->sup_running)
		return;
	atomic_store(&r->stop, true);
	pthread_join(r->sup, NULL);
	r->sup_running = false;
}

static inline void dump_logs(struct rig *r)
{
	char path[256], line[512];

	/* The live instance's state first (SIGUSR1: registers, queues, stats). */
	if (xsim_daemon_alive(&r->t->dm))
		xsim_daemon_stat(&r->t->dm, "vcpus", 2000);

	for (unsigned i = 1; i <= atomic_load(&r->restarts) + 1; i++) {
		FILE *f;

		if (i == 1)
			snprintf(path, sizeof(path), "%s/daemon.log", xsim_hub_dir(r->t->hub));
		else
			snprintf(path, sizeof(path), "%s/daemon%u.log", xsim_hub_dir(r->t->hub), i);
		f = fopen(path, "r");
		fprintf(stderr, "--- %s\n", path);
		while (f && fgets(line, sizeof(line), f))
			fprintf(stderr, "  | %s", line);
		if (f)
			fclose(f);
	}
}

static inline int64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/*
 * Write ini (the rig's t already made) and start its daemon, killing itself at kill_at when
 * given; returns once it serves. The fd store is kept across restarts unless the test says.
 */
static inline void rig_launch(struct rig *r, const char *ini, const char *kill_at)
{
	int rc;

	r->keep_store = true;
	assert_int_equal(itest_write(r->t->ini, "%s", ini), 0);
	r->args[0] = "--foreground";
	r->args[1] = "--config";
	r->args[2] = r->t->ini;
	r->args[3] = "--log-level";
	r->args[4] = getenv("RESTART_ITEST_LOG") ? getenv("RESTART_ITEST_LOG") : "info";
	r->args[5] = NULL;
	rc = xsim_daemon_start_at(r->t->hub, &r->t->dm, XVD_SIM_DAEMON, "daemon", r->args, 0,
				  kill_at);
	assert_int_equal(rc, 0);
	rc = xsim_daemon_wait_ready(&r->t->dm, READY_MS);
	if (rc < 0)
		itest_dump_log(r->t);
	assert_int_equal(rc, 0);
}

/* The log of the instance that took over (the n-th restart, from 1) says so. */
static inline bool took_over(struct rig *r, unsigned n, const char *needle)
{
	struct xsim_daemon probe;
	char tag[32];

	snprintf(tag, sizeof(tag), "daemon%u", n + 1);
	memset(&probe, 0, sizeof(probe));
	snprintf(probe.log_path, sizeof(probe.log_path), "%s/%s.log", xsim_hub_dir(r->t->hub),
		 tag);
	return xsim_daemon_wait_log(&probe, needle, 5000);
}

/* main() of a restart test: a work folder for it; RESTART_ONLY=<test name pattern>: one test. */
static inline int rig_run(const struct CMUnitTest *tests, size_t n, char *workdir)
{
	int rc;

	if (!mkdtemp(workdir))
		return 1;
	if (getenv("RESTART_ONLY"))
		cmocka_set_test_filter(getenv("RESTART_ONLY"));
	rc = _cmocka_run_group_tests("restart", tests, n, NULL, NULL);
	rmdir(workdir);
	return rc;
}

#endif
