/* Data area: the 2D toy data sets (moments, determinism, shapes, and a
   second implementation written here from the documentation with libm),
   the text parser (formats, every error, bounds, against strtof), RBF MMD^2
   against a direct double-precision sum, CRC-32, the little-endian byte
   buffers (unity build only: they are static) and whole-file I/O in /tmp. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "harness.h"
#include "../diffusion.h"

#define TD_PI 3.14159265358979323846

/* ------------------------------------------------------------------------- */
/*  2D data sets                                                             */
/* ------------------------------------------------------------------------- */

/* The raw mean and std of each data set, from the closed forms of the API
   documentation, computed here in double. */
static void td_moments(dfn_data2d kind, double m[2], double sd[2])
{
    double L = 3.0 * TD_PI;
    m[0] = m[1] = 0.0;
    sd[0] = sd[1] = 1.0;
    switch (kind) {
    case DFN_DATA2D_MOONS:
        m[0] = 0.5; m[1] = 0.25;
        sd[0] = sqrt(0.75 + 0.01);
        sd[1] = sqrt(0.625 - 1.0 / TD_PI - 0.0625 + 0.01);
        break;
    case DFN_DATA2D_SWISS_ROLL:
        m[0] = 2.0; m[1] = 2.0 / (3.0 * TD_PI);
        sd[0] = sqrt(39.0 * TD_PI * TD_PI / 8.0 - 0.25 - 4.0 + 1.0);
        sd[1] = sqrt(39.0 * TD_PI * TD_PI / 8.0 + 0.25 - m[1] * m[1] + 1.0);
        break;
    case DFN_DATA2D_CHECKERBOARD:
        sd[0] = sd[1] = sqrt(4.0 / 3.0);
        break;
    case DFN_DATA2D_CIRCLES:
        sd[0] = sd[1] = sqrt(5.0 / 16.0 + 0.08 * 0.08);
        break;
    case DFN_DATA2D_SPIRAL:
        sd[0] = sqrt(L * L / 4.0 + 0.75 + 0.09);
        sd[1] = sqrt(L * L / 4.0 - 0.75 + 0.09);
        break;
    default:                                /* 8gaussians: standardized as is */
        break;
    }
}

/* One point of each data set as the API comment describes it, in double
   with libm, standardized with td_moments. */
static void td_ref_point(dfn_data2d kind, dfn_rng *rng, double *p)
{
    double t, r, m[2], sd[2];
    int side, i, j;
    switch (kind) {
    case DFN_DATA2D_MOONS:
        side = (int)dfn_rng_below(rng, 2);
        t = TD_PI * dfn_rng_uniform(rng);
        p[0] = side ? 1.0 - cos(t) : cos(t);
        p[1] = side ? 0.5 - sin(t) : sin(t);
        p[0] += 0.1 * dfn_rng_normal(rng);
        p[1] += 0.1 * dfn_rng_normal(rng);
        break;
    case DFN_DATA2D_SWISS_ROLL:
        t = 1.5 * TD_PI * (1.0 + 2.0 * dfn_rng_uniform(rng));
        p[0] = t * cos(t) + dfn_rng_normal(rng);
        p[1] = t * sin(t) + dfn_rng_normal(rng);
        break;
    case DFN_DATA2D_GAUSSIANS8:
        t = (double)dfn_rng_below(rng, 8) * TD_PI / 4.0;
        p[0] = 8.0 / sqrt(33.0) * cos(t) + dfn_rng_normal(rng) / sqrt(33.0);
        p[1] = 8.0 / sqrt(33.0) * sin(t) + dfn_rng_normal(rng) / sqrt(33.0);
        break;
    case DFN_DATA2D_CHECKERBOARD:
        i = (int)dfn_rng_below(rng, 4) - 2;
        j = 2 * (int)dfn_rng_below(rng, 2) - 2 + (i + 2) % 2;     /* i + j even */
        p[0] = i + dfn_rng_uniform(rng);
        p[1] = j + dfn_rng_uniform(rng);
        break;
    case DFN_DATA2D_CIRCLES:
        r = dfn_rng_below(rng, 2) ? 0.5 : 1.0;
        t = 2.0 * TD_PI * dfn_rng_uniform(rng);
        p[0] = r * cos(t) + 0.08 * dfn_rng_normal(rng);
        p[1] = r * sin(t) + 0.08 * dfn_rng_normal(rng);
        break;
    default:
        side = (int)dfn_rng_below(rng, 2) ? -1 : 1;
        r = 3.0 * TD_PI * sqrt(dfn_rng_uniform(rng));
        p[0] = side * -r * cos(r) + 0.3 * dfn_rng_normal(rng);
        p[1] = side * r * sin(r) + 0.3 * dfn_rng_normal(rng);
        break;
    }
    td_moments(kind, m, sd);
    p[0] = (p[0] - m[0]) / sd[0];
    p[1] = (p[1] - m[1]) / sd[1];
}

static float *td_alloc_floats(size_t n)
{
    return (float *)malloc(n * sizeof(float));
}

void test_data2d_moments(void)
{
    /* Mean 0 and std 1 per coordinate on a fresh sample of N points: the
       standard error of a mean is 1/sqrt(N) = 0.0016 and that of a std below
       sqrt((kurtosis - 1) / 4N) < 0.0013 here (kurtosis < 3.5 for all sets);
       the tolerances are 5 of those. The checkerboard also has its documented
       correlation 3/16. */
    const int N = 400000;
    float *xy = td_alloc_floats((size_t)N * 2);
    dfn_rng rng;
    int kind, i, c;
    if (!xy) { CHECK(0, "out of memory"); return; }
    for (kind = 0; kind < DFN_DATA2D_COUNT; kind++) {
        double sum[2] = {0, 0}, sq[2] = {0, 0}, cross = 0.0;
        dfn_rng_seed(&rng, 1000 + (uint64_t)kind, 5);
        CHECK(dfn_data2d_sample((dfn_data2d)kind, &rng, xy, N) == DFN_OK, "%s", dfn_data2d_name((dfn_data2d)kind));
        for (i = 0; i < N; i++) {
            for (c = 0; c < 2; c++) {
                double v = xy[2 * i + c];
                sum[c] += v;
                sq[c] += v * v;
            }
            cross += (double)xy[2 * i] * xy[2 * i + 1];
        }
        for (c = 0; c < 2; c++) {
            double mean = sum[c] / N, sd = sqrt(sq[c] / N - mean * mean);
            CHECK(fabs(mean) < 0.008, "%s coordinate %d: mean %.5f", dfn_data2d_name((dfn_data2d)kind), c, mean);
            CHECK(fabs(sd - 1.0) < 0.0065, "%s coordinate %d: std %.5f", dfn_data2d_name((dfn_data2d)kind), c, sd);
            if (getenv("DFN_TEST_VERBOSE"))
                printf("    %-12s coordinate %d: mean %+.5f std %.5f\n", dfn_data2d_name((dfn_data2d)kind), c, mean, sd);
        }
        if (kind == DFN_DATA2D_CHECKERBOARD)
            CHECK(fabs(cross / N - 0.1875) < 0.008, "checkerboard correlation %.5f, expected 3/16", cross / N);
    }
    free(xy);
}

/* CRC-32 of n points as little-endian float32 bytes (independent of the host). */
static uint32_t td_points_crc(const float *xy, int n)
{
    uint32_t crc = 0, u;
    unsigned char b[4];
    int i;
    for (i = 0; i < 2 * n; i++) {
        memcpy(&u, &xy[i], 4);
        b[0] = (unsigned char)u; b[1] = (unsigned char)(u >> 8);
        b[2] = (unsigned char)(u >> 16); b[3] = (unsigned char)(u >> 24);
        crc = dfn_crc32(crc, b, 4);
    }
    return crc;
}

void test_data2d_determinism(void)
{
    /* Same seed: the same bits; 300 then 700 points: the same 1000 points;
       another seed or stream: different points. The CRC-32 of 1000 points of
       seed (2024, 3) was recorded on x86-64 (gcc 12 and clang 14, C and C++,
       -O1 and -O2) and is the same on AArch64 (gcc 12 under qemu, ISO and
       GNU modes, that is with and without FMA contraction): the data path
       is integer arithmetic up to one final rounding. */
    static const uint32_t golden[DFN_DATA2D_COUNT] = {
        0xf9cff087u, 0x4db0f8a0u, 0x451ea40eu, 0xee47da50u, 0x14405a2cu, 0x81c9b9f4u
    };
    static float a[2000], b[2000], c[2000];
    dfn_rng r1, r2;
    int kind, i, differ;
    for (kind = 0; kind < DFN_DATA2D_COUNT; kind++) {
        const char *name = dfn_data2d_name((dfn_data2d)kind);
        uint32_t crc;
        dfn_rng_seed(&r1, 2024, 3);
        dfn_rng_seed(&r2, 2024, 3);
        dfn_data2d_sample((dfn_data2d)kind, &r1, a, 1000);
        dfn_data2d_sample((dfn_data2d)kind, &r2, b, 300);
        dfn_data2d_sample((dfn_data2d)kind, &r2, b + 600, 700);
        CHECK(memcmp(a, b, sizeof a) == 0, "%s: 300 + 700 points differ from 1000", name);
        CHECK(r1.state == r2.state && r1.has_spare == r2.has_spare, "%s: rng states differ after the split", name);
        crc = td_points_crc(a, 1000);
        CHECK(crc == golden[kind], "%s: CRC-32 of the points 0x%08lx, recorded 0x%08lx", name,
              (unsigned long)crc, (unsigned long)golden[kind]);
        dfn_rng_seed(&r1, 2025, 3);
        dfn_data2d_sample((dfn_data2d)kind, &r1, c, 1000);
        for (i = 0, differ = 0; i < 2000; i++) differ += a[i] != c[i];
        CHECK(differ > 1900, "%s: another seed shares %d of 2000 values", name, 2000 - differ);
        dfn_rng_seed(&r1, 2024, 4);
        dfn_data2d_sample((dfn_data2d)kind, &r1, c, 1000);
        for (i = 0, differ = 0; i < 2000; i++) differ += a[i] != c[i];
        CHECK(differ > 1900, "%s: another stream shares %d of 2000 values", name, 2000 - differ);
        for (i = 0, differ = 0; i < 2000; i++) differ += !(a[i] == a[i]) || fabs(a[i]) > 8.0f;
        CHECK(differ == 0, "%s: %d values are NaN or beyond 8", name, differ);
    }
}

