/* bench_dfn.c - throughput of diffusion.h's default networks, and the
   machine's FMA peak, for `make bench` (bench/bench.mk).

   Measures, on 1 thread or on N threads (--threads N: the ready pthreads
   pool, dfn_pthreads_start(N)):
     - the default 2D MLP, dfn_mlp_config_default(2) (input 2 + 2 x 32
       sinusoidal features + time 128, width 128, 3 residual blocks, GELU,
       eps-prediction), linear T = 1000 schedule, default trainer (Adam lr
       1e-3, EMA 0.999): training steps/s at batch 256 and 1024; samples/s of
       DDIM-50 (trailing, eta 0) and DDPM-1000 (small variance) on 10,000
       points (dfn_mlp_predictor with a 1024-sample workspace);
     - the default MNIST U-Net of examples/mnist.c: dfn_unet_config_default
       (1, 28, 28) with base_channels 16, time_dim 64, groups 8 (levels 16,
       32, 32 channels at 28, 14, 7 pixels, 1 ResBlock per level going down,
       2 going up, attention at 7x7 and in the middle): training steps/s at
       batch 64 (same trainer), images/s of DDIM-50 on 32 images;
     - with --peak, the FMA peak: a register-resident loop of independent
       fused multiply-adds per SIMD width (128, 256, 512 bits), on 1 thread
       and on 2 threads at once.
   Every cell is the best of a few timed repetitions after a warm-up
   (monotonic wall clock): the machine is shared, and the best run is the
   one least disturbed by other work.

   GEMM FLOPs are counted analytically from the shapes (1 multiply-add = 2
   FLOPs), never measured:
     MLP    layers (in, out) = (194, 128), 3 x (128, 128), (128, 2), S = sum
            in * out: forward 2 B S; training step 2 B (3 S - 194 * 128)
            (forward, dW, and dX of every layer but the first, whose input
            needs no gradient).
     U-Net  per image, F = the forward multiply-adds of every GEMM: the
            embedding's two dense layers (E T + T T), each 3x3 conv
            (h w 9 ci co, at its output size), each ResBlock's time projection
            (T co) and 1x1 skip conv when channels change (h w ci co), each
            attention block (h w (3 c^2 + c^2) for the projections, 2 (h w)^2 c
            for q k^T and P v). A training step is 3 F per image (forward, dW,
            dX; attention's backward is 4 products for its 2) minus the dX
            nobody needs: the input conv's (h w 9 ci co) and the embedding's
            first layer (E T). The walk also counts the parameters and must
            agree with dfn_unet_num_params (the check that it follows the
            network the library builds).

   Usage: bench_dfn [--threads N] [--quick] [--only NAME] [--peak] [--split] [--json FILE]
                    [--check-mlp FILE] [--check-unet FILE]
     --threads N     N workers (default 1)
     --quick         fewer repetitions, DDPM-1000 on 2,000 points
     --only NAME     one measurement (mlp_train_b256, mlp_train_b1024,
                     mlp_ddim50, mlp_ddpm1000, unet_train_b64, unet_ddim50,
                     mlp_euler50, mlp_dpmpp2m50, mlp_dpmpp3m50,
                     mlp_dpmpp2m_sde50: the solvers at 50 steps, whose step
                     cost over DDIM-50's the full run prints),
                     for profiling: perf record bench_dfn --only unet_train_b64
     --peak          measure only the FMA peak
     --split         short runs on 1 thread through a parallel-for that runs
                     every task itself and times them: the share p of each
                     measurement's time in the work the library splits
                     across workers, and the 2-thread bound
                     1 / ((1 - p) + p / 2)
     --json FILE     also write the results as a flat JSON object (one key a
                     line; bench/table.awk reads it)
     --check-mlp F, --check-unet F
                     write the initial weights, a few inputs and the network's
                     outputs for them (float32, little-endian) and exit:
                     `bench_torch.py --check-mlp F --check-unet G` verifies that
                     its models compute the same function */

#define _POSIX_C_SOURCE 199309L
#define DIFFUSION_IMPLEMENTATION
#define DFN_PTHREADS
#include "../diffusion.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/resource.h>

#if defined(__GNUC__) && (defined(__x86_64__) || defined(__i386__))
#  include <immintrin.h>
#  define BENCH_X86 1
#elif defined(__ARM_NEON)
#  include <arm_neon.h>
#  define BENCH_NEON 1
#endif

#define N_SAMPLES 10000
#define CHUNK 1024
#define UNET_BATCH 64
#define UNET_IMAGES 32

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* CPU time of the whole process (all its threads). */
static double proc_cpu_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* CPU time of the calling thread: unlike the wall clock, it does not run
   while other processes have the core. */
static double thread_cpu_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static void die(const char *what, dfn_result r)
{
    fprintf(stderr, "bench_dfn: %s: %s\n", what, dfn_result_string(r));
    exit(1);
}

static void *xmalloc(size_t bytes)
{
    void *p = malloc(bytes ? bytes : 1);
    if (!p) { fprintf(stderr, "bench_dfn: out of memory (%lu bytes)\n", (unsigned long)bytes); exit(1); }
    return p;
}

/* --split: a parallel-for that runs every task on the calling thread and
   times the jobs, so split_time is the 1-thread time spent in the work the
   library splits across workers (large products, the MLP's blocks of rows;
   p of the total): with perfect scaling of
   those, 2 threads can reach at most 1 / ((1 - p) + p / 2) (Amdahl). Both
   times are the thread's CPU time, so other processes taking the core do
   not change p. */
static double split_time;

static void split_run(void *user, int ntasks, dfn_task_fn task, void *ctx)
{
    double t0 = thread_cpu_s();
    int i;
    (void)user;
    for (i = 0; i < ntasks; i++) task(ctx, i, i % 2);
    split_time += thread_cpu_s() - t0;
}

typedef struct result {
    const char *key;       /* JSON key prefix                      */
    char  label[96];
    double rate;           /* steps/s, samples/s or images/s        */
    const char *unit;
    double gflops;         /* GEMM GFLOP/s at that rate             */
    double split;          /* share of split GEMMs in the fastest repetition (--split) */
    double cpu_rate;       /* the rate by the process's CPU time (best repetition): on
                              1 thread, what an idle core would give             */
    double gemm_alone;     /* MLP training: GFLOP/s of the step's products run
                              alone (same shapes and order), 0 if not measured  */
    char  detail[128];
} result;

