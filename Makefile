# The two commands a new user runs are `make run` and `make test`; both build
# the virtualenv from setup.cfg when it is missing or older than setup.cfg.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
RUFF_ARGS := --line-length 100 --target-version py311 --select E,F,W,I,B,UP,SIM,RUF --ignore RUF012,SIM117

# `make install` (as root): a virtualenv in PREFIX, the unit, an example config.
PREFIX     ?= /opt/noded
UNIT_DIR   ?= /etc/systemd/system
CONFIG_DIR ?= /etc/ganeti

.PHONY: run test lint bench profile clean venv install

venv: $(STAMP)

# One line per step (pip's own output goes to the log; the install takes half a minute).
$(STAMP): setup.cfg pyproject.toml
	@echo "creating $(VENV) from setup.cfg (pip log: $(VENV)/install.log) ..."
	@test -x $(BIN)/python || { echo "  1/3 python -m venv $(VENV)"; $(PYTHON) -m venv $(VENV); }
	@echo "  2/3 upgrading pip ..."
	@$(BIN)/python -m pip install --upgrade pip > $(VENV)/install.log 2>&1 \
	   || { tail -n 30 $(VENV)/install.log; exit 1; }
	@echo "  3/3 installing noded with its test and dev dependencies (about 30 s) ..."
	@$(BIN)/python -m pip install --progress-bar off -e '.[test,dev]' >> $(VENV)/install.log 2>&1 \
	   || { tail -n 30 $(VENV)/install.log; exit 1; }
	@echo "  done"
	@touch $(STAMP)

run: $(STAMP)
	$(BIN)/python -m masterd.demo

# Two workers or more (one per CPU, at most four): 4 minutes on two CPUs instead of 6-8.
# Each worker has its own daemons, ports and leak marker.
test: $(STAMP)
	$(BIN)/python -m pytest --numprocesses auto --maxprocesses 4

lint: $(STAMP)
	$(BIN)/ruff check $(RUFF_ARGS) noded masterd rpc_client tests
	$(BIN)/ruff format --check --line-length 100 noded masterd rpc_client tests
	$(BIN)/mypy

bench: $(STAMP)
	$(BIN)/python -m tests.bench.bench --out bench.json

# Where the daemon's time goes under load (py-spy; it needs ptrace, as root here).
# CALLERS=0 for one call after another.
CALLERS ?= 32
profile: $(STAMP)
	@test -x $(BIN)/py-spy || { echo "installing py-spy (log: $(VENV)/install.log) ..."; \
	   $(BIN)/python -m pip install -e '.[profile]' >> $(VENV)/install.log 2>&1 \
	   || { tail -n 30 $(VENV)/install.log; exit 1; }; }
	$(BIN)/python -m tests.bench.profile --callers $(CALLERS) --out profile.txt

install:
	$(PYTHON) -m venv $(PREFIX)
	$(PREFIX)/bin/python -m pip install --quiet --upgrade pip
	$(PREFIX)/bin/python -m pip install --quiet .
	install -d -m 0755 $(PREFIX)/doc
	install -m 0644 README.md doc/*.md $(PREFIX)/doc/
	install -d -m 0755 $(UNIT_DIR)
	sed -e 's#/opt/noded#$(PREFIX)#g' -e 's#/etc/ganeti#$(CONFIG_DIR)#g' \
	    doc/examples/systemd/ganeti-noded.service \
	    > $(UNIT_DIR)/ganeti-noded.service
	sed -e 's#/opt/noded#$(PREFIX)#g' -e 's#/etc/ganeti#$(CONFIG_DIR)#g' \
	    doc/examples/systemd/ganeti-masterd.service \
	    > $(UNIT_DIR)/ganeti-masterd.service
	install -d -m 0755 $(CONFIG_DIR)
	test -e $(CONFIG_DIR)/noded.toml || install -m 0600 doc/examples/noded.toml $(CONFIG_DIR)/
	test -e $(CONFIG_DIR)/masterd.toml || install -m 0600 doc/examples/masterd.toml $(CONFIG_DIR)/
	@echo "installed; now: systemctl daemon-reload && systemctl enable --now ganeti-noded"
	@echo "(on the master: systemctl enable --now ganeti-masterd)"

clean:
	rm -rf $(VENV) build dist *.egg-info .pytest_cache .mypy_cache .ruff_cache
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
