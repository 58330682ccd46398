// pgjdbc (Debian's libpostgresql-jdbc-java) against a running tidepool, as DBeaver,
// Spring and Hibernate use it: batch INSERT counts, generated keys (RETURNING),
// transactions with autocommit off (commit, rollback, savepoints), key metadata.
// Usage: java -cp /usr/share/java/postgresql.jar:CLASSDIR JdbcProbe HOST PORT USER PASSWORD
import java.sql.*;
import java.util.*;

public class JdbcProbe {
    static void check(boolean ok, String what) {
        if (!ok) throw new AssertionError(what);
    }

    static long count(Connection c, String sql) throws SQLException {
        try (Statement s = c.createStatement(); ResultSet r = s.executeQuery(sql)) {
            r.next();
            return r.getLong(1);
        }
    }

    public static void main(String[] args) throws Exception {
        String url = "jdbc:postgresql://" + args[0] + ":" + args[1] + "/lake";
        Properties p = new Properties();
        p.setProperty("user", args[2]);
        p.setProperty("password", args[3]);
        try (Connection c = DriverManager.getConnection(url, p)) {
            try (Statement s = c.createStatement()) {
                s.execute("CREATE SCHEMA IF NOT EXISTS jdbc");
                s.execute("DROP TABLE IF EXISTS jdbc.orders");
                s.execute("CREATE TABLE jdbc.orders (id BIGINT PRIMARY KEY, customer TEXT NOT NULL, amount NUMERIC(10,2))");
            }

            // executeBatch: each INSERT counts its row (Spring's batchUpdate checks).
            c.setAutoCommit(false);
            try (PreparedStatement ps = c.prepareStatement("INSERT INTO jdbc.orders VALUES (?, ?, ?)")) {
                for (int i = 1; i <= 5; i++) {
                    ps.setLong(1, i);
                    ps.setString(2, "c" + i);
                    ps.setBigDecimal(3, new java.math.BigDecimal(i + ".50"));
                    ps.addBatch();
                }
                int[] counts = ps.executeBatch();
                check(Arrays.equals(counts, new int[] {1, 1, 1, 1, 1}), "batch counts " + Arrays.toString(counts));
            }
            // Invisible to another connection until commit.
            try (Connection other = DriverManager.getConnection(url, p)) {
                check(count(other, "SELECT count(*) FROM jdbc.orders") == 0, "uncommitted batch visible");
                c.commit();
                check(count(other, "SELECT count(*) FROM jdbc.orders") == 5, "committed batch");
            }

            // Generated keys: pgjdbc appends RETURNING *.
            try (PreparedStatement ps = c.prepareStatement(
                    "INSERT INTO jdbc.orders (id, customer, amount) VALUES (?, ?, ?)", Statement.RETURN_GENERATED_KEYS)) {
                ps.setLong(1, 6);
                ps.setString(2, "c6");
                ps.setBigDecimal(3, new java.math.BigDecimal("6.25"));
                check(ps.executeUpdate() == 1, "insert returning count");
                try (ResultSet keys = ps.getGeneratedKeys()) {
                    check(keys.next() && keys.getLong("id") == 6 && keys.getString("customer").equals("c6"), "generated keys");
                }
            }
            try (PreparedStatement ps = c.prepareStatement(
                    "UPDATE jdbc.orders SET amount = amount * 2 WHERE id = ?", new String[] {"amount"})) {
                ps.setLong(1, 6);
                check(ps.executeUpdate() == 1, "update returning count");
                try (ResultSet keys = ps.getGeneratedKeys()) {
                    check(keys.next() && keys.getBigDecimal(1).compareTo(new java.math.BigDecimal("12.50")) == 0, "update returning");
                }
            }
            c.commit();

            // Rollback and savepoints.
            try (Statement s = c.createStatement()) {
                check(s.executeUpdate("DELETE FROM jdbc.orders WHERE id > 4") == 2, "delete count");
                Savepoint sp = c.setSavepoint("before_update");
                check(s.executeUpdate("UPDATE jdbc.orders SET customer = 'x'") == 4, "update count");
                c.rollback(sp);
                c.rollback();
            }
            check(count(c, "SELECT count(*) FROM jdbc.orders WHERE customer <> 'x'") == 6, "rolled back");
            c.commit();

            // A failed statement fails the transaction until rollback.
            try (Statement s = c.createStatement()) {
                try {
                    s.executeUpdate("INSERT INTO jdbc.orders VALUES (7, NULL, 1)");
                    check(false, "NOT NULL not enforced");
                } catch (SQLException e) {
                    check("23502".equals(e.getSQLState()), "not null sqlstate " + e.getSQLState());
                }
                try {
                    s.executeQuery("SELECT 1");
                    check(false, "statement after error ran");
                } catch (SQLException e) {
                    check("25P02".equals(e.getSQLState()), "aborted sqlstate " + e.getSQLState());
                }
                c.rollback();
            }
            c.setAutoCommit(true);

            // Keys as DBeaver reads them.
            DatabaseMetaData md = c.getMetaData();
            // REMARKS: pgjdbc joins pg_description on classoid = 'pg_class'::regclass.
            try (Statement s = c.createStatement()) {
                s.execute("COMMENT ON TABLE jdbc.orders IS 'one row per order'");
            }
            try (ResultSet t = md.getTables(null, "jdbc", "orders", null)) {
                check(t.next() && "one row per order".equals(t.getString("REMARKS")),
                      "getTables REMARKS");
            }
            try (ResultSet pk = md.getPrimaryKeys(null, "jdbc", "orders")) {
                check(pk.next() && pk.getString("COLUMN_NAME").equals("id"), "primary key");
            }
            try (ResultSet cols = md.getColumns(null, "jdbc", "orders", null)) {
                List<String> names = new ArrayList<>();
                while (cols.next()) names.add(cols.getString("COLUMN_NAME") + ":" + cols.getString("TYPE_NAME"));
                check(names.equals(List.of("id:int8", "customer:text", "amount:numeric")), "columns " + names);
            }

            // Procedures as DBeaver lists them, and called the JDBC way.
            try (Statement s = c.createStatement()) {
                s.execute("CREATE PROCEDURE jdbc.by_id(k BIGINT) AS SELECT id, customer FROM jdbc.orders WHERE id = :k");
            }
            try (ResultSet r = md.getProcedures(null, "jdbc", "%")) {
                check(r.next() && r.getString("PROCEDURE_NAME").equals("by_id"), "getProcedures");
            }
            try (ResultSet r = md.getProcedureColumns(null, "jdbc", "by_id", "%")) {
                List<String> cols = new ArrayList<>();
                while (r.next()) cols.add(r.getString("COLUMN_NAME") + ":" + r.getInt("COLUMN_TYPE") + ":" + r.getString("TYPE_NAME"));
                // k an IN parameter (1), the result columns as RETURNS TABLE columns (5).
                check(cols.equals(List.of("k:1:int8", "id:5:int8", "customer:5:text")), "getProcedureColumns " + cols);
            }
            try (CallableStatement cs = c.prepareCall("{call jdbc.by_id(?)}")) {
                cs.setLong(1, 2);
                try (ResultSet r = cs.executeQuery()) {
                    check(r.next() && r.getLong(1) == 2 && !r.next(), "{call} with a bound parameter");
                }
            }
            // Result metadata: numeric precision and scale, varchar length (typmods).
            try (Statement s = c.createStatement()) {
                s.execute("CREATE TABLE jdbc.typed (x NUMERIC(10,2), v VARCHAR(20))");
                try (ResultSet r = s.executeQuery("SELECT x, v, NULL, NULL FROM jdbc.typed")) {
                    ResultSetMetaData m = r.getMetaData();
                    check(m.getPrecision(1) == 10 && m.getScale(1) == 2, "numeric(10,2) " + m.getPrecision(1) + "," + m.getScale(1));
                    check(m.getPrecision(2) == 20 && m.getColumnTypeName(2).equals("varchar"), "varchar(20) " + m.getPrecision(2));
                    check(m.getColumnCount() == 4, "two NULL columns");
                }
                // Where each column comes from (RowDescription's table oid and column
                // number, which pgjdbc looks up in pg_class / pg_attribute).
                s.execute("CREATE TABLE jdbc.origin (id BIGINT NOT NULL, label TEXT)");
                try (ResultSet r = s.executeQuery(
                        "SELECT o.label AS name, o.id, o.id + 1 AS next FROM jdbc.origin o WHERE o.id > 0 ORDER BY o.id")) {
                    ResultSetMetaData m = r.getMetaData();
                    // pgjdbc's getSchemaName is always ""; the base schema is the table's.
                    org.postgresql.PGResultSetMetaData pm = m.unwrap(org.postgresql.PGResultSetMetaData.class);
                    String seen = pm.getBaseSchemaName(1) + "." + m.getTableName(1) + "." + m.getColumnName(1) + "/"
                            + pm.getBaseSchemaName(2) + "." + m.getTableName(2) + "/" + m.getTableName(3);
                    check(seen.equals("jdbc.origin.name/jdbc.origin/"), "table and schema of result columns " + seen);
                    check(m.isNullable(1) == ResultSetMetaData.columnNullable
                            && m.isNullable(2) == ResultSetMetaData.columnNoNulls
                            && m.isNullable(3) == ResultSetMetaData.columnNullableUnknown,
                            "isNullable " + m.isNullable(1) + m.isNullable(2) + m.isNullable(3));
                }
            }
        }
        System.out.println("pgjdbc: ok");
    }
}
