# moprune: `make run` runs the quickstart study end to end; `make test` checks the import contracts and runs the
# whole test suite; `make test-fast` leaves out the whole-study tests (marked slow).
# Both create .venv if missing and install the project into it.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
SPEC   ?= studies/quickstart.yaml
# torch and torchvision are pinned to the builds that lie on this machine's disk; elsewhere any recent torch works:
# `make TORCH_PINS= run` installs whatever pip resolves.
TORCH_PINS ?= torch==2.14.1 torchvision==0.29.1

.PHONY: install run test test-fast clean

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(if $(strip $(TORCH_PINS)),$(PY) -m pip install -q $(TORCH_PINS))
	$(PY) -m pip install -q -e '.[dev,postgres,onnx,hf]'
	touch $@

install: $(VENV)/.installed

run: install
	$(VENV)/bin/moprune run $(SPEC)
	$(VENV)/bin/moprune status $(SPEC)
	$(VENV)/bin/moprune dashboard $(SPEC)
	@echo "Results: Optuna storage runs/$$(basename $(SPEC) .yaml).db; report dashboards/$$(basename $(SPEC) .yaml)/index.html; table: $(VENV)/bin/moprune pareto $(SPEC)"

test: install
	$(VENV)/bin/lint-imports
	$(PY) -m pytest -q -ra --durations=15

test-fast: install
	$(PY) -m pytest -q -ra -m "not slow" --durations=10

clean:
	rm -rf $(VENV) runs
