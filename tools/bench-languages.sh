#!/usr/bin/env bash
# tools/bench-languages.sh: packets/s per chef by language, same kitchen run, Rust as baseline.
#
#   bash tools/bench-languages.sh [PACKETS]        # default 100000 packets
#   BASELINE_REV=<git rev> bash tools/bench-languages.sh   # + the same chefs built by that rev's SDKs
#
# Builds the Python ports (ARPChef, DNSLookupChef, PacketCountChef), the JS DNSLookupChef
# (and the C one when clang-19 + wasi-libc are installed) under other names (Py*, Js*, C*),
# and an empty Python and JS chef (tools/bench-chefs: PyEmptyChef, JsEmptyChef; their time
# is the SDK's and the component boundary's cost alone). With BASELINE_REV, the Python and
# JS chefs are also built by the SDKs and nd-chef of that revision (git archive, same
# toolchain cache) as Py0*/Js0* and run in the same kitchen, so before/after is one run.
# writes a corpus of PACKETS Ethernet frames taken from ../shared/pcaps (timestamps rewritten
# to increase), and replays it ROUNDS times (default 3) through one nd-sniff holding every
# chef at once: the built-in Rust sample chefs and the others side by side, so load drift hits
# all of them equally. Figures come from the kitchen's own per-chef summary (time inside the
# chef per packet it was handed; interest filtering is the kitchen's, so each chef sees the
# packets it asked for): the chef thread's CPU time (ND_BENCH_CHEF_CPU=1), which waits for a
# core on a loaded machine do not inflate, with the wall time beside it. Prints medians over
# rounds and the slowdown against the Rust chef of the same name.
#
# Knobs: PROBES=1 adds the DNSLookupChef step probes (tools/bench-chefs/README.md);
# ONLY="PyEmptyChef JsEmptyChef ..." builds only the chefs named (each name as in the
# table, Py0*/Js0* included); TASKSET="taskset -c 1" runs nd-sniff under that prefix (pinned
# to one core, for a lower-noise figure on a shared machine); ROUNDS (default 3); REUSE=1 keeps
# the chefs built by the previous run (after a kitchen-only change; rebuild after SDK changes).
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PACKETS="${1:-100000}"
ROUNDS="${ROUNDS:-3}"
ND_SNIFF="${ND_SNIFF:-$REPO/target/release/nd-sniff}"
PCAPS="${ND_SHARED_PCAPS:-$REPO/../shared/pcaps}"
WORK="$REPO/target/bench-languages"
NDCHEF="$REPO/tools/nd-chef/nd-chef"

if [ ! -x "$ND_SNIFF" ]; then
    (cd "$REPO" && cargo build --release -p kitchen --bin nd-sniff)
