#!/bin/sh
# One-shot: create the buckets and two least-privilege users (idempotent): the pipeline's, and
# the prediction service's, which may write its own logs and nothing else (model files are read
# through MLflow, never from S3). Run under with-secrets.sh: every key comes from a secret.
set -eu
# The admin credentials go through mc's environment, not its command line.
export MC_HOST_local="http://${MINIO_ROOT_USER}:${MINIO_ROOT_PASSWORD}@minio:9000"
for bucket in "$PNEUMO_S3_BUCKET_RAW" "$PNEUMO_S3_BUCKET_DATA" "$PNEUMO_S3_BUCKET_MLFLOW"; do
  mc mb --ignore-existing "local/$bucket"
done
cat > /tmp/pipeline-policy.json <<POLICY
{
  "Version": "2012-10-17",
  "Statement": [
    {
      "Effect": "Allow",
      "Action": ["s3:GetBucketLocation", "s3:ListBucket"],
      "Resource": ["arn:aws:s3:::$PNEUMO_S3_BUCKET_RAW", "arn:aws:s3:::$PNEUMO_S3_BUCKET_DATA", "arn:aws:s3:::$PNEUMO_S3_BUCKET_MLFLOW"]
    },
    {
      "Effect": "Allow",
      "Action": ["s3:GetObject", "s3:PutObject"],
      "Resource": ["arn:aws:s3:::$PNEUMO_S3_BUCKET_RAW/*", "arn:aws:s3:::$PNEUMO_S3_BUCKET_DATA/*", "arn:aws:s3:::$PNEUMO_S3_BUCKET_MLFLOW/*"]
    }
  ]
}
POLICY
# The service reads back what it wrote (a put first checks for the same object) and lists its
# two log prefixes, and reads the last drift check's summary (for /metrics); the raw images, the
# manifests and the MLflow bucket are out of its reach.
cat > /tmp/api-policy.json <<POLICY
{
  "Version": "2012-10-17",
  "Statement": [
    {
      "Effect": "Allow",
      "Action": ["s3:GetBucketLocation", "s3:ListBucket"],
      "Resource": ["arn:aws:s3:::$PNEUMO_S3_BUCKET_DATA"],
      "Condition": {"StringLike": {"s3:prefix": ["inference-log/*", "rejected-log/*"]}}
    },
    {
      "Effect": "Allow",
      "Action": ["s3:GetObject", "s3:PutObject"],
      "Resource": ["arn:aws:s3:::$PNEUMO_S3_BUCKET_DATA/inference-log/*", "arn:aws:s3:::$PNEUMO_S3_BUCKET_DATA/rejected-log/*"]
    },
    {
      "Effect": "Allow",
      "Action": ["s3:GetObject"],
      "Resource": ["arn:aws:s3:::$PNEUMO_S3_BUCKET_DATA/reports/drift/last-check.json"]
    }
  ]
}
POLICY
# mc takes a new user's secret key only as an argument: it is visible to `ps` on the host for
# the second this one-shot runs (documented in infra/README.md).
add_user() {  # access key, secret key, policy name, policy file
  mc admin user add local "$1" "$2"
  mc admin policy create local "$3" "$4"
  mc admin policy attach local "$3" --user "$1" || true  # already attached
}
add_user "$PNEUMO_S3_ACCESS_KEY" "$PNEUMO_S3_SECRET_KEY" pneumo-pipeline /tmp/pipeline-policy.json
add_user "$API_S3_ACCESS_KEY" "$API_S3_SECRET_KEY" pneumo-api /tmp/api-policy.json
echo "buckets, pipeline user and API user ready"
