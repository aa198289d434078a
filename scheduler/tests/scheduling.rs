//! Behaviour tests of the scheduler, one per rule of issue 3, driven through
//! `create_scheduler` and request builders with a fake model runner.

// Test helpers outside #[test] fns may unwrap too (clippy.toml only covers #[test]).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::*;
use scheduler::{
    BlockHashExtras, FinishReason, ModelRunnerOutput, Request, RequestStatus, SchedulerConfig,
    SchedulerError, SchedulingPolicy,
};

// ---- prefix caching ----------------------------------------------------

#[test]
fn shared_system_prompt_hits_the_prefix_cache() {
    let mut s = create_scheduler(config());
    let system = prompt(48, 5_000); // 3 full blocks
    let with_suffix =
        |suffix: u32| -> Vec<u32> { system.iter().copied().chain([suffix, suffix + 1]).collect() };
    s.add_request(Request::builder("a", with_suffix(1)).max_tokens(4).build())
        .unwrap();
    let (out, _) = step(&mut s);
    assert_eq!(out.scheduled_new_reqs[0].num_computed_tokens, 0);
    let a_blocks = s.block_ids(&id("a")).to_vec();

    s.add_request(Request::builder("b", with_suffix(7)).max_tokens(4).build())
        .unwrap();
    let (out, _) = step(&mut s);
    let b = &out.scheduled_new_reqs[0];
    assert_eq!(b.req_id, id("b"));
    assert_eq!(b.num_computed_tokens, 48, "three shared blocks are reused");
    assert_eq!(b.block_ids[0][..3], a_blocks[..3]);
    assert_eq!(
        out.num_scheduled_tokens_for(&id("b")),
        2,
        "only the suffix is computed"
    );
    assert_eq!(
        s.get_request(&id("b")).unwrap().num_cached_tokens(),
        Some(48)
    );
    let stats = s.stats().prefix_cache;
    assert_eq!(stats.hit_tokens, 48);
    assert!((stats.hit_rate() - 48.0 / 100.0).abs() < 1e-9);
}

#[test]
fn different_extra_keys_do_not_share_the_prefix_cache() {
    let mut s = create_scheduler(config());
    let p = prompt(40, 5_000);
    let lora = |name: &str| BlockHashExtras {
        adapter: Some(name.into()),
        ..Default::default()
    };
    s.add_request(
        Request::builder("a", p.clone())
            .hash_extras(lora("sql"))
            .build(),
    )
    .unwrap();
    step(&mut s);
    s.add_request(
        Request::builder("b", p.clone())
            .hash_extras(lora("chat"))
            .build(),
    )
    .unwrap();
    s.add_request(Request::builder("c", p.clone()).build())
        .unwrap();
    let image = BlockHashExtras {
        mm_spans: vec![scheduler::MultiModalSpan {
            offset: 0,
            length: 20,
            hash: "img-1".into(),
        }],
        ..Default::default()
    };
    s.add_request(Request::builder("d", p.clone()).hash_extras(image).build())
        .unwrap();
    let (out, _) = step(&mut s);
    assert_eq!(out.scheduled_new_reqs.len(), 3);
    assert!(out
        .scheduled_new_reqs
        .iter()
        .all(|r| r.num_computed_tokens == 0));
    // The same adapter does hit.
    s.add_request(Request::builder("e", p).hash_extras(lora("sql")).build())
        .unwrap();
    let (out, _) = step(&mut s);
    assert_eq!(out.scheduled_new_reqs[0].num_computed_tokens, 32);
}

// ---- chunked prefill and token budget ----------------------------------

