# diffusion.h on other platforms (included by the Makefile; the programs and scripts it runs are in this folder). Each target
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
# The flag is needed by Node 18 (Debian 12) and accepted by Node 20.
RUN_WASI  := env NODE_NO_WARNINGS=1 $(NODE) --experimental-wasi-unstable-preview1 platforms/run-wasi.mjs

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

# The same for the WASI runner, whose last line says what main returned,
# after the suite's "N passed, 0 failed". Node 20 has been seen to die of a
# segmentation fault after that line, once in about ten runs of an
# unchanged binary (its own heap: WebAssembly cannot write outside its
# linear memory); such a run counts, with a warning, when the program
# returned 0 after all its tests passed.
define dfn_run_wasi_suite
	@echo "== $(1) $(2)"; \
	$(1) $(2) > $(BUILD)/$(notdir $(word $(words $(1)),$(1))).log 2>&1; rc=$$?; \
	log=$(BUILD)/$(notdir $(word $(words $(1)),$(1))).log; \
	grep -v '^ok ' $$log; \
	ret=$$(grep -c '^run-wasi: the program returned 0$$' $$log); \
	done=$$(grep -B 1 '^run-wasi: the program returned' $$log | head -n 1 | grep -c '^[0-9]* passed, 0 failed$$'); \
	if [ $$done -eq 1 ] && [ $$ret -eq 1 ] && [ $$rc -ge 128 ]; then \
	    echo "warning: node died (exit $$rc) after the program returned 0 with every test passed"; rc=0; fi; \
	[ $$done -eq 1 ] && [ $$ret -eq 1 ] && [ $$rc -eq 0 ] || \
	    { echo "$(1) failed (exit $$rc)"; exit 1; }
endef

.PHONY: test-wasm test-arm test-portable test-cortexm test-embed

# ---------------------------------------------------------------- WASM (WASI)
# wasm32 is the suite's 32-bit target (size_t is 32 bits), as is ARMv7.
# The scalar build skips the training-quality test (about a minute under
# Node; the SIMD build runs it), as the native DFN_NO_SIMD build does.
# The suite starts with 1 GiB of linear memory and never grows it: with
# memory.grow during a long run, Node 20's WASI corrupted Node's own heap
# (a freed string, then a crash after main returned; seen with the U-Net
# training tests, scalar and SIMD builds alike, on any V8 tier). Without
# growth the same binaries run clean.
WASI_MEM  := -Wl,--initial-memory=1073741824
$(BUILD)/test_wasm_simd.wasm: $(TEST_DEP) platforms/platforms.mk | $(BUILD)
	$(WASI_CC) -msimd128 $(STRICT) $(OPT) $(WASI_MEM) $(TEST_INC) $(TEST_SRC) -o $@
$(BUILD)/test_wasm_scalar.wasm: $(TEST_DEP) platforms/platforms.mk | $(BUILD)
	$(WASI_CC) $(STRICT) $(OPT) $(WASI_MEM) $(TEST_INC) $(TEST_SRC) -o $@

test-wasm: $(BUILD)/test_wasm_simd.wasm $(BUILD)/test_wasm_scalar.wasm
	$(call dfn_run_wasi_suite,$(RUN_WASI) $(BUILD)/test_wasm_simd.wasm,)
	$(call dfn_run_wasi_suite,$(RUN_WASI) $(BUILD)/test_wasm_scalar.wasm,-quality)
	@echo "test-wasm: passed"

