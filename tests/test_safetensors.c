/* safetensors: the reader on files written by hand here (the format's
   bytes typed out, not produced by the writer), every refusal the format
   promises, the writer against hand-written bytes, and the models' named
   tensors and files (round trips, PyTorch's conv layout, mismatches named). */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "harness.h"
#include "../diffusion.h"

/* A file image: 8-byte little-endian length of the header, the header,
   then len_data bytes of data. Returns the malloc'ed image and its size. */
static unsigned char *st_image(const char *header, const unsigned char *data, size_t len_data, size_t *len)
{
    size_t h = strlen(header), i;
    unsigned char *img = (unsigned char *)malloc(8 + h + len_data + 1);
    for (i = 0; i < 8; i++) img[i] = (unsigned char)(((uint64_t)h >> (8 * i)) & 0xffu);
    memcpy(img + 8, header, h);
    if (len_data) memcpy(img + 8 + h, data, len_data);
    *len = 8 + h + len_data;
    return img;
}

/* dfn_st_parse into fresh memory of the size the query gives. */
static dfn_result st_parse(const unsigned char *img, size_t len, dfn_safetensors *st, void **mem)
{
    size_t bytes = 0;
    dfn_result r = dfn_st_parse_size(img, len, NULL, &bytes);
    *mem = NULL;
    if (r != DFN_OK) return r;
    *mem = malloc(bytes ? bytes : 1);
    return dfn_st_parse(st, img, len, NULL, *mem, bytes);
}

static dfn_result st_parse_header(const char *header, size_t len_data)
{
    static unsigned char zeros[256];
    size_t len;
    unsigned char *img = st_image(header, zeros, len_data, &len);
    dfn_safetensors st;
    void *mem;
    dfn_result r = st_parse(img, len, &st, &mem);
    free(mem);
    free(img);
    return r;
}

void test_safetensors_parse_by_hand(void)
{
    /* F32 [1.5, -2] (2), F16 (2, 3): 1, -2, 65504, 2^-24, 2^-14, inf;
       BF16 (1): 3.140625; U8 (3) 7 8 9 (readable, not as floats); metadata
       with escapes (\n, \u00e9, a surrogate pair = U+1F600) and a scalar
       (shape []) F32 0.25. Data offsets deliberately not in header order. */
    const char *header =
        "{ \"b\" : {\"dtype\":\"F16\", \"shape\":[2,3], \"data_offsets\":[8,20]},\n"
        "  \"__metadata__\": {\"line\":\"a\\nb\", \"caf\\u00e9\":\"\\ud83d\\ude00\"},\n"
        "  \"a\":{\"shape\":[2],\"dtype\":\"F32\",\"data_offsets\":[0,8]},"
        "  \"c\":{\"dtype\":\"BF16\",\"shape\":[1],\"data_offsets\":[20,22]},"
        "  \"u\":{\"dtype\":\"U8\",\"shape\":[3],\"data_offsets\":[22,25]},"
        "  \"s\":{\"dtype\":\"F32\",\"shape\":[],\"data_offsets\":[25,29]}}   ";
    static const unsigned char data[29] = {
        0x00, 0x00, 0xc0, 0x3f, 0x00, 0x00, 0x00, 0xc0,                  /* 1.5f, -2.0f      */
        0x00, 0x3c, 0x00, 0xc0, 0xff, 0x7b, 0x01, 0x00, 0x00, 0x04, 0x00, 0x7c,   /* F16 */
        0x49, 0x40,                                                      /* BF16 3.140625    */
        7, 8, 9,
        0x00, 0x00, 0x80, 0x3e                                           /* 0.25f            */
    };
    size_t len;
    unsigned char *img = st_image(header, data, sizeof data, &len);
    dfn_safetensors st;
    void *mem;
    const dfn_st_tensor *t;
    float v[6];
    CHECK(st_parse(img, len, &st, &mem) == DFN_OK, "parse");
    CHECK(st.n_tensors == 5 && st.n_meta == 2, "%d tensors, %d metadata", st.n_tensors, st.n_meta);
    CHECK(st.data_bytes == 29 && st.header_bytes == strlen(header), "sizes");
    CHECK(strcmp(st.tensors[0].name, "b") == 0 && strcmp(st.tensors[1].name, "a") == 0, "header order");
    t = dfn_st_find(&st, "a");
    CHECK(t && t->dtype == DFN_ST_F32 && t->ndim == 1 && t->shape[0] == 2 && t->count == 2, "a");
    if (t) {
        CHECK(dfn_st_read_floats(t, v, 2) == DFN_OK && v[0] == 1.5f && v[1] == -2.0f, "a values");
        CHECK(dfn_st_read_floats(t, v, 3) == DFN_ERR_MISMATCH, "count must match");
    }
    t = dfn_st_find(&st, "b");
    CHECK(t && t->dtype == DFN_ST_F16 && t->ndim == 2 && t->shape[0] == 2 && t->shape[1] == 3, "b");
    if (t) {
        CHECK(dfn_st_read_floats(t, v, 6) == DFN_OK, "b read");
        CHECK(v[0] == 1.0f && v[1] == -2.0f && v[2] == 65504.0f && v[3] == ldexpf(1.0f, -24) &&
              v[4] == ldexpf(1.0f, -14) && isinf(v[5]) && v[5] > 0, "F16 values %g %g %g %g %g %g",
              v[0], v[1], v[2], v[3], v[4], v[5]);
    }
    t = dfn_st_find(&st, "c");
    CHECK(t && dfn_st_read_floats(t, v, 1) == DFN_OK && v[0] == 3.140625f, "BF16 value");
    t = dfn_st_find(&st, "u");
    CHECK(t && t->dtype == DFN_ST_U8 && t->bytes == 3 && t->data[0] == 7 && t->data[2] == 9, "U8 bytes");
    CHECK(t && dfn_st_read_floats(t, v, 3) == DFN_ERR_MISMATCH, "U8 is not read as floats");
    t = dfn_st_find(&st, "s");
    CHECK(t && t->ndim == 0 && t->count == 1 && dfn_st_read_floats(t, v, 1) == DFN_OK && v[0] == 0.25f, "scalar");
    CHECK(dfn_st_find(&st, "zz") == NULL && dfn_st_find(&st, "__metadata__") == NULL, "absent names");
    CHECK(dfn_st_meta_find(&st, "line") && strcmp(dfn_st_meta_find(&st, "line"), "a\nb") == 0, "escape \\n");
    CHECK(dfn_st_meta_find(&st, "caf\xc3\xa9") && strcmp(dfn_st_meta_find(&st, "caf\xc3\xa9"), "\xf0\x9f\x98\x80") == 0,
          "\\u escapes to UTF-8");
    /* one byte of memory short */
    {
        size_t bytes = 0;
        void *m2;
        dfn_safetensors st2;
        CHECK(dfn_st_parse_size(img, len, NULL, &bytes) == DFN_OK, "size");
        m2 = malloc(bytes);
        CHECK(dfn_st_parse(&st2, img, len, NULL, m2, bytes - 1) == DFN_ERR_BUFFER_TOO_SMALL, "short memory");
        free(m2);
    }
    free(mem);
    free(img);
}