/* Two-sample chi-square on a TD_BINS x TD_BINS grid over [-2.5, 2.5]^2
   (points outside go to the border cells): sum (a - b)^2 / (a + b) over the
   cells, for two samples of n points each. Under "same distribution" it is
   chi-square with *dof = (non-empty cells - 1) degrees of freedom; returns
   (statistic - dof) / sqrt(2 dof), a z-score. */
#define TD_BINS 20
static int td_bin(float v)
{
    int b = (int)floor((v + 2.5) / 5.0 * TD_BINS);
    return b < 0 ? 0 : b >= TD_BINS ? TD_BINS - 1 : b;
}

static double td_chi2_z(const float *a, const float *b, int n)
{
    static double ca[TD_BINS * TD_BINS], cb[TD_BINS * TD_BINS];
    double stat = 0.0;
    int i, dof = -1;
    for (i = 0; i < TD_BINS * TD_BINS; i++) ca[i] = cb[i] = 0.0;
    for (i = 0; i < n; i++) {
        ca[td_bin(a[2 * i]) * TD_BINS + td_bin(a[2 * i + 1])]++;
        cb[td_bin(b[2 * i]) * TD_BINS + td_bin(b[2 * i + 1])]++;
    }
    for (i = 0; i < TD_BINS * TD_BINS; i++)
        if (ca[i] + cb[i] > 0.0) {
            stat += (ca[i] - cb[i]) * (ca[i] - cb[i]) / (ca[i] + cb[i]);
            dof++;
        }
    return dof > 0 ? (stat - dof) / sqrt(2.0 * dof) : 0.0;
}

void test_data2d_matches_reference(void)
{
    /* The library's points against points from td_ref_point (libm, double,
       another seed): a two-sample chi-square on a 20 x 20 grid with 50000
       points each stays within 5 standard deviations of its mean (measured
       over 10 seeds: at most 1.6). The same check rejects the reference
       transformed by a plausible bug: mirrored in x for the asymmetric sets,
       stretched by 5% for the symmetric ones (z above 300 in the same
       measurement). */
    enum { N = 50000 };
    float *lib = td_alloc_floats(2 * N), *ref = td_alloc_floats(2 * N), *bad = td_alloc_floats(2 * N);
    dfn_rng rng;
    int kind, i;
    if (!lib || !ref || !bad) { CHECK(0, "out of memory"); free(lib); free(ref); free(bad); return; }
    for (kind = 0; kind < DFN_DATA2D_COUNT; kind++) {
        const char *name = dfn_data2d_name((dfn_data2d)kind);
        int symmetric = kind == DFN_DATA2D_GAUSSIANS8 || kind == DFN_DATA2D_CIRCLES;
        double z_lib, z_bad, p[2];
        dfn_rng_seed(&rng, 77, (uint64_t)kind);
        dfn_data2d_sample((dfn_data2d)kind, &rng, lib, N);
        dfn_rng_seed(&rng, 78, (uint64_t)kind);
        for (i = 0; i < N; i++) {
            td_ref_point((dfn_data2d)kind, &rng, p);
            ref[2 * i] = (float)p[0];
            ref[2 * i + 1] = (float)p[1];
        }
        for (i = 0; i < N; i++) {
            td_ref_point((dfn_data2d)kind, &rng, p);
            bad[2 * i] = (float)(symmetric ? 1.05 * p[0] : -p[0]);
            bad[2 * i + 1] = (float)(symmetric ? 1.05 * p[1] : p[1]);
        }
        z_lib = td_chi2_z(lib, ref, N);
        z_bad = td_chi2_z(bad, ref, N);
        CHECK(z_lib < 5.0, "%s: chi-square against the reference z = %.2f", name, z_lib);
        CHECK(z_bad > 20.0, "%s: a transformed reference passes: z = %.2f", name, z_bad);
        if (getenv("DFN_TEST_VERBOSE"))
            printf("    %-12s chi-square z: library %.2f, transformed reference %.1f\n", name, z_lib, z_bad);
    }
    free(lib);
    free(ref);
    free(bad);
}

/* Distance from p to the unit half circle around (cx, cy) on the side
   y >= cy (upper) or y <= cy. */
static double td_arc_dist(double x, double y, double cx, double cy, int upper)
{
    double vx = x - cx, vy = y - cy, e1, e2;
    if (upper ? vy >= 0.0 : vy <= 0.0) return fabs(sqrt(vx * vx + vy * vy) - 1.0);
    e1 = sqrt((vx - 1.0) * (vx - 1.0) + vy * vy);
    e2 = sqrt((vx + 1.0) * (vx + 1.0) + vy * vy);
    return e1 < e2 ? e1 : e2;
}

/* (r - angle) wrapped to (-pi, pi]. */
static double td_wrap(double a)
{
    a = fmod(a, 2.0 * TD_PI);
    if (a > TD_PI) a -= 2.0 * TD_PI;
    if (a <= -TD_PI) a += 2.0 * TD_PI;
    return a;
}

