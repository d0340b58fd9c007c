//! CRFS RFeye `.bin` (logger) metadata parser.
//!
//! RFeye stations write their measurements as CRFS "logger" files: a 36-byte header and a
//! sequence of checksummed blocks (unit info, GPS, texts, spectra). The catalogue needs the
//! metadata of each file (equipment, procedure, site, and one entry per spectrum stream), not the
//! levels. The format is described in `shared/docs/crfs-bin-format.md`.
//!
//! The parser is **pure**: [`parse`] takes the bytes of a file and returns a [`FileMetadata`]; it
//! does no I/O, never panics on any input, and never allocates from a length read from the file
//! without bounding it by the bytes actually present. Damage (bad checksums, broken framing, a
//! truncated last block, trailing bytes) is reported in [`Damage`], not as an error: a file is
//! rejected only when it is not CRFS at all or has no readable block.
//!
//! Modules: [`walk`] (header and block framing), `blocks` (per-type decoders), `levels`
//! (optional level decode), [`model`] (output types), [`generator`] (writes valid files for
//! tests, the simulator and benchmarks), [`inspect`] (`appcataloga inspect` renderings).

mod blocks;
mod bytes;
pub mod generator;
pub mod inspect;
mod levels;
pub mod model;
mod parse;
pub mod walk;

pub use blocks::{MAX_POINTS_PER_SWEEP, processing_name, unit_name};
pub use model::{
    Damage, Equipment, FileMetadata, Gps, GpsSample, ParseOptions, Position, Procedure, SkipReason,
    SpectrumStream, StreamKind, TextRecord,
};
pub use parse::parse;

/// Why a byte buffer could not be read as a CRFS file at all.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CrfsError {
    /// Fewer bytes than the 36-byte header.
    #[error("not a CRFS file: {len} bytes, shorter than the 36-byte CRFS header")]
    TooShort { len: usize },
    /// The header string does not start with `CRFS`.
    #[error("not a CRFS file: header string {found:?} does not start with \"CRFS\"")]
    NotCrfs { found: String },
    /// The header string is CRFS but the version number is not plausible.
    #[error("corrupt CRFS header: version number {version} is not plausible (header string {string:?})")]
    CorruptHeader { version: i32, string: String },
    /// Bytes follow the header, but none of them forms a block with valid framing and checksum.
    #[error(
        "no readable block: none of the {bytes_after_header} bytes after the header forms a \
         block with valid framing and checksum ({bad_blocks} bad blocks)"
    )]
    NoReadableBlock { bytes_after_header: usize, bad_blocks: u64 },
}

/// Parses metadata only (no level decode): the catalogue's common case.
pub fn parse_metadata(bytes: &[u8]) -> Result<FileMetadata, CrfsError> {
    parse(bytes, ParseOptions::default())
}