void test_safetensors_refusals(void)
{
    /* Each header is malformed in one way (data: 8 bytes of zeros unless
       said); every one is DFN_ERR_FORMAT. */
    static const struct { const char *h; size_t data; const char *why; } bad[] = {
        { "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,12]}}", 8, "end past the data" },
        { "{\"a\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[0,8]}}", 8, "shape disagrees with bytes" },
        { "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}", 8, "4 bytes no tensor covers" },
        { "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}", 8, "a gap at the start" },
        { "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
          "\"b\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}", 8, "overlap" },
        { "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
          "\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}", 8, "duplicate name" },
        { "{\"a\":{\"dtype\":\"F32\",\"shape\":[4294967296,4294967296],\"data_offsets\":[0,8]}}", 8, "shape overflows" },
        { "{\"a\":{\"dtype\":\"F32\",\"shape\":[4611686018427387904],\"data_offsets\":[0,8]}}", 8, "bytes overflow" },
        { "{\"a\":{\"dtype\":\"F33\",\"shape\":[2],\"data_offsets\":[0,8]}}", 8, "unknown dtype" },
        { "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8],\"x\":1}}", 8, "unknown key" },
        { "{\"a\":{\"dtype\":\"F32\",\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}", 8, "repeated key" },
        { "{\"a\":{\"shape\":[2],\"data_offsets\":[0,8]}}", 8, "no dtype" },
        { "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0]}}", 8, "one offset" },
        { "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8,8]}}", 8, "three offsets" },
        { "{\"a\":{\"dtype\":\"F32\",\"shape\":[-2],\"data_offsets\":[0,8]}}", 8, "negative dimension" },
        { "{\"a\":{\"dtype\":\"F32\",\"shape\":[2.0],\"data_offsets\":[0,8]}}", 8, "fractional dimension" },
        { "{\"a\":{\"dtype\":\"F32\",\"shape\":[02],\"data_offsets\":[0,8]}}", 8, "leading zero" },
        { "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[8,0]}}", 8, "end before begin" },
        { "{\"a\":{\"dtype\":\"F32\",\"shape\":[1,1,1,1,1,1,1,1,2],\"data_offsets\":[0,8]}}", 8, "9 dimensions" },
        { "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}} x", 8, "text after the object" },
        { "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},}", 8, "trailing comma" },
        { "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}", 8, "unterminated object" },
        { "{\"a\x01\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}", 8, "control character" },
        { "{\"a\\q\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}", 8, "bad escape" },
        { "{\"\\ud800\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}", 8, "lone surrogate" },
        { "{\"a\\u0000b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}", 8, "NUL in a name" },
        { "{\"\xc0\xaf\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}", 8, "overlong UTF-8" },
        { "{\"__metadata__\":{\"k\":1}}", 0, "metadata value not a string" },
        { "{\"__metadata__\":{\"k\":\"v\"},\"__metadata__\":{}}", 0, "two metadata objects" },
        { "{\"__metadata__\":{\"k\":\"v\",\"k\":\"w\"}}", 0, "duplicate metadata key" },
        { "[]", 0, "not an object" },
        { "{\"a\":[1]}", 8, "tensor not an object" },
    };
    size_t i, len;
    for (i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        dfn_result r = st_parse_header(bad[i].h, bad[i].data);
        CHECK(r == DFN_ERR_FORMAT, "%s: %d", bad[i].why, (int)r);
    }
    /* valid edge cases: an empty file, a zero-sized tensor anywhere */
    CHECK(st_parse_header("{}", 0) == DFN_OK, "empty");
    CHECK(st_parse_header("{\"z\":{\"dtype\":\"F32\",\"shape\":[0,3],\"data_offsets\":[4,4]},"
                          "\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
                          "\"b\":{\"dtype\":\"I8\",\"shape\":[4],\"data_offsets\":[4,8]}}", 8) == DFN_OK,
          "a zero-sized tensor between two");
    /* header length: past the file, over 100 MB, under 8 bytes of file */
    {
        unsigned char img[16] = { 0 };
        size_t bytes;
        img[0] = 9;                                 /* N = 9 > 16 - 8 */
        CHECK(dfn_st_parse_size(img, 16, NULL, &bytes) == DFN_ERR_FORMAT, "header past the end");
        img[0] = 0x01; img[1] = 0xe1; img[2] = 0xf5; img[3] = 0x05;  /* 100,000,001 */
        CHECK(dfn_st_parse_size(img, 16, NULL, &bytes) == DFN_ERR_FORMAT, "header over 100 MB");
        CHECK(dfn_st_parse_size(img, 7, NULL, &bytes) == DFN_ERR_FORMAT, "7 bytes");
        CHECK(dfn_st_parse_size(NULL, 7, NULL, &bytes) == DFN_ERR_NULL, "NULL");
    }
    /* the tensor count limit */
    {
        unsigned char *img = st_image("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
                                      "\"b\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}",
                                      (const unsigned char *)"\0\0\0\0\0\0\0\0", 8, &len);
        dfn_limits l = dfn_limits_default();
        size_t bytes;
        l.max_tensors = 1;
        CHECK(dfn_st_parse_size(img, len, &l, &bytes) == DFN_ERR_LIMIT, "2 tensors over a limit of 1");
        l.max_tensors = 2;
        CHECK(dfn_st_parse_size(img, len, &l, &bytes) == DFN_OK, "2 tensors within 2");
        free(img);
    }
}

