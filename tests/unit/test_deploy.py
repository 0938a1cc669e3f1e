"""Deploy files can't run here (no Docker engine); parse them and check the invariants."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]


def _compose() -> dict:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def test_compose_services_volumes_and_health() -> None:
    c = _compose()
    services = c["services"]
    assert set(services) >= {"recsvc", "qdrant", "redis"}
    env = services["recsvc"]["environment"]
    assert env["RECSVC_QDRANT__URL"].startswith("http://qdrant:")
    assert env["RECSVC_REDIS__URL"].startswith("redis://redis:")
    # the admin token must be supplied, never defaulted
    assert ":?" in env["RECSVC_ADMIN_TOKEN"]
    for name in ("qdrant", "redis"):
        assert "healthcheck" in services[name]
        assert services["recsvc"]["depends_on"][name]["condition"] == "service_healthy"
        mounted = [v.split(":")[0] for v in services[name]["volumes"]]
        assert all(m in c["volumes"] for m in mounted), mounted
    assert services["recsvc"]["ports"][0].startswith("127.0.0.1:")


def test_prod_overlay_mounts_files_that_exist() -> None:
    overlay = yaml.safe_load((ROOT / "deploy" / "compose.prod.yml").read_text())
    assert set(overlay["services"]) <= set(_compose()["services"])
    for svc in overlay["services"].values():
        for vol in svc.get("volumes", []):
            src = vol.split(":")[0]
            if src.startswith("./deploy/"):
                assert (ROOT / src).is_file(), src


def test_dockerfile_multistage_nonroot_healthcheck_pinned_torch() -> None:
    text = (ROOT / "Dockerfile").read_text()
    stages = re.findall(r"^FROM\s+\S+\s+AS\s+(\w+)", text, flags=re.M)
    assert {"builder", "runtime"} <= set(stages)
    runtime = text.split("AS runtime", 1)[1]
    assert re.search(r"^USER\s+(?!root)\w+", runtime, flags=re.M)
    assert "HEALTHCHECK" in runtime and "/healthz" in runtime
    assert re.search(r"torch==\$\{TORCH_VERSION\}", text)
    assert "ARG TORCH_VERSION=2.13.0" in text
    assert "HF_HUB_OFFLINE=1" in text


def test_k8s_manifests_parse_and_probe_health_routes() -> None:
    docs = [d for d in yaml.safe_load_all((ROOT / "deploy" / "k8s" / "recsvc.yaml").read_text()) if d]
    kinds = {d["kind"] for d in docs}
    assert {"Deployment", "Service", "Secret"} <= kinds
    dep = next(d for d in docs if d["kind"] == "Deployment")
    container = dep["spec"]["template"]["spec"]["containers"][0]
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert dep["spec"]["template"]["spec"]["securityContext"]["runAsNonRoot"] is True
