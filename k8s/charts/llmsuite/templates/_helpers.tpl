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

{{/* NetworkPolicy of a part: ingress only from its callers on its port, plus every pod of the
     `fromNamespaces` (internal teams) there and metrics.scrapeFrom on `metricsPort`, and the
     `helm test` pod (`admitTests`); egress only to what `egress` allows (llmsuite.egressRules
     context, without root). Both lists are exhaustive: NetworkPolicies deny what they do not list.
     (dict "root" $ "name" "retrieval" "port" 50062 "metricsPort" 9464 "fromNamespaces" (list)
           "admitTests" true "egress" (dict "calls" (list "postgresql"))) */}}
{{- define "llmsuite.callerNetworkPolicy" -}}
{{- $callers := include "llmsuite.callersOf" (dict "root" .root "target" .name) | fromJsonArray -}}
{{- if and .admitTests .root.Values.tests.enabled -}}
{{- $callers = append $callers "test" -}}
{{- end -}}
{{- $callers = concat $callers (.extraCallers | default list) -}}
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
  policyTypes: [Ingress, Egress]
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
  {{- include "llmsuite.egress" (merge (dict "root" .root) (.egress | default dict)) | nindent 2 }}
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

{{/* checksum/secrets annotation of a pod template: a hash of the Secret keys the pod reads
     (`keys`, a list of [secret, key]) and of the Secrets it mounts (`mounts`, names), as Helm's
     lookup finds them, so `helm upgrade` after one changed rolls the pods that use it. Nothing
     when lookup finds none of them (offline renders) or secrets.rollOnChange is false.
     (dict "root" $ "keys" (list (list "llmsuite" "gateway-api-key")) "mounts" (list "<secret>")) */}}
{{- define "llmsuite.secretsChecksum" -}}
{{- $root := .root -}}
{{- if $root.Values.secrets.rollOnChange -}}
{{- $found := false -}}
{{- $parts := list -}}
{{- range .keys -}}
{{- $secret := include "llmsuite.lookupSecret" (dict "root" $root "name" (index . 0)) | fromJson -}}
{{- if $secret -}}{{- $found = true -}}{{- end -}}
{{- $parts = append $parts (printf "%s/%s=%s" (index . 0) (index . 1) (dig "data" (index . 1) "" $secret)) -}}
{{- end -}}
{{- range .mounts -}}
{{- $secret := include "llmsuite.lookupSecret" (dict "root" $root "name" .) | fromJson -}}
{{- if $secret -}}{{- $found = true -}}{{- end -}}
{{- $parts = append $parts (printf "%s=%s" . (toJson (get $secret "data" | default dict))) -}}
{{- end -}}
{{- if $found -}}
checksum/secrets: {{ join "\n" $parts | sha256sum }}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* The port of a URL: the one it names, else its scheme's (https 443, else 80). */}}
{{- define "llmsuite.urlPort" -}}
{{- $host := (urlParse .).host -}}
{{- if regexMatch ":[0-9]+$" $host -}}
{{- regexFind "[0-9]+$" $host -}}
{{- else if hasPrefix "https:" . -}}
443
{{- else -}}
80
{{- end -}}
{{- end -}}

{{/* NetworkPolicy rule to the pods of one part of the release on one port, as a dict:
     (dict "root" $ "name" "redis" "port" 6379) */}}
{{- define "llmsuite.podEgressRule" -}}
{{- $labels := include "llmsuite.selectorLabels" . | fromYaml -}}
{{- toJson (dict "to" (list (dict "podSelector" (dict "matchLabels" $labels))) "ports" (list (dict "protocol" "TCP" "port" (int .port)))) -}}
{{- end -}}

{{/* NetworkPolicy rule to something outside the release: networkPolicy.egress.<what>'s peers
     (none: any address) on the given ports. (dict "to" <peers> "ports" (list 5432)) */}}
{{- define "llmsuite.externalEgressRule" -}}
{{- $ports := list -}}
{{- range .ports -}}
{{- $ports = append $ports (dict "protocol" "TCP" "port" (int .)) -}}
{{- end -}}
{{- $rule := dict "ports" $ports -}}
{{- with .to -}}
{{- $_ := set $rule "to" . -}}
{{- end -}}
{{- toJson $rule -}}
{{- end -}}

