/*
 * xen-virtiodctl: operate running xen-virtiod instances through their control sockets
 * (daemon/control.h has the protocol; man/xen-virtiodctl.8 the commands).
 *
 * One request per connection, every wait bounded by --timeout. `list` and `metrics` talk to
 * every DIR/<guest>.ctl; `metrics` groups the instances' samples by metric family, each family
 * with one HELP and one TYPE line, as the text exposition format wants. `console` receives one
 * end of a socket pair from the instance and relays it to the terminal until Ctrl-] or EOF.
 */
#include <dirent.h>
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sysexits.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

#include "daemon/control.h"

#define CTL_FAIL 1
#define CTL_DETACH 0x1d   /* Ctrl-] */

static const char *ctl_dir;
static int ctl_timeout_ms = 10000;

static void usage(FILE *f)
{
	fprintf(f,
"Usage: xen-virtiodctl [--control-dir DIR] [--timeout SECONDS] COMMAND\n"
"\n"
"Commands (GUEST is a domain name or id):\n"
"  list                              running instances\n"
"  status GUEST [--json]             devices, registers, queues, counters, notify path\n"
"  metrics [GUEST]                   Prometheus text exposition of every instance's counters\n"
"  block GUEST DEV resize            re-read DEV's backing size and tell the guest\n"
"  net GUEST DEV link up|down        the link state the guest sees\n"
"  console GUEST DEV [--port NAME]   attach to a console (Ctrl-] detaches)\n"
"  log-level GUEST LEVEL             error, warning, notice, info or debug\n"
"\n"
"  -d, --control-dir DIR   the instances' sockets (default $" CONTROL_DIR_ENV " or\n"
"                          " CONTROL_DIR_DEFAULT ")\n"
"  -t, --timeout SECONDS   how long to wait for an instance (default 10)\n"
"  -h, --help, -V, --version\n"
"\n"
"Exit status: 0 done, 1 the instance refused or did not answer, 64 usage error.\n");
}

/* ---- talking to one instance ---- */

static int ctl_poll(int fd, short events)
{
	struct pollfd p = { .fd = fd, .events = events };
	int n;

	do
		n = poll(&p, 1, ctl_timeout_ms);
	while (n < 0 && errno == EINTR);
	if (n == 0)
		errno = ETIMEDOUT;
	return n > 0 ? 0 : -1;
}

static bool ctl_name_ok(const char *s)
{
	size_t n = strlen(s);

	return n && n < 64 && s[0] != '.' &&
	       strspn(s, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_.:-") == n;
}

/* Connect to DIR/<name>.ctl; -1 with errno. */
static int ctl_connect_name(const char *name)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	int fd, n = snprintf(sa.sun_path, sizeof(sa.sun_path), "%s/%s%s", ctl_dir, name,
			     CONTROL_SUFFIX);

	if (n < 0 || (size_t)n >= sizeof(sa.sun_path)) {
		errno = ENAMETOOLONG;
		return -1;
	}
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd >= 0 && connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		int e = errno;

		close(fd);
		errno = e;
		return -1;
	}
	return fd;
}

struct resp {
	char *buf;        /* NUL-terminated */
	size_t len;
	int fd;           /* passed with the response, or -1 */
};

static void resp_free(struct resp *r)
{
	free(r->buf);
	if (r->fd >= 0)
		close(r->fd);
	*r = (struct resp){ .fd = -1 };
}

/* The passed fd, if this message carried one. */
static void ctl_take_fd(struct msghdr *mh, struct resp *r)
{
	for (struct cmsghdr *c = CMSG_FIRSTHDR(mh); c; c = CMSG_NXTHDR(mh, c))
		if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS && r->fd < 0)
			memcpy(&r->fd, CMSG_DATA(c), sizeof(int));
}

/* Read the whole response (until the instance closes); 0, or -1 with errno. */
static int ctl_read_resp(int fd, struct resp *r)
{
	size_t cap = 0;

	*r = (struct resp){ .fd = -1 };
	for (;;) {
		union {
			char b[CMSG_SPACE(sizeof(int))];
			struct cmsghdr align;
		} u;
		struct iovec iov;
		struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = u.b,
				     .msg_controllen = sizeof(u.b) };
		ssize_t n;

		if (r->len + 4096 + 1 > cap) {
			char *p;

			/* The daemon never sends more than CONTROL_RESPONSE_MAX. */
			if (cap > CONTROL_RESPONSE_MAX + 8192) {
				errno = EMSGSIZE;
				return -1;
			}
			p = realloc(r->buf, cap + 65536);
			if (!p) {
				errno = ENOMEM;
				return -1;
			}
			r->buf = p;
			cap += 65536;
		}
		iov = (struct iovec){ r->buf + r->len, cap - r->len - 1 };
		if (ctl_poll(fd, POLLIN) < 0)
			return -1;
		n = recvmsg(fd, &mh, MSG_CMSG_CLOEXEC);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -1;
		ctl_take_fd(&mh, r);
		if (n == 0)
			break;
		r->len += (size_t)n;
	}
	r->buf[r->len] = '\0';
	return 0;
}

