// DNSLookupChef probe (name): also reads the first question's name and the packet time, then returns undefined.
// For tools/bench-languages.sh PROBES=1: the difference between consecutive probes (empty,
// parse, name, touch, the full chef) is what each step of the JS DNSLookupChef costs.
export const name = 'DnsProbe';
export const interest = { transport: ['udp', 'tcp'], ports: [53, 5353] };
export function onPacket(packet) {
  const dns = packet.parseDns();
  if (!dns || dns.isResponse || dns.qd.length === 0) return undefined;
  const hostname = dns.qd[0].name;
  const when = packet.time;
  return undefined;
}
