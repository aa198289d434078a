#!/usr/bin/env python3
"""Writes the seed inputs of every fuzz target to fuzz/corpus/<target>/seed-*.

The seeds are small valid (and a few nearly valid) inputs in each format, so
libFuzzer starts from inputs that get past the first parse instead of
guessing magic numbers and JSON keys. They are committed with the corpus
that `scripts/fuzz.sh` grows and minimizes; CI replays all of it. Run from
anywhere (standard library only): `python3 scripts/fuzz_seeds.py`.
"""

import json
import os
import struct
import zlib

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "fuzz", "corpus")


def write(target, name, data):
    folder = os.path.join(ROOT, target)
    os.makedirs(folder, exist_ok=True)
    if isinstance(data, str):
        data = data.encode()
    with open(os.path.join(folder, "seed-" + name), "wb") as f:
        f.write(data)


# ---------------------------------------------------------------- GGUF
def gguf_str(s):
    b = s.encode()
    return struct.pack("<Q", len(b)) + b


def gguf_kv(key, type_id, payload):
    return gguf_str(key) + struct.pack("<I", type_id) + payload


# ggml type id -> (block size, bytes per block)
GEOMETRY = {0: (1, 4), 1: (1, 2), 2: (32, 18), 3: (32, 20), 6: (32, 22), 7: (32, 24),
            8: (32, 34), 12: (256, 144), 13: (256, 176), 14: (256, 210), 30: (1, 2)}


def block_bytes(type_id, n_blocks, seed):
    _, size = GEOMETRY[type_id]
    out = bytearray()
    x = seed
    for _ in range(n_blocks * size):
        x = (x * 1103515245 + 12345) & 0x7FFFFFFF
        out.append(x >> 16 & 0xFF)
    # Keep f16 scales finite and small: zero the high byte of the first
    # two bytes of every block (d, and m where there is one).
    for b in range(n_blocks):
        if type_id not in (0, 1, 30):
            out[b * size + 1] &= 0x3B
            out[b * size + 3] &= 0x3B
    return bytes(out)


