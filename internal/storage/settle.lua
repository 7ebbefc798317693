-- Apply a provider event to a payment. Atomic, like create.lua: the event
-- record and the payment change together or not at all.
--
-- KEYS[1] payment record   pmt:v2:{tag}:pay:<payment_id>
-- KEYS[2] event record     pmt:v2:{tag}:evt:<sha256(webhook-id)>  (same tag)
-- ARGV[1] SHA-256 of the raw event body
-- ARGV[2] target status (2 succeeded, 3 failed)
-- ARGV[3] message before the order id
-- ARGV[4] message after the order id
-- ARGV[5] event record TTL, milliseconds
-- ARGV[6] event amount_minor
-- ARGV[7] event currency
-- ARGV[8] occurred_at (unix ns)
-- ARGV[9] failure reason ("" for success)
-- ARGV[10] "1" when the caller sends WAIT after this script on the same
--          connection (replica acknowledgements on), else "0"
--
-- Returns {"applied"}, {"duplicate"}, {"already_settled"}, {"event_conflict"},
-- {"unknown_payment"}, {"amount_mismatch"} or {"settlement_conflict"}.
local seen = redis.call('GET', KEYS[2])
if seen then
  if seen == ARGV[1] then
    -- A duplicate writes nothing, so its WAIT would not cover the settlement
    -- it confirms (see create.lua): re-set the event record's expiry to the
    -- absolute time it already has, a propagated write that changes nothing.
    if ARGV[10] == '1' then
      local at = redis.call('PEXPIRETIME', KEYS[2])
      if at > 0 then
        redis.call('PEXPIREAT', KEYS[2], at)
      end
    end
    return {'duplicate'}
  end
  return {'event_conflict'}
end
local p = redis.call('HMGET', KEYS[1], 'st', 'amt', 'cur', 'ord')
if not p[1] then
  return {'unknown_payment'}
end
if p[2] ~= ARGV[6] or p[3] ~= ARGV[7] then
  return {'amount_mismatch'}
end
if p[1] == ARGV[2] then
  -- Same final state by a different event: remember this id too, so its own
  -- redelivery is a plain duplicate.
  redis.call('SET', KEYS[2], ARGV[1], 'PX', ARGV[5])
  return {'already_settled'}
end
if p[1] ~= '1' then
  return {'settlement_conflict'}
end
redis.call('HSET', KEYS[1], 'st', ARGV[2], 'msg', ARGV[3] .. p[4] .. ARGV[4],
  'sat', ARGV[8], 'fr', ARGV[9])
redis.call('SET', KEYS[2], ARGV[1], 'PX', ARGV[5])
return {'applied'}
