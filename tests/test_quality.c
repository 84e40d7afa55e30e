/* The image quality measure of bench/image_quality.c, in small: the digit
   classifier's hand-written backward pass against finite differences, the
   Jacobi eigen-decomposition and the Frechet distance against closed forms,
   and (with data/mnist/ present) the classifier trained briefly on real
   digits reaching a stated accuracy on held-out ones. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "harness.h"
#include "../diffusion.h"
#include "../bench/digits.h"

typedef struct tq_clf {
    dg_net *net;
    dg_work *w;
    const float *x;
    const int *y;
    int B;
} tq_clf;

static double tq_clf_loss(void *user, const float *params)
{
    tq_clf *c = (tq_clf *)user;
    dg_forward(c->net, params, c->w, c->x, c->B);
    return dg_loss(c->net, c->w, c->y, c->B);
}

void test_digits_classifier_gradient(void)
{
    /* 8x8 pools twice, 6x6 once (3x3 is odd); ReLU (the default) and SiLU;
       grey with 10 classes and RGB with 9 (the emoji's categories, SiLU). */
    static const int sizes[2] = { 8, 6 };
    static const int ys[3] = { 1, 7, 3 };
    int si, a, i, col;
    for (col = 0; col < 2; col++)
    for (si = 0; si < 2; si++)
        for (a = 0; a < 2; a++) {
            dg_config c = dg_config_default(sizes[si], sizes[si]);
            dg_net net;
            dg_work w;
            dfn_rng rng;
            float x[3 * 64 * 3], *g;
            tq_clf u;
            double err = 1.0;
            size_t worst = 0;
            c.c1 = 3; c.c2 = 4; c.hidden = 5;
            c.act = a ? DFN_ACT_SILU : DFN_ACT_RELU;
            c.c = col ? 3 : 1;
            c.classes = col ? 9 : 10;
            /* RGB with the smooth SiLU only: central differences of h = 1e-3
               step over ReLU's kink for some weights (exact 0 analytic, a
               nonzero difference), and the activation does not depend on C */
            if (col && !a) continue;
            CHECK(dg_net_alloc(&net, &c) == 0 && dg_work_alloc(&w, &net, 3) == 0, "alloc");
            CHECK(net.pool2 == (si == 0), "size %d: pool2 %d", sizes[si], net.pool2);
            dfn_rng_seed(&rng, 3 + (uint64_t)si, (uint64_t)a);
            dg_net_init(&net, &rng);
            for (i = 0; i < 3 * sizes[si] * sizes[si] * c.c; i++) x[i] = dfn_rng_normal(&rng);
            g = (float *)malloc(net.lay.count * sizeof(float));
            dg_forward(&net, net.params, &w, x, 3);
            dg_backward(&net, net.params, &w, x, ys, 3, g);
            u.net = &net; u.w = &w; u.x = x; u.y = ys; u.B = 3;
            CHECK(dfn_check_grad(tq_clf_loss, &u, net.params, net.lay.count, g, 1, 1e-3f, 1e-3, &err,
                                 &worst) == DFN_OK && err < 2e-2,
                  "size %d act %d channels %d: relative error %g at %d of %d (analytic %g)", sizes[si],
                  (int)c.act, c.c, err, (int)worst, (int)net.lay.count, g[worst]);
            free(g);
            dg_work_free(&w);
            dg_net_free(&net);
        }
}

