/* digits.h - a small image classifier built from diffusion.h's own layers
   (for the digits, and for the emoji's categories), and the Frechet
   distance between two sets of feature vectors. Used by
   bench/image_quality.c (make bench-images, make bench-emoji) and
   tests/test_quality.c.

   Include after diffusion.h's declarations; every function is static. The
   network (NHWC, as diffusion.h's image layers; C input channels, K classes):

       x (B, H, W, C)
       a1 = act(conv3x3(x; C -> c1))          (B, H, W, c1)
       p1 = avgpool2(a1)                       (B, H/2, W/2, c1)
       a2 = act(conv3x3(p1; c1 -> c2))         (B, H/2, W/2, c2)
       p2 = avgpool2(a2) when H/2 and W/2 are even, else a2
       f  = act(W3 flatten(p2) + b3)           (B, hidden)   "penultimate features"
       z  = W4 f + b4                          (B, K)        logits
       loss = mean over the batch of -log softmax(z)[label]

   Parameters live in one flat block (dg_net.params, dg_layout offsets);
   the backward pass is the layers' hand-written ones (dfn_conv2d_backward,
   dfn_act_backward, dfn_avgpool2_backward, dfn_linear_backward) and the
   softmax cross-entropy's closed form d loss / d z = (softmax(z) - onehot) / B.
   Training is plain Adam over minibatches drawn by a seeded dfn_rng, so the
   same seed gives the same bits in the same build.

   The Frechet distance between N(mu1, S1) and N(mu2, S2) (Dowson & Landau
   1982; FID, Heusel et al. 2017):
       FD = |mu1 - mu2|^2 + tr(S1 + S2 - 2 (S1^1/2 S2 S1^1/2)^1/2)
   in double, with the matrix square roots from a cyclic Jacobi
   eigen-decomposition (negative eigenvalues from rounding are taken as 0). */
#ifndef DFN_BENCH_DIGITS_H
#define DFN_BENCH_DIGITS_H

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "../diffusion.h"

#if defined(__GNUC__) || defined(__clang__)
#  define DG_DEF static __attribute__((unused))
#else
#  define DG_DEF static
#endif

#define DG_CLASSES 10       /* the digits' K (dg_config_default)             */
#define DG_MAX_CLASSES 256

/* ========================================================================= */
/*  The classifier                                                           */
/* ========================================================================= */

typedef struct dg_config {
    int h, w;              /* input size; both even                             */
    int c;                 /* input channels (default 1; 3 for RGB)             */
    int classes;           /* K (default DG_CLASSES = 10), 2..DG_MAX_CLASSES     */
    int c1, c2;            /* conv channels (default 16, 32)                    */
    int hidden;            /* penultimate features (default 64)                 */
    dfn_activation act;    /* default ReLU                                      */
} dg_config;

/* Offsets of each tensor in the flat block (floats). */
typedef struct dg_layout {
    size_t w1, b1, w2, b2, w3, b3, w4, b4, count;
} dg_layout;

typedef struct dg_net {
    dg_config cfg;
    dg_layout lay;
    int h2, w2;            /* size after the first pooling                      */
    int h3, w3;            /* size of p2                                        */
    int pool2;             /* 1 when the second pooling runs                    */
    int flat;              /* h3 w3 c2: the input width of the dense layer      */
    float *params;         /* lay.count floats (owned: dg_net_free)             */
} dg_net;

/* Activations and scratch for batches of up to `batch` images (one
   allocation; dg_work_free). The d* buffers hold gradients. */
typedef struct dg_work {
    int batch;
    float *a1pre, *a1, *p1, *a2pre, *a2, *p2, *fpre, *f, *z, *prob;
    float *da1, *dp1, *da2, *dp2, *df, *dz;
    float *col;
    size_t col_floats;
    float *gemm;
    void *memory;
} dg_work;

DG_DEF dg_config dg_config_default(int h, int w)
{
    dg_config c;
    c.h = h; c.w = w; c.c = 1; c.classes = DG_CLASSES; c.c1 = 16; c.c2 = 32; c.hidden = 64; c.act = DFN_ACT_RELU;
    return c;
}

/* Sets up net (parameters allocated, not initialized). Returns 0 on
   success, -1 for a bad config (odd or non-positive sizes, above 256) or
   no memory. */
