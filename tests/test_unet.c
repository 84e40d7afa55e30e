/* The image layers and the U-Net: each layer's forward pass against the
   formula written out in double, each backward pass against central finite
   differences, the whole U-Net's gradient through the trainer, inference
   against the training forward pass, and bad input. */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "harness.h"
#include "../diffusion.h"

static float *randn(dfn_rng *rng, size_t n, float scale)
{
    float *p = (float *)malloc((n ? n : 1) * sizeof(float));
    size_t i;
    dfn_rng_normal_fill(rng, p, n);
    for (i = 0; i < n; i++) p[i] *= scale;
    return p;
}

static float *zeros(size_t n) { return (float *)calloc(n ? n : 1, sizeof(float)); }

static double dot_d(const float *a, const float *b, size_t n)
{
    double s = 0;
    size_t i;
    for (i = 0; i < n; i++) s += (double)a[i] * b[i];
    return s;
}

/* ---- convolution ---- */

/* Output (n, y, x, o) of the k x k convolution (padding (k - 1) / 2) of in
   (., H, W, Ci) by Wt (Co, k, k, Ci), plus b[o] (b may be NULL), in double. */
static double conv_ref(const float *in, const float *Wt, const float *b, int H, int W, int Ci, int k, int n, int y,
                       int x, int o)
{
    double s = b ? b[o] : 0;
    int dy, dx, i, p = (k - 1) / 2;
    for (dy = 0; dy < k; dy++)
        for (dx = 0; dx < k; dx++) {
            int sy = y + dy - p, sx = x + dx - p;
            if (sy < 0 || sy >= H || sx < 0 || sx >= W) continue;
            for (i = 0; i < Ci; i++)
                s += (double)Wt[((o * k + dy) * k + dx) * Ci + i] * in[((n * H + sy) * W + sx) * Ci + i];
        }
    return s;
}

typedef struct {
    int B, H, W, Ci, Co, k, wino;                /* wino: through dfn_conv2d_winograd_forward */
    float *in, *Wt, *b, *c, *out, *col, *work;
    size_t col_floats;
} conv_case;

static double conv_loss(void *user, const float *p)
{
    conv_case *cc = (conv_case *)user;
    (void)p;
    if (cc->wino)
        dfn_conv2d_winograd_forward(cc->out, cc->in, cc->Wt, cc->b, cc->B, cc->H, cc->W, cc->Ci, cc->Co, cc->col,
                                    cc->col_floats, cc->work);
    else
        dfn_conv2d_forward(cc->out, cc->in, cc->Wt, cc->b, cc->B, cc->H, cc->W, cc->Ci, cc->Co, cc->k, cc->col,
                           cc->col_floats, cc->work);
    return dot_d(cc->c, cc->out, (size_t)cc->B * cc->H * cc->W * cc->Co);
}

void test_unet_conv_matches_formula(void)
{
    /* out[y][x][o] = b[o] + sum Wt[o][dy][dx][i] in[y+dy-p][x+dx-p][i] in
       double, for k = 1 and 3, with a scratch of one image (groups of one)
       and of the whole batch. */
    dfn_rng rng;
    int k, g, B = 3, H = 5, W = 4, Ci = 3, Co = 5;
    float *work = (float *)malloc(dfn_gemm_work_size());
    dfn_rng_seed(&rng, 5, 1);
    for (k = 1; k <= 3; k += 2)
        for (g = 1; g <= B; g += B - 1) {
            size_t colf = dfn_conv2d_col_size(H, W, Ci, k) * g;
            float *in = randn(&rng, (size_t)B * H * W * Ci, 1), *Wt = randn(&rng, (size_t)Co * k * k * Ci, 1);
            float *b = randn(&rng, Co, 1), *out = zeros((size_t)B * H * W * Co), *col = zeros(colf);
            double maxerr = 0;
            int n, y, x, o;
            dfn_conv2d_forward(out, in, Wt, b, B, H, W, Ci, Co, k, col, colf, work);
            for (n = 0; n < B; n++)
                for (y = 0; y < H; y++)
                    for (x = 0; x < W; x++)
                        for (o = 0; o < Co; o++) {
                            double s = conv_ref(in, Wt, b, H, W, Ci, k, n, y, x, o) -
                                       out[((n * H + y) * W + x) * Co + o];
                            if (fabs(s) > maxerr) maxerr = fabs(s);
                        }
            CHECK(maxerr < 1e-5, "k = %d, groups of %d: max error %g", k, g, maxerr);
            free(in); free(Wt); free(b); free(out); free(col);
        }
    free(work);
}

void test_unet_conv_gradients(void)
{
    /* Against finite differences, for k = 1 and 3, 3 -> 4 and 4 -> 3
       channels, with a scratch of one image (tail 0), of one image plus
       the transposed dW (tail 1: dW through col^T dout in the scratch's
       tail) and of one image of max(Ci, Co) channels plus two kernels
       (tail 2: din as the convolution of dout with the turned kernel too);
       dW and db start nonzero (the backward pass adds to them). */
    dfn_rng rng;
    int k, wrt, tail, swap, cs;
    float *work = (float *)malloc(dfn_gemm_work_size());
    dfn_rng_seed(&rng, 6, 1);
    for (k = 1; k <= 3; k += 2)
        for (cs = 0; cs < 6; cs++) {             /* (swap, tail) = (cs / 3, cs % 3) */
            conv_case cc;
            size_t nin, nw, nout, i;
            float *din, *dW, *db, *dW0, *db0;
            double err;
            size_t worst;
            swap = cs / 3;
            tail = cs % 3;
            cc.B = 2; cc.H = 4; cc.W = 5; cc.Ci = swap ? 4 : 3; cc.Co = swap ? 3 : 4; cc.k = k; cc.wino = 0;
            nin = (size_t)cc.B * cc.H * cc.W * cc.Ci;
            nw = (size_t)cc.Co * k * k * cc.Ci;
            nout = (size_t)cc.B * cc.H * cc.W * cc.Co;
            cc.col_floats = tail < 2 ? dfn_conv2d_col_size(cc.H, cc.W, cc.Ci, k) + tail * nw
                                     : dfn_conv2d_col_size(cc.H, cc.W, 4, k) + 2 * nw;
            cc.in = randn(&rng, nin, 1); cc.Wt = randn(&rng, nw, 1); cc.b = randn(&rng, cc.Co, 1);
            cc.c = randn(&rng, nout, 1); cc.out = zeros(nout); cc.col = zeros(cc.col_floats + 1);
            cc.work = work;
            din = zeros(nin); dW = randn(&rng, nw, 1); db = randn(&rng, cc.Co, 1);
            dW0 = zeros(nw); db0 = zeros(cc.Co);
            memcpy(dW0, dW, nw * sizeof(float));
            memcpy(db0, db, (size_t)cc.Co * sizeof(float));
            cc.col[cc.col_floats] = 777.0f;
            dfn_conv2d_backward(din, dW, db, cc.c, cc.in, cc.Wt, cc.B, cc.H, cc.W, cc.Ci, cc.Co, k, cc.col,
                                cc.col_floats, work);
            CHECK(cc.col[cc.col_floats] == 777.0f, "k = %d: wrote past the scratch", k);
            for (i = 0; i < nw; i++) dW[i] -= dW0[i];
            for (i = 0; i < (size_t)cc.Co; i++) db[i] -= db0[i];
            for (wrt = 0; wrt < 3; wrt++) {
                float *p = wrt == 0 ? cc.in : wrt == 1 ? cc.Wt : cc.b, *g = wrt == 0 ? din : wrt == 1 ? dW : db;
                size_t n = wrt == 0 ? nin : wrt == 1 ? nw : (size_t)cc.Co;
                /* the loss is linear in each of in, Wt, b: central differences
                   are exact but for rounding, which a wide step keeps small */
                CHECK(dfn_check_grad(conv_loss, &cc, p, n, g, 1, 0.25f, 1e-3, &err, &worst) == DFN_OK &&
                      err < 1e-2, "k = %d, %d -> %d, tail %d, wrt %d: relative error %g at %d", k, cc.Ci,
                      cc.Co, tail, wrt, err, (int)worst);
            }
            free(cc.in); free(cc.Wt); free(cc.b); free(cc.c); free(cc.out); free(cc.col);
            free(din); free(dW); free(db); free(dW0); free(db0);
        }
    free(work);
}

/* ---- Winograd F(2x2, 3x3) (MATH.md §14) ---- */

/* The first-order bound of MATH.md §14 on the error of output (n, y, x, o):
   (Ci + 8) u S, S = |b| + sum over the 16 positions (a, e) of the output's
   |A^T[r][a] A^T[c][e]| sum_i |U_i[a][e]| (|B^T| |d_i| |B|)[a][e], with d_i
   the tile's 4 x 4 input (zeros outside), U_i = G g G^T in double. */
static double wino_bound_s(const float *in, const float *Wt, const float *b, int H, int W, int Ci, int n, int y,
                           int x, int o)
{
    static const double At[2][4] = { { 1, 1, 1, 0 }, { 0, 1, -1, -1 } };
    static const double Bt[4][4] = { { 1, 0, -1, 0 }, { 0, 1, 1, 0 }, { 0, -1, 1, 0 }, { 0, 1, 0, -1 } };
    static const double G[4][3] = { { 1, 0, 0 }, { .5, .5, .5 }, { .5, -.5, .5 }, { 0, 0, 1 } };
    int ty = y / 2, tx = x / 2, r = y % 2, c = x % 2, i, a, e, p, q;
    double S = b ? fabs(b[o]) : 0;
    for (i = 0; i < Ci; i++) {
        double d[4][4], U[4][4], V[4][4];
        for (a = 0; a < 4; a++)
            for (e = 0; e < 4; e++) {
                int sy = 2 * ty - 1 + a, sx = 2 * tx - 1 + e;
                d[a][e] = sy < 0 || sy >= H || sx < 0 || sx >= W ? 0 : fabs(in[((n * H + sy) * W + sx) * Ci + i]);
            }
        for (a = 0; a < 4; a++)
            for (e = 0; e < 4; e++) {
                double u = 0, v = 0;
                for (p = 0; p < 3; p++)
                    for (q = 0; q < 3; q++) u += G[a][p] * Wt[((o * 3 + p) * 3 + q) * Ci + i] * G[e][q];
                for (p = 0; p < 4; p++)
                    for (q = 0; q < 4; q++) v += fabs(Bt[a][p]) * d[p][q] * fabs(Bt[e][q]);
                U[a][e] = fabs(u);
                V[a][e] = v;
            }
        for (a = 0; a < 4; a++)
            for (e = 0; e < 4; e++) S += fabs(At[r][a] * At[c][e]) * U[a][e] * V[a][e];
    }
    return S;
}

