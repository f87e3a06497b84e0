# `make demo` and `make test` work on a fresh machine: they create .venv and install everything.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: venv demo test test-all model vlm-model clean

$(STAMP): requirements.txt pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	# torch pinned here: the CPU build on disk; an unpinned torch pulls a multi-GB CUDA build
	$(BIN)/pip install --quiet torch==2.13.0 -r requirements.txt
	# commonroad-io (reads the NGSIM human-driving scenarios) pins protobuf==3.20.2 for its protobuf file
	# format, ray needs protobuf>=3.20.3: we read XML only, so it goes in without its pins, beside
	# protobuf 3.20.3 and its other dependencies pinned in requirements.txt
	$(BIN)/pip install --quiet --no-deps commonroad-io==2026.1
	$(BIN)/pip install --quiet --no-deps -e .
	touch $(STAMP)

venv: $(STAMP)

demo: $(STAMP)
	$(BIN)/dualdrive drive --agent expert --scenario p2p --seed 0 --out runs/demo

# the shipped E2E checkpoint from nothing (collect, train, score, copy to dualdrive/agents/e2e/default/);
# <= 45 min on 2 cores; resumable: re-run after an interruption. Sizes: dualdrive/training/pipeline.py
model: $(STAMP)
	$(BIN)/dualdrive model-pipeline --out runs/model

# the shipped driving VLM (System 2) from nothing: expert-labelled frames of 84 training and 28 held-out
# episodes (seeds 0-83 and 4000-4027), 8 balanced epochs on one CPU thread (~15 min), scores on the held-out set,
# copy to dualdrive/vlm/default/. Resumable: re-run after an interruption. Numbers: dualdrive/vlm/MODEL_CARD.md
VLM := OMP_NUM_THREADS=1 $(BIN)/python -m dualdrive.vlm
vlm-model: $(STAMP)
	$(VLM) gen-vlm-data --out runs/vlm/train --episodes 84 --first-seed 0
	$(VLM) gen-vlm-data --out runs/vlm/heldout --episodes 28 --first-seed 4000
	$(VLM) train-vlm --data runs/vlm/train --out runs/vlm/model --epochs 8 --balance 0.5
	$(VLM) eval-vlm --data runs/vlm/heldout --checkpoint runs/vlm/model/model.safetensors --out runs/vlm/eval
	mkdir -p dualdrive/vlm/default
	cp runs/vlm/model/model.safetensors runs/vlm/model/model.json runs/vlm/model/model.vocab.json dualdrive/vlm/default/

test: $(STAMP)
	$(BIN)/pytest -q

test-all: $(STAMP)
	$(BIN)/pytest -q -m ""

clean:
	rm -rf $(VENV) runs
