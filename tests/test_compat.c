/* Files from earlier versions: two model files written by diffusion.h 0.7.0
   (tests/fixtures/files_070.h) must load with the same configuration and
   weights and be written back byte for byte, and today's code, given the
   same recipe, must write the very same bytes where the kernels are the
   ones that wrote the file (so training, the initialization and the writer
   keep their bits). */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "harness.h"
#include "../diffusion.h"
#include "fixtures/files_070.h"

void test_compat_070_mlp_file(void)
{
    /* The recipe of the fixture: an MLP of dim 2, hidden 8, 1 block,
       time_dim 8, 4 input features, 3 classes, cosine T = 100, initialized
       from seed 70 and trained 5 steps of batch 8 (lr 1e-2, EMA 0.9; data
       from seed 71, labels (i + k) % 4 - 1), saved with EMA and Adam state,
       by an x86-64 build with the SSE2 kernels. Every build must read it
       and write it back byte for byte (weights, EMA, Adam moments, step);
       a build with the SSE2 kernels must also redo the recipe to the same
       bytes; other kernels round the products differently, so there the
       redone weights must agree to 1e-4 (a weight in the wrong place is off
       by about 0.1). */
    dfn_mlp_config mc = dfn_mlp_config_default(2);
    dfn_schedule_config sc = dfn_schedule_config_default(DFN_SCHEDULE_COSINE, 100);
    dfn_train_config tc = dfn_train_config_default();
    dfn_model_info info;
    dfn_loaded_model lm;
    dfn_schedule s;
    dfn_mlp m, m2;
    dfn_trainer tr, tr2;
    dfn_rng rng, data;
    float *p, *p2, x0[16];
    int labels[8], i, k, ok = 1;
    size_t bytes, written = 0, P;
    unsigned char *img;
    double worst = 0.0;
    mc.hidden = 8; mc.blocks = 1; mc.time_dim = 8; mc.input_emb_dim = 4; mc.num_classes = 3;
    tc.batch = 8; tc.lr = 1e-2f; tc.ema_decay = 0.9f;

    CHECK(dfn_model_info_mem(fixture_070_mlp, sizeof fixture_070_mlp, &info) == DFN_OK, "info");
    CHECK(info.version == 1 && info.net == DFN_NET_MLP && info.has_ema && info.has_optimizer && info.step == 5,
          "version %u net %d ema %d opt %d step %ld", (unsigned)info.version, (int)info.net, info.has_ema,
          info.has_optimizer, info.step);
    CHECK(info.mlp.dim == 2 && info.mlp.hidden == 8 && info.mlp.blocks == 1 && info.mlp.time_dim == 8 &&
          info.mlp.input_emb_dim == 4 && info.mlp.num_classes == 3 && info.mlp.input_scale == 25.0f &&
          info.mlp.act == DFN_ACT_GELU && info.mlp.prediction == DFN_PREDICT_EPS, "MLP config");
    CHECK(info.schedule.kind == DFN_SCHEDULE_COSINE && info.schedule.T == 100 && info.schedule.cosine_s == 0.008,
          "schedule config");
    CHECK(dfn_schedule_alloc(&s, &sc, NULL) == DFN_OK, "schedule");
    P = dfn_mlp_num_params(&mc);
    p = (float *)malloc(P * sizeof(float));
    p2 = (float *)malloc(P * sizeof(float));
    bytes = sizeof fixture_070_mlp;
    img = (unsigned char *)malloc(bytes);

    /* read into a trainer, write back: the same bytes */
    CHECK(dfn_mlp_init(&m2, &mc, p2) == DFN_OK && dfn_trainer_alloc(&tr2, &m2, &s, &tc, NULL) == DFN_OK, "setup");
    CHECK(dfn_model_read(fixture_070_mlp, bytes, &m2, NULL, &tr2, NULL) == DFN_OK && tr2.step == 5, "read");
    CHECK(dfn_model_save_size(&m2, &s, &tr2, 1) == bytes &&
          dfn_model_save_mem(img, bytes, &written, &m2, &s, &tr2, 1) == DFN_OK &&
          memcmp(img, fixture_070_mlp, bytes) == 0, "read and written back, the bytes differ");
    CHECK(dfn_model_load_mem(fixture_070_mlp, bytes, NULL, &lm) == DFN_OK, "load");
    CHECK(lm.step == 5 && lm.ema && memcmp(lm.model.params, p2, P * sizeof(float)) == 0 &&
          memcmp(lm.ema, tr2.ema, P * sizeof(float)) == 0, "loaded and read weights or EMA differ");
    dfn_model_free(&lm, NULL);

    /* the recipe again */
    CHECK(dfn_mlp_init(&m, &mc, p) == DFN_OK, "init");
    dfn_rng_seed(&rng, 70, 0);
    dfn_rng_seed(&data, 71, 0);
    dfn_mlp_init_weights(&m, &rng);
    CHECK(dfn_trainer_alloc(&tr, &m, &s, &tc, NULL) == DFN_OK, "trainer");
    for (k = 0; k < 5; k++) {
        dfn_rng_normal_fill(&data, x0, 16);
        for (i = 0; i < 8; i++) labels[i] = (i + k) % 4 - 1;
        ok &= dfn_train_step(&tr, x0, labels, &rng, NULL) == DFN_OK;
    }
    CHECK(ok, "training");
    for (i = 0; i < (int)P; i++) {
        double d = fabs((double)p[i] - p2[i]), e = fabs((double)tr.ema[i] - tr2.ema[i]);
        if (d > worst) worst = d;
        if (e > worst) worst = e;
    }
    if (strcmp(dfn_simd_name(), "sse2") == 0)
        CHECK(dfn_model_save_mem(img, bytes, &written, &m, &s, &tr, 1) == DFN_OK &&
              memcmp(img, fixture_070_mlp, bytes) == 0, "the recipe today gives other bytes than 0.7.0's");
    else
        CHECK(worst < 1e-4, "the recipe today (%s kernels) is %g from 0.7.0's weights", dfn_simd_name(), worst);
    free(img);
    dfn_trainer_free(&tr, NULL);
    dfn_trainer_free(&tr2, NULL);
    dfn_schedule_free(&s, NULL);
    free(p);
    free(p2);
}

