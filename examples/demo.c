/* demo.c - train a diffusion model on 2D points, sample it, and look at it.

   1. Data: a built-in 2D data set (8 Gaussians, two moons, ...) or your own
      points from a CSV file.
   2. Training (MATH.md section 5): an MLP learns to predict the noise eps
      in x_t = sqrt(alphabar_t) x_0 + sqrt(1 - alphabar_t) eps.
   3. Sampling: DDPM (section 6, T steps) and a few-step solver (default
      DPM-Solver++(2M) with logSNR-uniform steps, section 11; DDIM of section
      7 and the others by flag) run the noising backwards from N(0, I),
      using the EMA of the weights.
   4. Measuring (section 10): energy distance and RBF MMD^2 between samples
      and fresh data, each next to its noise floor (fresh data against fresh
      data) and the trivial baseline N(0, I).
   5. Pictures: data beside samples in the terminal, and an SVG file.

   Build and run from the repository root:  make demo   (or ./build/demo --help)
*/
#define DIFFUSION_IMPLEMENTATION
#include "diffusion.h"
#define EX_NAME "demo"
#include "common.h"
#include "plot.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

typedef struct options {
    const char *data, *csv, *out, *save, *load, *sampler, *spacing, *samples_out;
    long steps, batch, n, ddim_steps, seed;
} options;

static void usage(FILE *f)
{
    fprintf(f,
        "usage: demo [options]\n"
        "  --data NAME      moons, swissroll, 8gaussians, checkerboard, circles, spiral (default 8gaussians)\n"
        "  --csv FILE       train on the 2D points of a CSV / whitespace file instead\n"
        "  --steps N        training steps (default 6000)\n"
        "  --batch B        examples per step (default 256)\n"
        "  --sampler S      ddpm, or a few-step sampler: ddim, euler, heun, dpm++2m, dpm++3m,\n"
        "                   dpm++2m-sde; or both (ddpm and dpm++2m; the default)\n"
        "  --spacing S      trailing, logsnr, karras, linspace, leading (default logsnr)\n"
        "  --nfe S          steps of the few-step sampler (default 20; Heun evaluates 2S - 1 times)\n"
        "  --ddim-steps S   the same as --nfe (the name of 0.8 and before)\n"
        "  --samples-out F  write the few-step samples (or DDPM's) to F, one point per line\n"
        "  --n N            samples to draw and compare (default 2000)\n"
        "  --seed S         random seed (default 1)\n"
        "  --out FILE.svg   picture of data and samples (default demo.svg)\n"
        "  --save FILE      save the trained model (weights, EMA, schedule)\n"
        "  --load FILE      skip training: sample a saved model (a model file, or\n"
        "                   .safetensors from tools/torch/train.py)\n"
        "  --help           this text\n");
}

static int parse(int argc, char **argv, options *o)
{
    int i;
    o->data = "8gaussians"; o->csv = NULL; o->out = "demo.svg"; o->save = NULL; o->load = NULL;
    o->sampler = "both"; o->spacing = "logsnr"; o->samples_out = NULL;
    o->steps = 6000; o->batch = 256; o->n = 2000; o->ddim_steps = 20; o->seed = 1;
    for (i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        long *num = NULL, lo = 1, hi = 10000000;
        if (!strcmp(a, "--help")) { usage(stdout); exit(0); }
        if (!v) { fprintf(stderr, "demo: %s needs a value (see --help)\n", a); return 0; }
        i++;
        if (!strcmp(a, "--data")) o->data = v;
        else if (!strcmp(a, "--csv")) o->csv = v;
        else if (!strcmp(a, "--out")) o->out = v;
        else if (!strcmp(a, "--save")) o->save = v;
        else if (!strcmp(a, "--load")) o->load = v;
        else if (!strcmp(a, "--sampler")) o->sampler = v;
        else if (!strcmp(a, "--spacing")) o->spacing = v;
        else if (!strcmp(a, "--samples-out")) o->samples_out = v;
        else if (!strcmp(a, "--nfe")) { num = &o->ddim_steps; hi = 1000; }
        else if (!strcmp(a, "--steps")) { num = &o->steps; lo = 0; }
        else if (!strcmp(a, "--batch")) { num = &o->batch; hi = 65536; }
        else if (!strcmp(a, "--n")) { num = &o->n; hi = 100000; }
        else if (!strcmp(a, "--ddim-steps")) { num = &o->ddim_steps; hi = 1000; }
        else if (!strcmp(a, "--seed")) { num = &o->seed; lo = 0; hi = 2147483647; }
        else { fprintf(stderr, "demo: unknown option %s\n", a); usage(stderr); return 0; }
        if (num && (*num = ex_number(v, lo, hi)) < 0) {
            fprintf(stderr, "demo: bad value '%s' for %s\n", v, a);
            return 0;
        }
    }
    if (strcmp(o->sampler, "both") && dfn_sampler_kind_parse(o->sampler) < 0) {
        fprintf(stderr, "demo: unknown --sampler '%s' (see --help)\n", o->sampler);
        return 0;
    }
    {
        int sp = dfn_spacing_parse(o->spacing);
        if (sp < 0 || sp == DFN_SPACING_CUSTOM) {
            fprintf(stderr, "demo: unknown --spacing '%s' (see --help)\n", o->spacing);
            return 0;
        }
    }
    return 1;
}