#[test]
fn long_prompt_is_prefilled_in_chunks_within_the_budget() {
    let mut s = create_scheduler(SchedulerConfig {
        max_num_batched_tokens: 64,
        ..config()
    });
    s.add_request(request("a", 150).max_tokens(2).build())
        .unwrap();
    let mut chunks = Vec::new();
    loop {
        let (out, res) = step(&mut s);
        assert!(out.total_num_scheduled_tokens <= 64);
        chunks.push(out.num_scheduled_tokens_for(&id("a")));
        if !res.is_empty() {
            break;
        }
    }
    assert_eq!(chunks, vec![64, 64, 22]);
    // The first chunk is a new request, later ones are deltas.
    let req = s.get_request(&id("a")).unwrap();
    assert_eq!(req.output_token_ids(), &[token_at(150)]);
    assert_eq!(req.num_computed_tokens(), 150);
}

#[test]
fn partial_prefill_steps_ignore_sampled_tokens() {
    let mut s = create_scheduler(SchedulerConfig {
        max_num_batched_tokens: 32,
        ..config()
    });
    s.add_request(request("a", 40).build()).unwrap();
    let out = s.schedule().unwrap();
    let junk = ModelRunnerOutput {
        req_ids: vec![id("a")],
        sampled_token_ids: vec![vec![77]],
    };
    assert!(s.update_from_output(&out, &junk).is_empty());
    assert_eq!(s.get_request(&id("a")).unwrap().num_output_tokens(), 0);
}

#[test]
fn long_prefill_threshold_lets_short_prompts_through() {
    let cfg = SchedulerConfig {
        max_num_batched_tokens: 64,
        long_prefill_token_threshold: Some(32),
        ..config()
    };
    let mut s = create_scheduler(cfg);
    s.add_request(request("long", 200).build()).unwrap();
    s.add_request(request("short", 10).build()).unwrap();
    let (out, _) = step(&mut s);
    assert_eq!(out.num_scheduled_tokens_for(&id("long")), 32);
    assert_eq!(out.num_scheduled_tokens_for(&id("short")), 10);
    assert_eq!(out.total_num_scheduled_tokens, 42);
}

#[test]
fn without_chunking_a_prompt_waits_for_a_budget_that_fits_it() {
    let cfg = SchedulerConfig {
        max_num_batched_tokens: 100,
        max_model_len: 100,
        enable_chunked_prefill: false,
        ..config()
    };
    let mut s = create_scheduler(cfg);
    s.add_request(request("a", 60).max_tokens(3).build())
        .unwrap();
    s.add_request(
        Request::builder("b", prompt(60, 30_000))
            .max_tokens(3)
            .build(),
    )
    .unwrap();
    let (out, _) = step(&mut s);
    assert_eq!(
        out.num_scheduled_reqs(),
        1,
        "b does not fit in the 40 tokens left"
    );
    let (out, _) = step(&mut s);
    assert_eq!(out.num_scheduled_tokens_for(&id("a")), 1);
    assert_eq!(
        out.num_scheduled_tokens_for(&id("b")),
        60,
        "b's whole prompt in one step, never a chunk"
    );
}

#[test]
fn chunking_off_requires_budget_for_the_context() {
    let cfg = SchedulerConfig {
        max_num_batched_tokens: 100,
        enable_chunked_prefill: false,
        ..config()
    };
    let err = scheduler::Scheduler::new(cfg, kv_config(16)).unwrap_err();
    assert!(matches!(err, SchedulerError::InvalidConfig(_)));
}

#[test]
fn max_num_seqs_caps_the_batch() {
    let mut s = create_scheduler(SchedulerConfig {
        max_num_seqs: 2,
        ..config()
    });
    for i in 0..4 {
        s.add_request(request(&format!("r{i}"), 8).build()).unwrap();
    }
    let (out, _) = step(&mut s);
    assert_eq!(out.num_scheduled_reqs(), 2);
    assert_eq!(s.num_running(), 2);
    assert_eq!(s.num_waiting(), 2);
}

// ---- running before waiting and output deltas -------------------------

