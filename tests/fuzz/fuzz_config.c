/*
 * libFuzzer target: the INI loader (config/config.c on inih). The input is the whole file,
 * handed to config_load() through a memfd path. Any crash or sanitizer report is a bug, and so
 * is any of: an accepted file with errors reported or more devices than the limit; a refused
 * file without a message; a message that does not start with the file name; a second load of
 * the same bytes giving a different answer.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "config/config.h"
#include "lib/log.h"

#define ERR_LEN 8192

static struct config cfg1, cfg2;
static char err1[ERR_LEN], err2[ERR_LEN];

/* Every line of err starts with "path:". */
static void check_lines(const char *err, const char *path)
{
	size_t plen = strlen(path);

	for (const char *l = err; *l; ) {
		const char *nl = strchr(l, '\n');

		if (strncmp(l, path, plen) != 0 || l[plen] != ':')
			abort();
		if (!nl)
			break;
		l = nl + 1;
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static int fd = -1;
	static char path[64];

	if (fd < 0) {
		log_init(LOG_CRIT, false);
		fd = memfd_create("fuzz.ini", 0);
		if (fd < 0)
			abort();
		snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
	}
	if (ftruncate(fd, 0) < 0 || pwrite(fd, data, size, 0) != (ssize_t)size)
		abort();
	int rc1 = config_load(path, &cfg1, err1, sizeof(err1));
	int rc2 = config_load(path, &cfg2, err2, sizeof(err2));

	if (rc1 != rc2 || strcmp(err1, err2) != 0)
		abort();
	if (memchr(err1, '\0', sizeof(err1)) == NULL)
		abort();
	if (rc1 == 0 && (err1[0] || cfg1.ndevices > CONFIG_MAX_DEVICES))
		abort();
	if (rc1 != 0 && !err1[0])
		abort();
	check_lines(err1, path);
	return 0;
}
