//! The model DAG: edges from `ref()` calls and from the tables a model's SQL reads, cycle
//! detection that names the cycle, and orderings.

use std::collections::BTreeSet;

use super::ModelsError;

/// Dependencies by model index: `deps[i]` are the models model `i` reads.
#[derive(Debug, Clone, Default)]
pub struct Graph {
    pub deps: Vec<Vec<usize>>,
    pub children: Vec<Vec<usize>>,
}

impl Graph {
    /// Builds the graph; a cycle is an error naming it (`a -> b -> a`).
    pub fn new(deps: Vec<Vec<usize>>, names: &[String]) -> Result<Graph, ModelsError> {
        let mut children = vec![Vec::new(); deps.len()];
        for (i, ds) in deps.iter().enumerate() {
            for &d in ds {
                children[d].push(i);
            }
        }
        let g = Graph { deps, children };
        if let Some(cycle) = g.find_cycle() {
            let path: Vec<&str> = cycle.iter().map(|&i| names[i].as_str()).collect();
            return Err(ModelsError::Project(format!(
                "models depend on each other in a cycle: {}",
                path.join(" -> ")
            )));
        }
        Ok(g)
    }

    pub fn len(&self) -> usize {
        self.deps.len()
    }

    pub fn is_empty(&self) -> bool {
        self.deps.is_empty()
    }

    fn find_cycle(&self) -> Option<Vec<usize>> {
        // 0 = unseen, 1 = on the stack, 2 = done.
        let mut mark = vec![0u8; self.len()];
        let mut stack: Vec<(usize, usize)> = Vec::new();
        for start in 0..self.len() {
            if mark[start] != 0 {
                continue;
            }
            stack.push((start, 0));
            mark[start] = 1;
            while let Some(&mut (node, ref mut next)) = stack.last_mut() {
                if let Some(&d) = self.deps[node].get(*next) {
                    *next += 1;
                    match mark[d] {
                        0 => {
                            mark[d] = 1;
                            stack.push((d, 0));
                        }
                        1 => {
                            let from = stack.iter().position(|(n, _)| *n == d).unwrap_or(0);
                            let mut cycle: Vec<usize> =
                                stack[from..].iter().map(|(n, _)| *n).collect();
                            cycle.push(d);
                            // Reads as "a depends on b depends on ... a": reverse to data flow.
                            cycle.reverse();
                            return Some(cycle);
                        }
                        _ => {}
                    }
                } else {
                    mark[node] = 2;
                    stack.pop();
                }
            }
        }
        None
    }

    /// Ancestors of `i` up to `depth` steps (`None` = all), not including `i`.
    pub fn ancestors(&self, i: usize, depth: Option<usize>) -> BTreeSet<usize> {
        walk(&self.deps, i, depth)
    }

    /// Descendants of `i` up to `depth` steps (`None` = all), not including `i`.
    pub fn descendants(&self, i: usize, depth: Option<usize>) -> BTreeSet<usize> {
        walk(&self.children, i, depth)
    }

    /// `selected` in an order where every model comes after the models it reads.
    pub fn order(&self, selected: &BTreeSet<usize>) -> Vec<usize> {
        let mut done = vec![false; self.len()];
        let mut out = Vec::with_capacity(selected.len());
        for &s in selected {
            self.visit(s, selected, &mut done, &mut out);
        }
        out
    }

    fn visit(&self, i: usize, selected: &BTreeSet<usize>, done: &mut [bool], out: &mut Vec<usize>) {
        // Iterative post-order; the graph is acyclic.
        let mut stack = vec![(i, 0usize)];
        while let Some(&mut (n, ref mut next)) = stack.last_mut() {
            if done[n] {
                stack.pop();
                continue;
            }
            if let Some(&d) = self.deps[n].get(*next) {
                *next += 1;
                if !done[d] {
                    stack.push((d, 0));
                }
            } else {
                done[n] = true;
                if selected.contains(&n) {
                    out.push(n);
                }
                stack.pop();
            }
        }
    }
}

fn walk(edges: &[Vec<usize>], i: usize, depth: Option<usize>) -> BTreeSet<usize> {
    let mut seen = BTreeSet::new();
    let mut frontier = vec![i];
    let mut level = 0;
    while !frontier.is_empty() && depth.is_none_or(|d| level < d) {
        let mut next = Vec::new();
        for n in frontier {
            for &e in &edges[n] {
                if seen.insert(e) {
                    next.push(e);
                }
            }
        }
        frontier = next;
        level += 1;
    }
    seen
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("m{i}")).collect()
    }

    #[test]
    fn names_the_cycle() {
        // m0 reads m2, m1 reads m0, m2 reads m1.
        let err = Graph::new(vec![vec![2], vec![0], vec![1]], &names(3)).unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.contains("m0 -> m1 -> m2 -> m0")
                || msg.contains("m1 -> m2 -> m0 -> m1")
                || msg.contains("m2 -> m0 -> m1 -> m2"),
            "{msg}"
        );
    }

    #[test]
    fn orders_and_walks() {
        // m2 reads m0 and m1; m3 reads m2.
        let g = Graph::new(vec![vec![], vec![], vec![0, 1], vec![2]], &names(4)).unwrap();
        let all: BTreeSet<usize> = (0..4).collect();
        let order = g.order(&all);
        let pos = |x| order.iter().position(|&o| o == x).unwrap();
        assert!(pos(0) < pos(2) && pos(1) < pos(2) && pos(2) < pos(3));
        assert_eq!(g.ancestors(3, Some(1)), BTreeSet::from([2]));
        assert_eq!(g.ancestors(3, None), BTreeSet::from([0, 1, 2]));
        assert_eq!(g.descendants(0, None), BTreeSet::from([2, 3]));
    }
}
