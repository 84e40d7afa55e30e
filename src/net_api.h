/* ========================================================================= */
/*  Layers (llm.c style: outputs, cached values, inputs, weights, dims)      */
/* ========================================================================= */
/* Backward functions accumulate (+=) into their gradient outputs. `work` is
   GEMM scratch of dfn_gemm_work_size() bytes. Dimensions are trusted (the
   networks validate them once); the layers never allocate. */

/* out (B, O) = in (B, I) W^T + b, with W (O, I) row-major and b (O) or NULL. */
DFNDEF void dfn_linear_forward(float *out, const float *in, const float *W, const float *b,
                               int B, int I, int O, float *work);

/* Given dout (B, O): din (B, I) += dout W (skipped when din is NULL),
   dW (O, I) += dout^T in, db (O) += sum over rows of dout (skipped when NULL). */
DFNDEF void dfn_linear_backward(float *din, float *dW, float *db, const float *dout,
                                const float *in, const float *W, int B, int I, int O,
                                float *work);

/* Sinusoidal embedding of n scalars u_i = scale * v[i * incv] into the rows of
   out (row i at out + i * ldo, dim values, dim even):
   [sin(u_i f_0) .. sin(u_i f_{h-1}), cos(u_i f_0) .. cos(u_i f_{h-1})],
   h = dim / 2, f_k = 10000^(-k / h) (Vaswani et al. 2017; Ho et al. 2020 for t). */
DFNDEF void dfn_sinusoidal_embedding(float *out, int ldo, const float *v, int incv, float scale,
                                     int n, int dim);

/* ========================================================================= */
/*  The MLP noise network                                                    */
/* ========================================================================= */
/* eps_theta(x_t, t[, c]):
       e     = temb(t) + class_emb[c]                      (class_emb optional)
       in    = [x, emb(scale * x_1), ..., emb(scale * x_D), e]
       h_0   = act(W_in in + b_in)
       h_l   = h_{l-1} + act(W_l h_{l-1} + b_l),  l = 1..L  (residual blocks)
       out   = W_out h_L + b_out                           (eps, v or x0: cfg.prediction)
   Parameters live in one flat block (dfn_mlp_num_params floats); gradients,
   Adam moments and EMA weights are blocks of the same layout, so zeroing,
   saving, loading and the optimizer are one loop each. */

typedef struct dfn_mlp_config {
    int   dim;            /* D, values per sample (>= 1)                         */
    int   hidden;         /* H, width (default 128)                              */
    int   blocks;         /* L, residual blocks (default 3)                      */
    int   time_dim;       /* sinusoidal t-embedding size, even (default 128)     */
    int   input_emb_dim;  /* sinusoidal features per input coordinate, even;
                             0 = off (default 32 when D <= 3, else 0)            */
    float input_scale;    /* coordinates are scaled by this before embedding (25) */
    int   num_classes;    /* 0 = unconditional; else labels 0..C-1 and -1 (none) */
    dfn_activation act;   /* default DFN_ACT_GELU                                */
    dfn_prediction prediction; /* what the network outputs (default eps)         */
} dfn_mlp_config;

/* Offsets of each tensor inside a flat block (in floats). */
typedef struct dfn_mlp_layout {
    size_t in_dim;                 /* D + D * input_emb_dim + time_dim           */
    size_t w_in, b_in;             /* (H, in_dim), (H)                           */
    size_t blk, blk_stride;        /* block l: W at blk + l * blk_stride (H, H),
                                      b right after it (H)                       */
    size_t w_out, b_out;           /* (D, H), (D)                                */
    size_t cls;                    /* (num_classes + 1, time_dim); row C = "none" */
    size_t count;                  /* total floats                               */
} dfn_mlp_layout;

typedef struct dfn_mlp {
    dfn_mlp_config cfg;
    dfn_mlp_layout lay;
    float *params;                 /* lay.count floats, caller memory            */
} dfn_mlp;

/* Defaults for data of dimension dim. */
DFNDEF dfn_mlp_config dfn_mlp_config_default(int dim);

/* Validates cfg. DFN_ERR_INVALID_ARG for a non-positive size, odd embedding
   sizes, a non-finite or non-positive input_scale, unknown act / prediction,
   or a parameter count beyond 2^31 floats. */
DFNDEF dfn_result dfn_mlp_config_check(const dfn_mlp_config *cfg);

