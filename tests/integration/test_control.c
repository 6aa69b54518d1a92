/*
 * xen-virtiodctl against the sim daemon: every command (list, status as text and JSON, metrics
 * of two instances merged, block resize seen by the guest, net link down/up seen by the guest,
 * console attach with a round trip through a guest driver, log-level), malformed and oversized
 * requests, a non-root peer refused (file mode, then SO_PEERCRED), stuck clients that do not
 * stall the loop while 24 tool processes are served, the socket's lifecycle, and the
 * signals that keep working beside the socket.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <sched.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "daemon/control.h"
#include "devices/console.h"
#include "tests/integration/itest.h"
#include "tests/lib/unix_sock.h"

#ifndef XVD_CTL
#error "XVD_CTL must name the xen-virtiodctl binary"
#endif

#define RAM_GPA  UINT64_C(0x40000000)
#define WAIT_MS  5000
#define OUT_MAX  (256 * 1024)

static const char ini_fmt[] =
	"[guest]\nname = %s\ndiscovery = explicit\n\n"
	"[block \"root\"]\nmmio = 0x02000000\nirq = 33\npath = %s\n\n"
	"[net \"eth0\"]\nmmio = 0x02000200\nirq = 34\ntap = %s\n\n"
	"[console \"hvc0\"]\nmmio = 0x02000400\nirq = 35\nlog = %s\n\n"
	"[rng]\nmmio = 0x02000600\nirq = 36\n";

static long now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1000L + ts.tv_nsec / 1000000L;
}

/* ---- the fixture: g1 serving block, net, console and rng ---- */

struct fx {
	struct itest *t;
	char img[192], sock[192];
};

static void fx_start(struct fx *f, const char *name, const char *tap)
{
	char ini[2048], log[192];
	int fd;

	memset(f, 0, sizeof(*f));
	f->t = itest_new(&(struct xsim_dom_opts){ .name = name });
	assert_non_null(f->t);
	snprintf(f->img, sizeof(f->img), "%s/%s.img", xsim_hub_dir(f->t->hub), name);
	snprintf(log, sizeof(log), "%s/%s-hvc0.log", xsim_hub_dir(f->t->hub), name);
	snprintf(f->sock, sizeof(f->sock), "%s/%s%s", xsim_hub_dir(f->t->hub), name,
		 CONTROL_SUFFIX);
	fd = open(f->img, O_CREAT | O_RDWR | O_TRUNC, 0600);
	assert_true(fd >= 0);
	assert_int_equal(ftruncate(fd, 1 << 20), 0);
	close(fd);
	snprintf(ini, sizeof(ini), ini_fmt, name, f->img, tap, log);
	assert_int_equal(itest_serve(f->t, ini), 0);
}

static void fx_stop(struct fx *f)
{
	struct stat st;
	int status = itest_free(f->t);

	assert_true(WIFEXITED(status));
	assert_int_equal(WEXITSTATUS(status), 0);
	/* The instance removes its socket when it stops. */
	assert_int_equal(lstat(f->sock, &st), -1);
}

/* ---- running the tool ---- */

/* fork+exec; stdin/stdout as given (-1: /dev/null / a pipe read into out). */
static pid_t spawn(const char *const *argv, int in, int out)
{
	pid_t pid = fork();

	assert_true(pid >= 0);
	if (pid == 0) {
		int null = open("/dev/null", O_RDWR);

		dup2(in >= 0 ? in : null, 0);
		dup2(out >= 0 ? out : null, 1);
		dup2(out >= 0 ? out : null, 2);
		execv(argv[0], (char *const *)argv);
		_exit(127);
	}
	return pid;
}

/* Read fd until EOF or the deadline; returns the bytes read. */
static size_t read_all(int fd, char *buf, size_t max, int ms)
{
	long end = now_ms() + ms;
	size_t got = 0;

	while (got + 1 < max && now_ms() < end) {
		struct pollfd p = { .fd = fd, .events = POLLIN };
		ssize_t n;

		if (poll(&p, 1, 50) != 1)
			continue;
		n = read(fd, buf + got, max - 1 - got);
		if (n <= 0)
			break;
		got += (size_t)n;
	}
	buf[got] = '\0';
	return got;
}

