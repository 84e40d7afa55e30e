/* The network and its training: hand-written backward passes against finite
   differences (each layer alone, then the whole network), the optimizer
   against Adam written out here, inference against the training forward,
   and error handling. */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "harness.h"
#include "../diffusion.h"

/* ---- one linear layer alone: loss = sum_ij c_ij out_ij, in double ---- */

typedef struct {
    int B, I, O;
    float *in, *W, *b, *c, *out, *work;
    int wrt;               /* 0: W, 1: b, 2: in */
} lin_case;

static double lin_loss(void *user, const float *p)
{
    lin_case *lc = (lin_case *)user;
    double s = 0;
    int i;
    (void)p;               /* p is one of lc's arrays, changed in place by the checker */
    dfn_linear_forward(lc->out, lc->in, lc->W, lc->b, lc->B, lc->I, lc->O, lc->work);
    for (i = 0; i < lc->B * lc->O; i++) s += (double)lc->c[i] * lc->out[i];
    return s;
}

void test_net_linear_layer_gradients(void)
{
    /* d(sum c . out)/dW = c^T in, /db = colsum c, /din = c W: the backward
       pass must match central differences within 1e-2 relative (float
       forward, h = 1e-2; a wrong index or transpose gives O(1) errors). */
    lin_case lc;
    dfn_rng rng;
    float *dW, *db, *din;
    double err;
    size_t worst;
    int B = 5, I = 7, O = 3;
    lc.B = B; lc.I = I; lc.O = O;
    lc.in = (float *)malloc(sizeof(float) * B * I);
    lc.W = (float *)malloc(sizeof(float) * O * I);
    lc.b = (float *)malloc(sizeof(float) * O);
    lc.c = (float *)malloc(sizeof(float) * B * O);
    lc.out = (float *)malloc(sizeof(float) * B * O);
    lc.work = (float *)malloc(dfn_gemm_work_size());
    dW = (float *)calloc((size_t)O * I, sizeof(float));
    db = (float *)calloc((size_t)O, sizeof(float));
    din = (float *)calloc((size_t)B * I, sizeof(float));
    dfn_rng_seed(&rng, 71, 0);
    dfn_rng_normal_fill(&rng, lc.in, (size_t)B * I);
    dfn_rng_normal_fill(&rng, lc.W, (size_t)O * I);
    dfn_rng_normal_fill(&rng, lc.b, (size_t)O);
    dfn_rng_normal_fill(&rng, lc.c, (size_t)B * O);
    dfn_linear_backward(din, dW, db, lc.c, lc.in, lc.W, B, I, O, lc.work);
    CHECK(dfn_check_grad(lin_loss, &lc, lc.W, (size_t)O * I, dW, 1, 1e-2f, 1e-3, &err, &worst) == DFN_OK &&
          err < 1e-2, "dW: relative error %g at %d", err, (int)worst);
    CHECK(dfn_check_grad(lin_loss, &lc, lc.b, (size_t)O, db, 1, 1e-2f, 1e-3, &err, &worst) == DFN_OK &&
          err < 1e-2, "db: relative error %g at %d", err, (int)worst);
    CHECK(dfn_check_grad(lin_loss, &lc, lc.in, (size_t)B * I, din, 1, 1e-2f, 1e-3, &err, &worst) == DFN_OK &&
          err < 1e-2, "din: relative error %g at %d", err, (int)worst);
    /* backward accumulates: a second call doubles the gradients */
    {
        float keep = dW[4];
        dfn_linear_backward(NULL, dW, NULL, lc.c, lc.in, lc.W, B, I, O, lc.work);
        CHECK(fabsf(dW[4] - 2 * keep) <= 1e-5f * fabsf(keep) + 1e-6f, "backward must accumulate: %g vs 2 x %g", dW[4], keep);
    }
    free(lc.in); free(lc.W); free(lc.b); free(lc.c); free(lc.out); free(lc.work);
    free(dW); free(db); free(din);
}

/* ---- the whole network through the trainer's loss ---- */

typedef struct {
    dfn_trainer *tr;
    const float *x0, *eps;
    const int *t, *labels;
} net_case;

static double net_loss(void *user, const float *p)
{
    net_case *nc = (net_case *)user;
    float loss = 0;
    (void)p;
    dfn_trainer_loss_grad(nc->tr, nc->x0, nc->labels, nc->t, nc->eps, &loss);
    return loss;
}

/* Builds a small net + trainer, computes the analytic gradient at fixed t,
   eps, and checks every 3rd parameter (all tensors) against central
   differences; returns the worst relative error. */
