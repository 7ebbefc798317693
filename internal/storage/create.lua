-- Create a payment unless its idempotency key is already taken. Atomic: Redis
-- runs the whole script before any other command, so there is no window
-- between the check and the write, whatever the number of callers or replicas.
--
-- KEYS[1] idempotency record   pmt:v2:{tag}:idem:<merchant>:<sha256(key)>
-- KEYS[2] payment record       pmt:v2:{tag}:pay:<payment_id>
-- ARGV[1] request fingerprint
-- ARGV[2] idempotency TTL, milliseconds
-- ARGV[3] payment TTL, milliseconds (0 keeps it forever)
-- ARGV[4..12] payment_id, status, message, created_at (unix ns), amount_minor,
--           currency, order_id, idempotency_key, metadata (JSON)
-- ARGV[13]  "1" when the caller sends WAIT after this script on the same
--           connection (replica acknowledgements on), else "0"
-- ARGV[14]  merchant id, the owner GetPayment checks
--
-- Returns {"created"}, {"replay", id, status, message, created_at},
-- {"mismatch"} or {"collision"} (a payment_id already in use; the caller
-- retries with a fresh id).

-- WAIT waits for the replication offset of this connection's last write. A
-- replay writes nothing, so its WAIT would vouch for whatever this connection
-- wrote before, not for the record it returns, which another connection may
-- have written and whose own WAIT may have fallen short. Setting the record's
-- expiry to the absolute time it already has changes nothing, but it is a
-- write and is propagated: a replica that acknowledges it holds everything
-- written before it, the record included. PEXPIREAT is never refused for
-- memory, so replays keep working when Redis is full. With acknowledgements
-- off the replay stays read-only.
local function touch(key)
  local at = redis.call('PEXPIRETIME', key)
  if at > 0 then
    redis.call('PEXPIREAT', key, at)
  end
end

local rec = redis.call('HMGET', KEYS[1], 'fp', 'id', 'st', 'msg', 'ts')
if rec[1] then
  if rec[1] ~= ARGV[1] then
    return {'mismatch'}
  end
  if ARGV[13] == '1' then
    touch(KEYS[1])
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
  'amt', ARGV[8], 'cur', ARGV[9], 'ord', ARGV[10], 'ik', ARGV[11], 'md', ARGV[12],
  'mer', ARGV[14])
if tonumber(ARGV[3]) > 0 then
  redis.call('PEXPIRE', KEYS[2], ARGV[3])
end
redis.call('HSET', KEYS[1],
  'fp', ARGV[1], 'id', ARGV[4], 'st', ARGV[5], 'msg', ARGV[6], 'ts', ARGV[7])
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return {'created'}
