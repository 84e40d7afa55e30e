/* Bad input gets the documented error code, never a crash. */
#include <math.h>
#include <stdint.h>
#include <string.h>
#include "harness.h"
#include "../diffusion.h"

static int noop_predict(void *user, const float *x_t, const int *t, const int *labels, int n, float *out)
{
    (void)user; (void)x_t; (void)t; (void)labels;
    memset(out, 0, sizeof(float) * (size_t)n);
    return 0;
}

void test_errors_schedule(void)
{
    static unsigned char buf[1 << 16];
    float betas[4] = { 0.1f, 0.2f, 0.3f, 0.4f };
    dfn_schedule s;
    dfn_schedule_config c;
    float nan = (float)(0.0 * HUGE_VAL);

    c = dfn_schedule_config_default(DFN_SCHEDULE_LINEAR, 0);
    CHECK(dfn_schedule_init(&s, &c, buf, sizeof buf) == DFN_ERR_INVALID_ARG, "T = 0");
    CHECK(dfn_schedule_size(0) == 0 && dfn_schedule_size(-5) == 0 && dfn_schedule_size(DFN_MAX_T + 1) == 0, "size of bad T");
    c.T = -3;
    CHECK(dfn_schedule_init(&s, &c, buf, sizeof buf) == DFN_ERR_INVALID_ARG, "T < 0");
    c = dfn_schedule_config_default(DFN_SCHEDULE_LINEAR, 10);   /* beta_T = 0.02 * 100 = 2 */
    CHECK(dfn_schedule_init(&s, &c, buf, sizeof buf) == DFN_ERR_INVALID_ARG, "linear with T = 10 gives betas >= 1");
    c = dfn_schedule_config_default(DFN_SCHEDULE_LINEAR, 100);
    c.beta_start = nan;
    CHECK(dfn_schedule_init(&s, &c, buf, sizeof buf) == DFN_ERR_INVALID_ARG, "NaN beta_start");
    c.beta_start = 0.0;
    CHECK(dfn_schedule_init(&s, &c, buf, sizeof buf) == DFN_ERR_INVALID_ARG, "beta_start = 0");
    c = dfn_schedule_config_default(DFN_SCHEDULE_LINEAR, 100);
    CHECK(dfn_schedule_init(&s, &c, buf, 100) == DFN_ERR_BUFFER_TOO_SMALL, "small buffer");
    CHECK(dfn_schedule_init(&s, &c, NULL, sizeof buf) == DFN_ERR_NULL, "NULL memory");
    CHECK(dfn_schedule_init(NULL, &c, buf, sizeof buf) == DFN_ERR_NULL, "NULL schedule");
    CHECK(dfn_schedule_init(&s, NULL, buf, sizeof buf) == DFN_ERR_NULL, "NULL config");
    {
        /* The exact size is enough at every misalignment: the tables stay
           inside [mem, mem + size) and start on 64-byte addresses. */
        size_t need = dfn_schedule_size(100), off;
        int inside = 1;
        for (off = 0; off < 64; off++) {
            unsigned char *m = buf + off;
            CHECK(dfn_schedule_init(&s, &c, m, need) == DFN_OK, "offset %d", (int)off);
            inside &= (unsigned char *)s.beta >= m && (unsigned char *)(s.snr + 101) <= m + need &&
                      (uintptr_t)s.beta % 64 == 0 && (uintptr_t)s.snr % 64 == 0;
        }
        CHECK(inside, "a table left the buffer or is misaligned");
        CHECK(dfn_schedule_init(&s, &c, buf, need - 1) == DFN_ERR_BUFFER_TOO_SMALL, "one byte short");
    }

    c = dfn_schedule_config_default(DFN_SCHEDULE_CUSTOM, 4);
    CHECK(dfn_schedule_init(&s, &c, buf, sizeof buf) == DFN_ERR_NULL, "custom without betas");
    c.betas = betas;
    CHECK(dfn_schedule_init(&s, &c, buf, sizeof buf) == DFN_OK, "custom betas");
    betas[2] = 1.0f;
    CHECK(dfn_schedule_init(&s, &c, buf, sizeof buf) == DFN_ERR_INVALID_ARG, "beta = 1");
    betas[2] = 0.0f;
    CHECK(dfn_schedule_init(&s, &c, buf, sizeof buf) == DFN_ERR_INVALID_ARG, "beta = 0");
    betas[2] = -0.1f;
    CHECK(dfn_schedule_init(&s, &c, buf, sizeof buf) == DFN_ERR_INVALID_ARG, "beta < 0");
    betas[2] = nan;
    CHECK(dfn_schedule_init(&s, &c, buf, sizeof buf) == DFN_ERR_INVALID_ARG, "NaN beta");
    betas[2] = 0.3f;
    betas[0] = 1e-20f;            /* 1 - beta is 1 in double: 1 - alphabar_1 = 0 */
    CHECK(dfn_schedule_init(&s, &c, buf, sizeof buf) == DFN_ERR_INVALID_ARG, "beta_1 = 1e-20");
    betas[0] = 0.1f;

    c = dfn_schedule_config_default(DFN_SCHEDULE_COSINE, 100);
    c.cosine_s = -1;
    CHECK(dfn_schedule_init(&s, &c, buf, sizeof buf) == DFN_ERR_INVALID_ARG, "cosine s < 0");
    c = dfn_schedule_config_default(DFN_SCHEDULE_SIGMOID, 100);
    c.sigmoid_tau = 0;
    CHECK(dfn_schedule_init(&s, &c, buf, sizeof buf) == DFN_ERR_INVALID_ARG, "sigmoid tau = 0");
    c.sigmoid_tau = 1e300;        /* sig(end/tau) - sig(start/tau) = 0: alphabar is NaN */
    CHECK(dfn_schedule_init(&s, &c, buf, sizeof buf) == DFN_ERR_INVALID_ARG, "sigmoid tau = 1e300");
    c = dfn_schedule_config_default((dfn_schedule_kind)17, 100);
    CHECK(dfn_schedule_init(&s, &c, buf, sizeof buf) == DFN_ERR_INVALID_ARG, "unknown kind");
    c = dfn_schedule_config_default(DFN_SCHEDULE_COSINE, 1);
    c.zero_terminal_snr = 1;
    CHECK(dfn_schedule_init(&s, &c, buf, sizeof buf) == DFN_ERR_INVALID_ARG, "zero terminal SNR needs T >= 2");
    CHECK(dfn_schedule_alloc(&s, &c, NULL) == DFN_ERR_INVALID_ARG && s.memory == NULL, "alloc of a bad config");
    dfn_schedule_free(&s, NULL);   /* a zeroed schedule is fine to free */
    dfn_schedule_free(NULL, NULL);
}

