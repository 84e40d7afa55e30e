/* interop: diffusion.h's half of the parity tests with PyTorch (make
   test-interop; tools/torch/interop.py is the other half).

     build/interop export --net mlp|unet --steps N --out DIR
         trains the network here N steps, writes DIR/model.safetensors
         (weights and EMA) and DIR/check.safetensors: inputs x, t (and
         labels), this build's predictions pred on them, starting noise x_T
         and the DDIM samples ddim from it (the weights, not the EMA)
     build/interop check DIR
         loads DIR/model.safetensors (from PyTorch) and DIR/check.safetensors
         (PyTorch's numbers, same names), computes the same here and
         compares: max |diff| / max |PyTorch| within 1e-5 for pred and 1e-4
         for the DDIM samples
     build/interop sample FILE
         loads a model (from torchrun's DDP training), samples 1,000 points
         (DDIM-50, the trained weights), checks that they are finite and
         prints their energy distance to fresh data next to N(0, I)'s (MLP
         on 8gaussians)
     build/interop diffusers CONFIG REF
         reads a scheduler_config.json with the library and compares its
         tables and timesteps with REF, the JSON tools/torch/diffusers_ref.py
         wrote from diffusers' formulas with numpy: betas and
         alphas_cumprod within 1e-7 relative, the same timesteps
   Exit status 0 when every figure is within its limit. */
#define DIFFUSION_IMPLEMENTATION
#include "diffusion.h"
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MLP_N 1000
#define MLP_M 1000
#define UNET_N 16
#define DDIM_STEPS 50

static void die(const char *what, dfn_result r, const dfn_error_detail *d)
{
    fprintf(stderr, "interop: %s: %s", what, dfn_result_string(r));
    if (d && d->what[0]) fprintf(stderr, " (%s: %s)", d->what, d->why);
    fprintf(stderr, "\n");
    exit(1);
}

static void need(dfn_result r, const char *what)
{
    if (r != DFN_OK) die(what, r, NULL);
}

/* The small U-Net of the tests (tools/torch/interop.py has the same). */
static dfn_unet_config small_unet(void)
{
    dfn_unet_config c = dfn_unet_config_default(1, 8, 8);
    c.base_channels = 8; c.levels = 2; c.mult[0] = 1; c.mult[1] = 2; c.blocks = 1;
    c.attention[0] = 0; c.attention[1] = 1; c.mid_attention = 1; c.groups = 4; c.time_dim = 32;
    c.num_classes = 3;
    return c;
}

/* Synthetic 8x8 images of class c: a bright square in a corner given by c. */
static void unet_images(dfn_rng *rng, float *x, int *labels, int n)
{
    int i, y, k;
    for (i = 0; i < n; i++) {
        int c = (int)(dfn_rng_uniform(rng) * 3.0f) % 3, oy = c == 1 ? 4 : 0, ox = c == 2 ? 4 : 0;
        labels[i] = c;
        for (y = 0; y < 8; y++)
            for (k = 0; k < 8; k++)
                x[i * 64 + y * 8 + k] = (y >= oy && y < oy + 4 && k >= ox && k < ox + 4 ? 0.8f : -0.8f) +
                                         0.05f * dfn_rng_normal(rng);
    }
}

/* DDIM-50 (trailing, eta 0) of x (n rows) in place with the network's weights. */
static void ddim(const dfn_net *net, const dfn_schedule *s, float *x, const int *labels, int n)
{
    dfn_net_predictor p;
    dfn_sampler_config sc;
    dfn_sampler smp;
    memset(&p, 0, sizeof p);
    p.net = net;
    p.work_bytes = dfn_net_forward_size(net, 64);
    p.work = malloc(p.work_bytes);
    sc = dfn_net_sampler_config(DFN_SAMPLER_DDIM, n, &p);
    sc.steps = DDIM_STEPS;
    sc.labels = labels;
    need(dfn_sampler_alloc(&smp, &sc, s, NULL), "sampler");
    need(dfn_sampler_run(&smp, x, x, NULL), "DDIM");
    dfn_sampler_free(&smp, NULL);
    free(p.work);
}

static void forward(const dfn_net *net, float *out, const float *x, const int *t, const int *labels, int n)
{
    size_t wb = dfn_net_forward_size(net, 64);
    void *w = malloc(wb);
    need(dfn_net_forward(net, out, x, NULL, 0, t, labels, n, w, wb), "forward");
    free(w);
}

static char *path_in(const char *dir, const char *name)
{
    static char buf[2][4096];
    static int k;
    k ^= 1;
    snprintf(buf[k], sizeof buf[k], "%s/%s", dir, name);
    return buf[k];
}

