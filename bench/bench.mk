# make bench: one table of diffusion.h's speed next to PyTorch's, on 1 and 2
# threads, printed and written as markdown to $(BUILD)/bench.md.
#
#   bench/bench_dfn.c     diffusion.h: the default 2D MLP (train batch 256 and
#                         1024, DDIM-50 and DDPM-1000 on 10,000 points) and the
#                         MNIST example's default U-Net (train batch 64,
#                         DDIM-50 images); the FMA peak per SIMD width; the
#                         GEMM FLOPs counted from the shapes; the share of
#                         1-thread time in the work threads split (--split),
#                         which bounds the 2-thread speed-up
#   bench/bench_torch.py  the same two models in PyTorch (Debian's
#                         python3-torch), checked first to compute the same
#                         function as diffusion.h's from the same weights
#   bench/table.awk       the table
#
#   make bench                      the full run (3 minutes on an idle 2-core
#                                   machine; 9 minutes of wall time on a 2-core machine
#                                   with a load average of 6 from other work)
#   make bench BENCH_ARGS=--quick   fewer repetitions, DDPM-1000 on 2,000 points
#
# Without python3-torch (or without OpenBLAS) the table keeps only the
# diffusion.h columns. Set up the comparison on Debian 12 with
#   apt-get install python3-torch libopenblas0-pthread
# (with only the reference libblas3, PyTorch's matmuls run at a few GFLOP/s:
# the table then refuses the comparison).
#
# PyTorch runs once per thread count N with torch.set_num_threads(N) and
# OPENBLAS_NUM_THREADS=OMP_NUM_THREADS=N. OPENBLAS_CORETYPE and
# OPENBLAS_L2_SIZE, which some machines set for old OpenBLAS builds, are unset
# for that command alone (they slow a current OpenBLAS). BENCH_TORCH_ENV goes
# into PyTorch's environment. Its default, OMP_WAIT_POLICY=PASSIVE, matters
# with 2 threads: PyTorch's OpenMP workers and the OpenBLAS (pthread) workers
# both busy-wait, and on a 2-core machine the two pools take the cores from
# each other after every GEMM; without it PyTorch trained 10-40x slower at 2
# threads than at 1 (measured; 1 thread is not affected). Debian's
# libopenblas0-openmp (one OpenMP pool shared with PyTorch) also works:
#   make bench BENCH_TORCH_ENV=LD_LIBRARY_PATH=/usr/lib/x86_64-linux-gnu/openblas-openmp

BENCH_PY        ?= /usr/bin/python3
BENCH_ARGS      ?=
BENCH_TORCH_ENV ?= OMP_WAIT_POLICY=PASSIVE
# -march=native only where the compiler accepts it (the SIMD path is chosen
# at compile time: AVX-512 / AVX2 need it).
BENCH_ARCH    := $(shell $(GCC) -march=native -x c -c /dev/null -o /dev/null >/dev/null 2>&1 && echo -march=native)
BENCH_CFLAGS  ?= -O2 $(BENCH_ARCH)
BENCH_TORCH    = env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE OPENBLAS_NUM_THREADS=$$n OMP_NUM_THREADS=$$n \
                 $(BENCH_TORCH_ENV) $(BENCH_PY) bench/bench_torch.py --threads $$n

.PHONY: bench

