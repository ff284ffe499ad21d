#!/usr/bin/env bash
# Template checks for CI and `make template-check`: cfn-lint, `sam validate --lint`, checkov
# (its skipped checks in scripts/checkov.yaml), a check for dependency cycles after SAM's
# transform, and a
# `sam build` with Python 3.13 (the Lambda runtime) whose artifact must hold only the
# function's runtime dependencies. `--build-only` just builds (for `make build`).
set -euo pipefail
cd "$(dirname "$0")/.."

SAM_VERSION=$(sed -n 's/^SAM_VERSION="\(.*\)"$/\1/p' scripts/sam)  # pinned in one place
CHECKOV_VERSION="3.3.30"
BUILD_DIR="${BUILD_DIR:-.aws-sam/build}"
export AWS_REGION="${AWS_REGION:-us-east-1}" AWS_DEFAULT_REGION="${AWS_DEFAULT_REGION:-us-east-1}"
export SAM_CLI_TELEMETRY=0
# Resolved now: a pyenv shim for uvx would stop working once PYENV_VERSION points at 3.13.
UVX=$(pyenv which uvx 2>/dev/null || command -v uvx)
sam() { UVX="$UVX" bash scripts/sam "$@"; }  # the pinned SAM CLI

source "$(dirname "$0")/python313.sh"

PY313=$(python313) || { echo "template checks: Python 3.13 is needed for 'sam build' (the Lambda runtime); install it (pyenv install 3.13)" >&2; exit 1; }
export PATH="$(dirname "$PY313"):$PATH"
export PYENV_VERSION="$("$PY313" -c 'import platform; print(platform.python_version())')"

if [ "${1:-}" != "--build-only" ]; then
  echo "== cfn-lint"
  uv run --no-sync cfn-lint template.yaml
  echo "== sam validate --lint"
  sam validate --lint --template template.yaml
  echo "== checkov ${CHECKOV_VERSION} (skips: scripts/checkov.yaml, each with its reason)"
  "$UVX" --quiet --from "checkov==${CHECKOV_VERSION}" checkov -f template.yaml --config-file scripts/checkov.yaml
  echo "== dependency cycles (after SAM's transform)"
  "$UVX" --quiet --from "aws-sam-cli==${SAM_VERSION}" python scripts/template_cycles.py template.yaml
fi

echo "== sam build (python3.13, $(basename "$PY313"))"
sam build --template template.yaml --build-dir "$BUILD_DIR" --cache-dir .aws-sam/cache >/dev/null
artifact="$BUILD_DIR/TokenFunction"
# Lambda's /var/task is read-only: ship bytecode that zip timestamps cannot invalidate.
"$PY313" -m compileall -q --invalidation-mode unchecked-hash "$artifact"

echo "== package contents"
forbidden=$(cd "$artifact" && ls -d boto3 botocore s3transfer moto pytest _pytest aiortc playwright openai schemathesis hypothesis 2>/dev/null || true)
if [ -n "$forbidden" ]; then
  echo "the package holds what it must not: $forbidden" >&2
  exit 1
fi
for needed in token_vendor/app.py token_vendor/watcher.py token_vendor/profiles.json token_vendor/prices.json token_vendor/openapi.json aws_lambda_powertools httpx jwt cryptography websockets; do
  [ -e "$artifact/$needed" ] || { echo "the package lacks $needed" >&2; exit 1; }
done
# Exactly the pinned set: the same names and versions as functions/requirements.txt (which a
# test keeps equal to uv.lock, the versions `make test` runs with).
built=$(cd "$artifact" && ls -d *.dist-info | sed -E 's/\.dist-info$//; s/-([^-]+)$/==\1/' | tr 'A-Z_' 'a-z-' | sort)
pinned=$(grep -E '^[A-Za-z0-9_.-]+==' functions/requirements.txt | sed -E 's/[ ;].*//' | tr 'A-Z_' 'a-z-' | sort)
if [ "$built" != "$pinned" ]; then
  echo "the package's distributions differ from functions/requirements.txt:" >&2
  diff <(echo "$pinned") <(echo "$built") >&2 || true
  exit 1
fi
echo "TokenFunction package: $(du -sh "$artifact" | cut -f1) unzipped"
