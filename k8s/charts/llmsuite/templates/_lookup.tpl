{{/* A Secret as the cluster has it when Helm renders (`lookup`), as JSON: {} offline (helm
     template, k8s/manifests) or when it does not exist. Alone in this file so that tests/k8s can
     render the chart with a stand-in that answers from fixed data.
     (dict "root" $ "name" "<secret name>") */}}
{{- define "llmsuite.lookupSecret" -}}
{{- toJson (lookup "v1" "Secret" .root.Release.Namespace .name) -}}
{{- end -}}
