#!/usr/bin/env bash
# flywheel's one test command: formatting, lints, then every test of the workspace against a
# real local ClickHouse engine (started by the tests themselves; run ./setup.sh first).
set -euo pipefail
cd "$(dirname "$0")"
cargo fmt --all --check
cargo clippy --release --locked --workspace --all-targets -- -D warnings
cargo test --release --locked --workspace
