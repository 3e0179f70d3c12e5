package helmtest

import (
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/BurntSushi/toml"
	monitoringv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/intstr"
)

var (
	sourceDir = envOr("NUDGE_SOURCE_DIR", "../..")
	chartDir  = filepath.Join(sourceDir, "deploy", "helm", "nudge")
)

func envOr(name, fallback string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return fallback
}

// helmCmd runs scripts/helm (or $HELM) and returns its stdout; stderr is in the error.
func helmCmd(t *testing.T, args ...string) (string, error) {
	t.Helper()
	bin := envOr("HELM", filepath.Join(sourceDir, "scripts", "helm"))
	cmd := exec.Command(bin, args...)
	var stdout, stderr strings.Builder
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	start := time.Now()
	err := cmd.Run()
	t.Logf("helm %s: %.2f s", args[0], time.Since(start).Seconds())
	if err != nil {
		return stdout.String(), fmt.Errorf("helm %s: %v\n%s%s", strings.Join(args, " "), err, stdout.String(), stderr.String())
	}
	return stdout.String(), nil
}

// A variant is a set of values the chart must render and pass lint with.
type variant struct {
	name string
	args []string
	// kinds that must be rendered, and how many of each
	want map[string]int
	// the Secret the pods read, when not the chart's own
	existingSecret string
}

var variants = []variant{
	{name: "default", want: map[string]int{
		"apps/v1/Deployment": 2, "v1/ConfigMap": 2, "v1/Secret": 1, "v1/Service": 1,
		"policy/v1/PodDisruptionBudget": 2,
	}},
	{name: "edge-autoscaled", args: []string{"-f", "values/edge-autoscaled.yaml"}, want: map[string]int{
		"apps/v1/Deployment": 1, "v1/ConfigMap": 1, "v1/Secret": 1, "v1/Service": 1,
		"policy/v1/PodDisruptionBudget": 1, "autoscaling/v2/HorizontalPodAutoscaler": 1,
	}},
	{name: "monitored", args: []string{"-f", "values/monitored.yaml"}, existingSecret: "nudge-servers", want: map[string]int{
		"apps/v1/Deployment": 2, "v1/ConfigMap": 3, "v1/Service": 3,
		"policy/v1/PodDisruptionBudget": 1, "autoscaling/v2/HorizontalPodAutoscaler": 2,
		"monitoring.coreos.com/v1/ServiceMonitor": 1,
	}},
	{name: "own-pipeline", args: []string{"-f", "values/own-pipeline.yaml",
		"--set-file", "persist.pipeline=testdata/persist-admin-9200.toml"}, want: map[string]int{
		"apps/v1/Deployment": 1, "v1/ConfigMap": 1, "v1/Secret": 1, "policy/v1/PodDisruptionBudget": 1,
	}},
}

func TestLint(t *testing.T) {
	for _, v := range variants {
		t.Run(v.name, func(t *testing.T) {
			out, err := helmCmd(t, append([]string{"lint", "--strict", chartDir}, v.args...)...)
			if err != nil {
				t.Fatal(err)
			}
			if !strings.Contains(out, "0 chart(s) failed") {
				t.Fatalf("helm lint did not pass:\n%s", out)
			}
		})
	}
}

func render(t *testing.T, args ...string) []Object {
	t.Helper()
	out, err := helmCmd(t, append([]string{"template", "chat", chartDir, "--namespace", "chat"}, args...)...)
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	objects, err := DecodeManifests(out)
	if err != nil {
		t.Fatalf("strict decoding failed:\n%v", err)
	}
	t.Logf("decoded %d manifests strictly in %.3f s", len(objects), time.Since(start).Seconds())
	return objects
}

