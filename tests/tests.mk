# The test suite (included by the Makefile).
#
# A test is a function `void test_NAME(void)` at the start of a line in a
# file tests/test_*.c; the list of tests is made from those files
# ($(BUILD)/test_list.h), so a new test file is just the file. Runner
# filters pick tests by name: `./build/test_gcc unet -quality`.

TEST_FILES := $(sort $(wildcard tests/test_*.c))
TEST_SRC   := tests/main.c tests/impl.c $(TEST_FILES)
TEST_LIST  := $(BUILD)/test_list.h
TEST_DEP   := diffusion.h bench/digits.h tests/harness.h tests/unity.c tests/tests.mk \
              $(wildcard tests/fixtures/*.h) $(TEST_SRC) $(TEST_LIST)
TEST_INC   := -I. -I$(BUILD)

# Every test function of every test file, in file order (a line that starts
# like a test but is not one is an error), and the files for the one-unit
# builds (tests/unity.c).
$(TEST_LIST): $(TEST_FILES) tests/tests.mk | $(BUILD)
	@bad=$$(grep -n '^void test_' $(TEST_FILES) | grep -v ':void test_[A-Za-z0-9_]*(void)$$'); \
	if [ -n "$$bad" ]; then echo "tests: not of the form 'void test_NAME(void)':"; echo "$$bad"; exit 1; fi; \
	{ echo "/* Made by tests/tests.mk from tests/test_*.c: do not edit. */"; \
	  echo "#ifndef DFN_TEST_LIST_H"; echo "#define DFN_TEST_LIST_H"; \
	  echo "#define DFN_TEST_LIST(X) \\"; \
	  sed -n 's/^void test_\([A-Za-z0-9_]*\)(void)$$/    X(\1) \\/p' $(TEST_FILES); \
	  echo ""; \
	  echo "#ifdef DFN_TEST_UNITY"; \
	  for f in $(TEST_FILES); do echo "#include \"$$f\""; done; \
	  echo "#endif"; echo "#endif"; } > $@.tmp && mv $@.tmp $@

# Each build of the suite: one binary per compiler / configuration. The
# x86 SIMD builds are added when this CPU can run them.
HAVE_AVX2   := $(shell grep -qw avx2 /proc/cpuinfo 2>/dev/null && grep -qw fma /proc/cpuinfo && echo 1)
HAVE_AVX512 := $(shell grep -qw avx512f /proc/cpuinfo 2>/dev/null && grep -qw avx512bw /proc/cpuinfo && \
                       grep -qw avx512dq /proc/cpuinfo && grep -qw avx512vl /proc/cpuinfo && echo 1)
TESTS := $(BUILD)/test_gcc $(BUILD)/test_clang $(BUILD)/test_cxx \
         $(BUILD)/test_static_nosimd $(BUILD)/test_asan $(BUILD)/test_tsan \
         $(if $(HAVE_AVX2),$(BUILD)/test_avx2) $(if $(HAVE_AVX512),$(BUILD)/test_avx512)

# Which tests each build runs (runner filters: a name part, or -part to skip).
# The long training-quality test runs in the two optimized multi-file builds.
ARGS_test_gcc :=
ARGS_test_clang :=
ARGS_test_cxx := -quality
ARGS_test_static_nosimd := -quality
ARGS_test_asan := -quality
ARGS_test_tsan := threads
ARGS_test_avx2 := kernels net -quality
ARGS_test_avx512 := kernels net -quality

.PHONY: test test-quick test-valgrind fuzz fuzz-images build-cross

# Multi-translation-unit builds: tests/impl.c holds the implementation.
$(BUILD)/test_gcc: $(TEST_DEP) | $(BUILD)
	$(GCC) $(STRICT) $(OPT) $(POOL) $(TEST_INC) $(TEST_SRC) -o $@ -lm
$(BUILD)/test_clang: $(TEST_DEP) | $(BUILD)
	$(CLANG) $(STRICT) $(OPT) $(POOL) $(TEST_INC) $(TEST_SRC) -o $@ -lm
# The whole suite as one C++ translation unit (header and tests as C++).
$(BUILD)/test_cxx: $(TEST_DEP) | $(BUILD)
	$(CXX) $(CXXSTRICT) $(OPT) $(POOL) $(TEST_INC) tests/unity.c -o $@ -lm
