//! The Anthropic adapter beyond the shared provider suite
//! (`provider_suite.rs`, which runs chat, streams, tools, errors with 529,
//! completions and a data-URL image on it through aimock): image parts
//! given as inline data and as a URL in one message, which Anthropic takes
//! as `base64` and `url` sources.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;
mod provider_support;

use common::{fixture, Aimock};
use frontend::config::params::DeploymentParams;
use provider_support::{build, chat};
use serde_json::json;

#[tokio::test]
async fn inline_and_url_images_in_one_message() {
    let mock = Aimock::start(&fixture("anthropic.json"), &[]);
    let p = build(DeploymentParams {
        model: "anthropic/claude-3-5-sonnet-20241022".into(),
        api_base: Some(mock.url.clone()),
        api_key: Some("sk-ant-test".into()),
        ..DeploymentParams::default()
    });
    let req = chat(json!({"messages": [{"role": "user", "content": [
        {"type": "text", "text": "describe the image"},
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8DwHwAFBQIAX8jx0gAAAABJRU5ErkJggg=="}},
        {"type": "image_url", "image_url": {"url": "https://example.com/square.png"}}
    ]}]}));
    let resp = p.chat(req).await.unwrap();
    assert_eq!(
        resp.choices[0].message.content.as_deref(),
        Some("A small red square.")
    );
}
