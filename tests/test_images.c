/* Image area: IDX files built byte by byte here (good files, every
   malformed kind), pixel values and 2x2 downsampling against explicit
   averages, the byte mapping of the writers against a double-precision
   formula, the procedural shapes against a second renderer written here
   from the API documentation, grid placement, and PNG files taken apart
   by an independent decoder (chunks, a bitwise CRC-32, stored deflate
   blocks, Adler-32). With data/mnist/ present (make mnist-data), the real
   digits are checked too. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "harness.h"
#include "../diffusion.h"

/* ------------------------------------------------------------------------- */
/*  IDX files by hand                                                        */
/* ------------------------------------------------------------------------- */

static void ti_be32(unsigned char *p, uint32_t v)
{
    p[0] = (unsigned char)(v >> 24);
    p[1] = (unsigned char)(v >> 16);
    p[2] = (unsigned char)(v >> 8);
    p[3] = (unsigned char)v;
}

/* An IDX file into buf: header with the given type and dims, then `body`
   bytes of payload (copied from payload, or a pattern when NULL). Returns
   the length. */
static size_t ti_idx(unsigned char *buf, int type, int ndims, const uint32_t *dims,
                     const unsigned char *payload, size_t body)
{
    size_t i;
    buf[0] = 0;
    buf[1] = 0;
    buf[2] = (unsigned char)type;
    buf[3] = (unsigned char)ndims;
    for (i = 0; i < (size_t)ndims; i++) ti_be32(buf + 4 + 4 * i, dims[i]);
    for (i = 0; i < body; i++)
        buf[4 + 4 * ndims + i] = payload ? payload[i] : (unsigned char)((i * 37 + 11) & 0xff);
    return 4 + 4 * (size_t)ndims + body;
}

void test_images_idx_info(void)
{
    static unsigned char buf[4096];
    uint32_t dims[3] = { 3, 4, 5 }, d2[2] = { 7, 3 }, dz[3] = { 0, 0xffffffffu, 0xffffffffu };
    dfn_idx_info info;
    size_t len = ti_idx(buf, DFN_IDX_UBYTE, 3, dims, NULL, 60);
    CHECK(dfn_idx_info_mem(buf, len, &info) == DFN_OK, "ubyte 3x4x5");
    CHECK(info.type == 0x08 && info.ndims == 3, "type %d ndims %d", info.type, info.ndims);
    CHECK(info.dims[0] == 3 && info.dims[1] == 4 && info.dims[2] == 5 && info.dims[3] == 0, "dims");
    CHECK(info.count == 60 && info.elem_bytes == 1 && info.data_offset == 16, "count %u",
          (unsigned)info.count);
    /* Every element type: its size. */
    len = ti_idx(buf, DFN_IDX_SHORT, 2, d2, NULL, 42);
    CHECK(dfn_idx_info_mem(buf, len, &info) == DFN_OK && info.elem_bytes == 2 && info.count == 21, "i16");
    len = ti_idx(buf, DFN_IDX_SBYTE, 2, d2, NULL, 21);
    CHECK(dfn_idx_info_mem(buf, len, &info) == DFN_OK && info.elem_bytes == 1, "i8");
    len = ti_idx(buf, DFN_IDX_INT, 2, d2, NULL, 84);
    CHECK(dfn_idx_info_mem(buf, len, &info) == DFN_OK && info.elem_bytes == 4, "i32");
    len = ti_idx(buf, DFN_IDX_FLOAT, 2, d2, NULL, 84);
    CHECK(dfn_idx_info_mem(buf, len, &info) == DFN_OK && info.elem_bytes == 4, "f32");
    len = ti_idx(buf, DFN_IDX_DOUBLE, 2, d2, NULL, 168);
    CHECK(dfn_idx_info_mem(buf, len, &info) == DFN_OK && info.elem_bytes == 8 &&
          info.data_offset == 12, "f64");
    /* A zero size: no elements, whatever the other sizes are. */
    len = ti_idx(buf, DFN_IDX_UBYTE, 3, dz, NULL, 0);
    CHECK(dfn_idx_info_mem(buf, len, &info) == DFN_OK && info.count == 0, "zero size");
    /* The largest number of dimensions. */
    {
        uint32_t d8[8] = { 1, 2, 1, 2, 1, 2, 1, 2 };
        len = ti_idx(buf, DFN_IDX_UBYTE, 8, d8, NULL, 16);
        CHECK(dfn_idx_info_mem(buf, len, &info) == DFN_OK && info.count == 16 && info.ndims == 8, "8 dims");
    }
}

void test_images_idx_info_errors(void)
{
    static unsigned char buf[4096];
    uint32_t dims[3] = { 3, 4, 5 }, d9[9] = { 1, 1, 1, 1, 1, 1, 1, 1, 1 };
    uint32_t huge[3] = { 0xffffffffu, 0xffffffffu, 0xffffffffu };
    uint32_t bytes_overflow[3] = { 0x80000000u, 0x80000000u, 2 };     /* 2^63 doubles */
    dfn_idx_info info;
    size_t len = ti_idx(buf, DFN_IDX_UBYTE, 3, dims, NULL, 60), i;

    CHECK(dfn_idx_info_mem(NULL, 10, &info) == DFN_ERR_NULL, "NULL data");
    CHECK(dfn_idx_info_mem(buf, len, NULL) == DFN_ERR_NULL, "NULL info");
    CHECK(dfn_idx_info_mem(NULL, 0, &info) == DFN_ERR_FORMAT, "empty");
    /* Every prefix of a good file is truncated. */
    for (i = 0; i < len; i++) CHECK(dfn_idx_info_mem(buf, i, &info) == DFN_ERR_FORMAT, "prefix %u", (unsigned)i);
    CHECK(dfn_idx_info_mem(buf, len, &info) == DFN_OK, "the whole file");
    /* Trailing bytes. */
    CHECK(dfn_idx_info_mem(buf, len + 1, &info) == DFN_ERR_FORMAT, "trailing byte");
    /* Wrong magic: first two bytes, unknown types, ndims 0 and 9. */
    buf[0] = 1;
    CHECK(dfn_idx_info_mem(buf, len, &info) == DFN_ERR_FORMAT, "byte 0");
    buf[0] = 0; buf[1] = 8;
    CHECK(dfn_idx_info_mem(buf, len, &info) == DFN_ERR_FORMAT, "byte 1");
    buf[1] = 0;
    for (i = 0; i < 256; i++) {
        int known = i == 8 || i == 9 || i == 0x0b || i == 0x0c || i == 0x0d || i == 0x0e;
        dfn_result r;
        buf[2] = (unsigned char)i;
        r = dfn_idx_info_mem(buf, len, &info);
        if (!known) CHECK(r == DFN_ERR_FORMAT, "type 0x%02x", (unsigned)i);
    }
    buf[2] = 8; buf[3] = 0;
    CHECK(dfn_idx_info_mem(buf, 4, &info) == DFN_ERR_FORMAT, "ndims 0");
    len = ti_idx(buf, DFN_IDX_UBYTE, 9, d9, NULL, 1);
    CHECK(dfn_idx_info_mem(buf, len, &info) == DFN_ERR_FORMAT, "ndims 9");
    /* Size products that overflow size_t (elements, then bytes). */
    len = ti_idx(buf, DFN_IDX_UBYTE, 3, huge, NULL, 8);
    CHECK(dfn_idx_info_mem(buf, len, &info) == DFN_ERR_FORMAT, "2^96 elements");
    CHECK(info.count == 0 && info.ndims == 0, "info zeroed on error");
    len = ti_idx(buf, DFN_IDX_DOUBLE, 3, bytes_overflow, NULL, 8);
    CHECK(dfn_idx_info_mem(buf, len, &info) == DFN_ERR_FORMAT, "2^66 bytes");
    /* Dimensions claiming more than the body holds. */
    {
        uint32_t big[3] = { 1000, 28, 28 };
        len = ti_idx(buf, DFN_IDX_UBYTE, 3, big, NULL, 100);
        CHECK(dfn_idx_info_mem(buf, len, &info) == DFN_ERR_FORMAT, "short body");
    }
}

