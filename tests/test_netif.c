/* The network interface, from outside the library: a two-layer network
   defined here with its own dfn_net_ops (nothing of the library's internals)
   trains, saves, loads and samples through the library's trainer, model
   files and samplers. Its gradient is checked by finite differences through
   dfn_trainer_loss_grad, so the trainer's plumbing for a network it does not
   know is checked too. */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "harness.h"
#include "../diffusion.h"

/* eps(x, t) = W2 tanh(W1 [x, t / 100] + b1) + b2, for data of dim D. */
typedef struct two_cfg {
    int dim, hidden;
} two_cfg;

#define TWO_KIND (DFN_NET_USER + 7)

/* The time input. */
static float two_time(int t)
{
    return (float)t / 100.0f;
}

/* The weights: W1 (H, D + 1), b1 (H), W2 (D, H), b2 (D). */
static size_t two_params(const two_cfg *c)
{
    return (size_t)c->hidden * (c->dim + 1) + c->hidden + (size_t)c->dim * c->hidden + c->dim;
}

static dfn_result two_describe(const void *cfg, dfn_net_shape *s)
{
    const two_cfg *c = (const two_cfg *)cfg;
    if (c->dim < 1 || c->dim > 64 || c->hidden < 1 || c->hidden > 1024) return DFN_ERR_INVALID_ARG;
    s->params = two_params(c);
    s->dim = c->dim;
    s->cond_dim = 0;
    s->num_classes = 0;
    s->prediction = DFN_PREDICT_EPS;
    return DFN_OK;
}

static void two_init_weights(const dfn_net *net, dfn_rng *rng)
{
    const two_cfg *c = (const two_cfg *)net->cfg;
    size_t i, n1 = (size_t)c->hidden * (c->dim + 1) + c->hidden;
    for (i = 0; i < net->count; i++) {
        float bound = i < n1 ? 1.0f / sqrtf((float)(c->dim + 1)) : 1.0f / sqrtf((float)c->hidden);
        net->params[i] = (2.0f * dfn_rng_uniform(rng) - 1.0f) * bound;
    }
}

/* One sample: h (H) = tanh(pre), out (D). */
static void two_row(const two_cfg *c, const float *P, const float *x, int t, float *h, float *out)
{
    int D = c->dim, H = c->hidden, I = D + 1, j, k;
    const float *W1 = P, *b1 = W1 + (size_t)H * I, *W2 = b1 + H, *b2 = W2 + (size_t)D * H;
    for (j = 0; j < H; j++) {
        float a = b1[j] + W1[(size_t)j * I + D] * two_time(t);
        for (k = 0; k < D; k++) a += W1[(size_t)j * I + k] * x[k];
        h[j] = tanhf(a);
    }
    for (k = 0; k < D; k++) {
        float a = b2[k];
        for (j = 0; j < H; j++) a += W2[(size_t)k * H + j] * h[j];
        out[k] = a;
    }
}

static size_t two_forward_size(const void *cfg, int chunk)
{
    (void)chunk;
    return (size_t)((const two_cfg *)cfg)->hidden * sizeof(float);
}

static dfn_result two_forward(const dfn_net *net, float *out, const float *x, const float *cond, int cond_rows,
                              const int *t, const int *labels, int n, void *work, size_t work_bytes)
{
    const two_cfg *c = (const two_cfg *)net->cfg;
    int i;
    (void)cond; (void)cond_rows; (void)labels;
    if (work_bytes < two_forward_size(c, 1)) return DFN_ERR_BUFFER_TOO_SMALL;
    for (i = 0; i < n; i++)
        two_row(c, net->params, x + (size_t)i * c->dim, t[i], (float *)work, out + (size_t)i * c->dim);
    return DFN_OK;
}

/* Training memory: the inputs and hidden values of the batch. */
static size_t two_train_size(const void *cfg, int batch)
{
    const two_cfg *c = (const two_cfg *)cfg;
    return (size_t)batch * (c->dim + 1 + c->hidden) * sizeof(float);
}

static void two_train_bind(const void *cfg, int batch, void *mem)
{
    (void)cfg; (void)batch; (void)mem;            /* the layout is fixed */
}

