#!/bin/sh
# Entry point of the imgproc image: refuse placeholder secrets outside development, give a
# prefork worker an emptied metrics directory, then run the command (exec: it gets the signals).
set -eu

# .env.example ships these placeholders; a deployment must replace them. APP_ENV=development
# (the default of `docker compose up` on a laptop) only warns.
placeholder_found=""
for name in POSTGRES_PASSWORD FLOWER_PASSWORD GRAFANA_ADMIN_PASSWORD; do
    # Only the variables this container was given (compose hands all three to `migrate`,
    # the one-shot every other service waits for).
    if value=$(printenv "$name"); then
        case "$value" in
            "" | postgres | admin | changeme* | change-me*)
                placeholder_found="$placeholder_found $name" ;;
        esac
    fi
done
if [ -n "$placeholder_found" ]; then
    if [ "${APP_ENV:-development}" = "development" ]; then
        echo "warning: placeholder secret in${placeholder_found} (fine with APP_ENV=development only)" >&2
    else
        echo "refusing to start: APP_ENV=${APP_ENV} and${placeholder_found} still hold the placeholder from .env.example; set real secrets in .env" >&2
        exit 78  # EX_CONFIG
    fi
fi

# prometheus_client's multiprocess files of an earlier run would add their old counts to ours.
if [ -n "${PROMETHEUS_MULTIPROC_DIR:-}" ]; then
    mkdir -p "$PROMETHEUS_MULTIPROC_DIR"
    rm -f "$PROMETHEUS_MULTIPROC_DIR"/*.db
fi

exec "$@"
