/* RNG: PCG32 against its published reference sequence and a second, plainly
   written implementation; the fixed-point normal generator against a double
   precision Box-Muller computed here with libm; moments and tails. */
#include <math.h>
#include <stdint.h>
#include <string.h>
#include "harness.h"
#include "../diffusion.h"

/* PCG32 exactly as the paper writes it (pcg32_random_r / pcg32_srandom_r). */
typedef struct { uint64_t state, inc; } ref_pcg;

static uint32_t ref_pcg_next(ref_pcg *r)
{
    uint64_t old = r->state;
    uint32_t xs, rot;
    r->state = old * UINT64_C(6364136223846793005) + (r->inc | 1u);
    xs = (uint32_t)(((old >> 18u) ^ old) >> 27u);
    rot = (uint32_t)(old >> 59u);
    return (xs >> rot) | (xs << ((-rot) & 31u));
}

static void ref_pcg_seed(ref_pcg *r, uint64_t initstate, uint64_t initseq)
{
    r->state = 0u;
    r->inc = (initseq << 1u) | 1u;
    ref_pcg_next(r);
    r->state += initstate;
    ref_pcg_next(r);
}

void test_rng_pcg32_reference(void)
{
    /* The first outputs of the PCG32 reference demo for seed 42, stream 54. */
    static const uint32_t published[6] = {
        0xa15c02b7u, 0x7b47f409u, 0xba1d3330u, 0x83d2f293u, 0xbfa4784bu, 0xcbed606eu
    };
    static const uint64_t seeds[3][2] = { {42, 54}, {1, 2}, {UINT64_C(0xdeadbeefcafe), 7} };
    dfn_rng rng;
    ref_pcg ref;
    int i, s, mismatches = 0;
    dfn_rng_seed(&rng, 42, 54);
    for (i = 0; i < 6; i++) {
        uint32_t v = dfn_rng_u32(&rng);
        CHECK(v == published[i], "output %d: %08x, reference %08x", i, (unsigned)v, (unsigned)published[i]);
    }
    for (s = 0; s < 3; s++) {
        dfn_rng_seed(&rng, seeds[s][0], seeds[s][1]);
        ref_pcg_seed(&ref, seeds[s][0], seeds[s][1]);
        for (i = 0; i < 10000; i++) mismatches += dfn_rng_u32(&rng) != ref_pcg_next(&ref);
    }
    CHECK(mismatches == 0, "%d outputs differ from the plain implementation", mismatches);
}

void test_rng_normal_matches_box_muller(void)
{
    /* Each pair from u32 draws a, b: u1 = (a + 1) / 2^32, theta = 2 pi b / 2^32,
       z0 = sqrt(-2 ln u1) cos theta, z1 = sqrt(-2 ln u1) sin theta. The
       fixed-point version is accurate to about 1e-8 relative; allow 2e-6
       absolute (float spacing at 6.7 is 4.8e-7). */
    dfn_rng rng;
    ref_pcg ref;
    int i, bad = 0;
    double worst = 0.0;
    dfn_rng_seed(&rng, 2024, 11);
    ref_pcg_seed(&ref, 2024, 11);
    for (i = 0; i < 200000; i++) {
        uint32_t a = ref_pcg_next(&ref), b = ref_pcg_next(&ref);
        double u1 = ((double)a + 1.0) / 4294967296.0;
        double th = 2.0 * 3.14159265358979323846 * (double)b / 4294967296.0;
        double r = sqrt(-2.0 * log(u1));
        float z0 = dfn_rng_normal(&rng), z1 = dfn_rng_normal(&rng);
        double e0 = fabs(z0 - r * cos(th)), e1 = fabs(z1 - r * sin(th));
        if (e0 > worst) worst = e0;
        if (e1 > worst) worst = e1;
        if (e0 > 2e-6 || e1 > 2e-6) bad++;
    }
    CHECK(bad == 0, "%d of 200000 pairs differ by more than 2e-6 (worst %.3g)", bad, worst);
    /* The documented bound: u1 >= 2^-32 gives |z| <= sqrt(64 ln 2) = 6.66. */
    {
        dfn_rng probe;
        int beyond = 0;
        dfn_rng_seed(&probe, 99, 1);
        for (i = 0; i < 1000000; i++) beyond += fabsf(dfn_rng_normal(&probe)) > 6.67f;
        CHECK(beyond == 0, "%d normals beyond the documented bound 6.67", beyond);
    }
}

