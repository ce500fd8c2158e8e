//! SVG: parsed with quick-xml as a stream of events (no tree, no entity
//! expansion), refused at the first thing that could run or load
//! something.

use std::borrow::Cow;

use quick_xml::escape::resolve_predefined_entity;
use quick_xml::events::attributes::Attribute;
use quick_xml::events::{BytesStart, Event};
use quick_xml::{Reader, XmlVersion};

use imgcdn_shared::Format;

use crate::types::{check_pixels, malformed, InspectError, Inspected, Limits};

const BOM: &[u8] = b"\xEF\xBB\xBF";

/// Elements that run script, embed other documents or change how the
/// document loads (in any namespace, compared case-insensitively in
/// case the SVG is ever inlined into HTML).
const FORBIDDEN_ELEMENTS: [&str; 15] = [
    "script",
    "foreignobject",
    "iframe",
    "frame",
    "frameset",
    "embed",
    "object",
    "applet",
    "handler",
    "listener",
    "meta",
    "base",
    "link",
    "form",
    "portal",
];

/// Animation elements: they may not target `href` or an event handler
/// (`<set attributeName="href" to="javascript:…">` is a known bypass).
const ANIMATIONS: [&str; 5] = ["set", "animate", "animatemotion", "animatetransform", "animatecolor"];

/// `data:` URLs of types that cannot carry script.
const SAFE_DATA_TYPES: [&str; 11] = [
    "image/png",
    "image/jpeg",
    "image/jpg",
    "image/gif",
    "image/webp",
    "image/avif",
    "image/bmp",
    "font/",
    "application/font-",
    "application/x-font-",
    "application/vnd.ms-fontobject",
];

/// Text that could be XML: optional BOM, whitespace, then `<`.
pub(crate) fn looks_like_xml(b: &[u8]) -> bool {
    let b = b.strip_prefix(BOM).unwrap_or(b);
    b.iter().find(|c| !c.is_ascii_whitespace()) == Some(&b'<')
}

pub(crate) fn inspect(bytes: Vec<u8>, limits: &Limits) -> Result<Inspected, InspectError> {
    let body = bytes.strip_prefix(BOM).unwrap_or(&bytes);
    let text = match std::str::from_utf8(body) {
        Ok(text) if bytes.len() <= limits.max_svg_bytes => text,
        // Too large or not UTF-8: say so if it is an SVG at all (judged
        // from its start), else it is just not an image.
        _ => {
            let head = &body[..body.len().min(limits.max_svg_bytes)];
            let head = match std::str::from_utf8(head) {
                Ok(s) => s,
                Err(e) => std::str::from_utf8(&head[..e.valid_up_to()]).unwrap_or_default(),
            };
            if !root_is_svg(head) {
                return Err(InspectError::Unsupported);
            }
            return Err(if bytes.len() > limits.max_svg_bytes {
                InspectError::UnsafeSvg(format!(
                    "it is {} bytes; at most {} are accepted",
                    bytes.len(),
                    limits.max_svg_bytes
                ))
            } else {
                malformed("SVG: the text is not UTF-8")
            });
        }
    };
    let (width, height) = check(text)?;
    check_pixels(width, height, limits)?;
    Ok(Inspected { format: Format::Svg, width, height, bytes, metadata_stripped: false })
}

/// Whether the first element of `text` is `<svg>` (a partial document
/// is fine).
fn root_is_svg(text: &str) -> bool {
    let mut reader = Reader::from_str(text);
    loop {
        match reader.read_event() {
            Ok(Event::Start(e) | Event::Empty(e)) => return is_svg(&e),
            Ok(Event::Eof) | Err(_) => return false,
            Ok(_) => {}
        }
    }
}

/// The root's size as [`inspect`] gives it, from the document up to its
/// root element only (for [`crate::probe`]): no size limit, no safety check,
/// the rest of the document unread.
pub(crate) fn root_size_only(bytes: &[u8]) -> Result<(u32, u32), InspectError> {
    let body = bytes.strip_prefix(BOM).unwrap_or(bytes);
    let (text, utf8) = match std::str::from_utf8(body) {
        Ok(text) => (text, true),
        Err(e) => (std::str::from_utf8(&body[..e.valid_up_to()]).unwrap_or_default(), false),
    };
    let mut reader = Reader::from_str(text);
    loop {
        match reader.read_event() {
            Ok(Event::Start(e) | Event::Empty(e)) => {
                if !is_svg(&e) {
                    return Err(InspectError::Unsupported);
                }
                if !utf8 {
                    return Err(malformed("SVG: the text is not UTF-8"));
                }
                return root_size(&e);
            }
            // What `check` lets through before the root.
            Ok(Event::Decl(_) | Event::Comment(_) | Event::DocType(_) | Event::PI(_)) => {}
            Ok(Event::Text(t)) => {
                if !t.trim().is_empty() {
                    return Err(InspectError::Unsupported);
                }
            }
            Ok(Event::End(_) | Event::CData(_) | Event::GeneralRef(_) | Event::Eof) | Err(_) => {
                return Err(InspectError::Unsupported)
            }
        }
    }
}

