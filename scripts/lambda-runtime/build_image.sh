# Sourced by scripts/sam_local.sh: build_image RECIPE_HASH builds $IMAGE, a Lambda-compatible
# python3.13 runtime for $DEBIAN_ARCH, from Debian's packages and PyPI (no container registry).
SUITE="trixie"  # Debian's first release with python3.13, the Lambda runtime's version
MIRROR="http://deb.debian.org/debian"
RUNTIME_PACKAGES=(awslambdaric==4.2.2 boto3==1.44.5 botocore==1.44.5)  # boto3: what Lambda ships

build_image() {
  local recipe="$1" work
  command -v debootstrap >/dev/null || die "building the runtime image needs debootstrap (apt-get install debootstrap)"
  work=$(mktemp -d "${TMPDIR:-/tmp}/lambda-image.XXXXXX")
  # shellcheck disable=SC2064  # expand now: $work is local
  trap "rm -rf '$work'" RETURN
  log "building $IMAGE (Debian $SUITE $DEBIAN_ARCH + python3.13 + ${RUNTIME_PACKAGES[*]}); once per recipe"
  debootstrap --variant=minbase --arch="$DEBIAN_ARCH" --include=python3.13 "$SUITE" "$work/rootfs" "$MIRROR" \
    >"$work/debootstrap.log" 2>&1 || die "debootstrap failed: $(tail -n 5 "$work/debootstrap.log")"
  rm -rf "$work"/rootfs/var/cache/apt/* "$work"/rootfs/var/lib/apt/lists/* "$work"/rootfs/usr/share/{doc,man,info}
  uv pip install --quiet --target "$work/rootfs/var/runtime" --python-version 3.13 \
    --python-platform "$(uname -m)-manylinux2014" --only-binary :all: "${RUNTIME_PACKAGES[@]}"
  install -m 0755 scripts/lambda-runtime/bootstrap "$work/rootfs/var/runtime/bootstrap"
  # Bytecode now, as Lambda's image has it: each container starts from the image afresh.
  chroot "$work/rootfs" python3.13 -m compileall -q --invalidation-mode unchecked-hash /var/runtime >/dev/null
  mkdir -p "$work/rootfs/var/task" "$work/rootfs/opt"

  # `docker import` cannot set an image's architecture on this Docker (20.10), and SAM CLI
  # builds its emulator layer for the function's: write the archive that `docker load` reads.
  tar -C "$work/rootfs" --numeric-owner -cf "$work/layer.tar" .
  local diff_id config_id
  diff_id=$(sha256sum "$work/layer.tar" | cut -d' ' -f1)
  mkdir "$work/archive" && mv "$work/layer.tar" "$work/archive/layer.tar"
  cat >"$work/archive/config.json" <<EOF
{"architecture": "$DEBIAN_ARCH", "os": "linux",
 "config": {"Env": ["PATH=/usr/local/bin:/usr/bin:/bin", "LANG=C.UTF-8", "TZ=:UTC",
                    "LAMBDA_TASK_ROOT=/var/task", "LAMBDA_RUNTIME_DIR=/var/runtime"],
            "WorkingDir": "/var/task",
            "Labels": {"token-vendor.recipe": "$recipe"}},
 "rootfs": {"type": "layers", "diff_ids": ["sha256:$diff_id"]}}
EOF
  config_id=$(sha256sum "$work/archive/config.json" | cut -d' ' -f1)
  mv "$work/archive/config.json" "$work/archive/$config_id.json"
  printf '[{"Config": "%s.json", "RepoTags": ["%s"], "Layers": ["layer.tar"]}]\n' \
    "$config_id" "$IMAGE" >"$work/archive/manifest.json"
  tar -C "$work/archive" -cf - . | docker load >/dev/null
}
