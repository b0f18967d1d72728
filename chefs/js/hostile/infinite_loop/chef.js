// Hostile test chef: spins forever on its first packet (the CPU deadline must stop it).
export const name = 'JsInfiniteLoopChef';
export const catchErrors = false;
export function onPacket(_packet) {
  let n = 0;
  for (;;) n += 1;
}
