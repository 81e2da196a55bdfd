//! Static files served from the binary: types, validators, long caching, and pages that load
//! nothing from outside the relay.

use spenza::dashboard::assets::asset_path;

use crate::helpers::spawn_app;

const CSS: &str = "text/css; charset=utf-8";
const JAVASCRIPT: &str = "text/javascript; charset=utf-8";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn static_files_are_served_with_their_type_an_etag_and_a_long_cache_lifetime() {
    let app = spawn_app().await;

    for (name, content_type) in [
        ("spenza.css", CSS),
        ("vendor/htmx.min.js", JAVASCRIPT),
        ("vendor/htmx-ext-ws.js", JAVASCRIPT),
    ] {
        let url = format!("{}{}", app.address, asset_path(name));
        let response = app.api.get(&url).send().await.unwrap();
        assert_eq!(response.status(), 200, "{name}");
        let headers = response.headers().clone();
        assert_eq!(headers["content-type"], content_type, "{name}");
        assert_eq!(headers["x-content-type-options"], "nosniff", "{name}");
        assert_eq!(
            headers["cache-control"], "public, max-age=31536000, immutable",
            "{name}"
        );
        let etag = headers["etag"].to_str().unwrap().to_owned();
        assert!(
            etag.starts_with('"') && etag.ends_with('"') && etag.len() > 2,
            "{name}: a strong ETag, got {etag}"
        );
        let on_disk = std::fs::read(format!("{}/static/{name}", env!("CARGO_MANIFEST_DIR")))
            .expect("the file is in the repository");
        assert_eq!(response.bytes().await.unwrap(), on_disk, "{name}");

        let again = app
            .api
            .get(&url)
            .header("if-none-match", &etag)
            .send()
            .await
            .unwrap();
        assert_eq!(again.status(), 304, "{name} with If-None-Match");
        assert_eq!(again.headers()["etag"], etag.as_str(), "{name}");
        assert!(again.bytes().await.unwrap().is_empty(), "{name}: 304 body");

        // Another version's URL (an older replica asked for a newer file) is not kept for good.
        for other in [
            format!("{}/static/{name}", app.address),
            format!("{}/static/{name}?v=000000000000", app.address),
        ] {
            let response = app.api.get(&other).send().await.unwrap();
            assert_eq!(response.status(), 200, "{other}");
            assert_eq!(response.headers()["cache-control"], "no-cache", "{other}");
        }
        let head = app.api.head(&url).send().await.unwrap();
        assert_eq!(head.status(), 200, "HEAD {name}");
        assert_eq!(head.headers()["etag"], etag.as_str(), "HEAD {name}");
    }

    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_not_in_the_binary_is_404() {
    let app = spawn_app().await;

    for path in [
        "/static/missing.js",
        "/static/vendor/README",
        "/static/vendor/htmx.org.LICENSE",
    ] {
        let response = app
            .api
            .get(format!("{}{path}", app.address))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 404, "{path}");
    }

    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pages_load_their_files_by_versioned_path_and_nothing_from_outside() {
    let app = spawn_app().await;

    let response = app
        .api
        .get(format!("{}/login", app.address))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let page = response.text().await.unwrap();

    let stylesheet = asset_path("spenza.css");
    assert!(
        page.contains(&format!("href=\"{stylesheet}\"")),
        "the page links {stylesheet}:\n{page}"
    );
    for script in ["vendor/htmx.min.js", "spenza.js"] {
        let path = asset_path(script);
        assert!(
            page.contains(&format!("src=\"{path}\"")),
            "the page loads {path}:\n{page}"
        );
    }
    for url in linked_urls(&page) {
        assert!(
            !url.starts_with("http://") && !url.starts_with("https://") && !url.starts_with("//"),
            "the page loads {url} from outside the relay"
        );
    }

    app.shutdown().await;
}

/// The values of every `src` and `href` attribute in `html`, either quote style.
fn linked_urls(html: &str) -> Vec<&str> {
    let mut urls = Vec::new();
    for attribute in ["src=", "href="] {
        for (at, _) in html.match_indices(attribute) {
            let rest = &html[at + attribute.len()..];
            let Some(quote) = rest.chars().next().filter(|c| *c == '"' || *c == '\'') else {
                continue;
            };
            if let Some(end) = rest[1..].find(quote) {
                urls.push(rest[1..=end].trim());
            }
        }
    }
    urls
}
