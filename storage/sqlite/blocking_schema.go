package sqlite

// schemaBlocking is the schema of the blocking lists (filled in by its feature).
const schemaBlocking = `SELECT 1`