void test_data2d_shapes(void)
{
    enum { N = 40000 };
    static float xy[2 * N], gm[2 * N];
    dfn_rng rng;
    int i, k;
    double m[2], sd[2];

    /* 8 Gaussians: each point is within 6.5 std of its nearest documented
       center; each center gets N/8 points (5 binomial sigmas); each cluster's
       mean and per-coordinate std match the documented ones. And dfn_gmm
       built from the documented parameters samples the same distribution
       (two-sample chi-square, as in data2d_matches_reference). */
    {
        const float R = DFN_DATA2D_GAUSSIANS8_RADIUS, S = DFN_DATA2D_GAUSSIANS8_STD;
        double cnt[8] = {0}, sx[8] = {0}, sy[8] = {0}, sxx[8] = {0}, syy[8] = {0}, worst = 0.0;
        float means[16], weights[8], stds[8];
        dfn_gmm g;
        double z;
        for (k = 0; k < 8; k++) {
            means[2 * k] = (float)(R * cos(k * TD_PI / 4));
            means[2 * k + 1] = (float)(R * sin(k * TD_PI / 4));
            weights[k] = 1.0f;
            stds[k] = S;
        }
        CHECK(fabs(DFN_DATA2D_GAUSSIANS8_DIAGONAL - R / sqrt(2.0)) < 1e-7, "diagonal %.9f", (double)DFN_DATA2D_GAUSSIANS8_DIAGONAL);
        CHECK(fabs(R * R / 2.0 + S * S - 1.0) < 1e-6, "R^2/2 + s^2 = %.9f", R * R / 2.0 + S * S);
        dfn_rng_seed(&rng, 8, 8);
        dfn_data2d_sample(DFN_DATA2D_GAUSSIANS8, &rng, xy, N);
        for (i = 0; i < N; i++) {
            double x = xy[2 * i], y = xy[2 * i + 1], best = 1e30;
            int bk = 0;
            for (k = 0; k < 8; k++) {
                double d = hypot(x - means[2 * k], y - means[2 * k + 1]);
                if (d < best) { best = d; bk = k; }
            }
            if (best > worst) worst = best;
            cnt[bk]++;
            sx[bk] += x - means[2 * bk]; sy[bk] += y - means[2 * bk + 1];
            sxx[bk] += (x - means[2 * bk]) * (x - means[2 * bk]);
            syy[bk] += (y - means[2 * bk + 1]) * (y - means[2 * bk + 1]);
        }
        CHECK(worst < 6.5 * S, "a point %.3f from every center (std %.3f)", worst, S);
        for (k = 0; k < 8; k++) {
            double n = cnt[k], ex = N / 8.0, tol_m = 5.0 * S / sqrt(n > 1 ? n : 1);
            CHECK(fabs(n - ex) < 5.0 * sqrt(N * (1.0 / 8) * (7.0 / 8)), "center %d: %.0f points, expected %.0f", k, n, ex);
            CHECK(fabs(sx[k] / n) < tol_m && fabs(sy[k] / n) < tol_m, "center %d: offset (%.4f, %.4f)", k, sx[k] / n, sy[k] / n);
            CHECK(fabs(sqrt(sxx[k] / n) / S - 1.0) < 0.05 && fabs(sqrt(syy[k] / n) / S - 1.0) < 0.05,
                  "center %d: stds %.4f %.4f, documented %.4f", k, sqrt(sxx[k] / n), sqrt(syy[k] / n), S);
        }
        g.k = 8; g.dim = 2; g.weights = weights; g.means = means; g.stds = stds;
        dfn_rng_seed(&rng, 9, 9);
        CHECK(dfn_gmm_sample(&g, &rng, gm, NULL, N) == DFN_OK, "dfn_gmm_sample");
        z = td_chi2_z(gm, xy, N);
        CHECK(z < 5.0, "dfn_gmm of the documented mixture: chi-square z = %.2f", z);
    }

    /* Circles: radii 1 and 1/2 (raw), half the points each (split at 3/4);
       mean radius R + s^2/(2R) and radial std s = 0.08 per ring. */
    {
        double cnt[2] = {0}, sr[2] = {0}, srr[2] = {0};
        dfn_rng_seed(&rng, 4, 4);
        dfn_data2d_sample(DFN_DATA2D_CIRCLES, &rng, xy, N);
        td_moments(DFN_DATA2D_CIRCLES, m, sd);
        for (i = 0; i < N; i++) {
            double r = hypot(xy[2 * i] * sd[0], xy[2 * i + 1] * sd[1]);
            int ring = r < 0.75;
            cnt[ring]++; sr[ring] += r; srr[ring] += r * r;
        }
        CHECK(fabs(cnt[1] / N - 0.5) < 5.0 * 0.5 / sqrt((double)N), "inner fraction %.4f", cnt[1] / N);
        for (k = 0; k < 2; k++) {
            double R = k ? 0.5 : 1.0, mean = sr[k] / cnt[k], s = sqrt(srr[k] / cnt[k] - mean * mean);
            CHECK(fabs(mean - (R + 0.0064 / (2 * R))) < 0.004, "ring %.1f: mean radius %.5f", R, mean);
            CHECK(fabs(s / 0.08 - 1.0) < 0.05, "ring %.1f: radial std %.5f, expected 0.08", R, s);
        }
    }

    /* Moons: every point within 6 noise stds (0.6) of one of the two half
       circles, about half of them nearer each, the mean distance that of
       |N(0, 0.1^2)|, 0.0798. */
    {
        double worst = 0.0, sum = 0.0;
        int upper = 0;
        dfn_rng_seed(&rng, 5, 5);
        dfn_data2d_sample(DFN_DATA2D_MOONS, &rng, xy, N);
        td_moments(DFN_DATA2D_MOONS, m, sd);
        for (i = 0; i < N; i++) {
            double x = xy[2 * i] * sd[0] + m[0], y = xy[2 * i + 1] * sd[1] + m[1];
            double du = td_arc_dist(x, y, 0.0, 0.0, 1), dl = td_arc_dist(x, y, 1.0, 0.5, 0);
            double d = du < dl ? du : dl;
            upper += du < dl;
            sum += d;
            if (d > worst) worst = d;
        }
        CHECK(worst < 0.6, "a moons point %.3f from both half circles", worst);
        CHECK(fabs((double)upper / N - 0.5) < 0.02, "fraction nearer the upper moon %.4f", (double)upper / N);
        CHECK(fabs(sum / N - 0.0798) < 0.006, "mean distance to the moons %.4f, expected 0.0798", sum / N);
        if (getenv("DFN_TEST_VERBOSE"))
            printf("    moons worst %.3f, upper %.4f, mean distance %.4f\n", worst, (double)upper / N, sum / N);
    }

    /* Checkerboard: every point inside [-2, 2)^2 (raw) in a square [i, i+1) x
       [j, j+1) with i + j even (points within 1e-5 of a grid line are not
       judged), N/8 points in each of the 8 squares. */
    {
        double cnt[16] = {0};
        int outside = 0, wrong = 0;
        dfn_rng_seed(&rng, 3, 3);
        dfn_data2d_sample(DFN_DATA2D_CHECKERBOARD, &rng, xy, N);
        td_moments(DFN_DATA2D_CHECKERBOARD, m, sd);
        for (i = 0; i < N; i++) {
            double x = xy[2 * i] * sd[0], y = xy[2 * i + 1] * sd[1];
            double fx = floor(x), fy = floor(y);
            if (x < -2.0 - 1e-5 || x > 2.0 + 1e-5 || y < -2.0 - 1e-5 || y > 2.0 + 1e-5) { outside++; continue; }
            if (x - fx < 1e-5 || fx + 1 - x < 1e-5 || y - fy < 1e-5 || fy + 1 - y < 1e-5) continue;
            if (((int)fx + (int)fy + 4) % 2 != 0) wrong++;
            else cnt[((int)fx + 2) * 4 + (int)fy + 2]++;
        }
        CHECK(outside == 0, "%d checkerboard points outside the board", outside);
        CHECK(wrong == 0, "%d checkerboard points on empty squares", wrong);
        for (k = 0; k < 16; k++)
            if ((k / 4 + k % 4) % 2 == 0)
                CHECK(fabs(cnt[k] - N / 8.0) < 5.0 * sqrt(N * (1.0 / 8) * (7.0 / 8)),
                      "square (%d, %d): %.0f points", k / 4 - 2, k % 4 - 2, cnt[k]);
    }

    /* Swiss roll: radius in [3 pi/2, 9 pi/2] up to 6 noise stds, and the
       radius is the angle: cos(r - phi) averages about 0.60 (noise 1 blurs
       it; its mirror image, or no spiral at all, averages about 0). */
    {
        double c1 = 0.0, c2 = 0.0;
        int out = 0;
        dfn_rng_seed(&rng, 1, 1);
        dfn_data2d_sample(DFN_DATA2D_SWISS_ROLL, &rng, xy, N);
        td_moments(DFN_DATA2D_SWISS_ROLL, m, sd);
        for (i = 0; i < N; i++) {
            double x = xy[2 * i] * sd[0] + m[0], y = xy[2 * i + 1] * sd[1] + m[1], r = hypot(x, y);
            out += r < 1.5 * TD_PI - 6.0 || r > 4.5 * TD_PI + 6.0;
            c1 += cos(td_wrap(r - atan2(y, x)));
            c2 += cos(td_wrap(r - atan2(-y, x)));
        }
        CHECK(out == 0, "%d swiss roll points off the radius range", out);
        CHECK(c1 / N > 0.5, "swiss roll: mean cos(r - phi) %.4f", c1 / N);
        CHECK(fabs(c2 / N) < 0.05, "swiss roll mirror: mean cos(r - phi) %.4f", c2 / N);
        if (getenv("DFN_TEST_VERBOSE")) printf("    swissroll cos %.4f mirror %.4f\n", c1 / N, c2 / N);
    }

    /* Spiral: the arms are phi = pi - r and phi = -r, so cos 2(phi + r) is
       near 1: about 0.83 with the noise (the mirror image averages about 0). */
    {
        double c1 = 0.0, c2 = 0.0;
        int out = 0;
        dfn_rng_seed(&rng, 6, 6);
        dfn_data2d_sample(DFN_DATA2D_SPIRAL, &rng, xy, N);
        td_moments(DFN_DATA2D_SPIRAL, m, sd);
        for (i = 0; i < N; i++) {
            double x = xy[2 * i] * sd[0], y = xy[2 * i + 1] * sd[1], r = hypot(x, y);
            out += r > 3.0 * TD_PI + 6 * 0.3;
            c1 += cos(2.0 * (atan2(y, x) + r));
            c2 += cos(2.0 * (atan2(y, -x) + r));
        }
        CHECK(out == 0, "%d spiral points beyond the radius 3 pi", out);
        CHECK(c1 / N > 0.75, "spiral: mean cos 2(phi + r) %.4f", c1 / N);
        CHECK(fabs(c2 / N) < 0.05, "spiral mirror: mean cos 2(phi + r) %.4f", c2 / N);
        if (getenv("DFN_TEST_VERBOSE")) printf("    spiral cos %.4f mirror %.4f\n", c1 / N, c2 / N);
    }
}

void test_data2d_names_and_errors(void)
{
    static const char *const names[DFN_DATA2D_COUNT] = {
        "moons", "swissroll", "8gaussians", "checkerboard", "circles", "spiral"
    };
    float xy[4];
    dfn_data2d kind;
    dfn_rng rng, before;
    int k;
    /* The values are stored in files. */
    CHECK(DFN_DATA2D_MOONS == 0 && DFN_DATA2D_SWISS_ROLL == 1 && DFN_DATA2D_GAUSSIANS8 == 2 &&
          DFN_DATA2D_CHECKERBOARD == 3 && DFN_DATA2D_CIRCLES == 4 && DFN_DATA2D_SPIRAL == 5 &&
          DFN_DATA2D_COUNT == 6, "renumbered");
    for (k = 0; k < DFN_DATA2D_COUNT; k++) {
        const char *n = dfn_data2d_name((dfn_data2d)k);
        CHECK(n && strcmp(n, names[k]) == 0, "name of %d: %s", k, n ? n : "(null)");
        kind = (dfn_data2d)-1;
        CHECK(dfn_data2d_from_name(names[k], &kind) == DFN_OK && (int)kind == k, "from_name(%s) = %d", names[k], (int)kind);
    }
    CHECK(dfn_data2d_name((dfn_data2d)6) == NULL && dfn_data2d_name((dfn_data2d)-1) == NULL, "unknown kinds have names");
    kind = DFN_DATA2D_SPIRAL;
    CHECK(dfn_data2d_from_name("Moons", &kind) == DFN_ERR_INVALID_ARG, "names are case-sensitive");
    CHECK(dfn_data2d_from_name("moon", &kind) == DFN_ERR_INVALID_ARG, "a prefix");
    CHECK(dfn_data2d_from_name("moonss", &kind) == DFN_ERR_INVALID_ARG, "a longer name");
    CHECK(dfn_data2d_from_name("", &kind) == DFN_ERR_INVALID_ARG, "the empty name");
    CHECK(kind == DFN_DATA2D_SPIRAL, "kind changed by a failed lookup");
    CHECK(dfn_data2d_from_name(NULL, &kind) == DFN_ERR_NULL, "NULL name");
    CHECK(dfn_data2d_from_name("moons", NULL) == DFN_ERR_NULL, "NULL kind");

    dfn_rng_seed(&rng, 1, 1);
    before = rng;
    CHECK(dfn_data2d_sample(DFN_DATA2D_MOONS, NULL, xy, 2) == DFN_ERR_NULL, "NULL rng");
    CHECK(dfn_data2d_sample(DFN_DATA2D_MOONS, &rng, NULL, 2) == DFN_ERR_NULL, "NULL xy");
    CHECK(dfn_data2d_sample(DFN_DATA2D_MOONS, &rng, xy, -1) == DFN_ERR_INVALID_ARG, "n < 0");
    CHECK(dfn_data2d_sample((dfn_data2d)6, &rng, xy, 2) == DFN_ERR_INVALID_ARG, "kind 6");
    CHECK(dfn_data2d_sample((dfn_data2d)-1, &rng, xy, 2) == DFN_ERR_INVALID_ARG, "kind -1");
    CHECK(dfn_data2d_sample(DFN_DATA2D_MOONS, &rng, NULL, 0) == DFN_OK, "n = 0 with NULL xy");
    CHECK(rng.state == before.state, "a failed or empty call used the rng");
}

/* ------------------------------------------------------------------------- */
/*  Points from text                                                         */
/* ------------------------------------------------------------------------- */

