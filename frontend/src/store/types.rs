//! The records of the control plane, as plain data: what the admin routes
//! create, what the auth middleware reads and what the spend writer appends.
//!
//! Field names follow LiteLLM's proxy (`LiteLLM_VerificationToken`,
//! `LiteLLM_TeamTable`, `LiteLLM_UserTable`, `LiteLLM_SpendLogs`) so that
//! its admin API maps onto them one to one. Nothing here knows SQL; the
//! backends in [`super::sqlite`] and [`super::postgres`] translate.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Months, NaiveDate, TimeDelta, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// How often a budget starts over, in LiteLLM's notation: `"30s"`, `"10m"`,
/// `"24h"`, `"1d"`, `"7d"`, `"2w"`, `"30d"`, `"1mo"`, or the words
/// `"daily"`, `"weekly"` and `"monthly"`.
///
/// Months are calendar months (`chrono::Months`): a budget reset on 31
/// January with `"1mo"` is next reset on the last day of February, not 30
/// days later. Serialized as its canonical string (`"daily"` becomes
/// `"1d"`), which is also how the stores keep it.
///
/// ```
/// use frontend::store::BudgetDuration;
/// let d: BudgetDuration = "1mo".parse().unwrap();
/// let jan31 = "2025-01-31T00:00:00Z".parse().unwrap();
/// assert_eq!(d.next_after(jan31).to_rfc3339(), "2025-02-28T00:00:00+00:00");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct BudgetDuration {
    amount: u32,
    unit: DurationUnit,
}

/// The unit of a [`BudgetDuration`]; months are kept apart because they
/// have no fixed length.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DurationUnit {
    /// `s`
    Second,
    /// `m`
    Minute,
    /// `h`
    Hour,
    /// `d`
    Day,
    /// `w`
    Week,
    /// `mo`: a calendar month.
    Month,
}

impl DurationUnit {
    fn suffix(self) -> &'static str {
        match self {
            Self::Second => "s",
            Self::Minute => "m",
            Self::Hour => "h",
            Self::Day => "d",
            Self::Week => "w",
            Self::Month => "mo",
        }
    }
}

impl BudgetDuration {
    /// A duration of `amount` units; `None` when `amount` is zero (a budget
    /// that resets continuously is not a budget).
    pub fn new(amount: u32, unit: DurationUnit) -> Option<Self> {
        (amount > 0).then_some(Self { amount, unit })
    }

    /// How many units.
    pub fn amount(self) -> u32 {
        self.amount
    }

    /// Which unit.
    pub fn unit(self) -> DurationUnit {
        self.unit
    }

    /// The first reset time after `from`: `from` plus this duration (plus
    /// calendar months for `mo`, clamped to the month's last day). Saturates
    /// at chrono's maximum date instead of overflowing.
    pub fn next_after(self, from: DateTime<Utc>) -> DateTime<Utc> {
        let amount = i64::from(self.amount);
        let next = match self.unit {
            DurationUnit::Month => from.checked_add_months(Months::new(self.amount)),
            DurationUnit::Second => {
                TimeDelta::try_seconds(amount).and_then(|d| from.checked_add_signed(d))
            }
            DurationUnit::Minute => {
                TimeDelta::try_minutes(amount).and_then(|d| from.checked_add_signed(d))
            }
            DurationUnit::Hour => {
                TimeDelta::try_hours(amount).and_then(|d| from.checked_add_signed(d))
            }
            DurationUnit::Day => {
                TimeDelta::try_days(amount).and_then(|d| from.checked_add_signed(d))
            }
            DurationUnit::Week => {
                TimeDelta::try_weeks(amount).and_then(|d| from.checked_add_signed(d))
            }
        };
        next.unwrap_or(DateTime::<Utc>::MAX_UTC)
    }
}

/// Why a string is not a [`BudgetDuration`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid budget duration `{0}`: expected a positive number and s, m, h, d, w or mo (\"30d\", \"1mo\"), or daily, weekly, monthly")]
pub struct ParseDurationError(String);