func TestRenderedManifests(t *testing.T) {
	for _, v := range variants {
		t.Run(v.name, func(t *testing.T) {
			objects := render(t, v.args...)
			counts := map[string]int{}
			for _, o := range objects {
				counts[o.Kind]++
			}
			if !reflect.DeepEqual(counts, v.want) {
				t.Errorf("rendered %v, want %v", counts, v.want)
			}
			for _, o := range objects {
				if d, ok := o.Obj.(*appsv1.Deployment); ok {
					t.Run(d.Name, func(t *testing.T) { checkDeployment(t, objects, d, v) })
				}
			}
			checkServices(t, objects)
			checkDisruptionBudgets(t, objects)
			checkAutoscalers(t, objects)
			checkServiceMonitors(t, objects)
			checkDashboard(t, objects)
		})
	}
}

func find[T any](objects []Object, name string) *T {
	for _, o := range objects {
		if obj, ok := any(o.Obj).(*T); ok && o.Obj.GetName() == name {
			return obj
		}
	}
	return nil
}

func all[T any](objects []Object) []*T {
	var found []*T
	for _, o := range objects {
		if obj, ok := any(o.Obj).(*T); ok {
			found = append(found, obj)
		}
	}
	return found
}

// What a pipeline file says about the ports and the grace period, read
// independently of the chart's own reading (its fromToml in _helpers.tpl).
type pipelineFacts struct {
	adminPort, sourcePort int32
	graceMs               int64
}

func readPipeline(t *testing.T, text string) pipelineFacts {
	t.Helper()
	var p struct {
		Pipeline struct {
			ShutdownGraceMs *int64 `toml:"shutdown_grace_ms"`
		}
		Admin *struct {
			Listen string
		}
		Source map[string]map[string]any
	}
	if _, err := toml.Decode(text, &p); err != nil {
		t.Fatalf("the ConfigMap's pipeline is not TOML: %v", err)
	}
	facts := pipelineFacts{graceMs: 10000} // the runtime's default (docs/reference.md)
	if p.Pipeline.ShutdownGraceMs != nil {
		facts.graceMs = *p.Pipeline.ShutdownGraceMs
	}
	if p.Admin == nil {
		t.Fatal("the ConfigMap's pipeline has no [admin] table: nothing answers the probes")
	}
	facts.adminPort = portOf(t, p.Admin.Listen)
	for _, table := range p.Source {
		if listen, ok := table["listen"].(string); ok {
			facts.sourcePort = portOf(t, listen)
		}
	}
	return facts
}

func portOf(t *testing.T, listen string) int32 {
	t.Helper()
	i := strings.LastIndex(listen, ":")
	port, err := strconv.Atoi(listen[i+1:])
	if i < 0 || err != nil {
		t.Fatalf("listen %q has no port", listen)
	}
	return int32(port)
}

