// netdumplings-chef.js: write netdumplings chefs in JavaScript.
//
// A chef is an ES module (`chef.js`) that exports `onPacket(packet)` and/or
// `onInterval(interval)`, each returning a JSON-serialisable value (the dumpling payload) or
// `undefined`/`null` (no dumpling), plus optional `name`, `description`, `version`,
// `interest` and `catchErrors`. Or it exports a class as `default`: its name is the chef
// name and its methods are the handlers. `tools/nd-chef/nd-chef build DIR` wraps it with
// `makeHandler` below and builds a component with componentize-js.
//
// The kitchen calls chefs in batches of packets; this layer hides that and calls
// `onPacket` once per packet with a `Packet` (below): scapy-style layer views
// (`packet.arp.psrc`, `packet.ip.src`, `packet.udp.dport`, `packet.dns.qname`...).
//
// Chef API 0.2: the component asks for the packed batch form (`batch-form = packed`,
// `on-packed`, layout in docs/packed-batch.md), so packets arrive as bytes and a
// `PackedPacket` decodes a field only when the chef reads it. It also exports `state`:
// a chef's optional `snapshot()` / `restore(bytes)` carry its state across a hot reload.

import { log as witLog } from 'netdumplings:chef/log@0.2.0';

const LEVELS = ['trace', 'debug', 'info', 'warn', 'error'];

/** Write a message to the kitchen's log (level: trace, debug, info, warn, error). */
export function log(message, level = 'info') {
  witLog(LEVELS.includes(level) ? level : 'info', String(message));
}

const hex2 = (n) => (n < 16 ? '0' : '') + n.toString(16);

/** A MAC address number (u64, BigInt or number) as "aa:bb:cc:dd:ee:ff". */
export function macStr(v) {
  const n = BigInt(v);
  const parts = [];
  for (let shift = 40n; shift >= 0n; shift -= 8n) parts.push(hex2(Number((n >> shift) & 0xffn)));
  return parts.join(':');
}

/** An IPv4 address number (big-endian u32) as a dotted quad. */
export function ipv4Str(v) {
  return `${(v >>> 24) & 255}.${(v >>> 16) & 255}.${(v >>> 8) & 255}.${v & 255}`;
}

/** An IPv6 address given as [high u64, low u64] (BigInts), in compressed form. */
export function ipv6Str([hi, lo]) {
  const words = [];
  for (const half of [BigInt(hi), BigInt(lo)]) {
    for (let shift = 48n; shift >= 0n; shift -= 16n) words.push(Number((half >> shift) & 0xffffn));
  }
  // Longest run of zero words (length >= 2) becomes "::".
  let best = -1, bestLen = 0;
  for (let i = 0; i < 8; ) {
    if (words[i] !== 0) { i++; continue; }
    let j = i;
    while (j < 8 && words[j] === 0) j++;
    if (j - i > bestLen && j - i >= 2) { best = i; bestLen = j - i; }
    i = j;
  }
  const h = (ws) => ws.map((w) => w.toString(16)).join(':');
  if (best < 0) return h(words);
  return `${h(words.slice(0, best))}::${h(words.slice(best + bestLen))}`;
}

const DNS_UDP_PORTS = [53, 5353];
const DNS_TCP_PORTS = [53];
const ICMP_ERROR_TYPES = [3, 4, 5, 11, 12];
// scapy 2.4.5's ICMPv6 class names by type (as the Rust PacketCountChef names them).
const ICMPV6_NAMES = {
  1: 'ICMPv6 Destination Unreachable', 2: 'ICMPv6 Packet Too Big', 3: 'ICMPv6 Time Exceeded',
  4: 'ICMPv6 Parameter Problem', 128: 'ICMPv6 Echo Request', 129: 'ICMPv6 Echo Reply',
  130: 'MLD - Multicast Listener Query', 131: 'MLD - Multicast Listener Report',
  132: 'MLD - Multicast Listener Done', 133: 'ICMPv6 Neighbor Discovery - Router Solicitation',
  134: 'ICMPv6 Neighbor Discovery - Router Advertisement',
  135: 'ICMPv6 Neighbor Discovery - Neighbor Solicitation',
  136: 'ICMPv6 Neighbor Discovery - Neighbor Advertisement',
  137: 'ICMPv6 Neighbor Discovery - Redirect',
  141: 'ICMPv6 Inverse Neighbor Discovery Solicitation',
  142: 'ICMPv6 Inverse Neighbor Discovery Advertisement',
  143: 'MLDv2 - Multicast Listener Report', 144: 'ICMPv6 Home Agent Address Discovery Request',
  145: 'ICMPv6 Home Agent Address Discovery Reply', 146: 'ICMPv6 Mobile Prefix Solicitation',
  147: 'ICMPv6 Mobile Prefix Advertisement', 151: 'ICMPv6 Multicast Router Discovery Advertisement',
  152: 'ICMPv6 Multicast Router Discovery Solicitation',
  153: 'ICMPv6 Multicast Router Discovery Termination', 155: 'RPL',
};
const ICMPV6_FALLBACK = 'Scapy6 ICMPv6 fallback class';
const DHCPV6_NAMES = {
  1: 'DHCPv6 Solicit Message', 2: 'DHCPv6 Advertise Message', 3: 'DHCPv6 Request Message',
  4: 'DHCPv6 Confirm Message', 5: 'DHCPv6 Renew Message', 6: 'DHCPv6 Rebind Message',
  7: 'DHCPv6 Reply Message', 8: 'DHCPv6 Release Message', 9: 'DHCPv6 Decline Message',
  10: 'DHCPv6 Reconfigure Message', 11: 'DHCPv6 Information Request Message',
  12: 'DHCPv6 Relay Forward Message (Relay Agent/Server Message)',
  13: 'DHCPv6 Relay Reply Message (Relay Agent/Server Message)',
};

const utf8Lossy = new TextDecoder('utf-8'); // invalid bytes become U+FFFD, as Rust's from_utf8_lossy
const MAX_NAME_LEN = 255;
const MAX_POINTERS = 16;

function readName(msg, start) {
  const labels = [];
  let pos = start, end = -1, pointers = 0, wire = 0;
  for (;;) {
    if (pos >= msg.length) return null;
    const len = msg[pos];
    const kind = len & 0xc0;
    if (kind === 0) {
      if (len === 0) return [labels, end >= 0 ? end : pos + 1];
      if (pos + 1 + len > msg.length) return null;
      wire += 1 + len;
      if (wire > MAX_NAME_LEN) return null;
      labels.push(msg.subarray(pos + 1, pos + 1 + len));
      pos += 1 + len;
    } else if (kind === 0xc0) {
      if (++pointers > MAX_POINTERS || pos + 1 >= msg.length) return null;
      if (end < 0) end = pos + 2;
      pos = ((len & 0x3f) << 8) | msg[pos + 1];
    } else {
      return null;
    }
  }
}

/** One DNS question: `labels` (Uint8Array views), `qtype`, `qclass`; `name` is the text. */
class DnsQuestion {
  constructor(labels, qtype, qclass) { this.labels = labels; this.qtype = qtype; this.qclass = qclass; }
  /** Labels decoded as UTF-8 (invalid bytes replaced) joined with '.', no trailing dot. */
  get name() {
    const labels = this.labels;
    let s = labels.length ? utf8Lossy.decode(labels[0]) : '';
    for (let i = 1; i < labels.length; i++) s += '.' + utf8Lossy.decode(labels[i]);
    return s;
  }
}

/** A DNS message: header fields, and the questions (`qd`) parsed on first access. Methods
 * live on the prototype, so decoding a packet allocates no closures. */
