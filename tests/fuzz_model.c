/* libFuzzer target for the readers of untrusted bytes: the model file
   loader (dfn_model_load_mem; a model that loads is then checked for finite
   weights, sampled with two solvers, trained two steps, saved and loaded
   again) and the point parser (dfn_points_parse into buffers of exactly the
   rows it counted). The first byte picks the reader. Built with
   -DFUZZING_BUILD_MODE_UNSAFE_FOR_PRODUCTION, which skips the model file's
   checksum test so that mutated files reach the parser behind it.

   With -DDFN_FUZZ_WRITE_SEEDS it is instead a program that writes a seed
   corpus (valid small model files and point files) into the folder argv[1]. */
#define DIFFUSION_IMPLEMENTATION
#include "../diffusion.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifndef DFN_FUZZ_WRITE_SEEDS
int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size);

/* A finding: abort, so that libFuzzer keeps the input. */
#define FZ_REQUIRE(cond, what)                                                   \
    do {                                                                         \
        if (!(cond)) { fprintf(stderr, "fuzz_model: %s\n", what); abort(); }     \
    } while (0)

static int fz_finite(const float *x, size_t n)
{
    size_t i;
    for (i = 0; i < n; i++)
        if (!(x[i] - x[i] == 0.0f)) return 0;
    return 1;
}

/* A loaded model must be usable: finite weights; a few steps of two samplers
   either fail with a code or give finite samples; two training steps; saved
   again, it loads again with the same weights. Networks are kept small (at
   most 64 values in and out, 64 MB of workspace) so that one input stays
   fast. */