/* ------------------------------------------------------------------ export */

static int cmd_export(const char *net_name, int steps, const char *dir)
{
    int is_unet = strcmp(net_name, "unet") == 0, dim, N = is_unet ? UNET_N : MLP_N, M = is_unet ? UNET_N : MLP_M;
    dfn_schedule_config scfg = dfn_schedule_config_default(DFN_SCHEDULE_LINEAR, 1000);
    dfn_train_config tc = dfn_train_config_default();
    dfn_schedule s;
    dfn_mlp_config mc = dfn_mlp_config_default(2);
    dfn_unet_config uc = small_unet();
    dfn_mlp m;
    dfn_unet u;
    dfn_net net;
    dfn_trainer tr;
    dfn_rng rng;
    float *p, *x0, *x, *tf, *lf, *pred, *xT, *xs;
    int *t, *labels, i, k;
    size_t P;
    dfn_st_out outs[6];
    dfn_st_meta meta;
    unsigned char *img;
    size_t len, got;
    need(dfn_schedule_alloc(&s, &scfg, NULL), "schedule");
    dfn_rng_seed(&rng, 2024, 0);
    memset(&m, 0, sizeof m);
    memset(&u, 0, sizeof u);
    if (is_unet) {
        P = dfn_unet_num_params(&uc);
        p = (float *)malloc(P * sizeof(float));
        need(dfn_unet_init(&u, &uc, p), "unet");
        need(dfn_unet_init_weights(&u, &rng), "init");
        net = dfn_unet_net(&u);
        dim = 64;
        tc.batch = 32;
    } else {
        P = dfn_mlp_num_params(&mc);
        p = (float *)malloc(P * sizeof(float));
        need(dfn_mlp_init(&m, &mc, p), "mlp");
        need(dfn_mlp_init_weights(&m, &rng), "init");
        net = dfn_mlp_net(&m);
        dim = 2;
        tc.batch = 256;
    }
    need(dfn_trainer_alloc_net(&tr, &net, &s, &tc, NULL), "trainer");
    x0 = (float *)malloc((size_t)tc.batch * dim * sizeof(float));
    labels = (int *)malloc((size_t)(tc.batch > N ? tc.batch : N) * sizeof(int));
    for (k = 0; k < steps; k++) {
        float loss;
        if (is_unet) unet_images(&rng, x0, labels, tc.batch);
        else need(dfn_data2d_sample(DFN_DATA2D_GAUSSIANS8, &rng, x0, tc.batch), "data");
        need(dfn_train_step(&tr, x0, is_unet ? labels : NULL, &rng, &loss), "train step");
        if ((k + 1) % 50 == 0) printf("interop export %s: step %d, loss %.4f\n", net_name, k + 1, loss);
    }
    /* inputs of varied scale and t, and the samples */
    x = (float *)malloc((size_t)N * dim * sizeof(float));
    t = (int *)malloc((size_t)N * sizeof(int));
    tf = (float *)malloc((size_t)N * sizeof(float));
    lf = (float *)malloc((size_t)N * sizeof(float));
    pred = (float *)malloc((size_t)N * dim * sizeof(float));
    xT = (float *)malloc((size_t)M * dim * sizeof(float));
    xs = (float *)malloc((size_t)M * dim * sizeof(float));
    for (i = 0; i < N; i++) {
        float scale = 0.1f + 3.0f * (float)(i % 10) / 9.0f;
        for (k = 0; k < dim; k++) x[i * dim + k] = scale * dfn_rng_normal(&rng);
        t[i] = 1 + (int)((997u * (unsigned)i + 13u) % 1000u);
        tf[i] = (float)t[i];
        labels[i] = is_unet ? (int)(i % 4) - 1 : -1;
        lf[i] = (float)labels[i];
    }
    forward(&net, pred, x, t, is_unet ? labels : NULL, N);
    dfn_rng_normal_fill(&rng, xT, (size_t)M * dim);
    memcpy(xs, xT, (size_t)M * dim * sizeof(float));
    ddim(&net, &s, xs, is_unet ? labels : NULL, M);
    need(dfn_model_save_safetensors(path_in(dir, "model.safetensors"), &net, &s, tr.ema), "save model");
    k = 0;
#define OUT(nm, ptr, rows, cols) do { outs[k].name = nm; outs[k].data = ptr; outs[k].shape[0] = (uint64_t)(rows); \
        if (cols) { outs[k].ndim = is_unet ? 4 : 2; if (is_unet) { outs[k].shape[1] = 8; outs[k].shape[2] = 8; \
        outs[k].shape[3] = 1; } else outs[k].shape[1] = (uint64_t)(cols); } else outs[k].ndim = 1; k++; } while (0)
    OUT("x", x, N, dim);
    OUT("t", tf, N, 0);
    OUT("pred", pred, N, dim);
    OUT("x_T", xT, M, dim);
    OUT("ddim", xs, M, dim);
    if (is_unet) OUT("labels", lf, N, 0);
