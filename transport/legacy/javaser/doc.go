// Package javaser owns the Java Object Serialization Stream Protocol (version 2, as
// java.io.ObjectOutputStream writes it) restricted to the closed set of classes that
// unmodified StackSync clients put on the wire through ObjectMQ (type=java): ObjectMQ's
// Request, Response and OmqException, the com.stacksync.commons requests, models and
// notifications, and the JDK types they use (UUID, Date, Timestamp, Long, Integer,
// Boolean, ArrayList, Arrays$ArrayList, Object[] and String[]). The class set, with
// serialVersionUIDs and field lists, is in classes.go; the captured streams it was taken
// from are in testdata/golden (MANIFEST.md describes them).
//
// Decode reads one stream into a graph of Go values (Object, Array, String, nil) that
// keeps Java's object identity (a back-reference yields the same pointer), and Encode
// writes such a graph back exactly as ObjectOutputStream would: the same pointer twice
// becomes a TC_REFERENCE, so a decoded stream encodes to its own bytes.
//
// It must never be a general Java deserializer: a class outside the set, a
// serialVersionUID, flags or fields that differ from the set's, a proxy, enum, class,
// exception or reset token, a custom annotation, a value of the wrong type for its field,
// a stream nested deeper or holding more than the Limits, a back-reference out of range
// (or to an object still being read: no cycles), or bytes after the one top-level object
// is refused with an error before anything further is read. Nothing is ever instantiated
// by class name: the set is a table of Go values. It knows nothing of what the classes
// mean (transport/legacy maps them to the protocol).
package javaser
