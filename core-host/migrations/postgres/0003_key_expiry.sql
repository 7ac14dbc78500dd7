-- A rolled key keeps working until its grace period ends (PostgreSQL).
ALTER TABLE api_keys ADD COLUMN expires_at_ms BIGINT;
