# The README's two commands: `make demo` and `make test`. Both install what they need into
# .venv first (torch==2.13.0 comes from the local wheel that pip's find-links points at).
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
DATA_DIR ?= ../shared/data
DEMO_DIR ?= build/demo

.PHONY: install demo test test-portable test-slow test-gpu fuzz lint bench experiments clean

# The suite as another CPU runs it: PyTorch's own kernels in their AVX2 build instead of AVX-512,
# MKL's matrix products in its AVX2 code (MKL's path on AMD processors), one thread. A tolerance
# tuned to one machine's bits fails here on the developers' own machine. oneDNN (the LSTM and
# bf16 primitives) is left to detect the CPU: capping it below what the CPU's flags announce
# makes a bf16 run that the flags allow fail in oneDNN, which no real machine does.
PORTABLE_ENV := ATEN_CPU_CAPABILITY=avx2 MKL_ENABLE_INSTRUCTIONS=AVX2 RESCORER_TEST_THREADS=1
# The tests that compare two float paths (kernels, training runs, losses, scorers): `make test` runs
# them a second time under PORTABLE_ENV.
FLOAT_PATH_TESTS := tests/test_distill.py tests/test_train.py tests/test_adapt.py tests/test_divergence.py \
	tests/test_losses.py tests/test_nce_kld.py tests/test_model.py tests/test_scoring.py tests/test_precision.py \
	tests/test_batcher.py tests/test_sgd.py tests/test_corpus_order.py tests/test_onnx_export.py

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -e '.[dev]'
	touch $@

install: $(VENV)/.installed

lint: install
	$(PY) -m ruff check rescorer training server tests bench experiments

test: install lint
	$(PY) -m pytest
	@echo "== the float-path tests again, as a CPU without AVX-512 runs them (make test-portable: all of them) =="
	$(PORTABLE_ENV) $(PY) -m pytest -p no:cacheprovider $(FLOAT_PATH_TESTS)

test-portable: install
	$(PORTABLE_ENV) $(PY) -m pytest

test-slow: install  # the page test renders in Debian's chromium: installed here when missing (root, apt)
	command -v chromium >/dev/null || (apt-get update -qq && apt-get install -y -qq chromium) || echo "no chromium: its test skips"
	$(PY) -m pytest -m slow

fuzz: install  # the fuzz tier, longer: every reader and the HTTP API with many more examples
	FUZZ_EXAMPLES=2000 $(PY) -m pytest tests/test_reader_fuzz.py tests/test_server_fuzz.py

test-gpu: install  # on a machine with CUDA (the tests skip without one)
	$(PY) -m pytest -m gpu

