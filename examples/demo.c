/* demo.c - diffusion.h in one screen: sample "8 Gaussians" with DDPM and DDIM.

   The data is a mixture of 8 Gaussians on a circle. Because the mixture is
   known, its exact noise predictor is known too (MATH.md section 9), so the
   samplers can be tried without training anything. The demo samples with
   DDPM (1000 steps) and DDIM (50 steps), measures how close the samples are
   to fresh data with the energy distance (MATH.md section 10), draws both in
   the terminal and writes an SVG picture.

   Build and run, from the repository root:
       cc -std=c99 -O2 -I. examples/demo.c -lm -o demo && ./demo
       ./demo --help
*/
#define DIFFUSION_IMPLEMENTATION
#include "diffusion.h"
#include "plot.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define DEMO_T 1000         /* diffusion steps of the schedule (and of DDPM) */
#define DEMO_MAX_N 100000   /* the energy distance costs O(N^2)              */
#define DEMO_BOX 3.0f       /* plots show [-3, 3]^2                          */

static void usage(FILE *f, const char *argv0)
{
    fprintf(f,
            "usage: %s [--n N] [--seed S] [--steps S] [--out FILE.svg] [--help]\n"
            "  --n N          points per sample set, 1..%d (default 2000)\n"
            "  --seed S       random seed, an unsigned integer (default 42)\n"
            "  --steps S      DDIM steps, 1..%d (default 50)\n"
            "  --out FILE     SVG of data vs DDIM samples (default demo.svg);\n"
            "                 DDPM samples go next to it, as FILE_ddpm.svg\n"
            "  --help         this text\n",
            argv0, DEMO_MAX_N, DEMO_T);
}

/* Parses a whole decimal integer in [lo, hi]. Returns 0 on success. */
static int parse_long(const char *s, long lo, long hi, long *out)
{
    char *end;
    long v;
    errno = 0;
    v = strtol(s, &end, 10);
    if (errno || end == s || *end != '\0' || v < lo || v > hi) return -1;
    *out = v;
    return 0;
}

/* Prints what failed when r is not DFN_OK; returns 1 then, else 0. */
static int failed(dfn_result r, const char *what)
{
    if (r == DFN_OK) return 0;
    fprintf(stderr, "demo: %s failed: %s\n", what, dfn_result_string(r));
    return 1;
}

/* Runs one sampler over n points into x; its CPU time goes to *seconds. */
static dfn_result run_sampler(const dfn_sampler_config *cfg, const dfn_schedule *sched,
                              float *x, uint64_t seed, uint64_t stream, double *seconds)
{
    dfn_sampler smp;
    dfn_rng rng;
    dfn_result r;
    clock_t start = clock();
    r = dfn_sampler_alloc(&smp, cfg, sched, NULL);
    if (r != DFN_OK) return r;
    dfn_rng_seed(&rng, seed, stream);
    r = dfn_sampler_run(&smp, x, NULL, &rng);   /* x_T ~ N(0, I), then T -> 0 */
    dfn_sampler_free(&smp, NULL);
    *seconds = (double)(clock() - start) / CLOCKS_PER_SEC;
    return r;
}

