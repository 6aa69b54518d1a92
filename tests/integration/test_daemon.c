/*
 * The daemon process on xensim: readiness, signals (TERM, HUP, USR1), the guest's death,
 * xenstore matching and backend state, and watch mode (systemd units and child instances).
 */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "tests/xensim/guest.h"

#ifndef XVD_SIM_DAEMON
#error "XVD_SIM_DAEMON must name the sim daemon (tests/xensim/xensim.mk sets it)"
#endif

#define BASE0 UINT64_C(0x02000000)
#define BASE1 UINT64_C(0x02000200)
#define VIRTIO_MAGIC 0x74726976u
#define REG_DEVICE_ID 0x008

struct rig {
	struct xsim_hub *hub;
	struct xsim_dom *dom;
	char ini[160];
};

static void sleep_ms(int ms)
{
	struct timespec ts = { ms / 1000, (long)(ms % 1000) * 1000000L };
	nanosleep(&ts, NULL);
}

static void write_text(const char *path, const char *fmt, ...)
{
	FILE *f = fopen(path, "w");
	va_list ap;

	assert_non_null(f);
	va_start(ap, fmt);
	vfprintf(f, fmt, ap);
	va_end(ap);
	fclose(f);
}

static bool file_has(const char *path, const char *needle)
{
	char buf[65536];
	FILE *f = fopen(path, "r");
	size_t n;

	if (!f)
		return false;
	n = fread(buf, 1, sizeof(buf) - 1, f);
	fclose(f);
	buf[n] = '\0';
	return strstr(buf, needle) != NULL;
}

static bool routed_wait(struct xsim_dom *d, uint64_t addr, bool want, int timeout_ms)
{
	for (int t = 0; t < timeout_ms; t += 20) {
		if (xsim_dom_routed(d, addr) == want)
			return true;
		sleep_ms(20);
	}
	return xsim_dom_routed(d, addr) == want;
}

static void dump_log(const char *path)
{
	char cmd[256];

	snprintf(cmd, sizeof(cmd), "sed 's/^/    log: /' '%s' >&2", path);
	if (system(cmd) != 0)
		fprintf(stderr, "(no log at %s)\n", path);
}

static void start_daemon(struct rig *r, struct xsim_daemon *dm, const char *tag,
			 const char *const *args)
{
	assert_int_equal(xsim_daemon_start(r->hub, dm, XVD_SIM_DAEMON, tag, args, 0), 0);
	if (xsim_daemon_wait_ready(dm, 10000) != 0) {
		dump_log(dm->log_path);
		fail_msg("daemon %s not ready", tag);
	}
}

static void expect_exit0(struct xsim_daemon *dm, int st)
{
	if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) {
		dump_log(dm->log_path);
		fail_msg("daemon wait status 0x%x, want exit 0", st);
	}
}

static int rig_setup(void **state)
{
	struct rig *r = calloc(1, sizeof(*r));
	struct xsim_dom_opts o = { .name = "g1", .nr_vcpus = 2, .ram_mib = 16 };

	if (!r)
		return -1;
	r->hub = xsim_hub_start();
	if (!r->hub)
		return -1;
	r->dom = xsim_dom_create(r->hub, &o);
	if (!r->dom)
		return -1;
	snprintf(r->ini, sizeof(r->ini), "%s/g1.ini", xsim_hub_dir(r->hub));
	*state = r;
	return 0;
}

static int rig_teardown(void **state)
{
	struct rig *r = *state;

	xsim_hub_stop(r->hub);
	free(r);
	return 0;
}

static const char rng_explicit_ini[] =
	"[guest]\nname = g1\ndiscovery = explicit\nlog_level = %s\n\n"
	"[rng]\nmmio = 0x02000000\nirq = 33\n";

/*
 * READY only once serving; USR1 dumps; HUP applies a good file and keeps a bad one out; TERM
 * without a state file (test_restart.c: with one, TERM hands the guest over) removes the devices.
 */
