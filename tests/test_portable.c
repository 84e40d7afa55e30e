/* The portable math functions (dfn_math_exp, log, sin, cos, tanh) against
   the platform's libm in double: the largest distance in ulp over fixed
   pseudo-random arguments of each range, the float versions DFN_PORTABLE_MATH
   uses (double result rounded to float) against the float libm, and the
   special values. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include "harness.h"
#include "../diffusion.h"

/* Doubles as ordered integers: |tp_ord(a) - tp_ord(b)| counts the doubles
   between a and b (ulp distance, exact also across 0 and in subnormals). */
static int64_t tp_ord(double x)
{
    int64_t i;
    memcpy(&i, &x, sizeof i);
    return i < 0 ? INT64_MIN - i : i;
}

static double tp_ulp(double a, double b)
{
    int64_t d;
    if (a != a || b != b) return (a != a && b != b) ? 0.0 : 1e300;
    d = tp_ord(a) - tp_ord(b);
    return d < 0 ? -(double)d : (double)d;
}

static int32_t tp_ordf(float x)
{
    int32_t i;
    memcpy(&i, &x, sizeof i);
    return i < 0 ? INT32_MIN - i : i;
}

static double tp_ulpf(float a, float b)
{
    int64_t d = (int64_t)tp_ordf(a) - (int64_t)tp_ordf(b);
    return d < 0 ? -(double)d : (double)d;
}

/* Uniform double in [lo, hi) from 53 random bits. */
static double tp_uniform(dfn_rng *rng, double lo, double hi)
{
    uint64_t u = ((uint64_t)dfn_rng_u32(rng) << 21) ^ dfn_rng_u32(rng);
    return lo + (hi - lo) * ((double)(u & ((1ull << 53) - 1)) / 9007199254740992.0);
}

typedef struct {
    const char *name;
    double (*own)(double);
    double (*ref)(double);
    float (*reff)(float);
    double lo, hi;
    double max_ulp;        /* the bounds checked: one ulp above the values measured */
    double max_ulpf;       /* against glibc (the header lists them), for other libms */
} tp_case;

static double tp_max_ulp[16], tp_max_ulpf[16];

/* Max ulp of own against ref over n arguments of [lo, hi), and of the float
   version against reff. */
static void tp_measure(const tp_case *c, dfn_rng *rng, int n, double *ulp, double *ulpf)
{
    int i;
    *ulp = 0.0;
    *ulpf = 0.0;
    for (i = 0; i < n; i++) {
        double x = tp_uniform(rng, c->lo, c->hi), e = tp_ulp(c->own(x), c->ref(x));
        float xf = (float)x, of = (float)c->own((double)xf);
        double ef = tp_ulpf(of, c->reff(xf));
        if (e > *ulp) *ulp = e;
        if (ef > *ulpf) *ulpf = ef;
    }
}

static const tp_case tp_cases[] = {
    {"exp",  dfn_math_exp,  exp,  expf,  -745.0, 709.7, 2, 2},
    {"exp",  dfn_math_exp,  exp,  expf,  -2.0, 2.0, 2, 2},
    {"log",  dfn_math_log,  log,  logf,  1e-300, 1e300, 3, 2},
    {"log",  dfn_math_log,  log,  logf,  0.5, 2.0, 3, 2},
    {"sin",  dfn_math_sin,  sin,  sinf,  -1e5, 1e5, 3, 2},
    {"sin",  dfn_math_sin,  sin,  sinf,  -4.0, 4.0, 3, 2},
    {"cos",  dfn_math_cos,  cos,  cosf,  -1e5, 1e5, 3, 2},
    {"cos",  dfn_math_cos,  cos,  cosf,  -4.0, 4.0, 3, 2},
    {"tanh", dfn_math_tanh, tanh, tanhf, -25.0, 25.0, 5, 3},
    {"tanh", dfn_math_tanh, tanh, tanhf, -0.5, 0.5, 5, 3},
};

