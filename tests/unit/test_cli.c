/*
 * The daemon's command line, run as the real binary: options, exit statuses, configuration
 * checking, and that a bad configuration stops it before any Xen call.
 */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#ifndef XVD_DAEMON_PATH
#error "XVD_DAEMON_PATH must name the daemon binary (tests/unit/cli.mk sets it)"
#endif

struct run {
	int status;               /* exit status, or 128 + signal */
	char out[16384];
	char err[16384];
	double seconds;
};

static char tmpdir[] = "/tmp/xvd-cli-XXXXXX";

static const char *daemon_path(void)
{
	const char *e = getenv("XVD_DAEMON");
	return e && *e ? e : XVD_DAEMON_PATH;
}

static void read_file(const char *path, char *buf, size_t len)
{
	FILE *f = fopen(path, "r");
	size_t n = 0;

	if (f) {
		n = fread(buf, 1, len - 1, f);
		fclose(f);
	}
	buf[n] = '\0';
}

static void child_exec(char *const argv[], const char *out, const char *err, const char *journal)
{
	int o = open(out, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	int e = open(err, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	struct stat st;
	char js[64];

	if (o < 0 || e < 0 || dup2(o, 1) < 0 || dup2(e, 2) < 0)
		_exit(120);
	/* Whatever runs the tests (a systemd unit, CI) must not change the daemon's behaviour. */
	unsetenv("NOTIFY_SOCKET");
	unsetenv("INVOCATION_ID");
	unsetenv("JOURNAL_STREAM");
	if (journal && fstat(2, &st) == 0) {
		snprintf(js, sizeof(js), "%llu:%llu", (unsigned long long)st.st_dev,
			 (unsigned long long)st.st_ino);
		setenv("JOURNAL_STREAM", js, 1);
	}
	execv(argv[0], argv);
	_exit(121);
}

/* Run the daemon with the NULL-terminated arguments; journal != 0: stderr poses as journald's. */
static void run_daemon(struct run *r, int journal, ...)
{
	char *argv[32];
	char out[64], err[64];
	struct timespec t0, t1;
	va_list ap;
	int n = 0, st;
	pid_t pid;

	argv[n++] = (char *)daemon_path();
	va_start(ap, journal);
	while (n < 31 && (argv[n] = va_arg(ap, char *)) != NULL)
		n++;
	va_end(ap);
	argv[n] = NULL;
	snprintf(out, sizeof(out), "%s/stdout", tmpdir);
	snprintf(err, sizeof(err), "%s/stderr", tmpdir);
	clock_gettime(CLOCK_MONOTONIC, &t0);
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0)
		child_exec(argv, out, err, journal ? "yes" : NULL);
	assert_int_equal(waitpid(pid, &st, 0), pid);
	clock_gettime(CLOCK_MONOTONIC, &t1);
	r->seconds = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
	r->status = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
	read_file(out, r->out, sizeof(r->out));
	read_file(err, r->err, sizeof(r->err));
}

static char *write_ini(const char *name, const char *text)
{
	static char path[8][128];
	static unsigned next;
	char *p = path[next++ % 8];
	FILE *f;

	snprintf(p, sizeof(path[0]), "%s/%s", tmpdir, name);
	f = fopen(p, "w");
	assert_non_null(f);
	fputs(text, f);
	fclose(f);
	return p;
}

static const char good_ini[] =
	"[guest]\n"
	"name = cli-test-guest-that-does-not-exist\n"
	"discovery = explicit\n"
	"\n"
	"[rng]\n"
	"mmio = 0x02000000\n"
	"irq = 33\n";

/* Line 3 has an unknown key. */
static const char bad_ini[] =
	"[guest]\n"
	"name = g\n"
	"bogus_key = 1\n";

static int setup(void **state)
{
	(void)state;
	return mkdtemp(tmpdir) ? 0 : -1;
}

static int teardown(void **state)
{
	char cmd[128];

	(void)state;
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmpdir);
	return system(cmd) == 0 ? 0 : -1;
}

