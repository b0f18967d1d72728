#!/usr/bin/env python3
"""devhost: run one chef component on a pcap file, outside the kitchen (a developer aid).

    python tools/nd-chef/devhost.py CHEF.wasm CAPTURE.pcap [--batch 64] [--interval 5]
                                    [--bench N] [--deadline-ms 200] [--memory-mb 256]

It needs the `wasmtime` Python package (`tools/nd-chef/nd-chef setup devhost` installs it
into the toolchain cache; run this file with that venv's python). It parses Ethernet /
802.1Q / ARP / IPv4 / IPv6 / TCP / UDP / ICMP itself, into the records of `wit/chef.wit`,
applies the chef's `interest`, calls `on-packets` in batches (`on-packed` with the packed
form of docs/packed-batch.md for a 0.2 chef that asks for it, as the Python and JS SDKs do)
and `on-interval` on capture time, and prints the dumplings as JSON lines in the kitchen's
envelope (stdout). Chefs of chef API 0.1 and 0.2 both run (0.2: no flows or streams here).
Diagnostics and the chef's log go to stderr.

This is *not* the kitchen: its parser is a small subset of `kitchen/`'s (no SLL, no IPv6
extension headers but fragments, no QinQ depth beyond two tags), and its sandbox is only an
epoch deadline, a memory cap and "no imports but `log`". Use `nd-sniff` for the real thing;
use this to try a chef before the kitchen is at hand and to measure a chef by itself
(`--bench`).
"""

from __future__ import annotations

import argparse
import json
import struct
import sys
import threading
import time

import wasmtime
import wasmtime.component as wc

PKG = "netdumplings:chef"
VERSIONS = ("0.2.0", "0.1.0")


class R(wc.Record):
    """A WIT record for wasmtime-py: fields by their kebab-case names (also as items)."""

    def __init__(self, fields=None):
        if fields:
            self.__dict__.update(fields)

    def __getitem__(self, key):
        return self.__dict__[key]

    def __setitem__(self, key, value):
        self.__dict__[key] = value

    def update(self, fields):
        self.__dict__.update(fields)


def span(off: int, length: int) -> R:
    return R({"offset": off, "len": length})


# --------------------------------------------------------------------------- pcap


def read_pcap(path: str):
    """Yield (timestamp_ns, caplen, wirelen, linktype, bytes) from a classic pcap file."""
    with open(path, "rb") as f:
        data = f.read()
    magic = data[:4]
    if magic in (b"\xd4\xc3\xb2\xa1", b"\x4d\x3c\xb2\xa1"):
        endian = "<"
    elif magic in (b"\xa1\xb2\xc3\xd4", b"\xa1\xb2\x3c\x4d"):
        endian = ">"
    else:
        raise SystemExit("%s: not a classic pcap file (pcapng is not supported here)" % path)
    nano = magic in (b"\x4d\x3c\xb2\xa1", b"\xa1\xb2\x3c\x4d")
    linktype = struct.unpack(endian + "I", data[20:24])[0] & 0x0FFFFFFF
    pos = 24
    while pos + 16 <= len(data):
        sec, frac, incl, orig = struct.unpack(endian + "IIII", data[pos : pos + 16])
        pos += 16
        frame = data[pos : pos + incl]
        pos += incl
        ts = sec * 1_000_000_000 + (frac if nano else frac * 1000)
        yield ts, len(frame), orig, linktype, frame


# --------------------------------------------------------------------------- parser


