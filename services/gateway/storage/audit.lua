#!lua name=gateway
-- The gateway's Redis Functions: the audit projection of gateway.audit (GET /v1/audit).
-- Loaded once at start-up (FUNCTION LOAD REPLACE); Functions persist across a Redis restart.
--
-- gw:audit:{region}            sorted set: one member per audit record (its JSON, which holds the
--                              record's event id, so a redelivery adds nothing), scored by the
--                              record's time in epoch milliseconds. A record is filed under the
--                              clerk's region and under the region of the person acted for
--                              (when another), so a supervisor sees both.
-- gw:audit:{region}:{clerk}    the same members, for one clerk (a window token's own list)
-- Bounded by time only: nothing older than the TTL is kept, and nothing newer is ever dropped
-- (a bound by count would let a busy clerk push the region's history out).
-- A command audited `pending` (no outcome within the gateway's wait) is audited again once
-- decided, with the same command id, action and time: the decided entry takes the pending one's
-- place, and a pending entry never displaces a decided one (a redelivery in any order).

-- KEYS: the clerk's region set, the clerk's set, then the subject's region set when it is
-- another. ARGV: member, score (ms), cutoff (ms: older is dropped), key TTL (ms).
-- Answers 1 when the member was new, 0 for a redelivery.
local function audit_add(keys, args)
  local member, score, cutoff, ttl = args[1], args[2], args[3], args[4]
  -- Scores stay strings on their way back to Redis (a Lua number could be printed with an exponent).
  if tonumber(score) <= tonumber(cutoff) then return 0 end
  local entry = cjson.decode(member)
  for _, m in ipairs(redis.call('ZRANGEBYSCORE', keys[1], score, score)) do
    local other = cjson.decode(m)
    if m ~= member and other.command_id == entry.command_id and other.action == entry.action then
      if entry.outcome == 'pending' then return 0 end
      if other.outcome == 'pending' then
        for _, key in ipairs(keys) do redis.call('ZREM', key, m) end
      end
    end
  end
  local added = redis.call('ZADD', keys[1], score, member)
  for i = 2, #keys do redis.call('ZADD', keys[i], score, member) end
  for _, key in ipairs(keys) do
    redis.call('ZREMRANGEBYSCORE', key, '-inf', '(' .. cutoff)
    redis.call('PEXPIRE', key, ttl)
  end
  return added
end

redis.register_function('gw_audit_add', audit_add)
