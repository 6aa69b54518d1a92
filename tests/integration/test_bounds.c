/*
 * Bounded guests (docs/security.md, "Resource bounds"): a hostile guest drives one resource at
 * its bound for thousands of rounds against the real sim daemon, and the test asserts the bound
 * from outside: the daemon's RSS and CPU time (/proc/PID), the size of the files it writes, the
 * lines it logs, the round trip of another device meanwhile. And the other side of the coin: an
 * honest driver's reset, unbind and rebind leave no warning in the log.
 *
 * The guest is the hostile fixture's three devices (test_hostile.h) plus a console (socket, pty
 * and log file, window 3) and a two-pair net device on a tap (window 4), in a network namespace
 * of the test's own.
 */
#include <arpa/inet.h>
#include <net/if.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <sys/inotify.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>

#include "tests/integration/test_hostile.h"
#include "tests/lib/unix_sock.h"
#include "devices/console.h"
#include "devices/net.h"

#define D_CON      3u
#define D_NET      4u
#define TAP        "bxtap0"
#define IP_TAP     0x0a090001u
#define F_NEXT     VRING_DESC_F_NEXT
#define F_WRITE    VRING_DESC_F_WRITE
#define F_IND      VRING_DESC_F_INDIRECT
#define CON_Q      64u
#define NET_Q      64u
#define NET_RXBUF  1526u
#define MIB        (1u << 20)

#define CON_WANT (VIRTIO_BIT(VIRTIO_F_VERSION_1) | VIRTIO_BIT(VIRTIO_F_EVENT_IDX) | \
		  VIRTIO_BIT(VIRTIO_F_INDIRECT_DESC))
#define NET_WANT (CON_WANT | VIRTIO_BIT(VIRTIO_NET_F_MAC) | VIRTIO_BIT(VIRTIO_NET_F_STATUS) | \
		  VIRTIO_BIT(VIRTIO_NET_F_MRG_RXBUF) | VIRTIO_BIT(VIRTIO_NET_F_CTRL_VQ) | \
		  VIRTIO_BIT(VIRTIO_NET_F_MQ))

struct bounds {
	struct hostile *h;
	struct xsim_vio cvio, nvio;
	struct vdrv con, net;
	char log[128], sock[128], pty[128];
	uint64_t con_rx[8];
	uint8_t *con_rx_host[8];
	char con_seen[256];            /* console input the guest received since con_rx_post() */
	size_t con_seen_n;
	uint64_t net_rx;
	uint64_t ctrl_gpa;
	uint8_t *ctrl_host;
};

struct bcfg {
	const char *img;           /* block image (default: the fixture's 1 MiB one) */
	const char *blk_keys;
	const char *con_keys;      /* extra lines of the console section */
	bool eeprom;
	unsigned con_vcpu;         /* the vCPU the console driver uses (a flood thread's own) */
};

/* ---- /proc ------------------------------------------------------------------------------- */


/* Resident memory of pid in KiB that is the daemon's own (anonymous), not mapped guest RAM. */
static unsigned long rss_anon_kib(pid_t pid)
{
	char path[64], line[256];
	unsigned long v = 0;
	FILE *f;

	snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
	f = fopen(path, "r");
	assert_non_null(f);
	while (fgets(line, sizeof(line), f))
		if (sscanf(line, "RssAnon: %lu kB", &v) == 1)
			break;
	fclose(f);
	return v;
}

static off_t file_size(const char *path)
{
	struct stat st;

	return stat(path, &st) == 0 ? st.st_size : -1;
}

/* Lines of the daemon's log containing needle. */
static unsigned log_count(struct bounds *b, const char *needle)
{
	FILE *f = fopen(b->h->t->dm.log_path, "r");
	char line[1024];
	unsigned n = 0;

	assert_non_null(f);
	while (fgets(line, sizeof(line), f))
		n += strstr(line, needle) != NULL;
	fclose(f);
	return n;
}

static uint8_t net_ctrl(struct bounds *b, uint8_t cls, uint8_t cmd, const void *d, size_t len);

/*
 * The log bound is a rate: 10 lines per 5 s per device and kind, plus the line that counts what
 * was suppressed. How many lines `ms` of one kind of provocation may cost.
 */
static unsigned rate_bound(int64_t ms)
{
	return 11u * (unsigned)(ms / 5000 + 1);
}

/* ---- raw rings ----------------------------------------------------------------------------- */

static void raw_desc(struct vdrv_vq *vq, uint16_t i, uint64_t addr, uint32_t len, uint16_t flags,
		     uint16_t next)
{
	vq->desc[i] = (struct vring_desc){ htole64(addr), htole32(len), htole16(flags),
					   htole16(next) };
}

static void raw_publish(struct vdrv_vq *vq, uint16_t head)
{
	vq->avail->ring[vq->avail_idx & (vq->num - 1)] = htole16(head);
	vq->avail_idx++;
	__atomic_store_n(&vq->avail->idx, htole16(vq->avail_idx), __ATOMIC_RELEASE);
}

