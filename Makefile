# The two commands of the README, and a few conveniences. CMake does the work;
# this file only chains install → configure → build → run/test.
BUILD ?= build
JOBS ?= 2
CMAKE_FLAGS ?=

.PHONY: all deps build image run run-embedded test test-unit test-asan test-tsan fuzz soak services-start services-stop clean help

all: build

help:
	@echo "make run     install what is missing, build, start the servers and the chat"
	@echo "make test    install what is missing, build, run every test"
	@echo "make run-embedded   the chat with no servers (SQLite, one instance)"
	@echo "make image      the OCI image, without a container engine (var/image; docs/kubernetes.md)"
	@echo "make test-asan  every test under ASan+UBSan (build-asan; docs/testing.md)"
	@echo "make test-tsan  the unit tests under TSan (build-tsan)"
	@echo "make fuzz       each fuzz target for FUZZ_SECONDS (60) (build-fuzz; clang-14)"
	@echo "make soak       10 minutes of chat traffic with faults; lost/duplicated/RSS (tests/soak)"

deps:
	@scripts/install-deps

$(BUILD)/build.ninja:
	cmake -S . -B $(BUILD) -G Ninja -DNUDGE_WERROR=ON $(CMAKE_FLAGS)

build: deps $(BUILD)/build.ninja
	cmake --build $(BUILD) -j$(JOBS)

# Its own build folder (build-image, no tests): scripts/build-image.
image: deps
	@scripts/build-image

run: build
	@scripts/run-chat $(BUILD)

run-embedded: build
	$(BUILD)/bin/nudge run pipelines/chat-embedded.toml

test: build
	@scripts/test $(BUILD)

test-unit: build
	ctest --test-dir $(BUILD) -L unit -j$(JOBS) --output-on-failure

# Sanitizer builds (CMakePresets.json), each in its own folder; docs/testing.md.
build-asan/build.ninja:
	cmake --preset asan

build-tsan/build.ninja:
	cmake --preset tsan

test-asan: deps build-asan/build.ninja
	cmake --build build-asan -j$(JOBS)
	@scripts/test build-asan

test-tsan: deps build-tsan/build.ninja
	cmake --build build-tsan -j$(JOBS)
	ctest --test-dir build-tsan -L unit -j$(JOBS) --output-on-failure

FUZZ_SECONDS ?= 60
fuzz:
	@scripts/fuzz all $(FUZZ_SECONDS)

# Not part of `make test`: minutes by design (tests/soak/README.md).
SOAK_MINUTES ?= 10
soak: build
	@tests/soak/run --minutes $(SOAK_MINUTES)

services-start:
	scripts/services/all start

services-stop:
	scripts/services/all stop

clean:
	rm -rf $(BUILD)
