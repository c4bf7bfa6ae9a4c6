# The two commands a new user runs are `make run` and `make test`; both build
# the virtualenv from setup.cfg when it is missing or older than setup.cfg.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
RUFF_ARGS := --line-length 100 --target-version py311 --select E,F,W,I,B,UP,SIM,RUF --ignore RUF012,SIM117

# `make install` (as root): a virtualenv in PREFIX, its commands linked into BINDIR (on
# PATH), the units, the configs, and the certificates the configs name where none exist
# (doc/operations.md, "Install"). NODE_NAME names this node's certificate (its CN: the
# name the node registers as); NODE_ADDRESSES: more names or addresses it is reached by.
PREFIX     ?= /opt/noded
UNIT_DIR   ?= /etc/systemd/system
CONFIG_DIR ?= /etc/ganeti
BINDIR     ?= /usr/local/bin
NODE_NAME  ?= $(shell hostname)
NODE_ADDRESSES ?=
# Where the daemons keep their state: STATE_DIR/ganeti-noded, STATE_DIR/ganeti-masterd.
STATE_DIR  ?= /var/lib
# The master this node registers with (HOST:PORT), written into noded.toml; empty: the
# masters line stays commented out.
MASTER     ?=
# More arguments for pip (an offline machine: --no-index --find-links DIR).
PIP_ARGS   ?=
PKI        := $(CONFIG_DIR)/pki
CERTS      := "$(PREFIX)/bin/rpc-cli" certs

.PHONY: run test lint bench profile clean venv install install-certs install-units install-paths

venv: $(STAMP)

# One line per step; pip's own output goes to the log, and the packages it collects are
# named as it goes, so that the half minute of the install is not silent.
PIP_PROGRESS = tee -a $(VENV)/install.log | awk ' \
	/^Collecting / { split($$2, name, /[<>=!~;[(]/); w = length(name[1]) + 2; \
	  if (!n++) { printf "      collecting: "; col = 18 } \
	  else if (col + w > 92) { printf ",\n      "; col = 6 } else printf ", "; \
	  printf "%s", name[1]; col += w; fflush() } \
	/^Installing collected packages/ { printf "\n      installing them ..."; fflush() } \
	END { if (n) print "" }'

$(STAMP): setup.cfg pyproject.toml
	@echo "creating $(VENV) from setup.cfg (pip log: $(VENV)/install.log) ..."
	@test -x $(BIN)/python || { echo "  1/3 python -m venv $(VENV)"; $(PYTHON) -m venv $(VENV); }
	@echo "  2/3 upgrading pip ..."
	@$(BIN)/python -m pip install --upgrade pip > $(VENV)/install.log 2>&1 \
	   || { tail -n 30 $(VENV)/install.log; exit 1; }
	@echo "  3/3 installing noded with its test and dev dependencies (30 s to 2 min) ..."
	@{ $(BIN)/python -m pip install --progress-bar off -e '.[test,dev]' 2>&1; \
	   echo $$? > $(VENV)/.pip-status; } | $(PIP_PROGRESS)
	@test "$$(cat $(VENV)/.pip-status)" = 0 || { tail -n 30 $(VENV)/install.log; exit 1; }
	@echo "  done"
	@touch $(STAMP)

run: $(STAMP)
	$(BIN)/python -m masterd.demo

# One worker per CPU, at most four (a third on two CPUs was slower: the tests cost more
# CPU, not less time).  Tests are handed out eight at a time and the slow ones first
# (tests/conftest.py): every worker gets some of them and none is left with a long test
# at the end.  Each worker has its own daemons, ports, PostgreSQL and leak marker;
# `make test WORKERS=3` to choose.
WORKERS ?= auto
test: $(STAMP)
	$(BIN)/python -m pytest --numprocesses $(WORKERS) --maxprocesses 4 --maxschedchunk 8

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

# The paths in the units and configs follow PREFIX, CONFIG_DIR and STATE_DIR; the node's
# certificate file and name follow NODE_NAME; MASTER, if given, is noded.toml's masters.
# An existing config or certificate is never overwritten.
REWRITE = sed -e 's|/opt/noded|$(PREFIX)|g' -e 's|/etc/ganeti|$(CONFIG_DIR)|g' \
	          -e 's|/var/lib/ganeti-|$(STATE_DIR)/ganeti-|g' \
	          -e 's|/pki/node1\.|/pki/$(NODE_NAME).|g' -e 's|^\# name = "node1"|\# name = "$(NODE_NAME)"|' \
	          $(if $(MASTER),-e 's|^\# masters = \[.*\]|masters = ["$(MASTER)"]|')
# A path with a space: the units' ExecStart and ReadWritePaths words quoted before the
# rewrite (as systemd reads them), their Documentation URL's spaces %20 after it (%% is
# systemd's %).
space := $(subst ,, )
unit_spaced = $(findstring $(space),$(PREFIX)$(CONFIG_DIR)$(STATE_DIR))
QUOTE_WORDS = sed -e '/^\(ExecStart\|ReadWritePaths\)=/s,\([= ]\)\(/[^ ]*\),\1"\2",g'
UNIT_QUOTE = $(if $(unit_spaced),$(QUOTE_WORDS),cat)
UNIT_URL = $(if $(unit_spaced),-e '/^Documentation=/s| |%%20|g')
# What the install's paths may not hold: what ends the sed rewrite's expressions (| & \ #),
# the shell's quoting (' " ` $) or a line; each path is quoted, so spaces are fine.
define newline


