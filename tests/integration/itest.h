/*
 * Shared fixture of the integration tests: a hub, one guest domain, an INI file and the real
 * sim daemon ($(BUILD)/sim/xen-virtiod, compiled in as XVD_SIM_DAEMON) serving that guest.
 */
#ifndef XVD_ITEST_H
#define XVD_ITEST_H

#include <errno.h>
#include <poll.h>
#include <sched.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "tests/lib/netns.h"
#include "tests/xensim/guest.h"

#ifndef XVD_SIM_DAEMON
#error "XVD_SIM_DAEMON must name the sim daemon binary"
#endif

#define WIN0 UINT64_C(0x02000000)
#define WIN1 UINT64_C(0x02000200)
#define R_MAGIC      0x000
#define R_VERSION    0x004
#define R_DEVICE_ID  0x008
#define R_STATUS     0x070
#define VIRTIO_MAGIC 0x74726976u
#define READY_MS     10000

struct itest {
	struct xsim_hub *hub;
	struct xsim_dom *dom;
	struct xsim_daemon dm;
	char ini[192];
	unsigned expected_faults;     /* Xen refusals the test provoked on purpose */
};

static inline int itest_write(const char *path, const char *fmt, ...)
{
	FILE *f = fopen(path, "w");
	va_list ap;
	int rc;

	if (!f)
		return -1;
	va_start(ap, fmt);
	rc = vfprintf(f, fmt, ap);
	va_end(ap);
	return fclose(f) == 0 && rc >= 0 ? 0 : -1;
}

/*
 * Watch mode's configuration directory <hub dir>/conf, into dir (len bytes), holding g1.ini ..
 * g<n>.ini: guest g<i> found through xenstore, with an rng. 0 or -1.
 */
static inline int itest_watch_conf(struct itest *t, char *dir, size_t len, int n)
{
	char ini[256];

	snprintf(dir, len, "%s/conf", xsim_hub_dir(t->hub));
	if (mkdir(dir, 0755) < 0)
		return -1;
	for (int i = 1; i <= n; i++) {
		snprintf(ini, sizeof(ini), "%s/g%d.ini", dir, i);
		if (itest_write(ini, "[guest]\nname = g%d\ndiscovery = xenstore\n[rng]\n", i) < 0)
			return -1;
	}
	return 0;
}

/* Hub and domain only; the test writes xenstore entries before starting the daemon. */
static inline struct itest *itest_new(const struct xsim_dom_opts *o)
{
	struct itest *t = calloc(1, sizeof(*t));

	if (!t)
		return NULL;
	t->dm.pid = -1;
	t->hub = xsim_hub_start();
	t->dom = t->hub ? xsim_dom_create(t->hub, o) : NULL;
	if (!t->dom) {
		xsim_hub_stop(t->hub);
		free(t);
		return NULL;
	}
	snprintf(t->ini, sizeof(t->ini), "%s/%s.ini", xsim_hub_dir(t->hub), o->name);
	return t;
}

static inline void itest_dump_log(struct itest *t)
{
	xsim_daemon_dump_log(&t->dm, "  | ");
}

/* Write the INI, start the daemon on it with the arguments in more (NULL-ended, or NULL). */
static inline int itest_serve_args(struct itest *t, const char *ini_body, const char *const *more)
{
	const char *args[16] = { "--foreground", "--config", t->ini, "--log-level", "info" };
	unsigned n = 5;
	int rc;

	for (unsigned i = 0; more && more[i] && n < 15; i++)
		args[n++] = more[i];
	args[n] = NULL;
	if (itest_write(t->ini, "%s", ini_body) < 0)
		return -1;
	rc = xsim_daemon_start(t->hub, &t->dm, XVD_SIM_DAEMON, "daemon", args, 0);
	if (rc == 0)
		rc = xsim_daemon_wait_ready(&t->dm, READY_MS);
	if (rc < 0) {
		fprintf(stderr, "daemon not ready (%d); its log:\n", rc);
		itest_dump_log(t);
	}
	return rc;
}

/* Write the INI, start the daemon on it, wait for READY=1. */
static inline int itest_serve(struct itest *t, const char *ini_body)
{
	return itest_serve_args(t, ini_body, NULL);
}

