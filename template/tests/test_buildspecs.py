"""Buildspecs: valid against schemas/buildspec.schema.json, the schema rejects typos, and every
variable a buildspec reads is set by its CodeBuild project, its pipeline action or itself."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import jsonschema
import pytest
import yaml
from cfnlint.decode import decode

REPO_ROOT = Path(__file__).resolve().parents[1]
SCHEMA_PATH = REPO_ROOT / "schemas" / "buildspec.schema.json"
CHECKER = REPO_ROOT / "scripts" / "check_buildspecs.py"
BUILDSPECS = sorted((REPO_ROOT / "buildspecs").glob("*.yml"))
# Set by CodeBuild in every build (build-env-ref-env-vars.html).
CODEBUILD_VARIABLES = {"AWS_DEFAULT_REGION", "AWS_REGION", "HOME", "PATH"}

VALID = {
    "version": 0.2,
    "phases": {
        "install": {"runtime-versions": {"python": 3.12}, "commands": ["pip install ."]},
        "build": {"commands": ["pytest"]},
    },
    "cache": {"paths": ["/root/.cache/pip/**/*"]},
}


@pytest.fixture(scope="module")
def validator() -> jsonschema.Draft202012Validator:
    schema = json.loads(SCHEMA_PATH.read_text(encoding="utf-8"))
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


@pytest.fixture(scope="module")
def toolchain() -> dict:
    template, matches = decode(str(REPO_ROOT / "infra" / "toolchain.yml"))
    assert not matches
    return template


def codebuild_projects(toolchain: dict) -> dict[str, dict]:
    return {
        logical_id: resource["Properties"]
        for logical_id, resource in toolchain["Resources"].items()
        if resource["Type"] == "AWS::CodeBuild::Project"
    }


def load_buildspec(relative: str) -> dict:
    return yaml.safe_load((REPO_ROOT / relative).read_text(encoding="utf-8"))


def commands(buildspec: dict) -> list[str]:
    return [
        command
        for phase in buildspec["phases"].values()
        for block in ("commands", "finally")
        for command in phase.get(block, [])
    ]


# --- schema -----------------------------------------------------------------------------------


@pytest.mark.parametrize("path", BUILDSPECS, ids=[p.name for p in BUILDSPECS])
def test_shipped_buildspec_is_valid(path: Path, validator: jsonschema.Validator) -> None:
    document = yaml.safe_load(path.read_text(encoding="utf-8"))
    errors = [f"{list(e.absolute_path)}: {e.message}" for e in validator.iter_errors(document)]
    assert not errors, f"{path.name}: {errors}"


def test_every_codebuild_project_has_a_shipped_buildspec(toolchain: dict) -> None:
    referenced = {p["Source"]["BuildSpec"] for p in codebuild_projects(toolchain).values()}
    shipped = {str(p.relative_to(REPO_ROOT)) for p in BUILDSPECS}
    assert referenced == shipped


def test_minimal_buildspec_is_valid(validator: jsonschema.Validator) -> None:
    assert not list(validator.iter_errors(VALID))


def _with(change: dict) -> dict:
    document = json.loads(json.dumps(VALID))
    for dotted, value in change.items():
        *parents, leaf = dotted.split(".")
        target = document
        for part in parents:
            target = target.setdefault(part, {})
        if value is None:
            target.pop(leaf)
        else:
            target[leaf] = value
    return document


@pytest.mark.parametrize(
    ("change", "rule"),
    [
        ({"version": 0.1}, "enum"),
        ({"version": None}, "required"),
        ({"phases": None, "phase": {"build": {"commands": ["make"]}}}, "additionalProperties"),
        ({"phases.build": {"command": ["make"]}}, "additionalProperties"),
        ({"phases.biuld": {"commands": ["make"]}}, "additionalProperties"),
        ({"phases.build.runtime-versions": {"python": 3.12}}, "additionalProperties"),
        ({"phases.build.commands": [{"echo a": "b"}]}, "type"),
        ({"phases.build.commands": []}, "minItems"),
        ({"phases.build.on-failure": "STOP"}, "pattern"),
        ({"env": {"variabels": {"A": "1"}}}, "additionalProperties"),
        ({"env": {"variables": {"CODEBUILD_X": "1"}}}, "pattern"),
        ({"env": {"exported-variables": ["AWS_THING"]}}, "pattern"),
        ({"cache.path": ["/root/.cache"]}, "additionalProperties"),
        ({"artifacts": {"name": "x"}}, "required"),
        ({"reports": {"pytest": {"files": ["a.xml"], "file-format": "JUNIT"}}}, "enum"),
    ],
)
def test_schema_rejects_broken_buildspec(
    change: dict, rule: str, validator: jsonschema.Validator
) -> None:
    errors = list(validator.iter_errors(_with(change)))
    assert rule in {e.validator for e in errors}, [e.message for e in errors]


def test_schema_accepts_the_documented_retry_forms(validator: jsonschema.Validator) -> None:
    for value in ("ABORT", "CONTINUE", "RETRY", "RETRY-3", "RETRY-timeout", "RETRY-2-throttl.*"):
        assert not list(validator.iter_errors(_with({"phases.build.on-failure": value}))), value


# --- scripts/check_buildspecs.py (the pre-commit hook) ---------------------------------------


def run_checker(*files: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(CHECKER), *map(str, files)],
        capture_output=True,
        text=True,
        check=False,
    )


def test_checker_passes_the_shipped_buildspecs() -> None:
    result = run_checker()
    assert result.returncode == 0, result.stderr


def test_checker_names_file_path_rule_and_fix(tmp_path: Path) -> None:
    broken = tmp_path / "buildspec.yml"
    broken.write_text("version: 0.3\nphases:\n  build:\n    command:\n      - make\n")
    result = run_checker(BUILDSPECS[0], broken)
    assert result.returncode == 1
    assert f"{broken}: $.phases.build: [additionalProperties]" in result.stderr
    assert "rename 'command' to 'commands'" in result.stderr
    assert f"{broken}: $.version: [enum]" in result.stderr
    assert str(BUILDSPECS[0]) not in result.stderr


def test_checker_reports_invalid_yaml(tmp_path: Path) -> None:
    broken = tmp_path / "buildspec.yml"
    broken.write_text("version: 0.2\nphases:\n  build:\n    commands: [\n")
    result = run_checker(broken)
    assert result.returncode == 1
    assert "[yaml]" in result.stderr


# --- buildspecs and the toolchain -------------------------------------------------------------

READ = re.compile(r"\$\{?([A-Z_][A-Z0-9_]*)")
ASSIGNED = re.compile(r"(?:^|[\s;])(?:export\s+)?([A-Z_][A-Z0-9_]*)=")


def pipeline_actions(toolchain: dict) -> Iterator[dict]:
    """Every action of every CodePipeline in the toolchain."""
    for resource in toolchain["Resources"].values():
        if resource["Type"] == "AWS::CodePipeline::Pipeline":
            for stage in resource["Properties"]["Stages"]:
                yield from stage["Actions"]


def _action_variables(toolchain: dict, logical_id: str) -> list[set[str]]:
    """Variable names each pipeline action running the project sets (one set per action).
    Multi-account projects build the list with !Sub; its ${...} sit inside JSON strings."""
    found = []
    for action in pipeline_actions(toolchain):
        configuration = action.get("Configuration", {})
        if configuration.get("ProjectName") == {"Ref": logical_id}:
            text = configuration.get("EnvironmentVariables", "[]")
            variables = json.loads(text["Fn::Sub"] if isinstance(text, dict) else text)
            found.append({v["name"] for v in variables})
    return found


def test_every_variable_a_buildspec_reads_is_set(toolchain: dict) -> None:
    for logical_id, project in codebuild_projects(toolchain).items():
        buildspec = load_buildspec(project["Source"]["BuildSpec"])
        script = "\n".join(commands(buildspec))
        own = set(buildspec.get("env", {}).get("variables", {})) | set(ASSIGNED.findall(script))
        from_project = {v["Name"] for v in project["Environment"]["EnvironmentVariables"]}
        actions = _action_variables(toolchain, logical_id)
        # A variable every action running the project sets is set in every run too.
        from_every_action = set.intersection(*actions) if actions else set()
        always = CODEBUILD_VARIABLES | own | from_project | from_every_action
        # ${NAME:-} reads tolerate an unset variable; every other read must be set in every run.
        optional = set(re.findall(r"\$\{([A-Z_][A-Z0-9_]*):-", script))
        read = set(READ.findall(script))
        unset = read - always - optional
        assert not unset, f"{project['Source']['BuildSpec']} reads {sorted(unset)}, never set"
        for action in actions:
            assert action <= from_project | optional | read, (logical_id, action - read)


def test_pipeline_variables_come_from_exported_buildspec_variables(toolchain: dict) -> None:
    projects = codebuild_projects(toolchain)
    exported: dict[str, set[str]] = {}
    used: set[tuple[str, str]] = set()
    for action in pipeline_actions(toolchain):
        configuration = action.get("Configuration", {})
        if "Namespace" in action:
            project = projects[configuration["ProjectName"]["Ref"]]
            buildspec = load_buildspec(project["Source"]["BuildSpec"])
            exported[action["Namespace"]] = set(
                buildspec.get("env", {}).get("exported-variables", [])
            )
        used |= set(re.findall(r"#\{(\w+)\.(\w+)\}", json.dumps(configuration)))
    assert used, "the deploy pipeline should promote the staging package through a variable"
    for namespace, name in used:
        assert name in exported.get(namespace, set()), f"#{{{namespace}.{name}}} is never exported"


def test_buildspec_caches_only_with_a_project_cache(toolchain: dict) -> None:
    for project in codebuild_projects(toolchain).values():
        buildspec = load_buildspec(project["Source"]["BuildSpec"])
        if "cache" in buildspec:
            assert project.get("Cache", {}).get("Type", "NO_CACHE") != "NO_CACHE"
            pip_cache = buildspec["env"]["variables"]["PIP_CACHE_DIR"]
            assert f"{pip_cache}/**/*" in buildspec["cache"]["paths"]


def test_deploy_buildspec_passes_the_endpoint_parameters() -> None:
    endpoint, matches = decode(str(REPO_ROOT / "infra" / "endpoint.yml"))
    assert not matches
    script = "\n".join(commands(load_buildspec("buildspecs/deploy.yml")))
    deploy = next(c for c in script.split("\n") if "aws cloudformation deploy" in c)
    overrides = deploy.split("--parameter-overrides", 1)[1].split("--tags", 1)[0]
    passed = set(re.findall(r"\b([A-Z][A-Za-z0-9]+)=", overrides))
    # ml-pipeline deploy-params prints these (the CLI contract); $PARAMS expands to them.
    from_cli = {
        "ModelPackageArn",
        "Stage",
        "EndpointInstanceType",
        "InitialInstanceCount",
        "DataCaptureSamplingPercentage",
    }
    assert "$PARAMS" in overrides
    parameters = endpoint["Parameters"]
    required = {name for name, spec in parameters.items() if "Default" not in spec}
    # Parameters with a default (prod autoscaling bounds) may be left to it.
    assert required <= passed | from_cli <= set(parameters)
    assert not passed & from_cli
    assert "--role-arn" in deploy
    assert "--no-fail-on-empty-changeset" in deploy
