/*
 * The guest's state as text, JSON or Prometheus metrics (daemon/report.h).
 *
 * report_walk() visits the guest once: the instance, the Xen side's counters, then each device
 * (registers, its type's counters, its queues, its console ports). Every number comes from a
 * field table (name, help, where it lives in a stats struct, counter or gauge), and a renderer
 * (struct rep_ops) turns scopes and numbers into one format. A new counter is one table line.
 */
#include "daemon/report.h"

#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "daemon/guest.h"
#include "devices/blk.h"
#include "devices/console.h"
#include "devices/device.h"
#include "devices/net.h"
#include "devices/virtio_mmio.h"
#include "devices/vsock.h"
#include "ioreq/xen.h"
#include "ioreq/xen_stats.h"
#include "lib/util.h"

/* ---- sbuf ---- */

void sbuf_init(struct sbuf *b, size_t max)
{
	*b = (struct sbuf){ .max = max };
}

void sbuf_vprintf(struct sbuf *b, const char *fmt, va_list ap)
{
	va_list aq;
	int n;

	if (b->overflow)
		return;
	va_copy(aq, ap);
	n = vsnprintf(b->buf ? b->buf + b->len : NULL, b->buf ? b->cap - b->len : 0, fmt, aq);
	va_end(aq);
	if (n < 0)
		return;
	if (!b->buf || b->len + (size_t)n >= b->cap) {
		size_t want = b->len + (size_t)n + 1, cap = b->cap ? b->cap : 4096;
		char *p;

		while (cap < want)
			cap *= 2;
		if (want > b->max || !(p = realloc(b->buf, cap))) {
			b->overflow = true;
			return;
		}
		b->buf = p;
		b->cap = cap;
		vsnprintf(b->buf + b->len, b->cap - b->len, fmt, ap);
	}
	b->len += (size_t)n;
}

void sbuf_printf(struct sbuf *b, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	sbuf_vprintf(b, fmt, ap);
	va_end(ap);
}

void sbuf_json_str(struct sbuf *b, const char *s)
{
	for (; *s; s++) {
		unsigned char c = (unsigned char)*s;

		if (c == '"' || c == '\\')
			sbuf_printf(b, "\\%c", c);
		else if (c < 0x20 || c == 0x7f)
			sbuf_printf(b, "\\u%04x", c);
		else
			sbuf_printf(b, "%c", c);
	}
}

void sbuf_free(struct sbuf *b)
{
	free(b->buf);
	*b = (struct sbuf){ .max = b->max };
}

/* ---- what is reported ---- */

enum rep_kind { REP_GAUGE, REP_COUNTER };

/* One number in a stats struct. */
struct rep_field {
	const char *name;
	const char *help;
	size_t off;
	unsigned size;               /* 1 (bool), 2, 4 or 8 bytes */
	enum rep_kind kind;
};

#define FIELD(type, member, name, kind, help) \
	{ name, help, offsetof(type, member), sizeof(((type *)0)->member), kind }
#define XS(m, name, kind, help) FIELD(struct xen_guest_stats, m, name, kind, help)
#define BS(m, kind, help) FIELD(struct blk_stats, m, #m, kind, help)
#define NS(m, kind, help) FIELD(struct net_stats, m, #m, kind, help)
#define CS(m, name, help) FIELD(struct console_stats, m, name, REP_COUNTER, help)
#define QS(m, name, kind, help) FIELD(struct virtqueue, m, name, kind, help)

