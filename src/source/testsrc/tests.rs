//! The test source's unit tests: AVCC frames with exact IDR positions, the dts grid, config
//! checks, pacing, and both ways the thread stops (receiver closed, stop flag).

use super::*;

fn cfg(width: u32, height: u32) -> TestsrcConfig {
    TestsrcConfig {
        width,
        height,
        fps: 30,
        idr_interval_frames: 30,
        bitrate_bps: 500_000,
    }
}

/// Splits AVCC data into NAL units, panicking if the length prefixes don't add up.
fn avcc_nals(mut data: &[u8]) -> Vec<&[u8]> {
    let mut nals = Vec::new();
    while !data.is_empty() {
        let len = u32::from_be_bytes(data[..4].try_into().unwrap()) as usize;
        nals.push(&data[4..4 + len]);
        data = &data[4 + len..];
    }
    nals
}

#[test]
fn frames_are_avcc_with_exact_idr_positions() {
    // 100 is not a multiple of 16: the SPS must carry cropping and track_info must apply it.
    let mut gen = Generator::new(cfg(176, 100)).unwrap();
    let t0 = SystemTime::now();
    let mut formats = Vec::new();
    let mut frames = Vec::new();
    for i in 0..65 {
        let e = gen.next(t0 + Duration::from_millis(i * 33)).unwrap();
        formats.extend(e.format.map(|f| (i, f)));
        frames.push(e.frame.expect("no frame may be skipped"));
    }
    assert_eq!(formats.len(), 1, "Format once, with the first frame");
    let (at, info) = &formats[0];
    assert_eq!(*at, 0);
    assert_eq!(
        (info.width, info.height, info.frame_duration),
        (176, 100, 3000)
    );
    assert!(
        info.codec_string().starts_with("avc1."),
        "{}",
        info.codec_string()
    );
    for (i, f) in frames.iter().enumerate() {
        assert_eq!(f.dts, i as u64 * 3000);
        assert_eq!(f.idr, i % 30 == 0, "frame {i}");
        let nals = avcc_nals(&f.data);
        assert!(!nals.is_empty());
        for nal in nals {
            let t = nal[0] & 0x1f;
            assert!(t == 1 || t == 5, "frame {i} has NAL type {t}");
            assert_eq!(t == 5, f.idr);
        }
    }
}

#[test]
fn dts_rounds_to_nearest_tick() {
    assert_eq!(dts(3, 30), 9000);
    assert_eq!(dts(1, 7), 12857);
    assert_eq!(dts(2, 7), 25714);
    assert_eq!(dts(3, 7), 38571);
    assert_eq!(dts(7, 7), 90000);
}

#[test]
fn rejects_bad_config() {
    let bad = [
        TestsrcConfig {
            width: 175,
            ..cfg(176, 100)
        },
        TestsrcConfig {
            width: 4096,
            height: 2160,
            ..cfg(0, 0)
        },
        TestsrcConfig {
            fps: 0,
            ..cfg(176, 100)
        },
        TestsrcConfig {
            idr_interval_frames: 0,
            ..cfg(176, 100)
        },
        TestsrcConfig {
            bitrate_bps: 0,
            ..cfg(176, 100)
        },
    ];
    for c in bad {
        assert!(Generator::new(c.clone()).is_err(), "{c:?} accepted");
    }
}

#[test]
fn spawn_paces_frames_and_stops_when_receiver_closes() {
    let (tx, mut rx) = tokio::sync::mpsc::channel(4);
    let stop = Arc::new(AtomicBool::new(false));
    let handle = spawn(cfg(64, 48), tx, stop.clone()).unwrap();
    let t0 = Instant::now();
    assert!(matches!(rx.blocking_recv(), Some(SourceEvent::Format(_))));
    for i in 0..4u64 {
        match rx.blocking_recv() {
            Some(SourceEvent::Frame(f)) => assert_eq!(f.dts, i * 3000),
            other => panic!("expected frame {i}, got {other:?}"),
        }
    }
    // Frame 3 is released no earlier than 3/30 s after start (start precedes t0).
    assert!(
        t0.elapsed() >= Duration::from_millis(90),
        "{:?}",
        t0.elapsed()
    );
    drop(rx);
    handle.join().unwrap();
}

/// The flag alone ends the thread: the receiver stays open with room to spare, so nothing
/// else could. Waits are bounded (10 s, far beyond the one frame time the flag needs).
#[test]
fn spawn_stops_on_flag() {
    use tokio::sync::mpsc::error::TryRecvError;
    let (tx, mut rx) = tokio::sync::mpsc::channel(1000);
    let stop = Arc::new(AtomicBool::new(false));
    let handle = spawn(cfg(64, 48), tx, stop.clone()).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match rx.try_recv() {
            Ok(SourceEvent::Frame(_)) => break,
            Ok(_) => {}
            Err(TryRecvError::Empty) => {
                assert!(Instant::now() < deadline, "no frame within 10 s");
                std::thread::sleep(Duration::from_millis(2));
            }
            Err(TryRecvError::Disconnected) => panic!("the source ended before the flag was set"),
        }
    }
    assert!(
        !handle.is_finished(),
        "the source ended before the flag was set"
    );
    stop.store(true, Ordering::Relaxed);
    let deadline = Instant::now() + Duration::from_secs(10);
    while !handle.is_finished() {
        assert!(
            Instant::now() < deadline,
            "the source ignored the stop flag for 10 s"
        );
        std::thread::sleep(Duration::from_millis(2));
    }
    handle.join().unwrap();
    while let Ok(ev) = rx.try_recv() {
        assert!(
            matches!(ev, SourceEvent::Frame(_)),
            "only frames after the start: {ev:?}"
        );
    }
    assert!(
        matches!(rx.try_recv(), Err(TryRecvError::Disconnected)),
        "the thread dropped its sender"
    );
}

/// `cargo test --release -- --ignored --nocapture encode_cost_720p`
#[test]
#[ignore]
fn encode_cost_720p() {
    let mut gen = Generator::new(TestsrcConfig {
        bitrate_bps: 2_000_000,
        ..cfg(1280, 720)
    })
    .unwrap();
    let mut times = Vec::new();
    let mut bytes = 0;
    for _ in 0..300 {
        let began = Instant::now();
        let e = gen.next(SystemTime::now()).unwrap();
        times.push(began.elapsed());
        bytes += e.frame.map_or(0, |f| f.data.len());
    }
    times.sort();
    println!(
        "720p30 paint+encode: median {:?}, p90 {:?}, max {:?}; {} kbit/s",
        times[150],
        times[270],
        times[299],
        bytes * 8 / 10 / 1000
    );
}
