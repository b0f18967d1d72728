//! Unit tests of the flow table: handshakes, both directions, FIN/RST, timeouts, eviction
//! order, time going backwards, ICMP, and the O(1) bound on work per packet.

use super::*;

const SEC: u64 = 1_000_000_000;
const A: IpAddr = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1));
const B: IpAddr = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 2));

fn pkt(ts: u64, src: IpAddr, sp: u16, dst: IpAddr, dp: u16, flags: u8) -> PacketMeta {
    PacketMeta {
        ts_ns: ts,
        transport: Transport::Tcp,
        src,
        dst,
        src_port: sp,
        dst_port: dp,
        tcp_flags: flags,
        bytes: 60,
    }
}

fn udp(ts: u64, src: IpAddr, sp: u16, dst: IpAddr, dp: u16) -> PacketMeta {
    PacketMeta {
        transport: Transport::Udp,
        tcp_flags: 0,
        ..pkt(ts, src, sp, dst, dp, 0)
    }
}

fn table() -> FlowTable {
    FlowTable::new(FlowConfig::default()).expect("default config is valid")
}

fn ended(events: &[FlowEvent]) -> Vec<FlowSummary> {
    events
        .iter()
        .filter_map(|e| match e {
            FlowEvent::Ended(s) => Some(*s),
            FlowEvent::Started(_) => None,
        })
        .collect()
}

fn started(events: &[FlowEvent]) -> Vec<FlowStart> {
    events
        .iter()
        .filter_map(|e| match e {
            FlowEvent::Started(s) => Some(*s),
            FlowEvent::Ended(_) => None,
        })
        .collect()
}

use tcp_flags::{ACK, FIN, PSH, RST, SYN};

#[test]
fn handshake_data_and_fin_both_ways() {
    let mut t = table();
    let mut ev = Vec::new();
    let syn = pkt(SEC, A, 40000, B, 443, SYN);
    let r = t.track(&syn, &mut ev);
    assert_eq!(r.direction, Direction::FromOriginator);
    assert_eq!(t.tcp_state(&syn), Some(TcpState::SynSent));
    let r2 = t.track(&pkt(SEC + 1, B, 443, A, 40000, SYN | ACK), &mut ev);
    assert_eq!(
        r2,
        FlowRef {
            id: r.id,
            direction: Direction::FromResponder
        }
    );
    assert_eq!(t.tcp_state(&syn), Some(TcpState::SynReceived));
    t.track(&pkt(SEC + 2, A, 40000, B, 443, ACK), &mut ev);
    assert_eq!(t.tcp_state(&syn), Some(TcpState::Established));
    t.track(&pkt(SEC + 3, A, 40000, B, 443, ACK | PSH), &mut ev);
    t.track(&pkt(SEC + 4, B, 443, A, 40000, ACK | FIN), &mut ev);
    assert_eq!(t.tcp_state(&syn), Some(TcpState::FinOneWay));
    t.track(&pkt(SEC + 5, A, 40000, B, 443, ACK | FIN), &mut ev);
    assert_eq!(t.tcp_state(&syn), Some(TcpState::Closed));
    // The last ACK still counts into the lingering flow.
    let last = t.track(&pkt(SEC + 6, B, 443, A, 40000, ACK), &mut ev);
    assert_eq!(last.id, r.id);
    assert!(ended(&ev).is_empty(), "the flow lingers after both FINs");
    // Past the linger time, it ends with reason FIN.
    t.advance(SEC + 6 + 6 * SEC, &mut ev);
    let s = ended(&ev);
    assert_eq!(s.len(), 1);
    let s = s[0];
    assert_eq!(s.id, r.id);
    assert_eq!(s.end_reason, EndReason::Fin);
    assert_eq!(
        (s.packets_from_originator, s.packets_from_responder),
        (4, 3)
    );
    assert_eq!(
        (s.bytes_from_originator, s.bytes_from_responder),
        (240, 180)
    );
    assert_eq!((s.first_ns, s.last_ns), (SEC, SEC + 6));
    assert_eq!(s.tcp_flags_seen, SYN | ACK | PSH | FIN);
    assert_eq!(
        s.key,
        FlowKey {
            transport: Transport::Tcp,
            originator: A,
            responder: B,
            originator_port: 40000,
            responder_port: 443
        }
    );
    assert_eq!(started(&ev).len(), 1);
    assert_eq!(started(&ev)[0].timestamp_ns, SEC);
    assert!(t.is_empty());
    assert_eq!(t.stats().ended_fin, 1);
}

