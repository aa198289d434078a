-- Budget resets sum the spend logs that ended since a period began
-- (frontend/src/store/sql/spend.rs, reset_due_budgets).
CREATE INDEX spend_logs_token_hash_end ON spend_logs (token_hash, end_time);
CREATE INDEX spend_logs_team_id_end ON spend_logs (team_id, end_time);
CREATE INDEX spend_logs_user_id_end ON spend_logs (user_id, end_time);
