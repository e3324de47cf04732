"""The Kubernetes manifests in deploy/ parse and agree with the image, the entrypoint and the
settings: probes on the port the Dockerfile exposes, the migration Job running `alembic upgrade head`
with the replicas' image, replicas that never migrate, and only keys the service reads."""

import re
from typing import Any

import pytest
import yaml

from app.core.config import Settings
from tests.live import PROJECT_ROOT

DEPLOY = PROJECT_ROOT / "deploy"
DOCKERFILE = PROJECT_ROOT / "Dockerfile"
ENTRYPOINT = PROJECT_ROOT / "docker" / "entrypoint.sh"

# Read by docker/entrypoint.sh rather than by the service's settings.
ENTRYPOINT_VARIABLES = {
    "RUN_MIGRATIONS",
    "MIGRATION_DATABASE_URL",
    "DB_WAIT_TIMEOUT",
    "WEB_CONCURRENCY",
    "HOST",
    "PORT",
}
SETTINGS_VARIABLES = {name.upper() for name in Settings.model_fields}
# PostgreSQL's default max_connections (100) less superuser_reserved_connections (3).
POSTGRES_CONNECTIONS = 97


def load_manifests() -> dict[str, dict[str, Any]]:
    """Every object in deploy/*.yaml, by kind (one object of each kind), except the relay's
    Deployment, which is `RelayDeployment` here."""
    objects: dict[str, dict[str, Any]] = {}
    for path in sorted(DEPLOY.glob("*.yaml")):
        for document in yaml.safe_load_all(path.read_text()):
            assert isinstance(document, dict), f"{path.name}: not a mapping"
            relay = document["metadata"].get("labels", {}).get("app.kubernetes.io/component") == "relay"
            kind = "RelayDeployment" if relay and document["kind"] == "Deployment" else document["kind"]
            assert kind not in objects, f"{path.name}: a second {kind}"
            objects[kind] = document
    return objects


@pytest.fixture(scope="module")
def manifests() -> dict[str, dict[str, Any]]:
    return load_manifests()


def exposed_port() -> int:
    ports = re.findall(r"^EXPOSE\s+(\d+)\s*$", DOCKERFILE.read_text(), flags=re.MULTILINE)
    assert len(ports) == 1, ports
    return int(ports[0])


def image_uid() -> int:
    match = re.search(r"useradd\b[^\n]*--uid\s+(\d+)", DOCKERFILE.read_text())
    assert match, "the Dockerfile creates no user with a fixed uid"
    return int(match.group(1))


def only_container(pod_spec: dict[str, Any]) -> dict[str, Any]:
    containers = pod_spec["containers"]
    assert len(containers) == 1
    container: dict[str, Any] = containers[0]
    return container


def plain_env(container: dict[str, Any]) -> dict[str, str]:
    return {entry["name"]: entry["value"] for entry in container.get("env", []) if "value" in entry}


def secret_refs(container: dict[str, Any]) -> dict[str, str]:
    """Environment variable -> the Secret key it comes from."""
    return {
        entry["name"]: entry["valueFrom"]["secretKeyRef"]["key"]
        for entry in container.get("env", [])
        if "secretKeyRef" in entry.get("valueFrom", {})
    }


def port_number(container: dict[str, Any], port: int | str) -> int:
    if isinstance(port, int):
        return port
    numbers = [entry["containerPort"] for entry in container["ports"] if entry.get("name") == port]
    assert len(numbers) == 1, f"no container port named {port}"
    return int(numbers[0])


def test_every_manifest_parses_and_names_no_namespace(manifests: dict[str, dict[str, Any]]) -> None:
    assert set(manifests) >= {"Secret", "ConfigMap", "Job", "Deployment", "Service"}
    for kind, document in manifests.items():
        assert document["apiVersion"], kind
        assert document["metadata"]["name"], kind
        assert "namespace" not in document["metadata"], f"{kind} names a namespace: apply with kubectl -n"


def test_the_probes_use_the_health_routes_on_the_exposed_port(manifests: dict[str, dict[str, Any]]) -> None:
    pod = manifests["Deployment"]["spec"]["template"]["spec"]
    container = only_container(pod)
    port = exposed_port()
    assert [entry["containerPort"] for entry in container["ports"]] == [port]
    probes = {name: container[name]["httpGet"] for name in ("startupProbe", "livenessProbe", "readinessProbe")}
    assert probes["livenessProbe"]["path"] == "/health"
    assert probes["startupProbe"]["path"] == "/health"
    assert probes["readinessProbe"]["path"] == "/health/ready"
    for probe in probes.values():
        assert port_number(container, probe["port"]) == port
    assert plain_env(container)["PORT"] == str(port)


