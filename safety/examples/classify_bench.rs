//! Our side of `benches/classify/run.py`: PDQ and nudity-detector throughput
//! on image files, without the benchmark script's overhead.
//!
//! ```sh
//! cargo build --release -p imgcdn-safety --example classify_bench
//! classify_bench generate DIR               # writes the benchmark's image set, prints the file names
//! classify_bench time [--pdq-rounds N] [--detect-rounds N] [--model PATH] FILE...
//! ```
//!
//! `time` decodes every file once (not timed), runs one untimed pass whose
//! hashes and scores it reports (the script compares them with the
//! reference's), then times `--pdq-rounds` rounds of `pdq::hash_rgb8` and
//! `--detect-rounds` rounds of `Detector::detect_rgb8` over all images, each
//! call timed on its own, on the calling thread. JSON on stdout.

#[path = "../tests/common/mod.rs"]
mod common;

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::Instant;

use common::{generate, Kind, Rgb};
use image::codecs::jpeg::JpegEncoder;
use imgcdn_safety::nudity::{self, Detector, Label};
use imgcdn_safety::pdq;

/// The benchmark's sizes and how many photo-like scenes at each. 1000×750
/// is a control: Meta's PDQ reference runs its column filter with the row
/// length as stride, and at a power-of-two width (1024) that stride aliases
/// in the CPU caches, which makes it 2-3× slower per pixel there.
const SIZES: [(u32, u32, u64); 3] = [(640, 480, 20), (1024, 768, 20), (1000, 750, 4)];
/// JPEG re-encodes of the first scenes of each size, at these qualities.
const JPEG_QUALITIES: [u8; 3] = [90, 75, 50];

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("generate") if args.len() == 2 => write_set(Path::new(&args[1])),
        Some("time") => Options::parse(&args[1..]).and_then(|o| time(&o)),
        _ => Err("usage: classify_bench generate DIR | time [--pdq-rounds N] [--detect-rounds N] \
                  [--model PATH] FILE..."
            .into()),
    };
    if let Err(e) = result {
        eprintln!("classify_bench: {e}");
        std::process::exit(2);
    }
}

type Result<T> = std::result::Result<T, String>;

// ------------------------------------------------------------------ generate

/// Writes the image set into `dir` and prints the file names, one a line:
/// seeded scenes as PNG (the generator of the crate's tests: sky, hills,
/// blobs, smooth noise, grain), a few of them re-encoded as JPEG, and the
/// flagged test fixture pasted on a scene at each size, so that the detector
/// has something to find.
fn write_set(dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let flagged = Rgb::load_png(&common::fixture("flagged-synthetic.png"));
    for (size_index, &(w, h, scenes)) in SIZES.iter().enumerate() {
        let first_seed = 100 * (size_index as u64 + 1);
        for seed in first_seed..first_seed + scenes {
            let img = generate(Kind::Scene, seed, w, h);
            save_png(dir, &format!("scene-{w}x{h}-s{seed}.png"), &img)?;
            let k = seed - first_seed;
            if let Some(&quality) = JPEG_QUALITIES.get(k as usize) {
                save_jpeg(dir, &format!("scene-{w}x{h}-s{seed}-q{quality}.jpg"), &img, quality)?;
            }
        }
        let mut canvas = generate(Kind::Scene, first_seed + scenes, w, h);
        // Twice the fixture's size on the larger canvas, so that the model
        // (which sees every image at 320x320) still sees a sizeable patch.
        let scale = if w > 640 { 2 } else { 1 };
        paste(&mut canvas, &flagged, scale, 40, 40);
        save_png(dir, &format!("flagged-on-scene-{w}x{h}.png"), &canvas)?;
    }
    Ok(())
}

/// Pastes `src` enlarged `scale` times (nearest neighbour) at (`x0`, `y0`).
fn paste(dst: &mut Rgb, src: &Rgb, scale: u32, x0: u32, y0: u32) {
    for y in 0..src.height * scale {
        for x in 0..src.width * scale {
            let from = (((y / scale) * src.width + x / scale) * 3) as usize;
            let to = (((y + y0) * dst.width + x + x0) * 3) as usize;
            dst.pixels[to..to + 3].copy_from_slice(&src.pixels[from..from + 3]);
        }
    }
}

fn save_png(dir: &Path, name: &str, img: &Rgb) -> Result<()> {
    img.to_image().save(dir.join(name)).map_err(|e| format!("{name}: {e}"))?;
    println!("{name}");
    Ok(())
}

fn save_jpeg(dir: &Path, name: &str, img: &Rgb, quality: u8) -> Result<()> {
    let file = std::fs::File::create(dir.join(name)).map_err(|e| format!("{name}: {e}"))?;
    let mut out = std::io::BufWriter::new(file);
    JpegEncoder::new_with_quality(&mut out, quality)
        .encode_image(&img.to_image())
        .map_err(|e| format!("{name}: {e}"))?;
    println!("{name}");
    Ok(())
}

// ---------------------------------------------------------------------- time

struct Options {
    pdq_rounds: usize,
    detect_rounds: usize,
    model: Option<PathBuf>,
    files: Vec<PathBuf>,
}

