"""Glue between a :class:`~netdumplings_chef.DumplingChef` and the generated WIT bindings.

Imported only inside a component build (``componentize-py`` generates ``wit_world``); the
entry module that ``tools/nd-chef`` writes does::

    import chef
    from netdumplings_chef._component import make_handler
    Handler = make_handler(chef)

The chef instance is created when the module is imported, i.e. at build time: componentize-py
snapshots the initialised interpreter, so loading the component does not re-run it.
"""

from wit_world import exports
from wit_world.imports import types

from . import Runner, find_chef_class

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
        ),
    )


def make_handler(module):
    """The ``Handler`` class componentize-py exports, driving the chef found in ``module``."""
    chef = find_chef_class(module)()
    runner = Runner(chef)
    info = chef_info(chef)
    make_dumpling = types.PacketDumpling

    class Handler(exports.Handler):
        def describe(self):
            return info

        def on_packets(self, packets, arena):
            return runner.packets(packets, arena, make_dumpling)

        def on_interval(self, now_ns, interval_ns):
            return runner.interval(now_ns, interval_ns)

    return Handler
