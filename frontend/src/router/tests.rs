//! Router behaviour over scripted in-process providers (unit-test
//! doubles of our own `Provider` trait), on tokio's paused clock.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use super::*;
use crate::config::params::DeploymentParams;
use crate::config::policy::DEFAULT_COOLDOWN;
use crate::config::{RetryPolicy, RoutingStrategy};
use crate::openai::Usage;
use futures::StreamExt;
use serde_json::json;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

/// What the scripted provider does on one call.
#[derive(Clone)]
enum Step {
    Ok,
    Fail(ProviderError),
    Slow(Duration),
    /// Stream: the first item is this error.
    FailFirstItem(ProviderError),
    /// Stream: this many chunks, then a cut (Err 502).
    CutAfter(usize),
    /// Stream: ends without any chunk.
    Empty,
}

struct Scripted {
    name: &'static str,
    steps: Mutex<VecDeque<Step>>,
    /// What every call after the script does.
    then: Step,
    calls: AtomicUsize,
    models_seen: Mutex<Vec<String>>,
}

impl Scripted {
    fn new(name: &'static str, steps: Vec<Step>, then: Step) -> Arc<Self> {
        Arc::new(Self {
            name,
            steps: Mutex::new(steps.into()),
            then,
            calls: AtomicUsize::new(0),
            models_seen: Mutex::new(Vec::new()),
        })
    }
    fn ok(name: &'static str) -> Arc<Self> {
        Self::new(name, vec![], Step::Ok)
    }
    fn failing(name: &'static str, e: ProviderError) -> Arc<Self> {
        Self::new(name, vec![], Step::Fail(e))
    }
    fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }
    async fn next(&self, model: &str) -> Step {
        self.calls.fetch_add(1, Ordering::SeqCst);
        self.models_seen.lock().unwrap().push(model.to_owned());
        let step = self
            .steps
            .lock()
            .unwrap()
            .pop_front()
            .unwrap_or_else(|| self.then.clone());
        if let Step::Slow(d) = step {
            tokio::time::sleep(d).await;
        }
        step
    }
    fn chunk(&self, model: &str, text: &str) -> ChatCompletionChunk {
        serde_json::from_value(json!({
            "id": "c", "object": "chat.completion.chunk", "created": 0, "model": model,
            "choices": [{"index": 0, "delta": {"content": text}, "logprobs": null, "finish_reason": null}]
        }))
        .unwrap()
    }
}

#[async_trait::async_trait]
impl Provider for Scripted {
    fn models(&self) -> Vec<ModelCard> {
        vec![ModelCard::new(self.name, "test", None)]
    }
    async fn chat(
        &self,
        req: ChatCompletionRequest,
    ) -> Result<ChatCompletionResponse, ProviderError> {
        match self.next(&req.model).await {
            Step::Fail(e) | Step::FailFirstItem(e) => Err(e),
            _ => Ok(serde_json::from_value(json!({
                "id": "x", "object": "chat.completion", "created": 0, "model": req.model,
                "choices": [{"index": 0, "message": {"role": "assistant", "content": self.name},
                             "logprobs": null, "finish_reason": "stop"}],
                "usage": Usage::new(10, 5),
            }))
            .unwrap()),
        }
    }
    async fn chat_stream(
        &self,
        req: ChatCompletionRequest,
    ) -> Result<ChunkStream<ChatCompletionChunk>, ProviderError> {
        let model = req.model.clone();
        let items: Vec<Result<ChatCompletionChunk, ProviderError>> =
            match self.next(&req.model).await {
                Step::Fail(e) => return Err(e),
                Step::FailFirstItem(e) => vec![Err(e)],
                Step::Empty => vec![],
                Step::CutAfter(k) => (0..k)
                    .map(|i| Ok(self.chunk(&model, &i.to_string())))
                    .chain(std::iter::once(Err(ProviderError::Upstream {
                        status: 502,
                        message: "stream cut".into(),
                        retry_after: None,
                    })))
                    .collect(),
                Step::Ok | Step::Slow(_) => {
                    let mut usage = self.chunk(&model, "");
                    usage.choices.clear();
                    usage.usage = Some(Usage::new(10, 3));
                    vec![
                        Ok(self.chunk(&model, self.name)),
                        Ok(self.chunk(&model, "!")),
                        Ok(usage),
                    ]
                }
            };
        Ok(futures::stream::iter(items).boxed())
    }
    async fn completion(
        &self,
        req: CompletionRequest,
    ) -> Result<CompletionResponse, ProviderError> {
        Err(crate::provider::unsupported(&req.model, "completions"))
    }
    async fn detokenize(
        &self,
        req: crate::openai::DetokenizeRequest,
    ) -> Result<crate::openai::DetokenizeResponse, ProviderError> {
        self.models_seen
            .lock()
            .unwrap()
            .push(req.model.clone().unwrap_or_default());
        Ok(crate::openai::DetokenizeResponse {
            prompt: format!("{} tokens", req.tokens.len()),
        })
    }
    async fn completion_stream(
        &self,
        req: CompletionRequest,
    ) -> Result<ChunkStream<CompletionChunk>, ProviderError> {
        Err(crate::provider::unsupported(&req.model, "completions"))
    }
}

fn spec(model_name: &str, p: &Arc<Scripted>, params: DeploymentParams) -> DeploymentSpec {
    DeploymentSpec {
        model_name: model_name.to_owned(),
        id: p.name.to_owned(),
        params: DeploymentParams {
            model: format!("openai/{}", p.name),
            ..params
        },
        provider: Arc::clone(p) as Arc<dyn Provider>,
    }
}

fn plain() -> DeploymentParams {
    DeploymentParams::default()
}

fn policy(strategy: RoutingStrategy) -> RouterPolicy {
    RouterPolicy {
        strategy,
        num_retries: 0,
        ..RouterPolicy::default()
    }
}

fn router(specs: Vec<DeploymentSpec>, policy: RouterPolicy) -> (Router, prometheus::Registry) {
    let registry = prometheus::Registry::new();
    (Router::new(specs, policy, &registry).unwrap(), registry)
}

fn req(model: &str) -> ChatCompletionRequest {
    serde_json::from_value(json!({"model": model, "messages": [{"role": "user", "content": "hi"}]}))
        .unwrap()
}

fn answer(r: &ChatCompletionResponse) -> String {
    r.choices[0].message.content.clone().unwrap()
}