/* (2b - 255)/255 in double: the documented value of byte b. */
static double ti_byte_value(int b)
{
    return (2.0 * b - 255.0) / 255.0;
}

void test_images_idx_pixels_and_downsampling(void)
{
    enum { N = 5, H = 6, W = 8 };
    static unsigned char buf[16 + N * H * W + 16], px[N * H * W];
    static float out[N * H * W + 8];
    uint32_t dims[3] = { N, H, W };
    int n, h, w, k, y, x, i;
    size_t len;
    double maxerr = 0.0;
    /* Every byte value 0..255 appears (240 pixels: 0..239, then 240..255
       over the first ones), including 0 and 255. */
    for (i = 0; i < N * H * W; i++) px[i] = (unsigned char)(i < 240 ? i : 255 - (i - 240));
    px[7] = 255;
    len = ti_idx(buf, DFN_IDX_UBYTE, 3, dims, px, sizeof px);

    CHECK(dfn_idx_images_mem(buf, len, 1, NULL, 0, &n, &h, &w) == DFN_OK, "query");
    CHECK(n == N && h == H && w == W, "%d %d %d", n, h, w);
    for (i = 0; i < N * H * W + 8; i++) out[i] = 7.0f;
    CHECK(dfn_idx_images_mem(buf, len, 1, out, N * H * W, &n, &h, &w) == DFN_OK, "f = 1");
    for (i = 0; i < N * H * W; i++) {
        /* One correctly rounded division: the double quotient rounded to float. */
        float ref = (float)ti_byte_value(px[i]);
        CHECK(out[i] == ref, "pixel %d: byte %d -> %.9g, want %.9g", i, px[i], out[i], ref);
    }
    CHECK(out[N * H * W] == 7.0f, "wrote past the images");
    CHECK(out[7] == 1.0f, "255 -> %g", out[7]);
    for (i = 0; i < N * H * W; i++)
        if (px[i] == 0) CHECK(out[i] == -1.0f, "0 -> %g", out[i]);

    /* 2x2 means against the explicit average of the four values. */
    for (i = 0; i < N * H * W + 8; i++) out[i] = 7.0f;
    CHECK(dfn_idx_images_mem(buf, len, 2, out, N * (H / 2) * (W / 2), &n, &h, &w) == DFN_OK, "f = 2");
    CHECK(n == N && h == H / 2 && w == W / 2, "%d %d %d", n, h, w);
    for (k = 0; k < N; k++)
        for (y = 0; y < H / 2; y++)
            for (x = 0; x < W / 2; x++) {
                const unsigned char *p = px + k * H * W;
                double ref = (ti_byte_value(p[(2 * y) * W + 2 * x]) + ti_byte_value(p[(2 * y) * W + 2 * x + 1]) +
                              ti_byte_value(p[(2 * y + 1) * W + 2 * x]) +
                              ti_byte_value(p[(2 * y + 1) * W + 2 * x + 1])) / 4.0;
                double e = fabs(out[(k * (H / 2) + y) * (W / 2) + x] - ref);
                if (e > maxerr) maxerr = e;
            }
    CHECK(maxerr <= 6e-8, "2x2 mean error %g", maxerr);
    CHECK(out[N * (H / 2) * (W / 2)] == 7.0f, "wrote past the images");
    /* 3x3 does not divide 8; 6x... neither; a block of the whole image does. */
    CHECK(dfn_idx_images_mem(buf, len, 3, out, sizeof out / sizeof out[0], &n, &h, &w) == DFN_ERR_INVALID_ARG, "f = 3");
    CHECK(n == 0 && h == 0 && w == 0, "sizes 0 on error");
    CHECK(dfn_idx_images_mem(buf, len, 0, out, sizeof out / sizeof out[0], NULL, NULL, NULL) == DFN_ERR_INVALID_ARG, "f = 0");
    CHECK(dfn_idx_images_mem(buf, len, 17, out, sizeof out / sizeof out[0], NULL, NULL, NULL) == DFN_ERR_INVALID_ARG, "f = 17");
    {
        /* One 4x4 image reduced to one pixel: the mean of all 16 bytes. */
        static unsigned char b2[64];
        unsigned char p16[16];
        uint32_t d1[3] = { 1, 4, 4 };
        double ref = 0.0;
        float one = 0.0f;
        for (i = 0; i < 16; i++) { p16[i] = (unsigned char)(i * 17); ref += ti_byte_value(p16[i]) / 16.0; }
        len = ti_idx(b2, DFN_IDX_UBYTE, 3, d1, p16, 16);
        CHECK(dfn_idx_images_mem(b2, len, 4, &one, 1, &n, &h, &w) == DFN_OK && h == 1 && w == 1, "f = 4");
        CHECK(fabs(one - ref) <= 6e-8, "%g vs %g", one, ref);
    }
    /* Too small a buffer: nothing written, sizes still reported. */
    len = ti_idx(buf, DFN_IDX_UBYTE, 3, dims, px, sizeof px);
    for (i = 0; i < N * H * W + 8; i++) out[i] = 7.0f;
    CHECK(dfn_idx_images_mem(buf, len, 1, out, N * H * W - 1, &n, &h, &w) == DFN_ERR_BUFFER_TOO_SMALL, "cap");
    CHECK(n == N && out[0] == 7.0f, "nothing written");
    /* Not images: another type, 2 or 4 dimensions, an empty side. */
    {
        uint32_t d2[2] = { N, H * W }, d4[4] = { N, H, W, 1 }, d0[3] = { N, 0, W };
        len = ti_idx(buf, DFN_IDX_SBYTE, 3, dims, px, sizeof px);
        CHECK(dfn_idx_images_mem(buf, len, 1, out, sizeof out / sizeof out[0], NULL, NULL, NULL) == DFN_ERR_FORMAT, "sbyte");
        len = ti_idx(buf, DFN_IDX_UBYTE, 2, d2, px, sizeof px);
        CHECK(dfn_idx_images_mem(buf, len, 1, out, sizeof out / sizeof out[0], NULL, NULL, NULL) == DFN_ERR_FORMAT, "2 dims");
        len = ti_idx(buf, DFN_IDX_UBYTE, 4, d4, px, sizeof px);
        CHECK(dfn_idx_images_mem(buf, len, 1, out, sizeof out / sizeof out[0], NULL, NULL, NULL) == DFN_ERR_FORMAT, "4 dims");
        len = ti_idx(buf, DFN_IDX_UBYTE, 3, d0, px, 0);
        CHECK(dfn_idx_images_mem(buf, len, 1, out, sizeof out / sizeof out[0], NULL, NULL, NULL) == DFN_ERR_FORMAT, "H = 0");
    }
    /* No images is fine. */
    {
        uint32_t dn[3] = { 0, 28, 28 };
        len = ti_idx(buf, DFN_IDX_UBYTE, 3, dn, px, 0);
        CHECK(dfn_idx_images_mem(buf, len, 2, out, 0, &n, &h, &w) == DFN_OK && n == 0 && h == 14, "n = 0");
    }
    CHECK(dfn_idx_images_mem(NULL, 5, 1, out, 10, NULL, NULL, NULL) == DFN_ERR_NULL, "NULL data");
}

/* Colour IDX files (n, H, W, C): every channel read and averaged on its
   own, against the bytes in double. */
