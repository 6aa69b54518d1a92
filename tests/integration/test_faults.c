/*
 * Faults under the real sim daemon serving the three-device guest of test_hostile.h: the host
 * side fails, the guest is fine. Block images that run out of space (a tiny tmpfs), a loop
 * device whose backing store fails, short writes (RLIMIT_FSIZE) and short reads (the image
 * truncated under the daemon); an EEPROM whose folder turns read-only; a console client that
 * hangs up mid-output; the tap deleted under a running net device; the guest destroyed with
 * requests in flight; SIGTERM with requests in flight. After each: the daemon lives (or exits
 * 0 where it should), the fault shows up as an error status or a log line, every acknowledged
 * write reads back, and the other devices work.
 *
 * Mounts and the tap happen in private mount and network namespaces entered at start (root
 * needed; those tests are skipped without).
 */
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <sys/mount.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/un.h>

#include "devices/i2c_sim.h"
#include "tests/integration/test_hostile.h"
#include "tests/lib/unix_sock.h"

#define CHUNK      (64u << 10)
#define CHUNK_SECT (CHUNK / 512u)

static bool private_mounts;

static uint8_t chunk_byte(unsigned k, unsigned i)
{
	return (uint8_t)(k * 31 + i * 7 + 3);
}

/* A tmpfs of `size` at dir/name, created; "" when mounts are not possible (test skipped). */
static void mount_tmpfs(char *out, size_t len, const char *dir, const char *name,
			const char *size)
{
	char opts[32];

	snprintf(out, len, "%s/%s", dir, name);
	snprintf(opts, sizeof(opts), "size=%s", size);
	assert_int_equal(mkdir(out, 0700), 0);
	if (!private_mounts || mount("tmpfs", out, "tmpfs", 0, opts) < 0) {
		print_message("[  SKIP    ] cannot mount a tmpfs\n");
		skip();
	}
}

static void make_sparse(const char *path, off_t size)
{
	int fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);

	assert_true(fd >= 0);
	assert_int_equal(ftruncate(fd, size), 0);
	close(fd);
}

/* Block write of chunk k (CHUNK bytes of chunk_byte(k, i)) at sector; the status byte. */
static uint8_t write_chunk(struct hostile *h, unsigned k, uint64_t sector)
{
	static uint8_t buf[CHUNK];

	for (unsigned i = 0; i < CHUNK; i++)
		buf[i] = chunk_byte(k, i);
	hostile_scratch_reset(h);
	return hostile_blk_rw(h, VIRTIO_BLK_T_OUT, sector, buf, CHUNK);
}

/* Read chunk k back from sector through the guest: true when every byte matches. */
static bool chunk_reads_back(struct hostile *h, unsigned k, uint64_t sector)
{
	static uint8_t buf[CHUNK];

	hostile_scratch_reset(h);
	if (hostile_blk_rw(h, VIRTIO_BLK_T_IN, sector, buf, CHUNK) != VIRTIO_BLK_S_OK)
		return false;
	for (unsigned i = 0; i < CHUNK; i++)
		if (buf[i] != chunk_byte(k, i))
			return false;
	return true;
}

/* The daemon lives and the rng and i2c devices still pass a round trip; canaries intact. */
static void others_fine(struct hostile *h)
{
	hostile_check_alive(h);
	hostile_rt(h, D_RNG);
	hostile_rt(h, D_I2C);
	for (unsigned c = 0; c < 3; c++)
		for (unsigned i = 0; i < H_CANARY_LEN; i++)
			if (h->canary[c][i] != (uint8_t)(0xa5 ^ i ^ (i >> 8) ^ c))
				fail_msg("canary %u byte 0x%x changed", c, i);
}

static void unmount(const char *mnt)
{
	umount2(mnt, MNT_DETACH);
	rmdir(mnt);
}

/* ---- ENOSPC ---- */