# DFN_STATIC (every function static) with the scalar kernels only.
$(BUILD)/test_static_nosimd: $(TEST_DEP) | $(BUILD)
	$(GCC) $(STRICT) $(OPT) -DDFN_NO_SIMD $(TEST_INC) tests/unity.c -o $@ -lm
# AddressSanitizer + UndefinedBehaviorSanitizer; any report fails the run.
$(BUILD)/test_asan: $(TEST_DEP) | $(BUILD)
	$(CLANG) $(STRICT) -O1 -g -fno-omit-frame-pointer -fsanitize=address,undefined \
	    -fno-sanitize-recover=all $(POOL) $(TEST_INC) $(TEST_SRC) -o $@ -lm
# ThreadSanitizer on the thread tests (the pool's polling and sleeping).
$(BUILD)/test_tsan: $(TEST_DEP) | $(BUILD)
	$(CLANG) $(STRICT) -O1 -g -fsanitize=thread $(POOL) $(TEST_INC) $(TEST_SRC) -o $@ -lm
# The x86 SIMD kernels: AVX2 + FMA, and AVX-512.
$(BUILD)/test_avx2: $(TEST_DEP) | $(BUILD)
	$(GCC) $(STRICT) $(OPT) $(POOL) -mavx2 -mfma $(TEST_INC) $(TEST_SRC) -o $@ -lm
$(BUILD)/test_avx512: $(TEST_DEP) | $(BUILD)
	$(GCC) $(STRICT) $(OPT) $(POOL) -mavx512f -mavx512dq -mavx512bw -mavx512vl -mfma $(TEST_INC) $(TEST_SRC) -o $@ -lm
# valgrind 3.19 cannot decode AVX-512: build for AVX2 at most.
$(BUILD)/test_valgrind: $(TEST_DEP) | $(BUILD)
	$(GCC) $(STRICT) -O1 -g $(TEST_INC) $(TEST_SRC) -o $@ -lm

# The quick-start program of the header's manual, extracted and built as is.
$(BUILD)/manual_quickstart.c: diffusion.h | $(BUILD)
	awk '/1\. Quick start/ {q=1} q && /^      #define DIFFUSION_IMPLEMENTATION/ {p=1} \
	     p {print} p && /^      }$$/ {exit}' diffusion.h | sed 's/^      //' > $@
$(BUILD)/manual_quickstart: $(BUILD)/manual_quickstart.c
	$(GCC) $(STRICT) $(OPT) -I. $< -o $@ -lm

# Runs every build; stops at the first failing one. The last line sums them.
test: $(TESTS) $(BUILD)/manual_quickstart
	@echo "== the manual's quick start"; ./$(BUILD)/manual_quickstart
	@if command -v node >/dev/null 2>&1; then echo "== make emoji-data's sheet cutter (node tests/test_emoji2idx.js)"; \
	    node tests/test_emoji2idx.js || exit 1; \
	else echo "== make emoji-data's sheet cutter: skipped (no node; Debian: apt-get install nodejs)"; fi
	@passed=0; failed=0; \
	for t in $(TESTS); do \
	    case $$t in \
	        */test_gcc) args="$(ARGS_test_gcc)";; */test_clang) args="$(ARGS_test_clang)";; \
	        */test_cxx) args="$(ARGS_test_cxx)";; */test_static_nosimd) args="$(ARGS_test_static_nosimd)";; \
	        */test_asan) args="$(ARGS_test_asan)";; */test_tsan) args="$(ARGS_test_tsan)";; \
	        */test_avx2) args="$(ARGS_test_avx2)";; \
	        */test_avx512) args="$(ARGS_test_avx512)";; *) args="";; esac; \
	    echo "== $$t $$args"; \
	    ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1 ./$$t $$args > $$t.log 2>&1; rc=$$?; \
	    grep -v '^ok ' $$t.log; \
	    line=$$(tail -n 1 $$t.log); \
	    p=$$(echo "$$line" | sed -n 's/^\([0-9]*\) passed, \([0-9]*\) failed$$/\1/p'); \
	    f=$$(echo "$$line" | sed -n 's/^\([0-9]*\) passed, \([0-9]*\) failed$$/\2/p'); \
	    if [ $$rc -ne 0 ] || [ -z "$$p" ]; then \
	        echo "$$t failed (exit $$rc)"; failed=$$((failed + $${f:-1})); passed=$$((passed + $${p:-0})); \
	        echo "all builds: $$passed passed, $$failed failed"; exit 1; \
	    fi; \
	    passed=$$((passed + p)); \
	done; \
	echo "all builds: $$passed passed, $$failed failed"

