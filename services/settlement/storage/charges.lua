-- Charges, refunds and reversals (library `settlement`, after quotes.lua): a charge settled (or
-- its quote posted), a refund giving back the lines paid, an upheld dispute giving back the
-- grantor's line; charges, quotes and refunds only in batches.

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
  ledger_return(spent_field, 'r', refund_id, amount, post_day, record_ttl)
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
  -- owed by the institution to the fund: the line less what refunds gave back (PaymentReversed's amount)
  ledger_return(spent_field, 'v', dispute, give, post_day, record_ttl)
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

redis.register_function('settle_batch', settle_batch)
redis.register_function('refund_batch', refund_batch)
redis.register_function('reverse_payment', reverse_payment)
