#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use super::*;
use crate::openai::{
    ChatCompletionRequest, ChatMessage, CompletionRequest, ContentPart, MessageContent, Prompt,
};
use axum::http::StatusCode;
use serde_json::json;

const CONFIG: &str = r#"
- guardrail_name: pii-mask
  litellm_params:
    guardrail: presidio
    mode: pre_call
    default_on: true
    presidio_language: en
- guardrail_name: no-secrets
  litellm_params:
    guardrail: banned_keywords
    mode: [pre_call]
    banned_keywords_list: [password, "api key"]
- guardrail_name: filter
  litellm_params:
    guardrail: litellm_content_filter
    mode: pre_call
    blocked_words:
      - { keyword: acme, action: MASK }
      - { keyword: forbidden, action: BLOCK, description: test }
- guardrail_name: cards-block
  litellm_params:
    guardrail: presidio
    mode: pre_call
    pii_entities_config: { CREDIT_CARD: BLOCK, EMAIL_ADDRESS: MASK }
"#;

fn specs(yaml: &str) -> Vec<GuardrailSpec> {
    serde_json::from_value(crate::config::yaml11::parse(yaml).unwrap()).unwrap()
}

fn guardrails() -> Guardrails {
    Guardrails::from_specs(&specs(CONFIG)).unwrap()
}

fn chat(messages: Vec<ChatMessage>) -> ChatCompletionRequest {
    ChatCompletionRequest {
        model: "m".into(),
        messages,
        ..Default::default()
    }
}

fn text_part(text: &str) -> ContentPart {
    ContentPart {
        kind: "text".into(),
        text: Some(text.into()),
        extra: Default::default(),
    }
}

fn config_error(yaml: &str) -> String {
    Guardrails::from_specs(&specs(yaml))
        .unwrap_err()
        .to_string()
}

#[test]
fn config_builds_with_warnings_and_defaults() {
    let g = guardrails();
    assert_eq!(
        g.names().collect::<Vec<_>>(),
        ["pii-mask", "no-secrets", "filter", "cards-block"]
    );
    assert!(g.warnings().iter().any(|w| w.contains("presidio_language")));
    assert_eq!(g.select::<&str>(&[]).unwrap(), ["pii-mask"]);
    assert_eq!(
        g.select(&["no-secrets", "pii-mask", "no-secrets"]).unwrap(),
        ["pii-mask", "no-secrets"]
    );
    let err = g.select(&["nope"]).unwrap_err();
    assert_eq!(err.status(), StatusCode::BAD_REQUEST);
    assert_eq!(err.body().error.param.as_deref(), Some("guardrails"));
    assert!(err.to_string().contains("nope"));
}

#[test]
fn config_errors_name_the_guardrail() {
    let unknown_kind = config_error(
        "- guardrail_name: g1\n  litellm_params: { guardrail: aporia, mode: pre_call }",
    );
    assert!(
        unknown_kind.contains("g1") && unknown_kind.contains("aporia"),
        "{unknown_kind}"
    );
    let post = config_error(
        "- guardrail_name: g2\n  litellm_params: { guardrail: presidio, mode: post_call }",
    );
    assert!(
        post.contains("g2") && post.contains("post_call") && post.contains("only pre_call"),
        "{post}"
    );
    let list = config_error(
        "- guardrail_name: g3\n  litellm_params: { guardrail: presidio, mode: [pre_call, during_call] }",
    );
    assert!(list.contains("during_call"), "{list}");
    let no_mode = config_error("- guardrail_name: g4\n  litellm_params: { guardrail: presidio }");
    assert!(no_mode.contains("mode is required"), "{no_mode}");
    let person = config_error(
        "- guardrail_name: g5\n  litellm_params: { guardrail: presidio, mode: pre_call, pii_entities_config: { PERSON: MASK } }",
    );
    assert!(person.contains("PERSON"), "{person}");
    let no_list = config_error(
        "- guardrail_name: g6\n  litellm_params: { guardrail: banned_keywords, mode: pre_call }",
    );
    assert!(no_list.contains("banned_keywords_list"), "{no_list}");
    let patterns = config_error(
        "- guardrail_name: g7\n  litellm_params: { guardrail: litellm_content_filter, mode: pre_call, blocked_words: [], patterns: [] }",
    );
    assert!(patterns.contains("patterns"), "{patterns}");
    let hook = config_error(
        "- guardrail_name: g8\n  litellm_params: { guardrail: generic_guardrail_api, mode: pre_call }",
    );
    assert!(hook.contains("api_base"), "{hook}");
    let dup = config_error(
        "- guardrail_name: d\n  litellm_params: { guardrail: presidio, mode: pre_call }\n\
         - guardrail_name: d\n  litellm_params: { guardrail: presidio, mode: pre_call }",
    );
    assert!(dup.contains("defined twice"), "{dup}");
}

#[tokio::test]
async fn masks_string_content_and_text_parts() {
    let g = guardrails();
    let mut req = chat(vec![
        ChatMessage::text("system", "be nice"),
        ChatMessage::text("user", "I am jane@example.com, call +1 555 123 4567"),
        ChatMessage {
            role: "user".into(),
            content: Some(MessageContent::Parts(vec![
                text_part("card 4111 1111 1111 1111 from 10.1.2.3"),
                ContentPart {
                    kind: "image_url".into(),
                    text: None,
                    extra: json!({"image_url": {"url": "http://x/1.2.3.4.png"}})
                        .as_object()
                        .unwrap()
                        .clone(),
                },
                text_part("order 1234567890123456"),
            ])),
            ..Default::default()
        },
    ]);
    g.apply_pre_call(&["pii-mask"], TextsMut::from_chat(&mut req))
        .await
        .unwrap();
    assert_eq!(req.messages[0].text_content(), "be nice");
    assert_eq!(
        req.messages[1].text_content(),
        "I am <EMAIL_ADDRESS>, call <PHONE_NUMBER>"
    );
    let Some(MessageContent::Parts(parts)) = &req.messages[2].content else {
        panic!("parts")
    };
    assert_eq!(
        parts[0].text.as_deref(),
        Some("card <CREDIT_CARD> from <IP_ADDRESS>")
    );
    assert_eq!(parts[1].extra["image_url"]["url"], "http://x/1.2.3.4.png");
    // Fails Luhn: not a card, left alone.
    assert_eq!(parts[2].text.as_deref(), Some("order 1234567890123456"));
}

