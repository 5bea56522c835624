# The capstone's one image: API, worker, beat, the migrate one-shot and Flower all run it.
#
#   docker build -f docker/imgproc.Dockerfile -t imgproc .      (from the repository root)
#   docker run --rm imgproc celery -A imgproc.worker worker     (any role: see docker-compose.yml)
#
# Two stages: the builder installs the locked dependencies with uv into /app/.venv; the runtime
# stage copies that venv and the code, and runs as a non-root user. Nothing secret is copied or
# set here: passwords come from the environment at run time (.env, see .env.example).

# A pinned slim base (patch release and Debian release), the same in both stages, so the venv's
# interpreter path is valid in the runtime stage.
ARG PYTHON_IMAGE=python:3.11.13-slim-bookworm

FROM ${PYTHON_IMAGE} AS builder

# uv from PyPI, pinned: the same version that wrote uv.lock's format.
RUN python -m pip install --no-cache-dir --disable-pip-version-check uv==0.13.9

ENV UV_COMPILE_BYTECODE=1 \
    UV_LINK_MODE=copy \
    UV_PYTHON_DOWNLOADS=never \
    UV_PROJECT_ENVIRONMENT=/app/.venv

WORKDIR /app
# Dependencies first, from the lock file alone: this layer is rebuilt only when the lock changes,
# not on every code edit. The cache mount keeps downloaded wheels between builds.
COPY pyproject.toml uv.lock ./
RUN --mount=type=cache,target=/root/.cache/uv \
    uv sync --frozen --no-dev --no-install-project --python "$(command -v python)"


FROM ${PYTHON_IMAGE} AS runtime

LABEL org.opencontainers.image.title="imgproc" \
      org.opencontainers.image.description="Capstone image processor: API, Celery worker, beat" \
      org.opencontainers.image.source="https://github.com/highload-course/highload-course"

# An unprivileged user that owns only the data directory and the metrics scratch directory.
RUN groupadd --gid 10001 app \
    && useradd --uid 10001 --gid app --home-dir /app --no-create-home --shell /usr/sbin/nologin app \
    && mkdir -p /data /tmp/imgproc-metrics \
    && chown app:app /data /tmp/imgproc-metrics

ENV PATH=/app/.venv/bin:$PATH \
    PYTHONPATH=/app/project:/app \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    DATA_DIR=/data \
    LOG_JSON=true \
    WORKER_METRICS_HOST=0.0.0.0 \
    WORKER_METRICS_PORT=9808 \
    HEALTHCHECK_URL=http://127.0.0.1:8000/healthz

WORKDIR /app
COPY --from=builder /app/.venv /app/.venv
# Only what the services run: the course's settings package, the capstone's code and migrations.
# (shared/ arrives without shared/grading and shared/testing: .dockerignore keeps them out.)
COPY shared/ /app/shared/
COPY project/alembic.ini /app/project/alembic.ini
COPY project/migrations/ /app/project/migrations/
COPY project/imgproc/ /app/project/imgproc/
COPY docker/entrypoint.sh docker/healthcheck.py /app/docker/

USER 10001:10001
VOLUME ["/data"]
EXPOSE 8000 9808

# The API answers /healthz; a worker's container sets HEALTHCHECK_URL to its metrics endpoint.
HEALTHCHECK --interval=10s --timeout=3s --start-period=20s --retries=3 \
    CMD ["python", "/app/docker/healthcheck.py"]

ENTRYPOINT ["/app/docker/entrypoint.sh"]
# --proxy-headers: behind nginx, the URLs in answers carry the host and scheme the client used.
CMD ["uvicorn", "--factory", "imgproc.main:create_app", "--host", "0.0.0.0", "--port", "8000", \
     "--proxy-headers", "--forwarded-allow-ips", "*", "--no-access-log"]
