/* dfn_web.c - diffusion.h in a browser page: train a 2D model, sample it
   step by step, measure it. Every object lives in one static arena; the
   page (web/app.js) calls these exports and reads the float buffers they
   return straight out of the WebAssembly memory.

   Build (make web):
     clang --target=wasm32-wasi -msimd128 -O2 -mexec-model=reactor web/dfn_web.c -o dfn_web.wasm

   Every function returning int returns a dfn_result (0 = ok, < 0 = error;
   dfn_web_error_string names it) unless said otherwise. */
#define DFN_NO_MALLOC
#define DFN_NO_STDIO
/* an internal invariant that fails traps (the page reports it) instead of
   pulling in stdio to print it */
#define DFN_ASSERT(x) ((x) ? (void)0 : __builtin_trap())
#define DIFFUSION_IMPLEMENTATION
#include "../diffusion.h"

#define WEB_EXPORT(name) __attribute__((export_name(#name)))

#define WEB_ARENA_BYTES  (24u << 20)  /* schedule, model, trainer, sampler    */
#define WEB_MAX_POINTS   4096         /* drawn points, samples, references    */
#define WEB_CHUNK        256          /* samples per network forward call     */
#define WEB_JITTER       0.04f        /* std of the noise added to drawn points */

static unsigned char g_arena[WEB_ARENA_BYTES] __attribute__((aligned(64)));
static size_t g_used, g_mark;         /* bump pointer; start of the sampler region */

static dfn_schedule g_sched;
static dfn_mlp g_model;
static dfn_trainer g_tr;
static dfn_rng g_rng, g_sample_rng;
static float *g_batch;
static int g_ready, g_data, g_batch_n;
static float g_loss;

static float g_points[WEB_MAX_POINTS * 2];  /* the drawn points (data -1)    */
static int g_npoints;
static float g_x[WEB_MAX_POINTS * 2];       /* the sampler's x_t             */
static float g_ref[WEB_MAX_POINTS * 2];     /* data to look at or compare to */
static float g_base[WEB_MAX_POINTS * 2];    /* N(0, I) baseline samples      */
static int g_n;                             /* samples in g_x                */
static dfn_sampler g_smp;
static dfn_mlp_predictor g_pred;
static int g_sampling;
static double g_ed, g_ed_base;

/* size bytes of the arena, 64-byte aligned; NULL when it is full. */
static void *web_take(size_t size)
{
    size_t at = (g_used + 63u) & ~(size_t)63u;
    if (size == 0 || at > WEB_ARENA_BYTES || size > WEB_ARENA_BYTES - at) return NULL;
    g_used = at + size;
    return g_arena + at;
}

/* n training points: from the data set, or the drawn points with jitter. */
static dfn_result web_draw(dfn_rng *rng, float *xy, int n)
{
    int i;
    if (g_data >= 0) return dfn_data2d_sample((dfn_data2d)g_data, rng, xy, n);
    if (g_npoints < 1) return DFN_ERR_INVALID_ARG;
    for (i = 0; i < n; i++) {
        uint32_t k = dfn_rng_below(rng, (uint32_t)g_npoints);
        xy[2 * i] = g_points[2 * k] + WEB_JITTER * dfn_rng_normal(rng);
        xy[2 * i + 1] = g_points[2 * k + 1] + WEB_JITTER * dfn_rng_normal(rng);
    }
    return DFN_OK;
}

/* The buffer for drawn points: WEB_MAX_POINTS (x, y) pairs. */
WEB_EXPORT(dfn_web_points) float *dfn_web_points(void) { return g_points; }
WEB_EXPORT(dfn_web_max_points) int dfn_web_max_points(void) { return WEB_MAX_POINTS; }

/* Use the first n pairs of dfn_web_points() as the data of data set -1. */
WEB_EXPORT(dfn_web_set_points) int dfn_web_set_points(int n)
{
    int i;
    if (n < 1 || n > WEB_MAX_POINTS) return DFN_ERR_INVALID_ARG;
    for (i = 0; i < 2 * n; i++)
        if (!(g_points[i] - g_points[i] == 0.0f)) return DFN_ERR_NOT_FINITE; /* NaN, inf */
    g_npoints = n;
    return DFN_OK;
}

