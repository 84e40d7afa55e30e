/* Kernels: every compiled variant (dfn_kernel_variants) against the plain
   reference on seeded data of awkward sizes, unaligned pointers, padded
   leading dimensions and NaN where nothing may be read; the activations and
   their derivatives also against double precision formulas and finite
   differences written here; batch and position invariance; the dispatch. */
#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "harness.h"
#include "../diffusion.h"

/* ------------------------------------------------------------------------- */
/*  Helpers                                                                  */
/* ------------------------------------------------------------------------- */

static const int kt_sizes[7] = { 0, 1, 3, 7, 17, 67, 129 };
static const size_t kt_lengths[8] = { 0, 1, 3, 7, 17, 67, 129, 1000 };
#define KT_GUARD 8            /* floats of sentinel after every output array */
#define KT_SENTINEL (-7777.25f)

/* Collects the failures of one (test, variant) pair: a count and the first
   description, reported by one CHECK at the end. */
typedef struct kt_fails {
    int count;
    char first[256];
} kt_fails;

static void kt_fail(kt_fails *f, const char *what, double got, double want, double tol, size_t index)
{
    if (f->count++ == 0)
        snprintf(f->first, sizeof f->first, "%s [%lu]: got %.9g, want %.9g (tolerance %.3g)",
                 what, (unsigned long)index, got, want, tol);
}