#[test]
fn originator_is_the_syn_sender_even_when_the_syn_ack_comes_first() {
    let mut t = table();
    let mut ev = Vec::new();
    // The capture started between SYN and SYN-ACK: the SYN-ACK's receiver opened it.
    let r = t.track(&pkt(SEC, B, 443, A, 40000, SYN | ACK), &mut ev);
    assert_eq!(r.direction, Direction::FromResponder);
    let r2 = t.track(&pkt(SEC, A, 40000, B, 443, ACK), &mut ev);
    assert_eq!(r2.direction, Direction::FromOriginator);
    let st = started(&ev)[0];
    assert_eq!((st.key.originator, st.key.originator_port), (A, 40000));
    // The SYN sender is the originator whichever side's address sorts first.
    let mut t = table();
    let r = t.track(&pkt(SEC, B, 1, A, 2, SYN), &mut ev);
    assert_eq!(r.direction, Direction::FromOriginator);
    assert_eq!(
        t.track(&pkt(SEC, A, 2, B, 1, SYN | ACK), &mut ev).direction,
        Direction::FromResponder
    );
}

#[test]
fn mid_stream_pickup_originator_is_first_sender() {
    let mut t = table();
    let mut ev = Vec::new();
    let p = pkt(SEC, B, 443, A, 40000, ACK | PSH);
    assert_eq!(t.track(&p, &mut ev).direction, Direction::FromOriginator);
    assert_eq!(t.tcp_state(&p), Some(TcpState::MidStream));
    assert_eq!(
        t.track(&pkt(SEC, A, 40000, B, 443, ACK), &mut ev).direction,
        Direction::FromResponder
    );
    assert_eq!(t.tcp_state(&p), Some(TcpState::Established));
    assert_eq!(started(&ev)[0].key.originator, B);
}

#[test]
fn rst_ends_after_linger_and_a_new_syn_reuses_the_ports_at_once() {
    let mut t = table();
    let mut ev = Vec::new();
    let a = t.track(&pkt(SEC, A, 5000, B, 80, SYN), &mut ev).id;
    t.track(&pkt(SEC, B, 80, A, 5000, RST | ACK), &mut ev);
    assert_eq!(
        t.tcp_state(&pkt(0, A, 5000, B, 80, 0)),
        Some(TcpState::Reset)
    );
    assert!(ended(&ev).is_empty());
    // Port reuse within the linger time: old one ends (RST), a new flow starts.
    let b = t.track(&pkt(SEC + 1, A, 5000, B, 80, SYN), &mut ev).id;
    assert_ne!(a, b);
    let s = ended(&ev);
    assert_eq!(s.len(), 1);
    assert_eq!((s[0].id, s[0].end_reason), (a, EndReason::Rst));
    assert_eq!(
        started(&ev).iter().map(|s| s.id).collect::<Vec<_>>(),
        vec![a, b]
    );
    // A RST alone, then silence: it ends as RST after the linger.
    t.track(&pkt(SEC + 2, B, 80, A, 5000, RST), &mut ev);
    ev.clear();
    t.advance(SEC + 20 * SEC, &mut ev);
    assert_eq!(ended(&ev)[0].end_reason, EndReason::Rst);
    assert_eq!(t.stats().ended_rst, 2);
}

