/*
 * xen-virtiod: the command line, logging, the event loop with its signals, and systemd
 * notification. One process serves one guest (daemon/guest.c); --watch starts those processes
 * (daemon/watch.c).
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <sysexits.h>
#include <unistd.h>

#include <ev.h>
#include <systemd/sd-daemon.h>

#include "config/config.h"
#include "daemon/control.h"
#include "daemon/guest.h"
#include "daemon/fdstore.h"
#include "daemon/hostcheck.h"
#include "daemon/sandbox.h"
#include "daemon/state.h"
#include "daemon/watch.h"
#include "ioreq/xen.h"
#include "lib/log.h"
#include "lib/util.h"


#define DEFAULT_CONFIG_DIR "/etc/xen-virtiod"
#define EXIT_FAIL 1

struct options {
	const char *config;
	const char *domain;
	const char *log_level;
	const char *config_dir;
	const char *backend_domid;    /* --backend-domid, watch mode (NULL: 0, dom0) */
	const char *state_dir;        /* --state-dir (NULL: $RUNTIME_DIRECTORY, else the default) */
	bool no_state;                /* --state-dir none */
	const char *control_dir;      /* --control-dir (NULL: $XEN_VIRTIOD_CONTROL_DIR or default) */
	bool check;
	bool check_host;
	bool foreground;
	bool watch;
};

struct daemon {
	struct options o;
	int cli_level;                /* --log-level, or -1: then the INI's, else info */
	bool under_systemd;
	int ready_fd;                 /* detached: tells the waiting parent we serve (else -1) */
	struct ev_loop *loop;
	ev_signal sig_term, sig_int, sig_hup, sig_usr1;
	struct guest *guest;          /* guest mode */
	struct control *control;      /* guest mode: xen-virtiodctl's socket (NULL without) */
	struct watch *watch;          /* watch mode */
	char self_exe[PATH_MAX];
};

/* ---- command line ---- */

static void usage(FILE *f)
{
	fprintf(f,
"Usage: xen-virtiod --config FILE [--domain NAME|ID] [--state-dir DIR|none]\n"
"                   [--control-dir DIR] [--log-level LEVEL] [--foreground]\n"
"       xen-virtiod --check-config [--config] FILE\n"
"       xen-virtiod --check-host\n"
"       xen-virtiod --watch [--config-dir DIR] [--backend-domid ID] [--log-level LEVEL]\n"
"                           [--foreground]\n"
"       xen-virtiod --help | --version\n"
"\n"
"A virtio device-model daemon for one Xen guest: serves the guest's virtio-mmio devices\n"
"(block, net, console, i2c, gpio, rng, vsock) described by an INI file, through a Xen ioreq server.\n"
"\n"
"  -c, --config FILE      the guest's INI file (required unless --watch)\n"
"  -d, --domain NAME|ID   the guest to serve; overrides [guest] name and domid\n"
"  -s, --state-dir DIR    where the guest's state file lives, which lets the next instance\n"
"                         take the guest over after a crash or a restart (default\n"
"                         $RUNTIME_DIRECTORY, else " STATE_DEFAULT_DIR "); none: keep no state\n"
"  -n, --check-config     validate the configuration and exit: 0 when valid, 78 with\n"
"                         file:line: key: messages on stderr when not; never touches Xen\n"
"  -H, --check-host       check what this host needs (Xen device nodes, xenstored, device-\n"
"                         model calls, privcmd eventfds, seccomp, tap, bridge, Xen version):\n"
"                         one OK/WARN/FAIL line per item with the fix; exit 1 on any FAIL\n"
"  -R, --control-dir DIR  where the control socket <guest>.ctl goes (default\n"
"                         $" CONTROL_DIR_ENV " or " CONTROL_DIR_DEFAULT "); see xen-virtiodctl(8)\n"
"  -l, --log-level LEVEL  error, warning, notice, info (default) or debug; overrides the\n"
"                         INI's [guest] log_level\n"
"  -f, --foreground       stay in the foreground; without it, and when not started by\n"
"                         systemd, the daemon detaches once it serves the guest and the\n"
"                         command returns 0 (or the failing exit status)\n"
"  -w, --watch            watch mode: for every guest created with virtio devices that has\n"
"                         DIR/<name>.ini, start xen-virtiod@<name>.service (under systemd)\n"
"                         or a child xen-virtiod process\n"
"  -C, --config-dir DIR   where watch mode looks for <name>.ini (default " DEFAULT_CONFIG_DIR ")\n"
"  -b, --backend-domid ID the domain whose backend directories watch mode watches: ours\n"
"                         when run in a driver domain (default 0, dom0)\n"
"  -h, --help             show this help and exit\n"
"  -V, --version          show the version and exit\n"
"\n"
"Signals: TERM/INT stop: while the guest lives its devices are left to the next instance\n"
"(a restart is a pause for the guest), else they are removed; HUP re-reads the\n"
"configuration; USR1 logs the state.\n"
"Exit status: 0 success or guest gone, 1 runtime failure, 64 usage error, 78 bad configuration.\n");
}

