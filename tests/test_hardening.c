/* Regression tests of the hardening sweep (issue 22): each finding of an
   independent fuzz and misuse run, reproduced, and the limits for files from
   strangers. Each test fails on the library before its fix (under the ASan
   and UBSan build where the finding was undefined behaviour). */
#include "diffusion.h"
#include "harness.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#ifdef DFN_PTHREADS
#  include <pthread.h>
#endif

/* Little-endian u32 at p. */
static void hd_put_u32(unsigned char *p, uint32_t v)
{
    p[0] = (unsigned char)v; p[1] = (unsigned char)(v >> 8);
    p[2] = (unsigned char)(v >> 16); p[3] = (unsigned char)(v >> 24);
}

/* The file image of a tiny MLP (dim 2) on a linear schedule of T steps into
   *img (malloc); its length. */
static size_t hd_model_image(int T, unsigned char **img)
{
    dfn_mlp_config mc = dfn_mlp_config_default(2);
    dfn_schedule_config sc = dfn_schedule_config_default(DFN_SCHEDULE_LINEAR, T);
    dfn_schedule s;
    dfn_mlp m;
    dfn_rng rng;
    float *params;
    size_t cap, written = 0;
    mc.hidden = 8; mc.blocks = 1; mc.time_dim = 8;
    params = (float *)malloc(dfn_mlp_num_params(&mc) * sizeof(float));
    dfn_rng_seed(&rng, 3, 0);
    CHECK(dfn_mlp_init(&m, &mc, params) == DFN_OK && dfn_mlp_init_weights(&m, &rng) == DFN_OK, "mlp");
    CHECK(dfn_schedule_alloc(&s, &sc, NULL) == DFN_OK, "schedule");
    cap = dfn_model_save_size(&m, &s, NULL, 0);
    *img = (unsigned char *)malloc(cap);
    CHECK(dfn_model_save_mem(*img, cap, &written, &m, &s, NULL, 0) == DFN_OK, "save");
    dfn_schedule_free(&s, NULL);
    free(params);
    return written;
}

/* The image with its schedule's T set to T (and the checksum redone). */
static void hd_set_T(unsigned char *img, size_t len, uint32_t T)
{
    dfn_model_info info;
    CHECK(dfn_model_info_mem(img, len, &info) == DFN_OK, "info");
    /* after the config: u32 kind, then T */
    hd_put_u32(img + info.config_offset + info.config_len + 4, T);
    hd_put_u32(img + len - 4, dfn_crc32(0, img, len - 4));
}

void test_hardening_model_info_null(void)
{
    /* Finding 1: the header parser took &info->schedule before checking
       info (undefined behaviour that UBSan reports); now a plain error. */
    unsigned char buf[16] = { 'D', 'F', 'N', 'M', 1, 0, 0, 0 };
    CHECK(dfn_model_info_mem(buf, 16, NULL) == DFN_ERR_NULL, "NULL info");
    CHECK(dfn_model_info_mem(NULL, 16, NULL) == DFN_ERR_NULL, "NULL buffer and info");
}

/* A predictor that answers a constant, huge but finite, value. */
static int hd_huge_predict(void *user, const float *x, const int *t, const int *labels, int n, float *out)
{
    int i, dim = *(const int *)user;
    (void)x; (void)t; (void)labels;
    for (i = 0; i < n * dim; i++) out[i] = 1e38f;
    return 0;
}

