{{/*
One llmsuite service, rendered from components.<name> in values:
ServiceAccount, ConfigMap, Service, Deployment, HPA, PodDisruptionBudget, NetworkPolicy.
Context: (dict "root" $ "name" "<name>" "c" <component values>)
*/}}

{{/* Every env var the service reads from the ConfigMap; names are settings fields. */}}
{{- define "llmsuite.componentEnv" -}}
{{- $root := .root -}}
{{- $c := .c -}}
{{- $g := $root.Values.global -}}
{{- $prefix := upper .name -}}
{{- $env := dict
  "OTEL_SERVICE_NAME" .name
  "HOST" $g.listenHost
  "PORT" (printf "%d" (int64 $c.port))
  "LOG_LEVEL" $g.logLevel
  "OTEL_EXPORTER_OTLP_ENDPOINT" $g.otel.endpoint
  "OTEL_EXPORTER_OTLP_PROTOCOL" $g.otel.protocol
  "OTEL_TRACES_SAMPLER" $g.otel.sampler
  "OTEL_TRACES_SAMPLER_ARG" (printf "%v" $g.otel.samplerArg)
  "DRAIN_SECONDS" (printf "%d" (int64 $g.drainSeconds))
  "SHUTDOWN_GRACE_SECONDS" (include "llmsuite.shutdownGrace" .)
  "GRPC_MAX_CONNECTION_AGE_SECONDS" (printf "%d" (int64 $g.grpcMaxConnectionAgeSeconds))
  "GRPC_MAX_MESSAGE_BYTES" (printf "%d" (int64 $g.grpcMaxMessageBytes))
-}}
{{- /* Client side of the call graph: dns:/// + headless Service = one address per pod,
       which the clients' round_robin policy spreads calls over. */ -}}
{{- /* The migration Job (migrations.yaml) owns the schema: the service only checks it. */ -}}
{{- if and $root.Values.migrations.enabled (hasKey $root.Values.migrations.components .name) -}}
{{- $_ := set $env (printf "%s_DATABASE_MIGRATE_ON_START" $prefix) "false" -}}
{{- end -}}
{{- range $callee := $c.calls -}}
{{- $target := index $root.Values.components $callee | default dict -}}
{{- if and $target.enabled (eq ($target.protocol | default "") "grpc") -}}
{{- $host := include "llmsuite.serviceHost" (dict "root" $root "name" $callee) -}}
{{- $_ := set $env (printf "%s_%s_TARGET" $prefix (upper $callee)) (printf "dns:///%s:%d" $host (int64 $target.port)) -}}
{{- end -}}
{{- end -}}
{{- if eq $c.protocol "grpc" -}}
{{- $_ := set $env "METRICS_PORT" (printf "%d" (int64 $root.Values.metrics.port)) -}}
{{- /* A stream open when its connection reaches the age above runs on for up to this long. */ -}}
{{- $_ := set $env "GRPC_MAX_CONNECTION_AGE_GRACE_SECONDS" (printf "%d" (int64 $g.maxGenerationSeconds)) -}}
{{- /* Service tokens: every gRPC service verifies each call's token with the public keys. */ -}}
{{- $_ := set $env "GRPC_AUTH_PUBLIC_KEYS_FILE" (printf "%s/jwks.json" (include "llmsuite.tokenPublicKeysDir" $root)) -}}
{{- $_ := set $env "GRPC_REFLECTION_OPEN" (printf "%t" $root.Values.serviceTokens.reflectionOpen) -}}
{{- end -}}
{{- if include "llmsuite.callsGrpc" . -}}
{{- /* A caller of gRPC services signs the token each call carries. */ -}}
{{- $_ := set $env (printf "%s_TOKEN_SIGNING_KEY_FILE" $prefix) (printf "%s/signing-key.pem" (include "llmsuite.tokenSigningKeyDir" $root)) -}}
{{- $_ := set $env (printf "%s_TOKEN_TTL_SECONDS" $prefix) (printf "%d" (int64 $root.Values.serviceTokens.tokenTtlSeconds)) -}}
{{- end -}}
{{- if include "llmsuite.grpcTlsOn" . -}}
{{- /* One certificate per component: its server certificate, and its client certificate on the
       calls it makes; ca.crt verifies the peers. */ -}}
{{- $dir := include "llmsuite.grpcTlsDir" $root -}}
{{- $_ := set $env "GRPC_TLS_CERT_FILE" (printf "%s/tls.crt" $dir) -}}
{{- $_ := set $env "GRPC_TLS_KEY_FILE" (printf "%s/tls.key" $dir) -}}
{{- $_ := set $env "GRPC_TLS_CA_FILE" (printf "%s/ca.crt" $dir) -}}
{{- if eq $c.protocol "grpc" -}}
{{- $_ := set $env "GRPC_TLS_REQUIRE_CLIENT_CERT" (printf "%t" $root.Values.grpcTls.requireClientCert) -}}
{{- end -}}
{{- end -}}
{{- if hasKey $c "models" -}}
{{- $_ := set $env (printf "%s_MODELS" $prefix) (toJson $c.models) -}}
{{- end -}}
{{- if $c.routing -}}
{{- $_ := set $env (printf "%s_ROUTING_FILE" $prefix) "/etc/llmsuite/routing/routing.yaml" -}}
{{- end -}}
{{- if $c.policies -}}
{{- $_ := set $env (printf "%s_POLICY_DIR" $prefix) "/etc/llmsuite/policies" -}}
{{- end -}}
{{- if hasKey $c "console" -}}
{{- /* The web console at /console (GATEWAY_CONSOLE_*): a page over the API, no data of its own. */ -}}
{{- $_ := set $env (printf "%s_CONSOLE_ENABLED" $prefix) (printf "%t" $c.console.enabled) -}}
{{- $_ := set $env (printf "%s_CONSOLE_TRACE_URL" $prefix) ($c.console.traceUrl | default "") -}}
{{- end -}}
{{- if hasKey $c "upstreamBaseUrl" -}}
{{- $upstream := $c.upstreamBaseUrl -}}
{{- if and (not $upstream) $root.Values.inference.enabled -}}
{{- $host := include "llmsuite.serviceHost" (dict "root" $root "name" "inference") -}}
{{- $upstream = printf "http://%s:%d/v1" $host (int64 $root.Values.inference.port) -}}
{{- end -}}
{{- $_ := set $env (printf "%s_UPSTREAM_BASE_URL" $prefix) $upstream -}}
{{- /* The longest generation: what every grace on a stream's path is sized for. */ -}}
{{- $_ := set $env (printf "%s_TOTAL_TIMEOUT_SECONDS" $prefix) (printf "%d" (int64 $g.maxGenerationSeconds)) -}}
{{- end -}}
{{- toYaml (mergeOverwrite $env ($c.env | default dict)) -}}
{{- end -}}

