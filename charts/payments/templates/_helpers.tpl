{{/* Chart name, truncated to the 63 characters a DNS label allows. */}}
{{- define "payments.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Full name: <release>-<chart> unless the release name already contains the chart name. */}}
{{- define "payments.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "payments.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Labels shared by every object. */}}
{{- define "payments.labels" -}}
helm.sh/chart: {{ include "payments.chart" . }}
app.kubernetes.io/name: {{ include "payments.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: payments-svc
{{- end }}

{{/* Selector of the payments server pods. */}}
{{- define "payments.selectorLabels" -}}
app.kubernetes.io/name: {{ include "payments.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: server
{{- end }}

{{/* Selector of the bundled Redis pod. */}}
{{- define "payments.redis.selectorLabels" -}}
app.kubernetes.io/name: {{ include "payments.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: redis
{{- end }}

{{- define "payments.redis.fullname" -}}
{{- printf "%s-redis" (include "payments.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "payments.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "payments.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* Name of the Secret holding webhook and Redis secrets: the chart's own or existingSecret. */}}
{{- define "payments.secretName" -}}
{{- default (include "payments.fullname" .) .Values.secrets.existingSecret }}
{{- end }}

{{/* Image reference: a digest pins it; otherwise the tag, defaulting to appVersion. */}}
{{- define "payments.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}
{{- end }}

{{- define "payments.testImage" -}}
{{- $repo := default .Values.image.repository .Values.tests.image.repository }}
{{- if and (not .Values.tests.image.tag) (not .Values.tests.image.repository) .Values.image.digest }}
{{- printf "%s@%s" $repo .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" $repo (default (default .Chart.AppVersion .Values.image.tag) .Values.tests.image.tag) }}
{{- end }}
{{- end }}

{{/* "true" when the pods serve TLS themselves (tls.mode secret or certManager), else empty. */}}
{{- define "payments.tls.enabled" -}}
{{- if has .Values.tls.mode (list "secret" "certManager") }}true{{ end }}
{{- end }}

{{/* The kubernetes.io/tls Secret the pods serve from: the operator's, or the one cert-manager writes. */}}
{{- define "payments.tls.secretName" -}}
{{- if eq .Values.tls.mode "certManager" }}
{{- printf "%s-tls" (include "payments.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- .Values.tls.secretName }}
{{- end }}
{{- end }}

{{/* "true" when an API keys file is mounted (the chart's Secret or auth.existingSecret), else empty. */}}
{{- define "payments.auth.enabled" -}}
{{- if or .Values.auth.keys .Values.auth.existingSecret }}true{{ end }}
{{- end }}

{{/* The Secret holding the API keys file. Not the chart's main Secret: that one is in checksum/config, and a
key change must not roll the pods. */}}
{{- define "payments.auth.secretName" -}}
{{- default (printf "%s-api-keys" (include "payments.fullname" .) | trunc 63 | trimSuffix "-") .Values.auth.existingSecret }}
{{- end }}

{{/* Name of the admin Service (metrics, health pages, pprof). */}}
{{- define "payments.admin.fullname" -}}
{{- printf "%s-admin" (include "payments.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
One probe of the server container: a native gRPC probe, or with TLS an exec of the binary's own
grpc.health.v1 client, since the kubelet's gRPC probe cannot speak TLS. Called with (dict "root" $ "probe" <probes.X>).
*/}}
{{- define "payments.probe" -}}
{{- $grpcPort := int .root.Values.containerPorts.grpc }}
{{- if include "payments.tls.enabled" .root -}}
exec:
  # Loopback matches no name on the certificate, so it is not verified: the probe is about
  # the process serving health over TLS; checking the certificate is each client's job.
  command:
    - /payments-svc
    - healthcheck
    - -addr
    - {{ printf "127.0.0.1:%d" $grpcPort | quote }}
    - -tls
    - -insecure-skip-verify
    - -service
    - {{ .probe.service | quote }}
    - -timeout
    - {{ printf "%ds" (int .probe.timeoutSeconds) | quote }}
{{- else -}}
# Native gRPC probe (grpc.health.v1); it needs the numeric port, not its name.
grpc:
  port: {{ $grpcPort }}
  {{- with .probe.service }}
  service: {{ . | quote }}
  {{- end }}
{{- end }}
periodSeconds: {{ .probe.periodSeconds }}
failureThreshold: {{ .probe.failureThreshold }}
timeoutSeconds: {{ .probe.timeoutSeconds }}
{{- end }}

{{/* Comma-separated Redis addresses the service dials. */}}
{{- define "payments.redisAddrs" -}}
{{- if .Values.redis.enabled }}
{{- printf "%s:%d" (include "payments.redis.fullname" .) (int .Values.redis.port) }}
{{- else }}
{{- join "," .Values.externalRedis.addrs }}
{{- end }}
{{- end }}

{{/*
Rejects value combinations that would render a pod that cannot work, at render time rather than at runtime.
*/}}
{{- define "payments.validate" -}}
{{- $grace := int .Values.terminationGracePeriodSeconds }}
{{- $drain := add (int .Values.config.shutdownTimeoutSeconds) (int .Values.lifecycle.preStopSleepSeconds) }}
{{- if le $grace (int $drain) }}
{{- fail (printf "terminationGracePeriodSeconds (%d) must exceed config.shutdownTimeoutSeconds + lifecycle.preStopSleepSeconds (%d), or pods are killed mid-drain" $grace (int $drain)) }}
{{- end }}
{{- if not .Values.secrets.existingSecret }}
{{- if not .Values.secrets.webhookSecrets }}
{{- fail "secrets.webhookSecrets is required (or set secrets.existingSecret): the server refuses to start without PAYMENTS_WEBHOOK_SECRETS" }}
{{- end }}
{{- if and .Values.redis.enabled (not .Values.secrets.redisPassword) }}
{{- fail "secrets.redisPassword is required with the bundled Redis (or set secrets.existingSecret)" }}
{{- end }}
{{- end }}
{{- if and (not .Values.redis.enabled) (not .Values.externalRedis.addrs) (eq .Values.config.environment "production") }}
{{- fail "redis.enabled=false needs externalRedis.addrs: production refuses the embedded in-process store" }}
{{- end }}
{{- if and .Values.redis.enabled (gt (int .Values.config.redis.minReplicaAcks) 0) }}
{{- fail "config.redis.minReplicaAcks needs a Redis with replicas: the bundled Redis has none, so every payment would fail (use externalRedis)" }}
{{- end }}
{{- if and (eq .Values.externalRedis.mode "sentinel") (not .Values.redis.enabled) (not .Values.externalRedis.masterName) }}
{{- fail "externalRedis.mode=sentinel needs externalRedis.masterName" }}
{{- end }}
{{- if and .Values.auth.keys .Values.auth.existingSecret }}
{{- fail "set auth.keys or auth.existingSecret, not both: the pods read one keys file" }}
{{- end }}
{{- if and (eq .Values.config.environment "production") (not (include "payments.auth.enabled" .)) (not .Values.tls.clientCA.secretName) }}
{{- fail "production needs callers to authenticate: set auth.keys (lines \"<merchant> sha256:<hex>\"), auth.existingSecret, or tls.clientCA for mTLS; the server refuses to start without one" }}
{{- end }}
{{- if and (eq .Values.tls.mode "secret") (not .Values.tls.secretName) }}
{{- fail "tls.mode=secret needs tls.secretName, a kubernetes.io/tls Secret" }}
{{- end }}
{{- if and (eq .Values.tls.mode "certManager") (not .Values.tls.certManager.issuerRef.name) }}
{{- fail "tls.mode=certManager needs tls.certManager.issuerRef.name, the Issuer or ClusterIssuer that signs the Certificate" }}
{{- end }}
{{- if and .Values.tls.clientCA.secretName (not (include "payments.tls.enabled" .)) }}
{{- fail "tls.clientCA needs tls.mode secret or certManager: behind a mesh the client certificate never reaches the pod" }}
{{- end }}
{{- end }}