/* Number of parameters (floats in each flat block); 0 for an invalid config. */
DFNDEF size_t dfn_mlp_num_params(const dfn_mlp_config *cfg);

/* Sets up m over caller memory params (dfn_mlp_num_params(cfg) floats). The
   values are not touched: call dfn_mlp_init_weights or load them. */
DFNDEF dfn_result dfn_mlp_init(dfn_mlp *m, const dfn_mlp_config *cfg, float *params);

/* Deterministic initialization from rng, as PyTorch's defaults: every W and b
   of a layer with fan-in F uniform in [-1/sqrt(F), 1/sqrt(F)], class
   embeddings N(0, 1). */
DFNDEF dfn_result dfn_mlp_init_weights(dfn_mlp *m, dfn_rng *rng);

/* Bytes of workspace dfn_mlp_forward needs to evaluate up to `chunk` samples at
   a time (any n is then processed in chunks); 0 for an invalid config. */
DFNDEF size_t dfn_mlp_forward_size(const dfn_mlp_config *cfg, int chunk);

/* Inference: out (n, D) = network(x (n, D), t (n), labels (n or NULL)).
   work: dfn_mlp_forward_size(cfg, chunk) bytes for some chunk >= 1; no
   training buffers needed. Errors: DFN_ERR_NULL, DFN_ERR_INVALID_ARG (t < 0,
   a label outside -1..C-1), DFN_ERR_BUFFER_TOO_SMALL. */
DFNDEF dfn_result dfn_mlp_forward(const dfn_mlp *m, float *out, const float *x, const int *t,
                                  const int *labels, int n, void *work, size_t work_bytes);

/* A dfn_predict_fn for samplers: user points at a dfn_mlp_predictor. Set the
   sampler's prediction to model->cfg.prediction (dfn_mlp_sampler_config does). */
typedef struct dfn_mlp_predictor {
    const dfn_mlp *model;
    void  *work;
    size_t work_bytes;
} dfn_mlp_predictor;
DFNDEF int dfn_mlp_predict(void *user, const float *x_t, const int *t,
                           const int *labels, int n, float *out);

/* dfn_sampler_config_default for this predictor: dim and prediction from the model. */
DFNDEF dfn_sampler_config dfn_mlp_sampler_config(dfn_sampler_kind kind, int n,
                                                 dfn_mlp_predictor *p);

/* ========================================================================= */
/*  Finite-difference gradient checker                                       */
/* ========================================================================= */

/* A scalar function of a parameter vector (e.g. a loss), computed by the
   caller; it must not change params. */
typedef double (*dfn_loss_fn)(void *user, const float *params);

/* Compares grad (n) with central differences (f(p + h e_i) - f(p - h e_i)) / 2h
   at every stride-th index (stride >= 1; index 0 first). params is modified
   during the check and restored exactly. Reports the largest relative error
   |num - ana| / max(|num| + |ana|, floor) over the checked indices and where
   it occurred. Errors: DFN_ERR_NULL, DFN_ERR_INVALID_ARG (h <= 0, stride < 1,
   floor <= 0), DFN_ERR_NOT_FINITE (f returned a non-finite value). */
DFNDEF dfn_result dfn_check_grad(dfn_loss_fn f, void *user, float *params, size_t n,
                                 const float *grad, size_t stride, float h, double floor,
                                 double *max_rel_err, size_t *worst_index);

/* ========================================================================= */
/*  Training (MATH.md section 5)                                             */
/* ========================================================================= */

typedef enum dfn_loss_weighting {
    DFN_WEIGHT_UNIFORM = 0,   /* every t counts the same                         */
    DFN_WEIGHT_MIN_SNR = 1    /* Min-SNR-gamma (Hang et al. 2023): eps
                                 min(SNR, g)/SNR, v min(SNR, g)/(SNR + 1),
                                 x0 min(SNR, g)                                  */
} dfn_loss_weighting;

