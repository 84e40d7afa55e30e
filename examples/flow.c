/* flow.c - flow matching and DDPM side by side, on the same network.

   Both processes put data and noise on one line (MATH.md sections 1, 12):

       x_t = a_t x_0 + s_t eps
       VP (DDPM):     a = sqrt(alphabar_t), s = sqrt(1 - alphabar_t); target eps
       flow matching: a = 1 - u,            s = u (u = t/T);         target w = eps - x_0

   For each built-in 2D data set this program trains the default MLP of
   `make demo` twice, with the same initial weights, data batches, steps,
   batch size and learning rate: once as DDPM (linear schedule, eps) and
   once as rectified flow (velocity). It then samples both from one shared
   x_T with each number of network evaluations (NFE) and prints the sample
   quality (unbiased MMD^2 with h = 0.05 against fresh data, MATH.md
   section 10; about 0 for samples as good as data):

     VP:   DDIM on trailing steps (the classic DDPM + DDIM), DPM-Solver++(2M)
           on logSNR steps (the best VP solver of `make samplers`),
           DDPM with all T = 1000 steps
     flow: Euler in u (which is DDIM on flow) on uniform and on shifted
           (k = 3) steps, the midpoint rule (2 NFE a step), DPM-Solver++(2M)
           on uniform steps, and DDPM on the flow's Gaussian chain

   and draws the sample paths x_T -> x_0 of both ODEs (DDIM for VP, Euler
   for flow, 50 steps) into one picture, with two measures of how straight
   they are: |x_0 - x_T| / path length (1 = a line), and how far the x_0
   of 5 and 10 first-order steps lands from that of 1000 (0 for a line
   travelled at constant speed in the sampler's time).

   Build and run from the repository root:  make flow  (./build/flow --help) */
#define _POSIX_C_SOURCE 199309L   /* clock_gettime, for ex_wall */
#define DIFFUSION_IMPLEMENTATION
#include "diffusion.h"
#define EX_NAME "flow"
#include "common.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_NFE 8
#define T_STEPS 1000
#define BATCH 256

typedef struct options {
    const char *data, *markdown, *png;
    long n, train_steps, seed;
    int nfe[MAX_NFE], n_nfe;
    dfn_time_sampling time_sampling;   /* flow's training times */
    double flow_shift;                 /* the flow schedule's shift k */
    double input_scale;                /* the MLP's coordinate scale (0 = default) */
} options;

static void usage(FILE *f)
{
    fprintf(f,
        "usage: flow [options]\n"
        "  --data NAME          one built-in set (8gaussians, moons, ...) or all (default)\n"
        "  --n N                samples per cell (default 10000)\n"
        "  --nfe LIST           network evaluations, comma separated (default 5,10,20,50)\n"
        "  --train-steps N      training steps of each model (default 6000, as make demo)\n"
        "  --seed S             random seed (default 1)\n"
        "  --time-sampling K    flow's training times: uniform (default) or logit-normal\n"
        "  --flow-shift K       the flow schedule's shift u' = k u / (1 + (k - 1) u) (default 1)\n"
        "  --input-scale X      the MLP's coordinate scale for both models (default 25)\n"
        "  --markdown FILE      also write the tables as Markdown\n"
        "  --png FILE           the sample paths of both processes, two data sets a row\n"
        "  --help               this text\n");
}

static int parse_nfe(const char *s, options *o)
{
    return (o->n_nfe = ex_number_list(s, o->nfe, MAX_NFE, 2, 1000)) > 0;
}

