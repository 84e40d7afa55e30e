# diffusion.h: build the tests, examples, benchmarks and platform checks.
# Nothing to install: the library is the one header. Each folder has its own
# make file, included below; this one holds what they share.
#
#   make demo       sample the 8-Gaussian mixture, plot it, write build/demo.svg
#   make test       the whole test matrix (gcc, clang, C++, DFN_STATIC +
#                   DFN_NO_SIMD as one translation unit, ASan + UBSan, the
#                   thread tests under ThreadSanitizer, and the AVX2 /
#                   AVX-512 kernels where the CPU has them)
#   make test-quick one gcc build of the tests
#   make test-valgrind  the tests under valgrind (AVX2 at most; slow tests skipped)
#   make fuzz, make fuzz-images   libFuzzer on the loaders and parsers
#   make test-interop  parity with PyTorch (tools/torch; needs python3-torch)
#   make fuzz-long  every fuzz target for FUZZ_LONG_SECONDS each (default 600)
#   make bench, make bench-images speed against PyTorch; image quality
#   make samplers, mnist, cascade, guided2d, inpaint   the examples (examples/examples.mk)
#   make test-wasm, test-arm, test-portable, test-cortexm, test-embed
#                   other platforms (platforms/platforms.mk)
#   make web, test-web   the browser page (web/web.mk)
#   make mnist-data the digits (tools/tools.mk)
#   make clean
#
#   tests/tests.mk          the test builds, valgrind, the fuzzers, build-cross
#   examples/examples.mk    demo, mnist, cascade, guided2d, inpaint
#   platforms/platforms.mk  WASM, ARM, portable math, Cortex-M, embedding
#   bench/bench.mk          make bench, make bench-images
#   web/web.mk              the browser page
#   tools/tools.mk          model2c, convert, make mnist-data

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
# The examples are built for this machine's CPU (its best SIMD kernels).
NATIVE := $(shell $(CC) -march=native -E -x c /dev/null >/dev/null 2>&1 && echo -march=native)

.PHONY: all clean
.DEFAULT_GOAL := all

$(BUILD):
	mkdir -p $(BUILD)

clean:
	rm -rf $(BUILD)

include tests/tests.mk
include examples/examples.mk
include platforms/platforms.mk
include bench/bench.mk
include web/web.mk
include tools/tools.mk

# Every test build and example (TESTS: tests/tests.mk; EXAMPLES: examples/examples.mk).
all: $(TESTS) $(EXAMPLES)
