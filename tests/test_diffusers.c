/* diffusers' scheduler_config.json: the tables of each beta_schedule
   against diffusers' formulas written out here in double (diffusers counts
   t from 0: its index i is the library's t = i + 1), the timesteps of each
   spacing against lists worked out by hand (numpy's round-half-to-even
   included), every field the library cannot honour refused by name, the
   writer read back, and set_alpha_to_one = false against a DDIM loop
   written here. tools/torch/diffusers_ref.py checks the same with numpy
   (make test-interop). */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "harness.h"
#include "../diffusion.h"

/* diffusers' betas for i = 0..T-1 in double, from its formulas. */
static void ref_betas(const char *kind, int T, double b0, double b1, double *beta)
{
    int i;
    for (i = 0; i < T; i++) {
        double f = T > 1 ? (double)i / (T - 1) : 0.0;
        if (strcmp(kind, "linear") == 0) beta[i] = b0 + (b1 - b0) * f;
        else if (strcmp(kind, "scaled_linear") == 0) {
            double r = sqrt(b0) + (sqrt(b1) - sqrt(b0)) * f;
            beta[i] = r * r;
        } else if (strcmp(kind, "sigmoid") == 0) {
            double x = -6.0 + 12.0 * f;
            beta[i] = 1.0 / (1.0 + exp(-x)) * (b1 - b0) + b0;
        } else {                                  /* squaredcos_cap_v2: betas_for_alpha_bar */
            double t1 = (double)i / T, t2 = (double)(i + 1) / T;
            double a1 = cos((t1 + 0.008) / 1.008 * 3.14159265358979323846 / 2), a2 = cos((t2 + 0.008) / 1.008 * 3.14159265358979323846 / 2);
            double b = 1.0 - (a2 * a2) / (a1 * a1);
            beta[i] = b < 0.999 ? b : 0.999;
        }
    }
}

/* diffusers' rescale_zero_terminal_snr on betas (double). */
static void ref_rescale(double *beta, int T)
{
    double *s = (double *)malloc((size_t)T * sizeof(double)), ab = 1.0, s0, sT, prev;
    int i;
    for (i = 0; i < T; i++) { ab *= 1.0 - beta[i]; s[i] = sqrt(ab); }
    s0 = s[0];
    sT = s[T - 1];
    for (i = 0; i < T; i++) s[i] = (s[i] - sT) * s0 / (s0 - sT);
    prev = 1.0;
    for (i = 0; i < T; i++) {
        double a = s[i] * s[i];
        beta[i] = 1.0 - a / prev;
        prev = a;
    }
    free(s);
}

static double rel(double a, double b)
{
    double m = fabs(b) > 1e-30 ? fabs(b) : 1e-30;
    return fabs(a - b) / m;
}

void test_diffusers_tables(void)
{
    static const struct { const char *kind; int T; double b0, b1; int rescale; } cases[] = {
        { "linear", 1000, 0.0001, 0.02, 0 },
        { "linear", 500, 0.0001, 0.02, 0 },
        { "scaled_linear", 1000, 0.00085, 0.012, 0 },
        { "sigmoid", 1000, 0.0001, 0.02, 0 },
        { "squaredcos_cap_v2", 1000, 0.0001, 0.02, 0 },
        { "squaredcos_cap_v2", 1000, 0.0001, 0.02, 1 },
        { "scaled_linear", 1000, 0.00085, 0.012, 1 },
        { "sigmoid", 37, 0.001, 0.2, 0 },
    };
    size_t c;
    for (c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        char json[512];
        dfn_diffusers_config dc;
        dfn_error_detail d;
        dfn_schedule s;
        double *beta = (double *)malloc((size_t)cases[c].T * sizeof(double)), ab = 1.0, worst_b = 0, worst_a = 0;
        int i;
        dfn_result r;
        sprintf(json, "{\"_class_name\": \"DDPMScheduler\", \"_diffusers_version\": \"0.30.0\", "
                      "\"num_train_timesteps\": %d, \"beta_start\": %.17g, \"beta_end\": %.17g, "
                      "\"beta_schedule\": \"%s\", \"trained_betas\": null, \"rescale_betas_zero_snr\": %s, "
                      "\"prediction_type\": \"v_prediction\"}",
                cases[c].T, cases[c].b0, cases[c].b1, cases[c].kind, cases[c].rescale ? "true" : "false");
        r = dfn_diffusers_config_read(json, strlen(json), &dc, NULL, 0, &d);
        CHECK(r == DFN_OK, "%s: read %d (%s: %s)", cases[c].kind, (int)r, d.what, d.why);
        if (r != DFN_OK) { free(beta); continue; }
        CHECK(dc.prediction == DFN_PREDICT_V && dc.schedule.zero_terminal_snr == cases[c].rescale && !dc.ddim, "fields");
        CHECK(dfn_schedule_alloc(&s, &dc.schedule, NULL) == DFN_OK, "schedule");
        ref_betas(cases[c].kind, cases[c].T, cases[c].b0, cases[c].b1, beta);
        if (cases[c].rescale) ref_rescale(beta, cases[c].T);
        for (i = 0; i < cases[c].T; i++) {
            double rb, ra;
            ab *= 1.0 - beta[i];
            rb = rel(s.beta[i + 1], beta[i]);
            ra = i == cases[c].T - 1 && cases[c].rescale ? fabs((double)s.alphabar[i + 1] - ab)
                                                          : rel(s.alphabar[i + 1], ab);
            if (rb > worst_b) worst_b = rb;
            if (ra > worst_a) worst_a = ra;
        }
        CHECK(worst_b <= 1e-7 && worst_a <= 1e-7, "%s T %d%s: betas within %.2g, alphas_cumprod within %.2g relative",
              cases[c].kind, cases[c].T, cases[c].rescale ? " rescaled" : "", worst_b, worst_a);
        dfn_schedule_free(&s, NULL);
        free(beta);
    }
}

