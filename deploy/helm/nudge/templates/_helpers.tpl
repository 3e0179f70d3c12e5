{{/* The chart's name, as the name label. */}}
{{- define "nudge.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* RELEASE-nudge, or the release's name alone when it already says nudge. */}}
{{- define "nudge.fullname" -}}
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

{{/* A component's resource name: RELEASE-nudge-edge. Takes (dict "ctx" $ "name" "edge"). */}}
{{- define "nudge.componentName" -}}
{{- printf "%s-%s" (include "nudge.fullname" .ctx | trunc 55 | trimSuffix "-") .name }}
{{- end }}

{{/* Labels of everything the chart makes; with "name", the component's too. */}}
{{- define "nudge.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .ctx.Chart.Name .ctx.Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
app.kubernetes.io/managed-by: {{ .ctx.Release.Service }}
app.kubernetes.io/version: {{ .ctx.Chart.AppVersion | quote }}
{{ include "nudge.selectorLabels" . }}
{{- end }}

{{- define "nudge.selectorLabels" -}}
app.kubernetes.io/name: {{ include "nudge.name" .ctx }}
app.kubernetes.io/instance: {{ .ctx.Release.Name }}
{{- with .name }}
app.kubernetes.io/component: {{ . }}
{{- end }}
{{- end }}

{{- define "nudge.image" -}}
{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}
{{- end }}

{{- define "nudge.secretName" -}}
{{- .Values.secret.existingSecret | default (printf "%s-env" (include "nudge.fullname" .)) }}
{{- end }}

{{/* The component's pipeline text: its value, else the chart's file. */}}
{{- define "nudge.pipelineText" -}}
{{- $c := index .ctx.Values .name }}
{{- $c.pipeline | default (.ctx.Files.Get (printf "files/chat-%s.toml" .name)) }}
{{- end }}

{{/*
The port of a `listen` address the chart must route to: literal, not loopback.
Takes (dict "name" "edge" "key" "[admin] listen" "listen" "0.0.0.0:9100").
*/}}
{{- define "nudge.listenPort" -}}
{{- $listen := toString .listen }}
{{- if contains "${" $listen }}
{{- fail (printf "%s.pipeline: %s is %q: write it as a literal host:port, the chart reads its port" .name .key $listen) }}
{{- end }}
{{- $port := regexFind ":[0-9]+$" $listen | trimPrefix ":" }}
{{- if or (not $port) (eq $port "0") }}
{{- fail (printf "%s.pipeline: %s is %q: it needs a fixed port (host:PORT)" .name .key $listen) }}
{{- end }}
{{- $host := trimSuffix (printf ":%s" $port) $listen }}
{{- if or (eq $host "localhost") (hasPrefix "127." $host) (eq $host "[::1]") (eq $host "::1") }}
{{- fail (printf "%s.pipeline: %s is %q, loopback: the kubelet's probes and the Service reach a pod by its IP; listen on 0.0.0.0:%s" .name .key $listen $port) }}
{{- end }}
{{- $port }}
{{- end }}

{{/*
What the chart reads from a component's pipeline, as JSON: the admin port (the
probes, the metrics), the source's port (the Service), the shutdown grace and
the pod's grace period derived from it. A pipeline the chart cannot route to
fails the render, saying why. Takes (dict "ctx" $ "name" "edge").
*/}}
{{- define "nudge.pipelineInfo" -}}
{{- $c := index .ctx.Values .name }}
{{- $text := include "nudge.pipelineText" . }}
{{- $p := fromToml $text }}
{{- if hasKey $p "Error" }}
{{- fail (printf "%s.pipeline is not valid TOML: %s" .name $p.Error) }}
{{- end }}
{{- $admin := get $p "admin" }}
{{- if not (kindIs "map" $admin) }}
{{- fail (printf "%s.pipeline has no [admin] table: the probes and Prometheus need its endpoint; add [admin] listen = \"0.0.0.0:9100\"" .name) }}
{{- end }}
{{- $adminPort := include "nudge.listenPort" (dict "name" .name "key" "[admin] listen" "listen" ($admin.listen | default "127.0.0.1:9100")) }}
{{- $sourcePort := "" }}
{{- $sources := get $p "source" }}
{{- if kindIs "map" $sources }}
{{- range $plugin, $table := $sources }}
{{- if and (kindIs "map" $table) (hasKey $table "listen") }}
{{- $sourcePort = include "nudge.listenPort" (dict "name" $.name "key" (printf "[source.%s] listen" $plugin) "listen" $table.listen) }}
{{- end }}
{{- end }}
{{- end }}
{{- if and (eq .name "edge") (not $sourcePort) }}
{{- fail "edge.pipeline has no [source.*] table with a listen address: the edge's Service needs one" }}
{{- end }}
{{- $graceMs := 10000 }}
{{- $pipeline := get $p "pipeline" }}
{{- if and (kindIs "map" $pipeline) (hasKey $pipeline "shutdown_grace_ms") }}
{{- $graceMs = int64 $pipeline.shutdown_grace_ms }}
{{- end }}
{{- $graceS := div (add $graceMs 999) 1000 }}
{{- $preStop := int64 $c.preStopSleepSeconds }}
{{- $termination := add $preStop $graceS 10 }}
{{- if not (kindIs "invalid" $c.terminationGracePeriodSeconds) }}
{{- $termination = int64 $c.terminationGracePeriodSeconds }}
{{- if le $termination (add $preStop $graceS) }}
{{- fail (printf "%s.terminationGracePeriodSeconds is %d: it must exceed preStopSleepSeconds (%d) + the pipeline's shutdown_grace_ms (%d ms), or the kubelet kills nudge while it drains" .name $termination $preStop $graceMs) }}
{{- end }}
{{- end }}
{{- dict "text" $text "adminPort" (atoi $adminPort) "sourcePort" (atoi (default "0" $sourcePort)) "graceMs" $graceMs "terminationGracePeriodSeconds" $termination | toJson }}
{{- end }}