void test_unet_winograd_matches_formula(void)
{
    /* dfn_conv2d_winograd_forward against the convolution in double on
       awkward shapes (odd sides: half tiles at the right and bottom edges;
       one channel; 1 x 1 and 2 x 3 images; channel counts off the 8-wide
       blocks), in groups of one image and of two then one: every output
       within its bound (Ci + 8) u S of MATH.md §14. */
    static const int shape[][4] = { { 5, 7, 3, 5 }, { 1, 1, 2, 2 }, { 2, 3, 1, 1 }, { 6, 4, 1, 9 },
                                    { 9, 5, 17, 11 }, { 4, 4, 24, 16 } };
    dfn_rng rng;
    int s, gi;
    float *work = (float *)malloc(dfn_gemm_work_size());
    double worst_ratio = 0;
    dfn_rng_seed(&rng, 51, 1);
    for (s = 0; s < (int)(sizeof shape / sizeof shape[0]); s++)
        for (gi = 0; gi < 2; gi++) {
            int B = 3, H = shape[s][0], W = shape[s][1], Ci = shape[s][2], Co = shape[s][3];
            size_t colf = dfn_conv2d_winograd_size(H, W, Ci, Co, gi ? 2 : 1);
            size_t nout = (size_t)B * H * W * Co;
            float *in = randn(&rng, (size_t)B * H * W * Ci, 1), *Wt = randn(&rng, (size_t)Co * 9 * Ci, 1);
            float *b = randn(&rng, Co, 1), *out = zeros(nout + 1), *col = zeros(colf + 1);
            int n, y, x, o, bad = 0;
            out[nout] = 777.0f;
            col[colf] = 777.0f;
            CHECK(dfn_conv2d_winograd_forward(out, in, Wt, gi ? b : NULL, B, H, W, Ci, Co, col, colf, work) ==
                  DFN_OK, "shape %d: refused", s);
            CHECK(out[nout] == 777.0f && col[colf] == 777.0f, "shape %d: wrote past out or col", s);
            for (n = 0; n < B; n++)
                for (y = 0; y < H; y++)
                    for (x = 0; x < W; x++)
                        for (o = 0; o < Co; o++) {
                            double want = conv_ref(in, Wt, gi ? b : NULL, H, W, Ci, 3, n, y, x, o), err, bound;
                            err = fabs(want - out[((n * H + y) * W + x) * Co + o]);
                            bound = (Ci + 8) * ldexp(1.0, -24) *
                                    wino_bound_s(in, Wt, gi ? b : NULL, H, W, Ci, n, y, x, o);
                            if (err > bound) bad++;
                            if (bound > 0 && err / bound > worst_ratio) worst_ratio = err / bound;
                        }
            CHECK(bad == 0, "shape %d (%d x %d, %d -> %d), groups %d: %d outputs beyond the bound", s, H, W, Ci, Co,
                  gi ? 2 : 1, bad);
            free(in); free(Wt); free(b); free(out); free(col);
        }
    /* the bound is not vacuous: the worst output uses a good part of it */
    CHECK(worst_ratio > 0.01 && worst_ratio <= 1, "worst error / bound %g", worst_ratio);
    free(work);
}

#ifndef DFN_NO_TRAINING
void test_unet_winograd_gradients(void)
{
    /* dfn_conv2d_winograd_backward against the gradients written out in
       double (din[y][x][i] = sum Wt[o][dy][dx][i] dout[y-dy+1][x-dx+1][o],
       dW[o][dy][dx][i] = sum dout[y][x][o] in[y+dy-1][x+dx-1][i], db = sum
       dout) on the awkward shapes, adding to nonzero dW and db; and
       against central differences of the Winograd forward pass. */
    static const int shape[][4] = { { 5, 7, 3, 5 }, { 1, 1, 2, 2 }, { 6, 4, 1, 9 }, { 9, 5, 17, 11 } };
    dfn_rng rng;
    int s;
    float *work = (float *)malloc(dfn_gemm_work_size());
    dfn_rng_seed(&rng, 52, 1);
    for (s = 0; s < (int)(sizeof shape / sizeof shape[0]); s++) {
        int B = 3, H = shape[s][0], W = shape[s][1], Ci = shape[s][2], Co = shape[s][3];
        size_t colf = dfn_conv2d_winograd_size(H, W, Ci, Co, 2), nin = (size_t)B * H * W * Ci;
        size_t nout = (size_t)B * H * W * Co, nw = (size_t)Co * 9 * Ci, j;
        float *in = randn(&rng, nin, 1), *Wt = randn(&rng, nw, 1), *dout = randn(&rng, nout, 1);
        float *din = zeros(nin), *dW = randn(&rng, nw, 1), *db = randn(&rng, Co, 1), *col = zeros(colf);
        double *rin = (double *)calloc(nin, sizeof(double)), *rw = (double *)calloc(nw, sizeof(double));
        double *ain = (double *)calloc(nin, sizeof(double)), *aw = (double *)calloc(nw, sizeof(double));
        double *rb = (double *)calloc((size_t)Co, sizeof(double)), wi = 0, ww = 0, wb = 0;
        int n, y, x, o, dy, dx, i;
        for (j = 0; j < nw; j++) rw[j] = dW[j];
        for (o = 0; o < Co; o++) rb[o] = db[o];
        for (n = 0; n < B; n++)
            for (y = 0; y < H; y++)
                for (x = 0; x < W; x++)
                    for (o = 0; o < Co; o++) {
                        double g = dout[((n * H + y) * W + x) * Co + o];
                        rb[o] += g;
                        for (dy = 0; dy < 3; dy++)
                            for (dx = 0; dx < 3; dx++) {
                                int sy = y + dy - 1, sx = x + dx - 1;
                                if (sy < 0 || sy >= H || sx < 0 || sx >= W) continue;
                                for (i = 0; i < Ci; i++) {
                                    size_t pi = ((size_t)(n * H + sy) * W + sx) * Ci + i;
                                    size_t pw = ((size_t)(o * 3 + dy) * 3 + dx) * Ci + i;
                                    rin[pi] += Wt[pw] * g;
                                    ain[pi] += fabs(Wt[pw] * g);
                                    rw[pw] += g * in[pi];
                                    aw[pw] += fabs(g * in[pi]);
                                }
                            }
                    }
        CHECK(dfn_conv2d_winograd_backward(din, dW, db, dout, in, Wt, B, H, W, Ci, Co, col, colf, work) == DFN_OK,
              "shape %d: refused", s);
        /* relative to the sum of the terms' sizes: the transforms' rounding
           is a few units of it (measured 0.4-1.3e-7) */
        for (j = 0; j < nin; j++) wi = fmax(wi, fabs(din[j] - rin[j]) / (ain[j] + 1e-30));
        for (j = 0; j < nw; j++) ww = fmax(ww, fabs(dW[j] - rw[j]) / (aw[j] + fabs(rw[j]) + 1e-30));
        for (o = 0; o < Co; o++) wb = fmax(wb, fabs(db[o] - rb[o]));
        CHECK(wi < 2e-6 && ww < 2e-6 && wb < 1e-4, "shape %d (%d x %d, %d -> %d): din %g, dW %g, db %g", s, H, W,
              Ci, Co, wi, ww, wb);
        free(in); free(Wt); free(dout); free(din); free(dW); free(db); free(col);
        free(rin); free(rw); free(ain); free(aw); free(rb);
    }
    {
        /* central differences of the Winograd forward pass (a loss linear in
           in and Wt: exact but for rounding) */
        conv_case cc;
        size_t nin, nw, nout, worst;
        float *din, *dW, *db;
        double err;
        int wrt;
        cc.B = 2; cc.H = 5; cc.W = 3; cc.Ci = 3; cc.Co = 4; cc.k = 3; cc.wino = 1;
        nin = (size_t)cc.B * cc.H * cc.W * cc.Ci; nw = (size_t)cc.Co * 9 * cc.Ci; nout = (size_t)cc.B * cc.H * cc.W * cc.Co;
        cc.col_floats = dfn_conv2d_winograd_size(cc.H, cc.W, cc.Ci, cc.Co, 1);
        cc.in = randn(&rng, nin, 1); cc.Wt = randn(&rng, nw, 1); cc.b = randn(&rng, cc.Co, 1);
        cc.c = randn(&rng, nout, 1); cc.out = zeros(nout); cc.col = zeros(cc.col_floats); cc.work = work;
        din = zeros(nin); dW = zeros(nw); db = zeros(cc.Co);
        CHECK(dfn_conv2d_winograd_backward(din, dW, db, cc.c, cc.in, cc.Wt, cc.B, cc.H, cc.W, cc.Ci, cc.Co, cc.col,
                                           cc.col_floats, work) == DFN_OK, "refused");
        for (wrt = 0; wrt < 3; wrt++) {
            float *p = wrt == 0 ? cc.in : wrt == 1 ? cc.Wt : cc.b, *g = wrt == 0 ? din : wrt == 1 ? dW : db;
            size_t n = wrt == 0 ? nin : wrt == 1 ? nw : (size_t)cc.Co;
            CHECK(dfn_check_grad(conv_loss, &cc, p, n, g, 1, 0.25f, 1e-3, &err, &worst) == DFN_OK && err < 1e-2,
                  "wrt %d: relative error %g at %d", wrt, err, (int)worst);
        }
        free(cc.in); free(cc.Wt); free(cc.b); free(cc.c); free(cc.out); free(cc.col); free(din); free(dW); free(db);
    }
    free(work);
}
#endif