{{/* Exec health probe of a gRPC component serving TLS (llmsuite_common.grpc_probe): the pod's
     own port on loopback, the server certificate verified for the name clients dial, the pod's
     certificate presented as client (mTLS); it answers within the probe's timeout.
     (dict "root" $ "name" "retrieval" "c" <component values> "timeout" <seconds>) */}}
{{- define "llmsuite.grpcProbeCommand" -}}
{{- $dir := include "llmsuite.grpcTlsDir" .root -}}
- python
- -m
- llmsuite_common.grpc_probe
- --port
- {{ .c.port | quote }}
- --server-name
- {{ include "llmsuite.serviceHost" (dict "root" .root "name" .name) }}
- --ca-file
- {{ $dir }}/ca.crt
- --cert-file
- {{ $dir }}/tls.crt
- --key-file
- {{ $dir }}/tls.key
- --timeout
- {{ maxf 0.5 (subf .timeout 0.5) | toString | quote }}
{{- end -}}

{{- define "llmsuite.probeTiming" -}}
periodSeconds: {{ .periodSeconds }}
failureThreshold: {{ .failureThreshold }}
timeoutSeconds: {{ .timeoutSeconds }}
{{- end -}}

{{- define "llmsuite.component" -}}
{{- $root := .root -}}
{{- $c := .c -}}
{{- $name := include "llmsuite.partName" . -}}
{{- $portName := $c.protocol -}}
{{- $signer := include "llmsuite.callsGrpc" . -}}
{{- $tls := include "llmsuite.grpcTlsOn" . -}}
{{- $secretEnv := deepCopy ($c.secretEnv | default dict) -}}
{{- if and (has "redis" $c.calls) (or (include "llmsuite.inChartRedis" $root) $root.Values.redis.external) -}}
{{- $_ := set $secretEnv (printf "%s_REDIS_URL" (upper .name)) (dict "key" $root.Values.redis.urlSecretKey) -}}
{{- end -}}
{{- /* What the pod reads from Secrets, for checksum/secrets. */ -}}
{{- $secretKeys := list -}}
{{- range $envName, $ref := $secretEnv -}}
{{- $secretKeys = append $secretKeys (list ($ref.secret | default $root.Values.secrets.name) $ref.key) -}}
{{- end -}}
{{- $mounts := list -}}
{{- if eq $c.protocol "grpc" -}}{{- $mounts = append $mounts (include "llmsuite.tokenPublicKeysSecret" $root) -}}{{- end -}}
{{- if $signer -}}{{- $mounts = append $mounts (include "llmsuite.tokenSigningKeySecret" $root) -}}{{- end -}}
{{- if $tls -}}{{- $mounts = append $mounts (include "llmsuite.grpcTlsSecret" .) -}}{{- end -}}
{{- /* Where its pods may connect: what it calls, its upstream model URLs, its own extra rules. */ -}}
{{- $urls := list -}}
{{- if hasKey $c "upstreamBaseUrl" -}}
{{- $urls = append $urls $c.upstreamBaseUrl -}}
{{- range $model, $m := (dig "models" dict ($c.routing | default dict)) -}}
{{- range $d := ($m.deployments | default list) -}}
{{- $urls = append $urls $d.base_url -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- $egress := dict "calls" $c.calls "urls" $urls "otlp" true "extra" ($c.egress | default list) -}}
{{- $keda := and $c.autoscaling.enabled $c.autoscaling.keda.enabled -}}
---
apiVersion: v1
kind: ServiceAccount
metadata:
  name: {{ $name }}
  labels:
    {{- include "llmsuite.labels" . | nindent 4 }}
