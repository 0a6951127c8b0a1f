//! Streams: a named unit of one or more renditions, each its own live pipeline.
//!
//! [`catalog`] is what the HTTP layer reads: every stream being served and its renditions.

pub mod catalog;
