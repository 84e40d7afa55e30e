/* ========================================================================= */
/*  Toy data sets in 2D                                                      */
/* ========================================================================= */
/* The classic 2D benchmarks of diffusion and flow papers (FFJORD's toy
   data, sklearn's generators), each scaled by fixed constants so that every
   coordinate has mean 0 and standard deviation 1 (exactly, in distribution;
   the constants are closed forms, derived in the implementation). Draws
   come from the rng alone, and the points are computed in 64-bit integer
   fixed point (Q30) from its integers and its normals, with one rounding to
   float at the end: the same seed and stream give the same bits on every
   platform and with every compiler setting (FMA contraction and x87 excess
   precision cannot change them; no libm). Positions are accurate to about
   1e-9 before that rounding. */

/* Values are stored in files: never renumbered. */
typedef enum dfn_data2d {
    DFN_DATA2D_MOONS        = 0, /* "moons": two interleaved half circles        */
    DFN_DATA2D_SWISS_ROLL   = 1, /* "swissroll": the swiss roll seen from above  */
    DFN_DATA2D_GAUSSIANS8   = 2, /* "8gaussians": 8 Gaussians on a circle        */
    DFN_DATA2D_CHECKERBOARD = 3, /* "checkerboard": 8 uniform squares of a 4x4 board */
    DFN_DATA2D_CIRCLES      = 4, /* "circles": two concentric noisy circles      */
    DFN_DATA2D_SPIRAL       = 5  /* "spiral": two interleaved spiral arms        */
} dfn_data2d;

/* Number of kinds: valid kinds are 0 .. DFN_DATA2D_COUNT - 1. */
#define DFN_DATA2D_COUNT 6

/* DFN_DATA2D_GAUSSIANS8 is exactly the mixture
       sum_{k=0..7} 1/8 N(mu_k, s^2 I),  mu_k = R (cos(k pi/4), sin(k pi/4)),
   R = 8/sqrt(33), s = 1/sqrt(33), so that R^2/2 + s^2 = 1 (FFJORD's
   centers at radius 4 with std 0.5, rescaled to unit variance). In order,
   k = 0..7: (R, 0), (D, D), (0, R), (-D, D), (-R, 0), (-D, -D), (0, -R),
   (D, -D) with D = R/sqrt(2) = 8/sqrt(66) (the sampler holds them to 1e-9;
   the macros below are the nearest floats). Build the matching dfn_gmm
   with k = 8, dim = 2, equal weights, these means and stds all
   DFN_DATA2D_GAUSSIANS8_STD. */
#define DFN_DATA2D_GAUSSIANS8_RADIUS   1.39262125f  /* R = 8/sqrt(33) */
#define DFN_DATA2D_GAUSSIANS8_DIAGONAL 0.984731928f /* D = 8/sqrt(66) */
#define DFN_DATA2D_GAUSSIANS8_STD      0.174077656f /* s = 1/sqrt(33) */

/* n points of the data set into xy (n, 2) row-major. The distributions, in
   raw units before the fixed standardization (x - mean) / std per
   coordinate (u ~ U[0, 1), z ~ N(0, 1), "either" = probability 1/2 each):
     moons        t = pi u; either (cos t, sin t) or (1 - cos t, 1/2 - sin t);
                  plus 0.1 z per coordinate (sklearn make_moons, noise 0.1)
     swissroll    t = 3 pi/2 (1 + 2 u); (t cos t, t sin t) + 1.0 z
                  (sklearn make_swiss_roll's x and z, noise 1.0, as FFJORD)
     8gaussians   the mixture above (already standardized)
     checkerboard uniform on the 8 unit squares [i, i+1) x [j, j+1),
                  i, j in -2..1, with i + j even (FFJORD's board); per
                  coordinate std sqrt(4/3), correlation 3/16
     circles      radius 1 or 0.5, angle 2 pi u, plus 0.08 z (sklearn
                  make_circles, factor 0.5, noise 0.08, as FFJORD)
     spiral       r = 3 pi sqrt(u) (1.5 turns, density proportional to r:
                  about uniform along the arms); either
                  (-r cos r, r sin r) or its mirror (r cos r, -r sin r);
                  plus 0.3 z (FFJORD's 2spirals with Gaussian jitter)
   Errors: DFN_ERR_NULL (rng, or xy with n > 0), DFN_ERR_INVALID_ARG
   (unknown kind, n < 0). n = 0 draws nothing. */
