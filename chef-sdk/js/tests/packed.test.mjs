// The JS guest layer's packed decoder under node: a packer written from docs/packed-batch.md,
// then every view of PackedPacket (and the DNS slots) compared with the records-form Packet
// on the same packets, and the packed-json answer checked.
//
//   node --test chef-sdk/js/tests/      (run by tests/lang-chefs.sh)
//
// The SDK imports `netdumplings:chef/log@0.2.0`, which only exists inside a component: the
// test loads a copy whose import is replaced by a stub that records the log lines.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, writeFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, dirname } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
const source = readFileSync(join(here, '..', 'netdumplings-chef.js'), 'utf8');
const IMPORT = "import { log as witLog } from 'netdumplings:chef/log@0.2.0';";
assert.ok(source.includes(IMPORT), 'the SDK no longer imports log as the test expects');
const dir = mkdtempSync(join(tmpdir(), 'nd-js-sdk-'));
const logged = [];
globalThis.__ndTestLog = (level, message) => logged.push([level, message]);
writeFileSync(join(dir, 'sdk.mjs'), source.replace(IMPORT, 'const witLog = (l, m) => globalThis.__ndTestLog(l, m);'));
const sdk = await import(pathToFileURL(join(dir, 'sdk.mjs')).href);
rmSync(dir, { recursive: true, force: true });

// --- a packer written from docs/packed-batch.md (the parts these packets use) ---
function dnsMsg(names, { flags = 0x0100, id = 0x1234 } = {}) {
  const out = [id >> 8, id & 255, flags >> 8, flags & 255, 0, names.length, 0, 1, 0, 2, 0, 3];
  for (const labels of names) {
    for (const l of labels) out.push(l.length, ...l);
    out.push(0, 0, 28, 0x80, 1);
  }
  return Uint8Array.from(out);
}
const ascii = (s) => [...Buffer.from(s, 'latin1')];

function readName(msg, pos) {
  const labels = [];
  let end = -1, pointers = 0, wire = 0;
  while (pos < msg.length) {
    const n = msg[pos];
    if (n === 0) return [labels, end >= 0 ? end : pos + 1];
    if ((n & 0xc0) === 0) {
      if (pos + 1 + n > msg.length || wire + 1 + n > 255) return null;
      wire += 1 + n;
      labels.push(msg.subarray(pos + 1, pos + 1 + n));
      pos += 1 + n;
    } else if ((n & 0xc0) === 0xc0) {
      if (++pointers > 16 || pos + 1 >= msg.length) return null;
      if (end < 0) end = pos + 2;
      pos = ((n & 0x3f) << 8) | msg[pos + 1];
    } else return null;
  }
  return null;
}

