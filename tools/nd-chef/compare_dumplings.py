#!/usr/bin/env python3
"""Compare two runs' dumplings (JSON lines, kitchen envelopes), chef by chef, timestamps aside.

    compare_dumplings.py [--allow-empty] EXPECTED.jsonl ACTUAL.jsonl CHEF [CHEF...]

For each CHEF, the sequence of (driver, payload) of its dumplings in ACTUAL must equal the one
in EXPECTED, after dropping `metadata.creation_time`, `metadata.kitchen` and every payload key
that holds a time (`time`, `when`, `latest`). Each CHEF must have at least one dumpling in
EXPECTED (a comparison of nothing proves nothing) unless --allow-empty is given, which
counts a chef with no dumplings in either file as skipped. Prints one line per chef and a closing
"N passed, N failed" line; exits 1 on any difference.
"""

import json
import sys

TIME_KEYS = frozenset(("time", "when", "latest"))


def strip_times(value):
    if isinstance(value, dict):
        return {k: strip_times(v) for k, v in value.items() if k not in TIME_KEYS}
    if isinstance(value, list):
        return [strip_times(v) for v in value]
    return value


def load(path):
    by_chef = {}
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            line = line.strip()
            if not line:
                continue
            try:
                d = json.loads(line)
                chef = d["metadata"]["chef"]
                driver = d["metadata"]["driver"]
                payload = d["payload"]
            except (ValueError, KeyError, TypeError) as e:
                raise SystemExit("%s:%d: not a dumpling (%s): %s" % (path, n, e, line[:200]))
            by_chef.setdefault(chef, []).append((driver, strip_times(payload)))
    return by_chef


def main(argv):
    allow_empty = "--allow-empty" in argv
    argv = [a for a in argv if a != "--allow-empty"]
    if len(argv) < 4:
        print(__doc__, file=sys.stderr)
        return 2
    expected, actual = load(argv[1]), load(argv[2])
    passed = failed = skipped = 0
    for chef in argv[3:]:
        want, got = expected.get(chef, []), actual.get(chef, [])
        if not want and not got and allow_empty:
            print("skip %s: no dumplings in either file" % chef)
            skipped += 1
        elif not want:
            print("FAIL %s: no dumplings in %s (nothing to compare)" % (chef, argv[1]))
            failed += 1
        elif want == got:
            print("ok   %s: %d dumplings equal (%d packet, %d interval)" % (
                chef, len(want), sum(1 for d, _ in want if d == "packet"), sum(1 for d, _ in want if d == "interval")))
            passed += 1
        else:
            failed += 1
            print("FAIL %s: %d expected, %d actual" % (chef, len(want), len(got)))
            for i in range(max(len(want), len(got))):
                w = want[i] if i < len(want) else None
                g = got[i] if i < len(got) else None
                if w != g:
                    print("     first difference at #%d:\n       expected %s\n       actual   %s" % (
                        i, json.dumps(w)[:400], json.dumps(g)[:400]))
                    break
    print("%d passed, %d failed" % (passed, failed) + (", %d skipped" % skipped if skipped else ""))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
