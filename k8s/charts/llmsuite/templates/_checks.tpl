{{/*
Checks across values that the schema cannot express, each a `fail` with the reason: values that
pass lint but that the API server would reject, that would stall a rollout or a node drain, or
that would quietly break a promise of the chart (exact limits across replicas, streams that
outlive a rollout). Run once per render from components.yaml.
*/}}

{{- define "llmsuite.checks" -}}
{{- $root := . -}}
{{- $g := .Values.global -}}
{{- range $name, $c := .Values.components -}}
{{- if $c.enabled -}}
{{- $where := printf "components.%s" $name -}}
{{- if and $c.autoscaling.enabled (gt (int64 $c.autoscaling.minReplicas) (int64 $c.autoscaling.maxReplicas)) -}}
{{- fail (printf "%s.autoscaling: minReplicas %v is above maxReplicas %v; the API server rejects such an HPA" $where $c.autoscaling.minReplicas $c.autoscaling.maxReplicas) -}}
{{- end -}}
{{- include "llmsuite.checkResources" (dict "where" (printf "%s.resources" $where) "r" $c.resources) -}}
{{- $keda := $c.autoscaling.keda -}}
{{- if $keda.enabled -}}
{{- if not $c.autoscaling.enabled -}}
{{- fail (printf "%s.autoscaling.keda is enabled but autoscaling is not: KEDA scales between minReplicas and maxReplicas, so set autoscaling.enabled" $where) -}}
{{- end -}}
{{- if not $keda.serverAddress -}}
{{- fail (printf "%s.autoscaling.keda.serverAddress is empty: KEDA's Prometheus trigger needs your Prometheus's URL" $where) -}}
{{- end -}}
{{- if not (or $keda.query $keda.metric) -}}
{{- fail (printf "%s.autoscaling.keda names neither a metric nor a query to scale on" $where) -}}
{{- end -}}
{{- if not (toString $keda.threshold) -}}
{{- fail (printf "%s.autoscaling.keda.threshold is empty: the value per replica the query is divided by" $where) -}}
{{- end -}}
{{- end -}}
{{- if $c.podDisruptionBudget.enabled -}}
{{- include "llmsuite.checkMaxUnavailable" (dict "where" (printf "%s.podDisruptionBudget" $where) "value" $c.podDisruptionBudget.maxUnavailable) -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- include "llmsuite.checkGatewayState" $root -}}
{{- include "llmsuite.checkGenerationBound" $root -}}
{{- $inf := .Values.inference -}}
{{- if $inf.enabled -}}
{{- include "llmsuite.checkResources" (dict "where" (printf "inference.%s.resources" $inf.engine) "r" (index $inf $inf.engine).resources) -}}
{{- if and $inf.podDisruptionBudget.enabled (gt (int64 $inf.replicas) 0) -}}
{{- include "llmsuite.checkMaxUnavailable" (dict "where" "inference.podDisruptionBudget" "value" $inf.podDisruptionBudget.maxUnavailable) -}}
{{- end -}}
{{- $cache := $inf.vllm.cachePersistence -}}
{{- if and (eq $inf.engine "vllm") $cache.enabled (gt (int64 $inf.replicas) 1) (not (or (has "ReadWriteMany" $cache.accessModes) (has "ReadOnlyMany" $cache.accessModes))) -}}
{{- fail (printf "inference.vllm.cachePersistence: one %s claim cannot serve %v replicas on different nodes; use a ReadWriteMany claim (accessModes) or inference.replicas 1" (join "," $cache.accessModes) $inf.replicas) -}}
{{- end -}}
{{- end -}}
{{- if include "llmsuite.inChartRedis" $root -}}
{{- include "llmsuite.checkResources" (dict "where" "redis.resources" "r" .Values.redis.resources) -}}
{{- end -}}
{{- if .Values.postgresql.enabled -}}
{{- include "llmsuite.checkResources" (dict "where" "postgresql.resources" "r" .Values.postgresql.resources) -}}
{{- end -}}
{{- end -}}

