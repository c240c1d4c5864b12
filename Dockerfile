# syntax=docker/dockerfile:1
# SASFormer Studio: one image for the API (with the web UI at /ui) and the fine-tune worker; only the command
# differs (see docker-compose.yml and docs/deployment.md).
#
#   docker build --build-arg VARIANT=cuda -t sasformer-studio:cuda .   # GPU workers (default)
#   docker build --build-arg VARIANT=cpu  -t sasformer-studio:cpu  .   # API-only hosts, CPU workers
#
# VARIANT=cuda installs torch/torchvision from PyPI: Linux wheels that bundle the CUDA runtime, cuDNN and NCCL
#   as nvidia-* wheels (~5-6 GB image). The host needs only the NVIDIA driver and nvidia-container-toolkit.
# VARIANT=cpu installs the same versions from the PyTorch CPU wheel index (torch==2.14.1+cpu, ~1.5 GB image):
#   no CUDA libraries, so it cannot use a GPU even when one is passed in.
#
# Dependencies are installed as in the README (scripts/bootstrap.sh): pip, the pins of pyproject.toml, the
# project itself editable from /app. No secret is baked in: tokens and passwords come from the environment
# at run time. Everything the service writes goes to $SASFORMER_HOME (/data, a volume).

ARG PYTHON_IMAGE=python:3.11-slim-bookworm
FROM ${PYTHON_IMAGE}

ARG VARIANT=cuda
ARG TORCH_CPU_INDEX=https://download.pytorch.org/whl/cpu

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    HF_HUB_OFFLINE=1 \
    HF_HUB_DISABLE_TELEMETRY=1 \
    GRADIO_ANALYTICS_ENABLED=False \
    SASFORMER_HOME=/data \
    SASFORMER_HOST=0.0.0.0 \
    SASFORMER_PORT=8000
LABEL org.opencontainers.image.title="SASFormer Studio" io.sasformer.torch-variant="${VARIANT}"

# libgomp: OpenMP runtime of the torch CPU wheels; tini: PID 1 that reaps children and forwards signals
# (a Celery prefork pool and uvicorn both need SIGTERM delivered for a graceful stop).
RUN apt-get update \
 && apt-get install -y --no-install-recommends libgomp1 tini \
 && rm -rf /var/lib/apt/lists/*

RUN groupadd --system --gid 10001 sasformer \
 && useradd --system --uid 10001 --gid sasformer --create-home --home-dir /home/sasformer sasformer \
 && mkdir -p /data /app \
 && chown sasformer:sasformer /data

WORKDIR /app

# torch first (the large layer; only the variant decides the index), pinned as in pyproject.toml.
RUN case "$VARIANT" in \
      cpu)  pip install --index-url "$TORCH_CPU_INDEX" torch==2.14.1 torchvision==0.29.1 ;; \
      cuda) pip install torch==2.14.1 torchvision==0.29.1 ;; \
      *)    echo "VARIANT must be cpu or cuda, got '$VARIANT'" >&2; exit 1 ;; \
    esac

# The other pinned dependencies, read from pyproject.toml (a layer that changes only with it).
COPY pyproject.toml README.md ./
RUN python -c "import tomllib; print('\n'.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']))" \
      > /tmp/requirements.txt \
 && pip install -r /tmp/requirements.txt \
 && rm /tmp/requirements.txt

# The code, then the project itself (editable, like scripts/bootstrap.sh; no dependency is resolved again).
# /app stays root-owned: the service user can read the code but not change it.
COPY model ./model
COPY core ./core
COPY jobs ./jobs
COPY backend ./backend
COPY worker ./worker
COPY webui ./webui
COPY alembic.ini ./
RUN pip install --no-deps -e . \
 && python -c "import backend.app, worker.celery_app, webui.app"

USER sasformer
VOLUME ["/data"]
EXPOSE 8000

# The API's liveness (/health: no auth, no dependencies). Worker containers override it with
# `celery -A worker.celery_app inspect ping -d celery@$HOSTNAME` (docker-compose.yml) or disable it.
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/health' % os.environ.get('SASFORMER_PORT', '8000'), timeout=4)"]

ENTRYPOINT ["tini", "--"]
# API (+ web UI at /ui). Worker: `celery -A worker.celery_app worker -Q gpu --concurrency 1` (compose sets it).
CMD ["python", "-m", "backend"]