/* A 4 MiB sparse image on a 512 KiB tmpfs: writes fail with IOERR once the space is gone. */
static void test_enospc(void **state)
{
	char dir[] = "/tmp/itest_faults.XXXXXX", mnt[96], img[128];
	unsigned ok = 0, err = 0;
	struct hostile *h;

	(void)state;
	assert_non_null(mkdtemp(dir));
	mount_tmpfs(mnt, sizeof(mnt), dir, "mnt", "512k");
	snprintf(img, sizeof(img), "%s/disk.img", mnt);
	make_sparse(img, 4 << 20);
	h = hostile_start_cfg(&(struct hostile_cfg){ .img = img });
	for (unsigned k = 0; k < 64 && err < 2; k++) {
		uint8_t st = write_chunk(h, k, (uint64_t)k * CHUNK_SECT);

		assert_true(st == VIRTIO_BLK_S_OK || st == VIRTIO_BLK_S_IOERR);
		if (st == VIRTIO_BLK_S_OK)
			assert_int_equal(err, 0);   /* once full, it stays full */
		ok += st == VIRTIO_BLK_S_OK;
		err += st == VIRTIO_BLK_S_IOERR;
	}
	assert_true(ok >= 1);
	assert_int_equal(err, 2);
	assert_true(xsim_daemon_log_has(&h->t->dm, "No space left on device"));
	/* Not a broken device: acknowledged writes read back, the rest reads as before. */
	assert_int_equal(hostile_status(h, D_BLK), 0xf);
	for (unsigned k = 0; k < ok; k++)
		assert_true(chunk_reads_back(h, k, (uint64_t)k * CHUNK_SECT));
	/* Discarding what was written frees the space: the refused write now succeeds. */
	struct virtio_blk_dwz_seg seg = { htole64(0), htole32(CHUNK_SECT), 0 };

	hostile_scratch_reset(h);
	assert_int_equal(hostile_blk_rw(h, VIRTIO_BLK_T_DISCARD, 0, (uint8_t *)&seg, 16),
			 VIRTIO_BLK_S_OK);
	assert_int_equal(write_chunk(h, ok, (uint64_t)ok * CHUNK_SECT), VIRTIO_BLK_S_OK);
	assert_true(chunk_reads_back(h, ok, (uint64_t)ok * CHUNK_SECT));
	others_fine(h);
	hostile_stop(h);
	unmount(mnt);
	rmdir(dir);
}

/* ---- EIO from a block device ---- */

static int sh(const char *cmd)
{
	int rc = system(cmd);

	return WIFEXITED(rc) ? WEXITSTATUS(rc) : -1;
}

/* A loop device over a 4 MiB sparse file on a 256 KiB tmpfs; "" (test skipped) without one. */
static void loop_setup(char *dev, size_t len, char *dir, char *mnt, size_t mlen)
{
	char back[128], cmd[256];
	FILE *p;

	assert_non_null(mkdtemp(dir));
	mount_tmpfs(mnt, mlen, dir, "mnt", "256k");
	snprintf(back, sizeof(back), "%s/back.img", mnt);
	make_sparse(back, 4 << 20);
	snprintf(cmd, sizeof(cmd), "losetup --find --show %s 2>/dev/null", back);
	p = popen(cmd, "r");
	dev[0] = '\0';
	if (!p || !fgets(dev, (int)len, p) || dev[0] != '/') {
		if (p)
			pclose(p);
		unmount(mnt);
		rmdir(dir);
		print_message("[  SKIP    ] no loop device available\n");
		skip();
	}
	pclose(p);
	dev[strcspn(dev, "\n")] = '\0';
}

static void loop_teardown(const char *dev, const char *dir, const char *mnt)
{
	char cmd[128];

	snprintf(cmd, sizeof(cmd), "losetup -d %s", dev);
	assert_int_equal(sh(cmd), 0);
	unmount(mnt);
	rmdir(dir);
}

