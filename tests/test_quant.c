/* Small weight formats (MATH.md section 13) and respacing (section 11):
   - binary16 against its definition, computed in double: every one of the
     65,536 halves, and round to nearest even on ties and random floats;
   - section 13's int8 rows: a matrix with exact answers, and the bound
     |W - scale q| <= scale / 2 on random rows;
   - the stored-format MLP against a double-precision forward written here
     from the weights it stands for (each format), against the float
     path, batch-independent, and its refusals;
   - a respaced schedule sampled every step against the full schedule's
     sampler at the same timesteps, with the exact mixture predictor. */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "harness.h"
#include "../diffusion.h"

/* ------------------------------------------------------------------------- */
/*  binary16                                                                 */
/* ------------------------------------------------------------------------- */

/* The value of half h by its definition (sign, 5-bit exponent biased by 15,
   10-bit fraction; subnormal when the exponent is 0). */
static double half_value(unsigned h)
{
    int e = (int)((h >> 10) & 31u), m = (int)(h & 1023u);
    double v = e == 0 ? ldexp((double)m, -24) : ldexp(1024.0 + m, e - 25);
    return (h & 0x8000u) ? -v : v;
}

/* The half nearest to v (ties to even), as a double: v / ulp rounded by
   rint (the default rounding mode rounds half to even); HUGE_VAL past the
   largest half plus half an ulp. */
static double half_nearest(double v)
{
    double a = fabs(v), ulp, r;
    int e;
    if (a >= 65520.0) return v < 0 ? -HUGE_VAL : HUGE_VAL;
    e = a > 0 ? (int)floor(log2(a)) : -30;
    if (e < -14) e = -14;
    ulp = ldexp(1.0, e - 10);
    r = rint(a / ulp) * ulp;
    return v < 0 ? -r : r;
}

void test_quant_f16_every_half(void)
{
    unsigned h;
    int bad_value = 0, bad_round_trip = 0;
    for (h = 0; h < 65536u; h++) {
        float f = dfn_f16_to_f32((uint16_t)h);
        int nan = ((h >> 10) & 31u) == 31u && (h & 1023u);
        if (nan) {
            if (f == f) bad_value++;
            if ((dfn_f32_to_f16(f) & 0x7fffu) <= 0x7c00u) bad_round_trip++;   /* must stay NaN */
            continue;
        }
        if (((h >> 10) & 31u) == 31u) {
            if (!(isinf(f) && (f < 0) == ((h & 0x8000u) != 0))) bad_value++;
        } else if ((double)f != half_value(h)) {
            bad_value++;
        }
        if ((unsigned)dfn_f32_to_f16(f) != h) bad_round_trip++;
    }
    CHECK(bad_value == 0, "%d halves convert to the wrong float", bad_value);
    CHECK(bad_round_trip == 0, "%d halves do not round-trip", bad_round_trip);
}

void test_quant_f16_rounding(void)
{
    dfn_rng rng;
    int i, bad = 0;
    /* ties between neighbours: 1 + 2^-11 (between 1 and 1 + 2^-10) goes to
       1 (even), 1 + 3 * 2^-11 to 1 + 2^-9; the largest half, the overflow
       edge, the smallest subnormal and half of it */
    CHECK(dfn_f32_to_f16(1.0f + ldexpf(1.0f, -11)) == 0x3c00u, "tie to even below");
    CHECK(dfn_f32_to_f16(1.0f + 3.0f * ldexpf(1.0f, -11)) == 0x3c02u, "tie to even above");
    CHECK(dfn_f32_to_f16(65504.0f) == 0x7bffu, "largest half");
    CHECK(dfn_f32_to_f16(65519.0f) == 0x7bffu, "below the overflow edge");
    CHECK(dfn_f32_to_f16(65520.0f) == 0x7c00u, "the overflow edge (a tie to even: infinity)");
    CHECK(dfn_f32_to_f16(-1e9f) == 0xfc00u, "minus infinity");
    CHECK(dfn_f32_to_f16(ldexpf(1.0f, -24)) == 0x0001u, "smallest subnormal");
    CHECK(dfn_f32_to_f16(ldexpf(1.0f, -25)) == 0x0000u, "half of it: a tie to zero");
    CHECK(dfn_f32_to_f16(ldexpf(1.5f, -25)) == 0x0001u, "three quarters of it");
    CHECK(dfn_f32_to_f16(-0.0f) == 0x8000u, "minus zero");
    CHECK(dfn_f32_to_f16(ldexpf(2047.0f, -25)) == 0x0400u, "subnormal rounding up to the smallest normal");
    dfn_rng_seed(&rng, 16, 16);
    for (i = 0; i < 200000; i++) {
        /* random floats over the whole half range, exponents uniform */
        float v = (2.0f * dfn_rng_uniform(&rng) - 1.0f) * ldexpf(1.0f, (int)(dfn_rng_uniform(&rng) * 44.0f) - 28);
        double want = half_nearest((double)v), got = dfn_f16_to_f32(dfn_f32_to_f16(v));
        if (got != want) {
            if (bad++ < 3) CHECK(0, "%.9g -> %.9g, want %.9g", (double)v, got, want);
        }
    }
    CHECK(bad == 0, "%d of 200000 floats rounded wrongly", bad);
}

