-- The payer index's only Lua reader (the layout and its only Python reader, with the same rules:
-- shared/binding_index.py). Written into the `binding` and `settlement` Function libraries ahead
-- of their own files (shared/function_library.py), so both read the index alike.
--
-- Hash bnd:pay:{beneficiary}, field binding_id, value
-- "grantor|order|startYYYYMMDD|endYYYYMMDD|region|monthly_limit_fen|paused": limit empty = none,
-- paused 'p' = pays nothing; the old 5-field value: no limit, not paused.

local PAYER_PAUSED = 'p'

local function payers_key(beneficiary)
  return 'bnd:pay:' .. beneficiary
end

-- One entry, as decode_payer reads it; `limit` nil for none.
local function decode_payer(binding_id, value)
  local f = {}
  for piece in string.gmatch(value .. '|', '([^|]*)|') do f[#f + 1] = piece end
  return {binding = binding_id, grantor = f[1], order = tonumber(f[2]), start_day = tonumber(f[3]),
    end_day = tonumber(f[4]), region = f[5], limit = (f[6] and f[6] ~= '') and tonumber(f[6]) or nil,
    paused = f[7] == PAYER_PAUSED}
end

-- The beneficiary's whole index in payment order, ties by binding id (decode_payers).
local function read_payers(beneficiary)
  local index = redis.call('HGETALL', payers_key(beneficiary))
  local payers = {}
  for i = 1, #index, 2 do payers[#payers + 1] = decode_payer(index[i], index[i + 1]) end
  table.sort(payers, function(a, b)
    if a.order ~= b.order then return a.order < b.order end
    return a.binding < b.binding
  end)
  return payers
end

-- The bindings that may pay on `day` (YYYYMMDD, China date, both ends included), in payment
-- order, paused ones included: they are in force and pay nothing (payers_in_force).
local function payers_in_force(beneficiary, day)
  local out = {}
  for _, p in ipairs(read_payers(beneficiary)) do
    if p.start_day <= day and day <= p.end_day then out[#out + 1] = p end
  end
  return out
end

-- One binding's entry, or nil when it is not in the index (revoked, or swept after its end).
local function read_payer(beneficiary, binding_id)
  local value = redis.call('HGET', payers_key(beneficiary), binding_id)
  if not value then return nil end
  return decode_payer(binding_id, value)
end
