{{/* Chart name, overridable. */}}
{{- define "triggers-api.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/*
Fully qualified app name. Truncated to 63 characters less room for the
"-worker" / "-metrics" suffixes, since some names are DNS labels.
*/}}
{{- define "triggers-api.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 55 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 55 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 55 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "triggers-api.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Labels that never change over a release's life: used in selectors. */}}
{{- define "triggers-api.selectorLabels" -}}
app.kubernetes.io/name: {{ include "triggers-api.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "triggers-api.labels" -}}
helm.sh/chart: {{ include "triggers-api.chart" . }}
{{ include "triggers-api.selectorLabels" . }}
app.kubernetes.io/version: {{ include "triggers-api.imageTag" . | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: triggers-api
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/* Selector labels of one role; call with (dict "root" $ "role" "api"). */}}
{{- define "triggers-api.roleSelectorLabels" -}}
{{ include "triggers-api.selectorLabels" .root }}
app.kubernetes.io/component: {{ .role }}
{{- end -}}

{{- define "triggers-api.roleLabels" -}}
{{ include "triggers-api.labels" .root }}
app.kubernetes.io/component: {{ .role }}
{{- end -}}

{{/* Name of a role's objects: the api keeps the plain name (it is the Service). */}}
{{- define "triggers-api.roleName" -}}
{{- if eq .role "api" -}}
{{- include "triggers-api.fullname" .root -}}
{{- else -}}
{{- printf "%s-%s" (include "triggers-api.fullname" .root) .role -}}
{{- end -}}
{{- end -}}

{{- define "triggers-api.imageTag" -}}
{{- default .Chart.AppVersion .Values.image.tag -}}
{{- end -}}

{{- define "triggers-api.image" -}}
{{- if .Values.image.digest -}}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest -}}
{{- else -}}
{{- printf "%s:%s" .Values.image.repository (include "triggers-api.imageTag" .) -}}
{{- end -}}
{{- end -}}

{{- define "triggers-api.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "triggers-api.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/* The Secret holding DATABASE_URL, REDIS_URL and TRIGGERS_ADMIN_TOKEN. */}}
{{- define "triggers-api.secretName" -}}
{{- default (include "triggers-api.fullname" .) .Values.secret.existingSecret -}}
{{- end -}}

{{/*
Replicas a role runs with at least: what a PodDisruptionBudget can protect.
With an HPA that is its minReplicas.
*/}}
{{- define "triggers-api.minReplicas" -}}
{{- $r := index .root.Values .role -}}
{{- if $r.autoscaling.enabled -}}
{{- $r.autoscaling.minReplicas -}}
{{- else -}}
{{- $r.replicas -}}
{{- end -}}
{{- end -}}

{{/*
Seconds a role may take to stop: the preStop sleep (the endpoint removal
reaches every load balancer meanwhile), the service's own drain, and a
margin before the kubelet's SIGKILL.
*/}}
{{- define "triggers-api.terminationGrace" -}}
{{- $r := index .root.Values .role -}}
{{- add .root.Values.lifecycle.preStopSleepSeconds $r.shutdownTimeoutSeconds .root.Values.lifecycle.killMarginSeconds -}}
{{- end -}}
