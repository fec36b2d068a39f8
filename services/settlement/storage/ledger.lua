-- The HIS ledger (对账 with the HIS; library `settlement`, after common.lua): what the platform
-- settled per institution and day, written by the same
-- Functions that settle, refund and reverse, in the same atomic step. So a settled charge is in
-- the ledger before its outcome is published, and an answer read off the ledger is always final.
--
-- Hash stl:ild:{institution}:{YYYYMMDD} (China date of the settling moment, the posting day):
--   c:{charge_id}              "borne|own|family|cash" (fen) of a charge settled
--   r:{charge_id}:{refund_id}  fen of a refund settled
--   v:{charge_id}:{dispute_id} fen of an upheld dispute's reversal (owed by the institution to the
--                              fund, issue 21); t:reversals t:reversed its totals
--   t:charges t:borne t:own t:family t:cash t:refunds t:refunded   the day's totals
-- Charge, refund and dispute ids hold no ':' (contract.py), so fields never collide.
--
-- Idempotent: an entry is added to the totals only when its field is new (HSETNX), so the same
-- entry again changes nothing. Answers 1 (new), 0 (known, same value) or -1 (known with another
-- value: a defect upstream; the first value is kept).
local function ledger_add(institution, day, field, value, kind, a, b, c, d, ttl)
  local key = 'stl:ild:' .. institution .. ':' .. day
  if redis.call('HSETNX', key, field, value) == 0 then
    return redis.call('HGET', key, field) == value and 0 or -1
  end
  if kind == 'c' then
    redis.call('HINCRBY', key, 't:charges', 1)
    redis.call('HINCRBY', key, 't:borne', a)
    redis.call('HINCRBY', key, 't:own', b)
    redis.call('HINCRBY', key, 't:family', c)
    redis.call('HINCRBY', key, 't:cash', d)
  elseif kind == 'v' then
    redis.call('HINCRBY', key, 't:reversals', 1)
    redis.call('HINCRBY', key, 't:reversed', a)
  else
    redis.call('HINCRBY', key, 't:refunds', 1)
    redis.call('HINCRBY', key, 't:refunded', a)
  end
  redis.call('EXPIRE', key, ttl)
  return 1
end

-- A charge settled ({institution}:{charge} as `member`): its four columns from its lines.
local function ledger_charge(member, borne, lines, day, ttl)
  local institution, charge = string.match(member, '^([^:]+):(.+)$')
  local paid = {own = 0, grantor = 0, cash = 0}
  for _, l in ipairs(lines) do paid[l.source] = paid[l.source] + l.amount end
  local value = string.format('%d|%d|%d|%d', borne, paid.own, paid.grantor, paid.cash)
  return ledger_add(institution, day, 'c:' .. charge, value, 'c', borne, paid.own, paid.grantor, paid.cash, ttl)
end

-- A refund ('r', id: the refund's) or an upheld dispute's reversal ('v', id: the dispute's).
local function ledger_return(member, kind, id, amount, day, ttl)
  local institution, charge = string.match(member, '^([^:]+):(.+)$')
  local fen = string.format('%d', amount)
  return ledger_add(institution, day, kind .. ':' .. charge .. ':' .. id, fen, kind, fen, 0, 0, 0, ttl)
end

-- For the upgrade from the release that projected the ledger from settlement.results
-- (services/settlement/ledger_drain.py) and for tests: entries added as the Functions add them.
-- ARGV[1]: ttl seconds; ARGV[2] (cjson): items [institution, day, field, value, kind, a, b, c, d].
-- Answers {fresh, conflicts}.
local function ledger_record(keys, args)
  local fresh, conflicts = 0, 0
  for _, x in ipairs(cjson.decode(args[2])) do
    local added = ledger_add(x[1], x[2], x[3], x[4], x[5], x[6], x[7] or 0, x[8] or 0, x[9] or 0, args[1])
    if added == 1 then fresh = fresh + 1 elseif added == -1 then conflicts = conflicts + 1 end
  end
  return {fresh, conflicts}
end

redis.register_function('ledger_record', ledger_record)
