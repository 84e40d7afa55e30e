/* guided2d.c - ask a diffusion model for "cluster k": guidance in 2D.

   1. Data: the 8 Gaussians on a circle; the class of a point is the
      component it was drawn from (0 = east, counting counter-clockwise).
   2. A class-conditional MLP learns eps(x_t, t, c) with the label dropped
      to "none" (-1) with probability p_uncond = 0.1, so the same network
      is also the unconditional model (MATH.md section 8).
   3. Classifier-free guidance: eps = eps(null) + w (eps(c) - eps(null)),
      sampled with DDIM-50 for w = 0 (unconditional), 1 (conditional), 3
      and 7 (sharper). Printed: the share of samples in the asked cluster
      and their spread; pictured: one SVG panel per w.
   4. The guidance hook: classifier guidance with a small noise-aware
      classifier p(y | x_t, t) trained on noised points (its input gradient
      from the library's backward passes), and constraint guidance keeping
      samples in the half-plane x <= 0, both on the unconditional model.

   Build and run from the repository root:  make guided2d
   (or ./build/guided2d --help)
*/
#define DIFFUSION_IMPLEMENTATION
#include "diffusion.h"
#define EX_NAME "guided2d"
#include "common.h"
#include "plot.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CLASSES 8

static void usage(FILE *f)
{
    fprintf(f,
        "usage: guided2d [options]\n"
        "  --steps N        training steps of the conditional MLP (default 3000)\n"
        "  --n N            samples per class and per setting (default 250)\n"
        "  --p-uncond P     probability of dropping the label in training (default 0.1)\n"
        "  --seed S         random seed (default 1)\n"
        "  --out FILE.svg   the panel of w = 0, 1, 3, 7 (default guided2d.svg)\n"
        "  --help           this text\n");
}

/* The data set as a dfn_gmm (section 9): component k at angle k pi/4. */
static float means[2 * CLASSES], stds[CLASSES], weights[CLASSES];
static dfn_gmm eight_gaussians(void)
{
    dfn_gmm g;
    int k;
    for (k = 0; k < CLASSES; k++) {
        means[2 * k] = (float)(DFN_DATA2D_GAUSSIANS8_RADIUS * cos(k * 3.14159265358979 / 4));
        means[2 * k + 1] = (float)(DFN_DATA2D_GAUSSIANS8_RADIUS * sin(k * 3.14159265358979 / 4));
        stds[k] = DFN_DATA2D_GAUSSIANS8_STD;
        weights[k] = 1.0f;
    }
    g.k = CLASSES; g.dim = 2; g.weights = weights; g.means = means; g.stds = stds;
    return g;
}

static int nearest(const float *x)
{
    int k, best = 0;
    double bd = 1e300;
    for (k = 0; k < CLASSES; k++) {
        double dx = x[0] - means[2 * k], dy = x[1] - means[2 * k + 1];
        if (dx * dx + dy * dy < bd) { bd = dx * dx + dy * dy; best = k; }
    }
    return best;
}

/* Share of samples in their asked cluster, and the RMS distance of those
   samples to the cluster's center (the data's own is sqrt(2) std = 0.246). */
static void measure(const float *x, const int *labels, int n, double *share, double *rms)
{
    int i, hit = 0;
    double d2 = 0;
    for (i = 0; i < n; i++) {
        const float *m = means + 2 * labels[i];
        if (nearest(x + 2 * i) != labels[i]) continue;
        hit++;
        d2 += (x[2 * i] - m[0]) * (x[2 * i] - m[0]) + (x[2 * i + 1] - m[1]) * (x[2 * i + 1] - m[1]);
    }
    *share = (double)hit / n;
    *rms = hit ? sqrt(d2 / hit) : 0;
}

/* One sampler run: DDIM-50 on the model, labels, guidance scale w, an
   optional guidance hook. */
