// Copyright 2014 The Kubernetes Authors. Licensed under the Apache License,
// Version 2.0. Adapted from k8s.io/kubernetes v1.34.4 cmd/kubectl/kubectl.go.

// Command kubectl is the upstream kubectl, built from the pinned module so it
// matches the API server's version exactly.
package main

import (
	"os"

	_ "k8s.io/client-go/plugin/pkg/client/auth"
	"k8s.io/component-base/cli"
	"k8s.io/component-base/logs"
	"k8s.io/kubectl/pkg/cmd"
	"k8s.io/kubectl/pkg/cmd/util"
)

func main() {
	logs.GlogSetter(cmd.GetLogVerbosity(os.Args)) //nolint:errcheck // upstream ignores it too
	command := cmd.NewDefaultKubectlCommand()
	if err := cli.RunNoErrOutput(command); err != nil {
		util.CheckErr(err)
	}
}
