//! The local backend's records in one redb file. Every change that pairs a record with its index
//! (a name, a node's attachment) is written in one transaction, so a crash never leaves an index
//! entry pointing nowhere.

use std::path::Path;

use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
use serde::{Deserialize, Serialize, de::DeserializeOwned};

use crate::cloud::{Node, Snapshot, Volume, VolumeSpec};
use crate::error::{Error, Result};

const VOLUMES: TableDefinition<&str, &str> = TableDefinition::new("volumes");
const VOLUME_NAMES: TableDefinition<&str, &str> = TableDefinition::new("volume_names");
const SNAPSHOTS: TableDefinition<&str, &str> = TableDefinition::new("snapshots");
const SNAPSHOT_NAMES: TableDefinition<&str, &str> = TableDefinition::new("snapshot_names");
const NODES: TableDefinition<&str, &str> = TableDefinition::new("nodes");
/// `node \n volume` → device: counts a node's attachments without scanning every volume.
const NODE_ATTACHMENTS: TableDefinition<&str, &str> = TableDefinition::new("node_attachments");

/// Where a volume is in its life. `Creating` and `Deleting` are intents written before the side
/// effect, so a retry (or the start-up reconcile) can finish or undo what a crash interrupted.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum VolumeState {
    Creating,
    Available,
    Deleting,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct VolumeRecord {
    pub state: VolumeState,
    /// The spec it was created with, to answer a repeated CreateVolume.
    pub spec: VolumeSpec,
    pub volume: Volume,
    /// Nodes an attach was started for and not yet recorded as attached.
    pub attaching: Vec<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum SnapshotState {
    Creating,
    Ready,
    Deleting,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct SnapshotRecord {
    pub state: SnapshotState,
    pub snapshot: Snapshot,
}

pub struct Store {
    db: Database,
}

fn db_err(e: impl std::fmt::Display) -> Error {
    Error::internal("local volume store", e)
}

fn decode<T: DeserializeOwned>(text: &str) -> Result<T> {
    serde_json::from_str(text).map_err(|e| Error::internal("corrupt record in the local volume store", e))
}

fn encode<T: Serialize>(value: &T) -> Result<String> {
    serde_json::to_string(value).map_err(db_err)
}

fn attachment_key(node: &str, volume: &str) -> String {
    format!("{node}\n{volume}")
}

/// The (node, device) pairs a record puts in the attachment index; a pending attach has no device.
fn index_entries(record: &VolumeRecord) -> Vec<(String, String)> {
    let attached = record
        .volume
        .attachments
        .iter()
        .map(|a| (a.node.clone(), a.device.clone()));
    let pending = record.attaching.iter().map(|n| (n.clone(), String::new()));
    attached.chain(pending).collect()
}

fn count_in(index: &impl ReadableTable<&'static str, &'static str>, node: &str) -> Result<usize> {
    // Keys are `node \n volume`; '\u{b}' is the character after '\n', so this spans one node.
    let from = format!("{node}\n");
    let to = format!("{node}\u{b}");
    Ok(index.range(from.as_str()..to.as_str()).map_err(db_err)?.count())
}

impl Store {
    /// Opens (or creates) the store. Several processes may share it: a controller and the node
    /// services on one host all open the same file.
    pub fn open(path: &Path) -> Result<Self> {
        let db = Database::builder()
            .set_cache_size(8 << 20)
            .set_concurrency_mode(redb::ConcurrencyMode::MultiWriter)
            .create(path)
            .map_err(|e| Error::internal(format!("cannot open {}", path.display()), e))?;
        let txn = db.begin_write().map_err(db_err)?;
        for table in [
            VOLUMES,
            VOLUME_NAMES,
            SNAPSHOTS,
            SNAPSHOT_NAMES,
            NODES,
            NODE_ATTACHMENTS,
        ] {
            txn.open_table(table).map_err(db_err)?;
        }
        txn.commit().map_err(db_err)?;
        Ok(Store { db })
    }

    fn get<T: DeserializeOwned>(&self, table: TableDefinition<&str, &str>, key: &str) -> Result<Option<T>> {
        let txn = self.db.begin_read().map_err(db_err)?;
        let table = txn.open_table(table).map_err(db_err)?;
        match table.get(key).map_err(db_err)? {
            Some(v) => Ok(Some(decode(v.value())?)),
            None => Ok(None),
        }
    }

    fn lookup(&self, index: TableDefinition<&str, &str>, key: &str) -> Result<Option<String>> {
        let txn = self.db.begin_read().map_err(db_err)?;
        let table = txn.open_table(index).map_err(db_err)?;
        Ok(table.get(key).map_err(db_err)?.map(|v| v.value().to_owned()))
    }

    fn page<T: DeserializeOwned>(
        &self,
        table: TableDefinition<&str, &str>,
        start: Option<&str>,
        keep: impl Fn(&T) -> bool,
        max: usize,
    ) -> Result<(Vec<T>, Option<String>)> {
        let txn = self.db.begin_read().map_err(db_err)?;
        let table = txn.open_table(table).map_err(db_err)?;
        let range = table.range(start.unwrap_or("")..).map_err(db_err)?;
        let mut items = Vec::new();
        for entry in range {
            let (key, value) = entry.map_err(db_err)?;
            let item: T = decode(value.value())?;
            if !keep(&item) {
                continue;
            }
            if max > 0 && items.len() == max {
                return Ok((items, Some(key.value().to_owned())));
            }
            items.push(item);
        }
        Ok((items, None))
    }

    // ---- volumes ----

    pub fn volume(&self, id: &str) -> Result<Option<VolumeRecord>> {
        self.get(VOLUMES, id)
    }

    pub fn volume_id_by_name(&self, name: &str) -> Result<Option<String>> {
        self.lookup(VOLUME_NAMES, name)
    }

    pub fn volumes_page(&self, start: Option<&str>, max: usize) -> Result<(Vec<VolumeRecord>, Option<String>)> {
        self.page(
            VOLUMES,
            start,
            |r: &VolumeRecord| r.state == VolumeState::Available,
            max,
        )
    }

    pub fn all_volumes(&self) -> Result<Vec<VolumeRecord>> {
        Ok(self.page(VOLUMES, None, |_: &VolumeRecord| true, 0)?.0)
    }

    /// Records a new volume and its name together, unless the name is taken: then returns the
    /// record that holds it.
    pub fn insert_volume(&self, name: &str, record: &VolumeRecord) -> Result<Option<VolumeRecord>> {
        let txn = self.db.begin_write().map_err(db_err)?;
        {
            let mut names = txn.open_table(VOLUME_NAMES).map_err(db_err)?;
            let mut volumes = txn.open_table(VOLUMES).map_err(db_err)?;
            let existing = names.get(name).map_err(db_err)?.map(|v| v.value().to_owned());
            if let Some(id) = existing {
                let found = volumes.get(id.as_str()).map_err(db_err)?.map(|v| v.value().to_owned());
                if let Some(text) = found {
                    return Ok(Some(decode(&text)?));
                }
            }
            names.insert(name, record.volume.id.as_str()).map_err(db_err)?;
            volumes
                .insert(record.volume.id.as_str(), encode(record)?.as_str())
                .map_err(db_err)?;
        }
        txn.commit().map_err(db_err)?;
        Ok(None)
    }

    /// Reads, changes and writes one volume record in one transaction, keeping the attachment
    /// index in step with the record's attachments and pending attaches. `change` also gets a
    /// counter of a node's attachments read inside the same transaction, so a limit check and the
    /// attach it allows cannot interleave with another. `None` when the volume does not exist.
    pub fn update_volume<T>(
        &self,
        id: &str,
        change: impl FnOnce(&mut VolumeRecord, &dyn Fn(&str) -> Result<usize>) -> Result<T>,
    ) -> Result<Option<T>> {
        let txn = self.db.begin_write().map_err(db_err)?;
        let out;
        {
            let mut volumes = txn.open_table(VOLUMES).map_err(db_err)?;
            let text = volumes.get(id).map_err(db_err)?.map(|v| v.value().to_owned());
            let Some(text) = text else { return Ok(None) };
            let mut record: VolumeRecord = decode(&text)?;
            let before = index_entries(&record);
            let mut index = txn.open_table(NODE_ATTACHMENTS).map_err(db_err)?;
            {
                let count = |node: &str| -> Result<usize> { count_in(&index, node) };
                out = change(&mut record, &count)?;
            }
            for (node, _) in &before {
                index.remove(attachment_key(node, id).as_str()).map_err(db_err)?;
            }
            for (node, device) in index_entries(&record) {
                index
                    .insert(attachment_key(&node, id).as_str(), device.as_str())
                    .map_err(db_err)?;
            }
            volumes.insert(id, encode(&record)?.as_str()).map_err(db_err)?;
        }
        txn.commit().map_err(db_err)?;
        Ok(Some(out))
    }

    /// Forgets a volume, its name and its attachments.
    pub fn remove_volume(&self, id: &str) -> Result<()> {
        let txn = self.db.begin_write().map_err(db_err)?;
        {
            let mut volumes = txn.open_table(VOLUMES).map_err(db_err)?;
            let text = volumes.remove(id).map_err(db_err)?.map(|v| v.value().to_owned());
            if let Some(text) = text {
                let record: VolumeRecord = decode(&text)?;
                let mut names = txn.open_table(VOLUME_NAMES).map_err(db_err)?;
                let owner = names
                    .get(record.volume.name.as_str())
                    .map_err(db_err)?
                    .map(|v| v.value().to_owned());
                if owner.as_deref() == Some(id) {
                    names.remove(record.volume.name.as_str()).map_err(db_err)?;
                }
                let mut index = txn.open_table(NODE_ATTACHMENTS).map_err(db_err)?;
                for (node, _) in index_entries(&record) {
                    index.remove(attachment_key(&node, id).as_str()).map_err(db_err)?;
                }
            }
        }
        txn.commit().map_err(db_err)
    }

    // ---- snapshots ----

    pub fn snapshot(&self, id: &str) -> Result<Option<SnapshotRecord>> {
        self.get(SNAPSHOTS, id)
    }

    pub fn snapshot_id_by_name(&self, name: &str) -> Result<Option<String>> {
        self.lookup(SNAPSHOT_NAMES, name)
    }

    pub fn snapshots_page(
        &self,
        start: Option<&str>,
        keep: impl Fn(&SnapshotRecord) -> bool,
        max: usize,
    ) -> Result<(Vec<SnapshotRecord>, Option<String>)> {
        self.page(SNAPSHOTS, start, keep, max)
    }

    pub fn insert_snapshot(&self, record: &SnapshotRecord) -> Result<Option<SnapshotRecord>> {
        let txn = self.db.begin_write().map_err(db_err)?;
        {
            let mut names = txn.open_table(SNAPSHOT_NAMES).map_err(db_err)?;
            let mut snapshots = txn.open_table(SNAPSHOTS).map_err(db_err)?;
            let name = record.snapshot.name.as_str();
            let existing = names.get(name).map_err(db_err)?.map(|v| v.value().to_owned());
            if let Some(id) = existing {
                let found = snapshots
                    .get(id.as_str())
                    .map_err(db_err)?
                    .map(|v| v.value().to_owned());
                if let Some(text) = found {
                    return Ok(Some(decode(&text)?));
                }
            }
            names.insert(name, record.snapshot.id.as_str()).map_err(db_err)?;
            snapshots
                .insert(record.snapshot.id.as_str(), encode(record)?.as_str())
                .map_err(db_err)?;
        }
        txn.commit().map_err(db_err)?;
        Ok(None)
    }

    pub fn set_snapshot_state(&self, id: &str, state: SnapshotState) -> Result<Option<SnapshotRecord>> {
        self.update_snapshot(id, |r| {
            r.state = state;
            r.snapshot.ready = state == SnapshotState::Ready;
            Ok(r.clone())
        })
    }

    /// Reads, changes and writes one snapshot record in one transaction; nothing is written when
    /// `change` fails. `None` when the snapshot does not exist.
    pub fn update_snapshot<T>(
        &self,
        id: &str,
        change: impl FnOnce(&mut SnapshotRecord) -> Result<T>,
    ) -> Result<Option<T>> {
        let txn = self.db.begin_write().map_err(db_err)?;
        let out;
        {
            let mut snapshots = txn.open_table(SNAPSHOTS).map_err(db_err)?;
            let text = snapshots.get(id).map_err(db_err)?.map(|v| v.value().to_owned());
            let Some(text) = text else { return Ok(None) };
            let mut r: SnapshotRecord = decode(&text)?;
            out = change(&mut r)?;
            snapshots.insert(id, encode(&r)?.as_str()).map_err(db_err)?;
        }
        txn.commit().map_err(db_err)?;
        Ok(Some(out))
    }

    pub fn remove_snapshot(&self, id: &str) -> Result<()> {
        let txn = self.db.begin_write().map_err(db_err)?;
        {
            let mut snapshots = txn.open_table(SNAPSHOTS).map_err(db_err)?;
            let text = snapshots.remove(id).map_err(db_err)?.map(|v| v.value().to_owned());
            if let Some(text) = text {
                let record: SnapshotRecord = decode(&text)?;
                let mut names = txn.open_table(SNAPSHOT_NAMES).map_err(db_err)?;
                let name = record.snapshot.name.as_str();
                let owner = names.get(name).map_err(db_err)?.map(|v| v.value().to_owned());
                if owner.as_deref() == Some(id) {
                    names.remove(name).map_err(db_err)?;
                }
            }
        }
        txn.commit().map_err(db_err)
    }

    pub fn all_snapshots(&self) -> Result<Vec<SnapshotRecord>> {
        Ok(self.page(SNAPSHOTS, None, |_: &SnapshotRecord| true, 0)?.0)
    }

    // ---- nodes ----

    pub fn node(&self, id: &str) -> Result<Option<Node>> {
        self.get(NODES, id)
    }

    pub fn put_node(&self, node: &Node) -> Result<()> {
        let txn = self.db.begin_write().map_err(db_err)?;
        {
            let mut nodes = txn.open_table(NODES).map_err(db_err)?;
            nodes.insert(node.id.as_str(), encode(node)?.as_str()).map_err(db_err)?;
        }
        txn.commit().map_err(db_err)
    }
}
