"""Static checks of the Dockerfile and .dockerignore.

No Docker engine is needed: a small parser reads the Dockerfile's
instructions the way the Dockerfile reference describes them (comment lines,
backslash line continuations, ARG substitution in FROM), and each test checks
one rule of the image.
"""

from __future__ import annotations

import fnmatch
import json
import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCKERFILE = ROOT / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"

WORKER_UID = 10001
SECRET_NAME = re.compile(r"password|secret|token", re.IGNORECASE)


@dataclass
class Instruction:
    keyword: str
    arguments: str
    line: int


@dataclass
class Stage:
    image: str
    name: str | None
    instructions: list[Instruction] = field(default_factory=list)

    def find(self, keyword: str) -> list[Instruction]:
        return [item for item in self.instructions if item.keyword == keyword]


def parse_instructions(text: str) -> list[Instruction]:
    """Split Dockerfile text into instructions, joining continued lines.

    Lines whose first non-blank character is `#` are comments, also inside a
    continued instruction, as in BuildKit's parser. Only the default
    backslash escape is supported, not the `# escape=` directive.
    """
    instructions: list[Instruction] = []
    pending: list[str] = []
    start_line = 0
    for number, raw in enumerate(text.splitlines(), start=1):
        stripped = raw.strip()
        if stripped.startswith("#") or (not stripped and not pending):
            continue
        if not pending:
            start_line = number
        if stripped.endswith("\\"):
            pending.append(stripped[:-1].strip())
            continue
        pending.append(stripped)
        joined = " ".join(part for part in pending if part)
        pending = []
        keyword, _, arguments = joined.partition(" ")
        instructions.append(Instruction(keyword.upper(), arguments.strip(), start_line))
    if pending:
        raise ValueError(f"the instruction starting on line {start_line} ends with a line continuation")
    return instructions


def substitute(value: str, variables: dict[str, str]) -> str:
    """Expand $NAME, ${NAME} and ${NAME:-default} from the given variables."""

    def expand(match: re.Match[str]) -> str:
        name = match.group("braced") or match.group("bare")
        default = match.group("default")
        found = variables.get(name, "")
        return found if found else (default or "")

    pattern = r"\$(?:\{(?P<braced>\w+)(?::-(?P<default>[^}]*))?\}|(?P<bare>\w+))"
    return re.sub(pattern, expand, value)


def parse_arg(arguments: str) -> tuple[str, str | None]:
    name, equals, default = arguments.partition("=")
    return name.strip(), (default.strip().strip("\"'") if equals else None)


def parse_env(arguments: str) -> dict[str, str]:
    """Return the variables one ENV instruction sets, in both of its forms."""
    words = shlex.split(arguments)
    if words and "=" not in words[0]:
        # The legacy form `ENV NAME value with spaces` sets one variable.
        return {words[0]: " ".join(words[1:])}
    return dict(word.split("=", 1) for word in words)


def parse_stages(instructions: list[Instruction]) -> list[Stage]:
    """Group instructions into build stages, resolving global ARGs in FROM."""
    global_args: dict[str, str] = {}
    stages: list[Stage] = []
    for item in instructions:
        if item.keyword == "ARG" and not stages:
            name, default = parse_arg(item.arguments)
            global_args[name] = default or ""
            continue
        if item.keyword == "FROM":
            words = [word for word in item.arguments.split() if not word.startswith("--")]
            name = words[2] if len(words) >= 3 and words[1].upper() == "AS" else None
            stages.append(Stage(substitute(words[0], global_args), name))
            continue
        if not stages:
            raise ValueError(f"line {item.line}: {item.keyword} appears before the first FROM")
        stages[-1].instructions.append(item)
    return stages


def is_exec_form(arguments: str) -> bool:
    try:
        value = json.loads(arguments)
    except json.JSONDecodeError:
        return False
    return isinstance(value, list) and bool(value) and all(isinstance(word, str) for word in value)


def copy_sources(item: Instruction) -> list[str]:
    """Return the build-context paths a COPY or ADD reads; empty for --from copies."""
    words = shlex.split(item.arguments)
    if any(word.startswith("--from") for word in words):
        return []
    paths = [word for word in words if not word.startswith("--")]
    if paths and paths[0].startswith("["):
        paths = json.loads(item.arguments[item.arguments.index("[") :])
    return paths[:-1]


