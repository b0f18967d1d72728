// build-js.mjs: build a JavaScript chef into a component with componentize-js (called by nd-chef).
//
//   node build-js.mjs TOOLCHAIN_DIR CHEF_MAIN SDK_FILE WIT_DIR WORLD OUT_WASM WORK_DIR
//
// The chef's folder is copied into WORK_DIR/src together with the SDK file
// (netdumplings-chef.js), so a chef may `import { log } from './netdumplings-chef.js'` and its
// own sibling modules. An entry module wraps the chef with `makeHandler` and exports `handler`,
// `state` (`makeState`), `packedJson` (`makePackedJson`), `packedJsonBytes`
// (`makePackedJsonBytes`) and `intervalJsonBytes` (`makeIntervalJsonBytes`): the bytes-chef
// world of netdumplings:chef@0.2.0.
// componentize-js runs with every optional feature disabled (no http, fetch-event, stdio,
// random, clocks): the component imports nothing but the chef interfaces.
import { cp, mkdir, readdir, writeFile } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { pathToFileURL } from 'node:url';

const [toolchain, main, sdk, wit, world, out, work] = process.argv.slice(2);
if (!work) {
  console.error('usage: node build-js.mjs TOOLCHAIN_DIR CHEF_MAIN SDK_FILE WIT_DIR WORLD OUT_WASM WORK_DIR');
  process.exit(2);
}
const src = join(work, 'src');
await mkdir(src, { recursive: true });
for (const f of await readdir(dirname(main), { withFileTypes: true })) {
  if (f.isFile() && /\.(m?js|json)$/.test(f.name)) await cp(join(dirname(main), f.name), join(src, f.name));
}
await cp(sdk, join(src, 'netdumplings-chef.js'));
const entry = join(src, '__nd_chef_entry.js');
await writeFile(
  entry,
  `import * as chef from './${basename(main)}';\n` +
    `import { makeHandler, makeIntervalJsonBytes, makePackedJson, makePackedJsonBytes, makeState } from './netdumplings-chef.js';\n` +
    `export const handler = makeHandler(chef, ${JSON.stringify({ name: process.env.ND_CHEF_NAME || undefined })});\n` +
    `export const state = makeState();\n` +
    `export const packedJson = makePackedJson();\n` +
    `export const packedJsonBytes = makePackedJsonBytes();\n` +
    `export const intervalJsonBytes = makeIntervalJsonBytes();\n`,
);
const modPath = join(toolchain, 'node_modules', '@bytecodealliance', 'componentize-js', 'src', 'componentize.js');
const { componentize } = await import(pathToFileURL(modPath).href);
const { component } = await componentize({
  sourcePath: entry,
  witPath: wit,
  worldName: world,
  disableFeatures: (process.env.ND_CHEF_JS_DISABLE ?? 'http,fetch-event,stdio,random,clocks').split(',').filter(Boolean),
});
await writeFile(out, component);
