#!/usr/bin/env bash
# `make deploy`: build, deploy (guided the first time), publish the page, say what is next.
set -euo pipefail
cd "$(dirname "$0")/.."
STACK="${STACK_NAME:-realtime-token-vendor}"
run() { .tools/bin/uv run --no-sync "$@"; }

bash scripts/template_checks.sh --build-only
SAM=( "$(pyenv which uvx 2>/dev/null || command -v uvx)" --quiet --from aws-sam-cli==1.170.0 sam )
if [ -f samconfig.toml ] && grep -q "parameter_overrides" samconfig.toml; then
  "${SAM[@]}" deploy --stack-name "$STACK"
else
  "${SAM[@]}" deploy --guided --stack-name "$STACK"   # asks for the parameters, saves samconfig.toml
fi

run python -m deploy.publish_web --stack-name "$STACK"