def parse(frame: bytes, linktype: int, off: int):
    """Parse one frame (which lives at `off` in the arena) into a WIT `packet` record."""
    p = R(
        {
            "ethernet": None,
            "linux-sll": None,
            "vlan-outer": None,
            "vlan-inner": None,
            "arp": None,
            "ip": None,
            "transport": None,
            "stopped": None,
            "padding": span(off + len(frame), 0),
        }
    )
    n = len(frame)
    pos = 0
    end = n

    def stop(layer, reason):
        p["stopped"] = R({"layer": layer, "reason": reason})

    ethertype = None
    if linktype == 1:
        if n < 14:
            stop("link", "truncated")
            p["payload"] = span(off, n)
            return p
        dst = int.from_bytes(frame[0:6], "big")
        src = int.from_bytes(frame[6:12], "big")
        ethertype = int.from_bytes(frame[12:14], "big")
        p["ethernet"] = R({"source": src, "destination": dst, "ether-type": ethertype})
        pos = 14
        for key in ("vlan-outer", "vlan-inner"):
            if ethertype in (0x8100, 0x88A8) and pos + 4 <= n:
                tci = int.from_bytes(frame[pos : pos + 2], "big")
                ethertype = int.from_bytes(frame[pos + 2 : pos + 4], "big")
                p[key] = R({"priority": tci >> 13, "drop-eligible": bool(tci & 0x1000), "id": tci & 0xFFF, "ether-type": ethertype})
                pos += 4
    elif linktype in (101, 228, 12):
        ethertype = 0x0800 if n and frame[0] >> 4 == 4 else 0x86DD
    elif linktype == 229:
        ethertype = 0x86DD
    else:
        stop("link", "unsupported")
        p["payload"] = span(off, n)
        return p

    if ethertype == 0x0806:
        if pos + 28 > n:
            stop("network", "truncated")
            p["payload"] = span(off + pos, n - pos)
            return p
        a = frame[pos : pos + 28]
        htype, ptype, hlen, plen, op = struct.unpack(">HHBBH", a[:8])
        if htype == 1 and ptype == 0x0800 and hlen == 6 and plen == 4:
            p["arp"] = R(
                {
                    "hardware-type": htype,
                    "protocol-type": ptype,
                    "operation": op,
                    "sender-hardware": int.from_bytes(a[8:14], "big"),
                    "sender-protocol": int.from_bytes(a[14:18], "big"),
                    "target-hardware": int.from_bytes(a[18:24], "big"),
                    "target-protocol": int.from_bytes(a[24:28], "big"),
                }
            )
            p["payload"] = span(off + pos + 28, 0)
            p["padding"] = span(off + pos + 28, n - pos - 28)
        else:
            stop("network", "unsupported")
            p["payload"] = span(off + pos, n - pos)
        return p

    proto = None
    if ethertype == 0x0800:
        if pos + 20 > n:
            stop("network", "truncated")
            p["payload"] = span(off + pos, n - pos)
            return p
        ihl = (frame[pos] & 0x0F) * 4
        total = int.from_bytes(frame[pos + 2 : pos + 4], "big")
        if frame[pos] >> 4 != 4 or ihl < 20 or total < ihl:
            stop("network", "malformed")
            p["payload"] = span(off + pos, n - pos)
            return p
        flags_frag = int.from_bytes(frame[pos + 6 : pos + 8], "big")
        proto = frame[pos + 9]
        p["ip"] = wc.Variant(
            "v4",
            R(
                {
                    "source": int.from_bytes(frame[pos + 12 : pos + 16], "big"),
                    "destination": int.from_bytes(frame[pos + 16 : pos + 20], "big"),
                    "protocol": proto,
                    "ttl": frame[pos + 8],
                    "tos": frame[pos + 1],
                    "header-len": ihl,
                    "total-len": total,
                    "identification": int.from_bytes(frame[pos + 4 : pos + 6], "big"),
                    "dont-fragment": bool(flags_frag & 0x4000),
                    "more-fragments": bool(flags_frag & 0x2000),
                    "fragment-offset": (flags_frag & 0x1FFF) * 8,
                }
            ),
        )
        end = min(n, pos + total)
        frag_off = flags_frag & 0x1FFF
        pos += ihl
        if frag_off:
            stop("transport", "fragment")
            p["payload"] = span(off + pos, max(0, end - pos))
            p["padding"] = span(off + end, n - end)
            return p
    elif ethertype == 0x86DD:
        if pos + 40 > n:
            stop("network", "truncated")
            p["payload"] = span(off + pos, n - pos)
            return p
        first = int.from_bytes(frame[pos : pos + 4], "big")
        plen = int.from_bytes(frame[pos + 4 : pos + 6], "big")
        proto = frame[pos + 6]
        src = frame[pos + 8 : pos + 24]
        dst = frame[pos + 24 : pos + 40]
        fragment = None
        end = min(n, pos + 40 + plen)
        pos += 40
        if proto == 44 and pos + 8 <= end:
            fo = int.from_bytes(frame[pos + 2 : pos + 4], "big")
            fragment = R({"offset": fo & 0xFFF8, "more-fragments": bool(fo & 1), "identification": int.from_bytes(frame[pos + 4 : pos + 8], "big")})
            proto = frame[pos]
            pos += 8
        p["ip"] = wc.Variant(
            "v6",
            R(
                {
                    "source": (int.from_bytes(src[:8], "big"), int.from_bytes(src[8:], "big")),
                    "destination": (int.from_bytes(dst[:8], "big"), int.from_bytes(dst[8:], "big")),
                    "next-header": proto,
                    "hop-limit": frame[pos - 40 + 7] if fragment is None else frame[pos - 48 + 7],
                    "traffic-class": (first >> 20) & 0xFF,
                    "flow-label": first & 0xFFFFF,
                    "payload-len": plen,
                    "fragment": fragment,
                }
            ),
        )
        if fragment is not None and fragment["offset"]:
            stop("transport", "fragment")
            p["payload"] = span(off + pos, max(0, end - pos))
            p["padding"] = span(off + end, n - end)
            return p
    else:
        stop("network", "unsupported")
        p["payload"] = span(off + pos, n - pos)
        return p

    p["padding"] = span(off + end, n - end)
    if proto == 6 and pos + 20 <= end:
        h = frame[pos : pos + 20]
        hl = (h[12] >> 4) * 4
        fl = h[13]
        names = ["fin", "syn", "rst", "psh", "ack", "urg", "ece", "cwr"]
        p["transport"] = wc.Variant(
            "tcp",
            R(
                {
                    "source-port": int.from_bytes(h[0:2], "big"),
                    "destination-port": int.from_bytes(h[2:4], "big"),
                    "sequence": int.from_bytes(h[4:8], "big"),
                    "acknowledgment": int.from_bytes(h[8:12], "big"),
                    "flags": {nm for i, nm in enumerate(names) if fl & (1 << i)},
                    "window": int.from_bytes(h[14:16], "big"),
                    "header-len": hl,
                    "urgent-pointer": int.from_bytes(h[18:20], "big"),
                }
            ),
        )
        pos += max(20, hl)
    elif proto == 17 and pos + 8 <= end:
        h = frame[pos : pos + 8]
        p["transport"] = wc.Variant(
            "udp",
            R({"source-port": int.from_bytes(h[0:2], "big"), "destination-port": int.from_bytes(h[2:4], "big"), "length": int.from_bytes(h[4:6], "big")}),
        )
        pos += 8
    elif proto in (1, 58) and pos + 8 <= end:
        h = frame[pos : pos + 8]
        p["transport"] = wc.Variant(
            "icmpv4" if proto == 1 else "icmpv6",
            R({"icmp-type": h[0], "code": h[1], "rest": int.from_bytes(h[4:8], "big")}),
        )
        pos += 8
    elif proto in (6, 17, 1, 58):
        stop("transport", "truncated")
    else:
        stop("transport", "unsupported")
    p["payload"] = span(off + pos, max(0, end - pos))
    return p


