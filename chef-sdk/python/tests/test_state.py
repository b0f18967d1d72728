"""State across a hot reload under plain CPython: BoundedDict.state()/from_state(),
dump_state()/load_state(), and every Python sample chef snapshotted and restored at every
point of a stream of packets must say exactly what an uninterrupted chef says.

    python3 -m unittest discover -s chef-sdk/python/tests -v
"""

import json
import os
import sys
import unittest
from types import SimpleNamespace as NS

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.dirname(HERE))

import netdumplings_chef as nd  # noqa: E402
from test_sdk import REPO, dns_query, ipv4, load_chef, packet, udp  # noqa: E402

CHEFS = os.path.join(REPO, "chefs", "python")


def traffic():
    """DNS queries (names repeat) and ARP replies (a device changes its MAC), and the arena."""
    arena = bytearray()
    records = []
    names = [b"a.test", b"b.test", b"a.test", b"c.test", b"b.test", b"d.test", b"a.test"]
    for i, name in enumerate(names):
        records.append(packet(arena, ts=1_700_000_000_000_000_000 + i * 1_000_003, ip=ipv4(),
                              transport=udp(40000 + i, 53), payload=dns_query(name, qid=i)))
        sender = 0x0A000001 + i % 3
        arp = NS(hardware_type=1, protocol_type=0x800, operation=2, sender_hardware=0x020000000000 + i % 2 + i // 3,
                 sender_protocol=sender, target_hardware=0, target_protocol=0x0A0000FE)
        records.append(packet(arena, ts=1_700_000_000_000_500_000 + i * 1_000_003, arp=arp, padding=b"\0" * 18))
    return records, bytes(arena)


def run(runner, records, arena, start):
    return runner.packets(records, arena, lambda i, s: (start + i, s))


class BoundedDictStateTests(unittest.TestCase):
    def test_round_trip_keeps_bound_order_and_recency(self):
        d = nd.BoundedDict(3)
        for k in ["a", "b", "c", "a", "d"]:
            d[k] = d.get(k, 0) + 1
        state = json.loads(json.dumps(d.state()))
        self.assertEqual(state, {"capacity": 3, "evicted": 1, "entries": [["a", 2], ["c", 1], ["d", 1]],
                                 "recency": [1, 0, 2]})
        r = nd.BoundedDict.from_state(state)
        for x in (d, r):
            for k in ["e", "d", "f", "a"]:
                x[k] = x.get(k, 0) + 1
        self.assertEqual(list(r.items()), list(d.items()))
        self.assertEqual((r.evicted, r.capacity), (d.evicted, d.capacity))
        # A new version with a smaller bound drops the least recently touched first.
        t = nd.BoundedDict.from_state(state, capacity=1)
        self.assertEqual((list(t.items()), t.evicted), ([("d", 1)], 3))

    def test_broken_states_are_refused(self):
        for bad in [{}, {"capacity": 1, "evicted": 0, "entries": [["a", 1], ["b", 1]], "recency": [0, 1]},
                    {"capacity": 2, "evicted": 0, "entries": [["a", 1], ["b", 1]], "recency": [0, 0]},
                    {"capacity": 2, "evicted": 0, "entries": [["a", 1], ["a", 1]], "recency": [0, 1]},
                    {"capacity": 2, "evicted": 0, "entries": [[["list"], 1]], "recency": [0]},
                    {"capacity": 2, "evicted": 0, "entries": [["a"]], "recency": [0]}]:
            with self.assertRaises(ValueError, msg=bad):
                nd.BoundedDict.from_state(bad)


class TaggedStateTests(unittest.TestCase):
    def test_refusals_say_why(self):
        chef, other = NS(name="DNSLookupChef"), NS(name="ARPChef")
        data = nd.dump_state(chef, 1, {"x": 1})
        self.assertEqual(nd.load_state(chef, 1, data), {"x": 1})
        for who, version, blob, why in [
            (other, 1, data, "the state is 'DNSLookupChef''s, not 'ARPChef''s"),
            (chef, 2, data, "the state is DNSLookupChef state version 1; this version of the chef reads version 2"),
            (chef, 1, b'{"Ethernet": 3}', "not a tagged JSON state"),
            (chef, 1, b"\xff", "not a tagged JSON state"),
        ]:
            with self.assertRaises(ValueError) as e:
                nd.load_state(who, version, blob)
            self.assertIn(why, str(e.exception))


class SampleChefReloadTests(unittest.TestCase):
    def check(self, chef_dir):
        """Reload at every packet; returns the number of dumplings compared."""
        path = os.path.join(CHEFS, chef_dir, "chef.py")
        records, arena = traffic()
        compared = 0
        for split in range(len(records) + 1):
            plain, old = nd.Runner(load_chef(path)), nd.Runner(load_chef(path))
            want = run(plain, records[:split], arena, 0)
            got = run(old, records[:split], arena, 0)
            # The kitchen pokes the old version once more before it swaps versions.
            if plain.wants_interval:
                want += plain.interval(5_000_000_000, 1)
                got += old.interval(5_000_000_000, 1)
            new = nd.Runner(load_chef(path))
            refused = new.restore(old.snapshot())
            self.assertIsNone(refused, "%s at %d" % (chef_dir, split))
            want += run(plain, records[split:], arena, split)
            got += run(new, records[split:], arena, split)
            if plain.wants_interval:
                want += plain.interval(9_000_000_000, 1)
                got += new.interval(9_000_000_000, 1)
            self.assertEqual(got, want, "%s reloaded at packet %d" % (chef_dir, split))
            compared += len(want)
        return compared

    def test_every_sample_chef_is_unchanged_by_a_reload(self):
        self.assertGreater(self.check("dns_lookup_chef"), 100)
        self.assertGreater(self.check("arp_chef"), 100)
        self.assertGreater(self.check("packet_count_chef"), 10)
        self.assertGreater(self.check("template"), 100)

    def test_the_state_matters(self):
        # Without the restore the new version would say otherwise (devices "new" again,
        # counts from zero): the check above is not vacuous.
        records, arena = traffic()
        for chef_dir in ("dns_lookup_chef", "arp_chef"):
            path = os.path.join(CHEFS, chef_dir, "chef.py")
            old, fresh, new = (nd.Runner(load_chef(path)) for _ in range(3))
            run(old, records[:6], arena, 0)
            self.assertIsNone(new.restore(old.snapshot()))
            restored, started_fresh = run(new, records[6:], arena, 6), run(fresh, records[6:], arena, 6)
            if new.wants_interval:
                restored += new.interval(9, 1)
                started_fresh += fresh.interval(9, 1)
            self.assertNotEqual(restored, started_fresh, chef_dir)

    def test_another_chefs_or_versions_state_is_refused(self):
        dns = nd.Runner(load_chef(os.path.join(CHEFS, "dns_lookup_chef", "chef.py")))
        arp = nd.Runner(load_chef(os.path.join(CHEFS, "arp_chef", "chef.py")))
        refused = arp.restore(dns.snapshot())
        self.assertIn("ARPChef.restore() refused the state", refused)
        self.assertIn("'DNSLookupChef''s, not 'ARPChef''s", refused)
        newer = json.dumps({"chef": "DNSLookupChef", "state_version": 2, "state": {}}).encode()
        self.assertIn("reads version 1", dns.restore(newer))


if __name__ == "__main__":
    unittest.main()
