//! The HTTP metadata of every media object hlsd serves (the origin, `src/http`) or publishes (the
//! disk and S3 outputs, `src/sink/storage`): its Content-Type and its Cache-Control, decided in
//! one place so that a CDN in front of the origin and one in front of a bucket cache alike.
//!
//! Cache-Control follows ll-hls.md §2 (T = target duration in seconds):
//! - init segments, parts and segments never change under their names (the names carry the run
//!   id), so they are immutable for a year;
//! - a non-blocking playlist changes with every part or segment: at most T/2 (`no-cache` when
//!   T/2 rounds to 0);
//! - a blocking playlist response (`_HLS_msn`) is keyed by its directives and answers one moment
//!   of the stream: 6 T;
//! - a playlist with EXT-X-ENDLIST does not change any more: 60 s;
//! - a published playlist that lists parts is rewritten at every part and has no blocking
//!   reload to wait on: `no-cache` (revalidate every time);
//! - errors and status answers are never stored (`no-store`).

use std::borrow::Cow;

/// Content-Type values.
pub mod content_type {
    /// Multivariant and media playlists (RFC 8216 §4).
    pub const PLAYLIST: &str = "application/vnd.apple.mpegurl";
    /// The CMAF initialization segment.
    pub const INIT: &str = "video/mp4";
    /// Media segments and parts (CMAF fragments).
    pub const SEGMENT: &str = "video/iso.segment";
}

/// Cache-Control of init segments, parts and segments.
pub const IMMUTABLE: &str = "public, max-age=31536000, immutable";
/// Cache-Control of errors and status answers.
pub const NO_STORE: &str = "no-store";
/// Cache-Control of a playlist with EXT-X-ENDLIST.
pub const ENDED: &str = "public, max-age=60";
/// Cache-Control of a playlist rewritten at every part (revalidate every time).
pub const NO_CACHE: &str = "no-cache";

/// A playlist, as far as caching goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Playlist {
    /// A live playlist answered at once (the multivariant playlist, a media playlist without
    /// `_HLS_msn`, a published playlist without parts); `target` = target duration in seconds.
    Live { target: u32 },
    /// A media playlist answered to a blocking reload (`_HLS_msn`).
    Blocking { target: u32 },
    /// A playlist with EXT-X-ENDLIST.
    Ended,
    /// A published media playlist that lists parts (rewritten at every part).
    EveryPart,
}

/// A media object hlsd serves or publishes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Object {
    Init,
    Part,
    Segment,
    Playlist(Playlist),
}

impl Object {
    /// Its Content-Type.
    pub fn content_type(self) -> &'static str {
        match self {
            Object::Init => content_type::INIT,
            Object::Part | Object::Segment => content_type::SEGMENT,
            Object::Playlist(_) => content_type::PLAYLIST,
        }
    }

    /// Its Cache-Control.
    pub fn cache_control(self) -> Cow<'static, str> {
        match self {
            Object::Init | Object::Part | Object::Segment => Cow::Borrowed(IMMUTABLE),
            Object::Playlist(Playlist::Ended) => Cow::Borrowed(ENDED),
            Object::Playlist(Playlist::EveryPart) => Cow::Borrowed(NO_CACHE),
            Object::Playlist(Playlist::Blocking { target }) => {
                Cow::Owned(format!("public, max-age={}", 6 * u64::from(target)))
            }
            Object::Playlist(Playlist::Live { target }) => match target / 2 {
                0 => Cow::Borrowed(NO_CACHE),
                s => Cow::Owned(format!("public, max-age={s}")),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn golden_headers_per_object() {
        let cases = [
            (
                Object::Init,
                "video/mp4",
                "public, max-age=31536000, immutable",
            ),
            (
                Object::Part,
                "video/iso.segment",
                "public, max-age=31536000, immutable",
            ),
            (
                Object::Segment,
                "video/iso.segment",
                "public, max-age=31536000, immutable",
            ),
            (
                Object::Playlist(Playlist::Live { target: 4 }),
                "application/vnd.apple.mpegurl",
                "public, max-age=2",
            ),
            (
                Object::Playlist(Playlist::Live { target: 5 }),
                "application/vnd.apple.mpegurl",
                "public, max-age=2",
            ),
            (
                Object::Playlist(Playlist::Live { target: 1 }),
                "application/vnd.apple.mpegurl",
                "no-cache",
            ),
            (
                Object::Playlist(Playlist::Live { target: 0 }),
                "application/vnd.apple.mpegurl",
                "no-cache",
            ),
            (
                Object::Playlist(Playlist::Blocking { target: 1 }),
                "application/vnd.apple.mpegurl",
                "public, max-age=6",
            ),
            (
                Object::Playlist(Playlist::Blocking { target: 4 }),
                "application/vnd.apple.mpegurl",
                "public, max-age=24",
            ),
            (
                Object::Playlist(Playlist::Ended),
                "application/vnd.apple.mpegurl",
                "public, max-age=60",
            ),
            (
                Object::Playlist(Playlist::EveryPart),
                "application/vnd.apple.mpegurl",
                "no-cache",
            ),
        ];
        for (object, ct, cc) in cases {
            assert_eq!(
                (object.content_type(), &*object.cache_control()),
                (ct, cc),
                "{object:?}"
            );
        }
        assert_eq!(NO_STORE, "no-store");
    }

    #[test]
    fn huge_target_duration_does_not_overflow() {
        let cc = Object::Playlist(Playlist::Blocking { target: u32::MAX }).cache_control();
        assert_eq!(cc, format!("public, max-age={}", 6 * u64::from(u32::MAX)));
    }
}