typedef struct dfn_train_config {
    int   batch;             /* B, examples per step (default 256)               */
    float lr;                /* peak learning rate (default 1e-3)                */
    float beta1, beta2, eps; /* Adam (0.9, 0.999, 1e-8)                           */
    float weight_decay;      /* decoupled (AdamW) when > 0 (default 0)            */
    float grad_clip;         /* max global L2 norm of the gradient; 0 = off      */
    int   warmup_steps;      /* linear warmup from 0 to lr (default 0)           */
    int   total_steps;       /* > 0: cosine decay to lr * min_lr_ratio by then    */
    float min_lr_ratio;      /* (default 0)                                      */
    float ema_decay;         /* EMA of the weights, 0 = off (default 0.999); step k
                                uses min(ema_decay, (1 + k) / (10 + k))           */
    dfn_loss_weighting weighting;
    float min_snr_gamma;     /* (default 5)                                      */
    float p_uncond;          /* class-conditional nets: label dropped to -1 with
                                this probability (default 0.1)                   */
} dfn_train_config;

typedef struct dfn_trainer {
    dfn_train_config    cfg;
    dfn_mlp            *model;      /* trained in place                         */
    const dfn_schedule *schedule;
    dfn_mlp             ema_model;  /* a view of the EMA weights (ema_decay > 0)*/
    float *grads, *adam_m, *adam_v, *ema;  /* flat blocks like model->params   */
    float *acts;                    /* the activation block for B examples      */
    long   step;                    /* optimizer steps taken                    */
    float  last_lr, last_grad_norm;
    void  *memory;
} dfn_trainer;

DFNDEF dfn_train_config dfn_train_config_default(void);

/* Bytes dfn_trainer_init needs; 0 for an invalid configuration. */
DFNDEF size_t dfn_trainer_size(const dfn_mlp_config *model_cfg, const dfn_train_config *cfg);

/* Sets up training of model (its weights as they are: initialize or load them
   first) on schedule s. The EMA starts as a copy of the weights, the Adam
   moments at 0. Errors: DFN_ERR_NULL, DFN_ERR_INVALID_ARG (batch < 1, lr <= 0,
   betas outside [0, 1), eps <= 0, negative decay / clip / warmup, ema_decay
   outside [0, 1), p_uncond outside [0, 1], gamma <= 0), DFN_ERR_BUFFER_TOO_SMALL. */
DFNDEF dfn_result dfn_trainer_init(dfn_trainer *tr, dfn_mlp *model, const dfn_schedule *s,
                                   const dfn_train_config *cfg, void *mem, size_t bytes);

#ifndef DFN_NO_MALLOC
DFNDEF dfn_result dfn_trainer_alloc(dfn_trainer *tr, dfn_mlp *model, const dfn_schedule *s,
                                    const dfn_train_config *cfg, void *alloc_ctx);
DFNDEF void dfn_trainer_free(dfn_trainer *tr, void *alloc_ctx);
#endif

/* One step of section 5 on the batch x0 (B, D) with labels (B, or NULL): draw
   t ~ U{1..T} and eps ~ N(0, I) per example, x_t in closed form, forward,
   loss = mean over the batch of w_t ||target - out||^2 / D, backward, clip,
   Adam(W) with bias correction, EMA. *loss (may be NULL) gets the loss.
   Errors: DFN_ERR_NULL, DFN_ERR_INVALID_ARG (a label outside -1..C-1),
   DFN_ERR_NOT_FINITE (x0 not finite, or a NaN/Inf loss or gradient: the
   weights are then left unchanged). */
DFNDEF dfn_result dfn_train_step(dfn_trainer *tr, const float *x0, const int *labels,
                                 dfn_rng *rng, float *loss);

/* The loss and gradient (into tr->grads, overwritten) at given t and eps,
   without an optimizer step: the deterministic core of dfn_train_step, for
   gradient checks and custom loops. */
DFNDEF dfn_result dfn_trainer_loss_grad(dfn_trainer *tr, const float *x0, const int *labels,
                                        const int *t, const float *eps, float *loss);

/* The learning rate of step `step` under cfg (warmup, cosine decay). */
DFNDEF float dfn_train_lr(const dfn_train_config *cfg, long step);

/* ========================================================================= */
/*  Model files                                                              */
/* ========================================================================= */
/* One little-endian file (format version 1):
       "DFNM"  u32 version  u32 flags (1: EMA weights, 2: optimizer state)
       u32 net kind (1 = MLP; ids are never renumbered)
       MLP config: u32 dim, hidden, blocks, time_dim, input_emb_dim,
                   f32 input_scale, u32 num_classes, act, prediction
       schedule:   u32 kind, T, zero_terminal_snr; f64 beta_start, beta_end,
                   cosine_s, sigmoid_start, sigmoid_end, sigmoid_tau, max_beta;
                   custom kind only: f32 betas[T]
       u32 P (parameter count)  f32 params[P]  [f32 ema[P]]
       [u32 step_lo, step_hi  f32 adam_m[P]  f32 adam_v[P]]
       u32 CRC-32 of every byte before it
   The schedule is stored as its configuration, so a loaded model rebuilds
   the very same tables and samples bit for bit as before saving. */

