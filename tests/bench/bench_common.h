/*
 * Helpers shared by the perf benchmarks (mmio_, cpu_, rss_, scale_, console_bench.c): timing,
 * environment knobs, medians, the BENCH line, a sim daemon on one INI file, and what /proc says
 * about a daemon (CPU time, memory without the guest's mappings). Header-only, so bench.mk links
 * each benchmark as it is.
 *
 * Environment: BENCH_QUICK=1 (the 60-second subset: fewer rounds), BENCH_OUT (where data files
 * for the plots go, default build/bench), BENCH_DIR (scratch files, default /var/tmp).
 */
#ifndef XVD_BENCH_COMMON_H
#define XVD_BENCH_COMMON_H

#include <dirent.h>
#include <errno.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "tests/xensim/guest.h"

#ifndef XVD_SIM_DAEMON
#error "XVD_SIM_DAEMON must name the sim daemon binary"
#endif

#define BENCH_WIN(n)  (UINT64_C(0x02000000) + (uint64_t)(n) * 0x200u)
#define BENCH_SPI(n)  (33u + (n))
#define BENCH_RAM     UINT64_C(0x40000000)
#define BENCH_READY_MS 20000

/* user+sys CPU seconds of pid so far (/proc/<pid>/stat fields 14 and 15); < 0 on error. */
static inline double bench_cpu_ticks_s(pid_t pid)
{
	char path[64], buf[1024], *p;
	unsigned long ut = 0, st = 0;
	FILE *f;
	size_t n;

	snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
	f = fopen(path, "r");
	if (!f)
		return -1;
	n = fread(buf, 1, sizeof(buf) - 1, f);
	fclose(f);
	buf[n] = 0;
	p = strrchr(buf, ')');  /* comm may contain spaces */
	if (!p || sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu", &ut,
			 &st) != 2)
		return -1;
	return (double)(ut + st) / (double)sysconf(_SC_CLK_TCK);
}

static inline double bench_now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static inline uint64_t bench_env_u64(const char *name, uint64_t dflt)
{
	const char *v = getenv(name);

	return v && *v ? strtoull(v, NULL, 0) : dflt;
}

static inline bool bench_quick(void)
{
	return bench_env_u64("BENCH_QUICK", 0) != 0;
}

static inline int bench_cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return (x > y) - (x < y);
}