static void test_explicit_signals(void **state)
{
	struct rig *r = *state;
	const char *args[] = { "--config", r->ini, "--state-dir", "none", NULL };
	struct xsim_daemon dm;
	int st;

	write_text(r->ini, rng_explicit_ini, "info");
	start_daemon(r, &dm, "explicit", args);
	assert_true(xsim_dom_routed(r->dom, BASE0));
	assert_int_equal(xsim_mmio_read(r->dom, 0, BASE0, 4), VIRTIO_MAGIC);
	assert_int_equal(xsim_mmio_read(r->dom, 1, BASE0 + REG_DEVICE_ID, 4), 4);

	kill(dm.pid, SIGUSR1);
	assert_true(xsim_daemon_wait_log(&dm, "rng: queue 0: off", 3000));

	write_text(r->ini, rng_explicit_ini, "debug");
	kill(dm.pid, SIGHUP);
	assert_true(xsim_daemon_wait_log(&dm, "SIGHUP: re-reading", 3000));
	/* rng has no run-time reconfiguration: a changed rate and a new section need a restart. */
	write_text(r->ini, "[guest]\nname = g1\ndiscovery = explicit\n\n"
		   "[rng]\nmmio = 0x02000000\nirq = 33\nrate = 8\n\n"
		   "[i2c \"bus0\"]\nmmio = 0x02000200\nirq = 34\nsim = lm75@0x48\n");
	kill(dm.pid, SIGHUP);
	assert_true(xsim_daemon_wait_log(&dm, "rng: changed, but cannot be reconfigured at run time", 3000));
	assert_true(xsim_daemon_wait_log(&dm, "[i2c bus0] is new", 3000));
	assert_false(xsim_dom_routed(r->dom, BASE1));
	write_text(r->ini, "[guest]\nname = g1\nbogus = 1\n");
	kill(dm.pid, SIGHUP);
	assert_true(xsim_daemon_wait_log(&dm, "the running configuration stays", 3000));
	assert_true(xsim_daemon_alive(&dm));
	assert_int_equal(xsim_mmio_read(r->dom, 0, BASE0, 4), VIRTIO_MAGIC);

	st = xsim_daemon_stop(&dm);
	expect_exit0(&dm, st);
	assert_true(xsim_daemon_log_has(&dm, "SIGTERM: stopping"));
	assert_true(xsim_daemon_log_has(&dm, "there is no state file for a next instance"));
	assert_false(xsim_dom_routed(r->dom, BASE0));
	if (getenv("XVD_TEST_VERBOSE"))
		dump_log(dm.log_path);
}

static const char i2c_explicit_ini[] =
	"[guest]\nname = g1\ndiscovery = explicit\n\n"
	"[i2c \"bus0\"]\nmmio = 0x02000000\nirq = 33\nsim = %s\nallow = %s\n";

/* HUP reaches a device's reconfigure hook: accepted changes apply, refused ones are reported. */
static void test_hup_reconfigure(void **state)
{
	struct rig *r = *state;
	const char *args[] = { "--config", r->ini, NULL };
	struct xsim_daemon dm;

	write_text(r->ini, i2c_explicit_ini, "lm75@0x48", "0x48");
	start_daemon(r, &dm, "reconf", args);
	write_text(r->ini, i2c_explicit_ini, "lm75@0x48", "0x48,0x49");
	kill(dm.pid, SIGHUP);
	assert_true(xsim_daemon_wait_log(&dm, "i2c bus0: reconfigured", 3000));
	write_text(r->ini, i2c_explicit_ini, "lm75@0x4a", "0x48,0x49");
	kill(dm.pid, SIGHUP);
	assert_true(xsim_daemon_wait_log(&dm, "i2c bus0: reconfiguration refused", 3000));
	assert_int_equal(xsim_mmio_read(r->dom, 0, BASE0 + REG_DEVICE_ID, 4), 34);
	expect_exit0(&dm, xsim_daemon_stop(&dm));
}

/* The guest dies: the daemon must exit 0 within 10 s and say why. */
static void destroy_expect_exit0(struct rig *r, struct xsim_daemon *dm)
{
	int st = -1;

	assert_int_equal(xsim_dom_destroy(r->dom), 0);
	if (xsim_daemon_wait_exit(dm, 10000, &st) != 0) {
		dump_log(dm->log_path);
		xsim_daemon_stop(dm);
		fail_msg("daemon still running after the domain's death");
	}
	expect_exit0(dm, st);
	assert_true(xsim_daemon_log_has(dm, "the domain is gone"));
}

