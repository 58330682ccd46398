// node-postgres (npm `pg`) against a running tidepool: SCRAM, the lake's tables, column
// types, a parameterised query (extended protocol), an error that keeps the connection.
// Usage: node pg_client.mjs HOST PORT USER PASSWORD
import assert from "node:assert/strict";
import pg from "pg";

const [host, port, user, password] = process.argv.slice(2);
const client = new pg.Client({ host, port: Number(port), user, password, database: "lake" });
await client.connect();

const tables = await client.query(
  "select table_name, table_type from information_schema.tables where table_schema = $1 order by 1",
  ["gold"],
);
const names = tables.rows.map((r) => `${r.table_name}:${r.table_type}`);
assert.ok(names.includes("fact_orders:BASE TABLE"), `tables ${names}`);
assert.ok(names.includes("paid_orders:VIEW"), `views ${names}`);

const cols = await client.query(
  "select column_name, data_type from information_schema.columns where table_schema = 'gold' and table_name = 'fact_orders' order by ordinal_position",
);
assert.deepEqual(
  cols.rows.map((r) => r.data_type),
  ["bigint", "text", "numeric", "timestamp with time zone", "date", "boolean", "double precision", "ARRAY"],
);

const res = await client.query("select * from gold.fact_orders where order_id = $1", [2]);
assert.equal(res.rows.length, 1);
const row = res.rows[0];
// node-postgres parses by type oid: int8 and numeric stay strings, timestamptz becomes a Date.
assert.equal(row.order_id, "2");
assert.equal(row.customer, "c2");
assert.equal(row.amount, "7.25");
assert.ok(row.ordered_at instanceof Date, `timestamptz as Date: ${row.ordered_at}`);
assert.equal(row.ordered_at.toISOString(), "2026-11-02T11:30:00.000Z");
assert.equal(row.paid, false);
assert.equal(row.discount, 0);
assert.deepEqual(row.tags, ["c"]);
const oids = res.fields.map((f) => f.dataTypeID);
assert.deepEqual(oids, [20, 25, 1700, 1184, 1082, 16, 701, 1009]);

await assert.rejects(client.query("select nope from gold.fact_orders"), (e) => e.code === "42703");
// Integer literals are bigint in tidepool (integer in Postgres), which node-postgres
// returns as a string; an integer column comes back as a number.
const one = await client.query("select 1::integer as one, 1 as literal");
assert.equal(one.rows[0].one, 1);
assert.equal(one.rows[0].literal, "1");
await client.end();
console.log("node-postgres: ok");
