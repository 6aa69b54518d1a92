/* The guest's state file: see daemon/state.h. */
#include "daemon/state.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "lib/log.h"
#include "lib/util.h"

#define STATE_MAGIC      "XVDSTATE"
#define STATE_VERSION    1u
#define STATE_SIZE       (UINT64_C(4) << 20)   /* sparse on tmpfs: only what is used costs */
#define STATE_REGIONS    512u
#define STATE_NAME_MAX   96u
#define STATE_ALIGN      64u

struct state_region {
	char name[STATE_NAME_MAX];
	uint32_t off, size;
};

/*
 * The header. Written when the file is made: magic last (a file without it is no state);
 * `ready` when serving starts; regions are appended, each entry before the count covers it.
 */
struct state_hdr {
	char magic[8];
	uint32_t version;
	uint32_t hdr_size;            /* sizeof(struct state_hdr), part of the format */
	uint64_t size;
	uint32_t domid;
	uint32_t ready;
	char handle[64];
	char guest[64];
	uint64_t plan;
	uint32_t nregions;
	uint32_t used;                /* bytes of the file handed out, header included */
	struct state_region region[STATE_REGIONS];
};

struct state {
	struct persist persist;       /* first: the layers see this */
	char path[512];
	int fd;
	struct state_hdr *h;
	bool adopting;
	/* The previous instance's file, copied before ours replaced it (persist.previous). */
	struct state_hdr *prev;
};

#define ST_ORDER() __asm__ __volatile__("" ::: "memory")

uint64_t state_hash(uint64_t h, const void *buf, size_t len)
{
	const unsigned char *p = buf;

	for (size_t i = 0; i < len; i++) {
		h ^= p[i];
		h *= UINT64_C(0x100000001b3);
	}
	return h;
}

/*
 * The file's lock, waiting up to STATE_LOCK_WAIT_MS for it: an instance that was just killed
 * holds it until the kernel has torn the process down, which a loaded dom0 (or one in the middle
 * of cancelling its I/O) stretches, and whoever restarts us may not have waited for that.
 */
#define STATE_LOCK_WAIT_MS 5000

static bool state_lock(struct state *st)
{
	const struct timespec tick = { 0, 50 * 1000000L };

	for (unsigned waited = 0;; waited += 50) {
		if (flock(st->fd, LOCK_EX | LOCK_NB) == 0)
			return true;
		if (errno != EWOULDBLOCK || waited >= STATE_LOCK_WAIT_MS)
			return false;
		if (waited == 0)
			log_notice("state: %s is held: waiting up to %u s for the instance that holds "
				   "it to exit", st->path, STATE_LOCK_WAIT_MS / 1000);
		nanosleep(&tick, NULL);
	}
}

static struct state_region *state_find(struct state *st, const char *name)
{
	for (uint32_t i = 0; i < st->h->nregions && i < STATE_REGIONS; i++)
		if (strncmp(st->h->region[i].name, name, STATE_NAME_MAX) == 0)
			return &st->h->region[i];
	return NULL;
}

static void *state_region(struct persist *p, const char *name, size_t size, bool *adopted)
{
	struct state *st = container_of(p, struct state, persist);
	struct state_region *r = state_find(st, name);
	uint32_t off;

	*adopted = false;
	if (strlen(name) >= STATE_NAME_MAX)
		return NULL;
	if (r) {
		/* Inside what the file handed out, after the header: never trusted blindly. */
		if (r->size != size || r->off < sizeof(*st->h) || r->off > st->h->used ||
		    size > st->h->used - r->off)
			return NULL;
		*adopted = st->adopting;
		if (!st->adopting)
			memset((char *)st->h + r->off, 0, size);
		return (char *)st->h + r->off;
	}
	off = (st->h->used + STATE_ALIGN - 1) & ~(STATE_ALIGN - 1);
	if (st->h->nregions >= STATE_REGIONS || size > STATE_SIZE || off > STATE_SIZE - size)
		return NULL;
	r = &st->h->region[st->h->nregions];
	snprintf(r->name, sizeof(r->name), "%s", name);
	r->off = off;
	r->size = (uint32_t)size;
	memset((char *)st->h + off, 0, size);
	ST_ORDER();
	st->h->used = off + (uint32_t)size;
	st->h->nregions++;
	return (char *)st->h + off;
}

