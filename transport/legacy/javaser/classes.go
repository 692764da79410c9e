package javaser

import (
	"fmt"
	"strings"
)

// Class flags (java.io.ObjectStreamConstants).
const (
	scWriteMethod  byte = 0x01
	scSerializable byte = 0x02
)

// Kind says how a class's data is laid out beyond its default fields.
type Kind int

const (
	// KindPlain is default serialization: the fields only.
	KindPlain Kind = iota
	// KindArrayList is java.util.ArrayList: field size, then a 4-byte block (the
	// capacity), the elements, TC_ENDBLOCKDATA.
	KindArrayList
	// KindDate is java.util.Date: an 8-byte block (epoch milliseconds), TC_ENDBLOCKDATA.
	KindDate
	// KindArray is an array class ([Ljava.lang.Object;, [Ljava.lang.String;).
	KindArray
)

// Field is one serializable field of a class, as its descriptor lists it.
type Field struct {
	Type byte   // 'Z', 'I', 'J', 'L' or '['
	Name string //
	Sig  string // for 'L' and '[': the JVM type signature, e.g. "Ljava/lang/String;"
}

func (f Field) primitive() bool { return f.Type != 'L' && f.Type != '[' }

// Class is one class of the closed set. The values are the package's own table: never
// built from a stream.
type Class struct {
	Name   string
	SUID   int64
	Flags  byte
	Fields []Field // in stream order: primitives, then objects, each sorted by name
	Super  *Class
	Kind   Kind
	// Abstract classes (java.lang.Number, the commons Request and Notification bases)
	// may appear only as a superclass, never as an object's own class.
	Abstract bool
}

// Field returns the field named name of c itself (not of its superclasses).
func (c *Class) Field(name string) (Field, bool) {
	for _, f := range c.Fields {
		if f.Name == name {
			return f, true
		}
	}
	return Field{}, false
}

// Is reports whether c is the class named name or a subclass of it.
func (c *Class) Is(name string) bool {
	for k := c; k != nil; k = k.Super {
		if k.Name == name {
			return true
		}
	}
	return false
}

// Names of the classes of the set, for callers that build or check objects.
const (
	ClassOmqRequest             = "omq.common.message.Request"
	ClassOmqResponse            = "omq.common.message.Response"
	ClassOmqException           = "omq.exception.OmqException"
	ClassObjectArray            = "[Ljava.lang.Object;"
	ClassStringArray            = "[Ljava.lang.String;"
	ClassNumber                 = "java.lang.Number"
	ClassLong                   = "java.lang.Long"
	ClassInteger                = "java.lang.Integer"
	ClassBoolean                = "java.lang.Boolean"
	ClassUUID                   = "java.util.UUID"
	ClassDate                   = "java.util.Date"
	ClassTimestamp              = "java.sql.Timestamp"
	ClassArrayList              = "java.util.ArrayList"
	ClassArraysArrayList        = "java.util.Arrays$ArrayList"
	ClassBaseRequest            = "com.stacksync.commons.requests.Request"
	ClassGetAccountRequest      = "com.stacksync.commons.requests.GetAccountRequest"
	ClassUpdateDeviceRequest    = "com.stacksync.commons.requests.UpdateDeviceRequest"
	ClassGetWorkspacesRequest   = "com.stacksync.commons.requests.GetWorkspacesRequest"
	ClassGetChangesRequest      = "com.stacksync.commons.requests.GetChangesRequest"
	ClassCommitRequest          = "com.stacksync.commons.requests.CommitRequest"
	ClassUpdateWorkspaceRequest = "com.stacksync.commons.requests.UpdateWorkspaceRequest"
	ClassShareProposalRequest   = "com.stacksync.commons.requests.ShareProposalRequest"
	ClassAccountInfo            = "com.stacksync.commons.models.AccountInfo"
	ClassWorkspace              = "com.stacksync.commons.models.Workspace"
	ClassUser                   = "com.stacksync.commons.models.User"
	ClassItem                   = "com.stacksync.commons.models.Item"
	ClassItemMetadata           = "com.stacksync.commons.models.ItemMetadata"
	ClassCommitInfo             = "com.stacksync.commons.models.CommitInfo"
	ClassNotification           = "com.stacksync.commons.notifications.Notification"
	ClassCommitNotification     = "com.stacksync.commons.notifications.CommitNotification"
	ClassUpdateWorkspaceNotif   = "com.stacksync.commons.notifications.UpdateWorkspaceNotification"
	ClassShareProposalNotif     = "com.stacksync.commons.notifications.ShareProposalNotification"
)