static int usage_error(const char *fmt, const char *arg)
{
	fprintf(stderr, "xen-virtiod: ");
	fprintf(stderr, fmt, arg);
	fprintf(stderr, "\n\n");
	usage(stderr);
	return EX_USAGE;
}

static const struct option long_opts[] = {
	{ "config", required_argument, NULL, 'c' },
	{ "domain", required_argument, NULL, 'd' },
	{ "check-config", no_argument, NULL, 'n' },
	{ "check-host", no_argument, NULL, 'H' },
	{ "control-dir", required_argument, NULL, 'R' },
	{ "log-level", required_argument, NULL, 'l' },
	{ "foreground", no_argument, NULL, 'f' },
	{ "watch", no_argument, NULL, 'w' },
	{ "state-dir", required_argument, NULL, 's' },
	{ "config-dir", required_argument, NULL, 'C' },
	{ "backend-domid", required_argument, NULL, 'b' },
	{ "help", no_argument, NULL, 'h' },
	{ "version", no_argument, NULL, 'V' },
	{ NULL, 0, NULL, 0 },
};

/* Returns -1 to go on, else the exit status (--help, --version, usage errors). */
static int parse_option(struct options *o, int c)
{
	switch (c) {
	case 'c': o->config = optarg; return -1;
	case 'd': o->domain = optarg; return -1;
	case 'n': o->check = true; return -1;
	case 'H': o->check_host = true; return -1;
	case 'R': o->control_dir = optarg; return -1;
	case 'l': o->log_level = optarg; return -1;
	case 'f': o->foreground = true; return -1;
	case 'w': o->watch = true; return -1;
	case 's': o->state_dir = optarg; return -1;
	case 'C': o->config_dir = optarg; return -1;
	case 'b': o->backend_domid = optarg; return -1;
	case 'h': usage(stdout); return 0;
	case 'V': printf("xen-virtiod %s\n", XVD_VERSION); return 0;
	default: usage(stderr); return EX_USAGE;   /* getopt said what was wrong */
	}
}

static int check_combination(struct options *o, int nargs, char **args)
{
	/* The documented short form: xen-virtiod --check-config FILE. */
	if (o->check && !o->config && nargs == 1) {
		o->config = args[0];
		nargs = 0;
	}
	if (nargs > 0)
		return usage_error("unexpected argument '%s'", args[0]);
	if (o->check_host && (o->config || o->domain || o->check || o->watch || o->control_dir))
		return usage_error("%s", "--check-host takes no other option");
	if (o->check_host)
		return -1;
	if (o->control_dir && (o->watch || o->check))
		return usage_error("%s", "--control-dir goes with --config (one guest's instance)");
	if (o->watch && (o->config || o->domain || o->check))
		return usage_error("%s", "--watch takes no --config, --domain or --check-config");
	if (o->config_dir && !o->watch)
		return usage_error("%s", "--config-dir goes with --watch");
	if (o->backend_domid && !o->watch)
		return usage_error("%s", "--backend-domid goes with --watch (an instance reads "
				   "[guest] backend_domid)");
	uint32_t be;

	if (o->backend_domid && !guest_parse_domid(o->backend_domid, &be))
		return usage_error("bad --backend-domid '%s' (0 to 32751)", o->backend_domid);
	if (!o->watch && !o->config)
		return usage_error("%s", "--config FILE is required");
	if (o->state_dir && (!o->state_dir[0] || (o->state_dir[0] != '/' &&
						   strcmp(o->state_dir, "none") != 0)))
		return usage_error("--state-dir '%s': an absolute path, or none", o->state_dir);
	if (o->state_dir && strcmp(o->state_dir, "none") == 0) {
		o->no_state = true;
		o->state_dir = NULL;
	}
	if (!o->state_dir && !o->no_state) {
		const char *rd = getenv("RUNTIME_DIRECTORY");

		/* systemd's RuntimeDirectory= (several are ':'-separated: the first is ours). */
		o->state_dir = rd && rd[0] == '/' && !strchr(rd, ':') ? rd : STATE_DEFAULT_DIR;
	}
	if (o->log_level && log_parse_level(o->log_level) < 0)
		return usage_error("unknown log level '%s'", o->log_level);
	if (!o->config_dir)
		o->config_dir = DEFAULT_CONFIG_DIR;
	return -1;
}

