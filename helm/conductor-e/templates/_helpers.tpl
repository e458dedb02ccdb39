{{/*
Names and labels, after `helm create` and the bitnami charts.
*/}}

{{- define "conductor-e.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
The full name: truncated at 63 characters (some name fields are limited to that); the release
name alone when it already contains the chart name.
*/}}
{{- define "conductor-e.fullname" -}}
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

{{- define "conductor-e.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "conductor-e.selectorLabels" -}}
app.kubernetes.io/name: {{ include "conductor-e.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "conductor-e.labels" -}}
helm.sh/chart: {{ include "conductor-e.chart" . }}
{{ include "conductor-e.selectorLabels" . }}
{{- if .Chart.AppVersion }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
{{- end }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: conductor-e
{{- end }}

{{/* Labels of one component: (dict "root" $ "component" "api"). */}}
{{- define "conductor-e.componentLabels" -}}
{{ include "conductor-e.labels" .root }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{- define "conductor-e.componentSelectorLabels" -}}
{{ include "conductor-e.selectorLabels" .root }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{- define "conductor-e.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "conductor-e.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* The namespace the admin commands act in. */}}
{{- define "conductor-e.adminNamespace" -}}
{{- default .Release.Namespace .Values.admin.namespace }}
{{- end }}

{{/* The one image every component runs. */}}
{{- define "conductor-e.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag | toString) }}
{{- end }}
{{- end }}

{{- define "conductor-e.postgresql.fullname" -}}
{{- printf "%s-postgresql" (include "conductor-e.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Pod-level security for every Conductor-E pod (the image's user is 10001).
*/}}
{{- define "conductor-e.podSecurityContext" -}}
runAsNonRoot: true
runAsUser: 10001
runAsGroup: 10001
fsGroup: 10001
seccompProfile:
  type: RuntimeDefault
{{- end }}

{{- define "conductor-e.containerSecurityContext" -}}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
runAsNonRoot: true
privileged: false
capabilities:
  drop:
    - ALL
{{- end }}

{{/* Placement shared by every pod. */}}
{{- define "conductor-e.scheduling" -}}
{{- with .Values.imagePullSecrets }}
imagePullSecrets:
  {{- range . }}
  - name: {{ . }}
  {{- end }}
{{- end }}
{{- with .Values.nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .Values.tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .Values.affinity }}
affinity:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end }}

{{/*
One environment variable from a key of existingSecret:
(dict "root" $ "env" "GITHUB_TOKEN" "key" "github-token" "optional" false)
Only the name of the Secret and the key are rendered, never a value.
*/}}
{{- define "conductor-e.secretEnv" -}}
- name: {{ .env }}
  valueFrom:
    secretKeyRef:
      name: {{ .root.Values.existingSecret }}
      key: {{ .key }}
      {{- if .optional }}
      optional: true
      {{- end }}
{{- end }}

{{/*
DATABASE_URL. With the in-chart PostgreSQL the DSN is composed in the pod by Kubernetes'
dependent environment variable expansion: $(POSTGRES_PASSWORD) is replaced by the value of the
variable defined just before it, which comes from the Secret. The password never appears in a
manifest. It must be URL-safe (see README.md). With an external database the whole DSN comes
from the database-url key.
*/}}
{{- define "conductor-e.databaseEnv" -}}
{{- if .Values.postgresql.enabled -}}
{{ include "conductor-e.secretEnv" (dict "root" . "env" "POSTGRES_PASSWORD" "key" "postgres-password") }}
- name: DATABASE_URL
  value: {{ printf "postgresql://%s:$(POSTGRES_PASSWORD)@%s:%d/%s" .Values.postgresql.username (include "conductor-e.postgresql.fullname" .) (.Values.postgresql.port | int) .Values.postgresql.database | quote }}
{{- else -}}
{{ include "conductor-e.secretEnv" (dict "root" . "env" "DATABASE_URL" "key" "database-url") }}
{{- end }}
{{- end }}

{{/* Annotation that restarts pods when the ConfigMap (or the chart's prices file) changes. */}}
{{- define "conductor-e.configChecksum" -}}
checksum/config: {{ print (include (print .Template.BasePath "/configmap.yaml") .) (include (print .Template.BasePath "/prices-configmap.yaml") .) | sha256sum }}
{{- end }}

{{/*
The ConfigMap holding the prices file (key prices.yaml): the chart's own when prices.models is
set, else prices.existingConfigMap; empty when neither (genai-prices alone).
*/}}
{{- define "conductor-e.pricesConfigMap" -}}
{{- if .Values.prices.models -}}
{{ include "conductor-e.fullname" . }}-prices
{{- else -}}
{{ .Values.prices.existingConfigMap }}
{{- end -}}
{{- end }}

{{/* Where the prices file is mounted (CONDUCTOR_PRICES_FILE). */}}
{{- define "conductor-e.pricesDir" -}}
/etc/conductor-e/prices
{{- end }}

{{/* The prices volume mount of a container (indent with nindent), when there is a file. */}}
{{- define "conductor-e.pricesVolumeMount" -}}
{{- if include "conductor-e.pricesConfigMap" . }}
- name: prices
  mountPath: {{ include "conductor-e.pricesDir" . }}
  readOnly: true
{{- end }}
{{- end }}

{{/* The prices volume of a pod (indent with nindent), when there is a file. */}}
{{- define "conductor-e.pricesVolume" -}}
{{- with include "conductor-e.pricesConfigMap" . }}
- name: prices
  configMap:
    name: {{ . }}
    items:
      - key: prices.yaml
        path: prices.yaml
{{- end }}
{{- end }}

{{/* "true" when a value is given: neither null nor the empty string (0 counts as given). */}}
{{- define "conductor-e.isSet" -}}
{{- if not (or (kindIs "invalid" .) (and (kindIs "string" .) (eq . ""))) }}true{{ end }}
{{- end }}

{{/* Join a map as k=v,k2=v2 in key order. */}}
{{- define "conductor-e.pairs" -}}
{{- $pairs := list }}
{{- range $key := keys . | sortAlpha }}
{{- $pairs = append $pairs (printf "%s=%v" $key (get $ $key)) }}
{{- end }}
{{- join "," $pairs }}
{{- end }}

{{/*
Fail the render with one clear message when values contradict each other.
*/}}
{{- define "conductor-e.validateValues" -}}
{{- $errors := list }}
{{- if and .Values.postgresql.enabled .Values.externalDatabase.enabled }}
{{- $errors = append $errors "postgresql.enabled and externalDatabase.enabled are both true: choose the in-chart PostgreSQL or an external database, not both" }}
{{- end }}
{{- if not (or .Values.postgresql.enabled .Values.externalDatabase.enabled) }}
{{- $errors = append $errors "no database: set postgresql.enabled=true (in-chart PostgreSQL) or externalDatabase.enabled=true (DATABASE_URL from the database-url key of existingSecret)" }}
{{- end }}
{{- if not .Values.existingSecret }}
{{- $errors = append $errors "existingSecret is empty: name the Secret that holds the credentials (default conductor-e-secrets)" }}
{{- end }}
{{- $pdb := .Values.api.podDisruptionBudget }}
{{- if and .Values.api.enabled $pdb.enabled }}
{{- $minSet := include "conductor-e.isSet" $pdb.minAvailable }}
{{- $maxSet := include "conductor-e.isSet" $pdb.maxUnavailable }}
{{- if and $minSet $maxSet }}
{{- $errors = append $errors "api.podDisruptionBudget: set minAvailable or maxUnavailable, not both (empty the other with \"\")" }}
{{- end }}
{{- if not (or $minSet $maxSet) }}
{{- $errors = append $errors "api.podDisruptionBudget: set one of minAvailable or maxUnavailable" }}
{{- end }}
{{- if and $minSet (not (kindIs "string" $pdb.minAvailable)) }}
{{- if ge (int $pdb.minAvailable) (int .Values.api.replicaCount) }}
{{- $errors = append $errors (printf "api.podDisruptionBudget.minAvailable (%d) must be below api.replicaCount (%d), or no node could ever be drained" (int $pdb.minAvailable) (int .Values.api.replicaCount)) }}
{{- end }}
{{- end }}
{{- end }}
{{- if and .Values.rbac.create (not .Values.serviceAccount.create) (not .Values.serviceAccount.name) }}
{{- $errors = append $errors "rbac.create=true with serviceAccount.create=false needs serviceAccount.name: the Role would be bound to the namespace's default ServiceAccount" }}
{{- end }}
{{- if and (or .Values.admin.rolloutTargets .Values.admin.fluxObjects) (not .Values.rbac.create) }}
{{- $errors = append $errors "admin.rolloutTargets/admin.fluxObjects are set but rbac.create=false: the bot would be refused every admin action" }}
{{- end }}
{{- if and (or .Values.admin.rolloutTargets .Values.admin.fluxObjects) (not .Values.bot.enabled) }}
{{- $errors = append $errors "admin.rolloutTargets/admin.fluxObjects are set but bot.enabled=false: only the bot runs admin commands" }}
{{- end }}
{{- if and .Values.api.ingress.enabled (not .Values.api.ingress.host) }}
{{- $errors = append $errors "api.ingress.enabled=true needs api.ingress.host" }}
{{- end }}
{{- if and .Values.tests.enabled (not .Values.api.enabled) }}
{{- $errors = append $errors "tests.enabled=true needs api.enabled=true: the helm test calls the API's /health" }}
{{- end }}
{{- if and .Values.cronJob.enabled (ge (int .Values.cronJob.activeDeadlineSeconds) 300) (eq .Values.cronJob.schedule "*/5 * * * *") }}
{{- $errors = append $errors "cronJob.activeDeadlineSeconds must be under 300 with the */5 schedule, or runs would be skipped" }}
{{- end }}
{{- if and .Values.prices.models .Values.prices.existingConfigMap }}
{{- $errors = append $errors "prices.models and prices.existingConfigMap are both set: give the prices inline or name your ConfigMap, not both" }}
{{- end }}
{{- $d := .Values.dispatch }}
{{- if $d.enabled }}
{{- if and $d.valkey.enabled $d.externalUrl }}
{{- $errors = append $errors "dispatch.valkey.enabled and dispatch.externalUrl are both set: choose the in-chart Valkey or an external one, not both" }}
{{- end }}
{{- if not (or $d.valkey.enabled $d.externalUrl) }}
{{- $errors = append $errors "dispatch.enabled=true needs a Valkey: set dispatch.valkey.enabled=true or dispatch.externalUrl (redis:// or rediss://)" }}
{{- end }}
{{- if $d.externalUrl }}
{{- if not (regexMatch "^rediss?://[^@/]+(/[0-9]*)?$" $d.externalUrl) }}
{{- $errors = append $errors "dispatch.externalUrl must be redis://host:port or rediss://host:port (no password: put it in the valkey-password key of existingSecret and set dispatch.auth=true)" }}
{{- end }}
{{- end }}
{{- if not .Values.api.enabled }}
{{- $errors = append $errors "dispatch.enabled=true needs api.enabled=true: the dispatcher runs in the API pods" }}
{{- end }}
{{- end }}
{{- if and $d.scaledAgents (not $d.enabled) }}
{{- $errors = append $errors "dispatch.scaledAgents is set but dispatch.enabled=false: nothing would ever signal those agents" }}
{{- end }}
{{- if $errors }}
{{- fail (printf "\n\nconductor-e: invalid values:\n  - %s\n" (join "\n  - " $errors)) }}
{{- end }}
{{- end }}

{{/* The in-chart Valkey's name. */}}
{{- define "conductor-e.valkey.fullname" -}}
{{- printf "%s-valkey" (include "conductor-e.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
CONDUCTOR_VALKEY_URL: dispatch.externalUrl, or the in-chart Valkey's Service. The password is
never part of it: it comes from the valkey-password key of existingSecret (dispatch.auth).
*/}}
{{- define "conductor-e.valkey.url" -}}
{{- $d := .Values.dispatch }}
{{- if $d.externalUrl }}
{{- $d.externalUrl }}
{{- else }}
{{- printf "%s://%s:%d/0" (ternary "rediss" "redis" $d.tls) (include "conductor-e.valkey.fullname" .) ($d.valkey.port | int) }}
{{- end }}
{{- end }}

{{/* host:port of the Valkey, for KEDA's redis trigger. KEDA's operator resolves names in its
own namespace, so the in-chart Service is named with the release's namespace. */}}
{{- define "conductor-e.valkey.address" -}}
{{- if .Values.dispatch.externalUrl }}
{{- $url := urlParse .Values.dispatch.externalUrl }}
{{- if contains ":" $url.host }}{{ $url.host }}{{ else }}{{ printf "%s:6379" $url.host }}{{ end }}
{{- else }}
{{- printf "%s.%s.svc:%d" (include "conductor-e.valkey.fullname" .) .Release.Namespace (.Values.dispatch.valkey.port | int) }}
{{- end }}
{{- end }}