// The pipeline passes `nudge validate` as the pod will run it: every plugin,
// every key, offline.
func validatePipeline(t *testing.T, text string) {
	t.Helper()
	nudge := os.Getenv("NUDGE_BIN")
	if nudge == "" {
		t.Fatal("NUDGE_BIN is not set: the ConfigMaps' pipelines need `nudge validate` (run through ctest)")
	}
	file := filepath.Join(t.TempDir(), "pipeline.toml")
	if err := os.WriteFile(file, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(nudge, "validate", file).CombinedOutput()
	if err != nil {
		t.Fatalf("nudge validate refuses the ConfigMap's pipeline: %v\n%s", err, out)
	}
}

func containerPort(t *testing.T, c *corev1.Container, port intstr.IntOrString) int32 {
	t.Helper()
	if port.Type == intstr.Int {
		return port.IntVal
	}
	for _, p := range c.Ports {
		if p.Name == port.StrVal {
			return p.ContainerPort
		}
	}
	t.Fatalf("container %q has no port named %q", c.Name, port.StrVal)
	return 0
}

func checkDeployment(t *testing.T, objects []Object, d *appsv1.Deployment, v variant) {
	pod := d.Spec.Template.Spec
	if !labels.SelectorFromSet(d.Spec.Selector.MatchLabels).Matches(labels.Set(d.Spec.Template.Labels)) {
		t.Errorf("the selector %v does not select the pods %v", d.Spec.Selector.MatchLabels, d.Spec.Template.Labels)
	}
	if len(pod.Containers) != 1 {
		t.Fatalf("%d containers, want 1", len(pod.Containers))
	}
	c := &pod.Containers[0]
	if want := []string{"run", "/etc/nudge/pipeline.toml"}; !slices.Equal(c.Args, want) || len(c.Command) != 0 {
		t.Errorf("command %v args %v, want the image's nudge with %v", c.Command, c.Args, want)
	}

	// The pipeline the pod runs: the ConfigMap mounted at /etc/nudge.
	var volume string
	for _, m := range c.VolumeMounts {
		if m.MountPath == "/etc/nudge" {
			volume = m.Name
		}
	}
	var configMap string
	for _, vol := range pod.Volumes {
		if vol.Name == volume && vol.ConfigMap != nil {
			configMap = vol.ConfigMap.Name
		}
	}
	cm := find[corev1.ConfigMap](objects, configMap)
	if cm == nil {
		t.Fatalf("no ConfigMap %q mounted at /etc/nudge (volume %q)", configMap, volume)
	}
	text, ok := cm.Data["pipeline.toml"]
	if !ok {
		t.Fatalf("ConfigMap %q has no pipeline.toml", configMap)
	}
	validatePipeline(t, text)
	facts := readPipeline(t, text)

	// The probes ask the admin endpoint the pipeline listens on.
	for name, probe := range map[string]*corev1.Probe{
		"/readyz": c.ReadinessProbe, "/healthz": c.LivenessProbe, "/healthz (startup)": c.StartupProbe,
	} {
		if probe == nil || probe.HTTPGet == nil {
			t.Errorf("no HTTP probe for %s", name)
			continue
		}
		if path := strings.Fields(name)[0]; probe.HTTPGet.Path != path {
			t.Errorf("probe for %s asks %s", name, probe.HTTPGet.Path)
		}
		if port := containerPort(t, c, probe.HTTPGet.Port); port != facts.adminPort {
			t.Errorf("probe %s is on port %d; the pipeline's admin endpoint listens on %d", name, port, facts.adminPort)
		}
	}
	if a := d.Spec.Template.Annotations; a["prometheus.io/scrape"] == "true" && a["prometheus.io/port"] != strconv.Itoa(int(facts.adminPort)) {
		t.Errorf("prometheus.io/port is %q; the admin endpoint listens on %d", a["prometheus.io/port"], facts.adminPort)
	}
	if facts.sourcePort != 0 && containerPort(t, c, intstr.FromString("http")) != facts.sourcePort {
		t.Errorf("port http is not the source's %d", facts.sourcePort)
	}

	// The kubelet's SIGKILL comes after the preStop wait and the drain.
	var preStop int64
	if c.Lifecycle != nil && c.Lifecycle.PreStop != nil {
		cmd := c.Lifecycle.PreStop.Exec.Command
		if len(cmd) != 2 || cmd[0] != "/bin/sleep" {
			t.Fatalf("preStop %v, want /bin/sleep N", cmd)
		}
		n, err := strconv.ParseInt(cmd[1], 10, 64)
		if err != nil {
			t.Fatalf("preStop sleeps %q", cmd[1])
		}
		preStop = n
	}
	grace := pod.TerminationGracePeriodSeconds
	drain := preStop + int64(math.Ceil(float64(facts.graceMs)/1000))
	if grace == nil || *grace <= drain {
		t.Errorf("terminationGracePeriodSeconds %s does not exceed the preStop wait (%d s) plus shutdown_grace_ms (%d ms)", show(grace), preStop, facts.graceMs)
	}

	// A rolling update never takes capacity away: a new pod is ready first.
	if ru := d.Spec.Strategy.RollingUpdate; ru == nil || ru.MaxUnavailable == nil || ru.MaxUnavailable.IntValue() != 0 {
		t.Errorf("rolling update may take pods away before their replacements are ready: %+v", d.Spec.Strategy)
	}

	// Never root; nothing to escalate.
	sc := pod.SecurityContext
	if sc == nil || sc.RunAsNonRoot == nil || !*sc.RunAsNonRoot || sc.RunAsUser == nil || *sc.RunAsUser == 0 {
		t.Errorf("the pod may run as root: %+v", sc)
	}
	if csc := c.SecurityContext; csc == nil || csc.AllowPrivilegeEscalation == nil || *csc.AllowPrivilegeEscalation {
		t.Errorf("the container may escalate privileges: %+v", csc)
	}

	// The servers come from a Secret: the chart's own, or the user's.
	if len(c.EnvFrom) != 1 || c.EnvFrom[0].SecretRef == nil {
		t.Fatalf("envFrom %+v, want the Secret", c.EnvFrom)
	}
	secret := c.EnvFrom[0].SecretRef.Name
	if v.existingSecret != "" {
		if secret != v.existingSecret {
			t.Errorf("reads Secret %q, want the existing %q", secret, v.existingSecret)
		}
	} else if find[corev1.Secret](objects, secret) == nil {
		t.Errorf("reads Secret %q, which the chart does not make", secret)
	}
}

func show(p *int64) string {
	if p == nil {
		return "(unset: 30)"
	}
	return strconv.FormatInt(*p, 10)
}

func podLabels(objects []Object) []labels.Set {
	var sets []labels.Set
	for _, d := range all[appsv1.Deployment](objects) {
		sets = append(sets, labels.Set(d.Spec.Template.Labels))
	}
	return sets
}

func selects(selector map[string]string, objects []Object) int {
	n := 0
	for _, l := range podLabels(objects) {
		if labels.SelectorFromSet(selector).Matches(l) {
			n++
		}
	}
	return n
}

func checkServices(t *testing.T, objects []Object) {
	for _, s := range all[corev1.Service](objects) {
		if selects(s.Spec.Selector, objects) != 1 {
			t.Errorf("Service %q selects the pods of %d Deployments, want 1", s.Name, selects(s.Spec.Selector, objects))
		}
		for _, d := range all[appsv1.Deployment](objects) {
			if !labels.SelectorFromSet(s.Spec.Selector).Matches(labels.Set(d.Spec.Template.Labels)) {
				continue
			}
			c := &d.Spec.Template.Spec.Containers[0]
			for _, p := range s.Spec.Ports {
				containerPort(t, c, p.TargetPort) // fails when the target names no port of the pod
			}
		}
		if s.Spec.SessionAffinity == corev1.ServiceAffinityClientIP && s.Spec.SessionAffinityConfig == nil {
			t.Errorf("Service %q: ClientIP affinity without its timeout", s.Name)
		}
	}
}

func checkDisruptionBudgets(t *testing.T, objects []Object) {
	for _, p := range all[policyv1.PodDisruptionBudget](objects) {
		if selects(p.Spec.Selector.MatchLabels, objects) != 1 {
			t.Errorf("PodDisruptionBudget %q covers the pods of %d Deployments, want 1", p.Name, selects(p.Spec.Selector.MatchLabels, objects))
		}
	}
}

func checkAutoscalers(t *testing.T, objects []Object) {
	for _, h := range all[autoscalingv2.HorizontalPodAutoscaler](objects) {
		d := find[appsv1.Deployment](objects, h.Spec.ScaleTargetRef.Name)
		if d == nil || h.Spec.ScaleTargetRef.Kind != "Deployment" {
			t.Errorf("HorizontalPodAutoscaler %q scales %+v, which the chart does not make", h.Name, h.Spec.ScaleTargetRef)
			continue
		}
		if d.Spec.Replicas != nil {
			t.Errorf("Deployment %q sets replicas although %q scales it: each upgrade would reset the count", d.Name, h.Name)
		}
		if h.Spec.MinReplicas == nil || *h.Spec.MinReplicas > h.Spec.MaxReplicas {
			t.Errorf("HorizontalPodAutoscaler %q: min %v, max %d", h.Name, h.Spec.MinReplicas, h.Spec.MaxReplicas)
		}
		for _, m := range h.Spec.Metrics {
			if m.Type == autoscalingv2.PodsMetricSourceType && !documentedMetric(t, m.Pods.Metric.Name) {
				t.Errorf("HorizontalPodAutoscaler %q scales on %q, which docs/operations.md does not list", h.Name, m.Pods.Metric.Name)
			}
		}
	}
}

func documentedMetric(t *testing.T, name string) bool {
	doc, err := os.ReadFile(filepath.Join(sourceDir, "docs", "operations.md"))
	if err != nil {
		t.Fatal(err)
	}
	return regexp.MustCompile(`\b` + regexp.QuoteMeta(name) + `\b`).Match(doc)
}

func checkServiceMonitors(t *testing.T, objects []Object) {
	for _, m := range all[monitoringv1.ServiceMonitor](objects) {
		n := 0
		for _, s := range all[corev1.Service](objects) {
			if !labels.SelectorFromSet(m.Spec.Selector.MatchLabels).Matches(labels.Set(s.Labels)) {
				continue
			}
			n++
			for _, e := range m.Spec.Endpoints {
				if !slices.ContainsFunc(s.Spec.Ports, func(p corev1.ServicePort) bool { return p.Name == e.Port }) {
					t.Errorf("ServiceMonitor %q scrapes port %q, which Service %q lacks", m.Name, e.Port, s.Name)
				}
				if !e.HonorLabels || e.Path != "/metrics" {
					t.Errorf("ServiceMonitor %q must scrape /metrics with honorLabels (the runtime's own instance label): %+v", m.Name, e)
				}
			}
		}
		if n != len(all[appsv1.Deployment](objects)) {
			t.Errorf("ServiceMonitor %q selects %d Services, want one per Deployment", m.Name, n)
		}
	}
}

func checkDashboard(t *testing.T, objects []Object) {
	for _, cm := range all[corev1.ConfigMap](objects) {
		text, ok := cm.Data["nudge-dashboard.json"]
		if !ok {
			continue
		}
		want, err := os.ReadFile(filepath.Join(sourceDir, "deploy", "grafana", "nudge-dashboard.json"))
		if err != nil {
			t.Fatal(err)
		}
		if strings.TrimSpace(text) != strings.TrimSpace(string(want)) {
			t.Errorf("ConfigMap %q's dashboard differs from deploy/grafana/nudge-dashboard.json", cm.Name)
		}
		if cm.Labels["grafana_dashboard"] != "1" {
			t.Errorf("ConfigMap %q lacks the label Grafana's sidecar looks for: %v", cm.Name, cm.Labels)
		}
	}
}

// Pipelines the chart cannot route to, and grace periods that would cut a
// drain short, stop the render with a message that says why.
func TestRefusals(t *testing.T) {
	dir := t.TempDir()
	loopback := filepath.Join(dir, "loopback.toml")
	variable := filepath.Join(dir, "variable.toml")
	adminOnly := filepath.Join(dir, "admin-only.toml")
	os.WriteFile(adminOnly, []byte("[admin]\nlisten = \"0.0.0.0:9100\"\n[fanout.memory]\n"), 0o644)
	shipped, err := os.ReadFile(filepath.Join(chartDir, "files", "chat-persist.toml"))
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(loopback, []byte(strings.Replace(string(shipped), `"0.0.0.0:9100"`, `"127.0.0.1:9100"`, 1)), 0o644)
	os.WriteFile(variable, []byte(strings.Replace(string(shipped), `"0.0.0.0:9100"`, `"${ADMIN:-0.0.0.0:9100}"`, 1)), 0o644)
	cases := []struct {
		name string
		args []string
		want string
	}{
		{"no admin table", []string{"--set-file", "persist.pipeline=" + filepath.Join(sourceDir, "pipelines", "chat-persist.toml")},
			"persist.pipeline has no [admin] table"},
		{"admin on loopback", []string{"--set-file", "persist.pipeline=" + loopback}, "loopback"},
		{"admin from a variable", []string{"--set-file", "persist.pipeline=" + variable}, "write it as a literal host:port"},
		{"grace period too short", []string{"--set", "edge.terminationGracePeriodSeconds=20"},
			"edge.terminationGracePeriodSeconds is 20: it must exceed preStopSleepSeconds (5) + the pipeline's shutdown_grace_ms (15000 ms)"},
		{"edge without a listener", []string{"--set-file", "edge.pipeline=" + adminOnly},
			"edge.pipeline has no [source.*] table"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := helmCmd(t, append([]string{"template", "chat", chartDir}, c.args...)...)
			if err == nil {
				t.Fatalf("rendered; want a refusal saying %q", c.want)
			}
			if !strings.Contains(err.Error(), c.want) {
				t.Fatalf("refused, but not saying %q:\n%v", c.want, err)
			}
		})
	}
}

