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
#
# ./build/image_quality --train-model OUT trains a small 14x14 U-Net for a
# few hundred steps: enough to run the measure end to end (poor digits).

MODEL        ?= build/mnist/mnist.dfnm
IMAGES_N     ?= 500
IMAGES_STEPS ?= 50
IMAGES_SEED  ?= 1
IMAGES_ARGS  ?=
# the guidance scale of the class-conditional samples: examples/mnist.c's default
IMAGES_GUIDANCE ?= 2
# Classifier-free guidance (--guidance W) once the sampler config has a
# guidance_scale field.
IMAGES_DEFS  := $(shell grep -q 'guidance_scale;' diffusion.h 2>/dev/null && echo -DIQ_GUIDANCE)

.PHONY: bench-images

$(BUILD)/image_quality: bench/image_quality.c bench/digits.h diffusion.h | $(BUILD)
	$(GCC) $(STRICT) $(BENCH_CFLAGS) $(IMAGES_DEFS) -pthread -I. bench/image_quality.c -o $@ -lm

bench-images: $(BUILD)/image_quality
	@if [ ! -f "$(MODEL)" ]; then \
	    echo "bench-images: no model at $(MODEL): train one with 'make mnist' (or set MODEL=...)" >&2; \
	    exit 1; fi
	@$(MAKE) --no-print-directory mnist-data
	./$(BUILD)/image_quality --model $(MODEL) --n $(IMAGES_N) --steps $(IMAGES_STEPS) \
	    --seed $(IMAGES_SEED) --guidance $(IMAGES_GUIDANCE) --grid $(BUILD)/bench_images_samples.png $(IMAGES_ARGS)
