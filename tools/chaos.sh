#!/usr/bin/env bash
# The chaos soak (issue 11; not CI): random Okta/Entra traffic with upstream faults, 429
# storms, lost/silent event queues, admin edits and restarts against three replicas of the
# sidecar in front of one fake Zulip, for CHAOS_SOAK_SECS (default 1800 = 30 min). Prints
# sequences, operations, faults, divergences (must be 0), RSS and open fds at start and end.
#
#   tools/chaos.sh                       # 30 minutes, random seed
#   CHAOS_SOAK_SECS=600 tools/chaos.sh   # 10 minutes
#   CHAOS_SEED=42 CHAOS_REPLICAS=2 tools/chaos.sh
#
# A divergence prints its seed and case; replay the CI search with
# `CHAOS_SEED=<n> cargo test -p scim-sidecar --test it chaos::`.
set -euo pipefail
cd "$(dirname "$0")/.."
exec cargo test -p scim-sidecar --test it ${CHAOS_PROFILE:+--profile "$CHAOS_PROFILE"} \
  chaos::soak::soak -- --ignored --nocapture --exact
