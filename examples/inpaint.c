/* inpaint.c - fix one coordinate, sample the other: inpainting in 2D.

   The data are the 8 Gaussians. We fix x = v for a few values v and ask the
   diffusion model for y, i.e. for draws of p(y | x = v). For this mixture
   that conditional is known in closed form,

       p(y | x = v) = sum_k w_k(v) N(y; mu_k,y, s^2),   w_k(v) ~ N(v; mu_k,x, s^2)

   so the example can say how close the samples are: energy distance
   (MATH.md section 10) between the sampled y and exact draws, beside the
   noise floor (two exact draws).

   How (RePaint, Lugmayr et al. 2022): after every reverse step the known
   coordinate is replaced by the forward-noised known value q(x_t | x_0)
   (section 1), so the model fills in the unknown one consistently. Plain
   replacement is biased when the coordinates depend on each other;
   RePaint's resampling jumps (go back up `jump` steps by re-noising, run
   them again, `resamplings` times) reduce that bias.

   The noise predictor is the mixture's exact one (section 9) by default, so
   what you see is the inpainting algorithm alone; --train N trains an MLP
   for N steps and inpaints with it instead.

   Build and run from the repository root:  make inpaint   (or ./build/inpaint --help)
*/
#define DIFFUSION_IMPLEMENTATION
#include "diffusion.h"
#define EX_NAME "inpaint"
#include "common.h"
#include "plot.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define NV 4
static const float vs[NV] = { 0.0f, 0.5f, 0.98f, 1.39f };   /* the fixed x values */

static void usage(FILE *f)
{
    fprintf(f,
        "usage: inpaint [options]\n"
        "  --n N            samples per fixed value (default 500)\n"
        "  --jump J         RePaint jump length in steps (default 10)\n"
        "  --resample R     passes through each jump (default 10; 1 = plain replacement only)\n"
        "  --train N        inpaint with an MLP trained N steps instead of the exact predictor\n"
        "  --seed S         random seed (default 1)\n"
        "  --out FILE.svg   data and inpainted samples (default inpaint.svg)\n"
        "  --help           this text\n");
}

static float means[16], stds[8], weights[8];
static dfn_gmm eight_gaussians(void)
{
    dfn_gmm g;
    int k;
    for (k = 0; k < 8; k++) {
        means[2 * k] = (float)(DFN_DATA2D_GAUSSIANS8_RADIUS * cos(k * 3.14159265358979 / 4));
        means[2 * k + 1] = (float)(DFN_DATA2D_GAUSSIANS8_RADIUS * sin(k * 3.14159265358979 / 4));
        stds[k] = DFN_DATA2D_GAUSSIANS8_STD;
        weights[k] = 1.0f;
    }
    g.k = 8; g.dim = 2; g.weights = weights; g.means = means; g.stds = stds;
    return g;
}

/* n exact draws of p(y | x = v) into y: component k with weight w_k(v),
   then y = mu_k,y + s z. */
static void exact_conditional(dfn_rng *rng, float v, float *y, int n)
{
    double w[8], total = 0, s = DFN_DATA2D_GAUSSIANS8_STD;
    int i, k;
    for (k = 0; k < 8; k++) total += w[k] = exp(-0.5 * (v - means[2 * k]) * (v - means[2 * k]) / (s * s));
    for (i = 0; i < n; i++) {
        double u = dfn_rng_uniform(rng) * total, acc = 0;
        for (k = 0; k < 7; k++) if (u < (acc += w[k])) break;
        y[i] = (float)(means[2 * k + 1] + s * dfn_rng_normal(rng));
    }
}

