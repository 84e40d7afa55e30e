/* bench_mlp.c - throughput of diffusion.h's default MLP noise network.

   Measures, for dfn_mlp_config_default(2) (2D data; 32 sinusoidal input
   features per coordinate, time embedding 128, width 128, 3 residual blocks,
   GELU, eps-prediction) on a linear T = 1000 schedule:
     - training steps/s (dfn_train_step, default trainer: Adam lr 1e-3, EMA
       0.999) at batch 256 and 1024, with the achieved GFLOP/s of the GEMMs;
     - samples/s of DDIM-50 (trailing, eta 0) and DDPM-1000 (small variance)
       on 10,000 samples (dfn_mlp_predictor with a 1024-sample workspace).
   Medians of several timed repetitions after a warm-up, monotonic wall clock.
   bench/torch_mlp.py measures the same model in PyTorch; bench/bench.mk
   runs both (`make bench`) and bench/combine.awk prints the ratios.

   FLOP count (the GEMMs only, 1 multiply-add = 2 FLOPs): with layers
   (in, out) = (194, 128), 3 x (128, 128), (128, 2) and S = sum in * out,
     forward        2 B S
     training step  2 B S (forward) + 2 B S (dW) + 2 B (S - 194 * 128) (dX of
                    every layer but the first, whose input needs no gradient)
                    = 2 B (3 S - 194 * 128)
     sampling       2 n S per network evaluation.

   Usage: bench_mlp [--quick] [--only NAME] [--json FILE] [--check FILE]
     --quick       fewer repetitions, DDPM-1000 on 2,000 samples
     --only NAME   one measurement: train_b256, train_b1024, ddim50 or ddpm1000
                   (for profiling: perf record bench_mlp --only train_b256)
     --json FILE   also write the results as a flat JSON object (one key a
                   line; bench/combine.awk reads it)
     --check FILE  write the initial weights, a few inputs and the network's
                   outputs for them (float32, little-endian) and exit:
                   `torch_mlp.py --check FILE` verifies its model against them */

#define _POSIX_C_SOURCE 199309L
#define DIFFUSION_IMPLEMENTATION
#include "../diffusion.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define N_SAMPLES 10000
#define CHUNK 1024

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* Process CPU time over wall time since (c0, w0): below 1, other processes
   took the CPU during the measurement. */
