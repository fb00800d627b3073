//! Selection by scanning every container instance: the strategy chain evaluated literally, as a
//! lexicographic key per feasible instance, the smallest wins.
//!
//! It serves the strategy chains the index does not (see [`crate::index`]) and is the reference
//! the property tests hold the index to. O(instances) per task.

use std::collections::HashMap;

use crate::cluster::{Cluster, CompiledRequest};
use crate::random::SplitMix64;
use crate::request::{BinpackField, PlacementStrategy, SpreadField};

pub(crate) struct Scan {
    /// Per strategy: for an attribute spread, tasks of the group per attribute value.
    spread_counts: Vec<Option<HashMap<Option<String>, u32>>>,
}

fn value_of<'a>(cluster: &'a Cluster, i: usize, attribute: &str) -> Option<&'a str> {
    // As in the index: absent and value-less attributes are one "no value" bucket.
    cluster.instances[i].attribute(attribute).flatten()
}

impl Scan {
    pub fn new(cluster: &Cluster, request: &CompiledRequest) -> Self {
        let spread_counts = request
            .strategies
            .iter()
            .map(|strategy| match strategy {
                PlacementStrategy::Spread(SpreadField::Attribute(name)) => {
                    let mut counts: HashMap<Option<String>, u32> = HashMap::new();
                    for i in 0..cluster.len() {
                        *counts
                            .entry(value_of(cluster, i, name).map(str::to_owned))
                            .or_default() += cluster.state[i].group_count(request.group);
                    }
                    Some(counts)
                }
                _ => None,
            })
            .collect();
        Scan { spread_counts }
    }

    /// Counts a task of the request's group placed on `i`.
    pub fn on_placed(&mut self, cluster: &Cluster, request: &CompiledRequest, i: usize) {
        for (strategy, counts) in request.strategies.iter().zip(&mut self.spread_counts) {
            if let (PlacementStrategy::Spread(SpreadField::Attribute(name)), Some(counts)) =
                (strategy, counts)
            {
                *counts
                    .entry(value_of(cluster, i, name).map(str::to_owned))
                    .or_default() += 1;
            }
        }
    }

    pub fn select(
        &self,
        cluster: &Cluster,
        request: &CompiledRequest,
        rng: &mut SplitMix64,
    ) -> Option<usize> {
        let mut best: Option<(Vec<u64>, u64, usize)> = None;
        let mut key = Vec::with_capacity(request.strategies.len());
        for i in 0..cluster.len() {
            if !cluster.is_active(i) || cluster.check(i, request).is_err() {
                continue;
            }
            key.clear();
            let state = &cluster.state[i];
            for (strategy, counts) in request.strategies.iter().zip(&self.spread_counts) {
                key.push(match strategy {
                    PlacementStrategy::Spread(SpreadField::Attribute(name)) => counts
                        .as_ref()
                        .and_then(|c| c.get(&value_of(cluster, i, name).map(str::to_owned)))
                        .copied()
                        .map_or(0, u64::from),
                    PlacementStrategy::Spread(SpreadField::InstanceId) => {
                        u64::from(state.group_count(request.group))
                    }
                    PlacementStrategy::Binpack(BinpackField::Cpu) => u64::from(state.cpu),
                    PlacementStrategy::Binpack(BinpackField::Memory) => u64::from(state.memory),
                    PlacementStrategy::Random => rng.next_u64(),
                });
            }
            let better = match &best {
                None => true,
                Some((best_key, best_tiebreak, _)) => {
                    (&key, cluster.tiebreak[i]) < (best_key, *best_tiebreak)
                }
            };
            if better {
                best = Some((key.clone(), cluster.tiebreak[i], i));
            }
        }
        best.map(|(_, _, i)| i)
    }
}