static void fill_result(result *res, const char *key, double best_time, double per, const char *unit,
                        double flops_per, const double *times, int reps)
{
    int k;
    double worst = times[0];
    for (k = 1; k < reps; k++) worst = times[k] > worst ? times[k] : worst;
    res->key = key;
    res->rate = per / best_time;
    res->unit = unit;
    res->gflops = flops_per / best_time * 1e-9;
    snprintf(res->detail, sizeof res->detail, "best of %d (worst %.0f%% slower)", reps,
             100.0 * (worst / best_time - 1.0));
}

/* The index of the fastest repetition: its split share is the one kept. */
static int fastest(const double *t, int n)
{
    int i, b = 0;
    for (i = 1; i < n; i++) b = t[i] < t[b] ? i : b;
    return b;
}

static double best_of(const double *t, int n)
{
    double b = t[0];
    int i;
    for (i = 1; i < n; i++) b = t[i] < b ? t[i] : b;
    return b;
}

/* ------------------------------------------------------------------------- */
/*  The MLP                                                                  */
/* ------------------------------------------------------------------------- */

/* Sum over the layers of in * out. */
static double mlp_macs(const dfn_mlp *m)
{
    double H = m->cfg.hidden;
    return (double)m->lay.in_dim * H + m->cfg.blocks * H * H + H * m->cfg.dim;
}

/* The inference forward's products per row: the first layer's t part is
   computed once per step for all rows (they share t), so it drops out. */
static double mlp_infer_macs(const dfn_mlp *m)
{
    return mlp_macs(m) - (double)m->cfg.time_dim * m->cfg.hidden;
}

static double mlp_train_flops(const dfn_mlp *m, int B)
{
    return 2.0 * B * (3.0 * mlp_macs(m) - (double)m->lay.in_dim * m->cfg.hidden);
}

/* GFLOP/s of one MLP training step's products alone: the same dfn_gemm
   calls (shapes, transposes, order) as dfn_train_step without anything in
   between, on random matrices; best of reps runs of `steps` steps. */
static double mlp_gemms_alone(const dfn_mlp *m, int B, int steps, int reps)
{
    int H = m->cfg.hidden, D = m->cfg.dim, L = m->cfg.blocks, I = (int)m->lay.in_dim, k, j, r;
    size_t big = (size_t)B * (I > H ? I : H);
    float *X = (float *)xmalloc(big * sizeof(float)), *Y = (float *)xmalloc(big * sizeof(float));
    float *W = (float *)xmalloc((size_t)H * (I > H ? I : H) * sizeof(float));
    float *G = (float *)xmalloc((size_t)H * (I > H ? I : H) * sizeof(float));
    float *work = (float *)xmalloc(dfn_gemm_work_size());
    double best = 1e30;
    dfn_rng rng;
    dfn_rng_seed(&rng, 3, 0);
    dfn_rng_normal_fill(&rng, X, big);
    dfn_rng_normal_fill(&rng, Y, big);
    dfn_rng_normal_fill(&rng, W, (size_t)H * (I > H ? I : H));
    for (r = 0; r < reps; r++) {
        double t0 = now_s();
        for (k = 0; k < steps; k++) {
            /* forward: in W_in^T, L blocks, W_out */
            dfn_gemm(0, 1, B, H, I, 1.0f, X, I, W, I, 0.0f, Y, H, work);
            for (j = 0; j < L; j++) dfn_gemm(0, 1, B, H, H, 1.0f, X, H, W, H, 0.0f, Y, H, work);
            dfn_gemm(0, 1, B, D, H, 1.0f, X, H, W, H, 0.0f, Y, D, work);
            /* backward of the activations: dh = dout W_out, then L blocks */
            dfn_gemm(0, 0, B, H, D, 1.0f, X, D, W, H, 0.0f, Y, H, work);
            for (j = 0; j < L; j++) dfn_gemm(0, 0, B, H, H, 1.0f, X, H, W, H, 1.0f, Y, H, work);
            /* weight gradients dW += dpre^T h */
            dfn_gemm(1, 0, H, I, B, 1.0f, X, H, Y, I, 1.0f, G, I, work);
            for (j = 0; j < L; j++) dfn_gemm(1, 0, H, H, B, 1.0f, X, H, Y, H, 1.0f, G, H, work);
            dfn_gemm(1, 0, D, H, B, 1.0f, X, D, Y, H, 1.0f, G, H, work);
        }
        t0 = now_s() - t0;
        best = t0 < best ? t0 : best;
    }
    free(X); free(Y); free(W); free(G); free(work);
    return mlp_train_flops(m, B) * steps / best * 1e-9;
}

static void bench_mlp_train(result *res, const char *key, const dfn_mlp_config *mc, const dfn_schedule *s,
                            int B, int warm, int steps, int reps)
{
    enum { POOL = 8 };
    dfn_mlp m;
    dfn_trainer tr;
    dfn_train_config tc = dfn_train_config_default();
    dfn_rng rng;
    dfn_result r;
    float *params, *data, loss = 0.0f;
    double times[16], share[16], ptimes[16], s0;
    int i, k;
    tc.batch = B;                                  /* Adam lr 1e-3, EMA 0.999: the defaults */
    params = (float *)xmalloc(dfn_mlp_num_params(mc) * sizeof(float));
    data = (float *)xmalloc((size_t)POOL * B * 2 * sizeof(float));
    if ((r = dfn_mlp_init(&m, mc, params)) != DFN_OK) die("dfn_mlp_init", r);
    dfn_rng_seed(&rng, 1, 0);
    dfn_mlp_init_weights(&m, &rng);
    if ((r = dfn_trainer_alloc(&tr, &m, s, &tc, NULL)) != DFN_OK) die("dfn_trainer_alloc", r);
    /* A pool of batches drawn up front, so the timing holds only the steps. */
    if ((r = dfn_data2d_sample(DFN_DATA2D_GAUSSIANS8, &rng, data, POOL * B)) != DFN_OK)
        die("dfn_data2d_sample", r);
    for (i = 0; i < warm; i++)
        if ((r = dfn_train_step(&tr, data + (size_t)(i % POOL) * B * 2, NULL, &rng, &loss)) != DFN_OK)
            die("dfn_train_step", r);
    for (k = 0; k < reps; k++) {
        double t0 = now_s(), c0 = thread_cpu_s(), p0 = proc_cpu_s();
        s0 = split_time;
        for (i = 0; i < steps; i++)
            if ((r = dfn_train_step(&tr, data + (size_t)(i % POOL) * B * 2, NULL, &rng, &loss)) != DFN_OK)
                die("dfn_train_step", r);
        share[k] = (split_time - s0) / (thread_cpu_s() - c0);
        times[k] = (now_s() - t0) / steps;
        ptimes[k] = (proc_cpu_s() - p0) / steps;
    }
    snprintf(res->label, sizeof res->label, "MLP train, batch %d", B);
    fill_result(res, key, best_of(times, reps), 1.0, "steps/s", mlp_train_flops(&m, B), times, reps);
    res->split = share[fastest(times, reps)];
    res->cpu_rate = res->rate * best_of(times, reps) / best_of(ptimes, reps);
    res->gemm_alone = mlp_gemms_alone(&m, B, steps, reps);
    dfn_trainer_free(&tr, NULL);
    free(params);
    free(data);
}