static const struct rep_field xen_fields[] = {
	XS(nr_vcpus, "vcpus", REP_GAUGE, "vCPUs of the guest"),
	XS(nr_frames, "ioreq_frames", REP_GAUGE, "ioreq pages mapped (128 vCPU slots each)"),
	XS(ioreqs, "ioreqs", REP_COUNTER, "register accesses passed to the transport"),
	XS(bad_ioreqs, "bad_ioreqs", REP_COUNTER, "malformed ioreqs, answered all-ones or ignored"),
	XS(invalidates, "invalidates", REP_COUNTER, "IOREQ_TYPE_INVALIDATE requests served"),
	XS(spurious, "spurious_events", REP_COUNTER, "events whose vCPU slot held no request"),
	XS(irqs, "irqs", REP_COUNTER, "interrupts raised"),
	XS(irq_errors, "irq_errors", REP_COUNTER, "interrupts Xen refused"),
	XS(fastpath, "fastpath", REP_GAUGE, "1 when notifies and interrupts use privcmd eventfds"),
	XS(fast_queues, "fast_queues", REP_GAUGE, "queues with a privcmd ioeventfd"),
	XS(eventfd_notifies, "eventfd_notifies", REP_COUNTER, "queue notifies through an ioeventfd"),
	XS(irqfd_irqs, "irqfd_irqs", REP_COUNTER, "interrupts raised through an irqfd"),
	XS(left_to_kernel, "left_to_kernel", REP_COUNTER, "requests left for the kernel to claim"),
	XS(maps, "maps", REP_COUNTER, "guest memory map requests"),
	XS(cache_hits, "map_cache_hits", REP_COUNTER, "map requests served by the mapping cache"),
	XS(bucket_maps, "map_cache_misses", REP_COUNTER, "2 MiB buckets foreign-mapped on a miss"),
	XS(evictions, "map_cache_evictions", REP_COUNTER, "buckets evicted from the mapping cache"),
	XS(temp_maps, "temp_maps", REP_COUNTER, "uncached foreign mappings"),
	XS(grant_maps, "grant_maps", REP_COUNTER, "grant mappings"),
	XS(map_failures, "map_failures", REP_COUNTER, "map requests that failed"),
	XS(buckets, "map_buckets", REP_GAUGE, "2 MiB buckets mapped now"),
	XS(max_buckets, "map_buckets_max", REP_GAUGE, "bound of the mapping cache in buckets"),
	XS(premapped, "premapped_bytes", REP_GAUGE, "guest RAM mapped once at start"),
};

static const struct rep_field blk_fields[] = {
	BS(requests, REP_COUNTER, "requests taken from the guest's queues"),
	BS(submits, REP_COUNTER, "io_uring submissions"),
	BS(reaps, REP_COUNTER, "completion batches"),
	BS(bounces, REP_COUNTER, "O_DIRECT requests served through a bounce buffer"),
	BS(errors, REP_COUNTER, "requests completed with an I/O error"),
	BS(drains, REP_COUNTER, "flushes that waited for writes in flight"),
	BS(inflight, REP_GAUGE, "requests the kernel holds now"),
};

static const struct rep_field net_fields[] = {
	NS(rx_frames, REP_COUNTER, "frames delivered to the guest"),
	NS(rx_bytes, REP_COUNTER, "bytes delivered to the guest (without headers)"),
	NS(tx_frames, REP_COUNTER, "frames the guest sent to the tap"),
	NS(tx_bytes, REP_COUNTER, "bytes the guest sent to the tap"),
	NS(rx_buffers, REP_COUNTER, "receive buffers used"),
	NS(rx_starved, REP_COUNTER, "times the guest had no receive buffer"),
	NS(rx_dropped, REP_COUNTER, "frames from the tap that could not be delivered"),
	NS(rx_bad_chains, REP_COUNTER, "receive chains too small for a header"),
	NS(tx_malformed, REP_COUNTER, "guest frames dropped by the checks"),
	NS(tx_errors, REP_COUNTER, "frames the tap refused"),
	NS(tx_eagain, REP_COUNTER, "times the tap was full"),
	NS(link_changes, REP_COUNTER, "link state changes signalled to the guest"),
	NS(ctrl_cmds, REP_COUNTER, "control queue commands"),
	NS(ctrl_errors, REP_COUNTER, "control queue commands refused"),
	NS(active_pairs, REP_GAUGE, "queue pairs in use"),
	NS(link_up, REP_GAUGE, "1 while the guest sees the link up"),
	NS(admin_down, REP_GAUGE, "1 while the link is forced down by xen-virtiodctl"),
	NS(promisc, REP_GAUGE, "1 while the guest asks for promiscuous mode"),
	NS(allmulti, REP_GAUGE, "1 while the guest asks for all multicast"),
};

static const struct rep_field port_fields[] = {
	CS(to_guest, "to_guest_bytes", "bytes delivered to the guest"),
	CS(from_guest, "from_guest_bytes", "bytes the guest wrote"),
	CS(dropped, "dropped_bytes", "guest output lost while nobody read it"),
	CS(attaches, "attaches", "clients attached"),
	CS(emerg, "emerg_bytes", "bytes through the emergency write register"),
};