impl FromStr for BudgetDuration {
    type Err = ParseDurationError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = || ParseDurationError(s.to_owned());
        let trimmed = s.trim();
        match trimmed.to_ascii_lowercase().as_str() {
            "daily" => {
                return Ok(Self {
                    amount: 1,
                    unit: DurationUnit::Day,
                })
            }
            "weekly" => {
                return Ok(Self {
                    amount: 1,
                    unit: DurationUnit::Week,
                })
            }
            "monthly" => {
                return Ok(Self {
                    amount: 1,
                    unit: DurationUnit::Month,
                })
            }
            _ => {}
        }
        let split = trimmed
            .find(|c: char| !c.is_ascii_digit())
            .ok_or_else(err)?;
        let (digits, suffix) = trimmed.split_at(split);
        let amount: u32 = digits.parse().map_err(|_| err())?;
        let unit = match suffix {
            "s" => DurationUnit::Second,
            "m" => DurationUnit::Minute,
            "h" => DurationUnit::Hour,
            "d" => DurationUnit::Day,
            "w" => DurationUnit::Week,
            "mo" => DurationUnit::Month,
            _ => return Err(err()),
        };
        Self::new(amount, unit).ok_or_else(err)
    }
}

impl fmt::Display for BudgetDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}{}", self.amount, self.unit.suffix())
    }
}

impl Serialize for BudgetDuration {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for BudgetDuration {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let s = String::deserialize(deserializer)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// A virtual key to create. The store never sees the secret: `token_hash`
/// is the SHA-256 hex of it, and `key_name` the display form
/// (`"sk-...abcd"`) shown in lists.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NewKey {
    /// SHA-256 hex of the secret; the primary key.
    pub token_hash: String,
    /// The abbreviated secret shown to admins (`"sk-...abcd"`).
    pub key_name: String,
    /// A human name; unique among keys when set (LiteLLM enforces it too).
    pub key_alias: Option<String>,
    /// Model names this key may call; empty means all.
    pub models: Vec<String>,
    /// Spend ceiling in USD; `None` is unlimited.
    pub max_budget: Option<f64>,
    /// How often spend starts over; `None` never resets.
    pub budget_duration: Option<BudgetDuration>,
    /// Requests per minute; `None` is unlimited.
    pub rpm_limit: Option<u64>,
    /// Tokens per minute; `None` is unlimited.
    pub tpm_limit: Option<u64>,
    /// When the key stops working; `None` never.
    pub expires: Option<DateTime<Utc>>,
    /// Free-form metadata the admin attached (LiteLLM's `metadata`).
    pub metadata: Value,
    /// The team the key belongs to, if any.
    pub team_id: Option<String>,
    /// The user the key belongs to, if any.
    pub user_id: Option<String>,
    /// Creation time; also the start of the first budget period.
    pub created_at: DateTime<Utc>,
}

impl NewKey {
    /// A key with only its identity set: every limit off, no owner, empty
    /// metadata; callers fill the rest with struct update syntax.
    pub fn new(
        token_hash: impl Into<String>,
        key_name: impl Into<String>,
        created_at: DateTime<Utc>,
    ) -> Self {
        Self {
            token_hash: token_hash.into(),
            key_name: key_name.into(),
            key_alias: None,
            models: Vec::new(),
            max_budget: None,
            budget_duration: None,
            rpm_limit: None,
            tpm_limit: None,
            expires: None,
            metadata: Value::Object(Default::default()),
            team_id: None,
            user_id: None,
            created_at,
        }
    }
}

/// A stored virtual key: [`NewKey`] plus what the store maintains.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KeyRecord {
    /// SHA-256 hex of the secret.
    pub token_hash: String,
    /// The abbreviated secret (`"sk-...abcd"`).
    pub key_name: String,
    /// Unique human name, if any.
    pub key_alias: Option<String>,
    /// Allowed models; empty means all.
    pub models: Vec<String>,
    /// Spend ceiling in USD.
    pub max_budget: Option<f64>,
    /// USD spent in the current budget period.
    pub spend: f64,
    /// Budget period.
    pub budget_duration: Option<BudgetDuration>,
    /// When spend next goes back to zero; set exactly when
    /// `budget_duration` is.
    pub budget_reset_at: Option<DateTime<Utc>>,
    /// Requests per minute.
    pub rpm_limit: Option<u64>,
    /// Tokens per minute.
    pub tpm_limit: Option<u64>,
    /// Expiry time.
    pub expires: Option<DateTime<Utc>>,
    /// Admin metadata.
    pub metadata: Value,
    /// Owning team.
    pub team_id: Option<String>,
    /// Owning user.
    pub user_id: Option<String>,
    /// Blocked keys are refused without being deleted (LiteLLM's
    /// `/key/block`).
    pub blocked: bool,
    /// Creation time.
    pub created_at: DateTime<Utc>,
}

