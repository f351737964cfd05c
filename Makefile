# Fresh-machine entry points: `make demo` and `make test` each create .venv and install
# everything they need (torch from the pinned build that this project is tested with).
PYTHON ?= python3
VENV ?= .venv
TORCH ?= torch==2.14.1 torchvision==0.29.1
BIN := $(VENV)/bin

.PHONY: setup demo lint test teachers benchmarks bench-cifar10 bench-fashion-mnist plateau-cifar10 clean

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet $(TORCH)
	$(BIN)/pip install --quiet -e ".[test]"
	touch $@

setup: $(BIN)/.installed

demo: setup
	$(BIN)/subdistill demo

# the lint and type gate (ruff with a complexity limit, mypy on src/), then the suite
lint: setup
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/mypy

test: lint
	$(BIN)/python -m pytest -q

# The two benchmark teachers (weights/; CIFAR-10 about 1 h 45 min, Fashion-MNIST 30 min on 2
# CPU cores; resumable with --resume).
teachers: setup
	$(BIN)/subdistill train-teacher configs/teacher-cifar10-wide.yaml
	cp runs/teacher-cifar10-wide/model_best.safetensors weights/cifar10-fastcnn.safetensors
	$(BIN)/subdistill train-teacher configs/teacher-fashion-mnist.yaml
	cp runs/teacher-fashion-mnist/model_best.safetensors weights/fashion-mnist-resnet10.safetensors

# The real-data tables of docs/benchmarks.md from the committed teachers; rerun to resume.
# `make -j2 benchmarks` runs the two datasets side by side, one thread each (on 2 cores,
# faster than one after the other on two threads: these models are too small to share them).
BENCH_THREADS ?= 1
benchmarks: bench-cifar10 bench-fashion-mnist

bench-cifar10: setup
	OMP_NUM_THREADS=$(BENCH_THREADS) $(BIN)/subdistill bench configs/bench-cifar10.yaml

bench-fashion-mnist: setup
	OMP_NUM_THREADS=$(BENCH_THREADS) $(BIN)/subdistill bench configs/bench-fashion-mnist.yaml
	OMP_NUM_THREADS=$(BENCH_THREADS) $(BIN)/subdistill bench configs/bench-fashion-mnist-mobile.yaml

# The plateau check of docs/benchmarks.md: the best rho-0.8 students of the CIFAR-10 grid (and
# the student trained alone) trained 2-3x longer, seed 0, at the λ the grid chose; one ledger.
PLATEAU := OMP_NUM_THREADS=$(BENCH_THREADS) $(BIN)/subdistill bench configs/bench-cifar10.yaml \
	--set 'grid.rhos=[0.8]' --set 'grid.seeds=[0]' --set 'agreement.attributions=[]' \
	--set out_dir=runs/plateau-cifar10 --set ledger=benchmarks/results/ledger-cifar10-plateau.csv
plateau-cifar10: setup
	$(PLATEAU) --set 'grid.subtasks=[pets]' --set train.epochs=120 --set train.evaluations=24 \
	  --set 'grid.methods=[subdistill, student-only]' --set 'grid.lambdas=[10.0]'
	$(PLATEAU) --set 'grid.subtasks=[vehicles]' --set train.epochs=80 --set train.evaluations=16 \
	  --set 'grid.methods=[subdistill, student-only]' --set 'grid.lambdas=[0.1]'
	$(PLATEAU) --set 'grid.subtasks=[vehicles]' --set train.epochs=80 --set train.evaluations=16 \
	  --set 'grid.methods=[vid]' --set 'grid.lambdas=[1.0]'

clean:
	rm -rf $(VENV) runs .pytest_cache .hypothesis