void test_images_idx_colour(void)
{
    enum { N = 3, H = 4, W = 6, C = 3 };
    static unsigned char buf[32 + N * H * W * C], px[N * H * W * C];
    static float out[N * H * W * C + 8];
    uint32_t dims[4] = { N, H, W, C };
    int n, h, w, c, k, y, x, ch, i;
    size_t len;
    double maxerr = 0.0;
    for (i = 0; i < N * H * W * C; i++) px[i] = (unsigned char)((i * 37 + 11) % 256);
    len = ti_idx(buf, DFN_IDX_UBYTE, 4, dims, px, sizeof px);
    CHECK(dfn_idx_images_mem_c(buf, len, 1, NULL, 0, &n, &h, &w, &c) == DFN_OK, "query");
    CHECK(n == N && h == H && w == W && c == C, "%d %d %d %d", n, h, w, c);
    for (i = 0; i < N * H * W * C + 8; i++) out[i] = 7.0f;
    CHECK(dfn_idx_images_mem_c(buf, len, 1, out, N * H * W * C, &n, &h, &w, &c) == DFN_OK, "f = 1");
    for (i = 0; i < N * H * W * C; i++)
        CHECK(out[i] == (float)ti_byte_value(px[i]), "value %d: byte %d -> %.9g", i, px[i], out[i]);
    CHECK(out[N * H * W * C] == 7.0f, "wrote past the images");
    /* 2x2 means per channel (interleaved RGB: a channel's neighbours are C apart). */
    CHECK(dfn_idx_images_mem_c(buf, len, 2, out, N * (H / 2) * (W / 2) * C, &n, &h, &w, &c) == DFN_OK &&
          h == H / 2 && w == W / 2 && c == C, "f = 2");
    for (k = 0; k < N; k++)
        for (y = 0; y < H / 2; y++)
            for (x = 0; x < W / 2; x++)
                for (ch = 0; ch < C; ch++) {
                    const unsigned char *p = px + k * H * W * C;
                    double ref = (ti_byte_value(p[((2 * y) * W + 2 * x) * C + ch]) +
                                  ti_byte_value(p[((2 * y) * W + 2 * x + 1) * C + ch]) +
                                  ti_byte_value(p[((2 * y + 1) * W + 2 * x) * C + ch]) +
                                  ti_byte_value(p[((2 * y + 1) * W + 2 * x + 1) * C + ch])) / 4.0;
                    double e = fabs(out[((k * (H / 2) + y) * (W / 2) + x) * C + ch] - ref);
                    if (e > maxerr) maxerr = e;
                }
    CHECK(maxerr <= 6e-8, "2x2 mean error %g", maxerr);
    CHECK(dfn_idx_images_mem_c(buf, len, 1, out, N * H * W * C - 1, &n, &h, &w, &c) == DFN_ERR_BUFFER_TOO_SMALL &&
          c == C, "cap");
    /* The grey reader keeps refusing 4 dimensions (its caller sizes n H W). */
    CHECK(dfn_idx_images_mem(buf, len, 1, out, sizeof out / sizeof out[0], &n, &h, &w) == DFN_ERR_FORMAT && n == 0,
          "grey reader, colour file");
    /* A grey file through the colour reader: C = 1, the same values. */
    {
        uint32_t d3[3] = { N, H, W * C };
        len = ti_idx(buf, DFN_IDX_UBYTE, 3, d3, px, sizeof px);
        CHECK(dfn_idx_images_mem_c(buf, len, 1, out, sizeof out / sizeof out[0], &n, &h, &w, &c) == DFN_OK &&
              c == 1 && w == W * C, "grey file: c = %d", c);
        CHECK(out[5] == (float)ti_byte_value(px[5]), "grey value");
    }
    /* C outside 1..4, 5 dimensions; no images with sides whose product
       would overflow a 32-bit size_t. */
    {
        uint32_t d5[4] = { 1, 2, 2, 5 }, d0[4] = { 1, 2, 2, 0 }, dd[5] = { 1, 2, 2, 3, 1 },
                 dn[4] = { 0, 65536, 65536, 4 };
        len = ti_idx(buf, DFN_IDX_UBYTE, 4, d5, px, 20);
        CHECK(dfn_idx_images_mem_c(buf, len, 1, out, sizeof out / sizeof out[0], &n, &h, &w, &c) == DFN_ERR_FORMAT &&
              c == 0 && n == 0, "C = 5");
        len = ti_idx(buf, DFN_IDX_UBYTE, 4, d0, px, 0);
        CHECK(dfn_idx_images_mem_c(buf, len, 1, out, sizeof out / sizeof out[0], NULL, NULL, NULL, NULL) ==
              DFN_ERR_FORMAT, "C = 0");
        len = ti_idx(buf, DFN_IDX_UBYTE, 5, dd, px, 12);
        CHECK(dfn_idx_images_mem_c(buf, len, 1, out, sizeof out / sizeof out[0], NULL, NULL, NULL, NULL) ==
              DFN_ERR_FORMAT, "5 dims");
        len = ti_idx(buf, DFN_IDX_UBYTE, 4, dn, px, 0);
        CHECK(dfn_idx_images_mem_c(buf, len, 1, out, 0, &n, &h, &w, &c) == DFN_OK && n == 0 && c == 4, "n = 0");
    }
#if !defined(DFN_NO_STDIO) && !defined(DFN_NO_MALLOC)
    {
        const char *pi = "/tmp/dfn_test_colour_idx4";
        dfn_image_set set;
        FILE *f;
        len = ti_idx(buf, DFN_IDX_UBYTE, 4, dims, px, sizeof px);
        f = fopen(pi, "wb");
        CHECK(f && fwrite(buf, 1, len, f) == len && fclose(f) == 0, "write");
        CHECK(dfn_idx_load(&set, pi, NULL, 1, NULL) == DFN_OK && set.c == C && set.h == H && set.n == N, "load");
        if (set.images)
            for (i = 0; i < N * H * W * C; i++)
                CHECK(set.images[i] == (float)ti_byte_value(px[i]), "loaded value %d", i);
        dfn_image_set_free(&set, NULL);
        remove(pi);
    }
#endif
}

void test_images_idx_labels(void)
{
    static unsigned char buf[1024];
    unsigned char lab[12] = { 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 200, 255 };
    uint32_t d1[1] = { 12 }, d2[2] = { 6, 2 };
    int out[13], n = -1, i;
    size_t len = ti_idx(buf, DFN_IDX_UBYTE, 1, d1, lab, 12);
    CHECK(dfn_idx_labels_mem(buf, len, NULL, 0, &n) == DFN_OK && n == 12, "count %d", n);
    out[12] = -7;
    CHECK(dfn_idx_labels_mem(buf, len, out, 12, &n) == DFN_OK, "read");
    for (i = 0; i < 12; i++) CHECK(out[i] == lab[i], "label %d: %d", i, out[i]);
    CHECK(out[12] == -7, "wrote past");
    out[0] = -7;
    CHECK(dfn_idx_labels_mem(buf, len, out, 11, &n) == DFN_ERR_BUFFER_TOO_SMALL && out[0] == -7, "cap");
    CHECK(dfn_idx_labels_mem(buf, len, out, -1, &n) == DFN_ERR_BUFFER_TOO_SMALL, "negative cap");
    CHECK(dfn_idx_labels_mem(buf, len - 1, out, 12, &n) == DFN_ERR_FORMAT && n == 0, "truncated");
    len = ti_idx(buf, DFN_IDX_UBYTE, 2, d2, lab, 12);
    CHECK(dfn_idx_labels_mem(buf, len, out, 12, &n) == DFN_ERR_FORMAT, "2 dims");
    len = ti_idx(buf, DFN_IDX_INT, 1, d1, NULL, 48);
    CHECK(dfn_idx_labels_mem(buf, len, out, 12, &n) == DFN_ERR_FORMAT, "int labels");
}

#ifndef DFN_NO_STDIO
static int ti_write(const char *path, const unsigned char *p, size_t n)
{
    FILE *f = fopen(path, "wb");
    int ok;
    if (!f) return 0;
    ok = fwrite(p, 1, n, f) == n;
    return fclose(f) == 0 && ok;
}
#endif