def gguf_file(tensors, metadata, alignment=32):
    kvs = b"".join(metadata)
    infos = b""
    data = b""
    for name, dims, type_id in tensors:
        block, _ = GEOMETRY[type_id]
        n = 1
        for d in dims:
            n *= d
        payload = block_bytes(type_id, n // block, len(name))
        pad = (-len(data)) % alignment
        data += b"\0" * pad
        infos += gguf_str(name) + struct.pack("<I", len(dims))
        infos += b"".join(struct.pack("<Q", d) for d in dims)
        infos += struct.pack("<IQ", type_id, len(data))
        data += payload
    head = b"GGUF" + struct.pack("<IQQ", 3, len(tensors), len(metadata)) + kvs + infos
    head += b"\0" * ((-len(head)) % alignment)
    return head + data


def llama_metadata():
    tokens = [b"<unk>", b"<s>", b"</s>", b"a", b"b"]
    arr = struct.pack("<IQ", 8, len(tokens)) + b"".join(gguf_str(t.decode()) for t in tokens)
    u32 = lambda v: struct.pack("<I", v)
    return [
        gguf_kv("general.architecture", 8, gguf_str("llama")),
        gguf_kv("general.alignment", 4, u32(32)),
        gguf_kv("llama.embedding_length", 4, u32(64)),
        gguf_kv("llama.feed_forward_length", 4, u32(128)),
        gguf_kv("llama.block_count", 4, u32(2)),
        gguf_kv("llama.attention.head_count", 4, u32(4)),
        gguf_kv("llama.attention.head_count_kv", 4, u32(2)),
        gguf_kv("llama.rope.dimension_count", 4, u32(16)),
        gguf_kv("llama.rope.freq_base", 6, struct.pack("<f", 10000.0)),
        gguf_kv("llama.attention.layer_norm_rms_epsilon", 6, struct.pack("<f", 1e-5)),
        gguf_kv("llama.context_length", 10, struct.pack("<Q", 2048)),
        gguf_kv("tokenizer.ggml.tokens", 9, arr),
        gguf_kv("tokenizer.ggml.bos_token_id", 4, u32(1)),
        gguf_kv("tokenizer.ggml.eos_token_id", 4, u32(2)),
        gguf_kv("tokenizer.chat_template", 8, gguf_str("{{ messages[0]['content'] }}")),
    ]


def gguf_seeds():
    meta = llama_metadata()
    write("gguf", "llama-mixed", gguf_file(
        [("token_embd.weight", [32, 5], 2), ("blk.0.attn_q.weight", [32, 2], 8),
         ("blk.0.attn_norm.weight", [64], 0), ("output_norm.weight", [64], 1)], meta))
    write("gguf", "kquants", gguf_file(
        [("a", [256], 12), ("b", [256], 13), ("c", [256], 14), ("d", [32, 1], 3),
         ("e", [32], 6), ("f", [32], 7), ("g", [4, 2], 30)], meta[:2]))
    write("gguf", "empty-v2", b"GGUF" + struct.pack("<IQQ", 2, 0, 0))
    # A nested array and every scalar value type.
    scalars = [
        gguf_kv("u8", 0, b"\x01"), gguf_kv("i8", 1, b"\xff"), gguf_kv("u16", 2, b"\x01\x00"),
        gguf_kv("i16", 3, b"\xff\xff"), gguf_kv("u32", 4, b"\x01\0\0\0"),
        gguf_kv("i32", 5, b"\xff\xff\xff\xff"), gguf_kv("f32", 6, struct.pack("<f", 0.5)),
        gguf_kv("bool", 7, b"\x01"), gguf_kv("u64", 10, struct.pack("<Q", 7)),
        gguf_kv("i64", 11, struct.pack("<q", -7)), gguf_kv("f64", 12, struct.pack("<d", 0.25)),
        gguf_kv("nested", 9, struct.pack("<IQ", 9, 1) + struct.pack("<IQ", 4, 2) + b"\1\0\0\0\2\0\0\0"),
    ]
    write("gguf", "value-types", gguf_file([("t", [2], 0)], scalars))


def dequantize_seeds():
    for type_id, (block, _) in sorted(GEOMETRY.items()):
        write("dequantize", f"type-{type_id}", bytes([type_id, 0]) + block_bytes(type_id, 2, type_id))
    write("dequantize", "type-2-short", bytes([2, 3]) + block_bytes(2, 1, 1)[:10])


# --------------------------------------------------------- safetensors
def safetensors_file(tensors):
    header = {}
    data = b""
    for name, dtype, shape, payload in tensors:
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [len(data), len(data) + len(payload)]}
        data += payload
    header["__metadata__"] = {"format": "pt"}
    h = json.dumps(header).encode()
    return struct.pack("<Q", len(h)) + h + data


def safetensors_seeds():
    write("safetensors", "dtypes", safetensors_file([
        ("f32", "F32", [2, 2], struct.pack("<4f", 1, 2, 3, 4)),
        ("f16", "F16", [2], b"\x00\x3c\x00\x40"),
        ("bf16", "BF16", [2], b"\x80\x3f\x00\x40"),
        ("i64", "I64", [1], struct.pack("<q", 5)),
        ("u8", "U8", [3], b"\1\2\3"),
        ("bool", "BOOL", [2], b"\0\1"),
        ("f64", "F64", [1], struct.pack("<d", 1.5)),
    ]))
    write("safetensors", "scalar", safetensors_file([("s", "F32", [], struct.pack("<f", 1))]))
    write("safetensors", "empty-dims", safetensors_file([("z", "F32", [0, 3], b"")]))
    write("safetensors", "unsupported-dtype", safetensors_file([("x", "F8_E4M3", [2], b"\0\0")]))


