// make test-web: serve the built page on 127.0.0.1, open it in headless
// Chromium (driven with the DevTools protocol over --remote-debugging-pipe;
// no npm packages), let it train, draw a few points with the mouse, read
// the energy distances it reports for the VP process and, after flipping
// the process switch, for flow matching; save screenshots (screenshot.png
// of the flow run, screenshot-vp.png, and screenshot-draw.png of the
// drawing); call the exports of both builds with bad arguments. Fails when
// the page logged an error, timed out, offered a sampler or spacing the
// process does not have, a sampler's energy distance is not below the
// N(0, I) baseline, or a bad argument trapped or was accepted.
//   node web/test_web.mjs build/web [steps]
// Environment: CHROMIUM (default /usr/bin/chromium), WEB_TEST_TIMEOUT (s, 180),
// WEB_TEST_QUERY (more URL parameters for the autotest run, e.g. '&simd=0').
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { serve } from './serve.mjs';

const dir = process.argv[2] || 'build/web';
const steps = Number(process.argv[3] || 400);
const chrome = process.env.CHROMIUM || '/usr/bin/chromium';
const timeoutS = Number(process.env.WEB_TEST_TIMEOUT || 180);
const query = process.env.WEB_TEST_QUERY || '';
const t0 = Date.now();
const errors = [];
let browser = null, server = null, profile = null;

let finishing = false;
async function finish(code, msg) {
  if (finishing) return new Promise(() => {});
  finishing = true;
  if (msg) console.log(msg);
  if (browser && browser.exitCode === null) {
    const exited = new Promise((r) => browser.once('exit', r));
    send('Browser.close').catch(() => {});
    await Promise.race([exited, new Promise((r) => setTimeout(r, 3000))]);
    if (browser.exitCode === null) { browser.kill('SIGKILL'); await exited; }
  }
  if (server) server.close();
  try { fs.rmSync(profile, { recursive: true, force: true, maxRetries: 5, retryDelay: 200 }); } catch { /* a temp dir */ }
  process.exit(code);
}
setTimeout(() => finish(1, `test-web: FAIL: timed out after ${timeoutS} s; errors: ${JSON.stringify(errors)}`),
           timeoutS * 1000).unref();

server = await serve(dir, 0);
const base = `http://127.0.0.1:${server.address().port}/`;
profile = fs.mkdtempSync(path.join(os.tmpdir(), 'dfn-chromium-'));
browser = spawn(chrome, [
  '--headless', '--no-sandbox', '--disable-gpu', '--no-first-run', '--no-default-browser-check',
  '--disable-background-networking', '--disable-component-update', '--disable-sync', '--disable-quic',
  '--disable-extensions', '--disable-dev-shm-usage', '--disable-background-timer-throttling', '--disable-renderer-backgrounding',
  '--disable-backgrounding-occluded-windows', '--window-size=1280,900', `--user-data-dir=${profile}`,
  '--remote-debugging-pipe', 'about:blank',
], { stdio: ['ignore', 'ignore', 'pipe', 'pipe', 'pipe'] });
browser.on('exit', (code) => { if (code !== 0 && code !== null) errors.push(`chromium exited with ${code}`); });
let stderr = '';
browser.stdio[2].on('data', (d) => { stderr += d; });

// DevTools protocol over the pipe: JSON messages separated by NUL bytes.
let nextId = 1, buffered = '';
const pending = new Map(), listeners = [];
browser.stdio[4].on('data', (chunk) => {
  buffered += chunk.toString('utf8');
  let end;
  while ((end = buffered.indexOf('\0')) >= 0) {
    const msg = JSON.parse(buffered.slice(0, end));
    buffered = buffered.slice(end + 1);
    if (msg.id && pending.has(msg.id)) {
      const { resolve, reject, method } = pending.get(msg.id);
      pending.delete(msg.id);
      if (msg.error) reject(new Error(`${method}: ${msg.error.message}`)); else resolve(msg.result);
    } else if (msg.method) {
      for (const l of listeners) l(msg);
    }
  }
});
function send(method, params = {}, sessionId) {
  const id = nextId++;
  const msg = { id, method, params };
  if (sessionId) msg.sessionId = sessionId;
  browser.stdio[3].write(JSON.stringify(msg) + '\0');
  return new Promise((resolve, reject) => pending.set(id, { resolve, reject, method }));
}

