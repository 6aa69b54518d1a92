/*
 * xensim, the guest's side: what a test or benchmark uses to play Xen and the guest against a
 * daemon linked with the xensim libraries. Start a hub (it sets $XENSIM_SOCKET for children),
 * create domains, start the sim daemon, then access the device windows through a vCPU's ioreq
 * slot exactly as Xen would, wait for interrupts, grant memory, edit xenstore, kill the domain.
 *
 * Functions return 0 or a negative errno unless said otherwise.
 */
#ifndef XSIM_GUEST_H
#define XSIM_GUEST_H

#include <stdbool.h>
#include <stdio.h>
#include <stdint.h>
#include <sys/types.h>

#include <xen/hvm/ioreq.h>

#include "tests/lib/vdriver.h"
#include "tests/xensim/proto.h"

struct xsim_hub;
struct xsim_dom;

/* Start the hub thread on a socket in a fresh temporary directory; sets $XENSIM_SOCKET. */
struct xsim_hub *xsim_hub_start(void);
/* Stop serving, free every domain, remove the directory. */
void xsim_hub_stop(struct xsim_hub *h);
/* The hub's private temporary directory (tests put config files and logs there). */
const char *xsim_hub_dir(struct xsim_hub *h);
const char *xsim_hub_socket(struct xsim_hub *h);

struct xsim_dom_opts {
	const char *name;
	unsigned nr_vcpus;      /* default 1 */
	uint64_t ram_mib;       /* bank 0 at 0x40000000; default 64 */
	uint64_t ram1_mib;      /* bank 1 at 0x200000000; 0 = none */
	/*
	 * 0: every ioreq server gets ceil(nr_vcpus / 128) ioreq pages (the team's contract).
	 * 1: released Xen (4.17-4.20) behaviour: only XENMEM_resource_ioreq_server_frame_ioreq(0)
	 *    exists, so vCPUs from 128 on have no slot (their accesses return -ENXIO here).
	 */
	unsigned ioreq_pages_max;
	/* Non-zero: this domain id, which a dead domain had (Xen reuses ids); 0: the next one. */
	uint32_t domid;
	/*
	 * Guest RAM as the dom0 kernel sees Xen's foreign and grant mappings (the default): it
	 * cannot be pinned, so O_DIRECT into it, io_uring registered buffers over it and zero-copy
	 * sends from it fail (EFAULT) as they do on Xen (memfd_secret(2)). True: an ordinary memfd
	 * the kernel pins like any memory, for a test that needs the difference. XSIM_RAM=pinnable
	 * in the environment makes every domain's RAM pinnable (to compare).
	 */
	bool pinnable_ram;
};

/* Create a running domain; writes /local/domain/<id>/name and fires @introduceDomain. */
struct xsim_dom *xsim_dom_create(struct xsim_hub *h, const struct xsim_dom_opts *o);
uint32_t xsim_dom_id(struct xsim_dom *d);
/* Destroy: ioreq servers go, xenstore /local/domain/<id> goes, @releaseDomain fires. */
int xsim_dom_destroy(struct xsim_dom *d);
/* The same, but @releaseDomain is not fired: a daemon stopped before xenstored's event came. */
int xsim_dom_destroy_unannounced(struct xsim_dom *d);
/* Every ioreq server of d: ranges, ioeventfds, each vCPU's slot state and binding (debugging). */
void xsim_dom_dump(struct xsim_dom *d, FILE *f);
/*
 * "unpinnable" (as on Xen) or "pinnable" (an ordinary memfd): what d's RAM is, for a benchmark
 * or test to state. A kernel without memfd_secret(2) gets pinnable RAM, and a note on stderr.
 */
const char *xsim_dom_ram_kind(struct xsim_dom *d);
/* Host pointer to guest RAM [gpa, gpa+len), or NULL outside RAM. */
void *xsim_dom_ram(struct xsim_dom *d, uint64_t gpa, uint64_t len);
/* True when an enabled ioreq server covers addr (false: a guest access would abort). */
bool xsim_dom_routed(struct xsim_dom *d, uint64_t addr);
/* XSIM_RESTRICTED_* bits: which device-model handles some process restricted to this domain. */
unsigned xsim_dom_restricted(struct xsim_dom *d);

