//! Smoke test of the fuzz harnesses (`hlsd::fuzzing`, run for real by `fuzz/run.sh`): every
//! target over its seed corpus (`fuzz/seeds/TARGET`), its committed regression inputs
//! (`fuzz/regressions/TARGET`: minimized inputs of findings, now fixed) and a few thousand
//! deterministic mutations of them, so the harnesses cannot rot and fixed crashes stay fixed.
//! A failing input is written to `target/fuzz-smoke/TARGET-N` for `fuzz/run.sh` to replay.

use hlsd::fuzzing::{Rng, TARGETS};
use std::path::{Path, PathBuf};

fn dir_inputs(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let Ok(rd) = std::fs::read_dir(dir) else { return Vec::new() };
    let mut v: Vec<(String, Vec<u8>)> = rd
        .map(|e| e.expect("dir entry").path())
        .filter(|p| p.is_file())
        .map(|p| (p.display().to_string(), std::fs::read(&p).expect("read input")))
        .collect();
    v.sort();
    v
}

/// One of libFuzzer's simple mutations, chosen at random (bit flip, byte set, insert, erase,
/// block duplicate, splice with another input, an interesting token, truncate).
fn mutate(r: &mut Rng, base: &[u8], other: &[u8]) -> Vec<u8> {
    let mut v = base.to_vec();
    for _ in 0..1 + r.below(4) {
        let at = r.below(v.len() as u64 + 1) as usize;
        let last = v.len().saturating_sub(1);
        match r.below(8) {
            0 if !v.is_empty() => v[at.min(last)] ^= 1 << r.below(8),
            1 if !v.is_empty() => v[at.min(last)] = r.next_u64() as u8,
            2 => v.insert(at, r.next_u64() as u8),
            3 if at < v.len() => {
                let n = (1 + r.below(16) as usize).min(v.len() - at);
                v.drain(at..at + n);
            }
            4 if at < v.len() => {
                let n = (1 + r.below(64) as usize).min(v.len() - at);
                let block = v[at..at + n].to_vec();
                v.splice(at..at, block);
            }
            5 if !other.is_empty() => {
                let from = r.below(other.len() as u64) as usize;
                let n = (1 + r.below(256) as usize).min(other.len() - from);
                v.splice(at..at, other[from..from + n].iter().copied());
            }
            6 => {
                const TOKENS: &[&[u8]] = &[b"\0\0\x01", b"\0\0\0\x01", b"\0\0\x03", b"\xff\xff\xff\xff", b"&_HLS_msn=", b"=", b"/", b"://", b"nan", b"\"", b"\n", b"18446744073709551616", b"-1"];
                let t = TOKENS[r.below(TOKENS.len() as u64) as usize];
                v.splice(at..at, t.iter().copied());
            }
            _ => v.truncate(at),
        }
    }
    v.truncate(64 * 1024);
    v
}

fn run_one(target: &str, f: fn(&[u8]), what: &str, input: &[u8]) {
    if let Err(e) = std::panic::catch_unwind(|| f(input)) {
        let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("fuzz-smoke");
        std::fs::create_dir_all(&dir).expect("mkdir");
        let path = dir.join(format!("{target}-{:016x}", Rng::new(input.len() as u64).next_u64() ^ input.iter().map(|&b| u64::from(b)).sum::<u64>()));
        std::fs::write(&path, input).expect("write failing input");
        eprintln!("{target}: {what} failed; input saved to {}", path.display());
        std::panic::resume_unwind(e);
    }
}

#[test]
fn every_target_survives_its_corpus_and_mutations() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz");
    let mut total = 0;
    for &(target, f) in TARGETS {
        let seeds = dir_inputs(&root.join("seeds").join(target));
        assert!(!seeds.is_empty(), "no seeds in fuzz/seeds/{target} (python3 fuzz/make_seeds.py writes them)");
        let regressions = dir_inputs(&root.join("regressions").join(target));
        let mut inputs = seeds;
        inputs.extend(regressions);
        for (name, data) in &inputs {
            run_one(target, f, name, data);
        }
        // Mutations, a fixed number per target (deterministic: the same inputs every run).
        let rounds = if target == "au_parser" { 600 } else { 2500 };
        let mut r = Rng::new(0x5eed ^ target.len() as u64);
        for i in 0..rounds {
            let (_, base) = &inputs[r.below(inputs.len() as u64) as usize];
            let (_, other) = &inputs[r.below(inputs.len() as u64) as usize];
            let m = mutate(&mut r, base, other);
            run_one(target, f, &format!("mutation {i}"), &m);
        }
        total += inputs.len() + rounds;
    }
    assert!(total > 5000, "{total} cases only");
}
