"""MLflow as bookkeeping and shared registry: runs, a mirror of the registry, and a follower.

Optional (`pip install 'hhforecast[mlflow]'`); nothing in this package is imported unless
tracking is configured (`mlflow.tracking_uri` or $MLFLOW_TRACKING_URI).
"""
