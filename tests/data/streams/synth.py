#!/usr/bin/env python3
"""Writes the synthesized TCP-stream captures the stream tests replay (deterministic output).

Usage: synth.py OUTDIR

The TLS captures carry a real ClientHello: `chromium-client-hello.bin` is what Chromium 156
sent to a loopback listener (1931 bytes, with a 1216-byte X25519MLKEM768 post-quantum key
share). Each connection gets its own server name (`s<k>.<case>.split.test`, patched into
the hello with its lengths fixed) and the server_name extension is moved to the end, as
Chrome's extension-order randomisation often puts it, so it lies beyond the first segment.
Every connection is SYN, SYN-ACK, the client's data segments, FIN, FIN, from its own client
port, so the tests can match dumplings to connections by port.

Captures:
- tls-split-every-offset.pcap  ClientHello over two segments split at every byte offset.
- tls-reordered.pcap           three segments in every order but the natural one.
- tls-duplicated.pcap          every segment twice, plus an overlapping retransmission.
- tls-overlap.pcap             an overlapping segment with different bytes, arriving second
                               (first data wins: the hello stays intact) and first.
- tls-missing.pcap             a segment never sent (the hello cannot complete), then the
                               same hello intact on another connection.
- http-split.pcap              HTTP requests with a long Cookie header split at many offsets
                               (Host after the split), in order and reversed.
- tunnels.pcap                 hellos and requests after a proxy prelude (client port 21xxx):
                               HTTP CONNECT (proxy port 3128) answered 200, answered 407 then
                               retried with credentials, answered 407 with the client's hello
                               sent anyway (no tunnel), with the hello sent before the 200 and
                               with plain HTTP inside; SOCKS5 (port 1080) with no
                               authentication, with user/password, refused (REP 5, no tunnel);
                               SOCKS4 and SOCKS4a (port 1080) granted and refused (0x5b).
"""
import os
import struct
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
CLIENT_IP = bytes([10, 1, 0, 1])
SERVER_IP = bytes([10, 9, 0, 1])
T0 = 1_764_900_000  # capture start, seconds


def csum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    s = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return ~s & 0xFFFF


def frame(src, dst, sport, dport, seq, ack, flags, payload=b""):
    tcp = struct.pack("!HHIIBBHHH", sport, dport, seq & 0xFFFFFFFF, ack & 0xFFFFFFFF,
                      5 << 4, flags, 65535, 0, 0)
    pseudo = src + dst + struct.pack("!BBH", 0, 6, len(tcp) + len(payload))
    c = csum(pseudo + tcp + payload)
    tcp = tcp[:16] + struct.pack("!H", c) + tcp[18:]
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(tcp) + len(payload), 0, 0x4000, 64, 6, 0,
                     src, dst)
    ip = ip[:10] + struct.pack("!H", csum(ip)) + ip[12:]
    eth = bytes.fromhex("020000000002020000000001") + b"\x08\x00"
    return eth + ip + tcp + payload


SYN, FIN, ACK, PSH = 0x02, 0x01, 0x10, 0x08


class Pcap:
    def __init__(self, path):
        self.f = open(path, "wb")
        self.f.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1))
        self.t = 0

    def write(self, data):
        self.t += 1000  # 1 ms apart
        self.f.write(struct.pack("<IIII", T0 + self.t // 1_000_000, self.t % 1_000_000,
                                 len(data), len(data)))
        self.f.write(data)

    def connection(self, cport, sport, pieces, client_isn=1000, server_isn=5000):
        """SYN, SYN-ACK, then `pieces` = [(offset, bytes)] from the client in the given
        order, then FIN from both sides."""
        c, s = CLIENT_IP, SERVER_IP
        self.write(frame(c, s, cport, sport, client_isn, 0, SYN))
        self.write(frame(s, c, sport, cport, server_isn, client_isn + 1, SYN | ACK))
        end = 0
        for off, data in pieces:
            self.write(frame(c, s, cport, sport, client_isn + 1 + off, server_isn + 1, PSH | ACK, data))
            end = max(end, off + len(data))
        self.write(frame(c, s, cport, sport, client_isn + 1 + end, server_isn + 1, FIN | ACK))
        self.write(frame(s, c, sport, cport, server_isn + 1, client_isn + 2 + end, FIN | ACK))

    def dialogue(self, cport, sport, steps, client_isn=3000, server_isn=7000):
        """SYN, SYN-ACK, then `steps` = [(from_client, bytes)] in the given order, each
        direction's sequence numbers following on, then FIN from both sides."""
        c, s = CLIENT_IP, SERVER_IP
        self.write(frame(c, s, cport, sport, client_isn, 0, SYN))
        self.write(frame(s, c, sport, cport, server_isn, client_isn + 1, SYN | ACK))
        cseq, sseq = client_isn + 1, server_isn + 1
        for from_client, data in steps:
            if from_client:
                self.write(frame(c, s, cport, sport, cseq, sseq, PSH | ACK, data))
                cseq += len(data)
            else:
                self.write(frame(s, c, sport, cport, sseq, cseq, PSH | ACK, data))
                sseq += len(data)
        self.write(frame(c, s, cport, sport, cseq, sseq, FIN | ACK))
        self.write(frame(s, c, sport, cport, sseq, cseq + 1, FIN | ACK))

    def close(self):
        self.f.close()


