"""DumplingEater for nd-hub, compatible with the original netdumplings 0.5.1 eater API.

The constructor and callbacks are the original's (``name``, ``hub``, ``chef_filter``,
``on_connect``, ``on_dumpling``, ``on_connection_lost``, ``run(dumpling_count=...)``).
Added: reconnect with exponential backoff (``reconnect=True``, on by default) and
``on_lag(missed)`` for the hub's ``HubNoticeChef`` notices (the hub dropped ``missed``
dumplings because this eater fell behind). Close codes: 4101 on cancel, 4102 when full.

Fleet options (optional hello keys; the original hub ignores them): ``chef_filter`` and
``kitchen_filter`` are sent as ``nd_chefs`` / ``nd_kitchens`` so the hub sends only those
(``send_interest=False`` to keep them local); ``since`` (``"10m"`` or an RFC 3339 time) or
``since_seq`` (a JetStream stream sequence) replay from a federated hub (``nd-hub --nats``);
``resume=True`` keeps the last ``metadata.nd_seq`` seen and, after a lost connection,
continues from it on the next hub of ``hub`` (``"A:1,B:2"``), passing nothing on twice.

TLS and tokens (``wss://`` hubs, ``tls_ca``, client certificates, ``token_file`` or
``ND_HUB_TOKEN``) are in :mod:`netdumplings_eater.link`, mirroring the Rust ``hub-link``.
"""

import asyncio
import json
import logging
import reprlib
import time

import websockets

from .link import TOKEN_ENV, HubLinkError, Link, _status_of

__all__ = [
    "Dumpling",
    "DumplingDriver",
    "DumplingEater",
    "HubLinkError",
    "Link",
    "TOKEN_ENV",
    "InvalidDumpling",
    "NetDumplingsError",
]
__version__ = "0.1.0"

HUB_NOTICE_CHEF = "HubNoticeChef"
SYSTEM_STATUS_CHEF = "SystemStatusChef"
CLOSE_CANCELLED = (4101, "connection cancelled")
CLOSE_FULL = (4102, "dumpling eater is full")
CLOSE_BAD_HELLO = 1008
# Counts and stream sequences are u64 on the wire (what the Rust eaters accept).
U64_MAX = (1 << 64) - 1
# Characters of a hub's text written to a log (the Rust eaters' DEFAULT_MAX_CHARS).
PEER_TEXT_MAX = 256
# Longest nd_stream a hub reads back (dumpling::eater_hello_keys::MAX_STREAM_BYTES).
MAX_STREAM_BYTES = 512

# A value a hub sent, for a log line: its repr (strings quoted and escaped), short and
# shallow (reprlib cuts long strings, long lists and deep nesting; a plain repr of a big or
# deeply nested value could be megabytes, or overflow the stack).
_PEER_REPR = reprlib.Repr()
_PEER_REPR.maxlevel = 3
_PEER_REPR.maxstring = 60
_PEER_REPR.maxother = 60
_PEER_REPR.maxlong = 60


def peer_value(value):
    """A JSON value a hub sent (say, a notice's field of the wrong type), fit for a log."""
    return _PEER_REPR.repr(value)


def peer_text(text, max_chars=PEER_TEXT_MAX):
    """A string a hub sent (a notice, a close reason), fit for a log or a terminal:
    control, bidi and other invisible characters escaped as Python's repr writes them
    (``\\x1b``, ``\\u202e``), cut after ``max_chars`` characters and marked ``…[+N chars]``
    (as the Rust eaters escape and cut a hub's words)."""
    out = repr(text[:max_chars])[1:-1]
    if len(text) > max_chars:
        out += "…[+{} chars]".format(len(text) - max_chars)
    return out


def is_u64(value):
    """``value`` is a JSON integer that fits a u64 (bool is an int in Python, not here)."""
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= U64_MAX


