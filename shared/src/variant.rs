//! Transforms by URL: the query string of a CDN URL read into one
//! canonical [`Variant`].
//!
//! The grammar is API.md's: `size=s|m|l|social`, `w`, `h`,
//! `fit=scale-down|contain|cover|crop|pad`, `format=jpg|png|webp|avif|gif`
//! (or a URL extension other than the stored one), `q`, `brightness`,
//! `contrast`, `gamma`, `saturation`, `blur`, `sharp`. Parsing never fails:
//! unknown parameters and invalid values are ignored (the image still
//! loads), numbers are clamped to their range and rounded to the precision
//! that is applied, and parameters that change nothing are dropped. So any
//! two URLs that would produce the same image produce the same variant, and
//! the same [`Variant::key`]: one cache entry, however the query was
//! spelled or ordered. The original is the variant with no parameters
//! ([`Variant::is_original`]).
//!
//! A repeated parameter takes its first valid value. `w`/`h` win over
//! `size`; `size=social` is a 1200×630 box, padded.
//!
//! [`Variant::output_size`] is the one function that says how large an
//! output is: the edge resizes to it and the control plane advertises it in
//! the Image object's `sizes`.

use std::fmt::Write;

use crate::Format;

/// How an image is fitted into a `w`×`h` box.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Fit {
    /// Fit inside the box, aspect kept, never enlarged (the default).
    #[default]
    ScaleDown,
    /// Fit inside the box, aspect kept, enlarged if needed.
    Contain,
    /// Fill the box, aspect kept, then crop the overflow (centred).
    Cover,
    /// Like `cover`, but never enlarged: a smaller image is cropped only.
    Crop,
    /// Fit inside the box (never enlarged), then pad to exactly the box.
    Pad,
}

impl Fit {
    fn parse(v: &str) -> Option<Fit> {
        Some(match v {
            "scale-down" => Fit::ScaleDown,
            "contain" => Fit::Contain,
            "cover" => Fit::Cover,
            "crop" => Fit::Crop,
            "pad" => Fit::Pad,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Fit::ScaleDown => "scale-down",
            Fit::Contain => "contain",
            Fit::Cover => "cover",
            Fit::Crop => "crop",
            Fit::Pad => "pad",
        }
    }
}

/// Short sides of `size=s|m|l`.
pub const SIZE_SMALL: u32 = 320;
pub const SIZE_MEDIUM: u32 = 640;
pub const SIZE_LARGE: u32 = 1080;
/// The `size=social` box.
pub const SOCIAL: (u32, u32) = (1200, 630);

/// What the parser allows (from the edge's configuration).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rules {
    /// Largest `w` or `h` (larger values are clamped to it).
    pub max_dimension: u32,
    /// When not empty, the only `w`/`h` values served: a value is rounded
    /// up to the next one listed (or down to the largest), so a crawler
    /// cannot make a new cache entry per pixel.
    pub allowed_dimensions: Vec<u32>,
}

impl Default for Rules {
    fn default() -> Self {
        Rules { max_dimension: 4096, allowed_dimensions: Vec::new() }
    }
}

/// A canonical set of transform parameters. Tone values are in hundredths
/// (100 = unchanged), `blur` and `sharp` in tenths.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Variant {
    pub width: Option<u32>,
    pub height: Option<u32>,
    /// `size=s|m|l`: the short side of the output (when no `w`/`h`).
    pub short_side: Option<u32>,
    pub fit: Fit,
    /// The output format, when it is not the stored one.
    pub format: Option<Format>,
    /// Encoder quality 1–100 (lossy outputs only).
    pub quality: Option<u8>,
    pub brightness: Option<u16>,
    pub contrast: Option<u16>,
    pub gamma: Option<u16>,
    pub saturation: Option<u16>,
    /// Gaussian blur sigma, tenths (1.0–250.0).
    pub blur: Option<u16>,
    /// Sharpening amount, tenths (0.1–10.0).
    pub sharp: Option<u16>,
}

/// The formats a transform may output.
fn output_format(v: &str) -> Option<Format> {
    Some(match v {
        "jpg" | "jpeg" => Format::Jpeg,
        "png" => Format::Png,
        "webp" => Format::Webp,
        "avif" => Format::Avif,
        "gif" => Format::Gif,
        _ => return None,
    })
}

/// A decimal in `[lo, hi]`, in units of `1/scale`; `None` when not a
/// finite number.
fn decimal(v: &str, lo: f64, hi: f64, scale: f64) -> Option<u16> {
    let n: f64 = v.parse().ok()?;
    n.is_finite().then(|| (n.clamp(lo, hi) * scale).round() as u16)
}

