"""``compose.yaml`` checked without a container engine: the Compose Specification's JSON schema
(vendored in ``tests/schemas/compose-spec.json``), then every cross-reference a ``docker compose up``
would trip over — build contexts and Dockerfiles (and what they COPY), bind-mounted files, named
volumes, ``depends_on`` targets and conditions, ``${VAR}`` against the example env file, the
templates' placeholders against the environment the containers render them with, and the
``naboom`` commands the services run.
"""

from __future__ import annotations

import json
import re
import shlex
from typing import Any

import jsonschema_rs
import pytest
import yaml
from click.testing import CliRunner

from naboom.cli import main
from naboom.deploy.nginx import site_placeholders
from naboom.deploy.render import placeholders
from tests.support import ROOT

COMPOSE = ROOT / "compose.yaml"
ENV_EXAMPLE = ROOT / "deploy" / "compose.env.example"
SCHEMA = ROOT / "tests" / "schemas" / "compose-spec.json"
# ${VAR}, ${VAR:-default}, ${VAR:?message}, ${VAR-default}...; "$$" is a literal dollar for the container.
_INTERPOLATION = re.compile(r"(?<!\$)\$\{([A-Za-z_][A-Za-z0-9_]*)(?:[:?+-][^}]*)?\}")
ONE_SHOT = {"mosquitto-init", "migrate"}


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE.read_text())  # type: ignore[no-any-return]


@pytest.fixture(scope="module")
def services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return compose["services"]  # type: ignore[no-any-return]


def _env_example_names() -> set[str]:
    names = set()
    for line in ENV_EXAMPLE.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            names.add(line.split("=", 1)[0].strip())
    return names


def _volume_source(entry: str | dict[str, Any]) -> tuple[str, str]:
    """(kind, source) of a service volume: ``bind`` for paths, ``volume`` for named volumes."""
    if isinstance(entry, dict):
        return str(entry["type"]), str(entry.get("source", ""))
    source = entry.split(":", 1)[0]
    return ("bind" if source.startswith((".", "/", "~")) else "volume"), source


def _command(service: dict[str, Any]) -> list[str]:
    command = service.get("command") or []
    return shlex.split(command) if isinstance(command, str) else [str(part) for part in command]


def _naboom_invocations(service: dict[str, Any]) -> list[list[str]]:
    """Every ``naboom ...`` the service runs, also inside ``sh -c "a && b"``."""
    command = _command(service)
    if command[:2] == ["sh", "-c"]:
        return [shlex.split(part) for part in command[2].split("&&") if part.strip().startswith("naboom ")]
    return [command] if command[:1] == ["naboom"] else []


def test_compose_file_is_valid_against_the_compose_specification_schema(compose: dict[str, Any]) -> None:
    validator = jsonschema_rs.Draft7Validator(json.loads(SCHEMA.read_text()))
    errors = [f"{'/'.join(map(str, e.instance_path))}: {e.message}" for e in validator.iter_errors(compose)]
    assert errors == []


def test_the_schema_rejects_what_compose_would_reject() -> None:
    """The vendored schema is the real one: a misspelt key and a bad condition fail it."""
    validator = jsonschema_rs.Draft7Validator(json.loads(SCHEMA.read_text()))
    assert not validator.is_valid({"services": {"a": {"image": "x", "restrat": "always"}}})
    assert not validator.is_valid({"services": {"a": {"image": "x", "depends_on": {"b": {"condition": "up"}}}}})
    assert validator.is_valid({"services": {"a": {"image": "x"}}})


def test_every_build_context_dockerfile_and_copied_source_exists(services: dict[str, dict[str, Any]]) -> None:
    built = {name: s["build"] for name, s in services.items() if "build" in s}
    assert {"api", "nginx"} <= set(built)
    for name, build in built.items():
        context = ROOT / (build if isinstance(build, str) else build.get("context", "."))
        dockerfile = context / ("Dockerfile" if isinstance(build, str) else build.get("dockerfile", "Dockerfile"))
        assert context.is_dir(), f"{name}: build context {context} missing"
        assert dockerfile.is_file(), f"{name}: {dockerfile} missing"
        for line in dockerfile.read_text().splitlines():
            words = line.split()
            if words[:1] == ["COPY"] and not any(w.startswith("--from") for w in words):
                for source in words[1:-1]:
                    assert (context / source).exists(), f"{name}: {dockerfile.name} copies {source}, which is missing"


def test_every_service_has_an_image_or_a_build(services: dict[str, dict[str, Any]]) -> None:
    for name, service in services.items():
        assert service.get("image") or service.get("build"), name


def test_every_bind_mount_exists_and_every_named_volume_is_declared(
    compose: dict[str, Any], services: dict[str, dict[str, Any]]
) -> None:
    declared = set(compose.get("volumes") or {})
    used = set()
    for name, service in services.items():
        for entry in service.get("volumes", []):
            kind, source = _volume_source(entry)
            if kind == "bind":
                assert (ROOT / source).exists(), f"{name} mounts {source}, which is not in the repository"
            elif kind == "volume":
                assert source in declared, f"{name} uses volume {source!r}, not declared under volumes:"
                used.add(source)
    assert declared == used, f"declared but unused volumes: {declared - used}"