/* Send one request to a connected instance and read its answer. */
static int ctl_exchange(int fd, const char *req, struct resp *r)
{
	size_t len = strlen(req), off = 0;

	while (off < len) {
		ssize_t n;

		if (ctl_poll(fd, POLLOUT) < 0)
			return -1;
		n = send(fd, req + off, len - off, MSG_NOSIGNAL);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -1;
		off += (size_t)n;
	}
	return ctl_read_resp(fd, r);
}

/* The body after "OK\n", or NULL (with the message printed) for "ERR ...". */
static const char *ctl_body(const char *guest, const struct resp *r)
{
	if (strncmp(r->buf, "OK\n", 3) == 0)
		return r->buf + 3;
	if (strncmp(r->buf, "ERR ", 4) == 0)
		fprintf(stderr, "xen-virtiodctl: %s: %.*s\n", guest, (int)strcspn(r->buf + 4, "\n"),
			r->buf + 4);
	else
		fprintf(stderr, "xen-virtiodctl: %s: unexpected answer\n", guest);
	return NULL;
}

/* One request to the instance called name; 0 with the response, or -1 (printed). */
static int ctl_request_name(const char *name, const char *req, struct resp *r, bool quiet)
{
	int fd = ctl_connect_name(name), rc;

	if (fd < 0) {
		if (!quiet)
			fprintf(stderr, "xen-virtiodctl: %s: %s%s\n", name, strerror(errno),
				errno == EACCES ? " (root only)" : "");
		return -1;
	}
	rc = ctl_exchange(fd, req, r);
	close(fd);
	if (rc < 0 && !quiet)
		fprintf(stderr, "xen-virtiodctl: %s: %s\n", name, strerror(errno));
	if (rc == 0 && r->len == 0) {
		if (!quiet)
			fprintf(stderr, "xen-virtiodctl: %s: the instance closed without answering\n",
				name);
		resp_free(r);
		return -1;
	}
	return rc;
}

/* ---- every instance ---- */

/* Calls fn(name, opaque) for every DIR/<name>.ctl that is a socket. The count, or -1. */
static int ctl_each(void (*fn)(const char *name, void *opaque), void *opaque)
{
	struct dirent **ents;
	int n = scandir(ctl_dir, &ents, NULL, alphasort), count = 0;

	if (n < 0 && errno == ENOENT)
		return 0;   /* no instance ever ran here */
	if (n < 0) {
		fprintf(stderr, "xen-virtiodctl: %s: %s\n", ctl_dir, strerror(errno));
		return -1;
	}
	for (int i = 0; i < n; i++) {
		char *name = ents[i]->d_name;
		size_t len = strlen(name), sl = strlen(CONTROL_SUFFIX);

		if (ents[i]->d_type == DT_SOCK && len > sl &&
		    strcmp(name + len - sl, CONTROL_SUFFIX) == 0) {
			name[len - sl] = '\0';
			if (ctl_name_ok(name)) {
				fn(name, opaque);
				count++;
			}
		}
		free(ents[i]);
	}
	free(ents);
	return count;
}

/* "key=value" from an info line, copied into out. */
static void ctl_field(const char *line, const char *key, char *out, size_t len)
{
	size_t kl = strlen(key);

	snprintf(out, len, "-");
	for (const char *p = line; p && *p; p = strchr(p, ' '), p = p ? p + 1 : NULL)
		if (strncmp(p, key, kl) == 0 && p[kl] == '=') {
			snprintf(out, len, "%.*s", (int)strcspn(p + kl + 1, " \n"), p + kl + 1);
			return;
		}
}

struct find {
	const char *domid;
	char name[64];
};

static void ctl_find_domid(const char *name, void *opaque)
{
	struct find *f = opaque;
	char domid[16];
	struct resp r;

	if (f->name[0] || ctl_request_name(name, "info\n", &r, true) < 0)
		return;
	ctl_field(strncmp(r.buf, "OK\n", 3) == 0 ? r.buf + 3 : "", "domid", domid, sizeof(domid));
	if (strcmp(domid, f->domid) == 0)
		snprintf(f->name, sizeof(f->name), "%s", name);
	resp_free(&r);
}

