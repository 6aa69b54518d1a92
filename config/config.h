/*
 * The INI configuration (one file per guest), parsed with inih into validated structs.
 * Every error is reported as "file:line: key: what is wrong"; see config_load().
 * The keys are documented in man/xen-virtiod.ini.5.
 */
#ifndef XVD_CONFIG_H
#define XVD_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define CONFIG_EXIT_INVALID 78      /* EX_CONFIG */
#define CONFIG_MAX_DEVICES  32
#define CONFIG_NAME_MAX     64
#define CONFIG_PATH_MAX     256

enum config_discovery {
	DISCOVERY_XENSTORE,     /* devices and their windows come from libxl's xenstore entries */
	DISCOVERY_EXPLICIT,     /* every device section gives mmio and irq */
};

enum config_dev_type {
	DEV_BLOCK, DEV_NET, DEV_CONSOLE, DEV_I2C, DEV_RNG, DEV_GPIO, DEV_VSOCK, DEV_TYPE_COUNT
};

enum config_fastpath {
	FASTPATH_AUTO,                  /* use the privcmd eventfd fast path when offered */
	FASTPATH_ON,                    /* require it */
	FASTPATH_OFF,
};

struct config_guest {
	char name[CONFIG_NAME_MAX];     /* name = ; the Xen domain name */
	int64_t domid;                  /* domid = ; -1 when looked up by name */
	enum config_discovery discovery;/* discovery = xenstore | explicit (default xenstore) */
	uint32_t backend_domid;         /* backend_domid = ; where we run (default 0) */
	bool grant_usage;               /* grant_usage = yes|no (explicit mode; default no) */
	uint32_t map_cache_mib;         /* map_cache = MiB of foreign-mapping cache (default 64) */
	bool premap;                    /* premap = yes: map all guest RAM at start (default no) */
	int log_level;                  /* log_level = error|warning|notice|info|debug; -1 unset */
	enum config_fastpath notify_fastpath;  /* notify_fastpath = auto|on|off (default auto) */
	int notify_fastpath_line;       /* where it was set (0: default), for start-up errors */
	int line;
};

enum config_blk_cache { BLK_CACHE_WRITEBACK, BLK_CACHE_NONE };

struct config_block {
	char path[CONFIG_PATH_MAX];     /* path = image file or block device (required in explicit
					   mode; on Xen 4.17 may come from xenstore "params") */
	bool readonly;                  /* readonly = yes|no (default no) */
	enum config_blk_cache cache;    /* cache = writeback | none (default writeback) */
	char serial[21];                /* serial = up to 20 bytes (default derived from path) */
	uint16_t queues;                /* queues = 1..16 (default 1) */
	uint16_t queue_size;            /* queue_size = power of two 16..1024 (default 256) */
	bool discard;                   /* discard = yes|no (default yes) */
	bool write_zeroes;              /* write_zeroes = yes|no (default yes) */
	char vdev[16];                  /* vdev = xvda: match the xl disk (xenstore mode) */
	char nbd[CONFIG_PATH_MAX];      /* nbd = NBD URI, instead of path (exactly one of them) */
	uint32_t io_timeout;            /* io_timeout = seconds 1..3600 an NBD or RBD request may wait
					   for its server, reconnects included (default 30) */
	char rbd[CONFIG_PATH_MAX];      /* rbd = POOL[/NAMESPACE]/IMAGE[@SNAP] (Ceph), instead of path */
	char ceph_conf[CONFIG_PATH_MAX];  /* ceph_conf = ceph.conf (default: librados' search) */
	char ceph_id[64];               /* ceph_id = the client's id, without "client." (admin) */
	char keyring[CONFIG_PATH_MAX];  /* keyring = the client's keyring (default: ceph.conf's) */
	/* nbds URIs (TLS required): exactly one of a PSK file and an X.509 directory. */
	char tls_psk_file[CONFIG_PATH_MAX];     /* tls_psk_file = USER:HEXKEY lines */
	char tls_certificates[CONFIG_PATH_MAX]; /* tls_certificates = ca-cert.pem, client-*.pem */
	char tls_username[64];          /* tls_username = the PSK identity (default: libnbd's,
					   the login name) */
};

struct config_net {
	char tap[16];                   /* tap = existing or new tap name (default "xvd<domid>.<n>") */
	char bridge[16];                /* bridge = attach a tap we created to this bridge */
	uint8_t mac[6];                 /* mac = aa:bb:cc:dd:ee:ff (default 00:16:3e derived) */
	bool mac_set;
	uint16_t mtu;                   /* mtu = 68..65535 (default 1500) */
	uint16_t queues;                /* queues = queue pairs 1..8 (default 1) */
	uint16_t queue_size;            /* queue_size = (default 256) */
};

#define CONFIG_CONSOLE_PORTS 8
/* A console log is rotated at 16 MiB and four old files are kept: at most 80 MiB of disk. */
#define CONFIG_CONSOLE_LOG_MAX_KIB 16384u
#define CONFIG_CONSOLE_LOG_KEEP    4u
struct config_console_port {
	char name[CONFIG_NAME_MAX];     /* port = NAME:socket:/path  (guest sees
					   /dev/virtio-ports/NAME) */
	char socket[CONFIG_PATH_MAX];
};

