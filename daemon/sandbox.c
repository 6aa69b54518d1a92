/*
 * Least privilege once serving: capabilities dropped, no_new_privs, a seccomp allow list.
 * See daemon/sandbox.h for when each step runs and docs/security.md for how
 * the list was found.
 */
#include "daemon/sandbox.h"

#include <errno.h>
#include <linux/capability.h>
#include <linux/gpio.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <seccomp.h>

#include "lib/log.h"
#include "lib/util.h"

#if defined(__SANITIZE_ADDRESS__)
#define SANDBOX_SANITIZED 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define SANDBOX_SANITIZED 1
#endif
#endif
#ifndef SANDBOX_SANITIZED
#define SANDBOX_SANITIZED 0
#endif

/* ---- capabilities ---- */

static int sandbox_capset(struct __user_cap_data_struct data[2])
{
	struct __user_cap_header_struct hdr = { .version = _LINUX_CAPABILITY_VERSION_3, .pid = 0 };

	return (int)syscall(SYS_capset, &hdr, data);
}

/*
 * Only the simulator's build of the daemon defines this (tests/xensim/lib_fmem.c): the
 * capabilities xensim's guest memory needs (CAP_IPC_LOCK for its memfd_secret RAM). In the real
 * daemon the weak reference stays NULL and every capability goes.
 */
extern uint64_t xsim_daemon_keep_caps(void) __attribute__((weak));

/* What we keep of that: only what we have (a capset cannot add to the permitted set). */
static uint64_t sandbox_kept(void)
{
	struct __user_cap_header_struct hdr = { .version = _LINUX_CAPABILITY_VERSION_3, .pid = 0 };
	struct __user_cap_data_struct data[2];

	if (!xsim_daemon_keep_caps)
		return 0;
	memset(data, 0, sizeof(data));
	if (syscall(SYS_capget, &hdr, data) < 0)
		return 0;
	return xsim_daemon_keep_caps() &
	       ((uint64_t)data[1].permitted << 32 | data[0].permitted);
}

/* True when the calling thread has no effective or permitted capability outside keep. */
static bool sandbox_caps_within(uint64_t keep)
{
	struct __user_cap_header_struct hdr = { .version = _LINUX_CAPABILITY_VERSION_3, .pid = 0 };
	struct __user_cap_data_struct data[2];

	memset(data, 0, sizeof(data));
	if (syscall(SYS_capget, &hdr, data) < 0)
		return false;
	for (unsigned i = 0; i < 2; i++) {
		uint32_t k = (uint32_t)(keep >> (32 * i));

		if ((data[i].effective & ~k) || (data[i].permitted & ~k))
			return false;
	}
	return true;
}

bool sandbox_caps_empty(void)
{
	return sandbox_caps_within(0);
}

int sandbox_drop_caps(void)
{
	struct __user_cap_data_struct none[2];
	uint64_t keep = sandbox_kept();

	/*
	 * The bounding set only matters across execve(), which the filter forbids; dropping it
	 * needs CAP_SETPCAP, which a systemd CapabilityBoundingSet= has usually removed already.
	 */
	if (prctl(PR_CAPBSET_READ, CAP_SETPCAP, 0, 0, 0) == 1) {
		for (unsigned long c = 0; prctl(PR_CAPBSET_READ, c, 0, 0, 0) >= 0; c++)
			if (prctl(PR_CAPBSET_DROP, c, 0, 0, 0) < 0 && errno != EPERM)
				break;
	}
	if (prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) < 0 && errno != EINVAL) {
		int e = errno;
		log_err("sandbox: clearing ambient capabilities: %s", strerror(e));
		return -e;
	}
	memset(none, 0, sizeof(none));
	for (unsigned i = 0; i < 2; i++)
		none[i].effective = none[i].permitted = (uint32_t)(keep >> (32 * i));
	if (sandbox_capset(none) < 0) {
		int e = errno;
		log_err("sandbox: dropping capabilities: %s", strerror(e));
		return -e;
	}
	if (!sandbox_caps_within(keep)) {
		log_err("sandbox: capabilities still present after capset");
		return -EPERM;
	}
	if (keep)
		log_info("sandbox: every capability dropped but %#llx (xensim's guest memory)",
			 (unsigned long long)keep);
	else
		log_info("sandbox: every capability dropped");
	return 0;
}