#[test]
fn running_requests_are_scheduled_before_new_prefills() {
    let mut s = create_scheduler(SchedulerConfig {
        max_num_batched_tokens: 50,
        ..config()
    });
    s.add_request(request("a", 20).max_tokens(10).build())
        .unwrap();
    s.add_request(request("b", 20).max_tokens(10).build())
        .unwrap();
    step(&mut s);
    s.add_request(request("c", 100).build()).unwrap();
    let (out, _) = step(&mut s);
    let order: Vec<_> = out
        .num_scheduled_tokens
        .iter()
        .map(|(r, n)| (r.as_str().to_string(), *n))
        .collect();
    assert_eq!(
        order,
        vec![("a".into(), 1), ("b".into(), 1), ("c".into(), 48)]
    );
    assert_eq!(out.scheduled_cached_reqs.len(), 2);
    assert_eq!(out.scheduled_new_reqs.len(), 1);
}

#[test]
fn running_requests_are_sent_as_deltas() {
    let mut s = create_scheduler(config());
    s.add_request(request("a", 15).max_tokens(40).build())
        .unwrap();
    let (out, _) = step(&mut s);
    assert_eq!(out.scheduled_new_reqs[0].block_ids[0].len(), 1);
    assert_eq!(
        *out.scheduled_new_reqs[0].prompt_token_ids,
        prompt(15, 10_000)[..]
    );
    // The first decode computes position 15, the last slot of block 0.
    let (out, _) = step(&mut s);
    let d = &out.scheduled_cached_reqs[0];
    assert_eq!(
        (
            d.num_computed_tokens,
            d.new_block_ids[0].len(),
            d.resumed_from_preemption
        ),
        (15, 0, false)
    );
    // Position 16 starts block 1.
    let (out, _) = step(&mut s);
    let d = &out.scheduled_cached_reqs[0];
    assert_eq!((d.num_computed_tokens, d.new_block_ids[0].len()), (16, 1));
    assert_eq!(s.block_ids(&id("a")).len(), 2);
}

// ---- preemption ---------------------------------------------------------

/// Runs until nothing is left, returning each request's outputs in order.
fn drain(
    s: &mut scheduler::Scheduler,
    max_steps: usize,
) -> std::collections::HashMap<String, (Vec<u32>, FinishReason)> {
    let mut outs: std::collections::HashMap<String, (Vec<u32>, Option<FinishReason>)> =
        Default::default();
    for _ in 0..max_steps {
        if !s.has_unfinished_requests() {
            break;
        }
        let (_, res) = step(s);
        for r in res {
            let e = outs.entry(r.req_id.as_str().to_string()).or_default();
            e.0.extend(r.new_token_ids);
            e.1 = r.finish_reason;
        }
    }
    assert!(!s.has_unfinished_requests(), "everything finished");
    outs.into_iter()
        .map(|(k, (t, f))| (k, (t, f.expect("finished"))))
        .collect()
}