/*
 * One guest MMIO access from `vcpu`: fill the slot of the ioreq server one of whose ranges holds
 * [addr, addr + size), signal its event channel, wait up to timeout_ms for STATE_IORESP_READY.
 * -EFAULT when no server holds it all (a data abort for the guest, as Xen's
 * ioreq_server_select() gives), -ETIMEDOUT when nobody answered, -ENXIO when the server has no
 * slot for that vCPU, -EIO when Xen would have refused the access or crashed the domain
 * (xsim_dom_io_faults).
 */
int xsim_mmio(struct xsim_dom *d, unsigned vcpu, uint64_t addr, unsigned size, bool write,
	      uint64_t *data, int timeout_ms);
/* The same with a 5 s timeout; a failed read returns all-ones, as a guest would see. */
uint64_t xsim_mmio_read(struct xsim_dom *d, unsigned vcpu, uint64_t addr, unsigned size);
int xsim_mmio_write(struct xsim_dom *d, unsigned vcpu, uint64_t addr, unsigned size,
		    uint64_t val);

/*
 * Place an arbitrary ioreq (any type, size, count, flags, state) into vcpu's slot of the server
 * covering the byte at route_addr (whatever the request's own fields say), signal it and, when
 * resp is non-NULL, wait for IORESP_READY and copy the answered slot. Returns -ETIMEDOUT when
 * not answered (the slot is then reset to NONE).
 */
int xsim_ioreq_raw(struct xsim_dom *d, unsigned vcpu, uint64_t route_addr,
		   const struct ioreq *req, struct ioreq *resp, int timeout_ms);
/* IOREQ_TYPE_INVALIDATE to every enabled server of the domain (as Xen's broadcast). */
int xsim_invalidate(struct xsim_dom *d, unsigned vcpu, int timeout_ms);

/*
 * Interrupts: injections (every level-1 write, as on Arm Xen) seen on an SPI so far; wait for one
 * past *seen (1), or 0 on timeout. These apply the DM ops of the line's signalled irqfds first.
 */
uint32_t xsim_irq_edges(struct xsim_dom *d, unsigned spi);
bool xsim_irq_level(struct xsim_dom *d, unsigned spi);
int xsim_irq_wait(struct xsim_dom *d, unsigned spi, uint32_t *seen, int timeout_ms);

/*
 * The dom0 kernel's privcmd ioeventfd/irqfd support (kernel.c). By default a kernel that has it
 * (Linux >= 6.7); these make it older, failing or late.
 */
struct xsim_kernel_opts {
	bool no_eventfd;          /* both ioctls fail with ENOTTY (Linux < 6.7) */
	int assign_errno;         /* > 0: assigning an ioeventfd fails with this errno */
	unsigned jitter_us;       /* > 0: the ioeventfd handler pauses 0..jitter_us (or yields)
				     before each of its steps, as a preempted dom0 vCPU would */
	unsigned lag_us;          /* > 0: a port the handler shares reaches it first and the
				     daemon 0..lag_us later (evtchn_shm.h), as in Linux, where
				     the handler runs in the interrupt */
};
void xsim_kernel_set(struct xsim_hub *h, const struct xsim_kernel_opts *o);

struct xsim_kernel_counts {
	unsigned ioeventfds, irqfds;   /* registrations held now */
	uint64_t claims;               /* requests the ioeventfd handler completed */
	uint64_t handlers;             /* times the ioeventfd handler ran */
};
void xsim_kernel_count(struct xsim_hub *h, struct xsim_kernel_counts *c);

/*
 * Force one interleaving of the daemon and the kernel's ioeventfd handler on the slot of
 * (ioreq server, vCPU) of d (struct xsim_race in proto.h): kernel step k (0 check, 1 claim,
 * 2 match, 3 finish) runs once the daemon reached point at[k] of ioreq/slot.h's enum
 * slot_point (0: at once). Arm before the access, disarm after it completed.
 */
void xsim_race_arm(struct xsim_dom *d, unsigned server, unsigned vcpu,
		   const uint8_t at[XSIM_RACE_STEPS]);