static const void *state_previous(struct persist *p, const char *name, size_t size)
{
	struct state *st = container_of(p, struct state, persist);
	const struct state_hdr *h = st->prev;

	if (!h)
		return NULL;
	for (uint32_t i = 0; i < h->nregions && i < STATE_REGIONS; i++) {
		const struct state_region *r = &h->region[i];

		if (strncmp(r->name, name, STATE_NAME_MAX) != 0)
			continue;
		/* The copy holds `used` bytes: a region must lie inside them. */
		if (r->size != size || r->off < sizeof(*h) || r->off > h->used ||
		    size > h->used - r->off)
			return NULL;
		return (const char *)h + r->off;
	}
	return NULL;
}

/*
 * The previous instance's file is this domain's, written by this version, but not to be taken
 * over: keep a copy, so that what that instance left in Xen can be undone (state_previous()).
 */
static void state_keep_previous(struct state *st, const struct state_id *id)
{
	const struct state_hdr *h = st->h;

	if (memcmp(h->magic, STATE_MAGIC, sizeof(h->magic)) != 0 || h->version != STATE_VERSION ||
	    h->hdr_size != sizeof(*h) || h->size != STATE_SIZE || h->domid != id->domid ||
	    !id->handle[0] || strncmp(h->handle, id->handle, sizeof(h->handle)) != 0 ||
	    h->used < sizeof(*h) || h->used > STATE_SIZE || h->nregions > STATE_REGIONS)
		return;
	st->prev = malloc(h->used);
	if (st->prev)
		memcpy(st->prev, h, h->used);
}

/* Why a previous instance's file cannot be adopted, or NULL when it can. */
static const char *state_mismatch(const struct state_hdr *h, const struct state_id *id)
{
	if (memcmp(h->magic, STATE_MAGIC, sizeof(h->magic)) != 0)
		return "not a state file, or one never completed";
	if (h->version != STATE_VERSION || h->hdr_size != sizeof(*h) || h->size != STATE_SIZE)
		return "written by an incompatible version of xen-virtiod";
	if (h->domid != id->domid)
		return "for another domain id";
	if (!id->handle[0] || strncmp(h->handle, id->handle, sizeof(h->handle)) != 0)
		return "for another domain that had this id (its handle differs)";
	if (h->plan != id->plan)
		return "for another configuration of the devices";
	if (!h->ready)
		return "the previous instance stopped before it served the guest";
	if (h->nregions > STATE_REGIONS || h->used > STATE_SIZE)
		return "damaged";
	return NULL;
}

static void state_init_hdr(struct state *st, const struct state_id *id)
{
	struct state_hdr *h = st->h;

	memset(h, 0, sizeof(*h));
	h->version = STATE_VERSION;
	h->hdr_size = sizeof(*h);
	h->size = STATE_SIZE;
	h->domid = id->domid;
	snprintf(h->handle, sizeof(h->handle), "%s", id->handle);
	snprintf(h->guest, sizeof(h->guest), "%s", id->guest);
	h->plan = id->plan;
	h->used = sizeof(*h);
	ST_ORDER();
	memcpy(h->magic, STATE_MAGIC, sizeof(h->magic));
}