#[test]
fn idle_timeouts_per_protocol() {
    let cfg = FlowConfig {
        idle_tcp: Duration::from_secs(100),
        idle_tcp_new: Duration::from_secs(10),
        idle_udp: Duration::from_secs(30),
        idle_icmp: Duration::from_secs(20),
        ..FlowConfig::default()
    };
    let mut t = FlowTable::new(cfg).expect("valid");
    let mut ev = Vec::new();
    let open = t.track(&pkt(0, A, 1, B, 2, ACK), &mut ev).id;
    t.track(&pkt(0, B, 2, A, 1, ACK), &mut ev);
    let half = t.track(&pkt(0, A, 3, B, 4, SYN), &mut ev).id;
    let u = t.track(&udp(0, A, 53, B, 53), &mut ev).id;
    let icmp = PacketMeta {
        transport: Transport::Icmpv4,
        ..udp(0, A, 7, B, 7)
    };
    let i = t.track(&icmp, &mut ev).id;
    ev.clear();
    // Exactly at the timeout nothing ends; just past it, it does.
    t.advance(10 * SEC, &mut ev);
    assert!(ev.is_empty());
    t.advance(10 * SEC + 1, &mut ev);
    assert_eq!(
        ended(&ev).iter().map(|s| s.id).collect::<Vec<_>>(),
        vec![half]
    );
    t.advance(21 * SEC, &mut ev);
    t.advance(31 * SEC, &mut ev);
    t.advance(101 * SEC, &mut ev);
    let order: Vec<_> = ended(&ev).iter().map(|s| (s.id, s.end_reason)).collect();
    assert_eq!(
        order,
        vec![
            (half, EndReason::IdleTimeout),
            (i, EndReason::IdleTimeout),
            (u, EndReason::IdleTimeout),
            (open, EndReason::IdleTimeout)
        ]
    );
    assert_eq!(t.stats().ended_idle, 4);
    // A packet after the timeout starts a new flow on the same 5-tuple.
    let again = t.track(&udp(200 * SEC, A, 53, B, 53), &mut ev).id;
    assert_ne!(again, u);
}

#[test]
fn traffic_keeps_a_flow_alive() {
    let mut t = table();
    let mut ev = Vec::new();
    let id = t.track(&udp(0, A, 1, B, 2), &mut ev).id;
    for k in 1..100u64 {
        assert_eq!(t.track(&udp(k * 50 * SEC, B, 2, A, 1), &mut ev).id, id);
    }
    assert!(ended(&ev).is_empty());
}

#[test]
fn eviction_takes_the_least_recently_used_across_classes() {
    let cfg = FlowConfig {
        max_flows: 3,
        ..FlowConfig::default()
    };
    let mut t = FlowTable::new(cfg).expect("valid");
    let mut ev = Vec::new();
    let f1 = t.track(&udp(1, A, 1, B, 1), &mut ev).id;
    let f2 = t.track(&pkt(2, A, 2, B, 2, SYN), &mut ev).id;
    let f3 = t.track(&udp(3, A, 3, B, 3), &mut ev).id;
    // Touch f1: f2 (TCP) is now the least recently used.
    t.track(&udp(4, B, 1, A, 1), &mut ev);
    let f4 = t.track(&udp(5, A, 4, B, 4), &mut ev).id;
    let f5 = t.track(&udp(6, A, 5, B, 5), &mut ev).id;
    let s = ended(&ev);
    assert_eq!(
        s.iter().map(|s| (s.id, s.end_reason)).collect::<Vec<_>>(),
        vec![(f2, EndReason::Evicted), (f3, EndReason::Evicted)]
    );
    assert_eq!(t.len(), 3);
    assert_eq!(t.stats().evicted, 2);
    ev.clear();
    t.end_all(&mut ev);
    assert_eq!(
        ended(&ev)
            .iter()
            .map(|s| (s.id, s.end_reason))
            .collect::<Vec<_>>(),
        vec![
            (f1, EndReason::EndOfCapture),
            (f4, EndReason::EndOfCapture),
            (f5, EndReason::EndOfCapture)
        ]
    );
    assert!(t.is_empty());
    assert_eq!(t.stats().ended_end_of_capture, 3);
}

