/*
 * xensim wire protocol and shared-memory layouts: what the hub (in the test process) and the
 * drop-in Xen libraries (in the daemon process) agree on.
 *
 * Control operations are request/response messages on a SOCK_SEQPACKET unix socket whose path
 * is in $XENSIM_SOCKET; file descriptors (guest RAM memfd, domain control page, ioreq pages,
 * event-channel doorbells and pages, xenstore watch sink) travel by SCM_RIGHTS. The data path
 * (ioreq slots, event channels, guest RAM, grants, IRQ lines) is shared memory: no hub round
 * trip.
 */
#ifndef XSIM_PROTO_H
#define XSIM_PROTO_H

#include <limits.h>
#include <linux/futex.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/syscall.h>
#include <unistd.h>

#define XSIM_ENV_SOCKET "XENSIM_SOCKET"

#define XSIM_PAGE        4096u
#define XSIM_RAM0_BASE   UINT64_C(0x40000000)    /* Arm GUEST_RAM0_BASE */
#define XSIM_RAM1_BASE   UINT64_C(0x200000000)   /* Arm GUEST_RAM1_BASE */
#define XSIM_NR_IRQS     1020u                   /* SPIs are 32..1019 */
#define XSIM_NR_GRANTS   32768u   /* 64 v1 grant frames: Xen's default max_grant_frames */
#define XSIM_SLOTS_PER_PAGE 128u                 /* XSIM_PAGE / sizeof(ioreq_t) */
#define XSIM_DATA_MAX    16384u

/* Grant entry flags. */
#define XSIM_GNT_VALID    1u
#define XSIM_GNT_READONLY 2u

struct xsim_grant {
	_Atomic uint32_t flags;     /* written last (release) by the guest, read first (acquire) */
	uint32_t domid;             /* the domain the grant is for */
	uint64_t frame;             /* guest frame number */
};

/*
 * A forced interleaving of the daemon and the dom0 kernel's ioeventfd handler on one slot
 * (kernel.c, lib_privcmd.c). The daemon's ioreq/slot.c reports each point it reaches
 * (enum slot_point: 1 = state read ... 5 = done); the kernel's handler has four steps: check
 * (read state, type, dir), claim (state = INPROCESS), match (signal an eventfd), finish (state
 * = IORESP_READY or READY). Kernel step k waits until the daemon reached point at[k] (0: no
 * wait); the daemon, at point p, waits until every step k with at[k] <= p is done. Each wait
 * gives up after XSIM_RACE_WAIT_MS and counts a timeout (a schedule that cannot happen).
 */
#define XSIM_RACE_STEPS   4u
#define XSIM_RACE_DONE    0xffu       /* ksteps once the handler returned */
#define XSIM_RACE_WAIT_MS 2000

struct xsim_race {
	_Atomic uint32_t armed;       /* the schedule applies to (server, vcpu) */
	uint32_t server, vcpu;
	uint8_t at[XSIM_RACE_STEPS];
	_Atomic uint32_t dpoint;      /* the furthest point the daemon reached (futex) */
	_Atomic uint32_t ksteps;      /* steps the kernel's handler has done (futex) */
	_Atomic uint32_t timeouts;
	_Atomic uint32_t handlers;    /* kernel handler runs on that slot under the schedule */
};

/* One page-aligned shared control block per domain (memfd, mapped by hub and clients). */
struct xsim_domctl {
	uint32_t domid;
	uint32_t nr_vcpus;
	_Atomic uint32_t alive;
	_Atomic uint32_t restricted;  /* XSIM_RESTRICTED_*: handles a device model restricted to us */
	uint64_t bank_base[2];
	uint64_t bank_size[2];      /* 0: bank absent; bank 1 follows bank 0 in the RAM memfd */
	_Atomic uint32_t irq_level[XSIM_NR_IRQS];  /* the level last written */
	_Atomic uint32_t irq_edges[XSIM_NR_IRQS];  /* injections; a futex the guest waits on */
	struct xsim_race race;
	struct xsim_grant grants[XSIM_NR_GRANTS];
};

/*
 * One xenevtchn handle, like one open of Linux's /dev/xen/evtchn: one fd (the doorbell eventfd,
 * what xenevtchn_fd returns) and this page, shared by the hub's guest side (which signals) and
 * the handle's process (which reads and unmasks). Bindings are numbered by the handle; binding i
 * has state[i] and bit i of ready. The rules are in evtchn_shm.h.
 *
 * The dom0 kernel's ioeventfd handler shares a binding's IRQ when kflag[i] is set (the hub sets
 * it while the binding's ioreq server has ioeventfds): each delivery then also sets bit i of
 * kready and rings the kernel's doorbell (an eventfd the hub's kernel thread waits on, the third
 * descriptor XSIM_OP_EVTCHN_OPEN hands out), after queuing the port for the reader, as Linux
 * runs the evtchn device's handler before privcmd's on the shared IRQ.
 */