DG_DEF int dg_net_alloc(dg_net *net, const dg_config *cfg)
{
    size_t o = 0;
    memset(net, 0, sizeof *net);
    if (cfg->h < 2 || cfg->w < 2 || cfg->h > 256 || cfg->w > 256 || cfg->h % 2 || cfg->w % 2 ||
        cfg->c1 < 1 || cfg->c2 < 1 || cfg->hidden < 1 || cfg->c1 > 256 || cfg->c2 > 256 ||
        cfg->hidden > 4096 || cfg->c < 1 || cfg->c > 4 || cfg->classes < 2 || cfg->classes > DG_MAX_CLASSES)
        return -1;
    net->cfg = *cfg;
    net->h2 = cfg->h / 2; net->w2 = cfg->w / 2;
    net->pool2 = net->h2 % 2 == 0 && net->w2 % 2 == 0;
    net->h3 = net->pool2 ? net->h2 / 2 : net->h2;
    net->w3 = net->pool2 ? net->w2 / 2 : net->w2;
    net->flat = net->h3 * net->w3 * cfg->c2;
    net->lay.w1 = o; o += (size_t)cfg->c1 * 9 * cfg->c;
    net->lay.b1 = o; o += (size_t)cfg->c1;
    net->lay.w2 = o; o += (size_t)cfg->c2 * 9 * cfg->c1;
    net->lay.b2 = o; o += (size_t)cfg->c2;
    net->lay.w3 = o; o += (size_t)cfg->hidden * net->flat;
    net->lay.b3 = o; o += (size_t)cfg->hidden;
    net->lay.w4 = o; o += (size_t)cfg->classes * cfg->hidden;
    net->lay.b4 = o; o += (size_t)cfg->classes;
    net->lay.count = o;
    net->params = (float *)malloc(o * sizeof(float));
    return net->params ? 0 : -1;
}

DG_DEF void dg_net_free(dg_net *net)
{
    free(net->params);
    memset(net, 0, sizeof *net);
}

/* Weights uniform in [-a, a]: a = sqrt(6 / fan_in) (He et al. 2015, for the
   rectified layers), 1 / sqrt(fan_in) for the logits; biases 0. */
DG_DEF void dg_net_init(dg_net *net, dfn_rng *rng)
{
    const dg_config *c = &net->cfg;
    size_t i;
    struct { size_t off, n; double fan; int last; } t[4];
    int k;
    t[0].off = net->lay.w1; t[0].n = (size_t)c->c1 * 9 * c->c; t[0].fan = 9.0 * c->c; t[0].last = 0;
    t[1].off = net->lay.w2; t[1].n = (size_t)c->c2 * 9 * c->c1; t[1].fan = 9.0 * c->c1; t[1].last = 0;
    t[2].off = net->lay.w3; t[2].n = (size_t)c->hidden * net->flat; t[2].fan = net->flat; t[2].last = 0;
    t[3].off = net->lay.w4; t[3].n = (size_t)c->classes * c->hidden; t[3].fan = c->hidden; t[3].last = 1;
    memset(net->params, 0, net->lay.count * sizeof(float));
    for (k = 0; k < 4; k++) {
        double a = t[k].last ? 1.0 / sqrt(t[k].fan) : sqrt(6.0 / t[k].fan);
        for (i = 0; i < t[k].n; i++)
            net->params[t[k].off + i] = (float)(a * (2.0 * dfn_rng_uniform(rng) - 1.0));
    }
}

DG_DEF void dg_work_free(dg_work *w)
{
    free(w->memory);
    memset(w, 0, sizeof *w);
}

