#!/bin/sh
# Entrypoint wrapper: export each mounted secret /run/secrets/NAME (SECRETS_DIR elsewhere) whose
# NAME is an upper-case variable name as that variable, then run the command. Secrets reach a
# process through its environment (readable only by its own user), never its command line
# (readable by everyone in `ps`). Lower-case secrets (api_keys) are files read by path.
set -eu
for file in "${SECRETS_DIR:-/run/secrets}"/*; do
  [ -f "$file" ] || continue
  name=$(basename "$file")
  case "$name" in
    [!A-Z_]* | *[!A-Z0-9_]*) continue ;;
  esac
  value=$(cat "$file")
  export "$name=$value"
done
exec "$@"