/* Served with cache = none: the writes themselves fail once the backing store is full. */
static void test_loop_device_direct_writes_fail(void **state)
{
	char dir[] = "/tmp/itest_faults.XXXXXX", mnt[96], dev[64];
	char keys[] = "cache = none\n";
	unsigned ok = 0, err = 0;
	struct hostile *h;

	(void)state;
	loop_setup(dev, sizeof(dev), dir, mnt, sizeof(mnt));
	h = hostile_start_cfg(&(struct hostile_cfg){ .img = dev, .blk_keys = keys });
	for (unsigned k = 0; k < 64 && err < 2; k++) {
		uint8_t st = write_chunk(h, k, (uint64_t)k * CHUNK_SECT);

		assert_true(st == VIRTIO_BLK_S_OK || st == VIRTIO_BLK_S_IOERR);
		ok += st == VIRTIO_BLK_S_OK;
		err += st == VIRTIO_BLK_S_IOERR;
	}
	assert_int_equal(err, 2);
	/* The loop driver hands the backing file's ENOSPC up as such. */
	assert_true(xsim_daemon_log_has(&h->t->dm, "failed: No space left on device"));
	/* Writes that were acknowledged read back; the device itself is not broken. */
	assert_int_equal(hostile_status(h, D_BLK), 0xf);
	for (unsigned k = 0; k < ok; k++)
		assert_true(chunk_reads_back(h, k, (uint64_t)k * CHUNK_SECT));
	others_fine(h);
	hostile_stop(h);
	loop_teardown(dev, dir, mnt);
}

/*
 * A real EIO: with the default cache = writeback, 1 MiB of writes land in the loop device's
 * page cache and are acknowledged; the FLUSH that must write them back to the full tmpfs fails
 * with EIO and completes with IOERR, so the guest learns they are not durable.
 */
static void test_loop_device_flush_eio(void **state)
{
	char dir[] = "/tmp/itest_faults.XXXXXX", mnt[96], dev[64];
	struct hostile *h;
	uint8_t st;

	(void)state;
	loop_setup(dev, sizeof(dev), dir, mnt, sizeof(mnt));
	h = hostile_start_cfg(&(struct hostile_cfg){ .img = dev });
	for (unsigned k = 0; k < 16; k++)
		assert_int_equal(write_chunk(h, k, (uint64_t)k * CHUNK_SECT), VIRTIO_BLK_S_OK);
	hostile_scratch_reset(h);
	st = hostile_blk_rw(h, VIRTIO_BLK_T_FLUSH, 0, NULL, 0);
	assert_int_equal(st, VIRTIO_BLK_S_IOERR);
	assert_true(xsim_daemon_log_has(&h->t->dm, "failed: Input/output error"));
	assert_int_equal(hostile_status(h, D_BLK), 0xf);
	others_fine(h);
	hostile_stop(h);
	loop_teardown(dev, dir, mnt);
}

/* ---- short writes and short reads ---- */

/*
 * RLIMIT_FSIZE on the daemon at 512 KiB + 512: a write across the limit is cut short by the
 * kernel, one wholly past it fails with EFBIG (and SIGXFSZ). Both must end as IOERR.
 */