# ------------------------------------------------------ ARM Linux (qemu-user)
# AArch64 with NEON, AArch64 without (+nosimd: the scalar kernels), and
# ARMv7 hard-float with NEON (32-bit, like wasm32). qemu-user is slow on
# double-precision and NEON code: the ARM runs skip the training-quality
# test and forward_closed_form_matches_chain (6.5 minutes alone on ARMv7;
# the x86-64 and WASM builds run both) to stay within a few minutes, and
# the whole-U-Net gradient check and the cascade's training test (minutes
# each under qemu; the layers' own gradient checks run here).
# The NEON builds also run the pthreads pool (its test polls with AArch64's
# yield, and without a pause instruction on ARMv7).
ARM_SKIP := -quality -closed_form_matches_chain -unet_whole_gradients -cascade
$(BUILD)/test_a64_neon: $(TEST_DEP) | $(BUILD)
	$(A64_CC) $(STRICT) $(OPT) $(POOL) $(TEST_INC) $(TEST_SRC) -o $@ -lm
$(BUILD)/test_a64_scalar: $(TEST_DEP) | $(BUILD)
	$(A64_CC) $(STRICT) $(OPT) -march=armv8-a+nosimd $(TEST_INC) $(TEST_SRC) -o $@ -lm
$(BUILD)/test_armv7_neon: $(TEST_DEP) | $(BUILD)
	$(ARMHF_CC) $(STRICT) $(OPT) -mfpu=neon $(POOL) $(TEST_INC) $(TEST_SRC) -o $@ -lm

test-arm: $(BUILD)/test_a64_neon $(BUILD)/test_a64_scalar $(BUILD)/test_armv7_neon
	$(call dfn_run_suite,$(QEMU_A64) $(BUILD)/test_a64_neon,$(ARM_SKIP))
	$(call dfn_run_suite,$(QEMU_A64) $(BUILD)/test_a64_scalar,$(ARM_SKIP))
	$(call dfn_run_suite,$(QEMU_ARM) $(BUILD)/test_armv7_neon,$(ARM_SKIP))
	@echo "test-arm: passed"

# ------------------------------------------- DFN_PORTABLE_MATH, bit for bit
# platforms/portable_hash.c (train the default 2D MLP 30 steps, sample DDPM and
# DDIM, CRC-32 everything) with the scalar kernels and the library's own
# math on x86-64 (gcc, and clang with FMA allowed: the header's pragma keeps
# it uncontracted), AArch64, ARMv7, wasm32 and Cortex-M4F; every "hash" line
# must agree (semihosting prints on stderr). Also the whole suite in portable-math mode on the host.
PM_FLAGS := -std=c99 -Wall -Wextra -Wpedantic -Werror $(OPT) -ffp-contract=off \
            -DDFN_PORTABLE_MATH -DDFN_NO_SIMD -I.
ARM_EABI_CC ?= arm-none-eabi-gcc
QEMU_SYS    ?= timeout 600 qemu-system-arm -nographic -monitor none -serial none \
               -semihosting-config enable=on,target=native
CM_M4  := -mcpu=cortex-m4 -mthumb -mfloat-abi=hard -mfpu=fpv4-sp-d16
CM_M55 := -mcpu=cortex-m55 -mthumb -mfloat-abi=hard
# arm-none-eabi uses short enums: `(int)kind < 0` checks are then always
# false, hence -Wno-type-limits.
CM_FLAGS := -std=c99 -Wall -Wextra -Werror -Wno-type-limits -O2 -ffp-contract=off -fno-math-errno \
            -ffreestanding -DNDEBUG -Iexamples/cortexm -I. -ffunction-sections -fdata-sections \
            -Wl,--gc-sections -nostartfiles -T examples/cortexm/mps2.ld
CM_LIBS  := --specs=nano.specs -lm -lc -lgcc
comma := ,
PH_DEP := platforms/portable_hash.c diffusion.h | $(BUILD)

$(BUILD)/ph_gcc: $(PH_DEP)
	$(GCC) $(PM_FLAGS) platforms/portable_hash.c -o $@ -lm
$(BUILD)/ph_clang_fma: $(PH_DEP)
	$(CLANG) $(filter-out -ffp-contract=off,$(PM_FLAGS)) -mavx2 -mfma platforms/portable_hash.c -o $@ -lm
$(BUILD)/ph_a64: $(PH_DEP)
	$(A64_CC) $(PM_FLAGS) platforms/portable_hash.c -o $@ -lm
