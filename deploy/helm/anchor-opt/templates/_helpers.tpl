{{/* Names, labels and derived settings shared by the templates. */}}

{{- define "anchor-opt.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* "<release>-anchor-opt", or the release name alone when it already contains the chart name. */}}
{{- define "anchor-opt.fullname" -}}
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

{{- define "anchor-opt.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "anchor-opt.selectorLabels" -}}
app.kubernetes.io/name: {{ include "anchor-opt.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "anchor-opt.labels" -}}
helm.sh/chart: {{ include "anchor-opt.chart" . }}
{{ include "anchor-opt.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{- define "anchor-opt.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "anchor-opt.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "anchor-opt.rayServiceAccountName" -}}
{{- if .Values.ray.serviceAccount.create }}
{{- default (printf "%s-ray" (include "anchor-opt.fullname" .)) .Values.ray.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.ray.serviceAccount.name }}
{{- end }}
{{- end }}

{{/*
The RayCluster's name. KubeRay names the head Service "<name>-head-svc" and cuts that to its last 50
characters when longer, and requires a DNS-1035 label (a letter first): at most 41 characters keeps the
Service name the API is given (anchor-opt.rayAddress) exactly the one KubeRay creates.
*/}}
{{- define "anchor-opt.rayClusterName" -}}
{{- $name := .Values.ray.clusterName | default (printf "%s-ray" (include "anchor-opt.fullname" . | trunc 37 | trimSuffix "-")) }}
{{- if not (regexMatch "^[a-z]([-a-z0-9]{0,39}[a-z0-9])?$" $name) }}
{{- fail (printf "ray.clusterName: %q must be at most 41 characters of a-z, 0-9 and '-', starting with a letter and not ending with '-' (KubeRay names the head Service <name>-head-svc); set ray.clusterName" $name) }}
{{- end }}
{{- $name }}
{{- end }}

{{- define "anchor-opt.rayHeadService" -}}
{{- printf "%s-head-svc" (include "anchor-opt.rayClusterName" .) }}
{{- end }}

{{/* The Ray job server (the head's dashboard port), what the API submits jobs to. */}}
{{- define "anchor-opt.rayAddress" -}}
{{- printf "http://%s:8265" (include "anchor-opt.rayHeadService" .) }}
{{- end }}

{{/* The Secret holding Ray's token (key auth_token): the user's, or the chart's (ray-token-secret.yaml). */}}
{{- define "anchor-opt.rayTokenSecretName" -}}
{{- default (include "anchor-opt.rayClusterName" .) .Values.ray.auth.existingSecret }}
{{- end }}

{{/* Ray's token, from its Secret: Ray's own processes read RAY_AUTH_TOKEN, and so does the API. */}}
{{- define "anchor-opt.rayTokenEnv" -}}
- name: RAY_AUTH_TOKEN
  valueFrom:
    secretKeyRef:
      name: {{ include "anchor-opt.rayTokenSecretName" . }}
      key: auth_token
{{- end }}

{{/* The Secret holding ANCHOR_OPT_TOKENS and the S3 keys: the user's, or the chart's. */}}
{{- define "anchor-opt.secretName" -}}
{{- default (include "anchor-opt.fullname" .) .Values.existingSecret }}
{{- end }}

{{- define "anchor-opt.configMapName" -}}
{{- include "anchor-opt.fullname" . }}
{{- end }}

{{- define "anchor-opt.storeUri" -}}
{{- $prefix := trimAll "/" .Values.store.prefix }}
{{- if $prefix }}
{{- printf "s3://%s/%s" .Values.store.bucket $prefix }}
{{- else }}
{{- printf "s3://%s" .Values.store.bucket }}
{{- end }}
{{- end }}

{{- define "anchor-opt.minioName" -}}
{{- printf "%s-minio" (include "anchor-opt.fullname" . | trunc 57 | trimSuffix "-") }}
{{- end }}

{{/* The S3 endpoint: the in-chart MinIO's Service, s3.endpointUrl, or "" for AWS. */}}
{{- define "anchor-opt.s3EndpointUrl" -}}
{{- if .Values.minio.enabled }}
{{- printf "http://%s:9000" (include "anchor-opt.minioName" .) }}
{{- else }}
{{- .Values.s3.endpointUrl }}
{{- end }}
{{- end }}

{{- define "anchor-opt.s3PathStyle" -}}
{{- if or .Values.minio.enabled .Values.s3.pathStyle }}true{{ else }}false{{ end }}
{{- end }}

{{- define "anchor-opt.image" -}}
{{- printf "%s:%s" .image.repository (.image.tag | default .chart.AppVersion) }}
{{- end }}

{{/*
Checks that JSON schema cannot express; each failure names the value to set. Included by the
ConfigMap, which every install renders, so `helm install` stops before anything is created.
*/}}
{{- define "anchor-opt.validate" -}}
{{- $v := .Values }}
{{- if not $v.store.bucket }}
{{- fail "store.bucket is required: the S3 bucket that holds the job store (it must exist; with minio.enabled=true the chart creates it)" }}
{{- end }}
{{- if $v.existingSecret }}
{{- if $v.tokens }}
{{- fail "tokens and existingSecret are both set: put the token hashes in the existing Secret (key ANCHOR_OPT_TOKENS) and leave tokens empty" }}
{{- end }}
{{- if or $v.s3.accessKeyId $v.s3.secretAccessKey }}
{{- fail "s3.accessKeyId/s3.secretAccessKey and existingSecret are both set: put the keys in the existing Secret (ANCHOR_OPT_S3_ACCESS_KEY_ID, ANCHOR_OPT_S3_SECRET_ACCESS_KEY) and leave them empty here" }}
{{- end }}
{{- else }}
{{- if not $v.tokens }}
{{- fail "tokens: at least one API token hash is required, because the API listens on 0.0.0.0 and refuses to start without one. Run `anchor-opt token --tenant <team> --name <client>` and add its entry: --set tokens[0].tenant=<team>,tokens[0].sha256=<64 hex> (or name a Secret holding ANCHOR_OPT_TOKENS in existingSecret)" }}
{{- end }}
{{- $hashes := list }}
{{- range $v.tokens }}{{ $hashes = append $hashes .sha256 }}{{ end }}
{{- if ne (len $hashes) (len (uniq $hashes)) }}
{{- fail "tokens: the same sha256 is listed twice; each token hash must appear once" }}
{{- end }}
{{- range $field := list "max_running_jobs" "max_queued_jobs" "max_gpus" }}
{{- $seen := dict }}
{{- range $v.tokens }}
{{- $value := index . $field }}
{{- if not (kindIs "invalid" $value) }}
{{- if and (hasKey $seen .tenant) (ne (toString (get $seen .tenant)) (toString $value)) }}
{{- fail (printf "tokens: tenant %q has two values of %s (%v and %v); a tenant has one set of limits, so its entries that give one must agree" .tenant $field (get $seen .tenant) $value) }}
{{- end }}
{{- $_ := set $seen .tenant $value }}
{{- end }}
{{- end }}
{{- end }}
{{- if ne (empty $v.s3.accessKeyId) (empty $v.s3.secretAccessKey) }}
{{- fail "s3.accessKeyId and s3.secretAccessKey: set both, or neither (the pods then use their IAM role)" }}
{{- end }}
{{- if $v.minio.enabled }}
{{- if or (lt (len $v.s3.accessKeyId) 3) (lt (len $v.s3.secretAccessKey) 8) }}
{{- fail "minio.enabled: set s3.accessKeyId (3+ characters) and s3.secretAccessKey (8+ characters); they become MinIO's root user and password, e.g. --set-string s3.accessKeyId=anchor-opt,s3.secretAccessKey=$(openssl rand -hex 20)" }}
{{- end }}
{{- end }}
{{- end }}
{{- if gt (int $v.ray.worker.minReplicas) (int $v.ray.worker.maxReplicas) }}
{{- fail (printf "ray.worker.minReplicas (%d) is larger than ray.worker.maxReplicas (%d)" (int $v.ray.worker.minReplicas) (int $v.ray.worker.maxReplicas)) }}
{{- end }}
{{- $_ := include "anchor-opt.rayClusterName" . }}
{{- end }}

{{/*
Environment of every Ray container: Ray's token authentication, and how to reach S3 (the same settings
as the API). KubeRay >= 1.6 sets RAY_AUTH_MODE and RAY_AUTH_TOKEN from authOptions too, leaving
variables that are already there alone; set here as well, an operator too old for authOptions still
starts Ray with the token required (its autoscaler then cannot connect: install KubeRay >= 1.6).
*/}}
{{- define "anchor-opt.rayEnv" -}}
- name: RAY_AUTH_MODE
  value: token
{{ include "anchor-opt.rayTokenEnv" . }}
- name: ANCHOR_OPT_S3_ENDPOINT_URL
  valueFrom:
    configMapKeyRef:
      name: {{ include "anchor-opt.configMapName" . }}
      key: ANCHOR_OPT_S3_ENDPOINT_URL
      optional: true  # absent for AWS itself
{{- range list "ANCHOR_OPT_S3_REGION" "ANCHOR_OPT_S3_PATH_STYLE" "ANCHOR_OPT_S3_MAX_ATTEMPTS" }}
- name: {{ . }}
  valueFrom:
    configMapKeyRef:
      name: {{ include "anchor-opt.configMapName" $ }}
      key: {{ . }}
{{- end }}
{{- include "anchor-opt.s3KeysEnv" . }}
# Everything that would go under $HOME goes to the writable /tmp (the root filesystem is read-only).
- name: ANCHOR_OPT_CACHE_DIR
  value: /tmp/anchor-opt-cache
- name: MPLCONFIGDIR
  value: /tmp/matplotlib
- name: XDG_CACHE_HOME
  value: /tmp/.cache
- name: XDG_CONFIG_HOME
  value: /tmp/.config
- name: CUDA_CACHE_PATH
  value: /tmp/.nv/ComputeCache
# Clusters often have no way out; Ray would otherwise try to report usage.
- name: RAY_USAGE_STATS_ENABLED
  value: "0"
{{- with .Values.ray.extraEnv }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/* S3 keys from the Secret. Optional: without them boto3 and pyarrow use the pod's IAM role. */}}
{{- define "anchor-opt.s3KeysEnv" -}}
{{- range list "ANCHOR_OPT_S3_ACCESS_KEY_ID" "ANCHOR_OPT_S3_SECRET_ACCESS_KEY" }}
- name: {{ . }}
  valueFrom:
    secretKeyRef:
      name: {{ include "anchor-opt.secretName" $ }}
      key: {{ . }}
      optional: true
{{- end }}
{{- end }}

{{/* Pod annotations that change with the settings and secrets, so that `helm upgrade` rolls the pods. */}}
{{- define "anchor-opt.checksums" -}}
checksum/config: {{ include (print .Template.BasePath "/configmap.yaml") . | sha256sum }}
checksum/secret: {{ if .Values.existingSecret }}{{ .Values.existingSecret | sha256sum }}{{ else }}{{ include (print .Template.BasePath "/secret.yaml") . | sha256sum }}{{ end }}
{{- end }}

{{/* Probes of a Ray container (see ray.probes in values.yaml): the node's dashboard agent. */}}
{{- define "anchor-opt.rayProbes" -}}
readinessProbe:
  httpGet:
    path: /api/healthz
    port: 52365
  {{- toYaml .Values.ray.probes.readiness | nindent 2 }}
livenessProbe:
  httpGet:
    path: /api/healthz
    port: 52365
  {{- toYaml .Values.ray.probes.liveness | nindent 2 }}
{{- end }}

{{/*
ANCHOR_OPT_LIMITS, as JSON: settings.limits over what the chart reads off its worker group (values.yaml,
settings.limits, says which limit comes from which value). The service cannot see an autoscaling
cluster's pods, so without these a job bigger than a pod would be accepted, wait resource_wait_s for
resources no pod has, and end FAILED; with them it is refused at submit.
*/}}
{{- define "anchor-opt.limits" -}}
{{- $w := .Values.ray.worker }}
{{- $given := dict }}
{{- range $key, $value := .Values.settings.limits }}
{{- if not (kindIs "invalid" $value) }}{{ $_ := set $given $key $value }}{{ end }}
{{- end }}
{{- $start := $w.rayStartParams | default dict }}
{{- $podLimits := ($w.resources | default dict).limits | default dict }}
{{- $derived := dict }}
{{- /* Ray offers a pod rayStartParams' num-gpus / num-cpus where given, else its container limits. */}}
{{- $gpus := float64 (ternary (index $start "num-gpus") $w.gpu (hasKey $start "num-gpus")) }}
{{- $_ := set $derived "max_gpus_per_worker" (minf 16 $gpus) }}
{{- $_ := set $derived "max_gpus_per_job" (minf 4096 (mulf $gpus $w.maxReplicas)) }}
{{- if not (hasKey $given "max_cpus_per_worker") }}
{{- $cpu := ternary (index $start "num-cpus") (index $podLimits "cpu" | default "") (hasKey $start "num-cpus") }}
{{- $from := ternary "ray.worker.rayStartParams.num-cpus" "ray.worker.resources.limits.cpu" (hasKey $start "num-cpus") }}
{{- $cpus := 0.0 }}
{{- if not (kindIs "string" $cpu) }}
{{- $cpus = float64 $cpu }}{{/* a number in the values (float64 to Helm: toString could write 1e+06) */}}
{{- else if regexMatch "^[0-9]+(\\.[0-9]+)?$" $cpu }}
{{- $cpus = float64 $cpu }}
{{- else if regexMatch "^[0-9]+m$" $cpu }}
{{- $cpus = divf (trimSuffix "m" $cpu) 1000 }}
{{- else }}
{{- fail (printf "%s %q: the chart derives settings.limits.max_cpus_per_worker (the most CPUs one job's worker may ask for) from the CPUs a worker pod offers, a count such as 8, \"7.5\" or \"8000m\"; give one, or set settings.limits.max_cpus_per_worker" $from ($cpu | default "(none)")) }}
{{- end }}
{{- if lt $cpus 1.0 }}
{{- fail (printf "%s %v: a job's worker needs at least one CPU (settings.limits.max_cpus_per_worker is 1 or more); give the worker pods more, or set settings.limits.max_cpus_per_worker" $from $cpu) }}
{{- end }}
{{- $_ := set $derived "max_cpus_per_worker" (minf 256 $cpus) }}
{{- end }}
{{- if not (hasKey $given "worker_memory_gb") }}
{{- $memory := index $podLimits "memory" | default "" }}
{{- if not (kindIs "string" $memory) }}
{{- $memory = printf "%.0f" (float64 $memory) }}{{/* bytes */}}
{{- end }}
{{- if not (regexMatch "^[0-9]+(\\.[0-9]+)?([kMGT]|[KMGT]i)?$" $memory) }}
{{- fail (printf "ray.worker.resources.limits.memory %q: the chart derives settings.limits.worker_memory_gb (the memory one job's worker may use) from the worker pod's memory limit, such as \"32Gi\", \"32768Mi\", \"64G\" or bytes; give one, or set settings.limits.worker_memory_gb" ($memory | default "(none)")) }}
{{- end }}
{{- $number := regexFind "^[0-9]+(\\.[0-9]+)?" $memory }}
{{- $units := dict "" 1 "k" 1000 "M" 1000000 "G" 1000000000 "T" 1000000000000 "Ki" 1024 "Mi" 1048576 "Gi" 1073741824 "Ti" 1099511627776 }}
{{- $gib := divf (mulf $number (index $units (trimPrefix $number $memory))) 1073741824 }}
{{- if not (gt $gib 0.0) }}
{{- fail (printf "ray.worker.resources.limits.memory %q: a job's worker needs some memory; give the worker pods some, or set settings.limits.worker_memory_gb" $memory) }}
{{- end }}
{{- $_ := set $derived "worker_memory_gb" (minf 65536 $gib) }}
{{- end }}
{{- merge $given $derived | toJson }}
{{- end }}
