// Runs a wasm32-wasi program under Node's WASI (preview1):
//   node platforms/run-wasi.mjs prog.wasm [args...]
// The program sees the host's /tmp as /tmp (each run gets a fresh directory
// there) and the current directory as "." (relative paths such as
// build/x.dfn work as on the host). main()'s return value is the exit code;
// a trap exits with 1.
import { readFile, mkdtemp, rm } from 'node:fs/promises';
import { WASI } from 'node:wasi';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const [file, ...args] = process.argv.slice(2);
if (!file) { console.error('usage: node run-wasi.mjs prog.wasm [args...]'); process.exit(2); }
const tmp = await mkdtemp(join(tmpdir(), 'dfn-wasi-'));
const options = {
  args: [file, ...args],
  env: {},
  preopens: { '/tmp': tmp, '.': process.cwd() },
  returnOnExit: true,
};
let wasi;
try {
  wasi = new WASI({ version: 'preview1', ...options });   // Node 20 requires it
} catch (e) {
  wasi = new WASI(options);                               // older Node rejects it
}
let rc = 1;
try {
  const module = await WebAssembly.compile(await readFile(file));
  const instance = await WebAssembly.instantiate(module, { wasi_snapshot_preview1: wasi.wasiImport });
  rc = wasi.start(instance);
  // The last line of a run: make test-wasm reads it (see platforms/platforms.mk).
  console.log(`run-wasi: the program returned ${rc}`);
} catch (e) {
  console.error(`run-wasi: ${e && e.stack ? e.stack : e}`);
  rc = 1;
} finally {
  await rm(tmp, { recursive: true, force: true });
}
process.exit(rc);
