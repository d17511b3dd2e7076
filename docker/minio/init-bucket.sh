#!/bin/sh
# One-shot (service `minio-init`, image minio/mc): the lake bucket and two service users.
#   S3_ACCESS_KEY      read-write: the pipeline (Airflow tasks) and the MLflow artifact proxy
#   S3_API_ACCESS_KEY  read-only:  the API (its feature-store probe only reads)
# Safe to rerun: existing bucket, users and policy attachments are left as they are.
set -eu

mc alias set nuru http://minio:9000 "$MINIO_ROOT_USER" "$MINIO_ROOT_PASSWORD"
mc mb --ignore-existing "nuru/$S3_BUCKET_NAME"

grant() {  # grant USER SECRET POLICY
    mc admin user add nuru "$1" "$2"
    if ! mc admin user info nuru "$1" | grep -qw "$3"; then
        mc admin policy attach nuru "$3" --user "$1"
    fi
}
grant "$S3_ACCESS_KEY" "$S3_SECRET_KEY" readwrite
grant "$S3_API_ACCESS_KEY" "$S3_API_SECRET_KEY" readonly
echo "bucket s3://$S3_BUCKET_NAME ready"
