package sqlite

// schemaPushGateway is the schema of the push gateway devices and deliveries (filled in by its feature).
const schemaPushGateway = `SELECT 1`
