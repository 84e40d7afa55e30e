/* image_quality.c - how good are a U-Net's digits? (make bench-images)
   And its emoji? (make bench-emoji: --data data/emoji, the colour images
   of `make emoji-data` in 9 categories; the same measure, in colour.)

   1. Trains the small classifier of bench/digits.h on the training images
      of --data (9,000 digits of data/mnist, at the model's resolution,
      28x28 or 14x14; or the 1,720 emoji) and reports its accuracy on the
      held-out images (1,000 digits; 186 emoji).
   2. Loads a U-Net model file and draws N samples with DDIM (eta 0,
      trailing spacing, x0 clipped to [-1, 1]) on its EMA weights. The
      schedule (linear vp, or rectified flow: MATH.md section 12) and the
      prediction (eps, v, x0, velocity) are the file's; DDIM on trailing
      steps runs on both processes (on flow it is Euler in u), while logsnr
      and karras spacings, and Euler / Heun / midpoint on a
      zero-terminal-SNR vp schedule, are refused with a message.
   3. Scores them: (a) the share the classifier labels with confidence
      >= 0.9, (b) the class histogram, (c) the Frechet distance between the
      classifier's penultimate features of the samples and of N held-out
      real digits, beside the same distance for real-vs-real (N training
      digits vs the test digits: the floor) and noise-vs-real (N(0, I)
      images clipped to [-1, 1]). Targets on the digits: (a) >= 80%, (b)
      every class 5-15%, (c) below a quarter of the noise distance. On
      other data (the emoji: categories of unequal size, a classifier far
      from certain on real images) (a) >= 80% of the real test images'
      confident share, (b) every class within 0.5-1.5x its share of the
      training images, (c) as on the digits.
   4. A class-conditional model (num_classes = the data's classes) is also
      sampled with labels, each class equally often: the share classified
      as the asked class, and (a)-(c) for those samples.

   Run from the repository root:  make bench-images [MODEL=path]
   or ./build/image_quality --help
   --train-model OUT writes a small 14x14 U-Net trained for a few hundred
   steps (enough to run this program end to end; its digits are poor);
   --train-process flow makes it a rectified-flow model. */
#define _POSIX_C_SOURCE 200809L     /* clock_gettime */
#define DIFFUSION_IMPLEMENTATION
#define DFN_PTHREADS                /* sampling on 2 threads (same bits as 1) */
#include "diffusion.h"
#include "digits.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

typedef struct options {
    const char *model, *data, *grid, *train_out, *sampler, *spacing;
    long n, steps, seed, epochs, train_steps;
    double guidance;       /* < 0: the sampler's default */
    double shift;          /* the shifted spacing's k */
    int strict, no_clip, train_classes, cond_only, train_flow, raw;
} options;