$(BUILD)/ph_armv7: $(PH_DEP)
	$(ARMHF_CC) $(PM_FLAGS) platforms/portable_hash.c -o $@ -lm
$(BUILD)/ph_wasm.wasm: $(PH_DEP)
	$(WASI_CC) $(PM_FLAGS) platforms/portable_hash.c -o $@
$(BUILD)/ph_m4.elf: $(PH_DEP) examples/cortexm/startup.c examples/cortexm/semihost.h examples/cortexm/mps2.ld
	$(ARM_EABI_CC) $(CM_M4) $(CM_FLAGS) -DDFN_PORTABLE_MATH -DDFN_NO_SIMD -DPH_SEMIHOSTING \
	    examples/cortexm/startup.c platforms/portable_hash.c -o $@ $(CM_LIBS)
$(BUILD)/test_portable_math: $(TEST_DEP) | $(BUILD)
	$(GCC) $(PM_FLAGS) $(TEST_INC) tests/unity.c -o $@ -lm

PH_BINS := $(BUILD)/ph_gcc $(BUILD)/ph_a64 $(BUILD)/ph_armv7 $(BUILD)/ph_wasm.wasm $(BUILD)/ph_m4.elf \
           $(if $(HAVE_AVX2),$(BUILD)/ph_clang_fma)
test-portable: $(PH_BINS) $(BUILD)/test_portable_math
	$(call dfn_run_suite,./$(BUILD)/test_portable_math,-quality)
	@set -e; rm -f $(BUILD)/ph.hashes; \
	run() { echo "== $$1"; shift; "$$@" > $(BUILD)/ph.out 2>&1; cat $(BUILD)/ph.out; \
	        grep '^hash ' $(BUILD)/ph.out >> $(BUILD)/ph.hashes; }; \
	run x86-64-gcc ./$(BUILD)/ph_gcc; \
	if [ -x $(BUILD)/ph_clang_fma ]; then run x86-64-clang-fma ./$(BUILD)/ph_clang_fma; fi; \
	run aarch64 $(QEMU_A64) $(BUILD)/ph_a64; \
	run armv7 $(QEMU_ARM) $(BUILD)/ph_armv7; \
	run wasm32 $(RUN_WASI) $(BUILD)/ph_wasm.wasm; \
	run cortex-m4f $(QEMU_SYS) -M mps2-an386 -kernel $(BUILD)/ph_m4.elf; \
	n=$$(wc -l < $(BUILD)/ph.hashes); u=$$(sort -u $(BUILD)/ph.hashes | wc -l); \
	if [ "$$n" -lt 5 ] || [ "$$u" -ne 1 ]; then echo "test-portable: hashes differ"; \
	    cat $(BUILD)/ph.hashes; exit 1; fi; \
	echo "test-portable: $$n platforms, one hash: $$(cat $(BUILD)/ph.hashes | head -n 1)"

# ------------------------------------------------ Cortex-M firmware (qemu)
# A small host training run (examples/demo.c, 400 steps) saves a model;
# tools/model2c turns it into a header (const weights in flash); the
# inference-only firmware examples/cortexm/firmware.c samples it on
# Cortex-M4F (mps2-an386) and Cortex-M55 (mps3-an547), and the same source
# built for the host must print the same bits (DFN_PORTABLE_MATH,
# DFN_NO_SIMD; FW_MEMORY 96 KB, of which 80 KB are used). Then the footprint of the default 2D model and of a small
# one (hidden 32, 2 blocks, time_dim 32, input_emb_dim 8; untrained).
CM_MODEL_STEPS ?= 400
FW_FLAGS := -DDFN_PORTABLE_MATH -DDFN_NO_SIMD -Ibuild
FW_SRC   := examples/cortexm/startup.c examples/cortexm/firmware.c
FW_DEP   := $(FW_SRC) examples/cortexm/semihost.h examples/cortexm/mps2.ld diffusion.h platforms/platforms.mk