def matches(p: R, linktype: int, interest) -> bool:
    """The chef's `interest` test, as the WIT documents it."""
    if interest.link_types and linktype not in interest.link_types:
        return False
    if interest.network:
        if p["arp"] is not None:
            net = "arp"
        elif p["ip"] is not None:
            net = "ipv4" if p["ip"].tag == "v4" else "ipv6"
        else:
            net = "other"
        if net not in interest.network:
            return False
    t = p["transport"]
    if interest.transport and (t is None or t.tag not in interest.transport):
        return False
    if interest.ports:
        if t is None or t.tag not in ("tcp", "udp"):
            return False
        if t.payload["source-port"] not in interest.ports and t.payload["destination-port"] not in interest.ports:
            return False
    return True


# --------------------------------------------------------------------------- packed form

_LAYERS = ("link", "vlan", "network", "ip-extension", "transport")
_REASONS = ("truncated", "malformed", "unsupported", "fragment")
_FLAGS = ("fin", "syn", "rst", "psh", "ack", "urg", "ece", "cwr")


def pack(records) -> bytes:
    """The packed batch (docs/packed-batch.md, layout version 1) of these WIT records."""
    out = bytearray(struct.pack("<4sHHII", b"NDPB", 1, 224, len(records), 0))
    for p in records:
        r = bytearray(224)
        put = lambda fmt, at, *v: struct.pack_into(fmt, r, at, *v)  # noqa: E731
        bits = 0
        put("<QIIII", 0, p["timestamp-ns"], p["captured-len"], p["original-len"], p["link-type"], p["interface-index"])
        put("<IIIIII", 24, p["frame"]["offset"], p["frame"]["len"], p["payload"]["offset"], p["payload"]["len"],
            p["padding"]["offset"], p["padding"]["len"])
        if p["stopped"] is not None:
            bits |= 1 << 12
            put("<BB", 52, _LAYERS.index(p["stopped"]["layer"]), _REASONS.index(p["stopped"]["reason"]))
        e = p["ethernet"]
        if e is not None:
            bits |= 1
            r[64:70] = e["source"].to_bytes(6, "big")
            r[70:76] = e["destination"].to_bytes(6, "big")
            put("<H", 76, e["ether-type"])
        for bit, at, key in ((2, 80, "vlan-outer"), (3, 88, "vlan-inner")):
            v = p[key]
            if v is not None:
                bits |= 1 << bit
                put("<BBHH", at, v["priority"], int(v["drop-eligible"]), v["id"], v["ether-type"])
        a = p["arp"]
        if a is not None:
            bits |= 1 << 4
            put("<HHH", 112, a["hardware-type"], a["protocol-type"], a["operation"])
            r[118:124] = a["sender-hardware"].to_bytes(6, "big")
            r[124:128] = a["sender-protocol"].to_bytes(4, "big")
            r[128:134] = a["target-hardware"].to_bytes(6, "big")
            r[134:138] = a["target-protocol"].to_bytes(4, "big")
        ip = p["ip"]
        if ip is not None:
            h = ip.payload
            if ip.tag == "v4":
                bits |= 1 << 5
                put("<BBBBHHHB", 140, h["protocol"], h["ttl"], h["tos"], h["header-len"], h["total-len"],
                    h["identification"], h["fragment-offset"], int(h["dont-fragment"]) | int(h["more-fragments"]) << 1)
                r[164:168] = h["source"].to_bytes(4, "big")
                r[180:184] = h["destination"].to_bytes(4, "big")
            else:
                bits |= 1 << 6
                put("<BBB", 140, h["next-header"], h["hop-limit"], h["traffic-class"])
                put("<H", 144, h["payload-len"])
                put("<I", 152, h["flow-label"])
                f = h["fragment"]
                if f is not None:
                    bits |= 1 << 7
                    put("<HBxI", 156, f["offset"], int(f["more-fragments"]), f["identification"])
                r[164:180] = ((h["source"][0] << 64) | h["source"][1]).to_bytes(16, "big")
                r[180:196] = ((h["destination"][0] << 64) | h["destination"][1]).to_bytes(16, "big")
        t = p["transport"]
        if t is not None:
            h = t.payload
            if t.tag == "tcp":
                bits |= 1 << 8
                fl = sum(1 << i for i, n in enumerate(_FLAGS) if n in h["flags"])
                put("<HHIIHBBH", 196, h["source-port"], h["destination-port"], h["sequence"], h["acknowledgment"],
                    h["window"], fl, h["header-len"], h["urgent-pointer"])
            elif t.tag == "udp":
                bits |= 1 << 9
                put("<HH", 196, h["source-port"], h["destination-port"])
                put("<H", 214, h["length"])
            else:
                bits |= 1 << (10 if t.tag == "icmpv4" else 11)
                put("<BB", 216, h["icmp-type"], h["code"])
                put("<I", 220, h["rest"])
        put("<I", 48, bits)
        out += r
    return bytes(out)


