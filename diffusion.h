/* diffusion.h - v0.1.0 - denoising diffusion models in one C99 header.
   No dependencies beyond the C standard library and libm.
   Public domain or MIT, your choice: see the end of this file.

   Do this:
      #define DIFFUSION_IMPLEMENTATION
      #include "diffusion.h"
   in *one* C or C++ file to create the implementation. Everywhere else,
   #include "diffusion.h" alone gives the declarations.

   ===========================================================================
   MANUAL
   ===========================================================================

   1. Quick start
   --------------
   Sample 1000 points of a two-component 2D mixture with DDIM-50, driven by
   the mixture's exact noise predictor (MATH.md section 9). Swap in your own
   predictor callback (or, later, the library's networks) and nothing else
   changes.

      #define DIFFUSION_IMPLEMENTATION
      #include "diffusion.h"
      #include <stdio.h>

      int main(void)
      {
          static float x[1000 * 2];
          float weights[2] = {0.5f, 0.5f}, means[4] = {-2, 0, 2, 0}, stds[2] = {0.3f, 0.3f};
          dfn_gmm gmm;
          dfn_gmm_predictor exact;
          dfn_schedule sched;
          dfn_schedule_config sc = dfn_schedule_config_default(DFN_SCHEDULE_COSINE, 1000);
          dfn_sampler smp;
          dfn_sampler_config cfg;
          dfn_rng rng;
          dfn_result r;

          gmm.k = 2; gmm.dim = 2; gmm.weights = weights; gmm.means = means; gmm.stds = stds;
          if ((r = dfn_schedule_alloc(&sched, &sc, NULL)) != DFN_OK) return 1;
          exact.gmm = &gmm; exact.schedule = &sched;

          cfg = dfn_sampler_config_default(DFN_SAMPLER_DDIM, 1000, 2, dfn_gmm_predict, &exact);
          cfg.steps = 50;                               // eta = 0, trailing spacing
          if ((r = dfn_sampler_alloc(&smp, &cfg, &sched, NULL)) != DFN_OK) return 1;

          dfn_rng_seed(&rng, 42, 0);
          r = dfn_sampler_run(&smp, x, NULL, &rng);     // x_T ~ N(0, I) -> x_0
          if (r != DFN_OK) { printf("%s\n", dfn_result_string(r)); return 1; }
          printf("first sample: %f %f\n", x[0], x[1]);
          dfn_sampler_free(&smp, NULL);
          dfn_schedule_free(&sched, NULL);
          return 0;
      }

   2. Concepts (each with its section of MATH.md, shipped as docs/MATH.md)
   -------------------------------------------
   Data x_0 lives in R^D. The forward process (section 1) adds Gaussian noise
   in T steps with variances beta_1..beta_T; in closed form

       x_t = sqrt(alphabar_t) x_0 + sqrt(1 - alphabar_t) eps,   eps ~ N(0, I)

   with alpha_t = 1 - beta_t and alphabar_t = prod_{s<=t} alpha_s. When
   alphabar_T is close to 0, x_T is close to N(0, I): that is why sampling can
   start from Gaussian noise. A schedule whose alphabar_T stays large (for
   example a constant tiny beta, section 2) never gets there.

     dfn_schedule         the tables of section 1-3, indexed by t = 0..T
                          (row 0 is the clean data: alphabar_0 = 1). No
                          t -> t-1 shift anywhere in the library.
     dfn_q_sample         x_t from x_0 and eps (section 1)
     dfn_q_posterior      mean and variance of q(x_{t-1} | x_t, x_0) (section 3)
     dfn_prediction_to_x0_eps, dfn_prediction_target
                          eps / v / x0 parameterizations (sections 4, 5)
     dfn_ddpm_step        x_{t-1} = mutilde_t(x0_hat, x_t) + sigma_t z (section 6)
     dfn_ddim_step        x_p = sqrt(alphabar_p) x0_hat
                                + sqrt(1 - alphabar_p - sigma^2) eps_hat + sigma z
                          (section 7)
     dfn_ddim_timesteps   the linspace / leading / trailing subsequences (section 7)
     dfn_sampler          the whole reverse loop around a predictor callback
     dfn_gmm_eps          the exact noise predictor of a Gaussian mixture (section 9)
     dfn_energy_distance  ED^2 between two point sets (section 10)

   The noise predictor is a callback:

       int predict(void *user, const float *x_t, const int *t,
                   const int *labels, int n, float *out);

   x_t is (n, D) row-major, t and labels hold one entry per sample (labels
   are -1 for "no class"), out receives (n, D) predictions of the kind named
   by dfn_sampler_config.prediction (eps, v or x0). Return 0 on success;
   anything else stops the sampler with DFN_ERR_CALLBACK.

   3. Memory model
   ---------------
   The caller owns all memory. Every object has a size query and an init
   function that carves its arrays out of one caller buffer:

       size_t bytes = dfn_sampler_size(&cfg, &sched);
       void  *mem   = my_alloc(bytes);
       dfn_sampler_init(&smp, &cfg, &sched, mem, bytes);

   The *_alloc / *_free wrappers do exactly this with DFN_MALLOC/DFN_FREE.
   Objects hold pointers into their buffer and into the objects they were
   initialized with (a sampler points at its schedule): keep those alive and
   in place. Nothing allocates inside a sampler step, a sampler run or any
   forward-process function.

   4. Configuration macros (define before the implementation include)
   ------------------------------------------------------------------
     DFN_STATIC          every function static (private copy per file)
     DFNDEF              the declaration prefix (default: extern)
     DFN_NO_SIMD         force the portable scalar kernels (0.1.0 has no
                         SIMD code yet; the network kernels bring it)
     DFN_NO_MALLOC       no *_alloc and *_free wrappers; only caller memory
     DFN_NO_STDIO        no function that touches FILE * (file I/O)
     DFN_NO_TRAINING     inference only (networks' backward passes and
                         optimizers are left out; reserved, no effect yet)
     DFN_ASSERT(x)       internal invariants only (default: assert)
     DFN_MALLOC(sz,ctx), DFN_FREE(p,ctx)
                         both or neither; ctx is the pointer given to the
                         *_alloc and *_free calls (default: malloc/free)
     DFN_MEMCPY, DFN_MEMSET
     DFN_SQRTF, DFN_EXPF, DFN_LOGF, DFN_SINF, DFN_COSF, DFN_TANHF  (float)
     DFN_SQRT, DFN_EXP, DFN_LOG, DFN_COS                          (double)

   5. Randomness and determinism
   -----------------------------
   Every stochastic function takes an explicit dfn_rng (PCG32, O'Neill 2014).
   There is no global state. dfn_rng_normal is computed with integer
   arithmetic only (a fixed-point Box-Muller transform; no logf, cosf or
   floating-point rounding choices involved), so for the same seed and
   stream the uniform and normal streams are the same bits on every
   platform with IEEE-754 floats: x86-64, AArch64, wasm32, Cortex-M. Normals
   lie within |z| <= 6.67 (u1 >= 2^-32).
   Normals come in Box-Muller pairs; the second of a pair is kept in the
   rng, so filling 3 then 5 values gives the same 8 values as filling 8.
   The same build with the same seeds gives the same samples, bit for bit.
   The schedule tables use the platform's double-precision libm (cos, exp,
   sqrt) and may differ in the last bit across platforms for the cosine and
   sigmoid schedules. Build without -ffast-math.

   6. Errors
   ---------
   Functions that can fail return a dfn_result: DFN_OK (0) or a negative
   code, named by dfn_result_string(). Arguments are validated before any
   work: NULL pointers, T < 1, betas outside (0, 1), NaN, timesteps outside
   1..T, steps outside 1..T, a buffer smaller than the size query asked for.
   The library never prints, exits or aborts. *_size queries return 0 for
   a configuration they cannot serve.

   7. Limitations, and what it does not do
   ---------------------------------------
   Data is float32, row-major (n, D). Only Gaussian diffusion with discrete
   t = 1..T; no continuous-time SDE solvers, no latent diffusion, no
   multi-GPU. The samplers are single-threaded.

   ===========================================================================
*/
#ifndef DIFFUSION_H
#define DIFFUSION_H

#include <stddef.h>
#include <stdint.h>

#define DFN_VERSION_MAJOR 0
#define DFN_VERSION_MINOR 1
#define DFN_VERSION_PATCH 0

#ifndef DFNDEF
#  ifdef DFN_STATIC
#    if defined(__GNUC__) || defined(__clang__)
#      define DFNDEF static __attribute__((unused))
#    else
#      define DFNDEF static
#    endif
#  else
#    define DFNDEF extern
#  endif
#endif

