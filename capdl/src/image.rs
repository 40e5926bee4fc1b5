//! The boot image the capDL loader embeds, written by `cleave-system` at build time and
//! read by the loader in place (no heap): the encoded specification, then named files
//! (every ELF image the spec names and every file a frame is filled from).
//!
//! Layout (little-endian, each part padded to 8 bytes): [`MAGIC`], the specification as a
//! part, the number of files (u64), then per file its name as a part and its contents as a
//! part. A part is its length (u64) and its bytes.

/// The image magic (its last two bytes are the format's version).
pub const MAGIC: &[u8; 8] = b"CLVIMG01";

/// Why an image does not read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ImageError {
    /// It does not start with [`MAGIC`].
    NoMagic,
    /// A length points past the end.
    Truncated,
}

/// A boot image, read in place.
#[derive(Clone, Copy, Debug)]
pub struct BootImage<'a> {
    /// The encoded specification (`binary::EncodedSpec::new` reads it).
    pub spec: &'a [u8],
    /// How many files follow.
    pub count: u64,
    files: &'a [u8],
}

/// The part at `*at` (its length, then its bytes); moves `*at` past it and its padding.
fn take<'a>(bytes: &'a [u8], at: &mut usize) -> Option<&'a [u8]> {
    let len =
        usize::try_from(u64::from_le_bytes(bytes.get(*at..at.checked_add(8)?)?.try_into().ok()?)).ok()?;
    let start = *at + 8;
    let part = bytes.get(start..start.checked_add(len)?)?;
    *at = (start + len).checked_next_multiple_of(8)?;
    Some(part)
}

impl<'a> BootImage<'a> {
    /// Reads the header and the specification; files are found by [`Self::file`].
    pub fn parse(bytes: &'a [u8]) -> Result<Self, ImageError> {
        if bytes.get(..8) != Some(&MAGIC[..]) {
            return Err(ImageError::NoMagic);
        }
        let mut at = 8;
        let spec = take(bytes, &mut at).ok_or(ImageError::Truncated)?;
        let count = bytes.get(at..at + 8).ok_or(ImageError::Truncated)?;
        let count = u64::from_le_bytes(count.try_into().map_err(|_| ImageError::Truncated)?);
        Ok(Self { spec, count, files: &bytes[at + 8..] })
    }

    /// The files in order: (name, contents). Stops at the first part that does not read.
    pub fn files(&self) -> impl Iterator<Item = (&'a [u8], &'a [u8])> + 'a {
        let (files, count) = (self.files, self.count);
        let mut at = 0usize;
        (0..count).map_while(move |_| Some((take(files, &mut at)?, take(files, &mut at)?)))
    }

    /// The contents of the file named `name`.
    pub fn file(&self, name: &str) -> Option<&'a [u8]> {
        self.files().find(|(n, _)| *n == name.as_bytes()).map(|(_, contents)| contents)
    }
}

/// Writes an image of `spec` and `files` (name, contents).
#[cfg(feature = "alloc")]
pub fn write<'f>(
    spec: &[u8],
    files: impl ExactSizeIterator<Item = (&'f str, &'f [u8])>,
) -> alloc::vec::Vec<u8> {
    fn part(out: &mut alloc::vec::Vec<u8>, bytes: &[u8]) {
        out.extend_from_slice(&(bytes.len() as u64).to_le_bytes());
        out.extend_from_slice(bytes);
        out.resize(out.len().next_multiple_of(8), 0);
    }
    let mut out = MAGIC.to_vec();
    part(&mut out, spec);
    out.extend_from_slice(&(files.len() as u64).to_le_bytes());
    for (name, contents) in files {
        part(&mut out, name.as_bytes());
        part(&mut out, contents);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_image_reads_back_what_was_written() {
        let files: [(&str, &[u8]); 3] =
            [("loader", b"\x7fELF1"), ("vmm-alice.config", b"name=alice"), ("empty", b"")];
        let bytes = write(b"spec bytes", files.iter().copied());
        assert_eq!(bytes.len() % 8, 0);
        let image = BootImage::parse(&bytes).unwrap();
        assert_eq!((image.spec, image.count), (&b"spec bytes"[..], 3));
        for (name, contents) in files {
            assert_eq!(image.file(name), Some(contents));
        }
        assert_eq!(image.file("missing"), None);
        assert_eq!(image.files().count(), 3);
    }

    #[test]
    fn hostile_images_are_refused_or_end_early() {
        assert_eq!(BootImage::parse(b"NOTANIMG").unwrap_err(), ImageError::NoMagic);
        let good = write(b"s", [("a", &b"x"[..])].into_iter());
        // Cut anywhere inside the header: refused.
        for cut in 8..24 {
            assert_eq!(BootImage::parse(&good[..cut]).unwrap_err(), ImageError::Truncated, "cut at {cut}");
        }
        // A spec length near 2^64, a file count far past the files, a file length past the end.
        let mut huge = MAGIC.to_vec();
        huge.extend_from_slice(&u64::MAX.to_le_bytes());
        assert_eq!(BootImage::parse(&huge).unwrap_err(), ImageError::Truncated);
        let mut many = good.clone();
        many[24..32].copy_from_slice(&u64::MAX.to_le_bytes());
        let image = BootImage::parse(&many).unwrap();
        assert_eq!(image.files().count(), 1, "the count is not trusted past the bytes");
        let mut long = good.clone();
        let name_len_at = 32;
        long[name_len_at..name_len_at + 8].copy_from_slice(&(u64::MAX - 3).to_le_bytes());
        assert_eq!(BootImage::parse(&long).unwrap().file("a"), None);
    }
}