static void test_short_write_fsize_limit(void **state)
{
	struct hostile *h = hostile_start(false);
	struct rlimit rl = { (512u << 10) + 512, (512u << 10) + 512 };
	static uint8_t buf[4096];

	(void)state;
	assert_int_equal(prlimit(h->t->dm.pid, RLIMIT_FSIZE, &rl, NULL), 0);
	memset(buf, 0x77, sizeof(buf));
	/* Across the limit: 512 bytes fit, 3584 do not. */
	hostile_scratch_reset(h);
	assert_int_equal(hostile_blk_rw(h, VIRTIO_BLK_T_OUT, 1024, buf, 4096),
			 VIRTIO_BLK_S_IOERR);
	/* Wholly past it. */
	hostile_scratch_reset(h);
	assert_int_equal(hostile_blk_rw(h, VIRTIO_BLK_T_OUT, 1500, buf, 4096),
			 VIRTIO_BLK_S_IOERR);
	hostile_check_alive(h);
	/* The short write shows as EIO, the refused one as EFBIG; SIGXFSZ killed nobody. */
	assert_true(xsim_daemon_log_has(&h->t->dm, "at sector 1024 failed: Input/output error"));
	assert_true(xsim_daemon_log_has(&h->t->dm, "at sector 1500 failed: File too large"));
	/* Below the limit writes go on; what was refused is not claimed written. */
	hostile_scratch_reset(h);
	assert_int_equal(hostile_blk_rw(h, VIRTIO_BLK_T_OUT, 8, buf, 512), VIRTIO_BLK_S_OK);
	h->img_lo = 8 * 512;
	h->img_hi = 9 * 512;
	/* The part past the cut (sector 1025 on) still holds the old bytes. */
	{
		static uint8_t img[H_IMG_SIZE];
		FILE *f = fopen(h->img, "rb");

		assert_non_null(f);
		assert_int_equal(fread(img, 1, H_IMG_SIZE, f), H_IMG_SIZE);
		fclose(f);
		for (uint64_t i = 1025 * 512; i < 1032 * 512; i++)
			assert_int_equal(img[i], hostile_img_byte(i));
		for (uint64_t i = 1500 * 512; i < 1508 * 512; i++)
			assert_int_equal(img[i], hostile_img_byte(i));
		/* The 512 bytes under the limit may or may not have landed; nothing else did. */
		h->img_lo = 8 * 512;
		h->img_hi = 1025 * 512;
		for (uint64_t i = 0; i < H_IMG_SIZE; i++)
			if (i < 8 * 512 || (i >= 9 * 512 && i < 1024 * 512) || i >= 1025 * 512)
				assert_int_equal(img[i], hostile_img_byte(i));
	}
	others_fine(h);
	hostile_stop(h);
}

/* The image truncated to half under the daemon: reads past the new end are short: IOERR. */
static void test_short_read_image_shrinks(void **state)
{
	struct hostile *h = hostile_start(false);
	static uint8_t buf[4096];

	(void)state;
	assert_int_equal(truncate(h->img, H_IMG_SIZE / 2), 0);
	hostile_scratch_reset(h);
	assert_int_equal(hostile_blk_rw(h, VIRTIO_BLK_T_IN, H_SECTORS / 2 + 8, buf, 4096),
			 VIRTIO_BLK_S_IOERR);
	hostile_scratch_reset(h);
	assert_int_equal(hostile_blk_rw(h, VIRTIO_BLK_T_IN, H_SECTORS / 2 - 4, buf, 4096),
			 VIRTIO_BLK_S_IOERR);
	/* Below the new end everything is as before. */
	hostile_rt(h, D_BLK);
	assert_int_equal(hostile_status(h, D_BLK), 0xf);
	others_fine(h);
	hostile_stop(h);
}

/* ---- i2c: the EEPROM's folder turns read-only ---- */

static void read_file(const char *path, uint8_t *out, size_t len)
{
	FILE *f = fopen(path, "rb");

	assert_non_null(f);
	assert_int_equal(fread(out, 1, len, f), len);
	fclose(f);
}

static void ee_write(struct hostile *h, uint8_t at, const char *s, uint8_t want)
{
	uint8_t m[9];
	size_t n = strlen(s);

	m[0] = at;
	memcpy(m + 1, s, n);
	hostile_scratch_reset(h);
	assert_int_equal(hostile_i2c(h, 0x50, false, m, (uint32_t)n + 1), want);
}

static void ee_read_all(struct hostile *h, uint8_t *out)
{
	uint8_t at = 0;

	hostile_scratch_reset(h);
	assert_int_equal(hostile_i2c(h, 0x50, false, &at, 1), 0);
	assert_int_equal(hostile_i2c(h, 0x50, true, out, 256), 0);
}

