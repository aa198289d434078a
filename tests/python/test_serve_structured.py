"""Structured outputs on the local engine (llguidance masks in the step):
the OpenAI SDK's `parse` with Pydantic models, vLLM's regex, choice and
grammar fields, JSON mode, and the 400s for what cannot be compiled.

Runs against the session's default SmolLM2 server."""
import json
import random
import re
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Annotated, Literal, Optional, Union

import httpx
import openai
import pytest
from pydantic import BaseModel, Field, create_model

SCHEMAS = 50
SEED = 1234


def scalar(rng: random.Random, depth: int, name: str):
    """A random field type, its bounds in the type (so they hold inside
    lists and optionals too): bounded numbers, short strings, enums,
    booleans, optionals, unions (anyOf), lists and nested models."""
    kind = rng.choice(["int", "float", "str", "bool", "enum", "optional", "union",
                       "list", "nested"] if depth < 2 else ["int", "str", "bool", "enum"])
    if kind == "int":
        lo = rng.randint(-50, 50)
        return Annotated[int, Field(ge=lo, le=lo + rng.randint(1, 500))]
    if kind == "float":
        return Annotated[float, Field(ge=0.0, le=rng.choice([1.0, 10.0, 1000.0]))]
    if kind == "str":
        return Annotated[str, Field(max_length=rng.randint(3, 16))]
    if kind == "bool":
        return bool
    if kind == "enum":
        words = rng.sample(["red", "green", "blue", "cat", "dog", "north", "south", "yes", "no"],
                           rng.randint(2, 4))
        return Literal[tuple(words)]
    if kind == "optional":
        return Optional[scalar(rng, 2, name)]
    if kind == "union":
        return Union[int, bool]
    if kind == "list":
        return Annotated[list[scalar(rng, 2, name)], Field(max_length=rng.randint(1, 3))]
    return model(rng, depth + 1, f"{name}_inner")


def model(rng: random.Random, depth: int, name: str) -> type[BaseModel]:
    fields = {}
    for i in range(rng.randint(1, 4 if depth else 5)):
        fname = f"{rng.choice(['id', 'name', 'score', 'kind', 'tags', 'info', 'size', 'ok'])}_{i}"
        fields[fname] = (scalar(rng, depth, f"{name}_{fname}"), ...)
    return create_model(name, **fields)


def models() -> list[type[BaseModel]]:
    rng = random.Random(SEED)
    return [model(rng, 0, f"Schema{i}") for i in range(SCHEMAS)]


def test_parse_with_50_generated_pydantic_schemas_always_validates(client):
    """The SDK's `parse` sends each model as a strict JSON schema and
    validates the answer with Pydantic; every one must come back parsed."""
    generated = models()
    kinds = json.dumps([m.model_json_schema() for m in generated])
    for keyword in ['"anyOf"', '"enum"', '"maximum"', '"maxItems"', '"$ref"', '"null"']:
        assert keyword in kinds, f"the generated schemas lack {keyword}"

    def ask(m):
        r = client.chat.completions.parse(
            model="smollm2",
            messages=[{"role": "user", "content": f"Fill in a {m.__name__} record."}],
            response_format=m, max_tokens=400, temperature=0.7, seed=7)
        choice = r.choices[0]
        return m.__name__, choice.finish_reason, choice.message.parsed, choice.message.content

    with ThreadPoolExecutor(16) as pool:
        results = list(pool.map(ask, generated))
    bad = [(name, finish, content) for name, finish, parsed, content in results
           if finish != "stop" or parsed is None]
    assert not bad, f"{len(bad)} of {SCHEMAS} did not validate: {bad[:3]}"


