/* cascade.c - a cascaded (coarse-to-fine) digit model: a base U-Net draws
   14x14 digits, a super-resolution U-Net turns them into 28x28 digits.

   1. Data: the MNIST digits in data/mnist (`make mnist-data`), scaled to
      [-1, 1]; the 14x14 versions are their 2x2 averages.
   2. The base model learns p(x14) (MATH.md section 5, eps prediction).
   3. The super-resolution (SR) model learns p(x28 | x14): a U-Net with
      cond_channels = 1 whose extra input channel is the 14x14 digit upsampled
      back to 28x28 (nearest neighbour), so at every step it sees x_t and the
      coarse image side by side. Trained on (x0 = the 28x28 digit, cond =
      upsample(its 2x2 average)).
   4. Sampling, one model after the other: DDIM (section 7) with the base
      model from N(0, I), upsample, then DDIM with the SR model conditioned
      on the upsampled base samples (dfn_unet_predictor.cond).
   5. A control: the SR model applied to real held-out 14x14 digits, next to
      the real 28x28 digits, and measured numbers: how well the SR output
      keeps its coarse image (the MSE between its 2x2 average and the 14x14
      conditioning image), against the same number for a wrong coarse image
      (what a model that ignored its conditioning would get).

   Both models are saved (DIR/base.dfnm, DIR/sr.dfnm, with EMA weights) and
   --sample-only reuses them.

   Build and run from the repository root:  make cascade  (or ./build/cascade-example --help)
*/
#define _POSIX_C_SOURCE 200809L     /* clock_gettime */
#define DIFFUSION_IMPLEMENTATION
#ifndef DFN_NO_PTHREADS_EXAMPLE
#  define DFN_PTHREADS              /* the ready thread pool (link with -pthread) */
#endif
#include "diffusion.h"
#define EX_NAME "cascade"
#include "common.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define LO 14                       /* the base resolution                    */
#define HI 28                       /* the SR resolution                      */
#define DLO (LO * LO)
#define DHI (HI * HI)

typedef struct options {
    const char *data, *out;
    long base_steps, sr_steps, batch, base, sr_base, seed, n, n_eval, ddim_steps, threads;
    double lr;
    int sample_only, raw;
} options;

static void usage(FILE *f)
{
    fprintf(f,
            "usage: cascade [options]\n"
            "  --data DIR          IDX files (default data/mnist; make mnist-data)\n"
            "  --out DIR           pictures and models (default build/cascade)\n"
            "  --base-steps N      training steps of the 14x14 base model (default 1500)\n"
            "  --sr-steps N        training steps of the 28x28 SR model (default 1000)\n"
            "  --batch B           images per step, both models (default 64)\n"
            "  --lr X              peak learning rate (default 1.5e-3, warmup 100, cosine)\n"
            "  --base C            base model channels at 14x14 (default 16)\n"
            "  --sr-base C         SR model channels at 28x28 (default 16)\n"
            "  --sample-only       no training: sample DIR/base.dfnm and DIR/sr.dfnm\n"
            "  --raw               sample the trained weights, not their EMA\n"
            "  --n N               cascade samples in the picture (default 32)\n"
            "  --n-eval N          held-out digits for the SR control (default 100)\n"
            "  --ddim-steps S      DDIM steps of each model (default 50)\n"
            "  --threads N         worker threads (default 2; results are the same bits)\n"
            "  --seed N            (default 1)\n");
}

