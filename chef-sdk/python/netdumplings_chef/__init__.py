"""Write netdumplings chefs in Python.

A chef is a class, as in the original Python netdumplings::

    from netdumplings_chef import DumplingChef, Interest

    class HelloChef(DumplingChef):
        \"\"\"Says hello to every DNS lookup.\"\"\"
        interest = Interest(transport=["udp"], ports=[53])

        def packet_handler(self, packet):
            return {"hello": packet.dns.qname} if packet.dns else None

Build it with ``tools/nd-chef build DIR`` (DIR holds ``chef.py``); the result is a
WebAssembly component for the kitchen's chef folder. The kitchen calls the chef in batches
of packets; this layer hides that and calls ``packet_handler`` once per packet.

Differences from the original ``netdumplings.DumplingChef``:

* ``packet`` is a :class:`~netdumplings_chef.packet.Packet` (parsed headers, scapy-style
  names), not a scapy object;
* a chef that does not override ``packet_handler`` receives no packets (the original's
  default made a summary-string dumpling for every packet);
* ``interval_handler(interval)`` gets the poke interval in float seconds, and
  ``self.now`` holds the kitchen's clock (capture time when replaying a file);
* there is no ``kitchen`` argument, and one component holds exactly one chef.
"""

from __future__ import annotations

import collections
import json
import sys

from .packet import (  # noqa: F401  (re-exported)
    ARP,
    DNS,
    ICMP,
    IP,
    TCP,
    UDP,
    CookedLinux,
    DNSParseError,
    DNSQuestion,
    Dot1Q,
    Ether,
    IPv6,
    Packet,
    ipv4_str,
    ipv6_str,
    mac_str,
)
from .packed import UNSET as _UNSET
from .packed import PackedPacket, packed_layout, packed_packets  # noqa: F401  (re-exported)

__all__ = [
    "BoundedDict",
    "DumplingChef",
    "Interest",
    "Packet",
    "dump_state",
    "load_state",
    "log",
    "mac_str",
    "ipv4_str",
    "ipv6_str",
    "json_string",
    "PAYLOAD_BUDGET",
    "KITCHEN_MAX_DUMPLING_BYTES",
]

__version__ = "0.2.0"

_NETWORK = ("arp", "ipv4", "ipv6", "other")
_TRANSPORT = ("tcp", "udp", "icmpv4", "icmpv6")
_LEVELS = ("trace", "debug", "info", "warn", "error")

# Most bytes a chef should put in one payload that lists a table (an interval payload): the
# Rust chef SDK's ``PAYLOAD_BUDGET`` (900 KiB), under the kitchen's limit on one dumpling
# (``KITCHEN_MAX_DUMPLING_BYTES``, the hub's 1 MiB frame less 4 KiB of envelope). A payload
# over the limit is refused whole, at every poke, so a table of capture-controlled strings
# (6 JSON bytes per escaped control byte) must show only what fits
# (:meth:`BoundedDict.newest_within`) and count the rest.
PAYLOAD_BUDGET = 900 * 1024
KITCHEN_MAX_DUMPLING_BYTES = (1 << 20) - 4096


class Interest:
    """Which packets a chef wants (see ``interest`` in ``wit/chef.wit``).

    Every non-empty list must match; an empty list means "any":
    ``Interest(transport=["udp"], ports=[53])`` is "UDP with port 53 on either side".
    ``network`` takes ``"arp"``, ``"ipv4"``, ``"ipv6"``, ``"other"``; ``transport`` takes
    ``"tcp"``, ``"udp"``, ``"icmpv4"``, ``"icmpv6"``; ``link_types`` takes pcap DLT numbers.
    """

    __slots__ = ("link_types", "network", "transport", "ports")

    def __init__(self, network=(), transport=(), ports=(), link_types=()):
        for n in network:
            if n not in _NETWORK:
                raise ValueError("unknown network protocol %r (expected one of %s)" % (n, ", ".join(_NETWORK)))
        for t in transport:
            if t not in _TRANSPORT:
                raise ValueError("unknown transport protocol %r (expected one of %s)" % (t, ", ".join(_TRANSPORT)))
        for p in ports:
            if not (isinstance(p, int) and 0 <= p <= 0xFFFF):
                raise ValueError("port %r is not a number in 0..65535" % (p,))
        for lt in link_types:
            if not (isinstance(lt, int) and 0 <= lt <= 0xFFFFFFFF):
                raise ValueError("link type %r is not a u32" % (lt,))
        self.network = list(network)
        self.transport = list(transport)
        self.ports = list(ports)
        self.link_types = list(link_types)

    def __repr__(self) -> str:
        return "Interest(network=%r, transport=%r, ports=%r, link_types=%r)" % (
            self.network,
            self.transport,
            self.ports,
            self.link_types,
        )