/* The guest going away ends the daemon with 0 and one line saying so. */
static void test_domain_death(void **state)
{
	struct rig *r = *state;
	const char *args[] = { "--config", r->ini, NULL };
	struct xsim_daemon dm;

	write_text(r->ini, rng_explicit_ini, "info");
	start_daemon(r, &dm, "death", args);
	destroy_expect_exit0(r, &dm);
}

/*
 * In a driver domain xenstored refuses IS_DOMAIN_INTRODUCED (EACCES): the daemon must not take
 * that for the guest's death. It serves on, and exits 0 once libxl removed the guest's home,
 * which a domU then reads as EACCES too (not ENOENT).
 */
static void test_domain_death_unprivileged(void **state)
{
	struct rig *r = *state;
	const char *args[] = { "--config", r->ini, NULL };
	struct xsim_daemon dm;
	int st = -1;

	setenv("XENSIM_FAULTS", "xs_unprivileged", 1);
	write_text(r->ini, rng_explicit_ini, "info");
	start_daemon(r, &dm, "death-unpriv", args);
	unsetenv("XENSIM_FAULTS");
	assert_int_equal(xsim_mmio_read(r->dom, 0, BASE0, 4), VIRTIO_MAGIC);
	if (xsim_daemon_wait_exit(&dm, 1500, &st) == 0) {
		dump_log(dm.log_path);
		fail_msg("daemon exited (status 0x%x) while its guest runs", st);
	}
	assert_int_equal(xsim_mmio_read(r->dom, 0, BASE0, 4), VIRTIO_MAGIC);
	destroy_expect_exit0(r, &dm);
}

/*
 * Stopped just as its domain goes, before xenstored's @releaseDomain reached it (seen on real
 * Xen: SIGTERM right after the guest powered off): Xen refuses the teardown calls (ENOENT), which
 * is expected then, so no warning; the daemon exits 0.
 */
static void test_stop_as_domain_dies(void **state)
{
	struct rig *r = *state;
	const char *args[] = { "--config", r->ini, NULL };
	struct xsim_daemon dm;

	write_text(r->ini, rng_explicit_ini, "info");
	start_daemon(r, &dm, "stopdying", args);
	/* Served once: the loop has run past its start, death watch included. */
	assert_int_equal(xsim_mmio_read(r->dom, 0, BASE0, 4), VIRTIO_MAGIC);
	assert_int_equal(xsim_dom_destroy_unannounced(r->dom), 0);
	expect_exit0(&dm, xsim_daemon_stop(&dm));
	if (xsim_daemon_log_has(&dm, "warning:") || xsim_daemon_log_has(&dm, "error:")) {
		dump_log(dm.log_path);
		fail_msg("a stop as the domain died logged a warning");
	}
	assert_true(xsim_daemon_log_has(&dm, "domain 1 is gone"));
}

/* "Max open files" of /proc/PID/limits: the soft and hard limits. */
static void nofile_of(pid_t pid, char *soft, char *hard)
{
	char path[64], line[256];
	FILE *f;

	snprintf(path, sizeof(path), "/proc/%d/limits", (int)pid);
	f = fopen(path, "r");
	assert_non_null(f);
	soft[0] = hard[0] = 0;
	while (fgets(line, sizeof(line), f))
		if (sscanf(line, "Max open files %31s %31s", soft, hard) == 2)
			break;
	fclose(f);
	assert_true(soft[0] && hard[0]);
}

/*
 * The daemon takes the hard open-file limit as its soft one: with the default soft 1024, a
 * guest's vsock connections (max_connections 1024) would leave no descriptor for its other
 * devices or the control socket.
 */
static void test_nofile_raised(void **state)
{
	struct rig *r = *state;
	const char *args[] = { "--config", r->ini, NULL };
	struct rlimit saved, low;
	struct xsim_daemon dm;
	char soft[32], hard[32];

	assert_int_equal(getrlimit(RLIMIT_NOFILE, &saved), 0);
	if (saved.rlim_max <= 256)
		skip();
	low = saved;
	low.rlim_cur = 256;
	assert_int_equal(setrlimit(RLIMIT_NOFILE, &low), 0);
	write_text(r->ini, rng_explicit_ini, "info");
	start_daemon(r, &dm, "nofile", args);
	assert_int_equal(setrlimit(RLIMIT_NOFILE, &saved), 0);
	nofile_of(dm.pid, soft, hard);
	expect_exit0(&dm, xsim_daemon_stop(&dm));
	assert_string_equal(soft, hard);
}

