//! Paths as Xen's xenstored accepts them: absolute (`/local/domain/1/name`), relative to
//! the connection's home `/local/domain/<domid>`, or, for watches only, the special
//! `@introduceDomain` and `@releaseDomain`.

use crate::wire::Error;

/// Longest absolute path (`XENSTORE_ABS_PATH_MAX`).
pub const ABS_PATH_MAX: usize = 3072;
/// Longest relative path (`XENSTORE_REL_PATH_MAX`).
pub const REL_PATH_MAX: usize = 2048;
/// Fired when a domain is introduced.
pub const INTRODUCE_DOMAIN: &str = "@introduceDomain";
/// Fired when a domain is released.
pub const RELEASE_DOMAIN: &str = "@releaseDomain";

/// Where a path is used.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PathKind {
    /// Names a node.
    Node,
    /// Names what a watch watches: a node or a special path.
    Watch,
}

fn valid_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'/' | b'_' | b'@')
}

/// Checks `path` as Xen does: only letters, digits and `-/_@`; no empty component (`//`);
/// no trailing `/` except the root itself; not empty; within the length limits.
pub fn check(path: &str, kind: PathKind) -> Result<(), Error> {
    if kind == PathKind::Watch && (path == INTRODUCE_DOMAIN || path == RELEASE_DOMAIN) {
        return Ok(());
    }
    let bytes = path.as_bytes();
    let absolute = bytes.first() == Some(&b'/');
    let limit = if absolute { ABS_PATH_MAX } else { REL_PATH_MAX };
    if bytes.is_empty() || bytes.len() > limit || bytes[0] == b'@' || !bytes.iter().all(|&b| valid_char(b)) {
        return Err(Error::Inval);
    }
    if path.contains("//") || (path.len() > 1 && path.ends_with('/')) {
        return Err(Error::Inval);
    }
    Ok(())
}

/// The home of domain `domid`'s relative paths.
pub fn home(domid: u32, out: &mut [u8]) -> Result<usize, Error> {
    let mut w = Writer { out, at: 0 };
    w.push(b"/local/domain/")?;
    w.number(domid)?;
    Ok(w.at)
}

/// Makes `path` (already checked) absolute for a connection of domain `domid`, in `out`.
/// Special watch paths are returned as they are.
pub fn resolve<'b>(path: &str, domid: u32, out: &'b mut [u8]) -> Result<&'b str, Error> {
    let mut w = Writer { out, at: 0 };
    if !path.starts_with('/') && !path.starts_with('@') {
        w.push(b"/local/domain/")?;
        w.number(domid)?;
        w.push(b"/")?;
    }
    w.push(path.as_bytes())?;
    let len = w.at;
    if len > ABS_PATH_MAX {
        return Err(Error::Inval);
    }
    core::str::from_utf8(&out[..len]).map_err(|_| Error::Inval)
}

/// The parent of an absolute path (`/a/b` → `/a`, `/a` → `/`); `None` for the root.
pub fn parent(path: &str) -> Option<&str> {
    if path == "/" {
        return None;
    }
    match path.rfind('/') {
        Some(0) => Some("/"),
        Some(i) => Some(&path[..i]),
        None => None,
    }
}

/// Whether absolute path `path` is `ancestor` or lies below it (watch matching).
pub fn is_within(path: &str, ancestor: &str) -> bool {
    if ancestor == "/" {
        return path.starts_with('/');
    }
    path == ancestor || (path.starts_with(ancestor) && path.as_bytes().get(ancestor.len()) == Some(&b'/'))
}

struct Writer<'b> {
    out: &'b mut [u8],
    at: usize,
}

impl Writer<'_> {
    fn push(&mut self, bytes: &[u8]) -> Result<(), Error> {
        let end = self.at + bytes.len();
        self.out.get_mut(self.at..end).ok_or(Error::TooBig)?.copy_from_slice(bytes);
        self.at = end;
        Ok(())
    }

    fn number(&mut self, n: u32) -> Result<(), Error> {
        self.push(crate::decimal(n, &mut [0; 10]))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_follow_xens_rules() {
        for good in ["/", "/local", "/local/domain/0/name", "vm/uuid", "a_b-c@d", "x/y"] {
            assert_eq!(check(good, PathKind::Node), Ok(()), "{good}");
        }
        for bad in ["", "/a//b", "/a/", "a/", "/a b", "/ä", "@introduceDomain", "/a\n"] {
            assert_eq!(check(bad, PathKind::Node), Err(Error::Inval), "{bad:?}");
        }
        assert_eq!(check("@introduceDomain", PathKind::Watch), Ok(()));
        assert_eq!(check("@releaseDomain", PathKind::Watch), Ok(()));
        assert_eq!(check("@other", PathKind::Watch), Err(Error::Inval));
        let long = "/a".repeat(ABS_PATH_MAX / 2 + 1);
        assert_eq!(check(&long, PathKind::Node), Err(Error::Inval));
        let relative = "a/".repeat(REL_PATH_MAX / 2) + "a";
        assert_eq!(check(&relative, PathKind::Node), Err(Error::Inval));
    }

    #[test]
    fn relative_paths_live_under_the_domain_home() {
        let mut buf = [0u8; 64];
        assert_eq!(resolve("device/vif", 7, &mut buf), Ok("/local/domain/7/device/vif"));
        assert_eq!(resolve("/vm", 7, &mut buf), Ok("/vm"));
        assert_eq!(resolve("@releaseDomain", 7, &mut buf), Ok("@releaseDomain"));
        let n = home(4294967295, &mut buf).unwrap();
        assert_eq!(&buf[..n], b"/local/domain/4294967295");
        let mut tiny = [0u8; 8];
        assert_eq!(resolve("x", 1, &mut tiny), Err(Error::TooBig));
    }

    #[test]
    fn parents_and_watch_scopes() {
        assert_eq!(parent("/a/b"), Some("/a"));
        assert_eq!(parent("/a"), Some("/"));
        assert_eq!(parent("/"), None);
        assert!(is_within("/a/b", "/a") && is_within("/a", "/a") && is_within("/a", "/"));
        assert!(!is_within("/ab", "/a") && !is_within("/", "/a"));
    }
}