void test_diffusers_trained_betas(void)
{
    const char *json = "{\"num_train_timesteps\": 4, \"trained_betas\": [0.1, 0.2, 0.25, 0.5], "
                       "\"beta_schedule\": \"linear\"}";
    float betas[8];
    dfn_diffusers_config dc;
    dfn_error_detail d;
    dfn_schedule s;
    CHECK(dfn_diffusers_config_read(json, strlen(json), &dc, betas, 8, &d) == DFN_OK, "read");
    CHECK(dc.schedule.kind == DFN_SCHEDULE_CUSTOM && dc.schedule.T == 4 && dc.schedule.betas == betas, "custom");
    CHECK(dfn_schedule_alloc(&s, &dc.schedule, NULL) == DFN_OK, "schedule");
    CHECK(s.beta[1] == 0.1f && s.beta[4] == 0.5f && fabs(s.alphabar[4] - 0.9 * 0.8 * 0.75 * 0.5) < 1e-7, "tables");
    dfn_schedule_free(&s, NULL);
    CHECK(dfn_diffusers_config_read(json, strlen(json), &dc, betas, 3, &d) == DFN_ERR_BUFFER_TOO_SMALL, "cap 3");
}

/* The timesteps of one config text and S against a list. */
static void check_steps(const char *json, int S, const int *want, const char *what)
{
    dfn_diffusers_config dc;
    dfn_error_detail d;
    int got[64], i, same = 1;
    dfn_result r = dfn_diffusers_config_read(json, strlen(json), &dc, NULL, 0, &d);
    CHECK(r == DFN_OK, "%s: read %d (%s)", what, (int)r, d.what);
    r = dfn_diffusers_timesteps(&dc, S, got);
    CHECK(r == DFN_OK, "%s: timesteps %d", what, (int)r);
    for (i = 0; r == DFN_OK && i < S; i++) same &= got[i] == want[i];
    CHECK(same, "%s: first %d %d %d, last %d", what, got[0], got[1], got[2], got[S - 1]);
}