void test_compat_070_unet_file(void)
{
    /* The recipe: a U-Net for 1 x 8 x 8 images with 1 conditioning channel,
       base 2, levels 2 (mult 1, 2), groups 2, time_dim 4, 2 classes,
       attention at level 1 and in the middle, v-prediction, linear T = 50,
       weights from dfn_unet_init_weights with seed 72; weights only. */
    dfn_unet_config uc = dfn_unet_config_default(1, 8, 8);
    dfn_schedule_config sc = dfn_schedule_config_default(DFN_SCHEDULE_LINEAR, 50);
    dfn_model_info info;
    dfn_loaded_model lm;
    dfn_schedule s;
    dfn_unet u;
    dfn_rng rng;
    float *p;
    size_t bytes, written = 0;
    unsigned char *img;
    uc.base_channels = 2; uc.levels = 2; uc.mult[0] = 1; uc.mult[1] = 2; uc.groups = 2; uc.time_dim = 4;
    uc.num_classes = 2; uc.attention[0] = 0; uc.attention[1] = 1; uc.attention[2] = 0; uc.cond_channels = 1;
    uc.prediction = DFN_PREDICT_V;

    CHECK(dfn_model_info_mem(fixture_070_unet, sizeof fixture_070_unet, &info) == DFN_OK, "info");
    CHECK(info.version == 1 && info.net == DFN_NET_UNET && !info.has_ema && !info.has_optimizer, "header");
    CHECK(info.unet.height == 8 && info.unet.width == 8 && info.unet.channels == 1 && info.unet.cond_channels == 1 &&
          info.unet.base_channels == 2 && info.unet.levels == 2 && info.unet.mult[1] == 2 &&
          info.unet.attention[1] == 1 && info.unet.mid_attention == 1 && info.unet.groups == 2 &&
          info.unet.time_dim == 4 && info.unet.num_classes == 2 && info.unet.prediction == DFN_PREDICT_V,
          "U-Net config");
    CHECK(info.schedule.kind == DFN_SCHEDULE_LINEAR && info.schedule.T == 50, "schedule config");

    CHECK(dfn_schedule_alloc(&s, &sc, NULL) == DFN_OK, "schedule");
    p = (float *)malloc(dfn_unet_num_params(&uc) * sizeof(float));
    CHECK(dfn_unet_init(&u, &uc, p) == DFN_OK && u.count == 2919, "init: %d parameters", (int)u.count);
    dfn_rng_seed(&rng, 72, 0);
    dfn_unet_init_weights(&u, &rng);
    bytes = dfn_model_save_unet_size(&u, &s, NULL, 0);
    img = (unsigned char *)malloc(bytes);
    CHECK(bytes == sizeof fixture_070_unet && dfn_model_save_unet_mem(img, bytes, &written, &u, &s, NULL, 0) == DFN_OK &&
          memcmp(img, fixture_070_unet, bytes) == 0, "today's bytes differ from 0.7.0's (%d bytes)", (int)bytes);
    CHECK(dfn_model_load_mem(fixture_070_unet, sizeof fixture_070_unet, NULL, &lm) == DFN_OK, "load");
    CHECK(lm.info.net == DFN_NET_UNET && lm.unet.count == u.count &&
          memcmp(lm.unet.params, p, u.count * sizeof(float)) == 0, "loaded weights differ");
    dfn_model_free(&lm, NULL);
    free(img);
    dfn_schedule_free(&s, NULL);
    free(p);
}
