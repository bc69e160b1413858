# syntax=docker/dockerfile:1.7
# tb_service (chest X-ray inference), CPU variant: onnxruntime from the `tb` extra only.
# Build from the repository root:  docker build -f deploy/docker/tb_service.Dockerfile -t irmi/tb-service:0.1.0 .
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
# Exactly the versions of uv.lock; only this service's extra (no gateway, train or dev packages).
RUN uv sync --frozen --no-dev --no-install-project --extra tb --python /usr/local/bin/python3
COPY shared/ /app/shared/
COPY tb_service/ /app/tb_service/
RUN python -m compileall -q /app

FROM ${PYTHON_IMAGE}
RUN groupadd --system --gid 10001 irmi \
 && useradd --system --uid 10001 --gid irmi --home-dir /nonexistent --no-create-home \
      --shell /usr/sbin/nologin irmi
COPY --from=build /opt/venv /opt/venv
# The code and the models (tb_service/models/<name>/<version>/{model.onnx,card.json}) ship in
# the image, read-only and owned by root: nothing is downloaded at run time.
COPY --from=build /app /app
WORKDIR /app
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONPATH=/app \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    IRMI_TB_HOST=0.0.0.0 \
    IRMI_TB_PORT=8001 \
    IRMI_TB_USE_GPU=false
USER 10001:10001
EXPOSE 8001
HEALTHCHECK --interval=15s --timeout=5s --start-period=120s --retries=3 \
  CMD ["python", "-c", "import urllib.request as u; u.urlopen('http://127.0.0.1:8001/v2/health/ready', timeout=4)"]
CMD ["python", "-m", "tb_service"]
