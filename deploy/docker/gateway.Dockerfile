# syntax=docker/dockerfile:1.7
# gateway: the only public service (API, web UI, SSE relay). Only the `gateway` extra: no ONNX
# Runtime, no models. Build from the repository root:
#   docker build -f deploy/docker/gateway.Dockerfile -t irmi/gateway:0.1.0 .
# Operators: pin the base image by digest (python:3.11.14-slim-bookworm@sha256:...) in production.
ARG PYTHON_IMAGE=python:3.11.14-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
ENV UV_PROJECT_ENVIRONMENT=/opt/venv \
    UV_PYTHON_DOWNLOADS=never \
    UV_COMPILE_BYTECODE=1 \
    UV_LINK_MODE=copy \
    PIP_DISABLE_PIP_VERSION_CHECK=1
RUN pip install --no-cache-dir uv==0.13.8
WORKDIR /src
COPY pyproject.toml uv.lock ./
RUN uv sync --frozen --no-dev --no-install-project --extra gateway --python /usr/local/bin/python3
COPY shared/ /app/shared/
COPY gateway/ /app/gateway/
RUN python -m compileall -q /app

FROM ${PYTHON_IMAGE}
# DejaVu Sans: the PDF study reports print any patient's name as entered (gateway/report.py).
RUN apt-get update \
 && apt-get install -y --no-install-recommends fonts-dejavu-core=2.37-6 \
 && rm -rf /var/lib/apt/lists/*
RUN groupadd --system --gid 10001 irmi \
 && useradd --system --uid 10001 --gid irmi --home-dir /nonexistent --no-create-home \
      --shell /usr/sbin/nologin irmi \
 && mkdir -p /app/var /var/lib/irmi/images \
 && chown irmi:irmi /app/var /var/lib/irmi/images
COPY --from=build /opt/venv /opt/venv
COPY --from=build /app /app
WORKDIR /app
# /app/var: the SQLite file of a stand-alone `docker run` (PostgreSQL in compose/Kubernetes).
# /var/lib/irmi/images: the local-disk image store (a volume; S3 on Kubernetes).
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONPATH=/app \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    IRMI_GATEWAY_HOST=0.0.0.0 \
    IRMI_GATEWAY_PORT=8000 \
    IRMI_GATEWAY_STORE_DIR=/var/lib/irmi/images
USER 10001:10001
EXPOSE 8000
VOLUME ["/var/lib/irmi/images"]
HEALTHCHECK --interval=15s --timeout=5s --start-period=60s --retries=3 \
  CMD ["python", "-c", "import urllib.request as u; u.urlopen('http://127.0.0.1:8000/v2/health/ready', timeout=4)"]
CMD ["python", "-m", "gateway"]
