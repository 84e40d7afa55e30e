/* Guidance and inpainting (MATH.md section 8): classifier-free guidance with
   the exact mixture predictor of section 9 made class-conditional (label k:
   component k alone; label -1: the whole mixture), the guidance hook, a
   noise-aware classifier and its gradients against finite differences,
   constraint guidance, RePaint inpainting of a correlated 2D Gaussian
   against its closed-form conditional, and a trained conditional MLP. */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "harness.h"
#include "../diffusion.h"

static int verbose_control(void) { return getenv("DFN_TEST_VERBOSE") != NULL; }

/* The 8 Gaussians of DFN_DATA2D_GAUSSIANS8 as a dfn_gmm (weights may be replaced). */
static float ctl_means[16], ctl_stds[8], ctl_weights[8];
static dfn_gmm ctl_gmm8(void)
{
    dfn_gmm g;
    int k;
    for (k = 0; k < 8; k++) {
        double a = k * 3.14159265358979323846 / 4.0;
        ctl_means[2 * k] = (float)(DFN_DATA2D_GAUSSIANS8_RADIUS * cos(a));
        ctl_means[2 * k + 1] = (float)(DFN_DATA2D_GAUSSIANS8_RADIUS * sin(a));
        ctl_stds[k] = DFN_DATA2D_GAUSSIANS8_STD;
        ctl_weights[k] = 1.0f;
    }
    g.k = 8; g.dim = 2; g.weights = ctl_weights; g.means = ctl_means; g.stds = ctl_stds;
    return g;
}

/* Index of the nearest mean (the component a 2D point belongs to). */
static int ctl_nearest(const float *x)
{
    int k, best = 0;
    double bd = 1e300;
    for (k = 0; k < 8; k++) {
        double dx = x[0] - ctl_means[2 * k], dy = x[1] - ctl_means[2 * k + 1], d = dx * dx + dy * dy;
        if (d < bd) { bd = d; best = k; }
    }
    return best;
}

/* Share of samples whose nearest component is labels[i]. */
static double ctl_share(const float *x, const int *labels, int n)
{
    int i, hit = 0;
    for (i = 0; i < n; i++) hit += ctl_nearest(x + 2 * i) == labels[i];
    return (double)hit / n;
}

/* Runs a sampler configuration to completion into x; returns the result. */
static dfn_result ctl_run(const dfn_sampler_config *cfg, const dfn_schedule *s, float *x, uint64_t seed)
{
    dfn_sampler smp;
    dfn_rng rng;
    dfn_result r = dfn_sampler_alloc(&smp, cfg, s, NULL);
    if (r != DFN_OK) return r;
    dfn_rng_seed(&rng, seed, 3);
    r = dfn_sampler_run(&smp, x, NULL, &rng);
    dfn_sampler_free(&smp, NULL);
    return r;
}

/* A predictor that records its calls and forwards to the exact predictor. */
typedef struct ctl_recorder {
    dfn_gmm_predictor inner;
    int calls, max_rows, min_rows, bad_layout, n;
    const int *expect_labels;   /* the sampler's n labels */
    int expect_null;            /* 1: every label must be -1 (w = 0) */
    int ignore_labels;          /* 1: the inner predictor gets no labels (unconditional) */
} ctl_recorder;

static int ctl_record_predict(void *user, const float *x_t, const int *t, const int *labels, int n,
                              float *out)
{
    ctl_recorder *r = (ctl_recorder *)user;
    int i;
    r->calls++;
    if (n > r->max_rows) r->max_rows = n;
    if (r->min_rows == 0 || n < r->min_rows) r->min_rows = n;
    if (r->expect_labels) {
        for (i = 0; i < n; i++) {
            int want = r->expect_null ? -1 : i < r->n ? r->expect_labels[i] : -1;
            if (labels[i] != want || t[i] != t[0]) r->bad_layout = 1;
        }
        if (n == 2 * r->n && memcmp(x_t, x_t + (size_t)r->n * 2, sizeof(float) * r->n * 2) != 0)
            r->bad_layout = 1;
    }
    return dfn_gmm_predict(&r->inner, x_t, t, r->ignore_labels ? NULL : labels, n, out);
}

static void ctl_schedule(dfn_schedule *s, int T)
{
    dfn_schedule_config sc = dfn_schedule_config_default(DFN_SCHEDULE_LINEAR, T);
    CHECK(dfn_schedule_alloc(s, &sc, NULL) == DFN_OK, "schedule");
}

void test_control_cfg_exact_predictor_asked_component(void)
{
    /* The exact predictor conditioned on component k samples N(mu_k, s^2 I)
       alone, so at w = 1 every sample belongs to k up to the mixture's own
       overlap (neighbouring means are 1.07 apart, 6.1 stds: a point is
       nearer to one of its two neighbours with probability 2.2e-3). w = 3 sharpens further. Both
       must put >= 99% of the samples in the asked component, with DDIM-50
       and with DDPM. */
    enum { N = 2000 };
    static const float ws[2] = { 1.0f, 3.0f };
    dfn_gmm g = ctl_gmm8();
    dfn_schedule s;
    ctl_recorder rec;
    dfn_sampler_config cfg;
    float *x = (float *)malloc(sizeof(float) * N * 2);
    int labels[N], i, kind, wi;
    ctl_schedule(&s, 1000);
    for (i = 0; i < N; i++) labels[i] = i % 8;
    for (kind = 0; kind < 2; kind++)
        for (wi = 0; wi < 2; wi++) {
            double share;
            memset(&rec, 0, sizeof rec);
            rec.inner.gmm = &g; rec.inner.schedule = &s;
            rec.expect_labels = labels; rec.n = N;
            cfg = dfn_sampler_config_default(kind == 0 ? DFN_SAMPLER_DDIM : DFN_SAMPLER_DDPM, N, 2,
                                             ctl_record_predict, &rec);
            cfg.labels = labels;
            cfg.guidance_scale = ws[wi];
            CHECK(ctl_run(&cfg, &s, x, 11 + wi) == DFN_OK, "run");
            share = ctl_share(x, labels, N);
            if (verbose_control())
                printf("    %s w = %g: %.2f%% in the asked component\n", kind == 0 ? "DDIM-50" : "DDPM",
                       ws[wi], 100 * share);
            CHECK(share >= 0.99, "%s w = %g: %.2f%% in the asked component", kind == 0 ? "DDIM" : "DDPM",
                  ws[wi], 100 * share);
            /* w = 1 costs nothing: n rows per call; w = 3: one call of 2n rows */
            CHECK(rec.calls == (kind == 0 ? 50 : 1000) && !rec.bad_layout, "calls %d, layout %d", rec.calls,
                  rec.bad_layout);
            CHECK(rec.max_rows == (wi == 0 ? N : 2 * N) && rec.min_rows == rec.max_rows, "rows %d..%d",
                  rec.min_rows, rec.max_rows);
        }
    dfn_schedule_free(&s, NULL);
    free(x);
}

