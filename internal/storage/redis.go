// Package storage owns the persistence of payments-svc in Redis: the key
// layout, the Lua scripts that make creation atomic, and the translation of
// Redis failures into the payments error vocabulary. It works the same on a
// single node, behind Sentinel, and on Redis Cluster, because every key one
// script touches carries the same hash tag.
package storage

import (
	"context"
	_ "embed"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/payments-svc/payments-svc/internal/payments"
)

var (
	//go:embed create.lua
	createSource string
	//go:embed settle.lua
	settleSource string
)

// The scripts are shared by every Repository: they run by EVALSHA, falling
// back to EVAL (which also caches them) when the server answers NOSCRIPT, as
// it does after a restart or failover.
var (
	createScript = redis.NewScript(createSource)
	settleScript = redis.NewScript(settleSource)
)

// keyPrefix namespaces every key of the service and versions the layout.
// Version 3 keeps the idempotency record as one string and derives the
// message instead of storing it; the layouts before it ("pmt:v2:…",
// "pmt:{tag}:…") are never read, see ARCHITECTURE.md.
const keyPrefix = "pmt:v3:"

// ErrNoMerchant means a caller reached storage without an authenticated
// merchant, which the transport must never let happen.
var ErrNoMerchant = errors.New("no merchant: idempotency is scoped to the authenticated merchant")

// AckCommand names the command that confirms a write reached the replicas.
type AckCommand string

const (
	// AckWait is WAIT: the replicas received the write.
	AckWait AckCommand = "wait"
	// AckWaitAOF is WAITAOF 1 <n>: the primary and n replicas fsynced the
	// write to their append-only files. It needs Redis 7.2 or later with
	// appendonly yes.
	AckWaitAOF AckCommand = "waitaof"
)

// ErrAckUnsupported means Redis refused the acknowledgement command, which
// retrying cannot fix.
var ErrAckUnsupported = errors.New("redis refused WAITAOF: it needs Redis 7.2 or later with appendonly yes")

// Observer is told when fewer replicas acknowledged a write than required.
type Observer interface {
	ObserveReplicaAckShortfall()
}

// Options tunes retention and durability.
type Options struct {
	// IdempotencyTTL is how long a key is remembered; after it the same key
	// creates a new payment.
	IdempotencyTTL time.Duration
	// PaymentTTL is how long payment records are kept; 0 keeps them forever.
	PaymentTTL time.Duration
	// MinReplicaAcks is how many replicas must acknowledge a create or a
	// settlement, within AckTimeout, before it is answered; 0 answers at once.
	MinReplicaAcks int
	// AckTimeout bounds the wait for acknowledgements. It must be at least
	// 1ms when MinReplicaAcks is set: WAIT 0 waits forever.
	AckTimeout time.Duration
	// AckCommand is the acknowledgement command; empty means AckWait.
	AckCommand AckCommand
	// Observer, if not nil, counts acknowledgement shortfalls.
	Observer Observer
}

// Repository stores payments and idempotency records in Redis.
type Repository struct {
	client redis.UniversalClient
	opts   Options
}

// New returns a Repository on an existing client. The caller owns the client.
func New(client redis.UniversalClient, opts Options) *Repository {
	return &Repository{client: client, opts: opts}
}

// acks reports whether writes wait for replica acknowledgements.
func (r *Repository) acks() bool { return r.opts.MinReplicaAcks > 0 }

// ackFlag is the scripts' last argument: "1" makes their read-only answers
// write, so the WAIT that follows covers the records they return.
func (r *Repository) ackFlag() string {
	if r.acks() {
		return "1"
	}
	return "0"
}

// IdempotencyKey is the Redis key of the idempotency record for a merchant's
// key. Merchant ids are operator-issued and restricted to [A-Za-z0-9_-], so
// they appear as they are; the client's key is hashed so its length and
// characters never matter.
func IdempotencyKey(merchantID, idempotencyKey string) string {
	return idempotencyRecordKey(payments.HashTag(merchantID, idempotencyKey), merchantID, idempotencyKey)
}

// idempotencyRecordKey is IdempotencyKey for a caller that already holds the
// tag, so the create path hashes the client's key for its tag only once.
func idempotencyRecordKey(tag, merchantID, idempotencyKey string) string {
	return keyPrefix + "{" + tag + "}:idem:" + merchantID + ":" + payments.Digest(idempotencyKey)
}

// PaymentKey is the Redis key of a payment record. tag comes from
// payments.ParseID or payments.HashTag.
func PaymentKey(tag, paymentID string) string {
	return keyPrefix + "{" + tag + "}:pay:" + paymentID
}

