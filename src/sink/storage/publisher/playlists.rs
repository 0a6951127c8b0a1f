//! The published playlists: the media playlist is rendered (pure, `storage::playlist`) and put
//! only when what it lists changed and everything it names is confirmed in the current epoch
//! (with parts: and it ends in a part, see `schedule_playlists`);
//! the multivariant playlist follows once the media playlist exists, and again when its shape
//! changes or its peak bandwidth grows by more than 10%.

use super::advance::skeleton;
use super::jobs::{Op, Prio, Target};
use super::state::Publisher;
use crate::hls::playlist::{names, render_multivariant};
use crate::hls::window::SegmentView;
use crate::policy::{Object, Playlist};
use crate::sink::storage::config::Retention;
use crate::sink::storage::playlist::{render_static, StaticPlaylist};
use crate::sink::storage::store::Meta;
use std::sync::Arc;

impl Publisher {
    /// The media playlist as it would be published now, with the objects it names confirmed?
    pub(super) fn media_state(&self) -> Option<(StaticPlaylist<'_>, Vec<Arc<SegmentView>>)> {
        let t = self.target_duration?;
        let mut segs: Vec<Arc<SegmentView>> =
            self.published.iter().map(|p| p.view.clone()).collect();
        if let Some((msn, n)) = self.tail {
            let r = self.pending.get(&msn)?;
            let mut v = skeleton(&r.view, true);
            let m = Arc::make_mut(&mut v);
            m.parts.truncate(n);
            m.complete = false;
            m.duration = m.parts.iter().map(|p| p.duration).sum();
            m.discontinuity = r.view.discontinuity || r.gap_before;
            segs.push(v);
        }
        if segs.is_empty() {
            return None;
        }
        let p = StaticPlaylist {
            run: &self.run,
            target_duration: t,
            part_target: (self.cfg.parts && self.part_target > 0).then_some(self.part_target),
            media_sequence: self
                .published
                .front()
                .map(|p| p.seq)
                .unwrap_or(self.next_seq),
            discontinuity_sequence: self.discontinuity_sequence,
            event: self.cfg.retention == Retention::All,
            ended: self.ended_rendered,
            segments: &[],
        };
        Some((p, segs))
    }

    /// Whether everything the current media playlist names is confirmed in this epoch.
    pub(super) fn media_publishable(&self) -> bool {
        let e = self.epoch;
        let verify_from = self.published.len().saturating_sub(self.cfg.window.max(10));
        self.published
            .iter()
            .skip(verify_from)
            .all(|p| p.epoch == e)
            && self
                .published
                .iter()
                .map(|p| p.view.init_id)
                .all(|id| self.init_ok(id))
    }

    pub(super) fn schedule_playlists(&mut self) {
        if self.media_busy || self.mv_busy {
            return;
        }
        let Some(t) = self.target_duration else {
            return;
        };
        let version = self.version;
        let media_current = self.media_stored == Some((version, self.epoch));
        if !media_current {
            if !self.media_publishable() {
                return;
            }
            // With parts, a live playlist never ends in a segment line: hls.js (1.7) then takes
            // that last segment for the open one it expects after the parts ("fragment hint"),
            // compares it with the next playlist's segment of the following number, and stops
            // with a fatal levelParsingError ("media sequence mismatch"). So the version that
            // adds a completed segment waits until the next segment's first part is stored.
            if self.cfg.parts
                && !self.ended_rendered
                && self.tail.is_none()
                && !self.published.is_empty()
            {
                return;
            }
            let Some((p, segs)) = self.media_state() else {
                return;
            };
            let text = render_static(&StaticPlaylist {
                segments: &segs,
                ..p
            });
            let kind = if self.ended_rendered {
                Playlist::Ended
            } else if self.cfg.parts {
                Playlist::EveryPart
            } else {
                Playlist::Live { target: t }
            };
            let meta = Meta::of(Object::Playlist(kind));
            self.media_busy = true;
            self.enqueue(
                Prio::Init,
                names::MEDIA.into(),
                Op::Put(vec![text.into()], meta),
                Target::Media { version },
                0,
            );
            return;
        }
        // The multivariant playlist names the media playlist: only once that exists.
        let Some(snap) = self.latest.clone() else {
            return;
        };
        let Some(text) = render_multivariant(&snap) else {
            return;
        };
        let peak = snap.bandwidth().1;
        let shape = strip_bandwidth(&text);
        let stale = match &self.mv_stored {
            None => true,
            Some((s, p, e)) => *s != shape || *e != self.epoch || peak > p + p / 10,
        };
        if stale {
            let meta = Meta::of(Object::Playlist(Playlist::Live { target: t }));
            self.mv_busy = true;
            self.mv_stored = Some((shape, peak, self.epoch));
            self.enqueue(
                Prio::Init,
                names::MULTIVARIANT.into(),
                Op::Put(vec![text.into()], meta),
                Target::Multivariant,
                0,
            );
        }
    }
}

/// The multivariant playlist without its BANDWIDTH values (what must be republished when it
/// changes).
fn strip_bandwidth(text: &str) -> String {
    text.split(',')
        .filter(|a| !a.contains("BANDWIDTH="))
        .collect::<Vec<_>>()
        .join(",")
}
