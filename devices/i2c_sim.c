/*
 * Simulated I2C clients: a 24C02-compatible EEPROM and an LM75 temperature sensor, on a bus that
 * runs message-level transfers (see i2c_sim.h for the behaviour each client models).
 */
#include "devices/i2c_sim.h"

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "lib/log.h"

#define I2C_SIM_ADDR_MIN 0x03u
#define I2C_SIM_ADDR_MAX 0x77u
#define I2C_SIM_NADDR    128u

struct i2c_sim_client;

/* What a client does on each bus condition; the bus has already matched the address. */
struct i2c_sim_ops {
	/* Addressed after a START or repeated START. */
	void (*start)(struct i2c_sim_client *c, bool rd);
	/* Bytes the master writes; false = NACK. */
	bool (*write)(struct i2c_sim_client *c, const uint8_t *buf, uint32_t len);
	void (*read)(struct i2c_sim_client *c, uint8_t *buf, uint32_t len);
	/* A repeated START follows this client's message (optional). */
	void (*restart)(struct i2c_sim_client *c);
	/* STOP: commit; <0 when the transaction could not be completed (optional). */
	int (*stop)(struct i2c_sim_client *c);
	void (*destroy)(struct i2c_sim_client *c);
};

struct i2c_sim_client {
	const struct i2c_sim_ops *ops;
	struct i2c_sim_bus *bus;
	uint16_t addr;
	bool touched;          /* addressed during the current transfer */
	unsigned last_msg;     /* index of its last message in the current transfer */
};

struct i2c_sim_bus {
	char name[80];
	struct i2c_sim_client *clients[I2C_SIM_NADDR];
	struct ratelimit rl;   /* persistence errors, provoked by every guest write */
};

/* ---- EEPROM (24C02) ---------------------------------------------------------------------- */

struct sim_eeprom {
	struct i2c_sim_client c;
	uint8_t *mem;                         /* own[], or rec->mem once kept there */
	uint8_t own[I2C_SIM_EEPROM_SIZE];
	struct i2c_sim_eeprom_rec *rec;       /* NULL: nothing outlives the process */
	uint8_t ptr;                          /* internal address pointer; wraps at 256 */
	bool want_word_addr;                  /* next written byte is the word address */
	uint8_t page[I2C_SIM_EEPROM_PAGE];    /* data latched until STOP */
	uint8_t page_mask;                    /* which bytes of page[] were written */
	uint8_t page_base;
	char *file;                           /* NULL: volatile */
	bool dirty;                           /* written since the last save: one is due */
	bool saved_once;                      /* last_save_ns is valid */
	uint64_t last_save_ns;                /* when the file was last written (successfully) */
};

static struct sim_eeprom *eeprom_of(struct i2c_sim_client *c)
{
	return (struct sim_eeprom *)(void *)((char *)c - __builtin_offsetof(struct sim_eeprom, c));
}

static void eeprom_start(struct i2c_sim_client *c, bool rd)
{
	struct sim_eeprom *e = eeprom_of(c);

	e->want_word_addr = !rd;
}

static bool eeprom_write(struct i2c_sim_client *c, const uint8_t *buf, uint32_t len)
{
	struct sim_eeprom *e = eeprom_of(c);

	for (uint32_t i = 0; i < len; i++) {
		if (e->want_word_addr) {
			e->ptr = buf[i];
			e->page_base = buf[i] & (uint8_t)~(I2C_SIM_EEPROM_PAGE - 1);
			e->want_word_addr = false;
			continue;
		}
		/* The low three address bits count; the page stays, so long writes wrap over it. */
		e->page[e->ptr & (I2C_SIM_EEPROM_PAGE - 1)] = buf[i];
		e->page_mask |= (uint8_t)(1u << (e->ptr & (I2C_SIM_EEPROM_PAGE - 1)));
		e->ptr = (uint8_t)(e->page_base | ((e->ptr + 1) & (I2C_SIM_EEPROM_PAGE - 1)));
	}
	return true;
}

static void eeprom_read(struct i2c_sim_client *c, uint8_t *buf, uint32_t len)
{
	struct sim_eeprom *e = eeprom_of(c);

	for (uint32_t i = 0; i < len; i++)
		buf[i] = e->mem[e->ptr++];
}