fn is_svg(e: &BytesStart) -> bool {
    e.local_name().as_ref().eq_ignore_ascii_case("svg")
}

/// Walk the whole document; returns the root's size. Anything before
/// the root that makes it not an SVG is `Unsupported`; an unsafe thing
/// seen before the root is reported once the root shows it is an SVG.
fn check(text: &str) -> Result<(u32, u32), InspectError> {
    let mut reader = Reader::from_str(text);
    let mut size = None;
    let mut unsafe_before_root: Option<String> = None;
    let mut depth = 0usize;
    // Depth of the open <style> element, if any, and its text so far.
    let mut style_depth = None;
    let mut style = String::new();
    // Text or references outside the root: not XML before it (so not an
    // SVG), malformed after it.
    let outside_root = |size: &Option<(u32, u32)>| match size {
        Some(_) => malformed("SVG: content after the root element"),
        None => InspectError::Unsupported,
    };
    loop {
        let event = match reader.read_event() {
            Ok(event) => event,
            Err(e) if size.is_some() => return Err(malformed(format!("SVG: {e}"))),
            Err(_) => return Err(InspectError::Unsupported),
        };
        let (element, empty) = match event {
            Event::Start(e) => (e, false),
            Event::Empty(e) => (e, true),
            Event::End(_) => {
                if style_depth == Some(depth) {
                    check_css(&style)?;
                    style.clear();
                    style_depth = None;
                }
                depth = depth.saturating_sub(1);
                continue;
            }
            Event::Text(t) => {
                if depth == 0 {
                    if !t.trim().is_empty() {
                        return Err(outside_root(&size));
                    }
                } else if style_depth.is_some() {
                    style.push_str(&t.xml10_content());
                }
                continue;
            }
            Event::CData(c) => {
                if depth == 0 {
                    return Err(outside_root(&size));
                }
                if style_depth.is_some() {
                    style.push_str(&c.xml10_content());
                }
                continue;
            }
            Event::GeneralRef(r) => {
                if depth == 0 {
                    return Err(outside_root(&size));
                }
                // Only character references and the five predefined
                // entities exist: a document that declares others is
                // refused at its DOCTYPE.
                let resolved = match r.resolve_char_ref() {
                    Ok(Some(c)) => c.to_string(),
                    Ok(None) => resolve_predefined_entity(&r)
                        .ok_or_else(|| malformed(format!("SVG: undefined entity &{};", &*r)))?
                        .to_string(),
                    Err(e) => return Err(malformed(format!("SVG: {e}"))),
                };
                if style_depth.is_some() {
                    style.push_str(&resolved);
                }
                continue;
            }
            Event::Eof => break,
            Event::Decl(_) | Event::Comment(_) => continue,
            Event::DocType(doctype) => {
                if size.is_some() {
                    return Err(malformed("SVG: a DOCTYPE after the root element"));
                }
                // An internal subset declares entities (XXE, billion
                // laughs) or default attributes (an `onload` on every
                // element); a bare public identifier is harmless.
                if doctype.contains('[') {
                    unsafe_before_root.get_or_insert_with(|| {
                        "it has a DOCTYPE with an internal subset (entity or attribute declarations)".to_string()
                    });
                }
                continue;
            }
            Event::PI(pi) => {
                // xml-stylesheet loads CSS or XSLT (which can script);
                // other instructions (such as XMP's xpacket) do nothing.
                if pi.target().eq_ignore_ascii_case("xml-stylesheet") {
                    let why = "it has an xml-stylesheet processing instruction".to_string();
                    if size.is_some() {
                        return Err(InspectError::UnsafeSvg(why));
                    }
                    unsafe_before_root.get_or_insert(why);
                }
                continue;
            }
        };
        if size.is_none() {
            if !is_svg(&element) {
                return Err(InspectError::Unsupported);
            }
            if let Some(why) = unsafe_before_root.take() {
                return Err(InspectError::UnsafeSvg(why));
            }
            size = Some(root_size(&element)?);
        } else if depth == 0 {
            return Err(malformed("SVG: more than one root element"));
        }
        check_element(&element)?;
        if !empty {
            depth += 1;
            if style_depth.is_none() && element.local_name().as_ref().eq_ignore_ascii_case("style") {
                style_depth = Some(depth);
            }
        }
    }
    if depth > 0 {
        return Err(malformed("SVG: the document ends inside an element (truncated?)"));
    }
    size.ok_or(InspectError::Unsupported)
}

