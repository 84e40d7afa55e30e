/* plot.h - look at 2D point clouds: in the terminal, or as an SVG file.

   A helper for the examples of diffusion.h. Plain C99 (also compiles as
   C++), libc and libm only, every function static: just #include it.

   Points are float arrays of n rows (x, y), row-major, the layout that
   diffusion.h uses for 2D data: x = p[2 i], y = p[2 i + 1]. Both plots
   show the square box [lo, hi] x [lo, hi]; points outside it are skipped.

     plot_density_pair   two shaded density maps side by side, printed to
                         a FILE * (stdout, usually): "data" next to
                         "samples", so you can compare them at a glance.
     plot_svg_scatter    an SVG image file with two colored point clouds,
                         a frame with tick labels, a legend and a title.
                         Open it in any web browser.
*/
#ifndef PLOT_H
#define PLOT_H

#include <math.h>
#include <stdio.h>
#include <string.h>

/* Every function is static; "unused" keeps -Wall quiet in a file that only
   needs one of them. */
#if defined(__GNUC__) || defined(__clang__)
#  define PLOT_FN static __attribute__((unused))
#else
#  define PLOT_FN static
#endif

/* Largest grid of one terminal panel; bigger requests are clamped. */
#define PLOT_MAX_W 100
#define PLOT_MAX_H 50

/* ------------------------------------------------------------------------- */
/*  Terminal density plot                                                    */
/* ------------------------------------------------------------------------- */

/* Ten shades, empty to full. */
static const char plot_ramp[] = " .:-=+*#%@";

/* One panel: how many points fall in each of the w x h cells, and the
   largest of those counts. Row 0 is the top of the box (y = hi). */
typedef struct plot_grid {
    int count[PLOT_MAX_H][PLOT_MAX_W];
    int max;
} plot_grid;

static void plot__bin(plot_grid *g, const float *p, int n, float lo, float hi, int w, int h)
{
    int i;
    memset(g, 0, sizeof *g);
    for (i = 0; i < n; i++) {
        /* Cell of (x, y): how far across the box it is (0..1), times the
           number of cells. y is measured down from the top edge. */
        double fx = ((double)p[2 * i] - lo) / ((double)hi - lo);
        double fy = ((double)hi - p[2 * i + 1]) / ((double)hi - lo);
        int cx, cy;
        if (!(fx >= 0.0 && fx <= 1.0 && fy >= 0.0 && fy <= 1.0)) continue; /* outside, NaN */
        cx = (int)(fx * w);
        cy = (int)(fy * h);
        if (cx == w) cx = w - 1;   /* x == hi exactly: last column */
        if (cy == h) cy = h - 1;
        if (++g->count[cy][cx] > g->max) g->max = g->count[cy][cx];
    }
}

/* The shade of a cell. Empty cells are blank; any other cell gets at least
   '.'. The square root lifts sparse cells so thin tails stay visible; the
   fullest cell of the panel gets '@'. */
static char plot__shade(int count, int max)
{
    int level;
    if (count <= 0 || max <= 0) return plot_ramp[0];
    level = 1 + (int)(8.0 * sqrt((double)count / max) + 0.5);
    return plot_ramp[level > 9 ? 9 : level];
}

/* Prints "text" cut or padded to exactly width characters. */
static void plot__padded(FILE *f, const char *text, int width)
{
    int len = (int)strlen(text);
    fprintf(f, "%.*s%*s", width, text, len < width ? width - len : 0, "");
}

/* Two density panels side by side, titles above, sharing the box
   [lo, hi]^2, each panel w x h characters inside a frame. Each panel is
   shaded relative to its own fullest cell. Terminal characters are about
   twice as tall as wide, so w = 2 h looks square. */
