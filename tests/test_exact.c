/* Exact-predictor tests (MATH.md section 9): drive DDPM and DDIM with the
   Bayes-optimal noise predictor of a known Gaussian mixture and check that
   the samples reproduce the mixture: per-component weights, means and
   variances, and the energy distance (section 10) against fresh data next to
   its noise floor. A last test shows the same check rejects a sampler driven
   by the predictor of a slightly different mixture. */
#include <math.h>
#include <stdlib.h>
#include "harness.h"
#include "../diffusion.h"

#define EX_PI 3.14159265358979323846

static int verbose_exact(void) { return getenv("DFN_TEST_VERBOSE") != NULL; }

/* For data N(mu, sd^2) in 1D the exact predictor is linear in x_t, so every
   sampler step is x_p = A x_t + B + sigma z and the sampler's output is
   Gaussian with a mean and variance that a recursion gives exactly,
   discretization error included. Written here from sections 3, 6, 7 and 9:
     x0_hat = mu + sqrt(ab) sd^2 / v (x - sqrt(ab) mu),  v = ab sd^2 + 1 - ab
     eps_hat = (x - sqrt(ab) x0_hat) / sqrt(1 - ab)
     DDPM: x_p = c_x0 x0_hat + c_xt x + sigma_t z     (z = 0 at t = 1)
     DDIM: x_p = sqrt(ab_p) x0_hat + sqrt(1 - ab_p - sigma^2) eps_hat + sigma z */
static void gaussian_recursion(const dfn_schedule *s, dfn_sampler_kind kind, int steps, float eta,
                               double mu, double sd, double *mean, double *var)
{
    int tau[1001], i, S = kind == DFN_SAMPLER_DDPM ? s->T : steps;
    double m = 0.0, v = 1.0;                     /* x_T ~ N(0, 1) */
    if (kind == DFN_SAMPLER_DDPM) for (i = 0; i <= S; i++) tau[i] = i;
    else dfn_ddim_timesteps(tau, s->T, S, DFN_SPACING_TRAILING);
    for (i = S; i >= 1; i--) {
        int t = tau[i], p = tau[i - 1];
        double ab = s->alphabar[t], ab_p = s->alphabar[p], sab = sqrt(ab), s1m = sqrt(1 - ab);
        double vt = ab * sd * sd + 1 - ab;
        double k = sab * sd * sd / vt, c = mu * (1 - sab * k);        /* x0_hat = k x + c */
        double A, B, sig2;
        if (kind == DFN_SAMPLER_DDPM) {
            double beta = 1 - ab / ab_p;
            double c0 = sqrt(ab_p) * beta / (1 - ab), ct = sqrt(1 - beta) * (1 - ab_p) / (1 - ab);
            A = c0 * k + ct;
            B = c0 * c;
            sig2 = t > 1 ? beta * (1 - ab_p) / (1 - ab) : 0.0;
        } else {
            double d;
            sig2 = (double)eta * eta * (1 - ab_p) / (1 - ab) * (1 - ab / ab_p);
            d = sqrt(fmax(1 - ab_p - sig2, 0.0));
            A = sqrt(ab_p) * k + d * (1 - sab * k) / s1m;              /* eps_hat = ((1 - sab k) x - sab c) / s1m */
            B = sqrt(ab_p) * c - d * sab * c / s1m;
        }
        m = A * m + B;
        v = A * A * v + sig2;
    }
    *mean = m;
    *var = v;
}

/* Runs a sampler with the exact predictor `model` (or fn) and returns the
   samples (malloc'd, n x dim), or NULL on an error (printed). */
static float *exact_samples(const dfn_gmm *model, const dfn_schedule *s, dfn_sampler_kind kind,
                            int steps, float eta, dfn_prediction pred, dfn_predict_fn fn, void *fn_user,
                            int n, uint64_t seed)
{
    dfn_gmm_predictor gp;
    dfn_sampler_config cfg;
    dfn_sampler smp;
    dfn_rng rng;
    dfn_result r;
    float *x = (float *)malloc(sizeof(float) * n * model->dim);
    gp.gmm = model;
    gp.schedule = s;
    cfg = dfn_sampler_config_default(kind, n, model->dim, fn ? fn : dfn_gmm_predict, fn ? fn_user : &gp);
    cfg.steps = steps;
    cfg.eta = eta;
    cfg.prediction = pred;
    r = dfn_sampler_alloc(&smp, &cfg, s, NULL);
    if (r == DFN_OK) {
        dfn_rng_seed(&rng, seed, (uint64_t)steps);
        r = dfn_sampler_run(&smp, x, NULL, &rng);
        dfn_sampler_free(&smp, NULL);
    }
    if (r != DFN_OK) {
        printf("    sampler: %s\n", dfn_result_string(r));
        free(x);
        return NULL;
    }
    return x;
}