/// A partial update of a key: `None` leaves a field as it is; for nullable
/// fields `Some(None)` clears it.
///
/// Setting `budget_duration` also restarts the period: `budget_reset_at`
/// becomes `budget_reset_at` of this update if given, else now plus the new
/// duration (LiteLLM's `/key/update` does the same); clearing the duration
/// clears the reset time.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct KeyUpdate {
    /// New alias (`Some(None)` removes it).
    pub key_alias: Option<Option<String>>,
    /// New model list.
    pub models: Option<Vec<String>>,
    /// New spend ceiling.
    pub max_budget: Option<Option<f64>>,
    /// Overwrites the current spend (an admin correction).
    pub spend: Option<f64>,
    /// New budget period.
    pub budget_duration: Option<Option<BudgetDuration>>,
    /// Explicit next reset time; wins over the one derived from
    /// `budget_duration`.
    pub budget_reset_at: Option<Option<DateTime<Utc>>>,
    /// New requests-per-minute limit.
    pub rpm_limit: Option<Option<u64>>,
    /// New tokens-per-minute limit.
    pub tpm_limit: Option<Option<u64>>,
    /// New expiry.
    pub expires: Option<Option<DateTime<Utc>>>,
    /// Replaces the metadata.
    pub metadata: Option<Value>,
    /// Moves the key to another team.
    pub team_id: Option<Option<String>>,
    /// Moves the key to another user.
    pub user_id: Option<Option<String>>,
    /// Blocks or unblocks the key.
    pub blocked: Option<bool>,
}

/// Which keys [`super::Store::list_keys`] returns: all filters that are set
/// must match; pages are 1-based and sorted newest first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyFilter {
    /// Only keys of this team.
    pub team_id: Option<String>,
    /// Only keys of this user.
    pub user_id: Option<String>,
    /// Only the key with this alias.
    pub key_alias: Option<String>,
    /// 1-based page number (0 is read as 1).
    pub page: u32,
    /// Keys per page; `None` returns every match.
    pub size: Option<u32>,
}

impl Default for KeyFilter {
    fn default() -> Self {
        Self {
            team_id: None,
            user_id: None,
            key_alias: None,
            page: 1,
            size: None,
        }
    }
}

/// A team to create (LiteLLM's `/team/new`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NewTeam {
    /// Primary key.
    pub team_id: String,
    /// Human name.
    pub team_alias: Option<String>,
    /// Models the team's keys may call; empty means all.
    pub models: Vec<String>,
    /// Spend ceiling in USD across the team.
    pub max_budget: Option<f64>,
    /// Budget period.
    pub budget_duration: Option<BudgetDuration>,
    /// Team-wide requests per minute.
    pub rpm_limit: Option<u64>,
    /// Team-wide tokens per minute.
    pub tpm_limit: Option<u64>,
    /// Admin metadata.
    pub metadata: Value,
    /// Creation time; start of the first budget period.
    pub created_at: DateTime<Utc>,
}