/* Workspace for batches of up to `batch` images. Returns 0, or -1 (no memory). */
DG_DEF int dg_work_alloc(dg_work *w, const dg_net *net, int batch)
{
    const dg_config *c = &net->cfg;
    size_t B = (size_t)batch, n1 = B * c->h * c->w * c->c1, np1 = B * net->h2 * net->w2 * c->c1;
    size_t n2 = B * net->h2 * net->w2 * c->c2, np2 = B * net->flat, nf = B * c->hidden;
    size_t nz = B * c->classes, col1 = dfn_conv2d_col_size(c->h, c->w, c->c, 3);
    size_t col2 = dfn_conv2d_col_size(net->h2, net->w2, c->c1, 3);
    size_t total, gemm_floats = (dfn_gemm_work_size() + sizeof(float) - 1) / sizeof(float);
    float *p;
    memset(w, 0, sizeof *w);
    w->col_floats = (col1 > col2 ? col1 : col2) * (B < 8 ? B : 8);
    total = 3 * n1 + 2 * np1 + 3 * n2 + 2 * np2 + 3 * nf + 3 * nz + w->col_floats + gemm_floats + 64;
    w->memory = malloc(total * sizeof(float));
    if (!w->memory) return -1;
    p = (float *)w->memory;
    w->batch = batch;
    w->a1pre = p; p += n1;  w->a1 = p; p += n1;  w->da1 = p; p += n1;
    w->p1 = p; p += np1;    w->dp1 = p; p += np1;
    w->a2pre = p; p += n2;  w->a2 = p; p += n2;  w->da2 = p; p += n2;
    w->p2 = p; p += np2;    w->dp2 = p; p += np2;
    w->fpre = p; p += nf;   w->f = p; p += nf;   w->df = p; p += nf;
    w->z = p; p += nz;      w->prob = p; p += nz; w->dz = p; p += nz;
    w->col = p; p += w->col_floats;
    w->gemm = p;
    return 0;
}

/* Forward pass of B <= w->batch images x (B, H, W, C) with the weights
   `params` (net's layout): fills every activation of w, the logits w->z and
   the probabilities w->prob (B, K). */
DG_DEF void dg_forward(const dg_net *net, const float *params, dg_work *w, const float *x, int B)
{
    const dg_config *c = &net->cfg;
    const dg_layout *L = &net->lay;
    size_t n1 = (size_t)B * c->h * c->w * c->c1, n2 = (size_t)B * net->h2 * net->w2 * c->c2;
    const float *p2;
    int i, k, K = c->classes;
    dfn_conv2d_forward(w->a1pre, x, params + L->w1, params + L->b1, B, c->h, c->w, c->c, c->c1, 3,
                       w->col, w->col_floats, w->gemm);
    dfn_act_forward(c->act, n1, w->a1pre, w->a1);
    dfn_avgpool2_forward(w->p1, w->a1, B, c->h, c->w, c->c1);
    dfn_conv2d_forward(w->a2pre, w->p1, params + L->w2, params + L->b2, B, net->h2, net->w2, c->c1,
                       c->c2, 3, w->col, w->col_floats, w->gemm);
    dfn_act_forward(c->act, n2, w->a2pre, w->a2);
    if (net->pool2) {
        dfn_avgpool2_forward(w->p2, w->a2, B, net->h2, net->w2, c->c2);
        p2 = w->p2;
    } else {
        p2 = w->a2;
    }
    dfn_linear_forward(w->fpre, p2, params + L->w3, params + L->b3, B, net->flat, c->hidden, w->gemm);
    dfn_act_forward(c->act, (size_t)B * c->hidden, w->fpre, w->f);
    dfn_linear_forward(w->z, w->f, params + L->w4, params + L->b4, B, c->hidden, K, w->gemm);
    for (i = 0; i < B; i++) {                       /* softmax, in double */
        const float *z = w->z + (size_t)i * K;
        float *pr = w->prob + (size_t)i * K;
        double m = z[0], s = 0.0;
        for (k = 1; k < K; k++) if (z[k] > m) m = z[k];
        for (k = 0; k < K; k++) s += exp((double)z[k] - m);
        for (k = 0; k < K; k++) pr[k] = (float)(exp((double)z[k] - m) / s);
    }
}

/* Mean cross-entropy of the last dg_forward against labels (B), in double:
   -log softmax(z)[y] = log sum_k exp(z_k - m) - (z_y - m). */
DG_DEF double dg_loss(const dg_net *net, const dg_work *w, const int *labels, int B)
{
    double total = 0.0;
    int i, k, K = net->cfg.classes;
    for (i = 0; i < B; i++) {
        const float *z = w->z + (size_t)i * K;
        double m = z[0], s = 0.0;
        for (k = 1; k < K; k++) if (z[k] > m) m = z[k];
        for (k = 0; k < K; k++) s += exp((double)z[k] - m);
        total += log(s) - ((double)z[labels[i]] - m);
    }
    return total / B;
}

/* Backward pass after dg_forward(net, params, w, x, B): the gradient of
   dg_loss with respect to every parameter into grad (overwritten, net's
   layout). */