// Signatures used in the field table.
const (
	sigString  = "Ljava/lang/String;"
	sigObject  = "Ljava/lang/Object;"
	sigObjects = "[Ljava/lang/Object;"
	sigUUID    = "Ljava/util/UUID;"
	sigLong    = "Ljava/lang/Long;"
	sigInteger = "Ljava/lang/Integer;"
	sigBoolean = "Ljava/lang/Boolean;"
	sigList    = "Ljava/util/List;"
	sigDate    = "Ljava/util/Date;"
)

func z(name string) Field            { return Field{Type: 'Z', Name: name} }
func l(name, sig string) Field       { return Field{Type: 'L', Name: name, Sig: sig} }
func prim(t byte, name string) Field { return Field{Type: t, Name: name} }

// classes is the closed set, by name. Every entry is checked by init.
var classes = map[string]*Class{}

// Lookup returns the class of the set named name (Java's binary name, e.g.
// "java.util.Arrays$ArrayList").
func Lookup(name string) (*Class, bool) {
	c, ok := classes[name]
	return c, ok
}

// MustLookup is Lookup for names of the set; it panics on any other.
func MustLookup(name string) *Class {
	c, ok := classes[name]
	if !ok {
		panic("javaser: class not in the set: " + name)
	}
	return c
}

func def(name string, suid int64, flags byte, super *Class, kind Kind, fields ...Field) *Class {
	c := &Class{Name: name, SUID: suid, Flags: flags, Fields: fields, Super: super, Kind: kind}
	if _, dup := classes[name]; dup {
		panic("javaser: class defined twice: " + name)
	}
	classes[name] = c
	return c
}

func init() {
	const plain, wm = scSerializable, scSerializable | scWriteMethod
	def(ClassOmqRequest, 6366255840200365083, plain, nil, KindPlain,
		z("async"), l("id", sigString), l("method", sigString), Field{Type: '[', Name: "params", Sig: sigObjects})
	def(ClassOmqResponse, 3368363997012527189, plain, nil, KindPlain,
		l("error", "Lomq/exception/OmqException;"), l("id", sigString), l("idOmq", sigString), l("result", sigObject))
	def(ClassOmqException, 1, plain, nil, KindPlain, l("message", sigString), l("type", sigString))
	def(ClassObjectArray, -8012369246846506644, plain, nil, KindArray)
	def(ClassStringArray, -5921575005990323385, plain, nil, KindArray)

	number := def(ClassNumber, -8742448824652078965, plain, nil, KindPlain)
	number.Abstract = true
	def(ClassLong, 4290774380558885855, plain, number, KindPlain, prim('J', "value"))
	def(ClassInteger, 1360826667806852920, plain, number, KindPlain, prim('I', "value"))
	def(ClassBoolean, -3665804199014368530, plain, nil, KindPlain, z("value"))
	def(ClassUUID, -4856846361193249489, plain, nil, KindPlain, prim('J', "leastSigBits"), prim('J', "mostSigBits"))
	date := def(ClassDate, 7523967970034938905, wm, nil, KindDate)
	def(ClassTimestamp, 2745179027874758501, plain, date, KindPlain, prim('I', "nanos"))
	def(ClassArrayList, 8683452581122892189, wm, nil, KindArrayList, prim('I', "size"))
	def(ClassArraysArrayList, -2764017481108945198, plain, nil, KindPlain, Field{Type: '[', Name: "a", Sig: sigObjects})

	req := def(ClassBaseRequest, -8509073150924914903, plain, nil, KindPlain, l("requestId", sigString), l("userId", sigUUID))
	req.Abstract = true
	def(ClassGetAccountRequest, 250731596445890199, plain, req, KindPlain, l("email", sigString))
	def(ClassUpdateDeviceRequest, 3763327030154389990, plain, req, KindPlain,
		l("appVersion", sigString), l("deviceId", sigUUID), l("deviceName", sigString), l("ip", sigString), l("os", sigString))
	def(ClassGetWorkspacesRequest, -3220770802300635288, plain, req, KindPlain)
	def(ClassGetChangesRequest, 813854865352783750, plain, req, KindPlain, l("workspaceId", sigUUID))
	def(ClassCommitRequest, 3150919522585945457, plain, req, KindPlain,
		l("deviceId", sigUUID), l("items", sigList), l("workspaceId", sigUUID))
	def(ClassUpdateWorkspaceRequest, -1295960595014495726, plain, req, KindPlain,
		l("parentItemId", sigLong), l("workspaceId", sigUUID), l("workspaceName", sigString))
	def(ClassShareProposalRequest, -5985754297818659212, plain, req, KindPlain,
		z("isEncrypted"), l("emails", sigList), l("itemId", sigLong))

	def(ClassAccountInfo, 5231686716350716264, plain, nil, KindPlain,
		l("email", sigString), l("name", sigString), l("quotaLimit", sigLong), l("quotaUsed", sigLong),
		l("swiftAuthUrl", sigString), l("swiftTenant", sigString), l("swiftUser", sigString), l("userId", sigUUID))
	def(ClassWorkspace, 243350300638953723, plain, nil, KindPlain,
		z("isEncrypted"), z("isShared"), l("id", sigUUID), l("items", sigList), l("latestRevision", sigInteger),
		l("name", sigString), l("owner", "Lcom/stacksync/commons/models/User;"),
		l("parentItem", "Lcom/stacksync/commons/models/Item;"), l("swiftContainer", sigString),
		l("swiftUrl", sigString), l("users", sigList))
	def(ClassUser, -8827608629982195900, plain, nil, KindPlain,
		l("devices", sigList), l("email", sigString), l("id", sigUUID), l("name", sigString),
		l("quotaLimit", sigLong), l("quotaUsedLogical", sigLong), l("quotaUsedReal", sigLong),
		l("swiftAccount", sigString), l("swiftUser", sigString), l("workspaces", sigList))
	def(ClassItem, 1482457936400001556, plain, nil, KindPlain,
		l("clientParentFileVersion", sigLong), l("filename", sigString), l("id", sigLong), l("isFolder", sigBoolean),
		l("latestVersion", sigLong), l("mimetype", sigString), l("parent", "Lcom/stacksync/commons/models/Item;"),
		l("versions", sigList), l("workspace", "Lcom/stacksync/commons/models/Workspace;"))
	def(ClassItemMetadata, -2494445120408291949, plain, nil, KindPlain,
		l("checksum", sigLong), l("children", sigList), l("chunks", sigList), l("deviceId", sigUUID),
		l("filename", sigString), l("id", sigLong), l("isFolder", sigBoolean), l("isRoot", sigBoolean),
		l("level", sigInteger), l("mimetype", sigString), l("modifiedAt", sigDate), l("parentId", sigLong),
		l("parentVersion", sigLong), l("size", sigLong), l("status", sigString), l("tempId", sigLong),
		l("version", sigLong), l("workspaceId", sigUUID))
	def(ClassCommitInfo, -1205107021066864318, plain, nil, KindPlain,
		z("commitSucceed"), l("committedVersion", sigLong), l("metadata", "Lcom/stacksync/commons/models/ItemMetadata;"))

	notif := def(ClassNotification, 5850418366116658341, plain, nil, KindPlain, l("requestId", sigString))
	notif.Abstract = true
	def(ClassCommitNotification, -6718869783377947343, plain, notif, KindPlain,
		l("items", sigList), l("limitQuota", sigLong), l("usedQuota", sigLong))
	def(ClassUpdateWorkspaceNotif, -6386191004604910726, plain, notif, KindPlain,
		l("folderName", sigString), l("parentItemId", sigLong), l("workspaceId", sigUUID))
	// Not in the captured vectors (sharing needed Swift there): its SUID and fields are
	// commons' source (reference §2.2); the layout is pinned by testdata/golden-extra,
	// written by java.io.ObjectOutputStream from a class with that declaration.
	def(ClassShareProposalNotif, -3210149693220010223, plain, notif, KindPlain,
		z("isEncrypted"), l("folderName", sigString), l("itemId", sigLong), l("ownerId", sigUUID),
		l("ownerName", sigString), l("swiftContainer", sigString), l("swiftURL", sigString), l("workspaceId", sigUUID))

	for _, c := range classes {
		if err := c.check(); err != nil {
			panic(err)
		}
	}
}

