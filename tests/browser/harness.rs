//! A real Chromium driven through WebDriver (`chromedriver`, Debian's
//! `chromium-driver`), with the checks every page of ours must pass: no
//! request to any host but the control plane and the edge, and a
//! screenshot at phone and desktop width.

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::elements::Element;
use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{json, Value};

use crate::common::{client, eventually, free_addr};

/// Phone and desktop widths every page is looked at (and pictured) in.
pub const PHONE: (u32, u32) = (360, 780);
pub const DESKTOP: (u32, u32) = (1280, 900);

/// Where screenshots go: `$IMGCDN_SCREENSHOTS`, or `target/screenshots`.
pub fn screenshot_dir() -> PathBuf {
    std::env::var_os("IMGCDN_SCREENSHOTS")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("target/screenshots"))
}

/// A headless Chromium session; the driver process is killed on drop.
pub struct Browser {
    driver: Child,
    pub client: Client,
    /// The hosts (`host:port`) pages may make requests to.
    allowed_hosts: Vec<String>,
}

impl Browser {
    /// A browser, or `None` (the test skips, saying so) where `chromedriver`
    /// is not installed. Under CI it must be: `scripts/setup` installs it.
    pub async fn start(allowed: &[&str]) -> Option<Browser> {
        let found = Command::new("chromedriver").arg("--version").output().is_ok_and(|o| o.status.success());
        if !found {
            assert!(std::env::var_os("CI").is_none(), "chromedriver is not installed: scripts/setup installs it");
            eprintln!("SKIPPED: chromedriver is not installed (scripts/setup installs chromium-driver)");
            return None;
        }
        let port = free_addr().port();
        // Its own process group, so the browsers it starts go with it.
        let driver = Command::new("chromedriver")
            .arg(format!("--port={port}"))
            .process_group(0)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start chromedriver");
        let base = format!("http://127.0.0.1:{port}");
        // (It keeps connections open whatever the request says: not `ureq_get`.)
        eventually(Duration::from_secs(20), "chromedriver ready", || async {
            client().get(format!("{base}/status")).send().await.is_ok_and(|r| r.status().is_success())
        })
        .await;
        let mut caps = serde_json::Map::new();
        caps.insert(
            "goog:chromeOptions".into(),
            json!({
                "binary": chromium_binary(),
                "args": ["--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                         "--no-first-run", "--disable-background-networking", "--disable-component-update",
                         "--disable-default-apps", "--disable-sync", "--hide-scrollbars",
                         format!("--window-size={},{}", DESKTOP.0, DESKTOP.1)],
            }),
        );
        let client = ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
            .capabilities(caps)
            .connect(&base)
            .await
            .expect("a WebDriver session");
        client.set_window_size(DESKTOP.0, DESKTOP.1).await.unwrap();
        let allowed_hosts = allowed.iter().map(|u| host_of(u).to_string()).collect();
        Some(Browser { driver, client, allowed_hosts })
    }

    pub async fn goto(&self, url: &str) {
        self.client.goto(url).await.unwrap_or_else(|e| panic!("open {url}: {e}"));
    }

    pub async fn find(&self, css: &str) -> Element {
        self.client
            .wait()
            .at_most(Duration::from_secs(10))
            .for_element(Locator::Css(css))
            .await
            .unwrap_or_else(|e| panic!("no element {css} on the page: {e}"))
    }

    pub async fn click(&self, css: &str) {
        self.find(css).await.click().await.unwrap_or_else(|e| panic!("click {css}: {e}"));
    }

    /// Click a button that asks for confirmation (`data-confirm`) and say yes.
    pub async fn click_and_confirm(&self, css: &str) {
        self.click(css).await;
        self.client.accept_alert().await.expect("a confirmation dialog");
    }

    /// The visible text of the page.
    pub async fn text(&self) -> String {
        self.js("return document.body.innerText").await.as_str().unwrap_or_default().to_string()
    }

    /// The page's heading (its title, under the site's navigation).
    pub async fn heading(&self) -> String {
        self.js("const h = document.querySelector('main h1'); return h ? h.textContent : ''")
            .await
            .as_str()
            .unwrap_or_default()
            .to_string()
    }

