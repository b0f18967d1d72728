#!/usr/bin/env bash
# Fuzz the hub's message handling (fuzz_targets/hub_message.rs) for a bounded time.
#
#   fuzz/run.sh            # 60 s
#   FUZZ_SECONDS=600 fuzz/run.sh
#
# Needs a nightly toolchain and cargo-fuzz (installed here with `cargo install
# cargo-fuzz --locked` when missing). Builds in fuzz/target, outside the main workspace.
# The corpus is seeded with the recorded frames of the original
# (shared/docs/netdumplings-captures) when they are present.
set -euo pipefail
cd "$(dirname "$0")"
SECONDS_LIMIT="${FUZZ_SECONDS:-60}"
if ! rustup toolchain list | grep -q nightly; then
    echo "fuzz: a nightly toolchain is needed (rustup toolchain install nightly)" >&2
    exit 1
fi
if ! cargo fuzz --version >/dev/null 2>&1; then
    cargo install cargo-fuzz --locked
fi
CORPUS=corpus/hub_message
mkdir -p "$CORPUS"
CAPTURES="${ND_SHARED:-../../shared}/docs/netdumplings-captures"
if [ -d "$CAPTURES" ] && [ -z "$(ls -A "$CORPUS")" ]; then
    i=0
    while IFS= read -r line; do
        printf '%s' "$line" > "$CORPUS/seed-$i"; i=$((i + 1))
    done < "$CAPTURES/hub_to_eater_transcript.jsonl"
    grep -o '{.*}' "$CAPTURES/kitchen_to_hub_transcript.txt" | while IFS= read -r line; do
        printf '%s' "$line" > "$CORPUS/seed-k$i"; i=$((i + 1))
    done
fi
exec cargo +nightly fuzz run hub_message "$CORPUS" -- -max_total_time="$SECONDS_LIMIT" -rss_limit_mb=2048