static bool dir_has_tmp(const char *dir)
{
	char cmd[200];

	snprintf(cmd, sizeof(cmd), "ls %s | grep -q tmp", dir);
	return sh(cmd) == 0;
}

static void test_eeprom_folder_read_only(void **state)
{
	char dir[] = "/tmp/itest_faults.XXXXXX", mnt[96], file[128];
	uint8_t f1[256], f2[256], g[256];
	struct hostile *h;

	(void)state;
	assert_non_null(mkdtemp(dir));
	mount_tmpfs(mnt, sizeof(mnt), dir, "ee", "64k");
	snprintf(file, sizeof(file), "%s/eeprom.bin", mnt);
	h = hostile_start_cfg(&(struct hostile_cfg){ .eeprom = file });
	ee_write(h, 0x10, "abcd", 0);
	read_file(file, f1, 256);
	assert_memory_equal(f1 + 0x10, "abcd", 4);
	/* The folder turns read-only (a remount: root ignores permission bits). */
	assert_int_equal(mount(NULL, mnt, NULL, MS_REMOUNT | MS_RDONLY, NULL), 0);
	/*
	 * Saves are coalesced: only a write after a quiet period is saved (and can fail) at once;
	 * one within I2C_SIM_SAVE_MS of the last save would be saved later. Let the period pass.
	 */
	hostile_sleep_ms(I2C_SIM_SAVE_MS + 50);
	ee_write(h, 0x20, "wxyz", 1);
	assert_true(xsim_daemon_log_has(&h->t->dm, "Read-only file system"));
	/* The file is whole and unchanged, no temporary file is left behind. */
	read_file(file, f2, 256);
	assert_memory_equal(f1, f2, 256);
	assert_false(dir_has_tmp(mnt));
	/* A write reported failed did not happen: the guest reads what the file holds. */
	ee_read_all(h, g);
	assert_memory_equal(g, f1, 256);
	others_fine(h);
	/* Writable again: the next write persists, and the file is what the guest reads. */
	assert_int_equal(mount(NULL, mnt, NULL, MS_REMOUNT, NULL), 0);
	ee_write(h, 0x30, "q", 0);
	read_file(file, f2, 256);
	ee_read_all(h, g);
	assert_memory_equal(f2, g, 256);
	assert_memory_equal(g + 0x10, "abcd", 4);
	assert_int_equal(g[0x30], 'q');
	hostile_stop(h);
	unmount(mnt);
	rmdir(dir);
}

/* ---- console: the socket client hangs up mid-output ---- */

#define CON_WIN UINT64_C(0x02000600)
#define CON_SPI 36

static int con_connect(const char *path)
{
	for (int i = 0; i < 100; i++) {
		int fd = unix_sock_connect(path);

		if (fd >= 0)
			return fd;
		hostile_sleep_ms(10);
	}
	fail_msg("cannot connect to %s: %s", path, strerror(errno));
	return -1;
}

/* Read what arrives within ms; the byte count. */
static size_t con_drain(int fd, int ms)
{
	char buf[4096];
	size_t total = 0;
	struct pollfd p = { fd, POLLIN, 0 };

	while (poll(&p, 1, ms) > 0) {
		ssize_t n = read(fd, buf, sizeof(buf));

		if (n <= 0)
			break;
		total += (size_t)n;
	}
	return total;
}

/* Guest output of len bytes on the console's transmit queue; waits until it is used. */
static void con_out(struct hostile *h, struct vdrv *con, size_t len)
{
	uint8_t *p;
	uint64_t gpa;

	hostile_scratch_reset(h);
	gpa = hostile_buf(h, (uint32_t)len, &p);
	memset(p, 'x', len);
	struct vdrv_buf b = { gpa, (uint32_t)len, false };

	if (vdrv_transfer(con, 1, &b, 1, false, H_WAIT_MS) < 0) {
		itest_dump_log(h->t);
		fail_msg("console output of %zu bytes not taken within %d ms", len, H_WAIT_MS);
	}
}

