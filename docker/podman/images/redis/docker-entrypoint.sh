#!/usr/bin/env bash
set -euo pipefail
if [ "${1:0:1}" = "-" ] || [ "${1%.conf}" != "$1" ]; then set -- redis-server "$@"; fi
if [ "$1" = "redis-server" ]; then
  # The official image listens on every interface with protected mode off (the container's
  # network is the boundary); Debian's binary defaults to the same when given no config file.
  if [ "$(id -u)" = "0" ]; then
    chown -R redis:redis /data 2>/dev/null || true
    exec setpriv --reuid=redis --regid=redis --init-groups "$@" --protected-mode no
  fi
  exec "$@" --protected-mode no
fi
exec "$@"