/* Parse a C string; 1 when the result, rows, error line and values match. */
static int td_parse_is(const char *text, int cols, int max_rows, dfn_result want, int want_rows,
                       int want_line, const float *want_values)
{
    float out[64];
    int rows = -7, line = -7, i, ok;
    dfn_result r;
    for (i = 0; i < 64; i++) out[i] = -999.0f;
    r = dfn_points_parse(text, strlen(text), cols, out, max_rows, &rows, &line);
    ok = r == want && rows == want_rows && line == want_line;
    if (ok && want_values)
        for (i = 0; i < want_rows * cols; i++) ok &= out[i] == want_values[i];
    if (ok && r == DFN_OK)
        for (i = want_rows * cols; i < 64; i++) ok &= out[i] == -999.0f;   /* nothing written beyond */
    if (!ok) {
        printf("    text \"%s\": result %d rows %d line %d (expected %d, %d, %d); values", text, (int)r,
               rows, line, (int)want, want_rows, want_line);
        for (i = 0; i < rows * cols && i < 12; i++) printf(" %g", out[i]);
        printf("\n");
    }
    return ok;
}

void test_data_points_formats(void)
{
    static const float v6[6] = { 1.0f, 2.0f, 3.0f, 4.0f, 5.0f, 6.0f };
    static const float e6[6] = { 1.5f, -2.0f, 0.00125f, 3e10f, -4.5e-7f, 250.0f };
    CHECK(td_parse_is("1,2\n3,4\n5,6\n", 2, 3, DFN_OK, 3, 0, v6), "CSV");
    CHECK(td_parse_is("1 2\n3\t4\n  5    6  \n", 2, 3, DFN_OK, 3, 0, v6), "whitespace");
    CHECK(td_parse_is("1 , 2\n3,\t4\n5 ,6", 2, 3, DFN_OK, 3, 0, v6), "blanks around commas");
    CHECK(td_parse_is("1,2\r\n3,4\r\n5,6\r\n", 2, 3, DFN_OK, 3, 0, v6), "CRLF");
    CHECK(td_parse_is("1,2\n3,4\n5,6", 2, 3, DFN_OK, 3, 0, v6), "no final newline");
    CHECK(td_parse_is("# a comment\n\n1,2\n   # indented comment\n\t\n3,4\r\n\r\n5,6\n\n", 2, 3, DFN_OK, 3, 0, v6),
          "comments and blank lines");
    CHECK(td_parse_is("x,y\n1,2\n3,4\n5,6\n", 2, 3, DFN_OK, 3, 0, v6), "header");
    CHECK(td_parse_is("# data\n\n  px py \n1 2\n3 4\n5 6\n", 2, 3, DFN_OK, 3, 0, v6), "header after a comment");
    CHECK(td_parse_is("\"x\",\"y\",label\n1,2\n3,4\n5,6\n", 2, 3, DFN_OK, 3, 0, v6), "a header need not have cols names");
    CHECK(td_parse_is("\357\273\277x,y\n1,2\n3,4\n5,6\n", 2, 3, DFN_OK, 3, 0, v6), "UTF-8 byte order mark");
    CHECK(td_parse_is("1,2,3,4,5,6\n", 6, 1, DFN_OK, 1, 0, v6), "one row of 6");
    CHECK(td_parse_is("1\n2\n3\n4\n5\n6", 1, 6, DFN_OK, 6, 0, v6), "one column");
    CHECK(td_parse_is("+1.5 -2\n1.25e-3 3E+10\n-4.5e-7 2.5e2\n", 2, 3, DFN_OK, 3, 0, e6), "signs and exponents");
    {
        static const float w[8] = { 1.0f, 0.5f, -0.5f, 0.0f, 7.0f, 1e-3f, -0.0f, 100.0f };
        float out[8];
        int rows, line;
        CHECK(td_parse_is("1. .5\n-.5 0\n007 0.001\n-0 1e2\n", 2, 4, DFN_OK, 4, 0, w), "forms of numbers");
        dfn_points_parse("-0 0", 4, 2, out, 1, &rows, &line);
        CHECK(rows == 1 && signbit(out[0]) && !signbit(out[1]), "-0 keeps its sign");
    }
    {
        /* Long mantissas, huge and tiny exponents, subnormals. */
        static const float w[8] = { 0.1f, 123456789012.0f, 1e-30f, 3.4028235e38f, 1.17549435e-38f, 1.4e-45f, 0.0f, 1e-45f };
        CHECK(td_parse_is("0.1000000000000000000000000001 123456789012.34567890123\n"
                          "0.000000000000000000000000000001 340282346638528859811704183484516925440\n"
                          "1.17549435e-38 1.401298464324817e-45\n"
                          "1e-400 0.000000000000000000000000000000000000000000001\n", 2, 4, DFN_OK, 4, 0, w),
              "long and extreme numbers");
    }
    CHECK(td_parse_is("", 2, 3, DFN_OK, 0, 0, NULL), "empty text");
    CHECK(td_parse_is("\n\n# only comments\n", 2, 3, DFN_OK, 0, 0, NULL), "no data");
    CHECK(td_parse_is("x,y\n", 2, 3, DFN_OK, 0, 0, NULL), "only a header");
    CHECK(td_parse_is("1,2\n3,4\n", 2, 2, DFN_OK, 2, 0, v6), "exactly max_rows");
}

void test_data_points_errors(void)
{
    static const float v4[4] = { 1.0f, 2.0f, 3.0f, 4.0f };
    float out[4];
    int rows, line;
    /* Column counts, with the 1-based line of the error and the rows before it. */
    CHECK(td_parse_is("1,2\n3,4\n5\n", 2, 8, DFN_ERR_FORMAT, 2, 3, v4), "too few columns");
    CHECK(td_parse_is("1,2\n\n# c\n3,4\n5,6,7\n", 2, 8, DFN_ERR_FORMAT, 2, 5, v4), "too many columns");
    CHECK(td_parse_is("1,2\r\n3,4\r\n5 6 7\r\n", 2, 8, DFN_ERR_FORMAT, 2, 3, v4), "CRLF line numbers");
    CHECK(td_parse_is("1,,2\n", 2, 8, DFN_ERR_FORMAT, 0, 1, NULL), "empty field");
    CHECK(td_parse_is("1,2,\n", 2, 8, DFN_ERR_FORMAT, 0, 1, NULL), "trailing comma");
    CHECK(td_parse_is(",1,2\n", 2, 8, DFN_ERR_FORMAT, 0, 1, NULL), "leading comma");
    /* Bad tokens. The first content line with a number is data, not a header. */
    CHECK(td_parse_is("1,2\n3,4x\n", 2, 8, DFN_ERR_FORMAT, 1, 2, v4), "4x");
    CHECK(td_parse_is("x,1\n", 2, 8, DFN_ERR_FORMAT, 0, 1, NULL), "half a header");
    CHECK(td_parse_is("x,y\nx,y\n", 2, 8, DFN_ERR_FORMAT, 0, 2, NULL), "a second header");
    CHECK(td_parse_is("1,2\n0x10,1\n", 2, 8, DFN_ERR_FORMAT, 1, 2, v4), "hex");
    CHECK(td_parse_is("1,2\n1e,1\n", 2, 8, DFN_ERR_FORMAT, 1, 2, v4), "1e");
    CHECK(td_parse_is("1,2\n1e+,1\n", 2, 8, DFN_ERR_FORMAT, 1, 2, v4), "1e+");
    CHECK(td_parse_is("1,2\n.,1\n", 2, 8, DFN_ERR_FORMAT, 1, 2, v4), "a lone point");
    CHECK(td_parse_is("1,2\n+,1\n", 2, 8, DFN_ERR_FORMAT, 1, 2, v4), "a lone sign");
    CHECK(td_parse_is("1,2\n--1,1\n", 2, 8, DFN_ERR_FORMAT, 1, 2, v4), "two signs");
    CHECK(td_parse_is("1,2\n1.2.3,1\n", 2, 8, DFN_ERR_FORMAT, 1, 2, v4), "two points");
    CHECK(td_parse_is("1,2\n1;2\n", 2, 8, DFN_ERR_FORMAT, 1, 2, v4), "semicolon");
    CHECK(td_parse_is("1,2\n3,4 # note\n", 2, 8, DFN_ERR_FORMAT, 1, 2, v4), "comment after data");
    CHECK(td_parse_is("1,2\n1,2\r3,4\n", 2, 8, DFN_ERR_FORMAT, 1, 2, v4), "a lone CR is a blank, not a line end");
    CHECK(td_parse_is("1,2\n1,nana\n", 2, 8, DFN_ERR_FORMAT, 1, 2, v4), "nana");
    /* Not finite. */
    CHECK(td_parse_is("1,2\n3,nan\n", 2, 8, DFN_ERR_NOT_FINITE, 1, 2, v4), "nan");
    CHECK(td_parse_is("NaN,2\n", 2, 8, DFN_ERR_NOT_FINITE, 0, 1, NULL), "NaN first: data, not a header");
    CHECK(td_parse_is("1,2\n-inf,1\n", 2, 8, DFN_ERR_NOT_FINITE, 1, 2, v4), "-inf");
    CHECK(td_parse_is("1,2\n+Infinity,1\n", 2, 8, DFN_ERR_NOT_FINITE, 1, 2, v4), "+Infinity");
    CHECK(td_parse_is("1,2\n1e39,1\n", 2, 8, DFN_ERR_NOT_FINITE, 1, 2, v4), "1e39");
    CHECK(td_parse_is("1,2\n-3.5e38,1\n", 2, 8, DFN_ERR_NOT_FINITE, 1, 2, v4), "-3.5e38 rounds to -inf");
    CHECK(td_parse_is("1,2\n1e99999999999999999999,1\n", 2, 8, DFN_ERR_NOT_FINITE, 1, 2, v4), "a huge exponent");
    CHECK(td_parse_is("3.4028235e38 -3.40282356e38\n", 2, 8, DFN_OK, 1, 0, NULL), "FLT_MAX and just below the rounding edge");
    /* Rows. */
    CHECK(td_parse_is("1,2\n3,4\n\n5,6\n", 2, 2, DFN_ERR_BUFFER_TOO_SMALL, 2, 4, v4), "too many rows");
    CHECK(td_parse_is("1,2\n", 2, 0, DFN_ERR_BUFFER_TOO_SMALL, 0, 1, NULL), "max_rows 0");
    CHECK(td_parse_is("# c\n", 2, 0, DFN_OK, 0, 0, NULL), "max_rows 0 and no data");
    /* Arguments. */
    rows = line = -7;
    CHECK(dfn_points_parse("1,2", 3, 0, out, 2, &rows, &line) == DFN_ERR_INVALID_ARG && rows == 0 && line == 0, "cols 0");
    CHECK(dfn_points_parse("1,2", 3, 2, out, -1, &rows, &line) == DFN_ERR_INVALID_ARG, "max_rows < 0");
    CHECK(dfn_points_parse("1,2", 3, 1 << 30, out, 1 << 30, &rows, &line) == DFN_ERR_INVALID_ARG, "max_rows * cols too large");
    CHECK(dfn_points_parse("1,2", 3, 2, out, 2, NULL, &line) == DFN_ERR_NULL, "NULL rows");
    CHECK(dfn_points_parse(NULL, 3, 2, out, 2, &rows, &line) == DFN_ERR_NULL, "NULL text");
    CHECK(dfn_points_parse(NULL, 0, 2, out, 2, &rows, &line) == DFN_OK && rows == 0, "NULL text, length 0");
    CHECK(dfn_points_parse("1,2", 3, 2, out, 2, &rows, NULL) == DFN_OK && rows == 1, "NULL error_line");
    CHECK(dfn_points_parse("1,2\n3", 5, 2, out, 2, &rows, NULL) == DFN_ERR_FORMAT && rows == 1, "NULL error_line on error");
}

