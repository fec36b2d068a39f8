#!lua name=settlement
-- The settlement service's Redis Functions: each applies one charge, refund or bureau event
-- atomically, with its idempotency record in the same step. Loaded once at start-up
-- (FUNCTION LOAD REPLACE); Functions persist across a Redis restart, unlike EVAL scripts.
--
-- These Functions are the home of the settlement rules (issue 21): the waterfall, holds, limits
-- and pause, refunds (last paid first, or the lines named), reversals of upheld disputes, and
-- which refusals are recorded (PROVISIONAL, below). No Python code decides a split or a refund:
-- tests/oracle/waterfall.py restates the waterfall plainly as the tests' oracle only (the
-- hypothesis tests check these Functions against it), and is called by no service.
--
-- Account entry, in hash stl:acct:{bucket}, field person_id:
--   "balance|bureau_seq|region|scheme|account_seq|watermark|held"
-- balance in fen (may be below zero: never clamped); scheme e = employee with an account,
-- r = resident without one; account_seq = the last platform posting's place in this account's
-- sequence; watermark = the postings_applied_through of the last BalanceSnapshot applied;
-- held = fen held by live quotes (预结算), not available to other charges (6-field entries: 0).
-- stl:pp:{person} (list, oldest first): "account_seq|signed fen" of the platform's postings after
-- the watermark, what a snapshot's balance does not include yet; trimmed by each snapshot.
-- stl:inst (hash): institution code -> "region|kind", projection of bureau.institutions;
-- stl:ikeys (hash): institution code -> its public keys (contract version 3), from the same
-- registration. stl:moving (hash): person_id -> the region his own bureau transferred him to.
-- Payer index (written by the binding service, shared/binding_index.py), hash bnd:pay:{patient}:
-- field binding_id, value "grantor|order|startYYYYMMDD|endYYYYMMDD|region|monthly_limit_fen|paused"
-- (limit empty = none; paused 'p' = pays nothing; the old 5-field value: no limit, not paused).
-- stl:used:{binding} (hash YYYYMM -> fen): what the binding paid or holds in each calendar month
-- (China time, the charge's day), against its monthly limit; refunds give back in that month.
-- Quotes (预结算), one per charge: stl:quote:{institution}:{charge} (hash: quote_id, digest,
-- lines, patient, borne, month, at, until (epoch ms), state held|settled|released, reason,
-- released_at, gen: 1, or the generation of a quote made again after a release, issue 21); stl:quote:due (zset "{institution}:{charge}" by until); stl:bq:{binding} (set of
-- "{institution}:{charge}" the binding holds for); stl:quote:outbox (list of cjson releases to
-- announce as ChargeQuoteReleased, removed once published).
--
-- Keys are derived inside the Functions (accounts, payer index, institutions), so all keys must
-- live on one Redis primary (no cluster), as deployed.

local BUCKETS = 65536
local MOVING = 'stl:moving'

local function bucket_key(person_id)
  return 'stl:acct:' .. (tonumber(string.sub(person_id, 7, 17)) % BUCKETS)
end

local function split(s, sep)
  local out = {}
  for piece in string.gmatch(s, '([^' .. sep .. ']*)' .. sep .. '?') do
    table.insert(out, piece)
  end
  if out[#out] == '' then table.remove(out) end
  return out
end

local function read_account(person_id)
  local raw = redis.call('HGET', bucket_key(person_id), person_id)
  if not raw then return nil end
  local f = split(raw, '|')
  return {balance = tonumber(f[1]), seq = tonumber(f[2]), region = f[3], scheme = f[4],
    aseq = tonumber(f[5] or '0'), wm = tonumber(f[6] or '0'), held = tonumber(f[7] or '0')}
end

local function write_account(person_id, a)
  redis.call('HSET', bucket_key(person_id), person_id,
    string.format('%d|%d|%s|%s|%d|%d|%d', a.balance, a.seq, a.region, a.scheme, a.aseq, a.wm, a.held or 0))
end

-- A platform debit (negative) or credit (positive) on an account: the next account_seq, and
-- kept until a snapshot says the bureau's balance includes it.
local function post(person, a, signed)
  a.balance = a.balance + signed
  a.aseq = a.aseq + 1
  write_account(person, a)
  redis.call('RPUSH', 'stl:pp:' .. person, string.format('%d|%d', a.aseq, signed))
  return a.aseq
end

local function encode_lines(lines)
  local parts = {}
  for _, l in ipairs(lines) do
    table.insert(parts, table.concat({l.source, l.person or '', l.region or '', l.order or '',
      string.format('%d', l.amount), l.after and string.format('%d', l.after) or '',
      l.aseq and string.format('%d', l.aseq) or '', l.binding or ''}, ','))
  end
  return table.concat(parts, ';')
end

local function decode_lines(s)
  local lines = {}
  for _, part in ipairs(split(s, ';')) do
    local f = split(part .. ',', ',')
    table.insert(lines, {source = f[1], person = f[2], region = f[3], order = f[4], amount = tonumber(f[5]),
      binding = f[8] ~= '' and f[8] or nil})
  end
  return lines
end

-- 对账: what the platform posted to each region's book on each day, by posting id (prefix, from
-- services/settlement/domain/ids.py, followed by the line index).
local function record_postings(lines, prefix, direction, post_day, ttl)
  for i, l in ipairs(lines) do
    if l.source ~= 'cash' then
      local key = 'stl:posted:' .. l.region .. ':' .. post_day
      redis.call('HSET', key, prefix .. (i - 1), string.format('%s|%d|%s', direction, l.amount, l.person))
      redis.call('EXPIRE', key, ttl)
    end
  end
end

-- One answer per message (issue 21): every refusal is recorded by the message's event id, so its
-- redelivery is answered the same, except these, read off a projection (who is registered, which
-- institutions are designated), which a resend may legitimately change once the projection has
-- caught up. (The signature refusals of contract version 3 never reach a Function: they are
-- provisional too, services/settlement/domain/reasons.py.)
local PROVISIONAL = {UNKNOWN_PATIENT = true, UNKNOWN_INSTITUTION = true}

local function reject(rej_key, code, ttl)
  if PROVISIONAL[code] then return {'REJECTED', code} end
  redis.call('SET', rej_key, code, 'EX', ttl)
  return {'REJECTED', code}
end

-- For the service and its tests: the refusals the Functions never record.
local function provisional_refusals(keys, args)
  local out = {}
  for code in pairs(PROVISIONAL) do table.insert(out, code) end
  table.sort(out)
  return out
end

-- Bindings in force on the charge's day, in payment order, with their monthly limit (fen, or nil
-- for none) and whether they are paused (I-1 layout; the old 5-field value: no limit, not paused).
local function payers_of(patient, day)
  local payers = {}
  local index = redis.call('HGETALL', 'bnd:pay:' .. patient)
  for i = 1, #index, 2 do
    local f = split(index[i + 1], '|')
    if tonumber(f[3]) <= day and day <= tonumber(f[4]) then
      table.insert(payers, {binding = index[i], person = f[1], order = tonumber(f[2]), region = f[5],
        limit = (f[6] and f[6] ~= '') and tonumber(f[6]) or nil, paused = f[7] == 'p'})
    end
  end
  table.sort(payers, function(a, b) return a.order < b.order end)
  return payers
