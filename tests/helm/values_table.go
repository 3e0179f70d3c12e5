package helmtest

import (
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"strings"

	yamlv3 "go.yaml.in/yaml/v3"
)

// ValuesTable makes the Markdown table of a chart's values.yaml: one row per
// key whose comment starts with `# --` (helm-docs' convention), with its
// dotted path, type, default and the comment as its description. A key
// without such a comment must be a section (a map), whose keys have rows of
// their own; a leaf without one is an error, so every value is documented.
// A description may start with the type in parentheses, `# -- (int) ...`,
// for values whose default does not say it (null; `intOrString` for a count
// or a percentage).
func ValuesTable(valuesYAML []byte) (string, error) {
	var doc yamlv3.Node
	if err := yamlv3.Unmarshal(valuesYAML, &doc); err != nil {
		return "", err
	}
	if doc.Kind != yamlv3.DocumentNode || len(doc.Content) != 1 || doc.Content[0].Kind != yamlv3.MappingNode {
		return "", errors.New("values.yaml is not a mapping")
	}
	var rows []string
	var errs []error
	walkValues(doc.Content[0], "", &rows, nil, &errs)
	if len(errs) > 0 {
		return "", errors.Join(errs...)
	}
	return "| key | type | default | description |\n|---|---|---|---|\n" + strings.Join(rows, "\n") + "\n", nil
}

// ValuesSchema makes values.schema.json from the same comments: every
// section is an object that admits only its documented keys, so that Helm
// refuses a misspelt value (`--set edge.replica=3`) instead of ignoring it;
// a documented key admits any value of its type.
func ValuesSchema(valuesYAML []byte) ([]byte, error) {
	var doc yamlv3.Node
	if err := yamlv3.Unmarshal(valuesYAML, &doc); err != nil {
		return nil, err
	}
	if doc.Kind != yamlv3.DocumentNode || len(doc.Content) != 1 || doc.Content[0].Kind != yamlv3.MappingNode {
		return nil, errors.New("values.yaml is not a mapping")
	}
	var rows []string
	var errs []error
	schema := map[string]any{}
	walkValues(doc.Content[0], "", &rows, schema, &errs)
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	// Helm gives a chart used as a subchart its parent's `global` values.
	schema["properties"].(map[string]any)["global"] = map[string]any{"type": "object"}
	schema["$schema"] = "https://json-schema.org/draft-07/schema#"
	schema["title"] = "Values of the nudge chart (scripts/gen-chart-values writes this file from values.yaml)"
	out, err := json.MarshalIndent(schema, "", "  ")
	return append(out, '\n'), err
}

var schemaTypes = map[string]any{
	"string": "string", "int": "integer", "bool": "boolean", "number": "number",
	"object": "object", "list": "array", "intOrString": []any{"integer", "string"},
}

var typePrefix = regexp.MustCompile(`^\((\w+)\)\s*`)

func walkValues(m *yamlv3.Node, prefix string, rows *[]string, schema map[string]any, errs *[]error) {
	properties := map[string]any{}
	if schema != nil {
		schema["type"] = "object"
		schema["additionalProperties"] = false
		schema["properties"] = properties
	}
	for i := 0; i+1 < len(m.Content); i += 2 {
		key, value := m.Content[i], m.Content[i+1]
		path := prefix + key.Value
		description, documented := describedBy(key.HeadComment)
		if !documented {
			if value.Kind == yamlv3.MappingNode && len(value.Content) > 0 {
				var section map[string]any
				if schema != nil {
					section = map[string]any{}
					properties[key.Value] = section
				}
				walkValues(value, path+".", rows, section, errs)
			} else {
				*errs = append(*errs, fmt.Errorf("values.yaml:%d: %s has no `# --` comment", key.Line, path))
			}
			continue
		}
		typ := typeOf(value)
		if m := typePrefix.FindStringSubmatch(description); m != nil {
			typ, description = m[1], description[len(m[0]):]
		}
		var v any
		if err := value.Decode(&v); err != nil {
			*errs = append(*errs, fmt.Errorf("values.yaml:%d: %s: %v", key.Line, path, err))
			continue
		}
		def, err := json.Marshal(v)
		if err != nil {
			*errs = append(*errs, fmt.Errorf("values.yaml:%d: %s: %v", key.Line, path, err))
			continue
		}
		*rows = append(*rows, fmt.Sprintf("| `%s` | %s | `%s` | %s |", path, typ, cell(string(def)), cell(description)))
		if t, ok := schemaTypes[typ]; ok {
			if value.Tag == "!!null" {
				t = []any{t, "null"}
			}
			properties[key.Value] = map[string]any{"type": t, "description": description}
		} else {
			properties[key.Value] = map[string]any{"description": description}
		}
	}
}

// describedBy returns the text of a `# --` comment and the comment lines after it.
func describedBy(comment string) (string, bool) {
	var text []string
	found := false
	for _, line := range strings.Split(comment, "\n") {
		line = strings.TrimSpace(line)
		switch {
		case strings.HasPrefix(line, "# --"):
			found = true
			text = []string{strings.TrimSpace(strings.TrimPrefix(line, "# --"))}
		case found && strings.HasPrefix(line, "#"):
			text = append(text, strings.TrimSpace(strings.TrimPrefix(line, "#")))
		}
	}
	return strings.Join(text, " "), found
}

func typeOf(n *yamlv3.Node) string {
	switch n.Kind {
	case yamlv3.MappingNode:
		return "object"
	case yamlv3.SequenceNode:
		return "list"
	}
	switch n.Tag {
	case "!!str":
		return "string"
	case "!!int":
		return "int"
	case "!!bool":
		return "bool"
	case "!!float":
		return "number"
	}
	return "null"
}

func cell(s string) string { return strings.ReplaceAll(s, "|", `\|`) }

const (
	tableBegin = "<!-- values table: begin (scripts/gen-chart-values writes it from values.yaml) -->\n"
	tableEnd   = "<!-- values table: end -->"
)

// ReplaceValuesTable puts table between the README's markers.
func ReplaceValuesTable(readme, table string) (string, error) {
	b := strings.Index(readme, tableBegin)
	e := strings.Index(readme, tableEnd)
	if b < 0 || e < b {
		return "", fmt.Errorf("README.md lacks the markers %q and %q", strings.TrimSpace(tableBegin), tableEnd)
	}
	return readme[:b+len(tableBegin)] + table + readme[e:], nil
}
