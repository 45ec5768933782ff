//! How a blob travels to and from the remote (store-format/README.md §9.6): one zstd frame of
//! the blob's bytes, compressed at [`LEVEL`] by the publisher and decompressed by the reader.
//!
//! Only the remote copy is compressed: the local store keeps blobs as they are (restores hard
//! link and reflink them), and a blob's name stays the blake3 of its uncompressed bytes. So a
//! reader checks what it fetched after decompressing it, end to end: [`super::fetch`] streams
//! the [`decoder`] into `store::blob::put_expected`, which stops one byte past the size the
//! entry records and keeps the blob only if its size and blake3 are the ones expected.

use std::io::{self, Read};

/// The zstd level of published blobs, chosen by measurement (benches/README.md, "Remote blobs
/// compressed"): compressing is off the build's critical path (the background uploader), while
/// a fresh machine pays for the bytes it downloads and for decompressing them.
pub const LEVEL: i32 = 3;

/// The first four bytes of every zstd frame (little-endian 0xFD2FB528).
pub const FRAME_MAGIC: [u8; 4] = [0x28, 0xb5, 0x2f, 0xfd];

/// `bytes` as one zstd frame at [`LEVEL`], with its content size in the frame header.
pub fn compress(bytes: &[u8]) -> io::Result<Vec<u8>> {
    compress_at(bytes, LEVEL)
}

/// `bytes` as one zstd frame at `level` (the codec bench compares levels).
pub fn compress_at(bytes: &[u8], level: i32) -> io::Result<Vec<u8>> {
    zstd::bulk::compress(bytes, level)
}

/// A reader of what `frame` decompresses to. Data that is not zstd (a truncated or damaged
/// frame, trailing garbage after it) is an error of the reads, never a panic; how much is read
/// is the caller's bound.
pub fn decoder(frame: &[u8]) -> io::Result<impl Read + '_> {
    zstd::stream::read::Decoder::with_buffer(frame)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Everything `frame` decompresses to, or the first error.
    fn decompress(frame: &[u8]) -> io::Result<Vec<u8>> {
        let mut out = Vec::new();
        decoder(frame)?.read_to_end(&mut out)?;
        Ok(out)
    }

    /// Bytes that compress (text-like, repetitive) but are not trivial.
    fn sample() -> Vec<u8> {
        (0..200_000u32)
            .flat_map(|i| format!("symbol_{} ", i % 977).into_bytes())
            .collect()
    }

    #[test]
    fn blobs_round_trip_as_one_smaller_frame() {
        let bytes = sample();
        let frame = compress(&bytes).unwrap();
        assert_eq!(frame[..4], FRAME_MAGIC);
        assert!(
            frame.len() * 4 < bytes.len(),
            "{} bytes compressed to {}",
            bytes.len(),
            frame.len()
        );
        assert_eq!(decompress(&frame).unwrap(), bytes);
        // The frame header carries the content size.
        assert_eq!(
            zstd::zstd_safe::get_frame_content_size(&frame)
                .ok()
                .flatten(),
            Some(bytes.len() as u64)
        );
    }

    #[test]
    fn an_empty_blob_is_a_frame_too() {
        let frame = compress(b"").unwrap();
        assert_eq!(frame[..4], FRAME_MAGIC);
        assert_eq!(decompress(&frame).unwrap(), b"");
    }

    #[test]
    fn every_level_the_bench_compares_decodes_with_the_same_reader() {
        let bytes = sample();
        for level in [1, 3, 6, 9, 19] {
            let frame = compress_at(&bytes, level).unwrap();
            assert_eq!(decompress(&frame).unwrap(), bytes, "level {level}");
        }
    }

    #[test]
    fn concatenated_frames_decode_to_their_contents_in_order() {
        let (first, second) = (sample(), b"a second frame".to_vec());
        let frames = [compress(&first).unwrap(), compress_at(&second, 19).unwrap()].concat();
        assert_eq!(decompress(&frames).unwrap(), [first, second].concat());
    }

    #[test]
    fn damaged_frames_are_read_errors() {
        let bytes = sample();
        let frame = compress(&bytes).unwrap();
        // Not zstd at all: the raw blob a version-1 remote held.
        assert!(decompress(&bytes).is_err());
        // An empty object is no frame (an empty blob is a frame of its own, above).
        assert!(decompress(b"").is_err());
        // Cut short.
        assert!(decompress(&frame[..frame.len() / 2]).is_err());
        assert!(decompress(&frame[..frame.len() - 1]).is_err());
        // Garbage after a whole frame.
        let trailing = [&frame[..], b"garbage"].concat();
        assert!(decompress(&trailing).is_err());
        // A damaged header (the block size made impossible).
        let mut header = frame.clone();
        header[4] = 0xff;
        header[5] = 0xff;
        assert!(decompress(&header).map(|out| out != bytes).unwrap_or(true));
    }
}
