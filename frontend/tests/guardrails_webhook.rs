//! The webhook guardrail against a real server on 127.0.0.1 playing the
//! user's service (LiteLLM's Generic Guardrail API contract): what it is
//! sent, and how each answer (NONE, BLOCKED, GUARDRAIL_INTERVENED, an error
//! status, silence) is obeyed.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use frontend::guardrails::{GuardrailError, GuardrailSpec, Guardrails, TextsMut};
use frontend::openai::{ChatCompletionRequest, ChatMessage};
use serde_json::{json, Value};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// What the service saw: (x-api-key header, body).
type Seen = Arc<Mutex<Vec<(Option<String>, Value)>>>;

/// The service: its answer depends on the first text, so one server plays
/// every case.
async fn guard(State(seen): State<Seen>, headers: HeaderMap, Json(body): Json<Value>) -> Response {
    let key = headers
        .get("x-api-key")
        .map(|v| v.to_str().unwrap().to_owned());
    seen.lock().unwrap().push((key, body.clone()));
    let first = body["texts"][0].as_str().unwrap_or_default().to_owned();
    match first.as_str() {
        t if t.starts_with("block") => {
            Json(json!({"action": "BLOCKED", "blocked_reason": "no jailbreaks"})).into_response()
        }
        t if t.starts_with("rewrite") => {
            let texts: Vec<String> = body["texts"]
                .as_array()
                .unwrap()
                .iter()
                .map(|t| t.as_str().unwrap().to_uppercase())
                .collect();
            Json(json!({"action": "GUARDRAIL_INTERVENED", "texts": texts})).into_response()
        }
        t if t.starts_with("short") => {
            Json(json!({"action": "GUARDRAIL_INTERVENED", "texts": ["only one"]})).into_response()
        }
        t if t.starts_with("crash") => (StatusCode::INTERNAL_SERVER_ERROR, "boom").into_response(),
        t if t.starts_with("down") => {
            (StatusCode::SERVICE_UNAVAILABLE, "maintenance").into_response()
        }
        t if t.starts_with("weird") => Json(json!({"action": "MAYBE"})).into_response(),
        t if t.starts_with("slow") => {
            tokio::time::sleep(Duration::from_secs(5)).await;
            Json(json!({"action": "NONE"})).into_response()
        }
        _ => Json(json!({"action": "NONE"})).into_response(),
    }
}

