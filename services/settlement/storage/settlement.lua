#!lua name=settlement
-- The settlement service's Redis Functions: each applies one charge, refund or bureau event
-- atomically, with its idempotency record in the same step. Loaded once at start-up
-- (FUNCTION LOAD REPLACE); Functions persist across a Redis restart, unlike EVAL scripts.
--
-- Account entry, in hash stl:acct:{bucket}, field person_id:
--   "balance|bureau_seq|region|scheme|account_seq|watermark"
-- balance in fen (may be below zero: never clamped); scheme e = employee with an account,
-- r = resident without one; account_seq = the last platform posting's place in this account's
-- sequence; watermark = the postings_applied_through of the last BalanceSnapshot applied.
-- stl:pp:{person} (list, oldest first): "account_seq|signed fen" of the platform's postings after
-- the watermark, what a snapshot's balance does not include yet; trimmed by each snapshot.
-- stl:inst (hash): institution code -> "region|kind", projection of bureau.institutions.
-- Payer index (written by the binding service, shared/binding_index.py), hash bnd:pay:{patient}:
-- field binding_id, value "grantor|order|startYYYYMMDD|endYYYYMMDD|region".
--
-- Keys are derived inside the Functions (accounts, payer index, institutions), so all keys must
-- live on one Redis primary (no cluster), as deployed.

local BUCKETS = 65536

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
    aseq = tonumber(f[5] or '0'), wm = tonumber(f[6] or '0')}
end

local function write_account(person_id, a)
  redis.call('HSET', bucket_key(person_id), person_id,
    string.format('%d|%d|%s|%s|%d|%d', a.balance, a.seq, a.region, a.scheme, a.aseq, a.wm))
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
      l.aseq and string.format('%d', l.aseq) or ''}, ','))
  end
  return table.concat(parts, ';')
end

local function decode_lines(s)
  local lines = {}
  for _, part in ipairs(split(s, ';')) do
    local f = split(part .. ',', ',')
    table.insert(lines, {source = f[1], person = f[2], region = f[3], order = f[4], amount = tonumber(f[5])})
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

local function reject(rej_key, code, ttl)
  redis.call('SET', rej_key, code, 'EX', ttl)
  return {'REJECTED', code}
end

