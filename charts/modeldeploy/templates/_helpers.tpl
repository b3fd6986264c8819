{{/* Names and labels shared by every template. */}}

{{- define "modeldeploy.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "modeldeploy.fullname" -}}
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

{{- define "modeldeploy.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Standard labels (https://helm.sh/docs/chart_best_practices/labels/) */}}
{{- define "modeldeploy.labels" -}}
helm.sh/chart: {{ include "modeldeploy.chart" . }}
{{ include "modeldeploy.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: modeldeploy
{{- end }}

{{- define "modeldeploy.selectorLabels" -}}
app.kubernetes.io/name: {{ include "modeldeploy.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "modeldeploy.operatorSelectorLabels" -}}
{{ include "modeldeploy.selectorLabels" . }}
app.kubernetes.io/component: operator
{{- end }}

{{- define "modeldeploy.operatorName" -}}
{{- printf "%s-operator" (include "modeldeploy.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "modeldeploy.serviceAccountName" -}}
{{- default (include "modeldeploy.operatorName" .) .Values.serviceAccount.name }}
{{- end }}

{{- define "modeldeploy.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}

{{/* Namespaces where model server pods run as far as the chart knows: the watched ones, or the release's. */}}
{{- define "modeldeploy.serverNamespaces" -}}
{{- toJson (.Values.watchNamespaces | default (list .Release.Namespace)) }}
{{- end }}

{{/* Labels the operator puts on every model server pod (operator/modeldeploy_operator/builders.py). */}}
{{- define "modeldeploy.serverPodLabels" -}}
app.kubernetes.io/name: modeldeploy-server
app.kubernetes.io/managed-by: modeldeploy
{{- end }}

{{/*
The operator's RBAC rules: exactly what it does today (operator/modeldeploy_operator/apply.py is the only
module that talks to the API server), nothing more.
- modeldeployments get/list/watch: Kopf's watch, the fresh read before each reconcile, the resync loop;
  patch: consuming the one-shot abort/promote annotations (metadata only)
- modeldeployments/status patch: status writes (merge patch); Kopf itself writes nothing
  (event handlers only: no finalizers, no progress annotations)
- deployments, services: server-side apply (patch, plus create when absent), Kopf's watch of children
  and pruning by label (list, watch, delete); Deployments are also read one by one (get)
- httproutes: the Gateway API route of a canary (apply) and its pruning (list, delete); listed on every
  reconcile, so needed even where the Gateway API is not installed (a 403 would stall every resource)
- pods list: canary analysis finds a track's ready pods to read their /metrics, and the validation gate
  reads its Job pod's termination message (the score)
- jobs get/create/patch: the validation gate's Job (server-side apply), read for its result
- events (core/v1) create: the operator's Events and Kopf's error Events
Not granted, and not needed: secrets, configmaps, namespaces, CRDs (Kopf then logs that it cannot observe
them and uses the exact namespaces/resources it started with), events.k8s.io, update, deletecollection.
*/}}
{{- define "modeldeploy.operatorRules" -}}
- apiGroups: [modeldeploy.dev]
  resources: [modeldeployments]
  verbs: [get, list, watch, patch]
- apiGroups: [modeldeploy.dev]
  resources: [modeldeployments/status]
  verbs: [patch]
- apiGroups: [apps]
  resources: [deployments]
  verbs: [get, list, watch, create, patch, delete]
- apiGroups: [""]
  resources: [services]
  verbs: [list, watch, create, patch, delete]
- apiGroups: [""]
  resources: [pods]
  verbs: [list]
- apiGroups: [gateway.networking.k8s.io]
  resources: [httproutes]
  verbs: [list, create, patch, delete]
- apiGroups: [batch]
  resources: [jobs]
  verbs: [get, create, patch]
- apiGroups: [""]
  resources: [events]
  verbs: [create]
{{- end }}