#[test]
fn ids_are_unique_and_slots_are_reused() {
    let cfg = FlowConfig {
        max_flows: 4,
        ..FlowConfig::default()
    };
    let mut t = FlowTable::new(cfg).expect("valid");
    let mut ev = Vec::new();
    let mut ids = std::collections::HashSet::new();
    for k in 0..1000u16 {
        assert!(ids.insert(t.track(&udp(u64::from(k), A, k, B, 1), &mut ev).id));
    }
    assert!(t.slots.len() <= 4, "the slab never grows past the bound");
    assert_eq!(t.stats().evicted, 996);
}

#[test]
fn time_going_backwards_does_not_break_timeouts() {
    let mut t = table();
    let mut ev = Vec::new();
    let base = 1_000_000 * SEC;
    let id = t.track(&udp(base, A, 1, B, 2), &mut ev).id;
    // A small step back is held: no aging, same flow.
    assert_eq!(t.track(&udp(base - 10 * SEC, B, 2, A, 1), &mut ev).id, id);
    // A huge step back restarts the clock; the flow is still there, not aged.
    assert_eq!(t.track(&udp(5, A, 1, B, 2), &mut ev).id, id);
    assert_eq!(t.stats().clock_restarts, 1);
    assert!(ended(&ev).is_empty());
    // Time then runs on from the new origin: the flow times out 60 s later.
    t.advance(5 + 61 * SEC, &mut ev);
    let s = ended(&ev);
    assert_eq!((s[0].id, s[0].end_reason), (id, EndReason::IdleTimeout));
    assert_eq!(s[0].first_ns, base);
    assert_eq!(s[0].last_ns, base, "last = the latest time seen");
    // u64::MAX and 0 are survivable.
    let x = t.track(&udp(u64::MAX, A, 9, B, 9), &mut ev).id;
    assert_eq!(t.track(&udp(0, A, 9, B, 9), &mut ev).id, x);
    t.track(&udp(u64::MAX, A, 8, B, 8), &mut ev);
    assert_eq!(t.len(), 2);
}

#[test]
fn a_jump_forward_ages_everything() {
    let mut t = table();
    let mut ev = Vec::new();
    for k in 0..50 {
        t.track(&udp(SEC, A, k, B, 1), &mut ev);
    }
    ev.clear();
    // Fifty years later: every old flow ended by idle timeout, before the new one started.
    let new = t
        .track(&udp(50 * 365 * 86_400 * SEC, A, 1000, B, 1), &mut ev)
        .id;
    assert_eq!(ended(&ev).len(), 50);
    assert!(matches!(ev.last(), Some(FlowEvent::Started(s)) if s.id == new));
    assert_eq!(t.len(), 1);
}

#[test]
fn icmp_is_keyed_by_addresses_and_v6_works() {
    let mut t = table();
    let mut ev = Vec::new();
    let req = PacketMeta {
        transport: Transport::Icmpv4,
        ..udp(SEC, A, 0, B, 0)
    };
    let rep = PacketMeta {
        src: B,
        dst: A,
        ..req
    };
    let r = t.track(&req, &mut ev);
    let r2 = t.track(&rep, &mut ev);
    assert_eq!(r.id, r2.id);
    assert_eq!(r2.direction, Direction::FromResponder);
    assert_eq!(t.tcp_state(&req), None, "not TCP");
    // ICMPv6 between the same pair is another flow; IPv6 addresses come back as IPv6.
    let a6: IpAddr = "2001:db8::1".parse().expect("v6");
    let b6: IpAddr = "2001:db8::2".parse().expect("v6");
    let v6 = PacketMeta {
        transport: Transport::Icmpv6,
        ..udp(SEC, b6, 0, a6, 0)
    };
    assert_ne!(t.track(&v6, &mut ev).id, r.id);
    let st = started(&ev);
    assert_eq!(
        st.last().map(|s| (s.key.originator, s.key.responder)),
        Some((b6, a6))
    );
    assert_eq!(st[0].key.originator, A);
    // UDP and TCP on the same ports are different flows.
    let u = t.track(&udp(SEC, A, 80, B, 80), &mut ev).id;
    assert_ne!(t.track(&pkt(SEC, A, 80, B, 80, ACK), &mut ev).id, u);
}

