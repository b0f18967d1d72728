"""DumplingEater against our nd-hub: the original's API, byte-exact delivery, filters,
count and close codes, lag notices, and reconnect."""

import asyncio
import json
import os

import websockets

from netdumplings_eater import Dumpling, DumplingEater, InvalidDumpling, close_code

TIMEOUT = 15


def dumpling_text(seq, chef="TestChef", kitchen="pykitchen", driver="packet"):
    return json.dumps({"metadata": {"chef": chef, "kitchen": kitchen,
                                    "creation_time": 1795739862.5 + seq, "driver": driver},
                       "payload": {"seq": seq, "text": "caf\u00e9"}})


async def kitchen(uri, messages, delay=0.0, name="pykitchen"):
    async with websockets.connect(uri) as ws:
        await ws.send(json.dumps({"kitchen_name": name, "interface": "lo"}))
        for m in messages:
            await ws.send(m)
            if delay:
                await asyncio.sleep(delay)
        await asyncio.sleep(0.2)


async def eat_while(eater, count, *coros):
    """Run the eater and the given coroutines; the eater must finish in time."""
    task = asyncio.ensure_future(eater._run(count))
    await asyncio.sleep(0.3)  # let it connect and register
    others = [asyncio.ensure_future(c) for c in coros]
    await asyncio.wait_for(task, TIMEOUT)
    for o in others:
        o.cancel()


def test_receives_exactly_what_the_kitchen_sent(hub):
    sent = [dumpling_text(i) for i in range(50)]
    got = []
    connected = []

    async def on_connect(uri, ws):
        connected.append(uri)

    async def on_dumpling(d):
        got.append(d)

    eater = DumplingEater(name="pyeater", hub=hub.eaters, chef_filter=["TestChef"],
                          on_connect=on_connect, on_dumpling=on_dumpling)
    asyncio.run(eat_while(eater, 50, kitchen(hub.kitchens, sent)))
    assert connected == ["ws://" + hub.eaters]
    assert [d.raw for d in got] == sent, "byte for byte, in order"
    assert got[0].chef_name == "TestChef" and got[0].kitchen == "pykitchen"
    assert got[0].driver == "packet" and got[0].payload["text"] == "caf\u00e9"
    assert eater.dumplings_eaten == 50


def test_status_arrives_at_once_and_filters_apply(hub):
    got = []

    async def on_dumpling(d):
        got.append(d)

    eater = DumplingEater(name="detailseater", hub=hub.eaters,
                          chef_filter=["SystemStatusChef"], on_dumpling=on_dumpling)
    asyncio.run(asyncio.wait_for(eater._run(1), 5))
    status = got[0].payload
    assert status["dumpling_eater_count"] == 1
    # The chef filter goes to the hub too (nd_chefs, interest pushdown), and the hub
    # republishes the hello verbatim.
    assert status["dumpling_eaters"][0]["info_from_eater"] == {
        "eater_name": "detailseater", "nd_chefs": ["SystemStatusChef"]}
    for key in ("total_dumplings_in", "total_dumplings_out", "server_uptime",
                "dumpling_kitchen_count", "dumpling_kitchens"):
        assert key in status


def test_subclass_callbacks_and_run_blocking(hub):
    class Counter(DumplingEater):
        seen = 0

        async def on_dumpling(self, dumpling):
            Counter.seen += 1

    # run() blocks in asyncio.run like the original; the hub's welcome status counts.
    Counter(name="counter", hub=hub.eaters).run(dumpling_count=1)
    assert Counter.seen == 1


def test_lag_notices_are_surfaced(tmp_path):
    from conftest import HubProcess
    h = HubProcess(extra=["-f", "60", "--ring-capacity", "64", "--eater-queue-bytes", "65536"])
    try:
        lags = []
        got = []

        async def on_dumpling(d):
            got.append(d.payload["seq"])
            if len(got) == 1:
                await asyncio.sleep(3)  # fall far behind once

        async def on_lag(missed):
            lags.append(missed)

        n = 20000
        eater = DumplingEater(name="slow", hub=h.eaters, chef_filter=["TestChef"],
                              on_dumpling=on_dumpling, on_lag=on_lag)
        big = [dumpling_text(i).replace('"caf\\u00e9"', '"' + "x" * 900 + '"')
               for i in range(n)]

        async def main():
            task = asyncio.ensure_future(eater._run(None))
            await asyncio.sleep(0.3)
            await kitchen(h.kitchens, big)
            deadline = asyncio.get_event_loop().time() + TIMEOUT
            while len(got) + sum(lags) < n and asyncio.get_event_loop().time() < deadline:
                await asyncio.sleep(0.1)
            task.cancel()

        asyncio.run(main())
        assert lags, "the hub told the eater it lagged"
        assert len(got) + sum(lags) == n, "every dumpling delivered or reported missed"
        assert got == sorted(got), "still in order"
    finally:
        h.stop()