static int wait_exit(pid_t pid, int ms)
{
	long end = now_ms() + ms;
	int st;

	while (now_ms() < end) {
		pid_t r = waitpid(pid, &st, WNOHANG);

		if (r == pid)
			return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
		struct pollfd none = { .fd = -1 };
		poll(&none, 0, 10);
	}
	kill(pid, SIGKILL);
	waitpid(pid, &st, 0);
	return -1;
}

/* xen-virtiodctl ARGS...: its exit status; stdout and stderr in out (OUT_MAX bytes). */
static int ctl(char *out, const char *arg, ...)
{
	const char *argv[12] = { XVD_CTL };
	int p[2], n = 1;
	va_list ap;
	pid_t pid;

	va_start(ap, arg);
	for (const char *a = arg; a && n < 11; a = va_arg(ap, const char *))
		argv[n++] = a;
	va_end(ap);
	assert_int_equal(pipe2(p, O_CLOEXEC), 0);
	pid = spawn(argv, -1, p[1]);
	close(p[1]);
	read_all(p[0], out, OUT_MAX, 10000);
	close(p[0]);
	return wait_exit(pid, 10000);
}

/* ---- raw requests on the socket ---- */

static int raw_connect(const char *path)
{
	int fd = unix_sock_connect(path);

	return fd < 0 ? -errno : fd;
}

/* Send len bytes, read the answer until the daemon closes. */
static void raw_request(const char *path, const void *req, size_t len, char *out, size_t max)
{
	int fd = raw_connect(path);

	assert_true(fd >= 0);
	assert_int_equal(send(fd, req, len, MSG_NOSIGNAL), (ssize_t)len);
	read_all(fd, out, max, WAIT_MS);
	close(fd);
}

/* ---- checking the formats ---- */

/* A small JSON reader: true when s is one well-formed value (objects, arrays, strings, ints). */
static const char *json_value(const char *s);

static const char *json_ws(const char *s)
{
	while (*s == ' ' || *s == '\n')
		s++;
	return s;
}

static const char *json_string(const char *s)
{
	if (*s++ != '"')
		return NULL;
	for (; *s && *s != '"'; s++)
		if (*s == '\\' && !*++s)
			return NULL;
	return *s == '"' ? s + 1 : NULL;
}

static const char *json_list(const char *s, char close, bool keys)
{
	s = json_ws(s + 1);
	if (*s == close)
		return s + 1;
	for (;;) {
		if (keys) {
			s = json_string(json_ws(s));
			if (!s || *(s = json_ws(s)) != ':')
				return NULL;
			s++;
		}
		s = json_value(s);
		if (!s)
			return NULL;
		s = json_ws(s);
		if (*s == close)
			return s + 1;
		if (*s++ != ',')
			return NULL;
	}
}

static const char *json_value(const char *s)
{
	s = json_ws(s);
	if (*s == '{')
		return json_list(s, '}', true);
	if (*s == '[')
		return json_list(s, ']', false);
	if (*s == '"')
		return json_string(s);
	if (*s < '0' || *s > '9')
		return NULL;
	while (*s >= '0' && *s <= '9')
		s++;
	return s;
}

static bool json_ok(const char *s)
{
	s = json_value(s);
	return s && *json_ws(s) == '\0';
}

/*
 * The text exposition's grouping: every family's HELP and TYPE once, before its samples, and
 * the samples of a family together. Returns the number of samples.
 */
