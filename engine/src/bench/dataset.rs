//! The prompts of a serving benchmark, as `vllm bench serve` makes them:
//! seeded synthetic prompts of a given length (`random`), or the first
//! human turn of each conversation of a ShareGPT-format JSON file, with
//! the length of its answer as the output length (`sharegpt`).
//!
//! Lengths are in tokens of the server's model, which this client does not
//! have; a synthetic prompt is `input_len` words drawn from common short
//! English words (about one token each in BPE vocabularies), and ShareGPT
//! lengths are estimated at four characters a token. The server's usage
//! gives the true counts in the report.

use std::path::Path;

use anyhow::{bail, Context, Result};
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use serde::Deserialize;

/// One request of the benchmark.
#[derive(Debug, Clone, PartialEq)]
pub struct SampleRequest {
    pub prompt: String,
    /// Estimated prompt tokens (the server's usage replaces it).
    pub prompt_len: usize,
    /// `max_tokens` of the request.
    pub output_len: usize,
}

/// Words of one token each in common BPE vocabularies (with the leading
/// space), so `n` words are close to `n` tokens.
const WORDS: [&str; 48] = [
    "the", "of", "and", "to", "in", "is", "was", "for", "on", "are", "with", "as", "at", "be",
    "this", "have", "from", "or", "one", "had", "by", "word", "but", "not", "what", "all", "were",
    "we", "when", "your", "can", "said", "there", "use", "an", "each", "which", "she", "do", "how",
    "their", "if", "will", "up", "other", "about", "out", "many",
];

/// `num` synthetic prompts of `input_len` words and `output_len` output
/// tokens, each length drawn uniformly within `range_ratio` of its value
/// (vLLM's `--random-range-ratio`), reproducible from `seed`.
pub fn random(
    num: usize,
    input_len: usize,
    output_len: usize,
    range_ratio: f64,
    seed: u64,
) -> Result<Vec<SampleRequest>> {
    if !(0.0..1.0).contains(&range_ratio) {
        bail!("--random-range-ratio must be in [0, 1)");
    }
    if input_len == 0 || output_len == 0 {
        bail!("--random-input-len and --random-output-len must be positive");
    }
    let mut rng = StdRng::seed_from_u64(seed);
    let draw = |n: usize, rng: &mut StdRng| {
        let lo = ((n as f64) * (1.0 - range_ratio)).floor().max(1.0) as usize;
        let hi = ((n as f64) * (1.0 + range_ratio)).ceil() as usize;
        rng.random_range(lo..=hi.max(lo))
    };
    Ok((0..num)
        .map(|_| {
            let len = draw(input_len, &mut rng);
            let out = draw(output_len, &mut rng);
            let words: Vec<&str> = (0..len)
                .map(|_| WORDS[rng.random_range(0..WORDS.len())])
                .collect();
            SampleRequest {
                prompt: words.join(" "),
                prompt_len: len,
                output_len: out,
            }
        })
        .collect())
}

#[derive(Deserialize)]
struct Conversation {
    #[serde(default)]
    conversations: Vec<Turn>,
}

#[derive(Deserialize)]
struct Turn {
    from: String,
    value: String,
}

/// Tokens in `text`, estimated (four characters a token).
fn estimate_tokens(text: &str) -> usize {
    text.chars().count().div_ceil(4)
}

/// `num` requests from a ShareGPT-format file: conversations shuffled by
/// `seed`, each giving its first human turn as the prompt and its answer's
/// length (or `output_len` when set) as `max_tokens`. Like vLLM, skips
/// pairs under 4 tokens and over 1024 prompt or 2048 total tokens.
pub fn sharegpt(
    path: &Path,
    num: usize,
    output_len: Option<usize>,
    seed: u64,
) -> Result<Vec<SampleRequest>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let mut convs: Vec<Conversation> = serde_json::from_str(&text).with_context(|| {
        format!(
            "{}: not ShareGPT format (a JSON array of {{\"conversations\": [{{\"from\", \"value\"}}]}})",
            path.display()
        )
    })?;
    convs.shuffle(&mut StdRng::seed_from_u64(seed));
    let mut out = Vec::with_capacity(num);
    for conv in convs {
        if out.len() == num {
            break;
        }
        let mut turns = conv.conversations.iter();
        let Some(prompt) = turns.find(|t| t.from == "human" || t.from == "user") else {
            continue;
        };
        let Some(answer) = turns.next() else {
            continue;
        };
        let prompt_len = estimate_tokens(&prompt.value);
        let answer_len = output_len.unwrap_or_else(|| estimate_tokens(&answer.value));
        if prompt_len < 4 || answer_len < 4 || prompt_len > 1024 || prompt_len + answer_len > 2048 {
            continue;
        }
        out.push(SampleRequest {
            prompt: prompt.value.clone(),
            prompt_len,
            output_len: answer_len,
        });
    }
    if out.is_empty() {
        bail!("{}: no usable conversation", path.display());
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    #[test]
    fn random_prompts_are_seeded_and_sized() {
        let a = random(5, 32, 8, 0.0, 7).unwrap();
        assert_eq!(a, random(5, 32, 8, 0.0, 7).unwrap());
        assert_ne!(a, random(5, 32, 8, 0.0, 8).unwrap());
        for r in &a {
            assert_eq!(r.prompt.split(' ').count(), 32);
            assert_eq!((r.prompt_len, r.output_len), (32, 8));
        }
        for r in random(50, 100, 10, 0.5, 1).unwrap() {
            assert!((50..=150).contains(&r.prompt_len), "{}", r.prompt_len);
            assert!((5..=15).contains(&r.output_len), "{}", r.output_len);
        }
        assert!(random(1, 0, 8, 0.0, 0).is_err());
        assert!(random(1, 8, 8, 1.0, 0).is_err());
    }

    #[test]
    fn sharegpt_takes_first_human_turn_and_filters() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sg.json");
        std::fs::write(
            &path,
            r#"[
              {"id": "a", "conversations": [
                {"from": "human", "value": "Tell me a story about a brave little toaster."},
                {"from": "gpt", "value": "Once upon a time there was a toaster who was brave."}]},
              {"id": "b", "conversations": [{"from": "human", "value": "hi"}, {"from": "gpt", "value": "hello"}]},
              {"id": "c", "conversations": [{"from": "human", "value": "no answer here at all, sorry"}]}
            ]"#,
        )
        .unwrap();
        let got = sharegpt(&path, 10, None, 0).unwrap();
        assert_eq!(got.len(), 1, "too short and unanswered are skipped");
        assert!(got[0].prompt.starts_with("Tell me a story"));
        assert_eq!(got[0].output_len, 13);
        assert_eq!(sharegpt(&path, 10, Some(5), 0).unwrap()[0].output_len, 5);
        std::fs::write(&path, r#"{"not": "a list"}"#).unwrap();
        let err = sharegpt(&path, 1, None, 0).unwrap_err();
        assert!(format!("{err:#}").contains("ShareGPT"), "{err:#}");
    }
}