def context_path(source: str) -> str:
    """Return a COPY source as a path relative to the context root."""
    path = source.removeprefix("./").rstrip("/")
    return path or "."


def stage_env(stage: Stage, before_line: int) -> dict[str, str]:
    variables: dict[str, str] = {}
    for item in stage.find("ENV"):
        if item.line < before_line:
            variables.update(parse_env(item.arguments))
    return variables


@pytest.fixture(scope="module")
def stages() -> list[Stage]:
    return parse_stages(parse_instructions(DOCKERFILE.read_text(encoding="utf-8")))


@pytest.fixture(scope="module")
def final_stage(stages: list[Stage]) -> Stage:
    return stages[-1]


@pytest.fixture(scope="module")
def ignore_patterns() -> list[str]:
    lines = DOCKERIGNORE.read_text(encoding="utf-8").splitlines()
    return [line.strip() for line in lines if line.strip() and not line.strip().startswith("#")]


def is_ignored(path: str, patterns: list[str]) -> bool:
    """Apply .dockerignore patterns in order; a later `!pattern` re-includes."""
    ignored = False
    for pattern in patterns:
        negated = pattern.startswith("!")
        cleaned = pattern.lstrip("!").strip("/")
        if cleaned.startswith("**/"):
            matches = fnmatch.fnmatch(Path(path).name, cleaned[3:]) or fnmatch.fnmatch(path, cleaned[3:])
        else:
            matches = fnmatch.fnmatch(path, cleaned) or path.startswith(cleaned + "/")
        if matches:
            ignored = not negated
    return ignored


# The parser itself.


def test_parser_joins_continued_lines():
    text = "FROM x\nRUN a \\\n  # a comment inside the instruction\n  && b\n"
    instructions = parse_instructions(text)
    assert [item.keyword for item in instructions] == ["FROM", "RUN"]
    assert instructions[1].arguments == "a && b"
    assert instructions[1].line == 2


def test_parser_resolves_global_arg_in_from():
    text = "ARG BASE=python:3.11-slim\nFROM ${BASE} AS build\nFROM $BASE\n"
    stages = parse_stages(parse_instructions(text))
    assert [stage.image for stage in stages] == ["python:3.11-slim", "python:3.11-slim"]
    assert stages[0].name == "build"


def test_parser_reads_both_env_forms():
    assert parse_env("A=1 B='two words'") == {"A": "1", "B": "two words"}
    assert parse_env("A one two") == {"A": "one two"}


def test_parser_rejects_dangling_continuation():
    with pytest.raises(ValueError, match="line continuation"):
        parse_instructions("FROM x\nRUN a \\\n")


# Stages and base image.


def test_build_is_multi_stage(stages):
    assert len(stages) >= 2, "expected a builder stage and a runtime stage"


def test_final_stage_is_slim_python(final_stage):
    assert re.fullmatch(r"python:3\.11(\.\d+)?-slim(-\w+)?(@sha256:[0-9a-f]{64})?", final_stage.image), (
        f"final stage image is {final_stage.image!r}, expected python:3.11-slim"
    )


def test_final_stage_installs_no_toolchain(final_stage):
    for item in final_stage.find("RUN"):
        assert not re.search(r"\b(gcc|g\+\+|build-essential|make)\b", item.arguments), (
            f"line {item.line} installs a compiler in the runtime stage"
        )
        assert not re.search(r"\bpip\b.*\binstall\b", item.arguments), (
            f"line {item.line} runs pip in the runtime stage; install in the builder stage"
        )


def test_final_stage_copies_only_from_builder(final_stage):
    for item in final_stage.find("COPY") + final_stage.find("ADD"):
        assert "--from=" in item.arguments, f"line {item.line} copies from the build context into the runtime stage"


# User, signals and entrypoint.


def test_final_stage_user_is_numeric_non_root(final_stage):
    users = final_stage.find("USER")
    assert users, "the runtime stage has no USER instruction, so the worker would run as root"
    user, _, group = users[-1].arguments.partition(":")
    assert user.isdigit(), f"USER {users[-1].arguments} is not numeric; Kubernetes runAsNonRoot needs a UID"
    assert int(user) != 0, "USER is root"
    assert int(user) == WORKER_UID, f"USER {user} differs from the chart's runAsUser {WORKER_UID}"
    assert not group or (group.isdigit() and int(group) != 0), f"USER group {group!r} is not a numeric non-root GID"


