/* The cascade's super-resolution stage (examples/cascade.c) at small scale:
   a U-Net with one conditioning channel is trained on 8x8 shapes x0 with
   cond = upsample2(avgpool2(x0)), the coarse image upsampled back. Checked
   against independent references: its noise-prediction error (computed
   here from dfn_q_sample and dfn_unet_forward, not by the trainer) is
   clearly lower with each image's own coarse version than with another
   image's; DDIM samples conditioned through dfn_unet_predictor keep their
   coarse image (the 2x2 average of a sample is near its own conditioning
   image, far from the others); and sample i uses conditioning image i
   (rotating x_T and cond together rotates the samples, bit for bit). */
#include <stdlib.h>
#include <string.h>
#include "harness.h"
#include "../diffusion.h"

#define CASC_S     8           /* image size (coarse: 4x4)            */
#define CASC_D     (CASC_S * CASC_S)
#define CASC_B     16          /* training batch                      */
#define CASC_N     32          /* held-out images                     */
#define CASC_STEPS 500         /* training steps                      */
#define CASC_SEED  2024
#define CASC_LR    5e-3f
#define CASC_DDIM  20          /* DDIM steps                          */

/* n shapes (n, 8, 8) into x0, their coarse versions upsampled into cond;
   lo (n, 4, 4) gets the coarse versions themselves. */
static void casc_batch(dfn_rng *rng, float *x0, float *lo, float *cond, int n)
{
    dfn_shapes_sample(rng, x0, NULL, n, CASC_S);
    dfn_avgpool2_forward(lo, x0, n, CASC_S, CASC_S, 1);
    dfn_upsample2_forward(cond, lo, n, CASC_S / 2, CASC_S / 2, 1);
}

/* Mean squared difference of a and b over m values. */
static double casc_mse(const float *a, const float *b, size_t m)
{
    double s = 0;
    size_t i;
    for (i = 0; i < m; i++) s += ((double)a[i] - b[i]) * ((double)a[i] - b[i]);
    return s / (double)m;
}

