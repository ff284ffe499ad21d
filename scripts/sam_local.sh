#!/usr/bin/env bash
# `sam local` on this machine: the function in a Lambda runtime container, against the local
# stack. No container registry is reachable, so the runtime image is built here, once.
#
#   scripts/sam_local.sh image   start dockerd if needed, build the image once, print its name
#   scripts/sam_local.sh test    the above, then the tests in tests/samlocal, which run the
#                                `sam local` lines of docs/local.md (its `sam build` first)
#
# The image is for this machine's architecture, and `sam build` / `sam local` take the
# template's Architecture parameter to match (x86_64 here; production stays arm64). Running the
# arm64 build under qemu-user instead was tried and measured: importing the function alone took
# 14-33 s under emulation on these (busy) 2 cores, past its 10 s timeout, so that run would test a
# different timeout and meaningless timings. Native keeps the timeout, the timings, the code,
# the template and the pinned dependency versions; only the wheels' machine code differs.
#
# Every packet stays on loopback: dockerd runs without a bridge or iptables rules, and SAM CLI
# runs the containers with host networking (--docker-network host).
#
# When Docker cannot start, `test` still runs the tests, which then fail in CI (CI=true) and
# skip elsewhere, naming the reason (SAM_LOCAL_UNAVAILABLE).
set -euo pipefail
cd "$(dirname "$0")/.."
[ -d .tools/bin ] && export PATH="$PWD/.tools/bin:$PATH"  # uv, uvx (make .venv/.synced)

case "$(uname -m)" in
  x86_64) LAMBDA_ARCH=x86_64 DEBIAN_ARCH=amd64 ;;
  aarch64) LAMBDA_ARCH=arm64 DEBIAN_ARCH=arm64 ;;
  *) echo "sam-local: Lambda runs x86_64 or arm64, not $(uname -m)" >&2; exit 1 ;;
esac
IMAGE="token-vendor-lambda-python3.13:$LAMBDA_ARCH"
DOCKERD_LOG="${TMPDIR:-/tmp}/token-vendor-dockerd.log"
# The image's recipe: its hash names the build, so only a change to these rebuilds it.
RECIPE_FILES=(scripts/lambda-runtime/build_image.sh scripts/lambda-runtime/bootstrap)
source scripts/lambda-runtime/build_image.sh

log() { echo "sam-local: $*" >&2; }
die() { echo "sam-local: $*" >&2; exit 1; }

ensure_dockerd() {
  command -v docker >/dev/null || die "docker is not installed (apt-get install docker.io)"
  docker info >/dev/null 2>&1 && return
  command -v dockerd >/dev/null || die "dockerd is not installed (apt-get install docker.io)"
  [ "$(id -u)" = 0 ] || die "dockerd is not running, and only root can start it"
  log "starting dockerd (no bridge, no iptables; log: $DOCKERD_LOG)"
  setsid dockerd --bridge=none --iptables=false --ip6tables=false >"$DOCKERD_LOG" 2>&1 </dev/null &
  for _ in $(seq 60); do
    docker info >/dev/null 2>&1 && return
    sleep 0.5
  done
  die "dockerd did not start within 30 s: $(tail -n 3 "$DOCKERD_LOG" | tr '\n' ' ')"
}

recipe_hash() {
  { cat "${RECIPE_FILES[@]}"; uname -m; } | sha256sum | cut -c1-16
}

ensure_image() {
  local recipe current
  recipe=$(recipe_hash)
  current=$(docker image inspect "$IMAGE" --format '{{index .Config.Labels "token-vendor.recipe"}}' 2>/dev/null || true)
  [ "$current" = "$recipe" ] && return
  local old
  old=$(docker image inspect "$IMAGE" --format '{{.Id}}' 2>/dev/null || true)
  build_image "$recipe"
  # SAM CLI adds its emulator in "<repo>:rapid-<arch>" and reuses that while it exists: drop
  # it with the old image, so the next `sam local` builds it on the new one.
  docker image rm "${IMAGE%%:*}:rapid-$LAMBDA_ARCH" >/dev/null 2>&1 || true
  [ -n "$old" ] && docker image rm "$old" >/dev/null 2>&1 || true
}

prepare() {
  ensure_dockerd
  ensure_image
}

case "${1:-test}" in
  image)
    prepare
    echo "$IMAGE"
    ;;
  test)
    shift || true
    echo "== Docker and the runtime image"
    errors=$(mktemp)
    # Its own process, so that `set -e` holds inside it; its last line is the reason.
    if ! bash "$0" image 2>&1 >/dev/null | tee "$errors" >&2; then
      reason=$(tail -n 1 "$errors")
      export SAM_LOCAL_UNAVAILABLE="${reason:-Docker or the runtime image could not be prepared}"
    fi
    rm -f "$errors"
    echo "== sam local tests"
    uv run --no-sync pytest tests/samlocal -m samlocal -p no:cacheprovider "$@"
    ;;
  *)
    die "usage: $0 [image|test] [pytest args]"
    ;;
esac
