//! Static files compiled into the binary and served at `/static/{name}`.
//!
//! Each URL a page writes carries a content hash (`?v=...`), so a file can be cached for a year
//! and still change the moment a new build changes it.

use std::collections::HashMap;
use std::sync::LazyLock;

use actix_web::http::header::{self, EntityTag, IfNoneMatch};
use actix_web::{HttpMessage, HttpRequest, HttpResponse, web};
use sha2::{Digest, Sha256};

const CSS: &str = "text/css; charset=utf-8";
const JAVASCRIPT: &str = "text/javascript; charset=utf-8";

/// Safe only because every URL a page uses changes with the content (see `asset_path`).
const CACHE_FOREVER: &str = "public, max-age=31536000, immutable";

/// A file under `static/`, by its path relative to that folder.
struct Asset {
    name: &'static str,
    content_type: &'static str,
    bytes: &'static [u8],
}

/// Every static file a page uses. A unit test fails if a file under `static/` is missing here.
const ASSETS: &[Asset] = &[
    Asset {
        name: "spenza.css",
        content_type: CSS,
        bytes: include_bytes!("../../static/spenza.css"),
    },
    Asset {
        name: "spenza.js",
        content_type: JAVASCRIPT,
        bytes: include_bytes!("../../static/spenza.js"),
    },
    Asset {
        name: "vendor/htmx.min.js",
        content_type: JAVASCRIPT,
        bytes: include_bytes!("../../static/vendor/htmx.min.js"),
    },
    Asset {
        name: "vendor/htmx-ext-ws.js",
        content_type: JAVASCRIPT,
        bytes: include_bytes!("../../static/vendor/htmx-ext-ws.js"),
    },
];

/// An asset with its hash, computed once per process.
struct Fingerprinted {
    asset: &'static Asset,
    sha256: String,
    etag: EntityTag,
}

static FINGERPRINTED: LazyLock<HashMap<&'static str, Fingerprinted>> = LazyLock::new(|| {
    ASSETS
        .iter()
        .map(|asset| {
            let sha256 = hex::encode(Sha256::digest(asset.bytes));
            let etag = EntityTag::new_strong(sha256.clone());
            let fingerprinted = Fingerprinted {
                asset,
                sha256,
                etag,
            };
            (asset.name, fingerprinted)
        })
        .collect()
});

/// The URL of a static file, versioned by its content: `/static/<name>?v=<12 hex digits>`.
///
/// Panics if `name` is not in the table: names are written in templates, so a wrong one is a bug
/// that any test rendering the page finds.
pub fn asset_path(name: &str) -> String {
    let Some(fingerprinted) = FINGERPRINTED.get(name) else {
        panic!("no static file {name:?} in the table in src/dashboard/assets.rs");
    };
    format!("/static/{name}?v={}", &fingerprinted.sha256[..12])
}

/// Mounts `GET` and `HEAD /static/{path}`.
pub fn routes(config: &mut web::ServiceConfig) {
    config
        .route("/static/{path:.*}", web::get().to(serve))
        .route("/static/{path:.*}", web::head().to(serve));
}

/// `?v=` of an asset's URL.
#[derive(Debug, serde::Deserialize)]
pub struct Version {
    v: Option<String>,
}

/// Answers with the file, or `304` if the client already holds it. Only a URL whose `?v=` names
/// this very content may be cached for good: during a rolling deploy an older replica can be
/// asked for a newer version, and must not have its file kept for a year under that URL.
async fn serve(
    request: HttpRequest,
    path: web::Path<String>,
    version: web::Query<Version>,
) -> HttpResponse {
    let Some(fingerprinted) = FINGERPRINTED.get(path.as_str()) else {
        return HttpResponse::NotFound().finish();
    };
    let held = match request.get_header::<IfNoneMatch>() {
        Some(IfNoneMatch::Any) => true,
        // RFC 9110 §13.1.2: If-None-Match compares weakly.
        Some(IfNoneMatch::Items(tags)) => tags.iter().any(|tag| tag.weak_eq(&fingerprinted.etag)),
        None => false,
    };
    let mut response = if held {
        HttpResponse::NotModified()
    } else {
        HttpResponse::Ok()
    };
    response
        .insert_header(header::ETag(fingerprinted.etag.clone()))
        .insert_header((
            header::CACHE_CONTROL,
            if version.v.as_deref() == Some(&fingerprinted.sha256[..12]) {
                CACHE_FOREVER
            } else {
                "no-cache"
            },
        ))
        .insert_header((header::X_CONTENT_TYPE_OPTIONS, "nosniff"));
    if held {
        response.finish()
    } else {
        response
            .insert_header((header::CONTENT_TYPE, fingerprinted.asset.content_type))
            .body(fingerprinted.asset.bytes)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;
    use std::path::Path;

    use super::*;

    /// Every file under `dir`, as a path relative to `root` with `/` separators.
    fn files_under(root: &Path, dir: &Path, found: &mut Vec<String>) {
        for entry in std::fs::read_dir(dir).expect("static/ is readable") {
            let path = entry.expect("a directory entry").path();
            if path.is_dir() {
                files_under(root, &path, found);
            } else {
                let relative = path.strip_prefix(root).unwrap();
                let parts: Vec<_> = relative.iter().map(|p| p.to_str().unwrap()).collect();
                found.push(parts.join("/"));
            }
        }
    }

    #[test]
    fn every_file_under_static_is_in_the_table() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("static");
        let mut on_disk = Vec::new();
        files_under(&root, &root, &mut on_disk);
        let in_table: HashSet<_> = ASSETS.iter().map(|asset| asset.name).collect();
        let missing: Vec<_> = on_disk
            .iter()
            .filter(|name| {
                let documentation = name.starts_with("vendor/")
                    && (name.as_str() == "vendor/README" || name.ends_with(".LICENSE"));
                !documentation && !in_table.contains(name.as_str())
            })
            .collect();
        assert!(missing.is_empty(), "not in ASSETS: {missing:?}");
    }

    #[test]
    fn asset_path_is_the_name_versioned_by_twelve_hex_digits() {
        for asset in ASSETS {
            let path = asset_path(asset.name);
            let (file, version) = path.split_once("?v=").expect("a version query");
            assert_eq!(file, format!("/static/{}", asset.name));
            assert_eq!(version.len(), 12, "{path}");
            assert!(version.bytes().all(|b| b.is_ascii_hexdigit()), "{path}");
        }
    }

    #[test]
    #[should_panic(expected = "no static file \"missing.css\"")]
    fn asset_path_panics_on_a_name_not_in_the_table() {
        asset_path("missing.css");
    }

    #[test]
    fn etags_differ_between_files() {
        let etags: HashSet<_> = FINGERPRINTED
            .values()
            .map(|fingerprinted| fingerprinted.etag.to_string())
            .collect();
        assert_eq!(etags.len(), ASSETS.len());
    }

    #[test]
    fn the_vendor_readme_lists_each_vendored_file_with_its_sha256() {
        let readme = include_str!("../../static/vendor/README");
        for fingerprinted in FINGERPRINTED.values() {
            if let Some(file) = fingerprinted.asset.name.strip_prefix("vendor/") {
                assert!(readme.contains(file), "README names {file}");
                assert!(
                    readme.contains(&fingerprinted.sha256),
                    "README has the SHA-256 of {file}"
                );
            }
        }
    }
}