void test_diffusers_timesteps(void)
{
    /* diffusers' lists, + 1 (worked out by hand from set_timesteps) */
    static const int leading10[10] = { 902, 802, 702, 602, 502, 402, 302, 202, 102, 2 };   /* offset 1 */
    static const int trailing10[10] = { 1000, 900, 800, 700, 600, 500, 400, 300, 200, 100 };
    static const int linspace10[10] = { 1000, 889, 778, 667, 556, 445, 334, 223, 112, 1 };
    /* 62.5 apart: 937.5 -> 938, 812.5 -> 812, ... (halves to even) */
    static const int trailing16[16] = { 1000, 938, 875, 812, 750, 688, 625, 562, 500, 438, 375, 312, 250,
                                        188, 125, 62 };
    /* linspace(0, 5, 3) = 0, 2.5, 5 -> 0, 2, 5 */
    static const int linspace3[3] = { 6, 3, 1 };
    /* leading, T 1000, S 3, offset 0: 0, 333, 666 */
    static const int leading3[3] = { 667, 334, 1 };
    check_steps("{\"_class_name\":\"DDIMScheduler\",\"steps_offset\":1,\"timestep_spacing\":\"leading\"}",
                10, leading10, "leading 10, offset 1");
    check_steps("{\"_class_name\":\"DDIMScheduler\",\"timestep_spacing\":\"trailing\"}", 10, trailing10, "trailing 10");
    check_steps("{\"timestep_spacing\":\"linspace\"}", 10, linspace10, "linspace 10");
    check_steps("{\"timestep_spacing\":\"trailing\"}", 16, trailing16, "trailing 16");
    check_steps("{\"timestep_spacing\":\"linspace\",\"num_train_timesteps\":6,\"beta_end\":0.2}", 3, linspace3,
                "linspace T 6, S 3");
    check_steps("{\"timestep_spacing\":\"leading\"}", 3, leading3, "leading 3");
    /* arange(1000, 0, -333.33..): 3 values 1000, 666.67, 333.33 -> 999, 666, 332 after the - 1 */
    {
        static const int trailing3[3] = { 1000, 667, 333 };
        check_steps("{\"timestep_spacing\":\"trailing\"}", 3, trailing3, "trailing 3");
    }
    /* lists the library cannot run */
    {
        const char *j = "{\"timestep_spacing\":\"leading\",\"steps_offset\":600}";
        dfn_diffusers_config dc;
        int t[8];
        CHECK(dfn_diffusers_config_read(j, strlen(j), &dc, NULL, 0, NULL) == DFN_OK, "read");
        CHECK(dfn_diffusers_timesteps(&dc, 2, t) == DFN_ERR_INVALID_ARG, "500 + 600 + 1 past T");
        CHECK(dfn_diffusers_timesteps(&dc, 0, t) == DFN_ERR_INVALID_ARG, "S = 0");
    }
    {
        /* 500 / (500 / 61) rounds above 61: numpy's arange has 62 values,
           diffusers runs 62 steps for S = 61; the library refuses the list */
        const char *j = "{\"timestep_spacing\":\"trailing\",\"num_train_timesteps\":500}";
        dfn_diffusers_config dc;
        int t[64];
        CHECK(dfn_diffusers_config_read(j, strlen(j), &dc, NULL, 0, NULL) == DFN_OK, "read");
        CHECK(500.0 / (500.0 / 61.0) > 61.0, "the double arithmetic this case is about");
        CHECK(dfn_diffusers_timesteps(&dc, 61, t) == DFN_ERR_INVALID_ARG, "S + 1 steps refused");
        CHECK(dfn_diffusers_timesteps(&dc, 60, t) == DFN_OK && t[0] == 500, "S = 60");
    }
}

/* eps_hat = 0.3 x_t (a predictor the test can follow in double). */
static int lin_predict(void *user, const float *x, const int *t, const int *labels, int n, float *out)
{
    int i;
    (void)user; (void)t; (void)labels;
    for (i = 0; i < n; i++) out[i] = 0.3f * x[i];
    return 0;
}

