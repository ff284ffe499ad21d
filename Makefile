# The project's interface: `make dev` runs the whole system locally, `make test` tests it.
# Both work on a fresh machine with Python 3.11+ and make: they set up their own environment.
SHELL := /bin/bash
PYTHON ?= python3
UV_VERSION := 0.13.9
TOOLS := .tools
UV := $(TOOLS)/bin/uv
RUN := $(UV) run --no-sync
PYTEST_ARGS ?=
# make test runs on both cores: each test file whole on one worker (its module-scoped stack,
# browser or worker pool starts once), the files shared out between two workers; the files
# that must not meet each other's load run in turn on one (tests/conftest.py).
# PYTEST_WORKERS=0 runs in one process.
PYTEST_WORKERS ?= 2

.PHONY: help dev token ops test test-fast lint lint-js template-check build sam-local-image sam-local-test bench bench-network preflight deploy replay-hangups destroy clean requirements

help:
	@echo "make dev             run the whole system locally (API, identity provider, AWS, OpenAI emulator, web page)"
	@echo "                     NETWORK=same-region|other-continent|mobile puts a network's delays on every hop"
	@echo "make token USER=ann  print an access token from the running dev stack (SCOPES='openid ...')"
	@echo "make ops ARGS='...'  the operator's command line: usage, a user's state, block, override, end a call"
	@echo "make test            run every test suite"
	@echo "make test-fast       the unit and template suites only (under a minute)"
	@echo "make lint            ruff and mypy (strict) over all the Python, and lint-js"
	@echo "make lint-js         type-check the page's JavaScript from its JSDoc (tsc --checkJs)"
	@echo "make template-check  cfn-lint, sam validate --lint, checkov, sam build (python3.13)"
	@echo "make build           sam build only (the function's package, with bytecode)"
	@echo "make requirements    regenerate functions/requirements/*.txt (pinned, hashed) from uv.lock"
	@echo "make sam-local-test  sam local invoke/start-api in a Lambda container against the local stack (Docker, root)"
	@echo "make bench           each function's package and cold start, warm overhead, round trips -> docs/performance.md"
	@echo "make bench-network   the browser's connect time under each network profile -> docs/performance.md"
	@echo "make preflight       check the template and the account for a deploy, deploy nothing (STACK_NAME=...)"
	@echo "make deploy          preflight, sam build, sam deploy (guided the first time), publish web/ (STACK_NAME=...)"
	@echo "make replay-hangups  run the stack's failed scheduled hangups again (STACK_NAME=..., DRY_RUN=1 only lists)"
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

# What `sam build` installs for each function (functions/Makefile): exactly the locked versions
# of its own dependency group, each with its hashes, so the deployed functions run the code
# `make test` ran (tests/template/test_requirements.py).
ROOMS := api watcher
requirements: | $(UV)
	$(foreach room,$(ROOMS),$(UV) export --frozen --no-default-groups --only-group $(room) \
		--no-emit-project --format requirements-txt --quiet \
		--output-file functions/requirements/$(room).txt &&) true

dev: $(DEV_ENV)
	$(RUN) python -m devstack $(if $(FLOW),--flow $(FLOW)) $(if $(NETWORK),--network $(NETWORK))

token: $(DEV_ENV)
	@$(RUN) python -m devstack.token $(or $(USER_NAME),$(USER),developer) $(if $(SCOPES),--scopes "$(SCOPES)")

# The operator's command line (ops/): ARGS="--stack NAME usage --top 10", "--local user <hash>".
ops: $(DEV_ENV)
	@$(RUN) python -m ops $(ARGS)

# node_modules: the SDK browser test bundles OpenAI's SDKs (tests/e2e/sdk/).
test: .venv/.synced node_modules/.installed
	$(RUN) pytest -n $(PYTEST_WORKERS) --dist loadgroup --no-loadscope-reorder $(PYTEST_ARGS)

test-fast: .venv/.synced
	$(RUN) pytest tests/unit tests/template $(PYTEST_ARGS)

lint: .venv/.synced lint-js
	$(RUN) ruff check functions devstack deploy bench ops tests
	$(RUN) ruff format --check functions devstack deploy bench ops tests
	$(RUN) mypy

# The page has no build step: TypeScript (pinned in package-lock.json) only reads web/js. The
# other packages there are the SDK browser test's: OpenAI's SDKs and esbuild to bundle them.
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

# The browser's connect time under each network profile alone (about 12 minutes): its section
# of docs/performance.md rewritten in place. RUNS=... COLD_RUNS=... PROFILES=mobile,...
bench-network: .venv/.synced
	$(RUN) python -m bench.network --update docs/performance.md $(if $(RUNS),--runs $(RUNS)) \
		$(if $(COLD_RUNS),--cold-runs $(COLD_RUNS)) $(if $(PROFILES),--profiles $(PROFILES))

# The preflight (deploy/preflight.py) reads the template after SAM's transform and the account
# (AWS_PROFILE, AWS_REGION as for any AWS command); a blocker stops `make deploy` before the build.
preflight: .venv/.synced
	PATH="$(abspath $(TOOLS))/bin:$$PATH" bash deploy/deploy.sh --preflight-only

deploy: .venv/.synced
	PATH="$(abspath $(TOOLS))/bin:$$PATH" bash deploy/deploy.sh

# The hangup failures queue, replayed on the stack's token function (docs/deploy.md); AWS_REGION
# or AWS_PROFILE as for any AWS command.
replay-hangups: .venv/.synced
	$(RUN) python -m deploy.replay_hangups --stack-name "$(or $(STACK_NAME),realtime-token-vendor)" $(if $(DRY_RUN),--dry-run)

destroy: .venv/.synced
	PATH="$(abspath $(TOOLS))/bin:$$PATH" bash deploy/destroy.sh

clean:
	rm -rf .venv $(TOOLS) node_modules .aws-sam .pytest_cache .mypy_cache .ruff_cache artifacts