$(BUILD)/cm_model.dfn: $(BUILD)/demo
	./$(BUILD)/demo --steps $(CM_MODEL_STEPS) --n 200 --save $@ --out $(BUILD)/cm_demo.svg > /dev/null
$(BUILD)/cm_model.h: $(BUILD)/cm_model.dfn $(BUILD)/model2c
	./$(BUILD)/model2c $< MODEL $@
$(BUILD)/cm_small.h: $(BUILD)/model2c
	./$(BUILD)/model2c --init 32 2 32 8 MODEL $@
# The small weight formats (MATH.md section 13) with the schedule respaced to
# the sampler's 20 steps: the default model in int8 and fp16, the small one
# in int8 (the Cortex-M0's).
$(BUILD)/cm_model_i8.h: $(BUILD)/cm_model.dfn $(BUILD)/model2c
	./$(BUILD)/model2c --int8 --respace 20 $< MODEL $@
$(BUILD)/cm_model_f16.h: $(BUILD)/cm_model.dfn $(BUILD)/model2c
	./$(BUILD)/model2c --fp16 --respace 20 $< MODEL $@
$(BUILD)/cm_small_i8.h: $(BUILD)/model2c
	./$(BUILD)/model2c --int8 --respace 20 --init 32 2 32 8 MODEL $@
$(BUILD)/fw_host: $(FW_DEP) $(BUILD)/cm_model.h
	$(GCC) $(STRICT) $(OPT) -ffp-contract=off $(FW_FLAGS) -DFW_HOST -DMODEL_HEADER='"cm_model.h"' \
	    -I. -Iexamples/cortexm examples/cortexm/firmware.c -o $@ -lm
$(BUILD)/fw_m4.elf: $(FW_DEP) $(BUILD)/cm_model.h
	$(ARM_EABI_CC) $(CM_M4) $(CM_FLAGS) $(FW_FLAGS) -DMODEL_HEADER='"cm_model.h"' $(FW_SRC) -o $@ $(CM_LIBS)
$(BUILD)/fw_m55.elf: $(FW_DEP) $(BUILD)/cm_model.h
	$(ARM_EABI_CC) $(CM_M55) $(CM_FLAGS) $(FW_FLAGS) -DMODEL_HEADER='"cm_model.h"' $(FW_SRC) -o $@ $(CM_LIBS)
$(BUILD)/fw_small_m4.elf: $(FW_DEP) $(BUILD)/cm_small.h
	$(ARM_EABI_CC) $(CM_M4) $(CM_FLAGS) $(FW_FLAGS) -DFW_MEMORY=69632 -DMODEL_HEADER='"cm_small.h"' \
	    $(FW_SRC) -o $@ $(CM_LIBS)
$(BUILD)/fw_small_m55.elf: $(FW_DEP) $(BUILD)/cm_small.h
	$(ARM_EABI_CC) $(CM_M55) $(CM_FLAGS) $(FW_FLAGS) -DFW_MEMORY=69632 -DMODEL_HEADER='"cm_small.h"' \
	    $(FW_SRC) -o $@ $(CM_LIBS)

# The small formats, built for a small flash: -Os and only the sampler they
# use (DFN_SAMPLER_KINDS=0x10: DPM-Solver++(2M)). Each is built for the
# host too (-O2), and the device's samples must equal the host's bit for bit.
CM_M0 := -mcpu=cortex-m0 -mthumb -mfloat-abi=soft
CM_M0_FLAGS := $(subst mps2.ld,microbit.ld,$(CM_FLAGS)) -Os
FWQ_DEF_i8  := -DDFN_SAMPLER_KINDS=0x10 -DFW_MEMORY=24576 -DMODEL_HEADER='"cm_model_i8.h"'
FWQ_DEF_f16 := -DDFN_SAMPLER_KINDS=0x10 -DFW_MEMORY=24576 -DMODEL_HEADER='"cm_model_f16.h"'
FWQ_DEF_small_i8 := -DDFN_SAMPLER_KINDS=0x10 -DFW_MEMORY=7168 -DMODEL_HEADER='"cm_small_i8.h"'
$(BUILD)/fwq_%_host: $(FW_DEP) $(BUILD)/cm_model_i8.h $(BUILD)/cm_model_f16.h $(BUILD)/cm_small_i8.h
	$(GCC) $(STRICT) $(OPT) -ffp-contract=off $(FW_FLAGS) -DFW_HOST $(FWQ_DEF_$*) \
	    -I. -Iexamples/cortexm examples/cortexm/firmware.c -o $@ -lm
