// A template chef: copy this folder, rename, build with `tools/nd-chef/nd-chef build DIR`.
export const name = 'TemplateJsChef';
export const description = 'Counts DNS lookups per hostname and reports each one.';
export const interest = { transport: ['udp'], ports: [53] }; // omit for every packet

const counts = new Map();

// Return a JSON-able value for a dumpling, or undefined for none.
export function onPacket(packet) {
  const name = packet.dns && packet.dns.qname;
  if (name == null) return undefined;
  counts.set(name, (counts.get(name) || 0) + 1);
  return { hostname: name, count: counts.get(name), from: packet.ip.src };
}

// Called on every poke (interval in seconds); delete it if not needed.
export function onInterval(interval) {
  return { hostnames: counts.size };
}