/* The device's avail_event (EVENT_IDX): how far it has consumed the avail ring. */
static uint16_t avail_event(struct vdrv_vq *vq)
{
	return __atomic_load_n((uint16_t *)(void *)&vq->used->ring[vq->num], __ATOMIC_ACQUIRE);
}

static void raw_kick(struct vdrv *d, unsigned q)
{
	__atomic_thread_fence(__ATOMIC_SEQ_CST);
	vdrv_write32(d, R_QUEUE_NOTIFY, q);
}

static bool wait_status(struct vdrv *d, uint32_t bit, int ms)
{
	struct timespec t0;

	clock_gettime(CLOCK_MONOTONIC, &t0);
	while (hostile_ms_since(&t0) < ms) {
		if (vdrv_status(d) & bit)
			return true;
		hostile_sleep_ms(1);
	}
	return false;
}

/* ---- the guest ----------------------------------------------------------------------------- */

static bool con_used(struct vdrv *d, uint32_t *len, void **tok)
{
	return vdrv_get_used(d, 0, len, tok) == 1;
}

static void con_rx_post(struct bounds *b)
{
	b->con_seen_n = 0;
	for (unsigned i = 0; i < 8; i++) {
		struct vdrv_buf rb = { b->con_rx[i], 256, true };

		memset(b->con_rx_host[i], 0, 256);
		assert_true(vdrv_submit(&b->con, 0, &rb, 1, false, (void *)(uintptr_t)(i + 1)) >= 0);
	}
	vdrv_kick(&b->con, 0);
}

static void con_init(struct bounds *b)
{
	assert_int_equal(vdrv_init(&b->con, &b->cvio.io, &b->h->mem, CON_WANT, 2, CON_Q), 0);
	con_rx_post(b);
}

static void net_rx_post(struct bounds *b, unsigned pair)
{
	for (unsigned i = 0; i < 16; i++) {
		struct vdrv_buf rb = { b->net_rx + (pair * 16 + i) * NET_RXBUF, NET_RXBUF, true };

		assert_true(vdrv_submit(&b->net, 2 * pair, &rb, 1, false, NULL) >= 0);
	}
	vdrv_kick(&b->net, 2 * pair);
}

static void net_init(struct bounds *b)
{
	assert_int_equal(vdrv_init(&b->net, &b->nvio.io, &b->h->mem, NET_WANT, 5, NET_Q), 0);
	net_rx_post(b, 0);
	net_rx_post(b, 1);
}

static void tap_up(void)
{
	int s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	struct ifreq ifr = { 0 };
	struct sockaddr_in sin = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(IP_TAP) };

	assert_true(s >= 0);
	snprintf(ifr.ifr_name, sizeof(ifr.ifr_name), TAP);
	memcpy(&ifr.ifr_addr, &sin, sizeof(sin));
	assert_int_equal(ioctl(s, SIOCSIFADDR, &ifr), 0);
	sin.sin_addr.s_addr = htonl(0xffffff00u);
	memcpy(&ifr.ifr_netmask, &sin, sizeof(sin));
	assert_int_equal(ioctl(s, SIOCSIFNETMASK, &ifr), 0);
	assert_int_equal(ioctl(s, SIOCGIFFLAGS, &ifr), 0);
	ifr.ifr_flags |= IFF_UP;
	assert_int_equal(ioctl(s, SIOCSIFFLAGS, &ifr), 0);
	close(s);
}

/* One broadcast datagram out of the tap: a frame for the guest. */
static void tap_frame(void)
{
	int s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0), on = 1;
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons(7777),
				 .sin_addr.s_addr = htonl(IP_TAP | 0xff) };

	assert_true(s >= 0);
	assert_int_equal(setsockopt(s, SOL_SOCKET, SO_BROADCAST, &on, sizeof(on)), 0);
	assert_int_equal(setsockopt(s, SOL_SOCKET, SO_BINDTODEVICE, TAP, sizeof(TAP)), 0);
	assert_int_equal(sendto(s, "frame", 5, 0, (struct sockaddr *)&a, sizeof(a)), 5);
	close(s);
}

/* A frame sent out of the tap reaches one of the guest's receive queues. */
static bool net_frame_arrives(struct bounds *b)
{
	struct timespec t0;
	uint32_t len;

	tap_frame();
	clock_gettime(CLOCK_MONOTONIC, &t0);
	while (hostile_ms_since(&t0) < H_WAIT_MS) {
		if (vdrv_get_used(&b->net, 0, &len, NULL) == 1 ||
		    vdrv_get_used(&b->net, 2, &len, NULL) == 1)
			return true;
		hostile_sleep_ms(2);
	}
	return false;
}

