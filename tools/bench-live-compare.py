#!/usr/bin/env python3
"""Two nd-sniff binaries, live on lo, interleaved: the kitchen's CPU time per packet received.

Why: the live path (kitchen::run::live) has no in-process benchmark of a real capture;
nd-isolation-bench simulates the capture queue. This runs the real thing: each round starts
each binary on `lo` (default chefs, filter `udp port P`, no hub, stdout to /dev/null), sends
N UDP datagrams paced at RATE per second, waits a second for the queue to drain, reads the
process's CPU time (utime + stime from /proc) and stops it with SIGINT. Printed per run and
as medians with the ratio against the first binary: CPU µs per packet received, packets
received, packets the chefs saw (summed over chefs) and packets dropped (capture).

Needs root (live capture). Only loopback traffic; stops only the processes it started.

    tools/bench-live-compare.py BASELINE_SNIFF CANDIDATE_SNIFF [--rounds 3] [--packets 300000]
        [--rate 100000] [--chef-dir DIR] [-- EXTRA nd-sniff ARGS]
"""

import argparse
import os
import re
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time


def run_once(binary, args, extra):
    """One live run of `binary`; returns (cpu_us_per_packet, received, seen, dropped,
    the send rate reached)."""
    rx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    rx.bind(("127.0.0.1", 0))
    rx.setblocking(False)
    port = rx.getsockname()[1]
    cmd = [binary, "-i", "lo", "-f", f"udp port {port}", "--no-hub", "--stdout",
           "-n", "livecmp", "--no-chef-watch", "-p", "1"]
    if args.chef_dir:
        cmd += ["-d", args.chef_dir]
    cmd += extra
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            env=dict(os.environ, RUST_LOG="info"), text=True, errors="replace")
    lines = []
    reader = threading.Thread(target=lambda: lines.extend(proc.stderr), daemon=True)
    reader.start()
    try:
        started = time.monotonic()
        while not any("Sniffing started" in line for line in lines):
            if proc.poll() is not None or time.monotonic() - started > 60:
                raise SystemExit(f"{binary} did not start capturing:\n{''.join(lines)[-2000:]}")
            time.sleep(0.02)
        time.sleep(0.3)
        tx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        payload = b"x" * 64
        start = time.monotonic()
        for i in range(args.packets):
            tx.sendto(payload, ("127.0.0.1", port))
            if i % 100 == 0:
                try:
                    while True:
                        rx.recv(2048)
                except BlockingIOError:
                    pass
                ahead = start + i / args.rate - time.monotonic()
                if ahead > 0:
                    time.sleep(ahead)
        sent_rate = args.packets / max(time.monotonic() - start, 1e-9)
        time.sleep(1.0)
        with open(f"/proc/{proc.pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        ticks = int(fields[11]) + int(fields[12])
        proc.send_signal(signal.SIGINT)
        proc.wait(60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    reader.join(5)
    text = "".join(lines)
    stats = [line for line in lines if "capture statistics" in line]
    if not stats:
        raise SystemExit(f"{binary}: no capture statistics line:\n{text[-2000:]}")
    received = int(re.search(r"received=(\d+)", stats[0]).group(1))
    dropped = int(re.search(r"\bdropped=(\d+)", stats[0]).group(1))
    # Per chef "seen": "chef X: running; N packets offered, N seen" (and the older binaries'
    # "chef X status: state running, N packets offered, N seen").
    seen = sum(int(m) for m in re.findall(
        r"(?:status: state \w+, |: [A-Za-z]+; )\d+ packets offered, (\d+) seen", text))
    cpu_us = ticks / os.sysconf("SC_CLK_TCK") * 1e6 / max(received, 1)
    return cpu_us, received, seen, dropped, sent_rate


def main():
    argv = sys.argv[1:]
    extra = []
    if "--" in argv:
        at = argv.index("--")
        argv, extra = argv[:at], argv[at + 1:]
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("baseline", help="the nd-sniff to compare against")
    p.add_argument("candidate", help="the nd-sniff under test")
    p.add_argument("--rounds", type=int, default=3, help="interleaved rounds (medians printed)")
    p.add_argument("--packets", type=int, default=300_000, help="datagrams per run")
    p.add_argument("--rate", type=int, default=100_000, help="datagrams per second")
    p.add_argument("--chef-dir", help="a chef folder for both (-d), e.g. with a hostile chef")
    args = p.parse_args(argv)
    if os.geteuid() != 0:
        raise SystemExit("bench-live-compare: live capture needs root")
    results = {args.baseline: [], args.candidate: []}
    for r in range(args.rounds):
        for binary in results:
            run = run_once(binary, args, extra)
            results[binary].append(run)
            print(f"round {r} {binary}: {run[0]:.3f} µs CPU/packet, received {run[1]}, "
                  f"seen {run[2]}, dropped {run[3]} (sent at {run[4]:.0f}/s)", flush=True)
    base = statistics.median(x[0] for x in results[args.baseline])
    for binary, runs in results.items():
        cpu = statistics.median(x[0] for x in runs)
        print(f"{binary}: median {cpu:.3f} µs CPU/packet (ratio {cpu / base:.3f}), "
              f"received {statistics.median(x[1] for x in runs):.0f}, "
              f"seen {statistics.median(x[2] for x in runs):.0f}, "
              f"dropped {statistics.median(x[3] for x in runs):.0f}")


if __name__ == "__main__":
    main()