static double whole_net_error(dfn_activation act, dfn_prediction pred, dfn_loss_weighting wt,
                              int classes, int *ok)
{
    enum { B = 6, D = 2 };
    dfn_mlp_config mc = dfn_mlp_config_default(D);
    dfn_train_config tc = dfn_train_config_default();
    dfn_schedule s;
    dfn_schedule_config sc = dfn_schedule_config_default(DFN_SCHEDULE_COSINE, 100);
    dfn_mlp m;
    dfn_trainer tr;
    dfn_rng rng;
    net_case nc;
    float x0[B * D], eps[B * D], loss, *params, *grad;
    int t[B] = { 1, 7, 30, 55, 90, 100 }, labels[B] = { 0, 1, -1, 2, 0, -1 };
    double err = 1;
    size_t worst = 0, P;
    *ok = 0;
    mc.hidden = 12; mc.blocks = 2; mc.time_dim = 8; mc.input_emb_dim = 4; mc.input_scale = 2.0f;
    mc.act = act; mc.prediction = pred; mc.num_classes = classes;
    tc.batch = B; tc.weighting = wt;
    P = dfn_mlp_num_params(&mc);
    params = (float *)malloc(P * sizeof(float));
    grad = (float *)malloc(P * sizeof(float));
    if (dfn_schedule_alloc(&s, &sc, NULL) != DFN_OK || dfn_mlp_init(&m, &mc, params) != DFN_OK) return 1;
    dfn_rng_seed(&rng, 81, (uint64_t)act);
    dfn_mlp_init_weights(&m, &rng);
    dfn_rng_normal_fill(&rng, x0, B * D);
    dfn_rng_normal_fill(&rng, eps, B * D);
    if (dfn_trainer_alloc(&tr, &m, &s, &tc, NULL) == DFN_OK &&
        dfn_trainer_loss_grad(&tr, x0, classes ? labels : NULL, t, eps, &loss) == DFN_OK) {
        memcpy(grad, tr.grads, P * sizeof(float));
        nc.tr = &tr; nc.x0 = x0; nc.eps = eps; nc.t = t; nc.labels = classes ? labels : NULL;
        *ok = dfn_check_grad(net_loss, &nc, params, P, grad, 3, 1e-2f, 1e-3, &err, &worst) == DFN_OK;
        if (err >= 2e-2) printf("    worst at parameter %d of %d: analytic %g\n", (int)worst, (int)P, grad[worst]);
        dfn_trainer_free(&tr, NULL);
    }
    dfn_schedule_free(&s, NULL);
    free(params); free(grad);
    return err;
}

void test_net_mlp_whole_gradients(void)
{
    /* Every third parameter of a 2-block net (input features, t-embedding,
       class embedding, every W and b): relative error below 2e-2 with
       h = 1e-2 in float (errors of a wrong backward are O(1)). */
    static const struct { dfn_activation act; dfn_prediction pred; dfn_loss_weighting wt; int classes; } cases[] = {
        { DFN_ACT_GELU, DFN_PREDICT_EPS, DFN_WEIGHT_UNIFORM, 0 },
        { DFN_ACT_SILU, DFN_PREDICT_V,   DFN_WEIGHT_MIN_SNR, 3 },
        { DFN_ACT_GELU, DFN_PREDICT_X0,  DFN_WEIGHT_MIN_SNR, 3 },
        { DFN_ACT_IDENTITY, DFN_PREDICT_EPS, DFN_WEIGHT_MIN_SNR, 0 }
    };
    int i, ok;
    for (i = 0; i < 4; i++) {
        double err = whole_net_error(cases[i].act, cases[i].pred, cases[i].wt, cases[i].classes, &ok);
        CHECK(ok && err < 2e-2, "case %d: relative error %g", i, err);
    }
}

void test_net_check_grad_detects_wrong_gradient(void)
{
    /* The checker itself: a gradient off by 10% in one entry is reported. */
    lin_case lc;
    float in[6] = { 1, 2, 3, 4, 5, 6 }, W[6] = { .1f, -.2f, .3f, .4f, -.5f, .6f }, c[4] = { 1, -1, .5f, 2 };
    float out[4], dW[6] = { 0 }, work[1024];
    double err;
    size_t worst;
    lc.B = 2; lc.I = 3; lc.O = 2; lc.in = in; lc.W = W; lc.b = NULL; lc.c = c; lc.out = out;
    lc.work = (float *)malloc(dfn_gemm_work_size());
    (void)work;
    dfn_linear_backward(NULL, dW, NULL, c, in, W, 2, 3, 2, lc.work);
    dW[4] *= 1.1f;
    CHECK(dfn_check_grad(lin_loss, &lc, W, 6, dW, 1, 1e-2f, 1e-3, &err, &worst) == DFN_OK && err > 0.04 && worst == 4,
          "a 10%% error at index 4 reported as %g at %d", err, (int)worst);
    CHECK(W[4] == -.5f, "the checker must restore the parameters");
    CHECK(dfn_check_grad(lin_loss, &lc, W, 6, dW, 0, 1e-2f, 1e-3, &err, NULL) == DFN_ERR_INVALID_ARG, "stride 0");
    free(lc.work);
}

/* A 2D net with trainer, for the remaining tests. */
typedef struct {
    dfn_schedule s;
    dfn_mlp m;
    dfn_trainer tr;
    float *params;
} net_fixture;

static int fixture_open(net_fixture *f, int batch, int classes, uint64_t seed, const dfn_train_config *tc_in)
{
    dfn_mlp_config mc = dfn_mlp_config_default(2);
    dfn_train_config tc = tc_in ? *tc_in : dfn_train_config_default();
    dfn_schedule_config sc = dfn_schedule_config_default(DFN_SCHEDULE_LINEAR, 200);
    dfn_rng rng;
    mc.hidden = 32; mc.blocks = 2; mc.time_dim = 16; mc.input_emb_dim = 8; mc.num_classes = classes;
    tc.batch = batch;
    f->params = (float *)malloc(dfn_mlp_num_params(&mc) * sizeof(float));
    dfn_rng_seed(&rng, seed, 0);
    return dfn_schedule_alloc(&f->s, &sc, NULL) == DFN_OK && dfn_mlp_init(&f->m, &mc, f->params) == DFN_OK &&
           dfn_mlp_init_weights(&f->m, &rng) == DFN_OK && dfn_trainer_alloc(&f->tr, &f->m, &f->s, &tc, NULL) == DFN_OK;
}