$(BUILD)/bench_dfn: bench/bench_dfn.c diffusion.h $(wildcard src/*) | $(BUILD)
	$(GCC) $(STRICT) $(BENCH_CFLAGS) -I. bench/bench_dfn.c -o $@ -lm -pthread

bench: $(BUILD)/bench_dfn
	@rm -f $(BUILD)/bench_*.json $(BUILD)/bench.md $(BUILD)/bench_check_*.bin
	@cut -d' ' -f1 /proc/loadavg > $(BUILD)/bench_load.txt 2>/dev/null || echo '?' > $(BUILD)/bench_load.txt
	$(BUILD)/bench_dfn --peak --json $(BUILD)/bench_peak.json
	@echo; echo "== diffusion.h, the share of 1-thread time in the work that threads split"
	$(BUILD)/bench_dfn --split --json $(BUILD)/bench_split.json
	@if $(BENCH_PY) -c 'import torch' >/dev/null 2>&1; then \
	    n=1; echo; echo "== the PyTorch models against diffusion.h's (same weights, same inputs)"; \
	    $(BUILD)/bench_dfn --check-mlp $(BUILD)/bench_check_mlp.bin --check-unet $(BUILD)/bench_check_unet.bin \
	        && $(BENCH_TORCH) --check-mlp $(BUILD)/bench_check_mlp.bin --check-unet $(BUILD)/bench_check_unet.bin \
	        || { echo "bench: the PyTorch models differ from diffusion.h's: fix bench/bench_torch.py"; exit 1; }; \
	else \
	    echo "$(BENCH_PY) -c 'import torch' fails: diffusion.h only"; \
	fi
	@for n in 1 2; do \
	    echo; echo "== diffusion.h, $$n thread(s)"; \
	    echo "$(BUILD)/bench_dfn --threads $$n $(BENCH_ARGS)"; \
	    $(BUILD)/bench_dfn --threads $$n $(BENCH_ARGS) --json $(BUILD)/bench_dfn_$$n.json || exit 1; \
	    if $(BENCH_PY) -c 'import torch' >/dev/null 2>&1; then \
	        echo; echo "== PyTorch, $$n thread(s)"; \
	        echo "$(BENCH_TORCH) $(BENCH_ARGS)"; \
	        $(BENCH_TORCH) $(BENCH_ARGS) --json $(BUILD)/bench_torch_$$n.json \
	            || echo "PyTorch with $$n thread(s) failed: left out of the table"; \
	    fi; \
	done
	@awk -v load0="$$(cat $(BUILD)/bench_load.txt)" -v load1="$$(cut -d' ' -f1 /proc/loadavg 2>/dev/null)" \
	     -v cpu="$$(sed -n 's/^model name[^:]*: *//p' /proc/cpuinfo 2>/dev/null | head -n1)" \
	     -v ncpu="$$(getconf _NPROCESSORS_ONLN 2>/dev/null)" -v py="$(BENCH_PY)" -v args="$(BENCH_ARGS)" \
	     -v date="$$(date -u '+%Y-%m-%d %H:%M UTC')" -v torchenv="$(BENCH_TORCH_ENV)" \
	     -f bench/table.awk $(BUILD)/bench_peak.json $(BUILD)/bench_dfn_1.json $(BUILD)/bench_dfn_2.json \
	     $(BUILD)/bench_torch_1.json $(BUILD)/bench_torch_2.json $(BUILD)/bench_split.json > $(BUILD)/bench.md; \
	 rc=$$?; echo; cat $(BUILD)/bench.md; echo "(written to $(BUILD)/bench.md)"; exit $$rc

# make bench-images: the quality of a trained U-Net's digits
# (bench/image_quality.c, with the classifier and Frechet distance of
# bench/digits.h). Trains the small digit classifier on data/mnist (10-30 s
# at 28x28), samples N images with DDIM on the model's EMA weights (500
# DDIM-50 samples of the 28x28 base-16 U-Net: about 2.5 minutes on one core),
# and prints (a) the share classified with confidence >= 0.9, (b) the class
# histogram, (c) the Frechet distance of the classifier's features to real
# held-out digits beside its real-vs-real floor and noise-vs-real ceiling,
# with PASS / FAIL against the targets of issue 4. Needs a model: `make
# mnist` writes build/mnist/mnist.dfnm.
#
#   make bench-images                         the last `make mnist` model
#   make bench-images MODEL=path/to/file.dfnm another U-Net model file
#   make bench-images IMAGES_N=1000 IMAGES_STEPS=100 IMAGES_SEED=2
#   make bench-images IMAGES_ARGS="--strict --grid build/quality.png"
#   make bench-images IMAGES_STEPS=20 IMAGES_ARGS="--sampler dpm++3m --spacing logsnr"
#   make bench-images IMAGES_ARGS="--sampler ddpm --conditional-only"   (DDPM-1000: about 30 minutes)
#   make bench-images MODEL=build/mnist_flow/mnist.dfnm IMAGES_STEPS=10 \
#        IMAGES_ARGS="--sampler midpoint --spacing trailing"   a flow model
#        (`mnist-example --process flow`): its schedule and prediction come
#        from the file; the default DDIM trailing runs on it as it is (Euler
#        in u), logsnr and karras spacings are refused (a_T = 0)
#
# ./build/image_quality --train-model OUT trains a small 14x14 U-Net for a
# few hundred steps: enough to run the measure end to end (poor digits).

MODEL        ?= build/mnist/mnist.dfnm
IMAGES_N     ?= 500
IMAGES_STEPS ?= 50
IMAGES_SEED  ?= 1
IMAGES_ARGS  ?=
# the guidance scale of the class-conditional samples: examples/mnist.c's default
IMAGES_GUIDANCE ?= 1.5
# Classifier-free guidance (--guidance W) once the sampler config has a
# guidance_scale field.
IMAGES_DEFS  := $(shell grep -q 'guidance_scale;' diffusion.h 2>/dev/null && echo -DIQ_GUIDANCE)

.PHONY: bench-images bench-emoji bench-quant

$(BUILD)/image_quality: bench/image_quality.c bench/digits.h diffusion.h | $(BUILD)
	$(GCC) $(STRICT) $(BENCH_CFLAGS) $(IMAGES_DEFS) -pthread -I. bench/image_quality.c -o $@ -lm

bench-images: $(BUILD)/image_quality
	@if [ ! -f "$(MODEL)" ]; then \
	    echo "bench-images: no model at $(MODEL): train one with 'make mnist' (or set MODEL=...)" >&2; \
	    exit 1; fi
	@$(MAKE) --no-print-directory mnist-data
	./$(BUILD)/image_quality --model $(MODEL) --n $(IMAGES_N) --steps $(IMAGES_STEPS) \
	    --seed $(IMAGES_SEED) --guidance $(IMAGES_GUIDANCE) --grid $(BUILD)/bench_images_samples.png $(IMAGES_ARGS)

# The emoji model of `make emoji`, measured the same way in colour: the
# classifier of bench/digits.h trained on the 9 categories (RGB input),
# with the sampler make emoji draws its grid with (DPM-Solver++(3M),
# logSNR, 20 steps, guidance 3: its default for the emoji).
EMOJI_MODEL ?= build/emoji/emoji.dfnm
EMOJI_GUIDANCE ?= 3
EMOJI_BENCH_ARGS ?=
bench-emoji: $(BUILD)/image_quality
	@if [ ! -f "$(EMOJI_MODEL)" ]; then \
	    echo "bench-emoji: no model at $(EMOJI_MODEL): train one with 'make emoji' (or set EMOJI_MODEL=...)" >&2; \
	    exit 1; fi
	@$(MAKE) --no-print-directory emoji-data
	./$(BUILD)/image_quality --data data/emoji --model $(EMOJI_MODEL) --n $(IMAGES_N) --steps 20 \
	    --sampler dpm++3m --spacing logsnr --seed $(IMAGES_SEED) --guidance $(EMOJI_GUIDANCE) \
	    --grid $(BUILD)/bench_emoji_samples.png $(EMOJI_BENCH_ARGS)

# What the small weight formats cost in sample quality (MATH.md section 13):
# the default 2D MLP trained on each built-in set, sampled as float, fp16
# and int8 (about 5 minutes on 2 cores).
BENCH_QUANT_ARGS ?=
$(BUILD)/bench_quant: bench/bench_quant.c diffusion.h | $(BUILD)
	$(GCC) $(STRICT) $(BENCH_CFLAGS) -DDFN_PTHREADS -pthread -I. bench/bench_quant.c -o $@ -lm
bench-quant: $(BUILD)/bench_quant
	./$(BUILD)/bench_quant --md $(BUILD)/bench_quant.md $(BENCH_QUANT_ARGS)
