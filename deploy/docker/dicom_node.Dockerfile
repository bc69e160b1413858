# syntax=docker/dockerfile:1.7
# dicom_node: IRMI's DICOM node (C-STORE/C-ECHO SCP on 11112, health and metrics on 8003). It
# keeps nothing: each instance is stored by the gateway before the sender hears success. The
# `gateway` extra carries pynetdicom (no ONNX Runtime, no models). Build from the repo root:
#   docker build -f deploy/docker/dicom_node.Dockerfile -t irmi/dicom-node:0.1.0 .
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
COPY dicom_node/ /app/dicom_node/
RUN python -m compileall -q /app

FROM ${PYTHON_IMAGE}
RUN groupadd --system --gid 10001 irmi \
 && useradd --system --uid 10001 --gid irmi --home-dir /nonexistent --no-create-home \
      --shell /usr/sbin/nologin irmi
COPY --from=build /opt/venv /opt/venv
COPY --from=build /app /app
WORKDIR /app
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONPATH=/app \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    IRMI_DICOM_HOST=0.0.0.0 \
    IRMI_DICOM_PORT=8003 \
    IRMI_DICOM_DICOM_PORT=11112
USER 10001:10001
EXPOSE 8003
EXPOSE 11112
HEALTHCHECK --interval=15s --timeout=5s --start-period=30s --retries=3 \
  CMD ["python", "-c", "import urllib.request as u; u.urlopen('http://127.0.0.1:8003/v2/health/ready', timeout=4)"]
CMD ["python", "-m", "dicom_node"]