{{/* More than one gateway pod keeps limits, spend counters and idempotency keys exact only in a
     shared Redis; per-pod state must be asked for. */}}
{{- define "llmsuite.checkGatewayState" -}}
{{- $c := .Values.components.gateway -}}
{{- if $c.enabled -}}
{{- $most := ternary $c.autoscaling.maxReplicas $c.replicas $c.autoscaling.enabled | int64 -}}
{{- $redis := or .Values.redis.enabled .Values.redis.external (hasKey ($c.secretEnv | default dict) "GATEWAY_REDIS_URL") -}}
{{- $perPod := dig "limits" "perPod" false $c -}}
{{- if and (gt $most 1) (not $redis) (not $perPod) -}}
{{- fail (printf "components.gateway runs up to %d replicas without Redis: rate limits, spend counters and idempotency keys would be kept per pod, so a client gets up to %d times its limit. Set redis.enabled (in-chart) or redis.external (yours), or accept per-pod limits with components.gateway.limits.perPod: true" $most $most) -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* global.maxGenerationSeconds is the longest generation the graces are sized for: nothing may
     let a generation run longer. */}}
{{- define "llmsuite.checkGenerationBound" -}}
{{- $max := .Values.global.maxGenerationSeconds | float64 -}}
{{- $gen := .Values.components.generation -}}
{{- if $gen.enabled -}}
{{- $total := dig "env" "GENERATION_TOTAL_TIMEOUT_SECONDS" "" $gen -}}
{{- if and $total (gt ($total | float64) $max) -}}
{{- fail (printf "components.generation.env.GENERATION_TOTAL_TIMEOUT_SECONDS %s is above global.maxGenerationSeconds %v: raise maxGenerationSeconds instead, so the graces that let streams finish grow with it" $total .Values.global.maxGenerationSeconds) -}}
{{- end -}}
{{- range $model, $m := (dig "routing" "models" dict $gen) -}}
{{- range $d := ($m.deployments | default list) -}}
{{- /* 600: the routing file's default for a deployment without timeouts.total. */ -}}
{{- $t := dig "timeouts" "total" 600 $d | float64 -}}
{{- if gt $t $max -}}
{{- fail (printf "components.generation.routing: deployment %q of model %q allows %v s (timeouts.total; 600 when unset), above global.maxGenerationSeconds %v: set its timeouts.total or raise maxGenerationSeconds" ($d.name | default "?") $model $t $.Values.global.maxGenerationSeconds) -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- $gw := .Values.components.gateway -}}
{{- $timeout := dig "env" "GATEWAY_REQUEST_TIMEOUT_SECONDS" "" $gw -}}
{{- if and $gw.enabled $timeout (gt ($timeout | float64) $max) -}}
{{- fail (printf "components.gateway.env.GATEWAY_REQUEST_TIMEOUT_SECONDS %s is above global.maxGenerationSeconds %v: a stream could outlive the graces sized for it; raise maxGenerationSeconds" $timeout .Values.global.maxGenerationSeconds) -}}
{{- end -}}
{{- end -}}

{{/* requests <= limits for cpu and memory: (dict "where" "components.gateway.resources" "r" <resources>) */}}
{{- define "llmsuite.checkResources" -}}
{{- $r := .r | default dict -}}
{{- range $resource := list "cpu" "memory" -}}
{{- $request := dig "requests" $resource "" $r -}}
{{- $limit := dig "limits" $resource "" $r -}}
{{- if and $request $limit -}}
{{- $requested := include "llmsuite.quantity" $request -}}
{{- $allowed := include "llmsuite.quantity" $limit -}}
{{- if and $requested $allowed (gt ($requested | float64) ($allowed | float64)) -}}
{{- fail (printf "%s: requests.%s %v is above limits.%s %v; the API server rejects the pod" $.where $resource $request $resource $limit) -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* A Kubernetes quantity ("250m", "1", 0.5, "512Mi", "2G") as a plain number; empty when it is
     in a form this does not read (exponents), so nothing is compared then. */}}
{{- define "llmsuite.quantity" -}}
{{- $q := toString . -}}
{{- $units := dict "" 1.0 "m" 0.001 "k" 1e3 "M" 1e6 "G" 1e9 "T" 1e12 "P" 1e15 "E" 1e18 "Ki" 1024.0 "Mi" 1048576.0 "Gi" 1073741824.0 "Ti" 1099511627776.0 "Pi" 1125899906842624.0 "Ei" 1152921504606846976.0 -}}
{{- $suffix := regexFind "[A-Za-z]+$" $q -}}
{{- $number := trimSuffix $suffix $q -}}
{{- if and (hasKey $units $suffix) (regexMatch "^[0-9]+(\\.[0-9]*)?$|^\\.[0-9]+$" $number) -}}
{{- mulf ($number | float64) (get $units $suffix) -}}
{{- end -}}
{{- end -}}

{{/* A PodDisruptionBudget's maxUnavailable must let at least one pod go, and a percentage cannot
     pass 100 %: (dict "where" "components.gateway.podDisruptionBudget" "value" <maxUnavailable>) */}}
{{- define "llmsuite.checkMaxUnavailable" -}}
{{- $v := toString .value -}}
{{- $n := trimSuffix "%" $v | int64 -}}
{{- if and (hasSuffix "%" $v) (gt $n 100) -}}
{{- fail (printf "%s: maxUnavailable %s is above 100%%" .where $v) -}}
{{- end -}}
{{- if eq $n 0 -}}
{{- fail (printf "%s: maxUnavailable %s lets no pod be evicted, so every node drain and cluster upgrade hangs on it; allow at least 1, or turn the budget off (enabled: false)" .where $v) -}}
{{- end -}}
{{- end -}}