static void fz_use_model(dfn_loaded_model *lm)
{
    dfn_net_shape sh;
    dfn_net_predictor pred;
    size_t wb;
    int kinds[2] = { DFN_SAMPLER_DDIM, DFN_SAMPLER_DPMPP_2M }, k, labels[2] = { 0, -1 };
    float cond[2 * 64] = { 0 };
    FZ_REQUIRE(fz_finite(lm->net.params, lm->net.count), "loaded weights not finite");
    if (lm->ema) FZ_REQUIRE(fz_finite(lm->ema, lm->net.count), "loaded EMA weights not finite");
    if (dfn_net_describe(lm->net.ops, lm->net.cfg, &sh) != DFN_OK || sh.dim > 64 || sh.out_dim > 64 ||
        sh.cond_dim > 64 || lm->schedule.T > 4096)
        return;
    wb = dfn_net_forward_size(&lm->net, 2);
    if (wb == 0 || wb > ((size_t)64 << 20)) return;
    pred.net = &lm->ema_net;
    pred.cond = sh.cond_dim > 0 ? cond : NULL;
    pred.cond_rows = sh.cond_dim > 0 ? 2 : 0;
    pred.work_bytes = wb;
    pred.work = malloc(wb);
    if (!pred.work) return;
    for (k = 0; k < 2 && sh.out_dim == sh.dim; k++) {
        dfn_sampler_config cfg = dfn_net_sampler_config((dfn_sampler_kind)kinds[k], 2, &pred);
        dfn_sampler smp;
        dfn_rng rng;
        float *x = (float *)malloc(2 * (size_t)sh.dim * sizeof(float));
        cfg.steps = lm->schedule.T < 3 ? lm->schedule.T : 3;
        if (sh.num_classes > 0) cfg.labels = labels;
        if (x && dfn_sampler_alloc(&smp, &cfg, &lm->schedule, NULL) == DFN_OK) {
            dfn_rng_seed(&rng, 1, 2);
            if (dfn_sampler_run(&smp, x, NULL, &rng) == DFN_OK)
                FZ_REQUIRE(fz_finite(x, 2 * (size_t)sh.dim), "DFN_OK with samples not finite");
            dfn_sampler_free(&smp, NULL);
        }
        free(x);
    }
    free(pred.work);
#ifndef DFN_NO_TRAINING
    if (sh.out_dim == sh.dim && lm->net.ops->train_size) {
        /* train a copy of the weights, then save and load it again */
        dfn_train_config tc = dfn_train_config_default();
        dfn_net net = lm->net;
        dfn_trainer tr;
        float *w = (float *)malloc(lm->net.count * sizeof(float)), *x0, loss;
        dfn_rng rng;
        size_t i;
        tc.batch = 2;
        x0 = (float *)calloc(2 * (size_t)sh.dim, sizeof(float));
        if (w && x0 && dfn_trainer_size_net(&net, &tc) > 0 && dfn_trainer_size_net(&net, &tc) < ((size_t)64 << 20)) {
            memcpy(w, lm->net.params, lm->net.count * sizeof(float));
            net.params = w;
            for (i = 0; i < 2 * (size_t)sh.dim; i++) x0[i] = (float)i / (float)sh.dim - 1.0f;
            if (dfn_trainer_alloc_net(&tr, &net, &lm->schedule, &tc, NULL) == DFN_OK) {
                dfn_result r = DFN_OK;
                int step;
                dfn_rng_seed(&rng, 3, 4);
                for (step = 0; step < 2 && r == DFN_OK; step++)
                    r = dfn_train_step_cond(&tr, x0, sh.cond_dim > 0 ? cond : NULL, sh.num_classes > 0 ? labels : NULL,
                                            &rng, &loss);
                FZ_REQUIRE(fz_finite(w, lm->net.count), "training left weights not finite");
                {
                    size_t cap = dfn_model_save_net_size(&net, &lm->schedule, &tr, 1), got = 0;
                    unsigned char *img = cap ? (unsigned char *)malloc(cap) : NULL;
                    dfn_loaded_model again;
                    if (img && dfn_model_save_net_mem(img, cap, &got, &net, &lm->schedule, &tr, 1) == DFN_OK) {
                        FZ_REQUIRE(got == cap, "saved size differs from the size query");
                        FZ_REQUIRE(dfn_model_load_net_mem(img, got, lm->net.ops, NULL, &again) == DFN_OK,
                                   "a saved model does not load");
                        FZ_REQUIRE(memcmp(again.net.params, w, lm->net.count * sizeof(float)) == 0,
                                   "the weights changed on the way through a file");
                        dfn_model_free(&again, NULL);
                    }
                    free(img);
                }
                dfn_trainer_free(&tr, NULL);
            }
        }
        free(w);
        free(x0);
    }
#endif
}

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size)
{
    if (size < 1) return 0;
    if (data[0] & 1) {
        dfn_loaded_model lm;
        dfn_model_info info;
        dfn_result ri = dfn_model_info_mem(data + 1, size - 1, &info), rl;
        rl = dfn_model_load_mem(data + 1, size - 1, NULL, &lm);
        /* the loader says what the description and the limits say */
        if (ri != DFN_OK) FZ_REQUIRE(rl == ri || rl == DFN_ERR_MISMATCH, "load and info disagree");
        if (rl == DFN_OK) {
            FZ_REQUIRE(ri == DFN_OK && dfn_model_check_limits(&info, NULL) == DFN_OK, "loaded over the limits");
            fz_use_model(&lm);
            dfn_model_free(&lm, NULL);
        }
    } else {
        /* count, then parse into a buffer of exactly the rows counted (ASan
           sees one float past it), and into one row fewer */
        const char *text = (const char *)data + 1;
        size_t len = size - 1;
        int rows = 0, line = 0, stored = 0, line2 = 0, cols;
        for (cols = 1; cols <= 3; cols += 2) {
            dfn_result rc = dfn_points_parse(text, len, cols, NULL, 0, &rows, &line), rs;
            if (rc == DFN_OK && rows > 0 && rows <= 100000) {
                float *out = (float *)malloc((size_t)rows * cols * sizeof(float));
                if (!out) return 0;
                rs = dfn_points_parse(text, len, cols, out, rows, &stored, &line2);
                FZ_REQUIRE(rs == DFN_OK && stored == rows, "storing disagrees with counting");
                FZ_REQUIRE(fz_finite(out, (size_t)rows * cols), "a parsed value is not finite");
                free(out);
                if (rows > 1) {
                    out = (float *)malloc((size_t)(rows - 1) * cols * sizeof(float));
                    if (!out) return 0;
                    rs = dfn_points_parse(text, len, cols, out, rows - 1, &stored, &line2);
                    FZ_REQUIRE(rs == DFN_ERR_BUFFER_TOO_SMALL && stored == rows - 1, "one row short not refused");
                    free(out);
                }
            }
        }
    }
    return 0;
}
#else
/* Writes the bytes with the selector byte in front. */
static void put(const char *dir, const char *name, unsigned char sel, const void *p, size_t n)
{
    char path[512];
    FILE *f;
    sprintf(path, "%.400s/%s", dir, name);
    f = fopen(path, "wb");
    if (!f) return;
    fputc(sel, f);
    fwrite(p, 1, n, f);
    fclose(f);
}

