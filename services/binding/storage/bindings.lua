-- The binding service's Redis Functions (storage/bindings.py holds the layouts), library
-- `binding`: storage/bindings.py loads this file after shared/binding_index.lua (the payer
-- index's reader) at start-up with FUNCTION LOAD REPLACE; Functions persist across a Redis restart.
--
-- bnd_commit touches only keys its caller names in the plan; bnd_sweep derives the payer index
-- key (bnd:pay:{beneficiary}, shared/binding_index.py) from bnd:ends. All keys live on one Redis
-- primary, as deployed.

-- bnd_commit(plan JSON): the changes decided for one beneficiary's batch of commands, applied
-- only if the beneficiary's bindings are still what the decision read (compare-and-set on the
-- whole record: any other write to it in between makes this call answer 0, and the caller
-- decides those commands again). A plan without a beneficiary (commands refused before any
-- binding was read) has nothing to compare and only records outcomes.
--   ben_key, expect   bnd:ben:{beneficiary} and the value read ("" when it did not exist)
--   record            the new value, or absent when the bindings did not change
--   pay_key, payers   bnd:pay:{beneficiary} rewritten as {binding_id, payer value, ...}
--   ben               the beneficiary's id: bnd:ends member, and what bnd:gr and bnd:id point to
--   ends_score        bnd:ends score: the earliest end (YYYYMMDD) in the payer index, '0' = none
--   grantors          {bnd:gr:{bucket}, grantor_id} pairs to list the beneficiary under
--   ids               {bnd:id:{bucket}, binding_id} pairs: binding id -> beneficiary, permanent
--   outs              {bnd:out:{command_id}, record, ttl seconds} recorded outcomes
-- and after the plan, in groups of four arguments, the refusals recorded (binary fields, hence
-- not in the JSON): bnd:rej:{generation}:{k}, field, record, the hash's expiry (epoch seconds).
--   sets, members     {key, value} disputes written (SET, no expiry) and {set key, member} to add
--                     (bnd:dsp:{dispute_id} and bnd:dspg:{grantor}), with the bindings they change
local function commit(keys, args)
  local p = cjson.decode(args[1])
  if p.ben_key then
    local current = redis.call('GET', p.ben_key) or ''
    if current ~= p.expect then
      return 0
    end
    if p.record then
      redis.call('SET', p.ben_key, p.record)
      redis.call('DEL', p.pay_key)
      if #p.payers > 0 then
        redis.call('HSET', p.pay_key, unpack(p.payers))
      end
      if p.ends_score ~= '0' then
        redis.call('ZADD', 'bnd:ends', p.ends_score, p.ben)
      else
        redis.call('ZREM', 'bnd:ends', p.ben)
      end
      for _, g in ipairs(p.grantors) do
        local listed = redis.call('HGET', g[1], g[2])
        if not listed then
          redis.call('HSET', g[1], g[2], p.ben)
        elseif not string.find(',' .. listed .. ',', ',' .. p.ben .. ',', 1, true) then
          redis.call('HSET', g[1], g[2], listed .. ',' .. p.ben)
        end
      end
      for _, i in ipairs(p.ids) do
        redis.call('HSET', i[1], i[2], p.ben)
      end
    end
    for _, kv in ipairs(p.sets or {}) do
      redis.call('SET', kv[1], kv[2])
    end
    for _, m in ipairs(p.members or {}) do
      redis.call('SADD', m[1], m[2])
    end
  end
  for _, o in ipairs(p.outs) do
    redis.call('SET', o[1], o[2], 'EX', o[3])
  end
  for i = 2, #args, 4 do
    redis.call('HSET', args[i], args[i + 1], args[i + 2])
    redis.call('EXPIREAT', args[i], args[i + 3])
  end
  return 1
end

-- bnd_sweep(cutoff YYYYMMDD, limit): for up to `limit` beneficiaries whose earliest payer ends
-- before the cutoff, drop every payer ended before it and re-score the beneficiary by its next
-- end (or drop it from bnd:ends). Returns {beneficiaries looked at, payers removed}.
local function sweep(keys, args)
  local cutoff, limit = tonumber(args[1]), tonumber(args[2])
  local due = redis.call('ZRANGEBYSCORE', 'bnd:ends', '-inf', '(' .. cutoff, 'LIMIT', 0, limit)
  local removed = 0
  for _, ben in ipairs(due) do
    local earliest = nil
    for _, payer in ipairs(read_payers(ben)) do
      local day = payer.end_day
      if day < cutoff then
        redis.call('HDEL', payers_key(ben), payer.binding)
        removed = removed + 1
      elseif earliest == nil or day < earliest then
        earliest = day
      end
    end
    if earliest then
      redis.call('ZADD', 'bnd:ends', earliest, ben)
    else
      redis.call('ZREM', 'bnd:ends', ben)
    end
  end
  return {#due, removed}
end

-- bnd_outcomes(generations..., '|', then command_id, field, bucket per command): the recorded
-- outcome of each command, '' where none: 'o' and its bnd:out:{command_id} value, else 'r' and
-- its refusal's field in the first of bnd:rej:{generation}:{bucket} that holds it. One command
-- for a batch's look-up, however many generations are looked in.
local function outcomes(keys, args)
  local gens, i = {}, 1
  while args[i] ~= '|' do
    gens[#gens + 1] = args[i]
    i = i + 1
  end
  local found = {}
  for j = i + 1, #args, 3 do
    local cid, field, bucket = args[j], args[j + 1], args[j + 2]
    local out = redis.call('GET', 'bnd:out:' .. cid)
    local answer = ''
    if out then
      answer = 'o' .. out
    else
      for _, g in ipairs(gens) do
        local refused = redis.call('HGET', 'bnd:rej:' .. g .. ':' .. bucket, field)
        if refused then
          answer = 'r' .. refused
          break
        end
      end
    end
    found[#found + 1] = answer
  end
  return found
end

redis.register_function('bnd_commit', commit)
redis.register_function{function_name='bnd_outcomes', callback=outcomes, flags={'no-writes'}}
redis.register_function('bnd_sweep', sweep)