#[test]
fn preemption_and_resume_keep_token_accounting_exact() {
    // 6 blocks of 16: two requests of 40-token prompts need 3 blocks each
    // at the start and 4 each once they pass 48 tokens.
    let mut s = create_scheduler_with_blocks(config(), 6);
    s.add_request(request("a", 40).max_tokens(20).arrival_time(0.0).build())
        .unwrap();
    s.add_request(
        Request::builder("b", prompt(40, 20_000))
            .max_tokens(20)
            .arrival_time(1.0)
            .build(),
    )
    .unwrap();
    let mut preempted_at = None;
    let mut resumed = None;
    let mut outputs: std::collections::HashMap<String, Vec<u32>> = Default::default();
    let mut finish = std::collections::HashMap::new();
    for step_no in 0..200 {
        if !s.has_unfinished_requests() {
            break;
        }
        let (out, res) = step(&mut s);
        if !out.preempted_req_ids.is_empty() && preempted_at.is_none() {
            assert_eq!(
                out.preempted_req_ids,
                vec![id("b")],
                "the latest arrival goes first"
            );
            let b = s.get_request(&id("b")).unwrap();
            assert_eq!(b.status(), RequestStatus::Preempted);
            assert_eq!(b.num_computed_tokens(), 0);
            assert!(s.block_ids(&id("b")).is_empty(), "its blocks are freed");
            assert_eq!(
                b.num_output_tokens(),
                outputs["b"].len(),
                "its output is kept"
            );
            preempted_at = Some(step_no);
        }
        if let Some(r) = out
            .scheduled_cached_reqs
            .iter()
            .find(|r| r.resumed_from_preemption)
        {
            assert_eq!(r.req_id, id("b"));
            assert_eq!(
                r.new_block_ids,
                s.block_tables(&id("b")),
                "a resumed request gets its whole table"
            );
            let before: Vec<u32> = prompt(40, 20_000)
                .into_iter()
                .chain(outputs["b"].iter().copied())
                .collect();
            assert_eq!(r.new_token_ids, before, "and every token so far");
            resumed.get_or_insert(step_no);
        }
        for r in res {
            outputs
                .entry(r.req_id.as_str().to_string())
                .or_default()
                .extend(&r.new_token_ids);
            if let Some(f) = r.finish_reason {
                finish.insert(r.req_id.as_str().to_string(), f);
            }
        }
    }
    assert!(preempted_at.is_some() && resumed > preempted_at);
    assert!(s.stats().num_preemptions >= 1);
    for (name, len) in [("a", 40usize), ("b", 40)] {
        let expected: Vec<u32> = (len..len + 20).map(token_at).collect();
        assert_eq!(
            outputs[name], expected,
            "{name} got every token exactly once"
        );
        assert_eq!(finish[name], FinishReason::MaxTokens);
    }
    assert_eq!(s.kv_cache().num_free_blocks(), 6);
}

#[test]
fn priority_preemption_takes_the_lowest_priority_first() {
    let cfg = SchedulerConfig {
        policy: SchedulingPolicy::Priority,
        ..config()
    };
    let mut s = create_scheduler_with_blocks(cfg, 6);
    // "low" arrives first but has the worse (higher) priority value.
    s.add_request(
        request("low", 40)
            .priority(5)
            .arrival_time(0.0)
            .max_tokens(20)
            .build(),
    )
    .unwrap();
    s.add_request(
        Request::builder("high", prompt(40, 20_000))
            .priority(0)
            .arrival_time(1.0)
            .max_tokens(20)
            .build(),
    )
    .unwrap();
    let mut first_preempted = None;
    for _ in 0..200 {
        if !s.has_unfinished_requests() {
            break;
        }
        let (out, _) = step(&mut s);
        if let Some(p) = out.preempted_req_ids.first() {
            first_preempted.get_or_insert(p.clone());
        }
    }
    assert_eq!(first_preempted, Some(id("low")));
}

// ---- priority order -----------------------------------------------------

#[test]
fn priority_policy_admits_by_priority_then_arrival() {
    let cfg = SchedulerConfig {
        policy: SchedulingPolicy::Priority,
        max_num_seqs: 1,
        ..config()
    };
    let mut s = create_scheduler(cfg);
    s.add_request(
        request("p2", 8)
            .priority(2)
            .arrival_time(0.0)
            .max_tokens(1)
            .build(),
    )
    .unwrap();
    s.add_request(
        request("p0-late", 8)
            .priority(0)
            .arrival_time(2.0)
            .max_tokens(1)
            .build(),
    )
    .unwrap();
    s.add_request(
        request("p0-early", 8)
            .priority(0)
            .arrival_time(1.0)
            .max_tokens(1)
            .build(),
    )
    .unwrap();
    s.add_request(
        request("p1", 8)
            .priority(1)
            .arrival_time(0.5)
            .max_tokens(1)
            .build(),
    )
    .unwrap();
    let mut order = Vec::new();
    while s.has_unfinished_requests() {
        let (out, _) = step(&mut s);
        order.extend(
            out.scheduled_new_reqs
                .iter()
                .map(|r| r.req_id.as_str().to_string()),
        );
    }
    assert_eq!(order, vec!["p0-early", "p0-late", "p1", "p2"]);
}