void test_control_cfg_w0_reproduces_mixture_weights(void)
{
    /* w = 0 is the unconditional model: asking for component 0 must be
       ignored and the shares must follow the (unequal) mixture weights
       (k + 1) / 36. Tolerance: 4 binomial standard deviations
       sqrt(p (1 - p) / N) plus 0.01 for DDIM-100's discretization error. */
    enum { N = 4000 };
    dfn_gmm g = ctl_gmm8();
    dfn_schedule s;
    ctl_recorder rec;
    dfn_sampler_config cfg;
    float *x = (float *)malloc(sizeof(float) * N * 2);
    int labels[N], count[8] = {0}, i, k;
    ctl_schedule(&s, 1000);
    for (k = 0; k < 8; k++) ctl_weights[k] = (float)(k + 1);
    for (i = 0; i < N; i++) labels[i] = 0;
    memset(&rec, 0, sizeof rec);
    rec.inner.gmm = &g; rec.inner.schedule = &s;
    rec.expect_labels = labels; rec.n = N; rec.expect_null = 1;
    cfg = dfn_sampler_config_default(DFN_SAMPLER_DDIM, N, 2, ctl_record_predict, &rec);
    cfg.steps = 100;
    cfg.labels = labels;
    cfg.guidance_scale = 0.0f;
    CHECK(ctl_run(&cfg, &s, x, 5) == DFN_OK, "run");
    CHECK(rec.max_rows == N && rec.min_rows == N && !rec.bad_layout, "w = 0: one call of n rows, labels -1");
    for (i = 0; i < N; i++) count[ctl_nearest(x + 2 * i)]++;
    for (k = 0; k < 8; k++) {
        double p = (k + 1) / 36.0, got = (double)count[k] / N, tol = 4 * sqrt(p * (1 - p) / N) + 0.01;
        if (verbose_control()) printf("    component %d: share %.4f, weight %.4f\n", k, got, p);
        CHECK(fabs(got - p) < tol, "component %d: share %.4f, weight %.4f (tolerance %.4f)", k, got, p, tol);
    }
    dfn_schedule_free(&s, NULL);
    free(x);
}

void test_control_cfg_one_batched_call_equals_two(void)
{
    /* Section 8 written out with two separate predictor calls per step and
       the public building blocks (dfn_prediction_to_x0_eps, dfn_ddim_step),
       the rng drawn in the sampler's order, must give the guided sampler's
       samples bit for bit (DDIM-20, eta 0.5: noisy steps too). */
    enum { N = 37, D = 2, S = 20 };
    dfn_gmm g = ctl_gmm8();
    dfn_schedule s;
    dfn_sampler smp;
    dfn_sampler_config cfg;
    dfn_gmm_predictor gp;
    dfn_rng rng;
    float x[N * D], y[N * D], ec[N * D], eu[N * D], x0[N * D], eps[N * D], z[N * D];
    const float w = 2.5f, eta = 0.5f;
    int labels[N], tt[N], i, j, k;
    ctl_schedule(&s, 1000);
    gp.gmm = &g; gp.schedule = &s;
    for (i = 0; i < N; i++) labels[i] = i % 9 - 1;   /* -1 included */
    cfg = dfn_sampler_config_default(DFN_SAMPLER_DDIM, N, D, dfn_gmm_predict, &gp);
    cfg.steps = S;
    cfg.eta = eta;
    cfg.labels = labels;
    cfg.guidance_scale = w;
    CHECK(dfn_sampler_alloc(&smp, &cfg, &s, NULL) == DFN_OK, "sampler");
    dfn_rng_seed(&rng, 77, 1);
    CHECK(dfn_sampler_run(&smp, x, NULL, &rng) == DFN_OK, "run");

    dfn_rng_seed(&rng, 77, 1);
    dfn_rng_normal_fill(&rng, y, N * D);
    for (i = S; i >= 1; i--) {
        int t = dfn_sampler_timestep(&smp, i), p = dfn_sampler_timestep(&smp, i - 1);
        for (k = 0; k < N; k++) tt[k] = t;
        CHECK(dfn_gmm_eps(&g, &s, ec, y, tt, labels, N) == DFN_OK, "conditional");
        CHECK(dfn_gmm_eps(&g, &s, eu, y, tt, NULL, N) == DFN_OK, "unconditional");
        for (j = 0; j < N * D; j++) ec[j] = eu[j] + w * (ec[j] - eu[j]);
        CHECK(dfn_prediction_to_x0_eps(&s, DFN_PREDICT_EPS, x0, eps, ec, y, tt, N, D) == DFN_OK, "x0");
        if (dfn_ddim_sigma(&s, t, p, eta) > 0) dfn_rng_normal_fill(&rng, z, N * D);
        CHECK(dfn_ddim_step(&s, y, x0, eps, dfn_ddim_sigma(&s, t, p, eta) > 0 ? z : NULL, t, p, eta,
                            N * D) == DFN_OK, "step");
    }
    CHECK(memcmp(x, y, sizeof x) == 0, "guided sampler differs from two calls per step");
    dfn_sampler_free(&smp, NULL);
    dfn_schedule_free(&s, NULL);
}

