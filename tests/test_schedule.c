/* Schedules: every table against MATH.md sections 1-3 recomputed here in
   double from the formulas alone (never from the library's own tables). */
#include <math.h>
#include <stdlib.h>
#include "harness.h"
#include "../diffusion.h"

#define SCHED_PI 3.14159265358979323846

/* Compare a float table entry with its double reference. */
static int close_to(double got, double want, double rtol, double atol)
{
    return fabs(got - want) <= atol + rtol * fabs(want);
}

/* All tables of s against the betas ref_beta[1..T] (double), with alphabar
   recomputed as the product of (1 - beta). Returns the number of mismatches. */
static int check_tables_against_betas(const dfn_schedule *s, const double *ref_beta)
{
    int t, bad = 0;
    double ab = 1.0, ab_prev;
    for (t = 1; t <= s->T; t++) {
        double b = ref_beta[t], var, c0, ct;
        ab_prev = ab;
        ab *= 1.0 - b;
        var = b * (1.0 - ab_prev) / (1.0 - ab);                      /* section 3 */
        c0 = sqrt(ab_prev) * b / (1.0 - ab);
        ct = sqrt(1.0 - b) * (1.0 - ab_prev) / (1.0 - ab);
        if (!close_to(s->beta[t], b, 2e-6, 1e-12)) bad++;
        if (!close_to(s->alpha[t], 1.0 - b, 2e-6, 1e-12)) bad++;
        if (!close_to(s->alphabar[t], ab, 1e-5, 1e-12)) bad++;
        if (!close_to(s->sqrt_alphabar[t], sqrt(ab), 1e-5, 1e-12)) bad++;
        if (!close_to(s->sqrt_one_minus_alphabar[t], sqrt(1.0 - ab), 1e-5, 1e-12)) bad++;
        if (!close_to(s->snr[t], ab / (1.0 - ab), 1e-5, 1e-12)) bad++;
        if (!close_to(s->posterior_variance[t], var, 1e-5, 1e-12)) bad++;
        if (!close_to(s->posterior_coef_x0[t], c0, 1e-5, 1e-12)) bad++;
        if (!close_to(s->posterior_coef_xt[t], ct, 1e-5, 1e-12)) bad++;
        if (bad && bad < 4) printf("    first mismatch near t = %d\n", t);
    }
    if (s->alphabar[0] != 1.0f || s->beta[0] != 0.0f) bad++;
    return bad;
}

void test_schedule_linear_formula(void)
{
    static const int Ts[3] = { 1000, 500, 50 };
    int i, t;
    for (i = 0; i < 3; i++) {
        int T = Ts[i];
        double *beta = (double *)malloc(sizeof(double) * (T + 1));
        dfn_schedule s;
        dfn_schedule_config c = dfn_schedule_config_default(DFN_SCHEDULE_LINEAR, T);
        dfn_result r = dfn_schedule_alloc(&s, &c, NULL);
        CHECK(r == DFN_OK, "T = %d: %s", T, dfn_result_string(r));
        if (r != DFN_OK) { free(beta); continue; }
        /* beta evenly from 1e-4 to 0.02 at T = 1000, both ends scaled by 1000/T */
        for (t = 1; t <= T; t++)
            beta[t] = (1e-4 + (0.02 - 1e-4) * (t - 1) / (T - 1.0)) * (1000.0 / T);
        CHECK(check_tables_against_betas(&s, beta) == 0, "T = %d: tables differ from the formulas", T);
        /* alphabar_T near 0 for every T thanks to the scaling */
        CHECK(s.alphabar[T] < 1e-4, "T = %d: alphabar_T = %g, should be below 1e-4", T, s.alphabar[T]);
        dfn_schedule_free(&s, NULL);
        free(beta);
    }
}