static int parse_args(int argc, char **argv, struct options *o)
{
	int c, rc;

	while ((c = getopt_long(argc, argv, "c:d:nHR:l:fws:C:b:hV", long_opts, NULL)) != -1) {
		rc = parse_option(o, c);
		if (rc >= 0)
			return rc;
	}
	return check_combination(o, argc - optind, argv + optind);
}

/* ---- configuration ---- */

static void print_config_errors(const char *err, bool as_log)
{
	const char *p = err;

	while (*p) {
		size_t n = strcspn(p, "\n");
		if (as_log)
			log_err("%.*s", (int)n, p);
		else
			fprintf(stderr, "%.*s\n", (int)n, p);
		p += n + (p[n] == '\n');
	}
}

/* 0, or -1 with every problem printed (plain lines for --check-config, log lines otherwise). */
static int load_config(const char *path, struct config *cfg, bool as_log)
{
	char err[8192] = "";

	if (config_load(path, cfg, err, sizeof(err)) == 0)
		return 0;
	if (!err[0])
		snprintf(err, sizeof(err), "%s: invalid configuration", path);
	print_config_errors(err, as_log);
	return -1;
}

static int check_config(const char *path)
{
	struct config *cfg = calloc(1, sizeof(*cfg));
	int rc;

	if (!cfg) {
		fprintf(stderr, "xen-virtiod: out of memory\n");
		return EXIT_FAIL;
	}
	rc = load_config(path, cfg, false);
	if (rc == 0)
		printf("%s: ok\n", path);
	free(cfg);
	return rc == 0 ? EXIT_SUCCESS : CONFIG_EXIT_INVALID;
}

/* --log-level wins; else the INI's log_level; else info. */
static void apply_log_level(const struct daemon *d, const struct config *cfg)
{
	if (d->cli_level >= 0)
		log_set_level(d->cli_level);
	else if (cfg && cfg->guest.log_level >= 0)
		log_set_level(cfg->guest.log_level);
	else
		log_set_level(LOG_INFO);
}

/* ---- process environment ---- */

/* journald gives a service's stderr stream as JOURNAL_STREAM=dev:ino; only then use <N>. */
static bool stderr_is_journal(void)
{
	const char *e = getenv("JOURNAL_STREAM");
	unsigned long long dev, ino;
	struct stat st;

	if (!e || sscanf(e, "%llu:%llu", &dev, &ino) != 2 || fstat(STDERR_FILENO, &st) < 0)
		return false;
	return (unsigned long long)st.st_dev == dev && (unsigned long long)st.st_ino == ino;
}

static bool started_by_systemd(void)
{
	return getenv("NOTIFY_SOCKET") || getenv("INVOCATION_ID");
}

/* The parent of a detaching daemon: exit 0 once the child serves, else with its status. */
static int wait_for_child_ready(int fd, pid_t pid)
{
	char c;
	ssize_t n;
	int st;

	do
		n = read(fd, &c, 1);
	while (n < 0 && errno == EINTR);
	if (n == 1)
		return EXIT_SUCCESS;
	while (waitpid(pid, &st, 0) < 0)
		if (errno != EINTR)
			return EXIT_FAIL;
	return WIFEXITED(st) ? WEXITSTATUS(st) : EXIT_FAIL;
}

