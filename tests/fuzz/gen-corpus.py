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


# ---- fuzz_net and fuzz_console: a feature header, then operations (see the targets) ----
def qchain(q, bufs, kick=True):
    """A chain on queue q: bufs are (writable, length, data) with explicit lengths. A readable
    buffer takes min(length, 256) input bytes: data is padded with zeroes to that."""
    out = bytes([(q << 3) | (1 if kick else 0), len(bufs) - 1])
    for wr, length, data in bufs:
        out += bytes([8 | wr]) + struct.pack("<H", length)
        if not wr:
            out += data[:256].ljust(min(length, 256), b"\0")
    return out


def net_hdr(flags=0, gso=0, hdr_len=0, gso_size=0, cstart=0, coff=0):
    return struct.pack("<BBHHHHH", flags, gso, hdr_len, gso_size, cstart, coff, 0)


def eth(dst=b"\xff" * 6, etype=0x0800, payload=b""):
    return dst + b"\x02\x00\x00\x00\x00\x01" + struct.pack(">H", etype) + payload


def ipv4_tcp(total):
    ip = struct.pack(">BBHHHBBH4s4s", 0x45, 0, total, 1, 0x4000, 64, 6, 0,
                     bytes([10, 0, 0, 2]), bytes([10, 0, 1, 2]))
    tcp = struct.pack(">HHIIBBHHH", 1234, 80, 1, 0, 0x50, 0x18, 65535, 0, 0)
    return ip + tcp


def net_frame(length, data=b""):
    return bytes([3]) + struct.pack("<H", length - 14) + data[:256].ljust(min(length, 256), b"\0")


MRG, CSUM, TSO4, GCSUM, GTSO4, CTRL, CTRL_RX, MQ, TWO, CFG = (
    1 << 2, 1 << 3, 1 << 4, 1 << 7, 1 << 8, 1 << 11, 1 << 12, 1 << 13, 1 << 14, 1 << 15)


def net_seeds():
    t = "fuzz_net"
    f = struct.pack("<H", CFG)
    plain = net_hdr() + eth(payload=ipv4_tcp(40))
    save(t, "tx-plain", f + qchain(1, [(0, len(plain), plain)]))
    gso = net_hdr(1, 1, 54, 1448, 34, 16) + eth(payload=ipv4_tcp(4000))
    save(t, "tx-gso", struct.pack("<H", CFG | CSUM | TSO4) +
         qchain(1, [(0, 12, gso[:12]), (0, 200, gso[12:]), (0, 3800, b"")]))
    bad = net_hdr(1, 0x81, 0xffff, 0, 0xfff0, 0xffff) + eth()
    save(t, "tx-bad-hdr", struct.pack("<H", CFG | CSUM) + qchain(1, [(0, len(bad), bad)]) +
         qchain(1, [(0, 6, bad[:6])]) + qchain(1, [(0, 12, bad[:12]), (1, 64, b"")]))
    rx = b"".join(qchain(0, [(1, 1526, b"")], kick=False) for _ in range(8)) + bytes([2])
    save(t, "rx-mrg", struct.pack("<H", CFG | MRG | GCSUM | GTSO4) + rx +
         net_frame(1000, eth()) + net_frame(9000, eth()) + bytes([4]))
    save(t, "rx-split", f + qchain(0, [(1, 6, b""), (1, 20, b""), (1, 1600, b"")]) +
         qchain(0, [(1, 11, b"")]) + net_frame(60, eth()) + bytes([4]) +
         net_frame(3000, eth()) + bytes([4, 5]) + net_frame(60, eth()))
    ctrl = (qchain(2, [(0, 2, b"\x00\x00"), (0, 1, b"\x00"), (1, 1, b"")]) +
            qchain(2, [(0, 2, b"\x01\x00"), (0, 14, struct.pack("<I", 1) + b"\x02" * 6 +
                                              struct.pack("<I", 0)), (1, 1, b"")]) +
            qchain(2, [(0, 3, b"\x00\x01\x01")]) +
            qchain(2, [(0, 2, b"\x01\x00"), (0, 4, struct.pack("<I", 0xffffffff)), (1, 1, b"")]))
    save(t, "ctrl-rx", struct.pack("<H", CFG | CTRL | CTRL_RX) + ctrl +
         qchain(0, [(1, 1526, b"")]) + net_frame(60, eth(b"\x02" * 6)) +
         net_frame(60, eth(b"\x04" * 6)) + bytes([4]))
    mq = qchain(4, [(0, 4, b"\x04\x00\x02\x00"), (1, 1, b"")])
    save(t, "mq", struct.pack("<H", CFG | CTRL | MQ | TWO) + mq +
         qchain(3, [(0, len(plain), plain)]) + qchain(2, [(1, 1526, b"")]) +
         net_frame(100, eth()) + bytes([4]) +
         qchain(4, [(0, 4, b"\x04\x00\x01\x00"), (1, 1, b"")]))


def con_ctrl(nbuf, cid, event, value, extra=b""):
    return bytes([((nbuf - 1) << 3) | 7, cid, event]) + struct.pack("<HB", value, len(extra)) + extra


