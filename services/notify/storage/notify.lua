#!lua name=notify
-- A message's life, atomically, so that each message is sent at most once and gets exactly one
-- outcome event. KEYS[1] = ntf:msg:{message_id}, KEYS[2] = ntf:due (message id -> when to look
-- at it again: a held message's release time, or a pending claim's lease deadline), KEYS[3] =
-- the bucket its outcome is recorded in, ntf:done:{day}:{k} (day: its source event's, China time).
-- Times are milliseconds of the service's clock, passed in (one clock for tests and instances).
--
-- While a message is in flight KEYS[1] is a hash: `state` (pending | deferred), `owner` and
-- `lease` (the claim), `over` (the claim took over a crashed sender's), `notice`, `wait_until`.
-- Once it has its outcome, KEYS[1] is gone and the compact recorded outcome (its layout is
-- Python's: storage/deliveries.py) is the field `field` (the message id's 16 bytes) of the
-- bucket: a listpack entry of a few dozen bytes instead of a key of its own. The bucket expires
-- at the first midnight (UTC) at least the records' TTL after its latest record. A message with
-- no day (field '') keeps the older layout: its outcome a plain string at KEYS[1] with the TTL.

-- What is recorded, if anything: the string, or (records written before the string layout) the
-- hash's `event` once its state is no longer pending or deferred.
local function recorded(key)
  local kind = redis.call('TYPE', key)['ok']
  if kind == 'string' then return redis.call('GET', key) end
  if kind == 'hash' then
    local state = redis.call('HGET', key, 'state')
    if state ~= 'pending' and state ~= 'deferred' then return redis.call('HGET', key, 'event') or '' end
  end
  return false
end

-- The outcome recorded for the message: its bucket's field, else (recorded before the buckets,
-- or a message with no day) the string at KEYS[1].
local function done_of(keys, field)
  if field ~= '' then
    local found = redis.call('HGET', keys[3], field)
    if found then return found end
  end
  return recorded(keys[1])
end

-- claim(now_ms, lease_until_ms, from_state, token, message_id, notice, field)
-- CLAIMED: the caller owns the message until the lease ends. TAKEN_OVER: it was pending past its
-- lease (its sender died, maybe after the gateway had it): the caller owns it only to record
-- `outcome_unknown`, never to send. HELD: someone else has it, or it has an outcome (returned).
-- Asking again with the same token (an answer lost on the wire) gets the same status again.
local function claim(keys, args)
  local now, lease, from_state, token, message_id, notice = args[1], args[2], args[3], args[4], args[5], args[6]
  local done = done_of(keys, args[7])
  if done then return {'HELD', 'done', done} end
  local state = redis.call('HGET', keys[1], 'state')
  local status
  if (not state and from_state == '') or (state and state == from_state and state ~= 'pending') then
    status = 'CLAIMED'
  elseif state == 'pending' and redis.call('HGET', keys[1], 'owner') == token then
    return {redis.call('HGET', keys[1], 'over') and 'TAKEN_OVER' or 'CLAIMED', state, ''}
  elseif state == 'pending' and tonumber(redis.call('HGET', keys[1], 'lease') or '0') <= tonumber(now) then
    status = 'TAKEN_OVER'
    redis.call('HSET', keys[1], 'over', '1')
  else
    return {'HELD', state or '', ''}
  end
  -- The notice stays with the claim: whoever finds it pending past its lease can still say which
  -- message has the unknown outcome.
  redis.call('HSET', keys[1], 'state', 'pending', 'lease', lease, 'owner', token)
  if notice ~= '' then redis.call('HSET', keys[1], 'notice', notice) end
  redis.call('ZADD', keys[2], lease, message_id)
  return {status, state or '', ''}
end

-- record(ttl_seconds, token, outcome, message_id, field): the outcome, only by the claim's
-- owner; the message's hash gives way to the outcome's field in its bucket. RECORDED, or LOST
-- with what is recorded instead (another instance took the claim over).
local function record(keys, args)
  local ttl, token, outcome, message_id, field = args[1], args[2], args[3], args[4], args[5]
  if redis.call('TYPE', keys[1])['ok'] ~= 'hash' or redis.call('HGET', keys[1], 'state') ~= 'pending'
      or redis.call('HGET', keys[1], 'owner') ~= token then
    return {'LOST', done_of(keys, field) or ''}
  end
  if field == '' then
    redis.call('SET', keys[1], outcome, 'EX', tonumber(ttl))
  else
    redis.call('HSET', keys[3], field, outcome)
    local day = 86400
    local keep_until = (math.floor(tonumber(redis.call('TIME')[1]) / day) + 1) * day + tonumber(ttl)
    if redis.call('EXPIRETIME', keys[3]) < keep_until then redis.call('EXPIREAT', keys[3], keep_until) end
    redis.call('DEL', keys[1])
  end
  redis.call('ZREM', keys[2], message_id)
  return {'RECORDED', outcome}
end

-- hold(token, release_ms, notice, wait_until, message_id): put an owned claim back to wait
-- (quiet hours, a person not known yet) until release_ms. OK or LOST.
local function hold(keys, args)
  if redis.call('TYPE', keys[1])['ok'] ~= 'hash' or redis.call('HGET', keys[1], 'state') ~= 'pending'
      or redis.call('HGET', keys[1], 'owner') ~= args[1] then
    return 'LOST'
  end
  redis.call('HSET', keys[1], 'state', 'deferred', 'notice', args[3], 'wait_until', args[4])
  redis.call('HDEL', keys[1], 'owner', 'lease', 'over')
  redis.call('ZADD', keys[2], args[2], args[5])
  return 'OK'
end

-- A wave of messages in one call: KEYS = ntf:due, then each message's two keys (ntf:msg:{id}, its
-- bucket); ARGV = the arguments every message shares, then each message's own, in the order of
-- `claim` (now_ms, lease_until_ms; from_state, token, message_id, notice, field) and `record`
-- (ttl_seconds; token, outcome, message_id, field). The answers of each message in turn,
-- flattened. One command instead of one a message: the per-command cost on both sides is most
-- of a small Function call's.
local function each(one, shared, own, keys, args)
  local answers = {}
  for i = 0, (#keys - 1) / 2 - 1 do
    local call = {}
    for a = 1, shared do call[a] = args[a] end
    for a = 1, own do call[shared + a] = args[shared + i * own + a] end
    for _, part in ipairs(one({keys[2 + 2 * i], keys[1], keys[3 + 2 * i]}, call)) do answers[#answers + 1] = part end
  end
  return answers
end

local function claim_all(keys, args) return each(claim, 2, 5, keys, args) end
local function record_all(keys, args) return each(record, 1, 4, keys, args) end

-- contacts(person ids...): KEYS = each person's bucket; the projection's entries, false where none.
local function contacts(keys, args)
  local found = {}
  for i = 1, #keys do found[i] = redis.call('HGET', keys[i], args[i]) end
  return found
end

-- phones(max, then triplets op, phone, person_id): KEYS = each triplet's ntf:phone:{bucket}. The
-- reverse index of the contacts, phone -> the person ids registered with it, comma-separated
-- (a parent and a child may share one), at most `max` of them, the latest kept. `add` puts the
-- person last, `del` takes the person out (a phone changed). Read-modify-write of one field:
-- atomic here, whatever else writes the same phone.
local function phones(keys, args)
  local max = tonumber(args[1])
  for i = 1, #keys do
    local op, phone, person = args[3 * i - 1], args[3 * i], args[3 * i + 1]
    local ids = {}
    for id in string.gmatch(redis.call('HGET', keys[i], phone) or '', '[^,]+') do
      if id ~= person then ids[#ids + 1] = id end
    end
    if op == 'add' then
      ids[#ids + 1] = person
      while #ids > max do table.remove(ids, 1) end
    end
    if #ids == 0 then redis.call('HDEL', keys[i], phone) else redis.call('HSET', keys[i], phone, table.concat(ids, ',')) end
  end
  return #keys
end

redis.register_function('phones', phones)
redis.register_function('claim', claim)
redis.register_function('claim_all', claim_all)
redis.register_function('record_all', record_all)
redis.register_function{function_name='contacts', callback=contacts, flags={'no-writes'}}
redis.register_function('record', record)
redis.register_function('hold', hold)
