/* model2c: a diffusion.h model file -> a C header for firmware, with the
   weights as const arrays (in flash on a microcontroller) and the network
   and schedule configurations as functions that fill the structs.

     model2c [options] MODEL.dfn NAME OUT.h        EMA weights when the file has them
     model2c [options] --init H L TD E NAME OUT.h  an untrained 2D MLP (hidden H,
                                                   L blocks, time_dim TD, input_emb_dim E),
                                                   for footprint measurements only
   options:
     --int8          the weight matrices as int8 with a float scale per row
                     (MATH.md section 13): NAME_weights (int8_t), NAME_scales,
                     NAME_floats (biases, class embeddings); NAME_FORMAT
     --fp16          the same with binary16 matrices (uint16_t bits)
     --respace S     the schedule respaced to the S timesteps that the
                     firmware's sampler visits (DPM-Solver++(2M), logSNR
                     spacing, S steps): NAME_RESPACED S, NAME_tau[S + 1] and
                     NAME_betas[S], so the device keeps S + 1 table rows
                     instead of T + 1 (dfn_schedule_respace)

   Without --int8 / --fp16 the header defines NAME_params[NAME_NUM_PARAMS]
   (float). Always NAME_mlp_config() and NAME_schedule_config(); floats are
   printed with 9 significant digits, which reads back as the same bits.
   Build: cc -std=c99 -I. tools/model2c.c -lm */
#define DIFFUSION_IMPLEMENTATION
#include "../diffusion.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* A float literal that reads back as the same bits ("25.0f", "-1.5e-05f"). */
static const char *flit(float v, char *buf)
{
    sprintf(buf, "%.9g", (double)v);
    strcat(buf, strpbrk(buf, ".en") ? "f" : ".0f");
    return buf;
}

static void float_array(FILE *f, const char *name, const char *suffix, const float *w, size_t n)
{
    size_t i;
    char b[48];
    fprintf(f, "static const float %s_%s[%lu] = {\n", name, suffix, (unsigned long)n);
    for (i = 0; i < n; i++)
        fprintf(f, "%s%s,%s", i % 6 == 0 ? "    " : " ", flit(w[i], b), i % 6 == 5 || i + 1 == n ? "\n" : "");
    fprintf(f, "};\n");
}

/* The stored form of the weights (--int8, --fp16). */
static int quantized_arrays(FILE *f, const char *name, const dfn_mlp *m, dfn_weight_format fmt)
{
    dfn_qmlp_sizes sz;
    void *w;
    float *sc, *fl;
    size_t i;
    int ok;
    if (dfn_qmlp_sizes_of(&m->cfg, fmt, &sz) != DFN_OK) return 0;
    w = malloc(sz.weight_bytes);
    sc = (float *)malloc(sizeof(float) * (sz.scales + 1));
    fl = (float *)malloc(sizeof(float) * sz.floats);
    ok = w && sc && fl && dfn_qmlp_quantize(m, fmt, w, sc, fl) == DFN_OK;
    if (ok) {
        fprintf(f, "#define %s_FORMAT %s\n", name, fmt == DFN_WEIGHTS_I8 ? "DFN_WEIGHTS_I8" : "DFN_WEIGHTS_F16");
        fprintf(f, "#define %s_NUM_WEIGHTS %lu\n\n", name, (unsigned long)sz.weights);
        fprintf(f, "static const %s %s_weights[%lu] = {\n", fmt == DFN_WEIGHTS_I8 ? "int8_t" : "uint16_t", name,
                (unsigned long)sz.weights);
        for (i = 0; i < sz.weights; i++) {
            if (fmt == DFN_WEIGHTS_I8)
                fprintf(f, "%s%d,%s", i % 16 == 0 ? "    " : " ", ((const int8_t *)w)[i],
                        i % 16 == 15 || i + 1 == sz.weights ? "\n" : "");
            else
                fprintf(f, "%s0x%04x,%s", i % 10 == 0 ? "    " : " ", (unsigned)((const uint16_t *)w)[i],
                        i % 10 == 9 || i + 1 == sz.weights ? "\n" : "");
        }
        fprintf(f, "};\n");
        if (fmt == DFN_WEIGHTS_I8) float_array(f, name, "scales", sc, sz.scales);
        else fprintf(f, "#define %s_scales ((const float *)0)\n", name);
        float_array(f, name, "floats", fl, sz.floats);
    }
    free(w); free(sc); free(fl);
    return ok;
}