#undef OUT
    meta.key = "steps";
    meta.value = "50";
    len = dfn_st_write_size(outs, k, &meta, 1);
    img = (unsigned char *)malloc(len);
    need(dfn_st_write_mem(img, len, &got, outs, k, &meta, 1), "write check");
    need(dfn_file_write_all(path_in(dir, "check.safetensors"), img, got), "write check file");
    printf("interop export %s: %zu parameters trained %d steps here -> %s, %s\n", net_name, P, steps,
           path_in(dir, "model.safetensors"), path_in(dir, "check.safetensors"));
    free(img); free(x); free(t); free(tf); free(lf); free(pred); free(xT); free(xs); free(x0); free(labels);
    dfn_trainer_free(&tr, NULL);
    free(p);
    dfn_schedule_free(&s, NULL);
    return 0;
}

/* ------------------------------------------------------------------- check */

typedef struct check_file {
    unsigned char *data;
    void *mem;
    dfn_safetensors st;
} check_file;

static void open_check(const char *path, check_file *cf)
{
    size_t len, bytes;
    need(dfn_file_read_all(path, NULL, &cf->data, &len), path);
    need(dfn_st_parse_size(cf->data, len, NULL, &bytes), path);
    cf->mem = malloc(bytes);
    need(dfn_st_parse(&cf->st, cf->data, len, NULL, cf->mem, bytes), path);
}

static float *tensor(const check_file *cf, const char *name, size_t *n)
{
    const dfn_st_tensor *t = dfn_st_find(&cf->st, name);
    float *v;
    if (!t) { fprintf(stderr, "interop: the check file has no tensor %s\n", name); exit(1); }
    *n = (size_t)t->count;
    v = (float *)malloc(*n * sizeof(float) + 1);
    need(dfn_st_read_floats(t, v, *n), name);
    return v;
}

/* max |a - b| and that over max |b|. */
static double compare(const float *a, const float *b, size_t n, double *maxdiff)
{
    double d = 0.0, m = 0.0;
    size_t i;
    for (i = 0; i < n; i++) {
        double e = fabs((double)a[i] - (double)b[i]);
        if (!(e <= d)) d = e;              /* NaN counts */
        if (fabs(b[i]) > m) m = fabs(b[i]);
    }
    *maxdiff = d;
    return m > 0.0 ? d / m : d;
}

static int cmd_check(const char *dir)
{
    dfn_loaded_model lm;
    dfn_error_detail d;
    check_file cf;
    size_t nx, nt, np, nxt, nd, nl = 0, i;
    float *x, *tf, *ref_pred, *xT, *ref_ddim, *lf = NULL, *pred, *xs;
    int *t, *labels = NULL, n, m, dim, rc = 0;
    double rp, rd, dp, dd;
    dfn_result r = dfn_model_load_safetensors(path_in(dir, "model.safetensors"), NULL, NULL, &lm, &d);
    if (r != DFN_OK) die(path_in(dir, "model.safetensors"), r, &d);
    open_check(path_in(dir, "check.safetensors"), &cf);
    x = tensor(&cf, "x", &nx);
    tf = tensor(&cf, "t", &nt);
    ref_pred = tensor(&cf, "pred", &np);
    xT = tensor(&cf, "x_T", &nxt);
    ref_ddim = tensor(&cf, "ddim", &nd);
    if (dfn_st_find(&cf.st, "labels")) lf = tensor(&cf, "labels", &nl);
    n = (int)nt;
    dim = (int)(nx / nt);
    m = (int)(nxt / (size_t)dim);
    t = (int *)malloc(nt * sizeof(int));
    for (i = 0; i < nt; i++) t[i] = (int)tf[i];
    if (lf) {
        labels = (int *)malloc(nl * sizeof(int));
        for (i = 0; i < nl; i++) labels[i] = (int)lf[i];
    }
    pred = (float *)malloc(np * sizeof(float));
    xs = (float *)malloc(nxt * sizeof(float));
    forward(&lm.net, pred, x, t, labels, n);
    memcpy(xs, xT, nxt * sizeof(float));
    ddim(&lm.net, &lm.schedule, xs, labels, m);
    rp = compare(pred, ref_pred, np, &dp);
    rd = compare(xs, ref_ddim, nd, &dd);
    printf("interop check %s (%s, %zu parameters, from PyTorch):\n", dir, lm.info.net == DFN_NET_MLP ? "MLP" : "U-Net",
           lm.net.count);
    printf("  predictions on %d inputs: max |diffusion.h - PyTorch| = %.3g, relative %.3g (limit 1e-5)%s\n", n, dp, rp,
           rp <= 1e-5 ? "" : "  FAIL");
    printf("  DDIM-%d samples from the same x_T (%d): max |diff| = %.3g, relative %.3g (limit 1e-4)%s\n", DDIM_STEPS, m,
           dd, rd, rd <= 1e-4 ? "" : "  FAIL");
    if (!(rp <= 1e-5) || !(rd <= 1e-4)) rc = 1;
    free(x); free(tf); free(ref_pred); free(xT); free(ref_ddim); free(lf); free(t); free(labels); free(pred); free(xs);
    free(cf.mem);
    dfn_file_free(cf.data, NULL);
    dfn_model_free(&lm, NULL);
    return rc;
}

