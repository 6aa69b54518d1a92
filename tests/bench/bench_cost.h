/*
 * What a request costs the daemon in events that do not move with the machine's load: system
 * calls, context switches, wake-ups, and (where the CPU has a PMU) instructions, counted by the
 * kernel with perf_event_open(2) on every thread of the daemon.
 *
 * - System calls: the raw_syscalls:sys_enter tracepoint, counted (not traced) per thread. Its id
 *   is read from tracefs; a root benchmark mounts tracefs at /sys/kernel/tracing when nothing is
 *   mounted there (a test-host accommodation, said on stderr).
 * - Context switches: the software event PERF_COUNT_SW_CONTEXT_SWITCHES (every switch away from
 *   a daemon thread, voluntary or not).
 * - Wake-ups: voluntary context switches (a thread that blocked needs one wake-up to run again),
 *   from /proc/<pid>/task/<tid>/status, with the involuntary ones beside them.
 * - Instructions: PERF_COUNT_HW_INSTRUCTIONS, user and kernel, where the PMU exists; a VM
 *   without one (Firecracker) says so, and callgrind's user-only counts stand in.
 *
 * The counters are opened on each thread alive at start with inherit set: threads created
 * later (io_uring's iou-wrk workers are created by the thread that submits) count into their
 * creator's counter, also after they exit. The /proc figures miss threads that exited.
 *
 * Header-only, like bench_common.h.
 */
#ifndef XVD_BENCH_COST_H
#define XVD_BENCH_COST_H

#include <dirent.h>
#include <errno.h>
#include <linux/perf_event.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <unistd.h>

#define COST_MAX_TASKS 16

enum { COST_SYSCALLS, COST_CSW, COST_INSTR, COST_NCOUNTERS };

struct cost_counters {
	int fd[COST_NCOUNTERS][COST_MAX_TASKS];
	unsigned ntasks;
	pid_t pid;
};

/* A snapshot: kernel counters, and /proc's switches of the live threads. */
struct cost_snap {
	uint64_t c[COST_NCOUNTERS];
	uint64_t vol, invol;        /* voluntary / involuntary switches, live threads */
	unsigned threads, workers;  /* live threads, of which io_uring workers (iou-wrk) */
};

static inline long cost_perf_open(struct perf_event_attr *a, pid_t tid)
{
	return syscall(SYS_perf_event_open, a, tid, -1, -1, PERF_FLAG_FD_CLOEXEC);
}

/* raw_syscalls:sys_enter's tracepoint id, or < 0 (-errno) when tracefs is not there. */
static inline long cost_syscall_tp_id(void)
{
	static const char *const paths[] = {
		"/sys/kernel/tracing/events/raw_syscalls/sys_enter/id",
		"/sys/kernel/debug/tracing/events/raw_syscalls/sys_enter/id",
	};
	long id = -ENOENT;

	for (int pass = 0; pass < 2 && id < 0; pass++) {
		for (unsigned i = 0; i < 2 && id < 0; i++) {
			FILE *f = fopen(paths[i], "r");

			if (f && fscanf(f, "%ld", &id) != 1)
				id = -EINVAL;
			if (f)
				fclose(f);
		}
		if (id >= 0 || pass || geteuid() != 0)
			break;
		if (mount("nodev", "/sys/kernel/tracing", "tracefs", 0, NULL) == 0)
			fprintf(stderr, "# mounted tracefs at /sys/kernel/tracing for the "
				"raw_syscalls tracepoint's id\n");
	}
	return id;
}

static inline void cost_attr(struct perf_event_attr *a, uint32_t type, uint64_t config)
{
	memset(a, 0, sizeof(*a));
	a->size = sizeof(*a);
	a->type = type;
	a->config = config;
	a->inherit = 1;
	a->disabled = 0;
}

/*
 * Counters on every thread of pid (at most COST_MAX_TASKS). A counter the host cannot give
 * stays -1 and reads as 0; why is in *why_instr / *why_sys (static strings, or NULL).
 */
