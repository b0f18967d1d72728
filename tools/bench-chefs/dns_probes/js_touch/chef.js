// DNSLookupChef probe (touch): also updates the bounded per-name table (everything but making the dumpling), then returns undefined.
// For tools/bench-languages.sh PROBES=1: the difference between consecutive probes (empty,
// parse, name, touch, the full chef) is what each step of the JS DNSLookupChef costs.
import { BoundedMap } from './netdumplings-chef.js';
export const name = 'DnsProbe';
export const interest = { transport: ['udp', 'tcp'], ports: [53, 5353] };
const lookupsSeen = new BoundedMap(1000);
const newEntry = () => ({ count: 0, latest: 0 });
export function onPacket(packet) {
  const dns = packet.parseDns();
  if (!dns || dns.isResponse || dns.qd.length === 0) return undefined;
  const hostname = dns.qd[0].name;
  const when = packet.time;
  const seen = lookupsSeen.touch(hostname, newEntry);
  seen.count += 1;
  seen.latest = when;
  return undefined;
}
