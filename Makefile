# tenfold: `make bench` (the main job) and `make test`.
# On a fresh machine this installs everything: the Debian packages in
# system-packages.txt (when root and missing), a pinned uv, and the workspace.

SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
UV_VERSION := 0.13.9
TOOLS := .tenfold/tools
UV := $(TOOLS)/bin/uv
PYTHON ?= python3
PYTEST_ARGS ?=
export UV_PYTHON_PREFERENCE := only-system
export UV_PYTHON_DOWNLOADS := never
export DEBIAN_FRONTEND := noninteractive

.PHONY: bench bench-full bench-check test lint check system-packages uv sync sync-peers clean

bench: sync-peers
	$(UV) run --frozen tenfold bench --workspace --quick --memory --report docs/benchmarks.md

bench-full: sync-peers
	$(UV) run --frozen tenfold bench --workspace --full --memory --report docs/benchmarks.md

# The A/B regression gate for a change (docs/regressions.md): the merge base of HEAD
# and $(BENCH_BASE) against the working tree, interleaved on this machine, quick
# sizes, only the systems the diff touches (the core, uv.lock or pyproject.toml:
# all). Exit 1 when a row's whole interval is over its threshold.
BENCH_BASE ?= origin/main
BENCH_CHECK_ARGS ?=
bench-check: sync-peers
	@base=$$(git merge-base HEAD $(BENCH_BASE) 2>/dev/null || git merge-base HEAD main 2>/dev/null || true); \
	if [ -z "$$base" ]; then echo "bench-check: no merge base of HEAD with $(BENCH_BASE) or main (set BENCH_BASE=REV)" >&2; exit 2; fi; \
	echo "bench-check: the working tree against $$base (merge base with $(BENCH_BASE))"; \
	$(UV) run --frozen tenfold bench --compare "$$base" --quick $(BENCH_CHECK_ARGS)

test: sync-peers
	@rc=0; $(UV) run --frozen pytest $(PYTEST_ARGS) || rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "pytest collected no tests"; exit 0; fi; exit $$rc

lint: sync-peers
	$(UV) run --frozen ruff check packages
	$(UV) run --frozen ruff format --check packages
	$(UV) run --frozen mypy $$(for d in packages/*/src/tenfold/*/; do printf -- '-p tenfold.%s ' "$$(basename $$d)"; done)

check: test lint

system-packages:
	@missing=$$(for p in $$(grep -v '^#' system-packages.txt); do \
	    dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | grep -q 'install ok installed' || echo $$p; done); \
	if [ -n "$$missing" ]; then \
	    if [ "$$(id -u)" = 0 ]; then \
	        echo "installing Debian packages:" $$missing; \
	        apt-get update -qq && apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
	    else \
	        echo "missing Debian packages (run as root to install):" $$missing >&2; \
	    fi; \
	fi

$(UV):
	$(PYTHON) -m venv $(TOOLS)
	$(TOOLS)/bin/pip install -q "uv==$(UV_VERSION)"

uv: $(UV)
	@test "$$($(UV) --version | cut -d' ' -f2)" = "$(UV_VERSION)" || $(TOOLS)/bin/pip install -q "uv==$(UV_VERSION)"

sync: system-packages uv
	$(UV) sync --locked --all-packages

sync-peers: system-packages uv
	$(UV) sync --locked --all-packages --group peers

clean:
	rm -rf .venv .tenfold .mypy_cache .ruff_cache .pytest_cache
