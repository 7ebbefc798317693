package payments

import (
	"errors"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func validRequest() Request {
	return Request{
		AmountMinor:    1234,
		Currency:       "USD",
		OrderID:        "order-42",
		IdempotencyKey: "7f1c0e52-3c1e-4d0c-9a43-3a8a3c1f2b10",
		Metadata:       map[string]string{"cart": "3 items"},
	}
}

func manyMetadata(n int) map[string]string {
	md := make(map[string]string, n)
	for i := range n {
		md[strings.Repeat("k", 1+i%30)+string(rune('a'+i%26))+string(rune('A'+i/26))] = "v"
	}
	return md
}

func TestValidate(t *testing.T) {
	tests := []struct {
		name   string
		modify func(*Request)
		want   []string // "field/REASON" of each violation, in order
	}{
		{name: "valid", modify: func(*Request) {}},
		{name: "valid without metadata", modify: func(r *Request) { r.Metadata = nil }},
		{name: "valid at upper amount bound", modify: func(r *Request) { r.AmountMinor = MaxAmountMinor }},
		{name: "valid zero-decimal currency", modify: func(r *Request) { r.Currency = "JPY" }},
		{name: "valid three-decimal currency", modify: func(r *Request) { r.Currency = "BHD" }},
		{name: "valid key at max length", modify: func(r *Request) { r.IdempotencyKey = strings.Repeat("k", 255) }},
		{name: "valid unicode order id at max length", modify: func(r *Request) { r.OrderID = strings.Repeat("é", MaxOrderIDLen) }},
		{name: "valid 50 metadata entries", modify: func(r *Request) { r.Metadata = manyMetadata(50) }},
		{name: "zero amount", modify: func(r *Request) { r.AmountMinor = 0 }, want: []string{"amount_minor/OUT_OF_RANGE"}},
		{name: "negative amount", modify: func(r *Request) { r.AmountMinor = -1 }, want: []string{"amount_minor/OUT_OF_RANGE"}},
		{name: "amount above bound", modify: func(r *Request) { r.AmountMinor = MaxAmountMinor + 1 }, want: []string{"amount_minor/OUT_OF_RANGE"}},
		{name: "missing currency", modify: func(r *Request) { r.Currency = "" }, want: []string{"currency/REQUIRED"}},
		{name: "lower-case currency", modify: func(r *Request) { r.Currency = "usd" }, want: []string{"currency/INVALID_FORMAT"}},
		{name: "two-letter currency", modify: func(r *Request) { r.Currency = "US" }, want: []string{"currency/INVALID_FORMAT"}},
		{name: "padded currency", modify: func(r *Request) { r.Currency = " USD" }, want: []string{"currency/INVALID_FORMAT"}},
		{name: "unknown currency", modify: func(r *Request) { r.Currency = "ABC" }, want: []string{"currency/UNSUPPORTED_VALUE"}},
		{name: "test currency", modify: func(r *Request) { r.Currency = "XTS" }, want: []string{"currency/UNSUPPORTED_VALUE"}},
		{name: "no-currency code", modify: func(r *Request) { r.Currency = "XXX" }, want: []string{"currency/UNSUPPORTED_VALUE"}},
		{name: "gold", modify: func(r *Request) { r.Currency = "XAU" }, want: []string{"currency/UNSUPPORTED_VALUE"}},
		{name: "fund code", modify: func(r *Request) { r.Currency = "USN" }, want: []string{"currency/UNSUPPORTED_VALUE"}},
		{name: "withdrawn code", modify: func(r *Request) { r.Currency = "HRK" }, want: []string{"currency/UNSUPPORTED_VALUE"}},
		{name: "missing order id", modify: func(r *Request) { r.OrderID = "" }, want: []string{"order_id/REQUIRED"}},
		{name: "long order id", modify: func(r *Request) { r.OrderID = strings.Repeat("o", MaxOrderIDLen+1) }, want: []string{"order_id/TOO_LONG"}},
		{name: "order id with newline", modify: func(r *Request) { r.OrderID = "a\nb" }, want: []string{"order_id/INVALID_FORMAT"}},
		{name: "order id with invalid utf-8", modify: func(r *Request) { r.OrderID = "a\xffb" }, want: []string{"order_id/INVALID_FORMAT"}},
		{name: "missing key", modify: func(r *Request) { r.IdempotencyKey = "" }, want: []string{"idempotency_key/REQUIRED"}},
		{name: "long key", modify: func(r *Request) { r.IdempotencyKey = strings.Repeat("k", 256) }, want: []string{"idempotency_key/TOO_LONG"}},
		{name: "key with tab", modify: func(r *Request) { r.IdempotencyKey = "a\tb" }, want: []string{"idempotency_key/INVALID_FORMAT"}},
		{name: "non-ascii key", modify: func(r *Request) { r.IdempotencyKey = "clé" }, want: []string{"idempotency_key/INVALID_FORMAT"}},
		{name: "too many metadata entries", modify: func(r *Request) { r.Metadata = manyMetadata(51) }, want: []string{"metadata/TOO_MANY_ENTRIES"}},
		{name: "empty metadata key", modify: func(r *Request) { r.Metadata = map[string]string{"": "v"} }, want: []string{`metadata[""]/INVALID_FORMAT`}},
		{name: "long metadata key", modify: func(r *Request) { r.Metadata = map[string]string{strings.Repeat("k", 41): "v"} }, want: []string{`metadata["` + strings.Repeat("k", 41) + `"]/TOO_LONG`}},
		{name: "metadata key with control", modify: func(r *Request) { r.Metadata = map[string]string{"a\x00": "v"} }, want: []string{`metadata["a\x00"]/INVALID_FORMAT`}},
		{name: "long metadata value", modify: func(r *Request) { r.Metadata = map[string]string{"k": strings.Repeat("v", 501)} }, want: []string{`metadata["k"]/TOO_LONG`}},
		{
			name: "every field bad at once",
			modify: func(r *Request) {
				*r = Request{AmountMinor: -5, Currency: "usd", Metadata: map[string]string{"b": strings.Repeat("v", 501), "a": strings.Repeat("v", 501)}}
			},
			want: []string{
				"amount_minor/OUT_OF_RANGE", "currency/INVALID_FORMAT", "order_id/REQUIRED",
				"idempotency_key/REQUIRED", `metadata["a"]/TOO_LONG`, `metadata["b"]/TOO_LONG`,
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req := validRequest()
			tt.modify(&req)
			err := Validate(req)
			var got []string
			if err != nil {
				var verr *ValidationError
				if !errors.As(err, &verr) {
					t.Fatalf("Validate() error type = %T, want *ValidationError", err)
				}
				for _, v := range verr.Violations {
					if v.Description == "" {
						t.Errorf("violation %s has no description", v.Field)
					}
					got = append(got, v.Field+"/"+v.Reason)
				}
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("Validate() violations mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

func TestValidationErrorMessageNamesEveryField(t *testing.T) {
	err := Validate(Request{})
	for _, field := range []string{"amount_minor", "currency", "order_id", "idempotency_key"} {
		if !strings.Contains(err.Error(), field) {
			t.Errorf("Validate(empty).Error() = %q, want it to name %s", err, field)
		}
	}
}

func TestFormatAmount(t *testing.T) {
	tests := []struct {
		amount   int64
		currency string
		want     string
	}{
		{1234, "USD", "USD 12.34"},
		{5, "USD", "USD 0.05"},
		{100, "EUR", "EUR 1.00"},
		{1234, "JPY", "JPY 1234"},
		{1234, "BHD", "BHD 1.234"},
		{7, "KWD", "KWD 0.007"},
		{-250, "USD", "USD -2.50"},
		{42, "ZZZ", "ZZZ 42"},
	}
	for _, tt := range tests {
		t.Run(tt.currency+"/"+tt.want, func(t *testing.T) {
			if got := FormatAmount(tt.amount, tt.currency); got != tt.want {
				t.Errorf("FormatAmount(%d, %q) = %q, want %q", tt.amount, tt.currency, got, tt.want)
			}
		})
	}
}

func TestCurrencyTable(t *testing.T) {
	tests := []struct {
		code    string
		wantExp int
		wantOK  bool
	}{
		{"USD", 2, true}, {"EUR", 2, true}, {"JPY", 0, true}, {"KRW", 0, true},
		{"BHD", 3, true}, {"KWD", 3, true}, {"CLP", 0, true}, {"XOF", 0, true}, {"XCG", 2, true},
		{"XTS", 0, false}, {"XXX", 0, false}, {"XAU", 0, false}, {"XAG", 0, false},
		{"XDR", 0, false}, {"CLF", 0, false}, {"usd", 0, false}, {"", 0, false},
	}
	for _, tt := range tests {
		t.Run(tt.code, func(t *testing.T) {
			exp, ok := MinorUnits(tt.code)
			if exp != tt.wantExp || ok != tt.wantOK {
				t.Errorf("MinorUnits(%q) = %d, %v, want %d, %v", tt.code, exp, ok, tt.wantExp, tt.wantOK)
			}
		})
	}
	for code := range currencies {
		if !isUpperAlpha3(code) {
			t.Errorf("currency table holds malformed code %q", code)
		}
	}
}