static int parse(int argc, char **argv, options *o)
{
    int i;
    memset(o, 0, sizeof *o);
    o->data = "data/mnist";
    o->out = "build/cascade";
    o->base_steps = 1500;
    o->sr_steps = 1000;
    o->batch = 64;
    o->base = 16;
    o->sr_base = 16;
    o->seed = 1;
    o->n = 32;
    o->n_eval = 100;
    o->ddim_steps = 50;
    o->threads = 2;
    o->lr = 1.5e-3;
    for (i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        char *end = NULL;
        long *num = NULL;
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) { usage(stdout); exit(0); }
        if (!strcmp(a, "--sample-only")) { o->sample_only = 1; continue; }
        if (!strcmp(a, "--raw")) { o->raw = 1; continue; }
        if (!v) { fprintf(stderr, "cascade: %s needs a value (see --help)\n", a); return 0; }
        i++;
        if (!strcmp(a, "--data")) o->data = v;
        else if (!strcmp(a, "--out")) o->out = v;
        else if (!strcmp(a, "--lr")) {
            errno = 0;
            o->lr = strtod(v, &end);
            if (errno || *end || !(o->lr > 0 && o->lr < 1)) { fprintf(stderr, "cascade: bad --lr %s\n", v); return 0; }
        }
        else if (!strcmp(a, "--base-steps")) num = &o->base_steps;
        else if (!strcmp(a, "--sr-steps")) num = &o->sr_steps;
        else if (!strcmp(a, "--batch")) num = &o->batch;
        else if (!strcmp(a, "--base")) num = &o->base;
        else if (!strcmp(a, "--sr-base")) num = &o->sr_base;
        else if (!strcmp(a, "--seed")) num = &o->seed;
        else if (!strcmp(a, "--n")) num = &o->n;
        else if (!strcmp(a, "--n-eval")) num = &o->n_eval;
        else if (!strcmp(a, "--ddim-steps")) num = &o->ddim_steps;
        else if (!strcmp(a, "--threads")) num = &o->threads;
        else { fprintf(stderr, "cascade: unknown option %s\n", a); usage(stderr); return 0; }
        if (num) {
            errno = 0;
            *num = strtol(v, &end, 10);
            if (errno || *end || *num < 0 || *num > 100000000L) {
                fprintf(stderr, "cascade: bad value '%s' for %s\n", v, a);
                return 0;
            }
        }
    }
    if (o->batch < 1 || o->base < 2 || o->base % 2 || o->sr_base < 2 || o->sr_base % 2 ||
        o->ddim_steps < 1 || o->n < 1 || o->n_eval < 2 || o->n > 100000 || o->n_eval > 100000) {
        fprintf(stderr, "cascade: --batch, --base and --sr-base (even), --ddim-steps, --n must be positive, "
                        "--n-eval at least 2\n");
        return 0;
    }
    return 1;
}

/* One model of the cascade: its weights, schedule and (when trained here)
   trainer, or the model file it came from. `ema` is what samples. */
typedef struct stage {
    const char *name;
    dfn_unet net;
    float *params;
    dfn_schedule sched;
    dfn_trainer tr;
    dfn_loaded_model lm;
    const dfn_unet *ema;
    int have_sched, have_tr, have_lm;
} stage;

static void stage_free(stage *s)
{
    if (s->have_tr) dfn_trainer_free(&s->tr, NULL);
    if (s->have_sched) dfn_schedule_free(&s->sched, NULL);
    if (s->have_lm) dfn_model_free(&s->lm, NULL);
    free(s->params);
}

/* A new network: `size` x `size` grey images, base channels `base`, two
   levels; attention at the lower level and in the middle when `attention`;
   `cond` conditioning channels. Weights initialized from the seed. */
static int stage_new(stage *s, int size, int base, int attention, int cond, long seed)
{
    dfn_unet_config uc = dfn_unet_config_default(1, size, size);
    dfn_schedule_config sc = dfn_schedule_config_default(DFN_SCHEDULE_LINEAR, 1000);
    dfn_rng rng;
    size_t P;
    uc.base_channels = base;
    uc.time_dim = 4 * base;
    uc.groups = base % 8 == 0 ? 8 : base % 4 == 0 ? 4 : 2;
    uc.levels = 2;
    uc.attention[0] = 0;
    uc.attention[1] = attention;
    uc.mid_attention = attention;
    uc.cond_channels = cond;
    P = dfn_unet_num_params(&uc);
    if (P == 0) { fprintf(stderr, "cascade: invalid %s network configuration\n", s->name); return 0; }
    s->params = (float *)malloc(P * sizeof(float));
    if (!s->params || !ex_check(dfn_unet_init(&s->net, &uc, s->params), s->name)) return 0;
    dfn_rng_seed(&rng, (uint64_t)seed, (uint64_t)(100 + cond));
    dfn_unet_init_weights(&s->net, &rng);
    if (!ex_check(dfn_schedule_alloc(&s->sched, &sc, NULL), "schedule")) return 0;
    s->have_sched = 1;
    s->ema = &s->net;
    printf("%s model: %dx%d, channels %d %d, attention %s, %d conditioning channel%s, %lu parameters\n",
           s->name, size, size, base, 2 * base, attention ? "at 7x7 and in the middle" : "none",
           cond, cond == 1 ? "" : "s", (unsigned long)P);
    return 1;
}

