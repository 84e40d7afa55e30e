# diffusion.h on other platforms (included by the Makefile). Each target
# builds with cross compilers and runs under emulation; none installs
# anything (.ci/run installs the Debian packages listed there).
#
#   make test-wasm      the suite as wasm32-wasi (SIMD128 and scalar) under Node's WASI
#   make test-arm       the suite on AArch64 (NEON, scalar) and ARMv7 (NEON) under qemu-user
#   make test-portable  DFN_PORTABLE_MATH: the same hash on every platform
#   make test-cortexm   inference firmware on Cortex-M4F and M55 under qemu-system-arm
#   make test-embed     C89 declarations, C++98/17, tcc, -ffreestanding

NODE      ?= node
WASI_CC   ?= $(CLANG) --target=wasm32-wasi
A64_CC    ?= aarch64-linux-gnu-gcc
ARMHF_CC  ?= arm-linux-gnueabihf-gcc
QEMU_A64  ?= qemu-aarch64 -L /usr/aarch64-linux-gnu
QEMU_ARM  ?= qemu-arm -L /usr/arm-linux-gnueabihf
RUN_WASI  := NODE_NO_WARNINGS=1 $(NODE) tests/run-wasi.mjs

# Runs one test binary ($(1): the command, $(2): runner filters); fails unless
# it exits 0 and ends with "N passed, 0 failed". Prints only failures.
define dfn_run_suite
	@echo "== $(1) $(2)"; \
	$(1) $(2) > $(BUILD)/$(notdir $(word $(words $(1)),$(1))).log 2>&1; rc=$$?; \
	log=$(BUILD)/$(notdir $(word $(words $(1)),$(1))).log; \
	grep -v '^ok ' $$log; \
	tail -n 1 $$log | grep -q '^[0-9]* passed, 0 failed$$' && [ $$rc -eq 0 ] || \
	    { echo "$(1) failed (exit $$rc)"; exit 1; }
endef

.PHONY: test-wasm test-arm test-portable test-cortexm test-embed

# ---------------------------------------------------------------- WASM (WASI)
# wasm32 is the suite's 32-bit target (size_t is 32 bits), as is ARMv7.
# The scalar build skips the training-quality test (about a minute under
# Node; the SIMD build runs it), as the native DFN_NO_SIMD build does.
$(BUILD)/test_wasm_simd.wasm: $(TEST_DEP) | $(BUILD)
	$(WASI_CC) -msimd128 $(STRICT) $(OPT) -I. $(TEST_SRC) -o $@
$(BUILD)/test_wasm_scalar.wasm: $(TEST_DEP) | $(BUILD)
	$(WASI_CC) $(STRICT) $(OPT) -I. $(TEST_SRC) -o $@

test-wasm: $(BUILD)/test_wasm_simd.wasm $(BUILD)/test_wasm_scalar.wasm
	$(call dfn_run_suite,$(RUN_WASI) $(BUILD)/test_wasm_simd.wasm,)
	$(call dfn_run_suite,$(RUN_WASI) $(BUILD)/test_wasm_scalar.wasm,-quality)
	@echo "test-wasm: passed"

# ------------------------------------------------------ ARM Linux (qemu-user)
# AArch64 with NEON, AArch64 without (+nosimd: the scalar kernels), and
# ARMv7 hard-float with NEON (32-bit, like wasm32). qemu-user is an
# interpreter: the ARM runs skip the training-quality test (the x86-64 and
# WASM SIMD builds run it) to stay within a few minutes.
$(BUILD)/test_a64_neon: $(TEST_DEP) | $(BUILD)
	$(A64_CC) $(STRICT) $(OPT) -I. $(TEST_SRC) -o $@ -lm
$(BUILD)/test_a64_scalar: $(TEST_DEP) | $(BUILD)
	$(A64_CC) $(STRICT) $(OPT) -march=armv8-a+nosimd -I. $(TEST_SRC) -o $@ -lm
$(BUILD)/test_armv7_neon: $(TEST_DEP) | $(BUILD)
	$(ARMHF_CC) $(STRICT) $(OPT) -mfpu=neon -I. $(TEST_SRC) -o $@ -lm

test-arm: $(BUILD)/test_a64_neon $(BUILD)/test_a64_scalar $(BUILD)/test_armv7_neon
	$(call dfn_run_suite,$(QEMU_A64) $(BUILD)/test_a64_neon,-quality)
	$(call dfn_run_suite,$(QEMU_A64) $(BUILD)/test_a64_scalar,-quality)
	$(call dfn_run_suite,$(QEMU_ARM) $(BUILD)/test_armv7_neon,-quality)
	@echo "test-arm: passed"