#ifdef __cplusplus
extern "C" {
#endif

/* Largest T a schedule accepts (keeps every size computation far from overflow). */
#define DFN_MAX_T (1 << 24)

/* ========================================================================= */
/*  Results                                                                  */
/* ========================================================================= */

/* Values are never renumbered; new codes are appended. */
typedef enum dfn_result {
    DFN_OK                   =  0,
    DFN_ERR_NULL             = -1, /* a required pointer argument is NULL           */
    DFN_ERR_INVALID_ARG      = -2, /* a value is outside its documented range        */
    DFN_ERR_NOT_FINITE       = -3, /* NaN or infinity in an input or a prediction    */
    DFN_ERR_BUFFER_TOO_SMALL = -4, /* caller memory smaller than the size query said */
    DFN_ERR_OUT_OF_MEMORY    = -5, /* DFN_MALLOC returned NULL                       */
    DFN_ERR_CALLBACK         = -6, /* the prediction callback returned non-zero      */
    DFN_ERR_CANCELLED        = -7, /* the per-step callback asked to stop            */
    DFN_ERR_IO               = -8, /* a file could not be opened, read or written    */
    DFN_ERR_FORMAT           = -9, /* malformed input: bad magic, truncated, bad line */
    DFN_ERR_VERSION          = -10, /* a file format version this build cannot read   */
    DFN_ERR_CHECKSUM         = -11, /* the file's checksum does not match its bytes    */
    DFN_ERR_MISMATCH         = -12  /* a file or object does not match the config    */
} dfn_result;

/* A short English name for a result code ("DFN_ERR_NULL: ..."). Never NULL. */
DFNDEF const char *dfn_result_string(dfn_result r);

/* ========================================================================= */
/*  Random numbers: PCG32 with a portable, integer-exact normal generator    */
/* ========================================================================= */

typedef struct dfn_rng {
    uint64_t state;     /* PCG32 state                                  */
    uint64_t inc;       /* PCG32 stream increment (always odd)          */
    float    spare;     /* second normal of the last Box-Muller pair    */
    int      has_spare; /* 1 when spare holds an unused normal          */
} dfn_rng;

/* Seed the generator. Different streams with the same seed are
   independent sequences. Seeding (42, 54) gives the PCG32 reference
   sequence 0xa15c02b7, 0x7b47f409, ... */
DFNDEF void dfn_rng_seed(dfn_rng *rng, uint64_t seed, uint64_t stream);

/* Next 32 uniform random bits. */
DFNDEF uint32_t dfn_rng_u32(dfn_rng *rng);

/* Uniform integer in [0, bound), without modulo bias. bound 0 returns 0. */
DFNDEF uint32_t dfn_rng_below(dfn_rng *rng, uint32_t bound);

/* Uniform float in [0, 1): a multiple of 2^-24 (uses one u32 draw). */
DFNDEF float dfn_rng_uniform(dfn_rng *rng);

/* One standard normal N(0, 1). Same bits on every IEEE-754 platform
   (manual section 5). Each Box-Muller pair uses two u32 draws. */
DFNDEF float dfn_rng_normal(dfn_rng *rng);

/* n standard normals into out (n may be 0; out may be NULL when n is 0).
   The rng functions take a valid rng and do not check for NULL. */
DFNDEF void dfn_rng_normal_fill(dfn_rng *rng, float *out, size_t n);

/* ========================================================================= */
/*  Noise schedules (MATH.md section 2) and their tables (sections 1, 3)     */
/* ========================================================================= */

/* Values are stored in model files: never renumbered. */
typedef enum dfn_schedule_kind {
    DFN_SCHEDULE_LINEAR  = 0, /* Ho et al. 2020, ends scaled by 1000/T          */
    DFN_SCHEDULE_COSINE  = 1, /* Nichol & Dhariwal 2021                         */
    DFN_SCHEDULE_SIGMOID = 2, /* Jabri et al. 2022                              */
    DFN_SCHEDULE_CUSTOM  = 3  /* betas supplied by the caller                   */
} dfn_schedule_kind;

typedef struct dfn_schedule_config {
    dfn_schedule_kind kind;
    int    T;                 /* number of steps, 1..DFN_MAX_T                  */
    double beta_start;        /* linear: beta_1 for T = 1000 (default 1e-4)     */
    double beta_end;          /* linear: beta_T for T = 1000 (default 0.02);
                                 both are multiplied by 1000/T                  */
    double cosine_s;          /* cosine: offset s (default 0.008)               */
    double sigmoid_start;     /* sigmoid: start (default -3)                    */
    double sigmoid_end;       /* sigmoid: end (default 3)                       */
    double sigmoid_tau;       /* sigmoid: temperature tau (default 1)           */
    double max_beta;          /* cosine, sigmoid: betas clipped here (0.999)    */
    const float *betas;       /* custom: T values beta_1..beta_T in (0, 1)      */
    int    zero_terminal_snr; /* 1: rescale so alphabar_T = 0 (Lin et al. 2023);
                                 sample with v- or x0-prediction then           */
} dfn_schedule_config;

/* Every table has T + 1 entries indexed by t = 0..T. Row 0 is the clean data:
   beta 0, alpha 1, alphabar 1, snr +infinity, posterior coefficients (1, 0)
   so that "x_0 = x0_hat". Computed in double, stored as float. */
typedef struct dfn_schedule {
    int    T;
    dfn_schedule_config config;      /* as given (config.betas is set to NULL)  */
    float *beta;                     /* beta_t                       section 1  */
    float *alpha;                    /* alpha_t = 1 - beta_t         section 1  */
    float *alphabar;                 /* prod_{s<=t} alpha_s          section 1  */
    float *sqrt_alphabar;            /* sqrt(alphabar_t)             section 1  */
    float *sqrt_one_minus_alphabar;  /* sqrt(1 - alphabar_t)         section 1  */
    float *posterior_variance;       /* betatilde_t                  section 3  */
    float *posterior_coef_x0;        /* sqrt(alphabar_{t-1}) beta_t / (1 - alphabar_t)        */
    float *posterior_coef_xt;        /* sqrt(alpha_t) (1 - alphabar_{t-1}) / (1 - alphabar_t) */
    float *snr;                      /* alphabar_t / (1 - alphabar_t) section 1 */
    void  *memory;                   /* the buffer given to init                */
} dfn_schedule;

/* The defaults of MATH.md section 2 for this kind and T (custom: set
   cfg.betas yourself). */
DFNDEF dfn_schedule_config dfn_schedule_config_default(dfn_schedule_kind kind, int T);

/* Bytes that dfn_schedule_init needs for T steps; 0 if T is out of range. */
DFNDEF size_t dfn_schedule_size(int T);

/* Compute every table into mem (bytes >= dfn_schedule_size(cfg->T)).
   Errors: DFN_ERR_NULL, DFN_ERR_INVALID_ARG (T < 1 or > DFN_MAX_T, a
   parameter or a resulting beta outside (0, 1), NaN), DFN_ERR_BUFFER_TOO_SMALL.
   With zero_terminal_snr, beta_T = 1 exactly and alphabar_T = 0. */
DFNDEF dfn_result dfn_schedule_init(dfn_schedule *s, const dfn_schedule_config *cfg,
                                    void *mem, size_t bytes);

#ifndef DFN_NO_MALLOC
/* dfn_schedule_init with memory from DFN_MALLOC(bytes, alloc_ctx). */
DFNDEF dfn_result dfn_schedule_alloc(dfn_schedule *s, const dfn_schedule_config *cfg,
                                     void *alloc_ctx);
/* Release the memory of dfn_schedule_alloc. NULL or a zeroed struct is fine. */
DFNDEF void dfn_schedule_free(dfn_schedule *s, void *alloc_ctx);
#endif

/* ========================================================================= */
/*  Forward process and parameterizations (MATH.md sections 1, 3, 4, 5)      */
/* ========================================================================= */
/* Shapes: x0, eps, xt, pred, out: (n, dim) row-major; t: (n) with 1 <= t <= T.
   n = 0 is a no-op. Outputs may alias inputs (everything is elementwise). */

/* Values are stored in model files: never renumbered. */
typedef enum dfn_prediction {
    DFN_PREDICT_EPS = 0,   /* the network predicts the noise eps            */
    DFN_PREDICT_V   = 1,   /* v = sqrt(alphabar) eps - sqrt(1 - alphabar) x0 */
    DFN_PREDICT_X0  = 2    /* the network predicts the clean data x0         */
} dfn_prediction;

/* Section 1: xt = sqrt(alphabar_t) x0 + sqrt(1 - alphabar_t) eps. */
DFNDEF dfn_result dfn_q_sample(const dfn_schedule *s, float *xt,
                               const float *x0, const float *eps,
                               const int *t, int n, int dim);

/* Section 3: mean (n, dim) of q(x_{t-1} | x_t, x_0), and its variance
   betatilde_t into var (n values; var may be NULL). */
DFNDEF dfn_result dfn_q_posterior(const dfn_schedule *s, float *mean, float *var,
                                  const float *x0, const float *xt,
                                  const int *t, int n, int dim);

/* Section 4: from a prediction of the given kind, the implied x0_hat and
   eps_hat (either output may be NULL). For DFN_PREDICT_EPS at a t with
   alphabar_t = 0 (zero terminal SNR) x0_hat is undefined: DFN_ERR_INVALID_ARG. */
DFNDEF dfn_result dfn_prediction_to_x0_eps(const dfn_schedule *s, dfn_prediction kind,
                                           float *x0_hat, float *eps_hat,
                                           const float *pred, const float *xt,
                                           const int *t, int n, int dim);

/* Sections 4, 5: the training target of a parameterization: eps, v or x0. */
DFNDEF dfn_result dfn_prediction_target(const dfn_schedule *s, dfn_prediction kind,
                                        float *target, const float *x0, const float *eps,
                                        const int *t, int n, int dim);

/* ========================================================================= */
/*  Samplers: DDPM (MATH.md section 6) and DDIM (section 7)                  */
/* ========================================================================= */

/* The model: write predictions for x_t (n, dim) at per-sample timesteps t and
   class labels (-1 = none) into out (n, dim). Return 0 on success. */
typedef int (*dfn_predict_fn)(void *user, const float *x_t, const int *t,
                              const int *labels, int n, float *out);

/* What the per-step callback sees after step i (i = S..1) moved x from
   timestep t to t_prev (t_prev = 0 after the last step). */
typedef struct dfn_step_info {
    int i;                 /* step index, counts down from steps to 1        */
    int steps;             /* S                                              */
    int t, t_prev;         /* timesteps before and after this step           */
    int n, dim;
    const float *x;        /* x_{t_prev}, (n, dim)                           */
    const float *x0_hat;   /* the prediction of x_0 made at t, (n, dim)      */
} dfn_step_info;

/* Called after every step of dfn_sampler_run; return non-zero to stop
   (the run then returns DFN_ERR_CANCELLED, x holds x_{t_prev}). */
typedef int (*dfn_step_fn)(void *user, const dfn_step_info *info);

typedef enum dfn_sampler_kind {
    DFN_SAMPLER_DDPM = 0,  /* ancestral, T steps (section 6)                 */
    DFN_SAMPLER_DDIM = 1   /* S steps on a subsequence, eta >= 0 (section 7) */
} dfn_sampler_kind;

typedef enum dfn_variance {
    DFN_VARIANCE_SMALL = 0, /* sigma_t^2 = betatilde_t (true posterior)      */
    DFN_VARIANCE_LARGE = 1  /* sigma_t^2 = beta_t                            */
} dfn_variance;

typedef enum dfn_spacing {
    DFN_SPACING_LINSPACE = 0, /* tau_i = round(1 + (i-1)(T-1)/(S-1))         */
    DFN_SPACING_LEADING  = 1, /* tau_i = 1 + (i-1) floor(T/S)                */
    DFN_SPACING_TRAILING = 2  /* tau_i = round(i T / S); starts at T         */
} dfn_spacing;

typedef struct dfn_sampler_config {
    dfn_sampler_kind kind;
    int            n, dim;          /* batch size and values per sample       */
    dfn_predict_fn predict;         /* required                               */
    void          *predict_user;
    dfn_prediction prediction;      /* what predict returns (default eps)     */
    const int     *labels;          /* n class labels, or NULL for all -1     */
    dfn_variance   variance;        /* DDPM: small (default) or large         */
    int            steps;           /* DDIM: S, 1..T (default 50, capped at T)*/
    float          eta;             /* DDIM: >= 0 (default 0, deterministic)  */
    dfn_spacing    spacing;         /* DDIM: default trailing                 */
    int            clip_x0;         /* 1: clamp x0_hat to [clip_min, clip_max]*/
    float          clip_min, clip_max; /* default -1, 1                        */
    dfn_step_fn    on_step;         /* optional per-step callback             */
    void          *on_step_user;
} dfn_sampler_config;

typedef struct dfn_sampler {
    dfn_sampler_config  cfg;        /* labels points into this sampler's memory */
    const dfn_schedule *schedule;
    int    steps;                   /* S (T for DDPM)                          */
    int   *tau;                     /* S + 1 timesteps, tau[0] = 0             */
    int   *t;                       /* n per-sample timesteps for the callback */
    int   *labels;                  /* n labels                                */
    float *model_out, *x0_hat, *eps_hat, *z;  /* (n, dim) each                */
    void  *memory;
} dfn_sampler;

/* Defaults: DDPM small variance; DDIM 50 steps (at most T), eta 0, trailing;
   eps-prediction; no clipping (range -1..1 when enabled); no callbacks. */
DFNDEF dfn_sampler_config dfn_sampler_config_default(dfn_sampler_kind kind, int n, int dim,
                                                     dfn_predict_fn predict, void *user);

/* Bytes of workspace the sampler needs; 0 if the configuration is invalid. */
DFNDEF size_t dfn_sampler_size(const dfn_sampler_config *cfg, const dfn_schedule *s);

/* Validate cfg against the schedule and set up the sampler in mem.
   Errors: DFN_ERR_NULL (cfg, s, smp, mem, predict), DFN_ERR_INVALID_ARG
   (n < 1, dim < 1, steps outside 1..T, eta < 0 or NaN, clip range empty,
   a label < -1, eps-prediction on a zero-terminal-SNR schedule),
   DFN_ERR_BUFFER_TOO_SMALL. */
DFNDEF dfn_result dfn_sampler_init(dfn_sampler *smp, const dfn_sampler_config *cfg,
                                   const dfn_schedule *s, void *mem, size_t bytes);

#ifndef DFN_NO_MALLOC
DFNDEF dfn_result dfn_sampler_alloc(dfn_sampler *smp, const dfn_sampler_config *cfg,
                                    const dfn_schedule *s, void *alloc_ctx);
DFNDEF void dfn_sampler_free(dfn_sampler *smp, void *alloc_ctx);
#endif

/* The whole reverse process: x_T -> x_0 into x (n, dim). x_T (n, dim) is
   copied in when given (it may equal x); when NULL it is drawn from N(0, I)
   with rng. rng may be NULL only for a fully deterministic run (given x_T,
   DDIM with eta = 0). Errors: those of dfn_sampler_step, DFN_ERR_NOT_FINITE
   for a non-finite x_T, DFN_ERR_CANCELLED. */
DFNDEF dfn_result dfn_sampler_run(dfn_sampler *smp, float *x, const float *x_T, dfn_rng *rng);

/* One step, for users who run the loop themselves: i counts down from
   dfn_sampler_num_steps() to 1 and moves x in place from tau_i to tau_{i-1}.
   K calls with i = S..S-K+1 equal the first K steps of dfn_sampler_run, bit
   for bit. Errors: DFN_ERR_NULL (rng needed for a noisy step), i out of
   range, DFN_ERR_CALLBACK, DFN_ERR_NOT_FINITE (prediction not finite). */
DFNDEF dfn_result dfn_sampler_step(dfn_sampler *smp, int i, float *x, dfn_rng *rng);

/* S, and the timestep tau_i (i = 0..S; tau_0 = 0). */
DFNDEF int dfn_sampler_num_steps(const dfn_sampler *smp);
DFNDEF int dfn_sampler_timestep(const dfn_sampler *smp, int i);

/* Section 7: the DDIM subsequence into tau (S + 1 ints): tau[0] = 0 and
   tau[1..S] = tau_1 < ... < tau_S. Errors: DFN_ERR_NULL, DFN_ERR_INVALID_ARG
   (T < 1, S < 1, S > T, unknown spacing). */
DFNDEF dfn_result dfn_ddim_timesteps(int *tau, int T, int S, dfn_spacing spacing);

/* Section 6: sigma_t of the DDPM step, sqrt(betatilde_t) or sqrt(beta_t);
   0 when s is NULL or t is outside 1..T. */
DFNDEF float dfn_ddpm_sigma(const dfn_schedule *s, int t, dfn_variance variance);

/* Section 7: sigma of the DDIM step from t to t_prev (0 <= t_prev < t);
   0 for arguments out of range. */
DFNDEF float dfn_ddim_sigma(const dfn_schedule *s, int t, int t_prev, float eta);

/* Section 6: x_prev = mutilde_t(x0_hat, x_t) + sigma_t z over count values.
   z may be NULL (no noise; Algorithm 2 uses z = 0 at t = 1). x_prev may
   alias x_t. */
DFNDEF dfn_result dfn_ddpm_step(const dfn_schedule *s, float *x_prev, const float *x_t,
                                const float *x0_hat, const float *z,
                                int t, dfn_variance variance, size_t count);

/* Section 7: x_p = sqrt(alphabar_p) x0_hat + sqrt(1 - alphabar_p - sigma^2) eps_hat
   + sigma z, from t to t_prev = p (0 <= p < t). z may be NULL (no noise).
   For eta > 1, sigma^2 can exceed 1 - alphabar_p: the eps_hat coefficient is
   then clamped to 0. */
DFNDEF dfn_result dfn_ddim_step(const dfn_schedule *s, float *x_prev, const float *x0_hat,
                                const float *eps_hat, const float *z,
                                int t, int t_prev, float eta, size_t count);

/* ========================================================================= */
/*  Gaussian mixtures: data and their exact noise predictor (MATH.md sec. 9) */
/* ========================================================================= */

/* sum_k weights[k] N(means[k], stds[k]^2 I) in R^dim, 1 <= k <= DFN_GMM_MAX_K.
   Weights >= 0 need not sum to 1 (they are normalized); stds > 0. The struct
   only points at arrays. */
#define DFN_GMM_MAX_K 64
typedef struct dfn_gmm {
    int          k, dim;
    const float *weights;   /* (k)      */
    const float *means;     /* (k, dim) */
    const float *stds;      /* (k)      */
} dfn_gmm;

/* n draws into x (n, dim); the drawn component of each into component
   (n ints; may be NULL). */
DFNDEF dfn_result dfn_gmm_sample(const dfn_gmm *g, dfn_rng *rng, float *x, int *component, int n);

/* The Bayes-optimal eps(x_t, t) of section 9 for n points: responsibilities
   under the noised mixture, score, eps = -sqrt(1 - alphabar_t) score.
   labels (may be NULL) condition on one component: label k >= 0 uses only
   component k, -1 the whole mixture. Computed in double. */
DFNDEF dfn_result dfn_gmm_eps(const dfn_gmm *g, const dfn_schedule *s, float *eps,
                              const float *xt, const int *t, const int *labels, int n);

/* Adapter for samplers: user points at a dfn_gmm_predictor. Returns the
   dfn_result of dfn_gmm_eps. */
typedef struct dfn_gmm_predictor {
    const dfn_gmm      *gmm;
    const dfn_schedule *schedule;
} dfn_gmm_predictor;
DFNDEF int dfn_gmm_predict(void *user, const float *x_t, const int *t,
                           const int *labels, int n, float *out);

/* ========================================================================= */
/*  Sample quality (MATH.md section 10)                                      */
/* ========================================================================= */

/* ED^2 = 2 E||X - Y|| - E||X - X'|| - E||Y - Y'|| between x (n, dim) and
   y (m, dim), as a V-statistic (every pair, including i = j; never negative).
   O(n m dim). Errors: DFN_ERR_NULL, DFN_ERR_INVALID_ARG (n, m, dim < 1),
   DFN_ERR_NOT_FINITE. */
DFNDEF dfn_result dfn_energy_distance(double *ed2, const float *x, int n,
                                      const float *y, int m, int dim);

/* The same with the unbiased U-statistic (pairs i != j within each set):
   its expectation is the population ED^2 itself, so it does not carry the
   V-statistic's ~(E||X - X'|| / n + E||Y - Y'|| / m) offset and can be
   slightly negative for matching distributions. n, m >= 2. */
DFNDEF dfn_result dfn_energy_distance_unbiased(double *ed2, const float *x, int n,
                                               const float *y, int m, int dim);

#include "src/kernels_api.h"
#include "src/data_api.h"
#include "src/net_api.h"

#ifdef __cplusplus
}
#endif