/*
 * Without systemd and --foreground the command returns 0 only once the detached daemon serves
 * (xen-virtiod-create relies on it); the daemon then lives on until its guest goes.
 */
static void test_detach_when_ready(void **state)
{
	struct rig *r = *state;
	const char *args[] = { "--config", r->ini, NULL };
	struct xsim_daemon dm;
	int st = -1;

	write_text(r->ini, rng_explicit_ini, "info");
	assert_int_equal(xsim_daemon_start(r->hub, &dm, XVD_SIM_DAEMON, "detach", args,
					   XSIM_DAEMON_NO_NOTIFY), 0);
	assert_int_equal(xsim_daemon_wait_exit(&dm, 10000, &st), 0);
	expect_exit0(&dm, st);
	/* No polling: serving must already be true when the command returned. */
	assert_true(xsim_dom_routed(r->dom, BASE0));
	assert_int_equal(xsim_mmio_read(r->dom, 0, BASE0, 4), VIRTIO_MAGIC);
	assert_int_equal(xsim_dom_destroy(r->dom), 0);
	assert_true(xsim_daemon_wait_log(&dm, "the domain is gone", 10000));
	assert_true(xsim_daemon_wait_log(&dm, "stopped", 10000));
}

/* A valid file naming a domain that does not exist: exit 1, nothing routed. */
static void test_missing_domain(void **state)
{
	struct rig *r = *state;
	const char *args[] = { "--config", r->ini, "--domain", "nosuchguest", NULL };
	struct xsim_daemon dm;
	int st = -1;

	write_text(r->ini, rng_explicit_ini, "info");
	assert_int_equal(xsim_daemon_start(r->hub, &dm, XVD_SIM_DAEMON, "missing", args, 0),
			 0);
	assert_int_equal(xsim_daemon_wait_ready(&dm, 10000), -ECHILD);
	assert_int_equal(xsim_daemon_wait_exit(&dm, 5000, &st), 0);
	assert_true(WIFEXITED(st));
	assert_int_equal(WEXITSTATUS(st), 1);
	assert_true(xsim_daemon_log_has(&dm, "nosuchguest"));
	assert_false(xsim_dom_routed(r->dom, BASE0));
}

static void xs_put(struct rig *r, const char *path, const char *val)
{
	assert_int_equal(xsim_xs_write(r->hub, path, "%s", val), 0);
}

/* A 4.18+ virtio device declared with backend domain `be` (0: dom0). */
static void put_virtio_dev_be(struct rig *r, unsigned be, unsigned devid, uint64_t base,
			      unsigned irq, unsigned virtio_id)
{
	char dir[128], path[192], val[64];

	snprintf(dir, sizeof(dir), "/local/domain/%u/backend/virtio/%u/%u", be,
		 xsim_dom_id(r->dom), devid);
	snprintf(path, sizeof(path), "%s/type", dir);
	snprintf(val, sizeof(val), "virtio,device%x", virtio_id);
	xs_put(r, path, val);
	snprintf(path, sizeof(path), "%s/transport", dir);
	xs_put(r, path, "mmio");
	snprintf(path, sizeof(path), "%s/grant_usage", dir);
	xs_put(r, path, "0");
	snprintf(path, sizeof(path), "%s/irq", dir);
	snprintf(val, sizeof(val), "%u", irq);
	xs_put(r, path, val);
	snprintf(path, sizeof(path), "%s/state", dir);
	xs_put(r, path, "1");
	/* base last: a watcher may look at the directory while it is being written. */
	snprintf(path, sizeof(path), "%s/base", dir);
	snprintf(val, sizeof(val), "0x%llx", (unsigned long long)base);
	xs_put(r, path, val);
}

static void put_virtio_dev(struct rig *r, unsigned devid, uint64_t base, unsigned irq,
			   unsigned virtio_id)
{
	put_virtio_dev_be(r, 0, devid, base, irq, virtio_id);
}

/*
 * Xenstore matching: the declared rng finds its section; a declared net with no section is
 * skipped; an i2c section nothing declares is not created.
 */
