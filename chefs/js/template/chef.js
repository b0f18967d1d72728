// A template chef: copy this folder, rename, build with `tools/nd-chef/nd-chef build DIR`.
import { BoundedMap, dumpState, loadState } from './netdumplings-chef.js';

export const name = 'TemplateJsChef';
export const description = 'Counts DNS lookups per hostname and reports each one.';
export const interest = { transport: ['udp'], ports: [53] }; // omit for every packet

const MAX_NAMES = 10000; // bounded: the least recently seen name goes first
const STATE_VERSION = 1; // bump when the meaning of the state changes (older states are then refused)
let counts = new BoundedMap(MAX_NAMES);

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

// Optional: keep the counts across a hot reload (delete both to start fresh each time).
export function snapshot() {
  return dumpState(name, STATE_VERSION, counts.state());
}

// Throw to refuse the state (the new version then starts fresh).
export function restore(bytes) {
  counts = BoundedMap.fromState(loadState(name, STATE_VERSION, bytes), MAX_NAMES);
}