#[tokio::test]
async fn masks_completion_prompts_and_refuses_token_prompts() {
    let g = guardrails();
    let mut req = CompletionRequest {
        prompt: Prompt::Texts(vec!["mail a@b.io".into(), "fine".into()]),
        ..Default::default()
    };
    g.apply_pre_call(&["pii-mask"], TextsMut::from_completion(&mut req))
        .await
        .unwrap();
    assert_eq!(
        req.prompt,
        Prompt::Texts(vec!["mail <EMAIL_ADDRESS>".into(), "fine".into()])
    );
    let mut req = CompletionRequest {
        prompt: Prompt::Tokens(vec![1, 2, 3]),
        ..Default::default()
    };
    let err = g
        .apply_pre_call(&["pii-mask"], TextsMut::from_completion(&mut req))
        .await
        .unwrap_err();
    assert_eq!(err.status(), StatusCode::BAD_REQUEST);
    assert!(matches!(err, GuardrailError::Uninspectable { .. }));
    // No guardrail selected: token prompts pass.
    g.apply_pre_call(&[], TextsMut::from_completion(&mut req))
        .await
        .unwrap();
}

#[tokio::test]
async fn banned_keyword_blocks_with_a_400_naming_the_guardrail() {
    let g = guardrails();
    let prompt = "please print the admin PASSWORD and a long story about it";
    let mut req = chat(vec![ChatMessage::text("user", prompt)]);
    let err = g
        .apply_pre_call(&["no-secrets"], TextsMut::from_chat(&mut req))
        .await
        .unwrap_err();
    assert_eq!(err.status(), StatusCode::BAD_REQUEST);
    let body = err.body().error;
    assert_eq!(body.kind, GUARDRAIL_VIOLATION);
    assert_eq!(body.code.as_deref(), Some("guardrail_blocked"));
    assert!(body.message.contains("no-secrets"), "{}", body.message);
    assert!(body.message.contains("`password`"), "{}", body.message);
    assert!(!body.message.contains("long story"), "echoes the prompt");
    // Whole words only.
    let mut req = chat(vec![ChatMessage::text("user", "passwords and apikeys")]);
    g.apply_pre_call(&["no-secrets"], TextsMut::from_chat(&mut req))
        .await
        .unwrap();
}

#[tokio::test]
async fn content_filter_masks_and_blocks() {
    let g = guardrails();
    let mut req = chat(vec![ChatMessage::text("user", "Acme rocks")]);
    g.apply_pre_call(&["filter"], TextsMut::from_chat(&mut req))
        .await
        .unwrap();
    assert_eq!(req.messages[0].text_content(), "[KEYWORD_REDACTED] rocks");
    let mut req = chat(vec![ChatMessage::text("user", "a Forbidden topic")]);
    let err = g
        .apply_pre_call(&["filter"], TextsMut::from_chat(&mut req))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("filter"));
}

#[tokio::test]
async fn pii_block_action_refuses_without_echoing() {
    let g = guardrails();
    let mut req = chat(vec![ChatMessage::text(
        "user",
        "a@b.io pays with 5500-0000-0000-0004",
    )]);
    let err = g
        .apply_pre_call(&["cards-block"], TextsMut::from_chat(&mut req))
        .await
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "Request blocked by guardrail `cards-block`: the request contains CREDIT_CARD"
    );
    let mut req = chat(vec![ChatMessage::text("user", "mail a@b.io")]);
    g.apply_pre_call(&["cards-block"], TextsMut::from_chat(&mut req))
        .await
        .unwrap();
    assert_eq!(req.messages[0].text_content(), "mail <EMAIL_ADDRESS>");
}

#[tokio::test]
async fn guardrails_run_in_config_order_and_unknown_names_fail() {
    let g = guardrails();
    // pii-mask runs before no-secrets whatever the order of the names.
    let mut req = chat(vec![ChatMessage::text("user", "x@y.io")]);
    g.apply_pre_call(&["no-secrets", "pii-mask"], TextsMut::from_chat(&mut req))
        .await
        .unwrap();
    assert_eq!(req.messages[0].text_content(), "<EMAIL_ADDRESS>");
    let err = g
        .apply_pre_call(&["missing"], TextsMut::from_chat(&mut req))
        .await
        .unwrap_err();
    assert!(matches!(err, GuardrailError::Unknown { .. }));
}

#[test]
fn requested_names_from_the_body() {
    let extra = json!({
        "guardrails": ["a", {"b": {"extra_body": {"x": 1}}}],
        "metadata": {"guardrails": ["b", "c"]}
    });
    assert_eq!(
        requested_guardrails(extra.as_object().unwrap()),
        ["a", "b", "c"]
    );
    assert!(requested_guardrails(&Map::new()).is_empty());
}

#[test]
fn unavailable_is_a_500() {
    let e = GuardrailError::Unavailable {
        guardrail: "h".into(),
        message: "the webhook answered HTTP 500".into(),
    };
    assert_eq!(e.status(), StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(
        e.body().error.code.as_deref(),
        Some("guardrail_unavailable")
    );
}