static int parse(int argc, char **argv, options *o)
{
    int i;
    memset(o, 0, sizeof *o);
    o->data = "all";
    o->n = 10000; o->train_steps = 6000; o->seed = 1;
    o->time_sampling = DFN_TIME_UNIFORM;
    o->flow_shift = 1.0;
    parse_nfe("5,10,20,50", o);
    for (i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        long *num = NULL, lo = 1, hi = 100000;
        if (!strcmp(a, "--help")) { usage(stdout); exit(0); }
        if (!v) { fprintf(stderr, "flow: %s needs a value (see --help)\n", a); return 0; }
        i++;
        if (!strcmp(a, "--data")) o->data = v;
        else if (!strcmp(a, "--markdown")) o->markdown = v;
        else if (!strcmp(a, "--png")) o->png = v;
        else if (!strcmp(a, "--n")) { num = &o->n; lo = 2; }
        else if (!strcmp(a, "--train-steps")) { num = &o->train_steps; lo = 0; hi = 10000000; }
        else if (!strcmp(a, "--seed")) { num = &o->seed; lo = 0; hi = 2147483647; }
        else if (!strcmp(a, "--nfe")) {
            if (!parse_nfe(v, o)) { fprintf(stderr, "flow: bad --nfe '%s' (2..1000, comma separated)\n", v); return 0; }
        } else if (!strcmp(a, "--time-sampling")) {
            if (!strcmp(v, "uniform")) o->time_sampling = DFN_TIME_UNIFORM;
            else if (!strcmp(v, "logit-normal")) o->time_sampling = DFN_TIME_LOGIT_NORMAL;
            else { fprintf(stderr, "flow: --time-sampling is uniform or logit-normal\n"); return 0; }
        } else if (!strcmp(a, "--flow-shift") || !strcmp(a, "--input-scale")) {
            char *end;
            double d = strtod(v, &end);
            if (end == v || *end || !(d > 0.0 && d < 1e6)) {
                fprintf(stderr, "flow: bad value '%s' for %s\n", v, a);
                return 0;
            }
            if (a[2] == 'f') o->flow_shift = d; else o->input_scale = d;
        } else { fprintf(stderr, "flow: unknown option %s\n", a); usage(stderr); return 0; }
        if (num && (*num = ex_number(v, lo, hi)) < 0) {
            fprintf(stderr, "flow: bad value '%s' for %s\n", v, a);
            return 0;
        }
    }
    if (strcmp(o->data, "all")) {
        int d, found = 0;
        for (d = 0; d < DFN_DATA2D_COUNT; d++) found |= !strcmp(o->data, dfn_data2d_name((dfn_data2d)d));
        if (!found) { fprintf(stderr, "flow: unknown data set '%s'\n", o->data); return 0; }
    }
    return 1;
}

/* ------------------------------------------------------------------------- */
/*  One trained model of each process                                        */
/* ------------------------------------------------------------------------- */

typedef struct model {
    dfn_schedule sched;
    dfn_mlp mlp;
    dfn_trainer tr;
    dfn_mlp_predictor pred;
    float *params;
    const char *name;
} model;

/* Trains the demo's MLP for `proc` on data set d. Both processes start
   from the same weights (rng seed, 0) and see the same data batches (seed,
   1); t and eps come from a third stream (seed, 2). */
