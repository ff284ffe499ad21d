# The project's interface: `make dev` runs the whole system locally, `make test` tests it.
# Both work on a fresh machine with Python 3.11+ and make: they set up their own environment.
SHELL := /bin/bash
PYTHON ?= python3
UV_VERSION := 0.13.9
TOOLS := .tools
UV := $(TOOLS)/bin/uv
RUN := $(UV) run --no-sync
PYTEST_ARGS ?=

.PHONY: help dev token test lint lint-js template-check build sam-local-image sam-local-test bench deploy destroy clean requirements

help:
	@echo "make dev             run the whole system locally (API, identity provider, AWS, OpenAI emulator, web page)"
	@echo "make token USER=ann  print an access token from the running dev stack"
	@echo "make test            run every test suite"
	@echo "make lint            ruff and mypy (strict) over all the Python, and lint-js"
	@echo "make lint-js         type-check the page's JavaScript from its JSDoc (tsc --checkJs)"
	@echo "make template-check  cfn-lint, sam validate --lint, checkov, sam build (python3.13)"
	@echo "make build           sam build only (the function's package, with bytecode)"
	@echo "make requirements    regenerate functions/requirements.txt (pinned, hashed) from uv.lock"
	@echo "make sam-local-test  sam local invoke/start-api in a Lambda container against the local stack (Docker, root)"
	@echo "make bench           measure cold start, warm overhead, round trips -> docs/performance.md"
	@echo "make deploy          sam build + sam deploy (guided the first time) + publish web/ (STACK_NAME=...)"
	@echo "make destroy         empty the page's bucket and delete the stack"
	@echo "make clean           remove the environments, build output and caches"
	@echo "(dev, token and bench install only the local stack's dependencies; the rest, all)"

$(UV):
	$(PYTHON) -m venv $(TOOLS)
	$(TOOLS)/bin/pip install --quiet --disable-pip-version-check "uv==$(UV_VERSION)"

# Two environments in one .venv: the full one (every dependency group, stamp .venv/.synced) and
# the local stack's (the dev group only, stamp .venv/.synced-dev). `uv sync` makes .venv exactly
# the one asked for, so each sync removes the other's stamp: switching re-syncs (from uv's cache).
# `make dev` uses the full environment when it is already there, rather than shrinking it.
# --compile-bytecode: PYTHONDONTWRITEBYTECODE is set on these machines, and timings would lie.
SYNC := $(UV) sync --frozen --compile-bytecode --quiet
DEV_ENV := $(if $(wildcard .venv/.synced),.venv/.synced,.venv/.synced-dev)

.venv/.synced: pyproject.toml uv.lock | $(UV)
	$(SYNC) --all-groups
	@rm -f .venv/.synced-dev
	@touch $@

.venv/.synced-dev: pyproject.toml uv.lock | $(UV)
	$(SYNC) --no-default-groups --group dev
	@rm -f .venv/.synced
	@touch $@

# What `sam build` installs: exactly the locked runtime versions, each with its hashes, so the
# deployed function runs the code `make test` ran (tests/template/test_requirements.py).
requirements: | $(UV)
	$(UV) export --frozen --no-default-groups --no-emit-project --format requirements-txt \
		--quiet --output-file functions/requirements.txt

dev: $(DEV_ENV)
	$(RUN) python -m devstack

token: $(DEV_ENV)
	@$(RUN) python -m devstack.token $(or $(USER_NAME),$(USER),developer)

test: .venv/.synced
	$(RUN) pytest $(PYTEST_ARGS)

lint: .venv/.synced lint-js
	$(RUN) ruff check functions devstack deploy bench tests
	$(RUN) ruff format --check functions devstack deploy bench tests
	$(RUN) mypy

# The page has no build step: TypeScript (pinned in package-lock.json) only reads web/js.
node_modules/.installed: package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	@touch $@

lint-js: node_modules/.installed
	node_modules/.bin/tsc --project jsconfig.json

template-check: .venv/.synced
	PATH="$(abspath $(TOOLS))/bin:$$PATH" bash scripts/template_checks.sh

build: .venv/.synced
	PATH="$(abspath $(TOOLS))/bin:$$PATH" bash scripts/template_checks.sh --build-only

# The Lambda python3.13 runtime image for `sam local` (built once, cached): prints its name.
sam-local-image: | $(UV)
	@bash scripts/sam_local.sh image

# Apart from `make test`: it starts dockerd (as root) and runs containers. CI runs both.
sam-local-test: .venv/.synced
	bash scripts/sam_local.sh test $(PYTEST_ARGS)

bench: $(DEV_ENV)
	PATH="$(abspath $(TOOLS))/bin:$$PATH" $(RUN) python -m bench

deploy: .venv/.synced
	PATH="$(abspath $(TOOLS))/bin:$$PATH" bash deploy/deploy.sh

destroy: .venv/.synced
	PATH="$(abspath $(TOOLS))/bin:$$PATH" bash deploy/destroy.sh

clean:
	rm -rf .venv $(TOOLS) node_modules .aws-sam .pytest_cache .mypy_cache .ruff_cache artifacts
