//! The website end to end in a real browser: headless Chromium driven
//! through WebDriver against `imgcdn dev` (its control plane and its edge,
//! as processes) on free ports.
//!
//! - [`a_person_uses_the_whole_site_from_sign_up_to_account_deletion`]:
//!   sign up → the verification mail → log in → upload two images with
//!   progress bars → they are in the grid, loaded from the edge → an API
//!   key used with curl → invite a member → change consent → export →
//!   delete the account and cancel the deletion.
//! - [`a_visitor_uploads_without_an_account_and_shares_the_viewer_page`]:
//!   the landing page's anonymous upload, the retention window before and
//!   after, and the viewer page at 360 px without sideways scrolling.
//! - [`an_operator_signs_in_to_the_console`]: the operator console's pages.
//!
//! Every page visited is checked for requests to hosts other than ours
//! and for sideways scrolling at 360 px, and pictured at 360 and 1280 px
//! into `target/screenshots/` (or `$IMGCDN_SCREENSHOTS`).

mod common;
#[path = "browser/harness.rs"]
mod harness;

use std::path::Path;
use std::time::Duration;

use common::*;
use harness::Browser;
use reqwest::StatusCode;
use serde_json::Value;

/// A control-plane config for these tests: defaults.
const CONFIG: &str = "";

fn write_png(dir: &Path, name: &str, w: u32, h: u32, seed: u8) -> String {
    let path = dir.join(name);
    std::fs::write(&path, imgcdn_shared::testing::picture(w, h, seed)).unwrap();
    path.to_string_lossy().into_owned()
}

