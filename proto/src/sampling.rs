//! What a valid `SamplingParams` message is. Both sides of the wire need
//! the same answer: the engine refuses a request before it is queued (so
//! it can never fail a step), and a worker refuses what still reaches it
//! (it takes messages from the network). Kept beside the message, in one
//! place, so the two can never disagree.

use crate::worker::SamplingParams;

/// Temperatures below this sample greedily (vLLM's `_SAMPLING_EPS`):
/// dividing logits by a subnormal such as 1e-40 gives infinities and NaN
/// probabilities.
pub const MIN_TEMPERATURE: f64 = 1e-5;

/// `top_p` as a sampler reads it: proto3's 0 means unset, which is 1
/// (disabled).
pub fn top_p(p: &SamplingParams) -> f32 {
    or_one(p.top_p)
}

/// `repetition_penalty` as a sampler reads it: proto3's 0 means unset,
/// which is 1 (disabled).
pub fn repetition_penalty(p: &SamplingParams) -> f32 {
    or_one(p.repetition_penalty)
}

fn or_one(x: f32) -> f32 {
    if x <= 0.0 {
        1.0
    } else {
        x
    }
}

/// Refuses values no sampler can honour (NaN, negative temperature,
/// probabilities outside `[0, 1]`), naming the field.
pub fn check(p: &SamplingParams) -> Result<(), String> {
    let finite = [
        ("temperature", p.temperature),
        ("top_p", p.top_p),
        ("min_p", p.min_p),
        ("presence_penalty", p.presence_penalty),
        ("frequency_penalty", p.frequency_penalty),
        ("repetition_penalty", p.repetition_penalty),
    ];
    if let Some((name, v)) = finite.iter().find(|(_, v)| !v.is_finite()) {
        return Err(format!("{name} must be finite, got {v}"));
    }
    if p.temperature < 0.0 {
        return Err(format!("temperature must be >= 0, got {}", p.temperature));
    }
    let top_p = top_p(p);
    if !(top_p > 0.0 && top_p <= 1.0) {
        return Err(format!("top_p must be in (0, 1], got {top_p}"));
    }
    if !(0.0..=1.0).contains(&p.min_p) {
        return Err(format!("min_p must be in [0, 1], got {}", p.min_p));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(edit: impl FnOnce(&mut SamplingParams)) -> SamplingParams {
        let mut p = SamplingParams::default();
        edit(&mut p);
        p
    }

    #[test]
    fn zeros_are_unset_and_valid() {
        let p = params(|_| {});
        assert_eq!(top_p(&p), 1.0);
        assert_eq!(repetition_penalty(&p), 1.0);
        assert!(check(&p).is_ok());
    }

    #[test]
    fn values_no_sampler_honours_are_named() {
        let cases: [(SamplingParams, &str); 6] = [
            (params(|p| p.temperature = f32::NAN), "temperature"),
            (params(|p| p.temperature = -1.0), "temperature"),
            (params(|p| p.top_p = 1.5), "top_p"),
            (params(|p| p.top_p = f32::INFINITY), "top_p"),
            (params(|p| p.min_p = 2.0), "min_p"),
            (
                params(|p| p.frequency_penalty = f32::NEG_INFINITY),
                "frequency_penalty",
            ),
        ];
        for (p, field) in cases {
            let err = check(&p).unwrap_err();
            assert!(err.starts_with(field), "{err}");
        }
    }
}
