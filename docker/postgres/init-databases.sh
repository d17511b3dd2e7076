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
# Read-only transactions are only a default (a session may turn them off): the grants are
# what keep `nuru_api` from writing. Beyond SELECT it has nothing: no TEMP, no CREATE, no
# sequence, no large objects (PUBLIC may create them by default, even in a read-only
# transaction), no advisory locks (a reader holding the pipeline's run-date lock would stop
# the nightly scoring; only `nuru` takes them), no WAL messages, no database but `nuru`
# (not `postgres`, nor `template1`, whose large objects every new database would copy).
# What no grant can take from a PostgreSQL 15 role: changing its own password and session
# defaults (ALTER ROLE nuru_api ...; the API sets its sessions' read-only mode itself),
# NOTIFY (stores nothing), and ANALYZE/VACUUM, which skip tables it does not own.
# (tests/unit/deploy/test_postgres_roles.py tries every write path against a throwaway server.)
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

-- PUBLIC may connect to (and create temporary tables in) every database by default: only
-- owners may, and nuru_api may connect to nuru. The superuser keeps postgres and template1.
REVOKE ALL ON DATABASE airflow FROM PUBLIC;
REVOKE ALL ON DATABASE mlflow FROM PUBLIC;
REVOKE ALL ON DATABASE nuru FROM PUBLIC;
REVOKE ALL ON DATABASE postgres FROM PUBLIC;
REVOKE ALL ON DATABASE template1 FROM PUBLIC;
GRANT CONNECT ON DATABASE nuru TO nuru_api;

\connect nuru
-- PostgreSQL 15: schema public belongs to the database owner (nuru) and PUBLIC cannot create.
GRANT USAGE ON SCHEMA public TO nuru_api;
ALTER DEFAULT PRIVILEGES FOR ROLE nuru IN SCHEMA public GRANT SELECT ON TABLES TO nuru_api;

-- Functions of this database that PUBLIC may call and that write: large objects (created
-- and stored), advisory locks (given back to the pipeline), logical WAL messages.
DO $$
DECLARE
    writer regprocedure;
BEGIN
    FOR writer IN
        SELECT oid::regprocedure FROM pg_proc
        WHERE pronamespace = 'pg_catalog'::regnamespace
          AND (proname IN ('lo_creat', 'lo_create', 'lo_from_bytea', 'pg_logical_emit_message')
               OR proname ~ '^pg_(try_)?advisory_(xact_)?lock')
    LOOP
        EXECUTE format('REVOKE EXECUTE ON FUNCTION %s FROM PUBLIC', writer);
        IF writer::text ~ '^pg_(try_)?advisory' THEN
            EXECUTE format('GRANT EXECUTE ON FUNCTION %s TO nuru', writer);
        END IF;
    END LOOP;
END
$$;
SQL