static unsigned prom_check(char *text)
{
	char fams[400][96], cur[96] = "";
	unsigned nf = 0, samples = 0;

	for (char *l = strtok(text, "\n"); l; l = strtok(NULL, "\n")) {
		bool meta = !strncmp(l, "# HELP ", 7) || !strncmp(l, "# TYPE ", 7);
		const char *name = meta ? l + 7 : l;
		char fam[96];

		snprintf(fam, sizeof(fam), "%.*s", (int)strcspn(name, meta ? " " : "{ "), name);
		if (!meta) {
			assert_string_equal(fam, cur);   /* a sample of the family just declared */
			samples++;
			continue;
		}
		if (l[2] == 'H') {
			for (unsigned i = 0; i < nf; i++)
				assert_string_not_equal(fams[i], fam);   /* declared once */
			assert_true(nf < 400);
			snprintf(fams[nf++], sizeof(fams[0]), "%s", fam);
			snprintf(cur, sizeof(cur), "%s", fam);
		} else {
			assert_string_equal(fam, cur);
		}
	}
	return samples;
}

/* ---- the tests ---- */

static void test_status_and_list(void **state)
{
	char *out = malloc(OUT_MAX);
	struct fx f;

	(void)state;
	fx_start(&f, "g1", "ctl0");
	assert_int_equal(ctl(out, "list", NULL), 0);
	assert_non_null(strstr(out, "GUEST"));
	assert_non_null(strstr(out, "g1 "));
	assert_int_equal(ctl(out, "status", "g1", NULL), 0);
	assert_non_null(strstr(out, "guest g1: domid="));
	assert_non_null(strstr(out, "notify_path="));
	assert_non_null(strstr(out, "device block root:"));
	assert_non_null(strstr(out, "device net eth0:"));
	assert_non_null(strstr(out, "device console hvc0:"));
	assert_non_null(strstr(out, "device rng:"));
	assert_non_null(strstr(out, "queue 0:"));
	/* By domid too. */
	char dom[16];
	snprintf(dom, sizeof(dom), "%u", xsim_dom_id(f.t->dom));
	assert_int_equal(ctl(out, "status", dom, NULL), 0);
	assert_non_null(strstr(out, "guest g1: domid="));
	assert_int_equal(ctl(out, "status", "g1", "--json", NULL), 0);
	if (!json_ok(out))
		fail_msg("not JSON: %s", out);
	assert_non_null(strstr(out, "\"devices\":[{"));
	assert_non_null(strstr(out, "\"queues\":[{"));
	assert_non_null(strstr(out, "\"ports\":[{"));
	/* A guest nobody serves, and a name that is no file name. */
	assert_int_equal(ctl(out, "status", "nosuch", NULL), 1);
	assert_non_null(strstr(out, "No such file"));
	assert_int_equal(ctl(out, "status", "../g1", NULL), 1);
	assert_int_equal(ctl(out, "status", NULL), 64);
	/* Where no instance ever ran: nothing to list, no error. */
	assert_int_equal(ctl(out, "--control-dir", "/nonexistent", "list", NULL), 0);
	assert_null(strstr(out, "g1"));
	fx_stop(&f);
	free(out);
}

static void test_metrics_two_instances(void **state)
{
	char *out = malloc(OUT_MAX);
	struct xsim_daemon dm2;
	struct xsim_dom *d2;
	char ini2[256];

	(void)state;
	struct fx f;
	fx_start(&f, "g1", "ctl1");
	/* A second guest with its own instance on the same hub. */
	d2 = xsim_dom_create(f.t->hub, &(struct xsim_dom_opts){ .name = "g2" });
	assert_non_null(d2);
	snprintf(ini2, sizeof(ini2), "%s/g2.ini", xsim_hub_dir(f.t->hub));
	assert_int_equal(itest_write(ini2, "[guest]\nname = g2\ndiscovery = explicit\n"
				     "[rng]\nmmio = 0x02000000\nirq = 33\n"), 0);
	const char *args[] = { "--foreground", "--config", ini2, NULL };
	assert_int_equal(xsim_daemon_start(f.t->hub, &dm2, XVD_SIM_DAEMON, "g2", args, 0), 0);
	assert_int_equal(xsim_daemon_wait_ready(&dm2, READY_MS), 0);

	assert_int_equal(ctl(out, "list", NULL), 0);
	assert_non_null(strstr(out, "g1 "));
	assert_non_null(strstr(out, "g2 "));
	assert_int_equal(ctl(out, "metrics", NULL), 0);
	assert_non_null(strstr(out, "xen_virtiod_instance_info{guest=\"g1\""));
	assert_non_null(strstr(out, "xen_virtiod_instance_info{guest=\"g2\""));
	assert_non_null(strstr(out, "xen_virtiod_block_requests_total{guest=\"g1\",type=\"block\","
				    "device=\"root\"} 0"));
	assert_non_null(strstr(out, "xen_virtiod_xen_ioreqs_total{guest=\"g2\"}"));
	assert_non_null(strstr(out, "xen_virtiod_queue_inflight{guest=\"g1\",type=\"net\","
				    "device=\"eth0\",queue=\"2\"} 0"));
	assert_non_null(strstr(out, "xen_virtiod_console_port_from_guest_bytes_total{guest=\"g1\""));
	assert_true(prom_check(out) > 50);
	/* One instance only. */
	assert_int_equal(ctl(out, "metrics", "g2", NULL), 0);
	assert_null(strstr(out, "guest=\"g1\""));
	assert_true(prom_check(out) > 10);
	assert_true(WIFEXITED(xsim_daemon_stop(&dm2)));
	fx_stop(&f);
	free(out);
}