/* GUEST as given on the command line: a name with a socket, else a domid an instance serves. */
static const char *ctl_resolve(const char *guest)
{
	static struct find f;
	char path[PATH_MAX];
	struct stat st;

	if (!ctl_name_ok(guest)) {
		fprintf(stderr, "xen-virtiodctl: '%s' is no guest name\n", guest);
		return NULL;
	}
	snprintf(path, sizeof(path), "%s/%s%s", ctl_dir, guest, CONTROL_SUFFIX);
	if (lstat(path, &st) == 0 || strspn(guest, "0123456789") != strlen(guest))
		return guest;
	f = (struct find){ .domid = guest };
	ctl_each(ctl_find_domid, &f);
	return f.name[0] ? f.name : guest;
}

static void ctl_list_one(const char *name, void *opaque)
{
	char f[6][64];
	const char *keys[6] = { "guest", "domid", "pid", "devices", "notify", "version" };
	struct resp r;
	const char *body;

	(void)opaque;
	if (ctl_request_name(name, "info\n", &r, true) < 0) {
		fprintf(stderr, "xen-virtiodctl: %s: not answering (a stale socket?)\n", name);
		return;
	}
	body = ctl_body(name, &r);
	for (int i = 0; body && i < 6; i++)
		ctl_field(body, keys[i], f[i], sizeof(f[i]));
	if (body)
		printf("%-20s %6s %8s %8s %-8s %s\n", f[0], f[1], f[2], f[3], f[4], f[5]);
	resp_free(&r);
}

static int cmd_list(void)
{
	printf("%-20s %6s %8s %8s %-8s %s\n", "GUEST", "DOMID", "PID", "DEVICES", "NOTIFY",
	       "VERSION");
	return ctl_each(ctl_list_one, NULL) < 0 ? CTL_FAIL : 0;
}

/* ---- metrics: families grouped across instances ---- */

struct family {
	char *name;
	char *help, *type;     /* whole lines, the first seen */
	char **samples;
	size_t n, cap;
};

struct metrics {
	struct family *f;
	size_t n, cap;
	bool failed;
};

static struct family *metrics_family(struct metrics *m, const char *name, size_t len)
{
	for (size_t i = 0; i < m->n; i++)
		if (strlen(m->f[i].name) == len && strncmp(m->f[i].name, name, len) == 0)
			return &m->f[i];
	if (m->n == m->cap) {
		struct family *p = realloc(m->f, (m->cap * 2 + 16) * sizeof(*p));

		if (!p)
			return NULL;
		m->f = p;
		m->cap = m->cap * 2 + 16;
	}
	m->f[m->n] = (struct family){ .name = strndup(name, len) };
	return m->f[m->n].name ? &m->f[m->n++] : NULL;
}

static void family_add(struct family *f, const char *line, size_t len)
{
	if (f->n == f->cap) {
		char **p = realloc(f->samples, (f->cap * 2 + 8) * sizeof(*p));

		if (!p)
			return;
		f->samples = p;
		f->cap = f->cap * 2 + 8;
	}
	if ((f->samples[f->n] = strndup(line, len)))
		f->n++;
}

/* One exposition line: "# HELP name ...", "# TYPE name ...", or "name{...} value". */
static void metrics_line(struct metrics *m, const char *l, size_t len)
{
	bool meta = strncmp(l, "# HELP ", 7) == 0 || strncmp(l, "# TYPE ", 7) == 0;
	const char *name = meta ? l + 7 : l;
	size_t nl = strcspn(name, meta ? " \n" : "{ \n");
	struct family *f;

	if (!len || (l[0] == '#' && !meta) || !nl)
		return;
	f = metrics_family(m, name, nl);
	if (!f)
		return;
	if (meta && l[2] == 'H' && !f->help)
		f->help = strndup(l, len);
	else if (meta && l[2] == 'T' && !f->type)
		f->type = strndup(l, len);
	else if (!meta)
		family_add(f, l, len);
}

static void metrics_one(const char *name, void *opaque)
{
	struct metrics *m = opaque;
	struct resp r;
	const char *body;

	if (ctl_request_name(name, "metrics\n", &r, false) < 0) {
		m->failed = true;
		return;
	}
	body = ctl_body(name, &r);
	m->failed |= !body;
	for (const char *p = body; p && *p;) {
		size_t len = strcspn(p, "\n");

		metrics_line(m, p, len);
		p += len + (p[len] == '\n');
	}
	resp_free(&r);
}