static void test_console_client_hangs_up(void **state)
{
	char dir[] = "/tmp/itest_faults.XXXXXX", extra[400], sock[200];
	struct xsim_vio vio;
	struct vdrv con;
	struct hostile *h;
	int fd;

	(void)state;
	assert_non_null(mkdtemp(dir));
	snprintf(sock, sizeof(sock), "%s/con.sock", dir);
	snprintf(extra, sizeof(extra), "[console \"hvc0\"]\nmmio = 0x02000600\nirq = 36\n"
		 "socket = %s\n", sock);
	h = hostile_start_cfg(&(struct hostile_cfg){ .extra = extra });
	memset(&con, 0, sizeof(con));
	xsim_vio_init(&vio, h->t->dom, 0, CON_WIN, CON_SPI);
	assert_int_equal(vdrv_init(&con, &vio.io, &h->mem, H_RING, 2, 64), 0);
	assert_int_equal(con.device_id, 3);
	h->scratch = h->mem.next;    /* buffers after the console's rings, never over them */
	fd = con_connect(sock);
	con_out(h, &con, 1000);
	assert_true(con_drain(fd, 500) >= 1000);
	/* The client leaves while the guest keeps writing: every chain is still served. */
	con_out(h, &con, 4096);
	close(fd);
	for (unsigned i = 0; i < 64; i++)
		con_out(h, &con, 4096);
	hostile_check_alive(h);
	/* The next client is served: it gets what the ring kept, then new output. */
	fd = con_connect(sock);
	con_out(h, &con, 100);
	assert_true(con_drain(fd, 500) >= 100);
	/* And it may vanish without reading anything, with output pending. */
	shutdown(fd, SHUT_RDWR);
	close(fd);
	for (unsigned i = 0; i < 16; i++)
		con_out(h, &con, 4096);
	others_fine(h);
	hostile_rt(h, D_BLK);
	hostile_stop(h);
	unlink(sock);
	rmdir(dir);
}

/* ---- net: the tap is deleted while the guest sends and receives ---- */

#define NET_WIN UINT64_C(0x02000600)
#define NET_SPI 36
#define NET_HDR 12

static bool private_net;


/* One broadcast frame on the transmit queue; waits until it is used. */
static void net_tx(struct hostile *h, struct vdrv *net)
{
	uint8_t *p;
	uint64_t gpa;

	hostile_scratch_reset(h);
	gpa = hostile_buf(h, NET_HDR + 60, &p);
	memset(p + NET_HDR, 0xff, 6);                 /* broadcast */
	memcpy(p + NET_HDR + 6, "\x02\x00\x00\x00\x00\x01", 6);
	p[NET_HDR + 12] = 0x88;                       /* a local experimental ethertype */
	p[NET_HDR + 13] = 0xb5;
	struct vdrv_buf b = { gpa, NET_HDR + 60, false };

	assert_true(vdrv_transfer(net, 1, &b, 1, false, H_WAIT_MS) >= 0);
}

