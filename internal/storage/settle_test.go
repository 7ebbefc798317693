package storage

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/payments-svc/payments-svc/internal/payments"
)

// created stores one pending payment and returns it.
func created(t *testing.T, repo *Repository) payments.Payment {
	t.Helper()
	req := request("k1")
	p := payments.New(req, t0)
	if _, _, err := repo.Create(context.Background(), p, payments.Fingerprint(req)); err != nil {
		t.Fatalf("Create() error = %v", err)
	}
	return p
}

func settlement(p payments.Payment, st payments.Status) payments.Settlement {
	s := payments.Settlement{PaymentID: p.ID, Status: st, AmountMinor: p.AmountMinor, Currency: p.Currency, OccurredAt: t0.Add(time.Minute)}
	if st == payments.StatusFailed {
		s.FailureReason = "card_declined"
	}
	return s
}

func TestApplyEvent(t *testing.T) {
	type step struct {
		eventID, bodyHash string
		status            payments.Status
		modify            func(*payments.Settlement)
		want              payments.SettleOutcome
		wantErr           error
	}
	tests := []struct {
		name        string
		steps       []step
		wantStatus  payments.Status
		wantMessage string
	}{
		{
			name:        "fresh success",
			steps:       []step{{eventID: "e1", bodyHash: "h1", status: payments.StatusSucceeded, want: payments.SettleApplied}},
			wantStatus:  payments.StatusSucceeded,
			wantMessage: "payment of USD 12.34 for order order-1 succeeded",
		},
		{
			name:        "fresh failure carries the reason",
			steps:       []step{{eventID: "e1", bodyHash: "h1", status: payments.StatusFailed, want: payments.SettleApplied}},
			wantStatus:  payments.StatusFailed,
			wantMessage: "payment of USD 12.34 for order order-1 failed: card_declined",
		},
		{
			name: "redelivery is a duplicate",
			steps: []step{
				{eventID: "e1", bodyHash: "h1", status: payments.StatusSucceeded, want: payments.SettleApplied},
				{eventID: "e1", bodyHash: "h1", status: payments.StatusSucceeded, want: payments.SettleDuplicate},
			},
			wantStatus: payments.StatusSucceeded, wantMessage: "payment of USD 12.34 for order order-1 succeeded",
		},
		{
			name: "same id with another body conflicts",
			steps: []step{
				{eventID: "e1", bodyHash: "h1", status: payments.StatusSucceeded, want: payments.SettleApplied},
				{eventID: "e1", bodyHash: "h2", status: payments.StatusSucceeded, wantErr: payments.ErrEventConflict},
			},
			wantStatus: payments.StatusSucceeded, wantMessage: "payment of USD 12.34 for order order-1 succeeded",
		},
		{
			name: "another event repeating the settlement",
			steps: []step{
				{eventID: "e1", bodyHash: "h1", status: payments.StatusSucceeded, want: payments.SettleApplied},
				{eventID: "e2", bodyHash: "h2", status: payments.StatusSucceeded, want: payments.SettleAlreadySettled},
				{eventID: "e2", bodyHash: "h2", status: payments.StatusSucceeded, want: payments.SettleDuplicate},
			},
			wantStatus: payments.StatusSucceeded, wantMessage: "payment of USD 12.34 for order order-1 succeeded",
		},
		{
			name: "another event contradicting the settlement",
			steps: []step{
				{eventID: "e1", bodyHash: "h1", status: payments.StatusSucceeded, want: payments.SettleApplied},
				{eventID: "e2", bodyHash: "h2", status: payments.StatusFailed, wantErr: payments.ErrSettlementConflict},
			},
			wantStatus: payments.StatusSucceeded, wantMessage: "payment of USD 12.34 for order order-1 succeeded",
		},
		{
			name: "amount mismatch changes nothing and does not use the id",
			steps: []step{
				{eventID: "e1", bodyHash: "h1", status: payments.StatusSucceeded, modify: func(s *payments.Settlement) { s.AmountMinor++ }, wantErr: payments.ErrAmountMismatch},
				{eventID: "e1", bodyHash: "h2", status: payments.StatusSucceeded, modify: func(s *payments.Settlement) { s.Currency = "EUR" }, wantErr: payments.ErrAmountMismatch},
				{eventID: "e1", bodyHash: "h3", status: payments.StatusSucceeded, want: payments.SettleApplied},
			},
			wantStatus: payments.StatusSucceeded, wantMessage: "payment of USD 12.34 for order order-1 succeeded",
		},
		{
			name: "unknown payment",
			steps: []step{
				{eventID: "e1", bodyHash: "h1", status: payments.StatusSucceeded, modify: func(s *payments.Settlement) { s.PaymentID = payments.NewID("m_test", "k1", t0.Add(time.Hour)) }, wantErr: payments.ErrNotFound},
			},
			wantStatus: payments.StatusPending, wantMessage: "payment of USD 12.34 for order order-1 accepted; awaiting provider confirmation",
		},
		{
			name: "malformed payment id",
			steps: []step{
				{eventID: "e1", bodyHash: "h1", status: payments.StatusSucceeded, modify: func(s *payments.Settlement) { s.PaymentID = "nope" }, wantErr: payments.ErrMalformedID},
			},
			wantStatus: payments.StatusPending, wantMessage: "payment of USD 12.34 for order order-1 accepted; awaiting provider confirmation",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			repo, _ := newRepo(t, testOptions)
			ctx := context.Background()
			p := created(t, repo)
			for i, s := range tt.steps {
				set := settlement(p, s.status)
				if s.modify != nil {
					s.modify(&set)
				}
				got, err := repo.ApplyEvent(ctx, s.eventID, s.bodyHash, set)
				if !errors.Is(err, s.wantErr) || got != s.want {
					t.Fatalf("step %d: ApplyEvent() = %q, %v, want %q, %v", i, got, err, s.want, s.wantErr)
				}
			}
			stored, err := repo.Get(ctx, "m_test", p.ID)
			if err != nil {
				t.Fatalf("Get() error = %v", err)
			}
			if stored.Status != tt.wantStatus || stored.Message != tt.wantMessage {
				t.Errorf("stored = %v %q, want %v %q", stored.Status, stored.Message, tt.wantStatus, tt.wantMessage)
			}
			// Settlement never touches the original receipt.
			rc, outcome, err := repo.Create(ctx, payments.New(request("k1"), t0.Add(time.Hour)), payments.Fingerprint(request("k1")))
			if err != nil || outcome != payments.OutcomeReplayed {
				t.Fatalf("replay after settlement = %v, %v", outcome, err)
			}
			if diff := cmp.Diff(p.Receipt(), rc); diff != "" {
				t.Errorf("replay after settlement changed the receipt (-want +got):\n%s", diff)
			}
		})
	}
}

