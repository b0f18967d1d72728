// DNSLookupChef in JavaScript: the netdumplings sample chef, same payloads and rules as the
// Rust sample chef (chefs/dns-lookup-chef) and the Python port:
//   packet:   {"lookup": {"hostname", "when"}} for every DNS *query* with a question
//             (responses are skipped, so each lookup counts once)
//   interval: {"lookups_seen": {hostname: {"count", "latest"}}}, on every poke, even empty,
//             at most 1000 hostnames (least recently seen evicted)
// Times are capture times in float seconds.
// Hot reload: the table follows the chef to its new version (`snapshot()` / `restore(bytes)`),
// with its bound and recency order.
import { BoundedMap, dumpState, loadState } from './netdumplings-chef.js';

export const name = 'DNSLookupChef';
export const description = 'One dumpling per DNS query; every poke, the host names looked up so far';
export const version = '0.1.0';
// DNS on UDP/TCP 53 and mDNS on 5353.
export const interest = { transport: ['udp', 'tcp'], ports: [53, 5353] };

const MAX_HOSTNAMES = 1000;
const STATE_VERSION = 1; // bump when the state's meaning changes: older states are then refused
let lookupsSeen = new BoundedMap(MAX_HOSTNAMES); // hostname -> {count, latest}

const newEntry = () => ({ count: 0, latest: 0 }); // count and latest are set right after

export function onPacket(packet) {
  const dns = packet.parseDns(); // the interest already picked the DNS ports
  if (!dns || dns.isResponse || dns.qd.length === 0) return undefined;
  const hostname = dns.qd[0].name; // labels joined with '.', invalid UTF-8 replaced
  const when = packet.time;
  // `newEntry` is made once, not a closure per packet (~0.2 µs each in componentize-js).
  const seen = lookupsSeen.touch(hostname, newEntry);
  seen.count += 1;
  seen.latest = when;
  return { lookup: { hostname, when } };
}

export function onInterval(_interval) {
  return { lookups_seen: lookupsSeen };
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
