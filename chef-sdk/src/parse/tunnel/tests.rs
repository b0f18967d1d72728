//! Tests of the tunnel finder: every prelude split at every byte, answers before and after
//! the client's next bytes, refusals, gaps, bounds, and a hot reload in the middle.

use super::*;
use crate::testing::every_split;

const C: Direction = Direction::FromOriginator;
const S: Direction = Direction::FromResponder;

/// What the client sends inside the tunnel (a TLS-record-like blob).
const INNER: &[u8] = b"\x16\x03\x01\x00\x20inner bytes of the tunnelled stream..";

/// Feeds `events` (direction, bytes) to a fresh finder as flow 7's chunks, each direction's
/// offsets counted as they go (`last` on the final chunk of each direction); returns the
/// inner bytes in order (checking their offsets follow on) and whether any chunk was routed
/// outer.
fn run(kinds: Kinds, events: &[(Direction, &[u8])]) -> (Vec<u8>, bool) {
    let mut finder = TunnelFinder::new(kinds);
    run_on(&mut finder, events, true)
}

fn run_on(finder: &mut TunnelFinder, events: &[(Direction, &[u8])], end: bool) -> (Vec<u8>, bool) {
    let mut at = [0u64; 2];
    let last_of = |d: Direction| events.iter().rposition(|(e, _)| *e == d);
    let mut inner = Vec::new();
    let mut outer = false;
    for (i, (dir, bytes)) in events.iter().enumerate() {
        let side = usize::from(*dir == S);
        let last = end && last_of(*dir) == Some(i);
        match finder.push(7, *dir, at[side], 0, bytes, last) {
            Route::Outer => outer = true,
            Route::Held => {}
            Route::Inner(c) => {
                // (Client bytes held until the proxy's yes come out with the proxy's chunk.)
                assert_eq!(c.offset, inner.len() as u64, "inner offsets follow on");
                assert_eq!(c.gap_before, 0);
                inner.extend_from_slice(&c.data);
            }
        }
        at[side] += bytes.len() as u64;
    }
    (inner, outer)
}

const CONNECT: &[u8] =
    b"CONNECT secure.example:443 HTTP/1.1\r\nHost: secure.example:443\r\nUser-Agent: t/1\r\n\r\n";
const OK_200: &[u8] = b"HTTP/1.0 200 Connection Established\r\nProxy-agent: t\r\n\r\n";
const DENIED_407: &[u8] =
    b"HTTP/1.1 407 Proxy Authentication Required\r\nProxy-Authenticate: Basic\r\nContent-Length: 12\r\n\r\nnot allowed!";
const CONNECT_AUTH: &[u8] =
    b"CONNECT secure.example:443 HTTP/1.1\r\nProxy-Authorization: Basic dTpw\r\n\r\n";

#[test]
fn connect_then_200_opens_at_every_split() {
    let events: &[(Direction, &[u8])] = &[(C, CONNECT), (S, OK_200), (C, INNER)];
    for v in every_split(events) {
        let (inner, outer) = run(Kinds::ALL, &v);
        assert_eq!(inner, INNER, "{v:?}");
        assert!(!outer);
    }
}

#[test]
fn client_bytes_sent_before_the_answer_are_held_and_released() {
    // The request and the tunnelled bytes in one chunk, or apart, before the 200.
    let mut both = CONNECT.to_vec();
    both.extend_from_slice(INNER);
    for events in [
        vec![(C, both.as_slice()), (S, OK_200)],
        vec![(C, CONNECT), (C, INNER), (S, OK_200)],
    ] {
        for v in every_split(&events) {
            let (inner, _) = run(Kinds::ALL, &v);
            assert_eq!(inner, INNER, "{v:?}");
        }
    }
}

