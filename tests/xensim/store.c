/*
 * The in-memory xenstore of the hub: a flat list of nodes (the store of one test machine holds
 * a few thousand at most) and watches that behave like xenstored's: a watch fires once when
 * registered, then for every change to its path or below, and for the removal of a parent.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "tests/xensim/hub.h"

#define STORE_PATH_MAX 3072u
#define STORE_VALUE_MAX 4096u

/* True when child is parent or below it (xs_path_is_subpath). */
static bool store_subpath(const char *parent, const char *child)
{
	size_t n = strlen(parent);

	if (strncmp(parent, child, n) != 0)
		return false;
	return child[n] == '\0' || child[n] == '/' || (n == 1 && parent[0] == '/');
}

static bool store_path_ok(const char *path)
{
	size_t n = strlen(path);

	if (n == 0 || n > STORE_PATH_MAX)
		return false;
	if (path[0] == '@')
		return true;
	return path[0] == '/' && (n == 1 || path[n - 1] != '/') && !strstr(path, "//");
}

static struct xsim_node *store_find(struct xsim_hub *h, const char *path)
{
	for (unsigned i = 0; i < h->nnodes; i++)
		if (strcmp(h->nodes[i].path, path) == 0)
			return &h->nodes[i];
	return NULL;
}

void store_flush(struct xsim_conn *c)
{
	while (c->q_head) {
		struct xsim_event *e = c->q_head;

		if (send(c->sink, e->data, e->len, MSG_DONTWAIT | MSG_NOSIGNAL) < 0 &&
		    errno == EAGAIN)
			return;
		/* Sent, or the client is gone (its events go with it). */
		c->q_head = e->next;
		if (!c->q_head)
			c->q_tail = &c->q_head;
		free(e);
	}
}

/*
 * Like xenstored, never lose an event: send it without blocking (the hub must not wait for a
 * busy daemon), and when the client's socket is full queue it, in order, for the hub thread.
 */
static void store_send_event(struct xsim_hub *h, struct xsim_watch *w, const char *path)
{
	struct xsim_conn *c = w->conn;
	size_t a = strlen(path) + 1, b = strlen(w->token) + 1;
	struct xsim_event *e;
	uint64_t one = 1;

	if (c->sink < 0)
		return;
	e = malloc(sizeof(*e) + a + b);
	if (!e)
		return;
	e->next = NULL;
	e->len = a + b;
	memcpy(e->data, path, a);
	memcpy(e->data + a, w->token, b);
	if (!c->q_tail)
		c->q_tail = &c->q_head;
	*c->q_tail = e;
	c->q_tail = &e->next;
	store_flush(c);
	if (c->q_head && write(h->wake_fd, &one, sizeof(one)) < 0)
		return;   /* the eventfd is saturated: the hub thread is awake anyway */
}

static void store_changed(struct xsim_hub *h, const char *path, bool removed)
{
	for (unsigned i = 0; i < h->nwatches; i++) {
		struct xsim_watch *w = &h->watches[i];

		if (w->path[0] == '@' || path[0] == '@') {
			if (strcmp(w->path, path) == 0)
				store_send_event(h, w, path);
		} else if (store_subpath(w->path, path)) {
			store_send_event(h, w, path);
		} else if (removed && store_subpath(path, w->path)) {
			store_send_event(h, w, w->path);
		}
	}
}

void store_fire(struct xsim_hub *h, const char *path)
{
	store_changed(h, path, false);
}

static int store_add(struct xsim_hub *h, const char *path)
{
	if (h->nnodes == h->cap_nodes) {
		unsigned cap = h->cap_nodes ? h->cap_nodes * 2 : 256;
		struct xsim_node *n = realloc(h->nodes, cap * sizeof(*n));

		if (!n)
			return -ENOMEM;
		h->nodes = n;
		h->cap_nodes = cap;
	}
	h->nodes[h->nnodes].path = strdup(path);
	h->nodes[h->nnodes].val = calloc(1, 1);
	h->nodes[h->nnodes].len = 0;
	if (!h->nodes[h->nnodes].path || !h->nodes[h->nnodes].val)
		return -ENOMEM;
	h->nnodes++;
	return 0;
}

/* Create path and every missing parent, as xenstored does on write. */
static struct xsim_node *store_mkpath(struct xsim_hub *h, const char *path)
{
	char tmp[STORE_PATH_MAX + 1];

	strcpy(tmp, path);
	for (char *p = tmp + 1;; p++) {
		if (*p != '/' && *p != '\0')
			continue;
		char c = *p;

		*p = '\0';
		if (!store_find(h, tmp) && store_add(h, tmp) < 0)
			return NULL;
		*p = c;
		if (c == '\0')
			break;
	}
	return store_find(h, path);
}

