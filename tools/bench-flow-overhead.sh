#!/usr/bin/env bash
# tools/bench-flow-overhead.sh: what flows cost a whole replay when no chef asks for them
# (issue 13, item 7: "within 5 % of the kitchen before flows", same run).
#
#   bash tools/bench-flow-overhead.sh                 # 5 rounds on both corpora
#   ROUNDS=9 REPEAT=2 bash tools/bench-flow-overhead.sh [PCAP...]
#   BASELINE_SNIFF=/path/to/old/nd-sniff CHEF_DIR=/path/to/0.1-chefs ROUNDS=7 \
#       bash tools/bench-flow-overhead.sh             # against the pre-0.2 kitchen
#
# Replays each corpus through `nd-sniff -r FILE --no-hub --stdout` in two variants,
# interleaved A/B/B/A so drift from other load hits both alike:
#
#   before  without BASELINE_SNIFF: ND_BENCH_NO_FLOW_STAGE=1, this same binary without a flow
#           stage at all (a hidden switch, see kitchen/src/parse/flow_stage.rs `BYPASS_ENV`);
#           with BASELINE_SNIFF=PATH: that binary, e.g. the kitchen before chef API 0.2 (rev
#           c469e5d), built in its own worktree (see "Baseline" below);
#   now     ND_SNIFF (default target/release/nd-sniff) as users run it: the flow stage
#           attached, switched off because no loaded chef needs it.
#
# Chefs: with CHEF_DIR=DIR, both variants load exactly the components in DIR
# (`--no-builtin-chefs -d DIR`). With a BASELINE_SNIFF, give it the old kitchen's own 0.1
# components (both kitchens load chef API 0.1, and 0.1 chefs cannot ask for flows), so both
# runs execute the same chef code and only the kitchens differ. Without CHEF_DIR: every
# built-in chef of ND_SNIFF that asks for neither flow events nor stream bytes (read from
# `nd-sniff -l`), and with a BASELINE_SNIFF only those names it has built in too (their code
# then differs between the two builds, so CHEF_DIR is the fairer comparison).
#
# Baseline (the pre-0.2 kitchen, cheaply): `git worktree add --detach ../base c469e5d`,
# `cp -a target ../base/target` (a warm copy: only crates whose sources or features differ
# recompile), `cargo build --release --workspace --bin nd-sniff` there; its 0.1 sample chefs
# are then in ../base/target/chefs/wasm32-wasip2/release/ (copy the ones to use into a
# directory for CHEF_DIR).
#
# Each run reads the corpus from a pipe, REPEAT times over (default: about 400 MB of capture
# per run, so start-up is small next to the packets; legacy pcap only).
# Figures are the child's CPU time (user + sys, from the kernel's rusage of each run), so
# waiting for a core on a busy machine does not count; medians over the rounds and the ratio
# now/before are printed. Corpora (default): target/bench/big.pcap (the mixed corpus, built
# by `cargo run --release --workspace --bin nd-kitchen-bench -- --build-corpus --only minimal
# --rounds 1`) and target/bench/high-cardinality.pcap (written by target/release/nd-flow-bench
# when missing).
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
ROUNDS="${ROUNDS:-5}"
ND_SNIFF="${ND_SNIFF:-$REPO/target/release/nd-sniff}"

BASELINE_SNIFF="${BASELINE_SNIFF:-}"
CHEF_DIR="${CHEF_DIR:-}"

if [ ! -x "$ND_SNIFF" ]; then
    echo "bench-flow-overhead: $ND_SNIFF is missing: run cargo build --release --workspace" >&2
    exit 1
fi
if [ -n "$BASELINE_SNIFF" ] && [ ! -x "$BASELINE_SNIFF" ]; then
    echo "bench-flow-overhead: BASELINE_SNIFF=$BASELINE_SNIFF is not an executable (see the header of this script)" >&2
    exit 1
fi
if [ -n "$CHEF_DIR" ] && ! compgen -G "$CHEF_DIR/*.wasm" >/dev/null; then
    echo "bench-flow-overhead: CHEF_DIR=$CHEF_DIR holds no *.wasm chef component" >&2
    exit 1
fi
if [ "$#" -gt 0 ]; then
    CORPORA=("$@")
else
    CORPORA=("$REPO/target/bench/big.pcap" "$REPO/target/bench/high-cardinality.pcap")
    if [ ! -f "$REPO/target/bench/high-cardinality.pcap" ] && [ -x "$REPO/target/release/nd-flow-bench" ]; then
        # nd-flow-bench writes the corpus when missing (one quick round on it).
        "$REPO/target/release/nd-flow-bench" --rounds 1 "$REPO/target/bench/high-cardinality.pcap" >/dev/null
    fi
fi
for c in "${CORPORA[@]}"; do
    if [ ! -f "$c" ]; then
        echo "bench-flow-overhead: corpus $c is missing (see the header of this script)" >&2
        exit 1
    fi
done

python3 - "$ND_SNIFF" "$ROUNDS" "$BASELINE_SNIFF" "$CHEF_DIR" "${CORPORA[@]}" <<'EOF'
import os, statistics, subprocess, sys, tempfile

nd_sniff, rounds, baseline, chef_dir = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
corpora = sys.argv[5:]
if rounds < 1:
    sys.exit("bench-flow-overhead: ROUNDS must be at least 1")

def listing(binary, extra):
    """(name, interest line) of every chef `binary -l` lists."""
    out = subprocess.run([binary, "-l"] + extra, capture_output=True, text=True, check=True).stdout
    chefs, name = [], None
    for line in out.splitlines():
        if line and not line[0].isspace():
            name = line.strip()
        elif name and line.strip().startswith("interest:"):
            chefs.append((name, line.strip()))
    return chefs

