/*
 * One guest's state for the control socket (daemon/control.c): `status` as text or JSON and
 * `metrics` in the Prometheus text exposition format. One walk over the guest (the Xen side's
 * counters, then each device with its registers, counters, queues and console ports) feeds
 * whichever format was asked for, so the three never disagree on what exists.
 */
#ifndef XVD_REPORT_H
#define XVD_REPORT_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>

struct guest;

/* A growable text buffer with a hard bound: past `max` bytes it only records the overflow. */
struct sbuf {
	char *buf;
	size_t len, cap, max;
	bool overflow;
};

void sbuf_init(struct sbuf *b, size_t max);
void sbuf_printf(struct sbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void sbuf_vprintf(struct sbuf *b, const char *fmt, va_list ap);
/* Appends s as the inside of a JSON string (quotes not included). */
void sbuf_json_str(struct sbuf *b, const char *s);
void sbuf_free(struct sbuf *b);

enum report_format {
	REPORT_TEXT,      /* xen-virtiodctl status GUEST */
	REPORT_JSON,      /* xen-virtiodctl status GUEST --json: one object */
	REPORT_METRICS,   /* xen-virtiodctl metrics: "# HELP", "# TYPE" and samples */
};

/* Append g's report to out. Metric families may repeat their HELP/TYPE lines (the control
 * tool groups them when it merges instances). */
void report_guest(struct guest *g, enum report_format f, struct sbuf *out);

#endif
