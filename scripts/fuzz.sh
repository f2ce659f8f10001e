#!/usr/bin/env bash
# Fuzzes every parser for a bounded time each (default 60 s), starting from and
# adding to the corpus kept in fuzz/corpus/TARGET. A crash stops the run with its
# input in fuzz/artifacts/TARGET/: copy it to fuzz/regressions/TARGET/ and
# tests/fuzz_seeds.rs replays it from then on.
# Needs the nightly toolchain and `cargo install cargo-fuzz`.
# Usage: scripts/fuzz.sh [SECONDS] [TARGET...]
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-60}
shift || true
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(idx blob int8_blob safetensors checkpoint)
for target in "${targets[@]}"; do
    echo "=== fuzz $target for ${seconds}s"
    mkdir -p "fuzz/corpus/$target"
    cargo +nightly fuzz run "$target" "fuzz/corpus/$target" -- -max_total_time="$seconds" -max_len=8192
    # Keep the corpus small: only inputs that add coverage.
    cargo +nightly fuzz cmin "$target" "fuzz/corpus/$target" >/dev/null 2>&1 || true
done
