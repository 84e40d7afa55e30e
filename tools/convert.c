/* convert: diffusion.h's model files to safetensors and back.

     build/convert IN OUT

   IN is read as a model file ("DFNM") or as safetensors (by its bytes, not
   its name); OUT is written in the other format: a .dfnm file becomes
   safetensors (the weights and the EMA weights by the names of the PyTorch
   twins, tools/torch/dfn_torch.py), a .safetensors file (written by
   diffusion.h or by tools/torch) becomes a model file with its EMA
   weights. The MLP and the U-Net; the optimizer state of a model file is
   not carried (safetensors holds weights). Prints what it did, or the
   error and, for a safetensors file, the tensor or field it refused. */
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
    int to_st;
    if (argc != 3) {
        fprintf(stderr, "usage: convert IN OUT   (a model file to safetensors, or safetensors to a model file)\n");
        return 2;
    }
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
    if (to_st) {
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
    printf("convert: %s (%s, %zu parameters%s, %s schedule T = %d) -> %s (%s)\n", argv[1],
           lm.info.net == DFN_NET_MLP ? "MLP" : "U-Net", lm.net.count, lm.ema ? ", with EMA" : "",
           dfn_schedule_kind_name(lm.schedule.config.kind), lm.schedule.T, argv[2],
           to_st ? "safetensors" : "model file");
    dfn_model_free(&lm, NULL);
    return 0;
}