impl Options {
    fn parse(args: &[String]) -> Result<Options> {
        let mut o = Options { pdq_rounds: 10, detect_rounds: 2, model: nudity::default_model_path(), files: vec![] };
        let mut it = args.iter();
        while let Some(a) = it.next() {
            let mut value = || it.next().ok_or(format!("{a} needs a value"));
            match a.as_str() {
                "--pdq-rounds" => o.pdq_rounds = value()?.parse().map_err(|e| format!("{a}: {e}"))?,
                "--detect-rounds" => o.detect_rounds = value()?.parse().map_err(|e| format!("{a}: {e}"))?,
                "--model" => o.model = Some(PathBuf::from(value()?)),
                _ => o.files.push(PathBuf::from(a)),
            }
        }
        if o.files.is_empty() {
            return Err("no image files given".into());
        }
        Ok(o)
    }
}

/// One decoded image and what the untimed pass found in it.
struct Image {
    name: String,
    rgb: Rgb,
    pdq: (pdq::Pdq, u32),
    detections: Option<nudity::Detections>,
}

fn time(o: &Options) -> Result<()> {
    let t = Instant::now();
    let mut images = o.files.iter().map(|f| decode(f)).collect::<Result<Vec<_>>>()?;
    let decode_s = t.elapsed().as_secs_f64();
    let detector = match (&o.model, o.detect_rounds) {
        (_, 0) => None,
        (None, _) => return Err("no model path: pass --model or set HOME".into()),
        (Some(path), _) => Some(Detector::load(path).map_err(|e| e.to_string())?),
    };
    for img in &mut images {
        let (w, h, px) = (img.rgb.width, img.rgb.height, &img.rgb.pixels);
        img.pdq = pdq::hash_rgb8(w, h, px);
        img.detections = detector.as_ref().map(|d| d.detect_rgb8(w, h, px)).transpose().map_err(|e| e.to_string())?;
    }
    let pdq_s = rounds(&images, o.pdq_rounds, |img| {
        std::hint::black_box(pdq::hash_rgb8(img.width, img.height, &img.pixels));
    });
    let detect_s = match &detector {
        Some(d) => rounds(&images, o.detect_rounds, |img| {
            std::hint::black_box(d.detect_rgb8(img.width, img.height, &img.pixels).expect("detected once already"));
        }),
        None => vec![],
    };
    println!("{}", report(&images, decode_s, &pdq_s, &detect_s));
    Ok(())
}

fn decode(path: &Path) -> Result<Image> {
    let img = image::open(path).map_err(|e| format!("{}: {e}", path.display()))?.to_rgb8();
    let name = path.file_name().map_or_else(|| path.display().to_string(), |n| n.to_string_lossy().into_owned());
    Ok(Image { name, rgb: Rgb::from_image(&img), pdq: (pdq::Pdq([0; 32]), 0), detections: None })
}

/// Seconds per call: `[round][image]`.
fn rounds(images: &[Image], n: usize, mut f: impl FnMut(&Rgb)) -> Vec<Vec<f64>> {
    (0..n)
        .map(|_| {
            images
                .iter()
                .map(|img| {
                    let t = Instant::now();
                    f(&img.rgb);
                    t.elapsed().as_secs_f64()
                })
                .collect()
        })
        .collect()
}

/// The JSON report (the crate has no JSON dependency; every string here is a
/// file name or a label, quoted with `{:?}`, which is valid JSON for them).
fn report(images: &[Image], decode_s: f64, pdq_s: &[Vec<f64>], detect_s: &[Vec<f64>]) -> String {
    let mut out = String::from("{\"labels\": [");
    out += &join(Label::ALL.iter().map(|l| format!("{:?}", l.as_str())));
    let _ = write!(out, "], \"decode_s\": {decode_s}, \"images\": [");
    out += &join(images.iter().map(image_json));
    let _ = write!(out, "], \"pdq_s\": {}, \"detect_s\": {}}}", matrix(pdq_s), matrix(detect_s));
    out
}

fn image_json(img: &Image) -> String {
    let mut s = format!(
        "{{\"file\": {:?}, \"width\": {}, \"height\": {}, \"adler32\": {}, \"pdq\": \"{}\", \"quality\": {}",
        img.name,
        img.rgb.width,
        img.rgb.height,
        adler32(&img.rgb.pixels),
        img.pdq.0,
        img.pdq.1
    );
    if let Some(d) = &img.detections {
        // Per label: the best score of its boxes (0 without one), and the
        // highest raw score any anchor gave it.
        let best = join(Label::ALL.iter().map(|&l| d.score(l).to_string()));
        let peak = join(Label::ALL.iter().map(|&l| d.peak_score(l).to_string()));
        let _ = write!(s, ", \"best\": [{best}], \"peak\": [{peak}], \"boxes\": {}", d.boxes().len());
    }
    s + "}"
}

fn matrix(m: &[Vec<f64>]) -> String {
    format!("[{}]", join(m.iter().map(|row| format!("[{}]", join(row.iter().map(f64::to_string))))))
}

fn join(items: impl Iterator<Item = String>) -> String {
    items.collect::<Vec<_>>().join(", ")
}

/// Adler-32 of the decoded pixels: the script compares it with `zlib.adler32`
/// of the reference's decoded pixels, to tell a PDQ difference from a
/// decoder difference (JPEG decoders may differ by a level here and there).
fn adler32(data: &[u8]) -> u32 {
    const MOD: u32 = 65521;
    let (mut a, mut b) = (1u32, 0u32);
    // 5552 bytes is the most that can be summed before b may overflow.
    for chunk in data.chunks(5552) {
        for &x in chunk {
            a += u32::from(x);
            b += a;
        }
        a %= MOD;
        b %= MOD;
    }
    (b << 16) | a
}
