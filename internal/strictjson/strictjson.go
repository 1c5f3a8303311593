// Package strictjson decodes configuration files strictly: a key that no
// field takes is an error naming it, where it is, and the keys that are
// known there, so that a misspelled setting ("aproval") is never silently
// ignored.
package strictjson

import (
	"bytes"
	"encoding"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"reflect"
	"slices"
	"strings"
)

// UnknownKeyError is a key that no field of the target takes.
type UnknownKeyError struct {
	Key   string   // the key as written
	Path  string   // where: "" at the top level, else e.g. "oidc" or "routes[2]"
	Known []string // the keys known there, sorted
}

func (e *UnknownKeyError) Error() string {
	where := ""
	key := e.Key
	if e.Path != "" {
		where, key = fmt.Sprintf(" in %q", e.Path), e.Path+"."+e.Key
	}
	return fmt.Sprintf("unknown key %q (known keys%s: %s)", key, where, strings.Join(e.Known, ", "))
}

// Unmarshal decodes one JSON value from data into v (a pointer), as
// json.Unmarshal does but refusing unknown keys (an *UnknownKeyError) and
// anything after the value.
func Unmarshal(data []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		if strings.HasPrefix(err.Error(), "json: unknown field ") {
			if uk := findUnknown(data, reflect.TypeOf(v), ""); uk != nil {
				return uk
			}
		}
		return err
	}
	if _, err := dec.Token(); err == nil {
		return errors.New("unexpected data after the JSON value")
	}
	return nil
}

var (
	textUnmarshaler = reflect.TypeFor[encoding.TextUnmarshaler]()
	jsonUnmarshaler = reflect.TypeFor[json.Unmarshaler]()
)

// findUnknown walks raw along type t and returns the first unknown key
// (in key order, so the answer is stable).
func findUnknown(raw []byte, t reflect.Type, path string) *UnknownKeyError {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if reflect.PointerTo(t).Implements(textUnmarshaler) || reflect.PointerTo(t).Implements(jsonUnmarshaler) {
		return nil // decodes itself
	}
	switch t.Kind() {
	case reflect.Struct:
		var m map[string]json.RawMessage
		if json.Unmarshal(raw, &m) != nil {
			return nil
		}
		fields := fieldsOf(t)
		var known []string
		for name := range fields {
			known = append(known, name)
		}
		slices.Sort(known)
		for _, k := range slices.Sorted(maps.Keys(m)) {
			ft, ok := fields[k]
			if !ok {
				// encoding/json also matches a key case-insensitively.
				for name, t := range fields {
					if strings.EqualFold(name, k) {
						ft, ok = t, true
						break
					}
				}
			}
			if !ok {
				return &UnknownKeyError{Key: k, Path: path, Known: known}
			}
			if uk := findUnknown(m[k], ft, join(path, k)); uk != nil {
				return uk
			}
		}
	case reflect.Slice, reflect.Array:
		var elems []json.RawMessage
		if json.Unmarshal(raw, &elems) != nil {
			return nil
		}
		for i, e := range elems {
			if uk := findUnknown(e, t.Elem(), fmt.Sprintf("%s[%d]", path, i)); uk != nil {
				return uk
			}
		}
	case reflect.Map:
		var m map[string]json.RawMessage
		if json.Unmarshal(raw, &m) != nil {
			return nil
		}
		for _, k := range slices.Sorted(maps.Keys(m)) {
			if uk := findUnknown(m[k], t.Elem(), join(path, k)); uk != nil {
				return uk
			}
		}
	}
	return nil
}

// fieldsOf maps the JSON names of t's fields to their types (exported
// fields, tag names, embedded structs' fields promoted).
func fieldsOf(t reflect.Type) map[string]reflect.Type {
	out := map[string]reflect.Type{}
	for f := range t.Fields() {
		tag := f.Tag.Get("json")
		if tag == "-" {
			continue
		}
		name, _, _ := strings.Cut(tag, ",")
		if f.Anonymous && name == "" {
			et := f.Type
			if et.Kind() == reflect.Pointer {
				et = et.Elem()
			}
			if et.Kind() == reflect.Struct {
				for n, ft := range fieldsOf(et) {
					if _, dup := out[n]; !dup {
						out[n] = ft
					}
				}
				continue
			}
		}
		if !f.IsExported() {
			continue
		}
		if name == "" {
			name = f.Name
		}
		out[name] = f.Type
	}
	return out
}

func join(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}