static void sample(const dfn_schedule *s, dfn_mlp_predictor *p, const int *labels, int n, float w,
                   dfn_guide_fn guide, void *guide_user, float *x, dfn_rng *rng)
{
    dfn_sampler smp;
    dfn_sampler_config cfg = dfn_mlp_sampler_config(DFN_SAMPLER_DDIM, n, p);
    cfg.steps = 50;
    cfg.labels = labels;
    cfg.guidance_scale = w;
    cfg.guide = guide;
    cfg.guide_user = guide_user;
    ex_require(dfn_sampler_alloc(&smp, &cfg, s, NULL), "sampler");
    ex_require(dfn_sampler_run(&smp, x, NULL, rng), "sampling");
    dfn_sampler_free(&smp, NULL);
}

/* The SVG panel: one square per w, samples colored by their asked class. */
static int write_panel(const char *path, const float *const *xs, const float *ws, int panels,
                       const int *labels, int n)
{
    static const char *colors[CLASSES] = { "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728",
                                           "#9467bd", "#8c564b", "#e377c2", "#17becf" };
    const double lo = -2.2, hi = 2.2, side = 260, gap = 20, top = 50;
    int p, i, bad = 0;
    FILE *f = fopen(path, "w");
    if (!f) return -1;
    bad |= fprintf(f, "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%d\" height=\"%d\" "
                      "font-family=\"sans-serif\">\n<rect width=\"100%%\" height=\"100%%\" fill=\"white\"/>\n",
                   (int)(panels * (side + gap) + gap), (int)(top + side + 40)) < 0;
    bad |= fprintf(f, "<text x=\"%d\" y=\"22\" font-size=\"16\">Classifier-free guidance on the 8 Gaussians: "
                      "color = asked cluster, DDIM-50</text>\n", (int)gap) < 0;
    for (p = 0; p < panels; p++) {
        double x0 = gap + p * (side + gap);
        bad |= fprintf(f, "<text x=\"%.0f\" y=\"%.0f\" font-size=\"14\" text-anchor=\"middle\">w = %g%s</text>\n",
                       x0 + side / 2, top - 8, ws[p], ws[p] == 0 ? " (unconditional)" : ws[p] == 1 ? " (conditional)" : "") < 0;
        bad |= fprintf(f, "<rect x=\"%.0f\" y=\"%.0f\" width=\"%.0f\" height=\"%.0f\" fill=\"none\" stroke=\"black\"/>\n",
                       x0, top, side, side) < 0;
        for (i = 0; i < n && !bad; i++) {
            double x = xs[p][2 * i], y = xs[p][2 * i + 1];
            if (!(x >= lo && x <= hi && y >= lo && y <= hi)) continue;
            bad |= fprintf(f, "<circle cx=\"%.1f\" cy=\"%.1f\" r=\"1.6\" fill=\"%s\" fill-opacity=\"0.6\"/>\n",
                           x0 + (x - lo) / (hi - lo) * side, top + (hi - y) / (hi - lo) * side,
                           colors[labels[i] % CLASSES]) < 0;
        }
    }
    bad |= fprintf(f, "</svg>\n") < 0;
    bad |= fclose(f) != 0;
    return bad ? -2 : 0;
}