class BoundedDict(dict):
    """A dict holding at most ``capacity`` keys, so that chef state cannot grow without limit.

    Keys keep their first-seen order (JSON output order). Adding a new key to a full dict
    first evicts the key touched least recently; ``d[k] = v``, :meth:`touch` and
    ``d.refresh(k)`` (an existing key) count as touching, reading does not. The same policy
    as the Rust chef SDK's ``BoundedMap``.
    """

    def __init__(self, capacity: int):
        super().__init__()
        self.capacity = max(1, int(capacity))
        self.evicted = 0
        # Keys from least to most recently touched: every operation is O(1) (an
        # OrderedDict moves a key to the end and pops the oldest in constant time).
        self._recency = collections.OrderedDict()
        # refresh(key): count an existing key as touched now (KeyError when absent). The
        # OrderedDict's own method, bound here: a hot path that finds its entry with
        # `d.get(key)` then refreshes it makes no Python-level call (one frame less per
        # packet than touch(), which an interpreter inside wasm pays dearly).
        self.refresh = self._recency.move_to_end

    def touch(self, key, make):
        """The value for ``key``, inserting ``make()`` first if absent (maybe evicting)."""
        # `in` and `self[key]` are dict's own slots (not overridden here): the cheapest
        # lookups an interpreter inside wasm can make.
        if key in self:
            self._recency.move_to_end(key)
            return self[key]
        else:
            if len(self) >= self.capacity:
                victim, _ = self._recency.popitem(last=False)
                dict.__delitem__(self, victim)
                self.evicted += 1
            dict.__setitem__(self, key, make())
            self._recency[key] = None
        return dict.__getitem__(self, key)

    def __setitem__(self, key, value):
        self.touch(key, lambda: value)
        dict.__setitem__(self, key, value)

    def __delitem__(self, key):
        dict.__delitem__(self, key)
        del self._recency[key]

    def newest_first(self):
        """The keys from the most to the least recently touched."""
        return reversed(self._recency)

    def newest_within(self, budget: int, cost):
        """The entries a payload of at most ``budget`` bytes can show, as ``(items,
        left_out)``: the most recently touched entries whose ``cost(key, value)`` (each
        entry's share of the payload) add up to at most ``budget``, as ``(key, value)``
        pairs in first-seen order, and how many were left out. Every entry when they all
        fit (the usual case). The Rust chef SDK's ``BoundedMap::newest_within``: the newest
        are taken while they fit, the first that does not fit ends the list."""
        items = list(dict.items(self))
        costs = {k: cost(k, v) for k, v in items}
        if sum(costs.values()) <= budget:
            return items, 0
        keep, used = set(), 0
        for k in reversed(self._recency):
            used += costs[k]
            if used > budget:
                break
            keep.add(k)
        return [kv for kv in items if kv[0] in keep], len(items) - len(keep)

    def state(self) -> dict:
        """This dict for a chef's ``snapshot()``: a JSON-able dict with its bound and recency
        order (``capacity``, ``evicted``, ``entries`` = ``[key, value]`` pairs in first-seen
        order, ``recency`` = their indices from least to most recently touched; the same
        form as the Rust SDK's ``BoundedMap``)."""
        place = {k: i for i, k in enumerate(dict.keys(self))}
        return {
            "capacity": self.capacity,
            "evicted": self.evicted,
            "entries": [[k, v] for k, v in dict.items(self)],
            "recency": [place[k] for k in self._recency],
        }

    @classmethod
    def from_state(cls, state, capacity=None):
        """A BoundedDict from :meth:`state` output (after a JSON round trip), for a chef's
        ``restore()``. ``capacity``: this version's bound (the least recently touched keys
        beyond it are evicted); default: the saved one. Raises ``ValueError`` on anything
        that is not such a state, so the chef refuses it instead of misreading it."""
        try:
            saved, evicted = int(state["capacity"]), int(state["evicted"])
            entries, recency = list(state["entries"]), [int(i) for i in state["recency"]]
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError("not a BoundedDict state (%s)" % exc) from None
        if saved < 1 or len(entries) > saved:
            raise ValueError("a BoundedDict state with %d entries over its capacity %d" % (len(entries), saved))
        if sorted(recency) != list(range(len(entries))):
            raise ValueError("a BoundedDict state whose recency list is not a permutation of its entries")
        d = cls(saved)
        d.evicted = evicted
        for pair in entries:
            if not isinstance(pair, (list, tuple)) or len(pair) != 2:
                raise ValueError("a BoundedDict state entry is not a [key, value] pair")
            try:
                dict.__setitem__(d, pair[0], pair[1])
            except TypeError as exc:
                raise ValueError("a BoundedDict state key is not hashable (%s)" % exc) from None
        if len(d) != len(entries):
            raise ValueError("a BoundedDict state holds a key twice")
        keys = list(dict.keys(d))
        for i in recency:
            d._recency[keys[i]] = None
        if capacity is not None:
            d.capacity = max(1, int(capacity))
            while len(d) > d.capacity:
                victim, _ = d._recency.popitem(last=False)
                dict.__delitem__(d, victim)
                d.evicted += 1
        return d