$(BUILD)/fw_i8_m4.elf: $(FW_DEP) $(BUILD)/cm_model_i8.h
	$(ARM_EABI_CC) $(CM_M4) $(CM_FLAGS) -Os $(FW_FLAGS) $(FWQ_DEF_i8) $(FW_SRC) -o $@ $(CM_LIBS)
$(BUILD)/fw_f16_m4.elf: $(FW_DEP) $(BUILD)/cm_model_f16.h
	$(ARM_EABI_CC) $(CM_M4) $(CM_FLAGS) -Os $(FW_FLAGS) $(FWQ_DEF_f16) $(FW_SRC) -o $@ $(CM_LIBS)
$(BUILD)/fw_small_i8_m0.elf: $(FW_DEP) $(BUILD)/cm_small_i8.h examples/cortexm/microbit.ld
	$(ARM_EABI_CC) $(CM_M0) $(CM_M0_FLAGS) $(FW_FLAGS) $(FWQ_DEF_small_i8) $(FW_SRC) -o $@ $(CM_LIBS)
# device:machine:host build, for the bit-for-bit comparisons of the small formats
FWQ_RUNS := fw_i8_m4:mps2-an386:fwq_i8_host fw_f16_m4:mps2-an386:fwq_f16_host \
            fw_small_i8_m0:microbit:fwq_small_i8_host

# The Helium (MVE) kernels: the suite's kernel and portable-math
# tests (30 s) on the Cortex-M55 with newlib (printf, malloc over QEMU's DDR),
# through the same parity checks as every other variant.
CM_TEST_ARGS := arg=test_m55,arg=kernels,arg=portable
$(BUILD)/test_m55.elf: $(TEST_DEP) examples/cortexm/startup.c examples/cortexm/semihost.h platforms/cm_big.ld
	$(ARM_EABI_CC) $(CM_M55) -std=c99 -Wall -Wextra -Werror -Wno-type-limits -O2 -ffp-contract=off \
	    -DCM_NEWLIB -Iexamples/cortexm $(TEST_INC) -nostartfiles -T platforms/cm_big.ld --specs=nano.specs \
	    --specs=rdimon.specs -u _printf_float examples/cortexm/startup.c $(TEST_SRC) -o $@ -lm

# The default configuration on the M55 (Helium kernels, newlib's libm):
# within FW_TOL of the host's portable samples (measured: 1.2e-6).
FW_TOL ?= 1e-4
# Deterministic time for the SysTick counts: 1 ns per instruction.
CM_ICOUNT := -icount shift=0
$(BUILD)/fw_m55_helium.elf: $(FW_DEP) $(BUILD)/cm_model.h
	$(ARM_EABI_CC) $(CM_M55) $(filter-out -ffp-contract=off,$(CM_FLAGS)) -Ibuild \
	    -DMODEL_HEADER='"cm_model.h"' $(FW_SRC) -o $@ $(CM_LIBS)

FW_ELFS := $(BUILD)/fw_m4.elf $(BUILD)/fw_f16_m4.elf $(BUILD)/fw_i8_m4.elf $(BUILD)/fw_m55.elf \
           $(BUILD)/fw_m55_helium.elf $(BUILD)/fw_small_m4.elf $(BUILD)/fw_small_m55.elf \
           $(BUILD)/fw_small_i8_m0.elf