static void train(model *m, const options *o, dfn_process proc, dfn_data2d d)
{
    dfn_schedule_config sc = dfn_schedule_config_default(proc == DFN_PROCESS_FLOW ? DFN_SCHEDULE_FLOW
                                                                                  : DFN_SCHEDULE_LINEAR, T_STEPS);
    dfn_mlp_config mc = dfn_mlp_config_default(2);
    dfn_train_config tc = dfn_train_config_default();
    dfn_rng init, data, noise;
    float batch[2 * BATCH];
    double t0 = ex_wall();
    long step;
    size_t wbytes;
    memset(m, 0, sizeof *m);
    m->name = proc == DFN_PROCESS_FLOW ? "flow" : "VP";
    if (proc == DFN_PROCESS_FLOW) {
        sc.flow_shift = o->flow_shift;
        mc.prediction = DFN_PREDICT_FLOW;
        tc.time_sampling = o->time_sampling;
    }
    if (o->input_scale > 0.0) mc.input_scale = (float)o->input_scale;
    ex_require(dfn_schedule_alloc(&m->sched, &sc, NULL), "schedule");
    m->params = (float *)malloc(dfn_mlp_num_params(&mc) * sizeof(float));
    if (!m->params) exit(1);
    dfn_rng_seed(&init, (uint64_t)o->seed, 0);
    dfn_rng_seed(&data, (uint64_t)o->seed, 1);
    dfn_rng_seed(&noise, (uint64_t)o->seed, 2);
    ex_require(dfn_mlp_init(&m->mlp, &mc, m->params), "model");
    ex_require(dfn_mlp_init_weights(&m->mlp, &init), "weights");
    tc.batch = BATCH;
    tc.total_steps = (int)o->train_steps;
    tc.warmup_steps = o->train_steps >= 1000 ? 100 : 0;
    ex_require(dfn_trainer_alloc(&m->tr, &m->mlp, &m->sched, &tc, NULL), "trainer");
    for (step = 1; step <= o->train_steps; step++) {
        float loss;
        ex_require(dfn_data2d_sample(d, &data, batch, BATCH), "data");
        ex_require(dfn_train_step(&m->tr, batch, NULL, &noise, &loss), "training step");
        if (step % 500 == 0 || step == o->train_steps) {
            printf("\r%s, %s: training step %ld/%ld, loss %.4f ", dfn_data2d_name(d), m->name, step,
                   o->train_steps, (double)loss);
            fflush(stdout);
        }
    }
    printf("(%.0f s)\n", ex_wall() - t0);
    wbytes = dfn_mlp_forward_size(&m->mlp.cfg, 1024);
    m->pred.model = &m->tr.ema_model;
    m->pred.work = malloc(wbytes);
    m->pred.work_bytes = wbytes;
    if (!m->pred.work) exit(1);
}

static void release(model *m)
{
    free(m->pred.work);
    dfn_trainer_free(&m->tr, NULL);
    free(m->params);
    dfn_schedule_free(&m->sched, NULL);
}

/* ------------------------------------------------------------------------- */
/*  Sampling and the table                                                   */
/* ------------------------------------------------------------------------- */

/* A row: which model, sampler kind, spacing (and shift). */
typedef struct row {
    dfn_process proc;
    dfn_sampler_kind kind;
    dfn_spacing spacing;
    const char *name;
} row;

static const row rows[] = {
    { DFN_PROCESS_VP,   DFN_SAMPLER_DDIM,     DFN_SPACING_TRAILING, "VP: DDIM, trailing" },
    { DFN_PROCESS_VP,   DFN_SAMPLER_DPMPP_2M, DFN_SPACING_LOGSNR,   "VP: DPM++(2M), logSNR" },
    { DFN_PROCESS_FLOW, DFN_SAMPLER_EULER,    DFN_SPACING_TRAILING, "flow: Euler, uniform" },
    { DFN_PROCESS_FLOW, DFN_SAMPLER_EULER,    DFN_SPACING_SHIFTED,  "flow: Euler, shifted k=3" },
    { DFN_PROCESS_FLOW, DFN_SAMPLER_MIDPOINT, DFN_SPACING_TRAILING, "flow: midpoint, uniform" },
    { DFN_PROCESS_FLOW, DFN_SAMPLER_DPMPP_2M, DFN_SPACING_TRAILING, "flow: DPM++(2M), uniform" }
};
#define N_ROWS ((int)(sizeof rows / sizeof rows[0]))

/* Sets up a sampler of `kind` on m with the most steps whose NFE fits
   `nfe` (the midpoint rule costs 2 a step). The NFE it spends into *used. */
static void sampler_for(dfn_sampler *smp, const model *m, dfn_sampler_kind kind, dfn_spacing spacing,
                        int nfe, int n, int *used)
{
    int S;
    for (S = nfe; S >= 1; S--) {
        dfn_sampler_config cfg = dfn_mlp_sampler_config(kind, n, (dfn_mlp_predictor *)&m->pred);
        cfg.steps = S;
        cfg.spacing = spacing;
        ex_require(dfn_sampler_alloc(smp, &cfg, &m->sched, NULL), "sampler");
        *used = dfn_sampler_nfe(smp);
        if (*used <= nfe) return;
        dfn_sampler_free(smp, NULL);
    }
    fprintf(stderr, "flow: no step count of %s fits %d evaluations\n", dfn_sampler_kind_name(kind), nfe);
    exit(1);
}

