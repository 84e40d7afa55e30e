# diffusion.h: build the tests and examples. Nothing to install: the library
# is the one header.
#
#   make demo       sample the 8-Gaussian mixture, plot it, write build/demo.svg
#   make test       the whole test matrix (gcc, clang, C++, DFN_STATIC +
#                   DFN_NO_SIMD as one translation unit, ASan + UBSan, the
#                   thread tests under ThreadSanitizer, and the AVX2 /
#                   AVX-512 kernels where the CPU has them)
#   make fuzz       libFuzzer on the model loader and point parser
#   make bench      speed, and the same model in PyTorch when installed
#   make test-quick one gcc build of the tests
#   make test-valgrind  the tests under valgrind (AVX2 at most; slow tests skipped)
#   make clean

CC      ?= cc
GCC     ?= gcc
CLANG   ?= clang
CXX     ?= g++
BUILD   ?= build
STRICT  := -std=c99 -Wall -Wextra -Wpedantic -Werror
CXXSTRICT := -x c++ -std=c++11 -Wall -Wextra -Wpedantic -Werror
OPT     ?= -O2
# The ready pthreads pool (and its test) in the host builds.
POOL    := -DDFN_PTHREADS -pthread

TEST_SRC := tests/main.c tests/impl.c tests/test_rng.c tests/test_schedule.c \
            tests/test_forward.c tests/test_sampler.c tests/test_exact.c tests/test_errors.c \
            tests/test_kernels.c tests/test_data.c tests/test_net.c tests/test_unet.c \
            tests/test_images.c tests/test_control.c tests/test_quality.c tests/test_portable.c \
            tests/test_cascade.c tests/test_compat.c tests/test_netif.c
TEST_DEP := diffusion.h bench/digits.h tests/harness.h tests/fixtures/files_070.h $(wildcard tests/list_*.h) tests/unity.c $(TEST_SRC)

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

.PHONY: all demo test test-quick test-valgrind fuzz build-cross clean

all: $(TESTS) $(BUILD)/demo

$(BUILD):
	mkdir -p $(BUILD)

# Multi-translation-unit builds: tests/impl.c holds the implementation.
$(BUILD)/test_gcc: $(TEST_DEP) | $(BUILD)
	$(GCC) $(STRICT) $(OPT) $(POOL) -I. $(TEST_SRC) -o $@ -lm
$(BUILD)/test_clang: $(TEST_DEP) | $(BUILD)
	$(CLANG) $(STRICT) $(OPT) $(POOL) -I. $(TEST_SRC) -o $@ -lm
# The whole suite as one C++ translation unit (header and tests as C++).
$(BUILD)/test_cxx: $(TEST_DEP) | $(BUILD)
	$(CXX) $(CXXSTRICT) $(OPT) $(POOL) -I. tests/unity.c -o $@ -lm
# DFN_STATIC (every function static) with the scalar kernels only.
$(BUILD)/test_static_nosimd: $(TEST_DEP) | $(BUILD)
	$(GCC) $(STRICT) $(OPT) -DDFN_NO_SIMD -I. tests/unity.c -o $@ -lm
# AddressSanitizer + UndefinedBehaviorSanitizer; any report fails the run.
$(BUILD)/test_asan: $(TEST_DEP) | $(BUILD)
	$(CLANG) $(STRICT) -O1 -g -fno-omit-frame-pointer -fsanitize=address,undefined \
	    -fno-sanitize-recover=all $(POOL) -I. $(TEST_SRC) -o $@ -lm
# ThreadSanitizer on the thread tests (the pool's polling and sleeping).
$(BUILD)/test_tsan: $(TEST_DEP) | $(BUILD)
	$(CLANG) $(STRICT) -O1 -g -fsanitize=thread $(POOL) -I. $(TEST_SRC) -o $@ -lm
# The x86 SIMD kernels: AVX2 + FMA, and AVX-512.
$(BUILD)/test_avx2: $(TEST_DEP) | $(BUILD)
	$(GCC) $(STRICT) $(OPT) $(POOL) -mavx2 -mfma -I. $(TEST_SRC) -o $@ -lm
$(BUILD)/test_avx512: $(TEST_DEP) | $(BUILD)
	$(GCC) $(STRICT) $(OPT) $(POOL) -mavx512f -mavx512dq -mavx512bw -mavx512vl -mfma -I. $(TEST_SRC) -o $@ -lm
