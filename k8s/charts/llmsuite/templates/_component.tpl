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
  "SHUTDOWN_GRACE_SECONDS" (printf "%d" (int64 $g.shutdownGraceSeconds))
  "GRPC_MAX_CONNECTION_AGE_SECONDS" (printf "%d" (int64 $g.grpcMaxConnectionAgeSeconds))
  "GRPC_MAX_MESSAGE_BYTES" (printf "%d" (int64 $g.grpcMaxMessageBytes))
-}}
{{- /* Client side of the call graph: dns:/// + headless Service = one address per pod,
       which the clients' round_robin policy spreads calls over. */ -}}
{{- range $callee := $c.calls -}}
{{- $target := index $root.Values.components $callee | default dict -}}
{{- if and $target.enabled (eq ($target.protocol | default "") "grpc") -}}
{{- $host := include "llmsuite.serviceHost" (dict "root" $root "name" $callee) -}}
{{- $_ := set $env (printf "%s_%s_TARGET" $prefix (upper $callee)) (printf "dns:///%s:%d" $host (int64 $target.port)) -}}
{{- end -}}
{{- end -}}
{{- if eq $c.protocol "grpc" -}}
{{- $_ := set $env "METRICS_PORT" (printf "%d" (int64 $root.Values.metrics.port)) -}}
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
{{- if hasKey $c "upstreamBaseUrl" -}}
{{- $upstream := $c.upstreamBaseUrl -}}
{{- if and (not $upstream) $root.Values.inference.enabled -}}
{{- $host := include "llmsuite.serviceHost" (dict "root" $root "name" "inference") -}}
{{- $upstream = printf "http://%s:%d/v1" $host (int64 $root.Values.inference.port) -}}
{{- end -}}
{{- $_ := set $env (printf "%s_UPSTREAM_BASE_URL" $prefix) $upstream -}}
{{- end -}}
{{- toYaml (mergeOverwrite $env ($c.env | default dict)) -}}
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
      appProtocol: {{ ternary "kubernetes.io/h2c" "http" (eq $c.protocol "grpc") }}
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
        {{- with $c.podAnnotations }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
    spec:
      serviceAccountName: {{ $name }}
      automountServiceAccountToken: false
      enableServiceLinks: false
      terminationGracePeriodSeconds: {{ include "llmsuite.terminationGrace" $root }}
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
          {{- $secretEnv := deepCopy ($c.secretEnv | default dict) }}
          {{- if and (has "redis" $c.calls) (or $root.Values.redis.enabled $root.Values.redis.external) }}
          {{- $_ := set $secretEnv (printf "%s_REDIS_URL" (upper .name)) (dict "key" $root.Values.redis.urlSecretKey) }}
          {{- end }}
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
          {{- if eq $c.protocol "grpc" }}
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
{{- if $c.autoscaling.enabled }}
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
  behavior:
    # Scale in slowly: a drained pod's streams may still be running.
    scaleDown:
      stabilizationWindowSeconds: 300
      policies:
        - type: Pods
          value: 1
          periodSeconds: 60
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
  policyTypes: [Ingress]
  ingress:
    - ports:
        - protocol: TCP
          port: {{ $c.port }}
      {{- with $root.Values.networkPolicy.publicFrom }}
      from:
        {{- toYaml . | nindent 8 }}
    {{- include "llmsuite.scrapeRule" (dict "root" $root "port" $c.port) | nindent 4 }}
      {{- end }}
{{- else }}
{{ include "llmsuite.callerNetworkPolicy" (dict "root" $root "name" .name "port" $c.port "metricsPort" $root.Values.metrics.port) }}
{{- end }}
{{- end }}
{{- end -}}