def test_the_replicas_are_stateless_single_worker_and_never_migrate(manifests: dict[str, dict[str, Any]]) -> None:
    deployment = manifests["Deployment"]
    pod = deployment["spec"]["template"]["spec"]
    container = only_container(pod)
    env = plain_env(container)
    assert env["RUN_MIGRATIONS"] == "false"
    assert env["WEB_CONCURRENCY"] == "1"
    assert deployment["spec"]["replicas"] >= 2
    assert deployment["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0
    assert "volumeClaimTemplates" not in deployment["spec"]
    assert all("emptyDir" in volume for volume in pod.get("volumes", []))
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] == image_uid()
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    resources = container["resources"]
    assert set(resources["requests"]) == set(resources["limits"]) == {"cpu", "memory"}


def test_the_load_balancer_drains_before_sigterm(manifests: dict[str, dict[str, Any]]) -> None:
    pod = manifests["Deployment"]["spec"]["template"]["spec"]
    command = only_container(pod)["lifecycle"]["preStop"]["exec"]["command"]
    assert command[0] == "sleep"
    drain = int(command[1])
    assert 5 <= drain
    # Room after the drain for uvicorn to finish in-flight requests before the SIGKILL.
    assert pod["terminationGracePeriodSeconds"] >= drain + 20


def test_the_service_sends_port_80_to_the_pods(manifests: dict[str, dict[str, Any]]) -> None:
    service = manifests["Service"]["spec"]
    pod_template = manifests["Deployment"]["spec"]["template"]
    assert service["type"] == "ClusterIP"
    [port] = service["ports"]
    assert port["port"] == 80
    assert port_number(only_container(pod_template["spec"]), port["targetPort"]) == exposed_port()
    assert service["selector"].items() <= pod_template["metadata"]["labels"].items()
    assert manifests["Deployment"]["spec"]["selector"]["matchLabels"] == service["selector"]


def test_the_job_runs_alembic_upgrade_head_with_the_replicas_image(manifests: dict[str, dict[str, Any]]) -> None:
    job = manifests["Job"]["spec"]
    pod = job["template"]["spec"]
    container = only_container(pod)
    deployment_container = only_container(manifests["Deployment"]["spec"]["template"]["spec"])
    assert "command" not in container, "keep the image's entrypoint: it waits for the database"
    assert " ".join(container["args"]).endswith("alembic upgrade head")
    assert container["image"] == deployment_container["image"]
    assert pod["restartPolicy"] == "Never"
    assert job["backoffLimit"] >= 1
    # A direct connection, never through PgBouncer, and no 5 s statement timeout.
    assert secret_refs(container)["DATABASE_URL"] == "MIGRATION_DATABASE_URL"
    env = plain_env(container)
    assert env["DB_PGBOUNCER"] == "false"
    assert float(env["DB_STATEMENT_TIMEOUT_SECONDS"]) >= 60
    assert pod["securityContext"]["runAsNonRoot"] is True


def test_every_variable_is_one_the_service_or_the_entrypoint_reads(manifests: dict[str, dict[str, Any]]) -> None:
    entrypoint = ENTRYPOINT.read_text()
    assert all(name in entrypoint for name in ENTRYPOINT_VARIABLES)
    known = SETTINGS_VARIABLES | ENTRYPOINT_VARIABLES
    secret_keys = set(manifests["Secret"]["stringData"])
    assert set(manifests["ConfigMap"]["data"]) <= SETTINGS_VARIABLES
    assert secret_keys <= known
    for kind in ("Deployment", "Job", "RelayDeployment"):
        pod = manifests[kind]["spec"]["template"]["spec"]
        container = only_container(pod)
        assert {entry["name"] for entry in container.get("env", [])} <= known, kind
        assert set(secret_refs(container).values()) <= secret_keys, kind
        for source in container.get("envFrom", []):
            assert source["configMapRef"]["name"] == manifests["ConfigMap"]["metadata"]["name"], kind
        for entry in container.get("env", []):
            if "secretKeyRef" in entry.get("valueFrom", {}):
                assert entry["valueFrom"]["secretKeyRef"]["name"] == manifests["Secret"]["metadata"]["name"]