automountServiceAccountToken: false
---
apiVersion: v1
kind: ConfigMap
metadata:
  name: {{ $name }}
  labels:
    {{- include "llmsuite.labels" . | nindent 4 }}
data:
  {{- include "llmsuite.componentEnv" . | nindent 2 }}
{{- if $c.routing }}
---
apiVersion: v1
kind: ConfigMap
metadata:
  name: {{ $name }}-routing
  labels:
    {{- include "llmsuite.labels" (dict "root" $root "name" (printf "%s-routing" .name)) | nindent 4 }}
data:
  routing.yaml: |
    {{- toYaml $c.routing | nindent 4 }}
{{- end }}
{{- if $c.policies }}
---
apiVersion: v1
kind: ConfigMap
metadata:
  name: {{ $name }}-policies
  labels:
    {{- include "llmsuite.labels" (dict "root" $root "name" (printf "%s-policies" .name)) | nindent 4 }}
data:
  {{- range $org, $policy := $c.policies }}
  {{ $org }}.yaml: |
    {{- toYaml $policy | nindent 4 }}
  {{- end }}
{{- end }}
---
apiVersion: v1
kind: Service
metadata:
  name: {{ $name }}
  labels:
    {{- include "llmsuite.labels" . | nindent 4 }}
spec:
  {{- if eq $c.protocol "grpc" }}
  # Headless: DNS returns every ready pod, so gRPC clients balance per call, not per connection.
  clusterIP: None
  {{- else }}
  type: ClusterIP
  {{- end }}
  selector:
    {{- include "llmsuite.selectorLabels" . | nindent 4 }}
  ports:
    - name: {{ $portName }}
      port: {{ $c.port }}
      targetPort: {{ $portName }}
      protocol: TCP
      {{- if and (eq $c.protocol "grpc") $tls }}
      # gRPC over TLS: no standard appProtocol names it (kubernetes.io/h2c is cleartext only).
      {{- else }}
      appProtocol: {{ ternary "kubernetes.io/h2c" "http" (eq $c.protocol "grpc") }}
      {{- end }}
    {{- if eq $c.protocol "grpc" }}
    - name: metrics
      port: {{ $root.Values.metrics.port }}
      targetPort: metrics
      protocol: TCP
      appProtocol: http
    {{- end }}
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: {{ $name }}
  labels:
    {{- include "llmsuite.labels" . | nindent 4 }}
