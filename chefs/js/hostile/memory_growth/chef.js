// Hostile test chef: grows its memory without bound on its first packet (the cap must stop it).
// 8 MiB blocks, touched once per 4 KiB page: fast enough to reach the kitchen's memory cap well
// within its CPU deadline.
export const name = 'JsMemoryGrowthChef';
export const catchErrors = false;
const hoard = [];
export function onPacket(_packet) {
  for (;;) {
    const block = new Uint8Array(8 << 20);
    for (let i = 0; i < block.length; i += 4096) block[i] = 1;
    hoard.push(block);
  }
}