test-quick: $(BUILD)/test_gcc
	./$(BUILD)/test_gcc

# Under valgrind the long statistical and training tests are left out
# (ASan + UBSan run them in `make test`); the U-Net still runs a training
# step, inference and its model files here.
test-valgrind: $(BUILD)/test_valgrind
	valgrind --error-exitcode=1 --leak-check=full --errors-for-leak-kinds=definite \
	    ./$(BUILD)/test_valgrind -exact_predictor -moments -closed_form_matches_chain -quality \
	    -unet_whole_gradients -cascade

# The NEON and WASM SIMD128 kernels (and WASM's scalar path) compiled with
# the cross compilers, warnings as errors; running them under emulation is
# the platform targets' job.
AARCH64_CC ?= aarch64-linux-gnu-gcc
build-cross: $(TEST_DEP) | $(BUILD)
	$(AARCH64_CC) $(STRICT) $(OPT) $(TEST_INC) $(TEST_SRC) -o $(BUILD)/cross_aarch64 -lm
	$(CLANG) --target=wasm32-wasi -msimd128 $(STRICT) $(OPT) $(TEST_INC) $(TEST_SRC) -o $(BUILD)/cross_wasm_simd.wasm
	$(CLANG) --target=wasm32-wasi $(STRICT) $(OPT) $(TEST_INC) $(TEST_SRC) -o $(BUILD)/cross_wasm_scalar.wasm

# libFuzzer on the model loader and the point parser, and on safetensors and
# diffusers' configs (clang), seeded with small valid files; FUZZ_SECONDS
# per target. No single allocation may pass
# FUZZ_MALLOC_MB (an input of a few kB asking for more is a finding: the
# loaders' limits should have refused it).
FUZZ_SECONDS ?= 30
FUZZ_MALLOC_MB ?= 256
FUZZ_FLAGS = -rss_limit_mb=4096 -malloc_limit_mb=$(FUZZ_MALLOC_MB) -timeout=20 -print_final_stats=1
$(BUILD)/fuzz_model: tests/fuzz_model.c diffusion.h | $(BUILD)
	$(CLANG) -g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all \
	    -DFUZZING_BUILD_MODE_UNSAFE_FOR_PRODUCTION -I. tests/fuzz_model.c -o $@ -lm
$(BUILD)/fuzz_seeds: tests/fuzz_model.c diffusion.h | $(BUILD)
	$(GCC) $(STRICT) -O1 -DDFN_FUZZ_WRITE_SEEDS -I. tests/fuzz_model.c -o $@ -lm
$(BUILD)/fuzz_st: tests/fuzz_safetensors.c diffusion.h | $(BUILD)
	$(CLANG) -g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all \
	    -I. tests/fuzz_safetensors.c -o $@ -lm
$(BUILD)/fuzz_st_seeds: tests/fuzz_safetensors.c diffusion.h | $(BUILD)
	$(GCC) $(STRICT) -O1 -DDFN_FUZZ_WRITE_SEEDS -I. tests/fuzz_safetensors.c -o $@ -lm
# make fuzz: the model files and points (fuzz_model), then safetensors, models
# from safetensors and diffusers' scheduler configs (fuzz_st), FUZZ_SECONDS each.
fuzz: $(BUILD)/fuzz_model $(BUILD)/fuzz_seeds $(BUILD)/fuzz_st $(BUILD)/fuzz_st_seeds
	rm -rf $(BUILD)/fuzz_corpus $(BUILD)/fuzz_st_corpus && mkdir -p $(BUILD)/fuzz_corpus $(BUILD)/fuzz_st_corpus
	./$(BUILD)/fuzz_seeds $(BUILD)/fuzz_corpus
	./$(BUILD)/fuzz_model -max_total_time=$(FUZZ_SECONDS) $(FUZZ_FLAGS) $(BUILD)/fuzz_corpus
	./$(BUILD)/fuzz_st_seeds $(BUILD)/fuzz_st_corpus
	./$(BUILD)/fuzz_st -max_total_time=$(FUZZ_SECONDS) $(FUZZ_FLAGS) $(BUILD)/fuzz_st_corpus

