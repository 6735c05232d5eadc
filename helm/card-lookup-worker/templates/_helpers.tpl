{{/* Chart name, truncated to the 63 characters a label value allows. */}}
{{- define "card-lookup-worker.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Full name of the release's objects. The release name is used alone when it
already contains the chart name.
*/}}
{{- define "card-lookup-worker.fullname" -}}
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

{{- define "card-lookup-worker.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "card-lookup-worker.selectorLabels" -}}
app.kubernetes.io/name: {{ include "card-lookup-worker.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "card-lookup-worker.labels" -}}
helm.sh/chart: {{ include "card-lookup-worker.chart" . }}
{{ include "card-lookup-worker.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/component: worker
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{- define "card-lookup-worker.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "card-lookup-worker.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "card-lookup-worker.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}
{{- end }}

{{/* Name of the Secret holding the credentials, chart-managed or existing. */}}
{{- define "card-lookup-worker.secretName" -}}
{{- if .Values.secrets.existingSecret }}
{{- .Values.secrets.existingSecret }}
{{- else }}
{{- printf "%s-credentials" (include "card-lookup-worker.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}

{{/* "true" when the Kafka security protocol is SASL_PLAINTEXT or SASL_SSL. */}}
{{- define "card-lookup-worker.usesSasl" -}}
{{- if has .Values.config.kafka_security_protocol (list "SASL_PLAINTEXT" "SASL_SSL") }}true{{ end }}
{{- end }}

{{/*
Secret keys the container reads, as a dict from the worker's setting name to
the key in the Secret. The Kafka SASL password is included only with a SASL
protocol, so an existing Secret without that key still mounts.
*/}}
{{- define "card-lookup-worker.secretKeys" -}}
{{- $keys := dict "api_password" .Values.secrets.existingSecretKeys.api_password }}
{{- if include "card-lookup-worker.usesSasl" . }}
{{- $_ := set $keys "kafka_sasl_password" .Values.secrets.existingSecretKeys.kafka_sasl_password }}
{{- end }}
{{- if not .Values.secrets.existingSecret }}
{{- range $setting := keys $keys }}
{{- $_ := set $keys $setting $setting }}
{{- end }}
{{- end }}
{{- toJson $keys }}
{{- end }}

{{/*
A config value as an environment variable string. Helm reads every number in
values as float64, so whole numbers are printed without an exponent
(1048576, not 1.048576e+06), which the worker's integer settings require.
*/}}
{{- define "card-lookup-worker.envValue" -}}
{{- if kindIs "float64" . }}
{{- if eq (float64 (int64 .)) . }}{{ int64 . }}{{ else }}{{ . }}{{ end }}
{{- else }}
{{- . }}
{{- end }}
{{- end }}

{{/*
Seconds between SIGTERM and SIGKILL. Derived from the worker's drain time
unless set, and rejected when it leaves the worker no time to drain.
*/}}
{{- define "card-lookup-worker.terminationGracePeriodSeconds" -}}
{{- $shutdown := float64 .Values.config.shutdown_timeout_s }}
{{- if kindIs "invalid" .Values.terminationGracePeriodSeconds }}
{{- add (int64 (ceil $shutdown)) .Values.terminationGraceMarginSeconds }}
{{- else }}
{{- if le (float64 .Values.terminationGracePeriodSeconds) $shutdown }}
{{- fail (printf "terminationGracePeriodSeconds (%v) must be larger than config.shutdown_timeout_s (%v), or Kubernetes kills the worker before it finishes its in-flight requests; raise it or leave it null to derive it" .Values.terminationGracePeriodSeconds .Values.config.shutdown_timeout_s) }}
{{- end }}
{{- int64 .Values.terminationGracePeriodSeconds }}
{{- end }}
{{- end }}

{{/*
Checks of value combinations that values.schema.json cannot express with a
clear message. Included by the Deployment, so every render runs them.
*/}}
{{- define "card-lookup-worker.validate" -}}
{{- if and (not .Values.secrets.existingSecret) (not .Values.secrets.api_password) }}
{{- fail "secrets.api_password is empty: set it, or set secrets.existingSecret to the name of a Secret that holds the API password" }}
{{- end }}
{{- if and (include "card-lookup-worker.usesSasl" .) (not .Values.secrets.existingSecret) (not .Values.secrets.kafka_sasl_password) }}
{{- fail (printf "secrets.kafka_sasl_password is empty but config.kafka_security_protocol is %s: set it, or set secrets.existingSecret" .Values.config.kafka_security_protocol) }}
{{- end }}
{{- if and .Values.autoscaling.enabled .Values.keda.enabled }}
{{- fail "autoscaling.enabled and keda.enabled are both true: KEDA creates its own HorizontalPodAutoscaler, so enable only one" }}
{{- end }}
{{- if and .Values.autoscaling.enabled (gt (int .Values.autoscaling.minReplicas) (int .Values.autoscaling.maxReplicas)) }}
{{- fail (printf "autoscaling.minReplicas (%v) is above autoscaling.maxReplicas (%v)" .Values.autoscaling.minReplicas .Values.autoscaling.maxReplicas) }}
{{- end }}
{{- if and .Values.autoscaling.enabled (gt (int .Values.autoscaling.maxReplicas) (int .Values.requestTopicPartitions)) }}
{{- fail (printf "autoscaling.maxReplicas (%v) is above requestTopicPartitions (%v): replicas beyond the request topic's partition count sit idle; lower maxReplicas or add partitions and raise requestTopicPartitions" .Values.autoscaling.maxReplicas .Values.requestTopicPartitions) }}
{{- end }}
{{- if and .Values.keda.enabled (gt (int .Values.keda.minReplicaCount) (int .Values.keda.maxReplicaCount)) }}
{{- fail (printf "keda.minReplicaCount (%v) is above keda.maxReplicaCount (%v)" .Values.keda.minReplicaCount .Values.keda.maxReplicaCount) }}
{{- end }}
{{- if and .Values.keda.enabled (gt (int .Values.keda.maxReplicaCount) (int .Values.requestTopicPartitions)) }}
{{- fail (printf "keda.maxReplicaCount (%v) is above requestTopicPartitions (%v): replicas beyond the request topic's partition count sit idle; lower maxReplicaCount or add partitions and raise requestTopicPartitions" .Values.keda.maxReplicaCount .Values.requestTopicPartitions) }}
{{- end }}
{{- if and .Values.keda.enabled (include "card-lookup-worker.usesSasl" .) (not .Values.keda.triggerAuthenticationName) }}
{{- fail (printf "keda.triggerAuthenticationName is empty but config.kafka_security_protocol is %s: KEDA needs a TriggerAuthentication with the Kafka SASL credentials to read the consumer group's lag" .Values.config.kafka_security_protocol) }}
{{- end }}
{{- if gt (int .Values.config.api_min_concurrency) (int .Values.config.api_max_concurrency) }}
{{- fail (printf "config.api_min_concurrency (%v) is above config.api_max_concurrency (%v); lower the floor or raise the ceiling" .Values.config.api_min_concurrency .Values.config.api_max_concurrency) }}
{{- end }}
{{- end }}
