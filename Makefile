# vpe: the two commands of the README live here.
#   make demo   - bring up the demo and show it working
#   make test   - install what the tests need and run the whole suite
SHELL := /bin/bash
VENV  ?= .venv
PY    := $(VENV)/bin/python
DEB_PACKAGES := gobgpd frr bird2 exabgp iputils-ping iproute2 tshark tcpdump iperf3 openssl curl

.PHONY: test demo demo-down deps venv lint bench clean

deps:
	@missing=""; for p in $(DEB_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ]; then \
	    echo "installing Debian packages:$$missing"; \
	    export DEBIAN_FRONTEND=noninteractive; \
	    apt-get update -qq && apt-get install -y -qq $$missing >/dev/null; \
	  else echo "not root: cannot install$$missing (interop tests will skip)"; fi; \
	fi

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test]'
	touch $@

venv: $(VENV)/.installed

test: deps venv
	$(VENV)/bin/ruff check src tests bench tools
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports --no-logo
	$(PY) -m pytest -q tests

lint: venv
	$(VENV)/bin/ruff check src tests bench tools
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports --no-logo

demo: deps venv
	$(PY) -m vpe.demo

demo-down: venv
	$(VENV)/bin/vpe lab down --prefix demo

bench: venv
	$(PY) bench/codec.py

clean:
	rm -rf $(VENV) build *.egg-info
