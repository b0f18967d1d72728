//! The time-text slot of a packed record (offsets 256..264, `docs/packed-batch.md`): the
//! packet's capture time written as Python's `repr(timestamp_ns / 1e9)`.
//!
//! Why: a DNS chef reports the time of every lookup, and its JSON number is the float's
//! shortest round-trip text. A Python chef inside wasm paid about 1 µs per dumpling for
//! `repr()` (CPython's `_Py_dg_dtoa` works in big integers for 16- and 17-digit times); here it
//! costs the kitchen about 0.15 µs. The kitchen writes it only for the records on the DNS
//! ports (the records whose DNS slots it fills, [`super::dns`]); for any other record the
//! slot stays zero and the SDK formats the time itself.
//!
//! The text is exactly Python's (tested against CPython below): the double is the one the
//! SDKs compute (`u64 as f64`, then `/ 1e9`, both rounded to nearest), its digits are the
//! shortest that round-trip, fixed notation from `1e-4` up with `.0` on whole numbers, else
//! Python's exponent form (`5e-05`), and of two equally short candidates at exactly the
//! same distance, the even one (Rust's shortest mode takes the upper one there).

use std::io::Write as _;

/// Offset of the time-text slot in a record: u16 reserved, u16 length, u32 offset of the
/// text in `headers` (in the string tail); the same shape as the DNS name's slot
/// (`dns::AT + 2`), so the SDKs read both with one struct.
pub const AT: usize = 256;

/// Append `repr(ns / 1e9)` as Python 3 writes it to `out`.
pub fn write(ns: u64, out: &mut Vec<u8>) {
    let t = ns as f64 / 1e9;
    let start = out.len();
    if t >= 1e-4 {
        // Writing to a Vec cannot fail.
        let _ = write!(out, "{t}");
        match out[start..].iter().position(|&c| c == b'.') {
            None => out.extend_from_slice(b".0"),
            Some(dot) => {
                let digits = out.len() - start - dot - 1;
                if fraction_bits(t) == digits + 1 {
                    // The double lies exactly halfway between two shortest candidates.
                    // Python's dtoa takes the even one; `{:.n$}` rounds the exact value
                    // half to even, so it is Python's whenever it still round-trips.
                    let even = format!("{t:.digits$}");
                    if even.parse::<f64>() == Ok(t) {
                        out.truncate(start);
                        out.extend_from_slice(even.as_bytes());
                    }
                }
            }
        }
    } else if ns == 0 {
        out.extend_from_slice(b"0.0");
    } else {
        // Below 1e-4 Python switches to the exponent form, with a sign and at least two
        // exponent digits (Rust writes `5e-5`). Such a time has at most 5 significant digits
        // (ns < 100 000), so no tie can arise.
        let _ = write!(out, "{t:e}");
        if let Some(e) = out[start..].iter().position(|&c| c == b'e') {
            let e = start + e;
            let exp: Vec<u8> = out[e + 1..].to_vec();
            out.truncate(e + 1);
            let digits = match exp.strip_prefix(b"-") {
                Some(d) => {
                    out.push(b'-');
                    d
                }
                None => {
                    out.push(b'+');
                    &exp[..]
                }
            };
            if digits.len() < 2 {
                out.push(b'0');
            }
            out.extend_from_slice(digits);
        }
    }
}

/// Number of binary digits after the point in `t`'s exact value (0 for a whole number):
/// its decimal expansion has exactly as many digits after the point.
fn fraction_bits(t: f64) -> usize {
    let bits = t.to_bits();
    let exp = ((bits >> 52) & 0x7ff) as i32;
    let frac = bits & ((1u64 << 52) - 1);
    let (mant, e) = if exp == 0 {
        (frac, -1074)
    } else {
        (frac | (1u64 << 52), exp - 1075)
    };
    if mant == 0 {
        return 0;
    }
    let e = e + mant.trailing_zeros() as i32;
    if e < 0 {
        e.unsigned_abs() as usize
    } else {
        0
    }
}

