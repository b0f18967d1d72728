"""DumplingEater against a hostile hub (a fake one on 127.0.0.1, in this process): frames
that are not dumplings, forged notices and close reasons are logged escaped, counted and
skipped, and the eater carries on to the good dumpling after them (as the Rust eaters)."""

import asyncio
import json

import websockets

from netdumplings_eater import Dumpling, DumplingEater, InvalidDumpling

TIMEOUT = 15
ESC = "\x1b"


def dumpling_text(seq, chef="TestChef", kitchen="pykitchen", **meta):
    metadata = {"chef": chef, "kitchen": kitchen, "creation_time": 1795739862.5 + seq,
                "driver": "packet"}
    metadata.update(meta)
    return json.dumps({"metadata": metadata, "payload": {"seq": seq}})


def notice(payload):
    return json.dumps({"metadata": {"chef": "HubNoticeChef", "kitchen": None,
                                    "creation_time": 1795739862.5, "driver": "interval"},
                       "payload": payload})


def deep(n):
    """A valid envelope whose payload is nested ``n`` deep (json.loads recurses per level)."""
    return dumpling_text(0).replace('{"seq": 0}', "[" * n + "]" * n)


async def fake_hub(frames, close=None):
    """A hub that answers the eater's hello with ``frames``, then closes with ``close``
    (code, reason) or waits for the eater to close; returns (server, "127.0.0.1:PORT")."""
    async def handler(ws):
        await ws.recv()  # the eater's hello
        for f in frames:
            await ws.send(f)
        if close is not None:
            await ws.close(*close)
        else:
            await ws.wait_closed()  # the eater closes (4102) after its count

    server = await websockets.serve(handler, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    return server, "127.0.0.1:{}".format(port)


def eat(frames, caplog, count=1, close=None, **kwargs):
    """Run an eater against a fake hub sending ``frames``; the dumplings it passed on."""
    got = []

    async def on_dumpling(d):
        got.append(d)

    async def main():
        server, address = await fake_hub(frames, close)
        eater = DumplingEater(name="target", hub=address, on_dumpling=on_dumpling, **kwargs)
        try:
            await asyncio.wait_for(eater._run(count), TIMEOUT)
        finally:
            server.close()
            await server.wait_closed()
        return eater

    caplog.set_level("WARNING")
    eater = asyncio.run(main())
    return eater, got


def test_frames_that_are_not_dumplings_are_skipped_and_counted(caplog):
    hostile = [
        deep(100000),  # RecursionError in json.loads: ended run() with exit status 1
        '{"metadata": ' + "[" * 5000 + "]" * 5000 + "}",
        '{"a": ' * 3000 + "1" + "}" * 3000,
        dumpling_text(1, chef=["TestChef"]),  # a list as a chef: TypeError in `in set`
        dumpling_text(2, chef={"x": 1}),
        dumpling_text(3, kitchen=7),
        dumpling_text(4, creation_time="now"),
        dumpling_text(5, creation_time=True),
        b"\xff\xfe not UTF-8",
        "[]",
    ]
    good = dumpling_text(9)
    eater, got = eat(hostile + [good], caplog, chef_filter={"TestChef"})
    assert [d.raw for d in got] == [good], "the good dumpling after them arrived"
    assert eater.invalid_dumplings == len(hostile)
    invalid = [r for r in caplog.records if "Invalid dumpling" in r.getMessage()]
    assert len(invalid) == len(hostile), [r.getMessage()[:200] for r in caplog.records]


def test_from_json_refuses_deep_nesting_and_wrong_metadata_types():
    for bad in [deep(100000), dumpling_text(1, chef=None), dumpling_text(1, kitchen=[]),
                dumpling_text(1, creation_time=None), dumpling_text(1, creation_time=False)]:
        try:
            Dumpling.from_json(bad)
        except InvalidDumpling:
            continue
        raise AssertionError("accepted " + bad[:200])
    # What the hub itself sends stays valid: kitchen null, integer times, a sequence.
    d = Dumpling.from_json(dumpling_text(1, kitchen=None, creation_time=17, nd_seq=5))
    assert d.kitchen is None and d.creation_time == 17 and d.seq == 5
    # A sequence is a u64 (as the Rust eaters read nd_seq): others are no sequence.
    for seq in [True, -1, 1 << 64, 2.0, "5"]:
        assert Dumpling.from_json(dumpling_text(1, nd_seq=seq)).seq is None, seq


def test_forged_notices_are_invalid_and_the_lag_total_stays_a_count(caplog):
    forged = [
        {"lagged": "x\u001b[2J"},  # TypeError in `self.lagged += missed`: ended run()
        {"lagged": -5},
        {"lagged": 1e308},
        {"lagged": 3.0},
        {"lagged": True},  # a bool is an int in Python, not a count
        {"lagged": 1 << 64},
        {"lagged": [1]},
        {},
        {"lagged": 1, "notice": {"x": ESC}},
        {"lagged": 1, "nd_next_seq": "1"},
        {"lagged": 1, "nd_next_seq": -1},
        {"lagged": 0, "nd_stream": 5},
        {"lagged": 0, "nd_stream": "x" * 513},
        [],
        "\u001b[2J",
    ]
    valid = [{"lagged": 7}, {"lagged": (1 << 64) - 1},
             {"lagged": 0, "notice": "\u001b]0;t\u0007\r\nFORGED\u202e" + "y" * 1000}]
    lags = []

    async def on_lag(missed):
        lags.append(missed)

    frames = [notice(p) for p in forged + valid] + [dumpling_text(1)]
    eater, got = eat(frames, caplog, on_lag=on_lag)
    assert [d.payload for d in got] == [{"seq": 1}], "the dumpling after the notices arrived"
    assert lags == [7, (1 << 64) - 1, 0], "only the valid notices were counted"
    assert eater.lagged == 7 + (1 << 64) - 1 and type(eater.lagged) is int
    assert eater.invalid_dumplings == len(forged)
    messages = [r.getMessage() for r in caplog.records]
    assert sum("Invalid dumpling" in m for m in messages) == len(forged), messages
    # The hub's text reaches the log escaped and cut: no terminal escape, no line break.
    for m in messages:
        assert ESC not in m and "\r" not in m and "\n" not in m and "\u202e" not in m, repr(m)
        assert len(m) < 600, "cut: {} characters".format(len(m))
    assert any("hub notice: \\x1b]0;t\\x07\\r\\nFORGED\\u202e" in m for m in messages), messages
    assert any("lagged is not a count: 'x\\x1b[2J'" in m for m in messages), messages


def test_a_close_reason_from_the_hub_is_logged_escaped(caplog):
    eater, got = eat([], caplog, close=(4000, "\u001b]0;x\u0007\r\nFORGED reason"),
                     reconnect=False)
    assert got == []
    messages = [r.getMessage() for r in caplog.records]
    lost = [m for m in messages if "Lost connection to dumpling hub" in m]
    assert lost and all("\\x1b]0;x\\x07\\r\\nFORGED reason" in m for m in lost), messages
    for m in messages:
        assert ESC not in m and "\r" not in m and "\n" not in m, repr(m)


def test_a_hub_at_its_connection_limit_is_retried_not_given_up(caplog):
    """nd-hub answers HTTP 503 when its slots are full: a moment later there may be room,
    so the eater retries (it stopped for good, as for something that is no hub)."""
    got = []

    async def on_dumpling(d):
        got.append(d)

    async def main():
        server, upstream = await fake_hub([dumpling_text(1)])
        up_host, up_port = upstream.split(":")
        refused = []

        async def front(reader, writer):
            # The first two attempts find the hub full; later ones reach the real one.
            if len(refused) < 2:
                refused.append(True)
                await reader.readuntil(b"\r\n\r\n")
                writer.write(b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\n"
                             b"Connection: close\r\n\r\n")
                await writer.drain()
                writer.close()
                return
            up_reader, up_writer = await asyncio.open_connection(up_host, int(up_port))

            async def pipe(src, dst):
                try:
                    while True:
                        data = await src.read(65536)
                        if not data:
                            break
                        dst.write(data)
                        await dst.drain()
                except (ConnectionError, asyncio.CancelledError):
                    pass
                finally:
                    dst.close()

            await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))

        proxy = await asyncio.start_server(front, "127.0.0.1", 0)
        port = proxy.sockets[0].getsockname()[1]
        eater = DumplingEater(name="patient", hub="127.0.0.1:{}".format(port),
                              on_dumpling=on_dumpling, backoff_initial=0.05, backoff_max=0.1)
        try:
            await asyncio.wait_for(eater._run(1), TIMEOUT)
        finally:
            proxy.close()
            server.close()
            await server.wait_closed()
        return refused

    caplog.set_level("WARNING")
    refused = asyncio.run(main())
    assert len(refused) == 2
    assert [d.payload for d in got] == [{"seq": 1}], got
    assert any("HTTP 503" in r.getMessage() for r in caplog.records)


