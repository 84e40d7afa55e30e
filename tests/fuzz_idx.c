/* libFuzzer target for the image code that sees untrusted input: the IDX
   parsers (dfn_idx_info_mem, dfn_idx_images_mem(_c): grey and colour,
   dfn_idx_labels_mem, with
   every downsampling factor and small and exact buffers), and the image
   writers (dfn_image_grid, dfn_png_encode, dfn_pnm_encode) on sizes and
   float bits taken from the input. The first byte picks the target.

   With -DDFN_FUZZ_WRITE_SEEDS it is instead a program that writes a seed
   corpus (small valid IDX image and label files) into the folder argv[1]. */
#define DIFFUSION_IMPLEMENTATION
#include "../diffusion.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifndef DFN_FUZZ_WRITE_SEEDS
int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size);

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size)
{
    static float out[1 << 16], grid[1 << 17];
    static int labels[4096];
    static unsigned char file[1 << 18];
    if (size < 1) return 0;
    if ((data[0] & 1) == 0) {
        int n = 0, h = 0, w = 0, f;
        dfn_idx_info info;
        const unsigned char *p = data + 1;
        size_t len = size - 1;
        dfn_idx_info_mem(p, len, &info);
        for (f = 0; f <= 17; f++) {
            int c = 0, n1 = 0;
            /* the grey reader agrees with the colour one on grey files */
            if (dfn_idx_images_mem(p, len, f, NULL, 0, &n1, NULL, NULL) == DFN_OK &&
                (dfn_idx_images_mem_c(p, len, f, NULL, 0, &n, NULL, NULL, &c) != DFN_OK || c != 1 || n != n1))
                abort();
            if (dfn_idx_images_mem_c(p, len, f, NULL, 0, &n, &h, &w, &c) == DFN_OK) {
                /* buffers of exactly the floats asked for (ASan sees one
                   past the end), then one float short: refused, untouched */
                size_t need = (size_t)n * (size_t)h * (size_t)w * (size_t)c, i;
                float *exact = need > 0 && need <= ((size_t)1 << 24) ? (float *)malloc(need * sizeof(float)) : NULL;
                if (exact) {
                    if (dfn_idx_images_mem_c(p, len, f, exact, need, &n, &h, &w, &c) != DFN_OK) abort();
                    for (i = 0; i < need; i++)
                        if (!(exact[i] >= -1.0f && exact[i] <= 1.0f)) abort();   /* pixels in [-1, 1] */
                    free(exact);
                    exact = (float *)malloc(need > 1 ? (need - 1) * sizeof(float) : 1);
                    if (exact && dfn_idx_images_mem_c(p, len, f, exact, need - 1, &n, &h, &w, &c) !=
                                     DFN_ERR_BUFFER_TOO_SMALL)
                        abort();
                    free(exact);
                }
            }
        }
        if (dfn_idx_labels_mem(p, len, NULL, 0, &n) == DFN_OK && n > 0 && n <= (1 << 24)) {
            int *exact = (int *)malloc((size_t)n * sizeof(int));
            if (exact) {
                if (dfn_idx_labels_mem(p, len, exact, n, &n) != DFN_OK) abort();
                free(exact);
            }
            dfn_idx_labels_mem(p, len, labels, n - 1 < 4096 ? n - 1 : 4096, &n);
        }
    } else if (size >= 8) {
        /* h, w, c, cols, pad from the first bytes, then the pixels' bits. */
        int h = 1 + data[1] % 40, w = 1 + data[2] % 40, c = 1 + data[3] % 3;
        int n = 1 + data[4] % 6, cols = 1 + data[5] % 7, pad = data[6] % 4;
        size_t count = (size_t)n * h * w * c, i, len = 0;
        int gh = 0, gw = 0;
        for (i = 0; i < count; i++) {
            size_t at = 7 + (4 * i) % (size - 7);
            uint32_t u = 0;
            size_t k;
            for (k = 0; k < 4; k++) u = (u << 8) | data[7 + (at - 7 + k) % (size - 7)];
            memcpy(&out[i], &u, 4);
        }
        if (dfn_image_grid(NULL, 0, out, n, h, w, c, cols, pad, -1.0f, &gh, &gw) == DFN_OK &&
            (size_t)gh * gw * c <= sizeof grid / sizeof grid[0]) {
            dfn_image_grid(grid, sizeof grid / sizeof grid[0], out, n, h, w, c, cols, pad, -1.0f, &gh, &gw);
            if (c != 2) {
                size_t ps = dfn_png_size(gh, gw, c), qs = dfn_pnm_size(gh, gw, c);
                if (ps <= sizeof file) dfn_png_encode(grid, gh, gw, c, file, ps, &len);
                if (qs <= sizeof file) dfn_pnm_encode(grid, gh, gw, c, file, qs, &len);
                dfn_png_encode(grid, gh, gw, c, file, ps / 2, &len);
            }
        }
        dfn_png_encode(out, h, w, c, file, sizeof file, &len);
    }
    return 0;
}
#else
static void put(const char *dir, const char *name, const unsigned char *p, size_t n)
{
    char path[512];
    FILE *f;
    sprintf(path, "%.400s/%s", dir, name);
    f = fopen(path, "wb");
    if (!f) return;
    fputc(0, f);                                         /* selector: the IDX readers */
    fwrite(p, 1, n, f);
    fclose(f);
}

int main(int argc, char **argv)
{
    unsigned char b[16 + 2 * 4 * 6];
    size_t i;
    if (argc != 2) {
        fprintf(stderr, "usage: %s <corpus folder>\n", argv[0]);
        return 2;
    }
    /* Two 4x6 images. */
    memset(b, 0, sizeof b);
    b[2] = 8; b[3] = 3; b[7] = 2; b[11] = 4; b[15] = 6;
    for (i = 16; i < sizeof b; i++) b[i] = (unsigned char)(i * 13);
    put(argv[1], "images", b, sizeof b);
    /* One 2x4 RGB image (4 dimensions: n, H, W, C). */
    {
        unsigned char c[20 + 2 * 4 * 3];
        memset(c, 0, sizeof c);
        c[2] = 8; c[3] = 4; c[7] = 1; c[11] = 2; c[15] = 4; c[19] = 3;
        for (i = 20; i < sizeof c; i++) c[i] = (unsigned char)(i * 7);
        put(argv[1], "colour", c, sizeof c);
    }
    /* Five labels. */
    memset(b, 0, 13);
    b[2] = 8; b[3] = 1; b[7] = 5;
    for (i = 8; i < 13; i++) b[i] = (unsigned char)(i - 8);
    put(argv[1], "labels", b, 13);
    /* A float tensor (another type: the info parser only). */
    memset(b, 0, 16);
    b[2] = 0x0d; b[3] = 1; b[7] = 2;
    put(argv[1], "floats", b, 16);
    /* A writer case: 3x4 RGB, two images, grid of 2 columns, pad 1. */
    {
        unsigned char wcase[7 + 64];
        wcase[0] = 1; wcase[1] = 2; wcase[2] = 3; wcase[3] = 2; wcase[4] = 1; wcase[5] = 1; wcase[6] = 1;
        for (i = 7; i < sizeof wcase; i++) wcase[i] = (unsigned char)(i * 29);
        {
            char path[512];
            FILE *f;
            sprintf(path, "%.400s/%s", argv[1], "writers");
            f = fopen(path, "wb");
            if (f) { fwrite(wcase, 1, sizeof wcase, f); fclose(f); }
        }
    }
    return 0;
}
#endif
