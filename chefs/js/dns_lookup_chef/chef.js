// DNSLookupChef in JavaScript: the netdumplings sample chef, same payloads and rules as the
// Rust sample chef (chefs/dns-lookup-chef) and the Python port:
//   packet:   {"lookup": {"hostname", "when"}} for every DNS *query* with a question
//             (responses are skipped, so each lookup counts once)
//   interval: {"lookups_seen": {hostname: {"count", "latest"}}}, on every poke, even empty,
//             at most 1000 hostnames (least recently seen evicted)
// Times are capture times in float seconds.
// Payload bound: the interval payload stays under the kitchen's limit on one dumpling
// (1,044,480 bytes; a payload over it is refused, at every poke). As in the Rust chef, names of
// control bytes escape to 6 JSON bytes each (1000 names of 253: ~1.56 MB); when the table's
// JSON, counted as the Rust chef writes it, is over PAYLOAD_BUDGET (900 KiB), only the most
// recently looked-up names that fit are listed (still in first-seen order) and
// `"lookups_unreported": n` follows the table with how many were left out: the same names and
// count as the Rust chef (each entry's cost is the length of serde_json's text of it, with the
// Rust chef's float for its time). This chef's text is serde_json's but for the times (another
// float, written another way: at most 22 bytes longer an entry), so it stays under the limit.
// Hot reload: the table follows the chef to its new version (`snapshot()` / `restore(bytes)`),
// with its bound and recency order.
import { BoundedMap, PAYLOAD_BUDGET, dumpState, loadState } from './netdumplings-chef.js';

export const name = 'DNSLookupChef';
export const description = 'One dumpling per DNS query; every poke, the host names looked up so far';
export const version = '0.1.0';
// DNS on UDP/TCP 53 and mDNS on 5353.
export const interest = { transport: ['udp', 'tcp'], ports: [53, 5353] };

const MAX_HOSTNAMES = 1000;
const STATE_VERSION = 1; // bump when the state's meaning changes: older states are then refused
let lookupsSeen = new BoundedMap(MAX_HOSTNAMES); // hostname -> {count, latest}

// Kept on an entry under symbols (JSON.stringify, so the payload and the state, skips them):
// the latest capture time in ns (a BigInt), the length of serde_json's text of the name, and
// the entry's cost in the Rust chef's payload with the count and time it was reckoned for.
const NS = Symbol('ns');
const NAME_LEN = Symbol('name length');
const COST = Symbol('cost');
const COSTED_COUNT = Symbol('costed for count');
const COSTED_NS = Symbol('costed for time');
// count, latest and the time are set right after (the time is there from the start, so the
// entry's shape does not change on the hot path; the others are added by the first poke that
// costs the entries, which only a table near the budget does).
const newEntry = () => ({ count: 0, latest: 0, [NS]: 0n });

/** Length of serde_json's text of the string `s` (quotes included; UTF-8 bytes): JSON.stringify
 * writes the same escapes (`\"` `\\` `\b` `\f` `\n` `\r` `\t`, other controls as `\u00XX`) for a
 * string without lone surrogates (names are decoded with U+FFFD for bad bytes). */
const utf8 = new TextEncoder();
const NON_ASCII = /[^\x00-\x7f]/;
export function serdeStringLen(s) {
  const text = JSON.stringify(s);
  return NON_ASCII.test(s) ? utf8.encode(text).length : text.length;
}

/** Length of serde_json's text of the float `x` (zmij: the shortest digits that read back,
 * as JS finds them; plain from 1e-5 to below 1e16 with at least one digit after the point,
 * else d.ddde+N / d.ddde-N). */