void test_hardening_sampler_state_finite(void)
{
    /* Finding 2: finite predictions can overflow the update; a run returned
       DFN_OK with x = -inf. Now every kind either ends finite or answers
       DFN_ERR_NOT_FINITE; with eps = 1e38, x0_hat = (x - s eps) / a overflows
       for DDIM and DDPM whatever the draw. */
    enum { N = 4, D = 2 };
    dfn_schedule_config sc = dfn_schedule_config_default(DFN_SCHEDULE_LINEAR, 100);
    dfn_schedule s;
    int dim = D, kind;
    CHECK(dfn_schedule_alloc(&s, &sc, NULL) == DFN_OK, "schedule");
    for (kind = 0; kind < DFN_SAMPLER_KIND_COUNT; kind++) {
        dfn_sampler_config cfg = dfn_sampler_config_default((dfn_sampler_kind)kind, N, D, hd_huge_predict, &dim);
        dfn_sampler smp;
        dfn_rng rng;
        float x[N * D];
        dfn_result r;
        int j, finite = 1;
        cfg.steps = 10;
        CHECK(dfn_sampler_alloc(&smp, &cfg, &s, NULL) == DFN_OK, "%s: alloc", dfn_sampler_kind_name((dfn_sampler_kind)kind));
        dfn_rng_seed(&rng, 5, 0);
        r = dfn_sampler_run(&smp, x, NULL, &rng);
        for (j = 0; j < N * D; j++) finite &= x[j] - x[j] == 0.0f;
        CHECK(r == DFN_ERR_NOT_FINITE || (r == DFN_OK && finite), "%s: returned %s with %s samples",
              dfn_sampler_kind_name((dfn_sampler_kind)kind), dfn_result_string(r), finite ? "finite" : "non-finite");
        if (kind == DFN_SAMPLER_DDPM || kind == DFN_SAMPLER_DDIM)
            CHECK(r == DFN_ERR_NOT_FINITE, "%s: %s", dfn_sampler_kind_name((dfn_sampler_kind)kind), dfn_result_string(r));
        dfn_sampler_free(&smp, NULL);
    }
    dfn_schedule_free(&s, NULL);
}

void test_hardening_guidance_rows_fit_int(void)
{
    /* Finding 3: with labels and a guidance scale other than 0 or 1 the
       sampler calls the predictor on 2n rows, an int: n above INT_MAX / 2 is
       refused at once (before the labels are read: this array has 4). */
    dfn_schedule_config sc = dfn_schedule_config_default(DFN_SCHEDULE_LINEAR, 100);
    dfn_schedule s;
    int labels[4] = { 0, 1, 2, 3 }, dim = 1, n = (int)(~0u >> 2) + 1;
    dfn_sampler_config cfg = dfn_sampler_config_default(DFN_SAMPLER_DDIM, n, 1, hd_huge_predict, &dim);
    CHECK(dfn_schedule_alloc(&s, &sc, NULL) == DFN_OK, "schedule");
    cfg.labels = labels;
    cfg.guidance_scale = 2.0f;
    CHECK(dfn_sampler_size(&cfg, &s) == 0, "n = %d with guidance sized", n);
    cfg.n = n - 1;
    cfg.labels = NULL;        /* without labels, n - 1 rows are fine to size (64-bit size_t) */
    if (sizeof(size_t) >= 8) CHECK(dfn_sampler_size(&cfg, &s) > 0, "n = %d without labels refused", n - 1);
    dfn_schedule_free(&s, NULL);
}

