//! When `build` runs each data test, and which models wait for it. A test runs once every
//! selected model it reads is built (a `relationships` test on `orders` pointing at
//! `customers` waits for `customers`, even when `customers` is built from `orders`). A
//! test holds back the descendants of the model it tests, except those it reads itself
//! (directly or through their descendants): holding those would wait on itself. So a
//! failing test skips only models downstream of the model it tests that have not run.
//! This is dbt's rule (`add_test_edges` in dbt-core's graph compiler).

use std::collections::BTreeSet;

use crate::Project;
use crate::graph::Graph;

/// Which tests a `build` runs and what they hold back.
#[derive(Debug, Default)]
pub struct TestOrder {
    /// Per model: the tests attached to it (their first model), run after it is built.
    pub tests_of: Vec<Vec<usize>>,
    /// Per model: the tests that must pass before it starts.
    pub held_by: Vec<Vec<usize>>,
    /// Per test: the models it holds back.
    pub holds: Vec<BTreeSet<usize>>,
}

impl TestOrder {
    /// No tests (`run`).
    pub fn none(project: &Project) -> TestOrder {
        TestOrder::of_graph(&project.graph, &[], &BTreeSet::new())
    }

    /// The tests of the `selected` models and the selected models each holds back.
    pub fn new(project: &Project, selected: &BTreeSet<usize>) -> TestOrder {
        let reads: Vec<&[usize]> = project.tests.iter().map(|t| t.models.as_slice()).collect();
        TestOrder::of_graph(&project.graph, &reads, selected)
    }

    /// `reads[t]`: the models test `t` reads, the model it tests first.
    fn of_graph(graph: &Graph, reads: &[&[usize]], selected: &BTreeSet<usize>) -> TestOrder {
        let mut order = TestOrder {
            tests_of: vec![Vec::new(); graph.len()],
            held_by: vec![Vec::new(); graph.len()],
            holds: vec![BTreeSet::new(); reads.len()],
        };
        for (t, models) in reads.iter().enumerate() {
            let Some(&tested) = models.first() else {
                continue;
            };
            if !selected.contains(&tested) {
                continue;
            }
            order.tests_of[tested].push(t);
            // Everything the test reads, and what those are built from.
            let mut read: BTreeSet<usize> = BTreeSet::new();
            for &m in *models {
                read.insert(m);
                read.extend(graph.ancestors(m, None));
            }
            let holds: BTreeSet<usize> = graph
                .descendants(tested, None)
                .into_iter()
                .filter(|d| selected.contains(d) && !read.contains(d))
                .collect();
            for &d in &holds {
                order.held_by[d].push(t);
            }
            order.holds[t] = holds;
        }
        order
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn held(deps: Vec<Vec<usize>>, tests: &[&[usize]]) -> TestOrder {
        let names: Vec<String> = (0..deps.len()).map(|i| format!("m{i}")).collect();
        let graph = Graph::new(deps, &names).expect("acyclic");
        let all: BTreeSet<usize> = (0..graph.len()).collect();
        TestOrder::of_graph(&graph, tests, &all)
    }

    #[test]
    fn a_relationships_test_waits_for_the_model_it_points_to_without_holding_it() {
        // 0 orders; 1 customers (from orders); 2 customer_revenue (from customers);
        // 3 order_facts (from orders). Test 0 on orders points at customers.
        let order = held(vec![vec![], vec![0], vec![1], vec![0]], &[&[0, 1], &[3]]);
        assert_eq!(order.tests_of[0], vec![0]);
        assert!(order.held_by[1].is_empty(), "customers is read by the test");
        assert_eq!(order.held_by[2], vec![0], "downstream of customers waits");
        assert_eq!(
            order.held_by[3],
            vec![0],
            "order_facts waits for orders' test"
        );
        assert_eq!(
            order.holds[1],
            BTreeSet::new(),
            "order_facts' test holds nothing"
        );
    }
}
