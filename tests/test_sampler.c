/* Samplers: timestep spacings against MATH.md section 7 in double; the DDPM
   step against Algorithm 2 written out; DDIM(eta = 1, S = T) against DDPM;
   determinism, single steps and batch invariance bit for bit; callbacks. */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "harness.h"
#include "../diffusion.h"

/* A 2-component 2D mixture and its exact predictor, for driving samplers. */
static const float smp_w[2] = { 0.4f, 0.6f };
static const float smp_mu[4] = { -1.0f, 0.5f, 1.5f, -0.5f };
static const float smp_sd[2] = { 0.3f, 0.5f };

static dfn_gmm smp_gmm(void)
{
    dfn_gmm g;
    g.k = 2; g.dim = 2; g.weights = smp_w; g.means = smp_mu; g.stds = smp_sd;
    return g;
}

void test_ddim_timesteps_formula(void)
{
    /* Section 7 with round(x) = floor(x + 0.5), in double:
       linspace round(1 + (i-1)(T-1)/(S-1)), leading 1 + (i-1) floor(T/S),
       trailing round(i T / S). */
    static const int Ss[4] = { 50, 16, 3, 1 };
    int k, i, T, S, bad = 0;
    int tau[1001];
    for (k = 0; k < 4; k++) {
        S = Ss[k];
        T = 1000;
        CHECK(dfn_ddim_timesteps(tau, T, S, DFN_SPACING_LINSPACE) == DFN_OK, "linspace");
        for (i = 1; i <= S; i++)
            bad += tau[i] != (S == 1 ? T : (int)floor(1 + (i - 1) * (T - 1.0) / (S - 1) + 0.5));
        CHECK(dfn_ddim_timesteps(tau, T, S, DFN_SPACING_LEADING) == DFN_OK, "leading");
        for (i = 1; i <= S; i++) bad += tau[i] != 1 + (i - 1) * (int)floor((double)T / S);
        CHECK(tau[S] <= T - T / S + 1, "leading must end at most at T - floor(T/S) + 1");
        CHECK(dfn_ddim_timesteps(tau, T, S, DFN_SPACING_TRAILING) == DFN_OK, "trailing");
        for (i = 1; i <= S; i++) bad += tau[i] != (int)floor((double)i * T / S + 0.5);
        CHECK(tau[S] == T, "trailing must start from T");
        CHECK(tau[0] == 0, "tau_0 = 0");
    }
    CHECK(bad == 0, "%d timesteps differ from the formulas (T = 1000)", bad);
    /* Spot values written out by hand from the formulas. */
    dfn_ddim_timesteps(tau, 1000, 3, DFN_SPACING_LINSPACE);
    CHECK(tau[1] == 1 && tau[2] == 501 && tau[3] == 1000, "linspace S=3: %d %d %d", tau[1], tau[2], tau[3]);
    dfn_ddim_timesteps(tau, 1000, 3, DFN_SPACING_LEADING);
    CHECK(tau[1] == 1 && tau[2] == 334 && tau[3] == 667, "leading S=3: %d %d %d", tau[1], tau[2], tau[3]);
    dfn_ddim_timesteps(tau, 1000, 3, DFN_SPACING_TRAILING);
    CHECK(tau[1] == 333 && tau[2] == 667 && tau[3] == 1000, "trailing S=3: %d %d %d", tau[1], tau[2], tau[3]);
    /* Every (T, S) up to 80: the formulas, strictly increasing, within 1..T. */
    bad = 0;
    for (T = 1; T <= 80; T++)
        for (S = 1; S <= T; S++) {
            int sp;
            for (sp = 0; sp < 3; sp++) {
                dfn_ddim_timesteps(tau, T, S, (dfn_spacing)sp);
                for (i = 1; i <= S; i++) {
                    int want = sp == 0 ? (S == 1 ? T : (int)floor(1 + (i - 1) * (T - 1.0) / (S - 1) + 0.5))
                             : sp == 1 ? 1 + (i - 1) * (T / S) : (int)floor((double)i * T / S + 0.5);
                    bad += tau[i] != want || tau[i] <= tau[i - 1] || tau[i] > T;
                }
            }
        }
    CHECK(bad == 0, "%d timesteps wrong over all T <= 80", bad);
}