/* ---- the guidance hook ---- */

typedef struct ctl_hook_probe {
    const dfn_sampler *smp;
    const dfn_schedule *s;
    const dfn_gmm *g;
    const int *labels;
    int calls, expect_i, bad;
    int overwrite;              /* 1: replace eps_hat by the exact predictor's */
} ctl_hook_probe;

static int ctl_hook(void *user, const dfn_guide_info *info)
{
    ctl_hook_probe *p = (ctl_hook_probe *)user;
    float e[4 * 2];
    int tt[4], k, j;
    p->calls++;
    if (info->n != 4 || info->dim != 2 || info->schedule != p->s || info->i != p->expect_i ||
        info->steps != dfn_sampler_num_steps(p->smp) || info->t != dfn_sampler_timestep(p->smp, info->i) ||
        info->t_prev != dfn_sampler_timestep(p->smp, info->i - 1) ||
        info->sqrt_alphabar != p->s->sqrt_alphabar[info->t] ||
        info->sqrt_one_minus_alphabar != p->s->sqrt_one_minus_alphabar[info->t])
        p->bad |= 1;
    for (k = 0; k < 4; k++) {
        tt[k] = info->t;
        if (info->labels[k] != p->labels[k]) p->bad |= 2;
    }
    if (!p->overwrite) {
        /* eps_hat is the (eps-)prediction itself; x0_hat follows section 4 */
        dfn_gmm_eps(p->g, p->s, e, info->x_t, tt, p->labels, 4);
        for (j = 0; j < 8; j++) {
            double x0 = ((double)info->x_t[j] - (double)info->sqrt_one_minus_alphabar * e[j]) / info->sqrt_alphabar;
            if (info->eps_hat[j] != e[j]) p->bad |= 4;
            /* float rounding of x_t and eps_hat, amplified by 1 / sqrt(alphabar_t) */
            if (fabs(info->x0_hat[j] - x0) > 1e-5 * (1 + (fabs(info->x_t[j]) + fabs(e[j])) / info->sqrt_alphabar))
                p->bad |= 8;
        }
    } else {
        dfn_gmm_eps(p->g, p->s, info->eps_hat, info->x_t, tt, p->labels, 4);
    }
    p->expect_i--;
    return 0;
}

static int ctl_zero_predict(void *user, const float *x_t, const int *t, const int *labels, int n, float *out)
{
    (void)user; (void)x_t; (void)t; (void)labels;
    memset(out, 0, sizeof(float) * (size_t)n * 2);
    return 0;
}

void test_control_guide_hook_arguments_and_effect(void)
{
    /* The hook is called once per step, i = S..1, with the documented
       arguments; what it writes into eps_hat is what the step uses: a
       predictor that returns zeros plus a hook that writes the exact
       predictor's eps gives the samples of the exact predictor itself. */
    dfn_gmm g = ctl_gmm8();
    dfn_schedule s;
    dfn_sampler smp;
    dfn_sampler_config cfg;
    dfn_gmm_predictor gp;
    ctl_hook_probe hp;
    dfn_rng rng;
    float a[8], b[8];
    int labels[4] = { 2, -1, 5, 7 }, kind, j;
    double maxd = 0;
    ctl_schedule(&s, 200);
    gp.gmm = &g; gp.schedule = &s;
    for (kind = 0; kind < 2; kind++) {
        memset(&hp, 0, sizeof hp);
        cfg = dfn_sampler_config_default(kind ? DFN_SAMPLER_DDPM : DFN_SAMPLER_DDIM, 4, 2, dfn_gmm_predict, &gp);
        cfg.steps = 25;
        cfg.labels = labels;
        cfg.guide = ctl_hook;
        cfg.guide_user = &hp;
        CHECK(dfn_sampler_alloc(&smp, &cfg, &s, NULL) == DFN_OK, "sampler");
        hp.smp = &smp; hp.s = &s; hp.g = &g; hp.labels = labels;
        hp.expect_i = dfn_sampler_num_steps(&smp);
        dfn_rng_seed(&rng, 9, 0);
        CHECK(dfn_sampler_run(&smp, a, NULL, &rng) == DFN_OK, "run");
        CHECK(hp.calls == dfn_sampler_num_steps(&smp) && hp.bad == 0, "%s: %d calls, bad arguments %d",
              kind ? "DDPM" : "DDIM", hp.calls, hp.bad);
        dfn_sampler_free(&smp, NULL);

        /* the effect: zeros + hook == the exact predictor */
        hp.overwrite = 1;
        cfg.predict = ctl_zero_predict;
        CHECK(dfn_sampler_alloc(&smp, &cfg, &s, NULL) == DFN_OK, "sampler");
        dfn_rng_seed(&rng, 9, 0);
        CHECK(dfn_sampler_run(&smp, a, NULL, &rng) == DFN_OK, "run");
        dfn_sampler_free(&smp, NULL);
        cfg.predict = dfn_gmm_predict;
        cfg.guide = NULL;
        CHECK(dfn_sampler_alloc(&smp, &cfg, &s, NULL) == DFN_OK, "sampler");
        dfn_rng_seed(&rng, 9, 0);
        CHECK(dfn_sampler_run(&smp, b, NULL, &rng) == DFN_OK, "run");
        dfn_sampler_free(&smp, NULL);
        for (j = 0; j < 8; j++) {           /* (no fmax here: aarch64 gcc 12 ICEs vectorizing it) */
            double d = fabs((double)a[j] - (double)b[j]);
            if (d > maxd) maxd = d;
        }
        CHECK(maxd < 1e-4, "%s: hook-driven samples differ by %g", kind ? "DDPM" : "DDIM", maxd);
    }
    dfn_schedule_free(&s, NULL);
}

