// make test-web: serve the built page on 127.0.0.1, open it in headless
// Chromium (driven with the DevTools protocol over --remote-debugging-pipe;
// no npm packages), let it train, draw a few points with the mouse, read
// the energy distances it reports, save screenshots (screenshot.png, and
// screenshot-draw.png of the drawing). Fails when the page
// logged an error, timed out, or a sampler's energy distance is not below
// the N(0, I) baseline.
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

// 2. The autotest run on a data set: train, DDIM, DDPM, energy distances.
await s('Page.navigate', { url: `${base}?autotest=1&steps=${steps}${query}` });
await sleep(200);
await waitFor(`document.body && (document.body.dataset.done === '1' || document.body.dataset.error)`, timeoutS - 10);
const v = await evaluate(`(() => { const g = (id) => document.getElementById(id);
  return { ddim: +g('ed-ddim').dataset.value, ddpm: +g('ed-ddpm').dataset.value,
           base: +g('ed-baseline').dataset.value, rate: +g('rate').dataset.value,
           steps: +g('steps').textContent, simd: g('simd').textContent, params: g('params').textContent,
           frameMs: document.body.dataset.frameMs, error: document.body.dataset.error || '' }; })()`);
// The step slider scrubs x_T -> x_0: step 0 is x_T at t = T, the last step x_0.
const scrub = await evaluate(`(() => { const s = document.getElementById('step'), out = [];
  for (const k of [0, Math.floor(s.max / 2), +s.max]) {
    s.value = k; s.dispatchEvent(new Event('input')); out.push(document.getElementById('frame-label').textContent);
  } return out; })()`);
console.log('test-web: slider: ' + scrub.join(' | '));
if (!/step 0 of 1000: t = 1000 /.test(scrub[0]) || !/step 1000 of 1000: t = 0 /.test(scrub[2]))
  errors.push('the step slider does not scrub the DDPM run: ' + scrub.join(' | '));
await sleep(100);  // let the last frame paint
const shot = await s('Page.captureScreenshot', { format: 'png' });
fs.writeFileSync(path.join(dir, 'screenshot.png'), Buffer.from(shot.data, 'base64'));

console.log(`test-web: ${v.steps} steps of an MLP with ${v.params} parameters, ${v.simd}, ` +
            `${v.rate.toFixed(1)} training steps/s in the page; work per busy frame ${v.frameMs} ms`);
console.log(`test-web: energy distance few-step (the picker's default, DPM-Solver++(2M)) ${v.ddim.toFixed(5)}, DDPM ${v.ddpm.toFixed(5)}, ` +
            `N(0, I) baseline ${v.base.toFixed(5)}`);
console.log(`test-web: screenshot ${path.join(dir, 'screenshot.png')}; ${((Date.now() - t0) / 1000).toFixed(1)} s`);
if (v.error) errors.push('page: ' + v.error);
if (!(v.steps >= steps)) errors.push(`trained ${v.steps} steps, wanted ${steps}`);
for (const k of ['ddim', 'ddpm'])
  if (!(v[k] < v.base)) errors.push(`${k} energy distance ${v[k]} is not below the baseline ${v.base}`);
if (errors.length) await finish(1, 'test-web: FAIL\n  ' + errors.join('\n  '));
await finish(0, 'test-web: passed');

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
