"""PacketCountChef: the original netdumplings sample chef, ported to the Python chef SDK.

Counts every layer of every packet by its scapy-style name ("Ethernet", "IP", "TCP",
"DNS", "Raw"...), in first-seen order; interval payload {"packet_counts": {...}},
cumulative, sent on every poke. No packet dumplings. Its counts survive a hot reload
(``snapshot`` / ``restore``, chef API 0.2 state).
"""

from netdumplings_chef import DumplingChef, dump_state, load_state

STATE_VERSION = 1  # bump when the state's meaning changes: older states are then refused


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
        return dump_state(self, STATE_VERSION, self.packet_counts)

    def restore(self, data):
        counts = load_state(self, STATE_VERSION, data)
        if not isinstance(counts, dict) or not all(isinstance(v, int) for v in counts.values()):
            raise ValueError("not a packet_counts object")
        self.packet_counts = counts