/* A fresh schedule, model and trainer. process: 0 the VP (DDPM) process
   on the linear beta schedule with an eps-predicting network, 1 flow
   matching (rectified flow, MATH.md section 12: a = 1 - u, s = u) with a
   velocity-predicting one (w = eps - x0); both draw t uniformly. data: a
   dfn_data2d kind, or -1 for the drawn points. hidden, blocks: the MLP's
   width and depth (0: the defaults). batch: examples per step.
   total_steps > 0: cosine learning-rate decay to that step. T: the
   diffusion steps of the schedule (2..DFN_MAX_T for flow). */
WEB_EXPORT(dfn_web_init_process)
int dfn_web_init_process(int process, int data, int seed, int hidden, int blocks, int batch,
                         int total_steps, int T)
{
    dfn_schedule_config sc;
    dfn_mlp_config mc;
    dfn_train_config tc;
    size_t bytes;
    void *mem;
    dfn_result r;

    g_ready = 0; g_sampling = 0; g_used = 0; g_loss = 0.0f;
    if (process != DFN_PROCESS_VP && process != DFN_PROCESS_FLOW) return DFN_ERR_INVALID_ARG;
    if (data < -1 || data >= DFN_DATA2D_COUNT || (data == -1 && g_npoints < 1)) return DFN_ERR_INVALID_ARG;
    if (batch < 1 || batch > WEB_MAX_POINTS || hidden < 0 || blocks < 0 || total_steps < 0)
        return DFN_ERR_INVALID_ARG;
    g_data = data;
    g_batch_n = batch;
    dfn_rng_seed(&g_rng, (uint64_t)(uint32_t)seed, 1);

    sc = dfn_schedule_config_default(process == DFN_PROCESS_FLOW ? DFN_SCHEDULE_FLOW
                                                                 : DFN_SCHEDULE_LINEAR, T);
    bytes = dfn_schedule_size(T);
    if (!(mem = web_take(bytes))) return bytes ? DFN_ERR_BUFFER_TOO_SMALL : DFN_ERR_INVALID_ARG;
    if ((r = dfn_schedule_init(&g_sched, &sc, mem, bytes)) != DFN_OK) return r;

    mc = dfn_mlp_config_default(2);
    if (hidden > 0) mc.hidden = hidden;
    if (blocks > 0) mc.blocks = blocks;
    mc.prediction = process == DFN_PROCESS_FLOW ? DFN_PREDICT_FLOW : DFN_PREDICT_EPS;
    bytes = dfn_mlp_num_params(&mc);
    if (!bytes) return DFN_ERR_INVALID_ARG;
    /* size_t has 32 bits here: no byte count may wrap (nor the trainer's,
       a few times this) */
    if (bytes > WEB_ARENA_BYTES / sizeof(float)) return DFN_ERR_BUFFER_TOO_SMALL;
    bytes *= sizeof(float);
    if (!(mem = web_take(bytes))) return DFN_ERR_BUFFER_TOO_SMALL;
    if ((r = dfn_mlp_init(&g_model, &mc, (float *)mem)) != DFN_OK) return r;
    if ((r = dfn_mlp_init_weights(&g_model, &g_rng)) != DFN_OK) return r;

    tc = dfn_train_config_default();
    tc.batch = batch;
    tc.total_steps = total_steps;
    tc.warmup_steps = total_steps >= 1000 ? 100 : 0;
    tc.time_sampling = DFN_TIME_UNIFORM;   /* logit-normal measured no better on this 2D data */
    bytes = dfn_trainer_size(&mc, &tc);
    if (!(mem = web_take(bytes))) return bytes ? DFN_ERR_BUFFER_TOO_SMALL : DFN_ERR_INVALID_ARG;
    if ((r = dfn_trainer_init(&g_tr, &g_model, &g_sched, &tc, mem, bytes)) != DFN_OK) return r;

    if (!(g_batch = (float *)web_take(sizeof(float) * 2 * (size_t)batch))) return DFN_ERR_BUFFER_TOO_SMALL;
    bytes = dfn_mlp_forward_size(&mc, WEB_CHUNK);
    g_pred.model = &g_tr.ema_model;
    if (!(g_pred.work = web_take(bytes))) return DFN_ERR_BUFFER_TOO_SMALL;
    g_pred.work_bytes = bytes;
    g_mark = g_used;
    g_ready = 1;
    return DFN_OK;
}

/* The VP process (dfn_web_init_process with process 0), as before. */
WEB_EXPORT(dfn_web_init)
int dfn_web_init(int data, int seed, int hidden, int blocks, int batch, int total_steps, int T)
{
    return dfn_web_init_process(DFN_PROCESS_VP, data, seed, hidden, blocks, batch, total_steps, T);
}

