-- The control plane's tables (see frontend/src/store/mod.rs): virtual keys,
-- teams, users and spend logs, after LiteLLM's schema.prisma. Times are
-- TIMESTAMPTZ; model lists and metadata are JSONB; money is DOUBLE PRECISION
-- (USD). Run inside whatever schema the connection's search_path names.

CREATE TABLE teams (
    team_id         TEXT PRIMARY KEY NOT NULL,
    team_alias      TEXT,
    models          JSONB NOT NULL DEFAULT '[]',
    max_budget      DOUBLE PRECISION,
    spend           DOUBLE PRECISION NOT NULL DEFAULT 0,
    budget_duration TEXT,
    budget_reset_at TIMESTAMPTZ,
    rpm_limit       BIGINT,
    tpm_limit       BIGINT,
    metadata        JSONB NOT NULL DEFAULT '{}',
    created_at      TIMESTAMPTZ NOT NULL
);
CREATE INDEX teams_budget_reset_at ON teams (budget_reset_at);

CREATE TABLE users (
    user_id         TEXT PRIMARY KEY NOT NULL,
    user_email      TEXT,
    user_role       TEXT,
    models          JSONB NOT NULL DEFAULT '[]',
    max_budget      DOUBLE PRECISION,
    spend           DOUBLE PRECISION NOT NULL DEFAULT 0,
    budget_duration TEXT,
    budget_reset_at TIMESTAMPTZ,
    rpm_limit       BIGINT,
    tpm_limit       BIGINT,
    metadata        JSONB NOT NULL DEFAULT '{}',
    created_at      TIMESTAMPTZ NOT NULL
);
CREATE INDEX users_budget_reset_at ON users (budget_reset_at);

-- token_hash is the SHA-256 hex of the secret; the secret is never stored.
-- Keys keep their team_id / user_id without foreign keys, as LiteLLM does:
-- deleting a team leaves its keys for the admin to reassign or delete.
CREATE TABLE virtual_keys (
    token_hash      TEXT PRIMARY KEY NOT NULL,
    key_name        TEXT NOT NULL,
    key_alias       TEXT UNIQUE,
    models          JSONB NOT NULL DEFAULT '[]',
    max_budget      DOUBLE PRECISION,
    spend           DOUBLE PRECISION NOT NULL DEFAULT 0,
    budget_duration TEXT,
    budget_reset_at TIMESTAMPTZ,
    rpm_limit       BIGINT,
    tpm_limit       BIGINT,
    expires         TIMESTAMPTZ,
    metadata        JSONB NOT NULL DEFAULT '{}',
    team_id         TEXT,
    user_id         TEXT,
    blocked         BOOLEAN NOT NULL DEFAULT FALSE,
    created_at      TIMESTAMPTZ NOT NULL
);
CREATE INDEX virtual_keys_team_id ON virtual_keys (team_id, created_at);
CREATE INDEX virtual_keys_user_id ON virtual_keys (user_id, created_at);
CREATE INDEX virtual_keys_created_at ON virtual_keys (created_at);
CREATE INDEX virtual_keys_budget_reset_at ON virtual_keys (budget_reset_at);

-- One row per request; request_id is unique so a retried batch is counted
-- once. Keys, teams and users are copied, not referenced: logs outlive them.
CREATE TABLE spend_logs (
    request_id        TEXT PRIMARY KEY NOT NULL,
    token_hash        TEXT,
    key_alias         TEXT,
    team_id           TEXT,
    user_id           TEXT,
    model             TEXT NOT NULL,
    provider_model    TEXT NOT NULL,
    prompt_tokens     BIGINT NOT NULL,
    completion_tokens BIGINT NOT NULL,
    cost              DOUBLE PRECISION NOT NULL,
    start_time        TIMESTAMPTZ NOT NULL,
    end_time          TIMESTAMPTZ NOT NULL,
    cache_hit         BOOLEAN NOT NULL,
    status            TEXT NOT NULL
);
CREATE INDEX spend_logs_start_time ON spend_logs (start_time);
CREATE INDEX spend_logs_token_hash ON spend_logs (token_hash, start_time);
CREATE INDEX spend_logs_team_id ON spend_logs (team_id, start_time);
CREATE INDEX spend_logs_user_id ON spend_logs (user_id, start_time);
CREATE INDEX spend_logs_model ON spend_logs (model, start_time);