#[test]
fn a_refused_connect_is_not_a_tunnel_but_a_retry_may_be() {
    // 407, then the client sends bytes anyway: never inner.
    for v in every_split(&[(C, CONNECT), (S, DENIED_407), (C, INNER)]) {
        let (inner, _) = run(Kinds::ALL, &v);
        assert!(inner.is_empty(), "{v:?}");
    }
    // The same bytes held before the 407 arrives: dropped, not released.
    let (inner, _) = run(Kinds::ALL, &[(C, CONNECT), (C, INNER), (S, DENIED_407)]);
    assert!(inner.is_empty());
    // 403 without a body length: the body runs to the close, no retry can follow.
    let forbidden = b"HTTP/1.1 403 Forbidden\r\n\r\n";
    let (inner, _) = run(
        Kinds::ALL,
        &[
            (C, CONNECT),
            (S, forbidden),
            (C, CONNECT_AUTH),
            (S, OK_200),
            (C, INNER),
        ],
    );
    assert!(inner.is_empty());
    // 407 (its body skipped), the same request with credentials, 200: a tunnel.
    let events: &[(Direction, &[u8])] = &[
        (C, CONNECT),
        (S, DENIED_407),
        (C, CONNECT_AUTH),
        (S, OK_200),
        (C, INNER),
    ];
    for v in every_split(events) {
        let (inner, _) = run(Kinds::ALL, &v);
        assert_eq!(inner, INNER, "{v:?}");
    }
    // At most MAX_ATTEMPTS requests are followed.
    let mut events = Vec::new();
    for _ in 0..MAX_ATTEMPTS {
        events.extend([(C, CONNECT), (S, DENIED_407)]);
    }
    events.extend([(C, CONNECT_AUTH), (S, OK_200), (C, INNER)]);
    assert!(run(Kinds::ALL, &events).0.is_empty());
}

#[test]
fn an_interim_response_before_the_200_is_skipped() {
    let cont = b"HTTP/1.1 100 Continue\r\n\r\n";
    let (inner, _) = run(
        Kinds::ALL,
        &[(C, CONNECT), (S, cont), (S, OK_200), (C, INNER)],
    );
    assert_eq!(inner, INNER);
}

const SOCKS5_GREETING: &[u8] = &[5, 2, 0, 2];
const SOCKS5_NO_AUTH: &[u8] = &[5, 0];
const SOCKS5_REQUEST: &[u8] = &[
    5, 1, 0, 3, 14, b'w', b'w', b'w', b'.', b'e', b'x', b'a', b'm', b'p', b'l', b'e', b'.', b'o',
    b'r', 1, 187,
];
const SOCKS5_OK: &[u8] = &[5, 0, 0, 1, 127, 0, 0, 1, 4, 56];

#[test]
fn socks5_opens_at_every_split_and_with_pipelined_requests() {
    let events: &[(Direction, &[u8])] = &[
        (C, SOCKS5_GREETING),
        (S, SOCKS5_NO_AUTH),
        (C, SOCKS5_REQUEST),
        (S, SOCKS5_OK),
        (C, INNER),
    ];
    for v in every_split(events) {
        let (inner, outer) = run(Kinds::ALL, &v);
        assert_eq!(inner, INNER, "{v:?}");
        assert!(!outer);
        // An HTTP chef's finder (SOCKS only) opens it too.
        assert_eq!(run(Kinds::SOCKS, &v).0, INNER);
    }
    // Greeting, request and data sent at once (optimistic clients), answers after.
    let mut all = SOCKS5_GREETING.to_vec();
    all.extend_from_slice(SOCKS5_REQUEST);
    all.extend_from_slice(INNER);
    let (inner, _) = run(
        Kinds::ALL,
        &[(C, &all), (S, SOCKS5_NO_AUTH), (S, SOCKS5_OK)],
    );
    assert_eq!(inner, INNER);
    // IPv4 and IPv6 target addresses.
    for req in [
        &[5, 1, 0, 1, 10, 0, 0, 1, 0, 80][..],
        &[
            5, 1, 0, 4, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 80,
        ][..],
    ] {
        let (inner, _) = run(
            Kinds::ALL,
            &[
                (C, SOCKS5_GREETING),
                (S, SOCKS5_NO_AUTH),
                (C, req),
                (S, SOCKS5_OK),
                (C, INNER),
            ],
        );
        assert_eq!(inner, INNER);
    }
}

