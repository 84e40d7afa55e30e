# The browser page (web/): diffusion.h trains a 2D model live in WebAssembly.
#
#   make web        build the page into build/web/ (index.html, app.js,
#                   wasi.js, dfn_web.wasm with SIMD128, dfn_web_scalar.wasm)
#   make web-serve  serve build/web on http://127.0.0.1:8000/ (WEB_PORT)
#   make test-web   the page in headless Chromium: draw points, train and
#                   sample the VP process, flip the process switch, train and
#                   sample flow matching; each energy distance below the
#                   N(0, I) baseline; screenshots build/web/screenshot.png
#                   (flow) and screenshot-vp.png; bad arguments to the
#                   exports of both builds. Needs clang, lld, wasi-libc,
#                   libclang-rt-14-dev-wasm32, node and chromium.

NODE       ?= node
WEB_PORT   ?= 8000
WEB_STEPS  ?= 400
WEB_DIR    := $(BUILD)/web
WEB_CFLAGS := --target=wasm32-wasi $(STRICT) -O2 -mexec-model=reactor -Wl,--strip-all
WEB_STATIC := $(WEB_DIR)/index.html $(WEB_DIR)/app.js $(WEB_DIR)/wasi.js

.PHONY: web web-serve test-web

web: $(WEB_DIR)/dfn_web.wasm $(WEB_DIR)/dfn_web_scalar.wasm $(WEB_STATIC)

$(WEB_DIR):
	mkdir -p $(WEB_DIR)
$(WEB_DIR)/dfn_web.wasm: web/dfn_web.c diffusion.h | $(WEB_DIR)
	$(CLANG) $(WEB_CFLAGS) -msimd128 web/dfn_web.c -o $@
# For browsers without WebAssembly SIMD (the page picks it by itself).
$(WEB_DIR)/dfn_web_scalar.wasm: web/dfn_web.c diffusion.h | $(WEB_DIR)
	$(CLANG) $(WEB_CFLAGS) web/dfn_web.c -o $@
$(WEB_DIR)/%: web/% | $(WEB_DIR)
	cp $< $@

web-serve: web
	$(NODE) web/serve.mjs $(WEB_DIR) $(WEB_PORT)

test-web: web
	$(NODE) web/test_web.mjs $(WEB_DIR) $(WEB_STEPS)
