# syntax=docker/dockerfile:1
#
# pipelined container image.
#
#   docker build -t pipelined:dev .
#   docker run --rm --read-only --tmpfs /tmp -p 9400:9400 --env-file pipelined.env pipelined:dev
#
# Stage 1 builds wheels for the pinned runtime set (requirements.lock) plus the project itself and
# installs them into a virtual environment at /opt/pipelined. Stage 2 copies only that environment
# onto the slim image: no compilers, no pip cache, no build context. Both stages use the same
# Python minor version and the same /usr/local prefix, so the venv's interpreter link stays valid.
# For reproducible builds pin both images by digest (FROM python:3.11-slim-bookworm@sha256:...).
# deploy/lint.sh installs the same wheel set into a throwaway venv and runs `pipelined --help`,
# because CI has no Docker engine.

ARG PYTHON_VERSION=3.11

FROM python:${PYTHON_VERSION}-bookworm AS builder

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1

WORKDIR /build

# Dependencies first so that code changes do not invalidate the dependency layer.
COPY requirements.lock ./
RUN pip wheel --no-cache-dir --wheel-dir /wheels -r requirements.lock

COPY pyproject.toml README.md ./
COPY src ./src
# The venv is created without pip/setuptools (nothing at run time needs them); the builder's pip
# installs into it with --python. --no-index: only the wheels built above can go in.
RUN pip wheel --no-cache-dir --no-deps --wheel-dir /wheels . \
 && python -m venv --without-pip /opt/pipelined \
 && pip --python /opt/pipelined/bin/python install --no-cache-dir --no-index \
        --find-links /wheels -r requirements.lock \
 && pip --python /opt/pipelined/bin/python install --no-cache-dir --no-index --no-deps \
        /wheels/pipelined-*.whl \
 && /opt/pipelined/bin/pipelined --help > /dev/null


FROM python:${PYTHON_VERSION}-slim-bookworm AS runtime

# tini (Debian's package) runs as PID 1: it forwards SIGTERM to the daemon only (no -g, so the
# process-pool workers keep running while the daemon drains) and reaps orphans. Tesseract, with
# its English and German data, reads the scanned pages of PDFs for rules with pdf.ocr; another
# language is one more tesseract-ocr-LANG package here. Bump the pinned versions when Debian
# publishes new ones (apt-cache policy tini tesseract-ocr tesseract-ocr-eng tesseract-ocr-deu).
RUN apt-get update \
 && apt-get install -y --no-install-recommends tini=0.19.0-1+b3 \
        tesseract-ocr=5.3.0-2 tesseract-ocr-eng=1:4.1.0-2 tesseract-ocr-deu=1:4.1.0-2 \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --system --gid 10001 pipelined \
 && useradd --system --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent \
        --shell /usr/sbin/nologin pipelined

COPY --from=builder /opt/pipelined /opt/pipelined

# TINI_SUBREAPER: keeps tini quiet and reaping when an outer init (ECS initProcessEnabled,
# docker run --init) is PID 1 instead of it.
ENV PATH=/opt/pipelined/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    TINI_SUBREAPER=1 \
    PIPELINED_LOG_FORMAT=json \
    PIPELINED_METRICS_PORT=9400

# Numeric user: Kubernetes runAsNonRoot can verify it without reading /etc/passwd.
USER 10001:10001
WORKDIR /opt/pipelined

EXPOSE 9400

# Liveness of the event loop. No curl in the slim image, so Python's urllib does the request;
# urlopen raises (exit 1) on connection errors and on any non-2xx answer.
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/healthz' % os.environ.get('PIPELINED_METRICS_PORT', '9400'), timeout=4)"]

STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/bin/tini", "--", "pipelined"]
CMD ["run"]
