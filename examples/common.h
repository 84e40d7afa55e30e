/* common.h - the small helpers the examples of diffusion.h share.

   Include after diffusion.h's declarations, with EX_NAME defined as the
   program's name (for messages). Plain C99 (also compiles as C++); every
   function is static.

     ex_check(r, what)     1 when r is DFN_OK; else prints "NAME: what: error"
                           on stderr and returns 0 (the caller cleans up)
     ex_require(r, what)   the same, but exits with status 1 on an error
     ex_number(s, lo, hi)  a whole number in [lo, hi] from a string, or -1
     ex_number_list(s, out, max, lo, hi)
                           comma-separated whole numbers in [lo, hi] into
                           out (at most max); how many, or 0 on an error
     ex_wall()             wall-clock seconds (with _POSIX_C_SOURCE >= 199309L)
     ex_write_grid(...)    grey images (n, h, w) in [-1, 1] as a PNG grid
     ex_write_grid_c(...)  images of c channels (n, h, w, c): 1 grey on
                           black, 3 RGB on white
*/
#ifndef EX_COMMON_H
#define EX_COMMON_H

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#ifndef EX_NAME
#  define EX_NAME "example"
#endif

#if defined(__GNUC__) || defined(__clang__)
#  define EX_FN static __attribute__((unused))
#else
#  define EX_FN static
#endif

EX_FN int ex_check(dfn_result r, const char *what)
{
    if (r != DFN_OK) {
        fprintf(stderr, "%s: %s: %s\n", EX_NAME, what, dfn_result_string(r));
        return 0;
    }
    return 1;
}

EX_FN void ex_require(dfn_result r, const char *what)
{
    if (!ex_check(r, what)) exit(1);
}

EX_FN long ex_number(const char *s, long lo, long hi)
{
    char *end;
    long v;
    errno = 0;
    v = strtol(s, &end, 10);
    return (errno || end == s || *end || v < lo || v > hi) ? -1 : v;
}

EX_FN int ex_number_list(const char *s, int *out, int max, long lo, long hi)
{
    int n = 0;
    while (*s) {
        char *end;
        long v;
        errno = 0;
        v = strtol(s, &end, 10);
        if (errno || end == s || v < lo || v > hi || n == max || (*end && *end != ',')) return 0;
        out[n++] = (int)v;
        s = *end == ',' ? end + 1 : end;
    }
    return n;
}

#ifdef CLOCK_MONOTONIC
EX_FN double ex_wall(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}
#endif

#ifndef DFN_NO_STDIO
/* Writes n images (n, h, w) as dir/name, a PNG grid of `cols` columns with a
   2-pixel border; reports the file. 1 on success. */
EX_FN int ex_write_grid_c(const char *dir, const char *name, const float *img, int n, int h, int w, int c,
                         int cols)
{
    char path[1024];
    int gh, gw;
    float *grid, pad = c == 1 ? -1.0f : 1.0f;    /* black between digits, white between colour images */
    dfn_result r;
    if (dfn_image_grid(NULL, 0, img, n, h, w, c, cols, 2, pad, &gh, &gw) != DFN_OK) return 0;
    grid = (float *)malloc((size_t)gh * gw * c * sizeof(float));
    if (!grid) return 0;
    r = dfn_image_grid(grid, (size_t)gh * gw * c, img, n, h, w, c, cols, 2, pad, &gh, &gw);
    snprintf(path, sizeof path, "%s/%s", dir, name);
    if (r == DFN_OK) r = dfn_png_save(path, grid, gh, gw, c);
    free(grid);
    if (!ex_check(r, path)) return 0;
    printf("wrote %s (%dx%d)\n", path, gw, gh);
    return 1;
}

EX_FN int ex_write_grid(const char *dir, const char *name, const float *img, int n, int h, int w, int cols)
{
    return ex_write_grid_c(dir, name, img, n, h, w, 1, cols);
}
#endif

#endif
