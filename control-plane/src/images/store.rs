//! The stores an image moves through.
//!
//! Publishing writes `objects/{id}` then `manifests/{id}.json` to the
//! public store (the manifest last: an edge serves nothing without it).
//! Unpublishing first copies bytes and manifest to the recovery store (with
//! `reap_at`), then deletes the public manifest (off public serving at
//! once), then the public object: at every step the image is either still
//! served or already safe in recovery, never lost.

use imgcdn_shared::storage::{manifest_key, object_key, publish, StoreConfig};
use imgcdn_shared::{ImageId, Manifest};
use opendal::{ErrorKind, Operator};
use serde::{Deserialize, Serialize};

pub struct Stores {
    pub public: Operator,
    pub recovery: Operator,
}

/// What the recovery store keeps next to the bytes.
#[derive(Debug, Serialize, Deserialize)]
pub struct RecoveryRecord {
    pub manifest: Manifest,
    pub reason: String,
    pub removed_at: i64,
    pub reap_at: i64,
}

impl Stores {
    pub fn open(public: &StoreConfig, recovery: &StoreConfig) -> Result<Stores, opendal::Error> {
        Ok(Stores { public: public.operator()?, recovery: recovery.operator()? })
    }

    pub async fn publish(&self, id: &ImageId, bytes: Vec<u8>, manifest: &Manifest) -> Result<(), opendal::Error> {
        publish(&self.public, id, bytes, manifest).await
    }

    /// Write the manifest of a servable image (one that shows bytes already
    /// in the store, a new expiry, or published again).
    pub async fn publish_manifest(&self, id: &ImageId, manifest: &Manifest) -> Result<(), opendal::Error> {
        self.public.write(&manifest_key(id), manifest.to_json()).await.map(|_| ())
    }

    /// Store the bytes of a private image: no manifest, so nothing serves it.
    pub async fn put_object(&self, id: &ImageId, bytes: Vec<u8>) -> Result<(), opendal::Error> {
        self.public.write(&object_key(id), bytes).await.map(|_| ())
    }

    /// Withdraw an image from serving (private, taken down): the manifest
    /// goes, the bytes stay for a later restore.
    pub async fn withdraw(&self, id: &ImageId) -> Result<(), opendal::Error> {
        self.public.delete(&manifest_key(id)).await
    }

    /// Move a published image to the recovery store. Idempotent: an image
    /// already gone from the public store is fine. The bytes (`object`) are
    /// copied to recovery always, but deleted from the public store only
    /// when `delete_bytes` (no other live image shows them).
    #[allow(clippy::too_many_arguments)]
    pub async fn unpublish(
        &self,
        id: &ImageId,
        manifest: &Manifest,
        object: &str,
        delete_bytes: bool,
        reason: &str,
        now: i64,
        reap_at: i64,
    ) -> Result<(), opendal::Error> {
        match self.public.read(object).await {
            Ok(bytes) => {
                self.recovery.write(&format!("recovery/{id}/object"), bytes).await?;
                let record =
                    RecoveryRecord { manifest: manifest.clone(), reason: reason.to_string(), removed_at: now, reap_at };
                let json = serde_json::to_vec_pretty(&record).expect("record serialises");
                self.recovery.write(&format!("recovery/{id}/record.json"), json).await?;
            }
            Err(e) if e.kind() == ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        self.public.delete(&manifest_key(id)).await?;
        if delete_bytes {
            self.public.delete(object).await?;
        }
        Ok(())
    }
}
