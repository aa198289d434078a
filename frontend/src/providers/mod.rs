//! Remote provider adapters, one file per wire format (TensorZero's
//! layout, STYLE.md): each implements [`Provider`] for one deployment
//! (a `model_list` entry's `litellm_params`), translating the OpenAI shape
//! to its provider's and back, streaming included. The router
//! ([`mod@crate::router`]) owns retries, fallbacks and cooldowns; an adapter
//! makes exactly one upstream call per method call.
//!
//! Shared pieces: [`crate::config::params`] (what a deployment says), [`resolve`] (which
//! wire format a model string means), [`http`] (client, error mapping,
//! stream framing), [`check_chat_params`] (`drop_params`),
//! [`request_shapes`] (OpenAI's tool/image/response-format shapes, typed),
//! [`stream_pump`] (the one way a non-OpenAI stream becomes chunks: a
//! `ChunkBuilder` for the chunks, a `StreamTranslator` per format driven
//! by `pump`, cut-stream detection); `/v1/completions` over a
//! chat-only API is [`crate::provider::Provider::completion`]'s default.

pub mod anthropic;
pub mod azure;
pub mod bedrock;
pub mod cohere;
pub mod gemini;
pub mod http;
pub mod ollama;
pub mod openai;
pub mod request_shapes;
pub mod resolve;
pub mod stream_pump;
pub mod upstream;

use crate::config::params::DeploymentParams;
use crate::error::ProviderError;
use crate::fetch::SafeFetcher;
use crate::openai::ChatCompletionRequest;
use crate::provider::Provider;
use resolve::ProviderKind;
use std::sync::Arc;

/// The adapter for one deployment. `model_name` is the name clients use
/// (the `model_list` entry's `model_name`); `params.model` says which
/// provider and upstream model serve it. Image URLs are not fetched (see
/// [`build_with_images`]).
pub fn build(
    model_name: &str,
    params: &DeploymentParams,
    client: &reqwest::Client,
) -> Result<Arc<dyn Provider>, ProviderError> {
    build_with_images(
        model_name,
        params,
        client,
        &Arc::new(SafeFetcher::disabled()),
    )
}

/// [`build`], with `images` fetching the `http(s)` image URLs an adapter
/// must inline (Ollama's); the config's `general_settings.image_url_fetch`
/// says whether it fetches at all.
pub fn build_with_images(
    model_name: &str,
    params: &DeploymentParams,
    client: &reqwest::Client,
    images: &Arc<SafeFetcher>,
) -> Result<Arc<dyn Provider>, ProviderError> {
    let resolved = resolve::resolve(&params.model)?;
    let client = client.clone();
    Ok(match resolved.kind {
        ProviderKind::OpenAi | ProviderKind::OpenAiCompatible(_) => Arc::new(
            openai::OpenAiProvider::new(model_name, resolved, params, client)?,
        ),
        ProviderKind::Azure => Arc::new(azure::AzureProvider::new(
            model_name, resolved, params, client,
        )?),
        ProviderKind::Ollama => Arc::new(ollama::OllamaProvider::new(
            model_name,
            resolved,
            params,
            client,
            Arc::clone(images),
        )?),
        ProviderKind::Anthropic => Arc::new(anthropic::AnthropicProvider::new(
            model_name, resolved, params, client,
        )?),
        ProviderKind::Cohere => Arc::new(cohere::CohereProvider::new(
            model_name, resolved, params, client,
        )?),
        ProviderKind::Gemini | ProviderKind::VertexAi => Arc::new(gemini::GeminiProvider::new(
            model_name, resolved, params, client,
        )?),
        ProviderKind::Bedrock => Arc::new(bedrock::BedrockProvider::new(
            model_name, resolved, params, client,
        )?),
    })
}

/// Every OpenAI chat parameter an adapter may or may not translate, with
/// whether `req` sets it. vLLM's sampling extras are listed too: remote
/// providers do not take them.
fn set_chat_params(req: &ChatCompletionRequest) -> Vec<&'static str> {
    let set = [
        ("max_tokens", req.max_tokens.is_some()),
        ("max_completion_tokens", req.max_completion_tokens.is_some()),
        ("temperature", req.temperature.is_some()),
        ("top_p", req.top_p.is_some()),
        ("n", req.n.is_some_and(|n| n != 1)),
        ("stop", req.stop.is_some()),
        ("seed", req.seed.is_some()),
        ("presence_penalty", req.presence_penalty.is_some()),
        ("frequency_penalty", req.frequency_penalty.is_some()),
        ("logprobs", req.logprobs == Some(true)),
        ("top_logprobs", req.top_logprobs.is_some()),
        ("user", req.user.is_some()),
        ("logit_bias", req.logit_bias.is_some()),
        ("tools", req.tools.is_some()),
        ("tool_choice", req.tool_choice.is_some()),
        ("response_format", req.response_format.is_some()),
        ("top_k", req.top_k.is_some()),
        ("min_p", req.min_p.is_some()),
        ("repetition_penalty", req.repetition_penalty.is_some()),
        ("min_tokens", req.min_tokens.is_some()),
        ("ignore_eos", req.ignore_eos.is_some()),
        ("skip_special_tokens", req.skip_special_tokens.is_some()),
        ("stop_token_ids", req.stop_token_ids.is_some()),
        ("chat_template_kwargs", req.chat_template_kwargs.is_some()),
    ];
    set.into_iter()
        .filter_map(|(name, is_set)| is_set.then_some(name))
        .collect()
}

/// LiteLLM's `drop_params`: the parameters `req` sets that are not in
/// `supported`. With `drop` they are left out of the translation (the
/// adapter simply does not read them) and this returns `Ok`; without it
/// the request is a 400 naming them, before anything is sent upstream.
pub fn check_chat_params(
    req: &ChatCompletionRequest,
    provider: &str,
    supported: &[&str],
    drop: bool,
) -> Result<(), ProviderError> {
    let unsupported: Vec<&str> = set_chat_params(req)
        .into_iter()
        .filter(|p| !supported.contains(p))
        .collect();
    if unsupported.is_empty() || drop {
        if !unsupported.is_empty() {
            tracing::debug!(provider, params = ?unsupported, "dropping unsupported parameters");
        }
        return Ok(());
    }
    Err(ProviderError::InvalidRequest {
        message: format!(
            "{provider} does not support parameters: {}. To drop them, set \
             `litellm_settings: {{drop_params: true}}` (or `drop_params: true` on the deployment)",
            unsupported.join(", ")
        ),
        param: unsupported.first().map(|p| (*p).to_owned()),
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;
    use serde_json::json;

    #[test]
    fn unsupported_params_are_named_unless_dropped() {
        let req: ChatCompletionRequest = serde_json::from_value(json!({
            "model": "m", "messages": [{"role": "user", "content": "hi"}],
            "temperature": 0.5, "logit_bias": {"1": 2.0}, "seed": 3
        }))
        .unwrap();
        let err = check_chat_params(&req, "anthropic", &["temperature"], false).unwrap_err();
        assert_eq!(err.status(), 400);
        assert!(
            err.to_string().contains("seed, logit_bias") || err.to_string().contains("logit_bias")
        );
        assert!(err.to_string().contains("seed"));
        check_chat_params(&req, "anthropic", &["temperature"], true).unwrap();
        check_chat_params(
            &req,
            "openai",
            &["temperature", "seed", "logit_bias"],
            false,
        )
        .unwrap();
    }
}
