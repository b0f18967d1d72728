"""DumplingEater for nd-hub, compatible with the original netdumplings 0.5.1 eater API.

The constructor and callbacks are the original's (``name``, ``hub``, ``chef_filter``,
``on_connect``, ``on_dumpling``, ``on_connection_lost``, ``run(dumpling_count=...)``).
Added: reconnect with exponential backoff (``reconnect=True``, on by default) and
``on_lag(missed)`` for the hub's ``HubNoticeChef`` notices (the hub dropped ``missed``
dumplings because this eater fell behind). Close codes: 4101 on cancel, 4102 when full.
TLS and tokens (``wss://`` hubs, ``tls_ca``, client certificates, ``token_file`` or
``ND_HUB_TOKEN``) are in :mod:`netdumplings_eater.link`, mirroring the Rust ``hub-link``.
"""

import asyncio
import json
import logging
import time

import websockets

from .link import TOKEN_ENV, HubLinkError, Link

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
                 payload=None, kitchen=None, raw=None):
        self.chef = chef
        self.chef_name = chef
        self.kitchen = kitchen
        self.driver = driver
        self.creation_time = time.time() if creation_time is None else creation_time
        self.payload = payload
        self.raw = raw

    @classmethod
    def from_json(cls, data):
        """Parse a dumpling; raises :class:`InvalidDumpling` for anything invalid."""
        try:
            obj = json.loads(data)
        except (TypeError, ValueError) as e:
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
        raw = data.decode("utf-8", "replace") if isinstance(data, bytes) else data
        return cls(chef=meta["chef"], driver=meta["driver"],
                   creation_time=meta["creation_time"], payload=obj["payload"],
                   kitchen=meta["kitchen"], raw=raw)

    def __repr__(self):
        return "Dumpling(chef={!r}, driver={}, creation_time={}, payload=<{}>)".format(
            self.chef, self.driver, self.creation_time, type(self.payload).__name__)


class DumplingEater:
    """Connects to nd-hub, sends ``{"eater_name": name}``, and calls ``on_dumpling`` for
    every dumpling whose chef is in ``chef_filter`` (all when ``None``).

    Callbacks must be ``async`` (as the original): ``on_connect(hub_uri, websocket)``,
    ``on_dumpling(dumpling)``, ``on_connection_lost(exc)``, and (new) ``on_lag(missed)``.
    A callback given here overrides the method of the same name.

    ``hub`` may be ``wss://HOST:PORT``: TLS verified against the system roots or only
    ``tls_ca`` (PEM); ``tls_client_cert``/``tls_client_key`` for hubs requiring client
    certificates. The hub token is read from ``token_file`` or ``ND_HUB_TOKEN``. Bad files
    raise :class:`HubLinkError` here; an untrusted hub certificate or a refused token
    raises it from ``run`` (retrying cannot fix those).
    """

    def __init__(self, name="nameless_eater", hub="localhost:11348", *, chef_filter=None,
                 on_connect=None, on_dumpling=None, on_connection_lost=None, on_lag=None,
                 reconnect=True, backoff_initial=0.5, backoff_max=10.0, max_retries=None,
                 tls_ca=None, tls_client_cert=None, tls_client_key=None, token_file=None):
        self.name = name
        self.hub = hub
        self.hub_ws = hub if hub.startswith(("ws://", "wss://")) else "ws://" + hub
        self.link = Link(tls_ca=tls_ca, tls_client_cert=tls_client_cert,
                         tls_client_key=tls_client_key, token_file=token_file)
        self.chef_filter = chef_filter
        self.reconnect = reconnect
        self.backoff_initial = backoff_initial
        self.backoff_max = backoff_max
        self.max_retries = max_retries
        self.logger = logging.getLogger("netdumplings.dumplingeater.{}".format(name))
        self.dumplings_eaten = 0
        self.lagged = 0
        self.reconnects = 0
        if on_connect is not None:
            self.on_connect = on_connect
        if on_dumpling is not None:
            self.on_dumpling = on_dumpling
        if on_connection_lost is not None:
            self.on_connection_lost = on_connection_lost
        if on_lag is not None:
            self.on_lag = on_lag

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
            try:
                async with self.link.connect(self.hub_ws) as websocket:
                    await websocket.send(json.dumps({"eater_name": self.name}))
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
                if close_code(e) == CLOSE_BAD_HELLO:
                    self.logger.error("{}: the hub refused this eater: {}".format(self.name, e))
                    return
                reason = str(e)
            except (OSError, asyncio.TimeoutError,
                    websockets.exceptions.InvalidHandshake) as e:
                fatal = self.link.classify(self.hub_ws, e)
                if fatal is not None:
                    self.logger.error("{}: {}".format(self.name, fatal))
                    raise fatal from e
                if isinstance(e, websockets.exceptions.InvalidHandshake):
                    self.logger.error("{}: {} is not a dumpling hub: {}".format(
                        self.name, self.hub_ws, e))
                    return
                reason = str(e)
                self.logger.warning(
                    "{}: There was a problem with the dumpling hub connection. "
                    "Is nd-hub available?".format(self.name))
            failures += 1
            if not self.reconnect or (self.max_retries is not None
                                      and failures > self.max_retries):
                self.logger.warning("{}: Lost connection to dumpling hub: {}".format(
                    self.name, reason))
                if connected_once:
                    self.logger.warning("{}: Done eating dumplings.".format(self.name))
                return
            delay = min(self.backoff_max, self.backoff_initial * (2 ** (failures - 1)))
            self.logger.warning("{}: Lost connection to dumpling hub: {}; retrying in "
                                "{:.1f} s".format(self.name, reason, delay))
            await asyncio.sleep(delay)

    async def _grab_dumplings(self, websocket, dumpling_count):
        """Read dumplings; True when the count was reached (connection closed 4102)."""
        while True:
            message = await websocket.recv()
            try:
                dumpling = Dumpling.from_json(message)
            except InvalidDumpling as e:
                self.logger.error("{}: Invalid dumpling: {}".format(self.name, e))
                continue
            if dumpling.chef_name == HUB_NOTICE_CHEF:
                missed = (dumpling.payload or {}).get("lagged", 0)
                self.lagged += missed
                await self.on_lag(missed)
                continue
            if self.chef_filter is not None and dumpling.chef_name not in self.chef_filter:
                continue
            await self.on_dumpling(dumpling)
            self.dumplings_eaten += 1
            if dumpling_count is not None and self.dumplings_eaten >= dumpling_count:
                await websocket.close(*CLOSE_FULL)
                self.logger.warning("{}: Done eating dumplings.".format(self.name))
                return True