def dump_state(chef, state_version: int, state) -> bytes:
    """A chef's ``snapshot()`` bytes: ``state`` (JSON-able) tagged with the chef's name and
    ``state_version``, so that :func:`load_state` in a later version can refuse what it
    cannot read."""
    return json.dumps({"chef": chef.name, "state_version": state_version, "state": state}).encode("utf-8")


def load_state(chef, state_version: int, data: bytes):
    """The ``state`` that :func:`dump_state` tagged, for a chef's ``restore()``; raises
    ``ValueError`` (the chef refuses the state and starts fresh; the kitchen logs the
    reason) when ``data`` is not such a state, is another chef's, or has another
    ``state_version`` (bump it when the state's meaning changes)."""
    try:
        doc = json.loads(bytes(data).decode("utf-8"))
    except ValueError as exc:
        raise ValueError("the state is not a tagged JSON state (%s)" % exc) from None
    if not isinstance(doc, dict) or "state_version" not in doc or "state" not in doc:
        raise ValueError("the state is not a tagged JSON state (another SDK or an older version wrote it)")
    if doc.get("chef") != chef.name:
        raise ValueError("the state is %r's, not %r's" % (doc.get("chef"), chef.name))
    if doc["state_version"] != state_version:
        raise ValueError(
            "the state is %s state version %r; this version of the chef reads version %d"
            % (chef.name, doc["state_version"], state_version)
        )
    return doc["state"]


def log(message, level: str = "info") -> None:
    """Write ``message`` to the kitchen's log (tagged with the chef's name).

    ``level`` is one of ``trace``, ``debug``, ``info``, ``warn``, ``error``. Outside a
    component (unit tests) the message goes to ``netdumplings_chef.LOG_SINK`` if set.
    """
    if level not in _LEVELS:
        level = "info"
    _log_impl(level, str(message))


LOG_SINK = None  # unit tests set a callable(level, message)


def _log_impl(level: str, message: str) -> None:
    sink = LOG_SINK
    if sink is not None:
        sink(level, message)
        return
    try:
        from wit_world.imports import log as wit_log  # only exists inside the component
    except ImportError:
        return
    wit_log.log(getattr(wit_log.Level, level.upper()), message)