static void fixture_close(net_fixture *f)
{
    dfn_trainer_free(&f->tr, NULL);
    dfn_schedule_free(&f->s, NULL);
    free(f->params);
}

void test_net_inference_matches_training_forward(void)
{
    /* The inference forward (activations in place, any chunk size) gives the
       prediction the training forward computed for the same x_t, t. */
    enum { B = 37 };
    net_fixture f;
    dfn_rng rng;
    float x0[B * 2], eps[B * 2], xt[B * 2], out_a[B * 2], out_b[B * 2], target[B * 2], loss;
    int t[B], i, labels[B];
    double worst = 0, worst_chunk = 0, mse = 0;
    CHECK(fixture_open(&f, B, 4, 91, NULL), "fixture");
    dfn_rng_seed(&rng, 92, 0);
    dfn_rng_normal_fill(&rng, x0, B * 2);
    dfn_rng_normal_fill(&rng, eps, B * 2);
    for (i = 0; i < B; i++) { t[i] = 1 + (int)dfn_rng_below(&rng, 200); labels[i] = (int)dfn_rng_below(&rng, 5) - 1; }
    CHECK(dfn_trainer_loss_grad(&f.tr, x0, labels, t, eps, &loss) == DFN_OK, "loss");
    /* recompute the same loss from an inference forward pass */
    dfn_q_sample(&f.s, xt, x0, eps, t, B, 2);
    dfn_prediction_target(&f.s, DFN_PREDICT_EPS, target, x0, eps, t, B, 2);
    {
        size_t big = dfn_mlp_forward_size(&f.m.cfg, 64), small = dfn_mlp_forward_size(&f.m.cfg, 5);
        void *wb = malloc(big), *ws = malloc(small);
        CHECK(big > small && small > 0, "sizes %d %d", (int)big, (int)small);
        CHECK(dfn_mlp_forward(&f.m, out_a, xt, t, labels, B, wb, big) == DFN_OK, "forward, one chunk");
        CHECK(dfn_mlp_forward(&f.m, out_b, xt, t, labels, B, ws, small) == DFN_OK, "forward, chunks of 5");
        CHECK(dfn_mlp_forward(&f.m, out_b, xt, t, labels, B, ws, small - 64) == DFN_ERR_BUFFER_TOO_SMALL ||
              dfn_mlp_forward_size(&f.m.cfg, 4) <= small - 64, "a smaller buffer either fits a smaller chunk or is refused");
        CHECK(dfn_mlp_forward(&f.m, out_b, xt, t, labels, B, ws, small) == DFN_OK, "forward, chunks of 5");
        free(wb); free(ws);
    }
    for (i = 0; i < B * 2; i++) {
        double d = fabs(out_a[i] - out_b[i]);
        if (d > worst_chunk) worst_chunk = d;
        mse += (out_a[i] - target[i]) * (out_a[i] - target[i]);
    }
    mse /= B * 2;
    worst = fabs(mse - loss) / loss;
    CHECK(worst < 1e-5, "loss from the inference forward %g, from training %g", mse, loss);
    CHECK(worst_chunk < 1e-6, "chunk sizes change the output by %g", worst_chunk);
    fixture_close(&f);
}

void test_net_loss_weights_match_formula(void)
{
    /* The training loss for each parameterization with Min-SNR-gamma, against
       the formula written out here: (1/B) sum_i w(t_i) ||out_i - target_i||^2 / D
       with w = min(SNR, g)/SNR (eps), min(SNR, g)/(SNR + 1) (v), min(SNR, g)
       (x0), SNR = alphabar/(1 - alphabar), targets from section 4. */
    enum { B = 9, D = 2 };
    static const dfn_prediction kinds[3] = { DFN_PREDICT_EPS, DFN_PREDICT_V, DFN_PREDICT_X0 };
    int k, i, j, t[B] = { 1, 3, 10, 40, 80, 120, 160, 199, 200 };
    for (k = 0; k < 3; k++) {
        dfn_train_config tc = dfn_train_config_default();
        dfn_mlp_config mc = dfn_mlp_config_default(D);
        dfn_schedule s;
        dfn_schedule_config sc = dfn_schedule_config_default(DFN_SCHEDULE_LINEAR, 200);
        dfn_mlp m;
        dfn_trainer tr;
        dfn_rng rng;
        float x0[B * D], eps[B * D], xt[B * D], out[B * D], loss, *params;
        double want = 0, g = 2.5;
        size_t wb;
        void *work;
        mc.hidden = 16; mc.blocks = 1; mc.time_dim = 8; mc.input_emb_dim = 4; mc.prediction = kinds[k];
        tc.batch = B; tc.weighting = DFN_WEIGHT_MIN_SNR; tc.min_snr_gamma = (float)g;
        params = (float *)malloc(dfn_mlp_num_params(&mc) * sizeof(float));
        dfn_rng_seed(&rng, 88, (uint64_t)k);
        CHECK(dfn_schedule_alloc(&s, &sc, NULL) == DFN_OK && dfn_mlp_init(&m, &mc, params) == DFN_OK &&
              dfn_mlp_init_weights(&m, &rng) == DFN_OK && dfn_trainer_alloc(&tr, &m, &s, &tc, NULL) == DFN_OK, "setup");
        dfn_rng_normal_fill(&rng, x0, B * D);
        dfn_rng_normal_fill(&rng, eps, B * D);
        CHECK(dfn_trainer_loss_grad(&tr, x0, NULL, t, eps, &loss) == DFN_OK, "loss");
        dfn_q_sample(&s, xt, x0, eps, t, B, D);
        wb = dfn_mlp_forward_size(&mc, B);
        work = malloc(wb);
        dfn_mlp_forward(&m, out, xt, t, NULL, B, work, wb);
        for (i = 0; i < B; i++) {
            double ab = s.alphabar[t[i]], snr = ab / (1 - ab), w, row = 0;
            w = kinds[k] == DFN_PREDICT_EPS ? fmin(snr, g) / snr
              : kinds[k] == DFN_PREDICT_V ? fmin(snr, g) / (snr + 1) : fmin(snr, g);
            for (j = 0; j < D; j++) {
                double e = eps[i * D + j], x = x0[i * D + j];
                double target = kinds[k] == DFN_PREDICT_EPS ? e
                              : kinds[k] == DFN_PREDICT_V ? sqrt(ab) * e - sqrt(1 - ab) * x : x;
                row += (out[i * D + j] - target) * (out[i * D + j] - target);
            }
            want += w * row / D;
        }
        want /= B;
        CHECK(fabs(loss - want) < 1e-5 * want, "prediction %d: loss %g, formula %g", k, loss, want);
        free(work);
        dfn_trainer_free(&tr, NULL);
        dfn_schedule_free(&s, NULL);
        free(params);
    }
}