{{/* Egress rules of one part of the release, as a YAML list: the cluster DNS; each part it
     calls (`calls`) on its port, or for PostgreSQL, Redis and the inference server outside the
     release networkPolicy.egress's peers; the upstream model URLs (`urls`: the in-chart
     inference server by its labels, others on their port); the OTLP collector when `otlp` and
     global.otel.endpoint is set; the model hub (`modelHub`); then `extra` as given.
     (dict "root" $ "calls" <list> "urls" <list> "otlp" <bool> "modelHub" <bool> "extra" <list>) */}}
{{- define "llmsuite.egressRules" -}}
{{- $root := .root -}}
{{- $egress := $root.Values.networkPolicy.egress -}}
{{- $rules := list -}}
{{- with $egress.dns -}}
{{- $rules = append $rules (dict "to" . "ports" (list (dict "protocol" "UDP" "port" 53) (dict "protocol" "TCP" "port" 53))) -}}
{{- end -}}
{{- range $callee := .calls | default list -}}
{{- $target := index $root.Values.components $callee | default dict -}}
{{- if $target.enabled -}}
{{- $rules = append $rules (include "llmsuite.podEgressRule" (dict "root" $root "name" $callee "port" $target.port) | fromJson) -}}
{{- else if eq $callee "redis" -}}
{{- if include "llmsuite.inChartRedis" $root -}}
{{- $rules = append $rules (include "llmsuite.podEgressRule" (dict "root" $root "name" "redis" "port" 6379) | fromJson) -}}
{{- else if $root.Values.redis.external -}}
{{- $rules = append $rules (include "llmsuite.externalEgressRule" $egress.redis | fromJson) -}}
{{- end -}}
{{- else if eq $callee "postgresql" -}}
{{- if $root.Values.postgresql.enabled -}}
{{- $rules = append $rules (include "llmsuite.podEgressRule" (dict "root" $root "name" "postgresql" "port" 5432) | fromJson) -}}
{{- else -}}
{{- $rules = append $rules (include "llmsuite.externalEgressRule" $egress.postgresql | fromJson) -}}
{{- end -}}
{{- else if and (eq $callee "inference") $root.Values.inference.enabled -}}
{{- $rules = append $rules (include "llmsuite.podEgressRule" (dict "root" $root "name" "inference" "port" $root.Values.inference.port) | fromJson) -}}
{{- end -}}
{{- end -}}
{{- $inference := include "llmsuite.partName" (dict "root" $root "name" "inference") -}}
{{- range $url := .urls | default list -}}
{{- if $url -}}
{{- $host := regexReplaceAll ":[0-9]+$" (urlParse $url).host "" -}}
{{- $port := include "llmsuite.urlPort" $url -}}
{{- if and $root.Values.inference.enabled (or (eq $host $inference) (hasPrefix (printf "%s.%s." $inference $root.Release.Namespace) $host) (eq $host (printf "%s.%s" $inference $root.Release.Namespace))) -}}
{{- $rules = append $rules (include "llmsuite.podEgressRule" (dict "root" $root "name" "inference" "port" $port) | fromJson) -}}
{{- else -}}
{{- $rules = append $rules (include "llmsuite.externalEgressRule" (dict "to" $egress.upstream.to "ports" (list $port)) | fromJson) -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- if and .otlp $root.Values.global.otel.endpoint -}}
{{- with $root.Values.global.otel.endpoint -}}
{{- $rules = append $rules (include "llmsuite.externalEgressRule" (dict "to" $egress.otlp.to "ports" (list (include "llmsuite.urlPort" .))) | fromJson) -}}
{{- end -}}
{{- end -}}
{{- if .modelHub -}}
{{- $rules = append $rules (include "llmsuite.externalEgressRule" $egress.modelHub | fromJson) -}}
{{- end -}}
{{- $rules = concat $rules (.extra | default list) -}}
{{- toYaml (uniq $rules) -}}
{{- end -}}

{{/* The `egress` of a part's NetworkPolicy (policyTypes lists Egress: what is not here is denied).
     Same context as llmsuite.egressRules. */}}
{{- define "llmsuite.egress" -}}
{{- $rules := include "llmsuite.egressRules" . -}}
{{- if eq $rules "[]" -}}
egress: []
{{- else -}}
egress:
{{ $rules | indent 2 }}
{{- end -}}
{{- end -}}

{{/* How an autoscaler scales in: slowly, since a drained pod's streams may still be running. */}}
{{- define "llmsuite.scaleDownBehavior" -}}
scaleDown:
  stabilizationWindowSeconds: 300
  policies:
    - type: Pods
      value: 1
      periodSeconds: 60
{{- end -}}