void test_cascade_sr_uses_its_conditioning(void)
{
    dfn_unet_config c = dfn_unet_config_default(1, CASC_S, CASC_S);
    dfn_schedule_config sc = dfn_schedule_config_default(DFN_SCHEDULE_LINEAR, 1000);
    dfn_train_config tc = dfn_train_config_default();
    dfn_schedule s;
    dfn_unet u;
    dfn_trainer tr;
    dfn_rng rng;
    dfn_unet_predictor pred;
    dfn_sampler smp;
    dfn_sampler_config cfg;
    const int N = CASC_N, D = CASC_D, DL = CASC_D / 4;
    int t[CASC_N], i, k, ok, found;
    size_t P, ws;
    float *params, *x0, *lo, *cond, *shuf, *eps, *xt, *out, *xT, *xs, *pool, *rot_xT, *rot_cond, *rot_x;
    double right = 0, wrong = 0, own, other, l_right, l_wrong;

    c.base_channels = 8;
    c.time_dim = 32;
    c.groups = 4;
    c.levels = 2;
    c.attention[0] = c.attention[1] = 0;
    c.mid_attention = 0;
    c.cond_channels = 1;
    P = dfn_unet_num_params(&c);
    ws = dfn_unet_forward_size(&c, N);
    CHECK(P > 0 && ws > 0, "config");
    if (P == 0 || ws == 0) return;
    params = (float *)malloc(P * sizeof(float));
    x0 = (float *)malloc((size_t)N * D * sizeof(float));
    lo = (float *)malloc((size_t)N * DL * sizeof(float));
    cond = (float *)malloc((size_t)N * D * sizeof(float));
    shuf = (float *)malloc((size_t)N * D * sizeof(float));
    eps = (float *)malloc((size_t)N * D * sizeof(float));
    xt = (float *)malloc((size_t)N * D * sizeof(float));
    out = (float *)malloc((size_t)N * D * sizeof(float));
    xT = (float *)malloc((size_t)N * D * sizeof(float));
    xs = (float *)malloc((size_t)N * D * sizeof(float));
    pool = (float *)malloc((size_t)N * DL * sizeof(float));
    rot_xT = (float *)malloc((size_t)N * D * sizeof(float));
    rot_cond = (float *)malloc((size_t)N * D * sizeof(float));
    rot_x = (float *)malloc((size_t)N * D * sizeof(float));
    pred.work = malloc(ws);
    CHECK(dfn_schedule_alloc(&s, &sc, NULL) == DFN_OK, "schedule");
    CHECK(dfn_unet_init(&u, &c, params) == DFN_OK, "init");
    dfn_rng_seed(&rng, CASC_SEED, 1);
    dfn_unet_init_weights(&u, &rng);

    /* training: x0 a shape, cond its coarse version upsampled */
    tc.batch = CASC_B;
    tc.lr = CASC_LR;
    tc.warmup_steps = 20;
    tc.total_steps = CASC_STEPS;
    tc.grad_clip = 1.0f;
    tc.ema_decay = 0.0f;
    CHECK(dfn_trainer_alloc_unet(&tr, &u, &s, &tc, NULL) == DFN_OK, "trainer");
    for (k = 0, ok = 1; k < CASC_STEPS && ok; k++) {
        float loss;
        casc_batch(&rng, x0, lo, cond, CASC_B);
        ok = dfn_train_step_cond(&tr, x0, cond, NULL, &rng, &loss) == DFN_OK;
    }
    CHECK(ok, "training step %d failed", k);

    /* held-out shapes: the eps-prediction error with the right and with a
       wrong coarse image (image i gets image i + 1's), t spread over 1..T */
    dfn_rng_seed(&rng, CASC_SEED, 2);
    casc_batch(&rng, x0, lo, cond, N);
    for (i = 0; i < N; i++) {
        memcpy(shuf + (size_t)i * D, cond + (size_t)((i + 1) % N) * D, (size_t)D * sizeof(float));
        t[i] = 1 + (int)(((long)i * s.T) / N);
    }
    dfn_rng_normal_fill(&rng, eps, (size_t)N * D);
    CHECK(dfn_q_sample(&s, xt, x0, eps, t, N, D) == DFN_OK, "q_sample");
    CHECK(dfn_unet_forward(&u, out, xt, cond, t, NULL, N, pred.work, ws) == DFN_OK, "forward");
    right = casc_mse(out, eps, (size_t)N * D);
    CHECK(dfn_unet_forward(&u, out, xt, shuf, t, NULL, N, pred.work, ws) == DFN_OK, "forward");
    wrong = casc_mse(out, eps, (size_t)N * D);
    l_right = right; l_wrong = wrong;
    CHECK(right < 0.6 * wrong, "eps error with the right coarse image %.4f, with another's %.4f", right, wrong);

    /* the cascade's second stage: DDIM conditioned on the coarse images
       through the predictor (cond_rows = N: sample i uses image i) */
    pred.model = &u;
    pred.cond = cond;
    pred.cond_rows = N;
    pred.work_bytes = ws;
    cfg = dfn_unet_sampler_config(DFN_SAMPLER_DDIM, N, &pred);
    cfg.steps = CASC_DDIM;
    cfg.clip_x0 = 1;
    CHECK(dfn_sampler_alloc(&smp, &cfg, &s, NULL) == DFN_OK, "sampler");
    dfn_rng_normal_fill(&rng, xT, (size_t)N * D);
    CHECK(dfn_sampler_run(&smp, xs, xT, &rng) == DFN_OK, "sampling");
    dfn_avgpool2_forward(pool, xs, N, CASC_S, CASC_S, 1);
    own = other = 0;
    for (i = 0, found = 0; i < N; i++) {
        int j, best = 0;
        double bd = 1e300;
        for (j = 0; j < N; j++) {
            double d = casc_mse(pool + (size_t)i * DL, lo + (size_t)j * DL, (size_t)DL);
            if (d < bd) { bd = d; best = j; }
            if (j == i) own += d / N;
            else other += d / ((double)N * (N - 1));
        }
        found += best == i;
    }
    CHECK(found >= N / 2 && own < 0.5 * other, "%d of %d samples have their own conditioning image as the nearest "
          "coarse image; MSE to it %.4f, to the others %.4f", found, N, own, other);

    /* sample i uses x_T row i and cond row i: rotating both rotates the samples */
    for (i = 0; i < N; i++) {
        memcpy(rot_xT + (size_t)i * D, xT + (size_t)((i + 1) % N) * D, (size_t)D * sizeof(float));
        memcpy(rot_cond + (size_t)i * D, cond + (size_t)((i + 1) % N) * D, (size_t)D * sizeof(float));
    }
    pred.cond = rot_cond;
    CHECK(dfn_sampler_run(&smp, rot_x, rot_xT, &rng) == DFN_OK, "sampling");
    for (i = 0, ok = 1; i < N; i++)
        ok &= memcmp(rot_x + (size_t)i * D, xs + (size_t)((i + 1) % N) * D, (size_t)D * sizeof(float)) == 0;
    CHECK(ok, "sample i is not the one of x_T row i and cond row i");
    if (getenv("DFN_TEST_VERBOSE"))
        printf("    eps error right %.4f wrong %.4f; samples' coarse image vs own %.4f, vs others' %.4f; "
               "nearest to their own: %d of %d\n", l_right, l_wrong, own, other, found, N);

    dfn_sampler_free(&smp, NULL);
    dfn_trainer_free(&tr, NULL);
    dfn_schedule_free(&s, NULL);
    free(params); free(x0); free(lo); free(cond); free(shuf); free(eps); free(xt); free(out);
    free(xT); free(xs); free(pool); free(rot_xT); free(rot_cond); free(rot_x); free(pred.work);
}