void test_safetensors_writer_bytes(void)
{
    /* The writer's image of one tensor and one metadata pair, against the
       bytes typed out here: the header padded with spaces to 8 bytes. */
    const char *json = "{\"__metadata__\":{\"k\":\"v\\\"\"},\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}";
    float a[2] = { 1.0f, -2.0f };
    dfn_st_out t;
    dfn_st_meta m;
    unsigned char buf[256], want[256];
    size_t n = strlen(json), padded = (n + 7) / 8 * 8, i, written = 0, size;
    t.name = "a"; t.ndim = 1; t.shape[0] = 2; t.data = a;
    m.key = "k"; m.value = "v\"";
    for (i = 0; i < 8; i++) want[i] = (unsigned char)(((uint64_t)padded >> (8 * i)) & 0xffu);
    memcpy(want + 8, json, n);
    memset(want + 8 + n, ' ', padded - n);
    memcpy(want + 8 + padded, "\x00\x00\x80\x3f\x00\x00\x00\xc0", 8);
    size = dfn_st_write_size(&t, 1, &m, 1);
    CHECK(size == 16 + padded, "size %zu, want %zu", size, 16 + padded);
    CHECK(dfn_st_write_mem(buf, sizeof buf, &written, &t, 1, &m, 1) == DFN_OK && written == size, "write");
    CHECK(memcmp(buf, want, size) == 0, "bytes differ");
    CHECK(dfn_st_write_mem(buf, size - 1, &written, &t, 1, &m, 1) == DFN_ERR_BUFFER_TOO_SMALL, "one byte short");
    /* refusals */
    {
        dfn_st_out two[2];
        two[0] = t; two[1] = t;
        CHECK(dfn_st_write_mem(buf, sizeof buf, &written, two, 2, NULL, 0) == DFN_ERR_INVALID_ARG, "duplicate");
        two[1].name = "__metadata__";
        CHECK(dfn_st_write_mem(buf, sizeof buf, &written, two, 2, NULL, 0) == DFN_ERR_INVALID_ARG, "reserved name");
        two[1].name = "b"; two[1].ndim = 9;
        CHECK(dfn_st_write_size(two, 2, NULL, 0) == 0, "9 dimensions");
        two[1].ndim = 1; two[1].data = NULL;
        CHECK(dfn_st_write_mem(buf, sizeof buf, &written, two, 2, NULL, 0) == DFN_ERR_NULL, "no data");
    }
    /* what it writes, it reads back: names that need escapes, every value */
    {
        float big[300];
        dfn_st_out ts[3];
        dfn_safetensors st;
        unsigned char *img;
        void *mem;
        float back[300];
        for (i = 0; i < 300; i++) big[i] = (float)i * 0.37f - 50.0f;
        ts[0].name = "w\\\"q\n"; ts[0].ndim = 2; ts[0].shape[0] = 30; ts[0].shape[1] = 10; ts[0].data = big;
        ts[1].name = "empty"; ts[1].ndim = 1; ts[1].shape[0] = 0; ts[1].data = NULL;
        ts[2].name = "scalar"; ts[2].ndim = 0; ts[2].data = big + 5;
        size = dfn_st_write_size(ts, 3, NULL, 0);
        img = (unsigned char *)malloc(size);
        CHECK(size > 0 && dfn_st_write_mem(img, size, &written, ts, 3, NULL, 0) == DFN_OK, "write 3");
        CHECK(st_parse(img, written, &st, &mem) == DFN_OK, "parse back");
        CHECK(st.n_tensors == 3 && strcmp(st.tensors[0].name, "w\\\"q\n") == 0, "names");
        CHECK(dfn_st_read_floats(&st.tensors[0], back, 300) == DFN_OK && memcmp(back, big, sizeof big) == 0, "values");
        CHECK(st.tensors[1].count == 0 && st.tensors[2].count == 1 && st.tensors[2].ndim == 0, "empty, scalar");
        CHECK(st.header_bytes % 8 == 0, "padded header");
        free(mem);
        free(img);
    }
}

