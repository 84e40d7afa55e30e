/* samplers.c - sample quality per network evaluation, for every sampler.

   A sampler turns a noise predictor into samples by integrating the
   reverse process from t = T to t = 0; what it costs is the number of
   network evaluations (NFE). This program puts the samplers of diffusion.h
   side by side (MATH.md sections 6, 7 and 11):

     DDIM (= Euler in sigma)      first order, one evaluation per step
     Heun                          second order, two evaluations per step
     DPM-Solver++(2M), (3M)        multistep: re-use the last x0 estimates
     SDE-DPM-Solver++(2M)          the same with fresh noise each step

   each with three spacings of the steps: trailing (uniform in t),
   logSNR-uniform and Karras. Two kinds of predictor:

   1. exact: the closed-form Bayes predictor of a Gaussian mixture (MATH.md
      section 9), so the table shows the samplers' own error with no
      training error in the way: the 8 Gaussians, and a sharp mixture
      (components much narrower than the distance between them);
   2. mlp: the default MLP of `make demo`, trained here on each built-in
      2D data set.

   Each cell is MMD^2 (RBF, h = 0.05, the unbiased U-statistic: about 0
   for samples as good as data; the V-statistic would add ~2e-4 at n =
   10,000 to every cell) and ED^2 of n samples against fresh data (MATH.md
   section 10), next to the noise floor (fresh data against
   fresh data), DDPM with T = 1000 evaluations and N(0, I).

   Build and run from the repository root:  make samplers  (./build/samplers --help) */
#define _POSIX_C_SOURCE 199309L   /* clock_gettime, for ex_wall */
#define DIFFUSION_IMPLEMENTATION
#include "diffusion.h"
#define EX_NAME "samplers"
#include "common.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_NFE 8

typedef struct options {
    const char *part, *data, *markdown, *png;
    long n, train_steps, seed;
    int nfe[MAX_NFE], n_nfe;
} options;

static void usage(FILE *f)
{
    fprintf(f,
        "usage: samplers [options]\n"
        "  --part P         exact, mlp or all (default all)\n"
        "  --data NAME      one data set (exact: 8gaussians, sharp; mlp: a built-in set) or all\n"
        "  --n N            samples per cell (default 10000)\n"
        "  --nfe LIST       network evaluations, comma separated (default 5,10,20,50)\n"
        "  --train-steps N  training steps of each MLP (default 6000, as make demo)\n"
        "  --seed S         random seed (default 1)\n"
        "  --markdown FILE  also write the tables as Markdown\n"
        "  --png FILE       samples of each sampler at 10 NFE, one row per data set\n"
        "  --help           this text\n");
}

static int parse_nfe(const char *s, options *o)
{
    return (o->n_nfe = ex_number_list(s, o->nfe, MAX_NFE, 1, 1000)) > 0;
}

static int parse(int argc, char **argv, options *o)
{
    int i;
    o->part = "all"; o->data = "all"; o->markdown = NULL; o->png = NULL;
    o->n = 10000; o->train_steps = 6000; o->seed = 1;
    parse_nfe("5,10,20,50", o);
    for (i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        long *num = NULL, lo = 1, hi = 100000;
        if (!strcmp(a, "--help")) { usage(stdout); exit(0); }
        if (!v) { fprintf(stderr, "samplers: %s needs a value (see --help)\n", a); return 0; }
        i++;
        if (!strcmp(a, "--part")) o->part = v;
        else if (!strcmp(a, "--data")) o->data = v;
        else if (!strcmp(a, "--markdown")) o->markdown = v;
        else if (!strcmp(a, "--png")) o->png = v;
        else if (!strcmp(a, "--n")) { num = &o->n; lo = 2; }
        else if (!strcmp(a, "--train-steps")) { num = &o->train_steps; lo = 0; hi = 10000000; }
        else if (!strcmp(a, "--seed")) { num = &o->seed; lo = 0; hi = 2147483647; }
        else if (!strcmp(a, "--nfe")) { if (!parse_nfe(v, o)) { fprintf(stderr, "samplers: bad --nfe '%s'\n", v); return 0; } }
        else { fprintf(stderr, "samplers: unknown option %s\n", a); usage(stderr); return 0; }
        if (num && (*num = ex_number(v, lo, hi)) < 0) {
            fprintf(stderr, "samplers: bad value '%s' for %s\n", v, a);
            return 0;
        }
    }
    if (strcmp(o->part, "exact") && strcmp(o->part, "mlp") && strcmp(o->part, "all")) {
        fprintf(stderr, "samplers: --part must be exact, mlp or all\n");
        return 0;
    }
    return 1;
}

