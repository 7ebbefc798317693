-- Create a payment unless its idempotency key is already taken. Atomic: Redis
-- runs the whole script before any other command, so there is no window
-- between the check and the write, whatever the number of callers or replicas.
--
-- KEYS[1] idempotency record   pmt:v3:{tag}:idem:<merchant>:<sha256(key)>, a string
-- KEYS[2] payment record       pmt:v3:{tag}:pay:<payment_id>, a hash
-- ARGV[1] the idempotency record: <fingerprint, 64 hex>:<payment_id>:<created_at, unix ns>
-- ARGV[2] idempotency TTL, milliseconds
-- ARGV[3] payment TTL, milliseconds (0 keeps it forever)
-- ARGV[4] "1" when the caller sends WAIT after this script on the same
--         connection (replica acknowledgements on), else "0"
-- ARGV[5..] the payment's field/value pairs (internal/storage encodes them)
--
-- Returns {"created"}, {"replay", <idempotency record>}, {"mismatch"} or
-- {"collision"} (a payment_id already in use; the caller retries with a fresh
-- id).

local rec = redis.call('GET', KEYS[1])
if rec then
  if string.sub(rec, 1, 64) ~= string.sub(ARGV[1], 1, 64) then
    return {'mismatch'}
  end
  -- WAIT waits for the replication offset of this connection's last write.
  -- A replay writes nothing, so its WAIT would vouch for whatever this
  -- connection wrote before, not for the record it returns, which another
  -- connection may have written and whose own WAIT may have fallen short.
  -- Setting the record's expiry to the absolute time it already has changes
  -- nothing, but it is a write and is propagated: a replica that
  -- acknowledges it holds everything written before it, the record
  -- included. PEXPIREAT is never refused for memory, so replays keep working
  -- when Redis is full. With acknowledgements off the replay stays read-only.
  if ARGV[4] == '1' then
    local at = redis.call('PEXPIRETIME', KEYS[1])
    if at > 0 then
      redis.call('PEXPIREAT', KEYS[1], at)
    end
  end
  return {'replay', rec}
end
if redis.call('EXISTS', KEYS[2]) == 1 then
  return {'collision'}
end
-- The first write is the only one that can be refused for memory (Redis
-- checks OOM when a script first writes), so a refusal leaves nothing behind.
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
redis.call('HSET', KEYS[2], unpack(ARGV, 5))
if tonumber(ARGV[3]) > 0 then
  redis.call('PEXPIRE', KEYS[2], ARGV[3])
end
return {'created'}
