{{/* Names, labels and small pieces shared by every template. */}}

{{- define "llmsuite.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "llmsuite.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* Object name of one part: (dict "root" $ "name" "gateway") */}}
{{- define "llmsuite.partName" -}}
{{- printf "%s-%s" (include "llmsuite.fullname" .root) .name | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "llmsuite.selectorLabels" -}}
app.kubernetes.io/name: {{ include "llmsuite.name" .root }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .name }}
{{- end -}}

{{- define "llmsuite.labels" -}}
{{ include "llmsuite.selectorLabels" . }}
app.kubernetes.io/part-of: llmsuite
app.kubernetes.io/version: {{ .root.Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .root.Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .root.Chart.Name .root.Chart.Version | replace "+" "_" }}
{{- end -}}

{{/* Image reference: (dict "root" $ "image" .image). Digest wins over tag; llmsuite images
     without a tag follow global.imageTag, then the chart's appVersion. */}}
{{- define "llmsuite.image" -}}
{{- $tag := .image.tag | default .root.Values.global.imageTag | default .root.Chart.AppVersion -}}
{{- if .image.digest -}}
{{- printf "%s@%s" .image.repository .image.digest -}}
{{- else -}}
{{- printf "%s:%s" .image.repository $tag -}}
{{- end -}}
{{- end -}}

{{/* In-cluster DNS name of a part's Service. */}}
{{- define "llmsuite.serviceHost" -}}
{{- printf "%s.%s.svc.%s" (include "llmsuite.partName" .) .root.Release.Namespace .root.Values.global.clusterDomain -}}
{{- end -}}

{{/* Restricted Pod Security Standard, pod level: (dict "uid" 10001) */}}
{{- define "llmsuite.podSecurityContext" -}}
runAsNonRoot: true
runAsUser: {{ .uid }}
runAsGroup: {{ .gid | default .uid }}
fsGroup: {{ .gid | default .uid }}
fsGroupChangePolicy: OnRootMismatch
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{/* Restricted Pod Security Standard, container level. */}}
{{- define "llmsuite.containerSecurityContext" -}}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
privileged: false
capabilities:
  drop: [ALL]
{{- end -}}

{{/* Components that list `target` in their calls: (dict "root" $ "target" "redis") */}}
{{- define "llmsuite.callersOf" -}}
{{- $callers := list -}}
{{- range $name, $c := .root.Values.components -}}
{{- if and $c.enabled (has $.target $c.calls) -}}
{{- $callers = append $callers $name -}}
{{- end -}}
{{- end -}}
{{- toJson $callers -}}
{{- end -}}

{{/* NetworkPolicy admitting only the callers of a part on its port, plus every pod of the
     namespaces in "fromNamespaces" (internal teams) on that port:
     (dict "root" $ "name" "guardrails" "port" 50061 ["fromNamespaces" (list "team-a")]) */}}
{{- define "llmsuite.callerNetworkPolicy" -}}
{{- $callers := include "llmsuite.callersOf" (dict "root" .root "target" .name) | fromJsonArray -}}
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata:
  name: {{ include "llmsuite.partName" . }}
  labels:
    {{- include "llmsuite.labels" . | nindent 4 }}
spec:
  podSelector:
    matchLabels:
      {{- include "llmsuite.selectorLabels" . | nindent 6 }}
  policyTypes: [Ingress]
  {{- $scrape := and .metricsPort .root.Values.metrics.scrapeFrom }}
  {{- $teams := .fromNamespaces | default list }}
  {{- if or $callers $scrape $teams }}
  ingress:
    {{- if $callers }}
    - from:
        {{- range $callers }}
        - podSelector:
            matchLabels:
              {{- include "llmsuite.selectorLabels" (dict "root" $.root "name" .) | nindent 14 }}
        {{- end }}
      ports:
        - protocol: TCP
          port: {{ .port }}
    {{- end }}
    {{- if $teams }}
    # Internal teams: any pod of these namespaces, on the service port only (never metrics).
    - from:
        {{- range $teams }}
        - namespaceSelector:
            matchLabels:
              kubernetes.io/metadata.name: {{ . }}
        {{- end }}
      ports:
        - protocol: TCP
          port: {{ .port }}
    {{- end }}
    {{- if $scrape }}
    {{- include "llmsuite.scrapeRule" (dict "root" .root "port" .metricsPort) | nindent 4 }}
    {{- end }}
  {{- else }}
  ingress: []
  {{- end }}
{{- end -}}