def close_code(e):
    """The close code the hub sent with a ``ConnectionClosed`` (None if none)."""
    rcvd = getattr(e, "rcvd", None)
    return rcvd.code if rcvd is not None else None


class NetDumplingsError(Exception):
    """Base error (as the original)."""


class InvalidDumpling(NetDumplingsError):
    """A message that is not a valid dumpling."""


class DumplingDriver:
    """Driver names (the original's enum values)."""

    packet = "packet"
    interval = "interval"


class Dumpling:
    """A received dumpling: ``chef``/``chef_name``, ``kitchen``, ``driver``,
    ``creation_time`` and ``payload`` (as the original's ``Dumpling.from_json``)."""

    def __init__(self, *, chef, driver=DumplingDriver.packet, creation_time=None,
                 payload=None, kitchen=None, raw=None, seq=None):
        self.seq = seq
        self.chef = chef
        self.chef_name = chef
        self.kitchen = kitchen
        self.driver = driver
        self.creation_time = time.time() if creation_time is None else creation_time
        self.payload = payload
        self.raw = raw

    @classmethod
    def from_json(cls, data):
        """Parse a dumpling; raises :class:`InvalidDumpling` for anything invalid: what
        the Rust eaters refuse (metadata of the wrong types too), and JSON nested too
        deeply for Python's parser."""
        try:
            obj = json.loads(data)
        except (TypeError, ValueError, RecursionError) as e:
            # RecursionError: json.loads recurses per nesting level, so a hub's frame of
            # ~1000 brackets would otherwise end the eater's run().
            raise InvalidDumpling("Could not interpret dumpling JSON: {}".format(e))
        if not isinstance(obj, dict) or not isinstance(obj.get("metadata"), dict):
            raise InvalidDumpling("Dumpling is not an object with a metadata object")
        meta = obj["metadata"]
        for key in ("chef", "driver", "creation_time", "kitchen"):
            if key not in meta:
                raise InvalidDumpling("Dumpling JSON was missing key: '{}'".format(key))
        if "payload" not in obj:
            raise InvalidDumpling("Dumpling JSON was missing key: 'payload'")
        if meta["driver"] not in (DumplingDriver.packet, DumplingDriver.interval):
            raise InvalidDumpling("Dumpling driver was not 'packet' or 'interval'")
        # The types the Rust eaters require: chef names and kitchens are compared with
        # the filters (a list as a chef made `in set` raise TypeError), times are numbers.
        if not isinstance(meta["chef"], str):
            raise InvalidDumpling("Could not determine chef name")
        if meta["kitchen"] is not None and not isinstance(meta["kitchen"], str):
            raise InvalidDumpling("Dumpling kitchen was not a string or null")
        if (not isinstance(meta["creation_time"], (int, float))
                or isinstance(meta["creation_time"], bool)):
            raise InvalidDumpling("Dumpling creation_time was not a number")
        raw = data.decode("utf-8", "replace") if isinstance(data, bytes) else data
        seq = meta.get("nd_seq")
        return cls(chef=meta["chef"], driver=meta["driver"],
                   creation_time=meta["creation_time"], payload=obj["payload"],
                   kitchen=meta["kitchen"], raw=raw,
                   seq=seq if is_u64(seq) else None)

    def __repr__(self):
        return "Dumpling(chef={!r}, driver={}, creation_time={}, payload=<{}>)".format(
            self.chef, self.driver, self.creation_time, type(self.payload).__name__)


