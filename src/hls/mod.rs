//! HLS: segmenting frames into CMAF parts/segments, the live window, playlist rendering and the
//! blocking-reload rules. Data flows segmenter → window → (http, sinks).

pub mod blocking;
pub mod playlist;
pub mod segmenter;
pub mod vod;
pub mod window;
