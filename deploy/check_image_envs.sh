#!/usr/bin/env bash
# What each CPU image holds, without Docker: for every service, a fresh virtual environment with
# exactly the Dockerfile's `uv sync --frozen --no-dev --no-install-project --extra X`, a copy of
# exactly what the Dockerfile copies (shared/ and the service folder, models included), then the
# service started from that copy on loopback until /v2/health/ready answers 200.
# Catches a dependency missing from a service's extra, or a file the image lacks.
#   bash deploy/check_image_envs.sh            (needs uv and the registry; ~1 GB in a temp dir)
set -euo pipefail
cd "$(dirname "$0")/.."
UV=${UV:-$(command -v uv || echo .tools/bin/uv)}
PY=${PYTHON:-python3}
work=$(mktemp -d)
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT

check() {  # service extra port env...
  local service=$1 extra=$2 port=$3
  shift 3
  local venv=$work/venv-$extra app=$work/app-$service
  if [ ! -x "$venv/bin/python" ]; then
    (cd "$work" && cp "$OLDPWD/pyproject.toml" "$OLDPWD/uv.lock" . &&
      UV_PROJECT_ENVIRONMENT=$venv UV_PYTHON_DOWNLOADS=never "$UV" sync --quiet --frozen \
        --no-dev --no-install-project --extra "$extra" --python "$PY")
  fi
  mkdir -p "$app"
  cp -r shared "$service" "$app/"
  (cd / && exec env -i PATH="$venv/bin:/usr/bin:/bin" PYTHONPATH="$app" PYTHONDONTWRITEBYTECODE=1 \
    "$@" "$venv/bin/python" -m "$service" --host 127.0.0.1 --port "$port" \
    >"$work/$service.log" 2>&1) &
  local pid=$!
  pids+=("$pid")
  for _ in $(seq 1 90); do
    kill -0 "$pid" 2>/dev/null || break  # it exited
    if "$venv/bin/python" -c "import urllib.request as u; u.urlopen('http://127.0.0.1:$port/v2/health/ready', timeout=2)" 2>/dev/null; then
      echo "ok: $service ready with only the '$extra' extra"
      return 0
    fi
    sleep 2
  done
  echo "FAILED: $service (extra '$extra') not ready; its log:" >&2
  tail -n 30 "$work/$service.log" >&2
  return 1
}

check tb_service tb 18101 IRMI_TB_USE_GPU=false
bc_env=(IRMI_BC_USE_GPU=false)
if ! compgen -G "bc_service/models/*/*/model.onnx" >/dev/null; then
  echo "warning: no mammography models committed yet: bc_service checked with its fallbacks," \
    "and an image built now would not become ready" >&2
  bc_env+=("IRMI_BC_REQUIRED_MODELS=[]")
fi
check bc_service bc 18102 "${bc_env[@]}"
check gateway gateway 18100 IRMI_GATEWAY_JWT_SECRET=check-only \
  IRMI_GATEWAY_STORE_KEYS='{"check":"Y2hlY2stb25seS1rZXktMDEyMzQ1Njc4OWFiY2RlZiE="}' \
  IRMI_GATEWAY_DATABASE_URL="sqlite+aiosqlite:///$work/irmi.db" IRMI_GATEWAY_STORE_DIR="$work/images" \
  IRMI_GATEWAY_TB_URL=http://127.0.0.1:18101 IRMI_GATEWAY_BC_URL=http://127.0.0.1:18102
