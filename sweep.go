package dspool

import (
	"bufio"
	"bytes"
	"encoding/csv"
	"encoding/json"
	"errors"
	"io"
	"strconv"
	"strings"
)

// ParseSweep reads the rows of a parameter sweep, one task per row: CSV
// whose header names the variables, or JSON lines of objects whose values
// are strings, numbers or booleans. Which one is told by the first byte
// that is not space: '{' is JSON lines. field names the input in errors.
func ParseSweep(field string, r io.Reader) ([]map[string]string, error) {
	br := bufio.NewReader(io.LimitReader(r, 64<<20))
	for {
		b, err := br.Peek(1)
		if err != nil {
			return nil, Invalid(field, "is empty: give a CSV file with a header row, or JSON lines")
		}
		if b[0] == ' ' || b[0] == '\t' || b[0] == '\r' || b[0] == '\n' {
			_, _ = br.ReadByte()
			continue
		}
		if b[0] == '{' {
			return sweepJSONLines(field, br)
		}
		return sweepCSV(field, br)
	}
}

func sweepCSV(field string, r io.Reader) ([]map[string]string, error) {
	cr := csv.NewReader(r)
	cr.TrimLeadingSpace = true
	cr.ReuseRecord = false
	header, err := cr.Read()
	if err != nil {
		return nil, Invalid(field, "header row: %v", err)
	}
	seen := map[string]bool{}
	for i, h := range header {
		h = strings.TrimSpace(h)
		header[i] = h
		if err := ValidateEnvName(h); err != nil {
			return nil, Invalid(field, "header column %d: %s", i+1, err.(*Error).Message)
		}
		if seen[h] {
			return nil, Invalid(field, "header names %s twice", h)
		}
		seen[h] = true
	}
	var rows []map[string]string
	for {
		rec, err := cr.Read()
		if err == io.EOF {
			break
		}
		if err != nil {
			var pe *csv.ParseError
			if errors.As(err, &pe) {
				return nil, Invalid(field, "line %d: %v", pe.Line, pe.Err)
			}
			return nil, Invalid(field, "%v", err)
		}
		row := make(map[string]string, len(header))
		for i, v := range rec {
			row[header[i]] = v
		}
		rows = append(rows, row)
		if len(rows) > MaxArrayTasks {
			return nil, Invalid(field, "has more than %d rows: split the sweep", MaxArrayTasks)
		}
	}
	if len(rows) == 0 {
		return nil, Invalid(field, "has a header and no rows: give one row per task")
	}
	return rows, nil
}

func sweepJSONLines(field string, r *bufio.Reader) ([]map[string]string, error) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), MaxArgsBytes*2)
	var rows []map[string]string
	line := 0
	for sc.Scan() {
		line++
		b := bytes.TrimSpace(sc.Bytes())
		if len(b) == 0 {
			continue
		}
		var obj map[string]any
		d := json.NewDecoder(bytes.NewReader(b))
		d.UseNumber()
		if err := d.Decode(&obj); err != nil || obj == nil || d.More() {
			return nil, Invalid(field, "line %d is not a JSON object: give one object per line, as {\"lr\": 0.1}", line)
		}
		row := make(map[string]string, len(obj))
		for k, v := range obj {
			if err := ValidateEnvName(k); err != nil {
				return nil, Invalid(field, "line %d: %s", line, err.(*Error).Message)
			}
			switch x := v.(type) {
			case string:
				row[k] = x
			case json.Number:
				row[k] = x.String()
			case bool:
				row[k] = strconv.FormatBool(x)
			default:
				return nil, Invalid(field, "line %d: the value of %s is not a string, number or boolean", line, k)
			}
		}
		rows = append(rows, row)
		if len(rows) > MaxArrayTasks {
			return nil, Invalid(field, "has more than %d rows: split the sweep", MaxArrayTasks)
		}
	}
	if err := sc.Err(); err != nil {
		return nil, Invalid(field, "line %d: %v", line+1, err)
	}
	if len(rows) == 0 {
		return nil, Invalid(field, "has no rows: give one JSON object per line")
	}
	return rows, nil
}
