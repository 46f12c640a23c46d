"""The deployment files: the Dockerfile, the compose file, the instance and workspace they mount,
and the values for Dagster's Helm chart.

Linted where a linter exists on PyPI (hadolint for the Dockerfile, yamllint for YAML), the
instance file validated by Dagster itself, and the rest read as YAML and checked for what the
deployment depends on: one image for every role, secrets only by reference, the code location
where the webserver and daemon look for it. Building the image needs a container engine; that
test runs only where one answers.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml

from bulk_pipeline import config
from bulk_pipeline.targets.registry import REGISTRY

CHECKOUT = Path(__file__).resolve().parents[1]
DEPLOY = CHECKOUT / "deploy"
DOCKERFILE = CHECKOUT / "Dockerfile"
DEFINITIONS = "bulk_pipeline.definitions"
SECRET_VARIABLES = {config.DATABASE_URL_ENV, "POSTGRES_PASSWORD"} | {
    entry.secret_env() for entry in REGISTRY.values()
}
HELM_TOP_LEVEL = {
    "dagsterWebserver",
    "dagster-user-deployments",
    "postgresql",
    "generatePostgresqlPasswordSecret",
    "generateCeleryConfigSecret",
    "rabbitmq",
    "redis",
    "flower",
    "ingress",
    "imagePullSecrets",
    "computeLogManager",
    "scheduler",
    "runLauncher",
    "pythonLogs",
    "dagsterDaemon",
    "busybox",
    "migrate",
    "telemetry",
    "serviceAccount",
    "global",
    "retention",
    "concurrency",
    "additionalInstanceConfig",
}
"""The chart's top-level values (its schema, ``DagsterHelmValues``), so a misspelt key fails."""
K8S_RUN_LAUNCHER_REQUIRED = {
    "imagePullPolicy",
    "loadInclusterConfig",
    "envConfigMaps",
    "envSecrets",
    "envVars",
    "volumeMounts",
    "volumes",
}


def _yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text(encoding="utf-8"))


