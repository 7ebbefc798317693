// Command openapigen owns internal/transport/http/openapi.json, the OpenAPI 3
// document that the server embeds and serves at /openapi.json. It converts
// the OpenAPI v2 file that protoc-gen-openapiv2 writes from the proto and
// its HTTP rules, then adds what the proto cannot say: the Idempotency-Key
// header, 201 Created and its headers, bearer authentication, and every
// problem+json answer of the JSON API. The output is validated, indented
// and key-sorted, so `make lint` can diff a fresh run against the committed
// file.
//
// Run it through `make openapi`, or `go generate ./internal/transport/http`.
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"

	"github.com/getkin/kin-openapi/openapi2"
	"github.com/getkin/kin-openapi/openapi2conv"
	"github.com/getkin/kin-openapi/openapi3"

	"github.com/payments-svc/payments-svc/internal/payments"
	"github.com/payments-svc/payments-svc/internal/requestid"
	httptransport "github.com/payments-svc/payments-svc/internal/transport/http"
)

func main() {
	if err := run(context.Background(), os.Args[1:], os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "openapigen:", err)
		os.Exit(1)
	}
}

// run parses the flags, whose defaults suit `go generate` in the package
// directory, and writes the document.
func run(ctx context.Context, args []string, stderr io.Writer) error {
	fs := flag.NewFlagSet("openapigen", flag.ContinueOnError)
	fs.SetOutput(stderr)
	in := fs.String("in", "../../../api/payments/v1/payments.swagger.json", "the OpenAPI v2 file protoc-gen-openapiv2 wrote")
	out := fs.String("out", "openapi.json", "where to write the OpenAPI 3 document")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() != 0 {
		return fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	v2, err := os.ReadFile(*in)
	if err != nil {
		return err
	}
	doc, err := generate(ctx, v2)
	if err != nil {
		return fmt.Errorf("%s: %w", *in, err)
	}
	return os.WriteFile(*out, doc, 0o644) //nolint:gosec // a committed source file, world-readable like the rest of the tree
}

// generate turns the OpenAPI v2 document into the served OpenAPI 3 one.
func generate(ctx context.Context, v2 []byte) ([]byte, error) {
	if len(bytes.TrimSpace(v2)) == 0 {
		return nil, errNoDocument
	}
	var doc2 openapi2.T
	if err := json.Unmarshal(v2, &doc2); err != nil {
		return nil, fmt.Errorf("decode openapi v2: %w", err)
	}
	doc, err := openapi2conv.ToV3(&doc2)
	if err != nil {
		return nil, fmt.Errorf("convert to openapi 3: %w", err)
	}
	if err := decorate(doc); err != nil {
		return nil, err
	}
	out, err := canonical(doc)
	if err != nil {
		return nil, err
	}
	// Validate what clients will load, with every $ref resolved, rather
	// than the in-memory document whose added refs are names only.
	loaded, err := openapi3.NewLoader().LoadFromData(out)
	if err != nil {
		return nil, fmt.Errorf("load the openapi 3 document: %w", err)
	}
	if err := loaded.Validate(ctx); err != nil {
		return nil, fmt.Errorf("invalid openapi 3 document: %w", err)
	}
	return out, nil
}

// canonical is the document as indented JSON with sorted keys and a
// trailing newline. It goes through a generic value because kin-openapi
// marshals with HTML escaping, which would turn "> 0" into "\u003e 0".
func canonical(doc *openapi3.T) ([]byte, error) {
	raw, err := json.Marshal(doc)
	if err != nil {
		return nil, err
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, err
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// Component names the decorations add beside the converted schemas.
const (
	problemSchema   = "Problem"
	violationSchema = "FieldViolation"
	bearerScheme    = "bearerAuth"
	keyParam        = "IdempotencyKey"
	retryAfter      = "Retry-After"
)

func schemaRef(name string) *openapi3.SchemaRef {
	return openapi3.NewSchemaRef("#/components/schemas/"+name, nil)
}

func headerRef(name string) *openapi3.HeaderRef {
	return &openapi3.HeaderRef{Ref: "#/components/headers/" + name}
}

func uint64p(n uint64) *uint64 { return &n }

// decorate adds to the converted document what the proto and its HTTP rules
// do not carry.
func decorate(doc *openapi3.T) error {
	doc.Info = &openapi3.Info{Title: "payments-svc JSON API", Version: "v1", Description: infoDescription()}
	doc.Servers = openapi3.Servers{{URL: "/"}}
	doc.Tags = openapi3.Tags{
		{Name: "PaymentService", Description: "Create and read payments: payments.v1.PaymentService over JSON."},
		{Name: "Documents", Description: "This document."},
	}
	if doc.Components == nil {
		doc.Components = &openapi3.Components{}
	}
	c := doc.Components
	c.SecuritySchemes = openapi3.SecuritySchemes{bearerScheme: {Value: &openapi3.SecurityScheme{
		Type:         "http",
		Scheme:       "bearer",
		BearerFormat: "API key",
		Description: "The merchant's API key as `Authorization: Bearer pk_<env>_…`. It decides which merchant a " +
			"payment belongs to: another merchant's payments answer 404, as if they did not exist.",
	}}}
	if err := decorateSchemas(c.Schemas); err != nil {
		return err
	}
	c.Schemas[problemSchema] = &openapi3.SchemaRef{Value: problem()}
	c.Schemas[violationSchema] = &openapi3.SchemaRef{Value: violation()}
	c.Headers = openapi3.Headers{
		httptransport.RequestIDHeader: {Value: header(openapi3.NewStringSchema().WithMinLength(1).WithMaxLength(requestid.MaxLen), true,
			"The request's id: the caller's own X-Request-Id when it is 1 to "+strconv.Itoa(requestid.MaxLen)+
				" printable ASCII characters without spaces, otherwise one the server made. Problem bodies repeat it as request_id.")},
		"Location": {Value: header(openapi3.NewStringSchema().WithFormat("uri-reference"), true,
			"Where the payment is read: "+httptransport.PaymentsPath+"/{paymentId}.")},
		httptransport.ReplayedHeader: {Value: header(openapi3.NewStringSchema().WithEnum("true"), false,
			"Present, as `true`, only when this answer is a replay: an earlier request with the same Idempotency-Key and "+
				"the same body created the payment, and this is its stored status and body. No new payment was made.")},
		retryAfter: {Value: header(openapi3.NewIntegerSchema().WithMin(1), true,
			"Seconds to wait before retrying. The refused request did not use its Idempotency-Key: retry it with the same key.")},
	}
	c.Parameters = openapi3.ParametersMap{keyParam: {Value: &openapi3.Parameter{
		Name:     httptransport.IdempotencyKeyHeader,
		In:       openapi3.ParameterInHeader,
		Required: true,
		Schema:   &openapi3.SchemaRef{Value: openapi3.NewStringSchema().WithMinLength(1)},
		Example:  `"8e03978e-40d5-43e8-bc93-6894a57f9324"`,
		Description: "A key the client makes once per payment attempt (a UUID works well) and sends unchanged on every retry " +
			"of that attempt, following the IETF HTTPAPI draft \"The Idempotency-Key HTTP Header Field\". Its value is a " +
			"Structured Field string, such as `\"8e03978e-…\"`; a bare token is accepted too. The key, once unquoted, is 1 to " +
			strconv.Itoa(payments.MaxIdempotencyKeyLen) + " printable ASCII characters and is scoped to the merchant. " +
			"The same key with the same body replays the first answer (201, Idempotent-Replayed: true); the same key " +
			"with another body is refused with 422 idempotency-key-reused. Send the header exactly once.",
	}}}

	if err := decorateCreate(doc); err != nil {
		return err
	}
	if err := decorateGet(doc); err != nil {
		return err
	}
	doc.Paths.Set(httptransport.OpenAPIPath, &openapi3.PathItem{Get: &openapi3.Operation{
		OperationID: "GetOpenAPIDocument",
		Summary:     "This OpenAPI 3 document.",
		Description: "Served without authentication, so clients and tools can fetch it before they hold a key.",
		Tags:        []string{"Documents"},
		Responses: responses(map[int]*openapi3.Response{
			http.StatusOK: withHeaders(openapi3.NewResponse().WithDescription("The document.").
				WithJSONSchema(openapi3.NewObjectSchema()), requestIDOnly()),
		}),
	}})
	return nil
}

// decorateSchemas makes the converted message schemas say what protojson
// and the server's validation really do.
func decorateSchemas(s openapi3.Schemas) error {
	for _, name := range []string{"RequestPaymentRequest", "RequestPaymentResponse", "GetPaymentResponse", "PaymentStatus"} {
		if s[name] == nil || s[name].Value == nil {
			return fmt.Errorf("schema %s missing from the openapi v2 document", name)
		}
	}
	for _, ref := range s {
		int64AsString(ref.Value)
	}

	req := s["RequestPaymentRequest"].Value
	req.Description = "A payment to create. Unknown members are refused with 400 invalid-json. The server also accepts " +
		"the proto's snake_case names (amount_minor, order_id, …), which this schema leaves out so that each member has one name."
	req.Required = []string{"amountMinor", "currency", "orderId"}
	// The server refuses unknown members; saying so lets a validating
	// client catch a typo before sending. The snake_case aliases stay out,
	// so generated clients have one name per member.
	closed := false
	req.AdditionalProperties = openapi3.AdditionalProperties{Has: &closed}
	req.Properties["amountMinor"].Value.Description = "Amount in minor units (cents for USD), 1 to " +
		strconv.Itoa(payments.MaxAmountMinor) + ", as a decimal string (protojson also accepts a JSON number here)."
	req.Properties["currency"].Value.Description = "ISO 4217 alphabetic code in upper case, such as USD or EUR."
	req.Properties["currency"].Value.Pattern = "^[A-Z]{3}$"
	req.Properties["orderId"].Value.Description = "The merchant's own order reference, opaque to the service."
	req.Properties["orderId"].Value.MinLength = 1
	req.Properties["orderId"].Value.MaxLength = uint64p(payments.MaxOrderIDLen)
	req.Properties["idempotencyKey"].Value.Description = "Leave it out: the Idempotency-Key header is the key. If sent, it " +
		"must equal the header's key, else 400 idempotency-key-conflict."
	req.Properties["metadata"].Value.Description = "Optional string pairs kept with the payment, at most " +
		strconv.Itoa(payments.MaxMetadataEntries) + " entries."
	req.Properties["metadata"].Value.MaxProps = uint64p(payments.MaxMetadataEntries)

	created := s["RequestPaymentResponse"].Value
	created.Description = "The created payment. A replay returns the same members as the first answer."
	// protojson leaves out empty members, so only the ones the service always fills are required.
	created.Required = []string{"paymentId", "status", "idempotencyKey", "createdAt"}
	for name, desc := range map[string]string{
		"paymentId":      "The id the service gave the payment; read it at " + httptransport.PaymentsPath + "/{paymentId}.",
		"message":        "A human-readable summary; not for parsing.",
		"idempotencyKey": "The key the payment was created with, unquoted.",
		"createdAt":      "When the payment was first created (RFC 3339); a replay repeats it.",
	} {
		created.Properties[name].Value.Title = ""
		created.Properties[name].Value.Description = desc
	}

	got := s["GetPaymentResponse"].Value
	got.Description = "A payment of the authenticated merchant."
	got.Required = []string{"paymentId", "status", "amountMinor", "currency", "orderId", "idempotencyKey", "createdAt"}

	s["PaymentStatus"].Value.Description = "The payment's state, by enum name. PENDING until the provider settles it."
	return nil
}

// int64AsString fixes every 64-bit integer member to what protojson writes:
// a decimal string. protoc-gen-openapiv2 already types them as strings but
// keeps format int64, which OpenAPI 3 defines for integers only and which
// code generators then read as a number.
func int64AsString(s *openapi3.Schema) {
	if s == nil {
		return
	}
	for _, p := range s.Properties {
		int64AsString(p.Value)
	}
	if s.Format != "int64" && s.Format != "uint64" {
		return
	}
	s.Pattern = `^-?[0-9]+$`
	if s.Format == "uint64" {
		s.Pattern = `^[0-9]+$`
	}
	s.Type = &openapi3.Types{openapi3.TypeString}
	s.Format = ""
	if s.Description == "" {
		s.Description = "A 64-bit integer as a decimal string, as protojson writes it."
	}
}

func decorateCreate(doc *openapi3.T) error {
	item := doc.Paths.Value(httptransport.PaymentsPath)
	if item == nil || item.Post == nil || item.Post.RequestBody == nil || item.Post.RequestBody.Value == nil {
		return fmt.Errorf("POST %s missing from the openapi v2 document", httptransport.PaymentsPath)
	}
	op := item.Post
	op.OperationID = "RequestPayment"
	op.Summary = "Create a payment, idempotently."
	op.Description = "Creates a payment once per Idempotency-Key: a retry with the same key and body answers the first " +
		"201 again, with Idempotent-Replayed: true. Checks run in this order: content type, body size, the " +
		"Idempotency-Key header and the JSON here, then, as for a gRPC call, the API key, the payment's fields and the quota."
	op.Security = bearer()
	op.Parameters = openapi3.Parameters{{Ref: "#/components/parameters/" + keyParam}}
	body := op.RequestBody.Value
	delete(body.Extensions, "x-originalParamName")
	body.Description = "The payment, at most " + strconv.Itoa(httptransport.MaxAPIBodyBytes) + " bytes of application/json."
	created := withHeaders(openapi3.NewResponse().WithDescription("Created, or replayed: the same status and body as the first answer to this key.").
		WithJSONSchemaRef(schemaRef("RequestPaymentResponse")),
		openapi3.Headers{
			"Location":                    headerRef("Location"),
			httptransport.ReplayedHeader:  headerRef(httptransport.ReplayedHeader),
			httptransport.RequestIDHeader: headerRef(httptransport.RequestIDHeader),
		})
	op.Responses = responses(map[int]*openapi3.Response{
		http.StatusCreated:               created,
		http.StatusBadRequest:            problemResponse("The request is malformed or a field is invalid.", "idempotency-key-missing", "idempotency-key-invalid", "idempotency-key-conflict", "invalid-json", "invalid-argument"),
		http.StatusUnauthorized:          problemResponse("No API key, or an unknown one.", "unauthenticated"),
		http.StatusRequestEntityTooLarge: problemResponse("The body is over "+strconv.Itoa(httptransport.MaxAPIBodyBytes)+" bytes.", "body-too-large"),
		http.StatusUnsupportedMediaType:  problemResponse("The Content-Type is not application/json.", "unsupported-media-type"),
		http.StatusUnprocessableEntity:   problemResponse("The Idempotency-Key was already used with a different body: make a new key for a new payment.", "idempotency-key-reused", "failed-precondition"),
		http.StatusTooManyRequests:       problemResponse("The merchant's create quota is used up for now.", "rate-limited"),
		http.StatusServiceUnavailable:    problemResponse("The payment store is unreachable; nothing was recorded.", "unavailable"),
		http.StatusInternalServerError:   problemResponse("An unexpected failure.", "internal"),
	})
	return nil
}

func decorateGet(doc *openapi3.T) error {
	var item *openapi3.PathItem
	for _, path := range doc.Paths.Keys() {
		if strings.HasPrefix(path, httptransport.PaymentsPath+"/{") {
			item = doc.Paths.Value(path)
		}
	}
	if item == nil || item.Get == nil || len(item.Get.Parameters) != 1 || item.Get.Parameters[0].Value == nil {
		return fmt.Errorf("GET %s/{paymentId} missing from the openapi v2 document", httptransport.PaymentsPath)
	}
	op := item.Get
	op.OperationID = "GetPayment"
	op.Summary = "Read a payment."
	op.Description = "Reads one of the authenticated merchant's payments; any other id answers 404."
	op.Security = bearer()
	op.Parameters[0].Value.Description = "The paymentId that creating the payment returned."
	op.Responses = responses(map[int]*openapi3.Response{
		http.StatusOK: withHeaders(openapi3.NewResponse().WithDescription("The payment.").
			WithJSONSchemaRef(schemaRef("GetPaymentResponse")), requestIDOnly()),
		http.StatusBadRequest:          problemResponse("The payment id is malformed.", "invalid-argument"),
		http.StatusUnauthorized:        problemResponse("No API key, or an unknown one.", "unauthenticated"),
		http.StatusNotFound:            problemResponse("No payment of this merchant has this id.", "not-found"),
		http.StatusTooManyRequests:     problemResponse("The merchant's read quota is used up for now.", "rate-limited"),
		http.StatusServiceUnavailable:  problemResponse("The payment store is unreachable.", "unavailable"),
		http.StatusInternalServerError: problemResponse("An unexpected failure.", "internal"),
	})
	return nil
}

func bearer() *openapi3.SecurityRequirements {
	return &openapi3.SecurityRequirements{{bearerScheme: {}}}
}

func responses(byStatus map[int]*openapi3.Response) *openapi3.Responses {
	r := openapi3.NewResponses()
	r.Delete("default")
	for code, resp := range byStatus {
		r.Set(strconv.Itoa(code), &openapi3.ResponseRef{Value: resp})
	}
	return r
}

func requestIDOnly() openapi3.Headers {
	return openapi3.Headers{httptransport.RequestIDHeader: headerRef(httptransport.RequestIDHeader)}
}

// problemResponse is an application/problem+json answer whose type is one
// of slugs; the description names them so a client knows which to handle
// without reading the server.
func problemResponse(desc string, slugs ...string) *openapi3.Response {
	headers := requestIDOnly()
	if len(slugs) == 1 && (slugs[0] == "rate-limited" || slugs[0] == "unavailable") {
		headers[retryAfter] = headerRef(retryAfter)
	}
	return withHeaders(openapi3.NewResponse().
		WithDescription(desc+" Problem type, after the common prefix: "+strings.Join(slugs, ", ")+".").
		WithContent(openapi3.Content{"application/problem+json": openapi3.NewMediaType().WithSchemaRef(schemaRef(problemSchema))}),
		headers)
}

func withHeaders(r *openapi3.Response, h openapi3.Headers) *openapi3.Response {
	r.Headers = h
	return r
}

func described(s *openapi3.Schema, desc string) *openapi3.SchemaRef {
	s.Description = desc
	return &openapi3.SchemaRef{Value: s}
}

func header(schema *openapi3.Schema, required bool, desc string) *openapi3.Header {
	return &openapi3.Header{Parameter: openapi3.Parameter{
		Description: desc,
		Required:    required,
		Schema:      &openapi3.SchemaRef{Value: schema},
	}}
}

// problem is the RFC 9457 body that writeTypedProblem writes.
func problem() *openapi3.Schema {
	s := openapi3.NewObjectSchema()
	s.Description = "RFC 9457 problem details. Further members may be added; clients should ignore ones they do not know."
	s.Required = []string{"type", "title", "status", "detail", "instance", "request_id"}
	s.Properties = openapi3.Schemas{
		"type":       described(openapi3.NewStringSchema().WithFormat("uri"), "What went wrong, as a URI: "+httptransport.ProblemBase+" followed by a slug such as invalid-argument. Branch on this, not on detail."),
		"title":      described(openapi3.NewStringSchema(), "The HTTP status text."),
		"status":     described(openapi3.NewIntegerSchema().WithMin(400).WithMax(599), "The HTTP status code, repeated."),
		"detail":     described(openapi3.NewStringSchema(), "What to change, for a person; not for parsing."),
		"instance":   described(openapi3.NewStringSchema().WithFormat("uri-reference"), "The request path."),
		"request_id": described(openapi3.NewStringSchema(), "The X-Request-Id of this request."),
		"errors": {Value: &openapi3.Schema{
			Type:        &openapi3.Types{openapi3.TypeArray},
			Items:       schemaRef(violationSchema),
			Description: "One entry per invalid field, all of them at once; present with invalid-argument and idempotency-key-conflict.",
		}},
	}
	return s
}

func violation() *openapi3.Schema {
	s := openapi3.NewObjectSchema()
	s.Description = "One invalid field."
	s.Required = []string{"field", "reason", "detail"}
	s.Properties = openapi3.Schemas{
		"field":  described(openapi3.NewStringSchema(), "The proto field name, snake_case, such as amount_minor."),
		"reason": described(openapi3.NewStringSchema(), "A machine-readable reason, such as REQUIRED, OUT_OF_RANGE or INVALID_FORMAT."),
		"detail": described(openapi3.NewStringSchema(), "What the field must be instead."),
	}
	return s
}

func infoDescription() string {
	var b strings.Builder
	b.WriteString(`The JSON face of payments.v1.PaymentService. Every call goes through the same authentication, ` +
		`per-merchant quotas and validation as a gRPC call, so a payment made over one protocol can be read, or ` +
		`replayed, over the other.

## Idempotency

Creating a payment is safe to retry. Each ` + "`POST " + httptransport.PaymentsPath + "`" + ` carries an ` +
		"`Idempotency-Key`" + ` header, as in the IETF HTTPAPI draft "The Idempotency-Key HTTP Header Field": the client ` +
		`makes one key per payment attempt and sends it unchanged on every retry of that attempt. Keys belong to the merchant.

- First use of a key: the payment is made; 201 Created with a Location.
- The same key and the same body again: the first answer again, status and body, plus ` + "`Idempotent-Replayed: true`" + `. No second payment.
- The same key with a different body: 422, problem type idempotency-key-reused.
- No header: 400 idempotency-key-missing. An empty, malformed or repeated header: 400 idempotency-key-invalid. ` +
		`A body idempotencyKey that differs from the header: 400 idempotency-key-conflict.
- A 429 or 503 answer recorded nothing: after Retry-After seconds, retry with the same key.

## Errors

Every error is an RFC 9457 problem (` + "`application/problem+json`" + `, schema Problem). Its ` + "`type`" + ` is ` +
		"`" + httptransport.ProblemBase + "<slug>`" + `, and each slug has one status:

| slug | status |
| --- | --- |
`)
	for _, row := range problemTypes {
		fmt.Fprintf(&b, "| %s | %d |\n", row.slug, row.status)
	}
	b.WriteString(`
Field violations come in ` + "`errors`" + `, all at once. ` + "`request_id`" + ` equals the X-Request-Id response header, ` +
		`which every answer carries: quote it when reporting a problem.

## Encoding

Member names are lowerCamelCase; the proto's snake_case names are accepted on input. 64-bit integers such as ` +
		"`amountMinor`" + ` are decimal strings, enums are their names, timestamps are RFC 3339 strings.`)
	return b.String()
}

// problemTypes lists every problem type the API can answer with, including
// the ones that today's operations never produce but the gRPC error mapping
// could.
var problemTypes = []struct {
	slug   string
	status int
}{
	{"idempotency-key-missing", 400},
	{"idempotency-key-invalid", 400},
	{"idempotency-key-conflict", 400},
	{"invalid-json", 400},
	{"invalid-argument", 400},
	{"unauthenticated", 401},
	{"permission-denied", 403},
	{"not-found", 404},
	{"method-not-allowed", 405},
	{"conflict", 409},
	{"body-too-large", 413},
	{"unsupported-media-type", 415},
	{"idempotency-key-reused", 422},
	{"failed-precondition", 422},
	{"rate-limited", 429},
	{"canceled", 499},
	{"internal", 500},
	{"not-implemented", 501},
	{"unavailable", 503},
	{"deadline-exceeded", 504},
}

// errNoDocument is what generate reports for empty input, which a failed
// `buf generate` can leave behind.
var errNoDocument = errors.New("empty openapi v2 document")
