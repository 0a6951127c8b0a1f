//! Throughput of the pure pipeline stages on a real capture (no I/O, no HTTP):
//!
//! * `parse/au_parser_64k`: `h264::AuParser` over the 720p30 Pi capture fed in 64 KiB chunks (as
//!   the live sources read), bytes/s of Annex-B input.
//! * `mux/segmenter`: `hls::segmenter::Segmenter` turning those access units into CMAF parts
//!   (200 ms) and segments (1 s target), bytes/s of access-unit payload.
//! * `pipeline/parse_and_segment`: both together, i.e. `hlsd segment` without file I/O.
//! * `playlist/render_media{,_delta}`: `hls::playlist::render_media` of a full live window (10
//!   segments listed, parts near the live edge) built by driving `hls::window::Window` with
//!   segmenter outputs; time per render. (hlsd caches a rendering per snapshot, so this runs
//!   once per published part per variant, not once per request.)
//!
//! Run: `cargo bench --bench parse_mux` (add `-- --quick` for a short run, or a filter such as
//! `-- parse`). The capture is read from `$HLSD_FIXTURES/pi-720p30-inline.h264` (default
//! `../shared/fixtures` beside the repository).

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use hlsd::h264::{AuParser, ParsedItem};
use hlsd::hls::playlist::render_media;
use hlsd::hls::segmenter::{ticks, Output, Segmenter, SegmenterConfig};
use hlsd::hls::window::{Window, WindowConfig};
use hlsd::media::{Frame, SourceEvent, TrackInfo};
use std::hint::black_box;
use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime};

fn fixture() -> Vec<u8> {
    let dir = std::env::var_os("HLSD_FIXTURES")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/fixtures"));
    let path = dir.join("pi-720p30-inline.h264");
    std::fs::read(&path).unwrap_or_else(|e| panic!("cannot read {}: {e} (set HLSD_FIXTURES)", path.display()))
}

/// Parses the whole file: (format, [(AVCC access unit, idr)]).
fn parse_all(data: &[u8]) -> (TrackInfo, Vec<(Bytes, bool)>) {
    let mut p = AuParser::new(None);
    let mut info = None;
    let mut aus = Vec::new();
    let mut drain = |p: &mut AuParser| {
        while let Some(item) = p.next_item() {
            match item {
                ParsedItem::Format(i) => info = info.take().or(Some(i)),
                ParsedItem::Au { data, idr } => aus.push((data, idr)),
            }
        }
    };
    for chunk in data.chunks(64 * 1024) {
        p.push(chunk).expect("fixture parses");
        drain(&mut p);
    }
    p.flush().expect("fixture parses");
    drain(&mut p);
    (info.expect("fixture has SPS/PPS"), aus)
}

fn seg_config() -> SegmenterConfig {
    SegmenterConfig { segment_target: ticks(1.0), part_target: ticks(0.2) }
}

/// Source events for `loops` passes over the capture, on the nominal frame grid.
fn events(info: &TrackInfo, aus: &[(Bytes, bool)], loops: usize) -> Vec<SourceEvent> {
    let t0 = SystemTime::now();
    let now = Instant::now();
    let fd = info.frame_duration as u64;
    let mut ev = vec![SourceEvent::Format(info.clone())];
    for (i, (data, idr)) in aus.iter().cycle().take(aus.len() * loops).enumerate() {
        let dts = i as u64 * fd;
        ev.push(SourceEvent::Frame(Frame {
            dts,
            cts: 0,
            capture: t0 + Duration::from_nanos(dts * 1_000_000_000 / 90_000),
            data: data.clone(),
            idr: *idr,
            arrived: now,
        }));
    }
    ev
}