async fn wait_for_path(b: &Browser, path: &str) {
    for _ in 0..200 {
        if b.path().await == path {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the browser never reached {path}; it is at {}, which says:\n{}", b.path().await, b.text().await);
}

/// The images of the dashboard grid that finished loading, with their URLs.
async fn loaded_grid_images(b: &Browser) -> Vec<(String, u64)> {
    let v = b
        .js("return Array.from(document.querySelectorAll('.grid img')).map(i => [i.currentSrc, i.complete ? i.naturalWidth : 0])")
        .await;
    v.as_array().unwrap().iter().map(|p| (p[0].as_str().unwrap().to_string(), p[1].as_u64().unwrap_or(0))).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_person_uses_the_whole_site_from_sign_up_to_account_deletion() {
    let dir = tempfile::tempdir().unwrap();
    let dev = Dev::start(dir.path(), CONFIG).await;
    let Some(b) = Browser::start(&[&dev.api, &dev.edge]).await else { return };
    let outbox = dev.data.join("outbox");
    let email = "ada@example.com";
    let password = "tulip-Orbit-94-lantern";

    // Sign up.
    b.goto(&format!("{}/signup", dev.api)).await;
    b.look_at("signup").await;
    b.fill_label("Name", "Ada Lovelace").await;
    b.fill_label("Email", email).await;
    b.fill_label("Password", password).await;
    b.fill_label("Password again", password).await;
    b.tick("I am at least 16", true).await;
    b.press("Create account").await;
    b.wait_text("Check your email").await;
    b.look_at("signup-done").await;

    // The verification mail's link, followed and confirmed.
    let token = mailed_token(&outbox, email, "/verify-email");
    b.goto(&format!("{}/verify-email?token={token}", dev.api)).await;
    b.look_at("verify-email").await;
    b.press("Confirm").await;
    b.wait_text("confirmed").await;

    // The way back in without the password.
    b.goto(&format!("{}/forgot-password", dev.api)).await;
    b.look_at("forgot-password").await;

    // Log in: the dashboard.
    b.goto(&format!("{}/login", dev.api)).await;
    b.look_at("login").await;
    b.fill_label("Email", email).await;
    b.fill_label("Password", password).await;
    b.press("Log in").await;
    wait_for_path(&b, "/dashboard").await;

    // Two images at once, each with a progress bar, then the grid.
    let a = write_png(dir.path(), "harbour.png", 640, 480, 1);
    let c = write_png(dir.path(), "lighthouse.png", 480, 640, 2);
    // The page reloads when both are stored: count the progress bars the
    // script shows (and how full they got) where the reload keeps them.
    b.js("new MutationObserver(() => { const bars = document.querySelectorAll('.uploads progress'); \
          sessionStorage.setItem('bars', JSON.stringify(Array.from(bars).map(p => p.value))); }) \
          .observe(document.body, {subtree: true, childList: true, attributes: true}); return 1")
        .await;
    b.find("input[type=file]").await.send_keys(&format!("{a}\n{c}")).await.unwrap();
    b.press("Upload").await;
    b.wait_text("2 images uploaded").await;
    assert_eq!(b.path().await, "/dashboard");
    let bars = b.js("return JSON.parse(sessionStorage.getItem('bars') || '[]')").await;
    assert_eq!(bars, serde_json::json!([100, 100]), "one progress bar per file, each filled: {bars}");
    let mut grid = Vec::new();
    for _ in 0..100 {
        grid = loaded_grid_images(&b).await;
        if grid.len() == 2 && grid.iter().all(|(_, w)| *w > 0) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(grid.len(), 2, "{grid:?}");
    for (src, width) in &grid {
        assert!(src.starts_with(&dev.edge), "grid image {src} is not served by the edge {}", dev.edge);
        assert!(*width > 0, "grid image {src} did not load");
    }
    b.look_at("dashboard").await;

    // One image's page: its URL and sizes, an edited caption.
    b.find(".grid a.thumb").await.click().await.unwrap();
    b.fill_label("Caption", "Harbour at dawn").await;
    b.press("Save").await;
    b.wait_text("Saved").await;
    assert_eq!(b.heading().await, "Harbour at dawn", "the caption is stored: it is the page's title now");
    b.look_at("image").await;

    // An API key, shown once, that works from curl.
    b.goto(&format!("{}/dashboard/keys", dev.api)).await;
    b.fill_label("Name", "CI deploys").await;
    b.press("Create key").await;
    let key = b.find("input#new-key").await.prop("value").await.unwrap().expect("the new key");
    assert!(key.starts_with("img_live_"), "{key}");
    b.look_at("keys").await;
    let out = std::process::Command::new("curl")
        .args(["-sS", "-H", &format!("Authorization: Bearer {key}"), &format!("{}/v1/images", dev.api)])
        .output()
        .expect("curl");
    let listed: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(listed["data"].as_array().map(Vec::len), Some(2), "{listed}");

    // A team of people (the personal team is for one), and a member invited
    // to it: the invitation is listed and mailed.
    b.goto(&format!("{}/dashboard/team", dev.api)).await;
    b.fill_label("Team name", "Analytical Engines").await;
    b.press("Create team").await;
    b.wait_text("owner of Analytical Engines").await;
    b.fill_label("Email", "grace@example.com").await;
    b.press("Send invitation").await;
    b.wait_text("grace@example.com").await;
    mailed_token(&outbox, "grace@example.com", "/accept-invite");
    b.look_at("team").await;

    // The request log shows the curl call made with the key.
    b.goto(&format!("{}/dashboard/requests", dev.api)).await;
    b.wait_text("/v1/images").await;
    b.look_at("requests").await;

    // Marketing consent given in settings, kept.
    b.goto(&format!("{}/settings", dev.api)).await;
    b.tick("Send me news", true).await;
    b.press("Save choices").await;
    b.wait_text("Your privacy choices are saved").await;
    let cookie = b.cookie("imgcdn_session").await;
    let me: Value = client()
        .get(format!("{}/v1/me", dev.api))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(me["marketing_emails"], true, "{me}");
    b.look_at("settings").await;

    // Export: requested, built in the background, downloadable.
    b.press("Export my data").await;
    let mut download = None;
    for _ in 0..100 {
        b.goto(&format!("{}/settings", dev.api)).await;
        let links = b.js("return Array.from(document.querySelectorAll('a')).map(a => a.href).filter(h => h.includes('/download'))").await;
        if let Some(l) = links.as_array().and_then(|l| l.first()).and_then(Value::as_str) {
            download = Some(l.to_string());
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let download = download.expect("the export finishes and is offered for download");
    let r = client().get(&download).header("cookie", &cookie).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let archive = r.bytes().await.unwrap();
    // A tar of JSON files: the account's own record is in it, in the clear.
    assert!(archive.windows(email.len()).any(|w| w == email.as_bytes()), "the export holds the account's data");

    // Delete the account, then change our mind with the mailed link.
    b.goto(&format!("{}/settings", dev.api)).await;
    b.find("#delete-password").await.send_keys(password).await.unwrap();
    b.click_and_confirm("button.danger").await;
    b.wait_text("scheduled").await;
    b.look_at("deletion-scheduled").await;
    let r = client().get(format!("{}/v1/me", dev.api)).header("cookie", &cookie).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED, "signed out everywhere");
    let token = mailed_token(&outbox, email, "/cancel-deletion");
    b.goto(&format!("{}/cancel-deletion?token={token}", dev.api)).await;
    b.press("Cancel the deletion").await;
    b.wait_text("Deletion cancelled").await;
    b.goto(&format!("{}/login", dev.api)).await;
    b.fill_label("Email", email).await;
    b.fill_label("Password", password).await;
    b.press("Log in").await;
    wait_for_path(&b, "/dashboard").await;
    assert_eq!(loaded_grid_images(&b).await.len(), 2, "the images are still there");
    b.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_visitor_uploads_without_an_account_and_shares_the_viewer_page() {
    let dir = tempfile::tempdir().unwrap();
    let dev = Dev::start(dir.path(), CONFIG).await;
    let Some(b) = Browser::start(&[&dev.api, &dev.edge]).await else { return };

    b.goto(&format!("{}/", dev.api)).await;
    // The retention window is said before the upload.
    let before = b.text().await;
    assert!(
        before.contains("deleted after 30 days"),
        "the landing page says how long anonymous uploads are kept (30 days by default):\n{before}"
    );
    b.look_at("landing").await;

    // A photo wider than any phone.
    let wide = write_png(dir.path(), "panorama.png", 1400, 500, 7);
    b.find("input[type=file]").await.send_keys(&wide).await.unwrap();
    b.press("Upload").await;
    b.find(".uploads progress").await;
    b.wait_text("Deleted automatically on").await;
    let bar = b.js("return document.querySelector('.uploads progress').value").await;
    assert_eq!(bar, 100, "the progress bar is full once the upload is stored");
    // The date said is 30 days from now (give or take the test's own run).
    let said = b.js("const t = document.querySelector('.uploads .hint').textContent; \
                     return (Date.parse(t.replace('Deleted automatically on ', '').replace(/\\.$/, '')) - Date.now()) / 86400000")
        .await;
    let days = said.as_f64().expect("a date the browser reads");
    assert!((29.9..30.1).contains(&days), "deleted in {days} days, not 30");
    let link = b.find(".uploads input").await.prop("value").await.unwrap().unwrap();
    assert!(link.starts_with(&dev.edge), "the link to copy is the CDN URL: {link}");
    let r = client().get(&link).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK, "the image is served by the edge");
    b.look_at("landing-uploaded").await;

    // Its viewer page fits a 360 px screen.
    b.follow("View page").await;
    b.find("figure img").await;
    for _ in 0..100 {
        if b.js("return document.querySelector('figure img').complete").await == true {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    b.client.set_window_size(harness::PHONE.0, harness::PHONE.1).await.unwrap();
    b.assert_fits_width().await;
    let shown = b.js("const i = document.querySelector('figure img'); return [i.complete && i.naturalWidth, i.getBoundingClientRect().width, window.innerWidth]").await;
    assert_eq!(shown[0], 1400, "the full image loads: {shown}");
    assert!(
        shown[1].as_f64().unwrap() <= shown[2].as_f64().unwrap(),
        "the image is never wider than the screen: {shown}"
    );
    b.look_at("viewer").await;

    // The public pages around it.
    let pages = [
        ("/privacy", "privacy", "Privacy policy"),
        ("/subprocessors", "subprocessors", "Subprocessors"),
        ("/report", "report", "Report an image"),
        ("/legal/takedowns", "takedowns-policy", "This image is not available"),
        ("/no-such-image", "not-found", "Not found"),
    ];
    for (path, name, title) in pages {
        b.goto(&format!("{}{path}", dev.api)).await;
        assert_eq!(b.heading().await, title, "{path}");
        b.look_at(name).await;
    }
    b.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_signs_in_to_the_console() {
    let dir = tempfile::tempdir().unwrap();
    let dev = Dev::start(dir.path(), CONFIG).await;
    let Some(b) = Browser::start(&[&dev.api, &dev.edge]).await else { return };
    let token = dev.operator();

    b.goto(&format!("{}/ops", dev.api)).await;
    wait_for_path(&b, "/ops/login").await;
    b.look_at("ops-login").await;
    b.fill_label("Operator token", &token).await;
    b.press("Sign in").await;
    wait_for_path(&b, "/ops").await;
    assert_eq!(b.heading().await, "Review queue");
    b.look_at("ops-review").await;
    let pages = [
        ("/ops/takedowns", "ops-takedowns", "Takedowns"),
        ("/ops/edges", "ops-edges", "Edges"),
        ("/ops/reports", "ops-reports", "Reports"),
    ];
    for (path, name, title) in pages {
        b.goto(&format!("{}{path}", dev.api)).await;
        assert_eq!(b.heading().await, title, "{path}");
        b.look_at(name).await;
    }
    // The edge of `imgcdn dev` has called in and applied the log.
    let mut row = String::new();
    for _ in 0..100 {
        b.goto(&format!("{}/ops/edges", dev.api)).await;
        row = b
            .js("const r = Array.from(document.querySelectorAll('tr')).find(r => r.textContent.includes('dev-edge')); \
                 return r ? r.textContent : ''")
            .await
            .as_str()
            .unwrap_or_default()
            .to_string();
        if row.contains("up to date") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(row.contains("up to date"), "the dev edge is in sync: {row:?}");
    b.close().await;
}