#[test]
fn fcfs_ignores_priority() {
    let cfg = SchedulerConfig {
        max_num_seqs: 1,
        ..config()
    };
    let mut s = create_scheduler(cfg);
    s.add_request(request("first", 8).priority(9).max_tokens(1).build())
        .unwrap();
    s.add_request(request("second", 8).priority(0).max_tokens(1).build())
        .unwrap();
    let (out, _) = step(&mut s);
    assert_eq!(out.scheduled_new_reqs[0].req_id, id("first"));
}

// ---- abort ----------------------------------------------------------------

#[test]
fn abort_frees_blocks_at_once() {
    let mut s = create_scheduler_with_blocks(
        SchedulerConfig {
            max_num_seqs: 1,
            ..config()
        },
        64,
    );
    s.add_request(request("run", 100).max_tokens(50).build())
        .unwrap();
    s.add_request(request("wait", 10).build()).unwrap();
    step(&mut s);
    assert_eq!(s.kv_cache().num_free_blocks(), 64 - 7);
    let aborted = s.abort(&[id("run"), id("wait"), id("unknown")]);
    assert_eq!(aborted, vec![id("run"), id("wait")]);
    assert_eq!(s.kv_cache().num_free_blocks(), 64);
    assert_eq!(s.num_running() + s.num_waiting(), 0);
    s.check_invariants().unwrap();
    let out = s.schedule().unwrap();
    assert_eq!(out.finished_req_ids, vec![id("run"), id("wait")]);
    assert!(out.is_empty());
}

#[test]
fn abort_between_schedule_and_update_drops_the_tokens() {
    let mut s = create_scheduler(config());
    s.add_request(request("a", 8).build()).unwrap();
    let out = s.schedule().unwrap();
    let mro = run_model(&s, &out, |_, p| token_at(p));
    s.abort(&[id("a")]);
    assert!(s.update_from_output(&out, &mro).is_empty());
    s.check_invariants().unwrap();
}

// ---- finish reasons -------------------------------------------------------

fn finish_of(
    builder: scheduler::RequestBuilder,
    sample: impl Fn(usize) -> u32,
) -> (Vec<u32>, FinishReason) {
    let mut s = create_scheduler(SchedulerConfig {
        max_model_len: 64,
        ..config()
    });
    s.add_request(builder.build()).unwrap();
    let mut toks = Vec::new();
    for _ in 0..100 {
        let (_, res) = step_with(&mut s, |_, p| sample(p));
        for r in res {
            toks.extend(r.new_token_ids);
            if let Some(f) = r.finish_reason {
                assert!(!s.has_unfinished_requests());
                assert_eq!(
                    s.kv_cache().num_free_blocks(),
                    1024,
                    "finished requests free their blocks"
                );
                return (toks, f);
            }
        }
    }
    panic!("did not finish");
}

#[test]
fn finishes_at_max_tokens() {
    let (t, f) = finish_of(request("a", 4).max_tokens(5), |_| 7);
    assert_eq!((t.len(), f), (5, FinishReason::MaxTokens));
}

#[test]
fn finishes_at_eos_unless_ignored() {
    let eos_at_6 = |p: usize| if p == 6 { 2 } else { 7 };
    let (t, f) = finish_of(request("a", 4).eos_token_id(2).max_tokens(10), eos_at_6);
    assert_eq!((t, f), (vec![7, 7, 2], FinishReason::Eos));
    let (t, f) = finish_of(
        request("a", 4)
            .eos_token_id(2)
            .ignore_eos(true)
            .max_tokens(10),
        eos_at_6,
    );
    assert_eq!((t.len(), f), (10, FinishReason::MaxTokens));
}

