"""Tests of the Helm chart, rendered by a real helm binary.

The session fixture builds helm with scripts/helm (minutes the first time,
cached in .cache/bin afterwards), then each test renders the chart with
`helm template` and checks the manifests parsed as YAML. Nothing is applied
to a cluster.
"""

from __future__ import annotations

import base64
import json
import math
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import annotated_types
import jsonschema
import pytest
import yaml

from worker.settings import ENV_PREFIX, SECRETS_DIR_VARIABLE, Settings

ROOT = Path(__file__).resolve().parents[1]
CHART = ROOT / "helm" / "card-lookup-worker"
MINIMAL_VALUES = CHART / "ci" / "minimal-values.yaml"
FULL_VALUES = CHART / "ci" / "full-values.yaml"
RELEASE = "clw"

# Settings the chart fills from the credentials Secret instead of config.
SECRET_SETTINGS = {"api_password", "kafka_sasl_password"}

# Settings deliberately not in `config`, each with the reason.
UNMAPPED_SETTINGS: dict[str, str] = {}

# CARD_LOOKUP_* variables the chart sets that are not Settings fields.
EXTRA_VARIABLES = {
    SECRETS_DIR_VARIABLE: "read by load_settings to find the secret files, not a setting itself",
}


def env_name(setting: str) -> str:
    return f"{ENV_PREFIX}{setting.upper()}"


@pytest.fixture(scope="session")
def helm() -> str:
    if not (ROOT / ".cache" / "bin" / "helm").exists() and shutil.which("go") is None:
        pytest.skip("helm is not built and no Go toolchain is on PATH to build it with scripts/helm")
    result = subprocess.run(
        [str(ROOT / "scripts" / "helm")], capture_output=True, text=True, check=False, timeout=1800
    )
    assert result.returncode == 0, f"scripts/helm failed:\n{result.stderr}"
    return result.stdout.strip().splitlines()[-1]


