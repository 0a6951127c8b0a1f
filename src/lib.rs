//! hlsd: a low-latency HLS origin for H.264 cameras.
//!
//! Data flow (one stream per process):
//!
//! ```text
//! source (testsrc | file | stdin | exec | tcp | v4l2) src/source/
//!   └─ Annex-B push parser → access units            src/h264/
//!       └─ SourceEvent channel (bounded)             src/media/
//!           └─ Segmenter: CMAF parts & segments      src/hls/segmenter.rs, src/fmp4/
//!               └─ Window: watch<Arc<Snapshot>>      src/hls/window.rs
//!                   └─ HTTP: playlists (blocking     src/http/, src/hls/playlist.rs,
//!                      reload), parts, segments         src/hls/blocking.rs
//! ```
//!
//! `main.rs` only parses the configuration ([`config::Config`]) and calls [`app::run`] or, for
//! `hlsd segment`, [`hls::vod::segment_file`], or for `hlsd devices`,
//! [`source::v4l2::devices::report`], or for `hlsd sign`, [`http::auth::sign`].

pub mod app;
pub mod config;
pub mod config_file;
pub mod fmp4;
#[doc(hidden)]
pub mod fuzzing;
pub mod h264;
pub mod hls;
pub mod http;
#[doc(hidden)]
pub mod loadgen;
pub mod media;
pub mod metrics;
pub mod policy;
pub mod secret;
pub mod sink;
pub mod poster;
pub mod source;
pub mod stream;
#[cfg(test)]
pub(crate) mod testutil;