class DumplingEater:
    """Connects to nd-hub, sends ``{"eater_name": name}``, and calls ``on_dumpling`` for
    every dumpling whose chef is in ``chef_filter`` (all when ``None``).

    Callbacks must be ``async`` (as the original): ``on_connect(hub_uri, websocket)``,
    ``on_dumpling(dumpling)``, ``on_connection_lost(exc)``, and (new) ``on_lag(missed)``.
    A callback given here overrides the method of the same name.

    Counters: ``dumplings_eaten``, ``lagged`` (dumplings the hub said it dropped),
    ``reconnects``, and ``invalid_dumplings``: messages that were not dumplings, or hub
    notices that were not valid (logged, escaped, and skipped; the eater carries on).

    ``hub`` may be ``wss://HOST:PORT``: TLS verified against the system roots or only
    ``tls_ca`` (PEM); ``tls_client_cert``/``tls_client_key`` for hubs requiring client
    certificates. The hub token is read from ``token_file`` or ``ND_HUB_TOKEN``. Bad files
    raise :class:`HubLinkError` here; an untrusted hub certificate or a refused token
    raises it from ``run`` (retrying cannot fix those).
    """

    def __init__(self, name="nameless_eater", hub="localhost:11348", *, chef_filter=None,
                 on_connect=None, on_dumpling=None, on_connection_lost=None, on_lag=None,
                 reconnect=True, backoff_initial=0.5, backoff_max=10.0, max_retries=None,
                 tls_ca=None, tls_client_cert=None, tls_client_key=None, token_file=None,
                 kitchen_filter=None, send_interest=True, since=None, since_seq=None,
                 resume=False):
        self.name = name
        self.hub = hub
        self.hubs = [h.strip() if h.strip().startswith(("ws://", "wss://"))
                     else "ws://" + h.strip() for h in hub.split(",") if h.strip()]
        self.hub_ws = self.hubs[0] if self.hubs else "ws://" + hub
        self.link = Link(tls_ca=tls_ca, tls_client_cert=tls_client_cert,
                         tls_client_key=tls_client_key, token_file=token_file)
        self.kitchen_filter = kitchen_filter
        self.send_interest = send_interest
        if since is not None and since_seq is not None:
            raise ValueError("give since or since_seq, not both")
        if since_seq is not None and (not isinstance(since_seq, int) or since_seq < 1):
            raise ValueError("since_seq must be a stream sequence >= 1")
        self.since = since
        self.since_seq = since_seq
        self.resume = resume or since is not None or since_seq is not None
        self.last_seq = None
        # last_seq when the current connection was made: only that seam is filtered by
        # sequence (within a connection the hub sends each dumpling once, and one it
        # recovers late comes with a lower sequence than its neighbours).
        self._seam = None
        # The stream last_seq belongs to (nd_stream of the hub's last start notice): sent
        # with nd_since_seq, so a hub whose stream was created again (its sequences started
        # over) starts at its first sequence instead of past everything new.
        self.stream = None
        self.chef_filter = chef_filter
        self.reconnect = reconnect
        self.backoff_initial = backoff_initial
        self.backoff_max = backoff_max
        self.max_retries = max_retries
        self.logger = logging.getLogger("netdumplings.dumplingeater.{}".format(name))
        self.dumplings_eaten = 0
        self.lagged = 0
        self.reconnects = 0
        self.invalid_dumplings = 0
        if on_connect is not None:
            self.on_connect = on_connect
        if on_dumpling is not None:
            self.on_dumpling = on_dumpling
        if on_connection_lost is not None:
            self.on_connection_lost = on_connection_lost
        if on_lag is not None:
            self.on_lag = on_lag

    def _hello(self):
        """The hello: the name plus the optional interest and replay keys."""
        hello = {"eater_name": self.name}
        if self.send_interest and self.chef_filter:
            hello["nd_chefs"] = list(self.chef_filter)
        if self.send_interest and self.kitchen_filter:
            hello["nd_kitchens"] = list(self.kitchen_filter)
        if self.last_seq is not None and self.resume:
            hello["nd_since_seq"] = self.last_seq + 1
            if self.stream is not None:
                hello["nd_stream"] = self.stream
        elif self.since_seq is not None:
            hello["nd_since_seq"] = self.since_seq
        elif self.since is not None:
            hello["nd_since"] = self.since
        elif self.resume:
            hello["nd_seq"] = True
        return hello

    # Default callbacks (overridable by subclassing or by constructor arguments).
    async def on_connect(self, hub_uri, websocket):
        pass

    async def on_dumpling(self, dumpling):
        self.logger.warning("{}: No on_dumpling handler specified; ignoring dumpling.".format(
            self.name))

    async def on_connection_lost(self, e):
        pass

    async def on_lag(self, missed):
        self.logger.warning("{}: the hub dropped {} dumplings (this eater fell behind)".format(
            self.name, missed))

    def run(self, dumpling_count=None):
        """Eat until ``dumpling_count`` dumplings (then close 4102), Ctrl-C (close 4101),
        or a lost connection when reconnect is off / retries ran out."""
        if not callable(getattr(self, "on_dumpling", None)):
            self.logger.error("{}: on_dumpling handler is not callable".format(self.name))
            return
        try:
            asyncio.run(self._run(dumpling_count))
        except KeyboardInterrupt:
            self.logger.warning("{}: Connection to dumpling hub cancelled; closing...".format(
                self.name))

    async def _run(self, dumpling_count):
        failures = 0
        connected_once = False
        while True:
            # Whether this attempt reached the hub: only then is a failure a lost
            # connection (one that never connected "could not connect").
            in_session = False
            try:
                async with self.link.connect(self.hub_ws) as websocket:
                    in_session = True
                    await websocket.send(json.dumps(self._hello()))
                    self._seam = self.last_seq
                    failures = 0
                    if connected_once:
                        self.reconnects += 1
                        self.logger.warning("{}: Reconnected to dumpling hub at {}".format(
                            self.name, self.hub_ws))
                    connected_once = True
                    await self.on_connect(self.hub_ws, websocket)
                    try:
                        if await self._grab_dumplings(websocket, dumpling_count):
                            return
                    except asyncio.CancelledError:
                        await websocket.close(*CLOSE_CANCELLED)
                        raise
            except websockets.exceptions.ConnectionClosed as e:
                await self.on_connection_lost(e)
                # The close reason is the hub's text: escaped and cut in every log line.
                if close_code(e) == CLOSE_BAD_HELLO:
                    self.logger.error("{}: the hub refused this eater: {}".format(
                        self.name, peer_text(str(e))))
                    return
                reason = peer_text(str(e))
            except (OSError, asyncio.TimeoutError,
                    websockets.exceptions.InvalidHandshake) as e:
                fatal = self.link.classify(self.hub_ws, e)
                if fatal is not None:
                    self.logger.error("{}: {}".format(self.name, fatal))
                    raise fatal from e
                if (isinstance(e, websockets.exceptions.InvalidHandshake)
                        and _status_of(e) == 503):
                    # A hub at its connection limit (HTTP 503): worth retrying, as for a
                    # hub that is down.
                    reason = "the hub is full (HTTP 503)"
                elif isinstance(e, websockets.exceptions.InvalidHandshake):
                    self.logger.error("{}: {} is not a dumpling hub: {}".format(
                        self.name, self.hub_ws, peer_text(str(e))))
                    return
                else:
                    reason = peer_text(str(e))
                    self.logger.warning(
                        "{}: There was a problem with the dumpling hub connection. "
                        "Is nd-hub available?".format(self.name))
            failures += 1
            if in_session:
                what = "Lost connection to dumpling hub"
            elif connected_once:
                what = "Could not reconnect to dumpling hub at {}".format(self.hub_ws)
            else:
                what = "Could not connect to dumpling hub at {}".format(self.hub_ws)
            if not self.reconnect or (self.max_retries is not None
                                      and failures > self.max_retries):
                self.logger.warning("{}: {}: {}".format(self.name, what, reason))
                if connected_once:
                    self.logger.warning("{}: Done eating dumplings.".format(self.name))
                return
            if len(self.hubs) > 1:
                # Fail over to the next hub of the list (resume continues there).
                self.hub_ws = self.hubs[(self.hubs.index(self.hub_ws) + 1) % len(self.hubs)]
            delay = min(self.backoff_max, self.backoff_initial * (2 ** (failures - 1)))
            self.logger.warning("{}: {}: {}; retrying in {:.1f} s".format(
                self.name, what, reason, delay))
            await asyncio.sleep(delay)

    @staticmethod
    def _read_notice(payload):
        """A ``HubNoticeChef`` payload as ``(text, missed, next_seq, stream)``, read as
        the Rust eaters read it: ``lagged`` a u64 (required unless the notice has a
        ``notice`` text, which our hub sends with ``lagged: 0``), ``notice`` a string,
        ``nd_next_seq`` a u64 and ``nd_stream`` a string of at most
        ``MAX_STREAM_BYTES`` bytes when present. Anything else raises :class:`InvalidDumpling`
        (a forged ``{"lagged": "x"}`` ended ``run()`` with a TypeError; -5 or 1e308 made
        the running total wrong, or a float, for good)."""
        if not isinstance(payload, dict):
            raise InvalidDumpling("hub notice payload is not an object: {}".format(
                peer_value(payload)))
        text = payload.get("notice")
        if text is not None and not isinstance(text, str):
            raise InvalidDumpling("hub notice text is not a string: {}".format(
                peer_value(text)))
        nxt = payload.get("nd_next_seq")
        if nxt is not None and not is_u64(nxt):
            raise InvalidDumpling("hub notice nd_next_seq is not a sequence: {}".format(
                peer_value(nxt)))
        stream = payload.get("nd_stream")
        if stream is not None and not (isinstance(stream, str)
                                       and len(stream.encode("utf-8")) <= MAX_STREAM_BYTES):
            raise InvalidDumpling("hub notice nd_stream is not a stream name: {}".format(
                peer_value(stream)))
        missed = payload.get("lagged")
        if missed is None and text is None:
            raise InvalidDumpling("hub notice has neither a lagged count nor a text")
        if missed is not None and not is_u64(missed):
            raise InvalidDumpling("hub notice lagged is not a count: {}".format(
                peer_value(missed)))
        return text, missed or 0, nxt, stream

    async def _grab_dumplings(self, websocket, dumpling_count):
        """Read dumplings; True when the count was reached (connection closed 4102)."""
        while True:
            message = await websocket.recv()
            try:
                dumpling = Dumpling.from_json(message)
                if dumpling.chef_name == HUB_NOTICE_CHEF:
                    text, missed, nxt, stream = self._read_notice(dumpling.payload)
            except InvalidDumpling as e:
                self.invalid_dumplings += 1
                self.logger.error("{}: Invalid dumpling: {}".format(self.name, e))
                continue
            if dumpling.chef_name == HUB_NOTICE_CHEF:
                if text is not None:
                    self.logger.warning("{}: hub notice: {}".format(self.name, peer_text(text)))
                if stream is not None:
                    if self.stream is not None and stream != self.stream:
                        # Another stream: its sequences say nothing of the old one's.
                        self._seam = None
                        self.last_seq = None
                    self.stream = stream
                if self.last_seq is None and nxt is not None and nxt >= 1:
                    self.last_seq = nxt - 1
                self.lagged += missed
                await self.on_lag(missed)
                continue
            if self.resume and dumpling.seq is not None:
                if self._seam is not None and dumpling.seq <= self._seam:
                    continue  # already passed on before a reconnect
                self.last_seq = dumpling.seq if self.last_seq is None else max(self.last_seq, dumpling.seq)
            if self.chef_filter is not None and dumpling.chef_name not in self.chef_filter:
                continue
            if self.kitchen_filter is not None and dumpling.kitchen not in self.kitchen_filter:
                continue
            await self.on_dumpling(dumpling)
            self.dumplings_eaten += 1
            if dumpling_count is not None and self.dumplings_eaten >= dumpling_count:
                await websocket.close(*CLOSE_FULL)
                self.logger.warning("{}: Done eating dumplings.".format(self.name))
                return True