#[test]
fn config_errors_name_the_flag() {
    let e = FlowTable::new(FlowConfig {
        max_flows: 0,
        ..FlowConfig::default()
    })
    .err();
    assert!(e.is_some_and(|e| e.to_string().contains("--flow-table-size")));
    let e = FlowConfig {
        idle_udp: Duration::ZERO,
        ..FlowConfig::default()
    }
    .validate();
    assert_eq!(e, Err(FlowConfigError::ZeroTimeout("--flow-idle-udp-secs")));
}

/// A small deterministic generator (xorshift), so the test needs no dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// A random stream that exercises every path: few endpoints (ports reused, both
/// directions), all four transports, every kind of TCP flags, a table small enough to
/// evict, idle timeouts and lingering closes, and time stepping back a little (held) and a
/// lot (clock restart).
fn random_stream(seed: u64, n: usize) -> Vec<PacketMeta> {
    let mut rng = Rng(seed);
    let flags = [SYN, SYN | ACK, ACK, ACK | PSH, FIN | ACK, RST, RST | ACK, 0];
    let mut ts = 1_000 * SEC;
    (0..n)
        .map(|_| {
            ts = match rng.below(100) {
                0 => ts.saturating_sub(rng.below(3) * SEC),
                1 => ts.saturating_sub(100 * SEC),
                2 => ts + 40 * SEC,
                _ => ts + rng.below(SEC / 4),
            };
            let transport = match rng.below(10) {
                0..=5 => Transport::Tcp,
                6..=8 => Transport::Udp,
                _ => {
                    if rng.below(2) == 0 {
                        Transport::Icmpv4
                    } else {
                        Transport::Icmpv6
                    }
                }
            };
            let host = |r: &mut Rng| -> IpAddr {
                let h = r.below(12) as u8;
                if transport == Transport::Icmpv6 {
                    IpAddr::V6(Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, u16::from(h)))
                } else {
                    IpAddr::V4(Ipv4Addr::new(10, 0, 0, h))
                }
            };
            let (src, dst) = (host(&mut rng), host(&mut rng));
            let icmp = matches!(transport, Transport::Icmpv4 | Transport::Icmpv6);
            let port = |r: &mut Rng| if icmp { 0 } else { 1000 + r.below(6) as u16 };
            PacketMeta {
                ts_ns: ts,
                transport,
                src,
                dst,
                src_port: port(&mut rng),
                dst_port: port(&mut rng),
                tcp_flags: if transport == Transport::Tcp {
                    flags[rng.below(flags.len() as u64) as usize]
                } else {
                    0
                },
                bytes: 40 + rng.below(1500) as u32,
            }
        })
        .collect()
}

#[test]
fn batch_tracking_equals_one_by_one() {
    let config = FlowConfig {
        max_flows: 48,
        idle_tcp: Duration::from_secs(30),
        idle_tcp_new: Duration::from_secs(10),
        idle_udp: Duration::from_secs(5),
        idle_icmp: Duration::from_secs(5),
        close_linger: Duration::from_secs(1),
        back_tolerance: Duration::from_secs(20),
    };
    // Both batch paths: as configured (a table this small tracks packet by packet) and with
    // prefetching forced on (the path of tables from PREFETCH_MIN_FLOWS flows on).
    for (seed, prefetch_from) in [
        (1u64, 0),
        (0xdead_beef, 0),
        (0x1234_5678_9abc, 0),
        (1, PREFETCH_MIN_FLOWS),
    ] {
        let stream = random_stream(seed, 40_000);
        let mut one = FlowTable::new(config).expect("valid");
        let (mut refs1, mut ev1) = (Vec::new(), Vec::new());
        for p in &stream {
            refs1.push(one.track(p, &mut ev1));
        }
        let mut batched = FlowTable::new(config).expect("valid");
        batched.prefetch_from = prefetch_from;
        let (mut refs2, mut ev2) = (Vec::new(), Vec::new());
        let mut rng = Rng(seed ^ 0x5555);
        let mut rest = &stream[..];
        while !rest.is_empty() {
            let n = (1 + rng.below(300) as usize).min(rest.len());
            batched.track_batch(&rest[..n], &mut refs2, &mut ev2);
            rest = &rest[n..];
        }
        assert_eq!(refs1, refs2, "seed {seed}");
        assert_eq!(ev1, ev2, "seed {seed}");
        let s = one.stats();
        assert_eq!(s, batched.stats());
        assert!(s.evicted > 0 && s.ended_idle > 0 && s.ended_fin + s.ended_rst > 0);
        assert!(s.clock_restarts > 0, "{s:?}");
        assert_eq!(one.len(), batched.len());
        ev1.clear();
        ev2.clear();
        one.end_all(&mut ev1);
        batched.end_all(&mut ev2);
        assert_eq!(ev1, ev2);
        assert!(one.is_empty() && batched.is_empty());
    }
}

