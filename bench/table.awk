# table.awk - the table of `make bench` (markdown): diffusion.h on 1 and 2
# threads next to PyTorch on 1 and 2 threads, from the same run.
#
#   awk [-v load0=L -v load1=L -v cpu=NAME -v ncpu=N -v date=D -v py=PYTHON
#        -v args=BENCH_ARGS -v torchenv=ENV] -f bench/table.awk \
#       PEAK.json DFN_1.json DFN_2.json TORCH_1.json TORCH_2.json [SPLIT.json]
#
# Each file is the flat JSON of `bench_dfn --peak --json`, `bench_dfn --json`
# `bench_torch.py --json` or `bench_dfn --split --json` (one "key": value a
# line). A missing or empty
# file leaves its column out ("-"); without both PyTorch files only the
# diffusion.h columns are printed. Exit status 1 when the two
# implementations' models have different parameter counts.
#
# ratio = diffusion.h / PyTorch for rates (above 1: diffusion.h is faster).
# GEMM GFLOP/s: FLOPs counted from the shapes (bench_dfn.c) times the rate;
# % peak: of the FMA peak of the kernels' SIMD width on as many threads.

function readjson(file, i,    line, k, v) {
    while ((getline line < file) > 0) {
        if (line !~ /^[ \t]*"[^"]*"[ \t]*:/) continue
        k = line; sub(/^[ \t]*"/, "", k); sub(/".*/, "", k)
        v = line; sub(/^[^:]*:[ \t]*/, "", v); sub(/,[ \t]*$/, "", v); gsub(/"/, "", v)
        val[i, k] = v
    }
    close(file)
    return ((i, "impl") in val)
}

function has(i, k) { return ok[i] && ((i, k) in val) }

function num(x) {
    x += 0
    if (x >= 100) return sprintf("%.0f", x)
    if (x >= 10) return sprintf("%.1f", x)
    return sprintf("%.2f", x)
}

function rate(i, k) { return has(i, k "_rate") ? num(val[i, k "_rate"]) : "-" }

function ratio(i, j, k) {
    if (!has(i, k "_rate") || !has(j, k "_rate") || val[j, k "_rate"] + 0 <= 0) return "-"
    return sprintf("%.2fx", val[i, k "_rate"] / val[j, k "_rate"])
}

function gflops(i, t, k,    g, p) {
    if (!has(i, k "_gflops")) return "-"
    g = val[i, k "_gflops"] + 0
    p = val[0, "peak" bits "_" t] + 0
    return p > 0 ? sprintf("%s (%.0f%%)", num(g), 100 * g / p) : num(g)
}

# the same by CPU time (1 thread only): the rate an idle core would give
function cpuratio(i, j, k) {
    if (!has(i, k "_cpurate") || !has(j, k "_cpurate") || val[j, k "_cpurate"] + 0 <= 0) return "-"
    return sprintf("%.2fx", val[i, k "_cpurate"] / val[j, k "_cpurate"])
}

# the step's products run alone (bench_dfn: the MLP's training shapes)
function gemmalone(k,    g, p) {
    if (!has(1, k "_gemmalone")) return ""
    g = val[1, k "_gemmalone"] + 0
    p = val[0, "peak" bits "_1"] + 0
    return p > 0 ? sprintf("; its GEMMs alone %s (%.0f%%)", num(g), 100 * g / p) : sprintf("; its GEMMs alone %s", num(g))
}

function cpugflops(k,    g, p) {
    if (!has(1, k "_cpurate") || !has(1, k "_gflops") || val[1, k "_rate"] + 0 <= 0) return ""
    g = val[1, k "_gflops"] * val[1, k "_cpurate"] / val[1, k "_rate"]
    p = val[0, "peak" bits "_1"] + 0
    return p > 0 ? sprintf("; by CPU time %s (%.0f%%)", num(g), 100 * g / p) : sprintf("; by CPU time %s", num(g))
}

function mb(x) { return sprintf("%.1f MB", x / 1e6) }

BEGIN {
    if (ARGC < 6) { print "usage: awk -f table.awk PEAK.json DFN_1.json DFN_2.json TORCH_1.json TORCH_2.json" > "/dev/stderr"; exit 2 }
    for (a = 1; a <= 6 && a < ARGC; a++) ok[a - 1] = readjson(ARGV[a], a - 1)
    if (!ok[1]) { print "table.awk: cannot read " ARGV[2] > "/dev/stderr"; exit 1 }
    bits = ok[0] ? val[0, "simd_bits"] : 0
    torch = ok[3] || ok[4]
    rc = 0

    # PyTorch with the reference BLAS (a few GFLOP/s) is not compared.
    refused = ""
    for (j = 3; j <= 4; j++)
        if (ok[j] && val[j, "matmul_gflops"] + 0 < 10) {
            refused = refused sprintf(" %s thread(s): 1024x1024 matmul %.1f GFLOP/s, BLAS %s;", val[j, "threads"], \
                                      val[j, "matmul_gflops"], val[j, "blas"])
            ok[j] = 0
        }
    torch_shown = ok[3] || ok[4]
    notopen = ""
    for (j = 3; j <= 4; j++)
        if (ok[j] && val[j, "blas"] !~ /OpenBLAS/)
            notopen = notopen sprintf(" %s thread(s): %s;", val[j, "threads"], val[j, "blas"])

    keys = "mlp_train_b256 mlp_train_b1024 mlp_ddim50 mlp_ddpm1000 unet_train_b64 unet_ddim50"
    nkeys = split(keys, key, " ")
    label["mlp_train_b256"] = "MLP train, batch 256 (steps/s)"
    label["mlp_train_b1024"] = "MLP train, batch 1024 (steps/s)"
    label["mlp_ddim50"] = "MLP DDIM-50, " val[1, "mlp_ddim50_n"] " points (samples/s)"
    label["mlp_ddpm1000"] = "MLP DDPM-1000, " val[1, "mlp_ddpm1000_n"] " points (samples/s)"
    label["unet_train_b64"] = "U-Net train, batch 64 (steps/s)"
    label["unet_ddim50"] = "U-Net DDIM-50, " val[1, "unet_ddim50_n"] " images (images/s)"

    print "## diffusion.h speed" (torch_shown ? " vs PyTorch" : "") ": `make bench" (args != "" ? " BENCH_ARGS=" args : "") "`"
    print ""
    printf "%s, %s; %s core(s) online; load average (1 min) %s before the run, %s after", \
        date, (cpu != "" ? cpu : "unknown CPU"), (ncpu != "" ? ncpu : "?"), load0, load1
    if (ncpu != "" && (load0 + 0 > 0.5 || load1 + 0 > 0.5))
        printf " (other work shared the cores: each cell is the best of a few repeats, and the 2-thread figures are the least reliable)"
    print "."
    if (ok[0]) {
        s = ""
        n = split("512 256 128", w, " ")
        for (i = 1; i <= n; i++)
            if ((0, "peak" w[i] "_1") in val)
                s = s sprintf("%s%s-bit %.0f / %.0f", (s == "" ? "" : ", "), w[i], val[0, "peak" w[i] "_1"], val[0, "peak" w[i] "_2"])
        print "FMA peak measured by the bench (register-resident loop, GFLOP/s on 1 / 2 threads): " (s == "" ? "not measured on this CPU" : s) "."
    }
    print "diffusion.h " substr(val[1, "impl"], 13) ": kernels " val[1, "simd"] ", threads by dfn_pthreads_start(2)."
    if (torch) {
        for (j = 3; j <= 4; j++)
            if ((j, "impl") in val)
                printf "%s, %s thread(s): BLAS %s; 1024x1024 matmul %.1f GFLOP/s; oneDNN convolutions %s%s.\n", \
                    val[j, "impl"], val[j, "threads"], val[j, "blas"], val[j, "matmul_gflops"], \
                    (val[j, "mkldnn"] + 0 ? "on" : "off"), (torchenv != "" ? "; " torchenv : "")
        pm = pu = ""
        bad = 0
        for (j = 3; j <= 4; j++)
            if ((j, "impl") in val) {
                pm = pm (pm == "" ? "" : ", ") val[j, "params_mlp"]
                pu = pu (pu == "" ? "" : ", ") val[j, "params_unet"]
                bad = bad || val[1, "params_mlp"] != val[j, "params_mlp"] || val[1, "params_unet"] != val[j, "params_unet"]
            }
        printf "Parameters: MLP %s (PyTorch %s), U-Net %s (PyTorch %s)%s\n", val[1, "params_mlp"], pm, \
            val[1, "params_unet"], pu, (bad ? "." : "; PyTorch's models were checked to compute diffusion.h's function from the same weights.")
        if (bad) {
            print ""
            print "**ERROR: the parameter counts differ: the models are not the same; no comparison.**"
            rc = 1
            ok[3] = ok[4] = 0
            torch_shown = 0
        }
    }
    if (notopen != "")
        print "**Warning: PyTorch does not run on OpenBLAS (" notopen " the comparison assumes libopenblas0-pthread).**"
    if (refused != "")
        print "**PyTorch left out: it runs on the reference BLAS (" refused " install libopenblas0-pthread).**"
    if (!torch)
        print "PyTorch is not installed (" (py == "" ? "/usr/bin/python3" : py) " -c 'import torch' fails): diffusion.h only (Debian: apt-get install python3-torch libopenblas0-pthread)."
    print ""

    if (torch_shown) {
        print "| measurement | diffusion.h 1 thread | diffusion.h 2 threads | 2t / 1t | PyTorch 1 thread | PyTorch 2 threads | diffusion.h / PyTorch, 1 thread | same, by CPU time | diffusion.h / PyTorch, 2 threads | GEMM GFLOP/s (% peak), 1 thread | GEMM GFLOP/s (% peak), 2 threads |"
        print "|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|"
    } else {
        print "| measurement | diffusion.h 1 thread | diffusion.h 2 threads | 2t / 1t | GEMM GFLOP/s (% peak), 1 thread | GEMM GFLOP/s (% peak), 2 threads |"
        print "|---|--:|--:|--:|--:|--:|"
    }
    for (i = 1; i <= nkeys; i++) {
        k = key[i]
        line = "| " label[k] " | " rate(1, k) " | " rate(2, k) " | " ratio(2, 1, k)
        if (has(5, k "_split"))
            line = line sprintf(" (<= %.2fx)", 1 / ((1 - val[5, k "_split"]) + val[5, k "_split"] / 2))
        if (torch_shown)
            line = line " | " rate(3, k) " | " rate(4, k) " | " ratio(1, 3, k) " | " cpuratio(1, 3, k) " | " ratio(2, 4, k)
        print line " | " gflops(1, 1, k) cpugflops(k) gemmalone(k) " | " gflops(2, 2, k) " |"
    }
    # memory: the library's blocks against PyTorch's max RSS
    m1 = val[1, "mem_mlp_train"] + val[1, "mem_mlp_sample"] + val[1, "mem_scratch"]
    m2 = ok[2] ? val[2, "mem_mlp_train"] + val[2, "mem_mlp_sample"] + val[2, "mem_scratch"] : 0
    u1 = val[1, "mem_unet_train"] + val[1, "mem_unet_sample"] + val[1, "mem_scratch"]
    u2 = ok[2] ? val[2, "mem_unet_train"] + val[2, "mem_unet_sample"] + val[2, "mem_scratch"] : 0
    line = "| memory, MLP (library blocks; PyTorch max RSS) | " mb(m1) " | " (ok[2] ? mb(m2) : "-") " | "
    line2 = "| memory, U-Net (library blocks; PyTorch max RSS) | " mb(u1) " | " (ok[2] ? mb(u2) : "-") " | "
    if (torch_shown) {
        line = line " | " (ok[3] ? mb(val[3, "rss_mlp"]) : "-") " | " (ok[4] ? mb(val[4, "rss_mlp"]) : "-") " | | | "
        line2 = line2 " | " (ok[3] ? mb(val[3, "rss_unet"]) : "-") " | " (ok[4] ? mb(val[4, "rss_unet"]) : "-") " | | | "
    }
    print line " | | |"
    print line2 " | | |"
    print ""
    print "Rates are the best of a few timed repeats after a warm-up" (torch_shown ? "; ratio = diffusion.h / PyTorch (above 1: diffusion.h is faster)" : "") "; 2t / 1t = diffusion.h's 2-thread speed-up" \
          (ok[5] ? ", and in brackets its bound 1 / ((1 - p) + p / 2), p the share of the 1-thread time spent in the work the library splits across threads (bench_dfn --split)" : "") "."
    print "By CPU time (1 thread): the same rates with the process's CPU time in place of the wall clock, which other processes on the core do not lower; on a busy machine these are the figures to trust, on an idle one they agree with the wall clock."
    print "GEMM GFLOP/s: the matrix-product FLOPs of the step counted from the shapes (bench/bench_dfn.c) times diffusion.h's rate; % of the FMA peak of its " \
          (bits ? bits "-bit" : "SIMD") " kernels on as many threads. Sampling counts the MLP's first layer without its t part (computed once per step for all points). \"Its GEMMs alone\": the training step's products (same shapes, same order) timed without the rest of the step."
    s = "Memory: diffusion.h counts the bytes of its blocks (trainer with weights, gradients, Adam moments, EMA and activations at the training batch, plus the sampling workspace and the worker threads' GEMM scratch); bench_dfn's own max RSS was " mb(val[1, "maxrss"]) "."
    if (torch_shown)
        s = s " PyTorch: the process's max RSS after the MLP's and after the U-Net's part (" mb(val[ok[3] ? 3 : 4, "rss_import"]) " right after `import torch`)."
    print s
    exit rc
}
