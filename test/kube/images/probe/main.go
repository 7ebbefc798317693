// Command probe is the workload of the real-node cluster test (package
// cluster): one static binary, built into a FROM-scratch image, that serves
// HTTP and, run through kubectl exec, resolves names, fetches URLs and
// writes files, so the test needs no image from a registry.
//
//	probe serve ADDR       answer /healthz with ok and / with the pod's hostname
//	probe lookup NAME      print NAME's addresses, one a line
//	probe get URL          print the body of URL
//	probe write FILE TEXT  write TEXT to FILE and print what reading it back gives
//	probe read FILE        print FILE
package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"time"
)

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "probe:", err)
		os.Exit(1)
	}
}

func run(args []string) error {
	if len(args) < 2 {
		return fmt.Errorf("usage: probe serve ADDR | lookup NAME | get URL | write FILE TEXT")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	switch args[0] {
	case "serve":
		host, _ := os.Hostname()
		mux := http.NewServeMux()
		mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, "ok") })
		mux.HandleFunc("/", func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, host) })
		srv := &http.Server{Addr: args[1], Handler: mux, ReadHeaderTimeout: 5 * time.Second}
		return srv.ListenAndServe()
	case "lookup":
		addrs, err := net.DefaultResolver.LookupHost(ctx, args[1])
		if err != nil {
			return err
		}
		for _, a := range addrs {
			fmt.Println(a)
		}
		return nil
	case "get":
		// The URL the test asks for: this tool exists to fetch it.
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, args[1], nil) //nolint:gosec // see above
		if err != nil {
			return err
		}
		resp, err := http.DefaultClient.Do(req) //nolint:gosec // see above
		if err != nil {
			return err
		}
		defer func() { _ = resp.Body.Close() }()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("GET %s: %s", args[1], resp.Status)
		}
		_, err = io.Copy(os.Stdout, resp.Body)
		return err
	case "read":
		b, err := os.ReadFile(args[1]) //nolint:gosec // the file the test asks for
		if err != nil {
			return err
		}
		_, err = os.Stdout.Write(b)
		return err
	case "write":
		if len(args) != 3 {
			return fmt.Errorf("usage: probe write FILE TEXT")
		}
		if err := os.WriteFile(args[1], []byte(args[2]), 0o600); err != nil { //nolint:gosec // the file the test asks for
			return err
		}
		b, err := os.ReadFile(args[1]) //nolint:gosec // the file the test asks for
		if err != nil {
			return err
		}
		_, err = os.Stdout.Write(b)
		return err
	}
	return fmt.Errorf("unknown command %q", args[0])
}
