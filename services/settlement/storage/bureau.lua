-- The bureaus' side (library `settlement`, after charges.lua): registrations and transfers of
-- people, movements on their books (credits, debits, snapshots), registrations of institutions.

local MOVING = 'stl:moving'

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

redis.register_function('register_person', register_person)
redis.register_function('transfer_person', transfer_person)
redis.register_function('bureau_movement', bureau_movement)
redis.register_function('register_institution', register_institution)