def run_helm(helm: str, *arguments: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([helm, *arguments], capture_output=True, text=True, check=False, timeout=60)


def value_arguments(values_files: tuple[Path, ...], settings: dict[str, str]) -> list[str]:
    arguments: list[str] = []
    for path in values_files:
        arguments += ["--values", str(path)]
    for key, value in settings.items():
        arguments += ["--set", f"{key}={value}"]
    return arguments


def template(helm: str, *values_files: Path, **settings: str) -> subprocess.CompletedProcess[str]:
    """Run `helm template`; settings keys use --set paths with "." written as "__"."""
    dotted = {key.replace("__", "."): value for key, value in settings.items()}
    return run_helm(
        helm, "template", RELEASE, str(CHART), "--namespace", "lookup", *value_arguments(values_files, dotted)
    )


def render(helm: str, *values_files: Path, **settings: str) -> dict[str, dict[str, Any]]:
    """Render the chart and index the manifests by "Kind/name"."""
    result = template(helm, *values_files, **settings)
    assert result.returncode == 0, f"helm template failed:\n{result.stderr}"
    manifests = {}
    for document in yaml.safe_load_all(result.stdout):
        if document:
            manifests[f"{document['kind']}/{document['metadata']['name']}"] = document
    return manifests


def of_kind(manifests: dict[str, dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [document for document in manifests.values() if document["kind"] == kind]


def single(manifests: dict[str, dict[str, Any]], kind: str) -> dict[str, Any]:
    found = of_kind(manifests, kind)
    assert len(found) == 1, f"expected one {kind}, found {len(found)}"
    return found[0]


def worker_container(manifests: dict[str, dict[str, Any]]) -> dict[str, Any]:
    pod = single(manifests, "Deployment")["spec"]["template"]["spec"]
    return next(container for container in pod["containers"] if container["name"] == "worker")


def load_yaml(path: Path) -> dict[str, Any]:
    return yaml.safe_load(path.read_text(encoding="utf-8"))


@pytest.fixture(scope="session")
def minimal(helm) -> dict[str, dict[str, Any]]:
    return render(helm, MINIMAL_VALUES)


@pytest.fixture(scope="session")
def full(helm) -> dict[str, dict[str, Any]]:
    return render(helm, FULL_VALUES)


@pytest.fixture(scope="session")
def chart_values() -> dict[str, Any]:
    return load_yaml(CHART / "values.yaml")


@pytest.fixture(scope="session")
def schema() -> dict[str, Any]:
    return json.loads((CHART / "values.schema.json").read_text(encoding="utf-8"))


# Lint and the values schema.


@pytest.mark.parametrize("values_file", [MINIMAL_VALUES, FULL_VALUES], ids=["minimal", "full"])
def test_lint_passes(helm, values_file):
    result = run_helm(helm, "lint", "--strict", str(CHART), "--values", str(values_file))
    assert result.returncode == 0, result.stdout + result.stderr


def test_schema_is_valid_draft7(schema):
    assert schema["$schema"] == "http://json-schema.org/draft-07/schema#"
    jsonschema.Draft7Validator.check_schema(schema)


@pytest.mark.parametrize("values_file", [MINIMAL_VALUES, FULL_VALUES], ids=["minimal", "full"])
def test_ci_values_match_schema(schema, chart_values, values_file):
    merged = json.loads(json.dumps(chart_values))
    for section, content in load_yaml(values_file).items():
        if isinstance(content, dict) and isinstance(merged.get(section), dict):
            merged[section].update(content)
        else:
            merged[section] = content
    # Helm drops null values before validating, so the check does the same.
    merged["config"] = {key: value for key, value in merged["config"].items() if value is not None}
    jsonschema.Draft7Validator(schema).validate(merged)


def test_bare_defaults_name_missing_values(helm):
    result = template(helm)
    assert result.returncode != 0
    for path in ("/config/api_base_url", "/config/api_login", "/secrets/api_password"):
        assert path in result.stderr, f"the error does not name {path}:\n{result.stderr}"


@pytest.mark.parametrize(
    ("setting", "value", "named"),
    [
        ("replicaCount", "two", "/replicaCount"),
        ("config.log_format", "xml", "/config/log_format"),
        ("config.kafka_security_protocol", "SASL", "/config/kafka_security_protocol"),
        ("config.http_port", "0", "/config/http_port"),
        ("config.batch_max_cards", "1001", "/config/batch_max_cards"),
        ("config.shutdown_timeout_s", "0", "/config/shutdown_timeout_s"),
        ("secrets.mode", "volume", "/secrets/mode"),
        ("config.no_such_setting", "1", "no_such_setting"),
    ],
)
def test_wrong_value_fails_naming_it(helm, setting, value, named):
    result = run_helm(
        helm, "template", RELEASE, str(CHART), "--values", str(MINIMAL_VALUES), "--set", f"{setting}={value}"
    )
    assert result.returncode != 0, f"{setting}={value} rendered without an error"
    assert named in result.stderr, f"the error does not name {named}:\n{result.stderr}"


def test_sasl_without_password_fails(helm):
    result = template(
        helm,
        MINIMAL_VALUES,
        secrets__existingSecret="",
        secrets__api_password="x",
        config__kafka_security_protocol="SASL_SSL",
        config__kafka_sasl_mechanism="PLAIN",
        config__kafka_sasl_username="worker",
    )
    assert result.returncode != 0
    assert "kafka_sasl_password" in result.stderr


def test_sasl_without_mechanism_fails(helm):
    result = template(
        helm,
        MINIMAL_VALUES,
        config__kafka_security_protocol="SASL_SSL",
        config__kafka_sasl_username="worker",
    )
    assert result.returncode != 0
    assert "kafka_sasl_mechanism" in result.stderr


def test_lint_reports_wrong_value(helm):
    result = run_helm(
        helm, "lint", str(CHART), "--values", str(MINIMAL_VALUES), "--set", "config.log_format=xml"
    )
    assert result.returncode != 0
    assert "log_format" in result.stdout + result.stderr


def install_notes(helm: str, *arguments: str) -> str:
    """Return the NOTES.txt text of a client-side dry-run install (no cluster is contacted)."""
    result = run_helm(
        helm, "install", RELEASE, str(CHART), "--dry-run=client", "--values", str(MINIMAL_VALUES), *arguments
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.partition("NOTES:")[2]


def test_notes_warn_about_idle_replicas(helm):
    notes = install_notes(helm, "--set", "replicaCount=8")
    assert "replicaCount (8) is above requestTopicPartitions (6)" in notes
    assert "2 replica(s) will sit idle" in notes


def test_notes_without_warning_by_default(helm):
    notes = install_notes(helm)
    assert "/metrics" in notes
    assert "WARNING" not in notes


# Probes, ports and security.


def test_probes_use_worker_endpoints(minimal):
    container = worker_container(minimal)
    assert container["livenessProbe"]["httpGet"] == {"path": "/health/live", "port": "http"}
    assert container["readinessProbe"]["httpGet"] == {"path": "/health/ready", "port": "http"}
    assert container["startupProbe"]["httpGet"] == {"path": "/health/live", "port": "http"}


def test_http_port_follows_config(helm):
    manifests = render(helm, FULL_VALUES, config__http_port="9100")
    container = worker_container(manifests)
    assert container["ports"] == [{"name": "http", "containerPort": 9100, "protocol": "TCP"}]
    config = single(manifests, "ConfigMap")["data"]
    assert config["CARD_LOOKUP_HTTP_PORT"] == "9100"
    service = single(manifests, "Service")
    assert service["spec"]["ports"][0]["port"] == 9100
    assert service["spec"]["ports"][0]["targetPort"] == "http"


def test_container_security_context(minimal):
    context = worker_container(minimal)["securityContext"]
    assert context["runAsNonRoot"] is True
    assert context["runAsUser"] == 10001
    assert context["readOnlyRootFilesystem"] is True
    assert context["allowPrivilegeEscalation"] is False
    assert context["capabilities"]["drop"] == ["ALL"]
    assert context["seccompProfile"]["type"] == "RuntimeDefault"


def test_pod_security_context(minimal):
    pod = single(minimal, "Deployment")["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] == 10001
    assert pod["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault"
    assert pod["automountServiceAccountToken"] is False


def test_tmp_is_writable_empty_dir(minimal):
    pod = single(minimal, "Deployment")["spec"]["template"]["spec"]
    volumes = {volume["name"]: volume for volume in pod["volumes"]}
    mounts = {mount["mountPath"]: mount["name"] for mount in worker_container(minimal)["volumeMounts"]}
    assert "emptyDir" in volumes[mounts["/tmp"]]


def test_resources_have_requests_and_limits(minimal):
    resources = worker_container(minimal)["resources"]
    for kind in ("requests", "limits"):
        assert set(resources[kind]) >= {"cpu", "memory"}, f"resources.{kind} lacks cpu or memory"


def test_anti_affinity_prefers_other_nodes(minimal):
    affinity = single(minimal, "Deployment")["spec"]["template"]["spec"]["affinity"]
    terms = affinity["podAntiAffinity"]["preferredDuringSchedulingIgnoredDuringExecution"]
    assert terms[0]["podAffinityTerm"]["topologyKey"] == "kubernetes.io/hostname"


# Secrets.


def test_configmap_holds_no_secret(full):
    data = single(full, "ConfigMap")["data"]
    for name in data:
        assert "PASSWORD" not in name, f"the ConfigMap sets {name}"
    for secret in ("render-only-api-password", "render-only-sasl-password"):
        assert secret not in json.dumps(data)


def test_deployment_references_secret_not_value(helm, full):
    deployment_text = json.dumps(single(full, "Deployment"))
    secret = single(full, "Secret")
    for key, encoded in secret["data"].items():
        plain = base64.b64decode(encoded).decode()
        assert plain not in deployment_text, f"the Deployment inlines the value of {key}"
        assert encoded not in deployment_text, f"the Deployment inlines the encoded value of {key}"


def test_secret_files_mode(full):
    container = worker_container(full)
    pod = single(full, "Deployment")["spec"]["template"]["spec"]
    secret = single(full, "Secret")
    variables = {item["name"]: item for item in container["env"]}
    mount_path = variables[SECRETS_DIR_VARIABLE]["value"]
    mount = next(mount for mount in container["volumeMounts"] if mount["mountPath"] == mount_path)
    assert mount["readOnly"] is True
    volume = next(volume for volume in pod["volumes"] if volume["name"] == mount["name"])
    assert volume["secret"]["secretName"] == secret["metadata"]["name"]
    files = {item["path"] for item in volume["secret"]["items"]}
    assert files == {env_name(setting).lower() for setting in SECRET_SETTINGS}
    assert env_name("api_password") not in variables


def test_secret_env_mode(helm):
    manifests = render(helm, FULL_VALUES, secrets__mode="env")
    variables = {item["name"]: item for item in worker_container(manifests)["env"]}
    secret_name = single(manifests, "Secret")["metadata"]["name"]
    for setting in SECRET_SETTINGS:
        reference = variables[env_name(setting)]["valueFrom"]["secretKeyRef"]
        assert reference == {"name": secret_name, "key": setting}
    assert SECRETS_DIR_VARIABLE not in variables


def test_existing_secret_is_referenced(minimal):
    assert of_kind(minimal, "Secret") == []
    pod = single(minimal, "Deployment")["spec"]["template"]["spec"]
    volume = next(volume for volume in pod["volumes"] if "secret" in volume and volume["name"] == "credentials")
    assert volume["secret"]["secretName"] == "card-lookup-credentials"
    # Without SASL the existing Secret needs no Kafka password key.
    assert volume["secret"]["items"] == [{"key": "api_password", "path": "card_lookup_api_password"}]


def test_existing_secret_key_mapping(helm):
    manifests = render(helm, MINIMAL_VALUES, secrets__existingSecretKeys__api_password="carecloud-password")
    pod = single(manifests, "Deployment")["spec"]["template"]["spec"]
    volume = next(volume for volume in pod["volumes"] if volume["name"] == "credentials")
    assert volume["secret"]["items"] == [{"key": "carecloud-password", "path": "card_lookup_api_password"}]


def test_chart_secret_without_sasl_has_api_password_only(helm):
    manifests = render(helm, MINIMAL_VALUES, secrets__existingSecret="", secrets__api_password="x")
    assert set(single(manifests, "Secret")["data"]) == {"api_password"}


def test_config_change_rolls_pods(helm, minimal):
    changed = render(helm, MINIMAL_VALUES, config__log_level="DEBUG")
    before = single(minimal, "Deployment")["spec"]["template"]["metadata"]["annotations"]
    after = single(changed, "Deployment")["spec"]["template"]["metadata"]["annotations"]
    assert before["checksum/config"] != after["checksum/config"]


def test_secret_change_rolls_pods(helm, full):
    changed = render(helm, FULL_VALUES, secrets__api_password="another-password")
    before = single(full, "Deployment")["spec"]["template"]["metadata"]["annotations"]
    after = single(changed, "Deployment")["spec"]["template"]["metadata"]["annotations"]
    assert before["checksum/secret"] != after["checksum/secret"]


# Shutdown.


@pytest.mark.parametrize("values_file", [MINIMAL_VALUES, FULL_VALUES], ids=["minimal", "full"])
def test_grace_period_exceeds_shutdown_timeout(helm, values_file):
    manifests = render(helm, values_file)
    shutdown_s = float(single(manifests, "ConfigMap")["data"]["CARD_LOOKUP_SHUTDOWN_TIMEOUT_S"])
    grace_s = single(manifests, "Deployment")["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
    assert grace_s > shutdown_s
    assert grace_s == math.ceil(shutdown_s) + 5


def test_explicit_grace_period_below_shutdown_fails(helm):
    result = template(helm, MINIMAL_VALUES, terminationGracePeriodSeconds="20")
    assert result.returncode != 0
    assert "terminationGracePeriodSeconds (20)" in result.stderr


def test_explicit_grace_period_is_used(helm):
    manifests = render(helm, MINIMAL_VALUES, terminationGracePeriodSeconds="60")
    assert single(manifests, "Deployment")["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] == 60


# Optional objects.


def test_pdb_present_by_default(minimal):
    budget = single(minimal, "PodDisruptionBudget")
    assert budget["spec"]["maxUnavailable"] == 1
    assert budget["spec"]["selector"]["matchLabels"] == single(minimal, "Deployment")["spec"]["selector"]["matchLabels"]


def test_pdb_absent_when_disabled(helm):
    assert of_kind(render(helm, MINIMAL_VALUES, podDisruptionBudget__enabled="false"), "PodDisruptionBudget") == []


def test_optional_objects_absent_by_default(minimal):
    for kind in ("HorizontalPodAutoscaler", "ScaledObject", "ServiceMonitor", "Service"):
        assert of_kind(minimal, kind) == [], f"{kind} rendered although it is disabled"
    assert single(minimal, "Deployment")["spec"]["replicas"] == 2


def test_full_values_render_every_feature(full):
    for kind in ("ScaledObject", "ServiceMonitor", "Service", "PodDisruptionBudget", "Secret", "ServiceAccount"):
        assert of_kind(full, kind), f"{kind} is missing from the full render"
    assert "replicas" not in single(full, "Deployment")["spec"], "KEDA owns the replica count"


def test_keda_trigger_targets_consumer_group(full):
    scaled = single(full, "ScaledObject")
    config = single(full, "ConfigMap")["data"]
    trigger = scaled["spec"]["triggers"][0]
    assert trigger["type"] == "kafka"
    metadata = trigger["metadata"]
    assert metadata["bootstrapServers"] == config["CARD_LOOKUP_KAFKA_BOOTSTRAP_SERVERS"]
    assert metadata["consumerGroup"] == config["CARD_LOOKUP_CONSUMER_GROUP"]
    assert metadata["topic"] == config["CARD_LOOKUP_REQUEST_TOPIC"]
    assert metadata["lagThreshold"] == "500"
    assert metadata["allowIdleConsumers"] == "false"
    assert metadata["sasl"] == "scram_sha512"
    assert metadata["tls"] == "enable"
    assert trigger["authenticationRef"] == {"name": "kafka-scaler-credentials"}
    assert scaled["spec"]["scaleTargetRef"]["name"] == single(full, "Deployment")["metadata"]["name"]


def test_keda_above_partitions_fails(helm):
    result = template(helm, FULL_VALUES, keda__maxReplicaCount="13")
    assert result.returncode != 0
    assert "keda.maxReplicaCount (13) is above requestTopicPartitions (12)" in result.stderr


def test_keda_with_sasl_needs_trigger_authentication(helm):
    result = template(helm, FULL_VALUES, keda__triggerAuthenticationName="")
    assert result.returncode != 0
    assert "keda.triggerAuthenticationName" in result.stderr


def test_hpa_when_enabled(helm):
    manifests = render(helm, MINIMAL_VALUES, autoscaling__enabled="true")
    autoscaler = single(manifests, "HorizontalPodAutoscaler")
    assert autoscaler["spec"]["maxReplicas"] == 6
    assert autoscaler["spec"]["metrics"][0]["resource"]["name"] == "cpu"
    assert "replicas" not in single(manifests, "Deployment")["spec"]
    assert of_kind(manifests, "ScaledObject") == []


def test_hpa_above_partitions_fails(helm):
    result = template(helm, MINIMAL_VALUES, autoscaling__enabled="true", autoscaling__maxReplicas="7")
    assert result.returncode != 0
    assert "autoscaling.maxReplicas (7) is above requestTopicPartitions (6)" in result.stderr


def test_hpa_and_keda_together_fail(helm):
    result = template(helm, FULL_VALUES, autoscaling__enabled="true")
    assert result.returncode != 0
    assert "autoscaling.enabled and keda.enabled" in result.stderr


def test_service_monitor_scrapes_metrics(full):
    monitor = single(full, "ServiceMonitor")
    service = single(full, "Service")
    endpoint = monitor["spec"]["endpoints"][0]
    assert endpoint["path"] == "/metrics"
    assert endpoint["port"] == service["spec"]["ports"][0]["name"]
    selector = monitor["spec"]["selector"]["matchLabels"]
    assert selector.items() <= service["metadata"]["labels"].items()
    assert monitor["metadata"]["labels"]["release"] == "prometheus"


# Drift between the chart and the worker's Settings.


def test_every_setting_is_mapped(chart_values):
    config_keys = set(chart_values["config"])
    for setting in Settings.model_fields:
        mapped = setting in config_keys or setting in SECRET_SETTINGS or setting in UNMAPPED_SETTINGS
        assert mapped, f"Settings.{setting} ({env_name(setting)}) has no entry in the chart's values.yaml config"


def test_every_config_key_is_a_setting(chart_values):
    for key in chart_values["config"]:
        assert key in Settings.model_fields, f"config.{key} in values.yaml is not a field of Settings"


def test_secret_settings_are_secret_fields():
    for setting in SECRET_SETTINGS:
        assert "SecretStr" in str(Settings.model_fields[setting].annotation)


def test_schema_covers_config_keys(schema, chart_values):
    assert set(schema["properties"]["config"]["properties"]) == set(chart_values["config"])


def test_rendered_variables_are_settings(helm, full):
    known = {env_name(setting) for setting in Settings.model_fields} | set(EXTRA_VARIABLES)
    env_mode = render(helm, FULL_VALUES, secrets__mode="env")
    for manifests in (full, env_mode):
        rendered = set(single(manifests, "ConfigMap")["data"])
        rendered |= {item["name"] for item in worker_container(manifests)["env"]}
        for name in sorted(rendered):
            if name.startswith(ENV_PREFIX):
                assert name in known, f"the chart sets {name}, which is not a field of Settings"


def setting_bounds(setting: str) -> dict[str, float]:
    bounds = {}
    for constraint in Settings.model_fields[setting].metadata:
        if isinstance(constraint, annotated_types.Ge):
            bounds["minimum"] = constraint.ge
        if isinstance(constraint, annotated_types.Gt):
            bounds["exclusiveMinimum"] = constraint.gt
        if isinstance(constraint, annotated_types.Le):
            bounds["maximum"] = constraint.le
    return bounds


def test_schema_bounds_match_settings(schema):
    properties = schema["properties"]["config"]["properties"]
    for setting, rule in properties.items():
        for bound, limit in setting_bounds(setting).items():
            assert bound in rule, f"config.{setting} lacks the {bound} {limit} that Settings enforces"
            if bound == "maximum":
                assert rule[bound] <= limit, f"config.{setting} allows up to {rule[bound]}, Settings only {limit}"
            else:
                assert rule[bound] >= limit, f"config.{setting} allows down to {rule[bound]}, Settings only {limit}"


def test_schema_enums_match_settings(schema):
    properties = schema["properties"]["config"]["properties"]
    for setting, rule in properties.items():
        annotation = Settings.model_fields[setting].annotation
        members = getattr(annotation, "__members__", None)
        if members is None:
            members = next((getattr(arg, "__members__", None) for arg in getattr(annotation, "__args__", ())), None)
        if members:
            expected = {member.value for member in members.values()}
            assert set(rule.get("enum", [])) - {None} == expected, f"config.{setting} enum differs from Settings"


def mount_secret_files(manifests: dict[str, dict[str, Any]], directory: Path) -> dict[str, str]:
    """Write the files the credentials volume would hold; return file name to content."""
    pod = single(manifests, "Deployment")["spec"]["template"]["spec"]
    volume = next(volume for volume in pod["volumes"] if volume["name"] == "credentials")
    written = {}
    for item in volume["secret"]["items"]:
        content = f"value-of-{item['key']}"
        (directory / item["path"]).write_text(content, encoding="utf-8")
        written[item["path"]] = content
    return written


@pytest.mark.parametrize("values_file", [MINIMAL_VALUES, FULL_VALUES], ids=["minimal", "full"])
def test_rendered_config_loads_into_settings(helm, values_file, monkeypatch, tmp_path):
    """Feed the rendered ConfigMap and secret files to Settings as the pod would."""
    manifests = render(helm, values_file)
    data = single(manifests, "ConfigMap")["data"]
    for name in list(os.environ):
        if name.startswith(ENV_PREFIX):
            monkeypatch.delenv(name)
    for name, value in data.items():
        monkeypatch.setenv(name, value)
    secrets_dir = tmp_path / "secrets"
    secrets_dir.mkdir()
    mount_secret_files(manifests, secrets_dir)
    monkeypatch.chdir(tmp_path)

    settings = Settings(_secrets_dir=str(secrets_dir))  # type: ignore[call-arg]

    assert settings.http_port == int(data["CARD_LOOKUP_HTTP_PORT"])
    assert settings.max_request_bytes == int(data["CARD_LOOKUP_MAX_REQUEST_BYTES"])
    assert settings.shutdown_timeout_s == float(data["CARD_LOOKUP_SHUTDOWN_TIMEOUT_S"])
    assert settings.api_password.get_secret_value() == "value-of-api_password"
    if "CARD_LOOKUP_KAFKA_SASL_USERNAME" in data:
        assert settings.kafka_sasl_password is not None
        assert settings.kafka_sasl_password.get_secret_value() == "value-of-kafka_sasl_password"
