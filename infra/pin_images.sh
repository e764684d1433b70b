#!/bin/sh
# Re-resolve the digest of every pulled image (docker-compose.yml `image:` lines and the
# Dockerfile's FROM) from its tag, and write NAME:TAG@sha256:DIGEST back. Run after changing a
# tag, from the repository root, on a machine with Docker and registry access; review the diff
# before committing (a digest is what will run).
set -eu
for ref in $(sed -n 's/^ *\(image:\|FROM\) *\([^ ]*:[^ @]*\)@sha256:.*/\2/p' \
  docker-compose.yml infra/Dockerfile | sort -u); do
  digest=$(docker buildx imagetools inspect "$ref" --format '{{json .Manifest}}' \
    | python3 -c 'import json, sys; print(json.load(sys.stdin)["digest"])')
  sed -i "s|$ref@sha256:[0-9a-f]*|$ref@$digest|" docker-compose.yml infra/Dockerfile
  echo "$ref -> $digest"
done
