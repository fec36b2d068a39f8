#!lua name=gateway
-- The gateway's Redis Functions: the audit projection of gateway.audit (GET /v1/audit).
-- Loaded once at start-up (FUNCTION LOAD REPLACE); Functions persist across a Redis restart.
--
-- gw:audit:{region}            sorted set: one member per audit record (its JSON, which holds the
--                              record's event id, so a redelivery adds nothing), scored by the
--                              record's time in epoch milliseconds
-- gw:audit:{region}:{clerk}    the same members, for one clerk (a window token's own list)
-- Both keep the newest `max` members of the region and nothing older than the TTL.
-- A command audited `pending` (no outcome within the gateway's wait) is audited again once
-- decided, with the same command id, action and time: the decided entry takes the pending one's
-- place, and a pending entry never displaces a decided one (a redelivery in any order).

-- KEYS: region set, clerk set. ARGV: member, score (ms), cutoff (ms: older is dropped), most
-- members of the region, key TTL (ms), the clerk-set prefix ('gw:audit:{region}:').
-- Answers 1 when the member was new, 0 for a redelivery.
local function audit_add(keys, args)
  local region_key, clerk_key = keys[1], keys[2]
  -- Scores stay strings on their way back to Redis (a Lua number could be printed with an exponent).
  local member, score, cutoff, most, ttl, prefix = args[1], args[2], args[3], tonumber(args[4]), args[5], args[6]
  if tonumber(score) <= tonumber(cutoff) then return 0 end
  local entry = cjson.decode(member)
  for _, m in ipairs(redis.call('ZRANGEBYSCORE', region_key, score, score)) do
    local other = cjson.decode(m)
    if m ~= member and other.command_id == entry.command_id and other.action == entry.action then
      if entry.outcome == 'pending' then return 0 end
      if other.outcome == 'pending' then
        redis.call('ZREM', region_key, m)
        redis.call('ZREM', clerk_key, m)
      end
    end
  end
  local added = redis.call('ZADD', region_key, score, member)
  redis.call('ZADD', clerk_key, score, member)
  redis.call('ZREMRANGEBYSCORE', region_key, '-inf', '(' .. cutoff)
  redis.call('ZREMRANGEBYSCORE', clerk_key, '-inf', '(' .. cutoff)
  -- Over the bound: the oldest leave the region's set and their clerk's.
  local over = redis.call('ZCARD', region_key) - most
  if over > 0 then
    local oldest = redis.call('ZRANGE', region_key, 0, over - 1)
    redis.call('ZREMRANGEBYRANK', region_key, 0, over - 1)
    for _, m in ipairs(oldest) do
      local ok, entry = pcall(cjson.decode, m)
      if ok and type(entry) == 'table' and type(entry.clerk_id) == 'string' then
        redis.call('ZREM', prefix .. entry.clerk_id, m)
      end
    end
  end
  redis.call('PEXPIRE', region_key, ttl)
  redis.call('PEXPIRE', clerk_key, ttl)
  return added
end

redis.register_function('gw_audit_add', audit_add)