static void test_block_resize(void **state)
{
	char *out = malloc(OUT_MAX);
	struct fx f;

	(void)state;
	fx_start(&f, "g1", "ctl2");
	assert_int_equal(itest_rd32(f.t, 0, WIN0 + 0x100), 2048);   /* capacity, sectors */
	assert_int_equal(ctl(out, "block", "g1", "root", "resize", NULL), 0);
	assert_non_null(strstr(out, "2048 -> 2048 sectors of 512 bytes (unchanged)"));
	assert_int_equal(truncate(f.img, 2 << 20), 0);
	assert_int_equal(ctl(out, "block", "g1", "root", "resize", NULL), 0);
	assert_non_null(strstr(out, "2048 -> 4096 sectors of 512 bytes; guest notified"));
	/* The guest reads the new capacity. */
	assert_int_equal(itest_rd32(f.t, 0, WIN0 + 0x100), 4096);
	assert_true(xsim_daemon_log_has(&f.t->dm, "control: block root: resize: 2048 -> 4096"));
	/* Wrong device, wrong type, wrong verb. */
	assert_int_equal(ctl(out, "block", "g1", "nosuch", "resize", NULL), 1);
	assert_non_null(strstr(out, "no block device named 'nosuch'"));
	assert_int_equal(ctl(out, "block", "g1", "eth0", "resize", NULL), 1);
	assert_int_equal(ctl(out, "block", "g1", "root", "grow", NULL), 64);
	fx_stop(&f);
	free(out);
}

static void test_net_link(void **state)
{
	char *out = malloc(OUT_MAX);
	uint32_t before;
	struct fx f;

	(void)state;
	fx_start(&f, "g1", "ctl3");
	/* Config space STATUS (offset 6, 16 bits): VIRTIO_NET_S_LINK_UP as the guest sees it. */
	before = (uint32_t)xsim_mmio_read(f.t->dom, 0, WIN1 + 0x100 + 6, 2);
	assert_int_equal(ctl(out, "net", "g1", "eth0", "link", "down", NULL), 0);
	assert_non_null(strstr(out, "net eth0: link down"));
	assert_int_equal(xsim_mmio_read(f.t->dom, 0, WIN1 + 0x100 + 6, 2), 0);
	assert_int_equal(ctl(out, "status", "g1", NULL), 0);
	assert_non_null(strstr(out, "link_up=0 admin_down=1"));
	assert_int_equal(ctl(out, "net", "g1", "eth0", "link", "up", NULL), 0);
	assert_int_equal(xsim_mmio_read(f.t->dom, 0, WIN1 + 0x100 + 6, 2), before);
	assert_int_equal(ctl(out, "net", "g1", "eth0", "link", "sideways", NULL), 1);
	assert_non_null(strstr(out, "up or down"));
	fx_stop(&f);
	free(out);
}