void test_data_points_bounds_and_count(void)
{
    /* The text is copied into a buffer of exactly len bytes (no terminator:
       ASan and valgrind see any read past it), cut in the middle of a number. */
    const char *full = "x,y\n1,2\n3,45\n6,7\n";
    size_t len = 11;                                    /* "x,y\n1,2\n3,4" */
    char *buf = (char *)malloc(len);
    float out[8];
    int rows = -1, line = -1;
    dfn_result r;
    if (!buf) { CHECK(0, "out of memory"); return; }
    memcpy(buf, full, len);
    r = dfn_points_parse(buf, len, 2, out, 4, &rows, &line);
    CHECK(r == DFN_OK && rows == 2 && out[2] == 3.0f && out[3] == 4.0f, "prefix: %d rows %d, last %g", (int)r, rows, out[3]);
    /* Every prefix of a text parses without reading beyond it. */
    {
        const char *t = "# c\r\nx y\r\n1.5e3 -2\r\n3 4e-1\r\n";
        size_t n, tl = strlen(t);
        int bad = 0;
        for (n = 0; n <= tl; n++) {
            char *p = (char *)malloc(n ? n : 1);
            memcpy(p, t, n);
            r = dfn_points_parse(p, n, 2, out, 4, &rows, &line);
            bad += r != DFN_OK && r != DFN_ERR_FORMAT;
            free(p);
        }
        CHECK(bad == 0, "%d prefixes gave an unexpected result", bad);
    }
    free(buf);
    /* Count only: out NULL, max_rows ignored. */
    rows = -1;
    CHECK(dfn_points_parse("a b\n1 2\n3 4\n\n5 6\n", 17, 2, NULL, -5, &rows, &line) == DFN_OK && rows == 3,
          "count only: %d rows", rows);
    CHECK(dfn_points_parse("1 2\n3 4\n5\n", 10, 2, NULL, 0, &rows, &line) == DFN_ERR_FORMAT && rows == 2 && line == 3,
          "count only still checks: rows %d line %d", rows, line);
    {
        /* Many rows: count, then parse into exactly that many. */
        char *text = (char *)malloc(20000 * 24);
        float *vals = td_alloc_floats(20000 * 3);
        size_t tl = 0;
        int i, ok = 1;
        for (i = 0; i < 20000; i++) tl += (size_t)sprintf(text + tl, "%d,%d.5,-%de-2\n", i, i, i);
        CHECK(dfn_points_parse(text, tl, 3, NULL, 0, &rows, &line) == DFN_OK && rows == 20000, "counted %d", rows);
        CHECK(dfn_points_parse(text, tl, 3, vals, rows, &rows, &line) == DFN_OK && rows == 20000, "parsed %d", rows);
        for (i = 0; i < 20000; i++)
            ok &= vals[3 * i] == (float)i && vals[3 * i + 1] == (float)(i + 0.5) && vals[3 * i + 2] == (float)(-i / 100.0);
        CHECK(ok, "values of the 20000 rows");
        CHECK(dfn_points_parse(text, tl, 3, vals, 19999, &rows, &line) == DFN_ERR_BUFFER_TOO_SMALL && rows == 19999 &&
              line == 20000, "one row short: rows %d line %d", rows, line);
        free(text);
        free(vals);
    }
}

/* Floats in an order where neighbours differ by 1 (-0 and +0 are equal). */
static long td_ordered(float f)
{
    int32_t i;
    memcpy(&i, &f, 4);
    return i < 0 ? -(long)(i & 0x7fffffff) : (long)i;
}

void test_data_points_match_strtof(void)
{
    /* Random numbers written with %.9g (round trip), %e (7 digits), %.17g
       of doubles, and random decimal strings with up to 25 digits and
       exponents from -60 to 45; all parsed in one text and compared with
       the C library's strtof (correctly rounded): within 1 ulp always, equal
       almost always; and within 1 ulp of (float)strtod (which may round
       twice). */
    enum { N = 60000 };
    char *text = (char *)malloc((size_t)N * 48);
    char **tok = (char **)malloc(sizeof(char *) * N);
    float *vals = td_alloc_floats(N), *ref = td_alloc_floats(N), *ref_d = td_alloc_floats(N);
    dfn_rng rng;
    size_t tl = 0;
    int i, rows, line, far = 0, far_d = 0, differ = 0, overflow_ok = 1;
    if (!text || !tok || !vals || !ref || !ref_d) {
        CHECK(0, "out of memory");
        free(text); free(tok); free(vals); free(ref); free(ref_d);
        return;
    }
    dfn_rng_seed(&rng, 31, 7);
    for (i = 0; i < N; i++) {
        char s[64];
        int kind = i % 4;
        if (kind < 2) {
            uint32_t u;
            float f;
            do { u = dfn_rng_u32(&rng); memcpy(&f, &u, 4); } while ((u & 0x7f800000u) == 0x7f800000u);
            sprintf(s, kind == 0 ? "%.9g" : "%e", (double)f);
        } else if (kind == 2) {
            double d = ((double)dfn_rng_u32(&rng) * 4294967296.0 + dfn_rng_u32(&rng)) / 18446744073709551616.0;
            d = ldexp(d, (int)dfn_rng_below(&rng, 250) - 150);
            sprintf(s, "%.17g", dfn_rng_below(&rng, 2) ? -d : d);
        } else {
            int nd = 1 + (int)dfn_rng_below(&rng, 25), point = (int)dfn_rng_below(&rng, (uint32_t)nd + 1), k, p = 0;
            if (dfn_rng_below(&rng, 2)) s[p++] = '-';
            for (k = 0; k < nd; k++) {
                if (k == point) s[p++] = '.';
                s[p++] = (char)('0' + dfn_rng_below(&rng, 10));
            }
            sprintf(s + p, "e%d", (int)dfn_rng_below(&rng, 106) - 60);
        }
        {
            float f = strtof(s, NULL);
            if (!(fabsf(f) <= 3.4028235e38f)) {            /* out of float range: an error here */
                int rr = 0, ll = 0;
                float v;
                overflow_ok &= dfn_points_parse(s, strlen(s), 1, &v, 1, &rr, &ll) == DFN_ERR_NOT_FINITE;
                strcpy(s, "1");
            }
        }
        tok[i] = text + tl;
        tl += (size_t)sprintf(text + tl, "%s\n", s);
        text[tl - 1] = '\0';                            /* strtof stops here; the parser sees '\n' below */
        ref[i] = strtof(tok[i], NULL);
        ref_d[i] = (float)strtod(tok[i], NULL);
    }
    for (i = 0; i < (int)tl; i++) if (text[i] == '\0') text[i] = '\n';
    CHECK(overflow_ok, "a number beyond the float range was not DFN_ERR_NOT_FINITE");
    CHECK(dfn_points_parse(text, tl, 1, vals, N, &rows, &line) == DFN_OK && rows == N, "rows %d, line %d", rows, line);
    for (i = 0; i < rows; i++) {
        long d = td_ordered(vals[i]) - td_ordered(ref[i]), dd = td_ordered(vals[i]) - td_ordered(ref_d[i]);
        if (d != 0) differ++;
        if (dd > 1 || dd < -1) far_d++;
        if (d > 1 || d < -1) {
            if (far < 5) {
                char *e = strchr(tok[i], '\n');
                int w = e ? (int)(e - tok[i]) : 30;
                printf("    \"%.*s\": parsed %.9g, strtof %.9g\n", w, tok[i], (double)vals[i], (double)ref[i]);
            }
            far++;
        }
    }
    CHECK(far == 0, "%d of %d numbers more than 1 ulp from strtof", far, N);
    CHECK(far_d == 0, "%d of %d numbers more than 1 ulp from (float)strtod", far_d, N);
    CHECK(differ <= N / 10000, "%d of %d numbers differ from strtof by 1 ulp", differ, N);
    if (getenv("DFN_TEST_VERBOSE")) printf("    %d of %d differ from strtof by 1 ulp\n", differ, N);
    /* %.9g round-trips every float exactly. */
    {
        int exact = 1;
        for (i = 0; i < rows; i += 4) exact &= memcmp(&vals[i], &ref[i], 4) == 0;
        CHECK(exact, "a %%.9g float did not round-trip");
    }
    free(text); free(tok); free(vals); free(ref); free(ref_d);
}

