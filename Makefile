# diffusion.h: build the tests and examples. Nothing to install: the library
# is the one header.
#
#   make demo       sample the 8-Gaussian mixture, plot it, write build/demo.svg
#   make test       the whole test matrix (gcc, clang, C++, DFN_STATIC +
#                   DFN_NO_SIMD as one translation unit, ASan + UBSan)
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

TEST_SRC := tests/main.c tests/impl.c tests/test_rng.c tests/test_schedule.c \
            tests/test_forward.c tests/test_sampler.c tests/test_exact.c tests/test_errors.c
TEST_DEP := diffusion.h tests/harness.h tests/unity.c $(TEST_SRC)

# Each build of the suite: one binary per compiler / configuration.
TESTS := $(BUILD)/test_gcc $(BUILD)/test_clang $(BUILD)/test_cxx \
         $(BUILD)/test_static_nosimd $(BUILD)/test_asan

.PHONY: all demo test test-quick test-valgrind clean

all: $(TESTS) $(BUILD)/demo

$(BUILD):
	mkdir -p $(BUILD)

# Multi-translation-unit builds: tests/impl.c holds the implementation.
$(BUILD)/test_gcc: $(TEST_DEP) | $(BUILD)
	$(GCC) $(STRICT) $(OPT) -I. $(TEST_SRC) -o $@ -lm
$(BUILD)/test_clang: $(TEST_DEP) | $(BUILD)
	$(CLANG) $(STRICT) $(OPT) -I. $(TEST_SRC) -o $@ -lm
# The whole suite as one C++ translation unit (header and tests as C++).
$(BUILD)/test_cxx: $(TEST_DEP) | $(BUILD)
	$(CXX) $(CXXSTRICT) $(OPT) -I. tests/unity.c -o $@ -lm
# DFN_STATIC (every function static) with the scalar kernels only.
$(BUILD)/test_static_nosimd: $(TEST_DEP) | $(BUILD)
	$(GCC) $(STRICT) $(OPT) -DDFN_NO_SIMD -I. tests/unity.c -o $@ -lm
# AddressSanitizer + UndefinedBehaviorSanitizer; any report fails the run.
$(BUILD)/test_asan: $(TEST_DEP) | $(BUILD)
	$(CLANG) $(STRICT) -O1 -g -fno-omit-frame-pointer -fsanitize=address,undefined \
	    -fno-sanitize-recover=all -I. $(TEST_SRC) -o $@ -lm
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
	    echo "== $$t"; \
	    ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1 ./$$t > $$t.log 2>&1; rc=$$?; \
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

test-valgrind: $(BUILD)/test_valgrind
	valgrind --error-exitcode=1 --leak-check=full --errors-for-leak-kinds=definite \
	    ./$(BUILD)/test_valgrind -exact_predictor -moments -closed_form_matches_chain

$(BUILD)/demo: examples/demo.c examples/plot.h diffusion.h | $(BUILD)
	$(CC) $(STRICT) $(OPT) -I. examples/demo.c -o $@ -lm

demo: $(BUILD)/demo
	./$(BUILD)/demo --out $(BUILD)/demo.svg

clean:
	rm -rf $(BUILD)