def u16(b, i):
    return int.from_bytes(b[i:i + 2], "big")


def hello_for(name: str) -> bytes:
    """The Chromium ClientHello with server name `name`, server_name extension last."""
    rec = open(os.path.join(HERE, "chromium-client-hello.bin"), "rb").read()
    hs = rec[5:]
    assert hs[0] == 1
    body = hs[4:]
    p = 2 + 32
    p += 1 + body[p]
    p += 2 + u16(body, p)
    p += 1 + body[p]
    ext_start = p + 2
    ext_end = ext_start + u16(body, p)
    exts = []
    q = ext_start
    while q < ext_end:
        t, l = u16(body, q), u16(body, q + 2)
        exts.append((t, body[q:q + 4 + l]))
        q += 4 + l
    n = name.encode()
    sni_data = struct.pack("!HBH", len(n) + 3, 0, len(n)) + n
    sni = struct.pack("!HH", 0, len(sni_data)) + sni_data
    others = [e for t, e in exts if t != 0]
    # Keep a GREASE extension last (Chromium does); the server name goes right before it.
    ext = b"".join(others[:-1]) + sni + others[-1]
    new_body = body[:p] + struct.pack("!H", len(ext)) + ext
    new_hs = bytes([1]) + len(new_body).to_bytes(3, "big") + new_body
    return rec[:3] + struct.pack("!H", len(new_hs)) + new_hs


def split(data, cuts):
    bounds = [0] + list(cuts) + [len(data)]
    return [(a, data[a:b]) for a, b in zip(bounds, bounds[1:])]


def main(out):
    os.makedirs(out, exist_ok=True)
    port = 20000

    p = Pcap(os.path.join(out, "tls-split-every-offset.pcap"))
    h0 = hello_for("s0000.every.split.test")
    for k in range(1, len(h0)):
        h = hello_for(f"s{k:04d}.every.split.test")
        p.connection(port, 443, split(h, [k]))
        port += 1
    p.close()

    p = Pcap(os.path.join(out, "tls-reordered.pcap"))
    orders = [(0, 2, 1), (1, 0, 2), (1, 2, 0), (2, 0, 1), (2, 1, 0)]
    for i, order in enumerate(orders):
        h = hello_for(f"s{i}.reordered.split.test")
        pieces = split(h, [700, 1400])
        p.connection(port, 443, [pieces[j] for j in order])
        port += 1
    p.close()

    p = Pcap(os.path.join(out, "tls-duplicated.pcap"))
    h = hello_for("s0.duplicated.split.test")
    pieces = split(h, [1000])
    p.connection(port, 443, [pieces[0], pieces[0], pieces[1], pieces[1]])
    port += 1
    h = hello_for("s1.duplicated.split.test")
    # A retransmission that overlaps both original segments (same bytes).
    p.connection(port, 443, [(0, h[:1000]), (500, h[500:1500]), (1000, h[1000:])])
    port += 1
    p.close()

    p = Pcap(os.path.join(out, "tls-overlap.pcap"))
    h = hello_for("s0.overlap.split.test")
    junk = bytes(0x5A for _ in range(1000))
    # Good bytes first, then an overlapping segment whose first half differs: first wins.
    p.connection(port, 443, [(0, h[:1000]), (500, junk[:500] + h[1000:1500]), (1500, h[1500:])])
    port += 1
    h = hello_for("s1.overlap.split.test")
    # Different bytes first (over the key share), then the good ones: first wins, so the
    # reassembled hello carries the junk (still parseable: the junk is inside the key share).
    p.connection(port, 443, [(600, junk[:400]), (0, h[:1000]), (1000, h[1000:])])
    port += 1
    p.close()

    p = Pcap(os.path.join(out, "tls-missing.pcap"))
    h = hello_for("s0.missing.split.test")
    pieces = split(h, [700, 1400])
    p.connection(port, 443, [pieces[0], pieces[2]])  # middle segment never sent
    port += 1
    h = hello_for("s1.missing.split.test")
    p.connection(port, 443, split(h, [700, 1400]))
    port += 1
    p.close()

    p = Pcap(os.path.join(out, "http-split.pcap"))
    for i, k in enumerate(list(range(1, 200, 7)) + [1000, 2000, 3000, 3100]):
        host = f"h{i}.http.split.test"
        req = (f"GET /item/{i} HTTP/1.1\r\nCookie: {'c' * 3000}\r\nHost: {host}\r\n"
               f"User-Agent: synth/1\r\nAccept: */*\r\n\r\n").encode()
        k = min(k, len(req) - 1)
        pieces = split(req, [k])
        if i % 2:
            pieces.reverse()
        p.connection(port, 80, pieces)
        port += 1
    p.close()

    tunnels(os.path.join(out, "tunnels.pcap"))


