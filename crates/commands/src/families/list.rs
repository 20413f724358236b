//! Lists.

use crate::decl::Decl;

/// The lists commands.
pub static COMMANDS: &[Decl] = &[];
