//! `GET /ui`: the admin UI (keys, teams, spend) as three static files
//! compiled into the binary, so one `engine` serves it with no assets
//! directory and no network beyond its own origin. The page talks to the
//! admin API (`/key/*`, `/team/*`, `/global/spend*`) with the master key the
//! user types; these routes themselves need no key and hold no state.
//!
//! Every answer carries a Content-Security-Policy that allows only `'self'`
//! (no inline script or style, no other origin, no framing), so a value the
//! API returns can never run as code in the page.

use axum::http::header::{
    CACHE_CONTROL, CONTENT_SECURITY_POLICY, CONTENT_TYPE, REFERRER_POLICY, X_CONTENT_TYPE_OPTIONS,
    X_FRAME_OPTIONS,
};
use axum::http::HeaderValue;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;

/// The page, its script and its stylesheet (`frontend/ui/`).
const INDEX_HTML: &str = include_str!("../../ui/index.html");
const APP_JS: &str = include_str!("../../ui/app.js");
const STYLE_CSS: &str = include_str!("../../ui/style.css");

/// Only this origin, for everything; no plugins, no framing, no `<base>`.
const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self'; \
                   connect-src 'self'; object-src 'none'; base-uri 'none'; \
                   form-action 'self'; frame-ancestors 'none'";

/// The UI's paths; they count under the `other` handler label of the HTTP
/// metrics (they are not API calls).
pub const PATHS: [&str; 4] = ["/ui", "/ui/", "/ui/app.js", "/ui/style.css"];

/// The UI routes; stateless, so they merge into any router.
///
/// ```
/// let app: axum::Router = axum::Router::new().merge(frontend::routes::ui::routes());
/// ```
pub fn routes<S: Clone + Send + Sync + 'static>() -> Router<S> {
    Router::new()
        .route(PATHS[0], get(index))
        .route(PATHS[1], get(index))
        .route(PATHS[2], get(app_js))
        .route(PATHS[3], get(style_css))
}

/// `GET /ui` and `GET /ui/`: the page.
pub async fn index() -> Response {
    asset("text/html; charset=utf-8", INDEX_HTML)
}

/// `GET /ui/app.js`: the page's module script.
pub async fn app_js() -> Response {
    asset("text/javascript; charset=utf-8", APP_JS)
}

/// `GET /ui/style.css`: the stylesheet.
pub async fn style_css() -> Response {
    asset("text/css; charset=utf-8", STYLE_CSS)
}

/// One file with its content type and the security headers. `no-cache`
/// (revalidate each time) so a new binary's UI shows at once.
fn asset(content_type: &'static str, body: &'static str) -> Response {
    (
        [
            (CONTENT_TYPE, HeaderValue::from_static(content_type)),
            (CONTENT_SECURITY_POLICY, HeaderValue::from_static(CSP)),
            (X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff")),
            (X_FRAME_OPTIONS, HeaderValue::from_static("DENY")),
            (REFERRER_POLICY, HeaderValue::from_static("no-referrer")),
            (CACHE_CONTROL, HeaderValue::from_static("no-cache")),
        ],
        body,
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;

    /// The UI routes on 127.0.0.1:0, asked over real HTTP.
    async fn serve() -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            axum::serve(listener, routes::<()>()).await.unwrap();
        });
        format!("http://{addr}")
    }

    async fn get_ok(base: &str, path: &str, content_type: &str) -> String {
        let res = reqwest::get(format!("{base}{path}")).await.unwrap();
        assert_eq!(res.status(), 200, "{path}");
        let headers = res.headers();
        assert_eq!(headers[CONTENT_TYPE], content_type, "{path}");
        let csp = headers[CONTENT_SECURITY_POLICY].to_str().unwrap();
        assert!(csp.contains("default-src 'self'"), "{csp}");
        assert!(!csp.contains("unsafe"), "{csp}");
        assert_eq!(headers[X_CONTENT_TYPE_OPTIONS], "nosniff");
        res.text().await.unwrap()
    }

    #[tokio::test]
    async fn the_page_script_and_stylesheet_answer_with_their_types() {
        let base = serve().await;
        for path in ["/ui", "/ui/"] {
            let html = get_ok(&base, path, "text/html; charset=utf-8").await;
            assert!(html.contains(r#"src="/ui/app.js""#), "{path}");
            assert!(html.contains(r#"href="/ui/style.css""#), "{path}");
            assert!(html.contains(r#"id="master-key""#), "{path}");
        }
        let js = get_ok(&base, "/ui/app.js", "text/javascript; charset=utf-8").await;
        assert!(js.contains("/key/generate"));
        let css = get_ok(&base, "/ui/style.css", "text/css; charset=utf-8").await;
        assert!(css.contains("#spend-chart"));
    }

    #[tokio::test]
    async fn other_paths_under_ui_are_not_served() {
        let base = serve().await;
        for path in ["/ui/index.html", "/ui/app.js.map", "/ui/x/style.css"] {
            let res = reqwest::get(format!("{base}{path}")).await.unwrap();
            assert_eq!(res.status(), 404, "{path}");
        }
    }

    /// The page has no inline script or style, which the CSP would block.
    #[test]
    fn the_page_has_nothing_inline() {
        assert!(!INDEX_HTML.contains("<script>"));
        assert!(!INDEX_HTML.contains("<style"));
        assert!(!INDEX_HTML.contains("style=\""));
        for handler in [
            " onclick=",
            " onsubmit=",
            " onload=",
            " onerror=",
            " onchange=",
        ] {
            assert!(
                !INDEX_HTML.contains(handler),
                "inline event handler {handler}"
            );
        }
        assert!(!APP_JS.contains("innerHTML"));
    }
}
