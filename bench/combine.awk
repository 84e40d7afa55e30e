# combine.awk - the combined table of `make bench`: diffusion.h's numbers next
# to PyTorch's (1 and 2 threads) from the same run, with the ratios.
#
#   awk [-v load=L] [-v py=PYTHON] -f bench/combine.awk C.json [TORCH_1.json [TORCH_2.json ...]]
#
# Each file is the flat JSON of `bench_mlp --json` or `torch_mlp.py --json`
# (one "key": value a line). A missing or empty PyTorch file is skipped; with
# none, only diffusion.h's numbers are printed, with a line saying so.
# ratio = diffusion.h / PyTorch for rates (above 1: diffusion.h is faster).
# load: the 1-minute load average before the run; above 0.5 the machine was
# busy with other work and the numbers (the multi-threaded ones most) are
# not to be trusted.

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

BEGIN {
    if (ARGC < 2) { print "usage: awk -f combine.awk C.json [TORCH.json ...]" > "/dev/stderr"; exit 2 }
    if (!readjson(ARGV[1], 0)) { print "combine.awk: cannot read " ARGV[1] > "/dev/stderr"; exit 1 }
    nt = 0
    for (a = 2; a < ARGC; a++) if (readjson(ARGV[a], nt + 1)) nt++

    nkeys = split("train_b256 train_b1024 ddim50 ddpm1000", keys, " ")
    label["train_b256"] = "train steps/s, batch 256"
    label["train_b1024"] = "train steps/s, batch 1024"
    label["ddim50"] = "DDIM-50 samples/s, " val[0, "ddim50_n"]
    label["ddpm1000"] = "DDPM-1000 samples/s, " val[0, "ddpm1000_n"]

    print ""
    if (nt > 0)
        print "== diffusion.h vs PyTorch, measured in this run (ratio = diffusion.h / PyTorch; > 1: diffusion.h faster)"
    else
        print "== diffusion.h"
    hdr = sprintf("%-32s %12s", "measurement", "diffusion.h")
    sub_ = sprintf("%-32s %12s", "", "1 thread")
    for (j = 1; j <= nt; j++) {
        hdr = hdr sprintf(" | %12s %7s", "PyTorch", "ratio")
        sub_ = sub_ sprintf(" | %12s %7s", val[j, "threads"] " thread" (val[j, "threads"] == 1 ? "" : "s"), "")
    }
    print hdr
    print sub_
    for (i = 1; i <= nkeys; i++) {
        k = keys[i]
        line = sprintf("%-32s %12.1f", label[k], val[0, k "_rate"])
        gline = sprintf("%-32s %12.1f", "  GEMM GFLOP/s", val[0, k "_gflops"])
        for (j = 1; j <= nt; j++) {
            r = val[j, k "_rate"] + 0
            line = line sprintf(" | %12.1f %6.2fx", r, r > 0 ? val[0, k "_rate"] / r : 0)
            gline = gline sprintf(" | %12.1f %7s", val[j, k "_gflops"], "")
        }
        print line
        print gline
    }
    print ""
    print "diffusion.h kernels: " val[0, "simd"] " (dfn_simd_name), 1 thread, " val[0, "params"] " parameters"
    if (nt == 0) {
        print "PyTorch is not installed (" (py == "" ? "/usr/bin/python3" : py) " -c 'import torch' fails): only diffusion.h's numbers."
        print "(Debian: apt-get install python3-torch python3-numpy libopenblas0-pthread)"
    }
    for (j = 1; j <= nt; j++)
        printf "%s, %s thread(s): BLAS %s, 1024x1024 matmul %.1f GFLOP/s%s\n", \
            val[j, "impl"], val[j, "threads"], val[j, "blas"], val[j, "matmul_gflops"], \
            (val[j, "matmul_gflops"] + 0 < 20 ? "  <- reference BLAS? the ratios are meaningless" : "")
    if (load + 0 > 0.5)
        print "warning: load average " load " before the run: other processes were using the CPU; " \
              "the numbers (2 threads most) are unreliable: rerun on an idle machine"
    exit 0
}
