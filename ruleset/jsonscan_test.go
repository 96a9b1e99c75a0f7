package ruleset

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
)

// jsonValue agrees with encoding/json (objects re-marshalled in order).
func TestJSONValue(t *testing.T) {
	for _, in := range []string{
		`{"a":1,"b":[true,false,null,"x"],"c":{"d":-1.5e3}}`,
		`"esc \" \\ \/ \b \f \n \r \t \u00e9 \ud83d\ude00 end"`,
		` [ ] `, `{}`, `[{}]`, `0`, `-0.0`, `"é"`,
	} {
		v, err := jsonValue([]byte(in))
		if err != nil {
			t.Errorf("%s: %v", in, err)
			continue
		}
		got, err := json.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		var w any
		dec := json.NewDecoder(strings.NewReader(in))
		dec.UseNumber()
		if err := dec.Decode(&w); err != nil {
			t.Fatal(err)
		}
		want, _ := json.Marshal(w)
		if !bytes.Equal(got, want) {
			t.Errorf("%s: %s, encoding/json %s", in, got, want)
		}
	}
	for _, bad := range []string{``, `{`, `[1,]`, `{"a"}`, `{"a":1,}`, `"abc`, `"\x"`, `"\u12"`, `01x`, `-`, `1.`, `1e`, `tru`, `[1] 2`, "\"a\nb\"", strings.Repeat("[", 300) + strings.Repeat("]", 300)} {
		if _, err := jsonValue([]byte(bad)); err == nil {
			t.Errorf("%q parsed", bad)
		}
	}
}