static void test_log_level(void **state)
{
	char *out = malloc(OUT_MAX);
	struct fx f;

	(void)state;
	fx_start(&f, "g1", "ctl4");
	assert_int_equal(ctl(out, "log-level", "g1", "debug", NULL), 0);
	assert_true(xsim_daemon_wait_log(&f.t->dm, "control: log level debug", WAIT_MS));
	assert_int_equal(ctl(out, "log-level", "g1", "loud", NULL), 1);
	assert_non_null(strstr(out, "unknown log level 'loud'"));
	/* The signals keep working beside the socket. */
	kill(f.t->dm.pid, SIGUSR1);
	assert_true(xsim_daemon_wait_log(&f.t->dm, "block root: status", WAIT_MS));
	kill(f.t->dm.pid, SIGHUP);
	assert_true(xsim_daemon_wait_log(&f.t->dm, "SIGHUP: re-reading", WAIT_MS));
	assert_int_equal(ctl(out, "status", "g1", NULL), 0);
	fx_stop(&f);
	free(out);
}

static void test_malformed_requests(void **state)
{
	static const struct {
		const char *req;
		size_t len;
		const char *want;
	} cases[] = {
		{ "\n", 1, "ERR malformed request" },
		{ "status  json\n", 13, "ERR malformed request" },
		{ "status json \n", 13, "ERR malformed request" },
		{ " status\n", 8, "ERR malformed request" },
		{ "\x01status\n", 8, "ERR malformed request" },
		{ "sta\0tus\n", 8, "ERR malformed request" },
		{ "status\r\n", 8, "ERR malformed request" },
		{ "st\xc3\xa4tus\n", 8, "ERR malformed request" },
		{ "a b c d e\n", 10, "ERR malformed request" },
		{ "nosuch\n", 7, "ERR unknown request" },
		{ "status xml\n", 11, "ERR unknown request" },
		{ "block\n", 6, "ERR block: which device?" },
		{ "console rng\n", 12, "ERR no console device named 'rng'" },
		{ "console hvc0 noport\n", 20, "ERR console hvc0: no such port" },
		{ "net eth0 link\n", 14, "ERR net: unknown command" },
	};
	char *out = malloc(OUT_MAX), big[3 * CONTROL_REQUEST_MAX];
	struct fx f;

	(void)state;
	fx_start(&f, "g1", "ctl5");
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		raw_request(f.sock, cases[i].req, cases[i].len, out, OUT_MAX);
		if (strncmp(out, cases[i].want, strlen(cases[i].want)) != 0)
			fail_msg("request %zu: got '%s', want '%s'", i, out, cases[i].want);
	}
	/* Longer than the bound, with or without a newline after it. */
	memset(big, 'a', sizeof(big));
	raw_request(f.sock, big, CONTROL_REQUEST_MAX, out, OUT_MAX);
	assert_non_null(strstr(out, "ERR request longer than 256 bytes"));
	big[sizeof(big) - 1] = '\n';
	raw_request(f.sock, big, sizeof(big), out, OUT_MAX);
	assert_non_null(strstr(out, "ERR request longer than"));
	/* Half a request, then the client goes away: nothing to answer, nothing breaks. */
	int fd = raw_connect(f.sock);
	assert_true(fd >= 0);
	assert_int_equal(send(fd, "stat", 4, MSG_NOSIGNAL), 4);
	close(fd);
	assert_int_equal(ctl(out, "status", "g1", NULL), 0);
	fx_stop(&f);
	free(out);
}