// check verifies a table entry: canonical field order, no field name shared with a
// superclass (Object.Fields is one map per object), signatures that name classes of
// the set.
func (c *Class) check() error {
	seen := map[string]bool{}
	for k := c; k != nil; k = k.Super {
		for i, f := range k.Fields {
			if seen[f.Name] {
				return fmt.Errorf("javaser: %s: field %s declared twice in the hierarchy", c.Name, f.Name)
			}
			seen[f.Name] = true
			if i > 0 && !fieldLess(k.Fields[i-1], f) {
				return fmt.Errorf("javaser: %s: fields not in canonical order at %s", k.Name, f.Name)
			}
		}
	}
	return nil
}

// fieldLess is the order of ObjectStreamClass: primitives first, then by name.
func fieldLess(a, b Field) bool {
	if a.primitive() != b.primitive() {
		return a.primitive()
	}
	return a.Name < b.Name
}

// assignable reports whether an object of class c may be stored in a field of
// signature sig (Java's assignment check, for the types of the set).
func assignable(c *Class, sig string) bool {
	switch sig {
	case sigObject:
		return true
	case sigList:
		return c.Name == ClassArrayList || c.Name == ClassArraysArrayList
	case sigObjects:
		return c.Kind == KindArray
	}
	if !strings.HasPrefix(sig, "L") || !strings.HasSuffix(sig, ";") {
		return false
	}
	return c.Is(strings.ReplaceAll(sig[1:len(sig)-1], "/", "."))
}