void test_exact_predictor_gaussian_closed_form(void)
{
    /* The samplers' output moments for Gaussian data equal the exact
       recursion above (which includes the discretization error of few
       steps), within 5 standard errors of 40000 samples. */
    enum { N = 40000 };
    static const int steps[3] = { 10, 50, 100 };
    const float mu_f = 1.0f, sd_f = 0.5f, w_f = 1.0f;
    dfn_gmm g;
    dfn_schedule s;
    dfn_schedule_config c = dfn_schedule_config_default(DFN_SCHEDULE_LINEAR, 1000);
    int k, e, v = verbose_exact();
    g.k = 1; g.dim = 1; g.weights = &w_f; g.means = &mu_f; g.stds = &sd_f;
    CHECK(dfn_schedule_alloc(&s, &c, NULL) == DFN_OK, "schedule");
    for (k = 0; k < 4; k++)
        for (e = 0; e < 2; e++) {
            dfn_sampler_kind kind = k == 3 ? DFN_SAMPLER_DDPM : DFN_SAMPLER_DDIM;
            int S = k == 3 ? 1000 : steps[k];
            float eta = (float)e;
            double pm, pv, m = 0, var = 0;
            int i;
            float *x;
            if (kind == DFN_SAMPLER_DDPM && e == 1) continue;
            x = exact_samples(&g, &s, kind, S, eta, DFN_PREDICT_EPS, NULL, NULL, N, 3);
            CHECK(x != NULL, "run");
            if (!x) continue;
            gaussian_recursion(&s, kind, S, eta, mu_f, sd_f, &pm, &pv);
            for (i = 0; i < N; i++) m += x[i];
            m /= N;
            for (i = 0; i < N; i++) var += (x[i] - m) * (x[i] - m);
            var /= N - 1;
            if (v) printf("    %s S=%4d eta=%d: mean %.4f (exact %.4f), var/sd^2 %.4f (exact %.4f)\n",
                          kind == DFN_SAMPLER_DDPM ? "DDPM" : "DDIM", S, e, m, pm, var / 0.25, pv / 0.25);
            CHECK(fabs(m - pm) < 5 * sqrt(pv / N), "%s S=%d eta=%d: mean %g, recursion %g",
                  kind == DFN_SAMPLER_DDPM ? "DDPM" : "DDIM", S, e, m, pm);
            CHECK(fabs(var - pv) < 5 * pv * sqrt(2.0 / N), "%s S=%d eta=%d: variance %g, recursion %g",
                  kind == DFN_SAMPLER_DDPM ? "DDPM" : "DDIM", S, e, var, pv);
            free(x);
        }
    dfn_schedule_free(&s, NULL);
}

/* What a sample set looks like next to the mixture it should come from. */
typedef struct {
    double worst_weight;   /* max_k |n_k/n - pi_k| / its standard error      */
    double worst_mean;     /* max_k,j |mean - mu| / its standard error       */
    double worst_var;      /* max_k |var / s_k^2 - 1|                        */
    double ed2;            /* ED^2 of the first ED_N samples to fresh data   */
} mix_stats;

enum { ED_N = 2000 };

/* Index of the most likely component of point x (in double, from the
   mixture's parameters). */
static int nearest_component(const dfn_gmm *g, const float *x)
{
    int k, j, best = 0;
    double wsum = 0, bestlp = -HUGE_VAL;
    for (k = 0; k < g->k; k++) wsum += g->weights[k];
    for (k = 0; k < g->k; k++) {
        double d2 = 0, s2 = (double)g->stds[k] * g->stds[k], lp;
        for (j = 0; j < g->dim; j++) {
            double d = x[j] - g->means[k * g->dim + j];
            d2 += d * d;
        }
        lp = log(g->weights[k] / wsum) - 0.5 * g->dim * log(s2) - 0.5 * d2 / s2;
        if (lp > bestlp) { bestlp = lp; best = k; }
    }
    return best;
}

