/* Forward process: the closed form against the step-by-step Markov chain of
   its definition; the posterior against direct Gaussian conditioning; the
   eps / v / x0 conversions against MATH.md section 4 in double. */
#include <math.h>
#include <stdlib.h>
#include "harness.h"
#include "../diffusion.h"

void test_forward_closed_form_matches_chain(void)
{
    /* Section 1: run q(x_t | x_{t-1}) = N(sqrt(1 - beta_t) x_{t-1}, beta_t)
       t times from x_0 for N chains; the closed form says x_t has mean
       sqrt(alphabar_t) x_0 and variance 1 - alphabar_t. dfn_q_sample with
       fresh eps must give the same moments. */
    enum { N = 100000 };
    static const int ts[3] = { 1, 60, 400 };
    static float chain[N], closed[N], eps[N], x0s[N];
    static int tt[N];
    const float x0 = 1.7f;
    dfn_schedule s;
    dfn_schedule_config c = dfn_schedule_config_default(DFN_SCHEDULE_LINEAR, 1000);
    dfn_rng rng;
    int i, k, step;
    CHECK(dfn_schedule_alloc(&s, &c, NULL) == DFN_OK, "schedule");
    dfn_rng_seed(&rng, 11, 0);
    for (k = 0; k < 3; k++) {
        int t = ts[k];
        double ab = 1.0, mc = 0, vc = 0, mq = 0, vq = 0, want_m, want_v, se_m, se_v;
        for (step = 1; step <= t; step++) ab *= 1.0 - (1e-4 + (0.02 - 1e-4) * (step - 1) / 999.0);
        want_m = sqrt(ab) * x0;
        want_v = 1.0 - ab;
        for (i = 0; i < N; i++) chain[i] = x0;
        for (step = 1; step <= t; step++) {
            double b = 1e-4 + (0.02 - 1e-4) * (step - 1) / 999.0;
            dfn_rng_normal_fill(&rng, eps, N);
            for (i = 0; i < N; i++) chain[i] = (float)(sqrt(1.0 - b) * chain[i] + sqrt(b) * eps[i]);
        }
        dfn_rng_normal_fill(&rng, eps, N);
        for (i = 0; i < N; i++) { x0s[i] = x0; tt[i] = t; }
        CHECK(dfn_q_sample(&s, closed, x0s, eps, tt, N, 1) == DFN_OK, "q_sample");
        for (i = 0; i < N; i++) { mc += chain[i]; mq += closed[i]; }
        mc /= N; mq /= N;
        for (i = 0; i < N; i++) {
            vc += (chain[i] - mc) * (chain[i] - mc);
            vq += (closed[i] - mq) * (closed[i] - mq);
        }
        vc /= N - 1; vq /= N - 1;
        se_m = sqrt(want_v / N);
        se_v = want_v * sqrt(2.0 / N);
        CHECK(fabs(mc - want_m) < 5 * se_m + 1e-6, "t=%d chain mean %g, closed form %g", t, mc, want_m);
        CHECK(fabs(mq - want_m) < 5 * se_m + 1e-6, "t=%d q_sample mean %g, closed form %g", t, mq, want_m);
        CHECK(fabs(vc - want_v) < 5 * se_v + 1e-9, "t=%d chain variance %g, closed form %g", t, vc, want_v);
        CHECK(fabs(vq - want_v) < 5 * se_v + 1e-9, "t=%d q_sample variance %g, closed form %g", t, vq, want_v);
    }
    dfn_schedule_free(&s, NULL);
}