/// The value of `name` with `labels` in the registry's text exposition
/// (not the protobuf structs, whose API changes with prometheus' features,
/// which the workspace unifies differently from this crate alone).
fn metric(registry: &prometheus::Registry, name: &str, labels: &[(&str, &str)]) -> f64 {
    let text = prometheus::TextEncoder::new()
        .encode_to_string(&registry.gather())
        .unwrap();
    for line in text.lines() {
        let Some(rest) = line.strip_prefix(name) else {
            continue;
        };
        let Some((label_part, value)) = rest.rsplit_once(' ') else {
            continue;
        };
        if !(label_part.is_empty() || label_part.starts_with('{')) {
            continue; // a longer name that starts with `name`
        }
        if labels
            .iter()
            .all(|(k, v)| label_part.contains(&format!("{k}=\"{v}\"")))
        {
            return value.parse().unwrap();
        }
    }
    0.0
}

fn up(status: u16, retry_after: Option<u64>) -> ProviderError {
    ProviderError::Upstream {
        status,
        message: format!("upstream said {status}"),
        retry_after,
    }
}

#[tokio::test]
async fn models_are_the_model_names_in_config_order() {
    let (a, b, c) = (Scripted::ok("a"), Scripted::ok("b"), Scripted::ok("c"));
    let (r, _) = router(
        vec![
            spec("zeta", &a, plain()),
            spec("alpha", &b, plain()),
            spec("zeta", &c, plain()),
        ],
        policy(RoutingStrategy::SimpleShuffle),
    );
    let ids: Vec<String> = r.models().into_iter().map(|m| m.id).collect();
    assert_eq!(ids, ["zeta", "alpha"]);
    let err = r.chat(req("nope")).await.unwrap_err();
    assert_eq!(err.status(), 404);
}

#[tokio::test]
async fn simple_shuffle_follows_weights() {
    let (a, b) = (Scripted::ok("a"), Scripted::ok("b"));
    let w = |x: f64| DeploymentParams {
        weight: Some(x),
        ..plain()
    };
    let (r, _) = router(
        vec![spec("m", &a, w(9.0)), spec("m", &b, w(1.0))],
        policy(RoutingStrategy::SimpleShuffle),
    );
    for _ in 0..1000 {
        r.chat(req("m")).await.unwrap();
    }
    assert!((820..=970).contains(&a.calls()), "a got {}", a.calls());
    assert_eq!(a.calls() + b.calls(), 1000);
}

#[tokio::test]
async fn least_busy_picks_the_fewest_in_flight() {
    let (a, b) = (Scripted::ok("a"), Scripted::ok("b"));
    let (r, _) = router(
        vec![spec("m", &a, plain()), spec("m", &b, plain())],
        policy(RoutingStrategy::LeastBusy),
    );
    let busy = r.deployments("m")[0].start();
    for _ in 0..20 {
        assert_eq!(answer(&r.chat(req("m")).await.unwrap()), "b");
    }
    drop(busy);
    assert_eq!(r.deployments("m")[0].in_flight(), 0);
}

#[tokio::test(start_paused = true)]
async fn latency_based_prefers_the_fastest_and_uses_ttft_for_streams() {
    let slow = Scripted::new("slow", vec![], Step::Slow(Duration::from_millis(300)));
    let fast = Scripted::new("fast", vec![], Step::Slow(Duration::from_millis(20)));
    let (r, _) = router(
        vec![spec("m", &slow, plain()), spec("m", &fast, plain())],
        policy(RoutingStrategy::LatencyBased),
    );
    // Untried deployments score 0, so both get tried first.
    for _ in 0..20 {
        r.chat(req("m")).await.unwrap();
    }
    assert!(slow.calls() <= 2, "slow got {}", slow.calls());
    assert!(fast.calls() >= 18);
    // Streams read time to first token: make the slow one the fastest there.
    r.deployments("m")[0].record_latency(Duration::from_millis(1), true);
    r.deployments("m")[1].record_latency(Duration::from_millis(50), true);
    let before = slow.calls();
    let mut s = req("m");
    s.stream = Some(true);
    r.chat_stream(s).await.unwrap().collect::<Vec<_>>().await;
    assert_eq!(slow.calls(), before + 1);
}

