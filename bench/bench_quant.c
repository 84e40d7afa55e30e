/* bench_quant: what the small weight formats (MATH.md section 13) cost in
   sample quality. On each built-in 2D set: train the default MLP (the
   demo's model and settings), store its EMA weights as fp16 and as int8
   (dfn_qmlp_quantize), and sample 10,000 points with the default few-step
   sampler (DPM-Solver++(2M), logSNR, 20 NFE) through the float path and
   through dfn_qmlp_forward reading each stored form, all from the same
   x_T. Each is compared with fresh data (ED^2 and MMD^2 at bandwidth 0.05,
   section 10, the unbiased estimates), next to the float model sampled from another x_T (how much
   the figures move with the draw alone) and the noise floor (data against
   data).

     ./build/bench_quant [--steps N] [--n N] [--sets a,b,...] [--md FILE]

   Build: make bench-quant (writes build/bench_quant.md). */
#define DIFFUSION_IMPLEMENTATION
#include "diffusion.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static void need(dfn_result r, const char *what)
{
    if (r != DFN_OK) {
        fprintf(stderr, "bench_quant: %s: %s\n", what, dfn_result_string(r));
        exit(1);
    }
}

static void *xmalloc(size_t n)
{
    void *p = malloc(n ? n : 1);
    if (!p) { fprintf(stderr, "bench_quant: out of memory\n"); exit(1); }
    return p;
}

/* DPM-Solver++(2M), logSNR, 20 steps from the x_T of seed `seed`. */
static void sample(dfn_predict_fn fn, void *user, dfn_prediction pred, const dfn_schedule *s, int n,
                   uint64_t seed, float *x)
{
    dfn_sampler_config cfg = dfn_sampler_config_default(DFN_SAMPLER_DPMPP_2M, n, 2, fn, user);
    dfn_sampler smp;
    dfn_rng rng;
    cfg.prediction = pred;
    cfg.steps = 20;
    cfg.spacing = DFN_SPACING_LOGSNR;
    dfn_rng_seed(&rng, seed, 77);
    need(dfn_sampler_alloc(&smp, &cfg, s, NULL), "sampler");
    need(dfn_sampler_run(&smp, x, NULL, &rng), "sampling");
    dfn_sampler_free(&smp, NULL);
}

static void measure(const float *x, const float *y, int n, double *ed, double *mmd)
{
    need(dfn_energy_distance_unbiased(ed, x, n, y, n, 2), "energy distance");
    need(dfn_mmd_rbf_unbiased(mmd, x, n, y, n, 2, 0.05), "MMD");
}