class DumplingChef:
    """Base class of a Python chef.

    Override ``packet_handler(self, packet)`` and/or ``interval_handler(self, interval)``;
    each returns a JSON-serialisable value (the dumpling payload) or ``None`` (no dumpling).
    Class attributes: ``interest`` (an :class:`Interest`; default: every packet),
    ``description`` (default: the docstring's first line), ``version``, and
    ``catch_errors`` (default ``True``: an exception in a handler is logged and the packet
    skipped, as the original kitchen did; ``False`` lets it trap the component, which the
    kitchen then reports and restarts), and ``packet_json_text`` (default ``False``;
    ``True``: ``packet_handler`` returns each payload already written as JSON text, a
    ``str`` sent as it is, e.g. ``f'{{"host": {json_string(name)}, "t": {t!r}}}'``; for
    small payloads of a known shape it costs an interpreter inside wasm about half of
    building dicts and encoding them. The text must be one JSON value: the kitchen checks
    it, and a malformed one ends that call's answer, the rest counted as invalid output),
    and ``interval_json_text`` (the same for ``interval_handler``'s payload: a malformed
    one is counted as invalid output). ``packet.time_text`` is ``repr(packet.time)``, the
    time as such a text writes it (from the kitchen, for the packets on the DNS ports).

    Optional state across a hot reload: ``snapshot(self) -> bytes`` and
    ``restore(self, data: bytes)`` (raise to refuse an old state; the new version then starts
    fresh). Without them a reloaded chef starts fresh. :func:`dump_state` /
    :func:`load_state` tag the state with the chef's name and a state version, and
    :meth:`BoundedDict.state` / :meth:`BoundedDict.from_state` carry a bounded dict with its
    bound and recency order.
    """

    assignable_to_kitchen = True
    interest = Interest()
    description = None
    version = "0.1.0"
    catch_errors = True
    packet_json_text = False
    interval_json_text = False

    def __init__(self):
        self.name = type(self).__name__
        self.now = 0.0

    def packet_handler(self, packet):
        """Called for every packet matching ``interest``; return a payload or ``None``."""
        return None

    def interval_handler(self, interval=None):
        """Called on the kitchen's timer (``interval`` seconds); return a payload or ``None``."""
        return None

    # --- used by the component glue ---------------------------------------------------
    @classmethod
    def _drivers(cls):
        """(wants packets, wants pokes): a handler counts when the subclass overrides it."""
        return (
            cls.packet_handler is not DumplingChef.packet_handler,
            cls.interval_handler is not DumplingChef.interval_handler,
        )

    @classmethod
    def _description(cls) -> str:
        if cls.description:
            return str(cls.description)
        doc = (cls.__doc__ or "").strip()
        return doc.splitlines()[0].strip() if doc else cls.__name__


def find_chef_class(module):
    """The one assignable ``DumplingChef`` subclass defined or imported in ``module``.

    Raises ``ValueError`` when there is none or more than one (a component is one chef).
    """
    found = []
    for attr in sorted(vars(module)):
        obj = getattr(module, attr)
        if (
            isinstance(obj, type)
            and issubclass(obj, DumplingChef)
            and obj is not DumplingChef
            and obj.__dict__.get("assignable_to_kitchen", obj.assignable_to_kitchen)
        ):
            found.append(obj)
    if not found:
        raise ValueError("%s defines no DumplingChef subclass" % module.__name__)
    if len(found) > 1:
        names = ", ".join(c.__name__ for c in found)
        raise ValueError(
            "%s defines %d chefs (%s); one component is one chef: set "
            "`assignable_to_kitchen = False` on base classes" % (module.__name__, len(found), names)
        )
    return found[0]


# One encoder for every payload: `json.dumps(value, allow_nan=False)` would build a new
# JSONEncoder on every call (any non-default argument does), a third of a small payload's cost.
_ENCODER = json.JSONEncoder(allow_nan=False)
_ENCODE = _ENCODER.encode