void test_errors_forward_and_samplers(void)
{
    float x[8] = {0}, e[8] = {0}, o[8];
    int t_ok[4] = { 1, 2, 3, 4 }, t_bad[4] = { 1, 0, 3, 4 }, t_big[4] = { 1, 2, 3, 101 };
    int tau[8], labels[2] = { 0, -2 };
    dfn_schedule s;
    dfn_schedule_config c = dfn_schedule_config_default(DFN_SCHEDULE_LINEAR, 100);
    dfn_sampler_config sc;
    dfn_sampler smp;
    dfn_rng rng;
    float w[1] = { 1 }, mu[1] = { 0 }, sd[1] = { 0 }, nan = (float)(0.0 * HUGE_VAL);
    dfn_gmm g;
    double ed;
    CHECK(dfn_schedule_alloc(&s, &c, NULL) == DFN_OK, "schedule");
    dfn_rng_seed(&rng, 1, 1);

    CHECK(dfn_q_sample(&s, o, x, e, t_ok, 4, 2) == DFN_OK, "valid call");
    CHECK(dfn_q_sample(&s, o, x, e, t_bad, 4, 2) == DFN_ERR_INVALID_ARG, "t = 0");
    CHECK(dfn_q_sample(&s, o, x, e, t_big, 4, 2) == DFN_ERR_INVALID_ARG, "t > T");
    CHECK(dfn_q_sample(&s, o, x, e, t_ok, 4, 0) == DFN_ERR_INVALID_ARG, "dim = 0");
    CHECK(dfn_q_sample(&s, o, x, e, t_ok, -1, 2) == DFN_ERR_INVALID_ARG, "n < 0");
    CHECK(dfn_q_sample(&s, o, x, e, NULL, 0, 2) == DFN_OK, "n = 0 is a no-op");
    CHECK(dfn_q_sample(&s, NULL, x, e, t_ok, 4, 2) == DFN_ERR_NULL, "NULL output");
    CHECK(dfn_q_sample(NULL, o, x, e, t_ok, 4, 2) == DFN_ERR_NULL, "NULL schedule");
    CHECK(dfn_q_posterior(&s, o, NULL, x, NULL, t_ok, 4, 2) == DFN_ERR_NULL, "posterior NULL x_t");
    CHECK(dfn_prediction_to_x0_eps(&s, (dfn_prediction)9, o, NULL, x, x, t_ok, 4, 2) == DFN_ERR_INVALID_ARG, "unknown prediction");
    CHECK(dfn_prediction_target(&s, DFN_PREDICT_V, o, x, NULL, t_ok, 4, 2) == DFN_ERR_NULL, "target NULL eps");

    CHECK(dfn_ddim_timesteps(tau, 100, 0, DFN_SPACING_TRAILING) == DFN_ERR_INVALID_ARG, "zero steps");
    CHECK(dfn_ddim_timesteps(tau, 5, 6, DFN_SPACING_TRAILING) == DFN_ERR_INVALID_ARG, "steps > T");
    CHECK(dfn_ddim_timesteps(NULL, 5, 2, DFN_SPACING_TRAILING) == DFN_ERR_NULL, "NULL tau");
    CHECK(dfn_ddim_timesteps(tau, 5, 2, (dfn_spacing)7) == DFN_ERR_INVALID_ARG, "unknown spacing");
    CHECK(dfn_ddpm_step(&s, o, x, x, NULL, 0, DFN_VARIANCE_SMALL, 8) == DFN_ERR_INVALID_ARG, "ddpm t = 0");
    CHECK(dfn_ddim_step(&s, o, x, x, NULL, 5, 5, 0.0f, 8) == DFN_ERR_INVALID_ARG, "ddim t_prev = t");
    CHECK(dfn_ddim_step(&s, o, x, x, NULL, 5, 2, nan, 8) == DFN_ERR_INVALID_ARG, "ddim eta NaN");
    CHECK(dfn_ddim_step(&s, o, x, x, NULL, 5, 2, -1.0f, 8) == DFN_ERR_INVALID_ARG, "ddim eta < 0");

    sc = dfn_sampler_config_default(DFN_SAMPLER_DDIM, 2, 1, noop_predict, NULL);
    sc.steps = 0;
    CHECK(dfn_sampler_init(&smp, &sc, &s, o, sizeof o) == DFN_ERR_INVALID_ARG && dfn_sampler_size(&sc, &s) == 0, "zero steps");
    sc.steps = 101;
    CHECK(dfn_sampler_alloc(&smp, &sc, &s, NULL) == DFN_ERR_INVALID_ARG, "steps > T");
    sc.steps = 10;
    sc.eta = nan;
    CHECK(dfn_sampler_alloc(&smp, &sc, &s, NULL) == DFN_ERR_INVALID_ARG, "eta NaN");
    sc.eta = -0.5f;
    CHECK(dfn_sampler_alloc(&smp, &sc, &s, NULL) == DFN_ERR_INVALID_ARG, "eta < 0");
    sc.eta = 0.0f;
    sc.n = 0;
    CHECK(dfn_sampler_alloc(&smp, &sc, &s, NULL) == DFN_ERR_INVALID_ARG, "n = 0");
    sc.n = 2;
    sc.predict = NULL;
    CHECK(dfn_sampler_alloc(&smp, &sc, &s, NULL) == DFN_ERR_NULL, "no predictor");
    sc.predict = noop_predict;
    sc.labels = labels;
    CHECK(dfn_sampler_alloc(&smp, &sc, &s, NULL) == DFN_ERR_INVALID_ARG, "label < -1");
    sc.labels = NULL;
    sc.clip_x0 = 1;
    sc.clip_min = 1.0f;
    sc.clip_max = -1.0f;
    CHECK(dfn_sampler_alloc(&smp, &sc, &s, NULL) == DFN_ERR_INVALID_ARG, "empty clip range");
    sc.clip_x0 = 0;
    CHECK(dfn_sampler_init(&smp, &sc, &s, o, sizeof o) == DFN_ERR_BUFFER_TOO_SMALL, "small buffer");
    CHECK(dfn_sampler_alloc(&smp, &sc, NULL, NULL) == DFN_ERR_NULL, "NULL schedule");
    CHECK(dfn_sampler_alloc(&smp, &sc, &s, NULL) == DFN_OK, "valid sampler");
    CHECK(dfn_sampler_step(&smp, 0, o, &rng) == DFN_ERR_INVALID_ARG, "step 0");
    CHECK(dfn_sampler_step(&smp, 11, o, &rng) == DFN_ERR_INVALID_ARG, "step > S");
    CHECK(dfn_sampler_run(&smp, NULL, NULL, &rng) == DFN_ERR_NULL, "NULL x");
    CHECK(dfn_sampler_run(&smp, o, NULL, NULL) == DFN_ERR_NULL, "x_T drawn without rng");
    dfn_sampler_free(&smp, NULL);
    sc.kind = DFN_SAMPLER_DDPM;
    CHECK(dfn_sampler_alloc(&smp, &sc, &s, NULL) == DFN_OK, "DDPM sampler");
    x[0] = x[1] = 0.0f;
    CHECK(dfn_sampler_run(&smp, o, x, NULL) == DFN_ERR_NULL, "DDPM needs an rng for its noise");
    dfn_sampler_free(&smp, NULL);

    g.k = 1; g.dim = 1; g.weights = w; g.means = mu; g.stds = sd;
    CHECK(dfn_gmm_sample(&g, &rng, o, NULL, 2) == DFN_ERR_INVALID_ARG, "std = 0");
    sd[0] = 1.0f;
    w[0] = nan;
    CHECK(dfn_gmm_sample(&g, &rng, o, NULL, 2) == DFN_ERR_INVALID_ARG, "NaN weight");
    w[0] = 1.0f;
    g.k = DFN_GMM_MAX_K + 1;
    CHECK(dfn_gmm_eps(&g, &s, o, x, t_ok, NULL, 1) == DFN_ERR_INVALID_ARG, "too many components");
    g.k = 1;
    labels[1] = 1;
    CHECK(dfn_gmm_eps(&g, &s, o, x, t_ok, labels, 2) == DFN_ERR_INVALID_ARG, "label beyond k");

    x[0] = nan;
    CHECK(dfn_energy_distance(&ed, x, 2, e, 2, 1) == DFN_ERR_NOT_FINITE, "NaN in energy distance");
    CHECK(dfn_energy_distance(&ed, x, 0, e, 2, 1) == DFN_ERR_INVALID_ARG, "empty set");
    CHECK(dfn_energy_distance(NULL, x, 2, e, 2, 1) == DFN_ERR_NULL, "NULL output");
    dfn_schedule_free(&s, NULL);
}

void test_errors_result_strings(void)
{
    int r, j, distinct = 1;
    for (r = 0; r >= DFN_ERR_LIMIT; r--) {
        const char *a = dfn_result_string((dfn_result)r);
        CHECK(a != NULL && strlen(a) > 10, "code %d has no name", r);
        for (j = r + 1; j <= 0; j++) distinct &= strcmp(a, dfn_result_string((dfn_result)j)) != 0;
    }
    CHECK(distinct, "two codes share a name");
    CHECK(strcmp(dfn_result_string((dfn_result)-99), "unknown dfn_result") == 0, "unknown code");
}