static double mmd(const float *x, const float *y, int n)
{
    double v;
    ex_require(dfn_mmd_rbf_unbiased(&v, x, n, y, n, 2, 0.05), "MMD");
    return v;
}

static FILE *md;   /* the Markdown copy, or NULL */

static void out(const char *text)
{
    fputs(text, stdout);
    if (md) fputs(text, md);
}

/* The table of one data set. */
static void table(const options *o, dfn_data2d d, model *vp, model *fl)
{
    int n = (int)o->n, r, k;
    float *x_T = (float *)malloc(sizeof(float) * 2 * (size_t)n);
    float *x = (float *)malloc(sizeof(float) * 2 * (size_t)n);
    float *y = (float *)malloc(sizeof(float) * 2 * (size_t)n);
    char cell[256];
    dfn_rng rng;
    double t0 = ex_wall();
    if (!x_T || !x || !y) exit(1);
    dfn_rng_seed(&rng, (uint64_t)o->seed, 5);
    ex_require(dfn_data2d_sample(d, &rng, y, n), "data");   /* fresh data, for every cell */
    dfn_rng_normal_fill(&rng, x_T, 2 * (size_t)n);           /* one x_T for every sampler */
    snprintf(cell, sizeof cell, "\n### %s\n\nunbiased MMD^2(0.05) of %d samples against fresh data "
             "(midpoint: the most steps whose NFE fits, 2 a step)\n\n| process: sampler, spacing |",
             dfn_data2d_name(d), n);
    out(cell);
    for (k = 0; k < o->n_nfe; k++) { snprintf(cell, sizeof cell, " NFE %d |", o->nfe[k]); out(cell); }
    out("\n|---|");
    for (k = 0; k < o->n_nfe; k++) out("---|");
    out("\n");
    for (r = 0; r < N_ROWS; r++) {
        model *m = rows[r].proc == DFN_PROCESS_FLOW ? fl : vp;
        snprintf(cell, sizeof cell, "| %s |", rows[r].name);
        out(cell);
        for (k = 0; k < o->n_nfe; k++) {
            dfn_sampler smp;
            dfn_rng srng;
            int used;
            sampler_for(&smp, m, rows[r].kind, rows[r].spacing, o->nfe[k], n, &used);
            dfn_rng_seed(&srng, (uint64_t)o->seed, 77);
            ex_require(dfn_sampler_run(&smp, x, x_T, &srng), "sampling");
            dfn_sampler_free(&smp, NULL);
            if (used != o->nfe[k]) snprintf(cell, sizeof cell, " %.1e (%d) |", mmd(x, y, n), used);
            else snprintf(cell, sizeof cell, " %.1e |", mmd(x, y, n));
            out(cell);
            fflush(stdout);
        }
        out("\n");
    }
    /* DDPM with all T steps on both: the VP chain and the flow's Gaussian chain. */
    for (r = 0; r < 2; r++) {
        model *m = r ? fl : vp;
        dfn_sampler_config cfg = dfn_mlp_sampler_config(DFN_SAMPLER_DDPM, n, &m->pred);
        dfn_sampler smp;
        dfn_rng srng;
        dfn_rng_seed(&srng, (uint64_t)o->seed, 78);
        ex_require(dfn_sampler_alloc(&smp, &cfg, &m->sched, NULL), "DDPM sampler");
        ex_require(dfn_sampler_run(&smp, x, x_T, &srng), "DDPM sampling");
        dfn_sampler_free(&smp, NULL);
        snprintf(cell, sizeof cell, "| %s: DDPM, %d NFE | %.1e |\n", m->name, T_STEPS, mmd(x, y, n));
        out(cell);
    }
    ex_require(dfn_data2d_sample(d, &rng, x, n), "data");
    snprintf(cell, sizeof cell, "| noise floor: data vs data | %.1e |\n", mmd(x, y, n));
    out(cell);
    printf("(%.0f s)\n", ex_wall() - t0);
    free(x_T); free(x); free(y);
}

