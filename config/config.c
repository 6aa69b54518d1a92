/*
 * The INI loader: inih splits "key = value" lines, everything else is ours.
 *
 * inih (Debian's build) is compiled without INI_HANDLER_LINENO, reads at most INI_MAX_LINE - 1
 * characters per line with fgets (so a longer line is silently cut in two), treats an indented
 * line as the continuation of the previous value, and does not call the handler for a section
 * without keys. So we hand it our own reader: it reads whole lines with getline, counts them,
 * rejects over-long ones, parses section headers itself and only passes key lines (left-trimmed,
 * so never a continuation) on to inih. Every problem is collected, sorted by line and reported as
 * "file:line: key: message".
 */
#include "config/config.h"

#include "lib/log.h"
#include "lib/platform.h"
#include "lib/util.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <ini.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>


#define KEY_SLOTS      24      /* keys per section, for duplicate detection */
#define ERR_MAX        200     /* errors kept; the rest are counted */
#define LABEL_MAX      96
#define DOMID_LIMIT    0x7FF0u /* Xen's DOMID_FIRST_RESERVED: domids are below it */
#define I2C_ADDR_MIN   0x03u   /* 0x00-0x02 and 0x78-0x7f are reserved 7-bit addresses */
#define I2C_ADDR_MAX   0x77u
#define SOCKET_PATH_MAX (sizeof(((struct sockaddr_un *)0)->sun_path))

struct parser;

enum key_type { KT_BOOL, KT_UINT, KT_PATH, KT_ENUM, KT_FUNC };

#define KEY_REPEAT 0x1u   /* may appear more than once */
#define KEY_POW2   0x2u   /* KT_UINT: a power of two */

struct key_def {
	const char *name;
	enum key_type type;
	unsigned flags;
	size_t off, size;               /* field in the section's struct */
	uint64_t min, max;              /* KT_UINT */
	const char *const *words;       /* KT_ENUM: NULL-terminated, index = value */
	int (*parse)(struct parser *p, void *obj, const char *val);   /* KT_FUNC */
};

#define KEY_BOOL(n, T, f)            { .name = n, .type = KT_BOOL, FIELD_INIT(T, f) }
#define KEY_UINT(n, T, f, lo, hi, fl) \
	{ .name = n, .type = KT_UINT, .flags = fl, FIELD_INIT(T, f), .min = lo, .max = hi }
#define KEY_PATH(n, T, f)            { .name = n, .type = KT_PATH, FIELD_INIT(T, f) }
#define KEY_ENUM(n, T, f, w)         { .name = n, .type = KT_ENUM, FIELD_INIT(T, f), .words = w }
#define KEY_FUNC(n, fn, fl)          { .name = n, .type = KT_FUNC, .flags = fl, .parse = fn }
/* DEVT: one macro argument for the device struct. */
#define DEVT struct config_device
#define FIELD_INIT(T, f)             .off = offsetof(T, f), .size = sizeof(((T *)0)->f)

/* What the parser remembers about one section beyond the config structs themselves. */
struct sect_aux {
	int seen[KEY_SLOTS];                    /* line of each key's first occurrence */
	int sim_line[CONFIG_I2C_SIMS];
	char i2c_file[CONFIG_PATH_MAX];         /* i2c file =, resolved at the section's end */
	/* gpio loopback = OUT:IN as written, resolved at the section's end (lines may follow). */
	unsigned ngpio_loops;
	char gpio_loop[CONFIG_GPIO_LOOPS][2 * CONFIG_GPIO_NAME_MAX];
	int gpio_loop_line[CONFIG_GPIO_LOOPS];
};

struct sect_type {
	const char *name;
	enum config_dev_type type;
	bool bare_ok;                           /* [rng] needs no quoted name */
	const struct key_def *keys;
	size_t nkeys;
	void (*defaults)(struct config_device *d);
	void (*finish)(struct parser *p, struct config_device *d, struct sect_aux *aux);
};

enum sect_kind {
	SECT_NONE,      /* before the first section header */
	SECT_SKIP,      /* a broken header, already reported: its keys are ignored */
	SECT_GUEST,
	SECT_DEVICE,
};

struct cfg_err {
	int line;
	unsigned seq;           /* keeps messages of one line in the order found */
	char *text;
};

struct parser {
	const char *file;
	struct config *cfg;
	FILE *fp;
	char *buf;
	size_t cap;
	int lineno;
	bool any_content;       /* a section or key line was seen */

	/* The current section. */
	enum sect_kind kind;
	const struct sect_type *st;     /* SECT_DEVICE */
	const struct key_def *keys;
	size_t nkeys;
	void *obj;                      /* struct config_guest * or struct config_device * */
	struct sect_aux *aux;
	char label[LABEL_MAX];          /* [block "root"] */
	int sect_line;
	const char *key;                /* the key being parsed, for messages */

	int guest_line;                 /* first [guest] header, 0 when none */
	struct sect_aux guest_aux;
	struct sect_aux dev_aux[CONFIG_MAX_DEVICES];
	/* Duplicate sections are still parsed (to report their errors) but not kept. */
	struct sect_aux scratch_aux;
	struct config_guest scratch_guest;
	struct config_device scratch_dev;

	struct cfg_err *errs;
	size_t nerrs;
	size_t dropped;
};

/* ---- error collection ------------------------------------------------------------------ */

static void cfg_verror(struct parser *p, int line, const char *key, const char *fmt, va_list ap)
{
	char msg[512];
	if (p->nerrs == ERR_MAX) {
		p->dropped++;
		return;
	}
	vsnprintf(msg, sizeof(msg), fmt, ap);
	int n = snprintf(NULL, 0, "%s:%d: %s: %s", p->file, line, key, msg);
	char *text = n < 0 ? NULL : malloc((size_t)n + 1);
	if (!text) {
		p->dropped++;
		return;
	}
	snprintf(text, (size_t)n + 1, "%s:%d: %s: %s", p->file, line, key, msg);
	p->errs[p->nerrs] = (struct cfg_err){ .line = line, .seq = (unsigned)p->nerrs, .text = text };
	p->nerrs++;
}

__attribute__((format(printf, 4, 5)))
static void cfg_error(struct parser *p, int line, const char *key, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	cfg_verror(p, line, key, fmt, ap);
	va_end(ap);
}

/* An error about the value of the key being parsed, on the current line. */
__attribute__((format(printf, 2, 3)))
static int key_error(struct parser *p, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	cfg_verror(p, p->lineno, p->key, fmt, ap);
	va_end(ap);
	return -1;
}

static int err_cmp(const void *a, const void *b)
{
	const struct cfg_err *x = a, *y = b;
	if (x->line != y->line)
		return x->line < y->line ? -1 : 1;
	return x->seq < y->seq ? -1 : x->seq > y->seq;
}

/* Bytes of the line that says how many errors did not fit (NUL excluded). */
static size_t errs_more_len(const struct parser *p, size_t more)
{
	int n = snprintf(NULL, 0, "%s:%d: config: %zu more errors not shown\n", p->file, p->lineno,
			 more);
	return n < 0 ? 0 : (size_t)n;
}

/*
 * Sorted by line, one per line, always NUL-terminated. Only whole lines: when they do not all
 * fit in errlen, the last one says how many more there were (a line cut in the middle would
 * break the "file:line: key: message" promise).
 */
static void errs_emit(struct parser *p, char *err, size_t errlen)
{
	size_t used = 0, total = 0, i;

	qsort(p->errs, p->nerrs, sizeof(p->errs[0]), err_cmp);
	if (!err || errlen == 0)
		return;
	err[0] = '\0';
	for (i = 0; i < p->nerrs; i++)
		total += strlen(p->errs[i].text) + 1;
	/* Room kept for the closing count unless everything fits. */
	size_t reserve = p->dropped || total >= errlen ? errs_more_len(p, p->nerrs + p->dropped) : 0;

	for (i = 0; i < p->nerrs; i++) {
		size_t n = strlen(p->errs[i].text) + 1;

		if (used + n + reserve >= errlen)
			break;
		memcpy(err + used, p->errs[i].text, n - 1);
		err[used + n - 1] = '\n';
		used += n;
		err[used] = '\0';
	}
	size_t more = p->nerrs - i + p->dropped;

	if (more && used + errs_more_len(p, more) < errlen)
		snprintf(err + used, errlen - used, "%s:%d: config: %zu more errors not shown\n",
			 p->file, p->lineno, more);
}

static void errs_free(struct parser *p)
{
	for (size_t i = 0; i < p->nerrs; i++)
		free(p->errs[i].text);
	free(p->errs);
}

/* ---- value parsers --------------------------------------------------------------------- */