# libFuzzer on the IDX parsers, the grid and the PNG / PNM encoders
# (seeded with small valid IDX files), FUZZ_SECONDS per run.
$(BUILD)/fuzz_idx: tests/fuzz_idx.c diffusion.h | $(BUILD)
	$(CLANG) -g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all \
	    -I. tests/fuzz_idx.c -o $@ -lm
$(BUILD)/fuzz_idx_seeds: tests/fuzz_idx.c diffusion.h | $(BUILD)
	$(GCC) $(STRICT) -O1 -DDFN_FUZZ_WRITE_SEEDS -I. tests/fuzz_idx.c -o $@ -lm
fuzz-images: $(BUILD)/fuzz_idx $(BUILD)/fuzz_idx_seeds
	rm -rf $(BUILD)/fuzz_idx_corpus && mkdir -p $(BUILD)/fuzz_idx_corpus
	./$(BUILD)/fuzz_idx_seeds $(BUILD)/fuzz_idx_corpus
	./$(BUILD)/fuzz_idx -max_total_time=$(FUZZ_SECONDS) $(FUZZ_FLAGS) $(BUILD)/fuzz_idx_corpus

# Every fuzz target for FUZZ_LONG_SECONDS each (default 10 minutes), on
# corpora kept between runs (build/fuzz_long/), then one line per target:
# executions, corpus size and peak memory. A crash stops it, with the input
# saved as build/fuzz_long/crash-*.
FUZZ_LONG_SECONDS ?= 600
FUZZ_LONG := $(BUILD)/fuzz_long
.PHONY: fuzz-long
fuzz-long: $(BUILD)/fuzz_model $(BUILD)/fuzz_seeds $(BUILD)/fuzz_idx $(BUILD)/fuzz_idx_seeds \
           $(BUILD)/fuzz_st $(BUILD)/fuzz_st_seeds
	@mkdir -p $(FUZZ_LONG)/model $(FUZZ_LONG)/idx $(FUZZ_LONG)/st
	./$(BUILD)/fuzz_seeds $(FUZZ_LONG)/model
	./$(BUILD)/fuzz_idx_seeds $(FUZZ_LONG)/idx
	./$(BUILD)/fuzz_st_seeds $(FUZZ_LONG)/st
	@for t in model idx st; do \
	    echo "./$(BUILD)/fuzz_$$t -max_total_time=$(FUZZ_LONG_SECONDS) $(FUZZ_FLAGS) $(FUZZ_LONG)/$$t"; \
	    ./$(BUILD)/fuzz_$$t -max_total_time=$(FUZZ_LONG_SECONDS) $(FUZZ_FLAGS) -artifact_prefix=$(FUZZ_LONG)/ \
	        $(FUZZ_LONG)/$$t > $(FUZZ_LONG)/$$t.log 2>&1; rc=$$?; \
	    grep -v '^#' $(FUZZ_LONG)/$$t.log | tail -40; \
	    if [ $$rc -ne 0 ]; then echo "fuzz-long: fuzz_$$t failed (exit $$rc; the input is in $(FUZZ_LONG)/)"; exit 1; fi; \
	done
	@for t in model idx st; do \
	    printf 'fuzz-long %-6s %s s: %s executions, corpus %s files, peak RSS %s MB\n' $$t $(FUZZ_LONG_SECONDS) \
	        "$$(sed -n 's/^stat::number_of_executed_units: *//p' $(FUZZ_LONG)/$$t.log)" \
	        "$$(ls $(FUZZ_LONG)/$$t | wc -l)" \
	        "$$(sed -n 's/^stat::peak_rss_mb: *//p' $(FUZZ_LONG)/$$t.log)"; \
	done

