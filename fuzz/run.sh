#!/usr/bin/env bash
# Fuzz the hub for a bounded time: its message handling (fuzz_targets/hub_message.rs, the
# default) or its token and upgrade-header handling (fuzz_targets/auth_upgrade.rs).
#
#   fuzz/run.sh                    # hub_message, 60 s
#   fuzz/run.sh auth_upgrade
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
TARGET="${1:-hub_message}"
case "$TARGET" in
    hub_message | auth_upgrade) ;;
    *) echo "fuzz: unknown target $TARGET (hub_message or auth_upgrade)" >&2; exit 2 ;;
esac
CORPUS=corpus/$TARGET
mkdir -p "$CORPUS"
if [ "$TARGET" = auth_upgrade ] && [ -z "$(ls -A "$CORPUS")" ]; then
    printf '/?token=fuzz-known-token' > "$CORPUS/seed-query"
    printf '/\nauthorization: Bearer fuzz-known-token\nsec-websocket-protocol: netdumplings, bearer.x' \
        > "$CORPUS/seed-headers"
fi
CAPTURES="${ND_SHARED:-../../shared}/docs/netdumplings-captures"
if [ "$TARGET" = hub_message ] && [ -d "$CAPTURES" ] && [ -z "$(ls -A "$CORPUS")" ]; then
    i=0
    while IFS= read -r line; do
        printf '%s' "$line" > "$CORPUS/seed-$i"; i=$((i + 1))
    done < "$CAPTURES/hub_to_eater_transcript.jsonl"
    grep -o '{.*}' "$CAPTURES/kitchen_to_hub_transcript.txt" | while IFS= read -r line; do
        printf '%s' "$line" > "$CORPUS/seed-k$i"; i=$((i + 1))
    done
fi
exec cargo +nightly fuzz run "$TARGET" "$CORPUS" -- -max_total_time="$SECONDS_LIMIT" -rss_limit_mb=2048