# ------------------------------------------------------------ requests
def openai_seeds():
    chat = {
        "model": "m", "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": [{"type": "text", "text": "What is this?"},
                                         {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}}]},
            {"role": "assistant", "content": None, "tool_calls": [
                {"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{\"x\":1}"}}]},
            {"role": "tool", "tool_call_id": "c1", "content": "42"},
        ],
        "tools": [{"type": "function", "function": {"name": "f", "description": "d",
                   "parameters": {"type": "object", "properties": {"x": {"type": "integer"}}}}}],
        "tool_choice": {"type": "function", "function": {"name": "f"}},
        "temperature": 0.7, "top_p": 0.9, "top_k": 40, "min_p": 0.05, "n": 2, "max_tokens": 32,
        "stop": ["\n\n", "END"], "seed": 7, "logprobs": True, "top_logprobs": 3,
        "presence_penalty": 0.5, "frequency_penalty": 0.5, "repetition_penalty": 1.1,
        "logit_bias": {"50256": -100}, "stream": True, "stream_options": {"include_usage": True},
        "response_format": {"type": "json_object"}, "user": "u", "timeout": 30,
        "chat_template_kwargs": {"enable_thinking": False}, "stop_token_ids": [2],
    }
    write("openai_request", "chat-full", b"\x00" + json.dumps(chat).encode())
    write("openai_request", "chat-min", b"\x00" + json.dumps({"model": "m", "messages": [{"role": "user", "content": "hi"}]}).encode())
    write("openai_request", "chat-bad-temp", b"\x00" + json.dumps({"model": "m", "temperature": 1e-40, "max_completion_tokens": -1, "messages": [{"role": "user", "content": "hi"}]}).encode())
    for i, prompt in enumerate(["Say hi", ["a", "b"], [1, 2, 3], [[1, 2], [3]]]):
        body = {"model": "m", "prompt": prompt, "max_tokens": 8, "n": 2, "best_of": 3, "echo": True,
                "logprobs": 2, "stop": "x", "suffix": "s", "stream": i % 2 == 0}
        write("openai_request", f"completion-{i}", b"\x01" + json.dumps(body).encode())
    for i, inp in enumerate(["hello", ["a", "b"], [1, 2], [[1], [2, 3]]]):
        body = {"model": "e", "input": inp, "encoding_format": "base64" if i % 2 else "float", "dimensions": 8}
        write("openai_request", f"embeddings-{i}", b"\x02" + json.dumps(body).encode())
    write("openai_request", "tokenize-prompt", b"\x03" + json.dumps({"model": "m", "prompt": "hi", "add_special_tokens": True}).encode())
    write("openai_request", "tokenize-messages", b"\x03" + json.dumps({"messages": [{"role": "user", "content": "hi"}], "add_generation_prompt": True}).encode())
    write("openai_request", "detokenize", b"\x04" + json.dumps({"model": "m", "tokens": [1, 2, 3]}).encode())


