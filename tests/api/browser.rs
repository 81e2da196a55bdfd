//! The browser harness: headless Chromium driven through its own chromedriver with fantoccini.
//! Each `Browser` has a free loopback port, a fresh profile and a temp directory of its own, so
//! browser tests run in parallel; dropping it (a panic included) leaves no process or file behind.

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::elements::Element;
use fantoccini::error::CmdError;
use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{Value, json};
use uuid::Uuid;

/// How long a helper waits for an element before failing the test.
const WAIT: Duration = Duration::from_secs(15);

/// The screen a page is shown on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Screen {
    /// A 1280x900 window (headless Chromium keeps room for toolbars: the page gets 1280x757).
    Desktop,
    /// A phone's 390x844 touch screen (a current iPhone's CSS viewport) at one device pixel per
    /// CSS pixel. Emulated: Chromium never makes a window narrower than 500 pixels.
    Phone,
}

impl Screen {
    /// Width and height in CSS pixels.
    pub fn size(self) -> (u32, u32) {
        match self {
            Screen::Desktop => (1280, 900),
            Screen::Phone => (390, 844),
        }
    }
}

/// How a browser starts.
#[derive(Debug, Clone, Copy)]
pub struct BrowserOptions {
    /// Whether pages may run scripts; off is Chrome's "block JavaScript" content setting.
    pub javascript: bool,
    /// The screen pages are laid out for.
    pub screen: Screen,
}

impl Default for BrowserOptions {
    fn default() -> Self {
        BrowserOptions {
            javascript: true,
            screen: Screen::Desktop,
        }
    }
}

/// Headless Chromium behind a chromedriver of its own.
pub struct Browser {
    client: Option<Client>,
    driver: Option<Child>,
    /// Holds the profile, a `HOME` for Chromium's crash handler and caches, and chromedriver's log.
    dir: PathBuf,
}

impl Browser {
    /// Starts a desktop-sized browser with JavaScript on.
    pub async fn start() -> Browser {
        Browser::start_with(BrowserOptions::default()).await
    }

    /// Starts a browser as `options` say.
    pub async fn start_with(options: BrowserOptions) -> Browser {
        let dir = std::env::temp_dir().join(format!("spenza-browser-{}", Uuid::new_v4()));
        std::fs::create_dir_all(dir.join("home")).expect("the browser's temp dir is created");
        // From here on, Drop cleans up whatever the start got to.
        let mut browser = Browser {
            client: None,
            driver: None,
            dir,
        };
        let webdriver = browser.spawn_driver().await;
        let client = ClientBuilder::native()
            .capabilities(capabilities(options, &browser.dir.join("profile")))
            .connect(&webdriver)
            .await
            .unwrap_or_else(|error| {
                panic!(
                    "no Chromium session from {webdriver}: {error}\nchromedriver log:\n{}",
                    browser.driver_log()
                )
            });
        browser.client = Some(client);
        browser
    }

    /// Starts chromedriver on a free loopback port and returns its URL once it reports ready.
    async fn spawn_driver(&mut self) -> String {
        let log = self.dir.join("chromedriver.log");
        let home = self.dir.join("home");
        let status = reqwest::Client::new();
        // The port is free when chosen but could be taken before chromedriver binds it: try again.
        for _ in 0..3 {
            let port = std::net::TcpListener::bind("127.0.0.1:0")
                .and_then(|listener| listener.local_addr())
                .expect("a free loopback port")
                .port();
            let output = std::fs::File::options()
                .create(true)
                .append(true)
                .open(&log)
                .expect("the chromedriver log opens");
            let driver = Command::new("chromedriver")
                .arg(format!("--port={port}"))
                // Its own process group, which Chromium inherits: Drop kills them all at once.
                .process_group(0)
                // Chromium's crash handler and caches write under HOME: keep them in our dir.
                .env("HOME", &home)
                .env("XDG_CONFIG_HOME", home.join(".config"))
                .env("XDG_CACHE_HOME", home.join(".cache"))
                .stdin(Stdio::null())
                .stdout(output.try_clone().expect("the log handle clones"))
                .stderr(output)
                .spawn()
                .expect("chromedriver starts (scripts/test.sh installs chromium-driver)");
            self.driver = Some(driver);
            let url = format!("http://127.0.0.1:{port}");
            let deadline = Instant::now() + Duration::from_secs(30);
            loop {
                let driver = self.driver.as_mut().expect("chromedriver was spawned");
                if driver.try_wait().expect("chromedriver's state").is_some() {
                    self.driver = None;
                    break;
                }
                if let Ok(response) = status.get(format!("{url}/status")).send().await
                    && let Ok(body) = response.json::<Value>().await
                    && body["value"]["ready"] == true
                {
                    return url;
                }
                assert!(
                    Instant::now() < deadline,
                    "chromedriver on {url} not ready within 30s\nlog:\n{}",
                    self.driver_log()
                );
                tokio::time::sleep(Duration::from_millis(25)).await;
            }
        }
        panic!(
            "chromedriver exited three times\nlog:\n{}",
            self.driver_log()
        )
    }