fn unsafe_svg(why: impl Into<String>) -> InspectError {
    InspectError::UnsafeSvg(why.into())
}

fn value_of(attr: &Attribute) -> Result<String, InspectError> {
    attr.normalized_value(XmlVersion::Implicit1_0).map(Cow::into_owned).map_err(|e| malformed(format!("SVG: {e}")))
}

/// Refuse elements and attributes that run script or load things.
fn check_element(e: &BytesStart) -> Result<(), InspectError> {
    let name = e.local_name().as_ref().to_ascii_lowercase();
    if FORBIDDEN_ELEMENTS.contains(&name.as_str()) {
        let shown = e.local_name();
        return Err(unsafe_svg(format!("it contains the element <{}>", shown.as_ref())));
    }
    let animation = ANIMATIONS.contains(&name.as_str());
    for attr in e.attributes() {
        let attr = attr.map_err(|e| malformed(format!("SVG: {e}")))?;
        let key = attr.key.as_ref();
        let local = attr.key.local_name().as_ref().to_ascii_lowercase();
        let value = value_of(&attr)?;
        // Namespace declarations (xmlns:on…) name nothing that runs.
        if local.starts_with("on") && !key.starts_with("xmlns") {
            return Err(unsafe_svg(format!("it has an event-handler attribute ({key})")));
        }
        if matches!(local.as_str(), "href" | "src" | "action" | "formaction") {
            check_reference(&value)?;
        }
        if animation && local == "attributename" {
            let target = value.rsplit(':').next().unwrap_or_default().trim().to_ascii_lowercase();
            if target == "href" || target.starts_with("on") {
                return Err(unsafe_svg(format!("it animates the {} attribute", value.trim())));
            }
        }
        // Presentation attributes and `style` take CSS (fill="url(…)").
        check_css(&value)?;
    }
    Ok(())
}

/// A reference must stay inside the document (`#id`) or be an embedded
/// raster image or font.
fn check_reference(value: &str) -> Result<(), InspectError> {
    // Browsers skip whitespace and control characters inside a URL's
    // scheme ("java\tscript:" runs), so compare without them.
    let url: String = value
        .chars()
        .filter(|c| !c.is_ascii_whitespace() && !c.is_ascii_control())
        .collect::<String>()
        .to_ascii_lowercase();
    if url.is_empty() || url.starts_with('#') {
        return Ok(());
    }
    if let Some(data) = url.strip_prefix("data:") {
        let media_type = data.split([';', ',']).next().unwrap_or_default();
        let safe = SAFE_DATA_TYPES.iter().any(|t| {
            if t.ends_with('/') || t.ends_with('-') {
                media_type.starts_with(t)
            } else {
                media_type == *t
            }
        });
        if safe {
            return Ok(());
        }
        return Err(unsafe_svg(format!(
            "it contains a data: URL of type {}",
            if media_type.is_empty() { "text/plain" } else { media_type }
        )));
    }
    let what = if url.starts_with("javascript:") || url.starts_with("vbscript:") {
        "a script URL"
    } else if url.starts_with("http:") || url.starts_with("https:") || url.starts_with("//") {
        "an external reference"
    } else {
        "a reference outside the document"
    };
    let shown: String = value.trim().chars().take(60).collect();
    Err(unsafe_svg(format!("it contains {what} ({shown})")))
}

/// CSS (a `<style>` element or an attribute value) must not import
/// style sheets or point `url()`s outside the document.
fn check_css(css: &str) -> Result<(), InspectError> {
    // Nothing that loads can be written without one of these.
    if !css.contains(['(', '@', '\\']) {
        return Ok(());
    }
    let css = decode_css_escapes(css).to_ascii_lowercase();
    if css.contains("@import") {
        return Err(unsafe_svg("its CSS imports a style sheet (@import)"));
    }
    // These take URLs as plain strings, which the url() check below
    // would not see.
    for function in ["image-set(", "src("] {
        if css.contains(function) {
            return Err(unsafe_svg(format!("its CSS uses {function})")));
        }
    }
    let mut rest = css.as_str();
    while let Some(i) = rest.find("url(") {
        rest = &rest[i + 4..];
        let argument = rest.trim_start();
        let target = match argument.chars().next() {
            Some(quote @ ('"' | '\'')) => argument[1..].split(quote).next(),
            _ => argument.split(')').next(),
        };
        check_reference(target.unwrap_or_default())?;
    }
    Ok(())
}

