//! Model strings, resolved as LiteLLM resolves them: a `provider/` prefix
//! picks the wire format (`anthropic/claude-...`, `azure/<deployment>`,
//! `groq/llama3-...`), and a bare well-known name picks its vendor
//! (`gpt-4o` is OpenAI, `claude-...` Anthropic, `gemini-...` Gemini).
//! Anything else is a 400 naming the prefixes we know.

use crate::error::ProviderError;

/// Which wire format (and default endpoint) a model string means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProviderKind {
    /// OpenAI itself.
    OpenAi,
    /// A service speaking OpenAI's chat-completions format at its own base
    /// URL (groq, together_ai, ..., or `openai/` with an `api_base`).
    OpenAiCompatible(Compatible),
    /// Azure OpenAI: deployment URL, `api-version`, `api-key` header.
    Azure,
    /// Anthropic Messages.
    Anthropic,
    /// Gemini's Generative Language API (`generativelanguage.googleapis.com`).
    Gemini,
    /// Gemini on Vertex AI.
    VertexAi,
    /// Bedrock Converse with SigV4.
    Bedrock,
    /// Ollama's `/api/chat`.
    Ollama,
    /// Cohere v2 chat.
    Cohere,
}

/// The OpenAI-compatible services with a LiteLLM prefix and a default base
/// URL.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compatible {
    Groq,
    TogetherAi,
    FireworksAi,
    DeepSeek,
    Mistral,
    OpenRouter,
    Perplexity,
    Xai,
    HostedVllm,
    LmStudio,
}

impl Compatible {
    /// The LiteLLM prefix (without the slash).
    pub fn prefix(self) -> &'static str {
        match self {
            Self::Groq => "groq",
            Self::TogetherAi => "together_ai",
            Self::FireworksAi => "fireworks_ai",
            Self::DeepSeek => "deepseek",
            Self::Mistral => "mistral",
            Self::OpenRouter => "openrouter",
            Self::Perplexity => "perplexity",
            Self::Xai => "xai",
            Self::HostedVllm => "hosted_vllm",
            Self::LmStudio => "lm_studio",
        }
    }

    /// The default base URL (ending before `/chat/completions`); hosted
    /// vLLM has none, so it needs an `api_base`.
    pub fn default_base(self) -> Option<&'static str> {
        match self {
            Self::Groq => Some("https://api.groq.com/openai/v1"),
            Self::TogetherAi => Some("https://api.together.xyz/v1"),
            Self::FireworksAi => Some("https://api.fireworks.ai/inference/v1"),
            Self::DeepSeek => Some("https://api.deepseek.com/v1"),
            Self::Mistral => Some("https://api.mistral.ai/v1"),
            Self::OpenRouter => Some("https://openrouter.ai/api/v1"),
            Self::Perplexity => Some("https://api.perplexity.ai"),
            Self::Xai => Some("https://api.x.ai/v1"),
            Self::HostedVllm => None,
            Self::LmStudio => Some("http://localhost:1234/v1"),
        }
    }

    const ALL: [Self; 10] = [
        Self::Groq,
        Self::TogetherAi,
        Self::FireworksAi,
        Self::DeepSeek,
        Self::Mistral,
        Self::OpenRouter,
        Self::Perplexity,
        Self::Xai,
        Self::HostedVllm,
        Self::LmStudio,
    ];
}

/// A resolved model string: the wire format and the model name to send
/// upstream (the string without its prefix).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolved {
    /// The wire format.
    pub kind: ProviderKind,
    /// The name the provider knows (`claude-3-5-sonnet-20240620`; for
    /// Azure the deployment name).
    pub upstream_model: String,
}