/* Decimal or 0x-hexadecimal, no sign, no trailing text. */
static int parse_u64(const char *s, uint64_t *out)
{
	int base = 10;
	uint64_t v = 0;
	if (s[0] == '0' && (s[1] == 'x' || s[1] == 'X')) {
		base = 16;
		s += 2;
	}
	if (*s == '\0')
		return -1;
	for (; *s; s++) {
		int d;
		if (isdigit((unsigned char)*s))
			d = *s - '0';
		else if (base == 16 && isxdigit((unsigned char)*s))
			d = tolower((unsigned char)*s) - 'a' + 10;
		else
			return -1;
		if (v > (UINT64_MAX - (uint64_t)d) / (uint64_t)base)
			return -2;
		v = v * (uint64_t)base + (uint64_t)d;
	}
	*out = v;
	return 0;
}

/* hexwidth: digits of the range shown in hexadecimal, 0 for decimal. */
static int parse_uint_range(struct parser *p, const char *val, uint64_t min, uint64_t max,
			    int hexwidth, uint64_t *out)
{
	uint64_t v = 0;
	int rc = parse_u64(val, &v);
	if (rc == -1)
		return key_error(p, "'%s' is not a number (decimal or 0x hexadecimal)", val);
	if (rc < 0 || v < min || v > max) {
		if (hexwidth)
			return key_error(p, "%s is out of range (0x%0*" PRIx64 "..0x%0*" PRIx64 ")",
					 val, hexwidth, min, hexwidth, max);
		return key_error(p, "%s is out of range (%" PRIu64 "..%" PRIu64 ")", val, min, max);
	}
	*out = v;
	return 0;
}

static int parse_bool(struct parser *p, const char *val, bool *out)
{
	static const char *const yes[] = { "yes", "true", "on", "1" };
	static const char *const no[] = { "no", "false", "off", "0" };
	for (size_t i = 0; i < ARRAY_SIZE(yes); i++) {
		if (strcasecmp(val, yes[i]) == 0) {
			*out = true;
			return 0;
		}
		if (strcasecmp(val, no[i]) == 0) {
			*out = false;
			return 0;
		}
	}
	return key_error(p, "'%s' is not a boolean (yes/no, true/false, on/off, 1/0)", val);
}

static int copy_str(struct parser *p, const char *val, char *dst, size_t size)
{
	size_t len = strlen(val);
	if (len == 0)
		return key_error(p, "missing value");
	if (len >= size)
		return key_error(p, "too long (%zu characters, at most %zu)", len, size - 1);
	memcpy(dst, val, len + 1);
	return 0;
}

static int copy_path(struct parser *p, const char *val, char *dst, size_t size)
{
	if (val[0] != '/' && val[0] != '\0')
		return key_error(p, "'%s' is not an absolute path", val);
	return copy_str(p, val, dst, size);
}

/* A unix socket path must also fit sockaddr_un. */
static int copy_socket_path(struct parser *p, const char *val, char *dst, size_t size)
{
	if (copy_path(p, val, dst, size) < 0)
		return -1;
	if (strlen(val) >= SOCKET_PATH_MAX) {
		dst[0] = '\0';
		return key_error(p, "socket path too long (at most %zu characters)",
				 SOCKET_PATH_MAX - 1);
	}
	return 0;
}

static bool name_char_ok(char c)
{
	return isalnum((unsigned char)c) || c == '.' || c == '_' || c == '-';
}

static bool name_ok(const char *s, size_t len)
{
	for (size_t i = 0; i < len; i++)
		if (!name_char_ok(s[i]))
			return false;
	return len > 0;
}

static void store_uint(void *field, size_t size, uint64_t v)
{
	switch (size) {
	case 1: { uint8_t x = (uint8_t)v; memcpy(field, &x, 1); break; }
	case 2: { uint16_t x = (uint16_t)v; memcpy(field, &x, 2); break; }
	case 4: { uint32_t x = (uint32_t)v; memcpy(field, &x, 4); break; }
	default: memcpy(field, &v, 8); break;
	}
}

static int parse_enum(struct parser *p, const struct key_def *k, const char *val, void *field)
{
	char list[128] = "";
	for (size_t i = 0; k->words[i]; i++) {
		if (strcmp(val, k->words[i]) == 0) {
			store_uint(field, k->size, i);
			return 0;
		}
		snprintf(list + strlen(list), sizeof(list) - strlen(list), "%s%s",
			 i ? ", " : "", k->words[i]);
	}
	return key_error(p, "'%s' is not one of: %s", val, list);
}

static int parse_uint_key(struct parser *p, const struct key_def *k, const char *val, void *field)
{
	uint64_t v;
	if (parse_uint_range(p, val, k->min, k->max, 0, &v) < 0)
		return -1;
	if ((k->flags & KEY_POW2) && (v & (v - 1)) != 0)
		return key_error(p, "%s is not a power of two", val);
	store_uint(field, k->size, v);
	return 0;
}

static int key_apply(struct parser *p, const struct key_def *k, void *obj, const char *val)
{
	void *field = (char *)obj + k->off;
	switch (k->type) {
	case KT_BOOL: return parse_bool(p, val, field);
	case KT_UINT: return parse_uint_key(p, k, val, field);
	case KT_PATH: return copy_path(p, val, field, k->size);
	case KT_ENUM: return parse_enum(p, k, val, field);
	case KT_FUNC: return k->parse(p, obj, val);
	}
	return -1;
}

/* ---- [guest] --------------------------------------------------------------------------- */

static int guest_name(struct parser *p, void *obj, const char *val)
{
	struct config_guest *g = obj;
	for (const char *c = val; *c; c++)
		if (!isgraph((unsigned char)*c) || *c == '/')
			return key_error(p, "'%s': a domain name has no spaces, '/' or control "
					 "characters", val);
	return copy_str(p, val, g->name, sizeof(g->name));
}

static int guest_log_level(struct parser *p, void *obj, const char *val)
{
	struct config_guest *g = obj;
	int level = log_parse_level(val);
	if (level < 0)
		return key_error(p, "'%s' is not one of: error, warning, notice, info, debug", val);
	g->log_level = level;
	return 0;
}

static const char *const discovery_words[] = { "xenstore", "explicit", NULL };
static const char *const fastpath_words[] = { "auto", "on", "off", NULL };
static const struct key_def fastpath_key =
	KEY_ENUM("notify_fastpath", struct config_guest, notify_fastpath, fastpath_words);

/* The enum, plus its line: `on` without kernel support fails at start and names this line. */
static int guest_notify_fastpath(struct parser *p, void *obj, const char *val)
{
	struct config_guest *g = obj;

	g->notify_fastpath_line = p->lineno;
	return parse_enum(p, &fastpath_key, val, &g->notify_fastpath);
}

static const struct key_def guest_keys[] = {
	KEY_FUNC("name", guest_name, 0),
	KEY_UINT("domid", struct config_guest, domid, 1, DOMID_LIMIT - 1, 0),
	KEY_ENUM("discovery", struct config_guest, discovery, discovery_words),
	KEY_UINT("backend_domid", struct config_guest, backend_domid, 0, DOMID_LIMIT - 1, 0),
	KEY_BOOL("grant_usage", struct config_guest, grant_usage),
	KEY_UINT("map_cache", struct config_guest, map_cache_mib, 1, 65536, 0),
	KEY_BOOL("premap", struct config_guest, premap),
	KEY_FUNC("log_level", guest_log_level, 0),
	KEY_FUNC("notify_fastpath", guest_notify_fastpath, 0),
};

static void guest_defaults(struct config_guest *g)
{
	memset(g, 0, sizeof(*g));
	g->domid = -1;
	g->discovery = DISCOVERY_XENSTORE;
	g->map_cache_mib = 64;
	g->log_level = -1;
}

/* ---- keys every device has ------------------------------------------------------------- */

static const char *dev_label(const struct config_device *d, char *buf, size_t size)
{
	if (d->name[0])
		snprintf(buf, size, "[%s \"%s\"]", config_dev_type_name(d->type), d->name);
	else
		snprintf(buf, size, "[%s]", config_dev_type_name(d->type));
	return buf;
}

static const struct config_device *dev_other(struct parser *p, const struct config_device *self,
					     bool (*match)(const struct config_device *, uint64_t),
					     uint64_t v)
{
	for (unsigned i = 0; i < p->cfg->ndevices; i++) {
		const struct config_device *d = &p->cfg->devices[i];
		if (d != self && match(d, v))
			return d;
	}
	return NULL;
}

static bool mmio_match(const struct config_device *d, uint64_t v) { return d->mmio == v; }
static bool irq_match(const struct config_device *d, uint64_t v) { return d->irq == v; }

static int dev_mmio(struct parser *p, void *obj, const char *val)
{
	struct config_device *d = obj;
	const struct config_device *o;
	char label[LABEL_MAX];
	uint64_t v = 0;
	if (parse_uint_range(p, val, PLATFORM_MMIO_MIN,
			     PLATFORM_MMIO_END - PLATFORM_MMIO_WINDOW, 8, &v) < 0)
		return -1;
	if (v % PLATFORM_MMIO_WINDOW)
		return key_error(p, "%s is not aligned to 0x200", val);
	o = dev_other(p, d, mmio_match, v);
	if (o)
		return key_error(p, "%s is already used by %s (line %d)", val,
				 dev_label(o, label, sizeof(label)), o->line);
	d->mmio = v;
	return 0;
}