impl NewTeam {
    /// A team with only its id set; fill the rest with struct update syntax.
    pub fn new(team_id: impl Into<String>, created_at: DateTime<Utc>) -> Self {
        Self {
            team_id: team_id.into(),
            team_alias: None,
            models: Vec::new(),
            max_budget: None,
            budget_duration: None,
            rpm_limit: None,
            tpm_limit: None,
            metadata: Value::Object(Default::default()),
            created_at,
        }
    }
}

/// A stored team.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TeamRecord {
    /// Primary key.
    pub team_id: String,
    /// Human name.
    pub team_alias: Option<String>,
    /// Allowed models; empty means all.
    pub models: Vec<String>,
    /// Spend ceiling in USD.
    pub max_budget: Option<f64>,
    /// USD spent in the current budget period.
    pub spend: f64,
    /// Budget period.
    pub budget_duration: Option<BudgetDuration>,
    /// When spend next goes back to zero.
    pub budget_reset_at: Option<DateTime<Utc>>,
    /// Requests per minute.
    pub rpm_limit: Option<u64>,
    /// Tokens per minute.
    pub tpm_limit: Option<u64>,
    /// Admin metadata.
    pub metadata: Value,
    /// Creation time.
    pub created_at: DateTime<Utc>,
}

/// A partial update of a team, with [`KeyUpdate`]'s rules: `None` leaves
/// a field, `Some(None)` clears it, a new duration restarts the period.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct TeamUpdate {
    /// New alias.
    pub team_alias: Option<Option<String>>,
    /// New model list.
    pub models: Option<Vec<String>>,
    /// New spend ceiling.
    pub max_budget: Option<Option<f64>>,
    /// Overwrites the current spend.
    pub spend: Option<f64>,
    /// New budget period.
    pub budget_duration: Option<Option<BudgetDuration>>,
    /// Explicit next reset time.
    pub budget_reset_at: Option<Option<DateTime<Utc>>>,
    /// New requests-per-minute limit.
    pub rpm_limit: Option<Option<u64>>,
    /// New tokens-per-minute limit.
    pub tpm_limit: Option<Option<u64>>,
    /// Replaces the metadata.
    pub metadata: Option<Value>,
}

/// A user to create (LiteLLM's `/user/new`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NewUser {
    /// Primary key.
    pub user_id: String,
    /// Contact address.
    pub user_email: Option<String>,
    /// LiteLLM's role string (`"proxy_admin"`, `"internal_user"`, ...).
    pub user_role: Option<String>,
    /// Models the user's keys may call; empty means all.
    pub models: Vec<String>,
    /// Spend ceiling in USD across the user's keys.
    pub max_budget: Option<f64>,
    /// Budget period.
    pub budget_duration: Option<BudgetDuration>,
    /// Requests per minute.
    pub rpm_limit: Option<u64>,
    /// Tokens per minute.
    pub tpm_limit: Option<u64>,
    /// Admin metadata.
    pub metadata: Value,
    /// Creation time; start of the first budget period.
    pub created_at: DateTime<Utc>,
}

impl NewUser {
    /// A user with only its id set; fill the rest with struct update syntax.
    pub fn new(user_id: impl Into<String>, created_at: DateTime<Utc>) -> Self {
        Self {
            user_id: user_id.into(),
            user_email: None,
            user_role: None,
            models: Vec::new(),
            max_budget: None,
            budget_duration: None,
            rpm_limit: None,
            tpm_limit: None,
            metadata: Value::Object(Default::default()),
            created_at,
        }
    }
}

/// A stored user.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UserRecord {
    /// Primary key.
    pub user_id: String,
    /// Contact address.
    pub user_email: Option<String>,
    /// Role string.
    pub user_role: Option<String>,
    /// Allowed models; empty means all.
    pub models: Vec<String>,
    /// Spend ceiling in USD.
    pub max_budget: Option<f64>,
    /// USD spent in the current budget period.
    pub spend: f64,
    /// Budget period.
    pub budget_duration: Option<BudgetDuration>,
    /// When spend next goes back to zero.
    pub budget_reset_at: Option<DateTime<Utc>>,
    /// Requests per minute.
    pub rpm_limit: Option<u64>,
    /// Tokens per minute.
    pub tpm_limit: Option<u64>,
    /// Admin metadata.
    pub metadata: Value,
    /// Creation time.
    pub created_at: DateTime<Utc>,
}