/// Resolves `model` (a `litellm_params.model`).
pub fn resolve(model: &str) -> Result<Resolved, ProviderError> {
    let resolved = |kind, name: &str| {
        if name.is_empty() {
            Err(ProviderError::invalid(
                "model",
                format!("model string `{model}` names a provider but no model"),
            ))
        } else {
            Ok(Resolved {
                kind,
                upstream_model: name.to_owned(),
            })
        }
    };
    if let Some((prefix, rest)) = model.split_once('/') {
        let kind = match prefix {
            "openai" | "text-completion-openai" => Some(ProviderKind::OpenAi),
            "azure" | "azure_ai" => Some(ProviderKind::Azure),
            "anthropic" => Some(ProviderKind::Anthropic),
            "gemini" => Some(ProviderKind::Gemini),
            "vertex_ai" | "vertex_ai_beta" => Some(ProviderKind::VertexAi),
            "bedrock" => Some(ProviderKind::Bedrock),
            "ollama" | "ollama_chat" => Some(ProviderKind::Ollama),
            "cohere" | "cohere_chat" => Some(ProviderKind::Cohere),
            other => Compatible::ALL
                .into_iter()
                .find(|c| c.prefix() == other)
                .map(ProviderKind::OpenAiCompatible),
        };
        if let Some(kind) = kind {
            return resolved(kind, rest);
        }
    }
    let bare = [
        ("gpt-", ProviderKind::OpenAi),
        ("o1", ProviderKind::OpenAi),
        ("o3", ProviderKind::OpenAi),
        ("o4", ProviderKind::OpenAi),
        ("chatgpt-", ProviderKind::OpenAi),
        ("text-embedding-", ProviderKind::OpenAi),
        ("claude-", ProviderKind::Anthropic),
        ("gemini-", ProviderKind::Gemini),
        ("command-", ProviderKind::Cohere),
        ("embed-", ProviderKind::Cohere),
    ];
    match bare.iter().find(|(p, _)| model.starts_with(p)) {
        Some((_, kind)) => resolved(*kind, model),
        None => Err(ProviderError::invalid(
            "model",
            format!(
                "cannot tell which provider serves `{model}`: prefix it with one of \
                 openai/, azure/, anthropic/, gemini/, vertex_ai/, bedrock/, ollama/, cohere/, \
                 groq/, together_ai/, fireworks_ai/, deepseek/, mistral/, openrouter/, \
                 perplexity/, xai/, hosted_vllm/, lm_studio/"
            ),
        )),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;

    #[test]
    fn prefixes_and_bare_names() {
        let cases = [
            (
                "anthropic/claude-3-haiku",
                ProviderKind::Anthropic,
                "claude-3-haiku",
            ),
            ("azure/my-gpt4o", ProviderKind::Azure, "my-gpt4o"),
            (
                "bedrock/anthropic.claude-3",
                ProviderKind::Bedrock,
                "anthropic.claude-3",
            ),
            ("ollama/llama3", ProviderKind::Ollama, "llama3"),
            ("openai/my-model", ProviderKind::OpenAi, "my-model"),
            (
                "vertex_ai/gemini-1.5-pro",
                ProviderKind::VertexAi,
                "gemini-1.5-pro",
            ),
            (
                "gemini/gemini-2.0-flash",
                ProviderKind::Gemini,
                "gemini-2.0-flash",
            ),
            ("cohere/command-r", ProviderKind::Cohere, "command-r"),
            (
                "groq/llama3-8b",
                ProviderKind::OpenAiCompatible(Compatible::Groq),
                "llama3-8b",
            ),
            (
                "hosted_vllm/meta/llama",
                ProviderKind::OpenAiCompatible(Compatible::HostedVllm),
                "meta/llama",
            ),
            ("gpt-4o", ProviderKind::OpenAi, "gpt-4o"),
            (
                "claude-3-5-sonnet-20240620",
                ProviderKind::Anthropic,
                "claude-3-5-sonnet-20240620",
            ),
            ("gemini-1.5-flash", ProviderKind::Gemini, "gemini-1.5-flash"),
        ];
        for (model, kind, upstream) in cases {
            let r = resolve(model).unwrap();
            assert_eq!(
                (r.kind, r.upstream_model.as_str()),
                (kind, upstream),
                "{model}"
            );
        }
    }

    #[test]
    fn unknown_names_are_a_400() {
        for model in ["llama3", "nosuch/model", "anthropic/"] {
            let err = resolve(model).unwrap_err();
            assert_eq!(err.status(), 400, "{model}");
            assert_eq!(err.body().error.param.as_deref(), Some("model"));
        }
    }
}
