# phi3v: `make demo` and `make test` set everything up from nothing, then run.
# GPU machines: install your CUDA build of torch into .venv first, then run with TORCH=torch.

PYTHON ?= python3
VENV ?= .venv
TORCH ?= torch==2.13.0
BIN := $(VENV)/bin
STAMP := $(VENV)/.phi3v-installed
DEMO_DIR ?= demo_out

export HF_HUB_OFFLINE := 1
export HF_DATASETS_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export TOKENIZERS_PARALLELISM := false

.PHONY: help setup demo test lint format bench browser clean

help: ## Show this help.
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-8s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --disable-pip-version-check -q "$(TORCH)" -e ".[all]"
	touch $(STAMP)

setup: $(STAMP) ## Create .venv and install phi3v with every extra (idempotent).

browser: ## Install headless chromium for the report's browser tests (skipped if impossible).
	@command -v chromium >/dev/null 2>&1 || { \
		(apt-get update -qq && apt-get install -y -qq chromium >/dev/null) \
		|| echo "chromium could not be installed: browser tests will be skipped"; }

lint: $(STAMP) ## ruff lint and format check.
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: $(STAMP) ## Apply ruff fixes and formatting.
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

test: $(STAMP) browser lint ## Set up, then run lint and the whole test suite.
	$(BIN)/pytest -q

demo: $(STAMP) ## Set up, then run convert -> validate -> report -> train -> eval on synthetic data (CPU).
	rm -rf $(DEMO_DIR) && mkdir -p $(DEMO_DIR)
	$(BIN)/python -m phi3v_data.sample_data $(DEMO_DIR)
	$(BIN)/phi3v validate $(DEMO_DIR)/sample --max-length 8192 --num-crops 4
	@echo "== validate the copy with deliberate defects: problems (and exit code 1) are expected"
	-$(BIN)/phi3v validate $(DEMO_DIR)/sample_defects --max-length 8192 --num-crops 4 --examples 1 --output $(DEMO_DIR)/sample_defects_report.json
	@echo "== image sources: tiny trees with deliberate quirks (skips are expected and listed)"
	$(BIN)/python -m converters.samples.docvqa $(DEMO_DIR)/raw/docvqa --layout current
	$(BIN)/phi3v convert docvqa $(DEMO_DIR)/raw/docvqa -o $(DEMO_DIR)/docvqa --workers 2
	$(BIN)/python -m converters.samples.hateful_memes $(DEMO_DIR)/raw/hateful_memes --layout original
	$(BIN)/phi3v convert hateful-memes $(DEMO_DIR)/raw/hateful_memes -o $(DEMO_DIR)/hateful_memes --workers 2
	$(BIN)/python -m converters.samples.nlvr2 $(DEMO_DIR)/raw/nlvr2 --layout parquet
	$(BIN)/phi3v convert nlvr2 $(DEMO_DIR)/raw/nlvr2 -o $(DEMO_DIR)/nlvr2 --workers 2
	@echo "== ucf101: a small AVI tree, 3 classes (a truncated, a corrupt, an empty and a missing clip are expected skips)"
	$(BIN)/python -m converters.samples.ucf101 $(DEMO_DIR)/raw/ucf101 --layout original --clips-per-group 4
	$(BIN)/phi3v convert ucf101 $(DEMO_DIR)/raw/ucf101 -o $(DEMO_DIR)/ucf101 --workers 2 --val-fraction 0.2 --num-frames 2
	@echo "== train: a tiny random model learns to name the clip's class from its 2 frames (~2 CPU minutes; watch the loss fall and the val accuracy rise)"
	$(BIN)/phi3v init-model $(DEMO_DIR)/model --size tiny
	$(BIN)/phi3v train -d $(DEMO_DIR)/ucf101 -m $(DEMO_DIR)/model -o $(DEMO_DIR)/run --mode full --num-crops 1 --batch-size 8 --per-device-batch-size 4 --max-steps 150 --lr 3e-3 --save-steps 50 --eval-steps 50 --eval-max-samples 12 --report-to none
	@echo "== eval on the val split: exact-match accuracy beside the majority-class baseline, predictions vs gold"
	$(BIN)/phi3v eval -m $(DEMO_DIR)/run -d $(DEMO_DIR)/ucf101 --split val
	@echo "== predict: the class of a clip the model has not trained on, from its two frames"
	$(BIN)/phi3v predict -m $(DEMO_DIR)/run --image $(DEMO_DIR)/ucf101/images/val/Archery/v_Archery_g25_c01.0.jpg --image $(DEMO_DIR)/ucf101/images/val/Archery/v_Archery_g25_c01.1.jpg --prompt "Classify the video into one of the following classes: ApplyEyeMakeup, Archery, HandstandPushups."
	@echo "== report: what the model will see; open the page below in a browser"
	$(BIN)/phi3v report $(DEMO_DIR)/ucf101 $(DEMO_DIR)/docvqa $(DEMO_DIR)/hateful_memes $(DEMO_DIR)/nlvr2 --out $(DEMO_DIR)/report.html --max-length 8192

bench: $(STAMP) ## Run the benchmarks (prints throughput and peak-memory tables).
	@for script in benchmarks/bench_*.py; do echo "== $$script"; $(BIN)/python $$script || exit 1; done

clean: ## Remove the demo output and caches (keeps .venv).
	rm -rf $(DEMO_DIR) .pytest_cache .ruff_cache
