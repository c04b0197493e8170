"""Bad answers are refused before any file is written, with a message saying what is allowed."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import copier
import pytest
import yaml
from support import TEMPLATE_ROOT, VARIANTS, offline_env, preset

BAD_ANSWERS = [
    ("org_size", "huge", "'huge' is not in ['small', 'medium', 'large']"),
    ("project_name", "1-starts-with-digit", "not a valid project name"),
    ("project_name", "a" * 33, "not a valid project name"),
    ("project_name", "ends-with-hyphen-", "not a valid project name"),
    ("project_name", "has_underscore", "not a valid project name"),
    ("project_description", "", "one line of 1-256 characters"),
    ("project_description", "two\nlines", "one line of 1-256 characters"),
    ("aws_region", "mars-north-1", "not a region where SageMaker Pipelines is available"),
    ("aws_region", "cn-north-1", "not a region where SageMaker Pipelines is available"),
    ("git_provider", "svn", "'svn' is not in ['github', 'gitlab', 'bitbucket', 'codecommit']"),
    ("repository_id", "https://github.com/my-org/repo", "not a full repository id"),
    ("repository_id", "repo-without-owner", "not a full repository id"),
    ("branch", "feature..x", "not a valid branch name"),
    ("branch", "/main", "not a valid branch name"),
    ("codeconnections_arn", "arn:aws:codeconnections:us-east-1:123456789012:connection/"
     "0123abcd-0123-4567-89ab-0123456789ab", "not a CodeConnections connection ARN in eu-west-1"),
    ("codeconnections_arn", "not-an-arn", "not a CodeConnections connection ARN"),
    ("notification_email", "ml-team.example.com", "not an e-mail address"),
    ("notification_email", "ml team@example.com", "not an e-mail address"),
    ("problem_type", "multiclass", "'multiclass' is not in ['regression', 'binary_classification']"),
    ("processing_instance_type", "m5.large", "not a SageMaker instance type"),
    ("training_instance_type", "ml.m5", "not a SageMaker instance type"),
    ("endpoint_instance_type", "", "not a SageMaker instance type"),
]


@pytest.mark.parametrize(("question", "value", "message"), BAD_ANSWERS,
                         ids=[f"{q}={v[:20]!r}" for q, v, _ in BAD_ANSWERS])
def test_bad_answer_is_refused_and_nothing_is_written(template_snapshot: Path, tmp_path: Path,
                                                      question: str, value: str, message: str) -> None:
    destination = tmp_path / "project"
    with pytest.raises(ValueError, match=re.escape(message)) as refused:
        copier.run_copy(str(template_snapshot), str(destination),
                        data={**preset("small"), question: value},
                        defaults=True, unsafe=True, vcs_ref="HEAD", quiet=True)
    assert question in str(refused.value)
    assert not destination.exists()


BAD_ACCOUNTS = [
    ({"tooling_account_id": "11111111111"}, "tooling_account_id",
     'The tooling account id "11111111111" must be 12 digits'),
    ({"staging_account_id": "2222-2222-2222"}, "staging_account_id",
     'The staging account id "2222-2222-2222" must be 12 digits'),
    ({"prod_account_id": ""}, "prod_account_id", 'The prod account id "" must be 12 digits'),
    ({"staging_account_id": "111111111111"}, "staging_account_id",
     "The staging account id must differ from the tooling account id (111111111111)"),
    ({"prod_account_id": "111111111111"}, "prod_account_id",
     "The prod account id must differ from the tooling account id (111111111111)"),
    ({"prod_account_id": "222222222222"}, "prod_account_id",
     "The prod account id must differ from the staging account id (222222222222)"),
]

# Large adds two accounts and the organisation's guardrails; the medium checks apply as well.
BAD_LARGE_ANSWERS = [
    ({"dev_account_id": "4444"}, "dev_account_id", 'The dev account id "4444" must be 12 digits'),
    ({"dev_account_id": "333333333333"}, "dev_account_id",
     "The dev account id must differ from the tooling (111111111111), staging"),
    ({"governance_account_id": "x55555555555"}, "governance_account_id",
     'The governance account id "x55555555555" must be 12 digits'),
    ({"governance_account_id": "444444444444"}, "governance_account_id",
     "The governance account id must differ from the tooling (111111111111)"),
    ({"staging_account_id": "111111111111"}, "staging_account_id",
     "The staging account id must differ from the tooling account id (111111111111)"),
    ({"permissions_boundary_arn": ""}, "permissions_boundary_arn",
     "The large layout needs a permissions boundary"),
    ({"permissions_boundary_arn": "arn:aws:iam::555555555555:role/Boundary"},
     "permissions_boundary_arn", "is not the ARN of a customer managed IAM policy"),
    ({"permissions_boundary_arn": "arn:aws:iam::aws:policy/PowerUserAccess"},
     "permissions_boundary_arn", "is not the ARN of a customer managed IAM policy"),
    ({"required_tags": {}}, "required_tags", "Give the required tags as a non-empty YAML mapping"),
    ({"required_tags": ["owner"]}, "required_tags", "non-empty YAML mapping"),
    ({"required_tags": {"aws:owner": "x"}}, "required_tags", 'Tag key "aws:owner" is reserved'),
    ({"required_tags": {"Project": "x"}}, "required_tags", 'Tag key "Project" is reserved'),
    ({"required_tags": {"owner": "a<b"}}, "required_tags", 'The value of tag "owner" must be text'),
    ({"required_tags": {"cost centre!": "1"}}, "required_tags", 'Tag key "cost centre!" must be'),
    ({"segment_attributes": "mean_radius"}, "segment_attributes", "as a YAML list of column names"),
    ({"segment_attributes": ["mean radius"]}, "segment_attributes", '"mean radius" is not a column name'),
]


@pytest.mark.parametrize(
    ("size", "change", "question", "message"),
    [("medium", *case) for case in BAD_ACCOUNTS] + [("large", *case) for case in BAD_LARGE_ANSWERS],
    ids=[f"medium-{q}={next(iter(c.values()))!r}" for c, q, _ in BAD_ACCOUNTS]
    + [f"large-{q}={next(iter(c.values()))!r}" for c, q, _ in BAD_LARGE_ANSWERS])
def test_bad_account_or_guardrail_answer_is_refused_and_nothing_is_written(
        template_snapshot: Path, tmp_path: Path, size: str, change: dict, question: str,
        message: str) -> None:
    destination = tmp_path / "project"
    with pytest.raises(ValueError, match=re.escape(message)) as refused:
        copier.run_copy(str(template_snapshot), str(destination),
                        data={**preset(size), **change},
                        defaults=True, unsafe=True, vcs_ref="HEAD", quiet=True)
    assert question in str(refused.value)
    assert not destination.exists()


def test_large_without_a_permissions_boundary_fails_on_the_command_line(template_snapshot: Path,
                                                                      tmp_path: Path) -> None:
    """A preset without the boundary ARN: --defaults cannot invent one, so the copy stops."""
    answers = {key: value for key, value in preset("large").items()
               if key != "permissions_boundary_arn"}
    data_file = tmp_path / "answers.yml"
    data_file.write_text(yaml.safe_dump(answers))
    destination = tmp_path / "project"
    result = subprocess.run(
        [sys.executable, "-m", "copier", "copy", "--trust", "--defaults", "--vcs-ref", "HEAD",
         "--data-file", str(data_file), str(template_snapshot), str(destination)],
        capture_output=True, text=True, stdin=subprocess.DEVNULL)
    assert result.returncode != 0
    assert "The large layout needs a permissions boundary" in result.stderr
    assert not destination.exists()


def test_codecommit_repository_name_rules_apply_to_codecommit(template_snapshot: Path,
                                                             tmp_path: Path) -> None:
    destination = tmp_path / "project"
    with pytest.raises(ValueError, match="not a valid CodeCommit repository name"):
        copier.run_copy(str(template_snapshot), str(destination),
                        data={**preset("small"), "git_provider": "codecommit",
                              "repository_id": "owner/repo"},
                        defaults=True, unsafe=True, vcs_ref="HEAD", quiet=True)
    assert not destination.exists()


def test_cli_refuses_bad_answer_with_message_and_leaves_no_folder(template_snapshot: Path,
                                                                  tmp_path: Path) -> None:
    destination = tmp_path / "project"
    result = subprocess.run(
        [sys.executable, "-m", "copier", "copy", "--trust", "--defaults", "--vcs-ref", "HEAD",
         "--data-file", str(VARIANTS / "small.yml"), "--data", "project_name=9lives",
         str(template_snapshot), str(destination)],
        capture_output=True, text=True, stdin=subprocess.DEVNULL)
    assert result.returncode != 0
    assert '"9lives" is not a valid project name' in result.stderr
    assert not destination.exists()


def test_longest_valid_project_name_is_accepted(render) -> None:
    project = render("small", skip_tasks=True, project_name="a" + "-b" * 15 + "c")
    answers = yaml.safe_load((project / ".copier-answers.yml").read_text())
    assert len(answers["project_name"]) == 32


def test_region_list_matches_botocore(generated_python: Path) -> None:
    """The validator's regions are botocore's SageMaker regions in the commercial partition;
    this fails when a botocore upgrade (in the generated project's pins) adds or drops one."""
    script = ("import boto3, json; print(json.dumps(sorted(boto3.Session()"
              ".get_available_regions('sagemaker', partition_name='aws'))))")
    known = json.loads(subprocess.run([str(generated_python), "-c", script], check=True,
                                      capture_output=True, text=True,
                                      env=offline_env(generated_python)).stdout)
    validator = yaml.safe_load((TEMPLATE_ROOT / "copier.yml").read_text())["aws_region"]["validator"]
    listed = sorted(re.findall(r'"([a-z]{2}-[a-z]+-\d)"', validator))
    assert listed == known