static void two_train_forward(const dfn_net *net, void *mem, int batch, float *out, const float *x,
                              const float *cond, const int *t, const int *labels)
{
    const two_cfg *c = (const two_cfg *)net->cfg;
    float *in = (float *)mem, *h = in + (size_t)batch * (c->dim + 1);
    int i;
    (void)cond; (void)labels;
    for (i = 0; i < batch; i++) {
        memcpy(in + (size_t)i * (c->dim + 1), x + (size_t)i * c->dim, (size_t)c->dim * sizeof(float));
        in[(size_t)i * (c->dim + 1) + c->dim] = two_time(t[i]);
        two_row(c, net->params, x + (size_t)i * c->dim, t[i], h + (size_t)i * c->hidden, out + (size_t)i * c->dim);
    }
}

static void two_train_backward(const dfn_net *net, void *mem, int batch, float *G, const float *dout,
                               const int *labels)
{
    const two_cfg *c = (const two_cfg *)net->cfg;
    int D = c->dim, H = c->hidden, I = D + 1, i, j, k;
    const float *in = (const float *)mem, *h = in + (size_t)batch * I, *W2 = net->params + (size_t)H * I + H;
    float *gW1 = G, *gb1 = gW1 + (size_t)H * I, *gW2 = gb1 + H, *gb2 = gW2 + (size_t)D * H;
    (void)labels;
    for (i = 0; i < batch; i++) {
        const float *hi = h + (size_t)i * H, *di = dout + (size_t)i * D, *xi = in + (size_t)i * I;
        for (k = 0; k < D; k++) {
            gb2[k] += di[k];
            for (j = 0; j < H; j++) gW2[(size_t)k * H + j] += di[k] * hi[j];
        }
        for (j = 0; j < H; j++) {
            float dh = 0.0f, dpre;
            for (k = 0; k < D; k++) dh += di[k] * W2[(size_t)k * H + j];
            dpre = dh * (1.0f - hi[j] * hi[j]);
            gb1[j] += dpre;
            for (k = 0; k < I; k++) gW1[(size_t)j * I + k] += dpre * xi[k];
        }
    }
}

/* Stored as two little-endian u32. */
static size_t two_config_save(const void *cfg, unsigned char *buf)
{
    const two_cfg *c = (const two_cfg *)cfg;
    uint32_t v[2];
    int i, b;
    v[0] = (uint32_t)c->dim;
    v[1] = (uint32_t)c->hidden;
    if (buf)
        for (i = 0; i < 2; i++)
            for (b = 0; b < 4; b++) buf[4 * i + b] = (unsigned char)(v[i] >> (8 * b));
    return 8;
}

static dfn_result two_config_load(void *cfg, const unsigned char *buf, size_t len)
{
    two_cfg *c = (two_cfg *)cfg;
    uint32_t v[2] = { 0, 0 };
    int i, b;
    if (len != 8) return DFN_ERR_FORMAT;
    for (i = 0; i < 2; i++)
        for (b = 0; b < 4; b++) v[i] |= (uint32_t)buf[4 * i + b] << (8 * b);
    if (v[0] > 64 || v[1] > 1024) return DFN_ERR_FORMAT;
    c->dim = (int)v[0];
    c->hidden = (int)v[1];
    return DFN_OK;
}

static int two_config_same(const void *a, const void *b)
{
    const two_cfg *x = (const two_cfg *)a, *y = (const two_cfg *)b;
    return x->dim == y->dim && x->hidden == y->hidden;
}

static const dfn_net_ops two_ops = {
    TWO_KIND, "two-layer", sizeof(two_cfg), two_describe, two_init_weights, two_forward_size, two_forward,
    two_train_size, two_train_bind, two_train_forward, two_train_backward,
    two_config_save, two_config_load, two_config_same, 0, NULL
};

/* loss(params) through the trainer at fixed t and eps (for the gradient check). */
typedef struct two_loss_case {
    dfn_trainer *tr;
    const float *x0, *eps;
    const int *t;
} two_loss_case;

static double two_loss(void *user, const float *p)
{
    two_loss_case *lc = (two_loss_case *)user;
    float loss = 0.0f;
    (void)p;                       /* p is tr->net.params, changed in place by the checker */
    dfn_trainer_loss_grad(lc->tr, lc->x0, NULL, lc->t, lc->eps, &loss);
    return (double)loss;
}

