/* What every GPIO backend shares: the lines' names (see gpio_backend.h). */
#include "devices/gpio_backend.h"

#include <string.h>

int gpio_backend_find(const struct gpio_backend *b, const char *name, size_t len)
{
	for (unsigned i = 0; i < b->n; i++)
		if (b->name[i][0] && strlen(b->name[i]) == len && memcmp(b->name[i], name, len) == 0)
			return (int)i;
	return -1;
}

size_t gpio_backend_names(const struct gpio_backend *b, uint8_t *buf, size_t size)
{
	size_t used = 0;

	for (unsigned i = 0; i < b->n; i++) {
		size_t len = strlen(b->name[i]) + 1;

		if (buf && used + len <= size)
			memcpy(buf + used, b->name[i], len);
		used += len;
	}
	return used;
}
