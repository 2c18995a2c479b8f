//! Rejects a second concurrent call for the same object: the first holds a guard until it
//! returns, and a duplicate gets ABORTED at once (the sidecars retry), as the CSI spec asks.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use crate::error::{Error, Result};

#[derive(Clone, Default)]
pub struct InFlight {
    keys: Arc<Mutex<HashSet<String>>>,
}

/// Held while a call runs; dropping it (on return or panic) frees the key.
pub struct Guard {
    keys: Arc<Mutex<HashSet<String>>>,
    key: String,
}

impl InFlight {
    /// Takes `key` (for example `volume/vol-…`), or fails with ABORTED naming `what`.
    pub fn start(&self, key: String, what: &str) -> Result<Guard> {
        let mut keys = self.keys.lock().unwrap_or_else(|p| p.into_inner());
        if !keys.insert(key.clone()) {
            return Err(Error::Aborted(format!(
                "an operation on {what} is already in progress; retry later"
            )));
        }
        Ok(Guard {
            keys: self.keys.clone(),
            key,
        })
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        let mut keys = self.keys.lock().unwrap_or_else(|p| p.into_inner());
        keys.remove(&self.key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_duplicate_is_aborted_until_the_first_ends() {
        let f = InFlight::default();
        let g = f.start("volume/vol-1".into(), "volume vol-1").expect("first call runs");
        let dup = f.start("volume/vol-1".into(), "volume vol-1");
        assert!(matches!(dup, Err(Error::Aborted(_))));
        assert!(
            f.start("volume/vol-2".into(), "volume vol-2").is_ok(),
            "other keys are free"
        );
        drop(g);
        assert!(f.start("volume/vol-1".into(), "volume vol-1").is_ok());
    }
}