/* A small network of each kind with distinct weights. */
static void st_models(dfn_mlp_config *mc, dfn_unet_config *uc)
{
    *mc = dfn_mlp_config_default(3);
    mc->hidden = 16; mc->blocks = 2; mc->time_dim = 8; mc->input_emb_dim = 4; mc->num_classes = 3;
    mc->act = DFN_ACT_SILU; mc->prediction = DFN_PREDICT_V; mc->input_scale = 12.5f;
    *uc = dfn_unet_config_default(2, 8, 8);
    uc->cond_channels = 1; uc->base_channels = 8; uc->levels = 2; uc->mult[0] = 1; uc->mult[1] = 2;
    uc->attention[0] = 0; uc->attention[1] = 1; uc->groups = 4; uc->time_dim = 16; uc->num_classes = 2;
}

void test_safetensors_net_tensors(void)
{
    /* The named tensors tile the flat block exactly, in order, and their
       shapes multiply to their counts; the MLP's names are those of its
       PyTorch twin (checked here one by one). */
    dfn_mlp_config mc;
    dfn_unet_config uc;
    dfn_mlp m;
    dfn_unet u;
    dfn_net net;
    dfn_net_tensor *t;
    int k, n, i;
    memset(&m, 0, sizeof m);
    memset(&u, 0, sizeof u);
    st_models(&mc, &uc);
    for (k = 0; k < 2; k++) {
        size_t at = 0, P;
        if (k == 0) { dfn_mlp_init(&m, &mc, (float *)&k); net = dfn_mlp_net(&m); P = dfn_mlp_num_params(&mc); }
        else { dfn_unet_init(&u, &uc, (float *)&k); net = dfn_unet_net(&u); P = dfn_unet_num_params(&uc); }
        n = dfn_net_tensors(&net, NULL, 0);
        CHECK(n > 0, "count");
        t = (dfn_net_tensor *)malloc((size_t)n * sizeof *t);
        CHECK(dfn_net_tensors(&net, t, n) == n, "fill");
        for (i = 0; i < n; i++) {
            size_t c = 1;
            int d;
            for (d = 0; d < t[i].ndim; d++) c *= (size_t)t[i].shape[d];
            CHECK(t[i].offset == at && t[i].count == c, "%s: offset %zu (want %zu), count %zu (shape gives %zu)",
                  t[i].name, t[i].offset, at, t[i].count, c);
            CHECK(!t[i].conv || (t[i].ndim == 4 && t[i].shape[2] == 3 && t[i].shape[3] == 3), "%s conv", t[i].name);
            at += t[i].count;
        }
        CHECK(at == P, "kind %d: tensors cover %zu of %zu floats", k, at, P);
        if (k == 0) {
            static const char *names[] = { "inp.weight", "inp.bias", "blocks.0.weight", "blocks.0.bias",
                                           "blocks.1.weight", "blocks.1.bias", "out.weight", "out.bias",
                                           "class_emb.weight" };
            CHECK(n == 9, "MLP: %d tensors", n);
            for (i = 0; i < n && i < 9; i++) CHECK(strcmp(t[i].name, names[i]) == 0, "MLP %d: %s", i, t[i].name);
            CHECK(t[0].shape[0] == 16 && t[0].shape[1] == 3 + 3 * 4 + 8, "inp.weight shape");
            CHECK(t[8].shape[0] == 4 && t[8].shape[1] == 8, "class_emb shape");
        } else {
            /* first and last, and the channel counts of the input conv */
            CHECK(strcmp(t[0].name, "emb1.weight") == 0 && t[0].shape[0] == 16 && t[0].shape[1] == 8, "emb1");
            CHECK(strcmp(t[4].name, "class_emb.weight") == 0 && t[4].shape[0] == 3, "class_emb");
            CHECK(strcmp(t[5].name, "inp.weight") == 0 && t[5].shape[0] == 8 && t[5].shape[1] == 3 && t[5].conv,
                  "inp.weight (8, 2 + 1, 3, 3)");
            CHECK(strcmp(t[n - 1].name, "out_conv.bias") == 0 && t[n - 2].shape[0] == 2 && t[n - 2].shape[1] == 8,
                  "out_conv");
        }
        free(t);
    }
    /* a network without names */
    {
        dfn_classifier_config cc = dfn_classifier_config_default(2, 3);
        dfn_classifier c;
        dfn_classifier_init(&c, &cc, (float *)&k);
        net = dfn_classifier_net(&c);
        CHECK(dfn_net_tensors(&net, NULL, 0) == -1, "classifier has no names");
    }
}