/* Compare weights, means and pooled variances per component with the truth,
   and the energy distance with fresh data y. */
static mix_stats mixture_stats(const dfn_gmm *g, const float *x, int n, const float *y)
{
    mix_stats st;
    int i, j, k, D = g->dim;
    double wsum = 0;
    double cnt[8] = {0}, sum[8 * 2] = {0}, sq[8] = {0};   /* up to 8 components in 2D */
    int *lab = (int *)malloc(sizeof(int) * n);
    for (k = 0; k < g->k; k++) wsum += g->weights[k];
    for (i = 0; i < n; i++) {
        lab[i] = nearest_component(g, x + i * D);
        cnt[lab[i]] += 1;
        for (j = 0; j < D; j++) sum[lab[i] * D + j] += x[i * D + j];
    }
    for (i = 0; i < n; i++)
        for (j = 0; j < D; j++) {
            double d = x[i * D + j] - sum[lab[i] * D + j] / cnt[lab[i]];
            sq[lab[i]] += d * d;
        }
    st.worst_weight = st.worst_mean = st.worst_var = 0;
    for (k = 0; k < g->k; k++) {
        double p = g->weights[k] / wsum, s2 = (double)g->stds[k] * g->stds[k];
        double ew = fabs(cnt[k] / n - p) / sqrt(p * (1 - p) / n), ev;
        if (ew > st.worst_weight) st.worst_weight = ew;
        if (cnt[k] < 2) { st.worst_mean = st.worst_var = HUGE_VAL; continue; }
        for (j = 0; j < D; j++) {
            double em = fabs(sum[k * D + j] / cnt[k] - g->means[k * D + j]) / sqrt(s2 / cnt[k]);
            if (em > st.worst_mean) st.worst_mean = em;
        }
        ev = fabs(sq[k] / ((cnt[k] - 1) * D) / s2 - 1);
        if (ev > st.worst_var) st.worst_var = ev;
    }
    dfn_energy_distance(&st.ed2, x, n < ED_N ? n : ED_N, y, ED_N, D);
    free(lab);
    return st;
}

/* The acceptance rule every exact-predictor run must meet. Weights within
   5.5 and means within 6 standard errors; variance ratios var / s_k^2 within
   1 +- (5 standard errors of a sample variance + 0.05 + the discretization
   error `disc` of this sampler on one Gaussian as wide as the components,
   from the recursion above); the energy distance below 2.5 times the noise
   floor of two fresh draws. */
static int mixture_ok(const mix_stats *st, int n, int k_comp, int D, double floor, double disc)
{
    double var_tol = 5.0 * sqrt(2.0 / ((double)n / k_comp * D)) + 0.05 + disc;
    return st->worst_weight < 5.5 && st->worst_mean < 6.0 && st->worst_var < var_tol &&
           st->ed2 < 2.5 * floor;
}

/* Runs one configuration with the exact predictor of `model` and reports
   whether the samples match `truth`. */
static int exact_run(const char *name, const dfn_gmm *truth, const dfn_gmm *model,
                     const dfn_schedule *s, dfn_sampler_kind kind, int steps, float eta,
                     dfn_prediction pred, dfn_predict_fn fn, void *fn_user, int n,
                     const float *fresh, double floor, int verbose, int expect_ok)
{
    double disc = 0, m, v;
    mix_stats st;
    int ok, k;
    float *x = exact_samples(model, s, kind, steps, eta, pred, fn, fn_user, n, 1234);
    if (!x) return 0;
    for (k = 0; k < truth->k; k++) {
        gaussian_recursion(s, kind, steps, eta, 0.0, truth->stds[k], &m, &v);
        v = fabs(v / ((double)truth->stds[k] * truth->stds[k]) - 1);
        if (v > disc) disc = v;
    }
    st = mixture_stats(truth, x, n, fresh);
    ok = mixture_ok(&st, n, truth->k, truth->dim, floor, disc);
    if (verbose || ok != expect_ok)
        printf("    %-24s weights %4.1f se, means %4.1f se, var ratio off %5.3f (allowance %5.3f), "
               "ED^2 %.5f (floor %.5f): %s\n", name, st.worst_weight, st.worst_mean, st.worst_var,
               disc, st.ed2, floor, ok ? "accepted" : "rejected");
    free(x);
    return ok;
}

