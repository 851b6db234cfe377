# One named command per task. Each target installs what it needs into the
# project's virtual environment (.venv), so it works on a fresh clone.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
PYTEST_ARGS ?=

.PHONY: setup run test lint typecheck bench soak images functions-zip tools clean

$(STAMP): pyproject.toml scripts/install-system-deps.sh
	bash scripts/install-system-deps.sh
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	touch $(STAMP)

## setup: install system packages and the virtual environment
setup: $(STAMP)

## run: render the example animation to spinning.mp4 on the local stack
run: $(STAMP)
	cd examples/spinning && ../../$(BIN)/povstorm render spinning.ini -o ../../spinning.mp4

## test: lint, static checks, unit, integration and end-to-end tests
test: lint .venv-tools/bin/checkov
	$(BIN)/pytest $(PYTEST_ARGS)

## lint: ruff, ruff format and mypy over every Python file of the repository
lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

## bench: farm overhead, orchestration latency, cold start, ledger throughput
bench: $(STAMP)
	$(BIN)/python -m bench

## soak: 20 jobs under a chaos loop that kills the stack's parts, SOAK_RUNS times in a row (~2-3 min a run)
SOAK_RUNS ?= 3
SOAK_ARGS ?=
soak: $(STAMP)
	for i in $$(seq $(SOAK_RUNS)); do $(BIN)/python tests/fixtures/soak.py $(SOAK_ARGS) || exit 1; done

## functions-zip: stage build/functions (main.py, requirements.txt, povstorm/) for terraform to zip
functions-zip:
	$(PYTHON) deploy/stage_functions.py build/functions

## images: build and push the render and stitch images with Cloud Build (PROJECT=<id> [REGION= NAMESPACE= TAG=])
REGION    ?= us-central1
NAMESPACE ?= povstorm
BUCKET    ?= $(PROJECT)-$(NAMESPACE)
TAG       ?= $(shell git rev-parse --short HEAD 2>/dev/null || echo latest)
images:
	@test -n "$(PROJECT)" || { echo "usage: make images PROJECT=<gcp project id> [REGION=$(REGION) NAMESPACE=$(NAMESPACE) TAG=$(TAG)]" >&2; exit 2; }
	gcloud builds submit . --project=$(PROJECT) --region=$(REGION) \
	  --config=deploy/cloudbuild.yaml --ignore-file=deploy/gcloudignore \
	  --substitutions=_REGISTRY=$(REGION)-docker.pkg.dev/$(PROJECT)/$(NAMESPACE),_TAG=$(TAG) \
	  --service-account=projects/$(PROJECT)/serviceAccounts/$(NAMESPACE)-builder@$(PROJECT).iam.gserviceaccount.com \
	  --gcs-source-staging-dir=gs://$(BUCKET)-sources/cloudbuild
	@echo "deploy with: terraform -chdir=terraform/examples/basic apply -var image_tag=$(TAG)"

## tools: checkov in its own venv (its pins conflict with the project's)
.venv-tools/bin/checkov:
	$(PYTHON) -m venv .venv-tools
	.venv-tools/bin/pip install -q checkov
tools: .venv-tools/bin/checkov

clean:
	rm -rf $(VENV) build .pytest_cache .ruff_cache .mypy_cache
