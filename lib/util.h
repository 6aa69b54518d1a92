/* Small helpers every layer uses. Includes nothing of ours. */
#ifndef XVD_UTIL_H
#define XVD_UTIL_H

#include <stddef.h>

/* The object that embeds `member` at ptr (the libev habit: watchers live in their owner). */
#define container_of(ptr, type, member) \
	((type *)(void *)((char *)(ptr) - offsetof(type, member)))

#define ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))

#endif