static double wall(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static void usage(FILE *f)
{
    fprintf(f,
            "usage: image_quality [options]\n"
            "  --model FILE        U-Net model file (default build/mnist/mnist.dfnm; make mnist)\n"
            "  --data DIR          IDX files, grey or colour, with labels (default\n"
            "                      data/mnist, make mnist-data; data/emoji: make emoji-data)\n"
            "  --n N               samples, and real images per set (default 500)\n"
            "  --steps S           sampler steps (default 50)\n"
            "  --sampler K         ddim (default), euler, heun, midpoint, dpm++2m, dpm++3m,\n"
            "                      dpm++2m-sde, ddpm (all T steps; --steps and --spacing\n"
            "                      unused). The defaults run on vp and flow models alike;\n"
            "                      --steps is S: Heun makes 2S - 1 evaluations, midpoint\n"
            "                      about 2S (the NFE is printed)\n"
            "  --spacing P         trailing (default), logsnr, karras, linspace, leading,\n"
            "                      shifted (a flow model has no logsnr or karras)\n"
            "  --shift K           the shifted spacing's k (default 3)\n"
            "  --seed N            sampling, noise and subset seed (default 1)\n"
            "  --epochs E          classifier training epochs (default: 45,000 images\n"
            "                      seen, 5 epochs of the digits, 27 of the emoji)\n"
            "  --grid FILE.png     also write the first 100 samples as a PNG grid\n"
            "  --no-clip           do not clip x0_hat to [-1, 1] while sampling\n"
            "  --guidance W        classifier-free guidance scale of the class-conditional\n"
            "                      samples (default: the sampler's default; needs a\n"
            "                      diffusion.h whose sampler config has guidance_scale)\n"
            "  --strict            exit 1 when a target is missed\n"
            "  --raw               sample the trained weights, not their EMA\n"
            "  --conditional-only  a class-conditional model: only the samples with labels\n"
            "                      (half the time; for slow samplers such as ddpm)\n"
            "  --train-model OUT   instead: train a small 14x14 U-Net (--train-steps,\n"
            "                      default 300) and save it to OUT; --train-classes makes\n"
            "                      it class-conditional (labels 0..9), --train-process\n"
            "                      flow a rectified-flow model (velocity prediction,\n"
            "                      logit-normal t; default vp: eps, linear schedule)\n");
}

static int parse(int argc, char **argv, options *o)
{
    int i;
    memset(o, 0, sizeof *o);
    o->model = "build/mnist/mnist.dfnm";
    o->data = "data/mnist";
    o->n = 500;
    o->steps = 50;
    o->sampler = "ddim";
    o->spacing = "trailing";
    o->seed = 1;
    o->epochs = 0;                      /* 45,000 images seen */
    o->train_steps = 300;
    o->guidance = -1.0;
    o->shift = 3.0;
    for (i = 1; i < argc; i++) {
        const char *a = argv[i], *v;
        char *end = NULL;
        long *num = NULL;
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) { usage(stdout); exit(0); }
        if (!strcmp(a, "--strict")) { o->strict = 1; continue; }
        if (!strcmp(a, "--no-clip")) { o->no_clip = 1; continue; }
        if (!strcmp(a, "--train-classes")) { o->train_classes = 1; continue; }
        if (!strcmp(a, "--conditional-only")) { o->cond_only = 1; continue; }
        if (!strcmp(a, "--raw")) { o->raw = 1; continue; }
        v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!v) { fprintf(stderr, "image_quality: %s needs a value (see --help)\n", a); return 0; }
        i++;
        if (!strcmp(a, "--model")) o->model = v;
        else if (!strcmp(a, "--data")) o->data = v;
        else if (!strcmp(a, "--grid")) o->grid = v;
        else if (!strcmp(a, "--sampler")) {
            o->sampler = v;
            if (dfn_sampler_kind_parse(v) < 0) { fprintf(stderr, "image_quality: bad --sampler %s\n", v); return 0; }
        }
        else if (!strcmp(a, "--spacing")) {
            o->spacing = v;
            if (dfn_spacing_parse(v) < 0 || dfn_spacing_parse(v) == DFN_SPACING_CUSTOM) {
                fprintf(stderr, "image_quality: bad --spacing %s\n", v);
                return 0;
            }
        }
        else if (!strcmp(a, "--train-model")) o->train_out = v;
        else if (!strcmp(a, "--train-process")) {
            if (strcmp(v, "vp") && strcmp(v, "flow")) {
                fprintf(stderr, "image_quality: --train-process must be vp or flow\n");
                return 0;
            }
            o->train_flow = !strcmp(v, "flow");
        }
        else if (!strcmp(a, "--shift")) {
            errno = 0;
            o->shift = strtod(v, &end);
            if (errno || *end || !(o->shift > 0.0 && o->shift <= 1000.0)) {
                fprintf(stderr, "image_quality: bad --shift %s\n", v);
                return 0;
            }
        }
        else if (!strcmp(a, "--guidance")) {
            errno = 0;
            o->guidance = strtod(v, &end);
            if (errno || *end || !(o->guidance >= 0.0 && o->guidance <= 100.0)) {
                fprintf(stderr, "image_quality: bad --guidance %s\n", v);
                return 0;
            }
#ifndef IQ_GUIDANCE
            fprintf(stderr, "image_quality: this diffusion.h has no guidance scale "
                            "(dfn_sampler_config.guidance_scale); --guidance is unavailable\n");
            return 0;
#endif
        }
        else if (!strcmp(a, "--n")) num = &o->n;
        else if (!strcmp(a, "--steps")) num = &o->steps;
        else if (!strcmp(a, "--seed")) num = &o->seed;
        else if (!strcmp(a, "--epochs")) num = &o->epochs;
        else if (!strcmp(a, "--train-steps")) num = &o->train_steps;
        else { fprintf(stderr, "image_quality: unknown option %s\n", a); usage(stderr); return 0; }
        if (num) {
            errno = 0;
            *num = strtol(v, &end, 10);
            if (errno || *end || *num < 0 || *num > 1000000L) {
                fprintf(stderr, "image_quality: bad value '%s' for %s\n", v, a);
                return 0;
            }
        }
    }
    if (o->n < 10 || o->steps < 1 || o->train_steps < 1) {
        fprintf(stderr, "image_quality: --n must be >= 10; --steps, --epochs, --train-steps >= 1\n");
        return 0;
    }
    return 1;
}

static int check(dfn_result r, const char *what)
{
    if (r != DFN_OK) fprintf(stderr, "image_quality: %s: %s\n", what, dfn_result_string(r));
    return r == DFN_OK;
}

/* The train (which 0) or test (1) split at 1/downsample scale: grey
   (-idx3-ubyte) or colour (-idx4-ubyte) images, and their labels. */