/* A child that becomes nobody and asks; what it read (or the connect error) in out. */
static void ask_as_nobody(const char *path, char *out, size_t max)
{
	int p[2];
	pid_t pid;

	assert_int_equal(pipe(p), 0);
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		char buf[256] = "";
		int fd;

		close(p[0]);
		if (setgid(65534) < 0 || setuid(65534) < 0)
			_exit(2);
		fd = raw_connect(path);
		if (fd < 0) {
			snprintf(buf, sizeof(buf), "connect: %s", strerror(-fd));
		} else {
			/* The refusal may come (and the daemon close) before this is sent: EPIPE
			 * then, but the answer is still there to read. */
			if (send(fd, "status\n", 7, MSG_NOSIGNAL) != 7 && errno != EPIPE)
				snprintf(buf, sizeof(buf), "send: %s", strerror(errno));
			else
				read_all(fd, buf, sizeof(buf), WAIT_MS);
		}
		if (write(p[1], buf, strlen(buf)) < 0)
			_exit(3);
		_exit(0);
	}
	close(p[1]);
	read_all(p[0], out, max, WAIT_MS);
	close(p[0]);
	assert_int_equal(wait_exit(pid, WAIT_MS), 0);
}

static void test_non_root_refused(void **state)
{
	char out[512];
	struct stat st;
	struct fx f;

	(void)state;
	fx_start(&f, "g1", "ctl6");
	assert_int_equal(lstat(f.sock, &st), 0);
	assert_int_equal(st.st_mode & 0777, 0600);
	/* The hub's directory must let nobody reach the socket at all. */
	assert_int_equal(chmod(xsim_hub_dir(f.t->hub), 0755), 0);
	ask_as_nobody(f.sock, out, sizeof(out));
	assert_non_null(strstr(out, "connect: Permission denied"));
	/* With the file opened up, the credentials are what refuses. */
	assert_int_equal(chmod(f.sock, 0666), 0);
	ask_as_nobody(f.sock, out, sizeof(out));
	assert_string_equal(out, "ERR permission denied: root only\n");
	assert_true(xsim_daemon_wait_log(&f.t->dm, "refused a client with uid 65534", WAIT_MS));
	fx_stop(&f);
}

static void test_stuck_and_many_clients(void **state)
{
	enum { IDLE = 10, TOOLS = 24 };
	char *out = malloc(OUT_MAX);
	int idle[IDLE], devnull = open("/dev/null", O_WRONLY);
	pid_t pids[TOOLS];
	long t0;
	struct fx f;

	(void)state;
	fx_start(&f, "g1", "ctl7");
	/* Clients that connect and never ask hold slots until their deadline. */
	for (int i = 0; i < IDLE; i++) {
		idle[i] = raw_connect(f.sock);
		assert_true(idle[i] >= 0);
	}
	/* Meanwhile 24 tools at once (more than the 16 slots) are all answered, before the idle
	 * ones expire. */
	t0 = now_ms();
	for (int i = 0; i < TOOLS; i++) {
		const char *argv[] = { XVD_CTL, i % 2 ? "metrics" : "status", "g1", NULL };

		pids[i] = spawn(argv, -1, devnull);
	}
	for (int i = 0; i < TOOLS; i++)
		assert_int_equal(wait_exit(pids[i], 10000), 0);
	assert_true(now_ms() - t0 < (long)(CONTROL_TIMEOUT_S * 1000));
	/* The idle clients are dropped at their deadline: EOF without an answer. */
	for (int i = 0; i < IDLE; i++) {
		char buf[64];

		assert_int_equal(read_all(idle[i], buf, sizeof(buf), 3 * WAIT_MS), 0);
		close(idle[i]);
	}
	assert_true(xsim_daemon_log_has(&f.t->dm, "control: a client took more than 5 s"));
	assert_int_equal(ctl(out, "status", "g1", NULL), 0);
	close(devnull);
	fx_stop(&f);
	free(out);
}