static int dev_irq(struct parser *p, void *obj, const char *val)
{
	struct config_device *d = obj;
	const struct config_device *o;
	char label[LABEL_MAX];
	uint64_t v = 0;
	if (parse_uint_range(p, val, PLATFORM_IRQ_MIN, PLATFORM_IRQ_MAX, 0, &v) < 0)
		return -1;
	o = dev_other(p, d, irq_match, v);
	if (o)
		return key_error(p, "SPI %s is already used by %s (line %d)", val,
				 dev_label(o, label, sizeof(label)), o->line);
	d->irq = (uint32_t)v;
	return 0;
}

/* Two sections matching one xenstore device would both drive it. */
static int dev_devid(struct parser *p, void *obj, const char *val)
{
	struct config_device *d = obj;
	char label[LABEL_MAX];
	uint64_t v;
	if (parse_uint_range(p, val, 0, INT32_MAX, 0, &v) < 0)
		return -1;
	for (unsigned i = 0; i < p->cfg->ndevices; i++) {
		const struct config_device *o = &p->cfg->devices[i];
		if (o != d && o->type == d->type && o->devid == (int64_t)v)
			return key_error(p, "%s is already used by %s (line %d)", val,
					 dev_label(o, label, sizeof(label)), o->line);
	}
	d->devid = (int64_t)v;
	return 0;
}

#define DEV_COMMON_KEYS \
	KEY_FUNC("mmio", dev_mmio, 0), \
	KEY_FUNC("irq", dev_irq, 0), \
	KEY_FUNC("devid", dev_devid, 0)

/* ---- [block "NAME"] -------------------------------------------------------------------- */

static int blk_serial(struct parser *p, void *obj, const char *val)
{
	struct config_device *d = obj;
	for (const char *c = val; *c; c++)
		if (!isprint((unsigned char)*c))
			return key_error(p, "only printable ASCII characters are allowed");
	return copy_str(p, val, d->u.block.serial, sizeof(d->u.block.serial));
}

static int blk_vdev(struct parser *p, void *obj, const char *val)
{
	struct config_device *d = obj;
	for (const char *c = val; *c; c++)
		if (!isalnum((unsigned char)*c))
			return key_error(p, "'%s' is not a disk name such as xvda", val);
	return copy_str(p, val, d->u.block.vdev, sizeof(d->u.block.vdev));
}

/*
 * The NBD URI forms we accept (libnbd's nbd_connect_uri takes them): nbd://HOST[:PORT][/EXPORT]
 * and nbd+unix:///[EXPORT]?socket=/ABS/PATH, and their TLS forms nbds:// and nbds+unix://,
 * whose credentials come from the tls_* keys, never from the URI. Checked here so a typo is a
 * configuration error (exit 78), not a server that never answers.
 */
static const char *blk_nbd_tcp_check(const char *rest)
{
	/* An IPv6 literal is bracketed: nbd://[::1]:10809/ */
	const char *close = rest[0] == '[' ? strchr(rest, ']') : NULL;
	size_t hlen = close ? (size_t)(close - rest) + 1 : strcspn(rest, ":/?#");
	const char *port = rest + hlen;

	if (rest[0] == '[' && (!close || close == rest + 1))
		return "an IPv6 address needs its closing ']'";
	if (hlen == 0)
		return "nbd://HOST[:PORT][/EXPORT] needs a host";
	if (*port == ':') {
		uint64_t v = 0;
		char digits[8];
		size_t n = strcspn(port + 1, "/?#");

		if (n == 0 || n >= sizeof(digits))
			return "the port is not a number 1..65535";
		memcpy(digits, port + 1, n);
		digits[n] = '\0';
		if (parse_u64(digits, &v) < 0 || v == 0 || v > 65535 || digits[0] == '0')
			return "the port is not a number 1..65535";
		port += 1 + n;
	}
	if (*port == '?' || *port == '#')
		return "nbd:// URIs take no query (socket= is for nbd+unix)";
	return NULL;
}

static const char *blk_nbd_unix_check(const char *rest)
{
	const char *q = strchr(rest, '?');

	if (rest[0] != '/')
		return "nbd+unix:///[EXPORT]?socket=PATH has no host (three slashes)";
	if (!q || strncmp(q + 1, "socket=", 7) != 0)
		return "nbd+unix:// needs ?socket=PATH (and nothing else in the query)";
	q += 8;
	if (q[0] != '/')
		return "socket= must be an absolute path";
	if (strpbrk(q, "&#?"))
		return "only socket= is allowed in the query";
	if (strlen(q) >= SOCKET_PATH_MAX)
		return "the socket path is too long";
	return NULL;
}

static int blk_nbd(struct parser *p, void *obj, const char *val)
{
	struct config_device *d = obj;
	const char *why = NULL;

	for (const char *c = val; *c; c++)
		if (!isgraph((unsigned char)*c))
			return key_error(p, "'%s': spaces or control characters in a URI", val);
	if (strncmp(val, "nbd://", 6) == 0)
		why = blk_nbd_tcp_check(val + 6);
	else if (strncmp(val, "nbds://", 7) == 0)
		why = blk_nbd_tcp_check(val + 7);
	else if (strncmp(val, "nbd+unix://", 11) == 0)
		why = blk_nbd_unix_check(val + 11);
	else if (strncmp(val, "nbds+unix://", 12) == 0)
		why = blk_nbd_unix_check(val + 12);
	else
		why = "not an NBD URI (nbd[s]://HOST[:PORT][/EXPORT] or "
		      "nbd[s]+unix:///[EXPORT]?socket=PATH)";
	if (why)
		return key_error(p, "'%s': %s", val, why);
	return copy_str(p, val, d->u.block.nbd, sizeof(d->u.block.nbd));
}

/* The PSK identity: a user name, as nbdkit's and qemu's PSK files spell it. */
static int blk_tls_username(struct parser *p, void *obj, const char *val)
{
	struct config_device *d = obj;
	for (const char *c = val; *c; c++)
		if (!isalnum((unsigned char)*c) && !strchr("._-@", *c))
			return key_error(p, "'%s' is not a user name (letters, digits, . _ - @)", val);
	return copy_str(p, val, d->u.block.tls_username, sizeof(d->u.block.tls_username));
}

/*
 * rbd = POOL/IMAGE, POOL/NAMESPACE/IMAGE, either with @SNAP (a read-only snapshot). Checked here
 * so a typo is a configuration error (exit 78); devices/blk_rbd.c splits it the same way.
 */
static int blk_rbd(struct parser *p, void *obj, const char *val)
{
	struct config_device *d = obj;
	const char *at = strchr(val, '@');
	size_t spec = at ? (size_t)(at - val) : strlen(val);
	unsigned parts = 1;
	bool empty = spec == 0 || val[0] == '/' || val[spec - 1] == '/' || (at && !at[1]);

	for (size_t i = 0; i < spec; i++) {
		parts += val[i] == '/';
		empty |= val[i] == '/' && val[i + 1] == '/';
	}
	for (const char *c = val; *c; c++)
		if (!isgraph((unsigned char)*c))
			return key_error(p, "'%s': spaces or control characters", val);
	if (parts < 2 || parts > 3 || empty || (at && strchr(at + 1, '@')))
		return key_error(p, "'%s' is not POOL/IMAGE, POOL/NAMESPACE/IMAGE (with an optional "
				 "@SNAP)", val);
	return copy_str(p, val, d->u.block.rbd, sizeof(d->u.block.rbd));
}

/* ceph_id = the client's id as `ceph --id` takes it ("admin", not "client.admin"). */
static int blk_ceph_id(struct parser *p, void *obj, const char *val)
{
	struct config_device *d = obj;

	if (strncmp(val, "client.", 7) == 0)
		return key_error(p, "'%s': give the id without \"client.\"", val);
	for (const char *c = val; *c; c++)
		if (!isalnum((unsigned char)*c) && !strchr("._-", *c))
			return key_error(p, "'%s' is not a Ceph client id", val);
	return copy_str(p, val, d->u.block.ceph_id, sizeof(d->u.block.ceph_id));
}

static const char *const cache_words[] = { "writeback", "none", NULL };

static const struct key_def block_keys[] = {
	DEV_COMMON_KEYS,
	KEY_PATH("path", DEVT, u.block.path),
	KEY_BOOL("readonly", DEVT, u.block.readonly),
	KEY_ENUM("cache", DEVT, u.block.cache, cache_words),
	KEY_FUNC("serial", blk_serial, 0),
	KEY_UINT("queues", DEVT, u.block.queues, 1, 16, 0),
	KEY_UINT("queue_size", DEVT, u.block.queue_size, 16, 1024, KEY_POW2),
	KEY_BOOL("discard", DEVT, u.block.discard),
	KEY_BOOL("write_zeroes", DEVT, u.block.write_zeroes),
	KEY_FUNC("vdev", blk_vdev, 0),
	KEY_FUNC("nbd", blk_nbd, 0),
	KEY_UINT("io_timeout", DEVT, u.block.io_timeout, 1, 3600, 0),
	KEY_PATH("tls_psk_file", DEVT, u.block.tls_psk_file),
	KEY_PATH("tls_certificates", DEVT, u.block.tls_certificates),
	KEY_FUNC("tls_username", blk_tls_username, 0),
	KEY_FUNC("rbd", blk_rbd, 0),
	KEY_PATH("ceph_conf", DEVT, u.block.ceph_conf),
	KEY_FUNC("ceph_id", blk_ceph_id, 0),
	KEY_PATH("keyring", DEVT, u.block.keyring),
};

