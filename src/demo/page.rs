//! What the demo's pods do with their volumes: the first writer puts a page there (a file on a
//! filesystem, the first bytes of a raw device), and a volume made from a source must already
//! hold it.

use std::io::{Read, Seek, Write};
use std::path::Path;

use super::PAGE;
use super::player::Player;
use super::report::Event;
use crate::error::{Error, Result};
use crate::manifest::ClaimSource;

impl Player {
    /// What the pod does with its volume: the first writer puts the page there; a volume made
    /// from a source must already hold it.
    pub(super) async fn use_volume(
        &mut self,
        i: usize,
        target: &Path,
        read_only: bool,
        shown_at: Option<&str>,
    ) -> Result<()> {
        let claim = self.plan.claims[i].clone();
        let (id, has_page) = match &self.volumes[i] {
            Some(s) => (s.volume.volume_id.clone(), s.has_page),
            None => return Ok(()),
        };
        let made = match claim.source {
            Some(ClaimSource::Snapshot(_)) => Some("restore"),
            Some(ClaimSource::Claim(_)) => Some("clone"),
            None => None,
        };
        let object = if claim.block {
            shown_at.unwrap_or("the device").to_owned()
        } else {
            "index.html".to_owned()
        };
        if has_page {
            let back = read_page(target, claim.block);
            if back.as_deref() != Some(PAGE) {
                return Err(Error::Internal(format!(
                    "volume {id} of claim {} does not hold the page it should",
                    claim.key()
                )));
            }
            self.report.show(Event::PageRead { object: &object, made });
            return Ok(());
        }
        if read_only || shown_at.is_none() {
            return Ok(());
        }
        write_page(target, claim.block)?;
        let back = read_page(target, claim.block);
        if back.as_deref() != Some(PAGE) {
            return Err(Error::Internal(
                "the page read back differs from the one written".into(),
            ));
        }
        if let Some(s) = self.volumes[i].as_mut() {
            s.has_page = true;
        }
        self.report.show(Event::PageWritten {
            object: &object,
            block: claim.block,
            bytes: PAGE.len(),
        });
        let usage = self.stats(&id, target).await?;
        self.report.show(Event::Stats(usage));
        Ok(())
    }
}

pub(super) fn write_page(target: &Path, block: bool) -> Result<()> {
    if block {
        let mut dev = std::fs::OpenOptions::new()
            .write(true)
            .open(target)
            .map_err(|e| Error::internal(format!("cannot open {}", target.display()), e))?;
        dev.write_all(PAGE.as_bytes())
            .and_then(|()| dev.sync_all())
            .map_err(|e| Error::internal("cannot write the page to the device", e))
    } else {
        // Synced, file and directory, as an application must before a snapshot for the snapshot
        // to hold its data (EBS snapshots are crash-consistent, like ours).
        let page = target.join("index.html");
        std::fs::write(&page, PAGE)
            .and_then(|()| std::fs::File::open(&page)?.sync_all())
            .and_then(|()| std::fs::File::open(target)?.sync_all())
            .map_err(|e| Error::internal("cannot write the nginx page", e))
    }
}

pub(super) fn read_page(target: &Path, block: bool) -> Option<String> {
    if block {
        let mut dev = std::fs::File::open(target).ok()?;
        dev.rewind().ok()?;
        let mut buf = vec![0u8; PAGE.len()];
        dev.read_exact(&mut buf).ok()?;
        String::from_utf8(buf).ok()
    } else {
        std::fs::read_to_string(target.join("index.html")).ok()
    }
}