/* A saved model: must be a size x size grey U-Net with `cond` conditioning
   channels. Samples with its EMA weights when the file has them. */
static int stage_load(stage *s, const char *path, int size, int cond, int raw)
{
    const dfn_unet_config *c;
    if (!ex_check(dfn_model_load(path, NULL, &s->lm), path)) {
        fprintf(stderr, "(train first: make cascade)\n");
        return 0;
    }
    s->have_lm = 1;
    c = &s->lm.info.unet;
    if (s->lm.info.net != DFN_NET_UNET || c->height != size || c->width != size || c->channels != 1 ||
        c->cond_channels != cond) {
        fprintf(stderr, "cascade: %s is not a %dx%d grey U-Net with %d conditioning channel(s)\n", path, size,
                size, cond);
        return 0;
    }
    s->ema = s->lm.ema && !raw ? &s->lm.ema_unet : &s->lm.unet;
    printf("loaded %s: %s model %dx%d, base %d channels, %s weights\n", path, s->name, size, size,
           c->base_channels, s->ema == &s->lm.ema_unet ? "EMA" : "trained");
    return 1;
}

static const dfn_schedule *stage_schedule(const stage *s)
{
    return s->have_lm ? &s->lm.schedule : &s->sched;
}

/* Trains s for `steps` steps on x (n, size, size). With `lo` (n, 14, 14)
   the network is the SR model: each example's conditioning image is its
   14x14 version upsampled to 28x28. Saves the model (weights, EMA) to path. */
static int stage_train(stage *s, const options *o, long steps, const float *x, const float *lo, int n,
                       const char *path)
{
    dfn_train_config tc = dfn_train_config_default();
    int D = dfn_unet_dim(&s->net.cfg), B = (int)o->batch, k;
    float *batch = (float *)malloc((size_t)B * D * sizeof(float));
    float *lob = (float *)malloc((size_t)B * DLO * sizeof(float));
    float *cond = (float *)malloc((size_t)B * DHI * sizeof(float));
    double t0, ema_loss = 0;
    clock_t c0;
    dfn_rng rng;
    long step;
    int ok = 0;
    if (!batch || !lob || !cond) { fprintf(stderr, "cascade: out of memory\n"); goto done; }
    tc.batch = B;
    tc.lr = (float)o->lr;
    tc.warmup_steps = steps > 1000 ? 100 : (int)(steps / 10);
    tc.total_steps = (int)steps;
    tc.min_lr_ratio = 0.1f;
    tc.grad_clip = 1.0f;
    tc.ema_decay = 0.999f;          /* warmed up as (1 + k) / (10 + k): a window of
                                       about 100 steps at the end of these runs */
    printf("training the %s model: %ld steps of %d images, Adam lr %g (warmup %d, cosine), EMA %.3f, %.0f MB\n",
           s->name, steps, B, o->lr, tc.warmup_steps, tc.ema_decay, dfn_trainer_size_unet(&s->net.cfg, &tc) / 1e6);
    if (!ex_check(dfn_trainer_alloc_unet(&s->tr, &s->net, &s->sched, &tc, NULL), "trainer")) goto done;
    s->have_tr = 1;
    dfn_rng_seed(&rng, (uint64_t)o->seed, lo ? 2 : 1);
    t0 = ex_wall();
    c0 = clock();
    for (step = 0; step < steps; step++) {
        float loss;
        dfn_result r;
        for (k = 0; k < B; k++) {
            int j = (int)dfn_rng_below(&rng, (uint32_t)n);
            memcpy(batch + (size_t)k * D, x + (size_t)j * D, (size_t)D * sizeof(float));
            if (lo) memcpy(lob + (size_t)k * DLO, lo + (size_t)j * DLO, DLO * sizeof(float));
        }
        if (lo) {
            dfn_upsample2_forward(cond, lob, B, LO, LO, 1);
            r = dfn_train_step_cond(&s->tr, batch, cond, NULL, &rng, &loss);
        } else {
            r = dfn_train_step(&s->tr, batch, NULL, &rng, &loss);
        }
        if (!ex_check(r, "training step")) goto done;
        ema_loss = step == 0 ? loss : 0.98 * ema_loss + 0.02 * loss;
        if ((step + 1) % 10 == 0 || step + 1 == steps) {
            double el = ex_wall() - t0, rate = (step + 1) / (el > 0 ? el : 1e-9);
            printf("\r%s step %5ld/%ld  loss %.4f  %5.2f steps/s  elapsed %4.0fs  ETA %4.0fs ", s->name, step + 1,
                   steps, ema_loss, rate, el, (steps - step - 1) / rate);
            fflush(stdout);
        }
    }
    printf("\ntrained the %s model: %ld steps in %.0f s (%.2f steps/s), %.0f s of CPU time (all threads)\n",
           s->name, steps, ex_wall() - t0, steps / (ex_wall() - t0 > 0 ? ex_wall() - t0 : 1e-9),
           (double)(clock() - c0) / CLOCKS_PER_SEC);
    if (!ex_check(dfn_model_save_unet(path, &s->net, &s->sched, &s->tr, 0), path)) goto done;
    printf("saved %s\n", path);
    s->ema = o->raw ? &s->net : &s->tr.ema_unet;
    ok = 1;
done:
    free(batch);
    free(lob);
    free(cond);
    return ok;
}