void test_schedule_cosine_formula(void)
{
    enum { T = 1000 };
    static double beta[T + 1];
    const double S = 0.008;
    dfn_schedule s;
    dfn_schedule_config c = dfn_schedule_config_default(DFN_SCHEDULE_COSINE, T);
    dfn_result r = dfn_schedule_alloc(&s, &c, NULL);
    int t;
    CHECK(r == DFN_OK, "%s", dfn_result_string(r));
    if (r != DFN_OK) return;
    /* f(t) = cos^2(((t/T + s)/(1 + s)) pi/2), alphabar = f(t)/f(0),
       beta_t = min(1 - alphabar_t / alphabar_{t-1}, 0.999) */
    for (t = 1; t <= T; t++) {
        double f_t = pow(cos(((double)t / T + S) / (1 + S) * SCHED_PI / 2), 2);
        double f_p = pow(cos(((double)(t - 1) / T + S) / (1 + S) * SCHED_PI / 2), 2);
        beta[t] = fmin(1.0 - f_t / f_p, 0.999);
    }
    CHECK(check_tables_against_betas(&s, beta) == 0, "tables differ from the formulas");
    CHECK(s.alphabar[T] < 1e-8, "alphabar_T = %g, should be below 1e-8", s.alphabar[T]);
    CHECK(s.beta[T] == 0.999f, "the last beta is clipped at 0.999, got %g", s.beta[T]);
    /* Away from the clipped end, alphabar_t is f(t)/f(0) itself. */
    CHECK(close_to(s.alphabar[500], pow(cos((0.5 + S) / (1 + S) * SCHED_PI / 2), 2) /
                                     pow(cos(S / (1 + S) * SCHED_PI / 2), 2), 1e-5, 0),
          "alphabar_500 = %g", s.alphabar[500]);
    dfn_schedule_free(&s, NULL);
}

static double ref_sigmoid(double x) { return 1.0 / (1.0 + exp(-x)); }

void test_schedule_sigmoid_formula(void)
{
    enum { T = 1000 };
    static double beta[T + 1];
    const double start = -3, end = 3, tau = 1;
    dfn_schedule s;
    dfn_schedule_config c = dfn_schedule_config_default(DFN_SCHEDULE_SIGMOID, T);
    dfn_result r = dfn_schedule_alloc(&s, &c, NULL);
    int t;
    CHECK(r == DFN_OK, "%s", dfn_result_string(r));
    if (r != DFN_OK) return;
    for (t = 1; t <= T; t++) {
        double g_t = (ref_sigmoid(end / tau) - ref_sigmoid(((double)t / T * (end - start) + start) / tau)) /
                     (ref_sigmoid(end / tau) - ref_sigmoid(start / tau));
        double g_p = (ref_sigmoid(end / tau) - ref_sigmoid(((double)(t - 1) / T * (end - start) + start) / tau)) /
                     (ref_sigmoid(end / tau) - ref_sigmoid(start / tau));
        beta[t] = fmin(1.0 - g_t / g_p, 0.999);
    }
    CHECK(check_tables_against_betas(&s, beta) == 0, "tables differ from the formulas");
    CHECK(s.alphabar[T] < 1e-4, "alphabar_T = %g", s.alphabar[T]);
    dfn_schedule_free(&s, NULL);
}