/// Fill the slot of `rec` with the time text of `ns`, appended to `tail` (which starts at
/// `tail_base` in `headers`).
pub fn fill(rec: &mut [u8], ns: u64, tail: &mut Vec<u8>, tail_base: usize) {
    let start = tail.len();
    write(ns, tail);
    // At most 21 bytes (`9.999999999999999e-05`); a batch's tail stays far below 4 GiB.
    let len = (tail.len() - start) as u16;
    let at = (tail_base + start) as u32;
    rec[AT + 2..AT + 4].copy_from_slice(&len.to_le_bytes());
    rec[AT + 4..AT + 8].copy_from_slice(&at.to_le_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(ns: u64) -> String {
        let mut v = Vec::new();
        write(ns, &mut v);
        String::from_utf8(v).unwrap_or_default()
    }

    /// Edge times with what CPython 3 prints for `repr(ns / 1e9)`.
    #[test]
    fn edge_times_are_written_as_python_writes_them() {
        let cases: &[(u64, &str)] = &[
            (0, "0.0"),
            (1, "1e-09"),
            (50_000, "5e-05"),
            (99_999, "9.9999e-05"),
            (100_000, "0.0001"),
            (100_001, "0.000100001"),
            (123_456_789, "0.123456789"),
            (1_000_000_000, "1.0"),
            (1_500_000_000, "1.5"),
            (1_700_000_000_000_000_000, "1700000000.0"),
            (1_700_000_000_000_010_000, "1700000000.00001"),
            (1_700_000_000_123_456_000, "1700000000.123456"),
            (1_700_000_000_123_456_789, "1700000000.1234567"),
            // Exactly halfway between two 17-digit candidates: Python takes the even one.
            (1_903_282_018_988_281_313, "1903282018.9882812"),
            (17_601_634_689_570_312_157, "17601634689.570312"),
            (1 << 53, "9007199.254740993"),
            (u64::MAX, "18446744073.709553"),
        ];
        for &(ns, want) in cases {
            assert_eq!(text(ns), want, "repr({ns} / 1e9)");
        }
    }

    /// Against CPython itself over edge, tie-heavy and random times (µs and ns resolution,
    /// tiny, huge). Skips, saying so, when `python3` is not on PATH; CI has it (the Python
    /// SDK's own tests need it).
    #[test]
    fn random_and_tie_heavy_times_match_cpython() {
        let mut times: Vec<u64> = vec![0, 1, u64::MAX, u64::MAX - 1];
        for k in 1..64u32 {
            for d in [-1i64, 0, 1] {
                times.push((1u64 << k).wrapping_add_signed(d));
            }
        }
        // A small xorshift: the same times on every run.
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        let mut next = || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        for i in 0..60_000u64 {
            let r = next();
            let secs = 1_000_000_000 + r % 1_000_000_000;
            times.push(match i % 6 {
                0 => secs * 1_000_000_000 + (next() % 1_000_000) * 1000, // µs pcap
                1 => secs * 1_000_000_000 + next() % 1_000_000_000,      // ns pcap
                2 => next() % 200_000,                                   // near 0
                3 => next(),                                             // anywhere
                // A fraction with few binary digits, where ties between shortest
                // candidates happen (and its neighbours).
                _ => {
                    let k = 1 + next() % 34;
                    let j = next() % (1u64 << k);
                    let frac = ((j as u128 * 1_000_000_000 + (1u128 << (k - 1))) >> k) as u64;
                    (secs * 1_000_000_000 + frac)
                        .wrapping_add(next() % 3)
                        .wrapping_sub(1)
                }
            });
        }
        let input: String = times.iter().map(|t| format!("{t}\n")).collect();
        let child = std::process::Command::new("python3")
            .args([
                "-c",
                "import sys\nfor l in sys.stdin: sys.stdout.write(repr(int(l) / 1e9) + '\\n')",
            ])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn();
        let mut child = match child {
            Ok(c) => c,
            Err(e) => {
                eprintln!(
                    "SKIP random_and_tie_heavy_times_match_cpython: python3 not runnable ({e})"
                );
                return;
            }
        };
        let mut stdin = child.stdin.take().expect("piped stdin");
        let writer = std::thread::spawn(move || stdin.write_all(input.as_bytes()));
        let out = child.wait_with_output().expect("python3 output");
        writer.join().expect("writer").expect("write to python3");
        assert!(out.status.success(), "python3 failed");
        let want = String::from_utf8(out.stdout).expect("ASCII");
        let want: Vec<&str> = want.lines().collect();
        assert_eq!(want.len(), times.len());
        let mut ties = 0;
        for (&ns, &w) in times.iter().zip(&want) {
            assert_eq!(text(ns), w, "repr({ns} / 1e9)");
            let t = ns as f64 / 1e9;
            if t >= 1e-4
                && w.contains('.')
                && fraction_bits(t) == w.len() - w.find('.').unwrap_or(0)
            {
                ties += 1;
            }
        }
        // The tie-heavy times must really contain ties, or the test proves nothing about them.
        assert!(ties > 100, "only {ties} halfway cases among the times");
    }
}
