// The page: trains a diffusion.h MLP on 2D points in WebAssembly, a few
// steps per animation frame, then samples it with DDPM / DDIM one reverse
// step at a time, keeping every x_t so the slider can scrub x_T -> x_0.
//
// The process switch picks the forward process: VP (DDPM; x_t = a x0 + s eps
// with a = sqrt(alphabar), s = sqrt(1 - alphabar), eps-prediction) or flow
// matching (rectified flow, MATH.md section 12: a = 1 - u, s = u, velocity
// eps - x0 prediction). Switching re-initializes schedule and model,
// restarts training and offers only the samplers and spacings valid for
// that process (each offered pair is checked with dfn_web_sampler_check).
//
// URL parameters: data=NAME (a data set name or "draw"), process=vp|flow,
// steps=N (training steps before sampling starts by itself, default 3000),
// seed=S, simd=0 (force the scalar build), autotest=1 (train, sample with
// the picked sampler then DDPM, measure, and set <body data-done="1">,
// again after every reset or process switch; used by make test-web).
'use strict';
(function () {
  const params = new URLSearchParams(location.search);
  const AUTOTEST = params.get('autotest') === '1';
  const TARGET_STEPS = Math.max(1, parseInt(params.get('steps') || '3000', 10) || 3000);
  const SEED = parseInt(params.get('seed') || '1', 10) || 1;
  const BATCH = 256, T = 1000, NREF = 1000;   // batch, diffusion steps, data points for ED
  const VIEW = 3.2;                           // canvases show [-VIEW, VIEW]^2
  const FRAME_BUDGET_MS = 12;                 // work per animation frame
  const $ = (id) => document.getElementById(id);

  let wasm = null;          // exports
  let ready = false;        // a model is initialized for the current data
  let training = true;      // the play/pause state of training
  let losses = [];          // per-step loss
  let smooth = 0;           // EMA of the loss (bias-corrected when shown)
  let computeMs = 0, computeSteps = 0;  // time spent inside dfn_web_train
  let job = null;           // the sampling job in progress
  let runs = {};            // finished runs by sampler: {frames, taus, n}
  let shown = null;         // the run the slider scrubs
  let playing = false;
  let points = [];          // drawn points (data "draw")
  let pointsDirty = false;
  // dfn_sampler_kind values, as in the sampler picker
  const KIND_NAMES = ['DDPM', 'DDIM', 'Euler', 'Heun', 'DPM-Solver++(2M)', 'DPM-Solver++(3M)', 'DPM-Solver++(2M) SDE',
                      'midpoint'];
  // Per process (0 VP, 1 flow): the samplers [dfn_sampler_kind, label] and
  // spacings [dfn_spacing, label] the pickers offer, and their defaults.
  // Flow has a_T = 0 (sigma_T infinite): no logSNR or Karras spacing; there
  // Euler, Heun and the midpoint rule step in u, DDIM (eta 0) is Euler in u,
  // and DDPM is ancestral sampling of the Gaussian chain with the flow's
  // marginals (MATH.md section 12).
  const PROCESSES = [
    { name: 'VP (DDPM)',
      samplers: [[4, 'DPM-Solver++(2M)'], [5, 'DPM-Solver++(3M)'], [6, 'DPM-Solver++(2M) SDE'], [3, 'Heun'],
                 [7, 'midpoint'], [2, 'Euler'], [1, 'DDIM'], [0, 'DDPM (T steps)']],
      spacings: [[3, 'logSNR'], [4, 'Karras'], [2, 'trailing']],
      sampler: 4, spacing: 3, steps: 20, loss: [0.05, 2, [0.1, 0.2, 0.5, 1]] },
    { name: 'Flow matching',
      samplers: [[7, 'midpoint'], [2, 'Euler'], [3, 'Heun'], [1, 'DDIM (= Euler)'], [4, 'DPM-Solver++(2M)'],
                 [5, 'DPM-Solver++(3M)'], [6, 'DPM-Solver++(2M) SDE'], [0, 'DDPM (T steps)']],
      spacings: [[2, 'uniform (trailing)'], [6, 'shifted (k = 3)']],
      sampler: 7, spacing: 2, steps: 8, loss: [0.3, 4, [0.5, 1, 2]] },
  ];
  let autoQueue = [];       // autotest / auto-sample: samplers still to run
  let refData = null;       // data shown on the canvases
  let maxFrameMs = 0;       // longest work slice of one frame (responsiveness),
  let ticks = 0;            // counted after the first 30 frames (compilation warm-up)
  const frameMs = [];       // every busy frame's work slice

  function fail(msg) {
    $('status').textContent = 'error: ' + msg;
    $('status').className = 'error';
    document.body.dataset.error = msg;
    console.error('dfn_web: ' + msg);
    training = false; job = null; autoQueue = [];
  }
  window.addEventListener('error', (e) => fail(e.message || String(e)));
  window.addEventListener('unhandledrejection', (e) => fail(String(e.reason)));

  function cstr(ptr) {
    if (!ptr) return '';
    const b = new Uint8Array(wasm.memory.buffer, ptr);
    let n = 0;
    while (b[n]) n++;
    return new TextDecoder().decode(b.subarray(0, n));
  }
  function check(r, what) {
    if (r < 0) throw new Error(what + ': ' + cstr(wasm.dfn_web_error_string(r)));
    return r;
  }
  const floats = (ptr, n) => new Float32Array(wasm.memory.buffer, ptr, n);

  // ---- drawing ---------------------------------------------------------
  function toPx(canvas, x, y) {
    return [(x + VIEW) / (2 * VIEW) * canvas.width, (VIEW - y) / (2 * VIEW) * canvas.height];
  }
  function drawPoints(ctx, canvas, xy, n, color, size) {
    ctx.fillStyle = color;
    for (let i = 0; i < n; i++) {
      const [px, py] = toPx(canvas, xy[2 * i], xy[2 * i + 1]);
      ctx.fillRect(px - size / 2, py - size / 2, size, size);
    }
  }
  function axes(ctx, canvas) {
    ctx.clearRect(0, 0, canvas.width, canvas.height);
    ctx.strokeStyle = '#eee';
    ctx.beginPath();
    for (let v = -3; v <= 3; v++) {
      const [px, py] = toPx(canvas, v, v);
      ctx.moveTo(px, 0); ctx.lineTo(px, canvas.height);
      ctx.moveTo(0, py); ctx.lineTo(canvas.width, py);
    }
    ctx.stroke();
  }
  function drawData() {
    const c = $('data-canvas'), ctx = c.getContext('2d');
    axes(ctx, c);
    if (isDraw()) {
      const xy = new Float32Array(points.length * 2);
      points.forEach((p, i) => { xy[2 * i] = p[0]; xy[2 * i + 1] = p[1]; });
      drawPoints(ctx, c, xy, points.length, 'rgba(30,30,30,0.7)', 3);
      $('data-label').textContent = points.length + ' points drawn';
    } else if (refData) {
      drawPoints(ctx, c, refData, refData.length / 2, 'rgba(30,30,30,0.45)', 2.5);
      $('data-label').textContent = refData.length / 2 + ' fresh draws, standardized';
    }
  }
  function drawFrame() {
    const c = $('sample-canvas'), ctx = c.getContext('2d');
    axes(ctx, c);
    if (refData) drawPoints(ctx, c, refData, refData.length / 2, 'rgba(0,0,0,0.12)', 2);
    if (!shown) { $('frame-label').textContent = 'press "sample" (or wait for training to finish)'; return; }
    const k = Math.min(+$('step').value, shown.frames.length - 1), S = shown.taus.length - 1;
    drawPoints(ctx, c, shown.frames[k], shown.n, shown.kind ? 'rgba(200,60,20,0.6)' : 'rgba(20,90,200,0.6)', 2.5);
    const t = shown.taus[S - k];
    $('frame-label').textContent = KIND_NAMES[shown.kind] + ', step ' + k + ' of ' + S +
      ': t = ' + t + (shown.process === 1 ? ', u = ' + +(t / shown.T).toFixed(3) : '') +
      (k === 0 ? ' (x_T ~ N(0, I))' : k === S ? ' (x_0)' : '');
  }
  function drawLoss() {
    const c = $('loss-canvas'), ctx = c.getContext('2d');
    ctx.clearRect(0, 0, c.width, c.height);
    if (losses.length < 2) return;
    const [vlo, vhi, grid] = PROCESSES[proc()].loss;
    const lo = Math.log(vlo), hi = Math.log(vhi), W = c.width, H = c.height;
    const y = (v) => H - (Math.log(Math.max(v, 1e-6)) - lo) / (hi - lo) * H;
    ctx.strokeStyle = '#eee';
    ctx.fillStyle = '#999';
    ctx.font = '10px sans-serif';
    for (const v of grid) {
      ctx.beginPath(); ctx.moveTo(0, y(v)); ctx.lineTo(W, y(v)); ctx.stroke();
      ctx.fillText(String(v), 2, y(v) - 2);
    }
    const n = losses.length, step = Math.max(1, Math.floor(n / W));
    ctx.strokeStyle = 'rgba(40,100,200,0.25)';
    ctx.beginPath();
    for (let i = 0; i < n; i += step) ctx.lineTo(i / (n - 1) * W, y(losses[i]));
    ctx.stroke();
    ctx.strokeStyle = 'rgb(20,60,160)';
    ctx.beginPath();
    let s = 0, w = 1;  // EMA with bias correction: no lag from the first value
    for (let i = 0; i < n; i++) {
      s = 0.98 * s + 0.02 * losses[i]; w *= 0.98;
      if (i % step === 0) ctx.lineTo(i / (n - 1) * W, y(s / (1 - w)));
    }
    ctx.stroke();
    ctx.fillText('step ' + n, W - 60, H - 4);
  }

  // ---- model -----------------------------------------------------------
  function isDraw() { return $('dataset').value === 'draw'; }
  function proc() { return +$('process').value; }

  // The pickers for the chosen process, at its defaults.
  function fillPickers() {
    const P = PROCESSES[proc()];
    for (const [id, list, def] of [['sampler', P.samplers, P.sampler], ['spacing', P.spacings, P.spacing]]) {
      const sel = $(id);
      sel.textContent = '';
      for (const [v, label] of list) {
        const o = document.createElement('option');
        o.value = String(v); o.textContent = label;
        sel.appendChild(o);
      }
      sel.value = String(def);
    }
    $('ddim-steps').value = String(P.steps);
    for (const el of document.querySelectorAll('#process-note [data-process]'))
      el.className = +el.dataset.process === proc() ? 'on' : 'off';
  }
  // Every sampler and spacing offered must be valid for the model (a
  // mistake in PROCESSES shows up as a page error, not as a later failure).
  function checkPickers() {
    const steps = Math.max(1, Math.min(T, +$('ddim-steps').value || 20));
    for (const k of $('sampler').options)
      for (const sp of $('spacing').options)
        check(wasm.dfn_web_sampler_check(+k.value, steps, +sp.value),
              'sampler ' + k.textContent + ' with spacing ' + sp.textContent);
  }
  function dataKind() { return isDraw() ? -1 : +$('dataset').value; }

  function reset() {
    ready = false; losses = []; smooth = 0; computeMs = 0; computeSteps = 0;
    delete document.body.dataset.done;
    job = null; runs = {}; shown = null; playing = false; refData = null;
    $('step').max = 0; $('step').value = 0;
    $('ed-ddim-name').textContent = 'few-step samples';
    for (const id of ['ed-ddim', 'ed-ddpm', 'ed-baseline', 'loss', 'rate']) {
      $(id).textContent = '-'; delete $(id).dataset.value;
    }
    $('steps').textContent = '0';
    $('clear').hidden = !isDraw();
    $('draw-hint').hidden = !isDraw();
    $('data-canvas').classList.toggle('drawing', isDraw());
    if (isDraw()) {
      if (points.length === 0) { training = false; updateTrainButton(); drawAll(); return; }
      const buf = floats(wasm.dfn_web_points(), 2 * wasm.dfn_web_max_points());
      points.forEach((p, i) => { buf[2 * i] = p[0]; buf[2 * i + 1] = p[1]; });
      check(wasm.dfn_web_set_points(points.length), 'points');
      pointsDirty = false;
    }
    check(wasm.dfn_web_init_process(proc(), dataKind(), SEED, 0, 0, BATCH, TARGET_STEPS, T), 'init');
    ready = true;
    checkPickers();
    refData = floats(wasm.dfn_web_data(NREF, SEED + 1000), 2 * wasm.dfn_web_ref_count()).slice();
    $('params').textContent = wasm.dfn_web_num_params();
    autoQueue = AUTOTEST ? [+$('sampler').value, 0] : [];
    drawAll();
  }
  function drawAll() { drawData(); drawFrame(); drawLoss(); }
  function updateTrainButton() { $('train').textContent = training ? 'pause' : 'train'; }

  function startSampling(kind) {
    if (!ready) return;
    const n = Math.max(16, Math.min(4096, +$('nsamples').value || 500));
    const steps = Math.max(1, Math.min(T, +$('ddim-steps').value || 20));
    const S = check(wasm.dfn_web_sample_begin(kind, n, steps, SEED + 17, +$('spacing').value), 'sampler');
    const taus = [];
    for (let i = 0; i <= S; i++) taus.push(wasm.dfn_web_sample_timestep(i));
    job = { kind, n, S, i: S, frames: [floats(wasm.dfn_web_x(), 2 * n).slice()], taus,
            nfe: wasm.dfn_web_sample_nfe(), process: wasm.dfn_web_process(), T: wasm.dfn_web_T() };
    shown = job;
    $('step').max = S; $('step').value = 0;
    $('status').textContent = KIND_NAMES[kind] + ' sampling';
  }
  function finishSampling() {
    const j = job;
    job = null;
    runs[j.kind] = j;
    check(wasm.dfn_web_energy(NREF, SEED + 1000), 'energy distance');
    const ed = wasm.dfn_web_ed(), base = wasm.dfn_web_ed_baseline();
    const el = $(j.kind ? 'ed-ddim' : 'ed-ddpm');
    if (j.kind) $('ed-ddim-name').textContent = KIND_NAMES[j.kind] + ', ' + j.nfe + ' NFE';
    el.textContent = ed.toFixed(4); el.dataset.value = String(ed);
    $('ed-baseline').textContent = base.toFixed(4); $('ed-baseline').dataset.value = String(base);
    $('status').textContent = KIND_NAMES[j.kind] + ' done (' + j.nfe + ' NFE)';
    if (autoQueue.length) startSampling(autoQueue.shift());
    else if (AUTOTEST) { document.body.dataset.done = '1'; $('status').textContent = 'autotest done'; }
  }

  // One animation frame of work: sampling first (it pauses training), else training.
  function tick() {
    try {
      const t0 = performance.now();
      if (job && job.i < 1) {
        finishSampling();  // the energy distance gets a frame of its own
      } else if (job) {
        while (job.i >= 1 && performance.now() - t0 < FRAME_BUDGET_MS) {
          check(wasm.dfn_web_sample_step(job.i), 'sampler step');
          job.i--;
          job.frames.push(floats(wasm.dfn_web_x(), 2 * job.n).slice());
        }
        $('step').value = job.frames.length - 1;
        drawFrame();
      } else if (ready && training && wasm.dfn_web_steps() < TARGET_STEPS) {
        let k = 0;
        while (wasm.dfn_web_steps() < TARGET_STEPS && performance.now() - t0 < FRAME_BUDGET_MS) {
          check(wasm.dfn_web_train(1), 'training step');
          const l = wasm.dfn_web_loss();
          losses.push(l);
          smooth = 0.98 * smooth + 0.02 * l;
          k++;
        }
        computeMs += performance.now() - t0; computeSteps += k;
        const rate = computeSteps / (computeMs / 1000);
        $('steps').textContent = wasm.dfn_web_steps();
        $('loss').textContent = (smooth / (1 - Math.pow(0.98, losses.length))).toFixed(4);
        $('rate').textContent = rate.toFixed(0); $('rate').dataset.value = String(rate);
        $('status').textContent = 'training';
        drawLoss();
        if (wasm.dfn_web_steps() >= TARGET_STEPS) {
          $('status').textContent = 'trained';
          if (!AUTOTEST) autoQueue = [+$('sampler').value || PROCESSES[proc()].sampler];
          if (autoQueue.length) startSampling(autoQueue.shift());
        }
      } else if (playing && shown) {
        const s = $('step');
        if (+s.value >= +s.max) playing = false;
        else { s.value = Math.min(+s.max, +s.value + Math.max(1, Math.round(+s.max / 120))); drawFrame(); }
        $('play').textContent = playing ? 'stop' : 'play';
      }
      const ms = performance.now() - t0;
      if (++ticks > 30 && ms > 0.5) {
        frameMs.push(ms);
        if (frameMs.length > 1000) frameMs.shift();
        if (ms > maxFrameMs) maxFrameMs = ms;
        const sorted = frameMs.slice().sort((a, b) => a - b);
        document.body.dataset.frameMs = 'median ' + sorted[sorted.length >> 1].toFixed(1) + ', p95 ' +
          sorted[Math.floor(sorted.length * 0.95)].toFixed(1) + ', max ' + maxFrameMs.toFixed(1);
      }
    } catch (e) {
      fail(e.message);
    }
    requestAnimationFrame(tick);
  }

  // ---- controls --------------------------------------------------------
  function wire() {
    const sel = $('dataset');
    for (let k = 0; k < wasm.dfn_web_data_count(); k++) {
      const o = document.createElement('option');
      o.value = String(k); o.textContent = cstr(wasm.dfn_web_data_name(k));
      sel.appendChild(o);
    }
    const o = document.createElement('option');
    o.value = 'draw'; o.textContent = 'draw your own points';
    sel.appendChild(o);
    const want = params.get('data') || '8gaussians';
    for (const opt of sel.options) if (opt.textContent === want || opt.value === want) sel.value = opt.value;

    sel.addEventListener('change', () => { training = !isDraw() || points.length > 0; updateTrainButton(); reset(); });
    $('train').addEventListener('click', () => {
      if (isDraw() && (pointsDirty || !ready)) { if (points.length === 0) return; reset(); training = true; }
      else training = !training;
      updateTrainButton();
    });
    $('reset').addEventListener('click', () => { reset(); });
    const want_p = (params.get('process') || 'vp').toLowerCase();
    $('process').value = want_p === 'flow' || want_p === '1' ? '1' : '0';
    fillPickers();
    $('process').addEventListener('change', () => {
      fillPickers();
      training = !isDraw() || points.length > 0; updateTrainButton();
      reset();
    });
    $('clear').addEventListener('click', () => { points = []; pointsDirty = true; training = false; updateTrainButton(); reset(); });
    $('sample').addEventListener('click', () => { autoQueue = []; startSampling(+$('sampler').value); });
    $('step').addEventListener('input', () => { playing = false; drawFrame(); });
    $('play').addEventListener('click', () => {
      if (!shown) return;
      if (!playing && +$('step').value >= +$('step').max) $('step').value = 0;
      playing = !playing;
      $('play').textContent = playing ? 'stop' : 'play';
    });

    // "draw your own": spray a few points around the pointer while a button is down
    const c = $('data-canvas');
    let down = false;
    const spray = (ev) => {
      if (!isDraw() || points.length >= wasm.dfn_web_max_points()) return;
      const r = c.getBoundingClientRect();
      const x = ((ev.clientX - r.left) / r.width * 2 - 1) * VIEW, y = (1 - (ev.clientY - r.top) / r.height * 2) * VIEW;
      for (let k = 0; k < 3 && points.length < wasm.dfn_web_max_points(); k++) {
        const a = Math.random() * 2 * Math.PI, d = 0.12 * Math.sqrt(Math.random());
        points.push([x + d * Math.cos(a), y + d * Math.sin(a)]);
      }
      pointsDirty = true;
      if (training) { training = false; updateTrainButton(); }
      drawData();
    };
    c.addEventListener('pointerdown', (ev) => { down = true; c.setPointerCapture(ev.pointerId); spray(ev); });
    c.addEventListener('pointermove', (ev) => { if (down) spray(ev); });
    c.addEventListener('pointerup', () => { down = false; });
    c.addEventListener('pointercancel', () => { down = false; });
  }

  // ---- start -----------------------------------------------------------
  async function main() {
    const simdProbe = new Uint8Array([0, 97, 115, 109, 1, 0, 0, 0, 1, 5, 1, 96, 0, 1, 123, 3, 2, 1, 0, 10,
      10, 1, 8, 0, 65, 0, 253, 15, 253, 98, 11]);  // (func (result v128) i32.const 0 i8x16.splat i8x16.popcnt)
    const simd = params.get('simd') !== '0' && WebAssembly.validate(simdProbe);
    const file = simd ? 'dfn_web.wasm' : 'dfn_web_scalar.wasm';
    let memory = null;
    const imports = dfnWasiImports(() => memory);
    let resp, result;
    try {
      resp = await fetch(file);
    } catch (e) {
      throw new Error('cannot load ' + file + (location.protocol === 'file:' ? ': serve this folder over http' : ': ' + e.message));
    }
    if (!resp.ok) throw new Error(file + ': HTTP ' + resp.status);
    try {
      result = await WebAssembly.instantiateStreaming(resp.clone(), imports);
    } catch (e) {  // a server that does not send application/wasm
      result = await WebAssembly.instantiate(await resp.arrayBuffer(), imports);
    }
    wasm = result.instance.exports;
    memory = wasm.memory;
    if (wasm._initialize) wasm._initialize();
    $('simd').textContent = cstr(wasm.dfn_web_simd_name());
    wire();
    training = !isDraw();
    updateTrainButton();
    reset();
    $('status').textContent = 'training';
    requestAnimationFrame(tick);
  }
  main().catch((e) => fail(e.message || String(e)));
})();
