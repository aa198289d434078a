#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use super::*;
use std::time::Duration;

const FULL: &str = include_str!("../../../tests/fixtures/litellm_config.yaml");

fn env(name: &str) -> Option<String> {
    match name {
        "OPENAI_API_KEY" => Some("sk-openai".to_owned()),
        "AZURE_API_KEY" => Some("az-key".to_owned()),
        "ANTHROPIC_API_KEY" => Some("sk-ant".to_owned()),
        "LITELLM_MASTER_KEY" => Some("sk-master".to_owned()),
        _ => None,
    }
}

#[test]
fn the_full_example_loads_with_every_key() {
    let c = GatewayConfig::from_yaml(FULL, &env).unwrap();
    assert!(c.warnings.is_empty(), "{:?}", c.warnings);
    assert_eq!(
        c.model_names(),
        ["gpt-4o", "claude-3", "gemini", "gpt-4o-long", "smollm2"]
    );
    let openai = &c.model_list[0];
    assert_eq!(openai.litellm_params.api_key.as_deref(), Some("sk-openai"));
    assert_eq!(openai.litellm_params.rpm, Some(600));
    assert_eq!(openai.litellm_params.tpm, Some(100_000));
    assert_eq!(openai.litellm_params.weight, Some(2.0));
    assert_eq!(openai.litellm_params.order, Some(1));
    assert_eq!(openai.litellm_params.timeout(), Duration::from_secs(30));
    assert_eq!(openai.litellm_params.input_cost_per_token, Some(0.0000025));
    assert_eq!(openai.model_info.id.as_deref(), Some("gpt-4o-openai"));
    // litellm_settings.drop_params fills deployments that leave it unset.
    assert_eq!(openai.litellm_params.drop_params, Some(true));
    let azure = &c.model_list[1];
    assert_eq!(
        azure.litellm_params.api_version.as_deref(),
        Some("2024-10-21")
    );
    assert_eq!(azure.litellm_params.drop_params, Some(false));
    assert_eq!(
        azure.model_info.extra.get("base_model"),
        Some(&serde_json::json!("azure/gpt-4o"))
    );
    // environment_variables of the file resolve os.environ/ references.
    assert_eq!(
        c.model_list[3].litellm_params.api_key.as_deref(),
        Some("gemini-key-from-file")
    );
    assert!(is_local_model(&c.model_list[5].litellm_params.model));
    assert_eq!(c.general_settings.master_key.as_deref(), Some("sk-master"));

    let p = &c.policy;
    assert_eq!(p.strategy, RoutingStrategy::UsageBased);
    assert_eq!(p.lowest_latency_buffer, 0.1);
    // router_settings wins over litellm_settings.
    assert_eq!(p.num_retries, 3);
    assert_eq!(p.timeout, Some(Duration::from_secs(45)));
    assert_eq!(p.allowed_fails, Some(2));
    assert_eq!(p.cooldown_time, Duration::from_secs(10));
    assert_eq!(p.retry_policy.rate_limit, Some(4));
    assert_eq!(p.retry_policy.internal_server, Some(3));
    assert_eq!(p.retry_policy.timeout, Some(2));
    assert_eq!(p.retry_policy.bad_request, Some(0));
    let pair = |k: &str, v: &[&str]| (k.to_owned(), v.iter().map(|s| s.to_string()).collect());
    assert_eq!(
        p.fallbacks,
        vec![
            pair("gpt-4o", &["claude-3", "gemini"]),
            pair("gemini", &["smollm2"])
        ]
    );
    assert_eq!(
        p.context_window_fallbacks,
        vec![
            pair("gpt-4o", &["gpt-4o-long"]),
            pair("claude-3", &["gemini"])
        ]
    );
    assert_eq!(
        p.content_policy_fallbacks,
        vec![pair("claude-3", &["gpt-4o"]), pair("gemini", &["claude-3"])]
    );
}