void test_images_idx_load_files(void)
{
#if !defined(DFN_NO_STDIO) && !defined(DFN_NO_MALLOC)
    static unsigned char img[16 + 3 * 4 * 4], lab[16], lab2[16];
    unsigned char px[48], lv[3] = { 7, 0, 9 };
    uint32_t di[3] = { 3, 4, 4 }, dl[1] = { 3 }, dl2[1] = { 2 };
    const char *pi = "/tmp/dfn_test_images_idx3", *pl = "/tmp/dfn_test_labels_idx1",
               *pl2 = "/tmp/dfn_test_labels2_idx1";
    dfn_image_set set;
    size_t li, ll, ll2;
    int i;
    for (i = 0; i < 48; i++) px[i] = (unsigned char)(i * 5);
    li = ti_idx(img, DFN_IDX_UBYTE, 3, di, px, 48);
    ll = ti_idx(lab, DFN_IDX_UBYTE, 1, dl, lv, 3);
    ll2 = ti_idx(lab2, DFN_IDX_UBYTE, 1, dl2, lv, 2);
    CHECK(ti_write(pi, img, li) && ti_write(pl, lab, ll) && ti_write(pl2, lab2, ll2), "write files");

    CHECK(dfn_idx_load(&set, pi, pl, 1, NULL) == DFN_OK, "load");
    CHECK(set.n == 3 && set.h == 4 && set.w == 4 && set.c == 1 && set.images && set.labels, "fields");
    if (set.images && set.labels) {
        for (i = 0; i < 48; i++) CHECK(set.images[i] == (float)ti_byte_value(px[i]), "pixel %d", i);
        CHECK(set.labels[0] == 7 && set.labels[1] == 0 && set.labels[2] == 9, "labels");
    }
    dfn_image_set_free(&set, NULL);
    CHECK(set.images == NULL && set.labels == NULL && set.n == 0, "freed and zeroed");
    dfn_image_set_free(&set, NULL);                        /* a zeroed set is fine */
    dfn_image_set_free(NULL, NULL);

    CHECK(dfn_idx_load(&set, pi, NULL, 2, NULL) == DFN_OK && set.labels == NULL && set.h == 2, "no labels, f = 2");
    if (set.images) {
        double ref = (ti_byte_value(px[0]) + ti_byte_value(px[1]) + ti_byte_value(px[4]) + ti_byte_value(px[5])) / 4;
        CHECK(fabs(set.images[0] - ref) < 6e-8, "mean");
    }
    dfn_image_set_free(&set, NULL);

    /* Errors leave a zeroed set and nothing allocated (valgrind, ASan). */
    CHECK(dfn_idx_load(&set, pi, pl2, 1, NULL) == DFN_ERR_MISMATCH, "2 labels for 3 images");
    CHECK(set.images == NULL && set.labels == NULL && set.n == 0, "zeroed");
    CHECK(dfn_idx_load(&set, pl, pl, 1, NULL) == DFN_ERR_FORMAT, "labels as images");
    CHECK(dfn_idx_load(&set, pi, pi, 1, NULL) == DFN_ERR_FORMAT, "images as labels");
    CHECK(dfn_idx_load(&set, "/nonexistent/dfn_idx", NULL, 1, NULL) == DFN_ERR_IO, "missing");
    CHECK(dfn_idx_load(&set, pi, "/nonexistent/dfn_idx", 1, NULL) == DFN_ERR_IO, "missing labels");
    CHECK(dfn_idx_load(&set, pi, pl, 3, NULL) == DFN_ERR_INVALID_ARG, "f = 3");
    CHECK(dfn_idx_load(&set, NULL, pl, 1, NULL) == DFN_ERR_NULL, "NULL path");
    CHECK(dfn_idx_load(NULL, pi, pl, 1, NULL) == DFN_ERR_NULL, "NULL set");
    CHECK(ti_write(pi, img, li - 1), "truncate");
    CHECK(dfn_idx_load(&set, pi, pl, 1, NULL) == DFN_ERR_FORMAT && set.images == NULL, "truncated file");
    remove(pi);
    remove(pl);
    remove(pl2);
#endif
}

/* ------------------------------------------------------------------------- */
/*  Pixel bytes                                                              */
/* ------------------------------------------------------------------------- */

/* round((v + 1) 127.5), halves up, clamped: in double, exact for |v| >=
   2^-20 ((v + 1) needs at most 44 bits, times 255 at most 52); below that
   the exact value is within 2^-12 of 127.5, on v's side. */
static int ti_byte_ref(float v)
{
    double y;
    if (v <= -1.0f) return 0;
    if (v >= 1.0f) return 255;
    if (fabs(v) < 9.5367431640625e-07) return v >= 0.0f ? 128 : 127;
    y = floor(((double)v + 1.0) * 127.5 + 0.5);
    return (int)y;
}

void test_images_pixel_mapping(void)
{
    enum { N = 20000 };
    static float v[N];
    static unsigned char out[N + 64];
    size_t len, hdr;
    int i, k = 0, bad = 0;
    dfn_rng rng;
    /* Special values, every byte's own value b/127.5 - 1, the floats on both
       sides of every threshold 2m/255, and uniform draws beyond [-1, 1]. */
    float special[] = { -2.0f, -1.0f, -0.99999994f, 0.0f, -0.0f, 1e-30f, -1e-30f, 1e-7f, -1e-7f,
                        1.4e-45f, -1.4e-45f, 0.99999994f, 1.0f, 1.5f, 3e38f, -3e38f, 0.5f, -0.5f };
    for (i = 0; i < (int)(sizeof special / sizeof special[0]); i++) v[k++] = special[i];
    for (i = 0; i < 256; i++) v[k++] = (float)i / 127.5f - 1.0f;
    for (i = -127; i <= 127; i++) {
        float t = (float)(2.0 * i / 255.0);
        v[k++] = t;
        v[k++] = nextafterf(t, 2.0f);
        v[k++] = nextafterf(t, -2.0f);
    }
    dfn_rng_seed(&rng, 12, 34);
    while (k < N) v[k++] = dfn_rng_uniform(&rng) * 2.4f - 1.2f;
    CHECK(dfn_pnm_encode(v, 1, N, 1, out, sizeof out, &len) == DFN_OK, "encode");
    hdr = len - N;
    for (i = 0; i < N; i++) {
        int want = ti_byte_ref(v[i]);
        if (out[hdr + i] != want && bad++ < 10)
            CHECK(0, "v = %.9g -> %d, want %d", v[i], out[hdr + i], want);
    }
    CHECK(bad == 0, "%d wrong bytes", bad);
    /* Each byte's value goes back to the byte. */
    for (i = 0; i < 256; i++) {
        int at = (int)(sizeof special / sizeof special[0]) + i;
        CHECK(out[hdr + at] == i, "byte %d came back as %d", i, out[hdr + at]);
    }
    CHECK(out[hdr + 3] == 128 && out[hdr + 4] == 128, "0 -> 128");
    CHECK(out[hdr + 6] == 127 && out[hdr + 5] == 128, "tiny values");
}

/* ------------------------------------------------------------------------- */
/*  Shapes                                                                   */
/* ------------------------------------------------------------------------- */