/* The rows of a table: a sampler kind and a spacing. */
typedef struct row { dfn_sampler_kind kind; dfn_spacing spacing; const char *name; } row;
static const row rows[] = {
    { DFN_SAMPLER_DDIM,         DFN_SPACING_TRAILING, "DDIM, trailing" },
    { DFN_SAMPLER_DDIM,         DFN_SPACING_LOGSNR,   "DDIM, logSNR" },
    { DFN_SAMPLER_DDIM,         DFN_SPACING_KARRAS,   "DDIM, Karras" },
    { DFN_SAMPLER_HEUN,         DFN_SPACING_TRAILING, "Heun, trailing" },
    { DFN_SAMPLER_HEUN,         DFN_SPACING_LOGSNR,   "Heun, logSNR" },
    { DFN_SAMPLER_HEUN,         DFN_SPACING_KARRAS,   "Heun, Karras" },
    { DFN_SAMPLER_DPMPP_2M,     DFN_SPACING_TRAILING, "DPM++(2M), trailing" },
    { DFN_SAMPLER_DPMPP_2M,     DFN_SPACING_LOGSNR,   "DPM++(2M), logSNR" },
    { DFN_SAMPLER_DPMPP_2M,     DFN_SPACING_KARRAS,   "DPM++(2M), Karras" },
    { DFN_SAMPLER_DPMPP_3M,     DFN_SPACING_TRAILING, "DPM++(3M), trailing" },
    { DFN_SAMPLER_DPMPP_3M,     DFN_SPACING_LOGSNR,   "DPM++(3M), logSNR" },
    { DFN_SAMPLER_DPMPP_3M,     DFN_SPACING_KARRAS,   "DPM++(3M), Karras" },
    { DFN_SAMPLER_DPMPP_2M_SDE, DFN_SPACING_TRAILING, "DPM++(2M) SDE, trailing" },
    { DFN_SAMPLER_DPMPP_2M_SDE, DFN_SPACING_LOGSNR,   "DPM++(2M) SDE, logSNR" },
    { DFN_SAMPLER_DPMPP_2M_SDE, DFN_SPACING_KARRAS,   "DPM++(2M) SDE, Karras" }
};
#define N_ROWS ((int)(sizeof rows / sizeof rows[0]))

/* The rows shown in the picture (at 10 NFE), after the data. */
static const int picture_rows[] = { 0, 1, 4, 7, 10, 13 };
#define N_PICTURE ((int)(sizeof picture_rows / sizeof picture_rows[0]))
#define PANEL 120

/* A data set: where fresh points come from, and the predictor. */
typedef struct source {
    char name[64];
    int have_kind;          /* a built-in set; else the mixture gmm */
    dfn_data2d kind;
    dfn_gmm gmm;
    dfn_predict_fn predict;
    void *predict_user;
    dfn_prediction prediction;
} source;

static void draw(const source *s, dfn_rng *rng, float *xy, int n)
{
    if (s->have_kind) ex_require(dfn_data2d_sample(s->kind, rng, xy, n), "data");
    else ex_require(dfn_gmm_sample(&s->gmm, rng, xy, NULL, n), "data");
}

/* MMD^2(0.05) and ED^2 of x against y. */
static void measure(const float *x, const float *y, int n, double *mmd, double *ed)
{
    ex_require(dfn_mmd_rbf_unbiased(mmd, x, n, y, n, 2, 0.05), "MMD");
    ex_require(dfn_energy_distance(ed, x, n, y, n, 2), "energy distance");
}

/* One run from the shared x_T: kind, spacing, and the step count that
   gives at most `nfe` evaluations (Heun: 2S - 1). */
static void sample(const source *src, const dfn_schedule *sched, dfn_sampler_kind kind,
                   dfn_spacing spacing, int nfe, const float *x_T, float *x, int n, uint64_t seed)
{
    dfn_sampler_config cfg = dfn_sampler_config_default(kind, n, 2, src->predict, src->predict_user);
    dfn_sampler smp;
    dfn_rng rng;
    cfg.prediction = src->prediction;
    cfg.spacing = spacing;
    cfg.steps = kind == DFN_SAMPLER_HEUN ? (nfe + 1) / 2 : nfe;
    ex_require(dfn_sampler_alloc(&smp, &cfg, sched, NULL), "sampler");
    dfn_rng_seed(&rng, seed, 77);                       /* the SDE's noise */
    ex_require(dfn_sampler_run(&smp, x, x_T, &rng), "sampling");
    dfn_sampler_free(&smp, NULL);
}