/* Fills p with distinct values. */
static void st_fill(float *p, size_t n, float base)
{
    size_t i;
    for (i = 0; i < n; i++) p[i] = base + (float)((i * 7919u) % 1000u) * 1e-3f - 0.5f;
}

void test_safetensors_model_roundtrip(void)
{
    /* MLP and U-Net, with EMA, on a linear, a cosine with odd parameters,
       a custom and a flow schedule: saved and loaded back, the config,
       the weights, the EMA and every schedule table are the same bits. */
    dfn_mlp_config mc;
    dfn_unet_config uc;
    int k, s;
    st_models(&mc, &uc);
    for (k = 0; k < 2; k++)
        for (s = 0; s < 4; s++) {
            dfn_schedule_config sc;
            dfn_schedule sch;
            dfn_loaded_model lm;
            dfn_error_detail d;
            dfn_mlp m;
            dfn_unet u;
            dfn_net net;
            float *p, *e, betas[50];
            memset(&m, 0, sizeof m);
            memset(&u, 0, sizeof u);
            size_t P = k ? dfn_unet_num_params(&uc) : dfn_mlp_num_params(&mc), size, written = 0;
            unsigned char *img;
            int t;
            dfn_result r;
            if (s == 0) sc = dfn_schedule_config_default(DFN_SCHEDULE_LINEAR, 50);
            if (s == 1) { sc = dfn_schedule_config_default(DFN_SCHEDULE_COSINE, 50); sc.cosine_s = 0.0123456789012345;
                          sc.max_beta = 0.97; sc.zero_terminal_snr = 1; }
            if (s == 2) { sc = dfn_schedule_config_default(DFN_SCHEDULE_CUSTOM, 50);
                          for (t = 0; t < 50; t++) betas[t] = 0.001f + 0.01f * (float)t;
                          sc.betas = betas; }
            if (s == 3) { sc = dfn_schedule_config_default(DFN_SCHEDULE_FLOW, 50); sc.flow_shift = 3.0; }
            CHECK(dfn_schedule_alloc(&sch, &sc, NULL) == DFN_OK, "schedule %d", s);
            p = (float *)malloc(P * sizeof(float));
            e = (float *)malloc(P * sizeof(float));
            st_fill(p, P, 0.0f);
            st_fill(e, P, 0.25f);
            if (k == 0) { dfn_mlp_init(&m, &mc, p); net = dfn_mlp_net(&m); }
            else { dfn_unet_init(&u, &uc, p); net = dfn_unet_net(&u); }
            size = dfn_model_save_safetensors_size(&net, &sch, e);
            img = (unsigned char *)malloc(size);
            CHECK(size > 0 && dfn_model_save_safetensors_mem(img, size, &written, &net, &sch, e) == DFN_OK &&
                  written == size, "save %d %d", k, s);
            r = dfn_model_load_safetensors_mem(img, written, NULL, NULL, &lm, &d);
            CHECK(r == DFN_OK, "load %d %d: %d (%s: %s)", k, s, (int)r, d.what, d.why);
            if (r == DFN_OK) {
                CHECK(lm.info.net == (k ? DFN_NET_UNET : DFN_NET_MLP) && lm.info.has_ema && lm.net.count == P, "info");
                CHECK(memcmp(lm.net.params, p, P * sizeof(float)) == 0, "weights");
                CHECK(lm.ema && memcmp(lm.ema, e, P * sizeof(float)) == 0, "EMA");
                CHECK(lm.net.ops->config_same(lm.net.cfg, net.cfg), "config");
                CHECK(lm.schedule.T == 50 && lm.schedule.config.kind == sc.kind &&
                      lm.schedule.config.cosine_s == sc.cosine_s && lm.schedule.config.max_beta == sc.max_beta &&
                      lm.schedule.config.flow_shift == sc.flow_shift &&
                      lm.schedule.config.zero_terminal_snr == sc.zero_terminal_snr, "schedule config");
                CHECK(memcmp(lm.schedule.alphabar, sch.alphabar, 51 * sizeof(float)) == 0 &&
                      memcmp(lm.schedule.posterior_variance, sch.posterior_variance, 51 * sizeof(float)) == 0 &&
                      memcmp(lm.schedule.beta, sch.beta, 51 * sizeof(float)) == 0, "tables");
                dfn_model_free(&lm, NULL);
            }
            /* without EMA */
            size = dfn_model_save_safetensors_size(&net, &sch, NULL);
            CHECK(dfn_model_save_safetensors_mem(img, size, &written, &net, &sch, NULL) == DFN_OK, "save no EMA");
            CHECK(dfn_model_load_safetensors_mem(img, written, NULL, NULL, &lm, &d) == DFN_OK && !lm.info.has_ema &&
                  lm.ema == NULL && lm.ema_net.params == lm.net.params, "load without EMA");
            dfn_model_free(&lm, NULL);
            free(img);
            free(p);
            free(e);
            dfn_schedule_free(&sch, NULL);
        }
}