void test_rng_normal_split_invariance(void)
{
    /* Filling 3 then 5 values, or 8 singles, equals filling 8 at once;
       fills of any length equal single draws. */
    dfn_rng a, b, c;
    float all[8], part[8], single[8];
    int i;
    dfn_rng_seed(&a, 5, 5);
    dfn_rng_seed(&b, 5, 5);
    dfn_rng_seed(&c, 5, 5);
    dfn_rng_normal_fill(&a, all, 8);
    dfn_rng_normal_fill(&b, part, 3);
    dfn_rng_normal_fill(&b, part + 3, 5);
    for (i = 0; i < 8; i++) single[i] = dfn_rng_normal(&c);
    CHECK(memcmp(all, part, sizeof all) == 0, "3 + 5 differs from 8");
    CHECK(memcmp(all, single, sizeof all) == 0, "8 singles differ from 8");
    dfn_rng_normal_fill(&a, NULL, 0);   /* n = 0 is a no-op */
    CHECK(a.state == b.state, "empty fill moved the state");
    {
        /* long fills (four pairs at a time inside) against single draws,
           starting with and without a spare, for every length to 41 */
        float big[41], one[41];
        int n, start;
        for (start = 0; start < 2; start++)
            for (n = 0; n <= 41; n++) {
                dfn_rng_seed(&a, 6, (uint64_t)n);
                dfn_rng_seed(&c, 6, (uint64_t)n);
                if (start) { (void)dfn_rng_normal(&a); (void)dfn_rng_normal(&c); }
                dfn_rng_normal_fill(&a, big, (size_t)n);
                for (i = 0; i < n; i++) one[i] = dfn_rng_normal(&c);
                CHECK(n == 0 || memcmp(big, one, sizeof(float) * (size_t)n) == 0, "fill of %d (spare %d) differs", n, start);
                CHECK(a.state == c.state && a.has_spare == c.has_spare, "fill of %d (spare %d): another rng state", n, start);
            }
    }
}

void test_rng_normal_moments(void)
{
    /* 2^20 normals: mean, variance, skewness, kurtosis, a tail probability and
       the Kolmogorov-Smirnov distance, each within about 5 standard errors. */
    enum { N = 1 << 20 };
    static float z[N];
    dfn_rng rng;
    double m1 = 0, m2 = 0, m3 = 0, m4 = 0, tail = 0, ks = 0;
    int i, j, counts[64] = {0};
    dfn_rng_seed(&rng, 7, 3);
    dfn_rng_normal_fill(&rng, z, N);
    for (i = 0; i < N; i++) {
        double v = z[i];
        m1 += v; m2 += v * v; m3 += v * v * v; m4 += v * v * v * v;
        tail += fabs(v) > 2.0;
    }
    m1 /= N; m2 /= N; m3 /= N; m4 /= N; tail /= N;
    CHECK(fabs(m1) < 5.0 / sqrt((double)N), "mean %g", m1);
    CHECK(fabs(m2 - 1.0) < 5.0 * sqrt(2.0 / N), "variance %g", m2);
    CHECK(fabs(m3) < 5.0 * sqrt(6.0 / N), "third moment %g", m3);
    CHECK(fabs(m4 - 3.0) < 5.0 * sqrt(96.0 / N), "fourth moment %g", m4);
    CHECK(fabs(tail - 0.0455002639) < 5.0 * sqrt(0.0455 * 0.9545 / N), "P(|z| > 2) = %g", tail);
    /* KS on a grid of 64 cells over [-4, 4]: max |F_n - Phi| at cell edges. */
    for (i = 0; i < N; i++) {
        int c = (int)floor((z[i] + 4.0) * 8.0);
        if (c >= 0 && c < 64) counts[c]++;
    }
    {
        double below = 0;
        for (i = 0; i < N; i++) below += z[i] < -4.0f;
        for (j = 0; j < 64; j++) {
            double edge = -4.0 + (j + 1) / 8.0, phi = 0.5 * erfc(-edge / sqrt(2.0)), d;
            below += counts[j];
            d = fabs(below / N - phi);
            if (d > ks) ks = d;
        }
    }
    CHECK(ks < 1.63 / sqrt((double)N), "KS distance %g (1%% critical value %g)", ks, 1.63 / sqrt((double)N));
}

void test_rng_uniform_and_below(void)
{
    enum { N = 300000 };
    dfn_rng rng;
    ref_pcg ref;
    int i, out_of_range = 0, mismatch = 0, counts[3] = {0, 0, 0};
    double mean = 0, chi2 = 0;
    dfn_rng_seed(&rng, 3, 9);
    ref_pcg_seed(&ref, 3, 9);
    for (i = 0; i < N; i++) {
        float u = dfn_rng_uniform(&rng);
        /* the top 24 bits of a draw, scaled by 2^-24 */
        mismatch += u != (float)((double)(ref_pcg_next(&ref) >> 8) / 16777216.0);
        out_of_range += !(u >= 0.0f && u < 1.0f);
        mean += u;
    }
    mean /= N;
    CHECK(mismatch == 0, "%d uniforms differ from top-24-bits / 2^24", mismatch);
    CHECK(out_of_range == 0, "%d uniforms outside [0, 1)", out_of_range);
    CHECK(fabs(mean - 0.5) < 5.0 * sqrt(1.0 / 12.0 / N), "mean %g", mean);
    for (i = 0; i < N; i++) counts[dfn_rng_below(&rng, 3)]++;
    for (i = 0; i < 3; i++) chi2 += (counts[i] - N / 3.0) * (counts[i] - N / 3.0) / (N / 3.0);
    CHECK(chi2 < 13.8, "chi-square %g over 3 cells (0.1%% critical value 13.8)", chi2);
    CHECK(dfn_rng_below(&rng, 0) == 0 && dfn_rng_below(&rng, 1) == 0, "bound 0 or 1 must give 0");
    {
        /* a bound above 2^31 exercises the rejection branch */
        uint32_t big = 3000000000u, v, maxv = 0;
        for (i = 0; i < 1000; i++) { v = dfn_rng_below(&rng, big); if (v > maxv) maxv = v; }
        CHECK(maxv < big && maxv > big / 2, "max %u of 1000 draws below %u", (unsigned)maxv, (unsigned)big);
    }
}
