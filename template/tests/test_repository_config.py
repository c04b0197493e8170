"""The repository's own tooling stays hermetic and in step with pyproject.toml."""

import json
import re
import tomllib
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
PIN = re.compile(r"^([A-Za-z0-9_.-]+)(?:\[[^\]]*\])?==(\S+)$")


def _pins(requirements: list[str]) -> dict[str, str]:
    pins = {}
    for requirement in requirements:
        match = PIN.match(requirement)
        assert match, f"{requirement!r} is not pinned with =="
        pins[match.group(1).lower()] = match.group(2)
    return pins


def test_pre_commit_hooks_are_local_and_pinned_like_the_dev_extra():
    config = yaml.safe_load((ROOT / ".pre-commit-config.yaml").read_text())
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    extras = project["optional-dependencies"]
    self_reference = f"{project['name']}[pipeline]"
    assert self_reference in extras["dev"], "dev installs the pipeline extra"
    dev_pins = _pins(
        project["dependencies"]
        + extras["pipeline"]
        + [r for r in extras["dev"] if r != self_reference]
    )
    hooks = [hook for repo in config["repos"] for hook in repo["hooks"]]
    assert {repo["repo"] for repo in config["repos"]} == {"local"}
    expected_hooks = {"ruff-check", "cfn-lint", "buildspec-schema", "yamllint"}
    assert {hook["id"] for hook in hooks} >= expected_hooks
    for hook in hooks:
        for package, version in _pins(hook.get("additional_dependencies", [])).items():
            pinned = dev_pins.get(package)
            assert pinned == version, (
                f"hook {hook['id']}: {package}=={version}, pyproject: {pinned}"
            )


# Renovate's Copier manager finds answers files by this pattern (its documented default).
RENOVATE_COPIER_FILES = re.compile(r"(^|/)\.copier-answers(\..+)?\.ya?ml")


def test_renovate_updates_the_template_with_its_hook_allowed():
    config = json.loads((ROOT / "renovate.json").read_text())
    assert config["enabledManagers"] == ["copier"]
    # The template validates the merged result with a hook, which Copier runs only with --trust;
    # Renovate passes --trust only when scripts are not ignored.
    assert config["ignoreScripts"] is False
    (rule,) = config["packageRules"]
    assert rule["matchManagers"] == ["copier"]
    assert rule["versioning"] == "pep440"
    answers = [p.relative_to(ROOT).as_posix() for p in ROOT.glob(".copier-answers*.y*ml")]
    assert answers, "Copier writes the answers file Renovate reads"
    assert all(RENOVATE_COPIER_FILES.search(name) for name in answers)