end

-- The waterfall (its oracle: tests/oracle/waterfall.py, split): each account pays from what is available (balance
-- less held), a grantor also no more than its binding's monthly limit leaves; a paused binding
-- pays nothing. Posted at once, or held for a quote (`holding`: the lines' `after` is then what is
-- left to spend). What a grantor pays or holds counts against its limit in the charge's month
-- (stl:used): one HINCRBY a grantor line, limited or not; a second one only when the limit cuts
-- the line (it gives back what went over). The key lives `ttl` (the charge records' TTL) after the
-- binding's last payment, so every charge a refund can still name finds its month there.
local function waterfall(patient, me, borne, day, month, holding, ttl)
  local lines, remaining = {}, borne
  local function pay(source, person, account, p)
    -- An available balance at or below zero (the bureau's own spending may drive it there) pays nothing.
    if not account or account.scheme ~= 'e' or remaining == 0 then return end
    local take = math.min(account.balance - account.held, remaining)
    if take <= 0 then return end
    if p then
      local used_key = 'stl:used:' .. p.binding
      local used = redis.call('HINCRBY', used_key, month, take)
      redis.call('EXPIRE', used_key, ttl)
      if p.limit and used > p.limit then
        local over = math.min(used - p.limit, take)
        redis.call('HINCRBY', 'stl:used:' .. p.binding, month, -over)
        take = take - over
        if take <= 0 then return end
      end
    end
    remaining = remaining - take
    local line = {source = source, person = person, region = account.region, order = p and p.order,
      amount = take, binding = p and p.binding}
    if holding then
      account.held = account.held + take
      write_account(person, account)
      line.after = account.balance - account.held
    else
      line.aseq = post(person, account, -take)
      line.after = account.balance
    end
    table.insert(lines, line)
  end
  pay('own', patient, me, nil)
  for _, p in ipairs(payers_of(patient, day)) do
    if not p.paused and remaining > 0 then pay('grantor', p.person, read_account(p.person), p) end
  end
  table.insert(lines, {source = 'cash', amount = remaining})
  return lines
end

-- The checks a charge and a quote share, read off projections (PROVISIONAL but OUTSIDE_PROVINCE).
-- Answers the patient's account, or a reply.
local function admit(rej_key, institution, institution_region, patient, province, ttl)
  local designated = redis.call('HGET', 'stl:inst', institution)
  if not designated or split(designated, '|')[1] ~= institution_region then
    return nil, reject(rej_key, 'UNKNOWN_INSTITUTION', ttl)
  end
  local me = read_account(patient)
  if not me then return nil, reject(rej_key, 'UNKNOWN_PATIENT', ttl) end
  if not string.find(',' .. province .. ',', ',' .. me.region .. ',', 1, true) then
    return nil, reject(rej_key, 'OUTSIDE_PROVINCE', ttl)
  end
  return me
end

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

-- What a settled charge leaves: its record (idempotency, refunds: lines with binding ids, and the
-- month its grantors' limits were used in), the consumption rows, the 对账 postings.
local function record_charge(charge_key, lines, digest, settled_at, patient, borne, month, spent_field, day,
                             prefix, post_day, record_ttl)
  local encoded = encode_lines(lines)
  local refunded = {}
  for i = 1, #lines do refunded[i] = '0' end
  redis.call('HSET', charge_key, 'digest', digest, 'lines', encoded, 'at', settled_at,
    'patient', patient, 'borne', borne, 'refunded', table.concat(refunded, ','), 'month', month)
  redis.call('EXPIRE', charge_key, record_ttl)
  for _, l in ipairs(lines) do
    if l.source == 'grantor' then
      -- 家庭共济消费查询: what each beneficiary spent from this grantor's account.
      redis.call('HSET', 'stl:spent:' .. l.person, spent_field,
        string.format('%d|%s|%d|0|%s', day, patient, l.amount, settled_at))
    end
  end
  record_postings(lines, prefix, 'debit', post_day, record_ttl)
  return encoded
end

-- Post exactly the held split, whatever happened to the balances since (a balance may go below
-- zero: never clamped), unless a binding of it is gone or paused: then the whole quote is released.
-- Answers nil when it released the quote instead (the caller decides what the charge gets).
local function settle_held(qkey, member, charge_key, digest, settled_at, patient, borne, spent_field, day,
                           prefix, post_day, record_ttl)
  local q = redis.call('HMGET', qkey, 'lines', 'month')
  local held = decode_lines(q[1])
  local index = redis.call('HGETALL', 'bnd:pay:' .. patient)
  local bindings = {}
  for i = 1, #index, 2 do bindings[index[i]] = split(index[i + 1], '|')[7] == 'p' and 'p' or '' end
  for _, l in ipairs(held) do
    if l.binding and bindings[l.binding] ~= '' then
      release(qkey, member, bindings[l.binding] and 'binding_paused' or 'binding_revoked', settled_at, true)
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

-- KEYS: charge record stl:charge:{institution}:{charge}, rejection record stl:rej:{institution}:{event}
-- ARGV: spent field ({institution}:{charge}), digest, borne, patient_id, day, settled_at,
--       province codes, rejection ttl, record ttl, posting day (YYYYMMDD of settled_at),
--       institution code, institution region, posting id prefix, quote_id named ('' if none),
--       the platform's clock (epoch ms)
-- A live quote of the charge (named or not) posts its held split; a quote that expired by the
-- platform's clock is released first, whole (QUOTE_EXPIRED when the charge named it).
local function settle(keys, args)
  local charge_key, rej_key = keys[1], keys[2]
  local spent_field, digest, borne, patient = args[1], args[2], tonumber(args[3]), args[4]
  local day, settled_at, province, ttl, record_ttl = tonumber(args[5]), args[6], args[7], args[8], args[9]
  local post_day, institution, institution_region, prefix = args[10], args[11], args[12], args[13]
  local quote_id, now_ms = args[14] or '', tonumber(args[15] or '0')

  local recorded = redis.call('HMGET', charge_key, 'digest', 'lines', 'at')
  if recorded[1] then
    if recorded[1] ~= digest then return {'CONFLICT'} end
    return {'SETTLED', recorded[2], recorded[3], '1'}
  end
  local refused = redis.call('GET', rej_key)
  if refused then return {'REJECTED', refused} end

  -- A charge that names no quote settles as a plain charge whatever became of an earlier quote of
  -- it (expired, cancelled, or released here because a binding of it was paused or revoked since);
  -- one that names its quote is refused when the quote cannot be posted. Either answer is recorded
  -- (by the message's event id), so a redelivery is answered the same.
  local qkey = 'stl:quote:' .. spent_field
  local q = redis.call('HMGET', qkey, 'quote_id', 'digest', 'state', 'until', 'reason')
  local released_now = false
  if q[1] then
    if quote_id ~= '' and quote_id ~= q[1] then return reject(rej_key, 'QUOTE_UNKNOWN', ttl) end
    if q[3] == 'held' then
      if q[2] ~= digest then return reject(rej_key, 'QUOTE_MISMATCH', ttl) end
      if tonumber(q[4]) > now_ms then
        local posted = settle_held(qkey, spent_field, charge_key, digest, settled_at, patient, borne, spent_field,
          day, prefix, post_day, record_ttl)
        if posted then return posted end
        if quote_id ~= '' then return reject(rej_key, 'QUOTE_RELEASED', ttl) end
        released_now = true
      else
        release(qkey, spent_field, 'expired', settled_at, true)
        if quote_id ~= '' then return reject(rej_key, 'QUOTE_EXPIRED', ttl) end
        released_now = true
      end
    elseif quote_id ~= '' then
      return reject(rej_key, q[5] == 'expired' and 'QUOTE_EXPIRED' or 'QUOTE_RELEASED', ttl)
    end
  elseif quote_id ~= '' then
    return reject(rej_key, 'QUOTE_UNKNOWN', ttl)
  end

  -- Refusals read off a projection are not recorded (PROVISIONAL): a resend after the registration lands settles.
  local me, refusal = admit(rej_key, institution, institution_region, patient, province, ttl)
  if not me then return refusal end
  local month = string.format('%d', math.floor(day / 100))
  local lines = waterfall(patient, me, borne, day, month, false, record_ttl)
  local encoded = record_charge(charge_key, lines, digest, settled_at, patient, borne, month, spent_field, day,
    prefix, post_day, record_ttl)
  -- 'R': a quote of it was released on the way (queued in the outbox: wake the announcer)
  return {'SETTLED', encoded, settled_at, '0', '', released_now and 'R' or ''}
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
  local entry = redis.call('HGET', 'bnd:pay:' .. beneficiary, binding)
  if entry and split(entry, '|')[7] ~= 'p' then return 0 end
  local members = redis.call('SMEMBERS', 'stl:bq:' .. binding)
  local n = 0
  for _, member in ipairs(members) do
    if release('stl:quote:' .. member, member, reason, at, true) then n = n + 1 end
  end
  redis.call('DEL', 'stl:bq:' .. binding)
  return n
end

-- A paid line as a refund names it: own, grantor_1, grantor_2 (by payment order), cash.
local function payer_of(l)
  if l.source == 'grantor' then return 'grantor_' .. l.order end
  return l.source
end

-- KEYS: charge record, rejection record (as settle)
-- ARGV: spent field, refund_id, amount, settled_at (the platform's clock), digest, rejection ttl,
--       posting day (YYYYMMDD of settled_at), record ttl, posting id prefix, the payer lines named
--       ("payer:fen,...", '' for none)
local function refund(keys, args)
  local charge_key, rej_key = keys[1], keys[2]
  local spent_field, refund_id, amount, at, digest, ttl =
    args[1], args[2], tonumber(args[3]), args[4], args[5], args[6]
  local post_day, record_ttl, prefix, named = args[7], args[8], args[9], args[10] or ''

  local done = redis.call('HGET', charge_key, 'r:' .. refund_id)
  if done then
    local f = split(done, '|')
    if f[1] ~= digest then return {'CONFLICT'} end
    return {'REFUNDED', f[2], f[3], '1', redis.call('HGET', charge_key, 'patient')}
  end
  local refused = redis.call('GET', rej_key)
  if refused then return {'REJECTED', refused} end
  local record = redis.call('HMGET', charge_key, 'lines', 'refunded', 'patient', 'month')
  if not record[1] then return reject(rej_key, 'UNKNOWN_CHARGE', ttl) end

  local paid = decode_lines(record[1])
  local back = split(record[2], ',')
  local room = 0
  for i, l in ipairs(paid) do room = room + l.amount - tonumber(back[i]) end
  if amount > room then return reject(rej_key, 'REFUND_EXCEEDS_PAID', ttl) end

  -- Named lines (issue 21) return exactly those; else last paid, first refunded: cash, then grantor
  -- 2, grantor 1, the own account last. Lines are built last to first, then applied first to last,
  -- so account_seq follows the lines' order.
  local want = {}
  if named ~= '' then
    for _, item in ipairs(split(named, ',')) do
      local payer, fen = string.match(item, '^([%w_]+):(%d+)$')
      local found
      for i, l in ipairs(paid) do
        if payer_of(l) == payer then found = i end
      end
      if not found or tonumber(fen) > paid[found].amount - tonumber(back[found]) then
        return reject(rej_key, 'REFUND_EXCEEDS_PAID', ttl)
      end
      want[found] = tonumber(fen)
    end
  end
  local lines, remaining = {}, amount
  for i = #paid, 1, -1 do
    local l = paid[i]
    local give = math.min(l.amount - tonumber(back[i]), remaining)
    if named ~= '' then give = want[i] or 0 end
    if give > 0 then
      remaining = remaining - give
      back[i] = string.format('%d', tonumber(back[i]) + give)
      table.insert(lines, 1, {source = l.source, person = l.person ~= '' and l.person or nil,
        region = l.region ~= '' and l.region or nil, order = l.order ~= '' and l.order or nil, amount = give,
        binding = l.binding})
    end
  end
  for _, line in ipairs(lines) do
    if line.source ~= 'cash' then
      local account = read_account(line.person)
      line.aseq = post(line.person, account, line.amount)
      line.after = account.balance
    end
    if line.binding and record[4] then
      -- the limit comes back in the month of the original payment
      redis.call('HINCRBY', 'stl:used:' .. line.binding, record[4], -line.amount)
    end
    if line.source == 'grantor' then
      local spent_key = 'stl:spent:' .. line.person
      local s = redis.call('HGET', spent_key, spent_field)
      if s then
        local f = split(s, '|')
        redis.call('HSET', spent_key, spent_field, string.format('%s|%s|%s|%d|%s', f[1], f[2], f[3],
          tonumber(f[4]) + line.amount, f[5]))
      end
    end
  end
  local encoded = encode_lines(lines)
  redis.call('HSET', charge_key, 'refunded', table.concat(back, ','),
    'r:' .. refund_id, digest .. '|' .. encoded .. '|' .. at)
  record_postings(lines, prefix, 'credit', post_day, record_ttl)
  return {'REFUNDED', encoded, at, '0', record[3]}
end

-- An upheld dispute (DisputeResolved upheld on binding.events): the disputed grantor line is
-- given back to the grantor as the platform's own movement, net of what refunds returned of it
-- already, with the next account_seq and a credit posting; the limit comes back in the charge's
-- month. The whole line is then out of reach of later refunds (`refunded` set to the line's
-- amount), so no refund can credit it again. Keyed by the dispute (field v:{dispute} of the
-- charge record): a redelivered decision answers the recorded reversal and changes nothing.
-- ARGV: spent field ({institution}:{charge}), dispute_id, grantor_id, binding_id ('' : any),
--       at (the platform's clock), posting day (YYYYMMDD of at), record ttl, posting id prefix
-- Answers {'REVERSED', lines, at, replay, patient, line paid, refunded before} or
-- {'UNKNOWN_CHARGE'} / {'UNKNOWN_LINE'} (nothing changed).
local function reverse_payment(keys, args)
  local spent_field, dispute, grantor, binding, at = args[1], args[2], args[3], args[4], args[5]
  local post_day, record_ttl, prefix = args[6], args[7], args[8]
  local charge_key = 'stl:charge:' .. spent_field
  local done = redis.call('HGET', charge_key, 'v:' .. dispute)
  if done then
    local f = split(done, '|')
    return {'REVERSED', f[1], f[2], '1', redis.call('HGET', charge_key, 'patient'), f[3], f[4]}
  end
  local record = redis.call('HMGET', charge_key, 'lines', 'refunded', 'patient', 'month')
  if not record[1] then return {'UNKNOWN_CHARGE'} end
  local paid = decode_lines(record[1])
  local back = split(record[2], ',')
  local index
  for i, l in ipairs(paid) do
    if l.source == 'grantor' and l.person == grantor and (binding == '' or not l.binding or l.binding == binding) then
      index = i
    end
  end
  if not index then return {'UNKNOWN_LINE'} end
  local l = paid[index]
  local before = tonumber(back[index])
  local give = l.amount - before
  back[index] = string.format('%d', l.amount)
  local lines = {}
  if give > 0 then
    local account = read_account(l.person)
    local line = {source = 'grantor', person = l.person, region = l.region, order = l.order, amount = give,
      binding = l.binding}
    line.aseq = post(l.person, account, give)
    line.after = account.balance
    if l.binding and record[4] then redis.call('HINCRBY', 'stl:used:' .. l.binding, record[4], -give) end
    local spent_key = 'stl:spent:' .. l.person
    local s = redis.call('HGET', spent_key, spent_field)
    if s then
      local f = split(s, '|')
      redis.call('HSET', spent_key, spent_field, string.format('%s|%s|%s|%d|%s', f[1], f[2], f[3],
        tonumber(f[4]) + give, f[5]))
    end
    lines = {line}
  end
  local encoded = encode_lines(lines)
  local paid_s, before_s = string.format('%d', l.amount), string.format('%d', before)
  redis.call('HSET', charge_key, 'refunded', table.concat(back, ','),
    'v:' .. dispute, encoded .. '|' .. at .. '|' .. paid_s .. '|' .. before_s)
  record_postings(lines, prefix, 'credit', post_day, record_ttl)
  return {'REVERSED', encoded, at, '0', record[3], paid_s, before_s}
end

-- A batch of charges or refunds in ONE call (the only way they are called: `settle` and `refund`
-- above are not registered), each applied by `settle` / `refund` under
-- its own pcall: a defect in one (a corrupt account entry, say) answers {'ERROR', message} for
-- that one and the others go on. The whole call is atomic, which is stronger than each charge
-- atomic on its own; as with separate calls, Redis does not undo the writes a failed charge made
-- before its error.
-- ARGV[1] (cjson): [common, items]. Answers cjson: one reply per item, in order, as `settle` /
-- `refund` answer it (or {'ERROR', message}).
local function failure(e)
  if type(e) == 'table' then e = e.err or cjson.encode(e) end
  return {'ERROR', string.sub(tostring(e), 1, 200)}
end

-- common: [province codes, rejection ttl, record ttl, the platform's clock (epoch ms), quote hold (ms)]
-- item: [institution, charge_id, event_id, digest, borne, patient_id, day, settled_at,
--        posting day, institution region, posting id prefix(, quote_id, op)]
-- op: absent or 'S' settle (ChargeSubmitted), 'Q' quote (ChargeQuoteRequested), 'C' cancel a quote
-- (ChargeQuoteCancelled): one call keeps the order of a batch's charges and quotes.
local function settle_batch(keys, args)
  local batch = cjson.decode(args[1])
  local province, ttl, record_ttl = batch[1][1], batch[1][2], batch[1][3]
  local now_ms, hold_ms = batch[1][4] or '0', batch[1][5] or '0'
  local out = {}
  for i, x in ipairs(batch[2]) do
    local op, ok, reply = x[13] or 'S'
    if op == 'C' then
      ok, reply = pcall(cancel_quote, {}, {x[1] .. ':' .. x[2], x[12], x[8], now_ms})
    else
      ok, reply = pcall(op == 'Q' and quote or settle,
        {'stl:charge:' .. x[1] .. ':' .. x[2], 'stl:rej:' .. x[1] .. ':' .. x[3]},
        {x[1] .. ':' .. x[2], x[4], x[5], x[6], x[7], x[8], province, ttl, record_ttl, x[9], x[1], x[10], x[11],
         x[12] or '', now_ms, hold_ms})
    end
    out[i] = ok and reply or failure(reply)
  end
  return cjson.encode(out)
end

-- common: [rejection ttl, record ttl]
-- item: [institution, charge_id, event_id, refund_id, amount, settled_at, digest, posting day,
--        posting id prefix, payer lines named]
local function refund_batch(keys, args)
  local batch = cjson.decode(args[1])
  local ttl, record_ttl = batch[1][1], batch[1][2]
  local out = {}
  for i, x in ipairs(batch[2]) do
    local ok, reply = pcall(refund, {'stl:charge:' .. x[1] .. ':' .. x[2], 'stl:rej:' .. x[1] .. ':' .. x[3]},
      {x[1] .. ':' .. x[2], x[4], x[5], x[6], x[7], ttl, x[8], record_ttl, x[9], x[10] or ''})
    out[i] = ok and reply or failure(reply)
  end
  return cjson.encode(out)
end

-- A bureau registration: region and scheme follow the bureau; an existing account's balance
-- is the platform's to keep (it moves with AccountCredited/Debited/Snapshot, by bureau_seq).
-- Who may register whom was decided before (shared/bureau.py, registration_refusal); a
-- registration by the region a person was transferred to ends the transfer.
-- ARGV: person_id, region, scheme (e|r), opening balance fen ('' if none)
local function register_person(keys, args)
  local person, region, scheme, balance = args[1], args[2], args[3], args[4]
  local a = read_account(person)
  if a then
    a.region, a.scheme = region, scheme
  else
    a = {balance = tonumber(balance) or 0, seq = 0, region = region, scheme = scheme, aseq = 0, wm = 0}
  end
  write_account(person, a)
  if redis.call('HGET', MOVING, person) == region then redis.call('HDEL', MOVING, person) end
  return 'OK'
end

-- A PersonTransferred its own region's bureau sent (contract version 3): the region that may
-- register the person next, until it does. ARGV: person_id, to_region
local function transfer_person(keys, args)
  redis.call('HSET', MOVING, args[1], args[2])
  return 'OK'
end

-- A movement the bureau made on its book: applied once, in bureau_seq order per person, only
-- for a person its region registered. A refused event leaves the account (and its bureau_seq)
-- untouched, so a genuine later event still applies.
-- ARGV: person_id, kind (credit|debit|snapshot), amount fen, bureau_seq, region,
--       postings_applied_through (snapshots)
-- Answers {outcome, balance}: APPLIED, NEGATIVE (applied; the balance is below zero), STALE
-- (seq already seen), or a refusal: UNREGISTERED, FOREIGN_REGION, WATERMARK_BEHIND,
-- WATERMARK_AHEAD. An applied snapshot answers {outcome, balance, platform, in_flight}: the
-- cache's balance before it and the platform's postings after its watermark (signed fen); the
-- cache drifted when platform ~= snapshot + in_flight (对账 per account). A drifted snapshot is
-- kept in stl:drift:{person} (field bureau_seq, "platform|in_flight|snapshot", DRIFT_TTL) so that
-- its redelivery (STALE) answers the same figures and the drift is announced again, not lost.
local function bureau_movement(keys, args)
  local DRIFT_TTL = 30 * 86400
  local person, kind, amount, seq, region = args[1], args[2], tonumber(args[3]), tonumber(args[4]), args[5]
  local a = read_account(person)
  if not a then return {'UNREGISTERED', 0} end
  if a.region ~= region then return {'FOREIGN_REGION', a.balance} end
  if seq <= a.seq then
    local drifted = kind == 'snapshot' and redis.call('HGET', 'stl:drift:' .. person, seq)
    if drifted then
      local f = split(drifted, '|')
      return {'STALE', a.balance, tonumber(f[1]), tonumber(f[2])}
    end
    return {'STALE', a.balance}
  end
  local platform, in_flight
  if kind == 'credit' then
    a.balance = a.balance + amount
  elseif kind == 'debit' then
    a.balance = a.balance - amount
  else
    local through = tonumber(args[6])
    -- No bureau event undoes a platform posting: a snapshot that includes fewer of them than an
    -- earlier one, or more than the platform made, contradicts the books and is refused.
    if through < a.wm then return {'WATERMARK_BEHIND', a.balance} end
    if through > a.aseq then return {'WATERMARK_AHEAD', a.balance} end
    local key = 'stl:pp:' .. person
    local pending = redis.call('LRANGE', key, 0, -1)
    local included, after = 0, 0
    for _, item in ipairs(pending) do
      local f = split(item, '|')
      if tonumber(f[1]) <= through then included = included + 1 else after = after + tonumber(f[2]) end
    end
    if included == #pending then redis.call('DEL', key) elseif included > 0 then
      redis.call('LTRIM', key, included, -1)
    end
    platform, in_flight = a.balance, after
    if platform ~= amount + after then
      redis.call('HSET', 'stl:drift:' .. person, seq, string.format('%d|%d|%d', platform, after, amount))
      redis.call('EXPIRE', 'stl:drift:' .. person, DRIFT_TTL)
    end
    a.balance = amount + after
    a.wm = through
  end
  a.seq = seq
  write_account(person, a)
  local outcome = a.balance < 0 and 'NEGATIVE' or 'APPLIED'
  if platform then return {outcome, a.balance, platform, in_flight} end
  return {outcome, a.balance}
end

-- A registration replaces the previous one, its keys included (a key left out is retired), but
-- only the bureau of the region the institution is registered in may change it (contract
-- version 3): answers NOT_SIGNERS, changing nothing, when `signer_region` is another.
-- ARGV: institution code, region, kind, public keys (storage/accounts.py encodes them), signer_region,
-- registered name (kept apart in stl:inst:name, so the charge path's stl:inst stays `region|kind`)
local function register_institution(keys, args)
  local code, region, kind, public_keys, signer_region = args[1], args[2], args[3], args[4], args[5]
  local name = args[6] or ''
  local current = redis.call('HGET', 'stl:inst', code)
  if current and split(current, '|')[1] ~= signer_region then return 'NOT_SIGNERS' end
  redis.call('HSET', 'stl:inst', code, region .. '|' .. kind)
  redis.call('HSET', 'stl:ikeys', code, public_keys)
  if name ~= '' then redis.call('HSET', 'stl:inst:name', code, name) end
  return 'OK'
end

redis.register_function('settle_batch', settle_batch)
redis.register_function('refund_batch', refund_batch)
redis.register_function('register_person', register_person)
redis.register_function('transfer_person', transfer_person)
redis.register_function('bureau_movement', bureau_movement)
redis.register_function('register_institution', register_institution)
redis.register_function('reverse_payment', reverse_payment)
redis.register_function{function_name = 'provisional_refusals', callback = provisional_refusals,
  flags = {'no-writes'}}
redis.register_function('release_due', release_due)
redis.register_function('release_binding', release_binding)
