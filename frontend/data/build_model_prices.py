#!/usr/bin/env python3
"""Builds frontend/data/model_prices.json from LiteLLM's price file.

Why a script: the price table is a fixture and fixtures are built, never
hand-edited (docs/STYLE.md). Every figure in the output is copied from
LiteLLM's `model_prices_and_context_window.json` (the copy shipped in the
`litellm` wheel as `litellm/model_prices_and_context_window_backup.json`);
nothing is computed or typed in by hand. A key listed in MODELS that the
source lacks, or that has no input/output price (embeddings may lack the
output price: they generate no tokens), stops the build, so the
list cannot silently drift from the source.

Usage (no network; read the wheel you downloaded yourself):
    pip download --no-deps --only-binary=:all: litellm==1.110.2 -d /tmp/llm
    unzip -o /tmp/llm/litellm-*.whl \
        litellm/model_prices_and_context_window_backup.json -d /tmp/llm
    python3 frontend/data/build_model_prices.py \
        /tmp/llm/litellm/model_prices_and_context_window_backup.json \
        --litellm-version 1.110.2 --read-on 2026-11-26 \
        > frontend/data/model_prices.json
"""

import argparse
import json
import sys

# The models kept, by LiteLLM key (its naming: bare OpenAI/Anthropic/Vertex
# names, `azure/`, `gemini/`, `mistral/`, `groq/`, ... prefixes, Bedrock ids
# with their cross-region prefixes `us.`/`eu.`/`global.`).
MODELS = [
    # OpenAI
    "gpt-4o", "gpt-4o-2024-08-06", "gpt-4o-2024-11-20", "gpt-4o-mini",
    "gpt-4o-mini-2024-07-18", "gpt-4.1", "gpt-4.1-mini", "gpt-4.1-nano",
    "gpt-4-turbo", "gpt-4", "gpt-3.5-turbo", "gpt-5", "gpt-5-mini", "gpt-5-nano",
    "gpt-5-chat-latest", "gpt-5.1", "gpt-5.2", "gpt-5.4", "gpt-5.4-mini",
    "gpt-5.4-nano", "gpt-5.5", "o1", "o3", "o3-mini", "o4-mini",
    "text-embedding-3-small", "text-embedding-3-large", "text-embedding-ada-002",
    # Azure OpenAI
    "azure/gpt-4o", "azure/gpt-4o-mini", "azure/gpt-4.1", "azure/gpt-4.1-mini",
    "azure/gpt-4.1-nano", "azure/gpt-5", "azure/gpt-5-mini", "azure/gpt-5-nano",
    "azure/gpt-5.1", "azure/o1", "azure/o3-mini", "azure/o4-mini",
    "azure/gpt-35-turbo", "azure/gpt-4-turbo", "azure/eu/gpt-4o", "azure/us/gpt-4o",
    "azure/text-embedding-3-small", "azure/text-embedding-3-large",
    "azure/text-embedding-ada-002",
    # Anthropic
    "claude-haiku-4-5", "claude-haiku-4-5-20251001", "claude-sonnet-4-5",
    "claude-sonnet-4-5-20250929", "claude-sonnet-4-6", "claude-opus-4-5",
    "claude-opus-4-5-20251101", "claude-opus-4-6", "claude-opus-4-7",
    "claude-sonnet-5", "claude-opus-5",
    # Gemini (AI Studio)
    "gemini/gemini-2.5-pro", "gemini/gemini-2.5-flash", "gemini/gemini-2.5-flash-lite",
    "gemini/gemini-3-flash-preview", "gemini/gemini-3.1-pro-preview",
    "gemini/gemini-3.1-flash-lite", "gemini/gemini-3.5-flash",
    "gemini/gemini-flash-latest", "gemini/gemini-pro-latest",
    "gemini/gemini-embedding-001",
    # Vertex AI (LiteLLM keys Vertex's Gemini models by their bare names)
    "gemini-2.5-pro", "gemini-2.5-flash", "gemini-2.5-flash-lite",
    "gemini-3-flash-preview", "gemini-3.1-pro-preview", "gemini-3.5-flash",
    "vertex_ai/claude-sonnet-4-5", "vertex_ai/claude-opus-4-5",
    "vertex_ai/claude-haiku-4-5", "vertex_ai/claude-3-5-sonnet",
    "vertex_ai/claude-3-haiku", "text-embedding-005", "gemini-embedding-001",
    # Bedrock: Anthropic
    "anthropic.claude-haiku-4-5-20251001-v1:0",
    "us.anthropic.claude-haiku-4-5-20251001-v1:0",
    "eu.anthropic.claude-haiku-4-5-20251001-v1:0",
    "global.anthropic.claude-haiku-4-5-20251001-v1:0",
    "anthropic.claude-sonnet-4-5-20250929-v1:0",
    "us.anthropic.claude-sonnet-4-5-20250929-v1:0",
    "eu.anthropic.claude-sonnet-4-5-20250929-v1:0",
    "global.anthropic.claude-sonnet-4-5-20250929-v1:0",
    "anthropic.claude-sonnet-4-20250514-v1:0",
    "us.anthropic.claude-sonnet-4-20250514-v1:0",
    "anthropic.claude-3-7-sonnet-20250219-v1:0",
    "us.anthropic.claude-3-7-sonnet-20250219-v1:0",
    "anthropic.claude-3-5-sonnet-20240620-v1:0",
    "anthropic.claude-3-5-sonnet-20241022-v2:0",
    "anthropic.claude-3-5-haiku-20241022-v1:0",
    "anthropic.claude-opus-4-1-20250805-v1:0",
    "anthropic.claude-opus-4-5-20251101-v1:0",
    "us.anthropic.claude-opus-4-5-20251101-v1:0",
    "anthropic.claude-sonnet-4-6",
    # Bedrock: Meta Llama
    "meta.llama3-1-8b-instruct-v1:0", "meta.llama3-1-70b-instruct-v1:0",
    "meta.llama3-1-405b-instruct-v1:0", "meta.llama3-2-3b-instruct-v1:0",
    "meta.llama3-3-70b-instruct-v1:0", "us.meta.llama3-3-70b-instruct-v1:0",
    "meta.llama4-maverick-17b-instruct-v1:0", "meta.llama4-scout-17b-instruct-v1:0",
    # Bedrock: Amazon Titan and Nova
    "amazon.nova-micro-v1:0", "amazon.nova-lite-v1:0", "amazon.nova-pro-v1:0",
    "us.amazon.nova-lite-v1:0", "us.amazon.nova-pro-v1:0", "amazon.nova-2-lite-v1:0",
    "amazon.titan-text-express-v1", "amazon.titan-text-lite-v1",
    "amazon.titan-text-premier-v1:0", "amazon.titan-embed-text-v1",
    "amazon.titan-embed-text-v2:0",
    # Bedrock: Mistral, DeepSeek, OpenAI open weights
    "mistral.mistral-large-2407-v1:0", "mistral.mistral-large-2402-v1:0",
    "mistral.mistral-small-2402-v1:0", "mistral.mixtral-8x7b-instruct-v0:1",
    "mistral.mistral-7b-instruct-v0:2", "mistral.pixtral-large-2502-v1:0",
    "deepseek.r1-v1:0", "openai.gpt-oss-120b-1:0", "openai.gpt-oss-20b-1:0",
    # Mistral
    "mistral/mistral-large-latest", "mistral/mistral-medium-latest",
    "mistral/mistral-small-latest", "mistral/codestral-latest",
    "mistral/open-mistral-nemo", "mistral/ministral-8b-latest",
    "mistral/ministral-3b-latest", "mistral/pixtral-large-latest",
    "mistral/magistral-medium-latest", "mistral/magistral-small-latest",
    "mistral/devstral-small-latest", "mistral/mistral-embed",
    # Groq
    "groq/openai/gpt-oss-120b", "groq/openai/gpt-oss-20b", "groq/qwen/qwen3.8-27b",
    # Together AI
    "together_ai/meta-llama/Llama-3.3-70B-Instruct-Turbo",
    "together_ai/meta-llama/Meta-Llama-3.1-8B-Instruct-Turbo",
    "together_ai/meta-llama/Meta-Llama-3.1-70B-Instruct-Turbo",
    "together_ai/meta-llama/Llama-3.1-405B-Instruct",
    "together_ai/meta-llama/Llama-4-Scout-17B-16E-Instruct",
    "together_ai/deepseek-ai/DeepSeek-V3", "together_ai/deepseek-ai/DeepSeek-R1-0528",
    "together_ai/Qwen/Qwen2.5-72B-Instruct-Turbo",
    "together_ai/Qwen/Qwen2.5-7B-Instruct-Turbo", "together_ai/openai/gpt-oss-120b",
    "together_ai/openai/gpt-oss-20b", "together_ai/mistralai/Mixtral-8x7B-Instruct-v0.1",
    "together_ai/moonshotai/Kimi-K2-Instruct",
    # Fireworks AI
    "fireworks_ai/accounts/fireworks/models/llama-v3p1-8b-instruct",
    "fireworks_ai/accounts/fireworks/models/llama-v3p1-405b-instruct",
    "fireworks_ai/accounts/fireworks/models/llama4-maverick-instruct-basic",
    "fireworks_ai/accounts/fireworks/models/llama4-scout-instruct-basic",
    "fireworks_ai/accounts/fireworks/models/deepseek-v3",
    "fireworks_ai/accounts/fireworks/models/deepseek-v3p1",
    "fireworks_ai/accounts/fireworks/models/deepseek-r1",
    "fireworks_ai/accounts/fireworks/models/qwen3-coder-480b-a35b-instruct",
    "fireworks_ai/accounts/fireworks/models/qwen2p5-coder-32b-instruct",
    "fireworks_ai/accounts/fireworks/models/gpt-oss-120b",
    # DeepSeek
    "deepseek-chat", "deepseek-reasoner", "deepseek/deepseek-chat",
    "deepseek/deepseek-reasoner", "deepseek/deepseek-v3.2", "deepseek/deepseek-r1",
    "deepseek/deepseek-v4-flash", "deepseek/deepseek-v4-pro",
    # xAI
    "xai/grok-4.3", "xai/grok-4.5", "xai/grok-4.6", "xai/grok-4.7", "xai/grok-4.20",
    "xai/grok-code-fast-1",
    # Perplexity
    "perplexity/sonar", "perplexity/sonar-pro", "perplexity/sonar-reasoning",
    "perplexity/sonar-reasoning-pro", "perplexity/sonar-deep-research",
    # Cohere
    "command-a-03-2025", "command-r-08-2024", "command-r-plus-08-2024",
    "command-r7b-12-2024", "embed-english-v3.0", "embed-multilingual-v3.0",
    "cohere/embed-v4.0",
    # Ollama (local: LiteLLM prices these at 0)
    "ollama/llama3", "ollama/llama3.1", "ollama/llama3:8b", "ollama/llama3:70b",
    "ollama/llama2", "ollama/mistral-7B-Instruct-v0.2",
    "ollama/mixtral-8x7B-Instruct-v0.1",
]