/* ---- the noise-aware classifier ---- */

typedef struct ctl_clf_case {
    dfn_classifier *c;
    float *x;
    int *t, *labels, n;
    float weight;
    void *work;
    size_t work_bytes;
} ctl_clf_case;

/* L = sum_i w_i log p(y_i | x_i, t_i) from the forward pass alone, in double. */
static double ctl_clf_objective(void *user, const float *p)
{
    ctl_clf_case *cc = (ctl_clf_case *)user;
    float logp[5 * 3];
    double s = 0;
    int i;
    (void)p;
    if (dfn_classifier_forward(cc->c, logp, cc->x, cc->t, cc->n, cc->work, cc->work_bytes) != DFN_OK) return NAN;
    for (i = 0; i < cc->n; i++)
        if (cc->labels[i] >= 0) s += (double)cc->weight * logp[i * 3 + cc->labels[i]];
    return s;
}

void test_control_classifier_gradients(void)
{
    /* The hand-written backward passes (weights, and the input gradient
       that guidance uses) against central differences of the forward
       pass's objective; a row with label -1 contributes nothing. The
       forward also gives normalized log-probabilities. */
    enum { N = 5 };
    dfn_classifier_config cc = dfn_classifier_config_default(2, 3);
    dfn_classifier c;
    ctl_clf_case k;
    dfn_rng rng;
    float *params, *grads, x[N * 2], dx[N * 2], logp[N * 3];
    int t[N] = { 1, 10, 100, 500, 999 }, labels[N] = { 0, 2, -1, 1, 2 }, i, j;
    double err, obj, sum;
    size_t worst, P;
    cc.hidden = 8; cc.time_dim = 4; cc.act = DFN_ACT_GELU;
    P = dfn_classifier_num_params(&cc);
    CHECK(P == (size_t)(8 * 6 + 8 + 8 * 8 + 8 + 3 * 8 + 3), "parameter count %d", (int)P);
    params = (float *)malloc(sizeof(float) * P);
    grads = (float *)calloc(P, sizeof(float));
    dfn_rng_seed(&rng, 21, 0);
    CHECK(dfn_classifier_init(&c, &cc, params) == DFN_OK && dfn_classifier_init_weights(&c, &rng) == DFN_OK, "init");
    dfn_rng_normal_fill(&rng, x, N * 2);
    k.c = &c; k.x = x; k.t = t; k.labels = labels; k.n = N; k.weight = 0.7f;
    k.work_bytes = dfn_classifier_work_size(&cc, N);
    k.work = malloc(k.work_bytes);
    CHECK(dfn_classifier_backward(&c, grads, dx, &obj, x, t, labels, k.weight, N, k.work, k.work_bytes) == DFN_OK,
          "backward");
    CHECK(fabs(obj - ctl_clf_objective(&k, params)) < 1e-5 * (1 + fabs(obj)), "objective %g", obj);
    CHECK(dfn_check_grad(ctl_clf_objective, &k, params, P, grads, 1, 1e-2f, 1e-3, &err, &worst) == DFN_OK &&
          err < 1e-2, "weights: relative error %g at %d", err, (int)worst);
    CHECK(dfn_check_grad(ctl_clf_objective, &k, x, N * 2, dx, 1, 1e-2f, 1e-3, &err, &worst) == DFN_OK &&
          err < 1e-2, "input: relative error %g at %d", err, (int)worst);
    CHECK(dx[4] == 0 && dx[5] == 0, "label -1 row has a gradient");
    /* guidance needs only dx: grads NULL gives the same dx */
    {
        float dx2[N * 2];
        CHECK(dfn_classifier_backward(&c, NULL, dx2, NULL, x, t, labels, k.weight, N, k.work, k.work_bytes) == DFN_OK &&
              memcmp(dx, dx2, sizeof dx) == 0, "dx without weight gradients");
    }
    CHECK(dfn_classifier_forward(&c, logp, x, t, N, k.work, k.work_bytes) == DFN_OK, "forward");
    for (i = 0; i < N; i++) {
        sum = 0;
        for (j = 0; j < 3; j++) sum += exp(logp[i * 3 + j]);
        CHECK(fabs(sum - 1) < 1e-5, "row %d: probabilities sum to %g", i, sum);
    }
    free(k.work); free(params); free(grads);
}

/* An exact predictor that ignores the labels: the unconditional model. */
static int ctl_uncond_predict(void *user, const float *x_t, const int *t, const int *labels, int n, float *out)
{
    (void)labels;
    return dfn_gmm_predict(user, x_t, t, NULL, n, out);
}

