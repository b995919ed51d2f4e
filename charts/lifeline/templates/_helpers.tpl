{{- define "lifeline.labels" -}}
app.kubernetes.io/name: lifeline
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: lifeline
{{- end -}}
{{- define "lifeline.selector" -}}
app.kubernetes.io/name: lifeline
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}