void test_safetensors_conv_layout(void)
{
    /* A conv kernel is (Co, 3, 3, Ci) in the block and (Co, Ci, 3, 3) in the
       file: element [o][i][y][x] of the file's inp.weight is block value
       [o][y][x][i] (index arithmetic written out here). */
    dfn_mlp_config mc;
    dfn_unet_config uc;
    dfn_unet u;
    dfn_net net;
    dfn_schedule sch;
    dfn_schedule_config sc = dfn_schedule_config_default(DFN_SCHEDULE_LINEAR, 100);
    dfn_safetensors st;
    const dfn_st_tensor *t;
    size_t P, size, written;
    float *p, *w;
    unsigned char *img;
    void *mem;
    int o, i, y, x, bad = 0;
    st_models(&mc, &uc);
    P = dfn_unet_num_params(&uc);
    p = (float *)malloc(P * sizeof(float));
    st_fill(p, P, 0.0f);
    dfn_unet_init(&u, &uc, p);
    net = dfn_unet_net(&u);
    dfn_schedule_alloc(&sch, &sc, NULL);
    size = dfn_model_save_safetensors_size(&net, &sch, NULL);
    img = (unsigned char *)malloc(size);
    CHECK(dfn_model_save_safetensors_mem(img, size, &written, &net, &sch, NULL) == DFN_OK, "save");
    CHECK(st_parse(img, written, &st, &mem) == DFN_OK, "parse");
    t = dfn_st_find(&st, "inp.weight");
    CHECK(t && t->ndim == 4 && t->shape[0] == 8 && t->shape[1] == 3 && t->shape[2] == 3 && t->shape[3] == 3, "shape");
    if (t) {
        /* the input conv's weights start after the embedding: 16 x 8 + 16 + 16 x 16 + 16 + 3 x 16 */
        size_t base = 16 * 8 + 16 + 16 * 16 + 16 + 3 * 16;
        w = (float *)malloc(t->count * sizeof(float));
        dfn_st_read_floats(t, w, t->count);
        for (o = 0; o < 8; o++)
            for (i = 0; i < 3; i++)
                for (y = 0; y < 3; y++)
                    for (x = 0; x < 3; x++)
                        if (w[((o * 3 + i) * 3 + y) * 3 + x] != p[base + ((size_t)(o * 3 + y) * 3 + x) * 3 + i]) bad++;
        CHECK(bad == 0, "%d elements not in PyTorch's layout", bad);
        free(w);
    }
    {
        dfn_model_info info;
        CHECK(dfn_model_info_safetensors(&st, &info, NULL) == DFN_OK && info.net == DFN_NET_UNET &&
              info.params == P && !info.has_ema && info.unet.cond_channels == 1 && info.unet.mult[1] == 2 &&
              info.schedule.kind == DFN_SCHEDULE_LINEAR && info.schedule.T == 100, "info");
    }
    CHECK(strcmp(dfn_st_meta_find(&st, "network"), "unet") == 0, "network");
    CHECK(strstr(dfn_st_meta_find(&st, "config"), "\"mult\":[1,2]") != NULL, "config JSON: %s",
          dfn_st_meta_find(&st, "config"));
    CHECK(strstr(dfn_st_meta_find(&st, "schedule"), "\"beta_start\":0.0001,") != NULL, "schedule JSON: %s",
          dfn_st_meta_find(&st, "schedule"));
    free(mem);
    free(img);
    free(p);
    dfn_schedule_free(&sch, NULL);
}

/* The image of a file with the given header and the data of a model's
   file, for the mismatch cases: the MLP file with one tensor's entry
   edited in its JSON text (same length, so the offsets stay). */
