"""Validate CodeBuild buildspecs against schemas/buildspec.schema.json.

    python scripts/check_buildspecs.py [BUILDSPEC ...]

Without arguments it checks buildspecs/*.yml. CodeBuild ignores keys it does not know, so a typo
such as `phase:` or `command:` would otherwise surface only as a build that silently skips its
commands. Each violation is printed as `<file>: <JSON path>: [<rule>] <message>` plus a fix;
the exit status is 1 when any file is invalid.
"""

from __future__ import annotations

import argparse
import difflib
import json
import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jsonschema
import yaml
from jsonschema.exceptions import ValidationError, best_match

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_SCHEMA = REPO_ROOT / "schemas" / "buildspec.schema.json"
DEFAULT_GLOB = "buildspecs/*.yml"
REFERENCE = "https://docs.aws.amazon.com/codebuild/latest/userguide/build-spec-ref.html"


@dataclass(frozen=True)
class Violation:
    file: str
    path: str
    rule: str
    message: str
    fix: str

    def __str__(self) -> str:
        return f"{self.file}: {self.path}: [{self.rule}] {self.message}\n    fix: {self.fix}"


def json_path(parts: Iterable[Any]) -> str:
    path = "$"
    for part in parts:
        path += f"[{part}]" if isinstance(part, int) else f".{part}"
    return path


def _allowed_keys(schema: dict) -> list[str]:
    return sorted(schema.get("properties", {}))


def _suggest(key: str, allowed: list[str]) -> str:
    close = difflib.get_close_matches(key, allowed, n=1, cutoff=0.6)
    return f"rename '{key}' to '{close[0]}'" if close else f"remove '{key}'"


def describe(error: ValidationError, allowed_keys: list[str]) -> tuple[str, str]:
    """Message and fix for one violation, phrased for someone editing the YAML."""
    rule = error.validator
    if rule in ("additionalProperties", "unevaluatedProperties"):
        unexpected = [k for k in error.instance if k not in allowed_keys]
        fixes = "; ".join(_suggest(str(k), allowed_keys) for k in unexpected)
        return (
            f"unknown key(s) {', '.join(map(repr, unexpected))}; CodeBuild would ignore them",
            f"{fixes} (allowed here: {', '.join(allowed_keys)})",
        )
    if rule == "required":
        return error.message, "add the missing key; see " + REFERENCE
    if rule in ("enum", "const"):
        options = error.validator_value if rule == "enum" else [error.validator_value]
        return error.message, "use one of: " + ", ".join(json.dumps(o) for o in options)
    if rule == "type" and isinstance(error.instance, dict) and error.validator_value == "string":
        return (
            error.message,
            "quote the command: an unquoted ': ' inside a command makes YAML read a mapping",
        )
    if rule == "pattern":
        hint = error.schema.get("description") or f"use a value matching {error.validator_value}"
        return error.message, hint
    if rule == "minItems":
        return error.message, "list at least one item, or remove the key"
    if rule in ("anyOf", "oneOf", "not"):
        inner = best_match(error.context) if error.context else None
        detail = f" ({inner.message})" if inner is not None else ""
        return error.message + detail, (error.schema.get("description") or "see " + REFERENCE)
    return error.message, "see " + REFERENCE


def validate_document(
    document: Any, validator: jsonschema.Validator, file: str
) -> Iterator[Violation]:
    for error in sorted(
        validator.iter_errors(document), key=lambda e: [str(p) for p in e.absolute_path]
    ):
        allowed = _allowed_keys(_resolved(error.schema, validator))
        message, fix = describe(error, allowed)
        yield Violation(file, json_path(error.absolute_path), error.validator, message, fix)


def _resolved(schema: dict, validator: jsonschema.Validator) -> dict:
    """Merge the properties a sibling `$ref` contributes, so allowed keys are listed in full."""
    if "$ref" not in schema:
        return schema
    target = validator.schema
    for part in schema["$ref"].removeprefix("#/").split("/"):
        target = target[part]
    merged = dict(schema)
    merged["properties"] = {**target.get("properties", {}), **schema.get("properties", {})}
    return merged


def check_file(path: Path, validator: jsonschema.Validator, display: str) -> list[Violation]:
    try:
        document = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as error:
        return [Violation(display, "$", "read", str(error), "check the file name")]
    except yaml.YAMLError as error:
        return [
            Violation(
                display,
                "$",
                "yaml",
                f"not valid YAML: {error}",
                "fix the indentation or quoting at the reported line",
            )
        ]
    return list(validate_document(document, validator, display))


def load_validator(schema_path: Path) -> jsonschema.Validator:
    schema = json.loads(schema_path.read_text(encoding="utf-8"))
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "files", nargs="*", type=Path, help=f"buildspecs to check (default: {DEFAULT_GLOB})"
    )
    parser.add_argument(
        "--schema", type=Path, default=DEFAULT_SCHEMA, help="JSON Schema to validate against"
    )
    args = parser.parse_args(argv)

    files = args.files or sorted(REPO_ROOT.glob(DEFAULT_GLOB))
    if not files:
        print(f"no buildspecs found ({DEFAULT_GLOB} under {REPO_ROOT})", file=sys.stderr)
        return 1
    validator = load_validator(args.schema)
    violations = [v for f in files for v in check_file(f, validator, str(f))]
    for violation in violations:
        print(violation, file=sys.stderr)
    if violations:
        invalid = len({v.file for v in violations})
        summary = f"{len(violations)} violation(s) in {invalid} of {len(files)} buildspec(s)"
        print(summary, file=sys.stderr)
        return 1
    print(f"{len(files)} buildspec(s) valid", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