static float kt_nan(void)
{
    uint32_t u = 0x7fc00000u;
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

static float kt_unif(dfn_rng *r, float lo, float hi)
{
    return lo + (hi - lo) * dfn_rng_uniform(r);
}

/* Uniform in [-1, 1) times 10^e, e uniform in -3..3. */
static float kt_mixed(dfn_rng *r)
{
    static const float p10[7] = { 1e-3f, 1e-2f, 1e-1f, 1.0f, 1e1f, 1e2f, 1e3f };
    return kt_unif(r, -1.0f, 1.0f) * p10[dfn_rng_below(r, 7)];
}

static float kt_small_int(dfn_rng *r)
{
    return (float)((int)dfn_rng_below(r, 9) - 4);
}

static void *kt_alloc(size_t floats)
{
    void *p = malloc((floats ? floats : 1) * sizeof(float));
    if (!p) { printf("out of memory\n"); exit(2); }
    return p;
}

static void kt_fill_value(float *x, size_t n, float v)
{
    size_t i;
    for (i = 0; i < n; i++) x[i] = v;
}

/* Sentinels at x[-before .. -1] and x[n .. n + KT_GUARD - 1]. */
static void kt_guard_set(float *x, size_t before, size_t n)
{
    kt_fill_value(x - before, before, KT_SENTINEL);
    kt_fill_value(x + n, KT_GUARD, KT_SENTINEL);
}

/* Number of clobbered sentinels. */
static int kt_guard_bad(const float *x, size_t before, size_t n)
{
    size_t i;
    int bad = 0;
    for (i = 1; i <= before; i++) bad += *(x - i) != KT_SENTINEL;
    for (i = 0; i < KT_GUARD; i++) bad += x[n + i] != KT_SENTINEL;
    return bad;
}

static int kt_same_bits(const float *a, const float *b, size_t n)
{
    return n == 0 || memcmp(a, b, n * sizeof(float)) == 0;
}

static int kt_finite(float x)
{
    return x == x && x - x == 0.0f;
}

static int kt_variants(const dfn_kernel_variant **v)
{
    return dfn_kernel_variants(v);
}

/* ------------------------------------------------------------------------- */
/*  GEMM checking                                                            */
/* ------------------------------------------------------------------------- */

static float kt_op(const float *X, int ld, int trans, int r, int c)
{
    return trans ? X[(size_t)c * (size_t)ld + r] : X[(size_t)r * (size_t)ld + c];
}

/* bound[i][j] = |alpha| sum_k |op(A)_ik| |op(B)_kj| + |beta| |C0_ij| (beta != 0):
   the scale of the rounding error of any summation order. */
static void kt_gemm_bound(int ta, int tb, int M, int N, int K, float alpha, const float *A, int lda,
                          const float *B, int ldb, float beta, const float *C0, int ldc, double *bound)
{
    int i, j, k;
    for (i = 0; i < M; i++)
        for (j = 0; j < N; j++) {
            double s = 0.0;
            for (k = 0; k < K; k++)
                s += fabs((double)kt_op(A, lda, ta, i, k) * (double)kt_op(B, ldb, tb, k, j));
            s *= fabs((double)alpha);
            if (beta != 0.0f) s += fabs((double)beta * (double)C0[(size_t)i * (size_t)ldc + j]);
            bound[(size_t)i * N + j] = s;
        }
}

/* Compares the M x N window of got against want: exactly when exact != 0,
   else within (K + 4) FLT_EPSILON bound + 1e-37 (the worst case of float
   accumulation in any order is about K FLT_EPSILON / 2 times the bound).
   Also every float of the padding and the guard (outside the window) must
   be bit-identical to init. Returns the number of failures. */
static int kt_gemm_compare(const char *label, int M, int N, int K, const float *got, const float *want,
                           const float *init, int ldc, size_t total, const double *bound, int exact,
                           kt_fails *f)
{
    int i, j, bad = 0;
    size_t t;
    for (i = 0; i < M; i++)
        for (j = 0; j < N; j++) {
            size_t at = (size_t)i * (size_t)ldc + j;
            double g = got[at], w = want[at];
            double tol = exact ? 0.0 : (K + 4) * (double)FLT_EPSILON * bound[(size_t)i * N + j] + 1e-37;
            if (!(fabs(g - w) <= tol)) { bad++; kt_fail(f, label, g, w, tol, at); }
        }
    for (t = 0; t < total; t++) {
        int inside = 0;
        if (M > 0 && N > 0 && t < (size_t)(M - 1) * (size_t)ldc + (size_t)N)
            inside = (int)(t % (size_t)ldc) < N;
        if (!inside && memcmp(&got[t], &init[t], sizeof(float)) != 0) {
            bad++;
            kt_fail(f, "padding written", got[t], init[t], 0.0, t);
        }
    }
    return bad;
}

typedef struct kt_gemm_case {
    int ta, tb, M, N, K;
    int pad_a, pad_b, pad_c;  /* leading dimension minus row length */
    int offset;               /* 1: every matrix starts one float off alignment */
    int integer;              /* small-integer data: every variant must be exact */
    float alpha, beta;
} kt_gemm_case;

/* Runs one case through every variant against the reference; returns the
   number of failing variants and accumulates failures in fails[v]. */
static void kt_gemm_case_run(const kt_gemm_case *c, dfn_rng *rng, float *work, kt_fails *fails)
{
    const dfn_kernel_variant *var;
    int nv = kt_variants(&var), v;
    int arows = c->ta ? c->K : c->M, acols = c->ta ? c->M : c->K;
    int brows = c->tb ? c->N : c->K, bcols = c->tb ? c->K : c->N;
    int lda = acols + c->pad_a, ldb = bcols + c->pad_b, ldc = c->N + c->pad_c;
    size_t asz = (size_t)arows * lda, bsz = (size_t)brows * ldb, csz = (size_t)c->M * ldc + KT_GUARD;
    float *abuf = (float *)kt_alloc(asz + 1), *bbuf = (float *)kt_alloc(bsz + 1);
    float *c0buf = (float *)kt_alloc(csz + 1), *crbuf = (float *)kt_alloc(csz + 1);
    float *cvbuf = (float *)kt_alloc(csz + 1);
    float *A = abuf + c->offset, *B = bbuf + c->offset, *C0 = c0buf + c->offset;
    float *Cref = crbuf + c->offset, *Cv = cvbuf + c->offset;
    double *bound = (double *)malloc(((size_t)c->M * c->N + 1) * sizeof(double));
    char label[160];
    int i, j;
    if (!bound) { printf("out of memory\n"); exit(2); }
    /* A and B: data in the window, NaN in the padding (must never be read). */
    for (i = 0; i < arows; i++)
        for (j = 0; j < lda; j++)
            A[(size_t)i * lda + j] = j >= acols ? kt_nan() : c->integer ? kt_small_int(rng) : kt_mixed(rng);
    for (i = 0; i < brows; i++)
        for (j = 0; j < ldb; j++)
            B[(size_t)i * ldb + j] = j >= bcols ? kt_nan() : c->integer ? kt_small_int(rng) : kt_mixed(rng);
    /* C: data (or NaN when beta == 0: must not be read) and sentinels. */
    for (i = 0; i < c->M; i++)
        for (j = 0; j < ldc; j++)
            C0[(size_t)i * ldc + j] = j >= c->N ? KT_SENTINEL
                                    : c->beta == 0.0f ? kt_nan()
                                    : c->integer ? kt_small_int(rng) : kt_mixed(rng);
    kt_fill_value(C0 + (size_t)c->M * ldc, KT_GUARD, KT_SENTINEL);
    kt_gemm_bound(c->ta, c->tb, c->M, c->N, c->K, c->alpha, A, lda, B, ldb, c->beta, C0, ldc, bound);
    memcpy(Cref, C0, csz * sizeof(float));
    var[0].gemm(c->ta, c->tb, c->M, c->N, c->K, c->alpha, A, lda, B, ldb, c->beta, Cref, ldc, work);
    for (v = 0; v < nv; v++) {
        memcpy(Cv, C0, csz * sizeof(float));
        var[v].gemm(c->ta, c->tb, c->M, c->N, c->K, c->alpha, A, lda, B, ldb, c->beta, Cv, ldc, work);
        snprintf(label, sizeof label, "%s gemm ta=%d tb=%d M=%d N=%d K=%d lda=%d ldb=%d ldc=%d off=%d int=%d a=%g b=%g",
                 var[v].name, c->ta, c->tb, c->M, c->N, c->K, lda, ldb, ldc, c->offset, c->integer,
                 (double)c->alpha, (double)c->beta);
        kt_gemm_compare(label, c->M, c->N, c->K, Cv, Cref, C0, ldc, csz, bound, c->integer, &fails[v]);
    }
    free(abuf); free(bbuf); free(c0buf); free(crbuf); free(cvbuf); free(bound);
}

static void kt_report(const char *test, kt_fails *fails)
{
    const dfn_kernel_variant *var;
    int nv = kt_variants(&var), v;
    for (v = 0; v < nv; v++)
        CHECK(fails[v].count == 0, "%s, variant %s: %d failures; first: %s",
              test, var[v].name, fails[v].count, fails[v].first);
}

/* ------------------------------------------------------------------------- */
/*  Activation checking                                                      */
/* ------------------------------------------------------------------------- */

/* Inputs with a large dynamic range and the edges of every code path. */
static const float kt_special[] = {
    0.0f, -0.0f, 1e-40f, -1e-40f, 1e-30f, -1e-30f, 1e-7f, -1e-7f, 0.5f, -0.5f,
    1.0f, -1.0f, -1.2784645f, -0.7517916f, 3.0f, -3.0f, 5.0f, -5.0f, 8.0f, -8.0f,
    9.99f, -9.99f, 10.0f, -10.0f, 10.01f, -10.01f, 20.0f, -20.0f, 43.5f, -43.5f,
    87.0f, -87.0f, 87.4f, -87.4f, 88.5f, -88.5f, 100.0f, -100.0f, 1e10f, -1e10f,
    1e20f, -1e20f, 1e30f, -1e30f, 3.4e38f, -3.4e38f
};
#define KT_NSPECIAL ((int)(sizeof kt_special / sizeof kt_special[0]))

static void kt_act_inputs(dfn_rng *r, float *x, size_t n)
{
    size_t i;
    for (i = 0; i < n; i++)
        x[i] = dfn_rng_below(r, 4) == 0 ? kt_special[dfn_rng_below(r, KT_NSPECIAL)]
                                        : kt_unif(r, -12.0f, 12.0f);
}

static double kt_min(double a, double b) { return a < b ? a : b; }

/* Forward tolerance against the reference (or exact math): relative 4e-6
   (exp/sigmoid are good to 2 ulp; GELU's argument 2u is rounded, and
   sigmoid(2u) inherits |2u| times that relative error for negative x), plus
   an absolute 1e-7 min(|x|, 16): the tanh form 0.5 x (1 + tanh u) in float
   cancels for negative x (0.5 |x| ulp(1)), and denormal results are flushed. */
static double kt_act_tol_f(float x, double want)
{
    return 4e-6 * fabs(want) + 1e-7 * kt_min(fabs((double)x), 16.0) + 1e-30;
}

/* Backward: f' is O(1), so relative 4e-6 plus absolute 1e-6 |dy|. */
static double kt_act_tol_b(float dy, double want)
{
    return 4e-6 * fabs(want) + 1e-6 * fabs((double)dy) + 1e-30;
}

/* Tighter, for the variants with the library's own exp (all but "ref"),
   against exact math: SiLU 6e-7 relative (measured 2.3e-7); GELU
   6e-7 (1 + |2u(x)|) relative, |2u| being about the condition number of
   x sigmoid(2u) for negative x (measured 2.6e-6 at x = -5 where 2u = -16);
   derivatives 4e-7 relative + 2e-7 absolute (measured 2.3e-7 at SiLU'(2),
   8e-8 near the zeros of SiLU' and GELU'). */
static double kt_act_tol_own_f(int act, float x, double want)
{
    double xd = x, u2 = fabs(1.5957691216057308 * xd * (1.0 + 0.044715 * xd * xd));
    if (act == DFN_ACT_GELU) return 6e-7 * (1.0 + (u2 < 100.0 ? u2 : 100.0)) * fabs(want) + 1e-30;
    return 6e-7 * fabs(want) + 1e-30;
}

static double kt_act_tol_own_b(double want)
{
    return 4e-7 * fabs(want) + 2e-7;
}

static const char *kt_act_name(int act)
{
    static const char *names[4] = { "identity", "relu", "silu", "gelu" };
    return act >= 0 && act < 4 ? names[act] : "?";
}

/* Exact math in double, written independently of the library. */
static double kt_act_d(int act, double x)
{
    switch (act) {
    case DFN_ACT_RELU: return x > 0.0 ? x : 0.0;
    case DFN_ACT_SILU: return x / (1.0 + exp(-x));
    case DFN_ACT_GELU:   /* 0.5 x (1 + tanh u) = x / (1 + e^(-2u)), which does not cancel for x < 0 */
        return x / (1.0 + exp(-2.0 * 0.79788456080286535588 * (x + 0.044715 * x * x * x)));
    default: return x;
    }
}

static double kt_act_grad_d(int act, double x)
{
    double s, sm, u;
    switch (act) {
    case DFN_ACT_RELU: return x > 0.0 ? 1.0 : 0.0;
    case DFN_ACT_SILU:
        s = 1.0 / (1.0 + exp(-x));
        sm = 1.0 / (1.0 + exp(x));                       /* 1 - s */
        return s + x * s * sm;
    case DFN_ACT_GELU:   /* t = tanh u = 2s - 1 with s = sigmoid(2u): 1 + t = 2s, 1 - t^2 = 4 s (1 - s) */
        u = 0.79788456080286535588 * (x + 0.044715 * x * x * x);
        s = 1.0 / (1.0 + exp(-2.0 * u));
        sm = 1.0 / (1.0 + exp(2.0 * u));
        return s + 2.0 * x * s * sm * 0.79788456080286535588 * (1.0 + 3.0 * 0.044715 * x * x);
    default: return 1.0;
    }
}

/* ------------------------------------------------------------------------- */
/*  Adam checking                                                            */
/* ------------------------------------------------------------------------- */

/* sign * [1, 10) * 10^e with e uniform in lo..hi, and now and then +0 or a
   denormal; positive: no sign. */
static float kt_wide(dfn_rng *r, int lo, int hi, int positive)
{
    uint32_t k = dfn_rng_below(r, 16);
    float x;
    if (k == 0) x = 0.0f;
    else if (k == 1) x = kt_unif(r, 1.0f, 10.0f) * 1e-41f;
    else x = (float)(kt_unif(r, 1.0f, 10.0f) * pow(10.0, lo + (int)dfn_rng_below(r, (uint32_t)(hi - lo + 1))));
    return !positive && dfn_rng_below(r, 2) ? -x : x;
}

/* Inputs of one element: gradient 1e-40 .. 1e15, m 1e-40 .. 1e20, v
   1e-45 .. 1e30 (>= 0), p and ema 1e-40 .. 1e10. With the coefficient sets
   of the tests nothing overflows. */
static void kt_adam_inputs(dfn_rng *r, float *g, float *m, float *v, float *p, float *e, size_t n)
{
    size_t i;
    for (i = 0; i < n; i++) {
        g[i] = kt_wide(r, -40, 15, 0);
        m[i] = kt_wide(r, -40, 20, 0);
        v[i] = kt_wide(r, -45, 30, 1);
        p[i] = kt_wide(r, -40, 10, 0);
        e[i] = kt_wide(r, -40, 10, 0);
    }
}

/* The exact update of one element (dfn_adam_update's formula in double) and
   bounds on how far the float evaluation in the documented order may be
   from it: each operation's rounding (e = FLT_EPSILON per operation, with
   slack; F = 2^-149 for denormals) carried through the later steps. */
typedef struct kt_adam_want { double m, v, p, ema, tm, tv, tp, te; } kt_adam_want;

static void kt_adam_exact(const dfn_adam_coefs *c, float g, float m, float v, float p, float ema,
                          kt_adam_want *w)
{
    const double e = FLT_EPSILON, F = ldexp(1.0, -149);
    double gi = (double)g * c->grad_scale, ob1 = 1.0 - c->beta1, ob2 = 1.0 - c->beta2;
    double mt = fabs((double)c->beta1 * m) + fabs(ob1 * gi), a, da, D, tsq, tD, dlo, U, tU;
    w->m = (double)c->beta1 * m + ob1 * gi;
    w->v = (double)c->beta2 * v + ob2 * gi * gi;
    w->tm = 4.0 * e * mt + 4.0 * F;
    w->tv = 4.0 * e * w->v + 4.0 * F;
    a = w->v * c->v_scale;                      /* sqrt(a) + eps: the denominator */
    da = w->tv * c->v_scale + e * a + F;        /* error of float v * v_scale      */
    tsq = sqrt(da);                             /* |sqrt(a') - sqrt(a)| <= sqrt(|a' - a|) ... */
    if (a > 0.0 && da / sqrt(a) < tsq) tsq = da / sqrt(a);   /* ... and <= |a' - a| / sqrt(a) */
    D = sqrt(a) + c->eps;
    tD = tsq + 2.0 * e * D + F;
    dlo = D - tD;                               /* the float denominator is >= eps */
    if (dlo < c->eps * (1.0 - e)) dlo = c->eps * (1.0 - e);
    U = c->step_size * w->m / D;
    tU = c->step_size * w->tm / dlo + c->step_size * fabs(w->m) * tD / (dlo * D)
       + F / dlo;                               /* a denormal step_size * m, divided */
    tU += 2.0 * e * (fabs(U) + tU) + 2.0 * F;
    w->p = (double)p - (U + (double)c->decay * p);
    w->tp = tU + 2.0 * e * (fabs((double)p) + fabs(U) + fabs((double)c->decay * p)) + 2.0 * F;
    w->ema = (double)c->ema_decay * ema + (1.0 - c->ema_decay) * w->p;
    w->te = (1.0 - c->ema_decay) * w->tp
          + 2.0 * e * (fabs((double)c->ema_decay * ema) + fabs((1.0 - c->ema_decay) * w->p)) + 2.0 * F;
}

/* Coefficient sets: a training step (step 3 of lr 1e-3, weight decay 0.01,
   clipped gradients, EMA 0.9); plain Adam without clipping; beta = 0 and an
   EMA that copies p; odd values (tiny eps, large v_scale, EMA 1 keeps ema). */
static const dfn_adam_coefs kt_adam_coefs[4] = {
    { 0.9f, 0.999f, 3.6900369e-3f, 333.66678f, 1e-8f, 1e-5f, 0.37f, 0.9f },
    { 0.9f, 0.999f, 1e-3f, 1.0f, 1e-8f, 0.0f, 1.0f, 0.999f },
    { 0.0f, 0.0f, 0.5f, 1.0f, 1e-3f, 0.1f, 2.5e-2f, 0.0f },
    { 0.5f, 0.75f, 3.0f, 1000.0f, 1e-12f, -0.01f, 1e-3f, 1.0f }
};

/* ------------------------------------------------------------------------- */
/*  Tests                                                                    */
/* ------------------------------------------------------------------------- */

/* The name dispatch must pick, derived here from the predefined macros. */
static const char *kt_expected_simd(void)
{
#if defined(DFN_NO_SIMD)
    return "scalar";
#elif defined(__AVX512F__)
    return "avx512";
#elif defined(__AVX2__) && defined(__FMA__)
    return "avx2";
#elif defined(__SSE2__) || defined(_M_X64)
    return "sse2";
#elif defined(__ARM_NEON) || defined(__ARM_NEON__)
    return "neon";
#elif defined(__wasm_simd128__)
    return "wasm_simd128";
#elif defined(__ARM_FEATURE_MVE) && (__ARM_FEATURE_MVE & 2)
    return "helium";
#else
    return "scalar";
#endif
}

static int kt_find_variant(const char *name)
{
    const dfn_kernel_variant *var;
    int nv = kt_variants(&var), v;
    for (v = 0; v < nv; v++)
        if (strcmp(var[v].name, name) == 0) return v;
    return -1;
}

void test_kernels_variant_table(void)
{
    const dfn_kernel_variant *var = NULL;
    int nv = kt_variants(&var), v, w, expected = 2;
    CHECK(nv >= 2 && var != NULL, "%d variants", nv);
    if (nv < 2 || !var) return;
    CHECK(strcmp(var[0].name, "ref") == 0, "first variant is %s, not ref", var[0].name);
    CHECK(strcmp(var[1].name, "scalar") == 0, "second variant is %s, not scalar", var[1].name);
    CHECK(dfn_kernel_variants(NULL) == nv, "count without out pointer");
    for (v = 0; v < nv; v++) {
        const dfn_kernel_variant *k = &var[v];
        CHECK(k->gemm && k->vec_axpy && k->vec_scale && k->vec_dot && k->vec_sum_sq && k->bias_add
              && k->bias_grad && k->act_forward && k->act_backward && k->vec_exp && k->vec_sincos
              && k->adam, "%s: a NULL function", k->name);
        CHECK(k->gemm_mr >= 1 && k->gemm_nr >= 1 && k->gemm_mr <= 64 && k->gemm_nr <= 64,
              "%s: register block %d x %d", k->name, k->gemm_mr, k->gemm_nr);
        for (w = 0; w < v; w++)
            CHECK(strcmp(var[w].name, k->name) != 0, "variant %s listed twice", k->name);
    }
    CHECK(kt_find_variant(dfn_simd_name()) >= 0, "dfn_simd_name() = %s is not in the table", dfn_simd_name());
    CHECK(strcmp(dfn_simd_name(), kt_expected_simd()) == 0, "dispatch chose %s, the target macros say %s",
          dfn_simd_name(), kt_expected_simd());
    /* Every path the target macros allow must be compiled in. */
#if !defined(DFN_NO_SIMD)
#  if defined(__SSE2__) || defined(_M_X64)
    expected++;
    CHECK(kt_find_variant("sse2") >= 0, "sse2 missing");
#  endif
#  if defined(__AVX2__) && defined(__FMA__)
    expected++;
    CHECK(kt_find_variant("avx2") >= 0, "avx2 missing");
#  endif
#  if defined(__AVX512F__)
    expected++;
    CHECK(kt_find_variant("avx512") >= 0, "avx512 missing");
#  endif
#  if defined(__ARM_NEON) || defined(__ARM_NEON__)
    expected++;
    CHECK(kt_find_variant("neon") >= 0, "neon missing");
#  endif
#  if defined(__wasm_simd128__)
    expected++;
    CHECK(kt_find_variant("wasm_simd128") >= 0, "wasm_simd128 missing");
#  endif
#  if defined(__ARM_FEATURE_MVE) && (__ARM_FEATURE_MVE & 2)
    expected++;
    CHECK(kt_find_variant("helium") >= 0, "helium missing");
#  endif
#endif
    CHECK(nv == expected, "%d variants compiled, the target macros allow %d", nv, expected);
    CHECK(dfn_gemm_work_size() >= 64 + 4 * 1024, "work size %lu", (unsigned long)dfn_gemm_work_size());
}

void test_kernels_checks_can_fail(void)
{
    /* The comparisons the other tests rely on must flag wrong results. */
    float A[6] = { 1, 2, 3, 4, 5, 6 }, B[6] = { 1, -1, 2, 0.5f, -3, 1 };
    float C0[2 * 3 + KT_GUARD], Cr[2 * 3 + KT_GUARD], Cb[2 * 3 + KT_GUARD];
    double bound[4];
    kt_fails f;
    float *work = (float *)kt_alloc(dfn_gemm_work_size() / sizeof(float) + 1);
    const dfn_kernel_variant *var;
    kt_variants(&var);
    /* C (2 x 2, ldc 3) = A (2 x 3) B (3 x 2) */
    kt_fill_value(C0, 2 * 3 + KT_GUARD, KT_SENTINEL);
    C0[0] = C0[1] = C0[3] = C0[4] = kt_nan();
    memcpy(Cr, C0, sizeof C0);
    var[0].gemm(0, 0, 2, 2, 3, 1.0f, A, 3, B, 2, 0.0f, Cr, 3, work);
    kt_gemm_bound(0, 0, 2, 2, 3, 1.0f, A, 3, B, 2, 0.0f, C0, 3, bound);
    CHECK(Cr[0] == 1 * 1 + 2 * 2 + 3 * -3 && Cr[4] == 4 * -1 + 5 * 0.5f + 6 * 1, "reference gemm %g %g",
          (double)Cr[0], (double)Cr[4]);
    memset(&f, 0, sizeof f);
    CHECK(kt_gemm_compare("same", 2, 2, 3, Cr, Cr, C0, 3, 2 * 3 + KT_GUARD, bound, 1, &f) == 0, "identical flagged");
    memcpy(Cb, Cr, sizeof Cr);
    Cb[4] = nextafterf(Cb[4], 100.0f);
    CHECK(kt_gemm_compare("1 ulp", 2, 2, 3, Cb, Cr, C0, 3, 2 * 3 + KT_GUARD, bound, 1, &f) == 1, "1 ulp passed an exact check");
    CHECK(kt_gemm_compare("1 ulp", 2, 2, 3, Cb, Cr, C0, 3, 2 * 3 + KT_GUARD, bound, 0, &f) == 0, "1 ulp failed the tolerance");
    Cb[4] = Cr[4] * (1.0f + 1e-4f);
    CHECK(kt_gemm_compare("1e-4", 2, 2, 3, Cb, Cr, C0, 3, 2 * 3 + KT_GUARD, bound, 0, &f) == 1, "1e-4 relative passed");
    Cb[4] = kt_nan();
    CHECK(kt_gemm_compare("nan", 2, 2, 3, Cb, Cr, C0, 3, 2 * 3 + KT_GUARD, bound, 0, &f) == 1, "NaN passed");
    memcpy(Cb, Cr, sizeof Cr);
    Cb[2] = 0.0f;                          /* padding between rows */
    CHECK(kt_gemm_compare("pad", 2, 2, 3, Cb, Cr, C0, 3, 2 * 3 + KT_GUARD, bound, 0, &f) == 1, "padding write passed");
    memcpy(Cb, Cr, sizeof Cr);
    Cb[2 * 3 + 3] = 0.0f;                  /* guard after the matrix */
    CHECK(kt_gemm_compare("guard", 2, 2, 3, Cb, Cr, C0, 3, 2 * 3 + KT_GUARD, bound, 0, &f) == 1, "guard write passed");
    {   /* the guard check around vectors */
        float g[3 + 5 + KT_GUARD];
        kt_guard_set(g + 3, 3, 5);
        CHECK(kt_guard_bad(g + 3, 3, 5) == 0, "fresh guard flagged");
        g[1] = 0.0f;
        g[3 + 5 + 2] = 1.0f;
        CHECK(kt_guard_bad(g + 3, 3, 5) == 2, "clobbered guard passed");
    }
    /* Activation tolerances: a 1e-4 relative error and a wrong derivative
       formula (SiLU' without the x s (1 - s) term) must fail. */
    {
        double want = kt_act_d(DFN_ACT_SILU, 2.0), got = want * (1.0 + 1e-4);
        double d = kt_act_grad_d(DFN_ACT_SILU, 2.0), s = 1.0 / (1.0 + exp(-2.0));
        CHECK(!(fabs(got - want) <= kt_act_tol_f(2.0f, want)), "1e-4 relative SiLU error passed");
        CHECK(!(fabs(s - d) <= kt_act_tol_b(1.0f, d)), "a wrong SiLU' passed");
    }
    /* Adam: the rounding bound holds the scalar loop and the reference, but
       not a 1e-4 relative error or a missing bias correction of v; one ulp
       fails the bit comparison. */
    {
        enum { N = 64 };
        float g[N], m[N], v[N], p[N], e[N], m2[N], v2[N], p2[N], e2[N], pr[N];
        dfn_adam_coefs c = kt_adam_coefs[0];
        kt_adam_want w;
        dfn_rng rng;
        int i, held = 0, held_ref = 0, off = 0, wrong = 0;
        dfn_rng_seed(&rng, 40, 2);
        for (i = 0; i < N; i++) {
            g[i] = kt_unif(&rng, -1.0f, 1.0f);
            m[i] = kt_unif(&rng, -0.1f, 0.1f);
            v[i] = kt_unif(&rng, 0.0f, 1e-2f);
            p[i] = kt_unif(&rng, -1e-3f, 1e-3f);   /* updates of the same order */
            e[i] = kt_unif(&rng, -1.0f, 1.0f);
        }
        memcpy(m2, m, sizeof m); memcpy(v2, v, sizeof v); memcpy(p2, p, sizeof p); memcpy(e2, e, sizeof e);
        var[1].adam(N, p2, m2, v2, g, e2, &c);
        memcpy(pr, p, sizeof p);
        {
            float mr[N], vr[N];
            memcpy(mr, m, sizeof m); memcpy(vr, v, sizeof v);
            var[0].adam(N, pr, mr, vr, g, NULL, &c);
        }
        for (i = 0; i < N; i++) {
            kt_adam_exact(&c, g[i], m[i], v[i], p[i], e[i], &w);
            held += fabs(p2[i] - w.p) <= w.tp && fabs(m2[i] - w.m) <= w.tm && fabs(v2[i] - w.v) <= w.tv
                    && fabs(e2[i] - w.ema) <= w.te;
            held_ref += fabs(pr[i] - w.p) <= w.tp;
        }
        CHECK(held == N && held_ref == N, "Adam bound: scalar holds %d of %d, ref %d", held, N, held_ref);
        /* a 1e-4 relative error in the update (p - p_old) is caught on most elements */
        for (i = 0; i < N; i++) {
            kt_adam_exact(&c, g[i], m[i], v[i], p[i], e[i], &w);
            off += !(fabs((p2[i] + (p2[i] - p[i]) * 1e-4) - w.p) <= w.tp);
        }
        CHECK(off > N / 2, "a 1e-4 relative error in the update passed on %d of %d", N - off, N);
        /* without the bias correction of v (v_scale 1 instead of 333.7) */
        memcpy(pr, p, sizeof p);
        {
            float mr[N], vr[N];
            dfn_adam_coefs bad = c;
            bad.v_scale = 1.0f;
            memcpy(mr, m, sizeof m); memcpy(vr, v, sizeof v);
            var[1].adam(N, pr, mr, vr, g, NULL, &bad);
        }
        for (i = 0; i < N; i++) {
            kt_adam_exact(&c, g[i], m[i], v[i], p[i], e[i], &w);
            wrong += !(fabs(pr[i] - w.p) <= w.tp);
        }
        CHECK(wrong == N, "a missing bias correction passed on %d of %d", N - wrong, N);
        memcpy(pr, p2, sizeof p2);
        pr[N / 2] = nextafterf(pr[N / 2], 10.0f);
        CHECK(!kt_same_bits(pr, p2, N), "1 ulp passed the bit comparison");
    }
    free(work);
}

void test_kernels_gemm_parity(void)
{
    /* All 7^3 size combinations x 4 transposes; the case number rotates
       alpha/beta, padding, a one-float misalignment and integer data (then
       every variant must equal the reference exactly). */
    static const float ab[4][2] = { { 1.0f, 0.0f }, { 0.5f, 1.0f }, { -1.25f, 0.75f }, { 1.0f, 1.0f } };
    const dfn_kernel_variant *var;
    int nv = kt_variants(&var), ta, tb, im, in, ik, idx = 0;
    kt_fails *fails = (kt_fails *)calloc((size_t)nv, sizeof(kt_fails));
    float *work = (float *)kt_alloc(dfn_gemm_work_size() / sizeof(float) + 1);
    dfn_rng rng;
    dfn_rng_seed(&rng, 1234, 1);
    for (ta = 0; ta < 2; ta++)
        for (tb = 0; tb < 2; tb++)
            for (im = 0; im < 7; im++)
                for (in = 0; in < 7; in++)
                    for (ik = 0; ik < 7; ik++, idx++) {
                        kt_gemm_case c;
                        c.ta = ta; c.tb = tb;
                        c.M = kt_sizes[im]; c.N = kt_sizes[in]; c.K = kt_sizes[ik];
                        c.pad_a = idx % 5 == 1 ? 3 : idx % 5 == 3 ? 16 : 0;
                        c.pad_b = idx % 7 == 2 ? 5 : idx % 7 == 4 ? 1 : 0;
                        c.pad_c = idx % 3 == 1 ? 2 : idx % 3 == 2 ? 9 : 0;
                        c.offset = idx % 2;
                        c.integer = idx % 3 == 0;
                        c.alpha = ab[idx % 4][0];
                        c.beta = ab[idx % 4][1];
                        kt_gemm_case_run(&c, &rng, work, fails);
                    }
    kt_report("gemm parity", fails);
    free(fails);
    free(work);
}

void test_kernels_gemm_large_and_blocked(void)
{
    /* The default MLP's 256 x 128 x 128 in all four transposes; then sizes
       that cross every blocking boundary (MC 144, KC 256, NC 1024 by
       default): K = 600 is three K blocks (beta applied once, alpha to
       each); N = 1030 is two N panels. */
    const dfn_kernel_variant *var;
    int nv = kt_variants(&var), t;
    kt_fails *fails = (kt_fails *)calloc((size_t)nv, sizeof(kt_fails));
    float *work = (float *)kt_alloc(dfn_gemm_work_size() / sizeof(float) + 1);
    dfn_rng rng;
    kt_gemm_case c;
    dfn_rng_seed(&rng, 99, 2);
    memset(&c, 0, sizeof c);
    for (t = 0; t < 4; t++) {
        c.ta = t >> 1; c.tb = t & 1; c.M = 256; c.N = 128; c.K = 128;
        c.pad_a = t; c.pad_b = 0; c.pad_c = 3 * t; c.offset = t & 1; c.integer = 0;
        c.alpha = 1.0f; c.beta = t == 2 ? 1.0f : 0.0f;
        kt_gemm_case_run(&c, &rng, work, fails);
        c.M = 20; c.N = 70; c.K = 600; c.alpha = 0.5f; c.beta = 0.75f; c.integer = t & 1;
        kt_gemm_case_run(&c, &rng, work, fails);
    }
    c.ta = 0; c.tb = 1; c.M = 150; c.N = 1030; c.K = 260;
    c.pad_a = 1; c.pad_b = 2; c.pad_c = 5; c.offset = 1; c.integer = 0; c.alpha = -1.0f; c.beta = 1.0f;
    kt_gemm_case_run(&c, &rng, work, fails);
    kt_report("gemm large/blocked", fails);
    free(fails);
    free(work);
}

void test_kernels_gemm_special_cases(void)
{
    const dfn_kernel_variant *var;
    int nv = kt_variants(&var), v, i;
    float *work = (float *)kt_alloc(dfn_gemm_work_size() / sizeof(float) + 1);
    float A[7 * 5], B[5 * 9], C0[7 * 9 + KT_GUARD], C[7 * 9 + KT_GUARD], Cref[7 * 9 + KT_GUARD];
    dfn_rng rng;
    dfn_rng_seed(&rng, 5, 5);
    for (i = 0; i < 7 * 9 + KT_GUARD; i++) C0[i] = kt_mixed(&rng);
    for (v = 0; v < nv; v++) {
        const char *nm = var[v].name;
        int bad;
        /* K == 0: C = beta C, A and B not read (NULL), work not needed. */
        memcpy(C, C0, sizeof C);
        var[v].gemm(0, 0, 7, 9, 0, 1.0f, NULL, 1, NULL, 9, 0.5f, C, 9, NULL);
        for (i = 0, bad = 0; i < 7 * 9; i++) bad += C[i] != 0.5f * C0[i];
        CHECK(bad == 0 && kt_same_bits(C + 63, C0 + 63, KT_GUARD), "%s: K = 0, beta 0.5: %d wrong", nm, bad);
        kt_fill_value(C, 7 * 9, kt_nan());
        var[v].gemm(1, 1, 7, 9, 0, 1.0f, NULL, 7, NULL, 0, 0.0f, C, 9, NULL);
        for (i = 0, bad = 0; i < 7 * 9; i++) bad += C[i] != 0.0f;
        CHECK(bad == 0, "%s: K = 0, beta 0 over NaN: %d not zero", nm, bad);
        memcpy(C, C0, sizeof C);
        var[v].gemm(0, 1, 7, 9, 0, 2.0f, NULL, 1, NULL, 1, 1.0f, C, 9, NULL);
        CHECK(kt_same_bits(C, C0, 7 * 9 + KT_GUARD), "%s: K = 0, beta 1 changed C", nm);
        /* alpha == 0: A and B not read (NaN there), C = beta C. */
        kt_fill_value(A, 7 * 5, kt_nan());
        kt_fill_value(B, 5 * 9, kt_nan());
        memcpy(C, C0, sizeof C);
        var[v].gemm(0, 0, 7, 9, 5, 0.0f, A, 5, B, 9, 0.25f, C, 9, work);
        for (i = 0, bad = 0; i < 7 * 9; i++) bad += C[i] != 0.25f * C0[i];
        CHECK(bad == 0, "%s: alpha 0 with NaN inputs: %d wrong", nm, bad);
        /* M == 0 or N == 0: nothing is touched. */
        memcpy(C, C0, sizeof C);
        var[v].gemm(0, 0, 0, 9, 5, 1.0f, NULL, 5, B, 9, 0.0f, C, 9, work);
        var[v].gemm(0, 0, 7, 0, 5, 1.0f, A, 5, NULL, 1, 0.0f, C, 1, work);
        var[v].gemm(1, 0, 0, 0, 0, 1.0f, NULL, 1, NULL, 1, 0.0f, NULL, 1, NULL);
        CHECK(kt_same_bits(C, C0, 7 * 9 + KT_GUARD), "%s: an empty product touched C", nm);
        /* beta == 0 over NaN: finite output; and A == B (C = A A^T). */
        for (i = 0; i < 7 * 5; i++) A[i] = kt_mixed(&rng);
        kt_fill_value(C, 7 * 7, kt_nan());
        kt_fill_value(Cref, 7 * 7, kt_nan());
        var[v].gemm(0, 1, 7, 7, 5, 1.0f, A, 5, A, 5, 0.0f, C, 7, work);
        var[0].gemm(0, 1, 7, 7, 5, 1.0f, A, 5, A, 5, 0.0f, Cref, 7, work);
        for (i = 0, bad = 0; i < 7 * 7; i++) {
            double tol = 9 * FLT_EPSILON * fabs((double)Cref[i]) + 1e-3 * FLT_EPSILON * 1e6;
            bad += !kt_finite(C[i]) || !(fabs((double)C[i] - Cref[i]) <= tol);
        }
        CHECK(bad == 0, "%s: A A^T with beta 0 over NaN: %d wrong", nm, bad);
    }
    free(work);
}

void test_kernels_gemm_invariance(void)
{
    /* Row i of C does not depend on M (one batch of B rows equals B batches
       of one row), a column slice equals the slice of the product, and
       neither the work memory's contents nor C's alignment change a bit. */
    enum { M = 37, N = 45, K = 300 };
    const dfn_kernel_variant *var;
    int nv = kt_variants(&var), v, t, i;
    size_t wfl = dfn_gemm_work_size() / sizeof(float);
    float *work = (float *)kt_alloc(wfl + 1);
    float *A = (float *)kt_alloc(M * K), *B = (float *)kt_alloc(K * N);
    float *C = (float *)kt_alloc(M * N), *C2 = (float *)kt_alloc(M * N + 1), *R = (float *)kt_alloc(N);
    dfn_rng rng;
    dfn_rng_seed(&rng, 77, 3);
    for (i = 0; i < M * K; i++) A[i] = kt_mixed(&rng);
    for (i = 0; i < K * N; i++) B[i] = kt_mixed(&rng);
    for (v = 0; v < nv; v++) {
        for (t = 0; t < 4; t++) {
            int ta = t >> 1, tb = t & 1, lda = ta ? M : K, ldb = tb ? K : N;
            int rows_bad = 0, cols_bad = 0, j;
            size_t w;
            for (w = 0; w < wfl; w++) work[w] = kt_nan();
            var[v].gemm(ta, tb, M, N, K, 0.75f, A, lda, B, ldb, 0.0f, C, N, work);
            for (i = 0; i < M; i++) {
                const float *Ai = ta ? A + i : A + (size_t)i * lda;
                var[v].gemm(ta, tb, 1, N, K, 0.75f, Ai, lda, B, ldb, 0.0f, R, N, work);
                rows_bad += !kt_same_bits(R, C + (size_t)i * N, N);
            }
            CHECK(rows_bad == 0, "%s ta=%d tb=%d: %d rows differ from the batched product", var[v].name, ta, tb, rows_bad);
            for (j = 0; j + 13 <= N; j += 13) {     /* columns j .. j+12 */
                const float *Bj = tb ? B + (size_t)j * ldb : B + j;
                var[v].gemm(ta, tb, M, 13, K, 0.75f, A, lda, Bj, ldb, 0.0f, C2, 13, work);
                for (i = 0; i < M; i++) cols_bad += !kt_same_bits(C2 + (size_t)i * 13, C + (size_t)i * N + j, 13);
            }
            CHECK(cols_bad == 0, "%s ta=%d tb=%d: %d column slices differ", var[v].name, ta, tb, cols_bad);
            for (w = 0; w < wfl; w++) work[w] = (float)(w % 1000) - 500.0f;
            var[v].gemm(ta, tb, M, N, K, 0.75f, A, lda, B, ldb, 0.0f, C2 + 1, N, work);
            CHECK(kt_same_bits(C2 + 1, C, (size_t)M * N), "%s ta=%d tb=%d: other work contents or alignment changed bits",
                  var[v].name, ta, tb);
        }
    }
    free(work); free(A); free(B); free(C); free(C2); free(R);
}

void test_kernels_vec_parity(void)
{
    /* axpy, scale, dot, sum_sq on every length, aligned and one float off,
       on data spanning 1e-3 .. 1e3 (tolerances) and on small integers (dot
       and sum_sq exact in any order). Nothing outside [0, n) is written. */
    const dfn_kernel_variant *var;
    int nv = kt_variants(&var), v, li, off, integer;
    kt_fails *fails = (kt_fails *)calloc((size_t)nv, sizeof(kt_fails));
    float *x = (float *)kt_alloc(1000 + 2 * KT_GUARD + 2), *y0 = (float *)kt_alloc(1000 + 2);
    float *y = (float *)kt_alloc(1000 + 2 * KT_GUARD + 2), *yr = (float *)kt_alloc(1000 + 2);
    dfn_rng rng;
    char label[96];
    dfn_rng_seed(&rng, 31, 4);
    for (li = 0; li < 8; li++)
        for (off = 0; off < 2; off++)
            for (integer = 0; integer < 2; integer++) {
                size_t n = kt_lengths[li], i;
                float *xs = x + KT_GUARD + off, *ys = y + KT_GUARD + off;
                float a = integer ? 3.0f : kt_mixed(&rng);
                double dot_b = 0.0, sq_b = 0.0;
                float dot_r, sq_r;
                for (i = 0; i < n; i++) {
                    xs[i] = integer ? kt_small_int(&rng) : kt_mixed(&rng);
                    y0[i] = integer ? kt_small_int(&rng) : kt_mixed(&rng);
                    dot_b += fabs((double)xs[i] * y0[i]);
                    sq_b += (double)xs[i] * xs[i];
                }
                dot_r = var[0].vec_dot(n, xs, y0);
                sq_r = var[0].vec_sum_sq(n, xs);
                for (v = 0; v < nv; v++) {
                    float got;
                    double tol;
                    snprintf(label, sizeof label, "%s n=%lu off=%d int=%d", var[v].name, (unsigned long)n, off, integer);
                    /* axpy */
                    memcpy(yr, y0, n * sizeof(float));
                    var[0].vec_axpy(n, a, xs, yr);
                    kt_guard_set(ys, KT_GUARD, n);
                    memcpy(ys, y0, n * sizeof(float));
                    var[v].vec_axpy(n, a, xs, ys);
                    for (i = 0; i < n; i++) {
                        tol = 2.0 * FLT_EPSILON * (fabs((double)a * xs[i]) + fabs((double)y0[i])) + 1e-37;
                        if (!(fabs((double)ys[i] - yr[i]) <= tol)) kt_fail(&fails[v], label, ys[i], yr[i], tol, i);
                    }
                    if (kt_guard_bad(ys, KT_GUARD, n)) kt_fail(&fails[v], "axpy wrote outside", 0, 0, 0, n);
                    /* scale: one multiply, the same bits everywhere */
                    memcpy(yr, y0, n * sizeof(float));
                    var[0].vec_scale(n, a, yr);
                    memcpy(ys, y0, n * sizeof(float));
                    var[v].vec_scale(n, a, ys);
                    if (!kt_same_bits(ys, yr, n)) kt_fail(&fails[v], "scale differs from ref", 0, 0, 0, n);
                    if (kt_guard_bad(ys, KT_GUARD, n)) kt_fail(&fails[v], "scale wrote outside", 0, 0, 0, n);
                    /* dot and sum_sq: any summation order is within n eps/2 of the sum of |terms| */
                    got = var[v].vec_dot(n, xs, y0);
                    tol = integer ? 0.0 : (n + 4) * (double)FLT_EPSILON * dot_b + 1e-37;
                    if (!(fabs((double)got - dot_r) <= tol)) kt_fail(&fails[v], label, got, dot_r, tol, 0);
                    got = var[v].vec_sum_sq(n, xs);
                    tol = integer ? 0.0 : (n + 4) * (double)FLT_EPSILON * sq_b + 1e-37;
                    if (!(fabs((double)got - sq_r) <= tol)) kt_fail(&fails[v], label, got, sq_r, tol, 1);
                }
            }
    /* The reference itself against double sums (integers: exact). */
    {
        float xi[5] = { 1, -2, 3, 4, -4 }, yi[5] = { 2, 2, -1, 0.5f, 0.25f };
        CHECK(var[0].vec_dot(5, xi, yi) == 2 - 4 - 3 + 2 - 1, "reference dot %g", (double)var[0].vec_dot(5, xi, yi));
        CHECK(var[0].vec_sum_sq(5, xi) == 46.0f, "reference sum_sq %g", (double)var[0].vec_sum_sq(5, xi));
    }
    kt_report("vec parity", fails);
    free(fails); free(x); free(y0); free(y); free(yr);
}

void test_kernels_bias_parity(void)
{
    /* bias_add and bias_grad are plain float adds in the same order in every
       variant: the same bits as the reference, on data whose sums depend on
       the order (magnitudes 1e-3 .. 1e3). */
    static const int rows_list[5] = { 0, 1, 3, 7, 17 };
    const dfn_kernel_variant *var;
    int nv = kt_variants(&var), v, ri, ci, off;
    kt_fails *fails = (kt_fails *)calloc((size_t)nv, sizeof(kt_fails));
    size_t cap = 17 * 129 + 2 * KT_GUARD + 2;
    float *y0 = (float *)kt_alloc(cap), *y = (float *)kt_alloc(cap), *yr = (float *)kt_alloc(cap);
    float *bias = (float *)kt_alloc(129 + 1), *db0 = (float *)kt_alloc(129 + 1);
    float *db = (float *)kt_alloc(129 + 2 * KT_GUARD + 2), *dbr = (float *)kt_alloc(129 + 1);
    dfn_rng rng;
    char label[96];
    dfn_rng_seed(&rng, 8, 8);
    for (ri = 0; ri < 5; ri++)
        for (ci = 0; ci < 7; ci++)
            for (off = 0; off < 2; off++) {
                int rows = rows_list[ri], cols = kt_sizes[ci];
                size_t n = (size_t)rows * cols, i;
                float *ys = y + KT_GUARD + off, *dbs = db + KT_GUARD + off, *bs = bias + off;
                for (i = 0; i < n; i++) y0[i] = kt_mixed(&rng);
                for (i = 0; i < (size_t)cols; i++) { bs[i] = kt_mixed(&rng); db0[i] = kt_mixed(&rng); }
                memcpy(yr, y0, n * sizeof(float));
                var[0].bias_add(rows, cols, yr, bs);
                memcpy(dbr, db0, cols * sizeof(float));
                var[0].bias_grad(rows, cols, y0, dbr);
                for (v = 0; v < nv; v++) {
                    snprintf(label, sizeof label, "%s rows=%d cols=%d off=%d", var[v].name, rows, cols, off);
                    kt_guard_set(ys, KT_GUARD, n);
                    memcpy(ys, y0, n * sizeof(float));
                    var[v].bias_add(rows, cols, ys, bs);
                    if (!kt_same_bits(ys, yr, n)) kt_fail(&fails[v], label, 0, 0, 0, 0);
                    if (kt_guard_bad(ys, KT_GUARD, n)) kt_fail(&fails[v], "bias_add wrote outside", 0, 0, 0, n);
                    kt_guard_set(dbs, KT_GUARD, (size_t)cols);
                    memcpy(dbs, db0, cols * sizeof(float));
                    var[v].bias_grad(rows, cols, y0, dbs);
                    if (!kt_same_bits(dbs, dbr, (size_t)cols)) kt_fail(&fails[v], label, 0, 0, 0, 1);
                    if (kt_guard_bad(dbs, KT_GUARD, (size_t)cols)) kt_fail(&fails[v], "bias_grad wrote outside", 0, 0, 0, 1);
                }
            }
    /* The reference is the formula (exact small integers). */
    {
        float yv[6] = { 1, 2, 3, 4, 5, 6 }, bv[3] = { 10, 20, 30 }, dbv[3] = { 1, 1, 1 };
        var[0].bias_add(2, 3, yv, bv);
        var[0].bias_grad(2, 3, yv, dbv);
        CHECK(yv[0] == 11 && yv[5] == 36 && dbv[0] == 1 + 11 + 14 && dbv[2] == 1 + 33 + 36,
              "reference bias: %g %g %g %g", (double)yv[0], (double)yv[5], (double)dbv[0], (double)dbv[2]);
    }
    kt_report("bias parity", fails);
    free(fails); free(y0); free(y); free(yr); free(bias); free(db0); free(db); free(dbr);
}

/* The float spacing at |y| (the spacing of denormals below 2^-126). */
static double kt_ulp(double y)
{
    int e;
    if (y == 0.0) return ldexp(1.0, -149);
    frexp(fabs(y), &e);
    return ldexp(1.0, e - 24 < -149 ? -149 : e - 24);
}

void test_kernels_exp_accuracy(void)
{
    /* The exp under SiLU and GELU, every variant, on 200001 points over
       [-87.3, 88] plus the edges: within 1.5 ulp of exp in double (measured:
       0.99 for the own exp, 0.5 for libm in "ref"); the own exp is 0 below
       -87.33654 and exp(88) above 88, finite for +-1e30. */
    enum { NG = 200001 };
    static const float edge[] = { -87.33654f, -87.3365f, -87.4f, -100.0f, -1e30f, -3.4e38f,
                                  88.0f, 88.5f, 1e30f, 3.4e38f, 0.0f, -0.0f, 1e-30f, -1e-30f };
    const dfn_kernel_variant *var;
    int nv = kt_variants(&var), v, i, ne = (int)(sizeof edge / sizeof edge[0]);
    kt_fails *fails = (kt_fails *)calloc((size_t)nv, sizeof(kt_fails));
    float *x = (float *)kt_alloc(NG + 1), *y = (float *)kt_alloc(NG + 1), xe[14], ye[14], e88[1], x88[1] = { 88.0f };
    char label[64];
    for (i = 0; i < NG; i++) x[i] = -87.3f + (88.0f + 87.3f) * (float)i / (float)(NG - 1);
    for (v = 0; v < nv; v++) {
        snprintf(label, sizeof label, "%s exp", var[v].name);
        var[v].vec_exp(NG, x, y);
        for (i = 0; i < NG; i++) {
            double want = exp((double)x[i]), tol = 1.5 * kt_ulp(want);
            if (!(fabs((double)y[i] - want) <= tol)) kt_fail(&fails[v], label, y[i], want, tol, (size_t)i);
        }
        if (v == 0) continue;                    /* libm: no clamping to check */
        memcpy(xe, edge, sizeof xe);
        var[v].vec_exp((size_t)ne, xe, ye);
        var[v].vec_exp(1, x88, e88);
        for (i = 0; i < ne; i++) {
            int ok = kt_finite(ye[i]) && ye[i] >= 0.0f;
            if (xe[i] < -87.33654f) ok = ok && ye[i] == 0.0f;
            else if (xe[i] >= 88.0f) ok = ok && ye[i] == e88[0];
            else ok = ok && fabs((double)ye[i] - exp((double)xe[i])) <= 1.5 * kt_ulp(exp((double)xe[i]));
            if (!ok) kt_fail(&fails[v], "exp edge", ye[i], exp((double)xe[i]), 0, (size_t)i);
        }
        var[v].vec_exp((size_t)ne, xe, xe);      /* in place */
        if (!kt_same_bits(xe, ye, (size_t)ne)) kt_fail(&fails[v], "exp in place differs", 0, 0, 0, 0);
    }
    kt_report("exp accuracy", fails);
    free(fails); free(x); free(y);
}

void test_kernels_sincos_accuracy(void)
{
    /* The sine and cosine of the embeddings, every variant, on 400001 points
       over [-4096, 4096], points next to multiples of pi/2 (where the
       reduction cancels) and small arguments: within 2.5e-7 of sin and cos
       in double (measured: 9.3e-8 for the own sine and cosine, 3.3e-8 for libm
       in "ref"), and within 2 ulp of the value for |x| < 0.78 (no reduction
       there); odd lengths, nothing outside [0, n) written. */
    enum { NG = 400001, NP = 4000, NS = 2000, N = NG + 2 * NP + NS };
    const dfn_kernel_variant *var;
    int nv = kt_variants(&var), v, i, len;
    kt_fails *fails = (kt_fails *)calloc((size_t)nv, sizeof(kt_fails));
    float *x = (float *)kt_alloc(N), *sn = (float *)kt_alloc(N + 1), *cs = (float *)kt_alloc(N + 1);
    double worst[16] = { 0 };
    char label[64];
    for (i = 0; i < NG; i++) x[i] = -4096.0f + 8192.0f * (float)i / (float)(NG - 1);
    for (i = 0; i < NP; i++) {                     /* the floats next to k pi/2 */
        float c = (float)((double)(i - NP / 2) * 1.3 * 1.5707963267948966);
        x[NG + 2 * i] = nextafterf(c, 1e9f);
        x[NG + 2 * i + 1] = nextafterf(c, -1e9f);
    }
    for (i = 0; i < NS; i++) x[NG + 2 * NP + i] = (i % 2 ? -1.0f : 1.0f) * ldexpf(1.0f, -(i % 60)) * (0.5f + (float)i / NS * 0.28f);
    for (v = 0; v < nv; v++) {
        snprintf(label, sizeof label, "%s sincos", var[v].name);
        sn[N] = cs[N] = 12345.0f;
        var[v].vec_sincos(N, x, sn, cs);
        for (i = 0; i < N; i++) {
            double ws = sin((double)x[i]), wc = cos((double)x[i]);
            double es = fabs((double)sn[i] - ws), ec = fabs((double)cs[i] - wc);
            if (v < 16) worst[v] = fmax(worst[v], fmax(es, ec));
            if (!(es <= 2.5e-7)) kt_fail(&fails[v], "sin", sn[i], ws, 2.5e-7, (size_t)i);
            if (!(ec <= 2.5e-7)) kt_fail(&fails[v], "cos", cs[i], wc, 2.5e-7, (size_t)i);
            if (fabs(x[i]) < 0.78 && !(es <= 2 * kt_ulp(ws)))
                kt_fail(&fails[v], "sin, small x", sn[i], ws, 2 * kt_ulp(ws), (size_t)i);
        }
        if (sn[N] != 12345.0f || cs[N] != 12345.0f) kt_fail(&fails[v], "wrote past n", 0, 0, 0, (size_t)N);
        for (len = 0; len <= 37; len++) {         /* every tail: the same values as the long call */
            float s2[40], c2[40];
            s2[len] = c2[len] = 12345.0f;
            var[v].vec_sincos((size_t)len, x + 1000 + len, s2, c2);
            if (s2[len] != 12345.0f || c2[len] != 12345.0f) kt_fail(&fails[v], "tail wrote past n", 0, 0, 0, (size_t)len);
            for (i = 0; i < len; i++)
                if (!kt_same_bits(s2 + i, sn + 1000 + len + i, 1) || !kt_same_bits(c2 + i, cs + 1000 + len + i, 1))
                    kt_fail(&fails[v], "tail differs", s2[i], sn[1000 + len + i], 0, (size_t)i);
        }
        if (getenv("DFN_TEST_VERBOSE") && v < 16) printf("    %s: max |error| %.3g\n", var[v].name, worst[v]);
    }
    kt_report("sincos accuracy", fails);
    free(fails); free(x); free(sn); free(cs);
}

void test_kernels_embedding_matches_formula(void)
{
    /* dfn_sinusoidal_embedding against its formula in double (u = scale v in
       float times f_k in float, as documented), for rows with small, large
       (> 4096: libm) and NaN arguments, an odd half-width above the 64-value
       block and ldo > dim: within 2.5e-7; NaN rows give NaN; padding
       between rows is untouched. */
    enum { n = 7, dim = 2 * 70, ldo = dim + 3 };
    float v[2 * n], out[n * ldo];
    const float vals[n] = { 0.0f, 1.0f, -3.25f, 999.0f, 5000.0f, -70000.0f, 0.0f };
    float scale = 1.5f;
    int i, k, h = dim / 2, bad = 0;
    double worst = 0;
    for (i = 0; i < n; i++) { v[2 * i] = vals[i]; v[2 * i + 1] = -1.0f; }
    v[2 * (n - 1)] = NAN;
    for (i = 0; i < n * ldo; i++) out[i] = 777.0f;
    dfn_sinusoidal_embedding(out, ldo, v, 2, scale, n, dim);
    for (i = 0; i < n; i++) {
        float a = scale * v[2 * i];
        for (k = 0; k < h; k++) {
            float f = (float)exp(-log(10000.0) * k / h), u = a * f;
            double es = fabs(out[i * ldo + k] - sin((double)u)), ec = fabs(out[i * ldo + h + k] - cos((double)u));
            if (i == n - 1) { bad += !isnan(out[i * ldo + k]) || !isnan(out[i * ldo + h + k]); continue; }
            worst = fmax(worst, fmax(es, ec));
            bad += !(es <= 2.5e-7 && ec <= 2.5e-7);
        }
        for (k = dim; k < ldo; k++) bad += out[i * ldo + k] != 777.0f;
    }
    CHECK(bad == 0, "%d values wrong; worst error %g", bad, worst);
    if (getenv("DFN_TEST_VERBOSE")) printf("    embedding: max |error| %.3g\n", worst);
}

void test_kernels_embedding_rows_alone(void)
{
    /* Each row of dfn_sinusoidal_embedding is the same, bit for bit, as that
       row embedded alone (short rows go several to one kernel call): 37
       rows of dim 32 and 6, with out-of-range (libm) and NaN rows among
       them, and the padding between rows untouched. */
    enum { n = 37, ldo = 40 };
    static const int dims[2] = { 32, 6 };
    float v[n], out[n * ldo], one[ldo];
    int i, k, d, bad = 0;
    dfn_rng rng;
    dfn_rng_seed(&rng, 37, 1);
    for (i = 0; i < n; i++) v[i] = kt_unif(&rng, -50.0f, 50.0f);
    v[5] = 5000.0f; v[6] = -3000.0f; v[17] = NAN; v[18] = -9000.0f; v[36] = 4096.0f;
    for (d = 0; d < 2; d++) {
        for (i = 0; i < n * ldo; i++) out[i] = 777.0f;
        dfn_sinusoidal_embedding(out, ldo, v, 1, 1.5f, n, dims[d]);
        for (i = 0; i < n; i++) {
            for (k = 0; k < ldo; k++) one[k] = 777.0f;
            dfn_sinusoidal_embedding(one, ldo, v + i, 1, 1.5f, 1, dims[d]);
            bad += !kt_same_bits(one, out + i * ldo, ldo);
        }
    }
    CHECK(bad == 0, "%d rows differ from the row embedded alone", bad);
}

void test_kernels_act_parity(void)
{
    /* Forward and backward of every activation, every variant against the
       reference, on every length, aligned and one float off, with the
       special inputs mixed in; in place must equal out of place bit for bit;
       nothing outside [0, n) is written; identity and ReLU are bit-identical
       to the reference. */
    const dfn_kernel_variant *var;
    int nv = kt_variants(&var), v, li, off, act;
    kt_fails *fails = (kt_fails *)calloc((size_t)nv, sizeof(kt_fails));
    size_t cap = 1000 + 2 * KT_GUARD + 2;
    float *x = (float *)kt_alloc(cap), *dy = (float *)kt_alloc(cap), *y = (float *)kt_alloc(cap);
    float *yr = (float *)kt_alloc(cap), *ip = (float *)kt_alloc(cap);
    dfn_rng rng;
    char label[96];
    dfn_rng_seed(&rng, 4242, 9);
    for (act = 0; act < 4; act++)
        for (li = 0; li < 8; li++)
            for (off = 0; off < 2; off++) {
                size_t n = kt_lengths[li], i;
                float *xs = x + off, *ys = y + KT_GUARD + off, *ips = ip + off;
                int exact = act == DFN_ACT_IDENTITY || act == DFN_ACT_RELU;
                kt_act_inputs(&rng, xs, n);
                for (i = 0; i < n; i++) dy[i] = kt_unif(&rng, -2.0f, 2.0f);
                for (v = 0; v < nv; v++) {
                    snprintf(label, sizeof label, "%s %s fwd n=%lu off=%d", var[v].name, kt_act_name(act), (unsigned long)n, off);
                    var[0].act_forward((dfn_activation)act, n, xs, yr);
                    kt_guard_set(ys, KT_GUARD, n);
                    var[v].act_forward((dfn_activation)act, n, xs, ys);
                    for (i = 0; i < n; i++) {
                        double tol = exact ? 0.0 : kt_act_tol_f(xs[i], yr[i]);
                        if (!kt_finite(ys[i]) || !(fabs((double)ys[i] - yr[i]) <= tol)
                            || (exact && !kt_same_bits(ys + i, yr + i, 1)))
                            kt_fail(&fails[v], label, ys[i], yr[i], tol, i);
                    }
                    if (kt_guard_bad(ys, KT_GUARD, n)) kt_fail(&fails[v], "act_forward wrote outside", 0, 0, 0, n);
                    memcpy(ips, xs, n * sizeof(float));
                    var[v].act_forward((dfn_activation)act, n, ips, ips);
                    if (!kt_same_bits(ips, ys, n)) kt_fail(&fails[v], "in-place forward differs", 0, 0, 0, n);

                    snprintf(label, sizeof label, "%s %s bwd n=%lu off=%d", var[v].name, kt_act_name(act), (unsigned long)n, off);
                    var[0].act_backward((dfn_activation)act, n, xs, dy, yr);
                    kt_guard_set(ys, KT_GUARD, n);
                    var[v].act_backward((dfn_activation)act, n, xs, dy, ys);
                    for (i = 0; i < n; i++) {
                        double tol = exact ? 0.0 : kt_act_tol_b(dy[i], yr[i]);
                        if (!kt_finite(ys[i]) || !(fabs((double)ys[i] - yr[i]) <= tol)
                            || (exact && !kt_same_bits(ys + i, yr + i, 1)))
                            kt_fail(&fails[v], label, ys[i], yr[i], tol, i);
                    }
                    if (kt_guard_bad(ys, KT_GUARD, n)) kt_fail(&fails[v], "act_backward wrote outside", 0, 0, 0, n);
                    memcpy(ips, dy, n * sizeof(float));
                    var[v].act_backward((dfn_activation)act, n, xs, ips, ips);
                    if (!kt_same_bits(ips, ys, n)) kt_fail(&fails[v], "in-place backward differs", 0, 0, 0, n);
                }
            }
    kt_report("activation parity", fails);
    free(fails); free(x); free(dy); free(y); free(yr); free(ip);
}

void test_kernels_act_accuracy_double(void)
{
    /* Every variant, the reference included, against exact math in double
       on a dense grid over [-12, 12] plus the special inputs: the forward
       against the formula, the backward (dy = 1) against the analytic
       derivative and, independently, against central finite differences of
       the double forward (h = 1e-3: truncation error about 2e-7). The
       reference (float libm, tanh form) gets the loose parity tolerances,
       the variants with the library's own exp the tight ones. */
    enum { NG = 12001 };
    const dfn_kernel_variant *var;
    int nv = kt_variants(&var), v, act, i;
    kt_fails *fails = (kt_fails *)calloc((size_t)nv, sizeof(kt_fails));
    int n = NG + KT_NSPECIAL;
    float *x = (float *)kt_alloc((size_t)n), *y = (float *)kt_alloc((size_t)n), *one = (float *)kt_alloc((size_t)n);
    char label[64];
    for (i = 0; i < NG; i++) x[i] = -12.0f + 24.0f * (float)i / (float)(NG - 1);
    for (i = 0; i < KT_NSPECIAL; i++) x[NG + i] = kt_special[i];
    kt_fill_value(one, (size_t)n, 1.0f);
    for (act = 0; act < 4; act++)
        for (v = 0; v < nv; v++) {
            var[v].act_forward((dfn_activation)act, (size_t)n, x, y);
            snprintf(label, sizeof label, "%s %s forward vs double", var[v].name, kt_act_name(act));
            for (i = 0; i < n; i++) {
                double want = kt_act_d(act, x[i]);
                double tol = v == 0 ? kt_act_tol_f(x[i], want) : kt_act_tol_own_f(act, x[i], want);
                if (!(fabs((double)y[i] - want) <= tol)) kt_fail(&fails[v], label, y[i], want, tol, (size_t)i);
            }
            var[v].act_backward((dfn_activation)act, (size_t)n, x, one, y);
            snprintf(label, sizeof label, "%s %s backward vs double", var[v].name, kt_act_name(act));
            for (i = 0; i < n; i++) {
                double want = kt_act_grad_d(act, x[i]);
                double tol = v == 0 ? kt_act_tol_b(1.0f, want) : kt_act_tol_own_b(want);
                if (!(fabs((double)y[i] - want) <= tol)) kt_fail(&fails[v], label, y[i], want, tol, (size_t)i);
            }
            snprintf(label, sizeof label, "%s %s backward vs finite differences", var[v].name, kt_act_name(act));
            for (i = 0; i < NG; i++) {
                double xd = x[i], h = 1e-3, fd, tol;
                if (act == DFN_ACT_RELU && fabs(xd) < 2 * h) continue;   /* the kink */
                fd = (kt_act_d(act, xd + h) - kt_act_d(act, xd - h)) / (2 * h);
                tol = 4e-6 * fabs(fd) + 2e-6;
                if (!(fabs((double)y[i] - fd) <= tol)) kt_fail(&fails[v], label, y[i], fd, tol, (size_t)i);
            }
            /* ReLU'(0) = 0 and f(0) = 0 */
            {
                float z[2] = { 0.0f, -0.0f }, d[2] = { 1.0f, 1.0f }, o[2];
                var[v].act_forward((dfn_activation)act, 2, z, o);
                if (o[0] != 0.0f || o[1] != 0.0f) kt_fail(&fails[v], "f(0) != 0", o[0], 0, 0, 0);
                var[v].act_backward((dfn_activation)act, 2, z, d, o);
                if (act == DFN_ACT_RELU && (o[0] != 0.0f || o[1] != 0.0f)) kt_fail(&fails[v], "relu'(0) != 0", o[0], 0, 0, 0);
            }
        }
    kt_report("activation accuracy", fails);
    free(fails); free(x); free(y); free(one);
}

void test_kernels_act_large_inputs(void)
{
    /* Finite in, finite out, with the exact limits: f(x) = x and f'(x) = 1
       for x >= 20, |f(x)| and |f'(x)| <= 1e-30 for x <= -100 (ReLU, SiLU,
       GELU; SiLU(-20) is still -4e-8); identity passes everything through. */
    static const float big[] = { 20.0f, 43.5f, 88.5f, 100.0f, 1e4f, 1e10f, 1e20f, 1e30f, 3.4e38f };
    const dfn_kernel_variant *var;
    int nv = kt_variants(&var), v, act, i, nb = (int)(sizeof big / sizeof big[0]);
    float x[2 * 9 + 1], y[2 * 9 + 1], dy[2 * 9 + 1], d[2 * 9 + 1];
    for (i = 0; i < nb; i++) { x[i] = big[i]; x[nb + i] = -big[i]; }
    x[2 * nb] = -1e-40f;
    for (i = 0; i <= 2 * nb; i++) dy[i] = 1.0f;
    for (v = 0; v < nv; v++)
        for (act = 0; act < 4; act++) {
            int bad = 0;
            var[v].act_forward((dfn_activation)act, (size_t)(2 * nb + 1), x, y);
            var[v].act_backward((dfn_activation)act, (size_t)(2 * nb + 1), x, dy, d);
            for (i = 0; i <= 2 * nb; i++) bad += !kt_finite(y[i]) || !kt_finite(d[i]);
            CHECK(bad == 0, "%s %s: %d non-finite outputs", var[v].name, kt_act_name(act), bad);
            for (i = 0; i < nb; i++) {
                int neg_ok = act == DFN_ACT_IDENTITY ? y[nb + i] == x[nb + i] && d[nb + i] == 1.0f
                           : big[i] < 100.0f || (fabs(y[nb + i]) <= 1e-30 && fabs(d[nb + i]) <= 1e-30);
                CHECK(y[i] == x[i] && d[i] == 1.0f, "%s %s at %g: f = %.9g, f' = %.9g", var[v].name,
                      kt_act_name(act), (double)x[i], (double)y[i], (double)d[i]);
                CHECK(neg_ok, "%s %s at %g: f = %.9g, f' = %.9g", var[v].name, kt_act_name(act),
                      (double)x[nb + i], (double)y[nb + i], (double)d[nb + i]);
            }
        }
}

void test_kernels_elementwise_invariance(void)
{
    /* An element's result does not depend on where it sits: every element of
       a 37-long array (unaligned) equals the same element computed alone. */
    enum { N = 37 };
    const dfn_kernel_variant *var;
    int nv = kt_variants(&var), v, act, i;
    float x[N + 1], dy[N + 1], y[N + 1], d[N + 1], ax[N + 1], one[2], o[2];
    dfn_rng rng;
    dfn_rng_seed(&rng, 6, 6);
    kt_act_inputs(&rng, x + 1, N);
    for (i = 0; i < N; i++) { dy[i + 1] = kt_unif(&rng, -2.0f, 2.0f); ax[i + 1] = kt_mixed(&rng); }
    for (v = 0; v < nv; v++) {
        int bad = 0;
        for (act = 0; act < 4; act++) {
            var[v].act_forward((dfn_activation)act, N, x + 1, y + 1);
            var[v].act_backward((dfn_activation)act, N, x + 1, dy + 1, d + 1);
            for (i = 0; i < N; i++) {
                var[v].act_forward((dfn_activation)act, 1, x + 1 + i, o);
                bad += !kt_same_bits(o, y + 1 + i, 1);
                var[v].act_backward((dfn_activation)act, 1, x + 1 + i, dy + 1 + i, o);
                bad += !kt_same_bits(o, d + 1 + i, 1);
            }
        }
        memcpy(y + 1, ax + 1, N * sizeof(float));
        var[v].vec_axpy(N, 0.37f, x + 1, y + 1);
        for (i = 0; i < N; i++) {
            one[0] = ax[1 + i];
            var[v].vec_axpy(1, 0.37f, x + 1 + i, one);
            bad += !kt_same_bits(one, y + 1 + i, 1);
        }
        CHECK(bad == 0, "%s: %d elements depend on their position", var[v].name, bad);
    }
}

void test_kernels_bias_act_fused(void)
{
    /* dfn_bias_act_forward = dfn_bias_add then dfn_act_forward, bit for bit;
       in place (y == pre) gives the same y; bias NULL adds nothing. */
    enum { R = 5, C = 37 };
    float pre0[R * C], pre[R * C], y[R * C], pre2[R * C], y2[R * C], bias[C];
    int act, i;
    dfn_rng rng;
    dfn_rng_seed(&rng, 12, 1);
    for (i = 0; i < R * C; i++) pre0[i] = kt_unif(&rng, -6.0f, 6.0f);
    for (i = 0; i < C; i++) bias[i] = kt_unif(&rng, -1.0f, 1.0f);
    for (act = 0; act < 4; act++) {
        memcpy(pre, pre0, sizeof pre);
        dfn_bias_act_forward(R, C, bias, (dfn_activation)act, pre, y);
        memcpy(pre2, pre0, sizeof pre);
        dfn_bias_add(R, C, pre2, bias);
        dfn_act_forward((dfn_activation)act, R * C, pre2, y2);
        CHECK(kt_same_bits(pre, pre2, R * C), "%s: pre differs from bias_add", kt_act_name(act));
        CHECK(kt_same_bits(y, y2, R * C), "%s: y differs from act_forward(bias_add)", kt_act_name(act));
        memcpy(pre, pre0, sizeof pre);
        dfn_bias_act_forward(R, C, bias, (dfn_activation)act, pre, pre);
        CHECK(kt_same_bits(pre, y2, R * C), "%s: in place differs", kt_act_name(act));
        memcpy(pre, pre0, sizeof pre);
        dfn_bias_act_forward(R, C, NULL, (dfn_activation)act, pre, y);
        dfn_act_forward((dfn_activation)act, R * C, pre0, y2);
        CHECK(kt_same_bits(pre, pre0, R * C) && kt_same_bits(y, y2, R * C), "%s: NULL bias", kt_act_name(act));
    }
    dfn_bias_act_forward(0, C, bias, DFN_ACT_GELU, NULL, NULL);
}

void test_kernels_dispatch_matches_simd_name(void)
{
    /* The public functions give the bits of the variant dfn_simd_name()
       names, on data where the variants round differently. */
    enum { M = 33, N = 29, K = 70, L = 777 };
    const dfn_kernel_variant *var;
    int vi = kt_find_variant(dfn_simd_name()), t, i, act;
    float *work = (float *)kt_alloc(dfn_gemm_work_size() / sizeof(float) + 1);
    float A[M * K], B[K * N], C[M * N], C2[M * N], x[L], y[L], y2[L], dy[L];
    const dfn_kernel_variant *k;
    dfn_rng rng;
    kt_variants(&var);
    CHECK(vi >= 0, "dfn_simd_name() = %s is not a compiled variant", dfn_simd_name());
    if (vi < 0) { free(work); return; }
    k = &var[vi];
    dfn_rng_seed(&rng, 3, 3);
    for (i = 0; i < M * K; i++) A[i] = kt_unif(&rng, -1.0f, 1.0f);
    for (i = 0; i < K * N; i++) B[i] = kt_unif(&rng, -1.0f, 1.0f);
    for (i = 0; i < L; i++) { x[i] = kt_unif(&rng, -6.0f, 6.0f); dy[i] = kt_unif(&rng, -1.0f, 1.0f); }
    for (t = 0; t < 4; t++) {
        int ta = t >> 1, tb = t & 1;
        for (i = 0; i < M * N; i++) C[i] = C2[i] = (float)i;
        dfn_gemm(ta, tb, M, N, K, 0.5f, A, ta ? M : K, B, tb ? K : N, 1.0f, C, N, work);
        k->gemm(ta, tb, M, N, K, 0.5f, A, ta ? M : K, B, tb ? K : N, 1.0f, C2, N, work);
        CHECK(kt_same_bits(C, C2, M * N), "dfn_gemm ta=%d tb=%d differs from %s", ta, tb, k->name);
    }
    CHECK(dfn_vec_dot(L, x, dy) == k->vec_dot(L, x, dy), "dfn_vec_dot differs from %s", k->name);
    CHECK(dfn_vec_sum_sq(L, x) == k->vec_sum_sq(L, x), "dfn_vec_sum_sq differs from %s", k->name);
    memcpy(y, dy, sizeof y); memcpy(y2, dy, sizeof y);
    dfn_vec_axpy(L, 0.3f, x, y);
    k->vec_axpy(L, 0.3f, x, y2);
    CHECK(kt_same_bits(y, y2, L), "dfn_vec_axpy differs from %s", k->name);
    dfn_vec_scale(L, 0.3f, y);
    k->vec_scale(L, 0.3f, y2);
    CHECK(kt_same_bits(y, y2, L), "dfn_vec_scale differs from %s", k->name);
    for (act = 0; act < 4; act++) {
        dfn_act_forward((dfn_activation)act, L, x, y);
        k->act_forward((dfn_activation)act, L, x, y2);
        CHECK(kt_same_bits(y, y2, L), "dfn_act_forward %s differs from %s", kt_act_name(act), k->name);
        dfn_act_backward((dfn_activation)act, L, x, dy, y);
        k->act_backward((dfn_activation)act, L, x, dy, y2);
        CHECK(kt_same_bits(y, y2, L), "dfn_act_backward %s differs from %s", kt_act_name(act), k->name);
    }
    memcpy(y, x, sizeof y); memcpy(y2, x, sizeof y);
    dfn_bias_add(21, 37, y, dy);
    k->bias_add(21, 37, y2, dy);
    CHECK(kt_same_bits(y, y2, 21 * 37), "dfn_bias_add differs from %s", k->name);
    memcpy(y, dy, 37 * sizeof(float)); memcpy(y2, dy, 37 * sizeof(float));
    dfn_bias_grad(21, 37, x, y);
    k->bias_grad(21, 37, x, y2);
    CHECK(kt_same_bits(y, y2, 37), "dfn_bias_grad differs from %s", k->name);
    free(work);
}

void test_kernels_adam_parity(void)
{
    /* dfn_adam_update on every W - 1, W, W + 1 and odd lengths up to 333,
       aligned and one float off, with and without ema, on values from
       denormals to 1e30 under four coefficient sets: every variant gives
       the bits of "scalar" and writes nothing outside [0, n); "ref"
       (double) is within the rounding bound of the float formula. */
    static const size_t lens[] = { 0, 1, 2, 3, 4, 5, 7, 8, 9, 15, 16, 17, 31, 32, 33, 47,
                                   63, 64, 65, 101, 127, 128, 129, 191, 255, 257, 333 };
    enum { NMAX = 333, CAP = NMAX + 2 * KT_GUARD + 1 };
    const dfn_kernel_variant *var;
    int nv = kt_variants(&var), v, ci, li, off, with_ema;
    kt_fails *fails = (kt_fails *)calloc((size_t)nv, sizeof(kt_fails));
    float *g0 = (float *)kt_alloc(NMAX), *m0 = (float *)kt_alloc(NMAX), *v0 = (float *)kt_alloc(NMAX);
    float *p0 = (float *)kt_alloc(NMAX), *e0 = (float *)kt_alloc(NMAX);
    float *ms = (float *)kt_alloc(NMAX), *vs = (float *)kt_alloc(NMAX), *ps = (float *)kt_alloc(NMAX);
    float *es = (float *)kt_alloc(NMAX), *gb = (float *)kt_alloc(CAP);
    float *mb = (float *)kt_alloc(CAP), *vb = (float *)kt_alloc(CAP), *pb = (float *)kt_alloc(CAP);
    float *eb = (float *)kt_alloc(CAP);
    dfn_rng rng;
    char label[128];
    dfn_rng_seed(&rng, 77, 5);
    for (ci = 0; ci < 4; ci++)
        for (li = 0; li < (int)(sizeof lens / sizeof lens[0]); li++)
            for (off = 0; off < 2; off++)
                for (with_ema = 0; with_ema < 2; with_ema++) {
                    const dfn_adam_coefs *c = &kt_adam_coefs[ci];
                    size_t n = lens[li], i;
                    float *gw = gb + KT_GUARD + off, *mw = mb + KT_GUARD + off, *vw = vb + KT_GUARD + off;
                    float *pw = pb + KT_GUARD + off, *ew = eb + KT_GUARD + off;
                    kt_adam_inputs(&rng, g0, m0, v0, p0, e0, n);
                    memcpy(ms, m0, n * sizeof(float)); memcpy(vs, v0, n * sizeof(float));
                    memcpy(ps, p0, n * sizeof(float)); memcpy(es, e0, n * sizeof(float));
                    var[1].adam(n, ps, ms, vs, g0, with_ema ? es : NULL, c);
                    for (v = 0; v < nv; v++) {
                        snprintf(label, sizeof label, "%s coefs %d n=%lu off=%d ema=%d", var[v].name, ci,
                                 (unsigned long)n, off, with_ema);
                        kt_guard_set(gw, KT_GUARD, n); kt_guard_set(mw, KT_GUARD, n);
                        kt_guard_set(vw, KT_GUARD, n); kt_guard_set(pw, KT_GUARD, n);
                        kt_guard_set(ew, KT_GUARD, n);
                        memcpy(gw, g0, n * sizeof(float)); memcpy(mw, m0, n * sizeof(float));
                        memcpy(vw, v0, n * sizeof(float)); memcpy(pw, p0, n * sizeof(float));
                        memcpy(ew, e0, n * sizeof(float));
                        var[v].adam(n, pw, mw, vw, gw, with_ema ? ew : NULL, c);
                        if (kt_guard_bad(gw, KT_GUARD, n) || kt_guard_bad(mw, KT_GUARD, n)
                            || kt_guard_bad(vw, KT_GUARD, n) || kt_guard_bad(pw, KT_GUARD, n)
                            || kt_guard_bad(ew, KT_GUARD, n))
                            kt_fail(&fails[v], "adam wrote outside", 0, 0, 0, n);
                        if (!kt_same_bits(gw, g0, n)) kt_fail(&fails[v], "adam wrote g", 0, 0, 0, n);
                        if (!with_ema && !kt_same_bits(ew, e0, n)) kt_fail(&fails[v], "adam wrote ema", 0, 0, 0, n);
                        if (v == 0) {             /* ref: within the bound of the float formula */
                            for (i = 0; i < n; i++) {
                                kt_adam_want w;
                                kt_adam_exact(c, g0[i], m0[i], v0[i], p0[i], e0[i], &w);
                                if (!(fabs((double)mw[i] - ms[i]) <= w.tm)) kt_fail(&fails[v], label, mw[i], ms[i], w.tm, i);
                                if (!(fabs((double)vw[i] - vs[i]) <= w.tv)) kt_fail(&fails[v], label, vw[i], vs[i], w.tv, i);
                                if (!(fabs((double)pw[i] - ps[i]) <= w.tp)) kt_fail(&fails[v], label, pw[i], ps[i], w.tp, i);
                                if (with_ema && !(fabs((double)ew[i] - es[i]) <= w.te))
                                    kt_fail(&fails[v], label, ew[i], es[i], w.te, i);
                            }
                        } else {                  /* the others: the bits of scalar */
                            const float *got[4], *want[4];
                            static const char *names[4] = { "m", "v", "p", "ema" };
                            int a;
                            got[0] = mw; got[1] = vw; got[2] = pw; got[3] = ew;
                            want[0] = ms; want[1] = vs; want[2] = ps; want[3] = es;
                            for (a = 0; a < 3 + with_ema; a++)
                                for (i = 0; i < n; i++)
                                    if (!kt_same_bits(got[a] + i, want[a] + i, 1)) {
                                        char what[160];
                                        snprintf(what, sizeof what, "%s: %s", label, names[a]);
                                        kt_fail(&fails[v], what, got[a][i], want[a][i], 0, i);
                                        break;
                                    }
                        }
                    }
                }
    kt_report("adam parity", fails);
    free(fails); free(g0); free(m0); free(v0); free(p0); free(e0); free(ms); free(vs); free(ps); free(es);
    free(gb); free(mb); free(vb); free(pb); free(eb);
}

void test_kernels_adam_formula_and_dispatch(void)
{
    /* "scalar" is the documented formula in the documented order (the loop
       written out here, in float, without contraction); on data where
       every operation is exact each variant gives the hand-computed values
       in every lane; dfn_adam_update gives the bits of the variant
       dfn_simd_name() names; n = 0 touches nothing. */
    enum { N = 261 };
    const dfn_kernel_variant *var;
    int nv = kt_variants(&var), vi = kt_find_variant(dfn_simd_name()), v, ci, bad;
    float g[N], m0[N], v0[N], p0[N], e0[N], m[N], vv[N], p[N], e[N], m2[N], v2[N], p2[N], e2[N];
    dfn_rng rng;
    size_t i;
    dfn_rng_seed(&rng, 78, 1);
    for (ci = 0; ci < 4; ci++) {
        const dfn_adam_coefs *c = &kt_adam_coefs[ci];
        kt_adam_inputs(&rng, g, m0, v0, p0, e0, N);
        memcpy(m, m0, sizeof m); memcpy(vv, v0, sizeof vv); memcpy(p, p0, sizeof p); memcpy(e, e0, sizeof e);
        {
#if defined(__clang__)
#  pragma STDC FP_CONTRACT OFF
#endif
            float ob1 = 1.0f - c->beta1, ob2 = 1.0f - c->beta2, od = 1.0f - c->ema_decay;
            for (i = 0; i < N; i++) {
                float gi = g[i] * c->grad_scale, t;
                m[i] = c->beta1 * m[i] + ob1 * gi;
                t = ob2 * gi;
                vv[i] = c->beta2 * vv[i] + t * gi;
                t = c->step_size * m[i];
                t = t / (sqrtf(vv[i] * c->v_scale) + c->eps);
                p[i] = p[i] - (t + c->decay * p[i]);
                e[i] = c->ema_decay * e[i] + od * p[i];
            }
        }
        memcpy(m2, m0, sizeof m); memcpy(v2, v0, sizeof vv); memcpy(p2, p0, sizeof p); memcpy(e2, e0, sizeof e);
        var[1].adam(N, p2, m2, v2, g, e2, c);
        CHECK(kt_same_bits(m, m2, N) && kt_same_bits(vv, v2, N) && kt_same_bits(p, p2, N) && kt_same_bits(e, e2, N),
              "coefs %d: scalar differs from the formula written out", ci);
        if (vi >= 0) {
            memcpy(m, m0, sizeof m); memcpy(vv, v0, sizeof vv); memcpy(p, p0, sizeof p); memcpy(e, e0, sizeof e);
            dfn_adam_update(N, p, m, vv, g, e, c);
            memcpy(m2, m0, sizeof m); memcpy(v2, v0, sizeof vv); memcpy(p2, p0, sizeof p); memcpy(e2, e0, sizeof e);
            var[vi].adam(N, p2, m2, v2, g, e2, c);
            CHECK(kt_same_bits(m, m2, N) && kt_same_bits(vv, v2, N) && kt_same_bits(p, p2, N) && kt_same_bits(e, e2, N),
                  "coefs %d: dfn_adam_update differs from %s", ci, var[vi].name);
        }
    }
    CHECK(vi >= 0, "dfn_simd_name() = %s is not a compiled variant", dfn_simd_name());
    /* Exact: gi = 2 * 0.5 = 1; m = 0.5 * 4 + 0.5 = 2.5; v = 0.75 * 16 + 0.25 = 12.25;
       sqrt(12.25 * 4) + 1 = 8; p = 8 - (16 * 2.5 / 8 + 0.25 * 8) = 1; ema = 0.5 * 3 + 0.5 * 1 = 2. */
    for (v = 0; v < nv; v++) {
        dfn_adam_coefs c = { 0.5f, 0.75f, 16.0f, 4.0f, 1.0f, 0.25f, 0.5f, 0.5f };
        for (i = 0; i < 37; i++) { g[i] = 2.0f; m[i] = 4.0f; vv[i] = 16.0f; p[i] = 8.0f; e[i] = 3.0f; }
        var[v].adam(37, p, m, vv, g, e, &c);
        for (bad = 0, i = 0; i < 37; i++)
            bad += m[i] != 2.5f || vv[i] != 12.25f || p[i] != 1.0f || e[i] != 2.0f;
        CHECK(bad == 0, "%s: %d of 37 elements differ from the exact values (first: m %g v %g p %g ema %g)",
              var[v].name, bad, (double)m[0], (double)vv[0], (double)p[0], (double)e[0]);
        var[v].adam(0, NULL, NULL, NULL, NULL, NULL, &c);
    }
    dfn_adam_update(0, NULL, NULL, NULL, NULL, NULL, NULL);
}
