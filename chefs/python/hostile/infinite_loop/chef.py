"""Hostile test chef: spins forever on its first packet (the CPU deadline must stop it)."""

from netdumplings_chef import DumplingChef


class PyInfiniteLoopChef(DumplingChef):
    """Never returns from packet_handler."""

    catch_errors = False

    def packet_handler(self, packet):
        n = 0
        while True:
            n += 1