/// A partial update of a user, with [`KeyUpdate`]'s rules.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct UserUpdate {
    /// New contact address.
    pub user_email: Option<Option<String>>,
    /// New role.
    pub user_role: Option<Option<String>>,
    /// New model list.
    pub models: Option<Vec<String>>,
    /// New spend ceiling.
    pub max_budget: Option<Option<f64>>,
    /// Overwrites the current spend.
    pub spend: Option<f64>,
    /// New budget period.
    pub budget_duration: Option<Option<BudgetDuration>>,
    /// Explicit next reset time.
    pub budget_reset_at: Option<Option<DateTime<Utc>>>,
    /// New requests-per-minute limit.
    pub rpm_limit: Option<Option<u64>>,
    /// New tokens-per-minute limit.
    pub tpm_limit: Option<Option<u64>>,
    /// Replaces the metadata.
    pub metadata: Option<Value>,
}

/// Whether a logged request succeeded; failures are logged (at cost 0
/// usually) so the admin UI can show error rates.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SpendStatus {
    /// The provider answered.
    Success,
    /// The request failed after routing.
    Failure,
}

impl SpendStatus {
    /// The stored form, `"success"` or `"failure"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Success => "success",
            Self::Failure => "failure",
        }
    }
}

impl FromStr for SpendStatus {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "success" => Ok(Self::Success),
            "failure" => Ok(Self::Failure),
            other => Err(format!("unknown spend status `{other}`")),
        }
    }
}

/// One request's usage and cost (LiteLLM's `LiteLLM_SpendLogs` row).
/// `request_id` is unique: recording the same log twice counts it once.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SpendLog {
    /// The gateway's request id; primary key.
    pub request_id: String,
    /// The key that paid, if the request was authenticated by one.
    pub token_hash: Option<String>,
    /// That key's alias at request time (kept so charts survive renames
    /// and deletions).
    pub key_alias: Option<String>,
    /// The team charged.
    pub team_id: Option<String>,
    /// The user charged.
    pub user_id: Option<String>,
    /// The model name the client asked for.
    pub model: String,
    /// The deployment's model string (`"openai/gpt-4o"`).
    pub provider_model: String,
    /// Input tokens.
    pub prompt_tokens: u64,
    /// Output tokens.
    pub completion_tokens: u64,
    /// USD.
    pub cost: f64,
    /// When the request arrived; the time every spend query filters on.
    pub start_time: DateTime<Utc>,
    /// When the answer finished.
    pub end_time: DateTime<Utc>,
    /// Served from the response cache.
    pub cache_hit: bool,
    /// Success or failure.
    pub status: SpendStatus,
}

/// Which spend logs a query covers; every filter that is set must match.
/// The range is `[start, end)` on `start_time`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SpendQuery {
    /// Inclusive lower bound of `start_time`.
    pub start: Option<DateTime<Utc>>,
    /// Exclusive upper bound of `start_time`.
    pub end: Option<DateTime<Utc>>,
    /// Only this key's logs.
    pub token_hash: Option<String>,
    /// Only this team's logs.
    pub team_id: Option<String>,
    /// Only this user's logs.
    pub user_id: Option<String>,
    /// Only this client-facing model.
    pub model: Option<String>,
    /// At most this many logs ([`super::Store::spend_logs`] only).
    pub limit: Option<u32>,
}

/// What [`super::Store::daily_spend`] groups by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SpendGroup {
    /// The key's alias, or its hash when it has none.
    Key,
    /// The team id.
    Team,
    /// The user id.
    User,
    /// The client-facing model name.
    Model,
}

