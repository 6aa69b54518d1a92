/*
 * The xensim hub: the simulated machine (domains with RAM, ioreq servers, event channels,
 * grant tables, IRQ lines, one xenstore) and the thread that serves the drop-in libraries over
 * the unix socket. Internal to tests/xensim; tests use guest.h.
 */
#ifndef XSIM_HUB_H
#define XSIM_HUB_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include <xen/hvm/ioreq.h>

#include "tests/xensim/proto.h"

#define XSIM_MAX_DOMS    128
#define XSIM_MAX_SERVERS 8
#define XSIM_MAX_RANGES  256   /* Xen's MAX_NR_IO_RANGES per server */

struct xsim_evh;

/*
 * One interdomain event channel: a vCPU slot's vp_eport and the daemon's end, binding evidx of
 * handle evh: "ioreq ready" is fired there, "response ready" comes as that binding's notify
 * counter. NULL while unbound: a signal is lost (as Xen drops it) and nothing answers.
 */
struct xsim_chan {
	uint32_t port;          /* the guest-side port number (vp_eport) */
	struct xsim_evh *evh;
	unsigned evidx;
	struct xsim_dom *d;     /* whose vCPU slot it signals: d's server s, slot vcpu */
	struct xsim_server *s;
	unsigned vcpu;
};

/*
 * A xenevtchn handle (a connection that sent XSIM_OP_EVTCHN_OPEN): its doorbell eventfd and
 * shared page (proto.h, evtchn_shm.h). Kept until the hub stops, like a retired server: a
 * guest access that looked up its binding may still fire into it after the handle closed.
 */
struct xsim_evh {
	struct xsim_evh *next;  /* every handle the hub made */
	int doorbell, page_fd;  /* doorbell: the hub's end of the handle's socket pair */
	struct xsim_evtchn_page *pg;
	struct xsim_chan **bound;   /* XSIM_EVTCHN_MAX: the channel of each binding, or NULL */
	ino_t file;             /* the device model's end (its xenevtchn_fd): the open "file" */
	uint32_t port_base;     /* binding i is local port port_base + i, in any process */
	struct xsim_conn *conn; /* the connection using it now, or NULL */
	bool closed;            /* every copy of the file was closed: its ports were unbound */
};

struct xsim_range {
	uint64_t start, end;    /* inclusive, as Xen's API */
	bool mmio;
};

struct xsim_server {
	uint32_t id;
	bool enabled;
	unsigned kfds;          /* ioeventfds the kernel holds on this server's slots */
	int pages_fd;
	unsigned npages;
	unsigned nchans;        /* vCPUs with a slot: min(nr_vcpus, 128 * npages) */
	struct ioreq *slots;    /* hub's mapping of the ioreq pages: slot i is vCPU i */
	struct xsim_chan *chans;/* one per vCPU */
	unsigned nranges;
	struct xsim_range ranges[XSIM_MAX_RANGES];
};

struct xsim_hub;

/* A destroyed server, kept until the hub stops (a guest access may still be using it). */
struct xsim_retired {
	struct xsim_retired *next;
	struct xsim_server *s;
};

struct xsim_dom {
	struct xsim_hub *hub;
	uint32_t domid;
	char name[64];
	unsigned nr_vcpus;
	unsigned ioreq_pages_max;   /* 0: as many ioreq pages as the vCPUs need */
	bool alive;
	int ram_fd, ctl_fd;
	bool ram_pinnable;      /* an ordinary memfd (else memfd_secret: as Xen's mappings) */
	uint8_t *ram;           /* the whole RAM memfd: bank 0 then bank 1 */
	uint64_t ram_size;
	struct xsim_domctl *ctl;
	struct xsim_server *servers[XSIM_MAX_SERVERS];  /* by ioreq server id */
	uint32_t next_port;
	pthread_mutex_t *vcpu_lock;  /* one outstanding guest access per vCPU */
	/*
	 * Routing (servers, their state and ranges) changes under it written (inside the hub's
	 * lock); a guest access routes and posts under it read: a device model's DM op that
	 * unroutes returns only once no access is between choosing that server and posting to it,
	 * as in Xen, where a vCPU chooses and sends within one trap.
	 */
	pthread_rwlock_t route_lock;
	/* Per vCPU: a slot a test posted into without waiting (xsim_ioreq_raw, resp NULL). */
	struct ioreq **test_left;
	uint32_t next_gref;
	/* The region granted by xsim_vmem_init(grants): ref of page i is base + i. */
	uint64_t gnt_gpa, gnt_pages;
	uint32_t gnt_rw_base, gnt_ro_base;
	/* Xen's refusals (xsim_dom_io_faults) */
	_Atomic unsigned io_bad_state, io_last_bad_state, io_backwards;
};

/* A watch event the client has not taken yet (its socket buffer was full). */
struct xsim_event {
	struct xsim_event *next;
	size_t len;
	char data[];            /* "path\0token\0" */
};

