//! Admission: whether a caller may start a request now, and what it is
//! reserved against. The records of a virtual key (the key, its team, its
//! user) are each an `Owner` with a model list, a budget and rpm/tpm
//! limits; a request passes when every owner allows the model, every
//! budget has room for its estimated cost (reserved in the same step, see
//! [`super::ledger`]) and every rate limit has room for its sequences.
//! The [`Admission`] it returns is what settlement charges, and gives the
//! reservation back when dropped unsettled.

use super::demand::Demand;
use super::ledger::{BudgetCheck, SpendLedger};
use super::{Caller, ControlError, ControlPlane, KeyContext};
use crate::ratelimit::{Limits, RateLimitError, Subject};
use chrono::{DateTime, Utc};
use std::sync::Arc;
use std::time::Instant;

/// An admitted request: what `settle` needs to charge it. Dropped without
/// being settled, it gives its budget reservation back.
pub struct Admission {
    pub(super) request_id: String,
    pub(super) model: String,
    pub(super) caller_label: String,
    pub(super) token_hash: Option<String>,
    pub(super) key_alias: Option<String>,
    pub(super) team_id: Option<String>,
    pub(super) user_id: Option<String>,
    /// Ledger owners charged (`key:..`, `team:..`, `user:..`).
    pub(super) owners: Vec<String>,
    /// Rate-limit subjects that count tokens.
    pub(super) tpm_subjects: Vec<Subject>,
    pub(super) started: Instant,
    pub(super) start_time: DateTime<Utc>,
    /// The request's estimated prompt tokens (charged when a stream is cut
    /// before the upstream reported usage).
    pub(super) prompt_estimate: u64,
    /// USD reserved for each owner, released at settlement.
    pub(super) reserved: f64,
    pub(super) ledger: Arc<SpendLedger>,
}

impl Drop for Admission {
    fn drop(&mut self) {
        if self.reserved != 0.0 {
            self.ledger.release(&self.owners, self.reserved);
        }
    }
}

impl Admission {
    /// The gateway's id of this request (the spend log's key).
    pub fn request_id(&self) -> &str {
        &self.request_id
    }

    /// The model name the client asked for.
    pub fn model(&self) -> &str {
        &self.model
    }

    /// The request's estimated prompt tokens.
    pub fn prompt_estimate(&self) -> u64 {
        self.prompt_estimate
    }

    /// USD reserved against each budget of the request.
    pub fn reserved(&self) -> f64 {
        self.reserved
    }
}

/// One of the records a request is checked and charged against.
struct Owner<'a> {
    id: String,
    label: String,
    models: &'a [String],
    max_budget: Option<f64>,
    spend: f64,
    reset_at: Option<DateTime<Utc>>,
    limits: Limits,
}

impl<'a> Owner<'a> {
    /// The records `ctx` is checked and charged against: its key, and its
    /// team and user when it has them.
    fn of(ctx: &'a KeyContext, key_label: String) -> Vec<Self> {
        let key = &ctx.key;
        let mut owners = vec![Owner {
            id: format!("key:{}", key.token_hash),
            label: format!("key {key_label}"),
            models: &key.models,
            max_budget: key.max_budget,
            spend: key.spend,
            reset_at: key.budget_reset_at,
            limits: Limits {
                rpm: key.rpm_limit,
                tpm: key.tpm_limit,
            },
        }];
        if let Some(team) = &ctx.team {
            owners.push(Owner {
                id: format!("team:{}", team.team_id),
                label: format!(
                    "team {}",
                    team.team_alias.as_deref().unwrap_or(&team.team_id)
                ),
                models: &team.models,
                max_budget: team.max_budget,
                spend: team.spend,
                reset_at: team.budget_reset_at,
                limits: Limits {
                    rpm: team.rpm_limit,
                    tpm: team.tpm_limit,
                },
            });
        }
        if let Some(user) = &ctx.user {
            owners.push(Owner {
                id: format!("user:{}", user.user_id),
                label: format!("user {}", user.user_id),
                models: &user.models,
                max_budget: user.max_budget,
                spend: user.spend,
                reset_at: user.budget_reset_at,
                limits: Limits {
                    rpm: user.rpm_limit,
                    tpm: user.tpm_limit,
                },
            });
        }
        owners
    }

    /// How an error names the owner with ledger or limiter id `id`.
    fn label_of(owners: &[Self], id: &str) -> String {
        owners
            .iter()
            .find(|o| o.id == id)
            .map_or_else(|| id.to_owned(), |o| o.label.clone())
    }
}

impl ControlPlane {
    /// [`Self::admit_with`] for a request of unknown size (one sequence,
    /// the default `max_tokens`).
    pub async fn admit(&self, caller: &Caller, model: &str) -> Result<Admission, ControlError> {
        self.admit_with(caller, model, &Demand::default()).await
    }