#endif /* DIFFUSION_H */

/* ========================================================================= */
/* ========================================================================= */
/*                            IMPLEMENTATION                                 */
/* ========================================================================= */
/* ========================================================================= */

/* The implementation is emitted once per translation unit even when the header
   is included again with DIFFUSION_IMPLEMENTATION still defined (unity builds). */
#if defined(DIFFUSION_IMPLEMENTATION) && !defined(DFN__IMPLEMENTATION_DONE)
#define DFN__IMPLEMENTATION_DONE

#include <math.h>

#if defined(DFN_MALLOC) != defined(DFN_FREE)
#  error "diffusion.h: define both DFN_MALLOC and DFN_FREE, or neither"
#endif
#if !defined(DFN_MALLOC) && !defined(DFN_NO_MALLOC)
#  include <stdlib.h>
#  define DFN_MALLOC(sz, ctx) ((void)(ctx), malloc(sz))
#  define DFN_FREE(p, ctx)    ((void)(ctx), free(p))
#endif
#ifndef DFN_ASSERT
#  include <assert.h>
#  define DFN_ASSERT(x) assert(x)
#endif
#if !defined(DFN_MEMCPY) || !defined(DFN_MEMSET)
#  include <string.h>
#endif
#ifndef DFN_MEMCPY
#  define DFN_MEMCPY(d, s, n) memcpy(d, s, n)
#endif
#ifndef DFN_MEMSET
#  define DFN_MEMSET(d, v, n) memset(d, v, n)
#endif
#ifndef DFN_SQRTF
#  define DFN_SQRTF(x) sqrtf(x)
#endif
#ifndef DFN_EXPF
#  define DFN_EXPF(x) expf(x)
#endif
#ifndef DFN_LOGF
#  define DFN_LOGF(x) logf(x)
#endif
#ifndef DFN_SINF
#  define DFN_SINF(x) sinf(x)
#endif
#ifndef DFN_COSF
#  define DFN_COSF(x) cosf(x)
#endif
#ifndef DFN_TANHF
#  define DFN_TANHF(x) tanhf(x)
#endif
#ifndef DFN_SQRT
#  define DFN_SQRT(x) sqrt(x)
#endif
#ifndef DFN_EXP
#  define DFN_EXP(x) exp(x)
#endif
#ifndef DFN_LOG
#  define DFN_LOG(x) log(x)
#endif
#ifndef DFN_COS
#  define DFN_COS(x) cos(x)
#endif

