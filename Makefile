# Quickstart: `make demo`, then `make test`. Every target installs what it needs first.
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
# Portable AVX2 build of llama.cpp: a native build uses AMX where the CPU reports it, and some
# VMs forbid AMX (segfault at the first decode). pip caches the wheel after the first build.
export CMAKE_ARGS := -DGGML_NATIVE=OFF

.PHONY: install demo test lint bench app clean

install: $(STAMP)

$(STAMP): pyproject.toml
	@test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	@touch $(STAMP)

demo: install
	@echo "== One question, MinionS, embedded model in both roles (remote priced as gpt-4o, a stand-in) =="
	$(VENV)/bin/minions ask datasets/sample/northwind_annual_report.md \
		-q "What was Northwind's total revenue in fiscal 2024?" --protocol minions \
		--max-rounds 1 --tasks-per-round 2 --chunk-size 6000 --local-max-tokens 192 --remote-max-tokens 256
	@echo "== All five protocols on the bundled sample: summary table and runs/offline/pareto.png =="
	$(PY) -m minions.eval --config evals/offline.toml

test: install
	$(PY) -m pytest -q -p no:cacheprovider tests

lint: install
	$(VENV)/bin/ruff check minions apps tests benchmarks
	$(VENV)/bin/mypy

bench: install
	$(PY) benchmarks/clients.py
	$(PY) benchmarks/documents.py
	$(PY) benchmarks/memory.py
	$(PY) benchmarks/protocols.py

app: install
	$(VENV)/bin/minions app

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache
