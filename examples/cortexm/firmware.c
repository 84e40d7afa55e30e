/* Inference-only firmware: samples a trained 2D model whose weights are a
   const array (flash) made by tools/model2c, with every byte of working
   memory in one static buffer: no malloc, no stdio, no training code. It
   prints each sample's two floats as IEEE-754 bit patterns (exact) and a
   CRC-32 of them through ARM semihosting; built with -DFW_HOST it prints the
   same through stdio, so the host's output can be compared with the
   firmware's (make test-cortexm: bit for bit with DFN_PORTABLE_MATH).
   A header from model2c --int8 / --fp16 (MODEL_FORMAT) is sampled through
   dfn_qmlp, reading the small weights directly; with --respace
   (MODEL_RESPACED) the schedule holds only the S + 1 rows the sampler
   visits (dfn_schedule_respace). On the device the stack is painted before
   sampling and the deepest word it reached is printed ("stack", bytes), and
   SysTick, counting at the core clock, times dfn_sampler_run ("ticks";
   under QEMU's -icount shift=0 every instruction takes 1 ns, so the
   instructions are ticks * 1e9 / the board's clock). The host prints
   neither line.

     MODEL_HEADER   the model2c header (default "model.h"); its NAME is MODEL
     FW_N           samples (default 8), FW_STEPS steps of DPM-Solver++(2M)
                    with logSNR-uniform spacing (default 20; MATH.md section 11)
     FW_MEMORY      bytes of the static buffer (default 96 KB)
   GEMM blocking for a small RAM: KC stays at the library's default (256),
   so the rounding is that of a desktop build; MC and NC shrink the packing
   buffers from 1.2 MB to 24 KB. */
#ifndef DFN_GEMM_MC
#  define DFN_GEMM_MC 8
#endif
#ifndef DFN_GEMM_NC
#  define DFN_GEMM_NC 16
#endif
#define DFN_NO_TRAINING
#define DFN_NO_STDIO
#define DFN_NO_MALLOC
#define DFN_STATIC
#define DIFFUSION_IMPLEMENTATION
#include "diffusion.h"
#ifndef MODEL_HEADER
#  define MODEL_HEADER "model.h"
#endif
#include MODEL_HEADER

#ifndef FW_N
#  define FW_N 8
#endif
#ifndef FW_STEPS
#  define FW_STEPS 20
#endif
#ifndef FW_MEMORY
#  define FW_MEMORY (96 * 1024)
#endif

#ifdef FW_HOST
#  include <stdio.h>
static void fw_puts(const char *s) { fputs(s, stdout); }
#else
#  include "semihost.h"
static void fw_puts(const char *s) { semihost_puts(s); }
#endif

#ifndef FW_HOST
/* Stack measurement: every word between the end of .bss and a little below
   the current stack pointer is set to a pattern before the work; afterwards
   the lowest word that changed marks the deepest the stack went. */
extern uint32_t __bss_end, __stack_top;
#define FW_PAINT 0xdeadbeefu
/* Not inlined: its frame lies below every local of main. */
__attribute__((noinline)) static void fw_paint_stack(void)
{
    volatile uint32_t *p = &__bss_end;
    uint32_t here = (uint32_t)(uintptr_t)&p - 64u;
    while ((uint32_t)(uintptr_t)p < here) *p++ = FW_PAINT;
}
/* SysTick: 24 bits down from 0xffffff at the core clock, no interrupt;
   COUNTFLAG (bit 16) says it wrapped (then "ticks" prints ffffffff). */
#define FW_SYST_CSR (*(volatile uint32_t *)0xE000E010u)
#define FW_SYST_RVR (*(volatile uint32_t *)0xE000E014u)
#define FW_SYST_CVR (*(volatile uint32_t *)0xE000E018u)
static void fw_ticks_start(void)
{
    FW_SYST_RVR = 0xffffffu;
    FW_SYST_CVR = 0;
    FW_SYST_CSR = 5u;                     /* enable, core clock */
    (void)FW_SYST_CSR;                    /* clears COUNTFLAG */
}
static uint32_t fw_ticks(void)
{
    uint32_t now = FW_SYST_CVR, csr = FW_SYST_CSR;
    return (csr & 0x10000u) ? 0xffffffffu : 0xffffffu - now;
}
static uint32_t fw_stack_used(void)
{
    const volatile uint32_t *p = &__bss_end;
    while (p < &__stack_top && *p == FW_PAINT) p++;
    return (uint32_t)((uintptr_t)&__stack_top - (uintptr_t)p);
}
#endif

static unsigned char fw_memory[FW_MEMORY] __attribute__((aligned(64)));

static void fw_hex(char *p, uint32_t v)
{
    int k;
    for (k = 7; k >= 0; k--) *p++ = "0123456789abcdef"[(v >> (4 * k)) & 15u];
}

static void fw_line(const char *label, uint32_t a, uint32_t b, int two)
{
    char line[40];
    int i = 0;
    while (*label) line[i++] = *label++;
    line[i++] = ' ';
    fw_hex(line + i, a);
    i += 8;
    if (two) {
        line[i++] = ' ';
        fw_hex(line + i, b);
        i += 8;
    }
    line[i++] = '\n';
    line[i] = '\0';
    fw_puts(line);
}