// Everything the page logs at error level counts as a failure.
listeners.push((msg) => {
  const p = msg.params || {};
  if (msg.method === 'Runtime.exceptionThrown') {
    errors.push('exception: ' + (p.exceptionDetails.exception?.description || p.exceptionDetails.text));
  } else if (msg.method === 'Runtime.consoleAPICalled' && (p.type === 'error' || p.type === 'assert')) {
    errors.push('console.' + p.type + ': ' + p.args.map((a) => a.value ?? a.description).join(' '));
  } else if (msg.method === 'Log.entryAdded' && p.entry.level === 'error') {
    errors.push('log: ' + p.entry.text + (p.entry.url ? ' (' + p.entry.url + ')' : ''));
  }
});

const { targetId } = await send('Target.createTarget', { url: 'about:blank' });
const { sessionId } = await send('Target.attachToTarget', { targetId, flatten: true });
const s = (method, params) => send(method, params, sessionId);
await s('Runtime.enable'); await s('Log.enable'); await s('Page.enable');
await s('Emulation.setDeviceMetricsOverride', { width: 1120, height: 640, deviceScaleFactor: 1, mobile: false });
const evaluate = async (expr) => {
  const r = await s('Runtime.evaluate', { expression: expr, returnByValue: true, awaitPromise: true });
  if (r.exceptionDetails) throw new Error('evaluate: ' + r.exceptionDetails.text);
  return r.result.value;
};
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// 1. "Draw your own points": a short mouse stroke, then a few training steps.
await s('Page.navigate', { url: `${base}?data=draw&steps=30` });
await waitFor(`document.getElementById('dataset') && document.getElementById('dataset').value === 'draw'`, 30);
const box = await evaluate(`(() => { const r = document.getElementById('data-canvas').getBoundingClientRect();
  return [r.left, r.top, r.width, r.height]; })()`);
const mouse = (type, x, y) => s('Input.dispatchMouseEvent', { type, x, y, button: 'left', buttons: type === 'mouseReleased' ? 0 : 1, clickCount: 1 });
await mouse('mousePressed', box[0] + box[2] * 0.3, box[1] + box[3] * 0.3);
for (let k = 0; k <= 20; k++) await mouse('mouseMoved', box[0] + box[2] * (0.3 + 0.02 * k), box[1] + box[3] * (0.3 + 0.01 * k));
await mouse('mouseReleased', box[0] + box[2] * 0.7, box[1] + box[3] * 0.5);
const drawn = await evaluate(`document.getElementById('data-label').textContent`);
await evaluate(`document.getElementById('train').click()`);
await waitFor(`+document.getElementById('steps').textContent >= 30 || document.body.dataset.error`, 60);
const drawSteps = await evaluate(`document.getElementById('steps').textContent`);
console.log(`test-web: drew ${drawn}, trained ${drawSteps} steps on them`);
const drawShot = await s('Page.captureScreenshot', { format: 'png' });
fs.writeFileSync(path.join(dir, 'screenshot-draw.png'), Buffer.from(drawShot.data, 'base64'));
if (!/^(\d+) points drawn$/.test(drawn) || +drawn.match(/\d+/)[0] < 20) errors.push('drawing added no points: ' + drawn);

