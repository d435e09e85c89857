#!/usr/bin/env bash
# Installs what the tests need beyond Go and Node.js: wabt (wat2wasm, for the WAT transforms) and
# chromium (the tracker and dashboard browser tests). Debian's packages; run as root, or install
# them yourself.
set -euo pipefail
need=""
command -v wat2wasm >/dev/null 2>&1 || need="$need wabt"
command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1 || need="$need chromium"
[ -z "$need" ] && exit 0
if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
  echo "missing:$need (install these Debian packages, then run make test again)" >&2
  exit 1
fi
echo "installing:$need"
apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $need