/* --respace S: the timesteps of DPM-Solver++(2M) with logSNR spacing and the
   respaced schedule's betas. */
static int respaced_arrays(FILE *f, const char *name, const dfn_schedule_config *sc, int S)
{
    dfn_schedule s;
    dfn_sampler smp;
    dfn_sampler_config cfg = dfn_sampler_config_default(DFN_SAMPLER_DPMPP_2M, 1, 2, dfn_gmm_predict, NULL);
    float *betas = (float *)malloc(sizeof(float) * (size_t)(S > 0 ? S : 1));
    int i, ok;
    cfg.steps = S;
    cfg.spacing = DFN_SPACING_LOGSNR;
    ok = betas && dfn_schedule_alloc(&s, sc, NULL) == DFN_OK;
    if (ok && (dfn_sampler_alloc(&smp, &cfg, &s, NULL) != DFN_OK ||
               dfn_schedule_respace(&s, smp.tau, smp.steps, betas) != DFN_OK))
        ok = 0;
    if (ok) {
        fprintf(f, "#define %s_RESPACED %d\n", name, smp.steps);
        fprintf(f, "static const int %s_tau[%d] = {", name, smp.steps + 1);
        for (i = 0; i <= smp.steps; i++) fprintf(f, "%s%d", i ? ", " : " ", smp.tau[i]);
        fprintf(f, " };\n");
        float_array(f, name, "betas", betas, (size_t)smp.steps);
        dfn_sampler_free(&smp, NULL);
    }
    if (betas && s.memory) dfn_schedule_free(&s, NULL);
    free(betas);
    return ok;
}

static int write_header(const char *path, const char *name, const dfn_mlp *m, const dfn_schedule_config *sc,
                        dfn_weight_format fmt, int respace, const char *from)
{
    FILE *f = fopen(path, "w");
    const dfn_mlp_config *mc = &m->cfg;
    char b[48];
    int ok = 1;
    if (!f) return 0;
    fprintf(f, "/* %s: generated by tools/model2c from %s. Do not edit. */\n", name, from);
    fprintf(f, "#define %s_NUM_PARAMS %lu\n\n", name, (unsigned long)m->lay.count);
    fprintf(f, "static dfn_mlp_config %s_mlp_config(void)\n{\n", name);
    fprintf(f, "    dfn_mlp_config c = dfn_mlp_config_default(%d);\n", mc->dim);
    fprintf(f, "    c.hidden = %d;\n    c.blocks = %d;\n    c.time_dim = %d;\n", mc->hidden, mc->blocks,
            mc->time_dim);
    fprintf(f, "    c.input_emb_dim = %d;\n    c.input_scale = %s;\n", mc->input_emb_dim,
            flit(mc->input_scale, b));
    fprintf(f, "    c.num_classes = %d;\n    c.act = (dfn_activation)%d;\n", mc->num_classes, (int)mc->act);
    fprintf(f, "    c.prediction = (dfn_prediction)%d;\n    return c;\n}\n\n", (int)mc->prediction);
    fprintf(f, "static dfn_schedule_config %s_schedule_config(void)\n{\n", name);
    fprintf(f, "    dfn_schedule_config c = dfn_schedule_config_default((dfn_schedule_kind)%d, %d);\n",
            (int)sc->kind, sc->T);
    fprintf(f, "    c.beta_start = %.17g;\n    c.beta_end = %.17g;\n    c.cosine_s = %.17g;\n",
            sc->beta_start, sc->beta_end, sc->cosine_s);
    fprintf(f, "    c.sigmoid_start = %.17g;\n    c.sigmoid_end = %.17g;\n", sc->sigmoid_start,
            sc->sigmoid_end);
    fprintf(f, "    c.sigmoid_tau = %.17g;\n    c.max_beta = %.17g;\n", sc->sigmoid_tau, sc->max_beta);
    fprintf(f, "    c.zero_terminal_snr = %d;\n    c.flow_shift = %.17g;\n    return c;\n}\n\n",
            sc->zero_terminal_snr, sc->flow_shift);
    if (fmt == DFN_WEIGHTS_F32) float_array(f, name, "params", m->params, m->lay.count);
    else ok = quantized_arrays(f, name, m, fmt);
    if (ok && respace > 0) ok = respaced_arrays(f, name, sc, respace);
    return fclose(f) == 0 && ok;
}

