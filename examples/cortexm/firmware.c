/* Inference-only firmware: samples a trained 2D model whose weights are a
   const array (flash) made by tools/model2c, with every byte of working
   memory in one static buffer: no malloc, no stdio, no training code. It
   prints each sample's two floats as IEEE-754 bit patterns (exact) and a
   CRC-32 of them through ARM semihosting; built with -DFW_HOST it prints the
   same through stdio, so the host's output can be compared with the
   firmware's (make test-cortexm: bit for bit with DFN_PORTABLE_MATH).

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

/* Carves n bytes (64-byte aligned) from the static buffer; NULL when full. */
static size_t fw_used;
static void *fw_take(size_t n)
{
    size_t at = (fw_used + 63u) & ~(size_t)63u;
    if (n == 0 || n > FW_MEMORY - at) return NULL;
    fw_used = at + n;
    return fw_memory + at;
}

int main(void)
{
    static float x[FW_N * 2];
    dfn_mlp_config mc = MODEL_mlp_config();
    dfn_schedule_config sc = MODEL_schedule_config();
    dfn_schedule sched;
    dfn_mlp model;
    dfn_mlp_predictor pred;
    dfn_sampler_config cfg;
    dfn_sampler smp;
    dfn_rng rng;
    size_t bytes;
    void *mem;
    int i;

    if (dfn_mlp_num_params(&mc) != MODEL_NUM_PARAMS ||
        dfn_mlp_init(&model, &mc, (float *)(uintptr_t)MODEL_params) != DFN_OK) {
        fw_puts("bad model\n");
        return 1;
    }
    bytes = dfn_schedule_size(sc.T);
    if (!(mem = fw_take(bytes)) || dfn_schedule_init(&sched, &sc, mem, bytes) != DFN_OK) {
        fw_puts("schedule failed\n");
        return 1;
    }
    pred.model = &model;
    pred.work_bytes = dfn_mlp_forward_size(&mc, FW_N);
    pred.work = fw_take(pred.work_bytes);
    cfg = dfn_mlp_sampler_config(DFN_SAMPLER_DPMPP_2M, FW_N, &pred);
    cfg.steps = FW_STEPS;
    cfg.spacing = DFN_SPACING_LOGSNR;
    bytes = dfn_sampler_size(&cfg, &sched);
    if (!pred.work || !(mem = fw_take(bytes)) || dfn_sampler_init(&smp, &cfg, &sched, mem, bytes) != DFN_OK) {
        fw_puts("sampler failed\n");
        return 1;
    }
    dfn_rng_seed(&rng, 2026, 11);
    if (dfn_sampler_run(&smp, x, NULL, &rng) != DFN_OK) {
        fw_puts("sampling failed\n");
        return 1;
    }
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
    fw_line("crc", dfn_crc32(0, x, sizeof x), 0, 0);
    return 0;
}
