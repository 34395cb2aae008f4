"""Prefect flows: they compose tasks and decide what runs where (the task runner); nothing here is torch math."""

import advdesign.environment  # noqa: F401  (Prefect/MLflow defaults before either is imported)