/* Before any Xen handle or loop exists, so nothing has to survive fork(). */
static int detach(struct daemon *d)
{
	int p[2], null;
	pid_t pid;

	if (pipe2(p, O_CLOEXEC) < 0) {
		log_err("pipe: %s", strerror(errno));
		return -1;
	}
	pid = fork();
	if (pid < 0) {
		log_err("fork: %s", strerror(errno));
		return -1;
	}
	if (pid > 0) {
		close(p[1]);
		exit(wait_for_child_ready(p[0], pid));
	}
	close(p[0]);
	d->ready_fd = p[1];
	setsid();
	null = open("/dev/null", O_RDWR | O_CLOEXEC);
	if (null >= 0) {
		dup2(null, STDIN_FILENO);
		close(null);
	}
	return 0;
}

static void notify_ready(struct daemon *d, const char *status)
{
	sd_notifyf(0, "READY=1\nSTATUS=%s", status);
	log_notice("%s", status);
	if (d->ready_fd >= 0) {
		/* The parent exits on this byte; the terminal gets its prompt back. */
		if (write(d->ready_fd, "1", 1) < 0)
			log_debug("ready pipe: %s", strerror(errno));
		close(d->ready_fd);
		d->ready_fd = -1;
	}
}

/* ---- signals ---- */

static void on_watch_done(void *opaque)
{
	struct daemon *d = opaque;

	ev_break(d->loop, EVBREAK_ALL);
}

static void daemon_stop(struct daemon *d, const char *why)
{
	log_notice("%s: stopping", why);
	sd_notify(0, "STOPPING=1\nSTATUS=Stopping");
	if (d->watch)
		watch_stop(d->watch, on_watch_done, d);
	else
		ev_break(d->loop, EVBREAK_ALL);
}

static void on_sigterm(struct ev_loop *loop, ev_signal *w, int revents)
{
	(void)loop;
	(void)revents;
	daemon_stop(container_of(w, struct daemon, sig_term), "SIGTERM");
}

static void on_sigint(struct ev_loop *loop, ev_signal *w, int revents)
{
	(void)loop;
	(void)revents;
	daemon_stop(container_of(w, struct daemon, sig_int), "SIGINT");
}

static void reload_guest(struct daemon *d)
{
	struct config *cfg = calloc(1, sizeof(*cfg));

	if (!cfg) {
		log_err("SIGHUP: out of memory; configuration not reloaded");
		return;
	}
	log_notice("SIGHUP: re-reading %s", d->o.config);
	if (load_config(d->o.config, cfg, true) < 0) {
		log_err("SIGHUP: %s is invalid; the running configuration stays", d->o.config);
	} else {
		apply_log_level(d, cfg);
		guest_reload(d->guest, cfg);
	}
	free(cfg);
}

static void on_sighup(struct ev_loop *loop, ev_signal *w, int revents)
{
	struct daemon *d = container_of(w, struct daemon, sig_hup);

	(void)loop;
	(void)revents;
	if (d->guest)
		reload_guest(d);
	else
		log_notice("SIGHUP: watch mode reads each <name>.ini when its guest appears; "
			   "nothing to reload");
}

static void on_sigusr1(struct ev_loop *loop, ev_signal *w, int revents)
{
	struct daemon *d = container_of(w, struct daemon, sig_usr1);

	(void)loop;
	(void)revents;
	if (d->guest) {
		char status[256];

		guest_dump(d->guest);
		guest_status(d->guest, status, sizeof(status));
		sd_notifyf(0, "STATUS=%s", status);
	}
	if (d->watch)
		watch_dump(d->watch);
}