endef
BAD_PATH_CHARS := | & \# \ ' " ` $$
INSTALL_PATHS = PREFIX UNIT_DIR CONFIG_DIR BINDIR STATE_DIR NODE_NAME MASTER
# (a `$` given on the command line or in the environment is seen in the unexpanded value)
bad_path = $(strip $(foreach c,$(BAD_PATH_CHARS),$(findstring $(c),$($(1)))) \
	$(if $(findstring $(newline),$($(1))),a newline) \
	$(if $(filter command environment,$(origin $(1))),$(findstring $$,$(value $(1)))))

install-paths:
	$(foreach v,$(INSTALL_PATHS),$(if $(call bad_path,$(v)),$(error $(v) may not hold \
	  $(call bad_path,$(v)) (the install writes it into sed expressions and quoted shell \
	  words): choose another path)))
	@true

install: install-paths
	@echo "installing noded into $(PREFIX) (pip log: $(PREFIX)/install.log) ..."
	$(PYTHON) -m venv "$(PREFIX)"
	"$(PREFIX)/bin/python" -m pip install $(PIP_ARGS) --upgrade pip > "$(PREFIX)/install.log" 2>&1 \
	   || { tail -n 30 "$(PREFIX)/install.log"; exit 1; }
	"$(PREFIX)/bin/python" -m pip install $(PIP_ARGS) . >> "$(PREFIX)/install.log" 2>&1 \
	   || { tail -n 30 "$(PREFIX)/install.log"; exit 1; }
	install -d -m 0755 "$(BINDIR)"
	for c in ganeti-noded ganeti-masterd rpc-cli; do ln -sf "$(PREFIX)/bin/$$c" "$(BINDIR)/$$c"; done
	install -d -m 0755 "$(PREFIX)/doc"
	install -m 0644 README.md doc/*.md "$(PREFIX)/doc/"
	@$(MAKE) --no-print-directory install-units
	install -d -m 0755 "$(CONFIG_DIR)"
	test -e "$(CONFIG_DIR)/noded.toml" || { $(REWRITE) doc/examples/noded.toml \
	   > "$(CONFIG_DIR)/noded.toml" && chmod 0600 "$(CONFIG_DIR)/noded.toml"; }
	test -e "$(CONFIG_DIR)/masterd.toml" || { $(REWRITE) doc/examples/masterd.toml \
	   > "$(CONFIG_DIR)/masterd.toml" && chmod 0600 "$(CONFIG_DIR)/masterd.toml"; }
	@$(MAKE) --no-print-directory install-certs
	@echo "installed; now: systemctl daemon-reload && systemctl enable --now ganeti-noded"
	@echo "(on the master: systemctl enable --now ganeti-masterd)"
	@! test -e "$(PKI)/operator.crt" || echo "then, to see it answer:" \
	  "rpc-cli --tls-cert '$(PKI)/operator.crt' --tls-key '$(PKI)/operator.key' --tls-ca '$(PKI)/ca.crt' identify"

# The units alone (make install writes them too).
install-units: install-paths
	install -d -m 0755 "$(UNIT_DIR)"
	for u in ganeti-noded ganeti-masterd; do $(UNIT_QUOTE) doc/examples/systemd/$$u.service \
	   | $(REWRITE) $(UNIT_URL) > "$(UNIT_DIR)/$$u.service" || exit 1; done

# No CA in PKI: make one (this machine holds the cluster's CA) and issue this node's,
# the operator's and masterd's certificates. A CA without its key (ca.crt copied from
# the CA's machine): print the one command that issues this node's on that machine.
install-certs: install-paths
	@if test -e "$(PKI)/$(NODE_NAME).crt"; then \
	   echo "keeping $(PKI)/$(NODE_NAME).crt"; \
	 elif test -e "$(PKI)/ca.crt" && ! test -e "$(PKI)/ca.key"; then \
	   echo "MISSING $(PKI)/$(NODE_NAME).crt and .key: on the machine with the cluster CA run"; \
	   echo "  rpc-cli certs issue CA_DIR $(NODE_NAME) --node --address $(NODE_NAME) --address 127.0.0.1"; \
	   echo "and copy CA_DIR/$(NODE_NAME).crt and .key into $(PKI)/ (mode 0600)"; \
	 elif ! test -x "$(PREFIX)/bin/rpc-cli"; then \
	   echo "no $(PREFIX)/bin/rpc-cli: run make install first, or give the PREFIX it had"; \
	   exit 1; \
	 else \
	   test -e "$(PKI)/ca.crt" || { echo "making a cluster CA in $(PKI) (keep ca.key safe)"; \
	     $(CERTS) init "$(PKI)" > /dev/null || exit 1; }; \
	   echo "issuing $(PKI)/$(NODE_NAME).crt (this node's), operator.crt (rpc-cli's)"; \
	   $(CERTS) issue "$(PKI)" $(NODE_NAME) --node --address $(NODE_NAME) --address 127.0.0.1 \
	     $(foreach a,$(NODE_ADDRESSES),--address $(a)) > /dev/null || exit 1; \
	   test -e "$(PKI)/operator.crt" || $(CERTS) issue "$(PKI)" operator --master > /dev/null; \
	   test -e "$(PKI)/masterd1.crt" || $(CERTS) issue "$(PKI)" masterd1 --masterd \
	     --address $(NODE_NAME) --address 127.0.0.1 > /dev/null; \
	 fi

clean:
	rm -rf $(VENV) build dist *.egg-info .pytest_cache .mypy_cache .ruff_cache
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