void test_net_adam_ema_lr_match_reference(void)
{
    /* Three steps of dfn_train_step against Adam(W) written out here in
       double from the same gradients: m = b1 m + (1 - b1) g,
       v = b2 v + (1 - b2) g^2, p -= lr (m / (1 - b1^k)) / (sqrt(v / (1 - b2^k)) + eps) + lr wd p;
       clipping scales g to the max norm; ema = d ema + (1 - d) p with
       d = min(0.9, (1 + k) / (10 + k)) at step k. */
    enum { B = 16 };
    dfn_train_config tc = dfn_train_config_default();
    net_fixture f;
    dfn_rng rng;
    float x0[B * 2];
    double *m, *v, *p, *ema, worst = 0, worst_ema = 0;
    size_t P, i;
    int k;
    tc.lr = 3e-3f; tc.weight_decay = 0.01f; tc.grad_clip = 0.5f; tc.warmup_steps = 2; tc.total_steps = 10;
    tc.ema_decay = 0.9f;
    CHECK(fixture_open(&f, B, 0, 93, &tc), "fixture");
    P = f.m.lay.count;
    m = (double *)calloc(P, sizeof(double)); v = (double *)calloc(P, sizeof(double));
    p = (double *)malloc(P * sizeof(double)); ema = (double *)malloc(P * sizeof(double));
    for (i = 0; i < P; i++) p[i] = ema[i] = f.params[i];
    dfn_rng_seed(&rng, 94, 0);
    for (k = 1; k <= 3; k++) {
        double lr, norm = 0, scale = 1;
        dfn_rng_normal_fill(&rng, x0, B * 2);
        CHECK(dfn_train_step(&f.tr, x0, NULL, &rng, NULL) == DFN_OK, "step %d", k);
        /* warmup: lr (k)/2 for the first two steps, then cosine over steps 2..10 */
        lr = k <= 2 ? 3e-3 * k / 2.0 : 3e-3 * 0.5 * (1 + cos(3.14159265358979323846 * (k - 1 - 2) / 8.0));
        CHECK(fabs(dfn_train_lr(&tc, k - 1) - lr) < 1e-9, "lr of step %d: %g vs %g", k, dfn_train_lr(&tc, k - 1), lr);
        for (i = 0; i < P; i++) norm += (double)f.tr.grads[i] * f.tr.grads[i];
        norm = sqrt(norm);
        if (norm > 0.5) scale = 0.5 / norm;
        for (i = 0; i < P; i++) {
            double g = f.tr.grads[i] * scale;
            m[i] = 0.9 * m[i] + 0.1 * g;
            v[i] = 0.999 * v[i] + 0.001 * g * g;
            p[i] -= lr * (m[i] / (1 - pow(0.9, k))) / (sqrt(v[i] / (1 - pow(0.999, k))) + 1e-8) + lr * 0.01 * p[i];
            double d = fmin(0.9, (1.0 + k) / (10.0 + k));
            ema[i] = d * ema[i] + (1 - d) * p[i];
        }
        /* compare, then continue from the library's values so errors do not compound */
        for (i = 0; i < P; i++) {
            double d = fabs(f.params[i] - p[i]), e = fabs(f.tr.ema[i] - ema[i]);
            if (d > worst) worst = d;
            if (e > worst_ema) worst_ema = e;
            p[i] = f.params[i];
            ema[i] = f.tr.ema[i];
        }
    }
    CHECK(worst < 1e-6, "parameters differ from the Adam reference by %g", worst);
    CHECK(worst_ema < 1e-6, "EMA differs from its reference by %g", worst_ema);
    CHECK(f.tr.step == 3 && f.tr.ema_model.params == f.tr.ema, "step count and EMA view");
    fixture_close(&f);
    free(m); free(v); free(p); free(ema);
}

