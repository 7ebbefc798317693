package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/getkin/kin-openapi/openapi3"
)

const (
	swaggerPath   = "../../../../api/payments/v1/payments.swagger.json"
	committedPath = "../openapi.json"
)

func readFile(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestCommittedDocumentIsFresh is the go test twin of the stale check in
// make lint: a change to the generator that is not regenerated fails here.
func TestCommittedDocumentIsFresh(t *testing.T) {
	got, err := generate(context.Background(), readFile(t, swaggerPath))
	if err != nil {
		t.Fatal(err)
	}
	if want := readFile(t, committedPath); !bytes.Equal(got, want) {
		t.Errorf("generate(%s) differs from %s: run 'make openapi' and commit", swaggerPath, committedPath)
	}
	if !bytes.HasSuffix(got, []byte("}\n")) || bytes.Contains(got, []byte(`\u003e`)) {
		t.Errorf("document is not indented JSON with a trailing newline and unescaped text")
	}
}

func TestRun(t *testing.T) {
	dir := t.TempDir()
	out := filepath.Join(dir, "openapi.json")
	if err := run(context.Background(), []string{"-in", swaggerPath, "-out", out}, io.Discard); err != nil {
		t.Fatalf("run: %v", err)
	}
	if got, want := readFile(t, out), readFile(t, committedPath); !bytes.Equal(got, want) {
		t.Errorf("run wrote %d bytes that differ from the committed %d", len(got), len(want))
	}

	failures := []struct {
		name string
		args []string
		want string
	}{
		{"unknown flag", []string{"-nope"}, "flag provided but not defined"},
		{"extra argument", []string{"-in", swaggerPath, "stray"}, "unexpected arguments"},
		{"missing input", []string{"-in", filepath.Join(dir, "absent.json"), "-out", out}, "no such file"},
		{"unwritable output", []string{"-in", swaggerPath, "-out", filepath.Join(dir, "no", "dir", "x.json")}, "no such file"},
		{"not a document", []string{"-in", out + ".empty", "-out", out}, "empty openapi v2 document"},
	}
	if err := os.WriteFile(out+".empty", nil, 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tt := range failures {
		t.Run(tt.name, func(t *testing.T) {
			err := run(context.Background(), tt.args, io.Discard)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("run(%q) = %v, want an error containing %q", tt.args, err, tt.want)
			}
		})
	}
}

// TestGenerateRefuses feeds inputs that a broken proto or generator
// configuration could produce: each must stop the generator, never write a
// half-decorated document.
func TestGenerateRefuses(t *testing.T) {
	valid := readFile(t, swaggerPath)
	edit := func(f func(doc map[string]any)) []byte {
		var doc map[string]any
		if err := json.Unmarshal(valid, &doc); err != nil {
			t.Fatal(err)
		}
		f(doc)
		b, err := json.Marshal(doc)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	defs := func(doc map[string]any) map[string]any { return doc["definitions"].(map[string]any) }
	paths := func(doc map[string]any) map[string]any { return doc["paths"].(map[string]any) }
	tests := []struct {
		name string
		in   []byte
		want error
		msg  string
	}{
		{"empty", []byte(" \n"), errNoDocument, ""},
		{"not json", []byte("swagger: '2.0'"), nil, "decode openapi v2"},
		{"schema missing", edit(func(d map[string]any) {
			delete(defs(d), "GetPaymentResponse")
			delete(paths(d), "/v1/payments/{paymentId}") // else the converter fails first, on the dangling $ref
		}), nil, "schema GetPaymentResponse missing"},
		{"create missing", edit(func(d map[string]any) { delete(paths(d), "/v1/payments") }), nil, "POST /v1/payments missing"},
		{"get missing", edit(func(d map[string]any) { delete(paths(d), "/v1/payments/{paymentId}") }), nil, "GET /v1/payments/{paymentId} missing"},
		{"invalid schema", edit(func(d map[string]any) {
			defs(d)["GetPaymentResponse"].(map[string]any)["properties"].(map[string]any)["currency"] = map[string]any{"type": "string", "pattern": "(["}
		}), nil, "invalid openapi 3 document"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, err := generate(context.Background(), tt.in)
			switch {
			case err == nil:
				t.Fatalf("generate = %d bytes, want an error", len(out))
			case tt.want != nil && !errors.Is(err, tt.want):
				t.Errorf("generate: got %v, want %v", err, tt.want)
			case tt.msg != "" && !strings.Contains(err.Error(), tt.msg):
				t.Errorf("generate: got %v, want an error containing %q", err, tt.msg)
			}
		})
	}
}

func TestInt64AsString(t *testing.T) {
	tests := []struct {
		name        string
		in          *openapi3.Schema
		wantPattern string
	}{
		{"int64 integer", openapi3.NewInt64Schema(), `^-?[0-9]+$`},
		{"int64 string", openapi3.NewStringSchema().WithFormat("int64"), `^-?[0-9]+$`},
		{"uint64 string", openapi3.NewStringSchema().WithFormat("uint64"), `^[0-9]+$`},
		{"int32 untouched", openapi3.NewInt32Schema(), ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			parent := openapi3.NewObjectSchema().WithProperty("n", tt.in)
			int64AsString(parent)
			got := parent.Properties["n"].Value
			if got.Pattern != tt.wantPattern {
				t.Errorf("pattern = %q, want %q", got.Pattern, tt.wantPattern)
			}
			if tt.wantPattern != "" && (!got.Type.Is(openapi3.TypeString) || got.Format != "" || got.Description == "") {
				t.Errorf("schema = type %v format %q description %q, want a described string without format", got.Type, got.Format, got.Description)
			}
		})
	}
}