def _make_c_encoder():
    """The C encoder that ``_ENCODER.encode`` builds afresh on every call (with a new
    marker dict and closures, half of a small payload's cost), built once, as
    ``(encode, chunks, markers)``: ``encode(value)`` is the JSON text, ``chunks(value, 0)``
    the C call itself (its result joined is the text; the packet loop calls it inline, a
    frame less per dumpling) and ``markers`` its circular-reference dict, to clear after an
    exception. ``None`` when this Python has no C accelerator or it does not behave
    exactly like ``_ENCODE``."""
    make = getattr(json.encoder, "c_make_encoder", None)
    if make is None:
        return None
    e = _ENCODER
    markers = {}
    try:
        c = make(markers, e.default, json.encoder.encode_basestring_ascii, None, e.key_separator,
                 e.item_separator, e.sort_keys, e.skipkeys, e.allow_nan)

        def encode(value, _c=c, _join="".join, _markers=markers):
            try:
                return _join(_c(value, 0))
            except BaseException:
                # An exception can leave ids in the circular-reference markers.
                _markers.clear()
                raise

        sample = {"a": [1, 2.5, -0.0, 1e300, "\u00e9\"\n", None, True, {"b": []}], "c": {}}
        if encode(sample) != _ENCODE(sample) or encode("x") != _ENCODE("x"):
            return None
        for bad in (float("nan"), {1j: 1}, {"a": object()}):
            try:
                encode(bad)
            except (ValueError, TypeError):
                continue
            return None
        return encode, c, markers
    except Exception:  # a Python whose c_make_encoder takes other arguments
        return None


_C_ENCODER = _make_c_encoder()
# encode_payload(value): the JSON text of a handler's return value (strict JSON: no
# NaN/Infinity), by the cached C encoder when it is there.
encode_payload = _C_ENCODER[0] if _C_ENCODER else _ENCODE
# _chunks(value, 0): strings whose concatenation is that text; _markers: the C encoder's
# circular-reference dict (cleared after a failed encode, which can leave ids in it).
_chunks, _markers = (_C_ENCODER[1], _C_ENCODER[2]) if _C_ENCODER else (lambda value, _level: (_ENCODE(value),), {})


# json_string(s): the JSON text of the string `s`, quotes included, exactly as the payload
# encoder writes it (non-ASCII as \u escapes); the C function the encoder itself calls. For
# chefs with ``packet_json_text = True`` (see DumplingChef).
json_string = json.encoder.encode_basestring_ascii