spec:
  {{- if not $c.autoscaling.enabled }}
  replicas: {{ $c.replicas }}
  {{- end }}
  revisionHistoryLimit: 5
  strategy:
    type: RollingUpdate
    rollingUpdate:
      maxSurge: 1
      maxUnavailable: 0
  selector:
    matchLabels:
      {{- include "llmsuite.selectorLabels" . | nindent 6 }}
  template:
    metadata:
      labels:
        {{- include "llmsuite.labels" . | nindent 8 }}
      annotations:
        checksum/config: {{ include "llmsuite.componentEnv" . | sha256sum }}
        {{- with include "llmsuite.secretsChecksum" (dict "root" $root "keys" $secretKeys "mounts" $mounts) }}
        {{- . | nindent 8 }}
        {{- end }}
        {{- with $c.podAnnotations }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
    spec:
      serviceAccountName: {{ $name }}
      automountServiceAccountToken: false
      enableServiceLinks: false
      # preStop + drain + in-flight grace (streams: global.maxGenerationSeconds) + 5.
      terminationGracePeriodSeconds: {{ include "llmsuite.terminationGrace" . }}
      securityContext:
        {{- include "llmsuite.podSecurityContext" (dict "uid" 10001) | nindent 8 }}
      {{- with $root.Values.global.imagePullSecrets }}
      imagePullSecrets:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      topologySpreadConstraints:
        - maxSkew: 1
          topologyKey: kubernetes.io/hostname
          whenUnsatisfiable: ScheduleAnyway
          labelSelector:
            matchLabels:
              {{- include "llmsuite.selectorLabels" . | nindent 14 }}
      containers:
        - name: {{ .name }}
          image: {{ include "llmsuite.image" (dict "root" $root "image" $c.image) }}
          imagePullPolicy: {{ $root.Values.global.imagePullPolicy }}
          ports:
            - name: {{ $portName }}
              containerPort: {{ $c.port }}
              protocol: TCP
            {{- if eq $c.protocol "grpc" }}
            - name: metrics
              containerPort: {{ $root.Values.metrics.port }}
              protocol: TCP
            {{- end }}
          envFrom:
            - configMapRef:
                name: {{ $name }}
          {{- with $secretEnv }}
          env:
            {{- range $envName, $ref := . }}
            - name: {{ $envName }}
              valueFrom:
                secretKeyRef:
                  name: {{ $ref.secret | default $root.Values.secrets.name }}
                  key: {{ $ref.key }}
                  {{- if $ref.optional }}
                  optional: true
                  {{- end }}
            {{- end }}
          {{- end }}
          {{- if and (eq $c.protocol "grpc") $tls }}
          {{- /* The kubelet's native gRPC probe speaks plaintext only, and the service serves
                 nothing but TLS once it has a certificate. No health-only plaintext port exists,
                 and tcpSocket would call a pod ready while it is still loading (the port opens
                 before the model does; retrieval takes minutes). So startup and readiness run the
                 same grpc.health.v1 check from inside the pod, over the pod's own TLS (and mTLS)
                 with the image's Python (llmsuite_common.grpc_probe): NOT_SERVING while loading
                 and draining keeps its meaning. Each run costs a fresh interpreter (about 0.1 CPU
                 second and 40 MB for a moment), which is why liveness, polled for the pod's whole
                 life, only checks that the port accepts connections: it no longer notices a
                 wedged event loop, which readiness still takes out of the Service. */}}
          # TLS: exec health probes (grpc.health.v1 over the pod's own TLS); liveness is a TCP check.
          # The kubelet's gRPC probe cannot speak TLS; see templates/_component.tpl for the reasons.
          startupProbe:
            exec:
              command:
                {{- include "llmsuite.grpcProbeCommand" (dict "root" $root "name" .name "c" $c "timeout" $c.probes.startup.timeoutSeconds) | nindent 16 }}
            {{- include "llmsuite.probeTiming" $c.probes.startup | nindent 12 }}
          livenessProbe:
            tcpSocket: {port: {{ $portName }}}
            {{- include "llmsuite.probeTiming" $c.probes.liveness | nindent 12 }}
          readinessProbe:
            exec:
              command:
                {{- include "llmsuite.grpcProbeCommand" (dict "root" $root "name" .name "c" $c "timeout" $c.probes.readiness.timeoutSeconds) | nindent 16 }}
            {{- include "llmsuite.probeTiming" $c.probes.readiness | nindent 12 }}
          {{- else if eq $c.protocol "grpc" }}
          # grpc.health.v1: NOT_SERVING while loading and draining. The kubelet stops liveness
          # and startup probes once the pod is deleted, so draining never triggers a restart.
          startupProbe:
            grpc: {port: {{ $c.port }}}
            {{- include "llmsuite.probeTiming" $c.probes.startup | nindent 12 }}
          livenessProbe:
            grpc: {port: {{ $c.port }}}
            {{- include "llmsuite.probeTiming" $c.probes.liveness | nindent 12 }}
          readinessProbe:
            grpc: {port: {{ $c.port }}}
            {{- include "llmsuite.probeTiming" $c.probes.readiness | nindent 12 }}
          {{- else }}
          startupProbe:
            httpGet: {path: {{ $c.httpPaths.liveness }}, port: {{ $portName }}}
            {{- include "llmsuite.probeTiming" $c.probes.startup | nindent 12 }}
          livenessProbe:
            httpGet: {path: {{ $c.httpPaths.liveness }}, port: {{ $portName }}}
            {{- include "llmsuite.probeTiming" $c.probes.liveness | nindent 12 }}
          readinessProbe:
            httpGet: {path: {{ $c.httpPaths.readiness }}, port: {{ $portName }}}
            {{- include "llmsuite.probeTiming" $c.probes.readiness | nindent 12 }}
          {{- end }}
          lifecycle:
            # Lets endpoint removal reach proxies and resolvers before SIGTERM starts the drain.
            preStop:
              sleep:
                seconds: {{ $root.Values.global.preStopSleepSeconds }}
          resources:
            {{- toYaml $c.resources | nindent 12 }}
          securityContext:
            {{- include "llmsuite.containerSecurityContext" . | nindent 12 }}
          volumeMounts:
            - name: tmp
              mountPath: /tmp
            {{- if eq $c.protocol "grpc" }}
            - name: token-public-keys
              mountPath: {{ include "llmsuite.tokenPublicKeysDir" $root }}
              readOnly: true
            {{- end }}
            {{- if $signer }}
            - name: token-signing-key
              mountPath: {{ include "llmsuite.tokenSigningKeyDir" $root }}
              readOnly: true
            {{- end }}
            {{- if $tls }}
            - name: grpc-tls
              mountPath: {{ include "llmsuite.grpcTlsDir" $root }}
              readOnly: true
            {{- end }}
            {{- if $c.routing }}
            # A directory mount, not subPath: the kubelet swaps the file on ConfigMap updates.
            - name: routing
              mountPath: /etc/llmsuite/routing
              readOnly: true
            {{- end }}
            {{- if $c.policies }}
            # Guardrails policies, one file per org; reloaded when the kubelet swaps the files.
            - name: policies
              mountPath: /etc/llmsuite/policies
              readOnly: true
            {{- end }}
      volumes:
        - name: tmp
          emptyDir:
            sizeLimit: {{ $c.tmpSizeLimit | default "256Mi" }}
        {{- /* Directory mounts (no subPath), so the kubelet keeps the files current; the services
               read them at start, hence the restarts the rotation steps call for. Mode 0440
               (288): the owner and the pod's fsGroup (10001) read, nobody writes. */}}
        {{- if eq $c.protocol "grpc" }}
        - name: token-public-keys
          secret:
            secretName: {{ include "llmsuite.tokenPublicKeysSecret" $root }}
            defaultMode: 288
            items:
              - {key: jwks.json, path: jwks.json}
        {{- end }}
        {{- if $signer }}
        # The private key: the gateway's pods alone mount it.
        - name: token-signing-key
          secret:
            secretName: {{ include "llmsuite.tokenSigningKeySecret" $root }}
            defaultMode: 288
            items:
              - {key: signing-key.pem, path: signing-key.pem}
        {{- end }}
        {{- if $tls }}
        - name: grpc-tls
          secret:
            secretName: {{ include "llmsuite.grpcTlsSecret" . }}
            defaultMode: 288
            items:
              - {key: tls.crt, path: tls.crt}
              - {key: tls.key, path: tls.key}
              - {key: ca.crt, path: ca.crt}
        {{- end }}
        {{- if $c.routing }}
        - name: routing
          configMap:
            name: {{ $name }}-routing
        {{- end }}
        {{- if $c.policies }}
        - name: policies
          configMap:
            name: {{ $name }}-policies
        {{- end }}
      {{- with $c.nodeSelector }}
      nodeSelector:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- with $c.tolerations }}
      tolerations:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- with $c.affinity }}
      affinity:
        {{- toYaml . | nindent 8 }}
      {{- end }}
{{- if and $c.autoscaling.enabled (not $keda) }}
---
apiVersion: autoscaling/v2
kind: HorizontalPodAutoscaler
metadata:
  name: {{ $name }}
  labels:
    {{- include "llmsuite.labels" . | nindent 4 }}