def test_reconnects_when_the_hub_comes_back():
    from conftest import HubProcess
    h = HubProcess(extra=["-f", "60"])
    try:
        got = []
        lost = []

        async def on_dumpling(d):
            got.append(d.payload["seq"])

        async def on_connection_lost(e):
            lost.append(e)

        eater = DumplingEater(name="phoenix", hub=h.eaters, chef_filter=["TestChef"],
                              on_dumpling=on_dumpling, on_connection_lost=on_connection_lost,
                              backoff_initial=0.2, backoff_max=0.5)

        async def main():
            task = asyncio.ensure_future(eater._run(2))
            await asyncio.sleep(0.3)
            await kitchen(h.kitchens, [dumpling_text(1)])
            h.stop()
            await asyncio.sleep(0.5)
            h.start()
            await asyncio.sleep(1.5)  # backoff, reconnect
            await kitchen(h.kitchens, [dumpling_text(2)])
            await asyncio.wait_for(task, TIMEOUT)

        asyncio.run(main())
        assert got == [1, 2]
        assert lost, "on_connection_lost was called"
        assert close_code(lost[0]) == 1001, "the hub closed with 1001 on shutdown"
        assert eater.reconnects == 1
    finally:
        h.stop()


def test_gives_up_without_reconnect_when_nothing_listens(caplog):
    from conftest import free_port
    port = free_port()
    eater = DumplingEater(name="lonely", hub="127.0.0.1:{}".format(port),
                          reconnect=False)

    async def on_dumpling(d):
        pass

    eater.on_dumpling = on_dumpling
    with caplog.at_level("WARNING"):
        asyncio.run(asyncio.wait_for(eater._run(1), 5))
    assert eater.dumplings_eaten == 0
    messages = [r.getMessage() for r in caplog.records]
    # It never had a connection to lose: it says it could not connect, and where.
    assert not [m for m in messages if "Lost connection" in m], messages
    assert [m for m in messages
            if "Could not connect to dumpling hub at" in m and str(port) in m], messages


def test_count_closes_with_4102(hub):
    seen_codes = []

    async def main():
        eater = DumplingEater(name="full", hub=hub.eaters)

        async def on_dumpling(d):
            pass
        eater.on_dumpling = on_dumpling

        async def on_connect(uri, ws):
            eater._ws = ws
        eater.on_connect = on_connect
        await asyncio.wait_for(eater._run(1), 5)
        seen_codes.append(eater._ws.close_code)

    asyncio.run(main())
    assert seen_codes == [4102]


def test_from_json_rejects_what_the_original_rejects():
    for bad in ["nope", "[1]", '{"metadata": {"chef": "MinimalChef"}}',
                '{"metadata": {"chef": "C", "kitchen": null, "creation_time": 1, '
                '"driver": "x"}, "payload": 1}']:
        try:
            Dumpling.from_json(bad)
        except InvalidDumpling:
            continue
        raise AssertionError("accepted " + bad)
    d = Dumpling.from_json(dumpling_text(3))
    assert d.chef == d.chef_name == "TestChef"


def test_replay_from_a_sequence_and_interest_against_a_federated_hub(tmp_path):
    """since_seq replays from the hub's JetStream stream (real nats-server), each
    dumpling carries its sequence, and chef_filter is sent to the hub as nd_chefs."""
    import subprocess

    import pytest

    from conftest import HubProcess, free_port, nats_server, wait_port

    server = nats_server()
    if server is None:
        assert "CI" not in os.environ, (
            "nats-server is missing in CI: scripts/setup.sh installs it "
            "(scripts/nats-server.sh, else apt-get install nats-server)")
        pytest.skip("nats-server not found (scripts/nats-server.sh installs the pinned one; "
                    "or apt-get install nats-server)")
    port = free_port()
    nats = subprocess.Popen([server, "-a", "127.0.0.1", "-p", str(port), "-js",
                             "-sd", str(tmp_path)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        assert wait_port(port), "nats-server did not start"
        hub = HubProcess(extra=["-f", "60", "--nats", "nats://127.0.0.1:{}".format(port)])
        try:
            sent = [dumpling_text(i, chef="ChefA" if i % 2 == 0 else "ChefB")
                    for i in range(40)]
            asyncio.run(kitchen(hub.kitchens, sent))
            got = []

            async def on_dumpling(d):
                got.append(d)

            # The stream was empty: sequence i+1 holds dumpling i; ChefA has the even ones.
            eater = DumplingEater(name="replayer", hub=hub.eaters, chef_filter=["ChefA"],
                                  since_seq=11, on_dumpling=on_dumpling)
            assert eater._hello() == {"eater_name": "replayer", "nd_chefs": ["ChefA"],
                                      "nd_since_seq": 11}
            asyncio.run(eat_while(eater, 15))
            assert [d.payload["seq"] for d in got] == list(range(10, 40, 2))
            assert [d.seq for d in got] == list(range(11, 41, 2))
            assert eater.last_seq == 39
            # A resumed hello continues after the last sequence seen, in the stream the
            # hub's start notice named.
            assert eater._hello()["nd_since_seq"] == 40
            assert eater._hello()["nd_stream"].startswith("ND_DUMPLINGS@"), eater._hello()
        finally:
            hub.stop()
    finally:
        nats.terminate()
        nats.wait(timeout=10)