test-cortexm: $(BUILD)/fw_host $(FW_ELFS) $(BUILD)/test_m55.elf $(BUILD)/fwq_i8_host $(BUILD)/fwq_f16_host \
              $(BUILD)/fwq_small_i8_host
	$(call dfn_run_suite,$(QEMU_SYS) -M mps3-an547 -semihosting-config $(CM_TEST_ARGS) \
	    -kernel $(BUILD)/test_m55.elf,)
	@set -e; ./$(BUILD)/fw_host > $(BUILD)/fw_host.out; \
	for t in m4:mps2-an386 m55:mps3-an547; do \
	    elf=$(BUILD)/fw_$${t%%:*}.elf; \
	    $(QEMU_SYS) $(CM_ICOUNT) -M $${t#*:} -kernel $$elf > $(BUILD)/fw_$${t%%:*}.out 2>&1 || \
	        { cat $(BUILD)/fw_$${t%%:*}.out; echo "$$elf failed under qemu"; exit 1; }; \
	    if grep -v -e '^stack' -e '^ticks' $(BUILD)/fw_$${t%%:*}.out | cmp -s $(BUILD)/fw_host.out -; then \
	        echo "$${t#*:}: samples bit-identical to the host's ($$(tail -n 1 $(BUILD)/fw_host.out))"; \
	    else echo "$${t#*:}: samples differ from the host's"; \
	        diff $(BUILD)/fw_host.out $(BUILD)/fw_$${t%%:*}.out; exit 1; fi; \
	done; \
	for r in $(FWQ_RUNS); do \
	    dev=$${r%%:*}; rest=$${r#*:}; mach=$${rest%%:*}; host=$${rest#*:}; \
	    ./$(BUILD)/$$host > $(BUILD)/$$host.out; \
	    $(QEMU_SYS) $(CM_ICOUNT) -M $$mach -kernel $(BUILD)/$$dev.elf > $(BUILD)/$$dev.out 2>&1 || \
	        { cat $(BUILD)/$$dev.out; echo "$$dev failed under qemu"; exit 1; }; \
	    if grep -v -e '^stack' -e '^ticks' $(BUILD)/$$dev.out | cmp -s $(BUILD)/$$host.out -; then \
	        echo "$$dev ($$mach): samples bit-identical to the host's ($$(tail -n 1 $(BUILD)/$$host.out))"; \
	    else echo "$$dev ($$mach): samples differ from the host's"; diff $(BUILD)/$$host.out $(BUILD)/$$dev.out; exit 1; fi; \
	done; \
	$(QEMU_SYS) $(CM_ICOUNT) -M mps3-an547 -kernel $(BUILD)/fw_m55_helium.elf > $(BUILD)/fw_m55_helium.out 2>&1; \
	printf 'mps3-an547, Helium: '; $(NODE) platforms/cm_compare.mjs $(BUILD)/fw_host.out $(BUILD)/fw_m55_helium.out $(FW_TOL); \
	for e in $(BUILD)/fw_small_m4.elf:mps2-an386 $(BUILD)/fw_small_m55.elf:mps3-an547; do \
	    o=$${e%%:*}; o=$${o%.elf}.out; \
	    $(QEMU_SYS) $(CM_ICOUNT) -M $${e#*:} -kernel $${e%%:*} > $$o 2>&1 || { cat $$o; echo "$${e%%:*} failed under qemu"; exit 1; }; \
	done; \
	echo "footprint (arm-none-eabi-size, bytes; flash = text + rodata + data; static RAM = data + bss, bss"; \
	echo "holding the FW_MEMORY buffer; workspace = the part of it used; stack = the deepest the painted"; \
	echo "stack was written; RAM = static + stack; instructions per sample = SysTick ticks of"; \
	echo "dfn_sampler_run under -icount shift=0 (1 ns per instruction) times 1e9 / the board's"; \
	echo "clock (mps2-an386 25 MHz, mps3-an547 32 MHz, microbit 16 MHz) / 8 samples, 20 NFE):"; \
	echo "| firmware | flash | static RAM | workspace | stack | RAM | instructions / sample |"; \
	echo "|---|--:|--:|--:|--:|--:|--:|"; \
	for e in $(FW_ELFS); do \
	    n=$$(basename $$e .elf); out=$(BUILD)/$$n.out; \
	    case $$n in *_m0) hz=16000000;; *m55*) hz=32000000;; *) hz=25000000;; esac; \
	    ws=$$(awk '$$1 == "workspace" { print $$2 }' $$out); st=$$(awk '$$1 == "stack" { print $$2 }' $$out); \
	    tk=$$(awk '$$1 == "ticks" { print $$2 }' $$out); \
	    ws=$$((0x$${ws:-0})); st=$$((0x$${st:-0})); tk=$$((0x$${tk:-0})); \
	    arm-none-eabi-size $$e | awk -v n=$$n -v w=$$ws -v s=$$st -v tk=$$tk -v hz=$$hz 'NR == 2 { \
	        ins = tk >= 4294967295 ? "over 2^24 ticks" : sprintf("%.3g", tk * 1e9 / hz / 8); \
	        printf "| %s | %d | %d | %d | %d | %d | %s |\n", n, $$1 + $$2, $$2 + $$3, w, s, $$2 + $$3 + s, ins }'; \
	done