#ifdef __cplusplus
extern "C" {
#endif

#define DFN__PI 3.14159265358979323846
#define DFN__ALIGN 64

/* ------------------------------------------------------------------------- */
/*  Small helpers                                                            */
/* ------------------------------------------------------------------------- */

/* Finite test on the bit pattern: correct even under -ffinite-math-only. */
static int dfn__finite(float x)
{
    uint32_t u;
    DFN_MEMCPY(&u, &x, sizeof u);
    return (u & 0x7f800000u) != 0x7f800000u;
}

static int dfn__all_finite(const float *x, size_t count)
{
    size_t i;
    for (i = 0; i < count; i++)
        if (!dfn__finite(x[i])) return 0;
    return 1;
}

/* count = n * dim without overflow (and small enough that (n*dim) * 16 bytes
   also fits). Returns 0 when it would not fit. */
static size_t dfn__count(int n, int dim)
{
    size_t limit = ((size_t)-1) / 64;
    if (n < 0 || dim < 0) return 0;
    if (dim != 0 && (size_t)n > limit / (size_t)dim) return 0;
    return (size_t)n * (size_t)dim;
}

/* A bump allocator over a caller buffer. With base == NULL it only measures:
   the same code computes the size query and carves the memory, so the two
   can never disagree. Every array starts on a DFN__ALIGN-byte address; the
   base itself is first moved up to one, hence the DFN__ALIGN - 1 bytes of
   slack in every size. */
typedef struct dfn__arena {
    unsigned char *base;   /* aligned start, or NULL when measuring */
    size_t used;
} dfn__arena;

static dfn__arena dfn__arena_begin(void *mem)
{
    dfn__arena a;
    size_t mis = (size_t)((uintptr_t)mem % DFN__ALIGN);
    a.base = mem ? (unsigned char *)mem + (mis ? DFN__ALIGN - mis : 0) : NULL;
    a.used = 0;
    return a;
}

static void *dfn__arena_take(dfn__arena *a, size_t bytes)
{
    size_t off = (a->used + (DFN__ALIGN - 1)) & ~(size_t)(DFN__ALIGN - 1);
    a->used = off + bytes;
    return a->base ? (void *)(a->base + off) : NULL;
}

/* Bytes a measured layout needs, including the alignment slack. */
static size_t dfn__arena_size(const dfn__arena *a)
{
    return a->used + (DFN__ALIGN - 1);
}

#include "src/kernels_impl.inc"

/* ------------------------------------------------------------------------- */
/*  Results                                                                  */
/* ------------------------------------------------------------------------- */

DFNDEF const char *dfn_result_string(dfn_result r)
{
    switch (r) {
    case DFN_OK:                   return "DFN_OK: success";
    case DFN_ERR_NULL:             return "DFN_ERR_NULL: a required pointer argument is NULL";
    case DFN_ERR_INVALID_ARG:      return "DFN_ERR_INVALID_ARG: a value is outside its documented range";
    case DFN_ERR_NOT_FINITE:       return "DFN_ERR_NOT_FINITE: NaN or infinity in an input or a prediction";
    case DFN_ERR_BUFFER_TOO_SMALL: return "DFN_ERR_BUFFER_TOO_SMALL: the buffer is smaller than the size query said";
    case DFN_ERR_OUT_OF_MEMORY:    return "DFN_ERR_OUT_OF_MEMORY: allocation failed";
    case DFN_ERR_CALLBACK:         return "DFN_ERR_CALLBACK: the prediction callback reported an error";
    case DFN_ERR_CANCELLED:        return "DFN_ERR_CANCELLED: the step callback asked to stop";
    case DFN_ERR_IO:               return "DFN_ERR_IO: a file could not be opened, read or written";
    case DFN_ERR_FORMAT:           return "DFN_ERR_FORMAT: malformed input (bad magic, truncated data or a bad line)";
    case DFN_ERR_VERSION:          return "DFN_ERR_VERSION: unsupported file format version";
    case DFN_ERR_CHECKSUM:         return "DFN_ERR_CHECKSUM: checksum mismatch, the file is corrupt";
    case DFN_ERR_MISMATCH:         return "DFN_ERR_MISMATCH: the file or object does not match the configuration";
    }
    return "unknown dfn_result";
}

/* ------------------------------------------------------------------------- */
/*  RNG                                                                      */
/* ------------------------------------------------------------------------- */

DFNDEF uint32_t dfn_rng_u32(dfn_rng *rng)
{
    /* PCG-XSH-RR: 64-bit LCG state, output a rotated xorshift of it. */
    uint64_t old = rng->state;
    uint32_t xorshifted, rot;
    rng->state = old * (((uint64_t)0x5851f42du << 32) | 0x4c957f2du) + rng->inc; /* 6364136223846793005 */
    xorshifted = (uint32_t)(((old >> 18) ^ old) >> 27);
    rot = (uint32_t)(old >> 59);
    return (xorshifted >> rot) | (xorshifted << ((32u - rot) & 31u));
}

DFNDEF void dfn_rng_seed(dfn_rng *rng, uint64_t seed, uint64_t stream)
{
    rng->state = 0;
    rng->inc = (stream << 1) | 1u;
    (void)dfn_rng_u32(rng);
    rng->state += seed;
    (void)dfn_rng_u32(rng);
    rng->spare = 0.0f;
    rng->has_spare = 0;
}

DFNDEF uint32_t dfn_rng_below(dfn_rng *rng, uint32_t bound)
{
    /* Lemire's multiply-and-reject: the high half of x * bound is uniform in
       [0, bound) once the low half avoids the short "leftover" range. */
    uint64_t m;
    uint32_t low, threshold;
    if (bound == 0) return 0;
    m = (uint64_t)dfn_rng_u32(rng) * bound;
    low = (uint32_t)m;
    if (low < bound) {
        threshold = (uint32_t)(0u - bound) % bound;
        while (low < threshold) {
            m = (uint64_t)dfn_rng_u32(rng) * bound;
            low = (uint32_t)m;
        }
    }
    return (uint32_t)(m >> 32);
}

DFNDEF float dfn_rng_uniform(dfn_rng *rng)
{
    return (float)(dfn_rng_u32(rng) >> 8) * (1.0f / 16777216.0f);
}

/* The normal generator works in fixed point so that every platform computes
   the same bits: integer operations are exact, and the only float operations
   (one int64 -> float conversion, one multiply by a power of two) are exact
   or correctly rounded everywhere.

   Box-Muller: with u1 in (0, 1] and u2 in [0, 1),
       r = sqrt(-2 ln u1),  theta = 2 pi u2,  z0 = r cos(theta),  z1 = r sin(theta). */

/* -log2(n / 2^32) for n in [1, 2^32], in Q32 fixed point (range [0, 32]).
   log2 of the mantissa comes one bit per squaring: if m in [1, 2) then
   m^2 in [1, 4), and m^2 >= 2 exactly when the next bit of log2 m is 1. */
static uint64_t dfn__neg_log2_q32(uint64_t n)
{
    int e = 0, i;
    uint64_t m, frac = 0;
    while (e < 32 && (n >> (e + 1)) != 0) e++;          /* e = floor(log2 n)   */
    m = (e <= 31) ? (n << (31 - e)) : (n >> (e - 31));   /* Q31, in [1, 2)      */
    for (i = 31; i >= 0; i--) {
        m = (m * m) >> 31;                               /* m^2, Q31, in [1, 4) */
        if (m >> 32) { m >>= 1; frac |= (uint64_t)1 << i; }
    }
    return ((uint64_t)(32 - e) << 32) - frac;            /* 32 - (e + log2 m)   */
}

/* floor(sqrt(v)), digit by digit. */
static uint64_t dfn__isqrt64(uint64_t v)
{
    uint64_t res = 0, bit = (uint64_t)1 << 62;
    while (bit > v) bit >>= 2;
    while (bit) {
        if (v >= res + bit) { v -= res + bit; res = (res >> 1) + bit; }
        else res >>= 1;
        bit >>= 2;
    }
    return res;
}

#define DFN__Q30 ((int64_t)1 << 30)
static int64_t dfn__mul_q30(int64_t a, int64_t b) { return (int64_t)(((uint64_t)(a * b)) >> 30); }

/* sin and cos of phi in [0, pi/4] (Q30), by their Taylor series in nested
   form: sin = phi (1 - p/(2*3) (1 - p/(4*5) (1 - p/(6*7) (1 - p/(8*9))))),
   cos = 1 - p/2 (1 - p/(3*4) (1 - p/(5*6) (1 - p/(7*8) (1 - p/(9*10))))),
   p = phi^2. Truncation error below 2e-9. All values stay in [0, 1]. */
static void dfn__sincos_q30(int64_t phi, int64_t *s, int64_t *c)
{
    int64_t p = dfn__mul_q30(phi, phi), a;
    a = DFN__Q30 - p / 72;
    a = DFN__Q30 - dfn__mul_q30(p, a) / 42;
    a = DFN__Q30 - dfn__mul_q30(p, a) / 20;
    a = DFN__Q30 - dfn__mul_q30(p, a) / 6;
    *s = dfn__mul_q30(phi, a);
    a = DFN__Q30 - p / 90;
    a = DFN__Q30 - dfn__mul_q30(p, a) / 56;
    a = DFN__Q30 - dfn__mul_q30(p, a) / 30;
    a = DFN__Q30 - dfn__mul_q30(p, a) / 12;
    *c = DFN__Q30 - dfn__mul_q30(p, a) / 2;
}

static void dfn__normal_pair(dfn_rng *rng, float *z0, float *z1)
{
    uint32_t a = dfn_rng_u32(rng), b = dfn_rng_u32(rng);
    /* L = -2 ln u1 = 2 ln2 * (-log2 u1) with u1 = (a + 1) / 2^32, in Q31. */
    const uint64_t two_ln2_q31 = 2977044472u;             /* round(2 ln 2 * 2^31) */
    uint64_t nl = dfn__neg_log2_q32((uint64_t)a + 1);
    uint64_t L = (nl >> 32) * two_ln2_q31 + (((nl & 0xffffffffu) * two_ln2_q31) >> 32);
    /* r = sqrt(L): L << 25 is Q56, so its integer square root is Q28. */
    int64_t r = (int64_t)dfn__isqrt64(L << 25);
    /* theta = 2 pi b / 2^32: quadrant q, angle alpha in [0, pi/2) within it,
       folded to [0, pi/4] (swapping sin and cos) for the series. */
    const uint64_t half_pi_q32 = 6746518852u;             /* round(pi/2 * 2^32)   */
    uint32_t q = b >> 30, frac = b & 0x3fffffffu;
    int64_t sa, ca, s, c, cos_t, sin_t;
    if (frac < (1u << 29)) {
        dfn__sincos_q30((int64_t)(((uint64_t)frac * half_pi_q32) >> 32), &s, &c);
        sa = s; ca = c;
    } else {
        dfn__sincos_q30((int64_t)(((uint64_t)((1u << 30) - frac) * half_pi_q32) >> 32), &s, &c);
        sa = c; ca = s;                                   /* alpha = pi/2 - phi   */
    }
    switch (q) {                                          /* theta = q pi/2 + alpha */
    case 0:  cos_t =  ca; sin_t =  sa; break;
    case 1:  cos_t = -sa; sin_t =  ca; break;
    case 2:  cos_t = -ca; sin_t = -sa; break;
    default: cos_t =  sa; sin_t = -ca; break;
    }
    /* r (Q28) * cos (Q30) is Q58; the conversion rounds once, the scaling
       by 2^-58 is exact. */
    *z0 = (float)(r * cos_t) * (1.0f / 288230376151711744.0f);
    *z1 = (float)(r * sin_t) * (1.0f / 288230376151711744.0f);
}

DFNDEF float dfn_rng_normal(dfn_rng *rng)
{
    float z0, z1;
    if (rng->has_spare) {
        rng->has_spare = 0;
        return rng->spare;
    }
    dfn__normal_pair(rng, &z0, &z1);
    rng->spare = z1;
    rng->has_spare = 1;
    return z0;
}

DFNDEF void dfn_rng_normal_fill(dfn_rng *rng, float *out, size_t n)
{
    size_t i = 0;
    if (n > 0 && rng->has_spare) {
        out[i++] = rng->spare;
        rng->has_spare = 0;
    }
    for (; i + 1 < n; i += 2) dfn__normal_pair(rng, &out[i], &out[i + 1]);
    if (i < n) out[i] = dfn_rng_normal(rng);
}

/* ------------------------------------------------------------------------- */
/*  Schedules (MATH.md section 2)                                            */
/* ------------------------------------------------------------------------- */

DFNDEF dfn_schedule_config dfn_schedule_config_default(dfn_schedule_kind kind, int T)
{
    dfn_schedule_config c;
    DFN_MEMSET(&c, 0, sizeof c);
    c.kind = kind;
    c.T = T;
    c.beta_start = 1e-4;
    c.beta_end = 0.02;
    c.cosine_s = 0.008;
    c.sigmoid_start = -3.0;
    c.sigmoid_end = 3.0;
    c.sigmoid_tau = 1.0;
    c.max_beta = 0.999;
    c.betas = NULL;
    c.zero_terminal_snr = 0;
    return c;
}

/* Lays out the T + 1 entry tables of s (or only measures, mem == NULL). */
static size_t dfn__schedule_layout(dfn_schedule *s, int T, void *mem)
{
    float **tables[9];
    dfn__arena a = dfn__arena_begin(mem);
    size_t i;
    tables[0] = &s->beta;               tables[1] = &s->alpha;
    tables[2] = &s->alphabar;           tables[3] = &s->sqrt_alphabar;
    tables[4] = &s->sqrt_one_minus_alphabar;
    tables[5] = &s->posterior_variance; tables[6] = &s->posterior_coef_x0;
    tables[7] = &s->posterior_coef_xt;  tables[8] = &s->snr;
    for (i = 0; i < 9; i++)
        *tables[i] = (float *)dfn__arena_take(&a, ((size_t)T + 1) * sizeof(float));
    return dfn__arena_size(&a);
}

DFNDEF size_t dfn_schedule_size(int T)
{
    dfn_schedule tmp;
    if (T < 1 || T > DFN_MAX_T) return 0;
    return dfn__schedule_layout(&tmp, T, NULL);
}

/* cosine: f(t) = cos^2(((t/T + s) / (1 + s)) pi/2) */
static double dfn__cosine_f(double t, int T, double s)
{
    double c = DFN_COS(((t / T + s) / (1.0 + s)) * DFN__PI / 2.0);
    return c * c;
}

/* sigmoid (Jabri et al.): alphabar(tau) = (sig(end/k) - sig((tau (end - start) + start)/k))
                                           / (sig(end/k) - sig(start/k)),  tau = t/T */
static double dfn__sigmoid_alphabar(double t, const dfn_schedule_config *c)
{
    double k = c->sigmoid_tau;
    double v_start = 1.0 / (1.0 + DFN_EXP(-c->sigmoid_start / k));
    double v_end = 1.0 / (1.0 + DFN_EXP(-c->sigmoid_end / k));
    double x = (t / c->T) * (c->sigmoid_end - c->sigmoid_start) + c->sigmoid_start;
    double v = 1.0 / (1.0 + DFN_EXP(-x / k));
    return (v_end - v) / (v_end - v_start);
}

/* beta_t of the schedule before any zero-terminal-SNR rescale, in double. */
static double dfn__raw_beta(const dfn_schedule_config *c, int t)
{
    double b, prev, cur;
    switch (c->kind) {
    case DFN_SCHEDULE_LINEAR: {
        double scale = 1000.0 / c->T;
        double b1 = c->beta_start * scale, bT = c->beta_end * scale;
        return c->T == 1 ? b1 : b1 + (bT - b1) * (double)(t - 1) / (double)(c->T - 1);
    }
    case DFN_SCHEDULE_COSINE:
        prev = dfn__cosine_f(t - 1, c->T, c->cosine_s);
        cur = dfn__cosine_f(t, c->T, c->cosine_s);
        break;                       /* alphabar_t / alphabar_{t-1} = f(t) / f(t-1) */
    case DFN_SCHEDULE_SIGMOID:
        prev = dfn__sigmoid_alphabar(t - 1, c);
        cur = dfn__sigmoid_alphabar(t, c);
        break;
    default:
        return (double)c->betas[t - 1];
    }
    b = prev > 0.0 ? 1.0 - cur / prev : 1.0;
    return b < c->max_beta ? b : c->max_beta;
}

static int dfn__open_unit(double x) { return x > 0.0 && x < 1.0; }  /* false for NaN */

static dfn_result dfn__schedule_check(const dfn_schedule_config *c)
{
    if (c->T < 1 || c->T > DFN_MAX_T) return DFN_ERR_INVALID_ARG;
    switch (c->kind) {
    case DFN_SCHEDULE_LINEAR:
        if (!dfn__open_unit(c->beta_start) || !dfn__open_unit(c->beta_end))
            return DFN_ERR_INVALID_ARG;
        break;
    case DFN_SCHEDULE_COSINE:
        if (!(c->cosine_s >= 0.0 && c->cosine_s < 1.0)) return DFN_ERR_INVALID_ARG;
        if (!dfn__open_unit(c->max_beta)) return DFN_ERR_INVALID_ARG;
        break;
    case DFN_SCHEDULE_SIGMOID:
        if (!(c->sigmoid_tau > 0.0) || !(c->sigmoid_end > c->sigmoid_start) ||
            !(c->sigmoid_end - c->sigmoid_start < 1e6) || !dfn__open_unit(c->max_beta))
            return DFN_ERR_INVALID_ARG;
        break;
    case DFN_SCHEDULE_CUSTOM:
        if (!c->betas) return DFN_ERR_NULL;
        break;
    default:
        return DFN_ERR_INVALID_ARG;
    }
    return DFN_OK;
}

DFNDEF dfn_result dfn_schedule_init(dfn_schedule *s, const dfn_schedule_config *cfg,
                                    void *mem, size_t bytes)
{
    dfn_result r;
    int t, T;
    double ab, ab_prev, a_first = 1.0, a_last = 0.0;
    if (!s || !cfg || !mem) return DFN_ERR_NULL;
    if ((r = dfn__schedule_check(cfg)) != DFN_OK) return r;
    T = cfg->T;
    if (bytes < dfn_schedule_size(T)) return DFN_ERR_BUFFER_TOO_SMALL;
    /* Validate every beta before writing anything. */
    for (t = 1; t <= T; t++)
        if (!dfn__open_unit(dfn__raw_beta(cfg, t))) return DFN_ERR_INVALID_ARG;

    if (cfg->zero_terminal_snr) {
        /* Lin et al. 2023, Algorithm 1: shift and scale sqrt(alphabar) so that
           sqrt(alphabar_T) = 0 while sqrt(alphabar_1) keeps its value. */
        if (T < 2) return DFN_ERR_INVALID_ARG;
        ab = 1.0;
        for (t = 1; t <= T; t++) {
            ab *= 1.0 - dfn__raw_beta(cfg, t);
            if (t == 1) a_first = DFN_SQRT(ab);
        }
        a_last = DFN_SQRT(ab);
        if (!(a_first > a_last)) return DFN_ERR_INVALID_ARG;
    }

    DFN_MEMSET(s, 0, sizeof *s);
    s->T = T;
    s->config = *cfg;
    s->config.betas = NULL;
    s->memory = mem;
    dfn__schedule_layout(s, T, mem);

    /* Row 0: the clean data. */
    s->beta[0] = 0.0f;            s->alpha[0] = 1.0f;
    s->alphabar[0] = 1.0f;        s->sqrt_alphabar[0] = 1.0f;
    s->sqrt_one_minus_alphabar[0] = 0.0f;
    s->posterior_variance[0] = 0.0f;
    s->posterior_coef_x0[0] = 1.0f;  s->posterior_coef_xt[0] = 0.0f;
    s->snr[0] = (float)HUGE_VAL;

    ab = 1.0;                       /* alphabar_{t-1} of the raw schedule      */
    ab_prev = 1.0;                  /* alphabar_{t-1} of the final schedule    */
    for (t = 1; t <= T; t++) {
        double beta, alphabar;
        ab *= 1.0 - dfn__raw_beta(cfg, t);
        if (cfg->zero_terminal_snr) {
            double sq = (DFN_SQRT(ab) - a_last) * a_first / (a_first - a_last);
            if (t == T) sq = 0.0;
            alphabar = sq * sq;
            beta = 1.0 - alphabar / ab_prev;   /* beta_T = 1 exactly */
        } else {
            alphabar = ab;
            beta = dfn__raw_beta(cfg, t);
        }
        /* Section 1 */
        s->beta[t] = (float)beta;
        s->alpha[t] = (float)(1.0 - beta);
        s->alphabar[t] = (float)alphabar;
        s->sqrt_alphabar[t] = (float)DFN_SQRT(alphabar);
        s->sqrt_one_minus_alphabar[t] = (float)DFN_SQRT(1.0 - alphabar);
        s->snr[t] = (float)(alphabar / (1.0 - alphabar));
        /* Section 3: q(x_{t-1} | x_t, x_0) = N(c_x0 x_0 + c_xt x_t, betatilde_t) */
        s->posterior_variance[t] = (float)(beta * (1.0 - ab_prev) / (1.0 - alphabar));
        s->posterior_coef_x0[t] = (float)(DFN_SQRT(ab_prev) * beta / (1.0 - alphabar));
        s->posterior_coef_xt[t] = (float)(DFN_SQRT(1.0 - beta) * (1.0 - ab_prev) / (1.0 - alphabar));
        ab_prev = alphabar;
    }
    return DFN_OK;
}

#ifndef DFN_NO_MALLOC
DFNDEF dfn_result dfn_schedule_alloc(dfn_schedule *s, const dfn_schedule_config *cfg,
                                     void *alloc_ctx)
{
    dfn_result r;
    size_t bytes;
    void *mem;
    if (!s || !cfg) return DFN_ERR_NULL;
    DFN_MEMSET(s, 0, sizeof *s);
    if ((r = dfn__schedule_check(cfg)) != DFN_OK) return r;
    bytes = dfn_schedule_size(cfg->T);
    mem = DFN_MALLOC(bytes, alloc_ctx);
    if (!mem) return DFN_ERR_OUT_OF_MEMORY;
    r = dfn_schedule_init(s, cfg, mem, bytes);
    if (r != DFN_OK) {
        DFN_FREE(mem, alloc_ctx);
        DFN_MEMSET(s, 0, sizeof *s);
    }
    return r;
}

DFNDEF void dfn_schedule_free(dfn_schedule *s, void *alloc_ctx)
{
    (void)alloc_ctx;
    if (!s) return;
    if (s->memory) DFN_FREE(s->memory, alloc_ctx);
    DFN_MEMSET(s, 0, sizeof *s);
}
#endif

/* ------------------------------------------------------------------------- */
/*  Forward process and parameterizations (MATH.md sections 1, 3, 4, 5)      */
/* ------------------------------------------------------------------------- */

/* Common argument checks of the batched forward-process functions. */
static dfn_result dfn__check_batch(const dfn_schedule *s, const int *t, int n, int dim)
{
    int i;
    if (!s || !s->alphabar) return DFN_ERR_NULL;
    if (n < 0 || dim < 1 || (n > 0 && dfn__count(n, dim) == 0)) return DFN_ERR_INVALID_ARG;
    if (n > 0 && !t) return DFN_ERR_NULL;
    for (i = 0; i < n; i++)
        if (t[i] < 1 || t[i] > s->T) return DFN_ERR_INVALID_ARG;
    return DFN_OK;
}

DFNDEF dfn_result dfn_q_sample(const dfn_schedule *s, float *xt,
                               const float *x0, const float *eps,
                               const int *t, int n, int dim)
{
    int i, j;
    dfn_result r = dfn__check_batch(s, t, n, dim);
    if (r != DFN_OK) return r;
    if (n > 0 && (!xt || !x0 || !eps)) return DFN_ERR_NULL;
    for (i = 0; i < n; i++) {
        /* Section 1: x_t = sqrt(alphabar_t) x_0 + sqrt(1 - alphabar_t) eps */
        float a = s->sqrt_alphabar[t[i]], b = s->sqrt_one_minus_alphabar[t[i]];
        size_t o = (size_t)i * dim;
        for (j = 0; j < dim; j++) xt[o + j] = a * x0[o + j] + b * eps[o + j];
    }
    return DFN_OK;
}

DFNDEF dfn_result dfn_q_posterior(const dfn_schedule *s, float *mean, float *var,
                                  const float *x0, const float *xt,
                                  const int *t, int n, int dim)
{
    int i, j;
    dfn_result r = dfn__check_batch(s, t, n, dim);
    if (r != DFN_OK) return r;
    if (n > 0 && (!mean || !x0 || !xt)) return DFN_ERR_NULL;
    for (i = 0; i < n; i++) {
        /* Section 3: mutilde_t = c_x0 x_0 + c_xt x_t, variance betatilde_t */
        float c0 = s->posterior_coef_x0[t[i]], ct = s->posterior_coef_xt[t[i]];
        size_t o = (size_t)i * dim;
        for (j = 0; j < dim; j++) mean[o + j] = c0 * x0[o + j] + ct * xt[o + j];
        if (var) var[i] = s->posterior_variance[t[i]];
    }
    return DFN_OK;
}

/* Section 4 for count values sharing one timestep t. */
static void dfn__to_x0_eps(const dfn_schedule *s, dfn_prediction kind, int t,
                           float *x0_hat, float *eps_hat,
                           const float *pred, const float *xt, size_t count)
{
    float a = s->sqrt_alphabar[t], b = s->sqrt_one_minus_alphabar[t];
    size_t j;
    for (j = 0; j < count; j++) {
        float p = pred[j], x = xt[j], x0, eps;
        switch (kind) {
        case DFN_PREDICT_EPS:  /* x0 = (x_t - sqrt(1 - ab) eps) / sqrt(ab) */
            eps = p;
            x0 = (x - b * eps) / a;
            break;
        case DFN_PREDICT_V:    /* x0 = sqrt(ab) x_t - sqrt(1 - ab) v; eps = sqrt(1 - ab) x_t + sqrt(ab) v */
            x0 = a * x - b * p;
            eps = b * x + a * p;
            break;
        default:               /* x0-prediction; eps = (x_t - sqrt(ab) x0) / sqrt(1 - ab) */
            x0 = p;
            eps = (x - a * x0) / b;
            break;
        }
        if (x0_hat) x0_hat[j] = x0;
        if (eps_hat) eps_hat[j] = eps;
    }
}

DFNDEF dfn_result dfn_prediction_to_x0_eps(const dfn_schedule *s, dfn_prediction kind,
                                           float *x0_hat, float *eps_hat,
                                           const float *pred, const float *xt,
                                           const int *t, int n, int dim)
{
    int i;
    dfn_result r = dfn__check_batch(s, t, n, dim);
    if (r != DFN_OK) return r;
    if (kind != DFN_PREDICT_EPS && kind != DFN_PREDICT_V && kind != DFN_PREDICT_X0)
        return DFN_ERR_INVALID_ARG;
    if (n > 0 && (!pred || !xt)) return DFN_ERR_NULL;
    for (i = 0; i < n; i++)
        if (kind == DFN_PREDICT_EPS && s->sqrt_alphabar[t[i]] == 0.0f) return DFN_ERR_INVALID_ARG;
    for (i = 0; i < n; i++) {
        size_t o = (size_t)i * dim;
        dfn__to_x0_eps(s, kind, t[i], x0_hat ? x0_hat + o : NULL, eps_hat ? eps_hat + o : NULL,
                       pred + o, xt + o, (size_t)dim);
    }
    return DFN_OK;
}

DFNDEF dfn_result dfn_prediction_target(const dfn_schedule *s, dfn_prediction kind,
                                        float *target, const float *x0, const float *eps,
                                        const int *t, int n, int dim)
{
    int i, j;
    dfn_result r = dfn__check_batch(s, t, n, dim);
    if (r != DFN_OK) return r;
    if (kind != DFN_PREDICT_EPS && kind != DFN_PREDICT_V && kind != DFN_PREDICT_X0)
        return DFN_ERR_INVALID_ARG;
    if (n > 0 && (!target || !x0 || !eps)) return DFN_ERR_NULL;
    for (i = 0; i < n; i++) {
        float a = s->sqrt_alphabar[t[i]], b = s->sqrt_one_minus_alphabar[t[i]];
        size_t o = (size_t)i * dim;
        for (j = 0; j < dim; j++) {
            float e = eps[o + j], x = x0[o + j];
            /* Section 5: the target is eps itself, v = sqrt(ab) eps - sqrt(1 - ab) x0, or x0 */
            target[o + j] = kind == DFN_PREDICT_EPS ? e : kind == DFN_PREDICT_V ? a * e - b * x : x;
        }
    }
    return DFN_OK;
}

/* ------------------------------------------------------------------------- */
/*  Sampler steps (MATH.md sections 6, 7)                                    */
/* ------------------------------------------------------------------------- */

DFNDEF dfn_result dfn_ddim_timesteps(int *tau, int T, int S, dfn_spacing spacing)
{
    int i;
    if (!tau) return DFN_ERR_NULL;
    if (T < 1 || S < 1 || S > T) return DFN_ERR_INVALID_ARG;
    if (spacing != DFN_SPACING_LINSPACE && spacing != DFN_SPACING_LEADING &&
        spacing != DFN_SPACING_TRAILING)
        return DFN_ERR_INVALID_ARG;
    tau[0] = 0;
    for (i = 1; i <= S; i++) {
        /* round(x) = floor(x + 0.5), done in exact integer arithmetic:
           floor(a / b + 1/2) = floor((2a + b) / (2b)). */
        int64_t ii = i, TT = T, SS = S;
        switch (spacing) {
        case DFN_SPACING_LINSPACE: /* round(1 + (i - 1)(T - 1)/(S - 1)); S = 1: T */
            tau[i] = S == 1 ? T : (int)(1 + (2 * (ii - 1) * (TT - 1) + (SS - 1)) / (2 * (SS - 1)));
            break;
        case DFN_SPACING_LEADING:  /* 1 + (i - 1) floor(T/S) */
            tau[i] = (int)(1 + (ii - 1) * (TT / SS));
            break;
        default:                   /* round(i T / S) */
            tau[i] = (int)((2 * ii * TT + SS) / (2 * SS));
            break;
        }
    }
    return DFN_OK;
}

DFNDEF float dfn_ddpm_sigma(const dfn_schedule *s, int t, dfn_variance variance)
{
    if (!s || t < 1 || t > s->T) return 0.0f;
    return (float)DFN_SQRT(variance == DFN_VARIANCE_LARGE ? (double)s->beta[t]
                                                          : (double)s->posterior_variance[t]);
}

/* sigma^2 of section 7 in double: eta^2 (1 - ab_p)/(1 - ab_t) (1 - ab_t/ab_p). */
static double dfn__ddim_var(const dfn_schedule *s, int t, int p, double eta)
{
    double ab_t = s->alphabar[t], ab_p = s->alphabar[p];
    double v = eta * eta * ((1.0 - ab_p) / (1.0 - ab_t)) * (1.0 - ab_t / ab_p);
    return v > 0.0 ? v : 0.0;
}

DFNDEF float dfn_ddim_sigma(const dfn_schedule *s, int t, int t_prev, float eta)
{
    if (!s || t < 1 || t > s->T || t_prev < 0 || t_prev >= t || !(eta >= 0.0f)) return 0.0f;
    return (float)DFN_SQRT(dfn__ddim_var(s, t, t_prev, eta));
}

DFNDEF dfn_result dfn_ddpm_step(const dfn_schedule *s, float *x_prev, const float *x_t,
                                const float *x0_hat, const float *z,
                                int t, dfn_variance variance, size_t count)
{
    float c0, ct, sigma;
    size_t j;
    if (!s || !s->alphabar) return DFN_ERR_NULL;
    if (t < 1 || t > s->T) return DFN_ERR_INVALID_ARG;
    if (variance != DFN_VARIANCE_SMALL && variance != DFN_VARIANCE_LARGE) return DFN_ERR_INVALID_ARG;
    if (count > 0 && (!x_prev || !x_t || !x0_hat)) return DFN_ERR_NULL;
    /* Section 6: x_{t-1} = mutilde_t(x0_hat, x_t) + sigma_t z, where
       mutilde_t = c_x0 x0_hat + c_xt x_t (section 3). With x0_hat from eps
       this is exactly Algorithm 2:
       (1/sqrt(alpha_t)) (x_t - beta_t / sqrt(1 - alphabar_t) eps_hat) + sigma_t z. */
    c0 = s->posterior_coef_x0[t];
    ct = s->posterior_coef_xt[t];
    sigma = dfn_ddpm_sigma(s, t, variance);
    if (z) {
        for (j = 0; j < count; j++) x_prev[j] = c0 * x0_hat[j] + ct * x_t[j] + sigma * z[j];
    } else {
        for (j = 0; j < count; j++) x_prev[j] = c0 * x0_hat[j] + ct * x_t[j];
    }
    return DFN_OK;
}

DFNDEF dfn_result dfn_ddim_step(const dfn_schedule *s, float *x_prev, const float *x0_hat,
                                const float *eps_hat, const float *z,
                                int t, int t_prev, float eta, size_t count)
{
    double var, dir;
    float a, d, sigma;
    size_t j;
    if (!s || !s->alphabar) return DFN_ERR_NULL;
    if (t < 1 || t > s->T || t_prev < 0 || t_prev >= t) return DFN_ERR_INVALID_ARG;
    if (!(eta >= 0.0f) || !dfn__finite(eta)) return DFN_ERR_INVALID_ARG;
    if (count > 0 && (!x_prev || !x0_hat || !eps_hat)) return DFN_ERR_NULL;
    /* Section 7: x_p = sqrt(ab_p) x0_hat + sqrt(1 - ab_p - sigma^2) eps_hat + sigma z */
    var = dfn__ddim_var(s, t, t_prev, eta);
    dir = 1.0 - (double)s->alphabar[t_prev] - var;
    a = s->sqrt_alphabar[t_prev];
    d = (float)DFN_SQRT(dir > 0.0 ? dir : 0.0);
    sigma = (float)DFN_SQRT(var);
    if (z) {
        for (j = 0; j < count; j++) x_prev[j] = a * x0_hat[j] + d * eps_hat[j] + sigma * z[j];
    } else {
        for (j = 0; j < count; j++) x_prev[j] = a * x0_hat[j] + d * eps_hat[j];
    }
    return DFN_OK;
}

/* ------------------------------------------------------------------------- */
/*  The sampler object                                                       */
/* ------------------------------------------------------------------------- */

DFNDEF dfn_sampler_config dfn_sampler_config_default(dfn_sampler_kind kind, int n, int dim,
                                                     dfn_predict_fn predict, void *user)
{
    dfn_sampler_config c;
    DFN_MEMSET(&c, 0, sizeof c);
    c.kind = kind;
    c.n = n;
    c.dim = dim;
    c.predict = predict;
    c.predict_user = user;
    c.prediction = DFN_PREDICT_EPS;
    c.labels = NULL;
    c.variance = DFN_VARIANCE_SMALL;
    c.steps = 50;
    c.eta = 0.0f;
    c.spacing = DFN_SPACING_TRAILING;
    c.clip_x0 = 0;
    c.clip_min = -1.0f;
    c.clip_max = 1.0f;
    c.on_step = NULL;
    c.on_step_user = NULL;
    return c;
}

/* S of a configuration: T for DDPM, min(steps, T) is NOT applied silently:
   steps outside 1..T is an error. */
static int dfn__sampler_steps(const dfn_sampler_config *c, const dfn_schedule *s)
{
    return c->kind == DFN_SAMPLER_DDPM ? s->T : c->steps;
}

static dfn_result dfn__sampler_check(const dfn_sampler_config *c, const dfn_schedule *s)
{
    int S, i;
    if (!c || !s || !s->alphabar) return DFN_ERR_NULL;
    if (!c->predict) return DFN_ERR_NULL;
    if (c->kind != DFN_SAMPLER_DDPM && c->kind != DFN_SAMPLER_DDIM) return DFN_ERR_INVALID_ARG;
    if (c->n < 1 || c->dim < 1 || dfn__count(c->n, c->dim) == 0) return DFN_ERR_INVALID_ARG;
    if (c->prediction != DFN_PREDICT_EPS && c->prediction != DFN_PREDICT_V &&
        c->prediction != DFN_PREDICT_X0)
        return DFN_ERR_INVALID_ARG;
    if (c->variance != DFN_VARIANCE_SMALL && c->variance != DFN_VARIANCE_LARGE)
        return DFN_ERR_INVALID_ARG;
    if (c->kind == DFN_SAMPLER_DDIM) {
        if (c->spacing != DFN_SPACING_LINSPACE && c->spacing != DFN_SPACING_LEADING &&
            c->spacing != DFN_SPACING_TRAILING)
            return DFN_ERR_INVALID_ARG;
        if (!(c->eta >= 0.0f) || !dfn__finite(c->eta)) return DFN_ERR_INVALID_ARG;
    }
    S = dfn__sampler_steps(c, s);
    if (S < 1 || S > s->T) return DFN_ERR_INVALID_ARG;
    if (c->clip_x0 && !(c->clip_min < c->clip_max && dfn__finite(c->clip_min) &&
                        dfn__finite(c->clip_max)))
        return DFN_ERR_INVALID_ARG;
    /* x0_hat from an eps prediction divides by sqrt(alphabar_t). */
    if (c->prediction == DFN_PREDICT_EPS && s->alphabar[s->T] == 0.0f) return DFN_ERR_INVALID_ARG;
    if (c->labels)
        for (i = 0; i < c->n; i++)
            if (c->labels[i] < -1) return DFN_ERR_INVALID_ARG;
    return DFN_OK;
}

static size_t dfn__sampler_layout(dfn_sampler *smp, const dfn_sampler_config *c,
                                  const dfn_schedule *s, void *mem)
{
    dfn__arena a = dfn__arena_begin(mem);
    size_t count = (size_t)c->n * (size_t)c->dim, f = count * sizeof(float);
    smp->tau = (int *)dfn__arena_take(&a, ((size_t)dfn__sampler_steps(c, s) + 1) * sizeof(int));
    smp->t = (int *)dfn__arena_take(&a, (size_t)c->n * sizeof(int));
    smp->labels = (int *)dfn__arena_take(&a, (size_t)c->n * sizeof(int));
    smp->model_out = (float *)dfn__arena_take(&a, f);
    smp->x0_hat = (float *)dfn__arena_take(&a, f);
    smp->eps_hat = (float *)dfn__arena_take(&a, f);
    smp->z = (float *)dfn__arena_take(&a, f);
    return dfn__arena_size(&a);
}

DFNDEF size_t dfn_sampler_size(const dfn_sampler_config *cfg, const dfn_schedule *s)
{
    dfn_sampler tmp;
    if (dfn__sampler_check(cfg, s) != DFN_OK) return 0;
    return dfn__sampler_layout(&tmp, cfg, s, NULL);
}

DFNDEF dfn_result dfn_sampler_init(dfn_sampler *smp, const dfn_sampler_config *cfg,
                                   const dfn_schedule *s, void *mem, size_t bytes)
{
    dfn_result r;
    int i;
    if (!smp || !mem) return DFN_ERR_NULL;
    if ((r = dfn__sampler_check(cfg, s)) != DFN_OK) return r;
    if (bytes < dfn_sampler_size(cfg, s)) return DFN_ERR_BUFFER_TOO_SMALL;
    DFN_MEMSET(smp, 0, sizeof *smp);
    smp->cfg = *cfg;
    smp->schedule = s;
    smp->memory = mem;
    smp->steps = dfn__sampler_steps(cfg, s);
    dfn__sampler_layout(smp, cfg, s, mem);
    if (cfg->kind == DFN_SAMPLER_DDPM) {
        for (i = 0; i <= smp->steps; i++) smp->tau[i] = i;   /* every t = T..1 */
    } else {
        r = dfn_ddim_timesteps(smp->tau, s->T, smp->steps, cfg->spacing);
        DFN_ASSERT(r == DFN_OK);
    }
    for (i = 0; i < cfg->n; i++) smp->labels[i] = cfg->labels ? cfg->labels[i] : -1;
    smp->cfg.labels = smp->labels;
    return DFN_OK;
}

#ifndef DFN_NO_MALLOC
DFNDEF dfn_result dfn_sampler_alloc(dfn_sampler *smp, const dfn_sampler_config *cfg,
                                    const dfn_schedule *s, void *alloc_ctx)
{
    dfn_result r;
    size_t bytes;
    void *mem;
    if (!smp) return DFN_ERR_NULL;
    DFN_MEMSET(smp, 0, sizeof *smp);
    if ((r = dfn__sampler_check(cfg, s)) != DFN_OK) return r;
    bytes = dfn_sampler_size(cfg, s);
    mem = DFN_MALLOC(bytes, alloc_ctx);
    if (!mem) return DFN_ERR_OUT_OF_MEMORY;
    r = dfn_sampler_init(smp, cfg, s, mem, bytes);
    if (r != DFN_OK) {
        DFN_FREE(mem, alloc_ctx);
        DFN_MEMSET(smp, 0, sizeof *smp);
    }
    return r;
}

DFNDEF void dfn_sampler_free(dfn_sampler *smp, void *alloc_ctx)
{
    (void)alloc_ctx;
    if (!smp) return;
    if (smp->memory) DFN_FREE(smp->memory, alloc_ctx);
    DFN_MEMSET(smp, 0, sizeof *smp);
}
#endif

DFNDEF int dfn_sampler_num_steps(const dfn_sampler *smp)
{
    return smp ? smp->steps : 0;
}

DFNDEF int dfn_sampler_timestep(const dfn_sampler *smp, int i)
{
    if (!smp || !smp->tau || i < 0 || i > smp->steps) return -1;
    return smp->tau[i];
}

DFNDEF dfn_result dfn_sampler_step(dfn_sampler *smp, int i, float *x, dfn_rng *rng)
{
    const dfn_schedule *s;
    const dfn_sampler_config *c;
    size_t count, j;
    int t, p, k, noisy;
    if (!smp || !smp->schedule || !x) return DFN_ERR_NULL;
    if (i < 1 || i > smp->steps) return DFN_ERR_INVALID_ARG;
    s = smp->schedule;
    c = &smp->cfg;
    count = (size_t)c->n * (size_t)c->dim;
    t = smp->tau[i];
    p = smp->tau[i - 1];
    /* Algorithm 2 draws z only for t > 1; DDIM only when sigma > 0. */
    noisy = c->kind == DFN_SAMPLER_DDPM ? t > 1 : dfn__ddim_var(s, t, p, c->eta) > 0.0;
    if (noisy && !rng) return DFN_ERR_NULL;

    /* The model's prediction at t, as x0_hat and eps_hat (section 4). */
    for (k = 0; k < c->n; k++) smp->t[k] = t;
    if (c->predict(c->predict_user, x, smp->t, smp->labels, c->n, smp->model_out) != 0)
        return DFN_ERR_CALLBACK;
    if (!dfn__all_finite(smp->model_out, count)) return DFN_ERR_NOT_FINITE;
    dfn__to_x0_eps(s, c->prediction, t, smp->x0_hat, smp->eps_hat, smp->model_out, x, count);
    if (c->clip_x0) {
        /* Clamp x0_hat to the data range, then the eps it implies with x_t. */
        float a = s->sqrt_alphabar[t], b = s->sqrt_one_minus_alphabar[t];
        for (j = 0; j < count; j++) {
            float v = smp->x0_hat[j];
            v = v < c->clip_min ? c->clip_min : v > c->clip_max ? c->clip_max : v;
            smp->x0_hat[j] = v;
            smp->eps_hat[j] = (x[j] - a * v) / b;
        }
    }

    if (noisy) dfn_rng_normal_fill(rng, smp->z, count);
    if (c->kind == DFN_SAMPLER_DDPM)
        return dfn_ddpm_step(s, x, x, smp->x0_hat, noisy ? smp->z : NULL, t, c->variance, count);
    return dfn_ddim_step(s, x, smp->x0_hat, smp->eps_hat, noisy ? smp->z : NULL, t, p, c->eta, count);
}

DFNDEF dfn_result dfn_sampler_run(dfn_sampler *smp, float *x, const float *x_T, dfn_rng *rng)
{
    size_t count;
    dfn_result r;
    int i;
    if (!smp || !smp->schedule || !x) return DFN_ERR_NULL;
    count = (size_t)smp->cfg.n * (size_t)smp->cfg.dim;
    if (x_T) {
        if (!dfn__all_finite(x_T, count)) return DFN_ERR_NOT_FINITE;
        if (x_T != x) DFN_MEMCPY(x, x_T, count * sizeof(float));
    } else {
        if (!rng) return DFN_ERR_NULL;
        dfn_rng_normal_fill(rng, x, count);           /* x_T ~ N(0, I) */
    }
    for (i = smp->steps; i >= 1; i--) {
        if ((r = dfn_sampler_step(smp, i, x, rng)) != DFN_OK) return r;
        if (smp->cfg.on_step) {
            dfn_step_info info;
            info.i = i;
            info.steps = smp->steps;
            info.t = smp->tau[i];
            info.t_prev = smp->tau[i - 1];
            info.n = smp->cfg.n;
            info.dim = smp->cfg.dim;
            info.x = x;
            info.x0_hat = smp->x0_hat;
            if (smp->cfg.on_step(smp->cfg.on_step_user, &info) != 0) return DFN_ERR_CANCELLED;
        }
    }
    return DFN_OK;
}

/* ------------------------------------------------------------------------- */
/*  Gaussian mixtures (MATH.md section 9)                                    */
/* ------------------------------------------------------------------------- */

static dfn_result dfn__gmm_check(const dfn_gmm *g)
{
    int k;
    double total = 0.0;
    if (!g || !g->weights || !g->means || !g->stds) return DFN_ERR_NULL;
    if (g->k < 1 || g->k > DFN_GMM_MAX_K || g->dim < 1 || dfn__count(g->k, g->dim) == 0)
        return DFN_ERR_INVALID_ARG;
    for (k = 0; k < g->k; k++) {
        if (!(g->weights[k] >= 0.0f) || !dfn__finite(g->weights[k])) return DFN_ERR_INVALID_ARG;
        if (!(g->stds[k] > 0.0f) || !dfn__finite(g->stds[k])) return DFN_ERR_INVALID_ARG;
        total += g->weights[k];
    }
    if (!(total > 0.0)) return DFN_ERR_INVALID_ARG;
    if (!dfn__all_finite(g->means, (size_t)g->k * g->dim)) return DFN_ERR_NOT_FINITE;
    return DFN_OK;
}

DFNDEF dfn_result dfn_gmm_sample(const dfn_gmm *g, dfn_rng *rng, float *x, int *component, int n)
{
    int i, j, k;
    double total = 0.0;
    dfn_result r = dfn__gmm_check(g);
    if (r != DFN_OK) return r;
    if (!rng || (n > 0 && !x)) return DFN_ERR_NULL;
    if (n < 0 || (n > 0 && dfn__count(n, g->dim) == 0)) return DFN_ERR_INVALID_ARG;
    for (k = 0; k < g->k; k++) total += g->weights[k];
    for (i = 0; i < n; i++) {
        /* Pick k with probability weights[k] / total, then x ~ N(mu_k, s_k^2 I). */
        double u = dfn_rng_uniform(rng) * total, acc = 0.0;
        for (k = 0; k < g->k - 1; k++) {
            acc += g->weights[k];
            if (u < acc) break;
        }
        while (g->weights[k] == 0.0f && k > 0) k--;   /* never land on a zero weight */
        for (j = 0; j < g->dim; j++)
            x[(size_t)i * g->dim + j] = g->means[(size_t)k * g->dim + j] + g->stds[k] * dfn_rng_normal(rng);
        if (component) component[i] = k;
    }
    return DFN_OK;
}

DFNDEF dfn_result dfn_gmm_eps(const dfn_gmm *g, const dfn_schedule *s, float *eps,
                              const float *xt, const int *t, const int *labels, int n)
{
    double var[DFN_GMM_MAX_K], logc[DFN_GMM_MAX_K], w[DFN_GMM_MAX_K];
    double total = 0.0;
    int i, j, k, cached_t = -1;
    dfn_result r = dfn__gmm_check(g);
    if (r != DFN_OK) return r;
    if ((r = dfn__check_batch(s, t, n, g->dim)) != DFN_OK) return r;
    if (n > 0 && (!eps || !xt)) return DFN_ERR_NULL;
    for (k = 0; k < g->k; k++) total += g->weights[k];
    for (i = 0; i < n; i++)
        if (labels && (labels[i] < -1 || labels[i] >= g->k ||
                       (labels[i] >= 0 && g->weights[labels[i]] == 0.0f)))
            return DFN_ERR_INVALID_ARG;
    for (i = 0; i < n; i++) {
        const float *x = xt + (size_t)i * g->dim;
        float *e = eps + (size_t)i * g->dim;
        double ab = s->alphabar[t[i]], sab = s->sqrt_alphabar[t[i]];
        double s1m = s->sqrt_one_minus_alphabar[t[i]];
        double best = -HUGE_VAL, norm = 0.0;
        int only = labels ? labels[i] : -1;
        int k0 = only >= 0 ? only : 0, k1 = only >= 0 ? only + 1 : g->k;
        /* x_t ~ sum_k pi_k N(sqrt(ab) mu_k, v_k I), v_k = ab s_k^2 + 1 - ab.
           v_k and log(pi_k) - dim/2 log(v_k) depend on t only. */
        if (t[i] != cached_t) {
            for (k = 0; k < g->k; k++) {
                var[k] = ab * g->stds[k] * g->stds[k] + s1m * s1m;
                logc[k] = g->weights[k] > 0.0f
                        ? DFN_LOG(g->weights[k] / total) - 0.5 * g->dim * DFN_LOG(var[k]) : -HUGE_VAL;
            }
            cached_t = t[i];
        }
        /* responsibilities r_k = softmax_k(log p_k(x_t)) */
        for (k = k0; k < k1; k++) {
            double d2 = 0.0;
            for (j = 0; j < g->dim; j++) {
                double d = x[j] - sab * g->means[(size_t)k * g->dim + j];
                d2 += d * d;
            }
            w[k] = logc[k] - 0.5 * d2 / var[k];
            if (w[k] > best) best = w[k];
        }
        for (k = k0; k < k1; k++) {
            w[k] = w[k] > -HUGE_VAL ? DFN_EXP(w[k] - best) : 0.0;
            norm += w[k];
        }
        /* eps = -sqrt(1 - ab) score, score = sum_k r_k (-(x - sqrt(ab) mu_k) / v_k) */
        for (j = 0; j < g->dim; j++) {
            double acc = 0.0;
            for (k = k0; k < k1; k++)
                acc += w[k] * (x[j] - sab * g->means[(size_t)k * g->dim + j]) / var[k];
            e[j] = (float)(s1m * acc / norm);
        }
    }
    return DFN_OK;
}

DFNDEF int dfn_gmm_predict(void *user, const float *x_t, const int *t,
                           const int *labels, int n, float *out)
{
    const dfn_gmm_predictor *p = (const dfn_gmm_predictor *)user;
    if (!p) return (int)DFN_ERR_NULL;
    return (int)dfn_gmm_eps(p->gmm, p->schedule, out, x_t, t, labels, n);
}

/* ------------------------------------------------------------------------- */
/*  Energy distance (MATH.md section 10)                                     */
/* ------------------------------------------------------------------------- */

/* Mean of ||a_i - b_j|| over all pairs. */
static double dfn__mean_dist(const float *a, int na, const float *b, int nb, int dim)
{
    double sum = 0.0;
    int i, j, k;
    for (i = 0; i < na; i++) {
        const float *ai = a + (size_t)i * dim;
        double row = 0.0;
        for (j = 0; j < nb; j++) {
            const float *bj = b + (size_t)j * dim;
            double d2 = 0.0;
            for (k = 0; k < dim; k++) {
                double d = (double)ai[k] - (double)bj[k];
                d2 += d * d;
            }
            row += DFN_SQRT(d2);
        }
        sum += row;
    }
    return sum / ((double)na * (double)nb);
}

static dfn_result dfn__energy_distance(double *ed2, const float *x, int n, const float *y, int m,
                                       int dim, int unbiased)
{
    double xx, yy;
    if (!ed2 || !x || !y) return DFN_ERR_NULL;
    *ed2 = 0.0;
    if (n < 1 + unbiased || m < 1 + unbiased || dim < 1 || dfn__count(n, dim) == 0 ||
        dfn__count(m, dim) == 0)
        return DFN_ERR_INVALID_ARG;
    if (!dfn__all_finite(x, (size_t)n * dim) || !dfn__all_finite(y, (size_t)m * dim))
        return DFN_ERR_NOT_FINITE;
    /* ED^2 = 2 E||X - Y|| - E||X - X'|| - E||Y - Y'||; the means over a set
       and itself include the n zero distances i = j unless unbiased. */
    xx = dfn__mean_dist(x, n, x, n, dim);
    yy = dfn__mean_dist(y, m, y, m, dim);
    if (unbiased) {
        xx *= (double)n / (n - 1);
        yy *= (double)m / (m - 1);
    }
    *ed2 = 2.0 * dfn__mean_dist(x, n, y, m, dim) - xx - yy;
    if (!unbiased && *ed2 < 0.0) *ed2 = 0.0;   /* rounding only: the V-statistic is >= 0 */
    return DFN_OK;
}

DFNDEF dfn_result dfn_energy_distance(double *ed2, const float *x, int n,
                                      const float *y, int m, int dim)
{
    return dfn__energy_distance(ed2, x, n, y, m, dim, 0);
}

DFNDEF dfn_result dfn_energy_distance_unbiased(double *ed2, const float *x, int n,
                                               const float *y, int m, int dim)
{
    return dfn__energy_distance(ed2, x, n, y, m, dim, 1);
}

#include "src/data_impl.inc"
#include "src/net_impl.inc"

#ifdef __cplusplus
}
#endif

