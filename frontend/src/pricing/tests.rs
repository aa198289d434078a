#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use super::*;
use crate::config::ModelEntry;

fn table() -> PriceTable {
    PriceTable::embedded().unwrap()
}

fn approx(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-12 * a.abs().max(b.abs()).max(1.0)
}

#[test]
fn embedded_file_parses_with_meta() {
    let t = table();
    let meta = t.meta().expect("_meta");
    assert!(!meta.figures_as_of.is_empty());
    assert!(meta.sources.len() >= 2);
    for s in &meta.sources {
        assert!(!s.file.is_empty() && !s.read_on.is_empty(), "{s:?}");
    }
    assert!(meta.notes.as_deref().unwrap_or("").contains("change"));
}

#[test]
fn at_least_100_priced_chat_models_and_every_entry_has_a_provider() {
    let t = table();
    let chat = t
        .iter()
        .filter(|(_, p)| p.mode == ModelMode::Chat)
        .filter(|(_, p)| p.input_cost_per_token > 0.0 && p.output_cost_per_token > 0.0)
        .count();
    assert!(chat >= 100, "only {chat} priced chat models");
    for (key, p) in t.iter() {
        assert!(!p.litellm_provider.is_empty(), "{key}");
        assert!(
            p.input_cost_per_token >= 0.0 && p.output_cost_per_token >= 0.0,
            "{key}"
        );
        if !is_local(key) {
            assert!(p.input_cost_per_token > 0.0, "{key} has no input price");
        }
    }
}

#[test]
fn covers_every_provider_asked_for() {
    let t = table();
    let providers: std::collections::HashSet<&str> =
        t.iter().map(|(_, p)| p.litellm_provider.as_str()).collect();
    for want in [
        "openai",
        "azure",
        "anthropic",
        "gemini",
        "vertex_ai-language-models",
        "vertex_ai-anthropic_models",
        "bedrock",
        "bedrock_converse",
        "mistral",
        "groq",
        "together_ai",
        "fireworks_ai",
        "deepseek",
        "xai",
        "perplexity",
        "cohere_chat",
        "ollama",
    ] {
        assert!(providers.contains(want), "no {want} entry");
    }
}

#[test]
fn known_figures_match_litellm() {
    // (key, input, output, max_input, max_output) as in LiteLLM's file.
    let cases = [
        ("gpt-4o", 2.5e-06, 1e-05, 128_000, 16_384),
        ("claude-sonnet-4-5", 3e-06, 1.5e-05, 200_000, 64_000),
        ("gemini/gemini-2.5-pro", 1.25e-06, 1e-05, 1_048_576, 65_536),
        ("amazon.nova-lite-v1:0", 6e-08, 2.4e-07, 300_000, 10_000),
        ("deepseek-chat", 2.8e-07, 4.2e-07, 131_072, 8_192),
    ];
    let t = table();
    for (key, input, output, max_in, max_out) in cases {
        let p = t.get(key).unwrap_or_else(|| panic!("{key} missing"));
        assert!(approx(p.input_cost_per_token, input), "{key}");
        assert!(approx(p.output_cost_per_token, output), "{key}");
        assert_eq!(p.max_input_tokens, Some(max_in), "{key}");
        assert_eq!(p.max_output_tokens, Some(max_out), "{key}");
    }
    let p = t.get("anthropic.claude-3-5-sonnet-20240620-v1:0").unwrap();
    assert!(approx(p.input_cost_per_token, 3e-06));
    assert!(approx(p.output_cost_per_token, 1.5e-05));
    assert_eq!(t.get("ollama/llama3").unwrap().input_cost_per_token, 0.0);
    assert_eq!(
        t.get("text-embedding-3-small").unwrap().mode,
        ModelMode::Embedding
    );
}

#[test]
fn cost_multiplies_tokens() {
    let t = table();
    // gpt-4o: 1000 * 2.5e-6 + 500 * 1e-5 = 0.0025 + 0.005.
    assert!(approx(t.cost("gpt-4o", 1000, 500).unwrap(), 0.0075));
    assert_eq!(t.cost("gpt-4o", 0, 0), Some(0.0));
}

#[test]
fn prefixed_and_unprefixed_forms() {
    let t = table();
    let same = |model: &str, key: &str| {
        assert_eq!(t.lookup(model), t.get(key), "{model} should price as {key}");
        assert!(t.get(key).is_some(), "{key} missing");
    };
    same("openai/gpt-4o", "gpt-4o");
    same("anthropic/claude-sonnet-4-5", "claude-sonnet-4-5");
    same("azure/gpt-4o", "azure/gpt-4o");
    same("gemini/gemini-2.5-pro", "gemini/gemini-2.5-pro");
    same("vertex_ai/gemini-2.5-pro", "gemini-2.5-pro");
    same(
        "vertex_ai/claude-3-5-sonnet@20240620",
        "vertex_ai/claude-3-5-sonnet",
    );
    same(
        "bedrock/anthropic.claude-3-5-sonnet-20240620-v1:0",
        "anthropic.claude-3-5-sonnet-20240620-v1:0",
    );
    same(
        "bedrock/converse/us.anthropic.claude-haiku-4-5-20251001-v1:0",
        "us.anthropic.claude-haiku-4-5-20251001-v1:0",
    );
    // A cross-region profile the file lacks: the in-region price.
    same(
        "bedrock/apac.anthropic.claude-3-5-sonnet-20240620-v1:0",
        "anthropic.claude-3-5-sonnet-20240620-v1:0",
    );
    same("mistral-large-latest", "mistral/mistral-large-latest");
    same("grok-4.3", "xai/grok-4.3");
    same("groq/openai/gpt-oss-120b", "groq/openai/gpt-oss-120b");
    same("cohere_chat/command-r-08-2024", "command-r-08-2024");
    same("ollama_chat/llama3", "ollama/llama3");
    // OpenRouter passes the vendor's price through.
    same("openrouter/openai/gpt-4o", "gpt-4o");
    same(
        "openrouter/anthropic/claude-sonnet-4-5",
        "claude-sonnet-4-5",
    );
    // The regional entry wins over the in-region one when both exist.
    let us = t
        .lookup("bedrock/us.anthropic.claude-sonnet-4-5-20250929-v1:0")
        .unwrap();
    let base = t.get("anthropic.claude-sonnet-4-5-20250929-v1:0").unwrap();
    assert!(us.input_cost_per_token > base.input_cost_per_token);
}