static void signals_start(struct daemon *d)
{
	ev_signal_init(&d->sig_term, on_sigterm, SIGTERM);
	ev_signal_init(&d->sig_int, on_sigint, SIGINT);
	ev_signal_init(&d->sig_hup, on_sighup, SIGHUP);
	ev_signal_init(&d->sig_usr1, on_sigusr1, SIGUSR1);
	ev_signal_start(d->loop, &d->sig_term);
	ev_signal_start(d->loop, &d->sig_int);
	ev_signal_start(d->loop, &d->sig_hup);
	ev_signal_start(d->loop, &d->sig_usr1);
	/* A closed socket peer (console, tap helper) must give EPIPE, not kill us. */
	signal(SIGPIPE, SIG_IGN);
}

static void signals_stop(struct daemon *d)
{
	ev_signal_stop(d->loop, &d->sig_usr1);
	ev_signal_stop(d->loop, &d->sig_hup);
	ev_signal_stop(d->loop, &d->sig_int);
	ev_signal_stop(d->loop, &d->sig_term);
}

/* ---- the two modes ---- */

static void on_guest_death(void *opaque)
{
	struct daemon *d = opaque;

	log_notice("the domain is gone; exiting");
	sd_notify(0, "STOPPING=1\nSTATUS=Domain gone");
	ev_break(d->loop, EVBREAK_ALL);
}

static int start_loop(struct daemon *d)
{
	if (!d->o.foreground && !d->under_systemd && detach(d) < 0)
		return -1;
	d->loop = ev_default_loop(EVFLAG_AUTO);
	if (!d->loop) {
		log_err("cannot initialise the event loop");
		return -1;
	}
	signals_start(d);
	return 0;
}

/*
 * Stopped while the guest lives (a restart, an upgrade, systemctl stop): its devices are left
 * to the next instance, which takes them over from the state file; the guest waits at its next
 * access to them meanwhile, as it waits for a slow disk. Removing them instead would fail its
 * next access (an Oops in its driver). A guest that is gone or going has them removed.
 */
static void stop_guest(struct daemon *d)
{
	if (guest_alive(d->guest) && guest_can_hand_over(d->guest)) {
		guest_handover(d->guest);
	} else {
		if (guest_alive(d->guest))
			log_warn("the guest runs on but there is no state file for a next instance "
				 "(--state-dir): its devices are removed");
		guest_teardown(d->guest);
	}
	d->guest = NULL;
}

static int serve_guest(struct daemon *d, const struct config *cfg)
{
	struct guest_params p = { .cfg = cfg, .domain = d->o.domain,
				  .on_death = on_guest_death, .opaque = d,
				  .state_dir = d->o.state_dir, .store = fdstore_systemd() };
	char status[256];

	/* What instances of guests that died while none ran left behind. */
	if (d->o.state_dir)
		state_sweep(d->o.state_dir, xen_domain_is);
	/* A filter that cannot load would stop us after the guest's devices were set up. */
	if (sandbox_check() < 0) {
		sd_notify(0, "STATUS=No seccomp filter support (see the log)");
		return EXIT_FAIL;
	}
	if (guest_setup(d->loop, &p, &d->guest) < 0) {
		/* What --check-host would say about this host, when something is wrong with it. */
		hostcheck_explain();
		sd_notify(0, "STATUS=Failed to set up the guest");
		return EXIT_FAIL;
	}
	/* What a previous instance stored and we did not take over is nobody's any more. */
	fdstore_systemd_close_unused();
	/* Before the sandbox: creating the socket file is no serving-loop syscall. */
	control_start(d->loop, control_dir(d->o.control_dir), d->guest, &d->control);
	/* From here on only the serving loop's syscalls (daemon/sandbox.h). */
	for (unsigned i = 0; i < cfg->ndevices; i++) {
		if (cfg->devices[i].type != DEV_BLOCK)
			continue;
		if (strncmp(cfg->devices[i].u.block.nbd, "nbd://", 6) == 0)
			sandbox_allow_tcp_clients();
		if (cfg->devices[i].u.block.rbd[0])
			sandbox_allow_ceph();
	}
	if (sandbox_enter() < 0) {
		sd_notify(0, "STATUS=Failed to enter the sandbox");
		control_stop(d->control);
		d->control = NULL;
		guest_teardown(d->guest);
		d->guest = NULL;
		return EXIT_FAIL;
	}
	guest_status(d->guest, status, sizeof(status));
	notify_ready(d, status);
	ev_run(d->loop, 0);
	/* The totals, for the journal: what the guest used while it was served. */
	guest_status(d->guest, status, sizeof(status));
	log_notice("stopping; %s", status);
	control_stop(d->control);
	d->control = NULL;
	stop_guest(d);
	log_info("stopped");
	return EXIT_SUCCESS;
}

