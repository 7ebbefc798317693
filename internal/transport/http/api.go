package httptransport

import (
	"bytes"
	"context"
	_ "embed"
	"errors"
	"io"
	"mime"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/grpc-ecosystem/grpc-gateway/v2/runtime"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	"github.com/payments-svc/payments-svc/internal/payments"
	paymentsv1 "github.com/payments-svc/payments-svc/proto/payments/v1"
)

// The JSON API routes. PaymentsPath takes POST; a payment is read at
// PaymentsPath + "/" + payment_id.
const (
	PaymentsPath = "/v1/payments"
	OpenAPIPath  = "/openapi.json"
)

// IdempotencyKeyHeader and ReplayedHeader follow the IETF HTTPAPI draft
// "The Idempotency-Key HTTP Header Field".
const (
	IdempotencyKeyHeader = "Idempotency-Key"
	ReplayedHeader       = "Idempotent-Replayed"
)

// MaxAPIBodyBytes bounds a JSON request body, like the gRPC receive limit.
const MaxAPIBodyBytes = 64 << 10

// ProblemBase prefixes every problem type URI of the JSON API: each names a
// row of the error table in ARCHITECTURE.md, so a client that sees an
// unfamiliar type can read what it means.
const ProblemBase = "https://github.com/payments-svc/payments-svc/blob/main/ARCHITECTURE.md#problem-"

// openapi.json is generated from the proto's OpenAPI v2 file; `make openapi`
// also regenerates that file first.
//
//go:generate go run ./openapigen -in ../../../api/payments/v1/payments.swagger.json -out openapi.json
//go:embed openapi.json
var openAPIDoc []byte

// OpenAPI returns the served OpenAPI 3 document.
func OpenAPI() []byte { return bytes.Clone(openAPIDoc) }

// NewAPI serves the JSON API through grpc-gateway over conn, a connection
// to this process's own gRPC server: every call runs the same interceptors
// (authentication, quotas, validation, error mapping, the log line) as a
// gRPC client's.
func NewAPI(ctx context.Context, conn *grpc.ClientConn) (http.Handler, error) {
	gw := runtime.NewServeMux(
		runtime.WithMarshalerOption(runtime.MIMEWildcard, &runtime.JSONPb{
			MarshalOptions:   protojson.MarshalOptions{},
			UnmarshalOptions: protojson.UnmarshalOptions{DiscardUnknown: false},
		}),
		runtime.WithMetadata(func(ctx context.Context, _ *http.Request) metadata.MD {
			// The access log resolved the request id; the gRPC log line
			// must carry the same one.
			return metadata.Pairs("x-request-id", noteFrom(ctx).requestID)
		}),
		runtime.WithOutgoingHeaderMatcher(func(key string) (string, bool) {
			if key == "idempotent-replayed" {
				return ReplayedHeader, true
			}
			return "", false
		}),
		runtime.WithForwardResponseOption(created),
		runtime.WithErrorHandler(func(ctx context.Context, _ *runtime.ServeMux, _ runtime.Marshaler, w http.ResponseWriter, r *http.Request, err error) {
			writeStatusProblem(w, r, status.Convert(err))
		}),
		runtime.WithRoutingErrorHandler(func(_ context.Context, _ *runtime.ServeMux, _ runtime.Marshaler, w http.ResponseWriter, r *http.Request, code int) {
			writeAPIProblem(w, r, code, "not-found", "no such route", nil)
		}),
	)
	if err := paymentsv1.RegisterPaymentServiceHandler(ctx, gw, conn); err != nil {
		return nil, err
	}
	mux := http.NewServeMux()
	mux.Handle("POST "+PaymentsPath, idempotencyKey(gw))
	mux.Handle("GET "+PaymentsPath+"/{payment_id}", gw)
	mux.HandleFunc(PaymentsPath, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Allow", http.MethodPost)
		writeAPIProblem(w, r, http.StatusMethodNotAllowed, "method-not-allowed", "only POST creates a payment", nil)
	})
	mux.HandleFunc(PaymentsPath+"/{payment_id}", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Allow", http.MethodGet)
		writeAPIProblem(w, r, http.StatusMethodNotAllowed, "method-not-allowed", "a payment is only read, with GET", nil)
	})
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeAPIProblem(w, r, http.StatusNotFound, "not-found", "no such route", nil)
	})
	mux.HandleFunc("GET "+OpenAPIPath, func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(openAPIDoc)
	})
	return mux, nil
}