/* ---- seccomp ---- */

/*
 * Allowed without conditions. Found with strace -f on the whole integration suite (the daemon's
 * syscalls after READY=1, through teardown) plus a reading of the code paths the simulator does
 * not take (real libxen*: ioctls on the /dev/xen devices, libxenstore's reader thread and its
 * cancellation at xs_close). Names the architecture lacks (open on arm64) are skipped.
 */
static const char *const sandbox_allowed[] = {
	/* the loop: libev (epoll, signalfd or its pipe), timers, sleeping in teardown drains */
	"epoll_wait", "epoll_pwait", "epoll_pwait2", "epoll_ctl", "poll", "ppoll",
	"select", "pselect6", "eventfd2", "signalfd4", "read", "write", "readv", "writev",
	/* libev makes its epoll set anew when it sees events of a descriptor closed while a copy
	 * lives on elsewhere (one kept in systemd's fd store: a console client that left) */
	"epoll_create1", "epoll_create",
	"clock_gettime", "clock_nanosleep", "nanosleep", "gettimeofday",
	"rt_sigreturn", "rt_sigprocmask", "rt_sigaction", "restart_syscall",
	/* memory: malloc, guest mappings (privcmd, gntdev, memfd in xensim), io_uring rings */
	"brk", "mmap", "munmap", "mremap", "mprotect", "madvise",
	/* block: io_uring (reads, writes, fsync, fallocate run in the kernel), sync fallbacks */
	"io_uring_enter", "io_uring_register", "pread64", "pwrite64", "preadv", "pwritev",
	"preadv2", "pwritev2", "lseek", "fsync", "fdatasync", "fallocate", "ftruncate",
	/* files: SIGHUP re-reads the INI, console log reopen, EEPROM persistence (tmp + rename) */
	"openat", "open", "close", "fstat", "newfstatat", "statx", "stat", "lstat", "fstatfs",
	"fcntl", "dup", "dup3", "rename", "renameat", "renameat2", "unlink", "unlinkat",
	"readlink", "readlinkat", "getdents64", "umask", "fchmod", "pipe2",
	/* in a driver domain xenstored has no socket: every xs_open looks for /dev/xen/xenbus
	 * with access() first (libxenstore's xs_domain_dev()) */
	"access", "faccessat", "faccessat2",
	/* sockets: console and control clients (daemon/control.c: accept4, SO_PEERCRED, socketpair
	 * and SCM_RIGHTS for console attach), sd_notify, xenstored (xs_open at teardown), the hub */
	"accept4", "accept", "connect", "recvmsg", "sendmsg", "recvfrom", "sendto",
	"shutdown", "getsockopt", "setsockopt", "getsockname", "getpeername", "socketpair",
	/* ioctl is filtered by type below; these are the rest of the process's life */
	"futex", "getrandom", "getpid", "gettid", "getuid", "geteuid", "getgid", "getegid",
	"sched_yield", "sched_getaffinity", "set_robust_list", "rseq", "sigaltstack",
	"membarrier", "uname", "exit", "exit_group",
};

/* ioctl request type bytes (_IOC_TYPE) the daemon's file descriptors take. */
static const unsigned sandbox_ioctl_types[] = {
	'P',   /* /dev/xen/privcmd: hypercalls, DM ops, foreign mappings, restrict, and the
		  notify fast path's ioeventfd/irqfd deassign at teardown (its eventfds need
		  only read and write) */
	'E',   /* /dev/xen/evtchn: bind, notify, unbind, restrict */
	'G',   /* /dev/xen/gntdev: grant maps and unmaps */
	'B',   /* /dev/xen/xenbus_backend */
	0x07,  /* /dev/i2c-N: I2C_RDWR, I2C_FUNCS */
	0x12,  /* block devices: BLKGETSIZE64, BLKDISCARD, BLKZEROOUT, BLKSSZGET, ... */
};

