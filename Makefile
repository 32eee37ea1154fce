# vpe: the two commands of the README live here.
#   make demo   - bring up the demo and show it working
#   make test   - install what the tests need and run the whole suite
SHELL := /bin/bash
VENV  ?= .venv
PY    := $(VENV)/bin/python
DEB_PACKAGES := gobgpd frr bird2 exabgp iputils-ping iproute2 tshark tcpdump iperf3 openssl curl \
                clang llvm libbpf-dev bpftool libbpf1 chromium systemd nftables

.PHONY: test demo demo-down deps venv lint bench clean ebpf install

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

# the agent and the forwarder as systemd services (docs/operations.md): a venv in
# PREFIX, the units, and example configuration files that are never overwritten
PREFIX     ?= /opt/vpe
SYSTEMDDIR ?= /etc/systemd/system
install: ebpf
	@test "$$(id -u)" = 0 || { echo "make install: run as root"; exit 1; }
	test -x $(PREFIX)/bin/python || python3 -m venv $(PREFIX)
	$(PREFIX)/bin/python -m pip install -q --upgrade pip
	$(PREFIX)/bin/python -m pip install -q .
	install -d -m 0755 /etc/vpe
	test -e /etc/vpe/agent.toml || install -m 0640 packaging/agent.toml.example /etc/vpe/agent.toml
	test -e /etc/vpe/forwarder.env || install -m 0644 packaging/forwarder.env.example /etc/vpe/forwarder.env
	for u in vpe-agent vpe-forwarder; do \
	  sed 's|/opt/vpe/|$(PREFIX)/|g' packaging/systemd/$$u.service > $(SYSTEMDDIR)/$$u.service && \
	  chmod 0644 $(SYSTEMDDIR)/$$u.service; done
	-systemctl daemon-reload
	@echo "now edit /etc/vpe/agent.toml and /etc/vpe/forwarder.env, then: systemctl enable --now vpe-forwarder vpe-agent"

clean:
	rm -rf $(VENV) build *.egg-info $(EBPF_OBJ)