void test_unet_winograd_errors_and_dispatch(void)
{
    /* Bad arguments are refused before anything is written; and
       dfn_conv2d_forward / _backward take Winograd where the rule says
       (its bits exactly, but with DFN_PORTABLE_MATH: im2col's), im2col
       where the scratch holds only that (its bits), the two within rounding
       of each other. */
    enum { B = 2, H = 10, W = 9, Ci = 32, Co = 32 };
    size_t nin = (size_t)B * H * W * Ci, nout = (size_t)B * H * W * Co, nw = (size_t)Co * 9 * Ci;
    size_t small = dfn_conv2d_col_size(H, W, Ci, 3), big = dfn_conv2d_winograd_size(H, W, Ci, Co, B), j;
    float *work = (float *)malloc(dfn_gemm_work_size()), *in, *Wt, *b, *dout, *col, *out[3], *din[3], *dW[3], *db[3];
    dfn_rng rng;
    int pass;
    double worst = 0;
    dfn_rng_seed(&rng, 53, 1);
    in = randn(&rng, nin, 1); Wt = randn(&rng, nw, 0.1f); b = randn(&rng, Co, 1); dout = randn(&rng, nout, 1);
    col = zeros(big > small ? big : small);
    CHECK(small < dfn_conv2d_winograd_size(H, W, Ci, Co, 1), "im2col's scratch must not hold Winograd's here");
    CHECK(dfn_conv2d_winograd_size(0, W, Ci, Co, 1) == 0 && dfn_conv2d_winograd_size(H, W, Ci, Co, 0) == 0, "size 0");
    CHECK(dfn_conv2d_winograd_size(1 << 30, 1 << 30, 1 << 20, 1 << 20, 1) == 0, "an overflowing size");
    CHECK(dfn_conv2d_winograd_size(2147483647, 1, 1, 1, 1) == 0 || dfn_conv2d_winograd_size(2147483647, 1, 1, 1, 1) ==
          16 * (size_t)1073741824 * 2 + 32, "a side of 2^31 - 1");
    CHECK(dfn_conv2d_winograd_size(H, W, Ci, Co, 1) == 16 * 5 * 5 * (size_t)(Ci + Co) + 32 * (size_t)Ci * Co,
          "the documented size");
    for (pass = 0; pass < 3; pass++) {
        out[pass] = zeros(nout); din[pass] = zeros(nin); dW[pass] = zeros(nw); db[pass] = zeros(Co);
    }
    CHECK(dfn_conv2d_winograd_forward(out[0], in, Wt, b, 65536, 65536, 65536, Ci, Co, col, big, work) ==
          DFN_ERR_INVALID_ARG, "2^46 tiles");
    CHECK(dfn_conv2d_winograd_forward(out[0], in, Wt, b, B, H, W, Ci, Co, col, small, work) ==
          DFN_ERR_BUFFER_TOO_SMALL, "small scratch");
    CHECK(dfn_conv2d_winograd_forward(NULL, in, Wt, b, B, H, W, Ci, Co, col, big, work) == DFN_ERR_NULL, "NULL out");
    CHECK(dfn_conv2d_winograd_forward(out[0], in, Wt, b, 0, H, W, Ci, Co, col, big, work) == DFN_ERR_INVALID_ARG,
          "B = 0");
    CHECK(dfn_conv2d_winograd_forward(out[0], in, Wt, b, B, H, -1, Ci, Co, col, big, work) == DFN_ERR_INVALID_ARG,
          "W < 0");
    for (j = 0; j < nout; j++) CHECK(out[0][j] == 0.0f, "a refused call wrote out[%d]", (int)j);
#ifndef DFN_NO_TRAINING
    CHECK(dfn_conv2d_winograd_backward(din[0], dW[0], db[0], NULL, in, Wt, B, H, W, Ci, Co, col, big, work) ==
          DFN_ERR_NULL, "NULL dout");
    CHECK(dfn_conv2d_winograd_backward(din[0], dW[0], db[0], dout, in, Wt, B, H, W, Ci, Co, col, small, work) ==
          DFN_ERR_BUFFER_TOO_SMALL, "small scratch");
    for (j = 0; j < nw; j++) CHECK(dW[0][j] == 0.0f, "a refused call wrote dW[%d]", (int)j);
#endif
    CHECK(dfn_conv2d_winograd_forward(out[0], in, Wt, b, B, H, W, Ci, Co, col, big, work) == DFN_OK, "forward");
    dfn_conv2d_forward(out[1], in, Wt, b, B, H, W, Ci, Co, 3, col, big, work);
    dfn_conv2d_forward(out[2], in, Wt, b, B, H, W, Ci, Co, 3, col, small, work);
#ifndef DFN_PORTABLE_MATH
    CHECK(memcmp(out[0], out[1], nout * sizeof(float)) == 0, "the rule's forward shape did not take Winograd");
#else
    CHECK(memcmp(out[2], out[1], nout * sizeof(float)) == 0, "portable math took Winograd");
#endif
    for (j = 0; j < nout; j++) {
        double d = fabs(out[0][j] - out[2][j]);
        if (d > worst) worst = d;
    }
#ifndef DFN_NO_TRAINING
    CHECK(dfn_conv2d_winograd_backward(din[0], dW[0], db[0], dout, in, Wt, B, H, W, Ci, Co, col, big, work) == DFN_OK,
          "backward");
    dfn_conv2d_backward(din[1], dW[1], db[1], dout, in, Wt, B, H, W, Ci, Co, 3, col, big, work);
    dfn_conv2d_backward(din[2], dW[2], db[2], dout, in, Wt, B, H, W, Ci, Co, 3, col, small, work);
#ifndef DFN_PORTABLE_MATH
    CHECK(memcmp(din[0], din[1], nin * sizeof(float)) == 0 && memcmp(dW[0], dW[1], nw * sizeof(float)) == 0,
          "the rule's backward shape did not take Winograd");
#else
    /* im2col's backward bits depend on how much scratch it has (dW summed
       transposed, din through the turned kernel): here only "not
       Winograd's bits" can be asked */
    CHECK(memcmp(dW[0], dW[1], nw * sizeof(float)) != 0, "portable math took Winograd");
#endif
    /* (plain loops: aarch64 gcc 12 failed to vectorize an fmax reduction
       here with an internal compiler error) */
    for (j = 0; j < nin; j++) {
        double d = fabs(din[0][j] - din[2][j]) / 10;
        if (d > worst) worst = d;
    }
    for (j = 0; j < nw; j++) {
        double d = fabs(dW[0][j] - dW[2][j]) / 100;
        if (d > worst) worst = d;
    }
#endif
    CHECK(worst < 1e-4 && worst > 0, "Winograd against im2col: %g", worst);
    for (pass = 0; pass < 3; pass++) {
        free(out[pass]); free(din[pass]); free(dW[pass]); free(db[pass]);
    }
    free(in); free(Wt); free(b); free(dout); free(col); free(work);
}

/* ---- GroupNorm ---- */

typedef struct {
    int B, N, C, G;
    float *x, *gamma, *beta, *c, *y, *stats;
} gn_case;

static double gn_loss(void *user, const float *p)
{
    gn_case *g = (gn_case *)user;
    (void)p;
    dfn_groupnorm_forward(g->y, g->stats, g->x, g->gamma, g->beta, g->B, g->N, g->C, g->G);
    return dot_d(g->c, g->y, (size_t)g->B * g->N * g->C);
}

static void groupnorm_case(int B, int N, int C, int G, unsigned seed)
{
    dfn_rng rng;
    gn_case g;
    size_t n, i, worst;
    float *dx, *dg, *db;
    double err, maxerr = 0;
    int b, gr, wrt;
    dfn_rng_seed(&rng, seed, 1);
    g.B = B; g.N = N; g.C = C; g.G = G;
    n = (size_t)g.B * g.N * g.C;
    g.x = randn(&rng, n, 2); g.gamma = randn(&rng, g.C, 1); g.beta = randn(&rng, g.C, 1);
    g.c = randn(&rng, n, 1); g.y = zeros(n); g.stats = zeros((size_t)g.B * g.G * 2);
    for (i = 0; i < n; i++) g.x[i] += 3.0f;      /* a mean to remove */
    gn_loss(&g, NULL);
    /* the formula, in double */
    for (b = 0; b < g.B; b++)
        for (gr = 0; gr < g.G; gr++) {
            int cg = g.C / g.G, k, c;
            double s = 0, ss = 0, mean, var;
            for (k = 0; k < g.N; k++)
                for (c = 0; c < cg; c++) s += g.x[(b * g.N + k) * g.C + gr * cg + c];
            mean = s / (g.N * cg);
            for (k = 0; k < g.N; k++)
                for (c = 0; c < cg; c++) {
                    double d = g.x[(b * g.N + k) * g.C + gr * cg + c] - mean;
                    ss += d * d;
                }
            var = ss / (g.N * cg);
            for (k = 0; k < g.N; k++)
                for (c = 0; c < cg; c++) {
                    int ch = gr * cg + c, o = (b * g.N + k) * g.C + ch;
                    double want = g.gamma[ch] * (g.x[o] - mean) / sqrt(var + 1e-5) + g.beta[ch];
                    if (fabs(want - g.y[o]) > maxerr) maxerr = fabs(want - g.y[o]);
                }
        }
    CHECK(maxerr < 1e-5, "C %d G %d forward: max error %g", C, G, maxerr);
    dx = zeros(n); dg = zeros(g.C); db = zeros(g.C);
    dfn_groupnorm_backward(dx, dg, db, g.c, g.x, g.stats, g.gamma, g.B, g.N, g.C, g.G);
    {
        /* dx against the closed form in double: r (gd - mean(gd) - xhat mean(gd xhat)), gd = dy gamma */
        double worst_dx = 0, scale = 0;
        for (b = 0; b < g.B; b++)
            for (gr = 0; gr < g.G; gr++) {
                int cg = g.C / g.G, k, c;
                double s = 0, ss = 0, mean, r, mg = 0, mgx = 0, cnt = (double)g.N * cg;
                for (k = 0; k < g.N; k++)
                    for (c = 0; c < cg; c++) s += g.x[(b * g.N + k) * g.C + gr * cg + c];
                mean = s / cnt;
                for (k = 0; k < g.N; k++)
                    for (c = 0; c < cg; c++) {
                        double d = g.x[(b * g.N + k) * g.C + gr * cg + c] - mean;
                        ss += d * d;
                    }
                r = 1 / sqrt(ss / cnt + 1e-5);
                for (k = 0; k < g.N; k++)
                    for (c = 0; c < cg; c++) {
                        int o = (b * g.N + k) * g.C + gr * cg + c;
                        double gd = (double)g.c[o] * g.gamma[gr * cg + c];
                        mg += gd;
                        mgx += gd * (g.x[o] - mean) * r;
                    }
                mg /= cnt;
                mgx /= cnt;
                for (k = 0; k < g.N; k++)
                    for (c = 0; c < cg; c++) {
                        int o = (b * g.N + k) * g.C + gr * cg + c;
                        double want = r * ((double)g.c[o] * g.gamma[gr * cg + c] - mg - (g.x[o] - mean) * r * mgx);
                        worst_dx = fmax(worst_dx, fabs(want - dx[o]));
                        scale = fmax(scale, fabs(want));
                    }
            }
        CHECK(worst_dx <= 1e-5 * scale, "C %d G %d: dx differs from the closed form by %g (scale %g)", C, G,
              worst_dx, scale);
    }
    /* central differences where a group is small enough for them to be
       accurate in float (a large group's per-element gradient is small) */
    for (wrt = g.N * g.C / g.G <= 100 ? 0 : 1; wrt < 3; wrt++) {
        float *p = wrt == 0 ? g.x : wrt == 1 ? g.gamma : g.beta, *gr2 = wrt == 0 ? dx : wrt == 1 ? dg : db;
        size_t m = wrt == 0 ? n : (size_t)g.C;
        CHECK(dfn_check_grad(gn_loss, &g, p, m, gr2, 1, 1e-2f, 1e-3, &err, &worst) == DFN_OK && err < 2e-2,
              "C %d G %d wrt %d: relative error %g at %d", C, G, wrt, err, (int)worst);
    }
    free(g.x); free(g.gamma); free(g.beta); free(g.c); free(g.y); free(g.stats); free(dx); free(dg); free(db);
}

void test_unet_groupnorm(void)
{
    /* small groups (many per slice of channels) and one group wider than a slice */
    groupnorm_case(2, 6, 6, 3, 7);
    groupnorm_case(2, 5, 130, 1, 8);
    groupnorm_case(1, 4, 96, 8, 9);
}

