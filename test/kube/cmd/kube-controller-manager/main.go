// Copyright 2014 The Kubernetes Authors. Licensed under the Apache License,
// Version 2.0. Adapted from k8s.io/kubernetes v1.34.4 cmd/kube-controller-manager/controller-manager.go.

// Command kube-controller-manager is the upstream controller manager, built
// from the pinned module for the control-plane tests.
package main

import (
	"os"
	_ "time/tzdata" // for CronJob time zone support

	"k8s.io/component-base/cli"
	_ "k8s.io/component-base/logs/json/register"          // JSON log format registration
	_ "k8s.io/component-base/metrics/prometheus/clientgo" // client-go metrics plugins
	_ "k8s.io/component-base/metrics/prometheus/version"  // version metric registration
	"k8s.io/kubernetes/cmd/kube-controller-manager/app"
)

func main() {
	command := app.NewControllerManagerCommand()
	code := cli.Run(command)
	os.Exit(code)
}