static void two_samples(const dfn_net *net, const dfn_schedule *s, float *x, int n)
{
    dfn_net_predictor p;
    dfn_sampler_config cfg;
    dfn_sampler smp;
    dfn_rng rng;
    p.net = net;
    p.cond = NULL;
    p.cond_rows = 0;
    p.work_bytes = dfn_net_forward_size(net, n);
    p.work = malloc(p.work_bytes);
    cfg = dfn_net_sampler_config(DFN_SAMPLER_DDIM, n, &p);
    cfg.steps = 20;
    dfn_rng_seed(&rng, 31, 0);
    CHECK(cfg.dim == 1 && dfn_sampler_alloc(&smp, &cfg, s, NULL) == DFN_OK, "sampler");
    CHECK(dfn_sampler_run(&smp, x, NULL, &rng) == DFN_OK, "sampling");
    dfn_sampler_free(&smp, NULL);
    free(p.work);
}

void test_netif_third_network_trains_saves_samples(void)
{
    /* Data N(2, 0.5^2) in 1D. The network's gradient through the trainer
       matches central differences; 6000 steps bring the loss down; a model
       file written from the trainer loads back with the same weights, EMA
       and samples, bit for bit; and DDIM samples of the EMA model have the
       data's mean and spread roughly (within 0.3 and a factor 1.6). */
    enum { B = 64, N = 1000 };
    two_cfg cfg = { 1, 64 };
    dfn_schedule_config sc = dfn_schedule_config_default(DFN_SCHEDULE_LINEAR, 200);
    dfn_train_config tc = dfn_train_config_default();
    dfn_schedule s;
    dfn_net net;
    dfn_trainer tr;
    dfn_rng rng;
    dfn_model_info info;
    dfn_loaded_model lm;
    float *params, x0[B], eps[B], first = 0.0f, last = 0.0f, loss, *a, *b;
    int t[B], i, k;
    size_t bytes, written = 0;
    unsigned char *img;
    double mean = 0.0, var = 0.0, err;
    size_t worst;

    CHECK(dfn_schedule_alloc(&s, &sc, NULL) == DFN_OK, "schedule");
    params = (float *)malloc(two_params(&cfg) * sizeof(float));
    if (dfn_net_init(&net, &two_ops, &cfg, params) != DFN_OK) {
        CHECK(0, "dfn_net_init");
        return;
    }
    CHECK(net.count == 257, "net: %d parameters", (int)net.count);
    dfn_rng_seed(&rng, 30, 0);
    CHECK(dfn_net_init_weights(&net, &rng) == DFN_OK, "init weights");
    tc.batch = B;
    tc.lr = 1e-2f;
    tc.ema_decay = 0.99f;
    tc.total_steps = 6000;
    CHECK(dfn_trainer_alloc_net(&tr, &net, &s, &tc, NULL) == DFN_OK, "trainer");
    CHECK(tr.model == NULL && tr.unet == NULL && tr.net.params == params, "the trainer holds the net");

    /* the gradient at given t and eps */
    for (i = 0; i < B; i++) {
        x0[i] = 2.0f + 0.5f * dfn_rng_normal(&rng);
        eps[i] = dfn_rng_normal(&rng);
        t[i] = 1 + (int)dfn_rng_below(&rng, 200);
    }
    {
        two_loss_case lc;
        float *g = (float *)malloc(net.count * sizeof(float));
        lc.tr = &tr; lc.x0 = x0; lc.eps = eps; lc.t = t;
        CHECK(dfn_trainer_loss_grad(&tr, x0, NULL, t, eps, &loss) == DFN_OK, "loss and gradient");
        memcpy(g, tr.grads, net.count * sizeof(float));
        CHECK(dfn_check_grad(two_loss, &lc, params, net.count, g, 1, 1e-2f, 1e-3, &err, &worst) == DFN_OK &&
              err < 2e-2, "gradient: relative error %g at %d", err, (int)worst);
        free(g);
    }

    for (k = 0; k < 6000; k++) {
        for (i = 0; i < B; i++) x0[i] = 2.0f + 0.5f * dfn_rng_normal(&rng);
        CHECK(dfn_train_step(&tr, x0, NULL, &rng, &loss) == DFN_OK, "step %d", k);
        if (k < 50) first += loss / 50.0f;
        if (k >= 5950) last += loss / 50.0f;
    }
    CHECK(last < 0.6f * first, "loss %g -> %g", first, last);

    /* a model file of the third network */
    bytes = dfn_model_save_net_size(&net, &s, &tr, 1);
    img = (unsigned char *)malloc(bytes);
    CHECK(bytes > 0 && dfn_model_save_net_mem(img, bytes, &written, &net, &s, &tr, 1) == DFN_OK && written == bytes,
          "save: %d bytes", (int)bytes);
    CHECK(dfn_model_info_mem(img, written, &info) == DFN_OK && (int)info.net == TWO_KIND && info.params == 257 &&
          info.config_len == 8 && info.has_ema && info.step == 6000, "info");
    CHECK(dfn_model_load_mem(img, written, NULL, &lm) == DFN_ERR_MISMATCH, "loaded without its operations");
    CHECK(dfn_model_load_net_mem(img, written, dfn_mlp_net_ops(), NULL, &lm) == DFN_ERR_MISMATCH, "as an MLP");
    CHECK(dfn_model_load_net_mem(img, written, &two_ops, NULL, &lm) == DFN_OK, "load");
    CHECK(lm.net.ops == &two_ops && ((const two_cfg *)lm.net.cfg)->hidden == 64 && lm.step == 6000 &&
          memcmp(lm.net.params, params, net.count * sizeof(float)) == 0 &&
          memcmp(lm.ema_net.params, tr.ema, net.count * sizeof(float)) == 0, "loaded weights or EMA differ");
    {
        two_cfg other = { 1, 16 };
        dfn_net o;
        float *op = (float *)calloc(two_params(&other), sizeof(float));
        CHECK(dfn_net_init(&o, &two_ops, &other, op) == DFN_OK &&
              dfn_model_read_net(img, written, &o, NULL, NULL, NULL) == DFN_ERR_MISMATCH, "another config");
        free(op);
    }

    a = (float *)malloc(N * sizeof(float));
    b = (float *)malloc(N * sizeof(float));
    two_samples(&tr.ema_net, &s, a, N);
    two_samples(&lm.ema_net, &lm.schedule, b, N);
    CHECK(memcmp(a, b, N * sizeof(float)) == 0, "samples of the loaded model differ");
    for (i = 0; i < N; i++) mean += a[i] / N;
    for (i = 0; i < N; i++) var += (a[i] - mean) * (a[i] - mean) / N;
    printf("    third network: loss %.3f -> %.3f, samples mean %.3f sd %.3f\n", first, last, mean, sqrt(var));
    CHECK(fabs(mean - 2.0) < 0.3 && sqrt(var) > 0.5 / 1.6 && sqrt(var) < 0.5 * 1.6,
          "samples: mean %g, sd %g (data 2, 0.5)", mean, sqrt(var));

    free(a); free(b); free(img);
    dfn_model_free(&lm, NULL);
    dfn_trainer_free(&tr, NULL);
    dfn_schedule_free(&s, NULL);
    free(params);
}