/* Samples/s of one sampler on n points: best of reps runs (after one warm-up
   run on CHUNK points when warm). */
static void bench_mlp_sample(result *res, const char *key, const char *name, const dfn_mlp *m,
                             const dfn_schedule *s, dfn_sampler_kind kind, int steps, int n, int reps,
                             int warm)
{
    dfn_mlp_predictor p;
    dfn_sampler smp;
    dfn_sampler_config sc;
    dfn_rng rng;
    dfn_result r;
    float *x;
    double times[16], share[16], ptimes[16], s0;
    int k, evals;
    p.model = m;
    p.work_bytes = dfn_mlp_forward_size(&m->cfg, CHUNK);
    p.work = xmalloc(p.work_bytes);
    x = (float *)xmalloc((size_t)n * m->cfg.dim * sizeof(float));
    dfn_rng_seed(&rng, 7, 0);
    if (warm) {
        sc = dfn_mlp_sampler_config(kind, CHUNK, &p);
        sc.steps = steps;
        if ((r = dfn_sampler_alloc(&smp, &sc, s, NULL)) != DFN_OK) die("dfn_sampler_alloc", r);
        if ((r = dfn_sampler_run(&smp, x, NULL, &rng)) != DFN_OK) die("dfn_sampler_run", r);
        dfn_sampler_free(&smp, NULL);
    }
    sc = dfn_mlp_sampler_config(kind, n, &p);
    sc.steps = steps;                     /* DDIM: trailing spacing, eta 0 (defaults) */
    if ((r = dfn_sampler_alloc(&smp, &sc, s, NULL)) != DFN_OK) die("dfn_sampler_alloc", r);
    evals = dfn_sampler_num_steps(&smp);
    for (k = 0; k < reps; k++) {
        double t0 = now_s(), c0 = thread_cpu_s(), p0 = proc_cpu_s();
        s0 = split_time;
        if ((r = dfn_sampler_run(&smp, x, NULL, &rng)) != DFN_OK) die("dfn_sampler_run", r);
        times[k] = now_s() - t0;
        ptimes[k] = proc_cpu_s() - p0;
        share[k] = (split_time - s0) / (thread_cpu_s() - c0);
    }
    snprintf(res->label, sizeof res->label, "MLP %s, %d points", name, n);
    fill_result(res, key, best_of(times, reps), n, "samples/s", 2.0 * mlp_infer_macs(m) * evals * n, times, reps);
    res->split = share[fastest(times, reps)];
    res->cpu_rate = res->rate * best_of(times, reps) / best_of(ptimes, reps);
    dfn_sampler_free(&smp, NULL);
    free(p.work);
    free(x);
}

/* ------------------------------------------------------------------------- */
/*  The U-Net                                                                */
/* ------------------------------------------------------------------------- */

/* The MNIST example's default network (examples/mnist.c, --size 28 --base 16). */
static dfn_unet_config unet_config(void)
{
    dfn_unet_config uc = dfn_unet_config_default(1, 28, 28);
    uc.base_channels = 16;
    uc.time_dim = 64;
    uc.groups = 8;
    return uc;
}

/* Multiply-adds and parameters of a U-Net, from the architecture documented
   in diffusion.h ("The U-Net noise network for images"), walked here
   independently of the library's own plan. */
typedef struct unet_count {
    double fwd;        /* GEMM multiply-adds of one image's forward pass        */
    double no_dx;      /* of which the dX of the backward pass skips            */
    double params;
    double conv, proj, attn, dense;   /* fwd split: 3x3/1x1 convs, attention, dense */
} unet_count;

static void uc_conv(unet_count *n, int hw, int ci, int co, int k)
{
    n->conv += (double)hw * k * k * ci * co;
    n->params += (double)co * k * k * ci + co;
}

static void uc_res(unet_count *n, const dfn_unet_config *c, int hw, int ci, int co)
{
    n->params += 2.0 * ci + 2.0 * co;                  /* GN1, GN2 */
    uc_conv(n, hw, ci, co, 3);                          /* conv1 */
    n->proj += (double)c->time_dim * co;               /* W_p SiLU(e) */
    n->params += (double)co * c->time_dim + co;
    uc_conv(n, hw, co, co, 3);                          /* conv2 */
    if (ci != co) uc_conv(n, hw, ci, co, 1);            /* 1x1 skip */
}

static void uc_attn(unet_count *n, int hw, int ch)
{
    n->params += 2.0 * ch + 3.0 * ch * ch + 3.0 * ch + (double)ch * ch + ch;
    n->attn += (double)hw * 4.0 * ch * ch + 2.0 * hw * hw * ch;
}

