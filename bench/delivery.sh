#!/usr/bin/env bash
# Delivery benchmark: N events through the API to a local receiver that
# answers 200; prints deliveries/s and end-to-end latency (acceptance to
# arrival at the receiver). Starts its own service in-process against the
# local Redis and Postgres of scripts/dev-deps.sh. Everything stays on 127.0.0.1.
#
#   bench/delivery.sh [events (20000)] [organizations (10)] [concurrent senders (32)]
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
# shellcheck source=scripts/dev-deps.sh
source scripts/dev-deps.sh
export RUST_LOG="${RUST_LOG:-warn}"
exec cargo run --release --quiet --example delivery_bench -- "$@"
