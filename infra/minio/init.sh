#!/bin/sh
# One-shot: create the buckets and a least-privilege user for the pipeline (idempotent).
set -eu
mc alias set local http://minio:9000 "$MINIO_ROOT_USER" "$MINIO_ROOT_PASSWORD"
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
mc admin user add local "$PNEUMO_S3_ACCESS_KEY" "$PNEUMO_S3_SECRET_KEY"
mc admin policy create local pneumo-pipeline /tmp/pipeline-policy.json
mc admin policy attach local pneumo-pipeline --user "$PNEUMO_S3_ACCESS_KEY" || true  # already attached
echo "buckets and pipeline user ready"