/* The process of the current model: 0 VP, 1 flow; -1 when there is none. */
WEB_EXPORT(dfn_web_process) int dfn_web_process(void) { return g_ready ? (int)g_sched.process : -1; }

/* T of the current schedule; 0 when there is none. */
WEB_EXPORT(dfn_web_T) int dfn_web_T(void) { return g_ready ? g_sched.T : 0; }

/* steps training steps; the loss of the last one is dfn_web_loss(). */
WEB_EXPORT(dfn_web_train) int dfn_web_train(int steps)
{
    int i;
    dfn_result r;
    if (!g_ready) return DFN_ERR_INVALID_ARG;
    for (i = 0; i < steps; i++) {
        if ((r = web_draw(&g_rng, g_batch, g_batch_n)) != DFN_OK) return r;
        if ((r = dfn_train_step(&g_tr, g_batch, NULL, &g_rng, &g_loss)) != DFN_OK) return r;
    }
    return DFN_OK;
}

WEB_EXPORT(dfn_web_loss) float dfn_web_loss(void) { return g_loss; }
WEB_EXPORT(dfn_web_steps) int dfn_web_steps(void) { return g_ready ? (int)g_tr.step : 0; }
WEB_EXPORT(dfn_web_num_params) int dfn_web_num_params(void) { return g_ready ? (int)g_model.lay.count : 0; }

/* n points of the training data (fresh draws from the data set, or the
   drawn points as they are, n ignored) into the buffer returned; the count
   is dfn_web_ref_count(). NULL on error. */
static int g_nref;
WEB_EXPORT(dfn_web_data) float *dfn_web_data(int n, int seed)
{
    dfn_rng rng;
    if (g_data < 0) {
        if (g_npoints < 1) return NULL;
        DFN_MEMCPY(g_ref, g_points, sizeof(float) * 2 * (size_t)g_npoints);
        g_nref = g_npoints;
        return g_ref;
    }
    if (n < 1 || n > WEB_MAX_POINTS) return NULL;
    dfn_rng_seed(&rng, (uint64_t)(uint32_t)seed, 7);
    if (dfn_data2d_sample((dfn_data2d)g_data, &rng, g_ref, n) != DFN_OK) return NULL;
    g_nref = n;
    return g_ref;
}
WEB_EXPORT(dfn_web_ref_count) int dfn_web_ref_count(void) { return g_nref; }

/* The sampler configuration of dfn_web_sample_begin (see there) into cfg,
   validated against the current schedule: DFN_ERR_INVALID_ARG without a
   model, for an unknown kind or spacing, CUSTOM, n outside 1..WEB_MAX_POINTS
   or anything dfn_sampler_init refuses (steps outside 1..T, logSNR or
   Karras on a flow schedule). */
static dfn_result web_sampler_config(dfn_sampler_config *cfg, int kind, int n, int steps, int spacing)
{
    if (!g_ready) return DFN_ERR_INVALID_ARG;
    if (kind < 0 || kind >= DFN_SAMPLER_KIND_COUNT || n < 1 || n > WEB_MAX_POINTS) return DFN_ERR_INVALID_ARG;
    if (spacing < 0 || spacing >= DFN_SPACING_COUNT || spacing == DFN_SPACING_CUSTOM) return DFN_ERR_INVALID_ARG;
    *cfg = dfn_mlp_sampler_config((dfn_sampler_kind)kind, n, &g_pred);
    if (kind != DFN_SAMPLER_DDPM) {
        cfg->steps = steps;
        cfg->spacing = (dfn_spacing)spacing;
    }
    return dfn_sampler_size(cfg, &g_sched) ? DFN_OK : DFN_ERR_INVALID_ARG;
}

/* Start the reverse process of n samples with the EMA weights: kind a
   dfn_sampler_kind (0 DDPM with T steps; 1 DDIM, eta 0; 2 Euler, 3 Heun,
   4 DPM-Solver++(2M), 5 (3M), 6 the 2M SDE, 7 the midpoint rule) with
   `steps` steps on a dfn_spacing (0 linspace, 1 leading, 2 trailing,
   3 logSNR, 4 Karras, 6 shifted with k = 3; not 5, custom; ignored by
   DDPM). On a flow schedule logSNR and Karras are errors (sigma_T is
   infinite); Euler, Heun and the midpoint rule step in u there. Draws
   x_T ~ N(0, I) into dfn_web_x(). Returns the number of steps S (> 0), or
   a dfn_result < 0. */
