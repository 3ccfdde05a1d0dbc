//! How a maintenance commit failed: whether its swap of the catalog's
//! pointer happened, which decides whether the files it wrote may go.

use crate::Error;

/// Whether a failed [`super::Committer::commit`] moved the catalog's pointer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Swap {
    /// It did not: nothing references the files the commit wrote, which
    /// may be deleted.
    NotDone,
    /// It did: the commit went through, only what came after it failed.
    Done,
    /// Unknown (the answer was lost, and the catalog does not show the
    /// swap landed: a statement cut off may still land): every file the
    /// commit wrote must stay (the orphan sweep takes them if it did not).
    Unknown,
}

/// A [`super::Committer::commit`] that failed.
#[derive(Debug)]
pub struct Failed {
    pub error: Error,
    pub swap: Swap,
}

impl Failed {
    /// The files the commit wrote may be deleted: it provably did not land.
    pub fn not_done(&self) -> bool {
        self.swap == Swap::NotDone
    }
}