void test_unet_pool_and_upsample(void)
{
    /* Forward against the definition; backward as the adjoint:
       <A x, y> = <x, A^T y> for random x, y. */
    dfn_rng rng;
    int B = 2, H = 4, W = 6, C = 3, b, y, x, c;
    size_t nin = (size_t)B * H * W * C, nsmall = nin / 4;
    float *in = NULL, *small = NULL, *out, *back, *ybig, *ysmall;
    double err = 0, l, r;
    dfn_rng_seed(&rng, 8, 1);
    in = randn(&rng, nin, 1); small = randn(&rng, nsmall, 1);
    out = zeros(nin); back = zeros(nin);
    ybig = randn(&rng, nin, 1); ysmall = randn(&rng, nsmall, 1);
    dfn_avgpool2_forward(out, in, B, H, W, C);
    for (b = 0; b < B; b++)
        for (y = 0; y < H / 2; y++)
            for (x = 0; x < W / 2; x++)
                for (c = 0; c < C; c++) {
                    double s = 0;
                    int dy, dx;
                    for (dy = 0; dy < 2; dy++)
                        for (dx = 0; dx < 2; dx++) s += in[((b * H + 2 * y + dy) * W + 2 * x + dx) * C + c];
                    err = fmax(err, fabs(s / 4 - out[((b * (H / 2) + y) * (W / 2) + x) * C + c]));
                }
    CHECK(err < 1e-6, "avgpool forward: %g", err);
    l = dot_d(out, ysmall, nsmall);
    dfn_avgpool2_backward(back, ysmall, B, H, W, C);
    r = dot_d(in, back, nin);
    CHECK(fabs(l - r) < 1e-5 * (1 + fabs(l)), "avgpool adjoint: %g vs %g", l, r);

    dfn_upsample2_forward(out, small, B, H / 2, W / 2, C);
    err = 0;
    for (b = 0; b < B; b++)
        for (y = 0; y < H; y++)
            for (x = 0; x < W; x++)
                for (c = 0; c < C; c++)
                    err = fmax(err, fabs(out[((b * H + y) * W + x) * C + c] -
                                         small[((b * (H / 2) + y / 2) * (W / 2) + x / 2) * C + c]));
    CHECK(err == 0, "upsample forward: %g", err);
    l = dot_d(out, ybig, nin);
    memset(back, 0, nsmall * sizeof(float));
    dfn_upsample2_backward(back, ybig, B, H / 2, W / 2, C);
    r = dot_d(small, back, nsmall);
    CHECK(fabs(l - r) < 1e-5 * (1 + fabs(l)), "upsample adjoint: %g vs %g", l, r);
    free(in); free(small); free(out); free(back); free(ybig); free(ysmall);
}

/* ---- attention ---- */

typedef struct {
    int B, N, C;
    float *x, *Wqkv, *bqkv, *Wo, *bo, *c, *out, *qkv, *probs, *o, *work;
} at_case;

static double at_loss(void *user, const float *p)
{
    at_case *a = (at_case *)user;
    (void)p;
    dfn_attention_forward(a->out, a->qkv, a->probs, a->o, a->x, a->Wqkv, a->bqkv, a->Wo, a->bo,
                          a->B, a->N, a->C, a->work);
    return dot_d(a->c, a->out, (size_t)a->B * a->N * a->C);
}

void test_unet_attention(void)
{
    dfn_rng rng;
    at_case a;
    size_t nx, worst;
    float *dx, *dWqkv, *dbqkv, *dWo, *dbo, *scratch;
    double err, maxerr = 0;
    int b, i, j, d, e, wrt;
    dfn_rng_seed(&rng, 9, 1);
    a.B = 2; a.N = 5; a.C = 4;
    nx = (size_t)a.B * a.N * a.C;
    a.x = randn(&rng, nx, 1); a.Wqkv = randn(&rng, 3 * a.C * a.C, 0.7f); a.bqkv = randn(&rng, 3 * a.C, 0.3f);
    a.Wo = randn(&rng, a.C * a.C, 0.7f); a.bo = randn(&rng, a.C, 0.3f); a.c = randn(&rng, nx, 1);
    a.out = zeros(nx); a.qkv = zeros(3 * nx); a.probs = zeros((size_t)a.B * a.N * a.N); a.o = zeros(nx);
    a.work = (float *)malloc(dfn_gemm_work_size());
    at_loss(&a, NULL);
    /* the formula in double */
    for (b = 0; b < a.B; b++) {
        double q[5][4], k[5][4], v[5][4], P[5][5];
        for (i = 0; i < a.N; i++)
            for (d = 0; d < a.C; d++) {
                double sq = a.bqkv[d], sk = a.bqkv[a.C + d], sv = a.bqkv[2 * a.C + d];
                for (e = 0; e < a.C; e++) {
                    double xv = a.x[(b * a.N + i) * a.C + e];
                    sq += a.Wqkv[d * a.C + e] * xv;
                    sk += a.Wqkv[(a.C + d) * a.C + e] * xv;
                    sv += a.Wqkv[(2 * a.C + d) * a.C + e] * xv;
                }
                q[i][d] = sq; k[i][d] = sk; v[i][d] = sv;
            }
        for (i = 0; i < a.N; i++) {
            double mx = -1e300, sum = 0;
            for (j = 0; j < a.N; j++) {
                double s = 0;
                for (d = 0; d < a.C; d++) s += q[i][d] * k[j][d];
                P[i][j] = s / sqrt((double)a.C);
                if (P[i][j] > mx) mx = P[i][j];
            }
            for (j = 0; j < a.N; j++) sum += (P[i][j] = exp(P[i][j] - mx));
            for (j = 0; j < a.N; j++) P[i][j] /= sum;
        }
        for (i = 0; i < a.N; i++)
            for (d = 0; d < a.C; d++) {
                double s = a.bo[d];
                for (e = 0; e < a.C; e++) {
                    double ov = 0;
                    for (j = 0; j < a.N; j++) ov += P[i][j] * v[j][e];
                    s += a.Wo[d * a.C + e] * ov;
                }
                maxerr = fmax(maxerr, fabs(s - a.out[(b * a.N + i) * a.C + d]));
            }
    }
    CHECK(maxerr < 1e-5, "forward: max error %g", maxerr);
    dx = zeros(nx); dWqkv = zeros(3 * a.C * a.C); dbqkv = zeros(3 * a.C); dWo = zeros(a.C * a.C); dbo = zeros(a.C);
    scratch = zeros(dfn_attention_scratch_size(a.N, a.C));
    dfn_attention_backward(dx, dWqkv, dbqkv, dWo, dbo, a.c, a.x, a.qkv, a.probs, a.o, a.Wqkv, a.Wo,
                           a.B, a.N, a.C, scratch, a.work);
    /* The key bias adds q . b_k to every score of a row, which the softmax
       ignores: its gradient is exactly 0 (finite differences give only
       rounding noise there), so it is checked for that instead. */
    for (wrt = 0; wrt < 6; wrt++) {
        float *p[6], *g[6];
        size_t n[6];
        p[0] = a.x; g[0] = dx; n[0] = nx;
        p[1] = a.Wqkv; g[1] = dWqkv; n[1] = 3 * a.C * a.C;
        p[2] = a.bqkv; g[2] = dbqkv; n[2] = a.C;                         /* query bias */
        p[3] = a.bqkv + 2 * a.C; g[3] = dbqkv + 2 * a.C; n[3] = a.C;     /* value bias */
        p[4] = a.Wo; g[4] = dWo; n[4] = a.C * a.C;
        p[5] = a.bo; g[5] = dbo; n[5] = a.C;
        CHECK(dfn_check_grad(at_loss, &a, p[wrt], n[wrt], g[wrt], 1, 1e-2f, 1e-3, &err, &worst) == DFN_OK &&
                  err < 2e-2, "wrt %d: relative error %g at %d", wrt, err, (int)worst);
    }
    for (d = 0; d < a.C; d++)
        CHECK(fabsf(dbqkv[a.C + d]) < 1e-5f, "key bias gradient %g", dbqkv[a.C + d]);
    free(a.x); free(a.Wqkv); free(a.bqkv); free(a.Wo); free(a.bo); free(a.c); free(a.out); free(a.qkv);
    free(a.probs); free(a.o); free(a.work); free(dx); free(dWqkv); free(dbqkv); free(dWo); free(dbo);
    free(scratch);
}

/* ---- the whole U-Net ---- */

/* A small U-Net with every kind of operation: two levels, attention at
   the lower one and in the middle, class labels and a conditioning channel. */
static dfn_unet_config tiny_config(void)
{
    dfn_unet_config c = dfn_unet_config_default(1, 8, 8);
    c.cond_channels = 1;
    c.base_channels = 4;
    c.levels = 2;
    c.mult[0] = 1; c.mult[1] = 2;
    c.attention[0] = 0; c.attention[1] = 1;
    c.groups = 2;
    c.time_dim = 8;
    c.num_classes = 3;
    return c;
}

typedef struct {
    dfn_trainer *tr;
    const float *x0, *cond, *eps;
    const int *t, *labels;
} unet_case;

static double unet_loss(void *user, const float *p)
{
    unet_case *uc = (unet_case *)user;
    float loss = 0;
    (void)p;
    dfn_trainer_loss_grad_cond(uc->tr, uc->x0, uc->cond, uc->labels, uc->t, uc->eps, &loss);
    return loss;
}

void test_unet_whole_gradients(void)
{
    /* Every 5th parameter (each tensor of every operation, the embedding and
       the class rows) against central differences, for eps and v targets.
       The weights are randomized after initialization so that no tensor is
       zero and every GroupNorm has its own gamma and beta. */
    enum { B = 3 };
    static const dfn_prediction preds[2] = { DFN_PREDICT_EPS, DFN_PREDICT_V };
    int k;
    for (k = 0; k < 2; k++) {
        dfn_unet_config c = tiny_config();
        dfn_train_config tc = dfn_train_config_default();
        dfn_schedule_config sc = dfn_schedule_config_default(DFN_SCHEDULE_LINEAR, 100);
        dfn_schedule s;
        dfn_unet u;
        dfn_trainer tr;
        dfn_rng rng;
        unet_case uc;
        int t[B] = { 3, 50, 97 }, labels[B] = { 2, -1, 0 }, D;
        size_t P, i, worst = 0;
        float *params, *noise, *grad, *x0, *cond, *eps, loss;
        double err = 1;
        c.prediction = preds[k];
        D = dfn_unet_dim(&c);
        P = dfn_unet_num_params(&c);
        CHECK(D == 64 && P > 0, "dims %d, params %d", D, (int)P);
        params = zeros(P);
        dfn_rng_seed(&rng, 10, (uint64_t)k);
        CHECK(dfn_unet_init(&u, &c, params) == DFN_OK && dfn_unet_init_weights(&u, &rng) == DFN_OK, "init");
        noise = randn(&rng, P, 0.3f);
        for (i = 0; i < P; i++) params[i] += noise[i];
        x0 = randn(&rng, (size_t)B * D, 1); cond = randn(&rng, (size_t)B * D, 1); eps = randn(&rng, (size_t)B * D, 1);
        grad = zeros(P);
        tc.batch = B;
        CHECK(dfn_schedule_alloc(&s, &sc, NULL) == DFN_OK, "schedule");
        CHECK(dfn_trainer_alloc_unet(&tr, &u, &s, &tc, NULL) == DFN_OK, "trainer");
        CHECK(dfn_trainer_loss_grad_cond(&tr, x0, cond, labels, t, eps, &loss) == DFN_OK, "loss");
        memcpy(grad, tr.grads, P * sizeof(float));
        uc.tr = &tr; uc.x0 = x0; uc.cond = cond; uc.eps = eps; uc.t = t; uc.labels = labels;
        CHECK(dfn_check_grad(unet_loss, &uc, params, P, grad, 5, 1e-2f, 1e-3, &err, &worst) == DFN_OK &&
                  err < 3e-2, "prediction %d: relative error %g at parameter %d of %d (analytic %g)",
              (int)preds[k], err, (int)worst, (int)P, grad[worst]);
        if (getenv("DFN_TEST_VERBOSE"))
            printf("    prediction %d: %d parameters, worst relative error %.2e\n", (int)preds[k], (int)P, err);
        dfn_trainer_free(&tr, NULL);
        dfn_schedule_free(&s, NULL);
        free(params); free(noise); free(grad); free(x0); free(cond); free(eps);
    }
}