def test_regex_choice_and_lark_grammar_constrain_the_output(client):
    phone = client.chat.completions.create(
        model="smollm2", messages=[{"role": "user", "content": "A phone number?"}],
        max_tokens=30, extra_body={"structured_outputs": {"regex": r"\(\d{3}\) \d{3}-\d{4}"}})
    assert re.fullmatch(r"\(\d{3}\) \d{3}-\d{4}", phone.choices[0].message.content), phone

    options = ["positive", "negative", "neutral (mixed)"]
    for field in [{"guided_choice": options}, {"structured_outputs": {"choice": options}}]:
        r = client.chat.completions.create(
            model="smollm2", messages=[{"role": "user", "content": "I love it! Sentiment?"}],
            max_tokens=10, extra_body=field, n=3, temperature=1.0)
        for c in r.choices:
            assert c.message.content in options, (field, c.message.content)
            assert c.finish_reason == "stop"

    # Bounded on purpose: a recursive sum lets a small model add forever.
    grammar = r'''
start: sum
sum: term (OP term)? (OP term)?
term: NUMBER | "(" inner ")"
inner: NUMBER OP NUMBER
OP: "+" | "-"
NUMBER: /[0-9]{1,3}/
'''
    r = client.chat.completions.create(
        model="smollm2", messages=[{"role": "user", "content": "Write a sum."}],
        max_tokens=40, extra_body={"guided_grammar": grammar})
    text = r.choices[0].message.content
    assert r.choices[0].finish_reason == "stop", text
    # The grammar's language: balanced parentheses around +/- of numbers.
    assert re.fullmatch(r"[0-9+\-()]+", text), text
    assert text.count("(") == text.count(")"), text

    # Completions take the same fields.
    r = client.completions.create(model="smollm2", prompt="The year is", max_tokens=8,
                                  extra_body={"guided_regex": r" (19|20)\d\d"})
    assert re.fullmatch(r" (19|20)\d\d", r.choices[0].text), r.choices[0].text


def test_json_mode_and_streaming_give_json(client):
    # JSON mode bounds nothing but the syntax: a prompt that asks for a
    # small object (greedy) lets a 135M model end it.
    r = client.chat.completions.create(
        model="smollm2",
        messages=[{"role": "user", "content": 'Give a JSON object with a cat\'s "name" and "age".'}],
        response_format={"type": "json_object"}, max_tokens=200, temperature=0)
    assert r.choices[0].finish_reason == "stop", r
    assert isinstance(json.loads(r.choices[0].message.content), dict)

    schema = {"type": "object", "properties": {"n": {"type": "integer", "minimum": 1,
              "maximum": 9}, "w": {"enum": ["a", "b"]}}, "required": ["n", "w"],
              "additionalProperties": False}
    chunks = client.chat.completions.create(
        model="smollm2", messages=[{"role": "user", "content": "Pick."}], stream=True,
        response_format={"type": "json_schema", "json_schema": {"name": "p", "schema": schema,
                                                                "strict": True}},
        max_tokens=50)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    v = json.loads(text)
    assert 1 <= v["n"] <= 9 and v["w"] in ("a", "b") and set(v) == {"n", "w"}, text


@pytest.mark.parametrize("body, param", [
    ({"response_format": {"type": "json_schema", "json_schema": {
        "name": "x", "schema": {"type": "object", "properties": {"a": {"$ref": "#/$defs/nope"}}}}}},
     "response_format.json_schema.schema"),
    ({"response_format": {"type": "json_schema", "json_schema": {"name": "x"}}},
     "response_format.json_schema.schema"),
    ({"guided_regex": "(unclosed"}, "guided_regex"),
    ({"guided_grammar": "start: missing_rule"}, "guided_grammar"),
    ({"guided_choice": []}, "guided_choice"),
    ({"structured_outputs": {"xml": "<a/>"}}, "structured_outputs.xml"),
    ({"guided_regex": "a", "guided_choice": ["a"]}, "guided_choice"),
])
def test_what_cannot_be_compiled_is_a_400_naming_the_field(server, body, param):
    r = httpx.post(f"{server.base}/v1/chat/completions", timeout=30, json={
        "model": "smollm2", "messages": [{"role": "user", "content": "hi"}], **body})
    assert r.status_code == 400, r.text
    err = r.json()["error"]
    assert err["param"] == param, err
    assert err["type"] == "invalid_request_error", err