/* Inpaints n samples per fixed value: x known, y sampled. DDPM with T steps. */
static void inpaint(const dfn_schedule *s, dfn_predict_fn fn, void *user, int n, int jump, int resample,
                    float *x, dfn_rng *rng)
{
    dfn_sampler smp;
    dfn_sampler_config cfg = dfn_sampler_config_default(DFN_SAMPLER_DDPM, NV * n, 2, fn, user);
    float *known = (float *)malloc(sizeof(float) * NV * n * 2);
    unsigned char *mask = (unsigned char *)malloc((size_t)NV * n * 2);
    int i;
    if (!known || !mask) exit(1);
    for (i = 0; i < NV * n; i++) {
        known[2 * i] = vs[i / n];   /* x is known ... */
        known[2 * i + 1] = 0.0f;
        mask[2 * i] = 1;
        mask[2 * i + 1] = 0;        /* ... y is not */
    }
    cfg.known = known;
    cfg.known_mask = mask;
    cfg.resample_jump = resample > 1 ? jump : 0;
    cfg.resample_count = resample;
    ex_require(dfn_sampler_alloc(&smp, &cfg, s, NULL), "sampler");
    ex_require(dfn_sampler_run(&smp, x, NULL, rng), "sampling");
    dfn_sampler_free(&smp, NULL);
    free(known);
    free(mask);
}

/* Per fixed value: ED^2 of the sampled y against exact draws, and the floor. */
static void report(const char *name, const float *x, int n, dfn_rng *rng)
{
    float *y = (float *)malloc(sizeof(float) * n), *e1 = (float *)malloc(sizeof(float) * n),
          *e2 = (float *)malloc(sizeof(float) * n);
    int j, i, exact = 1;
    if (!y || !e1 || !e2) exit(1);
    printf("  %s\n", name);
    for (j = 0; j < NV; j++) {
        double ed, floor, mabs = 0, eabs = 0;
        for (i = 0; i < n; i++) {
            y[i] = x[2 * (j * n + i) + 1];
            exact &= x[2 * (j * n + i)] == vs[j];
            mabs += fabs(y[i]);
        }
        exact_conditional(rng, vs[j], e1, n);
        exact_conditional(rng, vs[j], e2, n);
        for (i = 0; i < n; i++) eabs += fabs(e1[i]);
        ex_require(dfn_energy_distance_unbiased(&ed, y, n, e1, n, 1), "energy distance");
        ex_require(dfn_energy_distance_unbiased(&floor, e2, n, e1, n, 1), "energy distance");
        printf("    x = %4.2f:  mean |y| %.3f (exact draws %.3f)   ED^2 %8.5f  (floor %8.5f)\n", vs[j], mabs / n,
               eabs / n, ed, floor);
    }
    printf("    known x values kept exactly: %s\n", exact ? "yes" : "NO");
    free(y); free(e1); free(e2);
}

