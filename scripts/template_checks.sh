#!/usr/bin/env bash
# Template checks for CI and `make template-check`: cfn-lint, `sam validate --lint`, checkov
# (its skipped checks in scripts/checkov.yaml), a check for dependency cycles after SAM's
# transform, the rules CloudFormation applies and moto does not (deploy/template_rules.py:
# the capabilities samconfig.toml must acknowledge, the stack names the named resources
# allow), and a
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
  echo "== what a deploy must acknowledge and the stack names it allows (after SAM's transform)"
  uv run --no-sync python -m deploy.template_rules
fi

echo "== sam build (python3.13, $(basename "$PY313"))"
# functions/Makefile builds each function; it learns the architecture from LAMBDA_ARCHITECTURE
# (the template's default, arm64, unless the caller says otherwise).
export LAMBDA_ARCHITECTURE="${LAMBDA_ARCHITECTURE:-arm64}"
sam build --template template.yaml --build-dir "$BUILD_DIR" --cache-dir .aws-sam/cache >/dev/null

# Each function's package: its own room and the shared core, its own pinned distributions
# (exactly functions/requirements/<room>.txt, which a test keeps equal to uv.lock), wheels for
# the architecture asked for, and nothing of the other function or of the tools (nor pip's
# console scripts: functions/Makefile leaves them out).
check_package() {  # function, room, the other room, files and modules it must hold
  local function="$1" room="$2" other="$3"; shift 3
  local artifact="$BUILD_DIR/$function"
  echo "== $function package"
  local forbidden
  forbidden=$(cd "$artifact" && ls -d "token_vendor/$other" boto3 botocore s3transfer moto pytest _pytest aiortc playwright openai schemathesis hypothesis bin 2>/dev/null || true)
  if [ -n "$forbidden" ]; then
    echo "$function holds what it must not: $forbidden" >&2
    exit 1
  fi
  for needed in token_vendor/core/ending.py token_vendor/core/prices.json "token_vendor/$room/app.py" aws_lambda_powertools httpx "$@"; do
    [ -e "$artifact/$needed" ] || { echo "$function lacks $needed" >&2; exit 1; }
  done
  local built pinned
  built=$(cd "$artifact" && ls -d *.dist-info | sed -E 's/\.dist-info$//; s/-([^-]+)$/==\1/' | tr 'A-Z_' 'a-z-' | sort)
  pinned=$(grep -E '^[A-Za-z0-9_.-]+==' "functions/requirements/$room.txt" | sed -E 's/[ ;].*//' | tr 'A-Z_' 'a-z-' | sort)
  if [ "$built" != "$pinned" ]; then
    echo "$function's distributions differ from functions/requirements/$room.txt:" >&2
    diff <(echo "$pinned") <(echo "$built") >&2 || true
    exit 1
  fi
  local want; want=$([ "$LAMBDA_ARCHITECTURE" = x86_64 ] && echo x86_64 || echo aarch64)
  find "$artifact" -name '*.so' -print0 | while IFS= read -r -d '' so; do
    "$PY313" - "$so" "$want" <<'PY' || exit 1
import sys
machine = {62: "x86_64", 183: "aarch64"}.get(int.from_bytes(open(sys.argv[1], "rb").read(20)[18:20], "little"))
if machine != sys.argv[2]:
    sys.exit(f"{sys.argv[1]} is built for {machine}, not {sys.argv[2]}")
PY
  done
  echo "$function package: $(du -sh "$artifact" | cut -f1) unzipped"
}
check_package TokenFunction api watcher token_vendor/api/profiles.json token_vendor/api/openapi.json jwt cryptography
check_package CallWatcherFunction watcher api websockets