// EventKey is the Redis key of a provider event record. It carries the tag
// of the payment the event is about, so the settlement script touches one
// slot. The event id is hashed like the idempotency key.
func EventKey(tag, eventID string) string {
	return keyPrefix + "{" + tag + "}:evt:" + payments.Digest(eventID)
}

// LoadScripts caches the Lua scripts on the server ahead of the first call.
// It is an optimisation only: a missing script is loaded on first use.
func (r *Repository) LoadScripts(ctx context.Context) error {
	for _, s := range []*redis.Script{createScript, settleScript} {
		if err := s.Load(ctx, r.client).Err(); err != nil {
			return classify("load scripts", err)
		}
	}
	return nil
}

// CheckAcks asks Redis once whether it accepts the acknowledgement command,
// so a Redis that cannot honour WAITAOF is found at start-up rather than on
// the first payment. An error wrapping ErrAckUnsupported means Redis answered
// and refused; any other error means it did not answer. WAIT needs no check:
// every Redis has it.
func (r *Repository) CheckAcks(ctx context.Context) error {
	if !r.acks() || r.opts.AckCommand != AckWaitAOF {
		return nil
	}
	// WAITAOF 1 0 asks only for the primary's own fsync. A connection that
	// has written nothing has nothing to wait for, so this returns at once
	// where WAITAOF works.
	args := []any{"waitaof", 1, 0, r.opts.AckTimeout.Milliseconds()}
	var err error
	if cc, ok := r.client.(*redis.ClusterClient); ok {
		err = cc.ForEachMaster(ctx, func(ctx context.Context, node *redis.Client) error {
			return node.Do(ctx, args...).Err()
		})
	} else {
		err = r.client.Do(ctx, args...).Err()
	}
	if err != nil {
		return ackError("check acknowledgement command", err)
	}
	return nil
}

// Ping reports whether Redis answers.
func (r *Repository) Ping(ctx context.Context) error {
	if err := r.client.Ping(ctx).Err(); err != nil {
		return classify("ping", err)
	}
	return nil
}

// maxIDAttempts bounds the retries after a payment_id collision, which needs
// two ULIDs to collide in the same millisecond and slot: it never happens in
// practice, but if it did the payment must not overwrite another.
const maxIDAttempts = 3

// Create stores p under its idempotency key in one round trip, unless the key
// is taken. For a taken key it returns the stored receipt (OutcomeReplayed)
// when the fingerprint matches, and payments.ErrIdempotencyKeyReused
// (OutcomeMismatch) when it does not.
func (r *Repository) Create(ctx context.Context, p payments.Payment, fingerprint string) (payments.Receipt, payments.Outcome, error) {
	if p.MerchantID == "" {
		return payments.Receipt{}, "", fmt.Errorf("create payment: %w", ErrNoMerchant)
	}
	if len(fingerprint) != fingerprintLen {
		return payments.Receipt{}, "", fmt.Errorf("create payment: fingerprint of %d characters, want %d", len(fingerprint), fingerprintLen)
	}
	md := ""
	if len(p.Metadata) > 0 {
		b, err := json.Marshal(p.Metadata)
		if err != nil {
			return payments.Receipt{}, "", fmt.Errorf("encode metadata: %w", err)
		}
		md = string(b)
	}
	tag := payments.HashTag(p.MerchantID, p.IdempotencyKey)
	idemKey := idempotencyRecordKey(tag, p.MerchantID, p.IdempotencyKey)

	for range maxIDAttempts {
		createdAt := strconv.FormatInt(p.CreatedAt.UnixNano(), 10)
		res, err := r.run(ctx, "create payment", createScript, createAcknowledges,
			[]string{idemKey, PaymentKey(tag, p.ID)},
			fingerprint+":"+p.ID+":"+createdAt,
			r.opts.IdempotencyTTL.Milliseconds(),
			r.opts.PaymentTTL.Milliseconds(),
			r.ackFlag(),
			// The payment hash. Its id is in its key and its message is
			// derived (payments.Message): neither is stored.
			"st", int(p.Status),
			"ts", createdAt,
			"amt", p.AmountMinor,
			"cur", p.Currency,
			"ord", p.OrderID,
			"ik", p.IdempotencyKey,
			"md", md,
			"mer", p.MerchantID,
		)
		if err != nil {
			return payments.Receipt{}, "", err
		}
		switch {
		case len(res) == 1 && res[0] == "created":
			return p.Receipt(), payments.OutcomeCreated, nil
		case len(res) == 1 && res[0] == "mismatch":
			return payments.Receipt{}, payments.OutcomeMismatch, payments.ErrIdempotencyKeyReused
		case len(res) == 2 && res[0] == "replay":
			_, rc, err := decodeIdempotencyRecord(res[1], p.IdempotencyKey, p.Message)
			if err != nil {
				return payments.Receipt{}, "", err
			}
			return rc, payments.OutcomeReplayed, nil
		case len(res) == 1 && res[0] == "collision":
			p.ID = payments.NewID(p.MerchantID, p.IdempotencyKey, p.CreatedAt)
		default:
			return payments.Receipt{}, "", fmt.Errorf("create payment: unexpected script reply %q", res)
		}
	}
	return payments.Receipt{}, "", fmt.Errorf("create payment: payment_id collided %d times", maxIDAttempts)
}

