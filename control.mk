# Guidance and inpainting examples (included by the Makefile).
#   make guided2d   classifier-free, classifier and constraint guidance on
#                   the 8 Gaussians; writes build/guided2d.svg
#   make inpaint    fix one coordinate, sample the other; build/inpaint.svg

.PHONY: guided2d inpaint

all: $(BUILD)/guided2d $(BUILD)/inpaint

$(BUILD)/guided2d: examples/guided2d.c examples/plot.h diffusion.h | $(BUILD)
	$(CC) $(STRICT) $(OPT) $(NATIVE) -I. examples/guided2d.c -o $@ -lm
$(BUILD)/inpaint: examples/inpaint.c examples/plot.h diffusion.h | $(BUILD)
	$(CC) $(STRICT) $(OPT) $(NATIVE) -I. examples/inpaint.c -o $@ -lm

guided2d: $(BUILD)/guided2d
	./$(BUILD)/guided2d --out $(BUILD)/guided2d.svg
# 2D, then digits: the lower half of test digits completed by the model of
# `make mnist` (build/mnist/mnist.dfnm), when there is one.
inpaint: $(BUILD)/inpaint $(BUILD)/mnist-example
	./$(BUILD)/inpaint --out $(BUILD)/inpaint.svg
	@if [ -f $(BUILD)/mnist/mnist.dfnm ] && [ -f data/mnist/t10k-images-idx3-ubyte ]; then \
	    echo "./$(BUILD)/mnist-example --sample-only $(BUILD)/mnist/mnist.dfnm --inpaint"; \
	    ./$(BUILD)/mnist-example --sample-only $(BUILD)/mnist/mnist.dfnm --inpaint; \
	else echo "inpaint: for digits, train a model with 'make mnist' first"; fi