static double seconds(clock_t since) { return (double)(clock() - since) / CLOCKS_PER_SEC; }

/* Where the reference points come from: the generator, or the CSV's rows. */
typedef struct data_source {
    int have_kind;
    dfn_data2d kind;
    float *rows;
    int nrows;
} data_source;

static void draw(const data_source *d, dfn_rng *rng, float *xy, int n)
{
    int i;
    if (d->have_kind) { ex_require(dfn_data2d_sample(d->kind, rng, xy, n), "data"); return; }
    for (i = 0; i < n; i++) {              /* rows drawn uniformly, with replacement */
        int r = (int)dfn_rng_below(rng, (uint32_t)d->nrows);
        xy[2 * i] = d->rows[2 * r];
        xy[2 * i + 1] = d->rows[2 * r + 1];
    }
}

/* ED^2 and MMD^2 of x against fresh data y, printed next to a noise floor. */
static void report(const char *name, const float *x, const float *y, int n, double secs)
{
    double ed, mmd;
    ex_require(dfn_energy_distance(&ed, x, n, y, n, 2), "energy distance");
    ex_require(dfn_mmd_rbf(&mmd, x, n, y, n, 2, 0.05), "MMD");
    if (secs >= 0) printf("  %-30s %10.5f %12.6f %8.2fs\n", name, ed, mmd, secs);
    else printf("  %-30s %10.5f %12.6f\n", name, ed, mmd);
}

