#!/usr/bin/env bash
# Full local/CI check: formatting, lints, then the whole test suite.
#
#   scripts/test.sh [extra args for `cargo test`]   e.g. scripts/test.sh -- --nocapture
#
# The integration tests need real Redis and PostgreSQL; dev-deps.sh starts
# (or reuses) them and exports REDIS_URL / DATABASE_URL.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

# The suite includes tests against a 3-node Redis Cluster as well.
export TRIGGERS_DEV_REDIS_CLUSTER=1
# shellcheck source=scripts/dev-deps.sh
source scripts/dev-deps.sh

# Minimal toolchains (e.g. rustup's "minimal" profile) lack rustfmt/clippy.
# Without rustup there is nothing to add; the cargo calls below will then
# report the missing component themselves.
for component in rustfmt clippy; do
    subcommand="${component/rustfmt/fmt}"
    if ! cargo "$subcommand" --version >/dev/null 2>&1; then
        rustup component add "$component" || true
    fi
done

echo "==> cargo fmt --check" >&2
cargo fmt --all -- --check

echo "==> cargo clippy" >&2
cargo clippy --all-targets -- -D warnings

echo "==> cargo test" >&2
cargo test --all-targets "$@"

cargo build --bin triggers-api
echo "==> contract test (schemathesis against a live instance)" >&2
bash scripts/contract-test.sh target/debug/triggers-api

echo "==> deployment artefacts and the local stack" >&2
bash scripts/check-deploy.sh
