/*
 * Watch mode: start one instance per guest that appears with virtio devices and has an INI file.
 * Instances are never restarted by us: under systemd the unit's Restart= decides, without it a
 * crashed instance stays down until the guest is created again.
 */
#include "daemon/watch.h"

#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include <ev.h>

#include "daemon/state.h"
#include "ioreq/xen.h"
#include "lib/log.h"
#include "lib/util.h"


#define WATCH_NAME_MAX 64
#define WATCH_KILL_AFTER 10.0   /* seconds between TERM and KILL for children at shutdown */
#define WATCH_GONE_MAX   64     /* guests whose devices went, waited for to die */
#define WATCH_GONE_TICK  0.5    /* seconds between looks at them */
#define WATCH_GONE_TICKS 240    /* a domain still there after 2 minutes is not dying */

struct watch_child {
	ev_child w;                   /* reaps the process; we recover the child from it */
	struct watch *owner;
	struct watch_child *next;
	bool instance;                /* an xen-virtiod child (else a systemctl helper) */
	uint32_t domid;
	uint32_t pending_domid;       /* a newer domain of the same name waits for this one to exit */
	bool pending;
	char name[WATCH_NAME_MAX];
};

/* Under systemd: the domid each guest name had when we last asked for its unit. */
struct watch_seen {
	struct watch_seen *next;
	uint32_t domid;
	char name[WATCH_NAME_MAX];
};

struct watch {
	struct ev_loop *loop;
	struct watch_params p;
	char dir[PATH_MAX];
	struct xen_backend_watch *bw;
	struct watch_child *children;
	struct watch_seen *seen;
	ev_timer kill_timer;          /* shutdown: KILL what TERM did not stop */
	/*
	 * Guests whose devices went: libxl removes them before the domain dies, so their state
	 * files are swept once the domains are gone (gone_timer looks).
	 */
	uint32_t gone[WATCH_GONE_MAX];
	unsigned ngone, gone_ticks;
	ev_timer gone_timer;
	bool stopping;
	void (*done)(void *opaque);
	void *done_opaque;
	unsigned started;
};