void test_digits_jacobi_eigen(void)
{
    /* The n x n second-difference matrix (2 on the diagonal, -1 beside it)
       has eigenvalues 2 - 2 cos(k pi / (n + 1)), k = 1..n. */
    enum { n = 12 };
    double a[n * n], a0[n * n], ev[n], vec[n * n], want[n], used[n];
    double max_err = 0.0, orth = 0.0, rec = 0.0;
    int i, j, k;
    memset(a, 0, sizeof a);
    for (i = 0; i < n; i++) {
        a[i * n + i] = 2.0;
        if (i > 0) a[i * n + i - 1] = a[(i - 1) * n + i] = -1.0;
        want[i] = 2.0 - 2.0 * cos((i + 1) * 3.14159265358979323846 / (n + 1));
        used[i] = 0.0;
    }
    memcpy(a0, a, sizeof a);
    dg_jacobi_eigen(a, n, ev, vec);
    for (i = 0; i < n; i++) {                        /* match each eigenvalue once */
        int best = -1;
        for (j = 0; j < n; j++)
            if (!used[j] && (best < 0 || fabs(ev[i] - want[j]) < fabs(ev[i] - want[best]))) best = j;
        used[best] = 1.0;
        if (fabs(ev[i] - want[best]) > max_err) max_err = fabs(ev[i] - want[best]);
    }
    for (i = 0; i < n; i++)                          /* V^T V = I, V L V^T = A */
        for (j = 0; j < n; j++) {
            double vv = 0.0, r = 0.0;
            for (k = 0; k < n; k++) {
                vv += vec[k * n + i] * vec[k * n + j];
                r += vec[i * n + k] * ev[k] * vec[j * n + k];
            }
            if (fabs(vv - (i == j)) > orth) orth = fabs(vv - (i == j));
            if (fabs(r - a0[i * n + j]) > rec) rec = fabs(r - a0[i * n + j]);
        }
    CHECK(max_err < 1e-12, "eigenvalue error %g", max_err);
    CHECK(orth < 1e-12, "eigenvectors not orthonormal: %g", orth);
    CHECK(rec < 1e-12, "reconstruction error %g", rec);
}

/* A random orthogonal d x d matrix q (row-major): Gram-Schmidt on normals. */
static void tq_orthogonal(double *q, int d, dfn_rng *rng)
{
    int i, j, k;
    for (i = 0; i < d * d; i++) q[i] = dfn_rng_normal(rng);
    for (j = 0; j < d; j++) {                        /* columns */
        double norm = 0.0;
        for (k = 0; k < j; k++) {
            double dot = 0.0;
            for (i = 0; i < d; i++) dot += q[i * d + j] * q[i * d + k];
            for (i = 0; i < d; i++) q[i * d + j] -= dot * q[i * d + k];
        }
        for (i = 0; i < d; i++) norm += q[i * d + j] * q[i * d + j];
        norm = sqrt(norm);
        for (i = 0; i < d; i++) q[i * d + j] /= norm;
    }
}

