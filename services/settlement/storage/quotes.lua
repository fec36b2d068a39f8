-- Quotes (预结算, library `settlement`, after waterfall.lua): a charge's split held as one unit,
-- posted by the charge, or released whole (cancelled, expired, or a binding of it paused or
-- revoked) and announced through the outbox.

local OUTBOX = 'stl:quote:outbox'
local DUE = 'stl:quote:due'

-- Release a held quote as one unit: every account's hold, every binding's limit use, the
-- indexes; `announce` queues a ChargeQuoteReleased in the outbox (the sweeper publishes it, then
-- removes it, so a crash in between cannot lose it). Answers the quote's {quote_id, lines} or nil
-- when it was not held.
local function release(qkey, member, reason, at, announce)
  local q = redis.call('HMGET', qkey, 'quote_id', 'lines', 'month', 'state')
  if q[4] ~= 'held' then return nil end
  for _, l in ipairs(decode_lines(q[2])) do
    if l.source ~= 'cash' then
      local a = read_account(l.person)
      if a then
        a.held = a.held - l.amount
        write_account(l.person, a)
      end
      if l.binding then
        redis.call('HINCRBY', 'stl:used:' .. l.binding, q[3], -l.amount)
        redis.call('SREM', 'stl:bq:' .. l.binding, member)
      end
    end
  end
  redis.call('ZREM', DUE, member)
  redis.call('HSET', qkey, 'state', 'released', 'reason', reason, 'released_at', at)
  if announce then
    redis.call('RPUSH', OUTBOX, cjson.encode({q[1], member, reason, q[2], at}))
  end
  return q
end

-- Post exactly the held split, whatever happened to the balances since (a balance may go below
-- zero: never clamped), unless a binding of it is gone or paused: then the whole quote is released.
-- Answers nil when it released the quote instead (the caller decides what the charge gets).
local function settle_held(qkey, member, charge_key, digest, settled_at, patient, borne, spent_field, day,
                           prefix, post_day, record_ttl)
  local q = redis.call('HMGET', qkey, 'lines', 'month')
  local held = decode_lines(q[1])
  local paused = {}  -- binding id -> paused; absent: revoked (or swept after its end)
  for _, p in ipairs(read_payers(patient)) do paused[p.binding] = p.paused end
  for _, l in ipairs(held) do
    if l.binding and paused[l.binding] ~= false then
      release(qkey, member, paused[l.binding] and 'binding_paused' or 'binding_revoked', settled_at, true)
      return nil
    end
  end
  local lines = {}
  for _, l in ipairs(held) do
    if l.source == 'cash' then
      table.insert(lines, {source = 'cash', amount = l.amount})
    else
      local a = read_account(l.person)
      a.held = a.held - l.amount
      local aseq = post(l.person, a, -l.amount)
      table.insert(lines, {source = l.source, person = l.person, region = l.region, order = l.order,
        amount = l.amount, after = a.balance, aseq = aseq, binding = l.binding})
      if l.binding then redis.call('SREM', 'stl:bq:' .. l.binding, member) end
    end
  end
  redis.call('ZREM', DUE, member)
  redis.call('HSET', qkey, 'state', 'settled')
  local encoded = record_charge(charge_key, lines, digest, settled_at, patient, borne, q[2], spent_field, day,
    prefix, post_day, record_ttl)
  return {'SETTLED', encoded, settled_at, '0'}
end

