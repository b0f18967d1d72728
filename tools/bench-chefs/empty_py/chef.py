"""EmptyChef: a Python chef whose packet handler does nothing, for tools/bench-languages.sh.

Its cost per packet is what the SDK and the component boundary cost before any chef code.
"""

from netdumplings_chef import DumplingChef


class EmptyChef(DumplingChef):
    """Receives every packet and does nothing with it (benchmark baseline)."""

    def packet_handler(self, packet):
        return None