/* Plain ioctls without a type byte of their own (tty and generic file ioctls). */
static const unsigned long sandbox_ioctl_cmds[] = {
	0x5401,  /* TCGETS: isatty() in stdio */
	0x5413,  /* TIOCGWINSZ */
	0x541B,  /* FIONREAD */
	0x5421,  /* FIONBIO */
	0x5451,  /* FIOCLEX */
	0x5450,  /* FIONCLEX */
	0x8910,  /* SIOCGIFNAME: if_indextoname() (net link state, by index) */
	0x8913,  /* SIOCGIFFLAGS: net's tap up and running? (setting flags needs a capability) */
	0x8933,  /* SIOCGIFINDEX: if_nametoindex() */
	/*
	 * gpio passthrough (devices/gpio_chip.c): what libgpiod v1 calls once serving. The chip
	 * was opened before the filter; the guest's direction changes request and release lines
	 * (a request re-reads the line's info), its values and edges go through the line's fd.
	 * Not the v2 uAPI nor the info watches, which libgpiod 1.6 does not use.
	 */
	GPIO_GET_CHIPINFO_IOCTL,
	GPIO_GET_LINEINFO_IOCTL,
	GPIO_GET_LINEHANDLE_IOCTL,
	GPIO_GET_LINEEVENT_IOCTL,
	GPIOHANDLE_GET_LINE_VALUES_IOCTL,
	GPIOHANDLE_SET_LINE_VALUES_IOCTL,
	GPIOHANDLE_SET_CONFIG_IOCTL,
};

#define IOC_TYPE_MASK 0xff00UL
#define IOC_DIR_MASK  0xc0000000UL

static int sandbox_add(scmp_filter_ctx ctx, uint32_t action, int nr, unsigned n,
		       const struct scmp_arg_cmp *cmp, const char *what)
{
	int rc = seccomp_rule_add_array(ctx, action, nr, n, cmp);

	if (rc < 0)
		log_err("sandbox: seccomp rule for %s: %s", what, strerror(-rc));
	return rc;
}

static int sandbox_add_names(scmp_filter_ctx ctx)
{
	for (size_t i = 0; i < sizeof(sandbox_allowed) / sizeof(sandbox_allowed[0]); i++) {
		int nr = seccomp_syscall_resolve_name(sandbox_allowed[i]);
		/* Unknown here, or a pseudo number for a syscall this architecture lacks. */
		if (nr == __NR_SCMP_ERROR || nr < 0)
			continue;
		if (sandbox_add(ctx, SCMP_ACT_ALLOW, nr, 0, NULL, sandbox_allowed[i]) < 0)
			return -1;
	}
	return 0;
}

static int sandbox_add_ioctls(scmp_filter_ctx ctx)
{
	int nr = SCMP_SYS(ioctl);

	for (size_t i = 0; i < sizeof(sandbox_ioctl_types) / sizeof(sandbox_ioctl_types[0]); i++) {
		struct scmp_arg_cmp c = SCMP_A1(SCMP_CMP_MASKED_EQ, IOC_TYPE_MASK,
						(scmp_datum_t)sandbox_ioctl_types[i] << 8);
		if (sandbox_add(ctx, SCMP_ACT_ALLOW, nr, 1, &c, "ioctl") < 0)
			return -1;
	}
	/*
	 * tun's ioctls ('T' with a direction: TUNSETOFFLOAD, TUNGETIFF, ...), never a bare tty 'T'
	 * one (TIOCSTI has no direction bits). One masked compare per direction.
	 */
	for (unsigned long dir = 1; dir <= 3; dir++) {
		struct scmp_arg_cmp c = SCMP_A1(SCMP_CMP_MASKED_EQ, IOC_DIR_MASK | IOC_TYPE_MASK,
						(dir << 30) | ((scmp_datum_t)'T' << 8));
		if (sandbox_add(ctx, SCMP_ACT_ALLOW, nr, 1, &c, "ioctl tun") < 0)
			return -1;
	}
	for (size_t i = 0; i < sizeof(sandbox_ioctl_cmds) / sizeof(sandbox_ioctl_cmds[0]); i++) {
		struct scmp_arg_cmp c = SCMP_A1(SCMP_CMP_MASKED_EQ, 0xffffffffUL,
						sandbox_ioctl_cmds[i]);
		if (sandbox_add(ctx, SCMP_ACT_ALLOW, nr, 1, &c, "ioctl") < 0)
			return -1;
	}
	return 0;
}

static bool sandbox_tcp_clients;

void sandbox_allow_tcp_clients(void)
{
	sandbox_tcp_clients = true;
}

static bool sandbox_ceph;

