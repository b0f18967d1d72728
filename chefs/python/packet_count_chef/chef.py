"""PacketCountChef: the original netdumplings sample chef, ported to the Python chef SDK.

Counts every layer of every packet by its scapy-style name ("Ethernet", "IP", "TCP",
"DNS", "Raw"...), in first-seen order; interval payload {"packet_counts": {...}},
cumulative, sent on every poke. No packet dumplings.
"""

from netdumplings_chef import DumplingChef


class PacketCountChef(DumplingChef):
    """Counts packet layers by scapy-style name; sends the cumulative counts every poke."""

    def __init__(self):
        super().__init__()
        self.packet_counts = {}

    def packet_handler(self, packet):
        counts = self.packet_counts
        for name in packet.layers():
            counts[name] = counts.get(name, 0) + 1
        return None

    def interval_handler(self, interval=None):
        return {"packet_counts": self.packet_counts}
