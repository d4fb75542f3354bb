# The cloud worker's image: CPython 3.11, signalguard with its `cloud` extra at the versions pinned in
# uv.lock (supabase-py and what it brings: httpx, websockets), running `signalguard cloud`.
# Configuration comes from the environment (see `signalguard cloud --help`); nothing secret is baked in.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    UV_PROJECT_ENVIRONMENT=/opt/signalguard \
    UV_COMPILE_BYTECODE=1 \
    UV_LINK_MODE=copy \
    UV_PYTHON_DOWNLOADS=never \
    PATH=/opt/signalguard/bin:$PATH

WORKDIR /build
COPY pyproject.toml uv.lock README.md ./
COPY src ./src
# The locked environment, without the dev group and with the project installed as a package (not
# editable), so the sources can go; uv leaves with them.
RUN pip install uv \
    && uv sync --frozen --no-dev --extra cloud --no-editable \
    && pip uninstall -y uv \
    && rm -rf /build \
    && useradd --system --no-create-home --uid 10001 signalguard

WORKDIR /
USER signalguard
# GET /health for the platform's check (fly.toml [checks]): on every address of the machine, since the
# check does not come through its loopback. SIGNALGUARD_HEALTH_PORT=off serves none.
ENV SIGNALGUARD_HEALTH_PORT=8080 \
    SIGNALGUARD_HEALTH_HOST=0.0.0.0
EXPOSE 8080
# SIGTERM (or SIGINT): heartbeat 'stopping', flush (at most 10 s), release the lease, heartbeat
# 'stopped', exit 0; at most 22 s in all.
STOPSIGNAL SIGTERM
CMD ["signalguard", "cloud"]
