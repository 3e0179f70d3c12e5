# The two commands of the README, and a few conveniences. CMake does the work;
# this file only chains install → configure → build → run/test.
BUILD ?= build
JOBS ?= 2
CMAKE_FLAGS ?=

.PHONY: all deps build run run-embedded test test-unit services-start services-stop clean help

all: build

help:
	@echo "make run     install what is missing, build, start the servers and the chat"
	@echo "make test    install what is missing, build, run every test"
	@echo "make run-embedded   the chat with no servers (SQLite, one instance)"

deps:
	@scripts/install-deps

$(BUILD)/build.ninja:
	cmake -S . -B $(BUILD) -G Ninja -DNUDGE_WERROR=ON $(CMAKE_FLAGS)

build: deps $(BUILD)/build.ninja
	cmake --build $(BUILD) -j$(JOBS)

run: build
	@scripts/run-chat $(BUILD)

run-embedded: build
	$(BUILD)/bin/nudge run pipelines/chat-embedded.toml

test: build
	@scripts/test $(BUILD)

test-unit: build
	ctest --test-dir $(BUILD) -L unit -j$(JOBS) --output-on-failure

services-start:
	scripts/services/all start

services-stop:
	scripts/services/all stop

clean:
	rm -rf $(BUILD)