# ------------------------------------------------------- embedding checks
# The declarations as C89 (gcc and clang, -pedantic), the implementation as
# C++98 and C++17, the whole suite built with tcc and run, and the
# implementation under -ffreestanding (no stdio, no malloc, portable math)
# for the host and for Cortex-M4F; all warnings as errors. A freestanding
# build still needs memcpy, memset, sqrtf and sqrt from the platform (or
# DFN_MEMCPY, DFN_MEMSET, DFN_SQRTF, DFN_SQRT), and assert unless NDEBUG.
TCC ?= tcc
EMBED := $(BUILD)/embed
test-embed: $(TEST_DEP) | $(BUILD)
	@mkdir -p $(EMBED)
	@printf '#include "diffusion.h"\nint dfn_embed_decl_only;\n' > $(EMBED)/decl.c
	@printf '#define DIFFUSION_IMPLEMENTATION\n#include "diffusion.h"\n' > $(EMBED)/impl.c
	@printf '#define DFN_NO_STDIO\n#define DFN_NO_MALLOC\n#define DFN_PORTABLE_MATH\n#define DIFFUSION_IMPLEMENTATION\n#include "diffusion.h"\n' > $(EMBED)/free.c
	$(GCC) -std=c89 -pedantic -Wall -Wextra -Werror -I. -c $(EMBED)/decl.c -o $(EMBED)/decl_gcc.o
	$(CLANG) -std=c89 -pedantic -Wall -Wextra -Werror -I. -c $(EMBED)/decl.c -o $(EMBED)/decl_clang.o
	$(CXX) -x c++ -std=c++98 -pedantic -Wall -Wextra -Werror -I. -c $(EMBED)/impl.c -o $(EMBED)/impl_cxx98.o
	$(CXX) -x c++ -std=c++17 -pedantic -Wall -Wextra -Werror -I. -c $(EMBED)/impl.c -o $(EMBED)/impl_cxx17.o
	$(GCC) -std=c99 -ffreestanding -pedantic -Wall -Wextra -Werror -I. -c $(EMBED)/free.c -o $(EMBED)/free.o
	$(ARM_EABI_CC) $(CM_M4) -std=c99 -O2 -ffreestanding -pedantic -Wall -Wextra -Werror -Wno-type-limits \
	    -DNDEBUG -I. -c $(EMBED)/free.c -o $(EMBED)/free_m4.o
	$(TCC) $(TEST_INC) tests/unity.c -o $(BUILD)/test_tcc -lm
	$(call dfn_run_suite,./$(BUILD)/test_tcc,-quality)
	@echo "test-embed: passed"