/// Starts the service; returns its base URL and what it saw.
async fn start() -> (String, Seen) {
    let seen: Seen = Arc::default();
    let app = Router::new()
        .route("/beta/litellm_basic_guardrail_api", post(guard))
        .with_state(seen.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (format!("http://{addr}"), seen)
}

fn guardrails(base: &str, extra: &str) -> Guardrails {
    let yaml = format!(
        "- guardrail_name: my-hook\n  litellm_params:\n    guardrail: generic_guardrail_api\n    \
         mode: pre_call\n    api_base: {base}\n    api_key: sekret\n    timeout: 0.5\n    \
         additional_provider_specific_params: {{ policy: strict }}\n{extra}"
    );
    let specs: Vec<GuardrailSpec> =
        serde_json::from_value(frontend::config::yaml11::parse(&yaml).unwrap()).unwrap();
    Guardrails::from_specs(&specs).unwrap()
}

fn chat(texts: &[&str]) -> ChatCompletionRequest {
    ChatCompletionRequest {
        model: "m".into(),
        messages: texts
            .iter()
            .map(|t| ChatMessage::text("user", *t))
            .collect(),
        ..Default::default()
    }
}

async fn apply(g: &Guardrails, req: &mut ChatCompletionRequest) -> Result<(), GuardrailError> {
    g.apply_pre_call(&["my-hook"], TextsMut::from_chat(req))
        .await
}

#[tokio::test]
async fn none_passes_and_the_request_has_litellm_shape() {
    let (base, seen) = start().await;
    let g = guardrails(&base, "");
    let mut req = chat(&["hello", "world"]);
    apply(&g, &mut req).await.unwrap();
    assert_eq!(req.messages[0].text_content(), "hello");
    let seen = seen.lock().unwrap();
    let (key, body) = &seen[0];
    assert_eq!(key.as_deref(), Some("sekret"));
    assert_eq!(body["texts"], json!(["hello", "world"]));
    assert_eq!(body["input_type"], "request");
    assert_eq!(body["request_data"], json!({}));
    assert_eq!(
        body["additional_provider_specific_params"],
        json!({"policy": "strict"})
    );
}

#[tokio::test]
async fn blocked_blocks_with_the_reason() {
    let (base, _) = start().await;
    let g = guardrails(&base, "");
    let mut req = chat(&["block me please"]);
    let err = apply(&g, &mut req).await.unwrap_err();
    assert_eq!(err.status(), StatusCode::BAD_REQUEST);
    assert_eq!(
        err.to_string(),
        "Request blocked by guardrail `my-hook`: no jailbreaks"
    );
    assert_eq!(err.body().error.kind, "guardrail_violation");
}

#[tokio::test]
async fn intervened_rewrites_the_texts() {
    let (base, _) = start().await;
    let g = guardrails(&base, "");
    let mut req = chat(&["rewrite this", "and this"]);
    apply(&g, &mut req).await.unwrap();
    assert_eq!(req.messages[0].text_content(), "REWRITE THIS");
    assert_eq!(req.messages[1].text_content(), "AND THIS");
    // A reply with the wrong number of texts is an error, not a guess.
    let mut req = chat(&["short", "two"]);
    let err = apply(&g, &mut req).await.unwrap_err();
    assert!(matches!(err, GuardrailError::Unavailable { .. }), "{err}");
    assert_eq!(req.messages[0].text_content(), "short");
}

#[tokio::test]
async fn errors_and_timeouts_fail_closed_with_a_500() {
    let (base, _) = start().await;
    let g = guardrails(&base, "");
    for text in ["crash", "down", "weird", "slow"] {
        let mut req = chat(&[text]);
        let err = apply(&g, &mut req).await.unwrap_err();
        assert_eq!(
            err.status(),
            StatusCode::INTERNAL_SERVER_ERROR,
            "{text}: {err}"
        );
        assert!(matches!(err, GuardrailError::Unavailable { .. }), "{text}");
        assert!(err.to_string().contains("my-hook"), "{err}");
        assert!(!err.to_string().contains("sekret"), "{err}");
    }
    // Nothing listens here: refused as well.
    let g = guardrails("http://127.0.0.1:9", "");
    let err = apply(&g, &mut chat(&["hi"])).await.unwrap_err();
    assert!(matches!(err, GuardrailError::Unavailable { .. }), "{err}");
}

#[tokio::test]
async fn fail_open_settings_let_requests_through() {
    let (base, _) = start().await;
    // Unreachable (timeout, 503, nothing listening) passes; a 500 does not.
    let g = guardrails(&base, "    unreachable_fallback: fail_open\n");
    for text in ["slow", "down"] {
        apply(&g, &mut chat(&[text])).await.unwrap();
    }
    let err = apply(&g, &mut chat(&["crash"])).await.unwrap_err();
    assert!(matches!(err, GuardrailError::Unavailable { .. }));
    let g = guardrails(
        "http://127.0.0.1:9",
        "    unreachable_fallback: fail_open\n",
    );
    apply(&g, &mut chat(&["hi"])).await.unwrap();
    // fail_on_error: false passes any error, but a verdict still blocks.
    let g = guardrails(&base, "    fail_on_error: false\n");
    apply(&g, &mut chat(&["crash"])).await.unwrap();
    let err = apply(&g, &mut chat(&["block"])).await.unwrap_err();
    assert!(matches!(err, GuardrailError::Blocked { .. }));
}
