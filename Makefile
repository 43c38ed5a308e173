# dnnkit: the README's commands. A fresh machine with only Python needs just these:
#   make reproduce   # venv + install + `dnnkit reproduce --all` on the default CPU-scale configs
#   make test        # venv + dev/oracle extras + oracle environments + the default pytest run
# TORCH can be overridden, e.g. `make test TORCH="torch==2.13.0 --index-url ..."` for CUDA.

PYTHON ?= python3
VENV   ?= .venv
TORCH  ?= torch==2.13.0
OUT    ?= results
BIN    := $(VENV)/bin
PIP    := $(BIN)/python -m pip --disable-pip-version-check -q

# Oracle environments that cannot share the main venv (e.g. SCALE-Sim, neural-tangents) are
# declared by each module in mk/<module>.mk, which appends its stamp file to ORACLE_ENVS
# (needed by `make test`) or SLOW_ENVS (needed only by `make test-slow`, e.g. Ray).
ORACLE_ENVS :=
SLOW_ENVS :=
-include mk/*.mk

.PHONY: venv reproduce reproduce-quick test test-slow bench lint clean

$(BIN)/.core: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PIP) install "$(TORCH)" -e .
	touch $@

# torch first (in the same call) so nothing resolves a multi-GB CUDA build. zennit, torchattacks
# and torchdistill go in with --no-deps: their declared torchvision requirement would replace torch.
$(BIN)/.dev: $(BIN)/.core pyproject.toml
	$(PIP) install "$(TORCH)" -e ".[dev,oracles,fl,nlp,llm]"
	$(PIP) install --no-deps zennit==0.5.1 torchattacks==3.5.1 torchdistill==1.1.5
	touch $@

venv: $(BIN)/.core

# Reproductions use the same environment as the tests: some report their oracle's agreement and
# some need an extra (Flower for feddip, sacrebleu for seq2seq).
reproduce: $(BIN)/.dev
	OMP_NUM_THREADS=$${OMP_NUM_THREADS:-1} $(BIN)/dnnkit reproduce --all --jobs $${JOBS:-$$(nproc)} --out $(OUT) --no-progress
	@echo "report: $(OUT)/index.html"

reproduce-quick: $(BIN)/.dev
	$(BIN)/dnnkit reproduce --all --quick --out $(OUT) --no-progress

# Two pytest workers (pytest-xdist) by default: one per core of the CI machine, each test
# single-threaded (tests/conftest.py). PYTEST_WORKERS=0 runs in one process.
PYTEST_WORKERS ?= 2

test: $(BIN)/.dev $(ORACLE_ENVS)
	$(BIN)/python -m pytest -m "not slow" -q -p no:cacheprovider -n $(PYTEST_WORKERS)

test-slow: $(BIN)/.dev $(ORACLE_ENVS) $(SLOW_ENVS)
	$(BIN)/python -m pytest -m slow -q -p no:cacheprovider

bench: $(BIN)/.dev $(ORACLE_ENVS)
	@for n in $$($(BIN)/python -c "from dnnkit.core import registry; print(' '.join(registry.bench_names()))"); do \
		echo "== $$n"; $(BIN)/dnnkit bench $$n || exit 1; done

lint: $(BIN)/.dev
	$(BIN)/ruff check src tests

clean:
	rm -rf $(VENV) .venv-* $(OUT)