#endif /* DIFFUSION_IMPLEMENTATION */

/*
   REVISION HISTORY
   ================
   0.1.0  (2026-11-26) first release: PCG32 and a portable normal generator;
          linear, cosine, sigmoid, custom and zero-terminal-SNR schedules;
          forward process and posterior; eps / v / x0 parameterizations;
          DDPM and DDIM samplers with callbacks; exact Gaussian-mixture
          noise predictor; energy distance.
*/

/*
------------------------------------------------------------------------------
This software is available under 2 licenses -- choose whichever you prefer.
------------------------------------------------------------------------------
ALTERNATIVE A - MIT License
Copyright (c) 2026 the diffusion.h authors
Permission is hereby granted, free of charge, to any person obtaining a copy of
this software and associated documentation files (the "Software"), to deal in
the Software without restriction, including without limitation the rights to
use, copy, modify, merge, publish, distribute, sublicense, and/or sell copies
of the Software, and to permit persons to whom the Software is furnished to do
so, subject to the following conditions:
The above copyright notice and this permission notice shall be included in all
copies or substantial portions of the Software.
THE SOFTWARE IS PROVIDED "AS IS", WITHOUT WARRANTY OF ANY KIND, EXPRESS OR
IMPLIED, INCLUDING BUT NOT LIMITED TO THE WARRANTIES OF MERCHANTABILITY,
FITNESS FOR A PARTICULAR PURPOSE AND NONINFRINGEMENT. IN NO EVENT SHALL THE
AUTHORS OR COPYRIGHT HOLDERS BE LIABLE FOR ANY CLAIM, DAMAGES OR OTHER
LIABILITY, WHETHER IN AN ACTION OF CONTRACT, TORT OR OTHERWISE, ARISING FROM,
OUT OF OR IN CONNECTION WITH THE SOFTWARE OR THE USE OR OTHER DEALINGS IN THE
SOFTWARE.
------------------------------------------------------------------------------
ALTERNATIVE B - Public Domain (www.unlicense.org)
This is free and unencumbered software released into the public domain.
Anyone is free to copy, modify, publish, use, compile, sell, or distribute this
software, either in source code form or as a compiled binary, for any purpose,
commercial or non-commercial, and by any means.
In jurisdictions that recognize copyright laws, the author or authors of this
software dedicate any and all copyright interest in the software to the public
domain. We make this dedication for the benefit of the public at large and to
the detriment of all present and future heirs and successors. We intend this
dedication to be an overt act of relinquishment in perpetuity of all present
and future rights to this software under copyright law.
THE SOFTWARE IS PROVIDED "AS IS", WITHOUT WARRANTY OF ANY KIND, EXPRESS OR
IMPLIED, INCLUDING BUT NOT LIMITED TO THE WARRANTIES OF MERCHANTABILITY,
FITNESS FOR A PARTICULAR PURPOSE AND NONINFRINGEMENT. IN NO EVENT SHALL THE
AUTHORS BE LIABLE FOR ANY CLAIM, DAMAGES OR OTHER LIABILITY, WHETHER IN AN
ACTION OF CONTRACT, TORT OR OTHERWISE, ARISING FROM, OUT OF OR IN CONNECTION
WITH THE SOFTWARE OR THE USE OR OTHER DEALINGS IN THE SOFTWARE.
------------------------------------------------------------------------------
*/