/* CRC-32 (IEEE, as dfn_crc32 and zlib) bit by bit: no 1 KB table in flash. */
static uint32_t fw_crc32(const void *data, size_t n)
{
    const unsigned char *p = (const unsigned char *)data;
    uint32_t c = 0xffffffffu;
    int k;
    while (n--) {
        c ^= *p++;
        for (k = 0; k < 8; k++) c = (c >> 1) ^ (0xedb88320u & (0u - (c & 1u)));
    }
    return ~c;
}

/* Carves n bytes (64-byte aligned) from the static buffer; NULL when full. */
static size_t fw_used;
static void *fw_take(size_t n)
{
    size_t at = (fw_used + 63u) & ~(size_t)63u;
    if (n == 0 || n > FW_MEMORY - at) return NULL;
    fw_used = at + n;
    return fw_memory + at;
}

#ifdef MODEL_RESPACED
/* The respaced schedule: T = S, betas from flash; the network is asked at
   the original timesteps. */
static dfn_schedule_config fw_schedule_config(void)
{
    dfn_schedule_config c = dfn_schedule_config_default(DFN_SCHEDULE_CUSTOM, MODEL_RESPACED);
    c.betas = MODEL_betas;
    return c;
}
#define FW_SAMPLER_STEPS MODEL_RESPACED
#define FW_SPACING DFN_SPACING_TRAILING
#else
#define fw_schedule_config MODEL_schedule_config
#define FW_SAMPLER_STEPS FW_STEPS
#define FW_SPACING DFN_SPACING_LOGSNR
#endif

int main(void)
{
    static float x[FW_N * 2];
    dfn_mlp_config mc = MODEL_mlp_config();
    dfn_schedule_config sc = fw_schedule_config();
    dfn_schedule sched;
#ifdef MODEL_FORMAT
    dfn_qmlp model;
    dfn_qmlp_predictor pred;
#else
    dfn_mlp model;
    dfn_mlp_predictor pred;
#endif
#ifdef MODEL_RESPACED
    static int t_buf[FW_N];
    dfn_respaced_predictor rp;
#endif
    dfn_sampler_config cfg;
    dfn_sampler smp;
    dfn_rng rng;
    size_t bytes;
    void *mem;
    int i;
#ifndef FW_HOST
    uint32_t ticks;

    fw_paint_stack();
#endif
#ifdef MODEL_RESPACED
    if (MODEL_tau[MODEL_RESPACED] > MODEL_schedule_config().T) {
        fw_puts("respaced steps beyond the model's T\n");
        return 1;
    }
#endif
#ifdef MODEL_FORMAT
    if (dfn_qmlp_init(&model, &mc, MODEL_FORMAT, MODEL_weights, MODEL_scales, MODEL_floats) != DFN_OK) {
        fw_puts("bad model\n");
        return 1;
    }
    pred.work_bytes = dfn_qmlp_forward_size(&mc, FW_N);
#else
    if (dfn_mlp_num_params(&mc) != MODEL_NUM_PARAMS ||
        dfn_mlp_init(&model, &mc, (float *)(uintptr_t)MODEL_params) != DFN_OK) {
        fw_puts("bad model\n");
        return 1;
    }
    pred.work_bytes = dfn_mlp_forward_size(&mc, FW_N);
#endif
    bytes = dfn_schedule_size(sc.T);
    if (!(mem = fw_take(bytes)) || dfn_schedule_init(&sched, &sc, mem, bytes) != DFN_OK) {
        fw_puts("schedule failed\n");
        return 1;
    }
    pred.model = &model;
    pred.work = fw_take(pred.work_bytes);
#ifdef MODEL_FORMAT
    cfg = dfn_qmlp_sampler_config(DFN_SAMPLER_DPMPP_2M, FW_N, &pred);
#else
    cfg = dfn_mlp_sampler_config(DFN_SAMPLER_DPMPP_2M, FW_N, &pred);
#endif
#ifdef MODEL_RESPACED
    rp.predict = cfg.predict;
    rp.user = cfg.predict_user;
    rp.tau = MODEL_tau;
    rp.S = MODEL_RESPACED;
    rp.t_buf = t_buf;
    rp.n = FW_N;
    cfg.predict = dfn_respaced_predict;
    cfg.predict_user = &rp;
#endif
    cfg.steps = FW_SAMPLER_STEPS;
    cfg.spacing = FW_SPACING;
    bytes = dfn_sampler_size(&cfg, &sched);
    if (!pred.work || !(mem = fw_take(bytes)) || dfn_sampler_init(&smp, &cfg, &sched, mem, bytes) != DFN_OK) {
        fw_puts("sampler failed\n");
        return 1;
    }
    dfn_rng_seed(&rng, 2026, 11);
#ifndef FW_HOST
    fw_ticks_start();
#endif
    if (dfn_sampler_run(&smp, x, NULL, &rng) != DFN_OK) {
        fw_puts("sampling failed\n");
        return 1;
    }
#ifndef FW_HOST
    ticks = fw_ticks();
#endif
    fw_puts("path ");
    fw_puts(dfn_simd_name());
    fw_puts("\n");
    for (i = 0; i < FW_N; i++) {
        uint32_t a, b;
        DFN_MEMCPY(&a, &x[2 * i], 4);
        DFN_MEMCPY(&b, &x[2 * i + 1], 4);
        fw_line("sample", a, b, 1);
    }
    fw_line("workspace", (uint32_t)fw_used, 0, 0);
    fw_line("crc", fw_crc32(x, sizeof x), 0, 0);
#ifndef FW_HOST
    fw_line("stack", fw_stack_used(), 0, 0);
    fw_line("ticks", ticks, 0, 0);
#endif
    return 0;
}