# --------------------------------------------------------------------------- host


class Chef:
    """One chef instance in its own store."""

    def __init__(self, path: str, deadline_ms: int, memory_mb: int):
        cfg = wasmtime.Config()
        cfg.epoch_interruption = True
        self.engine = wasmtime.Engine(cfg)
        t0 = time.perf_counter()
        self.component = wc.Component.from_file(self.engine, path)
        self.compile_s = time.perf_counter() - t0
        self.deadline_ticks = max(1, deadline_ms // 10)
        self._stop = False
        threading.Thread(target=self._ticker, daemon=True).start()
        self.store = wasmtime.Store(self.engine)
        self.store.set_limits(memory_size=memory_mb * 1024 * 1024)
        linker = wc.Linker(self.engine)
        with linker.root() as root:
            for version in VERSIONS:
                with root.add_instance("%s/log@%s" % (PKG, version)) as li:
                    li.add_func("log", self._log)
        linker.define_unknown_imports_as_traps(self.component)
        self.name = "?"
        self.store.set_epoch_deadline(self.deadline_ticks)
        self.instance = linker.instantiate(self.store, self.component)
        iface = None
        for version in VERSIONS:
            iface = self.instance.get_export_index(self.store, "%s/handler@%s" % (PKG, version))
            if iface is not None:
                self.version = version
                break
        if iface is None:
            raise SystemExit("%s exports no %s/handler of versions %s" % (path, PKG, ", ".join(VERSIONS)))
        self.f_packed = None
        if self.version != "0.1.0":
            self.f_packed = self.instance.get_func(self.store, self.instance.get_export_index(self.store, "on-packed", iface))
        self.f_describe = self.instance.get_func(self.store, self.instance.get_export_index(self.store, "describe", iface))
        self.f_packets = self.instance.get_func(self.store, self.instance.get_export_index(self.store, "on-packets", iface))
        self.f_interval = self.instance.get_func(self.store, self.instance.get_export_index(self.store, "on-interval", iface))

    def _ticker(self):
        while not self._stop:
            time.sleep(0.01)
            self.engine.increment_epoch()

    def _log(self, _store, level, message):
        print("[chef %s] %s %s" % (self.name, str(level).upper(), message), file=sys.stderr)

    def call(self, f, *args):
        self.store.set_epoch_deadline(self.deadline_ticks)
        return f(self.store, *args)

    def describe(self):
        info = self.call(self.f_describe)
        self.name = info.name
        self.packed = str(getattr(info, "batch-form", "records")) == "packed"
        return info

    def packets(self, records, arena):
        """Hand one batch over in the form the chef asked for."""
        if self.packed:
            return self.call(self.f_packed, pack(records), arena)
        if self.version != "0.1.0":
            for p in records:
                p["flow"] = None
        return self.call(self.f_packets, records, arena)


def envelope(chef: str, payload: str, driver: str, t: float) -> str:
    return json.dumps({"metadata": {"chef": chef, "kitchen": "devhost", "creation_time": t, "driver": driver}, "payload": json.loads(payload)})


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("chef")
    ap.add_argument("pcap")
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--interval", type=float, default=5.0, help="poke interval in capture seconds")
    ap.add_argument("--bench", type=int, default=0, help="replay N times, print packets/s, no dumplings")
    ap.add_argument("--deadline-ms", type=int, default=1000)
    ap.add_argument("--memory-mb", type=int, default=256)
    args = ap.parse_args()

    chef = Chef(args.chef, args.deadline_ms, args.memory_mb)
    info = chef.describe()
    drivers = info.drivers
    wi = info.interest
    interest = R({"link_types": list(getattr(wi, "link-types")), "network": [str(x) for x in wi.network], "transport": [str(x) for x in wi.transport], "ports": list(wi.ports)})
    print("devhost: %s v%s (chef API %s%s) drivers=%s interest=%s (compile %.2fs)" % (
        info.name, info.version, chef.version, ", packed" if chef.packed else "", sorted(drivers), vars(interest),
        chef.compile_s), file=sys.stderr)

    # Parse everything up front (one arena per batch).
    records = list(read_pcap(args.pcap))
    batches = []
    cur, arena, times = [], bytearray(), []
    for ts, caplen, wirelen, lt, frame in records:
        off = len(arena)
        p = parse(frame, lt, off)
        p.update({"timestamp-ns": ts, "captured-len": caplen, "original-len": wirelen, "link-type": lt, "interface-index": 0, "frame": span(off, caplen)})
        if not matches(p, lt, interest):
            continue
        arena += frame
        cur.append(p)
        times.append(ts)
        if len(cur) >= args.batch:
            batches.append((cur, bytes(arena), times))
            cur, arena, times = [], bytearray(), []
    if cur:
        batches.append((cur, bytes(arena), times))
    matched = sum(len(b[0]) for b in batches)

    if args.bench:
        wants = "packet" in drivers
        best = None
        for _ in range(args.bench):
            t0 = time.perf_counter()
            if wants:
                for pk, ar, _t in batches:
                    chef.packets(pk, ar)
            dt = time.perf_counter() - t0
            best = dt if best is None or dt < best else best
        rate = matched / best if best and matched else 0.0
        print(json.dumps({"chef": info.name, "packets": matched, "best_s": best, "packets_per_s": rate}))
        return 0

    interval_ns = int(args.interval * 1e9)
    next_poke = None
    out = sys.stdout
    if "interval" in drivers and records:
        next_poke = records[0][0]
    for pk, ar, tms in batches:
        # Pokes due before this batch's first packet.
        while next_poke is not None and next_poke <= tms[0]:
            for payload in chef.call(chef.f_interval, next_poke, interval_ns):
                out.write(envelope(info.name, payload, "interval", next_poke / 1e9) + "\n")
            next_poke += interval_ns
        if "packet" in drivers:
            for d in chef.packets(pk, ar):
                out.write(envelope(info.name, d.payload, "packet", tms[getattr(d, "packet-index")] / 1e9) + "\n")
    if next_poke is not None and records:
        last = records[-1][0]
        for payload in chef.call(chef.f_interval, last, interval_ns):
            out.write(envelope(info.name, payload, "interval", last / 1e9) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