void test_forward_posterior_is_gaussian_conditioning(void)
{
    /* Given x_0: x_{t-1} ~ N(sqrt(ab_{t-1}) x_0, 1 - ab_{t-1}) and
       x_t | x_{t-1} ~ N(sqrt(alpha_t) x_{t-1}, beta_t). Bayes' rule for two
       Gaussians: precision = 1/(1 - ab_{t-1}) + alpha_t / beta_t,
       mean = var (sqrt(ab_{t-1}) x_0 / (1 - ab_{t-1}) + sqrt(alpha_t) x_t / beta_t). */
    static const int ts[5] = { 2, 3, 50, 500, 1000 };
    dfn_schedule s;
    dfn_schedule_config c = dfn_schedule_config_default(DFN_SCHEDULE_COSINE, 1000);
    dfn_rng rng;
    int k, j, bad = 0;
    CHECK(dfn_schedule_alloc(&s, &c, NULL) == DFN_OK, "schedule");
    dfn_rng_seed(&rng, 12, 0);
    for (k = 0; k < 5; k++) {
        int t = ts[k], tv[2] = { t, t };
        float x0[6], xt[6], mean[6], var[2];
        double ab_p = 1.0, beta_t = 0.0;
        int step;
        /* alphabar_{t-1} and beta_t from the cosine formula, here in double */
        for (step = 1; step <= t; step++) {
            double f = pow(cos(((double)step / 1000 + 0.008) / 1.008 * 3.14159265358979323846 / 2), 2);
            double fp = pow(cos(((double)(step - 1) / 1000 + 0.008) / 1.008 * 3.14159265358979323846 / 2), 2);
            double b = fmin(1 - f / fp, 0.999);
            if (step < t) ab_p *= 1 - b; else beta_t = b;
        }
        dfn_rng_normal_fill(&rng, x0, 6);
        dfn_rng_normal_fill(&rng, xt, 6);
        CHECK(dfn_q_posterior(&s, mean, var, x0, xt, tv, 2, 3) == DFN_OK, "q_posterior");
        for (j = 0; j < 6; j++) {
            double prec = 1.0 / (1.0 - ab_p) + (1.0 - beta_t) / beta_t;
            double v = 1.0 / prec;
            double m = v * (sqrt(ab_p) * x0[j] / (1.0 - ab_p) + sqrt(1.0 - beta_t) * xt[j] / beta_t);
            if (fabs(mean[j] - m) > 1e-5 * (1 + fabs(m))) { bad++; printf("    t=%d mean %g vs %g\n", t, mean[j], m); }
            if (fabs(var[j / 3] - v) > 1e-5 * v) { bad++; printf("    t=%d var %g vs %g\n", t, var[j / 3], v); }
        }
    }
    CHECK(bad == 0, "%d posterior values differ from Gaussian conditioning", bad);
    dfn_schedule_free(&s, NULL);
}

void test_forward_prediction_conversions(void)
{
    /* For random x0, eps, t: x_t = sqrt(ab) x0 + sqrt(1 - ab) eps. The target
       of each parameterization (v written out here from section 4), fed back
       as a perfect prediction, must give back x0 and eps. */
    enum { N = 64, D = 3 };
    static const dfn_prediction kinds[3] = { DFN_PREDICT_EPS, DFN_PREDICT_V, DFN_PREDICT_X0 };
    float x0[N * D], eps[N * D], xt[N * D], target[N * D], x0h[N * D], epsh[N * D];
    int t[N], i, k, bad_target = 0, bad_back = 0;
    dfn_schedule s;
    dfn_schedule_config c = dfn_schedule_config_default(DFN_SCHEDULE_LINEAR, 1000);
    dfn_rng rng;
    CHECK(dfn_schedule_alloc(&s, &c, NULL) == DFN_OK, "schedule");
    dfn_rng_seed(&rng, 13, 0);
    dfn_rng_normal_fill(&rng, x0, N * D);
    dfn_rng_normal_fill(&rng, eps, N * D);
    for (i = 0; i < N; i++) t[i] = 1 + (int)dfn_rng_below(&rng, 1000);
    t[0] = 1; t[1] = 1000;
    CHECK(dfn_q_sample(&s, xt, x0, eps, t, N, D) == DFN_OK, "q_sample");
    for (k = 0; k < 3; k++) {
        CHECK(dfn_prediction_target(&s, kinds[k], target, x0, eps, t, N, D) == DFN_OK, "target");
        for (i = 0; i < N * D; i++) {
            double ab = s.alphabar[t[i / D]];
            double want = kinds[k] == DFN_PREDICT_EPS ? eps[i]
                        : kinds[k] == DFN_PREDICT_V ? sqrt(ab) * eps[i] - sqrt(1 - ab) * x0[i] : x0[i];
            if (fabs(target[i] - want) > 1e-5 * (1 + fabs(want))) bad_target++;
        }
        CHECK(dfn_prediction_to_x0_eps(&s, kinds[k], x0h, epsh, target, xt, t, N, D) == DFN_OK, "convert");
        for (i = 0; i < N * D; i++) {
            /* x0 from eps divides by sqrt(alphabar_t) (0.0064 at t = 1000):
               the tolerance scales with that amplification. */
            double amp = 1.0 / s.sqrt_alphabar[t[i / D]] + 1.0 / s.sqrt_one_minus_alphabar[t[i / D]];
            if (fabs(x0h[i] - x0[i]) > 2e-6 * amp * (1 + fabs(x0[i])) ||
                fabs(epsh[i] - eps[i]) > 2e-6 * amp * (1 + fabs(eps[i])))
                bad_back++;
        }
    }
    CHECK(bad_target == 0, "%d targets differ from section 4", bad_target);
    CHECK(bad_back == 0, "%d round trips did not return x0 and eps", bad_back);
    dfn_schedule_free(&s, NULL);
}