void sandbox_allow_ceph(void)
{
	sandbox_tcp_clients = true;
	sandbox_ceph = true;
}

/* nbd:// disks: libnbd opens a new TCP socket at every reconnect (and may resolve the host). */
static int sandbox_add_tcp_clients(scmp_filter_ctx ctx)
{
	/*
	 * rbd disks: librados and librbd start threads while we serve (reconnects, the watch),
	 * and each names itself: prctl(PR_SET_NAME), nothing else (found with the filter in log
	 * mode, XVD_SECCOMP_LOG=1, through tests/integration/test_rbd.c: I/O at depth, resize,
	 * snapshot, OSD restarts, teardown). PR_GET_NAME for the name they log with.
	 */
	static const scmp_datum_t names[] = { PR_SET_NAME, PR_GET_NAME };

	for (size_t i = 0; sandbox_ceph && i < ARRAY_SIZE(names); i++) {
		struct scmp_arg_cmp op = SCMP_A0(SCMP_CMP_EQ, names[i]);

		if (sandbox_add(ctx, SCMP_ACT_ALLOW, SCMP_SYS(prctl), 1, &op, "prctl") < 0)
			return -1;
	}
	static const int domains[] = { AF_INET, AF_INET6 };

	for (size_t i = 0; sandbox_tcp_clients && i < 2; i++) {
		struct scmp_arg_cmp stream[2] = { SCMP_A0(SCMP_CMP_EQ, (scmp_datum_t)domains[i]),
						  SCMP_A1(SCMP_CMP_MASKED_EQ, 0xf, SOCK_STREAM) };

		if (sandbox_add(ctx, SCMP_ACT_ALLOW, SCMP_SYS(socket), 2, stream, "socket") < 0)
			return -1;
	}
	if (sandbox_tcp_clients) {
		struct scmp_arg_cmp dgram6[2] = { SCMP_A0(SCMP_CMP_EQ, AF_INET6),
						  SCMP_A1(SCMP_CMP_MASKED_EQ, 0xf, SOCK_DGRAM) };

		if (sandbox_add(ctx, SCMP_ACT_ALLOW, SCMP_SYS(socket), 2, dgram6, "socket") < 0)
			return -1;
	}
	return 0;
}

/* Calls that are safe only with some arguments. */
static int sandbox_add_conditional(scmp_filter_ctx ctx)
{
	scmp_datum_t self = (scmp_datum_t)getpid();
	struct scmp_arg_cmp unix_only = SCMP_A0(SCMP_CMP_EQ, AF_UNIX);
	/* The type without SOCK_NONBLOCK / SOCK_CLOEXEC. */
	struct scmp_arg_cmp inet_dgram[2] = { SCMP_A0(SCMP_CMP_EQ, AF_INET),
					      SCMP_A1(SCMP_CMP_MASKED_EQ, 0xf, SOCK_DGRAM) };
	struct scmp_arg_cmp thread = SCMP_A0(SCMP_CMP_MASKED_EQ, CLONE_THREAD, CLONE_THREAD);
	struct scmp_arg_cmp to_self = SCMP_A0(SCMP_CMP_EQ, self);

	/*
	 * New sockets: unix ones (sd_notify, xenstored, glibc's if_indextoname) and the datagram
	 * socket net's link query takes SIOCGIFFLAGS through. Tap and netlink are set up earlier.
	 */
	if (sandbox_add(ctx, SCMP_ACT_ALLOW, SCMP_SYS(socket), 1, &unix_only, "socket") < 0 ||
	    sandbox_add(ctx, SCMP_ACT_ALLOW, SCMP_SYS(socket), 2, inet_dgram, "socket") < 0)
		return -1;
	/*
	 * Threads (libxenstore's reader) but never a new process. clone3 hides its flags in
	 * memory a filter cannot read: ENOSYS makes glibc fall back to clone.
	 */
	if (sandbox_add(ctx, SCMP_ACT_ALLOW, SCMP_SYS(clone), 1, &thread, "clone") < 0 ||
	    sandbox_add(ctx, SCMP_ACT_ERRNO(ENOSYS), SCMP_SYS(clone3), 0, NULL, "clone3") < 0)
		return -1;
	/* Signals only to ourselves (abort(), pthread_cancel): a root uid could signal any root
	 * process. */
	if (sandbox_add(ctx, SCMP_ACT_ALLOW, SCMP_SYS(tgkill), 1, &to_self, "tgkill") < 0 ||
	    sandbox_add(ctx, SCMP_ACT_ALLOW, SCMP_SYS(kill), 1, &to_self, "kill") < 0)
		return -1;
	return sandbox_add_tcp_clients(ctx);
}

