// PacketCountChef in JavaScript: the original netdumplings sample chef, same payloads as the
// Rust sample chef (chefs/packet-count-chef) and the Python port:
//   counts every layer of every packet by its scapy-style name ("Ethernet", "IP", "TCP",
//   "DNS", "Raw"...), in first-seen order; interval payload {"packet_counts": {...}},
//   cumulative, sent on every poke. No packet dumplings.
// Its counts survive a hot reload: `snapshot()` / `restore(bytes)` (chef API 0.2 state).
import { dumpState, loadState } from './netdumplings-chef.js';

export const name = 'PacketCountChef';
export const description = 'Counts packet layers by scapy-style name; sends the cumulative counts every poke';
export const version = '0.2.0';

const STATE_VERSION = 1; // bump when the state's meaning changes: older states are then refused
let counts = new Map(); // layer name -> count, first-seen order

export function onPacket(packet) {
  for (const n of packet.layers()) counts.set(n, (counts.get(n) || 0) + 1);
  return undefined;
}

export function onInterval(_interval) {
  return { packet_counts: Object.fromEntries(counts) };
}

export function snapshot() {
  return dumpState(name, STATE_VERSION, [...counts]);
}

export function restore(bytes) {
  const entries = loadState(name, STATE_VERSION, bytes);
  if (!Array.isArray(entries)) throw new Error('not a list of [layer, count] pairs');
  const next = new Map();
  for (const pair of entries) {
    if (!Array.isArray(pair) || typeof pair[0] !== 'string' || !Number.isInteger(pair[1])) {
      throw new Error('not a list of [layer, count] pairs');
    }
    next.set(pair[0], pair[1]);
  }
  counts = next;
}
