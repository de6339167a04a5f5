# Convenience wrapper around CMake. `make demo` and `make test` are the two
# commands of the README.
BUILD      ?= build
ASAN_BUILD ?= build-asan
JOBS       ?= $(shell nproc)
SHARED     ?= $(abspath ../shared)
PLM        := $(BUILD)/pocketlm

.PHONY: all deps build test test-asan demo clean

all: build

deps:
	@scripts/install-deps.sh

build: deps
	@cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=Release >/dev/null
	@cmake --build $(BUILD) -j $(JOBS)

test: build
	cd $(BUILD) && POCKETLM_SHARED=$(SHARED) ctest --output-on-failure -j $(JOBS)

# The whole suite again under AddressSanitizer + UndefinedBehaviorSanitizer.
test-asan: deps
	@cmake -S . -B $(ASAN_BUILD) -DCMAKE_BUILD_TYPE=Debug -DPLM_SANITIZE=ON >/dev/null
	@cmake --build $(ASAN_BUILD) -j $(JOBS)
	cd $(ASAN_BUILD) && POCKETLM_SHARED=$(SHARED) ctest --output-on-failure -j $(JOBS)

# Converts the real llama2.c model from ../shared to GGUF and tells a story.
demo: build
	@test -f $(SHARED)/models/stories260K/stories260K.bin || \
	  { echo "demo needs $(SHARED)/models/stories260K (set SHARED=...)"; exit 1; }
	$(PLM) convert $(SHARED)/models/stories260K/stories260K.bin \
	  --vocab $(SHARED)/models/stories260K/tok512.bin -o $(BUILD)/stories260K.gguf
	$(PLM) info $(BUILD)/stories260K.gguf
	$(PLM) run -m $(BUILD)/stories260K.gguf --temp 0 -n 200

clean:
	rm -rf $(BUILD) $(ASAN_BUILD)