def console_seeds():
    t = "fuzz_console"
    save(t, "port0-tx", bytes([0]) + qchain(1, [(0, 6, b"hello\n")]) +
         qchain(1, [(0, 3, b"abc"), (0, 3, b"def"), (1, 4, b"")]))
    save(t, "emerg", bytes([16]) + bytes([3, 8, 2]) + struct.pack("<I", 0x41) +
         bytes([3, 4, 0]) + struct.pack("<I", 0x42))
    save(t, "port0-rx", bytes([32]) + qchain(0, [(1, 64, b"")]) + bytes([4 | (0 << 3), 5]) +
         b"input" + bytes([5]))
    ready = (b"".join(qchain(2, [(1, 64, b"")], kick=False) for _ in range(8)) + bytes([2 << 3 | 2]) +
             con_ctrl(1, 0, 0, 1) + con_ctrl(2, 0, 3, 1) + con_ctrl(1, 1, 3, 1) +
             con_ctrl(3, 2, 3, 1) + con_ctrl(1, 1, 6, 1))
    save(t, "multiport", bytes([4 | 8]) + ready + qchain(4, [(1, 64, b"")]) +
         bytes([4 | (1 << 3), 3]) + b"xyz" + bytes([5]) + qchain(5, [(0, 3, b"abc")]) +
         qchain(7, [(0, 3, b"def")]) + bytes([5]))
    save(t, "ctrl-hostile", bytes([4 | 8 | 16]) + ready +
         con_ctrl(1, 0xff, 3, 1) + con_ctrl(1, 1, 6, 7) + con_ctrl(1, 1, 7, 1, b"evil-name") +
         con_ctrl(2, 2, 5, 0, b"\x50\x00\x19\x00") + con_ctrl(1, 0, 0, 0) +
         qchain(3, [(0, 5, b"\x00" * 5)]) + qchain(3, [(1, 8, b"")]) + bytes([6]) +
         con_ctrl(1, 0, 0, 1))


# ---- fuzz_gpio: [features] then ops; 3 = request [type, line, value], 4 = irq buffer [line] ----
def gpio_req(typ, line, value):
    return bytes([3, typ, line, value])


def gpio_irq(line):
    return bytes([4, line])


def gpio_seeds():
    t = "fuzz_gpio"
    # Line 0 drives line 1 (loopback): input with a rising edge, armed, then the output toggles.
    save(t, "loopback-edge", bytes([1]) + gpio_req(3, 1, 2) + gpio_req(6, 1, 1) + gpio_irq(1) +
         gpio_req(5, 0, 0) + gpio_req(3, 0, 1) + gpio_req(5, 0, 1) + gpio_irq(1) +
         gpio_req(5, 0, 0) + gpio_req(5, 0, 1) + gpio_req(6, 1, 0))
    save(t, "level", bytes([1]) + gpio_req(3, 3, 2) + gpio_req(6, 3, 4) + gpio_irq(3) +
         gpio_req(3, 2, 1) + gpio_req(5, 2, 1) + gpio_irq(3) + gpio_req(3, 3, 0) + gpio_irq(3))
    save(t, "hostile", bytes([1]) + gpio_req(1, 0, 0) + gpio_req(7, 9, 9) + gpio_irq(7) +
         gpio_irq(2) + gpio_req(6, 2, 5) + bytes([5]) + gpio_req(2, 0, 0) + bytes([6, 3]))


# ---- fuzz_vsock: a feature byte, then operations (see the target) ----
def vs_pkt(o, gp, hp, payload=b"", typ=None, lenf=None, flags=0, buf=0x1000, fwd=0):
    out = bytes([3, o])
    if o & 16:
        out += bytes([typ])
    out += bytes([gp, hp]) + struct.pack("<H", len(payload))
    if o & 32:
        out += struct.pack("<I", lenf)
    return out + bytes([flags]) + struct.pack("<HI", buf, fwd) + payload


def vsock_seeds():
    t = "fuzz_vsock"
    bufs = bytes([7, 3, 127, 7 | (2 << 3), 0, 0])
    REQ, RESP, RST, SHUT, RW, CUPD, CREQ = 1, 2, 3, 4, 5, 6, 7
    save(t, "guest-connect", bytes([2]) + bufs + vs_pkt(REQ, 1, 0) + bytes([5]) +
         vs_pkt(RW, 1, 0, b"hello") + bytes([4, 1, 0, 5]) + b"world" + bytes([5]) +
         vs_pkt(CREQ, 1, 0) + vs_pkt(SHUT, 1, 0, flags=2) + vs_pkt(SHUT, 1, 0, flags=3) +
         bytes([5]))
    save(t, "host-connect", bytes([0]) + bufs + bytes([4, 0, 7, 5]) + vs_pkt(RESP, 7, 8) +
         bytes([4, 1, 0, 3]) + b"abc" + vs_pkt(RW, 7, 8, b"xyz") + bytes([4, 2, 0, 5]) +
         vs_pkt(CUPD, 7, 8, fwd=3) + bytes([4, 3, 0, 5]) + vs_pkt(RW, 7, 8, b"late"))
    save(t, "credit", bytes([1]) + bufs + vs_pkt(REQ, 2, 1, buf=1) +
         bytes([4, 1, 0, 200]) + b"h" * 200 + bytes([5]) +
         vs_pkt(RW, 2, 1, b"d" * 4096) + vs_pkt(RW, 2, 1, b"e" * 100) + bytes([5]))
    save(t, "hostile", bytes([0]) + bufs + vs_pkt(REQ | 8, 3, 0) + vs_pkt(REQ | 16, 3, 0, typ=2) +
         vs_pkt(RW | 32, 3, 0, b"ab", lenf=0xffffffff) + vs_pkt(REQ | 64, 4, 2) +
         vs_pkt(REQ, 5, 0) + vs_pkt(0, 5, 0) + vs_pkt(RESP, 5, 0) + vs_pkt(RW, 9, 1) +
         bytes([6]) + vs_pkt(REQ, 5, 0) + bytes([1 << 3 | 1, 0, 8 | 0, 10, 0]))


if __name__ == "__main__":
    mmio_seeds()
    ring_seeds()
    net_seeds()
    console_seeds()
    gpio_seeds()
    vsock_seeds()