static const struct rep_field con_ctrl_fields[] = {
	FIELD(struct console_ctrl_stats, bad, "ctrl_bad", REP_COUNTER,
	      "malformed control messages ignored"),
	FIELD(struct console_ctrl_stats, dropped, "ctrl_dropped", REP_COUNTER,
	      "control messages lost to an overflowing queue"),
};

#define VS(m, kind, help) FIELD(struct vsock_stats, m, #m, kind, help)
static const struct rep_field vsock_fields[] = {
	VS(conns, REP_GAUGE, "connections open, host programs still sending CONNECT included"),
	VS(opened, REP_COUNTER, "connections established, either side first"),
	VS(refused, REP_COUNTER, "guest connects refused: no listener, or max_connections"),
	VS(rst_sent, REP_COUNTER, "RST packets given to the guest"),
	VS(rst_dropped, REP_COUNTER, "RSTs lost while the guest gave no receive buffers"),
	VS(bad_packets, REP_COUNTER, "guest packets refused for their header"),
	VS(credit_violations, REP_COUNTER, "connections reset: the guest sent beyond its credit"),
	VS(to_guest, REP_COUNTER, "payload bytes from host programs to the guest"),
	VS(from_guest, REP_COUNTER, "payload bytes from the guest to host programs"),
};

static const struct rep_field queue_fields[] = {
	QS(enabled, "enabled", REP_GAUGE, "1 while the queue is configured"),
	QS(broken, "broken", REP_GAUGE, "1 once the guest broke the ring"),
	QS(num, "size", REP_GAUGE, "queue size the driver chose"),
	QS(last_avail, "avail_idx", REP_GAUGE, "next available ring slot (mod 65536)"),
	QS(used_idx, "used_idx", REP_GAUGE, "used ring index (mod 65536)"),
	QS(inflight, "inflight", REP_GAUGE, "chains the device holds"),
	QS(stat_bad_chains, "bad_chains", REP_COUNTER, "malformed chains seen"),
};

static uint64_t rep_read(const void *base, const struct rep_field *f)
{
	const char *p = (const char *)base + f->off;
	uint64_t v8;
	uint32_t v4;
	uint16_t v2;

	switch (f->size) {
	case 8: memcpy(&v8, p, 8); return v8;
	case 4: memcpy(&v4, p, 4); return v4;
	case 2: memcpy(&v2, p, 2); return v2;
	default: return *(const uint8_t *)p != 0;
	}
}

/* ---- the walk and its renderers ---- */

enum rep_scope { SC_GUEST, SC_DEVICE, SC_QUEUE, SC_PORT, SC_DEPTH };

struct rep {
	const struct rep_ops *ops;
	struct sbuf *out;
	/* labels of the scopes entered */
	const char *guest, *notify, *notify_why;
	uint32_t domid;
	const struct guest_devinfo *dev;
	unsigned queue;
	const char *port;
	/* JSON: the open objects and arrays, innermost last */
	struct json_level {
		bool first;          /* nothing written inside yet */
		bool array;
		enum rep_scope kind; /* an array: of which scope's objects */
	} js[2 * SC_DEPTH];
	unsigned jn;
};

struct rep_ops {
	void (*enter)(struct rep *r, enum rep_scope s);
	void (*leave)(struct rep *r, enum rep_scope s);
	void (*num)(struct rep *r, enum rep_scope s, const char *group, const struct rep_field *f,
		    uint64_t v);
	/* number: v is a decimal number (JSON writes it unquoted) */
	void (*str)(struct rep *r, enum rep_scope s, const char *name, const char *v, bool number);
};

static void rep_fields(struct rep *r, enum rep_scope s, const char *group, const void *base,
		       const struct rep_field *f, size_t n)
{
	for (size_t i = 0; i < n; i++)
		r->ops->num(r, s, group, &f[i], rep_read(base, &f[i]));
}

static void rep_console_ports(struct rep *r, struct vdev *d)
{
	struct console_stats st;

	for (unsigned p = 0; console_get_stats(d, p, &st) == 0; p++) {
		r->port = console_port_name(d, p);
		r->ops->enter(r, SC_PORT);
		r->ops->str(r, SC_PORT, "port", r->port, false);
		rep_fields(r, SC_PORT, "console_port", &st, port_fields, ARRAY_SIZE(port_fields));
		r->ops->leave(r, SC_PORT);
	}
}

