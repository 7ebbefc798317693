-- Create a payment unless its idempotency key is already taken. Atomic: Redis
-- runs the whole script before any other command, so there is no window
-- between the check and the write, whatever the number of callers or replicas.
--
-- KEYS[1] idempotency record   pmt:{tag}:idem:<sha256(key)>
-- KEYS[2] payment record       pmt:{tag}:pay:<payment_id>
-- ARGV[1] request fingerprint
-- ARGV[2] idempotency TTL, milliseconds
-- ARGV[3] payment TTL, milliseconds (0 keeps it forever)
-- ARGV[4..] payment_id, status, message, created_at (unix ns), amount_minor,
--           currency, order_id, idempotency_key, metadata (JSON)
--
-- Returns {"created"}, {"replay", id, status, message, created_at},
-- {"mismatch"} or {"collision"} (a payment_id already in use; the caller
-- retries with a fresh id).
local rec = redis.call('HMGET', KEYS[1], 'fp', 'id', 'st', 'msg', 'ts')
if rec[1] then
  if rec[1] ~= ARGV[1] then
    return {'mismatch'}
  end
  return {'replay', rec[2], rec[3], rec[4], rec[5]}
end
if redis.call('EXISTS', KEYS[2]) == 1 then
  return {'collision'}
end
-- The first write is the only one that can be refused for memory (Redis
-- checks OOM when a script first writes), so a refusal leaves nothing behind.
redis.call('HSET', KEYS[2],
  'id', ARGV[4], 'st', ARGV[5], 'msg', ARGV[6], 'ts', ARGV[7],
  'amt', ARGV[8], 'cur', ARGV[9], 'ord', ARGV[10], 'ik', ARGV[11], 'md', ARGV[12])
if tonumber(ARGV[3]) > 0 then
  redis.call('PEXPIRE', KEYS[2], ARGV[3])
end
redis.call('HSET', KEYS[1],
  'fp', ARGV[1], 'id', ARGV[4], 'st', ARGV[5], 'msg', ARGV[6], 'ts', ARGV[7])
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return {'created'}