def anthropic_seeds():
    req = {
        "model": "claude", "max_tokens": 64, "system": [{"type": "text", "text": "sys"}],
        "messages": [
            {"role": "user", "content": [
                {"type": "text", "text": "look"},
                {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "iVBORw0KGgo="}},
                {"type": "image", "source": {"type": "url", "url": "https://example.com/a.png"}}]},
            {"role": "assistant", "content": [
                {"type": "thinking", "thinking": "hmm", "signature": "s"},
                {"type": "text", "text": "calling"},
                {"type": "tool_use", "id": "tu1", "name": "f", "input": {"x": 1}}]},
            {"role": "user", "content": [
                {"type": "tool_result", "tool_use_id": "tu1", "content": [{"type": "text", "text": "42"}], "is_error": False},
                {"type": "text", "text": "thanks"}]},
        ],
        "tools": [{"name": "f", "description": "d", "input_schema": {"type": "object", "properties": {"x": {"type": "integer"}}}}],
        "tool_choice": {"type": "tool", "name": "f", "disable_parallel_tool_use": True},
        "stop_sequences": ["END"], "temperature": 0.5, "top_p": 0.9, "top_k": 5,
        "metadata": {"user_id": "u"}, "stream": True, "thinking": {"type": "enabled", "budget_tokens": 1024},
    }
    write("anthropic_request", "full", json.dumps(req))
    write("anthropic_request", "min", json.dumps({"model": "c", "max_tokens": 1, "messages": [{"role": "user", "content": "hi"}]}))
    write("anthropic_request", "any-tool", json.dumps({"model": "c", "max_tokens": 5, "system": "s", "tool_choice": {"type": "any"},
                                                       "messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}]}))


# ------------------------------------------------------- chat templates
CHATML = (
    "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}"
    "{{ '<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n' }}"
    "{% endif %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)

TOOLS = (
    "{{- bos_token }}{%- if tools %}{%- for t in tools %}{{ t | tojson(indent=4) }}{%- endfor %}{%- endif %}"
    "{%- set ns = namespace(n=0) %}{%- for m in messages %}{%- if m.role not in ['user', 'assistant', 'system', 'tool'] %}"
    "{{ raise_exception('bad role ' ~ m.role) }}{%- endif %}{%- set ns.n = ns.n + 1 %}"
    "{%- if m.content is string %}{{ m.content | trim }}{%- elif m.content %}{%- for p in m.content %}"
    "{%- if p.type == 'text' %}{{ p.text }}{%- else %}<image>{%- endif %}{%- endfor %}{%- endif %}"
    "{%- if m.tool_calls %}{%- for c in m.tool_calls %}{{ c.function.name }}({{ c.function.arguments | tojson }}){%- endfor %}{%- endif %}"
    "{%- if loop.index > 20 %}{% break %}{% endif %}{%- endfor %}"
    "{{ strftime_now('%d %b %Y') }}{% if enable_thinking is defined and not enable_thinking %}/no_think{% endif %}"
    "{%- generation %}{{ eos_token }}{%- endgeneration %}{{ messages | length }}{{ (messages[-1].content or '')[:5] | upper }}"
)

MESSAGES = [
    {"role": "system", "content": "sys"},
    {"role": "user", "content": [{"type": "text", "text": "hi"}, {"type": "image_url", "image_url": {"url": "x"}}]},
    {"role": "assistant", "content": None, "tool_calls": [{"id": "1", "type": "function", "function": {"name": "f", "arguments": "{\"a\": 1.5}"}}]},
    {"role": "tool", "content": "ok", "tool_call_id": "1"},
]


def chat_template_seeds():
    write("chat_template", "chatml", CHATML + "\0" + json.dumps([{"role": "user", "content": "Hello"}]))
    write("chat_template", "chatml-text", CHATML + "\0" + "What is the capital of France?")
    write("chat_template", "tools", TOOLS + "\0" + json.dumps(MESSAGES) + "\0"
          + json.dumps([{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}])
          + "\0" + json.dumps({"enable_thinking": False}))
    write("chat_template", "python-methods", "{{ messages[0].content.split(' ') | join('|') }}{{ {'a': [1, none, true, 2.5]} }}"
          "{{ 'x'.startswith('x') }}{{ messages | tojson(sort_keys=true, separators=[',', ':']) }}{{ 1e100 }}{{ 0.1 + 0.2 }}"
          + "\0" + json.dumps([{"role": "user", "content": "a b c", "n": 1e308}]))
    write("chat_template", "whitespace", "{%- for m in messages -%}\n  {%+ if m.role == 'user' +%}U: {{ m.content }}\n{% endif %}{% endfor %}\n")


# -------------------------------------------------------------- streams
def sse(events):
    out = ""
    for name, data in events:
        if name:
            out += f"event: {name}\n"
        out += "data: " + (data if isinstance(data, str) else json.dumps(data)) + "\n\n"
    return out


def aws_frame(headers, payload):
    h = b""
    for k, v in headers:
        kb, vb = k.encode(), v.encode()
        h += bytes([len(kb)]) + kb + b"\x07" + struct.pack(">H", len(vb)) + vb
    total = 12 + len(h) + len(payload) + 4
    prelude = struct.pack(">II", total, len(h))
    prelude += struct.pack(">I", zlib.crc32(prelude) & 0xFFFFFFFF)
    msg = prelude + h + payload
    return msg + struct.pack(">I", zlib.crc32(msg) & 0xFFFFFFFF)


def bedrock_event(kind, payload):
    return aws_frame([(":message-type", "event"), (":event-type", kind), (":content-type", "application/json")],
                     json.dumps(payload).encode())


def provider_stream_seeds():
    chunk = lambda **d: {"id": "c", "object": "chat.completion.chunk", "created": 1, "model": "u",
                         "choices": [{"index": 0, "delta": d, "finish_reason": None}]}
    openai = sse([(None, chunk(role="assistant", content="Hel")), (None, chunk(content="lo")),
                  (None, chunk(tool_calls=[{"index": 0, "id": "t", "type": "function", "function": {"name": "f", "arguments": "{}"}}])),
                  (None, {"id": "c", "object": "chat.completion.chunk", "created": 1, "model": "u", "choices": [],
                          "usage": {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5}}),
                  (None, "[DONE]")])
    write("provider_stream", "openai-chat", b"\x00\x07" + openai.encode())
    write("provider_stream", "openai-error", b"\x00\x3f" + sse([("error", {"error": {"message": "overloaded", "code": 529}})]).encode())
    completion = sse([(None, {"id": "x", "object": "text_completion", "created": 1, "model": "u",
                              "choices": [{"index": 0, "text": "hi", "logprobs": None, "finish_reason": "length"}]}),
                      (None, "[DONE]")])
    write("provider_stream", "openai-completion", b"\x01\x05" + completion.encode())
    anthropic = sse([
        ("message_start", {"type": "message_start", "message": {"id": "msg_1", "type": "message", "role": "assistant", "model": "c",
                                                                "content": [], "stop_reason": None, "usage": {"input_tokens": 5, "output_tokens": 1}}}),
        ("content_block_start", {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}),
        ("ping", {"type": "ping"}),
        ("content_block_delta", {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "Hi"}}),
        ("content_block_stop", {"type": "content_block_stop", "index": 0}),
        ("content_block_start", {"type": "content_block_start", "index": 1, "content_block": {"type": "tool_use", "id": "tu", "name": "f", "input": {}}}),
        ("content_block_delta", {"type": "content_block_delta", "index": 1, "delta": {"type": "input_json_delta", "partial_json": "{\"x\":"}}),
        ("content_block_delta", {"type": "content_block_delta", "index": 1, "delta": {"type": "input_json_delta", "partial_json": "1}"}}),
        ("content_block_stop", {"type": "content_block_stop", "index": 1}),
        ("message_delta", {"type": "message_delta", "delta": {"stop_reason": "tool_use", "stop_sequence": None}, "usage": {"output_tokens": 9}}),
        ("message_stop", {"type": "message_stop"}),
    ])
    write("provider_stream", "anthropic", b"\x02\x10" + anthropic.encode())
    write("provider_stream", "anthropic-error", b"\x02\x01" + sse([("error", {"type": "error", "error": {"type": "overloaded_error", "message": "busy"}})]).encode())
    gemini = sse([
        (None, {"candidates": [{"content": {"role": "model", "parts": [{"text": "Hel"}]}, "index": 0}], "usageMetadata": {"promptTokenCount": 3}}),
        (None, {"candidates": [{"content": {"parts": [{"functionCall": {"name": "a", "args": {"x": 1}}}]}, "index": 1, "finishReason": "STOP"}]}),
        (None, {"candidates": [{"content": {"role": "model", "parts": [{"text": "lo"}]}, "finishReason": "MAX_TOKENS", "index": 0}],
                "usageMetadata": {"promptTokenCount": 3, "candidatesTokenCount": 2, "totalTokenCount": 5}}),
    ])
    write("provider_stream", "gemini", b"\x03\x0b" + gemini.encode())
    write("provider_stream", "gemini-blocked", b"\x03\x00" + sse([(None, {"promptFeedback": {"blockReason": "SAFETY"}})]).encode())
    bedrock = b"".join([
        bedrock_event("messageStart", {"role": "assistant"}),
        bedrock_event("contentBlockDelta", {"contentBlockIndex": 0, "delta": {"text": "Let me"}}),
        bedrock_event("contentBlockStop", {"contentBlockIndex": 0}),
        bedrock_event("contentBlockStart", {"contentBlockIndex": 1, "start": {"toolUse": {"toolUseId": "tu_1", "name": "w"}}}),
        bedrock_event("contentBlockDelta", {"contentBlockIndex": 1, "delta": {"toolUse": {"input": "{\"c\":1}"}}}),
        bedrock_event("contentBlockStop", {"contentBlockIndex": 1}),
        bedrock_event("messageStop", {"stopReason": "tool_use"}),
        bedrock_event("metadata", {"usage": {"inputTokens": 3, "outputTokens": 4, "totalTokens": 7}, "metrics": {"latencyMs": 1}}),
    ])
    write("provider_stream", "bedrock", b"\x04\x13" + bedrock)
    write("provider_stream", "bedrock-exception", b"\x04\x3f" + aws_frame(
        [(":message-type", "exception"), (":exception-type", "throttlingException")], b'{"message":"slow down"}'))
    cohere = sse([
        ("message-start", {"type": "message-start", "id": "x"}),
        ("content-delta", {"type": "content-delta", "index": 0, "delta": {"message": {"content": {"type": "text", "text": "Hi"}}}}),
        ("tool-call-start", {"type": "tool-call-start", "index": 0, "delta": {"message": {"tool_calls": {"id": "t1", "type": "function", "function": {"name": "f", "arguments": ""}}}}}),
        ("tool-call-delta", {"type": "tool-call-delta", "index": 0, "delta": {"message": {"tool_calls": {"function": {"arguments": "{}"}}}}}),
        ("tool-call-end", {"type": "tool-call-end", "index": 0}),
        ("message-end", {"type": "message-end", "delta": {"finish_reason": "TOOL_CALL", "usage": {"tokens": {"input_tokens": 5, "output_tokens": 6}}}}),
    ])
    write("provider_stream", "cohere", b"\x05\x09" + cohere.encode())
    ollama = "\n".join(json.dumps(v) for v in [
        {"message": {"role": "assistant", "content": "Hel"}, "done": False},
        {"message": {"role": "assistant", "content": "", "tool_calls": [{"function": {"name": "f", "arguments": {"x": 1}}}]}, "done": False},
        {"message": {"role": "assistant", "content": ""}, "done": True, "done_reason": "stop", "prompt_eval_count": 3, "eval_count": 2},
    ]) + "\n"
    write("provider_stream", "ollama", b"\x06\x04" + ollama.encode())
    write("provider_stream", "ollama-error", b"\x06\x3f" + b'{"error": "model crashed"}\n')
    write("provider_stream", "error-response", b"\x07\x1d" + b"2.5\n" + json.dumps({"error": {"message": "Rate limit", "type": "rate_limit"}}).encode())
    write("provider_stream", "error-context", b"\x07\x00" + b"10\n" + json.dumps({"error": {"message": "maximum context length is 8192 tokens"}}).encode())


# --------------------------------------------------------------- config
CONFIG = """\
model_list:
  - model_name: gpt-4o
    litellm_params:
      model: openai/gpt-4o
      api_key: os.environ/OPENAI_API_KEY
      timeout: 30
      stream_timeout: 10
      max_retries: 2
      rpm: 100
      tpm: 100000
      input_cost_per_token: 0.000001
      output_cost_per_token: 0.000002
    model_info:
      id: gpt-a
  - model_name: gpt-4o
    litellm_params:
      model: azure/my-deploy
      api_base: https://x.openai.azure.com
      api_version: "2024-06-01"
      api_key: k
      weight: 2
  - model_name: claude
    litellm_params:
      model: anthropic/claude-3-5-sonnet-20240620
      api_key: k
      guardrails: [pii]
  - model_name: gemini
    litellm_params:
      model: gemini/gemini-1.5-flash
      api_key: k
  - model_name: vertex
    litellm_params:
      model: vertex_ai/gemini-1.5-pro
      vertex_project: p
      vertex_location: us-central1
  - model_name: bedrock
    litellm_params:
      model: bedrock/anthropic.claude-3-haiku-20240307-v1:0
      aws_region_name: us-east-1
      aws_access_key_id: a
      aws_secret_access_key: s
  - model_name: llama
    litellm_params:
      model: ollama/llama3
      api_base: http://127.0.0.1:11434
  - model_name: command
    litellm_params:
      model: cohere/command-r
      api_key: k
  - model_name: groq
    litellm_params:
      model: groq/llama3-8b-8192
router_settings:
  routing_strategy: latency-based-routing
  num_retries: 3
  timeout: 60
  retry_after: 1
  allowed_fails: 2
  cooldown_time: 30
  fallbacks: [{"gpt-4o": ["claude"]}]
  context_window_fallbacks: [{"claude": ["gemini"]}]
  enable_pre_call_checks: true
litellm_settings:
  drop_params: true
  request_timeout: 600
  num_retries: 1
  cache: false
general_settings:
  master_key: sk-1234
  proxy_batch_write_at: 10
environment_variables:
  OPENAI_API_KEY: sk-x
guardrails:
  - guardrail_name: pii
    litellm_params:
      guardrail: presidio
      mode: pre_call
  - guardrail_name: words
    litellm_params:
      guardrail: banned_keywords
      mode: pre_call
      blocked_words: [{"keyword": "secret", "action": "BLOCK"}]
"""


def config_seeds():
    write("litellm_config", "full", CONFIG)
    write("litellm_config", "empty", "")
    write("litellm_config", "anchors", "x: &a {model: openai/gpt-4o}\nmodel_list:\n  - model_name: a\n    litellm_params: *a\n")


if __name__ == "__main__":
    gguf_seeds()
    dequantize_seeds()
    safetensors_seeds()
    openai_seeds()
    anthropic_seeds()
    chat_template_seeds()
    provider_stream_seeds()
    config_seeds()
    for target in sorted(os.listdir(ROOT)):
        print(target, len(os.listdir(os.path.join(ROOT, target))))
