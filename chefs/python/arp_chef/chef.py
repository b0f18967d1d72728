"""ARPChef: the original netdumplings sample chef, ported to the Python chef SDK.

Payload per ARP packet (keys in the original's order): operation ("request"/"reply"/the
number), src_hw, src_ip, dst_hw, dst_ip, time (capture time, float seconds), notes.
"""

from netdumplings_chef import BoundedDict, DumplingChef, Interest

OPERATIONS = {1: "request", 2: "reply"}
MAX_DEVICES = 4096


class ARPChef(DumplingChef):
    """One dumpling per ARP packet; notes new devices and changed MACs."""

    interest = Interest(network=["arp"])

    def __init__(self):
        super().__init__()
        self.ip_mac = BoundedDict(MAX_DEVICES)  # IP -> MAC, learnt from replies only

    def packet_handler(self, packet):
        arp = packet.arp
        if arp is None:
            return None
        notes = None
        if arp.op == 2:
            known = self.ip_mac.get(arp.psrc)
            if known is None:
                notes = "source device is new"
            elif known != arp.hwsrc:
                notes = "source device has new IP address"  # the original's wording
            self.ip_mac[arp.psrc] = arp.hwsrc
        return {
            "operation": OPERATIONS.get(arp.op, arp.op),
            "src_hw": arp.hwsrc,
            "src_ip": arp.psrc,
            "dst_hw": arp.hwdst,
            "dst_ip": arp.pdst,
            "time": packet.time,
            "notes": notes,
        }