impl Variant {
    /// The original: no parameters.
    pub const ORIGINAL: Variant = Variant {
        width: None,
        height: None,
        short_side: None,
        fit: Fit::ScaleDown,
        format: None,
        quality: None,
        brightness: None,
        contrast: None,
        gamma: None,
        saturation: None,
        blur: None,
        sharp: None,
    };

    pub fn is_original(&self) -> bool {
        *self == Variant::ORIGINAL
    }

    /// Read the query of a request target (`path?query`; no query = the
    /// original) for an image stored as `stored` and asked for with the
    /// extension `requested`. Formats that are not transformable are
    /// always served as stored.
    pub fn from_target(target: &[u8], stored: Format, requested: Format, rules: &Rules) -> Variant {
        let Some(at) = target.iter().position(|&b| b == b'?') else {
            // The common request: no query, the stored format's extension.
            if requested == stored || !stored.transformable() {
                return Variant::ORIGINAL;
            }
            return Variant::parse("", stored, requested, rules);
        };
        let query = &target[at + 1..];
        let query = query.split(|&b| b == b'#').next().unwrap_or_default();
        Variant::parse(std::str::from_utf8(query).unwrap_or(""), stored, requested, rules)
    }

    /// See [`Variant::from_target`]; `query` without the `?`.
    pub fn parse(query: &str, stored: Format, requested: Format, rules: &Rules) -> Variant {
        if !stored.transformable() {
            return Variant::ORIGINAL;
        }
        let mut v = Variant::ORIGINAL;
        let (mut size, mut fit, mut format) = (None, None, None);
        let dimension = |s: &str| -> Option<u32> {
            let n: u64 = s.parse().ok()?;
            (n > 0).then(|| rules.snap(n.min(u64::from(rules.max_dimension)) as u32))
        };
        for pair in query.split('&') {
            let (k, val) = pair.split_once('=').unwrap_or((pair, ""));
            match k {
                "size" if size.is_none() => {
                    size = match val {
                        "s" => Some((None, Some(SIZE_SMALL))),
                        "m" => Some((None, Some(SIZE_MEDIUM))),
                        "l" => Some((None, Some(SIZE_LARGE))),
                        "social" => Some((Some(SOCIAL), None)),
                        _ => None,
                    }
                }
                "w" if v.width.is_none() => v.width = dimension(val),
                "h" if v.height.is_none() => v.height = dimension(val),
                "fit" if fit.is_none() => fit = Fit::parse(val),
                "format" if format.is_none() => format = output_format(val),
                "q" if v.quality.is_none() => v.quality = val.parse::<u64>().ok().map(|q| q.clamp(1, 100) as u8),
                "brightness" if v.brightness.is_none() => v.brightness = decimal(val, 0.0, 10.0, 100.0),
                "contrast" if v.contrast.is_none() => v.contrast = decimal(val, 0.0, 10.0, 100.0),
                "gamma" if v.gamma.is_none() => v.gamma = decimal(val, 0.0, 10.0, 100.0),
                "saturation" if v.saturation.is_none() => v.saturation = decimal(val, 0.0, 10.0, 100.0),
                "blur" if v.blur.is_none() => v.blur = decimal(val, 1.0, 250.0, 10.0),
                "sharp" if v.sharp.is_none() => v.sharp = decimal(val, 0.0, 10.0, 10.0),
                _ => {}
            }
        }
        // `w`/`h` win over `size`; `social` is a padded box.
        if v.width.is_none() && v.height.is_none() {
            match size {
                Some((Some((w, h)), _)) => {
                    (v.width, v.height) = (Some(w), Some(h));
                    fit = Some(Fit::Pad);
                }
                Some((None, short)) => v.short_side = short,
                _ => {}
            }
        }
        // A fit only matters for a box; `scale-down` is the default.
        if v.width.is_some() || v.height.is_some() {
            v.fit = fit.unwrap_or_default();
        }
        // Filling modes need both sides; with one they are `contain`-like
        // (cover/crop) or `scale-down`-like (pad): name them so.
        if v.width.is_none() || v.height.is_none() {
            v.fit = match v.fit {
                Fit::Cover | Fit::Contain => Fit::Contain,
                Fit::Crop | Fit::Pad | Fit::ScaleDown => Fit::ScaleDown,
            };
        }
        // The output format: a `format` parameter, else the extension.
        let out = format.unwrap_or(if requested.transformable() { requested } else { stored });
        v.format = (out != stored).then_some(out);
        // Unchanged tone is no tone; quality only for lossy outputs.
        for t in [&mut v.brightness, &mut v.contrast, &mut v.gamma, &mut v.saturation] {
            if *t == Some(100) {
                *t = None;
            }
        }
        if v.gamma == Some(0) {
            v.gamma = None; // gamma 0 is undefined: ignored
        }
        if v.sharp == Some(0) {
            v.sharp = None;
        }
        if !matches!(out, Format::Jpeg | Format::Webp | Format::Avif) {
            v.quality = None;
        }
        v
    }