FIELDS = [
    "input_cost_per_token",
    "output_cost_per_token",
    "max_input_tokens",
    "max_output_tokens",
    "litellm_provider",
    "mode",
    "source",
]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("litellm_json")
    parser.add_argument("--litellm-version", required=True)
    parser.add_argument("--read-on", required=True, help="YYYY-MM-DD the file was read")
    args = parser.parse_args()

    with open(args.litellm_json, encoding="utf-8") as f:
        source = json.load(f)

    if len(set(MODELS)) != len(MODELS):
        print("duplicate keys in MODELS", file=sys.stderr)
        return 1
    out = {
        "_meta": {
            "description": (
                "Per-token USD prices and context windows of the models the gateway "
                "prices by default. Keys and fields follow LiteLLM's "
                "model_prices_and_context_window.json. Built by "
                "frontend/data/build_model_prices.py; do not edit by hand."
            ),
            "figures_as_of": args.read_on,
            "sources": [
                {
                    "what": "every entry (prices, context windows, litellm_provider, mode, source)",
                    "file": (
                        f"litellm=={args.litellm_version} wheel from PyPI, "
                        "litellm/model_prices_and_context_window_backup.json"
                    ),
                    "upstream": (
                        "https://github.com/BerriAI/litellm/blob/main/"
                        "model_prices_and_context_window.json"
                    ),
                    "read_on": args.read_on,
                },
                {
                    "what": (
                        "spot check: entries shared with this copy match it "
                        "(e.g. amazon.nova-lite-v1:0)"
                    ),
                    "file": (
                        "github.com/BerriAI/litellm model_prices_and_context_window.json "
                        "at commit 00035b69f416be24e2e323c13198d9b7d2d1bdf9"
                    ),
                    "read_on": args.read_on,
                },
                {
                    "what": (
                        "openrouter/<vendor>/<model> has no entries: OpenRouter passes "
                        "through the underlying provider's price, so the table looks the "
                        "vendor's model up instead"
                    ),
                    "file": "https://openrouter.ai/docs/faq",
                    "read_on": args.read_on,
                },
            ],
            "notes": (
                "Prices change; each entry's `source` (when LiteLLM recorded one) is "
                "the provider page the figure came from. Override any entry with "
                "input_cost_per_token / output_cost_per_token in a deployment's "
                "litellm_params or model_info."
            ),
        }
    }
    for key in MODELS:
        entry = source.get(key)
        if not isinstance(entry, dict):
            print(f"{key}: not in the source file", file=sys.stderr)
            return 1
        # Embeddings generate no tokens, so LiteLLM may leave their output
        # price out; every other entry needs both prices.
        needs_output = entry.get("mode") != "embedding"
        if entry.get("input_cost_per_token") is None or (
            needs_output and entry.get("output_cost_per_token") is None
        ):
            print(f"{key}: no input/output price in the source file", file=sys.stderr)
            return 1
        out[key] = {f: entry[f] for f in FIELDS if entry.get(f) is not None}
    json.dump(out, sys.stdout, indent=2)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
