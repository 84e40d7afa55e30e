/* libFuzzer target for the readers of untrusted bytes: the model file
   loader (dfn_model_load_mem) and the point parser (dfn_points_parse).
   The first byte picks the reader. Built with
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

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size)
{
    if (size < 1) return 0;
    if (data[0] & 1) {
        dfn_loaded_model lm;
        if (dfn_model_load_mem(data + 1, size - 1, NULL, &lm) == DFN_OK) {
            /* a loaded model must be usable: one forward pass of a small
               network (at most 64 values in and out, and of conditioning),
               of any kind, through the network interface */
            float x[64] = { 0 }, cond[64] = { 0 }, out[64] = { 0 };
            int t[1] = { 1 };
            dfn_net_shape sh;
            if (dfn_net_describe(lm.net.ops, lm.net.cfg, &sh) == DFN_OK && sh.dim <= 64 && sh.out_dim <= 64 &&
                sh.cond_dim <= 64) {
                size_t wb = dfn_net_forward_size(&lm.net, 1);
                void *w = wb > 0 && wb < ((size_t)64 << 20) ? malloc(wb) : NULL;
                if (w) dfn_net_forward(&lm.net, out, x, cond, 1, t, NULL, 1, w, wb);
                free(w);
            }
            dfn_model_free(&lm, NULL);
        }
    } else {
        float out[3 * 64];
        int rows = 0, line = 0;
        dfn_points_parse((const char *)data + 1, size - 1, 3, NULL, 0, &rows, &line);
        dfn_points_parse((const char *)data + 1, size - 1, 3, out, 64, &rows, &line);
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