def _dockerfile() -> list[tuple[str, str]]:
    """(instruction, arguments) pairs, continuation lines joined, comments dropped."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text(encoding="utf-8"))
    lines = [line.strip() for line in text.splitlines()]
    pairs = [tuple(line.split(None, 1)) for line in lines if line and not line.startswith("#")]
    return [(name.upper(), rest) for name, rest in pairs]


def _program(name: str) -> str:
    found = shutil.which(name) or shutil.which(name, path=str(Path(sys.executable).parent))
    assert found is not None, f"{name} is a dev dependency (make setup installs it)"
    return found


def test_the_dockerfile_passes_hadolint() -> None:
    done = subprocess.run(
        [_program("hadolint"), "--no-color", str(DOCKERFILE)], capture_output=True, text=True
    )

    assert done.returncode == 0, done.stdout + done.stderr


def test_the_deployment_yaml_passes_yamllint() -> None:
    done = subprocess.run(
        [_program("yamllint"), "-c", str(DEPLOY / ".yamllint.yaml"), "-f", "parsable", str(DEPLOY)],
        capture_output=True,
        text=True,
    )

    assert done.returncode == 0, done.stdout + done.stderr


def test_the_image_installs_the_package_and_serves_the_code_location_without_secrets() -> None:
    instructions = _dockerfile()
    project = tomllib.loads((CHECKOUT / "pyproject.toml").read_text(encoding="utf-8"))
    python = re.search(r"\d+\.\d+", project["project"]["requires-python"])
    assert python is not None

    [base] = [rest for name, rest in instructions if name == "FROM"]
    assert base.startswith(f"python:{python.group(0)}")
    declared = " ".join(rest for name, rest in instructions if name in ("ENV", "ARG"))
    assert not [v for v in SECRET_VARIABLES if v in declared]
    for name, rest in instructions:
        if name == "COPY":
            *sources, _ = rest.split()
            assert all((CHECKOUT / source).exists() for source in sources), rest
    [user] = [rest for name, rest in instructions if name == "USER"]
    assert user.isdigit() and int(user) > 0
    [command] = [rest for name, rest in instructions if name == "CMD"]
    assert DEFINITIONS in command
    [exposed] = [rest for name, rest in instructions if name == "EXPOSE"]
    assert f'"{exposed}"' in command
    workspace = _yaml(DEPLOY / "workspace.yaml")["load_from"][0]["grpc_server"]
    assert workspace["port"] == int(exposed)
    assert workspace["location_name"] == "bulk_pipeline"


def test_the_compose_file_runs_four_services_with_secrets_only_from_the_environment() -> None:
    compose = _yaml(DEPLOY / "compose.yaml")
    services = compose["services"]

    assert set(services) == {"postgres", "code-location", "webserver", "daemon"}
    build = services["code-location"]["build"]
    assert (DEPLOY / build["context"] / build["dockerfile"]).resolve() == DOCKERFILE
    pipeline = [services[name] for name in ("code-location", "webserver", "daemon")]
    assert len({service["image"] for service in pipeline}) == 1
    workspace = _yaml(DEPLOY / "workspace.yaml")["load_from"][0]["grpc_server"]
    assert workspace["host"] == "code-location"
    for role in ("webserver", "daemon"):
        assert "/opt/dagster/home/workspace.yaml" in services[role]["command"]
    assert services["postgres"]["healthcheck"]["test"]
    assert services["code-location"]["depends_on"]["postgres"]["condition"] == "service_healthy"
    assert all(port.startswith("127.0.0.1:") for port in services["webserver"]["ports"])
    for name, service in services.items():
        for variable, value in service["environment"].items():
            if variable in SECRET_VARIABLES or "PASSWORD" in variable:
                assert re.search(r"\$\{[A-Z_]+:[?-]", str(value)), f"{name}: {variable} is literal"
    every_target_setting = {name for entry in REGISTRY.values() for name in entry.env()}
    assert every_target_setting <= set(services["code-location"]["environment"])
    url = services["daemon"]["environment"][config.DATABASE_URL_ENV]
    assert url.startswith("postgresql://") and "${POSTGRES_PASSWORD:?" in url
    assert "deploy/.env" in (CHECKOUT / ".gitignore").read_text(encoding="utf-8")


def test_the_instance_file_is_valid_for_dagster_and_keeps_everything_in_postgres(
    tmp_path: Path,
) -> None:
    from dagster._core.instance.config import dagster_instance_config

    shutil.copy(DEPLOY / "dagster.yaml", tmp_path / "dagster.yaml")
    checked, _ = dagster_instance_config(str(tmp_path))

    assert checked["storage"] == {"postgres": {"postgres_url": {"env": config.DATABASE_URL_ENV}}}
    assert checked["run_coordinator"]["class"] == "QueuedRunCoordinator"
    assert checked["concurrency"]["pools"]["default_limit"] > 1
    assert checked["concurrency"]["runs"]["max_concurrent_runs"] > 1


def test_the_helm_values_launch_a_pod_per_run_from_our_code_location_with_named_secrets() -> None:
    values = _yaml(DEPLOY / "helm" / "values.yaml")

    assert set(values) <= HELM_TOP_LEVEL
    [deployment] = values["dagster-user-deployments"]["deployments"]
    assert values["dagster-user-deployments"]["enabled"] is True
    assert deployment["codeServerArgs"] == [
        "--module-name",
        DEFINITIONS,
        "--location-name",
        "bulk_pipeline",
    ]
    assert deployment["includeConfigInLaunchedRuns"] == {"enabled": True}
    assert {"repository", "tag"} <= set(deployment["image"])
    launcher = values["runLauncher"]
    assert launcher["type"] == "K8sRunLauncher"
    assert set(launcher["config"]) == {"k8sRunLauncher"}
    k8s = launcher["config"]["k8sRunLauncher"]
    assert set(k8s) >= K8S_RUN_LAUNCHER_REQUIRED
    secrets = {s["name"] for s in [*deployment["envSecrets"], *k8s["envSecrets"]]}
    assert secrets == {"bulk-pipeline-secrets"}
    mounts = {m["mountPath"] for m in [*deployment["volumeMounts"], *k8s["volumeMounts"]]}
    assert mounts == {"/var/lib/bulk_pipeline"}
    coordinator = values["dagsterDaemon"]["runCoordinator"]
    assert (coordinator["enabled"], coordinator["type"]) == (True, "QueuedRunCoordinator")
    assert values["concurrency"]["enabled"] is True
    assert values["postgresql"]["enabled"] is False
    assert values["generatePostgresqlPasswordSecret"] is False
    assert "postgresqlPassword" not in values["postgresql"]
    assert values["global"]["postgresqlSecretName"]
    env = {e["name"]: e.get("value") for e in deployment["env"]}
    assert not set(env) & SECRET_VARIABLES


def _container_engine() -> str | None:
    docker = shutil.which("docker")
    if docker is None:
        return None
    answered = subprocess.run([docker, "info"], capture_output=True, check=False)
    return docker if answered.returncode == 0 else None


def test_the_image_builds_where_a_container_engine_runs() -> None:
    docker = _container_engine()
    if docker is None:
        pytest.skip("no container engine answers here (docker info failed): the image is not built")

    done = subprocess.run(
        [docker, "build", "-t", "bulk-pipeline:test", str(CHECKOUT)],
        capture_output=True,
        text=True,
        timeout=900,
    )

    assert done.returncode == 0, done.stderr[-3000:]