# The main job on an embedded default: a generated toy corpus, an NCE LM trained on it,
# evaluated (both perplexities, self-normalization) and re-centered on dev; weights tuned on
# synthetic dev N-best lists; then the service started, the synthetic test lists rescored
# over HTTP with those weights (WER before and after), and the service stopped. Then the
# general model adapted to a one-topic sub-domain with NCE+KLD, perplexity before and after.
# Last, two teachers (a softmax and a mixture of softmaxes) distilled into a small
# self-normalized nce-tr student: parameters, perplexity and scoring speed side by side.
demo: install
	$(PY) -m training.cli demo-corpus $(DEMO_DIR)/data
	rm -rf $(DEMO_DIR)/run
	$(PY) -m training.cli train --train $(DEMO_DIR)/data/train.txt --dev $(DEMO_DIR)/data/dev.txt \
		--out $(DEMO_DIR)/run --loss nce --embedding-dim 64 --hidden-dim 128 --num-layers 1 \
		--batch-size 32 --noise-samples 64 --max-epochs 6
	$(PY) -m training.cli evaluate $(DEMO_DIR)/run/artifact $(DEMO_DIR)/data/dev.txt --recenter
	$(PY) -m training.cli evaluate $(DEMO_DIR)/run/artifact $(DEMO_DIR)/data/test.txt --json $(DEMO_DIR)/test_eval.json
	$(PY) -m rescorer.cli info $(DEMO_DIR)/run/artifact
	$(PY) -m rescorer.cli eval $(DEMO_DIR)/run/artifact --dev $(DEMO_DIR)/data/nbest/dev.jsonl \
		--test $(DEMO_DIR)/data/nbest/test.jsonl --out $(DEMO_DIR)/report --no-progress
	@echo "== the error-analysis page of that evaluation: $(DEMO_DIR)/report/report.html (open it in a browser) =="
	$(PY) -m server.demo --model-dir $(DEMO_DIR)/run/artifact --nbest $(DEMO_DIR)/data/nbest/test.jsonl \
		--weights $(DEMO_DIR)/report/report.json
	@echo "== adaptation: the general model adapted to one topic with NCE+KLD (gamma 0.5) =="
	rm -rf $(DEMO_DIR)/adapted
	$(PY) -m training.cli adapt --init $(DEMO_DIR)/run/artifact --train $(DEMO_DIR)/data/domain/train.txt \
		--dev $(DEMO_DIR)/data/domain/dev.txt --out $(DEMO_DIR)/adapted --gamma 0.5 --max-epochs 6 \
		--batch-size 16 --noise-samples 64 --no-progress
	@echo "in-domain test perplexity, before (general) and after (adapted):"
	$(PY) -m training.cli evaluate $(DEMO_DIR)/run/artifact $(DEMO_DIR)/data/domain/test.txt
	$(PY) -m training.cli evaluate $(DEMO_DIR)/adapted/artifact $(DEMO_DIR)/data/domain/test.txt
	@echo "== distillation: a softmax and a mixture-of-softmaxes teacher into a small self-normalized nce-tr student =="
	rm -rf $(DEMO_DIR)/teacher-softmax $(DEMO_DIR)/teacher-mos $(DEMO_DIR)/student
	$(PY) -m training.cli train --train $(DEMO_DIR)/data/train.txt --dev $(DEMO_DIR)/data/dev.txt \
		--out $(DEMO_DIR)/teacher-softmax --loss ce --embedding-dim 96 --hidden-dim 96 --num-layers 1 \
		--batch-size 32 --max-epochs 4 --no-progress
	$(PY) -m training.cli train --train $(DEMO_DIR)/data/train.txt --dev $(DEMO_DIR)/data/dev.txt \
		--out $(DEMO_DIR)/teacher-mos --loss ce --output-kind mos --experts 2 --embedding-dim 96 --hidden-dim 96 \
		--num-layers 1 --batch-size 32 --max-epochs 4 --seed 2 --no-progress
	$(PY) -m training.cli distill --teacher $(DEMO_DIR)/teacher-softmax/artifact --teacher $(DEMO_DIR)/teacher-mos/artifact \
		--loss nce-tr --train $(DEMO_DIR)/data/train.txt --dev $(DEMO_DIR)/data/dev.txt --out $(DEMO_DIR)/student \
		--embedding-dim 48 --hidden-dim 48 --num-layers 1 --batch-size 32 --noise-samples 64 --max-epochs 8 --no-progress
	$(PY) -m training.cli compare $(DEMO_DIR)/teacher-softmax/artifact $(DEMO_DIR)/teacher-mos/artifact \
		$(DEMO_DIR)/student/artifact --text $(DEMO_DIR)/data/test.txt

# Speed (bench/) and quality (experiments/) figures quoted in docs/RESULTS.md. Each takes
# minutes to an hour on 2 cores; run them on an otherwise idle machine.
bench: install
	$(PY) bench/train_throughput.py --out docs/bench/train_throughput.json
	$(PY) bench/score_throughput.py --data-dir $(DATA_DIR) --utterances 30 --single-hyps 120 --out docs/bench/score_throughput.json
	$(PY) bench/server_load.py --data-dir $(DATA_DIR) --model-dir runs/librispeech/lm-recentered --out docs/bench/server_load.json

experiments: install
	$(PY) experiments/ptb_ce_vs_nce.py --data-dir $(DATA_DIR) --out runs/ptb
	$(PY) experiments/librispeech_baseline.py --data-dir $(DATA_DIR) --out runs/librispeech/baseline.json
	$(PY) experiments/librispeech_wikitext.py --data-dir $(DATA_DIR) --out runs/librispeech

clean:
	rm -rf build $(VENV) .pytest_cache .ruff_cache
