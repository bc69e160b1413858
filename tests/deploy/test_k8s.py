"""Kubernetes: every overlay renders with kustomize, validates against the Kubernetes schemas
(offline, strict) and keeps the invariants of the deployment."""

from __future__ import annotations

import copy
import warnings
from pathlib import Path

import pytest

from tests.deploy import manifests as m

TARGETS = ["base", *(f"overlays/{o}" for o in m.OVERLAYS)]


@pytest.fixture(scope="module")
def rendered() -> dict[str, list[m.Doc]]:
    return {t: m.load_all(m.render(m.K8S / t)) for t in TARGETS}


@pytest.fixture(scope="module")
def routes(tmp_path_factory: pytest.TempPathFactory) -> dict[str, set[str]]:
    # Build (not start) each real app; the gateway needs a secret outside dev mode.
    mp = pytest.MonkeyPatch()
    mp.setenv("IRMI_DEV_MODE", "1")
    mp.setenv(
        "IRMI_GATEWAY_DATABASE_URL",
        "sqlite+aiosqlite:///" + str(tmp_path_factory.mktemp("db") / "irmi.db"),
    )
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return {pkg: m.app_routes(pkg) for pkg in m.SERVICES.values()}
    finally:
        mp.undo()


def test_every_overlay_is_found() -> None:
    found = sorted(p.name for p in (m.K8S / "overlays").iterdir() if p.is_dir())
    assert found == sorted(m.OVERLAYS)


@pytest.mark.parametrize("target", TARGETS)
def test_renders_and_validates_strictly(
    target: str, rendered: dict[str, list[m.Doc]], tmp_path: Path
) -> None:
    docs = rendered[target]
    kinds = {d["kind"] for d in docs}
    assert {"Deployment", "Service", "ConfigMap", "Ingress", "NetworkPolicy"} <= kinds
    assert {"PodDisruptionBudget"} <= kinds
    if target != "overlays/dev":
        assert "HorizontalPodAutoscaler" in kinds
    out = tmp_path / "rendered.yaml"
    out.write_text(m.render(m.K8S / target))
    # The newest schemas bundled, and the oldest Kubernetes we document (1.31).
    for version in (None, "1.31.0"):
        res = m.kubernetes_validate(out, version)
        assert res.returncode == 0, res.stdout + res.stderr


@pytest.mark.parametrize("target", TARGETS)
def test_probes_hit_real_routes(
    target: str, rendered: dict[str, list[m.Doc]], routes: dict[str, set[str]]
) -> None:
    assert {m.LIVE, m.READY} <= routes["gateway"]
    assert m.probe_problems(rendered[target], routes) == []