bool watch_name_ok(const char *name)
{
	size_t n = strlen(name);

	if (n == 0 || n >= WATCH_NAME_MAX || name[0] == '.')
		return false;
	return strspn(name, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_.:-") ==
	       n;
}

/* The child must not inherit libev's blocked signals: exec keeps the mask. */
static pid_t watch_spawn(const char *file, char *const argv[])
{
	pid_t pid = fork();
	sigset_t none;

	if (pid != 0)
		return pid;
	sigemptyset(&none);
	sigprocmask(SIG_SETMASK, &none, NULL);
	signal(SIGPIPE, SIG_DFL);   /* we ignore it; exec keeps an ignored disposition */
	execvp(file, argv);
	fprintf(stderr, "xen-virtiod: cannot run %s: %s\n", file, strerror(errno));
	_exit(127);
}

static void watch_maybe_done(struct watch *w)
{
	if (!w->stopping || w->children || !w->done)
		return;
	ev_timer_stop(w->loop, &w->kill_timer);
	w->done(w->done_opaque);
	w->done = NULL;
}

static void watch_log_exit(const struct watch_child *c, int pid, int status)
{
	const char *what = c->instance ? "instance" : "systemctl";

	if (WIFEXITED(status) && WEXITSTATUS(status) == 0)
		log_info("%s for %s (domid %" PRIu32 ", pid %d) exited", what, c->name, c->domid,
			 pid);
	else if (WIFEXITED(status))
		log_warn("%s for %s (domid %" PRIu32 ", pid %d) failed with exit status %d", what,
			 c->name, c->domid, pid, WEXITSTATUS(status));
	else
		log_warn("%s for %s (domid %" PRIu32 ", pid %d) killed by signal %d", what, c->name,
			 c->domid, pid, WTERMSIG(status));
}

static void watch_unlink(struct watch *w, struct watch_child *c)
{
	for (struct watch_child **pp = &w->children; *pp; pp = &(*pp)->next)
		if (*pp == c) {
			*pp = c->next;
			return;
		}
}

static void watch_start_instance(struct watch *w, const char *name, uint32_t domid);

static void watch_on_child(struct ev_loop *loop, ev_child *cw, int revents)
{
	struct watch_child *c = container_of(cw, struct watch_child, w);
	struct watch *w = c->owner;

	(void)revents;
	ev_child_stop(loop, cw);
	watch_log_exit(c, cw->rpid, cw->rstatus);
	watch_unlink(w, c);
	if (c->pending && !w->stopping && xen_domain_alive(c->pending_domid))
		watch_start_instance(w, c->name, c->pending_domid);
	free(c);
	watch_maybe_done(w);
}

static int watch_track(struct watch *w, pid_t pid, const char *name, uint32_t domid,
		       bool instance)
{
	struct watch_child *c = calloc(1, sizeof(*c));

	if (!c) {
		/* Nobody will reap it through libev: it becomes a zombie until we exit. */
		log_err("out of memory tracking pid %d", (int)pid);
		return -ENOMEM;
	}
	c->owner = w;
	c->instance = instance;
	c->domid = domid;
	snprintf(c->name, sizeof(c->name), "%s", name);
	ev_child_init(&c->w, watch_on_child, pid, 0);
	ev_child_start(w->loop, &c->w);
	c->next = w->children;
	w->children = c;
	return 0;
}

/*
 * The first time we see a name, "start": a running instance (watcher restarted) keeps serving.
 * A name seen before with another domid is a re-created guest: its instance, if still there,
 * serves the dead domain and would make "start" a no-op, so "restart".
 */
static const char *watch_unit_verb(struct watch *w, const char *name, uint32_t domid)
{
	struct watch_seen *s;

	for (s = w->seen; s; s = s->next)
		if (strcmp(s->name, name) == 0)
			break;
	if (s) {
		const char *verb = s->domid == domid ? "start" : "restart";
		s->domid = domid;
		return verb;
	}
	s = calloc(1, sizeof(*s));
	if (s) {
		s->domid = domid;
		snprintf(s->name, sizeof(s->name), "%s", name);
		s->next = w->seen;
		w->seen = s;
	}
	return "start";
}

static void watch_start_unit(struct watch *w, const char *name, uint32_t domid)
{
	char unit[WATCH_NAME_MAX + 32];
	char *argv[] = { "systemctl", (char *)watch_unit_verb(w, name, domid), "--no-block", unit,
			 NULL };
	pid_t pid;

	snprintf(unit, sizeof(unit), "xen-virtiod@%s.service", name);
	pid = watch_spawn("systemctl", argv);
	if (pid < 0) {
		log_err("%s: cannot fork systemctl: %s", name, strerror(errno));
		return;
	}
	log_notice("%s (domid %" PRIu32 "): systemctl %s %s", name, domid, argv[1], unit);
	w->started++;
	watch_track(w, pid, name, domid, false);
}

static void watch_start_child(struct watch *w, const char *name, uint32_t domid)
{
	char ini[PATH_MAX + WATCH_NAME_MAX + 8], id[16];
	char *argv[] = { (char *)w->p.self_exe, "--foreground", "--config", ini, "--domain", id,
			 "--state-dir", w->p.state_dir ? (char *)w->p.state_dir : "none",
			 w->p.log_level ? "--log-level" : NULL, (char *)w->p.log_level, NULL };
	pid_t pid;

	snprintf(ini, sizeof(ini), "%s/%s.ini", w->dir, name);
	snprintf(id, sizeof(id), "%" PRIu32, domid);
	pid = watch_spawn(w->p.self_exe, argv);
	if (pid < 0) {
		log_err("%s: cannot fork an instance: %s", name, strerror(errno));
		return;
	}
	log_notice("%s (domid %" PRIu32 "): started instance pid %d with %s", name, domid,
		   (int)pid, ini);
	w->started++;
	watch_track(w, pid, name, domid, true);
}

static struct watch_child *watch_find_instance(struct watch *w, const char *name)
{
	for (struct watch_child *c = w->children; c; c = c->next)
		if (c->instance && strcmp(c->name, name) == 0)
			return c;
	return NULL;
}

static void watch_start_instance(struct watch *w, const char *name, uint32_t domid)
{
	struct watch_child *c;

	if (w->p.systemd) {
		/* systemd knows whether the unit runs; watch_unit_verb() picks start or restart. */
		watch_start_unit(w, name, domid);
		return;
	}
	c = watch_find_instance(w, name);
	if (c && c->domid == domid)
		return;
	if (c) {
		/* The guest was re-created; its old instance exits when the old domain is gone. */
		log_info("%s (domid %" PRIu32 "): waiting for the instance of domid %" PRIu32
			 " to exit", name, domid, c->domid);
		c->pending = true;
		c->pending_domid = domid;
		return;
	}
	watch_start_child(w, name, domid);
}

/* State files of domains that are gone (or whose id a new domain has now). */
static void watch_sweep(struct watch *w)
{
	unsigned n;

	if (!w->p.state_dir)
		return;
	n = state_sweep(w->p.state_dir, xen_domain_is);
	if (n)
		log_info("%u state files of domains that are gone removed from %s", n,
			 w->p.state_dir);
}

static void watch_on_gone_timer(struct ev_loop *loop, ev_timer *t, int revents)
{
	struct watch *w = container_of(t, struct watch, gone_timer);
	bool died = false;

	(void)loop;
	(void)revents;
	for (unsigned i = 0; i < w->ngone;) {
		if (xen_domain_alive(w->gone[i])) {
			i++;
			continue;
		}
		w->gone[i] = w->gone[--w->ngone];
		died = true;
	}
	if (died)
		watch_sweep(w);
	if (w->ngone == 0 || ++w->gone_ticks >= WATCH_GONE_TICKS) {
		w->ngone = 0;
		ev_timer_stop(w->loop, &w->gone_timer);
	}
}

static void watch_on_gone(struct watch *w, uint32_t domid)
{
	if (!w->p.state_dir || w->ngone == WATCH_GONE_MAX)
		return;
	w->gone[w->ngone++] = domid;
	w->gone_ticks = 0;
	if (!ev_is_active(&w->gone_timer))
		ev_timer_again(w->loop, &w->gone_timer);
}

static void watch_on_domain(void *opaque, uint32_t domid, bool present)
{
	struct watch *w = opaque;
	char name[WATCH_NAME_MAX], ini[PATH_MAX + WATCH_NAME_MAX + 8];

	if (w->stopping)
		return;
	if (!present) {
		watch_on_gone(w, domid);
		return;
	}
	if (xen_domain_name(domid, name, sizeof(name)) < 0) {
		log_warn("domid %" PRIu32 " has virtio devices but no name; skipped", domid);
		return;
	}
	if (!watch_name_ok(name)) {
		log_warn("domid %" PRIu32 ": the name \"%s\" cannot name a file or unit; skipped",
			 domid, name);
		return;
	}
	snprintf(ini, sizeof(ini), "%s/%s.ini", w->dir, name);
	if (access(ini, R_OK) != 0) {
		log_info("%s (domid %" PRIu32 "): no readable %s; not ours", name, domid, ini);
		return;
	}
	watch_start_instance(w, name, domid);
}

int watch_start(struct ev_loop *loop, const struct watch_params *p, struct watch **out)
{
	struct watch *w = calloc(1, sizeof(*w));

	if (!w) {
		log_err("out of memory");
		return -ENOMEM;
	}
	w->loop = loop;
	w->p = *p;
	snprintf(w->dir, sizeof(w->dir), "%s", p->config_dir);
	ev_init(&w->kill_timer, NULL);
	ev_init(&w->gone_timer, watch_on_gone_timer);
	w->gone_timer.repeat = WATCH_GONE_TICK;
	w->bw = xen_backend_watch_start(loop, p->backend_domid, watch_on_domain, w);
	if (!w->bw) {
		log_err("cannot watch the xenstore backend paths");
		free(w);
		return -EIO;
	}
	log_notice("watching for guests with an INI file in %s (%s)", w->dir,
		   p->systemd ? "starting systemd units" : "starting child processes");
	watch_sweep(w);
	*out = w;
	return 0;
}

static void watch_on_kill_timer(struct ev_loop *loop, ev_timer *t, int revents)
{
	struct watch *w = container_of(t, struct watch, kill_timer);

	(void)loop;
	(void)revents;
	for (struct watch_child *c = w->children; c; c = c->next) {
		log_warn("instance for %s (pid %d) ignored TERM; killing it", c->name, c->w.pid);
		kill(c->w.pid, SIGKILL);
	}
}

void watch_stop(struct watch *w, void (*done)(void *opaque), void *opaque)
{
	if (w->stopping)
		return;
	w->stopping = true;
	w->done = done;
	w->done_opaque = opaque;
	xen_backend_watch_stop(w->bw);
	w->bw = NULL;
	ev_timer_stop(w->loop, &w->gone_timer);
	for (struct watch_child *c = w->children; c; c = c->next)
		if (c->instance)
			kill(c->w.pid, SIGTERM);
	ev_timer_init(&w->kill_timer, watch_on_kill_timer, WATCH_KILL_AFTER, 0);
	ev_timer_start(w->loop, &w->kill_timer);
	watch_maybe_done(w);
}

void watch_free(struct watch *w)
{
	if (!w)
		return;
	xen_backend_watch_stop(w->bw);
	ev_timer_stop(w->loop, &w->kill_timer);
	ev_timer_stop(w->loop, &w->gone_timer);
	while (w->seen) {
		struct watch_seen *n = w->seen->next;
		free(w->seen);
		w->seen = n;
	}
	while (w->children) {
		struct watch_child *c = w->children;
		ev_child_stop(w->loop, &c->w);
		w->children = c->next;
		free(c);
	}
	free(w);
}

void watch_dump(struct watch *w)
{
	log_notice("watch mode: %s, %u started since start-up", w->dir, w->started);
	for (struct watch_child *c = w->children; c; c = c->next)
		log_notice("%s %s (domid %" PRIu32 "): pid %d", c->instance ? "instance" : "systemctl",
			   c->name, c->domid, c->w.pid);
}
