package sqlite

// schemaPEP is the schema of the personal eventing (filled in by its feature).
const schemaPEP = `SELECT 1`