/* A file name in /tmp unique to this process and call. */
static void td_tmp_path(char *buf, const char *tag)
{
    static unsigned counter;
    int local;
    sprintf(buf, "/tmp/dfn_test_data_%lx_%lx_%u_%s", (unsigned long)time(NULL),
            (unsigned long)((uintptr_t)&local & 0xffffffffu), counter++, tag);
}

static int td_write_text(const char *path, const char *text, size_t len)
{
    FILE *f = fopen(path, "wb");
    int ok;
    if (!f) return 0;
    ok = fwrite(text, 1, len, f) == len;
    return fclose(f) == 0 && ok;
}

void test_data_points_load_file(void)
{
    /* The file version gives what the memory version gives: rows, values,
       result and error line, for texts that span many buffer refills. */
    static const char *const texts[] = {
        "x,y\n1,2\n3,4\n",
        "# c\r\n\r\n1 2\r\n3 4",
        "1,2\n3,4\n5\n",
        "1,2\n3,nan\n",
        "\357\273\277a b\n1 2\n",
        ""
    };
    char path[256];
    float a[64], b[64];
    int k, ra, rb, la, lb;
    dfn_result r1, r2;
    td_tmp_path(path, "load.csv");
    for (k = 0; k < (int)(sizeof texts / sizeof texts[0]); k++) {
        size_t len = strlen(texts[k]);
        memset(a, 0, sizeof a); memset(b, 0, sizeof b);
        CHECK(td_write_text(path, texts[k], len), "cannot write %s", path);
        r1 = dfn_points_parse(texts[k], len, 2, a, 32, &ra, &la);
        r2 = dfn_points_load(path, 2, b, 32, &rb, &lb);
        CHECK(r1 == r2 && ra == rb && la == lb && memcmp(a, b, sizeof a) == 0,
              "text %d: parse (%d, %d rows, line %d), load (%d, %d rows, line %d)", k, (int)r1, ra, la, (int)r2, rb, lb);
    }
    {
        /* 30000 CRLF lines (about 20 buffer refills), an error on the last. */
        size_t cap = 30000 * 40, len = 0;
        char *text = (char *)malloc(cap);
        float *va = td_alloc_floats(2 * 30000), *vb = td_alloc_floats(2 * 30000);
        int i;
        len += (size_t)sprintf(text, "# generated\r\nu,v\r\n");
        for (i = 0; i < 29997; i++) len += (size_t)sprintf(text + len, "%.9g, %.9g\r\n", i * 0.37, -i * 1e-3);
        len += (size_t)sprintf(text + len, "1 2 3");
        CHECK(td_write_text(path, text, len), "cannot write %s", path);
        r1 = dfn_points_parse(text, len, 2, va, 30000, &ra, &la);
        r2 = dfn_points_load(path, 2, vb, 30000, &rb, &lb);
        CHECK(r1 == DFN_ERR_FORMAT && la == 30000 && ra == 29997, "parse: %d, line %d, rows %d", (int)r1, la, ra);
        CHECK(r1 == r2 && ra == rb && la == lb && memcmp(va, vb, sizeof(float) * 2 * 29997) == 0,
              "load: %d, line %d, rows %d", (int)r2, lb, rb);
        /* Count only, and too small a buffer. */
        CHECK(dfn_points_load(path, 2, NULL, 0, &rb, &lb) == DFN_ERR_FORMAT && rb == 29997, "count: %d rows", rb);
        CHECK(dfn_points_load(path, 2, vb, 100, &rb, &lb) == DFN_ERR_BUFFER_TOO_SMALL && rb == 100 && lb == 103,
              "100 rows: %d rows, line %d", rb, lb);
        /* A line longer than the buffer: refused by both readers. */
        len = (size_t)sprintf(text, "1 2\n3 4\n");
        for (i = 0; i < DFN_POINTS_MAX_LINE; i++) text[len++] = ' ';
        len += (size_t)sprintf(text + len, "5 6\n");
        CHECK(td_write_text(path, text, len), "cannot write %s", path);
        CHECK(dfn_points_parse(text, len, 2, va, 8, &ra, &la) == DFN_ERR_FORMAT && ra == 2 && la == 3,
              "in memory, the same limit: rows %d line %d", ra, la);
        CHECK(dfn_points_load(path, 2, vb, 8, &rb, &lb) == DFN_ERR_FORMAT && rb == 2 && lb == 3,
              "a line of %d bytes: rows %d line %d", DFN_POINTS_MAX_LINE + 4, rb, lb);
        free(text); free(va); free(vb);
    }
    remove(path);
    CHECK(dfn_points_load(path, 2, a, 8, &ra, &la) == DFN_ERR_IO && ra == 0 && la == 0, "missing file");
    CHECK(dfn_points_load("/tmp", 2, a, 8, &ra, &la) == DFN_ERR_IO, "a directory");
    CHECK(dfn_points_load(NULL, 2, a, 8, &ra, &la) == DFN_ERR_NULL, "NULL path");
    CHECK(dfn_points_load(path, 0, a, 8, &ra, &la) == DFN_ERR_INVALID_ARG, "cols 0");
}

/* ------------------------------------------------------------------------- */
/*  RBF MMD^2                                                                */
/* ------------------------------------------------------------------------- */

/* The definition, term by term in double; unbiased: the U-statistic, the
   pairs i != j within each set. */
static double td_mmd_direct_u(const float *x, int n, const float *y, int m, int dim, double h,
                              int unbiased)
{
    double kxx = 0.0, kyy = 0.0, kxy = 0.0;
    int i, j, d;
    for (i = 0; i < n; i++)
        for (j = 0; j < n; j++) {
            double s = 0.0;
            if (unbiased && i == j) continue;
            for (d = 0; d < dim; d++) s += ((double)x[i * dim + d] - x[j * dim + d]) * ((double)x[i * dim + d] - x[j * dim + d]);
            kxx += exp(-s / (2.0 * h * h));
        }
    for (i = 0; i < m; i++)
        for (j = 0; j < m; j++) {
            double s = 0.0;
            if (unbiased && i == j) continue;
            for (d = 0; d < dim; d++) s += ((double)y[i * dim + d] - y[j * dim + d]) * ((double)y[i * dim + d] - y[j * dim + d]);
            kyy += exp(-s / (2.0 * h * h));
        }
    for (i = 0; i < n; i++)
        for (j = 0; j < m; j++) {
            double s = 0.0;
            for (d = 0; d < dim; d++) s += ((double)x[i * dim + d] - y[j * dim + d]) * ((double)x[i * dim + d] - y[j * dim + d]);
            kxy += exp(-s / (2.0 * h * h));
        }
    if (unbiased) return kxx / ((double)n * (n - 1)) + kyy / ((double)m * (m - 1)) - 2.0 * kxy / ((double)n * m);
    return kxx / ((double)n * n) + kyy / ((double)m * m) - 2.0 * kxy / ((double)n * m);
}

static double td_mmd_direct(const float *x, int n, const float *y, int m, int dim, double h)
{
    return td_mmd_direct_u(x, n, y, m, dim, h, 0);
}

static double td_mmd_direct_unbiased(const float *x, int n, const float *y, int m, int dim, double h)
{
    return td_mmd_direct_u(x, n, y, m, dim, h, 1);
}

void test_data_mmd_rbf_unbiased_reference(void)
{
    /* Against the definition; then its mean over draws of two sets from one
       distribution is 0 (within 4 standard errors), where the V-statistic's
       sits near its offset (1 - E k)(1/n + 1/m). */
    static const int sizes[][3] = { {2, 2, 1}, {3, 7, 2}, {17, 5, 3}, {64, 80, 2} };
    static const double bw[] = { 0.05, 0.3, 1.0, 4.0 };
    static float x[80 * 3], y[80 * 3];
    dfn_rng rng;
    int s, b, i, r;
    double sum = 0.0, sq = 0.0, vsum = 0.0, got;
    dfn_rng_seed(&rng, 13, 1);
    for (s = 0; s < 4; s++) {
        int n = sizes[s][0], m = sizes[s][1], dim = sizes[s][2];
        for (i = 0; i < n * dim; i++) x[i] = dfn_rng_normal(&rng);
        for (i = 0; i < m * dim; i++) y[i] = 0.5f + 1.3f * dfn_rng_normal(&rng);
        for (b = 0; b < 4; b++) {
            double want = td_mmd_direct_unbiased(x, n, y, m, dim, bw[b]);
            got = HUGE_VAL;
            CHECK(dfn_mmd_rbf_unbiased(&got, x, n, y, m, dim, bw[b]) == DFN_OK, "n %d m %d dim %d", n, m, dim);
            CHECK(fabs(got - want) <= 1e-12 + 1e-10 * fabs(want), "n %d m %d dim %d h %g: %.15g, direct %.15g",
                  n, m, dim, bw[b], got, want);
        }
    }
    CHECK(dfn_mmd_rbf_unbiased(&got, x, 1, y, 5, 2, 1.0) == DFN_ERR_INVALID_ARG, "n = 1");
    for (r = 0; r < 200; r++) {
        double v;
        for (i = 0; i < 2 * 40; i++) x[i] = dfn_rng_normal(&rng);
        for (i = 0; i < 2 * 40; i++) y[i] = dfn_rng_normal(&rng);
        dfn_mmd_rbf_unbiased(&got, x, 40, y, 40, 2, 1.0);
        dfn_mmd_rbf(&v, x, 40, y, 40, 2, 1.0);
        sum += got; sq += got * got; vsum += v;
    }
    {
        double mean = sum / 200, se = sqrt((sq / 200 - mean * mean) / 199);
        CHECK(fabs(mean) < 4 * se, "U-statistic mean %.3g over same-distribution draws (se %.3g)", mean, se);
        CHECK(vsum / 200 > mean + 10 * se, "V-statistic mean %.3g should carry its offset", vsum / 200);
    }
}