void test_netif_rejects_bad_operations(void)
{
    /* Networks the library cannot use are refused with a clear code: no
       operations, a config the network calls invalid, a table without its
       forward, training a network without training operations. */
    two_cfg cfg = { 1, 4 }, bad = { 0, 4 };
    dfn_net_ops no_fwd = two_ops, no_train = two_ops;
    dfn_train_config tc = dfn_train_config_default();
    dfn_schedule_config sc = dfn_schedule_config_default(DFN_SCHEDULE_LINEAR, 50);
    dfn_schedule s;
    dfn_net net;
    dfn_trainer tr;
    float params[64];
    no_fwd.forward = NULL;
    no_train.train_backward = NULL;
    CHECK(dfn_net_init(&net, NULL, &cfg, params) == DFN_ERR_NULL, "no ops");
    CHECK(dfn_net_init(&net, &two_ops, &bad, params) == DFN_ERR_INVALID_ARG, "bad config");
    CHECK(dfn_net_init(&net, &no_fwd, &cfg, params) == DFN_ERR_INVALID_ARG, "no forward");
    CHECK(dfn_schedule_alloc(&s, &sc, NULL) == DFN_OK, "schedule");
    CHECK(dfn_net_init(&net, &no_train, &cfg, params) == DFN_OK, "inference-only net");
    CHECK(dfn_trainer_size_net(&net, &tc) == 0 && dfn_trainer_alloc_net(&tr, &net, &s, &tc, NULL) == DFN_ERR_INVALID_ARG,
          "training a net without training operations");
    CHECK(dfn_net_ops_find(DFN_NET_MLP) == dfn_mlp_net_ops() && dfn_net_ops_find(DFN_NET_UNET) == dfn_unet_net_ops() &&
          dfn_net_ops_find(TWO_KIND) == NULL, "ops by id");
    dfn_schedule_free(&s, NULL);
}

