/* convert: diffusion.h's model files to safetensors and back.

     build/convert [--int8 | --fp16] IN OUT

   IN is read as a model file ("DFNM") or as safetensors (by its bytes, not
   its name); OUT is written in the other format: a .dfnm file becomes
   safetensors (the weights and the EMA weights by the names of the PyTorch
   twins, tools/torch/dfn_torch.py), a .safetensors file (written by
   diffusion.h or by tools/torch) becomes a model file with its EMA
   weights. The MLP and the U-Net; the optimizer state of a model file is
   not carried (safetensors holds weights). Prints what it did, or the
   error and, for a safetensors file, the tensor or field it refused.

   --int8, --fp16: a model file becomes safetensors for deployment, its
   matrices and convolution kernels in int8 with a scale per row or in fp16
   (MATH.md section 13; biases, norms and embeddings stay F32), and only one
   set of weights: the EMA weights when the file has them. Such a file
   converts back to a model file (its weights as the small format rounded
   them). */
#define DIFFUSION_IMPLEMENTATION
#include "diffusion.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int fail(const char *what, const char *path, dfn_result r, const dfn_error_detail *d)
{
    fprintf(stderr, "convert: %s %s: %s", what, path, dfn_result_string(r));
    if (d && d->what[0]) fprintf(stderr, " (%s: %s)", d->what, d->why);
    fprintf(stderr, "\n");
    return 1;
}

int main(int argc, char **argv)
{
    unsigned char *data = NULL;
    size_t len = 0;
    dfn_loaded_model lm;
    dfn_error_detail d;
    dfn_result r;
    int to_st, a = 1;
    dfn_weight_format fmt = DFN_WEIGHTS_F32;
    if (argc == 4 && !strcmp(argv[1], "--int8")) { fmt = DFN_WEIGHTS_I8; a = 2; }
    else if (argc == 4 && !strcmp(argv[1], "--fp16")) { fmt = DFN_WEIGHTS_F16; a = 2; }
    if (argc - a != 2) {
        fprintf(stderr, "usage: convert [--int8 | --fp16] IN OUT   (a model file to safetensors, or safetensors to a "
                        "model file)\n");
        return 2;
    }
    argv += a - 1;
    if ((r = dfn_file_read_all(argv[1], NULL, &data, &len)) != DFN_OK) return fail("reading", argv[1], r, NULL);
    to_st = len >= 4 && memcmp(data, "DFNM", 4) == 0;
    memset(&d, 0, sizeof d);
    r = to_st ? dfn_model_load_mem(data, len, NULL, &lm) : dfn_model_load_safetensors_mem(data, len, NULL, NULL, &lm, &d);
    dfn_file_free(data, NULL);
    if (r != DFN_OK) return fail(to_st ? "loading the model file" : "loading the safetensors file", argv[1], r, &d);
    if (lm.info.net != DFN_NET_MLP && lm.info.net != DFN_NET_UNET) {
        fprintf(stderr, "convert: %s holds a network without tensor names (only the MLP and the U-Net convert)\n",
                argv[1]);
        dfn_model_free(&lm, NULL);
        return 1;
    }
    if (fmt != DFN_WEIGHTS_F32 && !to_st) {
        fprintf(stderr, "convert: --int8 and --fp16 write safetensors from a model file\n");
        dfn_model_free(&lm, NULL);
        return 2;
    }
    if (to_st && fmt != DFN_WEIGHTS_F32) {
        dfn_net deploy = lm.net;
        if (lm.ema) deploy.params = lm.ema;
        r = dfn_model_save_safetensors_as(argv[2], &deploy, &lm.schedule, NULL, fmt);
    } else if (to_st) {
        r = dfn_model_save_safetensors(argv[2], &lm.net, &lm.schedule, lm.ema);
    } else {
        /* the EMA weights go into a model file through a trainer (batch 1) */
        dfn_train_config tc = dfn_train_config_default();
        dfn_trainer tr;
        memset(&tr, 0, sizeof tr);
        tc.batch = 1;
        if (lm.ema) {
            r = dfn_trainer_alloc_net(&tr, &lm.net, &lm.schedule, &tc, NULL);
            if (r == DFN_OK) {
                memcpy(tr.ema, lm.ema, lm.net.count * sizeof(float));
                r = dfn_model_save_net(argv[2], &lm.net, &lm.schedule, &tr, 0);
                dfn_trainer_free(&tr, NULL);
            }
        } else {
            r = dfn_model_save_net(argv[2], &lm.net, &lm.schedule, NULL, 0);
        }
    }
    if (r != DFN_OK) {
        dfn_model_free(&lm, NULL);
        return fail("writing", argv[2], r, NULL);
    }
    printf("convert: %s (%s, %zu parameters%s, %s schedule T = %d) -> %s (%s%s%s)\n", argv[1],
           lm.info.net == DFN_NET_MLP ? "MLP" : "U-Net", lm.net.count, lm.ema ? ", with EMA" : "",
           dfn_schedule_kind_name(lm.schedule.config.kind), lm.schedule.T, argv[2],
           to_st ? "safetensors" : "model file", fmt != DFN_WEIGHTS_F32 ? ", weights " : "",
           fmt != DFN_WEIGHTS_F32 ? dfn_weight_format_name(fmt) : "");
    dfn_model_free(&lm, NULL);
    return 0;
}
