//! The web console: a page of plain HTML, CSS and JavaScript modules (under
//! `runtime/node/console/`, embedded in the binary at build time) served at `GET /`,
//! `GET /console` and `GET /console/{file}`. It needs no token to load; the page then reads the
//! node's own HTTP API (sending the token the user entered) and draws everything with the DOM's
//! text nodes, never parsing data as HTML.
//!
//! Every answer carries a strict `Content-Security-Policy` (only this origin: no inline script
//! or style, nothing from elsewhere, no framing), `X-Content-Type-Options: nosniff` and
//! `Cache-Control: no-cache` (the assets change with the binary, so a browser revalidates).

use hyper::{
    Response, StatusCode,
    header::{CACHE_CONTROL, CONTENT_TYPE, HeaderName, HeaderValue},
};

use super::body::{Body, full};
use crate::error::{Error, Result};

/// The console's page (`/` and `/console`).
const INDEX: &str = "index.html";

/// The embedded files: name, content type, bytes.
const ASSETS: &[(&str, &str, &[u8])] = &[
    (
        INDEX,
        "text/html; charset=utf-8",
        include_bytes!("../../console/index.html"),
    ),
    (
        "console.css",
        "text/css; charset=utf-8",
        include_bytes!("../../console/console.css"),
    ),
    (
        "app.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../../console/app.js"),
    ),
    (
        "api.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../../console/api.js"),
    ),
    (
        "dom.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../../console/dom.js"),
    ),
    (
        "chart.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../../console/chart.js"),
    ),
    (
        "views.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../../console/views.js"),
    ),
    (
        "entities.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../../console/entities.js"),
    ),
    (
        "icon.svg",
        "image/svg+xml",
        include_bytes!("../../console/icon.svg"),
    ),
];

/// The policy of every console answer: this origin only, nothing inline, no framing.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; \
                   connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/// `GET /` and `GET /console`: the page.
pub(super) fn index() -> Result<Response<Body>> {
    asset(INDEX)
}

/// `GET /console/{file}`: one embedded file, or 404 naming it.
pub(super) fn asset(name: &str) -> Result<Response<Body>> {
    let (_, content_type, bytes) = ASSETS
        .iter()
        .find(|(file, _, _)| *file == name)
        .ok_or_else(|| Error::NotFound(format!("the console has no file `{name}`")))?;
    let mut resp = Response::new(full(*bytes));
    *resp.status_mut() = StatusCode::OK;
    let headers = resp.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    headers.insert(
        HeaderName::from_static("content-security-policy"),
        HeaderValue::from_static(CSP),
    );
    headers.insert(
        HeaderName::from_static("x-content-type-options"),
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        HeaderName::from_static("referrer-policy"),
        HeaderValue::from_static("no-referrer"),
    );
    headers.insert(
        HeaderName::from_static("x-frame-options"),
        HeaderValue::from_static("DENY"),
    );
    Ok(resp)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serves_the_page_and_its_files_with_a_strict_policy() {
        let page = index().unwrap();
        assert_eq!(page.status(), StatusCode::OK);
        let headers = page.headers();
        assert_eq!(headers[CONTENT_TYPE], "text/html; charset=utf-8");
        assert_eq!(headers["x-content-type-options"], "nosniff");
        assert!(
            headers["content-security-policy"]
                .to_str()
                .unwrap()
                .contains("script-src 'self'")
        );
        assert_eq!(
            asset("app.js").unwrap().headers()[CONTENT_TYPE],
            "text/javascript; charset=utf-8"
        );
        assert!(matches!(asset("../Cargo.toml"), Err(Error::NotFound(_))));
    }

    #[test]
    fn the_page_loads_only_embedded_files() {
        let html = std::str::from_utf8(ASSETS[0].2).unwrap();
        for (file, _, bytes) in ASSETS {
            let text = std::str::from_utf8(bytes).unwrap();
            assert!(!text.contains("innerHTML"), "{file} writes HTML");
            assert!(!text.contains("http://") && !text.contains("https://") || *file == "icon.svg");
        }
        assert!(html.contains("/console/app.js"));
    }
}