/* ------------------------------------------------------------------------- */
/*  Paths x_T -> x_0                                                         */
/* ------------------------------------------------------------------------- */

#define PATHS 64
#define PATH_STEPS 50
#define PANEL 200
#define VIEW 3.2f   /* the panel shows [-VIEW, VIEW]^2 */

typedef struct path_rec { float *pts; int k; } path_rec;   /* (PATH_STEPS + 1, PATHS, 2) */

static int record(void *user, const dfn_step_info *info)
{
    path_rec *p = (path_rec *)user;
    p->k++;
    memcpy(p->pts + (size_t)p->k * PATHS * 2, info->x, sizeof(float) * PATHS * 2);
    return 0;
}

/* Runs the ODE sampler of m (DDIM with eta 0 on trailing steps for VP,
   Euler in u for flow: the same first-order step, section 12) with S
   steps from x_T (PATHS points) into x; rec (may be NULL) records the path. */
static void ode(const model *m, int S, const float *x_T, float *x, path_rec *rec)
{
    dfn_sampler_config cfg = dfn_mlp_sampler_config(m->sched.process == DFN_PROCESS_FLOW ? DFN_SAMPLER_EULER
                                                                                         : DFN_SAMPLER_DDIM,
                                                    PATHS, (dfn_mlp_predictor *)&m->pred);
    dfn_sampler smp;
    cfg.steps = S;
    if (rec) { cfg.on_step = record; cfg.on_step_user = rec; }
    ex_require(dfn_sampler_alloc(&smp, &cfg, &m->sched, NULL), "ODE sampler");
    ex_require(dfn_sampler_run(&smp, x, x_T, NULL), "ODE");
    dfn_sampler_free(&smp, NULL);
}

/* How straight the ODE's paths are, two ways:
   geometry: |x_0 - x_T| / path length along 50 steps, averaged (1 = a line);
   for the sampler: the mean distance between the x_0 of S = 5 and 10 first-
   order steps and the x_0 of 1000 (a path that is a line travelled at
   constant speed in the sampler's time would need one step).
   pts gets the 50-step paths. */
static void paths(const model *m, const float *x_T, float *pts, double *straight, double err[2])
{
    static const int few[2] = { 5, 10 };
    float x[PATHS * 2], ref[PATHS * 2];
    path_rec rec;
    int i, k;
    rec.pts = pts;
    rec.k = 0;
    memcpy(pts, x_T, sizeof(float) * PATHS * 2);
    ode(m, PATH_STEPS, x_T, x, &rec);
    *straight = 0.0;
    for (i = 0; i < PATHS; i++) {
        double len = 0.0, dx, dy;
        for (k = 1; k <= PATH_STEPS; k++) {
            dx = pts[(k * PATHS + i) * 2] - pts[((k - 1) * PATHS + i) * 2];
            dy = pts[(k * PATHS + i) * 2 + 1] - pts[((k - 1) * PATHS + i) * 2 + 1];
            len += sqrt(dx * dx + dy * dy);
        }
        dx = pts[(PATH_STEPS * PATHS + i) * 2] - pts[2 * i];
        dy = pts[(PATH_STEPS * PATHS + i) * 2 + 1] - pts[2 * i + 1];
        *straight += len > 0.0 ? sqrt(dx * dx + dy * dy) / len : 1.0;
    }
    *straight /= PATHS;
    ode(m, T_STEPS, x_T, ref, NULL);
    for (k = 0; k < 2; k++) {
        ode(m, few[k], x_T, x, NULL);
        err[k] = 0.0;
        for (i = 0; i < PATHS; i++)
            err[k] += hypot(x[2 * i] - ref[2 * i], x[2 * i + 1] - ref[2 * i + 1]) / PATHS;
    }
}