def tunnels(path):
    """Hellos and requests after HTTP CONNECT / SOCKS preludes (client ports from 21000)."""
    p = Pcap(path)
    port = 21000
    C, S = True, False

    def connect(name, port_=443, auth=False):
        extra = "Proxy-Authorization: Basic dXNlcjpwYXNz\r\n" if auth else ""
        return (f"CONNECT {name}:{port_} HTTP/1.1\r\nHost: {name}:{port_}\r\n"
                f"User-Agent: synth/1\r\n{extra}\r\n").encode()

    ok = b"HTTP/1.1 200 Connection established\r\n\r\n"
    body = b"<html>Proxy authentication required</html>"
    denied = (b"HTTP/1.1 407 Proxy Authentication Required\r\n"
              b"Proxy-Authenticate: Basic realm=\"synth\"\r\n"
              + f"Content-Length: {len(body)}\r\n\r\n".encode() + body)

    def get(host):
        return f"GET /in/tunnel HTTP/1.1\r\nHost: {host}\r\nUser-Agent: synth/1\r\n\r\n".encode()

    def socks5_name(name, port_):
        n = name.encode()
        return bytes([5, 1, 0, 3, len(n)]) + n + struct.pack("!H", port_)

    socks5_ok = bytes([5, 0, 0, 1, 10, 9, 0, 1, 0x9C, 0x40])
    sessions = [
        # HTTP CONNECT on a proxy port, answered 200, the hello after it.
        (3128, [(C, connect("s0.connect.tunnel.test")), (S, ok),
                (C, hello_for("s0.connect.tunnel.test"))]),
        # 407 with a body, the same request with credentials, 200, the hello.
        (3128, [(C, connect("s1.connect.tunnel.test")), (S, denied),
                (C, connect("s1.connect.tunnel.test", auth=True)), (S, ok),
                (C, hello_for("s1.connect.tunnel.test"))]),
        # 407, and the client sends its hello anyway: not a tunnel, no server name.
        (3128, [(C, connect("s2.connect.tunnel.test")), (S, denied),
                (C, hello_for("s2.connect.tunnel.test"))]),
        # Plain HTTP inside the tunnel.
        (3128, [(C, connect("h3.connect.tunnel.test", 80)), (S, ok),
                (C, get("h3.connect.tunnel.test"))]),
        # SOCKS5, no authentication, a host name, the hello.
        (1080, [(C, bytes([5, 1, 0])), (S, bytes([5, 0])),
                (C, socks5_name("s4.socks5.tunnel.test", 443)), (S, socks5_ok),
                (C, hello_for("s4.socks5.tunnel.test"))]),
        # SOCKS5 with user/password, an IPv4 address, plain HTTP.
        (1080, [(C, bytes([5, 2, 0, 2])), (S, bytes([5, 2])),
                (C, bytes([1, 4]) + b"user" + bytes([4]) + b"pass"), (S, bytes([1, 0])),
                (C, bytes([5, 1, 0, 1, 10, 9, 0, 80, 0, 80])), (S, socks5_ok),
                (C, get("h5.socks5.tunnel.test"))]),
        # SOCKS5 refused (REP 5: connection refused), the hello sent anyway: no tunnel.
        (1080, [(C, bytes([5, 1, 0])), (S, bytes([5, 0])),
                (C, socks5_name("s6.socks5.tunnel.test", 443)),
                (S, bytes([5, 5, 0, 1, 0, 0, 0, 0, 0, 0])),
                (C, hello_for("s6.socks5.tunnel.test"))]),
        # SOCKS4 granted (an address), the hello.
        (1080, [(C, bytes([4, 1, 1, 187, 10, 9, 0, 2]) + b"synth\0"),
                (S, bytes([0, 0x5A, 0, 0, 0, 0, 0, 0])),
                (C, hello_for("s7.socks4.tunnel.test"))]),
        # SOCKS4a granted (a host name), plain HTTP.
        (1080, [(C, bytes([4, 1, 0, 80, 0, 0, 0, 1]) + b"synth\0h8.socks4a.tunnel.test\0"),
                (S, bytes([0, 0x5A, 0, 0, 0, 0, 0, 0])),
                (C, get("h8.socks4a.tunnel.test"))]),
        # SOCKS4 refused (0x5b), the hello sent anyway: no tunnel.
        (1080, [(C, bytes([4, 1, 1, 187, 10, 9, 0, 2]) + b"synth\0"),
                (S, bytes([0, 0x5B, 0, 0, 0, 0, 0, 0])),
                (C, hello_for("s9.socks4.tunnel.test"))]),
    ]
    for sport, steps in sessions:
        p.dialogue(port, sport, steps)
        port += 1
    p.close()


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: synth.py OUTDIR")
    main(sys.argv[1])
