-- A rolled key keeps working until its grace period ends (SQLite).
ALTER TABLE api_keys ADD COLUMN expires_at_ms INTEGER;