/* Trains the 8-class noise-aware classifier of the 8 Gaussians. */
static int ctl_train_classifier(dfn_classifier *c, float *params, const dfn_schedule *s, int steps, float *acc)
{
    enum { B = 256 };
    dfn_classifier_config cc = dfn_classifier_config_default(2, 8);
    dfn_classifier_trainer tr;
    dfn_gmm g = ctl_gmm8();
    dfn_rng rng;
    float x0[B * 2], loss = 0, logp[B * 8];
    int labels[B], t[B], k, i, ok, hit = 0;
    size_t bytes = dfn_classifier_trainer_size(&cc, B);
    void *mem = malloc(bytes);
    dfn_rng_seed(&rng, 31, 0);
    ok = dfn_classifier_num_params(&cc) <= 20000 &&   /* the caller's params hold 20000 floats */
         dfn_classifier_init(c, &cc, params) == DFN_OK && dfn_classifier_init_weights(c, &rng) == DFN_OK &&
         dfn_classifier_trainer_init(&tr, c, s, B, 3e-3f, mem, bytes) == DFN_OK;
    for (k = 0; ok && k < steps; k++)
        ok = dfn_gmm_sample(&g, &rng, x0, labels, B) == DFN_OK &&
             dfn_classifier_train_step(&tr, x0, labels, &rng, &loss) == DFN_OK;
    /* accuracy on clean data (t = 1) */
    if (ok) {
        for (i = 0; i < B; i++) t[i] = 1;
        ok = dfn_gmm_sample(&g, &rng, x0, labels, B) == DFN_OK &&
             dfn_classifier_forward(c, logp, x0, t, B, tr.work, tr.work_bytes) == DFN_OK;
        for (i = 0; ok && i < B; i++) {
            int best = 0;
            for (k = 1; k < 8; k++) if (logp[i * 8 + k] > logp[i * 8 + best]) best = k;
            hit += best == labels[i];
        }
    }
    *acc = (float)hit / B;
    if (verbose_control()) printf("    classifier: last loss %.4f, clean accuracy %.3f\n", loss, *acc);
    free(mem);
    return ok;
}

void test_control_classifier_guidance_raises_share(void)
{
    /* The unconditional exact predictor puts 1/8 of the samples in any one
       component. Classifier guidance (scale 1 and 3) with a classifier
       trained 1500 steps must raise the share in the asked component:
       to more than 0.5 and by more than 0.35 over unguided sampling. */
    enum { N = 2000 };
    static const float scales[2] = { 1.0f, 3.0f };
    dfn_gmm g = ctl_gmm8();
    dfn_schedule s;
    dfn_classifier c;
    dfn_classifier_guidance cg;
    dfn_gmm_predictor gp;
    dfn_sampler_config cfg;
    float *params, *x = (float *)malloc(sizeof(float) * N * 2), acc;
    int labels[N], i, si;
    double base;
    ctl_schedule(&s, 1000);
    params = (float *)malloc(sizeof(float) * 20000);
    CHECK(ctl_train_classifier(&c, params, &s, 1500, &acc) && acc > 0.95, "classifier accuracy %.3f", acc);
    gp.gmm = &g; gp.schedule = &s;
    for (i = 0; i < N; i++) labels[i] = i % 8;
    cfg = dfn_sampler_config_default(DFN_SAMPLER_DDIM, N, 2, ctl_uncond_predict, &gp);
    cfg.labels = labels;
    CHECK(ctl_run(&cfg, &s, x, 41) == DFN_OK, "unguided run");
    base = ctl_share(x, labels, N);
    cg.clf = &c;
    cg.work_bytes = dfn_classifier_work_size(&c.cfg, N);
    cg.work = malloc(cg.work_bytes);
    cg.grad = (float *)malloc(sizeof(float) * N * 2);
    for (si = 0; si < 2; si++) {
        double share;
        cg.scale = scales[si];
        cfg.guide = dfn_classifier_guide;
        cfg.guide_user = &cg;
        CHECK(ctl_run(&cfg, &s, x, 41) == DFN_OK, "guided run");
        share = ctl_share(x, labels, N);
        if (verbose_control())
            printf("    classifier guidance scale %g: %.1f%% in the asked component (unguided %.1f%%)\n",
                   scales[si], 100 * share, 100 * base);
        CHECK(share > 0.5 && share > base + 0.35, "scale %g: share %.3f, unguided %.3f", scales[si], share, base);
    }
    free(cg.work); free(cg.grad); free(params); free(x);
    dfn_schedule_free(&s, NULL);
}

void test_control_halfspace_constraint(void)
{
    /* Constraint guidance keeping x <= 0 (a = (1, 0), b = 0, strength 1:
       x0_hat projected at every step, so the last DDIM step, whose output is
       x0_hat, ends inside). Unguided, half of the 8 Gaussians' mass has
       x > 0; guided, none may (beyond 1e-6), and the three components on
       the left (k = 3, 4, 5) must keep at least their unguided share. */
    enum { N = 2000 };
    dfn_gmm g = ctl_gmm8();
    dfn_schedule s;
    dfn_gmm_predictor gp;
    dfn_sampler_config cfg;
    dfn_halfspace_guidance hs;
    float a[2] = { 1.0f, 0.0f }, *x = (float *)malloc(sizeof(float) * N * 2);
    int i, pass;
    ctl_schedule(&s, 1000);
    gp.gmm = &g; gp.schedule = &s;
    hs.a = a; hs.b = 0.0f; hs.strength = 1.0f;
    for (pass = 0; pass < 2; pass++) {
        int right = 0, left = 0;
        cfg = dfn_sampler_config_default(DFN_SAMPLER_DDIM, N, 2, dfn_gmm_predict, &gp);
        if (pass) { cfg.guide = dfn_halfspace_guide; cfg.guide_user = &hs; }
        CHECK(ctl_run(&cfg, &s, x, 51) == DFN_OK, "run");
        for (i = 0; i < N; i++) {
            int k = ctl_nearest(x + 2 * i);
            right += x[2 * i] > 1e-6f;
            left += k >= 3 && k <= 5;
        }
        if (verbose_control())
            printf("    %s: %.1f%% with x > 0, %.1f%% in the left components\n", pass ? "guided" : "unguided",
                   100.0 * right / N, 100.0 * left / N);
        if (pass == 0) CHECK(right > N * 4 / 10, "unguided: only %d with x > 0", right);
        else CHECK(right == 0 && left > N * 35 / 100, "guided: %d with x > 0, %d on the left", right, left);
    }
    free(x);
    dfn_schedule_free(&s, NULL);
}

