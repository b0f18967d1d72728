//! `nd-eater-bench`: the per-dumpling CPU cost of what an eater and the hub do with every
//! dumpling, old way against new way in the same run, on dumplings recorded from a real
//! kitchen (one JSON text per line, e.g. `nd-print --json` on a hub that a replay of the
//! mixed corpus feeds).
//!
//! Rows, each timed over the whole file per round, rounds alternated, medians printed:
//! * `print/value`: `nd-print`'s payload before: `from_str::<Dumpling>` and
//!   `python_pretty` of the `Value`;
//! * `print/stream`: now: the eater library's check without a `Value`
//!   (`parse_dumpling_with` + `AnyJson`) and the printer writing while it parses;
//! * `check/count+parse`: the hub's check with the bracket count run first, as it was
//!   (the parse measures depth too now, so this is a little more than the old cost);
//! * `check/parse`: the hub's check now.
//!
//! usage: nd-eater-bench FILE [ROUNDS]

use std::hint::black_box;
use std::time::Instant;

use anyhow::{bail, Context};
use eater_client::parse_dumpling_with;
use eaters::format::{python_pretty, PrettyScratch, PythonPretty};

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let Some(file) = args.next() else {
        bail!("usage: nd-eater-bench FILE [ROUNDS]");
    };
    let rounds: usize = match args.next() {
        Some(n) => n.parse().context("ROUNDS")?,
        None => 5,
    };
    let text = std::fs::read_to_string(&file).with_context(|| format!("reading {file}"))?;
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    let bytes: usize = lines.iter().map(|l| l.len()).sum();
    println!(
        "{} dumplings, {} bytes, {rounds} rounds",
        lines.len(),
        bytes
    );

    // Same output both ways, or the timing means nothing.
    let mut scratch = PrettyScratch::default();
    let mut out = String::new();
    for line in &lines {
        let value =
            serde_json::from_str::<dumpling::Dumpling>(line).map(|d| python_pretty(&d.payload));
        out.clear();
        let streamed = parse_dumpling_with(line, PythonPretty::new(&mut out, &mut scratch));
        match (value, streamed) {
            (Ok(old), Ok(_)) if old == out => {}
            (Err(_), Err(_)) => {}
            _ => bail!("the printers disagree on {line}"),
        }
    }

    type Row<'a> = (&'static str, Box<dyn FnMut() + 'a>);
    let mut rows: Vec<Row> = vec![
        (
            "print/value",
            Box::new(|| {
                for line in &lines {
                    if let Ok(d) = serde_json::from_str::<dumpling::Dumpling>(line) {
                        black_box(python_pretty(&d.payload));
                    }
                }
            }),
        ),
        (
            "print/stream",
            Box::new(|| {
                let mut scratch = PrettyScratch::default();
                let mut out = String::new();
                for line in &lines {
                    if parse_dumpling_with(line, dumpling::AnyJson).is_ok() {
                        out.clear();
                        let _ =
                            parse_dumpling_with(line, PythonPretty::new(&mut out, &mut scratch));
                        black_box(&out);
                    }
                }
            }),
        ),
        (
            "check/count+parse",
            Box::new(|| {
                for line in &lines {
                    let _ = black_box(dumpling::check_json_depth(line.as_bytes()));
                    let _ = black_box(dumpling::check_dumpling_text(line));
                }
            }),
        ),
        (
            "check/parse",
            Box::new(|| {
                for line in &lines {
                    let _ = black_box(dumpling::check_dumpling_text(line));
                }
            }),
        ),
    ];
    let mut times: Vec<Vec<f64>> = vec![Vec::new(); rows.len()];
    for round in 0..rounds {
        for (i, (_, run)) in rows.iter_mut().enumerate() {
            let start = Instant::now();
            run();
            let ns = start.elapsed().as_nanos() as f64 / lines.len().max(1) as f64;
            times[i].push(ns);
        }
        println!(
            "round {round}: {:?}",
            times.iter().map(|t| t[round].round()).collect::<Vec<_>>()
        );
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let medians: Vec<f64> = times.iter_mut().map(median).collect();
    for ((name, _), m) in rows.iter().zip(&medians) {
        println!("{name:<18} {m:>9.0} ns per dumpling (median)");
    }
    println!("print: stream / value = {:.2}", medians[1] / medians[0]);
    println!(
        "check: parse / count+parse = {:.2}",
        medians[3] / medians[2]
    );
    Ok(())
}