void test_digits_frechet_closed_form(void)
{
    enum { d = 64 };
    dfn_rng rng;
    double *q = (double *)malloc(3 * d * d * sizeof(double)), *s1 = q + d * d, *s2 = s1 + d * d;
    double mu1[d], mu2[d], la[d], lb[d], want = 0.0, got;
    int i, j, k;
    dfn_rng_seed(&rng, 2026, 0);

    /* 1. S1 = Q diag(a) Q^T and S2 = Q diag(b) Q^T commute:
          FD = |mu1 - mu2|^2 + sum_i (sqrt(a_i) - sqrt(b_i))^2. Some
          eigenvalues 0 (a singular covariance, as ReLU features give). */
    tq_orthogonal(q, d, &rng);
    for (i = 0; i < d; i++) {
        mu1[i] = dfn_rng_normal(&rng);
        mu2[i] = dfn_rng_normal(&rng);
        la[i] = i % 9 == 0 ? 0.0 : 0.1 + 3.0 * dfn_rng_uniform(&rng);
        lb[i] = 0.1 + 3.0 * dfn_rng_uniform(&rng);
        want += (mu1[i] - mu2[i]) * (mu1[i] - mu2[i]) + (sqrt(la[i]) - sqrt(lb[i])) * (sqrt(la[i]) - sqrt(lb[i]));
    }
    for (i = 0; i < d; i++)
        for (j = 0; j < d; j++) {
            double x = 0.0, y = 0.0;
            for (k = 0; k < d; k++) {
                x += q[i * d + k] * la[k] * q[j * d + k];
                y += q[i * d + k] * lb[k] * q[j * d + k];
            }
            s1[i * d + j] = x;
            s2[i * d + j] = y;
        }
    for (i = 0; i < d; i++)                          /* exactly symmetric */
        for (j = 0; j < i; j++) {
            s1[i * d + j] = s1[j * d + i];
            s2[i * d + j] = s2[j * d + i];
        }
    got = dg_frechet_gaussians(mu1, s1, mu2, s2, d);
    CHECK(fabs(got - want) < 1e-8 * want, "commuting 64-d: %.12g, closed form %.12g", got, want);
    got = dg_frechet_gaussians(mu1, s1, mu1, s1, d);
    CHECK(fabs(got) < 1e-6, "identical Gaussians: %g", got);   /* tr S1 is about 100 */

    /* 2. 2 x 2, not commuting: for M = S1^1/2 S2 S1^1/2 (2 x 2, positive
          semi-definite), tr M^1/2 = sqrt(tr M + 2 sqrt(det M)) with
          tr M = tr(S1 S2) and det M = det S1 det S2. */
    for (k = 0; k < 20; k++) {
        double a[4], b[4], m1[2], m2[2], trm, detm;
        double p = 0.2 + 2.0 * dfn_rng_uniform(&rng), r = 0.2 + 2.0 * dfn_rng_uniform(&rng);
        double c = (2.0 * dfn_rng_uniform(&rng) - 1.0) * sqrt(p * r);
        double p2 = 0.2 + 2.0 * dfn_rng_uniform(&rng), r2 = 0.2 + 2.0 * dfn_rng_uniform(&rng);
        double c2 = (2.0 * dfn_rng_uniform(&rng) - 1.0) * sqrt(p2 * r2);
        a[0] = p; a[1] = a[2] = c; a[3] = r;
        b[0] = p2; b[1] = b[2] = c2; b[3] = r2;
        m1[0] = dfn_rng_normal(&rng); m1[1] = dfn_rng_normal(&rng);
        m2[0] = dfn_rng_normal(&rng); m2[1] = dfn_rng_normal(&rng);
        trm = a[0] * b[0] + a[1] * b[2] + a[2] * b[1] + a[3] * b[3];
        detm = (p * r - c * c) * (p2 * r2 - c2 * c2);
        want = (m1[0] - m2[0]) * (m1[0] - m2[0]) + (m1[1] - m2[1]) * (m1[1] - m2[1]) + p + r + p2 + r2 -
               2.0 * sqrt(trm + 2.0 * sqrt(detm));
        got = dg_frechet_gaussians(m1, a, m2, b, 2);
        CHECK(fabs(got - want) < 1e-10 * (1.0 + want), "2x2 case %d: %.12g, closed form %.12g", k, got, want);
    }
    free(q);

    /* 3. From feature vectors: mean and unbiased covariance by hand for
          x = {(0, 0), (2, 0), (0, 2), (2, 2)}: mean (1, 1), covariance 4/3 I;
          y = x + (3, 4) has the same covariance, so FD = 25. */
    {
        float x[8] = { 0, 0, 2, 0, 0, 2, 2, 2 }, y[8];
        double mu[2], cov[4];
        for (i = 0; i < 8; i++) y[i] = x[i] + (i % 2 ? 4.0f : 3.0f);
        dg_mean_cov(x, 4, 2, mu, cov);
        CHECK(mu[0] == 1.0 && mu[1] == 1.0, "mean %g %g", mu[0], mu[1]);
        CHECK(fabs(cov[0] - 4.0 / 3.0) < 1e-15 && fabs(cov[3] - 4.0 / 3.0) < 1e-15 && cov[1] == 0.0 &&
                  cov[2] == 0.0, "covariance %g %g %g %g", cov[0], cov[1], cov[2], cov[3]);
        got = dg_frechet_features(x, 4, y, 4, 2);
        CHECK(fabs(got - 25.0) < 1e-12, "FD %.15g, want 25", got);
        CHECK(dg_frechet_features(x, 1, y, 4, 2) == -1.0, "n = 1 accepted");
    }
}

#if !defined(DFN_NO_STDIO) && !defined(DFN_NO_MALLOC)
/* Trains a classifier of config c on the first n training images for
   `epochs` and checks its accuracy on the test images is at least `bar`. */
static void tq_train_and_score(const dg_config *c, const dfn_image_set *train, int n,
                               const dfn_image_set *test, int epochs, double bar)
{
    dg_net net;
    dg_train_config tc = dg_train_config_default();
    double loss = 0.0, acc;
    tc.epochs = epochs;
    CHECK(dg_net_alloc(&net, c) == 0, "alloc");
    CHECK(dg_train(&net, &tc, train->images, train->labels, n, &loss) == 0, "training");
    acc = dg_accuracy(&net, test->images, test->labels, test->n);
    CHECK(acc >= bar, "test accuracy %.4f (last-epoch loss %.4f)", acc, loss);
    if (getenv("DFN_TEST_VERBOSE")) printf("    test accuracy %.4f, loss %.4f\n", acc, loss);
    dg_net_free(&net);
}
#endif