/* ------------------------------------------------------------------------- */
/*  int8 rows                                                                */
/* ------------------------------------------------------------------------- */

void test_quant_i8_rows(void)
{
    /* row 0: max 31.75 = 127 * 0.25, so scale 0.25 exactly and q = W / 0.25:
       127, -63.5 -> -64 and 0.5 -> 1 (ties away from zero), 0.3 -> 1.2 -> 1;
       row 1: all zero, scale 1; row 2: the max is negative */
    const float w[12] = { 31.75f, -15.875f, 0.125f, 0.3f, 0, 0, 0, 0, -2.0f, 1.0f, 0.0f, -0.0078125f };
    const int8_t want[12] = { 127, -64, 1, 1, 0, 0, 0, 0, -127, 64, 0, 0 };
    int8_t q[12];
    float s[3];
    dfn_rng rng;
    int i, j, bad = 0, over = 0;
    CHECK(dfn_quantize_rows_i8(w, 3, 4, q, s) == DFN_OK, "quantize");
    CHECK(s[0] == 0.25f && s[1] == 1.0f && s[2] == 2.0f / 127.0f, "scales %g %g %g", (double)s[0], (double)s[1],
          (double)s[2]);
    for (i = 0; i < 12; i++) CHECK(q[i] == want[i], "q[%d] = %d, want %d", i, q[i], want[i]);
    /* section 13's bound on random rows, in double */
    dfn_rng_seed(&rng, 13, 13);
    for (i = 0; i < 200; i++) {
        float row[64], sc;
        int8_t qr[64];
        int n = 1 + (int)(dfn_rng_uniform(&rng) * 64.0f);
        float mag = ldexpf(1.0f, (int)(dfn_rng_uniform(&rng) * 40.0f) - 20);
        for (j = 0; j < n; j++) row[j] = dfn_rng_normal(&rng) * mag;
        dfn_quantize_rows_i8(row, 1, n, qr, &sc);
        for (j = 0; j < n; j++) {
            double err = fabs((double)row[j] - (double)sc * qr[j]);
            if (err > 0.5 * (double)sc * (1.0 + 1e-6)) bad++;
            if (qr[j] == -128) over++;
        }
    }
    CHECK(bad == 0 && over == 0, "%d weights beyond scale/2, %d outside -127..127", bad, over);
    {
        float nan_row[2] = { 1.0f, 0.0f };
        nan_row[1] = (float)NAN;
        CHECK(dfn_quantize_rows_i8(nan_row, 1, 2, q, s) == DFN_ERR_INVALID_ARG, "NaN refused");
        CHECK(dfn_quantize_rows_i8(NULL, 1, 2, q, s) == DFN_ERR_NULL, "NULL");
        CHECK(dfn_quantize_rows_i8(w, -1, 2, q, s) == DFN_ERR_INVALID_ARG, "rows < 0");
    }
}

/* ------------------------------------------------------------------------- */
/*  The stored-format MLP                                                    */
/* ------------------------------------------------------------------------- */