    fn client(&self) -> &Client {
        self.client.as_ref().expect("the session is open")
    }

    /// Navigates to `url` and waits for the page to load.
    pub async fn goto(&self, url: &str) {
        self.client()
            .goto(url)
            .await
            .unwrap_or_else(|error| panic!("could not open {url}: {error}"));
    }

    /// Runs `script` (a function body: `return` gives its value) in the page.
    pub async fn execute(&self, script: &str) -> Value {
        self.client()
            .execute(script, Vec::new())
            .await
            .unwrap_or_else(|error| panic!("could not run `{script}`: {error}"))
    }

    /// Waits for an element matching `css`; fails with the URL and the start of the page.
    pub async fn wait_for(&self, css: &str) -> Element {
        match self
            .client()
            .wait()
            .at_most(WAIT)
            .for_element(Locator::Css(css))
            .await
        {
            Ok(element) => element,
            Err(error) => {
                let why = match error {
                    CmdError::WaitTimeout => format!("within {WAIT:?}"),
                    error => format!("({error})"),
                };
                let client = self.client();
                let url = match client.current_url().await {
                    Ok(url) => url.to_string(),
                    Err(error) => format!("an unknown URL ({error})"),
                };
                let page = client
                    .source()
                    .await
                    .unwrap_or_else(|error| error.to_string());
                panic!(
                    "no element matches `{css}` at {url} {why}; the page:\n{}",
                    snippet(&page)
                )
            }
        }
    }

    /// Clicks the element matching `css`, once it is there. An element htmx swapped out between
    /// finding and clicking it is found again, a few times.
    pub async fn click(&self, css: &str) {
        self.on_element(css, "click", async |element| element.click().await)
            .await
    }

    /// Runs `act` on the element matching `css` once it is there; an element swapped out
    /// between finding it and acting on it (htmx, a live update) is found again, a few times.
    async fn on_element<T>(
        &self,
        css: &str,
        what: &str,
        act: impl AsyncFn(fantoccini::elements::Element) -> Result<T, fantoccini::error::CmdError>,
    ) -> T {
        for _ in 0..3 {
            match act(self.wait_for(css).await).await {
                Ok(done) => return done,
                Err(fantoccini::error::CmdError::Standard(error))
                    if error.error == fantoccini::error::ErrorStatus::StaleElementReference => {}
                Err(error) => panic!("could not {what} `{css}`: {error}"),
            }
        }
        panic!("`{css}` was replaced each time, for {what}");
    }

    /// Types `value` into the form field named `name`, replacing what it held.
    pub async fn fill(&self, name: &str, value: &str) {
        let field = self.wait_for(&format!("[name='{name}']")).await;
        field
            .clear()
            .await
            .unwrap_or_else(|error| panic!("could not clear `{name}`: {error}"));
        field
            .send_keys(value)
            .await
            .unwrap_or_else(|error| panic!("could not type into `{name}`: {error}"));
    }

    /// The rendered text of the element matching `css`.
    pub async fn text(&self, css: &str) -> String {
        self.on_element(css, "read the text of", async |element| {
            element.text().await
        })
        .await
    }

    /// The attribute `name` of the element matching `css`, if it has one.
    pub async fn attr(&self, css: &str, name: &str) -> Option<String> {
        self.on_element(css, "read an attribute of", async |element| {
            element.attr(name).await
        })
        .await
    }

    /// The URL the browser is on.
    pub async fn current_url(&self) -> url::Url {
        self.client().current_url().await.expect("the current URL")
    }