void test_diffusers_refusals(void)
{
    static const struct { const char *json; const char *field; } bad[] = {
        { "{\"_class_name\":\"PNDMScheduler\"}", "_class_name" },
        { "{\"beta_schedule\":\"exp\"}", "beta_schedule" },
        { "{\"thresholding\":true}", "thresholding" },
        { "{\"variance_type\":\"learned_range\"}", "variance_type" },
        { "{\"_class_name\":\"DDIMScheduler\",\"variance_type\":\"fixed_small\"}", "variance_type" },
        { "{\"set_alpha_to_one\":false}", "set_alpha_to_one" },
        { "{\"prediction_type\":\"flow\"}", "prediction_type" },
        { "{\"timestep_spacing\":\"karras\"}", "timestep_spacing" },
        { "{\"use_karras_sigmas\":true}", "use_karras_sigmas" },
        { "{\"num_train_timesteps\":0}", "num_train_timesteps" },
        /* integers past any C integer type (the fuzzer's find: converting them was undefined) */
        { "{\"num_train_timesteps\":66666666666666666666666666666666666666666666666666}", "num_train_timesteps" },
        { "{\"num_train_timesteps\":-1e300}", "num_train_timesteps" },
        { "{\"steps_offset\":1e19}", "steps_offset" },
        { "{\"num_train_timesteps\":3,\"trained_betas\":[0.1,0.2]}", "trained_betas" },
        { "{\"trained_betas\":[0.1,1.5],\"num_train_timesteps\":2}", "trained_betas" },
        { "{\"beta_end\":1.5}", "beta_end" },
        { "{\"steps_offset\":-1}", "steps_offset" },
        { "{\"clip_sample\":1}", "clip_sample" },
    };
    size_t i;
    float betas[4];
    for (i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        dfn_diffusers_config dc;
        dfn_error_detail d;
        dfn_result r = dfn_diffusers_config_read(bad[i].json, strlen(bad[i].json), &dc, betas, 4, &d);
        CHECK(r == DFN_ERR_FORMAT && strcmp(d.what, bad[i].field) == 0, "%s: %d, named '%s' (%s)", bad[i].json,
              (int)r, d.what, d.why);
    }
    CHECK(dfn_diffusers_config_read("{", 1, (dfn_diffusers_config *)betas, NULL, 0, NULL) == DFN_ERR_FORMAT, "{");
    CHECK(dfn_diffusers_config_read(NULL, 1, NULL, NULL, 0, NULL) == DFN_ERR_NULL, "NULL");
    /* what the samplers do differently is refused when they are set up */
    {
        const char *j = "{\"_class_name\":\"DDIMScheduler\",\"clip_sample\":true}";
        dfn_diffusers_config dc;
        dfn_sampler_config sc = dfn_sampler_config_default(DFN_SAMPLER_DDIM, 1, 1, lin_predict, NULL);
        dfn_error_detail d;
        int t[10];
        CHECK(dfn_diffusers_config_read(j, strlen(j), &dc, NULL, 0, NULL) == DFN_OK, "read");
        CHECK(dfn_diffusers_sampler_setup(&dc, 10, t, &sc, &d) == DFN_ERR_INVALID_ARG &&
              strcmp(d.what, "clip_sample") == 0, "DDIM clip: %s", d.what);
        j = "{\"variance_type\":\"fixed_large\"}";
        CHECK(dfn_diffusers_config_read(j, strlen(j), &dc, NULL, 0, NULL) == DFN_OK, "read");
        CHECK(dfn_diffusers_sampler_setup(&dc, 10, t, &sc, &d) == DFN_ERR_INVALID_ARG &&
              strcmp(d.what, "variance_type") == 0, "strided large: %s", d.what);
        CHECK(dfn_diffusers_sampler_setup(&dc, 1000, (int *)malloc(4000), &sc, &d) == DFN_OK &&
              sc.kind == DFN_SAMPLER_DDPM && sc.variance == DFN_VARIANCE_LARGE, "T steps: DDPM");
        free((void *)sc.timesteps);
    }
}

void test_diffusers_write_read(void)
{
    /* Written and read back: the same schedule tables (named kinds exactly,
       trained_betas to float), the same sampler fields. */
    dfn_schedule_kind kinds[6] = { DFN_SCHEDULE_SCALED_LINEAR, DFN_SCHEDULE_SIGMOID_BETAS, DFN_SCHEDULE_LINEAR_BETAS,
                                   DFN_SCHEDULE_COSINE, DFN_SCHEDULE_LINEAR, DFN_SCHEDULE_SIGMOID };
    int k;
    for (k = 0; k < 6; k++) {
        dfn_diffusers_config dc = dfn_diffusers_config_default(k % 2), back;
        dfn_schedule s, s2;
        char buf[40000];
        size_t n = 0;
        float betas[1000];
        dfn_error_detail d;
        dfn_result r;
        int t, worst = 0;
        dc.schedule = dfn_schedule_config_default(kinds[k], k == 4 ? 500 : 1000);
        if (k == 0) { dc.schedule.beta_start = 0.00085; dc.schedule.beta_end = 0.012; }
        if (k == 3) dc.set_alpha_to_one = 0;
        dc.schedule.zero_terminal_snr = k == 3 || k == 5;
        dc.prediction = k == 3 ? DFN_PREDICT_V : DFN_PREDICT_EPS;
        dc.spacing = (dfn_diffusers_spacing)(k % 3);
        dc.steps_offset = k;
        dc.clip_sample = k == 1;
        dc.clip_sample_range = 1.5;
        CHECK(dfn_schedule_alloc(&s, &dc.schedule, NULL) == DFN_OK, "schedule %d", k);
        r = dfn_diffusers_config_write(&dc, &s, buf, sizeof buf, &n);
        CHECK(r == DFN_OK && n == strlen(buf), "write %d: %d", k, (int)r);
        r = dfn_diffusers_config_read(buf, n, &back, betas, 1000, &d);
        CHECK(r == DFN_OK, "read %d: %d (%s %s)", k, (int)r, d.what, d.why);
        if (r != DFN_OK) { dfn_schedule_free(&s, NULL); continue; }
        CHECK(back.ddim == dc.ddim && back.prediction == dc.prediction && back.spacing == dc.spacing &&
              back.steps_offset == dc.steps_offset && back.clip_sample == dc.clip_sample &&
              back.clip_sample_range == 1.5 && back.set_alpha_to_one == dc.set_alpha_to_one &&
              back.schedule.zero_terminal_snr == dc.schedule.zero_terminal_snr, "fields %d", k);
        CHECK(dfn_schedule_alloc(&s2, &back.schedule, NULL) == DFN_OK, "schedule back %d", k);
        for (t = 1; t <= s.T; t++)
            if (fabs(s2.alphabar[t] - s.alphabar[t]) > 1e-6 * s.alphabar[t] + 1e-12) worst++;
        CHECK(worst == 0, "kind %d: %d tables differ", k, worst);
        if (k < 4) CHECK(back.schedule.kind == dc.schedule.kind && memcmp(s2.beta, s.beta, 1001 * 4) == 0,
                         "named kind %d: the same bits", k);
        dfn_schedule_free(&s2, NULL);
        dfn_schedule_free(&s, NULL);
    }
    {
        dfn_diffusers_config dc = dfn_diffusers_config_default(0);
        char buf[64];
        size_t n;
        dc.schedule = dfn_schedule_config_default(DFN_SCHEDULE_FLOW, 1000);
        CHECK(dfn_diffusers_config_write(&dc, NULL, buf, sizeof buf, &n) == DFN_ERR_INVALID_ARG, "flow");
        dc = dfn_diffusers_config_default(0);
        CHECK(dfn_diffusers_config_write(&dc, NULL, buf, sizeof buf, &n) == DFN_ERR_BUFFER_TOO_SMALL, "small buffer");
    }
}