    /// Wait until the page's text contains `needle`.
    pub async fn wait_text(&self, needle: &str) {
        let until = Instant::now() + Duration::from_secs(20);
        loop {
            let text = self.text().await;
            if text.contains(needle) {
                return;
            }
            assert!(Instant::now() < until, "{needle:?} never appeared; the page says:\n{text}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    pub async fn js(&self, script: &str) -> Value {
        self.client.execute(script, vec![]).await.unwrap_or_else(|e| panic!("script {script}: {e}"))
    }

    pub async fn path(&self) -> String {
        self.client.current_url().await.unwrap().path().to_string()
    }

    /// Every request the page made (and every resource it names) went to
    /// the control plane or the edge: no font, script, style, image or
    /// beacon from anywhere else.
    pub async fn assert_no_third_party_requests(&self) {
        let urls = self
            .js(
                "return performance.getEntriesByType('resource').map(e => e.name)\
                 .concat(Array.from(document.querySelectorAll('script[src],link[href],img[src],iframe[src],source[src],video[src],audio[src]'))\
                 .map(e => e.src || e.href)).concat([document.URL])",
            )
            .await;
        for u in urls.as_array().unwrap() {
            let u = u.as_str().unwrap();
            if u.starts_with("data:") || u.starts_with("blob:") {
                continue;
            }
            let host = host_of(u);
            assert!(self.allowed_hosts.iter().any(|h| h == host), "a request to {u} ({host}), not one of ours");
        }
    }

    /// The page has no horizontal scroll at its current width.
    pub async fn assert_fits_width(&self) {
        let (scroll, inner) = {
            let v = self.js("return [document.documentElement.scrollWidth, window.innerWidth]").await;
            (v[0].as_u64().unwrap(), v[1].as_u64().unwrap())
        };
        assert!(scroll <= inner, "the page scrolls sideways: {scroll} px of content in a {inner} px window");
    }

    /// Check the page (no third-party request; fits a phone screen) and
    /// picture it at phone and desktop width as `NAME-360.png` and
    /// `NAME-1280.png`.
    pub async fn look_at(&self, name: &str) {
        self.assert_no_third_party_requests().await;
        let dir = screenshot_dir();
        std::fs::create_dir_all(&dir).unwrap();
        for (w, h) in [PHONE, DESKTOP] {
            self.client.set_window_size(w, h).await.unwrap();
            // Layout settles on the next frame.
            self.js("return await new Promise(r => requestAnimationFrame(() => requestAnimationFrame(() => r(1))))")
                .await;
            if w == PHONE.0 {
                self.assert_fits_width().await;
            }
            // The whole page, not only the first screen: as tall as its content.
            let tall = self.js("return document.documentElement.scrollHeight").await.as_u64().unwrap_or(h as u64);
            self.client.set_window_size(w, (tall as u32).clamp(h, 4000)).await.unwrap();
            self.js("return await new Promise(r => requestAnimationFrame(() => requestAnimationFrame(() => r(1))))")
                .await;
            let png = self.client.screenshot().await.unwrap();
            self.client.set_window_size(w, h).await.unwrap();
            std::fs::write(dir.join(format!("{name}-{w}.png")), png).unwrap();
        }
    }

    /// The browser's cookie `name` as a `Cookie:` header value.
    pub async fn cookie(&self, name: &str) -> String {
        let c = self.client.get_named_cookie(name).await.unwrap_or_else(|e| panic!("cookie {name}: {e}"));
        format!("{}={}", c.name(), c.value())
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        // The driver and every browser process it started.
        kill_group(self.driver.id());
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

/// SIGKILL to every process of group `pgid`, named one by one: Debian 12's
/// `kill` (procps 4.0.2) turns `kill -KILL -PGID` into `kill(-1)`, which
/// kills every process the user may signal.
fn kill_group(pgid: u32) {
    let members: Vec<String> = std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let pid: u32 = e.file_name().to_str()?.parse().ok()?;
            let stat = std::fs::read_to_string(e.path().join("stat")).ok()?;
            // "pid (comm) state ppid pgrp …": the command may hold spaces.
            let pgrp: u32 = stat[stat.rfind(')')? + 2..].split(' ').nth(2)?.parse().ok()?;
            (pgrp == pgid && pid > 1).then(|| pid.to_string())
        })
        .collect();
    if !members.is_empty() {
        let _ = Command::new("kill").arg("-KILL").args(&members).status();
    }
}

fn chromium_binary() -> &'static str {
    ["/usr/bin/chromium", "/usr/bin/chromium-browser", "/usr/bin/google-chrome"]
        .into_iter()
        .find(|p| Path::new(p).exists())
        .unwrap_or("chromium")
}

/// `host:port` of a URL.
pub fn host_of(url: &str) -> &str {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    rest.split(['/', '?', '#']).next().unwrap_or(rest)
}

/// XPath of the form control a `<label>` starting with `label` names
/// (wrapped in it, or pointed at by `for`): tests find fields the way a
/// person (or a screen reader) does, so an unlabelled field fails them.
fn labelled(label: &str) -> String {
    let l = format!("//label[starts-with(normalize-space(.), '{label}')]");
    format!("({l}//*[self::input or self::select or self::textarea] | //*[@id and @id = {l}/@for])[1]")
}

impl Browser {
    /// Type into the field labelled `label`.
    pub async fn fill_label(&self, label: &str, text: &str) {
        let e = self.by_label(label).await;
        e.clear().await.ok();
        e.send_keys(text).await.unwrap_or_else(|err| panic!("type into {label:?}: {err}"));
    }

    /// The field labelled `label`.
    pub async fn by_label(&self, label: &str) -> Element {
        let xpath = labelled(label);
        self.client
            .wait()
            .at_most(Duration::from_secs(10))
            .for_element(Locator::XPath(&xpath))
            .await
            .unwrap_or_else(|e| panic!("no field labelled {label:?}: {e}"))
    }

    /// Tick the checkbox labelled `label` (if it is not ticked).
    pub async fn tick(&self, label: &str, on: bool) {
        let e = self.by_label(label).await;
        let checked = e.prop("checked").await.unwrap().as_deref() == Some("true");
        if checked != on {
            e.click().await.unwrap();
        }
    }

    /// Press the button whose text starts with `text`.
    pub async fn press(&self, text: &str) {
        self.button(text).await.click().await.unwrap_or_else(|e| panic!("press {text:?}: {e}"));
    }

    pub async fn button(&self, text: &str) -> Element {
        let xpath = format!("(//button[starts-with(normalize-space(.), '{text}')])[1]");
        self.client
            .wait()
            .at_most(Duration::from_secs(10))
            .for_element(Locator::XPath(&xpath))
            .await
            .unwrap_or_else(|e| panic!("no button {text:?}: {e}"))
    }

    /// Follow the link whose text starts with `text`.
    pub async fn follow(&self, text: &str) {
        let xpath = format!("(//a[starts-with(normalize-space(.), '{text}')])[1]");
        let a = self
            .client
            .wait()
            .at_most(Duration::from_secs(10))
            .for_element(Locator::XPath(&xpath))
            .await
            .unwrap_or_else(|e| panic!("no link {text:?}: {e}"));
        a.click().await.unwrap();
    }

    /// End the session (the browser exits).
    pub async fn close(self) {
        let _ = self.client.clone().close().await;
    }
}