class DnsMessage {
  constructor(msg) {
    this.raw = msg;
    this.id = (msg[0] << 8) | msg[1];
    this.qr = msg[2] >> 7;
    this.opcode = (msg[2] >> 3) & 15;
    this.rcode = msg[3] & 15;
    this.qdcount = (msg[4] << 8) | msg[5];
    this.ancount = (msg[6] << 8) | msg[7];
    this.nscount = (msg[8] << 8) | msg[9];
    this.arcount = (msg[10] << 8) | msg[11];
    this._qd = null;
  }
  get isResponse() { return this.qr === 1; }
  /** The questions that parse (stops at the first bad one). */
  get qd() {
    if (this._qd) return this._qd;
    const msg = this.raw, qd = [];
    let pos = 12;
    for (let i = 0; i < this.qdcount; i++) {
      const got = readName(msg, pos);
      if (!got || got[1] + 4 > msg.length) break;
      const next = got[1];
      qd.push(new DnsQuestion(got[0], (msg[next] << 8) | msg[next + 1], ((msg[next + 2] << 8) | msg[next + 3]) & 0x7fff));
      pos = next + 4;
    }
    this._qd = qd;
    return qd;
  }
  /** First question's name, or null. */
  get qname() { const q = this.qd; return q.length ? q[0].name : null; }
}

/** Decode a DNS message (header; questions on demand), or null when shorter than a header. */
export function parseDns(msg) {
  return msg.length < 12 ? null : new DnsMessage(msg);
}

// --- scapy-style layer names: a port of chefs/packet-count-chef/src/layers.rs (keep in sync) ---
const ND_OPTION_NAMES = {
  1: 'ICMPv6 Neighbor Discovery Option - Source Link-Layer Address',
  2: 'ICMPv6 Neighbor Discovery Option - Destination Link-Layer Address',
  3: 'ICMPv6 Neighbor Discovery Option - Prefix Information',
  4: 'ICMPv6 Neighbor Discovery Option - Redirected Header',
  5: 'ICMPv6 Neighbor Discovery Option - MTU',
  6: 'ICMPv6 Neighbor Discovery Option - NBMA Shortcut Limit',
  7: 'ICMPv6 Neighbor Discovery - Interval Advertisement',
  8: 'ICMPv6 Neighbor Discovery - Home Agent Information',
  9: 'ICMPv6 Inverse Neighbor Discovery Option - Source Address List',
  10: 'ICMPv6 Inverse Neighbor Discovery Option - Target Address List',
  17: 'ICMPv6 Neighbor Discovery - IP Address Option (FH for MIPv6)',
  18: 'ICMPv6 Neighbor Discovery - New Router Prefix Information Option (FH for MIPv6)',
  19: 'ICMPv6 Neighbor Discovery - Link-Layer Address (LLA) Option (FH for MIPv6)',
  23: 'ICMPv6 Neighbor Discovery - MAP Option',
  24: 'ICMPv6 Neighbor Discovery Option - Route Information Option',
  25: 'ICMPv6 Neighbor Discovery Option - Recursive DNS Server Option',
  26: 'ICMPv6 Neighbor Discovery Option - Expanded Flags Option',
  31: 'ICMPv6 Neighbor Discovery Option - DNS Search List Option',
};
const DHCPV6_OPTION_NAMES = {
  1: 'DHCP6 Client Identifier Option', 2: 'DHCP6 Server Identifier Option',
  3: 'DHCP6 Identity Association for Non-temporary Addresses Option',
  4: 'DHCP6 Identity Association for Temporary Addresses Option',
  5: 'DHCP6 IA Address Option (IA_TA or IA_NA suboption)', 6: 'DHCP6 Option Request Option',
  7: 'DHCP6 Preference Option', 8: 'DHCP6 Elapsed Time Option', 9: 'DHCP6 Relay Message Option',
  11: 'DHCP6 Option - Authentication', 12: 'DHCP6 Server Unicast Option', 13: 'DHCP6 Status Code Option',
  14: 'DHCP6 Rapid Commit Option', 15: 'DHCP6 User Class Option', 16: 'DHCP6 Vendor Class Option',
  17: 'DHCP6 Vendor-specific Information Option', 18: 'DHCP6 Interface-Id Option',
  19: 'DHCP6 Reconfigure Message Option', 20: 'DHCP6 Reconfigure Accept Option',
  21: 'DHCP6 Option - SIP Servers Domain Name List', 22: 'DHCP6 Option - SIP Servers IPv6 Address List',
  23: 'DHCP6 Option - DNS Recursive Name Server', 24: 'DHCP6 Option - Domain Search List option',
  25: 'DHCP6 Option - Identity Association for Prefix Delegation', 26: 'DHCP6 Option - IA Prefix option',
  27: 'DHCP6 Option - NIS Servers', 28: 'DHCP6 Option - NIS+ Servers', 29: 'DHCP6 Option - NIS Domain Name',
  30: 'DHCP6 Option - NIS+ Domain Name', 31: 'DHCP6 option - SNTP Servers',
  32: 'DHCP6 Option - Information Refresh Time', 33: 'DHCP6 Option - BCMCS Domain Name List',
  34: 'DHCP6 Option - BCMCS Addresses List', 37: 'DHCP6 Option - Relay Agent Remote-ID',
  38: 'DHCP6 Option - Subscriber ID', 39: 'DHCP6 Option - Client FQDN',
  40: 'DHCP6 PANA Authentication Agent Option', 41: 'DHCP6 POSIX Timezone Option',
  42: 'DHCP6 TZDB Timezone Option', 43: 'DHCP6 Option - RelayRequest Option', 48: 'DHCP6 Client Link Option',
  59: 'DHCP6 Boot File URL Option', 61: 'DHCP6 Client System Architecture Type Option',
  62: 'DHCP6 Client Network Interface Identifier Option', 65: 'DHCP6 Option - ERP Domain Name List',
  66: 'DHCP6 Relay-Supplied Options Option', 68: 'DHCP6 Option - Virtual Subnet Selection',
  79: 'DHCP6 Option - Client Link Layer address', 112: 'DHCP6 Option - MUD URL',
};
const TFTP_NAMES = { 1: 'TFTP Read Request', 2: 'TFTP Write Request', 3: 'TFTP Data', 4: 'TFTP Ack', 5: 'TFTP Error', 6: 'TFTP Option Ack' };

const be16 = (b, at) => (at + 1 < b.length ? (b[at] << 8) | b[at + 1] : undefined);

function dissectsAsDns(msg) {
  if (msg.length < 12) return false;
  if (be16(msg, 4) === 0) return true;
  const d = parseDns(msg);
  return d !== null && d.qd.length > 0;
}

function stripTcpLength(seg) {
  if (seg.length < 2) return null;
  const len = (seg[0] << 8) | seg[1];
  return seg.length >= 2 + len ? seg.subarray(2, 2 + len) : null;
}

function tcpApplication(sport, dport, payload, f) {
  let isDns = false;
  if (sport === 53 || dport === 53) {
    const msg = stripTcpLength(payload);
    isDns = msg !== null && dissectsAsDns(msg);
  }
  f(isDns ? 'DNS' : 'Raw');
}

function ipv6ExtensionHeaders(ip, f) {
  if (ip.length <= 6) return;
  let next = ip[6], pos = 40;
  for (let i = 0; i < 8; i++) {
    if (pos + 2 > ip.length) return;
    const h0 = ip[pos], h1 = ip[pos + 1];
    let len;
    if (next === 0) { f('IPv6 Extension Header - Hop-by-Hop Options Header'); len = (h1 + 1) * 8; }
    else if (next === 60) { f('IPv6 Extension Header - Destination Options Header'); len = (h1 + 1) * 8; }
    else if (next === 43) {
      f(pos + 2 < ip.length && ip[pos + 2] === 4 ? 'IPv6 Option Header Segment Routing' : 'IPv6 Option Header Routing');
      len = (h1 + 1) * 8;
    } else if (next === 44) { f('IPv6 Extension Header - Fragmentation header'); len = 8; }
    else return;
    next = h0;
    pos += len;
  }
}

