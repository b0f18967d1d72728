"""Hostile test chef: raises on every packet, with the SDK's error catching off (a trap)."""

from netdumplings_chef import DumplingChef


class PyExceptionChef(DumplingChef):
    """Raises RuntimeError from packet_handler; catch_errors = False lets it escape the export."""

    catch_errors = False

    def packet_handler(self, packet):
        raise RuntimeError("hostile chef: boom")