/* ---- inpainting: a correlated 2D Gaussian ---- */

/* x_0 ~ N(0, [[1, rho], [rho, 1]]): x_t ~ N(0, C_t), C_t = ab Sigma + (1 - ab) I
   = [[1, ab rho], [ab rho, 1]], score = -C_t^-1 x, eps* = sqrt(1 - ab) C_t^-1 x
   (section 9 for one Gaussian with a full covariance). Written in double. */
typedef struct ctl_corr { const dfn_schedule *s; double rho; } ctl_corr;

static int ctl_corr_predict(void *user, const float *x_t, const int *t, const int *labels, int n, float *out)
{
    const ctl_corr *c = (const ctl_corr *)user;
    int i;
    (void)labels;
    for (i = 0; i < n; i++) {
        double ab = c->s->alphabar[t[i]], r = ab * c->rho, det = 1 - r * r, s1m = sqrt(1 - ab);
        double x = x_t[2 * i], y = x_t[2 * i + 1];
        out[2 * i] = (float)(s1m * (x - r * y) / det);
        out[2 * i + 1] = (float)(s1m * (y - r * x) / det);
    }
    return 0;
}

/* Inpaints x_2 given x_1 = c for three values of c (n_per samples each) and
   checks the known values came out exactly. Returns in *fail_* whether the
   mean / variance of x_2 | x_1 = c misses the tolerances of the test below,
   and the worst errors in *mean_err (absolute) and *var_dev (relative). */
static void ctl_inpaint_run(const dfn_schedule *s, double rho, int jump, int count, int n_per,
                            double shrink_allowance, int *fail_mean, int *fail_var,
                            double *mean_err, double *var_dev, int *exact)
{
    static const float cs[3] = { -1.5f, 0.0f, 1.0f };
    ctl_corr pc;
    dfn_sampler_config cfg;
    int N = 3 * n_per, i, ci;
    float *known = (float *)malloc(sizeof(float) * N * 2), *x = (float *)malloc(sizeof(float) * N * 2);
    unsigned char *mask = (unsigned char *)malloc((size_t)N * 2);
    pc.s = s; pc.rho = rho;
    for (i = 0; i < N; i++) {
        known[2 * i] = cs[i % 3];
        known[2 * i + 1] = 123.0f;        /* never used: not known */
        mask[2 * i] = 1;
        mask[2 * i + 1] = 0;
    }
    cfg = dfn_sampler_config_default(DFN_SAMPLER_DDPM, N, 2, ctl_corr_predict, &pc);
    cfg.known = known;
    cfg.known_mask = mask;
    cfg.resample_jump = jump;
    cfg.resample_count = count;
    CHECK(ctl_run(&cfg, s, x, 61) == DFN_OK, "inpainting run");
    *exact = 1;
    *fail_mean = *fail_var = 0;
    *mean_err = *var_dev = 0;
    for (i = 0; i < N; i++) *exact &= x[2 * i] == cs[i % 3];
    for (ci = 0; ci < 3; ci++) {
        double m = 0, v = 0, want_m = rho * cs[ci], want_v = 1 - rho * rho;
        double se_m = sqrt(want_v / n_per), se_v = sqrt(2.0 / (n_per - 1));
        for (i = ci; i < N; i += 3) m += x[2 * i + 1];
        m /= n_per;
        for (i = ci; i < N; i += 3) v += (x[2 * i + 1] - m) * (x[2 * i + 1] - m);
        v /= n_per - 1;
        if (verbose_control())
            printf("      c = %5.2f: mean %.4f (exact %.4f), variance %.4f (exact %.4f)\n", cs[ci], m, want_m, v,
                   want_v);
        *fail_mean |= fabs(m - want_m) > 4.5 * se_m + shrink_allowance * fabs(want_m);
        *fail_var |= fabs(v / want_v - 1) > 4.5 * se_v;
        *mean_err = fmax(*mean_err, fabs(m - want_m));
        *var_dev = fmax(*var_dev, fabs(v / want_v - 1));
    }
    free(known); free(x); free(mask);
}

void test_control_inpaint_moments_correlated_gaussian(void)
{
    /* x ~ N(0, [[1, rho], [rho, 1]]), rho = 0.8; with x_1 = c known,
       x_2 | x_1 = c ~ N(rho c, 1 - rho^2) in closed form. DDPM with T = 250
       and the exact predictor, 500 samples for each of c = -1.5, 0, 1 (the
       RePaint paper's T = 250, jump 10, 10 resamplings).
       Known values must come out exactly, with and without resampling.
       Tolerances: the sample mean's standard error is se = sqrt((1 - rho^2)
       / 500) = 0.027 and the sample variance's relative one sqrt(2 / 499) =
       6.3%; both get 4.5 of them (a chance failure of any of the 6 checks
       has probability ~4e-5). RePaint is not exact at finite T and
       resampling: with 10000 samples per c it draws the mean 6.6% short of
       rho c (toward the prior mean 0; the variance within 1.6%), so the mean
       gets an allowance of 10% of |rho c| on top. Plain replacement (no
       jumps) is known to be biased for correlated data: it draws the
       unknown coordinate before the noised known one has pulled it over
       (measured: means 38% short, variance 33% too large); the test asserts
       that it misses the mean tolerance, so the check can tell them apart. */
    dfn_schedule s;
    double me, vd;
    int exact, fm, fv, pass;
    ctl_schedule(&s, 250);
    for (pass = 0; pass < 2; pass++) {
        int jump = pass ? 10 : 0, count = pass ? 10 : 1;
        ctl_inpaint_run(&s, 0.8, jump, count, 500, 0.10, &fm, &fv, &me, &vd, &exact);
        if (verbose_control())
            printf("    %s: worst |mean error| %.4f, worst |variance ratio - 1| %.3f\n",
                   pass ? "jump 10, 10 resamplings" : "replacement only", me, vd);
        CHECK(exact, "known values changed");
        if (pass) CHECK(!fm && !fv, "resampled: mean error %.4f, variance off by %.1f%%", me, 100 * vd);
        else CHECK(fm, "replacement only meets the tolerance: mean error %.4f", me);
    }
    dfn_schedule_free(&s, NULL);
}

