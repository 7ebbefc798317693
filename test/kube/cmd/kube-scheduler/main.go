// Copyright 2014 The Kubernetes Authors. Licensed under the Apache License,
// Version 2.0. Adapted from k8s.io/kubernetes v1.34.4 cmd/kube-scheduler/scheduler.go.

// Command kube-scheduler is the upstream scheduler, built from the pinned
// module for the control-plane tests.
package main

import (
	"os"

	"k8s.io/component-base/cli"
	_ "k8s.io/component-base/logs/json/register"          // JSON log format registration
	_ "k8s.io/component-base/metrics/prometheus/clientgo" // client-go metrics plugins
	_ "k8s.io/component-base/metrics/prometheus/version"  // version metric registration
	"k8s.io/kubernetes/cmd/kube-scheduler/app"
)

func main() {
	command := app.NewSchedulerCommand()
	code := cli.Run(command)
	os.Exit(code)
}