int store_write(struct xsim_hub *h, const char *path, const void *val, unsigned len)
{
	struct xsim_node *n;
	char *copy;

	if (!store_path_ok(path) || path[0] == '@' || len > STORE_VALUE_MAX)
		return -EINVAL;
	n = store_mkpath(h, path);
	copy = malloc(len + 1);
	if (!n || !copy) {
		free(copy);
		return -ENOMEM;
	}
	memcpy(copy, val, len);
	copy[len] = '\0';
	free(n->val);
	n->val = copy;
	n->len = len;
	store_changed(h, path, false);
	return 0;
}

int store_read(struct xsim_hub *h, const char *path, char **val, unsigned *len)
{
	struct xsim_node *n = store_path_ok(path) ? store_find(h, path) : NULL;

	if (!n)
		return -ENOENT;
	*val = n->val;
	*len = n->len;
	return 0;
}

int store_rm(struct xsim_hub *h, const char *path)
{
	unsigned j = 0;
	bool found = false;

	if (!store_path_ok(path) || path[0] == '@' || strcmp(path, "/") == 0)
		return -EINVAL;
	for (unsigned i = 0; i < h->nnodes; i++) {
		if (store_subpath(path, h->nodes[i].path)) {
			found = true;
			free(h->nodes[i].path);
			free(h->nodes[i].val);
			continue;
		}
		h->nodes[j++] = h->nodes[i];
	}
	h->nnodes = j;
	if (!found)
		return -ENOENT;
	store_changed(h, path, true);
	return 0;
}

/* Names of the direct children of path, NUL-separated into buf. */
int store_directory(struct xsim_hub *h, const char *path, char *buf, unsigned cap,
		    unsigned *count, unsigned *used)
{
	size_t n = strlen(path);

	if (!store_path_ok(path) || !store_find(h, path))
		return -ENOENT;
	*count = *used = 0;
	for (unsigned i = 0; i < h->nnodes; i++) {
		const char *p = h->nodes[i].path;
		const char *name = p + n + (n > 1);

		if (strcmp(p, path) == 0 || !store_subpath(path, p) || strchr(name, '/'))
			continue;
		size_t len = strlen(name) + 1;

		if (*used + len > cap)
			return -E2BIG;
		memcpy(buf + *used, name, len);
		*used += len;
		(*count)++;
	}
	return 0;
}

int store_watch(struct xsim_hub *h, struct xsim_conn *c, const char *path, const char *token)
{
	struct xsim_watch *w;

	if (!store_path_ok(path))
		return -EINVAL;
	if (h->nwatches == h->cap_watches) {
		unsigned cap = h->cap_watches ? h->cap_watches * 2 : 64;

		w = realloc(h->watches, cap * sizeof(*w));
		if (!w)
			return -ENOMEM;
		h->watches = w;
		h->cap_watches = cap;
	}
	w = &h->watches[h->nwatches];
	w->conn = c;
	w->path = strdup(path);
	w->token = strdup(token);
	if (!w->path || !w->token) {
		free(w->path);
		free(w->token);
		return -ENOMEM;
	}
	h->nwatches++;
	/* xenstored fires every new watch once, so a watcher needs no separate initial scan. */
	store_send_event(h, w, path);
	return 0;
}

static void store_watch_del(struct xsim_hub *h, unsigned i)
{
	free(h->watches[i].path);
	free(h->watches[i].token);
	h->watches[i] = h->watches[--h->nwatches];
}

int store_unwatch(struct xsim_hub *h, struct xsim_conn *c, const char *path, const char *token)
{
	for (unsigned i = 0; i < h->nwatches; i++) {
		struct xsim_watch *w = &h->watches[i];

		if (w->conn == c && strcmp(w->path, path) == 0 && strcmp(w->token, token) == 0) {
			store_watch_del(h, i);
			return 0;
		}
	}
	return -ENOENT;
}

void store_drop_conn(struct xsim_hub *h, struct xsim_conn *c)
{
	for (unsigned i = h->nwatches; i-- > 0;)
		if (h->watches[i].conn == c)
			store_watch_del(h, i);
}

void store_free(struct xsim_hub *h)
{
	while (h->nwatches)
		store_watch_del(h, h->nwatches - 1);
	for (unsigned i = 0; i < h->nnodes; i++) {
		free(h->nodes[i].path);
		free(h->nodes[i].val);
	}
	free(h->nodes);
	free(h->watches);
	h->nodes = NULL;
	h->watches = NULL;
	h->nnodes = h->cap_nodes = h->cap_watches = 0;
}
