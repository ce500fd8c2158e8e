//! The stores an image's bytes move through ([`Place`]):
//!
//! - **public** (`objects/{id}`, `manifests/{id}.json`): what edges read.
//!   Publishing writes the bytes, then the manifest (last: an edge serves
//!   nothing without it).
//! - **staging** (`objects/{id}`): uploads awaiting classification or an
//!   operator's review. Edges never get this store.
//! - **recovery** (`recovery/{id}/object`, `recovery/{id}/record.json`
//!   with the manifest, reason and `reap_at`): deleted, expired, taken
//!   down and removed images, operator only.
//!
//! Moving bytes copies them to their destination first and deletes the
//! source last, so at every step they are in one store or another, never
//! lost; each move is idempotent (a copy already there is kept).

use imgcdn_shared::storage::{manifest_key, object_key, publish, StoreConfig};
use imgcdn_shared::{ImageId, Manifest};
use opendal::{ErrorKind, Operator};
use serde::{Deserialize, Serialize};

/// Where an image's bytes are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Place {
    Public,
    Staging,
    Recovery,
}

impl Place {
    pub fn as_str(self) -> &'static str {
        match self {
            Place::Public => "public",
            Place::Staging => "staging",
            Place::Recovery => "recovery",
        }
    }
}

impl std::str::FromStr for Place {
    type Err = String;

    fn from_str(s: &str) -> Result<Place, String> {
        match s {
            "public" => Ok(Place::Public),
            "staging" => Ok(Place::Staging),
            "recovery" => Ok(Place::Recovery),
            other => Err(format!("unknown place {other:?}")),
        }
    }
}

pub struct Stores {
    pub public: Operator,
    pub staging: Operator,
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

fn recovery_object(id: &ImageId) -> String {
    format!("recovery/{id}/object")
}

fn recovery_record(id: &ImageId) -> String {
    format!("recovery/{id}/record.json")
}

fn found<T>(r: Result<T, opendal::Error>) -> Result<Option<T>, opendal::Error> {
    match r {
        Ok(v) => Ok(Some(v)),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

impl Stores {
    /// Prove every store usable: write a probe key, read it back, delete
    /// it. The error names the store and what failed.
    pub async fn check(&self) -> Result<(), String> {
        let key = format!(".imgcdn-probe/{}", crate::secrets::random_alnum(16));
        for (name, op) in [("public", &self.public), ("staging", &self.staging), ("recovery", &self.recovery)] {
            let what =
                |step: &str, e: opendal::Error| format!("stores.{name}: cannot {step} ({}): {e}", op.info().name());
            op.write(&key, b"probe".to_vec()).await.map_err(|e| what("write", e))?;
            let back = op.read(&key).await.map_err(|e| what("read", e))?;
            if back.to_vec() != b"probe" {
                return Err(format!("stores.{name}: read back something else than was written"));
            }
            op.delete(&key).await.map_err(|e| what("delete", e))?;
        }
        Ok(())
    }

    pub fn open(public: &StoreConfig, staging: &StoreConfig, recovery: &StoreConfig) -> Result<Stores, opendal::Error> {
        Ok(Stores { public: public.operator()?, staging: staging.operator()?, recovery: recovery.operator()? })
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

    /// Keep the bytes of an upload that is not (yet) allowed out.
    pub async fn put_staging(&self, id: &ImageId, bytes: Vec<u8>) -> Result<(), opendal::Error> {
        self.staging.write(&object_key(id), bytes).await.map(|_| ())
    }

    /// The bytes of an image waiting in staging.
    pub async fn read_staging(&self, id: &ImageId) -> Result<Vec<u8>, opendal::Error> {
        Ok(self.staging.read(&object_key(id)).await?.to_vec())
    }

    /// Withdraw an image from serving (private): the manifest goes, the
    /// bytes stay for a later `public: true`.
    pub async fn withdraw(&self, id: &ImageId) -> Result<(), opendal::Error> {
        self.public.delete(&manifest_key(id)).await
    }

    /// Make sure `id`'s bytes are in the public store (under `object`, its
    /// own or shared key), copying them from staging or recovery if needed.
    pub async fn bytes_to_public(&self, id: &ImageId, object: &str) -> Result<(), opendal::Error> {
        if self.public.exists(object).await? {
            return Ok(());
        }
        let bytes = match found(self.staging.read(&object_key(id)).await)? {
            Some(b) => b,
            None => self.recovery.read(&recovery_object(id)).await?,
        };
        // Restored bytes are the image's own from now on.
        self.public.write(&object_key(id), bytes).await.map(|_| ())
    }

    /// Delete the copies left in staging and recovery once the bytes are
    /// public again.
    pub async fn drop_private_copies(&self, id: &ImageId) -> Result<(), opendal::Error> {
        self.staging.delete(&object_key(id)).await?;
        self.recovery.delete(&recovery_object(id)).await?;
        self.recovery.delete(&recovery_record(id)).await
    }

    /// Reap an image's recovery entry (bytes and record). Idempotent.
    pub async fn drop_recovery(&self, id: &ImageId) -> Result<(), opendal::Error> {
        self.recovery.delete(&recovery_object(id)).await?;
        self.recovery.delete(&recovery_record(id)).await
    }

    /// Move an image to the recovery store: the bytes (from the public
    /// store under `object`, or from staging) and a record with `manifest`
    /// are copied there first; then the public manifest goes (off public
    /// serving), then the public bytes if `delete_public_bytes` (no other
    /// image still needs them), then the staging copy. Idempotent.
    #[allow(clippy::too_many_arguments)]
    pub async fn to_recovery(
        &self,
        id: &ImageId,
        manifest: &Manifest,
        object: &str,
        delete_public_bytes: bool,
        reason: &str,
        now: i64,
        reap_at: i64,
    ) -> Result<(), opendal::Error> {
        let bytes = match found(self.public.read(object).await)? {
            Some(b) => Some(b),
            None => found(self.staging.read(&object_key(id)).await)?,
        };
        if let Some(bytes) = bytes {
            self.recovery.write(&recovery_object(id), bytes).await?;
            let record =
                RecoveryRecord { manifest: manifest.clone(), reason: reason.to_string(), removed_at: now, reap_at };
            let json = serde_json::to_vec_pretty(&record).expect("record serialises");
            self.recovery.write(&recovery_record(id), json).await?;
        }
        self.public.delete(&manifest_key(id)).await?;
        if delete_public_bytes {
            self.public.delete(object).await?;
        }
        self.staging.delete(&object_key(id)).await
    }
}