/* The documented renderer, in pixel units with doubles (all exact here). */
static void ti_shape_ref(dfn_rng *rng, double *img, int *label, int size)
{
    int S = 8 * size, lo = S / 5, hi = S / 3, k, i, j, a, b;
    double s, cx, cy;
    k = (int)dfn_rng_below(rng, 4);
    s = lo + (int)dfn_rng_below(rng, (uint32_t)(hi - lo + 1));
    cx = s + (int)dfn_rng_below(rng, (uint32_t)(S - 2 * (int)s + 1));
    cy = s + (int)dfn_rng_below(rng, (uint32_t)(S - 2 * (int)s + 1));
    s /= 8.0; cx /= 8.0; cy /= 8.0;
    *label = k;
    for (i = 0; i < size; i++)
        for (j = 0; j < size; j++) {
            int m = 0;
            for (a = 0; a < 4; a++)
                for (b = 0; b < 4; b++) {
                    double dx = j + (2 * b + 1) / 8.0 - cx, dy = i + (2 * a + 1) / 8.0 - cy;
                    double r = sqrt(dx * dx + dy * dy);
                    int in;
                    if (k == 0) in = r <= s;
                    else if (k == 1) in = fabs(dx) <= s && fabs(dy) <= s;
                    else if (k == 2) in = r >= s / 2 && r <= s;
                    else in = (fabs(dx) <= s && fabs(dy) <= s / 3) || (fabs(dy) <= s && fabs(dx) <= s / 3);
                    m += in;
                }
            img[i * size + j] = m / 8.0 - 1.0;
        }
}

void test_images_shapes_match_reference(void)
{
    static float out[40 * 32 * 32];
    static double ref[32 * 32];
    int labels[40], sizes[3] = { 8, 16, 32 }, si, k, i, bad = 0, lab;
    for (si = 0; si < 3; si++) {
        int size = sizes[si];
        dfn_rng r1, r2;
        dfn_rng_seed(&r1, 77, (uint64_t)size);
        dfn_rng_seed(&r2, 77, (uint64_t)size);
        CHECK(dfn_shapes_sample(&r1, out, labels, 40, size) == DFN_OK, "sample");
        for (k = 0; k < 40; k++) {
            ti_shape_ref(&r2, ref, &lab, size);
            CHECK(labels[k] == lab, "label %d vs %d", labels[k], lab);
            for (i = 0; i < size * size; i++)
                if ((double)out[k * size * size + i] != ref[i] && bad++ < 5)
                    CHECK(0, "size %d image %d pixel %d: %g vs %g", size, k, i,
                          out[k * size * size + i], ref[i]);
        }
        CHECK(dfn_rng_u32(&r1) == dfn_rng_u32(&r2), "same rng use");
    }
    CHECK(bad == 0, "%d pixels differ", bad);
}

void test_images_shapes_statistics_and_errors(void)
{
    enum { N = 4000, SZ = 16 };
    static float a[N * SZ * SZ], b[N * SZ * SZ];
    static int la[N], lb[N];
    int counts[DFN_SHAPES_COUNT] = { 0 }, i, k, eighths = 1, inked = 1;
    dfn_rng r;
    dfn_rng_seed(&r, 5, 6);
    CHECK(dfn_shapes_sample(&r, a, la, N, SZ) == DFN_OK, "sample");
    dfn_rng_seed(&r, 5, 6);
    CHECK(dfn_shapes_sample(&r, b, lb, N / 2, SZ) == DFN_OK &&
          dfn_shapes_sample(&r, b + (N / 2) * SZ * SZ, lb + N / 2, N / 2, SZ) == DFN_OK, "two halves");
    CHECK(memcmp(a, b, sizeof a) == 0 && memcmp(la, lb, sizeof la) == 0, "same seed, same bits");
    dfn_rng_seed(&r, 5, 7);
    CHECK(dfn_shapes_sample(&r, b, NULL, N, SZ) == DFN_OK, "labels NULL");
    CHECK(memcmp(a, b, sizeof a) != 0, "another stream differs");
    for (k = 0; k < N; k++) {
        const float *img = a + k * SZ * SZ;
        double ink = 0.0, maxv = -1.0;
        CHECK(la[k] >= 0 && la[k] < DFN_SHAPES_COUNT, "label %d", la[k]);
        if (la[k] >= 0 && la[k] < DFN_SHAPES_COUNT) counts[la[k]]++;
        for (i = 0; i < SZ * SZ; i++) {
            float v = img[i], m = (v + 1.0f) * 8.0f;
            if (!(v >= -1.0f && v <= 1.0f) || m != floorf(m)) eighths = 0;
            ink += (v + 1.0) / 2.0;
            if (v > maxv) maxv = v;
        }
        /* The smallest shapes (s = 25/8 pixel) cover about 22 pixels. */
        if (maxv != 1.0 || ink < 10.0) inked = 0;
    }
    CHECK(eighths, "values are m/8 - 1 in [-1, 1]");
    CHECK(inked, "every image has a fully covered pixel and 10 pixels of ink");
    /* Class balance: each count within 5 standard deviations of N/4. */
    for (k = 0; k < DFN_SHAPES_COUNT; k++)
        CHECK(fabs(counts[k] - N / 4.0) < 5.0 * sqrt(N * 0.25 * 0.75), "class %d: %d of %d", k, counts[k], N);
    /* Names. */
    CHECK(strcmp(dfn_shapes_name(0), "disc") == 0 && strcmp(dfn_shapes_name(3), "cross") == 0, "names");
    CHECK(dfn_shapes_name(-1) == NULL && dfn_shapes_name(DFN_SHAPES_COUNT) == NULL, "bad names");
    /* Errors. */
    CHECK(dfn_shapes_sample(NULL, a, la, 1, 16) == DFN_ERR_NULL, "NULL rng");
    CHECK(dfn_shapes_sample(&r, NULL, la, 1, 16) == DFN_ERR_NULL, "NULL out");
    CHECK(dfn_shapes_sample(&r, NULL, NULL, 0, 16) == DFN_OK, "n = 0");
    CHECK(dfn_shapes_sample(&r, a, la, -1, 16) == DFN_ERR_INVALID_ARG, "n < 0");
    CHECK(dfn_shapes_sample(&r, a, la, 1, 7) == DFN_ERR_INVALID_ARG, "size 7");
    CHECK(dfn_shapes_sample(&r, a, la, 1, 65) == DFN_ERR_INVALID_ARG, "size 65");
    {
        /* The mean ink of discs against pi E[s^2] / 64 pixels: s uniform on
           25..42 (units of 1/8 pixel) for size 16; 4% is 5 standard errors. */
        double es2 = 0.0, ink = 0.0;
        int nd = 0;
        for (i = 25; i <= 42; i++) es2 += (double)i * i / 18.0;
        for (k = 0; k < N; k++) {
            if (la[k] != DFN_SHAPES_DISC) continue;
            for (i = 0; i < SZ * SZ; i++) ink += (a[k * SZ * SZ + i] + 1.0) / 2.0;
            nd++;
        }
        ink /= nd;
        CHECK(fabs(ink - 3.14159265358979 * es2 / 64.0) < 0.04 * ink, "disc area %g vs %g", ink,
              3.14159265358979 * es2 / 64.0);
    }
}

/* ------------------------------------------------------------------------- */
/*  Grids                                                                    */
/* ------------------------------------------------------------------------- */