static void test_xenstore_matching(void **state)
{
	struct rig *r = *state;
	const char *args[] = { "--config", r->ini, NULL };
	struct xsim_daemon dm;

	put_virtio_dev(r, 0, BASE0, 33, 4);
	put_virtio_dev(r, 1, BASE1, 34, 1);
	write_text(r->ini, "[guest]\nname = g1\ndiscovery = xenstore\n\n[rng]\n\n"
		   "[i2c \"bus0\"]\nsim = lm75@0x48\n");
	start_daemon(r, &dm, "match", args);
	assert_true(xsim_dom_routed(r->dom, BASE0));
	assert_int_equal(xsim_mmio_read(r->dom, 0, BASE0 + REG_DEVICE_ID, 4), 4);
	assert_false(xsim_dom_routed(r->dom, BASE1));
	assert_true(xsim_daemon_log_has(&dm, "net device 1 has no section"));
	assert_true(xsim_daemon_log_has(&dm, "[i2c bus0]: no device declared in xenstore matches"));
	expect_exit0(&dm, xsim_daemon_stop(&dm));
}

/*
 * A Xen 4.17 disk: path from params, state=2 once serving (libxl waits), state=6 at a stop
 * that removes the devices (no state file; with one, a stop hands the guest over).
 */
static void test_disk417_state(void **state)
{
	struct rig *r = *state;
	const char *args[] = { "--config", r->ini, "--state-dir", "none", NULL };
	char img[160], dir[128], path[192];
	struct xsim_daemon dm;
	char *v;
	int fd;

	snprintf(img, sizeof(img), "%s/disk.img", xsim_hub_dir(r->hub));
	fd = open(img, O_RDWR | O_CREAT | O_TRUNC, 0600);
	assert_true(fd >= 0);
	assert_int_equal(ftruncate(fd, 1 << 20), 0);
	close(fd);
	snprintf(dir, sizeof(dir), "/local/domain/0/backend/virtio_disk/%u/51712",
		 xsim_dom_id(r->dom));
#define PUT(key, val) do { snprintf(path, sizeof(path), "%s/" key, dir); xs_put(r, path, val); \
			 } while (0)
	PUT("params", img);
	PUT("mode", "w");
	PUT("dev", "xvda");
	PUT("irq", "33");
	PUT("state", "1");
	PUT("base", "33554432");
#undef PUT
	write_text(r->ini, "[guest]\nname = g1\ndiscovery = xenstore\n\n[block \"root\"]\n");
	start_daemon(r, &dm, "disk417", args);
	snprintf(path, sizeof(path), "%s/state", dir);
	v = xsim_xs_read(r->hub, path);
	assert_non_null(v);
	assert_string_equal(v, "2");
	free(v);
	assert_int_equal(xsim_mmio_read(r->dom, 0, BASE0 + REG_DEVICE_ID, 4), 2);
	expect_exit0(&dm, xsim_daemon_stop(&dm));
	v = xsim_xs_read(r->hub, path);
	assert_non_null(v);
	assert_string_equal(v, "6");
	free(v);
}

/*
 * A systemctl first on PATH that appends its arguments, one call a line, to calls (the file
 * name is written into calls[]): watch mode's requests without a systemd.
 */
static void fake_systemctl(const char *dir, char *calls, size_t calls_len)
{
	char fake[192], path[4096];

	snprintf(calls, calls_len, "%s/systemctl.calls", dir);
	snprintf(fake, sizeof(fake), "%s/systemctl", dir);
	write_text(fake, "#!/bin/sh\necho \"$*\" >> '%s'\n", calls);
	assert_int_equal(chmod(fake, 0700), 0);
	snprintf(path, sizeof(path), "%s:%s", dir, getenv("PATH") ? getenv("PATH") : "/usr/bin");
	setenv("PATH", path, 1);
}

