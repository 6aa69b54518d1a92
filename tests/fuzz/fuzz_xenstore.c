/*
 * libFuzzer target: the xenstore value parsers of ioreq/xenstore.c (base, irq, devid numbers,
 * "virtio,device<N>" types, grant_usage booleans, copied strings). They are static, so this
 * file includes xenstore.c itself rather than widening its interface; nothing else of it runs.
 *
 * Input: [0] which parser and its options, then the value (a NUL ends it early, as in
 * xenstore). Each parser is checked against a small independent reference of the documented
 * rule (whole string, no sign or blanks, decimal or 0x hex where allowed, range): any
 * disagreement, crash or sanitizer report is a bug.
 */
#include "ioreq/xenstore.c"

/* Reference: digits of `base` only, at least one, value <= max without overflow. */
static int ref_u64(const char *s, bool allow_hex, uint64_t max, uint64_t *out)
{
	unsigned base = 10;
	uint64_t v = 0;

	if (allow_hex && s[0] == '0' && (s[1] == 'x' || s[1] == 'X')) {
		s += 2;
		base = 16;
	}
	if (!*s)
		return -1;
	for (; *s; s++) {
		unsigned dig;

		if (*s >= '0' && *s <= '9')
			dig = (unsigned)(*s - '0');
		else if (base == 16 && *s >= 'a' && *s <= 'f')
			dig = (unsigned)(*s - 'a' + 10);
		else if (base == 16 && *s >= 'A' && *s <= 'F')
			dig = (unsigned)(*s - 'A' + 10);
		else
			return -1;
		if (v > (UINT64_MAX - dig) / base)
			return -1;
		v = v * base + dig;
	}
	if (v > max)
		return -1;
	*out = v;
	return 0;
}

/* Reference: the prefix, then 1 to 8 hex digits (no 0x), not zero. */
static int ref_type(const char *s, uint32_t *id)
{
	static const char prefix[] = "virtio,device";
	char buf[16];
	uint64_t v;
	size_t n;

	if (strncmp(s, prefix, sizeof(prefix) - 1))
		return -1;
	s += sizeof(prefix) - 1;
	n = strlen(s);
	if (n == 0 || n > 8 || strspn(s, "0123456789abcdefABCDEF") != n)
		return -1;
	snprintf(buf, sizeof(buf), "0x%s", s);
	if (ref_u64(buf, true, UINT32_MAX, &v) < 0 || v == 0)
		return -1;
	*id = (uint32_t)v;
	return 0;
}

static void check_u64(const char *s, bool hex, uint64_t max)
{
	uint64_t a = 0, b = 0;
	int ra = xs_parse_u64(s, hex, max, &a), rb = ref_u64(s, hex, max, &b);

	if ((ra == 0) != (rb == 0) || (ra == 0 && a != b))
		abort();
}

static void check_u32(const char *s, bool hex, uint32_t min, uint32_t max)
{
	uint32_t a = 0;
	uint64_t b = 0;
	int ra = xs_parse_u32(s, hex, min, max, &a);
	int rb = ref_u64(s, hex, max, &b) == 0 && b >= min ? 0 : -1;

	if ((ra == 0) != (rb == 0) || (ra == 0 && a != b))
		abort();
}

static void check_type(const char *s)
{
	uint32_t a = 0, b = 0;
	int ra = xs_parse_type(s, &a), rb = ref_type(s, &b);

	if ((ra == 0) != (rb == 0) || (ra == 0 && a != b))
		abort();
}

static void check_grant(const char *s, uint32_t be)
{
	bool v = false;
	int rc = xs_parse_grant_usage(s, be, &v);
	bool yes = !strcmp(s, "1") || !strcasecmp(s, "true");
	bool no = !strcmp(s, "0") || !strcasecmp(s, "false");

	if ((rc == 0) != (yes || no) || (rc == 0 && v != yes))
		abort();
	if (xs_parse_grant_usage(NULL, be, &v) != 0 || v != (be != 0))
		abort();
}

static void check_copy(const char *s, size_t size)
{
	char dst[64];

	memset(dst, 0x7e, sizeof(dst));
	int rc = xs_copy_str(dst, size, s);

	/* Fits: copied with its NUL; does not: refused. Never a byte past size. */
	if (rc == 0 && (strlen(s) >= size || strcmp(dst, s) != 0))
		abort();
	if (rc != 0 && strlen(s) < size)
		abort();
	for (size_t i = size; i < sizeof(dst); i++)
		if (dst[i] != 0x7e)
			abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static bool quiet;
	char s[256];

	if (!quiet) {
		log_init(LOG_CRIT, false);
		quiet = true;
	}
	if (size < 1)
		return 0;
	size_t n = size - 1 < sizeof(s) - 1 ? size - 1 : sizeof(s) - 1;

	memcpy(s, data + 1, n);
	s[n] = '\0';
	switch (data[0] % 6) {
	case 0:   /* base: hex or decimal, any 64-bit value */
		check_u64(s, true, UINT64_MAX);
		break;
	case 1:   /* irq: decimal SPI */
		check_u32(s, false, PLATFORM_IRQ_MIN, PLATFORM_IRQ_MAX);
		break;
	case 2:   /* devids, domids: bounded decimal or hex */
		check_u32(s, data[0] & 8, data[0] >> 4, (uint32_t)data[0] << 8);
		check_u64(s, data[0] & 8, (uint64_t)data[0] << 24);
		break;
	case 3:
		check_type(s);
		break;
	case 4:
		check_grant(s, data[0] >> 3);
		break;
	case 5:
		check_copy(s, 1 + (data[0] >> 3) % 63);
		break;
	}
	return 0;
}