// The strict decoder is what catches a misspelt field: it must refuse one.
func TestStrictDecodingRefusesWhatTheAPIServerWould(t *testing.T) {
	deployment := `apiVersion: apps/v1
kind: Deployment
metadata: {name: x}
spec:
  selector: {matchLabels: {a: b}}
  template:
    metadata: {labels: {a: b}}
    spec:
      containers:
        - name: nudge
          image: nudge
          %s
`
	cases := map[string]string{
		"a misspelt field":       "readinesProbe: {httpGet: {path: /readyz, port: 9100}}",
		"a field of wrong case":  "ReadinessProbe: {httpGet: {path: /readyz, port: 9100}}",
		"a duplicate key":        "image: other",
		"a value of wrong type":  "ports: [{containerPort: nine}]",
		"a malformed quantity":   "resources: {limits: {memory: 1 gigabyte}}",
		"a field of another API": "readinessProbe: {httpGet: {path: /readyz, port: 9100, timeout: 2}}",
	}
	if _, _, err := DecodeStrict([]byte(fmt.Sprintf(deployment, "readinessProbe: {httpGet: {path: /readyz, port: 9100}}"))); err != nil {
		t.Fatalf("a valid Deployment is refused: %v", err)
	}
	for name, line := range cases {
		if _, _, err := DecodeStrict([]byte(fmt.Sprintf(deployment, line))); err == nil {
			t.Errorf("%s is accepted: %s", name, line)
		}
	}
	if _, _, err := DecodeStrict([]byte("apiVersion: v1\nkind: Service\nmetadata: {name: Not_A_Name}\n")); err == nil {
		t.Error("a name the API server refuses is accepted")
	}
	if _, _, err := DecodeStrict([]byte("apiVersion: v1\nkind: Pod\nmetadata: {name: x}\n")); err == nil {
		t.Error("a kind without a type here is accepted")
	}
}