PLOT_FN void plot_density_pair(FILE *f, const char *title_a, const float *a, int na,
                               const char *title_b, const float *b, int nb,
                               float lo, float hi, int w, int h)
{
    static plot_grid ga, gb;   /* static: 20 KB each, kept off the stack */
    const char *gap = "   ";
    int x, y;
    if (!f || !(hi > lo)) return;
    w = w < 1 ? 1 : w > PLOT_MAX_W ? PLOT_MAX_W : w;
    h = h < 1 ? 1 : h > PLOT_MAX_H ? PLOT_MAX_H : h;
    plot__bin(&ga, a, a ? na : 0, lo, hi, w, h);
    plot__bin(&gb, b, b ? nb : 0, lo, hi, w, h);

    /* Titles, each above its own panel (frame included: w + 2 columns). */
    plot__padded(f, title_a ? title_a : "", w + 2);
    fputs(gap, f);
    plot__padded(f, title_b ? title_b : "", w + 2);
    fputc('\n', f);

    /* Top frame, the rows, bottom frame. */
    for (y = -1; y <= h; y++) {
        int panel;
        for (panel = 0; panel < 2; panel++) {
            const plot_grid *g = panel == 0 ? &ga : &gb;
            if (panel == 1) fputs(gap, f);
            if (y < 0 || y == h) {
                fputc('+', f);
                for (x = 0; x < w; x++) fputc('-', f);
                fputc('+', f);
            } else {
                fputc('|', f);
                for (x = 0; x < w; x++) fputc(plot__shade(g->count[y][x], g->max), f);
                fputc('|', f);
            }
        }
        fputc('\n', f);
    }
    fprintf(f, "box [%g, %g] x [%g, %g]; shade ~ sqrt(count / fullest cell of its panel)\n",
            lo, hi, lo, hi);
}

/* ------------------------------------------------------------------------- */
/*  SVG scatter plot                                                         */
/* ------------------------------------------------------------------------- */

/* Canvas and plot area, in SVG pixels (y grows downwards). */
#define PLOT_SVG_SIZE 600
#define PLOT_SVG_X0 60    /* left edge of the plot square   */
#define PLOT_SVG_Y0 50    /* top edge of the plot square    */
#define PLOT_SVG_SIDE 480 /* side of the plot square        */

/* Writes text with the XML special characters escaped. Returns < 0 on error. */
static int plot__svg_text(FILE *f, const char *text)
{
    int bad = 0;
    for (; text && *text; text++) {
        switch (*text) {
        case '<': bad |= fputs("&lt;", f) < 0; break;
        case '>': bad |= fputs("&gt;", f) < 0; break;
        case '&': bad |= fputs("&amp;", f) < 0; break;
        case '"': bad |= fputs("&quot;", f) < 0; break;
        default:  bad |= fputc(*text, f) == EOF; break;
        }
    }
    return bad ? -1 : 0;
}

/* One cloud: a group of small circles sharing a color. Returns < 0 on error. */
static int plot__svg_points(FILE *f, const float *p, int n, const char *color,
                            float lo, float hi)
{
    double scale = PLOT_SVG_SIDE / ((double)hi - lo);
    int i, bad = 0;
    bad |= fprintf(f, "<g fill=\"%s\" fill-opacity=\"0.35\">\n", color) < 0;
    for (i = 0; p && i < n && !bad; i++) {
        double x = p[2 * i], y = p[2 * i + 1];
        if (!(x >= lo && x <= hi && y >= lo && y <= hi)) continue;  /* outside, or NaN */
        bad |= fprintf(f, "<circle cx=\"%.1f\" cy=\"%.1f\" r=\"2\"/>\n",
                       PLOT_SVG_X0 + (x - lo) * scale,
                       PLOT_SVG_Y0 + (hi - y) * scale) < 0;   /* y axis points up */
    }
    bad |= fprintf(f, "</g>\n") < 0;
    return bad ? -1 : 0;
}

/* Writes an SVG file: cloud a (blue) and cloud b (red) over the box
   [lo, hi]^2, with a frame, tick labels, a legend and a title. Labels may
   be NULL. Returns 0 on success, -1 if the file cannot be opened, -2 if a
   write (or closing the file) fails. */