@pytest.mark.parametrize("target", TARGETS)
def test_non_root_read_only(target: str, rendered: dict[str, list[m.Doc]]) -> None:
    assert m.security_problems(rendered[target]) == []
    ns = m.by_kind(rendered[target], "Namespace")[0]
    assert ns["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"


@pytest.mark.parametrize("target", TARGETS)
def test_only_gateway_exposed(target: str, rendered: dict[str, list[m.Doc]]) -> None:
    assert m.exposure_problems(rendered[target]) == []


@pytest.mark.parametrize("target", TARGETS)
def test_references_resolve(target: str, rendered: dict[str, list[m.Doc]]) -> None:
    docs = rendered[target]
    deployments = {d["metadata"]["name"]: d for d in m.by_kind(docs, "Deployment")}
    assert set(deployments) == set(m.SERVICES)
    configmaps = {d["metadata"]["name"] for d in m.by_kind(docs, "ConfigMap")}
    for dep in deployments.values():
        for c in m.containers(dep):
            for src in c.get("envFrom", []):
                if "configMapRef" in src:
                    assert src["configMapRef"]["name"] in configmaps
    for hpa in m.by_kind(docs, "HorizontalPodAutoscaler"):
        assert hpa["spec"]["scaleTargetRef"]["name"] in deployments
        assert hpa["spec"]["minReplicas"] >= 2
    for pdb in m.by_kind(docs, "PodDisruptionBudget"):
        sel = pdb["spec"]["selector"]["matchLabels"]
        assert [
            n
            for n, d in deployments.items()
            if m._selects({"matchLabels": sel}, d["spec"]["template"]["metadata"]["labels"])
        ]
    # Every namespaced object in one namespace (NetworkPolicies are namespace-scoped).
    assert {d["metadata"].get("namespace") for d in docs if d["kind"] != "Namespace"} == {"irmi"}


def test_settings_exist(rendered: dict[str, list[m.Doc]]) -> None:
    keys = {k for docs in rendered.values() for k in m.iter_env_keys(docs)}
    problems, assumed = m.setting_problems(keys)
    assert problems == []
    if assumed:
        warnings.warn(
            f"gateway settings assumed, not yet in gateway/settings.py: {sorted(assumed)}",
            stacklevel=1,
        )


def test_gpu_overlay_requests_gpus(rendered: dict[str, list[m.Doc]]) -> None:
    assert m.gpu_problems(rendered["overlays/gpu"]) == []


def test_dev_overlay_is_small_and_cpu(rendered: dict[str, list[m.Doc]]) -> None:
    docs = rendered["overlays/dev"]
    for dep in m.by_kind(docs, "Deployment"):
        assert dep["spec"]["replicas"] == 1
        assert "nvidia.com/gpu" not in str(dep)
        assert not m.containers(dep)[0]["image"].endswith("-gpu")
    assert m.by_kind(docs, "HorizontalPodAutoscaler") == []
    assert m.gpu_problems(docs)  # the checker does tell a CPU deployment from a GPU one


def test_base_keeps_postgres_external(rendered: dict[str, list[m.Doc]]) -> None:
    docs = rendered["base"]
    # No database in the cluster: the gateway's URL comes from the operator's Secret.
    assert not [d for d in docs if "postgres" in d["metadata"]["name"]]
    assert m.by_kind(docs, "Secret") == []
    gw = m.named(docs, "Deployment", "gateway")
    refs = [s["secretRef"]["name"] for s in m.containers(gw)[0]["envFrom"] if "secretRef" in s]
    assert refs == ["irmi-gateway"]
    data = m.by_kind(docs, "ConfigMap")[0]["data"]
    assert "IRMI_GATEWAY_DATABASE_URL" not in data and "IRMI_GATEWAY_JWT_SECRET" not in data


# --- the checks catch what they should --------------------------------------------------------


def test_broken_manifest_fails_schema_validation(
    rendered: dict[str, list[m.Doc]], tmp_path: Path
) -> None:
    import yaml

    good = rendered["overlays/gpu"]
    cases = {
        "typo": ("readinessProbe", lambda c: c["readinessProbe"]["httpGet"].update(paht="/x")),
        "type": ("ports", lambda c: c["ports"][0].update(containerPort="eight-thousand")),
        "missing": ("name", lambda c: c.pop("name")),
    }
    for label, (_, breaker) in cases.items():
        docs = copy.deepcopy(good)
        breaker(
            m.named(docs, "Deployment", "tb-service")["spec"]["template"]["spec"]["containers"][0]
        )
        path = tmp_path / f"{label}.yaml"
        path.write_text(yaml.safe_dump_all(docs))
        res = m.kubernetes_validate(path)
        assert res.returncode != 0, label
        assert "deployment/tb-service" in res.stdout + res.stderr, label


def test_broken_kustomization_fails_to_render(tmp_path: Path) -> None:
    import shutil

    copy_dir = tmp_path / "k8s"
    shutil.copytree(m.K8S, copy_dir)
    (copy_dir / "overlays" / "dev" / "gateway-local-state.yaml").unlink()
    with pytest.raises(RuntimeError, match=r"gateway-local-state\.yaml"):
        m.render(copy_dir / "overlays" / "dev")
    # the same Deployment defined twice
    base = copy_dir / "base"
    (base / "dup.yaml").write_text((base / "tb-service.yaml").read_text())
    kust = base / "kustomization.yaml"
    kust.write_text(
        kust.read_text().replace("  - tb-service.yaml\n", "  - tb-service.yaml\n  - dup.yaml\n")
    )
    with pytest.raises(RuntimeError, match="tb-service"):
        m.render(base)


def test_invariant_checks_catch_violations(
    rendered: dict[str, list[m.Doc]], routes: dict[str, set[str]]
) -> None:
    base = rendered["base"]

    def broken(change: object) -> list[m.Doc]:
        docs = copy.deepcopy(base)
        change(docs)  # type: ignore[operator]
        return docs

    def pod(docs: list[m.Doc], name: str) -> m.Doc:
        return m.named(docs, "Deployment", name)["spec"]["template"]["spec"]

    root = broken(lambda d: pod(d, "bc-service")["securityContext"].update(runAsUser=0))
    assert any("uid/gid 0" in p for p in m.security_problems(root))
    rw = broken(
        lambda d: pod(d, "gateway")["containers"][0]["securityContext"].update(
            readOnlyRootFilesystem=False
        )
    )
    assert any("writable" in p for p in m.security_problems(rw))
    node_port = broken(
        lambda d: m.named(d, "Service", "tb-service")["spec"].update(type="NodePort")
    )
    assert any("NodePort" in p for p in m.exposure_problems(node_port))
    open_policy = broken(
        lambda d: m.named(d, "NetworkPolicy", "tb-service-ingress")["spec"]["ingress"][0][
            "from"
        ].append({"namespaceSelector": {}})
    )
    assert any("tb-service reachable" in p for p in m.exposure_problems(open_policy))
    bad_probe = broken(
        lambda d: pod(d, "bc-service")["containers"][0]["readinessProbe"]["httpGet"].update(
            path="/healthz"
        )
    )
    assert any("not a route" in p for p in m.probe_problems(bad_probe, routes))
    assert m.setting_problems({"IRMI_TB_NO_SUCH_SETTING"})[0]