void test_net_nan_and_bad_input(void)
{
    enum { B = 8 };
    net_fixture f;
    dfn_rng rng;
    float x0[B * 2] = { 0 }, *before, loss;
    int labels[B] = { 0, 1, 2, 0, 1, 2, 0, 7 };
    size_t P;
    dfn_mlp_config mc = dfn_mlp_config_default(2);
    dfn_train_config tc = dfn_train_config_default();
    CHECK(fixture_open(&f, B, 3, 95, NULL), "fixture");
    P = f.m.lay.count;
    before = (float *)malloc(P * sizeof(float));
    dfn_rng_seed(&rng, 96, 0);
    /* a NaN in the data */
    x0[3] = (float)(0.0 * HUGE_VAL);
    memcpy(before, f.params, P * sizeof(float));
    CHECK(dfn_train_step(&f.tr, x0, NULL, &rng, &loss) == DFN_ERR_NOT_FINITE, "NaN in x0");
    x0[3] = 0;
    /* a weight that makes the loss infinite: reported, weights left alone */
    f.params[f.m.lay.b_out] = 1e30f;
    memcpy(before, f.params, P * sizeof(float));
    CHECK(dfn_train_step(&f.tr, x0, NULL, &rng, &loss) == DFN_ERR_NOT_FINITE, "infinite loss");
    CHECK(memcmp(before, f.params, P * sizeof(float)) == 0, "weights changed by a failed step");
    /* a label out of range */
    CHECK(dfn_train_step(&f.tr, x0, labels, &rng, &loss) == DFN_ERR_INVALID_ARG, "label 7 of 3 classes");
    CHECK(dfn_train_step(&f.tr, NULL, NULL, &rng, &loss) == DFN_ERR_NULL, "NULL batch");
    /* a bad label is refused even when every label would be dropped */
    f.tr.cfg.p_uncond = 1.0f;
    CHECK(dfn_train_step(&f.tr, x0, labels, &rng, &loss) == DFN_ERR_INVALID_ARG, "label 7 with p_uncond 1");
    f.tr.cfg.p_uncond = 0.1f;
    f.tr.step = -1;
    CHECK(dfn_train_step(&f.tr, x0, NULL, &rng, &loss) == DFN_ERR_INVALID_ARG, "negative step count");
    {
        /* a batch too large to lay out: the size query says 0, init refuses
           instead of carving past a small buffer */
        static unsigned char small[4096];
        dfn_trainer t2;
        dfn_train_config big = dfn_train_config_default();
        big.batch = 3000000;
        CHECK(dfn_trainer_size(&f.m.cfg, &big) == 0, "size of a 3000000 batch");
        CHECK(dfn_trainer_init(&t2, &f.m, &f.s, &big, small, sizeof small) == DFN_ERR_INVALID_ARG,
              "init of a batch too large to lay out");
    }
    fixture_close(&f);
    free(before);
    /* configurations */
    mc.time_dim = 7;
    CHECK(dfn_mlp_config_check(&mc) == DFN_ERR_INVALID_ARG && dfn_mlp_num_params(&mc) == 0, "odd time_dim");
    mc = dfn_mlp_config_default(2);
    mc.hidden = 0;
    CHECK(dfn_mlp_config_check(&mc) == DFN_ERR_INVALID_ARG, "hidden 0");
    mc = dfn_mlp_config_default(2);
    mc.hidden = 1 << 20; mc.blocks = 4096;
    CHECK(dfn_mlp_config_check(&mc) == DFN_ERR_INVALID_ARG, "2^52 parameters");
    mc = dfn_mlp_config_default(2);
    mc.input_scale = (float)(0.0 * HUGE_VAL);
    CHECK(dfn_mlp_config_check(&mc) == DFN_ERR_INVALID_ARG, "NaN input scale");
    tc.lr = 0;
    CHECK(dfn_trainer_size(&mc, &tc) == 0, "lr 0");
    tc = dfn_train_config_default();
    tc.beta2 = 1.0f;
    mc = dfn_mlp_config_default(2);
    CHECK(dfn_trainer_size(&mc, &tc) == 0, "beta2 = 1");
    tc = dfn_train_config_default();
    tc.ema_decay = 1.0f;
    CHECK(dfn_trainer_size(&mc, &tc) == 0, "ema decay 1");
}

void test_net_training_is_deterministic(void)
{
    /* The same seeds give the same weights after 20 steps, bit for bit;
       another data seed gives other weights. */
    enum { B = 32 };
    net_fixture a, b;
    dfn_rng ra, rb;
    float x0[B * 2];
    int k;
    CHECK(fixture_open(&a, B, 0, 97, NULL) && fixture_open(&b, B, 0, 97, NULL), "fixtures");
    dfn_rng_seed(&ra, 98, 0);
    dfn_rng_seed(&rb, 98, 0);
    for (k = 0; k < 20; k++) {
        dfn_rng_normal_fill(&ra, x0, B * 2);
        dfn_train_step(&a.tr, x0, NULL, &ra, NULL);
        dfn_rng_normal_fill(&rb, x0, B * 2);
        dfn_train_step(&b.tr, x0, NULL, &rb, NULL);
    }
    CHECK(memcmp(a.params, b.params, a.m.lay.count * sizeof(float)) == 0, "same seeds, different weights");
    dfn_rng_seed(&rb, 99, 0);
    dfn_rng_normal_fill(&rb, x0, B * 2);
    dfn_train_step(&b.tr, x0, NULL, &rb, NULL);
    dfn_train_step(&a.tr, x0, NULL, &rb, NULL);
    CHECK(memcmp(a.params, b.params, a.m.lay.count * sizeof(float)) != 0, "different draws, same weights");
    fixture_close(&a);
    fixture_close(&b);
}

/* ---- model files ---- */