static inline int cost_open(struct cost_counters *cc, pid_t pid, const char **why_sys,
			    const char **why_instr)
{
	char dir[64];
	struct dirent *e;
	long tp = cost_syscall_tp_id();
	DIR *d;

	memset(cc, 0xff, sizeof(cc->fd));
	cc->ntasks = 0;
	cc->pid = pid;
	*why_sys = tp < 0 ? "no tracefs (raw_syscalls:sys_enter id)" : NULL;
	*why_instr = NULL;
	snprintf(dir, sizeof(dir), "/proc/%d/task", (int)pid);
	d = opendir(dir);
	if (!d)
		return -errno;
	while ((e = readdir(d)) && cc->ntasks < COST_MAX_TASKS) {
		struct perf_event_attr a;
		pid_t tid = (pid_t)atoi(e->d_name);
		unsigned t = cc->ntasks;

		if (tid <= 0)
			continue;
		if (tp >= 0) {
			cost_attr(&a, PERF_TYPE_TRACEPOINT, (uint64_t)tp);
			cc->fd[COST_SYSCALLS][t] = (int)cost_perf_open(&a, tid);
			if (cc->fd[COST_SYSCALLS][t] < 0)
				*why_sys = "perf_event_open refused the tracepoint";
		}
		cost_attr(&a, PERF_TYPE_SOFTWARE, PERF_COUNT_SW_CONTEXT_SWITCHES);
		cc->fd[COST_CSW][t] = (int)cost_perf_open(&a, tid);
		cost_attr(&a, PERF_TYPE_HARDWARE, PERF_COUNT_HW_INSTRUCTIONS);
		cc->fd[COST_INSTR][t] = (int)cost_perf_open(&a, tid);
		if (cc->fd[COST_INSTR][t] < 0)
			*why_instr = errno == ENOENT || errno == EOPNOTSUPP ?
				     "no hardware instruction counter (no PMU in this VM)" :
				     "perf_event_open refused the instruction counter";
		cc->ntasks++;
	}
	closedir(d);
	return 0;
}

static inline void cost_close(struct cost_counters *cc)
{
	for (unsigned k = 0; k < COST_NCOUNTERS; k++)
		for (unsigned t = 0; t < cc->ntasks; t++)
			if (cc->fd[k][t] >= 0)
				close(cc->fd[k][t]);
	cc->ntasks = 0;
}

/* voluntary_ctxt_switches and nonvoluntary_ctxt_switches of every live thread. */
static inline void cost_proc_switches(pid_t pid, struct cost_snap *s)
{
	char dir[64], path[64 + 256 + 16], line[256];
	struct dirent *e;
	DIR *d;

	snprintf(dir, sizeof(dir), "/proc/%d/task", (int)pid);
	d = opendir(dir);
	while (d && (e = readdir(d))) {
		unsigned long long v;
		FILE *f;

		if (e->d_name[0] == '.')
			continue;
		s->threads++;
		snprintf(path, sizeof(path), "%s/%s/comm", dir, e->d_name);
		f = fopen(path, "r");
		if (f && fgets(line, sizeof(line), f) && !strncmp(line, "iou-wrk", 7))
			s->workers++;
		if (f)
			fclose(f);
		snprintf(path, sizeof(path), "%s/%s/status", dir, e->d_name);
		f = fopen(path, "r");
		while (f && fgets(line, sizeof(line), f)) {
			if (sscanf(line, "voluntary_ctxt_switches: %llu", &v) == 1)
				s->vol += v;
			else if (sscanf(line, "nonvoluntary_ctxt_switches: %llu", &v) == 1)
				s->invol += v;
		}
		if (f)
			fclose(f);
	}
	if (d)
		closedir(d);
}

static inline void cost_read(const struct cost_counters *cc, struct cost_snap *s)
{
	memset(s, 0, sizeof(*s));
	for (unsigned k = 0; k < COST_NCOUNTERS; k++)
		for (unsigned t = 0; t < cc->ntasks; t++) {
			uint64_t v;

			if (cc->fd[k][t] >= 0 && read(cc->fd[k][t], &v, sizeof(v)) == sizeof(v))
				s->c[k] += v;
		}
	cost_proc_switches(cc->pid, s);
}

/* sum += b - a (counters and /proc switches; a thread gone since may make /proc go back). */
static inline void cost_add(struct cost_snap *sum, const struct cost_snap *a,
			    const struct cost_snap *b)
{
	for (unsigned k = 0; k < COST_NCOUNTERS; k++)
		sum->c[k] += b->c[k] - a->c[k];
	sum->vol += b->vol >= a->vol ? b->vol - a->vol : 0;
	sum->invol += b->invol >= a->invol ? b->invol - a->invol : 0;
	sum->workers = b->workers;
}

/* Per-request figures between two snapshots over n requests. */
struct cost_per_req {
	double syscalls, csw, wakeups, invol, instr;
	unsigned workers_max;       /* iou-wrk threads alive at the end */
};

static inline void cost_per_request(const struct cost_snap *a, const struct cost_snap *b,
				    uint64_t n, struct cost_per_req *out)
{
	double d = n ? (double)n : 1;

	out->syscalls = (double)(b->c[COST_SYSCALLS] - a->c[COST_SYSCALLS]) / d;
	out->csw = (double)(b->c[COST_CSW] - a->c[COST_CSW]) / d;
	out->instr = (double)(b->c[COST_INSTR] - a->c[COST_INSTR]) / d;
	out->wakeups = b->vol >= a->vol ? (double)(b->vol - a->vol) / d : 0;
	out->invol = b->invol >= a->invol ? (double)(b->invol - a->invol) / d : 0;
	out->workers_max = b->workers;
}

#endif
