package config

import (
	"fmt"
	"reflect"
)

// Metrics configures the HTTP endpoint for Prometheus metrics (/metrics)
// and the health check (/healthz).
type Metrics struct {
	// Listen is the host:port of the HTTP listener; empty disables it. The
	// endpoint has no authentication: keep it on loopback or a private
	// network.
	Listen string `toml:"listen"`
}

// Change is an option whose value differs between two configurations.
type Change struct {
	// Option is the dotted name as written in the file ("c2s.listen").
	Option string
	// Old and New are the values, formatted as in the file.
	Old, New string
}

// Diff lists the options whose values differ from a to b, in the order of
// the Config struct.
func Diff(a, b *Config) []Change {
	var out []Change
	diffStruct(reflect.ValueOf(a).Elem(), reflect.ValueOf(b).Elem(), "", &out)
	return out
}

func diffStruct(a, b reflect.Value, prefix string, out *[]Change) {
	durationType := reflect.TypeFor[Duration]()
	t := a.Type()
	for i := range t.NumField() {
		f := t.Field(i)
		name := f.Tag.Get("toml")
		if name == "" || name == "-" {
			continue
		}
		av, bv := a.Field(i), b.Field(i)
		if f.Type.Kind() == reflect.Struct && f.Type != durationType {
			diffStruct(av, bv, prefix+name+".", out)
			continue
		}
		if reflect.DeepEqual(av.Interface(), bv.Interface()) {
			continue
		}
		*out = append(*out, Change{Option: prefix + name, Old: formatValue(av), New: formatValue(bv)})
	}
}

// formatValue writes a value as it would appear in the TOML file.
func formatValue(v reflect.Value) string {
	switch x := v.Interface().(type) {
	case string:
		return fmt.Sprintf("%q", x)
	case Duration:
		return fmt.Sprintf("%q", x.Duration.String())
	}
	return fmt.Sprint(v.Interface())
}
