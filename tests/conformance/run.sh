#!/usr/bin/env bash
# Runs the public SCIM compliance testers (scim2-tester, scim-sanity) against
# `scim-sidecar demo` on a free loopback port. Creates its own Python venv.
# Usage: tests/conformance/run.sh [path/to/scim-sidecar]
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
bin=${1:-$root/target/release/scim-sidecar}
venv=${CONFORMANCE_VENV:-$root/target/conformance-venv}
token=conformance-token-0123456789abcdef

if [ ! -x "$venv/bin/scim-sanity" ] || [ ! -x "$venv/bin/scim" ]; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check \
    'scim2-tester==0.5.2' 'scim2-cli==0.6.0' 'scim-sanity==0.7.4'
fi

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()')
log=$(mktemp)
"$bin" demo --listen "127.0.0.1:$port" --token "$token" >"$log" 2>&1 &
pid=$!
trap 'kill $pid 2>/dev/null || true; wait $pid 2>/dev/null || true; rm -f "$log"' EXIT
for _ in $(seq 1 100); do
  if curl -fsS "http://127.0.0.1:$port/readyz" >/dev/null 2>&1; then break; fi
  sleep 0.1
done
curl -fsS "http://127.0.0.1:$port/readyz" >/dev/null || { cat "$log"; echo "demo did not become ready"; exit 1; }

base="http://127.0.0.1:$port/scim/v2"
status=0
"$venv/bin/python" "$here/scim2_tester_run.py" "$base" "$token" || status=1
"$venv/bin/python" "$here/scim_sanity_run.py" "$venv/bin/scim-sanity" "$base" "$token" || status=1
exit $status
