//! Checkpoints in the object store bucket: the leader uploads each one it writes, a follower
//! starts from the newest; the stream is purged only before the oldest one kept.
//!
//! Objects are named `ckpt-<LSN as 16 hex digits>` (names sort by position) and carry the
//! applied cursor in their metadata. An upload reads the local checkpoint through one open
//! handle (a checkpoint written meanwhile replaces the file, not what the handle reads); a
//! download is written to a temporary file, fsynced and renamed over the local checkpoint, and
//! the checkpoint's own CRC is checked when it loads.
//!
//! Crash windows: an upload cut short leaves an incomplete object the store does not list as
//! complete (the next upload replaces it); pruning deletes old objects only after the new one
//! is complete, and purges the stream only before the oldest object kept.

use std::path::Path;
use std::time::Duration;

use async_nats::jetstream::object_store::{self, ObjectMetadata, ObjectStore};
use futures_util::StreamExt;
use tokio::io::AsyncWriteExt;
use tracing::{info, warn};

use super::{Link, ReplicationError, js_err};
use crate::index::Index;
use crate::index::checkpoint::CHECKPOINT_FILE;
use crate::{Lsn, WalKey};

/// Chunk size of uploads (under the server's default 1 MiB payload limit).
const CHUNK: usize = 512 << 10;

/// The object name of a checkpoint at `lsn`.
pub fn object_name(lsn: Lsn) -> String {
    format!("ckpt-{:016X}", lsn.0)
}

/// The LSN an object name says (`None`: not a checkpoint's name).
pub fn parse_name(name: &str) -> Option<Lsn> {
    let hex = name.strip_prefix("ckpt-")?;
    (hex.len() == 16)
        .then(|| u64::from_str_radix(hex, 16).ok().map(Lsn))
        .flatten()
}

/// The checkpoint bucket, created when missing.
pub async fn bucket(link: &Link) -> Result<ObjectStore, ReplicationError> {
    let name = &link.names.checkpoints;
    match link.js.get_object_store(name).await {
        Ok(store) => Ok(store),
        Err(_) => link
            .js
            .create_object_store(object_store::Config {
                bucket: name.clone(),
                description: Some("pgroar checkpoints".into()),
                storage: async_nats::jetstream::stream::StorageType::File,
                num_replicas: link.config.replicas,
                ..Default::default()
            })
            .await
            .map_err(|e| js_err("creating the checkpoint bucket")(&e)),
    }
}

/// The checkpoints in the bucket, oldest first.
pub async fn list(store: &ObjectStore) -> Result<Vec<Lsn>, ReplicationError> {
    let mut list = store
        .list()
        .await
        .map_err(|e| js_err("listing checkpoints")(&e))?;
    let mut found = Vec::new();
    while let Some(info) = list.next().await {
        let info = info.map_err(|e| js_err("listing checkpoints")(&e))?;
        if !info.deleted
            && let Some(lsn) = parse_name(&info.name)
        {
            found.push(lsn);
        }
    }
    found.sort();
    Ok(found)
}

/// Uploads the checkpoint in `index_dir`, unless the bucket has it; returns its cursor.
pub async fn upload(
    store: &ObjectStore,
    index_dir: &Path,
) -> Result<Option<WalKey>, ReplicationError> {
    let path = index_dir.join(CHECKPOINT_FILE);
    let Some(before) = Index::peek_checkpoint(index_dir) else {
        return Ok(None);
    };
    let mut file = match tokio::fs::File::open(&path).await {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(source) => return Err(ReplicationError::Io { path, source }),
    };
    if Index::peek_checkpoint(index_dir) != Some(before) {
        return Ok(None); // replaced meanwhile: the next round uploads the new one
    }
    let name = object_name(before.lsn);
    if store.info(&name).await.is_ok() {
        return Ok(Some(before));
    }
    let started = std::time::Instant::now();
    let meta = ObjectMetadata {
        name: name.clone(),
        description: Some(format!("pgroar checkpoint at {}", before.lsn)),
        chunk_size: Some(CHUNK),
        metadata: [
            ("lsn".to_string(), before.lsn.to_string()),
            ("seq".to_string(), before.seq.to_string()),
        ]
        .into(),
        headers: None,
    };
    let info = store
        .put(meta, &mut file)
        .await
        .map_err(|e| js_err("uploading a checkpoint")(&e))?;
    info!(
        object = %name,
        bytes = info.size,
        took_ms = started.elapsed().as_millis() as u64,
        "checkpoint uploaded"
    );
    Ok(Some(before))
}

/// Keeps the newest `keep` checkpoints, deletes the rest, and purges the stream before the
/// first message past the oldest one kept.
pub async fn prune(link: &Link, store: &ObjectStore, keep: usize) -> Result<(), ReplicationError> {
    let all = list(store).await?;
    if all.len() <= keep || keep == 0 {
        return Ok(());
    }
    let (old, kept) = all.split_at(all.len() - keep);
    for lsn in old {
        if let Err(e) = store.delete(object_name(*lsn)).await {
            warn!(error = %e, object = %object_name(*lsn), "deleting an old checkpoint failed");
        }
    }
    let oldest = kept[0];
    let first_needed = link.first_after(oldest).await?;
    link.stream
        .purge()
        .sequence(first_needed)
        .await
        .map_err(|e| js_err("purging the stream")(&e))?;
    info!(before_seq = first_needed, oldest_checkpoint = %oldest, "stream purged before the oldest checkpoint kept");
    Ok(())
}

/// Downloads the checkpoint at `lsn` into `index_dir` (replacing the local one).
pub async fn download(
    store: &ObjectStore,
    lsn: Lsn,
    index_dir: &Path,
) -> Result<(), ReplicationError> {
    let name = object_name(lsn);
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| ReplicationError::Io { path, source }
    };
    tokio::fs::create_dir_all(index_dir)
        .await
        .map_err(io(index_dir))?;
    let tmp = index_dir.join(format!("{CHECKPOINT_FILE}.download"));
    let started = std::time::Instant::now();
    let mut object = store
        .get(&name)
        .await
        .map_err(|e| js_err("downloading a checkpoint")(&e))?;
    let mut out = tokio::fs::File::create(&tmp).await.map_err(io(&tmp))?;
    let bytes = tokio::io::copy(&mut object, &mut out)
        .await
        .map_err(io(&tmp))?;
    out.flush().await.map_err(io(&tmp))?;
    out.sync_all().await.map_err(io(&tmp))?;
    drop(out);
    let dest = index_dir.join(CHECKPOINT_FILE);
    tokio::fs::rename(&tmp, &dest).await.map_err(io(&dest))?;
    std::fs::File::open(index_dir)
        .and_then(|d| d.sync_all())
        .map_err(io(index_dir))?;
    info!(object = %name, bytes, took_ms = started.elapsed().as_millis() as u64, "checkpoint downloaded");
    Ok(())
}

/// How often the leader looks for a new local checkpoint to upload.
pub const UPLOAD_EVERY: Duration = Duration::from_secs(1);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_sort_by_position_and_parse_back() {
        let a = object_name(Lsn(0x16B_3748));
        let b = object_name(Lsn(0x1_0000_0000));
        assert!(a < b);
        assert_eq!(parse_name(&a), Some(Lsn(0x16B_3748)));
        assert_eq!(parse_name("ckpt-xyz"), None);
        assert_eq!(parse_name("other"), None);
    }
}
