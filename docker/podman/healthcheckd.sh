#!/usr/bin/env bash
# Run the containers' healthchecks, which podman leaves to systemd timers: without systemd (as
# here) a container with a HEALTHCHECK stays "starting" for ever, and `docker compose up --wait`
# or `depends_on: condition: service_healthy` never go on. setup.sh starts one of these per
# machine; it stops by itself when the podman API socket it was started for is gone.
#
# Every 2 s: the checks of containers still "starting" (what compose waits for); every 20 s
# also those already "healthy" or "unhealthy" (so that a container that breaks is noticed).
# A check's own interval is not honoured: running it more often only costs a little CPU.
set -u
socket="${1:?usage: healthcheckd.sh SOCKET}"
tick=0
while [ -S "$socket" ]; do
  filters=(--filter health=starting)
  if [ $((tick % 10)) -eq 0 ]; then
    filters+=(--filter health=healthy --filter health=unhealthy)
  fi
  for id in $(podman ps -q "${filters[@]}" 2>/dev/null); do
    timeout 60 podman healthcheck run "$id" >/dev/null 2>&1 &
  done
  wait
  tick=$((tick + 1))
  sleep 2
done
