//! Where things live in the object stores, and how a store is configured.
//!
//! Public store (the only one an edge ever gets):
//! - `objects/{id}`: the original bytes, metadata stripped;
//! - `manifests/{id}.json`: written last; without it nothing is servable.
//!
//! The staging and recovery stores are separate operators (separate
//! buckets in production) so that an edge's credentials cannot read them.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::ImageId;

/// Key of the original bytes in the public store.
pub fn object_key(id: &ImageId) -> String {
    format!("objects/{id}")
}

/// Key of the manifest in the public store.
pub fn manifest_key(id: &ImageId) -> String {
    format!("manifests/{id}.json")
}

/// Publish an object to the public store: bytes first, manifest last, so
/// the object is servable only once both are complete. A crash between the
/// two leaves an unservable object for the orphan sweep, never a manifest
/// pointing at missing or partial bytes.
pub async fn publish(
    op: &opendal::Operator,
    id: &ImageId,
    bytes: Vec<u8>,
    manifest: &crate::Manifest,
) -> Result<(), opendal::Error> {
    op.write(&object_key(id), bytes).await?;
    op.write(&manifest_key(id), manifest.to_json()).await?;
    Ok(())
}

/// An OpenDAL store: a scheme plus that service's options, passed through
/// as OpenDAL names them.
///
/// ```toml
/// [store]
/// scheme = "fs"
/// root = "/var/lib/imgcdn/store"
///
/// # or S3 / R2 / any S3-compatible store:
/// [store]
/// scheme = "s3"
/// bucket = "imgcdn-public"
/// endpoint = "https://<account>.r2.cloudflarestorage.com"
/// region = "auto"
/// access_key_id = "…"       # or leave out and set AWS_ACCESS_KEY_ID
/// secret_access_key = "…"   # or leave out and set AWS_SECRET_ACCESS_KEY
/// ```
///
/// S3 credentials: each half comes from the file if it is there, else from
/// the environment (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`,
/// `AWS_SESSION_TOKEN`), so the id can sit in the file and the secret in the
/// environment. Nothing else is consulted (no `~/.aws` files, no cloud
/// metadata endpoint) unless `use_instance_credentials = "true"`, for a
/// machine whose role provides them.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoreConfig {
    pub scheme: StoreScheme,
    #[serde(flatten)]
    pub options: BTreeMap<String, String>,
}

/// The kinds of store this build can open (an unknown scheme is refused
/// when the config is read, naming these).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StoreScheme {
    /// A local folder.
    Fs,
    /// Amazon S3, Cloudflare R2 or any S3-compatible service.
    S3,
}

impl StoreScheme {
    /// OpenDAL's name for it.
    pub fn as_str(self) -> &'static str {
        match self {
            StoreScheme::Fs => "fs",
            StoreScheme::S3 => "s3",
        }
    }

    /// Options a store of this scheme cannot do without.
    fn required(self) -> &'static [&'static str] {
        match self {
            StoreScheme::Fs => &["root"],
            StoreScheme::S3 => &["bucket", "region"],
        }
    }
}

impl fmt::Display for StoreScheme {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl StoreConfig {
    /// A filesystem store rooted at `root`.
    pub fn fs(root: impl Into<String>) -> Self {
        StoreConfig { scheme: StoreScheme::Fs, options: BTreeMap::from([("root".to_string(), root.into())]) }
    }

    /// Every problem with this store's settings, prefixed with `at`.
    pub fn problems(&self, at: &str) -> Vec<String> {
        let mut out = Vec::new();
        for key in self.scheme.required() {
            if self.options.get(*key).is_none_or(|v| v.is_empty()) {
                out.push(format!("{at}.{key}: required for scheme \"{}\"", self.scheme));
            }
        }
        if self.scheme == StoreScheme::S3 && !self.instance_credentials() {
            for (key, env) in S3_CREDENTIALS {
                if self.credential(key, env).is_none() {
                    out.push(format!("{at}.{key}: required for scheme \"s3\" (in the file, or set {env})"));
                }
            }
        }
        out
    }

    fn instance_credentials(&self) -> bool {
        self.options.get(INSTANCE_CREDENTIALS).is_some_and(|v| v == "true")
    }

    /// An S3 credential half: the file's, else the environment's.
    fn credential(&self, key: &str, env: &str) -> Option<String> {
        self.options
            .get(key)
            .filter(|v| !v.is_empty())
            .cloned()
            .or_else(|| std::env::var(env).ok().filter(|v| !v.is_empty()))
    }