// created turns a RequestPayment answer into 201 Created with a Location,
// for the first call and for every replay of it alike: a replay returns the
// original status and body.
func created(ctx context.Context, w http.ResponseWriter, m proto.Message) error {
	resp, ok := m.(*paymentsv1.RequestPaymentResponse)
	if !ok {
		if p, ok := m.(*paymentsv1.GetPaymentResponse); ok {
			noteFrom(ctx).paymentID = p.GetPaymentId()
		}
		return nil
	}
	note := noteFrom(ctx)
	note.paymentID = resp.GetPaymentId()
	note.outcome = string(payments.OutcomeCreated)
	if w.Header().Get(ReplayedHeader) == "true" {
		note.outcome = string(payments.OutcomeReplayed)
	}
	w.Header().Set("Location", PaymentsPath+"/"+resp.GetPaymentId())
	w.WriteHeader(http.StatusCreated)
	return nil
}

// idempotencyKey applies the IETF draft to POST /v1/payments before the
// gateway sees it: JSON only, a bounded body, and the Idempotency-Key header
// as the key. A body idempotency_key must equal it; an absent one takes it.
func idempotencyKey(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type")); err != nil || mt != "application/json" {
			writeAPIProblem(w, r, http.StatusUnsupportedMediaType, "unsupported-media-type", "Content-Type must be application/json", nil)
			return
		}
		body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, MaxAPIBodyBytes))
		if err != nil {
			var tooBig *http.MaxBytesError
			if errors.As(err, &tooBig) {
				writeAPIProblem(w, r, http.StatusRequestEntityTooLarge, "body-too-large", "body exceeds "+strconv.Itoa(MaxAPIBodyBytes)+" bytes", nil)
				return
			}
			writeAPIProblem(w, r, http.StatusBadRequest, "invalid-json", "body could not be read", nil)
			return
		}
		values := r.Header.Values(IdempotencyKeyHeader)
		if len(values) == 0 {
			writeAPIProblem(w, r, http.StatusBadRequest, "idempotency-key-missing",
				"the Idempotency-Key header is required: a unique key per payment attempt, reused on every retry of it", nil)
			return
		}
		key, ok := parseIdempotencyKey(values)
		if !ok {
			writeAPIProblem(w, r, http.StatusBadRequest, "idempotency-key-invalid",
				"send exactly one Idempotency-Key header holding a string, such as \"8e03978e-40d5-43e8-bc93-6894a57f9324\"", nil)
			return
		}
		var req paymentsv1.RequestPaymentRequest
		if err := protojson.Unmarshal(body, &req); err != nil {
			writeAPIProblem(w, r, http.StatusBadRequest, "invalid-json", "the body is not a RequestPayment JSON object: "+err.Error(), nil)
			return
		}
		switch req.GetIdempotencyKey() {
		case "":
			req.IdempotencyKey = key
		case key:
		default:
			writeAPIProblem(w, r, http.StatusBadRequest, "idempotency-key-conflict",
				"the body's idempotency_key differs from the Idempotency-Key header; send one key, preferably only in the header",
				[]payments.FieldViolation{{Field: "idempotency_key", Reason: "CONFLICTS_WITH_HEADER", Description: "must equal the Idempotency-Key header or be left out"}})
			return
		}
		body, err = protojson.Marshal(&req)
		if err != nil {
			writeAPIProblem(w, r, http.StatusInternalServerError, "internal", "internal error", nil)
			return
		}
		r.Body = io.NopCloser(bytes.NewReader(body))
		r.ContentLength = int64(len(body))
		next.ServeHTTP(w, r)
	})
}