#[tokio::test(start_paused = true)]
async fn usage_based_respects_rpm_and_answers_429_at_the_limit() {
    let (a, b) = (Scripted::ok("a"), Scripted::ok("b"));
    let rpm = |n: u64| DeploymentParams {
        rpm: Some(n),
        ..plain()
    };
    let (r, _) = router(
        vec![spec("m", &a, rpm(2)), spec("m", &b, rpm(3))],
        policy(RoutingStrategy::UsageBased),
    );
    for _ in 0..5 {
        r.chat(req("m")).await.unwrap();
    }
    assert_eq!((a.calls(), b.calls()), (2, 3));
    let err = r.chat(req("m")).await.unwrap_err();
    assert_eq!(err.status(), 429);
    assert!(err.to_string().contains("rpm/tpm limit"), "{err}");
    // tpm comes from the responses' usage (10 + 5 tokens each).
    assert_eq!(r.deployments("m")[1].usage(Instant::now()), (3, 45));
    // A new minute resets the window.
    tokio::time::advance(Duration::from_secs(61)).await;
    r.chat(req("m")).await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn usage_based_respects_tpm() {
    let (a, b) = (Scripted::ok("a"), Scripted::ok("b"));
    let tpm = |n: u64| DeploymentParams {
        tpm: Some(n),
        ..plain()
    };
    let (r, _) = router(
        vec![spec("m", &a, tpm(40)), spec("m", &b, tpm(1_000_000))],
        policy(RoutingStrategy::UsageBased),
    );
    for _ in 0..10 {
        r.chat(req("m")).await.unwrap();
    }
    // a fills its 40 tpm after a few 15-token answers; b takes the rest.
    assert!(a.calls() <= 3, "a got {}", a.calls());
    assert!(b.calls() >= 7);
}

#[tokio::test]
async fn cost_based_picks_the_cheapest_and_unknown_prices_last() {
    let (a, b, c) = (Scripted::ok("a"), Scripted::ok("b"), Scripted::ok("c"));
    let cost = |i: f64, o: f64| DeploymentParams {
        input_cost_per_token: Some(i),
        output_cost_per_token: Some(o),
        ..plain()
    };
    let (r, _) = router(
        vec![
            spec("m", &a, cost(0.00001, 0.00003)),
            spec("m", &b, cost(0.000001, 0.000002)),
            spec("m", &c, plain()),
        ],
        policy(RoutingStrategy::CostBased),
    );
    for _ in 0..20 {
        assert_eq!(answer(&r.chat(req("m")).await.unwrap()), "b");
    }
}

#[tokio::test(start_paused = true)]
async fn order_keeps_traffic_on_the_lowest_group_until_it_cools() {
    let primary = Scripted::new("primary", vec![], Step::Ok);
    let backup = Scripted::ok("backup");
    let ord = |n: u32| DeploymentParams {
        order: Some(n),
        ..plain()
    };
    let (r, _) = router(
        vec![spec("m", &primary, ord(1)), spec("m", &backup, ord(2))],
        policy(RoutingStrategy::SimpleShuffle),
    );
    for _ in 0..10 {
        assert_eq!(answer(&r.chat(req("m")).await.unwrap()), "primary");
    }
    // A 429 cools the primary at once (the group has another deployment).
    primary
        .steps
        .lock()
        .unwrap()
        .push_back(Step::Fail(up(429, None)));
    assert_eq!(r.chat(req("m")).await.unwrap_err().status(), 429);
    assert_eq!(answer(&r.chat(req("m")).await.unwrap()), "backup");
    tokio::time::advance(Duration::from_secs(6)).await;
    assert_eq!(answer(&r.chat(req("m")).await.unwrap()), "primary");
}

#[tokio::test(start_paused = true)]
async fn retries_wait_for_retry_after_on_a_single_deployment() {
    let a = Scripted::new("a", vec![Step::Fail(up(429, Some(3)))], Step::Ok);
    let (r, registry) = router(
        vec![spec("m", &a, plain())],
        RouterPolicy {
            num_retries: 2,
            ..RouterPolicy::default()
        },
    );
    let start = Instant::now();
    r.chat(req("m")).await.unwrap();
    assert!(
        start.elapsed() >= Duration::from_secs(3),
        "{:?}",
        start.elapsed()
    );
    assert_eq!(a.calls(), 2);
    assert_eq!(
        metric(&registry, "gateway_retries_total", &[("model_name", "m")]),
        1.0
    );
}

#[tokio::test(start_paused = true)]
async fn retries_back_off_exponentially_and_give_up_keeping_the_status() {
    let a = Scripted::failing("a", up(503, None));
    let (r, _) = router(
        vec![spec("m", &a, plain())],
        RouterPolicy {
            num_retries: 3,
            allowed_fails: Some(100),
            ..RouterPolicy::default()
        },
    );
    let start = Instant::now();
    let err = r.chat(req("m")).await.unwrap_err();
    assert_eq!(err, up(503, None));
    assert_eq!(a.calls(), 4);
    // 0.5 + 1 + 2 s, each with up to 25 % jitter.
    let waited = start.elapsed();
    assert!(
        waited >= Duration::from_millis(3500) && waited <= Duration::from_millis(4400),
        "{waited:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn client_errors_are_not_retried_unless_the_policy_says_so() {
    for status in [400, 401, 403, 404, 422] {
        let a = Scripted::failing("a", up(status, None));
        let (r, _) = router(
            vec![spec("m", &a, plain())],
            RouterPolicy {
                num_retries: 3,
                ..RouterPolicy::default()
            },
        );
        let err = r.chat(req("m")).await.unwrap_err();
        assert_eq!(err.status().as_u16(), status);
        assert!(err.to_string().contains(&format!("upstream said {status}")));
        assert_eq!(a.calls(), 1, "{status}");
    }
    let a = Scripted::new("a", vec![Step::Fail(up(400, None))], Step::Ok);
    let (r, _) = router(
        vec![spec("m", &a, plain())],
        RouterPolicy {
            num_retries: 0,
            retry_policy: RetryPolicy {
                bad_request: Some(1),
                ..RetryPolicy::default()
            },
            ..RouterPolicy::default()
        },
    );
    r.chat(req("m")).await.unwrap();
    assert_eq!(a.calls(), 2);
}

#[tokio::test(start_paused = true)]
async fn a_retry_goes_to_another_deployment_without_sleeping() {
    let bad = Scripted::failing("bad", up(500, None));
    let good = Scripted::ok("good");
    let (r, _) = router(
        vec![spec("m", &bad, plain()), spec("m", &good, plain())],
        RouterPolicy {
            num_retries: 1,
            allowed_fails: Some(1000),
            ..RouterPolicy::default()
        },
    );
    for _ in 0..20 {
        let start = Instant::now();
        assert_eq!(answer(&r.chat(req("m")).await.unwrap()), "good");
        assert!(start.elapsed() < Duration::from_millis(100));
    }
    assert!(bad.calls() > 0);
}

#[tokio::test(start_paused = true)]
async fn cooldown_after_allowed_fails_then_recovery() {
    let a = Scripted::new(
        "a",
        vec![Step::Fail(up(500, None)), Step::Fail(up(500, None))],
        Step::Ok,
    );
    let (r, registry) = router(
        vec![spec("m", &a, plain())],
        RouterPolicy {
            num_retries: 0,
            allowed_fails: Some(1),
            cooldown_time: Duration::from_secs(5),
            ..RouterPolicy::default()
        },
    );
    let labels = [("model_name", "m"), ("deployment", "a")];
    assert_eq!(r.chat(req("m")).await.unwrap_err().status(), 500);
    assert_eq!(
        metric(&registry, "gateway_deployment_in_cooldown", &labels),
        0.0
    );
    // The second failure in the minute exceeds allowed_fails = 1.
    assert_eq!(r.chat(req("m")).await.unwrap_err().status(), 500);
    assert_eq!(
        metric(&registry, "gateway_deployment_cooldowns_total", &labels),
        1.0
    );
    assert_eq!(
        metric(&registry, "gateway_deployment_in_cooldown", &labels),
        1.0
    );
    // While cooling: fail fast, naming the model, without calling it.
    let err = r.chat(req("m")).await.unwrap_err();
    assert_eq!(err.status(), 429);
    assert!(
        err.to_string().contains("`m`") && err.to_string().contains("cooling down"),
        "{err}"
    );
    assert_eq!(a.calls(), 2);
    tokio::time::advance(Duration::from_secs(5)).await;
    r.chat(req("m")).await.unwrap();
    assert_eq!(a.calls(), 3);
    assert_eq!(
        metric(&registry, "gateway_deployment_in_cooldown", &labels),
        0.0
    );
    assert_eq!(
        metric(
            &registry,
            "gateway_upstream_errors_total",
            &[("deployment", "a"), ("status", "500")]
        ),
        2.0
    );
}

#[tokio::test(start_paused = true)]
async fn failures_older_than_a_minute_do_not_count() {
    let a = Scripted::new(
        "a",
        vec![
            Step::Fail(up(500, None)),
            Step::Ok,
            Step::Fail(up(500, None)),
        ],
        Step::Ok,
    );
    let (r, _) = router(
        vec![spec("m", &a, plain())],
        RouterPolicy {
            num_retries: 0,
            allowed_fails: Some(1),
            ..RouterPolicy::default()
        },
    );
    r.chat(req("m")).await.unwrap_err();
    tokio::time::advance(Duration::from_secs(61)).await;
    r.chat(req("m")).await.unwrap();
    r.chat(req("m")).await.unwrap_err();
    // Only one failure in the last minute: not cooling.
    r.chat(req("m")).await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn all_cooling_fails_fast_to_the_fallbacks() {
    let a = Scripted::failing("a", up(500, None));
    let f = Scripted::ok("f");
    let (r, registry) = router(
        vec![spec("m", &a, plain()), spec("fb", &f, plain())],
        RouterPolicy {
            num_retries: 0,
            allowed_fails: Some(0),
            fallbacks: vec![("m".into(), vec!["fb".into()])],
            ..RouterPolicy::default()
        },
    );
    let first = r.chat(req("m")).await.unwrap();
    assert_eq!((answer(&first).as_str(), first.model.as_str()), ("f", "fb"));
    let second = r.chat(req("m")).await.unwrap();
    assert_eq!(answer(&second), "f");
    assert_eq!(a.calls(), 1, "a cooled down after its first failure");
    assert_eq!(
        metric(
            &registry,
            "gateway_fallbacks_total",
            &[("from", "m"), ("to", "fb")]
        ),
        2.0
    );
}

#[tokio::test(start_paused = true)]
async fn fallbacks_are_tried_in_order_each_with_the_fallback_name() {
    let a = Scripted::failing("a", up(500, None));
    let f1 = Scripted::failing("f1", up(503, None));
    let f2 = Scripted::ok("f2");
    let f3 = Scripted::ok("f3");
    let (r, _) = router(
        vec![
            spec("m", &a, plain()),
            spec("one", &f1, plain()),
            spec("two", &f2, plain()),
            spec("three", &f3, plain()),
        ],
        RouterPolicy {
            num_retries: 1,
            allowed_fails: Some(100),
            fallbacks: vec![("m".into(), vec!["one".into(), "two".into(), "three".into()])],
            ..RouterPolicy::default()
        },
    );
    let resp = r.chat(req("m")).await.unwrap();
    assert_eq!((answer(&resp).as_str(), resp.model.as_str()), ("f2", "two"));
    // Each group got its own retries.
    assert_eq!(
        (a.calls(), f1.calls(), f2.calls(), f3.calls()),
        (2, 2, 1, 0)
    );
    assert_eq!(*f1.models_seen.lock().unwrap(), ["one", "one"]);
    // When every fallback fails, the original error comes back.
    let (r, _) = router(
        vec![spec("m", &a, plain()), spec("one", &f1, plain())],
        RouterPolicy {
            num_retries: 0,
            allowed_fails: Some(100),
            fallbacks: vec![("m".into(), vec!["one".into()])],
            ..RouterPolicy::default()
        },
    );
    assert_eq!(r.chat(req("m")).await.unwrap_err(), up(500, None));
}

#[tokio::test]
async fn context_window_and_content_policy_errors_use_their_own_fallbacks() {
    let too_long = ProviderError::ContextLengthExceeded {
        message: "prompt is 9000 tokens".into(),
    };
    let refused = ProviderError::ContentPolicy {
        message: "refused".into(),
    };
    let short = Scripted::failing("short", too_long.clone());
    let prude = Scripted::failing("prude", refused);
    let long = Scripted::ok("long");
    let lenient = Scripted::ok("lenient");
    let generic = Scripted::ok("generic");
    let (r, _) = router(
        vec![
            spec("short", &short, plain()),
            spec("prude", &prude, plain()),
            spec("long", &long, plain()),
            spec("lenient", &lenient, plain()),
            spec("generic", &generic, plain()),
        ],
        RouterPolicy {
            num_retries: 3,
            fallbacks: vec![
                ("short".into(), vec!["generic".into()]),
                ("prude".into(), vec!["generic".into()]),
            ],
            context_window_fallbacks: vec![("short".into(), vec!["long".into()])],
            content_policy_fallbacks: vec![("prude".into(), vec!["lenient".into()])],
            ..RouterPolicy::default()
        },
    );
    assert_eq!(answer(&r.chat(req("short")).await.unwrap()), "long");
    assert_eq!(answer(&r.chat(req("prude")).await.unwrap()), "lenient");
    // Neither error is retried on the same group.
    assert_eq!((short.calls(), prude.calls(), generic.calls()), (1, 1, 0));
    // Without a matching context-window entry, the generic ones apply.
    let (r, _) = router(
        vec![
            spec("short", &short, plain()),
            spec("generic", &generic, plain()),
        ],
        RouterPolicy {
            fallbacks: vec![("short".into(), vec!["generic".into()])],
            ..RouterPolicy::default()
        },
    );
    assert_eq!(answer(&r.chat(req("short")).await.unwrap()), "generic");
}

#[tokio::test]
async fn invalid_requests_do_not_fall_back() {
    let a = Scripted::failing("a", ProviderError::invalid("seed", "no seed here"));
    let b = Scripted::ok("b");
    let (r, _) = router(
        vec![spec("m", &a, plain()), spec("other", &b, plain())],
        RouterPolicy {
            fallbacks: vec![("m".into(), vec!["other".into()])],
            ..RouterPolicy::default()
        },
    );
    assert_eq!(r.chat(req("m")).await.unwrap_err().status(), 400);
    assert_eq!(b.calls(), 0);
}

#[tokio::test(start_paused = true)]
async fn no_request_outlives_its_timeout() {
    let slow = Scripted::new("slow", vec![], Step::Slow(Duration::from_secs(30)));
    let (r, _) = router(
        vec![spec("m", &slow, plain())],
        RouterPolicy {
            num_retries: 5,
            timeout: Some(Duration::from_secs(2)),
            ..RouterPolicy::default()
        },
    );
    let start = Instant::now();
    assert_eq!(r.chat(req("m")).await.unwrap_err(), ProviderError::Timeout);
    assert_eq!(start.elapsed(), Duration::from_secs(2));
    // The request's own `timeout` wins and is not forwarded.
    let mut own = req("m");
    own.extra.insert("timeout".into(), json!(0.5));
    let start = Instant::now();
    assert_eq!(r.chat(own).await.unwrap_err(), ProviderError::Timeout);
    assert_eq!(start.elapsed(), Duration::from_millis(500));
    // A deployment's timeout bounds each attempt; the retry then succeeds.
    let flaky = Scripted::new("flaky", vec![Step::Slow(Duration::from_secs(30))], Step::Ok);
    let (r, _) = router(
        vec![spec(
            "m",
            &flaky,
            DeploymentParams {
                timeout: Some(1.0),
                ..plain()
            },
        )],
        RouterPolicy {
            num_retries: 1,
            ..RouterPolicy::default()
        },
    );
    r.chat(req("m")).await.unwrap();
    assert_eq!(flaky.calls(), 2);
}

fn stream_req(model: &str) -> ChatCompletionRequest {
    let mut r = req(model);
    r.stream = Some(true);
    r
}

async fn collect(
    s: ChunkStream<ChatCompletionChunk>,
) -> Vec<Result<ChatCompletionChunk, ProviderError>> {
    s.collect().await
}

#[tokio::test(start_paused = true)]
async fn streams_failing_before_the_first_chunk_are_retried() {
    for first in [
        Step::Fail(up(503, None)),
        Step::FailFirstItem(up(500, None)),
        Step::Empty,
    ] {
        let a = Scripted::new("a", vec![first], Step::Ok);
        let (r, _) = router(
            vec![spec("m", &a, plain())],
            RouterPolicy {
                num_retries: 1,
                ..RouterPolicy::default()
            },
        );
        let items = collect(r.chat_stream(stream_req("m")).await.unwrap()).await;
        assert_eq!(a.calls(), 2);
        assert!(items.iter().all(Result::is_ok));
        let text: String = items
            .iter()
            .flatten()
            .flat_map(|c| c.choices.iter())
            .filter_map(|c| c.delta.content.clone())
            .collect();
        assert_eq!(text, "a!");
        // The usage chunk counted toward tpm.
        assert_eq!(r.deployments("m")[0].usage(Instant::now()).1, 13);
    }
}

#[tokio::test(start_paused = true)]
async fn streams_failing_after_the_first_chunk_end_with_an_error_item() {
    let a = Scripted::new("a", vec![Step::CutAfter(2)], Step::Ok);
    let b = Scripted::ok("b");
    let (r, registry) = router(
        vec![
            spec(
                "m",
                &a,
                DeploymentParams {
                    order: Some(1),
                    ..plain()
                },
            ),
            spec(
                "m",
                &b,
                DeploymentParams {
                    order: Some(2),
                    ..plain()
                },
            ),
        ],
        RouterPolicy {
            num_retries: 3,
            ..RouterPolicy::default()
        },
    );
    let items = collect(r.chat_stream(stream_req("m")).await.unwrap()).await;
    assert_eq!(items.len(), 3);
    assert!(items[0].is_ok() && items[1].is_ok());
    assert_eq!(items[2].as_ref().unwrap_err().status(), 502);
    assert_eq!(
        (a.calls(), b.calls()),
        (1, 0),
        "nothing is retried after the first byte"
    );
    assert_eq!(r.deployments("m")[0].in_flight(), 0);
    assert_eq!(
        metric(
            &registry,
            "gateway_upstream_errors_total",
            &[("deployment", "a"), ("status", "502")]
        ),
        1.0
    );
}

#[tokio::test(start_paused = true)]
async fn a_stream_holds_its_in_flight_slot_and_obeys_the_deadline() {
    struct Hanging;
    #[async_trait::async_trait]
    impl Provider for Hanging {
        fn models(&self) -> Vec<ModelCard> {
            vec![]
        }
        async fn chat(
            &self,
            _: ChatCompletionRequest,
        ) -> Result<ChatCompletionResponse, ProviderError> {
            Err(ProviderError::Timeout)
        }
        async fn chat_stream(
            &self,
            req: ChatCompletionRequest,
        ) -> Result<ChunkStream<ChatCompletionChunk>, ProviderError> {
            let first = Scripted::ok("h").chunk(&req.model, "x");
            Ok(futures::stream::once(async move { Ok(first) })
                .chain(futures::stream::pending())
                .boxed())
        }
        async fn completion(
            &self,
            r: CompletionRequest,
        ) -> Result<CompletionResponse, ProviderError> {
            Err(crate::provider::unsupported(&r.model, "completions"))
        }
        async fn completion_stream(
            &self,
            r: CompletionRequest,
        ) -> Result<ChunkStream<CompletionChunk>, ProviderError> {
            Err(crate::provider::unsupported(&r.model, "completions"))
        }
    }
    let (r, _) = router(
        vec![DeploymentSpec {
            model_name: "m".into(),
            id: "h".into(),
            params: plain(),
            provider: Arc::new(Hanging),
        }],
        RouterPolicy {
            timeout: Some(Duration::from_secs(3)),
            ..RouterPolicy::default()
        },
    );
    let start = Instant::now();
    let mut s = r.chat_stream(stream_req("m")).await.unwrap();
    assert!(s.next().await.unwrap().is_ok());
    assert_eq!(r.deployments("m")[0].in_flight(), 1);
    assert_eq!(s.next().await.unwrap().unwrap_err(), ProviderError::Timeout);
    assert!(s.next().await.is_none());
    assert_eq!(start.elapsed(), Duration::from_secs(3));
    drop(s);
    assert_eq!(r.deployments("m")[0].in_flight(), 0);
}

#[tokio::test]
async fn from_config_builds_local_deployments_and_names_bad_entries() {
    let yaml = "model_list:\n  - model_name: mine\n    litellm_params: {model: local/smollm2}\n  - model_name: also\n    litellm_params: {model: engine}\n    model_info: {id: eng}\n";
    let config = GatewayConfig::from_yaml(yaml, &|_| None).unwrap();
    let engine = Scripted::ok("SmolLM2-135M");
    let registry = prometheus::Registry::new();
    let r = Router::from_config(
        &config,
        Some(Arc::clone(&engine) as Arc<dyn Provider>),
        reqwest::Client::new(),
        &registry,
    )
    .unwrap();
    let resp = r.chat(req("mine")).await.unwrap();
    // The engine sees its own model id; the client gets its model_name back.
    assert_eq!(resp.model, "mine");
    assert_eq!(*engine.models_seen.lock().unwrap(), ["SmolLM2-135M"]);
    assert_eq!(r.deployments("mine")[0].id, "mine-0");
    assert_eq!(r.deployments("also")[0].id, "eng");
    let mut s = stream_req("also");
    s.model = "also".into();
    let items = collect(r.chat_stream(s).await.unwrap()).await;
    assert!(items.iter().all(|c| c.as_ref().unwrap().model == "also"));
    // /detokenize reaches the engine under its own model id.
    let detok: crate::openai::DetokenizeRequest =
        serde_json::from_value(json!({"model": "mine", "tokens": [1, 2, 3]})).unwrap();
    assert_eq!(r.detokenize(detok).await.unwrap().prompt, "3 tokens");
    assert_eq!(
        engine.models_seen.lock().unwrap().last().unwrap(),
        "SmolLM2-135M"
    );

    let err = Router::from_config(
        &config,
        None,
        reqwest::Client::new(),
        &prometheus::Registry::new(),
    )
    .err()
    .unwrap();
    assert!(
        matches!(&err, ConfigError::Deployment { index: 0, .. }),
        "{err}"
    );
    assert!(err.to_string().contains("local engine"), "{err}");

    let bad = "model_list:\n  - model_name: x\n    litellm_params: {model: nosuch/model}\n";
    let config = GatewayConfig::from_yaml(bad, &|_| None).unwrap();
    let err = Router::from_config(
        &config,
        None,
        reqwest::Client::new(),
        &prometheus::Registry::new(),
    )
    .err()
    .unwrap();
    assert!(
        err.to_string().contains("model_list[0]") && err.to_string().contains("nosuch/model"),
        "{err}"
    );
}

#[test]
fn fallbacks_must_name_served_models() {
    let a = Scripted::ok("a");
    let err = Router::new(
        vec![spec("m", &a, plain())],
        RouterPolicy {
            fallbacks: vec![("m".into(), vec!["ghost".into()])],
            ..RouterPolicy::default()
        },
        &prometheus::Registry::new(),
    )
    .err()
    .unwrap();
    assert!(err.to_string().contains("ghost"), "{err}");
}

#[tokio::test(start_paused = true)]
async fn without_allowed_fails_the_failure_rate_decides_as_in_litellm() {
    let e = || Step::Fail(up(500, None));
    let a = Scripted::new("a", vec![Step::Ok, Step::Ok, e(), e(), e()], Step::Ok);
    let b = Scripted::ok("b");
    let ord = |n: u32| DeploymentParams {
        order: Some(n),
        ..plain()
    };
    let (r, registry) = router(
        vec![spec("m", &a, ord(1)), spec("m", &b, ord(2))],
        policy(RoutingStrategy::SimpleShuffle),
    );
    assert_eq!(r.policy().allowed_fails, None);
    r.chat(req("m")).await.unwrap();
    r.chat(req("m")).await.unwrap();
    r.chat(req("m")).await.unwrap_err();
    r.chat(req("m")).await.unwrap_err();
    // 2 of 4 failed: under the 5-request minimum, still serving.
    assert!(!r.deployments("m")[0].cooling(Instant::now()).0);
    r.chat(req("m")).await.unwrap_err();
    // 3 of 5 failed (> 50 %): cooling, traffic moves to b.
    assert!(r.deployments("m")[0].cooling(Instant::now()).0);
    assert_eq!(answer(&r.chat(req("m")).await.unwrap()), "b");
    let labels = [("model_name", "m"), ("deployment", "a")];
    assert_eq!(
        metric(&registry, "gateway_deployment_cooldowns_total", &labels),
        1.0
    );

    // The only deployment of a group keeps serving through failures.
    let solo = Scripted::failing("solo", up(500, None));
    let (r, _) = router(
        vec![spec("s", &solo, plain())],
        policy(RoutingStrategy::SimpleShuffle),
    );
    for _ in 0..20 {
        assert_eq!(r.chat(req("s")).await.unwrap_err().status(), 500);
    }
    assert_eq!(solo.calls(), 20);
}

/// A deployment that fails a share of its calls at random, the ways
/// upstreams do: 500, 429 with Retry-After, a malformed body (502), a
/// stream that ends or errors before its first chunk.
struct Chaos {
    name: &'static str,
    fail_rate: f64,
    rng: Mutex<fastrand::Rng>,
    calls: AtomicUsize,
}

impl Chaos {
    fn new(name: &'static str, fail_rate: f64, seed: u64) -> Arc<Self> {
        Arc::new(Self {
            name,
            fail_rate,
            rng: Mutex::new(fastrand::Rng::with_seed(seed)),
            calls: AtomicUsize::new(0),
        })
    }
    fn step(&self) -> Step {
        self.calls.fetch_add(1, Ordering::SeqCst);
        let mut rng = self.rng.lock().unwrap();
        if rng.f64() >= self.fail_rate {
            return Step::Ok;
        }
        match rng.u8(0..5) {
            0 => Step::Fail(up(500, None)),
            1 => Step::Fail(up(429, Some(1))),
            2 => Step::Fail(up(502, None)),
            3 => Step::FailFirstItem(up(503, None)),
            _ => Step::Empty,
        }
    }
    fn scripted(&self) -> Arc<Scripted> {
        Scripted::new(self.name, vec![self.step()], Step::Ok)
    }
}

#[async_trait::async_trait]
impl Provider for Chaos {
    fn models(&self) -> Vec<ModelCard> {
        vec![]
    }
    async fn chat(
        &self,
        r: ChatCompletionRequest,
    ) -> Result<ChatCompletionResponse, ProviderError> {
        tokio::time::sleep(Duration::from_millis(20)).await;
        self.scripted().chat(r).await
    }
    async fn chat_stream(
        &self,
        r: ChatCompletionRequest,
    ) -> Result<ChunkStream<ChatCompletionChunk>, ProviderError> {
        tokio::time::sleep(Duration::from_millis(20)).await;
        self.scripted().chat_stream(r).await
    }
    async fn completion(&self, r: CompletionRequest) -> Result<CompletionResponse, ProviderError> {
        Err(crate::provider::unsupported(&r.model, "completions"))
    }
    async fn completion_stream(
        &self,
        r: CompletionRequest,
    ) -> Result<ChunkStream<CompletionChunk>, ProviderError> {
        Err(crate::provider::unsupported(&r.model, "completions"))
    }
}

#[tokio::test(start_paused = true)]
async fn with_a_fifth_of_upstream_calls_failing_nearly_every_request_succeeds() {
    // Deterministic shuffle and jitter (the runtime is single-threaded).
    fastrand::seed(7);
    // num_retries 3: with LiteLLM's default of 2, a request whose group is
    // all cooling leans on the single fallback deployment's 3 attempts,
    // which all fail 0.2^3 = 0.8 % of the time; 4 attempts make it 0.16 %.
    let (a, b, f) = (
        Chaos::new("a", 0.2, 1),
        Chaos::new("b", 0.2, 2),
        Chaos::new("f", 0.2, 3),
    );
    let chaos = |name: &str, c: &Arc<Chaos>| DeploymentSpec {
        model_name: name.to_owned(),
        id: c.name.to_owned(),
        params: plain(),
        provider: Arc::clone(c) as Arc<dyn Provider>,
    };
    let (r, registry) = router(
        vec![chaos("m", &a), chaos("m", &b), chaos("fb", &f)],
        RouterPolicy {
            fallbacks: vec![("m".into(), vec!["fb".into()])],
            timeout: Some(Duration::from_secs(30)),
            num_retries: 3,
            ..RouterPolicy::default()
        },
    );
    let results: Vec<bool> = futures::stream::iter(0..2000)
        .map(|i| {
            let r = r.clone();
            async move {
                if i % 2 == 0 {
                    r.chat(req("m")).await.is_ok()
                } else {
                    match r.chat_stream(stream_req("m")).await {
                        Ok(s) => collect(s).await.iter().all(Result::is_ok),
                        Err(_) => false,
                    }
                }
            }
        })
        .buffer_unordered(64)
        .collect()
        .await;
    let ok = results.iter().filter(|x| **x).count();
    let upstream_calls = [&a, &b, &f]
        .iter()
        .map(|c| c.calls.load(Ordering::SeqCst))
        .sum::<usize>();
    let retries = metric(&registry, "gateway_retries_total", &[("model_name", "m")]);
    assert!(
        ok >= 1990,
        "{ok}/2000 succeeded over {upstream_calls} upstream calls ({retries} retries)"
    );
    assert!(
        upstream_calls > 2100,
        "failures were retried: {upstream_calls}"
    );
}

#[tokio::test(start_paused = true)]
async fn every_deployment_cooling_waits_for_the_first_back_within_the_deadline() {
    let a = Scripted::failing("a", up(500, None));
    let b = Scripted::failing("b", up(500, None));
    let (r, _) = router(
        vec![spec("m", &a, plain()), spec("m", &b, plain())],
        RouterPolicy {
            num_retries: 5,
            allowed_fails: Some(0),
            ..RouterPolicy::default()
        },
    );
    // a and b fail and cool down; instead of giving up, the router waits
    // for the first to come back (a wait spends a retry) and calls again,
    // until retries run out; the client gets the upstream's error.
    let started = tokio::time::Instant::now();
    assert_eq!(r.chat(req("m")).await.unwrap_err(), up(500, None));
    let calls = a.calls() + b.calls();
    assert!((3..=6).contains(&calls), "{calls} calls for 5 retries");
    let waited = started.elapsed();
    assert!(
        waited >= DEFAULT_COOLDOWN,
        "it waited for the cooldown: {waited:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn every_deployment_cooling_past_the_deadline_fails_fast() {
    let a = Scripted::failing("a", up(500, None));
    let b = Scripted::failing("b", up(500, None));
    let (r, _) = router(
        vec![spec("m", &a, plain()), spec("m", &b, plain())],
        RouterPolicy {
            num_retries: 5,
            allowed_fails: Some(0),
            timeout: Some(DEFAULT_COOLDOWN / 2),
            ..RouterPolicy::default()
        },
    );
    // Both cool down for longer than the request may take: no waiting.
    assert_eq!(r.chat(req("m")).await.unwrap_err(), up(500, None));
    assert_eq!(a.calls() + b.calls(), 2);
    // A new request finds none, cannot wait either, and says so.
    let err = r.chat(req("m")).await.unwrap_err();
    assert_eq!(err.status(), 429);
    assert!(err.to_string().contains("cooling down"));
    assert_eq!(a.calls() + b.calls(), 2);
}

/// The adapters a wildcard router built: (requested name, upstream model).
type Built = Arc<Mutex<Vec<(String, String)>>>;

/// A router whose wildcard entries build `anth` for `anthropic/...`
/// models and `oai` for the rest (a `.../bad` model fails to build),
/// recording what was built.
fn wildcard_router(
    specs: Vec<DeploymentSpec>,
    entries: &[(&str, &str)],
    policy: RouterPolicy,
) -> (Result<Router, ConfigError>, Built) {
    let built: Built = Arc::new(Mutex::new(Vec::new()));
    let anth = Scripted::ok("anth");
    let oai = Scripted::ok("oai");
    let seen = Arc::clone(&built);
    let build: Arc<wildcard::BuildFn> = Arc::new(move |name: &str, params: &DeploymentParams| {
        if params.model.ends_with("/bad") {
            return Err(ProviderError::invalid(
                "model",
                format!("cannot infer the provider of `{}`", params.model),
            ));
        }
        seen.lock()
            .unwrap()
            .push((name.to_owned(), params.model.clone()));
        let p = if params.model.starts_with("anthropic/") {
            &anth
        } else {
            &oai
        };
        Ok(Arc::clone(p) as Arc<dyn Provider>)
    });
    let entries = entries
        .iter()
        .enumerate()
        .map(|(i, (pattern, model))| wildcard::WildcardEntry {
            pattern: (*pattern).to_owned(),
            id: format!("w{i}"),
            params: DeploymentParams {
                model: (*model).to_owned(),
                ..plain()
            },
        })
        .collect();
    let wildcards = Wildcards::new(entries, build).unwrap();
    let r = Router::assemble(
        specs,
        Vec::new(),
        wildcards,
        &[],
        policy,
        &prometheus::Registry::new(),
    );
    (r, built)
}

#[tokio::test]
async fn wildcard_entries_serve_requested_names_and_fallback_targets() {
    let m = Scripted::failing("m", up(500, None));
    let (r, built) = wildcard_router(
        vec![spec("m", &m, plain())],
        &[("*", "openai/*"), ("anthropic/*", "anthropic/*")],
        RouterPolicy {
            fallbacks: vec![("m".into(), vec!["anthropic/claude-x".into()])],
            context_window_fallbacks: vec![("m".into(), vec!["gpt-long".into()])],
            ..policy(RoutingStrategy::SimpleShuffle)
        },
    );
    let r = r.unwrap();
    // The generic fallback names a model only `anthropic/*` serves; the
    // more specific pattern wins over `*`.
    assert_eq!(answer(&r.chat(req("m")).await.unwrap()), "anth");
    assert_eq!(
        *built.lock().unwrap(),
        [(
            "anthropic/claude-x".to_owned(),
            "anthropic/claude-x".to_owned()
        )]
    );
    // `*` with `model: openai/*` sends the requested name to OpenAI.
    let resp = r.chat(req("gpt-z")).await.unwrap();
    assert_eq!(answer(&resp), "oai");
    assert_eq!(
        built.lock().unwrap()[1],
        ("gpt-z".into(), "openai/gpt-z".into())
    );
    // A name resolved once is kept (its cooldowns and latency with it).
    r.chat(req("gpt-z")).await.unwrap();
    assert_eq!(built.lock().unwrap().len(), 2);
    assert!(r.serves("anything-at-all") && r.serves("m"));
    // The listing keeps to model_names a client can ask for.
    let ids: Vec<String> = r.models().into_iter().map(|c| c.id).collect();
    assert_eq!(ids, ["m"]);
    // A context-window error uses its own fallback, also wildcard-served.
    let m2 = Scripted::failing(
        "m",
        ProviderError::ContextLengthExceeded {
            message: "too long".into(),
        },
    );
    let (r2, built2) = wildcard_router(
        vec![spec("m", &m2, plain())],
        &[("*", "openai/*")],
        RouterPolicy {
            context_window_fallbacks: vec![("m".into(), vec!["gpt-long".into()])],
            ..policy(RoutingStrategy::SimpleShuffle)
        },
    );
    assert_eq!(answer(&r2.unwrap().chat(req("m")).await.unwrap()), "oai");
    assert_eq!(built2.lock().unwrap()[0].1, "openai/gpt-long");
    // A requested name whose provider cannot be inferred is that
    // request's 400; nothing is kept for it.
    let err = r.chat(req("bad")).await.unwrap_err();
    assert_eq!(err.status(), 400, "{err}");
    assert!(err.to_string().contains("openai/bad"), "{err}");
}

#[test]
fn fallback_targets_must_be_model_names_or_wildcard_served() {
    let m = Scripted::ok("m");
    let only_anthropic = |to: &str| {
        wildcard_router(
            vec![spec("m", &m, plain())],
            &[("anthropic/*", "anthropic/*")],
            RouterPolicy {
                fallbacks: vec![("m".into(), vec![to.into()])],
                ..RouterPolicy::default()
            },
        )
        .0
    };
    assert!(only_anthropic("anthropic/claude-3").is_ok());
    let err = only_anthropic("gpt-4o").err().unwrap();
    assert!(
        err.to_string().contains("gpt-4o") && err.to_string().contains("wildcard"),
        "{err}"
    );
}

#[tokio::test]
async fn an_entry_that_cannot_be_built_answers_503_while_the_rest_serve() {
    let yaml = "model_list:\n  - model_name: good\n    litellm_params: {model: local/x}\n  \
                - model_name: bad\n    litellm_params: {model: llama3}\n  \
                - model_name: half\n    litellm_params: {model: local/x}\n  \
                - model_name: half\n    litellm_params: {model: nosuch/model}\n";
    let config = GatewayConfig::from_yaml(yaml, &|_| None).unwrap();
    let engine = Scripted::ok("engine");
    let build = |bad: BadEntries| {
        Router::from_config_with(
            &config,
            Some(Arc::clone(&engine) as Arc<dyn Provider>),
            reqwest::Client::new(),
            &prometheus::Registry::new(),
            bad,
        )
    };
    // --strict-config: refused, naming the entry.
    let err = build(BadEntries::Refuse).err().unwrap();
    assert!(
        matches!(&err, ConfigError::Deployment { index: 1, model_name, .. } if model_name == "bad"),
        "{err}"
    );
    let r = build(BadEntries::Isolate).unwrap();
    assert_eq!(r.unservable(), ["bad"]);
    let ids: Vec<String> = r.models().into_iter().map(|c| c.id).collect();
    assert_eq!(ids, ["good", "bad", "half"]);
    assert_eq!(answer(&r.chat(req("good")).await.unwrap()), "engine");
    // A group with one good entry serves on it.
    assert_eq!(answer(&r.chat(req("half")).await.unwrap()), "engine");
    assert_eq!(r.deployments("half").len(), 1);
    let err = r.chat(req("bad")).await.unwrap_err();
    assert_eq!(err.status(), 503);
    let body = err.body();
    assert_eq!(body.error.code.as_deref(), Some("model_not_servable"));
    assert!(
        body.error.message.contains("`bad`"),
        "{}",
        body.error.message
    );
    assert!(r.serves("bad") && !r.serves("ghost"));

    // Fallbacks may name it and may rescue it.
    let yaml = format!("{yaml}router_settings:\n  fallbacks: [{{bad: [good]}}]\n");
    let config = GatewayConfig::from_yaml(&yaml, &|_| None).unwrap();
    let r = Router::from_config_with(
        &config,
        Some(Arc::clone(&engine) as Arc<dyn Provider>),
        reqwest::Client::new(),
        &prometheus::Registry::new(),
        BadEntries::Isolate,
    )
    .unwrap();
    assert_eq!(answer(&r.chat(req("bad")).await.unwrap()), "engine");
}

#[tokio::test(start_paused = true)]
async fn a_timeout_no_clock_can_hold_is_no_timeout_not_a_panic() {
    let a = Scripted::ok("a");
    let (r, _) = router(
        vec![spec("m", &a, plain())],
        policy(RoutingStrategy::SimpleShuffle),
    );
    for huge in [json!(1e20), json!(1.7976931348623157e308), json!(u64::MAX)] {
        let mut own = req("m");
        own.extra.insert("timeout".into(), huge.clone());
        assert_eq!(answer(&r.chat(own).await.unwrap()), "a", "{huge}");
    }
    // Within `Duration` but past what `Instant` can add (about 5.8e11 years).
    let mut own = req("m");
    own.extra.insert("timeout".into(), json!(1.8e19));
    assert_eq!(answer(&r.chat(own).await.unwrap()), "a");
}

#[tokio::test(start_paused = true)]
async fn a_retry_after_of_forever_cools_for_the_longest_allowed_cooldown() {
    let primary = Scripted::new(
        "primary",
        vec![Step::Fail(up(429, Some(u64::MAX)))],
        Step::Ok,
    );
    let backup = Scripted::ok("backup");
    let (r, _) = router(
        vec![spec("m", &primary, plain()), spec("m", &backup, plain())],
        policy(RoutingStrategy::SimpleShuffle),
    );
    // Shuffle may pick either first; call until the primary has failed.
    while primary.calls() == 0 {
        let _ = r.chat(req("m")).await;
    }
    let until = r.shared.groups["m"]
        .iter()
        .find(|d| d.id == "primary")
        .and_then(|d| d.cooldown_until())
        .unwrap();
    assert!(until <= Instant::now() + deployment::MAX_COOLDOWN);
    assert_eq!(answer(&r.chat(req("m")).await.unwrap()), "backup");
}