def test_grammar_time_is_reported_per_step(server, client):
    """Both the bitmask work (beside the forward pass) and the grammar
    phase (what the step still waited for) count; only constrained steps
    add to them."""
    def seconds():
        text = httpx.get(f"{server.base}/metrics", timeout=10).text
        phase = re.search(r'engine:step_phase_seconds_total\{[^}]*phase="grammar"[^}]*\} (\S+)',
                          text)
        masks = re.search(r'engine:grammar_bitmask_seconds_total\{[^}]*\} (\S+)', text)
        assert phase and masks, "no grammar phase or bitmask time in /metrics"
        return float(phase.group(1)), float(masks.group(1))

    before = seconds()
    client.chat.completions.create(
        model="smollm2", messages=[{"role": "user", "content": "Hi."}], max_tokens=8)
    assert seconds() == before, "a free request spent grammar time"
    client.chat.completions.create(
        model="smollm2", messages=[{"role": "user", "content": "JSON please."}],
        response_format={"type": "json_object"}, max_tokens=20)
    after = seconds()
    assert after[0] > before[0] and after[1] > before[1], (before, after)


def test_a_constrained_request_beside_free_ones_leaves_them_free(client):
    """Masks are per request: free requests in the same steps still write
    letters the constrained one may not."""
    def free(_):
        return client.completions.create(model="smollm2", prompt="Once upon a time",
                                         max_tokens=16, temperature=0).choices[0].text

    def digits(_):
        return client.completions.create(model="smollm2", prompt="Once upon a time",
                                         max_tokens=16, temperature=0,
                                         extra_body={"guided_regex": "[0-9 ]{16}"}).choices[0].text

    with ThreadPoolExecutor(8) as pool:
        frees = list(pool.map(free, range(4)))
        constrained = list(pool.map(digits, range(4)))
    assert all(re.fullmatch("[0-9 ]{1,16}", t) for t in constrained), constrained
    assert all(re.search("[a-z]", t) for t in frees), frees
    with pytest.raises(openai.BadRequestError):
        client.completions.create(model="smollm2", prompt="x", max_tokens=1,
                                  extra_body={"guided_regex": "("})


@pytest.mark.parametrize("body", [
    {"guided_choice": [f"option number {i}" for i in range(20000)]},
    {"guided_regex": "a{100000}"},
    {"guided_regex": "(a|aa)*(b|ab)*" * 50},
    {"guided_json": {"type": "array", "minItems": 1000000000, "items": {"type": "integer"}}},
    {"guided_json": {"type": "string", "minLength": 10**18, "maxLength": 10**19}},
    {"guided_json": {"type": "integer", "minimum": -1e308, "maximum": 1e308}},
    {"guided_json": {"$ref": "#"}},
    {"guided_json": json.loads('{"type": "object", "properties": {"a": ' * 60 + '{}' + '}}' * 60)},
    {"guided_grammar": "start: " + " ".join(f"r{i}" for i in range(5000)) + "\n"
                       + "\n".join(f"r{i}: \"x\"" for i in range(5000))},
], ids=["20k-choices", "huge-repeat", "ambiguous-regex", "1e9-items", "1e18-length",
        "1e308-bounds", "self-ref", "deep-schema", "5k-rules"])
def test_hostile_grammars_get_an_answer_and_leave_the_server_serving(server, body):
    """What a client could send to make compiling or masking slow or huge:
    each gets a 200 or a 400 in bounded time, and the server serves on."""
    started = time.perf_counter()
    r = httpx.post(f"{server.base}/v1/completions", timeout=120, json={
        "model": "smollm2", "prompt": "x", "max_tokens": 4, **body})
    assert r.status_code in (200, 400), r.text[:300]
    assert time.perf_counter() - started < 60, "a grammar took a minute"
    ok = httpx.post(f"{server.base}/v1/completions", timeout=60, json={
        "model": "smollm2", "prompt": "Hello", "max_tokens": 2})
    assert ok.status_code == 200, ok.text