DG_DEF void dg_backward(const dg_net *net, const float *params, dg_work *w, const float *x,
                        const int *labels, int B, float *grad)
{
    const dg_config *c = &net->cfg;
    const dg_layout *L = &net->lay;
    size_t n1 = (size_t)B * c->h * c->w * c->c1, np1 = (size_t)B * net->h2 * net->w2 * c->c1;
    size_t n2 = (size_t)B * net->h2 * net->w2 * c->c2, nf = (size_t)B * c->hidden;
    const float *p2 = net->pool2 ? w->p2 : w->a2;
    float *dp2 = net->pool2 ? w->dp2 : w->da2;
    int i, k, K = c->classes;
    memset(grad, 0, net->lay.count * sizeof(float));
    for (i = 0; i < B; i++)                         /* (softmax - onehot) / B */
        for (k = 0; k < K; k++)
            w->dz[(size_t)i * K + k] = (w->prob[(size_t)i * K + k] - (k == labels[i] ? 1.0f : 0.0f)) / (float)B;
    memset(w->df, 0, nf * sizeof(float));
    dfn_linear_backward(w->df, grad + L->w4, grad + L->b4, w->dz, w->f, params + L->w4, B,
                        c->hidden, K, w->gemm);
    dfn_act_backward(c->act, nf, w->fpre, w->df, w->df);
    memset(dp2, 0, (size_t)B * net->flat * sizeof(float));
    dfn_linear_backward(dp2, grad + L->w3, grad + L->b3, w->df, p2, params + L->w3, B, net->flat,
                        c->hidden, w->gemm);
    if (net->pool2) {
        memset(w->da2, 0, n2 * sizeof(float));
        dfn_avgpool2_backward(w->da2, w->dp2, B, net->h2, net->w2, c->c2);
    }
    dfn_act_backward(c->act, n2, w->a2pre, w->da2, w->da2);
    memset(w->dp1, 0, np1 * sizeof(float));
    dfn_conv2d_backward(w->dp1, grad + L->w2, grad + L->b2, w->da2, w->p1, params + L->w2, B,
                        net->h2, net->w2, c->c1, c->c2, 3, w->col, w->col_floats, w->gemm);
    memset(w->da1, 0, n1 * sizeof(float));
    dfn_avgpool2_backward(w->da1, w->dp1, B, c->h, c->w, c->c1);
    dfn_act_backward(c->act, n1, w->a1pre, w->da1, w->da1);
    dfn_conv2d_backward(NULL, grad + L->w1, grad + L->b1, w->da1, x, params + L->w1, B, c->h,
                        c->w, c->c, c->c1, 3, w->col, w->col_floats, w->gemm);
}

/* Plain Adam (Kingma & Ba 2015) with bias correction, one step over the
   whole flat block: m and v are the moments (zeroed before the first step),
   step counts from 1. */
DG_DEF void dg_adam(float *params, const float *grad, float *m, float *v, size_t n, long step,
                    float lr)
{
    const double b1 = 0.9, b2 = 0.999, eps = 1e-8;
    double c1 = 1.0 - pow(b1, (double)step), c2 = 1.0 - pow(b2, (double)step);
    size_t i;
    for (i = 0; i < n; i++) {
        m[i] = (float)(b1 * m[i] + (1.0 - b1) * grad[i]);
        v[i] = (float)(b2 * v[i] + (1.0 - b2) * (double)grad[i] * grad[i]);
        params[i] -= (float)(lr * (m[i] / c1) / (sqrt(v[i] / c2) + eps));
    }
}

/* Training settings. */
typedef struct dg_train_config {
    int epochs;            /* passes over the data (default 5)                  */
    int batch;             /* default 32                                        */
    float lr;              /* Adam learning rate (default 2e-3; cosine decay to
                              lr / 20 over the run)                             */
    uint64_t seed;         /* initialization and minibatch order (default 1)    */
} dg_train_config;

DG_DEF dg_train_config dg_train_config_default(void)
{
    dg_train_config t;
    t.epochs = 5; t.batch = 32; t.lr = 2e-3f; t.seed = 1;
    return t;
}

/* Initializes net from the seed and trains it on n images (n, H, W, C)
   with labels 0..K-1: every epoch visits the images in a fresh random order
   (Fisher-Yates with the seeded dfn_rng). *final_loss (may be NULL) gets
   the mean loss of the last epoch. Returns 0, or -1 (bad argument, no
   memory). */
