/* libFuzzer target for the readers of files from other tools: safetensors
   (dfn_st_parse into exactly the memory the size query asks for, every
   float tensor read, the tiling of the data checked again here; one byte
   less memory must be DFN_ERR_BUFFER_TOO_SMALL), models from safetensors
   (a model that loads has finite weights, evaluates to finite outputs and
   is saved and loaded again with the same weights) and diffusers'
   scheduler_config.json (a config that reads gives a schedule that sets
   up, and timesteps that are decreasing within 1..T). The first byte
   picks the reader.

   With -DDFN_FUZZ_WRITE_SEEDS it is a program that writes a seed corpus
   (an MLP and a U-Net with EMA as safetensors, a file of every dtype, and
   scheduler configs) into the folder argv[1]. */
#define DIFFUSION_IMPLEMENTATION
#include "../diffusion.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifndef DFN_FUZZ_WRITE_SEEDS
int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size);

#define FZ_REQUIRE(cond, what)                                                        \
    do {                                                                              \
        if (!(cond)) { fprintf(stderr, "fuzz_safetensors: %s\n", what); abort(); }    \
    } while (0)

static int fz_finite(const float *x, size_t n)
{
    size_t i;
    for (i = 0; i < n; i++)
        if (!(x[i] - x[i] == 0.0f)) return 0;
    return 1;
}

static void fz_parse(const unsigned char *data, size_t size)
{
    dfn_limits lim = dfn_limits_default();
    dfn_safetensors st;
    size_t bytes = 0;
    void *mem;
    dfn_result r;
    int i;
    lim.max_tensors = 4096;
    if (dfn_st_parse_size(data, size, &lim, &bytes) != DFN_OK) return;
    FZ_REQUIRE(bytes > 0 && bytes < ((size_t)256 << 20), "parse memory out of proportion");
    mem = malloc(bytes);
    if (!mem) return;
    if (bytes > 1) FZ_REQUIRE(dfn_st_parse(&st, data, size, &lim, mem, bytes - 1) != DFN_OK, "parsed in less memory");
    r = dfn_st_parse(&st, data, size, &lim, mem, bytes);
    if (r == DFN_OK) {
        size_t covered = 0;
        for (i = 0; i < st.n_tensors; i++) {
            const dfn_st_tensor *t = &st.tensors[i];
            FZ_REQUIRE(t->data >= st.data && t->bytes <= st.data_bytes &&
                       (size_t)(t->data - st.data) <= st.data_bytes - t->bytes, "a tensor outside the data");
            FZ_REQUIRE(t->bytes == t->count * dfn_st_dtype_size(t->dtype), "bytes and count disagree");
            FZ_REQUIRE(dfn_st_find(&st, t->name) == t, "a name that does not find its tensor");
            covered += t->bytes;
            if ((t->dtype == DFN_ST_F32 || t->dtype == DFN_ST_F16 || t->dtype == DFN_ST_BF16) && t->count < (1u << 20)) {
                float *v = (float *)malloc((size_t)t->count * sizeof(float) + 1);
                if (v) FZ_REQUIRE(dfn_st_read_floats(t, v, (size_t)t->count) == DFN_OK, "a float tensor unread");
                free(v);
            }
        }
        FZ_REQUIRE(covered == st.data_bytes, "the tensors do not tile the data");
        for (i = 0; i < st.n_meta; i++) FZ_REQUIRE(dfn_st_meta_find(&st, st.meta[i].key) == st.meta[i].value, "metadata");
    }
    free(mem);
}