void test_hardening_model_limits(void)
{
    /* Finding 4: a valid file of a few hundred bytes declaring T = 2^24 made
       the loader allocate 671 MB. The default limits refuse it before any
       allocation; raised limits load it; a non-custom schedule reserves no
       betas. */
    unsigned char *img;
    size_t len = hd_model_image(1000, &img);
    dfn_loaded_model lm;
    dfn_model_info info;
    dfn_limits lim = dfn_limits_default();
    size_t bound;
    CHECK(lim.max_T == DFN_LIMIT_MAX_T && lim.max_bytes == DFN_LIMIT_MAX_BYTES, "defaults");
    CHECK(dfn_model_load_mem(img, len, NULL, &lm) == DFN_OK, "T = 1000 loads");
    dfn_model_free(&lm, NULL);
    hd_set_T(img, len, 1u << 24);
    CHECK(dfn_model_info_mem(img, len, &info) == DFN_OK && info.schedule.T == 1 << 24, "still a valid file");
    CHECK(dfn_model_check_limits(&info, NULL) == DFN_ERR_LIMIT, "T = 2^24 within the defaults");
    CHECK(dfn_model_load_mem(img, len, NULL, &lm) == DFN_ERR_LIMIT && lm.memory == NULL, "T = 2^24 loaded");
    CHECK(strstr(dfn_result_string(DFN_ERR_LIMIT), "DFN_ERR_LIMIT") != NULL, "a name for the code");
    /* T = 2^20: over the default T, within raised limits; the block is the
       schedule's tables, the weights and a config (no T betas: 4 MB more) */
    hd_set_T(img, len, 1u << 20);
    CHECK(dfn_model_info_mem(img, len, &info) == DFN_OK, "info");
    bound = dfn_schedule_size(1 << 20) + info.params * sizeof(float) + 4096;
    CHECK(dfn_model_load_net_mem_ex(img, len, NULL, NULL, NULL, &lm) == DFN_ERR_LIMIT, "over the default T");
    lim.max_T = 1 << 20;
    lim.max_bytes = bound;
    CHECK(dfn_model_check_limits(&info, &lim) == DFN_OK, "within %lu bytes", (unsigned long)bound);
    CHECK(dfn_model_load_net_mem_ex(img, len, NULL, &lim, NULL, &lm) == DFN_OK && lm.schedule.T == 1 << 20,
          "raised limits");
    dfn_model_free(&lm, NULL);
    lim.max_bytes = dfn_schedule_size(1 << 20);
    CHECK(dfn_model_load_net_mem_ex(img, len, NULL, &lim, NULL, &lm) == DFN_ERR_LIMIT, "max_bytes below the tables");
    lim = dfn_limits_default();
    lim.max_params = info.params - 1;
    CHECK(dfn_model_check_limits(&info, &lim) == DFN_ERR_LIMIT, "P over max_params");
    CHECK(dfn_model_check_limits(NULL, &lim) == DFN_ERR_NULL, "NULL info");
    {
        /* the file loader counts the file too: a limit below its length
           refuses it unread */
        const char *path = "build/hardening_model.dfnm";
        FILE *f = fopen(path, "wb");
        CHECK(f != NULL, "write %s", path);
        if (f) {
            hd_set_T(img, len, 1000);
            fwrite(img, 1, len, f);
            fclose(f);
            lim = dfn_limits_default();
            CHECK(dfn_model_load_net_ex(path, NULL, &lim, NULL, &lm) == DFN_OK, "file within the defaults");
            dfn_model_free(&lm, NULL);
            lim.max_bytes = len;      /* the buffer is len + 1 bytes */
            CHECK(dfn_model_load_net_ex(path, NULL, &lim, NULL, &lm) == DFN_ERR_LIMIT, "file over max_bytes");
            remove(path);
        }
    }
    free(img);
}

void test_hardening_idx_limits(void)
{
    /* IDX files: a side over max_side, or images whose floats pass
       max_bytes, are DFN_ERR_LIMIT before the floats are allocated. */
    enum { N = 3, H = 6, W = 5 };
    const char *path = "build/hardening_images.idx";
    unsigned char head[16] = { 0, 0, 8, 3 }, body[N * H * W];
    dfn_image_set set;
    dfn_limits lim = dfn_limits_default();
    FILE *f = fopen(path, "wb");
    CHECK(f != NULL, "write %s", path);
    if (!f) return;
    hd_put_u32(head + 4, 0); head[7] = N;
    hd_put_u32(head + 8, 0); head[11] = H;
    hd_put_u32(head + 12, 0); head[15] = W;
    memset(body, 200, sizeof body);
    fwrite(head, 1, 16, f);
    fwrite(body, 1, sizeof body, f);
    fclose(f);
    CHECK(dfn_idx_load_ex(&set, path, NULL, 1, &lim, NULL) == DFN_OK && set.n == N, "within the defaults");
    dfn_image_set_free(&set, NULL);
    lim.max_side = H - 1;
    CHECK(dfn_idx_load_ex(&set, path, NULL, 1, &lim, NULL) == DFN_ERR_LIMIT && set.images == NULL, "side over max_side");
    lim = dfn_limits_default();
    /* held at once: the file's buffer (its bytes and a NUL) and the floats */
    lim.max_bytes = 16 + sizeof body + 1 + N * H * W * sizeof(float) - 1;
    CHECK(dfn_idx_load_ex(&set, path, NULL, 1, &lim, NULL) == DFN_ERR_LIMIT, "file and floats over max_bytes");
    lim.max_bytes += 1;
    CHECK(dfn_idx_load_ex(&set, path, NULL, 1, &lim, NULL) == DFN_OK, "file and floats at max_bytes");
    dfn_image_set_free(&set, NULL);
    remove(path);
}