void test_netif_classifier_model_file(void)
{
    /* The guidance classifier through the interface: saved as a model file
       (kind DFN_NET_CLASSIFIER), loaded back with its config and weights;
       dfn_net_forward of any n (chunks of a small workspace) gives the
       log-probabilities of dfn_classifier_forward, bit for bit. It cannot
       be trained as a noise network nor sampled. */
    enum { N = 37 };
    dfn_classifier_config cc = dfn_classifier_config_default(2, 5);
    dfn_schedule_config sc = dfn_schedule_config_default(DFN_SCHEDULE_LINEAR, 100);
    dfn_train_config tc = dfn_train_config_default();
    dfn_schedule s;
    dfn_classifier clf;
    dfn_net net;
    dfn_loaded_model lm;
    dfn_trainer tr;
    dfn_rng rng;
    dfn_net_predictor p;
    float *params, x[N * 2], a[N * 5], b[N * 5];
    int t[N], i;
    size_t bytes, written = 0, small;
    unsigned char *img;
    void *work;
    cc.hidden = 16;
    cc.time_dim = 8;
    CHECK(dfn_schedule_alloc(&s, &sc, NULL) == DFN_OK, "schedule");
    params = (float *)malloc(dfn_classifier_num_params(&cc) * sizeof(float));
    CHECK(dfn_classifier_init(&clf, &cc, params) == DFN_OK, "classifier");
    dfn_rng_seed(&rng, 40, 0);
    dfn_classifier_init_weights(&clf, &rng);
    net = dfn_classifier_net(&clf);
    bytes = dfn_model_save_net_size(&net, &s, NULL, 0);
    img = (unsigned char *)malloc(bytes);
    CHECK(bytes > 0 && dfn_model_save_net_mem(img, bytes, &written, &net, &s, NULL, 0) == DFN_OK, "save");
    CHECK(dfn_model_load_mem(img, written, NULL, &lm) == DFN_OK, "load");
    CHECK(lm.info.net == DFN_NET_CLASSIFIER && lm.info.classifier.hidden == 16 && lm.info.classifier.num_classes == 5 &&
          lm.classifier.count == clf.count && memcmp(lm.classifier.params, params, clf.count * sizeof(float)) == 0,
          "loaded classifier");
    dfn_rng_normal_fill(&rng, x, N * 2);
    for (i = 0; i < N; i++) t[i] = (int)dfn_rng_below(&rng, 100);
    work = malloc(dfn_classifier_work_size(&cc, N));
    CHECK(dfn_classifier_forward(&clf, a, x, t, N, work, dfn_classifier_work_size(&cc, N)) == DFN_OK, "forward");
    small = dfn_net_forward_size(&lm.net, 4);
    CHECK(small > 0 && small < dfn_classifier_work_size(&cc, N) &&
          dfn_net_forward(&lm.net, b, x, NULL, 0, t, NULL, N, work, small) == DFN_OK &&
          memcmp(a, b, sizeof a) == 0, "log-probabilities through the interface differ");
    CHECK(dfn_trainer_alloc_net(&tr, &net, &s, &tc, NULL) == DFN_ERR_INVALID_ARG, "trained as a noise network");
    p.net = &net; p.cond = NULL; p.cond_rows = 0; p.work = work; p.work_bytes = small;
    CHECK(dfn_net_sampler_config(DFN_SAMPLER_DDIM, 8, &p).dim == 0, "sampled");
    free(work);
    free(img);
    dfn_model_free(&lm, NULL);
    dfn_schedule_free(&s, NULL);
    free(params);
}