void test_ddpm_step_is_algorithm_2(void)
{
    /* x_{t-1} = (1/sqrt(alpha_t)) (x_t - beta_t / sqrt(1 - alphabar_t) eps) + sigma_t z,
       with alpha, alphabar recomputed here in double from the linear betas. */
    enum { C = 16 };
    static const int ts[4] = { 1, 2, 500, 1000 };
    dfn_schedule s;
    dfn_schedule_config c = dfn_schedule_config_default(DFN_SCHEDULE_LINEAR, 1000);
    dfn_rng rng;
    float xt[C], eps[C], z[C], x0h[C], out[C];
    int k, j, v, bad = 0;
    CHECK(dfn_schedule_alloc(&s, &c, NULL) == DFN_OK, "schedule");
    dfn_rng_seed(&rng, 21, 0);
    for (k = 0; k < 4; k++)
        for (v = 0; v < 2; v++) {
            int t = ts[k], tv[C], step;
            double ab = 1.0, ab_prev = 1.0, b = 0, sigma;
            for (step = 1; step <= t; step++) {
                b = 1e-4 + (0.02 - 1e-4) * (step - 1) / 999.0;
                ab_prev = ab;
                ab *= 1 - b;
            }
            sigma = v == 0 ? sqrt(b * (1 - ab_prev) / (1 - ab)) : sqrt(b);
            for (j = 0; j < C; j++) tv[j] = t;
            dfn_rng_normal_fill(&rng, xt, C);
            dfn_rng_normal_fill(&rng, eps, C);
            dfn_rng_normal_fill(&rng, z, C);
            dfn_prediction_to_x0_eps(&s, DFN_PREDICT_EPS, x0h, NULL, eps, xt, tv, C, 1);
            CHECK(dfn_ddpm_step(&s, out, xt, x0h, z, t, (dfn_variance)v, C) == DFN_OK, "step");
            for (j = 0; j < C; j++) {
                double want = (xt[j] - b / sqrt(1 - ab) * eps[j]) / sqrt(1 - b) + sigma * z[j];
                if (fabs(out[j] - want) > 2e-5 * (1 + fabs(want))) {
                    bad++;
                    printf("    t=%d var=%d: %g vs %g\n", t, v, out[j], want);
                }
            }
        }
    CHECK(bad == 0, "%d values differ from Algorithm 2", bad);
    dfn_schedule_free(&s, NULL);
}

/* Runs a sampler to the end; returns its result. */
static dfn_result run_sampler(const dfn_sampler_config *cfg, const dfn_schedule *s,
                              float *x, const float *xT, uint64_t seed)
{
    dfn_sampler smp;
    dfn_rng rng;
    dfn_result r = dfn_sampler_alloc(&smp, cfg, s, NULL);
    if (r != DFN_OK) return r;
    dfn_rng_seed(&rng, seed, 0);
    r = dfn_sampler_run(&smp, x, xT, &rng);
    dfn_sampler_free(&smp, NULL);
    return r;
}