void test_unet_inference_matches_training(void)
{
    /* dfn_unet_forward gives the network the trainer differentiates: the loss
       recomputed from its output equals the trainer's; and the output does
       not depend on the chunk size the workspace allows. */
    enum { B = 5 };
    dfn_unet_config c = tiny_config();
    dfn_train_config tc = dfn_train_config_default();
    dfn_schedule_config sc = dfn_schedule_config_default(DFN_SCHEDULE_LINEAR, 100);
    dfn_schedule s;
    dfn_unet u;
    dfn_trainer tr;
    dfn_rng rng;
    int t[B] = { 1, 20, 40, 60, 100 }, labels[B] = { 0, 1, 2, -1, 1 }, D = dfn_unet_dim(&c), i;
    size_t P = dfn_unet_num_params(&c), big = dfn_unet_forward_size(&c, B), one = dfn_unet_forward_size(&c, 1);
    float *params = zeros(P), *x0, *cond, *eps, *xt, *out1, *outB, *target, loss;
    void *wbig = malloc(big), *wone = malloc(one);
    double mine = 0;
    dfn_rng_seed(&rng, 11, 0);
    dfn_unet_init(&u, &c, params);
    dfn_unet_init_weights(&u, &rng);
    {
        float *noise = randn(&rng, P, 0.2f);
        size_t k;
        for (k = 0; k < P; k++) params[k] += noise[k];
        free(noise);
    }
    x0 = randn(&rng, (size_t)B * D, 1); cond = randn(&rng, (size_t)B * D, 1); eps = randn(&rng, (size_t)B * D, 1);
    xt = zeros((size_t)B * D); out1 = zeros((size_t)B * D); outB = zeros((size_t)B * D); target = zeros((size_t)B * D);
    tc.batch = B;
    dfn_schedule_alloc(&s, &sc, NULL);
    CHECK(big > one && one > 0, "sizes %d %d", (int)big, (int)one);
    CHECK(dfn_trainer_alloc_unet(&tr, &u, &s, &tc, NULL) == DFN_OK, "trainer");
    CHECK(dfn_trainer_loss_grad_cond(&tr, x0, cond, labels, t, eps, &loss) == DFN_OK, "loss");
    dfn_q_sample(&s, xt, x0, eps, t, B, D);
    CHECK(dfn_unet_forward(&u, outB, xt, cond, t, labels, B, wbig, big) == DFN_OK, "forward, one chunk");
    CHECK(dfn_unet_forward(&u, out1, xt, cond, t, labels, B, wone, one) == DFN_OK, "forward, chunks of 1");
    CHECK(memcmp(out1, outB, (size_t)B * D * sizeof(float)) == 0, "chunking changed the output");
    for (i = 0; i < B * D; i++) mine += ((double)outB[i] - eps[i]) * ((double)outB[i] - eps[i]);
    mine /= (double)B * D;
    CHECK(fabs(mine - loss) <= 1e-5 * mine, "loss %g vs recomputed %g", loss, mine);
    {
        /* the predictor with one conditioning image for every sample equals
           the forward pass with that image repeated */
        dfn_unet_predictor p;
        float *rep = zeros((size_t)B * D);
        for (i = 0; i < B; i++) memcpy(rep + (size_t)i * D, cond, (size_t)D * sizeof(float));
        p.model = &u; p.cond = cond; p.cond_rows = 1; p.work = wone; p.work_bytes = one;
        CHECK(dfn_unet_predict(&p, xt, t, labels, B, out1) == 0, "predict");
        dfn_unet_forward(&u, outB, xt, rep, t, labels, B, wbig, big);
        CHECK(memcmp(out1, outB, (size_t)B * D * sizeof(float)) == 0, "cond_rows = 1");
        free(rep);
    }
    dfn_trainer_free(&tr, NULL);
    dfn_schedule_free(&s, NULL);
    free(params); free(x0); free(cond); free(eps); free(xt); free(out1); free(outB); free(target);
    free(wbig); free(wone);
}

void test_unet_bad_input(void)
{
    dfn_unet_config c = tiny_config(), bad;
    dfn_unet u;
    float *params, x[64], out[64], cond[64];
    int t = 5, label = 3;
    size_t ws = dfn_unet_forward_size(&c, 1);
    void *work = malloc(ws);
    bad = c; bad.height = 7;       CHECK(dfn_unet_config_check(&bad) == DFN_ERR_INVALID_ARG, "odd height");
    bad = c; bad.groups = 3;       CHECK(dfn_unet_config_check(&bad) == DFN_ERR_INVALID_ARG, "groups");
    bad = c; bad.base_channels = 5; CHECK(dfn_unet_config_check(&bad) == DFN_ERR_INVALID_ARG, "odd base");
    bad = c; bad.levels = 5;       CHECK(dfn_unet_config_check(&bad) == DFN_ERR_INVALID_ARG, "levels");
    bad = c; bad.levels = 0;       CHECK(dfn_unet_config_check(&bad) == DFN_ERR_INVALID_ARG, "no levels");
    bad = c; bad.blocks = 0;       CHECK(dfn_unet_config_check(&bad) == DFN_ERR_INVALID_ARG, "blocks");
    bad = c; bad.mult[1] = 0;      CHECK(dfn_unet_config_check(&bad) == DFN_ERR_INVALID_ARG, "mult");
    bad = c; bad.prediction = (dfn_prediction)7; CHECK(dfn_unet_config_check(&bad) == DFN_ERR_INVALID_ARG, "prediction");
    bad = c; bad.base_channels = 1 << 20; CHECK(dfn_unet_num_params(&bad) == 0, "huge");
    CHECK(dfn_unet_forward_size(&c, 0) == 0, "chunk 0");
    params = zeros(dfn_unet_num_params(&c));
    CHECK(dfn_unet_init(&u, &bad, params) == DFN_ERR_INVALID_ARG, "init of a bad config");
    CHECK(dfn_unet_init(&u, &c, params) == DFN_OK, "init");
    memset(x, 0, sizeof x); memset(cond, 0, sizeof cond);
    CHECK(dfn_unet_forward(&u, out, x, NULL, &t, NULL, 1, work, ws) == DFN_ERR_NULL, "missing cond");
    CHECK(dfn_unet_forward(&u, out, x, cond, &t, &label, 1, work, ws) == DFN_ERR_INVALID_ARG, "label 3 of 3");
    t = -1;
    CHECK(dfn_unet_forward(&u, out, x, cond, &t, NULL, 1, work, ws) == DFN_ERR_INVALID_ARG, "t < 0");
    t = 1;
    CHECK(dfn_unet_forward(&u, out, x, cond, &t, NULL, 1, work, ws - 64) == DFN_ERR_BUFFER_TOO_SMALL, "small work");
    CHECK(dfn_unet_forward(&u, out, x, cond, &t, NULL, 1, work, ws) == DFN_OK, "forward");
    free(params); free(work);
}

void test_unet_sizes_of_example_networks(void)
{
    /* The networks the examples and the bench train (examples/mnist.c at
       --base 16 and 32, 28 x 28; an RGB 32 x 32) get their memory at the
       batches they use, and the sizes grow with the batch; a batch far
       beyond any memory gets 0, not a wrapped size. */
    static const int shape[][3] = { {1, 28, 16}, {1, 28, 32}, {3, 32, 32} };
    int i, j;
    for (i = 0; i < 3; i++) {
        dfn_unet_config c = dfn_unet_config_default(shape[i][0], shape[i][1], shape[i][1]);
        dfn_train_config tc = dfn_train_config_default();
        size_t prev = 0;
        c.base_channels = shape[i][2];
        for (j = 1; j <= 128; j *= 8) {
            size_t tb, fb;
            tc.batch = j;
            tb = dfn_trainer_size_unet(&c, &tc);
            fb = dfn_unet_forward_size(&c, j);
            CHECK(tb > prev && fb > 0 && fb < tb, "%dx%d base %d, batch %d: trainer %lu bytes, forward %lu",
                  shape[i][1], shape[i][1], shape[i][2], j, (unsigned long)tb, (unsigned long)fb);
            prev = tb;
        }
        tc.batch = 1 << 30;
        CHECK(dfn_trainer_size_unet(&c, &tc) == 0, "batch 2^30: %lu bytes",
              (unsigned long)dfn_trainer_size_unet(&c, &tc));
    }
}