static struct bounds *bounds_start(const struct bcfg *c)
{
	struct bounds *b = calloc(1, sizeof(*b));
	char dir[64], extra[1024];

	assert_non_null(b);
	/* The console's files live next to the image, in a folder the fixture makes first. */
	snprintf(dir, sizeof(dir), "/tmp/itest_bounds.XXXXXX");
	assert_non_null(mkdtemp(dir));
	snprintf(b->log, sizeof(b->log), "%s/hvc0.log", dir);
	snprintf(b->sock, sizeof(b->sock), "%s/hvc0.sock", dir);
	snprintf(b->pty, sizeof(b->pty), "%s/hvc0.pty", dir);
	snprintf(extra, sizeof(extra),
		 "[console \"hvc0\"]\nmmio = 0x02000600\nirq = 36\nsocket = %s\npty = yes\n"
		 "pty_link = %s\nlog = %s\n%s\n"
		 "[net \"eth0\"]\nmmio = 0x02000800\nirq = 37\ntap = " TAP "\nqueues = 2\n"
		 "queue_size = 64\n", b->sock, b->pty, b->log, c->con_keys ? c->con_keys : "");
	char eeprom[160];

	snprintf(eeprom, sizeof(eeprom), "%s/eeprom.bin", dir);
	b->h = hostile_start_cfg(&(struct hostile_cfg){ .img = c->img, .blk_keys = c->blk_keys,
							 .extra = extra,
							 .eeprom = c->eeprom ? eeprom : NULL });
	xsim_vio_init(&b->cvio, b->h->t->dom, c->con_vcpu, H_WIN(D_CON), H_SPI(D_CON));
	xsim_vio_init(&b->nvio, b->h->t->dom, 0, H_WIN(D_NET), H_SPI(D_NET));
	for (unsigned i = 0; i < 8; i++)
		b->con_rx[i] = hostile_buf(b->h, 256, &b->con_rx_host[i]);
	b->net_rx = vdrv_alloc(&b->h->mem, 32 * NET_RXBUF, 4096, NULL);
	b->ctrl_gpa = vdrv_alloc(&b->h->mem, 8192, 4096, (void **)&b->ctrl_host);
	assert_true(b->net_rx && b->ctrl_gpa);
	con_init(b);
	net_init(b);
	tap_up();
	b->h->scratch = b->h->mem.next;
	return b;
}

static void bounds_stop(struct bounds *b)
{
	char dir[128];

	snprintf(dir, sizeof(dir), "%s", b->log);
	*strrchr(dir, '/') = 0;
	hostile_stop(b->h);
	for (unsigned i = 0; i < 6; i++) {
		char p[160];

		snprintf(p, sizeof(p), i ? "%s.%u" : "%s", b->log, i);
		unlink(p);
	}
	unlink(b->pty);
	char p[160];

	snprintf(p, sizeof(p), "%s/eeprom.bin", dir);
	unlink(p);
	rmdir(dir);
	free(b);
}

static int con_connect(const char *path)
{
	int fd = unix_sock_connect(path);

	if (fd < 0)
		fail_msg("cannot connect to %s: %s", path, strerror(errno));
	return fd;
}

/* Wait until byte c has come through the console's receive buffers (since the last init). */
static bool con_rx_has(struct bounds *b, char c, int ms)
{
	struct timespec t0;
	uint32_t len;
	void *tok;

	clock_gettime(CLOCK_MONOTONIC, &t0);
	while (hostile_ms_since(&t0) < ms) {
		while (con_used(&b->con, &len, &tok)) {
			unsigned i = (unsigned)(uintptr_t)tok - 1;

			assert_true(i < 8 && len <= 256);
			for (uint32_t k = 0; k < len && b->con_seen_n < sizeof(b->con_seen); k++)
				b->con_seen[b->con_seen_n++] = (char)b->con_rx_host[i][k];
		}
		if (memchr(b->con_seen, c, b->con_seen_n))
			return true;
		hostile_sleep_ms(2);
	}
	return false;
}

/* ---- 1. chains held per queue ---------------------------------------------------------------- */

/* A 64 MiB sparse image whose first MiB is the fixture's pattern (its round trips still pass). */
static void make_big_image(char *path)
{
	static uint8_t mib[MIB];
	int fd = mkstemp(path);

	assert_true(fd >= 0);
	for (uint64_t i = 0; i < MIB; i++)
		mib[i] = hostile_img_byte(i);
	assert_int_equal(write(fd, mib, MIB), (ssize_t)MIB);
	assert_int_equal(ftruncate(fd, 64 * (off_t)MIB), 0);
	close(fd);
}

/*
 * The same 64 heads published again and again, never waiting for them: each is a 32 MiB block
 * read (32 descriptors on the same guest MiB) into an unaligned buffer with cache = none, so
 * every request needs a bounce buffer and all but two wait for bounce budget (64 MiB). A correct
 * driver never publishes a head the device still holds: the device reads NEEDS_RESET. The guest
 * resets and does it again, 5 times, and keeps publishing and kicking the broken device each
 * time for a while: the daemon's memory stays within the bounce budget, its log within the rate
 * limit.
 */
