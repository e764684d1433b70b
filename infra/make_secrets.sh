#!/bin/sh
# Write the secrets docker-compose.yml reads, as random values, into ./secrets/ (run from the
# repository root). Existing files are kept, so re-running never changes a password a database
# already holds. Prints the API key once: only its hash is stored.
set -eu
umask 077
mkdir -p secrets
# Containers run as other users: the files are world-readable inside a private directory.
chmod 700 secrets
random() { od -An -N"$1" -tx1 /dev/urandom | tr -d ' \n'; }
for name in minio_root_password pipeline_s3_secret_key api_s3_secret_key postgres_password \
  mlflow_db_password prefect_db_password mlflow_admin_password mlflow_api_password \
  mlflow_flask_secret patient_key_secret grafana_admin_password orthanc_pneumo_password; do
  [ -f "secrets/$name" ] || random 24 > "secrets/$name"
done
[ -f secrets/minio_root_user ] || printf 'admin-%s' "$(random 4)" > secrets/minio_root_user
[ -f secrets/pipeline_s3_access_key ] || printf 'pipeline-%s' "$(random 6)" > secrets/pipeline_s3_access_key
[ -f secrets/api_s3_access_key ] || printf 'api-%s' "$(random 6)" > secrets/api_s3_access_key
[ -f secrets/prefect_auth_string ] || printf 'admin:%s' "$(random 24)" > secrets/prefect_auth_string
if [ ! -f secrets/api_keys ]; then
  key="pk_$(random 32)"
  printf 'sha256:%s\n' "$(printf '%s' "$key" | sha256sum | cut -d' ' -f1)" > secrets/api_keys
  echo "API key for the prediction service (shown only now): $key"
fi
# Prometheus's own key for /metrics: kept in plain text for it to present, its hash beside the
# others in api_keys.
if [ ! -f secrets/metrics_api_key ]; then
  key="pk_$(random 32)"
  printf '%s' "$key" > secrets/metrics_api_key
  printf 'sha256:%s  # prometheus\n' "$(printf '%s' "$key" | sha256sum | cut -d' ' -f1)" >> secrets/api_keys
fi
chmod 644 secrets/*
echo "secrets ready in ./secrets/"