// fingerprintLen is the length of payments.Fingerprint, which create.lua
// compares as the first characters of the idempotency record.
const fingerprintLen = 64

// RecordPaymentID is the payment_id an idempotency record (the string stored
// at IdempotencyKey) points at, for tools and tests that read Redis directly.
func RecordPaymentID(rec string) (string, error) {
	_, rc, err := decodeIdempotencyRecord(rec, "", "")
	return rc.PaymentID, err
}

// decodeIdempotencyRecord splits "<fingerprint>:<payment_id>:<created_at>"
// into the fingerprint and the receipt of the creating call. That call made a
// pending payment with the message of its request, and a replay carries the
// same request (the fingerprints match), so message is the replay's own.
func decodeIdempotencyRecord(rec, key, message string) (string, payments.Receipt, error) {
	fp, rest, ok1 := strings.Cut(rec, ":")
	id, ts, ok2 := strings.Cut(rest, ":")
	if !ok1 || !ok2 || len(fp) != fingerprintLen {
		return "", payments.Receipt{}, fmt.Errorf("decode idempotency record %q: want <fingerprint>:<payment_id>:<created_at>", rec)
	}
	createdAt, err := strconv.ParseInt(ts, 10, 64)
	if err != nil {
		return "", payments.Receipt{}, fmt.Errorf("decode stored created_at %q: %w", ts, err)
	}
	return fp, payments.Receipt{
		PaymentID:      id,
		Status:         payments.StatusPending,
		Message:        message,
		IdempotencyKey: key,
		CreatedAt:      time.Unix(0, createdAt).UTC(),
	}, nil
}

// createAcknowledges reports whether a create.lua reply confirms a stored
// payment; a mismatch or a collision confirms nothing.
func createAcknowledges(reply []string) bool {
	return len(reply) > 0 && (reply[0] == "created" || reply[0] == "replay")
}

// Get returns the merchant's payment with the given id,
// payments.ErrMalformedID for something that is not a payment_id, or
// payments.ErrNotFound. Another merchant's payment is ErrNotFound too, with
// the same message, so the answer never tells whether the id exists.
func (r *Repository) Get(ctx context.Context, merchantID, id string) (payments.Payment, error) {
	tag, err := payments.ParseID(id)
	if err != nil {
		return payments.Payment{}, err
	}
	if merchantID == "" {
		return payments.Payment{}, fmt.Errorf("get payment: %w", ErrNoMerchant)
	}
	fields, err := r.client.HGetAll(ctx, PaymentKey(tag, id)).Result()
	if err != nil {
		return payments.Payment{}, classify("get payment", err)
	}
	if len(fields) == 0 || fields["mer"] != merchantID {
		return payments.Payment{}, fmt.Errorf("%w: %s", payments.ErrNotFound, id)
	}
	return decodePayment(id, fields)
}

// Replay answers req from its idempotency record without
// writing: the receipt (OutcomeReplayed) when the record holds this request,
// payments.ErrIdempotencyKeyReused (OutcomeMismatch) when it holds another,
// and payments.ErrNotFound when there is none. It serves a retry whose
// creation quota is spent, so a client that lost a response always gets its
// payment back.
func (r *Repository) Replay(ctx context.Context, req payments.Request, fingerprint string) (payments.Receipt, payments.Outcome, error) {
	if req.MerchantID == "" {
		return payments.Receipt{}, "", fmt.Errorf("replay payment: %w", ErrNoMerchant)
	}
	rec, err := r.client.Get(ctx, IdempotencyKey(req.MerchantID, req.IdempotencyKey)).Result()
	if errors.Is(err, redis.Nil) {
		return payments.Receipt{}, "", fmt.Errorf("replay payment: %w", payments.ErrNotFound)
	}
	if err != nil {
		return payments.Receipt{}, "", classify("replay payment", err)
	}
	fp, rc, err := decodeIdempotencyRecord(rec, req.IdempotencyKey, payments.PendingMessage(req.AmountMinor, req.Currency, req.OrderID))
	if err != nil {
		return payments.Receipt{}, "", err
	}
	if fp != fingerprint {
		return payments.Receipt{}, payments.OutcomeMismatch, payments.ErrIdempotencyKeyReused
	}
	return rc, payments.OutcomeReplayed, nil
}

