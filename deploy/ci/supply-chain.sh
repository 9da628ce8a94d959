#!/usr/bin/env bash
# CI: supply chain, with cargo-deny and the repository's deny.toml:
#   licenses  every dependency's licence is one of deny.toml's allow-list;
#   bans      duplicate crate versions (warnings), wildcard version requirements (errors);
#   sources   crates come from crates.io only (no git, no other registry).
#
# NOT checked here: `advisories`. It needs the RustSec advisory database, which cargo-deny
# clones from GitHub; CI's machines reach only crates.io, PyPI, Debian and npm, and none of
# those ships the database. With network access, run before a release:
#
#   cargo deny --locked check advisories
#
# cargo-deny is installed from crates.io (`cargo install --locked`, ~3.5 min on 2 cores,
# once) into $CARGO_TARGET_DIR/ci-tools, and reused while its version matches.
# `supply-chain.sh --install-only` only installs it (.ci/run does that in the background,
# beside the release build, which leaves one core mostly idle).
set -euo pipefail
cd "$(dirname "$0")/../.."
target=${CARGO_TARGET_DIR:-$PWD/target}
tools=$target/ci-tools
deny_version=0.20.2
deny=$tools/bin/cargo-deny

if ! [ -x "$deny" ] || [ "$("$deny" --version 2>/dev/null)" != "cargo-deny $deny_version" ]; then
  echo "supply-chain: installing cargo-deny $deny_version (cargo install --locked)"
  start=$(date +%s)
  # Its own build directory: not the project's target/ (no cache churn, no lock contention).
  CARGO_TARGET_DIR=$tools/build cargo install --quiet --locked --version "$deny_version" \
    --root "$tools" cargo-deny
  rm -rf "$tools/build"
  echo "supply-chain: cargo-deny installed in $(( $(date +%s) - start )) s"
fi

[ "${1:-}" != --install-only ] || exit 0

echo "== supply-chain: cargo deny check licenses bans sources"
"$deny" --locked --log-level warn check --hide-inclusion-graph licenses bans sources
echo "supply-chain: advisories NOT checked (the RustSec database is fetched from GitHub," \
  "unreachable here); with network: cargo deny --locked check advisories"
