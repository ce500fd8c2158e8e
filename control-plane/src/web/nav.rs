//! Where the browser goes next: `303` after a form, to the login page and
//! back, and only ever to a path of ours. (Below the layout and the
//! session: both send browsers on.)

use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};

/// `303` to the login page, coming back to `next` (a path of ours) after.
pub fn to_login(next: Option<&str>) -> Response {
    let location = match next.and_then(local_path) {
        Some(n) => format!("/login?next={}", super::forms::enc(n)),
        None => "/login".to_string(),
    };
    see_other(&location)
}

/// `303 See Other` to `location` (after a form: the browser GETs it).
pub fn see_other(location: &str) -> Response {
    (StatusCode::SEE_OTHER, [(header::LOCATION, location.to_string())]).into_response()
}

/// `next` if it is a path on this site (`/…`, not `//host` or `/\host`),
/// so a login link cannot send anyone elsewhere.
pub fn local_path(next: &str) -> Option<&str> {
    let ok = next.starts_with('/')
        && !next.starts_with("//")
        && !next.starts_with("/\\")
        && !next.chars().any(|c| c.is_control() || c == '\\');
    ok.then_some(next)
}

#[cfg(test)]
mod tests {
    use super::local_path;

    #[test]
    fn only_our_own_paths_are_followed_after_login() {
        assert_eq!(local_path("/dashboard?x=1"), Some("/dashboard?x=1"));
        for hostile in
            ["//evil.example/", "/\\evil.example", "https://evil.example/", "evil", "/a\r\nSet-Cookie: x", ""]
        {
            assert_eq!(local_path(hostile), None, "{hostile:?}");
        }
    }
}