/* SIGTERM the daemon (if running) and return its wait status; then free everything. */
static inline int itest_free(struct itest *t)
{
	int st = 0;

	struct xsim_io_faults f;

	if (!t)
		return 0;
	if (t->dm.pid > 0)
		st = xsim_daemon_stop(&t->dm);
	/*
	 * Whatever the test checked, the daemon never broke Xen's ioreq protocol: no answer out
	 * of turn (bad IO state), no state going backwards under a waiting vCPU.
	 */
	xsim_dom_io_faults(t->dom, &f);
	if (f.bad_state + f.backwards != t->expected_faults) {
		fprintf(stderr, "itest: %u bad IO states (last %u), %u backward transitions, %u "
			"expected\n", f.bad_state, f.last_bad_state, f.backwards,
			t->expected_faults);
		abort();
	}
	xsim_hub_stop(t->hub);
	free(t);
	return st;
}

/* True when pid has a file whose path contains `lib` mapped (/proc/PID/maps). */
static inline bool itest_maps_has(pid_t pid, const char *lib)
{
	char path[64], line[512];
	bool found = false;
	FILE *f;

	snprintf(path, sizeof(path), "/proc/%d/maps", (int)pid);
	f = fopen(path, "r");
	assert_non_null(f);
	while (!found && fgets(line, sizeof(line), f))
		found = strstr(line, lib) != NULL;
	fclose(f);
	return found;
}

/* CPU ticks (user + system) pid has used so far (/proc/PID/stat fields 14 and 15); 0 on error. */
static inline unsigned long itest_cpu_ticks(pid_t pid)
{
	char path[64], buf[1024], *p = NULL;
	unsigned long ut = 0, st = 0;
	FILE *f;

	snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
	f = fopen(path, "r");
	if (f && fgets(buf, sizeof(buf), f))
		p = strrchr(buf, ')');   /* fields are counted after the command's parenthesis */
	if (f)
		fclose(f);
	if (!p || sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu", &ut,
			 &st) != 2)
		return 0;
	return ut + st;
}

/*
 * Run `run` (the test group) in a child in a network namespace of its own, so the taps the
 * daemon creates live there and vanish with it; IPv6 off (no router solicitations on the tap).
 * Returns run's result, 77 (skip) when there is no namespace to be had.
 */
static inline int itest_in_netns(const char *name, int (*run)(void))
{
	return netns_run(name, run, NULL);
}

/*
 * One command on a fresh connection to the unix stream socket at path, and its answer up to the
 * first newline (NUL-terminated in buf), waiting at most wait_ms: a device's control socket.
 * Returns the answer's length, or -1 (no connection, no answer in time, or the peer closed).
 */
static inline int itest_ask(const char *path, const char *cmd, char *buf, size_t size,
			    int wait_ms)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	size_t got = 0;
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);

	if (fd < 0 || strlen(path) >= sizeof(sa.sun_path) || size < 2)
		goto fail;
	memcpy(sa.sun_path, path, strlen(path) + 1);
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 ||
	    send(fd, cmd, strlen(cmd), MSG_NOSIGNAL) != (ssize_t)strlen(cmd))
		goto fail;
	while (!memchr(buf, '\n', got)) {
		struct pollfd p = { .fd = fd, .events = POLLIN };
		ssize_t n;

		if (got == size - 1 || poll(&p, 1, wait_ms) != 1)
			goto fail;
		n = recv(fd, buf + got, size - 1 - got, 0);
		if (n <= 0)
			goto fail;
		got += (size_t)n;
	}
	buf[got] = '\0';
	close(fd);
	return (int)got;
fail:
	if (fd >= 0)
		close(fd);
	return -1;
}

/*
 * Read want bytes from fd (a socket or tty the daemon writes to) within ms milliseconds; fewer
 * at end of file or timeout. Returns the count.
 */
static inline size_t itest_read_fd(int fd, void *out, size_t want, int ms)
{
	struct timespec ts;
	long end, now;
	size_t got = 0;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	end = ts.tv_sec * 1000L + ts.tv_nsec / 1000000L + ms;
	do {
		struct pollfd p = { .fd = fd, .events = POLLIN };
		ssize_t n;

		if (poll(&p, 1, 10) == 1) {
			n = read(fd, (char *)out + got, want - got);
			if (n <= 0)
				break;
			got += (size_t)n;
		}
		clock_gettime(CLOCK_MONOTONIC, &ts);
		now = ts.tv_sec * 1000L + ts.tv_nsec / 1000000L;
	} while (got < want && now < end);
	return got;
}

static inline uint32_t itest_rd32(struct itest *t, unsigned vcpu, uint64_t addr)
{
	return (uint32_t)xsim_mmio_read(t->dom, vcpu, addr, 4);
}

#endif