int sandbox_load_filter(int mode)
{
	uint32_t dflt = mode == SANDBOX_LOG ? SCMP_ACT_LOG : SCMP_ACT_KILL_PROCESS;
	scmp_filter_ctx ctx;
	int rc = -EINVAL;

	if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0) {
		rc = -errno;
		log_err("sandbox: no_new_privs: %s", strerror(-rc));
		return rc;
	}
	ctx = seccomp_init(dflt);
	if (!ctx) {
		log_err("sandbox: seccomp_init failed");
		return -ENOMEM;
	}
	/* Every thread, including libxenstore's reader; a foreign architecture's ABI is killed. */
	if (seccomp_attr_set(ctx, SCMP_FLTATR_CTL_TSYNC, 1) < 0 ||
	    seccomp_attr_set(ctx, SCMP_FLTATR_ACT_BADARCH, SCMP_ACT_KILL_PROCESS) < 0) {
		log_err("sandbox: seccomp attributes refused");
		goto out;
	}
	if (sandbox_add_names(ctx) < 0 || sandbox_add_ioctls(ctx) < 0 ||
	    sandbox_add_conditional(ctx) < 0)
		goto out;
	rc = seccomp_load(ctx);
	if (rc < 0)
		log_err("sandbox: loading the seccomp filter: %s", strerror(-rc));
out:
	seccomp_release(ctx);
	return rc < 0 ? rc : 0;
}

static bool env_set(const char *name)
{
	const char *v = getenv(name);

	return v && *v && strcmp(v, "0") != 0;
}

int sandbox_kernel_filters(void)
{
	/*
	 * The kernel's own answer, without installing anything: filter mode is supported when a
	 * NULL program is refused for its address (EFAULT; EACCES without privilege), and
	 * refused as a mode (EINVAL) when the kernel lacks CONFIG_SECCOMP_FILTER.
	 */
	errno = 0;
	if (prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, NULL, 0, 0) < 0 && errno != EFAULT &&
	    errno != EACCES)
		return errno;
	return 0;
}

int sandbox_check(void)
{
	scmp_filter_ctx ctx;
	int e;

	if (env_set("XVD_NO_SECCOMP") || SANDBOX_SANITIZED)
		return 0;
	e = sandbox_kernel_filters();
	if (e) {
		log_err("sandbox: this kernel cannot load a seccomp filter (%s): it needs "
			"CONFIG_SECCOMP_FILTER=y. Rebuild the dom0 kernel with it, or run without the "
			"filter by setting XVD_NO_SECCOMP=1 in the daemon's environment (capabilities "
			"are still dropped). Nothing was set up for the guest", strerror(e));
		return -ENOSYS;
	}
	ctx = seccomp_init(SCMP_ACT_KILL_PROCESS);
	if (!ctx) {
		log_err("sandbox: libseccomp cannot build a filter on this system (seccomp_init "
			"failed). Run without the filter by setting XVD_NO_SECCOMP=1 in the daemon's "
			"environment (capabilities are still dropped). Nothing was set up for the "
			"guest");
		return -ENOSYS;
	}
	seccomp_release(ctx);
	return 0;
}

int sandbox_enter(void)
{
	if (env_set("XVD_NO_SECCOMP")) {
		log_warn("sandbox: XVD_NO_SECCOMP is set: no seccomp filter (debugging only)");
		return prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0 ? -errno : 0;
	}
	if (SANDBOX_SANITIZED) {
		log_notice("sandbox: sanitizer build: no seccomp filter");
		return prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0 ? -errno : 0;
	}
	if (env_set("XVD_SECCOMP_LOG")) {
		log_warn("sandbox: XVD_SECCOMP_LOG is set: forbidden syscalls are only logged");
		return sandbox_load_filter(SANDBOX_LOG);
	}
	if (sandbox_load_filter(SANDBOX_KILL) < 0)
		return -EPERM;
	log_info("sandbox: seccomp filter loaded");
	return 0;
}