static int load_split(dfn_image_set *s, const char *dir, int which, int downsample)
{
    char ip[1024], lp[1024];
    const char *stem = which ? "t10k" : "train";
    dfn_result r;
    FILE *f;
    snprintf(ip, sizeof ip, "%s/%s-images-idx3-ubyte", dir, stem);
    if ((f = fopen(ip, "rb")) != NULL) fclose(f);
    else snprintf(ip, sizeof ip, "%s/%s-images-idx4-ubyte", dir, stem);
    snprintf(lp, sizeof lp, "%s/%s-labels-idx1-ubyte", dir, stem);
    r = dfn_idx_load(s, ip, lp, downsample, NULL);
    if (r != DFN_OK) {
        fprintf(stderr, "image_quality: %s: %s\n(the digits come from `make mnist-data`, the emoji from "
                        "`make emoji-data`)\n", ip, dfn_result_string(r));
        return 0;
    }
    return 1;
}

/* The category names of DIR/categories.txt (one per line), or "0".."K-1". */
static void class_names(const char *dir, int K, char names[][40])
{
    char path[1024], line[256];
    FILE *f;
    int k = 0;
    for (k = 0; k < K; k++) snprintf(names[k], 40, "%d", k);
    snprintf(path, sizeof path, "%s/categories.txt", dir);
    if (!(f = fopen(path, "r"))) return;
    for (k = 0; k < K && fgets(line, sizeof line, f); k++) {
        line[strcspn(line, "\r\n")] = 0;
        line[39] = 0;                               /* names are cut to 39 characters */
        memcpy(names[k], line, strlen(line) + 1);
    }
    fclose(f);
}

/* --train-model: a small U-Net on the 14x14 digits, saved with its EMA. */
static int train_small(const options *o)
{
    dfn_image_set train;
    dfn_unet_config uc = dfn_unet_config_default(1, 14, 14);
    dfn_schedule_config sc = dfn_schedule_config_default(o->train_flow ? DFN_SCHEDULE_FLOW : DFN_SCHEDULE_LINEAR, 1000);
    dfn_train_config tc = dfn_train_config_default();
    dfn_schedule sched;
    dfn_unet net;
    dfn_trainer tr;
    dfn_rng rng;
    float *params, *batch, loss = 0.0f;
    int labels[32];
    long step;
    int k, ok = 1;
    double t0 = wall();
    if (!load_split(&train, o->data, 0, 2)) return 1;
    uc.base_channels = 16;
    uc.time_dim = 64;
    uc.levels = 2;
    uc.attention[1] = 1;
    uc.groups = 8;
    tc.batch = 32;
    tc.warmup_steps = 50;
    tc.total_steps = (int)o->train_steps;
    tc.grad_clip = 1.0f;
    tc.ema_decay = 0.99f;
    uc.num_classes = o->train_classes ? 10 : 0;
    if (o->train_flow) {                   /* rectified flow (MATH.md section 12) */
        uc.prediction = DFN_PREDICT_FLOW;
        tc.time_sampling = DFN_TIME_LOGIT_NORMAL;
    }
    params = (float *)malloc(dfn_unet_num_params(&uc) * sizeof(float));
    batch = (float *)malloc((size_t)tc.batch * 196 * sizeof(float));
    if (!params || !batch) { fprintf(stderr, "image_quality: out of memory\n"); return 1; }
    if (!check(dfn_schedule_alloc(&sched, &sc, NULL), "schedule") ||
        !check(dfn_unet_init(&net, &uc, params), "U-Net"))
        return 1;
    dfn_rng_seed(&rng, (uint64_t)o->seed, 0);
    dfn_unet_init_weights(&net, &rng);
    if (!check(dfn_trainer_alloc_unet(&tr, &net, &sched, &tc, NULL), "trainer")) return 1;
    printf("training a 14x14%s%s U-Net (base 16, %lu parameters) for %ld steps of %d digits\n",
           o->train_classes ? " class-conditional" : "", o->train_flow ? " rectified-flow" : "",
           (unsigned long)net.count, o->train_steps, tc.batch);
    for (step = 0; step < o->train_steps && ok; step++) {
        for (k = 0; k < tc.batch; k++) {
            int j = (int)dfn_rng_below(&rng, (uint32_t)train.n);
            memcpy(batch + (size_t)k * 196, train.images + (size_t)j * 196, 196 * sizeof(float));
            labels[k] = train.labels[j];
        }
        ok = check(dfn_train_step(&tr, batch, o->train_classes ? labels : NULL, &rng, &loss),
                   "training step");
        if ((step + 1) % 50 == 0) printf("  step %ld: loss %.4f (%.0f s)\n", step + 1, loss, wall() - t0);
    }
    ok = ok && check(dfn_model_save_unet(o->train_out, &net, &sched, &tr, 0), o->train_out);
    if (ok) printf("wrote %s\n", o->train_out);
    dfn_trainer_free(&tr, NULL);
    dfn_schedule_free(&sched, NULL);
    dfn_image_set_free(&train, NULL);
    free(params);
    free(batch);
    return ok ? 0 : 1;
}

