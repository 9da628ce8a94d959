{{/* Chart name, truncated to the 63 characters a label value allows. */}}
{{- define "scim-sidecar.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Fully qualified app name. */}}
{{- define "scim-sidecar.fullname" -}}
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

{{- define "scim-sidecar.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "scim-sidecar.selectorLabels" -}}
app.kubernetes.io/name: {{ include "scim-sidecar.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "scim-sidecar.labels" -}}
helm.sh/chart: {{ include "scim-sidecar.chart" . }}
{{ include "scim-sidecar.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{- define "scim-sidecar.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "scim-sidecar.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* The Secret holding the realms' bearer tokens and API keys. */}}
{{- define "scim-sidecar.secretName" -}}
{{- default (include "scim-sidecar.fullname" .) .Values.secrets.existingSecret }}
{{- end }}

{{/* The port of config.listen ("0.0.0.0:8080", "[::]:8080"). */}}
{{- define "scim-sidecar.port" -}}
{{- regexFind "[0-9]+$" .Values.config.listen | atoi }}
{{- end }}

{{/*
The sidecar's configuration (sidecar.yaml), from .Values.config, with each realm's
bearer_token_file (unless it uses bearer_token_sha256) and upstream.api_key_file pointing
into the mounted Secret. Empty optional strings are dropped (the sidecar rejects "").
*/}}
{{- define "scim-sidecar.config" -}}
{{- $config := deepCopy .Values.config }}
{{- if not $config.realms }}
{{- fail "config.realms: configure at least one realm (see values.yaml)" }}
{{- end }}
{{- $dir := .Values.secrets.mountPath }}
{{- range $name, $realm := $config.realms }}
{{- if not $realm.url }}
{{- fail (printf "config.realms.%s.url is required" $name) }}
{{- end }}
{{- $upstream := default (dict) $realm.upstream }}
{{- if not $upstream.email }}
{{- fail (printf "config.realms.%s.upstream.email is required" $name) }}
{{- end }}
{{- if not $upstream.url }}
{{- $_ := unset $upstream "url" }}
{{- end }}
{{- $_ := set $upstream "api_key_file" (printf "%s/%s-api-key" $dir $name) }}
{{- $_ := set $realm "upstream" $upstream }}
{{- if not $realm.bearer_token_sha256 }}
{{- $_ := set $realm "bearer_token_file" (printf "%s/%s-bearer-token" $dir $name) }}
{{- end }}
{{- end }}
{{- toYaml $config }}
{{- end }}