static int run_guest(struct daemon *d)
{
	struct config *cfg = calloc(1, sizeof(*cfg));
	int rc;

	if (!cfg) {
		log_err("out of memory");
		return EXIT_FAIL;
	}
	/* Nothing touches Xen before the configuration is known to be valid. */
	if (load_config(d->o.config, cfg, true) < 0) {
		free(cfg);
		return CONFIG_EXIT_INVALID;
	}
	apply_log_level(d, cfg);
	if (d->o.domain || cfg->guest.name[0])
		log_set_guest(d->o.domain ? d->o.domain : cfg->guest.name);
	rc = start_loop(d) < 0 ? EXIT_FAIL : serve_guest(d, cfg);
	free(cfg);
	return rc;
}

static int run_watch(struct daemon *d)
{
	struct watch_params p = {
		.config_dir = d->o.config_dir,
		.self_exe = d->self_exe,
		.log_level = d->o.log_level,
		.systemd = d->under_systemd,
		.state_dir = d->o.state_dir,
	};

	/* Checked with the other options; unset means dom0. */
	if (d->o.backend_domid)
		guest_parse_domid(d->o.backend_domid, &p.backend_domid);

	log_set_guest("watch");
	if (d->under_systemd && strcmp(d->o.config_dir, DEFAULT_CONFIG_DIR) != 0)
		log_warn("xen-virtiod@.service instances read " DEFAULT_CONFIG_DIR "/<name>.ini; "
			 "%s only decides which guests get one", d->o.config_dir);
	if (start_loop(d) < 0 || watch_start(d->loop, &p, &d->watch) < 0)
		return EXIT_FAIL;
	notify_ready(d, "Watching for guests");
	ev_run(d->loop, 0);
	watch_free(d->watch);
	d->watch = NULL;
	log_info("stopped");
	return EXIT_SUCCESS;
}

static void find_self(struct daemon *d, const char *argv0)
{
	ssize_t n = readlink("/proc/self/exe", d->self_exe, sizeof(d->self_exe) - 1);

	if (n > 0)
		d->self_exe[n] = '\0';
	else
		snprintf(d->self_exe, sizeof(d->self_exe), "%s", argv0);
}

/*
 * Descriptors: a guest's devices can hold many (a vsock connection, a console client, a tap
 * queue each), within bounds of their own (max_connections ...). The soft limit (1024 by
 * default) is no bound we chose and would make one device's connections starve the others and
 * the control socket: take the hard limit, which the administrator chose (LimitNOFILE=).
 */
static void raise_nofile(void)
{
	struct rlimit rl;

	if (getrlimit(RLIMIT_NOFILE, &rl) < 0 || rl.rlim_cur >= rl.rlim_max)
		return;
	rl.rlim_cur = rl.rlim_max;
	if (setrlimit(RLIMIT_NOFILE, &rl) < 0)
		log_debug("raising the open-file limit: %s", strerror(errno));
}

int main(int argc, char **argv)
{
	static struct daemon d = { .cli_level = -1, .ready_fd = -1 };
	int rc = parse_args(argc, argv, &d.o);

	if (rc >= 0)
		return rc;
	if (d.o.check)
		return check_config(d.o.config);
	if (d.o.check_host)
		return hostcheck_run(stdout);
	if (d.o.log_level)
		d.cli_level = log_parse_level(d.o.log_level);
	log_init(d.cli_level >= 0 ? d.cli_level : LOG_INFO, stderr_is_journal());
	d.under_systemd = started_by_systemd();
	raise_nofile();
	find_self(&d, argv[0]);
	rc = d.o.watch ? run_watch(&d) : run_guest(&d);
	if (d.loop) {
		signals_stop(&d);
		ev_loop_destroy(d.loop);
	}
	return rc;
}