#[test]
fn predicted_victims_are_the_eviction_order() {
    // A full table of every class (TCP answered and not, closing, UDP, ICMP), some flows
    // touched again, several at the same time (ties between the class lists): the victims
    // `track_batch` prefetches must be exactly the flows eviction then takes, in order.
    let cfg = FlowConfig {
        max_flows: 64,
        ..FlowConfig::default()
    };
    let mut t = FlowTable::new(cfg).expect("valid");
    let mut rng = Rng(0x0bad_cafe);
    let mut ev = Vec::new();
    let mut ts = 1_000 * SEC;
    let mut seen = Vec::new();
    for k in 0..64u16 {
        ts += rng.below(2) * 1_000;
        let p = match k % 5 {
            0 => pkt(ts, A, k, B, 80, SYN),
            1 => udp(ts, A, k, B, 53),
            2 => PacketMeta {
                transport: Transport::Icmpv4,
                ..udp(ts, A, 0, IpAddr::V4(Ipv4Addr::new(10, 1, 0, k as u8)), 0)
            },
            3 => pkt(ts, A, k, B, 443, ACK),
            _ => pkt(ts, A, k, B, 22, RST),
        };
        t.track(&p, &mut ev);
        seen.push(p);
    }
    for _ in 0..40 {
        ts += rng.below(2) * 1_000;
        let p = seen[rng.below(64) as usize];
        // Both directions: answered TCP moves to another class list.
        let p = if rng.below(2) == 0 {
            PacketMeta {
                src: p.dst,
                dst: p.src,
                src_port: p.dst_port,
                dst_port: p.src_port,
                ts_ns: ts,
                ..p
            }
        } else {
            PacketMeta { ts_ns: ts, ..p }
        };
        t.track(&p, &mut ev);
    }
    assert_eq!(t.len(), 64);
    let mut predicted = Vec::new();
    t.next_victims(64, &mut predicted);
    assert_eq!(predicted.len(), 64);
    let predicted: Vec<u64> = predicted
        .iter()
        .map(|&(tag, slot)| {
            assert_eq!(t.slots[slot as usize].tag, tag);
            t.cold[slot as usize].id
        })
        .collect();
    ev.clear();
    for k in 0..64u16 {
        t.track(&udp(ts + 1, B, k, A, 9999), &mut ev);
    }
    let taken: Vec<u64> = ended(&ev).iter().map(|s| s.id).collect();
    assert_eq!(taken, predicted);
    // Asking for more victims than there are flows stops at the end of the lists.
    let mut all = Vec::new();
    t.next_victims(1000, &mut all);
    assert_eq!(all.len(), 64);
}