int main(int argc, char **argv)
{
    long steps = 6000, n = 10000;
    const char *sets = "moons,swissroll,8gaussians,checkerboard,circles,spiral", *md = NULL;
    FILE *out = NULL;
    char list[256], *name;
    int a;
    for (a = 1; a + 1 < argc; a += 2) {
        if (!strcmp(argv[a], "--steps")) steps = atol(argv[a + 1]);
        else if (!strcmp(argv[a], "--n")) n = atol(argv[a + 1]);
        else if (!strcmp(argv[a], "--sets")) sets = argv[a + 1];
        else if (!strcmp(argv[a], "--md")) md = argv[a + 1];
        else break;
    }
    if (a < argc || steps < 1 || n < 100 || n > 100000 || strlen(sets) >= sizeof list) {
        fprintf(stderr, "usage: bench_quant [--steps N] [--n N (100..100000)] [--sets a,b,...] [--md FILE]\n");
        return 2;
    }
    if (md && !(out = fopen(md, "w"))) { fprintf(stderr, "bench_quant: cannot write %s\n", md); return 1; }
    printf("default 2D MLP, %ld training steps per set; %ld samples, DPM-Solver++(2M) logSNR 20 NFE\n", steps, n);
    if (out) {
        fprintf(out, "| set | float | float, another x_T | fp16 | int8 | int8 / float | data vs data |\n");
        fprintf(out, "|---|--:|--:|--:|--:|--:|--:|\n");
    }
    strcpy(list, sets);
    for (name = strtok(list, ","); name; name = strtok(NULL, ",")) {
        dfn_data2d kind;
        dfn_schedule sched;
        dfn_schedule_config sc = dfn_schedule_config_default(DFN_SCHEDULE_LINEAR, 1000);
        dfn_mlp_config mc = dfn_mlp_config_default(2);
        dfn_mlp model;
        dfn_trainer tr;
        dfn_train_config tc = dfn_train_config_default();
        dfn_mlp_predictor fp;
        dfn_qmlp q[2];
        dfn_qmlp_predictor qp[2];
        dfn_qmlp_sizes sz[2];
        void *qw[2];
        float *qs[2], *qf[2];
        dfn_rng rng;
        float *params, *batch, *x[5], *ref;
        double ed[5], mmd[5];
        size_t fwb = dfn_mlp_forward_size(&mc, 512), qwb = dfn_qmlp_forward_size(&mc, 256);
        long s;
        int k;
        clock_t t0;
        static const dfn_weight_format fmt[2] = { DFN_WEIGHTS_F16, DFN_WEIGHTS_I8 };
        if (dfn_data2d_from_name(name, &kind) != DFN_OK) { fprintf(stderr, "unknown set %s\n", name); return 2; }
        dfn_rng_seed(&rng, 1, 0);
        need(dfn_schedule_alloc(&sched, &sc, NULL), "schedule");
        params = (float *)xmalloc(dfn_mlp_num_params(&mc) * sizeof(float));
        need(dfn_mlp_init(&model, &mc, params), "model");
        need(dfn_mlp_init_weights(&model, &rng), "weights");
        tc.total_steps = (int)steps;
        tc.warmup_steps = steps >= 1000 ? 100 : 0;
        need(dfn_trainer_alloc(&tr, &model, &sched, &tc, NULL), "trainer");
        batch = (float *)xmalloc(sizeof(float) * 2 * (size_t)tc.batch);
        t0 = clock();
        for (s = 1; s <= steps; s++) {
            float loss;
            need(dfn_data2d_sample(kind, &rng, batch, tc.batch), "data");
            need(dfn_train_step(&tr, batch, NULL, &rng, &loss), "training step");
            if (s % 500 == 0 || s == steps) { printf("\r%-12s step %5ld/%ld loss %.4f", name, s, steps, (double)loss); fflush(stdout); }
        }
        printf("  (%.0f s)\n", (double)(clock() - t0) / CLOCKS_PER_SEC);
        /* the stored forms of the EMA weights */
        for (k = 0; k < 2; k++) {
            need(dfn_qmlp_sizes_of(&mc, fmt[k], &sz[k]), "sizes");
            qw[k] = xmalloc(sz[k].weight_bytes);
            qs[k] = (float *)xmalloc(sizeof(float) * (sz[k].scales + 1));
            qf[k] = (float *)xmalloc(sizeof(float) * sz[k].floats);
            need(dfn_qmlp_quantize(&tr.ema_model, fmt[k], qw[k], qs[k], qf[k]), "quantize");
            need(dfn_qmlp_init(&q[k], &mc, fmt[k], qw[k], qs[k], qf[k]), "qmlp");
            qp[k].model = &q[k];
            qp[k].work = xmalloc(qwb);
            qp[k].work_bytes = qwb;
        }
        fp.model = &tr.ema_model;
        fp.work = xmalloc(fwb);
        fp.work_bytes = fwb;
        for (k = 0; k < 5; k++) x[k] = (float *)xmalloc(sizeof(float) * 2 * (size_t)n);
        ref = (float *)xmalloc(sizeof(float) * 2 * (size_t)n);
        sample(dfn_mlp_predict, &fp, mc.prediction, &sched, (int)n, 11, x[0]);
        sample(dfn_mlp_predict, &fp, mc.prediction, &sched, (int)n, 12, x[1]);
        sample(dfn_qmlp_predict, &qp[0], mc.prediction, &sched, (int)n, 11, x[2]);
        sample(dfn_qmlp_predict, &qp[1], mc.prediction, &sched, (int)n, 11, x[3]);
        need(dfn_data2d_sample(kind, &rng, ref, (int)n), "data");
        need(dfn_data2d_sample(kind, &rng, x[4], (int)n), "data");
        for (k = 0; k < 5; k++) measure(x[k], ref, (int)n, &ed[k], &mmd[k]);
        printf("  %-22s %10s %12s\n", "vs fresh data", "ED^2", "MMD^2(0.05)");
        {
            static const char *const rows[5] = { "float", "float, another x_T", "fp16", "int8", "data vs data" };
            for (k = 0; k < 5; k++) printf("  %-22s %10.5f %12.6f\n", rows[k], ed[k], mmd[k]);
        }
        printf("  int8 / float MMD^2: %.2f; weights %lu bytes float, %lu fp16, %lu int8 (+ %lu of scales)\n",
               mmd[3] / mmd[0], (unsigned long)(sz[0].weights * 4), (unsigned long)sz[0].weight_bytes,
               (unsigned long)sz[1].weight_bytes, (unsigned long)(sz[1].scales * 4));
        if (out)
            fprintf(out, "| %s | %.5f / %.2e | %.5f / %.2e | %.5f / %.2e | %.5f / %.2e | %.2f | %.5f / %.2e |\n", name,
                    ed[0], mmd[0], ed[1], mmd[1], ed[2], mmd[2], ed[3], mmd[3], mmd[3] / mmd[0], ed[4], mmd[4]);
        for (k = 0; k < 5; k++) free(x[k]);
        for (k = 0; k < 2; k++) { free(qw[k]); free(qs[k]); free(qf[k]); free(qp[k].work); }
        free(ref); free(fp.work); free(batch); free(params);
        dfn_trainer_free(&tr, NULL);
        dfn_schedule_free(&sched, NULL);
    }
    if (out) {
        fprintf(out, "\nEach cell: ED^2 / MMD^2(0.05) against fresh data, %ld samples; the float, fp16 and int8 "
                     "columns start from the same x_T.\n", n);
        if (fclose(out) != 0) { fprintf(stderr, "bench_quant: cannot write %s\n", md); return 1; }
        printf("wrote %s\n", md);
    }
    return 0;
}