/* Wait until no ioeventfd handler runs or waits to run. 0, or -ETIMEDOUT. */
int xsim_kernel_quiesce(struct xsim_hub *h, int timeout_ms);
/* The id of the ioreq server [addr, addr + len) goes to, or -1 (a data abort). */
int xsim_dom_route_id(struct xsim_dom *d, uint64_t addr, unsigned len);
/*
 * The device model is done with the event of vCPU vcpu's slot on server `server`: the port is
 * unmasked and nothing is queued for it (its reader has looked, answered or left it).
 */
bool xsim_port_idle(struct xsim_dom *d, unsigned server, unsigned vcpu);
struct xsim_race_result {
	unsigned timeouts;        /* waits that gave up: the schedule could not happen */
	unsigned handlers;        /* kernel handler runs under the schedule */
};
void xsim_race_disarm(struct xsim_dom *d, struct xsim_race_result *res);

/*
 * What Xen would have refused, counted per domain: a request posted while the slot was not
 * NONE ("device model set bad IO state", the access fails as a data abort), and a slot whose
 * state went backwards while the vCPU waited ("Weird HVM ioreq state transition": Xen crashes
 * the domain; here the access fails). Each is also reported on stderr.
 */
struct xsim_io_faults {
	unsigned bad_state;       /* posts that found the slot not NONE */
	unsigned last_bad_state;  /* the state found then */
	unsigned backwards;       /* state transitions backwards, or to an unknown state */
};
void xsim_dom_io_faults(struct xsim_dom *d, struct xsim_io_faults *f);

/* Grants: ref -> frame; refs are handed out from 8 upward (the first 8 are reserved). */
int xsim_grant(struct xsim_dom *d, uint32_t ref, uint64_t gfn, bool readonly);
void xsim_grant_revoke(struct xsim_dom *d, uint32_t ref);
/* Grant [gpa, gpa+len) on consecutive new refs; the grant address (bit 63), 0 on failure. */
uint64_t xsim_grant_addr(struct xsim_dom *d, uint64_t gpa, uint64_t len, bool readonly);