static void test_help_lists_every_option(void **state)
{
	static const char *const opts[] = { "--config", "--domain", "--check-config",
		"--log-level", "--foreground", "--watch", "--config-dir", "--backend-domid", "--help",
		"--version" };
	struct run r;

	(void)state;
	run_daemon(&r, 0, "--help", NULL);
	assert_int_equal(r.status, 0);
	for (size_t i = 0; i < sizeof(opts) / sizeof(opts[0]); i++) {
		if (!strstr(r.out, opts[i]))
			fail_msg("--help does not mention %s:\n%s", opts[i], r.out);
	}
	assert_non_null(strstr(r.out, "Usage:"));
	assert_string_equal(r.err, "");
}

static void test_version(void **state)
{
	struct run r;

	(void)state;
	run_daemon(&r, 0, "--version", NULL);
	assert_int_equal(r.status, 0);
	assert_string_equal(r.out, "xen-virtiod " XVD_VERSION "\n");
}

static void expect_usage_error(struct run *r)
{
	assert_int_equal(r->status, 64);
	assert_non_null(strstr(r->err, "Usage:"));
	assert_string_equal(r->out, "");
}

static void test_unknown_option(void **state)
{
	struct run r;

	(void)state;
	run_daemon(&r, 0, "--no-such-option", NULL);
	expect_usage_error(&r);
	assert_non_null(strstr(r.err, "no-such-option"));
}

static void test_stray_argument(void **state)
{
	struct run r;

	(void)state;
	run_daemon(&r, 0, "--config", "/nonexistent.ini", "stray", NULL);
	expect_usage_error(&r);
	assert_non_null(strstr(r.err, "stray"));
}

static void test_bad_combinations(void **state)
{
	struct run r;

	(void)state;
	run_daemon(&r, 0, "--config", NULL);               /* missing argument */
	expect_usage_error(&r);
	run_daemon(&r, 0, "--foreground", NULL);           /* no --config */
	expect_usage_error(&r);
	run_daemon(&r, 0, "--watch", "--config", "/x.ini", NULL);
	expect_usage_error(&r);
	run_daemon(&r, 0, "--config-dir", "/etc", "--config", "/x.ini", NULL);
	expect_usage_error(&r);
	run_daemon(&r, 0, "--log-level", "loud", "--config", "/x.ini", NULL);
	expect_usage_error(&r);
	assert_non_null(strstr(r.err, "loud"));
	/* --backend-domid is watch mode's; an instance reads [guest] backend_domid. */
	run_daemon(&r, 0, "--backend-domid", "3", "--config", "/x.ini", NULL);
	expect_usage_error(&r);
	assert_non_null(strstr(r.err, "--backend-domid goes with --watch"));
	static const char *const bad_ids[] = { "x", "-1", "32752", "7x", "", "99999999999" };

	for (size_t i = 0; i < sizeof(bad_ids) / sizeof(bad_ids[0]); i++) {
		run_daemon(&r, 0, "--watch", "--backend-domid", bad_ids[i], NULL);
		expect_usage_error(&r);
		assert_non_null(strstr(r.err, "bad --backend-domid"));
	}
}

static void test_check_good(void **state)
{
	char *p = write_ini("good.ini", good_ini);
	char want[256];
	struct run r;

	(void)state;
	snprintf(want, sizeof(want), "%s: ok\n", p);
	run_daemon(&r, 0, "--check-config", p, NULL);
	assert_int_equal(r.status, 0);
	assert_string_equal(r.out, want);
	assert_string_equal(r.err, "");
	run_daemon(&r, 0, "--check-config", "--config", p, NULL);
	assert_int_equal(r.status, 0);
	assert_string_equal(r.out, want);
}

static void test_check_bad(void **state)
{
	char *p = write_ini("bad.ini", bad_ini);
	char want[256];
	struct run r;

	(void)state;
	snprintf(want, sizeof(want), "%s:3: bogus_key:", p);
	run_daemon(&r, 0, "--check-config", p, NULL);
	assert_int_equal(r.status, 78);
	if (strncmp(r.err, want, strlen(want)) != 0)
		fail_msg("stderr does not start with \"%s\":\n%s", want, r.err);
	assert_string_equal(r.out, "");
}