static void rep_device(struct rep *r, const struct guest_devinfo *di)
{
	static const struct rep_field status = { "status", "the device's Status register", 0, 4,
						 REP_GAUGE };
	struct vdev *d = di->dev;
	const struct blk_stats *bs = blk_get_stats(d);
	struct console_ctrl_stats cs;
	struct vsock_stats vs;
	struct net_stats ns;
	char buf[32];

	r->dev = di;
	r->ops->enter(r, SC_DEVICE);
	r->ops->str(r, SC_DEVICE, "type", di->type, false);
	r->ops->str(r, SC_DEVICE, "name", di->name, false);
	snprintf(buf, sizeof(buf), "0x%08" PRIx64, di->base);
	r->ops->str(r, SC_DEVICE, "mmio", buf, false);
	snprintf(buf, sizeof(buf), "%" PRIu32, di->irq);
	r->ops->str(r, SC_DEVICE, "irq", buf, true);
	snprintf(buf, sizeof(buf), "0x%016" PRIx64, d->features);
	r->ops->str(r, SC_DEVICE, "features", buf, false);
	r->ops->num(r, SC_DEVICE, "device", &status, vdev_status(d));
	if (bs)
		rep_fields(r, SC_DEVICE, "block", bs, blk_fields, ARRAY_SIZE(blk_fields));
	if (net_get_stats(d, &ns)) {
		r->ops->str(r, SC_DEVICE, "tap", ns.ifname, false);
		rep_fields(r, SC_DEVICE, "net", &ns, net_fields, ARRAY_SIZE(net_fields));
	}
	if (console_get_ctrl_stats(d, &cs) == 0)
		rep_fields(r, SC_DEVICE, "console", &cs, con_ctrl_fields, ARRAY_SIZE(con_ctrl_fields));
	if (vsock_get_stats(d, &vs) == 0)
		rep_fields(r, SC_DEVICE, "vsock", &vs, vsock_fields, ARRAY_SIZE(vsock_fields));
	for (unsigned q = 0; d->vqs && q < d->num_queues; q++) {
		r->queue = q;
		r->ops->enter(r, SC_QUEUE);
		rep_fields(r, SC_QUEUE, "queue", &d->vqs[q], queue_fields, ARRAY_SIZE(queue_fields));
		r->ops->leave(r, SC_QUEUE);
	}
	rep_console_ports(r, d);
	r->ops->leave(r, SC_DEVICE);
}

static void rep_walk(struct rep *r, struct guest *g)
{
	struct xen_guest_stats xs;
	struct guest_devinfo di;
	char buf[32];

	r->guest = guest_name(g);
	r->domid = guest_domid(g);
	r->notify = xen_guest_notify_path(guest_xen(g), &r->notify_why) ? "privcmd" : "ioreq";
	r->ops->enter(r, SC_GUEST);
	r->ops->str(r, SC_GUEST, "guest", r->guest, false);
	snprintf(buf, sizeof(buf), "%" PRIu32, r->domid);
	r->ops->str(r, SC_GUEST, "domid", buf, true);
	snprintf(buf, sizeof(buf), "%ld", (long)getpid());
	r->ops->str(r, SC_GUEST, "pid", buf, true);
	r->ops->str(r, SC_GUEST, "version", XVD_VERSION, false);
	r->ops->str(r, SC_GUEST, "notify_path", r->notify, false);
	r->ops->str(r, SC_GUEST, "notify_reason", r->notify_why ? r->notify_why : "", false);
	xen_guest_get_stats(guest_xen(g), &xs);
	rep_fields(r, SC_GUEST, "xen", &xs, xen_fields, ARRAY_SIZE(xen_fields));
	for (unsigned i = 0; i < guest_device_count(g); i++)
		if (guest_device_info(g, i, &di))
			rep_device(r, &di);
	r->ops->leave(r, SC_GUEST);
}

/* ---- text: one line per scope, indented, key=value ---- */

