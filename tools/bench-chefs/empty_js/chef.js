// EmptyChef: a JavaScript chef whose packet handler does nothing, for tools/bench-languages.sh.
// Its cost per packet is what the SDK and the component boundary cost before any chef code.
export const name = 'EmptyChef';
export const description = 'Receives every packet and does nothing with it (benchmark baseline)';

export function onPacket(_packet) {
  return undefined;
}
