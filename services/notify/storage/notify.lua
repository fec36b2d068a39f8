#!lua name=notify
-- A message's life, atomically, so that each message is sent at most once and gets exactly one
-- outcome event. KEYS[1] = ntf:msg:{message_id}, KEYS[2] = ntf:due (message id -> when to look
-- at it again: a held message's release time, or a pending claim's lease deadline).
-- Times are milliseconds of the service's clock, passed in (one clock for tests and instances).

-- claim(from_state, now_ms, lease_until_ms, token, message_id, notice)
-- CLAIMED: the caller owns the message until the lease ends. TAKEN_OVER: it was pending past its
-- lease (its sender died, maybe after the gateway had it): the caller owns it only to record
-- `outcome_unknown`, never to send. HELD: someone else has it, or it has an outcome.
local function claim(keys, args)
  local state = redis.call('HGET', keys[1], 'state')
  local status
  if (not state and args[1] == '') or (state and state == args[1] and state ~= 'pending') then
    status = 'CLAIMED'
  elseif state == 'pending' and redis.call('HGET', keys[1], 'owner') == args[4] then
    status = 'CLAIMED'   -- the same sender asking again (its first answer was lost on the wire)
  elseif state == 'pending' and tonumber(redis.call('HGET', keys[1], 'lease') or '0') <= tonumber(args[2]) then
    status = 'TAKEN_OVER'
  else
    return {'HELD', state or '', redis.call('HGET', keys[1], 'event') or ''}
  end
  -- The notice stays with the claim: whoever finds it pending past its lease can still say which
  -- message has the unknown outcome.
  redis.call('HSET', keys[1], 'state', 'pending', 'lease', args[3], 'owner', args[4])
  if args[6] ~= '' then redis.call('HSET', keys[1], 'notice', args[6]) end
  redis.call('ZADD', keys[2], args[3], args[5])
  return {status, state or '', ''}
end

-- record(token, state, event, ttl_seconds, message_id): the outcome, only by the claim's owner.
-- RECORDED, or LOST with what is recorded instead (another instance took the claim over).
local function record(keys, args)
  if redis.call('HGET', keys[1], 'state') ~= 'pending' or redis.call('HGET', keys[1], 'owner') ~= args[1] then
    return {'LOST', redis.call('HGET', keys[1], 'event') or ''}
  end
  redis.call('HSET', keys[1], 'state', args[2], 'event', args[3])
  redis.call('HDEL', keys[1], 'owner', 'lease', 'notice', 'wait_until')
  redis.call('EXPIRE', keys[1], tonumber(args[4]))
  redis.call('ZREM', keys[2], args[5])
  return {'RECORDED', args[3]}
end

-- hold(token, release_ms, notice, wait_until, message_id): put an owned claim back to wait
-- (quiet hours, a person not known yet) until release_ms. OK or LOST.
local function hold(keys, args)
  if redis.call('HGET', keys[1], 'state') ~= 'pending' or redis.call('HGET', keys[1], 'owner') ~= args[1] then
    return 'LOST'
  end
  redis.call('HSET', keys[1], 'state', 'deferred', 'notice', args[3], 'wait_until', args[4])
  redis.call('HDEL', keys[1], 'owner', 'lease')
  redis.call('ZADD', keys[2], args[2], args[5])
  return 'OK'
end

redis.register_function('claim', claim)
redis.register_function('record', record)
redis.register_function('hold', hold)