/* Watch mode under systemd: a fake systemctl records what the watcher asks for. */
static void test_watch_systemd(void **state)
{
	struct rig *r = *state;
	const char *dir = xsim_hub_dir(r->hub);
	char confdir[160], ini[192], calls[192];
	const char *args[] = { "--watch", "--config-dir", confdir, NULL };
	struct xsim_dom_opts o2 = { .name = "nofile", .ram_mib = 8 };
	struct xsim_daemon dm;
	struct xsim_dom *d2;

	snprintf(confdir, sizeof(confdir), "%s/conf", dir);
	assert_int_equal(mkdir(confdir, 0700), 0);
	snprintf(ini, sizeof(ini), "%s/g1.ini", confdir);
	write_text(ini, "[guest]\nname = g1\n\n[rng]\n");
	fake_systemctl(dir, calls, sizeof(calls));

	/* g1 exists before the watcher starts; nofile appears after. */
	put_virtio_dev(r, 0, BASE0, 33, 4);
	start_daemon(r, &dm, "watch-sd", args);
	d2 = xsim_dom_create(r->hub, &o2);
	assert_non_null(d2);
	{
		struct rig r2 = { .hub = r->hub, .dom = d2 };
		put_virtio_dev(&r2, 0, BASE0, 33, 4);
	}
	assert_true(xsim_daemon_wait_log(&dm, "nofile (domid", 5000));
	for (int t = 0; t < 5000 && !file_has(calls, "xen-virtiod@g1.service"); t += 20)
		sleep_ms(20);
	if (!file_has(calls, "start --no-block xen-virtiod@g1.service\n")) {
		dump_log(dm.log_path);
		fail_msg("systemctl was not asked to start xen-virtiod@g1.service");
	}
	assert_false(file_has(calls, "nofile"));

	/* g1 re-created: its old instance may still serve the dead domain, so restart. */
	assert_int_equal(xsim_dom_destroy(r->dom), 0);
	r->dom = xsim_dom_create(r->hub, &(struct xsim_dom_opts){ .name = "g1", .ram_mib = 8 });
	assert_non_null(r->dom);
	put_virtio_dev(r, 0, BASE0, 33, 4);
	for (int t = 0; t < 5000 && !file_has(calls, "restart"); t += 20)
		sleep_ms(20);
	if (!file_has(calls, "restart --no-block xen-virtiod@g1.service\n")) {
		dump_log(dm.log_path);
		fail_msg("systemctl was not asked to restart xen-virtiod@g1.service");
	}
	expect_exit0(&dm, xsim_daemon_stop(&dm));
}

/*
 * Watch mode in a driver domain (--backend-domid 7): only guests whose devices name domain 7
 * as their backend get an instance; one backed by dom0 is not ours.
 */
static void test_watch_backend_domid(void **state)
{
	struct rig *r = *state;
	const char *dir = xsim_hub_dir(r->hub);
	char confdir[160], ini[192], calls[192];
	const char *args[] = { "--watch", "--config-dir", confdir, "--backend-domid", "7", NULL };
	struct xsim_dom_opts o2 = { .name = "g2", .ram_mib = 8 };
	struct xsim_daemon dm;
	struct xsim_dom *d2;

	snprintf(confdir, sizeof(confdir), "%s/conf", dir);
	assert_int_equal(mkdir(confdir, 0700), 0);
	snprintf(ini, sizeof(ini), "%s/g1.ini", confdir);
	write_text(ini, "[guest]\nname = g1\nbackend_domid = 7\n\n[rng]\n");
	snprintf(ini, sizeof(ini), "%s/g2.ini", confdir);
	write_text(ini, "[guest]\nname = g2\n\n[rng]\n");
	fake_systemctl(dir, calls, sizeof(calls));

	/* g2's device is backed by dom0 and declared first: a watcher of dom0 would take it. */
	d2 = xsim_dom_create(r->hub, &o2);
	assert_non_null(d2);
	{
		struct rig r2 = { .hub = r->hub, .dom = d2 };
		put_virtio_dev(&r2, 0, BASE0, 33, 4);
	}
	start_daemon(r, &dm, "watch-be7", args);
	put_virtio_dev_be(r, 7, 0, BASE0, 33, 4);
	for (int t = 0; t < 5000 && !file_has(calls, "xen-virtiod@g1.service"); t += 20)
		sleep_ms(20);
	if (!file_has(calls, "start --no-block xen-virtiod@g1.service\n")) {
		dump_log(dm.log_path);
		fail_msg("systemctl was not asked to start xen-virtiod@g1.service");
	}
	assert_false(file_has(calls, "g2"));
	expect_exit0(&dm, xsim_daemon_stop(&dm));
}