void test_ddim_eta1_equals_ddpm_small(void)
{
    /* Section 7: DDIM with eta = 1 and S = T is DDPM with the "small"
       variance. One step from the same x_t, x0_hat and z, for every t; then
       a whole run from the same seed (same x_T, same z at every step). */
    enum { N = 200, D = 2, C = N * D };
    static float a[C], b[C], xt[C], x0h[C], epsh[C], z[C];
    dfn_schedule s;
    dfn_schedule_config sc = dfn_schedule_config_default(DFN_SCHEDULE_COSINE, 1000);
    dfn_gmm g = smp_gmm();
    dfn_gmm_predictor gp;
    dfn_sampler_config ddpm, ddim;
    dfn_rng rng;
    double worst_step = 0, worst_run = 0;
    int t, j, tv[N];
    CHECK(dfn_schedule_alloc(&s, &sc, NULL) == DFN_OK, "schedule");
    gp.gmm = &g; gp.schedule = &s;
    dfn_rng_seed(&rng, 31, 0);
    for (t = 1; t <= 1000; t++) {
        for (j = 0; j < N; j++) tv[j] = t;
        dfn_rng_normal_fill(&rng, xt, C);
        dfn_rng_normal_fill(&rng, z, C);
        dfn_gmm_eps(&g, &s, epsh, xt, tv, NULL, N);
        dfn_prediction_to_x0_eps(&s, DFN_PREDICT_EPS, x0h, NULL, epsh, xt, tv, N, D);
        dfn_ddpm_step(&s, a, xt, x0h, z, t, DFN_VARIANCE_SMALL, C);
        dfn_ddim_step(&s, b, x0h, epsh, z, t, t - 1, 1.0f, C);
        for (j = 0; j < C; j++) {
            double d = fabs(a[j] - b[j]) / (1 + fabs(a[j]));
            if (d > worst_step) worst_step = d;
        }
    }
    CHECK(worst_step < 2e-5, "one step: DDIM(eta=1) and DDPM(small) differ by %g", worst_step);
    CHECK(fabs(dfn_ddim_sigma(&s, 500, 499, 1.0f) - dfn_ddpm_sigma(&s, 500, DFN_VARIANCE_SMALL)) < 1e-7,
          "sigma: %g vs %g", dfn_ddim_sigma(&s, 500, 499, 1.0f), dfn_ddpm_sigma(&s, 500, DFN_VARIANCE_SMALL));

    ddpm = dfn_sampler_config_default(DFN_SAMPLER_DDPM, N, D, dfn_gmm_predict, &gp);
    ddim = dfn_sampler_config_default(DFN_SAMPLER_DDIM, N, D, dfn_gmm_predict, &gp);
    ddim.steps = 1000;
    ddim.eta = 1.0f;
    ddim.spacing = DFN_SPACING_LINSPACE;           /* tau_i = i */
    CHECK(run_sampler(&ddpm, &s, a, NULL, 77) == DFN_OK, "DDPM run");
    CHECK(run_sampler(&ddim, &s, b, NULL, 77) == DFN_OK, "DDIM run");
    for (j = 0; j < C; j++) {
        double d = fabs(a[j] - b[j]);
        if (d > worst_run) worst_run = d;
    }
    /* 1000 steps of float rounding; a different noise draw would differ by O(1). */
    CHECK(worst_run < 1e-3, "whole run: largest difference %g", worst_run);
    dfn_schedule_free(&s, NULL);
}

void test_sampler_determinism_and_single_steps(void)
{
    enum { N = 64, D = 2, C = N * D, K = 20 };
    static float xT[C], a[C], b[C], m[C];
    dfn_schedule s;
    dfn_schedule_config sc = dfn_schedule_config_default(DFN_SCHEDULE_LINEAR, 1000);
    dfn_gmm g = smp_gmm();
    dfn_gmm_predictor gp;
    dfn_sampler_config cfg;
    dfn_sampler smp;
    dfn_rng rng;
    int i, kind;
    CHECK(dfn_schedule_alloc(&s, &sc, NULL) == DFN_OK, "schedule");
    gp.gmm = &g; gp.schedule = &s;
    dfn_rng_seed(&rng, 41, 0);
    dfn_rng_normal_fill(&rng, xT, C);

    /* DDIM eta = 0: the same x_T gives the same x_0 whatever the rng. */
    cfg = dfn_sampler_config_default(DFN_SAMPLER_DDIM, N, D, dfn_gmm_predict, &gp);
    cfg.steps = K;
    CHECK(run_sampler(&cfg, &s, a, xT, 1) == DFN_OK, "run 1");
    CHECK(run_sampler(&cfg, &s, b, xT, 999) == DFN_OK, "run 2");
    CHECK(memcmp(a, b, sizeof a) == 0, "DDIM eta=0 is not deterministic");
    {
        /* and needs no rng at all */
        CHECK(dfn_sampler_alloc(&smp, &cfg, &s, NULL) == DFN_OK, "alloc");
        CHECK(dfn_sampler_run(&smp, b, xT, NULL) == DFN_OK, "run without rng");
        CHECK(memcmp(a, b, sizeof a) == 0, "run without rng differs");
        dfn_sampler_free(&smp, NULL);
    }

    /* One call of K steps equals K single-step calls, bit for bit: DDIM
       eta = 0, DDIM eta = 1 and DDPM (with the same seed). */
    for (kind = 0; kind < 3; kind++) {
        cfg = dfn_sampler_config_default(kind == 2 ? DFN_SAMPLER_DDPM : DFN_SAMPLER_DDIM,
                                         N, D, dfn_gmm_predict, &gp);
        cfg.steps = K;
        cfg.eta = kind == 1 ? 1.0f : 0.0f;
        CHECK(run_sampler(&cfg, &s, a, NULL, 5) == DFN_OK, "run");
        CHECK(dfn_sampler_alloc(&smp, &cfg, &s, NULL) == DFN_OK, "alloc");
        dfn_rng_seed(&rng, 5, 0);
        dfn_rng_normal_fill(&rng, m, C);                      /* x_T, as run draws it */
        for (i = dfn_sampler_num_steps(&smp); i >= 1; i--)
            if (dfn_sampler_step(&smp, i, m, &rng) != DFN_OK) break;
        CHECK(i == 0, "a single step failed at i = %d", i);
        CHECK(memcmp(a, m, sizeof a) == 0, "kind %d: run differs from single steps", kind);
        CHECK(dfn_sampler_timestep(&smp, 0) == 0 &&
              dfn_sampler_timestep(&smp, dfn_sampler_num_steps(&smp)) == 1000,
              "first and last timesteps");
        dfn_sampler_free(&smp, NULL);
    }
    /* DDPM with the same seed twice: the same samples. */
    cfg = dfn_sampler_config_default(DFN_SAMPLER_DDPM, N, D, dfn_gmm_predict, &gp);
    CHECK(run_sampler(&cfg, &s, a, NULL, 8) == DFN_OK && run_sampler(&cfg, &s, b, NULL, 8) == DFN_OK, "runs");
    CHECK(memcmp(a, b, sizeof a) == 0, "DDPM with the same seed differs");
    CHECK(run_sampler(&cfg, &s, b, NULL, 9) == DFN_OK && memcmp(a, b, sizeof a) != 0,
          "DDPM with another seed must differ");
    dfn_schedule_free(&s, NULL);
}