static void text_enter(struct rep *r, enum rep_scope s)
{
	switch (s) {
	case SC_GUEST: sbuf_printf(r->out, "guest %s:", r->guest); break;
	case SC_DEVICE:
		sbuf_printf(r->out, "\ndevice %s%s%s:", r->dev->type, r->dev->name[0] ? " " : "",
			    r->dev->name);
		break;
	case SC_QUEUE: sbuf_printf(r->out, "\n  queue %u:", r->queue); break;
	case SC_PORT: sbuf_printf(r->out, "\n  port %s:", r->port[0] ? r->port : "0"); break;
	default: break;
	}
}

static void text_leave(struct rep *r, enum rep_scope s)
{
	if (s == SC_GUEST)
		sbuf_printf(r->out, "\n");
}

static void text_num(struct rep *r, enum rep_scope s, const char *group,
		     const struct rep_field *f, uint64_t v)
{
	(void)s;
	(void)group;
	if (strcmp(f->name, "status") == 0)
		sbuf_printf(r->out, " %s=0x%02" PRIx64, f->name, v);
	else
		sbuf_printf(r->out, " %s=%" PRIu64, f->name, v);
}

static void text_str(struct rep *r, enum rep_scope s, const char *name, const char *v,
		     bool number)
{
	(void)number;
	/* The scope's title already names these. */
	if ((s == SC_DEVICE && (!strcmp(name, "type") || !strcmp(name, "name"))) ||
	    (s == SC_GUEST && !strcmp(name, "guest")) || s == SC_PORT)
		return;
	sbuf_printf(r->out, " %s=%s", name, v[0] ? v : "-");
	/* The instance's own line ends before its counters. */
	if (s == SC_GUEST && strcmp(name, "notify_reason") == 0)
		sbuf_printf(r->out, "\nxen:");
}

static const struct rep_ops text_ops = { text_enter, text_leave, text_num, text_str };

/* ---- JSON: one object; devices, queues and ports as arrays of objects ---- */

static const char *const json_array_key[SC_DEPTH] = { NULL, "devices", "queues", "ports" };

/* A comma before every member but the first of the innermost open object or array. */
static void json_item(struct rep *r)
{
	struct json_level *t = &r->js[r->jn - 1];

	if (!t->first)
		sbuf_printf(r->out, ",");
	t->first = false;
}

static void json_open(struct rep *r, char ch, bool array, enum rep_scope kind)
{
	sbuf_printf(r->out, "%c", ch);
	if (r->jn < ARRAY_SIZE(r->js))
		r->js[r->jn++] = (struct json_level){ .first = true, .array = array, .kind = kind };
}

static void json_close(struct rep *r)
{
	if (r->jn)
		sbuf_printf(r->out, "%c", r->js[--r->jn].array ? ']' : '}');
}

static void json_enter(struct rep *r, enum rep_scope s)
{
	if (s != SC_GUEST) {
		/* Inside the parent's object: its array of this kind, opened on the first child. */
		if (r->js[r->jn - 1].array && r->js[r->jn - 1].kind != s)
			json_close(r);
		if (!r->js[r->jn - 1].array) {
			json_item(r);
			sbuf_printf(r->out, "\"%s\":", json_array_key[s]);
			json_open(r, '[', true, s);
		}
		json_item(r);
	}
	json_open(r, '{', false, s);
}

static void json_leave(struct rep *r, enum rep_scope s)
{
	if (r->js[r->jn - 1].array)
		json_close(r);     /* the last child array */
	json_close(r);
	if (s == SC_GUEST)
		sbuf_printf(r->out, "\n");
}

/* A key of the scope's own object: a child array still open ends first. */
static void json_key(struct rep *r, const char *name, bool quote)
{
	if (r->js[r->jn - 1].array)
		json_close(r);
	json_item(r);
	sbuf_printf(r->out, quote ? "\"%s\":\"" : "\"%s\":", name);
}

static void json_num(struct rep *r, enum rep_scope s, const char *group,
		     const struct rep_field *f, uint64_t v)
{
	(void)s;
	(void)group;
	json_key(r, f->name, false);
	sbuf_printf(r->out, "%" PRIu64, v);
}

static void json_str(struct rep *r, enum rep_scope s, const char *name, const char *v,
		     bool number)
{
	(void)s;
	json_key(r, name, !number);
	if (number) {
		sbuf_printf(r->out, "%s", v);
		return;
	}
	sbuf_json_str(r->out, v);
	sbuf_printf(r->out, "\"");
}

