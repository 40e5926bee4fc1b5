//! Node permissions as Xen defines them: a list of entries, each a letter and a domain id
//! (`n` none, `r` read, `w` write, `b` both). The first entry names the owner, who may do
//! anything, and its letter is what every domain not listed after it may do. Domain 0 (the
//! privileged toolstack domain) may do anything.

use crate::wire::Error;

/// What an entry allows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "alloc", derive(serde::Serialize, serde::Deserialize))]
pub enum Access {
    /// `n`.
    None,
    /// `r`.
    Read,
    /// `w`.
    Write,
    /// `b`.
    Both,
}

impl Access {
    fn letter(self) -> u8 {
        match self {
            Self::None => b'n',
            Self::Read => b'r',
            Self::Write => b'w',
            Self::Both => b'b',
        }
    }

    fn allows(self, want: Access) -> bool {
        match want {
            Access::None => true,
            Access::Read => matches!(self, Access::Read | Access::Both),
            Access::Write => matches!(self, Access::Write | Access::Both),
            Access::Both => self == Access::Both,
        }
    }
}

/// One permission entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "alloc", derive(serde::Serialize, serde::Deserialize))]
pub struct Perm {
    /// What it allows.
    pub access: Access,
    /// Which domain.
    pub domid: u32,
}

impl Perm {
    /// Reads `r5`, `n0`, …
    pub fn parse(text: &str) -> Result<Self, Error> {
        let (letter, digits) = text.split_at_checked(1).ok_or(Error::Inval)?;
        let access = match letter {
            "n" => Access::None,
            "r" => Access::Read,
            "w" => Access::Write,
            "b" => Access::Both,
            _ => return Err(Error::Inval),
        };
        if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return Err(Error::Inval);
        }
        let domid = digits.parse().map_err(|_| Error::Inval)?;
        Ok(Self { access, domid })
    }

    /// Writes the entry (`b12`) into `out`; returns its length.
    pub fn write(self, out: &mut [u8; 11]) -> usize {
        out[0] = self.access.letter();
        let mut buf = [0; 10];
        let digits = crate::decimal(self.domid, &mut buf);
        out[1..1 + digits.len()].copy_from_slice(digits);
        1 + digits.len()
    }
}

/// Reads an `XS_SET_PERMS` list (entries each ended by a NUL) into `out`; returns how many.
/// There must be at least one entry (the owner); more than `out` holds is a quota
/// exceeded, `ENOSPC`.
pub fn parse_list(bytes: &[u8], out: &mut [Perm]) -> Result<usize, Error> {
    if bytes.last() != Some(&0) {
        return Err(Error::Inval);
    }
    let mut n = 0;
    for entry in bytes[..bytes.len() - 1].split(|&b| b == 0) {
        let text = core::str::from_utf8(entry).map_err(|_| Error::Inval)?;
        let perm = Perm::parse(text)?;
        *out.get_mut(n).ok_or(Error::NoSpc)? = perm;
        n += 1;
    }
    if n == 0 { Err(Error::Inval) } else { Ok(n) }
}

/// Whether domain `domid` may do `want` to a node with permissions `perms` (non-empty).
pub fn allowed(perms: &[Perm], domid: u32, want: Access) -> bool {
    let Some(owner) = perms.first() else { return domid == 0 };
    if domid == 0 || domid == owner.domid {
        return true;
    }
    let access = perms[1..].iter().find(|p| p.domid == domid).map_or(owner.access, |p| p.access);
    access.allows(want)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(text: &str) -> Perm {
        Perm::parse(text).unwrap()
    }

    #[test]
    fn entries_read_and_write_back() {
        for text in ["n0", "r5", "w12", "b4294967295"] {
            let mut buf = [0u8; 11];
            let n = p(text).write(&mut buf);
            assert_eq!(&buf[..n], text.as_bytes());
        }
        for bad in ["", "r", "x1", "r-1", "r1a", "r4294967296", "R1"] {
            assert_eq!(Perm::parse(bad), Err(Error::Inval), "{bad:?}");
        }
    }

    #[test]
    fn lists_need_terminators_and_room() {
        let mut out = [p("n0"); 2];
        assert_eq!(parse_list(b"n1\0r2\0", &mut out), Ok(2));
        assert_eq!(out, [p("n1"), p("r2")]);
        assert_eq!(parse_list(b"n1\0r2", &mut out), Err(Error::Inval));
        assert_eq!(parse_list(b"\0", &mut out), Err(Error::Inval));
        assert_eq!(parse_list(b"n1\0r2\0w3\0", &mut out), Err(Error::NoSpc));
    }

    #[test]
    fn owner_default_and_listed_domains() {
        // Owned by 1; everyone else may read; 2 may do nothing; 3 may write only.
        let perms = [p("r1"), p("n2"), p("w3")];
        assert!(allowed(&perms, 1, Access::Both));
        assert!(allowed(&perms, 0, Access::Both));
        assert!(allowed(&perms, 9, Access::Read) && !allowed(&perms, 9, Access::Write));
        assert!(!allowed(&perms, 2, Access::Read));
        assert!(allowed(&perms, 3, Access::Write) && !allowed(&perms, 3, Access::Read));
    }
}