DG_DEF int dg_train(dg_net *net, const dg_train_config *tc, const float *images,
                    const int *labels, int n, double *final_loss)
{
    size_t P = net->lay.count, D = (size_t)net->cfg.h * net->cfg.w * net->cfg.c;
    long step = 0, total_steps;
    int epoch, i, j, B = tc->batch, nb;
    float *grad, *m, *v, *xb;
    int *order, *yb;
    dg_work w;
    dfn_rng rng;
    double loss_sum = 0.0;
    if (n < 1 || B < 1 || tc->epochs < 1) return -1;
    for (i = 0; i < n; i++) if (labels[i] < 0 || labels[i] >= net->cfg.classes) return -1;
    if (dg_work_alloc(&w, net, B) != 0) return -1;
    grad = (float *)malloc(3 * P * sizeof(float));
    xb = (float *)malloc((size_t)B * D * sizeof(float));
    order = (int *)malloc((size_t)n * sizeof(int));
    yb = (int *)malloc((size_t)B * sizeof(int));
    if (!grad || !xb || !order || !yb) {
        free(grad); free(xb); free(order); free(yb); dg_work_free(&w);
        return -1;
    }
    m = grad + P; v = m + P;
    memset(m, 0, 2 * P * sizeof(float));
    dfn_rng_seed(&rng, tc->seed, 7);
    dg_net_init(net, &rng);
    for (i = 0; i < n; i++) order[i] = i;
    nb = (n + B - 1) / B;
    total_steps = (long)nb * tc->epochs;
    for (epoch = 0; epoch < tc->epochs; epoch++) {
        loss_sum = 0.0;
        for (i = n - 1; i > 0; i--) {
            int r = (int)dfn_rng_below(&rng, (uint32_t)(i + 1)), tmp = order[i];
            order[i] = order[r]; order[r] = tmp;
        }
        for (j = 0; j < nb; j++) {
            int b0 = j * B, bn = n - b0 < B ? n - b0 : B, k;
            double frac = (double)step / (double)total_steps;
            float lr = (float)(tc->lr * (0.05 + 0.95 * 0.5 * (1.0 + cos(3.14159265358979323846 * frac))));
            for (k = 0; k < bn; k++) {
                memcpy(xb + (size_t)k * D, images + (size_t)order[b0 + k] * D, D * sizeof(float));
                yb[k] = labels[order[b0 + k]];
            }
            dg_forward(net, net->params, &w, xb, bn);
            loss_sum += dg_loss(net, &w, yb, bn) * bn;
            dg_backward(net, net->params, &w, xb, yb, bn, grad);
            dg_adam(net->params, grad, m, v, P, ++step, lr);
        }
    }
    if (final_loss) *final_loss = loss_sum / n;
    free(grad); free(xb); free(order); free(yb);
    dg_work_free(&w);
    return 0;
}

/* Classifies n images (n, H, W, C), values clamped to [-1, 1] first (as a
   picture file would store them): the most probable class into cls (n, or
   NULL), its probability into conf (n, or NULL), and the penultimate
   features into feat (n, hidden, or NULL). Returns 0, or -1 (no memory). */
DG_DEF int dg_classify(const dg_net *net, const float *images, int n, int *cls, float *conf,
                       float *feat)
{
    const int B = 100;
    size_t D = (size_t)net->cfg.h * net->cfg.w * net->cfg.c, H = (size_t)net->cfg.hidden;
    dg_work w;
    float *xb;
    int i0, i, k;
    if (dg_work_alloc(&w, net, B) != 0) return -1;
    xb = (float *)malloc((size_t)B * D * sizeof(float));
    if (!xb) { dg_work_free(&w); return -1; }
    for (i0 = 0; i0 < n; i0 += B) {
        int bn = n - i0 < B ? n - i0 : B;
        size_t e;
        for (e = 0; e < (size_t)bn * D; e++) {
            float v = images[(size_t)i0 * D + e];
            xb[e] = v < -1.0f ? -1.0f : v > 1.0f ? 1.0f : v;
        }
        dg_forward(net, net->params, &w, xb, bn);
        for (i = 0; i < bn; i++) {
            const float *p = w.prob + (size_t)i * net->cfg.classes;
            int best = 0;
            for (k = 1; k < net->cfg.classes; k++) if (p[k] > p[best]) best = k;
            if (cls) cls[i0 + i] = best;
            if (conf) conf[i0 + i] = p[best];
        }
        if (feat) memcpy(feat + (size_t)i0 * H, w.f, (size_t)bn * H * sizeof(float));
    }
    free(xb);
    dg_work_free(&w);
    return 0;
}