void test_unet_model_file(void)
{
    /* A U-Net with its EMA and optimizer state survives the file bit for
       bit, loads through dfn_model_load_mem, samples the same, and the
       readers refuse a truncated or corrupted image and an MLP reader. */
    enum { B = 2 };
    dfn_unet_config c = tiny_config();
    dfn_train_config tc = dfn_train_config_default();
    dfn_schedule_config sc = dfn_schedule_config_default(DFN_SCHEDULE_LINEAR, 50);
    dfn_schedule s;
    dfn_unet u, u2;
    dfn_trainer tr;
    dfn_rng rng;
    dfn_loaded_model lm;
    dfn_model_info info;
    dfn_mlp_config mc = dfn_mlp_config_default(2);
    dfn_mlp m;
    int D = dfn_unet_dim(&c), k, t[B] = { 10, 40 }, labels[B] = { 1, -1 };
    size_t P = dfn_unet_num_params(&c), bytes, written, ws = dfn_unet_forward_size(&c, B);
    float *params = zeros(P), *p2 = zeros(P), *x0, *cond, loss, *o1, *o2, *mp;
    unsigned char *img;
    void *work = malloc(ws);
    dfn_rng_seed(&rng, 12, 0);
    dfn_unet_init(&u, &c, params);
    dfn_unet_init_weights(&u, &rng);
    x0 = randn(&rng, (size_t)B * D, 1); cond = randn(&rng, (size_t)B * D, 1);
    o1 = zeros((size_t)B * D); o2 = zeros((size_t)B * D);
    tc.batch = B;
    dfn_schedule_alloc(&s, &sc, NULL);
    CHECK(dfn_trainer_alloc_unet(&tr, &u, &s, &tc, NULL) == DFN_OK, "trainer");
    for (k = 0; k < 3; k++) CHECK(dfn_train_step_cond(&tr, x0, cond, labels, &rng, &loss) == DFN_OK, "step");
    CHECK(dfn_train_step(&tr, x0, labels, &rng, &loss) == DFN_ERR_NULL, "a cond network without cond");
    bytes = dfn_model_save_unet_size(&u, &s, &tr, 1);
    CHECK(bytes > P * 16, "size %d", (int)bytes);
    img = (unsigned char *)malloc(bytes);
    CHECK(dfn_model_save_unet_mem(img, bytes - 1, &written, &u, &s, &tr, 1) == DFN_ERR_BUFFER_TOO_SMALL, "cap");
    CHECK(dfn_model_save_unet_mem(img, bytes, &written, &u, &s, &tr, 1) == DFN_OK && written == bytes, "save");
    CHECK(dfn_model_info_mem(img, bytes, &info) == DFN_OK && info.net == DFN_NET_UNET && info.step == 3 &&
              info.has_ema && info.has_optimizer && info.unet.base_channels == 4, "info");
    dfn_unet_init(&u2, &c, p2);
    CHECK(dfn_model_read_unet(img, bytes, &u2, NULL, NULL, NULL) == DFN_OK, "read");
    CHECK(memcmp(p2, params, P * sizeof(float)) == 0, "weights differ after the round trip");
    CHECK(dfn_model_load_mem(img, bytes, NULL, &lm) == DFN_OK, "load");
    if (lm.memory) {
        CHECK(lm.info.net == DFN_NET_UNET && lm.unet.count == P && lm.ema_unet.params == lm.ema, "views");
        CHECK(memcmp(lm.ema, tr.ema, P * sizeof(float)) == 0, "EMA differs");
        dfn_unet_forward(&tr.ema_unet, o1, x0, cond, t, labels, B, work, ws);
        dfn_unet_forward(&lm.ema_unet, o2, x0, cond, t, labels, B, work, ws);
        CHECK(memcmp(o1, o2, (size_t)B * D * sizeof(float)) == 0, "loaded EMA network predicts differently");
        dfn_model_free(&lm, NULL);
    }
    /* an MLP reader refuses it; a U-Net reader refuses an MLP file */
    mp = zeros(dfn_mlp_num_params(&mc));
    dfn_mlp_init(&m, &mc, mp);
    CHECK(dfn_model_read(img, bytes, &m, NULL, NULL, NULL) == DFN_ERR_MISMATCH, "MLP reader");
    {
        size_t mb = dfn_model_save_size(&m, &s, NULL, 0);
        unsigned char *mi = (unsigned char *)malloc(mb);
        dfn_model_save_mem(mi, mb, &written, &m, &s, NULL, 0);
        CHECK(dfn_model_read_unet(mi, mb, &u2, NULL, NULL, NULL) == DFN_ERR_MISMATCH, "U-Net reader");
        free(mi);
    }
    CHECK(dfn_model_info_mem(img, bytes - 4, &info) != DFN_OK, "truncated");
    img[40] ^= 1;
    CHECK(dfn_model_info_mem(img, bytes, &info) == DFN_ERR_CHECKSUM, "corrupted");
    dfn_trainer_free(&tr, NULL);
    dfn_schedule_free(&s, NULL);
    free(params); free(p2); free(x0); free(cond); free(o1); free(o2); free(mp); free(img); free(work);
}

/* ---- threads: a parallel-for that runs the tasks backwards on one thread,
   each with worker i % workers, stands in for real threads ---- */

static int fake_calls, fake_workers;

static void fake_parallel(void *user, int ntasks, dfn_task_fn task, void *ctx)
{
    int i;
    (void)user;
    fake_calls++;
    for (i = ntasks - 1; i >= 0; i--) task(ctx, i, i % fake_workers);
}

void test_threads_split_gemm_bit_identical(void)
{
    /* dfn_gemm split into tasks (by columns or by rows, all transposes)
       gives the bits of the one-thread product; and a U-Net training step
       gives the same weights. */
    static const int sizes[][3] = { { 300, 257, 190 }, { 1000, 40, 300 }, { 33, 700, 400 }, { 7, 5, 3 } };
    dfn_rng rng;
    size_t scratch_bytes = dfn_parallel_scratch_size(3);
    void *scratch = malloc(scratch_bytes);
    float *work = (float *)malloc(dfn_gemm_work_size());
    int s, ta, tb;
    dfn_rng_seed(&rng, 13, 0);
    CHECK(dfn_set_parallel(fake_parallel, NULL, 3, scratch, scratch_bytes - 1) == DFN_ERR_BUFFER_TOO_SMALL, "scratch");
    CHECK(dfn_set_parallel(NULL, NULL, 3, scratch, scratch_bytes) == DFN_ERR_INVALID_ARG, "no run");
    CHECK(dfn_set_parallel(fake_parallel, NULL, 0, scratch, scratch_bytes) == DFN_ERR_INVALID_ARG, "0 threads");
    fake_workers = 3;
    for (s = 0; s < 4; s++)
        for (ta = 0; ta < 2; ta++)
            for (tb = 0; tb < 2; tb++) {
                int M = sizes[s][0], N = sizes[s][1], K = sizes[s][2];
                float *A = randn(&rng, (size_t)M * K, 1), *B = randn(&rng, (size_t)K * N, 1);
                float *C1 = randn(&rng, (size_t)M * N, 1), *C2 = (float *)malloc((size_t)M * N * sizeof(float));
                int lda = ta ? M : K, ldb = tb ? K : N, calls;
                memcpy(C2, C1, (size_t)M * N * sizeof(float));
                dfn_gemm(ta, tb, M, N, K, 0.7f, A, lda, B, ldb, 0.5f, C1, N, work);
                CHECK(dfn_set_parallel(fake_parallel, NULL, 3, scratch, scratch_bytes) == DFN_OK, "install");
                calls = fake_calls;
                dfn_gemm(ta, tb, M, N, K, 0.7f, A, lda, B, ldb, 0.5f, C2, N, work);
                CHECK((fake_calls > calls) == (s < 3), "size %d: split %d", s, fake_calls - calls);
                dfn_set_parallel(NULL, NULL, 1, NULL, 0);
                CHECK(memcmp(C1, C2, (size_t)M * N * sizeof(float)) == 0, "size %d, trans %d %d: bits differ", s, ta, tb);
                free(A); free(B); free(C1); free(C2);
            }
    {
        enum { B = 4 };
        dfn_unet_config c = dfn_unet_config_default(1, 16, 16);
        dfn_train_config tc = dfn_train_config_default();
        dfn_schedule_config sc = dfn_schedule_config_default(DFN_SCHEDULE_LINEAR, 100);
        dfn_schedule sch;
        dfn_unet u1, u2;
        dfn_trainer t1, t2;
        dfn_rng r1, r2;
        size_t P;
        float *p1, *p2, *x0, loss;
        int k, calls;
        c.base_channels = 16;
        P = dfn_unet_num_params(&c);
        p1 = zeros(P); p2 = zeros(P);
        dfn_rng_seed(&r1, 14, 0);
        dfn_unet_init(&u1, &c, p1);
        dfn_unet_init_weights(&u1, &r1);
        memcpy(p2, p1, P * sizeof(float));
        dfn_unet_init(&u2, &c, p2);
        x0 = randn(&r1, (size_t)B * 256, 1);
        tc.batch = B;
        dfn_schedule_alloc(&sch, &sc, NULL);
        dfn_trainer_alloc_unet(&t1, &u1, &sch, &tc, NULL);
        dfn_trainer_alloc_unet(&t2, &u2, &sch, &tc, NULL);
        dfn_rng_seed(&r1, 15, 0);
        dfn_rng_seed(&r2, 15, 0);
        for (k = 0; k < 2; k++) dfn_train_step(&t1, x0, NULL, &r1, &loss);
        dfn_set_parallel(fake_parallel, NULL, 3, scratch, scratch_bytes);
        calls = fake_calls;
        for (k = 0; k < 2; k++) dfn_train_step(&t2, x0, NULL, &r2, &loss);
        CHECK(fake_calls > calls, "the U-Net step used no tasks");
        dfn_set_parallel(NULL, NULL, 1, NULL, 0);
        CHECK(memcmp(p1, p2, P * sizeof(float)) == 0, "U-Net weights differ with tasks");
        dfn_trainer_free(&t1, NULL); dfn_trainer_free(&t2, NULL);
        dfn_schedule_free(&sch, NULL);
        free(p1); free(p2); free(x0);
    }
    free(scratch); free(work);
}

void test_threads_split_layers_bit_identical(void)
{
    /* GroupNorm (by blocks of groups; G = 8 and 6 groups of 3 channels),
       the activations and axpy (by ranges; a length that is no multiple of
       64) split into tasks give the one-thread bits, gradients included. */
    enum { B = 5, N = 784 };
    static const int shape[][2] = { { 32, 8 }, { 18, 6 } };
    size_t scratch_bytes = dfn_parallel_scratch_size(3);
    void *scratch = malloc(scratch_bytes);
    dfn_rng rng;
    int i, pass, calls;
    fake_workers = 3;
    dfn_rng_seed(&rng, 31, 0);
    for (i = 0; i < 2; i++) {
        int C = shape[i][0], G = shape[i][1];
        size_t n = (size_t)B * N * C;
        float *x = randn(&rng, n, 2), *dy = randn(&rng, n, 1), *gam = randn(&rng, (size_t)C, 1);
        float *bet = randn(&rng, (size_t)C, 1), *y[2], *st[2], *dx[2], *dg[2], *db[2], *a[2];
        for (pass = 0; pass < 2; pass++) {
            y[pass] = zeros(n); st[pass] = zeros((size_t)B * G * 2); dx[pass] = zeros(n); dg[pass] = zeros((size_t)C); db[pass] = zeros((size_t)C); a[pass] = zeros(n);
            if (pass) CHECK(dfn_set_parallel(fake_parallel, NULL, 3, scratch, scratch_bytes) == DFN_OK, "install");
            calls = fake_calls;
            dfn_groupnorm_forward(y[pass], st[pass], x, gam, bet, B, N, C, G);
            dfn_groupnorm_backward(dx[pass], dg[pass], db[pass], dy, x, st[pass], gam, B, N, C, G);
            dfn_act_forward(DFN_ACT_SILU, n - 5, x, a[pass]);
            dfn_act_backward(DFN_ACT_GELU, n - 7, x, dy, dx[pass]);
            dfn_vec_axpy(n - 3, 0.5f, y[pass], a[pass]);
            if (pass) CHECK(fake_calls == calls + 5, "C %d: %d of 5 calls split", C, fake_calls - calls);
            dfn_set_parallel(NULL, NULL, 1, NULL, 0);
        }
        CHECK(memcmp(y[0], y[1], n * sizeof(float)) == 0 && memcmp(st[0], st[1], (size_t)B * G * 2 * sizeof(float)) == 0,
              "C %d: GroupNorm forward differs with tasks", C);
        CHECK(memcmp(dx[0], dx[1], n * sizeof(float)) == 0 && memcmp(dg[0], dg[1], (size_t)C * sizeof(float)) == 0 &&
              memcmp(db[0], db[1], (size_t)C * sizeof(float)) == 0, "C %d: GroupNorm or GELU backward differs", C);
        CHECK(memcmp(a[0], a[1], n * sizeof(float)) == 0, "C %d: SiLU or axpy differs with tasks", C);
        for (pass = 0; pass < 2; pass++) {
            free(y[pass]); free(st[pass]); free(dx[pass]); free(dg[pass]); free(db[pass]); free(a[pass]);
        }
        free(x); free(dy); free(gam); free(bet);
    }
    free(scratch);
}