static int on_step(void *user, const dfn_step_info *info)
{
    double *t0 = (double *)user;
    if (info->i % 10 == 1 || info->i == 1)
        fprintf(stderr, "\r  step %d/%d (%.0f s)  ", info->steps - info->i + 1, info->steps,
                wall() - *t0);
    if (info->i == 1) fprintf(stderr, "\n");
    return 0;
}

/* N samples of the model into x (n, D) with per-sample labels (NULL: -1). */
static int sample(const dfn_loaded_model *lm, const dfn_unet *net, const options *o, int n,
                  const int *labels, uint64_t stream, float *x)
{
    dfn_unet_predictor pred;
    dfn_sampler_config cfg;
    dfn_sampler smp;
    dfn_rng rng;
    const int chunk = 50;
    double t0 = wall();
    int ok, nfe = 0;
    fflush(stdout);
    memset(&pred, 0, sizeof pred);
    pred.model = net;
    pred.work_bytes = dfn_unet_forward_size(&net->cfg, chunk);
    pred.work = malloc(pred.work_bytes);
    if (!pred.work) { fprintf(stderr, "image_quality: out of memory\n"); return 0; }
    cfg = dfn_unet_sampler_config((dfn_sampler_kind)dfn_sampler_kind_parse(o->sampler), n, &pred);
    cfg.steps = (int)o->steps;
    cfg.spacing = (dfn_spacing)dfn_spacing_parse(o->spacing);
    cfg.shift = (float)o->shift;
    cfg.clip_x0 = !o->no_clip;
    cfg.labels = labels;
#ifdef IQ_GUIDANCE
    if (labels && o->guidance >= 0.0) cfg.guidance_scale = (float)o->guidance;
    if (labels) printf("  guidance scale w = %g\n", (double)cfg.guidance_scale);
#endif
    cfg.on_step = on_step;
    cfg.on_step_user = &t0;
    ok = check(dfn_sampler_alloc(&smp, &cfg, &lm->schedule, NULL), "sampler");
    if (ok) {
        nfe = dfn_sampler_nfe(&smp);
        dfn_rng_seed(&rng, (uint64_t)o->seed, stream);
        ok = check(dfn_sampler_run(&smp, x, NULL, &rng), "sampling");
        dfn_sampler_free(&smp, NULL);
    }
    if (ok) printf("  %d samples, %s%s%s, %d NFE per sample%s, in %.1f s (%.1f images/s)\n", n, o->sampler,
                   cfg.kind == DFN_SAMPLER_DDPM ? "" : " ", cfg.kind == DFN_SAMPLER_DDPM ? "" : o->spacing, nfe,
                   o->no_clip ? "" : " (x0 clipped)", wall() - t0, n / (wall() - t0 + 1e-9));
    free(pred.work);
    return ok;
}

static const char *verdict(int pass) { return pass ? "PASS" : "FAIL"; }

/* Grain: the mean number of stray pixels per grey image, a lit pixel
   (value > 0, the upper half of the range) outside the largest 8-connected
   set of lit pixels (the stroke). Real digits have almost none; a grainy
   sample has specks around the digit. stack holds h w ints, seen h w bytes. */
static double stray_pixels(const float *x, int n, int h, int w, int *stack, unsigned char *seen)
{
    long total = 0;
    int k;
    for (k = 0; k < n; k++) {
        const float *img = x + (size_t)k * h * w;
        int lit = 0, best = 0, p;
        memset(seen, 0, (size_t)h * w);
        for (p = 0; p < h * w; p++) {
            int top = 0, size = 0;
            if (seen[p] || !(img[p] > 0.0f)) continue;
            seen[p] = 1;
            stack[top++] = p;
            while (top > 0) {                        /* flood fill one component */
                int q = stack[--top], y = q / w, xx = q % w, dy, dx;
                size++;
                for (dy = -1; dy <= 1; dy++)
                    for (dx = -1; dx <= 1; dx++) {
                        int yy = y + dy, x2 = xx + dx, r;
                        if (yy < 0 || yy >= h || x2 < 0 || x2 >= w) continue;
                        r = yy * w + x2;
                        if (!seen[r] && img[r] > 0.0f) { seen[r] = 1; stack[top++] = r; }
                    }
            }
            lit += size;
            if (size > best) best = size;
        }
        total += lit - best;
    }
    return n > 0 ? (double)total / n : 0.0;
}

/* (b): on the digits every class 5-15% of n; otherwise every class within
   0.5-1.5x its share share[k] / total. */
static int hist_ok(const int *hist, const int *share, int K, int n, int total, int digits)
{
    int k, ok = 1;
    for (k = 0; k < K; k++) {
        double f = (double)hist[k] / n, want = digits ? 0.1 : (double)share[k] / total;
        ok &= f >= 0.5 * want && f <= 1.5 * want;
    }
    return ok;
}