#[test]
fn finishes_at_a_stop_token() {
    let (t, f) = finish_of(
        request("a", 4).stop_token_ids(vec![9, 11]).max_tokens(10),
        |p| if p == 5 { 11 } else { 7 },
    );
    assert_eq!((t, f), (vec![7, 11], FinishReason::StopToken(11)));
}

#[test]
fn min_tokens_suppresses_early_stops() {
    let (t, f) = finish_of(
        request("a", 4).eos_token_id(2).min_tokens(3).max_tokens(10),
        |p| if p < 8 { 2 } else { 7 },
    );
    // EOS at outputs 1 and 2 is ignored; the third output is EOS too and ends it.
    assert_eq!((t, f), (vec![2, 2, 2], FinishReason::Eos));
}

#[test]
fn finishes_at_max_model_len() {
    let (t, f) = finish_of(request("a", 60).max_tokens(100), |_| 7);
    assert_eq!((t.len(), f), (4, FinishReason::MaxModelLen));
}

#[test]
fn several_sampled_tokens_stop_at_the_first_stop() {
    let mut s = create_scheduler(config());
    s.add_request(request("a", 4).eos_token_id(2).max_tokens(10).build())
        .unwrap();
    let out = s.schedule().unwrap();
    let mro = ModelRunnerOutput {
        req_ids: vec![id("a")],
        sampled_token_ids: vec![vec![5, 2, 6]],
    };
    let res = s.update_from_output(&out, &mro);
    assert_eq!(res[0].new_token_ids, vec![5, 2]);
    assert_eq!(res[0].finish_reason, Some(FinishReason::Eos));
}

#[test]
fn tokens_for_unscheduled_requests_are_ignored() {
    let mut s = create_scheduler(config());
    s.add_request(request("a", 4).build()).unwrap();
    s.add_request(request("b", 4).build()).unwrap();
    step(&mut s);
    let out = s.schedule().unwrap();
    // Out of order and with a stranger: matched by id, stranger dropped.
    let mro = ModelRunnerOutput {
        req_ids: vec![id("b"), id("zzz"), id("a")],
        sampled_token_ids: vec![vec![1], vec![1], vec![3]],
    };
    let res = s.update_from_output(&out, &mro);
    assert_eq!(res.len(), 2);
}

// ---- admission checks -------------------------------------------------------

#[test]
fn invalid_requests_are_rejected() {
    let mut s = create_scheduler_with_blocks(
        SchedulerConfig {
            max_model_len: 1024,
            ..config()
        },
        8,
    );
    assert!(matches!(
        s.add_request(Request::builder("e", vec![]).build()),
        Err(SchedulerError::EmptyPrompt(_))
    ));
    assert!(matches!(
        s.add_request(request("l", 2000).build()),
        Err(SchedulerError::PromptTooLong { .. })
    ));
    assert!(matches!(
        s.add_request(request("z", 4).max_tokens(0).build()),
        Err(SchedulerError::InvalidStopParams { .. })
    ));
    assert!(matches!(
        s.add_request(request("m", 4).max_tokens(2).min_tokens(3).build()),
        Err(SchedulerError::InvalidStopParams { .. })
    ));
    assert!(matches!(
        s.add_request(request("big", 100).max_tokens(100).build()),
        Err(SchedulerError::ExceedsKvCapacity {
            needed: 13,
            total: 8,
            ..
        })
    ));
    s.add_request(request("ok", 4).build()).unwrap();
    assert!(matches!(
        s.add_request(request("ok", 4).build()),
        Err(SchedulerError::DuplicateRequest(_))
    ));
}