def test_a_new_stream_named_in_a_notice_resets_the_resume_point(caplog):
    # The eater was at sequence 1006 of stream A; the hub says it now reads stream B from
    # sequence 1 (deleted and created again): B's dumplings 1..3 must pass, not be taken
    # for ones already passed on, and a resume asks for B's next sequence, naming B.
    eater = DumplingEater(name="resumer", hub="127.0.0.1:1", resume=True)
    eater.last_seq, eater._seam, eater.stream = 1006, 1006, "ND@1"
    got = []

    async def on_dumpling(d):
        got.append(d)

    eater.on_dumpling = on_dumpling
    frames = [notice({"lagged": 0, "notice": "stream created again", "nd_next_seq": 1,
                      "nd_stream": "ND@2"})] + [dumpling_text(i, nd_seq=i) for i in (1, 2, 3)]

    async def main():
        server, address = await fake_hub(frames)
        try:
            async with websockets.connect("ws://" + address) as ws:
                await ws.send(json.dumps(eater._hello()))
                await asyncio.wait_for(eater._grab_dumplings(ws, 3), TIMEOUT)
        finally:
            server.close()
            await server.wait_closed()

    caplog.set_level("WARNING")
    asyncio.run(main())
    assert [d.seq for d in got] == [1, 2, 3]
    assert eater.stream == "ND@2" and eater.last_seq == 3
    assert eater._hello()["nd_since_seq"] == 4 and eater._hello()["nd_stream"] == "ND@2"