/* Share of n images classified as their label (0..1); -1 on no memory. */
DG_DEF double dg_accuracy(const dg_net *net, const float *images, const int *labels, int n)
{
    int *cls = (int *)malloc((size_t)(n > 0 ? n : 1) * sizeof(int)), i, right = 0;
    if (!cls || dg_classify(net, images, n, cls, NULL, NULL) != 0) { free(cls); return -1.0; }
    for (i = 0; i < n; i++) right += cls[i] == labels[i];
    free(cls);
    return n > 0 ? (double)right / n : 0.0;
}

/* ========================================================================= */
/*  Frechet distance                                                         */
/* ========================================================================= */

/* Eigen-decomposition of the symmetric d x d matrix a (row-major, destroyed:
   its diagonal ends up holding the eigenvalues, also copied to eval) by
   cyclic Jacobi rotations; the eigenvectors are the columns of vec (d x d,
   may be NULL), so a = vec diag(eval) vec^T. Each rotation J (c at (p, p)
   and (q, q), s at (p, q), -s at (q, p)) zeroes a[p][q] in J^T a J, with
   t = tan(phi) the smaller root of t^2 + 2 theta t - 1 = 0, theta =
   (a_qq - a_pp) / (2 a_pq). Sweeps stop when the off-diagonal part is below
   1e-30 of the whole (or after 100 sweeps). Returns the sweeps used. */
DG_DEF int dg_jacobi_eigen(double *a, int d, double *eval, double *vec)
{
    int sweep, p, q, k;
    if (vec) {
        memset(vec, 0, (size_t)d * d * sizeof(double));
        for (k = 0; k < d; k++) vec[(size_t)k * d + k] = 1.0;
    }
    for (sweep = 0; sweep < 100; sweep++) {
        double off = 0.0, all = 0.0;
        for (p = 0; p < d; p++)
            for (q = 0; q < d; q++) {
                double x = a[(size_t)p * d + q] * a[(size_t)p * d + q];
                all += x;
                if (p != q) off += x;
            }
        if (off <= 1e-30 * all || off == 0.0) break;
        for (p = 0; p < d - 1; p++)
            for (q = p + 1; q < d; q++) {
                double apq = a[(size_t)p * d + q], theta, t, c, s;
                if (apq == 0.0) continue;
                theta = (a[(size_t)q * d + q] - a[(size_t)p * d + p]) / (2.0 * apq);
                t = (theta >= 0.0 ? 1.0 : -1.0) / (fabs(theta) + sqrt(theta * theta + 1.0));
                c = 1.0 / sqrt(t * t + 1.0);
                s = t * c;
                for (k = 0; k < d; k++) {            /* columns: a J */
                    double akp = a[(size_t)k * d + p], akq = a[(size_t)k * d + q];
                    a[(size_t)k * d + p] = c * akp - s * akq;
                    a[(size_t)k * d + q] = s * akp + c * akq;
                }
                for (k = 0; k < d; k++) {            /* rows: J^T (a J) */
                    double apk = a[(size_t)p * d + k], aqk = a[(size_t)q * d + k];
                    a[(size_t)p * d + k] = c * apk - s * aqk;
                    a[(size_t)q * d + k] = s * apk + c * aqk;
                }
                a[(size_t)p * d + q] = a[(size_t)q * d + p] = 0.0;
                if (vec)
                    for (k = 0; k < d; k++) {
                        double vkp = vec[(size_t)k * d + p], vkq = vec[(size_t)k * d + q];
                        vec[(size_t)k * d + p] = c * vkp - s * vkq;
                        vec[(size_t)k * d + q] = s * vkp + c * vkq;
                    }
            }
    }
    for (k = 0; k < d; k++) eval[k] = a[(size_t)k * d + k];
    return sweep;
}

/* FD between N(mu1, S1) and N(mu2, S2) in R^d (S1, S2 symmetric positive
   semi-definite, row-major): |mu1 - mu2|^2 + tr S1 + tr S2 - 2 tr R with
   R = (S1^1/2 S2 S1^1/2)^1/2, every square root through dg_jacobi_eigen.
   Never below 0 in exact arithmetic; tiny negative rounding is returned as
   is. Returns -1 on no memory (or d < 1). */