/* Rasterizes points of [-3, 3]^2 into a PANEL x PANEL grey image: white,
   darker where more points fall. */
static void rasterize(const float *x, int n, float *img)
{
    int i, p;
    float *count = (float *)calloc(PANEL * PANEL, sizeof(float)), mx = 0.0f;
    if (!count) exit(1);
    for (i = 0; i < n; i++) {
        int c = (int)((x[2 * i] + 3.0f) / 6.0f * PANEL), r = (int)((3.0f - x[2 * i + 1]) / 6.0f * PANEL);
        if (c >= 0 && c < PANEL && r >= 0 && r < PANEL) count[r * PANEL + c] += 1.0f;
    }
    for (p = 0; p < PANEL * PANEL; p++) if (count[p] > mx) mx = count[p];
    for (p = 0; p < PANEL * PANEL; p++)   /* sqrt: faint tails stay visible */
        img[p] = 1.0f - 2.0f * (mx > 0 ? sqrtf(count[p] / mx) : 0.0f);
    free(count);
}

static FILE *md;   /* the Markdown copy, or NULL */

static void out(const char *fmt, const char *text)
{
    printf(fmt, text);
    if (md) fprintf(md, fmt, text);
}

/* The whole table of one data set; picture: PANEL^2 images, 1 + N_PICTURE. */
static void table(const options *o, const source *src, const dfn_schedule *sched, float *picture)
{
    int n = (int)o->n, r, k;
    float *x_T = (float *)malloc(sizeof(float) * 2 * (size_t)n);
    float *x = (float *)malloc(sizeof(float) * 2 * (size_t)n);
    float *y = (float *)malloc(sizeof(float) * 2 * (size_t)n);
    double mmd, ed, t0 = ex_wall();
    char cell[192];
    dfn_rng rng;
    if (!x_T || !x || !y) exit(1);
    dfn_rng_seed(&rng, (uint64_t)o->seed, 5);
    draw(src, &rng, y, n);                       /* the fresh data every cell is compared with */
    dfn_rng_normal_fill(&rng, x_T, 2 * (size_t)n);  /* one x_T for every sampler */

    printf("\n");
    out("### %s\n\n", src->name);
    snprintf(cell, sizeof cell, "unbiased MMD^2(0.05) / ED^2 of %d samples against fresh data; "
             "Heun's NFE is 2S - 1 (S = (NFE + 1) / 2 steps)", n);
    out("%s\n\n| sampler, spacing |", cell);
    for (k = 0; k < o->n_nfe; k++) { snprintf(cell, sizeof cell, " NFE %d |", o->nfe[k]); out("%s", cell); }
    out("%s\n|---|", "");
    for (k = 0; k < o->n_nfe; k++) out("%s", "---|");
    out("%s\n", "");
    for (r = 0; r < N_ROWS; r++) {
        out("| %s |", rows[r].name);
        for (k = 0; k < o->n_nfe; k++) {
            sample(src, sched, rows[r].kind, rows[r].spacing, o->nfe[k], x_T, x, n, (uint64_t)o->seed);
            measure(x, y, n, &mmd, &ed);
            snprintf(cell, sizeof cell, " %.1e / %.1e |", mmd, ed);
            out("%s", cell);
            fflush(stdout);
            if (picture && o->nfe[k] == 10) {
                int p;
                for (p = 0; p < N_PICTURE; p++)
                    if (picture_rows[p] == r) rasterize(x, n, picture + (size_t)(1 + p) * PANEL * PANEL);
            }
        }
        out("%s\n", "");
    }
    /* DDPM with every one of the T steps: what the solvers try to reach in fewer. */
    {
        dfn_sampler_config cfg = dfn_sampler_config_default(DFN_SAMPLER_DDPM, n, 2, src->predict,
                                                            src->predict_user);
        dfn_sampler smp;
        cfg.prediction = src->prediction;
        ex_require(dfn_sampler_alloc(&smp, &cfg, sched, NULL), "DDPM sampler");
        ex_require(dfn_sampler_run(&smp, x, x_T, &rng), "DDPM sampling");
        dfn_sampler_free(&smp, NULL);
        measure(x, y, n, &mmd, &ed);
        snprintf(cell, sizeof cell, "| DDPM, %d NFE | %.1e / %.1e |", sched->T, mmd, ed);
        out("%s\n", cell);
    }
    draw(src, &rng, x, n);
    measure(x, y, n, &mmd, &ed);
    snprintf(cell, sizeof cell, "| noise floor: data vs data | %.1e / %.1e |", mmd, ed);
    out("%s\n", cell);
    if (picture) rasterize(x, n, picture);
    dfn_rng_normal_fill(&rng, x, 2 * (size_t)n);
    measure(x, y, n, &mmd, &ed);
    snprintf(cell, sizeof cell, "| baseline: N(0, I) vs data | %.1e / %.1e |", mmd, ed);
    out("%s\n\n", cell);
    printf("(%.0f s)\n", ex_wall() - t0);
    free(x_T); free(x); free(y);
}

