#!/bin/sh
# MLflow tracking server behind basic auth, for docker-compose.yml. Run under with-secrets.sh:
# MLFLOW_DB_PASSWORD, MLFLOW_AUTH_ADMIN_PASSWORD and MLFLOW_FLASK_SERVER_SECRET_KEY come from
# secrets; MLFLOW_DB_ADDRESS (host:port of Postgres) and MLFLOW_PORT from the environment. The
# database URIs hold a password, so they go through the environment (MLFLOW_BACKEND_STORE_URI)
# and a private config file, never the command line.
# Passwords made by infra/make_secrets.sh are hex: nothing in them needs URL-quoting.
set -eu
port=${MLFLOW_PORT:-5000}
db="postgresql+psycopg2://mlflow:${MLFLOW_DB_PASSWORD}@${MLFLOW_DB_ADDRESS:-postgres:5432}"
export MLFLOW_BACKEND_STORE_URI="$db/mlflow"
export MLFLOW_AUTH_CONFIG_PATH="${TMPDIR:-/tmp}/basic_auth.ini"
umask 077
cat > "$MLFLOW_AUTH_CONFIG_PATH" <<INI
[mlflow]
default_permission = READ
database_uri = $db/mlflow_auth
admin_username = admin
authorization_function = mlflow.server.auth:authenticate_request_basic_auth
INI
unset MLFLOW_DB_PASSWORD
exec mlflow server --host "${MLFLOW_HOST:-0.0.0.0}" --port "$port" --app-name basic-auth \
  --serve-artifacts --artifacts-destination "s3://${PNEUMO_S3_BUCKET_MLFLOW}/artifacts" \
  --allowed-hosts "mlflow,mlflow:$port,localhost,localhost:$port,127.0.0.1,127.0.0.1:$port"