static int cmd_metrics(const char *guest)
{
	struct metrics m = { 0 };

	if (guest) {
		guest = ctl_resolve(guest);
		if (!guest)
			return CTL_FAIL;
		metrics_one(guest, &m);
	} else if (ctl_each(metrics_one, &m) < 0) {
		m.failed = true;
	}
	for (size_t i = 0; i < m.n; i++) {
		struct family *f = &m.f[i];

		if (f->help)
			printf("%s\n", f->help);
		if (f->type)
			printf("%s\n", f->type);
		for (size_t j = 0; j < f->n; j++) {
			printf("%s\n", f->samples[j]);
			free(f->samples[j]);
		}
		free(f->samples);
		free(f->help);
		free(f->type);
		free(f->name);
	}
	free(m.f);
	return m.failed ? CTL_FAIL : 0;
}

/* ---- console ---- */

static struct termios ctl_saved_tty;
static bool ctl_tty_raw;

static void ctl_tty_restore(void)
{
	if (ctl_tty_raw)
		tcsetattr(STDIN_FILENO, TCSAFLUSH, &ctl_saved_tty);
	ctl_tty_raw = false;
}

static void ctl_tty_setup(void)
{
	struct termios t;

	if (!isatty(STDIN_FILENO) || tcgetattr(STDIN_FILENO, &ctl_saved_tty) < 0)
		return;
	t = ctl_saved_tty;
	cfmakeraw(&t);
	if (tcsetattr(STDIN_FILENO, TCSAFLUSH, &t) == 0) {
		ctl_tty_raw = true;
		atexit(ctl_tty_restore);
	}
}

/* Write all of buf to fd (blocking). */
static int ctl_write_all(int fd, const char *buf, size_t len)
{
	while (len) {
		ssize_t n = write(fd, buf, len);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return -1;
		buf += n;
		len -= (size_t)n;
	}
	return 0;
}

/* Terminal input to the console; false once Ctrl-] (or EOF) ends the session. */
static bool ctl_console_input(int con)
{
	char buf[4096];
	ssize_t n = read(STDIN_FILENO, buf, sizeof(buf));
	char *stop;

	if (n < 0 && errno == EINTR)
		return true;
	if (n <= 0)
		return false;
	stop = memchr(buf, CTL_DETACH, (size_t)n);
	if (stop)
		n = stop - buf;
	if (n && ctl_write_all(con, buf, (size_t)n) < 0)
		return false;
	return !stop;
}

static int ctl_relay(int con)
{
	struct pollfd p[2] = { { .fd = STDIN_FILENO, .events = POLLIN },
			       { .fd = con, .events = POLLIN } };
	char buf[4096];

	for (;;) {
		ssize_t n;

		if (poll(p, 2, -1) < 0) {
			if (errno == EINTR)
				continue;
			return CTL_FAIL;
		}
		if (p[0].revents && !ctl_console_input(con))
			return 0;
		if (!p[1].revents)
			continue;
		n = read(con, buf, sizeof(buf));
		if (n < 0 && (errno == EINTR || errno == EAGAIN))
			continue;
		if (n <= 0) {
			ctl_tty_restore();
			fprintf(stderr, "\r\nxen-virtiodctl: the console was closed\n");
			return 0;
		}
		if (ctl_write_all(STDOUT_FILENO, buf, (size_t)n) < 0)
			return CTL_FAIL;
	}
}

static int cmd_console(const char *guest, const char *dev, const char *port)
{
	char req[CONTROL_REQUEST_MAX];
	struct resp r;
	int rc, n = snprintf(req, sizeof(req), "console %s%s%s\n", dev, port ? " " : "",
			     port ? port : "");

	if (n < 0 || (size_t)n >= sizeof(req)) {
		fprintf(stderr, "xen-virtiodctl: request too long\n");
		return EX_USAGE;
	}
	if (ctl_request_name(guest, req, &r, false) < 0)
		return CTL_FAIL;
	if (!ctl_body(guest, &r)) {
		resp_free(&r);
		return CTL_FAIL;
	}
	if (r.fd < 0) {
		fprintf(stderr, "xen-virtiodctl: %s: no console descriptor received\n", guest);
		resp_free(&r);
		return CTL_FAIL;
	}
	if (isatty(STDIN_FILENO))
		fprintf(stderr, "xen-virtiodctl: attached to %s %s%s%s; Ctrl-] detaches\n", guest,
			dev, port ? " port " : "", port ? port : "");
	ctl_tty_setup();
	rc = ctl_relay(r.fd);
	ctl_tty_restore();
	resp_free(&r);
	return rc;
}

/* ---- the simple commands ---- */