DFNDEF dfn_result dfn_data2d_sample(dfn_data2d kind, dfn_rng *rng, float *xy, int n);

/* The name of a kind: "moons", "swissroll", "8gaussians", "checkerboard",
   "circles", "spiral"; NULL for an unknown kind. */
DFNDEF const char *dfn_data2d_name(dfn_data2d kind);

/* The kind with this exact (case-sensitive) name into *kind. Errors:
   DFN_ERR_NULL, DFN_ERR_INVALID_ARG (no such name; *kind is left alone). */
DFNDEF dfn_result dfn_data2d_from_name(const char *name, dfn_data2d *kind);

/* ========================================================================= */
/*  Points from text (CSV or whitespace-separated)                           */
/* ========================================================================= */
/* The format, line by line (lines end with "\n" or "\r\n"; the last one
   needs no line end; a UTF-8 byte order mark at the start is skipped):
     - blank lines (only spaces, tabs, \r, \v, \f) are skipped;
     - a line whose first non-blank character is '#' is a comment, skipped
       (there are no comments after data on a line);
     - the first other line is a header, and skipped, when none of its
       fields is a number ("x,y" or "px py label"); otherwise it is data;
     - a data line has exactly `cols` numbers, separated by a comma or by
       blanks (a comma may have blanks around it); an empty field (",,",
       a leading or trailing comma) is malformed.
   Numbers: [+-] digits [. digits] [(e|E) [+-] digits] (digits on at least
   one side of the point; "1.", ".5", "-2e-3"), always with '.' whatever
   the C locale, parsed by the library itself, not strtod: rounded to the
   nearest float, within 1 ulp of strtod's result (exact except within
   about 1e-15 relative of a halfway point). Values beyond the float range
   are not finite; values below it round to 0 or a subnormal. "nan", "inf"
   and "infinity" (any case, with a sign) are numbers, but not finite.
   Errors, with the 1-based line number in *error_line:
     DFN_ERR_FORMAT           a field that is not a number ("1.5x", "0x10",
                              "1,,2"), or a line with fewer or more than
                              cols numbers
     DFN_ERR_NOT_FINITE       NaN, infinity, or a value beyond the float range
     DFN_ERR_BUFFER_TOO_SMALL a data line after max_rows rows were stored */

/* Parse text[0 .. len) (it need not be NUL-terminated and is never read
   past len) into out (max_rows, cols) row-major. With out == NULL only
   count: *rows gets the number of data rows and max_rows is ignored.
   *rows always gets the number of rows stored (or counted) before the
   first error; out beyond those rows is unspecified after an error.
   *error_line gets the line of the error, 0 on success (error_line may be
   NULL). Errors: those above, DFN_ERR_NULL (rows; text with len > 0),
   DFN_ERR_INVALID_ARG (cols < 1, max_rows < 0 or max_rows * cols too
   large, with out given). */
DFNDEF dfn_result dfn_points_parse(const char *text, size_t len, int cols, float *out,
                                   int max_rows, int *rows, int *error_line);

/* Longest line dfn_points_load accepts, line end included (override before
   the implementation include); it is also the bytes of its stack buffer. */
#ifndef DFN_POINTS_MAX_LINE
#define DFN_POINTS_MAX_LINE 4096
#endif