/** Records (the WIT shape componentize-js lifts: `transport: {tag, val}`), packed, plus the arena. */
function pack(records, arena, size = 256) {
  const tailBase = 16 + records.length * size;
  const tail = [];
  const buf = new Uint8Array(tailBase);
  const dv = new DataView(buf.buffer);
  buf.set([0x4e, 0x44, 0x50, 0x42]);
  dv.setUint16(4, 1, true);
  dv.setUint16(6, size, true);
  dv.setUint32(8, records.length, true);
  records.forEach((r, i) => {
    const o = 16 + i * size;
    dv.setBigUint64(o, r.timestampNs, true);
    dv.setUint32(o + 8, r.capturedLen, true);
    dv.setUint32(o + 12, r.originalLen, true);
    dv.setUint32(o + 16, r.linkType, true);
    dv.setUint32(o + 24, r.frame.offset, true); dv.setUint32(o + 28, r.frame.len, true);
    dv.setUint32(o + 32, r.payload.offset, true); dv.setUint32(o + 36, r.payload.len, true);
    let bits = 0;
    if (r.ip) {
      bits |= 32;
      dv.setUint8(o + 140, r.ip.val.protocol);
      dv.setUint8(o + 141, r.ip.val.ttl);
      dv.setUint32(o + 164, r.ip.val.source, false);
      dv.setUint32(o + 180, r.ip.val.destination, false);
    }
    const t = r.transport;
    if (t) {
      bits |= t.tag === 'tcp' ? 256 : 512;
      dv.setUint16(o + 196, t.val.sourcePort, true);
      dv.setUint16(o + 198, t.val.destinationPort, true);
    }
    dv.setUint32(o + 48, bits, true);
    if (size < 256 || !t || ![53, 5353].some((p) => p === t.val.sourcePort || p === t.val.destinationPort)) return;
    // The DNS slots.
    let d = 1;
    const payload = arena.subarray(r.payload.offset, r.payload.offset + r.payload.len);
    let at = 0, msg = payload;
    if (t.tag === 'tcp') {
      const n = payload.length >= 2 ? (payload[0] << 8) | payload[1] : -1;
      at = 2;
      msg = n >= 0 && payload.length >= 2 + n ? payload.subarray(2, 2 + n) : new Uint8Array(0);
    }
    if (msg.length >= 12) {
      d |= 2;
      for (let k = 0; k < 6; k++) dv.setUint16(o + 232 + 2 * k, (msg[2 * k] << 8) | msg[2 * k + 1], true);
      dv.setUint32(o + 248, r.payload.offset + at, true);
      dv.setUint32(o + 252, msg.length, true);
      const qdcount = (msg[4] << 8) | msg[5];
      const got = qdcount ? readName(msg, 12) : null;
      if (got && got[1] + 4 <= msg.length) {
        const [labels, end] = got;
        if (!labels.some((l) => l.includes(46))) {
          d |= 4 | (qdcount === 1 ? 8 : 0);
          const name = [];
          labels.forEach((l, k) => { if (k) name.push(46); name.push(...l); });
          dv.setUint16(o + 226, name.length, true);
          dv.setUint32(o + 228, tailBase + tail.length, true);
          tail.push(...name);
          dv.setUint16(o + 244, (msg[end] << 8) | msg[end + 1], true);
          dv.setUint16(o + 246, (msg[end + 2] << 8) | msg[end + 3], true);
        }
      } else d |= 8;
    }
    buf[o + 224] = d;
  });
  const out = new Uint8Array(tailBase + tail.length);
  out.set(buf);
  out.set(tail, tailBase);
  return out;
}

function dnsCorpus() {
  const parts = [];
  const tcpMsg = dnsMsg([[ascii('t'), ascii('test')]]);
  const withLen = (m, n = m.length) => Uint8Array.from([n >> 8, n & 255, ...m]);
  const pointer = Uint8Array.from([0, 7, 0x84, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0xc0, 18, 0, 1, 0, 1, 3, 102, 111, 111, 0]);
  const cases = [
    ['udp', 40000, 53, dnsMsg([[ascii('www'), ascii('example'), ascii('test')]])],
    ['udp', 5353, 5353, dnsMsg([[[0x63, 0x61, 0x66, 0xc3, 0xa9], [0xff, 0xfe], ascii('local')]], { flags: 0x8403 })],
    ['tcp', 50000, 53, withLen(tcpMsg)],
    ['udp', 53, 40000, dnsMsg([[ascii('a')], [ascii('b')]])],
    ['udp', 53, 40000, dnsMsg([[ascii('a.b'), ascii('c')]])],
    ['udp', 53, 40000, dnsMsg([[ascii('abc')]]).subarray(0, 17)],
    ['udp', 53, 40000, dnsMsg([])],
    ['udp', 53, 40000, pointer],
    ['udp', 53, 40000, dnsMsg([[]])],
    ['udp', 53, 40000, new Uint8Array(11)],
    ['tcp', 53, 50000, withLen(tcpMsg, tcpMsg.length + 1)],
    ['tcp', 5353, 1, withLen(tcpMsg)],
    ['udp', 5355, 40000, dnsMsg([[ascii('llmnr')]])],
    ['udp', 1, 2, dnsMsg([[ascii('x')]])],
  ];
  const records = cases.map(([tag, sport, dport, payload], i) => {
    const off = parts.length;
    parts.push(...new Array(42).fill(0), ...payload);
    return {
      timestampNs: 1700000000123456789n + BigInt(i), capturedLen: 42 + payload.length, originalLen: 42 + payload.length,
      linkType: 1, interfaceIndex: 0, frame: { offset: off, len: 42 + payload.length },
      payload: { offset: off + 42, len: payload.length }, padding: { offset: 0, len: 0 },
      ip: { tag: 'v4', val: { protocol: tag === 'tcp' ? 6 : 17, ttl: 64, source: 0x7f000001, destination: 0x0a000002 } },
      transport: { tag, val: { sourcePort: sport, destinationPort: dport } },
    };
  });
  return [records, Uint8Array.from(parts)];
}

