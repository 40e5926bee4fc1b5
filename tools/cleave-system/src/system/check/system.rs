//! `[system]`: the root task the kernel boots.

use super::check_program;
use crate::error::SystemError;
use crate::schema::SystemFile;
use crate::system::programs;

/// The root task is a program the build makes as a root task.
pub(super) fn check(file: &SystemFile, errors: &mut Vec<SystemError>) {
    if let Some(s) = &file.system {
        check_program("system.root".into(), &s.root, programs::ROOT_PROGRAMS, "root task", errors);
    }
}
