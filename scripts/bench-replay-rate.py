#!/usr/bin/env python3
"""Replay rate of one eater from a federated hub's JetStream stream, on loopback.

Usage: scripts/bench-replay-rate.py N REPLAY_RATE   (needs websockets,
target/release/nd-hub and a nats-server: $ND_NATS_SERVER, else the pinned one in
target/nd-tools/, else nats-server on PATH). Starts nats-server -js and nd-hub --nats --replay-rate
REPLAY_RATE on free 127.0.0.1 ports, stores N dumplings of ~230 B through a kitchen, then
three times times an eater with {"nd_since_seq": 1} until it has all N; prints the median
dumplings/s. Both processes are stopped by PID at the end.
"""
import asyncio, json, os, socket, subprocess, sys, tempfile, time
import websockets
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
def free():
    s = socket.socket(); s.bind(("127.0.0.1", 0)); p = s.getsockname()[1]; s.close(); return p
def wait(p):
    for _ in range(200):
        try: socket.create_connection(("127.0.0.1", p), 0.2).close(); return
        except OSError: time.sleep(0.05)
    raise SystemExit("port %d" % p)
N = int(sys.argv[1]); rate = sys.argv[2]
d = tempfile.mkdtemp(); np = free()
pinned = ROOT + "/target/nd-tools/nats-server-2.15.1/nats-server"
server = os.environ.get("ND_NATS_SERVER") or (pinned if os.path.isfile(pinned) else "nats-server")
nats = subprocess.Popen([server, "-a", "127.0.0.1", "-p", str(np), "-js", "-sd", d], stderr=subprocess.DEVNULL)
wait(np); i, o = free(), free()
hub = subprocess.Popen([ROOT + "/target/release/nd-hub", "-a", "127.0.0.1", "-i", str(i), "-o", str(o), "--nats", "nats://127.0.0.1:%d" % np, "--replay-rate", rate], stderr=subprocess.DEVNULL)
wait(i); wait(o); time.sleep(0.5)
async def main():
    async with websockets.connect("ws://127.0.0.1:%d" % i) as k:
        await k.send(json.dumps({"kitchen_name": "bk"}))
        for n in range(N):
            await k.send(json.dumps({"metadata": {"chef": "BenchChef", "kitchen": "bk", "creation_time": 1.5, "driver": "packet"}, "payload": {"n": n, "pad": "x" * 150}}))
        await asyncio.sleep(2.0)
    res = []
    for rep in range(3):
        async with websockets.connect("ws://127.0.0.1:%d" % o, max_size=None) as e:
            await e.send(json.dumps({"eater_name": "r", "nd_since_seq": 1}))
            got = 0; t0 = time.perf_counter()
            while got < N:
                m = json.loads(await e.recv())
                if m["metadata"]["chef"] == "BenchChef": got += 1
            res.append(N / (time.perf_counter() - t0))
    res.sort(); print("replay-rate=%s N=%d dumplings/s median=%.0f (runs %s)" % (rate, N, res[1], ", ".join("%.0f" % r for r in res)))
try: asyncio.run(main())
finally:
    hub.terminate(); hub.wait(); nats.terminate(); nats.wait()