/* DDIM-10 samples of model m from seed 5 into x (n = 64). */
static void ddim_samples(const dfn_mlp *m, const dfn_schedule *s, float *x)
{
    dfn_mlp_predictor p;
    dfn_sampler_config cfg;
    dfn_sampler smp;
    dfn_rng rng;
    p.model = m;
    p.work_bytes = dfn_mlp_forward_size(&m->cfg, 64);
    p.work = malloc(p.work_bytes);
    cfg = dfn_mlp_sampler_config(DFN_SAMPLER_DDIM, 64, &p);
    cfg.steps = 10;
    dfn_rng_seed(&rng, 5, 0);
    if (dfn_sampler_alloc(&smp, &cfg, s, NULL) == DFN_OK) {
        dfn_sampler_run(&smp, x, NULL, &rng);
        dfn_sampler_free(&smp, NULL);
    }
    free(p.work);
}

void test_net_model_file_round_trip(void)
{
    /* Save with EMA and optimizer state, load back: identical weights, EMA,
       schedule tables and samples, bit for bit, for a linear, a cosine and
       a custom schedule; a trainer resumed from the file takes the same next
       step as the original. Also through a file on disk. */
    enum { B = 16 };
    static const dfn_schedule_kind kinds[3] = { DFN_SCHEDULE_LINEAR, DFN_SCHEDULE_COSINE, DFN_SCHEDULE_CUSTOM };
    int k, i;
    for (k = 0; k < 3; k++) {
        net_fixture f;
        dfn_loaded_model lm;
        dfn_rng rng, rng2;
        float x0[B * 2], a[128], b[128], betas[200];
        size_t bytes, written = 0;
        unsigned char *img;
        CHECK(fixture_open(&f, B, 3, 101, NULL), "fixture");
        if (kinds[k] != DFN_SCHEDULE_LINEAR) {
            /* swap in another schedule of the same T */
            dfn_schedule_config sc = dfn_schedule_config_default(kinds[k], 200);
            for (i = 0; i < 200; i++) betas[i] = 0.001f + 0.0001f * (float)i;
            sc.betas = betas;
            dfn_schedule_free(&f.s, NULL);
            CHECK(dfn_schedule_alloc(&f.s, &sc, NULL) == DFN_OK, "schedule");
        }
        dfn_rng_seed(&rng, 102, 0);
        for (i = 0; i < 5; i++) {
            dfn_rng_normal_fill(&rng, x0, B * 2);
            dfn_train_step(&f.tr, x0, NULL, &rng, NULL);
        }
        bytes = dfn_model_save_size(&f.m, &f.s, &f.tr, 1);
        img = (unsigned char *)malloc(bytes);
        CHECK(bytes > 3 * f.m.lay.count * 4 && dfn_model_save_mem(img, bytes, &written, &f.m, &f.s, &f.tr, 1) == DFN_OK &&
              written == bytes, "save: %d bytes", (int)bytes);
        CHECK(dfn_model_load_mem(img, written, NULL, &lm) == DFN_OK, "load");
        CHECK(lm.step == 5 && lm.ema != NULL && lm.info.has_optimizer, "step %ld", lm.step);
        CHECK(memcmp(lm.model.params, f.params, f.m.lay.count * 4) == 0, "weights differ");
        CHECK(memcmp(lm.ema, f.tr.ema, f.m.lay.count * 4) == 0, "EMA differs");
        CHECK(memcmp(lm.schedule.alphabar, f.s.alphabar, 201 * 4) == 0 &&
              memcmp(lm.schedule.posterior_variance, f.s.posterior_variance, 201 * 4) == 0 &&
              memcmp(lm.schedule.beta, f.s.beta, 201 * 4) == 0, "schedule %d tables differ", k);
        ddim_samples(&f.tr.ema_model, &f.s, a);
        ddim_samples(&lm.ema_model, &lm.schedule, b);
        CHECK(memcmp(a, b, sizeof a) == 0, "samples of the loaded model differ");
        {
            /* resume: a second trainer over a second model, from the file */
            net_fixture g;
            dfn_model_info info;
            CHECK(fixture_open(&g, B, 3, 999, NULL), "fixture");
            dfn_trainer_free(&g.tr, NULL);                       /* train on f's schedule */
            CHECK(dfn_trainer_alloc(&g.tr, &g.m, &f.s, &f.tr.cfg, NULL) == DFN_OK, "trainer");
            CHECK(dfn_model_info_mem(img, written, &info) == DFN_OK && info.step == 5, "info");
            CHECK(dfn_model_read(img, written, &g.m, NULL, &g.tr, NULL) == DFN_OK, "read into a trainer");
            rng2 = rng;
            dfn_rng_normal_fill(&rng, x0, B * 2);
            dfn_train_step(&f.tr, x0, NULL, &rng, NULL);
            dfn_rng_normal_fill(&rng2, x0, B * 2);
            dfn_train_step(&g.tr, x0, NULL, &rng2, NULL);
            CHECK(g.tr.step == 6 && memcmp(g.params, f.params, f.m.lay.count * 4) == 0 &&
                  memcmp(g.tr.ema, f.tr.ema, f.m.lay.count * 4) == 0, "the resumed step differs");
            fixture_close(&g);
        }
        if (k == 0) {
            /* through a file */
            dfn_loaded_model lf;
            const char *path = "build/test_model.dfn";
            CHECK(dfn_model_save(path, &f.m, &f.s, &f.tr, 0) == DFN_OK, "save to %s", path);
            CHECK(dfn_model_load(path, NULL, &lf) == DFN_OK && lf.step == 0 && !lf.info.has_optimizer &&
                  memcmp(lf.model.params, f.params, f.m.lay.count * 4) == 0, "load from %s", path);
            dfn_model_free(&lf, NULL);
            remove(path);
            CHECK(dfn_model_load(path, NULL, &lf) == DFN_ERR_IO, "a missing file");
        }
        dfn_model_free(&lm, NULL);
        free(img);
        fixture_close(&f);
    }
}