func TestApplyEventKeysShareTheSlot(t *testing.T) {
	repo, mr := newRepo(t, testOptions)
	p := created(t, repo)
	if _, err := repo.ApplyEvent(context.Background(), "evt-1", "h", settlement(p, payments.StatusSucceeded)); err != nil {
		t.Fatal(err)
	}
	tag := "{" + payments.HashTag("m_test", "k1") + "}"
	for _, k := range mr.Keys() {
		if k[len(keyPrefix):len(keyPrefix)+len(tag)] != tag {
			t.Errorf("key %q does not carry the payment's hash tag %s", k, tag)
		}
	}
	if ttl := mr.TTL(EventKey(payments.HashTag("m_test", "k1"), "evt-1")); ttl != testOptions.IdempotencyTTL {
		t.Errorf("event record TTL = %s, want the idempotency TTL %s", ttl, testOptions.IdempotencyTTL)
	}
}

func TestApplyEventConcurrentDeliveries(t *testing.T) {
	repo, _ := newRepo(t, testOptions)
	p := created(t, repo)
	const deliveries = 50
	var wg sync.WaitGroup
	outcomes := make([]payments.SettleOutcome, deliveries)
	errs := make([]error, deliveries)
	for i := range deliveries {
		wg.Go(func() {
			outcomes[i], errs[i] = repo.ApplyEvent(context.Background(), "evt-1", "h1", settlement(p, payments.StatusSucceeded))
		})
	}
	wg.Wait()
	applied := 0
	for i := range deliveries {
		if errs[i] != nil {
			t.Fatalf("delivery %d error = %v", i, errs[i])
		}
		if outcomes[i] == payments.SettleApplied {
			applied++
		} else if outcomes[i] != payments.SettleDuplicate {
			t.Errorf("delivery %d outcome = %q, want applied or duplicate", i, outcomes[i])
		}
	}
	if applied != 1 {
		t.Errorf("applied outcomes = %d, want exactly 1", applied)
	}
}