    /// The options OpenDAL gets: for S3, credentials completed from the
    /// environment and every other source of them switched off.
    fn effective_options(&self) -> BTreeMap<String, String> {
        let mut opts = self.options.clone();
        if self.scheme != StoreScheme::S3 {
            return opts;
        }
        opts.remove(INSTANCE_CREDENTIALS);
        if self.instance_credentials() {
            return opts;
        }
        for (key, env) in S3_CREDENTIALS {
            if let Some(v) = self.credential(key, env) {
                opts.insert(key.to_string(), v);
            }
        }
        // A session token belongs to the key id it was issued with: the
        // environment's only goes with the environment's key id.
        let key_id_in_file = self.options.get("access_key_id").is_some_and(|v| !v.is_empty());
        if !self.options.contains_key("session_token") && !key_id_in_file {
            if let Ok(token) = std::env::var("AWS_SESSION_TOKEN").map(|t| t.trim().to_string()) {
                if !token.is_empty() {
                    opts.insert("session_token".into(), token);
                }
            }
        }
        opts.insert("disable_config_load".into(), "true".into());
        opts.insert("disable_ec2_metadata".into(), "true".into());
        opts
    }

    /// Build the OpenDAL operator.
    pub fn operator(&self) -> Result<opendal::Operator, opendal::Error> {
        opendal::init_default_registry();
        opendal::Operator::via_iter(self.scheme.as_str(), self.effective_options())
    }
}

/// Whether a configuration key names a secret (its value is never shown).
pub fn is_secret_key(key: &str) -> bool {
    let key = key.to_ascii_lowercase();
    ["secret", "password", "token"].iter().any(|s| key.contains(s))
}

impl fmt::Debug for StoreConfig {
    /// Secrets never reach a log line through `{:?}`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let shown: BTreeMap<&str, &str> = self
            .options
            .iter()
            .map(|(k, v)| (k.as_str(), if is_secret_key(k) { "<redacted>" } else { v.as_str() }))
            .collect();
        f.debug_struct("StoreConfig").field("scheme", &self.scheme).field("options", &shown).finish()
    }
}

/// Our own option: take S3 credentials from the machine (instance role,
/// `~/.aws`) instead of the file and the environment variables.
const INSTANCE_CREDENTIALS: &str = "use_instance_credentials";

/// The two halves of S3 credentials and the variables they may come from.
const S3_CREDENTIALS: [(&str, &str); 2] =
    [("access_key_id", "AWS_ACCESS_KEY_ID"), ("secret_access_key", "AWS_SECRET_ACCESS_KEY")];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_layout() {
        let id: ImageId = "aB3dE6gH".parse().unwrap();
        assert_eq!(object_key(&id), "objects/aB3dE6gH");
        assert_eq!(manifest_key(&id), "manifests/aB3dE6gH.json");
    }

    #[test]
    fn reports_every_problem() {
        let bad = StoreConfig {
            scheme: StoreScheme::S3,
            options: BTreeMap::from([(INSTANCE_CREDENTIALS.to_string(), "true".to_string())]),
        };
        assert_eq!(
            bad.problems("store"),
            vec!["store.bucket: required for scheme \"s3\"", "store.region: required for scheme \"s3\""]
        );
        assert!(StoreConfig::fs("/tmp/x").problems("store").is_empty());
    }

    #[test]
    fn s3_credentials_may_be_split_between_the_file_and_the_environment() {
        let c: StoreConfig =
            toml::from_str("scheme = \"s3\"\nbucket = \"b\"\nregion = \"auto\"\naccess_key_id = \"AKIDFILE\"\n")
                .unwrap();
        // The environment's half is read in `tests/s3_e2e.rs` (processes
        // of their own: setting variables here would race other tests).
        let opts = c.effective_options();
        assert_eq!(opts.get("access_key_id").map(String::as_str), Some("AKIDFILE"));
        assert_eq!(opts.get("disable_ec2_metadata").map(String::as_str), Some("true"));
        assert_eq!(opts.get("disable_config_load").map(String::as_str), Some("true"));
        let with_secret = StoreConfig {
            options: BTreeMap::from_iter(
                c.options.clone().into_iter().chain([("secret_access_key".to_string(), "s3cr3t".to_string())]),
            ),
            ..c.clone()
        };
        assert!(with_secret.problems("store").is_empty(), "{:?}", with_secret.problems("store"));
        // Instance credentials: nothing is switched off or required.
        let mut role = c.clone();
        role.options.remove("access_key_id");
        role.options.insert(INSTANCE_CREDENTIALS.into(), "true".into());
        assert!(role.problems("store").is_empty());
        assert!(!role.effective_options().contains_key("disable_ec2_metadata"));
        assert!(!role.effective_options().contains_key(INSTANCE_CREDENTIALS));
    }

    #[test]
    fn an_unknown_scheme_is_refused_when_read_and_names_the_choices() {
        let e = toml::from_str::<StoreConfig>("scheme = \"ftp\"\nroot = \"/x\"\n").unwrap_err().to_string();
        assert!(e.contains("ftp") && e.contains("fs") && e.contains("s3"), "{e}");
    }

    #[test]
    fn debug_redacts_secrets() {
        let mut c = StoreConfig::fs("/x");
        c.options.insert("secret_access_key".into(), "hunter2".into());
        assert!(!format!("{c:?}").contains("hunter2"));
    }

    #[test]
    fn toml_shape_is_flat() {
        let c: StoreConfig = toml::from_str("scheme = \"s3\"\nbucket = \"b\"\nregion = \"auto\"\n").unwrap();
        assert_eq!(c.options.get("bucket").map(String::as_str), Some("b"));
    }
}
