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
{{- end }}