/* DDIM with s's sampling weights: x (n, D) from x_T (n, D); cond
   (n, 28, 28) conditions sample i with image i (SR model) or is NULL. */
static int sample(const stage *s, const options *o, float *x, const float *x_T, const float *cond, int n,
                  dfn_rng *rng)
{
    int chunk = 32;
    dfn_unet_predictor pred;
    dfn_sampler smp;
    dfn_sampler_config cfg;
    double t0 = ex_wall();
    int ok;
    pred.model = s->ema;
    pred.cond = cond;
    pred.cond_rows = cond ? n : 0;
    pred.work_bytes = dfn_unet_forward_size(&s->ema->cfg, chunk);
    pred.work = malloc(pred.work_bytes);
    if (!pred.work) return 0;
    cfg = dfn_unet_sampler_config(DFN_SAMPLER_DDIM, n, &pred);
    cfg.steps = (int)o->ddim_steps;
    cfg.clip_x0 = 1;                                /* pixels live in [-1, 1] */
    ok = ex_check(dfn_sampler_alloc(&smp, &cfg, stage_schedule(s), NULL), "sampler") &&
         ex_check(dfn_sampler_run(&smp, x, x_T, rng), "sampling");
    if (ok) {
        dfn_sampler_free(&smp, NULL);
        printf("%s model, DDIM-%d: %d samples in %.1f s\n", s->name, cfg.steps, n, ex_wall() - t0);
    }
    free(pred.work);
    return ok;
}

/* Mean over n images of the mean squared pixel difference of a and b (n, D). */
static double mse(const float *a, const float *b, int n, int D)
{
    double s = 0;
    size_t i, m = (size_t)n * D;
    for (i = 0; i < m; i++) s += ((double)a[i] - b[i]) * ((double)a[i] - b[i]);
    return s / (double)m;
}

/* The SR consistency: mean over the n images of MSE(avgpool2(hi_i), lo_(i + shift) % n)
   (shift 0: its own conditioning image). pool is scratch (n, 14, 14). */
static double pool_mse(const float *hi, const float *lo, float *pool, int n, int shift)
{
    double s = 0;
    int i;
    dfn_avgpool2_forward(pool, hi, n, HI, HI, 1);
    for (i = 0; i < n; i++) s += mse(pool + (size_t)i * DLO, lo + (size_t)((i + shift) % n) * DLO, 1, DLO);
    return s / n;
}

/* Detail beyond the 14x14 image: mean of ||x - upsample(avgpool2(x))||^2 / D
   over the n images (0 for an upsampled 14x14 image). */
static double detail(const float *hi, float *pool, float *up, int n)
{
    dfn_avgpool2_forward(pool, hi, n, HI, HI, 1);
    dfn_upsample2_forward(up, pool, n, LO, LO, 1);
    return mse(hi, up, n, DHI);
}

