-- Apply a provider event to a payment. Atomic, like create.lua: the event
-- record and the payment change together or not at all.
--
-- KEYS[1] payment record   pmt:v3:{tag}:pay:<payment_id>
-- KEYS[2] event record     pmt:v3:{tag}:evt:<sha256(webhook-id)>  (same tag)
-- ARGV[1] SHA-256 of the raw event body
-- ARGV[2] target status (2 succeeded, 3 failed)
-- ARGV[3] event record TTL, milliseconds
-- ARGV[4] event amount_minor
-- ARGV[5] event currency
-- ARGV[6] occurred_at (unix ns)
-- ARGV[7] failure reason ("" for success)
-- ARGV[8] "1" when the caller sends WAIT after this script on the same
--         connection (replica acknowledgements on), else "0"
--
-- Returns {"applied"}, {"duplicate"}, {"already_settled"}, {"event_conflict"},
-- {"unknown_payment"}, {"amount_mismatch"} or {"settlement_conflict"}.
local seen = redis.call('GET', KEYS[2])
if seen then
  if seen == ARGV[1] then
    -- A duplicate writes nothing, so its WAIT would not cover the settlement
    -- it confirms (see create.lua): re-set the event record's expiry to the
    -- absolute time it already has, a propagated write that changes nothing.
    if ARGV[8] == '1' then
      local at = redis.call('PEXPIRETIME', KEYS[2])
      if at > 0 then
        redis.call('PEXPIREAT', KEYS[2], at)
      end
    end
    return {'duplicate'}
  end
  return {'event_conflict'}
end
local p = redis.call('HMGET', KEYS[1], 'st', 'amt', 'cur')
if not p[1] then
  return {'unknown_payment'}
end
if p[2] ~= ARGV[4] or p[3] ~= ARGV[5] then
  return {'amount_mismatch'}
end
if p[1] == ARGV[2] then
  -- Same final state by a different event: remember this id too, so its own
  -- redelivery is a plain duplicate.
  redis.call('SET', KEYS[2], ARGV[1], 'PX', ARGV[3])
  return {'already_settled'}
end
if p[1] ~= '1' then
  return {'settlement_conflict'}
end
-- The message is not stored: it is derived from these fields when read.
redis.call('HSET', KEYS[1], 'st', ARGV[2], 'sat', ARGV[6], 'fr', ARGV[7])
redis.call('SET', KEYS[2], ARGV[1], 'PX', ARGV[3])
return {'applied'}
