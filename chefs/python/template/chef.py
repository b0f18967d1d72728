"""A template chef: copy this folder, rename the class, build with `tools/nd-chef build DIR`."""

from netdumplings_chef import DumplingChef, Interest


class TemplateChef(DumplingChef):
    """Counts DNS lookups per hostname and reports each one."""

    interest = Interest(transport=["udp"], ports=[53])  # omit for every packet

    def __init__(self):
        super().__init__()
        self.counts = {}

    def packet_handler(self, packet):  # return a JSON-able value, or None for no dumpling
        if packet.dns is None or packet.dns.qname is None:
            return None
        name = packet.dns.qname
        self.counts[name] = self.counts.get(name, 0) + 1
        return {"hostname": name, "count": self.counts[name], "from": packet.ip.src}

    def interval_handler(self, interval=None):  # every poke; delete it if not needed
        return {"hostnames": len(self.counts)}