/* ------------------------------------------------------------------ sample */

/* Energy distance (MATH.md section 10) between a (n) and b (m) 2D points. */
static double energy(const float *a, int n, const float *b, int m)
{
    double ab = 0, aa = 0, bb = 0;
    int i, j;
    for (i = 0; i < n; i++)
        for (j = 0; j < m; j++) ab += hypot(a[2 * i] - b[2 * j], a[2 * i + 1] - b[2 * j + 1]);
    for (i = 0; i < n; i++)
        for (j = 0; j < n; j++) aa += hypot(a[2 * i] - a[2 * j], a[2 * i + 1] - a[2 * j + 1]);
    for (i = 0; i < m; i++)
        for (j = 0; j < m; j++) bb += hypot(b[2 * i] - b[2 * j], b[2 * i + 1] - b[2 * j + 1]);
    return 2 * ab / ((double)n * m) - aa / ((double)n * n) - bb / ((double)m * m);
}

static int cmd_sample(const char *path)
{
    dfn_loaded_model lm;
    dfn_error_detail d;
    dfn_rng rng;
    float x[2 * 1000], data[2 * 1000], noise[2 * 1000];
    int i, ok = 1;
    double e_model, e_noise;
    dfn_result r = dfn_model_load_safetensors(path, NULL, NULL, &lm, &d);
    if (r != DFN_OK) die(path, r, &d);
    if (lm.info.net != DFN_NET_MLP || lm.info.mlp.dim != 2) {
        fprintf(stderr, "interop sample: %s is not a 2D MLP\n", path);
        return 1;
    }
    dfn_rng_seed(&rng, 7, 0);
    dfn_rng_normal_fill(&rng, x, 2000);
    memcpy(noise, x, sizeof noise);
    ddim(&lm.net, &lm.schedule, x, NULL, 1000);
    for (i = 0; i < 2000; i++) ok &= x[i] - x[i] == 0.0f;
    need(dfn_data2d_sample(DFN_DATA2D_GAUSSIANS8, &rng, data, 1000), "data");
    e_model = energy(x, 1000, data, 1000);
    e_noise = energy(noise, 1000, data, 1000);
    printf("interop sample %s: MLP trained by PyTorch (its weights; the EMA of a short run is still mostly the "
           "initial ones), DDIM-%d on 1000 points: %s; energy distance to fresh 8gaussians data %.4f (N(0, I) "
           "gives %.4f)\n", path, DDIM_STEPS,
           ok ? "finite" : "NOT FINITE", e_model, e_noise);
    dfn_model_free(&lm, NULL);
    return ok ? 0 : 1;
}

/* --------------------------------------------------------------- diffusers */

/* The numbers of the JSON array after "key": in text (n of them, at most cap). */
static int json_array(const char *text, const char *key, double *v, int cap)
{
    char pat[64];
    const char *p;
    int n = 0;
    snprintf(pat, sizeof pat, "\"%s\"", key);
    p = strstr(text, pat);
    if (!p) return -1;
    p = strchr(p + strlen(pat), '[');
    if (!p) return -1;
    p++;
    for (;;) {
        char *e;
        double x;
        while (*p == ' ' || *p == '\n' || *p == ',' || *p == '\r' || *p == '\t') p++;
        if (*p == ']') break;
        x = strtod(p, &e);
        if (e == p || n >= cap) return -1;
        v[n++] = x;
        p = e;
    }
    return n;
}