const MESSAGE_FIELDS = ['id', 'qr', 'isResponse', 'opcode', 'rcode', 'qdcount', 'ancount', 'nscount', 'arcount', 'qname'];

function sameDns(a, b, what) {
  assert.equal(a === null, b === null, what);
  if (a === null) return;
  for (const f of MESSAGE_FIELDS) assert.deepEqual(a[f], b[f], `${what}: ${f}`);
  assert.deepEqual([...a.raw], [...b.raw], `${what}: raw`);
  assert.equal(a.qd.length, b.qd.length, `${what}: qd`);
  a.qd.forEach((q, k) => {
    const p = b.qd[k];
    assert.equal(q.name, p.name, `${what}: name`);
    assert.equal(q.qtype, p.qtype, `${what}: qtype`);
    assert.equal(q.qclass, p.qclass, `${what}: qclass`);
    assert.deepEqual(q.labels.map((l) => [...l]), p.labels.map((l) => [...l]), `${what}: labels`);
  });
}

test('the DNS slots give what the payload parser gives', () => {
  const [records, arena] = dnsCorpus();
  const packed = sdk.packedPackets(pack(records, arena), arena);
  const bits = packed.map((p) => p.bytes[p.o + 224]);
  assert.deepEqual(bits.slice(0, 3), [15, 15, 15]);
  for (const b of [7, 3, 11, 1, 0]) assert.ok(bits.includes(b), `no record with DNS bits ${b}`);
  const older = sdk.packedPackets(pack(records, arena, 224), arena);
  records.forEach((r, i) => {
    const ref = new sdk.Packet(r, arena);
    sameDns(ref.parseDns(), packed[i].parseDns(), `packet ${i} parseDns`);
    sameDns(ref.dns, packed[i].dns, `packet ${i} dns`);
    sameDns(ref.parseDns(), older[i].parseDns(), `packet ${i} (224-byte records)`);
    assert.equal(packed[i].time, ref.time);
    assert.deepEqual(packed[i].udp, r.transport.tag === 'udp' ? { ...ref.udp, len: 0 } : null);
    assert.equal(packed[i].ip.src, '127.0.0.1');
    assert.equal(packed[i].ip.dst, '10.0.0.2');
  });
  assert.equal(packed[1].parseDns().qd[0].name, 'café.\ufffd\ufffd.local');
  assert.equal(packed[1].parseDns().rcode, 3);
});

test('bad batches are refused', () => {
  const good = pack([], new Uint8Array(0));
  assert.deepEqual(sdk.packedPackets(good, new Uint8Array(0)), []);
  const bad = [new Uint8Array(0), good.subarray(0, 10), Uint8Array.from([88, ...good.subarray(1)])];
  const claims = Uint8Array.from(good);
  claims[8] = 3;
  bad.push(claims);
  for (const b of bad) assert.throws(() => sdk.packedPackets(b, new Uint8Array(0)));
});