// parseIdempotencyKey reads the header as the draft defines it, a
// Structured Field string ("…"), and also as a bare value, which is what
// many clients send.
func parseIdempotencyKey(values []string) (string, bool) {
	if len(values) != 1 {
		return "", false
	}
	v := strings.TrimSpace(values[0])
	if strings.HasPrefix(v, `"`) {
		if len(v) < 2 || v[len(v)-1] != '"' {
			return "", false
		}
		var b strings.Builder
		for i := 1; i < len(v)-1; i++ {
			c := v[i]
			switch c {
			case '\\':
				i++
				if i == len(v)-1 || (v[i] != '"' && v[i] != '\\') {
					return "", false
				}
				c = v[i]
			case '"':
				return "", false
			}
			b.WriteByte(c)
		}
		v = b.String()
	} else if strings.ContainsRune(v, '"') {
		return "", false
	}
	return v, v != ""
}

// statusProblems maps each gRPC code to its HTTP status and problem type:
// the HTTP column of the error table in ARCHITECTURE.md.
var statusProblems = map[codes.Code]struct {
	status int
	slug   string
}{
	codes.InvalidArgument:    {http.StatusBadRequest, "invalid-argument"},
	codes.OutOfRange:         {http.StatusBadRequest, "invalid-argument"},
	codes.Unauthenticated:    {http.StatusUnauthorized, "unauthenticated"},
	codes.PermissionDenied:   {http.StatusForbidden, "permission-denied"},
	codes.NotFound:           {http.StatusNotFound, "not-found"},
	codes.AlreadyExists:      {http.StatusConflict, "conflict"},
	codes.Aborted:            {http.StatusConflict, "conflict"},
	codes.FailedPrecondition: {http.StatusUnprocessableEntity, "failed-precondition"},
	codes.ResourceExhausted:  {http.StatusTooManyRequests, "rate-limited"},
	codes.Canceled:           {499, "canceled"},
	codes.DeadlineExceeded:   {http.StatusGatewayTimeout, "deadline-exceeded"},
	codes.Unavailable:        {http.StatusServiceUnavailable, "unavailable"},
	codes.Unimplemented:      {http.StatusNotImplemented, "not-implemented"},
}

// writeStatusProblem answers a gRPC status as problem+json, carrying its
// details over: field violations as "errors", the idempotency reason as the
// type, the retry delay as Retry-After.
func writeStatusProblem(w http.ResponseWriter, r *http.Request, st *status.Status) {
	sp, ok := statusProblems[st.Code()]
	if !ok {
		sp = struct {
			status int
			slug   string
		}{http.StatusInternalServerError, "internal"}
	}
	var violations []payments.FieldViolation
	var quota bool
	for _, d := range st.Details() {
		switch d := d.(type) {
		case *errdetails.BadRequest:
			for _, v := range d.GetFieldViolations() {
				violations = append(violations, payments.FieldViolation{Field: v.GetField(), Reason: v.GetReason(), Description: v.GetDescription()})
			}
		case *errdetails.ErrorInfo:
			if d.GetReason() == "IDEMPOTENCY_KEY_REUSED" {
				sp.slug = "idempotency-key-reused"
			}
		case *errdetails.RetryInfo:
			w.Header().Set("Retry-After", retryAfter(d.GetRetryDelay().AsDuration()))
		case *errdetails.QuotaFailure:
			quota = true
		}
	}
	if st.Code() == codes.ResourceExhausted && !quota {
		// gRPC's own message-size refusal, not a quota.
		sp.status, sp.slug = http.StatusRequestEntityTooLarge, "body-too-large"
	}
	if sp.status == http.StatusTooManyRequests || sp.status == http.StatusServiceUnavailable {
		if w.Header().Get("Retry-After") == "" {
			w.Header().Set("Retry-After", "1")
		}
	}
	writeAPIProblem(w, r, sp.status, sp.slug, st.Message(), violations)
}

// retryAfter is a Retry-After value in whole seconds, rounded up, at least 1.
func retryAfter(d time.Duration) string {
	s := int64((d + time.Second - 1) / time.Second)
	return strconv.FormatInt(max(s, 1), 10)
}

// writeAPIProblem writes a problem+json body whose type names its row of
// the error table, and records the refusal for the access log.
func writeAPIProblem(w http.ResponseWriter, r *http.Request, code int, slug, detail string, vs []payments.FieldViolation) {
	note := noteFrom(r.Context())
	if note.outcome == "" {
		note.outcome = slug
	}
	writeTypedProblem(w, r, code, ProblemBase+slug, detail, vs)
}
