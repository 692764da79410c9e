package wire

import "encoding/json"

// The fast paths of ParseRequest and ParseCommit, the decoders of every commit: one
// pass each over their input, without reflection, where encoding/json (strictObject)
// checks the input's syntax in one pass and decodes it in another, for the envelope and
// again for the request object. They decline (ok false) whatever fastScan declines,
// and everything ParseRequest or ParseCommit would refuse; the callers then take the
// encoding/json path, which gives the result or the error as before.

var envelopeKeys = []string{"method", "params", "id", "async"}

// fastRequest is ParseRequest's fast path. Params aliases body.
func fastRequest(body []byte) (req Request, ok bool) {
	s := fastScan{b: body}
	var method *string
	var params []byte
	var nParams int
	ok = s.object(envelopeKeys, func(key []byte) bool {
		switch string(key) {
		case "method":
			v, ok := s.str()
			method = &v
			return ok
		case "params":
			return s.array(func() bool {
				nParams++
				start := s.i
				if s.peek() != '{' || !s.skip() {
					return false
				}
				params = body[start:s.i]
				return true
			})
		case "id":
			if s.null() {
				return true
			}
			v, ok := s.str()
			req.ID = v
			return ok
		default: // async
			return s.async(&req.Async)
		}
	})
	if !ok || !s.end() || method == nil || *method == "" || nParams != 1 {
		return Request{}, false
	}
	req.Method, req.Params = *method, json.RawMessage(params)
	return req, true
}

// async decodes what ParseRequest accepts for async: a boolean, "true", "false" or null.
func (s *fastScan) async(dst *bool) bool {
	if s.peek() == '"' {
		v, ok := s.rawString()
		switch {
		case ok && string(v) == "true":
			*dst = true
		case ok && string(v) == "false":
			*dst = false
		default:
			return false
		}
		return true
	}
	var b *bool
	if !s.optBool(&b) {
		return false
	}
	*dst = b != nil && *b
	return true
}

// commitParams is commit's request object as decoded, before its checks.
type commitParams struct {
	workspaceFields
	DeviceID *string         `json:"deviceId"`
	Items    *[]ItemMetadata `json:"items"`
}

var commitKeys = []string{"requestId", "userId", "workspaceId", "deviceId", "items"}

// fastCommitParams is ParseCommit's decoding fast path.
func fastCommitParams(params []byte, r *commitParams) bool {
	s := fastScan{b: params}
	ok := s.object(commitKeys, func(key []byte) bool {
		switch string(key) {
		case "requestId":
			return s.optStr(&r.RequestID)
		case "userId":
			return s.optStr(&r.UserID)
		case "workspaceId":
			return s.optStr(&r.WorkspaceID)
		case "deviceId":
			return s.optStr(&r.DeviceID)
		default: // items
			if s.null() {
				r.Items = nil
				return true
			}
			items := []ItemMetadata{}
			ok := s.array(func() bool {
				items = append(items, ItemMetadata{})
				return s.item(&items[len(items)-1])
			})
			r.Items = &items
			return ok
		}
	})
	return ok && s.end()
}

var itemKeys = []string{"id", "tempId", "version", "deviceId", "workspaceId", "parentId", "parentVersion",
	"status", "modifiedAt", "checksum", "chunks", "size", "isFolder", "filename", "mimetype"}

// item decodes one item version of a commit (an object: null is declined).
func (s *fastScan) item(w *ItemMetadata) bool {
	return s.object(itemKeys, func(key []byte) bool {
		switch string(key) {
		case "id":
			return s.optInt64(&w.ID)
		case "tempId":
			return s.optInt64(&w.TempID)
		case "version":
			return s.optInt64(&w.Version)
		case "deviceId":
			return s.optStr(&w.DeviceID)
		case "workspaceId":
			return s.optStr(&w.WorkspaceID)
		case "parentId":
			return s.optInt64(&w.ParentID)
		case "parentVersion":
			return s.optInt64(&w.ParentVersion)
		case "status":
			return s.optStr(&w.Status)
		case "modifiedAt":
			return s.optStr(&w.ModifiedAt)
		case "checksum":
			return s.optInt64(&w.Checksum)
		case "chunks":
			return s.chunks(&w.Chunks)
		case "size":
			return s.optInt64(&w.Size)
		case "isFolder":
			return s.optBool(&w.IsFolder)
		case "filename":
			return s.optStr(&w.Filename)
		default: // mimetype
			return s.optStr(&w.Mimetype)
		}
	})
}

// chunks decodes an array of strings, or null.
func (s *fastScan) chunks(dst *[]string) bool {
	if s.null() {
		*dst = nil
		return true
	}
	out := []string{}
	ok := s.array(func() bool {
		v, ok := s.str()
		out = append(out, v)
		return ok
	})
	*dst = out
	return ok
}