/* Sets the CRC of a modified image again, so the parser behind it is reached. */
static void fix_crc(unsigned char *img, size_t len)
{
    uint32_t c = dfn_crc32(0, img, len - 4);
    img[len - 4] = (unsigned char)c; img[len - 3] = (unsigned char)(c >> 8);
    img[len - 2] = (unsigned char)(c >> 16); img[len - 1] = (unsigned char)(c >> 24);
}

void test_net_model_file_rejects_bad_files(void)
{
    /* Every truncation, single-bit flips across the file, a wrong magic, a
       newer version, trailing bytes, absurd sizes behind a valid checksum,
       and a model of another shape: each an error code, never a crash. */
    net_fixture f;
    dfn_loaded_model lm;
    dfn_model_info info;
    unsigned char *img, *bad;
    size_t len, cut, pos;
    int truncs_ok = 1, flips_ok = 1;
    CHECK(fixture_open(&f, 8, 0, 103, NULL), "fixture");
    len = dfn_model_save_size(&f.m, &f.s, &f.tr, 1);
    img = (unsigned char *)malloc(len + 1);
    bad = (unsigned char *)malloc(len + 1);
    CHECK(dfn_model_save_mem(img, len, NULL, &f.m, &f.s, &f.tr, 1) == DFN_OK, "save");
    for (cut = 0; cut < len; cut += (cut < 200 ? 1 : 97)) {
        dfn_result r = dfn_model_info_mem(img, cut, &info);
        truncs_ok &= r == DFN_ERR_FORMAT || r == DFN_ERR_CHECKSUM;
    }
    CHECK(truncs_ok, "a truncated file was accepted or gave an unexpected code");
    for (pos = 0; pos < len; pos += (pos < 200 ? 1 : 131)) {
        dfn_result r;
        memcpy(bad, img, len);
        bad[pos] ^= (unsigned char)(1u << (pos % 8));
        r = dfn_model_load_mem(bad, len, NULL, &lm);
        flips_ok &= r != DFN_OK;
        if (r == DFN_OK) dfn_model_free(&lm, NULL);
    }
    CHECK(flips_ok, "a file with a flipped bit was accepted");
    memcpy(bad, img, len);
    bad[0] = 'X';
    CHECK(dfn_model_info_mem(bad, len, &info) == DFN_ERR_FORMAT, "wrong magic");
    memcpy(bad, img, len);
    bad[4] = 3;
    fix_crc(bad, len);
    CHECK(dfn_model_info_mem(bad, len, &info) == DFN_ERR_VERSION, "version 3");
    memcpy(bad, img, len);
    bad[4 + 4 + 4 + 4 + 4] = 0xff; bad[4 + 4 + 4 + 4 + 5] = 0xff; bad[4 + 4 + 4 + 4 + 6] = 0xff; bad[4 + 4 + 4 + 4 + 7] = 0x7f;
    fix_crc(bad, len);                                    /* hidden = 2^31 - 1, checksum valid */
    CHECK(dfn_model_info_mem(bad, len, &info) == DFN_ERR_FORMAT, "absurd width behind a valid checksum");
    memcpy(bad, img, len);
    bad[len] = 0;
    fix_crc(bad, len + 1);
    CHECK(dfn_model_info_mem(bad, len + 1, &info) == DFN_ERR_FORMAT, "a trailing byte");
    CHECK(dfn_model_info_mem(NULL, len, &info) == DFN_ERR_NULL, "NULL image");
    {
        /* hostile values behind a valid checksum: a negative or huge step
           count (the 8 bytes before the two Adam moment blocks and the CRC),
           a NaN schedule parameter (beta_start, the f64 at byte 64) */
        size_t at = len - 4 - 2 * f.m.lay.count * 4 - 8;
        memcpy(bad, img, len);
        bad[at + 4] = 0xff; bad[at + 5] = 0xff; bad[at + 6] = 0xff; bad[at + 7] = 0xff;
        fix_crc(bad, len);
        CHECK(dfn_model_info_mem(bad, len, &info) == DFN_ERR_FORMAT, "step count -1");
        memcpy(bad, img, len);
        bad[at] = 0xff; bad[at + 1] = 0xff; bad[at + 2] = 0xff; bad[at + 3] = 0x7f;
        fix_crc(bad, len);
        CHECK(dfn_model_info_mem(bad, len, &info) == DFN_ERR_FORMAT, "step count 2^31 - 1");
        memcpy(bad, img, len);
        memset(bad + 64, 0, 6); bad[70] = 0xf8; bad[71] = 0x7f;
        fix_crc(bad, len);
        CHECK(dfn_model_info_mem(bad, len, &info) == DFN_ERR_FORMAT, "NaN beta_start");
    }
    {
        dfn_mlp other;
        dfn_mlp_config oc = f.m.cfg;
        float *p;
        oc.hidden = 8;
        p = (float *)malloc(dfn_mlp_num_params(&oc) * 4);
        dfn_mlp_init(&other, &oc, p);
        CHECK(dfn_model_read(img, len, &other, NULL, NULL, NULL) == DFN_ERR_MISMATCH, "another shape");
        free(p);
    }
    CHECK(dfn_model_save_mem(img, len - 1, NULL, &f.m, &f.s, &f.tr, 1) == DFN_ERR_BUFFER_TOO_SMALL, "small buffer");
    CHECK(dfn_model_save_mem(img, len, NULL, &f.m, &f.s, NULL, 1) == DFN_ERR_INVALID_ARG, "optimizer without trainer");
    free(img); free(bad);
    fixture_close(&f);
}

