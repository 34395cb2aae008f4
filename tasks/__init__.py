"""Pure-torch and pure-Python cores (attacks, training, search, metrics) plus thin Prefect task wrappers.

Modules here other than ``prefect_tasks`` and ``tracking`` import neither Prefect nor MLflow.
"""