WEB_EXPORT(dfn_web_sample_begin) int dfn_web_sample_begin(int kind, int n, int steps, int seed, int spacing)
{
    dfn_sampler_config cfg;
    size_t bytes;
    void *mem;
    dfn_result r;
    g_sampling = 0;
    if ((r = web_sampler_config(&cfg, kind, n, steps, spacing)) != DFN_OK) return r;
    g_used = g_mark;
    bytes = dfn_sampler_size(&cfg, &g_sched);
    if (!(mem = web_take(bytes))) return DFN_ERR_BUFFER_TOO_SMALL;
    if ((r = dfn_sampler_init(&g_smp, &cfg, &g_sched, mem, bytes)) != DFN_OK) return r;
    dfn_rng_seed(&g_sample_rng, (uint64_t)(uint32_t)seed, 3);
    dfn_rng_normal_fill(&g_sample_rng, g_x, 2 * (size_t)n);
    g_n = n;
    g_sampling = 1;
    return dfn_sampler_num_steps(&g_smp);
}

/* 0 (DFN_OK) when dfn_web_sample_begin would accept these arguments on
   the current model, else the error it would return; nothing changes. */
WEB_EXPORT(dfn_web_sampler_check) int dfn_web_sampler_check(int kind, int steps, int spacing)
{
    dfn_sampler_config cfg;
    return web_sampler_config(&cfg, kind, 1, steps, spacing);
}

/* Predictor calls of the run begun last (Heun 2S - 1, midpoint about 2S);
   0 when not sampling. */
WEB_EXPORT(dfn_web_sample_nfe) int dfn_web_sample_nfe(void) { return g_sampling ? dfn_sampler_nfe(&g_smp) : 0; }

/* Step i (from S down to 1): x moves in place from tau_i to tau_{i-1}. */
WEB_EXPORT(dfn_web_sample_step) int dfn_web_sample_step(int i)
{
    if (!g_sampling) return DFN_ERR_INVALID_ARG;
    return dfn_sampler_step(&g_smp, i, g_x, &g_sample_rng);
}

/* tau_i, the timestep x is at before step i (tau_0 = 0); -1 when not sampling. */
WEB_EXPORT(dfn_web_sample_timestep) int dfn_web_sample_timestep(int i)
{
    return g_sampling ? dfn_sampler_timestep(&g_smp, i) : -1;
}

/* The samples, (n, 2) floats. */
WEB_EXPORT(dfn_web_x) float *dfn_web_x(void) { return g_x; }

/* Energy distance (MATH.md section 10, V-statistic) between the current
   samples and m points of the data (fresh draws with this seed, or every
   drawn point), and the trivial baseline: as many N(0, I) points against
   the same data. Read them with dfn_web_ed() and dfn_web_ed_baseline(). */
WEB_EXPORT(dfn_web_energy) int dfn_web_energy(int m, int seed)
{
    dfn_rng rng;
    dfn_result r;
    if (!g_sampling || !dfn_web_data(m, seed)) return DFN_ERR_INVALID_ARG;
    dfn_rng_seed(&rng, (uint64_t)(uint32_t)seed, 11);
    dfn_rng_normal_fill(&rng, g_base, 2 * (size_t)g_n);
    if ((r = dfn_energy_distance(&g_ed, g_x, g_n, g_ref, g_nref, 2)) != DFN_OK) return r;
    return dfn_energy_distance(&g_ed_base, g_base, g_n, g_ref, g_nref, 2);
}
WEB_EXPORT(dfn_web_ed) double dfn_web_ed(void) { return g_ed; }
WEB_EXPORT(dfn_web_ed_baseline) double dfn_web_ed_baseline(void) { return g_ed_base; }

/* The data set's name ("moons", ...) or NULL, for the picker. */
WEB_EXPORT(dfn_web_data_name) const char *dfn_web_data_name(int kind)
{
    return dfn_data2d_name((dfn_data2d)kind);
}
WEB_EXPORT(dfn_web_data_count) int dfn_web_data_count(void) { return DFN_DATA2D_COUNT; }
WEB_EXPORT(dfn_web_error_string) const char *dfn_web_error_string(int r)
{
    return dfn_result_string((dfn_result)r);
}
WEB_EXPORT(dfn_web_simd_name) const char *dfn_web_simd_name(void) { return dfn_simd_name(); }
