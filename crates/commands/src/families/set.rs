//! Sets.

use crate::decl::Decl;

/// The sets commands.
pub static COMMANDS: &[Decl] = &[];