#[test]
fn socks5_with_user_and_password() {
    let auth = &[1, 4, b'u', b's', b'e', b'r', 2, b'p', b'w'][..];
    let events: &[(Direction, &[u8])] = &[
        (C, SOCKS5_GREETING),
        (S, &[5, 2]),
        (C, auth),
        (S, &[1, 0]),
        (C, SOCKS5_REQUEST),
        (S, SOCKS5_OK),
        (C, INNER),
    ];
    for v in every_split(events) {
        assert_eq!(run(Kinds::ALL, &v).0, INNER, "{v:?}");
    }
    // Wrong password: no tunnel.
    let (inner, _) = run(
        Kinds::ALL,
        &[
            (C, SOCKS5_GREETING),
            (S, &[5, 2]),
            (C, auth),
            (S, &[1, 1]),
            (C, SOCKS5_REQUEST),
            (S, SOCKS5_OK),
            (C, INNER),
        ],
    );
    assert!(inner.is_empty());
}

#[test]
fn socks5_refusals_are_not_tunnels() {
    // Connection refused (REP 5), general failure (1), not allowed (2).
    for rep in [5u8, 1, 2] {
        let refused = [5, rep, 0, 1, 0, 0, 0, 0, 0, 0];
        for v in every_split(&[
            (C, SOCKS5_GREETING),
            (S, SOCKS5_NO_AUTH),
            (C, SOCKS5_REQUEST),
            (S, &refused),
            (C, INNER),
        ]) {
            assert!(run(Kinds::ALL, &v).0.is_empty(), "{v:?}");
        }
    }
    // No acceptable method.
    let (inner, _) = run(
        Kinds::ALL,
        &[
            (C, SOCKS5_GREETING),
            (S, &[5, 0xff]),
            (C, SOCKS5_REQUEST),
            (S, SOCKS5_OK),
            (C, INNER),
        ],
    );
    assert!(inner.is_empty());
    // BIND and UDP ASSOCIATE granted: not a tunnel of the client's stream.
    for cmd in [2u8, 3] {
        let mut req = SOCKS5_REQUEST.to_vec();
        req[1] = cmd;
        let (inner, _) = run(
            Kinds::ALL,
            &[
                (C, SOCKS5_GREETING),
                (S, SOCKS5_NO_AUTH),
                (C, &req),
                (S, SOCKS5_OK),
                (C, INNER),
            ],
        );
        assert!(inner.is_empty(), "cmd {cmd}");
    }
}

#[test]
fn socks4_and_socks4a() {
    let socks4 = &[4, 1, 1, 187, 93, 184, 216, 34, b'u', 0][..];
    let socks4a = &[
        4, 1, 1, 187, 0, 0, 0, 1, 0, b'e', b'x', b'a', b'm', b'p', b'l', b'e', b'.', b'o', b'r',
        b'g', 0,
    ][..];
    let granted = &[0, 0x5a, 0, 0, 0, 0, 0, 0][..];
    for req in [socks4, socks4a] {
        for v in every_split(&[(C, req), (S, granted), (C, INNER)]) {
            assert_eq!(run(Kinds::ALL, &v).0, INNER, "{v:?}");
        }
        for refused in [0x5bu8, 0x5c, 0x5d] {
            let answer = [0, refused, 0, 0, 0, 0, 0, 0];
            assert!(run(Kinds::ALL, &[(C, req), (S, &answer), (C, INNER)])
                .0
                .is_empty());
        }
    }
    // A user id with no end within 255 bytes: given up.
    let mut long = vec![4, 1, 0, 80, 1, 2, 3, 4];
    long.extend(std::iter::repeat_n(b'u', 300));
    let (inner, outer) = run(Kinds::ALL, &[(C, &long), (S, granted), (C, INNER)]);
    assert!(inner.is_empty() && outer);
}