spec:
  scaleTargetRef:
    apiVersion: apps/v1
    kind: Deployment
    name: {{ $name }}
  minReplicas: {{ $c.autoscaling.minReplicas }}
  maxReplicas: {{ $c.autoscaling.maxReplicas }}
  metrics:
    - type: Resource
      resource:
        name: cpu
        target:
          type: Utilization
          averageUtilization: {{ $c.autoscaling.targetCPUUtilizationPercentage }}
    {{- with $c.autoscaling.podsMetric }}
    {{- if .name }}
    # Per pod, from the custom metrics API (e.g. prometheus-adapter); the HPA follows whichever
    # metric asks for more replicas.
    - type: Pods
      pods:
        metric:
          name: {{ .name }}
        target:
          type: AverageValue
          averageValue: {{ .averageValue | quote }}
    {{- end }}
    {{- end }}
  behavior:
    # Scale in slowly: a drained pod's streams may still be running.
    {{- include "llmsuite.scaleDownBehavior" . | nindent 4 }}
{{- end }}
{{- if $keda }}
{{- $k := $c.autoscaling.keda }}
---
# KEDA makes the HPA from this (keda-hpa-<name>); the chart renders none of its own.
apiVersion: keda.sh/v1alpha1
kind: ScaledObject
metadata:
  name: {{ $name }}
  labels:
    {{- include "llmsuite.labels" . | nindent 4 }}