void test_sampler_batch_invariance(void)
{
    /* One batch of B equals B batches of 1 (DDIM eta = 0 from given x_T). */
    enum { B = 9, D = 2 };
    float xT[B * D], big[B * D], one[D];
    dfn_schedule s;
    dfn_schedule_config sc = dfn_schedule_config_default(DFN_SCHEDULE_COSINE, 200);
    dfn_gmm g = smp_gmm();
    dfn_gmm_predictor gp;
    dfn_sampler_config cfg;
    dfn_rng rng;
    int i, same = 1;
    CHECK(dfn_schedule_alloc(&s, &sc, NULL) == DFN_OK, "schedule");
    gp.gmm = &g; gp.schedule = &s;
    dfn_rng_seed(&rng, 51, 0);
    dfn_rng_normal_fill(&rng, xT, B * D);
    cfg = dfn_sampler_config_default(DFN_SAMPLER_DDIM, B, D, dfn_gmm_predict, &gp);
    cfg.steps = 25;
    CHECK(run_sampler(&cfg, &s, big, xT, 0) == DFN_OK, "batch run");
    cfg.n = 1;
    for (i = 0; i < B; i++) {
        CHECK(run_sampler(&cfg, &s, one, xT + i * D, 0) == DFN_OK, "single run");
        same &= memcmp(one, big + i * D, sizeof one) == 0;
    }
    CHECK(same, "a batch of %d differs from %d batches of 1", B, B);
    dfn_schedule_free(&s, NULL);
}

/* A predictor that records what it was given, and can fail on request. */
typedef struct {
    int calls, fail_at, nan_at, last_label0, last_labeln, last_t;
    float value;          /* constant prediction */
} probe_model;

static int probe_predict(void *user, const float *x_t, const int *t, const int *labels, int n, float *out)
{
    probe_model *p = (probe_model *)user;
    int i;
    (void)x_t;
    p->calls++;
    p->last_label0 = labels[0];
    p->last_labeln = labels[n - 1];
    p->last_t = t[0];
    for (i = 0; i < n * 2; i++) out[i] = p->value;
    if (p->nan_at == p->calls) out[0] = (float)(0.0 * HUGE_VAL);
    return p->calls == p->fail_at ? 42 : 0;
}

typedef struct { int calls, stop_after, last_t, last_tp; } probe_steps;

static int probe_on_step(void *user, const dfn_step_info *info)
{
    probe_steps *p = (probe_steps *)user;
    p->calls++;
    p->last_t = info->t;
    p->last_tp = info->t_prev;
    return p->calls == p->stop_after;
}

