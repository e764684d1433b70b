#!/bin/sh
# Runs once, on an empty data volume: a database and a user of its own for MLflow (plus the
# database of its auth app) and for Prefect. Passwords come from the mounted secrets, and go to
# psql on its standard input, never on a command line. SECRETS_DIR: where they are mounted.
set -eu
create() {  # user, password file, databases...
  user=$1 password=$(cat "$2")
  shift 2
  psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname postgres <<SQL
CREATE USER $user WITH PASSWORD '$password';
SQL
  for db in "$@"; do
    psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname postgres \
      -c "CREATE DATABASE $db OWNER $user"
  done
}
secrets=${SECRETS_DIR:-/run/secrets}
create mlflow "$secrets/mlflow_db_password" mlflow mlflow_auth
create prefect "$secrets/prefect_db_password" prefect
