/*
 * Watch mode (xen-virtiod --watch, unit xen-virtiod.service): for every guest that libxl gives
 * virtio devices and that has DIR/<name>.ini, start its per-guest instance: the systemd unit
 * xen-virtiod@<name>.service under systemd, else a child process of ours.
 */
#ifndef XVD_WATCH_H
#define XVD_WATCH_H

#include <stdbool.h>
#include <stdint.h>

struct ev_loop;
struct watch;

struct watch_params {
	const char *config_dir;   /* where <name>.ini files live */
	const char *self_exe;     /* the binary children run */
	const char *log_level;    /* passed on to children; NULL when not given */
	/*
	 * Where instances keep their state files (passed on to children), NULL for none: files of
	 * domains that died while no instance ran are removed at start and as guests go.
	 */
	const char *state_dir;
	uint32_t backend_domid;   /* whose backend paths to watch (0 in dom0) */
	bool systemd;             /* start units with systemctl instead of forking children */
};

/* Start watching; 0 or a negative errno (logged). */
int watch_start(struct ev_loop *loop, const struct watch_params *p, struct watch **out);

/*
 * Stop watching and send TERM to every child instance; done(opaque) runs once the last child is
 * reaped (at once when there is none; children still running after 10 s get KILL).
 */
void watch_stop(struct watch *w, void (*done)(void *opaque), void *opaque);

/* After watch_stop() has called done. */
void watch_free(struct watch *w);

/* SIGUSR1: the instances we run or started. */
void watch_dump(struct watch *w);

/* Names safe in a path and a unit name: [A-Za-z0-9_.:-], not starting with a dot. */
bool watch_name_ok(const char *name);

#endif
