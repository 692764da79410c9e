package legacy

import (
	"errors"
	"fmt"

	"github.com/google/uuid"

	"github.com/stacksync-es/syncservice/domain/protocol"
	js "github.com/stacksync-es/syncservice/transport/legacy/javaser"
)

// Message properties of the legacy wire (MANIFEST.md, "AMQP envelope").
const (
	// TypeJava is the type property of requests and events.
	TypeJava = "java"
	// TypeResponse is the type property of replies.
	TypeResponse = "normalResponse"
	// IDOmq is the bound reference: idOmq of every Response and app_id of every reply.
	IDOmq = "ISyncService"
)

// Call is a decoded ObjectMQ request envelope.
type Call struct {
	ID     string // the envelope's id (= the AMQP correlation_id)
	Method string
	Async  bool
	Param  *js.Object // params[0], the commons request object
}

func invalid(format string, args ...any) error {
	return fmt.Errorf("%w: %s", protocol.ErrInvalid, fmt.Sprintf(format, args...))
}

// DecodeCall decodes a request body: an omq.common.message.Request whose params hold
// exactly one object. A body the codec refuses, or of another shape, is ErrInvalid.
func DecodeCall(body []byte) (Call, error) {
	v, err := js.Decode(body)
	if err != nil {
		return Call{}, invalid("%v", err)
	}
	env, ok, err := js.AsObject(v, js.ClassOmqRequest)
	if err != nil || !ok {
		return Call{}, invalid("envelope: the body is a %s, not an %s", js.Describe(v), js.ClassOmqRequest)
	}
	var c Call
	var idOK, methodOK bool
	if c.ID, idOK, err = js.AsString(env.Get("id")); err != nil {
		return Call{}, invalid("envelope id: %v", err)
	}
	if c.Method, methodOK, err = js.AsString(env.Get("method")); err != nil || !methodOK || c.Method == "" {
		return Call{}, invalid("envelope: method missing")
	}
	_ = idOK // a null id is answered with the correlation id
	c.Async, _ = env.Get("async").(bool)
	params, _ := env.Get("params").(*js.Array)
	if params == nil || len(params.Elems) != 1 {
		n := 0
		if params != nil {
			n = len(params.Elems)
		}
		return Call{}, invalid("envelope: params must hold exactly one request object, has %d", n)
	}
	if c.Param, ok = params.Elems[0].(*js.Object); !ok {
		return Call{}, invalid("envelope: params[0] is a %s, not a request object", js.Describe(params.Elems[0]))
	}
	return c, nil
}

// Exception is the error of a Response: the class name of the Java exception the client
// re-creates (Class.forName(type) with a String constructor) and its message.
type Exception struct {
	Type    string
	Message string
}

// EncodeResponse renders a Response: the result (nil for void) or the exception; id is
// the request envelope's id.
func EncodeResponse(id string, result js.Value, exc *Exception) ([]byte, error) {
	f := map[string]js.Value{"id": js.Str(id), "idOmq": js.Str(IDOmq)}
	if exc != nil {
		f["error"] = js.New(js.ClassOmqException, map[string]js.Value{"type": js.Str(exc.Type), "message": js.Str(exc.Message)})
	} else if result != nil {
		f["result"] = result
	}
	b, err := js.Encode(js.New(js.ClassOmqResponse, f))
	if err != nil {
		return nil, fmt.Errorf("encode response %s: %w", id, err)
	}
	return b, nil
}

// EncodeEvent renders an event: an async ObjectMQ Request of method with one parameter;
// id is the event's id (= the AMQP correlation_id it is published with).
func EncodeEvent(id, method string, param *js.Object) ([]byte, error) {
	if param == nil {
		return nil, errors.New("encode event: no parameter")
	}
	b, err := js.Encode(js.New(js.ClassOmqRequest, map[string]js.Value{
		"async": true, "id": js.Str(id), "method": js.Str(method), "params": js.NewObjectArray(param)}))
	if err != nil {
		return nil, fmt.Errorf("encode event %s %s: %w", method, id, err)
	}
	return b, nil
}

// encodeResult renders a successful reply; result is nil (void) or a Java object.
func encodeResult(id string, result any) ([]byte, error) {
	if result == nil {
		return EncodeResponse(id, nil, nil)
	}
	o, ok := result.(*js.Object)
	if !ok {
		return nil, fmt.Errorf("encode response %s: result %T is not a Java object", id, result)
	}
	return EncodeResponse(id, o, nil)
}

// jsUUID returns the userId of a call's request object.
func jsUUID(c Call) (uuid.UUID, bool, error) { return js.AsUUID(c.Param.Get("userId")) }