static void test_stale_socket_replaced(void **state)
{
	char *out = malloc(OUT_MAX);
	struct xsim_daemon dm2;
	struct fx f;
	int st;

	(void)state;
	fx_start(&f, "g1", "ctl8");
	/* A crashed instance leaves its socket behind; the next one takes the name over. */
	kill(f.t->dm.pid, SIGKILL);
	assert_int_equal(xsim_daemon_wait_exit(&f.t->dm, WAIT_MS, &st), 0);
	xsim_daemon_stop(&f.t->dm);
	assert_int_equal(access(f.sock, F_OK), 0);
	const char *args[] = { "--foreground", "--config", f.t->ini, NULL };
	assert_int_equal(xsim_daemon_start(f.t->hub, &dm2, XVD_SIM_DAEMON, "again", args, 0), 0);
	assert_int_equal(xsim_daemon_wait_ready(&dm2, READY_MS), 0);
	assert_int_equal(ctl(out, "status", "g1", NULL), 0);
	/* A second live instance for the same name leaves the first one's socket alone. */
	struct xsim_daemon dm3;
	char ini3[256];
	snprintf(ini3, sizeof(ini3), "%s/third.ini", xsim_hub_dir(f.t->hub));
	assert_int_equal(itest_write(ini3, "[guest]\nname = g1\ndiscovery = explicit\n"
				     "[rng]\nmmio = 0x02000800\nirq = 37\n"), 0);
	/* No state file: the state file's lock would refuse it first (test_restart.c). */
	const char *args3[] = { "--foreground", "--config", ini3, "--state-dir", "none", NULL };
	assert_int_equal(xsim_daemon_start(f.t->hub, &dm3, XVD_SIM_DAEMON, "third", args3, 0), 0);
	assert_true(xsim_daemon_wait_log(&dm3, "is served by another instance", WAIT_MS));
	xsim_daemon_stop(&dm3);
	assert_int_equal(ctl(out, "info", "g1", NULL), 64);   /* not a tool command */
	assert_int_equal(ctl(out, "list", NULL), 0);
	assert_non_null(strstr(out, "g1 "));
	f.t->dm = dm2;
	fx_stop(&f);
	free(out);
}

/* ---- console: a guest driver on one side, the tool's stdin/stdout on the other ---- */

#define NRX 8
#define RXLEN 256

struct con {
	struct itest *t;
	struct xsim_vio vio;
	struct vdrv_mem mem;
	struct vdrv drv;
	uint64_t tx_gpa, rx_gpa[NRX];
	uint8_t *tx, *rx[NRX];
};

static void con_post(struct con *c, unsigned i)
{
	struct vdrv_buf b = { c->rx_gpa[i], RXLEN, true };

	assert_true(vdrv_submit(&c->drv, 0, &b, 1, false, (void *)(uintptr_t)(i + 1)) >= 0);
}

static void con_start(struct con *c)
{
	char ini[512];

	memset(c, 0, sizeof(*c));
	c->t = itest_new(&(struct xsim_dom_opts){ .name = "g1" });
	assert_non_null(c->t);
	/* Only a log file: the tool's attach gives the port its interactive side. */
	snprintf(ini, sizeof(ini), "[guest]\nname = g1\ndiscovery = explicit\n"
		 "[console \"hvc0\"]\nmmio = 0x02000000\nirq = 33\nlog = %s/hvc0.log\n",
		 xsim_hub_dir(c->t->hub));
	assert_int_equal(itest_serve(c->t, ini), 0);
	xsim_vio_init(&c->vio, c->t->dom, 0, WIN0, 33);
	assert_int_equal(xsim_vmem_init(&c->mem, c->t->dom, RAM_GPA, 1 << 20, false), 0);
	assert_int_equal(vdrv_init(&c->drv, &c->vio.io, &c->mem, VIRTIO_BIT(VIRTIO_F_VERSION_1),
				   2, 64), 0);
	c->tx_gpa = vdrv_alloc(&c->mem, 4096, 16, (void **)&c->tx);
	for (unsigned i = 0; i < NRX; i++) {
		c->rx_gpa[i] = vdrv_alloc(&c->mem, RXLEN, 16, (void **)&c->rx[i]);
		con_post(c, i);
	}
	vdrv_kick(&c->drv, 0);
}