static void block_defaults(struct config_device *d)
{
	d->u.block.cache = BLK_CACHE_WRITEBACK;
	d->u.block.queues = 1;
	d->u.block.queue_size = 256;
	d->u.block.discard = true;
	d->u.block.write_zeroes = true;
	d->u.block.io_timeout = 30;
}

/* ---- [net "NAME"] ---------------------------------------------------------------------- */

/* Linux interface names: at most 15 bytes, no '/', ':' or whitespace, not "." or "..". */
static int copy_ifname(struct parser *p, const char *val, char *dst, size_t size)
{
	if (strcmp(val, ".") == 0 || strcmp(val, "..") == 0)
		return key_error(p, "'%s' is not a valid interface name", val);
	for (const char *c = val; *c; c++)
		if (!isgraph((unsigned char)*c) || *c == '/' || *c == ':')
			return key_error(p, "'%s' is not a valid interface name", val);
	return copy_str(p, val, dst, size);
}

static int net_tap(struct parser *p, void *obj, const char *val)
{
	struct config_device *d = obj;
	return copy_ifname(p, val, d->u.net.tap, sizeof(d->u.net.tap));
}

static int net_bridge(struct parser *p, void *obj, const char *val)
{
	struct config_device *d = obj;
	return copy_ifname(p, val, d->u.net.bridge, sizeof(d->u.net.bridge));
}

static int hex_nibble(char c)
{
	if (isdigit((unsigned char)c))
		return c - '0';
	if (isxdigit((unsigned char)c))
		return tolower((unsigned char)c) - 'a' + 10;
	return -1;
}

static int net_mac(struct parser *p, void *obj, const char *val)
{
	struct config_device *d = obj;
	uint8_t mac[6];
	const char *s = val;
	for (int i = 0; i < 6; i++, s += 3) {
		int hi = hex_nibble(s[0]), lo = hi < 0 ? -1 : hex_nibble(s[1]);
		char sep = lo < 0 ? 0 : s[2];
		if (lo < 0 || sep != (i == 5 ? '\0' : ':'))
			return key_error(p, "'%s' is not a MAC address aa:bb:cc:dd:ee:ff", val);
		mac[i] = (uint8_t)(hi << 4 | lo);
	}
	if (mac[0] & 1)
		return key_error(p, "%s is a multicast address", val);
	if (!(mac[0] | mac[1] | mac[2] | mac[3] | mac[4] | mac[5]))
		return key_error(p, "the all-zero address is not valid");
	memcpy(d->u.net.mac, mac, sizeof(mac));
	d->u.net.mac_set = true;
	return 0;
}

static const struct key_def net_keys[] = {
	DEV_COMMON_KEYS,
	KEY_FUNC("tap", net_tap, 0),
	KEY_FUNC("bridge", net_bridge, 0),
	KEY_FUNC("mac", net_mac, 0),
	KEY_UINT("mtu", DEVT, u.net.mtu, 68, 65535, 0),
	KEY_UINT("queues", DEVT, u.net.queues, 1, 8, 0),
	KEY_UINT("queue_size", DEVT, u.net.queue_size, 16, 1024, KEY_POW2),
};

static void net_defaults(struct config_device *d)
{
	d->u.net.mtu = 1500;
	d->u.net.queues = 1;
	d->u.net.queue_size = 256;
}

/* ---- [console "NAME"] ------------------------------------------------------------------ */

/* Two sockets on one path would unlink each other's listener. */
static const char *socket_owner(struct parser *p, const char *path, char *label, size_t size)
{
	for (unsigned i = 0; i < p->cfg->ndevices; i++) {
		const struct config_device *d = &p->cfg->devices[i];
		if ((d->type == DEV_GPIO && strcmp(d->u.gpio.control, path) == 0) ||
		    (d->type == DEV_VSOCK && strcmp(d->u.vsock.socket, path) == 0))
			return dev_label(d, label, size);
		if (d->type != DEV_CONSOLE)
			continue;
		bool used = strcmp(d->u.console.socket, path) == 0;
		for (unsigned j = 0; j < d->u.console.nports; j++)
			used = used || strcmp(d->u.console.ports[j].socket, path) == 0;
		if (used)
			return dev_label(d, label, size);
	}
	return NULL;
}

static int con_socket_unique(struct parser *p, const char *path)
{
	char label[LABEL_MAX];
	const char *owner = socket_owner(p, path, label, sizeof(label));
	if (owner)
		return key_error(p, "%s is already used by %s", path, owner);
	return 0;
}

/* A socket path no other socket of the file uses, into dst. */
static int unique_socket_path(struct parser *p, const char *val, char *dst, size_t size)
{
	if (con_socket_unique(p, val) < 0)
		return -1;
	return copy_socket_path(p, val, dst, size);
}

static int con_socket(struct parser *p, void *obj, const char *val)
{
	struct config_device *d = obj;
	return unique_socket_path(p, val, d->u.console.socket, sizeof(d->u.console.socket));
}

static int con_size(struct parser *p, void *obj, const char *val)
{
	static const char digits[] = "0123456789";
	struct config_device *d = obj;
	size_t nc = strspn(val, digits);
	const char *rows = val + nc + 1;
	size_t nr = val[nc] == 'x' ? strspn(rows, digits) : 0;
	if (nc == 0 || nc > 5 || nr == 0 || nr > 5 || rows[nr] != '\0')
		return key_error(p, "'%s' is not COLSxROWS, as in 80x25", val);
	unsigned long c = strtoul(val, NULL, 10), r = strtoul(rows, NULL, 10);
	if (c < 1 || c > 65535 || r < 1 || r > 65535)
		return key_error(p, "'%s': columns and rows must be 1..65535", val);
	d->u.console.cols = (uint16_t)c;
	d->u.console.rows = (uint16_t)r;
	return 0;
}

/* port = NAME:socket:/path */
static int con_port(struct parser *p, void *obj, const char *val)
{
	struct config_console *c = &((struct config_device *)obj)->u.console;
	static const char kind[] = ":socket:";
	const char *colon = strchr(val, ':');
	size_t nlen = colon ? (size_t)(colon - val) : 0;
	if (!colon || strncmp(colon, kind, strlen(kind)) != 0)
		return key_error(p, "'%s' is not NAME:socket:/path", val);
	if (!name_ok(val, nlen) || nlen >= CONFIG_NAME_MAX)
		return key_error(p, "port name '%.*s' must be 1..%d of A-Z a-z 0-9 . _ -",
				 (int)nlen, val, CONFIG_NAME_MAX - 1);
	if (c->nports == CONFIG_CONSOLE_PORTS)
		return key_error(p, "too many ports (at most %d)", CONFIG_CONSOLE_PORTS);
	for (unsigned i = 0; i < c->nports; i++)
		if (strlen(c->ports[i].name) == nlen && strncmp(c->ports[i].name, val, nlen) == 0)
			return key_error(p, "port name '%.*s' is used twice", (int)nlen, val);
	const char *path = colon + strlen(kind);
	struct config_console_port *port = &c->ports[c->nports];
	if (unique_socket_path(p, path, port->socket, sizeof(port->socket)) < 0)
		return -1;
	memcpy(port->name, val, nlen);
	port->name[nlen] = '\0';
	c->nports++;
	return 0;
}

static const struct key_def console_keys[] = {
	DEV_COMMON_KEYS,
	KEY_FUNC("socket", con_socket, 0),
	KEY_BOOL("pty", DEVT, u.console.pty),
	KEY_PATH("pty_link", DEVT, u.console.pty_link),
	KEY_PATH("log", DEVT, u.console.log),
	KEY_UINT("log_max_size", DEVT, u.console.log_max_kib, 64, 4194304, 0),
	KEY_UINT("log_keep", DEVT, u.console.log_keep, 0, 100, 0),
	KEY_BOOL("stdio", DEVT, u.console.stdio),
	KEY_UINT("ring", DEVT, u.console.ring_kib, 0, 65536, 0),
	KEY_FUNC("size", con_size, 0),
	KEY_FUNC("port", con_port, KEY_REPEAT),
};

static void console_defaults(struct config_device *d)
{
	d->u.console.ring_kib = 64;
	d->u.console.log_max_kib = CONFIG_CONSOLE_LOG_MAX_KIB;
	d->u.console.log_keep = CONFIG_CONSOLE_LOG_KEEP;
}