void test_safetensors_model_mismatch(void)
{
    dfn_mlp_config mc;
    dfn_unet_config uc;
    dfn_mlp m;
    dfn_net net;
    dfn_schedule sch;
    dfn_schedule_config sc = dfn_schedule_config_default(DFN_SCHEDULE_LINEAR, 100);
    dfn_loaded_model lm;
    dfn_error_detail d;
    size_t P, size, written;
    float *p;
    unsigned char *img, *ed;
    char *at;
    dfn_result r;
    st_models(&mc, &uc);
    P = dfn_mlp_num_params(&mc);
    p = (float *)malloc(P * sizeof(float));
    st_fill(p, P, 0.0f);
    memset(&m, 0, sizeof m);
    CHECK(dfn_mlp_init(&m, &mc, p) == DFN_OK, "init");
    net = dfn_mlp_net(&m);
    dfn_schedule_alloc(&sch, &sc, NULL);
    size = dfn_model_save_safetensors_size(&net, &sch, NULL);
    img = (unsigned char *)malloc(size + 1);
    ed = (unsigned char *)malloc(size + 1);
    CHECK(dfn_model_save_safetensors_mem(img, size, &written, &net, &sch, NULL) == DFN_OK, "save");
    img[written] = 0;
    /* 1. a tensor renamed: blocks.1.bias -> blocks.9.bias (missing + unexpected) */
    memcpy(ed, img, written + 1);
    at = strstr((char *)ed + 8, "\"blocks.1.bias\"");
    CHECK(at != NULL, "name in header");
    if (at) at[8] = '9';
    r = dfn_model_load_safetensors_mem(ed, written, NULL, NULL, &lm, &d);
    CHECK(r == DFN_ERR_MISMATCH && strcmp(d.what, "blocks.9.bias") == 0, "renamed: %d, %s (%s)", (int)r, d.what, d.why);
    /* 2. a shape changed, same bytes: out.weight (3, 16) -> (16, 3) */
    memcpy(ed, img, written + 1);
    at = strstr((char *)ed + 8, "\"out.weight\":{\"dtype\":\"F32\",\"shape\":[3,16]");
    CHECK(at != NULL, "out.weight in header");
    if (at) memcpy(at + strlen("\"out.weight\":{\"dtype\":\"F32\",\"shape\":["), "16,3", 4);
    r = dfn_model_load_safetensors_mem(ed, written, NULL, NULL, &lm, &d);
    CHECK(r == DFN_ERR_MISMATCH && strcmp(d.what, "out.weight") == 0 && strstr(d.why, "shape"),
          "shape: %d, %s (%s)", (int)r, d.what, d.why);
    /* 3. the config disagrees with the tensors: hidden 16 -> 17 */
    memcpy(ed, img, written + 1);
    at = strstr((char *)ed + 8, "\\\"hidden\\\":16");
    CHECK(at != NULL, "hidden in config");
    if (at) at[strlen("\\\"hidden\\\":1")] = '7';
    r = dfn_model_load_safetensors_mem(ed, written, NULL, NULL, &lm, &d);
    CHECK(r == DFN_ERR_MISMATCH && strcmp(d.what, "inp.weight") == 0, "config: %d, %s (%s)", (int)r, d.what, d.why);
    /* 4. an unknown config field */
    memcpy(ed, img, written + 1);
    at = strstr((char *)ed + 8, "\\\"hidden\\\"");
    if (at) memcpy(at, "\\\"hiddem\\\"", 10);
    r = dfn_model_load_safetensors_mem(ed, written, NULL, NULL, &lm, &d);
    CHECK(r == DFN_ERR_FORMAT && strcmp(d.what, "config.hiddem") == 0, "field: %d, %s (%s)", (int)r, d.what, d.why);
    /* 5. a NaN weight */
    memcpy(ed, img, written + 1);
    memcpy(ed + written - 4, "\x00\x00\xc0\x7f", 4);
    r = dfn_model_load_safetensors_mem(ed, written, NULL, NULL, &lm, &d);
    CHECK(r == DFN_ERR_NOT_FINITE, "NaN: %d", (int)r);
    /* 6. limits: P over max_params, before allocating */
    {
        dfn_limits l = dfn_limits_default();
        l.max_params = P - 1;
        CHECK(dfn_model_load_safetensors_mem(img, written, &l, NULL, &lm, &d) == DFN_ERR_LIMIT, "max_params");
    }
    /* 7. the weights by name into a network of another shape */
    {
        dfn_safetensors st;
        void *mem;
        dfn_mlp_config mc2 = mc;
        dfn_mlp m2;
        dfn_net n2;
        float *p2;
        mc2.blocks = 1;
        p2 = (float *)malloc(dfn_mlp_num_params(&mc2) * sizeof(float));
        memset(&m2, 0, sizeof m2);
        CHECK(dfn_mlp_init(&m2, &mc2, p2) == DFN_OK, "init");
        n2 = dfn_mlp_net(&m2);
        CHECK(st_parse(img, written, &st, &mem) == DFN_OK, "parse");
        r = dfn_model_read_safetensors(&st, &n2, NULL, &d);
        CHECK(r == DFN_ERR_MISMATCH && strcmp(d.what, "blocks.1.weight") == 0 && strstr(d.why, "not a tensor"),
              "fewer blocks: %d %s (%s)", (int)r, d.what, d.why);
        r = dfn_model_read_safetensors(&st, &net, p2, &d);
        CHECK(r == DFN_ERR_MISMATCH && strcmp(d.what, "ema.inp.weight") == 0, "no EMA: %d %s", (int)r, d.what);
        free(mem);
        free(p2);
    }
    free(ed);
    free(img);
    free(p);
    dfn_schedule_free(&sch, NULL);
}

/* Models saved with the small formats (MATH.md section 13) and read back:
   the MLP's weights equal dfn_qmlp_dequantize's of its stored form (the
   same numbers by the same arithmetic, bit for bit); for the U-Net, every
   stored tensor is checked against section 13 recomputed here in double
   (|w - w'| <= scale_r / 2, scale_r from the row's largest magnitude) or
   against the binary16 rounding, and what stays F32 is unchanged. */