function llc(payload, len, f) {
  const data = payload.subarray(0, len);
  if (!data.length) return;
  f('LLC');
  let rest;
  if (data.length > 3 && data[0] === 0xaa && data[1] === 0xaa) { f('SNAP'); rest = data.subarray(8); }
  else if (data.length > 3 && data[0] === 0x42 && data[1] === 0x42) { f('Spanning Tree Protocol'); rest = data.subarray(0, 0); }
  else rest = data.subarray(3);
  if (rest.length) f('Raw');
}

function icmpv6(type, payload, f) {
  f(ICMPV6_NAMES[type] || ICMPV6_FALLBACK);
  if (type >= 1 && type <= 4) { if (payload.length) icmpErrorQuote(payload, true, f); return; }
  const at = { 133: 0, 134: 8, 135: 16, 136: 16, 137: 32 }[type];
  if (at === undefined) return;
  let opts = payload.subarray(at);
  for (let i = 0; i < 32; i++) {
    if (opts.length < 2) return;
    const len = opts[1] * 8;
    if (len === 0) { f('Raw'); return; }
    f(ND_OPTION_NAMES[opts[0]] || 'ICMPv6 Neighbor Discovery Option - Scapy Unimplemented');
    opts = opts.subarray(len);
  }
}

function udpApplication(sport, dport, payload, f) {
  const either = (port) => sport === port || dport === port;
  if ((sport === 68 && dport === 67) || (sport === 67 && dport === 68) || (sport === 67 && dport === 67)) {
    f('BOOTP');
    if (payload.length >= 240 && payload[236] === 99 && payload[237] === 130 && payload[238] === 83 && payload[239] === 99) f('DHCP options');
    else if (payload.length > 236) f('Raw');
  } else if (either(5353) || either(53)) f(dissectsAsDns(payload) ? 'DNS' : 'Raw');
  else if (dport === 547 || dport === 546) dhcpv6(payload, f);
  else if (either(4500)) f(payload.length >= 8 ? 'ESP' : 'Raw');
  else if (either(500)) f('ISAKMP');
  else if (either(5355)) {
    f(payload.length > 2 && payload[2] & 0x80
      ? 'Link Local Multicast Node Resolution - Response' : 'Link Local Multicast Node Resolution - Query');
  } else if (dport === 137) f('NBNS query request');
  else if (sport === 137) f('NBNS query response');
  else if (dport === 138) { f('NBT Datagram Packet'); if (payload.length > 82) f('Raw'); }
  else if (either(123)) f('NTPHeader');
  else if (either(1812) || either(1813) || either(3799)) f('RADIUS');
  else if (either(520)) {
    f('RIP header');
    const entries = payload.subarray(4);
    for (let i = 0; i < Math.min(entries.length, 64 * 20); i += 20) {
      f(entries.length > i + 1 && entries[i] === 0xff && entries[i + 1] === 0xff ? 'RIP authentication' : 'RIP entry');
    }
  } else if (either(161) || either(162)) f('SNMP');
  else if (dport === 69) {
    f('TFTP opcode');
    f(payload.length >= 2 && payload[0] === 0 && TFTP_NAMES[payload[1]] ? TFTP_NAMES[payload[1]] : 'Raw');
  } else f('Raw');
}

function dhcpv6(payload, f) {
  f(DHCPV6_NAMES[payload[0]] || 'DHCPv6 Generic Message');
  let opts = payload.subarray(payload[0] === 12 || payload[0] === 13 ? 34 : 4);
  for (let i = 0; i < 64; i++) {
    const code = be16(opts, 0), len = be16(opts, 2);
    if (code === undefined || len === undefined) { if (opts.length) f('Raw'); return; }
    f(DHCPV6_OPTION_NAMES[code] || 'Unknown DHCPv6 Option');
    opts = opts.subarray(4 + len);
  }
}

function icmpErrorQuote(q, v6, f) {
  let ipLen, proto;
  if (v6) { f('IPv6 in ICMPv6'); ipLen = 40; proto = q.length > 6 ? q[6] : undefined; }
  else { f('IP in ICMP'); ipLen = Math.max(20, q.length ? (q[0] & 15) * 4 : 20); proto = q.length > 9 ? q[9] : undefined; }
  const rest = q.subarray(ipLen);
  if (!rest.length) return;
  const sport = be16(rest, 0) || 0, dport = be16(rest, 2) || 0;
  if (proto === 17) {
    f('UDP in ICMP');
    const app = rest.subarray(8);
    if (app.length) udpApplication(sport, dport, app, f);
  } else if (proto === 6) {
    f('TCP in ICMP');
    const hdr = Math.max(20, rest.length > 12 ? (rest[12] >> 4) * 4 : 20);
    const app = rest.subarray(hdr);
    if (app.length) tcpApplication(sport, dport, app, f);
  } else if (proto === 1 && !v6) { f('ICMP in ICMP'); if (rest.length > 8) f('Raw'); }
  else if (proto === 58 && v6) f(ICMPV6_NAMES[rest[0]] || ICMPV6_FALLBACK);
  else f('Raw');
}

/** Most bytes a chef should put in one payload that lists a table (an interval payload): the
 * Rust chef SDK's `PAYLOAD_BUDGET` (900 KiB), under the kitchen's limit on one dumpling
 * (`KITCHEN_MAX_DUMPLING_BYTES`, the hub's 1 MiB frame less 4 KiB of envelope). A payload
 * over the limit is refused whole, at every poke, so a table of capture-controlled strings
 * (6 JSON bytes per escaped control byte) must show only what fits
 * (`BoundedMap.newestWithin`) and count the rest. */
export const PAYLOAD_BUDGET = 900 * 1024;
export const KITCHEN_MAX_DUMPLING_BYTES = 1024 * 1024 - 4096;

/** A Map holding at most `capacity` keys (first-seen order; the least recently touched key is
 * evicted to make room). `touch(key, make)` and `set` count as touching, `get` does not. The
 * same policy as the Rust chef SDK's BoundedMap. JSON.stringify gives an object.
 * Every operation is O(1): `recency` is a Set in touch order (re-adding moves a key to the
 * end), so the victim is its first key, no scan. */
