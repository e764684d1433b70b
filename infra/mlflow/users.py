"""One-shot for docker-compose.yml: create the API's MLflow user (idempotent).

It gets the auth app's default permission, READ: the prediction service loads the champion and
can change nothing in the registry. Runs as the admin (MLFLOW_TRACKING_USERNAME/PASSWORD).
"""

import os

from mlflow.exceptions import RestException
from mlflow.server.auth.client import AuthServiceClient

client = AuthServiceClient(os.environ["MLFLOW_TRACKING_URI"])
try:
    client.create_user("pneumo-api", os.environ["API_MLFLOW_PASSWORD"])
    print("created MLflow user pneumo-api")
except RestException as exc:
    if exc.error_code != "RESOURCE_ALREADY_EXISTS":
        raise
    print("MLflow user pneumo-api already exists")
