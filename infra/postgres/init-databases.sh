#!/bin/sh
# Runs once, on an empty data volume: one database each for MLflow and Prefect.
set -eu
for db in mlflow prefect; do
  psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname postgres -c "CREATE DATABASE $db"
done