def test_the_settings_accept_the_config_and_refuse_the_placeholder_secret(
    manifests: dict[str, dict[str, Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in SETTINGS_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    values = {**manifests["ConfigMap"]["data"], **manifests["Secret"]["stringData"]}
    for name, value in values.items():
        monkeypatch.setenv(name, value)
    # Each placeholder of secret.example.yaml is refused in turn, naming its setting.
    replacements = {
        "SECRET_KEY": "a-real-secret-of-more-than-thirty-two-characters",
        "STRIPE_WEBHOOK_SECRET": "whsec_" + "R3alEndpointS3cretFromStripe0000",
        "METRICS_TOKEN": "a-real-metrics-token-for-the-scraper",
        "EVENTS_BROKER_URL": "amqp://payments:a-real-password@rabbitmq.internal:5672/",
    }
    for name, real in replacements.items():
        with pytest.raises(ValueError, match=name):
            Settings(_env_file=None)
        monkeypatch.setenv(name, real)
    settings = Settings(_env_file=None)
    assert settings.environment == "production"
    assert settings.database_url is not None


def test_the_connection_budget_fits_postgres(manifests: dict[str, dict[str, Any]]) -> None:
    """replicas x workers x (pool + overflow), plus the migration Job's one connection."""
    config = manifests["ConfigMap"]["data"]
    deployment = manifests["Deployment"]["spec"]
    workers = int(plain_env(only_container(deployment["template"]["spec"]))["WEB_CONCURRENCY"])
    per_worker = int(config["DB_POOL_SIZE"]) + int(config["DB_MAX_OVERFLOW"])
    # During a rolling update maxSurge extra pods run next to the old ones.
    pods = deployment["replicas"] + deployment["strategy"]["rollingUpdate"]["maxSurge"]
    assert pods * workers * per_worker + 1 <= POSTGRES_CONNECTIONS


def test_the_dockerfile_is_multi_stage_non_root_and_health_checked() -> None:
    dockerfile = DOCKERFILE.read_text()
    instructions = [line.split(maxsplit=1) for line in dockerfile.splitlines() if line and not line[0].isspace()]
    keywords = [parts[0] for parts in instructions if not parts[0].startswith("#")]
    assert keywords.count("FROM") >= 2
    assert "COPY --from=builder" in dockerfile
    users = [parts[1] for parts in instructions if parts[0] == "USER"]
    assert users and users[-1] not in {"root", "0"}
    assert "HEALTHCHECK" in keywords
    assert re.search(rf"HEALTHCHECK[^\n]*\n[^\n]*/health'[^\n]*'{exposed_port()}'", dockerfile)
    # Everything the image copies is in the build context (not excluded by .dockerignore).
    ignored = set((PROJECT_ROOT / ".dockerignore").read_text().split())
    for parts in instructions:
        if parts[0] == "COPY" and not parts[1].startswith("--from"):
            for source in parts[1].split()[:-1]:
                assert (PROJECT_ROOT / source).exists(), source
                assert source.rstrip("/") not in ignored, source


def test_compose_runs_the_service_its_relay_postgres_and_rabbitmq_with_health_checks_and_volumes() -> None:
    compose = yaml.safe_load((PROJECT_ROOT / "docker-compose.yml").read_text())
    services = compose["services"]
    assert set(services) == {"api", "relay", "db", "rabbitmq"}  # no Redis: nothing uses it (docs/events.md)
    for name, service in services.items():
        assert service["healthcheck"]["test"], name
    for name in ("db", "rabbitmq"):
        [volume] = services[name]["volumes"]
        assert volume.split(":")[0] in compose["volumes"], name
    # The API never waits for the broker; the relay starts once the API has migrated.
    assert services["api"]["depends_on"] == {"db": {"condition": "service_healthy"}}
    assert services["relay"]["depends_on"] == {
        "api": {"condition": "service_healthy"},
        "rabbitmq": {"condition": "service_healthy"},
    }
    assert services["relay"]["command"] == ["python", "-m", "app.relay"]
    assert services["relay"]["environment"]["RUN_MIGRATIONS"] == "false"
    assert services["api"]["environment"]["EVENTS_BROKER_URL"] == services["relay"]["environment"]["EVENTS_BROKER_URL"]
    assert f":{exposed_port()}/health" in " ".join(services["api"]["healthcheck"]["test"])
    assert services["api"]["ports"] == [f"127.0.0.1:{exposed_port()}:{exposed_port()}"]


def test_the_relay_runs_the_relay_module_with_the_api_image_and_its_metrics_port(
    manifests: dict[str, dict[str, Any]],
) -> None:
    relay = manifests["RelayDeployment"]["spec"]
    container = only_container(relay["template"]["spec"])
    api = only_container(manifests["Deployment"]["spec"]["template"]["spec"])
    assert container["image"] == api["image"]
    assert container["args"] == ["python", "-m", "app.relay"]
    assert plain_env(container)["RUN_MIGRATIONS"] == "false"
    assert "EVENTS_BROKER_URL" in secret_refs(container) and "EVENTS_BROKER_URL" in secret_refs(api)
    port = Settings.model_fields["events_relay_metrics_port"].default
    assert port_number(container, container["livenessProbe"]["httpGet"]["port"]) == port
    assert relay["replicas"] >= 2  # one publishes, one stands by
    assert relay["template"]["spec"]["securityContext"]["runAsUser"] == image_uid()