static unet_count unet_count_of(const dfn_unet_config *c)
{
    unet_count n;
    int stack[64], sp = 0, l, b, h = c->height, w = c->width, ch = c->base_channels, cur;
    double T = c->time_dim, E = c->base_channels;
    memset(&n, 0, sizeof n);
    n.dense = E * T + T * T;
    n.params = E * T + T + T * T + T + (c->num_classes > 0 ? (c->num_classes + 1.0) * T : 0.0);
    uc_conv(&n, h * w, c->channels + c->cond_channels, ch, 3);    /* input conv */
    n.no_dx = (double)h * w * 9 * (c->channels + c->cond_channels) * ch + E * T;
    cur = ch;
    stack[sp++] = cur;
    for (l = 0; l < c->levels; l++) {
        ch = c->base_channels * c->mult[l];
        for (b = 0; b < c->blocks; b++) {
            uc_res(&n, c, h * w, cur, ch);
            cur = ch;
            if (c->attention[l]) uc_attn(&n, h * w, ch);
            stack[sp++] = cur;
        }
        if (l < c->levels - 1) {
            h /= 2;
            w /= 2;
            stack[sp++] = cur;                          /* 2x2 average pool: no GEMM */
        }
    }
    uc_res(&n, c, h * w, cur, cur);
    if (c->mid_attention) uc_attn(&n, h * w, cur);
    uc_res(&n, c, h * w, cur, cur);
    for (l = c->levels - 1; l >= 0; l--) {
        ch = c->base_channels * c->mult[l];
        for (b = 0; b <= c->blocks; b++) {
            uc_res(&n, c, h * w, cur + stack[--sp], ch);
            cur = ch;
            if (c->attention[l]) uc_attn(&n, h * w, ch);
        }
        if (l > 0) {
            h *= 2;
            w *= 2;
            uc_conv(&n, h * w, cur, cur, 3);            /* upsample + conv */
        }
    }
    n.params += 2.0 * cur;                              /* output GroupNorm */
    uc_conv(&n, h * w, cur, c->channels, 3);            /* output conv */
    n.fwd = n.conv + n.proj + n.attn + n.dense;
    return n;
}

static void bench_unet_train(result *res, const char *key, const dfn_unet_config *uc, const dfn_schedule *s,
                             int B, int warm, int steps, int reps)
{
    enum { POOL = 4 };
    dfn_unet u;
    dfn_trainer tr;
    dfn_train_config tc = dfn_train_config_default();
    dfn_rng rng;
    dfn_result r;
    unet_count cnt = unet_count_of(uc);
    int D = dfn_unet_dim(uc), i, k;
    float *params, *data, loss = 0.0f;
    double times[16], share[16], ptimes[16], s0;
    tc.batch = B;
    params = (float *)xmalloc(dfn_unet_num_params(uc) * sizeof(float));
    data = (float *)xmalloc((size_t)POOL * B * D * sizeof(float));
    if ((r = dfn_unet_init(&u, uc, params)) != DFN_OK) die("dfn_unet_init", r);
    dfn_rng_seed(&rng, 1, 0);
    dfn_unet_init_weights(&u, &rng);
    if ((r = dfn_trainer_alloc_unet(&tr, &u, s, &tc, NULL)) != DFN_OK) die("dfn_trainer_alloc_unet", r);
    if ((r = dfn_shapes_sample(&rng, data, NULL, POOL * B, uc->height)) != DFN_OK) die("dfn_shapes_sample", r);
    for (i = 0; i < warm; i++)
        if ((r = dfn_train_step(&tr, data + (size_t)(i % POOL) * B * D, NULL, &rng, &loss)) != DFN_OK)
            die("dfn_train_step", r);
    for (k = 0; k < reps; k++) {
        double t0 = now_s(), c0 = thread_cpu_s(), p0 = proc_cpu_s();
        s0 = split_time;
        for (i = 0; i < steps; i++)
            if ((r = dfn_train_step(&tr, data + (size_t)(i % POOL) * B * D, NULL, &rng, &loss)) != DFN_OK)
                die("dfn_train_step", r);
        share[k] = (split_time - s0) / (thread_cpu_s() - c0);
        times[k] = (now_s() - t0) / steps;
        ptimes[k] = (proc_cpu_s() - p0) / steps;
    }
    snprintf(res->label, sizeof res->label, "U-Net train, batch %d", B);
    fill_result(res, key, best_of(times, reps), 1.0, "steps/s", 2.0 * B * (3.0 * cnt.fwd - cnt.no_dx), times,
                reps);
    res->split = share[fastest(times, reps)];
    res->cpu_rate = res->rate * best_of(times, reps) / best_of(ptimes, reps);
    dfn_trainer_free(&tr, NULL);
    free(params);
    free(data);
}

static void bench_unet_sample(result *res, const char *key, const dfn_unet *u, const dfn_schedule *s, int n,
                              int steps, int reps)
{
    dfn_unet_predictor p;
    dfn_sampler smp;
    dfn_sampler_config sc;
    dfn_rng rng;
    dfn_result r;
    unet_count cnt = unet_count_of(&u->cfg);
    float *x;
    double times[16], share[16], ptimes[16], s0;
    int k, evals;
    memset(&p, 0, sizeof p);
    p.model = u;
    p.work_bytes = dfn_unet_forward_size(&u->cfg, n);
    p.work = xmalloc(p.work_bytes);
    x = (float *)xmalloc((size_t)n * dfn_unet_dim(&u->cfg) * sizeof(float));
    dfn_rng_seed(&rng, 7, 0);
    sc = dfn_unet_sampler_config(DFN_SAMPLER_DDIM, n, &p);
    sc.steps = steps;
    if ((r = dfn_sampler_alloc(&smp, &sc, s, NULL)) != DFN_OK) die("dfn_sampler_alloc", r);
    evals = dfn_sampler_num_steps(&smp);
    for (k = 0; k < reps; k++) {
        double t0 = now_s(), c0 = thread_cpu_s(), p0 = proc_cpu_s();
        s0 = split_time;
        if ((r = dfn_sampler_run(&smp, x, NULL, &rng)) != DFN_OK) die("dfn_sampler_run", r);
        times[k] = now_s() - t0;
        ptimes[k] = proc_cpu_s() - p0;
        share[k] = (split_time - s0) / (thread_cpu_s() - c0);
    }
    snprintf(res->label, sizeof res->label, "U-Net DDIM-%d, %d images", steps, n);
    fill_result(res, key, best_of(times, reps), n, "images/s", 2.0 * cnt.fwd * evals * n, times, reps);
    res->split = share[fastest(times, reps)];
    res->cpu_rate = res->rate * best_of(times, reps) / best_of(ptimes, reps);
    dfn_sampler_free(&smp, NULL);
    free(p.work);
    free(x);
}

/* ------------------------------------------------------------------------- */
/*  FMA peak                                                                 */
/* ------------------------------------------------------------------------- */

/* Each loop runs 12 independent chains acc = acc * m + c (enough to cover the
   FMA latency times the FMA units of current cores) on registers only and
   returns a value depending on every chain, so nothing is optimized out. */