void test_threads_split_conv_bit_identical(void)
{
    /* A 3 x 3 convolution's forward and backward passes with their rows
       split into tasks (each unrolls its own pixels, then multiplies them)
       give the one-thread bits, for every use of the scratch: dW summed
       directly, transposed, and din through the turned kernel (groups of
       one image, and of two then one; with the scratch of use 2 the
       forward pass takes Winograd by dfn__wino_pays, 30 -> 32 channels,
       so im2col's forward pass is split here in groups of one); and by
       Winograd (use 3: tiles
       split into tasks, dW's 16 products one task each; groups of two
       then one). */
    enum { B = 3, H = 25, W = 23, Ci = 30, Co = 32, K = 9 * Ci };
    size_t scratch_bytes = dfn_parallel_scratch_size(2), KC = (size_t)K * Co;
    size_t n_in = (size_t)B * H * W * Ci, n_out = (size_t)B * H * W * Co;
    size_t cols[3];
    void *scratch = malloc(scratch_bytes);
    float *work = (float *)malloc(dfn_gemm_work_size());
    dfn_rng rng;
    float *x, *dy, *Wt, *b, *col;
    int use, pass, calls;
    cols[0] = dfn_conv2d_col_size(H, W, Ci, 3);
    cols[1] = cols[0] + KC;
    cols[2] = 2 * dfn_conv2d_col_size(H, W, Co, 3) + 2 * KC;
    dfn_rng_seed(&rng, 33, 0);
    x = randn(&rng, n_in, 1); dy = randn(&rng, n_out, 1);
    Wt = randn(&rng, KC, 0.1f); b = randn(&rng, (size_t)Co, 1);
    col = zeros(cols[2]);
    fake_workers = 2;
    CHECK(dfn_conv2d_winograd_size(H, W, Ci, Co, 2) <= cols[2] && dfn_conv2d_winograd_size(H, W, Ci, Co, 3) > cols[2],
          "Winograd's groups are not of two");
    for (use = 0; use < 4; use++) {
        float *y[2], *dx[2], *dW[2], *db[2];
        for (pass = 0; pass < 2; pass++) {
            y[pass] = zeros(n_out); dx[pass] = zeros(n_in); dW[pass] = zeros(KC); db[pass] = zeros((size_t)Co);
            if (pass) CHECK(dfn_set_parallel(fake_parallel, NULL, 2, scratch, scratch_bytes) == DFN_OK, "install");
            calls = fake_calls;
            if (use == 3) {
                CHECK(dfn_conv2d_winograd_forward(y[pass], x, Wt, b, B, H, W, Ci, Co, col, cols[2], work) == DFN_OK &&
                      dfn_conv2d_winograd_backward(dx[pass], dW[pass], db[pass], dy, x, Wt, B, H, W, Ci, Co, col,
                                                   cols[2], work) == DFN_OK, "Winograd refused");
            } else {
                dfn_conv2d_forward(y[pass], x, Wt, b, B, H, W, Ci, Co, 3, col, cols[use], work);
                dfn_conv2d_backward(dx[pass], dW[pass], db[pass], dy, x, Wt, B, H, W, Ci, Co, 3, col, cols[use], work);
            }
            if (pass) CHECK(fake_calls >= calls + 4, "scratch %d: %d calls split", use, fake_calls - calls);
            dfn_set_parallel(NULL, NULL, 1, NULL, 0);
        }
        CHECK(memcmp(y[0], y[1], n_out * sizeof(float)) == 0, "scratch %d: forward differs with tasks", use);
        CHECK(memcmp(dx[0], dx[1], n_in * sizeof(float)) == 0, "scratch %d: din differs with tasks", use);
        CHECK(memcmp(dW[0], dW[1], KC * sizeof(float)) == 0 && memcmp(db[0], db[1], Co * sizeof(float)) == 0,
              "scratch %d: dW or db differs with tasks", use);
        for (pass = 0; pass < 2; pass++) {
            free(y[pass]); free(dx[pass]); free(dW[pass]); free(db[pass]);
        }
    }
    free(x); free(dy); free(Wt); free(b); free(col); free(work); free(scratch);
}

#ifdef DFN_PTHREADS
/* About a millisecond of work on this thread alone: long enough for waiting
   pool threads to stop polling and sleep. */
static volatile float pool_sink;
static void pool_pause_work(const float *v, size_t n)
{
    int r;
    for (r = 0; r < 40; r++) pool_sink += dfn_vec_dot(n, v, v) * 1e-9f;
}

static void pool_bit_identical(void)
{
    /* The ready pthreads pool (2 and 3 threads) gives the one-thread bits:
       split GEMMs back to back (the workers poll for the next job) and
       after pauses (they sleep and are woken), a convolution's forward and
       backward passes and a long normal fill; it stops and starts again,
       and refuses thread counts out of range. */
    enum { M = 300, N = 257, K = 190, B = 3, H = 25, W = 23, Ci = 30, Co = 32, KK = 9 * Ci, REPS = 40 };
    size_t KC = (size_t)KK * Co, n_in = (size_t)B * H * W * Ci, n_out = (size_t)B * H * W * Co;
    size_t ncol = 2 * dfn_conv2d_col_size(H, W, Co, 3) + 2 * KC, nn = 300001;
    float *work = (float *)malloc(dfn_gemm_work_size()), *A, *Bm, *C0, *C1, *x, *dy, *Wt, *b, *col;
    float *y[2], *dx[2], *dW[2], *db[2], *z[2];
    dfn_rng rng;
    int threads, pass, r, bad;
    CHECK(dfn_pthreads_start(0) == DFN_ERR_INVALID_ARG, "0 threads");
    CHECK(dfn_pthreads_start(DFN_MAX_THREADS + 1) == DFN_ERR_INVALID_ARG, "too many threads");
    CHECK(dfn_parallel_threads() == 1, "a refused start installed threads");
    dfn_rng_seed(&rng, 41, 0);
    A = randn(&rng, (size_t)M * K, 1); Bm = randn(&rng, (size_t)K * N, 1);
    C0 = zeros((size_t)M * N); C1 = zeros((size_t)M * N);
    x = randn(&rng, n_in, 1); dy = randn(&rng, n_out, 1); Wt = randn(&rng, KC, 0.1f); b = randn(&rng, (size_t)Co, 1);
    col = zeros(ncol);
    dfn_gemm(0, 0, M, N, K, 1.0f, A, K, Bm, N, 0.0f, C0, N, work);
    for (threads = 2; threads <= 3; threads++) {
        for (pass = 0; pass < 2; pass++) {
            y[pass] = zeros(n_out); dx[pass] = zeros(n_in); dW[pass] = zeros(KC); db[pass] = zeros((size_t)Co);
            z[pass] = zeros(nn);
            if (pass) {
                CHECK(dfn_pthreads_start(threads) == DFN_OK, "start %d threads", threads);
                CHECK(dfn_parallel_threads() == threads, "%d threads installed", dfn_parallel_threads());
            }
            dfn_conv2d_forward(y[pass], x, Wt, b, B, H, W, Ci, Co, 3, col, ncol, work);
            dfn_conv2d_backward(dx[pass], dW[pass], db[pass], dy, x, Wt, B, H, W, Ci, Co, 3, col, ncol, work);
            dfn_rng_seed(&rng, 42, 0);
            dfn_rng_normal_fill(&rng, z[pass], nn);
            if (pass) {
                for (r = 0, bad = 0; r < REPS; r++) {
                    if (r % 4 == 3) pool_pause_work(A, (size_t)M * K);
                    memset(C1, 0, (size_t)M * N * sizeof(float));
                    dfn_gemm(0, 0, M, N, K, 1.0f, A, K, Bm, N, 0.0f, C1, N, work);
                    bad += memcmp(C0, C1, (size_t)M * N * sizeof(float)) != 0;
                }
                CHECK(bad == 0, "%d threads: %d of %d products differ", threads, bad, REPS);
                dfn_pthreads_stop();
                CHECK(dfn_parallel_threads() == 1, "stopped, %d threads", dfn_parallel_threads());
            }
        }
        CHECK(memcmp(y[0], y[1], n_out * sizeof(float)) == 0 && memcmp(dx[0], dx[1], n_in * sizeof(float)) == 0 &&
              memcmp(dW[0], dW[1], KC * sizeof(float)) == 0 && memcmp(db[0], db[1], Co * sizeof(float)) == 0,
              "%d threads: the convolution differs", threads);
        CHECK(memcmp(z[0], z[1], nn * sizeof(float)) == 0, "%d threads: the normal fill differs", threads);
        for (pass = 0; pass < 2; pass++) {
            free(y[pass]); free(dx[pass]); free(dW[pass]); free(db[pass]); free(z[pass]);
        }
    }
    free(work); free(A); free(Bm); free(C0); free(C1); free(x); free(dy); free(Wt); free(b); free(col);
}
#endif

/* The pool is in the host builds with -DDFN_PTHREADS -pthread; the others
   say so and skip. */
void test_threads_pool_bit_identical(void)
{
#ifdef DFN_PTHREADS
    pool_bit_identical();
#else
    printf("    note: built without DFN_PTHREADS: no pool to test; skipped\n");
#endif
}