struct config_console {
	char socket[CONFIG_PATH_MAX];   /* socket = unix socket path to serve the console on */
	bool pty;                       /* pty = yes: allocate a pty */
	char pty_link[CONFIG_PATH_MAX]; /* pty_link = symlink to the pty */
	char log[CONFIG_PATH_MAX];      /* log = append-only log file (combines with the above) */
	uint32_t log_max_kib;           /* log_max_size = KiB before the log is rotated (16384) */
	uint32_t log_keep;              /* log_keep = rotated files kept, log.1 .. log.N (4) */
	bool stdio;                     /* stdio = yes: foreground runs */
	uint32_t ring_kib;              /* ring = KiB of output kept for replay (default 64, 0 off) */
	uint16_t rows, cols;            /* size = COLSxROWS (default from the pty, else 80x25) */
	unsigned nports;                /* extra named ports (MULTIPORT when > 0) */
	struct config_console_port ports[CONFIG_CONSOLE_PORTS];
};

#define CONFIG_I2C_SIMS 16
enum config_i2c_sim_kind { I2C_SIM_EEPROM, I2C_SIM_LM75 };
struct config_i2c_sim {
	enum config_i2c_sim_kind kind;  /* sim = eeprom@0x50[:/path/file] | lm75@0x48 (repeatable) */
	uint16_t addr;                  /* 7-bit address 0x03..0x77 */
	char file[CONFIG_PATH_MAX];     /* eeprom contents persisted here when set */
};

struct config_i2c {
	char adapter[CONFIG_PATH_MAX];  /* adapter = /dev/i2c-N passthrough */
	uint8_t allow[128];             /* allow = 0x50,0x51,... (allow[a] != 0); */
	bool allow_set;                 /* without allow: every address */
	unsigned nsims;
	struct config_i2c_sim sims[CONFIG_I2C_SIMS];
};

struct config_rng {
	uint32_t rate_kib;              /* rate = KiB/s cap per guest (default 0 = unlimited) */
};

#define CONFIG_GPIO_LINES    64
#define CONFIG_GPIO_NAME_MAX 32     /* a line name: 1..31 of A-Z a-z 0-9 . _ - */
#define CONFIG_GPIO_LOOPS    32
struct config_gpio_line {
	char name[CONFIG_GPIO_NAME_MAX];/* line = NAME [pull-up|pull-down] (repeatable, in order of
					   the line numbers the guest sees) */
	bool pull_up;                   /* reads 1 until the host or a loopback drives it */
	bool pull_down;                 /* passthrough: bias asked of the chip for an input */
	uint32_t offset;                /* passthrough: the line's offset on the host's chip */
};

struct config_gpio_loop {
	uint16_t out, in;               /* loopback = OUT:IN: the guest's output OUT drives IN */
};

struct config_gpio {
	unsigned nlines;
	struct config_gpio_line lines[CONFIG_GPIO_LINES];
	unsigned nloops;
	struct config_gpio_loop loops[CONFIG_GPIO_LOOPS];
	char control[CONFIG_PATH_MAX];  /* control = unix socket: set/get/list lines */
	char chip[CONFIG_PATH_MAX];     /* chip = gpiochipN | /dev/...: passthrough, lines[] are
					   pass = OFFSET[=GUESTNAME] (an empty name: the chip's) */
};

/* A guest's CID: 0-2 are reserved (hypervisor, local, host), 0xffffffff is VMADDR_CID_ANY. */
#define CONFIG_VSOCK_CID_MIN        3u
#define CONFIG_VSOCK_CID_MAX        0xfffffffeu
#define CONFIG_VSOCK_MAX_CONNS      1024u
#define CONFIG_VSOCK_BUF_KIB        256u
/* socket + "_<port>" (at most 11 characters) must fit sockaddr_un's 107. */
#define CONFIG_VSOCK_SOCKET_MAX     96u
struct config_vsock {
	uint64_t guest_cid;             /* guest_cid = 3..0xfffffffe (required) */
	char socket[CONFIG_PATH_MAX];   /* socket = PATH: host programs connect here; the guest's
					   connections to host port P go to PATH_P (required) */
	uint32_t max_conns;             /* max_connections = 1..65536 (default 1024) */
	uint32_t buf_kib;               /* buffer = KiB buffered per connection, 4..4096 (256) */
};

struct config_device {
	enum config_dev_type type;
	char name[CONFIG_NAME_MAX];     /* the quoted section name; "" for a bare [rng] */
	uint64_t mmio;                  /* mmio = 0x02000000.. (explicit mode; 0 = unset) */
	uint32_t irq;                   /* irq = SPI (explicit mode; 0 = unset) */
	int64_t devid;                  /* devid = xenstore device id to match (-1 = by order) */
	int line;                       /* the section header's line, for later messages */
	union {
		struct config_block block;
		struct config_net net;
		struct config_console console;
		struct config_i2c i2c;
		struct config_rng rng;
		struct config_gpio gpio;
		struct config_vsock vsock;
	} u;
};

struct config {
	char file[CONFIG_PATH_MAX];
	struct config_guest guest;
	unsigned ndevices;
	struct config_device devices[CONFIG_MAX_DEVICES];
};

/*
 * Parse and validate `path` into *cfg. Returns 0, or -1 after writing every problem found as
 * "file:line: key: message" lines into err (NUL-terminated, truncated to errlen).
 */
int config_load(const char *path, struct config *cfg, char *err, size_t errlen);

/* "block", "net", ...; and the reverse (-1 when unknown). */
const char *config_dev_type_name(enum config_dev_type t);
int config_dev_type_parse(const char *s);

#endif