void test_schedule_custom_and_constant_negative(void)
{
    /* The constant schedule beta_t = 1 - (1 - beta_min)^(1/T) of MATH.md
       section 2: alphabar_T = 1 - beta_min, so x_T is still almost the data.
       A negative example for teaching, never a default. */
    enum { T = 1000 };
    static float betas[T];
    static double beta[T + 1];
    const double beta_min = 0.02;
    dfn_schedule s;
    dfn_schedule_config c = dfn_schedule_config_default(DFN_SCHEDULE_CUSTOM, T);
    dfn_result r;
    int t;
    for (t = 1; t <= T; t++) {
        betas[t - 1] = (float)(1.0 - pow(1.0 - beta_min, 1.0 / T));
        beta[t] = betas[t - 1];          /* the float the library receives */
    }
    c.betas = betas;
    r = dfn_schedule_alloc(&s, &c, NULL);
    CHECK(r == DFN_OK, "%s", dfn_result_string(r));
    if (r != DFN_OK) return;
    CHECK(s.config.betas == NULL, "the schedule must not keep the caller's pointer");
    CHECK(check_tables_against_betas(&s, beta) == 0, "tables differ from the formulas");
    CHECK(fabs(s.alphabar[T] - (1.0 - beta_min)) < 1e-4, "alphabar_T = %g, expected %g",
          s.alphabar[T], 1.0 - beta_min);
    {
        /* x_T of a data point 3.0 keeps mean sqrt(alphabar_T) * 3 = 2.97 and
           standard deviation sqrt(1 - alphabar_T) = 0.14: nowhere near N(0, 1). */
        float x0 = 3.0f, eps = 0.0f, xt;
        int tt = T;
        dfn_q_sample(&s, &xt, &x0, &eps, &tt, 1, 1);
        CHECK(xt > 2.9f && s.sqrt_one_minus_alphabar[T] < 0.2f,
              "x_T mean %g, std %g: the constant schedule must NOT reach noise", xt,
              s.sqrt_one_minus_alphabar[T]);
    }
    dfn_schedule_free(&s, NULL);
}

void test_schedule_zero_terminal_snr(void)
{
    /* Lin et al. 2023, Algorithm 1, on the linear schedule, in double here:
       sqrt(ab) <- (sqrt(ab) - sqrt(ab_T)) * sqrt(ab_1) / (sqrt(ab_1) - sqrt(ab_T)). */
    enum { T = 1000 };
    static double beta[T + 1], sab[T + 1];
    dfn_schedule s;
    dfn_schedule_config c = dfn_schedule_config_default(DFN_SCHEDULE_LINEAR, T);
    dfn_result r;
    double ab = 1.0, a1, aT;
    int t, bad = 0;
    c.zero_terminal_snr = 1;
    r = dfn_schedule_alloc(&s, &c, NULL);
    CHECK(r == DFN_OK, "%s", dfn_result_string(r));
    if (r != DFN_OK) return;
    for (t = 1; t <= T; t++) {
        ab *= 1.0 - (1e-4 + (0.02 - 1e-4) * (t - 1) / (T - 1.0));
        sab[t] = sqrt(ab);
    }
    a1 = sab[1]; aT = sab[T];
    for (t = 1; t <= T; t++) sab[t] = (sab[t] - aT) * a1 / (a1 - aT);
    sab[0] = 1.0;
    for (t = 1; t <= T; t++) beta[t] = 1.0 - (sab[t] * sab[t]) / (sab[t - 1] * sab[t - 1]);
    for (t = 1; t < T; t++) {
        if (!close_to(s.sqrt_alphabar[t], sab[t], 1e-5, 1e-7)) bad++;
        if (!close_to(s.beta[t], beta[t], 1e-4, 1e-9)) bad++;
        if (!close_to(s.posterior_variance[t], beta[t] * (1 - sab[t - 1] * sab[t - 1]) / (1 - sab[t] * sab[t]), 1e-4, 1e-9)) bad++;
    }
    CHECK(bad == 0, "%d entries differ from Lin et al.'s rescale", bad);
    CHECK(s.alphabar[T] == 0.0f && s.sqrt_alphabar[T] == 0.0f && s.snr[T] == 0.0f,
          "alphabar_T = %g, must be exactly 0", s.alphabar[T]);
    CHECK(s.beta[T] == 1.0f, "beta_T = %g, must be exactly 1", s.beta[T]);
    CHECK(close_to(s.sqrt_alphabar[1], sqrt(1.0 - 1e-4), 1e-6, 0), "sqrt(alphabar_1) must keep its value");
    dfn_schedule_free(&s, NULL);
}
