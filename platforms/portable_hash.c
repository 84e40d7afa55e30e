/* The cross-platform reproducibility check of DFN_PORTABLE_MATH: builds the
   default 2D MLP from a fixed seed, trains it (v-prediction) for a few dozen steps on the
   moons (cosine schedule, T = 100: DFN_COS, DFN_EXP, DFN_LOG in the
   schedule and the optimizer; DFN_SINF, DFN_COSF in the embeddings; the own
   exp in GELU), samples 16 points with DDPM and with DDIM-20, and prints
   CRC-32s of the weights, the EMA weights and both sample sets, then one
   over all of them. Built with -DDFN_PORTABLE_MATH -DDFN_NO_SIMD (and
   -ffp-contract=off), the last line must be the same on every platform.
   All memory comes from one static arena (DFN_MALLOC is a bump allocator),
   so the same file runs on Cortex-M (with PH_SEMIHOSTING) as on a host. */
#include <stddef.h>
#include <stdint.h>

#define PH_ARENA_BYTES (6u << 20)
#ifdef PH_SEMIHOSTING
#  include "semihost.h"
#  define PH_ARENA_ATTR __attribute__((section(".big"), aligned(64)))
static void ph_puts(const char *s) { semihost_puts(s); }
#else
#  include <stdio.h>
#  define PH_ARENA_ATTR
static void ph_puts(const char *s) { fputs(s, stdout); }
#endif

static unsigned char ph_arena[PH_ARENA_BYTES] PH_ARENA_ATTR;
static size_t ph_used;

static void *ph_alloc(size_t bytes)
{
    size_t at = (ph_used + 63u) & ~(size_t)63u;
    if (bytes > PH_ARENA_BYTES - at) return NULL;
    ph_used = at + bytes;
    return ph_arena + at;
}

#define DFN_MALLOC(sz, ctx) ((void)(ctx), ph_alloc(sz))
#define DFN_FREE(p, ctx)    ((void)(ctx), (void)(p))
#define DFN_NO_STDIO
#define DFN_STATIC
#define DIFFUSION_IMPLEMENTATION
#include "../diffusion.h"

#define PH_STEPS 30
#define PH_BATCH 64
#define PH_N 16

static void ph_hex(const char *label, uint32_t v)
{
    char line[64];
    int i = 0, k;
    while (*label) line[i++] = *label++;
    line[i++] = ' ';
    for (k = 7; k >= 0; k--) line[i++] = "0123456789abcdef"[(v >> (4 * k)) & 15u];
    line[i++] = '\n';
    line[i] = '\0';
    ph_puts(line);
}

int main(void)
{
    static float batch[PH_BATCH * 2], ddpm[PH_N * 2], ddim[PH_N * 2];
    dfn_schedule_config sc = dfn_schedule_config_default(DFN_SCHEDULE_COSINE, 100);
    dfn_mlp_config mc = dfn_mlp_config_default(2);
    dfn_train_config tc = dfn_train_config_default();
    dfn_schedule sched;
    dfn_mlp model;
    dfn_trainer tr;
    dfn_mlp_predictor pred;
    dfn_sampler_config cfg;
    dfn_sampler smp;
    dfn_rng rng;
    float *params;
    uint32_t h_params, h_ema, h_ddpm, h_ddim, all;
    size_t P;
    int step;

    mc.prediction = DFN_PREDICT_V;      /* cosine schedule: v, not eps (manual) */
    tc.batch = PH_BATCH;
    tc.warmup_steps = 5;
    tc.total_steps = PH_STEPS;          /* cosine decay: DFN_COS */
    tc.grad_clip = 1.0f;
    P = dfn_mlp_num_params(&mc);
    params = (float *)ph_alloc(P * sizeof(float));
    dfn_rng_seed(&rng, 20260601u, 7u);
    if (!params || dfn_schedule_alloc(&sched, &sc, NULL) != DFN_OK ||
        dfn_mlp_init(&model, &mc, params) != DFN_OK || dfn_mlp_init_weights(&model, &rng) != DFN_OK ||
        dfn_trainer_alloc(&tr, &model, &sched, &tc, NULL) != DFN_OK) {
        ph_puts("setup failed\n");
        return 1;
    }
    for (step = 0; step < PH_STEPS; step++) {
        dfn_data2d_sample(DFN_DATA2D_MOONS, &rng, batch, PH_BATCH);
        if (dfn_train_step(&tr, batch, NULL, &rng, NULL) != DFN_OK) {
            ph_puts("train step failed\n");
            return 1;
        }
    }
    pred.model = &tr.ema_model;
    pred.work_bytes = dfn_mlp_forward_size(&mc, PH_N);
    pred.work = ph_alloc(pred.work_bytes);
    cfg = dfn_mlp_sampler_config(DFN_SAMPLER_DDPM, PH_N, &pred);
    if (!pred.work || dfn_sampler_alloc(&smp, &cfg, &sched, NULL) != DFN_OK ||
        dfn_sampler_run(&smp, ddpm, NULL, &rng) != DFN_OK) {
        ph_puts("DDPM failed\n");
        return 1;
    }
    cfg = dfn_mlp_sampler_config(DFN_SAMPLER_DDIM, PH_N, &pred);
    cfg.steps = 20;
    if (dfn_sampler_alloc(&smp, &cfg, &sched, NULL) != DFN_OK ||
        dfn_sampler_run(&smp, ddim, NULL, &rng) != DFN_OK) {
        ph_puts("DDIM failed\n");
        return 1;
    }
    h_params = dfn_crc32(0, params, P * sizeof(float));
    h_ema = dfn_crc32(0, tr.ema, P * sizeof(float));
    h_ddpm = dfn_crc32(0, ddpm, sizeof ddpm);
    h_ddim = dfn_crc32(0, ddim, sizeof ddim);
    all = dfn_crc32(dfn_crc32(dfn_crc32(dfn_crc32(0, &h_params, 4), &h_ema, 4), &h_ddpm, 4), &h_ddim, 4);
    ph_puts("path ");
    ph_puts(dfn_simd_name());
    ph_puts("\n");
    ph_hex("params", h_params);
    ph_hex("ema", h_ema);
    ph_hex("ddpm", h_ddpm);
    ph_hex("ddim", h_ddim);
    ph_hex("hash", all);
    return 0;
}