#ifndef DFN_NO_STDIO
/* dfn_points_parse on the contents of the file at path, read in chunks
   through a DFN_POINTS_MAX_LINE-byte stack buffer (no allocation): the same
   results and error lines as parsing the whole file in memory, except that
   a longer line is DFN_ERR_FORMAT. Errors: those of dfn_points_parse,
   DFN_ERR_NULL (path), DFN_ERR_IO (cannot open or read). */
DFNDEF dfn_result dfn_points_load(const char *path, int cols, float *out, int max_rows,
                                  int *rows, int *error_line);
#endif

/* ========================================================================= */
/*  Maximum mean discrepancy (MATH.md section 10, next to energy distance)   */
/* ========================================================================= */

/* MMD^2 with the Gaussian (RBF) kernel k(a, b) = exp(-||a - b||^2 / (2 h^2)),
   h = bandwidth, between x (n, dim) and y (m, dim):
       MMD^2 = mean k(x, x') + mean k(y, y') - 2 mean k(x, y)
   as a V-statistic (every pair, including i = j, like dfn_energy_distance;
   never negative: rounding is clamped at 0). Computed in double, O((n + m)^2 dim).
   Errors: DFN_ERR_NULL, DFN_ERR_INVALID_ARG (n, m, dim < 1; bandwidth not a
   finite number > 0), DFN_ERR_NOT_FINITE (x or y). *mmd2 is 0 on error. */
DFNDEF dfn_result dfn_mmd_rbf(double *mmd2, const float *x, int n, const float *y, int m,
                              int dim, double bandwidth);

/* ========================================================================= */
/*  Checksums and whole files                                                */
/* ========================================================================= */

/* CRC-32 of IEEE 802.3 (zlib, PNG, gzip): reflected, polynomial 0xEDB88320,
   initial value and final xor 0xFFFFFFFF handled inside. Start with crc = 0
   and chain: dfn_crc32(dfn_crc32(0, a, la), b, lb) is the CRC of a then b.
   dfn_crc32(0, "123456789", 9) == 0xCBF43926. data may be NULL when len is
   0 (a NULL data with len > 0 returns crc unchanged). */
DFNDEF uint32_t dfn_crc32(uint32_t crc, const void *data, size_t len);

/* Largest file dfn_file_read_all reads: 1 GiB. */
#define DFN_FILE_MAX_BYTES ((size_t)1 << 30)

#if !defined(DFN_NO_STDIO) && !defined(DFN_NO_MALLOC)
/* Read the whole regular file at path into memory from
   DFN_MALLOC(size + 1, alloc_ctx): *data (followed by one 0 byte, not
   counted in *len, so text can be used as a C string) and *len; release
   with dfn_file_free. On error *data is NULL and *len 0. Errors:
   DFN_ERR_NULL, DFN_ERR_IO (cannot open, seek or read; not a seekable file),
   DFN_ERR_INVALID_ARG (larger than DFN_FILE_MAX_BYTES),
   DFN_ERR_OUT_OF_MEMORY. */
DFNDEF dfn_result dfn_file_read_all(const char *path, void *alloc_ctx, unsigned char **data,
                                    size_t *len);

/* Release the memory of dfn_file_read_all (NULL is fine). */
DFNDEF void dfn_file_free(void *data, void *alloc_ctx);

/* Write len bytes to path, replacing the file. The bytes go to
   "<path>.tmp" first (that name is built in DFN_MALLOC(strlen(path) + 5,
   NULL) memory, freed before returning), which is then renamed over path:
   a failed write leaves an existing file at path untouched and removes the
   temporary (on POSIX the replacement is atomic; where rename cannot
   replace, as on Windows, the old file is removed just before the rename).
   Nothing is synced to disk (C stdio cannot). Two writers of the same path
   at once are not supported. Errors: DFN_ERR_NULL (path; data with
   len > 0), DFN_ERR_INVALID_ARG (empty path), DFN_ERR_IO,
   DFN_ERR_OUT_OF_MEMORY. */
DFNDEF dfn_result dfn_file_write_all(const char *path, const void *data, size_t len);
#endif
