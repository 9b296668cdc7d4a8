# Two commands from a fresh clone: `make demo` and `make test`. Both create the
# virtual environment on first use (VENV=path to put it elsewhere).
VENV ?= .venv
PY := $(VENV)/bin/python
HARNESS := $(VENV)/bin/harness
STAMP := $(VENV)/.installed-stamp
DEMO_DIR ?= runs/demo
# pytest-xdist workers of `make test` and `make test-fast`: one more than the cores, at most 4.
# Many tests spend much of their time waiting (on the Slurm scheduler, a fault's timeout, a
# sweep's poll); the extra worker keeps the cores busy meanwhile. tests/conftest.py splits the
# cores' OpenMP threads among the workers. Each worker imports torch, and many tests start two
# or three processes of their own, hence the cap. `env -u`: nproc honours OMP_NUM_THREADS.
TEST_WORKERS ?= $(shell n=$$(env -u OMP_NUM_THREADS -u OMP_THREAD_LIMIT nproc 2>/dev/null || echo 2); n=$$((n + 1)); [ $$n -gt 4 ] && n=4; echo $$n)
# One test at a time to each worker (pytest-xdist's default sends chunks ahead): a worker that
# finishes early takes the next test instead of idling while another works through its queue.
XDIST = -n $(TEST_WORKERS) --maxschedchunk=1
# The demos log to W&B offline whatever their configs say (a WANDB_MODE from the shell wins).
# Not exported to the tests: each test's config says whether it runs W&B (most leave it
# disabled), and WANDB_MODE in the environment would override them all (97 offline W&B runs
# in one `make test`, about 1 core-second each).
demo slurm-demo: export WANDB_MODE ?= offline
export WANDB_SILENT ?= true

.PHONY: venv demo test test-fast lint format typecheck check slurm-demo slurm-up slurm-down commbench-study bench gpu-check clean-demo

venv: $(STAMP)

$(STAMP): setup.py
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q -e '.[dev]'
	touch $(STAMP)

## demo: synthetic FER -> a local sweep (DP + DDP with 1-3 gloo processes, tiny CNN) -> report with plots
demo: venv
	test -f data/synth_fer/fer2013.csv || $(HARNESS) data synth-fer data/synth_fer --n 1200 --format csv --seed 0
	$(HARNESS) sweep configs/sweeps/fer_demo.yaml --backend local --root $(DEMO_DIR) --wait
	$(HARNESS) status $(DEMO_DIR)/fer_demo
	$(HARNESS) analyze $(DEMO_DIR)/fer_demo --out $(DEMO_DIR)/fer_demo/report
	@echo "Run directories: $(DEMO_DIR)/fer_demo/runs/"
	@echo "Report:          $(DEMO_DIR)/fer_demo/report/report.md"
	@echo "Upload the offline W&B runs later with: $(VENV)/bin/wandb sync $(DEMO_DIR)/fer_demo/runs/*/wandb/offline-run-*"

## test: the whole suite on the CPU (starts a real local Slurm cluster when root); what CI runs.
## TEST_WORKERS pytest-xdist workers (one more than the cores, at most 4), then the `serial` tests alone:
## they compare measured step times with a model, which other tests' load would skew. The
## serial session collects only the files that mark a test serial, and takes over the Slurm
## cluster the first session started (it brings it down; it runs even when the first fails).
## TEST_IDS=FILE runs only the tests FILE lists (pytest node ids, one per line) in both sessions,
## e.g. an older commit's tests (benchmarks/bench_test_suite.py); each session then brings down
## the Slurm cluster it started, since the serial one may not use it.
SERIAL_FILES = $(shell grep -rl --include='test_*.py' 'mark.serial' tests)
TEST_SELECTION = $(if $(TEST_IDS),@$(abspath $(TEST_IDS)))
test: venv
	status=0; \
	SLURM_LOCAL_KEEP_UP=$(if $(TEST_IDS),0,1) $(PY) -m pytest -q $(XDIST) -m "not serial" -p no:cacheprovider $(TEST_SELECTION) || status=$$?; \
	$(PY) -m pytest -q -m serial -p no:cacheprovider $(or $(TEST_SELECTION),$(SERIAL_FILES)) || [ $$? -eq 5 ] || status=1; \
	exit $$status

## test-fast: the lane to run while working (no `slow`, no `slurm` tests), one pytest-xdist worker per core
test-fast: venv
	$(PY) -m pytest -q $(XDIST) -m "not slow and not slurm and not gpu and not serial" -p no:cacheprovider

## lint: ruff's rules (incl. C901 complexity) and its formatter, checked, not applied
lint: venv
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

## format: apply the formatter and the auto-fixable lint rules
format: venv
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

## typecheck: mypy on harness/ and analysis/ (settings and the allow-list in pyproject.toml)
typecheck: venv
	$(VENV)/bin/mypy

## check: lint + typecheck, what .ci/run runs before the tests
check: lint typecheck

## slurm-demo: the synthetic FER sweep through a real single-host Slurm cluster
slurm-demo: venv
	test -f data/synth_fer/fer2013.csv || $(HARNESS) data synth-fer data/synth_fer --n 1200 --format csv --seed 0
	bash slurm/local-cluster.sh up
	eval "$$(bash slurm/local-cluster.sh env)" && \
	  $(HARNESS) sweep configs/sweeps/fer_synthetic_slurm.yaml --backend slurm --cluster local \
	    --root runs/slurm-demo --wait --poll 5 && \
	  $(HARNESS) status runs/slurm-demo/fer_synthetic_slurm
	@echo "Stop the cluster with: make slurm-down"

## clean-demo: remove the demo's runs and synthetic data (make demo rebuilds them)
clean-demo:
	rm -rf $(DEMO_DIR) data/synth_fer

slurm-up:
	bash slurm/local-cluster.sh up

slurm-down:
	bash slurm/local-cluster.sh down

## commbench-study: shaped node link (100/300/1000 Mbit/s) on the 2-node local cluster: commbench
## recovers each rate, the model predicts DDP step times; writes docs/commbench.md (+ png). Needs root.
commbench-study: venv
	bash slurm/local-cluster.sh up --nodes 2
	$(PY) -m harness.commbench_study --rates 100mbit,300mbit,1000mbit

## bench: P1-P9 of benchmarks/README.md, each a ratio against a baseline run alongside it;
## one JSON line each, and benchmarks/results/<name>.json. P5 starts the local Slurm cluster (root).
bench: venv
	$(PY) -m benchmarks.bench_loop_overhead
	$(PY) -m benchmarks.bench_fer_scaling
	$(PY) -m benchmarks.bench_fer_transforms
	$(PY) -m benchmarks.bench_pose_data
	bash slurm/local-cluster.sh up
	eval "$$(bash slurm/local-cluster.sh env)" && $(PY) -m benchmarks.bench_sweep_submit
	$(PY) -m benchmarks.bench_cli
	$(PY) -m benchmarks.bench_measurement
	$(PY) -m benchmarks.bench_analysis_load
	$(PY) -m benchmarks.bench_rank_start

## gpu-check: tests/gpu on every visible GPU (dp, NCCL DDP, SyncBN, fp16/bf16, CUDA timers, MFU);
## a few minutes. Skips cleanly (module level) where there is no CUDA.
## On a GPU machine whose own python holds a CUDA torch: `make gpu-check PY=python3` (no venv made).
gpu-check:
	@if [ "$(PY)" = "$(VENV)/bin/python" ]; then $(MAKE) venv; fi
	$(PY) -m pytest tests/gpu -q -rs -m gpu -p no:cacheprovider
