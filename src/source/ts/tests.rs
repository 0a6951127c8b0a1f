//! TsIngest over hand-built transport streams: PAT/PMT, one H.264 PES per frame, damage.

use super::*;

/// A TS packet: PID, payload_unit_start, continuity counter, payload (stuffed with an
/// adaptation field to 188 bytes).
fn packet(pid: u16, start: bool, cc: u8, payload: &[u8]) -> Vec<u8> {
    assert!(payload.len() <= 184);
    let mut p = vec![0x47, (u8::from(start) << 6) | (pid >> 8) as u8, pid as u8];
    let stuff = 184 - payload.len();
    if stuff == 0 {
        p.push(0x10 | (cc & 0x0f));
    } else {
        p.push(0x30 | (cc & 0x0f));
        p.push((stuff - 1) as u8);
        if stuff > 1 {
            p.push(0);
            p.extend(std::iter::repeat_n(0xff, stuff - 2));
        }
    }
    p.extend_from_slice(payload);
    assert_eq!(p.len(), 188);
    p
}

fn crc32(data: &[u8]) -> u32 {
    let mut crc = 0xffff_ffffu32;
    for &b in data {
        crc ^= u32::from(b) << 24;
        for _ in 0..8 {
            crc = if crc & 0x8000_0000 != 0 { (crc << 1) ^ 0x04c1_1db7 } else { crc << 1 };
        }
    }
    crc
}

fn section(table_id: u8, ext: u16, body: &[u8]) -> Vec<u8> {
    let len = 5 + body.len() + 4;
    let mut s = vec![table_id, 0xb0 | (len >> 8) as u8, len as u8, (ext >> 8) as u8, ext as u8, 0xc1, 0, 0];
    s.extend_from_slice(body);
    let c = crc32(&s);
    s.extend_from_slice(&c.to_be_bytes());
    let mut payload = vec![0u8]; // pointer_field
    payload.extend(s);
    payload
}

fn pat() -> Vec<u8> {
    packet(0, true, 0, &section(0, 1, &[0, 1, 0xe1, 0x00]))
}

fn pmt(streams: &[(u8, u16)]) -> Vec<u8> {
    let mut body = vec![0xe1, 0x00, 0xf0, 0x00]; // PCR PID 0x100, no program info
    for (t, pid) in streams {
        body.extend([*t, 0xe0 | (pid >> 8) as u8, *pid as u8, 0xf0, 0x00]);
    }
    packet(0x100, true, 0, &section(2, 1, &body))
}

fn ts_bytes(ts: u64, marker: u8) -> [u8; 5] {
    [marker << 4 | ((ts >> 29) as u8 & 0x0e) | 1, (ts >> 22) as u8, ((ts >> 14) as u8) | 1, (ts >> 7) as u8, ((ts << 1) as u8) | 1]
}

/// The tiny SPS/PPS/IDR of the reader test, and a P slice.
const SPS: [u8; 24] = [0x67, 0x42, 0xc0, 0x0d, 0xd9, 0x01, 0x41, 0xfb, 0x01, 0x10, 0x00, 0x00, 0x03, 0x00, 0x10, 0x00, 0x00, 0x03, 0x03, 0xc0, 0xf1, 0x42, 0x99, 0x60];
const PPS: [u8; 5] = [0x68, 0xcb, 0x83, 0xcb, 0x20];

fn video_pes(pid: u16, cc: &mut u8, pts: u64, dts: u64, idr: bool) -> Vec<u8> {
    let mut es = Vec::new();
    if idr {
        for n in [&SPS[..], &PPS[..], &[0x65, 0x88, 0x84, 0x21, 0x43][..]] {
            es.extend([0, 0, 0, 1]);
            es.extend_from_slice(n);
        }
    } else {
        es.extend([0, 0, 0, 1, 0x41, 0x9a, 0x02, 0x03]);
    }
    let mut pes = vec![0, 0, 1, 0xe0, 0, 0, 0x80, 0xc0, 10];
    pes.extend(ts_bytes(pts, 3));
    pes.extend(ts_bytes(dts, 1));
    pes.extend(es);
    let mut out = Vec::new();
    for (i, chunk) in pes.chunks(184).enumerate() {
        out.extend(packet(pid, i == 0, *cc, chunk));
        *cc = cc.wrapping_add(1);
    }
    out
}