#define FMA_CHAINS 12
/* FMA_LOOP(type, set1, fmadd, add): the body, with every chain a named
   variable (an array of vectors may live in memory at -O2). */
#define FMA_LOOP(V, SET1, FMADD, ADD)                                                   \
    V a0 = SET1(0.0f), a1 = SET1(1.0f), a2 = SET1(2.0f), a3 = SET1(3.0f);                 \
    V a4 = SET1(4.0f), a5 = SET1(5.0f), a6 = SET1(6.0f), a7 = SET1(7.0f);                 \
    V a8 = SET1(8.0f), a9 = SET1(9.0f), a10 = SET1(10.0f), a11 = SET1(11.0f);             \
    V m = SET1(0.9999999f), c = SET1(1e-7f);                                              \
    long i;                                                                               \
    for (i = 0; i < iters; i++) {                                                         \
        a0 = FMADD(a0, m, c); a1 = FMADD(a1, m, c); a2 = FMADD(a2, m, c);                 \
        a3 = FMADD(a3, m, c); a4 = FMADD(a4, m, c); a5 = FMADD(a5, m, c);                 \
        a6 = FMADD(a6, m, c); a7 = FMADD(a7, m, c); a8 = FMADD(a8, m, c);                 \
        a9 = FMADD(a9, m, c); a10 = FMADD(a10, m, c); a11 = FMADD(a11, m, c);             \
    }                                                                                     \
    a0 = ADD(ADD(ADD(a0, a1), ADD(a2, a3)), ADD(ADD(a4, a5), ADD(a6, a7)));               \
    a0 = ADD(a0, ADD(ADD(a8, a9), ADD(a10, a11)))

#ifdef BENCH_X86
__attribute__((target("avx512f"))) static float fma_loop_512(long iters)
{
    float out[16];
    FMA_LOOP(__m512, _mm512_set1_ps, _mm512_fmadd_ps, _mm512_add_ps);
    _mm512_storeu_ps(out, a0);
    return out[0];
}

__attribute__((target("avx2,fma"))) static float fma_loop_256(long iters)
{
    float out[8];
    FMA_LOOP(__m256, _mm256_set1_ps, _mm256_fmadd_ps, _mm256_add_ps);
    _mm256_storeu_ps(out, a0);
    return out[0];
}

__attribute__((target("fma"))) static float fma_loop_128(long iters)
{
    float out[4];
    FMA_LOOP(__m128, _mm_set1_ps, _mm_fmadd_ps, _mm_add_ps);
    _mm_storeu_ps(out, a0);
    return out[0];
}

static int width_supported(int bits)
{
    __builtin_cpu_init();
    if (bits == 512) return __builtin_cpu_supports("avx512f");
    if (bits == 256) return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    return __builtin_cpu_supports("fma");
}

static float fma_loop(int bits, long iters)
{
    return bits == 512 ? fma_loop_512(iters) : bits == 256 ? fma_loop_256(iters) : fma_loop_128(iters);
}
#elif defined(BENCH_NEON)
static float32x4_t neon_fma(float32x4_t a, float32x4_t m, float32x4_t c) { return vfmaq_f32(c, a, m); }

static float fma_loop(int bits, long iters)
{
    FMA_LOOP(float32x4_t, vdupq_n_f32, neon_fma, vaddq_f32);
    (void)bits;
    return vgetq_lane_f32(a0, 0);
}

static int width_supported(int bits) { return bits == 128; }
#else
static float fma_loop(int bits, long iters) { (void)bits; (void)iters; return 0.0f; }
static int width_supported(int bits) { (void)bits; return 0; }
#endif

typedef struct fma_job {
    int bits;
    long iters;
    double cpu;           /* the thread's CPU seconds for the loop */
    volatile float sink;
} fma_job;

static void *fma_thread(void *arg)
{
    fma_job *j = (fma_job *)arg;
    double c0 = thread_cpu_s();
    j->sink = fma_loop(j->bits, j->iters);
    j->cpu = thread_cpu_s() - c0;
    return NULL;
}

/* GFLOP/s of `threads` copies of the loop running at once, each copy timed
   by its own thread's CPU clock (a register-only loop runs at the same speed
   whenever it runs, so other processes taking the cores do not lower the
   figure; on this machine kind one thread is one core) and summed: best of
   5 runs of about 0.1 s each. */
static double fma_peak(int bits, int threads)
{
    enum { MAXT = 8 };
    pthread_t th[MAXT];
    fma_job job[MAXT];
    long iters = 1000;
    double best = 0.0;
    int k, i;
    for (;;) {                                          /* calibrate to about 0.1 s */
        job[0].bits = bits;
        job[0].iters = iters;
        fma_thread(&job[0]);
        if (job[0].cpu > 0.02 || iters > (1L << 40)) break;
        iters *= 2;
    }
    iters *= 5;
    for (k = 0; k < 5; k++) {
        double g = 0.0;
        for (i = 0; i < threads; i++) {
            job[i].bits = bits;
            job[i].iters = iters;
            if (i > 0 && pthread_create(&th[i], NULL, fma_thread, &job[i]) != 0) {
                fprintf(stderr, "bench_dfn: pthread_create failed\n");
                exit(1);
            }
        }
        fma_thread(&job[0]);
        for (i = 1; i < threads; i++) pthread_join(th[i], NULL);
        for (i = 0; i < threads; i++)
            g += job[i].cpu > 0 ? (double)iters * FMA_CHAINS * (bits / 32) * 2.0 / job[i].cpu * 1e-9 : 0.0;
        best = g > best ? g : best;
    }
    return best;
}

/* ------------------------------------------------------------------------- */
/*  --check-*: the networks' function, for bench_torch.py                    */
/* ------------------------------------------------------------------------- */

static int write_blob(const char *path, uint32_t P, uint32_t N, uint32_t D, const float *params,
                      const float *x, const float *tf, const float *out)
{
    uint32_t hdr[3];
    FILE *f = fopen(path, "wb");
    if (!f) { perror(path); return 1; }
    /* u32 P, u32 N, u32 D, f32 params[P], f32 x[N][D], f32 t[N], f32 out[N][D] */
    hdr[0] = P; hdr[1] = N; hdr[2] = D;
    fwrite(hdr, sizeof hdr, 1, f);
    fwrite(params, sizeof(float), P, f);
    fwrite(x, sizeof(float), (size_t)N * D, f);
    fwrite(tf, sizeof(float), N, f);
    fwrite(out, sizeof(float), (size_t)N * D, f);
    if (fclose(f) != 0) { perror(path); return 1; }
    printf("wrote %s: %lu parameters, %u inputs and outputs of %u values\n", path, (unsigned long)P, N, D);
    return 0;
}