/// CSS with its backslash escapes resolved (`u\72l(` is `url(`).
fn decode_css_escapes(css: &str) -> Cow<'_, str> {
    if !css.contains('\\') {
        return Cow::Borrowed(css);
    }
    let mut out = String::with_capacity(css.len());
    let mut chars = css.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        // Up to six hex digits and one optional whitespace, or any
        // other character taken literally.
        let mut code = 0u32;
        let mut digits = 0;
        while digits < 6 {
            match chars.peek().and_then(|h| h.to_digit(16)) {
                Some(d) => {
                    code = code * 16 + d;
                    digits += 1;
                    chars.next();
                }
                None => break,
            }
        }
        if digits == 0 {
            if let Some(next) = chars.next() {
                out.push(next);
            }
            continue;
        }
        out.push(char::from_u32(code).filter(|&c| c != '\0').unwrap_or('\u{FFFD}'));
        if chars.peek().is_some_and(|c| c.is_ascii_whitespace()) {
            chars.next();
        }
    }
    Cow::Owned(out)
}

/// The root's size in CSS pixels: `width`/`height` when they are
/// absolute lengths, else derived from the `viewBox`, else the SVG
/// default of 300 x 150.
fn root_size(e: &BytesStart) -> Result<(u32, u32), InspectError> {
    let (mut width, mut height, mut view_box) = (None, None, None);
    for attr in e.attributes() {
        let attr = attr.map_err(|e| malformed(format!("SVG: {e}")))?;
        match attr.key.as_ref() {
            "width" => width = length(&value_of(&attr)?)?,
            "height" => height = length(&value_of(&attr)?)?,
            "viewBox" => view_box = parse_view_box(&value_of(&attr)?),
            _ => {}
        }
    }
    let (w, h) = match (width, height, view_box) {
        (Some(w), Some(h), _) => (w, h),
        (Some(w), None, Some((vw, vh))) => (w, w * vh / vw),
        (None, Some(h), Some((vw, vh))) => (h * vw / vh, h),
        (None, None, Some(view_box)) => view_box,
        (w, h, None) => (w.unwrap_or(300.0), h.unwrap_or(150.0)),
    };
    Ok((to_pixels(w), to_pixels(h)))
}

/// An absolute length in CSS pixels; `None` for relative lengths (`%`,
/// `em`, `auto`), which have no size outside a page.
fn length(value: &str) -> Result<Option<f64>, InspectError> {
    const UNITS: [(&str, f64); 6] =
        [("px", 1.0), ("pt", 4.0 / 3.0), ("pc", 16.0), ("mm", 96.0 / 25.4), ("cm", 96.0 / 2.54), ("in", 96.0)];
    let value = value.trim().to_ascii_lowercase();
    let (number, factor) = UNITS
        .iter()
        .find_map(|&(unit, factor)| value.strip_suffix(unit).map(|n| (n, factor)))
        .unwrap_or((value.as_str(), 1.0));
    match number.trim().parse::<f64>() {
        Ok(n) if n.is_finite() && n < 0.0 => Err(malformed("SVG: negative width or height")),
        Ok(n) if n.is_finite() => Ok(Some(n * factor)),
        _ => Ok(None),
    }
}

/// The width and height of a `viewBox`, if it is valid and not empty.
fn parse_view_box(value: &str) -> Option<(f64, f64)> {
    let numbers = value
        .split(|c: char| c == ',' || c.is_ascii_whitespace())
        .filter(|s| !s.is_empty())
        .map(str::parse::<f64>)
        .collect::<Result<Vec<_>, _>>()
        .ok()?;
    match numbers[..] {
        [x, y, w, h] if [x, y, w, h].iter().all(|n| n.is_finite()) && w > 0.0 && h > 0.0 => Some((w, h)),
        _ => None,
    }
}

/// Whole pixels: rounded, at least 1 for any positive size, saturating.
fn to_pixels(v: f64) -> u32 {
    if v > 0.0 {
        // `as` saturates at u32::MAX.
        (v.round() as u32).max(1)
    } else {
        0
    }
}

#[cfg(test)]
mod tests;
