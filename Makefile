# Fresh-machine entry points: `make demo` and `make test` each create .venv and install
# everything they need (torch from the pinned build that this project is tested with).
PYTHON ?= python3
VENV ?= .venv
TORCH ?= torch==2.14.1 torchvision==0.29.1
BIN := $(VENV)/bin

.PHONY: setup demo test teachers benchmarks clean

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet $(TORCH)
	$(BIN)/pip install --quiet -e ".[test]"
	touch $@

setup: $(BIN)/.installed

demo: setup
	$(BIN)/subdistill demo

test: setup
	$(BIN)/python -m pytest -q

# The two benchmark teachers (weights/, about 1 h on 2 CPU cores, resumable with --resume).
teachers: setup
	$(BIN)/subdistill train-teacher configs/teacher-cifar10.yaml
	cp runs/teacher-cifar10-resnet18/model_best.safetensors weights/cifar10-resnet18.safetensors
	$(BIN)/subdistill train-teacher configs/teacher-fashion-mnist.yaml
	cp runs/teacher-fashion-mnist/model_best.safetensors weights/fashion-mnist-resnet10.safetensors

# The real-data tables of docs/benchmarks.md from the committed teachers; rerun to resume.
benchmarks: setup
	$(BIN)/subdistill bench configs/bench-cifar10.yaml
	$(BIN)/subdistill bench configs/bench-fashion-mnist.yaml

clean:
	rm -rf $(VENV) runs .pytest_cache .hypothesis