-- 预结算: the whole split held as one unit (accounts' held, the bindings' limits) until the
-- platform's clock passes `until`. One quote per charge: the same request again (a resend, a
-- redelivery) is answered by that quote, the same ChargeQuoted, whatever became of it since (it
-- was settled, cancelled or expired: ChargeSettled or ChargeQuoteReleased told that), so a
-- redelivered request never gets another answer than its first. A quote past its time is
-- released here too (announced through the outbox), as the sweep would.
-- ARGV: as settle, with the quote_id to give it, the clock (epoch ms), the hold (ms).
local function quote(keys, args)
  local charge_key, rej_key = keys[1], keys[2]
  local spent_field, digest, borne, patient = args[1], args[2], tonumber(args[3]), args[4]
  local day, at, province, ttl, record_ttl = tonumber(args[5]), args[6], args[7], args[8], args[9]
  local institution, institution_region = args[11], args[12]
  local quote_id, now_ms, hold_ms = args[14], tonumber(args[15]), tonumber(args[16])

  local qkey = 'stl:quote:' .. spent_field
  local q = redis.call('HMGET', qkey, 'quote_id', 'digest', 'state', 'lines', 'at', 'until', 'gen')
  local gen = 1
  if q[1] then
    if q[3] == 'held' and tonumber(q[6]) <= now_ms then
      release(qkey, spent_field, 'expired', at, true)
      q[3] = 'released'
    end
    if q[2] == digest then return {'QUOTED', q[4], q[5], q[6], '1', q[1]} end
    -- A quote cancelled or expired (or released by a binding) may be quoted again with new
    -- amounts (issue 21): the next generation, with an id of its own (quote_id.2, .3, ...).
    if q[3] ~= 'released' then return {'REJECTED', 'QUOTE_MISMATCH'} end
    gen = tonumber(q[7] or '1') + 1
    quote_id = quote_id .. '.' .. gen
  end
  if redis.call('EXISTS', charge_key) == 1 then return {'REJECTED', 'ALREADY_SETTLED'} end
  local refused = redis.call('GET', rej_key)
  if refused then return {'REJECTED', refused} end
  local me, refusal = admit(rej_key, institution, institution_region, patient, province, ttl)
  if not me then return refusal end

  local month = string.format('%d', math.floor(day / 100))
  local lines = waterfall(patient, me, borne, day, month, true, record_ttl)
  local encoded = encode_lines(lines)
  local till = string.format('%d', now_ms + hold_ms)
  redis.call('HDEL', qkey, 'reason', 'released_at')
  redis.call('HSET', qkey, 'quote_id', quote_id, 'digest', digest, 'lines', encoded, 'patient', patient,
    'borne', borne, 'month', month, 'at', at, 'until', till, 'state', 'held', 'gen', gen)
  redis.call('EXPIRE', qkey, record_ttl)
  redis.call('ZADD', DUE, till, spent_field)
  for _, l in ipairs(lines) do
    if l.binding then redis.call('SADD', 'stl:bq:' .. l.binding, spent_field) end
  end
  return {'QUOTED', encoded, at, till, '0', quote_id}
end

-- ChargeQuoteCancelled: the whole quote released (idempotent: a released quote answers how it
-- was released). ARGV: spent field, quote_id, at (the platform's clock), clock (epoch ms)
local function cancel_quote(keys, args)
  local spent_field, quote_id, at, now_ms = args[1], args[2], args[3], tonumber(args[4])
  local qkey = 'stl:quote:' .. spent_field
  local q = redis.call('HMGET', qkey, 'quote_id', 'state', 'reason', 'lines', 'released_at', 'until')
  if not q[1] or q[1] ~= quote_id then return {'REJECTED', 'QUOTE_UNKNOWN'} end
  if q[2] == 'settled' then return {'REJECTED', 'ALREADY_SETTLED'} end
  if q[2] == 'released' then return {'RELEASED', q[4], q[5], q[3], '1'} end
  local reason = tonumber(q[6]) > now_ms and 'cancelled' or 'expired'
  release(qkey, spent_field, reason, at, false)
  return {'RELEASED', q[4], at, reason, '0'}
end

-- The sweep: every quote due by the platform's clock released, whole, and announced through the
-- outbox. ARGV: clock (epoch ms), at (ISO), most quotes. Answers how many were released.
local function release_due(keys, args)
  local due = redis.call('ZRANGEBYSCORE', DUE, '-inf', args[1], 'LIMIT', 0, tonumber(args[3]))
  for _, member in ipairs(due) do
    if not release('stl:quote:' .. member, member, 'expired', args[2], true) then
      redis.call('ZREM', DUE, member)
    end
  end
  return #due
end

-- A binding paused or revoked (binding.events): every quote it holds for is released, whole,
-- unless the payer index shows it in force and not paused again (a late event after a resume).
-- ARGV: binding_id, beneficiary_id, reason (binding_paused | binding_revoked), at (ISO)
local function release_binding(keys, args)
  local binding, beneficiary, reason, at = args[1], args[2], args[3], args[4]
  local payer = read_payer(beneficiary, binding)
  if payer and not payer.paused then return 0 end
  local members = redis.call('SMEMBERS', 'stl:bq:' .. binding)
  local n = 0
  for _, member in ipairs(members) do
    if release('stl:quote:' .. member, member, reason, at, true) then n = n + 1 end
  end
  redis.call('DEL', 'stl:bq:' .. binding)
  return n
end

redis.register_function('release_due', release_due)
redis.register_function('release_binding', release_binding)