#[test]
fn many_requests_all_finish_under_pressure() {
    let mut s = create_scheduler_with_blocks(
        SchedulerConfig {
            max_num_batched_tokens: 128,
            ..config()
        },
        20,
    );
    for i in 0..30 {
        s.add_request(
            Request::builder(format!("r{i}"), prompt(10 + i * 3, 1000 * i as u32))
                .max_tokens(5 + i)
                .arrival_time(i as f64)
                .build(),
        )
        .unwrap();
    }
    let outs = drain(&mut s, 2000);
    assert_eq!(outs.len(), 30);
    for i in 0..30usize {
        let (toks, f) = &outs[&format!("r{i}")];
        let len = 10 + i * 3;
        assert_eq!(*toks, (len..len + 5 + i).map(token_at).collect::<Vec<_>>());
        assert_eq!(*f, FinishReason::MaxTokens);
    }
    assert_eq!(s.kv_cache().num_free_blocks(), 20);
}

#[test]
fn undone_schedule_does_not_leave_uncomputed_blocks_in_the_prefix_cache() {
    // Priority policy; "low" is mid chunked prefill and scheduled before
    // "high" in a step where high then runs out of blocks: low is preempted
    // after its chunk had reserved (and registered) two full blocks that will
    // never be computed. Its resumption must not hit them.
    let cfg = SchedulerConfig {
        policy: SchedulingPolicy::Priority,
        max_num_batched_tokens: 64,
        long_prefill_token_threshold: Some(32),
        ..config()
    };
    let mut s = create_scheduler_with_blocks(cfg, 8);
    s.add_request(request("low", 112).priority(5).max_tokens(1).build())
        .unwrap();
    s.add_request(
        Request::builder("filler", prompt(4, 30_000))
            .max_tokens(100)
            .arrival_time(1.0)
            .build(),
    )
    .unwrap();
    step(&mut s); // filler 4 tokens, low 0..32
    s.add_request(
        Request::builder("high", prompt(16, 40_000))
            .max_tokens(2)
            .arrival_time(2.0)
            .build(),
    )
    .unwrap();
    step(&mut s); // low 32..64, high 0..16
    let (out, _) = step(&mut s); // low 64..96 reserved, then undone for high
    assert_eq!(out.preempted_req_ids, vec![id("low")]);
    assert_eq!(out.num_scheduled_tokens_for(&id("low")), 0);
    let (out, _) = step(&mut s);
    let low = out
        .scheduled_cached_reqs
        .iter()
        .find(|r| r.req_id == id("low"))
        .unwrap();
    assert!(low.resumed_from_preemption);
    assert_eq!(
        low.num_computed_tokens, 64,
        "only the blocks actually computed are hits"
    );
}

// ---- a worker fails requests of a step ---------------------------------

/// A worker's output without the request it failed.
fn without(mut mro: ModelRunnerOutput, failed: &str) -> ModelRunnerOutput {
    let i = mro.req_ids.iter().position(|r| *r == id(failed)).unwrap();
    mro.req_ids.remove(i);
    mro.sampled_token_ids.remove(i);
    mro
}

#[test]
fn a_failed_request_ends_alone_and_its_fresh_blocks_leave_the_cache() {
    let mut s = create_scheduler(config());
    let system = prompt(48, 5_000); // 3 full blocks
    s.add_request(Request::builder("a", system.clone()).max_tokens(4).build())
        .unwrap();
    step(&mut s); // a computed: its 3 blocks are valid and cached
    s.add_request(
        Request::builder("b", prompt(40, 9_000))
            .max_tokens(4)
            .build(),
    )
    .unwrap();
    // One step: a decodes, b prefills (two full blocks registered).
    let out = s.schedule().unwrap();
    let b_blocks = s.block_ids(&id("b")).to_vec();
    // The worker runs the step without b and reports b failed.
    let mro = without(run_model(&s, &out, |_, pos| token_at(pos)), "b");
    let dependents = s.fail_in_step(&[id("b")], &out);
    assert!(dependents.is_empty(), "a shares nothing with b");
    let res = s.update_from_output(&out, &mro);
    assert_eq!(res.len(), 1, "only a gets its token");
    assert_eq!(res[0].req_id, id("a"));
    assert!(s.get_request(&id("b")).is_none());
    s.check_invariants().unwrap();
    for blk in &b_blocks[..2] {
        assert_eq!(s.kv_cache().pool().block_hash(*blk), None);
    }
    // The same prompt again is computed from scratch; a's prefix still hits.
    s.add_request(
        Request::builder("b2", prompt(40, 9_000))
            .max_tokens(4)
            .build(),
    )
    .unwrap();
    s.add_request(
        Request::builder(
            "c",
            system.iter().copied().chain([1, 2]).collect::<Vec<u32>>(),
        )
        .max_tokens(4)
        .build(),
    )
    .unwrap();
    let (out, _) = step(&mut s);
    let start = |r: &str| {
        out.scheduled_new_reqs
            .iter()
            .find(|n| n.req_id == id(r))
            .unwrap()
            .num_computed_tokens
    };
    assert_eq!(start("b2"), 0);
    assert_eq!(start("c"), 48);
}