static int key_line(const struct key_def *keys, size_t nkeys, const struct sect_aux *aux,
		    const char *name)
{
	for (size_t i = 0; i < nkeys; i++)
		if (strcmp(keys[i].name, name) == 0)
			return aux->seen[i];
	return 0;
}

static void console_finish(struct parser *p, struct config_device *d, struct sect_aux *aux)
{
	const struct config_console *c = &d->u.console;
	int line = key_line(console_keys, ARRAY_SIZE(console_keys), aux, "pty_link");
	bool backend_given = key_line(console_keys, ARRAY_SIZE(console_keys), aux, "socket") ||
			     key_line(console_keys, ARRAY_SIZE(console_keys), aux, "log");
	if (!backend_given && !c->pty && !c->stdio)
		cfg_error(p, p->sect_line, p->label,
			  "needs a backend: socket, pty = yes, log or stdio = yes");
	if (line && !c->pty)
		cfg_error(p, line, "pty_link", "needs pty = yes");
}

/* ---- [i2c "NAME"] ---------------------------------------------------------------------- */

static int i2c_addr(struct parser *p, const char *s, uint16_t *out)
{
	uint64_t v;
	if (parse_uint_range(p, s, I2C_ADDR_MIN, I2C_ADDR_MAX, 2, &v) < 0)
		return -1;
	*out = (uint16_t)v;
	return 0;
}

static int i2c_sim_kind(struct parser *p, const char *spec, size_t len, enum config_i2c_sim_kind *k)
{
	if (len == 6 && strncmp(spec, "eeprom", len) == 0)
		*k = I2C_SIM_EEPROM;
	else if (len == 4 && strncmp(spec, "lm75", len) == 0)
		*k = I2C_SIM_LM75;
	else
		return key_error(p, "unknown simulated device '%.*s' (eeprom or lm75)",
				 (int)len, spec);
	return 0;
}

/* sim = eeprom@0x50[:/path] | lm75@0x48 */
static int i2c_sim(struct parser *p, void *obj, const char *val)
{
	struct config_i2c *bus = &((struct config_device *)obj)->u.i2c;
	struct config_i2c_sim sim = { 0 };
	char addr[16];
	const char *at = strchr(val, '@');
	if (!at)
		return key_error(p, "'%s' is not KIND@ADDRESS[:/path]", val);
	if (i2c_sim_kind(p, val, (size_t)(at - val), &sim.kind) < 0)
		return -1;
	const char *colon = strchr(at, ':');
	size_t alen = colon ? (size_t)(colon - at - 1) : strlen(at + 1);
	if (alen == 0 || alen >= sizeof(addr))
		return key_error(p, "'%s' is not KIND@ADDRESS[:/path]", val);
	memcpy(addr, at + 1, alen);
	addr[alen] = '\0';
	if (i2c_addr(p, addr, &sim.addr) < 0)
		return -1;
	if (colon && sim.kind != I2C_SIM_EEPROM)
		return key_error(p, "only an eeprom takes a file");
	if (colon && copy_path(p, colon + 1, sim.file, sizeof(sim.file)) < 0)
		return -1;
	for (unsigned i = 0; i < bus->nsims; i++)
		if (bus->sims[i].addr == sim.addr)
			return key_error(p, "address %s is already used (line %d)", addr,
					 p->aux->sim_line[i]);
	if (bus->nsims == CONFIG_I2C_SIMS)
		return key_error(p, "too many simulated devices (at most %d)", CONFIG_I2C_SIMS);
	p->aux->sim_line[bus->nsims] = p->lineno;
	bus->sims[bus->nsims++] = sim;
	return 0;
}

/* allow = 0x50,0x51,... */
static int i2c_allow(struct parser *p, void *obj, const char *val)
{
	struct config_i2c *bus = &((struct config_device *)obj)->u.i2c;
	uint8_t allow[128] = { 0 };
	const char *s = val;
	for (;;) {
		char item[16];
		size_t len = strcspn(s, ",");
		while (len && isspace((unsigned char)*s))
			s++, len--;
		size_t trim = len;
		while (trim && isspace((unsigned char)s[trim - 1]))
			trim--;
		if (trim == 0 || trim >= sizeof(item))
			return key_error(p, "'%s' is not a list of addresses such as 0x50,0x51", val);
		memcpy(item, s, trim);
		item[trim] = '\0';
		uint16_t a;
		if (i2c_addr(p, item, &a) < 0)
			return -1;
		if (allow[a])
			return key_error(p, "address %s is listed twice", item);
		allow[a] = 1;
		if (s[len] == '\0')
			break;
		s += len + 1;
	}
	memcpy(bus->allow, allow, sizeof(allow));
	bus->allow_set = true;
	return 0;
}

static int i2c_file(struct parser *p, void *obj, const char *val)
{
	(void)obj;
	return copy_path(p, val, p->aux->i2c_file, sizeof(p->aux->i2c_file));
}

static const struct key_def i2c_keys[] = {
	DEV_COMMON_KEYS,
	KEY_PATH("adapter", DEVT, u.i2c.adapter),
	KEY_FUNC("allow", i2c_allow, 0),
	KEY_FUNC("sim", i2c_sim, KEY_REPEAT),
	KEY_FUNC("file", i2c_file, 0),
};

/* `file =` is a shorthand for the bus's only eeprom. */
static void i2c_finish_file(struct parser *p, struct config_i2c *bus, struct sect_aux *aux)
{
	int line = key_line(i2c_keys, ARRAY_SIZE(i2c_keys), aux, "file");
	struct config_i2c_sim *eeprom = NULL;
	unsigned n = 0;
	if (!line || !aux->i2c_file[0])
		return;
	for (unsigned i = 0; i < bus->nsims; i++)
		if (bus->sims[i].kind == I2C_SIM_EEPROM && ++n == 1)
			eeprom = &bus->sims[i];
	if (n != 1)
		cfg_error(p, line, "file", "needs exactly one eeprom sim on this bus (found %u)", n);
	else if (eeprom->file[0])
		cfg_error(p, line, "file", "the eeprom at 0x%02x already has a file", eeprom->addr);
	else
		memcpy(eeprom->file, aux->i2c_file, sizeof(eeprom->file));
}

static void i2c_finish(struct parser *p, struct config_device *d, struct sect_aux *aux)
{
	struct config_i2c *bus = &d->u.i2c;
	bool adapter = key_line(i2c_keys, ARRAY_SIZE(i2c_keys), aux, "adapter") != 0;
	bool sims = key_line(i2c_keys, ARRAY_SIZE(i2c_keys), aux, "sim") != 0;
	if (!adapter && !sims)
		cfg_error(p, p->sect_line, p->label, "needs adapter or at least one sim");
	i2c_finish_file(p, bus, aux);
}

/* ---- [rng] ----------------------------------------------------------------------------- */

static const struct key_def rng_keys[] = {
	DEV_COMMON_KEYS,
	KEY_UINT("rate", DEVT, u.rng.rate_kib, 0, UINT32_MAX, 0),
};


/* ---- [gpio "NAME"] --------------------------------------------------------------------- */

static int gpio_find(const struct config_gpio *g, const char *name, size_t len)
{
	for (unsigned i = 0; i < g->nlines; i++)
		if (strlen(g->lines[i].name) == len && strncmp(g->lines[i].name, name, len) == 0)
			return (int)i;
	return -1;
}

/* The next line, named name[0..len) (empty: the chip's name) with its bias; NULL: refused. */
static struct config_gpio_line *gpio_add(struct parser *p, struct config_gpio *g,
					 const char *name, size_t len, const char *bias)
{
	struct config_gpio_line *l;

	if (len && gpio_find(g, name, len) >= 0) {
		key_error(p, "line name '%.*s' is used twice", (int)len, name);
		return NULL;
	}
	if (g->nlines == CONFIG_GPIO_LINES) {
		key_error(p, "too many lines (at most %d)", CONFIG_GPIO_LINES);
		return NULL;
	}
	l = &g->lines[g->nlines++];
	memcpy(l->name, name, len);
	l->name[len] = '\0';
	l->pull_up = strcmp(bias, "pull-up") == 0;
	l->pull_down = strcmp(bias, "pull-down") == 0;
	return l;
}

/* line = NAME [pull-up|pull-down] */
static int gpio_line(struct parser *p, void *obj, const char *val)
{
	struct config_gpio *g = &((struct config_device *)obj)->u.gpio;
	size_t len = strcspn(val, " \t");
	const char *bias = val + len + strspn(val + len, " \t");

	if (!name_ok(val, len) || len >= CONFIG_GPIO_NAME_MAX)
		return key_error(p, "'%.*s': a line name is 1..%d of A-Z a-z 0-9 . _ -", (int)len,
				 val, CONFIG_GPIO_NAME_MAX - 1);
	if (*bias && strcmp(bias, "pull-up") != 0 && strcmp(bias, "pull-down") != 0)
		return key_error(p, "'%s' is not NAME [pull-up|pull-down]", val);
	return gpio_add(p, g, val, len, bias) ? 0 : -1;
}