#[test]
fn other_streams_pass_through_untouched() {
    let mut finder = TunnelFinder::new(Kinds::ALL);
    for first in [
        &b"GET / HTTP/1.1\r\n\r\n"[..],
        b"\x16\x03\x01\x00\x05hello",
        b"COOKIE",
    ] {
        // Outer from the first chunk on (or, for "C...", once it is clearly not CONNECT).
        let r = finder.push(1, C, 0, 0, first, false);
        assert_eq!(r, Route::Outer, "{first:?}");
    }
    assert!(finder.is_empty());
    // Server bytes and later client bytes of a flow not watched.
    assert_eq!(finder.push(2, S, 0, 0, OK_200, false), Route::Outer);
    assert_eq!(finder.push(2, C, 10, 0, CONNECT, false), Route::Outer);
    // An HTTP chef's finder leaves CONNECT to the chef.
    let mut http = TunnelFinder::new(Kinds::SOCKS);
    assert_eq!(http.push(3, C, 0, 0, CONNECT, false), Route::Outer);
    // A restored finder with no kinds named yet follows nothing.
    assert_eq!(
        TunnelFinder::default().push(3, C, 0, 0, CONNECT, false),
        Route::Outer
    );
}

#[test]
fn gaps_and_oversized_messages_end_the_look_out() {
    // Bytes of the request missing: given up.
    let mut finder = TunnelFinder::new(Kinds::ALL);
    assert_eq!(finder.push(1, C, 0, 0, &CONNECT[..10], false), Route::Held);
    assert_eq!(
        finder.push(1, C, 20, 10, &CONNECT[20..], false),
        Route::Outer
    );
    assert!(finder.is_empty());
    // A head that never ends (one byte at a time: each byte looked at about once).
    let mut finder = TunnelFinder::new(Kinds::ALL);
    let mut head = b"CONNECT h:443 HTTP/1.1\r\nX: ".to_vec();
    head.resize(MAX_MESSAGE + MAX_HELD + 10, b'x');
    let mut outer_at = None;
    for (i, b) in head.iter().enumerate() {
        if finder.push(1, C, i as u64, 0, std::slice::from_ref(b), false) == Route::Outer {
            outer_at = Some(i);
            break;
        }
    }
    assert_eq!(outer_at, Some(MAX_MESSAGE));
    // A gap inside an open tunnel is the inner stream's gap.
    let mut finder = TunnelFinder::new(Kinds::ALL);
    run_on(
        &mut finder,
        &[(C, CONNECT), (S, OK_200), (C, &INNER[..4])],
        false,
    );
    let at = (CONNECT.len() + 10) as u64;
    match finder.push(7, C, at, 6, &INNER[10..], true) {
        Route::Inner(c) => {
            assert_eq!((c.offset, c.gap_before, c.last), (10, 6, true));
            assert_eq!(&*c.data, &INNER[10..]);
        }
        other => panic!("{other:?}"),
    }
    assert!(finder.is_empty(), "forgotten once the client's stream ends");
}

#[test]
fn a_prelude_half_received_survives_a_reload() {
    let events = [
        (C, SOCKS5_GREETING),
        (S, SOCKS5_NO_AUTH),
        (C, SOCKS5_REQUEST),
        (S, SOCKS5_OK),
        (C, INNER),
    ];
    let total: usize = events.iter().map(|(_, b)| b.len()).sum();
    // Reload after every byte of the dialogue.
    for cut in 1..total {
        let (mut first, mut second) = (Vec::new(), Vec::new());
        let mut seen = 0;
        for (d, b) in events {
            let k = cut.saturating_sub(seen).min(b.len());
            if k > 0 {
                first.push((d, &b[..k]));
            }
            if k < b.len() {
                second.push((d, &b[k..]));
            }
            seen += b.len();
        }
        let mut old = TunnelFinder::new(Kinds::ALL);
        let (mut inner, _) = run_on(&mut old, &first, false);
        let json = crate::state::to_state_json(&old);
        let mut new: TunnelFinder =
            crate::state::from_state_json(json.as_bytes()).expect("restore");
        new.restored(Kinds::ALL);
        // Offsets of the second half continue where the first half stopped.
        let mut at = [0u64; 2];
        for (d, b) in &first {
            at[usize::from(*d == S)] += b.len() as u64;
        }
        for (d, b) in &second {
            let side = usize::from(*d == S);
            if let Route::Inner(c) = new.push(7, *d, at[side], 0, b, false) {
                assert_eq!(c.offset, inner.len() as u64);
                inner.extend_from_slice(&c.data);
            }
            at[side] += b.len() as u64;
        }
        assert_eq!(inner, INNER, "cut {cut}");
    }
}
