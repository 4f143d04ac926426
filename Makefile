# SPDX-License-Identifier: MIT
# A thin wrapper over CMake: make, make test, make demo, make bench,
# make install PREFIX=/usr/local.
BUILD ?= build
ASAN_BUILD ?= build-asan
PREFIX ?= /usr/local
JOBS ?= $(shell nproc 2>/dev/null || echo 2)
CMAKE_FLAGS ?=

.PHONY: all build test test-asan demo bench soak fuzz install clean format format-check

all: build

$(BUILD)/CMakeCache.txt:
	cmake -S . -B $(BUILD) -DCMAKE_INSTALL_PREFIX=$(PREFIX) $(CMAKE_FLAGS)

build: $(BUILD)/CMakeCache.txt
	cmake --build $(BUILD) -j $(JOBS)

# The tests, then the same tests built with ASan+UBSan.
test: build
	cd $(BUILD) && ctest --output-on-failure -j $(JOBS) --timeout 600
	$(MAKE) test-asan

test-asan:
	cmake -S . -B $(ASAN_BUILD) -DSAMEPAGE_SANITIZE=ON -DCMAKE_BUILD_TYPE=Debug $(CMAKE_FLAGS)
	cmake --build $(ASAN_BUILD) -j $(JOBS)
	cd $(ASAN_BUILD) && ctest --output-on-failure -j $(JOBS) --timeout 900 -LE nosan

# make demo QEMU=1: then real QEMU guests too (bench/guests/guests.py: no
# merging, the kernel's KSM, libsamepage + samepaged), when QEMU is installed.
demo: build
	$(BUILD)/examples/demo --samepaged $(BUILD)/daemon/samepaged $(DEMO_ARGS)
	$(if $(QEMU),python3 bench/guests/guests.py compare --out $(BUILD)/guests \
		--ksmctl $(BUILD)/cli/ksmctl --samepaged $(BUILD)/daemon/samepaged,)

bench: build
	bash bench/run.sh $(if $(QUICK),--quick,)

# The soak (RELIABILITY.md): every kind of operation by default, for
# SOAK_SECONDS; SOAK_OPS=write,fork,... (or all) and SOAK_ARGS=... (see
# samepage_soak --help) isolate or tune it.
SOAK_SECONDS ?= 300
SOAK_SEED ?= 1
SOAK_OPS ?= all
soak: build
	$(BUILD)/tests/soak/samepage_soak --duration $(SOAK_SECONDS) --seed $(SOAK_SEED) \
		--ops $(SOAK_OPS) --samepaged $(BUILD)/daemon/samepaged --ksmctl $(BUILD)/cli/ksmctl \
		--dir $(BUILD) $(SOAK_ARGS)

# The fuzz targets (RELIABILITY.md): built with clang, libFuzzer, ASan and
# UBSan in FUZZ_BUILD, each run for FUZZ_SECONDS (FUZZ_TARGETS: some only).
# FUZZ_EXCLUDE leaves out checks that known bugs fail (tests/fuzz/fuzz.h),
# FUZZ_SKIP targets that fail at once on one (RELIABILITY.md).
FUZZ_BUILD ?= build-fuzz
FUZZ_SECONDS ?= 20
FUZZ_TARGETS ?=
FUZZ_EXCLUDE ?=
FUZZ_SKIP ?=
fuzz:
	cmake -S . -B $(FUZZ_BUILD) -DCMAKE_C_COMPILER=clang -DSAMEPAGE_FUZZ=ON \
		-DCMAKE_BUILD_TYPE=Debug -DSAMEPAGE_SKIP="examples;bench;lib;estimate;docs;soak" \
		$(CMAKE_FLAGS)
	cmake --build $(FUZZ_BUILD) -j $(JOBS)
	SAMEPAGE_FUZZ_EXCLUDE="$(FUZZ_EXCLUDE)" FUZZ_SKIP="$(FUZZ_SKIP)" \
		sh tests/fuzz/run.sh $(FUZZ_BUILD) $(FUZZ_SECONDS) $(FUZZ_TARGETS)

# Configured again with PREFIX: the pkg-config file and the systemd units
# name installed paths.
install:
	cmake -S . -B $(BUILD) -DCMAKE_INSTALL_PREFIX=$(PREFIX) $(CMAKE_FLAGS)
	cmake --build $(BUILD) -j $(JOBS)
	cmake --install $(BUILD)

# Every C file of the tree, in the style of .clang-format; format-check is
# what .ci/run runs (it fails on the first file that differs).
C_SOURCES = $(shell git ls-files '*.c' '*.h' 2>/dev/null)
format:
	clang-format -i $(C_SOURCES)

format-check:
	clang-format --dry-run -Werror $(C_SOURCES)

clean:
	rm -rf $(BUILD) $(ASAN_BUILD)