/* Bytes the guest received on port 0 until want arrived (or WAIT_MS). */
static size_t con_recv(struct con *c, char *out, size_t want)
{
	long end = now_ms() + WAIT_MS;
	size_t got = 0;

	while (got < want && now_ms() < end) {
		uint32_t len;
		void *tok;

		if (vdrv_get_used(&c->drv, 0, &len, &tok) == 1) {
			unsigned i = (unsigned)(uintptr_t)tok - 1;

			assert_true(i < NRX && len <= RXLEN && got + len <= want);
			memcpy(out + got, c->rx[i], len);
			got += len;
			con_post(c, i);
			vdrv_kick(&c->drv, 0);
			continue;
		}
		vdrv_enable_irq(&c->drv, 0);
		c->vio.io.wait_irq(&c->vio.io, 10);
	}
	return got;
}

static void con_send(struct con *c, const char *s)
{
	struct vdrv_buf b = { c->tx_gpa, (uint32_t)strlen(s), false };

	memcpy(c->tx, s, strlen(s));
	assert_int_equal(vdrv_transfer(&c->drv, 1, &b, 1, false, WAIT_MS), 0);
}

/* xen-virtiodctl console g1 hvc0 with a socket pair as its terminal; *term is our end. */
static pid_t con_attach(int *term)
{
	const char *argv[] = { XVD_CTL, "console", "g1", "hvc0", NULL };
	int sv[2];
	pid_t pid;

	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
	pid = spawn(argv, sv[1], sv[1]);
	close(sv[1]);
	*term = sv[0];
	return pid;
}

static void test_console_attach(void **state)
{
	char *out = malloc(OUT_MAX), buf[256];
	struct con c;
	int term;
	pid_t pid;

	(void)state;
	con_start(&c);
	pid = con_attach(&term);
	/* Typed into the tool, read by the guest; written by the guest, shown by the tool. */
	assert_true(xsim_daemon_wait_log(&c.t->dm, "port 0: attached by xen-virtiodctl", WAIT_MS));
	assert_int_equal(write(term, "echo hi\n", 8), 8);
	assert_int_equal(con_recv(&c, buf, 8), 8);
	assert_memory_equal(buf, "echo hi\n", 8);
	con_send(&c, "hi\r\n");
	long end = now_ms() + WAIT_MS;
	size_t got = 0;
	while (got < 4 && now_ms() < end) {
		struct pollfd p = { .fd = term, .events = POLLIN };
		ssize_t n;

		if (poll(&p, 1, 50) == 1 && (n = read(term, buf + got, sizeof(buf) - got)) > 0)
			got += (size_t)n;
	}
	assert_int_equal(got, 4);
	assert_memory_equal(buf, "hi\r\n", 4);
	/* One client per port: a second attach is refused while the first one is there. */
	assert_int_equal(ctl(out, "console", "g1", "hvc0", NULL), 1);
	assert_non_null(strstr(out, "another client is attached to that port"));
	/* Ctrl-] detaches; the port is free again. */
	assert_int_equal(write(term, "\x1d", 1), 1);
	assert_int_equal(wait_exit(pid, WAIT_MS), 0);
	close(term);
	assert_true(xsim_daemon_wait_log(&c.t->dm, "port 0: client detached", WAIT_MS));
	pid = con_attach(&term);
	assert_true(xsim_daemon_wait_log(&c.t->dm, "client attached", WAIT_MS));
	close(term);   /* EOF on the terminal detaches too */
	assert_int_equal(wait_exit(pid, WAIT_MS), 0);
	assert_int_equal(c.vio.errors, 0);
	assert_true(WIFEXITED(itest_free(c.t)));
	free(out);
}

static int all_tests(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_status_and_list),
		cmocka_unit_test(test_metrics_two_instances),
		cmocka_unit_test(test_block_resize),
		cmocka_unit_test(test_net_link),
		cmocka_unit_test(test_log_level),
		cmocka_unit_test(test_malformed_requests),
		cmocka_unit_test(test_non_root_refused),
		cmocka_unit_test(test_stuck_and_many_clients),
		cmocka_unit_test(test_stale_socket_replaced),
		cmocka_unit_test(test_console_attach),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}

int main(void)
{
	/* The daemons we start make their taps in a private network namespace. */
	return itest_in_netns("test_control", all_tests);
}
