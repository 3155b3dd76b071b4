# The two commands a newcomer needs: `make demo` and `make test`. Both build .venv when missing.
PY := .venv/bin/python
export HF_HUB_OFFLINE ?= 1
export TOKENIZERS_PARALLELISM ?= false

.PHONY: setup demo test lint plan clean-demo

setup:
	@bash scripts/setup_venv.sh

demo: setup
	$(PY) -m kuavo_train demo

test: setup
	$(PY) -m pytest -q

lint: setup
	.venv/bin/ruff check .
	.venv/bin/ruff format --check .

plan: setup
	$(PY) -m kuavo_train plan

clean-demo:
	rm -rf outputs/demo demo_data