int state_open(const struct state_id *id, struct state **out)
{
	struct state *st = calloc(1, sizeof(*st));
	struct stat sb;
	const char *why;
	bool existed;

	*out = NULL;
	if (!st)
		return 0;
	st->fd = -1;
	st->persist.region = state_region;
	st->persist.previous = state_previous;
	snprintf(st->path, sizeof(st->path), "%s/%s.state", id->dir, id->guest);
	if (mkdir(id->dir, 0700) < 0 && errno != EEXIST)
		goto fail;
	st->fd = open(st->path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
	if (st->fd < 0 || fstat(st->fd, &sb) < 0)
		goto fail;
	/* One instance per guest: two would both answer its vCPUs. Released when we exit. */
	if (!state_lock(st)) {
		log_err("state: %s is held by another xen-virtiod: this guest is served already",
			st->path);
		state_close(st, false);
		return -EBUSY;
	}
	existed = sb.st_size > 0;
	if ((uint64_t)sb.st_size != STATE_SIZE && ftruncate(st->fd, (off_t)STATE_SIZE) < 0)
		goto fail;
	st->h = mmap(NULL, STATE_SIZE, PROT_READ | PROT_WRITE, MAP_SHARED, st->fd, 0);
	if (st->h == MAP_FAILED) {
		st->h = NULL;
		goto fail;
	}
	why = !existed				    ? "absent"
	      : (uint64_t)sb.st_size != STATE_SIZE ? "written by an incompatible version of "
						     "xen-virtiod"
						   : state_mismatch(st->h, id);
	st->adopting = why == NULL;
	if (st->adopting)
		log_notice("state: %s is the previous instance's: taking the guest over",
			   st->path);
	else if (existed && strstr(why, "incompatible"))
		log_warn("state: %s not taken over: %s; starting afresh. Its ioreq servers, if it "
			 "left any, still hold the guest's devices: restart the guest if they do "
			 "not answer", st->path, why);
	else if (existed)
		log_notice("state: %s not taken over (%s); starting afresh", st->path, why);
	if (!st->adopting && existed)
		state_keep_previous(st, id);
	if (!st->adopting)
		state_init_hdr(st, id);
	*out = st;
	return 0;
fail:
	log_warn("state: %s: %s; serving without a state file (a restart cannot take the guest "
		 "over)", st->path, strerror(errno));
	state_close(st, false);
	return 0;
}

struct persist *state_persist(struct state *st)
{
	return st ? &st->persist : NULL;
}

bool state_adopting(const struct state *st)
{
	return st && st->adopting;
}

void state_forget(struct state *st)
{
	if (st)
		st->adopting = false;
}

void state_ready(struct state *st)
{
	if (!st)
		return;
	ST_ORDER();
	st->h->ready = 1;
	free(st->prev);
	st->prev = NULL;
}

void state_close(struct state *st, bool remove)
{
	if (!st)
		return;
	if (st->h)
		munmap(st->h, STATE_SIZE);
	if (st->fd >= 0)
		close(st->fd);
	if (remove && unlink(st->path) < 0 && errno != ENOENT)
		log_warn("state: removing %s: %s", st->path, strerror(errno));
	free(st->prev);
	free(st);
}

/*
 * The domain id and handle a state file is for; false when it is none, or when an instance
 * holds it (that one removes it when its guest goes).
 */
static bool state_peek(const char *path, uint32_t *domid, char *handle, size_t len)
{
	struct state_hdr h;
	int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	bool ok = fd >= 0 && flock(fd, LOCK_SH | LOCK_NB) == 0 &&
		  read(fd, &h, sizeof(h)) == (ssize_t)sizeof(h) &&
		  memcmp(h.magic, STATE_MAGIC, sizeof(h.magic)) == 0;

	if (fd >= 0)
		close(fd);
	if (ok) {
		*domid = h.domid;
		snprintf(handle, len, "%.*s", (int)sizeof(h.handle), h.handle);
	}
	return ok;
}

unsigned state_sweep(const char *dir, bool (*alive)(uint32_t domid, const char *handle))
{
	DIR *d = opendir(dir);
	struct dirent *e;
	unsigned n = 0;

	while (d && (e = readdir(d))) {
		size_t len = strlen(e->d_name);
		char path[512], handle[64];
		uint32_t domid;

		if (len <= 6 || strcmp(e->d_name + len - 6, ".state") != 0)
			continue;
		snprintf(path, sizeof(path), "%s/%s", dir, e->d_name);
		/* A file without a header may be one an instance is making: not ours to judge. */
		if (!state_peek(path, &domid, handle, sizeof(handle)) || alive(domid, handle))
			continue;
		if (unlink(path) == 0) {
			log_info("state: %s removed: its domain is gone", path);
			n++;
		}
	}
	if (d)
		closedir(d);
	return n;
}
