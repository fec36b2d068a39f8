-- The waterfall (library `settlement`, after common.lua): who pays a charge or a quote, in what
-- order and how much, and what a settled charge leaves behind. Its oracle: tests/oracle/waterfall.py.

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
  -- the payer index as shared/binding_index.lua reads it: bindings in force on the charge's day
  for _, p in ipairs(payers_in_force(patient, day)) do
    if not p.paused and remaining > 0 then pay('grantor', p.grantor, read_account(p.grantor), p) end
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

-- What a settled charge leaves: its record (idempotency, refunds: lines with binding ids, and the
-- month its grantors' limits were used in), the consumption rows, the 对账 postings and its entry
-- in the HIS ledger.
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
  ledger_charge(spent_field, borne, lines, post_day, record_ttl)
  return encoded
end
