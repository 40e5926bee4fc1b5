//! Writing `newc` cpio archives, the format Linux unpacks as an initramfs
//! (`Documentation/driver-api/early-userspace/buffer-format.rst`).
//!
//! Each member is a 110-byte ASCII header (the magic `070701` and thirteen 8-digit hex
//! fields), its NUL-terminated name padded to four bytes, and its data padded to four
//! bytes; a member named `TRAILER!!!` ends the archive. Every member here is owned by root
//! with time 0 and its own inode number, so the same members always give the same bytes.

/// What a member is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Kind {
    /// A directory (mode 0755).
    Directory,
    /// A regular file with these contents (mode 0755 if executable, else 0644).
    File { data: Vec<u8>, executable: bool },
    /// A symbolic link to this target.
    Symlink(String),
    /// A character device node (mode 0600).
    CharDevice { major: u32, minor: u32 },
}

/// One member of the archive.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    /// Its path inside the archive, without a leading `/` (`bin/busybox`).
    pub path: String,
    /// What it is.
    pub kind: Kind,
}

impl Entry {
    /// A directory.
    pub fn directory(path: &str) -> Entry {
        Entry { path: path.into(), kind: Kind::Directory }
    }

    /// A regular file.
    pub fn file(path: &str, data: Vec<u8>, executable: bool) -> Entry {
        Entry { path: path.into(), kind: Kind::File { data, executable } }
    }

    /// A symbolic link.
    pub fn symlink(path: &str, target: &str) -> Entry {
        Entry { path: path.into(), kind: Kind::Symlink(target.into()) }
    }

    /// A character device node.
    pub fn char_device(path: &str, major: u32, minor: u32) -> Entry {
        Entry { path: path.into(), kind: Kind::CharDevice { major, minor } }
    }
}

const MAGIC: &str = "070701";
const TRAILER: &str = "TRAILER!!!";

/// The archive holding `entries` in order, then the trailer. A directory must come before
/// what it holds (Linux does not create missing parents).
pub fn archive(entries: &[Entry]) -> Vec<u8> {
    let mut out = Vec::new();
    for (index, entry) in entries.iter().enumerate() {
        let (mode, nlink, data, device): (u32, u32, &[u8], (u32, u32)) = match &entry.kind {
            Kind::Directory => (0o040_755, 2, &[], (0, 0)),
            Kind::File { data, executable } => {
                (if *executable { 0o100_755 } else { 0o100_644 }, 1, data, (0, 0))
            }
            Kind::Symlink(target) => (0o120_777, 1, target.as_bytes(), (0, 0)),
            Kind::CharDevice { major, minor } => (0o020_600, 1, &[], (*major, *minor)),
        };
        // Inode numbers start at 1 (0 is the trailer's); no two members share one, so Linux
        // takes none of them for a hard link.
        let inode = u32::try_from(index + 1).expect("fewer than 2^32 members");
        member(&mut out, &entry.path, inode, mode, nlink, device, data);
    }
    member(&mut out, TRAILER, 0, 0, 1, (0, 0), &[]);
    out
}

/// Appends one member: header, name, padding, data, padding.
fn member(out: &mut Vec<u8>, name: &str, inode: u32, mode: u32, nlink: u32, rdev: (u32, u32), data: &[u8]) {
    let size = u32::try_from(data.len()).expect("a newc member holds less than 4 GiB");
    let name_size = u32::try_from(name.len() + 1).expect("a short name");
    let fields = [inode, mode, 0, 0, nlink, 0, size, 0, 0, rdev.0, rdev.1, name_size, 0];
    out.extend_from_slice(MAGIC.as_bytes());
    for field in fields {
        out.extend_from_slice(format!("{field:08X}").as_bytes());
    }
    out.extend_from_slice(name.as_bytes());
    out.push(0);
    pad(out);
    out.extend_from_slice(data);
    pad(out);
}

/// Pads with NULs to a multiple of four bytes.
fn pad(out: &mut Vec<u8>) {
    while !out.len().is_multiple_of(4) {
        out.push(0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The header fields of `text` at `at` (after the magic).
    fn fields(bytes: &[u8], at: usize) -> Vec<u32> {
        assert_eq!(&bytes[at..at + 6], MAGIC.as_bytes(), "magic at {at}");
        (0..13)
            .map(|i| {
                let start = at + 6 + 8 * i;
                u32::from_str_radix(std::str::from_utf8(&bytes[start..start + 8]).unwrap(), 16).unwrap()
            })
            .collect()
    }

    #[test]
    fn a_file_member_is_byte_for_byte_the_newc_layout() {
        let bytes = archive(&[Entry::file("init", b"hi\n".to_vec(), true)]);
        let mut expected = String::from("070701");
        // inode, mode, uid, gid, nlink, mtime, size, devmajor, devminor, rdevmajor,
        // rdevminor, namesize (with its NUL), check.
        for field in ["00000001", "000081ED", "00000000", "00000000", "00000001", "00000000", "00000003"] {
            expected.push_str(field);
        }
        for field in ["00000000", "00000000", "00000000", "00000000", "00000005", "00000000"] {
            expected.push_str(field);
        }
        let mut expected = expected.into_bytes();
        assert_eq!(expected.len(), 110);
        // Name and NUL end at 115: one byte of padding; data ends at 119: one more.
        expected.extend_from_slice(b"init\0\0hi\n\0");
        assert_eq!(&bytes[..120], &expected[..]);
        let trailer = fields(&bytes, 120);
        assert_eq!(trailer, [0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 11, 0]);
        assert_eq!(&bytes[230..241], b"TRAILER!!!\0");
        assert_eq!(bytes.len(), 244);
    }

    #[test]
    fn every_member_starts_on_four_bytes_with_its_kind_in_the_mode() {
        let entries = [
            Entry::directory("bin"),
            Entry::file("bin/busybox", vec![0x7f; 5], true),
            Entry::symlink("bin/sh", "busybox"),
            Entry::char_device("dev/console", 5, 1),
            Entry::file("etc/x", vec![1, 2], false),
        ];
        let bytes = archive(&entries);
        let mut at = 0;
        let mut seen = Vec::new();
        loop {
            assert_eq!(at % 4, 0);
            let f = fields(&bytes, at);
            let name_start = at + 110;
            let name = std::str::from_utf8(&bytes[name_start..name_start + f[11] as usize - 1]).unwrap();
            let data_start = (name_start + f[11] as usize).next_multiple_of(4);
            let data = &bytes[data_start..data_start + f[6] as usize];
            seen.push((name.to_string(), f[0], f[1], f[4], (f[9], f[10]), data.to_vec()));
            at = (data_start + f[6] as usize).next_multiple_of(4);
            if name == TRAILER {
                break;
            }
        }
        assert_eq!(at, bytes.len());
        let expect = [
            ("bin", 1, 0o040_755, 2, (0, 0), vec![]),
            ("bin/busybox", 2, 0o100_755, 1, (0, 0), vec![0x7f; 5]),
            ("bin/sh", 3, 0o120_777, 1, (0, 0), b"busybox".to_vec()),
            ("dev/console", 4, 0o020_600, 1, (5, 1), vec![]),
            ("etc/x", 5, 0o100_644, 1, (0, 0), vec![1, 2]),
            (TRAILER, 0, 0, 1, (0, 0), vec![]),
        ];
        assert_eq!(seen.len(), expect.len());
        for (got, want) in seen.iter().zip(expect) {
            assert_eq!(*got, (want.0.to_string(), want.1, want.2, want.3, want.4, want.5));
        }
        // The same members give the same bytes.
        assert_eq!(archive(&entries), bytes);
    }
}