#[test]
fn litellm_settings_are_defaults_for_the_router() {
    let c = GatewayConfig::from_yaml(
        "litellm_settings: {num_retries: 5, request_timeout: 7}\nmodel_list: []\n",
        &env,
    )
    .unwrap();
    assert_eq!(c.policy.num_retries, 5);
    assert_eq!(c.policy.timeout, Some(Duration::from_secs(7)));
    let d = GatewayConfig::from_yaml("", &env).unwrap();
    assert_eq!(d.policy, RouterPolicy::default());
    assert_eq!(d.policy.strategy, RoutingStrategy::SimpleShuffle);
    assert_eq!(d.policy.cooldown_time, Duration::from_secs(5));
    assert_eq!(d.policy.allowed_fails, None);
}

#[test]
fn every_strategy_name_parses() {
    for (name, want) in [
        ("simple-shuffle", RoutingStrategy::SimpleShuffle),
        ("least-busy", RoutingStrategy::LeastBusy),
        ("latency-based-routing", RoutingStrategy::LatencyBased),
        ("usage-based-routing", RoutingStrategy::UsageBased),
        ("usage-based-routing-v2", RoutingStrategy::UsageBased),
        ("cost-based-routing", RoutingStrategy::CostBased),
    ] {
        let c = GatewayConfig::from_yaml(
            &format!("router_settings:\n  routing_strategy: {name}\n"),
            &env,
        )
        .unwrap();
        assert_eq!(c.policy.strategy, want, "{name}");
    }
    let err = GatewayConfig::from_yaml("router_settings:\n  routing_strategy: fastest\n", &env)
        .unwrap_err();
    assert!(
        matches!(&err, ConfigError::Invalid { path, .. } if path == "router_settings.routing_strategy"),
        "{err}"
    );
}

#[test]
fn unknown_keys_warn_and_still_load() {
    let yaml = r#"
model_list:
  - model_name: m
    litellm_params:
      model: openai/gpt-4o
      api_key: k
      frobnicate: 3
    mystery: true
router_settings:
  provider_budget_config: {}
litellm_settings:
  set_verbose: true
general_settings:
  alerting: [slack]
future_section: {a: 1}
"#;
    let c = GatewayConfig::from_yaml(yaml, &env).unwrap();
    let all = c.warnings.join("\n");
    for key in [
        "frobnicate",
        "mystery",
        "provider_budget_config",
        "set_verbose",
        "alerting",
        "future_section",
    ] {
        assert!(all.contains(key), "no warning about {key}: {all}");
    }
    assert_eq!(c.model_list.len(), 1);
}

#[test]
fn wrong_types_and_missing_fields_name_the_path() {
    let missing_model = r#"
model_list:
  - model_name: a
    litellm_params: {model: openai/a}
  - model_name: b
    litellm_params: {model: openai/b}
  - model_name: c
    litellm_params: {api_key: k}
"#;
    let err = GatewayConfig::from_yaml(missing_model, &env).unwrap_err();
    match &err {
        ConfigError::Invalid { path, .. } => {
            assert_eq!(path, "model_list[2].litellm_params.model")
        }
        other => panic!("{other:?}"),
    }
    assert!(err
        .to_string()
        .contains("model_list[2].litellm_params.model"));

    let missing_name = "model_list:\n  - litellm_params: {model: openai/a}\n";
    let err = GatewayConfig::from_yaml(missing_name, &env).unwrap_err();
    assert!(
        matches!(&err, ConfigError::Invalid { path, .. } if path == "model_list[0].model_name"),
        "{err}"
    );

    let bad_rpm =
        "model_list:\n  - model_name: a\n    litellm_params: {model: openai/a, rpm: lots}\n";
    let err = GatewayConfig::from_yaml(bad_rpm, &env).unwrap_err();
    assert!(
        matches!(&err, ConfigError::Invalid { path, .. } if path == "model_list[0].litellm_params.rpm"),
        "{err}"
    );

    let bad_retries = "router_settings: {num_retries: [1]}\n";
    let err = GatewayConfig::from_yaml(bad_retries, &env).unwrap_err();
    assert!(
        matches!(&err, ConfigError::Invalid { path, .. } if path == "router_settings.num_retries"),
        "{err}"
    );

    let err = GatewayConfig::from_yaml("model_list: [unclosed", &env).unwrap_err();
    assert!(matches!(err, ConfigError::Yaml { .. }), "{err}");
}