export function serdeF64Len(x) {
  if (x >= 1e-5 && x < 1e16) {
    // Plain in both, with the same digits; JS writes no ".0" after a whole number.
    const plain = String(x);
    return plain.indexOf('.') < 0 ? plain.length + 2 : plain.length;
  }
  const text = String(x);
  const neg = text.startsWith('-') ? 1 : 0;
  const [mant, e] = text.slice(neg).split('e');
  const [ip, fp = ''] = mant.split('.');
  const digits = (ip + fp).replace(/^0+/, '').replace(/0+$/, '');
  if (!digits) return 3 + neg; // 0.0
  const ipTrim = ip.replace(/^0+/, '');
  let dexp = ipTrim ? ipTrim.length - 1 : -(fp.length - fp.replace(/^0+/, '').length) - 1;
  dexp += e ? Number(e) : 0;
  const n = digits.length;
  let size;
  if (dexp >= -5 && dexp <= 15) {
    if (n - 1 <= dexp) size = dexp + 3; // 1234e7 -> 12340000000.0
    else if (dexp >= 0) size = n + 1; // 12.34
    else size = 1 - dexp + n; // 0.001234
  } else {
    size = n + (n > 1 ? 1 : 0) + 2 + String(Math.abs(dexp)).length; // 1.234e+33
  }
  return size + neg;
}

/** The Rust chef's float for a capture time in ns (`Timestamp::as_secs_f64`: whole seconds
 * and the fraction converted apart, then added), not always `Number(ns) / 1e9`. */
export function rustTime(ns) {
  return Number(ns / 1000000000n) + Number(ns % 1000000000n) / 1e9;
}

/** An entry's share of the Rust chef's payload: `"name":{"count":N,"latest":T}` and a comma
 * (kept on the entry until its count or time changes). */
function rustEntryCost(name, entry) {
  const ns = entry[NS];
  if (entry[COSTED_COUNT] === entry.count && entry[COSTED_NS] === ns && ns !== undefined) return entry[COST];
  let nameLen = entry[NAME_LEN];
  if (nameLen === undefined) nameLen = entry[NAME_LEN] = serdeStringLen(name);
  const t = ns !== undefined ? rustTime(ns) : entry.latest;
  entry[COSTED_COUNT] = entry.count;
  entry[COSTED_NS] = ns;
  return (entry[COST] = nameLen + String(entry.count).length + serdeF64Len(t) + 22);
}

export function onPacket(packet) {
  const dns = packet.parseDns(); // the interest already picked the DNS ports
  if (!dns || dns.isResponse || dns.qd.length === 0) return undefined;
  const hostname = dns.qd[0].name; // labels joined with '.', invalid UTF-8 replaced
  const when = packet.time;
  // `newEntry` is made once, not a closure per packet (~0.2 µs each in componentize-js).
  const seen = lookupsSeen.touch(hostname, newEntry);
  seen.count += 1;
  seen.latest = when;
  seen[NS] = packet.timestampNs;
  return { lookup: { hostname, when } };
}

export function onInterval(_interval) {
  // The whole table while it surely fits: each UTF-16 unit of a name is at most 6 bytes of
  // serde_json's text, the rest of an entry at most 68 (as always but for long names).
  let units = 0;
  for (const name of lookupsSeen.keys()) units += name.length;
  if (6 * units + 68 * lookupsSeen.size <= PAYLOAD_BUDGET) return { lookups_seen: lookupsSeen };
  const { entries, leftOut } = lookupsSeen.newestWithin(PAYLOAD_BUDGET, rustEntryCost);
  if (leftOut === 0) return { lookups_seen: lookupsSeen };
  return { lookups_seen: Object.fromEntries(entries), lookups_unreported: leftOut };
}

export function snapshot() {
  return dumpState(name, STATE_VERSION, { lookups_seen: lookupsSeen.state() });
}

export function restore(bytes) {
  const seen = BoundedMap.fromState(loadState(name, STATE_VERSION, bytes).lookups_seen, MAX_HOSTNAMES);
  for (const [k, v] of seen) {
    if (typeof k !== 'string' || !v || !Number.isInteger(v.count)) throw new Error('not a lookups_seen entry');
  }
  lookupsSeen = seen;
}