static void fz_model(const unsigned char *data, size_t size)
{
    dfn_loaded_model lm;
    dfn_error_detail d;
    dfn_net_shape sh;
    dfn_limits lim = dfn_limits_default();
    lim.max_params = 1 << 20;
    lim.max_tensors = 4096;
    lim.max_bytes = (size_t)64 << 20;
    if (dfn_model_load_safetensors_mem(data, size, &lim, NULL, &lm, &d) != DFN_OK) return;
    FZ_REQUIRE(fz_finite(lm.net.params, lm.net.count), "loaded weights not finite");
    if (lm.ema) FZ_REQUIRE(fz_finite(lm.ema, lm.net.count), "loaded EMA not finite");
    if (dfn_net_describe(lm.net.ops, lm.net.cfg, &sh) == DFN_OK && sh.dim <= 4096 && sh.cond_dim <= 4096) {
        size_t wb = dfn_net_forward_size(&lm.net, 1);
        if (wb > 0 && wb < ((size_t)64 << 20)) {
            float *x = (float *)calloc((size_t)sh.dim + (size_t)sh.cond_dim, sizeof(float));
            float *out = (float *)malloc((size_t)sh.out_dim * sizeof(float) + (size_t)sh.dim * sizeof(float));
            void *w = malloc(wb);
            int t = lm.schedule.T, label = sh.num_classes > 0 ? 0 : -1;
            if (x && out && w && dfn_net_forward(&lm.net, out, x, sh.cond_dim ? x + sh.dim : NULL, 1, &t,
                                                 sh.num_classes > 0 ? &label : NULL, 1, w, wb) == DFN_OK)
                (void)0;   /* finite weights can still overflow: only the return code matters */
            free(x);
            free(out);
            free(w);
        }
    }
    {
        size_t cap = dfn_model_save_safetensors_size(&lm.net, &lm.schedule, lm.ema), got = 0;
        unsigned char *img = cap ? (unsigned char *)malloc(cap) : NULL;
        dfn_loaded_model again;
        FZ_REQUIRE(cap > 0, "a loaded model cannot be saved");
        if (img) {
            FZ_REQUIRE(dfn_model_save_safetensors_mem(img, cap, &got, &lm.net, &lm.schedule, lm.ema) == DFN_OK &&
                       got == cap, "save");
            FZ_REQUIRE(dfn_model_load_safetensors_mem(img, got, NULL, NULL, &again, &d) == DFN_OK, "reload");
            FZ_REQUIRE(memcmp(again.net.params, lm.net.params, lm.net.count * sizeof(float)) == 0, "weights changed");
            FZ_REQUIRE(again.schedule.T == lm.schedule.T &&
                       memcmp(again.schedule.alphabar, lm.schedule.alphabar, ((size_t)lm.schedule.T + 1) * 4) == 0,
                       "schedule changed");
            dfn_model_free(&again, NULL);
            free(img);
        }
    }
    {
        /* and with int8 matrices (MATH.md section 13): any finite weights quantize and load */
        size_t cap = dfn_model_save_safetensors_size_as(&lm.net, &lm.schedule, NULL, DFN_WEIGHTS_I8), got = 0;
        unsigned char *img = cap ? (unsigned char *)malloc(cap) : NULL;
        dfn_loaded_model again;
        FZ_REQUIRE(cap > 0, "a loaded model cannot be saved as int8");
        if (img) {
            FZ_REQUIRE(dfn_model_save_safetensors_mem_as(img, cap, &got, &lm.net, &lm.schedule, NULL,
                                                         DFN_WEIGHTS_I8) == DFN_OK && got == cap, "save int8");
            FZ_REQUIRE(dfn_model_load_safetensors_mem(img, got, NULL, NULL, &again, &d) == DFN_OK, "reload int8");
            dfn_model_free(&again, NULL);
            free(img);
        }
    }
    dfn_model_free(&lm, NULL);
}

static void fz_diffusers(const unsigned char *data, size_t size)
{
    static float betas[4096];
    static int ts[4096];
    dfn_diffusers_config dc;
    dfn_error_detail d;
    dfn_schedule s;
    int S, i;
    if (dfn_diffusers_config_read((const char *)data, size, &dc, betas, 4096, &d) != DFN_OK) return;
    if (dc.schedule.T > 4096) return;
    FZ_REQUIRE(dfn_schedule_alloc(&s, &dc.schedule, NULL) == DFN_OK, "a config that reads gives no schedule");
    dfn_schedule_free(&s, NULL);
    for (S = 1; S <= dc.schedule.T && S <= 64; S = S * 2 + 1)
        if (dfn_diffusers_timesteps(&dc, S, ts) == DFN_OK)
            for (i = 0; i < S; i++)
                FZ_REQUIRE(ts[i] >= 1 && ts[i] <= dc.schedule.T && (i == 0 || ts[i] < ts[i - 1]), "timesteps");
    {
        char out[65536];
        size_t n;
        dfn_diffusers_config back;
        if (dfn_diffusers_config_write(&dc, NULL, out, sizeof out, &n) == DFN_OK)
            FZ_REQUIRE(dfn_diffusers_config_read(out, n, &back, betas, 4096, &d) == DFN_OK, "written config unread");
    }
}

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size)
{
    if (size < 1) return 0;
    switch (data[0] % 3) {
    case 0: fz_parse(data + 1, size - 1); break;
    case 1: fz_model(data + 1, size - 1); break;
    default: fz_diffusers(data + 1, size - 1); break;
    }
    return 0;
}

#else

static void put(const char *dir, const char *name, int kind, const void *data, size_t len)
{
    char path[1024];
    FILE *f;
    unsigned char k = (unsigned char)kind;
    snprintf(path, sizeof path, "%s/%s", dir, name);
    f = fopen(path, "wb");
    if (!f) { perror(path); exit(1); }
    fwrite(&k, 1, 1, f);
    fwrite(data, 1, len, f);
    fclose(f);
}

/* A model's safetensors image in format fmt, as seed `name` of kind 1. */
static void put_model(const char *dir, const char *name, const dfn_net *n, const dfn_schedule *s, const float *ema,
                      dfn_weight_format fmt)
{
    size_t len = dfn_model_save_safetensors_size_as(n, s, ema, fmt);
    unsigned char *img = (unsigned char *)malloc(len ? len : 1);
    if (!img || dfn_model_save_safetensors_mem_as(img, len, &len, n, s, ema, fmt) != DFN_OK) exit(1);
    put(dir, name, 1, img, len);
    free(img);
}

