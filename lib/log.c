#include "lib/log.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <time.h>

static int log_level = LOG_INFO;
static bool log_journal;
static char log_guest[64];

void log_init(int level, bool journal_prefix)
{
	log_level = level;
	log_journal = journal_prefix;
}

void log_set_level(int level) { log_level = level; }
int log_get_level(void) { return log_level; }

void log_set_guest(const char *guest)
{
	snprintf(log_guest, sizeof(log_guest), "%s", guest ? guest : "");
}

int log_parse_level(const char *name)
{
	static const struct { const char *name; int prio; } levels[] = {
		{ "error", LOG_ERR }, { "err", LOG_ERR }, { "warning", LOG_WARNING },
		{ "warn", LOG_WARNING }, { "notice", LOG_NOTICE }, { "info", LOG_INFO },
		{ "debug", LOG_DEBUG },
	};
	for (size_t i = 0; i < sizeof(levels) / sizeof(levels[0]); i++)
		if (strcasecmp(name, levels[i].name) == 0)
			return levels[i].prio;
	return -1;
}

void xvd_log(int prio, const char *fmt, ...)
{
	static const char *const tag[] = { "emerg", "alert", "crit", "error", "warning",
					   "notice", "info", "debug" };
	char msg[1024];
	va_list ap;
	int saved = errno;

	if (prio > log_level)
		return;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	/* One fprintf per line so concurrent instances sharing a journal stream stay whole. */
	if (log_journal)
		fprintf(stderr, "<%d>%s%s%s\n", prio, log_guest,
			log_guest[0] ? ": " : "", msg);
	else
		fprintf(stderr, "xen-virtiod[%s]: %s: %s\n", log_guest[0] ? log_guest : "-",
			tag[prio & 7], msg);
	errno = saved;
}

static uint64_t now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

bool ratelimit_ok(struct ratelimit *rl)
{
	uint64_t now = now_ms();

	if (now - rl->window_start_ms >= rl->interval_ms) {
		if (rl->suppressed)
			xvd_log(LOG_WARNING, "%s%s%u similar messages suppressed",
				rl->what ? rl->what : "", rl->what ? ": " : "", rl->suppressed);
		rl->window_start_ms = now;
		rl->printed = 0;
		rl->suppressed = 0;
	}
	if (rl->printed < rl->burst) {
		rl->printed++;
		return true;
	}
	rl->suppressed++;
	return false;
}