void test_images_grid_placement(void)
{
    enum { N = 5, H = 2, W = 3, C = 2, COLS = 3, PAD = 1 };
    float imgs[N * H * W * C], out[200];
    int gh = 0, gw = 0, Y, X, ch, i;
    for (i = 0; i < N * H * W * C; i++) imgs[i] = (float)i;
    CHECK(dfn_image_grid(NULL, 0, imgs, N, H, W, C, COLS, PAD, -9.0f, &gh, &gw) == DFN_OK, "query");
    CHECK(gh == 2 * H + 3 * PAD && gw == COLS * W + 4 * PAD, "size %d x %d", gh, gw);
    for (i = 0; i < 200; i++) out[i] = 1234.0f;
    CHECK(dfn_image_grid(out, (size_t)(gh * gw * C), imgs, N, H, W, C, COLS, PAD, -9.0f, &gh, &gw) == DFN_OK, "grid");
    CHECK(out[gh * gw * C] == 1234.0f, "wrote past");
    /* Every grid pixel: which cell and where in it, from the coordinates. */
    for (Y = 0; Y < gh; Y++)
        for (X = 0; X < gw; X++)
            for (ch = 0; ch < C; ch++) {
                float want = -9.0f;
                int cy = (Y - PAD) / (H + PAD), yy = (Y - PAD) % (H + PAD);
                int cx = (X - PAD) / (W + PAD), xx = (X - PAD) % (W + PAD);
                int k = cy * COLS + cx;
                if (Y >= PAD && X >= PAD && yy < H && xx < W && k < N)
                    want = imgs[((k * H + yy) * W + xx) * C + ch];
                CHECK(out[(Y * gw + X) * C + ch] == want, "(%d, %d, %d): %g, want %g", Y, X, ch,
                      out[(Y * gw + X) * C + ch], want);
            }
    /* No padding, one column: the images stacked as they are in memory. */
    CHECK(dfn_image_grid(out, 200, imgs, N, H, W, C, 1, 0, 0.0f, &gh, &gw) == DFN_OK && gh == N * H && gw == W, "stack");
    CHECK(memcmp(out, imgs, sizeof imgs) == 0, "stacked");
    /* More columns than images. */
    CHECK(dfn_image_grid(out, 200, imgs, 2, H, W, C, 4, 0, 0.5f, &gh, &gw) == DFN_OK && gh == H && gw == 4 * W, "wide");
    CHECK(out[(0 * gw + 2 * W) * C] == 0.5f && out[(1 * gw + 4 * W - 1) * C + 1] == 0.5f, "empty cells");
    /* Errors. */
    out[0] = 1234.0f;
    CHECK(dfn_image_grid(out, (size_t)(7 * 13 * C - 1), imgs, N, H, W, C, COLS, PAD, 0.0f, &gh, &gw) ==
          DFN_ERR_BUFFER_TOO_SMALL && out[0] == 1234.0f, "cap");
    CHECK(dfn_image_grid(out, 200, NULL, N, H, W, C, COLS, PAD, 0.0f, NULL, NULL) == DFN_ERR_NULL, "NULL images");
    CHECK(dfn_image_grid(out, 200, imgs, 0, H, W, C, COLS, PAD, 0.0f, &gh, &gw) == DFN_ERR_INVALID_ARG && gh == 0, "n 0");
    CHECK(dfn_image_grid(out, 200, imgs, N, H, W, C, 0, PAD, 0.0f, NULL, NULL) == DFN_ERR_INVALID_ARG, "cols 0");
    CHECK(dfn_image_grid(out, 200, imgs, N, H, W, C, COLS, -1, 0.0f, NULL, NULL) == DFN_ERR_INVALID_ARG, "pad -1");
    CHECK(dfn_image_grid(out, 200, imgs, N, 0, W, C, COLS, PAD, 0.0f, NULL, NULL) == DFN_ERR_INVALID_ARG, "h 0");
    CHECK(dfn_image_grid(NULL, 0, imgs, 1 << 30, 1 << 10, 1 << 10, 1, 1, 0, 0.0f, &gh, &gw) == DFN_ERR_INVALID_ARG,
          "too large");
}

/* ------------------------------------------------------------------------- */
/*  PNG, decoded independently                                               */
/* ------------------------------------------------------------------------- */

static uint32_t ti_crc32_bitwise(const unsigned char *p, size_t n)
{
    uint32_t c = 0xffffffffu;
    size_t i;
    int k;
    for (i = 0; i < n; i++) {
        c ^= p[i];
        for (k = 0; k < 8; k++) c = (c & 1u) ? (c >> 1) ^ 0xedb88320u : c >> 1;
    }
    return c ^ 0xffffffffu;
}

static uint32_t ti_adler32(const unsigned char *p, size_t n)
{
    uint32_t a = 1, b = 0;
    size_t i;
    for (i = 0; i < n; i++) {
        a = (a + p[i]) % 65521u;
        b = (b + a) % 65521u;
    }
    return (b << 16) | a;
}

static uint32_t ti_get_be32(const unsigned char *p)
{
    return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | p[3];
}

/* Decode a PNG written with stored deflate blocks into pixels (h w c bytes).
   Returns 0 and says why on any deviation from the format; counts the
   deflate blocks into *blocks. */
static int ti_png_decode(const unsigned char *f, size_t len, int *h, int *w, int *c,
                         unsigned char *pixels, size_t cap, int *blocks)
{
    static const unsigned char sig[8] = { 137, 80, 78, 71, 13, 10, 26, 10 };
    static unsigned char z[1 << 20];
    size_t pos = 8, zlen = 0, zp, raw_len = 0, rowlen, i;
    int seen_ihdr = 0, seen_iend = 0, y;
    unsigned char *raw = NULL;
    *blocks = 0;
    if (len < 8 || memcmp(f, sig, 8) != 0) { CHECK(0, "signature"); return 0; }
    while (pos < len && !seen_iend) {
        uint32_t n, crc;
        const unsigned char *type, *data;
        if (len - pos < 12) { CHECK(0, "chunk header"); return 0; }
        n = ti_get_be32(f + pos);
        if (n > len - pos - 12) { CHECK(0, "chunk length %u", (unsigned)n); return 0; }
        type = f + pos + 4;
        data = f + pos + 8;
        crc = ti_get_be32(data + n);
        if (crc != ti_crc32_bitwise(type, 4 + (size_t)n)) { CHECK(0, "CRC of %.4s", (const char *)type); return 0; }
        if (memcmp(type, "IHDR", 4) == 0) {
            if (n != 13 || seen_ihdr || pos != 8) { CHECK(0, "IHDR"); return 0; }
            *w = (int)ti_get_be32(data);
            *h = (int)ti_get_be32(data + 4);
            if (data[8] != 8 || (data[9] != 0 && data[9] != 2) || data[10] || data[11] || data[12]) {
                CHECK(0, "IHDR fields"); return 0;
            }
            *c = data[9] == 0 ? 1 : 3;
            seen_ihdr = 1;
        } else if (memcmp(type, "IDAT", 4) == 0) {
            if (zlen + n > sizeof z) { CHECK(0, "too big for the test"); return 0; }
            memcpy(z + zlen, data, n);
            zlen += n;
        } else if (memcmp(type, "IEND", 4) == 0) {
            if (n != 0) { CHECK(0, "IEND"); return 0; }
            seen_iend = 1;
        } else {
            CHECK(0, "unexpected chunk"); return 0;
        }
        pos += 12 + (size_t)n;
    }
    if (!seen_ihdr || !seen_iend || pos != len) { CHECK(0, "chunk order or trailing bytes"); return 0; }
    /* zlib: CMF 0x78 (deflate, 32K window), FLG with the check bits, no dictionary. */
    if (zlen < 6 || (z[0] & 0x0f) != 8 || ((z[0] << 8) | z[1]) % 31 != 0 || (z[1] & 0x20)) {
        CHECK(0, "zlib header %02x %02x", z[0], z[1]); return 0;
    }
    raw = (unsigned char *)malloc(zlen);
    if (!raw) return 0;
    zp = 2;
    for (;;) {
        unsigned bfinal, btype, blen, nlen;
        if (zlen - zp < 5) { CHECK(0, "block header"); free(raw); return 0; }
        bfinal = z[zp] & 1u;
        btype = (z[zp] >> 1) & 3u;
        if (btype != 0 || (z[zp] >> 3) != 0) { CHECK(0, "not a stored block"); free(raw); return 0; }
        blen = z[zp + 1] | ((unsigned)z[zp + 2] << 8);
        nlen = z[zp + 3] | ((unsigned)z[zp + 4] << 8);
        if ((blen ^ 0xffffu) != nlen) { CHECK(0, "NLEN"); free(raw); return 0; }
        zp += 5;
        if (zlen - zp < blen) { CHECK(0, "block body"); free(raw); return 0; }
        memcpy(raw + raw_len, z + zp, blen);
        raw_len += blen;
        zp += blen;
        ++*blocks;
        if (bfinal) break;
    }
    if (zlen - zp != 4 || ti_get_be32(z + zp) != ti_adler32(raw, raw_len)) {
        CHECK(0, "Adler-32 or trailing bytes"); free(raw); return 0;
    }
    rowlen = 1 + (size_t)*w * (size_t)*c;
    if (raw_len != (size_t)*h * rowlen || (size_t)*h * (rowlen - 1) > cap) {
        CHECK(0, "raw size %u", (unsigned)raw_len); free(raw); return 0;
    }
    for (y = 0; y < *h; y++) {
        if (raw[(size_t)y * rowlen] != 0) { CHECK(0, "filter type"); free(raw); return 0; }
        for (i = 0; i + 1 < rowlen; i++) pixels[(size_t)y * (rowlen - 1) + i] = raw[(size_t)y * rowlen + 1 + i];
    }
    free(raw);
    return 1;
}

