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

#[cfg(test)]
mod tests {
    use super::super::testing::{error, found, parse};
    use super::*;

    #[test]
    fn a_root_task_the_build_makes_is_accepted() {
        let file = parse(&format!("[system]\nroot = \"{}\"\n", programs::ROOT_PROGRAMS[0]));
        let mut errors = Vec::new();
        check(&file, &mut errors);
        assert_eq!(errors, []);
        // Without `[system]` there is no root to check.
        check(&parse("[components.a]\n"), &mut errors);
        assert_eq!(errors, []);
    }

    #[test]
    fn a_root_task_given_as_a_path_or_unknown_is_refused() {
        for (root, message) in [
            ("\"target/loader\"", "`target/loader` is not a program name"),
            ("\"guest-hello\"", "`guest-hello` is no root task the build makes"),
        ] {
            let text = format!("[system]\nroot = {root}\n");
            let mut errors = Vec::new();
            check(&parse(&text), &mut errors);
            assert_eq!(found(&errors, &text), [error("system.root", root, message)]);
        }
    }
}
