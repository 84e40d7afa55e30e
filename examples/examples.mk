# The examples (included by the Makefile). Shared helpers: examples/common.h
# (errors, numbers from the command line, time, PNG grids) and
# examples/plot.h (2D plots in the terminal and as SVG).
#
#   make demo       train on the 8 Gaussians (or --data / --csv), plot the
#                   samples in the terminal, write build/demo.svg
#   make mnist      a U-Net on the digits of `make mnist-data` (MNIST_ARGS)
#   make emoji      the same program (examples/mnist.c --set emoji) on the
#                   32x32 colour emoji of `make emoji-data`: a
#                   class-conditional RGB U-Net, one column per category;
#                   writes build/emoji/ (EMOJI_ARGS, e.g. --resume
#                   build/emoji/emoji.dfnm --steps 6000)
#   make cascade    train a 14x14 base model and a 28x28 super-resolution
#                   model conditioned on the upsampled 14x14 image, sample
#                   them one after the other; writes build/cascade/cascade.png
#                   and build/cascade/control.png, and the two model files
#                   build/cascade/base.dfnm, build/cascade/sr.dfnm
#                   (CASCADE_ARGS=--sample-only samples the saved ones)
#   make guided2d   classifier-free, classifier and constraint guidance on
#                   the 8 Gaussians; writes build/guided2d.svg
#   make inpaint    fix one coordinate, sample the other; build/inpaint.svg;
#                   then the lower half of test digits completed by the model
#                   of `make mnist` (build/mnist/mnist.dfnm), when there is one
#   make samplers   sample quality per network evaluation: every sampler and
#                   spacing with the exact predictor of two mixtures and with
#                   the demo's MLP trained on each built-in set (MATH.md
#                   section 11); writes build/samplers.md and build/samplers.png
#                   (SAMPLERS_ARGS, e.g. --part exact or --n 2000)
#   make flow       flow matching and DDPM side by side on the same MLP:
#                   quality per NFE on every built-in set, and the sample
#                   paths of both ODEs; writes build/flow.md, build/flow.png
#                   (FLOW_ARGS, e.g. --data moons or --time-sampling logit-normal)
#   examples/cortexm/  the Cortex-M firmware (make test-cortexm)

EXAMPLES := $(BUILD)/demo $(BUILD)/samplers $(BUILD)/flow $(BUILD)/guided2d $(BUILD)/inpaint $(BUILD)/mnist-example $(BUILD)/cascade-example
EX_DEP   := diffusion.h examples/common.h examples/plot.h

.PHONY: demo samplers flow mnist emoji cascade guided2d inpaint

$(BUILD)/demo: examples/demo.c $(EX_DEP) | $(BUILD)
	$(CC) $(STRICT) $(OPT) $(NATIVE) -I. examples/demo.c -o $@ -lm
$(BUILD)/samplers: examples/samplers.c $(EX_DEP) | $(BUILD)
	$(CC) $(STRICT) $(OPT) $(NATIVE) -I. examples/samplers.c -o $@ -lm
$(BUILD)/flow: examples/flow.c $(EX_DEP) | $(BUILD)
	$(CC) $(STRICT) $(OPT) $(NATIVE) -I. examples/flow.c -o $@ -lm
$(BUILD)/guided2d: examples/guided2d.c $(EX_DEP) | $(BUILD)
	$(CC) $(STRICT) $(OPT) $(NATIVE) -I. examples/guided2d.c -o $@ -lm
$(BUILD)/inpaint: examples/inpaint.c $(EX_DEP) | $(BUILD)
	$(CC) $(STRICT) $(OPT) $(NATIVE) -I. examples/inpaint.c -o $@ -lm
$(BUILD)/mnist-example: examples/mnist.c $(EX_DEP) | $(BUILD)
	$(CC) $(STRICT) $(OPT) $(NATIVE) -pthread -I. examples/mnist.c -o $@ -lm
$(BUILD)/cascade-example: examples/cascade.c $(EX_DEP) | $(BUILD)
	$(CC) $(STRICT) $(OPT) $(NATIVE) -pthread -I. examples/cascade.c -o $@ -lm

demo: $(BUILD)/demo
	./$(BUILD)/demo --out $(BUILD)/demo.svg

SAMPLERS_ARGS ?=
samplers: $(BUILD)/samplers
	./$(BUILD)/samplers --markdown $(BUILD)/samplers.md --png $(BUILD)/samplers.png $(SAMPLERS_ARGS)

FLOW_ARGS ?=
flow: $(BUILD)/flow
	./$(BUILD)/flow --markdown $(BUILD)/flow.md --png $(BUILD)/flow.png $(FLOW_ARGS)

mnist: $(BUILD)/mnist-example mnist-data
	./$(BUILD)/mnist-example $(MNIST_ARGS)

emoji: $(BUILD)/mnist-example emoji-data
	./$(BUILD)/mnist-example --set emoji $(EMOJI_ARGS)

cascade: $(BUILD)/cascade-example mnist-data
	./$(BUILD)/cascade-example $(CASCADE_ARGS)

guided2d: $(BUILD)/guided2d
	./$(BUILD)/guided2d --out $(BUILD)/guided2d.svg

inpaint: $(BUILD)/inpaint $(BUILD)/mnist-example
	./$(BUILD)/inpaint --out $(BUILD)/inpaint.svg
	@if [ -f $(BUILD)/mnist/mnist.dfnm ] && [ -f data/mnist/t10k-images-idx3-ubyte ]; then \
	    echo "./$(BUILD)/mnist-example --sample-only $(BUILD)/mnist/mnist.dfnm --inpaint"; \
	    ./$(BUILD)/mnist-example --sample-only $(BUILD)/mnist/mnist.dfnm --inpaint; \
	else echo "inpaint: for digits, train a model with 'make mnist' first"; fi