#define DFN_MODEL_VERSION 1

/* What a model file holds (from dfn_model_info; no weights). */
typedef struct dfn_model_info {
    uint32_t version;
    int      has_ema, has_optimizer;
    long     step;                   /* optimizer steps, with optimizer state  */
    dfn_mlp_config mlp;
    dfn_schedule_config schedule;    /* betas is NULL: see dfn_model_read      */
} dfn_model_info;

/* Checks a whole file image (magic, version, checksum, sizes, configs) and
   describes it. Errors: DFN_ERR_NULL, DFN_ERR_FORMAT (not a model file,
   truncated, trailing bytes, sizes that do not add up, an invalid config),
   DFN_ERR_VERSION, DFN_ERR_CHECKSUM. */
DFNDEF dfn_result dfn_model_info_mem(const void *buf, size_t len, dfn_model_info *info);

/* Reads the file image into objects the caller set up from its info:
   m (dfn_mlp_init with info.mlp) gets the weights; ema (P floats, or NULL)
   the EMA weights if the file has them; tr (or NULL), a trainer of m, gets
   the EMA, the Adam moments and the step count when the file has optimizer
   state; betas (info.schedule.T floats, or NULL) the custom betas when
   info.schedule.kind is DFN_SCHEDULE_CUSTOM (point info.schedule.betas at
   them before dfn_schedule_init). Errors: those of dfn_model_info_mem,
   DFN_ERR_NULL (m), DFN_ERR_MISMATCH (m's config differs from the file's). */
DFNDEF dfn_result dfn_model_read(const void *buf, size_t len, dfn_mlp *m, float *ema,
                                 dfn_trainer *tr, float *betas);

/* Bytes of the file image of m (and, with tr, its EMA; with_optimizer, the
   Adam state too); 0 when it cannot be saved (see dfn_model_save_mem). */
DFNDEF size_t dfn_model_save_size(const dfn_mlp *m, const dfn_schedule *s, const dfn_trainer *tr,
                                  int with_optimizer);

/* Writes the file image into buf (cap bytes; *written gets the size).
   tr may be NULL (weights only). Errors: DFN_ERR_NULL, DFN_ERR_INVALID_ARG
   (with_optimizer without tr; a custom schedule with zero terminal SNR,
   whose original betas are not kept), DFN_ERR_BUFFER_TOO_SMALL. */
DFNDEF dfn_result dfn_model_save_mem(void *buf, size_t cap, size_t *written, const dfn_mlp *m,
                                     const dfn_schedule *s, const dfn_trainer *tr, int with_optimizer);

/* A model loaded with its schedule, in one allocation. */
typedef struct dfn_loaded_model {
    dfn_model_info info;
    dfn_schedule   schedule;
    dfn_mlp        model;            /* the weights                            */
    dfn_mlp        ema_model;        /* the EMA weights, when ema != NULL      */
    float         *ema;
    long           step;
    void          *memory;
} dfn_loaded_model;

#ifndef DFN_NO_MALLOC
/* dfn_model_info_mem + dfn_model_read into memory from DFN_MALLOC. */
DFNDEF dfn_result dfn_model_load_mem(const void *buf, size_t len, void *alloc_ctx,
                                     dfn_loaded_model *out);
DFNDEF void dfn_model_free(dfn_loaded_model *lm, void *alloc_ctx);
#endif

#if !defined(DFN_NO_STDIO) && !defined(DFN_NO_MALLOC)
/* The same from and to files (dfn_file_read_all / dfn_file_write_all; a
   failed save leaves an existing file untouched). Errors add DFN_ERR_IO. */
DFNDEF dfn_result dfn_model_load(const char *path, void *alloc_ctx, dfn_loaded_model *out);
DFNDEF dfn_result dfn_model_save(const char *path, const dfn_mlp *m, const dfn_schedule *s,
                                 const dfn_trainer *tr, int with_optimizer);
#endif
