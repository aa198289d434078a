//! Which price-table key a LiteLLM model string means.
//!
//! The order, first hit wins:
//! 1. the string itself (`gpt-4o`, `azure/gpt-4o`, `gemini/gemini-2.5-pro`,
//!    `us.anthropic.claude-haiku-4-5-20251001-v1:0`);
//! 2. `openrouter/<vendor>/<model>`: the vendor's model, since OpenRouter
//!    passes the provider's price through (openrouter.ai/docs/faq);
//! 3. by provider prefix:
//!    - `bedrock/`: without the `converse/` or `invoke/` route, then without
//!      a cross-region prefix (`us.`, `eu.`, `apac.`, `global.`, ...): a
//!      profile LiteLLM does not list is priced as the in-region model;
//!    - `vertex_ai/`: the bare name (LiteLLM keys Vertex's Gemini models
//!      bare), then without a `@version` suffix;
//!    - `azure/`, `azure_ai/`: nothing more. A deployment name is the
//!      user's and says nothing certain about the model behind it; that is
//!      what `base_model` is for;
//!    - `gemini/`: nothing more, since the bare Gemini names are Vertex's
//!      entries and may be priced differently;
//!    - `cohere_chat/`, `ollama_chat/`: the `cohere/` and `ollama/` forms;
//!    - every other known prefix (`openai/`, `anthropic/`, `groq/`, ...):
//!      the bare name (`anthropic/claude-sonnet-4-5` is `claude-sonnet-4-5`);
//! 4. a bare name: the prefixed form under the one provider that has it
//!    (`grok-4.3` is `xai/grok-4.3`; two providers listing the name is no
//!    match), and a bare Bedrock id without its cross-region prefix.

/// LiteLLM's Bedrock cross-region inference prefixes.
const BEDROCK_REGION_PREFIXES: &[&str] = &[
    "us-gov.", "us.", "eu.", "apac.", "global.", "jp.", "au.", "ca.", "in.",
];

/// Providers whose LiteLLM keys carry their prefix, tried for a bare name.
const PREFIXED_PROVIDERS: &[&str] = &[
    "gemini",
    "xai",
    "mistral",
    "groq",
    "deepseek",
    "perplexity",
    "together_ai",
    "fireworks_ai",
    "cohere",
];

/// Prefixes whose rest is looked up bare.
const BARE_AFTER_PREFIX: &[&str] = &[
    "openai",
    "text-completion-openai",
    "anthropic",
    "groq",
    "together_ai",
    "fireworks_ai",
    "deepseek",
    "mistral",
    "perplexity",
    "xai",
    "cohere",
    "cohere_chat",
    "ollama",
    "ollama_chat",
    "hosted_vllm",
    "lm_studio",
];

/// The first key for `model` that `exists`, in the order of the module doc.
pub(super) fn candidates(model: &str, exists: impl Fn(&str) -> bool) -> Option<String> {
    resolve(model, &exists, 0)
}

fn resolve(model: &str, exists: &dyn Fn(&str) -> bool, depth: u8) -> Option<String> {
    if exists(model) {
        return Some(model.to_owned());
    }
    // Two levels cover `openrouter/<vendor>/<model>`; the bound keeps a
    // pathological string from recursing further.
    if depth > 1 {
        return None;
    }
    let hit = |key: String| exists(&key).then_some(key);
    let Some((prefix, rest)) = model.split_once('/') else {
        return bare(model, exists);
    };
    match prefix {
        "openrouter" => resolve(rest, exists, depth + 1),
        "bedrock" => {
            let id = rest
                .strip_prefix("converse/")
                .or_else(|| rest.strip_prefix("invoke/"))
                .unwrap_or(rest);
            hit(id.to_owned()).or_else(|| without_region(id).and_then(hit))
        }
        "vertex_ai" | "vertex_ai_beta" => {
            let unversioned = rest.split_once('@').map(|(name, _)| name);
            hit(format!("vertex_ai/{rest}"))
                .or_else(|| hit(rest.to_owned()))
                .or_else(|| unversioned.and_then(|n| hit(format!("vertex_ai/{n}"))))
                .or_else(|| unversioned.and_then(|n| hit(n.to_owned())))
        }
        "azure" | "azure_ai" | "gemini" => None,
        _ if BARE_AFTER_PREFIX.contains(&prefix) => {
            let sibling = match prefix {
                "cohere_chat" => hit(format!("cohere/{rest}")),
                "ollama_chat" => hit(format!("ollama/{rest}")),
                _ => None,
            };
            sibling.or_else(|| hit(rest.to_owned()))
        }
        // An unknown first segment is part of the name (`meta-llama/...`).
        _ => bare(model, exists),
    }
}

/// A name with no known provider prefix.
fn bare(model: &str, exists: &dyn Fn(&str) -> bool) -> Option<String> {
    let mut found = PREFIXED_PROVIDERS
        .iter()
        .map(|p| format!("{p}/{model}"))
        .filter(|k| exists(k));
    if let (Some(only), None) = (found.next(), found.next()) {
        return Some(only);
    }
    without_region(model).filter(|k| exists(k))
}

/// A Bedrock id without its cross-region prefix, if it has one.
fn without_region(id: &str) -> Option<String> {
    BEDROCK_REGION_PREFIXES
        .iter()
        .find_map(|p| id.strip_prefix(p))
        .map(str::to_owned)
}
