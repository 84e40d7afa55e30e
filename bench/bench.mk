# make bench: throughput of the default MLP (bench/bench_mlp.c), and of the
# same model in PyTorch (bench/torch_mlp.py) when Debian's python3-torch is
# installed, with the ratios diffusion.h / PyTorch from the same run
# (bench/combine.awk). Installs nothing. About 2.5-3 minutes with PyTorch
# (DDPM-1000 on 10,000 samples is 30-50 s per implementation).
#
#   make bench                      the full run
#   make bench BENCH_ARGS=--quick   fewer repetitions, DDPM-1000 on 2,000 samples
#   make bench BENCH_THREADS=1      PyTorch with 1 thread only
#
# diffusion.h is single-threaded: it runs once. PyTorch runs once per entry of
# BENCH_THREADS with torch.set_num_threads(N) and OPENBLAS_NUM_THREADS=N.
# OPENBLAS_CORETYPE and OPENBLAS_L2_SIZE, which some machines set for old
# OpenBLAS builds, are unset for that command alone (they slow a current
# OpenBLAS); torch_mlp.py prints the kernel OpenBLAS then picks.
#
# BENCH_TORCH_ENV goes into PyTorch's environment. Its default,
# OMP_WAIT_POLICY=PASSIVE, matters with 2 threads: PyTorch's OpenMP workers
# and the OpenBLAS (pthread) workers both busy-wait, and on a 2-core machine
# the two pools take the cores from each other after every GEMM; without it
# PyTorch trained 10-40x slower at 2 threads than at 1 (measured; 1 thread is
# not affected). With it, 2 threads run about as fast as 1. Debian's
# libopenblas0-openmp (one OpenMP pool shared with PyTorch) does scale:
#   make bench BENCH_TORCH_ENV=LD_LIBRARY_PATH=/usr/lib/x86_64-linux-gnu/openblas-openmp

BENCH_PY      ?= /usr/bin/python3
BENCH_THREADS ?= 1 2
BENCH_ARGS    ?=
BENCH_TORCH_ENV ?= OMP_WAIT_POLICY=PASSIVE
# -march=native only where the compiler accepts it (the SIMD path is chosen
# at compile time: AVX-512 / AVX2 need it).
BENCH_ARCH    := $(shell $(GCC) -march=native -x c -c /dev/null -o /dev/null >/dev/null 2>&1 && echo -march=native)
BENCH_CFLAGS  ?= -O2 $(BENCH_ARCH)

.PHONY: bench

$(BUILD)/bench_mlp: bench/bench_mlp.c diffusion.h $(wildcard src/*) | $(BUILD)
	$(GCC) $(STRICT) $(BENCH_CFLAGS) -I. bench/bench_mlp.c -o $@ -lm

bench: $(BUILD)/bench_mlp
	@rm -f $(BUILD)/bench_c.json $(BUILD)/bench_torch_*.json
	@cut -d' ' -f1 /proc/loadavg > $(BUILD)/bench_load.txt 2>/dev/null || echo 0 > $(BUILD)/bench_load.txt
	$(BUILD)/bench_mlp $(BENCH_ARGS) --json $(BUILD)/bench_c.json
	@if $(BENCH_PY) -c 'import torch' >/dev/null 2>&1; then \
	    for n in $(BENCH_THREADS); do \
	        echo; echo "== PyTorch, $$n thread(s)"; \
	        echo "env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE OPENBLAS_NUM_THREADS=$$n $(BENCH_TORCH_ENV)" \
	             "$(BENCH_PY) bench/torch_mlp.py --threads $$n $(BENCH_ARGS)"; \
	        env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE OPENBLAS_NUM_THREADS=$$n $(BENCH_TORCH_ENV) \
	            $(BENCH_PY) bench/torch_mlp.py --threads $$n $(BENCH_ARGS) --json $(BUILD)/bench_torch_$$n.json \
	            || echo "PyTorch with $$n thread(s) failed: left out of the table"; \
	    done; \
	fi
	@awk -v load="$$(cat $(BUILD)/bench_load.txt)" -v py="$(BENCH_PY)" -f bench/combine.awk $(BUILD)/bench_c.json $(foreach n,$(BENCH_THREADS),$(BUILD)/bench_torch_$(n).json)
