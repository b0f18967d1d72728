"""PacketCountChef: the original netdumplings sample chef, ported to the Python chef SDK.

Counts every layer of every packet by its scapy-style name ("Ethernet", "IP", "TCP",
"DNS", "Raw"...), in first-seen order; interval payload {"packet_counts": {...}},
cumulative, sent on every poke. No packet dumplings. Its counts survive a hot reload
(``snapshot`` / ``restore``, chef API 0.2 state).
"""

import json

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

    def snapshot(self):
        return json.dumps(self.packet_counts).encode("utf-8")

    def restore(self, data):
        counts = json.loads(data)
        if not isinstance(counts, dict) or not all(isinstance(v, int) for v in counts.values()):
            raise ValueError("not a packet_counts object")
        self.packet_counts = counts