/* loopback = OUT:IN, kept as written until every line is known. */
static int gpio_loopback(struct parser *p, void *obj, const char *val)
{
	struct sect_aux *aux = p->aux;

	(void)obj;
	if (aux->ngpio_loops == CONFIG_GPIO_LOOPS)
		return key_error(p, "too many loopbacks (at most %d)", CONFIG_GPIO_LOOPS);
	if (strlen(val) >= sizeof(aux->gpio_loop[0]) || !strchr(val, ':'))
		return key_error(p, "'%s' is not OUT:IN (two line names)", val);
	memcpy(aux->gpio_loop[aux->ngpio_loops], val, strlen(val) + 1);
	aux->gpio_loop_line[aux->ngpio_loops++] = p->lineno;
	return 0;
}

/* chip = gpiochipN (under /dev) or an absolute path to a GPIO character device */
static int gpio_chip(struct parser *p, void *obj, const char *val)
{
	struct config_gpio *g = &((struct config_device *)obj)->u.gpio;
	size_t digits = strncmp(val, "gpiochip", 8) == 0 ? strspn(val + 8, "0123456789") : 0;
	bool named = digits && !val[8 + digits];

	if (!named && val[0] != '/')
		return key_error(p, "'%s' is not gpiochipN or an absolute path (/dev/gpiochipN)", val);
	if (strlen(val) + (named ? 5 : 0) >= sizeof(g->chip))
		return key_error(p, "path too long (at most %zu characters)", sizeof(g->chip) - 1);
	snprintf(g->chip, sizeof(g->chip), "%s%s", named ? "/dev/" : "", val);
	return 0;
}

/* pass = OFFSET[=GUESTNAME] [pull-up|pull-down]: a host line the guest sees, in this order. */
static int gpio_pass(struct parser *p, void *obj, const char *val)
{
	struct config_gpio *g = &((struct config_device *)obj)->u.gpio;
	size_t len = strcspn(val, " \t"), digits = strspn(val, "0123456789");
	const char *bias = val + len + strspn(val + len, " \t");
	const char *name = val + digits + (val[digits] == '=');
	size_t nlen = (size_t)(val + len - name);
	unsigned long off = strtoul(val, NULL, 10);
	struct config_gpio_line *l;

	if (!digits || digits > 5 || off > 65535 || (val[digits] != '=' && digits != len) ||
	    (val[digits] == '=' && (!name_ok(name, nlen) || nlen >= CONFIG_GPIO_NAME_MAX)))
		return key_error(p, "'%s' is not OFFSET[=GUESTNAME] [pull-up|pull-down] (an offset "
				 "0..65535, a name of 1..%d of A-Z a-z 0-9 . _ -)", val,
				 CONFIG_GPIO_NAME_MAX - 1);
	if (*bias && strcmp(bias, "pull-up") != 0 && strcmp(bias, "pull-down") != 0)
		return key_error(p, "'%s': the bias is pull-up or pull-down", val);
	for (unsigned i = 0; i < g->nlines; i++)
		if (g->lines[i].offset == off)
			return key_error(p, "offset %lu is passed twice", off);
	l = gpio_add(p, g, name, nlen, bias);
	if (!l)
		return -1;
	l->offset = (uint32_t)off;
	return 0;
}

static int gpio_control(struct parser *p, void *obj, const char *val)
{
	struct config_device *d = obj;
	return unique_socket_path(p, val, d->u.gpio.control, sizeof(d->u.gpio.control));
}

static const struct key_def gpio_keys[] = {
	DEV_COMMON_KEYS,
	KEY_FUNC("line", gpio_line, KEY_REPEAT),
	KEY_FUNC("loopback", gpio_loopback, KEY_REPEAT),
	KEY_FUNC("control", gpio_control, 0),
	KEY_FUNC("chip", gpio_chip, 0),
	KEY_FUNC("pass", gpio_pass, KEY_REPEAT),
};

/* One loopback: both names known, different, and IN driven by no other loopback. */
static void gpio_finish_loop(struct parser *p, struct config_gpio *g, const char *spec, int line)
{
	const char *colon = strchr(spec, ':');
	int out = gpio_find(g, spec, (size_t)(colon - spec));
	int in = gpio_find(g, colon + 1, strlen(colon + 1));

	if (out < 0 || in < 0) {
		int n = out < 0 ? (int)(colon - spec) : (int)strlen(colon + 1);

		cfg_error(p, line, "loopback", "'%s': no line named '%.*s'", spec, n,
			  out < 0 ? spec : colon + 1);
		return;
	}
	if (out == in) {
		cfg_error(p, line, "loopback", "'%s': a line cannot drive itself", spec);
		return;
	}
	for (unsigned i = 0; i < g->nloops; i++)
		if (g->loops[i].in == in) {
			cfg_error(p, line, "loopback", "'%s': %s is already driven by %s", spec,
				  g->lines[in].name, g->lines[g->loops[i].out].name);
			return;
		}
	g->loops[g->nloops++] = (struct config_gpio_loop){ (uint16_t)out, (uint16_t)in };
}

static void gpio_finish(struct parser *p, struct config_device *d, struct sect_aux *aux)
{
	struct config_gpio *g = &d->u.gpio;
	int sim = key_line(gpio_keys, ARRAY_SIZE(gpio_keys), aux, "line");
	int pass = key_line(gpio_keys, ARRAY_SIZE(gpio_keys), aux, "pass");
	int loop = key_line(gpio_keys, ARRAY_SIZE(gpio_keys), aux, "loopback");

	if (g->chip[0] && sim) {
		cfg_error(p, sim, "line", "simulated lines and chip = (passthrough) exclude each "
			  "other: pass = OFFSET[=GUESTNAME] names a chip's lines");
		return;
	}
	if (g->chip[0] && loop) {
		cfg_error(p, loop, "loopback", "loopbacks join simulated lines, not a chip's");
		return;
	}
	if (pass && !g->chip[0]) {
		cfg_error(p, pass, "pass", "needs chip = gpiochipN (the host chip the lines are on)");
		return;
	}
	if (!g->nlines)
		cfg_error(p, p->sect_line, p->label, g->chip[0] ?
			  "needs at least one pass = OFFSET[=GUESTNAME]" :
			  "needs at least one line = NAME (or chip = and pass =)");
	for (unsigned i = 0; i < aux->ngpio_loops; i++)
		gpio_finish_loop(p, g, aux->gpio_loop[i], aux->gpio_loop_line[i]);
}

/* ---- [block] checks that need the whole section ------------------------------------------ */

/* path opens for reading (open, not access(2): a reload runs under the seccomp filter). */
static bool readable(const char *path)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);

	if (fd < 0)
		return false;
	close(fd);
	return true;
}

/*
 * TLS: an nbds URI needs exactly one credential, readable now (a missing file is a
 * configuration error, not a server that refuses us at every reconnect); the tls_* keys need
 * an nbds URI.
 */
static void block_finish_tls(struct parser *p, struct config_device *d, struct sect_aux *aux,
			     int nbd)
{
	const struct config_block *b = &d->u.block;
	int psk = key_line(block_keys, ARRAY_SIZE(block_keys), aux, "tls_psk_file");
	int certs = key_line(block_keys, ARRAY_SIZE(block_keys), aux, "tls_certificates");
	int user = key_line(block_keys, ARRAY_SIZE(block_keys), aux, "tls_username");
	bool tls = nbd && strncmp(b->nbd, "nbds", 4) == 0;
	struct stat st;

	if (!tls) {
		int line = psk ? psk : certs ? certs : user;

		if (line)
			cfg_error(p, line, psk ? "tls_psk_file" : certs ? "tls_certificates" :
				  "tls_username", "applies to nbds:// and nbds+unix:// disks only");
		return;
	}
	if (psk && certs)
		cfg_error(p, psk > certs ? psk : certs, psk > certs ? "tls_psk_file" :
			  "tls_certificates", "tls_psk_file (line %d) and tls_certificates "
			  "(line %d): give one", psk, certs);
	else if (!psk && !certs)
		cfg_error(p, nbd, "nbd", "an nbds URI needs tls_psk_file or tls_certificates");
	else if (psk && !readable(b->tls_psk_file))
		cfg_error(p, psk, "tls_psk_file", "%s: %s", b->tls_psk_file, strerror(errno));
	else if (certs && stat(b->tls_certificates, &st) < 0)
		cfg_error(p, certs, "tls_certificates", "%s: %s", b->tls_certificates,
			  strerror(errno));
	else if (certs && !S_ISDIR(st.st_mode))
		cfg_error(p, certs, "tls_certificates", "%s: not a directory",
			  b->tls_certificates);
	if (user && certs)
		cfg_error(p, user, "tls_username", "applies to tls_psk_file (X.509 names the client "
			  "in its certificate)");
}

