//! The memory limit holds for aggregates whose state grows with their input: a grouped
//! `string_agg` or `array_agg` over three times the limit in strings answers (it
//! spills), and the process's peak resident memory rises by at most 125% of the limit
//! (issue 21 item 6; before, 20M rows under 256 MiB peaked at 4 GiB).

use crate::common::ServeProcess;

const LIMIT_MIB: f64 = 64.0;
const ROWS: u64 = 3_000_000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn growing_aggregates_keep_to_the_memory_limit() {
    let server =
        ServeProcess::start(&format!("[engine]\nmemory_limit = \"{LIMIT_MIB}MiB\"\n")).await;
    let c = crate::common::connect(&server.conn_str("tidepool", "")).await;
    // About 200 MB of strings, 70 bytes a row.
    c.batch_execute(&format!(
        "CREATE TABLE public.t AS SELECT v AS id, repeat('x', 60) || CAST(v AS VARCHAR) AS s \
         FROM generate_series(1, {ROWS}) g(v)"
    ))
    .await
    .expect("the table is written");
    let expected_len: u64 = c
        .query_one(
            "SELECT CAST(sum(length(s) + 1) - 1000 AS BIGINT) FROM public.t",
            &[],
        )
        .await
        .unwrap()
        .get::<_, i64>(0) as u64;
    for (what, sql, expected) in [
        (
            "string_agg",
            "SELECT CAST(count(*) AS BIGINT), CAST(sum(l) AS BIGINT) FROM \
             (SELECT id % 1000 AS g, length(string_agg(s, ',')) AS l FROM public.t GROUP BY 1) x",
            expected_len,
        ),
        (
            "array_agg",
            "SELECT CAST(count(*) AS BIGINT), CAST(sum(l) AS BIGINT) FROM \
             (SELECT id % 1000 AS g, cardinality(array_agg(s)) AS l FROM public.t GROUP BY 1) x",
            ROWS,
        ),
    ] {
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
        let before = server.rss_mib();
        server.reset_peak();
        // Spilled, not refused: the sorted aggregate and the merge's fan-in make room.
        let row = c
            .query_one(sql, &[])
            .await
            .unwrap_or_else(|e| panic!("{what}: {e:?}"));
        assert_eq!(row.get::<_, i64>(0), 1000, "{what}: groups");
        assert_eq!(row.get::<_, i64>(1) as u64, expected, "{what}: total");
        let peak = server.peak_rss_mib();
        println!(
            "{what}: resident {before:.0} MiB before, peak {peak:.0} MiB, limit {LIMIT_MIB} MiB"
        );
        assert!(
            peak - before <= LIMIT_MIB * 1.25,
            "{what}: peak {peak:.0} MiB is {:.0} MiB above the {before:.0} MiB before, limit {LIMIT_MIB} MiB",
            peak - before
        );
    }
}