/* Two fresh draws of ED_N data points and the noise floor between them. */
static double fresh_data(const dfn_gmm *g, float *y1)
{
    float *y2 = (float *)malloc(sizeof(float) * ED_N * g->dim);
    dfn_rng rng;
    double floor;
    dfn_rng_seed(&rng, 555, 99);
    dfn_gmm_sample(g, &rng, y1, NULL, ED_N);
    dfn_gmm_sample(g, &rng, y2, NULL, ED_N);
    dfn_energy_distance(&floor, y2, ED_N, y1, ED_N, g->dim);
    free(y2);
    return floor;
}


static float eg_w[8], eg_mu[16], eg_sd[8];

/* 8 Gaussians on a circle of radius 2, std 0.2, equal weights. */
static dfn_gmm eight_gaussians(void)
{
    dfn_gmm g;
    int k;
    for (k = 0; k < 8; k++) {
        eg_w[k] = 1.0f;
        eg_mu[2 * k] = (float)(2.0 * cos(2.0 * EX_PI * k / 8));
        eg_mu[2 * k + 1] = (float)(2.0 * sin(2.0 * EX_PI * k / 8));
        eg_sd[k] = 0.2f;
    }
    g.k = 8; g.dim = 2; g.weights = eg_w; g.means = eg_mu; g.stds = eg_sd;
    return g;
}

static const float two_w[2] = { 0.3f, 0.7f }, two_mu[2] = { -2.0f, 1.5f }, two_sd[2] = { 0.4f, 0.6f };

/* 1D: two unequal components. */
static dfn_gmm two_components(void)
{
    dfn_gmm g;
    g.k = 2; g.dim = 1; g.weights = two_w; g.means = two_mu; g.stds = two_sd;
    return g;
}

static void exact_suite(const dfn_gmm *g, int n)
{
    static const struct { const char *name; int sched; dfn_sampler_kind kind; int steps; float eta; } runs[] = {
        { "DDPM-1000 linear",     0, DFN_SAMPLER_DDPM, 0,   0.0f },
        { "DDPM-1000 cosine",     1, DFN_SAMPLER_DDPM, 0,   0.0f },
        { "DDIM-50 eta=0",        0, DFN_SAMPLER_DDIM, 50,  0.0f },
        { "DDIM-50 eta=1",        0, DFN_SAMPLER_DDIM, 50,  1.0f },
        { "DDIM-100 eta=0",       0, DFN_SAMPLER_DDIM, 100, 0.0f },
        { "DDIM-100 eta=1",       0, DFN_SAMPLER_DDIM, 100, 1.0f },
        { "DDIM-50 eta=0 cosine", 1, DFN_SAMPLER_DDIM, 50,  0.0f }
    };
    dfn_schedule sched[2];
    dfn_schedule_config lc = dfn_schedule_config_default(DFN_SCHEDULE_LINEAR, 1000);
    dfn_schedule_config cc = dfn_schedule_config_default(DFN_SCHEDULE_COSINE, 1000);
    float *fresh = (float *)malloc(sizeof(float) * ED_N * g->dim);
    double floor = fresh_data(g, fresh);
    int i, v = verbose_exact();
    CHECK(dfn_schedule_alloc(&sched[0], &lc, NULL) == DFN_OK, "schedule");
    CHECK(dfn_schedule_alloc(&sched[1], &cc, NULL) == DFN_OK, "schedule");
    for (i = 0; i < (int)(sizeof runs / sizeof runs[0]); i++)
        CHECK(exact_run(runs[i].name, g, g, &sched[runs[i].sched], runs[i].kind, runs[i].steps, runs[i].eta,
                        DFN_PREDICT_EPS, NULL, NULL, n, fresh, floor, v, 1), "%s", runs[i].name);
    dfn_schedule_free(&sched[0], NULL);
    dfn_schedule_free(&sched[1], NULL);
    free(fresh);
}

void test_exact_predictor_2d_eight_gaussians(void)
{
    dfn_gmm g = eight_gaussians();
    exact_suite(&g, 4000);
}

