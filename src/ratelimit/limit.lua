-- Counts one request against an organization's limit, from the same state
-- as ingest.lua, so every route draws from one allowance. (Appended to gcra.lua.)
--
-- KEYS[1] the organization's rate-limit state   ARGV[1] limit   ARGV[2] period ms
-- Returns {allowed (1/0), remaining, reset_ms, retry_after_ms}.

local allowed, remaining, reset, retry_after = gcra(KEYS[1], tonumber(ARGV[1]), tonumber(ARGV[2]))
return {allowed and 1 or 0, remaining, reset, retry_after}
