#!/usr/bin/env python3
"""Write the seed corpora under tests/fuzz/corpus/ (small, deterministic files).

Each seed is a well-formed starting point (a driver initialising the device, valid direct and
indirect chains, EVENT_IDX use) plus a few hostile variants; libFuzzer mutates from there.
The input formats are described at the top of fuzz_mmio.c and fuzz_ring.c.
"""
import os
import struct

HERE = os.path.dirname(os.path.abspath(__file__))
RAM = 0x10000
WRITE, NEXT, INDIRECT = 2, 1, 4


def desc(addr, length, flags, nxt=0):
    return struct.pack("<QIHH", addr, length, flags, nxt)


def save(target, name, data):
    d = os.path.join(HERE, "corpus", target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


# ---- fuzz_mmio: opcodes 0 write, 1 read, 2 memory, 3 init, 4 kick ----
def w(off, val, size=4):
    return bytes([0]) + struct.pack("<HBQ", off, {1: 0, 2: 1, 4: 2, 8: 3}[size], val)


def r(off, size=4):
    return bytes([1]) + struct.pack("<HB", off, {1: 0, 2: 1, 4: 2, 8: 3}[size])


def mem(off, data):
    return bytes([2]) + struct.pack("<HB", off, len(data)) + data


def init(feat, qlog):
    return bytes([3, feat, qlog])


def kick(q=0):
    return bytes([4, q])


QS = 16
AVAIL = 16 * QS                     # offsets within RAM, as op_init lays them out
USED = 0x1000


def avail(idx, heads):
    return struct.pack("<HH", 0, idx) + b"".join(struct.pack("<H", h) for h in heads)


def mmio_seeds():
    probe = b"".join(r(o) for o in range(0, 0x100, 4)) + r(0x100, 1) + r(0x100, 8)
    save("fuzz_mmio", "probe", probe)
    save("fuzz_mmio", "status-walk", w(0x70, 1) + w(0x70, 3) + w(0x24, 1) + w(0x20, 1) +
         w(0x70, 0xb) + w(0x30, 0) + r(0x34) + w(0x38, 8) + w(0x80, RAM) + w(0x90, RAM + 0x80) +
         w(0xa0, RAM + 0x1000) + w(0x44, 1) + r(0x44) + w(0x70, 0xf) + r(0x70) + w(0x70, 0))
    chain = mem(0, desc(RAM + 0x2000, 64, WRITE)) + mem(AVAIL, avail(1, [0]))
    save("fuzz_mmio", "rng-read", init(3, 4) + chain + kick() + r(0x60) + w(0x64, 1))
    ind = (mem(0, desc(RAM + 0x3000, 32, INDIRECT)) +
           mem(0x3000, desc(RAM + 0x2000, 16, WRITE | NEXT, 1) + desc(RAM + 0x2100, 16, WRITE)) +
           mem(AVAIL, avail(1, [0])))
    save("fuzz_mmio", "rng-indirect", init(3, 4) + ind + kick() + w(0x70, 0) + init(1, 2))
    loop = (mem(0, desc(RAM + 0x2000, 8, WRITE | NEXT, 1) + desc(RAM + 0x2000, 8, WRITE | NEXT, 0))
            + mem(AVAIL, avail(1, [0])))
    save("fuzz_mmio", "rng-loop", init(2, 4) + loop + kick() + r(0x70) + w(0x70, 0))


# ---- fuzz_ring: 12-byte header, then RAM ----
def ring_seed(name, flags, descs, heads, tables=(), num=QS, hold=0):
    ram = bytearray(0x900)      # buffers and the used ring live beyond: zeroes
    for i, d in enumerate(descs):
        ram[16 * i:16 * i + 16] = d
    a = 0x100
    ram[a:a + 4 + 2 * len(heads)] = avail(len(heads), heads)
    for off, data in tables:
        ram[off:off + len(data)] = data
    hdr = struct.pack("<BBHHHHBB", [1, 2, 4, 8, 16, 32, 64, 128, 256].index(num),
                      flags | hold, 0, a, 0x1000, 0, 0, 1)
    save("fuzz_ring", name, hdr + bytes(ram))


def ring_seeds():
    b = RAM + 0x2000
    ring_seed("direct", 0, [desc(b, 64, 0), desc(b + 64, 64, WRITE)], [0, 1])
    ring_seed("chain", 1, [desc(b, 16, NEXT, 1), desc(b + 16, 16, WRITE | NEXT, 2),
                           desc(b + 32, 16, WRITE)], [0])
    ring_seed("indirect", 3, [desc(RAM + 0x800, 48, INDIRECT)], [0],
              tables=[(0x800, desc(b, 8, 0, 1) + desc(b + 8, 8, WRITE | NEXT, 2) +
                       desc(b + 16, 8, WRITE))])
    ring_seed("many-held", 5, [desc(b + 32 * i, 32, WRITE) for i in range(16)], list(range(16)),
              hold=0)
    ring_seed("scribble", 3 | 8 | 16, [desc(b, 16, NEXT, 1), desc(RAM + 0x800, 32, INDIRECT)] +
              [desc(b + 64 * i, 64, WRITE) for i in range(2, 16)], [0] + list(range(2, 16)),
              tables=[(0x800, desc(b + 16, 8, WRITE | NEXT, 1) + desc(b + 24, 8, WRITE))], hold=4)
    ring_seed("loop", 1, [desc(b, 8, WRITE | NEXT, 1), desc(b, 8, WRITE | NEXT, 0)], [0])


if __name__ == "__main__":
    mmio_seeds()
    ring_seeds()