# valgrind 3.19 cannot decode AVX-512: build for AVX2 at most.
$(BUILD)/test_valgrind: $(TEST_DEP) | $(BUILD)
	$(GCC) $(STRICT) -O1 -g -I. $(TEST_SRC) -o $@ -lm

# The quick-start program of the header's manual, extracted and built as is.
$(BUILD)/manual_quickstart.c: diffusion.h | $(BUILD)
	awk '/1\. Quick start/ {q=1} q && /^      #define DIFFUSION_IMPLEMENTATION/ {p=1} \
	     p {print} p && /^      }$$/ {exit}' diffusion.h | sed 's/^      //' > $@
$(BUILD)/manual_quickstart: $(BUILD)/manual_quickstart.c
	$(GCC) $(STRICT) $(OPT) -I. $< -o $@ -lm

# Runs every build; stops at the first failing one. The last line sums them.
test: $(TESTS) $(BUILD)/manual_quickstart
	@echo "== the manual's quick start"; ./$(BUILD)/manual_quickstart
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
	$(AARCH64_CC) $(STRICT) $(OPT) -I. $(TEST_SRC) -o $(BUILD)/cross_aarch64 -lm
	$(CLANG) --target=wasm32-wasi -msimd128 $(STRICT) $(OPT) -I. $(TEST_SRC) -o $(BUILD)/cross_wasm_simd.wasm
	$(CLANG) --target=wasm32-wasi $(STRICT) $(OPT) -I. $(TEST_SRC) -o $(BUILD)/cross_wasm_scalar.wasm

# libFuzzer on the model loader and the point parser (clang), seeded with
# small valid files; FUZZ_SECONDS per run.
FUZZ_SECONDS ?= 30
$(BUILD)/fuzz_model: tests/fuzz_model.c $(TEST_DEP) | $(BUILD)
	$(CLANG) -g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all \
	    -DFUZZING_BUILD_MODE_UNSAFE_FOR_PRODUCTION -I. tests/fuzz_model.c -o $@ -lm
$(BUILD)/fuzz_seeds: tests/fuzz_model.c $(TEST_DEP) | $(BUILD)
	$(GCC) $(STRICT) -O1 -DDFN_FUZZ_WRITE_SEEDS -I. tests/fuzz_model.c -o $@ -lm
fuzz: $(BUILD)/fuzz_model $(BUILD)/fuzz_seeds
	rm -rf $(BUILD)/fuzz_corpus && mkdir -p $(BUILD)/fuzz_corpus
	./$(BUILD)/fuzz_seeds $(BUILD)/fuzz_corpus
	./$(BUILD)/fuzz_model -max_total_time=$(FUZZ_SECONDS) -rss_limit_mb=4096 -timeout=20 \
	    -print_final_stats=1 $(BUILD)/fuzz_corpus

# The demo is built for this machine's CPU (its best SIMD kernels).
NATIVE := $(shell $(CC) -march=native -E -x c /dev/null >/dev/null 2>&1 && echo -march=native)
$(BUILD)/demo: examples/demo.c examples/plot.h diffusion.h | $(BUILD)
	$(CC) $(STRICT) $(OPT) $(NATIVE) -I. examples/demo.c -o $@ -lm

demo: $(BUILD)/demo
	./$(BUILD)/demo --out $(BUILD)/demo.svg

include control.mk
include cascade.mk

clean:
	rm -rf $(BUILD)

# make bench (bench/bench.mk), make bench-images (bench/images.mk)
-include bench/bench.mk
include bench/images.mk
include web/web.mk

# Image data, fuzz-images (images.mk)
include images.mk

# The MNIST example (examples/mnist.c): make mnist-data fetches the digits.
$(BUILD)/mnist-example: examples/mnist.c diffusion.h | $(BUILD)
	$(CC) $(STRICT) $(OPT) $(NATIVE) -pthread -I. examples/mnist.c -o $@ -lm

mnist: $(BUILD)/mnist-example mnist-data
	./$(BUILD)/mnist-example $(MNIST_ARGS)
.PHONY: mnist

# make test-wasm, test-arm, test-portable, test-cortexm, test-embed (platforms.mk)
include platforms.mk