int main(int argc, char **argv)
{
    static const char *configs[] = {
        "{\"_class_name\": \"DDPMScheduler\", \"num_train_timesteps\": 100, \"beta_schedule\": \"linear\", "
        "\"variance_type\": \"fixed_small\", \"timestep_spacing\": \"leading\", \"steps_offset\": 1}",
        "{\"_class_name\": \"DDIMScheduler\", \"beta_start\": 0.00085, \"beta_end\": 0.012, \"beta_schedule\": "
        "\"scaled_linear\", \"set_alpha_to_one\": false, \"clip_sample\": false, \"prediction_type\": \"v_prediction\", "
        "\"rescale_betas_zero_snr\": true, \"timestep_spacing\": \"trailing\", \"_diffusers_version\": \"0.30.0\"}",
        "{\"num_train_timesteps\": 4, \"trained_betas\": [0.1, 0.2, 0.3, 0.4], \"timestep_spacing\": \"linspace\"}",
        "{\"beta_schedule\": \"sigmoid\", \"num_train_timesteps\": 50, \"thresholding\": false, "
        "\"dynamic_thresholding_ratio\": 0.995, \"sample_max_value\": 1.0}",
    };
    dfn_schedule_config sc = dfn_schedule_config_default(DFN_SCHEDULE_COSINE, 20);
    dfn_schedule s;
    dfn_rng rng;
    unsigned char *img;
    size_t len, i;
    char name[32];
    if (argc < 2) return 2;
    dfn_rng_seed(&rng, 1, 1);
    if (dfn_schedule_alloc(&s, &sc, NULL)) return 1;
    {
        dfn_mlp_config mc = dfn_mlp_config_default(2);
        dfn_mlp m;
        dfn_net n;
        float *p, *e;
        mc.hidden = 4; mc.blocks = 1; mc.time_dim = 4; mc.input_emb_dim = 2; mc.num_classes = 2;
        p = (float *)malloc(dfn_mlp_num_params(&mc) * sizeof(float));
        e = (float *)malloc(dfn_mlp_num_params(&mc) * sizeof(float));
        if (dfn_mlp_init(&m, &mc, p) || dfn_mlp_init_weights(&m, &rng)) return 1;
        memcpy(e, p, dfn_mlp_num_params(&mc) * sizeof(float));
        n = dfn_mlp_net(&m);
        len = dfn_model_save_safetensors_size(&n, &s, e);
        img = (unsigned char *)malloc(len);
        dfn_model_save_safetensors_mem(img, len, &len, &n, &s, e);
        put(argv[1], "mlp_parse", 0, img, len);
        put(argv[1], "mlp_model", 1, img, len);
        free(img);
        put_model(argv[1], "mlp_model_i8", &n, &s, e, DFN_WEIGHTS_I8);
        free(p);
        free(e);
    }
    {
        dfn_unet_config uc = dfn_unet_config_default(1, 8, 8);
        dfn_unet u;
        dfn_net n;
        float *p;
        uc.cond_channels = 1; uc.base_channels = 4; uc.levels = 2; uc.attention[1] = 1; uc.groups = 2;
        uc.time_dim = 8; uc.num_classes = 2;
        p = (float *)malloc(dfn_unet_num_params(&uc) * sizeof(float));
        if (dfn_unet_init(&u, &uc, p) || dfn_unet_init_weights(&u, &rng)) return 1;
        n = dfn_unet_net(&u);
        put_model(argv[1], "unet_model", &n, &s, NULL, DFN_WEIGHTS_F32);
        put_model(argv[1], "unet_model_f16", &n, &s, NULL, DFN_WEIGHTS_F16);
        put_model(argv[1], "unet_model_i8", &n, &s, NULL, DFN_WEIGHTS_I8);
        free(p);
    }
    {
        /* every dtype, a scalar, an empty tensor and escaped metadata, written by hand */
        static const char *h =
            "{\"__metadata__\":{\"k\\u00e9\":\"v\\n\"},\"a\":{\"dtype\":\"F16\",\"shape\":[2],\"data_offsets\":[0,4]},"
            "\"b\":{\"dtype\":\"BF16\",\"shape\":[1,2],\"data_offsets\":[4,8]},\"c\":{\"dtype\":\"F32\",\"shape\":[],"
            "\"data_offsets\":[8,12]},\"d\":{\"dtype\":\"I8\",\"shape\":[0],\"data_offsets\":[12,12]},"
            "\"e\":{\"dtype\":\"U64\",\"shape\":[1],\"data_offsets\":[12,20]}}";
        size_t hl = strlen(h);
        img = (unsigned char *)calloc(8 + hl + 20, 1);
        for (i = 0; i < 8; i++) img[i] = (unsigned char)(((uint64_t)hl >> (8 * i)) & 0xffu);
        memcpy(img + 8, h, hl);
        img[8 + hl + 1] = 0x3c;
        put(argv[1], "dtypes", 0, img, 8 + hl + 20);
        free(img);
    }
    for (i = 0; i < sizeof configs / sizeof configs[0]; i++) {
        snprintf(name, sizeof name, "diffusers_%d", (int)i);
        put(argv[1], name, 2, configs[i], strlen(configs[i]));
    }
    dfn_schedule_free(&s, NULL);
    return 0;
}
#endif