fn bench_parse(c: &mut Criterion) {
    let data = fixture();
    let mut g = c.benchmark_group("parse");
    g.throughput(Throughput::Bytes(data.len() as u64));
    g.bench_function("au_parser_64k", |b| {
        b.iter(|| {
            let mut p = AuParser::new(None);
            let mut n = 0usize;
            for chunk in data.chunks(64 * 1024) {
                p.push(black_box(chunk)).unwrap();
                while let Some(item) = p.next_item() {
                    n += matches!(item, ParsedItem::Au { .. }) as usize;
                }
            }
            p.flush().unwrap();
            while let Some(item) = p.next_item() {
                n += matches!(item, ParsedItem::Au { .. }) as usize;
            }
            black_box(n)
        })
    });
    g.finish();

    let mut g = c.benchmark_group("pipeline");
    g.throughput(Throughput::Bytes(data.len() as u64));
    g.bench_function("parse_and_segment", |b| {
        b.iter(|| {
            let mut p = AuParser::new(None);
            let mut seg = Segmenter::new(seg_config());
            let mut outs = Vec::new();
            let mut dts = 0u64;
            let mut fd = 3000u64;
            let now = Instant::now();
            let t0 = SystemTime::now();
            let mut bytes = 0usize;
            let mut step = |p: &mut AuParser, seg: &mut Segmenter, outs: &mut Vec<Output>| {
                while let Some(item) = p.next_item() {
                    let ev = match item {
                        ParsedItem::Format(i) => {
                            fd = i.frame_duration as u64;
                            SourceEvent::Format(i)
                        }
                        ParsedItem::Au { data, idr } => {
                            let f = Frame { dts, cts: 0, capture: t0, data, idr, arrived: now };
                            dts += fd;
                            SourceEvent::Frame(f)
                        }
                    };
                    seg.push(ev, outs).unwrap();
                }
                for o in outs.drain(..) {
                    if let Output::Part(part) = o {
                        bytes += part.data.len();
                    }
                }
            };
            for chunk in data.chunks(64 * 1024) {
                p.push(black_box(chunk)).unwrap();
                step(&mut p, &mut seg, &mut outs);
            }
            p.flush().unwrap();
            step(&mut p, &mut seg, &mut outs);
            seg.push(SourceEvent::End, &mut outs).unwrap();
            black_box(bytes)
        })
    });
    g.finish();
}

fn bench_mux(c: &mut Criterion) {
    let data = fixture();
    let (info, aus) = parse_all(&data);
    let payload: usize = aus.iter().map(|(d, _)| d.len()).sum();
    let evs = events(&info, &aus, 1);
    let mut g = c.benchmark_group("mux");
    g.throughput(Throughput::Bytes(payload as u64));
    g.bench_function("segmenter", |b| {
        b.iter_batched(
            || evs.clone(),
            |evs| {
                let mut seg = Segmenter::new(seg_config());
                let mut outs = Vec::with_capacity(8);
                let mut parts = 0usize;
                for ev in evs {
                    seg.push(ev, &mut outs).unwrap();
                    parts += outs.iter().filter(|o| matches!(o, Output::Part(_))).count();
                    outs.clear();
                }
                seg.push(SourceEvent::End, &mut outs).unwrap();
                black_box(parts)
            },
            BatchSize::SmallInput,
        )
    });
    g.finish();
}

fn bench_playlist(c: &mut Criterion) {
    let data = fixture();
    let (info, aus) = parse_all(&data);
    // 3 passes (~29 s) fill a 10-segment window of this capture's 2 s GOPs, with retired ones.
    let mut seg = Segmenter::new(seg_config());
    let (mut window, _rx) = Window::new(WindowConfig { segments: 10, segment_target: 1.0 }, "mgx3b2k1".into());
    let mut outs = Vec::new();
    for ev in events(&info, &aus, 3) {
        seg.push(ev, &mut outs).unwrap();
        window.apply(&mut outs, seg.next_global_part());
    }
    let snap = window.snapshot();
    let text = render_media(&snap, false).expect("window ready");
    let delta = render_media(&snap, true).expect("window ready");
    eprintln!(
        "playlist: {} segments listed, {} retired, next part {}, {} bytes ({} bytes delta)",
        snap.segments.len(),
        snap.retired.len(),
        snap.next_part,
        text.len(),
        delta.len()
    );
    let mut g = c.benchmark_group("playlist");
    g.throughput(Throughput::Bytes(text.len() as u64));
    g.bench_function("render_media", |b| b.iter(|| black_box(render_media(black_box(&snap), false))));
    g.throughput(Throughput::Bytes(delta.len() as u64));
    g.bench_function("render_media_delta", |b| b.iter(|| black_box(render_media(black_box(&snap), true))));
    g.finish();
}

criterion_group!(benches, bench_parse, bench_mux, bench_playlist);
criterion_main!(benches);