test('packed-json answers a batch in one JSON text', () => {
  const [records, arena] = dnsCorpus();
  const state = { n: 0 };
  const handler = sdk.makeHandler({
    name: 'T',
    onPacket(p) {
      const dns = p.parseDns();
      if (!dns) return undefined;
      if (dns.id === 7) throw new Error('boom');
      if (dns.qd.length === 0) return { root: true, s: 'a"\\\u2028' };
      state.n += 1;
      return state; // a live object: encoded as it was when returned
    },
  });
  const lean = sdk.makePackedJson();
  const headers = pack(records, arena);
  const text = lean.onPacked(headers, arena);
  const pairs = JSON.parse(text);
  const records_ = handler.onPacked(headers, arena).map((d) => [d.packetIndex, JSON.parse(d.payload)]);
  // The same dumplings as the records answer (whose state kept counting).
  assert.deepEqual(pairs.map(([i]) => i), records_.map(([i]) => i));
  const ns = pairs.filter(([, v]) => v.n).map(([, v]) => v.n);
  assert.ok(ns.length >= 5, text);
  assert.deepEqual(ns, ns.map((_, k) => k + 1));
  assert.ok(pairs.some(([, v]) => v.root && v.s === 'a"\\\u2028'), text);
  assert.ok(logged.some(([level, m]) => level === 'error' && m.includes('boom')));
  assert.equal(lean.onPacked(pack([], arena), arena), '[]');
});

test('packed-json-bytes answers with the UTF-8 bytes of the packed-json text', () => {
  const [records, arena] = dnsCorpus();
  // A handler whose answers hold non-ASCII text (UTF-8 of 2, 3 and 4 bytes).
  const answer = (p) => { const dns = p.parseDns(); return dns ? { s: 'é€😀', id: dns.id, q: dns.qd.map((q) => q.name) } : undefined; };
  sdk.makeHandler({ name: 'T', onPacket: answer });
  const headers = pack(records, arena);
  const text = sdk.makePackedJson().onPacked(headers, arena);
  const bytes = sdk.makePackedJsonBytes().onPacked(headers, arena);
  assert.ok(bytes instanceof Uint8Array);
  assert.deepEqual(bytes, new TextEncoder().encode(text));
  assert.equal(new TextDecoder('utf-8', { fatal: true }).decode(bytes), text);
  assert.ok(JSON.parse(text).some(([, v]) => v.s === 'é€😀'), text);
  // No dumpling, and no packet handler: the bytes of '[]'.
  assert.deepEqual(sdk.makePackedJsonBytes().onPacked(pack([], arena), arena), new TextEncoder().encode('[]'));
  sdk.makeHandler({ name: 'T2', onInterval: () => ({}) });
  assert.deepEqual(sdk.makePackedJsonBytes().onPacked(headers, arena), new TextEncoder().encode('[]'));
});

test('names from an ASCII tail, and packets kept across batches', () => {
  // A batch whose names are all ASCII reads them as substrings of its tail decoded once; a
  // batch holding a non-ASCII byte decodes each name (invalid bytes replaced). Packets kept
  // from earlier batches keep their values while later batches are decoded.
  const [records, arena] = dnsCorpus();
  const asciiRecords = records.filter((_, i) => i !== 1);
  const names = (ps) => ps.map((p) => { const d = p.parseDns(); return d ? d.qd.map((q) => q.name) : null; });
  const batches = [];
  for (const recs of [asciiRecords, records, asciiRecords.slice(0, 3)]) {
    const packets = sdk.packedPackets(pack(recs, arena), arena);
    const want = names(recs.map((r) => new sdk.Packet(r, arena)));
    assert.deepEqual(names(packets), want);
    batches.push({ packets, want, times: packets.map((p) => p.time), text: packets[0].dv.tailText });
  }
  assert.deepEqual(batches.map((b) => typeof b.text), ['string', 'object', 'string']);
  assert.equal(batches[1].text, null);
  assert.ok(batches[1].want.some((n) => n && n[0] === 'café.\ufffd\ufffd.local'));
  for (const b of [...batches].reverse()) {
    assert.deepEqual(names(b.packets), b.want);
    assert.deepEqual(b.packets.map((p) => p.time), b.times);
  }
  const kept = batches[0].packets[0];
  assert.ok(kept instanceof sdk.Packet && kept instanceof sdk.PackedPacket);
  assert.deepEqual(kept.layers(), new sdk.Packet(asciiRecords[0], arena).layers());
  assert.deepEqual(kept.parseDns().qd[0].labels.map((l) => Buffer.from(l).toString()), ['www', 'example', 'test']);
});