static double ref_act(dfn_activation a, double x)
{
    switch (a) {
    case DFN_ACT_RELU: return x > 0 ? x : 0;
    case DFN_ACT_SILU: return x / (1.0 + exp(-x));
    case DFN_ACT_GELU: return 0.5 * x * (1.0 + tanh(sqrt(2.0 / 3.14159265358979323846) * (x + 0.044715 * x * x * x)));
    default:           return x;
    }
}

/* The forward pass in double from float parameters P (dfn_mlp layout),
   one row; the sinusoidal features are the library's (its own tests check
   them), everything after them is computed here. */
static void ref_forward(const dfn_mlp *m, const float *P, const float *x, int t, int label, double *out)
{
    const dfn_mlp_config *c = &m->cfg;
    const dfn_mlp_layout *l = &m->lay;
    int H = c->hidden, D = c->dim, I = (int)l->in_dim, E = c->time_dim, i, j, b;
    float *in = (float *)calloc((size_t)I, sizeof(float)), tf = (float)t;
    double *h = (double *)malloc(sizeof(double) * H), *p = (double *)malloc(sizeof(double) * H);
    double *v = (double *)malloc(sizeof(double) * I);
    for (j = 0; j < D; j++) in[j] = x[j];
    for (j = 0; j < D && c->input_emb_dim > 0; j++)
        dfn_sinusoidal_embedding(in + D + j * c->input_emb_dim, I, x + j, 1, c->input_scale, 1, c->input_emb_dim);
    dfn_sinusoidal_embedding(in + I - E, I, &tf, 1, 1.0f, 1, E);
    for (j = 0; j < I; j++) v[j] = in[j];
    if (c->num_classes > 0) {
        int row = label >= 0 ? label : c->num_classes;
        for (j = 0; j < E; j++) v[I - E + j] += P[l->cls + (size_t)row * E + j];
    }
    for (i = 0; i < H; i++) {
        double s = P[l->b_in + i];
        for (j = 0; j < I; j++) s += (double)P[l->w_in + (size_t)i * I + j] * v[j];
        h[i] = ref_act(c->act, s);
    }
    for (b = 0; b < c->blocks; b++) {
        const float *W = P + l->blk + (size_t)b * l->blk_stride, *bb = W + (size_t)H * H;
        for (i = 0; i < H; i++) {
            double s = bb[i];
            for (j = 0; j < H; j++) s += (double)W[(size_t)i * H + j] * h[j];
            p[i] = ref_act(c->act, s);
        }
        for (i = 0; i < H; i++) h[i] += p[i];
    }
    for (i = 0; i < D; i++) {
        double s = P[l->b_out + i];
        for (j = 0; j < H; j++) s += (double)P[l->w_out + (size_t)i * H + j] * h[j];
        out[i] = s;
    }
    free(in); free(h); free(p); free(v);
}

/* A small random MLP (conditional when classes > 0). */
static float *q_model(dfn_mlp *m, int dim, int classes, dfn_activation act)
{
    dfn_mlp_config c = dfn_mlp_config_default(dim);
    dfn_rng rng;
    float *P;
    c.hidden = 24; c.blocks = 2; c.time_dim = 16; c.input_emb_dim = dim <= 3 ? 8 : 0;
    c.num_classes = classes; c.act = act;
    P = (float *)malloc(dfn_mlp_num_params(&c) * sizeof(float));
    dfn_rng_seed(&rng, 5, (uint64_t)dim);
    dfn_mlp_init(m, &c, P);
    dfn_mlp_init_weights(m, &rng);
    return P;
}

typedef struct q_stored {
    dfn_qmlp q;
    dfn_qmlp_sizes sz;
    void *w;
    float *s, *f;
} q_stored;

static int q_store(q_stored *st, const dfn_mlp *m, dfn_weight_format f)
{
    if (dfn_qmlp_sizes_of(&m->cfg, f, &st->sz) != DFN_OK) return 0;
    st->w = malloc(st->sz.weight_bytes);
    st->s = (float *)malloc(sizeof(float) * (st->sz.scales + 1));
    st->f = (float *)malloc(sizeof(float) * st->sz.floats);
    return dfn_qmlp_quantize(m, f, st->w, st->s, st->f) == DFN_OK &&
           dfn_qmlp_init(&st->q, &m->cfg, f, st->w, st->s, st->f) == DFN_OK;
}