static int write_check_mlp(const char *path, const dfn_mlp *m)
{
    enum { N = 16 };
    float x[N * 2], out[N * 2], tf[N];
    int t[N], i, rc;
    size_t bytes = dfn_mlp_forward_size(&m->cfg, N);
    void *work = xmalloc(bytes);
    dfn_rng rng;
    dfn_result r;
    dfn_rng_seed(&rng, 3, 0);
    dfn_rng_normal_fill(&rng, x, N * 2);
    for (i = 0; i < N; i++) t[i] = 1 + (int)dfn_rng_below(&rng, 1000);
    t[0] = 1; t[1] = 1000;
    for (i = 0; i < N; i++) tf[i] = (float)t[i];
    if ((r = dfn_mlp_forward(m, out, x, t, NULL, N, work, bytes)) != DFN_OK) die("dfn_mlp_forward", r);
    rc = write_blob(path, (uint32_t)m->lay.count, N, 2, m->params, x, tf, out);
    free(work);
    return rc;
}

/* The U-Net with every parameter random (the zero-initialized convs too, so
   every path of the network shows in the outputs). */
static int write_check_unet(const char *path, const dfn_unet_config *uc)
{
    enum { N = 4 };
    dfn_unet u;
    dfn_rng rng;
    dfn_result r;
    size_t P = dfn_unet_num_params(uc), bytes = dfn_unet_forward_size(uc, N), i;
    int D = dfn_unet_dim(uc), t[N] = {1, 1000, 37, 500}, rc, k;
    float *params = (float *)xmalloc(P * sizeof(float)), *x, *out, tf[N];
    void *work = xmalloc(bytes);
    x = (float *)xmalloc((size_t)N * D * sizeof(float));
    out = (float *)xmalloc((size_t)N * D * sizeof(float));
    if ((r = dfn_unet_init(&u, uc, params)) != DFN_OK) die("dfn_unet_init", r);
    dfn_rng_seed(&rng, 5, 0);
    for (i = 0; i < P; i++) params[i] = 0.2f * (dfn_rng_uniform(&rng) - 0.5f);
    dfn_rng_normal_fill(&rng, x, (size_t)N * D);
    for (k = 0; k < N; k++) tf[k] = (float)t[k];
    if ((r = dfn_unet_forward(&u, out, x, NULL, t, NULL, N, work, bytes)) != DFN_OK) die("dfn_unet_forward", r);
    rc = write_blob(path, (uint32_t)P, N, (uint32_t)D, params, x, tf, out);
    free(params);
    free(work);
    free(x);
    free(out);
    return rc;
}

/* ------------------------------------------------------------------------- */

static long max_rss_kb(void)
{
    struct rusage ru;
    return getrusage(RUSAGE_SELF, &ru) == 0 ? ru.ru_maxrss : 0;
}

static const char *KEYS[] = {"mlp_train_b256", "mlp_train_b1024", "mlp_ddim50", "mlp_ddpm1000",
                             "unet_train_b64", "unet_ddim50", "mlp_euler50", "mlp_dpmpp2m50",
                             "mlp_dpmpp3m50", "mlp_dpmpp2m_sde50"};

/* The few-step solvers (MATH.md section 11) at 50 steps on the DDIM-50
   points: their step cost next to DDIM's (the network's evaluations being
   the same, what differs is each solver's own arithmetic). */
static const struct {
    const char *key, *name;
    dfn_sampler_kind kind;
} SOLVERS[] = {{"mlp_euler50", "Euler-50", DFN_SAMPLER_EULER},
               {"mlp_dpmpp2m50", "DPM-Solver++(2M)-50", DFN_SAMPLER_DPMPP_2M},
               {"mlp_dpmpp3m50", "DPM-Solver++(3M)-50", DFN_SAMPLER_DPMPP_3M},
               {"mlp_dpmpp2m_sde50", "SDE-DPM-Solver++(2M)-50", DFN_SAMPLER_DPMPP_2M_SDE}};

static int wanted(const char *only, const char *key) { return !only || !strcmp(only, key); }

