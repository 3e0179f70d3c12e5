// Package helmtest checks the Helm chart in deploy/helm/nudge offline: what
// `helm template` renders is decoded into the Kubernetes API's own Go types,
// strictly, the way the API server's strict field validation reads it.
package helmtest

import (
	"errors"
	"fmt"
	"regexp"
	"strings"

	monitoringv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation"
	sigsjson "sigs.k8s.io/json"
	"sigs.k8s.io/yaml"
)

// The kinds the chart may render. Any other is an error: a new template needs
// its type here, so that it is decoded as strictly as the rest.
var kinds = map[string]func() metav1.Object{
	"v1/ConfigMap":                           func() metav1.Object { return &corev1.ConfigMap{} },
	"v1/Secret":                              func() metav1.Object { return &corev1.Secret{} },
	"v1/Service":                             func() metav1.Object { return &corev1.Service{} },
	"apps/v1/Deployment":                     func() metav1.Object { return &appsv1.Deployment{} },
	"policy/v1/PodDisruptionBudget":          func() metav1.Object { return &policyv1.PodDisruptionBudget{} },
	"autoscaling/v2/HorizontalPodAutoscaler": func() metav1.Object { return &autoscalingv2.HorizontalPodAutoscaler{} },
	"monitoring.coreos.com/v1/ServiceMonitor": func() metav1.Object {
		return &monitoringv1.ServiceMonitor{}
	},
}

// Object is one rendered manifest, decoded.
type Object struct {
	Kind   string // apiVersion/kind, e.g. "apps/v1/Deployment"
	Source string // the template it came from (helm's "# Source:" line)
	Obj    metav1.Object
}

var documentSeparator = regexp.MustCompile(`(?m)^---[ \t]*$`)
var sourceLine = regexp.MustCompile(`(?m)^# Source: (\S+)`)

// DecodeManifests splits helm's output into documents and decodes each one
// strictly (see DecodeStrict); every error is returned, with its template.
func DecodeManifests(rendered string) ([]Object, error) {
	var objects []Object
	var errs []error
	for _, doc := range documentSeparator.Split(rendered, -1) {
		source := ""
		if m := sourceLine.FindStringSubmatch(doc); m != nil {
			source = m[1]
		}
		if isEmptyDocument(doc) {
			continue
		}
		obj, kind, err := DecodeStrict([]byte(doc))
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", source, err))
			continue
		}
		objects = append(objects, Object{Kind: kind, Source: source, Obj: obj})
	}
	return objects, errors.Join(errs...)
}

func isEmptyDocument(doc string) bool {
	for _, line := range strings.Split(doc, "\n") {
		line = strings.TrimSpace(line)
		if line != "" && !strings.HasPrefix(line, "#") {
			return false
		}
	}
	return true
}

// DecodeStrict decodes one YAML manifest into its API type. Like the API
// server's strict field validation (sigs.k8s.io/json, which apimachinery
// uses): a duplicate key, an unknown field, or a field of the wrong case is an
// error; encoding/json alone would accept "Replicas" for "replicas". Names and
// labels must also be ones the API server accepts.
func DecodeStrict(doc []byte) (metav1.Object, string, error) {
	j, err := yaml.YAMLToJSONStrict(doc)
	if err != nil {
		return nil, "", fmt.Errorf("not valid YAML: %w", err)
	}
	var tm metav1.TypeMeta
	if err := sigsjson.UnmarshalCaseSensitivePreserveInts(j, &tm); err != nil {
		return nil, "", fmt.Errorf("no apiVersion/kind: %w", err)
	}
	kind := tm.APIVersion + "/" + tm.Kind
	newObject, ok := kinds[kind]
	if !ok {
		return nil, kind, fmt.Errorf("kind %q is not one the test knows: add its Go type to kinds", kind)
	}
	obj := newObject()
	strictErrs, err := sigsjson.UnmarshalStrict(j, obj)
	if err != nil {
		return nil, kind, fmt.Errorf("%s: %w", kind, err)
	}
	if len(strictErrs) > 0 {
		return nil, kind, fmt.Errorf("%s %q: %w", kind, nameOf(j), errors.Join(strictErrs...))
	}
	if err := checkMeta(obj); err != nil {
		return nil, kind, fmt.Errorf("%s %q: %w", kind, obj.GetName(), err)
	}
	return obj, kind, nil
}

func nameOf(j []byte) string {
	var m struct {
		Metadata struct {
			Name string `json:"name"`
		} `json:"metadata"`
	}
	_ = sigsjson.UnmarshalCaseSensitivePreserveInts(j, &m)
	return m.Metadata.Name
}

func checkMeta(obj metav1.Object) error {
	var problems []string
	// Services' names are DNS labels; every other kind here takes a subdomain.
	var nameErrs []string
	if _, isService := obj.(*corev1.Service); isService {
		nameErrs = validation.IsDNS1035Label(obj.GetName())
	} else {
		nameErrs = validation.IsDNS1123Subdomain(obj.GetName())
	}
	for _, e := range nameErrs {
		problems = append(problems, "name: "+e)
	}
	for k, v := range obj.GetLabels() {
		for _, e := range validation.IsQualifiedName(k) {
			problems = append(problems, fmt.Sprintf("label %q: %s", k, e))
		}
		for _, e := range validation.IsValidLabelValue(v) {
			problems = append(problems, fmt.Sprintf("label %q value %q: %s", k, v, e))
		}
	}
	for k := range obj.GetAnnotations() {
		for _, e := range validation.IsQualifiedName(strings.ToLower(k)) {
			problems = append(problems, fmt.Sprintf("annotation %q: %s", k, e))
		}
	}
	if len(problems) > 0 {
		return errors.New(strings.Join(problems, "; "))
	}
	return nil
}
