# PeerWorks consultation pipeline. `make help` lists the targets.
# Everything installs itself: a virtual environment from uv.lock, built on first use.

PYTHON ?= python3
VENV   := .venv
TOOLS  := .tools
UV     := $(TOOLS)/bin/uv
STAMP  := $(VENV)/.installed
CONSULT := $(VENV)/bin/consult

.DEFAULT_GOAL := report
.PHONY: help report run test synth indicators bench bench-decade clean clean-warehouse clean-all

help: ## List the targets
	@grep -E '^[a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*## "}; {printf "  make %-16s %s\n", $$1, $$2}'

$(UV):
	@echo "Installing uv (the package installer) into $(TOOLS)/ ..."
	@$(PYTHON) -m venv $(TOOLS)
	@$(TOOLS)/bin/pip install --quiet --disable-pip-version-check uv==0.13.9

# uv.lock pins every package; --frozen installs exactly that, compiled for fast imports.
$(STAMP): $(UV) pyproject.toml uv.lock
	@echo "Setting up the Python environment in $(VENV)/ from uv.lock ..."
	@UV_PYTHON_DOWNLOADS=never $(UV) sync --frozen --compile-bytecode --python $(PYTHON) --quiet
	@touch $(STAMP)

report: $(STAMP) ## Run the whole pipeline and render the report (synthetic data when data/raw/ is empty)
	@$(CONSULT) run
	@echo "Open reports/_site/index.html"

run: report ## Same as `make report`

synth: $(STAMP) ## Write the synthetic consultation exports to data/synthetic/
	@$(CONSULT) synth

indicators: $(STAMP) ## Print the indicator catalogue
	@$(CONSULT) indicators --list

# axe-core for the browser tests, exactly as locked; they also need /usr/bin/chromium (see .ci/run).
BROWSER_DEPS := tests/browser/node_modules/.package-lock.json
$(BROWSER_DEPS): tests/browser/package.json tests/browser/package-lock.json
	@command -v npm >/dev/null || { echo "npm is needed for the browser tests (apt-get install npm)"; exit 1; }
	@echo "Installing axe-core for the browser tests into tests/browser/node_modules/ ..."
	@npm ci --prefix tests/browser --no-audit --no-fund --silent

test: $(STAMP) $(BROWSER_DEPS) ## Run the test suite (the browser tests need Debian's chromium)
	@$(VENV)/bin/python -m pytest -q

bench: $(STAMP) ## Benchmark every stage at 10k/100k/1M responses vs DuckDB read_csv (docs/benchmarks.md; < 20 min)
	@$(VENV)/bin/python bench/run.py

bench-decade: $(STAMP) ## Ten yearly waves added one by one (wave new + consult run each), timed (~15 min)
	@$(VENV)/bin/python bench/decade.py $$(mktemp -d)

clean: ## Remove the rendered report and the synthetic exports (keeps the warehouse)
	rm -rf reports/_site reports/.quarto data/synthetic data/synthetic-platforms .pytest_cache

clean-warehouse: ## Remove the warehouse (the DuckDB database, run records, and the QA report and audit made from it)
	rm -rf data/warehouse/consultation.duckdb data/warehouse/consultation.duckdb.wal data/warehouse/runs \
		data/warehouse/qa data/warehouse/audit.json

clean-all: clean clean-warehouse ## Remove every output and the environments
	rm -rf $(VENV) $(TOOLS)