#[test]
fn unknown_models_and_azure_deployments_have_no_price() {
    let t = table();
    for model in [
        "no-such-model",
        "openai/no-such-model",
        "azure/my-prod-deployment",
        "bedrock/us.nosuch.model-v1:0",
        "openrouter/nosuch/model",
        "",
    ] {
        assert_eq!(t.lookup(model), None, "{model}");
        assert_eq!(t.cost(model, 10, 10), None, "{model}");
    }
}

#[test]
fn azure_base_model() {
    let t = table();
    assert_eq!(
        t.lookup_with_base_model("azure/prod-4o", Some("azure/gpt-4o")),
        t.get("azure/gpt-4o")
    );
    assert_eq!(
        t.lookup_with_base_model("azure/gpt-4o-mini", None),
        t.get("azure/gpt-4o-mini")
    );
}

#[test]
fn local_models_cost_zero_unless_priced() {
    let mut t = table();
    assert_eq!(t.cost("engine", 1000, 1000), Some(0.0));
    assert_eq!(t.cost("local/llama-3-8b", 1000, 1000), Some(0.0));
    assert_eq!(t.cost("ollama/some-unlisted-model", 1000, 1000), Some(0.0));
    assert_eq!(t.cost("lm_studio/qwen", 1000, 1000), Some(0.0));
    t.apply_override(
        "local/llama-3-8b",
        &PriceOverride {
            input_cost_per_token: Some(1e-7),
            output_cost_per_token: Some(2e-7),
            base_model: None,
        },
    );
    assert!(approx(t.cost("local/llama-3-8b", 10, 10).unwrap(), 3e-6));
}

#[test]
fn override_wins_and_keeps_the_context_window() {
    let over = PriceOverride {
        input_cost_per_token: Some(1e-6),
        output_cost_per_token: None,
        base_model: None,
    };
    let t = table().with_overrides([("gpt-4o", &over)]);
    let p = t.lookup("gpt-4o").unwrap();
    assert!(approx(p.input_cost_per_token, 1e-6));
    assert!(approx(p.output_cost_per_token, 1e-05));
    assert_eq!(p.max_input_tokens, Some(128_000));
    assert_eq!(p.source.as_deref(), Some("config"));
    // An unknown model priced only by config.
    let over = PriceOverride {
        input_cost_per_token: Some(2e-6),
        output_cost_per_token: Some(4e-6),
        base_model: None,
    };
    let t = t.with_overrides([("hosted_vllm/my-model", &over)]);
    let p = t.lookup("hosted_vllm/my-model").unwrap();
    assert_eq!(p.litellm_provider, "hosted_vllm");
    assert!(approx(t.cost("hosted_vllm/my-model", 1, 1).unwrap(), 6e-6));
    // Nothing to price with: no entry appears.
    let mut t = t;
    t.apply_override("azure/unpriced", &PriceOverride::default());
    assert_eq!(t.lookup("azure/unpriced"), None);
}

#[test]
fn model_list_prices_from_params_model_info_and_base_model() {
    let yaml = r#"
- model_name: a
  litellm_params: { model: openai/my-finetune, input_cost_per_token: 0.000003, output_cost_per_token: 0.000006 }
- model_name: b
  litellm_params: { model: azure/prod-4o }
  model_info: { base_model: azure/gpt-4o }
- model_name: c
  litellm_params: { model: hosted_vllm/llama, input_cost_per_token: 0.000001 }
  model_info: { input_cost_per_token: 0.5, output_cost_per_token: 0.000002 }
"#;
    let entries: Vec<ModelEntry> =
        serde_json::from_value(crate::config::yaml11::parse(yaml).unwrap()).unwrap();
    let mut t = table();
    t.apply_model_list(&entries);
    assert!(approx(t.cost("openai/my-finetune", 1, 1).unwrap(), 9e-6));
    assert_eq!(t.lookup("azure/prod-4o"), t.get("azure/gpt-4o"));
    // litellm_params wins over model_info; model_info fills the rest.
    let p = t.lookup("hosted_vllm/llama").unwrap();
    assert!(approx(p.input_cost_per_token, 1e-6));
    assert!(approx(p.output_cost_per_token, 2e-6));
}

#[test]
fn litellm_style_file_with_extra_fields_loads() {
    let json = r#"{
        "sample_spec": {"mode": "one of ..."},
        "m": {"input_cost_per_token": 1e-6, "litellm_provider": "x", "mode": "embedding",
              "supports_vision": true}
    }"#;
    let t = PriceTable::from_json(json).unwrap();
    assert_eq!(t.len(), 1);
    assert_eq!(t.get("m").unwrap().output_cost_per_token, 0.0);
    let err = PriceTable::from_json(r#"{"m": {"mode": "chat"}}"#).unwrap_err();
    assert!(err.to_string().contains("m:"), "{err}");
    assert!(PriceTable::empty().is_empty());
}