static void test_republish_in_flight(void **state)
{
	char img[] = "/tmp/itest_bounds_img.XXXXXX";
	struct bounds *b;
	struct hostile *h;
	uint8_t *hdr, *st, *data;
	struct virtio_blk_outhdr o = { htole32(VIRTIO_BLK_T_IN), 0, 0 };
	struct vring_desc *t;
	unsigned published = 0, resets = 0;
	struct timespec t0;

	(void)state;
	make_big_image(img);
	b = bounds_start(&(struct bcfg){ .img = img, .blk_keys = "cache = none\n" });
	h = b->h;

	unsigned long rss0 = rss_anon_kib(h->t->dm.pid), peak = rss0;
	uint64_t hg = hostile_buf(h, 16, &hdr), sg = hostile_buf(h, 1, &st);
	/* Not 512-aligned, so bounced; inside one 2 MiB bucket, so no mapping of its own. */
	uint64_t dg = vdrv_alloc(&h->mem, 2 * MIB, 2 * MIB, (void **)&data) + 16;
	uint64_t tg = hostile_buf(h, 34 * 16, (uint8_t **)&t);

	memcpy(hdr, &o, 16);
	t[0] = (struct vring_desc){ htole64(hostile_dma(h, hg, 16, false)), htole32(16),
				    htole16(F_NEXT), htole16(1) };
	for (unsigned i = 1; i <= 32; i++)
		t[i] = (struct vring_desc){ htole64(hostile_dma(h, dg, MIB, true)), htole32(MIB),
					    htole16(F_WRITE | F_NEXT), htole16(i + 1) };
	t[33] = (struct vring_desc){ htole64(hostile_dma(h, sg, 1, true)), htole32(1),
				     htole16(F_WRITE), 0 };
	h->scratch = h->mem.next;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	for (unsigned round = 0; round < 5; round++) {
		struct vdrv_vq *vq = hostile_vq(h, D_BLK);
		struct timespec r0;

		hostile_init(h, D_BLK);
		for (uint16_t i = 0; i < H_QSIZE; i++)
			raw_desc(vq, i, hostile_dma(h, tg, 34 * 16, false), 34 * 16, F_IND, 0);
		clock_gettime(CLOCK_MONOTONIC, &r0);
		/*
		 * Publish and kick until the device says the ring is broken, then 50 more times:
		 * never more than a ring's worth ahead of the device (that would be caught as a
		 * bad index at once), so each time wait until it took the last ones, as its
		 * avail_event says.
		 */
		for (unsigned after = 0; after < 50 && hostile_ms_since(&r0) < H_WAIT_MS;) {
			for (uint16_t i = 0; i < H_QSIZE; i++)
				raw_publish(vq, i);
			raw_kick(&h->drv[D_BLK], 0);
			published += H_QSIZE;
			while (le16toh(avail_event(vq)) != vq->avail_idx &&
			       !(hostile_status(h, D_BLK) & ST_NEEDS_RESET) &&
			       hostile_ms_since(&r0) < H_WAIT_MS)
				;
			after += (hostile_status(h, D_BLK) & ST_NEEDS_RESET) != 0;
			unsigned long r = rss_anon_kib(h->t->dm.pid);

			peak = r > peak ? r : peak;
		}
		if (!(hostile_status(h, D_BLK) & ST_NEEDS_RESET)) {
			itest_dump_log(h->t);
			fail_msg("round %u: no NEEDS_RESET after %u publications (avail %u, "
				 "avail_event %u, used %u)", round, published, vq->avail_idx,
				 le16toh(avail_event(vq)), le16toh(vq->used->idx));
		}
		resets++;
	}
	int64_t ms = hostile_ms_since(&t0);

	print_message("[  NOTE    ] %u publications in %u rounds (%lld ms), anon RSS %lu -> peak "
		      "%lu KiB, %u warnings about the ring\n", published, resets, (long long)ms,
		      rss0, peak, log_count(b, "block disk: device needs reset"));
	/*
	 * The bound: 64 MiB of bounce buffers per block device, plus slack for the rest. Under
	 * ASan the freed bounce buffers sit in its quarantine (256 MiB), so only the plain build
	 * measures the daemon's own memory.
	 */
#if defined(__SANITIZE_ADDRESS__)
	print_message("[  NOTE    ] sanitizer build: RSS bound not checked (ASan quarantine)\n");
#else
	assert_true(peak - rss0 < 96u * 1024);
#endif
	assert_true(log_count(b, "block disk: device needs reset") <= rate_bound(ms));
	hostile_after(h, D_BLK);
	bounds_stop(b);
	unlink(img);
}

