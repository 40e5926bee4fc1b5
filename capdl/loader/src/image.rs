//! The boot image the loader embeds (`cleave_capdl::image`): the encoded specification,
//! read in place, and the named files (component programs, frame contents) after it.

use crate::error::LoadError;
use cleave_capdl::binary::EncodedSpec;
use cleave_capdl::image::{BootImage, ImageError};

/// The boot image: the spec, then the named files.
pub struct Image<'a> {
    /// The specification to build.
    pub spec: EncodedSpec<'a>,
    files: BootImage<'a>,
    /// How many files it holds.
    pub count: u64,
}

impl<'a> Image<'a> {
    /// Checks the image and its specification.
    pub fn parse(bytes: &'a [u8]) -> Result<Self, LoadError> {
        let files = BootImage::parse(bytes).map_err(|e| match e {
            ImageError::NoMagic => LoadError::NoImage,
            ImageError::Truncated => LoadError::ImageTruncated,
        })?;
        let spec = EncodedSpec::new(files.spec).map_err(|_| LoadError::CorruptSpec)?;
        Ok(Self { spec, files, count: files.count })
    }

    /// The file named `name` (a program's ELF image, a frame's contents).
    pub fn file(&self, name: &str) -> Option<&'a [u8]> {
        self.files.file(name)
    }
}