static void block_finish(struct parser *p, struct config_device *d, struct sect_aux *aux)
{
	int nbd = key_line(block_keys, ARRAY_SIZE(block_keys), aux, "nbd");
	int path = key_line(block_keys, ARRAY_SIZE(block_keys), aux, "path");
	int cache = key_line(block_keys, ARRAY_SIZE(block_keys), aux, "cache");

	int rbd = key_line(block_keys, ARRAY_SIZE(block_keys), aux, "rbd");
	static const char *const ceph[] = { "ceph_conf", "ceph_id", "keyring" };

	if (nbd && path)
		cfg_error(p, nbd > path ? nbd : path, nbd > path ? "nbd" : "path",
			  "path (line %d) and nbd (line %d): give exactly one", path, nbd);
	if (rbd && (path || nbd))
		cfg_error(p, rbd, "rbd", "%s (line %d) and rbd (line %d): give exactly one",
			  path ? "path" : "nbd", path ? path : nbd, rbd);
	if ((nbd || rbd) && cache && d->u.block.cache == BLK_CACHE_NONE)
		cfg_error(p, cache, "cache", "none applies to files and block devices, not %s",
			  nbd ? "nbd" : "rbd");
	for (size_t i = 0; i < ARRAY_SIZE(ceph); i++) {
		int line = key_line(block_keys, ARRAY_SIZE(block_keys), aux, ceph[i]);

		if (line && !rbd)
			cfg_error(p, line, ceph[i], "applies to rbd disks only");
	}
	block_finish_tls(p, d, aux, nbd);
}

/* ---- [vsock "NAME"] -------------------------------------------------------------------- */

static int vsock_socket(struct parser *p, void *obj, const char *val)
{
	struct config_device *d = obj;
	if (strlen(val) > CONFIG_VSOCK_SOCKET_MAX)
		return key_error(p, "socket path too long (at most %u characters: the guest's "
				 "connections go to PATH_<port>)", CONFIG_VSOCK_SOCKET_MAX);
	return unique_socket_path(p, val, d->u.vsock.socket, sizeof(d->u.vsock.socket));
}

static const struct key_def vsock_keys[] = {
	DEV_COMMON_KEYS,
	KEY_UINT("guest_cid", DEVT, u.vsock.guest_cid, CONFIG_VSOCK_CID_MIN, CONFIG_VSOCK_CID_MAX, 0),
	KEY_FUNC("socket", vsock_socket, 0),
	KEY_UINT("max_connections", DEVT, u.vsock.max_conns, 1, 65536, 0),
	KEY_UINT("buffer", DEVT, u.vsock.buf_kib, 4, 4096, 0),
};

static void vsock_defaults(struct config_device *d)
{
	d->u.vsock.max_conns = CONFIG_VSOCK_MAX_CONNS;
	d->u.vsock.buf_kib = CONFIG_VSOCK_BUF_KIB;
}

static void vsock_finish(struct parser *p, struct config_device *d, struct sect_aux *aux)
{
	static const char *const need[] = { "guest_cid", "socket" };
	(void)d;
	for (size_t i = 0; i < ARRAY_SIZE(need); i++)
		if (!key_line(vsock_keys, ARRAY_SIZE(vsock_keys), aux, need[i]))
			cfg_error(p, p->sect_line, need[i], "required in %s", p->label);
}

/* ---- section types --------------------------------------------------------------------- */

#define TYPE(n, t, bare, keys, def, fin) \
	{ n, t, bare, keys, ARRAY_SIZE(keys), def, fin }
static const struct sect_type sect_types[DEV_TYPE_COUNT] = {
	TYPE("block", DEV_BLOCK, false, block_keys, block_defaults, block_finish),
	TYPE("net", DEV_NET, false, net_keys, net_defaults, NULL),
	TYPE("console", DEV_CONSOLE, false, console_keys, console_defaults, console_finish),
	TYPE("i2c", DEV_I2C, false, i2c_keys, NULL, i2c_finish),
	TYPE("rng", DEV_RNG, true, rng_keys, NULL, NULL),
	TYPE("gpio", DEV_GPIO, false, gpio_keys, NULL, gpio_finish),
	TYPE("vsock", DEV_VSOCK, false, vsock_keys, vsock_defaults, vsock_finish),
};

_Static_assert(ARRAY_SIZE(guest_keys) <= KEY_SLOTS, "guest keys");
_Static_assert(ARRAY_SIZE(block_keys) <= KEY_SLOTS, "block keys");
_Static_assert(ARRAY_SIZE(net_keys) <= KEY_SLOTS, "net keys");
_Static_assert(ARRAY_SIZE(console_keys) <= KEY_SLOTS, "console keys");
_Static_assert(ARRAY_SIZE(i2c_keys) <= KEY_SLOTS, "i2c keys");
_Static_assert(ARRAY_SIZE(rng_keys) <= KEY_SLOTS, "rng keys");
_Static_assert(ARRAY_SIZE(gpio_keys) <= KEY_SLOTS, "gpio keys");
_Static_assert(ARRAY_SIZE(vsock_keys) <= KEY_SLOTS, "vsock keys");

const char *config_dev_type_name(enum config_dev_type t)
{
	if ((unsigned)t >= DEV_TYPE_COUNT)
		return "unknown";
	return sect_types[t].name;
}

int config_dev_type_parse(const char *s)
{
	for (int t = 0; t < DEV_TYPE_COUNT; t++)
		if (s && strcmp(s, sect_types[t].name) == 0)
			return t;
	return -1;
}

/* ---- sections -------------------------------------------------------------------------- */

static void section_end(struct parser *p)
{
	if (p->kind == SECT_DEVICE && p->st->finish)
		p->st->finish(p, p->obj, p->aux);
	p->kind = SECT_SKIP;
}

static void section_enter(struct parser *p, enum sect_kind kind, const struct key_def *keys,
			  size_t nkeys, void *obj, struct sect_aux *aux)
{
	p->kind = kind;
	p->keys = keys;
	p->nkeys = nkeys;
	p->obj = obj;
	p->aux = aux;
	memset(aux, 0, sizeof(*aux));
}

static void section_guest(struct parser *p, bool named)
{
	/* Still parsed as [guest], so its keys are checked and nothing else cascades. */
	if (named)
		cfg_error(p, p->lineno, p->label, "[guest] takes no name");
	if (p->guest_line) {
		cfg_error(p, p->lineno, p->label, "duplicate section (first at line %d)",
			  p->guest_line);
		guest_defaults(&p->scratch_guest);
		section_enter(p, SECT_GUEST, guest_keys, ARRAY_SIZE(guest_keys),
			      &p->scratch_guest, &p->scratch_aux);
		return;
	}
	p->guest_line = p->lineno;
	p->cfg->guest.line = p->lineno;
	section_enter(p, SECT_GUEST, guest_keys, ARRAY_SIZE(guest_keys), &p->cfg->guest,
		      &p->guest_aux);
}

static const struct config_device *dev_find(struct parser *p, enum config_dev_type t,
					    const char *name)
{
	for (unsigned i = 0; i < p->cfg->ndevices; i++) {
		const struct config_device *d = &p->cfg->devices[i];
		if (d->type == t && strcmp(d->name, name) == 0)
			return d;
	}
	return NULL;
}

/* A new device, or the scratch one when it cannot be kept (already reported). */
static struct config_device *dev_slot(struct parser *p, const struct sect_type *st,
				      const char *name, struct sect_aux **aux)
{
	const struct config_device *dup = dev_find(p, st->type, name);
	if (dup)
		cfg_error(p, p->lineno, p->label, "duplicate section (first at line %d)", dup->line);
	else if (p->cfg->ndevices == CONFIG_MAX_DEVICES)
		cfg_error(p, p->lineno, p->label, "too many devices (at most %d)",
			  CONFIG_MAX_DEVICES);
	if (dup || p->cfg->ndevices == CONFIG_MAX_DEVICES) {
		*aux = &p->scratch_aux;
		return &p->scratch_dev;
	}
	*aux = &p->dev_aux[p->cfg->ndevices];
	return &p->cfg->devices[p->cfg->ndevices++];
}

static void section_device(struct parser *p, const struct sect_type *st, const char *name,
			   bool named)
{
	struct sect_aux *aux;
	struct config_device *d;
	size_t len = strlen(name);
	if (!named && !st->bare_ok) {
		cfg_error(p, p->lineno, p->label, "needs a quoted name, as in [%s \"NAME\"]",
			  st->name);
		return;
	}
	if (named && (!name_ok(name, len) || len >= CONFIG_NAME_MAX)) {
		cfg_error(p, p->lineno, p->label,
			  "a name is 1..%d characters of A-Z a-z 0-9 . _ -", CONFIG_NAME_MAX - 1);
		return;
	}
	d = dev_slot(p, st, name, &aux);
	memset(d, 0, sizeof(*d));
	d->type = st->type;
	memcpy(d->name, name, len + 1);
	d->devid = -1;
	d->line = p->lineno;
	if (st->defaults)
		st->defaults(d);
	p->st = st;
	section_enter(p, SECT_DEVICE, st->keys, st->nkeys, d, aux);
}

/*
 * s is "[...]" with whitespace trimmed on both ends and possibly a comment after ']'.
 * Accepts [type] and [type "name"].
 */
