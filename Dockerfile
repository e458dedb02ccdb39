# syntax=docker/dockerfile:1
# Conductor-E: one image for the bot, the API, the coordination CronJob and the migrations.
# Build: docker build -t conductor-e .      Run: docker run --rm conductor-e --help

# --- build: install the package and its dependencies into a virtualenv ----------------------
FROM python:3.11.13-slim-bookworm AS build

ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PYTHONDONTWRITEBYTECODE=1

RUN python -m venv /opt/venv
ENV PATH="/opt/venv/bin:${PATH}"

WORKDIR /src
# Metadata first, then the code: the dependency layer is rebuilt only when pyproject changes.
COPY pyproject.toml README.md ./
COPY bot ./bot
COPY cogs ./cogs
COPY store ./store
# Every dependency ships a manylinux wheel, so no compiler is needed; pip builds our own
# package in an isolated environment that is thrown away.
RUN pip install --no-cache-dir .

# --- runtime: the virtualenv and nothing else ---------------------------------------------
FROM python:3.11.13-slim-bookworm AS runtime

LABEL org.opencontainers.image.title="conductor-e" \
      org.opencontainers.image.description="Coordinator of a fleet of AI coding agents" \
      org.opencontainers.image.licenses="MIT"

# A fixed uid/gid (10001) that the Helm chart's securityContext names too.
RUN groupadd --system --gid 10001 conductor \
    && useradd --system --uid 10001 --gid conductor --no-create-home \
       --home-dir /nonexistent --shell /usr/sbin/nologin conductor

COPY --from=build /opt/venv /opt/venv

ENV PATH="/opt/venv/bin:${PATH}" \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1

USER 10001:10001
WORKDIR /tmp
EXPOSE 8080

ENTRYPOINT ["conductor-e"]
CMD ["run"]