static const struct rep_ops json_ops = { json_enter, json_leave, json_num, json_str };

/* ---- Prometheus text exposition ---- */

/* Label values: backslash, double quote and newline escaped (the format's rules). */
static void prom_label(struct sbuf *b, const char *name, const char *v)
{
	sbuf_printf(b, "%s=\"", name);
	for (; *v; v++) {
		if (*v == '\\' || *v == '"')
			sbuf_printf(b, "\\%c", *v);
		else if (*v == '\n')
			sbuf_printf(b, "\\n");
		else
			sbuf_printf(b, "%c", *v);
	}
	sbuf_printf(b, "\"");
}

/* The scope's labels, "{" included, "}" not. */
static void prom_labels(struct rep *r, enum rep_scope s)
{
	char q[16];

	sbuf_printf(r->out, "{");
	prom_label(r->out, "guest", r->guest);
	if (s >= SC_DEVICE) {
		sbuf_printf(r->out, ",");
		prom_label(r->out, "type", r->dev->type);
		sbuf_printf(r->out, ",");
		prom_label(r->out, "device", r->dev->name);
	}
	if (s == SC_QUEUE) {
		snprintf(q, sizeof(q), "%u", r->queue);
		sbuf_printf(r->out, ",");
		prom_label(r->out, "queue", q);
	}
	if (s == SC_PORT) {
		sbuf_printf(r->out, ",");
		prom_label(r->out, "port", r->port);
	}
}

static void prom_enter(struct rep *r, enum rep_scope s)
{
	char v[32];

	if (s == SC_GUEST) {
		sbuf_printf(r->out, "# HELP xen_virtiod_instance_info one xen-virtiod instance\n"
			    "# TYPE xen_virtiod_instance_info gauge\nxen_virtiod_instance_info");
		prom_labels(r, SC_GUEST);
		snprintf(v, sizeof(v), "%" PRIu32, r->domid);
		sbuf_printf(r->out, ",");
		prom_label(r->out, "domid", v);
		sbuf_printf(r->out, ",");
		prom_label(r->out, "version", XVD_VERSION);
		sbuf_printf(r->out, ",");
		prom_label(r->out, "notify_path", r->notify);
		sbuf_printf(r->out, "} 1\n");
	} else if (s == SC_DEVICE) {
		sbuf_printf(r->out, "# HELP xen_virtiod_device_info one virtio device\n"
			    "# TYPE xen_virtiod_device_info gauge\nxen_virtiod_device_info");
		prom_labels(r, SC_DEVICE);
		snprintf(v, sizeof(v), "0x%08" PRIx64, r->dev->base);
		sbuf_printf(r->out, ",");
		prom_label(r->out, "mmio", v);
		snprintf(v, sizeof(v), "%" PRIu32, r->dev->irq);
		sbuf_printf(r->out, ",");
		prom_label(r->out, "irq", v);
		sbuf_printf(r->out, "} 1\n");
	}
}

static void prom_leave(struct rep *r, enum rep_scope s)
{
	(void)r;
	(void)s;
}

static void prom_num(struct rep *r, enum rep_scope s, const char *group,
		     const struct rep_field *f, uint64_t v)
{
	const char *sfx = f->kind == REP_COUNTER ? "_total" : "";

	sbuf_printf(r->out, "# HELP xen_virtiod_%s_%s%s %s\n# TYPE xen_virtiod_%s_%s%s %s\n"
		    "xen_virtiod_%s_%s%s", group, f->name, sfx, f->help, group, f->name, sfx,
		    f->kind == REP_COUNTER ? "counter" : "gauge", group, f->name, sfx);
	prom_labels(r, s);
	sbuf_printf(r->out, "} %" PRIu64 "\n", v);
}

static void prom_str(struct rep *r, enum rep_scope s, const char *name, const char *v,
		     bool number)
{
	(void)r;
	(void)s;
	(void)name;
	(void)v;
	(void)number;
}

static const struct rep_ops prom_ops = { prom_enter, prom_leave, prom_num, prom_str };

void report_guest(struct guest *g, enum report_format f, struct sbuf *out)
{
	struct rep r = { .out = out };

	r.ops = f == REPORT_JSON ? &json_ops : f == REPORT_METRICS ? &prom_ops : &text_ops;
	rep_walk(&r, g);
}
