//! The definitions in effect, shared by a running server: changed one
//! change at a time, read without waiting, every stored change recorded.

use std::sync::Arc;

use super::definitions::{ApiDefinitions, Definitions};
use crate::Result;

/// The definitions in effect, shared by the server: changed one change at
/// a time ([`Shared::change`] waits for the change before it), read
/// without waiting ([`Shared::read`] answers the definitions as of the
/// last stored change, even while a slow change, one waiting on the
/// catalog say, is under way).
#[derive(Debug)]
pub struct Shared {
    changing: tokio::sync::Mutex<Definitions>,
    current: std::sync::RwLock<Arc<Definitions>>,
}

impl Shared {
    pub fn new(definitions: Definitions) -> Shared {
        Shared {
            current: std::sync::RwLock::new(Arc::new(definitions.clone())),
            changing: tokio::sync::Mutex::new(definitions),
        }
    }

    /// The definitions as of the last stored change.
    pub fn read(&self) -> Arc<Definitions> {
        self.current.read().expect("never poisoned").clone()
    }

    /// Waits for the change under way, if any; the guard is the only way
    /// to store definitions until it is dropped.
    pub async fn change(&self) -> Change<'_> {
        Change {
            working: self.changing.lock().await,
            current: &self.current,
        }
    }
}

/// One change of the definitions under way (see [`Shared::change`]).
pub struct Change<'a> {
    working: tokio::sync::MutexGuard<'a, Definitions>,
    current: &'a std::sync::RwLock<Arc<Definitions>>,
}

impl Change<'_> {
    /// [`Definitions::store`], then what [`Shared::read`] answers; the
    /// change is recorded ([`super::changes`]).
    pub fn store(&mut self, api: ApiDefinitions) -> Result<()> {
        let before = self.working.api().clone();
        self.working.store(api)?;
        let log = super::changes::ChangeLog::new(self.working.data_dir());
        if let Err(e) = log.record(&before, self.working.api()) {
            // The change itself is stored; only its record is missing.
            tracing::warn!(error = %e, "could not record a change of the definitions");
        }
        *self.current.write().expect("never poisoned") = Arc::new(self.working.clone());
        Ok(())
    }
}

impl Change<'_> {
    /// Stores `api`, then runs `apply` (what makes the running parts
    /// match it); if that fails, the definitions from before are stored
    /// again and its error returned. Stored first, so a crash from here
    /// on restarts with `api`, which `apply` must therefore be the same as.
    pub async fn store_then<T>(
        &mut self,
        api: ApiDefinitions,
        apply: impl std::future::Future<Output = Result<T>>,
    ) -> Result<T> {
        let previous = self.working.api().clone();
        self.store(api)?;
        match apply.await {
            Ok(done) => Ok(done),
            Err(e) => {
                self.store(previous)?;
                Err(e)
            }
        }
    }
}

impl Change<'_> {
    /// Makes `definitions` (the file read again, see
    /// `control::reload`) the ones in effect; the API's stay as stored.
    pub fn replace(&mut self, definitions: Definitions) {
        *self.working = definitions;
        *self.current.write().expect("never poisoned") = Arc::new(self.working.clone());
    }
}

impl std::ops::Deref for Change<'_> {
    type Target = Definitions;

    fn deref(&self) -> &Definitions {
        &self.working
    }
}
