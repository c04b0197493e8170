"""Lambda behind the product's Custom::CopierSeed resource.

CloudFormation calls it to create or update the seed: it starts the seed build and returns at
once, because the build can run for longer than a Lambda invocation. The build's end arrives as a
CodeBuild state-change event, and only then is CloudFormation answered, SUCCESS or FAILED with the
build's log location, so a failed seed names the place to look. Deleting the seed answers SUCCESS
without a build: the repository and the toolchain stack are kept on purpose (catalog/product.yml).
"""

from __future__ import annotations

import json
import urllib.request
from typing import Any

import boto3

# The response coordinates travel with the build so the completion event can answer the request
# that started it, even after a retry or an update started another build.
RESPONSE_VARIABLE = "SEED_CLOUDFORMATION_REQUEST"
ANSWERS_VARIABLE = "SEED_ANSWERS"


def handler(event: dict[str, Any], context: Any = None) -> None:
    codebuild = boto3.client("codebuild")
    if "RequestType" in event:
        on_cloudformation_request(event, codebuild)
    elif event.get("source") == "aws.codebuild":
        on_build_finished(event, codebuild)


def physical_id(event: dict[str, Any]) -> str:
    # Stable across updates: a new id would make CloudFormation delete the "old" seed.
    return event.get("PhysicalResourceId") or f"copier-seed-{event['LogicalResourceId']}"


def on_cloudformation_request(event: dict[str, Any], codebuild: Any) -> None:
    if event["RequestType"] == "Delete":
        send(event, "SUCCESS", "Repository and toolchain stack are kept; see the product description.", {})
        return
    properties = event["ResourceProperties"]
    request = {key: event[key] for key in ("ResponseURL", "StackId", "RequestId", "LogicalResourceId")}
    request["PhysicalResourceId"] = physical_id(event)
    request["TemplateVersion"] = properties["TemplateVersion"]
    try:
        codebuild.start_build(
            projectName=properties["SeedProject"],
            environmentVariablesOverride=[
                {"name": ANSWERS_VARIABLE, "value": json.dumps(properties["Answers"]), "type": "PLAINTEXT"},
                {"name": RESPONSE_VARIABLE, "value": json.dumps(request), "type": "PLAINTEXT"},
            ],
        )
    except Exception as error:  # any failure to start must reach CloudFormation, or the stack waits an hour
        send(event, "FAILED", f"Could not start CodeBuild project {properties['SeedProject']}: {error}", {})


def on_build_finished(event: dict[str, Any], codebuild: Any) -> None:
    detail = event["detail"]
    build = codebuild.batch_get_builds(ids=[detail["build-id"]])["builds"][0]
    variables = {v["name"]: v["value"] for v in build["environment"].get("environmentVariables", [])}
    if RESPONSE_VARIABLE not in variables:
        return  # a build started by hand (a re-run from the console) answers no CloudFormation request
    request = json.loads(variables[RESPONSE_VARIABLE])
    status = detail["build-status"]
    if status == "SUCCEEDED":
        send(request, "SUCCESS", f"Seed build {build['id']} succeeded.", {"SeededVersion": request["TemplateVersion"]})
    else:
        send(request, "FAILED", failure_reason(build, status), {})


def failure_reason(build: dict[str, Any], status: str) -> str:
    logs = build.get("logs", {})
    where = f"CloudWatch Logs group {logs.get('groupName', '?')}, stream {logs.get('streamName', '?')}"
    if logs.get("deepLink"):
        where += f" ({logs['deepLink']})"
    failed_phase = next((p["phaseType"] for p in build.get("phases", [])
                         if p.get("phaseStatus") not in (None, "SUCCEEDED")), None)
    phase = f" in phase {failed_phase}" if failed_phase else ""
    return f"Seed build {build['id']} {status}{phase}. Its log: {where}."


def send(request: dict[str, Any], status: str, reason: str, data: dict[str, str]) -> None:
    body = json.dumps({
        "Status": status,
        # The whole response must stay under 4,096 bytes; the log location is at the end, keep it.
        "Reason": reason if len(reason) < 3000 else reason[:1000] + " ... " + reason[-1900:],
        "PhysicalResourceId": physical_id(request),
        "StackId": request["StackId"],
        "RequestId": request["RequestId"],
        "LogicalResourceId": request["LogicalResourceId"],
        "Data": data,
    }).encode()
    put = urllib.request.Request(request["ResponseURL"], data=body, method="PUT",
                                 headers={"Content-Type": "", "Content-Length": str(len(body))})
    with urllib.request.urlopen(put, timeout=30):
        pass
