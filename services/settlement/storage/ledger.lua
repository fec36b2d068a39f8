#!lua name=settlement_ledger
-- The settlement ledger (对账 with the HIS): a projection of settlement.results per institution
-- and day, kept by the consumer group <SETTLEMENT_GROUP_ID>.ledger. Loaded once at start-up
-- (FUNCTION LOAD REPLACE), a library of its own beside `settlement`.
--
-- Hash stl:ild:{institution}:{YYYYMMDD} (China date of the outcome's settled_at):
--   c:{charge_id}             "borne|own|family|cash" (fen) of a ChargeSettled
--   r:{charge_id}:{refund_id} fen of a RefundSettled
--   v:{charge_id}:{dispute_id} fen of a PaymentReversed (an upheld dispute: owed by the institution
--                             to the fund, issue 21); t:reversals t:reversed its totals
--   t:charges t:borne t:own t:family t:cash t:refunds t:refunded   the day's totals
-- Charge and refund ids hold no ':' (contract.py), so fields never collide.
--
-- Idempotent: an outcome is added to the totals only when its field is new (HSETNX), so a
-- redelivered or republished outcome (the same bytes) changes nothing.

-- ARGV[1]: ttl seconds; ARGV[2] (cjson): items, each
--   [key, field, value, 'c', borne, own, family, cash], [key, field, value, 'r', amount] or
--   [key, field, value, 'v', amount]
-- Answers {fresh, conflicts}: how many were new, how many named a known field with another value
-- (a defect upstream: the first value is kept).
local function ledger_record(keys, args)
  local ttl = args[1]
  local fresh, conflicts = 0, 0
  for _, x in ipairs(cjson.decode(args[2])) do
    local key, field, value = x[1], x[2], x[3]
    if redis.call('HSETNX', key, field, value) == 1 then
      fresh = fresh + 1
      if x[4] == 'c' then
        redis.call('HINCRBY', key, 't:charges', 1)
        redis.call('HINCRBY', key, 't:borne', x[5])
        redis.call('HINCRBY', key, 't:own', x[6])
        redis.call('HINCRBY', key, 't:family', x[7])
        redis.call('HINCRBY', key, 't:cash', x[8])
      elseif x[4] == 'v' then
        redis.call('HINCRBY', key, 't:reversals', 1)
        redis.call('HINCRBY', key, 't:reversed', x[5])
      else
        redis.call('HINCRBY', key, 't:refunds', 1)
        redis.call('HINCRBY', key, 't:refunded', x[5])
      end
      redis.call('EXPIRE', key, ttl)
    elseif redis.call('HGET', key, field) ~= value then
      conflicts = conflicts + 1
    end
  end
  return {fresh, conflicts}
end

redis.register_function('ledger_record', ledger_record)