DG_DEF double dg_frechet_gaussians(const double *mu1, const double *s1, const double *mu2,
                                   const double *s2, int d)
{
    size_t dd = (size_t)d * d;
    double *a, *vec, *root, *tmp, *ev, fd = 0.0, tr = 0.0;
    int i, j, k;
    if (d < 1) return -1.0;
    a = (double *)malloc((4 * dd + (size_t)d) * sizeof(double));
    if (!a) return -1.0;
    vec = a + dd; root = vec + dd; tmp = root + dd; ev = tmp + dd;
    for (i = 0; i < d; i++) fd += (mu1[i] - mu2[i]) * (mu1[i] - mu2[i]) + s1[(size_t)i * d + i] +
                                  s2[(size_t)i * d + i];
    memcpy(a, s1, dd * sizeof(double));              /* S1^1/2 = V sqrt(L) V^T */
    dg_jacobi_eigen(a, d, ev, vec);
    for (k = 0; k < d; k++) ev[k] = ev[k] > 0.0 ? sqrt(ev[k]) : 0.0;
    for (i = 0; i < d; i++)
        for (j = 0; j < d; j++) {
            double s = 0.0;
            for (k = 0; k < d; k++) s += vec[(size_t)i * d + k] * ev[k] * vec[(size_t)j * d + k];
            root[(size_t)i * d + j] = s;
        }
    for (i = 0; i < d; i++)                          /* tmp = S2 S1^1/2 */
        for (j = 0; j < d; j++) {
            double s = 0.0;
            for (k = 0; k < d; k++) s += s2[(size_t)i * d + k] * root[(size_t)k * d + j];
            tmp[(size_t)i * d + j] = s;
        }
    for (i = 0; i < d; i++)                          /* a = S1^1/2 tmp */
        for (j = 0; j < d; j++) {
            double s = 0.0;
            for (k = 0; k < d; k++) s += root[(size_t)i * d + k] * tmp[(size_t)k * d + j];
            a[(size_t)i * d + j] = s;
        }
    for (i = 0; i < d; i++)                          /* symmetric up to rounding */
        for (j = i + 1; j < d; j++)
            a[(size_t)i * d + j] = a[(size_t)j * d + i] =
                0.5 * (a[(size_t)i * d + j] + a[(size_t)j * d + i]);
    dg_jacobi_eigen(a, d, ev, NULL);
    for (k = 0; k < d; k++) tr += ev[k] > 0.0 ? sqrt(ev[k]) : 0.0;
    free(a);
    return fd - 2.0 * tr;
}

/* Mean (d) and unbiased covariance (d x d, divided by n - 1) of n feature
   vectors x (n, d) floats, in double. n >= 2. */
DG_DEF void dg_mean_cov(const float *x, int n, int d, double *mu, double *cov)
{
    int i, j, k;
    memset(mu, 0, (size_t)d * sizeof(double));
    memset(cov, 0, (size_t)d * d * sizeof(double));
    for (i = 0; i < n; i++)
        for (j = 0; j < d; j++) mu[j] += x[(size_t)i * d + j];
    for (j = 0; j < d; j++) mu[j] /= n;
    for (i = 0; i < n; i++)
        for (j = 0; j < d; j++) {
            double cj = x[(size_t)i * d + j] - mu[j];
            for (k = j; k < d; k++) cov[(size_t)j * d + k] += cj * (x[(size_t)i * d + k] - mu[k]);
        }
    for (j = 0; j < d; j++)
        for (k = j; k < d; k++) cov[(size_t)k * d + j] = cov[(size_t)j * d + k] /= (n - 1);
}

/* FD between the Gaussians fitted (dg_mean_cov) to x (n, d) and y (m, d);
   n, m >= 2. Returns -1 on bad sizes or no memory. */
DG_DEF double dg_frechet_features(const float *x, int n, const float *y, int m, int d)
{
    double *buf, fd;
    size_t dd = (size_t)d * d;
    if (n < 2 || m < 2 || d < 1) return -1.0;
    buf = (double *)malloc((2 * dd + 2 * (size_t)d) * sizeof(double));
    if (!buf) return -1.0;
    dg_mean_cov(x, n, d, buf, buf + d);
    dg_mean_cov(y, m, d, buf + d + dd, buf + 2 * d + dd);
    fd = dg_frechet_gaussians(buf, buf + d, buf + d + dd, buf + 2 * d + dd, d);
    free(buf);
    return fd;
}

#endif /* DFN_BENCH_DIGITS_H */