struct xsim_conn {
	int fd;
	int sink;               /* xenstore watch events, -1 until XSIM_OP_XS_SINK */
	struct xsim_event *q_head, **q_tail;   /* in order; flushed by the hub thread */
	struct xsim_evh *evh;   /* when the connection is a xenevtchn handle */
};

struct xsim_node {
	char *path;
	char *val;
	unsigned len;
};

struct xsim_watch {
	struct xsim_conn *conn;
	char *path, *token;
};

struct xsim_kernel;

struct xsim_hub {
	pthread_mutex_t lock;   /* everything below; the data path takes it only for lookups */
	pthread_t thread;
	int listen_fd, stop_fd;
	int wake_fd;            /* eventfd: a watch event was queued, poll for POLLOUT */
	char dir[64];           /* private temporary directory (socket, test files) */
	char sock[128];
	struct xsim_dom *doms[XSIM_MAX_DOMS];
	uint32_t next_domid;
	struct xsim_conn **conns;
	unsigned nconns;
	struct xsim_node *nodes;
	unsigned nnodes, cap_nodes;
	struct xsim_watch *watches;
	unsigned nwatches, cap_watches;
	struct xsim_retired *graveyard;
	struct xsim_evh *evhs;  /* every xenevtchn handle, freed with the hub */
	uint32_t next_port_base;  /* local port numbers, unique in dom0 as in Xen */
	uint64_t next_uuid;       /* the next domain's handle */
	/* xsim_xs_restart(): requests for the hub thread, which owns the connection array. */
	pthread_cond_t xs_cond;
	unsigned xs_restart_req, xs_restart_done;
	bool xs_down;           /* xenstore not accepting connections (XS_SINK fails) */
	char xs_fail_suffix[64];  /* xsim_xs_fail_writes(): writes to paths ending so fail */
	unsigned xs_fail_writes;
	int *orphan_sinks;      /* watch sinks of dropped connections, closed with the hub */
	unsigned norphans;
	struct xsim_kernel *kernel;  /* dom0's privcmd eventfd support (kernel.c) */
};

struct xsim_dom *hub_dom_get(struct xsim_hub *h, uint32_t domid);
/*
 * The enabled server one of whose MMIO ranges contains [addr, addr + len), or NULL (an access
 * that spans two servers' ranges reaches neither, as in Xen). Caller holds the lock.
 */
struct xsim_server *hub_route(struct xsim_dom *d, uint64_t addr, uint64_t len);
/* The kernel's handler shares (or stops sharing) the IRQ of s's bound ports. Lock held. */
void hub_kernel_share(struct xsim_server *s, bool on);
/*
 * A port of s was unbound (its handle closed: the daemon died): the ioeventfds on s become
 * inert, as Linux's handlers on that port's IRQ die with the port. With the hub's lock.
 */
void hub_kernel_orphan(struct xsim_hub *h, struct xsim_server *s);

/* The dom0 kernel model (kernel.c). */
int hub_kernel_start(struct xsim_hub *h);
void hub_kernel_stop(struct xsim_hub *h);
/* XSIM_OP_IOEVENTFD / XSIM_OP_IRQFD; caller holds the lock. 1 when fd_in was kept. */
int hub_kernel_ioctl(struct xsim_hub *h, struct xsim_msg *m, int fd_in);
/* The kernel's doorbell (evtchn_shm.h): deliveries for its handler ring it. */
int hub_kernel_bell(struct xsim_hub *h);
/* xsim_kernel_opts.lag_us. */
unsigned hub_kernel_lag(struct xsim_hub *h);
/* Apply the DM op of every signalled irqfd of the SPI (before reading its counters). */
void hub_kernel_irq_sync(struct xsim_dom *d, unsigned spi);
/* Wait up to timeout_ms (capped) for an irqfd of the SPI; false when it has none. */
bool hub_kernel_irq_poll(struct xsim_dom *d, unsigned spi, int64_t timeout_ms);

/* In-memory xenstore (store.c). Caller holds the lock. 0 or -errno. */
int store_write(struct xsim_hub *h, const char *path, const void *val, unsigned len);
int store_read(struct xsim_hub *h, const char *path, char **val, unsigned *len);
int store_rm(struct xsim_hub *h, const char *path);
int store_directory(struct xsim_hub *h, const char *path, char *buf, unsigned cap,
		    unsigned *count, unsigned *used);
int store_watch(struct xsim_hub *h, struct xsim_conn *c, const char *path, const char *token);
int store_unwatch(struct xsim_hub *h, struct xsim_conn *c, const char *path, const char *token);
void store_drop_conn(struct xsim_hub *h, struct xsim_conn *c);
/* Send queued watch events until the client's socket is full again. Caller holds the lock. */
void store_flush(struct xsim_conn *c);
/* Fire watches for a special path such as @releaseDomain. */
void store_fire(struct xsim_hub *h, const char *path);
void store_free(struct xsim_hub *h);

#endif