void test_data_mmd_rbf_reference(void)
{
    static const int sizes[][3] = { {1, 1, 1}, {3, 7, 2}, {17, 5, 3}, {64, 80, 2}, {40, 40, 5} };
    static const double bw[] = { 0.3, 1.0, 4.0 };
    static float x[80 * 5], y[80 * 5];
    dfn_rng rng;
    int s, b, i;
    dfn_rng_seed(&rng, 12, 1);
    for (s = 0; s < 5; s++) {
        int n = sizes[s][0], m = sizes[s][1], dim = sizes[s][2];
        for (i = 0; i < n * dim; i++) x[i] = dfn_rng_normal(&rng);
        for (i = 0; i < m * dim; i++) y[i] = 0.5f + 1.3f * dfn_rng_normal(&rng);
        for (b = 0; b < 3; b++) {
            double got = -1.0, want = td_mmd_direct(x, n, y, m, dim, bw[b]);
            CHECK(dfn_mmd_rbf(&got, x, n, y, m, dim, bw[b]) == DFN_OK, "n %d m %d dim %d", n, m, dim);
            CHECK(fabs(got - want) <= 1e-12 + 1e-10 * fabs(want), "n %d m %d dim %d h %g: %.15g, direct %.15g",
                  n, m, dim, bw[b], got, want);
            CHECK(got > 0.0, "n %d m %d dim %d h %g: MMD^2 %.3g of different sets", n, m, dim, bw[b], got);
        }
    }
    /* One point each: MMD^2 = 2 - 2 exp(-d^2 / 2h^2). */
    {
        float a[2] = { 0.0f, 0.0f }, c[2] = { 3.0f, 4.0f };
        double got;
        dfn_mmd_rbf(&got, a, 1, c, 1, 2, 2.0);
        CHECK(fabs(got - (2.0 - 2.0 * exp(-25.0 / 8.0))) < 1e-15, "one point each: %.17g", got);
    }
}

void test_data_mmd_rbf_properties(void)
{
    enum { N = 300 };
    static float x[2 * N], y[2 * N], z[2 * N];
    dfn_rng rng;
    double a, b, prev = 0.0, mono = 1.0;
    float nan = (float)(0.0 * HUGE_VAL);
    int i, k;
    dfn_rng_seed(&rng, 13, 2);
    dfn_data2d_sample(DFN_DATA2D_MOONS, &rng, x, N);
    dfn_data2d_sample(DFN_DATA2D_MOONS, &rng, y, N);
    CHECK(dfn_mmd_rbf(&a, x, N, x, N, 2, 0.5) == DFN_OK && a == 0.0, "identical sets: %.3g", a);
    dfn_mmd_rbf(&a, x, N, y, N, 2, 0.5);
    dfn_mmd_rbf(&b, y, N, x, N, 2, 0.5);
    CHECK(fabs(a - b) <= 1e-15, "not symmetric: %.17g %.17g", a, b);
    /* Shifting y away from x increases MMD^2 (up to 2 at infinity). */
    for (k = 1; k <= 6; k++) {
        for (i = 0; i < 2 * N; i++) z[i] = y[i] + (i % 2 ? 0.0f : 0.25f * (float)k);
        dfn_mmd_rbf(&a, x, N, z, N, 2, 0.5);
        if (!(a > prev)) mono = 0.0;
        if (k == 1) CHECK(a > 3.0 * b, "a shift of 0.25 std: %.5f, same distribution %.5f", a, b);
        prev = a;
    }
    CHECK(mono == 1.0 && prev < 2.0, "MMD^2 not increasing with the shift (last %.5f)", prev);
    /* Scaling the points and the bandwidth together changes nothing. */
    for (i = 0; i < 2 * N; i++) z[i] = 4.0f * y[i];
    {
        static float x4[2 * N];
        for (i = 0; i < 2 * N; i++) x4[i] = 4.0f * x[i];
        dfn_mmd_rbf(&a, x, N, y, N, 2, 0.5);
        dfn_mmd_rbf(&b, x4, N, z, N, 2, 2.0);
        CHECK(fabs(a - b) <= 1e-12, "scale invariance: %.15g %.15g", a, b);
    }
    /* Extreme bandwidths: tiny h leaves only i = j (2 - 2*0 over sizes), huge h gives 0. */
    CHECK(dfn_mmd_rbf(&a, x, N, y, N, 2, 1e-200) == DFN_OK && fabs(a - 2.0 / N) < 1e-12, "h 1e-200: %.15g", a);
    CHECK(dfn_mmd_rbf(&a, x, N, y, N, 2, 1e200) == DFN_OK && a == 0.0, "h 1e200: %.15g", a);
    /* Errors, and *mmd2 = 0 on error. */
    a = 5.0;
    CHECK(dfn_mmd_rbf(&a, NULL, N, y, N, 2, 1.0) == DFN_ERR_NULL, "NULL x");
    CHECK(dfn_mmd_rbf(&a, x, N, NULL, N, 2, 1.0) == DFN_ERR_NULL && a == 0.0, "NULL y");
    CHECK(dfn_mmd_rbf(NULL, x, N, y, N, 2, 1.0) == DFN_ERR_NULL, "NULL result");
    a = 5.0;
    CHECK(dfn_mmd_rbf(&a, x, 0, y, N, 2, 1.0) == DFN_ERR_INVALID_ARG && a == 0.0, "n = 0");
    CHECK(dfn_mmd_rbf(&a, x, N, y, -1, 2, 1.0) == DFN_ERR_INVALID_ARG, "m < 0");
    CHECK(dfn_mmd_rbf(&a, x, N, y, N, 0, 1.0) == DFN_ERR_INVALID_ARG, "dim 0");
    CHECK(dfn_mmd_rbf(&a, x, N, y, N, 2, 0.0) == DFN_ERR_INVALID_ARG, "bandwidth 0");
    CHECK(dfn_mmd_rbf(&a, x, N, y, N, 2, -1.0) == DFN_ERR_INVALID_ARG, "bandwidth < 0");
    CHECK(dfn_mmd_rbf(&a, x, N, y, N, 2, (double)nan) == DFN_ERR_INVALID_ARG, "bandwidth NaN");
    CHECK(dfn_mmd_rbf(&a, x, N, y, N, 2, HUGE_VAL) == DFN_ERR_INVALID_ARG, "bandwidth inf");
    y[17] = nan;
    CHECK(dfn_mmd_rbf(&a, x, N, y, N, 2, 1.0) == DFN_ERR_NOT_FINITE, "NaN in y");
    x[3] = (float)HUGE_VAL;
    CHECK(dfn_mmd_rbf(&a, x, N, x, N, 2, 1.0) == DFN_ERR_NOT_FINITE, "inf in x");
}

/* ------------------------------------------------------------------------- */
/*  CRC-32, byte buffers, files                                              */
/* ------------------------------------------------------------------------- */

/* Bit by bit, as the standard states it: reflected input and output,
   polynomial 0x04C11DB7 (0xEDB88320 reflected), init and final xor all ones. */
static uint32_t td_crc32_bitwise(const unsigned char *p, size_t n)
{
    uint32_t c = 0xffffffffu;
    size_t i;
    int k;
    for (i = 0; i < n; i++) {
        c ^= p[i];
        for (k = 0; k < 8; k++) c = (c >> 1) ^ (0xedb88320u & (0u - (c & 1u)));
    }
    return c ^ 0xffffffffu;
}

void test_data_crc32(void)
{
    static unsigned char buf[1000];
    const char *fox = "The quick brown fox jumps over the lazy dog";
    dfn_rng rng;
    size_t i, split;
    int bad = 0;
    CHECK(dfn_crc32(0, "123456789", 9) == 0xcbf43926u, "check value 0x%08lx", (unsigned long)dfn_crc32(0, "123456789", 9));
    CHECK(dfn_crc32(0, fox, strlen(fox)) == 0x414fa339u, "fox 0x%08lx", (unsigned long)dfn_crc32(0, fox, strlen(fox)));
    CHECK(dfn_crc32(0, "", 0) == 0 && dfn_crc32(0x12345678u, NULL, 0) == 0x12345678u, "empty input");
    CHECK(dfn_crc32(0x12345678u, NULL, 5) == 0x12345678u, "NULL data");
    dfn_rng_seed(&rng, 99, 1);
    for (i = 0; i < sizeof buf; i++) buf[i] = (unsigned char)dfn_rng_below(&rng, 256);
    for (i = 0; i <= sizeof buf; i += 37)
        bad += dfn_crc32(0, buf, i) != td_crc32_bitwise(buf, i);
    CHECK(bad == 0, "%d lengths differ from the bitwise definition", bad);
    bad = 0;
    for (split = 0; split <= sizeof buf; split++)
        bad += dfn_crc32(dfn_crc32(0, buf, split), buf + split, sizeof buf - split) != dfn_crc32(0, buf, sizeof buf);
    CHECK(bad == 0, "%d split points break chaining", bad);
    {
        uint32_t before = dfn_crc32(0, buf, sizeof buf);
        buf[500] ^= 4;
        CHECK(dfn_crc32(0, buf, sizeof buf) != before, "a flipped bit is not seen");
        CHECK(dfn_crc32(0, buf, sizeof buf) == td_crc32_bitwise(buf, sizeof buf), "after a bit flip");
    }
}