static int ctl_bad_hook(void *user, const dfn_guide_info *info)
{
    if (user) { info->eps_hat[0] = NAN; return 0; }
    return 1;
}

void test_control_errors(void)
{
    dfn_gmm g = ctl_gmm8();
    dfn_schedule s;
    dfn_gmm_predictor gp;
    dfn_sampler_config cfg, base;
    dfn_sampler smp;
    dfn_classifier c;
    dfn_classifier_config cc = dfn_classifier_config_default(2, 8);
    dfn_rng rng;
    float x[4 * 2] = { 0 }, known[4 * 2] = { 0 }, params[1];
    unsigned char mask[4 * 2] = { 1, 0, 1, 0, 1, 0, 1, 0 };
    int labels[4] = { 0, 1, 2, 3 }, one = 1;
    ctl_schedule(&s, 100);
    gp.gmm = &g; gp.schedule = &s;
    dfn_rng_seed(&rng, 1, 0);
    base = dfn_sampler_config_default(DFN_SAMPLER_DDIM, 4, 2, dfn_gmm_predict, &gp);
    base.steps = 10;
    CHECK(base.guidance_scale == 1.0f && !base.guide && !base.known && base.resample_count == 1, "defaults");
    cfg = base; cfg.guidance_scale = -1.0f;
    CHECK(dfn_sampler_alloc(&smp, &cfg, &s, NULL) == DFN_ERR_INVALID_ARG, "w < 0");
    cfg.guidance_scale = NAN;
    CHECK(dfn_sampler_size(&cfg, &s) == 0, "w NaN");
    cfg = base; cfg.known = known;
    CHECK(dfn_sampler_alloc(&smp, &cfg, &s, NULL) == DFN_ERR_NULL, "known without a mask");
    cfg.known_mask = mask; known[3] = INFINITY;
    CHECK(dfn_sampler_alloc(&smp, &cfg, &s, NULL) == DFN_ERR_NOT_FINITE, "known not finite");
    known[3] = 0;
    cfg.resample_jump = 11;
    CHECK(dfn_sampler_alloc(&smp, &cfg, &s, NULL) == DFN_ERR_INVALID_ARG, "jump > S");
    cfg.resample_jump = -1;
    CHECK(dfn_sampler_alloc(&smp, &cfg, &s, NULL) == DFN_ERR_INVALID_ARG, "jump < 0");
    cfg.resample_jump = 2; cfg.resample_count = 0;
    CHECK(dfn_sampler_alloc(&smp, &cfg, &s, NULL) == DFN_ERR_INVALID_ARG, "count 0");
    cfg.resample_count = 3;
    {
        /* S = 10, jump 2, 3 passes: levels 8, 6, 4, 2 each run their 2 steps
           2 more times, 10 + 4 * 2 * 2 = 26 predictor calls */
        ctl_recorder rec;
        memset(&rec, 0, sizeof rec);
        rec.inner = gp;
        cfg.predict = ctl_record_predict;
        cfg.predict_user = &rec;
        CHECK(dfn_sampler_alloc(&smp, &cfg, &s, NULL) == DFN_OK, "valid inpainting sampler");
        CHECK(dfn_sampler_run(&smp, x, x, NULL) == DFN_ERR_NULL, "inpainting without an rng");
        rec.calls = 0;
        CHECK(dfn_sampler_run(&smp, x, NULL, &rng) == DFN_OK && x[0] == 0 && x[2] == 0, "inpainting run");
        CHECK(rec.calls == 26, "%d predictor calls with resampling", rec.calls);
        dfn_sampler_free(&smp, NULL);
        cfg.known = NULL;      /* resampling alone: deterministic DDIM, but the jumps need noise */
        CHECK(dfn_sampler_alloc(&smp, &cfg, &s, NULL) == DFN_OK, "resampling sampler");
        CHECK(dfn_sampler_run(&smp, x, x, NULL) == DFN_ERR_NULL, "resampling without an rng");
        dfn_sampler_free(&smp, NULL);
    }
    /* the hook's failures */
    cfg = base; cfg.labels = labels; cfg.guide = ctl_bad_hook;
    CHECK(dfn_sampler_alloc(&smp, &cfg, &s, NULL) == DFN_OK, "sampler");
    CHECK(dfn_sampler_run(&smp, x, NULL, &rng) == DFN_ERR_CALLBACK, "hook returns non-zero");
    dfn_sampler_free(&smp, NULL);
    cfg.guide_user = &one;
    CHECK(dfn_sampler_alloc(&smp, &cfg, &s, NULL) == DFN_OK, "sampler");
    CHECK(dfn_sampler_run(&smp, x, NULL, &rng) == DFN_ERR_NOT_FINITE, "hook writes NaN");
    dfn_sampler_free(&smp, NULL);
    /* the classifier's */
    cc.num_classes = 1;
    CHECK(dfn_classifier_num_params(&cc) == 0 && dfn_classifier_init(&c, &cc, params) == DFN_ERR_INVALID_ARG,
          "one class");
    cc.num_classes = 8; cc.time_dim = 3;
    CHECK(dfn_classifier_work_size(&cc, 4) == 0, "odd time_dim");
    cc.time_dim = 32;
    CHECK(dfn_classifier_work_size(&cc, 0) == 0, "n = 0");
    CHECK(dfn_classifier_init(&c, &cc, NULL) == DFN_ERR_NULL, "NULL params");
    {
        float *p = (float *)malloc(sizeof(float) * dfn_classifier_num_params(&cc)), logp[4 * 8];
        size_t wb = dfn_classifier_work_size(&cc, 4);
        void *w = malloc(wb);
        int t[4] = { 1, 2, 3, 4 }, bad[4] = { 0, 8, 1, 1 };
        CHECK(dfn_classifier_init(&c, &cc, p) == DFN_OK && dfn_classifier_init_weights(&c, &rng) == DFN_OK, "init");
        CHECK(dfn_classifier_forward(&c, logp, x, t, 4, w, wb - 1) == DFN_ERR_BUFFER_TOO_SMALL, "small work");
        CHECK(dfn_classifier_backward(&c, NULL, NULL, NULL, x, t, bad, 1.0f, 4, w, wb) == DFN_ERR_INVALID_ARG,
              "label 8");
        t[2] = -1;
        CHECK(dfn_classifier_forward(&c, logp, x, t, 4, w, wb) == DFN_ERR_INVALID_ARG, "t < 0");
        {
            dfn_classifier_trainer ct;
            size_t tb = dfn_classifier_trainer_size(&cc, 4);
            void *tm = malloc(tb);
            float x0[4 * 2] = { 0 };
            CHECK(dfn_classifier_trainer_init(&ct, &c, &s, 4, 1e-3f, tm, tb - 1) == DFN_ERR_BUFFER_TOO_SMALL,
                  "small trainer buffer");
            CHECK(dfn_classifier_trainer_init(&ct, &c, &s, 4, 0.0f, tm, tb) == DFN_ERR_INVALID_ARG, "lr 0");
            CHECK(dfn_classifier_trainer_init(&ct, &c, &s, 4, 1e-3f, tm, tb) == DFN_OK, "trainer");
            bad[1] = -1;
            CHECK(dfn_classifier_train_step(&ct, x0, bad, &rng, NULL) == DFN_ERR_INVALID_ARG, "training label -1");
            x0[3] = NAN;
            CHECK(dfn_classifier_train_step(&ct, x0, labels, &rng, NULL) == DFN_ERR_NOT_FINITE, "x0 NaN");
            free(tm);
        }
        free(p); free(w);
    }
    dfn_schedule_free(&s, NULL);
}