fn run(input: &[u8], chunk: usize) -> (Vec<SourceEvent>, Result<(), TsError>, TsIngest) {
    let mut t = TsIngest::new(None, None, false);
    let mut evs = Vec::new();
    let mut res = Ok(());
    for c in input.chunks(chunk) {
        res = t.push(c, Instant::now());
        if res.is_err() {
            break;
        }
    }
    if res.is_ok() {
        res = t.flush(Instant::now());
    }
    while let Some(e) = t.next_event() {
        evs.push(e);
    }
    (evs, res, t)
}

fn frames(evs: &[SourceEvent]) -> Vec<(u64, i32, bool)> {
    evs.iter().filter_map(|e| if let SourceEvent::Frame(f) = e { Some((f.dts, f.cts, f.idr)) } else { None }).collect()
}

#[test]
fn pes_frames_keep_dts_and_composition_offsets_in_any_chunking() {
    let mut input = pat();
    input.extend(pmt(&[(0x1b, 0x101), (0x0f, 0x102)]));
    let mut cc = 0;
    let base = (1u64 << 33) - 3000; // wraps after the first frame
    for (i, idr) in [true, false, false, false].into_iter().enumerate() {
        let dts = (base + i as u64 * 3000) % (1 << 33);
        input.extend(video_pes(0x101, &mut cc, (dts + 6000) % (1 << 33), dts, idr));
    }
    for chunk in [1, 100, 188, 4096] {
        let (evs, res, _) = run(&input, chunk);
        res.unwrap();
        assert!(matches!(evs[0], SourceEvent::Format(_)), "chunk {chunk}");
        assert_eq!(frames(&evs), vec![(0, 6000, true), (3000, 6000, false), (6000, 6000, false), (9000, 6000, false)], "chunk {chunk}");
    }
}

#[test]
fn damage_is_counted_and_survived() {
    let mut input = pat();
    input.extend(pmt(&[(0x1b, 0x101)]));
    let mut cc = 0;
    input.extend(video_pes(0x101, &mut cc, 0, 0, true));
    input.extend(video_pes(0x101, &mut cc, 3000, 3000, false));
    cc += 3; // lost packets: the PES before them may be cut, so it is dropped
    input.extend(video_pes(0x101, &mut cc, 6000, 6000, false));
    input.extend(video_pes(0x101, &mut cc, 9000, 9000, true));
    // Garbage with a sync byte every 188 bytes, then a PTS jump back.
    for i in 0..10u64 {
        let mut g: Vec<u8> = (0..188u64).map(|k| ((k * 2_654_435_761 + i * 40_503) >> 7) as u8).collect();
        g[0] = 0x47;
        input.extend(g);
    }
    input.extend(video_pes(0x101, &mut cc, 100, 100, true));
    let before = crate::metrics::get().ts_continuity_errors.get();
    let (evs, res, _) = run(&input, 188 * 3);
    res.unwrap();
    assert!(crate::metrics::get().ts_continuity_errors.get() > before);
    let f = frames(&evs);
    // 3000 (damaged) and 6000 (refers to it) are dropped up to the IDR at 9000; the step back
    // re-anchors one frame on.
    assert_eq!(f.iter().map(|x| x.0).collect::<Vec<_>>(), vec![0, 9000, 12000], "{evs:?}");
    assert!(evs.iter().any(|e| matches!(e, SourceEvent::Discontinuity { .. })));
}

#[test]
fn unusable_streams_are_refused_by_name() {
    let mut input = pat();
    input.extend(pmt(&[(0x24, 0x101), (0x03, 0x102)]));
    let (_, res, _) = run(&input, 188);
    let e = res.unwrap_err();
    let msg = e.to_string();
    assert!(matches!(e, TsError::NoVideo { .. }) && msg.contains("HEVC") && msg.contains("MP2/MP3") && msg.contains("libx264"), "{msg}");
    // Scrambled packets.
    let mut input = pat();
    input.extend(pmt(&[(0x1b, 0x101)]));
    for cc in 0..70u8 {
        let mut p = packet(0x101, cc == 0, cc, &[0u8; 184]);
        p[3] |= 0x80;
        input.extend(p);
    }
    assert_eq!(run(&input, 188).1, Err(TsError::Scrambled));
    // No PMT at all: an error at the end, not a hang.
    let (_, res, t) = run(&pat(), 188);
    res.unwrap();
    assert!(matches!(t.end_error(), Some(TsError::NoPmt(_))));
}