    /// The output format for an image stored as `stored`.
    pub fn output_format(&self, stored: Format) -> Format {
        self.format.unwrap_or(stored)
    }

    /// The canonical spelling: equal for equal variants, empty for the
    /// original. The cache key (with the image id); not a URL query
    /// (`short=` stands for `size=`).
    pub fn key(&self) -> String {
        let mut k = String::new();
        let mut put = |name: &str, value: &dyn std::fmt::Display| {
            if !k.is_empty() {
                k.push('&');
            }
            let _ = write!(k, "{name}={value}");
        };
        if let Some(w) = self.width {
            put("w", &w);
        }
        if let Some(h) = self.height {
            put("h", &h);
        }
        if let Some(s) = self.short_side {
            put("short", &s);
        }
        if self.fit != Fit::ScaleDown {
            put("fit", &self.fit.as_str());
        }
        if let Some(f) = self.format {
            put("format", &f.extension());
        }
        if let Some(q) = self.quality {
            put("q", &q);
        }
        let hundredths = |n: u16| format!("{}.{:02}", n / 100, n % 100);
        let tenths = |n: u16| format!("{}.{}", n / 10, n % 10);
        for (name, value) in [
            ("brightness", self.brightness),
            ("contrast", self.contrast),
            ("gamma", self.gamma),
            ("saturation", self.saturation),
        ] {
            if let Some(n) = value {
                put(name, &hundredths(n));
            }
        }
        if let Some(n) = self.blur {
            put("blur", &tenths(n));
        }
        if let Some(n) = self.sharp {
            put("sharp", &tenths(n));
        }
        k
    }

    /// The output's size for a `src_w`×`src_h` source, and the size the
    /// image is scaled to before a crop or pad (equal to the output
    /// otherwise). Never 0.
    pub fn plan(&self, src_w: u32, src_h: u32) -> Plan {
        let (sw, sh) = (f64::from(src_w.max(1)), f64::from(src_h.max(1)));
        let scaled = |k: f64| ((sw * k).round().max(1.0) as u32, (sh * k).round().max(1.0) as u32);
        let same = |wh: (u32, u32)| Plan { scaled: wh, output: wh };
        if let Some(short) = self.short_side {
            // Never enlarged.
            let k = (f64::from(short) / sw.min(sh)).min(1.0);
            return same(scaled(k));
        }
        match (self.width, self.height) {
            (None, None) => same((src_w.max(1), src_h.max(1))),
            (Some(w), None) => {
                let k = f64::from(w) / sw;
                same(scaled(if self.fit == Fit::ScaleDown { k.min(1.0) } else { k }))
            }
            (None, Some(h)) => {
                let k = f64::from(h) / sh;
                same(scaled(if self.fit == Fit::ScaleDown { k.min(1.0) } else { k }))
            }
            (Some(w), Some(h)) => {
                let (bw, bh) = (f64::from(w), f64::from(h));
                let inside = (bw / sw).min(bh / sh);
                let fill = (bw / sw).max(bh / sh);
                match self.fit {
                    Fit::ScaleDown => same(scaled(inside.min(1.0))),
                    Fit::Contain => same(scaled(inside)),
                    Fit::Cover => Plan { scaled: scaled(fill), output: (w, h) },
                    Fit::Crop => {
                        let s = scaled(fill.min(1.0));
                        Plan { scaled: s, output: (w.min(s.0), h.min(s.1)) }
                    }
                    Fit::Pad => Plan { scaled: scaled(inside.min(1.0)), output: (w, h) },
                }
            }
        }
    }

    /// The output's width and height for a `src_w`×`src_h` source.
    pub fn output_size(&self, src_w: u32, src_h: u32) -> (u32, u32) {
        self.plan(src_w, src_h).output
    }
}

/// The geometry of a transform: scale the source to `scaled`, then crop
/// (centred) or pad (centred) to `output`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Plan {
    pub scaled: (u32, u32),
    pub output: (u32, u32),
}