static void q_free(q_stored *st)
{
    free(st->w); free(st->s); free(st->f);
}

void test_quant_mlp_forward(void)
{
    static const dfn_weight_format fmts[3] = { DFN_WEIGHTS_F32, DFN_WEIGHTS_F16, DFN_WEIGHTS_I8 };
    int cfgs, k;
    for (cfgs = 0; cfgs < 3; cfgs++) {
        int dim = cfgs == 2 ? 5 : 2, classes = cfgs == 1 ? 3 : 0, n = 13, i, j;
        dfn_activation act = cfgs == 2 ? DFN_ACT_SILU : DFN_ACT_GELU;
        dfn_mlp m, dq;
        float *P = q_model(&m, dim, classes, act), *Pd = (float *)malloc(m.lay.count * sizeof(float));
        float *x = (float *)malloc(sizeof(float) * n * dim), *y = (float *)malloc(sizeof(float) * n * dim);
        float *yf = (float *)malloc(sizeof(float) * n * dim), *y1 = (float *)malloc(sizeof(float) * dim);
        int t[13], lab[13];
        dfn_rng rng;
        size_t fw = dfn_mlp_forward_size(&m.cfg, n), qw = dfn_qmlp_forward_size(&m.cfg, n);
        void *wf = malloc(fw), *wq = malloc(qw);
        dfn_rng_seed(&rng, 3, (uint64_t)cfgs);
        for (i = 0; i < n * dim; i++) x[i] = dfn_rng_normal(&rng);
        for (i = 0; i < n; i++) { t[i] = i < 6 ? 400 : 17 * i; lab[i] = classes ? i % (classes + 1) - 1 : -1; }
        dfn_mlp_forward(&m, yf, x, t, classes ? lab : NULL, n, wf, fw);
        dfn_mlp_init(&dq, &m.cfg, Pd);
        for (k = 0; k < 3; k++) {
            q_stored st;
            double worst = 0, worst_f = 0, scale = 0;
            int same = 1;
            const char *fname = k == 0 ? "f32" : k == 1 ? "f16" : "i8";
            CHECK(q_store(&st, &m, fmts[k]), "store %s", fname);
            CHECK(dfn_qmlp_forward(&st.q, y, x, t, classes ? lab : NULL, n, wq, qw) == DFN_OK, "forward");
            /* the double forward of the weights the stored form stands for */
            CHECK(dfn_qmlp_dequantize(&st.q, &dq) == DFN_OK, "dequantize");
            for (i = 0; i < n; i++) {
                double r[8];
                ref_forward(&m, Pd, x + i * dim, t[i], classes ? lab[i] : -1, r);
                for (j = 0; j < dim; j++) {
                    double e = fabs(y[i * dim + j] - r[j]), ef = fabs((double)y[i * dim + j] - yf[i * dim + j]);
                    if (e > worst) worst = e;
                    if (ef > worst_f) worst_f = ef;
                    if (fabs(r[j]) > scale) scale = fabs(r[j]);
                }
                /* one row alone gives the same bits */
                dfn_qmlp_forward(&st.q, y1, x + i * dim, t + i, classes ? lab + i : NULL, 1, wq, qw);
                same &= memcmp(y1, y + i * dim, sizeof(float) * dim) == 0;
            }
            CHECK(worst <= 1e-6 * (scale > 1 ? scale : 1), "%s config %d: %.3g from the double forward",
                  fname, cfgs, worst);
            CHECK(same, "%s config %d: a batch differs from rows alone", fname, cfgs);
            /* F32 is the float model; the small formats move it by what they round */
            if (fmts[k] == DFN_WEIGHTS_F32)
                CHECK(worst_f <= 1e-6 * (scale > 1 ? scale : 1), "f32 vs the float path: %.3g", worst_f);
            else
                CHECK(worst_f > 0 && worst_f < 0.05 * (scale > 1 ? scale : 1), "%s vs float: %.3g",
                      fname, worst_f);
            /* sizes: a quarter and a half of the float matrices */
            CHECK(st.sz.weight_bytes == st.sz.weights * (fmts[k] == DFN_WEIGHTS_I8 ? 1u : fmts[k] == DFN_WEIGHTS_F16 ? 2u : 4u),
                  "weight bytes");
            CHECK(st.sz.weights + st.sz.floats == m.lay.count, "every parameter stored once");
            q_free(&st);
        }
        free(P); free(Pd); free(x); free(y); free(yf); free(y1); free(wf); free(wq);
    }
}