#[test]
fn split_events_are_the_ordered_events_by_kind_and_starts_can_be_skipped() {
    let config = FlowConfig {
        max_flows: 48,
        idle_udp: Duration::from_secs(5),
        close_linger: Duration::from_secs(1),
        back_tolerance: Duration::from_secs(20),
        ..FlowConfig::default()
    };
    let stream = random_stream(0x5eed, 20_000);
    let mut one = FlowTable::new(config).expect("valid");
    let (mut refs1, mut ev) = (Vec::new(), Vec::new());
    for p in &stream {
        refs1.push(one.track(p, &mut ev));
    }
    one.end_all(&mut ev);
    for keep_started in [true, false] {
        let mut split = FlowTable::new(config).expect("valid");
        split.prefetch_from = 0;
        let (mut refs2, mut st, mut en) = (Vec::new(), Vec::new(), Vec::new());
        for chunk in stream.chunks(100) {
            let mut sink = SplitEvents {
                started: &mut st,
                ended: &mut en,
                keep_started,
            };
            split.track_batch(chunk, &mut refs2, &mut sink);
        }
        split.end_all(&mut SplitEvents {
            started: &mut st,
            ended: &mut en,
            keep_started,
        });
        assert_eq!(refs1, refs2, "the same flows whatever the sink");
        let want_started: Vec<FlowEvent> = ev
            .iter()
            .filter(|e| matches!(e, FlowEvent::Started(_)))
            .copied()
            .collect();
        let want_ended: Vec<FlowEvent> = ev
            .iter()
            .filter(|e| matches!(e, FlowEvent::Ended(_)))
            .copied()
            .collect();
        assert!(!want_started.is_empty() && !want_ended.is_empty());
        assert_eq!(en, want_ended);
        if keep_started {
            assert_eq!(st, want_started);
        } else {
            assert!(st.is_empty(), "starts were not asked for");
        }
        assert_eq!(
            split.stats(),
            one.stats(),
            "counters do not depend on the sink"
        );
    }
}

#[test]
fn a_discarded_end_empties_the_table_and_counts() {
    let mut t = table();
    let mut ev = Vec::new();
    t.track(&pkt(SEC, A, 40000, B, 443, SYN), &mut ev);
    t.track(&udp(SEC, A, 5353, B, 53), &mut ev);
    assert_eq!(t.len(), 2);
    t.end_all(&mut Discard);
    assert!(t.is_empty());
    assert_eq!(t.stats().ended_end_of_capture, 2);
    // Ids go on after a discarded end.
    let r = t.track(&udp(2 * SEC, A, 5353, B, 53), &mut ev);
    assert_eq!(r.id, 3);
}

#[test]
fn end_all_reports_live_flows_by_id_whether_ids_are_dense_or_sparse_then_starts_afresh() {
    // Dense: the live ids span about their count (placed by id). Sparse: a few old flows
    // kept alive among many that timed out, so the live ids span far more than their
    // count (sorted). Both must end every live flow, oldest id first, and leave an empty
    // table that works as before.
    for keep_every in [1u16, 50] {
        let cfg = FlowConfig {
            max_flows: 4096,
            ..FlowConfig::default()
        };
        let mut t = FlowTable::new(cfg).expect("valid");
        let mut ev = Vec::new();
        let mut ts = 1_000 * SEC;
        for k in 0..3000u16 {
            t.track(&udp(ts, A, k, B, 53), &mut ev);
        }
        // Keep one flow in `keep_every` alive past the UDP timeout, in reverse order so
        // slot order and id order differ.
        for k in (0..3000u16).rev().filter(|k| k % keep_every == 0) {
            ts += SEC / 100;
            t.track(&udp(ts, A, k, B, 53), &mut ev);
        }
        ts += 50 * SEC;
        for k in (0..3000u16).rev().filter(|k| k % keep_every == 0) {
            t.track(&udp(ts, B, 53, A, k), &mut ev);
        }
        ts += 20 * SEC;
        for k in 0..500u16 {
            t.track(&pkt(ts, A, k, B, 443, SYN), &mut ev);
        }
        let mut want: std::collections::BTreeSet<u64> = started(&ev).iter().map(|s| s.id).collect();
        for s in ended(&ev) {
            want.remove(&s.id);
        }
        assert_eq!(want.len(), t.len());
        let span = want.last().expect("flows") - want.first().expect("flows") + 1;
        if keep_every == 1 {
            assert!(span <= 4 * want.len() as u64, "dense: {span}");
        } else {
            assert!(span > 4 * want.len() as u64, "sparse: {span}");
        }
        ev.clear();
        let stats = t.stats();
        t.end_all(&mut ev);
        let got: Vec<u64> = ended(&ev).iter().map(|s| s.id).collect();
        assert_eq!(got, want.iter().copied().collect::<Vec<_>>());
        assert!(ended(&ev)
            .iter()
            .all(|s| s.end_reason == EndReason::EndOfCapture));
        assert_eq!(
            t.stats().ended_end_of_capture,
            stats.ended_end_of_capture + want.len() as u64
        );
        assert!(t.is_empty() && t.slots.is_empty());
        // Afresh: a returning key is a new flow, and the bound and eviction still hold.
        ev.clear();
        let r = t.track(&udp(ts, A, 7, B, 53), &mut ev);
        assert_eq!(r.id, t.stats().started);
        assert_eq!(started(&ev).len(), 1);
        for k in 0..5000u16 {
            t.track(&udp(ts + 1, B, k, A, 9), &mut ev);
        }
        assert_eq!(t.len(), 4096);
        assert_eq!(t.tcp_state(&pkt(ts, A, 7, B, 53, 0)), None);
        ev.clear();
        t.end_all(&mut ev);
        assert_eq!(ended(&ev).len(), 4096);
    }
}

