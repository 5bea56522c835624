#!/usr/bin/env bash
set -euo pipefail
if [ "$1" = "rabbitmq-server" ]; then
  conf=/etc/rabbitmq/rabbitmq.conf
  if [ ! -e "$conf" ]; then
    {
      echo "loopback_users.guest = false"
      echo "listeners.tcp.default = 5672"
      echo "management.tcp.port = 15672"
      [ -z "${RABBITMQ_DEFAULT_USER:-}" ] || echo "default_user = $RABBITMQ_DEFAULT_USER"
      [ -z "${RABBITMQ_DEFAULT_PASS:-}" ] || echo "default_pass = $RABBITMQ_DEFAULT_PASS"
      [ -z "${RABBITMQ_DEFAULT_VHOST:-}" ] || echo "default_vhost = $RABBITMQ_DEFAULT_VHOST"
    } >"$conf"
  fi
  if [ "$(id -u)" = "0" ]; then
    chown -R rabbitmq:rabbitmq /var/lib/rabbitmq 2>/dev/null || true
    exec setpriv --reuid=rabbitmq --regid=rabbitmq --init-groups "$@"
  fi
fi
exec "$@"
