# syntax=docker/dockerfile:1.7
# recsvc image: a builder stage installs the project into a venv (CPU torch by
# default), a demo stage bakes the demo artifact set, and a slim runtime stage
# runs as a non-root user with a healthcheck.
#
#   docker build -t recsvc .                              # CPU, demo artifacts baked in
#   docker build --build-arg EXTRAS=gpu -t recsvc:gpu .   # onnxruntime-gpu (needs a CUDA base for the GPU path)
#   docker compose up                                    # service + qdrant + redis

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS builder
ARG EXTRAS=cpu
ARG TORCH_VERSION=2.13.0
ARG TORCH_INDEX=https://download.pytorch.org/whl/cpu
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
# torch first and pinned, from the CPU index: an unpinned torch pulls a multi-GB CUDA build.
RUN pip install "torch==${TORCH_VERSION}" --index-url "${TORCH_INDEX}"
WORKDIR /src
COPY pyproject.toml README.md ./
COPY service ./service
COPY training ./training
RUN pip install ".[${EXTRAS}]"

FROM builder AS demo
# Build the demo artifact set offline inside the image (no Qdrant push: the
# service indexes the catalog into Qdrant on first start).
ENV HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
RUN python -m training.data.demo --out /build/demo-data \
 && recsvc-train build --data /build/demo-data --out /build/artifacts --name demo --no-push

FROM ${PYTHON_IMAGE} AS runtime
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    HF_HUB_OFFLINE=1 \
    TRANSFORMERS_OFFLINE=1 \
    RECSVC_ARTIFACTS_DIR=/app/artifacts \
    RECSVC_DATA_DIR=/app/var \
    RECSVC_WORKERS__COUNT=0
# RECSVC_WORKERS__COUNT=0: one process per core with the embedded store (writer + readers), one with a
# Qdrant server unless --workers says otherwise (docs/OPERATIONS.md, "Several processes on one node").
RUN groupadd --system --gid 10001 recsvc \
 && useradd --system --uid 10001 --gid recsvc --home-dir /app --shell /usr/sbin/nologin recsvc
WORKDIR /app
COPY --from=builder /opt/venv /opt/venv
COPY --from=demo --chown=recsvc:recsvc /build/artifacts /app/artifacts
RUN mkdir -p /app/var && chown recsvc:recsvc /app/var
USER recsvc
EXPOSE 8000
HEALTHCHECK --interval=15s --timeout=3s --start-period=60s --retries=3 \
  CMD python -c "import urllib.request,sys; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=2).status == 200 else 1)"
CMD ["recsvc-serve", "--host", "0.0.0.0", "--port", "8000"]
