//! Hashes.

use crate::decl::Decl;

/// The hashes commands.
pub static COMMANDS: &[Decl] = &[];