void test_diffusers_final_alpha(void)
{
    /* set_alpha_to_one = false (Stable Diffusion's DDIM): the last step
       ends at alphabar_1 (diffusers' alphas_cumprod[0]). DDIM eta 0 in
       double here, against the sampler with final_alphabar_1. */
    const char *json = "{\"_class_name\":\"DDIMScheduler\",\"beta_schedule\":\"scaled_linear\","
                       "\"beta_start\":0.00085,\"beta_end\":0.012,\"set_alpha_to_one\":false,"
                       "\"steps_offset\":1,\"clip_sample\":false}";
    dfn_diffusers_config dc;
    dfn_schedule s;
    dfn_sampler_config sc = dfn_sampler_config_default(DFN_SAMPLER_DDIM, 4, 1, lin_predict, NULL);
    dfn_rng rng;
    float x[4] = { 1.0f, -0.5f, 2.0f, 0.25f };
    double ref[4];
    int ts[10], i, k;
    CHECK(dfn_diffusers_config_read(json, strlen(json), &dc, NULL, 0, NULL) == DFN_OK, "read");
    CHECK(dfn_schedule_alloc(&s, &dc.schedule, NULL) == DFN_OK, "schedule");
    sc.predict = lin_predict;
    CHECK(dfn_diffusers_sampler_setup(&dc, 10, ts, &sc, NULL) == DFN_OK && sc.final_alphabar_1 == 1 &&
          sc.kind == DFN_SAMPLER_DDIM && ts[9] == 2, "setup (last t %d)", ts[9]);
    for (k = 0; k < 4; k++) ref[k] = x[k];
    for (i = 0; i < 10; i++) {
        int t = ts[i], p = i < 9 ? ts[i + 1] : 1;        /* the last target: alphabar_1 */
        double at = sqrt((double)s.alphabar[t]), st = sqrt(1.0 - (double)s.alphabar[t]);
        double ap = sqrt((double)s.alphabar[p]), sp = sqrt(1.0 - (double)s.alphabar[p]);
        for (k = 0; k < 4; k++) {
            double e = 0.3 * ref[k], x0 = (ref[k] - st * e) / at;
            ref[k] = ap * x0 + sp * e;
        }
    }
    dfn_rng_seed(&rng, 1, 0);
    {
        dfn_sampler smp;
        CHECK(dfn_sampler_alloc(&smp, &sc, &s, NULL) == DFN_OK, "sampler");
        CHECK(dfn_sampler_run(&smp, x, x, &rng) == DFN_OK, "run");
        dfn_sampler_free(&smp, NULL);
        for (k = 0; k < 4; k++)
            CHECK(fabs(x[k] - ref[k]) < 1e-5 * (1 + fabs(ref[k])), "x[%d] %g, want %g", k, x[k], ref[k]);
        sc.kind = DFN_SAMPLER_EULER;
        CHECK(dfn_sampler_alloc(&smp, &sc, &s, NULL) == DFN_ERR_INVALID_ARG, "only DDIM");
    }
    dfn_schedule_free(&s, NULL);
}