void test_hardening_points_line_limit(void)
{
    /* Finding 5: a last line without '\n' of DFN_POINTS_MAX_LINE bytes was
       accepted by the parser and refused by the file reader. Both now take
       lines of at most DFN_POINTS_MAX_LINE - 1 bytes before the '\n' (or the
       end), with the same error line. */
    const char *path = "build/hardening_points.txt";
    size_t L = DFN_POINTS_MAX_LINE, k;
    char *text = (char *)malloc(2 * L + 8);
    float out[8];
    int pass;
    for (pass = 0; pass < 4; pass++) {
        /* "1 2" then spaces to the length, with or without a final '\n';
           a first short line so that the error line is 2 */
        size_t body = pass < 2 ? L - 1 : L, len;
        int final_nl = pass % 2, rows_p = -1, rows_l = -1, line_p = -1, line_l = -1;
        dfn_result rp, rl;
        FILE *f;
        memcpy(text, "3 4\n1 2", 7);
        for (k = 7; k < 4 + body; k++) text[k] = ' ';
        len = 4 + body;
        if (final_nl) text[len++] = '\n';
        rp = dfn_points_parse(text, len, 2, out, 4, &rows_p, &line_p);
        f = fopen(path, "wb");
        CHECK(f != NULL, "write %s", path);
        if (!f) break;
        fwrite(text, 1, len, f);
        fclose(f);
        rl = dfn_points_load(path, 2, out, 4, &rows_l, &line_l);
        CHECK(rp == rl && rows_p == rows_l && line_p == line_l,
              "line of %lu bytes%s: parse %s (rows %d, line %d), load %s (rows %d, line %d)", (unsigned long)body,
              final_nl ? " + newline" : "", dfn_result_string(rp), rows_p, line_p, dfn_result_string(rl), rows_l, line_l);
        CHECK(rp == (body < L ? DFN_OK : DFN_ERR_FORMAT), "line of %lu bytes: %s", (unsigned long)body,
              dfn_result_string(rp));
        if (rp == DFN_ERR_FORMAT) CHECK(line_p == 2 && rows_p == 1, "error at line %d after %d rows", line_p, rows_p);
    }
    remove(path);
    free(text);
}

/* Steps two trainers of equal weights from the same seed, checks that they
   end with the same weights, and frees them. */
static void hd_steps_agree(const char *what, dfn_trainer *t1, dfn_trainer *t2, const float *x0, int steps)
{
    dfn_rng r1, r2;
    float loss;
    int k;
    dfn_rng_seed(&r1, 10, 0);
    dfn_rng_seed(&r2, 10, 0);
    for (k = 0; k < steps; k++) {
        CHECK(dfn_train_step(t1, x0, NULL, &r1, &loss) == DFN_OK, "%s step %d", what, k);
        CHECK(dfn_train_step(t2, x0, NULL, &r2, &loss) == DFN_OK, "%s step %d after the change", what, k);
    }
    CHECK(memcmp(t1->net.params, t2->net.params, t1->net.count * sizeof(float)) == 0,
          "%s: the weights differ after the config changed", what);
    dfn_trainer_free(t1, NULL);
    dfn_trainer_free(t2, NULL);
}