static void ti_png_case(int h, int w, int c, int want_blocks, uint64_t seed)
{
    size_t count = (size_t)h * w * c, size = dfn_png_size(h, w, c), len = 0, i, raw;
    float *img = (float *)malloc(count * sizeof(float));
    unsigned char *file = (unsigned char *)malloc(size + 16), *px = (unsigned char *)malloc(count);
    int dh = 0, dw = 0, dc = 0, blocks = 0, bad = 0;
    dfn_rng rng;
    if (!img || !file || !px) { free(img); free(file); free(px); CHECK(0, "malloc"); return; }
    dfn_rng_seed(&rng, seed, 1);
    for (i = 0; i < count; i++) img[i] = dfn_rng_uniform(&rng) * 2.2f - 1.1f;
    raw = (size_t)h * (1 + (size_t)w * c);
    CHECK(size == 8 + 25 + 12 + 2 + 5 * ((raw + 65534) / 65535) + raw + 4 + 12, "size %u", (unsigned)size);
    file[size] = 0xa5;
    CHECK(dfn_png_encode(img, h, w, c, file, size, &len) == DFN_OK && len == size, "%dx%dx%d", h, w, c);
    CHECK(file[size] == 0xa5, "wrote past");
    if (ti_png_decode(file, len, &dh, &dw, &dc, px, count, &blocks)) {
        CHECK(dh == h && dw == w && dc == c, "decoded %dx%dx%d", dh, dw, dc);
        CHECK(blocks == want_blocks, "%d blocks, want %d", blocks, want_blocks);
        for (i = 0; i < count; i++)
            if (px[i] != ti_byte_ref(img[i]) && bad++ < 5) CHECK(0, "pixel %u", (unsigned)i);
        CHECK(bad == 0, "%d pixels", bad);
    }
    free(img);
    free(file);
    free(px);
}

void test_images_png_decodes(void)
{
    static const unsigned char one_black[] = {
        /* The 1x1 grey PNG of value -1 (byte 0), every byte by hand:
           signature, IHDR, IDAT (zlib 78 01, one final stored block of 2
           bytes: filter 0, pixel 0; Adler-32 of {0, 0} = 0x00020001), IEND. */
        137, 80, 78, 71, 13, 10, 26, 10,
        0, 0, 0, 13, 'I', 'H', 'D', 'R', 0, 0, 0, 1, 0, 0, 0, 1, 8, 0, 0, 0, 0,
        0x3a, 0x7e, 0x9b, 0x55,
        0, 0, 0, 13, 'I', 'D', 'A', 'T', 0x78, 0x01, 0x01, 0x02, 0x00, 0xfd, 0xff, 0, 0,
        0x00, 0x02, 0x00, 0x01,
        0, 0, 0, 0,                                              /* CRC: filled below */
        0, 0, 0, 0, 'I', 'E', 'N', 'D', 0xae, 0x42, 0x60, 0x82
    };
    unsigned char want[sizeof one_black], got[sizeof one_black + 8];
    float black = -1.0f;
    size_t len = 0;
    uint32_t crc;
    memcpy(want, one_black, sizeof want);
    crc = ti_crc32_bitwise(want + 37, 17);
    want[54] = (unsigned char)(crc >> 24);
    want[55] = (unsigned char)(crc >> 16);
    want[56] = (unsigned char)(crc >> 8);
    want[57] = (unsigned char)crc;
    CHECK(ti_crc32_bitwise(want + 12, 17) == 0x3a7e9b55u, "IHDR CRC of the hand-made file");
    CHECK(ti_crc32_bitwise((const unsigned char *)"IEND", 4) == 0xae426082u, "IEND CRC");
    CHECK(dfn_png_size(1, 1, 1) == sizeof want, "size %u", (unsigned)dfn_png_size(1, 1, 1));
    CHECK(dfn_png_encode(&black, 1, 1, 1, got, sizeof got, &len) == DFN_OK && len == sizeof want, "1x1");
    CHECK(memcmp(got, want, sizeof want) == 0, "1x1 bytes");

    ti_png_case(3, 5, 1, 1, 1);
    ti_png_case(7, 4, 3, 1, 2);
    ti_png_case(200, 200, 3, 2, 3);          /* 120200 bytes: 65535 + 54665 */
    ti_png_case(5, 13106, 1, 1, 4);          /* exactly 65535 bytes: one block */
    ti_png_case(1, 65535, 1, 2, 5);          /* 65536 bytes: a second block of 1 */
    ti_png_case(3, 65535, 1, 4, 6);          /* 196608 = 3 * 65535 + 3 */
}

void test_images_png_errors(void)
{
    float img[12] = { 0 }, nan_img[12] = { 0 };
    unsigned char out[256];
    size_t len = 99, need = dfn_png_size(2, 2, 3);
    volatile float zero = 0.0f;
    CHECK(dfn_png_size(0, 1, 1) == 0 && dfn_png_size(1, 0, 1) == 0 && dfn_png_size(1, 1, 2) == 0 &&
          dfn_png_size(1, 1, 4) == 0 && dfn_png_size(-1, 1, 1) == 0, "invalid sizes");
    CHECK(dfn_png_size(1 << 16, 1 << 15, 1) == 0, "IDAT above 2^31 - 1");
    CHECK(dfn_png_size(46000, 46000, 1) == (size_t)8 + 25 + 12 + 2 + 5 * 32289 + 2116046000u + 4 + 12,
          "just below 2^31");
    CHECK(dfn_png_encode(NULL, 2, 2, 3, out, sizeof out, &len) == DFN_ERR_NULL && len == 0, "NULL image");
    CHECK(dfn_png_encode(img, 2, 2, 3, NULL, sizeof out, &len) == DFN_ERR_NULL, "NULL out");
    CHECK(dfn_png_encode(img, 2, 2, 2, out, sizeof out, &len) == DFN_ERR_INVALID_ARG, "c = 2");
    CHECK(dfn_png_encode(img, 2, 2, 3, out, need - 1, &len) == DFN_ERR_BUFFER_TOO_SMALL, "cap");
    CHECK(dfn_png_encode(img, 2, 2, 3, out, need, NULL) == DFN_OK, "len NULL");
    nan_img[5] = zero / zero;
    CHECK(dfn_png_encode(nan_img, 2, 2, 3, out, sizeof out, &len) == DFN_ERR_NOT_FINITE && len == 0, "NaN");
    nan_img[5] = 1.0f / zero;
    CHECK(dfn_png_encode(nan_img, 2, 2, 3, out, sizeof out, &len) == DFN_ERR_NOT_FINITE, "inf");
    CHECK(dfn_pnm_encode(nan_img, 2, 2, 3, out, sizeof out, &len) == DFN_ERR_NOT_FINITE, "pnm inf");
}

