"""Hostile test chef: grows its memory without bound on its first packet (the cap must stop it)."""

from netdumplings_chef import DumplingChef


class PyMemoryGrowthChef(DumplingChef):
    """Appends 1 MiB blocks until the kitchen's memory limit stops it."""

    catch_errors = False

    def __init__(self):
        super().__init__()
        self.hoard = []

    def packet_handler(self, packet):
        while True:
            self.hoard.append(bytearray(1 << 20))