#define XSIM_EVTCHN_MAX      4096u   /* bindings per handle (the daemon allows 4096 vCPUs) */
#define XSIM_EVTCHN_MASKED   1u      /* delivered (queued or read), not unmasked yet */
#define XSIM_EVTCHN_PENDING  2u      /* fired while masked: delivered again on unmask */

struct xsim_evtchn_page {
	_Atomic uint32_t kicked;    /* the doorbell was written since the reader last drained it */
	uint32_t pad[15];
	_Atomic uint64_t ready[XSIM_EVTCHN_MAX / 64];  /* delivered, not read yet: the "ring" */
	_Atomic uint32_t state[XSIM_EVTCHN_MAX];       /* XSIM_EVTCHN_MASKED | _PENDING */
	/* The other direction: xenevtchn_notify bumps it; the guest side waits on it (a futex). */
	_Atomic uint32_t notify[XSIM_EVTCHN_MAX];
	_Atomic uint32_t kflag[XSIM_EVTCHN_MAX];       /* the kernel's handler shares the IRQ */
	_Atomic uint64_t kready[XSIM_EVTCHN_MAX / 64];  /* delivered, the kernel's to handle */
};

/* Which drop-in handles were restricted to a domain (tests check the daemon does it). */
#define XSIM_RESTRICTED_DM     1u
#define XSIM_RESTRICTED_FMEM   2u
#define XSIM_RESTRICTED_EVTCHN 4u

enum xsim_op {
	XSIM_OP_DOMAIN,         /* domid -> fds[0] RAM memfd, fds[1] control memfd */
	XSIM_OP_CREATE_SERVER,  /* domid, a=handle_bufioreq -> a=id */
	XSIM_OP_SERVER_STATE,   /* domid, a=id, b=enabled */
	XSIM_OP_MAP_RANGE,      /* domid, a=id, b=is_mmio, x=start, y=end (inclusive) */
	XSIM_OP_UNMAP_RANGE,    /* same */
	XSIM_OP_DESTROY_SERVER, /* domid, a=id */
	XSIM_OP_SERVER_PAGES,   /* domid, a=id -> a=number of ioreq pages, fds[0] page memfd */
	XSIM_OP_BIND,           /* domid, a=remote port, b=binding of this connection's handle */
	XSIM_OP_XS_SINK,        /* send fd: where this connection's watch events go */
	XSIM_OP_XS_READ,        /* data=path -> data=value */
	XSIM_OP_XS_WRITE,       /* a=strlen(path)+1, data=path\0value */
	XSIM_OP_XS_RM,          /* data=path */
	XSIM_OP_XS_DIRECTORY,   /* data=path -> a=count, data=name\0name\0... */
	XSIM_OP_XS_WATCH,       /* a=strlen(path)+1, data=path\0token\0 */
	XSIM_OP_XS_UNWATCH,     /* same */
	XSIM_OP_XS_INTRODUCED,  /* domid -> a=0/1 */
	XSIM_OP_EVTCHN_OPEN,    /* this connection is a xenevtchn handle -> fds[0] doorbell,
				 * fds[1] struct xsim_evtchn_page memfd, fds[2] the kernel's bell */
	XSIM_OP_UNBIND,         /* b=binding: the guest side stops signalling it */
	XSIM_OP_IOEVENTFD,      /* data=struct xsim_kfd_req, fd: the eventfd (assign only) */
	XSIM_OP_IRQFD,          /* same */
};

/* The privcmd eventfd ioctls as lib_privcmd.c forwards them to the hub's dom0 kernel model. */
struct xsim_kfd_req {
	uint32_t pid, fd;       /* the eventfd's identity: the kernel compares eventfd contexts */
	uint32_t flags;         /* bit 0: deassign */
	uint32_t server;        /* ioreq server whose page `ioreq` maps; UINT32_MAX: none */
	uint32_t addr_len, vcpus, vq;
	uint64_t addr;
	uint32_t dm_op_size;
	uint8_t dm_op[64];
};

struct xsim_msg {
	uint32_t op;
	int32_t rc;                 /* response: 0 or -errno */
	uint32_t domid;
	uint32_t a, b;
	uint32_t len;               /* bytes of data used */
	uint64_t x, y;
	char data[XSIM_DATA_MAX];
};

#define XSIM_MSG_HDR ((unsigned)offsetof(struct xsim_msg, data))

/*
 * XEN_DMOP_set_irq_level on an SPI, as Xen on Arm does it: every level-1 write injects (the old
 * vGIC ignores level 0 for SPIs, the new one latches an edge on each 1), whatever the level
 * was. Used by lib_dm.c (the daemon's DM op) and the hub's irqfd (the kernel's).
 */
static inline void xsim_irq_inject(struct xsim_domctl *ctl, unsigned irq, unsigned level)
{
	atomic_store(&ctl->irq_level[irq], level);
	if (level) {
		atomic_fetch_add(&ctl->irq_edges[irq], 1);
		/* The count is the futex word the guest side sleeps on. */
		syscall(SYS_futex, (uint32_t *)&ctl->irq_edges[irq], FUTEX_WAKE, INT_MAX, NULL,
			NULL, 0);
	}
}

#endif
