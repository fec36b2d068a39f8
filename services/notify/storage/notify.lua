#!lua name=notify
-- Claim a message for sending, atomically: at most one send per message, ever. A message found
-- 'pending' was being sent when a process died; it is never sent again (the gateway may have
-- delivered it), and the caller records the outcome as unknown.
-- KEYS[1] = ntf:msg:{message_id}; ARGV[1] = the state it may be claimed from besides none
-- ('' for a new message, 'deferred' when quiet hours end).
local function claim(keys, args)
  local state = redis.call('HGET', keys[1], 'state')
  if (not state and args[1] == '') or state == args[1] then
    redis.call('HSET', keys[1], 'state', 'pending')
    return {'CLAIMED', state or '', ''}
  end
  return {'HELD', state or '', redis.call('HGET', keys[1], 'event') or ''}
end

redis.register_function('claim', claim)