PLOT_FN int plot_svg_scatter(const char *path, const char *title,
                             const float *a, int na, const char *label_a,
                             const float *b, int nb, const char *label_b,
                             float lo, float hi)
{
    const char *color_a = "#1f77b4", *color_b = "#d62728";
    const int x0 = PLOT_SVG_X0, y0 = PLOT_SVG_Y0, side = PLOT_SVG_SIDE;
    int i, bad = 0;
    FILE *f;
    if (!path || !(hi > lo)) return -1;
    f = fopen(path, "w");
    if (!f) return -1;

    /* Canvas, white background, title. */
    bad |= fprintf(f, "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%d\" height=\"%d\" "
                      "viewBox=\"0 0 %d %d\" font-family=\"sans-serif\">\n",
                   PLOT_SVG_SIZE, PLOT_SVG_SIZE, PLOT_SVG_SIZE, PLOT_SVG_SIZE) < 0;
    bad |= fprintf(f, "<rect width=\"100%%\" height=\"100%%\" fill=\"white\"/>\n") < 0;
    bad |= fprintf(f, "<text x=\"%d\" y=\"30\" text-anchor=\"middle\" font-size=\"18\">",
                   x0 + side / 2) < 0;
    bad |= plot__svg_text(f, title) < 0;
    bad |= fprintf(f, "</text>\n") < 0;

    /* Grid lines and tick labels at 5 evenly spaced values of each axis. */
    for (i = 0; i <= 4; i++) {
        double v = lo + (hi - (double)lo) * i / 4.0;
        int px = x0 + side * i / 4, py = y0 + side - side * i / 4;
        bad |= fprintf(f, "<line x1=\"%d\" y1=\"%d\" x2=\"%d\" y2=\"%d\" stroke=\"#ddd\"/>\n",
                       px, y0, px, y0 + side) < 0;
        bad |= fprintf(f, "<line x1=\"%d\" y1=\"%d\" x2=\"%d\" y2=\"%d\" stroke=\"#ddd\"/>\n",
                       x0, py, x0 + side, py) < 0;
        bad |= fprintf(f, "<text x=\"%d\" y=\"%d\" text-anchor=\"middle\" font-size=\"12\">%g</text>\n",
                       px, y0 + side + 16, v) < 0;
        bad |= fprintf(f, "<text x=\"%d\" y=\"%d\" text-anchor=\"end\" font-size=\"12\">%g</text>\n",
                       x0 - 6, py + 4, v) < 0;
    }

    /* The two clouds, then the frame on top of them. */
    bad |= plot__svg_points(f, a, na, color_a, lo, hi) < 0;
    bad |= plot__svg_points(f, b, nb, color_b, lo, hi) < 0;
    bad |= fprintf(f, "<rect x=\"%d\" y=\"%d\" width=\"%d\" height=\"%d\" fill=\"none\" "
                      "stroke=\"black\"/>\n", x0, y0, side, side) < 0;

    /* Legend below the plot: a dot and a label per cloud. */
    bad |= fprintf(f, "<circle cx=\"%d\" cy=\"%d\" r=\"5\" fill=\"%s\"/>\n",
                   x0 + 10, y0 + side + 40, color_a) < 0;
    bad |= fprintf(f, "<text x=\"%d\" y=\"%d\" font-size=\"14\">", x0 + 22, y0 + side + 45) < 0;
    bad |= plot__svg_text(f, label_a ? label_a : "a") < 0;
    bad |= fprintf(f, " (%d)</text>\n", na) < 0;
    bad |= fprintf(f, "<circle cx=\"%d\" cy=\"%d\" r=\"5\" fill=\"%s\"/>\n",
                   x0 + side / 2 + 10, y0 + side + 40, color_b) < 0;
    bad |= fprintf(f, "<text x=\"%d\" y=\"%d\" font-size=\"14\">", x0 + side / 2 + 22,
                   y0 + side + 45) < 0;
    bad |= plot__svg_text(f, label_b ? label_b : "b") < 0;
    bad |= fprintf(f, " (%d)</text>\n", nb) < 0;

    bad |= fprintf(f, "</svg>\n") < 0;
    bad |= ferror(f) != 0;
    bad |= fclose(f) != 0;   /* flushes: a full disk may only show up here */
    return bad ? -2 : 0;
}

#endif /* PLOT_H */