test('a default-exported class chef is called as a method', () => {
  class CountChef {
    constructor() { this.n = 0; }
    onPacket(p) { this.n += 1; return { n: this.n, t: p.time }; }
  }
  const [records, arena] = dnsCorpus();
  sdk.makeHandler({ default: CountChef });
  const pairs = JSON.parse(sdk.makePackedJson().onPacked(pack(records, arena), arena));
  assert.deepEqual(pairs.map(([i, v]) => [i, v.n]), records.map((_, i) => [i, i + 1]));
});

test('BoundedMap.touch keeps the bound and evicts the least recently touched key', () => {
  const m = new sdk.BoundedMap(2);
  let made = 0;
  const make = () => ({ made: ++made });
  assert.deepEqual(m.touch('a', make), { made: 1 });
  assert.deepEqual(m.touch('b', make), { made: 2 });
  assert.equal(m.touch('a', make).made, 1); // a hit: not made again, and now most recent
  m.set('u', undefined); // evicts b (least recently touched); an undefined value is still a key
  assert.deepEqual([...m.keys()], ['a', 'u']);
  assert.equal(m.touch('u', make), undefined);
  assert.equal(made, 2);
  m.touch('c', make); // evicts a
  assert.deepEqual([...m.keys()], ['u', 'c']);
  assert.equal(m.evicted, 2);
  const back = sdk.BoundedMap.fromState(JSON.parse(JSON.stringify(m.state())));
  assert.deepEqual([[...back.keys()], back.evicted, [...back.recency]], [['u', 'c'], 2, ['u', 'c']]);
});

test('BoundedMap.newestWithin shows the newest that fit, in first-seen order (the Rust SDK rule)', () => {
  const m = new sdk.BoundedMap(10);
  for (let k = 0; k < 6; k++) m.set(k, k);
  m.set(1, 1); // touched: now the newest
  assert.deepEqual(m.newestWithin(6, () => 1), { entries: [...m.entries()], leftOut: 0 });
  assert.deepEqual(m.newestWithin(3, () => 1), { entries: [[1, 1], [4, 4], [5, 5]], leftOut: 3 });
  // The first entry that does not fit ends the list (a smaller older one is not taken).
  assert.deepEqual(m.newestWithin(3, (k) => (k === 5 ? 2 : 1)), { entries: [[1, 1], [5, 5]], leftOut: 4 });
  assert.deepEqual(m.newestWithin(0, () => 1), { entries: [], leftOut: 6 });
  assert.equal(sdk.PAYLOAD_BUDGET, 921600);
  assert.equal(sdk.KITCHEN_MAX_DUMPLING_BYTES, 1044480);
});

test('interval-json-bytes answers with the UTF-8 bytes of the interval payload texts', () => {
  // What handler.onInterval returns as strings, as Uint8Arrays of their UTF-8 (non-ASCII
  // included); none when the chef has no interval handler or it returns nothing.
  const table = new sdk.BoundedMap(3);
  table.touch('café.example', () => ({ count: 2, latest: 1.5 }));
  table.touch('😀.test', () => ({ count: 1, latest: 2.25 }));
  const handler = sdk.makeHandler({ name: 'T', onInterval: (interval, now) => ({ seen: table, interval, now }) });
  const texts = handler.onInterval(3_000_000_000n, 1_000_000_000n);
  const bytes = sdk.makeIntervalJsonBytes().onInterval(3_000_000_000n, 1_000_000_000n);
  assert.equal(texts.length, 1);
  assert.deepEqual(bytes, texts.map((t) => new TextEncoder().encode(t)));
  assert.deepEqual(JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(bytes[0])), {
    seen: { 'café.example': { count: 2, latest: 1.5 }, '😀.test': { count: 1, latest: 2.25 } }, interval: 1, now: 3,
  });
  sdk.makeHandler({ name: 'T2', onInterval: () => undefined });
  assert.deepEqual(sdk.makeIntervalJsonBytes().onInterval(1n, 1n), []);
  sdk.makeHandler({ name: 'T3', onPacket: () => undefined });
  assert.deepEqual(sdk.makeIntervalJsonBytes().onInterval(1n, 1n), []);
});