static void section_header(struct parser *p, char *s)
{
	char *close = strchr(s, ']');
	char *type, *end, *name = "";
	bool named = false;

	section_end(p);
	p->sect_line = p->lineno;
	if (!close) {
		snprintf(p->label, sizeof(p->label), "%.80s", s);
		cfg_error(p, p->lineno, p->label, "missing ']'");
		return;
	}
	snprintf(p->label, sizeof(p->label), "%.*s", (int)(close - s + 1 > 80 ? 80 : close - s + 1),
		 s);
	end = close + 1 + strspn(close + 1, " \t");
	if (*end && *end != ';' && *end != '#') {
		cfg_error(p, p->lineno, p->label, "unexpected text after ']'");
		return;
	}
	*close = '\0';
	type = s + 1 + strspn(s + 1, " \t");
	end = type + strcspn(type, " \t\"");
	char *rest = end + strspn(end, " \t");
	if (*rest == '"') {
		char *q = strchr(rest + 1, '"');
		if (!q || q[1 + strspn(q + 1, " \t")] != '\0') {
			cfg_error(p, p->lineno, p->label, "the name must be one \"quoted\" word");
			return;
		}
		*q = '\0';
		name = rest + 1;
		named = true;
	} else if (*rest) {
		cfg_error(p, p->lineno, p->label, "the name must be in double quotes, as in "
			  "[block \"NAME\"]");
		return;
	}
	*end = '\0';
	if (strcmp(type, "guest") == 0) {
		section_guest(p, named);
		return;
	}
	int t = config_dev_type_parse(type);
	if (t < 0) {
		cfg_error(p, p->lineno, p->label, "unknown section (expected guest, block, net, "
			  "console, i2c, rng, gpio or vsock)");
		return;
	}
	section_device(p, &sect_types[t], name, named);
}

/* ---- inih glue ------------------------------------------------------------------------- */

static int cfg_handle(void *user, const char *section, const char *name, const char *value)
{
	struct parser *p = user;
	(void)section;          /* ours, not inih's: see section_header() */
	if (p->kind == SECT_SKIP)
		return 1;
	if (p->kind == SECT_NONE) {
		cfg_error(p, p->lineno, name, "outside any section (expected [guest] first)");
		return 1;
	}
	for (size_t i = 0; i < p->nkeys; i++) {
		const struct key_def *k = &p->keys[i];
		if (strcmp(k->name, name) != 0)
			continue;
		if (p->aux->seen[i] && !(k->flags & KEY_REPEAT)) {
			cfg_error(p, p->lineno, name, "duplicate key (first at line %d)",
				  p->aux->seen[i]);
			return 1;
		}
		if (!p->aux->seen[i])
			p->aux->seen[i] = p->lineno;
		p->key = k->name;
		key_apply(p, k, p->obj, value);
		return 1;
	}
	cfg_error(p, p->lineno, name, "unknown key in %s", p->label);
	return 1;
}

/* The key of a line, for messages about the line itself. */
static void line_key(const char *s, char *key, size_t size)
{
	size_t len = strcspn(s, "=:");
	if (s[len] == '\0')
		len = strcspn(s, " \t");
	while (len && isspace((unsigned char)s[len - 1]))
		len--;
	snprintf(key, size, "%.*s", (int)(len > 40 ? 40 : len), s);
}

/* inih's own test for "key = value": a '=' or ':' before any " ;" inline comment. */
static bool line_has_separator(const char *s)
{
	for (const char *c = s; *c; c++) {
		if (*c == '=' || *c == ':')
			return c != s;
		if (*c == ';' && c > s && isspace((unsigned char)c[-1]))
			return false;
	}
	return false;
}

/*
 * Decide what inih sees of the current line: a key line, left-trimmed, or "" when the line is
 * blank, a comment, a section header (handled here) or an error (reported here).
 */
static const char *line_filter(struct parser *p, char *line, size_t len, int max)
{
	char key[48];
	char *s = line;
	if (p->lineno == 1 && strncmp(s, "\xEF\xBB\xBF", 3) == 0)
		s += 3;
	s += strspn(s, " \t\r\f\v");
	while (len && isspace((unsigned char)line[len - 1]))
		line[--len] = '\0';
	if (*s == '\0' || *s == ';' || *s == '#')
		return "";
	p->any_content = true;
	line_key(s, key, sizeof(key));
	if (strlen(line) != len) {
		cfg_error(p, p->lineno, key[0] ? key : "line", "the line contains a NUL byte");
		return "";
	}
	if (len > (size_t)max) {
		cfg_error(p, p->lineno, key[0] ? key : "line", "line too long (%zu characters, "
			  "at most %d)", len, max);
		return "";
	}
	if (*s == '[') {
		section_header(p, s);
		return "";
	}
	if (!line_has_separator(s)) {
		cfg_error(p, p->lineno, key[0] ? key : "line",
			  *s == '=' || *s == ':' ? "missing key name" : "expected KEY = VALUE");
		return "";
	}
	return s;
}

static char *cfg_read_line(char *str, int num, void *stream)
{
	struct parser *p = stream;
	ssize_t n = getline(&p->buf, &p->cap, p->fp);
	if (n < 0) {
		if (ferror(p->fp))
			cfg_error(p, p->lineno, "file", "read error: %s", strerror(errno));
		return NULL;
	}
	p->lineno++;
	if (n > 0 && p->buf[n - 1] == '\n')
		p->buf[--n] = '\0';
	/* num counts the NUL: inih keeps at most num - 1 characters of a line. */
	const char *keep = line_filter(p, p->buf, (size_t)n, num - 1);
	snprintf(str, (size_t)num, "%s", keep);
	return str;
}

/* ---- whole-file checks ----------------------------------------------------------------- */

static void check_guest(struct parser *p)
{
	if (!p->guest_line) {
		cfg_error(p, 0, "[guest]", p->any_content ? "missing section (exactly one is "
			  "required)" : "missing section (the file has no settings)");
		return;
	}
	if (!key_line(guest_keys, ARRAY_SIZE(guest_keys), &p->guest_aux, "name") &&
	    !key_line(guest_keys, ARRAY_SIZE(guest_keys), &p->guest_aux, "domid"))
		cfg_error(p, p->guest_line, "[guest]", "needs name or domid");
}

/* In explicit mode nothing comes from xenstore: the INI must place and back every device. */
static void check_explicit(struct parser *p)
{
	if (p->cfg->guest.discovery != DISCOVERY_EXPLICIT)
		return;
	/* A block device's backend is path, nbd or rbd; block_finish() checks that only one. */
	for (unsigned i = 0; i < p->cfg->ndevices; i++) {
		const struct config_device *d = &p->cfg->devices[i];
		const struct sect_type *st = &sect_types[d->type];
		static const char *const need[] = { "mmio", "irq", "path" };
		for (size_t j = 0; j < ARRAY_SIZE(need); j++) {
			if (j == 2 && (d->type != DEV_BLOCK || d->u.block.nbd[0] ||
				       d->u.block.rbd[0]))
				continue;
			if (!key_line(st->keys, st->nkeys, &p->dev_aux[i], need[j]))
				cfg_error(p, d->line, need[j],
					  "required in explicit discovery mode%s",
					  j == 2 ? " (or nbd, rbd)" : "");
		}
	}
}

static int parser_init(struct parser *p, const char *path, struct config *cfg)
{
	memset(cfg, 0, sizeof(*cfg));
	snprintf(cfg->file, sizeof(cfg->file), "%s", path);
	guest_defaults(&cfg->guest);
	p->file = path;
	p->cfg = cfg;
	p->kind = SECT_NONE;
	p->errs = calloc(ERR_MAX, sizeof(p->errs[0]));
	return p->errs ? 0 : -1;
}

static void parser_run(struct parser *p)
{
	p->fp = fopen(p->file, "r");
	if (!p->fp) {
		cfg_error(p, 0, "file", "cannot open: %s", strerror(errno));
		return;
	}
	int rc = ini_parse_stream(cfg_read_line, p, cfg_handle, p);
	if (rc < 0)
		cfg_error(p, p->lineno, "file", "out of memory");
	else if (rc > 0)        /* line_filter() passes inih only lines it accepts */
		cfg_error(p, rc, "line", "not understood");
	section_end(p);
	fclose(p->fp);
	check_guest(p);
	check_explicit(p);
}

int config_load(const char *path, struct config *cfg, char *err, size_t errlen)
{
	struct parser *p = calloc(1, sizeof(*p));
	int rc;
	if (err && errlen)
		err[0] = '\0';
	if (!p || parser_init(p, path, cfg) < 0) {
		if (err && errlen)
			snprintf(err, errlen, "%s:0: file: out of memory\n", path);
		free(p);
		return -1;
	}
	parser_run(p);
	rc = p->nerrs || p->dropped ? -1 : 0;
	errs_emit(p, err, errlen);
	errs_free(p);
	free(p->buf);
	free(p);
	return rc;
}