/* Darkens pixel (r, c) of an RGB panel in [-1, 1] towards colour col. */
static void ink(float *img, int r, int c, const float *col, float amount)
{
    int ch;
    if (r < 0 || r >= PANEL || c < 0 || c >= PANEL) return;
    for (ch = 0; ch < 3; ch++) {
        float *p = img + ((size_t)r * PANEL + c) * 3 + ch;
        *p += amount * (col[ch] - *p);
    }
}

static void to_pixel(float x, float y, float *c, float *r)
{
    *c = (x + VIEW) / (2 * VIEW) * (PANEL - 1);
    *r = (VIEW - y) / (2 * VIEW) * (PANEL - 1);
}

/* A line segment, sampled every half pixel. */
static void segment(float *img, float x0, float y0, float x1, float y1, const float *col)
{
    float c0, r0, c1, r1;
    int k, steps;
    to_pixel(x0, y0, &c0, &r0);
    to_pixel(x1, y1, &c1, &r1);
    steps = 1 + (int)(2.0f * (fabsf(c1 - c0) > fabsf(r1 - r0) ? fabsf(c1 - c0) : fabsf(r1 - r0)));
    if (steps > 4 * PANEL) steps = 4 * PANEL;
    for (k = 0; k <= steps; k++) {
        float f = (float)k / steps;
        ink(img, (int)(r0 + f * (r1 - r0) + 0.5f), (int)(c0 + f * (c1 - c0) + 0.5f), col, 0.35f);
    }
}

static void dot(float *img, float x, float y, const float *col)
{
    float c, r;
    int dr, dc;
    to_pixel(x, y, &c, &r);
    for (dr = -1; dr <= 1; dr++)
        for (dc = -1; dc <= 1; dc++) ink(img, (int)(r + 0.5f) + dr, (int)(c + 0.5f) + dc, col, 1.0f);
}

/* One panel: fresh data in light grey, the paths in blue, x_T in grey and
   x_0 in red. */
static void draw_panel(float *img, const float *data, int n_data, const float *pts)
{
    static const float grey[3] = { 0.55f, 0.55f, 0.55f }, light[3] = { 0.45f, 0.45f, 0.45f };
    static const float blue[3] = { -0.6f, -0.2f, 0.9f }, red[3] = { 0.9f, -0.8f, -0.8f };
    int i, k;
    float c, r;
    for (i = 0; i < PANEL * PANEL * 3; i++) img[i] = 1.0f;
    for (i = 0; i < n_data; i++) {
        to_pixel(data[2 * i], data[2 * i + 1], &c, &r);
        ink(img, (int)(r + 0.5f), (int)(c + 0.5f), light, 1.0f);
    }
    for (i = 0; i < PATHS; i++)
        for (k = 1; k <= PATH_STEPS; k++)
            segment(img, pts[((k - 1) * PATHS + i) * 2], pts[((k - 1) * PATHS + i) * 2 + 1],
                    pts[(k * PATHS + i) * 2], pts[(k * PATHS + i) * 2 + 1], blue);
    for (i = 0; i < PATHS; i++) {
        dot(img, pts[2 * i], pts[2 * i + 1], grey);
        dot(img, pts[(PATH_STEPS * PATHS + i) * 2], pts[(PATH_STEPS * PATHS + i) * 2 + 1], red);
    }
}

