"""The SageMaker training pipeline: preprocess -> train -> evaluate and baseline -> quality gate ->
register (with the baseline as the package's drift-check baseline).

Built with the SageMaker Python SDK v3 (sagemaker-core, sagemaker-train, sagemaker-serve and
sagemaker-mlops). Building the definition makes no SageMaker call; it only uploads the two
processing scripts to the artifact bucket.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import boto3
from sagemaker.core import image_uris
from sagemaker.core.drift_check_baselines import DriftCheckBaselines
from sagemaker.core.model_metrics import MetricsSource, ModelMetrics
from sagemaker.core.network import NetworkConfig
from sagemaker.core.processing import ScriptProcessor
from sagemaker.core.shapes import (
    ProcessingInput,
    ProcessingOutput,
    ProcessingS3Input,
    ProcessingS3Output,
    Tag,
)
from sagemaker.core.training.configs import Compute, InputData, Networking, OutputDataConfig
from sagemaker.core.workflow.conditions import (
    ConditionGreaterThanOrEqualTo,
    ConditionLessThanOrEqualTo,
)
from sagemaker.core.workflow.execution_variables import ExecutionVariables
from sagemaker.core.workflow.functions import Join, JsonGet
from sagemaker.core.workflow.parameters import ParameterFloat, ParameterInteger, ParameterString
from sagemaker.core.workflow.pipeline_context import PipelineSession
from sagemaker.core.workflow.properties import PropertyFile
from sagemaker.mlops.workflow.condition_step import ConditionStep
from sagemaker.mlops.workflow.fail_step import FailStep
from sagemaker.mlops.workflow.model_step import ModelStep
from sagemaker.mlops.workflow.pipeline import Pipeline
from sagemaker.mlops.workflow.steps import CacheConfig, ProcessingStep, TrainingStep
from sagemaker.serve.model_builder import ModelBuilder
from sagemaker.train import ModelTrainer

from ml_pipeline.config import REPORT_SECTIONS, PipelineConfig

SCRIPTS_DIR = Path(__file__).parent
PROCESSING_DIR = "/opt/ml/processing"
# Reuse a step's result while its inputs are unchanged; a month keeps reruns of the same
# data cheap without pinning a stale result forever.
CACHE_CONFIG = CacheConfig(enable_caching=True, expire_after="P30D")
EVALUATION_FILE = "evaluation.json"
# Written by drift.py's baseline command; monitoring reads them from the registered package.
BASELINE_FILE = "baseline.json"
CONSTRAINTS_FILE = "constraints.json"


def pipeline_name(project_name: str) -> str:
    return f"{project_name}-training"


def input_data_key(config: PipelineConfig) -> str:
    """S3 key (in the artifact bucket) of the sample data that run-pipeline uploads."""
    return f"input/{config.sample_data_path.name}"


def _s3_output(bucket: str, project_name: str, step: str, name: str) -> ProcessingOutput:
    # One folder per execution, so a rerun never overwrites the data an older model came from.
    return ProcessingOutput(
        output_name=name,
        s3_output=ProcessingS3Output(
            s3_uri=Join(
                on="/",
                values=[
                    f"s3://{bucket}/{pipeline_name(project_name)}",
                    ExecutionVariables.PIPELINE_EXECUTION_ID,
                    step,
                    name,
                ],
            ),
            local_path=f"{PROCESSING_DIR}/{name}",
            s3_upload_mode="EndOfJob",
        ),
    )


def _s3_input(name: str, source, local_dir: str) -> ProcessingInput:
    return ProcessingInput(
        input_name=name,
        s3_input=ProcessingS3Input(
            s3_uri=source,
            local_path=f"{PROCESSING_DIR}/{local_dir}",
            s3_data_type="S3Prefix",
            s3_input_mode="File",
        ),
    )


def get_pipeline(
    *,
    region: str,
    role_arn: str,
    bucket: str,
    model_package_group_name: str,
    kms_key_arn: str,
    project_name: str,
    config: PipelineConfig,
    subnet_ids: Sequence[str] = (),
    security_group_ids: Sequence[str] = (),
    boto_session: boto3.Session | None = None,
) -> Pipeline:
    """Build the training pipeline for `config` (nothing is created in SageMaker here).

    With `subnet_ids` and `security_group_ids`, every job runs in those private subnets (the
    large layout's network stack) instead of SageMaker's own network.
    """
    if bool(subnet_ids) != bool(security_group_ids):
        raise ValueError("subnet_ids and security_group_ids go together: give both or neither")
    session = PipelineSession(
        boto_session=boto_session or boto3.Session(region_name=region),
        default_bucket=bucket,
    )
    tags = [{"Key": "Project", "Value": project_name}]
    vpc = (
        {"subnets": list(subnet_ids), "security_group_ids": list(security_group_ids)}
        if subnet_ids
        else {}
    )
    network = NetworkConfig(encrypt_inter_container_traffic=True, **vpc)

    input_data = ParameterString(
        name="InputDataUrl", default_value=f"s3://{bucket}/{input_data_key(config)}"
    )
    processing_instance_type = ParameterString(
        name="ProcessingInstanceType", default_value=config.processing_instance_type
    )
    processing_instance_count = ParameterInteger(
        name="ProcessingInstanceCount", default_value=config.processing_instance_count
    )
    training_instance_type = ParameterString(
        name="TrainingInstanceType", default_value=config.training_instance_type
    )
    training_instance_count = ParameterInteger(
        name="TrainingInstanceCount", default_value=config.training_instance_count
    )
    approval_status = ParameterString(
        name="ModelApprovalStatus", default_value="PendingManualApproval"
    )
    gate_threshold = ParameterFloat(
        name="QualityGateThreshold", default_value=config.gate_threshold
    )

    sklearn_image = image_uris.retrieve(
        framework="sklearn",
        region=region,
        version=config.sklearn_image_version,
        py_version="py3",
        instance_type=config.processing_instance_type,
    )
    xgboost_image = image_uris.retrieve(
        framework="xgboost", region=region, version=config.xgboost_image_version
    )
    # Recorded in the baseline for projects that opt into SageMaker Model Monitor.
    model_monitor_image = image_uris.retrieve(framework="model-monitor", region=region)

    def processor(image_uri: str, job: str, instance_count) -> ScriptProcessor:
        """A processing job of this project: encrypted volumes and outputs, tagged."""
        return ScriptProcessor(
            role=role_arn,
            image_uri=image_uri,
            command=["python3"],
            instance_type=processing_instance_type,
            instance_count=instance_count,
            volume_kms_key=kms_key_arn,
            output_kms_key=kms_key_arn,
            base_job_name=f"{project_name}-{job}",
            sagemaker_session=session,
            tags=tags,
            network_config=network,
        )

    preprocessor = processor(sklearn_image, "preprocess", processing_instance_count)
    step_preprocess = ProcessingStep(
        name="Preprocess",
        step_args=preprocessor.run(
            code=str(SCRIPTS_DIR / "preprocess.py"),
            inputs=[_s3_input("raw", input_data, "input/data")],
            outputs=[
                _s3_output(bucket, project_name, "Preprocess", split)
                for split in ("train", "validation", "test")
            ],
            arguments=[
                "--target-column",
                config.target_column,
                "--feature-columns",
                ",".join(config.feature_columns),
                "--validation-fraction",
                str(config.validation_fraction),
                "--test-fraction",
                str(config.test_fraction),
                "--seed",
                str(config.split_seed),
            ],
        ),
        cache_config=CACHE_CONFIG,
    )
    split_outputs = step_preprocess.properties.ProcessingOutputConfig.Outputs

    trainer = ModelTrainer(
        training_image=xgboost_image,
        role=role_arn,
        sagemaker_session=session,
        base_job_name=f"{project_name}-train",
        compute=Compute(
            instance_type=training_instance_type,
            instance_count=training_instance_count,
            volume_kms_key_id=kms_key_arn,
        ),
        networking=Networking(enable_inter_container_traffic_encryption=True, **vpc),
        output_data_config=OutputDataConfig(
            s3_output_path=f"s3://{bucket}/{pipeline_name(project_name)}/models",
            kms_key_id=kms_key_arn,
        ),
        hyperparameters={"objective": config.objective, **config.hyperparameters},
        input_data_config=[
            InputData(
                channel_name=channel,
                data_source=split_outputs[channel].S3Output.S3Uri,
                content_type="text/csv",
            )
            for channel in ("train", "validation")
        ],
        tags=[Tag(key=tag["Key"], value=tag["Value"]) for tag in tags],
    )
    step_train = TrainingStep(name="Train", step_args=trainer.train(), cache_config=CACHE_CONFIG)
    model_data = step_train.properties.ModelArtifacts.S3ModelArtifacts

    # One instance: the evaluation script reads the whole test split itself.
    evaluator = processor(xgboost_image, "evaluate", 1)
    evaluation_report = PropertyFile(
        name="EvaluationReport", output_name="evaluation", path=EVALUATION_FILE
    )
    step_evaluate = ProcessingStep(
        name="Evaluate",
        step_args=evaluator.run(
            code=str(SCRIPTS_DIR / "evaluate.py"),
            inputs=[
                _s3_input("model", model_data, "model"),
                _s3_input("test", split_outputs["test"].S3Output.S3Uri, "test"),
            ],
            outputs=[_s3_output(bucket, project_name, "Evaluate", "evaluation")],
            arguments=[
                "--problem-type",
                config.problem_type,
                "--target-column",
                config.target_column,
            ],
        ),
        property_files=[evaluation_report],
        cache_config=CACHE_CONFIG,
    )

    # The baseline of the monitoring: the training data's distributions and this model's
    # predictions on them. drift.py runs here in the XGBoost image (it needs the model) and copies
    # itself into its output, so the package also carries the monitoring code of its baseline.
    step_baseline = ProcessingStep(
        name="Baseline",
        step_args=processor(xgboost_image, "baseline", 1).run(
            code=str(SCRIPTS_DIR / "drift.py"),
            inputs=[
                _s3_input("model", model_data, "model"),
                _s3_input("train", split_outputs["train"].S3Output.S3Uri, "train"),
                _s3_input("test", split_outputs["test"].S3Output.S3Uri, "test"),
            ],
            outputs=[_s3_output(bucket, project_name, "Baseline", "baseline")],
            arguments=[
                "baseline",
                "--problem-type",
                config.problem_type,
                "--target-column",
                config.target_column,
                # The scheduled monitoring job runs in the scikit-learn image of this region.
                "--monitoring-image",
                sklearn_image,
                "--model-monitor-image",
                model_monitor_image,
            ],
        ),
        cache_config=CACHE_CONFIG,
    )
    baseline_folder = step_baseline.properties.ProcessingOutputConfig.Outputs[
        "baseline"
    ].S3Output.S3Uri

    model_metrics = ModelMetrics(
        model_statistics=MetricsSource(
            s3_uri=Join(
                on="/",
                values=[
                    step_evaluate.properties.ProcessingOutputConfig.Outputs[
                        "evaluation"
                    ].S3Output.S3Uri,
                    EVALUATION_FILE,
                ],
            ),
            content_type="application/json",
        )
    )
    model = ModelBuilder(
        s3_model_data_url=model_data,
        image_uri=xgboost_image,
        role_arn=role_arn,
        sagemaker_session=session,
        # The default ({"auto": True}) switches on script mode, which sets SAGEMAKER_PROGRAM
        # to "" in the model package; the XGBoost container then looks for a user module
        # instead of serving the built-in algorithm.
        dependencies=None,
    )
    step_register = ModelStep(
        name="RegisterModel",
        step_args=model.register(
            model_package_group_name=model_package_group_name,
            content_types=["text/csv"],
            response_types=["text/csv"],
            inference_instances=list(config.inference_instance_types),
            transform_instances=list(config.transform_instance_types),
            model_metrics=model_metrics,
            drift_check_baselines=DriftCheckBaselines(
                model_data_statistics=MetricsSource(
                    s3_uri=Join(on="/", values=[baseline_folder, BASELINE_FILE]),
                    content_type="application/json",
                ),
                model_data_constraints=MetricsSource(
                    s3_uri=Join(on="/", values=[baseline_folder, CONSTRAINTS_FILE]),
                    content_type="application/json",
                ),
            ),
            approval_status=approval_status,
        ),
    )

    metric_value = JsonGet(
        step_name=step_evaluate.name,
        property_file=evaluation_report,
        json_path=f"{REPORT_SECTIONS[config.problem_type]}.{config.gate_metric}.value",
    )
    if config.gate_direction == "maximum":
        condition = ConditionLessThanOrEqualTo(left=metric_value, right=gate_threshold)
        failure = "is above the maximum"
    else:
        condition = ConditionGreaterThanOrEqualTo(left=metric_value, right=gate_threshold)
        failure = "is below the minimum"
    step_fail = FailStep(
        name="QualityGateFailed",
        error_message=Join(
            on=" ",
            values=[
                f"Quality gate failed: test {config.gate_metric}",
                metric_value,
                failure,
                gate_threshold,
                "(pipeline parameter QualityGateThreshold); the model was not registered.",
            ],
        ),
    )
    step_gate = ConditionStep(
        name="QualityGate",
        conditions=[condition],
        if_steps=[step_register],
        else_steps=[step_fail],
    )

    return Pipeline(
        name=pipeline_name(project_name),
        parameters=[
            input_data,
            processing_instance_type,
            processing_instance_count,
            training_instance_type,
            training_instance_count,
            approval_status,
            gate_threshold,
        ],
        steps=[step_preprocess, step_train, step_evaluate, step_baseline, step_gate],
        sagemaker_session=session,
        # No SageMaker Experiments trial per execution: it would need extra IAM actions and
        # create untagged resources.
        pipeline_experiment_config=None,
    )