void test_digits_classifier_quality_on_mnist(void)
{
#if !defined(DFN_NO_STDIO) && !defined(DFN_NO_MALLOC)
    /* 4,000 training digits at 14x14, three epochs (about 1.5 s at -O2;
       93.2% with gcc -O2 on x86-64): at least 90% of the 1,000 test digits
       right. */
    dfn_image_set train, test;
    dg_config c;
    FILE *f = fopen("data/mnist/train-images-idx3-ubyte", "rb");
    if (!f) {
        printf("    note: data/mnist/ absent (run `make mnist-data` from the repository root); skipped\n");
        return;
    }
    fclose(f);
    CHECK(dfn_idx_load(&train, "data/mnist/train-images-idx3-ubyte", "data/mnist/train-labels-idx1-ubyte",
                       2, NULL) == DFN_OK, "train split");
    CHECK(dfn_idx_load(&test, "data/mnist/t10k-images-idx3-ubyte", "data/mnist/t10k-labels-idx1-ubyte", 2,
                       NULL) == DFN_OK, "test split");
    if (train.n < 4000 || test.n < 1000) {
        CHECK(0, "%d training, %d test digits", train.n, test.n);
    } else {
        c = dg_config_default(14, 14);
        tq_train_and_score(&c, &train, 4000, &test, 3, 0.90);
    }
    dfn_image_set_free(&train, NULL);
    dfn_image_set_free(&test, NULL);
#endif
}

void test_digits_classifier_quality_on_emoji(void)
{
#if !defined(DFN_NO_STDIO) && !defined(DFN_NO_MALLOC)
    /* The colour set of `make emoji-data` as the library reads it (the
       documented counts: 1,720 training and 186 test images of 32x32 RGB in
       9 categories), and the RGB classifier of bench/digits.h trained on it
       at 16x16 for 10 epochs: well above the largest category's share
       (People & Body, 20%) on the held-out images (64.5% with gcc -O2 on
       x86-64; the bar is 45%). */
    static const int per_class[9] = { 169, 386, 159, 131, 218, 85, 264, 224, 270 };
    dfn_image_set train, test;
    dg_config c;
    int count[9] = { 0 }, i, k, bad = 0;
    FILE *f = fopen("data/emoji/train-images-idx4-ubyte", "rb");
    if (!f) {
        printf("    note: data/emoji/ absent (run `make emoji-data` from the repository root); skipped\n");
        return;
    }
    fclose(f);
    CHECK(dfn_idx_load(&train, "data/emoji/train-images-idx4-ubyte", "data/emoji/train-labels-idx1-ubyte", 2,
                       NULL) == DFN_OK, "train split");
    CHECK(dfn_idx_load(&test, "data/emoji/t10k-images-idx4-ubyte", "data/emoji/t10k-labels-idx1-ubyte", 2,
                       NULL) == DFN_OK, "test split");
    CHECK(train.n == 1720 && test.n == 186 && train.c == 3 && train.h == 16 && test.c == 3, "%d %d c %d h %d",
          train.n, test.n, train.c, train.h);
    for (i = 0; i < train.n; i++) bad += train.labels[i] < 0 || train.labels[i] > 8;
    for (i = 0; i < test.n; i++) bad += test.labels[i] < 0 || test.labels[i] > 8;
    CHECK(bad == 0, "%d labels outside 0..8", bad);
    if (bad == 0 && train.n == 1720 && test.n == 186) {
        for (i = 0; i < train.n; i++) count[train.labels[i]]++;
        for (i = 0; i < test.n; i++) count[test.labels[i]]++;
        for (k = 0; k < 9; k++) CHECK(count[k] == per_class[k], "category %d: %d images", k, count[k]);
        c = dg_config_default(16, 16);
        c.c = 3;
        c.classes = 9;
        tq_train_and_score(&c, &train, train.n, &test, 10, 0.45);
    }
    dfn_image_set_free(&train, NULL);
    dfn_image_set_free(&test, NULL);
#endif
}