int main(int argc, char **argv)
{
    dfn_mlp_config mc = dfn_mlp_config_default(2);
    dfn_unet_config uc = unet_config();
    dfn_schedule_config scfg = dfn_schedule_config_default(DFN_SCHEDULE_LINEAR, 1000);
    dfn_train_config tc = dfn_train_config_default();
    dfn_schedule s;
    dfn_mlp m;
    dfn_unet u;
    dfn_rng rng;
    dfn_result r;
    result res[16];
    unet_count cnt;
    const char *json = NULL, *check_mlp = NULL, *check_unet = NULL, *only = NULL;
    float *params, *uparams;
    int quick = 0, peak = 0, split = 0, threads = 1, i, nres = 0, ddpm_n, known = 0;
    double t_start = now_s(), peaks[3][2] = {{0, 0}, {0, 0}}, mem_mlp_train, mem_unet_train;
    static const int widths[3] = {128, 256, 512};

    memset(res, 0, sizeof res);
    for (i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--quick")) quick = 1;
        else if (!strcmp(argv[i], "--peak")) peak = 1;
        else if (!strcmp(argv[i], "--split")) split = 1;
        else if (!strcmp(argv[i], "--threads") && i + 1 < argc) threads = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--json") && i + 1 < argc) json = argv[++i];
        else if (!strcmp(argv[i], "--check-mlp") && i + 1 < argc) check_mlp = argv[++i];
        else if (!strcmp(argv[i], "--check-unet") && i + 1 < argc) check_unet = argv[++i];
        else if (!strcmp(argv[i], "--only") && i + 1 < argc) only = argv[++i];
        else {
            fprintf(stderr, "usage: %s [--threads N] [--quick] [--only NAME] [--peak] [--split] [--json FILE]\n"
                            "       [--check-mlp FILE] [--check-unet FILE]\n", argv[0]);
            return 2;
        }
    }
    for (i = 0; i < (int)(sizeof KEYS / sizeof KEYS[0]); i++) known |= only && !strcmp(only, KEYS[i]);
    if (only && !known) {
        fprintf(stderr, "bench_dfn: --only %s: no such measurement\n", only);
        return 2;
    }
    if (threads < 1 || threads > 8) {
        fprintf(stderr, "bench_dfn: --threads must be 1..8\n");
        return 2;
    }

    if (peak) {
        FILE *f = json ? fopen(json, "w") : NULL;
        if (json && !f) { perror(json); return 1; }
        printf("FMA peak (register-resident loop, %d independent chains, per-thread CPU time, best of 5):\n",
               FMA_CHAINS);
        if (f) fprintf(f, "{\n  \"impl\": \"peak\",\n");
        for (i = 0; i < 3; i++) {
            if (!width_supported(widths[i])) continue;
            peaks[i][0] = fma_peak(widths[i], 1);
            peaks[i][1] = fma_peak(widths[i], 2);
            printf("  %3d-bit FMA: %7.1f GFLOP/s on 1 thread, %7.1f on 2 threads\n", widths[i], peaks[i][0],
                   peaks[i][1]);
            if (f) fprintf(f, "  \"peak%d_1\": %.6g,\n  \"peak%d_2\": %.6g,\n", widths[i], peaks[i][0],
                           widths[i], peaks[i][1]);
        }
        if (f) {
            /* the width of the kernels dfn_simd_name reports */
            const char *simd = dfn_simd_name();
            int bits = !strcmp(simd, "avx512") ? 512 : !strcmp(simd, "avx2") ? 256 : 128;
            fprintf(f, "  \"simd\": \"%s\",\n  \"simd_bits\": %d\n}\n", simd, bits);
            if (fclose(f) != 0) { perror(json); return 1; }
        }
        return 0;
    }

    if ((r = dfn_schedule_alloc(&s, &scfg, NULL)) != DFN_OK) die("dfn_schedule_alloc", r);
    params = (float *)xmalloc(dfn_mlp_num_params(&mc) * sizeof(float));
    if ((r = dfn_mlp_init(&m, &mc, params)) != DFN_OK) die("dfn_mlp_init", r);
    dfn_rng_seed(&rng, 1, 0);
    dfn_mlp_init_weights(&m, &rng);
    uparams = (float *)xmalloc(dfn_unet_num_params(&uc) * sizeof(float));
    if ((r = dfn_unet_init(&u, &uc, uparams)) != DFN_OK) die("dfn_unet_init", r);
    dfn_unet_init_weights(&u, &rng);
    cnt = unet_count_of(&uc);
    if (cnt.params != (double)dfn_unet_num_params(&uc)) {
        fprintf(stderr, "bench_dfn: the FLOP count's walk of the U-Net finds %.0f parameters, the library %lu:"
                        " the architecture changed, update unet_count_of\n",
                cnt.params, (unsigned long)dfn_unet_num_params(&uc));
        return 1;
    }
    if (check_mlp && write_check_mlp(check_mlp, &m)) return 1;
    if (check_unet && write_check_unet(check_unet, &uc)) return 1;
    if (check_mlp || check_unet) return 0;

    if (split) {
        size_t bytes = dfn_parallel_scratch_size(2);
        void *scratch = xmalloc(bytes);         /* freed at exit */
        if ((r = dfn_set_parallel(split_run, NULL, 2, scratch, bytes)) != DFN_OK) die("dfn_set_parallel", r);
        printf("--split: 2 workers installed, every task run on this thread; the time in the split work\n"
               "         bounds the 2-thread speed-up at 1 / ((1 - p) + p / 2)\n");
    } else if (threads > 1 && (r = dfn_pthreads_start(threads)) != DFN_OK) {
        die("dfn_pthreads_start", r);
    }

    printf("diffusion.h %d.%d.%d, kernels %s, %d thread(s)%s\n", DFN_VERSION_MAJOR, DFN_VERSION_MINOR,
           DFN_VERSION_PATCH, dfn_simd_name(), dfn_parallel_threads(),
           threads > 1 ? " (dfn_pthreads_start)" : "");
    printf("  MLP    dfn_mlp_config_default(2): input %lu, hidden %d, %d residual blocks, GELU; %lu parameters\n",
           (unsigned long)m.lay.in_dim, mc.hidden, mc.blocks, (unsigned long)dfn_mlp_num_params(&mc));
    printf("  U-Net  28x28x1, base %d, time_dim %d, groups %d, channels %d/%d/%d, attention at 7x7 + middle;"
           " %lu parameters\n", uc.base_channels, uc.time_dim, uc.groups, uc.base_channels * uc.mult[0],
           uc.base_channels * uc.mult[1], uc.base_channels * uc.mult[2], (unsigned long)dfn_unet_num_params(&uc));
    printf("         forward GEMM MFLOP per image %.1f (convs %.1f, attention %.1f, other dense %.2f)\n",
           2e-6 * cnt.fwd, 2e-6 * cnt.conv, 2e-6 * cnt.attn, 2e-6 * (cnt.proj + cnt.dense));
    printf("  linear schedule T = 1000; trainer defaults (Adam lr %g, EMA 0.999)\n", (double)tc.lr);
    fflush(stdout);

    /* --split: one short run of each (a share of CPU time needs no more) */
    ddpm_n = split ? 1000 : quick ? 2000 : N_SAMPLES;
    if (wanted(only, "mlp_train_b256"))
        bench_mlp_train(&res[nres++], "mlp_train_b256", &mc, &s, 256, split ? 5 : 20, quick || split ? 40 : 100,
                        split ? 1 : quick ? 3 : 5);
    if (wanted(only, "mlp_train_b1024"))
        bench_mlp_train(&res[nres++], "mlp_train_b1024", &mc, &s, 1024, split ? 2 : 5, quick || split ? 10 : 30,
                        split ? 1 : quick ? 3 : 5);
    if (wanted(only, "mlp_ddim50"))
        bench_mlp_sample(&res[nres++], "mlp_ddim50", "DDIM-50", &m, &s, DFN_SAMPLER_DDIM, 50, N_SAMPLES,
                         quick || split ? 1 : 3, !split);
    for (i = 0; i < (int)(sizeof SOLVERS / sizeof SOLVERS[0]); i++)
        if (!split && wanted(only, SOLVERS[i].key))
            bench_mlp_sample(&res[nres++], SOLVERS[i].key, SOLVERS[i].name, &m, &s, SOLVERS[i].kind, 50, N_SAMPLES,
                             quick ? 1 : 3, 1);
    if (wanted(only, "mlp_ddpm1000"))
        bench_mlp_sample(&res[nres++], "mlp_ddpm1000", "DDPM-1000", &m, &s, DFN_SAMPLER_DDPM, 1000, ddpm_n,
                         1, 0);
    if (wanted(only, "unet_train_b64"))
        bench_unet_train(&res[nres++], "unet_train_b64", &uc, &s, UNET_BATCH, 1, quick || split ? 2 : 3,
                         quick || split ? 1 : 3);
    if (wanted(only, "unet_ddim50"))
        bench_unet_sample(&res[nres++], "unet_ddim50", &u, &s, UNET_IMAGES, split ? 10 : 50, quick || split ? 1 : 2);

    printf("\n%-32s %11s %-10s %8s\n", "measurement", "value", "unit", "GFLOP/s");
    for (i = 0; i < nres; i++) {
        printf("%-32s %11.2f %-10s %8.1f  %s, by CPU time %.2f", res[i].label, res[i].rate, res[i].unit, res[i].gflops,
               res[i].detail, res[i].cpu_rate);
        if (res[i].gemm_alone > 0) printf("; its GEMMs alone %.1f GFLOP/s", res[i].gemm_alone);
        if (split)
            printf("; split work %.0f%% of the time: 2 threads at most %.2fx", 100.0 * res[i].split,
                   1.0 / ((1.0 - res[i].split) + res[i].split / 2.0));
        printf("\n");
    }
    {
        /* a solver step over a DDIM step: the rates' ratio, same run */
        double ddim = 0.0;
        int j;
        for (i = 0; i < nres; i++)
            if (!strcmp(res[i].key, "mlp_ddim50")) ddim = res[i].rate;
        for (i = 0; i < nres && ddim > 0.0; i++)
            for (j = 0; j < (int)(sizeof SOLVERS / sizeof SOLVERS[0]); j++)
                if (!strcmp(res[i].key, SOLVERS[j].key))
                    printf("step cost of %s over DDIM-50's: %.3fx\n", SOLVERS[j].name, ddim / res[i].rate);
    }

    /* The library's blocks: trainer (parameters, gradients, Adam moments,
       EMA, activations, GEMM scratch), forward workspace, worker scratch. */
    tc.batch = 1024;
    mem_mlp_train = (double)dfn_trainer_size(&mc, &tc) + (double)dfn_mlp_num_params(&mc) * sizeof(float);
    tc.batch = UNET_BATCH;
    mem_unet_train = (double)dfn_trainer_size_unet(&uc, &tc) + (double)dfn_unet_num_params(&uc) * sizeof(float);
    printf("memory: MLP trainer (batch 1024) + weights %.2f MB, sampling workspace (%d points) %.2f MB;\n"
           "        U-Net trainer (batch %d) + weights %.2f MB, sampling workspace (%d images) %.2f MB;\n"
           "        worker scratch %.2f MB; this process's max RSS %.1f MB\n",
           mem_mlp_train / 1e6, CHUNK, dfn_mlp_forward_size(&mc, CHUNK) / 1e6, UNET_BATCH, mem_unet_train / 1e6,
           UNET_IMAGES, dfn_unet_forward_size(&uc, UNET_IMAGES) / 1e6,
           dfn_parallel_scratch_size(threads) / 1e6, max_rss_kb() / 1e3);
    printf("(total %.1f s)\n", now_s() - t_start);

    if (json) {
        FILE *f = fopen(json, "w");
        if (!f) { perror(json); return 1; }
        fprintf(f, "{\n");
        fprintf(f, "  \"impl\": \"diffusion.h %d.%d.%d\",\n", DFN_VERSION_MAJOR, DFN_VERSION_MINOR,
                DFN_VERSION_PATCH);
        fprintf(f, "  \"simd\": \"%s\",\n", dfn_simd_name());
        fprintf(f, "  \"threads\": %d,\n", dfn_parallel_threads());
        fprintf(f, "  \"params_mlp\": %lu,\n", (unsigned long)dfn_mlp_num_params(&mc));
        fprintf(f, "  \"params_unet\": %lu,\n", (unsigned long)dfn_unet_num_params(&uc));
        fprintf(f, "  \"mlp_ddim50_n\": %d,\n", N_SAMPLES);
        fprintf(f, "  \"mlp_ddpm1000_n\": %d,\n", ddpm_n);
        fprintf(f, "  \"unet_ddim50_n\": %d,\n", UNET_IMAGES);
        fprintf(f, "  \"mem_mlp_train\": %.0f,\n", mem_mlp_train);
        fprintf(f, "  \"mem_mlp_sample\": %lu,\n", (unsigned long)dfn_mlp_forward_size(&mc, CHUNK));
        fprintf(f, "  \"mem_unet_train\": %.0f,\n", mem_unet_train);
        fprintf(f, "  \"mem_unet_sample\": %lu,\n", (unsigned long)dfn_unet_forward_size(&uc, UNET_IMAGES));
        fprintf(f, "  \"mem_scratch\": %lu,\n", (unsigned long)dfn_parallel_scratch_size(threads));
        fprintf(f, "  \"maxrss\": %ld,\n", max_rss_kb() * 1000L);
        for (i = 0; i < nres; i++) {
            fprintf(f, "  \"%s_rate\": %.6g,\n", res[i].key, res[i].rate);
            fprintf(f, "  \"%s_gflops\": %.6g,\n", res[i].key, res[i].gflops);
            fprintf(f, "  \"%s_cpurate\": %.6g,\n", res[i].key, res[i].cpu_rate);
            if (split) fprintf(f, "  \"%s_split\": %.6g,\n", res[i].key, res[i].split);
            if (res[i].gemm_alone > 0) fprintf(f, "  \"%s_gemmalone\": %.6g,\n", res[i].key, res[i].gemm_alone);
        }
        fprintf(f, "  \"seconds\": %.1f\n}\n", now_s() - t_start);
        if (fclose(f) != 0) { perror(json); return 1; }
    }
    if (split) dfn_set_parallel(NULL, NULL, 1, NULL, 0);
    else if (threads > 1) dfn_pthreads_stop();
    free(params);
    free(uparams);
    dfn_schedule_free(&s, NULL);
    return 0;
}