void test_sampler_callbacks_labels_clipping(void)
{
    enum { N = 4, D = 2 };
    float x[N * D];
    int labels[N] = { 3, 1, 4, 1 };
    dfn_schedule s;
    dfn_schedule_config sc = dfn_schedule_config_default(DFN_SCHEDULE_LINEAR, 100);
    dfn_sampler_config cfg;
    dfn_sampler smp;
    dfn_rng rng;
    probe_model pm;
    probe_steps ps;
    int i, inside = 1;
    CHECK(dfn_schedule_alloc(&s, &sc, NULL) == DFN_OK, "schedule");
    dfn_rng_seed(&rng, 61, 0);
    memset(&pm, 0, sizeof pm);
    memset(&ps, 0, sizeof ps);

    /* labels: NULL gives -1 to the model; given labels are passed through */
    cfg = dfn_sampler_config_default(DFN_SAMPLER_DDIM, N, D, probe_predict, &pm);
    cfg.steps = 10;
    CHECK(run_sampler(&cfg, &s, x, NULL, 1) == DFN_OK, "run");
    CHECK(pm.calls == 10 && pm.last_label0 == -1 && pm.last_labeln == -1 && pm.last_t == 10,
          "calls %d, labels %d %d, last t %d", pm.calls, pm.last_label0, pm.last_labeln, pm.last_t);
    cfg.labels = labels;
    CHECK(run_sampler(&cfg, &s, x, NULL, 1) == DFN_OK, "run");
    CHECK(pm.last_label0 == 3 && pm.last_labeln == 1, "labels %d %d", pm.last_label0, pm.last_labeln);

    /* the step callback sees every step and can stop the run */
    cfg.on_step = probe_on_step;
    cfg.on_step_user = &ps;
    ps.stop_after = 3;
    CHECK(dfn_sampler_alloc(&smp, &cfg, &s, NULL) == DFN_OK, "alloc");
    CHECK(dfn_sampler_run(&smp, x, NULL, &rng) == DFN_ERR_CANCELLED, "cancel");
    CHECK(ps.calls == 3 && ps.last_t == dfn_sampler_timestep(&smp, 8) &&
          ps.last_tp == dfn_sampler_timestep(&smp, 7), "stopped after %d calls at t %d -> %d",
          ps.calls, ps.last_t, ps.last_tp);
    ps.calls = 0; ps.stop_after = -1;
    CHECK(dfn_sampler_run(&smp, x, NULL, &rng) == DFN_OK && ps.calls == 10 && ps.last_tp == 0,
          "full run: %d calls, last t_prev %d", ps.calls, ps.last_tp);

    /* a failing or non-finite model stops the run with a clear code */
    pm.calls = 0; pm.fail_at = 2;
    CHECK(dfn_sampler_run(&smp, x, NULL, &rng) == DFN_ERR_CALLBACK, "callback error");
    pm.calls = 0; pm.fail_at = 0; pm.nan_at = 4;
    CHECK(dfn_sampler_run(&smp, x, NULL, &rng) == DFN_ERR_NOT_FINITE, "NaN prediction");
    pm.nan_at = 0;
    x[3] = (float)HUGE_VAL;
    CHECK(dfn_sampler_run(&smp, x, x, &rng) == DFN_ERR_NOT_FINITE, "infinite x_T");
    dfn_sampler_free(&smp, NULL);

    /* clipping: an x0-model far outside [-1, 1] still ends inside it */
    cfg = dfn_sampler_config_default(DFN_SAMPLER_DDPM, N, D, probe_predict, &pm);
    cfg.prediction = DFN_PREDICT_X0;
    cfg.clip_x0 = 1;
    pm.value = 50.0f;
    CHECK(run_sampler(&cfg, &s, x, NULL, 2) == DFN_OK, "clipped DDPM run");
    for (i = 0; i < N * D; i++) inside &= x[i] >= -1.0f && x[i] <= 1.0f;
    CHECK(inside, "clipped DDPM left [-1, 1]: %g", x[0]);
    cfg.kind = DFN_SAMPLER_DDIM;
    cfg.steps = 7;
    CHECK(run_sampler(&cfg, &s, x, NULL, 2) == DFN_OK, "clipped DDIM run");
    for (i = 0; i < N * D; i++) inside &= x[i] == 1.0f;
    CHECK(inside, "clipped DDIM must end exactly at x0_hat = 1: %g", x[0]);
    cfg.clip_x0 = 0;
    CHECK(run_sampler(&cfg, &s, x, NULL, 2) == DFN_OK && x[0] == 50.0f,
          "unclipped DDIM ends at x0_hat = 50: %g", x[0]);
    dfn_schedule_free(&s, NULL);
}