void test_threads_split_mlp_bit_identical(void)
{
    /* The MLP's inference forward gives the same bits for one batch, one row
       at a time, in small chunks, and split across (fake) threads; rows come
       in runs of equal (t, label), the shape samplers ask for, mixed with
       single rows. The split forward is one parallel-for: the products
       inside its tasks do not split again. Training steps split into tasks
       give the one-thread weights. */
    enum { N = 301, D = 2 };
    dfn_mlp_config mc = dfn_mlp_config_default(D);
    dfn_mlp m;
    dfn_rng rng;
    size_t scratch_bytes = dfn_parallel_scratch_size(3), big, small, P;
    void *scratch = malloc(scratch_bytes), *wbig, *wsmall;
    float *params, *x, *ref = zeros((size_t)N * D), *got = zeros((size_t)N * D);
    int t[N], labels[N], i, calls;
    mc.num_classes = 3;
    P = dfn_mlp_num_params(&mc);
    params = zeros(P);
    dfn_rng_seed(&rng, 16, 0);
    CHECK(dfn_mlp_init(&m, &mc, params) == DFN_OK && dfn_mlp_init_weights(&m, &rng) == DFN_OK, "init");
    for (i = 0; i < (int)P; i++) params[i] += 0.05f * dfn_rng_normal(&rng);   /* class embedding too */
    x = randn(&rng, (size_t)N * D, 1.5f);
    for (i = 0; i < N; i++) {
        t[i] = i < 120 ? 37 : i < 200 ? 1 + (int)dfn_rng_below(&rng, 1000) : 999;
        labels[i] = i < 60 ? 2 : i < 120 ? -1 : (int)dfn_rng_below(&rng, 4) - 1;
    }
    big = dfn_mlp_forward_size(&mc, N);
    small = dfn_mlp_forward_size(&mc, 7);
    wbig = malloc(big); wsmall = malloc(small);
    for (i = 0; i < N; i++)
        CHECK(dfn_mlp_forward(&m, ref + (size_t)i * D, x + (size_t)i * D, t + i, labels + i, 1, wbig, big) == DFN_OK,
              "row %d", i);
    CHECK(dfn_mlp_forward(&m, got, x, t, labels, N, wbig, big) == DFN_OK, "one batch");
    CHECK(memcmp(ref, got, sizeof(float) * N * D) == 0, "one batch differs from one row at a time");
    memset(got, 0, sizeof(float) * N * D);
    CHECK(dfn_mlp_forward(&m, got, x, t, labels, N, wsmall, small) == DFN_OK, "chunks of 7");
    CHECK(memcmp(ref, got, sizeof(float) * N * D) == 0, "chunks of 7 differ from one row at a time");
    fake_workers = 3;
    CHECK(dfn_set_parallel(fake_parallel, NULL, 3, scratch, scratch_bytes) == DFN_OK, "install");
    calls = fake_calls;
    memset(got, 0, sizeof(float) * N * D);
    CHECK(dfn_mlp_forward(&m, got, x, t, labels, N, wbig, big) == DFN_OK, "split");
    CHECK(fake_calls == calls + 1, "the split forward ran %d parallel-fors, not 1", fake_calls - calls);
    CHECK(memcmp(ref, got, sizeof(float) * N * D) == 0, "split across threads differs");
    memset(got, 0, sizeof(float) * N * D);
    CHECK(dfn_mlp_forward(&m, got, x, t, labels, N, wsmall, small) == DFN_OK, "split, small workspace");
    CHECK(memcmp(ref, got, sizeof(float) * N * D) == 0, "split with a small workspace differs");
    dfn_set_parallel(NULL, NULL, 1, NULL, 0);
    {
        /* training: forward, backward and weight gradients split into tasks
           give the weights of the one-thread steps (a batch of 100 with
           classes, so that the class-embedding gradient is in play) */
        enum { TB = 100 };
        dfn_train_config tc = dfn_train_config_default();
        dfn_schedule_config sc = dfn_schedule_config_default(DFN_SCHEDULE_LINEAR, 100);
        dfn_schedule sch;
        dfn_mlp m1, m2;
        dfn_trainer t1, t2;
        dfn_rng r1, r2;
        float *p2 = zeros(P), *x0 = randn(&rng, (size_t)TB * D, 1), loss;
        int lab[TB], k;
        for (i = 0; i < TB; i++) lab[i] = i % 3;
        memcpy(p2, params, P * sizeof(float));
        CHECK(dfn_mlp_init(&m1, &mc, params) == DFN_OK && dfn_mlp_init(&m2, &mc, p2) == DFN_OK, "init");
        tc.batch = TB;
        dfn_schedule_alloc(&sch, &sc, NULL);
        CHECK(dfn_trainer_alloc(&t1, &m1, &sch, &tc, NULL) == DFN_OK && dfn_trainer_alloc(&t2, &m2, &sch, &tc, NULL) == DFN_OK,
              "trainers");
        dfn_rng_seed(&r1, 17, 0);
        dfn_rng_seed(&r2, 17, 0);
        for (k = 0; k < 3; k++) dfn_train_step(&t1, x0, lab, &r1, &loss);
        dfn_set_parallel(fake_parallel, NULL, 3, scratch, scratch_bytes);
        calls = fake_calls;
        for (k = 0; k < 3; k++) dfn_train_step(&t2, x0, lab, &r2, &loss);
        CHECK(fake_calls >= calls + 9, "the MLP steps ran %d parallel-fors, want 3 or more per step", fake_calls - calls);
        dfn_set_parallel(NULL, NULL, 1, NULL, 0);
        CHECK(memcmp(params, p2, P * sizeof(float)) == 0, "MLP weights differ with tasks");
        CHECK(memcmp(t1.ema, t2.ema, P * sizeof(float)) == 0, "MLP EMA weights differ with tasks");
        dfn_trainer_free(&t1, NULL); dfn_trainer_free(&t2, NULL);
        dfn_schedule_free(&sch, NULL);
        free(p2); free(x0);
    }
    free(scratch); free(wbig); free(wsmall); free(params); free(x); free(ref); free(got);
}

void test_threads_split_normals_bit_identical(void)
{
    /* A long normal fill split across (fake) threads, each jumping its copy
       of the generator ahead, gives the one-stream values and leaves the
       generator where one stream would: odd and even lengths, with and
       without a spare at the start. */
    enum { N = 100001 };
    size_t scratch_bytes = dfn_parallel_scratch_size(3);
    void *scratch = malloc(scratch_bytes);
    float *a = zeros(N), *b = zeros(N);
    int k, calls;
    fake_workers = 3;
    for (k = 0; k < 4; k++) {
        size_t n = (size_t)N - (size_t)(k & 1);
        dfn_rng r1, r2;
        dfn_rng_seed(&r1, 18, (uint64_t)k);
        dfn_rng_seed(&r2, 18, (uint64_t)k);
        if (k >= 2) { (void)dfn_rng_normal(&r1); (void)dfn_rng_normal(&r2); }
        dfn_rng_normal_fill(&r1, a, n);
        CHECK(dfn_set_parallel(fake_parallel, NULL, 3, scratch, scratch_bytes) == DFN_OK, "install");
        calls = fake_calls;
        dfn_rng_normal_fill(&r2, b, n);
        CHECK(fake_calls == calls + 1, "case %d: %d parallel-fors", k, fake_calls - calls);
        dfn_set_parallel(NULL, NULL, 1, NULL, 0);
        CHECK(memcmp(a, b, n * sizeof(float)) == 0, "case %d: split fill differs", k);
        CHECK(r1.state == r2.state && r1.has_spare == r2.has_spare && (!r1.has_spare || r1.spare == r2.spare),
              "case %d: the generator ends elsewhere", k);
        CHECK(dfn_rng_u32(&r1) == dfn_rng_u32(&r2), "case %d: the next draw differs", k);
    }
    free(scratch); free(a); free(b);
}

void test_unet_quality_shapes(void)
{
    /* End to end at a small scale: a class-conditional U-Net trained 600
       steps on 16x16 shapes (discs, squares, rings, crosses), sampled with
       DDIM-25 at guidance 2 for each class. Each class's samples must be
       much closer (energy distance, MATH.md section 10, in the 256 pixel
       dimensions) to fresh images of their own class than N(0, I) images
       clipped to [-1, 1] are, and closer to their own class than to the
       other classes on average (measured with gcc: 0.18 to 0.60 of the
       distance to the others, 0.06 to 0.09 of the noise's). */
    enum { S = 16, D = S * S, B = 32, STEPS = 600, N = 48, K = DFN_SHAPES_COUNT };
    dfn_unet_config c = dfn_unet_config_default(1, S, S);
    dfn_train_config tc = dfn_train_config_default();
    dfn_schedule_config sc = dfn_schedule_config_default(DFN_SCHEDULE_LINEAR, 200);
    dfn_schedule s;
    dfn_unet u;
    dfn_trainer tr;
    dfn_rng rng;
    dfn_unet_predictor p;
    dfn_sampler smp;
    dfn_sampler_config cfg;
    float *params, *x0, *samples, *real, *noise, loss;
    int labels[B > N ? B : N], k, j, step;
    size_t P, ws;
    double own[K], other[K], base[K];
    c.base_channels = 8; c.levels = 2; c.mult[1] = 2; c.attention[1] = 1; c.attention[2] = 0;
    c.groups = 4; c.time_dim = 32; c.num_classes = K;
    P = dfn_unet_num_params(&c);
    params = zeros(P);
    x0 = zeros((size_t)B * D); samples = zeros((size_t)K * N * D); real = zeros((size_t)K * N * D);
    noise = zeros((size_t)N * D);
    dfn_rng_seed(&rng, 21, 0);
    dfn_unet_init(&u, &c, params);
    dfn_unet_init_weights(&u, &rng);
    dfn_schedule_alloc(&s, &sc, NULL);
    tc.batch = B; tc.lr = 2e-3f; tc.warmup_steps = 50; tc.total_steps = STEPS; tc.grad_clip = 1.0f;
    tc.ema_decay = 0.995f; tc.p_uncond = 0.2f;
    CHECK(dfn_trainer_alloc_unet(&tr, &u, &s, &tc, NULL) == DFN_OK, "trainer");
    for (step = 0; step < STEPS; step++) {
        dfn_shapes_sample(&rng, x0, labels, B, S);
        if (dfn_train_step(&tr, x0, labels, &rng, &loss) != DFN_OK) break;
    }
    CHECK(step == STEPS, "training stopped at step %d", step);
    ws = dfn_unet_forward_size(&c, 2 * N);
    p.model = &tr.ema_unet; p.cond = NULL; p.cond_rows = 0; p.work = malloc(ws); p.work_bytes = ws;
    for (k = 0; k < K; k++) {
        float *xs = samples + (size_t)k * N * D;
        int got = 0;
        for (j = 0; j < N; j++) labels[j] = k;
        cfg = dfn_unet_sampler_config(DFN_SAMPLER_DDIM, N, &p);
        cfg.steps = 25; cfg.clip_x0 = 1; cfg.labels = labels; cfg.guidance_scale = 2.0f;
        CHECK(dfn_sampler_alloc(&smp, &cfg, &s, NULL) == DFN_OK, "sampler");
        CHECK(dfn_sampler_run(&smp, xs, NULL, &rng) == DFN_OK, "sampling");
        dfn_sampler_free(&smp, NULL);
        while (got < N) {                              /* fresh images of class k */
            float one[D];
            int lab;
            dfn_shapes_sample(&rng, one, &lab, 1, S);
            if (lab == k) memcpy(real + ((size_t)k * N + got++) * D, one, sizeof one);
        }
    }
    dfn_rng_normal_fill(&rng, noise, (size_t)N * D);
    for (j = 0; j < N * D; j++) noise[j] = noise[j] < -1 ? -1 : noise[j] > 1 ? 1 : noise[j];
    for (k = 0; k < K; k++) {
        const float *xs = samples + (size_t)k * N * D;
        other[k] = 0;
        dfn_energy_distance_unbiased(&own[k], xs, N, real + (size_t)k * N * D, N, D);
        dfn_energy_distance_unbiased(&base[k], noise, N, real + (size_t)k * N * D, N, D);
        for (j = 0; j < K; j++)
            if (j != k) {
                double e;
                dfn_energy_distance_unbiased(&e, xs, N, real + (size_t)j * N * D, N, D);
                other[k] += e / (K - 1);
            }
        if (getenv("DFN_TEST_VERBOSE"))
            printf("    %-6s ED^2 to own class %.2f, to the others %.2f, noise to own %.2f\n",
                   dfn_shapes_name(k), own[k], other[k], base[k]);
        CHECK(own[k] < 0.1 * base[k], "%s: ED^2 %.2f vs noise %.2f", dfn_shapes_name(k), own[k], base[k]);
        CHECK(own[k] < 0.7 * other[k], "%s: ED^2 to its class %.2f vs the others %.2f", dfn_shapes_name(k),
              own[k], other[k]);
    }
    dfn_trainer_free(&tr, NULL);
    dfn_schedule_free(&s, NULL);
    free(params); free(x0); free(samples); free(real); free(noise); free(p.work);
}
