//! Transport-packet alignment: finds the 0x47 sync byte at a 188-byte stride in arbitrarily
//! chunked input and hands whole, aligned packets on (mpeg2ts-reader's demultiplexer needs
//! aligned input and stops at the first packet without a sync byte).
//!
//! Sync is acquired when two sync bytes 188 apart are seen, and lost at a packet that does not
//! start with one or is not followed by one; the bytes skipped meanwhile are counted. Once
//! locked, the last packet of a read is passed on without waiting for the next sync byte (that
//! would hold each frame's last packet until the next frame). Memory: at most one partial packet
//! plus one chunk is held. Scrambled packets are counted and dropped here; the discontinuity
//! indicator of the video PID is noticed here (the demultiplexer does not pass it on).

/// Packets of one [`Aligner::push`].
pub struct Batch {
    /// Whole aligned packets.
    pub packets: Vec<u8>,
    /// A video packet carried the discontinuity indicator.
    pub video_discontinuity: bool,
}

/// The aligner. See the module docs.
#[derive(Default)]
pub struct Aligner {
    held: Vec<u8>,
    locked: bool,
    /// Bytes skipped while looking for sync (drained by the caller for the metric).
    pub lost_bytes: u64,
    /// Scrambled packets seen so far.
    pub scrambled: u64,
}

const SIZE: usize = 188;

impl Aligner {
    /// Aligns `chunk` (after what was held back); `pids` are the selected (video, audio) PIDs.
    pub fn push(&mut self, chunk: &[u8], pids: (Option<u16>, Option<u16>)) -> Batch {
        self.held.extend_from_slice(chunk);
        let mut out = Batch { packets: Vec::with_capacity(self.held.len()), video_discontinuity: false };
        let mut pos = 0;
        let buf = std::mem::take(&mut self.held);
        while buf.len() - pos >= SIZE {
            if buf[pos] != 0x47 || buf.get(pos + SIZE).is_some_and(|&b| b != 0x47) {
                self.locked = false;
                pos += 1;
                self.lost_bytes += 1;
                continue;
            }
            if !self.locked && buf.len() - pos < SIZE + 1 {
                break; // Wait for the next sync byte to confirm.
            }
            self.locked = true;
            let pk = &buf[pos..pos + SIZE];
            pos += SIZE;
            let pid = u16::from(pk[1] & 0x1f) << 8 | u16::from(pk[2]);
            if pk[3] >> 6 != 0 {
                self.scrambled += 1;
                continue;
            }
            let has_af = pk[3] & 0x20 != 0;
            if has_af && pk[4] > 0 && pk[5] & 0x80 != 0 && Some(pid) == pids.0 {
                out.video_discontinuity = true;
            }
            out.packets.extend_from_slice(pk);
        }
        self.held = buf[pos..].to_vec();
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn packet(pid: u16, fill: u8) -> Vec<u8> {
        let mut p = vec![fill; SIZE];
        p[0] = 0x47;
        p[1] = (pid >> 8) as u8;
        p[2] = pid as u8;
        p[3] = 0x10;
        p
    }

    #[test]
    fn resyncs_after_garbage_in_any_chunking() {
        let mut input = vec![1u8, 2, 3];
        for i in 0..5 {
            input.extend(packet(256, i));
        }
        input.extend([0x47, 9, 9]); // a broken packet
        for i in 0..3 {
            input.extend(packet(256, 10 + i));
        }
        for chunk in [1usize, 7, 188, 1000] {
            let mut s = Aligner::default();
            let mut got = Vec::new();
            for c in input.chunks(chunk) {
                got.extend(s.push(c, (None, None)).packets);
            }
            let fills: Vec<u8> = got.chunks(SIZE).map(|p| p[4]).collect();
            // Packet 10 may be lost with the broken one (when a read ended right after it).
            assert_eq!(&fills[..5], &[0, 1, 2, 3, 4], "chunk {chunk}");
            assert_eq!(&fills[fills.len() - 2..], &[11, 12], "chunk {chunk}");
            if chunk == 1000 {
                assert_eq!(fills, vec![0, 1, 2, 3, 4, 10, 11, 12]);
                assert_eq!(s.lost_bytes, 3 + 3);
            }
        }
    }
}