/* ---- the quality test: a trained model reproduces 2D data ---- */

/* Trains a small MLP on `kind`, samples 10000 points with DDIM-50 from the
   EMA weights and returns ED^2 to 10000 fresh points divided by the trivial
   baseline's ED^2 (N(0, I) against the same data), both unbiased
   (U-statistics, section 10's population ED^2); -1 on an error. */
static double trained_ed_ratio(dfn_data2d kind, int steps, int hidden, int blocks, float lr,
                               double *ed_out, double *floor_out)
{
    enum { B = 256, N = 10000 };
    dfn_mlp_config mc = dfn_mlp_config_default(2);
    dfn_train_config tc = dfn_train_config_default();
    dfn_schedule s;
    dfn_schedule_config sc = dfn_schedule_config_default(DFN_SCHEDULE_LINEAR, 1000);
    dfn_mlp m;
    dfn_trainer tr;
    dfn_rng rng;
    dfn_mlp_predictor p;
    dfn_sampler_config cfg;
    dfn_sampler smp;
    float *params, *batch, *x, *y, *z;
    double ed = -1, base = 1, floor = -1;
    int k, ok;
    mc.hidden = hidden;
    mc.blocks = blocks;
    tc.batch = B;
    tc.lr = lr;
    tc.warmup_steps = 100;
    tc.total_steps = steps;
    params = (float *)malloc(dfn_mlp_num_params(&mc) * sizeof(float));
    batch = (float *)malloc(sizeof(float) * B * 2);
    x = (float *)malloc(sizeof(float) * N * 2);
    y = (float *)malloc(sizeof(float) * N * 2);
    z = (float *)malloc(sizeof(float) * N * 2);
    dfn_rng_seed(&rng, 111, (uint64_t)kind);
    ok = dfn_schedule_alloc(&s, &sc, NULL) == DFN_OK && dfn_mlp_init(&m, &mc, params) == DFN_OK &&
         dfn_mlp_init_weights(&m, &rng) == DFN_OK && dfn_trainer_alloc(&tr, &m, &s, &tc, NULL) == DFN_OK;
    for (k = 0; ok && k < steps; k++)
        ok = dfn_data2d_sample(kind, &rng, batch, B) == DFN_OK &&
             dfn_train_step(&tr, batch, NULL, &rng, NULL) == DFN_OK;
    if (ok) {
        p.model = &tr.ema_model;
        p.work_bytes = dfn_mlp_forward_size(&mc, 1024);
        p.work = malloc(p.work_bytes);
        cfg = dfn_mlp_sampler_config(DFN_SAMPLER_DDIM, N, &p);
        cfg.steps = 50;
        ok = dfn_sampler_alloc(&smp, &cfg, &s, NULL) == DFN_OK && dfn_sampler_run(&smp, x, NULL, &rng) == DFN_OK &&
             dfn_data2d_sample(kind, &rng, y, N) == DFN_OK;
        dfn_rng_normal_fill(&rng, z, N * 2);
        if (ok) {
            dfn_energy_distance_unbiased(&ed, x, N, y, N, 2);
            dfn_energy_distance_unbiased(&base, z, N, y, N, 2);
            dfn_data2d_sample(kind, &rng, z, N);
            dfn_energy_distance_unbiased(&floor, z, N, y, N, 2);
        }
        dfn_sampler_free(&smp, NULL);
        free(p.work);
        dfn_trainer_free(&tr, NULL);
    }
    dfn_schedule_free(&s, NULL);
    free(params); free(batch); free(x); free(y); free(z);
    *ed_out = ed;
    *floor_out = floor / base;
    return ok ? ed / base : -1;
}

void test_net_quality_8gaussians_and_moons(void)
{
    /* MLP (width 64, 2 blocks), 6000 steps at batch 256, Adam 3e-3 with
       cosine decay, EMA, DDIM-50:
       ED^2 below 3% of the trivial baseline's on 10000 samples, for
       8 Gaussians and two moons. For scale: with the exact predictor of the
       8 Gaussians, DDIM-50 itself scores about 1.4% (its discretization
       error), two fresh data draws about 0 +- 0.5%. */
    static const dfn_data2d kinds[2] = { DFN_DATA2D_GAUSSIANS8, DFN_DATA2D_MOONS };
    int k;
    for (k = 0; k < 2; k++) {
        double ed, floor, ratio;
        const char *e = getenv("DFN_QUALITY");   /* steps,hidden,blocks,lr for experiments */
        int st = 6000, hd = 64, bl = 2;
        float lr = 3e-3f;
        if (e) sscanf(e, "%d,%d,%d,%f", &st, &hd, &bl, &lr);
        ratio = trained_ed_ratio(kinds[k], st, hd, bl, lr, &ed, &floor);
        if (getenv("DFN_TEST_VERBOSE"))
            printf("    %s: ED^2 %.5f = %.2f%% of the baseline (floor %.2f%%)\n", dfn_data2d_name(kinds[k]),
                   ed, 100 * ratio, 100 * floor);
        CHECK(ratio >= 0 && ratio < 0.03, "%s: ED^2 is %.2f%% of the baseline (floor %.2f%%)",
              dfn_data2d_name(kinds[k]), 100 * ratio, 100 * floor);
    }
}
