# The cascaded digit model (included by the Makefile).
#   make cascade   train a 14x14 base model and a 28x28 super-resolution
#                  model conditioned on the upsampled 14x14 image, sample
#                  them one after the other; writes build/cascade/cascade.png
#                  and build/cascade/control.png, and the two model files
#                  build/cascade/base.dfnm, build/cascade/sr.dfnm
#                  (CASCADE_ARGS=--sample-only samples the saved ones)

.PHONY: cascade

all: $(BUILD)/cascade-example

$(BUILD)/cascade-example: examples/cascade.c diffusion.h | $(BUILD)
	$(CC) $(STRICT) $(OPT) $(NATIVE) -pthread -I. examples/cascade.c -o $@ -lm

cascade: $(BUILD)/cascade-example mnist-data
	./$(BUILD)/cascade-example $(CASCADE_ARGS)