{{/* NetworkPolicy ingress rule admitting metrics.scrapeFrom (Prometheus) to one port:
     (dict "root" $ "port" 9464). Empty scrapeFrom renders nothing: no rule, port closed. */}}
{{- define "llmsuite.scrapeRule" -}}
{{- with .root.Values.metrics.scrapeFrom -}}
- from:
    {{- toYaml . | nindent 4 }}
  ports:
    - protocol: TCP
      port: {{ $.port }}
{{- end -}}
{{- end -}}

{{/* In-flight grace of a component after its drain (SHUTDOWN_GRACE_SECONDS): the longest
     generation for those that carry streams, global.shutdownGraceSeconds for the others.
     (dict "root" $ "c" <component values>) */}}
{{- define "llmsuite.shutdownGrace" -}}
{{- $g := .root.Values.global -}}
{{- if .c.streams -}}
{{- max (int64 $g.maxGenerationSeconds) (int64 $g.shutdownGraceSeconds) -}}
{{- else -}}
{{- int64 $g.shutdownGraceSeconds -}}
{{- end -}}
{{- end -}}

{{/* terminationGracePeriodSeconds: longer than preStop + drain + in-flight grace.
     (dict "root" $ "c" <component values>) */}}
{{- define "llmsuite.terminationGrace" -}}
{{- $g := .root.Values.global -}}
{{- add $g.preStopSleepSeconds $g.drainSeconds (include "llmsuite.shutdownGrace" .) 5 -}}
{{- end -}}

{{/* "true" when the chart runs its own Redis: redis.enabled, unless redis.external names yours. */}}
{{- define "llmsuite.inChartRedis" -}}
{{- if and .Values.redis.enabled (not .Values.redis.external) -}}
true
{{- end -}}
{{- end -}}

{{/* Service tokens: the Secrets the chart mounts (never creates), named from the fullname unless
     values name them; `python -m llmsuite_common.service_keys --kubernetes <fullname>` prints
     Secrets with these default names. */}}
{{- define "llmsuite.tokenPublicKeysSecret" -}}
{{- .Values.serviceTokens.publicKeysSecret | default (printf "%s-token-public-keys" (include "llmsuite.fullname" .)) -}}
{{- end -}}

{{- define "llmsuite.tokenSigningKeySecret" -}}
{{- .Values.serviceTokens.signingKeySecret | default (printf "%s-token-signing-key" (include "llmsuite.fullname" .)) -}}
{{- end -}}

{{/* Fixed mount points of the mounted key material. */}}
{{- define "llmsuite.tokenPublicKeysDir" -}}/etc/llmsuite/token-public-keys{{- end -}}
{{- define "llmsuite.tokenSigningKeyDir" -}}/etc/llmsuite/token-signing-key{{- end -}}
{{- define "llmsuite.grpcTlsDir" -}}/etc/llmsuite/tls{{- end -}}

{{/* "true" when a component calls a gRPC component (so it signs service tokens and, under
     grpcTls, dials with TLS): (dict "root" $ "c" <component values>) */}}
{{- define "llmsuite.callsGrpc" -}}
{{- $calls := false -}}
{{- range $callee := .c.calls -}}
{{- $target := index $.root.Values.components $callee | default dict -}}
{{- if and $target.enabled (eq ($target.protocol | default "") "grpc") -}}
{{- $calls = true -}}
{{- end -}}
{{- end -}}
{{- if $calls }}true{{ end -}}
{{- end -}}

{{/* "true" when grpcTls applies to a component: it serves gRPC or calls a gRPC component.
     (dict "root" $ "c" <component values>) */}}
{{- define "llmsuite.grpcTlsOn" -}}
{{- if and .root.Values.grpcTls.enabled .c.enabled (or (eq .c.protocol "grpc") (include "llmsuite.callsGrpc" .)) -}}
true
{{- end -}}
{{- end -}}

{{/* Secret with a component's certificate, key and CA (cert-manager's tls.crt, tls.key, ca.crt):
     (dict "root" $ "name" "retrieval") */}}
{{- define "llmsuite.grpcTlsSecret" -}}
{{- printf "%s-tls" (include "llmsuite.partName" .) -}}
{{- end -}}