void test_images_pnm_bytes(void)
{
    float g[6] = { -1.0f, 0.0f, 1.0f, -0.5f, 0.5f, 2.0f };
    float rgb[6] = { 1.0f, -1.0f, 0.0f, -1.0f, 1.0f, 1.0f };
    unsigned char out[64];
    const char *hg = "P5\n3 2\n255\n", *hc = "P6\n2 1\n255\n";
    size_t len = 0;
    CHECK(dfn_pnm_size(2, 3, 1) == strlen(hg) + 6, "size %u", (unsigned)dfn_pnm_size(2, 3, 1));
    CHECK(dfn_pnm_encode(g, 2, 3, 1, out, sizeof out, &len) == DFN_OK && len == strlen(hg) + 6, "P5");
    CHECK(memcmp(out, hg, strlen(hg)) == 0, "P5 header");
    CHECK(out[len - 6] == 0 && out[len - 5] == 128 && out[len - 4] == 255 && out[len - 3] == 64 &&
          out[len - 2] == 191 && out[len - 1] == 255, "P5 bytes");
    CHECK(dfn_pnm_encode(rgb, 1, 2, 3, out, sizeof out, &len) == DFN_OK && len == strlen(hc) + 6, "P6");
    CHECK(memcmp(out, hc, strlen(hc)) == 0, "P6 header");
    CHECK(out[len - 6] == 255 && out[len - 5] == 0 && out[len - 4] == 128 && out[len - 3] == 0 &&
          out[len - 2] == 255 && out[len - 1] == 255, "P6 bytes");
    CHECK(dfn_pnm_size(1234, 56789, 3) == strlen("P6\n56789 1234\n255\n") + (size_t)1234 * 56789 * 3, "big header");
    CHECK(dfn_pnm_size(1, 1, 2) == 0 && dfn_pnm_size(0, 1, 1) == 0, "invalid");
    CHECK(dfn_pnm_encode(g, 2, 3, 1, out, strlen(hg) + 5, &len) == DFN_ERR_BUFFER_TOO_SMALL && len == 0, "cap");
}

void test_images_save_files(void)
{
#if !defined(DFN_NO_STDIO) && !defined(DFN_NO_MALLOC)
    enum { H = 9, W = 11 };
    static float img[H * W * 3];
    static unsigned char px[H * W * 3];
    const char *png = "/tmp/dfn_test_image.png", *ppm = "/tmp/dfn_test_image.ppm";
    unsigned char *data = NULL;
    size_t len = 0, i;
    int h, w, c, blocks;
    for (i = 0; i < H * W * 3; i++) img[i] = (float)((int)(i % 17) - 8) / 8.0f;
    CHECK(dfn_png_save(png, img, H, W, 3) == DFN_OK, "png");
    CHECK(dfn_file_read_all(png, NULL, &data, &len) == DFN_OK && len == dfn_png_size(H, W, 3), "read png");
    if (data && ti_png_decode(data, len, &h, &w, &c, px, sizeof px, &blocks)) {
        CHECK(h == H && w == W && c == 3, "dims");
        for (i = 0; i < H * W * 3; i++) CHECK(px[i] == ti_byte_ref(img[i]), "pixel %u", (unsigned)i);
    }
    dfn_file_free(data, NULL);
    CHECK(dfn_pnm_save(ppm, img, H, W, 3) == DFN_OK, "ppm");
    CHECK(dfn_file_read_all(ppm, NULL, &data, &len) == DFN_OK && len == dfn_pnm_size(H, W, 3), "read ppm");
    if (data) {
        CHECK(memcmp(data, "P6\n11 9\n255\n", 12) == 0, "header");
        for (i = 0; i < H * W * 3; i++) CHECK(data[12 + i] == ti_byte_ref(img[i]), "byte %u", (unsigned)i);
    }
    dfn_file_free(data, NULL);
    CHECK(dfn_png_save(NULL, img, H, W, 3) == DFN_ERR_NULL, "NULL path");
    CHECK(dfn_png_save(png, img, H, W, 2) == DFN_ERR_INVALID_ARG, "c = 2");
    CHECK(dfn_pnm_save("/nonexistent/dir/x.pgm", img, H, W, 1) == DFN_ERR_IO, "IO");
    remove(png);
    remove(ppm);
#endif
}

/* ------------------------------------------------------------------------- */
/*  The real digits (make mnist-data)                                        */
/* ------------------------------------------------------------------------- */

#if !defined(DFN_NO_STDIO) && !defined(DFN_NO_MALLOC)
static void ti_mnist_split(const char *images, const char *labels, int want_n, int per_class)
{
    dfn_image_set s, d;
    int counts[10] = { 0 }, i, j, bad_label = 0;
    double mean = 0.0, mean2 = 0.0, black = 0.0, edge = 0.0;
    size_t px;
    dfn_result r = dfn_idx_load(&s, images, labels, 1, NULL);
    CHECK(r == DFN_OK, "%s: %s", images, dfn_result_string(r));
    if (r != DFN_OK) return;
    CHECK(s.n == want_n && s.h == 28 && s.w == 28 && s.c == 1, "%d x %d x %d", s.n, s.h, s.w);
    for (i = 0; i < s.n; i++) {
        if (s.labels[i] < 0 || s.labels[i] > 9) bad_label++;
        else counts[s.labels[i]]++;
    }
    CHECK(bad_label == 0, "%d labels outside 0..9", bad_label);
    for (j = 0; j < 10; j++) {
        if (per_class > 0) CHECK(counts[j] == per_class, "class %d: %d", j, counts[j]);
        else CHECK(counts[j] > s.n / 20, "class %d: %d", j, counts[j]);
    }
    px = (size_t)s.n * 28 * 28;
    for (i = 0; i < (int)px; i++) {
        mean += s.images[i];
        black += s.images[i] == -1.0f;
    }
    mean /= (double)px;
    black /= (double)px;
    /* The one-pixel frame of every digit is (almost) empty. */
    for (i = 0; i < s.n; i++)
        for (j = 0; j < 28; j++)
            edge += (s.images[(size_t)i * 784 + j] + 1.0) / 2.0 + (s.images[(size_t)i * 784 + 27 * 28 + j] + 1.0) / 2.0;
    /* MNIST: mean intensity about 0.13 of full scale, 80% of pixels 0. */
    CHECK(mean > -0.80 && mean < -0.68, "mean %g", mean);
    CHECK(black > 0.72 && black < 0.88, "share of background %g", black);
    CHECK(edge / (s.n * 56.0) < 0.01, "ink on the frame %g", edge / (s.n * 56.0));
    printf("    %s: %d digits, mean %.4f, background %.3f\n", images, s.n, mean, black);
    /* 14x14: the mean is preserved exactly (up to rounding). */
    r = dfn_idx_load(&d, images, NULL, 2, NULL);
    CHECK(r == DFN_OK && d.h == 14 && d.w == 14 && d.n == s.n, "downsampled");
    if (r == DFN_OK) {
        for (i = 0; i < d.n * 196; i++) mean2 += d.images[i];
        mean2 /= (double)d.n * 196.0;
        CHECK(fabs(mean2 - mean) < 1e-5, "14x14 mean %g vs %g", mean2, mean);
    }
    dfn_image_set_free(&d, NULL);
    dfn_image_set_free(&s, NULL);
}
#endif

void test_images_mnist_files(void)
{
#if !defined(DFN_NO_STDIO) && !defined(DFN_NO_MALLOC)
    FILE *f = fopen("data/mnist/train-images-idx3-ubyte", "rb");
    if (!f) {
        printf("    note: data/mnist/ absent (run `make mnist-data` from the repository root); skipped\n");
        return;
    }
    fclose(f);
    ti_mnist_split("data/mnist/train-images-idx3-ubyte", "data/mnist/train-labels-idx1-ubyte", 9000, 0);
    ti_mnist_split("data/mnist/t10k-images-idx3-ubyte", "data/mnist/t10k-labels-idx1-ubyte", 1000, 100);
#endif
}
