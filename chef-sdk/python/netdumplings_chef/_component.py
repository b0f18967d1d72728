"""Glue between a :class:`~netdumplings_chef.DumplingChef` and the generated WIT bindings.

Imported only inside a component build (``componentize-py`` generates ``wit_world``); the
entry module that ``tools/nd-chef`` writes does::

    import chef
    from netdumplings_chef._component import freeze_startup_heap, make_handler, make_packed_json, make_state
    Handler = make_handler(chef)
    State = make_state()
    PackedJson = make_packed_json()
    freeze_startup_heap()

The chef instance is created when the module is imported, i.e. at build time: componentize-py
snapshots the initialised interpreter, so loading the component does not re-run it.

The component implements ``netdumplings:chef@0.2.0``'s ``packed-chef`` world: packets
arrive packed (``batch-form = packed``, ``on-packed``; see ``docs/packed-batch.md``) and are
answered in one JSON text (``packed-json``; the handler's ``on-packed`` stays for kitchens
that predate it), and the ``state`` interface carries the chef's ``snapshot()``/``restore()``
across a hot reload (a chef without them snapshots nothing and starts fresh).
"""

import gc
import sys

from wit_world import exports
from wit_world.imports import types
from componentize_py_types import Err

from . import Runner, _log_impl, find_chef_class


class _LogWriter:
    """A text stream that sends each line to the kitchen's log (stdio is not wired: the
    component is built with ``--stub-wasi``, where a real write would trap)."""

    def __init__(self, level):
        self.level = level
        self.buf = ""

    def write(self, text):
        self.buf += str(text)
        while "\n" in self.buf:
            line, self.buf = self.buf.split("\n", 1)
            self._emit(line)
        if len(self.buf) > 4096:
            self.flush()
        return len(text)

    def flush(self):
        if self.buf:
            line, self.buf = self.buf, ""
            self._emit(line)

    def _emit(self, line):
        try:
            _log_impl(self.level, line)
        except Exception:  # at build time (pre-initialisation) there is no kitchen to log to
            pass

    def isatty(self):
        return False


sys.stdout = _LogWriter("info")
sys.stderr = _LogWriter("warn")

_NETWORK = {
    "arp": types.NetworkProtocol.ARP,
    "ipv4": types.NetworkProtocol.IPV4,
    "ipv6": types.NetworkProtocol.IPV6,
    "other": types.NetworkProtocol.OTHER,
}
_TRANSPORT = {
    "tcp": types.TransportProtocol.TCP,
    "udp": types.TransportProtocol.UDP,
    "icmpv4": types.TransportProtocol.ICMPV4,
    "icmpv6": types.TransportProtocol.ICMPV6,
}


def chef_info(chef) -> "types.ChefInfo":
    """The WIT ``chef-info`` of a chef instance."""
    cls = type(chef)
    wants_packets, wants_interval = cls._drivers()
    drivers = types.Drivers(0)
    if wants_packets:
        drivers |= types.Drivers.PACKET
    if wants_interval:
        drivers |= types.Drivers.INTERVAL
    interest = cls.interest
    return types.ChefInfo(
        name=chef.name,
        description=cls._description(),
        version=str(cls.version),
        drivers=drivers,
        interest=types.Interest(
            link_types=list(interest.link_types),
            network=[_NETWORK[n] for n in interest.network],
            transport=[_TRANSPORT[t] for t in interest.transport],
            ports=list(interest.ports),
            flow_events=False,
            stream_bytes=0,
        ),
        batch_form=types.BatchForm.PACKED,
    )


def make_handler(module, name=None):
    """The ``Handler`` class componentize-py exports, driving the chef found in ``module``
    (renamed to ``name`` when given: ``nd-chef build --name``)."""
    chef = find_chef_class(module)()
    if name:
        chef.name = name
    runner = Runner(chef)
    _RUNNER[:] = [runner]
    info = chef_info(chef)
    make_dumpling = types.PacketDumpling

    class Handler(exports.Handler):
        def describe(self):
            return info

        def on_packets(self, packets, arena):
            # Only called if the kitchen ignored batch-form = packed; still correct.
            return runner.packets(packets, arena, make_dumpling)

        def on_packed(self, headers, arena):
            return runner.packed(headers, arena, make_dumpling)

        def on_interval(self, now_ns, interval_ns):
            return runner.interval(now_ns, interval_ns)

        def on_flow_events(self, events):
            return []

        def on_stream(self, chunks, arena):
            return []

    return Handler


def make_state():
    """The ``State`` class componentize-py exports (``netdumplings:chef/state``): the chef
    made by :func:`make_handler` snapshots and restores through its method pair."""

    class State(exports.State):
        def snapshot(self):
            return _RUNNER[0].snapshot()

        def restore(self, state):
            refused = _RUNNER[0].restore(state)
            if refused is not None:
                raise Err(refused)

    return State


def make_packed_json():
    """The ``PackedJson`` class componentize-py exports (``netdumplings:chef/packed-json``):
    the chef made by :func:`make_handler` answers a packed batch in one JSON text."""

    class PackedJson(exports.PackedJson):
        def on_packed(self, headers, arena):
            return _RUNNER[0].packed_json(headers, arena)

    return PackedJson


def freeze_startup_heap():
    """Move every object alive now (the interpreter's modules, this SDK, the chef and its
    initial state) out of the cyclic garbage collector's view (``gc.freeze()``), after one
    collection. The entry module calls it last, at build time, so the snapshot the component
    starts from has it done. Why: CPython 3.14's incremental collector scans a slice of the
    old generation at every young collection, and a chef allocates a few objects per packet,
    so these tens of thousands of objects, which live as long as the component anyway, were
    scanned again and again (about 5 % of a Python chef's time per packet, measured with
    ``tools/bench-languages.sh``). Objects made later are collected as before."""
    gc.collect()
    gc.freeze()


_RUNNER = []