/* The sharp mixture: 6 components of std 0.03 on a circle of radius 1.5
   (neighbours 1.5 apart, 50 standard deviations), unequal weights. */
static const float sharp_w[6] = { 1, 2, 1, 2, 1, 2 };
static float sharp_mu[12], sharp_sd[6];

static dfn_gmm sharp_mixture(void)
{
    dfn_gmm g;
    int k;
    for (k = 0; k < 6; k++) {
        sharp_mu[2 * k] = (float)(1.5 * cos(k * 3.14159265358979 / 3));
        sharp_mu[2 * k + 1] = (float)(1.5 * sin(k * 3.14159265358979 / 3));
        sharp_sd[k] = 0.03f;
    }
    g.k = 6; g.dim = 2; g.weights = sharp_w; g.means = sharp_mu; g.stds = sharp_sd;
    return g;
}

static float g8_w[8], g8_mu[16], g8_sd[8];

/* DFN_DATA2D_GAUSSIANS8 as the dfn_gmm its documentation gives. */
static dfn_gmm eight_gaussians(void)
{
    const float R = DFN_DATA2D_GAUSSIANS8_RADIUS, D = DFN_DATA2D_GAUSSIANS8_DIAGONAL;
    const float mu[16] = { R, 0, D, D, 0, R, -D, D, -R, 0, -D, -D, 0, -R, D, -D };
    dfn_gmm g;
    int k;
    for (k = 0; k < 8; k++) { g8_w[k] = 1; g8_sd[k] = DFN_DATA2D_GAUSSIANS8_STD; }
    memcpy(g8_mu, mu, sizeof mu);
    g.k = 8; g.dim = 2; g.weights = g8_w; g.means = g8_mu; g.stds = g8_sd;
    return g;
}