void test_exact_predictor_1d_two_components(void)
{
    dfn_gmm g = two_components();
    exact_suite(&g, 4000);
}

/* v-prediction from the mixture's exact posterior mean
   E[x_0 | x_t] = sum_k r_k (mu_k + sqrt(ab) s_k^2 / v_k (x_t - sqrt(ab) mu_k)),
   written here from section 9 so that it is defined at alphabar_t = 0 too:
   eps = (x_t - sqrt(ab) x0) / sqrt(1 - ab), v = sqrt(ab) eps - sqrt(1 - ab) x0. */
typedef struct { const dfn_gmm *g; const dfn_schedule *s; } v_model;

static int v_predict(void *user, const float *x_t, const int *t, const int *labels, int n, float *out)
{
    const v_model *m = (const v_model *)user;
    const dfn_gmm *g = m->g;
    int i, k, j, D = g->dim;
    (void)labels;
    for (i = 0; i < n; i++) {
        double ab = m->s->alphabar[t[i]], sab = sqrt(ab), s1m = sqrt(1 - ab);
        double lp[8], best = -HUGE_VAL, norm = 0, wsum = 0;
        for (k = 0; k < g->k; k++) wsum += g->weights[k];
        for (k = 0; k < g->k; k++) {
            double v = ab * g->stds[k] * g->stds[k] + 1 - ab, d2 = 0;
            for (j = 0; j < D; j++) {
                double d = x_t[i * D + j] - sab * g->means[k * D + j];
                d2 += d * d;
            }
            lp[k] = log(g->weights[k] / wsum) - 0.5 * D * log(v) - 0.5 * d2 / v;
            if (lp[k] > best) best = lp[k];
        }
        for (k = 0; k < g->k; k++) { lp[k] = exp(lp[k] - best); norm += lp[k]; }
        for (j = 0; j < D; j++) {
            double x0 = 0, eps, xt = x_t[i * D + j];
            for (k = 0; k < g->k; k++) {
                double v = ab * g->stds[k] * g->stds[k] + 1 - ab, mu = g->means[k * D + j];
                x0 += lp[k] / norm * (mu + sab * g->stds[k] * g->stds[k] / v * (xt - sab * mu));
            }
            eps = (xt - sab * x0) / s1m;
            out[i * D + j] = (float)(sab * eps - s1m * x0);
        }
    }
    return 0;
}

void test_exact_predictor_v_zero_terminal_snr(void)
{
    /* Zero terminal SNR (alphabar_T = 0) with v-prediction: x0_hat is still
       defined at t = T, and DDIM (trailing, starting at T) and DDPM reproduce
       the mixture. eps-prediction is refused on such a schedule. */
    dfn_gmm g = two_components();
    dfn_schedule s;
    dfn_schedule_config c = dfn_schedule_config_default(DFN_SCHEDULE_LINEAR, 1000);
    dfn_sampler_config bad;
    dfn_sampler smp;
    v_model vm;
    int v = verbose_exact();
    float fresh[ED_N];
    double floor = fresh_data(&g, fresh);
    c.zero_terminal_snr = 1;
    CHECK(dfn_schedule_alloc(&s, &c, NULL) == DFN_OK, "schedule");
    vm.g = &g; vm.s = &s;
    CHECK(exact_run("ZTSNR v DDIM-50", &g, &g, &s, DFN_SAMPLER_DDIM, 50, 0.0f, DFN_PREDICT_V, v_predict, &vm, 4000,
                    fresh, floor, v, 1), "ZTSNR v-prediction DDIM-50");
    CHECK(exact_run("ZTSNR v DDPM-1000", &g, &g, &s, DFN_SAMPLER_DDPM, 0, 0.0f, DFN_PREDICT_V, v_predict, &vm, 4000,
                    fresh, floor, v, 1), "ZTSNR v-prediction DDPM");
    bad = dfn_sampler_config_default(DFN_SAMPLER_DDIM, 10, 1, v_predict, &vm);
    CHECK(dfn_sampler_alloc(&smp, &bad, &s, NULL) == DFN_ERR_INVALID_ARG, "eps-prediction on ZTSNR must be refused");
    dfn_schedule_free(&s, NULL);
}

