/* Logging: stderr, with "<N>" syslog priority prefixes when journald reads us. */
#ifndef XVD_LOG_H
#define XVD_LOG_H

#include <stdbool.h>
#include <stdint.h>
#include <syslog.h>

/* level: the most verbose priority printed (LOG_ERR..LOG_DEBUG). */
void log_init(int level, bool journal_prefix);
void log_set_level(int level);
int log_get_level(void);
/* "error", "warning", "notice", "info", "debug" -> priority; -1 when unknown. */
int log_parse_level(const char *name);
void log_set_guest(const char *guest);   /* prefixed to every line once known */

void xvd_log(int prio, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#define log_err(...)    xvd_log(LOG_ERR, __VA_ARGS__)
#define log_warn(...)   xvd_log(LOG_WARNING, __VA_ARGS__)
#define log_notice(...) xvd_log(LOG_NOTICE, __VA_ARGS__)
#define log_info(...)   xvd_log(LOG_INFO, __VA_ARGS__)
#define log_debug(...)  xvd_log(LOG_DEBUG, __VA_ARGS__)

/*
 * Rate limit for messages a guest can provoke: at most `burst` messages per `interval_ms`;
 * the number suppressed is reported with the next message that passes, under `what` (the
 * device and kind, when the owner sets it). Give each kind of message its own limit, so that a
 * flood of one kind cannot hide another.
 */
struct ratelimit {
	uint32_t interval_ms;
	uint32_t burst;
	const char *what;     /* optional: names the suppressed messages, e.g. "rng: requests" */
	uint64_t window_start_ms;
	uint32_t printed;
	uint32_t suppressed;
};
#define RATELIMIT_INIT(ms, n) { .interval_ms = (ms), .burst = (n) }
#define RATELIMIT_DEFAULT RATELIMIT_INIT(5000, 10)

bool ratelimit_ok(struct ratelimit *rl);

/*
 * Log through a rate limit; `rl` is a struct ratelimit * owned by the device or guest. A line
 * below the log level does not count against the limit (nor report suppressions of its own).
 */
#define log_rl(rl, prio, ...) do { \
	if ((prio) <= log_get_level() && ratelimit_ok(rl)) \
		xvd_log(prio, __VA_ARGS__); \
} while (0)

#endif