#[test]
fn missing_environment_variables_are_named() {
    let yaml = "model_list:\n  - model_name: a\n    litellm_params: {model: openai/a, api_key: os.environ/NOT_SET_ANYWHERE}\n";
    let err = GatewayConfig::from_yaml(yaml, &env).unwrap_err();
    assert_eq!(
        err,
        ConfigError::MissingEnv {
            path: "model_list[0].litellm_params.api_key".to_owned(),
            name: "NOT_SET_ANYWHERE".to_owned(),
        }
    );
}

#[test]
fn load_reads_a_file_and_reports_io_errors() {
    let err = GatewayConfig::load(Path::new("/nonexistent/config.yaml")).unwrap_err();
    assert!(matches!(err, ConfigError::Io { .. }));
    let dir = std::env::temp_dir().join(format!("gw-config-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("config.yaml");
    std::fs::write(
        &path,
        "model_list:\n  - model_name: a\n    litellm_params: {model: openai/a}\n",
    )
    .unwrap();
    let c = GatewayConfig::load(&path).unwrap();
    assert_eq!(c.model_names(), ["a"]);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn yaml_1_1_numbers_and_booleans_load_as_litellm_reads_them() {
    let yaml = r#"
model_list:
  - model_name: a
    litellm_params:
      model: openai/a
      rpm: 20_000
      tpm: 1_000_000
      timeout: 0x3c
      max_parallel_requests: 0o17
      drop_params: yes
      api_version: "2024_10"
router_settings:
  num_retries: 0b11
  cooldown_time: 1e1
  allowed_fails: 010
litellm_settings:
  drop_params: on
  cache: off
"#;
    let c = GatewayConfig::from_yaml(yaml, &env).unwrap();
    let p = &c.model_list[0].litellm_params;
    assert_eq!(p.rpm, Some(20_000));
    assert_eq!(p.tpm, Some(1_000_000));
    assert_eq!(p.timeout(), Duration::from_secs(60));
    assert_eq!(
        p.extra.get("max_parallel_requests"),
        Some(&serde_json::json!(15))
    );
    assert_eq!(p.drop_params, Some(true));
    // Quoted, it stays the string it was written as.
    assert_eq!(p.api_version.as_deref(), Some("2024_10"));
    assert_eq!(c.policy.num_retries, 3);
    assert_eq!(c.policy.cooldown_time, Duration::from_secs(10));
    // A leading zero is octal in YAML 1.1.
    assert_eq!(c.policy.allowed_fails, Some(8));
    assert_eq!(c.litellm_settings.drop_params, Some(true));
    assert_eq!(c.litellm_settings.cache, Some(false));
}

fn redis_env(vars: &'static [(&'static str, &'static str)]) -> impl Fn(&str) -> Option<String> {
    move |name| {
        vars.iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| (*v).to_owned())
            .or_else(|| env(name))
    }
}

#[test]
fn redis_settings_fall_back_to_litellm_s_environment_variables() {
    let vars = redis_env(&[
        ("REDIS_HOST", "10.0.0.5"),
        ("REDIS_PORT", "6380"),
        ("REDIS_PASSWORD", "pw"),
    ]);
    // cache_params type redis with everything in the environment.
    let c = GatewayConfig::from_yaml(
        "litellm_settings: {cache: true, cache_params: {type: redis}}\n",
        &vars,
    )
    .unwrap();
    let cache = c.litellm_settings.cache_params.as_ref().unwrap();
    assert_eq!(cache.kind, Some(CacheType::Redis));
    assert_eq!(
        cache.redis_url().as_deref(),
        Some("redis://:pw@10.0.0.5:6380")
    );
    // Rate limits share the cache's Redis when router_settings names none.
    assert_eq!(
        c.limits_redis_url(),
        Some((
            "redis://:pw@10.0.0.5:6380".to_owned(),
            "litellm_settings.cache_params"
        ))
    );
    // What the file says wins; the rest comes from the environment.
    let c = GatewayConfig::from_yaml(
        "router_settings: {redis_host: r.local}\n\
         litellm_settings: {cache: true, cache_params: {type: redis, port: 7000}}\n",
        &vars,
    )
    .unwrap();
    assert_eq!(
        c.router_settings.redis_url().as_deref(),
        Some("redis://:pw@r.local:6380")
    );
    assert_eq!(
        c.litellm_settings
            .cache_params
            .as_ref()
            .unwrap()
            .redis_url()
            .as_deref(),
        Some("redis://:pw@10.0.0.5:7000")
    );
    assert_eq!(
        c.limits_redis_url().unwrap().1,
        "router_settings.redis_host"
    );
    // `cache: true` without a type is Redis when the environment names
    // one (LiteLLM's proxy default), REDIS_URL first; in memory otherwise.
    let url_vars = redis_env(&[("REDIS_URL", "redis://u:p@h:1/2"), ("REDIS_HOST", "x")]);
    let c = GatewayConfig::from_yaml("litellm_settings: {cache: true}\n", &url_vars).unwrap();
    let cache = c.litellm_settings.cache_params.as_ref().unwrap();
    assert_eq!(cache.kind, Some(CacheType::Redis));
    assert_eq!(cache.redis_url().as_deref(), Some("redis://u:p@h:1/2"));
    let c = GatewayConfig::from_yaml("litellm_settings: {cache: true}\n", &env).unwrap();
    assert_eq!(
        c.litellm_settings.cache_params.as_ref().unwrap().kind,
        Some(CacheType::Local)
    );
    assert_eq!(c.limits_redis_url(), None);
    // Without Redis in the file, the variables alone turn nothing on.
    let c = GatewayConfig::from_yaml("router_settings: {num_retries: 1}\n", &vars).unwrap();
    assert_eq!(c.limits_redis_url(), None);
    // A bad port is named.
    let bad = redis_env(&[("REDIS_HOST", "h"), ("REDIS_PORT", "sixty")]);
    let err = GatewayConfig::from_yaml(
        "litellm_settings: {cache: true, cache_params: {type: redis}}\n",
        &bad,
    )
    .unwrap_err();
    assert!(err.to_string().contains("REDIS_PORT"), "{err}");
    // ... only where it is used.
    GatewayConfig::from_yaml("router_settings: {num_retries: 1}\n", &bad).unwrap();
}

#[test]
fn durations_no_clock_can_hold_are_clamped_not_a_panic() {
    let c = GatewayConfig::from_yaml(
        "router_settings: {timeout: 1e20, cooldown_time: 1.8e19}\n\
         litellm_settings: {request_timeout: 1e300}\n\
         model_list:\n\
         - model_name: m\n\
         \x20 litellm_params: {model: openai/gpt-4o, timeout: 1e20, stream_timeout: 1e20}\n",
        &env,
    )
    .unwrap();
    assert_eq!(c.policy.timeout, Some(MAX_CONFIG_DURATION));
    assert_eq!(c.policy.cooldown_time, MAX_CONFIG_DURATION);
    let p = &c.model_list[0].litellm_params;
    assert_eq!(p.timeout(), MAX_CONFIG_DURATION);
    assert_eq!(p.stream_timeout(), MAX_CONFIG_DURATION);
    assert!(std::time::Instant::now()
        .checked_add(MAX_CONFIG_DURATION)
        .is_some());
    assert_eq!(config_duration(f64::NAN), None);
    assert_eq!(config_duration(-1.0), None);
    assert_eq!(config_duration(2.5), Some(Duration::from_millis(2500)));
}