int main(int argc, char **argv)
{
    options o;
    dfn_image_set train, train_lo, test, test_lo;
    stage base, sr;
    char base_path[1024], sr_path[1024], ipath[1024];
    int rc = 1, n, m, i;
    dfn_rng rng;
    float *xT = NULL, *lo = NULL, *up = NULL, *hi = NULL, *pool = NULL, *scratch = NULL, *pic = NULL;

    if (!parse(argc, argv, &o)) return 2;
    memset(&train, 0, sizeof train); memset(&train_lo, 0, sizeof train_lo);
    memset(&test, 0, sizeof test); memset(&test_lo, 0, sizeof test_lo);
    memset(&base, 0, sizeof base); memset(&sr, 0, sizeof sr);
    base.name = "base";
    sr.name = "SR";
    snprintf(base_path, sizeof base_path, "%s/base.dfnm", o.out);
    snprintf(sr_path, sizeof sr_path, "%s/sr.dfnm", o.out);
    {
        char cmd[1100];
        snprintf(cmd, sizeof cmd, "mkdir -p '%s'", o.out);
        if (system(cmd) != 0) { fprintf(stderr, "cascade: cannot create %s\n", o.out); return 1; }
    }
#ifdef DFN_PTHREADS
    if (o.threads > 1 && !ex_check(dfn_pthreads_start((int)o.threads), "threads")) return 1;
#endif
    printf("diffusion.h %d.%d.%d, kernels: %s, %d thread%s\n", DFN_VERSION_MAJOR, DFN_VERSION_MINOR,
           DFN_VERSION_PATCH, dfn_simd_name(), dfn_parallel_threads(), dfn_parallel_threads() > 1 ? "s" : "");

    /* ---- the held-out digits (the SR control), 28x28 and 14x14 ---- */
    snprintf(ipath, sizeof ipath, "%s/t10k-images-idx3-ubyte", o.data);
    if (!ex_check(dfn_idx_load(&test, ipath, NULL, 1, NULL), ipath) ||
        !ex_check(dfn_idx_load(&test_lo, ipath, NULL, 2, NULL), ipath)) {
        fprintf(stderr, "(run `make mnist-data` first)\n");
        goto out;
    }

    /* ---- the two models: trained here, or loaded ---- */
    if (o.sample_only) {
        if (!stage_load(&base, base_path, LO, 0, o.raw) || !stage_load(&sr, sr_path, HI, 1, o.raw)) goto out;
    } else {
        snprintf(ipath, sizeof ipath, "%s/train-images-idx3-ubyte", o.data);
        if (!ex_check(dfn_idx_load(&train, ipath, NULL, 1, NULL), ipath) ||
            !ex_check(dfn_idx_load(&train_lo, ipath, NULL, 2, NULL), ipath))
            goto out;
        if (train.h != HI || train.w != HI) { fprintf(stderr, "cascade: the digits must be 28x28\n"); goto out; }
        printf("data: %d digits of 28x28 and their 2x2 averages (14x14) from %s\n", train.n, o.data);
        if (!stage_new(&base, LO, (int)o.base, 1, 0, o.seed) ||
            !stage_new(&sr, HI, (int)o.sr_base, 0, 1, o.seed))
            goto out;
        if (!stage_train(&base, &o, o.base_steps, train_lo.images, NULL, train.n, base_path) ||
            !stage_train(&sr, &o, o.sr_steps, train.images, train_lo.images, train.n, sr_path))
            goto out;
    }

    n = (int)o.n;
    m = (int)(o.n_eval < test.n ? o.n_eval : test.n);
    if (m < 2) { fprintf(stderr, "cascade: too few held-out digits\n"); goto out; }
    i = n > m ? n : m;
    xT = (float *)malloc((size_t)i * DHI * sizeof(float));
    lo = (float *)malloc((size_t)i * DLO * sizeof(float));
    up = (float *)malloc((size_t)i * DHI * sizeof(float));
    hi = (float *)malloc((size_t)i * DHI * sizeof(float));
    pool = (float *)malloc((size_t)i * DLO * sizeof(float));
    scratch = (float *)malloc((size_t)i * DHI * sizeof(float));
    pic = (float *)malloc((size_t)3 * i * DHI * sizeof(float));
    if (!xT || !lo || !up || !hi || !pool || !scratch || !pic) { fprintf(stderr, "cascade: out of memory\n"); goto out; }

    /* ---- the cascade: base samples, upsampled, condition the SR model ---- */
    dfn_rng_seed(&rng, (uint64_t)o.seed, 12345);
    dfn_rng_normal_fill(&rng, xT, (size_t)n * DLO);
    if (!sample(&base, &o, lo, xT, NULL, n, &rng)) goto out;
    dfn_upsample2_forward(up, lo, n, LO, LO, 1);
    dfn_rng_normal_fill(&rng, xT, (size_t)n * DHI);
    if (!sample(&sr, &o, hi, xT, up, n, &rng)) goto out;
    for (i = 0; i < n; i++) {                       /* pairs [base upsampled, SR] */
        memcpy(pic + (size_t)(2 * i) * DHI, up + (size_t)i * DHI, DHI * sizeof(float));
        memcpy(pic + (size_t)(2 * i + 1) * DHI, hi + (size_t)i * DHI, DHI * sizeof(float));
    }
    if (!ex_write_grid(o.out, "cascade.png", pic, 2 * n, HI, HI, 8)) goto out;
    printf("cascade samples (%d): MSE(avgpool2(SR output), its 14x14 base sample) = %.4f; "
           "against another sample's 14x14 image: %.4f\n",
           n, pool_mse(hi, lo, pool, n, 0), pool_mse(hi, lo, pool, n, 1));
    printf("  detail beyond 14x14, mean ||x - upsample(avgpool2(x))||^2 / 784: SR output %.4f\n",
           detail(hi, pool, scratch, n));

    /* ---- the control: the SR model on real held-out 14x14 digits ---- */
    memcpy(lo, test_lo.images, (size_t)m * DLO * sizeof(float));
    dfn_upsample2_forward(up, lo, m, LO, LO, 1);
    dfn_rng_normal_fill(&rng, xT, (size_t)m * DHI);
    if (!sample(&sr, &o, hi, xT, up, m, &rng)) goto out;
    {
        int shown = m < 12 ? m : 12;                /* triples [14x14 upsampled, SR, real 28x28] */
        for (i = 0; i < shown; i++) {
            memcpy(pic + (size_t)(3 * i) * DHI, up + (size_t)i * DHI, DHI * sizeof(float));
            memcpy(pic + (size_t)(3 * i + 1) * DHI, hi + (size_t)i * DHI, DHI * sizeof(float));
            memcpy(pic + (size_t)(3 * i + 2) * DHI, test.images + (size_t)i * DHI, DHI * sizeof(float));
        }
        if (!ex_write_grid(o.out, "control.png", pic, 3 * shown, HI, HI, 9)) goto out;
    }
    printf("held-out digits (%d), SR model on their real 14x14 versions:\n", m);
    printf("  MSE(avgpool2(SR output), its 14x14 input)        %.4f\n", pool_mse(hi, lo, pool, m, 0));
    printf("  MSE(avgpool2(SR output), another digit's 14x14)  %.4f  (a model ignoring its input)\n",
           pool_mse(hi, lo, pool, m, 1));
    printf("  MSE(avgpool2(real 28x28), its 14x14)             %.4f\n", pool_mse(test.images, lo, pool, m, 0));
    printf("  MSE to the real 28x28 digit: SR output %.4f, nearest-neighbour upsampled input %.4f\n",
           mse(hi, test.images, m, DHI), mse(up, test.images, m, DHI));
    printf("  detail beyond 14x14 (as above): SR output %.4f, real digits %.4f, upsampled input 0\n",
           detail(hi, pool, scratch, m), detail(test.images, pool, scratch, m));
    rc = 0;
out:
    stage_free(&base);
    stage_free(&sr);
    dfn_image_set_free(&train, NULL);
    dfn_image_set_free(&train_lo, NULL);
    dfn_image_set_free(&test, NULL);
    dfn_image_set_free(&test_lo, NULL);
    free(xT); free(lo); free(up); free(hi); free(pool); free(scratch); free(pic);
#ifdef DFN_PTHREADS
    dfn_pthreads_stop();
#endif
    return rc;
}
