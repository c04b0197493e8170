"""`_min_copier_version` admits no Copier that lacks a feature copier.yml uses, and no more than
the Copier the template is tested with."""

from __future__ import annotations

import re
import subprocess

import pytest
import yaml
from packaging.version import InvalidVersion, Version
from support import TEMPLATE_ROOT

# The Copier release that introduced each feature, from Copier's changelog and pull requests:
# migrations as `command` + `when` entries (copier-org/copier#1510) and the `_copier_operation`
# variable (copier-org/copier#1733).
FEATURES_SINCE = {
    "migrations with `when`": Version("9.2.0"),
    "_copier_operation": Version("9.5.0"),
}


def copier_config() -> tuple[str, dict]:
    text = (TEMPLATE_ROOT / "copier.yml").read_text(encoding="utf-8")
    return text, yaml.safe_load(text)


def test_template_uses_the_features_the_minimum_accounts_for() -> None:
    text, config = copier_config()
    assert "_copier_operation" in text
    assert any("when" in migration for migration in config["_migrations"])


def test_min_copier_version_has_every_feature_and_the_pin_meets_it() -> None:
    _, config = copier_config()
    minimum = Version(config["_min_copier_version"])
    assert minimum >= max(FEATURES_SINCE.values())
    lock = (TEMPLATE_ROOT / "requirements-dev.lock").read_text(encoding="utf-8")
    pinned = Version(re.search(r"^copier==(\S+)", lock, re.MULTILINE).group(1))
    assert minimum <= pinned


def changelog_releases() -> list[str]:
    text = (TEMPLATE_ROOT / "CHANGELOG.md").read_text(encoding="utf-8")
    headings = re.findall(r"^## \[([^\]]+)\]", text, re.MULTILINE)
    assert headings and headings[0] == "Unreleased", "Keep a Changelog: [Unreleased] comes first"
    return headings[1:]


def template_tags() -> list[str]:
    return subprocess.run(["git", "tag", "--list"], cwd=TEMPLATE_ROOT, check=True, capture_output=True,
                          text=True).stdout.split()


def test_every_tag_is_a_pep440_release_with_a_changelog_section() -> None:
    """Copier and Renovate order versions by PEP 440; a tag that does not parse is invisible to
    `copier update`, and a release without notes leaves users guessing what to redeploy."""
    released = {Version(heading) for heading in changelog_releases()}
    for tag in template_tags():
        try:
            version = Version(tag)
        except InvalidVersion:
            pytest.fail(f"tag {tag!r} is not a PEP 440 version: Copier would never offer it")
        assert version in released, f"tag {tag} has no '## [{version}]' section in CHANGELOG.md"


def test_every_changelog_release_is_tagged() -> None:
    tags = template_tags()
    if not tags:
        pytest.skip("this clone has no tags (a shallow or --no-tags clone); the tag test above "
                    "still checks the changelog headings")
    assert {Version(heading) for heading in changelog_releases()} <= {Version(tag) for tag in tags}