def test_user_is_set_before_entrypoint(final_stage):
    user_line = max(item.line for item in final_stage.find("USER"))
    for item in final_stage.find("ENTRYPOINT") + final_stage.find("CMD"):
        assert user_line < item.line, f"USER comes after {item.keyword} on line {item.line}"


def test_stopsignal_is_sigterm(final_stage):
    signals = [item.arguments for item in final_stage.find("STOPSIGNAL")]
    assert signals == ["SIGTERM"]


def test_entrypoint_and_cmd_use_exec_form(final_stage):
    commands = final_stage.find("ENTRYPOINT") + final_stage.find("CMD")
    assert commands, "the runtime stage has neither ENTRYPOINT nor CMD"
    for item in commands:
        assert is_exec_form(item.arguments), (
            f"{item.keyword} on line {item.line} uses shell form, so a shell would be PID 1 and swallow SIGTERM"
        )


def test_healthcheck_probes_live_endpoint(final_stage):
    checks = final_stage.find("HEALTHCHECK")
    assert len(checks) == 1
    options, _, command = checks[0].arguments.partition("CMD ")
    assert is_exec_form(command), "HEALTHCHECK CMD should be a JSON array"
    assert "/health/live" in command
    assert "curl" not in command and "wget" not in command, "the slim image has neither curl nor wget"


def test_port_8000_is_exposed(final_stage):
    ports = [word for item in final_stage.find("EXPOSE") for word in item.arguments.split()]
    assert "8000" in ports or "8000/tcp" in ports


def test_runtime_env_disables_bytecode_writes(final_stage):
    variables = stage_env(final_stage, before_line=10**9)
    assert variables.get("PYTHONDONTWRITEBYTECODE") == "1"
    assert variables.get("PYTHONUNBUFFERED") == "1"


# Secrets, context and caches.


def test_no_copy_of_tests_or_git(stages):
    for stage in stages:
        for item in stage.find("COPY") + stage.find("ADD"):
            for source in copy_sources(item):
                top = context_path(source).split("/")[0]
                assert top not in {"tests", ".git", ".venv", ".cache"}, f"line {item.line} copies {source}"
                if top == ".":
                    pytest.fail(f"line {item.line} copies the whole context; copy the package directories by name")


def test_no_secret_build_args_or_env(stages):
    for stage in stages:
        for item in stage.find("ARG"):
            name, _ = parse_arg(item.arguments)
            assert not SECRET_NAME.search(name), f"ARG {name} on line {item.line} would record a secret in the image history"
        for item in stage.find("ENV"):
            for name, value in parse_env(item.arguments).items():
                names_a_path = name.upper().endswith(("_DIR", "_FILE"))
                assert not (SECRET_NAME.search(name) and value and not names_a_path), (
                    f"ENV {name} on line {item.line} bakes a secret value into the image"
                )


def test_pip_runs_without_cache(stages):
    for stage in stages:
        for item in stage.find("RUN"):
            if not re.search(r"\bpip\b.*\b(install|wheel)\b", item.arguments):
                continue
            cache_off = stage_env(stage, item.line).get("PIP_NO_CACHE_DIR", "").lower() in {"1", "true", "on", "yes"}
            assert cache_off or "--no-cache-dir" in item.arguments, (
                f"pip on line {item.line} keeps its download cache in the layer"
            )


@pytest.mark.parametrize(
    "path",
    [".git", ".venv", ".cache", "tests", "bench", "docs", "worker/__pycache__", ".pytest_cache", ".env"],
)
def test_dockerignore_excludes(path, ignore_patterns):
    assert is_ignored(path, ignore_patterns), f".dockerignore does not exclude {path}"


def test_copied_sources_exist_in_context(stages, ignore_patterns):
    for stage in stages:
        for item in stage.find("COPY") + stage.find("ADD"):
            for source in copy_sources(item):
                assert (ROOT / source).exists(), f"line {item.line} copies {source}, which is not in the repository"
                assert not is_ignored(context_path(source), ignore_patterns), (
                    f"line {item.line} copies {source}, which .dockerignore excludes from the context"
                )