// The chart's pipelines are the shipped ones (pipelines/) plus what a pod
// needs: the same plugins with the same settings, so that they cannot drift.
func TestChartPipelinesFollowTheShippedOnes(t *testing.T) {
	// Keys the chart's files may set differently: addresses on the pod's
	// network, the page's installed folder, the Secret's JWT key.
	changed := map[string]bool{
		"source.websocket.listen": true, "source.websocket.static_dir": true, "source.websocket.auth_jwt_secret": true,
	}
	for _, name := range []string{"chat-edge.toml", "chat-persist.toml"} {
		t.Run(name, func(t *testing.T) {
			var shipped, chart map[string]any
			if _, err := toml.DecodeFile(filepath.Join(sourceDir, "pipelines", name), &shipped); err != nil {
				t.Fatal(err)
			}
			if _, err := toml.DecodeFile(filepath.Join(chartDir, "files", name), &chart); err != nil {
				t.Fatal(err)
			}
			for _, kind := range []string{"source", "transform", "fanout", "log", "sink"} {
				s, _ := shipped[kind].(map[string]any)
				c, _ := chart[kind].(map[string]any)
				if !slices.Equal(sortedKeys(s), sortedKeys(c)) {
					t.Errorf("[%s.*]: the chart runs %v, pipelines/%s runs %v", kind, sortedKeys(c), name, sortedKeys(s))
					continue
				}
				for plugin := range s {
					st, ct := s[plugin].(map[string]any), c[plugin].(map[string]any)
					for _, key := range append(sortedKeys(st), sortedKeys(ct)...) {
						path := kind + "." + plugin + "." + key
						if !changed[path] && !reflect.DeepEqual(st[key], ct[key]) {
							t.Errorf("%s: the chart has %v, pipelines/%s has %v", path, ct[key], name, st[key])
						}
					}
				}
			}
		})
	}
}