int main(int argc, char **argv)
{
    options o;
    float *picture = NULL, *pts = NULL;
    int d, rows_drawn = 0;
    char line[512];
    double straight_sum[2] = { 0.0, 0.0 }, err_sum[2][2] = { { 0.0, 0.0 }, { 0.0, 0.0 } };
    if (!parse(argc, argv, &o)) return 2;
    if (o.markdown && !(md = fopen(o.markdown, "w"))) {
        fprintf(stderr, "flow: cannot write %s\n", o.markdown);
        return 1;
    }
    if (o.png) {
        picture = (float *)malloc(sizeof(float) * DFN_DATA2D_COUNT * 2 * PANEL * PANEL * 3);
        pts = (float *)malloc(sizeof(float) * (PATH_STEPS + 1) * PATHS * 2);
        if (!picture || !pts) return 1;
    }
    snprintf(line, sizeof line, "flow: VP (linear schedule, eps) and flow matching (velocity, %s times, "
             "shift %g) on the same MLP; T = %d, %ld training steps, batch %d, seed %ld\n",
             o.time_sampling == DFN_TIME_UNIFORM ? "uniform" : "logit-normal", o.flow_shift, T_STEPS,
             o.train_steps, BATCH, o.seed);
    out(line);
    for (d = 0; d < DFN_DATA2D_COUNT; d++) {
        model vp, fl;
        if (strcmp(o.data, "all") && strcmp(o.data, dfn_data2d_name((dfn_data2d)d))) continue;
        train(&vp, &o, DFN_PROCESS_VP, (dfn_data2d)d);
        train(&fl, &o, DFN_PROCESS_FLOW, (dfn_data2d)d);
        table(&o, (dfn_data2d)d, &vp, &fl);
        if (picture) {
            float x_T[PATHS * 2], data[2000 * 2];
            int k;
            double s_vp, s_fl, e_vp[2], e_fl[2];
            dfn_rng rng;
            dfn_rng_seed(&rng, (uint64_t)o.seed, 9);
            dfn_rng_normal_fill(&rng, x_T, PATHS * 2);
            ex_require(dfn_data2d_sample((dfn_data2d)d, &rng, data, 2000), "data");
            paths(&vp, x_T, pts, &s_vp, e_vp);
            draw_panel(picture + (size_t)(2 * rows_drawn) * PANEL * PANEL * 3, data, 2000, pts);
            paths(&fl, x_T, pts, &s_fl, e_fl);
            draw_panel(picture + (size_t)(2 * rows_drawn + 1) * PANEL * PANEL * 3, data, 2000, pts);
            snprintf(line, sizeof line, "\n%d ODE paths from one x_T: |x_0 - x_T| / path length (50 steps) "
                     "VP %.3f, flow %.3f; mean |x_0(S steps) - x_0(1000 steps)| at S = 5: VP %.3f, flow %.3f; "
                     "S = 10: VP %.3f, flow %.3f\n", PATHS, s_vp, s_fl, e_vp[0], e_fl[0], e_vp[1], e_fl[1]);
            out(line);
            straight_sum[0] += s_vp;
            straight_sum[1] += s_fl;
            for (k = 0; k < 2; k++) { err_sum[0][k] += e_vp[k]; err_sum[1][k] += e_fl[k]; }
            rows_drawn++;
        }
        release(&vp);
        release(&fl);
    }
    if (picture && rows_drawn > 0) {
        int gh, gw;
        float *grid;
        int cols = rows_drawn > 1 ? 4 : 2;   /* two data sets a row */
        ex_require(dfn_image_grid(NULL, 0, picture, 2 * rows_drawn, PANEL, PANEL, 3, cols, 4, 0.0f, &gh, &gw),
                   "grid");
        grid = (float *)malloc(sizeof(float) * (size_t)gh * gw * 3);
        if (!grid) return 1;
        ex_require(dfn_image_grid(grid, (size_t)gh * gw * 3, picture, 2 * rows_drawn, PANEL, PANEL, 3, cols, 4,
                                  0.0f, &gh, &gw), "grid");
        ex_require(dfn_png_save(o.png, grid, gh, gw, 3), o.png);
        snprintf(line, sizeof line, "\nwrote %s: per data set (two a row), the ODE paths of VP (left) and flow (right) "
                 "from the same x_T (grey) to x_0 (red). Over the sets: |x_0 - x_T| / length VP %.3f, flow %.3f; "
                 "distance of the 5-step x_0 from the 1000-step one VP %.3f, flow %.3f; 10 steps VP %.3f, flow %.3f\n",
                 o.png, straight_sum[0] / rows_drawn, straight_sum[1] / rows_drawn, err_sum[0][0] / rows_drawn,
                 err_sum[1][0] / rows_drawn, err_sum[0][1] / rows_drawn, err_sum[1][1] / rows_drawn);
        out(line);
        free(grid);
    }
    if (md) fclose(md);
    free(picture);
    free(pts);
    return 0;
}
