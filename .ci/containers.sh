# Sourced by .ci/run: a Docker daemon and the MiniStack engine image, so that the container tests
# (tests/containers) run in CI instead of skipping. CI machines reach no container registry, so
# the base image is built offline: a debootstrap rootfs of Debian bookworm, imported with
# `docker import`. pip reaches the package index only over the host's network with the host's CA
# bundle, so the bundle goes into the base and the image is built with `--network host`.
#
# Cached on the machine between runs: the rootfs tarball (in $SANDBOX_CI_CACHE) and both images,
# tagged by a hash of what they are built from.
#
# Exports: SANDBOX_TEST_ENGINE, SANDBOX_TEST_ENGINE_IMAGE, SANDBOX_REQUIRE_CONTAINERS=1 (a skipped
# container test fails the run), TESTCONTAINERS_RYUK_DISABLED=true (the fixtures remove their own
# containers; Ryuk's image cannot be pulled here).

shopt -s inherit_errexit

SANDBOX_CI_CACHE="${SANDBOX_CI_CACHE:-/var/cache/saga-sandbox}"
BASE_SUITE=bookworm
BASE_PACKAGES=python3,python3-venv,python3-pip,ca-certificates
BASE_RECIPE="debootstrap --variant=minbase --include=$BASE_PACKAGES $BASE_SUITE (recipe 1)"
HOST_CA_BUNDLE=/etc/ssl/certs/ca-certificates.crt
_ci_dockerd_pid=""

ci_now() { date +%s.%N; }
ci_since() { awk -v start="$1" -v now="$(ci_now)" 'BEGIN { printf "%.1f", now - start }'; }

ci_install_packages() {
  local missing=()
  for package in docker.io debootstrap docker-compose; do
    dpkg -s "$package" >/dev/null 2>&1 || missing+=("$package")
  done
  if ((${#missing[@]})); then
    echo "== apt: installing ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
  fi
}

ci_start_docker() {
  if docker info >/dev/null 2>&1; then
    echo "== docker: daemon already running"
    return
  fi
  mkdir -p "$SANDBOX_CI_CACHE"
  echo "== docker: starting dockerd (log: $SANDBOX_CI_CACHE/dockerd.log)"
  dockerd >"$SANDBOX_CI_CACHE/dockerd.log" 2>&1 &
  _ci_dockerd_pid=$!
  trap ci_stop_docker EXIT
  for _ in $(seq 1 120); do
    docker info >/dev/null 2>&1 && return
    kill -0 "$_ci_dockerd_pid" 2>/dev/null || break
    sleep 0.5
  done
  echo "dockerd did not start; its log ends with:" >&2
  tail -20 "$SANDBOX_CI_CACHE/dockerd.log" >&2
  return 1
}

ci_stop_docker() {
  # Stop only the daemon this script started (and the containers it still runs).
  if [[ -n "$_ci_dockerd_pid" ]] && kill -0 "$_ci_dockerd_pid" 2>/dev/null; then
    local leftover
    leftover=$(docker ps -q 2>/dev/null || true)
    [[ -z "$leftover" ]] || docker rm -f $leftover >/dev/null 2>&1 || true
    kill "$_ci_dockerd_pid"
    wait "$_ci_dockerd_pid" 2>/dev/null || true
  fi
}

ci_base_image() {
  # Prints the tag of the offline base image, building (or importing) it when missing.
  local key tag tarball rootfs
  key=$(printf '%s\n%s\n' "$BASE_RECIPE" "$(sha256sum "$HOST_CA_BUNDLE")" | sha256sum | cut -c1-12)
  tag="saga-sandbox-base:$BASE_SUITE-$key"
  tarball="$SANDBOX_CI_CACHE/rootfs-$BASE_SUITE-$key.tar"
  if docker image inspect "$tag" >/dev/null 2>&1; then
    echo "== base image $tag: cached" >&2
  else
    if [[ ! -s "$tarball" ]]; then
      echo "== base image: debootstrap $BASE_SUITE (minbase + $BASE_PACKAGES)" >&2
      rootfs=$(mktemp -d "$SANDBOX_CI_CACHE/rootfs.XXXXXX")
      debootstrap --variant=minbase --include="$BASE_PACKAGES" "$BASE_SUITE" "$rootfs" \
        >"$SANDBOX_CI_CACHE/debootstrap.log" 2>&1 || {
        tail -20 "$SANDBOX_CI_CACHE/debootstrap.log" >&2
        rm -rf "$rootfs"
        return 1
      }
      # The host's bundle: pip in the image build reaches the index through the host's network.
      cp "$HOST_CA_BUNDLE" "$rootfs/etc/ssl/certs/ca-certificates.crt"
      rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/*
      tar -C "$rootfs" -cf "$tarball.tmp" . && mv "$tarball.tmp" "$tarball"
      rm -rf "$rootfs"
    fi
    echo "== base image $tag: docker import" >&2
    docker import "$tarball" "$tag" >/dev/null
  fi
  echo "$tag"
}

ci_engine_image() {
  # Prints the MiniStack engine image tag (content hash of its inputs), building it when missing.
  local base="$1" tag
  tag=$(env -u SANDBOX_MINISTACK_IMAGE .venv/bin/python -m sandbox.images)
  if docker image inspect "$tag" >/dev/null 2>&1; then
    echo "== engine image $tag: cached" >&2
  else
    echo "== engine image $tag: docker build on $base" >&2
    DOCKER_BUILDKIT=0 docker build --quiet --network host \
      --build-arg BASE_IMAGE="$base" \
      --file docker/ministack/Dockerfile --tag "$tag" . >&2
  fi
  echo "$tag"
}

ci_prepare_containers() {
  local started base engine
  started=$(ci_now)
  mkdir -p "$SANDBOX_CI_CACHE"
  ci_install_packages
  ci_start_docker
  local images_started
  images_started=$(ci_now)
  base=$(ci_base_image)
  engine=$(ci_engine_image "$base")
  CI_IMAGES_SECONDS=$(ci_since "$images_started")
  CI_DOCKER_SETUP_SECONDS=$(ci_since "$started")
  export SANDBOX_TEST_ENGINE=ministack-docker
  export SANDBOX_TEST_ENGINE_IMAGE="$engine"
  export SANDBOX_REQUIRE_CONTAINERS=1
  export TESTCONTAINERS_RYUK_DISABLED=true
  echo "== containers ready in ${CI_DOCKER_SETUP_SECONDS}s (images ${CI_IMAGES_SECONDS}s): $SANDBOX_TEST_ENGINE_IMAGE"
}
