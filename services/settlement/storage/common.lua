-- The settlement library's common part (library `settlement`, made by storage/library.py of
-- common.lua, waterfall.lua, quotes.lua, charges.lua, bureau.lua after shared/binding_index.lua,
-- loaded once at start-up with FUNCTION LOAD REPLACE; Functions persist across a Redis restart,
-- unlike EVAL scripts). Each Function applies one charge, quote, refund or bureau event
-- atomically, with its idempotency record in the same step.
--
-- These Functions are the home of the settlement rules (issue 21): the waterfall (waterfall.lua),
-- holds (quotes.lua), limits and pause, refunds (last paid first, or the lines named) and
-- reversals of upheld disputes (charges.lua), the bureau's movements (bureau.lua), and which
-- refusals are recorded (PROVISIONAL, below). No Python code decides a split or a refund:
-- tests/oracle/waterfall.py restates the waterfall plainly as the tests' oracle only (the
-- hypothesis tests check these Functions against it), and is called by no service.
--
-- The layouts below are also read and written in Python by storage/layouts.py, one codec each.
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
-- The payer index bnd:pay:{patient} (written by the binding service) is read only through
-- shared/binding_index.lua (read_payers, payers_in_force, read_payer).
-- stl:used:{binding} (hash YYYYMM -> fen): what the binding paid or holds in each calendar month
-- (China time, the charge's day), against its monthly limit; refunds give back in that month.
-- Quotes (预结算), one per charge: stl:quote:{institution}:{charge} (hash: quote_id, digest,
-- lines, patient, borne, month, at, until (epoch ms), state held|settled|released, reason,
-- released_at, gen: 1, or the generation of a quote made again after a release, issue 21);
-- stl:quote:due (zset "{institution}:{charge}" by until); stl:bq:{binding} (set of
-- "{institution}:{charge}" the binding holds for); stl:quote:outbox (list of cjson releases to
-- announce as ChargeQuoteReleased, removed once published).
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

redis.register_function{function_name = 'provisional_refusals', callback = provisional_refusals,
  flags = {'no-writes'}}