export class BoundedMap extends Map {
  constructor(capacity) { super(); this.capacity = Math.max(1, capacity | 0); this.evicted = 0; this.recency = new Set(); }
  touch(key, make) {
    // `has`/`get` are Map's own (not overridden), read through `this`: a `super.x` read
    // costs the interpreter more ops, and a hit needs one lookup, not two.
    let v = this.get(key);
    if (v !== undefined || this.has(key)) {
      this.recency.delete(key);
      this.recency.add(key);
      return v;
    }
    if (this.size >= this.capacity) {
      const victim = this.recency.values().next().value;
      super.delete(victim);
      this.recency.delete(victim);
      this.evicted += 1;
    }
    v = make();
    super.set(key, v);
    this.recency.add(key);
    return v;
  }
  set(key, value) { if (this.recency) { this.touch(key, () => value); } return super.set(key, value); }
  delete(key) { this.recency.delete(key); return super.delete(key); }
  clear() { if (this.recency) this.recency.clear(); return super.clear(); }
  toJSON() { return Object.fromEntries(this); }
  /** The entries a payload of at most `budget` bytes can show, as `{ entries, leftOut }`:
   * the most recently touched entries whose `cost(key, value)` (each entry's share of the
   * payload) add up to at most `budget`, as [key, value] pairs in first-seen order, and how
   * many were left out. Every entry when they all fit (the usual case). The Rust chef SDK's
   * `BoundedMap::newest_within`: the newest are taken while they fit, the first that does
   * not fit ends the list. */
  newestWithin(budget, cost) {
    const costs = new Map();
    let total = 0;
    for (const [k, v] of super.entries()) {
      const c = cost(k, v);
      costs.set(k, c);
      total += c;
    }
    if (total <= budget) return { entries: [...super.entries()], leftOut: 0 };
    const keep = new Set();
    let used = 0;
    const newestFirst = [...this.recency].reverse();
    for (const k of newestFirst) {
      used += costs.get(k);
      if (used > budget) break;
      keep.add(k);
    }
    const entries = [];
    for (const kv of super.entries()) if (keep.has(kv[0])) entries.push(kv);
    return { entries, leftOut: this.size - keep.size };
  }
  /** This map for a chef's `snapshot()`: a JSON-able object with its bound and recency
   * order (`capacity`, `evicted`, `entries` = [key, value] pairs in first-seen order,
   * `recency` = their indices from least to most recently touched; the Rust SDK's form). */
  state() {
    const place = new Map();
    const entries = [];
    for (const [k, v] of super.entries()) { place.set(k, entries.length); entries.push([k, v]); }
    return { capacity: this.capacity, evicted: this.evicted, entries, recency: [...this.recency].map((k) => place.get(k)) };
  }
  /** A BoundedMap from `state()` output (after a JSON round trip), for a chef's `restore`.
   * `capacity`: this version's bound (the least recently touched beyond it are evicted);
   * default: the saved one. Throws on anything that is not such a state, so the chef
   * refuses it instead of misreading it. */
  static fromState(state, capacity) {
    const bad = (why) => new Error(`not a BoundedMap state: ${why}`);
    if (!state || !Array.isArray(state.entries) || !Array.isArray(state.recency)) throw bad('entries or recency missing');
    const saved = state.capacity;
    const n = state.entries.length;
    if (!Number.isInteger(saved) || saved < 1 || n > saved) throw bad(`${n} entries, capacity ${saved}`);
    if (!Number.isInteger(state.evicted) || state.evicted < 0) throw bad('evicted is not a count');
    const m = new BoundedMap(saved);
    m.evicted = state.evicted;
    for (const pair of state.entries) {
      if (!Array.isArray(pair) || pair.length !== 2) throw bad('an entry is not a [key, value] pair');
      Map.prototype.set.call(m, pair[0], pair[1]);
    }
    if (m.size !== n) throw bad('a key twice');
    const seen = new Set(state.recency);
    if (state.recency.length !== n || seen.size !== n || !state.recency.every((i) => Number.isInteger(i) && i >= 0 && i < n)) {
      throw bad('recency is not a permutation of the entries');
    }
    for (const i of state.recency) m.recency.add(state.entries[i][0]);
    if (capacity !== undefined) {
      m.capacity = Math.max(1, capacity | 0);
      while (m.size > m.capacity) {
        const victim = m.recency.values().next().value;
        Map.prototype.delete.call(m, victim);
        m.recency.delete(victim);
        m.evicted += 1;
      }
    }
    return m;
  }
}

/** A chef's `snapshot()` text: `state` (JSON-able) tagged with the chef's name and
 * `stateVersion`, so that `loadState` in a later version can refuse what it cannot read. */
export function dumpState(chefName, stateVersion, state) {
  return JSON.stringify({ chef: chefName, state_version: stateVersion, state });
}

/** The state `dumpState` tagged, for a chef's `restore(bytes)`; throws (the chef refuses the
 * state and starts fresh; the kitchen logs why) when `bytes` is not such a state, is another
 * chef's, or has another `stateVersion` (bump it when the state's meaning changes). */
export function loadState(chefName, stateVersion, bytes) {
  let doc;
  try {
    doc = JSON.parse(new TextDecoder().decode(bytes));
  } catch (e) {
    throw new Error(`the state is not a tagged JSON state (${errText(e)})`);
  }
  if (!doc || typeof doc !== 'object' || !('state_version' in doc) || !('state' in doc)) {
    throw new Error('the state is not a tagged JSON state (another SDK or an older version wrote it)');
  }
  if (doc.chef !== chefName) throw new Error(`the state is ${JSON.stringify(doc.chef)}'s, not ${JSON.stringify(chefName)}'s`);
  if (doc.state_version !== stateVersion) {
    throw new Error(`the state is ${chefName} state version ${JSON.stringify(doc.state_version)}; this version of the chef reads version ${stateVersion}`);
  }
  return doc.state;
}