/* The write cycle starts only at STOP: a repeated START leaves the array untouched. */
static void eeprom_restart(struct i2c_sim_client *c)
{
	eeprom_of(c)->page_mask = 0;
}

/* Write the whole image to a temporary file, fsync, rename over the file, fsync the folder. */
static int eeprom_persist(struct sim_eeprom *e)
{
	char tmp[PATH_MAX + 16], dir[PATH_MAX];
	int fd, dfd, err = 0;

	snprintf(tmp, sizeof(tmp), "%s.tmp.XXXXXX", e->file);
	fd = mkostemp(tmp, O_CLOEXEC);
	if (fd < 0)
		return -errno;
	if (write(fd, e->mem, I2C_SIM_EEPROM_SIZE) != (ssize_t)I2C_SIM_EEPROM_SIZE)
		err = errno ? -errno : -EIO;
	if (!err && fsync(fd) < 0)
		err = -errno;
	if (close(fd) < 0 && !err)
		err = -errno;
	if (!err && rename(tmp, e->file) < 0)
		err = -errno;
	if (err) {
		unlink(tmp);
		return err;
	}
	/* The rename itself must survive a crash too. */
	snprintf(dir, sizeof(dir), "%s", e->file);
	dfd = open(dirname(dir), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dfd >= 0) {
		fsync(dfd);
		close(dfd);
	}
	return 0;
}

static uint64_t sim_now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

#define EEPROM_SAVE_NS ((uint64_t)I2C_SIM_SAVE_MS * 1000000u)

/* When the next save may happen: at once after a quiet period, else at the end of the period. */
static uint64_t eeprom_save_at(const struct sim_eeprom *e)
{
	return e->saved_once ? e->last_save_ns + EEPROM_SAVE_NS : 0;
}

static int eeprom_save(struct sim_eeprom *e)
{
	int err = eeprom_persist(e);

	if (err) {
		log_rl(&e->c.bus->rl, LOG_ERR, "%s: eeprom@0x%02x: writing %s: %s", e->c.bus->name,
		       e->c.addr, e->file, strerror(-err));
		return err;
	}
	e->dirty = false;
	if (e->rec)
		e->rec->dirty = 0;   /* the file holds what mem does */
	e->saved_once = true;
	e->last_save_ns = sim_now_ns();
	return 0;
}

/*
 * STOP commits the page. Saving is coalesced: the first write after a quiet period is saved at
 * once (its failure is the guest's: the write does not take effect), writes within
 * I2C_SIM_SAVE_MS of a save only mark the part dirty and one later save covers them all, so a
 * burst of writes cannot become an fsync storm on dom0's disk.
 */
static int eeprom_stop(struct i2c_sim_client *c)
{
	struct sim_eeprom *e = eeprom_of(c);
	uint8_t old[I2C_SIM_EEPROM_PAGE];
	int err;

	if (!e->page_mask)
		return 0;
	memcpy(old, &e->mem[e->page_base], sizeof(old));
	/* Newer than the file from here until a save (struct i2c_sim_eeprom_rec). */
	if (e->rec && e->file)
		e->rec->dirty = 1;
	for (unsigned i = 0; i < I2C_SIM_EEPROM_PAGE; i++)
		if (e->page_mask & (1u << i))
			e->mem[e->page_base + i] = e->page[i];
	e->page_mask = 0;
	if (!e->file)
		return 0;
	if (e->dirty || sim_now_ns() < eeprom_save_at(e)) {
		e->dirty = true;
		return 0;
	}
	err = eeprom_save(e);
	if (err)
		/* A write reported failed must not take effect: memory stays what the file holds. */
		memcpy(&e->mem[e->page_base], old, sizeof(old));
	return err;
}

static void eeprom_destroy(struct i2c_sim_client *c)
{
	struct sim_eeprom *e = eeprom_of(c);

	free(e->file);
	free(e);
}

static const struct i2c_sim_ops eeprom_ops = {
	.start = eeprom_start,
	.write = eeprom_write,
	.read = eeprom_read,
	.restart = eeprom_restart,
	.stop = eeprom_stop,
	.destroy = eeprom_destroy,
};

