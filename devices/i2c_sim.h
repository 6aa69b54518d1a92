/*
 * Simulated I2C clients on a simulated bus, for tests, demos and guests without real hardware.
 *
 * The bus works at message level: a transfer is a list of messages, the first after a START,
 * each later one after a repeated START, and a STOP at the end. A message to an address no client
 * answers is NACKed, which ends the transfer (STOP) with the rest of it never reaching the bus.
 *
 * Clients:
 *  - eeprom: 24C02-compatible, 256 bytes. A write message's first byte sets the word address,
 *    further bytes are page data (8-byte pages, the address wraps within the page) committed at
 *    STOP, so a repeated START after data bytes discards them as the real part does. Reads start
 *    at the internal address pointer (current-address read) and wrap at 256 (sequential read).
 *    With a file, contents are loaded at creation and written back durably (temporary file,
 *    fsync, rename): at once for a write after a quiet period, at most once per
 *    I2C_SIM_SAVE_MS for the writes of a burst (see i2c_sim_save_due).
 *  - lm75: pointer register (0 temperature, 1 config, 2 hysteresis, 3 over-temperature) set by
 *    a write message's first byte; reads return the pointed register (two bytes, MSB first, for
 *    the 9-bit temperature format) and repeat it. The temperature reads a fixed 25.0 °C.
 */
#ifndef XVD_I2C_SIM_H
#define XVD_I2C_SIM_H

#include <stdbool.h>
#include <stdint.h>

#include "config/config.h"

#define I2C_SIM_EEPROM_SIZE 256u
#define I2C_SIM_EEPROM_PAGE 8u
#define I2C_SIM_SAVE_MS     250u   /* at most one EEPROM save (two fsyncs) per this period */

/* LM75 registers and their power-on values. */
#define I2C_SIM_LM75_TEMP   0u
#define I2C_SIM_LM75_CONF   1u
#define I2C_SIM_LM75_THYST  2u
#define I2C_SIM_LM75_TOS    3u
#define I2C_SIM_LM75_TEMP_DEFAULT  0x1900u   /* 25.0 °C: 50 half degrees in bits 15..7 */
#define I2C_SIM_LM75_THYST_DEFAULT 0x4b00u   /* 75 °C */
#define I2C_SIM_LM75_TOS_DEFAULT   0x5000u   /* 80 °C */

struct i2c_sim_bus;

/* One message of a transfer; addr is a 7-bit address. */
struct i2c_sim_msg {
	uint16_t addr;
	bool rd;            /* read: the client fills buf */
	uint8_t *buf;
	uint32_t len;       /* 0: an SMBus quick command, only the address is sent */
};

/* name is used in log lines ("i2c bus0"). NULL when out of memory. */
struct i2c_sim_bus *i2c_sim_bus_new(const char *name);
void i2c_sim_bus_free(struct i2c_sim_bus *bus);

/*
 * Attach a client at a 7-bit address (0x03..0x77). file: NULL or "" for a volatile EEPROM.
 * Returns 0, -EINVAL (bad address or kind), -EEXIST (address taken), -ENOMEM, or the error of
 * loading the file (logged).
 */
int i2c_sim_add_eeprom(struct i2c_sim_bus *bus, uint16_t addr, const char *file);
int i2c_sim_add_lm75(struct i2c_sim_bus *bus, uint16_t addr);
int i2c_sim_add(struct i2c_sim_bus *bus, const struct config_i2c_sim *sim);

/*
 * Coalesced EEPROM saves. A write transaction within I2C_SIM_SAVE_MS of the last save only marks
 * the part dirty (the guest gets success; a later failure of the save is logged and retried, and
 * a crash in between loses at most that period's writes). The bus owner asks after transfers
 * when the pending save is due (seconds from now; < 0 when none is) and calls i2c_sim_save()
 * then; all = true saves everything pending now. i2c_sim_bus_free() saves what is pending.
 */
double i2c_sim_save_due(const struct i2c_sim_bus *bus);
void i2c_sim_save(struct i2c_sim_bus *bus, bool all);

/*
 * An EEPROM's contents in memory that outlives the process (lib/persist.h: a region the bus
 * owner asks for), so that a crash or a restart loses no write the guest was told is done,
 * even one whose coalesced save to the file had not happened yet. Written by the part: dirty
 * is set before a page is committed into mem and cleared once a save has put mem in the file;
 * loaded is set once mem holds the part. Every byte of it is valid whatever a previous
 * instance left (the address pointer is not kept: a current-address read after a restart
 * starts where the next instance's pointer does, at 0).
 */
struct i2c_sim_eeprom_rec {
	uint8_t loaded;
	uint8_t dirty;      /* mem may be newer than the file */
	uint8_t mem[I2C_SIM_EEPROM_SIZE];
};

/*
 * Keep the EEPROM at addr in rec from now on. When rec is the previous instance's (adopted)
 * and holds the part, its contents are taken, and saved to the file at once when it had
 * writes pending; otherwise rec receives the contents loaded at creation. 0, or -ENOENT when
 * no EEPROM answers at addr.
 */
int i2c_sim_keep_eeprom(struct i2c_sim_bus *bus, uint16_t addr,
			struct i2c_sim_eeprom_rec *rec, bool adopted);

/* True when a client answers at addr. */
bool i2c_sim_present(const struct i2c_sim_bus *bus, uint16_t addr);

/*
 * Run msgs[0..n) as one combined transfer. Returns how many messages completed: n when all did,
 * otherwise the index of the message that failed (NACK, or a write the EEPROM could not persist).
 */
unsigned i2c_sim_transfer(struct i2c_sim_bus *bus, const struct i2c_sim_msg *msgs, unsigned n);

#endif