void test_quant_mlp_refusals(void)
{
    dfn_mlp m;
    float *P = q_model(&m, 2, 0, DFN_ACT_GELU);
    q_stored st;
    dfn_qmlp_sizes sz;
    float x[2] = { 0.1f, 0.2f }, y[2];
    int t = 5, bad_t = -1;
    size_t qw = dfn_qmlp_forward_size(&m.cfg, 1);
    void *wq = malloc(qw);
    CHECK(q_store(&st, &m, DFN_WEIGHTS_I8), "store");
    CHECK(dfn_qmlp_forward(&st.q, y, x, &t, NULL, 1, wq, qw - 1) == DFN_ERR_BUFFER_TOO_SMALL, "small work");
    CHECK(dfn_qmlp_forward(&st.q, y, x, &bad_t, NULL, 1, wq, qw) == DFN_ERR_INVALID_ARG, "t < 0");
    CHECK(dfn_qmlp_forward(&st.q, NULL, x, &t, NULL, 1, wq, qw) == DFN_ERR_NULL, "NULL out");
    CHECK(dfn_qmlp_forward(&st.q, y, x, &t, NULL, 0, wq, qw) == DFN_OK, "n = 0");
    CHECK(dfn_qmlp_sizes_of(&m.cfg, (dfn_weight_format)7, &sz) == DFN_ERR_INVALID_ARG, "unknown format");
    CHECK(dfn_weight_format_name((dfn_weight_format)7) == NULL, "unknown name");
    CHECK(dfn_qmlp_init(&st.q, &m.cfg, DFN_WEIGHTS_I8, st.w, NULL, st.f) == DFN_ERR_NULL, "I8 without scales");
    /* a weight beyond the half range is refused, not stored as infinity */
    P[m.lay.w_in] = 70000.0f;
    CHECK(dfn_qmlp_quantize(&m, DFN_WEIGHTS_F16, st.w, NULL, st.f) == DFN_ERR_INVALID_ARG, "f16 overflow");
    CHECK(dfn_qmlp_quantize(&m, DFN_WEIGHTS_I8, st.w, st.s, st.f) == DFN_OK, "i8 takes it");
    P[m.lay.w_in] = (float)NAN;
    CHECK(dfn_qmlp_quantize(&m, DFN_WEIGHTS_F32, st.w, NULL, st.f) == DFN_ERR_INVALID_ARG, "NaN");
    q_free(&st);
    free(P); free(wq);
}

/* ------------------------------------------------------------------------- */
/*  Respacing                                                                */
/* ------------------------------------------------------------------------- */

/* Samples of `kind` with S steps of `spacing` on the full schedule, and the
   same run on the respaced schedule (every step, trailing); the largest
   difference. */