int main(int argc, char **argv)
{
    static const char *points = "# x y z\n1 2 3\n4.5e-1,-2,3\n\n7 8 9\r\n";
    dfn_mlp_config mc = dfn_mlp_config_default(2);
    dfn_schedule_config sc = dfn_schedule_config_default(DFN_SCHEDULE_COSINE, 20);
    dfn_train_config tc = dfn_train_config_default();
    dfn_schedule s;
    dfn_mlp m;
    dfn_trainer tr;
    dfn_rng rng;
    unsigned char *img;
    size_t len;
    float *params;
    if (argc < 2) return 2;
    mc.hidden = 4; mc.blocks = 1; mc.time_dim = 4; mc.input_emb_dim = 2; mc.num_classes = 2;
    tc.batch = 2;
    params = (float *)malloc(dfn_mlp_num_params(&mc) * sizeof(float));
    dfn_rng_seed(&rng, 1, 1);
    if (dfn_schedule_alloc(&s, &sc, NULL) || dfn_mlp_init(&m, &mc, params) || dfn_mlp_init_weights(&m, &rng) ||
        dfn_trainer_alloc(&tr, &m, &s, &tc, NULL))
        return 1;
    len = dfn_model_save_size(&m, &s, &tr, 1);
    img = (unsigned char *)malloc(len);
    dfn_model_save_mem(img, len, NULL, &m, &s, &tr, 1);
    put(argv[1], "model_full", 1, img, len);
    len = dfn_model_save_size(&m, &s, NULL, 0);
    dfn_model_save_mem(img, len, NULL, &m, &s, NULL, 0);
    put(argv[1], "model_plain", 1, img, len);
    put(argv[1], "points", 0, points, strlen(points));
    free(img);
    {
        /* a tiny U-Net: 8x8, one conditioning channel, two levels, attention */
        dfn_unet_config uc = dfn_unet_config_default(1, 8, 8);
        dfn_unet u;
        float *up;
        uc.cond_channels = 1; uc.base_channels = 4; uc.levels = 2; uc.attention[1] = 1; uc.groups = 2;
        uc.time_dim = 8; uc.num_classes = 2;
        up = (float *)malloc(dfn_unet_num_params(&uc) * sizeof(float));
        if (!up || dfn_unet_init(&u, &uc, up) || dfn_unet_init_weights(&u, &rng)) return 1;
        len = dfn_model_save_unet_size(&u, &s, NULL, 0);
        img = (unsigned char *)malloc(len);
        dfn_model_save_unet_mem(img, len, NULL, &u, &s, NULL, 0);
        put(argv[1], "model_unet", 1, img, len);
        free(img);
        free(up);
    }
    {
        /* the guidance classifier as a model file (kind DFN_NET_CLASSIFIER) */
        dfn_classifier_config cc = dfn_classifier_config_default(2, 3);
        dfn_classifier c;
        dfn_net n;
        float *cp;
        cc.hidden = 4; cc.time_dim = 4;
        cp = (float *)malloc(dfn_classifier_num_params(&cc) * sizeof(float));
        if (!cp || dfn_classifier_init(&c, &cc, cp) || dfn_classifier_init_weights(&c, &rng)) return 1;
        n = dfn_classifier_net(&c);
        len = dfn_model_save_net_size(&n, &s, NULL, 0);
        img = (unsigned char *)malloc(len);
        dfn_model_save_net_mem(img, len, NULL, &n, &s, NULL, 0);
        put(argv[1], "model_classifier", 1, img, len);
        free(img);
        free(cp);
    }
    free(params);
    dfn_trainer_free(&tr, NULL);
    dfn_schedule_free(&s, NULL);
    return 0;
}
#endif