int main(int argc, char **argv)
{
    const char *out = "inpaint.svg";
    long n = 500, jump = 10, resample = 10, train = 0, seed = 1;
    dfn_gmm g = eight_gaussians();
    dfn_gmm_predictor exact;
    dfn_schedule sched;
    dfn_schedule_config sc;
    dfn_mlp model;
    dfn_trainer tr;
    dfn_mlp_predictor mp;
    dfn_predict_fn fn = dfn_gmm_predict;
    void *user = &exact;
    dfn_rng rng;
    float *x, *data;
    int i, T;

    for (i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        long *num = NULL, lo = 1, hi = 100000;
        if (!strcmp(a, "--help")) { usage(stdout); return 0; }
        if (!v) { fprintf(stderr, "inpaint: %s needs a value\n", a); return 1; }
        i++;
        if (!strcmp(a, "--out")) out = v;
        else if (!strcmp(a, "--n")) num = &n;
        else if (!strcmp(a, "--jump")) { num = &jump; hi = 250; }
        else if (!strcmp(a, "--resample")) { num = &resample; hi = 100; }
        else if (!strcmp(a, "--train")) { num = &train; lo = 0; hi = 10000000; }
        else if (!strcmp(a, "--seed")) { num = &seed; lo = 0; hi = 2147483647; }
        else { fprintf(stderr, "inpaint: unknown option %s\n", a); usage(stderr); return 1; }
        if (num && (*num = ex_number(v, lo, hi)) < 0) { fprintf(stderr, "inpaint: bad value '%s' for %s\n", v, a); return 1; }
    }
    dfn_rng_seed(&rng, (uint64_t)seed, 0);
    /* RePaint's setting: T = 250 steps of DDPM */
    T = 250;
    sc = dfn_schedule_config_default(DFN_SCHEDULE_LINEAR, T);
    ex_require(dfn_schedule_alloc(&sched, &sc, NULL), "schedule");
    exact.gmm = &g;
    exact.schedule = &sched;
    if (train > 0) {
        dfn_mlp_config mc = dfn_mlp_config_default(2);
        dfn_train_config tc = dfn_train_config_default();
        float *params, *batch;
        long k;
        mc.hidden = 64; mc.blocks = 2;
        tc.lr = 3e-3f; tc.warmup_steps = 100; tc.total_steps = (int)train;
        params = (float *)malloc(dfn_mlp_num_params(&mc) * sizeof(float));
        batch = (float *)malloc(sizeof(float) * tc.batch * 2);
        if (!params || !batch) return 1;
        ex_require(dfn_mlp_init(&model, &mc, params), "model");
        ex_require(dfn_mlp_init_weights(&model, &rng), "weights");
        ex_require(dfn_trainer_alloc(&tr, &model, &sched, &tc, NULL), "trainer");
        printf("training an MLP on the 8 Gaussians for %ld steps (T = %d)...\n", train, T);
        for (k = 0; k < train; k++) {
            ex_require(dfn_data2d_sample(DFN_DATA2D_GAUSSIANS8, &rng, batch, tc.batch), "data");
            ex_require(dfn_train_step(&tr, batch, NULL, &rng, NULL), "training step");
        }
        mp.model = &tr.ema_model;
        mp.work_bytes = dfn_mlp_forward_size(&mc, 1024);
        mp.work = malloc(mp.work_bytes);
        if (!mp.work) return 1;
        fn = dfn_mlp_predict;
        user = &mp;
        free(batch);
    }
    x = (float *)malloc(sizeof(float) * NV * n * 2);
    data = (float *)malloc(sizeof(float) * NV * n * 2);
    if (!x || !data) return 1;

    printf("inpainting y given x = v with DDPM-%d and the %s, %ld samples per v:\n", T,
           train > 0 ? "trained MLP" : "exact mixture predictor", n);
    inpaint(&sched, fn, user, (int)n, (int)jump, 1, x, &rng);
    report("plain replacement (no resampling):", x, (int)n, &rng);
    if (resample > 1) {
        char name[96];
        inpaint(&sched, fn, user, (int)n, (int)jump, (int)resample, x, &rng);
        snprintf(name, sizeof name, "RePaint, jump %ld, %ld resamplings:", jump, resample);
        report(name, x, (int)n, &rng);
    }

    ex_require(dfn_data2d_sample(DFN_DATA2D_GAUSSIANS8, &rng, data, NV * (int)n), "data");
    printf("\n");
    plot_density_pair(stdout, "data", data, NV * (int)n, "inpainted (x fixed)", x, NV * (int)n, -2.2f, 2.2f, 44, 22);
    if (plot_svg_scatter(out, "Inpainting: y sampled for fixed x = 0, 0.5, 0.98, 1.39", data, NV * (int)n, "data",
                         x, NV * (int)n, "inpainted", -2.2f, 2.2f) == 0)
        printf("wrote %s\n", out);
    else
        fprintf(stderr, "inpaint: could not write %s\n", out);
    if (train > 0) { free(mp.work); free(model.params); dfn_trainer_free(&tr, NULL); }
    free(x); free(data);
    dfn_schedule_free(&sched, NULL);
    return 0;
}