// 2. The autotest runs on a data set, VP first, then flow matching through
// the process switch: train, sample with the picker's default and with
// DDPM, read the energy distances, check the pickers and the slider.
await s('Page.navigate', { url: `${base}?autotest=1&steps=${steps}${query}` });
await sleep(200);
const runs = {};
for (const [proc, label] of [['0', 'VP'], ['1', 'flow']]) {
  if (proc !== '0') {  // the switch, as a user flips it
    await evaluate(`(() => { const p = document.getElementById('process');
      p.value = '${proc}'; p.dispatchEvent(new Event('change')); })()`);
  }
  await waitFor(`document.body && (document.body.dataset.done === '1' || document.body.dataset.error)`, timeoutS - 10);
  const v = await evaluate(`(() => { const g = (id) => document.getElementById(id);
    const opts = (id) => Array.from(g(id).options).map((o) => [+o.value, o.textContent]);
    return { ddim: +g('ed-ddim').dataset.value, ddpm: +g('ed-ddpm').dataset.value,
             base: +g('ed-baseline').dataset.value, rate: +g('rate').dataset.value,
             steps: +g('steps').textContent, simd: g('simd').textContent, params: g('params').textContent,
             process: g('process').value, processName: g('process').selectedOptions[0].textContent,
             samplers: opts('sampler'), spacings: opts('spacing'),
             sampler: g('sampler').selectedOptions[0].textContent, edName: g('ed-ddim-name').textContent, spacing: g('spacing').selectedOptions[0].textContent,
             S: +g('ddim-steps').value, note: g('process-note').querySelector('.on')?.textContent || '',
             frameMs: document.body.dataset.frameMs, error: document.body.dataset.error || '' }; })()`);
  // The step slider scrubs x_T -> x_0: step 0 is x_T at t = T, the last step x_0.
  v.scrub = await evaluate(`(() => { const s = document.getElementById('step'), out = [];
    for (const k of [0, Math.floor(s.max / 2), +s.max]) {
      s.value = k; s.dispatchEvent(new Event('input')); out.push(document.getElementById('frame-label').textContent);
    } return out; })()`);
  runs[label] = v;
  console.log(`test-web: ${label}: process "${v.processName}", sampler ${v.sampler}, spacing ${v.spacing}, S = ${v.S}; ` +
              `offered samplers [${v.samplers.map((o) => o[1]).join(', ')}], spacings [${v.spacings.map((o) => o[1]).join(', ')}]`);
  console.log(`test-web: ${label}: slider: ` + v.scrub.join(' | '));
  console.log(`test-web: ${label}: ${v.steps} steps of an MLP with ${v.params} parameters, ${v.simd}, ` +
              `${v.rate.toFixed(1)} training steps/s in the page; work per busy frame ${v.frameMs} ms`);
  console.log(`test-web: ${label}: energy distance few-step (the picker's default, ${v.edName}) ${v.ddim.toFixed(5)}, ` +
              `DDPM ${v.ddpm.toFixed(5)}, N(0, I) baseline ${v.base.toFixed(5)}`);
  if (v.error) errors.push(`${label}: page: ` + v.error);
  if (v.process !== proc) errors.push(`${label}: the process picker shows ${v.process}`);
  if (!(v.steps >= steps)) errors.push(`${label}: trained ${v.steps} steps, wanted ${steps}`);
  for (const k of ['ddim', 'ddpm'])
    if (!(v[k] < v.base)) errors.push(`${label}: ${k} energy distance ${v[k]} is not below the baseline ${v.base}`);
  if (!/step 0 of 1000: t = 1000\b/.test(v.scrub[0]) || !/step 1000 of 1000: t = 0\b/.test(v.scrub[2]))
    errors.push(`${label}: the step slider does not scrub the DDPM run: ` + v.scrub.join(' | '));
  if (!v.note.startsWith(proc === '0' ? 'VP' : 'Flow')) errors.push(`${label}: the highlighted explanation is "${v.note}"`);
  // the pickers: only what is valid for the process (the page itself checks
  // every offered pair with dfn_web_sampler_check and reports a failure)
  const kinds = v.samplers.map((o) => o[0]), spacings = v.spacings.map((o) => o[0]);
  const needKinds = proc === '0' ? [0, 1, 2, 3, 4, 5, 6] : [1, 2, 3, 4, 7];
  for (const k of needKinds) if (!kinds.includes(k)) errors.push(`${label}: sampler ${k} not offered`);
  if (proc === '1') {
    for (const sp of [3, 4]) if (spacings.includes(sp)) errors.push(`${label}: flow offers spacing ${sp} (logSNR/Karras)`);
    for (const sp of [2, 6]) if (!spacings.includes(sp)) errors.push(`${label}: flow lacks spacing ${sp}`);
    if (!/u = 1 /.test(v.scrub[0])) errors.push(`${label}: the flow slider does not show u`);
  }
  if (proc === '0') {
    await sleep(100);
    const shotVp = await s('Page.captureScreenshot', { format: 'png' });
    fs.writeFileSync(path.join(dir, 'screenshot-vp.png'), Buffer.from(shotVp.data, 'base64'));
  }
}
await sleep(100);  // let the last frame paint
const shot = await s('Page.captureScreenshot', { format: 'png' });
fs.writeFileSync(path.join(dir, 'screenshot.png'), Buffer.from(shot.data, 'base64'));