static void test_tap_deleted(void **state)
{
	char extra[200];
	struct xsim_vio vio;
	struct vdrv net;
	struct hostile *h;
	unsigned long t0;

	(void)state;
	if (!private_net || access("/dev/net/tun", R_OK | W_OK) < 0) {
		print_message("[  SKIP    ] no private network namespace or no /dev/net/tun\n");
		skip();
	}
	snprintf(extra, sizeof(extra), "[net \"eth0\"]\nmmio = 0x02000600\nirq = 36\n"
		 "tap = hxtap0\n");
	h = hostile_start_cfg(&(struct hostile_cfg){ .extra = extra });
	memset(&net, 0, sizeof(net));
	xsim_vio_init(&vio, h->t->dom, 0, NET_WIN, NET_SPI);
	assert_int_equal(vdrv_init(&net, &vio.io, &h->mem, H_RING, 2, 64), 0);
	assert_int_equal(net.device_id, 1);
	/* Receive buffers posted, so the device reads its tap. */
	for (unsigned i = 0; i < 8; i++) {
		struct vdrv_buf b = { vdrv_alloc(&h->mem, 2048, 16, NULL), 2048, true };

		assert_true(b.gpa != 0);
		assert_true(vdrv_submit(&net, 0, &b, 1, false, NULL) >= 0);
	}
	vdrv_kick(&net, 0);
	h->scratch = h->mem.next;
	assert_int_equal(sh("ip link set hxtap0 up"), 0);
	net_tx(h, &net);
	assert_int_equal(sh("ip link del hxtap0"), 0);
	/* The guest goes on sending into the void: every frame is taken (and dropped). */
	for (unsigned i = 0; i < 50; i++)
		net_tx(h, &net);
	vdrv_kick(&net, 0);
	/* And the daemon does not spin on the dead descriptor. */
	t0 = itest_cpu_ticks(h->t->dm.pid);
	hostile_sleep_ms(1000);
	unsigned long used = itest_cpu_ticks(h->t->dm.pid) - t0;

	if (used > (unsigned long)sysconf(_SC_CLK_TCK) / 2)
		fail_msg("the daemon used %lu ticks in 1 s after the tap went away", used);
	if (getenv("FAULTS_LOG"))
		itest_dump_log(h->t);
	hostile_check_alive(h);
	/* The device saw the link go and says why the frames went nowhere. */
	assert_true(xsim_daemon_wait_log(&h->t->dm, "link down (hxtap0)", 5000));
	assert_true(xsim_daemon_wait_log(&h->t->dm, "tap refused a frame", 5000));
	others_fine(h);
	hostile_rt(h, D_BLK);
	hostile_stop(h);
}

/* ---- the guest goes away, or the daemon is told to stop, with requests in flight ---- */

#define NREQ 20
#define RLEN (32u << 10)

struct wreq {
	uint64_t sector;
	uint8_t *st;
	unsigned k;
};

/* Submit NREQ writes of RLEN bytes (chunk k's pattern) at sectors 64*k, kick once. */
static void submit_writes(struct hostile *h, struct wreq *r)
{
	hostile_scratch_reset(h);
	for (unsigned k = 0; k < NREQ; k++) {
		uint8_t *hdr, *data;
		struct virtio_blk_outhdr o = { htole32(VIRTIO_BLK_T_OUT), 0, htole64(64 * k) };
		struct vdrv_buf b[3] = { { hostile_buf(h, 16, &hdr), 16, false },
					 { hostile_buf(h, RLEN, &data), RLEN, false },
					 { hostile_buf(h, 1, &r[k].st), 1, true } };

		memcpy(hdr, &o, 16);
		for (unsigned i = 0; i < RLEN; i++)
			data[i] = chunk_byte(k + 100, i);
		*r[k].st = 0xee;
		r[k].sector = 64 * k;
		r[k].k = k;
		assert_true(vdrv_submit(&h->drv[D_BLK], 0, b, 3, false, &r[k]) >= 0);
	}
	vdrv_kick(&h->drv[D_BLK], 0);
}

/* Each sector written by request k is all old pattern or all new data, never a mix. */
static void image_consistent(const char *path, const struct wreq *r, const bool *must_be_new)
{
	static uint8_t img[H_IMG_SIZE];

	read_file(path, img, H_IMG_SIZE);
	for (uint64_t s = 0; s < H_SECTORS; s++) {
		const uint8_t *p = img + s * 512;
		unsigned k = (unsigned)(s / 64);
		bool in_req = k < NREQ && s % 64 < RLEN / 512;
		bool old = true, new = in_req;

		for (unsigned i = 0; i < 512; i++) {
			old &= p[i] == hostile_img_byte(s * 512 + i);
			if (in_req)
				new &= p[i] == chunk_byte(k + 100, (unsigned)((s % 64) * 512 + i));
		}
		if (!old && !new)
			fail_msg("sector %llu is neither old nor new", (unsigned long long)s);
		if (in_req && must_be_new && must_be_new[k] && !new)
			fail_msg("acknowledged write %u lost at sector %llu", r[k].k,
				 (unsigned long long)s);
	}
}