#[test]
fn batch_tracking_equals_one_by_one_when_victims_are_guessed_by_slot() {
    // High-cardinality traffic: nearly every packet a new flow in a full table, so the
    // victims come in slot order and `track_batch` guesses them by slot number. Some
    // packets answer the packet before (as a DNS answer does: no change of order), a few
    // return to an older flow (its victim comes out of order later), and a pause lets
    // every flow time out (their slots are then reused last freed first, so victims come
    // in reverse slot order and batches walk the lists). Every result must still be what
    // tracking one by one gives.
    let config = FlowConfig {
        max_flows: 512,
        ..FlowConfig::default()
    };
    let mut rng = Rng(0xfeed);
    let mut ts = 1_000 * SEC;
    let stream: Vec<PacketMeta> = (0..30_000u32)
        .map(|k| {
            ts += 8_000;
            if k == 15_000 {
                ts += 120 * SEC;
            }
            let n = match rng.below(500) {
                0 => k.saturating_sub(1 + rng.below(300) as u32),
                1..=50 => k.saturating_sub(1),
                _ => k,
            };
            let src = IpAddr::V4(Ipv4Addr::from(0x0a00_0000 | n));
            if n % 3 == 0 {
                udp(ts, src, 1000 + (n % 7) as u16, B, 53)
            } else {
                pkt(ts, src, 1000 + (n % 7) as u16, B, 443, SYN)
            }
        })
        .collect();
    let mut one = FlowTable::new(config).expect("valid");
    let (mut refs1, mut ev1) = (Vec::new(), Vec::new());
    for p in &stream {
        refs1.push(one.track(p, &mut ev1));
    }
    let mut batched = FlowTable::new(config).expect("valid");
    batched.prefetch_from = 0;
    let (mut refs2, mut ev2) = (Vec::new(), Vec::new());
    let mut guessed = 0;
    for chunk in stream.chunks(100) {
        guessed += usize::from(batched.last_evictions > 0 && batched.last_in_order);
        batched.track_batch(chunk, &mut refs2, &mut ev2);
    }
    // Before the pause nearly every batch guesses; after it the batches walk the lists.
    assert!(
        guessed > 100,
        "the slot-order guess ran: {guessed} of 300 batches"
    );
    assert!(guessed < 290, "and the walk too: {guessed} of 300 batches");
    assert_eq!(refs1, refs2);
    assert_eq!(ev1, ev2);
    assert_eq!(one.stats(), batched.stats());
    assert!(one.stats().ended_idle > 0);
}