void test_portable_math_accuracy_vs_libm(void)
{
    /* Each function within max_ulp of libm, and the float versions within
       max_ulpf float ulp of the float libm (the bounds are one ulp above the
       errors measured against glibc, since libms differ by about an ulp). log's wide range is sampled in
       the exponent (log-uniform), the others uniformly. */
    dfn_rng rng;
    size_t c;
    dfn_rng_seed(&rng, 2026, 6);
    printf("    portable math, max ulp vs libm (double / float):");
    for (c = 0; c < sizeof tp_cases / sizeof tp_cases[0]; c++) {
        tp_case k = tp_cases[c];
        double u, uf;
        if (k.lo > 0.0 && k.hi / k.lo > 1e10) {     /* log-uniform: sample the exponent */
            int i;
            u = 0.0; uf = 0.0;
            for (i = 0; i < 20000; i++) {
                double x = exp(tp_uniform(&rng, log(k.lo), log(k.hi))), e = tp_ulp(k.own(x), k.ref(x));
                float xf = (float)x;
                if (e > u) u = e;
                if (xf > 0.0f && xf <= 3.4e38f) {
                    double ef = tp_ulpf((float)k.own((double)xf), k.reff(xf));
                    if (ef > uf) uf = ef;
                }
            }
        } else {
            tp_measure(&k, &rng, 20000, &u, &uf);
        }
        tp_max_ulp[c] = u;
        tp_max_ulpf[c] = uf;
        printf(" %s[%g,%g] %g/%g", k.name, k.lo, k.hi, u, uf);
        CHECK(u <= k.max_ulp, "%s on [%g, %g]: %g ulp from libm (bound %g)", k.name, k.lo, k.hi,
              u, k.max_ulp);
        CHECK(uf <= k.max_ulpf, "float %s on [%g, %g]: %g ulp from libm", k.name, k.lo, k.hi, uf);
    }
    printf("\n");
}

void test_portable_math_special_values(void)
{
    /* Exact values, limits and IEEE special cases. */
    double inf = HUGE_VAL, nan_ = inf - inf;
    int i;
    CHECK(dfn_math_exp(0.0) == 1.0 && dfn_math_log(1.0) == 0.0, "exp 0, log 1");
    CHECK(dfn_math_sin(0.0) == 0.0 && dfn_math_cos(0.0) == 1.0 && dfn_math_tanh(0.0) == 0.0,
          "sin 0, cos 0, tanh 0");
    CHECK(dfn_math_exp(710.0) == inf && dfn_math_exp(-746.0) == 0.0, "exp overflow, underflow");
    CHECK(dfn_math_exp(-740.0) > 0.0 && tp_ulp(dfn_math_exp(-740.0), exp(-740.0)) <= 1,
          "exp into the subnormals: %g vs %g", dfn_math_exp(-740.0), exp(-740.0));
    CHECK(tp_ulp(dfn_math_exp(709.7), exp(709.7)) <= 1, "exp near overflow");
    CHECK(dfn_math_log(0.0) == -inf && dfn_math_log(inf) == inf && dfn_math_log(-1.0) != dfn_math_log(-1.0),
          "log 0, inf, -1");
    CHECK(tp_ulp(dfn_math_log(4.9e-324), log(4.9e-324)) <= 1, "log of the smallest subnormal");
    CHECK(dfn_math_exp(nan_) != dfn_math_exp(nan_) && dfn_math_log(nan_) != dfn_math_log(nan_) &&
          dfn_math_sin(nan_) != dfn_math_sin(nan_) && dfn_math_cos(inf) != dfn_math_cos(inf) &&
          dfn_math_tanh(nan_) != dfn_math_tanh(nan_), "NaN in, NaN out");
    CHECK(dfn_math_tanh(30.0) == 1.0 && dfn_math_tanh(-30.0) == -1.0, "tanh saturates");
    for (i = -40; i <= 40; i++) {
        double x = i * 0.25;      /* odd / even symmetry, exactly */
        CHECK(dfn_math_sin(-x) == -dfn_math_sin(x) && dfn_math_cos(-x) == dfn_math_cos(x) &&
              dfn_math_tanh(-x) == -dfn_math_tanh(x), "symmetry at %g", x);
    }
    for (i = -20; i <= 20; i++)   /* near the reduction's switch points k ln 2 */
        CHECK(tp_ulp(dfn_math_exp(i * 0.69314718055994530942), exp(i * 0.69314718055994530942)) <= 1,
              "exp(%d ln 2)", i);
    for (i = -1074; i <= 1023; i += 7)   /* log 2^i = i ln 2 */
        CHECK(tp_ulp(dfn_math_log(ldexp(1.0, i)), i * 0.69314718055994530942) <= 1, "log 2^%d", i);
}

void test_portable_math_checks_can_fail(void)
{
    /* The measure finds a 1-ulp change and a wrong function. */
    tp_case bad = {"exp", dfn_math_exp, exp, expf, -2.0, 2.0, 1, 1};
    dfn_rng rng;
    double u, uf;
    dfn_rng_seed(&rng, 1, 1);
    bad.ref = log1p;
    tp_measure(&bad, &rng, 100, &u, &uf);
    CHECK(u > 1e6, "exp vs log1p measured %g ulp", u);
    CHECK(tp_ulp(1.0, nextafter(1.0, 2.0)) == 1.0 && tp_ulp(-0.0, 0.0) == 0.0 &&
          tp_ulp(nextafter(0.0, 1.0), nextafter(0.0, -1.0)) == 2.0, "ulp distance");
}