void test_exact_predictor_check_can_fail(void)
{
    /* Negative controls: the acceptance rule above must reject samples from
       the exact predictor of a different mixture (stds 1.2x; one weight
       moved). */
    dfn_gmm g = eight_gaussians(), wide = g, two = two_components(), tilted = two;
    float wide_sd[8], tilted_w[2] = { 0.4f, 0.6f };
    dfn_schedule s;
    dfn_schedule_config c = dfn_schedule_config_default(DFN_SCHEDULE_LINEAR, 1000);
    int k, v = verbose_exact();
    static float fresh8[ED_N * 2], fresh2[ED_N];
    double floor8 = fresh_data(&g, fresh8), floor2 = fresh_data(&two, fresh2);
    for (k = 0; k < 8; k++) wide_sd[k] = 0.24f;
    wide.stds = wide_sd;
    tilted.weights = tilted_w;
    CHECK(dfn_schedule_alloc(&s, &c, NULL) == DFN_OK, "schedule");
    CHECK(!exact_run("control: stds x1.2", &g, &wide, &s, DFN_SAMPLER_DDIM, 100, 0.0f, DFN_PREDICT_EPS, NULL, NULL,
                     4000, fresh8, floor8, v, 0), "samples of a wider mixture passed the check");
    CHECK(!exact_run("control: weights .4/.6", &two, &tilted, &s, DFN_SAMPLER_DDIM, 100, 0.0f, DFN_PREDICT_EPS, NULL,
                     NULL, 4000, fresh2, floor2, v, 0), "samples with other weights passed the check");
    dfn_schedule_free(&s, NULL);
}

void test_energy_distance_reference(void)
{
    /* Section 10 written out in double over every pair: the V-statistic
       (means over all n^2 pairs) and the U-statistic (pairs i != j within a
       set); identical sets give V = 0; n = 1 has no U-statistic. */
    enum { N = 37, M = 23, D = 3 };
    float x[N * D], y[M * D];
    double xy = 0, xx = 0, yy = 0, v, u, want_v, want_u;
    dfn_rng rng;
    int i, j, k;
    dfn_rng_seed(&rng, 131, 0);
    dfn_rng_normal_fill(&rng, x, N * D);
    dfn_rng_normal_fill(&rng, y, M * D);
    for (i = 0; i < M * D; i++) y[i] = 0.7f * y[i] + 0.3f;
    for (i = 0; i < N; i++)
        for (j = 0; j < M; j++) {
            double d2 = 0;
            for (k = 0; k < D; k++) d2 += ((double)x[i * D + k] - y[j * D + k]) * ((double)x[i * D + k] - y[j * D + k]);
            xy += sqrt(d2);
        }
    for (i = 0; i < N; i++)
        for (j = 0; j < N; j++) {
            double d2 = 0;
            for (k = 0; k < D; k++) d2 += ((double)x[i * D + k] - x[j * D + k]) * ((double)x[i * D + k] - x[j * D + k]);
            xx += sqrt(d2);
        }
    for (i = 0; i < M; i++)
        for (j = 0; j < M; j++) {
            double d2 = 0;
            for (k = 0; k < D; k++) d2 += ((double)y[i * D + k] - y[j * D + k]) * ((double)y[i * D + k] - y[j * D + k]);
            yy += sqrt(d2);
        }
    want_v = 2 * xy / (N * M) - xx / ((double)N * N) - yy / ((double)M * M);
    want_u = 2 * xy / (N * M) - xx / ((double)N * (N - 1)) - yy / ((double)M * (M - 1));
    CHECK(dfn_energy_distance(&v, x, N, y, M, D) == DFN_OK && fabs(v - want_v) < 1e-12 * (1 + fabs(want_v)),
          "V-statistic %.15g, reference %.15g", v, want_v);
    CHECK(dfn_energy_distance_unbiased(&u, x, N, y, M, D) == DFN_OK && fabs(u - want_u) < 1e-12 * (1 + fabs(want_u)),
          "U-statistic %.15g, reference %.15g", u, want_u);
    CHECK(dfn_energy_distance(&v, x, N, x, N, D) == DFN_OK && v == 0.0, "a set against itself: %g", v);
    CHECK(dfn_energy_distance_unbiased(&u, x, 1, y, M, D) == DFN_ERR_INVALID_ARG, "U-statistic of one point");
}
