-- What a key may do and how often, and the API version an account is pinned to.
-- scopes: space-separated route scopes ('*' = all); rate_limit: 'N/W' (N requests per W seconds), NULL = the edge's default.
ALTER TABLE api_keys ADD COLUMN scopes TEXT NOT NULL DEFAULT '*';
ALTER TABLE api_keys ADD COLUMN rate_limit TEXT;
-- Set at the account's first authenticated request; NULL until then.
ALTER TABLE accounts ADD COLUMN api_version TEXT;