/** One packet as the kitchen parsed it; `wit` is the raw record of wit/chef.wit. */
export class Packet {
  // `wit` undefined: a subclass provides it as a getter (PackedPacket).
  constructor(wit, arena) { if (wit !== undefined) this.wit = wit; this.arena = arena; this._dns = undefined; }
  /** Capture time, float seconds since the epoch. */
  get time() { return Number(this.wit.timestampNs) / 1e9; }
  get timestampNs() { return this.wit.timestampNs; }
  get linkType() { return this.wit.linkType; }
  get length() { return this.wit.originalLen; }
  span(s) { return this.arena.subarray(s.offset, s.offset + s.len); }
  get frame() { return this.span(this.wit.frame); }
  get payload() { return this.span(this.wit.payload); }
  get padding() { return this.span(this.wit.padding); }
  get ether() {
    const e = this.wit.ethernet;
    return e ? { src: macStr(e.source), dst: macStr(e.destination), type: e.etherType } : null;
  }
  get vlan() { const v = this.wit.vlanOuter; return v ? { vlan: v.id, prio: v.priority, type: v.etherType } : null; }
  get arp() {
    const a = this.wit.arp;
    if (!a) return null;
    return {
      op: a.operation, hwtype: a.hardwareType, ptype: a.protocolType,
      hwsrc: macStr(a.senderHardware), psrc: ipv4Str(a.senderProtocol),
      hwdst: macStr(a.targetHardware), pdst: ipv4Str(a.targetProtocol),
    };
  }
  get ip() {
    const h = this.wit.ip;
    if (!h) return null;
    const v = h.val;
    if (h.tag === 'v4') {
      return { version: 4, src: ipv4Str(v.source), dst: ipv4Str(v.destination), proto: v.protocol, ttl: v.ttl, tos: v.tos, len: v.totalLen, id: v.identification };
    }
    return { version: 6, src: ipv6Str(v.source), dst: ipv6Str(v.destination), nh: v.nextHeader, proto: v.nextHeader, hlim: v.hopLimit, ttl: v.hopLimit, tc: v.trafficClass, fl: v.flowLabel, plen: v.payloadLen };
  }
  get tcp() {
    const t = this.wit.transport;
    if (!t || t.tag !== 'tcp') return null;
    const v = t.val, f = v.flags;
    const flags = [['fin', 'F'], ['syn', 'S'], ['rst', 'R'], ['psh', 'P'], ['ack', 'A'], ['urg', 'U'], ['ece', 'E'], ['cwr', 'C']]
      .filter(([k]) => f[k]).map(([, l]) => l).join('');
    return { sport: v.sourcePort, dport: v.destinationPort, seq: v.sequence, ack: v.acknowledgment, window: v.window, flags };
  }
  get udp() {
    const t = this.wit.transport;
    return t && t.tag === 'udp' ? { sport: t.val.sourcePort, dport: t.val.destinationPort, len: t.val.length } : null;
  }
  get icmp() {
    const t = this.wit.transport;
    if (!t || (t.tag !== 'icmpv4' && t.tag !== 'icmpv6')) return null;
    return { version: t.tag === 'icmpv4' ? 4 : 6, type: t.val.icmpType, code: t.val.code, rest: t.val.rest };
  }
  /** The DNS message where scapy decoded one (UDP 53/5353, TCP 53), else null. */
  get dns() {
    if (this._dns !== undefined) return this._dns;
    this._dns = null;
    const t = this.wit.transport;
    if (t && (t.tag === 'udp' || t.tag === 'tcp')) {
      const ports = t.tag === 'udp' ? DNS_UDP_PORTS : DNS_TCP_PORTS;
      if (ports.includes(t.val.sourcePort) || ports.includes(t.val.destinationPort)) this._dns = this.parseDns();
    }
    return this._dns;
  }
  /** The payload decoded as DNS whatever the ports (TCP: after the 2-byte length prefix,
   * which must fit), or null. For chefs whose interest already names the DNS ports. */
  parseDns() {
    const t = this.wit.transport;
    if (!t || (t.tag !== 'udp' && t.tag !== 'tcp')) return null;
    let data = this.payload;
    if (t.tag === 'tcp') {
      if (data.length < 2) return null;
      const len = (data[0] << 8) | data[1];
      if (data.length < 2 + len) return null;
      data = data.subarray(2, 2 + len);
    }
    return parseDns(data);
  }
  /** scapy-style layer names, outermost first (the Rust PacketCountChef's table). */
  layers() {
    const w = this.wit, names = [];
    const f = (n) => names.push(n);
    let etherType, linkLen = 0;
    if (w.ethernet) {
      f(w.ethernet.etherType <= 1500 && !w.vlanOuter ? '802.3' : 'Ethernet');
      etherType = w.ethernet.etherType; linkLen = 14;
    } else if (w.linuxSll) {
      const v2 = w.linkType === 276;
      f(v2 ? 'cooked linux v2' : 'cooked linux'); etherType = w.linuxSll.protocolType; linkLen = v2 ? 20 : 16;
    } else if (w.linkType === 0 || w.linkType === 108) { f('Loopback'); linkLen = 4; }
    let lastType = etherType;
    if (w.vlanOuter) {
      f(etherType === 0x88a8 ? '802_1AD' : '802.1Q'); linkLen += 4; lastType = w.vlanOuter.etherType;
      if (w.vlanInner) { f(w.vlanOuter.etherType === 0x88a8 ? '802_1AD' : '802.1Q'); linkLen += 4; lastType = w.vlanInner.etherType; }
    }
    if (w.arp) f('ARP');
    const payload = this.payload;
    if (w.ip) {
      if (w.ip.tag === 'v4') f('IP');
      else {
        f('IPv6');
        const frame = this.frame;
        if (frame.length > linkLen && frame[linkLen] >> 4 === 6) ipv6ExtensionHeaders(frame.subarray(linkLen), f);
        else if (w.ip.val.fragment) f('IPv6 Extension Header - Fragmentation header');
      }
    } else if ((w.ethernet || w.linuxSll) && lastType !== undefined && lastType <= 1500) {
      llc(payload, lastType, f);
      if (payload.length > lastType || w.padding.len) f('Padding');
      return names;
    }
    const t = w.transport;
    if (t) {
      const h = t.val;
      if (t.tag === 'tcp') { f('TCP'); if (payload.length) tcpApplication(h.sourcePort, h.destinationPort, payload, f); }
      else if (t.tag === 'udp') { f('UDP'); if (payload.length) udpApplication(h.sourcePort, h.destinationPort, payload, f); }
      else if (t.tag === 'icmpv4') {
        f('ICMP');
        if (payload.length) { if (ICMP_ERROR_TYPES.includes(h.icmpType)) icmpErrorQuote(payload, false, f); else f('Raw'); }
      } else icmpv6(h.icmpType, payload, f);
    } else if (payload.length) f('Raw');
    if (w.padding.len) f('Padding');
    return names;
  }
  haslayer(name) { return this.layers().includes(name); }
}

// --- the packed batch form (docs/packed-batch.md, layout version 1) ---
const PACKED_MAGIC = 0x4250444e; // "NDPB" read as a little-endian u32
const PACKED_VERSION = 1;
const PACKED_HEADER = 16;
const PACKED_RECORD_V1 = 224;
const PACKED_RECORD_DNS = 256;
const P_ETHERNET = 1, P_SLL = 2, P_VLAN_OUTER = 4, P_VLAN_INNER = 8, P_ARP = 16, P_IPV4 = 32, P_IPV6 = 64,
  P_IPV6_FRAGMENT = 128, P_TCP = 256, P_UDP = 512, P_ICMPV4 = 1024, P_ICMPV6 = 2048, P_STOPPED = 4096, P_FLOW = 8192;
const P_PORTS = P_TCP | P_UDP;
const STOP_LAYERS = ['link', 'vlan', 'network', 'ip-extension', 'transport'];
const STOP_REASONS = ['truncated', 'malformed', 'unsupported', 'fragment'];
const TCP_FLAG_NAMES = ['fin', 'syn', 'rst', 'psh', 'ack', 'urg', 'ece', 'cwr'];
const TCP_FLAG_LETTERS = 'FSRPAUEC';

/** The packets of a packed batch (`headers` bytes, `arena` bytes), in order. */
export function packedPackets(headers, arena) {
  if (headers.length < PACKED_HEADER) throw new Error(`packed batch of ${headers.length} bytes is shorter than its header`);
  const dv = new DataView(headers.buffer, headers.byteOffset, headers.byteLength);
  const version = dv.getUint16(4, true), size = dv.getUint16(6, true), count = dv.getUint32(8, true);
  if (dv.getUint32(0, true) !== PACKED_MAGIC || version !== PACKED_VERSION || size < PACKED_RECORD_V1) {
    throw new Error(`unknown packed batch (version ${version}, record size ${size})`);
  }
  if (PACKED_HEADER + count * size > headers.length) throw new Error(`packed batch claims ${count} records in ${headers.length} bytes`);
  const out = new Array(count);
  // Records of 256 bytes or more carry the DNS slots; older kitchens write 224. Noted on the
  // batch's DataView, so a packet costs no extra constructor level.
  dv.dnsSlots = size >= PACKED_RECORD_DNS;
  dv.tailStart = PACKED_HEADER + count * size;
  dv.tailText = undefined; // decoded on the first DNS name read (tailText)
  dv.names = undefined; // name strings by tail offset, made on the first DNS name read
  for (let i = 0; i < count; i++) out[i] = new PackedPacket(dv, headers, PACKED_HEADER + i * size, arena);
  return out;
}

const macAt = (b, at) => hex2(b[at]) + ':' + hex2(b[at + 1]) + ':' + hex2(b[at + 2]) + ':' + hex2(b[at + 3]) + ':' + hex2(b[at + 4]) + ':' + hex2(b[at + 5]);
const ipv4At = (b, at) => `${b[at]}.${b[at + 1]}.${b[at + 2]}.${b[at + 3]}`;
const macNumAt = (dv, at) => (BigInt(dv.getUint16(at, false)) << 32n) | BigInt(dv.getUint32(at + 2, false));

/** A Packet over one packed record: the same getters, each decoding its slot on access.
 * Made once per packet, so its constructor is the cheapest the interpreter allows: four
 * stores and no `super()` call (a derived constructor costs SpiderMonkey's interpreter a
 * second frame and a `this` check per packet). It is still a Packet: its prototype chain
 * goes through Packet.prototype (set below), so `instanceof Packet` and the inherited
 * methods (`layers()`, `haslayer()`) hold. `_dns` and `_wit` are set on first use. */