int main(int argc, char **argv)
{
    dfn_weight_format fmt = DFN_WEIGHTS_F32;
    int respace = 0, a = 1;
    for (; a < argc && argv[a][0] == '-' && strcmp(argv[a], "--init"); a++) {
        if (!strcmp(argv[a], "--int8")) fmt = DFN_WEIGHTS_I8;
        else if (!strcmp(argv[a], "--fp16")) fmt = DFN_WEIGHTS_F16;
        else if (!strcmp(argv[a], "--respace") && a + 1 < argc && (respace = atoi(argv[a + 1])) > 0) a++;
        else { a = argc + 1; break; }
    }
    if (argc - a == 7 && !strcmp(argv[a], "--init")) {
        dfn_mlp_config mc = dfn_mlp_config_default(2);
        dfn_schedule_config sc = dfn_schedule_config_default(DFN_SCHEDULE_COSINE, 1000);
        dfn_mlp m;
        dfn_rng rng;
        float *w;
        size_t P;
        mc.hidden = atoi(argv[a + 1]);
        mc.blocks = atoi(argv[a + 2]);
        mc.time_dim = atoi(argv[a + 3]);
        mc.input_emb_dim = atoi(argv[a + 4]);
        mc.prediction = DFN_PREDICT_V;
        P = dfn_mlp_num_params(&mc);
        w = P ? (float *)malloc(P * sizeof(float)) : NULL;
        dfn_rng_seed(&rng, 1, 1);
        if (!w || dfn_mlp_init(&m, &mc, w) != DFN_OK || dfn_mlp_init_weights(&m, &rng) != DFN_OK) {
            fprintf(stderr, "model2c: invalid configuration\n");
            return 1;
        }
        if (!write_header(argv[a + 6], argv[a + 5], &m, &sc, fmt, respace, "an untrained configuration")) {
            fprintf(stderr, "model2c: cannot write %s\n", argv[a + 6]);
            return 1;
        }
        free(w);
        return 0;
    }
    if (argc - a == 3) {
        dfn_loaded_model lm;
        dfn_result r = dfn_model_load(argv[a], NULL, &lm);
        dfn_mlp view;
        if (r != DFN_OK) {
            fprintf(stderr, "model2c: %s: %s\n", argv[a], dfn_result_string(r));
            return 1;
        }
        if (lm.info.schedule.kind == DFN_SCHEDULE_CUSTOM) {
            fprintf(stderr, "model2c: custom schedules are not supported\n");
            return 1;
        }
        view = lm.model;
        if (lm.ema) view.params = lm.ema;
        if (!write_header(argv[a + 2], argv[a + 1], &view, &lm.info.schedule, fmt, respace, argv[a])) {
            fprintf(stderr, "model2c: cannot write %s (a weight beyond the format's range, or a schedule that "
                            "cannot be respaced: flow, zero terminal SNR, more steps than T)\n", argv[a + 2]);
            return 1;
        }
        dfn_model_free(&lm, NULL);
        return 0;
    }
    fprintf(stderr, "usage: model2c [--int8 | --fp16] [--respace S] MODEL.dfn NAME OUT.h\n"
                    "       model2c [--int8 | --fp16] [--respace S] --init HIDDEN BLOCKS TIME_DIM INPUT_EMB NAME OUT.h\n");
    return 2;
}