void test_hardening_trainer_own_config(void)
{
    /* Finding 7: a trainer laid out its memory from the model's config at
       init and read the config again at every step: a later change to
       model->cfg overflowed its buffers. The trainer now steps on its own
       copy: the same weights as a trainer whose model was left alone. */
    enum { B = 16 };
    dfn_mlp_config mc = dfn_mlp_config_default(2);
    dfn_schedule_config sc = dfn_schedule_config_default(DFN_SCHEDULE_LINEAR, 100);
    dfn_train_config tc = dfn_train_config_default();
    dfn_schedule s;
    dfn_mlp m1, m2;
    dfn_trainer t1, t2;
    dfn_rng rng;
    size_t P;
    float *p1, *p2, x0[B * 2];
    int k;
    mc.hidden = 16; mc.blocks = 1; mc.time_dim = 8;
    tc.batch = B;
    P = dfn_mlp_num_params(&mc);
    p1 = (float *)malloc(P * sizeof(float));
    p2 = (float *)malloc(P * sizeof(float));
    dfn_rng_seed(&rng, 9, 0);
    CHECK(dfn_mlp_init(&m1, &mc, p1) == DFN_OK && dfn_mlp_init_weights(&m1, &rng) == DFN_OK, "init");
    memcpy(p2, p1, P * sizeof(float));
    CHECK(dfn_mlp_init(&m2, &mc, p2) == DFN_OK, "init");
    for (k = 0; k < B * 2; k++) x0[k] = dfn_rng_normal(&rng);
    CHECK(dfn_schedule_alloc(&s, &sc, NULL) == DFN_OK, "schedule");
    CHECK(dfn_trainer_alloc(&t1, &m1, &s, &tc, NULL) == DFN_OK && dfn_trainer_alloc(&t2, &m2, &s, &tc, NULL) == DFN_OK,
          "trainers");
    m2.cfg.hidden = 512;      /* misuse: a bigger network than the trainer's */
    m2.cfg.blocks = 4;
    hd_steps_agree("MLP", &t1, &t2, x0, 3);
    free(p1); free(p2);
    {
        /* the U-Net, whose steps read the config: grown in every size */
        enum { UB = 2 };
        dfn_unet_config uc = dfn_unet_config_default(1, 8, 8);
        dfn_unet u1, u2;
        float img[UB * 64];
        uc.base_channels = 4; uc.levels = 2; uc.mult[0] = 1; uc.mult[1] = 2;
        uc.attention[0] = 0; uc.attention[1] = 1; uc.groups = 2; uc.time_dim = 8;
        tc.batch = UB;
        P = dfn_unet_num_params(&uc);
        p1 = (float *)malloc(P * sizeof(float));
        p2 = (float *)malloc(P * sizeof(float));
        CHECK(dfn_unet_init(&u1, &uc, p1) == DFN_OK && dfn_unet_init_weights(&u1, &rng) == DFN_OK, "U-Net init");
        memcpy(p2, p1, P * sizeof(float));
        CHECK(dfn_unet_init(&u2, &uc, p2) == DFN_OK, "U-Net init");
        for (k = 0; k < UB * 64; k++) img[k] = dfn_rng_normal(&rng);
        CHECK(dfn_trainer_alloc_unet(&t1, &u1, &s, &tc, NULL) == DFN_OK &&
              dfn_trainer_alloc_unet(&t2, &u2, &s, &tc, NULL) == DFN_OK, "U-Net trainers");
        u2.cfg.height = 32;   /* misuse: another network of the same kind */
        u2.cfg.width = 32;
        u2.cfg.base_channels = 16;
        u2.cfg.attention[0] = 1;
        u2.cfg.time_dim = 64;
        hd_steps_agree("U-Net", &t1, &t2, img, 2);
        free(p1); free(p2);
    }
    dfn_schedule_free(&s, NULL);
}

#ifdef DFN_PTHREADS
/* One caller of the two: a split GEMM, REPS times, compared with the
   one-thread product. */
typedef struct hd_caller {
    const float *A, *B, *C0;
    int M, N, K, reps, bad;
} hd_caller;