    /// Checks that `caller` may call `model` now with a request of
    /// `demand`'s size: model lists, budgets, rate limits. On success the
    /// request's estimated cost (its prompt plus `max_tokens`, or the
    /// configured default, per sequence, at the model's price) is reserved
    /// against every budget, and its sequences are counted against rpm. A
    /// budget whose committed spend (stored, unflushed and reserved) has
    /// reached it refuses the request.
    pub async fn admit_with(
        &self,
        caller: &Caller,
        model: &str,
        demand: &Demand,
    ) -> Result<Admission, ControlError> {
        let estimate = self.prices.get(model).1.map_or(0.0, |p| {
            p.cost(
                demand.prompt_tokens,
                demand.output_tokens(self.default_max_tokens),
            )
        });
        if estimate > 0.0 && self.writer.is_saturated() {
            return Err(ControlError::Backend {
                message: "spend cannot be recorded right now (the spend store and journal \
                          are unavailable); paid requests are refused until it can"
                    .to_owned(),
            });
        }
        let mut admission = Admission {
            request_id: format!("chatcmpl-gw-{}", uuid::Uuid::new_v4().simple()),
            model: model.to_owned(),
            caller_label: caller.label(),
            token_hash: None,
            key_alias: None,
            team_id: None,
            user_id: None,
            owners: Vec::new(),
            tpm_subjects: Vec::new(),
            started: Instant::now(),
            start_time: self.now(),
            prompt_estimate: demand.prompt_tokens,
            reserved: 0.0,
            ledger: Arc::clone(&self.ledger),
        };
        let Caller::Key(ctx) = caller else {
            return Ok(admission);
        };
        let owners = Owner::of(ctx, caller.label());
        self.check_model_access(&owners, model)?;
        admission.owners = self.reserve_budgets(&owners, admission.start_time, estimate)?;
        // From here on, dropping the admission gives the reservation back.
        admission.reserved = estimate;
        let subjects = self.count_request(&owners, demand.sequences).await?;
        admission.tpm_subjects = subjects
            .into_iter()
            .filter(|s| s.limits.tpm.is_some())
            .collect();
        let key = &ctx.key;
        admission.token_hash = Some(key.token_hash.clone());
        admission.key_alias = key.key_alias.clone();
        admission.team_id = key.team_id.clone();
        admission.user_id = key.user_id.clone();
        Ok(admission)
    }

    /// Refuses `model` unless every owner's model list allows it.
    fn check_model_access(&self, owners: &[Owner<'_>], model: &str) -> Result<(), ControlError> {
        match owners
            .iter()
            .find(|o| !self.catalog.allows(o.models, model))
        {
            None => Ok(()),
            Some(owner) => {
                self.metrics
                    .rejections
                    .with_label_values(&["model_access"])
                    .inc();
                Err(ControlError::ModelNotAllowed {
                    model: model.to_owned(),
                    allowed: owner.models.join(", "),
                })
            }
        }
    }

    /// Checks every owner's budget and reserves `estimate` against all of
    /// them in one step (see [`super::ledger`]); returns the ledger ids
    /// charged.
    fn reserve_budgets(
        &self,
        owners: &[Owner<'_>],
        now: DateTime<Utc>,
        estimate: f64,
    ) -> Result<Vec<String>, ControlError> {
        let checks: Vec<BudgetCheck> = owners
            .iter()
            .filter_map(|owner| {
                let max_budget = owner.max_budget?;
                // A budget whose reset time has come counts from zero even
                // before the sweep writes the reset.
                let stored = if owner.reset_at.is_some_and(|at| at <= now) {
                    0.0
                } else {
                    owner.spend
                };
                Some(BudgetCheck {
                    owner: owner.id.clone(),
                    stored,
                    max_budget,
                })
            })
            .collect();
        let owner_ids: Vec<String> = owners.iter().map(|o| o.id.clone()).collect();
        match self.ledger.try_reserve(&checks, &owner_ids, estimate) {
            Ok(()) => Ok(owner_ids),
            Err(refused) => {
                self.metrics.rejections.with_label_values(&["budget"]).inc();
                Err(ControlError::BudgetExceeded {
                    owner: Owner::label_of(owners, &refused.owner),
                    spend: refused.committed,
                    max_budget: refused.max_budget,
                })
            }
        }
    }

    /// Counts `sequences` against every owner's rpm limit (tpm is counted
    /// at settlement); returns the limited owners as rate-limit subjects.
    async fn count_request(
        &self,
        owners: &[Owner<'_>],
        sequences: u64,
    ) -> Result<Vec<Subject>, ControlError> {
        let subjects: Vec<Subject> = owners
            .iter()
            .filter(|o| !o.limits.is_unlimited())
            .map(|o| Subject::new(o.id.clone(), o.limits))
            .collect();
        if subjects.is_empty() {
            return Ok(subjects);
        }
        match self.limiter.admit_n(&subjects, sequences).await {
            Ok(()) => Ok(subjects),
            Err(RateLimitError::Limited(limited)) => {
                self.metrics
                    .rejections
                    .with_label_values(&["rate_limit"])
                    .inc();
                Err(ControlError::RateLimited {
                    owner: Owner::label_of(owners, &limited.subject),
                    limit: limited.limit.as_str(),
                    value: limited.max,
                    retry_after: limited.retry_after,
                })
            }
            Err(RateLimitError::Backend(message)) => Err(ControlError::Backend {
                message: format!("rate limits unavailable: {message}"),
            }),
        }
    }
}