/* ---- 1. guest mappings --------------------------------------------------------------------- */

static unsigned vma_count(pid_t pid)
{
	char path[64], line[512];
	unsigned n = 0;
	FILE *f;

	snprintf(path, sizeof(path), "/proc/%d/maps", (int)pid);
	f = fopen(path, "r");
	assert_non_null(f);
	while (fgets(line, sizeof(line), f))
		n++;
	fclose(f);
	return n;
}

/*
 * Receive chains of 1000 two-byte buffers, each across a 2 MiB boundary of guest RAM: every
 * buffer is a mapping of its own, and net holds chains until 64 KiB of buffer space waits for a
 * frame, 33 chains or 33 000 mappings per queue pair. Two pairs make 66 000, past
 * vm.max_map_count (65530) where every mmap of the daemon fails, malloc's and io_uring's too.
 * The bound (half of max_map_count) stops the guest first: its device reads NEEDS_RESET.
 */
static void test_mappings_bounded(void **state)
{
	struct bounds *b = bounds_start(&(struct bcfg){ 0 });
	struct hostile *h = b->h;
	struct vring_desc *t;
	uint64_t tg = hostile_buf(h, 1000 * 16, (uint8_t **)&t);
	uint16_t pairs = htole16(2);
	unsigned vma0 = vma_count(h->t->dm.pid), peak;

	(void)state;
	/* A driver that posts nothing yet, with both pairs in use. */
	assert_int_equal(vdrv_init(&b->net, &b->nvio.io, &h->mem, NET_WANT, 5, NET_Q), 0);
	assert_int_equal(net_ctrl(b, VIRTIO_NET_CTRL_MQ, VIRTIO_NET_CTRL_MQ_VQ_PAIRS_SET, &pairs, 2),
			 VIRTIO_NET_OK);
	for (unsigned i = 0; i < 1000; i++)
		t[i] = (struct vring_desc){ htole64(UINT64_C(0x40200000) - 1), htole32(2),
					    htole16(F_WRITE | (i < 999 ? F_NEXT : 0)),
					    htole16(i + 1) };
	for (unsigned q = 0; q <= 2; q += 2) {
		for (uint16_t i = 0; i < NET_Q; i++) {
			raw_desc(&b->net.vq[q], i, tg, 1000 * 16, F_IND, 0);
			raw_publish(&b->net.vq[q], i);
		}
		raw_kick(&b->net, q);
	}
	assert_true(wait_status(&b->net, ST_NEEDS_RESET, H_WAIT_MS));
	peak = vma_count(h->t->dm.pid);
	print_message("[  NOTE    ] daemon mappings %u -> %u with receive chains held\n", vma0, peak);
	assert_true(xsim_daemon_wait_log(&h->t->dm, "temporary guest mappings outstanding",
					 H_WAIT_MS));
	/* Half of max_map_count for the guest's buffers, the other half for everything else. */
	assert_true(peak <= vma0 + 32768 + 256);
	hostile_check_alive(h);
	/* The reset gives every mapping back; the device serves again. */
	net_init(b);
	assert_true(vma_count(h->t->dm.pid) < vma0 + 100);
	assert_true(net_frame_arrives(b));
	bounds_stop(b);
}

/* ---- 2. a broken device costs nothing ---------------------------------------------------------- */

/*
 * Console and net broken (a head beyond the ring on their transmit queues); then a byte arrives
 * on the console socket and on the pty, and a frame on the tap. Nobody will take them until the
 * guest resets the devices: the daemon stays idle. After the reset the input arrives.
 */
static void test_broken_devices_idle(void **state)
{
	struct bounds *b = bounds_start(&(struct bcfg){ 0 });
	struct hostile *h = b->h;
	int cfd = con_connect(b->sock), pfd;
	unsigned long t0, used;

	(void)state;
	assert_true(xsim_daemon_wait_log(&h->t->dm, "client attached", H_WAIT_MS));
	raw_publish(&b->con.vq[1], 0xffff);
	raw_kick(&b->con, 1);
	raw_publish(&b->net.vq[1], 0xfff0);
	raw_kick(&b->net, 1);
	assert_true(wait_status(&b->con, ST_NEEDS_RESET, H_WAIT_MS));
	assert_true(wait_status(&b->net, ST_NEEDS_RESET, H_WAIT_MS));
	/* Traffic for both. */
	assert_int_equal(write(cfd, "s", 1), 1);
	pfd = open(b->pty, O_RDWR | O_NOCTTY | O_CLOEXEC);
	assert_true(pfd >= 0);
	assert_int_equal(write(pfd, "p", 1), 1);
	tap_frame();
	/* A second of wall time: how much of it did the daemon spend? */
	t0 = itest_cpu_ticks(h->t->dm.pid);
	hostile_sleep_ms(1000);
	used = itest_cpu_ticks(h->t->dm.pid) - t0;
	print_message("[  NOTE    ] %lu of %ld ticks in 1 s with both devices broken\n", used,
		      sysconf(_SC_CLK_TCK));
	assert_true(used <= (unsigned long)sysconf(_SC_CLK_TCK) / 20);
	/* Re-initialised, both take their input again. */
	con_init(b);
	assert_true(con_rx_has(b, 's', H_WAIT_MS));
	assert_true(con_rx_has(b, 'p', H_WAIT_MS));
	net_init(b);
	assert_true(net_frame_arrives(b));
	close(pfd);
	close(cfd);
	hostile_check_alive(h);
	bounds_stop(b);
}

