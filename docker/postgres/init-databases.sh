#!/usr/bin/env bash
# First start of an empty PostgreSQL volume (mounted into /docker-entrypoint-initdb.d):
# one database per component, each owned by its own login role.
#
#   airflow  Airflow metadata                        owner airflow
#   mlflow   MLflow tracking store + model registry  owner mlflow
#   nuru     prediction tables                       owner nuru (the pipeline, `db upgrade`)
#            read-only role nuru_api                 SELECT only: the API and Grafana
#            (the tables: docs/DESIGN.md, "Database")
#
# The tables do not exist yet: `nuru-yield db upgrade` creates them later as `nuru`. Default
# privileges make every table, partition and view that `nuru` creates readable by `nuru_api`,
# and `nuru_api` runs read-only transactions and cannot reach the other databases.
#
# Connection comes from the usual libpq variables (PGHOST, PGPORT; the image's entrypoint
# uses its local socket). Passwords are passed as psql variables, never spliced into SQL.
set -euo pipefail

: "${AIRFLOW_DB_PASSWORD:?AIRFLOW_DB_PASSWORD is required}"
: "${MLFLOW_DB_PASSWORD:?MLFLOW_DB_PASSWORD is required}"
: "${NURU_DB_PASSWORD:?NURU_DB_PASSWORD is required}"
: "${NURU_API_DB_PASSWORD:?NURU_API_DB_PASSWORD is required}"

psql --no-psqlrc -v ON_ERROR_STOP=1 --username "${POSTGRES_USER:-postgres}" --dbname postgres \
    -v airflow_password="$AIRFLOW_DB_PASSWORD" \
    -v mlflow_password="$MLFLOW_DB_PASSWORD" \
    -v nuru_password="$NURU_DB_PASSWORD" \
    -v nuru_api_password="$NURU_API_DB_PASSWORD" <<'SQL'
CREATE ROLE airflow LOGIN PASSWORD :'airflow_password';
CREATE ROLE mlflow LOGIN PASSWORD :'mlflow_password';
CREATE ROLE nuru LOGIN PASSWORD :'nuru_password';
CREATE ROLE nuru_api LOGIN PASSWORD :'nuru_api_password' CONNECTION LIMIT 200;
ALTER ROLE nuru_api SET default_transaction_read_only = on;

CREATE DATABASE airflow OWNER airflow ENCODING 'UTF8';
CREATE DATABASE mlflow OWNER mlflow ENCODING 'UTF8';
CREATE DATABASE nuru OWNER nuru ENCODING 'UTF8';

-- PUBLIC may connect to every new database by default: only owners (and nuru_api) may.
REVOKE ALL ON DATABASE airflow FROM PUBLIC;
REVOKE ALL ON DATABASE mlflow FROM PUBLIC;
REVOKE ALL ON DATABASE nuru FROM PUBLIC;
GRANT CONNECT ON DATABASE nuru TO nuru_api;

\connect nuru
-- PostgreSQL 15: schema public belongs to the database owner (nuru) and PUBLIC cannot create.
GRANT USAGE ON SCHEMA public TO nuru_api;
ALTER DEFAULT PRIVILEGES FOR ROLE nuru IN SCHEMA public GRANT SELECT ON TABLES TO nuru_api;
SQL