export class PackedPacket {
  constructor(dv, bytes, base, arena) { this.dv = dv; this.bytes = bytes; this.o = base; this.arena = arena; }
  bits() { return this.dv.getUint32(this.o + 48, true); }
  get time() { const dv = this.dv, o = this.o; return (dv.getUint32(o + 4, true) * 4294967296 + dv.getUint32(o, true)) / 1e9; }
  get timestampNs() { return this.dv.getBigUint64(this.o, true); }
  get linkType() { return this.dv.getUint32(this.o + 16, true); }
  get length() { return this.dv.getUint32(this.o + 12, true); }
  slot(at) { const off = this.dv.getUint32(this.o + at, true); return this.arena.subarray(off, off + this.dv.getUint32(this.o + at + 4, true)); }
  get frame() { return this.slot(24); }
  get payload() { return this.slot(32); }
  get padding() { return this.slot(40); }
  get ether() {
    if (!(this.bits() & P_ETHERNET)) return null;
    const o = this.o;
    return { src: macAt(this.bytes, o + 64), dst: macAt(this.bytes, o + 70), type: this.dv.getUint16(o + 76, true) };
  }
  get vlan() {
    if (!(this.bits() & P_VLAN_OUTER)) return null;
    const dv = this.dv, o = this.o;
    return { vlan: dv.getUint16(o + 82, true), prio: dv.getUint8(o + 80), type: dv.getUint16(o + 84, true) };
  }
  get arp() {
    if (!(this.bits() & P_ARP)) return null;
    const dv = this.dv, b = this.bytes, o = this.o;
    return {
      op: dv.getUint16(o + 116, true), hwtype: dv.getUint16(o + 112, true), ptype: dv.getUint16(o + 114, true),
      hwsrc: macAt(b, o + 118), psrc: ipv4At(b, o + 124), hwdst: macAt(b, o + 128), pdst: ipv4At(b, o + 134),
    };
  }
  get ip() {
    const bits = this.bits(), dv = this.dv, o = this.o;
    if (bits & P_IPV4) {
      const b = this.bytes;
      return { version: 4, src: ipv4At(b, o + 164), dst: ipv4At(b, o + 180), proto: dv.getUint8(o + 140), ttl: dv.getUint8(o + 141), tos: dv.getUint8(o + 142), len: dv.getUint16(o + 144, true), id: dv.getUint16(o + 146, true) };
    }
    if (bits & P_IPV6) {
      const nh = dv.getUint8(o + 140), hlim = dv.getUint8(o + 141);
      return {
        version: 6, src: ipv6Str([dv.getBigUint64(o + 164, false), dv.getBigUint64(o + 172, false)]),
        dst: ipv6Str([dv.getBigUint64(o + 180, false), dv.getBigUint64(o + 188, false)]),
        nh, proto: nh, hlim, ttl: hlim, tc: dv.getUint8(o + 142), fl: dv.getUint32(o + 152, true), plen: dv.getUint16(o + 144, true),
      };
    }
    return null;
  }
  get tcp() {
    if (!(this.bits() & P_TCP)) return null;
    const dv = this.dv, o = this.o, f = dv.getUint8(o + 210);
    let flags = '';
    for (let i = 0; i < 8; i++) if (f & (1 << i)) flags += TCP_FLAG_LETTERS[i];
    return { sport: dv.getUint16(o + 196, true), dport: dv.getUint16(o + 198, true), seq: dv.getUint32(o + 200, true), ack: dv.getUint32(o + 204, true), window: dv.getUint16(o + 208, true), flags };
  }
  get udp() {
    if (!(this.bits() & P_UDP)) return null;
    const dv = this.dv, o = this.o;
    return { sport: dv.getUint16(o + 196, true), dport: dv.getUint16(o + 198, true), len: dv.getUint16(o + 214, true) };
  }
  get icmp() {
    const bits = this.bits();
    if (!(bits & (P_ICMPV4 | P_ICMPV6))) return null;
    const dv = this.dv, o = this.o;
    return { version: bits & P_ICMPV4 ? 4 : 6, type: dv.getUint8(o + 216), code: dv.getUint8(o + 217), rest: dv.getUint32(o + 220, true) };
  }
  get dns() {
    if (this._dns !== undefined) return this._dns;
    this._dns = null;
    const bits = this.bits();
    if (bits & P_PORTS) {
      const ports = bits & P_UDP ? DNS_UDP_PORTS : DNS_TCP_PORTS;
      const sport = this.dv.getUint16(this.o + 196, true), dport = this.dv.getUint16(this.o + 198, true);
      if (ports.includes(sport) || ports.includes(dport)) this._dns = this.parseDns();
    }
    return this._dns;
  }
  parseDns() {
    const dv = this.dv;
    if (dv.dnsSlots) {
      // The DNS slots (docs/packed-batch.md), when the kitchen filled them for this packet.
      // The batch's views go to the constructors as arguments: an argument costs the
      // interpreter less than reading the packet's property again.
      const b = this.bytes, o = this.o, d = b[o + DNS_AT];
      if (d & DNS_CHECKED) return d & DNS_MESSAGE ? new PackedDnsMessage(this, dv, b, o, d) : null;
    }
    const bits = this.bits();
    if (!(bits & P_PORTS)) return null;
    let data = this.slot(32);
    if (bits & P_TCP) {
      if (data.length < 2) return null;
      const len = (data[0] << 8) | data[1];
      if (data.length < 2 + len) return null;
      data = data.subarray(2, 2 + len);
    }
    return parseDns(data);
  }
  /** The raw record in the shape of wit/chef.wit's `packet` (as componentize-js lifts it),
   * built on first access. */
  get wit() {
    if (this._wit === undefined) this._wit = packedRecord(this.dv, this.o);
    return this._wit;
  }
}
Object.setPrototypeOf(PackedPacket.prototype, Packet.prototype);

// --- DNS from the record's DNS slots (offsets 224..256, docs/packed-batch.md) ---
// The kitchen reads the DNS header and first question of UDP/TCP packets on ports 53 and
// 5353; these views answer from the slots with the values parseDns() gives, and fall back to
// parsing the payload for what the slots leave open (a second question, a label holding a
// "." byte, other ports).
const DNS_AT = 224, DNS_CHECKED = 1, DNS_MESSAGE = 2, DNS_QUESTION = 4, DNS_QUESTIONS_COMPLETE = 8;

/** The batch's string tail (docs/packed-batch.md) decoded once, when every byte of it is
 * ASCII: a name is then a substring of it at the same offsets, which costs the interpreter
 * less than a view and a UTF-8 decode per name. `null` when some byte is not ASCII (names
 * are then decoded one by one, invalid bytes replaced). Cached on the batch's DataView. */
function tailText(dv, bytes) {
  let t = dv.tailText;
  if (t === undefined) {
    // All ASCII exactly when every byte became one character and none was replaced: a
    // valid multi-byte sequence makes the text shorter, an invalid byte a U+FFFD. Checked
    // natively (indexOf), not by a regular expression, which SpiderMonkey's regexp
    // interpreter runs at ~12 ns a character in componentize-js (measured: ~25 µs a batch).
    const tail = bytes.subarray(dv.tailStart);
    t = utf8Lossy.decode(tail);
    if (t.length !== tail.length || t.indexOf('\ufffd') >= 0) t = null;
    dv.tailText = t;
  }
  return t;
}

/** The first question, from the DNS slots: the name is one byte string in the batch's tail.
 * `name` is decoded when the question is made (nearly every chef reads it; a data property
 * costs the interpreter less than a getter call). It holds its packet (`p`), not copies of
 * the batch's views: two stores per question. */