/* Watch mode without systemd: a child instance serves the guest; TERM reaches it. */
static void test_watch_children(void **state)
{
	struct rig *r = *state;
	char confdir[160], ini[192];
	const char *args[] = { "--watch", "--foreground", "--config-dir", confdir, NULL };
	struct xsim_daemon dm;
	int st;

	snprintf(confdir, sizeof(confdir), "%s/conf", xsim_hub_dir(r->hub));
	assert_int_equal(mkdir(confdir, 0700), 0);
	snprintf(ini, sizeof(ini), "%s/g1.ini", confdir);
	write_text(ini, "[guest]\nname = g1\n\n[rng]\n");
	assert_int_equal(xsim_daemon_start(r->hub, &dm, XVD_SIM_DAEMON, "watch-child", args,
					   XSIM_DAEMON_NO_NOTIFY), 0);
	assert_true(xsim_daemon_wait_log(&dm, "starting child processes", 10000));
	put_virtio_dev(r, 0, BASE0, 33, 4);
	if (!routed_wait(r->dom, BASE0, true, 10000)) {
		xsim_daemon_stop(&dm);
		dump_log(dm.log_path);
		fail_msg("no child instance served g1");
	}
	assert_int_equal(xsim_mmio_read(r->dom, 0, BASE0, 4), VIRTIO_MAGIC);

	/* Re-created under the same name: a new instance once the old one has gone. */
	assert_int_equal(xsim_dom_destroy(r->dom), 0);
	r->dom = xsim_dom_create(r->hub, &(struct xsim_dom_opts){ .name = "g1", .ram_mib = 8 });
	assert_non_null(r->dom);
	put_virtio_dev(r, 0, BASE0, 33, 4);
	if (!routed_wait(r->dom, BASE0, true, 10000)) {
		xsim_daemon_stop(&dm);
		dump_log(dm.log_path);
		fail_msg("no child instance served the re-created g1");
	}
	assert_int_equal(xsim_mmio_read(r->dom, 0, BASE0, 4), VIRTIO_MAGIC);
	st = xsim_daemon_stop(&dm);
	expect_exit0(&dm, st);
	/*
	 * The child was stopped and reaped before the watcher exited; g1 lives on, so it left
	 * its devices to a next instance (served, once a watcher runs again).
	 */
	assert_true(xsim_daemon_log_has(&dm, "left the guest to the next instance"));
	assert_true(xsim_dom_routed(r->dom, BASE0));
	assert_true(xsim_daemon_log_has(&dm, "started instance pid"));
	assert_true(xsim_daemon_log_has(&dm, "instance for g1 (domid"));
	if (getenv("XVD_TEST_VERBOSE"))
		dump_log(dm.log_path);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_explicit_signals, rig_setup, rig_teardown),
		cmocka_unit_test_setup_teardown(test_hup_reconfigure, rig_setup, rig_teardown),
		cmocka_unit_test_setup_teardown(test_domain_death, rig_setup, rig_teardown),
		cmocka_unit_test_setup_teardown(test_domain_death_unprivileged, rig_setup, rig_teardown),
		cmocka_unit_test_setup_teardown(test_stop_as_domain_dies, rig_setup, rig_teardown),
		cmocka_unit_test_setup_teardown(test_nofile_raised, rig_setup, rig_teardown),
		cmocka_unit_test_setup_teardown(test_detach_when_ready, rig_setup, rig_teardown),
		cmocka_unit_test_setup_teardown(test_missing_domain, rig_setup, rig_teardown),
		cmocka_unit_test_setup_teardown(test_xenstore_matching, rig_setup, rig_teardown),
		cmocka_unit_test_setup_teardown(test_disk417_state, rig_setup, rig_teardown),
		cmocka_unit_test_setup_teardown(test_watch_systemd, rig_setup, rig_teardown),
		cmocka_unit_test_setup_teardown(test_watch_children, rig_setup, rig_teardown),
		cmocka_unit_test_setup_teardown(test_watch_backend_domid, rig_setup, rig_teardown),
	};

	/* A test runner started by systemd must not turn watch mode into systemctl calls. */
	unsetenv("INVOCATION_ID");
	return cmocka_run_group_tests(tests, NULL, NULL);
}