// ApplyEvent settles a payment from a provider event, once per event id, in
// one atomic round trip. bodyHash identifies the event's content, so a
// redelivery is told apart from a different event reusing the id. Records of
// events are kept for the idempotency TTL; a redelivery after that finds the
// payment settled and is answered SettleAlreadySettled, still harmless.
func (r *Repository) ApplyEvent(ctx context.Context, eventID, bodyHash string, s payments.Settlement) (payments.SettleOutcome, error) {
	tag, err := payments.ParseID(s.PaymentID)
	if err != nil {
		return "", err
	}
	res, err := r.run(ctx, "apply event", settleScript, settleAcknowledges,
		[]string{PaymentKey(tag, s.PaymentID), EventKey(tag, eventID)},
		bodyHash,
		int(s.Status),
		r.opts.IdempotencyTTL.Milliseconds(),
		s.AmountMinor,
		s.Currency,
		s.OccurredAt.UnixNano(),
		s.FailureReason,
		r.ackFlag(),
	)
	if err != nil {
		return "", err
	}
	if len(res) != 1 {
		return "", fmt.Errorf("apply event: unexpected script reply %q", res)
	}
	return settleOutcome(res[0], s.PaymentID)
}

// settleAcknowledges reports whether a settle.lua reply is an outcome, which
// tells the provider to stop redelivering; refusals confirm nothing.
func settleAcknowledges(reply []string) bool {
	return len(reply) == 1 && (reply[0] == "applied" || reply[0] == "duplicate" || reply[0] == "already_settled")
}

func settleOutcome(reply, paymentID string) (payments.SettleOutcome, error) {
	switch reply {
	case "applied":
		return payments.SettleApplied, nil
	case "duplicate":
		return payments.SettleDuplicate, nil
	case "already_settled":
		return payments.SettleAlreadySettled, nil
	case "event_conflict":
		return "", payments.ErrEventConflict
	case "unknown_payment":
		return "", fmt.Errorf("%w: %s", payments.ErrNotFound, paymentID)
	case "amount_mismatch":
		return "", payments.ErrAmountMismatch
	case "settlement_conflict":
		return "", payments.ErrSettlementConflict
	default:
		return "", fmt.Errorf("apply event: unexpected script reply %q", reply)
	}
}

func decodePayment(id string, f map[string]string) (payments.Payment, error) {
	st, err := strconv.Atoi(f["st"])
	if err != nil {
		return payments.Payment{}, fmt.Errorf("decode stored status %q: %w", f["st"], err)
	}
	ts, err := strconv.ParseInt(f["ts"], 10, 64)
	if err != nil {
		return payments.Payment{}, fmt.Errorf("decode stored created_at %q: %w", f["ts"], err)
	}
	amount, err := strconv.ParseInt(f["amt"], 10, 64)
	if err != nil {
		return payments.Payment{}, fmt.Errorf("decode stored amount %q: %w", f["amt"], err)
	}
	var md map[string]string
	if f["md"] != "" {
		if err := json.Unmarshal([]byte(f["md"]), &md); err != nil {
			return payments.Payment{}, fmt.Errorf("decode stored metadata: %w", err)
		}
	}
	status := payments.Status(st)
	return payments.Payment{
		ID:             id,
		MerchantID:     f["mer"],
		Status:         status,
		AmountMinor:    amount,
		Currency:       f["cur"],
		OrderID:        f["ord"],
		IdempotencyKey: f["ik"],
		Message:        payments.Message(status, amount, f["cur"], f["ord"], f["fr"]),
		CreatedAt:      time.Unix(0, ts).UTC(),
		Metadata:       md,
	}, nil
}

// transientReplies are Redis error replies that mean "not now" rather than
// "never": the node is loading, failing over, or out of memory.
var transientReplies = []string{"LOADING", "READONLY", "MASTERDOWN", "CLUSTERDOWN", "TRYAGAIN", "BUSY", "NOREPLICAS", "OOM"}

// classify wraps a Redis failure for the layers above. Context errors pass
// through as they are; connection failures, timeouts and transient replies
// become payments.ErrUnavailable; any other error reply is a bug and stays
// opaque.
func classify(op string, err error) error {
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return fmt.Errorf("%s: %w", op, err)
	}
	var reply redis.Error
	if errors.As(err, &reply) && !errors.Is(err, redis.ErrClosed) {
		msg := err.Error()
		for _, prefix := range transientReplies {
			if strings.HasPrefix(msg, prefix) {
				return fmt.Errorf("%s: %w: %w", op, payments.ErrUnavailable, err)
			}
		}
		return fmt.Errorf("%s: %w", op, err)
	}
	return fmt.Errorf("%s: %w: %w", op, payments.ErrUnavailable, err)
}