def test_depends_on_targets_exist_and_their_conditions_can_be_met(services: dict[str, dict[str, Any]]) -> None:
    for name, service in services.items():
        for target, rule in (service.get("depends_on") or {}).items():
            assert target in services, f"{name} depends on unknown service {target!r}"
            condition = rule["condition"]
            if condition == "service_healthy":
                assert "healthcheck" in services[target], f"{name} waits for {target} to be healthy; it has no check"
            if condition == "service_completed_successfully":
                assert services[target].get("restart") == "no", f"{target} is waited on to finish but restarts"


def _strings(node: Any) -> list[str]:
    """Every string of the parsed file (compose interpolates values, not comments)."""
    if isinstance(node, dict):
        return [s for k, v in node.items() for s in (*_strings(k), *_strings(v))]
    if isinstance(node, list):
        return [s for item in node for s in _strings(item)]
    return [node] if isinstance(node, str) else []


def test_every_interpolated_variable_is_in_the_example_env_file_and_none_is_stale(compose: dict[str, Any]) -> None:
    used = {name for text in _strings(compose) for name in _INTERPOLATION.findall(text)}
    listed = _env_example_names()
    assert used - listed == set(), f"used in compose.yaml, missing from {ENV_EXAMPLE.name}"
    assert listed - used == set(), f"listed in {ENV_EXAMPLE.name}, unused by compose.yaml"


def test_every_env_file_exists(services: dict[str, dict[str, Any]]) -> None:
    for name, service in services.items():
        files = service.get("env_file") or []
        for entry in [files] if isinstance(files, str) else files:
            path = entry if isinstance(entry, str) else entry["path"]
            required = True if isinstance(entry, str) else entry.get("required", True)
            assert not required or (ROOT / path).is_file(), f"{name}: env_file {path} missing"


def test_exactly_one_scheduler_and_the_long_running_services_restart(services: dict[str, dict[str, Any]]) -> None:
    schedulers = [n for n, s in services.items() if _command(s)[:2] == ["naboom", "scheduler"]]
    assert schedulers == ["scheduler"]
    assert "replicas" not in (services["scheduler"].get("deploy") or {}) and "scale" not in services["scheduler"]
    for name, service in services.items():
        expected = "no" if name in ONE_SHOT else "unless-stopped"
        assert service.get("restart") == expected, f"{name}: restart {service.get('restart')!r}"
    assert {"postgres", "redis", "mosquitto", "api", "nginx"} <= {n for n, s in services.items() if "healthcheck" in s}
    for queue in ("critical", "general"):
        assert any(_command(s) == ["naboom", "worker", "--queue", queue] for s in services.values()), queue


def test_redis_is_append_only_and_nginx_publishes_http_and_https(services: dict[str, dict[str, Any]]) -> None:
    assert "--appendonly" in _command(services["redis"])
    assert _command(services["redis"])[_command(services["redis"]).index("--appendonly") + 1] == "yes"
    assert {"80:80", "443:443"} <= set(services["nginx"]["ports"])
    assert "ports" not in services["api"], "the API is reached through nginx only"


def test_the_nginx_container_gets_a_value_for_every_site_template_placeholder(
    services: dict[str, dict[str, Any]],
) -> None:
    # The image's envsubst leaves an unset ${NAME} in place, and nginx then fails on it.
    assert site_placeholders() <= set(services["nginx"]["environment"])


def test_mosquitto_init_gets_a_value_for_every_broker_template_placeholder(
    services: dict[str, dict[str, Any]],
) -> None:
    init = services["mosquitto-init"]
    mounted = {e.split(":")[1]: ROOT / e.split(":")[0] for e in init["volumes"] if e.startswith("./")}
    rendered = [inv for inv in _naboom_invocations(init) if inv[1:3] == ["edge", "render"]]
    assert rendered, "mosquitto-init does not render the broker template"
    template = mounted[rendered[0][3]]
    assert placeholders(template.read_text()) <= set(init["environment"])
    assert set(services["mosquitto"]["volumes"]) >= {"mosquitto-config:/mosquitto/config:ro"}


def test_every_naboom_command_the_services_run_exists(services: dict[str, dict[str, Any]]) -> None:
    runner = CliRunner()
    invocations = [(n, inv) for n, s in services.items() for inv in _naboom_invocations(s)]
    assert len(invocations) >= 7
    for name, invocation in invocations:
        # --help is eager: the subcommand path and the options before it are parsed, nothing runs.
        result = runner.invoke(main, [*invocation[1:], "--help"])
        assert result.exit_code == 0, f"{name}: `{' '.join(invocation)}` is not a naboom command: {result.output}"
