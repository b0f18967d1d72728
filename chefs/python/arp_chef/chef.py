"""ARPChef: the original netdumplings sample chef, ported to the Python chef SDK.

Payload per ARP packet (keys in the original's order): operation ("request"/"reply"/the
number), src_hw, src_ip, dst_hw, dst_ip, time (capture time, float seconds), notes.
Hot reload: the IP -> MAC table follows the chef to its new version (``snapshot`` /
``restore``), with its bound and recency order, so known devices are not "new" again.
"""

from netdumplings_chef import BoundedDict, DumplingChef, Interest, dump_state, load_state

OPERATIONS = {1: "request", 2: "reply"}
MAX_DEVICES = 4096
STATE_VERSION = 1  # bump when the state's meaning changes: older states are then refused


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

    def snapshot(self):
        return dump_state(self, STATE_VERSION, {"ip_mac": self.ip_mac.state()})

    def restore(self, data):
        table = BoundedDict.from_state(load_state(self, STATE_VERSION, data)["ip_mac"], MAX_DEVICES)
        if not all(isinstance(k, str) and isinstance(v, str) for k, v in table.items()):
            raise ValueError("not an IP -> MAC table")
        self.ip_mac = table