int main(int argc, char **argv)
{
    static const float ws[4] = { 0.0f, 1.0f, 3.0f, 7.0f };
    const char *out = "guided2d.svg";
    long steps = 3000, per = 250, seed = 1;
    double p_uncond = 0.1;
    dfn_gmm g = eight_gaussians();
    dfn_schedule sched;
    dfn_schedule_config sc = dfn_schedule_config_default(DFN_SCHEDULE_LINEAR, 1000);
    dfn_mlp_config mc = dfn_mlp_config_default(2);
    dfn_train_config tc = dfn_train_config_default();
    dfn_mlp model;
    dfn_trainer tr;
    dfn_mlp_predictor pred;
    dfn_classifier clf;
    dfn_classifier_trainer ctr;
    dfn_classifier_guidance cg;
    dfn_halfspace_guidance hs;
    dfn_rng rng;
    float *params, *cparams, *batch, *xs[4], *x, loss = 0, half_a[2] = { 1.0f, 0.0f };
    int *labels, *bl, n, i, k;
    void *cmem;
    double share, rms;

    for (i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        long *num = NULL, lo = 1, hi = 100000;
        if (!strcmp(a, "--help")) { usage(stdout); return 0; }
        if (!v) { fprintf(stderr, "guided2d: %s needs a value\n", a); return 1; }
        i++;
        if (!strcmp(a, "--out")) out = v;
        else if (!strcmp(a, "--p-uncond")) {
            char *end;
            p_uncond = strtod(v, &end);
            if (end == v || *end || !(p_uncond >= 0 && p_uncond <= 1)) { fprintf(stderr, "guided2d: bad --p-uncond\n"); return 1; }
        }
        else if (!strcmp(a, "--steps")) { num = &steps; lo = 0; hi = 10000000; }
        else if (!strcmp(a, "--n")) num = &per;
        else if (!strcmp(a, "--seed")) { num = &seed; lo = 0; hi = 2147483647; }
        else { fprintf(stderr, "guided2d: unknown option %s\n", a); usage(stderr); return 1; }
        if (num && (*num = ex_number(v, lo, hi)) < 0) { fprintf(stderr, "guided2d: bad value '%s' for %s\n", v, a); return 1; }
    }
    n = (int)per * CLASSES;
    dfn_rng_seed(&rng, (uint64_t)seed, 0);
    ex_require(dfn_schedule_alloc(&sched, &sc, NULL), "schedule");

    /* 1-2. The class-conditional MLP, trained with label dropout. */
    mc.hidden = 64; mc.blocks = 2; mc.num_classes = CLASSES;
    tc.lr = 3e-3f; tc.warmup_steps = 100; tc.total_steps = (int)steps; tc.p_uncond = (float)p_uncond;
    params = (float *)malloc(dfn_mlp_num_params(&mc) * sizeof(float));
    batch = (float *)malloc(sizeof(float) * tc.batch * 2);
    bl = (int *)malloc(sizeof(int) * tc.batch);
    if (!params || !batch || !bl) return 1;
    ex_require(dfn_mlp_init(&model, &mc, params), "model");
    ex_require(dfn_mlp_init_weights(&model, &rng), "weights");
    ex_require(dfn_trainer_alloc(&tr, &model, &sched, &tc, NULL), "trainer");
    printf("training a conditional MLP (%d parameters, 8 classes, p_uncond %.1f) for %ld steps...\n",
           (int)dfn_mlp_num_params(&mc), tc.p_uncond, steps);
    for (k = 0; k < steps; k++) {
        ex_require(dfn_gmm_sample(&g, &rng, batch, bl, tc.batch), "data");
        ex_require(dfn_train_step(&tr, batch, bl, &rng, &loss), "training step");
    }
    printf("  final loss %.4f\n", loss);
    pred.model = tr.ema_model.params ? &tr.ema_model : &model;
    pred.work_bytes = dfn_mlp_forward_size(&mc, 1024);
    pred.work = malloc(pred.work_bytes);
    labels = (int *)malloc(sizeof(int) * n);
    for (i = 0; i < 4; i++) xs[i] = (float *)malloc(sizeof(float) * n * 2);
    if (!pred.work || !labels) return 1;
    for (i = 0; i < n; i++) labels[i] = i % CLASSES;

    /* 3. Classifier-free guidance: the effect of w. */
    printf("\nclassifier-free guidance, DDIM-50, %d samples per setting (cluster k asked for sample i, k = i mod 8):\n", n);
    printf("  %-22s %16s %22s\n", "", "in asked cluster", "RMS distance to center");
    for (i = 0; i < 4; i++) {
        sample(&sched, &pred, labels, n, ws[i], NULL, NULL, xs[i], &rng);
        measure(xs[i], labels, n, &share, &rms);
        printf("  w = %-18g %15.1f%% %22.3f\n", ws[i], 100 * share, rms);
    }
    printf("  (data: 12.5%% by chance, RMS distance %.3f)\n", sqrt(2.0) * DFN_DATA2D_GAUSSIANS8_STD);
    printf("  w = 0 uses the null label, which the network saw in only %.0f%% of its training examples:\n"
           "  it is its least trained part (more --steps or a larger --p-uncond help). w > 1 trades\n"
           "  spread for separation: clusters shrink and move outwards.\n", 100 * p_uncond);
    if (write_panel(out, (const float *const *)xs, ws, 4, labels, n) == 0) printf("wrote %s\n", out);
    else fprintf(stderr, "guided2d: could not write %s\n", out);
    printf("\n");
    plot_density_pair(stdout, "w = 0 (unconditional)", xs[0], n, "w = 3 (guided)", xs[2], n, -2.2f, 2.2f, 44, 22);

    /* 4a. Classifier guidance on the unconditional model (w = 0). */
    {
        dfn_classifier_config cc = dfn_classifier_config_default(2, CLASSES);
        size_t bytes = dfn_classifier_trainer_size(&cc, 256);
        float cl = 0;
        cparams = (float *)malloc(sizeof(float) * dfn_classifier_num_params(&cc));
        cmem = malloc(bytes);
        if (!cparams || !cmem) return 1;
        ex_require(dfn_classifier_init(&clf, &cc, cparams), "classifier");
        ex_require(dfn_classifier_init_weights(&clf, &rng), "classifier weights");
        ex_require(dfn_classifier_trainer_init(&ctr, &clf, &sched, 256, 3e-3f, cmem, bytes), "classifier trainer");
        for (k = 0; k < 1500; k++) {
            ex_require(dfn_gmm_sample(&g, &rng, batch, bl, 256), "data");
            ex_require(dfn_classifier_train_step(&ctr, batch, bl, &rng, &cl), "classifier step");
        }
        printf("\nclassifier guidance on the unconditional model (w = 0): noise-aware classifier, "
               "1500 steps, cross-entropy %.3f\n", cl);
        cg.clf = &clf;
        cg.work_bytes = dfn_classifier_work_size(&cc, n);
        cg.work = malloc(cg.work_bytes);
        cg.grad = (float *)malloc(sizeof(float) * n * 2);
        if (!cg.work || !cg.grad) return 1;
        x = xs[3];
        for (i = 0; i < 3; i++) {
            static const float scales[3] = { 0.0f, 1.0f, 3.0f };
            cg.scale = scales[i];
            sample(&sched, &pred, labels, n, 0.0f, dfn_classifier_guide, &cg, x, &rng);
            measure(x, labels, n, &share, &rms);
            printf("  classifier scale %-6g %14.1f%% in the asked cluster, RMS distance %.3f\n", scales[i],
                   100 * share, rms);
        }
        free(cg.work); free(cg.grad); free(cparams); free(cmem);
    }

    /* 4b. Constraint guidance: stay in x <= 0. */
    hs.a = half_a; hs.b = 0.0f; hs.strength = 1.0f;
    for (i = 0; i < 2; i++) {
        int right = 0, j;
        sample(&sched, &pred, labels, n, 0.0f, i ? dfn_halfspace_guide : NULL, &hs, x, &rng);
        for (j = 0; j < n; j++) right += x[2 * j] > 0.0f;
        printf("%s  %-24s %5.1f%% of the samples have x > 0\n", i ? "" : "\nconstraint guidance (half-plane x <= 0, unconditional model):\n",
               i ? "with the constraint:" : "without:", 100.0 * right / n);
    }

    for (i = 0; i < 4; i++) free(xs[i]);
    free(labels); free(pred.work); free(params); free(batch); free(bl);
    dfn_trainer_free(&tr, NULL);
    dfn_schedule_free(&sched, NULL);
    return 0;
}