static int ctl_simple(const char *guest, const char *req)
{
	struct resp r;
	const char *body;

	if (ctl_request_name(guest, req, &r, false) < 0)
		return CTL_FAIL;
	body = ctl_body(guest, &r);
	if (body)
		fputs(body, stdout);
	resp_free(&r);
	return body ? 0 : CTL_FAIL;
}

/* A request line from words, checked against what the daemon accepts. */
static int ctl_build(char *req, size_t len, int n, char **w)
{
	size_t off = 0;

	for (int i = 0; i < n; i++) {
		int k = snprintf(req + off, len - off, "%s%s", i ? " " : "", w[i]);

		if (k < 0 || (size_t)k >= len - off || !w[i][0] || strchr(w[i], ' '))
			return -1;
		off += (size_t)k;
	}
	if (off + 2 > len)
		return -1;
	memcpy(req + off, "\n", 2);
	return 0;
}

static int ctl_guest_cmd(int argc, char **argv)
{
	char req[CONTROL_REQUEST_MAX], *w[CONTROL_WORDS_MAX];
	const char *cmd = argv[0], *guest = argc > 1 ? ctl_resolve(argv[1]) : NULL;
	int n = 0;

	if (argc < 2)
		return -1;
	if (!guest)
		return CTL_FAIL;
	if (!strcmp(cmd, "status") && (argc == 2 || (argc == 3 && !strcmp(argv[2], "--json")))) {
		w[n++] = "status";
		if (argc == 3)
			w[n++] = "json";
	} else if (!strcmp(cmd, "block") && argc == 4 && !strcmp(argv[3], "resize")) {
		w[n++] = "block", w[n++] = argv[2], w[n++] = "resize";
	} else if (!strcmp(cmd, "net") && argc == 5 && !strcmp(argv[3], "link")) {
		w[n++] = "net", w[n++] = argv[2], w[n++] = "link", w[n++] = argv[4];
	} else if (!strcmp(cmd, "log-level") && argc == 3) {
		w[n++] = "log-level", w[n++] = argv[2];
	} else if (!strcmp(cmd, "console") && (argc == 3 ||
		   (argc == 5 && !strcmp(argv[3], "--port")))) {
		return cmd_console(guest, argv[2], argc == 5 ? argv[4] : NULL);
	} else {
		return -1;
	}
	if (ctl_build(req, sizeof(req), n, w) < 0) {
		fprintf(stderr, "xen-virtiodctl: arguments too long or empty\n");
		return EX_USAGE;
	}
	return ctl_simple(guest, req);
}

static int ctl_run(int argc, char **argv)
{
	int rc = -1;

	if (argc < 1)
		rc = -1;
	else if (!strcmp(argv[0], "list") && argc == 1)
		rc = cmd_list();
	else if (!strcmp(argv[0], "metrics") && argc <= 2)
		rc = cmd_metrics(argc == 2 ? argv[1] : NULL);
	else if (!strcmp(argv[0], "status") || !strcmp(argv[0], "block") ||
		 !strcmp(argv[0], "net") || !strcmp(argv[0], "console") ||
		 !strcmp(argv[0], "log-level"))
		rc = ctl_guest_cmd(argc, argv);
	if (rc < 0) {
		usage(stderr);
		return EX_USAGE;
	}
	return rc;
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "control-dir", required_argument, NULL, 'd' },
		{ "timeout", required_argument, NULL, 't' },
		{ "help", no_argument, NULL, 'h' },
		{ "version", no_argument, NULL, 'V' },
		{ NULL, 0, NULL, 0 },
	};
	const char *dir = NULL;
	char *end;
	long t;
	int c;

	/* "+": options stop at the command, so "status g1 --json" keeps its --json. */
	while ((c = getopt_long(argc, argv, "+d:t:hV", opts, NULL)) != -1) {
		switch (c) {
		case 'd': dir = optarg; break;
		case 't':
			t = strtol(optarg, &end, 10);
			if (*end || t < 1 || t > 3600) {
				fprintf(stderr, "xen-virtiodctl: --timeout: 1 to 3600 seconds\n");
				return EX_USAGE;
			}
			ctl_timeout_ms = (int)t * 1000;
			break;
		case 'h': usage(stdout); return 0;
		case 'V': printf("xen-virtiodctl %s\n", XVD_VERSION); return 0;
		default: usage(stderr); return EX_USAGE;
		}
	}
	ctl_dir = dir ? dir : getenv(CONTROL_DIR_ENV);
	if (!ctl_dir || !ctl_dir[0])
		ctl_dir = CONTROL_DIR_DEFAULT;
	signal(SIGPIPE, SIG_IGN);
	return ctl_run(argc - optind, argv + optind);
}