int main(int argc, char **argv)
{
    /* Options. */
    long n = 2000, steps = 50;
    unsigned long long seed = 42;
    const char *out_svg = "demo.svg";
    char *out_ddpm = NULL;

    /* The data: 8 Gaussians on a circle of radius 2, std 0.2, equal weights. */
    float weights[8], means[16], stds[8];
    dfn_gmm gmm;
    dfn_gmm_predictor exact;

    dfn_schedule sched;
    dfn_schedule_config sc;
    dfn_sampler_config cfg;
    dfn_rng rng;
    dfn_result r;
    float *data = NULL, *data2 = NULL, *gauss = NULL, *x_ddpm = NULL, *x_ddim = NULL;
    double ed_ddpm, ed_ddim, ed_floor, ed_base, sec_ddpm = 0.0, sec_ddim = 0.0;
    int i, status = 1, nn;
    size_t len;

    memset(&sched, 0, sizeof sched);

    for (i = 1; i < argc; i += 2) {   /* every option but --help takes a value */
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        int ok;
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            usage(stdout, argv[0]);
            return 0;
        }
        if (strcmp(a, "--n") != 0 && strcmp(a, "--steps") != 0 &&
            strcmp(a, "--seed") != 0 && strcmp(a, "--out") != 0) {
            fprintf(stderr, "demo: unknown option '%s'\n", a);
            usage(stderr, argv[0]);
            return 2;
        }
        if (!v) {
            fprintf(stderr, "demo: option '%s' needs a value\n", a);
            usage(stderr, argv[0]);
            return 2;
        }
        if (strcmp(a, "--n") == 0) {
            ok = parse_long(v, 1, DEMO_MAX_N, &n) == 0;
        } else if (strcmp(a, "--steps") == 0) {
            ok = parse_long(v, 1, DEMO_T, &steps) == 0;
        } else if (strcmp(a, "--seed") == 0) {
            char *end;
            errno = 0;
            seed = strtoull(v, &end, 10);
            ok = v[0] >= '0' && v[0] <= '9' && errno == 0 && *end == '\0';
        } else {
            out_svg = v;
            ok = v[0] != '\0';
        }
        if (!ok) {
            fprintf(stderr, "demo: bad value '%s' for %s\n", v, a);
            usage(stderr, argv[0]);
            return 2;
        }
    }
    nn = (int)n;

    /* FILE.svg -> FILE_ddpm.svg (or FILE -> FILE_ddpm.svg). */
    len = strlen(out_svg);
    if (len >= 4 && strcmp(out_svg + len - 4, ".svg") == 0) len -= 4;
    out_ddpm = (char *)malloc(len + sizeof "_ddpm.svg");
    if (!out_ddpm) { fprintf(stderr, "demo: out of memory\n"); return 1; }
    memcpy(out_ddpm, out_svg, len);
    strcpy(out_ddpm + len, "_ddpm.svg");

    for (i = 0; i < 8; i++) {
        double angle = i * 2.0 * 3.14159265358979323846 / 8.0;
        weights[i] = 1.0f;
        stds[i] = 0.2f;
        means[2 * i] = (float)(2.0 * cos(angle));
        means[2 * i + 1] = (float)(2.0 * sin(angle));
    }
    gmm.k = 8;
    gmm.dim = 2;
    gmm.weights = weights;
    gmm.means = means;
    gmm.stds = stds;

    printf("diffusion.h %d.%d.%d demo: \"8 Gaussians\" in 2D; points per set: %d; seed: %llu\n\n",
           DFN_VERSION_MAJOR, DFN_VERSION_MINOR, DFN_VERSION_PATCH, nn, seed);
    printf("The forward process mixes data with Gaussian noise, step by step, until at\n"
           "t = T = %d nothing is left but N(0, I) noise. A sampler runs it backwards:\n"
           "it starts from N(0, I) and at every step asks a noise predictor eps(x_t, t)\n"
           "what noise to take out. This demo uses the *exact* predictor of the known\n"
           "mixture (MATH.md section 9); the training step of a later version replaces\n"
           "it with a trained network, and nothing else changes.\n\n", DEMO_T);

    /* Five point sets of n x 2 floats. */
    data = (float *)malloc((size_t)nn * 2 * sizeof(float));
    data2 = (float *)malloc((size_t)nn * 2 * sizeof(float));
    gauss = (float *)malloc((size_t)nn * 2 * sizeof(float));
    x_ddpm = (float *)malloc((size_t)nn * 2 * sizeof(float));
    x_ddim = (float *)malloc((size_t)nn * 2 * sizeof(float));
    if (!data || !data2 || !gauss || !x_ddpm || !x_ddim) {
        fprintf(stderr, "demo: out of memory\n");
        goto done;
    }

    /* Cosine schedule, T = 1000 (MATH.md section 2). */
    sc = dfn_schedule_config_default(DFN_SCHEDULE_COSINE, DEMO_T);
    if (failed(dfn_schedule_alloc(&sched, &sc, NULL), "dfn_schedule_alloc")) goto done;
    exact.gmm = &gmm;
    exact.schedule = &sched;

    /* Fresh data to compare with, a second draw for the noise floor, and
       N(0, I) for the trivial baseline. One rng stream per purpose, so
       changing one part of the demo leaves the others' numbers alone. */
    dfn_rng_seed(&rng, seed, 1);
    if (failed(dfn_gmm_sample(&gmm, &rng, data, NULL, nn), "dfn_gmm_sample")) goto done;
    dfn_rng_seed(&rng, seed, 2);
    if (failed(dfn_gmm_sample(&gmm, &rng, data2, NULL, nn), "dfn_gmm_sample")) goto done;
    dfn_rng_seed(&rng, seed, 3);
    dfn_rng_normal_fill(&rng, gauss, (size_t)nn * 2);

    /* DDPM: ancestral sampling, all T steps (MATH.md section 6). */
    cfg = dfn_sampler_config_default(DFN_SAMPLER_DDPM, nn, 2, dfn_gmm_predict, &exact);
    r = run_sampler(&cfg, &sched, x_ddpm, seed, 4, &sec_ddpm);
    if (failed(r, "DDPM sampling")) goto done;

    /* DDIM: deterministic (eta = 0), trailing spacing (MATH.md section 7). */
    cfg = dfn_sampler_config_default(DFN_SAMPLER_DDIM, nn, 2, dfn_gmm_predict, &exact);
    cfg.steps = (int)steps;
    r = run_sampler(&cfg, &sched, x_ddim, seed, 5, &sec_ddim);
    if (failed(r, "DDIM sampling")) goto done;

    /* Energy distances to the fresh data (0 = same distribution). */
    if (failed(dfn_energy_distance(&ed_ddpm, x_ddpm, nn, data, nn, 2), "dfn_energy_distance") ||
        failed(dfn_energy_distance(&ed_ddim, x_ddim, nn, data, nn, 2), "dfn_energy_distance") ||
        failed(dfn_energy_distance(&ed_floor, data2, nn, data, nn, 2), "dfn_energy_distance") ||
        failed(dfn_energy_distance(&ed_base, gauss, nn, data, nn, 2), "dfn_energy_distance"))
        goto done;

    printf("Energy distance ED^2 to %d fresh data points (MATH.md section 10). 0 means\n"
           "the same distribution; with finitely many points, perfect samples score about\n"
           "the noise floor (a second fresh draw of the data), give or take chance.\n\n", nn);
    printf("  %-34s %10s %9s %8s\n", "point set", "ED^2", "vs floor", "time");
    printf("  %-34s %10.5f %8.1fx %7.2fs\n", "DDPM samples, 1000 steps", ed_ddpm,
           ed_floor > 0 ? ed_ddpm / ed_floor : 0.0, sec_ddpm);
    {
        char name[64];
        sprintf(name, "DDIM samples, %ld steps (eta 0)", steps);
        printf("  %-34s %10.5f %8.1fx %7.2fs\n", name, ed_ddim,
               ed_floor > 0 ? ed_ddim / ed_floor : 0.0, sec_ddim);
    }
    printf("  %-34s %10.5f %8.1fx\n", "noise floor: data vs data", ed_floor, 1.0);
    printf("  %-34s %10.5f %8.1fx\n\n", "trivial baseline: N(0, I) vs data", ed_base,
           ed_floor > 0 ? ed_base / ed_floor : 0.0);

    plot_density_pair(stdout, "data", data, nn, "DDPM samples", x_ddpm, nn,
                      -DEMO_BOX, DEMO_BOX, 36, 18);
    printf("\n");
    plot_density_pair(stdout, "data", data, nn, "DDIM samples", x_ddim, nn,
                      -DEMO_BOX, DEMO_BOX, 36, 18);
    printf("\n");

    if (plot_svg_scatter(out_svg, "8 Gaussians: data vs DDIM samples (exact predictor)",
                         data, nn, "data", x_ddim, nn, "DDIM samples", -DEMO_BOX, DEMO_BOX) != 0) {
        fprintf(stderr, "demo: cannot write %s\n", out_svg);
        goto done;
    }
    if (plot_svg_scatter(out_ddpm, "8 Gaussians: data vs DDPM samples (exact predictor)",
                         data, nn, "data", x_ddpm, nn, "DDPM samples", -DEMO_BOX, DEMO_BOX) != 0) {
        fprintf(stderr, "demo: cannot write %s\n", out_ddpm);
        goto done;
    }
    printf("Wrote %s (data vs DDIM) and %s (data vs DDPM): open them in a browser.\n",
           out_svg, out_ddpm);
    status = 0;

done:
    dfn_schedule_free(&sched, NULL);
    free(data);
    free(data2);
    free(gauss);
    free(x_ddpm);
    free(x_ddim);
    free(out_ddpm);
    return status;
}