/* ---- a trained conditional MLP ---- */

void test_control_quality_conditional_mlp(void)
{
    /* An MLP (width 64, 2 blocks, 8 classes, label dropout 0.1) trained
       2500 steps at batch 256 on the 8 Gaussians with the component as the
       class; DDIM-50 from the EMA weights at w = 1 must put >= 95% of the
       samples in the asked component (w = 3 is reported). */
    enum { B = 256, N = 2000 };
    dfn_mlp_config mc = dfn_mlp_config_default(2);
    dfn_train_config tc = dfn_train_config_default();
    dfn_gmm g = ctl_gmm8();
    dfn_schedule s;
    dfn_mlp m;
    dfn_trainer tr;
    dfn_mlp_predictor p;
    dfn_sampler_config cfg;
    dfn_rng rng;
    float *params, batch[B * 2], *x = (float *)malloc(sizeof(float) * N * 2);
    int labels[N], bl[B], k, ok, wi;
    const int steps = 2500;
    ctl_schedule(&s, 1000);
    mc.hidden = 64; mc.blocks = 2; mc.num_classes = 8;
    tc.batch = B; tc.lr = 3e-3f; tc.warmup_steps = 100; tc.total_steps = steps; tc.p_uncond = 0.1f;
    params = (float *)malloc(sizeof(float) * dfn_mlp_num_params(&mc));
    dfn_rng_seed(&rng, 71, 0);
    ok = dfn_mlp_init(&m, &mc, params) == DFN_OK && dfn_mlp_init_weights(&m, &rng) == DFN_OK &&
         dfn_trainer_alloc(&tr, &m, &s, &tc, NULL) == DFN_OK;
    for (k = 0; ok && k < steps; k++)
        ok = dfn_gmm_sample(&g, &rng, batch, bl, B) == DFN_OK && dfn_train_step(&tr, batch, bl, &rng, NULL) == DFN_OK;
    CHECK(ok, "training");
    if (ok) {
        p.model = &tr.ema_model;
        p.work_bytes = dfn_mlp_forward_size(&mc, 1024);
        p.work = malloc(p.work_bytes);
        for (k = 0; k < N; k++) labels[k] = k % 8;
        for (wi = 0; wi < 2; wi++) {
            double share;
            cfg = dfn_mlp_sampler_config(DFN_SAMPLER_DDIM, N, &p);
            cfg.labels = labels;
            cfg.guidance_scale = wi ? 3.0f : 1.0f;
            CHECK(ctl_run(&cfg, &s, x, 81) == DFN_OK, "run");
            share = ctl_share(x, labels, N);
            if (verbose_control()) printf("    trained MLP, w = %g: %.2f%% in the asked component\n",
                                          cfg.guidance_scale, 100 * share);
            if (wi == 0) CHECK(share >= 0.95, "w = 1: %.2f%% in the asked component", 100 * share);
        }
        free(p.work);
        dfn_trainer_free(&tr, NULL);
    }
    free(params); free(x);
    dfn_schedule_free(&s, NULL);
}