/// One bar of the admin UI's spend chart: a UTC day and a group's totals.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DailySpend {
    /// The UTC day.
    pub day: NaiveDate,
    /// The group's value (alias, id or model); empty when the logs had none.
    pub group: String,
    /// USD.
    pub spend: f64,
    /// Number of logged requests.
    pub requests: u64,
    /// Input tokens.
    pub prompt_tokens: u64,
    /// Output tokens.
    pub completion_tokens: u64,
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;

    fn t(s: &str) -> DateTime<Utc> {
        s.parse().unwrap()
    }

    #[test]
    fn parses_litellm_strings() {
        for (s, canonical) in [
            ("30s", "30s"),
            ("10m", "10m"),
            ("24h", "24h"),
            ("1d", "1d"),
            ("7d", "7d"),
            ("30d", "30d"),
            ("2w", "2w"),
            ("1mo", "1mo"),
            ("3mo", "3mo"),
            ("daily", "1d"),
            ("weekly", "1w"),
            ("monthly", "1mo"),
            (" Monthly ", "1mo"),
        ] {
            let d: BudgetDuration = s.parse().unwrap();
            assert_eq!(d.to_string(), canonical, "{s}");
        }
    }

    #[test]
    fn rejects_garbage() {
        for s in [
            "",
            "d",
            "0d",
            "1",
            "1y",
            "-1d",
            "1.5h",
            "1 d",
            "mo",
            "99999999999d",
        ] {
            assert!(s.parse::<BudgetDuration>().is_err(), "{s:?} parsed");
        }
    }

    #[test]
    fn fixed_lengths_add_exactly() {
        let from = t("2025-03-01T12:00:00Z");
        let cases = [
            ("30s", "2025-03-01T12:00:30Z"),
            ("10m", "2025-03-01T12:10:00Z"),
            ("24h", "2025-03-02T12:00:00Z"),
            ("1d", "2025-03-02T12:00:00Z"),
            ("7d", "2025-03-08T12:00:00Z"),
            ("weekly", "2025-03-08T12:00:00Z"),
            ("30d", "2025-03-31T12:00:00Z"),
        ];
        for (s, want) in cases {
            let d: BudgetDuration = s.parse().unwrap();
            assert_eq!(d.next_after(from), t(want), "{s}");
        }
    }

    #[test]
    fn months_are_calendar_months() {
        let mo: BudgetDuration = "1mo".parse().unwrap();
        assert_eq!(
            mo.next_after(t("2025-01-15T00:00:00Z")),
            t("2025-02-15T00:00:00Z")
        );
        // Clamped to the last day of a shorter month, leap years included.
        assert_eq!(
            mo.next_after(t("2025-01-31T08:00:00Z")),
            t("2025-02-28T08:00:00Z")
        );
        assert_eq!(
            mo.next_after(t("2024-01-31T08:00:00Z")),
            t("2024-02-29T08:00:00Z")
        );
        // Across a year end.
        assert_eq!(
            mo.next_after(t("2025-12-31T23:00:00Z")),
            t("2026-01-31T23:00:00Z")
        );
        let q: BudgetDuration = "3mo".parse().unwrap();
        assert_eq!(
            q.next_after(t("2025-11-30T00:00:00Z")),
            t("2026-02-28T00:00:00Z")
        );
    }

    #[test]
    fn saturates_instead_of_overflowing() {
        let d: BudgetDuration = "4000000000d".parse().unwrap();
        assert_eq!(
            d.next_after(t("2025-01-01T00:00:00Z")),
            DateTime::<Utc>::MAX_UTC
        );
    }

    #[test]
    fn serde_is_the_string() {
        let d: BudgetDuration = serde_json::from_str("\"monthly\"").unwrap();
        assert_eq!(serde_json::to_string(&d).unwrap(), "\"1mo\"");
        assert!(serde_json::from_str::<BudgetDuration>("\"soon\"").is_err());
        assert_eq!(
            serde_json::to_string(&SpendStatus::Failure).unwrap(),
            "\"failure\""
        );
    }
}