// 3. Bad arguments to the exports of both builds, outside the page: each
// returns a dfn_result error (< 0) and nothing traps.
for (const file of ['dfn_web.wasm', 'dfn_web_scalar.wasm']) {
  try {
    const bad = await badArguments(path.join(dir, file));
    console.log(`test-web: ${file}: ${bad.checked} calls to the exports outside the page: bad arguments returned errors, nothing trapped`);
    for (const e of bad.errors) errors.push(`${file}: ${e}`);
  } catch (e) {
    errors.push(`${file}: ${e.message}`);
  }
}

console.log(`test-web: screenshots ${path.join(dir, 'screenshot.png')} (flow) and ` +
            `${path.join(dir, 'screenshot-vp.png')}; ${((Date.now() - t0) / 1000).toFixed(1)} s`);
if (errors.length) await finish(1, 'test-web: FAIL\n  ' + errors.join('\n  '));
await finish(0, 'test-web: passed');

async function badArguments(file) {
  const mod = await WebAssembly.compile(fs.readFileSync(file));
  const imports = {};
  for (const imp of WebAssembly.Module.imports(mod)) {
    imports[imp.module] = imports[imp.module] || {};
    imports[imp.module][imp.name] = () => 52;  // ENOSYS; dfn_web.wasm imports nothing today
  }
  const w = (await WebAssembly.instantiate(mod, imports)).exports;
  if (w._initialize) w._initialize();
  const out = { checked: 0, errors: [] };
  const want = (what, r, ok) => {
    out.checked++;
    if (!ok(r)) out.errors.push(`${what} returned ${r}`);
  };
  const fails = (what, r) => want(what, r, (x) => x < 0);
  const T = 1000;
  // init: process, data, seed, hidden, blocks, batch, total_steps, T
  fails('init_process(process 2)', w.dfn_web_init_process(2, 2, 1, 0, 0, 64, 10, T));
  fails('init_process(process -1)', w.dfn_web_init_process(-1, 2, 1, 0, 0, 64, 10, T));
  fails('init_process(data 99)', w.dfn_web_init_process(1, 99, 1, 0, 0, 64, 10, T));
  fails('init_process(data -2)', w.dfn_web_init_process(1, -2, 1, 0, 0, 64, 10, T));
  fails('init_process(drawn, none drawn)', w.dfn_web_init_process(1, -1, 1, 0, 0, 64, 10, T));
  fails('init_process(batch 0)', w.dfn_web_init_process(1, 2, 1, 0, 0, 0, 10, T));
  fails('init_process(batch 5000)', w.dfn_web_init_process(1, 2, 1, 0, 0, 5000, 10, T));
  fails('init_process(hidden -1)', w.dfn_web_init_process(1, 2, 1, -1, 0, 64, 10, T));
  fails('init_process(hidden 20000)', w.dfn_web_init_process(1, 2, 1, 20000, 0, 64, 10, T));
  fails('init_process(hidden 16, blocks 10^6)', w.dfn_web_init_process(1, 2, 1, 16, 1000000, 64, 10, T));
  fails('init_process(hidden 2^30)', w.dfn_web_init_process(1, 2, 1, 1 << 30, 0, 64, 10, T));
  fails('init_process(blocks 2^30)', w.dfn_web_init_process(1, 2, 1, 0, 1 << 30, 64, 10, T));
  fails('init_process(total_steps -1)', w.dfn_web_init_process(1, 2, 1, 0, 0, 64, -1, T));
  for (const [p, t] of [[1, 1], [1, 0], [0, 0], [1, -5], [0, 20], [1, 1 << 30], [0, 1 << 30]])
    fails(`init_process(process ${p}, T ${t})`, w.dfn_web_init_process(p, 2, 1, 0, 0, 64, 10, t));
  fails('init(data 99)', w.dfn_web_init(99, 1, 0, 0, 64, 10, T));
  fails('train without a model', w.dfn_web_train(1));
  fails('sample_begin without a model', w.dfn_web_sample_begin(2, 10, 5, 1, 2));
  fails('sampler_check without a model', w.dfn_web_sampler_check(2, 5, 2));
  fails('sample_step without a sampler', w.dfn_web_sample_step(1));
  fails('energy without a sampler', w.dfn_web_energy(100, 1));
  fails('set_points(0)', w.dfn_web_set_points(0));
  fails('set_points(5000)', w.dfn_web_set_points(5000));
  new Float32Array(w.memory.buffer, w.dfn_web_points(), 4).set([0.5, NaN, 1, 1]);
  fails('set_points(NaN)', w.dfn_web_set_points(2));
  want('init_process(flow)', w.dfn_web_init_process(1, 2, 1, 0, 0, 64, 10, T), (r) => r === 0);
  want('process() after flow init', w.dfn_web_process(), (r) => r === 1);
  want('train(3) on flow', w.dfn_web_train(3), (r) => r === 0);
  for (let k = 1; k < 8; k++)
    for (const sp of [3, 4]) {  // logSNR and Karras: sigma_T is infinite on flow
      fails(`flow sampler_check(kind ${k}, spacing ${sp})`, w.dfn_web_sampler_check(k, 10, sp));
      fails(`flow sample_begin(kind ${k}, spacing ${sp})`, w.dfn_web_sample_begin(k, 10, 10, 1, sp));
    }
  for (const [k, n, S, sp] of [[8, 10, 10, 2], [-1, 10, 10, 2], [2, 0, 10, 2], [2, 5000, 10, 2], [2, 10, 0, 2],
                               [2, 10, T + 1, 2], [2, 10, 10, 5], [2, 10, 10, 7], [2, 10, 10, -1], [0, 10, 10, 9]])
    fails(`flow sample_begin(kind ${k}, n ${n}, steps ${S}, spacing ${sp})`, w.dfn_web_sample_begin(k, n, S, 1, sp));
  for (const k of [0, 1, 2, 3, 4, 5, 6, 7])
    for (const sp of [0, 1, 2, 6])
      want(`flow sampler_check(kind ${k}, spacing ${sp})`, w.dfn_web_sampler_check(k, 10, sp), (r) => r === 0);
  const S = w.dfn_web_sample_begin(7, 50, 8, 1, 2);
  want('flow sample_begin(midpoint, 8 steps)', S, (r) => r === 8);
  fails('sample_step(0)', w.dfn_web_sample_step(0));
  fails('sample_step(S + 1)', w.dfn_web_sample_step(S + 1));
  for (let i = S; i >= 1; i--) want(`sample_step(${i})`, w.dfn_web_sample_step(i), (r) => r === 0);
  const x = new Float32Array(w.memory.buffer, w.dfn_web_x(), 100);
  if (!x.every(Number.isFinite)) out.errors.push('flow samples not finite');
  want('energy on flow samples', w.dfn_web_energy(100, 1), (r) => r === 0);
  want('init (VP, the old export)', w.dfn_web_init(2, 1, 0, 0, 64, 10, T), (r) => r === 0);
  want('process() after VP init', w.dfn_web_process(), (r) => r === 0);
  want('VP sampler_check(DPM-Solver++(2M), logSNR)', w.dfn_web_sampler_check(4, 10, 3), (r) => r === 0);
  return out;
}

async function waitFor(expr, seconds) {
  const until = Date.now() + seconds * 1000;
  while (Date.now() < until) {
    if (errors.length) await finish(1, 'test-web: FAIL\n  ' + errors.join('\n  '));
    if (await evaluate(expr)) return;
    await sleep(100);
  }
  await finish(1, `test-web: FAIL: waited ${seconds} s for ${expr}\n  ` + errors.join('\n  ') +
            '\n  chromium stderr (tail): ' + stderr.slice(-500));
}