/* ---- 3. host files: the console log ---------------------------------------------------------- */

struct con_flood {
	struct bounds *b;
	unsigned kicks;
	volatile bool stop;
};

/*
 * Transmit chains of 256 descriptors that all point at the same 1 MiB of guest RAM: 256 MiB of
 * output per chain, from 1 MiB of memory.
 */
static void *con_flood_thread(void *arg)
{
	struct con_flood *f = arg;
	struct vdrv_vq *vq = &f->b->con.vq[1];

	while (!f->stop) {
		for (uint16_t i = 0; i < 4; i++)
			raw_publish(vq, i);
		raw_kick(&f->b->con, 1);
		f->kicks++;
		/* Kicks may be asynchronous (ioeventfd): never run more than a ring ahead. */
		while (!f->stop && le16toh(avail_event(vq)) != vq->avail_idx)
			sched_yield();
	}
	return NULL;
}

static void test_console_log_bounded(void **state)
{
	struct bounds *b = bounds_start(&(struct bcfg){
		.con_keys = "log_max_size = 1024\nlog_keep = 2\n", .con_vcpu = 1 });
	struct hostile *h = b->h;
	struct con_flood f = { .b = b };
	uint8_t *ram;
	struct vring_desc *t;
	uint64_t rg = vdrv_alloc(&h->mem, MIB, 4096, (void **)&ram);
	uint64_t tg = hostile_buf(h, 256 * 16, (uint8_t **)&t);
	int64_t worst = 0;
	unsigned trips = 0;
	pthread_t th;
	struct timespec t0;

	(void)state;
	assert_true(rg != 0);
	memset(ram, 'A', MIB);
	for (unsigned i = 0; i < 256; i++)
		t[i] = (struct vring_desc){ htole64(hostile_dma(h, rg, MIB, false)), htole32(MIB),
					    htole16(i < 255 ? F_NEXT : 0), htole16(i + 1) };
	for (uint16_t i = 0; i < 4; i++)
		raw_desc(&b->con.vq[1], i, hostile_dma(h, tg, 256 * 16, false), 256 * 16, F_IND, 0);
	h->scratch = h->mem.next;
	assert_int_equal(pthread_create(&th, NULL, con_flood_thread, &f), 0);
	/* Meanwhile the rng's round trips on vCPU 0. */
	clock_gettime(CLOCK_MONOTONIC, &t0);
	while (hostile_ms_since(&t0) < 2000) {
		struct timespec r0;

		clock_gettime(CLOCK_MONOTONIC, &r0);
		hostile_scratch_reset(h);
		hostile_rt_rng(h);
		int64_t ms = hostile_ms_since(&r0);

		worst = ms > worst ? ms : worst;
		trips++;
	}
	f.stop = true;
	pthread_join(th, NULL);
	/* Every chain taken and returned: the daemon has written (and rotated) all it will. */
	{
		struct vdrv_vq *vq = &b->con.vq[1];
		struct timespec w0;

		clock_gettime(CLOCK_MONOTONIC, &w0);
		while (le16toh(__atomic_load_n(&vq->used->idx, __ATOMIC_ACQUIRE)) != vq->avail_idx &&
		       hostile_ms_since(&w0) < H_WAIT_MS)
			hostile_sleep_ms(1);
		assert_int_equal(le16toh(vq->used->idx), vq->avail_idx);
	}
	char p1[160], p2[160], p3[160];

	snprintf(p1, sizeof(p1), "%s.1", b->log);
	snprintf(p2, sizeof(p2), "%s.2", b->log);
	snprintf(p3, sizeof(p3), "%s.3", b->log);
	print_message("[  NOTE    ] %u kicks of 4 chains x 256 MiB; log %lld + %lld + %lld bytes; "
		      "%u rng round trips, worst %lld ms\n", f.kicks, (long long)file_size(b->log),
		      (long long)file_size(p1), (long long)file_size(p2), trips, (long long)worst);
	/* log_max_size = 1024 KiB, log_keep = 2: three files of at most 1 MiB, no fourth. */
	assert_true(file_size(b->log) <= (off_t)MIB);
	assert_true(file_size(p1) > 0 && file_size(p1) <= (off_t)MIB);
	assert_true(file_size(p2) > 0 && file_size(p2) <= (off_t)MIB);
	assert_int_equal(file_size(p3), -1);
	assert_true(worst < 2000);     /* 3.7 s before the console's caps; 2 s as in attack 51 */
	assert_true(xsim_daemon_wait_log(&h->t->dm, "transmit chain", H_WAIT_MS));
	assert_true(hostile_log_lines(h) < 200);
	hostile_check_alive(h);
	bounds_stop(b);
}