def no_flows(chefs):
    return [n for n, i in chefs if "flow events" not in i and "stream bytes" not in i]

if chef_dir:
    # The same component files for both: only the kitchens differ.
    chef_args = ["--no-builtin-chefs", "-d", chef_dir]
    chefs = no_flows(listing(nd_sniff, chef_args))
    every = [n for n, _ in listing(nd_sniff, chef_args)]
    if chefs != every:
        sys.exit("bench-flow-overhead: some chef in %s asks for flows or streams: %s"
                 % (chef_dir, ", ".join(sorted(set(every) - set(chefs)))))
    if baseline:
        old = [n for n, _ in listing(baseline, chef_args)]
        if sorted(old) != sorted(chefs):
            sys.exit("bench-flow-overhead: the baseline loads %s from %s, this kitchen %s"
                     % (", ".join(old), chef_dir, ", ".join(chefs)))
    print("chefs (the components in %s; none asks for flows or streams): %s"
          % (chef_dir, ", ".join(chefs)))
else:
    # The built-in chefs that ask for neither flow events nor stream bytes (and, against a
    # baseline, that it has built in too).
    chefs = no_flows(listing(nd_sniff, []))
    if baseline:
        old = {n for n, _ in listing(baseline, [])}
        chefs = [c for c in chefs if c in old]
    if not chefs:
        sys.exit("bench-flow-overhead: no chef without flows in `nd-sniff -l`")
    chef_args = []
    for c in chefs:
        chef_args += ["-c", c]
    print("chefs (built in, none asks for flows or streams): " + ", ".join(chefs))
if baseline:
    print("before = %s (baseline kitchen), now = %s" % (baseline, nd_sniff))
else:
    print("before = %s with ND_BENCH_NO_FLOW_STAGE=1 (no flow stage), now = the same binary"
          % nd_sniff)

def run(corpus, before):
    env = dict(os.environ)
    env.pop("ND_BENCH_NO_FLOW_STAGE", None)
    binary = nd_sniff
    if before and baseline:
        binary = baseline
    elif before:
        env["ND_BENCH_NO_FLOW_STAGE"] = "1"
    env["RUST_LOG"] = "warn"
    args = [binary, "-r", "/dev/stdin", "--no-hub", "--stdout", "-n", "bench", "--no-chef-watch"]
    args += chef_args
    # The corpus is fed REPEAT times through a pipe (one file header), so a run's start-up
    # (loading the chefs) is small next to its packets; the feeder's own CPU is not counted
    # (each child's rusage comes from its own wait4).
    with open(os.devnull, "wb") as null, tempfile.TemporaryFile() as err:
        p = subprocess.Popen(args, env=env, stdin=subprocess.PIPE, stdout=null, stderr=err)
        with open(corpus, "rb") as f:
            header = f.read(24)
            p.stdin.write(header)
            for _ in range(repeat[corpus]):
                f.seek(24)
                while True:
                    chunk = f.read(1 << 20)
                    if not chunk:
                        break
                    p.stdin.write(chunk)
        p.stdin.close()
        _, status, usage = os.wait4(p.pid, 0)
        p.returncode = os.waitstatus_to_exitcode(status)
        if p.returncode != 0:
            err.seek(0)
            sys.exit("bench-flow-overhead: nd-sniff failed (%d): %s" % (
                p.returncode, err.read().decode(errors="replace")[-2000:]))
    return usage.ru_utime + usage.ru_stime

# Legacy pcap only (the header is written once); repeated up to ~400 MB per run.
repeat = {}
for corpus in corpora:
    with open(corpus, "rb") as f:
        magic = f.read(4)
    if magic not in (b"\xd4\xc3\xb2\xa1", b"\xa1\xb2\xc3\xd4", b"\x4d\x3c\xb2\xa1", b"\xa1\xb2\x3c\x4d"):
        sys.exit("bench-flow-overhead: %s is not a legacy pcap file" % corpus)
    size = max(os.path.getsize(corpus), 1)
    repeat[corpus] = int(os.environ.get("REPEAT", "0")) or max(1, min(8, round(400e6 / size)))

print("CPU time (user+sys) of each nd-sniff run; %d interleaved rounds per corpus; corpus fed %s"
      % (rounds, ", ".join("%s x%d" % (os.path.basename(c), n) for c, n in repeat.items())))
for corpus in corpora:
    times = {"before": [], "now": []}
    for r in range(rounds):
        # A/B then B/A: a slow drift of the machine's load favours neither.
        order = [("before", True), ("now", False)]
        if r % 2:
            order.reverse()
        for label, before in order:
            times[label].append(run(corpus, before))
        print("  %s round %d/%d: before %.2f s, now %.2f s CPU" % (
            os.path.basename(corpus), r + 1, rounds, times["before"][-1], times["now"][-1]), flush=True)
    b, n = statistics.median(times["before"]), statistics.median(times["now"])
    ratio = n / b
    # Each round's own ratio too: its median and spread show how far the noise reaches.
    paired = sorted(x / y for x, y in zip(times["now"], times["before"]))
    ok = ratio <= 1.05
    print("%s: median CPU before (%s) %.3f s, now (stage off, no chef asks) %.3f s: "
          "ratio %.3f (%+.1f %%): %s; per-round ratios median %.3f, range %.3f-%.3f" % (
              os.path.basename(corpus), "baseline kitchen" if baseline else "no flow stage",
              b, n, ratio, 100 * (ratio - 1),
              "within 5 %" if ok else "NOT within 5 %",
              statistics.median(paired), paired[0], paired[-1]))
EOF