# Parity with PyTorch (tools/torch/, Debian's python3-torch and python3-numpy;
# .ci/run installs them): (a) an MLP trained 200 steps in PyTorch loads here
# with the same predictions (1e-5 relative) and DDIM-50 samples (1e-4);
# (b) one trained here loads in PyTorch, the same checks; (c) both for a
# small U-Net; (d) each scheduler_config.json of tools/torch/scheduler_configs
# read here against diffusers' formulas evaluated with numpy (tables within
# 1e-7 relative, the same timesteps); (e) two CPU processes of torchrun
# (gloo) train 50 DDP steps and the result loads here, with PyTorch's
# predictions and DDIM samples (the same limits), and samples; and the
# converter's round trip, model file -> safetensors -> model file, byte for byte.
INTEROP_PY  ?= /usr/bin/python3
INTEROP_ENV ?= OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1
INTEROP     := $(BUILD)/interop_run
$(BUILD)/interop: tests/interop.c diffusion.h | $(BUILD)
	$(GCC) $(STRICT) $(OPT) -I. tests/interop.c -o $@ -lm

.PHONY: test-interop
test-interop: $(BUILD)/interop $(BUILD)/convert
	@$(INTEROP_PY) -c 'import torch, numpy' || { echo "test-interop: needs python3-torch and python3-numpy (apt-get install python3-torch python3-numpy libopenblas0-pthread)"; exit 1; }
	rm -rf $(INTEROP) && mkdir -p $(INTEROP)/a $(INTEROP)/b $(INTEROP)/c1 $(INTEROP)/c2 $(INTEROP)/d $(INTEROP)/e
	@echo "== (a) an MLP trained in PyTorch, run here"
	$(INTEROP_ENV) $(INTEROP_PY) tools/torch/interop.py export --net mlp --steps 200 --out $(INTEROP)/a
	./$(BUILD)/interop check $(INTEROP)/a
	@echo "== (b) an MLP trained here, run in PyTorch"
	./$(BUILD)/interop export --net mlp --steps 200 --out $(INTEROP)/b
	$(INTEROP_ENV) $(INTEROP_PY) tools/torch/interop.py check $(INTEROP)/b
	@echo "== (c) a U-Net both ways"
	$(INTEROP_ENV) $(INTEROP_PY) tools/torch/interop.py export --net unet --steps 200 --out $(INTEROP)/c1
	./$(BUILD)/interop check $(INTEROP)/c1
	./$(BUILD)/interop export --net unet --steps 200 --out $(INTEROP)/c2
	$(INTEROP_ENV) $(INTEROP_PY) tools/torch/interop.py check $(INTEROP)/c2
	@echo "== (d) diffusers scheduler configs against diffusers' formulas (numpy)"
	@for f in tools/torch/scheduler_configs/*.json; do \
	    b=$$(basename $$f .json); \
	    $(INTEROP_PY) tools/torch/diffusers_ref.py $$f --steps 1,2,3,5,7,10,16,20,25,50,100,250 > $(INTEROP)/d/$$b.ref.json \
	        && ./$(BUILD)/interop diffusers $$f $(INTEROP)/d/$$b.ref.json || exit 1; \
	done
	@echo "== (e) 50 DDP steps on two CPU processes (torchrun, gloo), sampled here"
	$(INTEROP_ENV) $(INTEROP_PY) -m torch.distributed.run --standalone --nproc_per_node 2 --redirects 1 --tee 1 \
	    tools/torch/train.py \
	    --net mlp --steps 50 --backend gloo --out $(INTEROP)/e/ddp.safetensors
	$(INTEROP_ENV) $(INTEROP_PY) tools/torch/interop.py predict $(INTEROP)/e/ddp.safetensors --out $(INTEROP)/e
	./$(BUILD)/interop check $(INTEROP)/e
	./$(BUILD)/interop sample $(INTEROP)/e/ddp.safetensors
	@echo "== the converter: model file -> safetensors -> model file"
	./$(BUILD)/convert $(INTEROP)/b/model.safetensors $(INTEROP)/b/model.dfnm
	./$(BUILD)/convert $(INTEROP)/b/model.dfnm $(INTEROP)/b/again.safetensors
	./$(BUILD)/convert $(INTEROP)/b/again.safetensors $(INTEROP)/b/again.dfnm
	cmp $(INTEROP)/b/model.dfnm $(INTEROP)/b/again.dfnm
	cmp $(INTEROP)/b/model.safetensors $(INTEROP)/b/again.safetensors
	@echo "test-interop: all passed"