int main(int argc, char **argv)
{
    options o;
    dfn_schedule sched;
    dfn_schedule_config sc = dfn_schedule_config_default(DFN_SCHEDULE_LINEAR, 1000);
    float *picture = NULL;
    int n_pic_rows = 0, max_pic_rows = 8, d;
    if (!parse(argc, argv, &o)) return 2;
    ex_require(dfn_schedule_alloc(&sched, &sc, NULL), "schedule");
    if (o.markdown) {
        md = fopen(o.markdown, "w");
        if (!md) { fprintf(stderr, "samplers: cannot write %s\n", o.markdown); return 1; }
    }
    if (o.png) {
        picture = (float *)malloc(sizeof(float) * (size_t)max_pic_rows * (1 + N_PICTURE) * PANEL * PANEL);
        if (!picture) return 1;
    }
    printf("samplers: linear schedule, T = 1000; %ld samples per cell\n", o.n);

    /* 1. The exact predictor of two mixtures. */
    if (strcmp(o.part, "mlp")) {
        static const char *names[2] = { "8gaussians", "sharp" };
        for (d = 0; d < 2; d++) {
            source src;
            dfn_gmm_predictor gp;
            if (strcmp(o.data, "all") && strcmp(o.data, names[d])) continue;
            memset(&src, 0, sizeof src);
            src.gmm = d == 0 ? eight_gaussians() : sharp_mixture();
            snprintf(src.name, sizeof src.name, "exact predictor: %s%s", names[d],
                     d ? " (6 components, std 0.03, 1.5 apart)" : "");
            gp.gmm = &src.gmm;
            gp.schedule = &sched;
            src.predict = dfn_gmm_predict;
            src.predict_user = &gp;
            src.prediction = DFN_PREDICT_EPS;
            table(&o, &src, &sched,
                  picture && n_pic_rows < max_pic_rows ? picture + (size_t)n_pic_rows * (1 + N_PICTURE) * PANEL * PANEL : NULL);
            if (picture && n_pic_rows < max_pic_rows) n_pic_rows++;
        }
    }

    /* 2. The default MLP of make demo, trained on each built-in set. */
    if (strcmp(o.part, "exact")) {
        for (d = 0; d < DFN_DATA2D_COUNT; d++) {
            source src;
            dfn_mlp model;
            dfn_mlp_config mc = dfn_mlp_config_default(2);
            dfn_trainer tr;
            dfn_train_config tc = dfn_train_config_default();
            dfn_mlp_predictor pred;
            dfn_rng rng;
            float *params, *batch;
            long step;
            double t0 = ex_wall();
            size_t wbytes;
            if (strcmp(o.data, "all") && strcmp(o.data, dfn_data2d_name((dfn_data2d)d))) continue;
            memset(&src, 0, sizeof src);
            src.have_kind = 1;
            src.kind = (dfn_data2d)d;
            dfn_rng_seed(&rng, (uint64_t)o.seed, 0);
            params = (float *)malloc(dfn_mlp_num_params(&mc) * sizeof(float));
            batch = (float *)malloc(sizeof(float) * 2 * 256);
            if (!params || !batch) return 1;
            ex_require(dfn_mlp_init(&model, &mc, params), "model");
            ex_require(dfn_mlp_init_weights(&model, &rng), "weights");
            tc.batch = 256;
            tc.total_steps = (int)o.train_steps;
            tc.warmup_steps = o.train_steps >= 1000 ? 100 : 0;
            ex_require(dfn_trainer_alloc(&tr, &model, &sched, &tc, NULL), "trainer");
            for (step = 1; step <= o.train_steps; step++) {
                float loss;
                draw(&src, &rng, batch, 256);
                ex_require(dfn_train_step(&tr, batch, NULL, &rng, &loss), "training step");
                if (step % 500 == 0 || step == o.train_steps) {
                    printf("\r%s: training step %ld/%ld, loss %.4f ", dfn_data2d_name(src.kind), step,
                           o.train_steps, (double)loss);
                    fflush(stdout);
                }
            }
            printf("(%.0f s)\n", ex_wall() - t0);
            wbytes = dfn_mlp_forward_size(&model.cfg, 1024);
            pred.model = &tr.ema_model;
            pred.work = malloc(wbytes);
            pred.work_bytes = wbytes;
            if (!pred.work) return 1;
            snprintf(src.name, sizeof src.name, "trained MLP (make demo's, %ld steps): %s", o.train_steps,
                     dfn_data2d_name(src.kind));
            src.predict = dfn_mlp_predict;
            src.predict_user = &pred;
            src.prediction = model.cfg.prediction;
            table(&o, &src, &sched,
                  picture && n_pic_rows < max_pic_rows ? picture + (size_t)n_pic_rows * (1 + N_PICTURE) * PANEL * PANEL : NULL);
            if (picture && n_pic_rows < max_pic_rows) n_pic_rows++;
            free(pred.work);
            dfn_trainer_free(&tr, NULL);
            free(params);
            free(batch);
        }
    }

    if (picture && n_pic_rows > 0) {
        int gh, gw;
        float *grid;
        size_t cap;
        ex_require(dfn_image_grid(NULL, 0, picture, n_pic_rows * (1 + N_PICTURE), PANEL, PANEL, 1,
                                  1 + N_PICTURE, 4, 0.0f, &gh, &gw), "grid");
        cap = (size_t)gh * gw;
        grid = (float *)malloc(sizeof(float) * cap);
        if (!grid) return 1;
        ex_require(dfn_image_grid(grid, cap, picture, n_pic_rows * (1 + N_PICTURE), PANEL, PANEL, 1,
                                  1 + N_PICTURE, 4, 0.0f, &gh, &gw), "grid");
        ex_require(dfn_png_save(o.png, grid, gh, gw, 1), o.png);
        printf("wrote %s: per row (one data set each) the data, then at 10 NFE:", o.png);
        for (d = 0; d < N_PICTURE; d++) printf("%s %s", d ? "," : "", rows[picture_rows[d]].name);
        printf("\n");
        free(grid);
    }
    if (md) fclose(md);
    free(picture);
    dfn_schedule_free(&sched, NULL);
    return 0;
}
