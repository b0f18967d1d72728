"""A template chef: copy this folder, rename the class, build with `tools/nd-chef build DIR`."""

from netdumplings_chef import BoundedDict, DumplingChef, Interest, dump_state, load_state

STATE_VERSION = 1  # bump when the meaning of the state changes (older states are then refused)


class TemplateChef(DumplingChef):
    """Counts DNS lookups per hostname and reports each one."""

    interest = Interest(transport=["udp"], ports=[53])  # omit for every packet

    def __init__(self):
        super().__init__()
        self.counts = BoundedDict(10000)  # bounded: the least recently seen name goes first

    def packet_handler(self, packet):  # return a JSON-able value, or None for no dumpling
        if packet.dns is None or packet.dns.qname is None:
            return None
        name = packet.dns.qname
        self.counts[name] = self.counts.get(name, 0) + 1
        return {"hostname": name, "count": self.counts[name], "from": packet.ip.src}

    def interval_handler(self, interval=None):  # every poke; delete it if not needed
        return {"hostnames": len(self.counts)}

    # Optional: keep the counts across a hot reload (delete both to start fresh each time).
    def snapshot(self):
        return dump_state(self, STATE_VERSION, self.counts.state())

    def restore(self, data):  # raise to refuse (the new version then starts fresh)
        self.counts = BoundedDict.from_state(load_state(self, STATE_VERSION, data), 10000)