/* Sorts v in place. */
static inline double bench_median(double *v, unsigned n)
{
	if (n == 0)
		return 0;
	qsort(v, n, sizeof(*v), bench_cmp_double);
	return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

/* higher_better: ratio = value / baseline; else (latency, cost) ratio = baseline / value. */
static inline void bench_line(const char *name, double value, const char *unit, double baseline,
			      bool higher_better)
{
	double ratio = 0;

	if (value > 0 && baseline > 0)
		ratio = higher_better ? value / baseline : baseline / value;
	printf("BENCH %s value=%.3f unit=%s baseline=%.3f ratio=%.2f\n", name, value, unit,
	       baseline, ratio);
	fflush(stdout);
}

/* A case that cannot run here: a visible line, never a silent gap. */
static inline void bench_skip(const char *name, const char *why)
{
	printf("BENCH %s value=0 unit=skipped baseline=0 ratio=0 # skipped: %s\n", name, why);
	fflush(stdout);
}

/* $BENCH_OUT/<file>, the directory created; NULL when it cannot be. */
static inline FILE *bench_data_file(const char *file)
{
	const char *dir = getenv("BENCH_OUT");
	char path[512];

	if (!dir || !*dir)
		dir = "build/bench";
	mkdir(dir, 0755);
	snprintf(path, sizeof(path), "%s/%s", dir, file);
	return fopen(path, "w");
}

static inline const char *bench_scratch_dir(void)
{
	const char *d = getenv("BENCH_DIR");

	return d && *d ? d : "/var/tmp";
}

static inline int bench_write_file(const char *path, const char *text)
{
	FILE *f = fopen(path, "w");

	if (!f)
		return -1;
	if (fputs(text, f) < 0) {
		fclose(f);
		return -1;
	}
	return fclose(f) == 0 ? 0 : -1;
}

/* The daemon's output, indented, on stderr (after a failed start). */
static inline void bench_dump_log(struct xsim_daemon *dm)
{
	xsim_daemon_dump_log(dm, "  | ");
}

/*
 * Write <hub dir>/<tag>.ini with `ini` and start `binary` (the sim daemon, or valgrind with the
 * sim daemon as its first argument in pre[]) on it; wait for READY=1.
 */
static inline int bench_daemon_start(struct xsim_hub *hub, struct xsim_daemon *dm,
				     const char *tag, const char *ini, const char *binary,
				     const char *const *pre, const char *log_level)
{
	char path[512];
	const char *args[24];
	unsigned n = 0;

	snprintf(path, sizeof(path), "%s/%s.ini", xsim_hub_dir(hub), tag);
	if (bench_write_file(path, ini) < 0)
		return -1;
	for (; pre && pre[n] && n < 16; n++)
		args[n] = pre[n];
	args[n++] = "--foreground";
	args[n++] = "--config";
	args[n++] = path;
	args[n++] = "--log-level";
	args[n++] = log_level ? log_level : "warning";
	args[n] = NULL;
	if (xsim_daemon_start(hub, dm, binary ? binary : XVD_SIM_DAEMON, tag, args, 0) < 0)
		return -1;
	return xsim_daemon_wait_ready(dm, BENCH_READY_MS);
}

/*
 * CPU seconds (user+sys) of pid so far: the scheduler's nanosecond runtime of its main thread
 * (/proc/<pid>/schedstat), else clock ticks of the whole process (/proc/<pid>/stat fields 14
 * and 15, 10 ms resolution). < 0 on error.
 */
static inline double bench_cpu_s(pid_t pid)
{
	char sched[64];
	unsigned long long ns;
	FILE *sf;

	snprintf(sched, sizeof(sched), "/proc/%d/schedstat", (int)pid);
	sf = fopen(sched, "r");
	if (sf) {
		int got = fscanf(sf, "%llu", &ns);

		fclose(sf);
		if (got == 1 && ns > 0)
			return (double)ns / 1e9;
	}
	return bench_cpu_ticks_s(pid);
}

/*
 * CPU seconds of every live thread of pid (/proc/<pid>/task/<tid>/schedstat): io_uring's
 * io-wq workers are threads of the daemon. Threads that have exited are not counted; < 0 on
 * error.
 */
static inline double bench_cpu_threads_s(pid_t pid)
{
	char dir[64], path[64 + 256 + 16];
	struct dirent *e;
	double sum = 0;
	DIR *d;

	snprintf(dir, sizeof(dir), "/proc/%d/task", (int)pid);
	d = opendir(dir);
	if (!d)
		return -1;
	while ((e = readdir(d))) {
		unsigned long long ns;
		FILE *f;

		if (e->d_name[0] == '.')
			continue;
		snprintf(path, sizeof(path), "%s/%s/schedstat", dir, e->d_name);
		f = fopen(path, "r");
		if (f && fscanf(f, "%llu", &ns) == 1)
			sum += (double)ns / 1e9;
		if (f)
			fclose(f);
	}
	closedir(d);
	return sum;
}

/* Memory of a process from /proc/<pid>/smaps, in KiB. */
struct bench_mem {
	uint64_t rss;           /* every mapping (= VmRSS) */
	uint64_t guest;         /* guest RAM and Xen pages: xensim's memfd and secretmem mappings */
	uint64_t own;           /* rss - guest: what the daemon itself costs */
	uint64_t private_own;   /* Private_Clean + Private_Dirty outside the guest mappings */
	uint64_t pss_own;       /* Pss outside the guest mappings (shared libraries split) */
};

static inline int bench_mem_of(pid_t pid, struct bench_mem *m)
{
	char path[64], line[512];
	bool guest = false;
	FILE *f;

	memset(m, 0, sizeof(*m));
	snprintf(path, sizeof(path), "/proc/%d/smaps", (int)pid);
	f = fopen(path, "r");
	if (!f)
		return -errno;
	while (fgets(line, sizeof(line), f)) {
		size_t hex = strspn(line, "0123456789abcdef");
		unsigned long long kb;
		char key[64];

		if (hex > 0 && line[hex] == '-') {
			/* A mapping's header line: address range, perms, ..., path. Guest RAM is
			 * memfd_secret memory unless pinnable ("/secretmem (deleted)"). */
			guest = strstr(line, "/memfd:xsim-") || strstr(line, "/secretmem ");
			continue;
		}
		if (sscanf(line, "%63[^:]: %llu kB", key, &kb) != 2)
			continue;
		if (!strcmp(key, "Rss")) {
			m->rss += kb;
			if (guest)
				m->guest += kb;
		} else if (!guest && (!strcmp(key, "Private_Clean") ||
				      !strcmp(key, "Private_Dirty"))) {
			m->private_own += kb;
		} else if (!guest && !strcmp(key, "Pss")) {
			m->pss_own += kb;
		}
	}
	fclose(f);
	m->own = m->rss - m->guest;
	return 0;
}

/*
 * The members of every benchmark's guest: xensim's hub and domain, the daemon under test, the
 * device's window, the driver's memory and the driver.
 */
#define BENCH_GUEST_MEMBERS \
	struct xsim_hub *hub; \
	struct xsim_dom *dom; \
	struct xsim_daemon dm; \
	struct xsim_vio vio; \
	struct vdrv_mem mem; \
	struct vdrv drv

/* ---- the ping-pong floor ---- */

#define BENCH_PING_EXIT (UINT64_C(1) << 40)     /* a ping value that ends the responder */

/* The responder: one eventfd write on out for every value read on in, until BENCH_PING_EXIT. */
static inline void bench_pong_loop(int in, int out)
{
	uint64_t v, one = 1;

	for (;;) {
		if (read(in, &v, sizeof(v)) != sizeof(v) || v >= BENCH_PING_EXIT)
			_exit(0);
		if (write(out, &one, sizeof(one)) != sizeof(one))
			_exit(1);
	}
}

/* ---- callgrind output ---- */

/* The "summary:" (or "totals:") instruction count of a callgrind output file; 0 if none. */
static inline uint64_t bench_cg_total(const char *path)
{
	char line[512];
	uint64_t v = 0;
	FILE *f = fopen(path, "r");

	while (f && fgets(line, sizeof(line), f))
		if (!strncmp(line, "summary:", 8) || (!v && !strncmp(line, "totals:", 7)))
			v = strtoull(strchr(line, ':') + 1, NULL, 10);
	if (f)
		fclose(f);
	return v;
}

/*
 * Sum of the inclusive instruction counts of the named functions (the loop's callbacks, which
 * do not call each other), from callgrind_annotate; 0 when none was found. Unlike the process
 * total it does not grow with wall-clock time (timers), which a loaded machine stretches.
 */
static inline uint64_t bench_cg_inclusive(const char *path, const char *const *names)
{
	char cmd[600], line[1024];
	uint64_t sum = 0;
	FILE *p;

	snprintf(cmd, sizeof(cmd), "callgrind_annotate --inclusive=yes --threshold=100 %s "
		 "2>/dev/null", path);
	p = popen(cmd, "r");
	while (p && fgets(line, sizeof(line), p)) {
		char digits[32], pat[80];
		unsigned n = 0;
		bool hit = false;

		for (unsigned i = 0; names[i] && !hit; i++) {
			snprintf(pat, sizeof(pat), ":%s ", names[i]);
			hit = strstr(line, pat) != NULL;
		}
		if (!hit)
			continue;
		for (const char *c = line; *c && *c != '(' && n < sizeof(digits) - 1; c++)
			if (*c >= '0' && *c <= '9')
				digits[n++] = *c;
		digits[n] = 0;
		sum += strtoull(digits, NULL, 10);
	}
	if (p)
		pclose(p);
	return sum;
}

/* A guest for callgrind runs: started with its daemon under valgrind, n requests, stopped. */
struct bench_cg_guest {
	void *g;
	struct xsim_daemon *dm;             /* g's daemon */
	int (*start)(void *g, const char *tag, const char *binary, const char *const *pre);
	int (*requests)(void *g, unsigned n);
	void (*stop)(void *g);
	const char *const *handlers;        /* the loop's callbacks, for callgrind_annotate */
};

/*
 * One callgrind run: the sim daemon under valgrind serving n requests of cg's guest, from
 * start to exit. Returns the process's total instructions (0 when anything failed, with the
 * daemon's log on stderr) and, in *handler, the handlers' inclusive instructions. The output
 * file is removed unless BENCH_KEEP_CG is set.
 */
static inline uint64_t bench_cg_run(const struct bench_cg_guest *cg, const char *tag, unsigned n,
				    unsigned idx, uint64_t *handler)
{
	char out[512], opt[600];
	const char *pre[] = { "--tool=callgrind", opt, XVD_SIM_DAEMON, NULL };
	uint64_t v = 0;

	snprintf(out, sizeof(out), "%s/xvd-%s-%d-%u.out", bench_scratch_dir(), tag, (int)getpid(),
		 idx);
	snprintf(opt, sizeof(opt), "--callgrind-out-file=%s", out);
	/* Valgrind does not know seccomp(2): the daemon's own switch turns the filter off. */
	setenv("XVD_NO_SECCOMP", "1", 1);
	int started = cg->start(cg->g, tag, "/usr/bin/valgrind", pre);

	unsetenv("XVD_NO_SECCOMP");
	if (started == 0 && cg->requests(cg->g, n) == 0) {
		int st = xsim_daemon_stop(cg->dm);

		cg->dm->pid = -1;
		if (WIFEXITED(st) && WEXITSTATUS(st) == 0) {
			v = bench_cg_total(out);
			*handler = bench_cg_inclusive(out, cg->handlers);
		}
	}
	if (!v) {
		fprintf(stderr, "# a callgrind run failed; the daemon's log:\n");
		bench_dump_log(cg->dm);
	}
	cg->stop(cg->g);
	if (getenv("BENCH_KEEP_CG"))
		fprintf(stderr, "# kept %s\n", out);
	else
		unlink(out);
	return v;
}

/*
 * The callgrind rounds of an instructions-per-request case: per round, run(0) (idle) and run(n)
 * (n requests), each returning the process's total instructions and setting *handler to the
 * instructions of the request handlers (0 when callgrind_annotate found none). Fills per[r]
 * (handlers per request, or the process totals where no handler was found) and tot[r] (the
 * process totals per request), and returns whether every round found the handlers. False,
 * with a skip line for name, when valgrind is missing or disabled or a run failed.
 */
static inline bool bench_cg_rounds(const char *name, unsigned n, unsigned runs,
				   uint64_t (*run)(unsigned n, unsigned idx, uint64_t *handler),
				   double *per, double *tot, bool *handler)
{
	*handler = true;
	if (bench_env_u64("BENCH_NO_VALGRIND", 0) || access("/usr/bin/valgrind", X_OK) != 0) {
		bench_skip(name, "valgrind not available or disabled");
		return false;
	}
	for (unsigned r = 0; r < runs; r++) {
		uint64_t hi = 0, hb = 0;
		uint64_t idle = run(0, 2 * r, &hi), busy = run(n, 2 * r + 1, &hb);

		if (!idle || !busy || busy < idle) {
			bench_skip(name, "a callgrind run failed");
			return false;
		}
		tot[r] = (double)(busy - idle) / n;
		per[r] = hb > hi ? (double)(hb - hi) / n : tot[r];
		*handler &= hb > hi;
		fprintf(stderr, "# %s: idle %" PRIu64 " (handlers %" PRIu64 "), %u requests %" PRIu64
			" (handlers %" PRIu64 ")\n", name, idle, hi, n, busy, hb);
	}
	return true;
}

#endif