static void *hd_caller_main(void *arg)
{
    hd_caller *c = (hd_caller *)arg;
    float *C = (float *)malloc((size_t)c->M * c->N * sizeof(float)), *work = (float *)malloc(dfn_gemm_work_size());
    int r;
    for (r = 0; r < c->reps; r++) {
        memset(C, 0, (size_t)c->M * c->N * sizeof(float));
        dfn_gemm(0, 0, c->M, c->N, c->K, 1.0f, c->A, c->K, c->B, c->N, 0.0f, C, c->N, work);
        c->bad += memcmp(C, c->C0, (size_t)c->M * c->N * sizeof(float)) != 0;
    }
    free(C);
    free(work);
    return NULL;
}
#endif

void test_threads_pool_two_callers(void)
{
    /* Finding 6: with the pool installed, a second thread calling the
       library overwrote the running job's task and counters (and raced on
       the busy flag: ThreadSanitizer, the tsan build runs this test). Now a
       caller that finds the hook running runs its tasks itself: two threads
       multiplying at once get the one-thread bits every time. */
#ifdef DFN_PTHREADS
    enum { M = 200, N = 181, K = 150, REPS = 30 };
    float *A = (float *)malloc(sizeof(float) * M * K), *Bm = (float *)malloc(sizeof(float) * K * N);
    float *C0 = (float *)calloc((size_t)M * N, sizeof(float)), *work = (float *)malloc(dfn_gemm_work_size());
    hd_caller c[2];
    pthread_t th[2];
    dfn_rng rng;
    int i;
    dfn_rng_seed(&rng, 11, 0);
    for (i = 0; i < M * K; i++) A[i] = dfn_rng_normal(&rng);
    for (i = 0; i < K * N; i++) Bm[i] = dfn_rng_normal(&rng);
    dfn_gemm(0, 0, M, N, K, 1.0f, A, K, Bm, N, 0.0f, C0, N, work);
    CHECK(dfn_pthreads_start(2) == DFN_OK, "start the pool");
    for (i = 0; i < 2; i++) {
        c[i].A = A; c[i].B = Bm; c[i].C0 = C0; c[i].M = M; c[i].N = N; c[i].K = K; c[i].reps = REPS; c[i].bad = 0;
        CHECK(pthread_create(&th[i], NULL, hd_caller_main, &c[i]) == 0, "thread %d", i);
    }
    for (i = 0; i < 2; i++) pthread_join(th[i], NULL);
    dfn_pthreads_stop();
    CHECK(c[0].bad == 0 && c[1].bad == 0, "products differ: %d and %d of %d", c[0].bad, c[1].bad, REPS);
    free(A); free(Bm); free(C0); free(work);
#else
    printf("    note: built without DFN_PTHREADS: no pool to test; skipped\n");
#endif
}