spec:
  scaleTargetRef:
    apiVersion: apps/v1
    kind: Deployment
    name: {{ $name }}
  minReplicaCount: {{ $c.autoscaling.minReplicas }}
  maxReplicaCount: {{ $c.autoscaling.maxReplicas }}
  advanced:
    horizontalPodAutoscalerConfig:
      behavior:
        {{- include "llmsuite.scaleDownBehavior" . | nindent 8 }}
  triggers:
    - type: cpu
      metricType: Utilization
      metadata:
        value: {{ $c.autoscaling.targetCPUUtilizationPercentage | quote }}
    - type: prometheus
      metadata:
        serverAddress: {{ $k.serverAddress }}
        query: {{ $k.query | default (printf "sum(%s{namespace=%q, pod=~%q})" $k.metric $root.Release.Namespace (printf "%s-.*" $name)) | quote }}
        threshold: {{ $k.threshold | quote }}
{{- end }}
{{- if $c.podDisruptionBudget.enabled }}
---
apiVersion: policy/v1
kind: PodDisruptionBudget
metadata:
  name: {{ $name }}
  labels:
    {{- include "llmsuite.labels" . | nindent 4 }}
spec:
  maxUnavailable: {{ $c.podDisruptionBudget.maxUnavailable }}
  selector:
    matchLabels:
      {{- include "llmsuite.selectorLabels" . | nindent 6 }}
{{- end }}
{{- if $root.Values.networkPolicy.enabled }}
---
{{- if $c.public }}
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata:
  name: {{ $name }}
  labels:
    {{- include "llmsuite.labels" . | nindent 4 }}
spec:
  podSelector:
    matchLabels:
      {{- include "llmsuite.selectorLabels" . | nindent 6 }}
  policyTypes: [Ingress, Egress]
  ingress:
    - ports:
        - protocol: TCP
          port: {{ $c.port }}
      {{- with $root.Values.networkPolicy.publicFrom }}
      from:
        {{- toYaml . | nindent 8 }}
        {{- if $root.Values.tests.enabled }}
        # The `helm test` pod.
        - podSelector:
            matchLabels:
              {{- include "llmsuite.selectorLabels" (dict "root" $root "name" "test") | nindent 14 }}
        {{- end }}
    {{- include "llmsuite.scrapeRule" (dict "root" $root "port" $c.port) | nindent 4 }}
      {{- end }}
  {{- include "llmsuite.egress" (merge (dict "root" $root) $egress) | nindent 2 }}
{{- else }}
{{ include "llmsuite.callerNetworkPolicy" (dict "root" $root "name" .name "port" $c.port "metricsPort" $root.Values.metrics.port "fromNamespaces" $c.allowFromNamespaces "admitTests" true "egress" $egress) }}
{{- end }}
{{- end }}
{{- end -}}
