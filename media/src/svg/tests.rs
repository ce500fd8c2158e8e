//! The SVG rules, through `inspect`: size, safety, well-formedness.

use imgcdn_shared::Format;

use crate::testutil::*;
use crate::{inspect, InspectError, Limits};

#[test]
fn a_safe_svg_is_accepted_with_its_size() {
    let doc = r##"<?xml version="1.0" encoding="UTF-8"?>
<!DOCTYPE svg PUBLIC "-//W3C//DTD SVG 1.1//EN" "http://www.w3.org/Graphics/SVG/1.1/DTD/svg11.dtd">
<!-- made by hand -->
<svg xmlns="http://www.w3.org/2000/svg" xmlns:xlink="http://www.w3.org/1999/xlink"
     width="120px" height="80" viewBox="0 0 12 8">
  <defs>
    <linearGradient id="g"><stop offset="0" stop-color="#fff"/><stop offset="1" stop-color="#000"/></linearGradient>
    <style>.a { fill: url(#g); stroke: url( '#g' ) }</style>
  </defs>
  <metadata><?xpacket begin="" id="W5M0MpCehiHzreSzNTczkc9d"?></metadata>
  <rect class="a" width="12" height="8" style="opacity: .5" transform="rotate(45)"/>
  <use xlink:href="#g" href="#g"/>
  <image href="data:image/png;base64,iVBORw0KGgo=" width="1" height="1"/>
  <a href="#top"><text>Tom &amp; Jerry &#169;</text></a>
  <animate attributeName="opacity" from="0" to="1" dur="1s"/>
</svg>
"##;
    let out = svg(doc).unwrap();
    assert_eq!((out.format, out.width, out.height), (Format::Svg, 120, 80));
    assert_eq!(out.bytes, doc.as_bytes());
    assert!(!out.metadata_stripped);
}

#[test]
fn svg_size_comes_from_width_height_then_viewbox_then_300x150() {
    let cases = [
        (r#"width="2in" height="1in""#, (192, 96)),
        (r#"viewBox="0 0 640 480""#, (640, 480)),
        (r#"width="100%" height="100%" viewBox="0,0,64,48""#, (64, 48)),
        (r#"width="200" viewBox="0 0 100 50""#, (200, 100)),
        (r#"height="10mm""#, (300, 38)),
        ("", (300, 150)),
    ];
    for (attributes, size) in cases {
        let doc = format!(r#"<svg xmlns="http://www.w3.org/2000/svg" {attributes}></svg>"#);
        let out = svg(&doc).unwrap_or_else(|e| panic!("{attributes}: {e}"));
        assert_eq!((out.width, out.height), size, "{attributes}");
    }
    let zero = svg(r#"<svg xmlns="http://www.w3.org/2000/svg" width="0" height="10"/>"#);
    assert!(matches!(zero, Err(InspectError::Malformed(_))), "{zero:?}");
}

#[test]
fn each_unsafe_svg_is_refused() {
    let cases = [
        ("script", r#"<svg xmlns="http://www.w3.org/2000/svg"><script>alert(1)</script></svg>"#),
        (
            "namespaced script",
            r#"<svg xmlns="http://www.w3.org/2000/svg" xmlns:h="http://www.w3.org/1999/xhtml"><h:script>alert(1)</h:script></svg>"#,
        ),
        (
            "foreignObject",
            r#"<svg xmlns="http://www.w3.org/2000/svg"><foreignObject><div xmlns="http://www.w3.org/1999/xhtml">x</div></foreignObject></svg>"#,
        ),
        ("iframe", r#"<svg xmlns="http://www.w3.org/2000/svg"><iframe src="https://example.com"/></svg>"#),
        ("embed", r#"<svg xmlns="http://www.w3.org/2000/svg"><embed src="x.swf"/></svg>"#),
        ("object", r#"<svg xmlns="http://www.w3.org/2000/svg"><object data="x.html"/></svg>"#),
        ("onload", r#"<svg xmlns="http://www.w3.org/2000/svg" onload="alert(1)"/>"#),
        ("onclick", r#"<svg xmlns="http://www.w3.org/2000/svg"><rect ONCLICK="alert(1)"/></svg>"#),
        (
            "javascript href",
            r#"<svg xmlns="http://www.w3.org/2000/svg"><a href="javascript:alert(1)"><text>x</text></a></svg>"#,
        ),
        (
            "obfuscated javascript",
            r#"<svg xmlns="http://www.w3.org/2000/svg" xmlns:xlink="http://www.w3.org/1999/xlink"><a xlink:href=" &#x6A;ava&#9;script:alert(1)"><text>x</text></a></svg>"#,
        ),
        (
            "data html",
            r#"<svg xmlns="http://www.w3.org/2000/svg"><a href="data:text/html,&lt;script&gt;alert(1)&lt;/script&gt;"><text>x</text></a></svg>"#,
        ),
        (
            "nested svg data",
            r#"<svg xmlns="http://www.w3.org/2000/svg"><use href="data:image/svg+xml;base64,PHN2Zz4="/></svg>"#,
        ),
        (
            "external http",
            r#"<svg xmlns="http://www.w3.org/2000/svg"><image href="http://tracker.example/pixel.png"/></svg>"#,
        ),
        (
            "external xlink",
            r#"<svg xmlns="http://www.w3.org/2000/svg" xmlns:xlink="http://www.w3.org/1999/xlink"><use xlink:href="https://evil.example/sprite.svg#icon"/></svg>"#,
        ),
        ("protocol-relative", r#"<svg xmlns="http://www.w3.org/2000/svg"><image href="//evil.example/x.png"/></svg>"#),
        (
            "xxe",
            r#"<?xml version="1.0"?><!DOCTYPE svg [<!ENTITY xxe SYSTEM "file:///etc/passwd">]><svg xmlns="http://www.w3.org/2000/svg"><text>&xxe;</text></svg>"#,
        ),
        (
            "billion laughs",
            r#"<!DOCTYPE svg [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;">]><svg xmlns="http://www.w3.org/2000/svg"><text>&b;</text></svg>"#,
        ),
        (
            "default attribute",
            r#"<!DOCTYPE svg [<!ATTLIST svg onload CDATA "alert(1)">]><svg xmlns="http://www.w3.org/2000/svg"/>"#,
        ),
        (
            "stylesheet",
            r#"<?xml-stylesheet type="text/xsl" href="https://evil.example/x.xsl"?><svg xmlns="http://www.w3.org/2000/svg"/>"#,
        ),
        (
            "css import",
            r#"<svg xmlns="http://www.w3.org/2000/svg"><style>@import url(https://evil.example/x.css);</style></svg>"#,
        ),
        (
            "css url",
            r#"<svg xmlns="http://www.w3.org/2000/svg"><style><![CDATA[rect { fill: url("https://evil.example/p.svg#p") }]]></style></svg>"#,
        ),
        (
            "css escape",
            r#"<svg xmlns="http://www.w3.org/2000/svg"><rect style="background: u\72 l(https://evil.example/x.png)"/></svg>"#,
        ),
        (
            "presentation url",
            r#"<svg xmlns="http://www.w3.org/2000/svg"><rect filter="url(https://evil.example/f.svg#f)"/></svg>"#,
        ),
        (
            "animated href",
            r#"<svg xmlns="http://www.w3.org/2000/svg"><a><set attributeName="href" to="javascript:alert(1)"/><text>x</text></a></svg>"#,
        ),
    ];
    for (name, doc) in cases {
        let result = svg(doc);
        assert!(matches!(result, Err(InspectError::UnsafeSvg(_))), "{name}: {result:?}");
    }
}

#[test]
fn an_svg_over_the_size_limit_is_refused() {
    let limits = Limits { max_svg_bytes: 100, ..Limits::default() };
    let doc = format!(r#"<svg xmlns="http://www.w3.org/2000/svg">{}</svg>"#, "<g/>".repeat(100));
    let result = inspect(doc.into_bytes(), &limits);
    assert!(matches!(result, Err(InspectError::UnsafeSvg(_))), "{result:?}");
}

#[test]
fn broken_svg_is_malformed() {
    let cases = [
        r#"<svg xmlns="http://www.w3.org/2000/svg"><g></svg>"#,
        r#"<svg xmlns="http://www.w3.org/2000/svg"><g>"#,
        r#"<svg xmlns="http://www.w3.org/2000/svg"/><svg/>"#,
        r#"<svg xmlns="http://www.w3.org/2000/svg"><text>&nbsp;</text></svg>"#,
    ];
    for doc in cases {
        let result = svg(doc);
        assert!(matches!(result, Err(InspectError::Malformed(_))), "{doc}: {result:?}");
    }
}