void test_hardening_model_nonfinite_weights(void)
{
    /* A model file whose checksum is right but whose weights hold a NaN or
       an infinity does not load (it would sample NaN). */
    unsigned char *img;
    size_t len = hd_model_image(100, &img), P;
    dfn_model_info info;
    dfn_loaded_model lm;
    CHECK(dfn_model_info_mem(img, len, &info) == DFN_OK, "info");
    P = info.params;
    hd_put_u32(img + len - 4 - 4 * P + 4 * (P / 2), 0x7fc00000u);      /* a NaN in the middle */
    hd_put_u32(img + len - 4, dfn_crc32(0, img, len - 4));
    CHECK(dfn_model_info_mem(img, len, &info) == DFN_ERR_NOT_FINITE, "NaN weight described");
    CHECK(dfn_model_load_mem(img, len, NULL, &lm) == DFN_ERR_NOT_FINITE && lm.memory == NULL, "NaN weight loaded");
    hd_put_u32(img + len - 4 - 4 * P + 4 * (P / 2), 0xff800000u);      /* -inf */
    hd_put_u32(img + len - 4, dfn_crc32(0, img, len - 4));
    CHECK(dfn_model_load_mem(img, len, NULL, &lm) == DFN_ERR_NOT_FINITE, "-inf weight loaded");
    hd_put_u32(img + len - 4 - 4 * P + 4 * (P / 2), 0x7f7fffffu);      /* FLT_MAX is finite */
    hd_put_u32(img + len - 4, dfn_crc32(0, img, len - 4));
    CHECK(dfn_model_load_mem(img, len, NULL, &lm) == DFN_OK, "FLT_MAX weight refused");
    dfn_model_free(&lm, NULL);
    free(img);
    {
        /* with EMA and optimizer state: params[P] ema[P] step(8) m[P] v[P]
           CRC. A step count whose bits read as a NaN is not a float; a NaN
           in the first EMA value, the first Adam m or the last Adam v is. */
        dfn_mlp_config mc = dfn_mlp_config_default(2);
        dfn_schedule_config sc = dfn_schedule_config_default(DFN_SCHEDULE_LINEAR, 100);
        dfn_train_config tc = dfn_train_config_default();
        dfn_schedule s;
        dfn_mlp m;
        dfn_trainer tr;
        dfn_rng rng;
        float *params, nan = 0.0f;
        size_t cap, got = 0, at[3];
        int k;
        mc.hidden = 8; mc.blocks = 1; mc.time_dim = 8;
        tc.batch = 2;
        P = dfn_mlp_num_params(&mc);
        params = (float *)malloc(P * sizeof(float));
        dfn_rng_seed(&rng, 4, 0);
        CHECK(dfn_mlp_init(&m, &mc, params) == DFN_OK && dfn_mlp_init_weights(&m, &rng) == DFN_OK, "mlp");
        CHECK(dfn_schedule_alloc(&s, &sc, NULL) == DFN_OK && dfn_trainer_alloc(&tr, &m, &s, &tc, NULL) == DFN_OK,
              "trainer");
        CHECK(tr.ema != NULL, "the trainer keeps an EMA");
        tr.step = 0x7fc00000L;
        cap = dfn_model_save_size(&m, &s, &tr, 1);
        img = (unsigned char *)malloc(cap);
        CHECK(dfn_model_save_mem(img, cap, &got, &m, &s, &tr, 1) == DFN_OK && got == cap, "save with state");
        CHECK(dfn_model_load_mem(img, got, NULL, &lm) == DFN_OK && lm.step == 0x7fc00000L, "a NaN-like step count");
        dfn_model_free(&lm, NULL);
        at[0] = got - 4 - 8 * P - 8 - 4 * P;     /* the first EMA value */
        at[1] = got - 4 - 8 * P;                 /* the first Adam m    */
        at[2] = got - 8;                         /* the last Adam v     */
        for (k = 0; k < 3; k++) {
            unsigned char keep[4];
            memcpy(keep, img + at[k], 4);
            hd_put_u32(img + at[k], 0x7fc00000u);
            hd_put_u32(img + got - 4, dfn_crc32(0, img, got - 4));
            CHECK(dfn_model_load_mem(img, got, NULL, &lm) == DFN_ERR_NOT_FINITE, "a NaN at byte %lu loaded",
                  (unsigned long)at[k]);
            memcpy(img + at[k], keep, 4);
        }
        /* and the savers never write one */
        {
            uint32_t bits = 0x7fc00000u;
            memcpy(&nan, &bits, 4);
        }
        params[P / 3] = nan;
        CHECK(dfn_model_save_mem(img, cap, &got, &m, &s, NULL, 0) == DFN_ERR_NOT_FINITE, "a NaN weight saved");
        CHECK(dfn_model_save_size(&m, &s, NULL, 0) == 0, "a NaN weight sized");
        params[P / 3] = 0.5f;
        tr.adam_v[P - 1] = nan;
        CHECK(dfn_model_save_mem(img, cap, &got, &m, &s, &tr, 1) == DFN_ERR_NOT_FINITE, "a NaN Adam v saved");
        CHECK(dfn_model_save_mem(img, cap, &got, &m, &s, &tr, 0) == DFN_OK, "without the optimizer state");
        dfn_trainer_free(&tr, NULL);
        dfn_schedule_free(&s, NULL);
        free(params);
        free(img);
    }
}
