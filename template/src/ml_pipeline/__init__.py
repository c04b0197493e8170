"""SageMaker training pipeline, its processing scripts and the `ml-pipeline` command."""