void test_data_byte_buffers(void)
{
#ifdef DFN_STATIC
    /* The writer and reader are static: only this unity build sees them. */
    unsigned char mem[64], small[10];
    float fs[3] = { 1.5f, -0.0f, 3.4028235e38f }, back[3] = { 9, 9, 9 };
    float nanv;
    uint32_t nanbits = 0x7fc01234u, u;
    unsigned char raw[3], raw4[4];
    dfn__wbuf w;
    dfn__rbuf r;
    size_t counted = 0;
    int i;
    memcpy(&nanv, &nanbits, 4);
    /* Count, then write the same sequence: the same length. */
    for (i = 0; i < 2; i++) {
        dfn__wbuf_init(&w, i ? (void *)mem : NULL, i ? sizeof mem : 0);
        dfn__put_u32(&w, 0x01020304u);
        dfn__put_i32(&w, -2);
        dfn__put_i32(&w, (int32_t)(-2147483647 - 1));
        dfn__put_f32(&w, 1.0f);
        dfn__put_f32(&w, nanv);
        dfn__put_f32s(&w, fs, 3);
        dfn__put_bytes(&w, "abc", 3);
        dfn__put_f32s(&w, NULL, 0);
        dfn__put_bytes(&w, NULL, 0);
        if (!i) counted = w.len;
        CHECK(w.err == 0 && w.len == 4 * 8 + 3, "pass %d: len %d err %d", i, (int)w.len, w.err);
    }
    CHECK(counted == w.len, "count %d, written %d", (int)counted, (int)w.len);
    /* Little-endian bytes, whatever the host. */
    CHECK(mem[0] == 4 && mem[1] == 3 && mem[2] == 2 && mem[3] == 1, "u32 bytes %02x %02x %02x %02x", mem[0], mem[1], mem[2], mem[3]);
    CHECK(mem[4] == 0xfe && mem[5] == 0xff && mem[6] == 0xff && mem[7] == 0xff, "i32 -2 bytes");
    CHECK(mem[8] == 0 && mem[11] == 0x80, "INT32_MIN bytes");
    CHECK(mem[12] == 0 && mem[13] == 0 && mem[14] == 0x80 && mem[15] == 0x3f, "1.0f bytes");
    CHECK(mem[16] == 0x34 && mem[17] == 0x12 && mem[18] == 0xc0 && mem[19] == 0x7f, "NaN payload bytes");
    CHECK(mem[32] == 'a' && mem[34] == 'c', "raw bytes");
    /* Read it back. */
    dfn__rbuf_init(&r, mem, w.len);
    CHECK(dfn__get_u32(&r) == 0x01020304u, "u32");
    CHECK(dfn__get_i32(&r) == -2, "i32 -2");
    CHECK(dfn__get_i32(&r) == (int32_t)(-2147483647 - 1), "INT32_MIN");
    CHECK(dfn__get_f32(&r) == 1.0f, "1.0f");
    { float g = dfn__get_f32(&r); memcpy(&u, &g, 4); CHECK(u == nanbits, "NaN bits 0x%08lx", (unsigned long)u); }
    dfn__get_f32s(&r, back, 3);
    CHECK(back[0] == 1.5f && back[1] == 0.0f && signbit(back[1]) && back[2] == 3.4028235e38f, "f32s");
    dfn__get_bytes(&r, raw, 3);
    CHECK(memcmp(raw, "abc", 3) == 0 && r.pos == r.len && r.err == 0, "bytes, all consumed");
    /* Truncated reads: err, zeros, and sticky. */
    dfn__rbuf_init(&r, mem, 6);
    CHECK(dfn__get_u32(&r) == 0x01020304u && r.err == 0, "first value of a short buffer");
    CHECK(dfn__get_u32(&r) == 0 && r.err != 0 && r.pos == 4, "a read past the end: err %d pos %d", r.err, (int)r.pos);
    CHECK(dfn__get_f32(&r) == 0.0f, "after an error, zeros");
    dfn__rbuf_init(&r, mem, 6);
    back[0] = back[1] = 7.0f;
    dfn__get_f32s(&r, back, 2);
    CHECK(r.err && back[0] == 0.0f && back[1] == 0.0f && r.pos == 0, "f32s past the end zeroes dst");
    dfn__rbuf_init(&r, mem, 6);
    dfn__get_bytes(&r, raw, 3);
    CHECK(!r.err && raw[0] == 4 && r.pos == 3, "3 of 6 bytes");
    memset(raw4, 1, sizeof raw4);
    dfn__get_bytes(&r, raw4, 4);
    CHECK(r.err && raw4[0] == 0 && raw4[3] == 0 && r.pos == 3, "4 bytes where 3 are left");
    dfn__rbuf_init(&r, mem, sizeof mem);
    dfn__get_f32s(&r, back, ((size_t)-1) / 2);                 /* n * 4 overflows */
    CHECK(r.err && r.pos == 0, "an overflowing count");
    dfn__rbuf_init(&r, NULL, 100);
    CHECK(dfn__get_u32(&r) == 0 && r.err, "NULL reader");
    /* Writer overflow: err, nothing past cap, sticky. */
    memset(small, 0xaa, sizeof small);
    dfn__wbuf_init(&w, small, 6);
    dfn__put_u32(&w, 0xffffffffu);
    dfn__put_u32(&w, 0x11111111u);
    CHECK(w.err && w.len == 4 && small[4] == 0xaa && small[5] == 0xaa, "u32 beyond cap: err %d len %d", w.err, (int)w.len);
    dfn__put_bytes(&w, "x", 1);
    CHECK(w.len == 4 && small[4] == 0xaa, "sticky error");
    memset(small, 0xaa, sizeof small);
    dfn__wbuf_init(&w, small, 6);
    dfn__put_f32s(&w, fs, 2);
    CHECK(w.err && w.len == 0 && small[0] == 0xaa, "f32s beyond cap writes nothing");
    dfn__wbuf_init(&w, NULL, 0);
    dfn__put_f32s(&w, fs, ((size_t)-1) / 2);
    CHECK(w.err, "an overflowing count when counting");
    dfn__wbuf_init(&w, NULL, 0);
    w.len = (size_t)-1 - 2;
    dfn__put_u32(&w, 1);
    CHECK(w.err, "a count that would overflow size_t");
    /* A float round trip of many values. */
    {
        static unsigned char big[4 * 1000];
        static float src[1000], dst[1000];
        dfn_rng rng;
        dfn_rng_seed(&rng, 5, 5);
        for (i = 0; i < 1000; i++) { u = dfn_rng_u32(&rng); memcpy(&src[i], &u, 4); }
        dfn__wbuf_init(&w, big, sizeof big);
        dfn__put_f32s(&w, src, 1000);
        dfn__rbuf_init(&r, big, w.len);
        dfn__get_f32s(&r, dst, 1000);
        CHECK(!w.err && !r.err && memcmp(src, dst, sizeof src) == 0, "1000 random bit patterns");
    }
#endif
}

void test_data_file_roundtrip(void)
{
    char path[256], tmp[300];
    static unsigned char data[100000];
    unsigned char *back = NULL;
    size_t len = 7;
    dfn_rng rng;
    FILE *f;
    size_t i;
    td_tmp_path(path, "roundtrip.bin");
    sprintf(tmp, "%s.tmp", path);
    dfn_rng_seed(&rng, 3, 1);
    for (i = 0; i < sizeof data; i++) data[i] = (unsigned char)dfn_rng_below(&rng, 256);
    CHECK(dfn_file_write_all(path, data, sizeof data) == DFN_OK, "write %s", path);
    CHECK(dfn_file_read_all(path, NULL, &back, &len) == DFN_OK && len == sizeof data && back &&
          memcmp(back, data, len) == 0 && back[len] == 0, "read back %d bytes", (int)len);
    dfn_file_free(back, NULL);
    f = fopen(tmp, "rb");
    CHECK(!f, "the temporary file is left behind");
    if (f) fclose(f);
    /* Overwrite with fewer bytes, then with nothing. */
    CHECK(dfn_file_write_all(path, "hello", 5) == DFN_OK, "overwrite");
    CHECK(dfn_file_read_all(path, NULL, &back, &len) == DFN_OK && len == 5 && memcmp(back, "hello", 5) == 0 &&
          strcmp((const char *)back, "hello") == 0, "overwritten");
    dfn_file_free(back, NULL);
    CHECK(dfn_file_write_all(path, NULL, 0) == DFN_OK, "empty write");
    CHECK(dfn_file_read_all(path, NULL, &back, &len) == DFN_OK && len == 0 && back && back[0] == 0, "empty read");
    dfn_file_free(back, NULL);
    dfn_file_free(NULL, NULL);
    /* A write that cannot happen leaves the old file alone. */
    CHECK(dfn_file_write_all(path, "keep", 4) == DFN_OK, "write keep");
    {
        char bad[300];
        sprintf(bad, "%s.missing_dir/x.bin", path);
        CHECK(dfn_file_write_all(bad, "x", 1) == DFN_ERR_IO, "a missing directory");
        CHECK(dfn_file_read_all(path, NULL, &back, &len) == DFN_OK && len == 4 && memcmp(back, "keep", 4) == 0, "kept");
        dfn_file_free(back, NULL);
    }
    remove(path);
    /* Reading errors. */
    back = (unsigned char *)&len;
    len = 7;
    CHECK(dfn_file_read_all(path, NULL, &back, &len) == DFN_ERR_IO && back == NULL && len == 0, "missing file");
    CHECK(dfn_file_read_all("/tmp", NULL, &back, &len) == DFN_ERR_IO && back == NULL, "a directory");
    CHECK(dfn_file_read_all(NULL, NULL, &back, &len) == DFN_ERR_NULL, "NULL path");
    CHECK(dfn_file_read_all(path, NULL, NULL, &len) == DFN_ERR_NULL, "NULL data");
    CHECK(dfn_file_read_all(path, NULL, &back, NULL) == DFN_ERR_NULL, "NULL len");
    CHECK(dfn_file_write_all(NULL, "x", 1) == DFN_ERR_NULL, "write NULL path");
    CHECK(dfn_file_write_all(path, NULL, 1) == DFN_ERR_NULL, "write NULL data");
    CHECK(dfn_file_write_all("", "x", 1) == DFN_ERR_INVALID_ARG, "write empty path");
    /* Larger than DFN_FILE_MAX_BYTES (a sparse file: no disk space used). */
    f = fopen(path, "wb");
    if (f && fseek(f, (long)DFN_FILE_MAX_BYTES, SEEK_SET) == 0 && fputc('x', f) != EOF) {
        fclose(f);
        CHECK(dfn_file_read_all(path, NULL, &back, &len) == DFN_ERR_INVALID_ARG && back == NULL, "a file of 1 GiB + 1");
    } else if (f) {
        fclose(f);
    }
    remove(path);
}
