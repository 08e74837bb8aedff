{{- define "taskfleet.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "taskfleet.labels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{- define "taskfleet.selectorLabels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: operator
{{- end -}}

{{- define "taskfleet.serviceAccountName" -}}
{{- default (include "taskfleet.fullname" .) .Values.serviceAccount.name -}}
{{- end -}}

{{- /* The leader Lease: one per release, so two releases (or a namespaced and a
cluster-wide one) never elect a single leader between them. RBAC names it too. */ -}}
{{- define "taskfleet.leaseName" -}}
{{- printf "%s-leader" (include "taskfleet.fullname" .) | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- /* The namespaces a namespaced operator watches: .Values.namespaces, or the release's. */ -}}
{{- define "taskfleet.watchedNamespaces" -}}
{{- $names := .Values.namespaces | default (list .Release.Namespace) -}}
{{- join "," (uniq $names) -}}
{{- end -}}

{{- /* The operator's ServiceAccount as the API server names it in a request. */ -}}
{{- define "taskfleet.serviceAccountUser" -}}
{{- printf "system:serviceaccount:%s:%s" .Release.Namespace (include "taskfleet.serviceAccountName" .) -}}
{{- end -}}
