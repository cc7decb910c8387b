"""Model registry on MLflow: the tracking server command and one run per job."""
