"""`_min_copier_version` admits no Copier that lacks a feature copier.yml uses, and no more than
the Copier the template is tested with."""

from __future__ import annotations

import re

import yaml
from packaging.version import Version
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