class PackedDnsQuestion {
  constructor(p, dv, bytes, o) {
    this.p = p;
    const at = dv.getUint32(o + 228, true), n = dv.getUint16(o + 226, true);
    // The kitchen writes a name repeated within a batch once (docs/packed-batch.md), so its
    // string is made once per batch: a Map hit costs the interpreter ~0.15 µs, a slice of
    // the tail ~0.65 µs (measured in componentize-js). Keyed by offset and length: an
    // empty name shares its offset with the next name.
    const names = dv.names || (dv.names = new Map()), key = at * 65536 + n;
    let name = names.get(key);
    if (name === undefined) {
      const t = tailText(dv, bytes);
      name = t !== null ? t.slice(at - dv.tailStart, at - dv.tailStart + n) : utf8Lossy.decode(bytes.subarray(at, at + n));
      names.set(key, name);
    }
    /** Labels decoded as UTF-8 (invalid bytes replaced) joined with '.', no trailing dot. */
    this.name = name;
  }
  dotted() { const dv = this.p.dv, o = this.p.o, at = dv.getUint32(o + 228, true); return this.p.bytes.subarray(at, at + dv.getUint16(o + 226, true)); }
  /** The labels (Uint8Array views); exact, as the kitchen fills the slots only when no label holds a '.'. */
  get labels() {
    const d = this.dotted(), out = [];
    if (!d.length) return out;
    let start = 0;
    for (let i = 0; i <= d.length; i++) if (i === d.length || d[i] === 46) { out.push(d.subarray(start, i)); start = i + 1; }
    return out;
  }
  get qtype() { return this.p.dv.getUint16(this.p.o + 244, true); }
  get qclass() { return this.p.dv.getUint16(this.p.o + 246, true) & 0x7fff; }
}

/** A DNS message over the DNS slots of packet `p`: `isResponse` and `qd` are set when it is
 * made (what nearly every DNS chef reads first); the other fields of parseDns()'s message
 * are read on access. */
class PackedDnsMessage {
  // `dv`, `bytes`, `o`: packet `p`'s batch views and record offset; `bits`: its DNS bits.
  constructor(p, dv, bytes, o, bits) {
    this.p = p;
    this.isResponse = bytes[o + 235] >= 0x80;
    // A second question or a label holding a '.': the list is parsed from the message.
    this.qd = bits & DNS_QUESTIONS_COMPLETE ? (bits & DNS_QUESTION ? [new PackedDnsQuestion(p, dv, bytes, o)] : []) : new DnsMessage(this.raw).qd;
  }
  get id() { return this.p.dv.getUint16(this.p.o + 232, true); }
  get qr() { return this.p.bytes[this.p.o + 235] >> 7; }
  get opcode() { return (this.p.bytes[this.p.o + 235] >> 3) & 15; }
  get rcode() { return this.p.bytes[this.p.o + 234] & 15; }
  get qdcount() { return this.p.dv.getUint16(this.p.o + 236, true); }
  get ancount() { return this.p.dv.getUint16(this.p.o + 238, true); }
  get nscount() { return this.p.dv.getUint16(this.p.o + 240, true); }
  get arcount() { return this.p.dv.getUint16(this.p.o + 242, true); }
  /** The message bytes (a view into the arena). */
  get raw() { const dv = this.p.dv, o = this.p.o, off = dv.getUint32(o + 248, true); return this.p.arena.subarray(off, off + dv.getUint32(o + 252, true)); }
  get qname() { const q = this.qd; return q.length ? q[0].name : null; }
}

function packedRecord(dv, o) {
  const bits = dv.getUint32(o + 48, true);
  const u8 = (at) => dv.getUint8(o + at), u16 = (at) => dv.getUint16(o + at, true), u32 = (at) => dv.getUint32(o + at, true);
  const span = (at) => ({ offset: u32(at), len: u32(at + 4) });
  const vlan = (at) => ({ priority: u8(at), dropEligible: u8(at + 1) !== 0, id: u16(at + 2), etherType: u16(at + 4) });
  const icmp = () => ({ icmpType: u8(216), code: u8(217), rest: u32(220) });
  let ip = undefined, transport = undefined;
  if (bits & P_IPV4) {
    ip = { tag: 'v4', val: {
      source: dv.getUint32(o + 164, false), destination: dv.getUint32(o + 180, false), protocol: u8(140), ttl: u8(141),
      tos: u8(142), headerLen: u8(143), totalLen: u16(144), identification: u16(146),
      dontFragment: (u8(150) & 1) !== 0, moreFragments: (u8(150) & 2) !== 0, fragmentOffset: u16(148),
    } };
  } else if (bits & P_IPV6) {
    ip = { tag: 'v6', val: {
      source: [dv.getBigUint64(o + 164, false), dv.getBigUint64(o + 172, false)],
      destination: [dv.getBigUint64(o + 180, false), dv.getBigUint64(o + 188, false)],
      nextHeader: u8(140), hopLimit: u8(141), trafficClass: u8(142), flowLabel: u32(152), payloadLen: u16(144),
      fragment: bits & P_IPV6_FRAGMENT ? { offset: u16(156), moreFragments: u8(158) !== 0, identification: u32(160) } : undefined,
    } };
  }
  if (bits & P_TCP) {
    const f = u8(210), flags = {};
    TCP_FLAG_NAMES.forEach((n, i) => { flags[n] = (f & (1 << i)) !== 0; });
    transport = { tag: 'tcp', val: {
      sourcePort: u16(196), destinationPort: u16(198), sequence: u32(200), acknowledgment: u32(204),
      flags, window: u16(208), headerLen: u8(211), urgentPointer: u16(212),
    } };
  } else if (bits & P_UDP) {
    transport = { tag: 'udp', val: { sourcePort: u16(196), destinationPort: u16(198), length: u16(214) } };
  } else if (bits & P_ICMPV4) {
    transport = { tag: 'icmpv4', val: icmp() };
  } else if (bits & P_ICMPV6) {
    transport = { tag: 'icmpv6', val: icmp() };
  }
  return {
    timestampNs: dv.getBigUint64(o, true), capturedLen: u32(8), originalLen: u32(12), linkType: u32(16),
    interfaceIndex: u32(20), frame: span(24), payload: span(32), padding: span(40),
    ethernet: bits & P_ETHERNET ? { source: macNumAt(dv, o + 64), destination: macNumAt(dv, o + 70), etherType: u16(76) } : undefined,
    linuxSll: bits & P_SLL ? {
      packetType: u16(96), arpHardwareType: u16(98), protocolType: u16(100), sourceLen: u8(102),
      source: dv.getBigUint64(o + 104, false),
    } : undefined,
    vlanOuter: bits & P_VLAN_OUTER ? vlan(80) : undefined,
    vlanInner: bits & P_VLAN_INNER ? vlan(88) : undefined,
    arp: bits & P_ARP ? {
      hardwareType: u16(112), protocolType: u16(114), operation: u16(116), senderHardware: macNumAt(dv, o + 118),
      senderProtocol: dv.getUint32(o + 124, false), targetHardware: macNumAt(dv, o + 128), targetProtocol: dv.getUint32(o + 134, false),
    } : undefined,
    ip, transport,
    stopped: bits & P_STOPPED ? { layer: STOP_LAYERS[u8(52)], reason: STOP_REASONS[u8(53)] } : undefined,
    flow: bits & P_FLOW ? { id: dv.getBigUint64(o + 56, true), direction: u8(54) ? 'from-responder' : 'from-originator' } : undefined,
  };
}

const NETWORK = ['arp', 'ipv4', 'ipv6', 'other'];
const TRANSPORT = ['tcp', 'udp', 'icmpv4', 'icmpv6'];

function checkInterest(i = {}) {
  const out = { linkTypes: [...(i.linkTypes || [])], network: [...(i.network || [])], transport: [...(i.transport || [])], ports: [...(i.ports || [])] };
  for (const n of out.network) if (!NETWORK.includes(n)) throw new Error(`unknown network protocol ${n}`);
  for (const t of out.transport) if (!TRANSPORT.includes(t)) throw new Error(`unknown transport protocol ${t}`);
  for (const p of out.ports) if (!Number.isInteger(p) || p < 0 || p > 65535) throw new Error(`bad port ${p}`);
  return out;
}

function errText(e) { return e && e.message ? `${e.name || 'Error'}: ${e.message}` : String(e); }

