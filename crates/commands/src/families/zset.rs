//! Sorted sets.

use crate::decl::Decl;

/// The sorted sets commands.
pub static COMMANDS: &[Decl] = &[];