static void test_guest_destroyed_mid_io(void **state)
{
	struct hostile *h = hostile_start(false);
	struct wreq r[NREQ];
	int st;

	(void)state;
	submit_writes(h, r);
	assert_int_equal(xsim_dom_destroy(h->t->dom), 0);
	assert_int_equal(xsim_daemon_wait_exit(&h->t->dm, 10000, &st), 0);
	assert_true(WIFEXITED(st));
	assert_int_equal(WEXITSTATUS(st), 0);
	image_consistent(h->img, r, NULL);
	hostile_stop(h);
}

static void test_sigterm_mid_io(void **state)
{
	struct hostile *h = hostile_start(false);
	struct wreq r[NREQ];
	bool acked[NREQ] = { false };
	unsigned nacked = 0, nused = 0;
	int st;
	void *tok;

	(void)state;
	/* Without FLUSH every write is durable before it completes (RWF_DSYNC): slower. */
	assert_int_equal(hostile_init_want(h, D_BLK, hostile_want(D_BLK) &
					   ~VIRTIO_BIT(VIRTIO_BLK_F_FLUSH)), 0);
	submit_writes(h, r);
	/* Stop as soon as the first completion is visible: most are still in flight. */
	struct timespec t0;

	clock_gettime(CLOCK_MONOTONIC, &t0);
	while (__atomic_load_n(&hostile_vq(h, D_BLK)->used->idx, __ATOMIC_ACQUIRE) == 0 &&
	       hostile_ms_since(&t0) < H_WAIT_MS)
		;
	assert_int_equal(kill(h->t->dm.pid, SIGTERM), 0);
	assert_int_equal(xsim_daemon_wait_exit(&h->t->dm, 10000, &st), 0);
	assert_true(WIFEXITED(st));
	assert_int_equal(WEXITSTATUS(st), 0);
	/*
	 * A stopping daemon returns every request it had taken, completed or failed (the guest
	 * outlives it): none may be left hanging in the guest's ring.
	 */
	while (vdrv_get_used(&h->drv[D_BLK], 0, NULL, &tok) == 1) {
		struct wreq *w = tok;

		assert_true(*w->st == VIRTIO_BLK_S_OK || *w->st == VIRTIO_BLK_S_IOERR);
		if (*w->st == VIRTIO_BLK_S_OK) {
			acked[w->k] = true;
			nacked++;
		}
		nused++;
	}
	print_message("[  NOTE    ] %u of %u writes acknowledged, %u returned\n", nacked, NREQ,
		      nused);
	assert_int_equal(nused, NREQ);
	assert_true(nacked >= 1);
	image_consistent(h->img, r, acked);
	hostile_stop(h);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_enospc),
		cmocka_unit_test(test_loop_device_direct_writes_fail),
		cmocka_unit_test(test_loop_device_flush_eio),
		cmocka_unit_test(test_short_write_fsize_limit),
		cmocka_unit_test(test_short_read_image_shrinks),
		cmocka_unit_test(test_eeprom_folder_read_only),
		cmocka_unit_test(test_console_client_hangs_up),
		cmocka_unit_test(test_tap_deleted),
		cmocka_unit_test(test_guest_destroyed_mid_io),
		cmocka_unit_test(test_sigterm_mid_io),
	};

	/* Our own mount namespace: test mounts vanish with us and never leak to the host. */
	private_mounts = unshare(CLONE_NEWNS) == 0 &&
			 mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) == 0;
	/* And our own network namespace for the tap (the hub and sockets are unix sockets). */
	private_net = unshare(CLONE_NEWNET) == 0;
	return cmocka_run_group_tests(tests, NULL, NULL);
}