/* ---- 3. host files: EEPROM saves ---------------------------------------------------------------- */

static unsigned drain_renames(int ifd)
{
	char buf[4096];
	unsigned n = 0;
	ssize_t r;

	while ((r = read(ifd, buf, sizeof(buf))) > 0) {
		for (char *p = buf; p < buf + r;) {
			struct inotify_event *ev = (struct inotify_event *)(void *)p;

			n += (ev->mask & IN_MOVED_TO) && ev->len && !strcmp(ev->name, "eeprom.bin");
			p += sizeof(*ev) + ev->len;
		}
	}
	return n;
}

/* 500 one-byte EEPROM writes back to back: a handful of saves, not 500 fsync'd renames. */
static void test_eeprom_burst_coalesced(void **state)
{
	struct bounds *b = bounds_start(&(struct bcfg){ .eeprom = true });
	struct hostile *h = b->h;
	char dir[128], file[160];
	uint8_t want[256], got[256];
	unsigned renames = 0;
	struct timespec t0;
	int ifd;

	(void)state;
	snprintf(dir, sizeof(dir), "%s", b->log);
	*strrchr(dir, '/') = 0;
	snprintf(file, sizeof(file), "%s/eeprom.bin", dir);
	ifd = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
	assert_true(ifd >= 0);
	assert_true(inotify_add_watch(ifd, dir, IN_MOVED_TO) >= 0);
	memset(want, 0xff, sizeof(want));
	clock_gettime(CLOCK_MONOTONIC, &t0);
	for (unsigned i = 0; i < 500; i++) {
		uint8_t m[2] = { (uint8_t)(i % 256), (uint8_t)(i * 7) };

		want[m[0]] = m[1];
		hostile_scratch_reset(h);
		assert_int_equal(hostile_i2c(h, 0x50, false, m, 2), 0);
		/* Read as we go: inotify merges an event identical to the last one queued. */
		renames += drain_renames(ifd);
	}
	int64_t ms = hostile_ms_since(&t0);

	/* The file catches up with what the guest wrote. */
	for (int waited = 0; waited < H_WAIT_MS; waited += 10) {
		FILE *fp = fopen(file, "rb");
		size_t n = fp ? fread(got, 1, sizeof(got), fp) : 0;

		if (fp)
			fclose(fp);
		if (n == sizeof(got) && !memcmp(got, want, sizeof(want)))
			break;
		hostile_sleep_ms(10);
	}
	assert_memory_equal(got, want, sizeof(want));
	renames += drain_renames(ifd);
	close(ifd);
	print_message("[  NOTE    ] 500 EEPROM writes in %lld ms: %u saves\n", (long long)ms,
		      renames);
	/* One save right away, then at most one per 250 ms window, and the last one. */
	assert_true(renames <= 2 + (unsigned)(ms / 250));
	/* What the guest reads is what the file holds. */
	{
		uint8_t at = 0, g[256];

		hostile_scratch_reset(h);
		assert_int_equal(hostile_i2c(h, 0x50, false, &at, 1), 0);
		assert_int_equal(hostile_i2c(h, 0x50, true, g, 256), 0);
		assert_memory_equal(g, want, 256);
	}
	hostile_check_alive(h);
	bounds_stop(b);
}

/* ---- 5. log lines ------------------------------------------------------------------------------ */

/* 5000 writes to a register that does not exist, then a broken ring: its warning is not hidden. */
static void test_noise_does_not_hide_needs_reset(void **state)
{
	struct bounds *b = bounds_start(&(struct bcfg){ 0 });
	struct hostile *h = b->h;

	(void)state;
	for (unsigned i = 0; i < 5000; i++)
		vdrv_write32(&h->drv[D_RNG], 0x0f0, i);
	hostile_expect_broken(h, D_RNG, 0xffff);
	assert_true(xsim_daemon_wait_log(&h->t->dm, "rng: device needs reset", H_WAIT_MS));
	print_message("[  NOTE    ] %u log lines\n", hostile_log_lines(h));
	assert_true(hostile_log_lines(h) < 200);
	hostile_after(h, D_RNG);
	bounds_stop(b);
}