int main(int argc, char **argv)
{
    options o;
    data_source src;
    dfn_schedule sched;
    dfn_schedule_config sc;
    dfn_mlp model;
    dfn_mlp_config mc;
    dfn_trainer tr;
    dfn_train_config tc;
    dfn_loaded_model loaded;
    dfn_rng rng;
    float *params, *batch, *ref, *ref2, *noise, *x_ddpm = NULL, *x_ddim = NULL, *shown;
    int n, do_ddpm, do_ddim, rows = 0, line = 0;
    dfn_sampler_kind few;
    long step;
    clock_t t0;

    if (!parse(argc, argv, &o)) return 2;
    n = (int)o.n;
    memset(&src, 0, sizeof src);
    dfn_rng_seed(&rng, (uint64_t)o.seed, 0);
    /* "both": DDPM and the default few-step solver; else the one named. */
    do_ddpm = !strcmp(o.sampler, "both") || !strcmp(o.sampler, "ddpm");
    do_ddim = strcmp(o.sampler, "ddpm") != 0;
    few = strcmp(o.sampler, "both") ? (dfn_sampler_kind)dfn_sampler_kind_parse(o.sampler) : DFN_SAMPLER_DPMPP_2M;

    /* 1. The data. */
    if (o.csv) {
        /* count the rows, then read them */
        dfn_result r = dfn_points_load(o.csv, 2, NULL, 0, &rows, &line);
        if (r == DFN_OK && rows < 1) { fprintf(stderr, "demo: %s has no points\n", o.csv); return 1; }
        if (r == DFN_OK) {
            src.rows = (float *)malloc(sizeof(float) * 2 * (size_t)rows);
            if (!src.rows) return 1;
            r = dfn_points_load(o.csv, 2, src.rows, rows, &src.nrows, &line);
        }
        if (r != DFN_OK) {
            if (line > 0) fprintf(stderr, "demo: %s, line %d: %s\n", o.csv, line, dfn_result_string(r));
            else fprintf(stderr, "demo: %s: %s\n", o.csv, dfn_result_string(r));
            return 1;
        }
        printf("data: %d points from %s\n", src.nrows, o.csv);
    } else {
        if (dfn_data2d_from_name(o.data, &src.kind) != DFN_OK) {
            fprintf(stderr, "demo: unknown data set '%s' (see --help)\n", o.data);
            return 2;
        }
        src.have_kind = 1;
        printf("data: %s (standardized: mean 0, std 1 per coordinate)\n", o.data);
    }

    /* 2. The model and its schedule: load them, or train them. */
    sc = dfn_schedule_config_default(DFN_SCHEDULE_LINEAR, 1000);
    mc = dfn_mlp_config_default(2);
    if (o.load) {
        /* a model file, or safetensors (from tools/torch/train.py or build/convert) */
        size_t n = strlen(o.load);
        if (n >= 12 && strcmp(o.load + n - 12, ".safetensors") == 0) {
            dfn_error_detail d;
            dfn_result r = dfn_model_load_safetensors(o.load, NULL, NULL, &loaded, &d);
            if (r != DFN_OK && d.what[0]) fprintf(stderr, "%s: %s (%s)\n", o.load, d.what, d.why);
            ex_require(r, o.load);
        } else {
            ex_require(dfn_model_load(o.load, NULL, &loaded), o.load);
        }
        if (loaded.info.net != DFN_NET_MLP || loaded.info.mlp.dim != 2) {
            fprintf(stderr, "%s: not a 2D MLP\n", o.load);
            return 1;
        }
        sched = loaded.schedule;
        model = loaded.ema ? loaded.ema_model : loaded.model;
        printf("loaded %s: %d parameters, T = %d%s\n", o.load, (int)model.lay.count, sched.T,
               loaded.ema ? ", EMA weights" : "");
        params = NULL;
    } else {
        ex_require(dfn_schedule_alloc(&sched, &sc, NULL), "schedule");
        params = (float *)malloc(dfn_mlp_num_params(&mc) * sizeof(float));
        if (!params) return 1;
        ex_require(dfn_mlp_init(&model, &mc, params), "model");
        ex_require(dfn_mlp_init_weights(&model, &rng), "weights");
        tc = dfn_train_config_default();
        tc.batch = (int)o.batch;
        tc.total_steps = (int)o.steps;       /* cosine decay of the learning rate */
        tc.warmup_steps = o.steps >= 1000 ? 100 : 0;
        ex_require(dfn_trainer_alloc(&tr, &model, &sched, &tc, NULL), "trainer");
        printf("model: MLP, %d residual blocks of width %d, %d parameters; %s schedule, T = %d\n",
               mc.blocks, mc.hidden, (int)model.lay.count, "linear", sched.T);
        printf("training: %ld steps, batch %ld, Adam lr %g with cosine decay, EMA %g\n\n",
               o.steps, o.batch, (double)tc.lr, (double)tc.ema_decay);

        batch = (float *)malloc(sizeof(float) * 2 * (size_t)o.batch);
        if (!batch) return 1;
        t0 = clock();
        for (step = 1; step <= o.steps; step++) {
            float loss;
            draw(&src, &rng, batch, (int)o.batch);
            ex_require(dfn_train_step(&tr, batch, NULL, &rng, &loss), "training step");
            if (step % 100 == 0 || step == o.steps) {
                double el = seconds(t0), rate = step / (el > 1e-9 ? el : 1e-9);
                printf("\rstep %6ld/%ld  loss %.4f  %6.0f steps/s  ETA %3.0fs ", step, o.steps,
                       (double)loss, rate, (o.steps - step) / rate);
                fflush(stdout);
            }
        }
        printf("\ntrained in %.1f s\n\n", seconds(t0));
        free(batch);
        if (o.save) {
            ex_require(dfn_model_save(o.save, &model, &sched, &tr, 0), o.save);
            printf("saved %s\n", o.save);
        }
    }

    /* 3. Sample with the EMA weights (the trainer's ema_model). */
    {
        dfn_mlp_predictor pred;
        dfn_sampler smp;
        dfn_sampler_config cfg;
        size_t wbytes = dfn_mlp_forward_size(&model.cfg, 512);
        pred.model = o.load ? &model : &tr.ema_model;
        pred.work = malloc(wbytes);
        pred.work_bytes = wbytes;
        x_ddpm = (float *)malloc(sizeof(float) * 2 * (size_t)n);
        x_ddim = (float *)malloc(sizeof(float) * 2 * (size_t)n);
        ref = (float *)malloc(sizeof(float) * 2 * (size_t)n);
        ref2 = (float *)malloc(sizeof(float) * 2 * (size_t)n);
        noise = (float *)malloc(sizeof(float) * 2 * (size_t)n);
        if (!pred.work || !x_ddpm || !x_ddim || !ref || !ref2 || !noise) return 1;

        printf("  %-30s %10s %12s %9s\n", "samples vs fresh data", "ED^2", "MMD^2(0.05)", "time");
        if (do_ddpm) {
            cfg = dfn_mlp_sampler_config(DFN_SAMPLER_DDPM, n, &pred);
            ex_require(dfn_sampler_alloc(&smp, &cfg, &sched, NULL), "DDPM sampler");
            t0 = clock();
            ex_require(dfn_sampler_run(&smp, x_ddpm, NULL, &rng), "DDPM sampling");
            draw(&src, &rng, ref, n);
            report("DDPM, T steps", x_ddpm, ref, n, seconds(t0));
            dfn_sampler_free(&smp, NULL);
        }
        if (do_ddim) {
            char name[64];
            cfg = dfn_mlp_sampler_config(few, n, &pred);
            cfg.steps = (int)o.ddim_steps;
            cfg.spacing = (dfn_spacing)dfn_spacing_parse(o.spacing);
            ex_require(dfn_sampler_alloc(&smp, &cfg, &sched, NULL), "few-step sampler");
            t0 = clock();
            ex_require(dfn_sampler_run(&smp, x_ddim, NULL, &rng), "sampling");
            draw(&src, &rng, ref, n);
            snprintf(name, sizeof name, "%s, %s, %d NFE", dfn_sampler_kind_name(few), o.spacing,
                     dfn_sampler_nfe(&smp));
            report(name, x_ddim, ref, n, seconds(t0));
            dfn_sampler_free(&smp, NULL);
        }
        /* 4. What "good" and "bad" look like at this n. */
        draw(&src, &rng, ref2, n);
        report("noise floor: data vs data", ref2, ref, n, -1);
        dfn_rng_normal_fill(&rng, noise, 2 * (size_t)n);
        report("baseline: N(0, I) vs data", noise, ref, n, -1);
        free(pred.work);
    }

    /* 5. Pictures. */
    printf("\n");
    shown = do_ddpm ? x_ddpm : x_ddim;
    plot_density_pair(stdout, "data", ref, n, do_ddpm ? "DDPM samples" : dfn_sampler_kind_name(few), shown, n,
                      -3.0f, 3.0f, 36, 18);
    if (do_ddpm && do_ddim) {
        printf("\n");
        plot_density_pair(stdout, "data", ref, n, dfn_sampler_kind_name(few), x_ddim, n, -3.0f, 3.0f, 36, 18);
    }
    if (plot_svg_scatter(o.out, "diffusion.h: data (blue) and samples (red)", ref, n, "data",
                         do_ddim ? x_ddim : x_ddpm, n, do_ddim ? dfn_sampler_kind_name(few) : "DDPM samples",
                         -3.0f, 3.0f) != 0) {
        fprintf(stderr, "demo: cannot write %s\n", o.out);
        return 1;
    }
    printf("\nwrote %s\n", o.out);
    if (o.samples_out) {
        /* One point per line, "x y": the format dfn_points_load reads. */
        const float *p = do_ddim ? x_ddim : x_ddpm;
        FILE *f = fopen(o.samples_out, "w");
        int i, bad = !f;
        for (i = 0; f && i < n; i++) bad |= fprintf(f, "%.9g %.9g\n", p[2 * i], p[2 * i + 1]) < 0;
        if (f) bad |= fclose(f) != 0;
        if (bad) { fprintf(stderr, "demo: cannot write %s\n", o.samples_out); return 1; }
        printf("wrote %d samples to %s\n", n, o.samples_out);
    }

    if (o.load) dfn_model_free(&loaded, NULL);
    else {
        dfn_trainer_free(&tr, NULL);
        dfn_schedule_free(&sched, NULL);
        free(params);
    }
    free(x_ddpm); free(x_ddim); free(ref); free(ref2); free(noise); free(src.rows);
    return 0;
}