static void test_check_missing_file(void **state)
{
	char p[128];
	struct run r;

	(void)state;
	snprintf(p, sizeof(p), "%s/missing.ini", tmpdir);
	run_daemon(&r, 0, "--check-config", p, NULL);
	assert_int_equal(r.status, 78);
	assert_non_null(strstr(r.err, p));
	assert_non_null(strstr(r.err, strerror(ENOENT)));
	assert_string_equal(r.out, "");
}

/*
 * Without --check-config a bad file still stops the daemon with 78 and only the config errors:
 * had it gone on to Xen (absent here), the run would end in 1 with Xen's complaints.
 */
static void test_daemon_refuses_bad_config(void **state)
{
	char *p = write_ini("bad2.ini", bad_ini);
	struct run r;

	(void)state;
	run_daemon(&r, 0, "--foreground", "--config", p, NULL);
	assert_int_equal(r.status, 78);
	assert_non_null(strstr(r.err, "bogus_key"));
	for (const char *l = r.err; *l; l = strchr(l, '\n') + 1) {
		if (!strstr(l, "bogus_key") || !strchr(l, '\n'))
			fail_msg("unexpected line on stderr:\n%s", r.err);
	}
	/* Detaching happens after the configuration is checked: same result without --foreground. */
	run_daemon(&r, 0, "--config", p, NULL);
	assert_int_equal(r.status, 78);
}

/* A malformed NBD URI is a configuration error (78) naming file:line:key, before any connect. */
static void test_daemon_refuses_bad_nbd_uri(void **state)
{
	char *p = write_ini("nbd.ini", "[guest]\nname = g1\n[block \"d\"]\n"
			    "nbd = nbd+unix:///export\n");
	char want[256];
	struct run r;

	(void)state;
	snprintf(want, sizeof(want), "%s:4: nbd: 'nbd+unix:///export': nbd+unix:// needs ?socket=",
		 p);
	run_daemon(&r, 0, "--foreground", "--config", p, NULL);
	assert_int_equal(r.status, 78);
	if (!strstr(r.err, want))
		fail_msg("stderr does not say \"%s\":\n%s", want, r.err);
}

/* A valid file for a domain that is not there: the daemon gets past the config and fails with 1. */
static void test_missing_domain_fails(void **state)
{
	char *p = write_ini("good2.ini", good_ini);
	struct run r;

	(void)state;
	run_daemon(&r, 0, "--foreground", "--config", p, NULL);
	assert_int_equal(r.status, 1);
	/* Detached mode: the parent waits for the child and returns its failure. */
	run_daemon(&r, 0, "--config", p, "--domain", "cli-other-missing-guest", NULL);
	assert_int_equal(r.status, 1);
	assert_non_null(strstr(r.err, "cli-other-missing-guest"));
}

/* Under journald (JOURNAL_STREAM names our stderr) lines carry <prio> prefixes. */
static void test_journal_prefixes(void **state)
{
	char *p = write_ini("bad3.ini", bad_ini);
	struct run r;

	(void)state;
	run_daemon(&r, 1, "--foreground", "--config", p, NULL);
	assert_int_equal(r.status, 78);
	if (strncmp(r.err, "<3>", 3) != 0)
		fail_msg("expected a <3> prefix:\n%s", r.err);
	run_daemon(&r, 0, "--foreground", "--config", p, NULL);
	if (strncmp(r.err, "xen-virtiod[", 12) != 0)
		fail_msg("expected the plain prefix:\n%s", r.err);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_help_lists_every_option),
		cmocka_unit_test(test_version),
		cmocka_unit_test(test_unknown_option),
		cmocka_unit_test(test_stray_argument),
		cmocka_unit_test(test_bad_combinations),
		cmocka_unit_test(test_check_good),
		cmocka_unit_test(test_check_bad),
		cmocka_unit_test(test_check_missing_file),
		cmocka_unit_test(test_daemon_refuses_bad_config),
		cmocka_unit_test(test_daemon_refuses_bad_nbd_uri),
		cmocka_unit_test(test_missing_domain_fails),
		cmocka_unit_test(test_journal_prefixes),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
