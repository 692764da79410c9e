package projections

import (
	"fmt"
	"strings"
	"testing"
)

// Each schema gets statements naming its own tables (a rebuild writes a fresh schema
// while the live one takes inline writes), also beyond the schemas whose statements are
// kept, and a kept schema's statements are built once.
func TestWorkspacesStatementsPerSchema(t *testing.T) {
	for i := range 2 * maxCachedSchemas {
		schema := fmt.Sprintf("proj_test_%d", i)
		q := workspacesStatements(schema)
		for name, stmt := range map[string]string{"commit": q.commitWrites, "workspaces": q.wsUpdate} {
			if !strings.Contains(stmt, `"`+schema+`".`) || strings.Count(stmt, `"proj_`) != strings.Count(stmt, `"`+schema+`".`) {
				t.Fatalf("%s statement for %s names other tables: %s", name, schema, stmt)
			}
		}
		if *q != *buildWorkspacesSQL(schema) {
			t.Fatalf("statements for %s differ from those built for it", schema)
		}
	}
	if workspacesStatements("proj_test_0") != workspacesStatements("proj_test_0") {
		t.Fatal("a kept schema's statements were built again")
	}
	if inlineLockSQL(workspacesModel) != lockTablesSQL(workspacesModel.Schema(), workspacesModel.tables[1:], "ROW EXCLUSIVE") {
		t.Fatal("the inline lock statement is not the live tables' ROW EXCLUSIVE lock")
	}
}