fi
mkdir -p "$WORK/chefs"
if [ -z "${REUSE:-}" ]; then
    rm -f "$WORK"/chefs/*.wasm
fi

echo "bench-languages: building the corpus ($PACKETS packets from $PCAPS)" >&2
python3 - "$PCAPS" "$PACKETS" "$WORK/corpus.pcap" <<'EOF'
import glob, os, struct, sys
src, want, out = sys.argv[1], int(sys.argv[2]), sys.argv[3]
frames = []
for path in sorted(glob.glob(os.path.join(src, "*.pcap"))):
    with open(path, "rb") as f:
        data = f.read()
    if len(data) < 24:
        continue
    magic = data[:4]
    if magic in (b"\xd4\xc3\xb2\xa1", b"\x4d\x3c\xb2\xa1"):
        e = "<"
    elif magic in (b"\xa1\xb2\xc3\xd4", b"\xa1\xb2\x3c\x4d"):
        e = ">"
    else:
        continue
    if struct.unpack(e + "I", data[20:24])[0] & 0x0FFFFFFF != 1:
        continue
    pos = 24
    while pos + 16 <= len(data):
        incl, orig = struct.unpack(e + "II", data[pos + 8 : pos + 16])
        frame = data[pos + 16 : pos + 16 + incl]
        pos += 16 + incl
        if len(frame) == incl and 14 <= incl <= 1518:
            frames.append((frame, orig))
if not frames:
    sys.exit("no Ethernet frames found in " + src)
with open(out, "wb") as f:
    f.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1))
    t = 1_700_000_000 * 1_000_000
    for i in range(want):
        frame, orig = frames[i % len(frames)]
        t += 10  # 10 us apart: 100k packets span one second of capture time
        f.write(struct.pack("<IIII", t // 1_000_000, t % 1_000_000, len(frame), orig))
        f.write(frame)
print("bench-languages: %d packets (%d distinct frames) -> %s" % (want, len(frames), out), file=sys.stderr)
EOF

build() { # build SRC NAME [NDCHEF]
    if [ -n "${ONLY:-}" ] && [[ " $ONLY " != *" $2 "* ]]; then
        return 0
    fi
    if [ -n "${REUSE:-}" ] && [ -f "$WORK/chefs/$2.wasm" ]; then
        return 0
    fi
    # --no-precompile: on a loaded machine the precompile step can pass nd-sniff's 60 s
    # compile limit and fail the build; the kitchen below compiles instead (not timed).
    local src="$1"
    [[ "$src" == /* ]] || src="$REPO/$src"
    "${3:-$NDCHEF}" build --no-precompile "$src" --name "$2" -o "$WORK/chefs/$2.wasm" 2>&1 | grep -E '^nd-chef: (built|error)' >&2
}
build chefs/python/arp_chef PyARPChef
build chefs/python/dns_lookup_chef PyDNSLookupChef
build chefs/python/packet_count_chef PyPacketCountChef
build chefs/js/dns_lookup_chef JsDNSLookupChef
build tools/bench-chefs/empty_py PyEmptyChef
build tools/bench-chefs/empty_js JsEmptyChef
if [ -n "${PROBES:-}" ]; then
    # The DNSLookupChef cut short after each step (tools/bench-chefs/README.md).
    for step in none parse name touch; do
        for l in py js; do
            L=Py; [ "$l" = js ] && L=Js
            if [ -d "$REPO/tools/bench-chefs/dns_probes/${l}_$step" ]; then
                build "tools/bench-chefs/dns_probes/${l}_$step" "${L}DnsProbe_$step"
            fi
        done
    done
fi
if [ -n "${BASELINE_REV:-}" ]; then
    # The baseline SDKs build the sample chefs as they were at that revision (today's add a
    # snapshot()/restore() pair, which older SDKs lack; the packet handlers are the same),
    # and today's empty chefs (which use only the API both versions share); the components
    # target whatever contract that revision had.
    rm -rf "$WORK/baseline" && mkdir -p "$WORK/baseline"
    git -C "$REPO" archive "$BASELINE_REV" chef-sdk tools/nd-chef wit chefs/python chefs/js | tar -x -C "$WORK/baseline"
    export ND_CHEF_CACHE="${ND_CHEF_CACHE:-$REPO/target/nd-chef-cache}"
    OLD="$WORK/baseline/tools/nd-chef/nd-chef"
    build "$WORK/baseline/chefs/python/arp_chef" Py0ARPChef "$OLD"
    build "$WORK/baseline/chefs/python/dns_lookup_chef" Py0DNSLookupChef "$OLD"
    build "$WORK/baseline/chefs/python/packet_count_chef" Py0PacketCountChef "$OLD"
    build "$WORK/baseline/chefs/js/dns_lookup_chef" Js0DNSLookupChef "$OLD"
    build tools/bench-chefs/empty_py Py0EmptyChef "$OLD"
    build tools/bench-chefs/empty_js Js0EmptyChef "$OLD"
fi
if [ -d "$REPO/chefs/c/dns_lookup_chef" ] && "$NDCHEF" setup c >/dev/null 2>&1; then
    build chefs/c/dns_lookup_chef CDNSLookupChef
fi

# Its own compiled-chef cache, large enough for every chef of the run (about 40 Python and
# JS components of 30-60 MB compiled): with the default 512 MiB they evicted each other and
# every round compiled them all again (minutes on a loaded machine).
for r in $(seq 1 "$ROUNDS"); do
    echo "bench-languages: round $r/$ROUNDS" >&2
    ND_BENCH_CHEF_CPU=1 RUST_LOG=info ${TASKSET:-} "$ND_SNIFF" -r "$WORK/corpus.pcap" --no-hub --stdout -f "" -n bench \
        -d "$WORK/chefs" --chef-deadline-ms 5000 --chef-memory-mib 512 --chef-compile-timeout-secs 900 \
        --chef-cache-dir "$WORK/cache" --chef-cache-mib 16384 \
        >/dev/null 2>"$WORK/round$r.log"
done

python3 - "$WORK" "$ROUNDS" <<'EOF'
import re, statistics, sys
work, rounds = sys.argv[1], int(sys.argv[2])
# nd-sniff's exit summary, one line per chef: "chef NAME: STATE; N packets offered, N seen, ...; X ms in chef"
pat = re.compile(r"chef (\S+): \S+; \d+ packets offered, (\d+) seen, .*?; ([\d.]+) ms in chef")
cpu_pat = re.compile(r"([\d.]+) ms CPU in chef")
ansi = re.compile(r"\x1b\[[0-9;]*m")
per = {}
for r in range(1, rounds + 1):
    for line in open("%s/round%d.log" % (work, r), encoding="utf-8", errors="replace"):
        line = ansi.sub("", line)
        m = pat.search(line)
        if m and int(m.group(2)) > 0:
            name, packets, ms = m.group(1), int(m.group(2)), float(m.group(3))
            c = cpu_pat.search(line)
            per.setdefault(name, []).append((packets, ms, float(c.group(1)) if c else None))
if not per:
    sys.exit("no per-chef summary lines found in %s/round*.log" % work)
def lang(name):
    """(language label, base chef name) of a chef in the table."""
    for prefix, l in (("Py0", "python@base"), ("Js0", "js@base"), ("Py", "python"), ("Js", "js"), ("C", "c")):
        if name.startswith(prefix) and name[len(prefix):] in BASES:
            return l, name[len(prefix):]
        if name.startswith(prefix + "DnsProbe_"):  # PROBES=1: a step of DNSLookupChef
            return l, "DNSLookupChef"
    return "rust", name
BASES = ("ARPChef", "DNSLookupChef", "PacketCountChef", "EmptyChef")
rows, wall = [], {}
cpu = all(c is not None for runs in per.values() for _, _, c in runs)
for name, runs in per.items():
    packets = runs[0][0]
    wall[name] = statistics.median(ms * 1e6 / p for p, ms, _ in runs)
    # The chef thread's CPU time (ND_BENCH_CHEF_CPU=1): a loaded machine's waits for a core
    # are not in it, so it is the figure compared; the wall time is printed beside it.
    ns = statistics.median(c * 1e6 / p for p, _, c in runs) if cpu else wall[name]
    rows.append((name, lang(name), packets, ns))
rust_ns = {base: ns for name, (l, base), _, ns in rows if l == "rust"}
base_ns = {(l.split("@")[0], base): ns for name, (l, base), _, ns in rows if l.endswith("@base")}
print("%-22s %-11s %9s %12s %12s %14s %12s %14s" % ("chef", "lang", "packets", "ns/packet", "wall ns/pkt", "packets/s", "vs Rust", "vs base"))
for name, (l, base), packets, ns in sorted(rows, key=lambda r: (r[1][1], r[1][0] != "rust", r[3])):
    ratio = ("%.1fx slower" % (ns / rust_ns[base])) if base in rust_ns and l != "rust" else "baseline" if l == "rust" else "-"
    before = base_ns.get((l, base))
    speedup = "%.1fx faster" % (before / ns) if before else "-"
    print("%-22s %-11s %9d %12.0f %12.0f %14.0f %12s %14s" % (name, l, packets, ns, wall[name], 1e9 / ns, ratio, speedup))
print("(median of %d round(s); %s inside each chef per packet handed to it, same nd-sniff run;"
      " wall ns/pkt = the same by the wall clock; @base = built by the SDKs of BASELINE_REV)"
      % (rounds, "the chef thread's CPU time" if cpu else "wall time"))
EOF
