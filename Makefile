# vpe: the two commands of the README live here.
#   make demo   - bring up the demo and show it working
#   make test   - install what the tests need and run the whole suite
SHELL := /bin/bash
VENV  ?= .venv
PY    := $(VENV)/bin/python
DEB_PACKAGES := gobgpd frr bird2 exabgp iputils-ping iproute2 tshark tcpdump iperf3 openssl curl \
                clang llvm libbpf-dev bpftool libbpf1 udhcpc

.PHONY: test demo demo-down deps venv lint bench clean ebpf

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

# the eBPF programs of the "ebpf" dataplane driver (clang from DEB_PACKAGES);
# skipped with a note when clang is missing (the driver then refuses to start)
EBPF_OBJ := src/vpe/dataplane/ebpf/vpe_tc.o
$(EBPF_OBJ): src/vpe/dataplane/ebpf/vpe_tc.c src/vpe/dataplane/ebpf/build.py
	@if command -v clang >/dev/null; then PYTHONPATH=src python3 -m vpe.dataplane.ebpf.build --out $@; \
	else echo "clang missing: the ebpf driver's programs are not built (make deps as root)"; fi

ebpf: $(EBPF_OBJ)

test: deps venv ebpf
	$(VENV)/bin/ruff check src tests bench tools
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports --no-logo
	$(PY) -m pytest -q tests

lint: venv
	$(VENV)/bin/ruff check src tests bench tools
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports --no-logo

demo: deps venv ebpf
	$(PY) -m vpe.demo

demo-down: venv
	$(VENV)/bin/vpe lab down --prefix demo

bench: venv
	$(PY) bench/codec.py

clean:
	rm -rf $(VENV) build *.egg-info $(EBPF_OBJ)
