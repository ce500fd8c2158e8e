//! `imgcdn put`: publish a local image file into an fs store, the way the
//! control plane will (bytes, then manifest), and print its CDN URL.
//!
//! This is a development aid: it checks the format and reads dimensions
//! from the file's header, but it does not strip metadata or classify; the
//! control plane's upload path does that.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;
use imgcdn_media::InspectError;
use imgcdn_shared::storage::{publish, StoreConfig};
use imgcdn_shared::{Format, ImageId, ImagePath, Manifest};
use sha2::{Digest, Sha256};

#[derive(Args)]
pub struct PutArgs {
    /// The image file.
    file: PathBuf,
    /// The data directory of `imgcdn dev` (its store is `DATA_DIR/store`).
    #[arg(long, default_value = "./data", env = "IMGCDN_DATA_DIR")]
    data_dir: PathBuf,
    /// Seconds until the image expires (default: never).
    #[arg(long)]
    ttl: Option<u64>,
    /// Edge base URL printed with the image path.
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    base_url: String,
}

pub fn run(args: PutArgs) -> ExitCode {
    let bytes = match std::fs::read(&args.file) {
        Ok(b) => b,
        Err(e) => {
            eprintln!("{}: {e}", args.file.display());
            return ExitCode::from(2);
        }
    };
    // Not SVG: `probe` reads only its root element, and only the control
    // plane's upload path checks that an SVG is safe to serve. Not HEIC:
    // the control plane converts it to JPEG.
    let (format, width, height) = match imgcdn_media::probe(&bytes) {
        Ok((Format::Svg, ..)) | Err(InspectError::Unsupported | InspectError::Heic) => {
            eprintln!(
                "{}: not an image format `put` can publish (jpeg, png, gif, webp, avif, bmp, ico)",
                args.file.display()
            );
            return ExitCode::from(2);
        }
        Ok(header) => header,
        Err(e) => {
            eprintln!("{}: cannot read dimensions: {e}", args.file.display());
            return ExitCode::from(2);
        }
    };
    let manifest = Manifest {
        content_type: format.content_type().to_string(),
        bytes: bytes.len() as u64,
        sha256: hex::encode(Sha256::digest(&bytes)),
        width,
        height,
        expires_at: args.ttl.map(|s| time::OffsetDateTime::now_utc() + time::Duration::seconds(s as i64)),
        transformable: format.transformable(),
        object: None,
        // Published outside any team: the shard form.
        storage: None,
        shard_url: false,
    };
    let id = ImageId::generate();
    let store = StoreConfig::fs(args.data_dir.join("store").to_string_lossy());
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    let result = rt.block_on(async {
        let op = store.operator()?;
        publish(&op, &id, bytes, &manifest).await
    });
    match result {
        Ok(()) => {
            println!("{}{}", args.base_url.trim_end_matches('/'), ImagePath::new(id, format));
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("publishing to {store:?} failed: {e}");
            ExitCode::FAILURE
        }
    }
}