-- KEYS: charge record stl:charge:{institution}:{charge}, rejection record stl:rej:{institution}:{event}
-- ARGV: spent field ({institution}:{charge}), digest, borne, patient_id, day, settled_at,
--       province codes, rejection ttl, record ttl, posting day (YYYYMMDD of settled_at),
--       institution code, institution region, posting id prefix
local function settle(keys, args)
  local charge_key, rej_key = keys[1], keys[2]
  local spent_field, digest, borne, patient = args[1], args[2], tonumber(args[3]), args[4]
  local day, settled_at, province, ttl, record_ttl = tonumber(args[5]), args[6], args[7], args[8], args[9]
  local post_day, institution, institution_region, prefix = args[10], args[11], args[12], args[13]

  local recorded = redis.call('HMGET', charge_key, 'digest', 'lines', 'at')
  if recorded[1] then
    if recorded[1] ~= digest then return {'CONFLICT'} end
    return {'SETTLED', recorded[2], recorded[3], '1'}
  end
  local refused = redis.call('GET', rej_key)
  if refused then return {'REJECTED', refused} end

  -- Refusals read off a projection are not recorded: a resend after the registration lands settles.
  local designated = redis.call('HGET', 'stl:inst', institution)
  if not designated or split(designated, '|')[1] ~= institution_region then
    return {'REJECTED', 'UNKNOWN_INSTITUTION'}
  end
  local me = read_account(patient)
  if not me then return {'REJECTED', 'UNKNOWN_PATIENT'} end
  if not string.find(',' .. province .. ',', ',' .. me.region .. ',', 1, true) then
    return reject(rej_key, 'OUTSIDE_PROVINCE', ttl)
  end

  -- Bindings in force on the charge's day, in payment order.
  local payers = {}
  local index = redis.call('HGETALL', 'bnd:pay:' .. patient)
  for i = 1, #index, 2 do
    local f = split(index[i + 1], '|')
    if tonumber(f[3]) <= day and day <= tonumber(f[4]) then
      table.insert(payers, {person = f[1], order = tonumber(f[2]), region = f[5]})
    end
  end
  table.sort(payers, function(a, b) return a.order < b.order end)

  local lines, remaining = {}, borne
  local function pay(source, person, account, order)
    -- A balance at or below zero (the bureau's own spending may drive it there) pays nothing.
    if not account or account.scheme ~= 'e' or remaining == 0 or account.balance <= 0 then return end
    local take = math.min(account.balance, remaining)
    remaining = remaining - take
    local aseq = post(person, account, -take)
    table.insert(lines, {source = source, person = person, region = account.region,
      order = order, amount = take, after = account.balance, aseq = aseq})
  end
  pay('own', patient, me, nil)
  for _, p in ipairs(payers) do
    pay('grantor', p.person, read_account(p.person), p.order)
  end
  table.insert(lines, {source = 'cash', amount = remaining})

  local encoded = encode_lines(lines)
  local refunded = {}
  for i = 1, #lines do refunded[i] = '0' end
  redis.call('HSET', charge_key, 'digest', digest, 'lines', encoded, 'at', settled_at,
    'patient', patient, 'borne', borne, 'refunded', table.concat(refunded, ','))
  redis.call('EXPIRE', charge_key, record_ttl)
  for _, l in ipairs(lines) do
    if l.source == 'grantor' then
      -- 家庭共济消费查询: what each beneficiary spent from this grantor's account.
      redis.call('HSET', 'stl:spent:' .. l.person, spent_field,
        string.format('%d|%s|%d|0|%s', day, patient, l.amount, settled_at))
    end
  end
  record_postings(lines, prefix, 'debit', post_day, record_ttl)
  return {'SETTLED', encoded, settled_at, '0'}
end

-- KEYS: charge record, rejection record (as settle)
-- ARGV: spent field, refund_id, amount, settled_at (the platform's clock), digest, rejection ttl,
--       posting day (YYYYMMDD of settled_at), record ttl, posting id prefix
local function refund(keys, args)
  local charge_key, rej_key = keys[1], keys[2]
  local spent_field, refund_id, amount, at, digest, ttl =
    args[1], args[2], tonumber(args[3]), args[4], args[5], args[6]
  local post_day, record_ttl, prefix = args[7], args[8], args[9]

  local done = redis.call('HGET', charge_key, 'r:' .. refund_id)
  if done then
    local f = split(done, '|')
    if f[1] ~= digest then return {'CONFLICT'} end
    return {'REFUNDED', f[2], f[3], '1', redis.call('HGET', charge_key, 'patient')}
  end
  local refused = redis.call('GET', rej_key)
  if refused then return {'REJECTED', refused} end
  local record = redis.call('HMGET', charge_key, 'lines', 'refunded', 'patient')
  if not record[1] then return reject(rej_key, 'UNKNOWN_CHARGE', ttl) end

  local paid = decode_lines(record[1])
  local back = split(record[2], ',')
  local room = 0
  for i, l in ipairs(paid) do room = room + l.amount - tonumber(back[i]) end
  if amount > room then return reject(rej_key, 'REFUND_EXCEEDS_PAID', ttl) end

  -- Last paid, first refunded: cash, then grantor 2, grantor 1, the own account last. Lines are
  -- built last to first, then applied first to last, so account_seq follows the lines' order.
  local lines, remaining = {}, amount
  for i = #paid, 1, -1 do
    local l = paid[i]
    local give = math.min(l.amount - tonumber(back[i]), remaining)
    if give > 0 then
      remaining = remaining - give
      back[i] = string.format('%d', tonumber(back[i]) + give)
      table.insert(lines, 1, {source = l.source, person = l.person ~= '' and l.person or nil,
        region = l.region ~= '' and l.region or nil, order = l.order ~= '' and l.order or nil, amount = give})
    end
  end
  for _, line in ipairs(lines) do
    if line.source ~= 'cash' then
      local account = read_account(line.person)
      line.aseq = post(line.person, account, line.amount)
      line.after = account.balance
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

-- A batch of charges or refunds in ONE call, each applied by `settle` / `refund` above under
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

-- common: [province codes, rejection ttl, record ttl]
-- item: [institution, charge_id, event_id, digest, borne, patient_id, day, settled_at,
--        posting day, institution region, posting id prefix]
local function settle_batch(keys, args)
  local batch = cjson.decode(args[1])
  local province, ttl, record_ttl = batch[1][1], batch[1][2], batch[1][3]
  local out = {}
  for i, x in ipairs(batch[2]) do
    local ok, reply = pcall(settle, {'stl:charge:' .. x[1] .. ':' .. x[2], 'stl:rej:' .. x[1] .. ':' .. x[3]},
      {x[1] .. ':' .. x[2], x[4], x[5], x[6], x[7], x[8], province, ttl, record_ttl, x[9], x[1], x[10], x[11]})
    out[i] = ok and reply or failure(reply)
  end
  return cjson.encode(out)
end

-- common: [rejection ttl, record ttl]
-- item: [institution, charge_id, event_id, refund_id, amount, settled_at, digest, posting day,
--        posting id prefix]
local function refund_batch(keys, args)
  local batch = cjson.decode(args[1])
  local ttl, record_ttl = batch[1][1], batch[1][2]
  local out = {}
  for i, x in ipairs(batch[2]) do
    local ok, reply = pcall(refund, {'stl:charge:' .. x[1] .. ':' .. x[2], 'stl:rej:' .. x[1] .. ':' .. x[3]},
      {x[1] .. ':' .. x[2], x[4], x[5], x[6], x[7], ttl, x[8], record_ttl, x[9]})
    out[i] = ok and reply or failure(reply)
  end
  return cjson.encode(out)
end

-- A bureau registration: region and scheme follow the bureau; an existing account's balance
-- is the platform's to keep (it moves with AccountCredited/Debited/Snapshot, by bureau_seq).
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
  return 'OK'
end

-- A movement the bureau made on its book: applied once, in bureau_seq order per person, only
-- for a person its region registered. A refused event leaves the account (and its bureau_seq)
-- untouched, so a genuine later event still applies.
-- ARGV: person_id, kind (credit|debit|snapshot), amount fen, bureau_seq, region,
--       postings_applied_through (snapshots)
-- Answers {outcome, balance}: APPLIED, NEGATIVE (applied; the balance is below zero), STALE
-- (seq already seen), or a refusal: UNREGISTERED, FOREIGN_REGION, WATERMARK_BEHIND,
-- WATERMARK_AHEAD.
local function bureau_movement(keys, args)
  local person, kind, amount, seq, region = args[1], args[2], tonumber(args[3]), tonumber(args[4]), args[5]
  local a = read_account(person)
  if not a then return {'UNREGISTERED', 0} end
  if a.region ~= region then return {'FOREIGN_REGION', a.balance} end
  if seq <= a.seq then return {'STALE', a.balance} end
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
    a.balance = amount + after
    a.wm = through
  end
  a.seq = seq
  write_account(person, a)
  return {a.balance < 0 and 'NEGATIVE' or 'APPLIED', a.balance}
end

-- ARGV: institution code, region, kind (a registration replaces the previous one)
local function register_institution(keys, args)
  redis.call('HSET', 'stl:inst', args[1], args[2] .. '|' .. args[3])
  return 'OK'
end

redis.register_function('settle', settle)
redis.register_function('refund', refund)
redis.register_function('settle_batch', settle_batch)
redis.register_function('refund_batch', refund_batch)
redis.register_function('register_person', register_person)
redis.register_function('bureau_movement', bureau_movement)
redis.register_function('register_institution', register_institution)
