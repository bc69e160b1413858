# syntax=docker/dockerfile:1.7
# tb_service (chest X-ray inference), GPU variant: onnxruntime-gpu from the `gpu` extra only
# (never beside the CPU onnxruntime package: both install the same `onnxruntime` module).
# Build from the repository root:
#   docker build -f deploy/docker/tb_service.gpu.Dockerfile -t irmi/tb-service:0.1.0-gpu .
# onnxruntime-gpu 1.31 (uv.lock) links CUDA 13 (cudart, cuBLAS, cuRAND, NVRTC): the runtime base
# is NVIDIA's CUDA 13 runtime image with cuDNN; the node needs an NVIDIA driver >= 580.
# Operators: pin both base images by digest in production.
ARG PYTHON_IMAGE=python:3.11.14-slim-bookworm
ARG CUDA_IMAGE=nvidia/cuda:13.0.2-cudnn-runtime-ubuntu24.04

FROM ${PYTHON_IMAGE} AS build
# The CUDA image has no Python 3.11: uv installs a relocatable CPython build under /opt/python
# and the virtual environment is made from it, so both copy over to the runtime stage as is.
ENV UV_PROJECT_ENVIRONMENT=/opt/venv \
    UV_PYTHON_INSTALL_DIR=/opt/python \
    UV_PYTHON_PREFERENCE=only-managed \
    UV_COMPILE_BYTECODE=1 \
    UV_LINK_MODE=copy \
    PIP_DISABLE_PIP_VERSION_CHECK=1
RUN pip install --no-cache-dir uv==0.13.8
WORKDIR /src
COPY pyproject.toml uv.lock ./
RUN uv python install 3.11.14 \
 && uv sync --frozen --no-dev --no-install-project --extra gpu --python 3.11.14
COPY shared/ /app/shared/
COPY tb_service/ /app/tb_service/
RUN /opt/venv/bin/python -m compileall -q /app

FROM ${CUDA_IMAGE}
RUN groupadd --system --gid 10001 irmi \
 && useradd --system --uid 10001 --gid irmi --home-dir /nonexistent --no-create-home \
      --shell /usr/sbin/nologin irmi
COPY --from=build /opt/python /opt/python
COPY --from=build /opt/venv /opt/venv
# The code and the models ship in the image, read-only and owned by root.
COPY --from=build /app /app
WORKDIR /app
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONPATH=/app \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    NVIDIA_VISIBLE_DEVICES=all \
    NVIDIA_DRIVER_CAPABILITIES=compute,utility \
    IRMI_TB_HOST=0.0.0.0 \
    IRMI_TB_PORT=8001 \
    IRMI_TB_USE_GPU=true
USER 10001:10001
EXPOSE 8001
HEALTHCHECK --interval=15s --timeout=5s --start-period=180s --retries=3 \
  CMD ["python", "-c", "import urllib.request as u; u.urlopen('http://127.0.0.1:8001/v2/health/ready', timeout=4)"]
CMD ["python", "-m", "tb_service"]