/* A missing file is a blank (erased, 0xff) part; a file larger than the part is refused. */
static int eeprom_load(struct sim_eeprom *e, const char *name)
{
	struct stat st;
	ssize_t n;
	int fd, err = 0;

	memset(e->mem, 0xff, I2C_SIM_EEPROM_SIZE);
	fd = open(e->file, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return errno == ENOENT ? 0 : -errno;
	if (fstat(fd, &st) < 0)
		err = -errno;
	else if (!S_ISREG(st.st_mode) || st.st_size > (off_t)I2C_SIM_EEPROM_SIZE)
		err = -EFBIG;
	else if ((n = read(fd, e->mem, I2C_SIM_EEPROM_SIZE)) < 0)
		err = -errno;
	close(fd);
	if (err == -EFBIG)
		log_err("%s: eeprom file %s: not a regular file of at most %u bytes", name, e->file,
			I2C_SIM_EEPROM_SIZE);
	else if (err)
		log_err("%s: eeprom file %s: %s", name, e->file, strerror(-err));
	return err;
}

/* Say at start, not at the guest's first write, when write-back cannot work. */
static void eeprom_check_writable(struct sim_eeprom *e, const char *name)
{
	char dir[PATH_MAX];

	snprintf(dir, sizeof(dir), "%s", e->file);
	if (access(dirname(dir), W_OK) != 0)
		log_warn("%s: eeprom file %s: its folder is not writable (%s); guest writes will "
			 "fail", name, e->file, strerror(errno));
}

int i2c_sim_keep_eeprom(struct i2c_sim_bus *bus, uint16_t addr,
			struct i2c_sim_eeprom_rec *rec, bool adopted)
{
	struct i2c_sim_client *c = addr < I2C_SIM_NADDR ? bus->clients[addr] : NULL;
	struct sim_eeprom *e;

	if (!c || c->ops != &eeprom_ops || !rec)
		return -ENOENT;
	e = eeprom_of(c);
	if (!adopted || !rec->loaded) {
		/* Contents first, then the flag that says they are there. */
		memcpy(rec->mem, e->own, sizeof(rec->mem));
		rec->dirty = 0;
		__atomic_store_n(&rec->loaded, 1, __ATOMIC_RELEASE);
		e->mem = rec->mem;
		e->rec = rec;
		return 0;
	}
	/* The previous instance's contents: its last writes may not be in the file yet. */
	e->mem = rec->mem;
	e->rec = rec;
	if (e->file && rec->dirty) {
		log_info("%s: eeprom@0x%02x: writes the previous instance had not saved are saved "
			 "now", bus->name, addr);
		if (eeprom_save(e) < 0)
			e->dirty = true;   /* tried again with the guest's next write's save */
	}
	return 0;
}

/* ---- LM75 -------------------------------------------------------------------------------- */

struct sim_lm75 {
	struct i2c_sim_client c;
	uint8_t ptr;               /* pointer register, 0..3 */
	bool want_ptr;             /* next written byte is the pointer */
	uint32_t wr_idx;           /* data bytes written in this message */
	uint32_t rd_idx;           /* bytes read in this message */
	uint8_t conf;
	uint16_t temp, thyst, tos; /* 9-bit values in bits 15..7 */
};

static struct sim_lm75 *lm75_of(struct i2c_sim_client *c)
{
	return (struct sim_lm75 *)(void *)((char *)c - __builtin_offsetof(struct sim_lm75, c));
}

static void lm75_start(struct i2c_sim_client *c, bool rd)
{
	struct sim_lm75 *l = lm75_of(c);

	l->want_ptr = !rd;
	l->wr_idx = 0;
	l->rd_idx = 0;
}

static uint16_t *lm75_reg16(struct sim_lm75 *l)
{
	switch (l->ptr) {
	case I2C_SIM_LM75_THYST: return &l->thyst;
	case I2C_SIM_LM75_TOS: return &l->tos;
	default: return NULL;   /* temperature is read-only, config is one byte */
	}
}

static void lm75_write_data(struct sim_lm75 *l, uint8_t b)
{
	uint16_t *r = lm75_reg16(l);

	if (l->ptr == I2C_SIM_LM75_CONF && l->wr_idx == 0)
		l->conf = b & 0x1f;   /* bits 7..5 are reserved and read as zero */
	else if (r && l->wr_idx == 0)
		*r = (uint16_t)((b << 8) | (*r & 0xff));
	else if (r && l->wr_idx == 1)
		*r = (uint16_t)((*r & 0xff00) | (b & 0x80));   /* only D7 of the LSB is kept */
	l->wr_idx++;
}

static bool lm75_write(struct i2c_sim_client *c, const uint8_t *buf, uint32_t len)
{
	struct sim_lm75 *l = lm75_of(c);

	for (uint32_t i = 0; i < len; i++) {
		if (!l->want_ptr) {
			lm75_write_data(l, buf[i]);
			continue;
		}
		/* Pointer bits 7..2 must be zero: refuse what the part does not define. */
		if (buf[i] > I2C_SIM_LM75_TOS)
			return false;
		l->ptr = buf[i];
		l->want_ptr = false;
	}
	return true;
}

static void lm75_read(struct i2c_sim_client *c, uint8_t *buf, uint32_t len)
{
	struct sim_lm75 *l = lm75_of(c);
	uint16_t v = l->ptr == I2C_SIM_LM75_TEMP ? l->temp : l->ptr == I2C_SIM_LM75_CONF ? l->conf :
		     *lm75_reg16(l);

	for (uint32_t i = 0; i < len; i++, l->rd_idx++) {
		if (l->ptr == I2C_SIM_LM75_CONF)
			buf[i] = (uint8_t)v;
		else
			buf[i] = (l->rd_idx & 1) ? (uint8_t)v : (uint8_t)(v >> 8);
	}
}

static void lm75_destroy(struct i2c_sim_client *c)
{
	free(lm75_of(c));
}

static const struct i2c_sim_ops lm75_ops = {
	.start = lm75_start,
	.write = lm75_write,
	.read = lm75_read,
	.destroy = lm75_destroy,
};

/* ---- the bus ----------------------------------------------------------------------------- */

struct i2c_sim_bus *i2c_sim_bus_new(const char *name)
{
	struct i2c_sim_bus *bus = calloc(1, sizeof(*bus));

	if (!bus)
		return NULL;
	snprintf(bus->name, sizeof(bus->name), "%s", name ? name : "i2c");
	bus->rl = (struct ratelimit)RATELIMIT_DEFAULT;
	return bus;
}

static struct sim_eeprom *sim_dirty_eeprom(const struct i2c_sim_bus *bus, unsigned a)
{
	struct i2c_sim_client *c = bus->clients[a];

	if (!c || c->ops != &eeprom_ops || !eeprom_of(c)->dirty)
		return NULL;
	return eeprom_of(c);
}

double i2c_sim_save_due(const struct i2c_sim_bus *bus)
{
	uint64_t now = sim_now_ns(), first = UINT64_MAX;

	for (unsigned a = 0; bus && a < I2C_SIM_NADDR; a++) {
		struct sim_eeprom *e = sim_dirty_eeprom(bus, a);

		if (e && eeprom_save_at(e) < first)
			first = eeprom_save_at(e);
	}
	if (first == UINT64_MAX)
		return -1;
	return first <= now ? 0 : (double)(first - now) / 1e9;
}

void i2c_sim_save(struct i2c_sim_bus *bus, bool all)
{
	uint64_t now = sim_now_ns();

	for (unsigned a = 0; bus && a < I2C_SIM_NADDR; a++) {
		struct sim_eeprom *e = sim_dirty_eeprom(bus, a);

		/* A failed save stays dirty and is tried again one period later. */
		if (e && (all || eeprom_save_at(e) <= now) && eeprom_save(e) < 0) {
			e->saved_once = true;
			e->last_save_ns = now;
		}
	}
}

void i2c_sim_bus_free(struct i2c_sim_bus *bus)
{
	if (!bus)
		return;
	i2c_sim_save(bus, true);
	for (unsigned a = 0; a < I2C_SIM_NADDR; a++)
		if (bus->clients[a])
			bus->clients[a]->ops->destroy(bus->clients[a]);
	free(bus);
}

static int sim_check_addr(const struct i2c_sim_bus *bus, uint16_t addr)
{
	if (addr < I2C_SIM_ADDR_MIN || addr > I2C_SIM_ADDR_MAX) {
		log_err("%s: simulated client address 0x%02x outside 0x03..0x77", bus->name, addr);
		return -EINVAL;
	}
	if (bus->clients[addr]) {
		log_err("%s: two simulated clients at 0x%02x", bus->name, addr);
		return -EEXIST;
	}
	return 0;
}

static void sim_attach(struct i2c_sim_bus *bus, struct i2c_sim_client *c,
		       const struct i2c_sim_ops *ops, uint16_t addr)
{
	c->ops = ops;
	c->bus = bus;
	c->addr = addr;
	bus->clients[addr] = c;
}

int i2c_sim_add_eeprom(struct i2c_sim_bus *bus, uint16_t addr, const char *file)
{
	struct sim_eeprom *e;
	int err = sim_check_addr(bus, addr);

	if (err)
		return err;
	e = calloc(1, sizeof(*e));
	if (!e)
		return -ENOMEM;
	e->mem = e->own;
	if (file && strlen(file) >= PATH_MAX) {
		free(e);
		return -ENAMETOOLONG;
	}
	if (file && file[0] && !(e->file = strdup(file))) {
		free(e);
		return -ENOMEM;
	}
	if (e->file)
		err = eeprom_load(e, bus->name);
	if (e->file && !err)
		eeprom_check_writable(e, bus->name);
	if (!e->file)
		memset(e->mem, 0xff, I2C_SIM_EEPROM_SIZE);
	if (err) {
		eeprom_destroy(&e->c);
		return err;
	}
	sim_attach(bus, &e->c, &eeprom_ops, addr);
	return 0;
}

int i2c_sim_add_lm75(struct i2c_sim_bus *bus, uint16_t addr)
{
	struct sim_lm75 *l;
	int err = sim_check_addr(bus, addr);

	if (err)
		return err;
	l = calloc(1, sizeof(*l));
	if (!l)
		return -ENOMEM;
	l->temp = I2C_SIM_LM75_TEMP_DEFAULT;
	l->thyst = I2C_SIM_LM75_THYST_DEFAULT;
	l->tos = I2C_SIM_LM75_TOS_DEFAULT;
	sim_attach(bus, &l->c, &lm75_ops, addr);
	return 0;
}

int i2c_sim_add(struct i2c_sim_bus *bus, const struct config_i2c_sim *sim)
{
	switch (sim->kind) {
	case I2C_SIM_EEPROM: return i2c_sim_add_eeprom(bus, sim->addr, sim->file);
	case I2C_SIM_LM75: return i2c_sim_add_lm75(bus, sim->addr);
	}
	log_err("%s: unknown simulated client kind %d", bus->name, (int)sim->kind);
	return -EINVAL;
}

bool i2c_sim_present(const struct i2c_sim_bus *bus, uint16_t addr)
{
	return addr < I2C_SIM_NADDR && bus->clients[addr] != NULL;
}

/* One message after a (repeated) START: false when nobody acknowledges. */
static bool sim_message(struct i2c_sim_bus *bus, const struct i2c_sim_msg *m, unsigned idx)
{
	struct i2c_sim_client *c = m->addr < I2C_SIM_NADDR ? bus->clients[m->addr] : NULL;

	if (!c)
		return false;
	c->touched = true;
	c->last_msg = idx;
	c->ops->start(c, m->rd);
	if (m->rd) {
		c->ops->read(c, m->buf, m->len);
		return true;
	}
	return c->ops->write(c, m->buf, m->len);
}

/* STOP: every client addressed in this transfer commits; returns the first failing index. */
static unsigned sim_stop(struct i2c_sim_bus *bus, unsigned done)
{
	for (unsigned a = 0; a < I2C_SIM_NADDR; a++) {
		struct i2c_sim_client *c = bus->clients[a];

		if (!c || !c->touched)
			continue;
		c->touched = false;
		if (c->ops->stop && c->ops->stop(c) < 0 && c->last_msg < done)
			done = c->last_msg;
	}
	return done;
}

unsigned i2c_sim_transfer(struct i2c_sim_bus *bus, const struct i2c_sim_msg *msgs, unsigned n)
{
	struct i2c_sim_client *prev = NULL;
	unsigned i;

	for (i = 0; i < n; i++) {
		if (prev && prev->ops->restart)
			prev->ops->restart(prev);
		if (!sim_message(bus, &msgs[i], i))
			break;
		prev = bus->clients[msgs[i].addr];
	}
	return sim_stop(bus, i);
}