#[test]
fn requests_reading_a_failed_requests_fresh_blocks_end_with_it() {
    let mut s = create_scheduler(config());
    let shared = prompt(48, 5_000);
    let with = |x: u32| -> Vec<u32> { shared.iter().copied().chain([x]).collect() };
    // In one step: "a" prefills the shared prefix, "b" finds a's blocks
    // (registered at allocation) and computes only its last token, "c" is
    // unrelated.
    s.add_request(Request::builder("a", with(1)).max_tokens(4).build())
        .unwrap();
    s.add_request(Request::builder("b", with(2)).max_tokens(4).build())
        .unwrap();
    s.add_request(
        Request::builder("c", prompt(20, 20_000))
            .max_tokens(4)
            .build(),
    )
    .unwrap();
    let out = s.schedule().unwrap();
    let b = out
        .scheduled_new_reqs
        .iter()
        .find(|n| n.req_id == id("b"))
        .unwrap();
    assert_eq!(b.num_computed_tokens, 48, "b shares a's uncomputed blocks");
    let mro = without(run_model(&s, &out, |_, pos| token_at(pos)), "a");
    let dependents = s.fail_in_step(&[id("a")], &out);
    assert_eq!(dependents, vec![id("b")]);
    let res = s.update_from_output(&out, &mro);
    assert_eq!(res.len(), 1);
    assert_eq!(res[0].req_id, id("c"));
    s.check_invariants().unwrap();
    assert_eq!(
        s.kv_cache().pool().num_cached_blocks(),
        1,
        "only c's full block"
    );
    s.add_request(Request::builder("d", with(3)).max_tokens(4).build())
        .unwrap();
    let (out, _) = step(&mut s);
    assert_eq!(out.scheduled_new_reqs[0].num_computed_tokens, 0);
}

/// A running request's delta carries the tokens sampled since it was last
/// scheduled, so the workers' step is built from the output alone.
#[test]
fn cached_requests_carry_the_tokens_sampled_since_their_last_step() {
    let mut s = create_scheduler(config());
    s.add_request(request("a", 4).max_tokens(10).build())
        .unwrap();
    let (first, _) = step_with(&mut s, |_, p| 100 + p as u32);
    assert_eq!(first.scheduled_new_reqs.len(), 1);
    let mut sampled = Vec::new();
    for _ in 0..3 {
        let (out, res) = step_with(&mut s, |_, p| 100 + p as u32);
        let delta = &out.scheduled_cached_reqs[0];
        assert!(!delta.resumed_from_preemption);
        // The previous step's sample, and nothing the workers already hold.
        let previous = s.get_request(&id("a")).unwrap().all_token_ids()
            [4 + sampled.len()..4 + sampled.len() + 1]
            .to_vec();
        assert_eq!(delta.new_token_ids, previous);
        sampled.extend(previous);
        assert!(res.iter().all(|r| r.finish_reason.is_none()));
    }
}