/* Xenstore as dom0 tools would edit it. */
int xsim_xs_write(struct xsim_hub *h, const char *path, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
/* malloc'd value, or NULL (errno) when absent. */
char *xsim_xs_read(struct xsim_hub *h, const char *path);
int xsim_xs_rm(struct xsim_hub *h, const char *path);
/* Poll until path reads `want` (NULL: until it exists) or timeout_ms passes. 0 or -ETIMEDOUT. */
int xsim_xs_wait(struct xsim_hub *h, const char *path, const char *want, int timeout_ms);
/*
 * xenstored restarted (the harsh case): every client's xenstore connection is dropped with its
 * watches and queued events, the store's contents are kept. Returns once the connections are
 * gone. stay_down: new xs_open() calls fail (ECONNREFUSED) until xsim_xs_up(); otherwise they
 * work at once. Clients see what the real threaded libxenstore shows: requests fail (EBADF),
 * xs_check_watch() fails with EINVAL, and xs_fileno() does NOT become readable.
 */
int xsim_xs_restart(struct xsim_hub *h, bool stay_down);
void xsim_xs_up(struct xsim_hub *h);
/* The next n client writes to a path ending in suffix fail (EIO), as on a dropped connection. */
void xsim_xs_fail_writes(struct xsim_hub *h, const char *suffix, unsigned n);
/* Watches registered on path (any client, any token): lets a test see a re-registration. */
unsigned xsim_xs_watch_count(struct xsim_hub *h, const char *path);

/*
 * The sim daemon as a child process, with what systemd would give it: NOTIFY_SOCKET (READY=1 is
 * waited for), RUNTIME_DIRECTORY (the hub's directory: state files stay per test) and a file
 * descriptor store (FDSTORE=1, FDSTOREREMOVE=1, FDNAME=) handed to the next instance that
 * xsim_daemon_restart() starts, as LISTEN_FDS/LISTEN_PID/LISTEN_FDNAMES, as for
 * FileDescriptorStoreMax= with Restart=.
 */
#define XSIM_STORE_MAX 64
struct xsim_daemon {
	pid_t pid;
	int notify_fd;          /* NOTIFY_SOCKET datagram socket the daemon reports to */
	char notify_path[160];
	char log_path[160];     /* the daemon's stdout+stderr */
	int status;             /* wait status, once it has exited */
	bool reaped;            /* it has exited (the zombie is reaped by xsim_daemon_stop) */
	unsigned ready;         /* READY=1 messages read */
	unsigned nstore;
	struct { int fd; char name[256]; } store[XSIM_STORE_MAX];
	unsigned store_refused; /* FDSTORE=1 beyond XSIM_STORE_MAX */
	/*
	 * "<point>:<n>" (lib/testpoint.h): the next instance started kills itself at the n-th pass
	 * through that point (set before xsim_daemon_restart()). Cleared once it is started.
	 */
	char kill_at[64];
};

/* Start without NOTIFY_SOCKET: the daemon believes no systemd is around (watch mode then
 * starts child instances instead of systemctl); no READY=1 can be waited for. */
#define XSIM_DAEMON_NO_NOTIFY 1u

/*
 * Start `binary` with args (NULL-terminated, argv[0] excluded) in an environment with
 * XENSIM_SOCKET and NOTIFY_SOCKET set; output goes to <hub dir>/<tag>.log.
 */
int xsim_daemon_start(struct xsim_hub *h, struct xsim_daemon *dm, const char *binary,
		      const char *tag, const char *const *args, unsigned flags);
/* The same, the instance killing itself at kill_at ("<point>:<n>", lib/testpoint.h). */
int xsim_daemon_start_at(struct xsim_hub *h, struct xsim_daemon *dm, const char *binary,
			 const char *tag, const char *const *args, unsigned flags,
			 const char *kill_at);
/* Wait for READY=1 on the notify socket. 0, -ETIMEDOUT, or -ECHILD when the daemon exited. */
int xsim_daemon_wait_ready(struct xsim_daemon *dm, int timeout_ms);
/*
 * The daemon has exited (a test killed it, or it stopped): start `binary` again as systemd's
 * Restart= would, on the same notify socket and with the descriptors it stored; output to
 * <hub dir>/<tag>.log. Reaps the old process first (and its process group).
 */
int xsim_daemon_restart(struct xsim_hub *h, struct xsim_daemon *dm, const char *binary,
			const char *tag, const char *const *args, unsigned flags);
/* Read what the daemon sent so far (READY, the fd store); the store's size. */
unsigned xsim_daemon_store_count(struct xsim_daemon *dm);
/* Wait for exit; 0 with *status (wait status) or -ETIMEDOUT. */
int xsim_daemon_wait_exit(struct xsim_daemon *dm, int timeout_ms, int *status);
bool xsim_daemon_alive(struct xsim_daemon *dm);
/*
 * SIGTERM, wait up to 5 s, then SIGKILL; kill what is left of its process group; reap; close
 * the notify socket. Returns the wait status. The daemon dies with the test process too
 * (PR_SET_PDEATHSIG), so a failing test leaves nothing running.
 */
int xsim_daemon_stop(struct xsim_daemon *dm);
/* The daemon's log on stderr, each line after prefix (for a failing test or a failed start). */
void xsim_daemon_dump_log(const struct xsim_daemon *dm, const char *prefix);
/* True when the daemon's log contains needle. */
bool xsim_daemon_log_has(struct xsim_daemon *dm, const char *needle);
/* Poll the log until it contains needle (true) or timeout_ms passes (false). */
bool xsim_daemon_wait_log(struct xsim_daemon *dm, const char *needle, int timeout_ms);
/*
 * SIGUSR1, then the value of " key=" on the Xen side's stats line of that new dump (-1 when
 * none came within timeout_ms or the key is not on it).
 */
long long xsim_daemon_stat(struct xsim_daemon *dm, const char *key, int timeout_ms);

/* tests/lib/vdriver adapters: a device window reached through a vCPU's ioreq slot. */
struct xsim_vio {
	struct vdrv_io io;
	struct xsim_dom *d;
	unsigned vcpu;
	uint64_t base;
	unsigned spi;
	uint32_t seen;          /* IRQ edges consumed */
	int timeout_ms;
	unsigned errors;        /* accesses that failed (abort or timeout) */
};
void xsim_vio_init(struct xsim_vio *v, struct xsim_dom *d, unsigned vcpu, uint64_t base,
		   unsigned spi);

/* Guest RAM [gpa, gpa+size) as a vdrv_mem; grants: give the device grant addresses. */
int xsim_vmem_init(struct vdrv_mem *m, struct xsim_dom *d, uint64_t gpa, uint64_t size,
		   bool grants);

#endif
