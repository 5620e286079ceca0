# outdial: build, test and demo entry points.
#
#   make setup   install the real SIP/RTP peers the tests drive (Debian/Ubuntu, apt; idempotent)
#                and the pinned Python tools (.venv: openapi-spec-validator; numpy + onnx; the AI-agent
#                test peers' websockets, pipecat-ai, aiortc; the DNS test peer's dnslib), and the
#                pinned ONNX Runtime + Silero VAD wheels and the Whisper tiny.en weights, converted
#                to ONNX, into the model cache (scripts/fetch-models.sh); Debian's chromium, and
#                axe-core from npm (tests/web/package-lock.json) for the web page's browser tests
#   make build   cargo build --all-targets
#   make test    setup, then fmt check, clippy -D warnings, cargo test --all-targets, the unit
#                tests and the baresip call again with G.722 (--features g722), amd-check,
#                fuzz (20 s/target)
#   make amd-check  answering-machine detection on a generated held-out corpus, with floors
#   make fuzz    run every cargo-fuzz target in fuzz/ for FUZZ_SECONDS each (0 crashes expected)
#   make demo    setup + build, then a small campaign against sipp far ends (scripts/demo.sh)
#   make demo-call  one real call against sipp (scripts/demo-call.sh)
#   make clean   remove demo output (the demo's temp dirs); the cargo build cache is kept

SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c

CARGO ?= cargo
# Debian packages the integration tests and the demo need.
PACKAGES := sip-tester baresip kamailio kamailio-extra-modules kamailio-tls-modules sox espeak-ng rtpengine-daemon python3 python3-venv python3-pip curl \
	festival flite festvox-kallpc16k festvox-kdlpc16k festvox-us-slt-hts \
	chromium nodejs
# Python tools the tests run (tests/api.rs validates the OpenAPI document; the AI-agent peers in
# tests/peers/agents/), every package pinned in tests/requirements-tools.txt, installed into .venv.
VENV := .venv
PY_TOOLS := tests/requirements-tools.txt
# apt needs root; use sudo only when not root (CI runs as root).
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: all setup check-cargo build test amd-check fuzz demo demo-call clean

all: build

check-cargo:
	@command -v $(CARGO) >/dev/null 2>&1 || { \
	  echo "error: '$(CARGO)' not found: install a Rust toolchain (https://rustup.rs) and put cargo on PATH" >&2; \
	  exit 1; }

setup: check-cargo
	@command -v dpkg >/dev/null 2>&1 || { \
	  echo "error: make setup needs a Debian/Ubuntu system (dpkg, apt-get); install by hand: $(PACKAGES)" >&2; \
	  exit 1; }
	@missing=""; \
	for p in $(PACKAGES); do \
	  status=$$(dpkg -s "$$p" 2>/dev/null || true); \
	  case "$$status" in *"Status: install ok installed"*) ;; *) missing="$$missing $$p" ;; esac; \
	done; \
	if [ -z "$$missing" ]; then \
	  echo "setup: all packages present ($(PACKAGES))"; \
	else \
	  echo "setup: installing$$missing"; \
	  $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get update; \
	  $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends $$missing; \
	fi
	@if [ -x $(VENV)/bin/python ] && \
	   diff -q <(grep -v '^#' $(PY_TOOLS) | sort -f) <($(VENV)/bin/python -m pip freeze 2>/dev/null | sort -f) >/dev/null; then \
	  echo "setup: $(VENV) has the pinned Python tools ($(PY_TOOLS))"; \
	else \
	  echo "setup: installing $(PY_TOOLS) into $(VENV)"; \
	  python3 -m venv $(VENV); \
	  $(VENV)/bin/python -m pip install --quiet --disable-pip-version-check -r $(PY_TOOLS); \
	fi
	PYTHON=$(VENV)/bin/python scripts/fetch-models.sh
	@if [ -f tests/web/node_modules/axe-core/axe.min.js ]; then \
	  echo "setup: tests/web has axe-core"; \
	else \
	  command -v npm >/dev/null 2>&1 || $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends npm; \
	  echo "setup: installing axe-core (tests/web/package-lock.json)"; \
	  (cd tests/web && npm ci --no-audit --no-fund); \
	fi

build: check-cargo
	$(CARGO) build --all-targets

test: setup
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --all-targets -- -D warnings
	$(CARGO) test --all-targets
	$(CARGO) test --features g722 --lib --test g722_baresip
	$(MAKE) amd-check
	$(MAKE) fuzz FUZZ_SECONDS=20

# Answering-machine detection on a held-out corpus (voices and phrasings never trained on,
# generated with models/amd/corpus/generate.py), through `outdial amd-eval`: fails when a mode
# falls under its floor. Floors sit a few points under what README's table measured.
AMD_EVAL_DIR := target/amd-heldout
amd-check: check-cargo
	$(CARGO) build
	python3 models/amd/corpus/generate.py --out $(AMD_EVAL_DIR) --split heldout --per-class 60 --seed 1 --jobs 2
	target/debug/outdial amd-eval --mode heuristic --corpus $(AMD_EVAL_DIR)/heldout \
	  --json $(AMD_EVAL_DIR)/heuristic.jsonl --min-accuracy 0.55
	target/debug/outdial amd-eval --mode ml --corpus $(AMD_EVAL_DIR)/heldout \
	  --json $(AMD_EVAL_DIR)/ml.jsonl --min-accuracy 0.78 --max-false-machine 0.05
	target/debug/outdial amd-eval --mode text --corpus $(AMD_EVAL_DIR)/heldout --jobs 2 \
	  --json $(AMD_EVAL_DIR)/text.jsonl --min-accuracy 0.90 --max-false-machine 0.05

# The parsers that read the network, fuzzed for a bounded time. cargo-fuzz needs nightly
# features (sanitizers); RUSTC_BOOTSTRAP lets the stable toolchain provide them.
FUZZ_SECONDS ?= 30
FUZZ_TARGETS := sip_guard sdp_parse rtp_parse rtcp_parse dtmf_parse csv_import amd_corpus
fuzz: check-cargo
	@command -v cargo-fuzz >/dev/null 2>&1 || $(CARGO) install cargo-fuzz --locked --version 0.13.2
	cd fuzz && for t in $(FUZZ_TARGETS); do \
	  RUSTC_BOOTSTRAP=1 $(CARGO) fuzz run -O $$t -- -max_total_time=$(FUZZ_SECONDS) -print_final_stats=1 2>&1 | grep -E '^(Done|==|SUMMARY)|stat::number_of_executed_units' ; \
	  test $${PIPESTATUS[0]} -eq 0 || { echo "fuzz target $$t failed" >&2; exit 1; }; \
	done

demo: setup build
	scripts/demo.sh

demo-call: setup build
	scripts/demo-call.sh

clean:
	rm -rf demo-out "$${TMPDIR:-/tmp}"/outdial-demo.*