static int cmd_diffusers(const char *config_path, const char *ref_path)
{
    unsigned char *cfg, *ref;
    size_t clen, rlen;
    dfn_diffusers_config dc;
    dfn_error_detail d;
    dfn_schedule s;
    static float betas[DFN_MAX_T];
    static double rb[DFN_MAX_T], ra[DFN_MAX_T], rt[DFN_MAX_T];
    static int ts[DFN_MAX_T];
    static const int steps[] = { 1, 2, 3, 5, 7, 10, 16, 20, 25, 50, 100, 250 };
    double wb = 0, wa = 0;
    int T, i, k, nb, na, bad_steps = 0, checked = 0, rc = 0;
    dfn_result r;
    need(dfn_file_read_all(config_path, NULL, &cfg, &clen), config_path);
    need(dfn_file_read_all(ref_path, NULL, &ref, &rlen), ref_path);
    r = dfn_diffusers_config_read((const char *)cfg, clen, &dc, betas, DFN_MAX_T, &d);
    if (r != DFN_OK) die(config_path, r, &d);
    need(dfn_schedule_alloc(&s, &dc.schedule, NULL), "schedule");
    T = s.T;
    nb = json_array((const char *)ref, "betas", rb, DFN_MAX_T);
    na = json_array((const char *)ref, "alphas_cumprod", ra, DFN_MAX_T);
    if (nb != T || na != T) {
        fprintf(stderr, "interop diffusers: %s has %d betas and %d alphas_cumprod for T = %d\n", ref_path, nb, na, T);
        return 1;
    }
    for (i = 0; i < T; i++) {
        double eb = fabs(s.beta[i + 1] - rb[i]) / rb[i];
        double ea = ra[i] > 1e-30 ? fabs(s.alphabar[i + 1] - ra[i]) / ra[i] : fabs(s.alphabar[i + 1] - ra[i]);
        if (!(eb <= wb)) wb = eb;
        if (!(ea <= wa)) wa = ea;
    }
    for (k = 0; k < (int)(sizeof steps / sizeof steps[0]); k++) {
        char key[32];
        int S = steps[k], nt;
        if (S > T) continue;
        snprintf(key, sizeof key, "%d", S);
        nt = json_array((const char *)ref, key, rt, DFN_MAX_T);
        if (nt < 0) continue;
        checked++;
        r = dfn_diffusers_timesteps(&dc, S, ts);
        if (r != DFN_OK) {
            /* the library refuses a list it cannot run: diffusers' must then hold such a step */
            int outside = 0;
            for (i = 0; i < nt; i++)
                if (rt[i] + 1 < 1 || rt[i] + 1 > T || (i > 0 && rt[i] >= rt[i - 1])) outside = 1;
            if (!outside) { bad_steps++; printf("  S = %d: refused, diffusers' list is runnable\n", S); }
            continue;
        }
        for (i = 0; i < S; i++)
            if (nt != S || ts[i] != (int)rt[i] + 1) { bad_steps++; printf("  S = %d: step %d is %d, diffusers' %d + 1\n",
                                                                 S, i, ts[i], i < nt ? (int)rt[i] : -1); break; }
    }
    printf("interop diffusers %s: T %d, %s: betas within %.2g, alphas_cumprod within %.2g relative of diffusers' "
           "formulas (limit 1e-7); timesteps the same for %d of %d step counts\n", config_path, T,
           dfn_schedule_kind_name(dc.schedule.kind), wb, wa, checked - bad_steps, checked);
    if (!(wb <= 1e-7) || !(wa <= 1e-7) || bad_steps || checked == 0) rc = 1;
    dfn_schedule_free(&s, NULL);
    dfn_file_free(cfg, NULL);
    dfn_file_free(ref, NULL);
    return rc;
}

int main(int argc, char **argv)
{
    if (argc >= 2 && strcmp(argv[1], "export") == 0) {
        const char *net = "mlp", *out = ".";
        int steps = 200, i;
        for (i = 2; i + 1 < argc; i += 2) {
            if (strcmp(argv[i], "--net") == 0) net = argv[i + 1];
            else if (strcmp(argv[i], "--steps") == 0) steps = atoi(argv[i + 1]);
            else if (strcmp(argv[i], "--out") == 0) out = argv[i + 1];
        }
        return cmd_export(net, steps, out);
    }
    if (argc == 3 && strcmp(argv[1], "check") == 0) return cmd_check(argv[2]);
    if (argc == 3 && strcmp(argv[1], "sample") == 0) return cmd_sample(argv[2]);
    if (argc == 4 && strcmp(argv[1], "diffusers") == 0) return cmd_diffusers(argv[2], argv[3]);
    fprintf(stderr, "usage: interop export --net mlp|unet --steps N --out DIR | check DIR | sample FILE |\n"
                    "       diffusers CONFIG REF\n");
    return 2;
}
