// Hostile test chef: throws on every packet, with the SDK's error catching off (a trap).
export const name = 'JsExceptionChef';
export const catchErrors = false;
export function onPacket(_packet) {
  throw new Error('hostile chef: boom');
}