static double respace_diff(dfn_sampler_kind kind, dfn_spacing spacing, int S, dfn_schedule_kind sk)
{
    static const float wts[2] = { 1, 1 }, means[4] = { -1, 0.5f, 1, -0.5f }, stds[2] = { 0.1f, 0.2f };
    dfn_gmm g;
    dfn_gmm_predictor gp;
    dfn_respaced_predictor rp;
    dfn_schedule full, sub;
    dfn_schedule_config sc = dfn_schedule_config_default(sk, 1000), rc;
    dfn_sampler_config cfg;
    dfn_sampler a, b;
    dfn_rng r1, r2;
    enum { N = 64 };
    float xa[N * 2], xb[N * 2], betas[64];
    int tbuf[N], i;
    double worst = -1;
    g.k = 2; g.dim = 2; g.weights = wts; g.means = means; g.stds = stds;
    dfn_schedule_alloc(&full, &sc, NULL);
    gp.gmm = &g; gp.schedule = &full;
    cfg = dfn_sampler_config_default(kind, N, 2, dfn_gmm_predict, &gp);
    cfg.steps = S; cfg.spacing = spacing;
    if (dfn_sampler_alloc(&a, &cfg, &full, NULL) != DFN_OK) return -1;
    if (dfn_schedule_respace(&full, a.tau, a.steps, betas) == DFN_OK) {
        rc = dfn_schedule_config_default(DFN_SCHEDULE_CUSTOM, a.steps);
        rc.betas = betas;
        if (dfn_schedule_alloc(&sub, &rc, NULL) == DFN_OK) {
            rp.predict = dfn_gmm_predict; rp.user = &gp; rp.tau = a.tau; rp.S = a.steps; rp.t_buf = tbuf; rp.n = N;
            cfg.predict = dfn_respaced_predict; cfg.predict_user = &rp;
            cfg.steps = a.steps; cfg.spacing = DFN_SPACING_TRAILING;
            if (dfn_sampler_alloc(&b, &cfg, &sub, NULL) == DFN_OK) {
                dfn_rng_seed(&r1, 4, 4);
                dfn_rng_seed(&r2, 4, 4);
                if (dfn_sampler_run(&a, xa, NULL, &r1) == DFN_OK && dfn_sampler_run(&b, xb, NULL, &r2) == DFN_OK) {
                    worst = 0;
                    for (i = 0; i < N * 2; i++)
                        if (fabs((double)xa[i] - xb[i]) > worst) worst = fabs((double)xa[i] - xb[i]);
                }
                dfn_sampler_free(&b, NULL);
            }
            dfn_schedule_free(&sub, NULL);
        }
    }
    dfn_sampler_free(&a, NULL);
    dfn_schedule_free(&full, NULL);
    return worst;
}

void test_quant_respace(void)
{
    double d;
    /* the same alphabars at the same timesteps: the samples agree to the
       rounding of alphabar' (a product of S floats) */
    d = respace_diff(DFN_SAMPLER_DPMPP_2M, DFN_SPACING_LOGSNR, 20, DFN_SCHEDULE_COSINE);
    CHECK(d >= 0 && d < 1e-4, "DPM-Solver++(2M), logSNR 20, cosine: %.3g", d);
    d = respace_diff(DFN_SAMPLER_DDIM, DFN_SPACING_TRAILING, 10, DFN_SCHEDULE_LINEAR);
    CHECK(d >= 0 && d < 1e-4, "DDIM trailing 10, linear: %.3g", d);
    d = respace_diff(DFN_SAMPLER_DPMPP_3M, DFN_SPACING_KARRAS, 15, DFN_SCHEDULE_COSINE);
    CHECK(d >= 0 && d < 1e-4, "DPM-Solver++(3M), Karras 15: %.3g", d);
    {
        dfn_schedule full;
        dfn_schedule_config sc = dfn_schedule_config_default(DFN_SCHEDULE_COSINE, 100);
        int tau[4] = { 0, 10, 10, 90 }, tau_ok[3] = { 0, 50, 100 }, tau_far[3] = { 0, 50, 101 };
        float betas[3];
        dfn_schedule_alloc(&full, &sc, NULL);
        CHECK(dfn_schedule_respace(&full, tau, 3, betas) == DFN_ERR_INVALID_ARG, "not increasing");
        CHECK(dfn_schedule_respace(&full, tau_far, 2, betas) == DFN_ERR_INVALID_ARG, "past T");
        CHECK(dfn_schedule_respace(&full, tau_ok, 0, betas) == DFN_ERR_INVALID_ARG, "S = 0");
        CHECK(dfn_schedule_respace(&full, tau_ok, 2, NULL) == DFN_ERR_NULL, "NULL");
        CHECK(dfn_schedule_respace(&full, tau_ok, 2, betas) == DFN_OK, "valid");
        /* beta'_1 = 1 - alphabar_50 exactly as the definition, in double */
        CHECK(fabs(betas[0] - (1.0 - (double)full.alphabar[50])) < 1e-7, "beta'_1");
        dfn_schedule_free(&full, NULL);
        sc.zero_terminal_snr = 1;
        dfn_schedule_alloc(&full, &sc, NULL);
        CHECK(dfn_schedule_respace(&full, tau_ok, 2, betas) == DFN_ERR_INVALID_ARG, "zero terminal SNR");
        dfn_schedule_free(&full, NULL);
    }
}