    /// Saves a PNG of the viewport at `path`, creating its directories.
    pub async fn screenshot(&self, path: impl AsRef<Path>) {
        let path = path.as_ref();
        let png = self.client().screenshot().await.expect("a screenshot");
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).expect("the screenshot directory is created");
        }
        std::fs::write(path, png)
            .unwrap_or_else(|error| panic!("could not write {}: {error}", path.display()));
    }

    /// Ends the session gracefully, then stops chromedriver and removes the temp dir.
    pub async fn close(mut self) {
        if let Some(client) = self.client.take() {
            client.close().await.expect("the WebDriver session ends");
        }
        tokio::task::spawn_blocking(move || drop(self))
            .await
            .expect("the browser stops");
    }

    /// The last lines chromedriver (and Chromium, through it) wrote.
    fn driver_log(&self) -> String {
        let log = std::fs::read_to_string(self.dir.join("chromedriver.log")).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(40)..].join("\n")
    }

    /// Kills chromedriver, Chromium and its crash handler, and waits until they are gone.
    fn stop_processes(&mut self) {
        let Some(mut driver) = self.driver.take() else {
            return;
        };
        let group = driver.id();
        let _ = Command::new("kill")
            .args(["-KILL", "--", &format!("-{group}")])
            .status();
        let _ = driver.wait();
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let left = self.processes(group);
            if left.is_empty() {
                return;
            }
            if Instant::now() >= deadline {
                // Not a panic: this may run while a failed test unwinds.
                eprintln!("browser processes outlived the test: {left:?}");
                return;
            }
            let _ = Command::new("kill")
                .arg("-KILL")
                .args(left.iter().map(u32::to_string))
                .status();
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Live processes in chromedriver's group, or naming our dir (the crash handler, which
    /// leaves the group with a session of its own).
    fn processes(&self, group: u32) -> Vec<u32> {
        let dir = self.dir.to_string_lossy();
        let Ok(entries) = std::fs::read_dir("/proc") else {
            return Vec::new();
        };
        entries
            .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse::<u32>().ok())
            .filter(|pid| {
                let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
                    return false;
                };
                // After the command's ")": state, parent, process group. Zombies are gone.
                let fields: Vec<&str> = stat
                    .rsplit_once(')')
                    .map_or("", |(_, rest)| rest)
                    .split_whitespace()
                    .collect();
                if fields.len() < 3 || matches!(fields[0], "Z" | "X") {
                    return false;
                }
                fields[2] == group.to_string()
                    || std::fs::read(format!("/proc/{pid}/cmdline"))
                        .is_ok_and(|cmdline| String::from_utf8_lossy(&cmdline).contains(&*dir))
            })
            .collect()
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        // A session still open here belongs to a test that failed before `close`: dropping the
        // client asks chromedriver to end it, and the kill below does not wait for that.
        drop(self.client.take());
        self.stop_processes();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Chromium headless with a fresh profile, and nothing that reaches beyond loopback.
fn capabilities(options: BrowserOptions, profile: &Path) -> serde_json::Map<String, Value> {
    let (width, height) = options.screen.size();
    let javascript = if options.javascript { 1 } else { 2 };
    let Value::Object(mut capabilities) = json!({
        "goog:chromeOptions": {
            "binary": "/usr/bin/chromium",
            "args": [
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-dev-shm-usage",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--disable-quic",
                "--no-first-run",
                // No name resolves, so nothing Chromium asks for by host name leaves the machine.
                "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
                format!("--window-size={width},{height}"),
                format!("--user-data-dir={}", profile.display()),
            ],
            "prefs": { "profile.managed_default_content_settings.javascript": javascript },
        }
    }) else {
        unreachable!("an object literal")
    };
    if options.screen == Screen::Phone {
        capabilities["goog:chromeOptions"]["mobileEmulation"] = json!({
            "deviceMetrics": {
                "width": width, "height": height, "pixelRatio": 1.0, "mobile": true, "touch": true,
            }
        });
    }
    capabilities
}

/// The start of a page's body (or of the page), whitespace collapsed, for failure messages.
fn snippet(source: &str) -> String {
    let body = source
        .find("<body")
        .map_or(source, |start| &source[start..]);
    let collapsed = body.split_whitespace().collect::<Vec<_>>().join(" ");
    collapsed.chars().take(1500).collect()
}

#[tokio::test]
async fn browser_runs_page_scripts_only_when_javascript_is_on() {
    let page = "data:text/html,<p%20id=probe>off</p>\
                <script>document.getElementById('probe').textContent='on'</script>";
    let (with_scripts, without_scripts) = tokio::join!(
        Browser::start(),
        Browser::start_with(BrowserOptions {
            javascript: false,
            ..BrowserOptions::default()
        })
    );
    with_scripts.goto(page).await;
    without_scripts.goto(page).await;
    assert_eq!(with_scripts.text("#probe").await, "on");
    assert_eq!(without_scripts.text("#probe").await, "off");
    with_scripts.close().await;
    without_scripts.close().await;
}