func sortedKeys(m map[string]any) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

func TestChartDeploysThisVersion(t *testing.T) {
	cmake, err := os.ReadFile(filepath.Join(sourceDir, "CMakeLists.txt"))
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`project\(nudge VERSION (\S+)`).FindSubmatch(cmake)
	chart, err := os.ReadFile(filepath.Join(chartDir, "Chart.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if m == nil || !strings.Contains(string(chart), fmt.Sprintf("appVersion: %q", string(m[1]))) {
		t.Errorf("Chart.yaml's appVersion is not the project's version %q", m[1])
	}
	dashboard, _ := os.ReadFile(filepath.Join(chartDir, "files", "nudge-dashboard.json"))
	want, _ := os.ReadFile(filepath.Join(sourceDir, "deploy", "grafana", "nudge-dashboard.json"))
	if string(dashboard) != string(want) {
		t.Error("files/nudge-dashboard.json is not deploy/grafana/nudge-dashboard.json: copy it again")
	}
}

// README.md's values table and values.schema.json are values.yaml's
// comments; NUDGE_UPDATE=1 rewrites them (scripts/gen-chart-values).
func TestValuesDocsAreCurrent(t *testing.T) {
	values, err := os.ReadFile(filepath.Join(chartDir, "values.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	table, err := ValuesTable(values)
	if err != nil {
		t.Fatal(err)
	}
	readmePath := filepath.Join(chartDir, "README.md")
	readme, err := os.ReadFile(readmePath)
	if err != nil {
		t.Fatal(err)
	}
	updated, err := ReplaceValuesTable(string(readme), table)
	if err != nil {
		t.Fatal(err)
	}
	schema, err := ValuesSchema(values)
	if err != nil {
		t.Fatal(err)
	}
	schemaPath := filepath.Join(chartDir, "values.schema.json")
	current, _ := os.ReadFile(schemaPath)
	for _, f := range []struct {
		path          string
		want, current []byte
	}{{readmePath, []byte(updated), readme}, {schemaPath, schema, current}} {
		if string(f.want) == string(f.current) {
			continue
		}
		if os.Getenv("NUDGE_UPDATE") == "1" {
			if err := os.WriteFile(f.path, f.want, 0o644); err != nil {
				t.Fatal(err)
			}
			t.Logf("rewrote %s", f.path)
			continue
		}
		t.Errorf("%s is stale: run scripts/gen-chart-values", f.path)
	}
}

// The schema makes Helm refuse a misspelt or mistyped value instead of ignoring it.
func TestMisspeltValuesAreRefused(t *testing.T) {
	for value, want := range map[string]string{
		"edge.replica=3":                       "replica",
		"persist.autoscaling.maxReplica=3":     "maxReplica",
		"edge.replicas=two":                    "replicas",
		"edge.terminationGracePeriodSeconds=x": "terminationGracePeriodSeconds",
	} {
		_, err := helmCmd(t, "template", "chat", chartDir, "--set", value)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("--set %s: want a refusal naming %q, got %v", value, want, err)
		}
	}
}

func TestValuesTableNeedsEveryValueDocumented(t *testing.T) {
	_, err := ValuesTable([]byte("a:\n  # -- documented\n  b: 1\n  c: 2\n"))
	if err == nil || !strings.Contains(err.Error(), "a.c has no `# --` comment") {
		t.Fatalf("an undocumented value passes: %v", err)
	}
	table, err := ValuesTable([]byte("# -- (int) seconds | none\nx: null\n"))
	if err != nil || !strings.Contains(table, "| `x` | int | `null` | seconds \\| none |") {
		t.Fatalf("table %q, %v", table, err)
	}
}