static double cpu_per_wall(clock_t c0, double w0)
{
    double wall = now_s() - w0;
    return wall > 0.0 ? (double)(clock() - c0) / CLOCKS_PER_SEC / wall : 0.0;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double median(double *v, int n)
{
    qsort(v, (size_t)n, sizeof *v, cmp_double);
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

static void die(const char *what, dfn_result r)
{
    fprintf(stderr, "bench_mlp: %s: %s\n", what, dfn_result_string(r));
    exit(1);
}

typedef struct result {
    const char *key;       /* JSON key prefix                      */
    char  label[96];
    double rate;           /* steps/s or samples/s                  */
    const char *unit;
    double gflops;
    char  detail[128];
} result;

/* Sum over the layers of in * out. */
static double layer_macs(const dfn_mlp *m)
{
    double H = m->cfg.hidden;
    return (double)m->lay.in_dim * H + m->cfg.blocks * H * H + H * m->cfg.dim;
}

static double train_flops(const dfn_mlp *m, int B)
{
    return 2.0 * B * (3.0 * layer_macs(m) - (double)m->lay.in_dim * m->cfg.hidden);
}

static void bench_train(result *res, const char *key, const dfn_mlp_config *mc, const dfn_schedule *s,
                        int B, int warm, int steps, int reps)
{
    enum { POOL = 8 };
    dfn_mlp m;
    dfn_trainer tr;
    dfn_train_config tc = dfn_train_config_default();
    dfn_rng rng;
    dfn_result r;
    float *params, *data, loss = 0.0f;
    double times[16], w0;
    clock_t c0;
    int i, k;
    tc.batch = B;                                  /* Adam lr 1e-3, EMA 0.999: the defaults */
    params = (float *)malloc(dfn_mlp_num_params(mc) * sizeof(float));
    data = (float *)malloc((size_t)POOL * B * 2 * sizeof(float));
    if (!params || !data) { fprintf(stderr, "bench_mlp: out of memory\n"); exit(1); }
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
    c0 = clock();
    w0 = now_s();
    for (k = 0; k < reps; k++) {
        double t0 = now_s();
        for (i = 0; i < steps; i++)
            if ((r = dfn_train_step(&tr, data + (size_t)(i % POOL) * B * 2, NULL, &rng, &loss)) != DFN_OK)
                die("dfn_train_step", r);
        times[k] = (now_s() - t0) / steps;
    }
    res->key = key;
    snprintf(res->label, sizeof res->label, "train step, batch %d", B);
    res->rate = 1.0 / median(times, reps);
    res->unit = "steps/s";
    res->gflops = train_flops(&m, B) * res->rate * 1e-9;
    snprintf(res->detail, sizeof res->detail, "median of %d x %d steps, cpu/wall %.2f (loss %.3f)",
             reps, steps, cpu_per_wall(c0, w0), (double)loss);
    dfn_trainer_free(&tr, NULL);
    free(params);
    free(data);
}

/* Samples/s of one sampler on n samples: median of reps runs (after one
   warm-up run on CHUNK samples when warm). */
static void bench_sample(result *res, const char *key, const char *name, const dfn_mlp *m,
                         const dfn_schedule *s, dfn_sampler_kind kind, int steps, int n, int reps,
                         int warm)
{
    dfn_mlp_predictor p;
    dfn_sampler smp;
    dfn_sampler_config sc;
    dfn_rng rng;
    dfn_result r;
    float *x;
    double times[16], w0;
    clock_t c0;
    int k, evals;
    p.model = m;
    p.work_bytes = dfn_mlp_forward_size(&m->cfg, CHUNK);
    p.work = malloc(p.work_bytes);
    x = (float *)malloc((size_t)n * m->cfg.dim * sizeof(float));
    if (!p.work || !x) { fprintf(stderr, "bench_mlp: out of memory\n"); exit(1); }
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
    c0 = clock();
    w0 = now_s();
    for (k = 0; k < reps; k++) {
        double t0 = now_s();
        if ((r = dfn_sampler_run(&smp, x, NULL, &rng)) != DFN_OK) die("dfn_sampler_run", r);
        times[k] = now_s() - t0;
    }
    res->key = key;
    snprintf(res->label, sizeof res->label, "%s, %d samples", name, n);
    res->rate = n / median(times, reps);
    res->unit = "samples/s";
    res->gflops = 2.0 * layer_macs(m) * evals * res->rate * 1e-9;
    if (reps > 1)
        snprintf(res->detail, sizeof res->detail, "median of %d runs, cpu/wall %.2f", reps,
                 cpu_per_wall(c0, w0));
    else
        snprintf(res->detail, sizeof res->detail, "1 run, %.2f s, cpu/wall %.2f", times[0],
                 cpu_per_wall(c0, w0));
    dfn_sampler_free(&smp, NULL);
    free(p.work);
    free(x);
}

/* Weights, inputs and outputs for torch_mlp.py --check. */
static int write_check(const char *path, const dfn_mlp *m)
{
    enum { N = 16 };
    float x[N * 2], out[N * 2], tf[N];
    int t[N], i;
    size_t P = m->lay.count, bytes = dfn_mlp_forward_size(&m->cfg, N);
    void *work = malloc(bytes);
    uint32_t hdr[2];
    dfn_rng rng;
    dfn_result r;
    FILE *f;
    if (!work) return 1;
    dfn_rng_seed(&rng, 3, 0);
    dfn_rng_normal_fill(&rng, x, N * 2);
    for (i = 0; i < N; i++) { t[i] = 1 + (int)dfn_rng_below(&rng, 1000); tf[i] = (float)t[i]; }
    t[0] = 1; t[1] = 1000; tf[0] = 1.0f; tf[1] = 1000.0f;
    if ((r = dfn_mlp_forward(m, out, x, t, NULL, N, work, bytes)) != DFN_OK) die("dfn_mlp_forward", r);
    free(work);
    f = fopen(path, "wb");
    if (!f) { perror(path); return 1; }
    /* u32 P, u32 N, f32 params[P], f32 x[N][2], f32 t[N], f32 out[N][2] */
    hdr[0] = (uint32_t)P; hdr[1] = N;
    fwrite(hdr, sizeof hdr, 1, f);
    fwrite(m->params, sizeof(float), P, f);
    fwrite(x, sizeof(float), N * 2, f);
    fwrite(tf, sizeof(float), N, f);
    fwrite(out, sizeof(float), N * 2, f);
    if (fclose(f) != 0) { perror(path); return 1; }
    printf("wrote %s: %lu parameters, %d inputs and outputs\n", path, (unsigned long)P, N);
    return 0;
}

int main(int argc, char **argv)
{
    dfn_mlp_config mc = dfn_mlp_config_default(2);
    dfn_schedule_config scfg = dfn_schedule_config_default(DFN_SCHEDULE_LINEAR, 1000);
    dfn_schedule s;
    dfn_mlp m;
    dfn_rng rng;
    dfn_result r;
    result res[4];
    const char *json = NULL, *check = NULL, *only = NULL;
    float *params;
    int quick = 0, i, nres = 0, ddpm_n;
    double t_start = now_s();

    for (i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--quick")) quick = 1;
        else if (!strcmp(argv[i], "--json") && i + 1 < argc) json = argv[++i];
        else if (!strcmp(argv[i], "--check") && i + 1 < argc) check = argv[++i];
        else if (!strcmp(argv[i], "--only") && i + 1 < argc) only = argv[++i];
        else {
            fprintf(stderr, "usage: %s [--quick] [--only NAME] [--json FILE] [--check FILE]\n", argv[0]);
            return 2;
        }
    }
    if (only && strcmp(only, "train_b256") && strcmp(only, "train_b1024") && strcmp(only, "ddim50") &&
        strcmp(only, "ddpm1000")) {
        fprintf(stderr, "bench_mlp: --only %s: no such measurement\n", only);
        return 2;
    }
    if ((r = dfn_schedule_alloc(&s, &scfg, NULL)) != DFN_OK) die("dfn_schedule_alloc", r);
    params = (float *)malloc(dfn_mlp_num_params(&mc) * sizeof(float));
    if (!params) return 1;
    if ((r = dfn_mlp_init(&m, &mc, params)) != DFN_OK) die("dfn_mlp_init", r);
    dfn_rng_seed(&rng, 1, 0);
    dfn_mlp_init_weights(&m, &rng);
    if (check) return write_check(check, &m);

    printf("diffusion.h %d.%d.%d: default MLP, dfn_mlp_config_default(2)\n",
           DFN_VERSION_MAJOR, DFN_VERSION_MINOR, DFN_VERSION_PATCH);
    printf("  model    D=2, input %lu = x 2 + 2 x %d sinusoidal + time %d; hidden %d, %d residual blocks,\n"
           "           GELU (tanh), eps-prediction; %lu parameters\n",
           (unsigned long)m.lay.in_dim, mc.input_emb_dim, mc.time_dim, mc.hidden, mc.blocks,
           (unsigned long)dfn_mlp_num_params(&mc));
    printf("  schedule linear, T = %d; trainer defaults (Adam lr %g, EMA 0.999)\n", s.T,
           (double)dfn_train_config_default().lr);
    printf("  kernels  %s (dfn_simd_name), 1 thread (the library is single-threaded)\n", dfn_simd_name());
    printf("  FLOPs    GEMMs only, S = sum of in*out = %.0f: train step 2B(3S - %lu), "
           "sampling 2nS per step\n", layer_macs(&m), (unsigned long)(m.lay.in_dim * (size_t)mc.hidden));
    fflush(stdout);

    ddpm_n = quick ? 2000 : N_SAMPLES;
    if (!only || !strcmp(only, "train_b256"))
        bench_train(&res[nres++], "train_b256", &mc, &s, 256, 20, quick ? 40 : 150, quick ? 3 : 7);
    if (!only || !strcmp(only, "train_b1024"))
        bench_train(&res[nres++], "train_b1024", &mc, &s, 1024, 5, quick ? 10 : 40, quick ? 3 : 7);
    if (!only || !strcmp(only, "ddim50"))
        bench_sample(&res[nres++], "ddim50", "DDIM-50 sampling", &m, &s, DFN_SAMPLER_DDIM, 50,
                     N_SAMPLES, quick ? 1 : 3, 1);
    if (!only || !strcmp(only, "ddpm1000"))
        bench_sample(&res[nres++], "ddpm1000", "DDPM-1000 sampling", &m, &s, DFN_SAMPLER_DDPM, 1000,
                     ddpm_n, 1, 0);


    printf("\n%-36s %11s %-10s %8s\n", "measurement", "value", "unit", "GFLOP/s");
    for (i = 0; i < nres; i++)
        printf("%-36s %11.1f %-10s %8.1f  %s\n", res[i].label, res[i].rate, res[i].unit, res[i].gflops,
               res[i].detail);
    printf("(total %.1f s)\n", now_s() - t_start);

    if (json) {
        FILE *f = fopen(json, "w");
        if (!f) { perror(json); return 1; }
        fprintf(f, "{\n");
        fprintf(f, "  \"impl\": \"diffusion.h\",\n");
        fprintf(f, "  \"simd\": \"%s\",\n", dfn_simd_name());
        fprintf(f, "  \"threads\": 1,\n");
        fprintf(f, "  \"params\": %lu,\n", (unsigned long)dfn_mlp_num_params(&mc));
        fprintf(f, "  \"ddim50_n\": %d,\n", N_SAMPLES);
        fprintf(f, "  \"ddpm1000_n\": %d,\n", ddpm_n);
        for (i = 0; i < nres; i++) {
            fprintf(f, "  \"%s_rate\": %.6g,\n", res[i].key, res[i].rate);
            fprintf(f, "  \"%s_gflops\": %.6g%s\n", res[i].key, res[i].gflops, i + 1 < nres ? "," : "");
        }
        fprintf(f, "}\n");
        if (fclose(f) != 0) { perror(json); return 1; }
    }
    free(params);
    dfn_schedule_free(&s, NULL);
    return 0;
}
