# saev-c front door. `make test` and `make demo` work on a fresh Debian 12 machine:
# they install missing packages (scripts/install-deps.sh), configure, build and run.
BUILD ?= build
JOBS ?= $(shell nproc)
CMAKE_FLAGS ?=

.PHONY: all deps configure build test test-asan fuzz demo bench clean

all: build

deps:
	@bash scripts/install-deps.sh

$(BUILD)/CMakeCache.txt:
	cmake -S . -B $(BUILD) $(CMAKE_FLAGS)

configure: deps $(BUILD)/CMakeCache.txt

build: configure
	cmake --build $(BUILD) -j $(JOBS)

test: build
	cd $(BUILD) && ctest --output-on-failure -j $(JOBS) $(CTEST_FLAGS)

# The whole suite again, built with AddressSanitizer + UndefinedBehaviorSanitizer
# (clang-14, build-asan/; tests/asan/README.md). CI runs it after `make test`.
test-asan: deps
	CC=clang-14 cmake -S . -B build-asan -DSAEV_SANITIZE=ON -DSAEV_CUDA=OFF -DCMAKE_BUILD_TYPE=RelWithDebInfo
	cmake --build build-asan -j $(JOBS)
	cd build-asan && ctest --output-on-failure -j $(JOBS) $(CTEST_FLAGS)

# libFuzzer harnesses of tests/fuzz, each for FUZZ_SECONDS (default 60), in build-fuzz/.
fuzz: deps
	bash scripts/fuzz.sh build-fuzz

demo: build
	bash scripts/demo.sh $(BUILD)

bench: build
	bash scripts/bench.sh $(BUILD)

clean:
	rm -rf $(BUILD)
