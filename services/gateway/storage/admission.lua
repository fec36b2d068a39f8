#!lua name=gateway_admission
-- The gateway's admission of a request, shared by every gateway instance: is the token or its
-- clerk revoked, and may its principal make one more look-up or command now (a token bucket).
-- Both in one FCALL per request, so the edge costs one Redis round trip. Loaded once at
-- start-up (FUNCTION LOAD REPLACE); Functions persist across a Redis restart.
--
-- gw:rl:{kind}:{principal}   hash {u: what is left, in units of 1/60000 of a request (so a rate per
--                            minute earns a whole number of units each millisecond: exact
--                            integers, no rounding lost between calls), at: ms of the last refill};
--                            expires once it would be full again (an idle principal costs nothing)
-- gw:rv:jti:{jti}            exists while the token with that jti is revoked
-- gw:rv:clerk:{clerk}        the time (epoch s) a clerk was revoked: that clerk's tokens issued
--                            then or before are refused
-- Revocations expire after the longest token lifetime (with the clock skew): no token they
-- refuse can still be valid by then.

-- KEYS: bucket, jti key, clerk key. ARGV: now (ms, or '' for the server's clock: one clock for
-- every instance), tokens per minute, burst, cost, the token's iat (s), '1' when the token has a
-- jti, '1' when it is a clerk's. Answers {code, wait ms}: 0 admitted, 1 over the rate (wait that
-- long for the cost), 2 the token is revoked, 3 its clerk is.
local function admit(keys, args)
  local bucket, jti_key, clerk_key = keys[1], keys[2], keys[3]
  if args[6] == '1' and redis.call('EXISTS', jti_key) == 1 then return {2, 0} end
  if args[7] == '1' then
    local revoked_at = tonumber(redis.call('GET', clerk_key))
    if revoked_at and tonumber(args[5]) <= revoked_at then return {3, 0} end
  end
  local now = tonumber(args[1])
  if not now then
    local t = redis.call('TIME')
    now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
  end
  local per_ms = tonumber(args[2])  -- units earned per millisecond (a request is 60000 units)
  local capacity, need = tonumber(args[3]) * 60000, tonumber(args[4]) * 60000
  local state = redis.call('HMGET', bucket, 'u', 'at')
  local units, at = tonumber(state[1]), tonumber(state[2])
  if not units or not at then units, at = capacity, now end
  if now > at then
    units = math.min(capacity, units + (now - at) * per_ms)
    at = now
  end
  local code, wait = 0, 0
  if units >= need then
    units = units - need
  else
    code, wait = 1, math.ceil((need - units) / per_ms)
  end
  redis.call('HSET', bucket, 'u', units, 'at', at)
  redis.call('PEXPIRE', bucket, math.ceil((capacity - units) / per_ms) + 1000)
  return {code, wait}
end

-- KEYS: jti key. ARGV: TTL (ms).
local function revoke_token(keys, args)
  redis.call('SET', keys[1], '1', 'PX', args[1])
  return 1
end

-- KEYS: clerk key. ARGV: revoked at (epoch s), TTL (ms). A redelivered or older revocation never
-- moves the time back (a later one would be forgotten).
local function revoke_clerk(keys, args)
  local current = tonumber(redis.call('GET', keys[1]))
  if current and current >= tonumber(args[1]) then return 0 end
  redis.call('SET', keys[1], args[1], 'PX', args[2])
  return 1
end

redis.register_function('gw_admit', admit)
redis.register_function('gw_revoke_token', revoke_token)
redis.register_function('gw_revoke_clerk', revoke_clerk)