static uint8_t net_ctrl(struct bounds *b, uint8_t cls, uint8_t cmd, const void *d, size_t len)
{
	struct vdrv_buf cb[2] = {
		{ hostile_dma(b->h, b->ctrl_gpa, 2 + len, false), (uint32_t)(2 + len), false },
		{ hostile_dma(b->h, b->ctrl_gpa + 4096, 1, true), 1, true },
	};

	b->ctrl_host[0] = cls;
	b->ctrl_host[1] = cmd;
	memcpy(b->ctrl_host + 2, d, len);
	b->ctrl_host[4096] = 0xee;
	/* vdrv translates addresses itself: hand it guest addresses. */
	cb[0].gpa = b->ctrl_gpa;
	cb[1].gpa = b->ctrl_gpa + 4096;
	assert_int_equal(vdrv_transfer(&b->net, 4, cb, 2, false, H_WAIT_MS), 1);
	return b->ctrl_host[4096];
}

/* The lines of the kind a pair-count change logs, and the count of those suppressed. */
static unsigned pair_lines(struct bounds *b)
{
	return log_count(b, "queue pair(s) in use") + log_count(b, "net eth0: notices: ");
}

/* 500 multiqueue commands, each a legal change of the pair count: not one line each. */
static void test_net_ctrl_flood_log(void **state)
{
	struct bounds *b = bounds_start(&(struct bcfg){ 0 });
	unsigned before = pair_lines(b), lines;
	struct timespec t0;

	(void)state;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	for (unsigned i = 0; i < 500; i++) {
		uint16_t pairs = htole16((uint16_t)(1 + (i & 1)));

		assert_int_equal(net_ctrl(b, VIRTIO_NET_CTRL_MQ, VIRTIO_NET_CTRL_MQ_VQ_PAIRS_SET,
					  &pairs, 2), VIRTIO_NET_OK);
	}
	int64_t ms = hostile_ms_since(&t0);

	lines = pair_lines(b) - before;
	print_message("[  NOTE    ] %u log lines for 500 commands in %lld ms (bound %u)\n", lines,
		      (long long)ms, rate_bound(ms));
	assert_true(lines <= rate_bound(ms));
	hostile_check_alive(b->h);
	bounds_stop(b);
}

/* ---- 6. honest drivers, clean logs --------------------------------------------------------------- */

/*
 * What Linux's virtio-mmio does when a driver is unbound (or the guest suspends): reset, then
 * for each queue QueueSel, QueueReady = 0 and a read back (vm_del_vq), then ACKNOWLEDGE again.
 */
static void linux_unbind(struct vdrv *d, unsigned nq)
{
	vdrv_reset(d);
	for (unsigned q = 0; q < nq; q++) {
		vdrv_write32(d, R_QUEUE_SEL, q);
		vdrv_write32(d, R_QUEUE_READY, 0);
		assert_int_equal(vdrv_read32(d, R_QUEUE_READY), 0);
	}
	vdrv_write32(d, 0x070, VIRTIO_STATUS_ACKNOWLEDGE);
}

static void test_honest_unbind_rebind_clean_log(void **state)
{
	struct bounds *b = bounds_start(&(struct bcfg){ 0 });
	struct hostile *h = b->h;
	unsigned warn0 = log_count(b, "warning:") + log_count(b, "error:");

	(void)state;
	for (unsigned round = 0; round < 3; round++) {
		for (unsigned d = 0; d < ND; d++) {
			linux_unbind(&h->drv[d], 1);
			hostile_init(h, d);
			hostile_rt(h, d);
		}
		linux_unbind(&b->con, 2);
		con_init(b);
		linux_unbind(&b->net, 5);
		net_init(b);
	}
	/* A console client typing and a frame on the tap after all that: still served quietly. */
	int cfd = con_connect(b->sock);

	assert_int_equal(write(cfd, "x", 1), 1);
	assert_true(con_rx_has(b, 'x', H_WAIT_MS));
	close(cfd);
	unsigned warn = log_count(b, "warning:") + log_count(b, "error:") - warn0;

	if (warn) {
		itest_dump_log(h->t);
		fail_msg("%u warnings or errors after honest unbind/rebind cycles", warn);
	}
	hostile_check_alive(h);
	bounds_stop(b);
}

static int run(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_republish_in_flight),
		cmocka_unit_test(test_mappings_bounded),
		cmocka_unit_test(test_broken_devices_idle),
		cmocka_unit_test(test_console_log_bounded),
		cmocka_unit_test(test_eeprom_burst_coalesced),
		cmocka_unit_test(test_noise_does_not_hide_needs_reset),
		cmocka_unit_test(test_net_ctrl_flood_log),
		cmocka_unit_test(test_honest_unbind_rebind_clean_log),
	};

	/* BOUNDS_FILTER=test_x (a glob) runs only matching tests, for loops while developing. */
	if (getenv("BOUNDS_FILTER"))
		cmocka_set_test_filter(getenv("BOUNDS_FILTER"));
	return cmocka_run_group_tests(tests, NULL, NULL);
}

int main(void)
{
	/* A private network namespace: the daemon we start inherits it with its tap. */
	return itest_in_netns("test_bounds", run);
}
