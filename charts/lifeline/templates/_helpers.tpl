{{- define "lifeline.labels" -}}
app.kubernetes.io/name: lifeline
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: lifeline
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{- end -}}

{{- define "lifeline.selector" -}}
app.kubernetes.io/name: lifeline
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: operator
{{- end -}}

{{- define "lifeline.image" -}}
{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}
{{- end -}}

{{- define "lifeline.agentImage" -}}
{{- if .Values.agentImage.repository -}}
{{ .Values.agentImage.repository }}:{{ .Values.agentImage.tag | default .Values.image.tag | default .Chart.AppVersion }}
{{- else -}}
{{ include "lifeline.image" . }}
{{- end -}}
{{- end -}}

{{- define "lifeline.webhookService" -}}{{ .Release.Name }}-webhook{{- end -}}
{{- define "lifeline.webhookSecret" -}}{{ .Release.Name }}-webhook-tls{{- end -}}
{{- define "lifeline.webhookCertDir" -}}/etc/lifeline/webhook-tls{{- end -}}

{{- /* cert-manager or Helm-generated certificates for the webhook ("true" / ""). */ -}}
{{- define "lifeline.useCertManager" -}}
{{- $mode := .Values.webhook.certificates -}}
{{- if or (eq $mode "certManager") (and (eq $mode "auto") (.Capabilities.APIVersions.Has "cert-manager.io/v1")) -}}
true
{{- end -}}
{{- end -}}

{{- /* Resources that are cluster-scoped: a namespaced Role cannot grant them, so with
   watchNamespaces their rules go to the small cluster-scoped ClusterRole instead. */ -}}
{{- define "lifeline.clusterScopedResources" -}}
namespaces nodes persistentvolumes storageclasses volumesnapshotclasses volumesnapshotcontents
clusterkopfpeerings customresourcedefinitions subjectaccessreviews selfsubjectaccessreviews selfsubjectreviews tokenreviews
clusterroles clusterrolebindings priorityclasses validatingwebhookconfigurations mutatingwebhookconfigurations
{{- end -}}

{{- define "lifeline.webhookClientConfig" }}
      {{- if .root.Values.webhook.url }}
      url: {{ printf "%s%s" (trimSuffix "/" .root.Values.webhook.url) .path | quote }}
      {{- else }}
      service:
        name: {{ include "lifeline.webhookService" .root }}
        namespace: {{ .root.Release.Namespace }}
        path: {{ .path }}
        port: 443
      {{- end }}
      {{- with .caBundle }}
      caBundle: {{ . }}
      {{- end }}
{{- end }}
{{- define "lifeline.webhookNamespaceSelector" }}
    {{- if .Values.watchNamespaces }}
    namespaceSelector:
      matchExpressions:
        - key: kubernetes.io/metadata.name
          operator: In
          values: {{- toYaml .Values.watchNamespaces | nindent 12 }}
    {{- end }}
{{- end }}

{{- /* Routing labels added to every alert in files/alerts.yaml. */ -}}
{{- define "lifeline.alertExtraLabels" -}}
{{- with .Values.prometheusRule.additionalLabels }}{{ toYaml . | nindent 10 }}{{ end }}
{{- end -}}

{{- define "lifeline.runbook" -}}
{{ .root.Values.prometheusRule.runbookBaseURL }}#{{ lower .alert }}
{{- end -}}