static void print_hist(const char *head, const int *hist, const int *share, int K, int n, int total,
                       char names[][40], const char *ref)
{
    int k;
    printf("%s", head);
    for (k = 0; k < K; k++) {
        if (K > 10 || strlen(names[k]) > 2)       /* long names: one per line, with the data's share */
            printf("\n      %-20s %5.1f%%  (%s %4.1f%%)", names[k], 100.0 * hist[k] / n, ref, 100.0 * share[k] / total);
        else
            printf(" %s:%.1f%%", names[k], 100.0 * hist[k] / n);
    }
    printf("\n");
}

int main(int argc, char **argv)
{
    options o;
    dfn_loaded_model lm;
    dfn_image_set train, test;
    const dfn_unet *net;
    dg_net clf;
    dg_config cc;
    dg_train_config tc = dg_train_config_default();
    dfn_rng rng;
    FILE *f;
    int N, M, D, H, C, K = 0, digits, downsample, i, k, hist[DG_MAX_CLASSES] = {0}, confident = 0;
    int pass_a, pass_b, pass_c, *cls, *labels = NULL, real_confident = 0, share[DG_MAX_CLASSES] = {0};
    static char names[DG_MAX_CLASSES][40];
    int side;
    float *x, *conf, *feat_s, *feat_t, *feat_r, *feat_n, *realsub, *noise;
    double t0, loss, acc, fd_s, fd_r, fd_n, a_min, stray_s = 0.0, stray_r = 0.0;
    dfn_result r;
    if (dfn_pthreads_start(2) != DFN_OK) fprintf(stderr, "image_quality: no threads, running on one\n");

    if (!parse(argc, argv, &o)) return 2;
    if (o.train_out) return train_small(&o);

    f = fopen(o.model, "rb");
    if (!f) {
        fprintf(stderr,
                "image_quality: no model file at %s\n"
                "  train one with `make mnist` (writes build/mnist/mnist.dfnm), or point\n"
                "  MODEL=... (make) / --model (here) at a U-Net model file\n", o.model);
        return 2;
    }
    fclose(f);
    {
        /* a model file, or safetensors (build/convert, tools/torch; int8 or fp16 weights read as float) */
        size_t len = strlen(o.model);
        if (len >= 12 && strcmp(o.model + len - 12, ".safetensors") == 0) {
            dfn_error_detail d;
            r = dfn_model_load_safetensors(o.model, NULL, NULL, &lm, &d);
            if (r != DFN_OK && d.what[0]) fprintf(stderr, "%s: %s (%s)\n", o.model, d.what, d.why);
        } else {
            r = dfn_model_load(o.model, NULL, &lm);
        }
    }
    if (!check(r, o.model)) return 2;
    /* the data's side and channels decide which models fit */
    if (!load_split(&test, o.data, 1, 1)) return 2;
    side = test.h;
    C = test.c;
    dfn_image_set_free(&test, NULL);
    if (lm.info.net != DFN_NET_UNET || lm.info.unet.channels != C || lm.info.unet.cond_channels ||
        lm.info.unet.height != lm.info.unet.width ||
        (lm.info.unet.height != side && 2 * lm.info.unet.height != side)) {
        fprintf(stderr, "image_quality: %s is not a %dx%d or %dx%d U-Net of %d channel%s without "
                        "conditioning images (the images of %s)\n", o.model, side, side, side / 2, side / 2, C,
                C == 1 ? "" : "s", o.data);
        return 2;
    }
    net = lm.ema && !o.raw ? &lm.ema_unet : &lm.unet;
    H = lm.info.unet.height;
    D = H * H * C;
    downsample = side / H;
    N = (int)o.n;
    printf("model %s: %dx%d U-Net, base %d channels, %lu parameters, %s weights, T = %d%s\n",
           o.model, H, H, lm.info.unet.base_channels, (unsigned long)lm.unet.count,
           lm.ema && !o.raw ? "EMA" : lm.ema ? "raw (--raw)" : "raw (no EMA in the file)", lm.schedule.T,
           lm.info.unet.num_classes ? ", class-conditional" : "");
    {
        /* the process is the file's (its stored schedule and prediction) */
        static const char *const kinds[] = { "linear", "cosine", "sigmoid", "custom", "flow" };
        static const char *const preds[] = { "eps", "v", "x0", "velocity (eps - x0)" };
        int sk = (int)lm.schedule.config.kind, pk = (int)lm.info.unet.prediction, zero_snr;
        dfn_sampler_kind kind = (dfn_sampler_kind)dfn_sampler_kind_parse(o.sampler);
        dfn_spacing sp = (dfn_spacing)dfn_spacing_parse(o.spacing);
        printf("  process: %s, %s schedule%s, %s prediction\n",
               lm.schedule.process == DFN_PROCESS_FLOW ? "rectified flow (MATH.md section 12)" : "vp",
               sk >= 0 && sk <= 4 ? kinds[sk] : "?", lm.schedule.config.zero_terminal_snr ? " (zero terminal SNR)" : "",
               pk >= 0 && pk <= 3 ? preds[pk] : "?");
        /* refuse what the sampler would refuse, before the classifier's training */
        zero_snr = !(lm.schedule.sqrt_alphabar[lm.schedule.T] > 0.0f);
        if (kind != DFN_SAMPLER_DDPM && zero_snr && (sp == DFN_SPACING_LOGSNR || sp == DFN_SPACING_KARRAS)) {
            fprintf(stderr, "image_quality: --spacing %s needs a finite log-SNR at t = T, and this %s model's\n"
                            "  schedule ends at a_T = 0: use trailing (the default), shifted, linspace or leading\n",
                    o.spacing, lm.schedule.process == DFN_PROCESS_FLOW ? "flow" : "zero-terminal-SNR");
            return 2;
        }
        if (kind != DFN_SAMPLER_DDPM && zero_snr && lm.schedule.process == DFN_PROCESS_VP &&
            (kind == DFN_SAMPLER_EULER || kind == DFN_SAMPLER_HEUN || kind == DFN_SAMPLER_MIDPOINT)) {
            fprintf(stderr, "image_quality: --sampler %s steps in sigma = s/a, infinite at t = T on this\n"
                            "  zero-terminal-SNR schedule: use ddim or a dpm++ kind\n", o.sampler);
            return 2;
        }
        if (kind != DFN_SAMPLER_DDPM && o.steps > lm.schedule.T) {
            fprintf(stderr, "image_quality: --steps %ld is more than the model's T = %d\n", o.steps, lm.schedule.T);
            return 2;
        }
    }

    /* 1. the classifier */
    if (!load_split(&train, o.data, 0, downsample) || !load_split(&test, o.data, 1, downsample))
        return 2;
    M = N < test.n ? N : test.n;
    for (i = 0; i < train.n; i++) {
        if (train.labels[i] >= DG_MAX_CLASSES) { fprintf(stderr, "image_quality: label %d\n", train.labels[i]); return 2; }
        if (train.labels[i] >= K) K = train.labels[i] + 1;
    }
    for (i = 0; i < test.n; i++)
        if (test.labels[i] >= K) { fprintf(stderr, "image_quality: a test label (%d) the training set lacks\n", test.labels[i]); return 2; }
    for (i = 0; i < train.n; i++) share[train.labels[i]]++;
    class_names(o.data, K, names);
    digits = K == 10 && C == 1;                     /* the digits' fixed targets */
    cc = dg_config_default(H, H);
    cc.c = C;
    cc.classes = K < 2 ? 2 : K;
    tc.epochs = o.epochs > 0 ? (int)o.epochs : (45000 + train.n - 1) / train.n;
    if (dg_net_alloc(&clf, &cc) != 0) { fprintf(stderr, "image_quality: out of memory\n"); return 2; }
    t0 = wall();
    if (dg_train(&clf, &tc, train.images, train.labels, train.n, &loss) != 0) {
        fprintf(stderr, "image_quality: classifier training failed\n");
        return 2;
    }
    acc = dg_accuracy(&clf, test.images, test.labels, test.n);
    printf("classifier: %dx%dx%d CNN, %d classes (%lu parameters), %d epochs on %d images in %.1f s, "
           "last-epoch loss %.4f\n", H, H, C, K, (unsigned long)clf.lay.count, tc.epochs, train.n,
           wall() - t0, loss);
    printf("classifier test accuracy: %.2f%% (%d held-out images)\n", 100.0 * acc, test.n);

    /* 2. samples */
    x = (float *)malloc((size_t)N * D * sizeof(float));
    noise = (float *)malloc((size_t)N * D * sizeof(float));
    realsub = (float *)malloc((size_t)N * D * sizeof(float));
    cls = (int *)malloc((size_t)N * sizeof(int));
    conf = (float *)malloc((size_t)N * sizeof(float));
    feat_s = (float *)malloc((size_t)4 * N * cc.hidden * sizeof(float));
    if (!x || !noise || !realsub || !cls || !conf || !feat_s) {
        fprintf(stderr, "image_quality: out of memory\n");
        return 2;
    }
    feat_t = feat_s + (size_t)N * cc.hidden;
    feat_r = feat_t + (size_t)N * cc.hidden;
    feat_n = feat_r + (size_t)N * cc.hidden;
    if (o.cond_only && lm.info.unet.num_classes != K) {
        fprintf(stderr, "image_quality: --conditional-only needs a model of %d classes\n", K);
        return 2;
    }
    if (o.cond_only) {
        printf("unconditional samples skipped (--conditional-only)\n");
        for (i = 0; i < N * D; i++) x[i] = -1.0f;          /* a placeholder, not scored */
    } else {
        printf("sampling%s:\n", lm.info.unet.num_classes ? " (no class: label -1)" : "");
        if (!sample(&lm, net, &o, N, NULL, 0, x)) return 2;
    }
    if (o.grid && !o.cond_only) {
        int cols = 10, n = N < 100 ? N : 100, gh, gw;
        float *g;
        dfn_image_grid(NULL, 0, x, n, H, H, C, cols, 1, 1.0f, &gh, &gw);
        g = (float *)malloc((size_t)gh * gw * C * sizeof(float));
        if (g && dfn_image_grid(g, (size_t)gh * gw * C, x, n, H, H, C, cols, 1, 1.0f, NULL, NULL) == DFN_OK) {
            for (i = 0; i < gh * gw * C; i++) g[i] = g[i] < -1.0f ? -1.0f : g[i] > 1.0f ? 1.0f : g[i];
            if (check(dfn_png_save(o.grid, g, gh, gw, C), o.grid)) printf("  wrote %s\n", o.grid);
        }
        free(g);
    }

    /* 3. scores */
    if (dg_classify(&clf, x, N, cls, conf, feat_s) != 0 ||
        dg_classify(&clf, test.images, M, NULL, NULL, feat_t) != 0) {
        fprintf(stderr, "image_quality: out of memory\n");
        return 2;
    }
    dfn_rng_seed(&rng, (uint64_t)o.seed, 11);
    {                                               /* N training images, without replacement */
        int *perm = (int *)malloc((size_t)train.n * sizeof(int));
        if (!perm) { fprintf(stderr, "image_quality: out of memory\n"); return 2; }
        for (i = 0; i < train.n; i++) perm[i] = i;
        for (i = 0; i < N; i++) {                   /* a partial Fisher-Yates shuffle */
            int j = i < train.n ? i + (int)dfn_rng_below(&rng, (uint32_t)(train.n - i))
                                : (int)dfn_rng_below(&rng, (uint32_t)train.n), tmp;
            if (i < train.n) { tmp = perm[i]; perm[i] = perm[j]; perm[j] = tmp; j = perm[i]; }
            memcpy(realsub + (size_t)i * D, train.images + (size_t)j * D, (size_t)D * sizeof(float));
        }
        free(perm);
    }
    dfn_rng_normal_fill(&rng, noise, (size_t)N * D);        /* dg_classify clips to [-1, 1] */
    if (dg_classify(&clf, realsub, N, NULL, NULL, feat_r) != 0 ||
        dg_classify(&clf, noise, N, NULL, NULL, feat_n) != 0) {
        fprintf(stderr, "image_quality: out of memory\n");
        return 2;
    }
    for (i = 0; i < N; i++) {
        confident += conf[i] >= 0.9f;
        hist[cls[i]]++;
    }
    if (dg_classify(&clf, test.images, M, NULL, conf, NULL) != 0) return 2;
    for (i = 0; i < M; i++) real_confident += conf[i] >= 0.9f;
    fd_s = dg_frechet_features(feat_s, N, feat_t, M, cc.hidden);
    fd_r = dg_frechet_features(feat_r, N, feat_t, M, cc.hidden);
    fd_n = dg_frechet_features(feat_n, N, feat_t, M, cc.hidden);
    if (C == 1) {                                   /* grain (grey images) */
        int *stack = (int *)malloc((size_t)H * H * sizeof(int));
        unsigned char *seen = (unsigned char *)malloc((size_t)H * H);
        if (!stack || !seen) { fprintf(stderr, "image_quality: out of memory\n"); return 2; }
        stray_s = stray_pixels(x, N, H, H, stack, seen);
        stray_r = stray_pixels(test.images, M, H, H, stack, seen);
        free(stack);
        free(seen);
    }
    a_min = digits ? 0.8 : 0.8 * real_confident / M;
    pass_a = confident >= a_min * N;
    pass_b = hist_ok(hist, share, K, N, train.n, digits);
    pass_c = fd_s < 0.25 * fd_n;
    if (o.cond_only) pass_a = pass_b = pass_c = 1;
    else printf("\n(a) confident (p >= 0.9):   %5.1f%% of %d samples          target >= %.0f%%   %s\n",
           100.0 * confident / N, N, 100.0 * a_min, verdict(pass_a));
    printf("                            %5.1f%% of %d real test images (reference)\n", 100.0 * real_confident / M, M);
    if (!o.cond_only) {
        print_hist("(b) class histogram:       ", hist, share, K, N, train.n, names, "data");
        printf("                            %s   %s\n",
               digits ? "every class 5-15%                     " : "every class 0.5-1.5x its training share",
               verdict(pass_b));
    }
    printf("(c) Frechet distance (%d penultimate features, vs %d test images):\n", cc.hidden, M);
    if (!o.cond_only)
        printf("      samples  vs real     %10.3f                target < %.3f   %s\n", fd_s,
               0.25 * fd_n, verdict(pass_c));
    printf("      real     vs real     %10.3f   (floor: %d training images)\n", fd_r, N);
    printf("      noise    vs real     %10.3f   (N(0, I) clipped to [-1, 1])\n", fd_n);
    if (C == 1)
        printf("(d) grain: stray lit pixels per image (outside the largest 8-connected stroke):\n"
               "      samples %6.2f   real test images %6.2f\n", o.cond_only ? 0.0 : stray_s, stray_r);

    /* 4. class-conditional models */
    if (lm.info.unet.num_classes == K) {
        int right = 0, per[DG_MAX_CLASSES] = {0}, asked[DG_MAX_CLASSES] = {0}, even[DG_MAX_CLASSES];
        labels = (int *)malloc((size_t)N * sizeof(int));
        if (!labels) { fprintf(stderr, "image_quality: out of memory\n"); return 2; }
        for (i = 0; i < N; i++) labels[i] = i % K;
        for (k = 0; k < K; k++) even[k] = 1;           /* the labels asked are uniform */
#ifdef IQ_GUIDANCE
        printf("\nsampling with labels 0..%d, each class equally often:\n", K - 1);
#else
        printf("\nsampling with labels 0..%d, each class equally often (no guidance: w = 1):\n", K - 1);
#endif
        if (!sample(&lm, net, &o, N, labels, 1, x)) return 2;
        if (dg_classify(&clf, x, N, cls, conf, feat_s) != 0) return 2;
        for (i = 0; i < N; i++) {
            asked[labels[i]]++;
            right += cls[i] == labels[i];
            per[labels[i]] += cls[i] == labels[i];
        }
        printf("classified as the asked class: %.1f%%  (per class:", 100.0 * right / N);
        for (k = 0; k < K; k++) printf(" %s:%.0f%%", names[k], 100.0 * per[k] / (asked[k] ? asked[k] : 1));
        printf(")\n");
        printf("  (the classifier on real test images: %.1f%% right)\n", 100.0 * acc);
        {
            /* the same three figures for these samples (the class-conditional
               grid is what examples/mnist.c draws by default); the histogram
               is of the classifier's answers, the labels being uniform */
            int conf2 = 0, hist2[DG_MAX_CLASSES] = {0}, pa, pb, pc;
            double fd2;
            for (i = 0; i < N; i++) {
                conf2 += conf[i] >= 0.9f;
                hist2[cls[i]]++;
            }
            fd2 = dg_frechet_features(feat_s, N, feat_t, M, cc.hidden);
            pa = conf2 >= a_min * N;
            pb = hist_ok(hist2, even, K, N, K, digits);
            pc = fd2 < 0.25 * fd_n;
            printf("(a) confident (p >= 0.9):   %5.1f%% of %d samples          target >= %.0f%%   %s\n",
                   100.0 * conf2 / N, N, 100.0 * a_min, verdict(pa));
            print_hist("(b) class histogram:       ", hist2, even, K, N, K, names, "asked");
            printf("                            %s   %s\n",
                   digits ? "every class 5-15%                     " : "every class 0.5-1.5x 1/K (asked evenly)",
                   verdict(pb));
            printf("(c) Frechet distance:        %8.3f                target < %.3f   %s\n", fd2, 0.25 * fd_n,
                   verdict(pc));
            if (C == 1) {
                int *stack = (int *)malloc((size_t)H * H * sizeof(int));
                unsigned char *seen = (unsigned char *)malloc((size_t)H * H);
                if (!stack || !seen) { fprintf(stderr, "image_quality: out of memory\n"); return 2; }
                printf("(d) grain: stray lit pixels per image %6.2f   (real test images %.2f)\n",
                       stray_pixels(x, N, H, H, stack, seen), stray_r);
                free(stack);
                free(seen);
            }
            printf("quality targets, class-conditional samples: %s\n", pa && pb && pc ? "PASS" : "FAIL");
        }
    } else if (lm.info.unet.num_classes > 0) {
        printf("\n(the model has %d classes, the data %d: no class-conditional score)\n",
               lm.info.unet.num_classes, K);
    }

    printf("\nquality targets, unconditional samples (label -1 for a class-conditional model): %s\n",
           o.cond_only ? "skipped" : pass_a && pass_b && pass_c ? "PASS" : "FAIL");
    free(x); free(noise); free(realsub); free(cls); free(conf); free(feat_s); free(labels);
    dg_net_free(&clf);
    dfn_image_set_free(&train, NULL);
    dfn_image_set_free(&test, NULL);
    dfn_model_free(&lm, NULL);
    return o.strict && !(pass_a && pass_b && pass_c) ? 1 : 0;
}
