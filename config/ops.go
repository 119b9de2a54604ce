package config

import (
	"fmt"
	"reflect"
	"sort"
	"strings"
)

// Metrics configures the HTTP endpoint for Prometheus metrics (/metrics)
// and the health check (/healthz).
type Metrics struct {
	// Listen is the host:port of the HTTP listener; empty disables it. The
	// endpoint has no authentication: keep it on loopback or a private
	// network.
	Listen string `toml:"listen"`
	// Profiling also serves Go's runtime profiles (CPU, heap, goroutines)
	// at /debug/pprof/ on the same endpoint, for diagnosing performance
	// problems. Off by default.
	Profiling bool `toml:"profiling"`
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
		c := Change{Option: prefix + name, Old: formatValue(av), New: formatValue(bv)}
		if secret(name) {
			c.Old, c.New = "(hidden)", "(hidden)"
		}
		*out = append(*out, c)
	}
}

// secret reports whether an option holds a password or key material that
// must not be printed or logged.
func secret(name string) bool {
	return strings.Contains(name, "password") || strings.Contains(name, "secret")
}

// formatValue writes a value as it would appear in the TOML file. Tables
// keyed by name (components) are shown by their keys only: their values
// hold secrets.
func formatValue(v reflect.Value) string {
	if v.Kind() == reflect.Map {
		keys := make([]string, 0, v.Len())
		for _, k := range v.MapKeys() {
			keys = append(keys, fmt.Sprint(k.Interface()))
		}
		sort.Strings(keys)
		return "[" + strings.Join(keys, ", ") + "] (values hidden)"
	}
	switch x := v.Interface().(type) {
	case string:
		return fmt.Sprintf("%q", x)
	case Duration:
		return fmt.Sprintf("%q", x.Duration.String())
	}
	return fmt.Sprint(v.Interface())
}
