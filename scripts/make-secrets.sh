#!/usr/bin/env bash
# Makes the secrets a blockmend deployment needs, once, in one directory:
#   store-token   the bearer token every chunk store requires and every gateway sends
#                 (64 hex characters from /dev/urandom)
# Usage: scripts/make-secrets.sh [DIR] [--force]
#   DIR      where to write them; default deploy/secrets (what compose.yaml reads).
#            For the systemd units: /etc/blockmend/secrets (a directory of its own: the
#            config files next to it must stay readable by the services' users).
#   --force  replace secrets that exist (a new token must then reach every store and
#            gateway before they restart, or they stop trusting each other).
# The directory is made 0700, so only its owner (and root) can reach the files; the files
# themselves are 0644, because compose bind-mounts them into containers that run as an
# unprivileged user, who must be able to read them. (systemd's LoadCredential= reads them
# as root and hands the service a private copy.) TLS material will be made here too, once
# the chunk store server serves https.
set -euo pipefail

dir="$(cd "$(dirname "$0")/.." && pwd)/deploy/secrets"
force=0
for arg in "$@"; do
  case "$arg" in
    --force) force=1 ;;
    -*) echo "make-secrets.sh: unknown option $arg" >&2; exit 2 ;;
    *) dir=$arg ;; # relative to the directory it is run from
  esac
done

mkdir -p "$dir"
chmod 0700 "$dir"

# write NAME CONTENT: writes DIR/NAME atomically unless it exists (or --force).
write() {
  local path="$dir/$1"
  if [ -e "$path" ] && [ "$force" = 0 ]; then
    echo "make-secrets.sh: $path exists, kept (--force replaces it)"
    return
  fi
  local tmp
  tmp=$(mktemp "$dir/.$1.XXXXXX")
  printf '%s\n' "$2" >"$tmp"
  chmod 0644 "$tmp"
  mv -f "$tmp" "$path"
  echo "make-secrets.sh: wrote $path"
}

write store-token "$(od -An -tx1 -N32 /dev/urandom | tr -d ' \n')"