class Runner:
    """Drives one chef instance: the batching and error policy, independent of the bindings."""

    def __init__(self, chef: DumplingChef):
        self.chef = chef
        cls = type(chef)
        self.wants_packets, self.wants_interval = cls._drivers()
        self.catch = bool(cls.catch_errors)
        self.json_text = bool(cls.packet_json_text)
        self.interval_text = bool(cls.interval_json_text)

    def packets(self, packets, arena, make_dumpling) -> list:
        """Run ``packet_handler`` over a batch of WIT records; return ``make_dumpling(index, json)`` items."""
        return self._run(None, [Packet(wit, arena) for wit in packets], None, None, make_dumpling)

    def packed(self, headers, arena, make_dumpling) -> list:
        """The same over a packed batch (``on-packed``, ``docs/packed-batch.md``)."""
        return self._run(*packed_layout(headers), headers, arena, make_dumpling)

    def packed_json(self, headers, arena) -> str:
        """A packed batch answered in one JSON text, ``[[packet-index, payload], ...]``
        (``packed-json.on-packed``): one string to lower instead of a record per dumpling.
        Each payload is encoded when its handler returns, as in :meth:`packed`, so a chef
        that returns a live object and then changes it sends what it returned."""
        out = self._run(*packed_layout(headers), headers, arena, None)
        # `out` is [index, text, index, text, ...]: the answer is formatted by one C call
        # instead of an f-string per dumpling in the interpreter.
        return "[" + ("[%d,%s]," * (len(out) >> 1))[:-1] % tuple(out) + "]" if out else "[]"

    def _run(self, cls, items, headers, arena, make_dumpling) -> list:
        """``make_dumpling(index, json)`` per dumpling, or with ``None`` the index and the
        text, two items per dumpling (inline: a call per dumpling costs the interpreter a
        frame; so does a Python-level encoder, hence the C encoder's call right here). ``cls`` None:
        ``items`` are the packets; else they are the record offsets of the packed batch
        ``headers`` (``packed_layout``), and each packet is made right before its handler
        call, as ``packed_packets`` makes it (no list between: measured 17 % less per
        packet for an empty handler, 6 % for the DNSLookupChef, inside wasm); when the
        handler kept no reference to the last packet, that object is given the next record
        instead (``sys.getrefcount``: a packet object made and freed per packet was a tenth
        of a DNS chef's time inside wasm)."""
        chef = self.chef
        handler = chef.packet_handler
        json_text = self.json_text
        catch = self.catch
        out = []
        add = out.append
        chunks, join = _chunks, "".join
        refs = sys.getrefcount
        # The reference count of a packet nothing else holds, read at the one place below
        # from a packet made here for it (the interpreter may or may not count the read's
        # own reference, so it is measured, not assumed).
        kept = None
        pk = None
        if cls is not None:
            pk = cls()
            pk._b = headers
            pk._arena = arena
        for i, item in enumerate(items):
            if cls is None:
                pk = item
            else:
                n = refs(pk)
                if kept is None:
                    kept = n
                if n == kept:
                    # The handler kept no reference to the last packet (nor to anything
                    # that holds it): that object takes this record, its caches emptied.
                    # A packet a handler keeps is never reused, so it keeps its values.
                    pk._dns = pk._view = _UNSET
                else:
                    pk = cls()
                    pk._b = headers
                    pk._arena = arena
                    pk._dns = pk._view = _UNSET
                pk._o = item
            try:
                value = handler(pk)
                if value is None:
                    continue
                if json_text:
                    # Already the payload's text: only its type is checked here (the
                    # kitchen checks the text).
                    text = value if value.__class__ is str else _checked_text(value, "packet")
                else:
                    text = join(chunks(value, 0))
            except BaseException as exc:
                # A failed encode can leave ids in the C encoder's circular-reference dict.
                _markers.clear()
                if not catch or not isinstance(exc, Exception):
                    raise
                # The original kitchen logged and went on.
                log("Error invoking packet handler for chef %s: %s" % (chef.name, _describe(exc)), "error")
                continue
            if make_dumpling is None:
                add(i)
                add(text)
            else:
                add(make_dumpling(i, text))
        return out

    def snapshot(self) -> bytes:
        """The chef's ``snapshot()`` as bytes (``b""`` for a chef without one)."""
        fn = getattr(self.chef, "snapshot", None)
        if fn is None:
            return b""
        data = fn()
        if isinstance(data, str):
            data = data.encode("utf-8")
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise TypeError("%s.snapshot() returned %s, not bytes" % (self.chef.name, type(data).__name__))
        return bytes(data)

    def restore(self, data: bytes):
        """Hand ``data`` to the chef's ``restore()``. Returns ``None`` when taken, else the
        reason it was refused (the kitchen then starts this version fresh)."""
        fn = getattr(self.chef, "restore", None)
        if fn is None:
            return None if not data else "%s has no restore() method: starting fresh" % self.chef.name
        try:
            fn(bytes(data))
        except Exception as exc:
            return "%s.restore() refused the state: %s" % (self.chef.name, _describe(exc))
        return None

    def interval(self, now_ns: int, interval_ns: int) -> list:
        """Run ``interval_handler``; return the list of JSON payloads (zero or one)."""
        chef = self.chef
        chef.now = now_ns / 1e9
        if self.catch:
            try:
                return self._interval_payloads(chef.interval_handler(interval_ns / 1e9))
            except Exception as exc:
                log("Error invoking interval handler for chef %s: %s" % (chef.name, _describe(exc)), "error")
                return []
        return self._interval_payloads(chef.interval_handler(interval_ns / 1e9))

    def _interval_payloads(self, value) -> list:
        """``interval_handler``'s return value as the list of payload texts."""
        if value is None:
            return []
        if self.interval_text:
            return [_checked_text(value, "interval")]
        return [encode_payload(value)]


def _checked_text(value, kind: str) -> str:
    """``value`` as a ``packet_json_text`` (``kind`` "packet") or ``interval_json_text``
    ("interval") chef's payload text: a ``str`` (a subclass made exact), else ``TypeError``
    (logged and skipped like any handler error)."""
    if not isinstance(value, str):
        raise TypeError("%s_json_text is set, so %s_handler must return JSON text (a str), not %s"
                        % (kind, kind, type(value).__name__))
    return str.__str__(value)


def _describe(exc: BaseException) -> str:
    text = str(exc)
    return "%s: %s" % (type(exc).__name__, text) if text else type(exc).__name__