void test_safetensors_quantized_models(void)
{
    dfn_mlp_config mc;
    dfn_unet_config uc;
    dfn_schedule s;
    dfn_schedule_config sc = dfn_schedule_config_default(DFN_SCHEDULE_COSINE, 100);
    int k, f;
    st_models(&mc, &uc);
    dfn_schedule_alloc(&s, &sc, NULL);
    for (k = 0; k < 2; k++)
        for (f = 1; f <= 2; f++) {
            dfn_weight_format fmt = (dfn_weight_format)f;
            dfn_mlp m, m2;
            dfn_unet u, u2;
            dfn_net net, net2;
            dfn_safetensors st;
            dfn_net_tensor *t;
            size_t P = k == 0 ? dfn_mlp_num_params(&mc) : dfn_unet_num_params(&uc), size, size32, written;
            float *p = (float *)malloc(P * sizeof(float)), *back = (float *)malloc(P * sizeof(float));
            unsigned char *img;
            void *mem = NULL;
            int n, i, bad = 0;
            st_fill(p, P, 0.25f);
            if (k == 0) { dfn_mlp_init(&m, &mc, p); net = dfn_mlp_net(&m); dfn_mlp_init(&m2, &mc, back); net2 = dfn_mlp_net(&m2); }
            else { dfn_unet_init(&u, &uc, p); net = dfn_unet_net(&u); dfn_unet_init(&u2, &uc, back); net2 = dfn_unet_net(&u2); }
            size = dfn_model_save_safetensors_size_as(&net, &s, NULL, fmt);
            size32 = dfn_model_save_safetensors_size(&net, &s, NULL);
            CHECK(size > 0 && size < size32, "net %d %s: %zu bytes of %zu", k, dfn_weight_format_name(fmt), size,
                  size32);
            img = (unsigned char *)malloc(size);
            CHECK(dfn_model_save_safetensors_mem_as(img, size, &written, &net, &s, NULL, fmt) == DFN_OK &&
                  written == size, "write");
            CHECK(st_parse(img, written, &st, &mem) == DFN_OK, "parse");
            CHECK(strcmp(dfn_st_meta_find(&st, "weight_format"), dfn_weight_format_name(fmt)) == 0, "metadata");
            CHECK(dfn_model_read_safetensors(&st, &net2, NULL, NULL) == DFN_OK, "read");
            n = dfn_net_tensors(&net, NULL, 0);
            if (n < 1) n = 1;
            t = (dfn_net_tensor *)calloc((size_t)n, sizeof *t);
            dfn_net_tensors(&net, t, n);
            {
                /* the data: 1 or 2 bytes per stored weight, 4 per scale and per F32 value */
                size_t want = 0;
                for (i = 0; i < n; i++) {
                    int small = t[i].ndim >= 2 && strcmp(t[i].name, "class_emb.weight") != 0;
                    want += small ? t[i].count * (f == 2 ? 1u : 2u) + (f == 2 ? 4u * (size_t)t[i].shape[0] : 0u)
                                  : 4u * t[i].count;
                }
                CHECK(st.data_bytes == want, "net %d %s: %zu data bytes, want %zu", k, dfn_weight_format_name(fmt),
                      st.data_bytes, want);
            }
            for (i = 0; i < n; i++) {
                size_t rows = (size_t)t[i].shape[0], cols = t[i].count / rows, r, j;
                int small = t[i].ndim >= 2 && strcmp(t[i].name, "class_emb.weight") != 0;
                /* rows of the block: a conv's row o is its Co index there too */
                for (r = 0; r < rows; r++) {
                    const float *a = p + t[i].offset + r * cols, *b = back + t[i].offset + r * cols;
                    double mx = 0;
                    for (j = 0; j < cols; j++) if (fabs(a[j]) > mx) mx = fabs(a[j]);
                    for (j = 0; j < cols; j++) {
                        if (!small) bad += a[j] != b[j];
                        else if (f == 1) bad += b[j] != dfn_f16_to_f32(dfn_f32_to_f16(a[j]));
                        else bad += fabs((double)a[j] - b[j]) > 0.5 * (mx / 127.0) * (1 + 1e-5);
                    }
                }
            }
            CHECK(bad == 0, "net %d %s: %d weights off", k, dfn_weight_format_name(fmt), bad);
            if (k == 0) {
                /* the MLP's file holds exactly dfn_qmlp's numbers */
                dfn_qmlp q;
                dfn_qmlp_sizes qs;
                float *d = (float *)malloc(P * sizeof(float)), *sc2, *fl;
                void *w;
                dfn_mlp md;
                dfn_qmlp_sizes_of(&mc, fmt, &qs);
                w = malloc(qs.weight_bytes);
                sc2 = (float *)malloc(sizeof(float) * (qs.scales + 1));
                fl = (float *)malloc(sizeof(float) * qs.floats);
                dfn_qmlp_quantize(&m, fmt, w, sc2, fl);
                dfn_qmlp_init(&q, &mc, fmt, w, sc2, fl);
                dfn_mlp_init(&md, &mc, d);
                dfn_qmlp_dequantize(&q, &md);
                CHECK(memcmp(d, back, P * sizeof(float)) == 0, "%s: the file's weights differ from dfn_qmlp's",
                      dfn_weight_format_name(fmt));
                free(d); free(w); free(sc2); free(fl);
            }
            /* an I8 tensor without its scales, and F16 beyond the half range */
            if (f == 2) {
                unsigned char *hit = NULL;
                size_t at;
                for (at = 8; at + 12 < written && !hit; at++)
                    if (memcmp(img + at, "weight_scale", 12) == 0) hit = img + at;
                CHECK(hit != NULL, "a scale tensor");
                if (hit) {
                    dfn_safetensors st2;
                    void *mem2 = NULL;
                    dfn_error_detail d;
                    hit[11] = 'f';   /* "weight_scalf": not the network's */
                    CHECK(st_parse(img, written, &st2, &mem2) == DFN_OK, "parse renamed");
                    CHECK(dfn_model_read_safetensors(&st2, &net2, NULL, &d) == DFN_ERR_MISMATCH, "renamed scales");
                    free(mem2);
                }
            } else {
                p[t[0].offset] = 70000.0f;
                CHECK(dfn_model_save_safetensors_size_as(&net, &s, NULL, fmt) == 0, "f16 overflow refused");
            }
            free(t); free(mem); free(img); free(p); free(back);
        }
    dfn_schedule_free(&s, NULL);
}