impl Rules {
    fn snap(&self, n: u32) -> u32 {
        if self.allowed_dimensions.is_empty() {
            return n;
        }
        let mut allowed = self.allowed_dimensions.clone();
        allowed.sort_unstable();
        allowed.iter().copied().find(|&a| a >= n).unwrap_or(*allowed.last().expect("not empty"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(q: &str) -> Variant {
        Variant::parse(q, Format::Jpeg, Format::Jpeg, &Rules::default())
    }

    #[test]
    fn no_query_junk_and_defaults_are_the_original() {
        for q in [
            "",
            "utm_source=x",
            "w=abc",
            "w=0",
            "w=-5",
            "fit=cover",
            "fit=scale-down",
            "format=jpg",
            "brightness=1",
            "q=",
            "size=xl",
            "gamma=0",
            "sharp=0",
            "brightness=nan",
            "&&=&",
        ] {
            assert!(parse(q).is_original(), "{q:?} -> {:?}", parse(q));
            assert_eq!(parse(q).key(), "");
        }
        assert!(Variant::from_target(b"/a/b.jpg", Format::Jpeg, Format::Jpeg, &Rules::default()).is_original());
    }

    #[test]
    fn order_and_spelling_do_not_matter() {
        let a = parse("w=800&format=webp&q=80&utm=1");
        let b = parse("q=80.0x&format=webp&w=800&q=80&w=800");
        assert_eq!(a.key(), "w=800&format=webp&q=80");
        assert_eq!(parse("format=webp&q=80&w=800").key(), a.key());
        assert_eq!(b, a, "q=80.0x is not a number: ignored, the next q counts");
        assert_eq!(parse("brightness=1.234&contrast=1.0").key(), "brightness=1.23");
        assert_eq!(parse("brightness=1.231"), parse("brightness=1.229"));
        // The extension says the format too.
        let by_ext = Variant::parse("w=800&q=80", Format::Jpeg, Format::Webp, &Rules::default());
        assert_eq!(by_ext, a);
    }

    #[test]
    fn values_are_clamped() {
        assert_eq!(parse("w=99999").width, Some(4096));
        assert_eq!(parse("q=0").quality, Some(1));
        assert_eq!(parse("q=500").quality, Some(100));
        assert_eq!(parse("blur=0.1").blur, Some(10));
        assert_eq!(parse("blur=9999").blur, Some(2500));
        assert_eq!(parse("saturation=50").saturation, Some(1000));
        // Quality means nothing to a lossless output.
        assert_eq!(parse("format=png&q=50").key(), "format=png");
    }

    #[test]
    fn sizes_and_boxes() {
        assert_eq!(parse("size=m").key(), "short=640");
        assert_eq!(parse("size=m&w=300").key(), "w=300", "w/h win over size");
        assert_eq!(parse("size=social").key(), "w=1200&h=630&fit=pad");
        assert_eq!(parse("w=300&fit=cover").key(), "w=300&fit=contain", "cover needs a box");
        assert_eq!(parse("w=300&h=200&fit=crop").key(), "w=300&h=200&fit=crop");
    }

    #[test]
    fn restricted_dimensions_snap_up() {
        let rules = Rules { max_dimension: 4096, allowed_dimensions: vec![1024, 256, 512] };
        let v = |q| Variant::parse(q, Format::Png, Format::Png, &rules);
        assert_eq!(v("w=300").width, Some(512));
        assert_eq!(v("w=257").width, Some(512));
        assert_eq!(v("w=256").width, Some(256));
        assert_eq!(v("w=3000&h=1").height, Some(256));
        assert_eq!(v("w=3000").width, Some(1024));
    }

    #[test]
    fn untransformable_formats_are_always_the_original() {
        for f in [Format::Svg, Format::Bmp, Format::Ico] {
            assert!(Variant::parse("w=100&format=png", f, f, &Rules::default()).is_original());
        }
    }

    #[test]
    fn output_sizes_for_every_fit() {
        let size = |q: &str| parse(q).output_size(800, 500);
        assert_eq!(size(""), (800, 500));
        assert_eq!(size("size=s"), (512, 320));
        assert_eq!(size("size=m"), (800, 500), "never enlarged");
        assert_eq!(size("w=400"), (400, 250));
        assert_eq!(size("h=100"), (160, 100));
        assert_eq!(size("w=1600"), (800, 500), "scale-down");
        assert_eq!(size("w=1600&fit=contain"), (1600, 1000));
        assert_eq!(size("w=400&h=400"), (400, 250));
        assert_eq!(size("w=400&h=400&fit=contain"), (400, 250));
        assert_eq!(size("w=2000&h=2000&fit=contain"), (2000, 1250));
        assert_eq!(size("w=400&h=400&fit=cover"), (400, 400));
        assert_eq!(parse("w=400&h=400&fit=cover").plan(800, 500).scaled, (640, 400));
        assert_eq!(size("w=400&h=400&fit=crop"), (400, 400));
        assert_eq!(size("w=2000&h=300&fit=crop"), (800, 300), "crop never enlarges");
        assert_eq!(size("w=400&h=400&fit=pad"), (400, 400));
        assert_eq!(parse("w=400&h=400&fit=pad").plan(800, 500).scaled, (400, 250));
        assert_eq!(size("size=social"), (1200, 630));
        assert_eq!(parse("size=social").plan(800, 500).scaled, (800, 500));
        assert_eq!(parse("w=10").output_size(10_000, 1), (10, 1), "never 0");
    }
}
