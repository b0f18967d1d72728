// DNSLookupChef probe (parse): decodes the DNS message and checks it is a query with a question, then returns undefined.
// For tools/bench-languages.sh PROBES=1: the difference between consecutive probes (empty,
// parse, name, touch, the full chef) is what each step of the JS DNSLookupChef costs.
export const name = 'DnsProbe';
export const interest = { transport: ['udp', 'tcp'], ports: [53, 5353] };
export function onPacket(packet) {
  const dns = packet.parseDns();
  if (!dns || dns.isResponse || dns.qd.length === 0) return undefined;
  return undefined;
}