/** The `handler` export of the chef world, driving the chef module `mod`. */
export function makeHandler(mod, options = {}) {
  // A default-exported class is the chef; otherwise the module's named exports are.
  let chef = mod, name = mod.name;
  if (typeof mod.default === 'function') {
    chef = new mod.default();
    name = name || mod.default.name;
  } else if (mod.default && typeof mod.default === 'object') {
    chef = mod.default;
  }
  name = options.name || chef.name || name;
  if (!name || !/^[A-Za-z0-9_-]{1,64}$/.test(name)) {
    throw new Error(`chef name ${JSON.stringify(name)} must be 1-64 letters, digits, _ or - (export const name = 'MyChef')`);
  }
  // Called once per packet, so not through a bound function: calling one costs
  // SpiderMonkey's interpreter a native call and a nested interpreter activation per packet,
  // a plain function a frame in the same loop. A module's `onPacket` is called as a plain
  // function (module code is strict: `this` is undefined, as in any call of an exported
  // function); a class instance's as its method.
  const onPacket = typeof chef.onPacket !== 'function' ? null : chef === mod ? mod.onPacket : (p) => chef.onPacket(p);
  const onInterval = typeof chef.onInterval === 'function' ? chef.onInterval.bind(chef) : null;
  const catchErrors = (chef.catchErrors ?? mod.catchErrors) !== false;
  const info = {
    name,
    description: String(chef.description ?? mod.description ?? name),
    version: String(chef.version ?? mod.version ?? '0.1.0'),
    drivers: { packet: !!onPacket, interval: !!onInterval },
    interest: { ...checkInterest(chef.interest ?? mod.interest), flowEvents: false, streamBytes: 0 },
    batchForm: 'packed',
  };
  // console.* goes to the kitchen's log (stdout is not wired to anything).
  const toLog = (level) => (...args) => log(args.map((a) => (typeof a === 'string' ? a : JSON.stringify(a))).join(' '), level);
  globalThis.console = { log: toLog('info'), info: toLog('info'), warn: toLog('warn'), error: toLog('error'), debug: toLog('debug') };

  // The chef's optional state method pair, for `makeState` (export `state`).
  const snapshot = typeof chef.snapshot === 'function' ? chef.snapshot.bind(chef) : typeof mod.snapshot === 'function' ? mod.snapshot : null;
  const restore = typeof chef.restore === 'function' ? chef.restore.bind(chef) : typeof mod.restore === 'function' ? mod.restore : null;
  // `pairs`: each dumpling as the text `[index,payload]` (for `packedJson`), else as a
  // `packet-dumpling` record. Either way the payload is encoded when the handler returns.
  function run(packets, pairs) {
    const out = [];
    if (!onPacket) return out;
    for (let i = 0; i < packets.length; i++) {
      const p = packets[i];
      if (catchErrors) {
        try {
          const v = onPacket(p);
          if (v === undefined || v === null) continue;
          const payload = JSON.stringify(v);
          out.push(pairs ? '[' + i + ',' + payload + ']' : { packetIndex: i, payload });
        } catch (e) {
          log(`Error invoking packet handler for chef ${name}: ${errText(e)}`, 'error');
        }
      } else {
        const v = onPacket(p);
        if (v === undefined || v === null) continue;
        const payload = JSON.stringify(v);
        out.push(pairs ? '[' + i + ',' + payload + ']' : { packetIndex: i, payload });
      }
    }
    return out;
  }
  // A packed batch answered in one JSON text, `[[index, payload], ...]` (packed-json).
  const packedJson = (headers, arena) => {
    if (!onPacket) return '[]';
    const out = run(packedPackets(headers, arena), true);
    return out.length ? '[' + out.join(',') + ']' : '[]';
  };
  // The same text as UTF-8 bytes (packed-json-bytes): componentize-js lowers a returned
  // string at ~0.13 µs per byte in its interpreter, a Uint8Array as one copy, and
  // TextEncoder encodes natively (~1.5 ns per byte; measured, docs/packed-batch.md).
  const packedJsonBytes = (headers, arena) => utf8.encode(packedJson(headers, arena));
  // The interval payloads' JSON texts (`handler.on-interval`; `interval-json-bytes` encodes them).
  const intervalPayloads = (nowNs, intervalNs) => {
    if (!onInterval) return [];
    if (catchErrors) {
      try {
        const v = onInterval(Number(intervalNs) / 1e9, Number(nowNs) / 1e9);
        return v === undefined || v === null ? [] : [JSON.stringify(v)];
      } catch (e) {
        log(`Error invoking interval handler for chef ${name}: ${errText(e)}`, 'error');
        return [];
      }
    }
    const v = onInterval(Number(intervalNs) / 1e9, Number(nowNs) / 1e9);
    return v === undefined || v === null ? [] : [JSON.stringify(v)];
  };
  current = { name, snapshot, restore, packedJson, packedJsonBytes, intervalPayloads };

  return {
    describe() { return info; },
    // Only called if the kitchen ignored batch-form = packed; still correct.
    onPackets(packets, arena) { return run(packets.map((w) => new Packet(w, arena)), false); },
    onPacked(headers, arena) { return onPacket ? run(packedPackets(headers, arena), false) : []; },
    onFlowEvents(_events) { return []; },
    onStream(_chunks, _arena) { return []; },
    onInterval(nowNs, intervalNs) { return intervalPayloads(nowNs, intervalNs); },
  };
}

let current = null;
const utf8 = new TextEncoder();
const EMPTY_ANSWER = utf8.encode('[]');

/** The `packed-json` export of the packed-chef world for the chef `makeHandler` wrapped: a
 * packed batch answered in one JSON text of `[packet-index, payload]` pairs (one string to
 * lower instead of a record per dumpling; docs/packed-batch.md). */
export function makePackedJson() {
  return {
    onPacked(headers, arena) { return current ? current.packedJson(headers, arena) : '[]'; },
  };
}

/** The `packed-json-bytes` export of the packed-bytes-chef world: `packed-json`'s answer as
 * the UTF-8 bytes of the same text (docs/packed-batch.md). The kitchen prefers it. */
export function makePackedJsonBytes() {
  return {
    onPacked(headers, arena) { return current ? current.packedJsonBytes(headers, arena) : EMPTY_ANSWER; },
  };
}

/** The `interval-json-bytes` export of the bytes-chef world: `handler.on-interval`'s payloads
 * as the UTF-8 bytes of their JSON texts. componentize-js lowers a returned string at ~0.13 µs
 * per byte in its interpreter (a 60 KB table: ~8 ms a poke), a Uint8Array as one copy; the
 * kitchen prefers this export (wit/chef.wit). */
export function makeIntervalJsonBytes() {
  return {
    onInterval(nowNs, intervalNs) {
      return current ? current.intervalPayloads(nowNs, intervalNs).map((text) => utf8.encode(text)) : [];
    },
  };
}

/** The `state` export of the stateful-chef world for the chef `makeHandler` wrapped: its
 * `snapshot()` (a Uint8Array, or a string sent as UTF-8) and `restore(bytes)` carry its
 * state across a hot reload. A chef without them snapshots nothing; an exception in
 * `restore` refuses the old state (the new version starts fresh; the kitchen logs why). */
export function makeState() {
  return {
    snapshot() {
      if (!current || !current.snapshot) return new Uint8Array(0);
      const v = current.snapshot();
      if (typeof v === 'string') return new TextEncoder().encode(v);
      if (v instanceof Uint8Array) return v;
      throw new Error(`${current.name}.snapshot() must return a Uint8Array or a string`);
    },
    restore(bytes) {
      if (!current || !current.restore) {
        // Thrown strings become the `err` of restore's result.
        if (bytes.length) throw `${current ? current.name : 'chef'} has no restore() method: starting fresh`;
        return;
      }
      try {
        current.restore(bytes);
      } catch (e) {
        throw `${current.name}.restore() refused the state: ${errText(e)}`;
      }
    },
  };
}

